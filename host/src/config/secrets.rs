//! Secrets: the redacting [`Secret`] wrapper, where validation reads
//! secrets from ([`SecretSource`], [`ProcessSecrets`]), and reading and
//! checking webhook secrets, hook tokens and token files.

use std::fmt;
use std::path::Path;

use super::{Result, MAX_SECRET_FILE_BYTES, MIN_HOOK_TOKEN_LEN, MIN_SECRET_BYTES};

/// A secret string (webhook secret, hook token, API token). Its `Debug` and
/// `Display` print `<redacted>`; the value is only reachable via
/// [`Secret::expose`], so it cannot end up in a log line by accident.
#[derive(Clone)]
pub struct Secret(pub(super) String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret value itself. Call it only where the value is used (HMAC
    /// keys, token comparison, `Authorization` headers), never to log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Compared in constant time (a reload compares the running journal URL
/// with the new one).
impl PartialEq for Secret {
    fn eq(&self, other: &Secret) -> bool {
        use subtle::ConstantTimeEq as _;
        self.0.as_bytes().ct_eq(other.0.as_bytes()).into()
    }
}

impl Eq for Secret {}

/// Where validation reads the secrets a config names by environment
/// variable or file (`secrets_env`, `hook_token_file`, `github.token_env`...).
pub trait SecretSource {
    /// The value of environment variable `var` (`var` is not empty).
    fn var(&self, var: &str) -> std::result::Result<String, std::env::VarError>;
    /// The text of the file at `path` (already resolved against `base_dir`).
    fn read(&self, path: &Path) -> std::io::Result<String>;
}

/// The real [`SecretSource`]: this process's environment and the file system.
#[derive(Clone, Copy, Debug, Default)]
pub struct ProcessSecrets;

impl SecretSource for ProcessSecrets {
    fn var(&self, var: &str) -> std::result::Result<String, std::env::VarError> {
        std::env::var(var)
    }

    fn read(&self, path: &Path) -> std::io::Result<String> {
        crate::bounded::read_file_to_string(path, MAX_SECRET_FILE_BYTES)
    }
}

/// Reads a secret from environment variable `var`; the error names the key
/// and the variable, never a value.
pub(super) fn read_env(sources: &dyn SecretSource, key: &str, var: &str) -> Result<String, String> {
    if var.is_empty() {
        return Err(format!("{key} names an empty variable"));
    }
    match sources.var(var) {
        Ok(value) if value.is_empty() => Err(format!("{key}: environment variable {var} is empty")),
        Ok(value) => Ok(value),
        Err(std::env::VarError::NotPresent) => {
            Err(format!("{key}: environment variable {var} is not set"))
        }
        Err(std::env::VarError::NotUnicode(_)) => Err(format!(
            "{key}: environment variable {var} is not valid unicode"
        )),
    }
}

pub(super) fn read_secret_file(
    sources: &dyn SecretSource,
    key: &str,
    path: &Path,
) -> Result<String, String> {
    sources.read(path).map_err(|e| {
        format!(
            "{key} {}: {}",
            path.display(),
            lowercase_first(&e.to_string())
        )
    })
}

/// An API token of table `table` (`github`, `poll`): from `token_env` or
/// `token_file` (one of them; a file relative to `base_dir`, trimmed, not
/// empty), or `None` when neither is set or the stack's secrets are not
/// read (`sources` is `None`). Errors name the key, never a value.
pub(super) fn read_token(
    table: &str,
    (env, file): (Option<String>, Option<std::path::PathBuf>),
    base_dir: &Path,
    sources: Option<&dyn SecretSource>,
) -> Result<Option<String>, String> {
    match (env, file, sources) {
        (Some(_), Some(_), _) => Err(format!(
            "set only one of {table}.token_env and {table}.token_file"
        )),
        (None, None, _) | (_, _, None) => Ok(None),
        (Some(var), None, Some(sources)) => {
            read_env(sources, &format!("{table}.token_env"), &var).map(Some)
        }
        (None, Some(file), Some(sources)) => {
            let path = super::server::resolve(base_dir, &file);
            let key = format!("{table}.token_file");
            let token = read_secret_file(sources, &key, &path)?.trim().to_string();
            if token.is_empty() {
                return Err(format!("{key} {} is empty", path.display()));
            }
            Ok(Some(token))
        }
    }
}

fn lowercase_first(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// A webhook secret must be at least [`MIN_SECRET_BYTES`] long. The error
/// names where the secret came from, never the secret.
pub(super) fn check_secret_len(what: &str, secret: &str) -> Result<(), String> {
    if secret.len() < MIN_SECRET_BYTES {
        return Err(format!(
            "{what} is shorter than the minimum of {MIN_SECRET_BYTES} bytes for a secret \
             (generate one with `openssl rand -hex 32`)"
        ));
    }
    Ok(())
}

/// A hook token must be at least [`MIN_HOOK_TOKEN_LEN`] characters of
/// `[A-Za-z0-9_-]`. The error never contains the token.
pub(super) fn check_hook_token(key: &str, token: String) -> Result<Secret, String> {
    let alphabet_ok = token
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if token.len() < MIN_HOOK_TOKEN_LEN || !alphabet_ok {
        return Err(format!(
            "{key} must be at least {MIN_HOOK_TOKEN_LEN} characters of A-Z a-z 0-9 _ - (128 bits)"
        ));
    }
    Ok(Secret(token))
}
