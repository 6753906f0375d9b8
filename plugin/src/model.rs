//! Domain types of the redeploy logic: what a delivery normalizes to, what a
//! stack is, and what the evaluation decides. Nothing here knows about the
//! WIT bindings; `lib.rs` converts between these and the generated types.

use serde::Serialize;

/// The sender of a delivery, detected from headers and body shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Provider {
    Github,
    Gitlab,
    Gitea,
    Forgejo,
    Gogs,
    Gitee,
    Harness,
    BitbucketCloud,
    BitbucketServer,
    BitbucketLegacy,
    AzureDevops,
    DockerHub,
    Harbor,
    Quay,
    Ghcr,
    Acr,
    /// The CNCF Distribution registry (`registry`, formerly
    /// `docker/distribution`), with its `notifications.endpoints`.
    Distribution,
    Manual,
    PostReceive,
    /// The host's polling of a stack's repository or registry.
    Poll,
}

impl Provider {
    /// The stable kebab-case name used in JSON output and the WIT enum.
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Github => "github",
            Provider::Gitlab => "gitlab",
            Provider::Gitea => "gitea",
            Provider::Forgejo => "forgejo",
            Provider::Gogs => "gogs",
            Provider::Gitee => "gitee",
            Provider::Harness => "harness",
            Provider::BitbucketCloud => "bitbucket-cloud",
            Provider::BitbucketServer => "bitbucket-server",
            Provider::BitbucketLegacy => "bitbucket-legacy",
            Provider::AzureDevops => "azure-devops",
            Provider::DockerHub => "docker-hub",
            Provider::Harbor => "harbor",
            Provider::Quay => "quay",
            Provider::Ghcr => "ghcr",
            Provider::Acr => "acr",
            Provider::Distribution => "distribution",
            Provider::Manual => "manual",
            Provider::PostReceive => "post-receive",
            Provider::Poll => "poll",
        }
    }
}

/// Header names and values of an HTTP delivery. Names are stored lowercase;
/// lookups are case-insensitive. The first value of a repeated header wins.
#[derive(Clone, Debug, Default)]
pub struct Headers(Vec<(String, String)>);

impl Headers {
    /// Builds the header list, lowercasing names and trimming values.
    pub fn new<I, K, V>(pairs: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        Headers(
            pairs
                .into_iter()
                .map(|(k, v)| {
                    (
                        k.as_ref().trim().to_ascii_lowercase(),
                        v.as_ref().trim().to_string(),
                    )
                })
                .collect(),
        )
    }

    /// The first value of header `name` (any case), if present.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Whether header `name` is present.
    pub fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// How many times header `name` occurs.
    pub fn count(&self, name: &str) -> usize {
        self.0
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .count()
    }
}

/// A repository as a delivery names it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Repository {
    /// The forge's full name: `owner/name` (GitHub, Gitea...), `group/sub/project`
    /// (GitLab), `PROJECT/slug` (Bitbucket Server), `project/repo` (Azure DevOps),
    /// or an absolute path for a local bare repository (post-receive).
    pub full_name: String,
    /// Every clone, SSH and web URL the payload gives for it.
    pub urls: Vec<String>,
}

/// The files a push changed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind", content = "files")]
pub enum ChangedFiles {
    /// The payload lists every changed file of every commit in the push.
    Complete(Vec<String>),
    /// The payload gives no file list, or a truncated one.
    Unknown,
}

/// One ref update of a push (a forge push event, one Bitbucket change, one
/// post-receive line).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Push {
    /// The repository pushed to.
    pub repository: Repository,
    /// The full ref, e.g. `refs/heads/main` or `refs/tags/v1.0`.
    pub git_ref: String,
    /// The commit the ref pointed at before; `None` when unknown or created.
    pub before: Option<String>,
    /// The commit the ref points at now (for an annotated tag, the commit the
    /// tag object points at, when the payload says); `None` when unknown or deleted.
    pub after: Option<String>,
    /// The ref did not exist before.
    pub created: bool,
    /// The ref no longer exists.
    pub deleted: bool,
    /// The push was a non-fast-forward (force) push.
    pub forced: bool,
    /// Who pushed (login or name), when the payload says.
    pub pusher: Option<String>,
    /// The message of the head commit, when known.
    pub head_message: Option<String>,
    /// Messages of the commits the push introduced, as far as the payload lists them.
    pub commit_messages: Vec<String>,
    /// Whether `commit_messages` is every commit of the push (not truncated).
    pub commits_complete: bool,
    /// Files changed by the push.
    pub changed_files: ChangedFiles,
}

/// The kind of a ref, from its full name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RefKind {
    Branch,
    Tag,
    Other,
}

