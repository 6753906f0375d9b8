//! `redeploy serve`: the webhook server and deploy runner.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::Semaphore;

use crate::dispatch::Dispatcher;

use crate::metrics::Metrics;
use crate::notify::Notifier;
use crate::plugin::{Allocation, PluginRuntime, RuntimeOptions};
use crate::runner::Runner;
use crate::server::{app, AppState};
use crate::tokens::{ensure_tokens, TokenTable};

/// How long a stop waits for the last deployment statuses and callbacks.
pub const NOTIFY_GRACE: Duration = Duration::from_secs(10);

/// Runs the webhook server until SIGTERM or SIGINT.
#[derive(Debug, clap::Args)]
pub struct Serve {
    /// The configuration file (`--config`).
    #[command(flatten)]
    pub config: super::ConfigFile,
    /// Listen on this address instead of the config's `server.listen`.
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Load this component file instead of the embedded one.
    #[arg(long)]
    pub plugin: Option<PathBuf>,
}

impl Serve {
    /// Starts everything and serves.
    pub fn execute(self) -> anyhow::Result<()> {
        init_logging();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?;
        rt.block_on(self.run())
    }

    async fn run(self) -> anyhow::Result<()> {
        let config = Arc::new(self.config.load()?);
        let state_dir = &config.server.state_dir;
        // The journal first, so that a state directory that cannot be
        // written is named as such before anything else fails on it.
        let journal = Arc::new(super::open_state(&config)?);
        // One server per state directory: a second one would run the same
        // queued deploys and recover the first one's deploys as its own.
        let _serve_lock = crate::supervise::lock_serve(state_dir)?;
        let tokens = TokenTable::new(ensure_tokens(&config, &journal)?);
        let options = RuntimeOptions {
            allocation: Allocation::Pooling,
            ..RuntimeOptions::default()
        };
        // The embedded component loads from the compiled cache the
        // post-receive hook also uses: a restart maps the compiled code
        // instead of running Cranelift, whose heap would stay resident.
        let runtime = Arc::new(match self.plugin.as_deref() {
            None => PluginRuntime::cached(&state_dir.join("cache"), options)?,
            Some(path) => {
                PluginRuntime::new(&crate::plugin::component_source(Some(path)), options)?
            }
        });
        crate::stacks::validate(
            &runtime,
            &crate::stacks::wit_stacks(&config),
            &self.config.path,
        )?;
        release_free_heap();
        let metrics = Arc::new(Metrics::new());
        let runner = Runner::new(config.clone(), journal.clone(), metrics.clone())?;
        let notifier = Notifier::start(config.clone(), journal.clone(), runtime.clone(), None)?;
        runner.observe(notifier.clone());

        // Deploys a dead runner left `started`: what is left of each one's
        // process group is stopped and it is marked interrupted, for every
        // stack no live runner (a hook's `run-queued`) holds.
        let interrupted = crate::supervise::recover_free_stacks(&journal, state_dir, None).await?;
        notifier.interrupted(&interrupted);
        let queued = journal.queued_deploys()?;
        if !queued.is_empty() {
            tracing::info!(count = queued.len(), "resuming queued deploys");
        }
        runner.recover(&queued);
        crate::retention::prune_logged(&config, &journal, crate::journal::now_ms());

        let log_links = notifier.log_links().clone();
        let dispatcher = Dispatcher::new(
            runtime,
            journal,
            Arc::new(runner.clone()),
            config.clone(),
            metrics,
        )
        .with_notifier(notifier.clone());
        let state = Arc::new(AppState {
            dispatcher,
            tokens,
            in_flight: Arc::new(Semaphore::new(config.server.max_queued_deliveries)),
            log_links,
            body_budget: crate::server::body_budget(config.server.max_body_bytes_in_flight),
        });
        let refused = state.dispatcher.refused().clone();
        let journal = state.dispatcher.journal().clone();
        let pruning =
            crate::retention::spawn_periodic(config.clone(), journal.clone(), refused.clone());
        let addr = self.listen.unwrap_or(config.server.listen);
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        tracing::info!(addr = %listener.local_addr()?, stacks = config.stacks.len(), "redeploy listening; `redeploy hook-url STACK` prints each hook URL");
        crate::server::serve_http(
            listener,
            app(state),
            crate::server::ConnectionLimits::of(&config.server),
            shutdown_signal(),
        )
        .await?;
        pruning.abort();
        refused.flush(&journal, i64::MAX);
        tracing::info!(grace = ?config.server.shutdown_grace, "shutting down: letting running deploys finish");
        runner.shutdown(config.server.shutdown_grace).await;
        notifier.finish(NOTIFY_GRACE).await;
        tracing::info!("stopped");
        Ok(())
    }
}

/// Hands the heap that start-up freed (config parsing, and on a cold cache
/// the compilation of the component) back to the OS, so the idle server's
/// resident memory is what it uses, not what it once used.
fn release_free_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory held by glibc's allocator.
    unsafe {
        libc::malloc_trim(0);
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("installing the SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("installing the SIGINT handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

/// Logs to stderr; `RUST_LOG` filters (default `info`).
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only for a terminal: log files and journald get plain text.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .try_init();
}
