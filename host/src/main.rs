//! The `redeploy` binary: parse the command line, run, map errors to exit codes.

use clap::Parser as _;
use redeploy_host::cli::{exit_code, Cli};

/// The binary's allocator: jemalloc, whose per-thread caches spare the
/// server's many threads glibc's arena locks (BENCHMARKS.md, part 5,
/// nineteenth pass). C code (SQLite) still allocates with the C library's
/// `malloc`.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read before `main` (its documented `malloc_conf`
/// global, under the crate's `_rjem_` prefix; `_RJEM_MALLOC_CONF` in the
/// environment overrides them). Pages unused for a second go back to the
/// system the next time jemalloc runs its decay, as threads allocate (an
/// idle server's timers do), at once rather than first marked reusable
/// (`muzzy_decay_ms:0`, jemalloc 5.3's default, stated); each thread
/// caches freed blocks of up to 1 KiB only, so the hundred threads of a
/// loaded server cache little between them.
#[export_name = "_rjem_malloc_conf"]
pub static ALLOCATOR_OPTIONS: &[u8; 53] = b"dirty_decay_ms:1000,muzzy_decay_ms:0,tcache_max:1024\0";

fn main() {
    let cli = Cli::parse();
    if let Err(err) = cli.run() {
        // Output whose reader stopped early (`| head`) ends quietly.
        if err
            .downcast_ref::<redeploy_host::cli::StdoutClosed>()
            .is_none()
        {
            redeploy_host::cli::say(format_args!("redeploy: {err:#}"));
        }
        std::process::exit(exit_code(&err));
    }
}
