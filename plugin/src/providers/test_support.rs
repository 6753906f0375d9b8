//! What the provider parsers' unit tests share: reading a fixture, and
//! taking the pushes or the ignore reason out of a parse, for any
//! provider's fixture folder and parser ([`Fixtures`]).

use crate::error::PluginError;
use crate::model::{Event, Push};
use crate::providers::ParseFn;

/// The fixture at `path` under the repository's `tests/fixtures/`.
pub fn fixture(path: &str) -> Vec<u8> {
    let path = format!("{}/../tests/fixtures/{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("read {path}: {e}"))
}

/// The pushes of `parsed` (the parse of `name`).
pub fn pushes(name: &str, parsed: Result<Event, PluginError>) -> Vec<Push> {
    match parsed {
        Ok(Event::Push(v)) => v,
        other => panic!("{name}: expected a push, got {other:?}"),
    }
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

/// One provider's fixture folder under `tests/fixtures/` and the parser its
/// tests read those fixtures with.
pub struct Fixtures {
    dir: &'static str,
    parse: ParseFn,
}

impl Fixtures {
    /// The fixtures in `dir`, read by `parse`.
    pub const fn new(dir: &'static str, parse: ParseFn) -> Self {
        Fixtures { dir, parse }
    }

    /// The fixture `name`.
    pub fn read(&self, name: &str) -> Vec<u8> {
        fixture(&format!("{}/{name}", self.dir))
    }

    /// The parse of the fixture `name` as an `event` delivery.
    pub fn parse(&self, event: &str, name: &str) -> Result<Event, PluginError> {
        (self.parse)(event, &self.read(name))
    }

    /// The pushes of the fixture `name` as an `event` delivery.
    pub fn pushes(&self, event: &str, name: &str) -> Vec<Push> {
        pushes(name, self.parse(event, name))
    }

    /// The only push of the fixture `name` as an `event` delivery.
    pub fn push(&self, event: &str, name: &str) -> Push {
        one_push(name, self.parse(event, name))
    }

    /// Why the fixture `name` as an `event` delivery is ignored.
    pub fn ignored_reason(&self, event: &str, name: &str) -> String {
        ignored_reason(name, self.parse(event, name))
    }
}

/// Asserts `push`'s ref and its commits before and after (`None`: no
/// commit, as on a creation or a deletion).
#[track_caller]
pub fn assert_ref(push: &Push, git_ref: &str, before: Option<&str>, after: Option<&str>) {
    assert_eq!(push.git_ref, git_ref);
    assert_eq!(push.before.as_deref(), before);
    assert_eq!(push.after.as_deref(), after);
}
