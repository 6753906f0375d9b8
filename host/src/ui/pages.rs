//! The pages' templates (askama, compiled into the binary from
//! `host/templates/ui/`): each struct is one page's data, laid out by its
//! template, which escapes every value it prints.

use askama::Template;

use super::view::{DecisionView, DeliveryView, DeployView, GithubView, Moment};

/// What every page's frame shows: who is signed in, and the token the
/// sign-out form carries.
#[derive(Clone, Debug, Default)]
pub struct Chrome {
    /// The signed-in user, if any.
    pub user: Option<String>,
    /// Their role.
    pub role: &'static str,
    /// Their CSRF token.
    pub csrf: String,
    /// They signed in here (a user an identity proxy names signs out
    /// there).
    pub can_sign_out: bool,
}

/// The sign-in page.
#[derive(Template)]
#[template(path = "ui/login.html")]
pub struct Login {
    /// No one is signed in.
    pub chrome: Chrome,
    /// The form's CSRF token (bound to the sign-in cookie).
    pub csrf: String,
    /// The name tried, to fill in again.
    pub user: String,
    /// What went wrong, or empty.
    pub problem: String,
}

/// A stack in the stacks page.
pub struct StackRow {
    /// Its name.
    pub name: String,
    /// What it follows.
    pub follows: String,
    /// Its newest deploy.
    pub last: Option<DeployView>,
    /// GitHub continuous deployment: on, how, or off.
    pub github: String,
}

/// The stacks page.
#[derive(Template)]
#[template(path = "ui/stacks.html")]
pub struct Stacks {
    /// The frame.
    pub chrome: Chrome,
    /// Every stack, in config order.
    pub stacks: Vec<StackRow>,
}

/// One stack's page.
#[derive(Template)]
#[template(path = "ui/stack.html")]
pub struct Stack {
    /// The frame.
    pub chrome: Chrome,
    /// The stack's name.
    pub name: String,
    /// What it follows.
    pub follows: String,
    /// GitHub continuous deployment.
    pub github: String,
    /// The signed-in user may deploy the stack (an operator, and the stack
    /// takes manual triggers).
    pub operator: bool,
    /// The signed-in user may cancel its queued and running deploys (an
    /// operator, whatever the stack says of manual triggers).
    pub can_cancel: bool,
    /// The services a manual deploy may choose (empty: it deploys all).
    pub services: Vec<String>,
    /// The stack's deploy profiles.
    pub profiles: Vec<String>,
    /// The signed-in user may ask for the hook URL (an operator).
    pub can_reveal: bool,
    /// The hook URL, once an operator asked for it.
    pub hook_url: Option<String>,
    /// Its `?services=` and `?deployment_profile=` variants: (label, URL).
    pub variants: Vec<(String, String)>,
    /// Its newest deploys.
    pub deploys: Vec<DeployView>,
    /// Its newest deliveries.
    pub deliveries: Vec<DeliveryView>,
}

/// One deploy's page.
#[derive(Template)]
#[template(path = "ui/deploy.html")]
pub struct Deploy {
    /// The frame.
    pub chrome: Chrome,
    /// Its stack.
    pub stack: String,
    /// The deploy.
    pub d: DeployView,
    /// Its GitHub deployment and the reports of its states, if any.
    pub github: Option<GithubView>,
    /// Its notifications: channel, event, how it went.
    pub notifications: Vec<(String, String, String)>,
    /// The signed-in user may cancel it (an operator, and it has not ended).
    pub can_cancel: bool,
    /// Its command's exit status, when recorded.
    pub exit_code: Option<i32>,
    /// It may still change: the page follows its log live.
    pub follow: bool,
    /// The byte of the log the page shows up to (where following starts).
    pub shown: u64,
    /// The end of its log.
    pub log: Option<String>,
}

/// One delivery's page.
#[derive(Template)]
#[template(path = "ui/delivery.html")]
pub struct Delivery {
    /// The frame.
    pub chrome: Chrome,
    /// The journal's id.
    pub id: i64,
    /// The stack whose hook URL it came to, or empty.
    pub stack: String,
    /// When it arrived.
    pub received: Moment,
    /// Who sent it, or empty.
    pub provider: String,
    /// The provider's event, or empty.
    pub event: String,
    /// The provider's delivery id, or empty.
    pub delivery_id: String,
    /// The HTTP status it was answered with.
    pub status: u16,
    /// Each stack's decision when it arrived.
    pub decisions: Vec<DecisionView>,
    /// Its request, redacted, when it was one and was recorded so.
    pub request: Option<crate::received::Received>,
    /// Its request is kept, so "check again" can run.
    pub kept: bool,
    /// What "check again" decided with the current configuration.
    pub checked: Option<Vec<DecisionView>>,
}

/// An error page.
#[derive(Template)]
#[template(path = "ui/error.html")]
pub struct Error {
    /// The frame.
    pub chrome: Chrome,
    /// What went wrong, short.
    pub title: String,
    /// One line more.
    pub message: String,
}
