//! `redeploy man`: prints the man page (roff), generated from the command
//! line's own definition ([`crate::cli::Cli`]): the synopsis, the options
//! and one entry per subcommand.

use anyhow::Context as _;
use clap::CommandFactory as _;

/// The roff request that opens a man page with its title.
pub const TITLE_REQUEST: &str = ".TH ";

/// Prints the man page.
#[derive(Debug, clap::Args)]
pub struct Man {}

impl Man {
    /// Writes the roff page to standard output
    /// (`redeploy man > /usr/local/share/man/man1/redeploy.1`).
    pub fn execute(self) -> anyhow::Result<()> {
        crate::cli::print_out(page()?)
    }
}

/// The man page. A man(7) page opens with its `.TH` title; `clap_mangen`
/// writes roff's apostrophe definitions (`.ds Aq`) before it, so the title
/// line is moved in front of them (they still precede every use).
pub fn page() -> anyhow::Result<String> {
    let mut roff = Vec::new();
    clap_mangen::Man::new(crate::cli::Cli::command()).render(&mut roff)?;
    let roff = String::from_utf8(roff).context("the generated man page is not UTF-8")?;
    let mut lines: Vec<&str> = roff.lines().collect();
    let title = lines
        .iter()
        .position(|line| line.starts_with(TITLE_REQUEST))
        .context("the generated man page has no .TH title")?;
    let title = lines.remove(title);
    lines.insert(0, title);
    Ok(lines.join("\n") + "\n")
}
