//! A deploy command run as a child process: its own process group, a clean
//! environment (only [`INHERITED_ENV`] and the stack's own variables, plus
//! the `REDEPLOY_*` ones, `REDEPLOY_PUSHER` among them: who pushed, as
//! journaled with the deploy), the event as JSON on stdin and in a private
//! file, its output (stdout and stderr through one pipe, in the order
//! written) into a capped private log, and a timeout after which
//! the whole group is stopped.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::AsyncWriteExt as _;
use tokio::sync::watch;

use super::{DeployEventJson, Failure, Stop};
use crate::journal::{DeployRecord, DeployState};

/// Environment variables a deploy command inherits from the server; all
/// others are dropped, so the server's secrets (secret and token variables)
/// never reach deploy commands or their logs.
pub const INHERITED_ENV: &[&str] = &[
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "LANG",
    "LC_ALL",
    "TZ",
    "SHELL",
    "TMPDIR",
    "DOCKER_HOST",
    "XDG_RUNTIME_DIR",
];

/// How to run one deploy's command.
pub struct CommandSpec<'a> {
    /// The program and its arguments.
    pub argv: &'a [String],
    /// The working directory.
    pub workdir: &'a Path,
    /// The stack's (and profile's) environment variables.
    pub env: &'a BTreeMap<String, String>,
    /// How long it may run before its process group is stopped.
    pub timeout: Duration,
    /// The deploy's log; the event file goes beside it.
    pub log_path: &'a Path,
    /// The most output the log keeps.
    pub max_log_bytes: u64,
}

/// How a deploy command ended.
enum Ended {
    Exited(std::io::Result<std::process::ExitStatus>),
    TimedOut,
    Stopped(Stop),
}

