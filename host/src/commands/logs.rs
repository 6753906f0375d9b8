//! `redeploy logs ID [--follow]`: a deploy's log, as the deploy command
//! wrote it (ending with redeploy's line saying how the deploy ended);
//! with `--follow`, printed as it grows until the deploy ends. The log is
//! this machine's file, or, for a deploy another replica ran on a
//! PostgreSQL journal, the journal's copy of it ([`crate::deploy_log`]).

use std::io::{Read as _, Seek as _, Write as _};
use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;

use crate::config;
use crate::deploy_log::LogSource;
use crate::journal::Journal;

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
                source = LogSource::of(&journal, &deploy)?;
            }
            match &source {
                Some(LogSource::File(path)) => printed += copy_from(path, printed, &mut out)?,
                Some(LogSource::Journal) => {
                    printed += copy_stored(&journal, id, printed, &mut out)?
                }
                None => {}
            }
            if !self.follow || deploy.state.is_final() {
                if deploy.log_path.is_none() {
                    writeln!(
                        out,
                        "deploy #{id} is {} and has no log yet",
                        deploy.state.as_str()
                    )?;
                }
                return Ok(());
            }
            std::thread::sleep(FOLLOW_POLL);
        }
    }
}

/// Copies `path` from byte `from` on to `out`; how many bytes it copied.
/// A log not yet created counts as empty.
fn copy_from(path: &Path, from: u64, out: &mut impl std::io::Write) -> anyhow::Result<u64> {
    let mut file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    file.seek(std::io::SeekFrom::Start(from))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)
        .with_context(|| format!("reading {}", path.display()))?;
    out.write_all(&bytes)?;
    out.flush()?;
    Ok(bytes.len() as u64)
}

/// Copies deploy `id`'s log as the journal keeps it, from byte `from` on,
/// to `out`; how many bytes it copied. A log not stored yet counts as
/// empty.
fn copy_stored(
    journal: &Journal,
    id: i64,
    from: u64,
    out: &mut impl std::io::Write,
) -> anyhow::Result<u64> {
    let Some(stored) = journal.deploy_log_from(id, from)? else {
        return Ok(0);
    };
    out.write_all(stored.text.as_bytes())?;
    out.flush()?;
    Ok(stored.text.len() as u64)
}
