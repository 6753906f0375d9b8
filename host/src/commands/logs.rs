//! `redeploy logs ID [--follow]`: a deploy's log, as the deploy command
//! wrote it (ending with redeploy's line saying how the deploy ended);
//! with `--follow`, printed as it grows until the deploy ends. The log is
//! this machine's file, or, for a deploy another replica ran on a
//! PostgreSQL journal, the journal's copy of it ([`crate::deploy_log`]).

use std::io::Write as _;
use std::time::Duration;

use anyhow::Context as _;

use crate::config;
use crate::deploy_log::LogSource;

/// How often `--follow` looks for more of the log and for the deploy's end.
pub const FOLLOW_POLL: Duration = Duration::from_millis(200);

/// Prints a deploy's log.
#[derive(Debug, clap::Args)]
pub struct Logs {
    /// The deploy's id (from `redeploy history`).
    pub id: i64,
    /// The configuration file (`--config`).
    #[command(flatten)]
    pub config: super::ConfigFile,
    /// Keep printing while the deploy runs; return when it ends.
    #[arg(long, short)]
    pub follow: bool,
}

impl Logs {
    /// Prints the log (following it with `--follow`).
    pub fn execute(self) -> anyhow::Result<()> {
        let config = self.config.load_for(config::SecretScope::NoStack)?;
        let journal = super::open_for_reading(&config)?;
        let id = self.id;
        let mut out = std::io::stdout().lock();
        let mut printed = 0u64;
        // Chosen once: the two sources count bytes differently.
        let mut source = None;
        loop {
            // The deploy before its log: once it has ended, one last read
            // of the log has everything it wrote.
            let deploy = journal.deploy(id)?.with_context(|| {
                format!("no deploy #{id} in the journal (see redeploy history)")
            })?;
            if source.is_none() {
                source = LogSource::of(&journal, &config.server.state_dir, &deploy)?;
            }
            if let Some(source) = &source {
                let bytes = source.read_from(&journal, id, printed, u64::MAX)?;
                out.write_all(&bytes)
                    .and_then(|()| out.flush())
                    .map_err(crate::cli::stdout_error)?;
                printed += bytes.len() as u64;
            }
            if !self.follow || deploy.state.is_final() {
                if printed == 0 && deploy.log_path.is_some() && deploy.state.is_final() {
                    match &source {
                        None => anyhow::bail!(
                            "deploy #{id}'s log is not on this machine: it ran on another, or its file was removed"
                        ),
                        Some(LogSource::File(path)) if !path.exists() => anyhow::bail!(
                            "deploy #{id}'s log file {} is not there: never written (the deploy's reason in `redeploy history` may say why), removed by retention or by hand, or the journal was imported without its logs",
                            path.display()
                        ),
                        Some(_) => {}
                    }
                }
                if deploy.log_path.is_none() {
                    writeln!(
                        out,
                        "deploy #{id} is {} and has no log yet",
                        deploy.state.as_str()
                    )
                    .map_err(crate::cli::stdout_error)?;
                }
                return Ok(());
            }
            std::thread::sleep(FOLLOW_POLL);
        }
    }
}
