//! `redeploy serve`: the webhook server and deploy runner.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::signal::unix::{signal, Signal, SignalKind};

use crate::dispatch::Dispatcher;

use crate::config::Live;
use crate::metrics::Metrics;
use crate::notify::Notifier;
use crate::plugin::{Allocation, CompileIn, PluginRuntime, RuntimeOptions};
use crate::reload::{Capacities, Reloader};
use crate::runner::Runner;
use crate::server::{app, AppState};
use crate::tokens::{ensure_tokens, TokenTable};

/// The environment variable that sets glibc's arena limit; set, it wins
/// over [`limit_malloc_arenas`].
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MALLOC_ARENA_VARIABLE: &str = "MALLOC_ARENA_MAX";

/// The glibc tunable (in `GLIBC_TUNABLES`) that sets the arena limit; set,
/// it wins over [`limit_malloc_arenas`].
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MALLOC_ARENA_TUNABLE: &str = "glibc.malloc.arena_max";

/// Limits glibc's malloc to one arena per core the process may run on,
/// unless the environment sets the limit itself (`MALLOC_ARENA_MAX`, or
/// `glibc.malloc.arena_max` in `GLIBC_TUNABLES`). To be called while the
/// process has one thread.
///
/// The `redeploy` binary's Rust code allocates with jemalloc (`main.rs`);
/// glibc's malloc serves the C code, SQLite's page cache and statements
/// above all, on the same threads. (Before jemalloc it served everything;
/// the figures below are from then.)
///
/// glibc's default is eight arenas per core, and a thread keeps using the
/// arena it was given first, with the memory freed into it. The server
/// evaluates deliveries on many threads in turn (tokio's blocking pool,
/// and a worker in `block_in_place` for a delivery alone), so under load
/// up to sixteen arenas on two cores each held freed memory of their own:
/// peak RSS on the decision path at 64 connections was 68-74 MiB with the
/// default and 37-41 MiB with one arena per core, at 16 connections 36-37
/// against 27 MiB (BENCHMARKS.md, part 5, tenth pass). No effect with
/// another C library.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let tuned = std::env::var_os(MALLOC_ARENA_VARIABLE).is_some()
            || std::env::var_os("GLIBC_TUNABLES")
                .is_some_and(|t| t.to_string_lossy().contains(MALLOC_ARENA_TUNABLE));
        if tuned {
            tracing::debug!("malloc arenas: the environment sets the limit");
            return;
        }
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        let arenas = libc::c_int::try_from(cores).unwrap_or(libc::c_int::MAX);
        // SAFETY: glibc documents `mallopt` as not thread-safe: the code
        // that creates an arena reads the limit without a lock. This runs
        // before the process starts any thread (the caller's contract), so
        // nothing allocates beside it.
        unsafe { libc::mallopt(libc::M_ARENA_MAX, arenas) };
        tracing::debug!(arenas, "malloc arenas: at most one per core");
    }
}

/// How long a stop waits for the last deployment statuses and callbacks.
pub const NOTIFY_GRACE: Duration = Duration::from_secs(10);

