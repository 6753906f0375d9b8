//! The configuration file, read in two stages.
//!
//! 1. **Raw**: the TOML text is deserialized into private `Raw*` types that
//!    mirror the file one to one. They use `#[serde(deny_unknown_fields)]`,
//!    so a misspelt key is an error naming that key instead of a setting that
//!    is silently ignored.
//! 2. **Validated**: `validate` turns the raw types, once, into the public,
//!    immutable [`Config`]. Defaults are filled in (each one is a named
//!    constant below that says why), relative paths are resolved against the
//!    config file's directory, durations are parsed, secrets are read from
//!    their environment variables and files (those of the stacks in the
//!    [`SecretScope`] a command loads with), and every rule of the host's
//!    is checked. What a stack follows (its sources, patterns, repositories
//!    and images) is the component's rule: the commands that evaluate
//!    deliveries check it at start with `crate::stacks::validate`.
//!
//! Nothing outside this module sees the raw types, so the rest of the program
//! never has to ask "was this set?" or "is this valid?".
//!
//! Every error names the stack and the key it is about, e.g.
//! `stack "web": timeout must be greater than zero`. Secret values (webhook
//! secrets, hook tokens, GitHub tokens, HTTP header values, environment
//! values) never appear in an error message or in `Debug` output: the fields
//! that can hold them are deserialized without echoing what they contain,
//! TOML errors are reported as position plus message without quoting the
//! source line, and [`Secret`] prints as `<redacted>`.
//!
//! The module's files follow those stages and the file's tables:
//!
//! - this file: the defaults, the errors, the validated types, the entry
//!   points ([`load`], [`load_for`], [`parse`], [`parse_with`],
//!   [`parse_scoped`]) and `validate`, which
//!   turns a `RawConfig` into a [`Config`];
//! - `raw`: the `Raw*` serde types that mirror the TOML, and the opaque
//!   string types that deserialize secrets without echoing them;
//! - `secrets`: [`Secret`], [`SecretSource`], and reading and checking
//!   secrets from environment variables and files;
//! - `server`: the `[server]` and `[hook]` tables, and the URL, path and
//!   duration helpers the other tables share;
//! - `stack`: one `[[stacks]]` entry (name, secrets, action, profiles);
//! - `github`: its `[stacks.github]` table;
//! - `notifications`: the `[[notifications]]` channels;
//! - `tests`: the unit tests, split the same way.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

mod github;
pub use github::{
    OnRequestFailure, DEFAULT_EVENT_WAIT, DEFAULT_RETRY_REQUEST_FOR, MAX_EVENT_WAIT,
    MAX_RETRY_REQUEST_FOR, MIN_EVENT_WAIT,
};
pub use github::{DEFAULT_CATCH_UP_EVERY, MAX_CATCH_UP_EVERY, MIN_CATCH_UP_EVERY};
mod journal;
mod live;
mod notifications;
pub use notifications::{
    is_channel_name, ChannelTarget, EmailChannel, NoticeEvent, NotificationChannel, SmtpTls,
    DEFAULT_EVENTS, DEFAULT_GIVE_UP_AFTER, MAX_CHANNELS, MAX_CHANNEL_NAME_LEN,
    MAX_EMAIL_RECIPIENTS, MAX_GIVE_UP_AFTER, MIN_GIVE_UP_AFTER,
};
mod poll;
pub use poll::{ImageReference, PollConfig, PollKind, PollTarget, MIN_POLL_EVERY};
mod raw;
mod secrets;
mod server;
mod stack;
mod ui;

pub use journal::{JournalConfig, PostgresConfig, MAX_POOL_SIZE};
pub use live::{merge_reload, Live, LiveConfig, Reloaded};
pub use secrets::{ProcessSecrets, Secret, SecretSource};
pub use server::{is_https_or_loopback_http, parse_duration, server_url, MAX_DURATION};
pub use stack::{is_stack_name, shown_setting};
pub use ui::{
    Role, TrustedProxy, UiConfig, UiUser, DEFAULT_SESSION_TTL, MAX_SESSION_TTL, MAX_USER_NAME_BYTES,
};

use raw::RawConfig;
use server::{validate_hook, validate_server};
use stack::validate_stack;

// ---------------------------------------------------------------------------
// Defaults
// ---------------------------------------------------------------------------

/// Default `server.listen`: loopback only, so a fresh install is not exposed
/// to the network until a reverse proxy (or an explicit address) is set up.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

/// Default `server.state_dir`, relative to the config file's directory, so
/// the state lives next to the configuration that produced it.
pub const DEFAULT_STATE_DIR: &str = "state";

