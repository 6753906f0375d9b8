//! The fuzz targets' input formats and checks, one module per target. The
//! targets in `fuzz_targets/` are thin; the integration tests include the
//! module of each target with kept inputs (`tests/main.rs`), so
//! `tests/fuzz_regressions.rs` checks them exactly as the fuzzer did.

pub mod config;
pub mod delivery;
pub mod post_receive;
