//! Throwaway system users for the tests that run redeploy (or gitolite) as
//! another user than root: created with `useradd`, removed (with anything
//! they left running) when dropped. The tests run as root; CI does.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;

use super::cli::{stderr, stdout};

/// How often `useradd` is tried: another process on the machine may hold
/// the lock on /etc/passwd for a moment.
const USERADD_ATTEMPTS: u32 = 20;

/// `useradd` and `userdel` lock /etc/passwd: tests running at once take
/// turns.
static ACCOUNTS: Mutex<()> = Mutex::new(());

/// A system user made for one test.
pub struct SystemUser {
    /// Its name: `rd<tag><pid>`.
    pub name: String,
    /// Its uid.
    pub uid: u32,
    /// Its home (created), if it has one.
    pub home: PathBuf,
}

impl SystemUser {
    /// A user without a home (its home is `/nonexistent`) and no shell.
    pub fn new(tag: &str) -> SystemUser {
        SystemUser::create(tag, None)
    }

    /// A user with its home at `home` (created) and `/bin/sh`.
    pub fn with_home(tag: &str, home: &Path) -> SystemUser {
        SystemUser::create(tag, Some(home))
    }

    fn create(tag: &str, home: Option<&Path>) -> SystemUser {
        // SAFETY: geteuid has no preconditions.
        assert_eq!(
            unsafe { libc::geteuid() },
            0,
            "this test creates a system user: run the tests as root (CI does)"
        );
        let name = format!("rd{tag}{}", std::process::id());
        let _turn = ACCOUNTS.lock().unwrap_or_else(|e| e.into_inner());
        let _ = Command::new("userdel").args(["-f", &name]).output();
        let mut last = String::new();
        for _ in 0..USERADD_ATTEMPTS {
            let mut useradd = Command::new("useradd");
            useradd.arg("--system");
            match home {
                Some(home) => useradd
                    .args(["--create-home", "--shell", "/bin/sh", "--home-dir"])
                    .arg(home),
                None => useradd.args(["--no-create-home", "--shell", "/usr/sbin/nologin"]),
            };
            let out = useradd
                .arg(&name)
                .output()
                .expect("useradd (package passwd) is missing: apt-get install passwd");
            if out.status.success() {
                let uid = Command::new("id").args(["-u", &name]).output().unwrap();
                return SystemUser {
                    uid: stdout(&uid).trim().parse().unwrap(),
                    name,
                    home: home.map_or_else(|| PathBuf::from("/nonexistent"), Path::to_path_buf),
                };
            }
            last = stderr(&out);
            std::thread::sleep(std::time::Duration::from_millis(250));
        }
        panic!("useradd {name}: {last}");
    }

    /// Runs `program ARGS...` as this user, with its home as `HOME`.
    pub fn run(&self, program: &Path, args: &[&str]) -> Output {
        Command::new("runuser")
            .args(["-u", &self.name, "--", "env"])
            .arg(format!("HOME={}", self.home.display()))
            .arg(program)
            .args(args)
            .output()
            .expect("runuser (package util-linux) is missing: apt-get install util-linux")
    }

    /// Gives `path` (and all in it) to this user.
    pub fn own(&self, path: &Path) {
        let out = Command::new("chown")
            .arg("-R")
            .arg(&self.name)
            .arg(path)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
    }
}

impl Drop for SystemUser {
    fn drop(&mut self) {
        let _turn = ACCOUNTS.lock().unwrap_or_else(|e| e.into_inner());
        let _ = Command::new("pkill")
            .args(["-KILL", "-U", &self.name])
            .output();
        let _ = Command::new("userdel").args(["-f", &self.name]).output();
    }
}