/// Default `server.max_body_bytes`: GitHub caps webhook payloads at 25 MB, so
/// no genuine GitHub delivery is ever refused for its size.
pub const DEFAULT_MAX_BODY_BYTES: usize = 25 * 1024 * 1024;

/// Default `server.max_concurrent_deploys`: enough parallelism for a few
/// independent stacks without letting a burst of pushes overload the host.
pub const DEFAULT_MAX_CONCURRENT_DEPLOYS: usize = 4;

/// Default `server.max_queued_deliveries`: far more than any real burst of
/// pushes, yet a bound, so a flood of deliveries is answered with 429 instead
/// of growing memory without limit.
pub const DEFAULT_MAX_QUEUED_DELIVERIES: usize = 1000;

/// Default `server.shutdown_grace`: lets most running deploys finish on a
/// restart, and stays under the 90 s systemd and Docker wait before SIGKILL.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// Default `server.replay_window`: how long the journal remembers a delivery
/// that carries no delivery id (Docker Hub, Harbor, ACR, Azure DevOps, the
/// legacy Bitbucket POST service), to deploy its replays only once. Their
/// bodies name their own time (`pushed_at`, `occur_at`, `createdDate`...),
/// so a real second push never has the same body and a long window loses
/// nothing; an hour is six times the age past which an event is too old
/// to accept, and keeps only an hour of keys in the journal. Bodies with no
/// time in them (Quay) use the shorter `dispatch::TIMELESS_REPLAY_WINDOW`.
pub const DEFAULT_REPLAY_WINDOW: Duration = Duration::from_secs(60 * 60);

/// Default `server.log_links`: how long a `/logs/{id}/{key}` link in a
/// deployment status stays valid. A week covers looking into a failed deploy
/// after a weekend; a link in a public repository's statuses stops working
/// after that instead of forever.
pub const DEFAULT_LOG_LINKS: Duration = Duration::from_secs(7 * 24 * 60 * 60);

/// Default `server.max_body_bytes_in_flight`: the bytes of request bodies
/// held in memory at once, over all deliveries. A delivery's body is held
/// once by the host and copied once into the component's memory, so bodies
/// cost about twice this at peak; 256 MiB (ten full-size GitHub deliveries)
/// keeps that well under the memory of a small VM, where 1000 deliveries of
/// 25 MiB each would need 25 GiB.
pub const DEFAULT_MAX_BODY_BYTES_IN_FLIGHT: usize = 256 * 1024 * 1024;

/// Default `server.max_connections`: open client connections. Each holds a
/// file descriptor and a task with its buffers; 512 leaves room under the
/// common soft limit of 1024 descriptors for the journal, deploy logs and
/// deploy processes' pipes, and is far more than webhook senders open.
pub const DEFAULT_MAX_CONNECTIONS: usize = 512;

/// Default `server.write_timeout`: how long writing to a client may make no
/// progress before the connection is dropped. A client that stops reading
/// would otherwise hold its connection (and a graceful stop) forever; 30 s
/// is ages for the few kilobytes of an answer.
pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// Default `server.keep_deploys`: finished deploys (rows, logs, event files)
/// older than this are pruned, beyond the newest `keep_deploys_min` of each
/// stack. A quarter of a year covers "what did we deploy last month".
pub const DEFAULT_KEEP_DEPLOYS: Duration = Duration::from_secs(90 * 24 * 60 * 60);

/// Default `server.keep_deploys_min`: the newest finished deploys of each
/// stack kept whatever their age, so a stack deployed rarely keeps its
/// history (and `history` something to redeploy).
pub const DEFAULT_KEEP_DEPLOYS_MIN: usize = 20;

/// Default `server.keep_deploys_max`: finished deploys kept per stack at
/// most, whatever their age: with logs capped at `max_deploy_log_bytes`,
/// bounds a busy stack's logs too.
pub const DEFAULT_KEEP_DEPLOYS_MAX: usize = 1000;

/// Default `server.keep_deliveries`: delivery rows (what arrived and what
/// was answered) older than this are pruned.
pub const DEFAULT_KEEP_DELIVERIES: Duration = Duration::from_secs(30 * 24 * 60 * 60);

/// Default `server.keep_refused_deliveries`: rows of refused deliveries
/// (answered 400 and up: bad signatures, garbage) go first, after a day:
/// long enough to debug a misconfigured sender, short enough that a flood
/// of garbage does not fill the disk.
pub const DEFAULT_KEEP_REFUSED_DELIVERIES: Duration = Duration::from_secs(24 * 60 * 60);

