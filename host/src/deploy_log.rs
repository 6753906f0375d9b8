//! Deploy logs readable from any replica: while a deploy runs on a
//! PostgreSQL journal, the replica running it copies the log file into the
//! journal ([`Mirror`]), and whoever serves or prints a log reads the local
//! file if this machine has it, else the journal's copy ([`read_tail`],
//! [`LogSource`]). A SQLite journal is one machine's: nothing is copied and
//! logs are read from their files, as always.
//!
//! The copy is text (the journal's values are integers and text): the
//! file's bytes with each invalid UTF-8 sequence and each NUL byte (which
//! PostgreSQL text refuses) replaced by U+FFFD, never more than
//! `server.max_deploy_log_bytes` bytes of it, never half a character. It
//! only grows while the deploy runs, so a reader following it asks for what
//! it has not printed yet. Output past the cap is cut behind one marker
//! line, keeping the trailer that says how the deploy ended.
//!
//! Copying never fails or holds up a deploy: it runs beside the command on
//! blocking threads, a database error is logged and the copy retried at the
//! next tick, and the last copy, after the trailer, is retried in the
//! background if the database refuses it.

use std::io::{Read as _, Seek as _, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::config::LiveConfig;
use crate::journal::{DeployRecord, Journal, JournalError};

/// How often a running deploy's log is copied into the journal (when the
/// file grew): a reader on another replica is at most this far behind,
/// and a chatty command costs the database one statement per interval.
pub const MIRROR_INTERVAL: Duration = Duration::from_secs(2);

/// Room kept at the end of a stored log for the line that says how the
/// deploy ended, when the output fills the cap (at most a quarter of the
/// cap): the trailer is under 100 bytes plus the failure's reason.
pub const TRAILER_RESERVE_BYTES: usize = 1024;

/// How many times the last copy of a log (after its trailer) is retried,
/// [`MIRROR_INTERVAL`] apart, when the database refuses it: a minute, long
/// enough for a database restart; the runner's replica still has the file.
pub const FINAL_ATTEMPTS: u32 = 30;

/// How much a log file may hold past the cap: the capped log's marker line
/// and the trailer. What lies further is never read.
pub const FILE_SLACK_BYTES: u64 = 64 * 1024;

/// What replaces an invalid UTF-8 sequence or a NUL byte.
const REPLACEMENT: char = char::REPLACEMENT_CHARACTER;

/// The line a stored log holds where output past the cap was cut.
fn cut_marker(cap: usize) -> String {
    format!("\n[... output cut: the journal keeps {cap} bytes of each deploy log ...]\n")
}

/// Bytes decoded as text for the journal.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Decoded {
    /// The text: valid UTF-8 kept, each invalid sequence and each NUL byte
    /// one U+FFFD.
    pub text: String,
    /// How many input bytes it stands for.
    pub consumed: usize,
}

/// Decodes `bytes` into at most `budget` bytes of text, whole characters
/// only. Unless `last`, an incomplete character at the end is left for
/// the next call (its bytes may still be coming); with `last` it is one
/// U+FFFD. Decoding a file in pieces gives the text decoding it whole does.
pub fn decode(bytes: &[u8], budget: usize, last: bool) -> Decoded {
    let mut out = Decoded::default();
    let replacement_len = REPLACEMENT.len_utf8();
    for chunk in bytes.utf8_chunks() {
        for (i, piece) in chunk.valid().split('\0').enumerate() {
            if i > 0 {
                // The NUL before this piece.
                if out.text.len() + replacement_len > budget {
                    return out;
                }
                out.text.push(REPLACEMENT);
                out.consumed += 1;
            }
            let room = budget - out.text.len();
            if piece.len() > room {
                let fits = &piece[..piece.floor_char_boundary(room)];
                out.text.push_str(fits);
                out.consumed += fits.len();
                return out;
            }
            out.text.push_str(piece);
            out.consumed += piece.len();
        }
        let invalid = chunk.invalid();
        if invalid.is_empty() {
            continue;
        }
        let at_end = out.consumed + invalid.len() == bytes.len();
        let incomplete = std::str::from_utf8(invalid).is_err_and(|e| e.error_len().is_none());
        if at_end && incomplete && !last {
            return out;
        }
        if out.text.len() + replacement_len > budget {
            return out;
        }
        out.text.push(REPLACEMENT);
        out.consumed += invalid.len();
    }
    out
}

