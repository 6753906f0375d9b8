//! `redeploy post-receive` inside a real git server: bare repositories
//! (SHA-1 and SHA-256) with the hook installed, a working clone that pushes,
//! and a stand-in deploy program. Both modes: running the deploys itself,
//! and handing them to a running `redeploy serve`.

use std::path::{Path, PathBuf};
use std::process::Command;

use redeploy_host::journal::DeployState;

use crate::support::cli::stderr;
use crate::support::deploy::write_executable;
use crate::support::git::git;
use crate::support::stacks::toml;
use crate::support::{free_port, wait_for, Stack, World};

/// A bare repository with the hook installed, and a clone of it.
struct Repo {
    bare: PathBuf,
    work: PathBuf,
}

/// Runs `redeploy install-hook` for the repository at `path`, the world's
/// state directory warmed first, as a server that ran would leave it (the
/// hook, and `install-hook`'s check, then load the compiled component).
fn install_hook(world: &World, path: &Path) -> std::process::Output {
    world.warm();
    world.redeploy(&["install-hook", path.to_str().unwrap()])
}

/// Creates (or initializes again) the bare repository `app.git` of the
/// world, with `main` its initial branch and `extra` options of `git init`.
fn init_bare(world: &World, extra: &[&str]) -> PathBuf {
    let bare = world.dir.join("app.git");
    let init = ["init", "--quiet", "--bare", "--initial-branch=main"];
    git(
        &world.dir.0,
        &[&init[..], extra, &[bare.to_str().unwrap()]].concat(),
    );
    bare
}

/// Creates the bare repository `app.git` in the world, installs the hook
/// and clones it.
fn setup(world: &World, object_format: &str) -> Repo {
    let bare = init_bare(world, &[&format!("--object-format={object_format}")]);
    let out = install_hook(world, &bare);
    assert!(out.status.success(), "{}", stderr(&out));
    let work = world.dir.join("work");
    git(
        &world.dir.0,
        &[
            "clone",
            "--quiet",
            bare.to_str().unwrap(),
            work.to_str().unwrap(),
        ],
    );
    git(&work, &["checkout", "--quiet", "-B", "main"]);
    Repo { bare, work }
}

fn commit(repo: &Repo, msg: &str) -> String {
    git(
        &repo.work,
        &["commit", "--quiet", "--allow-empty", "-m", msg],
    );
    git(&repo.work, &["rev-parse", "HEAD"]).trim().to_string()
}

fn push(repo: &Repo, args: &[&str]) -> String {
    let mut all = vec!["push", "origin"];
    all.extend_from_slice(args);
    git(&repo.work, &all)
}

/// "web" deploys `main` of `@DIR@/app.git`, "rel" its `v*` tags.
fn stacks() -> String {
    let rel = Stack::bare_repo("rel", "never-pushed").key("tags", "v*");
    toml(&[Stack::bare_repo("web", "main"), rel])
}