impl Push {
    /// Branch, tag or other, with the short name (`main`, `v1.0`, or the full ref).
    pub fn ref_kind(&self) -> (RefKind, &str) {
        ref_kind(&self.git_ref)
    }
}

/// Classifies a full ref name.
pub fn ref_kind(git_ref: &str) -> (RefKind, &str) {
    if let Some(b) = git_ref.strip_prefix("refs/heads/") {
        (RefKind::Branch, b)
    } else if let Some(t) = git_ref.strip_prefix("refs/tags/") {
        (RefKind::Tag, t)
    } else {
        (RefKind::Other, git_ref)
    }
}

/// Whether `git_ref` is a full ref name git allows, by `git
/// check-ref-format`'s rules: no component empty, starting with `.` or
/// ending with `.lock`; no `..`, `@{`, control character, space, `~`, `^`,
/// `:`, `?`, `*`, `[` or `\\`; not ending with `.` or `/`; not `@`. A
/// sender may put anything in a payload's ref: one git would never make
/// (`refs/heads/release/..`, `refs/tags/v1 `) names no branch or tag, and
/// must not reach a pattern, nor a deploy command's `REDEPLOY_BRANCH`.
pub fn is_git_ref_name(git_ref: &str) -> bool {
    let forbidden = |b: u8| {
        b < 0x20 || b == 0x7f || matches!(b, b' ' | b'~' | b'^' | b':' | b'?' | b'*' | b'[' | b'\\')
    };
    // A branch or tag name never starts with `-` (`git check-ref-format
    // --branch`): handed to git as `REDEPLOY_BRANCH`, it would be an option.
    let short = git_ref
        .strip_prefix("refs/heads/")
        .or_else(|| git_ref.strip_prefix("refs/tags/"));
    git_ref != "@"
        && !short.is_some_and(|name| name.starts_with('-'))
        && !git_ref.ends_with('.')
        && !git_ref.contains("..")
        && !git_ref.contains("@{")
        && !git_ref.bytes().any(forbidden)
        && git_ref
            .split('/')
            .all(|c| !c.is_empty() && !c.starts_with('.') && !c.ends_with(".lock"))
}

/// A container image pushed to a registry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ImagePush {
    /// The registry host when the payload names it (`docker.io`, `ghcr.io`,
    /// `quay.io`, `hub.harbor.com`, `myregistry.azurecr.io`, a Distribution
    /// registry's `request.host` such as `registry.example.com:5000`).
    pub registry: Option<String>,
    /// The repository path in the registry, e.g. `svendowideit/testhook`,
    /// `mynamespace/repository`, `codertocat/hello-world`.
    pub repository: String,
    /// The pushed tag, when known.
    pub tag: Option<String>,
    /// The manifest digest, when known. A push without a tag (older
    /// Distribution releases, a multi-platform image's platform manifests)
    /// names its image by this digest alone.
    pub digest: Option<String>,
    /// Who pushed, when known.
    pub pusher: Option<String>,
    /// Docker Hub's `callback_url`, to report the deploy's result to.
    pub callback_url: Option<String>,
    /// When the registry says the push happened (Unix milliseconds): Docker
    /// Hub `push_data.pushed_at`, Harbor `occur_at`, Distribution's and
    /// ACR's event `timestamp`.
    pub sent_at_ms: Option<u64>,
}

/// A GitHub `deployment` event (created by us or by anyone with access).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Deployment {
    /// GitHub's deployment id.
    pub id: u64,
    /// The repository the deployment belongs to.
    pub repository: Repository,
    /// The deployment's environment name.
    pub environment: String,
    /// The ref the deployment was created for (branch, tag or SHA).
    pub git_ref: String,
    /// The commit SHA being deployed.
    pub sha: String,
    /// The deployment task, e.g. `deploy`.
    pub task: String,
    /// `payload.stack`, set by redeploy when it created the deployment.
    pub payload_stack: Option<String>,
    /// `payload.delivery`, the push delivery that caused the deployment.
    pub payload_delivery: Option<String>,
    /// `payload.services`: the services the push chose (`services=`).
    pub payload_services: Vec<String>,
    /// `payload.profile`: the deploy profile the push chose.
    pub payload_profile: Option<String>,
    /// `payload.redeploy-mac`: redeploy's MAC over (stack, sha, environment),
    /// present when redeploy created the deployment.
    pub payload_mac: Option<String>,
    /// Who created it.
    pub creator: Option<String>,
}

