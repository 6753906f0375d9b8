//! One deploy per stack across every process on a state directory, and no
//! deploy left running by a dead runner.
//!
//! Every runner (`serve`'s, and `run-queued` started by the post-receive
//! hook) takes the stack's lock, `<state_dir>/locks/<stack>.lock` (an
//! `flock(2)` lock, released by the kernel when its holder dies), before it
//! starts a deploy of the stack, and holds it until the deploy's end is in
//! the journal. So whoever holds the lock and finds a deploy of the stack
//! still `started` in the journal knows its runner is dead: it kills what is
//! left of that deploy's process group (recorded in the journal when the
//! deploy started; SIGTERM, [`KILL_GRACE`], SIGKILL), marks it
//! `interrupted`, and only then starts the next deploy.
//!
//! On a PostgreSQL journal, shared by processes on several machines, the
//! stack's lock is a lease in the journal instead ([`crate::cluster`]), and
//! recovery only signals a process group that lives on its own machine.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::journal::{now_ms, DeployObserver, DeployState, Journal, TransitionDetail};

/// How long a deploy command gets between SIGTERM and SIGKILL when it times
/// out or the server shuts down.
pub const KILL_GRACE: Duration = Duration::from_secs(5);

/// How often a runner waiting for a stack's lock tries again: short next to
/// any deploy, long next to the cost of one `flock` call.
pub const LOCK_POLL: Duration = Duration::from_millis(100);

/// How long recovery waits, after SIGKILL, for an interrupted deploy's
/// process group to be gone. SIGKILL cannot be caught; only a process stuck
/// in the kernel (uninterruptible I/O) outlives it, and then the stack's next
/// deploy must not start beside it.
pub const GROUP_EXIT_WAIT: Duration = Duration::from_secs(10);

/// The reason recorded for a deploy recovery finds left `started` by a dead
/// runner.
pub const RECOVERED_REASON: &str =
    "redeploy stopped while it ran; what was left of the deploy was stopped at recovery";

/// A held stack lock; dropping it releases the lock.
#[derive(Debug)]
pub enum StackLock {
    /// `<state_dir>/locks/<stack>.lock`, locked (SQLite journal).
    File(File),
    /// The stack's lease (PostgreSQL journal).
    Lease(crate::cluster::Lease),
}

impl StackLock {
    /// Turns true when the lock may be lost (a lease that could not be
    /// renewed): the deploy it covers must stop at once. A file lock is
    /// never lost.
    pub fn lost(&self) -> Option<tokio::sync::watch::Receiver<bool>> {
        match self {
            StackLock::File(_) => None,
            StackLock::Lease(lease) => Some(lease.lost()),
        }
    }

    /// The lease, `(name, holder)`, that the journal checks before it
    /// starts a deploy under this lock ([`crate::journal::Start`]); `None`
    /// for a file lock.
    pub fn lease(&self) -> Option<(&str, &str)> {
        match self {
            StackLock::File(_) => None,
            StackLock::Lease(lease) => Some((lease.name(), lease.holder())),
        }
    }

    /// Gives the lock up now.
    pub async fn release(self) {
        match self {
            StackLock::File(file) => drop(file),
            StackLock::Lease(lease) => lease.release().await,
        }
    }
}

/// Where the stack locks of a journal live.
#[derive(Clone)]
pub enum Locks {
    /// Files in this state directory: one machine (SQLite).
    Files(PathBuf),
    /// Leases in the journal, shared by every replica (PostgreSQL).
    Leases(std::sync::Arc<crate::cluster::Cluster>),
}

impl Locks {
    /// Takes `stack`'s lock, waiting while another runner holds it; `None`
    /// once `give_up` says to stop waiting.
    pub async fn lock(
        &self,
        stack: &str,
        give_up: impl Fn() -> bool,
    ) -> anyhow::Result<Option<StackLock>> {
        use anyhow::Context as _;
        match self {
            Locks::Files(state_dir) => lock(state_dir, stack, give_up)
                .await
                .with_context(|| format!("cannot lock {}", lock_path(state_dir, stack).display())),
            Locks::Leases(cluster) => Ok(cluster
                .lease(&crate::cluster::stack_lease(stack), give_up)
                .await
                .with_context(|| format!("stack \"{stack}\": cannot take its lease"))?
                .map(StackLock::Lease)),
        }
    }

