//! One module per subcommand; each is a struct with `execute(self)`.

pub mod check;
pub mod github;
pub mod history;
pub mod hook_url;
pub mod install_hook;
pub mod post_receive;
pub mod run_queued;
pub mod serve;
pub mod trigger;