/// Runs `record`'s deploy command. `started` is told the process group id
/// once the command runs (the journal records it, so a runner that finds
/// the deploy left `started` by a dead one can stop the group); `stop`
/// leaving [`Stop::Run`] stops it: at shutdown with SIGTERM and a grace
/// period and on a lost lease with SIGKILL at once, recorded interrupted;
/// on an operator's cancel with SIGTERM and a grace period, recorded
/// cancelled.
pub async fn run(
    record: &DeployRecord,
    event: &DeployEventJson,
    spec: &CommandSpec<'_>,
    started: impl FnOnce(u32),
    mut stop: watch::Receiver<Stop>,
) -> Result<(), Failure> {
    let fail = Failure::failed;
    let log_path = spec.log_path;
    let log = crate::logfiles::create_private_file(log_path)
        .map_err(|e| fail(format!("cannot create log {}: {e}", log_path.display())))?;
    // The output goes through the runner, which keeps at most
    // `max_deploy_log_bytes` of it.
    let log = Arc::new(Mutex::new(crate::logfiles::CappedLog::new(
        log,
        spec.max_log_bytes,
    )));
    let event_file = event_file(log_path);
    crate::logfiles::write_private(&event_file, record.queued.event_json.as_bytes())
        .map_err(|e| fail(format!("cannot write event file: {e}")))?;

    // One pipe for stdout and stderr (as `2>&1`), so the log keeps the
    // order the command wrote in; two pipes read by two tasks could put an
    // error line before the output that led to it.
    let (output, output_writer) =
        std::io::pipe().map_err(|e| fail(format!("cannot create a pipe: {e}")))?;
    let output = tokio::net::unix::pipe::Receiver::from_owned_fd(output.into())
        .map_err(|e| fail(format!("cannot read the command's output: {e}")))?;
    let argv = spec.argv;
    // The command's PATH: the server's, or the stack's own.
    let path = spec
        .env
        .get("PATH")
        .map(std::ffi::OsString::from)
        .or_else(|| std::env::var_os("PATH"));
    // A bare name is looked up here, on that PATH, so that the command
    // starts with posix_spawn: std forks to look up a name on a PATH the
    // command is given. Not found, it is left to the command's start to
    // fail as it would have.
    let program = path
        .as_deref()
        .and_then(|p| find_program(&argv[0], p, spec.workdir))
        .unwrap_or_else(|| argv[0].clone().into());
    let start = |argv0: &std::ffi::OsStr, args: &[&std::ffi::OsStr]| {
        let mut cmd = tokio::process::Command::new(args[0]);
        cmd.arg0(argv0)
            .args(&args[1..])
            .args(&argv[1..])
            .current_dir(spec.workdir)
            .env_clear()
            .stdin(Stdio::piped())
            .stdout(output_writer.try_clone()?)
            .stderr(output_writer.try_clone()?)
            .process_group(0)
            .kill_on_drop(true);
        for key in INHERITED_ENV {
            if let Some(v) = std::env::var_os(key) {
                cmd.env(key, v);
            }
        }
        cmd.envs(spec.env);
        cmd.envs(deploy_env(record, event, &event_file));
        // The command holds this process's copies of the pipe's write
        // end, dropped with it here.
        cmd.spawn()
    };
    let spawned = match start(std::ffi::OsStr::new(&argv[0]), &[program.as_os_str()]) {
        // An executable file that is not a program (a script without a
        // `#!` line) is run by the shell, as execvp(3) runs it; posix_spawn
        // does not.
        Err(e) if e.raw_os_error() == Some(libc::ENOEXEC) => {
            let shell = std::ffi::OsStr::new(SCRIPT_SHELL);
            start(shell, &[shell, program.as_os_str()])
        }
        other => other,
    };
    // This process's own write end: dropped now, the log sees the end of
    // output when the child's close.
    drop(output_writer);
    let mut child = spawned.map_err(|e| {
        // The start fails the same way when the working directory is
        // missing: say which it is.
        match std::fs::metadata(spec.workdir) {
            Err(w) if w.kind() == std::io::ErrorKind::NotFound => fail(format!(
                "cannot start {:?}: its working directory {} is not there ({w})",
                argv[0],
                spec.workdir.display()
            )),
            Err(w) => fail(format!(
                "cannot start {:?}: its working directory {} cannot be reached ({w})",
                argv[0],
                spec.workdir.display()
            )),
            Ok(m) if !m.is_dir() => fail(format!(
                "cannot start {:?}: its working directory {} is not a directory",
                argv[0],
                spec.workdir.display()
            )),
            Ok(_) => fail(format!("cannot start {:?}: {e}", argv[0])),
        }
    })?;
    let pid = child.id();
    // It dies with this process ([`super::reaper`]) until it was waited
    // for (or this run is given up); a command that would not is not run.
    let watched = match pid.map(super::reaper::watch).transpose() {
        Ok(watched) => watched,
        Err(e) => {
            if let Some(pid) = pid {
                kill_group(pid, libc::SIGKILL);
            }
            let _ = child.wait().await;
            return Err(fail(format!(
                "cannot start the deploy commands' reaper, without which the command would outlive this process: {e}"
            )));
        }
    };
    let copier = tokio::spawn(crate::logfiles::copy_into(output, log));
    if let Some(pid) = pid {
        // The command leads its own process group (process_group(0)).
        started(pid);
    }
    if let Some(mut stdin) = child.stdin.take() {
        let json = record.queued.event_json.clone();
        tokio::spawn(async move {
            // A command that does not read stdin closes the pipe; that is fine.
            let _ = stdin.write_all(json.as_bytes()).await;
            let _ = stdin.shutdown().await;
        });
    }
    let ended = tokio::select! {
        status = child.wait() => Ended::Exited(status),
        _ = tokio::time::sleep(spec.timeout) => Ended::TimedOut,
        why = stop.wait_for(|s| *s != Stop::Run) => Ended::Stopped(why.map_or(Stop::Shutdown, |s| *s)),
    };
    let result = match ended {
        Ended::Exited(Ok(status)) if status.success() => Ok(()),
        Ended::Exited(Ok(status)) => Err(Failure {
            exit_code: status.code(),
            reason: match (
                status.code(),
                std::os::unix::process::ExitStatusExt::signal(&status),
            ) {
                (Some(c), _) => format!("exit code {c}"),
                (None, Some(signal)) => format!("killed by signal {signal}"),
                (None, None) => "killed by a signal".into(),
            },
            ends_as: DeployState::Failed,
        }),
        Ended::Exited(Err(e)) => Err(fail(format!("waiting for the deploy command: {e}"))),
        Ended::TimedOut => {
            kill_tree(&mut child, pid).await;
            Err(fail(format!(
                "{}{}",
                crate::journal::TIMED_OUT_REASON,
                humantime::format_duration(spec.timeout)
            )))
        }
        Ended::Stopped(Stop::LeaseLost) => {
            if let Some(pid) = pid {
                kill_group(pid, libc::SIGKILL);
            }
            let _ = child.wait().await;
            Err(Failure {
                exit_code: None,
                reason: LEASE_LOST_REASON.into(),
                ends_as: DeployState::Interrupted,
            })
        }
        Ended::Stopped(Stop::Cancelled) => {
            kill_tree(&mut child, pid).await;
            Err(Failure {
                exit_code: None,
                reason: super::CANCELLED_REASON.into(),
                ends_as: DeployState::Cancelled,
            })
        }
        Ended::Stopped(_) => {
            kill_tree(&mut child, pid).await;
            Err(Failure {
                exit_code: None,
                reason: super::SHUTDOWN_REASON.into(),
                ends_as: DeployState::Interrupted,
            })
        }
    };
    drop(watched);
    let _ = tokio::time::timeout(crate::logfiles::LOG_DRAIN_WAIT, async {
        let _ = copier.await;
    })
    .await;
    result
}

