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
//!    their environment variables and files, and every rule is checked.
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

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::IgnoredAny;
use serde::{Deserialize, Deserializer};

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
/// (Docker Hub `pushed_at`, Harbor `occur_at`) is older than this is refused.
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
    /// The config file (or its directory) could not be read.
    #[error("cannot read {}: {source}", path.display())]
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

/// A secret string (webhook secret, hook token, API token). Its `Debug` and
/// `Display` print `<redacted>`; the value is only reachable via
/// [`Secret::expose`], so it cannot end up in a log line by accident.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret value itself. Call it only where the value is used (HMAC
    /// keys, token comparison, `Authorization` headers), never to log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// The whole, validated configuration. Immutable once loaded.
#[derive(Clone, Debug)]
pub struct Config {
    /// The `[server]` table, defaults filled in.
    pub server: ServerConfig,
    /// The `[[stacks]]`, in file order; names are unique.
    pub stacks: Vec<StackConfig>,
    /// The `[hook]` table: how `redeploy post-receive` behaves.
    pub hook: HookConfig,
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
    /// Explicit hook URL token; `None` means the server generates one.
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
    /// What a manual trigger (an empty POST to the hook URL) may do.
    pub manual: ManualSetting,
    /// Whether `?services=` may choose services (`query_services`).
    pub query_services: bool,
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
    /// Always `Some` after validation (a missing token is a load error).
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
}

// ---------------------------------------------------------------------------
// Public entry points
// ---------------------------------------------------------------------------

/// Reads the config file at `path`, parses and validates it. Relative paths
/// in it resolve against the file's directory. Errors carry the file path.
pub fn load(path: &Path) -> Result<Config> {
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
    parse(&text, dir).map_err(|err| err.in_file(path))
}

/// Parses and validates config text. Relative paths resolve against
/// `base_dir` (normally the config file's directory).
pub fn parse(text: &str, base_dir: &Path) -> Result<Config> {
    parse_with(text, base_dir, &ProcessSecrets)
}

/// Where validation reads the secrets a config names by environment
/// variable or file (`secrets_env`, `hook_token_file`, `github.token_env`...).
pub trait SecretSource {
    /// The value of environment variable `var` (`var` is not empty).
    fn var(&self, var: &str) -> std::result::Result<String, std::env::VarError>;
    /// The text of the file at `path` (already resolved against `base_dir`).
    fn read(&self, path: &Path) -> std::io::Result<String>;
}

/// The real [`SecretSource`]: this process's environment and the file system.
#[derive(Clone, Copy, Debug, Default)]
pub struct ProcessSecrets;

impl SecretSource for ProcessSecrets {
    fn var(&self, var: &str) -> std::result::Result<String, std::env::VarError> {
        std::env::var(var)
    }

    fn read(&self, path: &Path) -> std::io::Result<String> {
        crate::bounded::read_file_to_string(path, MAX_SECRET_FILE_BYTES)
    }
}

