//! `redeploy ui`: the dashboard's tools. `ui passwd` reads a password (from
//! the terminal without echo, asked twice, or as the first line of standard
//! input) and prints its Argon2id hash, to paste into `[[ui.users]]
//! password_hash`. The password itself is never printed.

use std::io::{BufRead as _, IsTerminal as _, Read as _};

use crate::ui::auth::MAX_PASSWORD_BYTES;

/// Dashboard commands.
#[derive(Debug, clap::Args)]
pub struct UiCommand {
    /// What to do.
    #[command(subcommand)]
    pub command: UiSubcommand,
}

/// `redeploy ui` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum UiSubcommand {
    /// Read a password and print its Argon2id hash for `[[ui.users]]`.
    Passwd(Passwd),
}

/// `redeploy ui passwd`.
#[derive(Debug, clap::Args)]
pub struct Passwd {}

impl UiCommand {
    /// Runs the subcommand.
    pub fn execute(self) -> anyhow::Result<()> {
        match self.command {
            UiSubcommand::Passwd(_) => passwd(),
        }
    }
}

fn passwd() -> anyhow::Result<()> {
    let password = if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password("Password: ")?;
        let again = rpassword::prompt_password("Again: ")?;
        if first != again {
            anyhow::bail!("the two passwords differ; nothing printed");
        }
        first
    } else {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .take(MAX_PASSWORD_BYTES as u64 + 2)
            .read_line(&mut line)?;
        line.trim_end_matches(['\n', '\r']).to_owned()
    };
    check_password(&password)?;
    crate::cli::print_line(format_args!(
        "{}",
        crate::ui::auth::hash_password(password.as_bytes())?
    ))?;
    Ok(())
}

/// Refuses an empty password or one over [`MAX_PASSWORD_BYTES`].
pub fn check_password(password: &str) -> anyhow::Result<()> {
    if password.is_empty() {
        anyhow::bail!("the password is empty; nothing printed");
    }
    if password.len() > MAX_PASSWORD_BYTES {
        anyhow::bail!("the password is longer than {MAX_PASSWORD_BYTES} bytes; nothing printed");
    }
    Ok(())
}