/// `program` found on `path` (a PATH value) as `execvp` would find it for
/// a command started in `workdir`: a name without a slash, in the first
/// directory of `path` that holds a file of that name this process may
/// execute (`faccessat(X_OK, AT_EACCESS)`, which also refuses a `noexec`
/// mount). The path is the entry joined with the name, as execvp builds
/// it (a relative entry stays relative: the start changes to `workdir`
/// before it executes it). `None` for a name with a slash (used as it is),
/// when the search reaches an empty entry (the working directory: left to
/// execvp, which searches it in its turn), or when not found.
fn find_program(
    program: &str,
    path: &std::ffi::OsStr,
    workdir: &Path,
) -> Option<std::path::PathBuf> {
    use std::os::unix::ffi::OsStrExt as _;
    if program.is_empty() || program.contains('/') {
        return None;
    }
    for dir in std::env::split_paths(path) {
        if dir.as_os_str().is_empty() {
            return None;
        }
        let candidate = dir.join(program);
        let seen = workdir.join(&candidate);
        let c_path = std::ffi::CString::new(seen.as_os_str().as_bytes()).ok()?;
        // SAFETY: a NUL-terminated path that outlives the call; no memory
        // is shared.
        let executable = unsafe {
            libc::faccessat(
                libc::AT_FDCWD,
                c_path.as_ptr(),
                libc::X_OK,
                libc::AT_EACCESS,
            ) == 0
        };
        if executable && std::fs::metadata(&seen).is_ok_and(|m| m.is_file()) {
            return Some(candidate);
        }
    }
    None
}

/// The file beside a deploy's log that holds its event, named to the
/// command by `REDEPLOY_EVENT_FILE`.
pub fn event_file(log_path: &Path) -> std::path::PathBuf {
    log_path.with_extension("event.json")
}

/// The `REDEPLOY_EVENT_FILE=...` entry in the environment of every process
/// of the deploy whose log is `log_path` (children inherit it): recovery
/// finds a deploy's processes by it when their group was never recorded.
pub fn event_file_env(log_path: &Path) -> String {
    format!("{EVENT_FILE_VAR}={}", event_file(log_path).display())
}

/// The shell that runs an executable file that is not a program (a script
/// without a `#!` line), as execvp(3) runs it.
const SCRIPT_SHELL: &str = "/bin/sh";

/// The variable that names a deploy's event file.
const EVENT_FILE_VAR: &str = "REDEPLOY_EVENT_FILE";

/// Why a deploy stopped when its runner lost the stack's lease.
pub const LEASE_LOST_REASON: &str = "stopped: this runner could not renew the stack's lease in \
     the journal in time, so another replica may run the stack's next deploy";

