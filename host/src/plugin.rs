//! The plugin runtime: wasmtime loads the redeploy component once per
//! process and runs each evaluation in a fresh store with a memory cap and an
//! execution deadline.
//!
//! Lifetimes, kept apart: once per process the [`PluginRuntime`] (engine,
//! compiled component, pre-instance, epoch ticker); once per call a new
//! `Store` and instance, dropped when the call returns.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use wasmtime::component::{Component, Linker};
use wasmtime::{
    Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store,
    StoreLimitsBuilder,
};

pub mod body_macs;
pub mod cache;
mod cached;
mod child;
mod evaluate_export;
mod limits;

use limits::Limits;
pub use limits::OverMemoryLimit;

wasmtime::component::bindgen!({ world: "redeployer", path: "../wit" });

/// The WIT types, as generated for the host.
pub use exports::redeploy::plugin::types as wit;

/// The component built from `plugin/` by `build.rs`, embedded in the binary.
pub static EMBEDDED_COMPONENT: &[u8] = include_bytes!(env!("REDEPLOY_PLUGIN_WASM"));

/// How long one evaluation may run. A 25 MiB delivery evaluates in well under
/// a second; anything longer is a plugin bug (a loop) and is cut off.
pub const PLUGIN_DEADLINE: Duration = Duration::from_secs(5);

/// How often the epoch ticker advances; the deadline's resolution.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Linear memory one evaluation may use. The body (up to 25 MiB) is copied in
/// once, decoded form bodies once more, and parsed structures borrow from it;
/// 256 MiB leaves room for that several times over and still bounds a runaway.
pub const PLUGIN_MEMORY_LIMIT: usize = 256 * 1024 * 1024;

/// Bytes of a pooled instance's linear memory kept resident between
/// instances. When an instance is dropped, wasmtime's `PAGEMAP_SCAN` reset
/// finds the pages of its memory (up to its size at that moment) that are
/// present and private: every page written since the slot was mapped or
/// last decommitted, not only by this instance, since it does not
/// write-protect them again. It resets the first of them in address order,
/// up to this many bytes (and at most 32 separate runs of pages), in place:
/// zeroed, or copied back from the image inside the static data. The rest it
/// decommits, to be faulted in again when next written.
///
/// This covers the component's whole initial memory (its 1 MiB stack, its
/// static data and the allocator's arena, about 1.25 MiB). A small
/// delivery's reset therefore costs every page of that memory any earlier
/// delivery in the slot wrote: the stack as deep as any went, the static
/// data written, and the arena's pages, the largest part, which the guest's
/// `ARENA_BYTES` bounds. Pages grown past the initial memory are outside
/// a small instance's reset.
pub const LINEAR_MEMORY_KEEP_RESIDENT: usize = 2 * 1024 * 1024;

/// Instances the pooling allocator keeps slots for (the server's
/// concurrency bound for evaluations; each evaluation uses one): 64, or
/// the number in `REDEPLOY_POOLED_INSTANCES` when the binary was built.
/// Each slot reserves its memories' address space (about 8 GiB), which
/// is more than valgrind can map, so `bench/hot_functions.py` builds the
/// binary it traces with 2.
pub const POOLED_INSTANCES: u32 = match option_env!("REDEPLOY_POOLED_INSTANCES") {
    None => 64,
    Some(n) => match u32::from_str_radix(n, 10) {
        Ok(n) if n > 0 => n,
        _ => panic!("REDEPLOY_POOLED_INSTANCES is not a positive number"),
    },
};

/// How long a call waits for one of the [`POOLED_INSTANCES`] slots when all
/// are taken, before it fails (a 500, like a trap). A slot is held at most
/// [`PLUGIN_DEADLINE`] by one call, so two deadlines let a full pool turn
/// over twice; the wait is bounded so a flood cannot queue calls forever.
pub const INSTANCE_WAIT: Duration = Duration::from_secs(10);

