//! A running `redeploy serve`, started on loopback and killed on drop.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

use super::http;

/// How long a server may take to answer `/healthz` after its start.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A running `redeploy serve`, killed on drop.
pub struct ServerProcess {
    pub child: Child,
    pub addr: String,
    pub log: PathBuf,
}

impl ServerProcess {
    /// Starts `redeploy serve --config CONFIG --listen 127.0.0.1:PORT [extra...]`
    /// and waits until `/healthz` answers.
    pub fn start(config: &Path, port: u16, extra: &[&str], log: PathBuf) -> ServerProcess {
        ServerProcess::start_env(config, port, extra, log, &[])
    }

    /// [`ServerProcess::start`] with extra environment variables.
    pub fn start_env(
        config: &Path,
        port: u16,
        extra: &[&str],
        log: PathBuf,
        env: &[(&str, &str)],
    ) -> ServerProcess {
        let addr = format!("127.0.0.1:{port}");
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let child = Command::new(super::redeploy_bin())
            .args(["serve", "--config", config.to_str().unwrap()])
            .args(["--listen", &addr])
            .args(extra)
            .envs(env.iter().copied())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap();
        let server = ServerProcess { child, addr, log };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if std::net::TcpStream::connect(&server.addr).is_ok()
                && server.get("/healthz").status == 200
            {
                return server;
            }
            assert!(
                Instant::now() < deadline,
                "server did not start: {}",
                std::fs::read_to_string(&server.log).unwrap_or_default()
            );
            std::thread::sleep(super::POLL_INTERVAL);
        }
    }

    /// POSTs to a hook path.
    pub fn post(&self, path: &str, headers: &[(&str, &str)], body: &[u8]) -> http::Response {
        http::request(&self.addr, "POST", path, headers, body)
    }

    /// GETs a path.
    pub fn get(&self, path: &str) -> http::Response {
        http::request(&self.addr, "GET", path, &[], b"")
    }

    /// `http://<addr>`, for a client told where the server is (`--server`).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// What the server logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap()
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(mut self) -> ExitStatus {
        // SAFETY: plain kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let status = self.child.wait().unwrap();
        std::mem::forget(self);
        status
    }

    /// Sends SIGKILL and waits.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::mem::forget(self);
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The example configuration, `examples/redeploy.toml`.
pub fn example_config() -> PathBuf {
    super::workspace().join("examples/redeploy.toml")
}

/// A server of the example configuration on a free port, logging into `log`.
pub fn example_server(log: &super::TempDir) -> ServerProcess {
    let port = super::free_port();
    ServerProcess::start(&example_config(), port, &[], log.join("server.log"))
}