/// What a delivery normalizes to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Event {
    /// One or more ref updates.
    Push(Vec<Push>),
    /// One or more images pushed to a registry.
    ImagePush(Vec<ImagePush>),
    /// The forge testing the hook; `repository` when the payload names one.
    Ping { repository: Option<Repository> },
    /// A GitHub deployment to run (boxed: it is much larger than the others).
    Deployment(Box<Deployment>),
    /// A manual trigger: no git or image information.
    Manual,
    /// A recognised event that never deploys, with the reason.
    Ignored { reason: String },
}

/// A delivery after detection and parsing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Normalized {
    /// Who sent it.
    pub provider: Provider,
    /// The provider's own event name (`push`, `Push Hook`, `repo:push`, ...).
    pub event_name: String,
    /// The provider's delivery id, when it sends one.
    pub delivery: Option<String>,
    /// What happened.
    pub event: Event,
}

/// What a stack does on a ping. (De)serialized in the WIT's kebab-case
/// names, as `evaluate-json` reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PingAction {
    /// Deploy the stack's branch, as adding the hook should, on a stack
    /// whose [`ManualPolicy`] is `Allow` (acknowledged only otherwise: a
    /// ping is a manual trigger whose event header is not signed).
    #[default]
    Deploy,
    /// Only acknowledge the ping.
    Acknowledge,
}

/// What a manual trigger over HTTP (an empty body) may do on a stack.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ManualPolicy {
    /// The hook URL alone authorizes it, even on a stack with secrets: it
    /// names no commit, so it can only redeploy what the stack follows.
    #[default]
    Allow,
    /// It must carry a fresh signed timestamp (see [`crate::signature::verify_manual`]).
    Signed,
    /// Refused.
    Refuse,
}

/// One service of a stack: something that follows a git branch, an image, or both.
/// `evaluate-json` reads it with the WIT record's kebab-case field names.
#[derive(Clone, Debug, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Service {
    /// The service name (the stack name for a stack of one service).
    #[serde(default)]
    pub name: String,
    /// The repository followed: `owner/name`, a clone/SSH/web URL, or an
    /// absolute path of a local bare repository.
    pub repository: Option<String>,
    /// Branch name or glob; required with `repository`.
    pub branch: Option<String>,
    /// Tag glob; tags deploy only where this is set.
    pub tags: Option<String>,
    /// Image followed, e.g. `acme/web`, `acme/web:latest`, `ghcr.io/acme/web`.
    pub image: Option<String>,
}

/// GitHub continuous deployment settings of a stack. `evaluate-json`
/// reads it with the WIT record's kebab-case field names, all but the
/// repository and environment optional.
#[derive(Clone, Debug, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct GithubDeployments {
    /// The GitHub repository (`owner/name`) deployments are created in.
    pub repository: String,
    /// The environment name.
    pub environment: String,
    /// Ask GitHub to merge the default branch into the ref first.
    #[serde(default)]
    pub auto_merge: bool,
    /// Status contexts that must pass; empty means none.
    #[serde(default)]
    pub required_contexts: Vec<String>,
    /// Whether `deployment` events redeploy did not create may deploy the
    /// stack (their ref must then match its branch or tag patterns).
    #[serde(default)]
    pub accept_foreign_deployments: bool,
    /// Whether the environment is transient.
    #[serde(default)]
    pub transient_environment: bool,
    /// Whether the environment is production.
    #[serde(default)]
    pub production_environment: bool,
    /// Deploy when the `deployment` event arrives (true, the default in
    /// `evaluate-json`), or on the push itself.
    #[serde(default = "waits_by_default")]
    pub wait_for_event: bool,
}

/// `wait-for-event`'s default when `evaluate-json` input leaves it out.
fn waits_by_default() -> bool {
    true
}

/// A stack: the unit that deploys.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Stack {
    /// Its name.
    pub name: String,
    /// Its services (at least one after normalization).
    pub services: Vec<Service>,
    /// Webhook secrets; several allow rotation. Empty: the hook URL is the only secret.
    pub secrets: Vec<String>,
    /// What a ping does.
    pub ping: PingAction,
    /// Path globs; when non-empty, a push deploys only if a changed file matches.
    pub paths: Vec<String>,
    /// Commit-message markers that skip a deploy, e.g. `[skip deploy]`.
    pub skip_markers: Vec<String>,
    /// Names of the stack's deploy profiles.
    pub profiles: Vec<String>,
    /// Profiles `deployment_profile=` may not choose.
    pub unselectable_profiles: Vec<String>,
    /// Services `services=` may not name.
    pub unselectable_services: Vec<String>,
    /// `services=` is refused for this stack altogether.
    pub refuse_query_services: bool,
    /// What a manual trigger over HTTP may do.
    pub manual: ManualPolicy,
    /// GitHub continuous deployment, when on.
    pub github: Option<GithubDeployments>,
}
