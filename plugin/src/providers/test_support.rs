//! What the provider parsers' unit tests share: reading a fixture, and
//! taking the one push or the ignore reason out of a parse.

use crate::error::PluginError;
use crate::model::{Event, Push};

/// The fixture at `path` under the repository's `tests/fixtures/`.
pub fn fixture(path: &str) -> Vec<u8> {
    let path = format!("{}/../tests/fixtures/{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("read {path}: {e}"))
}

/// The only push of `parsed` (the parse of `name`).
pub fn one_push(name: &str, parsed: Result<Event, PluginError>) -> Push {
    match parsed {
        Ok(Event::Push(mut v)) if v.len() == 1 => v.remove(0),
        other => panic!("{name}: expected one push, got {other:?}"),
    }
}

/// Why `parsed` (the parse of `name`) is ignored.
pub fn ignored_reason(name: &str, parsed: Result<Event, PluginError>) -> String {
    match parsed {
        Ok(Event::Ignored { reason }) => reason,
        other => panic!("{name}: expected ignored, got {other:?}"),
    }
}
