//! redeploy beside a real git server (issue 14): Debian's `gitolite3`
//! with redeploy installed as its repo-specific `post-receive` hook by the
//! recipe in docs/gitolite.md, pushed to through gitolite's own entry point
//! (`gitolite-shell`, run as the hosting user the way its `authorized_keys`
//! forced command runs it, through `GIT_SSH_COMMAND`), so gitolite's access
//! rules and hook handling apply; and `install-hook` facing a gitolite
//! repository and a repository of another owner. Each test makes its own
//! throwaway system user (the tests run as root) and removes it after.

use std::path::{Path, PathBuf};
use std::process::Command;

use redeploy_host::journal::DeployState;

use crate::support::cli::stderr;
use crate::support::deploy::write_executable;
use crate::support::git::git_env;
use crate::support::stacks::toml;
use crate::support::users::SystemUser;
use crate::support::{redeploy_bin, Stack, World};

/// gitolite's SSH entry point in Debian's `gitolite3`.
const GITOLITE_SHELL: &str = "/usr/share/gitolite3/gitolite-shell";

/// A gitolite server in a test's world: its hosting user, and the script
/// git reaches it through as one of its users.
struct Gitolite {
    host: SystemUser,
    ssh: PathBuf,
}

impl Gitolite {
    /// Sets gitolite up (`gitolite setup -a admin`) for a new hosting user
    /// whose home is `<world>/gitolite`.
    fn new(world: &World, tag: &str) -> Gitolite {
        assert!(
            Path::new(GITOLITE_SHELL).exists(),
            "{GITOLITE_SHELL} is missing: apt-get install -y gitolite3 (.ci/run does)"
        );
        let host = SystemUser::with_home(tag, &world.dir.join("gitolite"));
        let out = host.run(Path::new("/usr/bin/gitolite"), &["setup", "-a", "admin"]);
        assert!(out.status.success(), "gitolite setup: {}", stderr(&out));
        // What an `authorized_keys` line's forced command runs: gitolite's
        // shell as the hosting user, with the key's user name.
        let ssh = world.dir.join("gitolite-ssh");
        write_executable(
            &ssh,
            &format!(
                "#!/bin/sh\n# git runs: SCRIPT [options] HOST COMMAND\nfor last; do :; done\n\
                 exec runuser -u {user} -- env HOME={home} SSH_CONNECTION='127.0.0.1 1 127.0.0.1 22' \
                 SSH_ORIGINAL_COMMAND=\"$last\" {GITOLITE_SHELL} \"${{GL_TEST_USER:-admin}}\"\n",
                user = host.name,
                home = host.home.display()
            ),
        );
        Gitolite { host, ssh }
    }

    /// The path of gitolite's repository `name`.
    fn repository(&self, name: &str) -> PathBuf {
        self.host.home.join(format!("repositories/{name}.git"))
    }

    /// Runs git in `dir` as gitolite user `user`.
    fn git(&self, user: &str, dir: &Path, args: &[&str], may_fail: bool) -> (bool, String) {
        let ssh = self.ssh.to_str().unwrap();
        let env = [("GIT_SSH_COMMAND", ssh), ("GL_TEST_USER", user)];
        git_env(dir, args, &env, may_fail)
    }

    /// The recipe of docs/gitolite.md, steps 1 and 2: `LOCAL_CODE` and
    /// `repo-specific-hooks` in `~/.gitolite.rc`, and the hook that runs
    /// `redeploy post-receive` with `config`.
    fn install_redeploy_hook(&self, config: &Path) {
        let rc_path = self.host.home.join(".gitolite.rc");
        let rc = std::fs::read_to_string(&rc_path).unwrap();
        let mut edited = rc.clone();
        for (commented, enabled) in [
            (
                "# LOCAL_CODE                =>  \"$ENV{HOME}/local\",",
                "LOCAL_CODE                =>  \"$ENV{HOME}/local\",",
            ),
            ("# 'repo-specific-hooks',", "'repo-specific-hooks',"),
        ] {
            assert_eq!(edited.matches(commented).count(), 1, "{commented} in {rc}");
            edited = edited.replace(commented, enabled);
        }
        std::fs::write(&rc_path, edited).unwrap();
        let hooks = self.host.home.join("local/hooks/repo-specific");
        std::fs::create_dir_all(&hooks).unwrap();
        write_executable(
            &hooks.join("redeploy"),
            &format!(
                "#!/bin/sh\nexec '{}' post-receive --config '{}'\n",
                redeploy_bin().display(),
                config.display()
            ),
        );
        self.host.own(&self.host.home.join("local"));
    }