/// The SHA-256 of the embedded component (computed by `build.rs`).
pub const EMBEDDED_COMPONENT_SHA256: &str = env!("REDEPLOY_PLUGIN_SHA256");

/// Where the component comes from.
#[derive(Clone, Debug)]
pub enum ComponentSource {
    /// The component embedded at build time.
    Embedded,
    /// A `.wasm` component file (tests use deliberately broken ones).
    File(PathBuf),
}

/// How the engine allocates instances (named on the command line of
/// [`COMPILE_SUBCOMMAND`] as `pooling` or `on-demand`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Allocation {
    /// Pooling allocator: fastest per-instance for a long-running server.
    Pooling,
    /// On-demand: cheapest engine start, for one-shot processes (hooks, CLI).
    OnDemand,
}

/// Where [`PluginRuntime::cached`] compiles the component when its cache
/// holds no usable artifact.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CompileIn {
    /// On the calling thread, with an engine of its own dropped afterwards:
    /// for one-shot processes, which end soon after.
    #[default]
    ThisProcess,
    /// In a child process, this binary's hidden [`COMPILE_SUBCOMMAND`],
    /// which prints the compiled artifact: for the long-running server,
    /// which then never runs Cranelift, so none of Cranelift's code or
    /// working memory stays resident in it (BENCHMARKS.md, idle memory).
    /// A child that cannot be started, fails, prints more than a cache
    /// file may hold or runs past [`COMPILE_CHILD_LIMIT`] is reported in a
    /// warning and the component is compiled in this process instead.
    Child,
}

/// The hidden subcommand that compiles the embedded component and writes
/// the compiled artifact to its standard output ([`CompileIn::Child`]).
pub const COMPILE_SUBCOMMAND: &str = "compile-component";

/// How long the compiling child ([`CompileIn::Child`]) may take before it
/// is killed and the component compiled in this process instead: a compile
/// takes about two seconds on the machine of record, so this is far past
/// a slow machine's and short of a start that never ends.
pub const COMPILE_CHILD_LIMIT: Duration = Duration::from_secs(300);

/// Runtime options.
#[derive(Clone, Debug)]
pub struct RuntimeOptions {
    /// Instance allocation.
    pub allocation: Allocation,
    /// Per-call execution deadline.
    pub deadline: Duration,
    /// Per-call linear-memory cap in bytes.
    pub memory_limit: usize,
    /// Where a component missing from the cache is compiled (by
    /// [`PluginRuntime::cached`]; [`PluginRuntime::new`], which `serve
    /// --plugin` uses, always compiles in this process).
    pub compile: CompileIn,
}

impl Default for RuntimeOptions {
    fn default() -> Self {
        RuntimeOptions {
            allocation: Allocation::OnDemand,
            deadline: PLUGIN_DEADLINE,
            memory_limit: PLUGIN_MEMORY_LIMIT,
            compile: CompileIn::ThisProcess,
        }
    }
}

/// A call that did not return normally: a trap (deadline, memory cap, guest
/// panic) or a host-side failure. The server answers 500 and keeps serving.
#[derive(Debug, thiserror::Error)]
#[error("plugin trapped: {0:#}")]
pub struct PluginTrap(pub wasmtime::Error);

impl PluginTrap {
    /// The evaluation's memory cap, when that is what stopped it.
    pub fn over_memory_limit(&self) -> Option<&OverMemoryLimit> {
        self.0.downcast_ref()
    }
}

struct StoreData {
    limits: Limits,
}

/// The loaded component, ready to instantiate per call.
pub struct PluginRuntime {
    engine: Engine,
    pre: RedeployerPre<StoreData>,
    /// `evaluate`, called on each delivery's instance without the
    /// bindings' checks of every export's type.
    evaluate: evaluate_export::EvaluateExport,
    options: RuntimeOptions,
    cache_status: Option<cache::CacheStatus>,
    slots: Option<Arc<InstanceSlots>>,
    _ticker: Arc<EpochTicker>,
}