/// Default `server.max_refused_deliveries_per_minute`: refused deliveries of
/// one stack recorded one row each per minute; beyond it they are counted
/// (metric `redeploy_refused_unrecorded`) and summed up in one row. A
/// misconfigured sender stays visible; a flood costs a row a minute.
pub const DEFAULT_MAX_REFUSED_DELIVERIES_PER_MINUTE: u32 = 60;

/// Default `server.max_deploy_log_bytes`: a deploy's output kept in its log;
/// beyond it the output is discarded behind one marker line and the deploy
/// goes on. 16 MiB holds the chattiest image build, and bounds the disk a
/// runaway command can fill.
pub const DEFAULT_MAX_DEPLOY_LOG_BYTES: u64 = 16 * 1024 * 1024;

/// The most `server.keep_delivery_bodies` may be: a body kept is a journal
/// row, and rows of refused deliveries are kept too (rate-limited), so the
/// cap bounds what a sender can make the journal hold.
pub const MAX_KEEP_DELIVERY_BODIES: u64 = 1024 * 1024;

/// Default `server.header_timeout`: a client that has not sent its request
/// headers after 10 s is slow or malicious (slowloris), not GitHub.
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Default `server.body_timeout`: GitHub gives up on a delivery after 10 s,
/// so 30 s is generous even for a 25 MB body on a slow link.
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(30);

/// Default per-stack `timeout`: long enough for an image pull and a rolling
/// restart, short enough that a hung deploy does not block the stack forever.
pub const DEFAULT_DEPLOY_TIMEOUT: Duration = Duration::from_secs(10 * 60);

/// Default per-stack `skip_markers`: the two spellings people use by analogy
/// with GitHub Actions' `[skip ci]` / `[ci skip]`.
pub const DEFAULT_SKIP_MARKERS: [&str; 2] = ["[skip deploy]", "[deploy skip]"];

/// Default `server.callback_hosts`: Docker Hub's webhook callbacks go to
/// `https://registry.hub.docker.com/u/OWNER/REPO/hook/...`.
pub const DEFAULT_CALLBACK_HOSTS: [&str; 1] = ["registry.hub.docker.com"];

/// Default `[stacks.github] api_url`: the public GitHub REST API (GitHub
/// Enterprise Server uses `https://HOST/api/v3` instead).
pub const DEFAULT_GITHUB_API_URL: &str = "https://api.github.com";

/// The environment name for which `production_environment` defaults to true,
/// matching GitHub's own default for that environment.
pub const PRODUCTION_ENVIRONMENT_NAME: &str = "production";

/// Default `[stacks.github] transient_environment`: deployments replace each
/// other in a long-lived environment, they are not throwaway previews.
pub const DEFAULT_TRANSIENT_ENVIRONMENT: bool = false;

/// Default `[stacks.github] auto_merge`: redeploy deploys exactly the commit
/// it was told about and never asks GitHub to merge the default branch in.
pub const DEFAULT_AUTO_MERGE: bool = false;

/// Default `[stacks.github] wait_for_event`: deploy when GitHub sends the
/// `deployment` event, so GitHub stays the one source of truth for what runs.
pub const DEFAULT_WAIT_FOR_EVENT: bool = true;

/// Default `server.max_event_age`: a registry delivery whose own event time
/// (Docker Hub `pushed_at`, Harbor `occur_at`, Distribution's and ACR's
/// `timestamp`) is older than this is refused.
/// Registries deliver within seconds and retry for a few minutes; ten
/// minutes covers that and bounds how long a captured delivery replays.
pub const DEFAULT_MAX_EVENT_AGE: Duration = Duration::from_secs(10 * 60);

/// Default `[[stacks]] manual`: the hook URL alone authorizes a manual
/// trigger (an empty POST), even on a stack with secrets; it names no commit.
pub const DEFAULT_MANUAL: ManualSetting = ManualSetting::Allow;

/// Default `[[stacks]] query_services`: `?services=` may choose services.
pub const DEFAULT_QUERY_SERVICES: bool = true;

/// Default `selectable` of a `[stacks.profiles.NAME]` or `[[stacks.services]]`
/// entry: the hook URL's query may choose it.
pub const DEFAULT_SELECTABLE: bool = true;

/// Default `[stacks.github] accept_foreign_deployments`: only deployments
/// redeploy created for the stack (with its MAC) deploy it.
pub const DEFAULT_ACCEPT_FOREIGN_DEPLOYMENTS: bool = false;

/// Longest accepted stack name: names appear in URLs, file names and logs.
pub const MAX_STACK_NAME_LEN: usize = 64;

