//! Who may write the state directory (issue 14): a command run as another
//! user than the state directory's owner (root, typically) is refused
//! before it creates anything there, and a journal this user cannot open
//! says who owns it and who is running, never SQLite's "unable to open
//! database file". With a real throwaway system user, created and deleted
//! by each test; the tests run as root (CI does). And a state directory
//! its group or others may write is refused, whoever runs.

use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::Path;
use std::process::Output;

use crate::support::cli::{stderr, stdout};
use crate::support::users::SystemUser;
use crate::support::{redeploy_bin, Stack, World};

/// Runs `redeploy ARGS... --config CONFIG` as `user`.
fn redeploy_as(user: &SystemUser, world: &World, args: &[&str]) -> Output {
    let config = world.config.to_str().unwrap();
    let args: Vec<&str> = args.iter().copied().chain(["--config", config]).collect();
    user.run(&redeploy_bin(), &args)
}

fn chown(path: &Path, uid: u32) {
    std::os::unix::fs::chown(path, Some(uid), Some(0)).unwrap();
}

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[track_caller]
fn assert_refused(out: &Output, message: &str) {
    let err = stderr(out);
    assert!(!out.status.success(), "{}{err}", stdout(out));
    assert!(err.contains(message), "{err}");
    assert_eq!(err.lines().count(), 1, "one line, said once: {err}");
    assert_eq!(err.matches("owned by").count(), 1, "said once: {err}");
    assert!(
        !err.contains("unable to open database file") && !err.contains("error code 14"),
        "{err}"
    );
}

fn world(name: &str) -> World {
    World::new(
        name,
        "",
        &crate::support::stacks::toml(&[Stack::image("web", "acme/web", 1)]),
    )
}

