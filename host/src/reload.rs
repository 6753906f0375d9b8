//! Reloading a running server's configuration (`SIGHUP`, or `redeploy
//! reload`, which sends it): [`Reloader::reload`] reads the file again and
//! either applies it whole or keeps the running one; [`ReloadStatus`] is
//! what it leaves in `<state_dir>/reload.json` for `redeploy reload` to
//! read and print.
//!
//! What a reload applies at once: the stacks (added, removed, changed),
//! their secrets read from files, commands and limits, and every
//! `[server]` setting read per delivery or per deploy. The settings read
//! once at start ([`crate::config::merge_reload`]) keep their running
//! values and are named in the log and the status. Secrets read from
//! environment variables are this process's environment, which a reload
//! does not change.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::capacity::Capacity;
use crate::config::{Config, Live, LiveConfig, ServerConfig};
use crate::journal::Journal;
use crate::metrics::Metrics;
use crate::notify::Notifier;
use crate::plugin::PluginRuntime;
use crate::server::body_budget_permits;
use crate::tokens::{ensure_tokens, TokenTable};

/// The file, in the state directory, that holds the last reload's
/// [`ReloadStatus`].
pub const STATUS_FILE: &str = "reload.json";

/// What the last reload of a running server did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReloadStatus {
    /// The server's process id.
    pub pid: u32,
    /// Reloads this server process has done, this one included.
    pub generation: u64,
    /// Whether the new configuration was applied.
    pub applied: bool,
    /// What happened, in one line: what changed, or why the file was
    /// refused (the running configuration stays).
    pub message: String,
    /// When (RFC 3339).
    pub at: String,
}

/// The path of the [`ReloadStatus`] file in `state_dir`.
pub fn status_path(state_dir: &Path) -> PathBuf {
    state_dir.join(STATUS_FILE)
}

/// The status the server at `state_dir` last wrote, if any can be read.
pub fn read_status(state_dir: &Path) -> Option<ReloadStatus> {
    let text =
        crate::bounded::read_file_to_string(&status_path(state_dir), MAX_STATUS_BYTES).ok()?;
    serde_json::from_str(&text).ok()
}

/// The largest status file read: one line of message and a few numbers.
const MAX_STATUS_BYTES: u64 = 64 * 1024;

/// Everything of a running server that a reload replaces, and what it
/// needs to check a new configuration first.
pub struct Reloader {
    /// The configuration file, read again.
    pub path: PathBuf,
    /// The configuration every part reads.
    pub config: LiveConfig,
    /// The hook tokens the server looks deliveries up by.
    pub tokens: Live<TokenTable>,
    /// Where new stacks' tokens are stored.
    pub journal: Arc<Journal>,
    /// The component that validates the stacks.
    pub runtime: Arc<PluginRuntime>,
    /// The GitHub deployment reporter, given the new stacks' settings.
    pub notifier: Arc<Notifier>,
    /// Counts reloads by result.
    pub metrics: Arc<Metrics>,
    /// The server's limits that hold permits, resized to the new file's.
    pub capacities: Capacities,
    /// Reloads done so far.
    pub generation: std::sync::atomic::AtomicU64,
}

impl Reloader {
    /// Reads the configuration file again and applies it, or keeps the
    /// running configuration if the file is invalid; logs the result and
    /// writes it to the status file. Blocking (reads files, runs the
    /// component): call it from a blocking thread.
    pub fn reload(&self) -> ReloadStatus {
        let running = self.config.current();
        let result = self.apply(&running);
        let generation = self
            .generation
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
            + 1;
        let (applied, message) = match result {
            Ok(message) => {
                tracing::info!(file = %self.path.display(), "configuration reloaded: {message}");
                (true, message)
            }
            Err(e) => {
                let message = format!(
                    "the running configuration stays: {}",
                    crate::text::one_line(&format!("{e:#}"))
                );
                tracing::error!(file = %self.path.display(), "configuration reload refused; {message}");
                (false, message)
            }
        };
        self.metrics.config_reload(applied);
        let status = ReloadStatus {
            pid: std::process::id(),
            generation,
            applied,
            message,
            at: crate::text::rfc3339_ms(crate::journal::now_ms()),
        };
        if let Err(e) = write_status(&running.server.state_dir, &status) {
            tracing::error!(error = %e, "cannot write the reload status for `redeploy reload`");
        }
        status
    }

