//! The vendored third-party payloads (`tests/fixtures/`) stay byte for byte
//! what was copied from their sources: `tests/fixtures/SHA256SUMS` lists the
//! SHA-256 of every file as copied, and every file is listed.

use std::collections::BTreeSet;
use std::path::Path;

use sha2::{Digest as _, Sha256};

use crate::support::fixtures;

/// Every file under `dir`, relative to `root`, with `/` separators.
fn files(root: &Path, dir: &Path, out: &mut BTreeSet<String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files(root, &path, out);
        } else {
            let rel = path.strip_prefix(root).unwrap().to_string_lossy();
            out.insert(rel.replace('\\', "/"));
        }
    }
}

#[test]
fn vendored_fixtures_are_byte_identical_to_their_recorded_digests() {
    let root = fixtures();
    let sums = std::fs::read_to_string(root.join("SHA256SUMS")).unwrap();
    let mut listed = BTreeSet::new();
    for line in sums.lines() {
        let (digest, name) = line
            .split_once("  ")
            .unwrap_or_else(|| panic!("SHA256SUMS line {line:?} is not `<sha256>  <path>`"));
        let name = name.trim_start_matches("./").to_string();
        let bytes = std::fs::read(root.join(&name))
            .unwrap_or_else(|e| panic!("fixture {name} is listed but unreadable: {e}"));
        assert_eq!(
            hex::encode(Sha256::digest(&bytes)),
            digest,
            "fixture {name} differs from the copy of its source"
        );
        listed.insert(name);
    }
    let mut present = BTreeSet::new();
    files(&root, &root, &mut present);
    present.remove("SHA256SUMS");
    let unlisted: Vec<_> = present.difference(&listed).collect();
    assert!(unlisted.is_empty(), "fixtures not in SHA256SUMS: {unlisted:?}");
    assert!(listed.len() > 300, "only {} fixtures listed", listed.len());
    assert!(listed.contains("SOURCES.md"));
}
