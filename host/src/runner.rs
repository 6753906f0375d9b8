//! The deploy runner: one deploy at a time per stack, stacks in parallel up
//! to a global cap, and the newest commit wins.
//!
//! Per stack there is at most one running deploy and one pending deploy. A
//! newer deploy replaces the pending one, which is recorded `cancelled` and
//! never runs; a deploy older than the one pending or running is cancelled
//! at once, so an older commit never runs after a newer one.
//!
//! Which commit is newer is the journal's judgment, not the runner's: the
//! journal admits a deploy only if its commit is not older than every commit
//! the stack already deployed or superseded ([`crate::commit_order`]), across
//! restarts, so deploys are newer in the order the journal admitted them, and
//! the runner orders them by deploy id. It keeps no record of commits of
//! its own.
//!
//! Every state change goes to the journal first; the in-memory queues are
//! only a cache of it, rebuilt by [`Runner::recover`] at start.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Deserialize;
use tokio::io::AsyncWriteExt as _;
use tokio::sync::{watch, Semaphore};

use crate::config::{Config, DeployAction, StackConfig};
use crate::journal::{
    now_ms, DeployObserver, DeployRecord, DeployState, Journal, TransitionDetail,
};
use crate::metrics::Metrics;

/// Environment variables a deploy command inherits from the server; all
/// others are dropped, so the server's secrets (secret and token variables)
/// never reach deploy commands or their logs.
pub const INHERITED_ENV: &[&str] = &[
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "LANG",
    "LC_ALL",
    "TZ",
    "SHELL",
    "TMPDIR",
    "DOCKER_HOST",
    "XDG_RUNTIME_DIR",
];

/// How long an HTTP deploy action may take when the stack sets no timeout
/// shorter than this.
pub const HTTP_ACTION_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The parts of a journaled deploy event that the journal's own columns do
/// not hold (stack, ref, sha, services... are columns of the deploy row).
#[derive(Clone, Debug, Default, Deserialize)]
pub struct DeployEventJson {
    /// The branch, when the ref is one.
    pub branch: Option<String>,
    /// The tag, when the ref is one.
    pub tag: Option<String>,
    /// The repository, when known.
    pub repository: Option<String>,
    /// `registry/repository:tag` for registry pushes.
    pub image: Option<String>,
}

/// A deploy in a stack's queue. Its id is its place in the order of
/// newness: the journal admits deploys newest last.
#[derive(Clone, Debug)]
struct Slot {
    id: i64,
    sha: Option<String>,
}

#[derive(Default)]
struct StackQueue {
    running: Option<Slot>,
    pending: Option<Slot>,
    worker_active: bool,
}

/// What happened to a deploy handed to [`Runner::enqueue`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Enqueued {
    /// It will run (it is pending or about to start).
    Queued,
    /// It was cancelled at once, with the reason.
    Cancelled(String),
}

struct Inner {
    config: Arc<Config>,
    journal: Arc<Journal>,
    metrics: Arc<Metrics>,
    queues: Mutex<BTreeMap<String, StackQueue>>,
    global: Semaphore,
    /// Set at shutdown: workers start nothing new.
    stopping: std::sync::atomic::AtomicBool,
    /// Sent at the end of the grace period: running commands are killed.
    kill: watch::Sender<bool>,
    running_children: Mutex<HashMap<i64, u32>>,
    workers: tokio::sync::Mutex<tokio::task::JoinSet<()>>,
    http: reqwest::Client,
    observer: std::sync::OnceLock<Arc<dyn DeployObserver>>,
    /// False when the caller holds every stack lock itself (`run_queued`).
    takes_stack_locks: std::sync::atomic::AtomicBool,
}

/// The deploy runner. Cheap to clone.
#[derive(Clone)]
pub struct Runner {
    inner: Arc<Inner>,
}

