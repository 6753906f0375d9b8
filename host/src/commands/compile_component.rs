//! `redeploy compile-component`: compiles the embedded component and writes
//! the compiled artifact to standard output, for `serve`, which runs it as a
//! child ([`crate::plugin::CompileIn::Child`]). Not meant to be typed by hand.

use std::io::Write as _;

use crate::plugin::Allocation;

/// The engine settings the artifact is compiled for; they must be those of
/// the engine that loads it (its compatibility hash covers them).
#[derive(Debug, clap::Args)]
pub struct CompileComponent {
    /// The loading engine's instance allocation.
    #[arg(long, value_enum)]
    allocation: Allocation,
    /// The loading engine's per-call linear-memory cap, in bytes.
    #[arg(long)]
    memory_limit: usize,
}

impl CompileComponent {
    /// Runs it.
    pub fn execute(self) -> anyhow::Result<()> {
        let code = crate::plugin::precompile_apart(self.allocation, self.memory_limit)?;
        let mut out = std::io::stdout().lock();
        out.write_all(&code)?;
        out.flush()?;
        Ok(())
    }
}