/// Runs the webhook server until SIGTERM, SIGINT or SIGQUIT; SIGHUP
/// reloads the configuration ([`crate::reload`]).
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
    /// Starts everything and serves. Call it while the process has one
    /// thread: it sets malloc's arena limit before starting any
    /// ([`limit_malloc_arenas`]).
    pub fn execute(self) -> anyhow::Result<()> {
        init_logging();
        // Before the runtime starts the process's first other thread.
        limit_malloc_arenas();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?;
        rt.block_on(self.run())
    }

    async fn run(self) -> anyhow::Result<()> {
        let signals = Signals::install()?;
        let config = Arc::new(self.config.load_for(crate::config::SecretScope::Server)?);
        let live = crate::config::LiveConfig::new(config.clone());
        let state_dir = &config.server.state_dir;
        // The journal first, so that a state directory that cannot be
        // written is named as such before anything else fails on it.
        let journal = Arc::new(super::open_state(&config)?);
        if let Some((ancestor, owner)) = crate::ownership::foreign_ancestor(state_dir) {
            tracing::warn!(
                state_dir = %state_dir.display(),
                ancestor = %ancestor.display(),
                owner = %owner,
                "the state directory lies in a directory another user owns, who may rename it away and put their own in its place: keep it where only root and this user may write (/var/lib/redeploy)"
            );
        }
        // One server per state directory: a second one would recover the
        // first one's deploys as its own. (Replicas on one PostgreSQL
        // journal each have their own state directory, and share deploys
        // through leases: `crate::cluster`.)
        let _serve_lock = crate::supervise::lock_serve(state_dir)?;
        // The socket before anything runs: a server that cannot listen
        // stops here, before it recovers or resumes any deploy.
        let addr = self.listen.unwrap_or(config.server.listen);
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        // The dashboard's own socket (`[ui] listen`), likewise.
        let ui_listener = match config.ui.as_ref().and_then(|ui| ui.listen) {
            Some(addr) => Some(
                tokio::net::TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("cannot listen on {addr} (ui.listen)"))?,
            ),
            None => None,
        };
        let tokens = Live::new(Arc::new(TokenTable::new(ensure_tokens(&config, &journal)?)));
        // Users removed while the server was stopped: as a reload does.
        crate::ui::end_sessions_of_removed_users(&journal, &config);
        let options = RuntimeOptions {
            allocation: Allocation::Pooling,
            compile: CompileIn::Child,
            ..RuntimeOptions::default()
        };
        // The embedded component loads from the compiled cache the
        // post-receive hook also uses, mapped from its file; when the cache
        // has none, a child process compiles it, so Cranelift never runs
        // in the server and none of its code or heap stays resident.
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
        let runner = Runner::new(
            live.clone(),
            journal.clone(),
            metrics.clone(),
            runtime.clone(),
        )?;
        let notifier = Notifier::start(config.clone(), journal.clone(), runtime.clone(), None)?;
        runner.observe(notifier.clone());
        let locks = super::stack_locks(&config, &journal);
        runner.use_locks(locks.clone());
        let runs_deploys = config.journal.postgres.as_ref().is_none_or(|pg| pg.runner);
        let mut following = Vec::new();
        if runs_deploys {
            // Deploys a dead runner left `started`: what is left of each
            // one's process group is stopped and it is marked interrupted,
            // for every stack no live runner (a hook's `run-queued`,
            // another replica) holds.
            let interrupted = crate::supervise::recover_free_stacks(&journal, &locks, None).await?;
            notifier.interrupted(&interrupted);
            match &locks {
                crate::supervise::Locks::Leases(cluster) => {
                    following.extend(cluster.listen());
                    following.push(runner.follow(cluster.clone(), Some(notifier.clone())));
                }
                crate::supervise::Locks::Files(_) => following.push(runner.sweep()),
            }
            let queued = journal.queued_deploys()?;
            if !queued.is_empty() {
                tracing::info!(count = queued.len(), "resuming queued deploys");
            }
            runner.recover(&queued);
        } else {
            tracing::info!(
                "[journal] runner = false: deploys are queued for the other replicas to run"
            );
            runner.only_queue();
        }
        crate::retention::prune_logged(&config, &journal, crate::journal::now_ms());

        let log_links = notifier.log_links().clone();
        let capacities = Capacities::of(&config.server, runner.capacity().clone());
        let (connections, deliveries, body_budget) = (
            capacities.connections.clone(),
            capacities.deliveries.clone(),
            capacities.body_budget.clone(),
        );
        let reloader = Arc::new(Reloader {
            path: self.config.path.clone(),
            config: live.clone(),
            tokens: tokens.clone(),
            journal: journal.clone(),
            runtime: runtime.clone(),
            notifier: notifier.clone(),
            metrics: metrics.clone(),
            capacities,
            generation: AtomicU64::new(0),
        });
        // A failed deployment request, or a deployment whose event never
        // came: the journal runs the push, through this runner.
        notifier.run_fallbacks(runner.clone(), metrics.clone());
        let dispatcher = Dispatcher::new(
            runtime,
            journal,
            Arc::new(runner.clone()),
            live.clone(),
            metrics,
        )
        .with_notifier(notifier.clone());
        // `[stacks.poll]`: each polled repository, as it falls due.
        let polling = crate::poll::spawn(live.clone(), dispatcher.clone());
        // `[stacks.github]` with a recorded webhook: redeliveries of what
        // did not arrive (the listener is bound, so they queue until served).
        let catching_up = crate::catch_up::spawn(
            live.clone(),
            dispatcher.journal().clone(),
            dispatcher.metrics().clone(),
        );
        let dispatching = dispatcher.journal().deliveries_coming();
        let state = Arc::new(AppState {
            dispatcher,
            tokens,
            in_flight: deliveries,
            log_links,
            body_budget,
            probes: Default::default(),
            dispatching,
        });
        let refused = state.dispatcher.refused().clone();
        let journal = state.dispatcher.journal().clone();
        let pruning =
            crate::retention::spawn_periodic(live.clone(), journal.clone(), refused.clone());
        tracing::info!(addr = %listener.local_addr()?, stacks = config.stacks.len(), "redeploy listening; `redeploy hook-url STACK` prints each hook URL");
        if config.stacks.is_empty() {
            tracing::warn!("no stacks in the config: every hook URL answers 404 until one is added (then `redeploy reload`)");
        }
        let limits = live.clone();
        let ui = Arc::new(crate::ui::UiState::new(
            state.clone(),
            live.clone(),
            listener.local_addr()?,
            ui_listener.is_some(),
        ));
        let (stopped, stop) = tokio::sync::watch::channel(false);
        let (router, ui_server) = match ui_listener {
            // The dashboard on its own socket, and not on the hook port.
            Some(ui_listener) => {
                tracing::info!(addr = %ui_listener.local_addr()?, "the dashboard is at /ui/ on its own address (ui.listen)");
                let limits = limits.clone();
                let mut stop = stop.clone();
                let server = crate::server::serve_http(
                    ui_listener,
                    crate::ui::routes(ui.clone())
                        .route(
                            "/",
                            axum::routing::get(|| async { axum::response::Redirect::to("/ui/") }),
                        )
                        .fallback(|| async { crate::server::not_found_response() }),
                    move || crate::server::ConnectionLimits::of(&limits.current().server),
                    crate::capacity::Capacity::new(crate::ui::MAX_UI_CONNECTIONS),
                    async move {
                        let _ = stop.wait_for(|s| *s).await;
                    },
                );
                (app(state), Some(server))
            }
            None => {
                if config.ui.is_some() {
                    tracing::info!("the dashboard is at /ui/");
                }
                (app(state).merge(crate::ui::routes(ui.clone())), None)
            }
        };
        let stopping = ui.clone();
        let hooks = crate::server::serve_http(
            listener,
            router,
            move || crate::server::ConnectionLimits::of(&limits.current().server),
            connections,
            async move {
                signals.handle(reloader).await;
                stopping.stop();
                let _ = stopped.send(true);
            },
        );
        match ui_server {
            Some(ui_server) => {
                let (hooks, ui) = tokio::join!(hooks, ui_server);
                hooks?;
                ui?;
            }
            None => hooks.await?,
        }
        pruning.abort();
        polling.abort();
        catching_up.abort();
        for task in following {
            task.abort();
        }
        // Off the workers: a summary row may wait for the batch before it.
        let flushed = journal.clone();
        let _ = tokio::task::spawn_blocking(move || refused.flush(&flushed, i64::MAX)).await;
        let grace = live.current().server.shutdown_grace;
        tracing::info!(?grace, "shutting down: letting running deploys finish");
        runner.shutdown(grace).await;
        notifier.finish(NOTIFY_GRACE).await;
        tracing::info!("stopped");
        Ok(())
    }
}