    /// Step 3: appends `conf` to `conf/gitolite.conf` in a clone of
    /// gitolite-admin and pushes it as the admin; returns the push's output.
    fn admin_push(&self, world: &World, conf: &str) -> String {
        let admin = world.dir.join("gitolite-admin");
        if !admin.exists() {
            self.git(
                "admin",
                &world.dir.0,
                &[
                    "clone",
                    "--quiet",
                    "git@localhost:gitolite-admin",
                    admin.to_str().unwrap(),
                ],
                false,
            );
        }
        let file = admin.join("conf/gitolite.conf");
        let mut text = std::fs::read_to_string(&file).unwrap();
        text.push_str(conf);
        std::fs::write(&file, text).unwrap();
        self.git(
            "admin",
            &admin,
            &["commit", "--quiet", "-am", "conf"],
            false,
        );
        self.git("admin", &admin, &["push", "origin", "HEAD"], false)
            .1
    }
}

/// gitolite's repository `app`: `admin` may push anything, `alice` only
/// branches under `dev/`; its post-receive hook is redeploy.
const APP_CONF: &str = "\nrepo app\n    RW+        = admin\n    RW+ dev/   = alice\n    \
                        option hook.post-receive = redeploy\n";

/// A world with stack `web` deploying `main` of gitolite's `app` (named
/// as its clone URL, so by gitolite's `GL_REPO`), gitolite set up with
/// the recipe, `app` created, and a clone of it in `<world>/work`.
fn gitolite_world(name: &str, tag: &str) -> (World, Gitolite, PathBuf) {
    let stack = Stack::new("web")
        .follows("git@localhost:app", "main")
        .standin();
    let world = World::new(name, "", &toml(&[stack]));
    let gitolite = Gitolite::new(&world, tag);
    // The hook runs as the hosting user: the state and the stand-in's
    // records are its to write.
    crate::support::create_state_dir(&world.dir.join("state"));
    gitolite.host.own(&world.dir.join("state"));
    gitolite.host.own(&world.record("web"));
    gitolite.install_redeploy_hook(&world.config);
    gitolite.admin_push(&world, APP_CONF);
    let work = world.dir.join("work");
    gitolite.git(
        "admin",
        &world.dir.0,
        &[
            "clone",
            "--quiet",
            "git@localhost:app",
            work.to_str().unwrap(),
        ],
        false,
    );
    gitolite.git(
        "admin",
        &work,
        &["checkout", "--quiet", "-b", "main"],
        false,
    );
    gitolite.git(
        "admin",
        &work,
        &["commit", "--quiet", "--allow-empty", "-m", "first"],
        false,
    );
    (world, gitolite, work)
}

#[test]
fn gitolite_refuses_a_push_to_main_by_a_user_without_rights_and_nothing_deploys() {
    let (world, gitolite, work) = gitolite_world("gitolite-refused", "glr");
    let (pushed, out) = gitolite.git("alice", &work, &["push", "origin", "main"], true);
    assert!(!pushed, "{out}");
    assert!(out.contains("W refs/heads/main app alice DENIED"), "{out}");
    assert!(!out.contains("redeploy:"), "the hook never ran: {out}");
    // Her own branch is hers to push; it does not deploy `main`'s stack.
    gitolite.git("alice", &work, &["branch", "dev/x"], false);
    let (_, out) = gitolite.git("alice", &work, &["push", "origin", "dev/x"], false);
    assert!(
        out.contains("remote: redeploy: web: not deploying: push to \"dev/x\" does not match branch \"main\""),
        "{out}"
    );
    // Nothing deployed: the hook never even opened the journal.
    let journal = redeploy_host::journal::Journal::path_in(&world.dir.join("state"));
    assert!(
        !journal.exists() || world.deploys().is_empty(),
        "nothing deployed"
    );
}

#[test]
fn gitolite_the_admins_push_to_main_deploys_once_with_the_pusher() {
    let (world, gitolite, work) = gitolite_world("gitolite-admin-push", "gla");
    let sha = git_env(&work, &["rev-parse", "HEAD"], &[], false)
        .1
        .trim()
        .to_string();
    let (_, out) = gitolite.git("admin", &work, &["push", "origin", "main"], false);
    assert!(
        out.contains("remote: redeploy: web: deploying (push to \"main\" of app matches branch \"main\"), deploy #1 on this host"),
        "{out}"
    );
    let deploys = world.settle(60);
    assert_eq!(deploys.len(), 1, "{deploys:#?}");
    assert_eq!(deploys[0].state, DeployState::Succeeded, "{deploys:#?}");
    assert_eq!(deploys[0].queued.pusher.as_deref(), Some("admin"));
    world.assert_env(
        "web",
        deploys[0].id,
        &[
            ("REDEPLOY_SHA", &sha),
            ("REDEPLOY_PUSHER", "admin"),
            ("REDEPLOY_REPOSITORY", "app"),
        ],
    );
}