    /// Loads, checks and applies the file; the summary of what changed.
    fn apply(&self, running: &Config) -> anyhow::Result<String> {
        // As every command refuses it (`redeploy reload` hears why): a
        // state directory others may write, since the server started.
        crate::ownership::check_state_dir_private(&running.server.state_dir)?;
        let new = crate::config::load(&self.path)?;
        let merged = crate::config::merge_reload(running, new);
        let config = Arc::new(merged.config);
        crate::stacks::validate(
            &self.runtime,
            &crate::stacks::wit_stacks(&config),
            &self.path,
        )?;
        let tokens = TokenTable::new(ensure_tokens(&config, &self.journal)?);
        self.notifier.reconfigure(config.clone())?;
        // Tokens first: a delivery that looks its token up between the two
        // finds a stack the old configuration may not have (404), never a
        // token the new file took away.
        self.tokens.replace(Arc::new(tokens));
        self.config.replace(config.clone());
        self.capacities.resize(&config.server);
        crate::ui::end_sessions_of_removed_users(&self.journal, &config);
        let mut message = stack_changes(running, &config);
        if !merged.need_restart.is_empty() {
            let names = merged.need_restart.join(", ");
            tracing::warn!(
                settings = %names,
                "these settings changed in the file and apply only after a restart"
            );
            message.push_str(&format!("; restart to apply {names}"));
        }
        Ok(message)
    }
}

/// The server's limits that work holds permits of, each resized by a
/// reload to what the new file says (running work is never stopped: a
/// smaller limit takes effect as it finishes).
pub struct Capacities {
    /// `max_concurrent_deploys` (the runner's).
    pub deploys: Arc<Capacity>,
    /// `max_queued_deliveries`.
    pub deliveries: Arc<Capacity>,
    /// `max_body_bytes_in_flight`, in [`crate::server::BODY_BUDGET_UNIT`]s.
    pub body_budget: Arc<Capacity>,
    /// `max_connections`.
    pub connections: Arc<Capacity>,
}

impl Capacities {
    /// The limits of `server`, with the runner's `deploys`.
    pub fn of(server: &ServerConfig, deploys: Arc<Capacity>) -> Capacities {
        Capacities {
            deploys,
            deliveries: Capacity::new(server.max_queued_deliveries),
            body_budget: Capacity::new(body_budget_permits(server.max_body_bytes_in_flight)),
            connections: Capacity::new(server.max_connections),
        }
    }

    /// Resizes each limit to `server`'s.
    fn resize(&self, server: &ServerConfig) {
        self.deploys.resize(server.max_concurrent_deploys);
        self.deliveries.resize(server.max_queued_deliveries);
        self.body_budget
            .resize(body_budget_permits(server.max_body_bytes_in_flight));
        self.connections.resize(server.max_connections);
    }
}

/// "N stacks; added: a; removed: b": the stacks of `new`, and which
/// appeared or went since `old`.
fn stack_changes(old: &Config, new: &Config) -> String {
    let names = |c: &Config| -> Vec<String> { c.stacks.iter().map(|s| s.name.clone()).collect() };
    let (before, after) = (names(old), names(new));
    let added: Vec<&str> = after
        .iter()
        .filter(|n| !before.contains(n))
        .map(String::as_str)
        .collect();
    let removed: Vec<&str> = before
        .iter()
        .filter(|n| !after.contains(n))
        .map(String::as_str)
        .collect();
    let plural = if after.len() == 1 { "" } else { "s" };
    let mut text = format!("{} stack{plural}", after.len());
    if !added.is_empty() {
        text.push_str(&format!("; added: {}", added.join(", ")));
    }
    if !removed.is_empty() {
        text.push_str(&format!("; removed: {}", removed.join(", ")));
    }
    text
}

/// Writes `status` to the status file, private, replacing it whole.
fn write_status(state_dir: &Path, status: &ReloadStatus) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let path = status_path(state_dir);
    let tmp = path.with_extension("json.tmp");
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    file.write_all(serde_json::to_string(status)?.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&tmp, &path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(stacks: &[&str]) -> Config {
        let text: String = stacks
            .iter()
            .map(|n| {
                format!("[[stacks]]\nname = \"{n}\"\nrepository = \"a/{n}\"\nbranch = \"main\"\ncommand = [\"true\"]\n")
            })
            .collect();
        crate::config::parse(&text, Path::new("/srv")).unwrap()
    }

    #[test]
    fn the_summary_names_added_and_removed_stacks() {
        assert_eq!(
            stack_changes(&parse(&["api", "web"]), &parse(&["web", "docs", "blog"])),
            "3 stacks; added: docs, blog; removed: api"
        );
        assert_eq!(stack_changes(&parse(&["api"]), &parse(&["api"])), "1 stack");
    }

    #[test]
    fn the_status_file_is_private_and_reads_back() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = std::env::temp_dir().join(format!(
            "redeploy-reload-status-{}-{}",
            std::process::id(),
            crate::journal::now_ms()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let status = ReloadStatus {
            pid: 7,
            generation: 2,
            applied: false,
            message: "the running configuration stays: bad".into(),
            at: "2026-12-01T00:00:00.000Z".into(),
        };
        write_status(&dir, &status).unwrap();
        let mode = std::fs::metadata(status_path(&dir))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(read_status(&dir), Some(status));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