/// Kills a deploy's whole process group: SIGTERM, then SIGKILL after [`crate::supervise::KILL_GRACE`].
async fn kill_tree(child: &mut tokio::process::Child, pid: Option<u32>) {
    let Some(pid) = pid else { return };
    kill_group(pid, libc::SIGTERM);
    if tokio::time::timeout(crate::supervise::KILL_GRACE, child.wait())
        .await
        .is_err()
    {
        kill_group(pid, libc::SIGKILL);
        let _ = child.wait().await;
    }
    // Children of the command may outlive it; the group takes them too.
    kill_group(pid, libc::SIGKILL);
}

fn kill_group(pid: u32, signal: i32) {
    // SAFETY: kill(2) with a negative pid signals the process group the
    // child leads (it was started with process_group(0)); no memory is shared.
    unsafe {
        libc::kill(-(pid as i32), signal);
    }
}

/// The `REDEPLOY_*` environment of a deploy command.
pub fn deploy_env(
    record: &DeployRecord,
    event: &DeployEventJson,
    event_file: &Path,
) -> Vec<(String, String)> {
    let mut env = vec![
        ("REDEPLOY_DEPLOY_ID".to_string(), record.id.to_string()),
        ("REDEPLOY_STACK".to_string(), record.queued.stack.clone()),
        (
            "REDEPLOY_SERVICES".to_string(),
            record.queued.services.join(","),
        ),
        (
            "REDEPLOY_PROVIDER".to_string(),
            record.queued.provider.clone(),
        ),
        ("REDEPLOY_REASON".to_string(), record.queued.reason.clone()),
        (EVENT_FILE_VAR.to_string(), event_file.display().to_string()),
    ];
    let optional = [
        ("REDEPLOY_PROFILE", record.queued.profile.clone()),
        ("REDEPLOY_REF", record.queued.git_ref.clone()),
        ("REDEPLOY_BRANCH", event.branch.clone()),
        ("REDEPLOY_TAG", event.tag.clone()),
        ("REDEPLOY_SHA", record.queued.sha.clone()),
        ("REDEPLOY_REPOSITORY", event.repository.clone()),
        ("REDEPLOY_IMAGE", event.image.clone()),
        ("REDEPLOY_DELIVERY", record.queued.delivery_id.clone()),
        ("REDEPLOY_PUSHER", record.queued.pusher.clone()),
    ];
    for (k, v) in optional {
        env.push((k.to_string(), v.unwrap_or_default()));
    }
    env
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn a_bare_name_is_found_as_execvp_would_find_it() {
        let root =
            std::env::temp_dir().join(format!("redeploy-find-program-{}", std::process::id()));
        let (work, first, second) = (root.join("work"), root.join("first"), root.join("second"));
        for dir in [&work, &first, &second, &work.join("bin")] {
            std::fs::create_dir_all(dir).unwrap();
        }
        let file = |path: std::path::PathBuf, mode: u32| {
            std::fs::write(&path, "#!/bin/sh\n").unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            path
        };
        // Not executable in the first directory, executable in the second.
        file(first.join("tool"), 0o644);
        let tool = file(second.join("tool"), 0o755);
        file(work.join("bin").join("local"), 0o755);
        file(work.join("here"), 0o755);
        std::fs::create_dir_all(first.join("dir")).unwrap();
        let path =
            std::env::join_paths([&first, &second, Path::new("bin"), Path::new("")]).unwrap();

        assert_eq!(find_program("tool", &path, &work), Some(tool));
        // A relative entry stays relative, taken from the working directory.
        assert_eq!(
            find_program("local", &path, &work),
            Some(Path::new("bin").join("local"))
        );
        // Found only through the empty entry: left to execvp.
        assert_eq!(find_program("here", &path, &work), None);
        // A directory is not a program; a name with a slash is used as it is.
        assert_eq!(find_program("dir", &path, &work), None);
        assert_eq!(find_program("./here", &path, &work), None);
        assert_eq!(find_program("missing", &path, &work), None);
        assert_eq!(find_program("", &path, &work), None);
        // The working directory comes first: left to execvp, which would
        // take a `tool` there before the one in `second`.
        let cwd_first = std::env::join_paths([Path::new(""), &second]).unwrap();
        assert_eq!(find_program("tool", &cwd_first, &work), None);
        std::fs::remove_dir_all(&root).unwrap();
    }
}
