//! Replays every input kept in `fuzz/regressions/<target>/` (each one
//! crashed a fuzz target before its fix) through that target's own checks,
//! so the fixes stay fixed in the normal test command.

use std::path::PathBuf;

use crate::fuzz_config as config;
use crate::support::workspace;

/// The kept inputs of one target, sorted by name; at least one.
fn kept(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = workspace().join("fuzz").join("regressions").join(target);
    let mut inputs: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| {
            let data = std::fs::read(&p).unwrap();
            (p, data)
        })
        .collect();
    inputs.sort();
    assert!(!inputs.is_empty(), "no kept inputs in {}", dir.display());
    inputs
}

/// Runs `check` on every kept input of `target`, naming the inputs that fail.
fn replay(target: &str, check: impl Fn(&[u8]) + std::panic::RefUnwindSafe) {
    let failed: Vec<String> = kept(target)
        .into_iter()
        .filter(|(_, data)| std::panic::catch_unwind(|| check(data)).is_err())
        .map(|(path, _)| path.display().to_string())
        .collect();
    assert!(failed.is_empty(), "{target}: failing inputs: {failed:?}");
}

#[test]
fn config_fuzz_regressions_stay_fixed() {
    replay("config", |data| {
        config::check_config(std::str::from_utf8(data).expect("config inputs are UTF-8"))
    });
}

#[test]
fn delivery_fuzz_regressions_stay_fixed() {
    replay("delivery", |data| {
        let delivery = crate::fuzz_delivery::FuzzDelivery::parse(data)
            .expect("kept delivery inputs are well-formed");
        crate::fuzz_delivery::check_delivery(&delivery);
    });
}
