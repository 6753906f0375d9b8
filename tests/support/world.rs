//! A test's world: a temp dir with the stand-in deploy program, a config,
//! record dirs; and what the server journaled and the stand-in recorded.

use std::collections::BTreeMap;
use std::path::PathBuf;

use redeploy_host::journal::{DeployRecord, DeployState, Journal, PostgresOptions};

use super::{deploy, free_port, wait_for, ServerProcess, TempDir};

/// As many deploys as [`World::deploys`] reads: more than any test makes.
const MAX_DEPLOYS: usize = 100_000;

/// A test's world: a temp dir with the stand-in, a config, record dirs.
pub struct World {
    pub dir: TempDir,
    pub config: PathBuf,
    /// The PostgreSQL journal's URL, when the world's journal is one.
    pub journal_url: Option<String>,
}

impl World {
    /// Writes the stand-in and a config made of `[server]` settings plus `stacks_toml`.
    /// In `stacks_toml`, `@RECORD:<name>@` becomes a record dir and `@STANDIN@` the program.
    pub fn new(name: &str, server_toml: &str, stacks_toml: &str) -> World {
        World::with_journal(name, server_toml, stacks_toml, None)
    }

    /// [`World::new`] with its journal in a fresh database of the test
    /// process's PostgreSQL cluster.
    pub fn on_postgres(name: &str, server_toml: &str, stacks_toml: &str) -> World {
        let url = super::postgres::shared().database(name);
        World::with_journal(name, server_toml, stacks_toml, Some(url))
    }

    /// [`World::new`] with its journal at `journal_url` (PostgreSQL), or
    /// the SQLite file in its state directory.
    pub fn with_journal(
        name: &str,
        server_toml: &str,
        stacks_toml: &str,
        journal_url: Option<String>,
    ) -> World {
        let dir = TempDir::new(name);
        let standin = dir.join("standin.sh");
        deploy::write_executable(&standin, deploy::STAND_IN);
        let mut stacks = stacks_toml
            .replace("@STANDIN@", standin.to_str().unwrap())
            .replace("@DIR@", dir.0.to_str().unwrap());
        while let Some(start) = stacks.find("@RECORD:") {
            let end = start + stacks[start..].find("@").unwrap() + 1;
            let end = end + stacks[end..].find('@').unwrap() + 1;
            let label = &stacks[start + 8..end - 1];
            let rec = dir.join(&format!("record-{label}"));
            std::fs::create_dir_all(&rec).unwrap();
            stacks.replace_range(start..end, rec.to_str().unwrap());
        }
        let config = dir.join("redeploy.toml");
        let journal = match &journal_url {
            Some(url) => format!("[journal]\nurl = \"{url}\"\n\n"),
            None => String::new(),
        };
        std::fs::write(
            &config,
            format!("[server]\nstate_dir = \"state\"\n{server_toml}\n\n{journal}{stacks}"),
        )
        .unwrap();
        World {
            dir,
            config,
            journal_url,
        }
    }

    /// A world of `stacks` with `[server]` settings `server_toml`, and its
    /// server started.
    pub fn serving(
        name: &str,
        server_toml: &str,
        stacks: &[super::Stack],
    ) -> (World, ServerProcess) {
        let world = World::new(name, server_toml, &super::stacks::toml(stacks));
        let server = world.start(&[]);
        (world, server)
    }

    /// The record dir of a stack label.
    pub fn record(&self, label: &str) -> PathBuf {
        self.dir.join(&format!("record-{label}"))
    }

    /// Starts the server on a free port.
    pub fn start(&self, extra: &[&str]) -> ServerProcess {
        self.start_env(extra, &[])
    }

    /// Starts the server on a free port with extra environment variables.
    pub fn start_env(&self, extra: &[&str], env: &[(&str, &str)]) -> ServerProcess {
        self.start_on(free_port(), extra, env)
    }

    /// Gives the world's state directory, if it does not exist yet, the
    /// warm compiled-component cache a first server start gives it
    /// ([`super::warm::prime`]): for a world whose hook or read-only
    /// commands (`install-hook`, `check`) run before any server does.
    pub fn warm(&self) {
        super::warm::prime(&self.dir.join("state"));
    }

    /// Starts the server on `port` with extra environment variables.
    pub fn start_on(&self, port: u16, extra: &[&str], env: &[(&str, &str)]) -> ServerProcess {
        let log = self.dir.join("server.log");
        self.warm();
        ServerProcess::start_env(&self.config, port, extra, log, env)
    }

    /// The journal: the SQLite file read-only, or the PostgreSQL database.
    pub fn journal(&self) -> Journal {
        match &self.journal_url {
            Some(url) => Journal::open_postgres(&PostgresOptions::new(url)).unwrap(),
            None => Journal::open_read_only(&Journal::path_in(&self.dir.join("state"))).unwrap(),
        }
    }

    /// One SQL query's single value from the journal's database, opened
    /// read-only (for what the journal's API does not show).
    pub fn query_journal<T: rusqlite::types::FromSql>(&self, sql: &str) -> T {
        let path = Journal::path_in(&self.dir.join("state"));
        let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY;
        let conn = rusqlite::Connection::open_with_flags(path, flags).unwrap();
        conn.query_row(sql, [], |r| r.get(0)).unwrap()
    }

    /// Every deploy, oldest first.
    pub fn deploys(&self) -> Vec<DeployRecord> {
        let mut d = self.journal().deploys(None, MAX_DEPLOYS).unwrap();
        d.reverse();
        d
    }

    /// Waits until no deploy is queued or started.
    pub fn settle(&self, secs: u64) -> Vec<DeployRecord> {
        wait_for(secs, "deploys to finish", || {
            let d = self.deploys();
            d.iter().all(|r| r.state.is_final()).then_some(d)
        })
    }

    /// Waits until the stand-in of stack `label` has started more than
    /// `n` deploys.
    pub fn wait_ran_more_than(&self, label: &str, n: usize, secs: u64) {
        wait_for(
            secs,
            &format!("deploy #{} of {label} to start", n + 1),
            || (self.ran(label).len() > n).then_some(()),
        )
    }

    /// The env a recorded deploy saw.
    pub fn recorded_env(&self, label: &str, id: i64) -> BTreeMap<String, String> {
        std::fs::read_to_string(self.record(label).join(format!("{id}.env")))
            .unwrap()
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// Asserts that a recorded deploy saw each of `vars` with its value.
    #[track_caller]
    pub fn assert_env(&self, label: &str, id: i64, vars: &[(&str, &str)]) {
        let env = self.recorded_env(label, id);
        for (k, v) in vars {
            assert_eq!(env.get(*k).map(String::as_str), Some(*v), "{k} in {env:#?}");
        }
    }

    /// The deploy ids a stand-in ran, in order.
    pub fn ran(&self, label: &str) -> Vec<String> {
        std::fs::read_to_string(self.record(label).join("timeline"))
            .unwrap_or_default()
            .lines()
            .filter(|l| l.starts_with("start "))
            .map(|l| l.to_string())
            .collect()
    }

    /// What the server logged in this world.
    pub fn server_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap()
    }

    /// Writes the GitHub API token file a stack's `token_file =
    /// "@DIR@/gh-token"` names.
    pub fn write_gh_token(&self, token: &str) {
        std::fs::write(self.dir.join("gh-token"), token).unwrap();
    }
}

/// Asserts that every deploy succeeded.
#[track_caller]
pub fn assert_all_succeeded(deploys: &[DeployRecord]) {
    assert!(
        deploys.iter().all(|d| d.state == DeployState::Succeeded),
        "{deploys:#?}"
    );
}
