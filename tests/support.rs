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

/// `../shared/fixtures` beside the workspace.
pub fn fixtures() -> PathBuf {
    let dir = workspace()
        .parent()
        .unwrap()
        .join("shared")
        .join("fixtures");
    assert!(
        dir.is_dir(),
        "fixtures not found at {}: the repository must sit beside shared/",
        dir.display()
    );
    dir
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

/// The `redeploy` binary built alongside this test binary.
pub fn redeploy_bin() -> PathBuf {
    // target/<profile>/deps/integration-xxxx -> target/<profile>/redeploy
    let exe = std::env::current_exe().unwrap();
    let bin = exe.parent().unwrap().parent().unwrap().join("redeploy");
    assert!(bin.exists(), "{} not found: build it with `cargo build --release -p redeploy-host` (the test command does)", bin.display());
    bin
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