/// [`parse`] with the secrets read from `secrets` instead of the process's
/// environment and files (the config fuzz target reads none of either).
pub fn parse_with(text: &str, base_dir: &Path, secrets: &dyn SecretSource) -> Result<Config> {
    let raw: RawConfig = toml::from_str(text).map_err(|err| syntax_error(text, &err))?;
    let base_dir = std::path::absolute(base_dir).map_err(|source| ConfigError::Read {
        path: base_dir.to_path_buf(),
        source,
    })?;
    validate(raw, base_dir, secrets)
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
// Raw types (stage 1)
// ---------------------------------------------------------------------------

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    server: RawServer,
    #[serde(default)]
    stacks: Vec<RawStack>,
    #[serde(default)]
    hook: RawHook,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawHook {
    server: Option<String>,
    wait: Option<bool>,
    #[serde(default)]
    repositories: BTreeMap<PathBuf, String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawServer {
    listen: Option<String>,
    public_url: Option<String>,
    state_dir: Option<PathBuf>,
    max_body_bytes: Option<usize>,
    max_concurrent_deploys: Option<usize>,
    max_queued_deliveries: Option<usize>,
    shutdown_grace: Option<String>,
    replay_window: Option<String>,
    header_timeout: Option<String>,
    max_body_bytes_in_flight: Option<usize>,
    max_connections: Option<usize>,
    write_timeout: Option<String>,
    keep_deploys: Option<String>,
    keep_deploys_min: Option<usize>,
    keep_deploys_max: Option<usize>,
    keep_deliveries: Option<String>,
    keep_refused_deliveries: Option<String>,
    max_refused_deliveries_per_minute: Option<u32>,
    max_deploy_log_bytes: Option<u64>,
    log_links: Option<String>,
    body_timeout: Option<String>,
    callback_hosts: Option<Vec<String>>,
    max_event_age: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStack {
    name: Option<String>,
    repository: Option<String>,
    branch: Option<String>,
    tags: Option<String>,
    image: Option<String>,
    secrets: Option<OpaqueList>,
    secrets_env: Option<Vec<String>>,
    secrets_file: Option<PathBuf>,
    hook_token: Option<OpaqueString>,
    hook_token_env: Option<String>,
    hook_token_file: Option<PathBuf>,
    ping: Option<PingSetting>,
    paths: Option<Vec<String>>,
    skip_markers: Option<Vec<String>>,
    command: Option<Vec<String>>,
    workdir: Option<PathBuf>,
    env: Option<OpaqueMap>,
    timeout: Option<String>,
    http: Option<RawHttp>,
    environment_url: Option<String>,
    #[serde(default)]
    profiles: BTreeMap<String, RawProfile>,
    #[serde(default)]
    services: Vec<RawService>,
    github: Option<RawGithub>,
    manual: Option<ManualSetting>,
    query_services: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    url: Option<OpaqueString>,
    headers: Option<OpaqueMap>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProfile {
    command: Option<Vec<String>>,
    env: Option<OpaqueMap>,
    selectable: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawService {
    name: Option<String>,
    repository: Option<String>,
    branch: Option<String>,
    tags: Option<String>,
    image: Option<String>,
    selectable: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGithub {
    repository: Option<String>,
    api_url: Option<String>,
    /// Accepted by the parser only so that validation can reject it with a
    /// helpful message; its value is never kept.
    token: Option<IgnoredAny>,
    token_env: Option<String>,
    token_file: Option<PathBuf>,
    environment: Option<String>,
    transient_environment: Option<bool>,
    production_environment: Option<bool>,
    auto_merge: Option<bool>,
    required_contexts: Option<Vec<String>>,
    wait_for_event: Option<bool>,
    accept_foreign_deployments: Option<bool>,
}

/// A string that may be secret. serde's own type errors quote the offending
/// value (`invalid type: string "..."`), so it is read as a generic TOML
/// value and type-checked here without echoing it.
struct OpaqueString(String);

/// A list of strings that may be secret (see [`OpaqueString`]).
struct OpaqueList(Vec<String>);

/// A table of strings whose values may be secret (see [`OpaqueString`]).
struct OpaqueMap(BTreeMap<String, String>);

impl<'de> Deserialize<'de> for OpaqueString {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match toml::Value::deserialize(d)? {
            toml::Value::String(s) => Ok(OpaqueString(s)),
            other => Err(opaque_type_error("a string", &other)),
        }
    }
}

impl<'de> Deserialize<'de> for OpaqueList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        const EXPECTED: &str = "a list of strings";
        match toml::Value::deserialize(d)? {
            toml::Value::Array(items) => items
                .into_iter()
                .map(|item| match item {
                    toml::Value::String(s) => Ok(s),
                    other => Err(opaque_type_error(EXPECTED, &other)),
                })
                .collect::<Result<_, _>>()
                .map(OpaqueList),
            other => Err(opaque_type_error(EXPECTED, &other)),
        }
    }
}

impl<'de> Deserialize<'de> for OpaqueMap {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        const EXPECTED: &str = "a table of strings";
        match toml::Value::deserialize(d)? {
            toml::Value::Table(table) => table
                .into_iter()
                .map(|(key, value)| match value {
                    toml::Value::String(s) => Ok((key, s)),
                    other => Err(serde::de::Error::custom(format!(
                        "invalid type for `{key}`: {}, expected a string",
                        other.type_str()
                    ))),
                })
                .collect::<Result<_, _>>()
                .map(OpaqueMap),
            other => Err(opaque_type_error(EXPECTED, &other)),
        }
    }
}

fn opaque_type_error<E: serde::de::Error>(expected: &str, found: &toml::Value) -> E {
    E::custom(format!(
        "invalid type: {}, expected {expected}",
        found.type_str()
    ))
}

// ---------------------------------------------------------------------------
// Validation (stage 2)
// ---------------------------------------------------------------------------

fn validate(raw: RawConfig, base_dir: PathBuf, sources: &dyn SecretSource) -> Result<Config> {
    let server = validate_server(raw.server, &base_dir)?;
    let hook = validate_hook(raw.hook)?;

    let mut seen = BTreeSet::new();
    let mut stacks = Vec::with_capacity(raw.stacks.len());
    for (index, raw_stack) in raw.stacks.into_iter().enumerate() {
        let stack = validate_stack(index, raw_stack, &base_dir, sources)?;
        if !seen.insert(stack.name.clone()) {
            return Err(ConfigError::invalid(format!(
                "stack {:?}: name is used by more than one stack",
                stack.name
            )));
        }
        stacks.push(stack);
    }

    Ok(Config {
        server,
        stacks,
        hook,
        base_dir,
    })
}

fn validate_hook(raw: RawHook) -> Result<HookConfig> {
    let err = |message: String| ConfigError::invalid(format!("hook: {message}"));
    let server = match raw.server {
        Some(url) => {
            check_http_url(&url, false).map_err(|why| err(format!("server {url:?} {why}")))?;
            Some(url.trim_end_matches('/').to_string())
        }
        None => None,
    };
    for (path, name) in &raw.repositories {
        if !path.is_absolute() {
            return Err(err(format!(
                "repositories: {path:?} is not an absolute path"
            )));
        }
        if name.trim().is_empty() {
            return Err(err(format!("repositories: {path:?} maps to an empty name")));
        }
    }
    Ok(HookConfig {
        server,
        wait: raw.wait.unwrap_or(false),
        repositories: raw.repositories,
    })
}

fn validate_server(raw: RawServer, base_dir: &Path) -> Result<ServerConfig> {
    let err = |message: String| ConfigError::invalid(format!("server: {message}"));

    let listen_text = raw.listen.as_deref().unwrap_or(DEFAULT_LISTEN);
    let listen: SocketAddr = listen_text.parse().map_err(|_| {
        err(format!(
            "listen {listen_text:?} is not a socket address (like 127.0.0.1:8080 or [::]:8080)"
        ))
    })?;

    let public_url = match raw.public_url {
        Some(url) => {
            check_http_url(&url, false).map_err(|why| err(format!("public_url {url:?} {why}")))?;
            Some(url.trim_end_matches('/').to_string())
        }
        None => None,
    };

    let state_dir = resolve(
        base_dir,
        raw.state_dir
            .as_deref()
            .unwrap_or(Path::new(DEFAULT_STATE_DIR)),
    );
    if raw
        .state_dir
        .as_ref()
        .is_some_and(|dir| dir.as_os_str().is_empty())
    {
        return Err(err("state_dir is empty".into()));
    }

    let at_least_one = |key: &str, value: Option<usize>, default: usize| match value {
        Some(0) => Err(err(format!("{key} must be at least 1"))),
        Some(n) => Ok(n),
        None => Ok(default),
    };
    let max_body_bytes =
        at_least_one("max_body_bytes", raw.max_body_bytes, DEFAULT_MAX_BODY_BYTES)?;
    let max_concurrent_deploys = at_least_one(
        "max_concurrent_deploys",
        raw.max_concurrent_deploys,
        DEFAULT_MAX_CONCURRENT_DEPLOYS,
    )?;
    let max_queued_deliveries = at_least_one(
        "max_queued_deliveries",
        raw.max_queued_deliveries,
        DEFAULT_MAX_QUEUED_DELIVERIES,
    )?;

    let shutdown_grace =
        duration("shutdown_grace", raw.shutdown_grace, DEFAULT_SHUTDOWN_GRACE).map_err(err)?;
    let replay_window = duration("replay_window", raw.replay_window, DEFAULT_REPLAY_WINDOW)
        .and_then(|d| non_zero("replay_window", d))
        .map_err(err)?;
    let header_timeout = duration("header_timeout", raw.header_timeout, DEFAULT_HEADER_TIMEOUT)
        .and_then(|d| non_zero("header_timeout", d))
        .map_err(err)?;
    let max_body_bytes_in_flight = at_least_one(
        "max_body_bytes_in_flight",
        raw.max_body_bytes_in_flight,
        DEFAULT_MAX_BODY_BYTES_IN_FLIGHT.max(max_body_bytes),
    )?;
    if max_body_bytes_in_flight < max_body_bytes {
        return Err(err(format!(
            "max_body_bytes_in_flight ({max_body_bytes_in_flight}) must be at least max_body_bytes ({max_body_bytes})"
        )));
    }
    let max_connections = at_least_one(
        "max_connections",
        raw.max_connections,
        DEFAULT_MAX_CONNECTIONS,
    )?;
    let write_timeout = duration("write_timeout", raw.write_timeout, DEFAULT_WRITE_TIMEOUT)
        .and_then(|d| non_zero("write_timeout", d))
        .map_err(err)?;
    let keep = |key: &str, value: Option<String>, default: Duration| {
        duration(key, value, default)
            .and_then(|d| non_zero(key, d))
            .map_err(err)
    };
    let deploys_min = raw.keep_deploys_min.unwrap_or(DEFAULT_KEEP_DEPLOYS_MIN);
    let deploys_max = at_least_one(
        "keep_deploys_max",
        raw.keep_deploys_max,
        DEFAULT_KEEP_DEPLOYS_MAX.max(deploys_min),
    )?;
    if deploys_max < deploys_min {
        return Err(err(format!(
            "keep_deploys_max ({deploys_max}) must be at least keep_deploys_min ({deploys_min})"
        )));
    }
    let retention = Retention {
        deploys: keep("keep_deploys", raw.keep_deploys, DEFAULT_KEEP_DEPLOYS)?,
        deploys_min,
        deploys_max,
        deliveries: keep(
            "keep_deliveries",
            raw.keep_deliveries,
            DEFAULT_KEEP_DELIVERIES,
        )?,
        refused_deliveries: keep(
            "keep_refused_deliveries",
            raw.keep_refused_deliveries,
            DEFAULT_KEEP_REFUSED_DELIVERIES,
        )?,
        refused_per_minute: raw
            .max_refused_deliveries_per_minute
            .unwrap_or(DEFAULT_MAX_REFUSED_DELIVERIES_PER_MINUTE),
    };
    let max_deploy_log_bytes = match raw.max_deploy_log_bytes {
        Some(0) => return Err(err("max_deploy_log_bytes must be at least 1".into())),
        Some(n) => n,
        None => DEFAULT_MAX_DEPLOY_LOG_BYTES,
    };
    let links_off = raw.log_links.as_deref().map(str::trim) == Some("off");
    let log_links = match links_off {
        true => None,
        false => Some(
            duration("log_links", raw.log_links, DEFAULT_LOG_LINKS)
                .and_then(|d| non_zero("log_links", d))
                .map_err(|why| err(format!("{why}, or \"off\"")))?,
        ),
    };
    let body_timeout = duration("body_timeout", raw.body_timeout, DEFAULT_BODY_TIMEOUT)
        .and_then(|d| non_zero("body_timeout", d))
        .map_err(err)?;

    let callback_hosts = raw.callback_hosts.unwrap_or_else(|| {
        DEFAULT_CALLBACK_HOSTS
            .iter()
            .map(|h| h.to_string())
            .collect()
    });
    if let Some(bad) = callback_hosts
        .iter()
        .find(|h| h.is_empty() || h.contains(['/', ':', '@', ' ']))
    {
        return Err(err(format!(
            "callback_hosts entry {bad:?} is not a host name (like registry.hub.docker.com)"
        )));
    }

    let max_event_age = duration("max_event_age", raw.max_event_age, DEFAULT_MAX_EVENT_AGE)
        .and_then(|d| non_zero("max_event_age", d))
        .map_err(err)?;

    Ok(ServerConfig {
        listen,
        public_url,
        state_dir,
        max_body_bytes,
        max_concurrent_deploys,
        max_queued_deliveries,
        shutdown_grace,
        replay_window,
        header_timeout,
        max_body_bytes_in_flight,
        max_connections,
        write_timeout,
        retention,
        max_deploy_log_bytes,
        log_links,
        body_timeout,
        callback_hosts,
        max_event_age,
    })
}

fn validate_stack(
    index: usize,
    raw: RawStack,
    base_dir: &Path,
    sources: &dyn SecretSource,
) -> Result<StackConfig> {
    let name = match raw.name {
        Some(name) => name,
        None => {
            return Err(ConfigError::invalid(format!(
                "stacks[{index}]: name is required"
            )))
        }
    };
    let err = |message: String| ConfigError::invalid(format!("stack {name:?}: {message}"));
    if !is_stack_name(&name) {
        return Err(err(format!(
            "name must be 1 to {MAX_STACK_NAME_LEN} characters of A-Z a-z 0-9 . _ -, \
             starting with a letter or digit"
        )));
    }

    // Which sources a stack or service sets, and whether its patterns,
    // repositories and images are valid, is the component's to judge
    // (`validate-stacks`, called by `crate::stacks::validate`).
    let mut services = Vec::with_capacity(raw.services.len());
    let mut service_names = BTreeSet::new();
    for (i, service) in raw.services.into_iter().enumerate() {
        let service_name = match service.name {
            Some(n) if !n.is_empty() => n,
            Some(_) => return Err(err(format!("services[{i}]: name is empty"))),
            None => return Err(err(format!("services[{i}]: name is required"))),
        };
        let serr = |message: String| err(format!("service {service_name:?}: {message}"));
        if !service_names.insert(service_name.clone()) {
            return Err(serr("name is used by more than one service".into()));
        }
        services.push(ServiceConfig {
            name: service_name,
            repository: service.repository,
            branch: service.branch,
            tags: service.tags,
            image: service.image,
            selectable: service.selectable.unwrap_or(DEFAULT_SELECTABLE),
        });
    }

    // Secrets.
    let mut secrets = Vec::new();
    for (i, secret) in raw
        .secrets
        .map(|l| l.0)
        .unwrap_or_default()
        .into_iter()
        .enumerate()
    {
        if secret.is_empty() {
            return Err(err(format!("secrets[{i}] is empty")));
        }
        check_secret_len(&format!("secrets[{i}]"), &secret).map_err(&err)?;
        secrets.push(Secret(secret));
    }
    for var in raw.secrets_env.unwrap_or_default() {
        let value = read_env(sources, "secrets_env", &var).map_err(&err)?;
        check_secret_len(&format!("secrets_env: environment variable {var}"), &value)
            .map_err(&err)?;
        secrets.push(Secret(value));
    }
    if let Some(file) = raw.secrets_file {
        let path = resolve(base_dir, &file);
        let text = read_secret_file(sources, "secrets_file", &path).map_err(&err)?;
        let before = secrets.len();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            check_secret_len(
                &format!("secrets_file {}: line {}", path.display(), n + 1),
                line,
            )
            .map_err(&err)?;
            secrets.push(Secret(line.to_string()));
        }
        if secrets.len() == before {
            return Err(err(format!(
                "secrets_file {} holds no secret",
                path.display()
            )));
        }
    }

    // Hook token: at most one of hook_token, hook_token_env, hook_token_file.
    let given = [
        raw.hook_token.is_some(),
        raw.hook_token_env.is_some(),
        raw.hook_token_file.is_some(),
    ];
    if given.iter().filter(|&&g| g).count() > 1 {
        return Err(err(
            "set only one of hook_token, hook_token_env and hook_token_file".into(),
        ));
    }
    let hook_token = if let Some(token) = raw.hook_token {
        Some(check_hook_token("hook_token", token.0).map_err(&err)?)
    } else if let Some(var) = raw.hook_token_env {
        let value = read_env(sources, "hook_token_env", &var).map_err(&err)?;
        Some(check_hook_token("hook_token_env", value).map_err(&err)?)
    } else if let Some(file) = raw.hook_token_file {
        let path = resolve(base_dir, &file);
        let value = read_secret_file(sources, "hook_token_file", &path).map_err(&err)?;
        Some(check_hook_token("hook_token_file", value.trim().to_string()).map_err(&err)?)
    } else {
        None
    };

    let paths = raw.paths.unwrap_or_default();
    let skip_markers = raw
        .skip_markers
        .unwrap_or_else(|| DEFAULT_SKIP_MARKERS.iter().map(|s| s.to_string()).collect());
    non_empty_items("skip_markers", &skip_markers).map_err(&err)?;

    // The action: command xor http.
    let action = match (raw.command, raw.http) {
        (Some(_), Some(_)) => return Err(err("set either command or http, not both".into())),
        (None, None) => return Err(err("set command or http".into())),
        (Some(argv), None) => {
            check_argv("command", &argv).map_err(&err)?;
            let workdir = match raw.workdir {
                Some(dir) if dir.as_os_str().is_empty() => {
                    return Err(err("workdir is empty".into()))
                }
                Some(dir) => resolve(base_dir, &dir),
                None => base_dir.to_path_buf(),
            };
            let env = raw.env.map(|m| m.0).unwrap_or_default();
            check_env("env", &env).map_err(&err)?;
            DeployAction::Command { argv, workdir, env }
        }
        (None, Some(http)) => {
            if raw.workdir.is_some() {
                return Err(err("workdir only applies to command, not http".into()));
            }
            if raw.env.is_some() {
                return Err(err("env only applies to command, not http".into()));
            }
            let Some(url) = http.url else {
                return Err(err("http.url is required".into()));
            };
            // The URL may carry a credential, so it is not echoed.
            check_http_url(&url.0, true).map_err(|why| err(format!("http.url {why}")))?;
            let headers = http.headers.map(|m| m.0).unwrap_or_default();
            for name in headers.keys() {
                if name.is_empty() || !name.bytes().all(is_header_name_byte) {
                    return Err(err(format!(
                        "http.headers: {name:?} is not a valid header name"
                    )));
                }
            }
            for (name, value) in &headers {
                if value.chars().any(|c| c == '\r' || c == '\n' || c == '\0') {
                    return Err(err(format!(
                        "http.headers: the value of {name:?} contains a line break or NUL"
                    )));
                }
            }
            DeployAction::Http {
                url: url.0,
                headers,
            }
        }
    };

    let timeout = duration("timeout", raw.timeout, DEFAULT_DEPLOY_TIMEOUT)
        .and_then(|d| non_zero("timeout", d))
        .map_err(&err)?;

    let mut profiles = BTreeMap::new();
    for (profile_name, profile) in raw.profiles {
        if !is_name(&profile_name) {
            return Err(err(format!(
                "profile {profile_name:?}: name must be 1 or more characters of A-Z a-z 0-9 . _ -"
            )));
        }
        let perr = |message: String| err(format!("profile {profile_name:?}: {message}"));
        let is_http = matches!(action, DeployAction::Http { .. });
        if is_http && profile.command.is_some() {
            return Err(perr(
                "command only applies to command stacks, not http".into(),
            ));
        }
        if is_http && profile.env.is_some() {
            return Err(perr("env only applies to command stacks, not http".into()));
        }
        if let Some(argv) = &profile.command {
            check_argv("command", argv).map_err(perr)?;
        }
        let env = profile.env.map(|m| m.0).unwrap_or_default();
        check_env("env", &env).map_err(perr)?;
        profiles.insert(
            profile_name,
            ProfileConfig {
                command: profile.command,
                env,
                selectable: profile.selectable.unwrap_or(DEFAULT_SELECTABLE),
            },
        );
    }

    let environment_url = match raw.environment_url {
        Some(url) => {
            check_http_url(&url, true)
                .map_err(|why| err(format!("environment_url {url:?} {why}")))?;
            Some(url)
        }
        None => None,
    };

    let github = match raw.github {
        Some(github) => Some(validate_github(&name, github, base_dir, sources).map_err(&err)?),
        None => None,
    };

    let manual = raw.manual.unwrap_or(DEFAULT_MANUAL);
    if manual == ManualSetting::Signed && secrets.is_empty() {
        return Err(err(
            "manual = \"signed\" needs secrets to sign manual triggers with".into(),
        ));
    }

    Ok(StackConfig {
        name: name.clone(),
        repository: raw.repository,
        branch: raw.branch,
        tags: raw.tags,
        image: raw.image,
        services,
        secrets,
        hook_token,
        ping: raw.ping.unwrap_or(PingSetting::Deploy),
        paths,
        skip_markers,
        action,
        timeout,
        profiles,
        environment_url,
        github,
        manual,
        query_services: raw.query_services.unwrap_or(DEFAULT_QUERY_SERVICES),
    })
}

fn validate_github(
    stack: &str,
    raw: RawGithub,
    base_dir: &Path,
    sources: &dyn SecretSource,
) -> Result<GithubConfig, String> {
    if raw.token.is_some() {
        return Err(
            "github.token is not allowed: keep the token out of the config file, use token_env or token_file"
                .into(),
        );
    }
    let repository = match raw.repository {
        Some(repo) if is_owner_name(&repo) => repo,
        Some(repo) => return Err(format!("github.repository {repo:?} must be owner/name")),
        None => return Err("github.repository is required".into()),
    };
    let api_url = raw
        .api_url
        .unwrap_or_else(|| DEFAULT_GITHUB_API_URL.to_string());
    check_http_url(&api_url, false).map_err(|why| format!("github.api_url {api_url:?} {why}"))?;
    if !is_https_or_loopback_http(&api_url) {
        return Err(format!(
            "github.api_url {api_url:?} must be https (plain http only to a loopback host): \
             the token is sent with every request"
        ));
    }
    let api_url = api_url.trim_end_matches('/').to_string();

    let token = match (raw.token_env, raw.token_file) {
        (Some(_), Some(_)) => {
            return Err("set only one of github.token_env and github.token_file".into())
        }
        (None, None) => {
            return Err("github needs a token: set github.token_env or github.token_file".into())
        }
        (Some(var), None) => read_env(sources, "github.token_env", &var)?,
        (None, Some(file)) => {
            let path = resolve(base_dir, &file);
            let token = read_secret_file(sources, "github.token_file", &path)?
                .trim()
                .to_string();
            if token.is_empty() {
                return Err(format!("github.token_file {} is empty", path.display()));
            }
            token
        }
    };

    let environment = raw.environment.unwrap_or_else(|| stack.to_string());
    if environment.is_empty() {
        return Err("github.environment is empty".into());
    }
    let production_environment = raw
        .production_environment
        .unwrap_or(environment == PRODUCTION_ENVIRONMENT_NAME);
    let required_contexts = raw
        .required_contexts
        .unwrap_or_else(default_required_contexts);
    non_empty_items("github.required_contexts", &required_contexts)?;

    Ok(GithubConfig {
        repository,
        api_url,
        token: Some(Secret(token)),
        environment,
        transient_environment: raw
            .transient_environment
            .unwrap_or(DEFAULT_TRANSIENT_ENVIRONMENT),
        production_environment,
        auto_merge: raw.auto_merge.unwrap_or(DEFAULT_AUTO_MERGE),
        required_contexts,
        wait_for_event: raw.wait_for_event.unwrap_or(DEFAULT_WAIT_FOR_EVENT),
        accept_foreign_deployments: raw
            .accept_foreign_deployments
            .unwrap_or(DEFAULT_ACCEPT_FOREIGN_DEPLOYMENTS),
    })
}

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// `base_dir.join(path)`, made absolute (`.` components removed).
fn resolve(base_dir: &Path, path: &Path) -> PathBuf {
    let joined = base_dir.join(path);
    std::path::absolute(&joined).unwrap_or(joined)
}

/// Parses an optional humantime duration (`"10m"`, `"1h 30m"`).
fn duration(key: &str, value: Option<String>, default: Duration) -> Result<Duration, String> {
    match value {
        None => Ok(default),
        Some(text) => humantime::parse_duration(text.trim())
            .map_err(|_| format!("{key} {text:?} is not a duration (like \"30s\" or \"10m\")")),
    }
}

fn non_zero(key: &str, value: Duration) -> Result<Duration, String> {
    if value.is_zero() {
        Err(format!("{key} must be greater than zero"))
    } else {
        Ok(value)
    }
}

/// A stack name: `[A-Za-z0-9][A-Za-z0-9._-]*`, at most
/// [`MAX_STACK_NAME_LEN`]. Names become file names (`logs/<stack>/`,
/// `locks/<stack>.lock`) and command-line values, so `.`, `..`, hidden
/// names and names that read as options (`-x`) are refused.
pub fn is_stack_name(name: &str) -> bool {
    name.len() <= MAX_STACK_NAME_LEN
        && name
            .as_bytes()
            .first()
            .is_some_and(u8::is_ascii_alphanumeric)
        && is_name(name)
}

/// `[A-Za-z0-9._-]+`.
fn is_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// `owner/name`, both parts `[A-Za-z0-9._-]+`.
fn is_owner_name(repo: &str) -> bool {
    matches!(repo.split_once('/'), Some((owner, name)) if is_name(owner) && is_name(name))
}

fn non_empty_items(key: &str, items: &[String]) -> Result<(), String> {
    match items.iter().position(String::is_empty) {
        Some(i) => Err(format!("{key}[{i}] is empty")),
        None => Ok(()),
    }
}

fn check_argv(key: &str, argv: &[String]) -> Result<(), String> {
    match argv.first() {
        None => Err(format!("{key} is empty")),
        Some(program) if program.is_empty() => Err(format!("{key}[0] is empty")),
        Some(_) => match argv.iter().position(|arg| arg.contains('\0')) {
            Some(i) => Err(format!("{key}[{i}] contains a NUL character")),
            None => Ok(()),
        },
    }
}

/// Environment names must be non-empty without `=` or NUL; values (which may
/// be secret, so never echoed) must not contain NUL.
fn check_env(key: &str, env: &BTreeMap<String, String>) -> Result<(), String> {
    for (name, value) in env {
        if name.is_empty() || name.contains('=') || name.contains('\0') {
            return Err(format!("{key}: {name:?} is not a valid variable name"));
        }
        if value.contains('\0') {
            return Err(format!(
                "{key}: the value of {name} contains a NUL character"
            ));
        }
    }
    Ok(())
}

/// RFC 9110 `tchar`.
fn is_header_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Reads a secret from environment variable `var`; the error names the key
/// and the variable, never a value.
fn read_env(sources: &dyn SecretSource, key: &str, var: &str) -> Result<String, String> {
    if var.is_empty() {
        return Err(format!("{key} names an empty variable"));
    }
    match sources.var(var) {
        Ok(value) if value.is_empty() => Err(format!("{key}: environment variable {var} is empty")),
        Ok(value) => Ok(value),
        Err(std::env::VarError::NotPresent) => {
            Err(format!("{key}: environment variable {var} is not set"))
        }
        Err(std::env::VarError::NotUnicode(_)) => Err(format!(
            "{key}: environment variable {var} is not valid unicode"
        )),
    }
}

fn read_secret_file(sources: &dyn SecretSource, key: &str, path: &Path) -> Result<String, String> {
    sources.read(path).map_err(|e| {
        format!(
            "{key} {}: {}",
            path.display(),
            lowercase_first(&e.to_string())
        )
    })
}

fn lowercase_first(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// A webhook secret must be at least [`MIN_SECRET_BYTES`] long. The error
/// names where the secret came from, never the secret.
fn check_secret_len(what: &str, secret: &str) -> Result<(), String> {
    if secret.len() < MIN_SECRET_BYTES {
        return Err(format!(
            "{what} is shorter than the minimum of {MIN_SECRET_BYTES} bytes for a secret \
             (generate one with `openssl rand -hex 32`)"
        ));
    }
    Ok(())
}

/// A hook token must be at least [`MIN_HOOK_TOKEN_LEN`] characters of
/// `[A-Za-z0-9_-]`. The error never contains the token.
fn check_hook_token(key: &str, token: String) -> Result<Secret, String> {
    let alphabet_ok = token
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if token.len() < MIN_HOOK_TOKEN_LEN || !alphabet_ok {
        return Err(format!(
            "{key} must be at least {MIN_HOOK_TOKEN_LEN} characters of A-Z a-z 0-9 _ - (128 bits)"
        ));
    }
    Ok(Secret(token))
}

/// Whether `url` is `https`, or `http` to a loopback host (`localhost`,
/// `127.0.0.0/8`, `::1`), where no one on the network can read what is sent.
pub fn is_https_or_loopback_http(url: &str) -> bool {
    let Ok(url) = reqwest::Url::parse(url) else {
        return false;
    };
    match url.scheme() {
        "https" => true,
        "http" => match url.host_str() {
            Some(host) => {
                let bare = host.trim_start_matches('[').trim_end_matches(']');
                host.eq_ignore_ascii_case("localhost")
                    || bare
                        .parse::<std::net::IpAddr>()
                        .is_ok_and(|ip| ip.is_loopback())
            }
            None => false,
        },
        _ => false,
    }
}

/// Checks that `url` is an absolute http or https URL with a host, no
/// whitespace, no fragment, and (unless `allow_query`) no query. Returns the
/// reason as text that follows the key, e.g. `is not an http(s) URL`.
fn check_http_url(url: &str, allow_query: bool) -> Result<(), &'static str> {
    const NOT_HTTP: &str = "is not an http(s) URL";
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("must not contain whitespace");
    }
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(NOT_HTTP);
    };
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return Err(NOT_HTTP);
    }
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let tail = &rest[authority_end..];
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let (host, port) = if let Some(after_bracket) = host_port.strip_prefix('[') {
        match after_bracket.split_once(']') {
            Some((ip, port)) if ip.parse::<std::net::Ipv6Addr>().is_ok() => {
                (ip, port.strip_prefix(':').map(Some).unwrap_or(None))
            }
            _ => return Err("has an invalid host"),
        }
    } else {
        match host_port.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (host_port, None),
        }
    };
    if host.is_empty() {
        return Err("has no host");
    }
    if !host_port.starts_with('[')
        && !host
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '-' | '.' | '_' | '%'))
    {
        return Err("has an invalid host");
    }
    if let Some(port) = port {
        if port.parse::<u16>().is_err() {
            return Err("has an invalid port");
        }
    }
    if tail.contains('#') {
        return Err("must not have a fragment");
    }
    if !allow_query && tail.contains('?') {
        return Err("must not have a query");
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> PathBuf {
        PathBuf::from("/etc/redeploy")
    }

    fn parse_ok(text: &str) -> Config {
        match parse(text, &base()) {
            Ok(config) => config,
            Err(err) => panic!("expected the config to parse, got: {err}"),
        }
    }

    fn parse_err(text: &str) -> String {
        match parse(text, &base()) {
            Ok(_) => panic!("expected an error for:\n{text}"),
            Err(err) => err.to_string(),
        }
    }

    fn assert_err(text: &str, expected: &[&str]) {
        let message = parse_err(text);
        for part in expected {
            assert!(
                message.contains(part),
                "error {message:?} does not contain {part:?}"
            );
        }
        assert!(!message.ends_with('.'), "trailing period: {message:?}");
    }

    /// A unique name for an env var or temp file used by one test.
    fn unique(tag: &str) -> String {
        format!(
            "REDEPLOY_CONFIG_TEST_{}_{}_{}",
            tag,
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        )
    }

    fn set_env(name: &str, value: &str) {
        // Edition 2021: set_var is safe; each test uses its own unique name.
        #[allow(unused_unsafe)]
        unsafe {
            std::env::set_var(name, value)
        };
    }

    fn temp_file(tag: &str, contents: &str) -> PathBuf {
        let path = std::env::temp_dir().join(unique(tag));
        std::fs::write(&path, contents).unwrap();
        path
    }

    const MINIMAL: &str = r#"
        [[stacks]]
        name = "web"
        repository = "octocat/Hello-World"
        branch = "main"
        command = ["./deploy.sh"]
    "#;

    #[test]
    fn parses_a_complete_example() {
        let gh_var = unique("GH");
        set_env(&gh_var, "ghp_secret_token_value");
        let env_secret_var = unique("HOOK");
        set_env(&env_secret_var, "from-env-secret");
        let text = format!(
            r#"
            [server]
            listen = "0.0.0.0:9000"
            public_url = "https://deploy.example.com/"
            state_dir = "/var/lib/redeploy"
            max_body_bytes = 1048576
            max_concurrent_deploys = 2
            max_queued_deliveries = 50
            shutdown_grace = "1m"
            header_timeout = "5s"
            body_timeout = "20s"

            [[stacks]]
            name = "web"
            repository = "octocat/Hello-World"
            branch = "main"
            tags = "v*"
            secrets = ["s3cret-s3cret", "0ld-s3cret"]
            secrets_env = ["{env_secret_var}"]
            hook_token = "abcdefghijklmnopqrstuvwxyz_-0123"
            ping = "acknowledge"
            paths = ["src/**", "Dockerfile"]
            skip_markers = ["[no deploy]"]
            command = ["./deploy.sh", "--fast"]
            workdir = "app"
            env = {{ APP_ENV = "production" }}
            timeout = "15m"
            environment_url = "https://web.example.com"

            [stacks.profiles.fast]
            command = ["./deploy.sh", "--faster"]
            env = {{ FAST = "1" }}

            [stacks.profiles.plain]

            [stacks.github]
            repository = "octocat/Hello-World"
            api_url = "https://ghe.example.com/api/v3/"
            token_env = "{gh_var}"
            environment = "prod"
            transient_environment = true
            production_environment = true
            auto_merge = true
            required_contexts = ["ci/build"]
            wait_for_event = false

            [[stacks]]
            name = "multi"
            http = {{ url = "https://deploy.internal/hooks/multi?x=1", headers = {{ Authorization = "Bearer x" }} }}

            [[stacks.services]]
            name = "api"
            repository = "https://github.com/acme/api.git"
            branch = "main"

            [[stacks.services]]
            name = "worker"
            image = "acme/worker"
            tags = "v*"
            "#
        );
        let config = parse_ok(&text);

        assert_eq!(config.base_dir, base());
        let server = &config.server;
        assert_eq!(server.listen, "0.0.0.0:9000".parse().unwrap());
        assert_eq!(
            server.public_url.as_deref(),
            Some("https://deploy.example.com")
        );
        assert_eq!(server.state_dir, PathBuf::from("/var/lib/redeploy"));
        assert_eq!(server.max_body_bytes, 1048576);
        assert_eq!(server.max_concurrent_deploys, 2);
        assert_eq!(server.max_queued_deliveries, 50);
        assert_eq!(server.shutdown_grace, Duration::from_secs(60));
        assert_eq!(server.header_timeout, Duration::from_secs(5));
        assert_eq!(server.body_timeout, Duration::from_secs(20));

        let web = config.stack("web").unwrap();
        assert_eq!(web.repository.as_deref(), Some("octocat/Hello-World"));
        assert_eq!(web.branch.as_deref(), Some("main"));
        assert_eq!(web.tags.as_deref(), Some("v*"));
        assert_eq!(web.image, None);
        assert!(web.services.is_empty());
        let secrets: Vec<&str> = web.secrets.iter().map(Secret::expose).collect();
        assert_eq!(secrets, ["s3cret-s3cret", "0ld-s3cret", "from-env-secret"]);
        assert_eq!(
            web.hook_token.as_ref().map(Secret::expose),
            Some("abcdefghijklmnopqrstuvwxyz_-0123")
        );
        assert_eq!(web.ping, PingSetting::Acknowledge);
        assert_eq!(web.paths, ["src/**", "Dockerfile"]);
        assert_eq!(web.skip_markers, ["[no deploy]"]);
        match &web.action {
            DeployAction::Command { argv, workdir, env } => {
                assert_eq!(argv, &["./deploy.sh", "--fast"]);
                assert_eq!(workdir, &PathBuf::from("/etc/redeploy/app"));
                assert_eq!(env.get("APP_ENV").map(String::as_str), Some("production"));
            }
            other => panic!("expected a command, got {other:?}"),
        }
        assert_eq!(web.timeout, Duration::from_secs(15 * 60));
        let fast = &web.profiles["fast"];
        assert_eq!(
            fast.command.as_deref(),
            Some(&["./deploy.sh".to_string(), "--faster".to_string()][..])
        );
        assert_eq!(fast.env.get("FAST").map(String::as_str), Some("1"));
        let plain = &web.profiles["plain"];
        assert!(plain.command.is_none() && plain.env.is_empty());
        assert_eq!(
            web.environment_url.as_deref(),
            Some("https://web.example.com")
        );
        let gh = web.github.as_ref().unwrap();
        assert_eq!(gh.repository, "octocat/Hello-World");
        assert_eq!(gh.api_url, "https://ghe.example.com/api/v3");
        assert_eq!(
            gh.token.as_ref().map(Secret::expose),
            Some("ghp_secret_token_value")
        );
        assert_eq!(gh.environment, "prod");
        assert!(gh.transient_environment);
        assert!(gh.production_environment);
        assert!(gh.auto_merge);
        assert_eq!(gh.required_contexts, ["ci/build"]);
        assert!(!gh.wait_for_event);

        let multi = config.stack("multi").unwrap();
        assert_eq!(multi.repository, None);
        assert_eq!(multi.services.len(), 2);
        assert_eq!(multi.services[0].name, "api");
        assert_eq!(
            multi.services[0].repository.as_deref(),
            Some("https://github.com/acme/api.git")
        );
        assert_eq!(multi.services[0].branch.as_deref(), Some("main"));
        assert_eq!(multi.services[1].name, "worker");
        assert_eq!(multi.services[1].image.as_deref(), Some("acme/worker"));
        assert_eq!(multi.services[1].tags.as_deref(), Some("v*"));
        match &multi.action {
            DeployAction::Http { url, headers } => {
                assert_eq!(url, "https://deploy.internal/hooks/multi?x=1");
                assert_eq!(
                    headers.get("Authorization").map(String::as_str),
                    Some("Bearer x")
                );
            }
            other => panic!("expected http, got {other:?}"),
        }
        assert!(config.stack("nope").is_none());
    }

    #[test]
    fn server_defaults() {
        let config = parse_ok("");
        let server = &config.server;
        assert_eq!(server.listen, DEFAULT_LISTEN.parse().unwrap());
        assert_eq!(server.public_url, None);
        assert_eq!(server.state_dir, PathBuf::from("/etc/redeploy/state"));
        assert_eq!(server.max_body_bytes, 25 * 1024 * 1024);
        assert_eq!(server.max_concurrent_deploys, 4);
        assert_eq!(server.max_queued_deliveries, 1000);
        assert_eq!(server.shutdown_grace, Duration::from_secs(30));
        assert_eq!(server.header_timeout, Duration::from_secs(10));
        assert_eq!(server.body_timeout, Duration::from_secs(30));
        assert!(config.stacks.is_empty());
    }

    #[test]
    fn stack_defaults() {
        let config = parse_ok(MINIMAL);
        let web = config.stack("web").unwrap();
        assert!(web.secrets.is_empty());
        assert!(web.hook_token.is_none());
        assert_eq!(web.ping, PingSetting::Deploy);
        assert!(web.paths.is_empty());
        assert_eq!(web.skip_markers, ["[skip deploy]", "[deploy skip]"]);
        assert_eq!(web.timeout, Duration::from_secs(600));
        assert!(web.profiles.is_empty());
        assert!(web.environment_url.is_none());
        assert!(web.github.is_none());
        assert!(web.tags.is_none());
        match &web.action {
            DeployAction::Command { workdir, env, .. } => {
                assert_eq!(workdir, &base());
                assert!(env.is_empty());
            }
            other => panic!("expected a command, got {other:?}"),
        }
    }

    #[test]
    fn github_defaults() {
        let var = unique("GHDEF");
        set_env(&var, "tok");
        let config = parse_ok(&format!(
            "{MINIMAL}\n[stacks.github]\nrepository = \"o/r\"\ntoken_env = \"{var}\"\n"
        ));
        let gh = config.stack("web").unwrap().github.clone().unwrap();
        assert_eq!(gh.api_url, "https://api.github.com");
        assert_eq!(gh.environment, "web");
        assert!(!gh.transient_environment);
        assert!(!gh.production_environment);
        assert!(!gh.auto_merge);
        assert!(gh.required_contexts.is_empty());
        assert!(gh.wait_for_event);

        // production_environment follows environment == "production".
        let config = parse_ok(&format!(
            "{MINIMAL}\n[stacks.github]\nrepository = \"o/r\"\ntoken_env = \"{var}\"\nenvironment = \"production\"\n"
        ));
        assert!(
            config
                .stack("web")
                .unwrap()
                .github
                .as_ref()
                .unwrap()
                .production_environment
        );
        // A plain-http loopback API is allowed (tests use a stand-in).
        let config = parse_ok(&format!(
            "{MINIMAL}\n[stacks.github]\nrepository = \"o/r\"\ntoken_env = \"{var}\"\napi_url = \"http://127.0.0.1:3456\"\n"
        ));
        assert_eq!(
            config
                .stack("web")
                .unwrap()
                .github
                .as_ref()
                .unwrap()
                .api_url,
            "http://127.0.0.1:3456"
        );
    }

    #[test]
    fn relative_paths_resolve_against_base_dir() {
        let config = parse_ok(&format!(
            "[server]\nstate_dir = \"./data/../db\"\n{}",
            MINIMAL.replace("command", "workdir = \"./site\"\ncommand")
        ));
        // `std::path::absolute` drops `.` but keeps `..` (symlink-safe).
        assert_eq!(
            config.server.state_dir,
            PathBuf::from("/etc/redeploy/data/../db")
        );
        match &config.stacks[0].action {
            DeployAction::Command { workdir, .. } => {
                assert_eq!(workdir, &PathBuf::from("/etc/redeploy/site"))
            }
            other => panic!("expected a command, got {other:?}"),
        }
    }

    #[test]
    fn server_validation_errors() {
        assert_err(
            "[server]\nlisten = \"nowhere\"",
            &["server: listen \"nowhere\""],
        );
        assert_err(
            "[server]\npublic_url = \"ftp://x\"",
            &["server: public_url \"ftp://x\" is not an http(s) URL"],
        );
        assert_err(
            "[server]\npublic_url = \"https://x/?a=b\"",
            &["server: public_url", "must not have a query"],
        );
        assert_err(
            "[server]\npublic_url = \"https://\"",
            &["public_url", "has no host"],
        );
        assert_err(
            "[server]\nmax_body_bytes = 0",
            &["server: max_body_bytes must be at least 1"],
        );
        assert_err(
            "[server]\nmax_concurrent_deploys = 0",
            &["server: max_concurrent_deploys must be at least 1"],
        );
        assert_err(
            "[server]\nmax_queued_deliveries = 0",
            &["server: max_queued_deliveries must be at least 1"],
        );
        assert_err(
            "[server]\nshutdown_grace = \"soon\"",
            &["server: shutdown_grace \"soon\" is not a duration"],
        );
        assert_err(
            "[server]\nheader_timeout = \"0s\"",
            &["server: header_timeout must be greater than zero"],
        );
        assert_err(
            "[server]\nbody_timeout = \"0s\"",
            &["server: body_timeout must be greater than zero"],
        );
        assert_err(
            "[server]\nmax_body_bytes = -1",
            &["line 2", "max_body_bytes"],
        );
    }

    #[test]
    fn stack_validation_errors() {
        let stack = |body: &str| format!("[[stacks]]\nname = \"web\"\n{body}\n");
        let check = |body: &str, expected: &[&str]| assert_err(&stack(body), expected);
        check("image = \"i\"", &["stack \"web\": set command or http"]);
        check(
            "image = \"i\"\ncommand = [\"x\"]\nhttp = { url = \"https://h\" }",
            &["stack \"web\": set either command or http, not both"],
        );
        check(
            "image = \"i\"\ncommand = []",
            &["stack \"web\": command is empty"],
        );
        check(
            "image = \"i\"\ncommand = [\"\"]",
            &["stack \"web\": command[0] is empty"],
        );
        check(
            "image = \"i\"\ncommand = [\"x\"]\ntimeout = \"10x\"",
            &["stack \"web\": timeout \"10x\" is not a duration"],
        );
        check(
            "image = \"i\"\ncommand = [\"x\"]\ntimeout = \"0s\"",
            &["stack \"web\": timeout must be greater than zero"],
        );
        check(
            "image = \"i\"\ncommand = [\"x\"]\nskip_markers = [\"\"]",
            &["stack \"web\": skip_markers[0] is empty"],
        );
        check(
            "image = \"i\"\ncommand = [\"x\"]\nsecrets = [\"long-enough\", \"\"]",
            &["stack \"web\": secrets[1] is empty"],
        );
        check(
            "image = \"i\"\ncommand = [\"x\"]\nenvironment_url = \"web.example.com\"",
            &["stack \"web\": environment_url \"web.example.com\" is not an http(s) URL"],
        );
        check(
            "image = \"i\"\nhttp = { url = \"ftp://h\" }",
            &["stack \"web\": http.url is not an http(s) URL"],
        );
        check(
            "image = \"i\"\nhttp = { headers = { A = \"b\" } }",
            &["stack \"web\": http.url is required"],
        );
        check(
            "image = \"i\"\nhttp = { url = \"https://h\", headers = { \"Bad Name\" = \"b\" } }",
            &["stack \"web\": http.headers: \"Bad Name\""],
        );
        check(
            "image = \"i\"\nhttp = { url = \"https://h\" }\nenv = { A = \"b\" }",
            &["stack \"web\": env only applies to command"],
        );
        check(
            "image = \"i\"\nhttp = { url = \"https://h\" }\nworkdir = \"x\"",
            &["stack \"web\": workdir only applies to command"],
        );
        check(
            "image = \"i\"\ncommand = [\"x\"]\nenv = { \"A=B\" = \"c\" }",
            &["stack \"web\": env: \"A=B\" is not a valid variable name"],
        );
        check(
            "image = \"i\"\ncommand = [\"x\"]\nhook_token = \"short\"",
            &["stack \"web\": hook_token must be at least 22 characters"],
        );
        check(
            "image = \"i\"\ncommand = [\"x\"]\nhook_token = \"abcdefghijklmnopqrstuvwxyz!\"",
            &["stack \"web\": hook_token must be at least 22 characters"],
        );
        check("image = \"i\"\ncommand = [\"x\"]\nhook_token = \"abcdefghijklmnopqrstuvwxyz\"\nhook_token_env = \"X\"", &["stack \"web\": set only one of hook_token"]);
        check(
            "image = \"i\"\ncommand = [\"x\"]\nping = \"maybe\"",
            &["unknown variant `maybe`", "line 5"],
        );
        check(
            "image = \"i\"\ncommand = [\"x\"]\n[stacks.profiles.\"bad name\"]",
            &["stack \"web\": profile \"bad name\": name must be"],
        );
        check(
            "image = \"i\"\ncommand = [\"x\"]\n[stacks.profiles.\"\"]",
            &["stack \"web\": profile \"\": name must be"],
        );
        check(
            "image = \"i\"\ncommand = [\"x\"]\n[stacks.profiles.fast]\ncommand = []",
            &["stack \"web\": profile \"fast\": command is empty"],
        );
        check("image = \"i\"\nhttp = { url = \"https://h\" }\n[stacks.profiles.fast]\ncommand = [\"y\"]", &["stack \"web\": profile \"fast\": command only applies to command stacks"]);
        check(
            "command = [\"x\"]\n[[stacks.services]]\nimage = \"a\"",
            &["stack \"web\": services[0]: name is required"],
        );
        check(
            "command = [\"x\"]\n[[stacks.services]]\nname = \"\"\nimage = \"a\"",
            &["stack \"web\": services[0]: name is empty"],
        );
        check("command = [\"x\"]\n[[stacks.services]]\nname = \"api\"\nimage = \"a\"\n[[stacks.services]]\nname = \"api\"\nimage = \"b\"", &["stack \"web\": service \"api\": name is used by more than one service"]);
    }

    #[test]
    fn stack_name_errors() {
        assert_err(
            "[[stacks]]\nimage = \"i\"\ncommand = [\"x\"]",
            &["stacks[0]: name is required"],
        );
        assert_err(
            "[[stacks]]\nname = \"a b\"\nimage = \"i\"\ncommand = [\"x\"]",
            &["stack \"a b\": name must be 1 to 64 characters"],
        );
        let long = "a".repeat(65);
        assert_err(
            &format!("[[stacks]]\nname = \"{long}\"\nimage = \"i\"\ncommand = [\"x\"]"),
            &["name must be 1 to 64 characters"],
        );
        parse_ok(&format!(
            "[[stacks]]\nname = \"{}\"\nimage = \"i\"\ncommand = [\"x\"]",
            "a".repeat(64)
        ));
        assert_err(
            &format!("{MINIMAL}{MINIMAL}"),
            &["stack \"web\": name is used by more than one stack"],
        );
    }

    #[test]
    fn stack_names_that_escape_the_logs_directory_are_refused() {
        for bad in [".", "..", ".hidden", "-x", "_x"] {
            assert_err(
                &format!("[[stacks]]\nname = \"{bad}\"\nimage = \"i\"\ncommand = [\"x\"]"),
                &[
                    &format!("stack {bad:?}: name must be 1 to 64 characters"),
                    "starting with a letter or digit",
                ],
            );
        }
        parse_ok("[[stacks]]\nname = \"web.v2_a-b\"\nimage = \"i\"\ncommand = [\"x\"]");
    }

    #[test]
    fn a_secret_shorter_than_the_minimum_is_refused_without_echoing_it() {
        let stack = |secrets: &str| {
            format!("[[stacks]]\nname = \"web\"\nimage = \"i\"\ncommand = [\"x\"]\n{secrets}")
        };
        let message = parse_err(&stack("secrets = [\"q\"]"));
        assert!(
            message.contains("stack \"web\": secrets[0] is shorter than the minimum of 8 bytes"),
            "{message}"
        );
        assert!(!message.contains("\"q\""), "{message}");
        parse_ok(&stack("secrets = [\"topsecret\"]"));
        let var = unique("SHORTSECRET");
        set_env(&var, "1234567");
        assert_err(
            &stack(&format!("secrets_env = [\"{var}\"]")),
            &[&format!(
                "secrets_env: environment variable {var} is shorter than the minimum of 8 bytes"
            )],
        );
        let file = temp_file("shortsecret", "long-enough-secret\nshort\n");
        assert_err(
            &stack(&format!("secrets_file = {:?}", file.display().to_string())),
            &["line 2 is shorter than the minimum of 8 bytes"],
        );
    }

    #[test]
    fn a_secret_file_over_the_limit_is_refused_not_cut() {
        let mut text = "a-real-secret-1\n".repeat((MAX_SECRET_FILE_BYTES / 16) as usize);
        text.push_str("the-current-secret\n");
        let file = temp_file("bigsecrets", &text);
        assert_err(
            &format!(
                "[[stacks]]\nname = \"web\"\nimage = \"i\"\ncommand = [\"x\"]\nsecrets_file = {:?}",
                file.display().to_string()
            ),
            &["secrets_file", "is over 65536 bytes"],
        );
    }

    #[test]
    fn a_config_file_over_the_limit_is_refused() {
        let mut text = MINIMAL.to_string();
        text.push_str(&format!("# {}\n", "x".repeat(MAX_CONFIG_BYTES as usize)));
        let file = temp_file("bigconfig", &text);
        let message = load(&file).unwrap_err().to_string();
        assert!(message.contains("is over 1048576 bytes"), "{message}");
    }

    #[test]
    fn api_url_must_be_https_or_loopback_http() {
        let var = unique("GHAPIURL");
        set_env(&var, "tok");
        let gh = |url: &str| {
            format!("{MINIMAL}\n[stacks.github]\nrepository = \"o/r\"\ntoken_env = \"{var}\"\napi_url = \"{url}\"\n")
        };
        for bad in [
            "http://ghe.example.com/api/v3",
            "http://10.0.0.1",
            "http://127.0.0.1.example.com",
        ] {
            assert_err(
                &gh(bad),
                &[&format!("stack \"web\": github.api_url {bad:?} must be https (plain http only to a loopback host)")],
            );
        }
        for good in [
            "https://ghe.example.com/api/v3",
            "http://127.0.0.1:3456",
            "http://localhost:1",
            "http://[::1]:8",
        ] {
            parse_ok(&gh(good));
        }
    }

    #[test]
    fn github_validation_errors() {
        let var = unique("GHERR");
        set_env(&var, "tok");
        let gh = |body: &str| format!("{MINIMAL}\n[stacks.github]\n{body}\n");
        assert_err(
            &gh(&format!("token_env = \"{var}\"")),
            &["stack \"web\": github.repository is required"],
        );
        assert_err(
            &gh(&format!(
                "repository = \"https://github.com/o/r\"\ntoken_env = \"{var}\""
            )),
            &["stack \"web\": github.repository \"https://github.com/o/r\" must be owner/name"],
        );
        assert_err(
            &gh("repository = \"o/r\""),
            &[
                "stack \"web\": github needs a token",
                "token_env",
                "token_file",
            ],
        );
        let missing = unique("GHMISSING");
        assert_err(
            &gh(&format!("repository = \"o/r\"\ntoken_env = \"{missing}\"")),
            &["stack \"web\": github.token_env", &missing, "is not set"],
        );
        assert_err(
            &gh(&format!(
                "repository = \"o/r\"\ntoken_env = \"{var}\"\napi_url = \"api.github.com\""
            )),
            &["stack \"web\": github.api_url \"api.github.com\" is not an http(s) URL"],
        );
        assert_err(
            &gh(&format!(
                "repository = \"o/r\"\ntoken_env = \"{var}\"\nrequired_contexts = [\"\"]"
            )),
            &["stack \"web\": github.required_contexts[0] is empty"],
        );
        let missing_file = std::env::temp_dir().join(unique("GHFILE"));
        assert_err(
            &gh(&format!(
                "repository = \"o/r\"\ntoken_file = \"{}\"",
                missing_file.display()
            )),
            &["stack \"web\": github.token_file", "no such file"],
        );
    }

    #[test]
    fn github_token_in_toml_is_rejected_without_echoing_it() {
        let message = parse_err(&format!(
            "{MINIMAL}\n[stacks.github]\nrepository = \"o/r\"\ntoken = \"ghp_TOPSECRET\"\n"
        ));
        assert!(
            message.contains("stack \"web\": github.token is not allowed"),
            "{message}"
        );
        assert!(
            message.contains("token_env") && message.contains("token_file"),
            "{message}"
        );
        assert!(!message.contains("TOPSECRET"), "{message}");
    }

    #[test]
    fn github_token_from_file() {
        let file = temp_file("GHTOKEN", "ghp_from_file\n");
        let config = parse_ok(&format!(
            "{MINIMAL}\n[stacks.github]\nrepository = \"o/r\"\ntoken_file = \"{}\"\n",
            file.display()
        ));
        let gh = config.stack("web").unwrap().github.clone().unwrap();
        assert_eq!(gh.token.unwrap().expose(), "ghp_from_file");
        std::fs::remove_file(file).unwrap();
    }

    /// Found by the `config` fuzz target: a syntax error after a non-ASCII
    /// character and an `=` panicked while naming the key.
    #[test]
    fn syntax_error_after_non_ascii_text_names_the_position() {
        let message = parse_err("['{  \"reli[sv\0yive[[came oci.giety= \u{29f}-=");
        assert!(message.starts_with("line 1, column "), "{message}");
        let message = parse_err("[server]\nlisten = é=\n");
        assert!(message.starts_with("line 2, column "), "{message}");
    }

    #[test]
    fn unknown_keys_are_rejected_naming_the_key() {
        assert_err("bogus = 1\n", &["line 1", "unknown field `bogus`"]);
        assert_err(
            "[server]\nlisten_on = \"x\"\n",
            &["line 2", "unknown field `listen_on`"],
        );
        assert_err(
            &format!("{MINIMAL}brnach = \"main\"\n"),
            &["unknown field `brnach`"],
        );
        assert_err(
            &format!("{MINIMAL}[stacks.github]\nrepository = \"o/r\"\nenviroment = \"x\"\n"),
            &["unknown field `enviroment`"],
        );
        assert_err(
            &format!("{MINIMAL}[stacks.profiles.fast]\ncmd = [\"x\"]\n"),
            &["unknown field `cmd`"],
        );
        assert_err(
            "[[stacks]]\nname = \"m\"\ncommand = [\"x\"]\n[[stacks.services]]\nname = \"a\"\nimage = \"i\"\nport = 1\n",
            &["unknown field `port`"],
        );
        assert_err(
            &format!("{MINIMAL}http = {{ url = \"https://h\", method = \"PUT\" }}\n"),
            &["line 7, column 33: unknown field `method`"],
        );
    }

    #[test]
    fn load_names_the_file() {
        let path = temp_file("LOAD", "bogus = 1\n");
        let message = load(&path).unwrap_err().to_string();
        assert!(
            message.starts_with(&path.display().to_string()),
            "{message}"
        );
        assert!(message.contains("unknown field `bogus`"), "{message}");

        std::fs::write(&path, "[[stacks]]\nname = \"web\"\nimage = \"i\"\n").unwrap();
        let message = load(&path).unwrap_err().to_string();
        assert!(
            message.starts_with(&path.display().to_string()),
            "{message}"
        );
        assert!(
            message.ends_with("stack \"web\": set command or http"),
            "{message}"
        );

        std::fs::write(&path, MINIMAL).unwrap();
        let config = load(&path).unwrap();
        assert_eq!(config.base_dir, std::env::temp_dir());
        assert_eq!(config.server.state_dir, std::env::temp_dir().join("state"));
        std::fs::remove_file(&path).unwrap();

        let message = load(&path).unwrap_err().to_string();
        assert!(message.starts_with("cannot read "), "{message}");
    }

    #[test]
    fn secrets_from_env_and_file() {
        let var = unique("SECRET");
        set_env(&var, "env-secret");
        let file = temp_file("SECRETS", "\nfile-one-secret\r\n\n  file-two-secret  \n\n");
        let config = parse_ok(&format!(
            "{MINIMAL}secrets = [\"inline-secret\"]\nsecrets_env = [\"{var}\"]\nsecrets_file = \"{}\"\n",
            file.display()
        ));
        let secrets: Vec<&str> = config.stacks[0]
            .secrets
            .iter()
            .map(Secret::expose)
            .collect();
        assert_eq!(
            secrets,
            [
                "inline-secret",
                "env-secret",
                "file-one-secret",
                "file-two-secret"
            ]
        );
        std::fs::remove_file(&file).unwrap();

        let message = parse_err(&format!("{MINIMAL}secrets_file = \"{}\"\n", file.display()));
        assert!(
            message.starts_with("stack \"web\": secrets_file"),
            "{message}"
        );

        let empty = temp_file("EMPTYSECRETS", "\n\n");
        assert_err(
            &format!("{MINIMAL}secrets_file = \"{}\"\n", empty.display()),
            &["stack \"web\": secrets_file", "holds no secret"],
        );
        std::fs::remove_file(&empty).unwrap();

        let missing = unique("NOSUCHVAR");
        assert_err(
            &format!("{MINIMAL}secrets_env = [\"{missing}\"]\n"),
            &["stack \"web\": secrets_env", &missing, "is not set"],
        );
    }

    #[test]
    fn hook_token_from_env_and_file() {
        let var = unique("TOKEN");
        set_env(&var, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
        let config = parse_ok(&format!("{MINIMAL}hook_token_env = \"{var}\"\n"));
        assert_eq!(
            config.stacks[0].hook_token.as_ref().unwrap().expose(),
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
        );
        let file = temp_file("TOKENFILE", "BBBBBBBBBBBBBBBBBBBBBBBB\n");
        let config = parse_ok(&format!(
            "{MINIMAL}hook_token_file = \"{}\"\n",
            file.display()
        ));
        assert_eq!(
            config.stacks[0].hook_token.as_ref().unwrap().expose(),
            "BBBBBBBBBBBBBBBBBBBBBBBB"
        );
        std::fs::remove_file(&file).unwrap();
        let missing = unique("NOTOKEN");
        assert_err(
            &format!("{MINIMAL}hook_token_env = \"{missing}\"\n"),
            &["stack \"web\": hook_token_env", &missing, "is not set"],
        );
    }

    #[test]
    fn secrets_never_appear_in_debug_or_errors() {
        let gh_var = unique("GHDBG");
        set_env(&gh_var, "GH-TOKEN-VALUE-XYZ");
        let config = parse_ok(&format!(
            "[[stacks]]\nname = \"web\"\nimage = \"i\"\nsecrets = [\"WEBHOOK-SECRET-XYZ\"]\n\
             hook_token = \"HOOKTOKENVALUEXYZ0123456789\"\ncommand = [\"x\"]\n\
             env = {{ DB_PASSWORD = \"ENV-SECRET-XYZ\" }}\n\
             [stacks.profiles.p]\nenv = {{ P = \"PROFILE-SECRET-XYZ\" }}\n\
             [stacks.github]\nrepository = \"o/r\"\ntoken_env = \"{gh_var}\"\n\
             [[stacks]]\nname = \"h\"\nimage = \"i\"\n\
             http = {{ url = \"https://h\", headers = {{ Authorization = \"Bearer HEADER-SECRET-XYZ\" }} }}\n"
        ));
        let debug = format!("{config:?} {:#?}", config.stacks);
        for secret in [
            "WEBHOOK-SECRET-XYZ",
            "HOOKTOKENVALUEXYZ",
            "GH-TOKEN-VALUE-XYZ",
            "ENV-SECRET-XYZ",
            "PROFILE-SECRET-XYZ",
            "HEADER-SECRET-XYZ",
        ] {
            assert!(!debug.contains(secret), "{secret} leaked into {debug}");
        }
        assert!(debug.contains("<redacted>"));
        assert!(debug.contains("DB_PASSWORD") && debug.contains("Authorization"));
        assert_eq!(format!("{}", Secret::new("x")), "<redacted>");

        // Type errors in secret-bearing fields do not quote the value, and
        // syntax errors do not quote the source line.
        for body in [
            "secrets = \"LEAKY-SECRET\"",
            "secrets = [\"ok\", 7]\nbogus = \"LEAKY-SECRET\"",
            "hook_token = [\"LEAKY-SECRET\"]",
            "env = \"LEAKY-SECRET\"",
            "http = { url = \"https://h\", headers = \"LEAKY-SECRET\" }",
            "secrets = [\"LEAKY-SECRET\"\n",
            "secretz = \"LEAKY-SECRET\"",
        ] {
            let message = parse_err(&format!("{MINIMAL}{body}\n"));
            assert!(!message.contains("LEAKY"), "{body}: {message}");
        }
        // A hook token that is too short is not echoed.
        let message = parse_err(&format!("{MINIMAL}hook_token = \"LEAKY-short\"\n"));
        assert!(!message.contains("LEAKY"), "{message}");
    }

    #[test]
    fn hook_table() {
        let config = parse(
            "[hook]\nserver = \"http://127.0.0.1:8080/\"\nwait = true\nrepositories = { \"/srv/git/app.git\" = \"acme/app\" }\n",
            Path::new("/etc/redeploy"),
        )
        .unwrap();
        assert_eq!(config.hook.server.as_deref(), Some("http://127.0.0.1:8080"));
        assert!(config.hook.wait);
        assert_eq!(
            config
                .hook
                .repositories
                .get(Path::new("/srv/git/app.git"))
                .map(String::as_str),
            Some("acme/app")
        );
        let err = parse(
            "[hook]\nrepositories = { \"relative.git\" = \"a/b\" }\n",
            Path::new("/"),
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("hook: repositories: \"relative.git\" is not an absolute path"),
            "{err}"
        );
        assert!(parse("[hook]\nservr = \"x\"\n", Path::new("/"))
            .unwrap_err()
            .to_string()
            .contains("servr"));
    }

    #[test]
    fn manual_policy_and_query_selection_settings() {
        let config = parse_ok(MINIMAL);
        let web = &config.stacks[0];
        assert_eq!(web.manual, DEFAULT_MANUAL);
        assert!(web.query_services);
        assert_eq!(config.server.max_event_age, DEFAULT_MAX_EVENT_AGE);
        let config = parse_ok(&format!(
            "[server]\nmax_event_age = \"2m\"\n{MINIMAL}secrets = [\"s3cret-of-16-bytes\"]\nmanual = \"signed\"\nquery_services = false\n[stacks.profiles.risky]\nselectable = false\n[stacks.profiles.fast]\n"
        ));
        let web = &config.stacks[0];
        assert_eq!(web.manual, ManualSetting::Signed);
        assert!(!web.query_services);
        assert!(!web.profiles["risky"].selectable);
        assert!(web.profiles["fast"].selectable);
        assert_eq!(config.server.max_event_age, Duration::from_secs(120));
        assert_err(
            &format!("{MINIMAL}manual = \"signed\"\n"),
            &["stack \"web\"", "manual = \"signed\" needs secrets"],
        );
        assert_err(&format!("{MINIMAL}manual = \"sometimes\"\n"), &["manual"]);
        assert_err(
            &format!("[server]\nmax_event_age = \"0s\"\n{MINIMAL}"),
            &["max_event_age"],
        );
    }
}