fn scenario(object_format: &str) {
    let world = World::new(&format!("post-receive-{object_format}"), "", &stacks());
    let repo = setup(&world, object_format);
    let hex_len = if object_format == "sha256" { 64 } else { 40 };

    let main1 = commit(&repo, "first");
    assert_eq!(main1.len(), hex_len);
    let out = push(&repo, &["main"]);
    assert!(out.contains("remote: redeploy: web: deploying"), "{out}");
    assert!(out.contains("remote: redeploy: rel: not deploying: push to \"main\" does not match branch \"never-pushed\""), "{out}");
    let first = wait_for(30, "the first deploy", || {
        world.deploys().into_iter().find(|d| d.state.is_final())
    });
    assert_eq!(first.state, DeployState::Succeeded);
    world.assert_env(
        "web",
        first.id,
        &[
            ("REDEPLOY_SHA", &main1),
            ("REDEPLOY_REF", "refs/heads/main"),
            ("REDEPLOY_PROVIDER", "post-receive"),
        ],
    );

    // Another branch does not deploy.
    git(&repo.work, &["checkout", "--quiet", "-b", "feature"]);
    commit(&repo, "feature work");
    let out = push(&repo, &["feature"]);
    assert!(out.contains("remote: redeploy: web: not deploying: push to \"feature\" does not match branch \"main\""), "{out}");

    // A tag deploys only the stack with a tag pattern.
    git(&repo.work, &["tag", "v1"]);
    let out = push(&repo, &["v1"]);
    assert!(
        out.contains(
            "remote: redeploy: web: not deploying: tag \"v1\" pushed; this stack deploys no tags"
        ),
        "{out}"
    );
    assert!(out.contains("remote: redeploy: rel: deploying"), "{out}");

    // A deletion deploys nothing.
    let out = push(&repo, &[":feature"]);
    assert!(
        out.contains("remote: redeploy: web: not deploying: push to \"feature\"")
            || out.contains("branch \"feature\" was deleted"),
        "{out}"
    );
    assert!(!out.contains("deploying ("), "{out}");

    // Three refs at once: main moves, a new branch, a new tag.
    git(&repo.work, &["checkout", "--quiet", "main"]);
    let main2 = commit(&repo, "second");
    git(&repo.work, &["branch", "f2"]);
    git(&repo.work, &["tag", "v2"]);
    let out = push(&repo, &["main", "f2", "v2"]);
    assert!(
        out.contains("remote: redeploy: web: deploying (push to \"main\""),
        "{out}"
    );
    assert!(
        out.contains("remote: redeploy: rel: deploying (tag \"v2\""),
        "{out}"
    );

    let deploys = world.settle(60);
    let web: Vec<_> = deploys.iter().filter(|d| d.queued.stack == "web").collect();
    let rel: Vec<_> = deploys.iter().filter(|d| d.queued.stack == "rel").collect();
    assert_eq!(web.len(), 2, "{deploys:#?}");
    assert_eq!(rel.len(), 2, "{deploys:#?}");
    assert!(
        deploys.iter().all(|d| d.state == DeployState::Succeeded),
        "{deploys:#?}"
    );
    assert_eq!(web[1].queued.sha.as_deref(), Some(main2.as_str()));
    assert_eq!(rel[1].queued.git_ref.as_deref(), Some("refs/tags/v2"));
    assert!(repo.bare.join("hooks/post-receive").exists());
}

#[test]
fn post_receive_deploys_from_a_sha1_repository() {
    scenario("sha1");
}

#[test]
fn post_receive_deploys_from_a_sha256_repository() {
    scenario("sha256");
}