    /// Takes `stack`'s lock if no other runner holds it.
    pub async fn try_lock(&self, stack: &str) -> anyhow::Result<Option<StackLock>> {
        use anyhow::Context as _;
        match self {
            Locks::Files(state_dir) => try_lock(state_dir, stack)
                .with_context(|| format!("stack \"{stack}\": cannot open its lock")),
            Locks::Leases(cluster) => Ok(cluster
                .try_lease(&crate::cluster::stack_lease(stack))
                .await
                .with_context(|| format!("stack \"{stack}\": cannot take its lease"))?
                .map(StackLock::Lease)),
        }
    }
}

/// The lock file of `stack` in `state_dir`.
pub fn lock_path(state_dir: &Path, stack: &str) -> PathBuf {
    state_dir.join("locks").join(format!("{stack}.lock"))
}

fn open_lock_file(state_dir: &Path, stack: &str) -> io::Result<File> {
    use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
    let dir = state_dir.join("locks");
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)?;
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(lock_path(state_dir, stack))
}

/// Takes `stack`'s lock if it is free; `None` if another runner holds it.
pub fn try_lock(state_dir: &Path, stack: &str) -> io::Result<Option<StackLock>> {
    let file = open_lock_file(state_dir, stack)?;
    Ok(try_flock(&file)?.then_some(StackLock::File(file)))
}

/// Takes an exclusive `flock(2)` on `file` without waiting: false when
/// another open file holds it. The lock lasts as long as `file` is open.
fn try_flock(file: &File) -> io::Result<bool> {
    // SAFETY: flock(2) on a descriptor owned by `file`, which the caller
    // keeps open for as long as the lock is held.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc == 0 {
        return Ok(true);
    }
    let err = io::Error::last_os_error();
    if err.kind() == io::ErrorKind::WouldBlock {
        Ok(false)
    } else {
        Err(err)
    }
}

/// The file a running `serve` holds locked, one server per state
/// directory. Outside `locks/`, so no stack name can collide with it.
pub fn serve_lock_path(state_dir: &Path) -> PathBuf {
    state_dir.join("serve.lock")
}

/// The lock of the one `serve` a state directory may have; dropping it
/// (or the process ending, however it ends) releases it.
#[derive(Debug)]
pub struct ServeLock {
    _file: File,
}

/// Another `serve` holds the state directory.
#[derive(Debug, thiserror::Error)]
pub enum ServeLockError {
    /// Another server holds the lock.
    #[error(
        "another `redeploy serve`{} is using state directory {}: stop it first, or give this server its own server.state_dir",
        .pid.map_or_else(String::new, |p| format!(" (pid {p})")),
        .state_dir.display()
    )]
    Held {
        /// The state directory.
        state_dir: PathBuf,
        /// The holder's process id, as it wrote it.
        pid: Option<u32>,
    },
    /// The lock file cannot be opened or locked.
    #[error("cannot lock {}: {source}", .path.display())]
    Io {
        /// The lock file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
}

/// The process id of the `serve` holding `state_dir`'s lock, as it wrote
/// it; `None` when no server holds it (the lock is free, or the lock file
/// does not exist). A held lock without a process id is an error.
pub fn serving_pid(state_dir: &Path) -> io::Result<Option<u32>> {
    use std::io::Read as _;
    let mut file = match File::open(serve_lock_path(state_dir)) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    // Free: no server runs (the lock is let go again when `file` closes).
    if try_flock(&file)? {
        return Ok(None);
    }
    let mut text = String::new();
    file.read_to_string(&mut text)?;
    text.trim().parse().map(Some).map_err(|_| {
        io::Error::other("a server holds the serve lock, but the lock file names no process id")
    })
}

/// Takes the state directory's `serve` lock, and writes this process's id
/// into the lock file for the message another server gets.
pub fn lock_serve(state_dir: &Path) -> Result<ServeLock, ServeLockError> {
    use std::io::{Read as _, Seek as _, Write as _};
    use std::os::unix::fs::OpenOptionsExt as _;
    let path = serve_lock_path(state_dir);
    let io_error = |source| ServeLockError::Io {
        path: path.clone(),
        source,
    };
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .mode(0o600)
        .open(&path)
        .map_err(io_error)?;
    if !try_flock(&file).map_err(io_error)? {
        let mut text = String::new();
        let pid = file
            .read_to_string(&mut text)
            .ok()
            .and_then(|_| text.trim().parse().ok());
        return Err(ServeLockError::Held {
            state_dir: state_dir.to_path_buf(),
            pid,
        });
    }
    file.set_len(0)
        .and_then(|()| file.rewind())
        .and_then(|()| writeln!(file, "{}", std::process::id()))
        .map_err(io_error)?;
    Ok(ServeLock { _file: file })
}

