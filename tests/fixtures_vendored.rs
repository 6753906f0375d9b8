//! The vendored third-party files stay byte for byte what was copied from
//! their sources: the payloads (`tests/fixtures/`) and GitHub's REST
//! description (`tests/github-api/`). Each folder's `SHA256SUMS` lists the
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

/// Checks every file under `root` against `root/SHA256SUMS`; returns the
/// names listed.
fn check_digests(root: &Path) -> BTreeSet<String> {
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
    files(root, root, &mut present);
    present.remove("SHA256SUMS");
    let unlisted: Vec<_> = present.difference(&listed).collect();
    assert!(unlisted.is_empty(), "files not in SHA256SUMS: {unlisted:?}");
    listed
}

#[test]
fn vendored_fixtures_are_byte_identical_to_their_recorded_digests() {
    let listed = check_digests(&fixtures());
    assert!(listed.len() > 300, "only {} fixtures listed", listed.len());
    assert!(listed.contains("SOURCES.md"));
}

#[test]
fn vendored_github_rest_description_is_byte_identical_to_its_recorded_digests() {
    let listed = check_digests(&crate::support::workspace().join("tests").join("github-api"));
    assert!(listed.contains("operations.json") && listed.contains("SOURCE.md"));
}
