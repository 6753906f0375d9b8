//! Who may write the state directory (issue 14): a command run as another
//! user than the state directory's owner (root, typically) is refused
//! before it creates anything there, and a journal this user cannot open
//! says who owns it and who is running, never SQLite's "unable to open
//! database file". With a real throwaway system user, created and deleted
//! by each test; the tests run as root (CI does).

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