/// The pooling allocator's instance slots: a call takes one before it
/// instantiates and gives it back when its store is dropped, so more
/// concurrent calls than slots wait (up to [`INSTANCE_WAIT`]) instead of
/// failing to instantiate.
struct InstanceSlots {
    free: std::sync::Mutex<u32>,
    freed: std::sync::Condvar,
}

impl InstanceSlots {
    fn take(self: &Arc<Self>, wait: Duration) -> Option<SlotGuard> {
        let deadline = std::time::Instant::now() + wait;
        let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
        while *free == 0 {
            let left = deadline.checked_duration_since(std::time::Instant::now())?;
            free = self
                .freed
                .wait_timeout(free, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        *free -= 1;
        Some(SlotGuard(self.clone()))
    }
}

/// One taken instance slot, given back on drop.
struct SlotGuard(Arc<InstanceSlots>);

impl Drop for SlotGuard {
    fn drop(&mut self) {
        *self.0.free.lock().unwrap_or_else(|p| p.into_inner()) += 1;
        self.0.freed.notify_one();
    }
}

/// A call's store and the slot it occupies. Fields drop in order: the store
/// (and with it the instance's pool slot) before the slot is given back.
struct Call {
    store: Store<StoreData>,
    _slot: Option<SlotGuard>,
}

/// Advances the engine's epoch until dropped.
struct EpochTicker {
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

fn engine_config(allocation: Allocation, memory_limit: usize) -> Config {
    let mut config = Config::new();
    config.epoch_interruption(true);
    if allocation == Allocation::Pooling {
        let mut pool = PoolingAllocationConfig::new();
        pool.total_component_instances(POOLED_INSTANCES)
            .total_core_instances(POOLED_INSTANCES * 2)
            .total_memories(POOLED_INSTANCES * 2)
            .total_tables(POOLED_INSTANCES * 2)
            .max_memory_size(memory_limit)
            // Keep the pages a typical delivery touches resident between
            // instances, so a fresh instance does not fault them in again.
            .linear_memory_keep_resident(LINEAR_MEMORY_KEEP_RESIDENT)
            .table_keep_resident(64 * 1024)
            // Where the kernel has PAGEMAP_SCAN (Linux 6.7+), reset only
            // the pages a delivery dirtied instead of zeroing the whole
            // resident prefix on every reuse (BENCHMARKS.md, part 1).
            .pagemap_scan(Enabled::Auto);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    }
    config
}

/// Compiles the embedded component with an engine of its own, configured
/// like the one that will load it (so the compiled form's compatibility
/// hash matches), and dropped before this returns: wasmtime keeps
/// Cranelift's working state for as long as its engine lives, and a server
/// that compiled on its first start kept 7-9 MiB of it resident for good
/// (BENCHMARKS.md, idle memory). It compiles on the calling thread: the
/// thread pool a parallel compile starts would live on with the process,
/// idle, holding its stacks and heap arenas (about 3 MiB), to save about
/// a second (of the two a compile takes) once per component build.
pub fn precompile_apart(allocation: Allocation, memory_limit: usize) -> anyhow::Result<Vec<u8>> {
    let mut config = engine_config(allocation, memory_limit);
    // Not part of the compiled form's compatibility hash.
    config.parallel_compilation(false);
    let engine = Engine::new(&config)?;
    Ok(engine.precompile_component(EMBEDDED_COMPONENT)?)
}

/// The embedded component compiled by a child process
/// ([`COMPILE_SUBCOMMAND`] of `/proc/self/exe`, this very binary) with the
/// settings of `options`, so nothing of the compile is left in this
/// process. The child gets an empty environment and no input.
fn precompile_in_child(options: &RuntimeOptions) -> anyhow::Result<Vec<u8>> {
    let allocation = clap::ValueEnum::to_possible_value(&options.allocation)
        .context("an allocation without a command-line name")?;
    let mut command = std::process::Command::new("/proc/self/exe");
    command
        .arg(COMPILE_SUBCOMMAND)
        .args(["--allocation", allocation.get_name()])
        .args(["--memory-limit", &options.memory_limit.to_string()])
        .env_clear();
    let compiled = child::output_within(command, COMPILE_CHILD_LIMIT, cache::MAX_CACHE_FILE_BYTES)
        .context("compiling the component in /proc/self/exe")?;
    if compiled.is_empty() {
        anyhow::bail!("the compiling process printed nothing, not a compiled component");
    }
    Ok(compiled)
}

/// Compiles the embedded component where `options` says
/// ([`CompileIn`]).
fn precompile(options: &RuntimeOptions) -> anyhow::Result<Vec<u8>> {
    if options.compile == CompileIn::Child {
        match precompile_in_child(options) {
            Ok(code) => return Ok(code),
            Err(e) => tracing::warn!(
                error = %format!("{e:#}"),
                "could not compile the component in a child process; compiling it in this one"
            ),
        }
    }
    precompile_apart(options.allocation, options.memory_limit)
}

/// `context` with the body MACs of `delivery` to `stacks` the host computes
/// natively ([`body_macs::body_macs`]), unless it already has some.
fn with_body_macs(
    stacks: &[wit::Stack],
    delivery: &wit::Delivery,
    context: &wit::EvaluationContext,
) -> wit::EvaluationContext {
    let mut context = context.clone();
    if context.body_macs.is_none() {
        context.body_macs = body_macs::body_macs(stacks, delivery);
    }
    context
}

impl PluginRuntime {
    /// Loads and pre-instantiates the component.
    pub fn new(source: &ComponentSource, options: RuntimeOptions) -> anyhow::Result<Self> {
        let engine = Engine::new(&engine_config(options.allocation, options.memory_limit))?;
        let component = match source {
            ComponentSource::Embedded => Component::new(&engine, EMBEDDED_COMPONENT)?,
            ComponentSource::File(path) => Component::from_file(&engine, path)
                .map_err(anyhow::Error::from)
                .with_context(|| format!("loading plugin component {}", path.display()))?,
        };
        Self::from_component(engine, component, options)
    }

    /// Loads a component already compiled for `engine`.
    pub fn from_component(
        engine: Engine,
        component: Component,
        options: RuntimeOptions,
    ) -> anyhow::Result<Self> {
        let linker: Linker<StoreData> = Linker::new(&engine);
        let pre = RedeployerPre::new(linker.instantiate_pre(&component)?)?;
        let evaluate = evaluate_export::EvaluateExport::find(&engine, &component)?;
        let pooling = options.allocation == Allocation::Pooling;
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let weak = engine.weak();
        let stop_flag = stop.clone();
        std::thread::Builder::new()
            .name("redeploy-epoch".into())
            .spawn(move || {
                while !stop_flag.load(std::sync::atomic::Ordering::Relaxed) {
                    match weak.upgrade() {
                        Some(engine) => engine.increment_epoch(),
                        None => break,
                    }
                    std::thread::sleep(EPOCH_TICK);
                }
            })
            .context("starting the epoch ticker")?;
        Ok(PluginRuntime {
            engine,
            pre,
            evaluate,
            options,
            cache_status: None,
            slots: pooling.then(|| {
                Arc::new(InstanceSlots {
                    free: std::sync::Mutex::new(POOLED_INSTANCES),
                    freed: std::sync::Condvar::new(),
                })
            }),
            _ticker: Arc::new(EpochTicker { stop }),
        })
    }

    /// The engine (for precompiling with the same settings).
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// An engine configured as `PluginRuntime::new` would, for precompiling.
    pub fn engine_for(allocation: Allocation, memory_limit: usize) -> anyhow::Result<Engine> {
        Ok(Engine::new(&engine_config(allocation, memory_limit))?)
    }

    /// A fresh instance, loaded through the generated bindings (which check
    /// every export's type).
    fn instantiate(&self) -> Result<(Call, Redeployer), PluginTrap> {
        let mut call = self.new_call()?;
        let instance = self.pre.instantiate(&mut call.store).map_err(PluginTrap)?;
        Ok((call, instance))
    }

    /// A store for one call, in a pooled slot where the runtime pools: its
    /// memory limit and its deadline set, no instance yet.
    fn new_call(&self) -> Result<Call, PluginTrap> {
        let slot = match &self.slots {
            Some(slots) => Some(slots.take(INSTANCE_WAIT).ok_or_else(|| {
                PluginTrap(wasmtime::Error::msg(format!(
                    "no plugin instance became free within {}",
                    humantime::format_duration(INSTANCE_WAIT)
                )))
            })?),
            None => None,
        };
        let limits = StoreLimitsBuilder::new()
            .memory_size(self.options.memory_limit)
            .instances(4)
            .tables(8)
            .memories(4)
            .trap_on_grow_failure(true)
            .build();
        let limits = Limits {
            inner: limits,
            refused: None,
        };
        let mut store = Store::new(&self.engine, StoreData { limits });
        store.limiter(|d| &mut d.limits);
        let ticks = (self.options.deadline.as_millis() / EPOCH_TICK.as_millis()).max(1) as u64;
        store.set_epoch_deadline(ticks);
        Ok(Call { store, _slot: slot })
    }

    /// Evaluates one delivery in a fresh instance, with what the host knows
    /// (`context`: the time, the deployment key, the maximum event age) and,
    /// unless `context` has them, the body's MACs computed natively
    /// ([`body_macs`]).
    pub fn evaluate(
        &self,
        stacks: &[wit::Stack],
        delivery: &wit::Delivery,
        context: &wit::EvaluationContext,
    ) -> Result<Result<wit::Outcome, wit::Error>, PluginTrap> {
        let context = with_body_macs(stacks, delivery, context);
        let mut call = self.new_call()?;
        let instance = self
            .pre
            .instance_pre()
            .instantiate(&mut call.store)
            .map_err(PluginTrap)?;
        let evaluate = self
            .evaluate
            .typed(&mut call.store, &instance)
            .map_err(PluginTrap)?;
        match evaluate.call(&mut call.store, (stacks, delivery, &context)) {
            Ok((outcome,)) => Ok(outcome),
            Err(trap) => Err(PluginTrap(match call.store.data().limits.refused {
                Some(desired) => wasmtime::Error::new(OverMemoryLimit {
                    limit: self.options.memory_limit,
                    desired,
                }),
                None => trap,
            })),
        }
    }

    /// Checks stacks by the component's own rules (`validate-stacks`), as
    /// `evaluate` would apply them to a delivery.
    pub fn validate_stacks(
        &self,
        stacks: &[wit::Stack],
    ) -> Result<Result<(), wit::Error>, PluginTrap> {
        let (mut call, instance) = self.instantiate()?;
        instance
            .redeploy_plugin_evaluator()
            .call_validate_stacks(&mut call.store, stacks)
            .map_err(PluginTrap)
    }

    /// The deployment-status body for a phase (`github.deployment-status`).
    pub fn deployment_status(&self, input: &wit::StatusInput) -> Result<String, PluginTrap> {
        let (mut call, instance) = self.instantiate()?;
        instance
            .redeploy_plugin_github()
            .call_deployment_status(&mut call.store, input)
            .map_err(PluginTrap)
    }

    /// The JSON convenience entry point (`json.evaluate-json`).
    pub fn evaluate_json(&self, input: &str) -> Result<Result<String, wit::Error>, PluginTrap> {
        let (mut call, instance) = self.instantiate()?;
        instance
            .redeploy_plugin_json()
            .call_evaluate_json(&mut call.store, input)
            .map_err(PluginTrap)
    }

    /// Evaluates one delivery and answers with the outcome as the
    /// `redeploy check` JSON document (`json.report`).
    pub fn report(
        &self,
        stacks: &[wit::Stack],
        delivery: &wit::Delivery,
        context: &wit::EvaluationContext,
    ) -> Result<Result<String, wit::Error>, PluginTrap> {
        let context = with_body_macs(stacks, delivery, context);
        let (mut call, instance) = self.instantiate()?;
        instance
            .redeploy_plugin_json()
            .call_report(&mut call.store, stacks, delivery, &context)
            .map_err(PluginTrap)
    }

    /// The request a post-receive hook sends a server for `stack`'s share
    /// of `push`, forwarded at `timestamp` (Unix seconds) and signed with
    /// `secret` (`forwarding.forward-push`).
    pub fn forward_push(
        &self,
        stack: &str,
        push: &wit::PostReceive,
        timestamp: u64,
        secret: Option<&str>,
    ) -> Result<wit::HttpRequest, PluginTrap> {
        let (mut call, instance) = self.instantiate()?;
        instance
            .redeploy_plugin_forwarding()
            .call_forward_push(&mut call.store, stack, push, timestamp, secret)
            .map_err(PluginTrap)
    }

    /// The `X-Redeploy-Signature-256` value of a manual trigger of `stack`
    /// at `timestamp` (Unix seconds) (`forwarding.sign-manual-trigger`).
    pub fn sign_manual_trigger(
        &self,
        stack: &str,
        timestamp: u64,
        secret: &str,
    ) -> Result<String, PluginTrap> {
        let (mut call, instance) = self.instantiate()?;
        instance
            .redeploy_plugin_forwarding()
            .call_sign_manual_trigger(&mut call.store, stack, timestamp, secret)
            .map_err(PluginTrap)
    }

    /// The plugin's version.
    pub fn version(&self) -> Result<String, PluginTrap> {
        let (mut call, instance) = self.instantiate()?;
        instance
            .redeploy_plugin_evaluator()
            .call_version(&mut call.store)
            .map_err(PluginTrap)
    }
}

/// The embedded component, compiled once per test binary: for unit tests
/// that go through the real component.
#[cfg(test)]
pub fn embedded_for_tests() -> &'static PluginRuntime {
    static RUNTIME: std::sync::OnceLock<PluginRuntime> = std::sync::OnceLock::new();
    RUNTIME.get_or_init(|| {
        PluginRuntime::new(&ComponentSource::Embedded, RuntimeOptions::default())
            .expect("the embedded component loads")
    })
}

/// The component a command loads: the file given with `--plugin`, else the embedded one.
pub fn component_source(path: Option<&Path>) -> ComponentSource {
    match path {
        Some(p) => ComponentSource::File(p.to_path_buf()),
        None => ComponentSource::Embedded,
    }
}

impl wit::Provider {
    /// The provider's name in the contract (the WIT enum case): what the
    /// journal, metrics, logs and `REDEPLOY_PROVIDER` say.
    pub fn as_str(self) -> &'static str {
        match self {
            wit::Provider::Github => "github",
            wit::Provider::Gitlab => "gitlab",
            wit::Provider::Gitea => "gitea",
            wit::Provider::Forgejo => "forgejo",
            wit::Provider::Gogs => "gogs",
            wit::Provider::Gitee => "gitee",
            wit::Provider::Harness => "harness",
            wit::Provider::BitbucketCloud => "bitbucket-cloud",
            wit::Provider::BitbucketServer => "bitbucket-server",
            wit::Provider::BitbucketLegacy => "bitbucket-legacy",
            wit::Provider::AzureDevops => "azure-devops",
            wit::Provider::DockerHub => "docker-hub",
            wit::Provider::Harbor => "harbor",
            wit::Provider::Quay => "quay",
            wit::Provider::Ghcr => "ghcr",
            wit::Provider::Acr => "acr",
            wit::Provider::Distribution => "distribution",
            wit::Provider::Manual => "manual",
            wit::Provider::PostReceive => "post-receive",
            wit::Provider::Poll => "poll",
        }
    }
}

impl wit::SkipCode {
    /// The code's name in the contract (the WIT enum case), as answers and
    /// `redeploy check` give it.
    pub fn as_str(self) -> &'static str {
        match self {
            wit::SkipCode::NotADeployEvent => "not-a-deploy-event",
            wit::SkipCode::NotFollowed => "not-followed",
            wit::SkipCode::NoRef => "no-ref",
            wit::SkipCode::OtherRepository => "other-repository",
            wit::SkipCode::RefDeleted => "ref-deleted",
            wit::SkipCode::NotABranchOrTag => "not-a-branch-or-tag",
            wit::SkipCode::BranchMismatch => "branch-mismatch",
            wit::SkipCode::TagMismatch => "tag-mismatch",
            wit::SkipCode::SkipMarker => "skip-marker",
            wit::SkipCode::PathsUnmatched => "paths-unmatched",
            wit::SkipCode::ImageMismatch => "image-mismatch",
            wit::SkipCode::ImageUntagged => "image-untagged",
            wit::SkipCode::PingAcknowledged => "ping-acknowledged",
            wit::SkipCode::OtherStack => "other-stack",
            wit::SkipCode::OtherEnvironment => "other-environment",
            wit::SkipCode::OtherTask => "other-task",
            wit::SkipCode::ForeignDeployment => "foreign-deployment",
            wit::SkipCode::DeployedOnPush => "deployed-on-push",
        }
    }
}

