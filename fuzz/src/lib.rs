//! The fuzz targets' input formats and checks, one module per target. The
//! targets in `fuzz_targets/` are thin; the regression test
//! `tests/fuzz_regressions.rs` includes these modules, so kept inputs are
//! checked exactly as the fuzzer checked them.

pub mod config;
pub mod delivery;
pub mod post_receive;
