//! Throwaway PostgreSQL clusters for the tests: `initdb` into a temporary
//! directory and `pg_ctl start` on a free loopback port, as the `postgres`
//! user when the tests run as root (PostgreSQL refuses to run as root).
//! Debian's `postgresql` package provides the binaries (`.ci/run` installs
//! it); nobody starts a database by hand.
//!
//! One cluster is shared by the whole test process ([`shared`]), each test
//! in a database of its own ([`Cluster::database`]); a test that stops or
//! kills its database starts a cluster of its own ([`Cluster::start`]).
//! Every cluster is stopped when dropped and, should the test process die
//! without unwinding, by a watchdog that outlives it by at most a second.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

use super::cli::{stderr, stdout};

/// The Unix user the server runs as when the tests run as root.
const SERVER_USER: &str = "postgres";

/// A running throwaway cluster.
pub struct Cluster {
    dir: PathBuf,
    bin: PathBuf,
    port: u16,
    next_db: AtomicU32,
}

/// The cluster this test process shares between its tests, started at the
/// first call.
pub fn shared() -> &'static Cluster {
    static SHARED: OnceLock<Cluster> = OnceLock::new();
    SHARED.get_or_init(|| Cluster::start("shared"))
}

impl Cluster {
    /// Creates and starts a cluster (about a second).
    pub fn start(tag: &str) -> Cluster {
        Cluster::start_configured(tag, |_| String::new())
    }

    /// Creates a cluster, lets `configure` put files into its data
    /// directory (they are given to the server's user) and return extra
    /// server options (`-c ssl=on ...`), and starts it.
    pub fn start_configured(tag: &str, configure: impl FnOnce(&Path) -> String) -> Cluster {
        let bin = server_bin();
        static STARTED: AtomicU32 = AtomicU32::new(0);
        // Under /tmp, not target/: the server's user must reach it.
        let dir = std::env::temp_dir().join(format!(
            "redeploy-pg-{tag}-{}-{}",
            std::process::id(),
            STARTED.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        if is_root() {
            run(Command::new("chown").arg(SERVER_USER).arg(&dir), "chown");
        }
        let cluster = Cluster {
            dir,
            bin,
            port: super::free_port(),
            next_db: AtomicU32::new(0),
        };
        run(
            cluster
                .as_server(&cluster.bin.join("initdb"))
                .arg("-D")
                .arg(cluster.data())
                // The C locale: initdb needs no locale installed on the
                // machine, and sorting is the same everywhere.
                .args([
                    "--auth=trust",
                    "-U",
                    "postgres",
                    "--no-sync",
                    "--locale=C",
                    "--encoding=UTF8",
                ]),
            "initdb",
        );
        let options = configure(&cluster.data());
        if is_root() {
            run(
                Command::new("chown")
                    .arg("-R")
                    .arg(SERVER_USER)
                    .arg(cluster.data()),
                "chown",
            );
        }
        std::fs::write(cluster.dir.join("options"), options).unwrap();
        cluster.pg_ctl_start();
        cluster.watch();
        cluster
    }

    /// Starts the (stopped) server again, on the same port.
    pub fn pg_ctl_start(&self) {
        run(
            self.as_server(&self.bin.join("pg_ctl"))
                .arg("-D")
                .arg(self.data())
                .arg("-o")
                .arg(format!(
                    "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off {}",
                    self.port,
                    self.dir.display(),
                    std::fs::read_to_string(self.dir.join("options")).unwrap_or_default()
                ))
                .arg("-l")
                .arg(self.dir.join("server.log"))
                .args(["-w", "start"]),
            "pg_ctl start",
        );
    }

    /// Stops the server at once (`-m immediate`: like a crash, no
    /// checkpoint); [`Cluster::pg_ctl_start`] starts it again.
    pub fn pg_ctl_stop(&self) {
        run(
            self.as_server(&self.bin.join("pg_ctl"))
                .arg("-D")
                .arg(self.data())
                .args(["-m", "immediate", "-w", "stop"]),
            "pg_ctl stop",
        );
    }

    /// A new, empty database (made over the Unix socket); returns its URL.
    pub fn database(&self, tag: &str) -> String {
        let name = format!(
            "t_{}_{}",
            tag.to_ascii_lowercase()
                .replace(|c: char| !c.is_ascii_alphanumeric(), "_"),
            self.next_db.fetch_add(1, Ordering::Relaxed)
        );
        run(
            Command::new(self.bin.join("createdb"))
                .arg("-h")
                .arg(&self.dir)
                .args(["-U", "postgres", "-p"])
                .arg(self.port.to_string())
                .arg(&name),
            "createdb",
        );
        self.url(&name)
    }

    /// The URL of database `name`.
    pub fn url(&self, name: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }

    /// Runs `sql` in database `name` with psql over the Unix socket (which
    /// trusts local users whatever `pg_hba.conf` asks of TCP clients);
    /// returns what it printed (unaligned, tuples only).
    pub fn psql(&self, name: &str, sql: &str) -> String {
        let out = Command::new(self.bin.join("psql"))
            .arg("-h")
            .arg(&self.dir)
            .args(["-U", "postgres", "-At", "-v", "ON_ERROR_STOP=1", "-p"])
            .arg(self.port.to_string())
            .args(["-d", name, "-c", sql])
            .output()
            .unwrap();
        assert!(out.status.success(), "psql {sql}: {}", stderr(&out));
        stdout(&out).trim_end().to_owned()
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// A command that runs as the server's user.
    fn as_server(&self, program: &Path) -> Command {
        if is_root() {
            let mut command = Command::new("runuser");
            command.args(["-u", SERVER_USER, "--"]).arg(program);
            command
        } else {
            Command::new(program)
        }
    }

    /// Starts the watchdog: a shell that waits for this test process to end
    /// and then stops the server and removes the directory.
    fn watch(&self) {
        let quote = |p: &Path| {
            shlex::try_quote(&p.display().to_string())
                .unwrap()
                .into_owned()
        };
        let pg_ctl = quote(&self.bin.join("pg_ctl"));
        let pg_ctl = if is_root() {
            format!("runuser -u {SERVER_USER} -- {pg_ctl}")
        } else {
            pg_ctl
        };
        let script = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 1; done; \
             {pg_ctl} -D {data} -m immediate stop; rm -rf {dir}",
            pid = std::process::id(),
            data = quote(&self.data()),
            dir = quote(&self.dir),
        );
        // Never waited for: it outlives this process by design (init reaps
        // it).
        #[allow(clippy::zombie_processes)]
        Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self
            .as_server(&self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(self.data())
            .args(["-m", "immediate", "-w", "stop"])
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The newest installed PostgreSQL's binaries (`/usr/lib/postgresql/N/bin`).
fn server_bin() -> PathBuf {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is installed (.ci/run installs Debian's postgresql)")
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version: u32 = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions
        .pop()
        .expect("an initdb under /usr/lib/postgresql/*/bin")
        .1
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Runs `command`, failing the test with its output if it fails.
fn run(command: &mut Command, what: &str) {
    let out = command.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        stdout(&out),
        stderr(&out)
    );
}
