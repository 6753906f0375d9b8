//! What an evaluation returns: the normalized delivery and the decisions,
//! one per stack (or per ref it follows of a push moving several).

use crate::model::{ImagePush, Provider, Push};

/// How a delivery's authenticity was established.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignatureScheme {
    /// No stack evaluated has secrets (or the delivery is local).
    NotRequired,
    /// GitHub `X-Hub-Signature-256`.
    GithubSha256,
    /// GitHub `X-Hub-Signature` (SHA-1), used only without a SHA-256 header.
    GithubSha1,
    /// Gitea/Forgejo/Gogs bare-hex HMAC-SHA256.
    GiteaSha256,
    /// GitLab/Gitee plain token.
    PlainToken,
    /// Bitbucket Cloud/Server `X-Hub-Signature: sha256=`.
    BitbucketSha256,
    /// A signed manual trigger: `X-Redeploy-Signature-256` over a timestamp.
    RedeploySha256,
}

impl SignatureScheme {
    /// The stable kebab-case name (WIT enum case and JSON value).
    pub fn as_str(self) -> &'static str {
        match self {
            SignatureScheme::NotRequired => "not-required",
            SignatureScheme::GithubSha256 => "github-sha256",
            SignatureScheme::GithubSha1 => "github-sha1",
            SignatureScheme::GiteaSha256 => "gitea-sha256",
            SignatureScheme::PlainToken => "plain-token",
            SignatureScheme::BitbucketSha256 => "bitbucket-sha256",
            SignatureScheme::RedeploySha256 => "redeploy-sha256",
        }
    }
}

/// What a deploy deploys and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeployEvent {
    /// The stack.
    pub stack: String,
    /// The services chosen.
    pub services: Vec<String>,
    /// The deploy profile chosen with `deployment_profile=`.
    pub profile: Option<String>,
    /// The full ref, when known.
    pub git_ref: Option<String>,
    /// The branch, when the ref is one.
    pub branch: Option<String>,
    /// The tag, when the ref is one.
    pub tag: Option<String>,
    /// The commit, when known.
    pub sha: Option<String>,
    /// The repository, when known.
    pub repository: Option<String>,
    /// `registry/repository:tag` for registry pushes.
    pub image: Option<String>,
    /// The provider that caused it.
    pub provider: Provider,
    /// The provider's delivery id.
    pub delivery: Option<String>,
    /// Why this deploys.
    pub reason: String,
    /// The JSON body for creating a GitHub deployment, when GitHub CD is on.
    pub github_deployment_request: Option<String>,
    /// The GitHub deployment to report statuses to.
    pub github_deployment_id: Option<u64>,
    /// Docker Hub's callback URL.
    pub callback_url: Option<String>,
}

/// Why a stack skips a delivery (the WIT `skip-code`; each case is
/// documented there).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SkipCode {
    NotADeployEvent,
    NotFollowed,
    NoRef,
    OtherRepository,
    RefDeleted,
    NotABranchOrTag,
    BranchMismatch,
    TagMismatch,
    SkipMarker,
    PathsUnmatched,
    ImageMismatch,
    ImageUntagged,
    PingAcknowledged,
    OtherStack,
    OtherEnvironment,
    OtherTask,
    ForeignDeployment,
    DeployedOnPush,
}

impl SkipCode {
    /// The stable kebab-case name (WIT enum case and JSON value).
    pub fn as_str(self) -> &'static str {
        match self {
            SkipCode::NotADeployEvent => "not-a-deploy-event",
            SkipCode::NotFollowed => "not-followed",
            SkipCode::NoRef => "no-ref",
            SkipCode::OtherRepository => "other-repository",
            SkipCode::RefDeleted => "ref-deleted",
            SkipCode::NotABranchOrTag => "not-a-branch-or-tag",
            SkipCode::BranchMismatch => "branch-mismatch",
            SkipCode::TagMismatch => "tag-mismatch",
            SkipCode::SkipMarker => "skip-marker",
            SkipCode::PathsUnmatched => "paths-unmatched",
            SkipCode::ImageMismatch => "image-mismatch",
            SkipCode::ImageUntagged => "image-untagged",
            SkipCode::PingAcknowledged => "ping-acknowledged",
            SkipCode::OtherStack => "other-stack",
            SkipCode::OtherEnvironment => "other-environment",
            SkipCode::OtherTask => "other-task",
            SkipCode::ForeignDeployment => "foreign-deployment",
            SkipCode::DeployedOnPush => "deployed-on-push",
        }
    }
}

/// Why nothing deploys: the code for machines, the sentence for people.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skip {
    /// The code.
    pub code: SkipCode,
    /// The sentence, e.g. `push to "feature/x" does not match branch "main"`.
    pub reason: String,
}

impl Skip {
    /// A skip with its code and sentence.
    pub fn new(code: SkipCode, reason: impl Into<String>) -> Self {
        Skip {
            code,
            reason: reason.into(),
        }
    }
}

/// What happens to one stack (the WIT `action`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Deploy now (reporting to a GitHub deployment it creates, when the
    /// event carries a deployment request).
    Deploy(DeployEvent),
    /// Create the GitHub deployment the event's request describes; its
    /// `deployment` event deploys.
    RequestDeployment(DeployEvent),
    /// Nothing.
    Skip(SkipCode),
}

impl Action {
    /// The stable name: `deploy`, `request-deployment` or `skip`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Action::Deploy(_) => "deploy",
            Action::RequestDeployment(_) => "request-deployment",
            Action::Skip(_) => "skip",
        }
    }
}

/// The decision for one stack.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// The stack.
    pub stack: String,
    /// What happens.
    pub action: Action,
    /// The services concerned.
    pub services: Vec<String>,
    /// Why.
    pub reason: String,
}

impl Decision {
    /// The deploy event, when the stack deploys now or asks GitHub for a
    /// deployment.
    pub fn deploy(&self) -> Option<&DeployEvent> {
        match &self.action {
            Action::Deploy(e) | Action::RequestDeployment(e) => Some(e),
            Action::Skip(_) => None,
        }
    }

    /// The skip code, when the stack skips.
    pub fn skip(&self) -> Option<SkipCode> {
        match self.action {
            Action::Skip(code) => Some(code),
            _ => None,
        }
    }
}

/// The result of evaluating one delivery.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// Who sent it.
    pub provider: Provider,
    /// The provider's event name.
    pub event: String,
    /// The provider's delivery id.
    pub delivery: Option<String>,
    /// How it was authenticated.
    pub signature: SignatureScheme,
    /// When the sender says the event happened (Unix ms), when its body says.
    pub sent_at_ms: Option<u64>,
    /// Normalized ref updates.
    pub pushes: Vec<Push>,
    /// Normalized image pushes.
    pub images: Vec<ImagePush>,
    /// One per stack, in the order given.
    pub decisions: Vec<Decision>,
}

/// A deploy's phase as the host's runner sees it (the WIT `deploy-phase`;
/// each case is documented there).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeployPhase {
    Queued,
    Started,
    Succeeded,
    Failed,
    Cancelled,
    Interrupted,
}

/// What to report in a GitHub deployment status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatusInput {
    /// The phase.
    pub phase: DeployPhase,
    /// The environment name.
    pub environment: String,
    /// The deploy log URL.
    pub log_url: Option<String>,
    /// The application URL.
    pub environment_url: Option<String>,
    /// Extra detail for the description.
    pub detail: Option<String>,
}
