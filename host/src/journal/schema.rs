//! The journal's schema: versioned migration files for each backend, in
//! `migrations/sqlite/` and `migrations/postgres/`, compiled into the
//! binary. A backend applies every migration newer than the version its
//! database records, in order, under a lock (SQLite: one `BEGIN IMMEDIATE`
//! transaction; PostgreSQL: an advisory lock held by that transaction), so
//! replicas or processes starting at once apply each exactly once.

/// One migration: the schema version it brings the database to, and the
/// SQL that does it.
#[derive(Clone, Copy, Debug)]
pub struct Migration {
    /// The version after it (1, 2, ...; each backend numbers its own).
    pub version: i64,
    /// Its file name, without `.sql`.
    pub name: &'static str,
    /// The statements.
    pub sql: &'static str,
}

macro_rules! migration {
    ($backend:literal, $version:literal, $name:literal) => {
        Migration {
            version: $version,
            name: $name,
            sql: include_str!(concat!("migrations/", $backend, "/", $name, ".sql")),
        }
    };
}

/// The SQLite journal's migrations; the version lives in
/// `PRAGMA user_version`.
pub const SQLITE: &[Migration] = &[
    migration!("sqlite", 1, "0001_deliveries_deploys_tokens"),
    migration!("sqlite", 2, "0002_github"),
    migration!("sqlite", 3, "0003_commit_order_replay_keys"),
    migration!("sqlite", 4, "0004_deploy_process_group"),
    migration!("sqlite", 5, "0005_deliveries_received_index"),
    migration!("sqlite", 6, "0006_deploy_pusher"),
    migration!("sqlite", 7, "0007_runner_leases"),
    migration!("sqlite", 8, "0008_outbox"),
    migration!("sqlite", 9, "0009_deploys_stack_state"),
    migration!("sqlite", 10, "0010_ui_sessions"),
    migration!("sqlite", 11, "0011_delivery_requests"),
    migration!("sqlite", 12, "0012_deploy_cancel"),
    migration!("sqlite", 13, "0013_poll_sources"),
    migration!("sqlite", 14, "0014_github_catch_up"),
    migration!("sqlite", 15, "0015_github_request_fallback"),
    migration!("sqlite", 16, "0016_stack_images"),
    migration!("sqlite", 17, "0017_notifications"),
    migration!("sqlite", 18, "0018_deploys_superseded_by_index"),
    migration!("sqlite", 19, "0019_checks_without_in_lists"),
    migration!("sqlite", 20, "0020_stack_commits_before_newest"),
    migration!("sqlite", 21, "0021_deploy_repository"),
    migration!("sqlite", 22, "0022_stack_commits_per_scope"),
    migration!("sqlite", 23, "0023_poll_ref_filter"),
];

/// The PostgreSQL journal's migrations; the versions applied are rows of
/// `schema_migrations`.
pub const POSTGRES: &[Migration] = &[
    migration!("postgres", 1, "0001_journal"),
    migration!("postgres", 2, "0002_cluster"),
    migration!("postgres", 3, "0003_deploy_logs"),
    migration!("postgres", 4, "0004_outbox"),
    migration!("postgres", 5, "0005_deploys_stack_state"),
    migration!("postgres", 6, "0006_ui_sessions"),
    migration!("postgres", 7, "0007_delivery_requests"),
    migration!("postgres", 8, "0008_deploy_cancel"),
    migration!("postgres", 9, "0009_poll_sources"),
    migration!("postgres", 10, "0010_github_catch_up"),
    migration!("postgres", 11, "0011_github_request_fallback"),
    migration!("postgres", 12, "0012_stack_images"),
    migration!("postgres", 13, "0013_notifications"),
    migration!("postgres", 14, "0014_stack_commits_before_newest"),
    migration!("postgres", 15, "0015_deploy_repository"),
    migration!("postgres", 16, "0016_stack_commits_per_scope"),
    migration!("postgres", 17, "0017_poll_ref_filter"),
];

/// The newest version in `migrations`.
pub const fn latest(migrations: &[Migration]) -> i64 {
    migrations[migrations.len() - 1].version
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_numbered_one_by_one_like_their_files() {
        for migrations in [SQLITE, POSTGRES] {
            for (i, m) in migrations.iter().enumerate() {
                assert_eq!(m.version, i as i64 + 1, "{}", m.name);
                assert!(
                    m.name.starts_with(&format!("{:04}_", m.version)),
                    "{}",
                    m.name
                );
                assert!(
                    !m.sql.contains('?'),
                    "{}: a `?` would read as a placeholder",
                    m.name
                );
            }
        }
    }
}
