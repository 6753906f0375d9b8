//! redeploy's integration tests: one binary, one module per area.
//!
//! - `golden`: every case under `golden/cases/` through three drivers (the
//!   plugin crate natively, the component through the host's typed calls,
//!   the component's `evaluate-json`), each compared with `expected.json`.
//! - `check`: the `redeploy check` command as a user runs it.
//! - `serve`: `redeploy serve` on loopback with a stand-in deploy program.
//! - `trap`: a deliberately broken component cut off by deadline and memory cap.

mod check;
mod golden;
mod serve;
mod support;
mod trap;
