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

/// Standard output was closed by its reader (`redeploy deliveries |
/// head`): the output was cut short on purpose, so the command ends
/// quietly and successfully, as `ls` or `git log` do ([`exit_code`]).
/// Rust ignores `SIGPIPE` (and this binary keeps it ignored: it would also
/// end a command whose socket to PostgreSQL or a server broke), so a write
/// to the closed pipe fails, and `println!` would panic.
#[derive(Debug, thiserror::Error)]
#[error("standard output was closed")]
pub struct StdoutClosed;

/// Writes `text` to standard output; a reader that stopped early is
/// [`StdoutClosed`], any other failure the I/O error. What every command
/// that prints a listing prints with.
pub fn print_out(text: impl AsRef<[u8]>) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_ref())
        .and_then(|()| out.flush())
        .map_err(stdout_error)
}

/// [`print_out`] of `args` and a newline: `println!` without its panic on
/// a closed standard output.
pub fn print_line(args: std::fmt::Arguments<'_>) -> anyhow::Result<()> {
    print_out(format!("{args}\n"))
}

/// Writes `args` and a newline to standard error, letting a failure go:
/// what a command says on the side never stops it (the git hook's output
/// closes when the pusher's connection drops), where `eprintln!` would
/// panic.
pub fn say(args: std::fmt::Arguments<'_>) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr().lock(), "{args}");
}

/// A failed write to standard output: [`StdoutClosed`] when its reader
/// stopped early, else the I/O error.
pub fn stdout_error(e: std::io::Error) -> anyhow::Error {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        StdoutClosed.into()
    } else {
        anyhow::Error::new(e).context("writing to standard output")
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

/// The exit code for an error chain: [`exit::OK`] for output whose reader
/// stopped early ([`StdoutClosed`]).
pub fn exit_code(err: &anyhow::Error) -> i32 {
    if err.downcast_ref::<StdoutClosed>().is_some() {
        exit::OK
    } else if err.downcast_ref::<commands::check::Rejected>().is_some()
        || err.downcast_ref::<commands::notify::NotTaken>().is_some()
    {
        exit::REJECTED
    } else if err.downcast_ref::<crate::plugin::PluginTrap>().is_some() {
        exit::TRAP
    } else {
        exit::ERROR
    }
}
