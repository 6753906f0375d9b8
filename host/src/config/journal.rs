//! Stage 2 for the `[journal]` table: where the journal lives. No `url`
//! (and no table) keeps the SQLite journal in the state directory; a
//! PostgreSQL URL, inline or from an environment variable or a file (it
//! usually carries a password), puts it in a database several replicas can
//! share.

use std::path::Path;
use std::time::Duration;

use super::raw::RawJournal;
use super::secrets::{read_env, read_secret_file};
use super::server::{duration, non_zero, resolve};
use super::{ConfigError, Result, Secret, SecretSource};
use crate::journal::postgres::{
    DEFAULT_ACQUIRE_TIMEOUT, DEFAULT_ANSWER_TIMEOUT, DEFAULT_CONNECT_TIMEOUT, DEFAULT_POOL_SIZE,
};

/// The most connections one replica may keep to the database.
pub const MAX_POOL_SIZE: usize = 1024;

/// The validated `[journal]` table.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JournalConfig {
    /// The PostgreSQL database, when the journal is not the SQLite file.
    pub postgres: Option<PostgresConfig>,
}

/// A PostgreSQL journal's settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PostgresConfig {
    /// `postgres://user:password@host:port/dbname[?sslmode=...]`; redacted
    /// in `Debug`.
    pub url: Secret,
    /// Connections kept at most (`pool_size`, 1 to [`MAX_POOL_SIZE`]).
    pub pool_size: usize,
    /// How long connecting may take (`connect_timeout`).
    pub connect_timeout: Duration,
    /// How long a call waits for a free connection before the request it
    /// serves fails with 503 (`acquire_timeout`).
    pub acquire_timeout: Duration,
    /// How long one round trip to the database may take before the
    /// connection is given up and the call fails (`answer_timeout`).
    pub answer_timeout: Duration,
    /// How long a stack's lease lives unless renewed (`lease`, at least
    /// [`crate::cluster::MIN_LEASE_TTL`]): how soon another replica
    /// recovers the deploy of a replica that died ([`crate::cluster`]).
    pub lease: Duration,
    /// Whether this replica runs deploys (`runner`, default true); false
    /// queues them in the journal for the other replicas to run.
    pub runner: bool,
}

impl PostgresConfig {
    /// The options the journal opens the database with.
    pub fn options(&self) -> crate::journal::PostgresOptions {
        crate::journal::PostgresOptions {
            url: self.url.expose().to_owned(),
            pool_size: self.pool_size,
            connect_timeout: self.connect_timeout,
            acquire_timeout: self.acquire_timeout,
            answer_timeout: self.answer_timeout,
        }
    }
}

/// Validates `[journal]`; the URL is read from `sources` when it comes
/// from the environment or a file.
pub(super) fn validate_journal(
    raw: Option<RawJournal>,
    base_dir: &Path,
    sources: &dyn SecretSource,
) -> Result<JournalConfig> {
    let Some(raw) = raw else {
        return Ok(JournalConfig::default());
    };
    let err = |message: String| ConfigError::invalid(format!("journal: {message}"));
    let url = match (raw.url, raw.url_env, raw.url_file) {
        (None, None, None) => {
            let tuning = raw.pool_size.is_some()
                || raw.connect_timeout.is_some()
                || raw.acquire_timeout.is_some()
                || raw.answer_timeout.is_some()
                || raw.lease.is_some()
                || raw.runner.is_some();
            if tuning {
                return Err(err(
                    "pool_size, the timeouts, lease and runner are PostgreSQL settings: set url, url_env or url_file too"
                        .into(),
                ));
            }
            return Ok(JournalConfig::default());
        }
        (Some(url), None, None) => url.0,
        (None, Some(var), None) => read_env(sources, "journal.url_env", &var).map_err(err)?,
        (None, None, Some(file)) => {
            let path = resolve(base_dir, &file);
            let url = read_secret_file(sources, "journal.url_file", &path).map_err(err)?;
            let url = url.trim().to_owned();
            if url.is_empty() {
                return Err(err(format!("url_file {} is empty", path.display())));
            }
            url
        }
        _ => return Err(err("set only one of url, url_env and url_file".into())),
    };
    // The URL is checked here, not at the first connection, and the message
    // never quotes it (it holds the password).
    crate::journal::postgres::check_url(&url).map_err(err)?;
    let pool_size = raw.pool_size.unwrap_or(DEFAULT_POOL_SIZE);
    if !(1..=MAX_POOL_SIZE).contains(&pool_size) {
        return Err(err(format!(
            "pool_size {pool_size} must be between 1 and {MAX_POOL_SIZE}"
        )));
    }
    let connect_timeout = duration(
        "connect_timeout",
        raw.connect_timeout,
        DEFAULT_CONNECT_TIMEOUT,
    )
    .and_then(|d| non_zero("connect_timeout", d))
    .map_err(err)?;
    let acquire_timeout = duration(
        "acquire_timeout",
        raw.acquire_timeout,
        DEFAULT_ACQUIRE_TIMEOUT,
    )
    .and_then(|d| non_zero("acquire_timeout", d))
    .map_err(err)?;
    let answer_timeout = duration("answer_timeout", raw.answer_timeout, DEFAULT_ANSWER_TIMEOUT)
        .and_then(|d| non_zero("answer_timeout", d))
        .map_err(err)?;
    // A write's first round trip waits for the journal's lock, for up to
    // acquire_timeout.
    if answer_timeout <= acquire_timeout {
        return Err(err(format!(
            "answer_timeout {} must be longer than acquire_timeout {} (a write's first round trip waits for the journal's lock)",
            humantime::format_duration(answer_timeout),
            humantime::format_duration(acquire_timeout)
        )));
    }
    let lease = duration("lease", raw.lease, crate::cluster::DEFAULT_LEASE_TTL).map_err(err)?;
    if lease < crate::cluster::MIN_LEASE_TTL {
        return Err(err(format!(
            "lease {} is shorter than {}",
            humantime::format_duration(lease),
            humantime::format_duration(crate::cluster::MIN_LEASE_TTL)
        )));
    }
    Ok(JournalConfig {
        postgres: Some(PostgresConfig {
            url: Secret(url),
            pool_size,
            connect_timeout,
            acquire_timeout,
            answer_timeout,
            lease,
            runner: raw.runner.unwrap_or(true),
        }),
    })
}