/// Largest config file read (1 MiB): a config with hundreds of stacks is a
/// few hundred KiB; a larger file is refused whole, never read in part.
pub const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

/// Largest secret or token file read (`secrets_file`, `hook_token_file`,
/// `github.token_file`): 64 KiB holds hundreds of rotated secrets; a larger
/// file is refused whole, never cut (a cut could drop the current secret).
pub const MAX_SECRET_FILE_BYTES: u64 = 64 * 1024;

/// Shortest accepted webhook secret, in bytes. The HMAC key of a captured
/// signed delivery can be guessed offline, so a one-character secret is no
/// secret. Eight bytes refuse the trivially short while keeping the forges'
/// own published test vectors (go-scm's 9-byte `topsecret`, used by the
/// shared fixtures and the README's dry run) usable; generate real secrets
/// with `openssl rand -hex 32`.
pub const MIN_SECRET_BYTES: usize = 8;

/// Shortest accepted hook token: 22 characters of the 64-symbol URL-safe
/// alphabet carry 132 bits, i.e. at least 128 bits that cannot be guessed.
pub const MIN_HOOK_TOKEN_LEN: usize = 22;

/// Default `[stacks.github] required_contexts`: no commit status checks are
/// required (GitHub's own default, when the field is omitted, is "all of
/// them", which blocks deploys of commits whose CI is still running).
fn default_required_contexts() -> Vec<String> {
    Vec::new()
}

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/// Why a configuration could not be loaded. Messages are lowercase, carry no
/// trailing period, name the stack and key, and never contain a secret.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file (or its directory) could not be read. The message
    /// names the file; the OS error is its source (an `anyhow` chain
    /// prints it once, after the file).
    #[error("cannot read {}", path.display())]
    Read {
        /// The file that could not be read.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// The text is not valid TOML, or does not fit the expected shape (an
    /// unknown key, a wrong type, a missing required key).
    #[error("{}line {line}, column {column}: {message}", file_prefix(file.as_deref()))]
    Syntax {
        /// The config file, when the text came from one.
        file: Option<PathBuf>,
        /// 1-based line of the problem.
        line: usize,
        /// 1-based column (in characters) of the problem.
        column: usize,
        /// What is wrong, as reported by the TOML parser (names the key).
        message: String,
    },
    /// The TOML is well formed but a value breaks a rule.
    #[error("{}{message}", file_prefix(file.as_deref()))]
    Invalid {
        /// The config file, when the text came from one.
        file: Option<PathBuf>,
        /// What is wrong, naming the stack and key.
        message: String,
    },
}

fn file_prefix(file: Option<&Path>) -> String {
    match file {
        Some(file) => format!("{}: ", file.display()),
        None => String::new(),
    }
}

impl ConfigError {
    fn invalid(message: impl Into<String>) -> Self {
        ConfigError::Invalid {
            file: None,
            message: message.into(),
        }
    }

    fn in_file(self, path: &Path) -> Self {
        match self {
            ConfigError::Syntax {
                file: None,
                line,
                column,
                message,
            } => ConfigError::Syntax {
                file: Some(path.to_path_buf()),
                line,
                column,
                message,
            },
            ConfigError::Invalid {
                file: None,
                message,
            } => ConfigError::Invalid {
                file: Some(path.to_path_buf()),
                message,
            },
            other => other,
        }
    }
}

type Result<T, E = ConfigError> = std::result::Result<T, E>;

// ---------------------------------------------------------------------------
// Validated types
// ---------------------------------------------------------------------------

/// The whole, validated configuration. Immutable once loaded.
#[derive(Clone, Debug)]
pub struct Config {
    /// The `[server]` table, defaults filled in.
    pub server: ServerConfig,
    /// The `[[stacks]]`, in file order; names are unique.
    pub stacks: Vec<StackConfig>,
    /// The `[hook]` table: how `redeploy post-receive` behaves.
    pub hook: HookConfig,
    /// The `[journal]` table: SQLite in the state directory, or PostgreSQL.
    pub journal: JournalConfig,
    /// The `[ui]` table: the dashboard, when it is on.
    pub ui: Option<UiConfig>,
    /// The `[[notifications]]` channels, in file order; names are unique.
    pub notifications: Vec<NotificationChannel>,
    /// The absolute directory relative paths were resolved against (the
    /// config file's directory).
    pub base_dir: PathBuf,
}

impl Config {
    /// The stack called `name`, if any.
    pub fn stack(&self, name: &str) -> Option<&StackConfig> {
        self.stacks.iter().find(|stack| stack.name == name)
    }
}