/// Hands the heap that start-up freed in glibc's allocator (the C code's:
/// SQLite) back to the OS, so the idle server's resident memory is what it
/// uses, not what it once used. What the Rust code freed (config parsing,
/// and on a cold cache a compile in this process) jemalloc hands back by
/// its own decay (`main.rs`).
fn release_free_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory held by glibc's allocator.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Signals whose default action would end the server at once, leaving
/// running deploys' process groups unsupervised, and that mean nothing to
/// it: each is logged and otherwise ignored.
const IGNORED_SIGNALS: &[(libc::c_int, &str)] = &[
    (libc::SIGUSR1, "SIGUSR1"),
    (libc::SIGUSR2, "SIGUSR2"),
    (libc::SIGALRM, "SIGALRM"),
    (libc::SIGVTALRM, "SIGVTALRM"),
    (libc::SIGPROF, "SIGPROF"),
    (libc::SIGIO, "SIGIO"),
    (libc::SIGPWR, "SIGPWR"),
    (libc::SIGXFSZ, "SIGXFSZ"),
];

/// The server's signal handlers, installed first thing so that no signal
/// that arrives while it starts (and already resumes queued deploys) ends
/// it with its default action; what arrived meanwhile is handled once it
/// serves.
struct Signals {
    hup: Signal,
    ignored: Vec<(Signal, &'static str)>,
    term: Signal,
    int: Signal,
    quit: Signal,
}

impl Signals {
    fn install() -> anyhow::Result<Signals> {
        let handler = |number: libc::c_int, name: &str| {
            signal(SignalKind::from_raw(number))
                .with_context(|| format!("installing the {name} handler"))
        };
        Ok(Signals {
            hup: handler(libc::SIGHUP, "SIGHUP")?,
            ignored: IGNORED_SIGNALS
                .iter()
                .map(|&(number, name)| Ok((handler(number, name)?, name)))
                .collect::<anyhow::Result<_>>()?,
            term: handler(libc::SIGTERM, "SIGTERM")?,
            int: handler(libc::SIGINT, "SIGINT")?,
            quit: handler(libc::SIGQUIT, "SIGQUIT")?,
        })
    }