/// The last line of `text` (its final newline included), at most `max`
/// bytes of its end (where the trailer is, should the command's last line
/// have had no newline).
fn last_line(text: &str, max: usize) -> &str {
    let body = text.strip_suffix('\n').unwrap_or(text);
    let start = body.rfind('\n').map_or(0, |i| i + 1);
    let line = &text[start..];
    &line[line.ceil_char_boundary(line.len().saturating_sub(max))..]
}

/// How a capped log is laid out: output up to `body_limit`, then (only
/// if the output went past the cap) the marker and the last line.
#[derive(Clone, Debug)]
struct Room {
    cap: usize,
    body_limit: usize,
    marker: String,
}

impl Room {
    fn new(cap: u64) -> Room {
        let cap = usize::try_from(cap).unwrap_or(usize::MAX);
        let reserve = TRAILER_RESERVE_BYTES.min(cap / 4);
        let mut marker = cut_marker(cap);
        if marker.len() + reserve > cap {
            marker.clear();
        }
        Room {
            cap,
            body_limit: cap - reserve - marker.len(),
            marker,
        }
    }
}

/// One write to the journal's copy.
#[derive(Debug, PartialEq, Eq)]
pub enum Write {
    /// Append `text` to a stored log `expected` bytes long.
    Append {
        /// The stored log's size the append expects.
        expected: u64,
        /// What to append.
        text: String,
        /// The stored log is cut from now on.
        truncated: bool,
    },
    /// Store `text` as the whole log.
    Replace {
        /// The log.
        text: String,
        /// It is cut.
        truncated: bool,
    },
}

/// A write planned by [`LogCopy::plan`], and where the copy stands once it
/// is done.
#[derive(Debug, PartialEq, Eq)]
pub struct Planned {
    /// The write.
    pub write: Write,
    /// The file's bytes copied once it is done.
    offset: u64,
    /// The stored log's size once it is done.
    stored: u64,
}

/// Where the journal's copy of one log file stands: the sans-I/O core of
/// [`Mirror`], given the file's bytes and told what the journal did.
#[derive(Clone, Debug)]
pub struct LogCopy {
    room: Room,
    /// The file's bytes already copied.
    offset: u64,
    /// The stored log's size.
    stored: u64,
    /// Nothing written yet.
    fresh: bool,
    /// A write failed: what the journal holds is unknown, so the next
    /// write rewrites the whole log.
    rewrite: bool,
}

impl LogCopy {
    /// A copy of a log capped at `cap` bytes, nothing written yet.
    pub fn new(cap: u64) -> LogCopy {
        LogCopy {
            room: Room::new(cap),
            offset: 0,
            stored: 0,
            fresh: true,
            rewrite: false,
        }
    }

    /// Where the file is to be read from for the next [`LogCopy::plan`].
    pub fn read_from(&self) -> u64 {
        if self.rewrite {
            0
        } else {
            self.offset
        }
    }

    /// How many bytes of the file the next [`LogCopy::plan`] may need:
    /// enough for what fits and the rest of a character; all of it for the
    /// last copy.
    pub fn read_at_most(&self, last: bool) -> u64 {
        let cap = self.room.cap as u64;
        if last {
            cap.saturating_add(FILE_SLACK_BYTES)
        } else {
            (self.room.body_limit as u64).saturating_sub(self.base()) + 4
        }
    }

    fn base(&self) -> u64 {
        if self.rewrite {
            0
        } else {
            self.stored
        }
    }

    /// The write that copies `bytes` (the file from [`LogCopy::read_from`]
    /// on), or `None` if there is nothing to write. With `last` (the
    /// deploy has ended and its trailer is written) the copy is completed:
    /// everything if it fits the cap, else the output up to the cut, the
    /// marker and the last line.
    pub fn plan(&self, bytes: &[u8], last: bool) -> Option<Planned> {
        let room = &self.room;
        let base = self.base();
        let base_len = usize::try_from(base).unwrap_or(usize::MAX);
        let (text, consumed, truncated) = if !last {
            let decoded = decode(bytes, room.body_limit.saturating_sub(base_len), false);
            (decoded.text, decoded.consumed, false)
        } else {
            let whole = decode(bytes, usize::MAX, true);
            if base_len.saturating_add(whole.text.len()) <= room.cap {
                (whole.text, whole.consumed, false)
            } else {
                let head = decode(bytes, room.body_limit.saturating_sub(base_len), true);
                let mut text = head.text;
                text.push_str(&room.marker);
                let left = room.cap.saturating_sub(base_len + text.len());
                text.push_str(last_line(&whole.text, left));
                (text, bytes.len(), true)
            }
        };
        if text.is_empty() && !self.fresh && !self.rewrite && !truncated {
            return None;
        }
        let write = if self.rewrite {
            Write::Replace {
                text: text.clone(),
                truncated,
            }
        } else {
            Write::Append {
                expected: base,
                text: text.clone(),
                truncated,
            }
        };
        Some(Planned {
            write,
            offset: self.read_from() + consumed as u64,
            stored: base + text.len() as u64,
        })
    }