/// Whose secrets loading reads from environment variables and files
/// (`secrets_env`, `secrets_file`, `hook_token_env`, `hook_token_file`,
/// `github.token_env`, `github.token_file`). A command reads the secrets of
/// the stacks it uses, so an administrator's `hook-url api` does not need
/// the environment of stack `web`; a stack left out is still checked by
/// every other rule, and its secrets stay unread
/// ([`StackConfig::secrets_read`] is false).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SecretScope<'a> {
    /// Every stack's: what `post-receive` and the runner need, since they
    /// serve every stack.
    Every,
    /// Every stack's and the dashboard's users file (`[ui] users_file`):
    /// what `serve` (and its reloads) needs, and what `config check` checks.
    Server,
    /// The named stack's only (a name that is no stack's reads none).
    Stack(&'a str),
    /// The named stack's hook token only (`hook_token_env`,
    /// `hook_token_file`), not its webhook or GitHub secrets: what
    /// `hook-url` needs.
    TokenOf(&'a str),
    /// No stack's: for commands that use no secret (`history`).
    NoStack,
}

impl SecretScope<'_> {
    /// Whether the secrets of stack `name` are read.
    pub fn includes(self, name: &str) -> bool {
        match self {
            SecretScope::Every | SecretScope::Server => true,
            SecretScope::Stack(only) => only == name,
            SecretScope::TokenOf(_) | SecretScope::NoStack => false,
        }
    }

    /// Whether the hook token of stack `name` is read.
    pub fn includes_token(self, name: &str) -> bool {
        match self {
            SecretScope::TokenOf(only) => only == name,
            scope => scope.includes(name),
        }
    }
}

/// The validated `[hook]` table, for `redeploy post-receive`.
#[derive(Clone, Debug, Default)]
pub struct HookConfig {
    /// A running `redeploy serve` to hand deploys to (`http://host:port`);
    /// without it the hook journals the deploys and runs them itself.
    pub server: Option<String>,
    /// Without a server: run the deploy inside the push and show its output
    /// to the pusher (`true`), or start it detached so the push returns at
    /// once (`false`, the default).
    pub wait: bool,
    /// Absolute paths of bare repositories mapped to the forge name stacks
    /// use (`"/srv/git/app.git" = "acme/app"`).
    pub repositories: BTreeMap<PathBuf, String>,
}

/// The validated `[server]` table.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Address the HTTP server binds to.
    pub listen: SocketAddr,
    /// Public base URL (http or https, no query, no trailing slash) used to
    /// build hook URLs and log URLs; `None` when not configured.
    pub public_url: Option<String>,
    /// Absolute directory for the state database and deploy logs.
    pub state_dir: PathBuf,
    /// Largest request body accepted, in bytes (at least 1).
    pub max_body_bytes: usize,
    /// Global cap on deploys running at the same time (at least 1).
    pub max_concurrent_deploys: usize,
    /// Deliveries that may wait in the queue before new ones get 429 (at
    /// least 1).
    pub max_queued_deliveries: usize,
    /// How long a shutdown waits for running deploys.
    pub shutdown_grace: Duration,
    /// How long a delivery without a delivery id is remembered, so that a
    /// replay of its exact body does not deploy again (non-zero).
    pub replay_window: Duration,
    /// How long a client may take to send its request headers (non-zero);
    /// also how long an idle keep-alive connection stays open.
    pub header_timeout: Duration,
    /// Bytes of request bodies held at once over all deliveries (at least
    /// `max_body_bytes`); beyond it a delivery waits, then gets 429.
    pub max_body_bytes_in_flight: usize,
    /// Open client connections (at least 1); beyond it new connections wait
    /// in the listen backlog.
    pub max_connections: usize,
    /// How long a write to a client may make no progress (non-zero).
    pub write_timeout: Duration,
    /// What the journal and the logs directory keep.
    pub retention: Retention,
    /// The most of a deploy's output its log keeps (at least 1).
    pub max_deploy_log_bytes: u64,
    /// How long a deploy-log link stays valid from when it is issued;
    /// `None` (`log_links = "off"`): no links, and `/logs/` serves nothing.
    pub log_links: Option<Duration>,
    /// How long a client may take to send its request body (non-zero).
    pub body_timeout: Duration,
    /// Hosts a registry's `callback_url` may point to: the deploy's result
    /// is only reported to these (anyone who knows a registry stack's hook
    /// URL chooses the callback URL, which must not reach internal services).
    pub callback_hosts: Vec<String>,
    /// The oldest registry event (by the sender's own event time) accepted.
    pub max_event_age: Duration,
}

