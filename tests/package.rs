//! The Debian package (issue 14): built by `cargo deb --no-build` from the
//! release binary this test run already built (no second compile), installed
//! with `dpkg -i`, checked as an administrator would (files, owners, modes,
//! the system user, `redeploy --version`, `systemd-analyze verify`, the
//! packaged config read by `config check` and by a real `serve` as the
//! `redeploy` user), then purged. Needs root, `cargo-deb`, `dpkg` and
//! `systemd-analyze` (`.ci/run` installs what is missing); without one it
//! fails with the command that installs it.

use std::os::unix::fs::MetadataExt as _;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;

use crate::support::cli::{stderr, stdout};
use crate::support::{free_port, http, redeploy_bin, wait_for, workspace, TempDir};

/// The Debian package's name (`[package.metadata.deb] name`).
const PACKAGE: &str = "redeploy";

/// The system user the package creates.
const USER: &str = "redeploy";

/// Where the package puts the unit.
const UNIT: &str = "/usr/lib/systemd/system/redeploy.service";

fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"))
}

#[track_caller]
fn ok(out: Output) -> String {
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    stdout(&out)
}

fn installed() -> bool {
    let out = run("dpkg-query", &["-W", "-f=${Status}", PACKAGE]);
    stdout(&out).contains("install ok installed")
}

fn user_exists(name: &str) -> bool {
    run("getent", &["passwd", name]).status.success()
}

/// Purges the package and, if this test created it, the `redeploy` user,
/// however the test ends.
struct Installed {
    user_was_there: bool,
}

impl Drop for Installed {
    fn drop(&mut self) {
        let _ = run("dpkg", &["--purge", PACKAGE]);
        if !self.user_was_there && user_exists(USER) {
            let _ = run("userdel", &[USER]);
            let _ = run("groupdel", &[USER]);
        }
    }
}