    /// The journal did `planned`.
    pub fn written(&mut self, planned: &Planned) {
        self.offset = planned.offset;
        self.stored = planned.stored;
        self.fresh = false;
        self.rewrite = false;
    }

    /// A write failed, or found the stored log another size than expected:
    /// the next one rewrites it whole.
    pub fn failed(&mut self) {
        self.rewrite = true;
    }
}

/// Reads at most `max` bytes of `path` from byte `from` on; a file not
/// created yet is empty.
fn read_file(path: &Path, from: u64, max: u64) -> std::io::Result<Vec<u8>> {
    let mut file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    file.seek(SeekFrom::Start(from))?;
    let mut bytes = Vec::new();
    file.take(max).read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Why one copy did not happen.
#[derive(Debug, thiserror::Error)]
enum CopyError {
    #[error("cannot read the log file: {0}")]
    File(#[from] std::io::Error),
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error("the journal's copy is not the size this replica wrote; rewriting it")]
    Moved,
}

/// Copies what `copy` has not copied yet of deploy `id`'s log at `path`
/// (the rest of it with `last`).
fn copy_once(
    journal: &Journal,
    id: i64,
    path: &Path,
    copy: &mut LogCopy,
    last: bool,
) -> Result<(), CopyError> {
    let bytes = read_file(path, copy.read_from(), copy.read_at_most(last))?;
    let Some(planned) = copy.plan(&bytes, last) else {
        return Ok(());
    };
    let done = match &planned.write {
        Write::Append {
            expected,
            text,
            truncated,
        } => journal.append_deploy_log(id, *expected, text, *truncated)?,
        Write::Replace { text, truncated } => {
            journal.replace_deploy_log(id, text, *truncated)?;
            true
        }
    };
    if !done {
        return Err(CopyError::Moved);
    }
    copy.written(&planned);
    Ok(())
}

/// [`copy_once`] on a blocking thread; the copy comes back whatever happened.
async fn copy_blocking(
    journal: Arc<Journal>,
    id: i64,
    path: PathBuf,
    mut copy: LogCopy,
    last: bool,
) -> (LogCopy, Result<(), CopyError>) {
    let fallback = copy.clone();
    let task = tokio::task::spawn_blocking(move || {
        let outcome = copy_once(&journal, id, &path, &mut copy, last);
        if outcome.is_err() {
            copy.failed();
        }
        (copy, outcome)
    });
    match task.await {
        Ok(done) => done,
        Err(e) => {
            let mut copy = fallback;
            copy.failed();
            let error = std::io::Error::other(format!("the copying task failed: {e}"));
            (copy, Err(CopyError::File(error)))
        }
    }
}

/// Copies one running deploy's log into a PostgreSQL journal, every
/// [`MIRROR_INTERVAL`] while it runs and once more at its end
/// ([`Mirror::finish`]); nothing on a journal that keeps no logs.
pub struct Mirror {
    running: Option<Running>,
}

struct Running {
    journal: Arc<Journal>,
    id: i64,
    path: PathBuf,
    cap: u64,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<LogCopy>,
}

impl Mirror {
    /// Starts copying deploy `id`'s log at `path`, capped at `config`'s
    /// `max_deploy_log_bytes`, into `journal` if it keeps logs
    /// ([`Journal::keeps_deploy_logs`]). The first copy is made at once, so
    /// the log exists (empty) as soon as the deploy has started.
    pub fn start(journal: &Arc<Journal>, id: i64, path: &Path, config: &LiveConfig) -> Mirror {
        if !journal.keeps_deploy_logs() {
            return Mirror { running: None };
        }
        let cap = config.current().server.max_deploy_log_bytes;
        let (stop, mut stopped) = watch::channel(false);
        let (journal, path) = (journal.clone(), path.to_path_buf());
        let task = tokio::spawn({
            let (journal, path) = (journal.clone(), path.clone());
            async move {
                let mut copy = LogCopy::new(cap);
                let mut failing = false;
                loop {
                    let outcome;
                    (copy, outcome) =
                        copy_blocking(journal.clone(), id, path.clone(), copy, false).await;
                    failing = report(id, outcome, failing);
                    tokio::select! {
                        _ = tokio::time::sleep(MIRROR_INTERVAL) => {}
                        _ = stopped.wait_for(|s| *s) => return copy,
                    }
                }
            }
        });
        Mirror {
            running: Some(Running {
                journal,
                id,
                path,
                cap,
                stop,
                task,
            }),
        }
    }

    /// Stops the periodic copies and makes the last one (call it once the
    /// log's trailer is written). Should the journal refuse it, it is
    /// retried in the background ([`FINAL_ATTEMPTS`]).
    pub async fn finish(self) {
        let Some(running) = self.running else { return };
        let Running {
            journal,
            id,
            path,
            cap,
            stop,
            task,
        } = running;
        let _ = stop.send(true);
        let mut copy = match task.await {
            Ok(copy) => copy,
            Err(_) => {
                // The copying task is gone: start over from the file.
                let mut copy = LogCopy::new(cap);
                copy.failed();
                copy
            }
        };
        let outcome;
        (copy, outcome) = copy_blocking(journal.clone(), id, path.clone(), copy, true).await;
        if report(id, outcome, false) {
            tokio::spawn(async move {
                for _ in 1..FINAL_ATTEMPTS {
                    tokio::time::sleep(MIRROR_INTERVAL).await;
                    let outcome;
                    (copy, outcome) =
                        copy_blocking(journal.clone(), id, path.clone(), copy, true).await;
                    if !report(id, outcome, true) {
                        return;
                    }
                }
                tracing::error!(
                    deploy = id,
                    "gave up copying the deploy log into the journal; it is on this machine only"
                );
            });
        }
    }
}

/// Logs a copy's outcome: its first failure, and that copying works again
/// after failures. Whether it failed.
fn report(id: i64, outcome: Result<(), CopyError>, failing: bool) -> bool {
    match outcome {
        Ok(()) => {
            if failing {
                tracing::info!(
                    deploy = id,
                    "the deploy log is copied into the journal again"
                );
            }
            false
        }
        Err(e) => {
            if !failing {
                tracing::warn!(deploy = id, error = %e, "cannot copy the deploy log into the journal; retrying");
            }
            true
        }
    }
}

/// The file deploy `id` of `stack` writes its log to on a machine whose
/// state directory is `state_dir`: `<state_dir>/logs/<stack>/<id>.log`.
pub fn file_path(state_dir: &Path, stack: &str, id: i64) -> PathBuf {
    state_dir.join("logs").join(stack).join(format!("{id}.log"))
}

/// The file on this machine that may hold `deploy`'s log, once it has one
/// (its `log_path` is set): where this machine's runner writes it
/// ([`file_path`]), never the path the row names, which an imported export
/// or anyone writing to a shared database chooses; `None` for a stack
/// name no stack may have (such as `..`).
pub fn local_file(state_dir: &Path, deploy: &DeployRecord) -> Option<PathBuf> {
    let stack = &deploy.queued.stack;
    (deploy.log_path.is_some() && crate::config::is_stack_name(stack))
        .then(|| file_path(state_dir, stack, deploy.id))
}

/// The marker a log served from its end starts with.
pub const EARLIER_OUTPUT_CUT: &str = "[... earlier output cut ...]\n";

/// The last `max` bytes of deploy `id`'s log (after [`EARLIER_OUTPUT_CUT`]
/// if there was more): the file, if this machine (state directory
/// `state_dir`) has it ([`local_file`]), else the journal's copy. `None`
/// for an unknown deploy, or a log neither has.
pub fn read_tail(journal: &Journal, state_dir: &Path, id: i64, max: u64) -> Option<String> {
    let deploy = journal.deploy(id).ok()??;
    if let Some(text) = local_file(state_dir, &deploy).and_then(|p| file_tail(&p, max)) {
        return Some(text);
    }
    let stored = journal.deploy_log(id).ok()??;
    let max = usize::try_from(max).unwrap_or(usize::MAX);
    let text = stored.text;
    if text.len() <= max {
        return Some(text);
    }
    let from = text.ceil_char_boundary(text.len() - max);
    Some(format!("{EARLIER_OUTPUT_CUT}{}", &text[from..]))
}

/// The last `max` bytes of the log file at `path`, as text.
fn file_tail(path: &Path, max: u64) -> Option<String> {
    let mut file = std::fs::File::open(path).ok()?;
    let len = file.metadata().ok()?.len();
    let mut buf = Vec::new();
    if len > max {
        file.seek(SeekFrom::Start(len - max)).ok()?;
        buf.extend_from_slice(EARLIER_OUTPUT_CUT.as_bytes());
    }
    file.take(max).read_to_end(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf).into_owned())
}