/// Takes `stack`'s lock, waiting (polling every [`LOCK_POLL`]) while another
/// runner holds it; `None` if `give_up` says to stop waiting (shutdown).
pub async fn lock(
    state_dir: &Path,
    stack: &str,
    give_up: impl Fn() -> bool,
) -> io::Result<Option<StackLock>> {
    loop {
        if let Some(lock) = try_lock(state_dir, stack)? {
            return Ok(Some(lock));
        }
        if give_up() {
            return Ok(None);
        }
        tokio::time::sleep(LOCK_POLL).await;
    }
}

/// Whether any live (not zombie) process is in process group `pgid`. Reads
/// `/proc`; where it is not mounted, asks the kernel with `kill(-pgid, 0)`
/// (which also counts zombies).
pub fn group_alive(pgid: i32) -> bool {
    if pgid <= 1 {
        return false;
    }
    let Ok(entries) = std::fs::read_dir("/proc") else {
        // SAFETY: signal 0 only checks that the group exists.
        return unsafe { libc::kill(-pgid, 0) } == 0;
    };
    entries.flatten().any(|entry| {
        let pid = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok());
        pid.and_then(proc_stat)
            .is_some_and(|stat| stat.alive && stat.pgrp == pgid)
    })
}

/// The process groups of the live processes of this user whose
/// environment holds `entry` (`NAME=value`) exactly: what is left of a
/// deploy whose group was never journaled. Left out: a session of its own
/// whose leader holds the entry (a daemon the deploy started with `setsid`,
/// meant to outlive it, and everything in its session), this process's own
/// group, and processes of other users (a server running as root reads
/// every process's environment, and another user could copy the entry
/// into processes of theirs). Reads `/proc`. A child that dropped the
/// environment (`sudo`, `env -i`) is not found: this is a fallback, the
/// journaled group is what recovery stops.
pub fn groups_with_env(entry: &str) -> Vec<i32> {
    use std::os::unix::fs::MetadataExt as _;
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    // SAFETY: getpgrp(2) and geteuid(2) only read this process's ids.
    let (own_group, own_uid) = unsafe { (libc::getpgrp(), libc::geteuid()) };
    // (pid, process group, session) of each process holding the entry.
    let mut holders: Vec<(i32, i32, i32)> = Vec::new();
    for dir in entries.flatten() {
        let Some(pid) = dir.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
            continue;
        };
        if dir.metadata().ok().map(|m| m.uid()) != Some(own_uid) {
            continue;
        }
        // The same process before and after its environment is read (a pid
        // reused in between starts at another time).
        let Some(before) = proc_stat(pid) else {
            continue;
        };
        let has_entry = std::fs::read(format!("/proc/{pid}/environ"))
            .is_ok_and(|env| env.split(|b| *b == 0).any(|var| var == entry.as_bytes()));
        if has_entry
            && proc_stat(pid).is_some_and(|after| after.start == before.start)
            && before.alive
        {
            holders.push((pid, before.pgrp, before.session));
        }
    }
    let own_sessions: Vec<i32> = holders
        .iter()
        .filter(|(pid, _, session)| pid == session)
        .map(|(_, _, session)| *session)
        .collect();
    let mut groups = Vec::new();
    for (_, pgrp, session) in holders {
        if pgrp > 1
            && pgrp != own_group
            && !own_sessions.contains(&session)
            && !groups.contains(&pgrp)
        {
            groups.push(pgrp);
        }
    }
    groups
}

/// What recovery reads of a process's `/proc/PID/stat`.
struct ProcStat {
    /// Not a zombie.
    alive: bool,
    pgrp: i32,
    session: i32,
    /// When it started, in clock ticks since boot.
    start: u64,
}

