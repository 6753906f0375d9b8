//! redeploy's integration tests: one binary, one module per area.
//!
//! - `golden`: every case under `golden/cases/` through three drivers (the
//!   plugin crate natively, the component through the host's typed calls,
//!   the component's `evaluate-json`), each compared with `expected.json`.
//! - `node`: the same golden corpus in Node.js through jco.
//! - `examples`: every file in examples/ is run or checked.
//! - `check`: the `redeploy check` command as a user runs it.
//! - `admin`: the administrator's first hour (issue 14): the default
//!   config file, commands reading only the secrets of the stacks they use,
//!   `config check`, shell completions and the man page.
//! - `package`: the Debian package, built by `cargo deb --no-build` from
//!   this run's release binary, installed with `dpkg -i`, checked, purged.
//! - `state_owner`: a command run as another user than the state
//!   directory's owner is refused; a journal this user cannot open names
//!   its owner (real throwaway users).
//! - `component`: the built component's imports (none) and exports.
//! - `layout`: the release binary links the functions a server runs
//!   (`host/hot-functions.txt`) first in its code, together, and
//!   allocates with jemalloc under its options.
//! - `serve`: `redeploy serve` on loopback with a stand-in deploy program.
//! - `poll`: `[stacks.poll]` against real bare repositories (`file://`,
//!   `git daemon`), a restart, the webhook and the poll seeing one push,
//!   an unreachable repository, `redeploy poll`.
//! - `poll_registry`: `[stacks.poll]` on image stacks against a loopback
//!   stand-in of the Distribution API and its token server: a new digest
//!   deploys once, an unchanged one never, credentials, `429` with
//!   `Retry-After`, `redeploy poll`.
//! - `post_receive`: the git hook with real bare repositories and pushes.
//! - `gitolite`: redeploy as Debian's real gitolite3's repo-specific hook,
//!   pushed to through `gitolite-shell`; `install-hook` refusing a gitolite
//!   repository, passing on git's "dubious ownership", and checking what
//!   the repository's owner can write.
//! - `trap`: a deliberately broken component cut off by deadline and memory cap.
//! - `github_standin`: a loopback stand-in for GitHub's REST API that checks
//!   every request against GitHub's published schemas.
//! - `github_cd`: GitHub continuous deployment end to end (deployments,
//!   statuses, `github connect`) and Docker Hub callbacks.
//! - `github_cd_retry`: a push to a stack that waits for GitHub's
//!   `deployment` event is never lost (issue 17): a request GitHub did not
//!   take is retried (across a restart), a refused one deploys directly or
//!   gives up as the stack says, GitHub's 409 is never overridden, and a
//!   created deployment whose event never came runs once from the journal.
//! - `github_catch_up`: webhook deliveries missed while the server was
//!   down, listed and redelivered once at its start (issue 17).
//! - `github_outbox`: the outbox of GitHub reports sent once and in order
//!   by one sender per journal (issue 15): a server killed with statuses
//!   waiting, two replicas' senders on one PostgreSQL journal.
//! - `notifications`: the `[[notifications]]` channels (issue 18) against a
//!   scripted loopback HTTP receiver (chat, signed webhook) and a real SMTP
//!   server (aiosmtpd, STARTTLS with a private CA, a login): one message
//!   per subscribed deploy outcome (failed, cancelled, timed out), retries
//!   and `Retry-After` (never sooner than the back-off), a server killed
//!   with a notification waiting, a channel down while deploys go on, a
//!   slow channel holding back no other, refused deliveries told once then
//!   summed up, a hook-only install's runner retrying before it exits, the
//!   deploy page's list, `redeploy notify test`, and no channel credential
//!   in any log or output.
//! - `hostile`: the hostile-input matrix (`hostile::matrix`, one named test
//!   per bad request, none deploying anything) and the issue-12 attacks that
//!   need a world of their own: `hostile::plugin` (decisions in the
//!   component), `hostile::replay` (replays, older commits),
//!   `hostile::runner` (the hook's input, runners, process groups, log
//!   forging), `hostile::server` (memory, connections, clients that never
//!   read, pruning, private expiring logs, the compiled-component cache).
//! - `load`: thousands of deliveries with failing and hanging deploys, and
//!   SIGKILLs of the server in the middle; the journal stays consistent.
//! - `readme`: the README cannot drift: its commands parse and (on the
//!   example config) run, its TOML validates, its sample outputs are
//!   what the commands print.
//! - `secrets`: no secret or hook token in any log, journal or response.
//! - `fixtures_vendored`: the vendored third-party payloads (`fixtures/`)
//!   are byte for byte the recorded copies of their sources.
//! - `support` (not tests): the shared helpers, by topic: the world and
//!   its stand-in deploy program, stack configurations, the server process,
//!   HTTP clients, deliveries, the CLI (`support/mod.rs` lists them).
//! - `fuzz_regressions`: the inputs the fuzzers crashed on, replayed through
//!   the fuzz targets' own checks (`fuzz/src/<target>.rs`, included as
//!   `fuzz_<target>`).

mod admin;
mod check;
mod cluster;
mod component;
mod examples;
mod fixtures_vendored;
mod fuzz_regressions;
mod github_catch_up;
mod github_cd;
mod github_cd_retry;
mod github_outbox;
mod github_standin;
mod gitolite;
mod golden;
mod hostile;
mod journal;
mod layout;
mod load;
mod node;
mod notifications;
mod package;
mod poll;
mod poll_registry;
mod post_receive;
mod postgres;
mod postgres_logs;
mod readme;
mod replicas;
mod secrets;
mod serve;
mod state_owner;
mod support;
mod trap;
mod ui;
mod ui_browser;
mod ui_operate;

/// The `config` fuzz target's checks, shared with `fuzz/` (the modules of
/// targets with kept inputs are included here, so nothing is unused).
#[path = "../fuzz/src/config.rs"]
mod fuzz_config;
/// The `delivery` fuzz target's checks.
#[path = "../fuzz/src/delivery.rs"]
mod fuzz_delivery;