/// Where `redeploy logs` reads a deploy's log from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LogSource {
    /// The file on this machine.
    File(PathBuf),
    /// The journal's copy (the deploy ran on another machine).
    Journal,
}

impl LogSource {
    /// Where to read `deploy`'s log: its file if this machine (state
    /// directory `state_dir`) has it ([`local_file`]); the journal's copy
    /// if the journal keeps logs and holds some of it, or the deploy has
    /// ended; `None` while neither has anything yet (a deploy not started,
    /// or just starting). On a journal that keeps no logs, the file, as
    /// soon as the deploy has one.
    pub fn of(
        journal: &Journal,
        state_dir: &Path,
        deploy: &DeployRecord,
    ) -> Result<Option<LogSource>, JournalError> {
        if deploy.log_path.is_none() {
            return Ok(None);
        }
        let file = local_file(state_dir, deploy);
        if let Some(path) = file.filter(|p| !journal.keeps_deploy_logs() || p.exists()) {
            return Ok(Some(LogSource::File(path)));
        }
        if !journal.keeps_deploy_logs() {
            return Ok(None);
        }
        let started = journal
            .deploy_log_size(deploy.id)?
            .is_some_and(|size| size > 0);
        Ok((started || deploy.state.is_final()).then_some(LogSource::Journal))
    }
}