fn proc_stat(pid: i32) -> Option<ProcStat> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) state ppid pgrp session ... starttime (22nd)`, counted
    // from the last `)`: comm may hold spaces and parentheses.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Some(ProcStat {
        alive: !matches!(*fields.first()?, "Z" | "X"),
        pgrp: fields.get(2)?.parse().ok()?,
        session: fields.get(3)?.parse().ok()?,
        start: fields.get(19)?.parse().ok()?,
    })
}

fn signal_group(pgid: i32, signal: i32) {
    // SAFETY: kill(2) with a negative pid signals a process group; no memory
    // is shared. pgid > 1 is checked by the callers.
    unsafe {
        libc::kill(-pgid, signal);
    }
}

async fn wait_gone(pgid: i32, limit: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if !group_alive(pgid) {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Stops what is left of a process group: SIGTERM, up to [`KILL_GRACE`] to
/// exit, then SIGKILL and up to [`GROUP_EXIT_WAIT`]. True once no live
/// process is left in it.
pub async fn end_group(pgid: i32) -> bool {
    if pgid <= 1 || !group_alive(pgid) {
        return true;
    }
    signal_group(pgid, libc::SIGTERM);
    if wait_gone(pgid, KILL_GRACE).await {
        return true;
    }
    signal_group(pgid, libc::SIGKILL);
    wait_gone(pgid, GROUP_EXIT_WAIT).await
}

/// Why recovery could not clear a stack for its next deploy.
#[derive(Debug, thiserror::Error)]
pub enum RecoveryError {
    /// The journal failed.
    #[error(transparent)]
    Journal(#[from] crate::journal::JournalError),
    /// A process of an interrupted deploy outlived SIGKILL.
    #[error(
        "stack \"{stack}\": process group {pgid} of interrupted deploy #{id} is still alive after \
         SIGKILL; the stack's next deploy waits until it is gone"
    )]
    GroupSurvives {
        /// The stack.
        stack: String,
        /// The interrupted deploy.
        id: i64,
        /// Its process group.
        pgid: i32,
    },
}

/// With `stack`'s lock held (the `_lock` argument proves it), finds the
/// deploys of the stack a dead runner left `started`, stops what is left of
/// each one's process group if it lives on this machine (a runner on
/// another machine stopped its own when it lost the stack's lease,
/// [`crate::cluster`]), and marks it `interrupted` (telling `observer`).
/// Returns their ids, oldest first.
pub async fn recover_stack(
    journal: &Journal,
    stack: &str,
    _lock: &StackLock,
    observer: Option<&dyn DeployObserver>,
) -> Result<Vec<i64>, RecoveryError> {
    let mut recovered = Vec::new();
    for started in journal.started_deploys(stack)? {
        let id = started.id;
        // A group recorded before machines were (schema 7) is this one's:
        // only a single machine ran deploys then.
        let here = started
            .pgid_host
            .as_deref()
            .is_none_or(|host| host == crate::cluster::host_id());
        // A runner that died between starting the command and recording
        // its group left no group: its processes are found by the event
        // file their environment names.
        let groups = match (started.pgid, &started.log_path) {
            (Some(pgid), _) if here => i32::try_from(pgid).ok().into_iter().collect(),
            (None, Some(log)) if here => {
                groups_with_env(&crate::runner::event_file_env(std::path::Path::new(log)))
            }
            _ => Vec::new(),
        };
        for pgid in groups {
            if !end_group(pgid).await {
                return Err(RecoveryError::GroupSurvives {
                    stack: stack.to_string(),
                    id,
                    pgid,
                });
            }
        }
        let detail = TransitionDetail {
            reason: Some(RECOVERED_REASON.to_string()),
            ..TransitionDetail::default()
        };
        journal.transition(id, DeployState::Interrupted, now_ms(), &detail)?;
        tracing::warn!(
            deploy = id,
            stack,
            "deploy was interrupted by a stop of its runner; recovered"
        );
        if let Some(o) = observer {
            o.changed(id, DeployState::Interrupted, detail.reason.as_deref());
        }
        recovered.push(id);
    }
    Ok(recovered)
}

/// At `serve`'s start, and on a PostgreSQL journal every
/// [`crate::cluster::SWEEP_EVERY`]: recovers every stack with a deploy left
/// `started` whose lock is free (a held lock means a live runner, such as a
/// hook's `run-queued` or another replica, is running that deploy: it is
/// left alone). Returns the recovered deploys' ids.
pub async fn recover_free_stacks(
    journal: &Journal,
    locks: &Locks,
    observer: Option<&dyn DeployObserver>,
) -> anyhow::Result<Vec<i64>> {
    let mut recovered = Vec::new();
    for stack in journal.stacks_with_started_deploys()? {
        let Some(lock) = locks.try_lock(&stack).await? else {
            tracing::debug!(
                stack,
                "a deploy of this stack is running in another process"
            );
            continue;
        };
        match recover_stack(journal, &stack, &lock, observer).await {
            Ok(ids) => recovered.extend(ids),
            // The stack stays blocked: its runner retries at its next deploy.
            Err(e) => tracing::error!(stack, error = %e, "cannot recover the stack"),
        }
        lock.release().await;
    }
    Ok(recovered)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn a_stack_lock_excludes_a_second_holder_until_dropped() {
        let dir = std::env::temp_dir().join(format!("redeploy-lock-{}", std::process::id()));
        let first = try_lock(&dir, "web").unwrap().expect("free lock");
        assert!(try_lock(&dir, "web").unwrap().is_none(), "lock taken twice");
        assert!(
            try_lock(&dir, "api").unwrap().is_some(),
            "stacks share a lock"
        );
        drop(first);
        assert!(try_lock(&dir, "web").unwrap().is_some());
        use std::os::unix::fs::PermissionsExt as _;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir.join("locks")), 0o700);
        assert_eq!(mode(&lock_path(&dir, "web")), 0o600);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A runner killed after starting a deploy's command but before the
    /// journal recorded its process group: recovery finds the command's
    /// processes by the event file in their environment, stops them, and
    /// leaves alone another deploy's and a daemon that left the session.
    #[tokio::test]
    async fn recovery_stops_a_deploy_whose_process_group_was_never_recorded() {
        let base = std::env::temp_dir().join(format!(
            "redeploy-recover-env-{}-{}",
            std::process::id(),
            now_ms()
        ));
        let journal = Journal::open(&base.join("journal.sqlite3")).unwrap();
        let id = journal.insert_manual_deploy("web");
        let log = base.join("logs").join("web").join(format!("{id}.log"));
        let detail = TransitionDetail {
            log_path: Some(log.display().to_string()),
            ..TransitionDetail::default()
        };
        journal
            .transition(id, DeployState::Started, 2, &detail)
            .unwrap();
        let entry = crate::runner::event_file_env(&log);
        let spawn = |argv: &[&str], entry: &str, own_group: bool| {
            use std::os::unix::process::CommandExt as _;
            let (name, value) = entry.split_once('=').unwrap();
            let mut cmd = std::process::Command::new(argv[0]);
            cmd.args(&argv[1..]).env(name, value);
            if own_group {
                cmd.process_group(0);
            }
            cmd.spawn().unwrap()
        };
        let mut orphan = spawn(&["sleep", "60"], &entry, true);
        let elsewhere = crate::runner::event_file_env(&base.join("logs/web/999999.log"));
        let mut other = spawn(&["sleep", "60"], &elsewhere, true);
        // Not a group leader, setsid(1) calls setsid(2) and execs sleep.
        let mut daemon = spawn(&["setsid", "sleep", "60"], &entry, false);
        let session_of = |pid: u32| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let rest = stat.rfind(')').map_or("", |i| &stat[i + 1..]);
            rest.split_whitespace()
                .nth(3)
                .and_then(|s| s.parse::<u32>().ok())
        };
        for _ in 0..500 {
            if session_of(daemon.id()) == Some(daemon.id()) {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(
            session_of(daemon.id()),
            Some(daemon.id()),
            "setsid never ran"
        );
        assert_eq!(groups_with_env(&entry), vec![orphan.id() as i32]);
        let lock = try_lock(&base, "web").unwrap().unwrap();
        assert_eq!(
            recover_stack(&journal, "web", &lock, None).await.unwrap(),
            vec![id]
        );
        let status = orphan.wait().unwrap();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(libc::SIGTERM)
        );
        assert!(
            other.try_wait().unwrap().is_none(),
            "another deploy's process was stopped"
        );
        assert!(
            daemon.try_wait().unwrap().is_none(),
            "the daemon that left the session was stopped"
        );
        let record = journal.deploy(id).unwrap().unwrap();
        assert_eq!(record.state, DeployState::Interrupted);
        for child in [&mut other, &mut daemon] {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&base);
    }

    #[test]
    fn a_group_that_does_not_exist_is_not_alive() {
        assert!(!group_alive(0));
        assert!(!group_alive(1));
        assert!(!group_alive(i32::MAX));
    }

    #[test]
    fn a_second_serve_on_one_state_directory_is_refused_until_the_first_ends() {
        let dir = std::env::temp_dir().join(format!(
            "redeploy-serve-lock-{}-{}",
            std::process::id(),
            crate::journal::now_ms()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let first = lock_serve(&dir).unwrap();
        let refused = lock_serve(&dir).unwrap_err();
        assert_eq!(
            refused.to_string(),
            format!(
                "another `redeploy serve` (pid {}) is using state directory {}: stop it first, \
                 or give this server its own server.state_dir",
                std::process::id(),
                dir.display()
            )
        );
        drop(first);
        let again = lock_serve(&dir).unwrap();
        let mode = std::fs::metadata(serve_lock_path(&dir))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        drop(again);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
