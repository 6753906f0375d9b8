//! `redeploy completions SHELL`: prints a completion script for the shell,
//! generated from the command line's own definition ([`crate::cli::Cli`]),
//! so it always knows every subcommand and option.

use clap::CommandFactory as _;

/// Prints a shell completion script.
#[derive(Debug, clap::Args)]
pub struct Completions {
    /// The shell (bash, zsh, fish, elvish, powershell).
    pub shell: clap_complete::Shell,
}

impl Completions {
    /// Writes the script to standard output.
    pub fn execute(self) -> anyhow::Result<()> {
        let mut command = crate::cli::Cli::command();
        let name = command.get_name().to_string();
        // Made whole first: the generator panics on a write that fails.
        let mut script = Vec::new();
        clap_complete::generate(self.shell, &mut command, name, &mut script);
        crate::cli::print_out(script)
    }
}
