//! `redeploy run-queued`: runs a stack's queued deploys (started detached by
//! the post-receive hook when no server runs). Not meant to be typed by hand.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;

use crate::config::Config;
use crate::journal::{DeployRecord, DeployState, Journal};

/// Runs the queued deploys of one stack, then exits.
#[derive(Debug, clap::Args)]
pub struct RunQueued {
    /// The configuration file (`--config`).
    #[command(flatten)]
    pub config: super::ConfigFile,
    /// The stack.
    #[arg(long)]
    pub stack: String,
}

impl RunQueued {
    /// Runs them.
    pub fn execute(self) -> anyhow::Result<()> {
        let config = Arc::new(self.config.load()?);
        let journal = Arc::new(super::open_state(&config)?);
        crate::retention::prune_logged(&config, &journal, crate::journal::now_ms());
        // Two threads: a journal call that blocks one (a database that
        // stopped answering) never stalls the lease's keeper, which must
        // be free to stop the deploy.
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        rt.block_on(run_queued(config, journal, &self.stack))
    }
}

/// Runs every queued deploy of `stack` in the journal, each ref's newest
/// commit cancelling that ref's older ones, in this process. Used where no `redeploy serve`
/// runs (a post-receive hook). Holds the stack's lock
/// (`<state_dir>/locks/<stack>.lock`, or its lease on a PostgreSQL journal,
/// [`crate::supervise`]) while it works,
/// so runner processes started by concurrent pushes and a `serve` on the
/// same state directory take turns: one deploy at a time per stack, and the
/// last runner to get the lock finds the newest deploy queued. With the
/// lock, it first recovers what a dead runner left of the stack's deploys.
pub async fn run_queued(
    config: Arc<Config>,
    journal: Arc<Journal>,
    stack: &str,
) -> anyhow::Result<()> {
    run_queued_until(config, journal, stack, std::future::pending::<()>())
        .await
        .map(drop)
}

/// [`run_queued`] until `stop` completes: then the running deploy is
/// stopped as a server's shutdown stops it once its grace is over (its
/// process group killed, the deploy recorded `interrupted`), what is
/// still queued stays queued, and the result is `stop`'s output with the
/// ids of the deploys that were running; `None` when it ran out of work.
async fn run_queued_until<S>(
    config: Arc<Config>,
    journal: Arc<Journal>,
    stack: &str,
    stop: impl std::future::Future<Output = S>,
) -> anyhow::Result<Option<(S, Vec<i64>)>> {
    tokio::pin!(stop);
    let locks = super::stack_locks(&config, &journal);
    let lock = tokio::select! {
        lock = locks.lock(stack, || false) => lock,
        // Still waiting for another runner: nothing of ours runs.
        stopped = &mut stop => return Ok(Some((stopped, Vec::new()))),
    };
    let lock = lock?.context("stack lock wait given up")?;
    let metrics = Arc::new(crate::metrics::Metrics::new());
    // A GitHub CD stack, or notification channels: send its pending
    // deployment requests, report statuses and send notifications from
    // this process, as the server would.
    let reports =
        config.stack(stack).is_some_and(|s| s.github.is_some()) || !config.notifications.is_empty();
    // The runner checks each deploy with it before it runs.
    let runtime = Arc::new(super::one_shot_component(&config)?);
    let notifier = match reports {
        true => Some(crate::notify::Notifier::start(
            config.clone(),
            journal.clone(),
            runtime.clone(),
            Some(stack),
        )?),
        false => None,
    };
    let observer = notifier
        .as_ref()
        .map(|n| n.as_ref() as &dyn crate::journal::DeployObserver);
    crate::supervise::recover_stack(&journal, stack, &lock, observer).await?;
    loop {
        if lock.lost().is_some_and(|lost| *lost.borrow()) {
            anyhow::bail!(
                "stack \"{stack}\": this runner lost the stack's lease; what is still queued is left to the runner that takes it"
            );
        }
        let mut queued: Vec<DeployRecord> = journal
            .deploys(Some(stack), usize::MAX >> 1)?
            .into_iter()
            .filter(|d| d.state == DeployState::Queued)
            .collect();
        if queued.is_empty() {
            break;
        }
        queued.reverse();
        let runner = crate::runner::Runner::new(
            config.clone(),
            journal.clone(),
            metrics.clone(),
            runtime.clone(),
        )?;
        runner.caller_holds_stack_locks(&lock);
        if let Some(n) = &notifier {
            runner.observe(n.clone());
        }
        runner.recover(&queued);
        let stopped = tokio::select! {
            () = runner.idle() => continue,
            stopped = &mut stop => stopped,
        };
        let running: Vec<i64> = journal
            .deploys(Some(stack), usize::MAX >> 1)?
            .into_iter()
            .filter(|d| d.state == DeployState::Started)
            .map(|d| d.id)
            .collect();
        runner.shutdown(Duration::ZERO).await;
        // Those it stopped (one may have ended on its own meanwhile).
        let mut stopped_ids = Vec::new();
        for id in running {
            if journal
                .deploy(id)?
                .is_some_and(|d| d.state == DeployState::Interrupted)
            {
                stopped_ids.push(id);
            }
        }
        if let Some(n) = notifier {
            n.finish(RUN_QUEUED_NOTIFY_GRACE).await;
        }
        lock.release().await;
        return Ok(Some((stopped, stopped_ids)));
    }
    if let Some(n) = notifier {
        n.finish(RUN_QUEUED_NOTIFY_GRACE).await;
    }
    lock.release().await;
    Ok(None)
}

/// [`run_queued`] in the foreground of a terminal or a push (`trigger
/// --local`, the hook with `[hook] wait = true`), where the person waiting
/// may stop it: SIGINT, SIGTERM or SIGHUP (a closed terminal or SSH
/// session) stop the running deploy's process group and record it
/// `interrupted`, as the next runner would on finding it (what is still
/// queued stays queued); the error then names the signal. No signal leaves
/// a deploy running unsupervised.
pub async fn run_queued_in_foreground(
    config: Arc<Config>,
    journal: Arc<Journal>,
    stack: &str,
) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut hup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    let signal = async {
        tokio::select! {
            _ = int.recv() => "SIGINT",
            _ = term.recv() => "SIGTERM",
            _ = hup.recv() => "SIGHUP",
        }
    };
    let Some((name, stopped)) = run_queued_until(config, journal, stack, signal).await? else {
        return Ok(());
    };
    anyhow::bail!(
        "stopped by {name}: {}",
        match stopped.as_slice() {
            [] => "no deploy was running".to_string(),
            ids => format!(
                "deploy {} stopped and recorded interrupted",
                ids.iter()
                    .map(|id| format!("#{id}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    )
}

/// How long a post-receive runner waits for its last GitHub reports.
pub const RUN_QUEUED_NOTIFY_GRACE: Duration = Duration::from_secs(30);
