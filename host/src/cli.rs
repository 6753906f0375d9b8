//! The command line: one subcommand per job.

use clap::{Parser, Subcommand};

use crate::commands;

/// redeploy: redeploy a stack when its branch is pushed or its image is published.
#[derive(Debug, Parser)]
#[command(name = "redeploy", version, about)]
pub struct Cli {
    /// The job to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Evaluate one delivery (dry run): print what would deploy, deploy nothing.
    Check(commands::check::Check),
    /// Run the webhook server and deploy runner.
    Serve(commands::serve::Serve),
    /// Ask the running server to reload its configuration (as SIGHUP does).
    Reload(commands::reload::Reload),
    /// Print a stack's secret hook URL.
    HookUrl(commands::hook_url::HookUrl),
    /// Show recent deploys from the journal.
    History(commands::history::History),
    /// Show recent deliveries and what each stack decided, and why.
    Deliveries(commands::deliveries::Deliveries),
    /// Print a deploy's log (`--follow`: while it runs).
    Logs(commands::logs::Logs),
    /// Look at a stack's polled repositories now (dry run): what moved, what would deploy.
    Poll(commands::poll::Poll),
    /// Notifications: `notify test CHANNEL` sends a channel a test message.
    Notify(commands::notify::Notify),
    /// Queue a manual deploy on the running server.
    Trigger(commands::trigger::Trigger),
    /// Run as git's post-receive hook (reads `<old> <new> <ref>` lines on stdin).
    PostReceive(commands::post_receive::PostReceive),
    /// Install redeploy as a repository's post-receive hook.
    InstallHook(commands::install_hook::InstallHook),
    /// GitHub integration: `github connect STACK` sets up the repository webhook.
    Github(commands::github::Github),
    /// The configuration: `config check` validates it and shows each stack.
    Config(commands::config::ConfigCommand),
    /// The journal: `migrate` its schema, `export` it to a file, `import`
    /// one (from SQLite to PostgreSQL, say).
    Journal(commands::journal::JournalCommand),
    /// The dashboard: `ui passwd` prints a password's hash for `[[ui.users]]`.
    Ui(commands::ui::UiCommand),
    /// Print a shell completion script (bash, zsh, fish...).
    Completions(commands::completions::Completions),
    /// Print the man page (roff).
    Man(commands::man::Man),
    /// Run a stack's queued deploys (started by the post-receive hook).
    #[command(hide = true)]
    RunQueued(commands::run_queued::RunQueued),
    /// Stop deploy commands when the process that started them dies
    /// (started by that process).
    #[command(name = crate::runner::reaper::SUBCOMMAND, hide = true)]
    Reap(commands::reap::Reap),
    /// Compile the embedded component and print the compiled artifact
    /// (started by `serve`).
    #[command(name = crate::plugin::COMPILE_SUBCOMMAND, hide = true)]
    CompileComponent(commands::compile_component::CompileComponent),
}

impl Cli {
    /// Runs the chosen subcommand.
    pub fn run(self) -> anyhow::Result<()> {
        if matches!(
            self.command,
            Command::HookUrl(_)
                | Command::History(_)
                | Command::Deliveries(_)
                | Command::Logs(_)
                | Command::Config(_)
                | Command::Completions(_)
                | Command::Man(_)
        ) {
            end_quietly_on_a_closed_pipe();
        }
        match self.command {
            Command::Check(c) => c.execute(),
            Command::Serve(c) => c.execute(),
            Command::Reload(c) => c.execute(),
            Command::HookUrl(c) => c.execute(),
            Command::History(c) => c.execute(),
            Command::Deliveries(c) => c.execute(),
            Command::Logs(c) => c.execute(),
            Command::Trigger(c) => c.execute(),
            Command::Poll(c) => c.execute(),
            Command::Notify(c) => c.execute(),
            Command::PostReceive(c) => c.execute(),
            Command::InstallHook(c) => c.execute(),
            Command::RunQueued(c) => c.execute(),
            Command::Reap(c) => c.execute(),
            Command::CompileComponent(c) => c.execute(),
            Command::Github(c) => c.execute(),
            Command::Config(c) => c.execute(),
            Command::Journal(c) => c.execute(),
            Command::Ui(c) => c.execute(),
            Command::Completions(c) => c.execute(),
            Command::Man(c) => c.execute(),
        }
    }
}

/// Lets a command whose output is read through a pipe end quietly when the
/// reader stops early (`redeploy deliveries | head`), as `ls` or `git log`
/// do: `SIGPIPE` back to its default disposition, which ends the process.
/// Rust ignores it, so the next `println!` to the closed pipe panicked.
/// Only for the commands that write to standard output and to no pipe,
/// child or server of their own, before any thread is started.
fn end_quietly_on_a_closed_pipe() {
    // SAFETY: `signal` with `SIG_DFL` installs no handler, and is called
    // before this process starts a thread.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// Exit codes, documented in the README.
pub mod exit {
    /// Success.
    pub const OK: i32 = 0;
    /// The delivery was rejected (bad signature, malformed payload...), or
    /// the channel did not take `notify test`'s message.
    pub const REJECTED: i32 = 1;
    /// Usage, configuration or I/O error.
    pub const ERROR: i32 = 2;
    /// The plugin trapped (deadline, memory cap, bug).
    pub const TRAP: i32 = 3;
}

/// The exit code for an error chain.
pub fn exit_code(err: &anyhow::Error) -> i32 {
    if err.downcast_ref::<commands::check::Rejected>().is_some()
        || err.downcast_ref::<commands::notify::NotTaken>().is_some()
    {
        exit::REJECTED
    } else if err.downcast_ref::<crate::plugin::PluginTrap>().is_some() {
        exit::TRAP
    } else {
        exit::ERROR
    }
}
