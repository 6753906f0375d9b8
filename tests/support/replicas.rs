//! Replicas of `redeploy serve` sharing one PostgreSQL journal, for the
//! cluster tests (`tests/cluster.rs`, `tests/replicas.rs`): each with its
//! own configuration and state directory, stacks deploying with a stand-in
//! that records into one directory all replicas share, so that an overlap
//! across replicas is seen.

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::deliveries::{push_body, sha};
use super::deploy::write_executable;
use super::{free_port, hook, sig, token, ServerProcess, TempDir};

/// The stacks' shared secret.
pub const SECRET: &str = "replicas-s3cret";

/// The deploy command: records its start and end (nanoseconds, this
/// machine's clock) in `$RECORD_DIR/<stack>/timeline`, and an overlap with
/// another live deploy of its stack in `overlaps`. Its lock is a symbolic
/// link naming its process id, that process's start time (so a process id
/// reused by another process is told apart) and its deploy id, made
/// atomically: a link left by a command that was SIGKILLed (a fenced
/// deploy) names a dead process and is taken over, one naming a live
/// process is an overlap, recorded with the holder's deploy id. A SIGTERM
/// (its replica died: the parent-death signal; or recovery stopping it)
/// ends it at once, recorded as `term`, and leaves no link of its own.
pub const STAND_IN: &str = r#"#!/bin/sh
set -u
dir="$RECORD_DIR/$REDEPLOY_STACK"
id="$REDEPLOY_DEPLOY_ID"
# The start time of process $1 (field 22 of its stat; a shell's name has
# no space), or nothing when it is gone.
started() { cut -d' ' -f22 "/proc/$1/stat" 2>/dev/null; }
me="$$:$(started $$):$id"
locked=0
finish() {
  trap '' TERM
  # Stopped before it started its work: nothing to record, but no link
  # of its own left behind either.
  if [ "$locked" = 1 ]; then
    echo "end $id $(date +%s%N) $1" >> "$dir/timeline"
  fi
  [ "$(readlink "$dir/running")" = "$me" ] && rm -f "$dir/running"
  exit "$2"
}
trap 'finish term 143' TERM
if ! ln -s "$me" "$dir/running" 2>/dev/null; then
  holder=$(readlink "$dir/running")
  hpid=${holder%%:*}
  rest=${holder#*:}
  if [ -n "$hpid" ] && [ -n "$rest" ] && [ "$(started "$hpid")" = "${rest%%:*}" ]; then
    echo "$id overlaps deploy ${rest#*:} (pid $hpid)" >> "$dir/overlaps"
  else
    rm -f "$dir/running"
    ln -s "$me" "$dir/running" 2>/dev/null || echo "$id overlaps a new holder" >> "$dir/overlaps"
  fi
fi
echo "start $id $(date +%s%N)" >> "$dir/timeline"
locked=1
sleep "$SLEEP" &
wait $!
finish ok 0
"#;

/// One replica: its configuration (own state directory, the shared
/// database) and its port, which it keeps across restarts.
pub struct Replica {
    /// Its configuration file.
    pub config: PathBuf,
    /// Its port on loopback.
    pub port: u16,
    /// Its log.
    pub log: PathBuf,
}

impl Replica {
    /// Starts it (on its port, again after a kill).
    pub fn start(&self) -> ServerProcess {
        super::warm::prime(&self.config.parent().unwrap().join("state"));
        ServerProcess::start_env(&self.config, self.port, &[], self.log.clone(), &[])
    }

    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

/// A replica named `name` in `dir` on journal `url`, with `[server]`
/// lines `server` and `[journal]` lines `journal`, running `stacks` (name,
/// hook token number, the stand-in's sleep in seconds) with [`STAND_IN`]
/// recording into `dir/record/<stack>`.
pub fn replica(
    dir: &TempDir,
    name: &str,
    url: &str,
    server: &str,
    journal: &str,
    stacks: &[(&str, u32, &str)],
) -> Replica {
    replica_with_tables(dir, name, url, server, journal, stacks, "")
}

/// `[stacks.github]` reporting to GitHub deployments of acme/web through
/// the API at `api_url` with the token in `token_file`, deploying on the
/// push ("direct": `wait_for_event = false`); the environment is the
/// stack's name.
pub fn github_table(api_url: &str, token_file: &Path) -> String {
    format!(
        "[stacks.github]\nrepository = \"acme/web\"\napi_url = {api_url:?}\n\
         token_file = {:?}\nwait_for_event = false\n",
        token_file.to_str().unwrap()
    )
}

/// A [`replica`] whose every stack also has the sub-tables `tables`
/// (their headers included), e.g. [`github_table`].
pub fn replica_with_tables(
    dir: &TempDir,
    name: &str,
    url: &str,
    server: &str,
    journal: &str,
    stacks: &[(&str, u32, &str)],
    tables: &str,
) -> Replica {
    let standin = dir.join("standin.sh");
    if !standin.exists() {
        write_executable(&standin, STAND_IN);
    }
    let record = dir.join("record");
    let mut toml = String::new();
    for (stack, n, sleep) in stacks {
        std::fs::create_dir_all(record.join(stack)).unwrap();
        toml.push_str(&format!(
            "\n[[stacks]]\nname = \"{stack}\"\nrepository = \"acme/web\"\nbranch = \"main\"\n\
             hook_token = {:?}\nsecrets = [{SECRET:?}]\ncommand = [{:?}]\ntimeout = \"5m\"\n\
             env = {{ RECORD_DIR = {:?}, SLEEP = {sleep:?} }}\n{tables}",
            token(*n),
            standin.to_str().unwrap(),
            record.to_str().unwrap(),
        ));
    }
    let home = dir.join(name);
    std::fs::create_dir_all(&home).unwrap();
    let config = home.join("redeploy.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nstate_dir = \"state\"\n{server}\n\n[journal]\nurl = {url:?}\n{journal}\n{toml}"
        ),
    )
    .unwrap();
    Replica {
        config,
        port: free_port(),
        log: home.join("server.log"),
    }
}

/// A signed push of commit `n` with delivery id `delivery` to the hook of
/// token `token_n` at `addr`: the status, or `None` when the connection
/// failed or closed without an answer (a replica killed meanwhile).
pub fn try_push(addr: &str, token_n: u32, n: usize, delivery: &str) -> Option<u16> {
    let body = push_body(&sha(n));
    let signature = sig(SECRET, &body);
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    let head = format!(
        "POST {} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n\
         X-GitHub-Event: push\r\nX-GitHub-Delivery: {delivery}\r\n\
         X-Hub-Signature-256: {signature}\r\nContent-Type: application/json\r\n\r\n",
        hook(token_n),
        body.len()
    );
    s.write_all(head.as_bytes()).ok()?;
    s.write_all(&body).ok()?;
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    let line = String::from_utf8_lossy(&answer);
    line.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
}

/// The deploys of `stack` whose stand-in started, in the order they did.
pub fn started(record: &Path, stack: &str) -> Vec<i64> {
    std::fs::read_to_string(record.join(stack).join("timeline"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.strip_prefix("start "))
        .map(|l| l.split_whitespace().next().unwrap().parse().unwrap())
        .collect()
}