impl wit::Action {
    /// The action's name in the contract, as answers give it: `deploy`,
    /// `request-deployment` or `skip`.
    pub fn name(&self) -> &'static str {
        match self {
            wit::Action::Deploy(_) => "deploy",
            wit::Action::RequestDeployment(_) => "request-deployment",
            wit::Action::Skip(_) => "skip",
        }
    }

    /// The skip code, when the stack skips.
    pub fn skip_code(&self) -> Option<wit::SkipCode> {
        match self {
            wit::Action::Skip(code) => Some(*code),
            _ => None,
        }
    }

    /// The deploy event, when the stack deploys now or asks GitHub for a
    /// deployment.
    pub fn event(&self) -> Option<&wit::DeployEvent> {
        match self {
            wit::Action::Deploy(e) | wit::Action::RequestDeployment(e) => Some(e),
            wit::Action::Skip(_) => None,
        }
    }
}

impl wit::Error {
    /// The kebab-case name of the case, as in the WIT `error` variant.
    pub fn kind(&self) -> &'static str {
        match self {
            wit::Error::UnknownProvider(_) => "unknown-provider",
            wit::Error::MalformedPayload(_) => "malformed-payload",
            wit::Error::MissingSignature(_) => "missing-signature",
            wit::Error::BadSignature(_) => "bad-signature",
            wit::Error::UnsupportedMethod(_) => "unsupported-method",
            wit::Error::BadRequest(_) => "bad-request",
            wit::Error::InvalidStack(_) => "invalid-stack",
            wit::Error::StaleEvent(_) => "stale-event",
            wit::Error::Refused(_) => "refused",
            wit::Error::StaleSignature(_) => "stale-signature",
        }
    }

    /// `kind: message`, one line.
    pub fn describe(&self) -> String {
        format!("{}: {}", self.kind().replace('-', " "), self.message())
    }

    /// The message without the kind.
    pub fn message(&self) -> &str {
        match self {
            wit::Error::UnknownProvider(m)
            | wit::Error::MalformedPayload(m)
            | wit::Error::MissingSignature(m)
            | wit::Error::BadSignature(m)
            | wit::Error::UnsupportedMethod(m)
            | wit::Error::BadRequest(m)
            | wit::Error::InvalidStack(m)
            | wit::Error::StaleEvent(m)
            | wit::Error::Refused(m)
            | wit::Error::StaleSignature(m) => m,
        }
    }
}