#[test]
fn gitolite_the_hook_survives_a_gitolite_admin_push() {
    let (world, gitolite, work) = gitolite_world("gitolite-survives", "gls");
    let hooks = gitolite.repository("app").join("hooks");
    let before = std::fs::read_link(hooks.join("post-receive.h00-redeploy")).unwrap();
    // Another repository added: gitolite compiles its config again and
    // sets every repository's hooks anew.
    let out = gitolite.admin_push(&world, "\nrepo other\n    RW+ = admin\n");
    assert!(out.contains("Initialized empty Git repository"), "{out}");
    assert_eq!(
        std::fs::read_link(hooks.join("post-receive.h00-redeploy")).unwrap(),
        before
    );
    let (_, out) = gitolite.git("admin", &work, &["push", "origin", "main"], false);
    assert!(out.contains("remote: redeploy: web: deploying"), "{out}");
    let deploys = world.settle(60);
    assert_eq!(deploys.len(), 1, "{deploys:#?}");
    assert_eq!(deploys[0].state, DeployState::Succeeded);
}

#[test]
fn install_hook_refuses_a_gitolite_repository_with_the_recipe() {
    let world = World::new(
        "gitolite-install-hook",
        "",
        &toml(&[Stack::bare_repo("web", "main")]),
    );
    let gitolite = Gitolite::new(&world, "gli");
    let testing = gitolite.repository("testing");
    let out = world.redeploy(&["install-hook", testing.to_str().unwrap()]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    let first = err.lines().next().unwrap();
    assert!(
        first.starts_with(&format!(
            "redeploy: {} is managed by gitolite (it has gitolite's gl-conf file)",
            testing.display()
        )),
        "{err}"
    );
    for step in [
        "LOCAL_CODE => \"$ENV{HOME}/local\"",
        "'repo-specific-hooks'",
        "~/local/hooks/repo-specific/redeploy",
        &format!(
            "exec '{}' post-receive --config '{}'",
            redeploy_bin().display(),
            world.config.display()
        ),
        "under `repo testing`: option hook.post-receive = redeploy",
    ] {
        assert!(err.contains(step), "{step} in {err}");
    }
    assert!(
        !testing.join("hooks/post-receive").exists(),
        "nothing installed"
    );
}

/// A world whose stack `web` follows `main` of the bare repository
/// `app.git`, which belongs to a new user (tag `tag`); the world, the user
/// and the repository.
fn bare_repository_of_another_user(name: &str, tag: &str) -> (World, SystemUser, PathBuf) {
    let world = World::new(name, "", &toml(&[Stack::bare_repo("web", "main")]));
    let owner = SystemUser::with_home(tag, &world.dir.join("home"));
    let bare = world.dir.join("app.git");
    git_env(
        &world.dir.0,
        &["init", "--quiet", "--bare", bare.to_str().unwrap()],
        &[],
        false,
    );
    owner.own(&bare);
    (world, owner, bare)
}

#[test]
fn install_hook_passes_on_gits_dubious_ownership_message() {
    let (world, owner, bare) = bare_repository_of_another_user("install-hook-dubious", "gld");
    let out = Command::new(redeploy_bin())
        .args(["install-hook", bare.to_str().unwrap(), "--config"])
        .arg(&world.config)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.starts_with(&format!(
            "redeploy: {} belongs to {}, and git refuses it to root: fatal: detected dubious ownership in repository at '{}'",
            bare.display(),
            owner.name,
            bare.display()
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "install it as that user (sudo -u {} redeploy install-hook ...)",
            owner.name
        )),
        "{err}"
    );
    assert!(!err.contains("is not a git repository"), "{err}");
}

#[test]
fn install_hook_says_the_repositorys_owner_cannot_write_the_state_directory() {
    let (world, owner, bare) = bare_repository_of_another_user("install-hook-access", "glw");
    // A state directory root made, private to root.
    let state = world.dir.join("state");
    std::fs::create_dir_all(&state).unwrap();
    std::fs::set_permissions(&state, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let config = world.config.to_str().unwrap();
    let out = owner.run(
        &redeploy_bin(),
        &["install-hook", bare.to_str().unwrap(), "--config", config],
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(
        err.trim_end(),
        format!(
            "redeploy: the hook would fail: git runs it as {user}, the owner of {repo}, and \
             {user} cannot write {state} (owned by root:root, mode 0700); \
             {state} is owned by root, and redeploy uses a state directory only as its owner; \
             nothing was installed (give the hook's user a config with a state_dir of its own, \
             or give these to that user)",
            user = owner.name,
            repo = bare.display(),
            state = state.display()
        )
    );
    assert!(!bare.join("hooks/post-receive").exists());
    // Modes that let the hook's user write are not enough: the hook uses a
    // state directory only as its owner, and install-hook says so first.
    std::fs::set_permissions(&state, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let out = owner.run(
        &redeploy_bin(),
        &["install-hook", bare.to_str().unwrap(), "--config", config],
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!(
            "{} is owned by root, and redeploy uses a state directory only as its owner; \
             state directory {} has mode 0777: its group or others may write it",
            state.display(),
            state.display()
        )),
        "{err}"
    );
    assert!(!bare.join("hooks/post-receive").exists());
    // Given to the owner, and private again, the same command installs the hook.
    std::fs::set_permissions(&state, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    owner.own(&state);
    let out = owner.run(
        &redeploy_bin(),
        &["install-hook", bare.to_str().unwrap(), "--config", config],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(bare.join("hooks/post-receive").exists());
}