/// What is pruned, at start and periodically (`keep_*` in `[server]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Retention {
    /// Finished deploys older than this go (beyond `deploys_min`).
    pub deploys: Duration,
    /// Newest finished deploys per stack always kept.
    pub deploys_min: usize,
    /// Finished deploys per stack kept at most.
    pub deploys_max: usize,
    /// Delivery rows older than this go.
    pub deliveries: Duration,
    /// Rows of refused deliveries (400 and up) older than this go.
    pub refused_deliveries: Duration,
    /// Refused deliveries per stack and minute recorded a row each.
    pub refused_per_minute: u32,
    /// Requests up to this many bytes (body, headers and query) are kept
    /// with their delivery, for the dashboard's "check again"; 0 (the
    /// default) keeps none. A bigger one is not kept at all, never cut.
    pub delivery_bodies: u64,
}

/// One validated `[[stacks]]` entry: what to follow and how to deploy it.
#[derive(Clone, Debug)]
pub struct StackConfig {
    /// Unique name, 1 to 64 characters of `[A-Za-z0-9._-]`.
    pub name: String,
    /// Repository followed: `owner/name`, a clone/SSH/web URL, or an absolute
    /// path of a bare repository. `None` when `services` is used.
    pub repository: Option<String>,
    /// Branch name or glob whose pushes deploy (set when `repository` is set
    /// and `tags` is not).
    pub branch: Option<String>,
    /// Tag glob whose pushes deploy; tags deploy only where this is set.
    pub tags: Option<String>,
    /// Container image followed (registry push events).
    pub image: Option<String>,
    /// Services of a multi-service stack; empty for a single-source stack
    /// (then the top-level `repository`/`image` apply).
    pub services: Vec<ServiceConfig>,
    /// Webhook secrets, any of which may sign a delivery (several allow
    /// rotation): `secrets`, then `secrets_env`, then `secrets_file`.
    pub secrets: Vec<Secret>,
    /// Explicit hook URL token; `None` means the server generates one
    /// (or, when [`StackConfig::secrets_read`] is false, that it was not read).
    pub hook_token: Option<Secret>,
    /// What a `ping` event does.
    pub ping: PingSetting,
    /// Path globs; when non-empty, a push deploys only if it touches one.
    /// Not compiled here (the plugin does that), only checked non-empty.
    pub paths: Vec<String>,
    /// Commit message markers that skip a deploy.
    pub skip_markers: Vec<String>,
    /// What a deploy runs.
    pub action: DeployAction,
    /// Per-deploy timeout (non-zero).
    pub timeout: Duration,
    /// Named deploy profiles, chosen by `?deployment_profile=NAME`.
    pub profiles: BTreeMap<String, ProfileConfig>,
    /// URL shown on GitHub deployment statuses (http or https).
    pub environment_url: Option<String>,
    /// GitHub continuous deployment settings, when `[stacks.github]` is set.
    pub github: Option<GithubConfig>,
    /// Polling of its repositories (`[stacks.poll]`), if configured.
    pub poll: Option<PollConfig>,
    /// What a manual trigger (an empty POST to the hook URL) may do.
    pub manual: ManualSetting,
    /// Whether `?services=` may choose services (`query_services`).
    pub query_services: bool,
    /// Whether the secrets this stack names by environment variable or
    /// file were read. Always true after [`load`]; false only for a stack
    /// that [`load_for`]'s [`SecretScope`] left out, whose `secrets` then
    /// hold only the file's inline ones and whose `hook_token` and
    /// `github.token` may be `None` though configured: such a stack must
    /// not serve, sign or name a token.
    pub secrets_read: bool,
    /// Whether its hook token (when set by variable or file) was read:
    /// false for a stack outside the command's [`SecretScope`], whose
    /// configured token this config does not hold.
    pub token_read: bool,
}

/// What a manual trigger (an empty POST to the hook URL) may do on a stack.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ManualSetting {
    /// The hook URL alone authorizes it.
    Allow,
    /// It must carry a fresh timestamp signed with one of the stack's secrets.
    Signed,
    /// Refused with 403.
    Refuse,
}

/// One validated `[[stacks.services]]` entry.
#[derive(Clone, Debug)]
pub struct ServiceConfig {
    /// Name, non-empty and unique within the stack.
    pub name: String,
    /// Repository followed (same forms as [`StackConfig::repository`]).
    pub repository: Option<String>,
    /// Branch name or glob (set when `repository` is set and `tags` is not).
    pub branch: Option<String>,
    /// Tag glob.
    pub tags: Option<String>,
    /// Container image followed.
    pub image: Option<String>,
    /// Whether `?services=` may name it.
    pub selectable: bool,
}