impl Runner {
    /// A runner for `config`'s stacks, writing to `journal`.
    pub fn new(
        config: Arc<Config>,
        journal: Arc<Journal>,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<Runner> {
        let (kill, _) = watch::channel(false);
        // No redirects: an HTTP action's headers carry its credentials, and
        // a redirect would carry them to whatever host it names. A 3xx
        // answer is a failed deploy that says so.
        let http = reqwest::Client::builder()
            .connect_timeout(HTTP_ACTION_CONNECT_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Runner {
            inner: Arc::new(Inner {
                global: Semaphore::new(config.server.max_concurrent_deploys),
                config,
                journal,
                metrics,
                queues: Mutex::new(BTreeMap::new()),
                stopping: std::sync::atomic::AtomicBool::new(false),
                kill,
                running_children: Mutex::new(HashMap::new()),
                workers: tokio::sync::Mutex::new(tokio::task::JoinSet::new()),
                http,
                observer: std::sync::OnceLock::new(),
                takes_stack_locks: std::sync::atomic::AtomicBool::new(true),
            }),
        })
    }

    /// Sets the observer told of every state change (once; later calls are
    /// ignored).
    pub fn observe(&self, observer: Arc<dyn DeployObserver>) {
        let _ = self.inner.observer.set(observer);
    }

    /// Tells the runner its caller holds the lock of every stack it will
    /// run ([`crate::supervise`]), so it takes none itself.
    pub fn caller_holds_stack_locks(&self) {
        self.inner
            .takes_stack_locks
            .store(false, std::sync::atomic::Ordering::SeqCst);
    }

    /// Takes the stack's lock, then recovers what a dead runner left of the
    /// stack's deploys. `None` (nothing may start) at shutdown or on error.
    async fn lock_and_recover(&self, stack: &str) -> Option<crate::supervise::StackLock> {
        let inner = &self.inner;
        let lock = crate::supervise::lock(&inner.config.server.state_dir, stack, || {
            inner.stopping.load(std::sync::atomic::Ordering::SeqCst)
        })
        .await;
        let lock = match lock {
            Ok(Some(lock)) => lock,
            Ok(None) => return None,
            Err(e) => {
                tracing::error!(stack, error = %e, "cannot take the stack's lock; its deploy stays queued");
                return None;
            }
        };
        let observer = inner.observer.get().map(|o| o.as_ref());
        match crate::supervise::recover_stack(&inner.journal, stack, &lock, observer).await {
            Ok(ids) => {
                for _ in ids {
                    inner.metrics.deploy_state(DeployState::Interrupted);
                }
                Some(lock)
            }
            Err(e) => {
                tracing::error!(stack, error = %e, "cannot recover the stack; its deploy stays queued");
                None
            }
        }
    }

    fn notify(&self, id: i64, state: DeployState, detail: Option<&str>) {
        if let Some(o) = self.inner.observer.get() {
            o.changed(id, state, detail);
        }
    }

    fn cancel(&self, id: i64, reason: String, superseded_by: Option<i64>) {
        let detail = TransitionDetail {
            reason: Some(reason),
            superseded_by,
            ..Default::default()
        };
        match self
            .inner
            .journal
            .transition(id, DeployState::Cancelled, now_ms(), &detail)
        {
            Ok(()) => {
                self.inner.metrics.deploy_state(DeployState::Cancelled);
                self.notify(id, DeployState::Cancelled, detail.reason.as_deref());
            }
            Err(e) => {
                tracing::error!(deploy = id, error = %e, "journal: cannot record a cancelled deploy")
            }
        }
    }

    /// Hands a queued deploy (already in the journal) to its stack's queue.
    pub fn enqueue(&self, record: &DeployRecord) -> Enqueued {
        let sha = record.sha.clone();
        let mut queues = self.inner.queues.lock().unwrap();
        let q = queues.entry(record.stack.clone()).or_default();
        let slot = Slot {
            id: record.id,
            sha: sha.clone(),
        };
        if let (Some(s), Some(running)) = (sha.clone(), q.running.clone()) {
            let older = running.id > record.id;
            let same = running.sha.as_deref() == Some(s.as_str()) && q.pending.is_none();
            if older || same {
                drop(queues);
                let reason = if older {
                    format!(
                        "commit {s} is older than the deploy running (#{})",
                        running.id
                    )
                } else {
                    format!("commit {s} is already deploying (#{})", running.id)
                };
                self.cancel(record.id, reason.clone(), Some(running.id));
                return Enqueued::Cancelled(reason);
            }
        }
        if let Some(pending) = q.pending.clone() {
            if pending.id > record.id || (sha.is_some() && pending.sha == sha) {
                drop(queues);
                let reason = if pending.sha == sha {
                    format!("the same commit is already queued (#{})", pending.id)
                } else {
                    format!("a newer commit is already queued (#{})", pending.id)
                };
                self.cancel(record.id, reason.clone(), Some(pending.id));
                return Enqueued::Cancelled(reason);
            }
            q.pending = Some(slot);
            let start = !q.worker_active;
            q.worker_active = true;
            drop(queues);
            let what = sha.as_deref().map_or_else(
                || format!("deploy #{}", record.id),
                |s| format!("commit {s} (#{})", record.id),
            );
            self.notify(record.id, DeployState::Queued, None);
            self.cancel(pending.id, format!("superseded by {what}"), Some(record.id));
            if start {
                self.spawn_worker(record.stack.clone());
            }
            return Enqueued::Queued;
        }
        q.pending = Some(slot);
        let start = !q.worker_active;
        q.worker_active = true;
        drop(queues);
        self.notify(record.id, DeployState::Queued, None);
        if start {
            self.spawn_worker(record.stack.clone());
        }
        Enqueued::Queued
    }

    fn spawn_worker(&self, stack: String) {
        let runner = self.clone();
        let fut = async move { runner.work(stack).await };
        // The JoinSet lock is only held to add the task.
        match self.inner.workers.try_lock() {
            Ok(mut set) => {
                set.spawn(fut);
            }
            Err(_) => {
                let inner = self.inner.clone();
                tokio::spawn(async move {
                    inner.workers.lock().await.spawn(fut);
                });
            }
        }
    }

    async fn work(&self, stack: String) {
        loop {
            let next = {
                let mut queues = self.inner.queues.lock().unwrap();
                let q = queues.entry(stack.clone()).or_default();
                if self
                    .inner
                    .stopping
                    .load(std::sync::atomic::Ordering::SeqCst)
                {
                    // Shutting down: what is pending stays queued in the journal.
                    q.worker_active = false;
                    return;
                }
                match q.pending.take() {
                    Some(slot) => {
                        q.running = Some(slot.clone());
                        Some(slot)
                    }
                    None => {
                        q.worker_active = false;
                        None
                    }
                }
            };
            let Some(slot) = next else { return };
            // The semaphore is closed at shutdown: the deploy then stays queued.
            let Ok(permit) = self.inner.global.acquire().await else {
                let mut queues = self.inner.queues.lock().unwrap();
                if let Some(q) = queues.get_mut(&stack) {
                    q.running = None;
                    q.worker_active = false;
                }
                return;
            };
            self.run_one(slot.id).await;
            drop(permit);
            let mut queues = self.inner.queues.lock().unwrap();
            if let Some(q) = queues.get_mut(&stack) {
                q.running = None;
            }
        }
    }

    async fn run_one(&self, id: i64) {
        let journal = &self.inner.journal;
        let read = || match journal.deploy(id) {
            Ok(Some(r)) if r.state == DeployState::Queued => Some(r),
            Ok(_) => None,
            Err(e) => {
                tracing::error!(deploy = id, error = %e, "journal: cannot read a queued deploy");
                None
            }
        };
        let Some(record) = read() else { return };
        // One deploy per stack across every runner on the state directory:
        // the lock is held until the deploy's end is journaled. Another
        // runner may have run or cancelled this deploy meanwhile: read again.
        let _lock = if self
            .inner
            .takes_stack_locks
            .load(std::sync::atomic::Ordering::SeqCst)
        {
            let Some(lock) = self.lock_and_recover(&record.stack).await else {
                return;
            };
            Some(lock)
        } else {
            None
        };
        let Some(record) = read() else { return };
        let Some(stack) = self.inner.config.stack(&record.stack).cloned() else {
            self.cancel(
                id,
                format!("stack \"{}\" is no longer configured", record.stack),
                None,
            );
            return;
        };
        let log_path = self.log_path(&record);
        let detail = TransitionDetail {
            log_path: Some(log_path.display().to_string()),
            ..Default::default()
        };
        if let Err(e) = journal.transition(id, DeployState::Started, now_ms(), &detail) {
            tracing::error!(deploy = id, error = %e, "journal: cannot record a started deploy; not running it");
            return;
        }
        self.inner.metrics.deploy_state(DeployState::Started);
        self.notify(id, DeployState::Started, None);
        tracing::info!(deploy = id, stack = %record.stack, sha = ?record.sha, "deploy started");
        let result = self.execute(&stack, &record, &log_path).await;
        let (state, detail) = match result {
            Ok(()) => (
                DeployState::Succeeded,
                TransitionDetail {
                    exit_code: Some(0),
                    ..Default::default()
                },
            ),
            Err(Failure {
                exit_code,
                reason,
                interrupted,
            }) => (
                if interrupted {
                    DeployState::Interrupted
                } else {
                    DeployState::Failed
                },
                TransitionDetail {
                    exit_code,
                    reason: Some(reason),
                    ..Default::default()
                },
            ),
        };
        match journal.transition(id, state, now_ms(), &detail) {
            Ok(()) => {
                self.inner.metrics.deploy_state(state);
                self.notify(id, state, detail.reason.as_deref());
            }
            Err(e) => {
                tracing::error!(deploy = id, error = %e, "journal: cannot record the end of a deploy")
            }
        }
        tracing::info!(deploy = id, stack = %record.stack, state = state.as_str(), reason = ?detail.reason, "deploy finished");
    }

    fn log_path(&self, record: &DeployRecord) -> PathBuf {
        self.inner
            .config
            .server
            .state_dir
            .join("logs")
            .join(&record.stack)
            .join(format!("{}.log", record.id))
    }

    async fn execute(
        &self,
        stack: &StackConfig,
        record: &DeployRecord,
        log_path: &Path,
    ) -> Result<(), Failure> {
        if let Some(dir) = log_path.parent() {
            // `logs/` too: it may predate private log directories.
            let created = crate::logfiles::create_private_dir(dir)
                .and_then(|()| dir.parent().map_or(Ok(()), crate::logfiles::tighten_dir));
            created.map_err(|e| {
                Failure::failed(format!(
                    "cannot create log directory {}: {e}",
                    dir.display()
                ))
            })?;
        }
        let event: DeployEventJson = serde_json::from_str(&record.event_json).unwrap_or_default();
        match &stack.action {
            DeployAction::Command { argv, workdir, env } => {
                let profile = record.profile.as_ref().and_then(|p| stack.profiles.get(p));
                let argv = profile
                    .and_then(|p| p.command.clone())
                    .unwrap_or_else(|| argv.clone());
                let mut env = env.clone();
                if let Some(p) = profile {
                    env.extend(p.env.clone());
                }
                self.run_command(
                    record,
                    &event,
                    &argv,
                    workdir,
                    &env,
                    stack.timeout,
                    log_path,
                )
                .await
            }
            DeployAction::Http { url, headers } => {
                self.post_event(record, url, headers, stack.timeout, log_path)
                    .await
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn run_command(
        &self,
        record: &DeployRecord,
        event: &DeployEventJson,
        argv: &[String],
        workdir: &Path,
        env: &BTreeMap<String, String>,
        timeout: Duration,
        log_path: &Path,
    ) -> Result<(), Failure> {
        let fail = Failure::failed;
        let log = crate::logfiles::create_private_file(log_path)
            .map_err(|e| fail(format!("cannot create log {}: {e}", log_path.display())))?;
        // The output goes through the runner, which keeps at most
        // `max_deploy_log_bytes` of it.
        let log = Arc::new(Mutex::new(crate::logfiles::CappedLog::new(
            log,
            self.inner.config.server.max_deploy_log_bytes,
        )));
        let event_file = log_path.with_extension("event.json");
        crate::logfiles::write_private(&event_file, record.event_json.as_bytes())
            .map_err(|e| fail(format!("cannot write event file: {e}")))?;

        let mut cmd = tokio::process::Command::new(&argv[0]);
        cmd.args(&argv[1..])
            .current_dir(workdir)
            .env_clear()
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let parent = std::process::id() as libc::pid_t;
        // SAFETY: die_with_parent makes only async-signal-safe calls
        // (prctl, getppid), as pre_exec requires.
        unsafe {
            cmd.pre_exec(move || crate::supervise::die_with_parent(parent));
        }
        for key in INHERITED_ENV {
            if let Some(v) = std::env::var_os(key) {
                cmd.env(key, v);
            }
        }
        cmd.envs(env);
        cmd.envs(deploy_env(record, event, &event_file));
        let mut child = cmd
            .spawn()
            .map_err(|e| fail(format!("cannot start {:?}: {e}", argv[0])))?;
        let pid = child.id();
        let mut copiers = Vec::new();
        if let Some(out) = child.stdout.take() {
            copiers.push(tokio::spawn(crate::logfiles::copy_into(out, log.clone())));
        }
        if let Some(err) = child.stderr.take() {
            copiers.push(tokio::spawn(crate::logfiles::copy_into(err, log.clone())));
        }
        if let Some(pid) = pid {
            self.inner
                .running_children
                .lock()
                .unwrap()
                .insert(record.id, pid);
            // The command leads its own process group (process_group(0)):
            // recovery after a crash of this runner stops that group.
            if let Err(e) = self.inner.journal.set_pgid(record.id, pid) {
                tracing::error!(deploy = record.id, error = %e, "journal: cannot record the deploy's process group");
            }
        }
        if let Some(mut stdin) = child.stdin.take() {
            let json = record.event_json.clone();
            tokio::spawn(async move {
                // A command that does not read stdin closes the pipe; that is fine.
                let _ = stdin.write_all(json.as_bytes()).await;
                let _ = stdin.shutdown().await;
            });
        }
        let mut kill = self.inner.kill.subscribe();
        let ended = tokio::select! {
            status = child.wait() => Ended::Exited(status),
            _ = tokio::time::sleep(timeout) => Ended::TimedOut,
            _ = kill.wait_for(|k| *k) => Ended::Shutdown,
        };
        let result = match ended {
            Ended::Exited(Ok(status)) if status.success() => Ok(()),
            Ended::Exited(Ok(status)) => Err(Failure {
                exit_code: status.code(),
                reason: match status.code() {
                    Some(c) => format!("exit code {c}"),
                    None => "killed by a signal".into(),
                },
                interrupted: false,
            }),
            Ended::Exited(Err(e)) => Err(fail(format!("waiting for the deploy command: {e}"))),
            Ended::TimedOut => {
                kill_tree(&mut child, pid).await;
                Err(fail(format!(
                    "timed out after {}",
                    humantime::format_duration(timeout)
                )))
            }
            Ended::Shutdown => {
                kill_tree(&mut child, pid).await;
                Err(Failure {
                    exit_code: None,
                    reason: "stopped: redeploy shut down while it ran".into(),
                    interrupted: true,
                })
            }
        };
        self.inner
            .running_children
            .lock()
            .unwrap()
            .remove(&record.id);
        let _ = tokio::time::timeout(crate::logfiles::LOG_DRAIN_WAIT, async {
            for copier in copiers {
                let _ = copier.await;
            }
        })
        .await;
        result
    }

    async fn post_event(
        &self,
        record: &DeployRecord,
        url: &str,
        headers: &BTreeMap<String, String>,
        timeout: Duration,
        log_path: &Path,
    ) -> Result<(), Failure> {
        let fail = Failure::failed;
        let mut req = self
            .inner
            .http
            .post(url)
            .timeout(timeout)
            .header("content-type", "application/json")
            .body(record.event_json.clone());
        for (k, v) in headers {
            req = req.header(k, v);
        }
        let result = req.send().await;
        let (line, outcome) = match result {
            Ok(resp) if resp.status().is_success() => {
                (format!("POST -> {}\n", resp.status()), Ok(()))
            }
            Ok(resp) => (
                format!("POST -> {}\n", resp.status()),
                Err(fail(format!("deploy endpoint answered {}", resp.status()))),
            ),
            Err(e) => {
                let e = e.without_url();
                (
                    format!("POST failed: {e}\n"),
                    Err(fail(format!("deploy endpoint unreachable: {e}"))),
                )
            }
        };
        let _ = crate::logfiles::write_private(log_path, line.as_bytes());
        outcome
    }

    /// Re-queues deploys the journal holds as queued (after a restart).
    pub fn recover(&self, queued: &[DeployRecord]) {
        for record in queued {
            self.enqueue(record);
        }
    }

    /// Stops starting deploys, lets running ones finish within `grace`,
    /// then kills what is left (recorded `interrupted`). Queued deploys stay
    /// queued in the journal and run on the next start.
    pub async fn shutdown(&self, grace: Duration) {
        self.inner
            .stopping
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.inner.global.close();
        let mut set = std::mem::take(&mut *self.inner.workers.lock().await);
        let drained =
            tokio::time::timeout(grace, async { while set.join_next().await.is_some() {} }).await;
        if drained.is_err() {
            tracing::warn!("shutdown grace period over; stopping running deploys");
            let _ = self.inner.kill.send(true);
            let _ = tokio::time::timeout(crate::supervise::KILL_GRACE * 2, async {
                while set.join_next().await.is_some() {}
            })
            .await;
        }
    }
}

/// Why a deploy did not succeed.
struct Failure {
    exit_code: Option<i32>,
    reason: String,
    interrupted: bool,
}

impl Failure {
    /// A failure without an exit code.
    fn failed(reason: String) -> Failure {
        Failure {
            exit_code: None,
            reason,
            interrupted: false,
        }
    }
}

/// How a deploy command ended.
enum Ended {
    Exited(std::io::Result<std::process::ExitStatus>),
    TimedOut,
    Shutdown,
}

/// Kills a deploy's whole process group: SIGTERM, then SIGKILL after [`crate::supervise::KILL_GRACE`].
async fn kill_tree(child: &mut tokio::process::Child, pid: Option<u32>) {
    let Some(pid) = pid else { return };
    kill_group(pid, libc::SIGTERM);
    if tokio::time::timeout(crate::supervise::KILL_GRACE, child.wait())
        .await
        .is_err()
    {
        kill_group(pid, libc::SIGKILL);
        let _ = child.wait().await;
    }
    // Children of the command may outlive it; the group takes them too.
    kill_group(pid, libc::SIGKILL);
}

fn kill_group(pid: u32, signal: i32) {
    // SAFETY: kill(2) with a negative pid signals the process group the
    // child leads (it was started with process_group(0)); no memory is shared.
    unsafe {
        libc::kill(-(pid as i32), signal);
    }
}

/// The `REDEPLOY_*` environment of a deploy command.
pub fn deploy_env(
    record: &DeployRecord,
    event: &DeployEventJson,
    event_file: &Path,
) -> Vec<(String, String)> {
    let mut env = vec![
        ("REDEPLOY_DEPLOY_ID".to_string(), record.id.to_string()),
        ("REDEPLOY_STACK".to_string(), record.stack.clone()),
        ("REDEPLOY_SERVICES".to_string(), record.services.join(",")),
        ("REDEPLOY_PROVIDER".to_string(), record.provider.clone()),
        ("REDEPLOY_REASON".to_string(), record.reason.clone()),
        (
            "REDEPLOY_EVENT_FILE".to_string(),
            event_file.display().to_string(),
        ),
    ];
    let optional = [
        ("REDEPLOY_PROFILE", record.profile.clone()),
        ("REDEPLOY_REF", record.git_ref.clone()),
        ("REDEPLOY_BRANCH", event.branch.clone()),
        ("REDEPLOY_TAG", event.tag.clone()),
        ("REDEPLOY_SHA", record.sha.clone()),
        ("REDEPLOY_REPOSITORY", event.repository.clone()),
        ("REDEPLOY_IMAGE", event.image.clone()),
        ("REDEPLOY_DELIVERY", record.delivery_id.clone()),
    ];
    for (k, v) in optional {
        env.push((k.to_string(), v.unwrap_or_default()));
    }
    env
}

impl Runner {
    /// Waits until no deploy is pending or running.
    pub async fn idle(&self) {
        loop {
            let busy = {
                let queues = self.inner.queues.lock().unwrap();
                queues
                    .values()
                    .any(|q| q.running.is_some() || q.pending.is_some() || q.worker_active)
            };
            if !busy {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