    /// Handles the signals from now on: SIGHUP reloads the configuration
    /// (one reload at a time, on a blocking thread), [`IGNORED_SIGNALS`]
    /// are logged, and the returned future completes at SIGTERM, SIGINT or
    /// SIGQUIT, which stop the server gracefully (running deploys get
    /// `shutdown_grace`, then their process groups are killed).
    fn handle(self, reloader: Arc<Reloader>) -> impl std::future::Future<Output = ()> + Send {
        let Signals {
            mut hup,
            ignored,
            mut term,
            mut int,
            mut quit,
        } = self;
        tokio::spawn(async move {
            while hup.recv().await.is_some() {
                tracing::info!("SIGHUP: reloading the configuration");
                let reloader = reloader.clone();
                let _ = tokio::task::spawn_blocking(move || reloader.reload()).await;
            }
        });
        for (mut stream, name) in ignored {
            tokio::spawn(async move {
                while stream.recv().await.is_some() {
                    tracing::warn!(
                        signal = name,
                        "ignored (SIGHUP reloads; SIGTERM, SIGINT or SIGQUIT stop)"
                    );
                }
            });
        }
        async move {
            let name = tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
                _ = quit.recv() => "SIGQUIT",
            };
            tracing::info!(signal = name, "stopping");
        }
    }
}

/// Logs to stderr; `RUST_LOG` filters (default `info`).
fn init_logging() {
    let mut filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // tokio-postgres logs each statement's parameters at debug level (hook
    // tokens and server keys among them) and the server's notices at info.
    // Whatever RUST_LOG asks, it logs warnings and errors only.
    if let Ok(quiet) = "tokio_postgres=warn".parse() {
        filter = filter.add_directive(quiet);
    }
    // Colours only for a terminal: log files and journald get plain text.
    // A log line that cannot be written (stderr a pipe whose reader went
    // away) is let go: the layer's own fallback, `eprintln!`, would panic
    // the thread that logged it, a deploy's runner among them.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .log_internal_errors(false)
        .try_init();
}