/// What a `ping` event (sent when a webhook is created) does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PingSetting {
    /// Run a deploy, so setting up the webhook also proves the deploy works.
    Deploy,
    /// Only answer the ping.
    Acknowledge,
}

/// What a deploy runs.
#[derive(Clone)]
pub enum DeployAction {
    /// Run a command.
    Command {
        /// The argv; non-empty, `argv[0]` non-empty.
        argv: Vec<String>,
        /// Absolute working directory.
        workdir: PathBuf,
        /// Extra environment variables for the command.
        env: BTreeMap<String, String>,
    },
    /// POST the deploy event as JSON to a URL.
    Http {
        /// The http or https URL.
        url: String,
        /// Extra request headers (values may be credentials).
        headers: BTreeMap<String, String>,
    },
}

/// Prints a map's keys with every value replaced by `<redacted>`.
struct RedactedValues<'a>(&'a BTreeMap<String, String>);

impl fmt::Debug for RedactedValues<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.0.keys().map(|key| (key, format_args!("<redacted>"))))
            .finish()
    }
}

/// Environment values and header values may be credentials, so `Debug`
/// shows only their names.
impl fmt::Debug for DeployAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeployAction::Command { argv, workdir, env } => f
                .debug_struct("Command")
                .field("argv", argv)
                .field("workdir", workdir)
                .field("env", &RedactedValues(env))
                .finish(),
            DeployAction::Http { url, headers } => f
                .debug_struct("Http")
                .field("url", url)
                .field("headers", &RedactedValues(headers))
                .finish(),
        }
    }
}

/// One validated `[stacks.profiles.NAME]` entry.
#[derive(Clone)]
pub struct ProfileConfig {
    /// Replaces the stack's command when set (command stacks only).
    pub command: Option<Vec<String>>,
    /// Extra environment on top of the stack's (command stacks only).
    pub env: BTreeMap<String, String>,
    /// Whether `?deployment_profile=` may choose it.
    pub selectable: bool,
}

/// Environment values may be credentials, so `Debug` shows only their names.
impl fmt::Debug for ProfileConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProfileConfig")
            .field("command", &self.command)
            .field("env", &RedactedValues(&self.env))
            .field("selectable", &self.selectable)
            .finish()
    }
}

/// The validated `[stacks.github]` table (GitHub continuous deployment).
#[derive(Clone, Debug)]
pub struct GithubConfig {
    /// The GitHub repository, `owner/name`.
    pub repository: String,
    /// REST API base URL, no trailing slash.
    pub api_url: String,
    /// The API token, read at load time from `token_env` or `token_file`.
    /// Always `Some` after [`load`] (a missing token is a load error);
    /// `None` when the stack's secrets were not read
    /// ([`StackConfig::secrets_read`]).
    pub token: Option<Secret>,
    /// Deployment environment name (default: the stack name).
    pub environment: String,
    /// Whether the environment is transient.
    pub transient_environment: bool,
    /// Whether the environment is production (default: `environment` is
    /// `"production"`).
    pub production_environment: bool,
    /// Whether GitHub should auto-merge the default branch when deploying.
    pub auto_merge: bool,
    /// Status contexts that must pass before GitHub creates a deployment.
    pub required_contexts: Vec<String>,
    /// Deploy on GitHub's `deployment` event (instead of directly on push).
    pub wait_for_event: bool,
    /// Whether deployments redeploy did not create may deploy the stack.
    pub accept_foreign_deployments: bool,
    /// How often to look for webhook deliveries that did not arrive and
    /// ask GitHub to redeliver them (`catch_up_every`; `None`: `"off"`).
    pub catch_up_every: Option<Duration>,
    /// How long a deployment request GitHub could not take (unreachable,
    /// 5xx, rate limited) is retried, counted from the push.
    pub retry_request_for: std::time::Duration,
    /// What a push whose deployment request failed for good does.
    pub on_request_failure: OnRequestFailure,
    /// How long a created deployment waits for its `deployment` event
    /// before the journal runs it.
    pub event_wait: std::time::Duration,
}

// ---------------------------------------------------------------------------
// Public entry points
// ---------------------------------------------------------------------------

/// Reads the config file at `path`, parses and validates it, reading every
/// stack's secrets and the dashboard's users file, as `serve` does (its
/// reloads call this). Relative paths in it resolve against the file's
/// directory. Errors carry the file path.
pub fn load(path: &Path) -> Result<Config> {
    load_for(path, SecretScope::Server)
}

