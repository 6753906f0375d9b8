//! Hook tokens: the unguessable path segment of each stack's secret hook
//! URL. Generated on first use and kept in the journal, or set in the config.

use std::sync::Arc;

use anyhow::{bail, Context as _};
use subtle::ConstantTimeEq as _;

use crate::config::{Config, StackConfig};
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
        .map(|stack| Ok((stack.name.clone(), stack_token(stack, journal)?)))
        .collect()
}

/// One stack's token: the configured one, or the one in the journal, or a
/// new one stored there.
pub fn token_for(config: &Config, journal: &Journal, stack: &str) -> anyhow::Result<String> {
    let stack = config
        .stack(stack)
        .with_context(|| format!("no stack named \"{stack}\""))?;
    stack_token(stack, journal)
}

fn stack_token(stack: &StackConfig, journal: &Journal) -> anyhow::Result<String> {
    // A stack whose token was not read may have a configured token this
    // config does not hold: a token generated for it would not be its own.
    if !stack.token_read {
        bail!(
            "stack \"{}\": its hook token was not read, so it is unknown",
            stack.name
        );
    }
    Ok(match &stack.hook_token {
        Some(t) => t.expose().to_string(),
        None => journal
            .ensure_hook_token(&stack.name, &generate_token()?)
            .with_context(|| format!("stack \"{}\": storing its hook token", stack.name))?,
    })
}

/// The base of the config's hook URLs: `server.public_url`, or
/// `http://<server.listen>` without one.
pub fn hook_base(config: &Config) -> String {
    hook_base_listening(config, config.server.listen)
}

/// The base of the hook URLs of a server listening on `addr` (which
/// `serve --listen` may have chosen over `server.listen`):
/// `server.public_url`, or `http://<addr>` without one.
pub fn hook_base_listening(config: &Config, addr: std::net::SocketAddr) -> String {
    config
        .server
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{addr}"))
}

/// Maps a presented token to its stack. Both sides are hashed with SHA-256
/// first and the fixed-length digests compared in constant time against
/// every token (no early exit, no branch on a match), so timing reveals
/// neither which stack, nor how much of a token matched, nor any token's
/// length (a byte-wise comparison of unequal lengths returns at once).
#[derive(Clone)]
pub struct TokenTable {
    entries: Arc<Vec<(String, String)>>,
    digests: Arc<Vec<[u8; 32]>>,
}

/// SHA-256 of a token: the fixed-length form tokens are compared in.
fn digest(token: &str) -> [u8; 32] {
    use sha2::Digest as _;
    sha2::Sha256::digest(token.as_bytes()).into()
}

impl TokenTable {
    /// A table from `(stack, token)` pairs.
    pub fn new(entries: Vec<(String, String)>) -> TokenTable {
        let digests = entries.iter().map(|(_, t)| digest(t)).collect();
        TokenTable {
            entries: Arc::new(entries),
            digests: Arc::new(digests),
        }
    }

    /// The stack whose token is `presented`.
    pub fn lookup(&self, presented: &str) -> Option<&str> {
        let presented = digest(presented);
        // The index of the matching entry, selected without branching on
        // the comparison; `usize::MAX` when none matches.
        let mut found = subtle::CtOption::new(0u64, subtle::Choice::from(0));
        for (i, stored) in self.digests.iter().enumerate() {
            let equal = stored.ct_eq(&presented);
            let candidate = subtle::CtOption::new(i as u64, equal);
            found = subtle::ConditionallySelectable::conditional_select(&found, &candidate, equal);
        }
        let index: Option<u64> = found.into();
        index
            .and_then(|i| self.entries.get(i as usize))
            .map(|(s, _)| s.as_str())
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

    #[test]
    fn lookup_compares_fixed_length_digests_whatever_the_lengths() {
        // Tokens of different lengths, and presented values that are a
        // prefix, an extension or empty: every comparison is between two
        // 32-byte digests, so no length reaches the comparison.
        let short = "a".repeat(22);
        let long = "b".repeat(200);
        let t = TokenTable::new(vec![
            ("s".into(), short.clone()),
            ("l".into(), long.clone()),
        ]);
        assert!(t.digests.iter().all(|d| d.len() == 32));
        assert_eq!(t.digests[0], digest(&short));
        assert_eq!(t.lookup(&short), Some("s"));
        assert_eq!(t.lookup(&long), Some("l"));
        assert_eq!(t.lookup(&long[..199]), None);
        assert_eq!(t.lookup(&format!("{short}a")), None);
        assert_eq!(TokenTable::new(Vec::new()).lookup(&short), None);
    }

    #[test]
    fn a_stack_whose_secrets_were_not_read_gets_no_token() {
        let dir = std::env::temp_dir().join(format!(
            "redeploy-tokens-unread-{}-{}",
            std::process::id(),
            crate::journal::now_ms()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let text = "[[stacks]]\nname = \"web\"\nimage = \"i\"\ncommand = [\"x\"]\n\
                    hook_token_env = \"REDEPLOY_TOKENS_TEST_UNSET_VARIABLE\"\n\
                    [[stacks]]\nname = \"api\"\nimage = \"j\"\ncommand = [\"x\"]\n";
        let config = crate::config::parse_scoped(
            text,
            &dir,
            &crate::config::ProcessSecrets,
            crate::config::SecretScope::Stack("api"),
        )
        .unwrap();
        let journal = Journal::open(&Journal::path_in(&dir)).unwrap();
        assert_eq!(
            token_for(&config, &journal, "api").unwrap().len(),
            TOKEN_BYTES * 2
        );
        let err = token_for(&config, &journal, "web").unwrap_err().to_string();
        assert!(err.contains("its hook token was not read"), "{err}");
        assert!(ensure_tokens(&config, &journal).is_err());
        // Nothing was generated and stored for it.
        assert_eq!(journal.hook_token("web").unwrap(), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