#[test]
fn post_receive_hands_deploys_to_a_running_server() {
    let port = free_port();
    let hook = format!("[hook]\nserver = \"http://127.0.0.1:{port}\"\n");
    let world = World::new("post-receive-forward", "", &format!("{hook}{}", stacks()));
    let repo = setup(&world, "sha1");
    let server = world.start_on(port, &[], &[]);
    let sha = commit(&repo, "first");
    let out = push(&repo, &["main"]);
    assert!(
        out.contains(&format!(
            "remote: redeploy: web: deploying (push to \"main\" of {}",
            repo.bare.display()
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!("on http://127.0.0.1:{port}")),
        "{out}"
    );
    let deploys = world.settle(30);
    assert_eq!(deploys.len(), 1);
    assert_eq!(deploys[0].queued.sha.as_deref(), Some(sha.as_str()));
    assert_eq!(deploys[0].state, DeployState::Succeeded);
    let log = world.server_log();
    assert!(log.contains("deploy started"), "the server ran it: {log}");
    server.terminate();
}

/// `post-receive --server` with `[hook] wait = true` is refused before the
/// hook reads anything or opens the journal: with a server, the hook runs
/// nothing itself, so it could not wait.
#[test]
fn post_receive_with_a_server_refuses_a_configuration_that_waits() {
    let config = format!("[hook]\nwait = true\n{}", stacks());
    let world = World::new("post-receive-server-wait", "", &config);
    let server = format!("http://127.0.0.1:{}", free_port());
    let out = world.redeploy(&["post-receive", "--server", &server]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_eq!(
        stderr(&out),
        "redeploy: --server with [hook] wait = true: the hook hands each deploy to the server and returns; remove one of the two\n"
    );
    assert!(
        !world
            .dir
            .join("state")
            .join(redeploy_host::journal::FILE_NAME)
            .exists(),
        "nothing was journaled"
    );
}

#[test]
fn a_tag_deleted_and_pushed_again_at_its_commit_deploys_again() {
    // Deleting a release tag and pushing it again is how a release is
    // tried again: git's own hook, which nobody can replay, deploys it.
    let world = World::new("post-receive-tag-again", "", &stacks());
    let repo = setup(&world, "sha1");
    let sha = commit(&repo, "release");
    git(&repo.work, &["tag", "v1"]);
    let out = push(&repo, &["v1"]);
    assert!(out.contains("remote: redeploy: rel: deploying"), "{out}");
    world.settle(30);
    let out = push(&repo, &[":refs/tags/v1"]);
    assert!(out.contains("deletions never deploy"), "{out}");
    let out = push(&repo, &["v1"]);
    assert!(out.contains("remote: redeploy: rel: deploying"), "{out}");
    let deploys = world.settle(30);
    let rel: Vec<_> = deploys.iter().filter(|d| d.queued.stack == "rel").collect();
    assert_eq!(rel.len(), 2, "{deploys:#?}");
    for d in rel {
        assert_eq!(d.state, DeployState::Succeeded);
        assert_eq!(d.queued.sha.as_deref(), Some(sha.as_str()));
        assert_eq!(d.queued.git_ref.as_deref(), Some("refs/tags/v1"));
    }
}

#[test]
fn install_hook_keeps_and_chains_an_existing_hook_and_refuses_non_repositories() {
    let world = World::new("post-receive-chain", "", &stacks());
    let bare = init_bare(&world, &[]);
    let marker = world.dir.join("chained-ran");
    let old_hook = format!("#!/bin/sh\ncat > {}\n", marker.display());
    write_executable(&bare.join("hooks/post-receive"), &old_hook);
    let repo = setup(&world, "sha1");
    assert!(repo.bare.join("hooks/post-receive.chained").exists());
    let sha = commit(&repo, "first");
    let out = push(&repo, &["main"]);
    assert!(out.contains("remote: redeploy: web: deploying"), "{out}");
    let seen = std::fs::read_to_string(&marker).expect("the existing hook still runs");
    assert!(
        seen.contains(&sha) && seen.contains("refs/heads/main"),
        "{seen}"
    );
    world.settle(30);

    let not_repo = world.dir.join("plain");
    std::fs::create_dir_all(&not_repo).unwrap();
    let out = install_hook(&world, &not_repo);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("is not a git repository"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn install_hook_names_the_stacks_that_follow_the_repository_or_warns_of_none() {
    let world = World::new("post-receive-followers", "", &stacks());
    let bare = init_bare(&world, &[]);
    let out = install_hook(&world, &bare);
    assert!(out.status.success(), "{}", stderr(&out));
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    let seen_as = bare.canonicalize().unwrap();
    assert!(
        said.contains(&format!(
            "pushes to it (seen as {:?}) are evaluated for: web, rel",
            seen_as.display().to_string()
        )),
        "{said}"
    );
    assert!(!stderr(&out).contains("warning"), "{}", stderr(&out));

    // A repository no stack names: installed, with a warning.
    let other = world.dir.join("other.git");
    git(
        &world.dir.0,
        &["init", "--quiet", "--bare", other.to_str().unwrap()],
    );
    let out = install_hook(&world, &other);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(other.join("hooks/post-receive").exists());
    let warned = stderr(&out);
    assert!(
        warned.starts_with("warning: no stack in ") && warned.contains("follows this repository"),
        "{warned}"
    );
    assert!(
        warned.contains(&format!(
            "{:?}",
            other.canonicalize().unwrap().display().to_string()
        )),
        "{warned}"
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains("evaluated for"));
}

#[test]
fn install_hook_names_only_the_stacks_that_follow_the_name_the_hook_sees() {
    // web names the repository's path; api the forge name a `[hook]
    // repositories` entry may give it; lib another repository.
    let config = toml(&[
        Stack::bare_repo("web", "main"),
        Stack::new("api").follows("acme/app", "main").standin(),
        Stack::new("lib")
            .follows("@DIR@/other.git", "main")
            .standin(),
    ]);
    let world = World::new("post-receive-names", "", &config);
    let bare = init_bare(&world, &[]);
    let out = install_hook(&world, &bare);
    assert!(out.status.success(), "{}", stderr(&out));
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    let path = bare.canonicalize().unwrap().display().to_string();
    assert!(
        said.contains(&format!(
            "pushes to it (seen as {path:?}) are evaluated for: web\n"
        )),
        "{said}"
    );
    // Mapped to `acme/app`, every stack sees that name: api follows it,
    // web's path no longer matches.
    let mut text = std::fs::read_to_string(&world.config).unwrap();
    text.push_str(&format!(
        "\n[hook]\nrepositories = {{ {:?} = \"acme/app\" }}\n",
        bare.display().to_string()
    ));
    std::fs::write(&world.config, text).unwrap();
    let out = install_hook(&world, &bare);
    assert!(out.status.success(), "{}", stderr(&out));
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        said.contains("redeploy's hook was already installed; updated it"),
        "{said}"
    );
    assert!(
        said.contains("pushes to it (seen as \"acme/app\") are evaluated for: api\n"),
        "{said}"
    );
    assert!(!stderr(&out).contains("warning"), "{}", stderr(&out));
}

#[test]
fn install_hook_refuses_a_config_the_hook_would_refuse_at_every_push() {
    // The host reads `acme//web` as a string; the component's rules, which
    // the hook applies at every push, refuse it.
    let stacks = toml(&[
        Stack::bare_repo("web", "main"),
        Stack::new("img").key("image", "acme//web").standin(),
    ]);
    let world = World::new("post-receive-invalid", "", &stacks);
    let bare = init_bare(&world, &[]);
    let out = install_hook(&world, &bare);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let said = stderr(&out);
    assert!(
        said.starts_with("redeploy: nothing was installed: "),
        "{said}"
    );
    assert!(said.contains("\"acme//web\""), "{said}");
    assert!(!bare.join("hooks/post-receive").exists());
}

#[test]
fn without_a_server_a_github_cd_stack_creates_its_deployment_and_reports_each_phase() {
    use crate::github_standin::GithubStandin;
    const GH_TOKEN: &str = "ghp_post_receive_standin_token";
    let standin = GithubStandin::start(GH_TOKEN);
    let github = format!(
        "[stacks.github]\nrepository = \"acme/app\"\napi_url = {:?}\n\
         token_file = \"@DIR@/gh-token\"\nenvironment = \"production\"\nwait_for_event = false",
        standin.base_url()
    );
    let stacks = Stack::bare_repo("web", "main").table(&github).toml();
    let world = World::new("post-receive-github-cd", "", &stacks);
    world.write_gh_token(GH_TOKEN);
    let repo = setup(&world, "sha1");
    let sha = commit(&repo, "first");
    push(&repo, &["main"]);
    // The detached runner creates the deployment, deploys, and reports.
    let states = wait_for(60, "three statuses", || {
        let s = standin.statuses(1000);
        (s.len() >= 3).then_some(s)
    });
    assert_eq!(states, ["queued", "in_progress", "success"]);
    let create = standin
        .requests()
        .into_iter()
        .find(|r| r.operation == "POST /repos/{owner}/{repo}/deployments")
        .unwrap();
    let body = create.body.unwrap();
    assert_eq!(body["ref"], sha);
    assert_eq!(body["environment"], "production");
    let deploys = world.settle(30);
    assert_eq!(deploys.len(), 1);
    assert_eq!(deploys[0].state, DeployState::Succeeded);
    assert_eq!(deploys[0].queued.sha.as_deref(), Some(sha.as_str()));
    let requests = world.journal().deployment_requests(None, 10).unwrap();
    assert_eq!(requests[0].deployment_id, Some(1000));
    assert_eq!(standin.violations(), Vec::<String>::new());
}

#[test]
fn with_hook_wait_the_push_shows_the_deploy_and_a_failed_deploy_fails_the_hook() {
    // `[hook] wait = true`: the hook runs the deploy before git's push
    // returns, shows its log and state, and exits non-zero when it failed.
    let stack = Stack::bare_repo("web", "main").env("EXIT_CODE", "3");
    let world = World::new(
        "post-receive-wait",
        "",
        &format!("[hook]\nwait = true\n{}", toml(&[stack])),
    );
    let repo = setup(&world, "sha1");
    commit(&repo, "first");
    let out = Command::new("git")
        .current_dir(&repo.work)
        .args(["push", "origin", "main"])
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    // git reports a failed post-receive hook but keeps the push.
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("remote: redeploy: web: deploy #1 failed"),
        "{text}"
    );
    assert!(
        text.contains("remote: redeploy: deploy #1 of web failed (the push itself is kept)"),
        "{text}"
    );
    let deploys = world.deploys();
    assert_eq!(deploys.len(), 1, "{deploys:#?}");
    assert_eq!(deploys[0].state, DeployState::Failed);
    let head = git(&repo.bare, &["rev-parse", "main"]);
    assert_eq!(head.trim(), git(&repo.work, &["rev-parse", "HEAD"]).trim());
    // The hook itself exits non-zero (git does not pass that on): run it
    // by hand for a second push made with the hook set aside.
    let old = head.trim().to_string();
    let new = commit(&repo, "second");
    push_without_hook(&repo, &["main"]);
    let run = run_hook(&repo.bare, &format!("{old} {new} refs/heads/main"), &[]);
    assert_eq!(run.status.code(), Some(2), "{}", stderr(&run));
    assert!(
        stderr(&run).contains("failed (the push itself is kept)"),
        "{}",
        stderr(&run)
    );
}

#[test]
fn with_hook_wait_a_push_of_two_followed_branches_shows_and_fails_on_each_deploy() {
    // web follows main, worker develop; every deploy fails.
    let shop = Stack::new("shop").standin().env("EXIT_CODE", "3").table(
        "[[stacks.services]]\nname = \"web\"\nrepository = \"@DIR@/app.git\"\nbranch = \"main\"\n\n\
         [[stacks.services]]\nname = \"worker\"\nrepository = \"@DIR@/app.git\"\nbranch = \"develop\"",
    );
    let world = World::new(
        "post-receive-wait-two-lanes",
        "",
        &format!("[hook]\nwait = true\n{}", toml(&[shop])),
    );
    let repo = setup(&world, "sha1");
    let old = commit(&repo, "first");
    git(&repo.work, &["branch", "develop"]);
    // Both branches pushed with the hook set aside, then the hook run by
    // hand with both lines, so its exit code is seen.
    push_without_hook(&repo, &["main", "develop"]);
    let zero = "0".repeat(40);
    let run = run_hook(
        &repo.bare,
        &format!("{zero} {old} refs/heads/main\n{zero} {old} refs/heads/develop"),
        &[],
    );
    let said = format!("{}{}", String::from_utf8_lossy(&run.stdout), stderr(&run));
    assert_eq!(run.status.code(), Some(2), "{said}");
    for line in [
        "redeploy: shop: deploy #1 failed",
        "redeploy: shop: deploy #2 failed",
        "deploy #1 of shop failed, #2 of shop failed (the push itself is kept)",
    ] {
        assert!(said.contains(line), "{line:?} in {said}");
    }
    let deploys = world.deploys();
    assert_eq!(deploys.len(), 2, "{deploys:#?}");
    assert!(deploys.iter().all(|d| d.state == DeployState::Failed));
}

/// Pushes `refs` of `repo` with its post-receive hook set aside, for a
/// test to run the hook by hand ([`run_hook`]) and see its exit code.
fn push_without_hook(repo: &Repo, refs: &[&str]) {
    let hook_path = repo.bare.join("hooks/post-receive");
    let aside = repo.bare.join("hooks/post-receive.aside");
    std::fs::rename(&hook_path, &aside).unwrap();
    let mut args = vec!["push", "--quiet", "origin"];
    args.extend_from_slice(refs);
    git(&repo.work, &args);
    std::fs::rename(&aside, &hook_path).unwrap();
}

/// Runs the installed hook of `bare` by hand, as git would, with `env`
/// added, for `lines` (update lines, one per line); returns its output.
fn run_hook(bare: &Path, lines: &str, env: &[(&str, &str)]) -> std::process::Output {
    use std::io::Write as _;
    let mut hook = Command::new(bare.join("hooks/post-receive"))
        .current_dir(bare)
        .env("GIT_DIR", ".")
        .envs(env.iter().copied())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(hook.stdin.take().unwrap(), "{lines}").unwrap();
    hook.wait_with_output().unwrap()
}

#[test]
fn post_receive_matches_gitolites_gl_repo_name() {
    // A stack naming the repository as gitolite serves it (its clone URL)
    // follows the push gitolite's hook reports with `GL_REPO`.
    let stack = Stack::new("web")
        .follows("git@git.example.com:team/app", "main")
        .standin();
    let world = World::new("post-receive-gl-repo", "", &toml(&[stack]));
    let repo = setup(&world, "sha1");
    let sha = commit(&repo, "first");
    // The push itself has no GL_REPO: the path names no such repository.
    let out = push(&repo, &["main"]);
    assert!(
        out.contains("remote: redeploy: web: not deploying: "),
        "{out}"
    );
    let zero = "0".repeat(40);
    let line = format!("{zero} {sha} refs/heads/main");
    let run = run_hook(
        &repo.bare,
        &line,
        &[("GL_REPO", "team/app"), ("GL_USER", "alice")],
    );
    let said = String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success(), "{said}{}", stderr(&run));
    assert!(
        said.contains(
            "redeploy: web: deploying (push to \"main\" of team/app matches branch \"main\")"
        ),
        "{said}"
    );
    let deploys = world.settle(30);
    assert_eq!(deploys.len(), 1, "{deploys:#?}");
    assert_eq!(deploys[0].queued.pusher.as_deref(), Some("alice"));
    // `history --json` names who pushed.
    let out = world.redeploy(&["history", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let history: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(history[0]["pusher"], "alice", "{history:#}");
    world.assert_env(
        "web",
        deploys[0].id,
        &[
            ("REDEPLOY_PUSHER", "alice"),
            ("REDEPLOY_REPOSITORY", "team/app"),
        ],
    );
}

#[test]
fn post_receive_matches_a_stack_naming_the_repository_by_a_symlinked_path() {
    // The stack names `@DIR@/link.git`, a symbolic link to the bare
    // repository `app.git` git pushes to.
    let stack = Stack::new("web")
        .follows("@DIR@/link.git", "main")
        .standin();
    let world = World::new("post-receive-symlink", "", &toml(&[stack]));
    let repo = setup(&world, "sha1");
    std::os::unix::fs::symlink(&repo.bare, world.dir.join("link.git")).unwrap();
    let sha = commit(&repo, "first");
    let out = push(&repo, &["main"]);
    assert!(out.contains("remote: redeploy: web: deploying"), "{out}");
    let deploys = world.settle(30);
    assert_eq!(deploys.len(), 1, "{deploys:#?}");
    assert_eq!(deploys[0].queued.sha.as_deref(), Some(sha.as_str()));
}

#[test]
fn a_push_of_a_ref_name_that_is_not_utf8_still_deploys_the_branch_a_stack_follows() {
    use std::os::unix::ffi::OsStrExt as _;
    let world = World::new("post-receive-not-utf8", "", &stacks());
    let repo = setup(&world, "sha1");
    let head = commit(&repo, "first");
    // git takes any bytes in a ref name but a few: 0xff is not UTF-8.
    let odd = std::ffi::OsStr::from_bytes(b"odd\xff");
    let git_bytes = |args: &[&std::ffi::OsStr]| {
        Command::new("git")
            .current_dir(&repo.work)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .args(args)
            .output()
            .unwrap()
    };
    assert!(git_bytes(&["branch".as_ref(), odd]).status.success());
    let out = git_bytes(&["push".as_ref(), "origin".as_ref(), "main".as_ref(), odd]);
    let said = stderr(&out);
    assert!(out.status.success(), "{said}");
    assert!(
        said.contains(
            "remote: redeploy: ref \"refs/heads/odd\\xff\" is not UTF-8, so no stack follows it: not deploying it"
        ),
        "{said}"
    );
    assert!(said.contains("remote: redeploy: web: deploying"), "{said}");
    let deploys = world.settle(30);
    assert_eq!(deploys.len(), 1, "{deploys:#?}");
    assert_eq!(deploys[0].state, DeployState::Succeeded);
    assert_eq!(deploys[0].queued.sha.as_deref(), Some(head.as_str()));
    assert_eq!(
        deploys[0].queued.git_ref.as_deref(),
        Some("refs/heads/main")
    );
}

#[test]
fn a_push_of_two_branches_followed_by_different_services_deploys_both() {
    // `web` follows main, `worker` develop, of the one repository.
    let shop = Stack::new("shop").standin().table(
        "[[stacks.services]]\nname = \"web\"\nrepository = \"@DIR@/app.git\"\nbranch = \"main\"\n\n\
         [[stacks.services]]\nname = \"worker\"\nrepository = \"@DIR@/app.git\"\nbranch = \"develop\"",
    );
    let world = World::new("post-receive-two-lanes", "", &toml(&[shop]));
    let repo = setup(&world, "sha1");
    let main = commit(&repo, "first");
    git(&repo.work, &["checkout", "--quiet", "-b", "develop"]);
    let develop = commit(&repo, "on develop");
    let out = push(&repo, &["main", "develop"]);
    assert!(
        out.contains("remote: redeploy: shop: deploying (push to \"main\" of "),
        "{out}"
    );
    assert!(
        out.contains("remote: redeploy: shop: deploying (push to \"develop\" of "),
        "{out}"
    );
    let deploys = world.settle(30);
    let shown: Vec<_> = deploys
        .iter()
        .map(|d| {
            (
                d.state,
                d.queued.git_ref.clone().unwrap_or_default(),
                d.queued.sha.clone().unwrap_or_default(),
                d.queued.services.join(","),
            )
        })
        .collect();
    assert_eq!(
        shown,
        [
            (
                DeployState::Succeeded,
                "refs/heads/main".to_owned(),
                main,
                "web".to_owned()
            ),
            (
                DeployState::Succeeded,
                "refs/heads/develop".to_owned(),
                develop.clone(),
                "worker".to_owned()
            ),
        ]
    );
    world.assert_env(
        "shop",
        deploys[1].id,
        &[
            ("REDEPLOY_SHA", &develop),
            ("REDEPLOY_BRANCH", "develop"),
            ("REDEPLOY_SERVICES", "worker"),
        ],
    );
}

#[test]
fn post_receive_says_when_a_push_was_forced() {
    let world = World::new("post-receive-rewritten", "", &stacks());
    let repo = setup(&world, "sha1");
    let first = commit(&repo, "first");
    let out = push(&repo, &["main"]);
    assert!(out.contains("remote: redeploy: web: deploying"), "{out}");
    assert!(
        !out.contains("forced push"),
        "a new branch is not forced: {out}"
    );
    world.settle(30);
    let second = commit(&repo, "second");
    let out = push(&repo, &["main"]);
    assert!(
        !out.contains("forced"),
        "a fast-forward is not forced: {out}"
    );
    world.settle(30);
    // History rewritten: `second` replaced by another commit on `first`.
    git(&repo.work, &["reset", "--quiet", "--hard", &first]);
    let rewritten = commit(&repo, "second, again");
    let out = push(&repo, &["--force", "main"]);
    assert!(
        out.contains(&format!(
            "), deploy #3 on this host (forced push: {} is not an ancestor of {})",
            &second[..7],
            &rewritten[..7]
        )),
        "{out}"
    );
    let deploys = world.settle(30);
    assert_eq!(deploys.len(), 3, "{deploys:#?}");
}

#[test]
fn post_receive_as_the_repositorys_owner_hands_deploys_to_a_server_of_another_user() {
    // The server (this test's user, root) and the git hook (the
    // repository's owner) each have a config and a state directory of
    // their own; the stack's hook token is in a file both read.
    let port = free_port();
    let token = "0123456789abcdef0123456789abcdef0123456789abcdef";
    let stack = Stack::new("web")
        .follows("@DIR@/app.git", "main")
        .key("hook_token_file", "@DIR@/web.token")
        .standin();
    let world = World::new("post-receive-other-user", "", &toml(&[stack]));
    std::fs::write(world.dir.join("web.token"), token).unwrap();
    let server = world.start_on(port, &[], &[]);

    let home = world.dir.join("hook-home");
    let owner = crate::support::users::SystemUser::with_home("prx", &home);
    let bare = world.dir.join("app.git");
    git(
        &world.dir.0,
        &[
            "init",
            "--quiet",
            "--bare",
            "--initial-branch=main",
            bare.to_str().unwrap(),
        ],
    );
    owner.own(&bare);
    let hook_config = home.join("redeploy.toml");
    std::fs::write(
        &hook_config,
        format!(
            "[server]\nstate_dir = {state:?}\n\n[hook]\nserver = \"http://127.0.0.1:{port}\"\n\n\
             [[stacks]]\nname = \"web\"\nrepository = {bare:?}\nbranch = \"main\"\n\
             hook_token_file = {token_file:?}\ncommand = [\"true\"]\n",
            state = home.join("state").to_str().unwrap(),
            bare = bare.to_str().unwrap(),
            token_file = world.dir.join("web.token").to_str().unwrap(),
        ),
    )
    .unwrap();
    owner.own(&home);
    let as_owner = |program: &str, args: &[&str]| {
        let out = owner.run(Path::new(program), args);
        let text = format!("{}{}", crate::support::cli::stdout(&out), stderr(&out));
        assert!(out.status.success(), "{program} {args:?}: {text}");
        text
    };
    let redeploy = crate::support::redeploy_bin();
    let redeploy = redeploy.to_str().unwrap();
    let hook_config = hook_config.to_str().unwrap();
    as_owner(
        redeploy,
        &[
            "install-hook",
            bare.to_str().unwrap(),
            "--config",
            hook_config,
        ],
    );
    let work = home.join("work");
    let work = work.to_str().unwrap();
    as_owner("git", &["clone", "--quiet", bare.to_str().unwrap(), work]);
    as_owner("git", &["-C", work, "checkout", "--quiet", "-B", "main"]);
    as_owner(
        "git",
        &[
            "-C",
            work,
            "-c",
            "user.name=Owner",
            "-c",
            "user.email=owner@example.com",
            "commit",
            "--quiet",
            "--allow-empty",
            "-m",
            "first",
        ],
    );
    let pushed = as_owner("git", &["-C", work, "push", "origin", "main"]);
    assert!(
        pushed.contains("remote: redeploy: web: deploying (push to \"main\" of ")
            && pushed.contains(&format!("on http://127.0.0.1:{port}")),
        "{pushed}"
    );
    // The server ran it, as its own user, in its own state directory.
    let deploys = world.settle(30);
    assert_eq!(deploys.len(), 1, "{deploys:#?}");
    assert_eq!(deploys[0].state, DeployState::Succeeded);
    for entry in std::fs::read_dir(world.dir.join("state")).unwrap() {
        let meta = entry.unwrap().metadata().unwrap();
        assert_eq!(std::os::unix::fs::MetadataExt::uid(&meta), 0);
    }
    server.terminate();
}