/// [`load`], reading only the secrets of the stacks in `scope`.
pub fn load_for(path: &Path, scope: SecretScope<'_>) -> Result<Config> {
    let text = crate::bounded::read_file_to_string(path, MAX_CONFIG_BYTES).map_err(|source| {
        ConfigError::Read {
            path: path.to_path_buf(),
            source,
        }
    })?;
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    parse_scoped(&text, dir, &ProcessSecrets, scope).map_err(|err| err.in_file(path))
}

/// Parses and validates config text. Relative paths resolve against
/// `base_dir` (normally the config file's directory).
pub fn parse(text: &str, base_dir: &Path) -> Result<Config> {
    parse_with(text, base_dir, &ProcessSecrets)
}

/// [`parse`] with the secrets read from `secrets` instead of the process's
/// environment and files (the config fuzz target reads none of either).
pub fn parse_with(text: &str, base_dir: &Path, secrets: &dyn SecretSource) -> Result<Config> {
    parse_scoped(text, base_dir, secrets, SecretScope::Every)
}

/// [`parse_with`], reading only the secrets of the stacks in `scope`.
pub fn parse_scoped(
    text: &str,
    base_dir: &Path,
    secrets: &dyn SecretSource,
    scope: SecretScope<'_>,
) -> Result<Config> {
    let raw: RawConfig = toml::from_str(text).map_err(|err| syntax_error(text, &err))?;
    let base_dir = std::path::absolute(base_dir).map_err(|source| ConfigError::Read {
        path: base_dir.to_path_buf(),
        source,
    })?;
    validate(raw, base_dir, secrets, scope)
}

/// Turns a TOML error into position + message. The source line is not
/// quoted, because it may hold a secret.
fn syntax_error(text: &str, err: &toml::de::Error) -> ConfigError {
    let mut message = err.message().trim_end().trim_end_matches('.').to_string();
    let (line, column) = match err.span().and_then(|span| text.get(..span.start)) {
        Some(before) => {
            let line = before.matches('\n').count() + 1;
            let line_start = before.rfind('\n').map_or(0, |i| i + 1);
            let prefix = &before[line_start..];
            // For an error in a value, name the key it belongs to (serde's
            // type errors do not), taken from the text before the last `=`.
            if let Some(key) = key_before_value(prefix) {
                if !message.contains(&format!("`{key}`")) {
                    message = format!("`{key}`: {message}");
                }
            }
            (line, prefix.chars().count() + 1)
        }
        None => (1, 1),
    };
    ConfigError::Syntax {
        file: None,
        line,
        column,
        message,
    }
}

/// The key of the `key = value` pair whose value starts at the end of
/// `line_prefix`, if there is one (`a = { b = ` gives `b`).
fn key_before_value(line_prefix: &str) -> Option<&str> {
    let (before_eq, after_eq) = line_prefix.rsplit_once('=')?;
    if !after_eq.trim().is_empty() {
        return None;
    }
    let before_eq = before_eq.trim_end();
    let start = before_eq
        .char_indices()
        .rev()
        .find(|&(_, c)| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '"')))
        .map_or(0, |(i, c)| i + c.len_utf8());
    let key = before_eq[start..].trim_matches('"');
    (!key.is_empty()).then_some(key)
}

// ---------------------------------------------------------------------------
// Validation (stage 2)
// ---------------------------------------------------------------------------

fn validate(
    raw: RawConfig,
    base_dir: PathBuf,
    sources: &dyn SecretSource,
    scope: SecretScope<'_>,
) -> Result<Config> {
    let server = validate_server(raw.server, &base_dir)?;
    let hook = validate_hook(raw.hook)?;
    let journal = journal::validate_journal(raw.journal, &base_dir, sources)?;
    let ui = ui::validate_ui(raw.ui, &base_dir, sources, scope)?;

    let mut seen = BTreeSet::new();
    let mut stacks = Vec::with_capacity(raw.stacks.len());
    for (index, raw_stack) in raw.stacks.into_iter().enumerate() {
        let stack = validate_stack(index, raw_stack, &base_dir, sources, scope)?;
        if !seen.insert(stack.name.clone()) {
            return Err(ConfigError::invalid(format!(
                "stack {:?}: name is used by more than one stack",
                stack.name
            )));
        }
        stacks.push(stack);
    }
    let notifications =
        notifications::validate_notifications(raw.notifications, &seen, &base_dir, sources, scope)?;

    Ok(Config {
        server,
        stacks,
        hook,
        journal,
        ui,
        notifications,
        base_dir,
    })
}

#[cfg(test)]
mod tests;