impl LogSource {
    /// What the log holds from byte `from` on, at most `max` bytes. A log
    /// not yet written counts as empty. Byte offsets are the source's own:
    /// a file's bytes, or the journal's copy's.
    pub fn read_from(
        &self,
        journal: &Journal,
        id: i64,
        from: u64,
        max: u64,
    ) -> anyhow::Result<Vec<u8>> {
        use anyhow::Context as _;
        match self {
            LogSource::File(path) => {
                let mut file = match std::fs::File::open(path) {
                    Ok(f) => f,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
                    Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
                };
                file.seek(SeekFrom::Start(from))?;
                let mut bytes = Vec::new();
                file.take(max)
                    .read_to_end(&mut bytes)
                    .with_context(|| format!("reading {}", path.display()))?;
                Ok(bytes)
            }
            LogSource::Journal => {
                let Some(stored) = journal.deploy_log_from(id, from)? else {
                    return Ok(Vec::new());
                };
                let mut bytes = stored.text.into_bytes();
                bytes.truncate(usize::try_from(max).unwrap_or(usize::MAX));
                Ok(bytes)
            }
        }
    }
}

/// Deletes the log and event files under `logs` (`<stack>/<id>.log` and
/// `<stack>/<id>.event.json`) of deploys the journal no longer holds: on a
/// journal several machines share, whichever prunes deletes the rows (and
/// the stored logs with them) but only its own files, so each machine
/// sweeps its own. How many files it deleted.
pub fn remove_orphan_files(journal: &Journal, logs: &Path) -> Result<usize, JournalError> {
    let mut files = Vec::new();
    let Ok(stacks) = std::fs::read_dir(logs) else {
        return Ok(0);
    };
    for stack in stacks.flatten() {
        if !stack.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let Ok(entries) = std::fs::read_dir(stack.path()) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let id = name.to_str().and_then(|n| {
                n.strip_suffix(".log")
                    .or_else(|| n.strip_suffix(".event.json"))
                    .and_then(|id| id.parse::<i64>().ok())
            });
            if let Some(id) = id.filter(|_| entry.file_type().is_ok_and(|t| t.is_file())) {
                files.push((id, entry.path()));
            }
        }
    }
    let ids = files.iter().map(|(id, _)| *id).collect();
    let known = journal.known_deploys(&ids)?;
    let mut removed = 0;
    for (id, path) in files {
        if known.contains(&id) {
            continue;
        }
        match std::fs::remove_file(&path) {
            Ok(()) => removed += 1,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "retention: cannot delete a pruned deploy's file")
            }
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests;