#[test]
fn root_refuses_a_state_directory_owned_by_another_user_and_creates_nothing() {
    let user = SystemUser::new("own");
    let world = world("state-owner-root");
    let state = world.dir.join("state");
    std::fs::create_dir(&state).unwrap();
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o750)).unwrap();
    chown(&state, user.uid);

    for args in [&["hook-url", "web"][..], &["trigger", "web"][..]] {
        let out = world.redeploy(args);
        assert_refused(
            &out,
            &format!(
                "state directory {} is owned by {}; run as that user (sudo -u {} redeploy ...)",
                state.display(),
                user.name,
                user.name
            ),
        );
        assert_eq!(entries(&state), Vec::<String>::new(), "{args:?}");
    }

    // Its owner runs the same command, and owns what it creates.
    let out = redeploy_as(&user, &world, &["hook-url", "web"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let journal = std::fs::metadata(state.join("journal.sqlite3")).unwrap();
    assert_eq!(journal.uid(), user.uid);
    assert_eq!(journal.mode() & 0o777, 0o600);
}

#[test]
fn a_journal_owned_by_another_user_names_its_owner_and_who_is_running() {
    let user = SystemUser::new("jrnl");
    let world = world("state-owner-journal");
    let state = world.dir.join("state");
    // Root's journal (as a command run as root left it before this check
    // existed) in the user's state directory.
    let out = world.redeploy(&["hook-url", "web"]);
    assert!(out.status.success(), "{}", stderr(&out));
    chown(&state, user.uid);

    let journal = state.join("journal.sqlite3");
    let out = redeploy_as(&user, &world, &["hook-url", "web"]);
    assert_refused(
        &out,
        &format!(
            "journal {}: permission denied: {} is owned by root (mode 0600), running as {}",
            journal.display(),
            journal.display(),
            user.name
        ),
    );
}

#[test]
fn a_state_directory_this_user_cannot_enter_names_its_owner_and_who_is_running() {
    let user = SystemUser::new("read");
    let world = world("state-owner-read");
    let state = world.dir.join("state");
    let out = world.redeploy(&["hook-url", "web"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        std::fs::metadata(&state).unwrap().mode() & 0o777,
        0o700,
        "the state directory is private"
    );

    let out = redeploy_as(&user, &world, &["history"]);
    assert_refused(
        &out,
        &format!(
            "permission denied: {} is owned by root (mode 0700), running as {}",
            state.display(),
            user.name
        ),
    );
}

#[test]
fn a_state_directory_its_group_or_others_may_write_is_refused_by_every_writing_command() {
    let world = world("state-open-to-others");
    let state = world.dir.join("state");
    std::fs::create_dir(&state).unwrap();
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o777)).unwrap();
    let message = format!(
        "state directory {d} has mode 0777: its group or others may write it, and so replace \
         the journal and the files it keeps; run chmod go-w {d}",
        d = state.display()
    );
    for args in [
        &["hook-url", "web"][..],
        &["trigger", "web"][..],
        &["run-queued", "--stack", "web"][..],
        &["post-receive"][..],
    ] {
        let out = world.redeploy(args);
        let err = stderr(&out);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}{err}",
            stdout(&out)
        );
        assert!(err.contains(&message), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: one line: {err}");
        assert_eq!(entries(&state), Vec::<String>::new(), "{args:?}");
    }
    // The server refuses before it listens, recovers or runs anything.
    let (status, err) = world.serve_refused(std::time::Duration::from_secs(60));
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(err.contains(&message), "{err}");
    assert_eq!(entries(&state), Vec::<String>::new());
    // Refused, never tightened behind the administrator's back.
    assert_eq!(std::fs::metadata(&state).unwrap().mode() & 0o7777, 0o777);

    // Once private, the same command runs.
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o750)).unwrap();
    let out = world.redeploy(&["hook-url", "web"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn a_state_directory_in_a_directory_others_may_write_is_refused_and_a_reload_after_a_chmod_too() {
    let world = World::new(
        "state-swappable",
        &format!("listen = \"127.0.0.1:{}\"", crate::support::free_port()),
        &crate::support::stacks::toml(&[Stack::image("web", "acme/web", 1)]),
    );
    // The world's config names `state`: a link into an open directory,
    // where whoever may write could rename the real one away.
    let open = world.dir.join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    crate::support::create_state_dir(&open.join("state"));
    std::os::unix::fs::symlink(open.join("state"), world.dir.join("state")).unwrap();
    let message = format!(
        "lies in {}, which has mode 0777: its group or others may rename the state directory",
        open.display()
    );
    for args in [&["hook-url", "web"][..], &["history"][..]] {
        let out = world.redeploy(args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(&message), "{args:?}: {err}");
        assert_eq!(
            entries(&open.join("state")),
            Vec::<String>::new(),
            "{args:?}"
        );
    }

    // Private all the way: the server starts. A chmod behind its back is
    // refused by the next reload, which `redeploy reload` reports.
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o755)).unwrap();
    let server = world.start(&[]);
    let state = open.join("state");
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o770)).unwrap();
    let out = world.redeploy(&["reload"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{}{err}", stdout(&out));
    assert!(
        err.contains("refused") && err.contains("has mode 0770: its group or others may write it"),
        "{err}"
    );
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o700)).unwrap();
    let out = world.redeploy(&["reload"]);
    assert!(out.status.success(), "{}", stderr(&out));
    server.terminate();
}

#[test]
fn serve_warns_of_a_state_directory_in_a_directory_another_user_owns() {
    let user = SystemUser::new("fanc");
    let world = World::new(
        "state-foreign-ancestor",
        &format!("listen = \"127.0.0.1:{}\"", crate::support::free_port()),
        &crate::support::stacks::toml(&[Stack::image("web", "acme/web", 1)]),
    );
    // Root's server, its state directory in the user's directory (as a
    // checkout in a home run by root): not refused, but said.
    let home = world.dir.join("home");
    std::fs::create_dir(&home).unwrap();
    std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o755)).unwrap();
    chown(&home, user.uid);
    crate::support::create_state_dir(&home.join("state"));
    std::os::unix::fs::symlink(home.join("state"), world.dir.join("state")).unwrap();
    let server = world.start(&[]);
    server.terminate();
    let log = world.server_log();
    assert!(
        log.contains("the state directory lies in a directory another user owns")
            && log.contains(&format!("ancestor={}", home.display()))
            && log.contains(&format!("owner={}", user.name)),
        "{log}"
    );
}
