//! A warm compiled-component cache for the servers the tests start.
//!
//! `redeploy serve` compiles its component with Cranelift on a state
//! directory's first start (about 2 s of CPU) and caches the result in
//! `<state_dir>/cache`, keyed and tagged as `host/src/plugin/cache.rs`
//! says. Hundreds of tests each start a server on a fresh state directory,
//! which made that compile a large share of the suite's CPU time on a
//! two-core CI machine. So the test process compiles once, into a template
//! state directory of its own, by running the real server, and
//! [`prime`] copies the cache key and artifacts into a server's state
//! directory before its first start: the server then loads them exactly as
//! it does after a restart (the tag verifies with the copied key).
//!
//! Only a state directory that does not exist yet is primed: a test that
//! prepares its state directory itself (another owner, a file in the way
//! of `cache`, modes) gets exactly what it prepared, and the tests of the
//! cache itself (`tests/hostile/server.rs`, `tests/serve.rs`) still see
//! the server compile and write it.

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use super::{free_port, ServerProcess};

/// The template state directory, made once per test process.
fn template() -> &'static Path {
    static TEMPLATE: OnceLock<PathBuf> = OnceLock::new();
    TEMPLATE.get_or_init(make_template)
}

fn make_template() -> PathBuf {
    let base = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    remove_stale_templates(&base);
    let home = base.join(format!("warm-component-cache-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&home);
    std::fs::create_dir_all(&home).unwrap();
    let state = home.join("state");
    let port = free_port();
    let config = home.join("redeploy.toml");
    // A stack whose manual triggers are signed: `redeploy trigger` loads
    // the one-shot commands' engine (instances allocated on demand, where
    // `serve` pools them) to sign one, so the cache holds what that engine
    // needs too (today both engines share one artifact).
    std::fs::write(
        &config,
        format!(
            "[server]\nstate_dir = {state:?}\nlisten = \"127.0.0.1:{port}\"\n\n\
             [[stacks]]\nname = \"web\"\nimage = \"acme/web\"\ncommand = [\"true\"]\n\
             secrets = [\"warm-cache-secret\"]\nmanual = \"signed\"\n"
        ),
    )
    .unwrap();
    let server = ServerProcess::start(&config, port, &[], home.join("server.log"));
    server.terminate();
    // Nothing listens any more: the trigger fails after it signed, and the
    // signing wrote the one-shot artifact.
    let out = super::cli::redeploy(&["trigger", "web", "--config", config.to_str().unwrap()]);
    let artifacts = artifacts(&state.join("cache"));
    assert!(
        !artifacts.is_empty(),
        "the warm component cache was not written: {artifacts:?}\nserver log: {}\ntrigger: {}",
        std::fs::read_to_string(home.join("server.log")).unwrap_or_default(),
        super::cli::stderr(&out)
    );
    state
}

/// Removes the templates of test processes that are gone.
fn remove_stale_templates(base: &Path) {
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.strip_prefix("warm-component-cache-") else {
            continue;
        };
        if !Path::new("/proc").join(pid).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// The `.cwasm` files in a cache directory.
fn artifacts(cache: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(cache)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "cwasm"))
                .collect()
        })
        .unwrap_or_default()
}

/// Gives the state directory `state`, if it does not exist yet, the warm
/// cache: the directory (`0700`), its `cache.key` and `cache/` with the
/// compiled artifacts, private as the server makes them.
pub fn prime(state: &Path) {
    if state.exists() {
        return;
    }
    let template = template();
    let private_dir = |dir: &Path| {
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    };
    private_dir(state);
    private_dir(&state.join("cache"));
    let copy = |from: &Path, to: &Path| {
        std::fs::copy(from, to).unwrap_or_else(|e| panic!("{}: {e}", from.display()));
        std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o600)).unwrap();
    };
    copy(&template.join("cache.key"), &state.join("cache.key"));
    for artifact in artifacts(&template.join("cache")) {
        copy(
            &artifact,
            &state.join("cache").join(artifact.file_name().unwrap()),
        );
    }
}
