//! Hook tokens: the unguessable path segment of each stack's secret hook
//! URL. Generated on first use and kept in the journal, or set in the config.

use std::sync::Arc;

use anyhow::Context as _;
use subtle::ConstantTimeEq as _;

use crate::config::Config;
use crate::journal::Journal;

/// Random bytes in a generated token: 192 bits, well over the 128 the
/// threat model needs, as 48 hex characters.
pub const TOKEN_BYTES: usize = 24;

/// The path prefix of hook URLs.
pub const HOOK_PATH_PREFIX: &str = "/hooks/";

/// Generates a fresh token from the operating system's random source.
pub fn generate_token() -> anyhow::Result<String> {
    let mut bytes = [0u8; TOKEN_BYTES];
    getrandom::fill(&mut bytes)
        .map_err(|e| anyhow::anyhow!("the system random source failed: {e}"))?;
    Ok(hex::encode(bytes))
}

/// Every stack's token, in config order: the configured one, or the one in
/// the journal, or a new one stored there.
pub fn ensure_tokens(config: &Config, journal: &Journal) -> anyhow::Result<Vec<(String, String)>> {
    config
        .stacks
        .iter()
        .map(|stack| {
            let token = match &stack.hook_token {
                Some(t) => t.expose().to_string(),
                None => journal
                    .ensure_hook_token(&stack.name, &generate_token()?)
                    .with_context(|| format!("stack \"{}\": storing its hook token", stack.name))?,
            };
            Ok((stack.name.clone(), token))
        })
        .collect()
}

/// One stack's token (ensuring every stack has one, as `ensure_tokens`).
pub fn token_for(config: &Config, journal: &Journal, stack: &str) -> anyhow::Result<String> {
    ensure_tokens(config, journal)?
        .into_iter()
        .find(|(s, _)| s == stack)
        .map(|(_, t)| t)
        .with_context(|| format!("no stack named \"{stack}\""))
}

/// Maps a presented token to its stack, comparing against every token in
/// constant time (no early exit), so timing reveals neither which stack
/// nor how much of a token matched.
#[derive(Clone)]
pub struct TokenTable {
    entries: Arc<Vec<(String, String)>>,
}

impl TokenTable {
    /// A table from `(stack, token)` pairs.
    pub fn new(entries: Vec<(String, String)>) -> TokenTable {
        TokenTable {
            entries: Arc::new(entries),
        }
    }

    /// The stack whose token is `presented`.
    pub fn lookup(&self, presented: &str) -> Option<&str> {
        let mut found: Option<&str> = None;
        for (stack, token) in self.entries.iter() {
            let equal: bool = token.as_bytes().ct_eq(presented.as_bytes()).into();
            if equal {
                found = Some(stack.as_str());
            }
        }
        found
    }

    /// The token of a stack.
    pub fn token(&self, stack: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(s, _)| s == stack)
            .map(|(_, t)| t.as_str())
    }
}

/// The full hook URL of a stack.
pub fn hook_url(base: &str, token: &str) -> String {
    format!("{}{HOOK_PATH_PREFIX}{token}", base.trim_end_matches('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_long_and_distinct() {
        let a = generate_token().unwrap();
        let b = generate_token().unwrap();
        assert_eq!(a.len(), TOKEN_BYTES * 2);
        assert_ne!(a, b);
    }

    #[test]
    fn lookup_needs_the_whole_token() {
        let t = TokenTable::new(vec![
            ("web".into(), "abcdef0123456789abcdef".into()),
            ("api".into(), "0123456789abcdef012345".into()),
        ]);
        assert_eq!(t.lookup("abcdef0123456789abcdef"), Some("web"));
        assert_eq!(t.lookup("0123456789abcdef012345"), Some("api"));
        assert_eq!(t.lookup("abcdef0123456789abcde"), None);
        assert_eq!(t.lookup(""), None);
    }
}