/// The owner, group and permission bits of `path`.
fn owner_mode(path: &str) -> (String, String, u32) {
    let meta = std::fs::metadata(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let name = |id: u32, db: &str| {
        let out = ok(run("getent", &[db, &id.to_string()]));
        out.split(':').next().unwrap().to_string()
    };
    (
        name(meta.uid(), "passwd"),
        name(meta.gid(), "group"),
        meta.mode() & 0o7777,
    )
}

/// The target directory the test binary's `redeploy` was built in
/// (`<target>/release/redeploy`), so `cargo deb --no-build` packages that
/// very file whatever `CARGO_TARGET_DIR` says.
fn target_dir() -> PathBuf {
    let bin = redeploy_bin();
    let release = bin.parent().unwrap();
    assert_eq!(
        release.file_name().unwrap(),
        "release",
        "{}: the package is built from the release build (cargo test --release)",
        bin.display()
    );
    release.parent().unwrap().to_path_buf()
}

/// Builds the package into `out` and returns its path.
fn build_package(out: &Path) -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let version = Command::new(&cargo).args(["deb", "--version"]).output();
    assert!(
        version.as_ref().is_ok_and(|o| o.status.success()),
        "cargo-deb is missing: cargo install cargo-deb --locked --no-default-features"
    );
    let started = Instant::now();
    let built = Command::new(&cargo)
        .current_dir(workspace())
        .env("CARGO_TARGET_DIR", target_dir())
        .args([
            "deb",
            "-p",
            "redeploy-host",
            "--no-build",
            "--strip",
            "--output",
        ])
        .arg(out)
        .output()
        .unwrap();
    assert!(
        built.status.success(),
        "cargo deb failed: {}{}",
        stdout(&built),
        stderr(&built)
    );
    let deb = std::fs::read_dir(out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .expect("a .deb in the output directory");
    eprintln!(
        "package: {} ({} bytes) in {:.1}s",
        deb.display(),
        std::fs::metadata(&deb).unwrap().len(),
        started.elapsed().as_secs_f64()
    );
    deb
}

#[test]
fn the_debian_package_installs_a_working_service_and_purges_cleanly() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "the package test installs with dpkg: run the tests as root (CI does)"
    );
    assert!(
        !installed(),
        "a {PACKAGE} package is already installed here; the test would replace it: dpkg --purge {PACKAGE}"
    );
    let dir = TempDir::new("package");
    let deb = build_package(&dir.0);

    let guard = Installed {
        user_was_there: user_exists(USER),
    };
    ok(run("dpkg", &["-i", deb.to_str().unwrap()]));
    assert!(installed());

    // The files, their owners and modes.
    assert_eq!(
        owner_mode("/usr/bin/redeploy"),
        ("root".into(), "root".into(), 0o755)
    );
    assert_eq!(
        owner_mode("/etc/redeploy/redeploy.toml"),
        ("root".into(), USER.into(), 0o640)
    );
    assert_eq!(
        owner_mode("/var/lib/redeploy"),
        (USER.into(), USER.into(), 0o750)
    );
    assert_eq!(owner_mode(UNIT), ("root".into(), "root".into(), 0o644));
    // The unit is the one the README's manual install uses.
    assert_eq!(
        std::fs::read_to_string(UNIT).unwrap(),
        std::fs::read_to_string(workspace().join("examples/redeploy.service")).unwrap()
    );
    // The unit and the README agree on the command and the config path.
    let exec = "ExecStart=redeploy serve --config /etc/redeploy/redeploy.toml";
    let unit = std::fs::read_to_string(UNIT).unwrap();
    assert!(unit.contains(exec));
    // `systemctl reload redeploy` sends the SIGHUP `serve` reloads on.
    assert!(
        unit.contains("\nExecReload=/bin/kill -HUP $MAINPID\n"),
        "{unit}"
    );
    let readme = std::fs::read_to_string(workspace().join("README.md")).unwrap();
    assert!(readme.contains(&format!("`{exec}`")), "README: {exec}");
    // The binary's packed relocations need glibc 2.36's loader; the
    // package says so (dpkg-shlibdeps alone would say 2.34).
    let depends = ok(run("dpkg-query", &["-W", "-f=${Depends}", PACKAGE]));
    assert!(depends.contains("libc6 (>= 2.36)"), "{depends}");
    let conffiles = ok(run("dpkg-query", &["-W", "-f=${Conffiles}", PACKAGE]));
    assert!(
        conffiles.contains("/etc/redeploy/redeploy.toml"),
        "{conffiles}"
    );
    let config = std::fs::read_to_string("/etc/redeploy/redeploy.toml").unwrap();
    assert!(
        config
            .lines()
            .any(|l| l.trim() == "state_dir = \"/var/lib/redeploy\""),
        "{config}"
    );

    // A system user without a login shell.
    let passwd = ok(run("getent", &["passwd", USER]));
    let fields: Vec<&str> = passwd.trim().split(':').collect();
    let uid: u32 = fields[2].parse().unwrap();
    assert!(uid < 1000, "not a system user: {passwd}");
    assert_eq!(fields[5], "/var/lib/redeploy", "{passwd}");
    assert!(fields[6].ends_with("nologin"), "{passwd}");

    // The installed binary alone: the component is embedded in it.
    let version = ok(run("/usr/bin/redeploy", &["--version"]));
    assert_eq!(
        version.trim(),
        format!("redeploy {}", env!("CARGO_PKG_VERSION"))
    );
    let verify = run("systemd-analyze", &["verify", UNIT]);
    assert!(
        verify.status.success() && stderr(&verify).trim().is_empty(),
        "systemd-analyze verify {UNIT}: {}{}",
        stdout(&verify),
        stderr(&verify)
    );
    // The packaged config, at the default path, as the service's user.
    let check = ok(run(
        "runuser",
        &["-u", USER, "--", "/usr/bin/redeploy", "config", "check"],
    ));
    assert!(
        check.contains("/etc/redeploy/redeploy.toml: valid"),
        "{check}"
    );

    // `serve` as the unit runs it: its state lands in /var/lib/redeploy,
    // owned by the service's user.
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let gid: u32 = fields[3].parse().unwrap();
    let mut serve = Command::new("/usr/bin/redeploy")
        .args(["serve", "--listen", &addr])
        .uid(uid)
        .gid(gid)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(dir.join("serve.log")).unwrap())
        .spawn()
        .unwrap();
    wait_for(30, "the packaged server to answer /healthz", || {
        std::net::TcpStream::connect(&addr).ok()?;
        (http::request(&addr, "GET", "/healthz", &[], b"").status == 200).then_some(())
    });
    assert_eq!(
        owner_mode("/var/lib/redeploy/journal.sqlite3"),
        (USER.into(), USER.into(), 0o600)
    );
    assert_eq!(
        owner_mode("/var/lib/redeploy/cache"),
        (USER.into(), USER.into(), 0o700)
    );
    // SAFETY: kill sends SIGTERM to the server this test spawned.
    unsafe { libc::kill(serve.id() as i32, libc::SIGTERM) };
    let status = serve.wait().unwrap();
    let log = std::fs::read_to_string(dir.join("serve.log")).unwrap();
    assert!(status.success(), "{status}: {log}");

    // An upgrade (here the same package again) keeps what the
    // administrator chose for the state directory (private to its user;
    // one its group may write is refused) and the config.
    std::fs::set_permissions("/var/lib/redeploy", PermissionsExt::from_mode(0o700)).unwrap();
    std::fs::set_permissions(
        "/etc/redeploy/redeploy.toml",
        PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    ok(run("dpkg", &["-i", deb.to_str().unwrap()]));
    assert_eq!(
        owner_mode("/var/lib/redeploy"),
        (USER.into(), USER.into(), 0o700)
    );
    assert_eq!(
        owner_mode("/etc/redeploy/redeploy.toml"),
        ("root".into(), USER.into(), 0o600)
    );

    ok(run("dpkg", &["--purge", PACKAGE]));
    assert!(!installed());
    for gone in [
        "/usr/bin/redeploy",
        "/etc/redeploy/redeploy.toml",
        "/var/lib/redeploy",
        UNIT,
    ] {
        assert!(!Path::new(gone).exists(), "{gone} is left after a purge");
    }
    drop(guard);
}
