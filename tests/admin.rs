//! The administrator's first hour (issue 14): the default configuration
//! file, commands that read only the secrets of the stacks they use,
//! `config check`, shell completions and the man page.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use clap::CommandFactory as _;
use redeploy_host::cli::Cli;
use redeploy_host::commands::{CONFIG_ENV, DEFAULT_CONFIG_PATH};

use crate::support::cli::{assert_success, stderr, stdout};
use crate::support::{assert_contains_all, fixtures, redeploy_bin, Stack, TempDir, World};

/// The environment variable holding stack `web`'s webhook secret in these
/// tests (a name no test environment sets).
const WEB_SECRET_VAR: &str = "REDEPLOY_ADMIN_TEST_WEB_HOOK_SECRET";

/// Stack `web`'s webhook secret.
const WEB_SECRET: &str = "web-secret-from-the-environment";

/// `redeploy ARGS...` with no `REDEPLOY_CONFIG` and no `web` secret in its
/// environment, plus `env`; stdin empty.
fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(redeploy_bin())
        .args(args)
        .env_remove(CONFIG_ENV)
        .env_remove(WEB_SECRET_VAR)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// Asserts that the command failed with exit code 2 and its standard error
/// says each of `what`.
#[track_caller]
fn assert_error_saying(out: &Output, what: &[&str]) {
    assert_eq!(out.status.code(), Some(2), "{}{}", stdout(out), stderr(out));
    assert_contains_all(&stderr(out), what);
}

/// A world of two stacks: `web`, whose secret comes from [`WEB_SECRET_VAR`],
/// and `api`, which has no secret.
fn two_stacks(name: &str) -> World {
    let web = Stack::repo("web", "acme/web", "main", 1)
        .line(&format!("secrets_env = [{WEB_SECRET_VAR:?}]"));
    let api = Stack::repo("api", "Codertocat/Hello-World", "master", 2);
    World::new(name, "", &crate::support::stacks::toml(&[web, api]))
}

fn config_arg(world: &World) -> &str {
    world.config.to_str().unwrap()
}

// ---------------------------------------------------------------------------
// 1. The default configuration file
// ---------------------------------------------------------------------------

#[test]
fn admin_config_comes_from_redeploy_config_without_the_flag() {
    let world = World::new(
        "admin-config-env",
        "",
        &Stack::repo("web", "acme/web", "main", 1).toml(),
    );
    let out = run(&["hook-url", "web"], &[(CONFIG_ENV, config_arg(&world))]);
    assert_success(&out);
    assert!(
        stdout(&out).contains(&crate::support::hook(1)),
        "{}",
        stdout(&out)
    );
}

#[test]
fn admin_config_defaults_to_etc_redeploy_redeploy_toml() {
    assert!(
        !Path::new(DEFAULT_CONFIG_PATH).exists(),
        "this test needs {DEFAULT_CONFIG_PATH} not to exist on the test machine"
    );
    let out = run(&["history"], &[]);
    assert_error_saying(
        &out,
        &[
            "cannot read /etc/redeploy/redeploy.toml",
            "pass --config PATH or set REDEPLOY_CONFIG",
        ],
    );
    assert_eq!(
        stderr(&out).matches("os error").count(),
        1,
        "{}",
        stderr(&out)
    );
}

/// Every command that reads the configuration names the file it could not
/// read, and the OS error once.
#[test]
fn admin_every_command_names_the_config_file_it_cannot_read() {
    let dir = TempDir::new("admin-missing-config");
    let missing = dir.join("missing.toml");
    let missing = missing.to_str().unwrap();
    let repo = dir.join("repo");
    let init = Command::new("git")
        .args(["init", "--quiet", "--bare"])
        .arg(&repo)
        .status()
        .expect("running git (install git)");
    assert!(init.success());
    let repo = repo.to_str().unwrap();
    let commands: &[&[&str]] = &[
        &["check", "--body", "/dev/null"],
        &["serve", "--listen", "127.0.0.1:0"],
        &["reload"],
        &["hook-url", "web"],
        &["history"],
        &["trigger", "web"],
        &["post-receive"],
        &["install-hook", repo],
        &["github", "connect", "web"],
        &["run-queued", "--stack", "web"],
        &["config", "check"],
    ];
    for args in commands {
        let out = run(args, &[(CONFIG_ENV, missing)]);
        assert_error_saying(&out, &[&format!("cannot read {missing}: No such file")]);
        assert_eq!(
            stderr(&out).matches("os error").count(),
            1,
            "{args:?}: {}",
            stderr(&out)
        );
    }
}

// ---------------------------------------------------------------------------
// 2. Admin commands read only the secrets they need
// ---------------------------------------------------------------------------

#[test]
fn admin_commands_of_one_stack_do_not_need_another_stacks_secret() {
    let world = two_stacks("admin-one-stack");
    let config = config_arg(&world);

    let out = run(&["hook-url", "api", "--config", config], &[]);
    assert_success(&out);
    assert!(stdout(&out).ends_with(&format!("{}\n", crate::support::hook(2))));

    assert_success(&run(&["history", "--config", config], &[]));
    assert_success(&run(&["history", "api", "--config", config], &[]));

    let body = fixtures().join("github/goscm-push.json");
    let headers = fixtures().join("github/goscm-push.headers");
    let out = run(
        &[
            "check",
            "--stack",
            "api",
            "--config",
            config,
            "--body",
            body.to_str().unwrap(),
            "--headers",
            headers.to_str().unwrap(),
        ],
        &[],
    );
    assert_success(&out);
    assert!(
        stdout(&out).contains("\"stack\": \"api\""),
        "{}",
        stdout(&out)
    );

    // The server serves every stack, so it starts with the secret; a
    // manual trigger of `api` is then typed without it.
    let server = world.start_env(&[], &[(WEB_SECRET_VAR, WEB_SECRET)]);
    let out = run(
        &[
            "trigger",
            "api",
            "--config",
            config,
            "--server",
            &format!("http://{}", server.addr),
        ],
        &[],
    );
    assert_success(&out);
    assert!(stdout(&out).contains("\"deploy\""), "{}", stdout(&out));
    assert!(!stdout(&out).contains(WEB_SECRET) && !stderr(&out).contains(WEB_SECRET));
    world.settle(30);
}

#[test]
fn admin_commands_of_a_stack_need_its_own_secret() {
    let world = two_stacks("admin-own-secret");
    let config = config_arg(&world);
    let unset = format!("secrets_env: environment variable {WEB_SECRET_VAR} is not set");
    for args in [
        &["trigger", "web", "--config", config][..],
        &[
            "check",
            "--stack",
            "web",
            "--config",
            config,
            "--body",
            "/dev/null",
        ],
    ] {
        let out = run(args, &[]);
        assert_error_saying(&out, &["stack \"web\"", &unset]);
    }
    // `hook-url` needs the hook token, not the webhook secret: it works
    // without the service's environment (secrets.env), printing the same
    // URL as with it.
    let without = run(&["hook-url", "web", "--config", config], &[]);
    assert_success(&without);
    let out = run(
        &["hook-url", "web", "--config", config],
        &[(WEB_SECRET_VAR, WEB_SECRET)],
    );
    assert_success(&out);
    assert_eq!(stdout(&out), stdout(&without));
    assert!(!stdout(&out).contains(WEB_SECRET));
    // A token named by variable is read, and needed.
    let token_var = "REDEPLOY_ADMIN_TEST_WEB_HOOK_TOKEN";
    let with_token_env = std::fs::read_to_string(&world.config).unwrap().replace(
        "hook_token = ",
        &format!("hook_token_env = {token_var:?}\n# was: hook_token = "),
    );
    let token_config = world.dir.join("token-env.toml");
    std::fs::write(&token_config, with_token_env).unwrap();
    let token_config = token_config.to_str().unwrap();
    let out = run(&["hook-url", "web", "--config", token_config], &[]);
    assert_error_saying(&out, &["stack \"web\"", token_var]);
    let token = "t0ken-from-the-environment-0123456789abcdef";
    let out = run(
        &["hook-url", "web", "--config", token_config],
        &[(token_var, token)],
    );
    assert_success(&out);
    assert!(
        stdout(&out)
            .trim_end()
            .ends_with(&format!("/hooks/{token}")),
        "{}",
        stdout(&out)
    );
}

/// `serve` and `post-receive` serve every stack: one stack's missing
/// secret stops them at start, as it stops `check` of every stack and
/// `config check`.
#[test]
fn serve_and_post_receive_refuse_to_start_without_every_stacks_secret() {
    let world = two_stacks("admin-every-secret");
    let config = config_arg(&world);
    let unset = format!("secrets_env: environment variable {WEB_SECRET_VAR} is not set");
    for args in [
        &["serve", "--config", config, "--listen", "127.0.0.1:0"][..],
        &["post-receive", "--config", config],
        &["check", "--config", config, "--body", "/dev/null"],
        &["config", "check", "--config", config],
    ] {
        let out = run(args, &[]);
        assert_error_saying(&out, &[config, "stack \"web\"", &unset]);
    }
}

// ---------------------------------------------------------------------------
// 3. config check
// ---------------------------------------------------------------------------

#[test]
fn config_check_prints_each_stack_and_its_hook_url_forms_and_no_secret() {
    let inline_secret = "inline-secret-value-1234";
    let shop = Stack::new("shop")
        .token(3)
        .secret(inline_secret)
        .line("command = [\"true\"]")
        .table("[[stacks.services]]\nname = \"web\"\nrepository = \"acme/shop-web\"\nbranch = \"main\"")
        .table("[[stacks.services]]\nname = \"proxy\"\nimage = \"nginx:stable\"")
        .table("[stacks.profiles.fast]\nenv = { FAST = \"1\" }")
        .table("[stacks.profiles.hidden]\nselectable = false");
    let web = Stack::repo(
        "web",
        "https://bot:hunter22@git.example.com/acme/web.git",
        "main",
        4,
    )
    .line("tags = \"v*\"");
    let world = World::new(
        "admin-config-check",
        "public_url = \"https://deploy.example.com\"",
        &crate::support::stacks::toml(&[shop, web]),
    );
    let out = run(&["config", "check", "--config", config_arg(&world)], &[]);
    assert_success(&out);
    let text = stdout(&out);
    assert_contains_all(
        &text,
        &[
            &format!("{}: valid, 2 stacks", world.config.display()),
            "stack \"shop\"",
            "web: repository acme/shop-web, branch main",
            "proxy: image nginx:stable",
            "profiles: fast, hidden (not selectable)",
            "https://deploy.example.com/hooks/<token>\n",
            "https://deploy.example.com/hooks/<token>?services=web\n",
            "https://deploy.example.com/hooks/<token>?services=proxy\n",
            "https://deploy.example.com/hooks/<token>?deployment_profile=fast\n",
            "stack \"web\"",
            "follows: repository https://<redacted>@git.example.com/acme/web.git, branch main, tags v*",
        ],
    );
    assert!(!text.contains("deployment_profile=hidden"), "{text}");
    assert_eq!(text.matches("?services=").count(), 2, "{text}");
    for secret in [
        inline_secret,
        "hunter22",
        &crate::support::token(3),
        &crate::support::token(4),
    ] {
        assert!(
            !text.contains(secret) && !stderr(&out).contains(secret),
            "{text}"
        );
    }
    // It validates; it keeps no state.
    assert!(!world.dir.join("state").exists());
}

#[test]
fn config_check_refuses_a_stack_the_component_refuses_with_exit_2() {
    let world = World::new(
        "admin-config-check-component",
        "",
        &Stack::new("web")
            .key("image", "acme/web@")
            .line("command = [\"true\"]")
            .toml(),
    );
    let out = run(&["config", "check", "--config", config_arg(&world)], &[]);
    assert_error_saying(
        &out,
        &[&format!(
            "{}: stack \"web\": image \"acme/web@\" is not an image reference",
            world.config.display()
        )],
    );
    assert_eq!(stdout(&out), "");
}

#[test]
fn config_check_refuses_a_host_rule_with_exit_2() {
    let world = World::new(
        "admin-config-check-host",
        "",
        &Stack::repo("web", "acme/web", "main", 1)
            .timeout("0s")
            .toml(),
    );
    let out = run(&["config", "check", "--config", config_arg(&world)], &[]);
    assert_error_saying(
        &out,
        &[
            config_arg(&world),
            "stack \"web\": timeout must be greater than zero",
        ],
    );
}

// ---------------------------------------------------------------------------
// 4. Completions and the man page
// ---------------------------------------------------------------------------

/// The names of the subcommands a user sees (not the hidden `run-queued`).
fn visible_subcommands() -> Vec<String> {
    let names: Vec<String> = Cli::command()
        .get_subcommands()
        .filter(|c| !c.is_hide_set())
        .map(|c| c.get_name().to_string())
        .collect();
    for expected in [
        "check",
        "serve",
        "hook-url",
        "history",
        "trigger",
        "config",
        "completions",
        "man",
    ] {
        assert!(names.iter().any(|n| n == expected), "{names:?}");
    }
    names
}

#[test]
fn completions_for_bash_name_every_subcommand() {
    let out = run(&["completions", "bash"], &[]);
    assert_success(&out);
    let script = stdout(&out);
    assert!(script.contains("complete "), "{script}");
    for name in visible_subcommands() {
        assert!(script.contains(&name), "no {name} in the bash script");
    }
    for shell in ["zsh", "fish"] {
        let out = run(&["completions", shell], &[]);
        assert_success(&out);
        assert!(
            stdout(&out).contains("hook-url"),
            "{shell}: {}",
            stdout(&out)
        );
    }
}

#[test]
fn man_page_starts_with_th_and_names_every_subcommand() {
    let out = run(&["man"], &[]);
    assert_success(&out);
    let page = stdout(&out);
    assert!(page.starts_with(".TH redeploy 1"), "{page}");
    // roff escapes the `-` of `hook-url` as `\-`.
    let page = page.replace("\\-", "-");
    for name in visible_subcommands() {
        assert!(
            page.contains(&format!("redeploy-{name}")),
            "no {name} in the man page"
        );
    }
}

// ---------------------------------------------------------------------------
// A hook-only installation: `trigger --local`
// ---------------------------------------------------------------------------

#[test]
fn admin_trigger_local_deploys_through_the_journal_without_a_server() {
    let web = Stack::repo("web", "acme/web", "main", 1);
    let broken = Stack::repo("broken", "acme/broken", "main", 2).env("EXIT_CODE", "3");
    let world = World::new(
        "admin-trigger-local",
        "",
        &crate::support::stacks::toml(&[web, broken]),
    );
    let config = config_arg(&world);
    let out = run(&["trigger", "web", "--local", "--config", config], &[]);
    assert_success(&out);
    assert_contains_all(
        &stdout(&out),
        &[
            "web: deploy #1 queued (manual trigger",
            "-- redeploy: deploy #1 succeeded (exit code 0) after",
        ],
    );
    let deploys = world.settle(10);
    assert_eq!(deploys.len(), 1);
    assert_eq!(deploys[0].queued.provider, "manual");
    crate::support::world::assert_all_succeeded(&deploys);
    // It ran the stand-in, as a deploy: with the deploy's environment.
    world.assert_env(
        "web",
        1,
        &[("REDEPLOY_STACK", "web"), ("REDEPLOY_DEPLOY_ID", "1")],
    );

    // A failing deploy: its log, and a non-zero exit saying so.
    let out = run(&["trigger", "broken", "--local", "--config", config], &[]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(
        stdout(&out).contains("-- redeploy: deploy #2 failed (exit code 3)"),
        "{}",
        stdout(&out)
    );
    assert!(
        stderr(&out).contains("broken: deploy #2 failed"),
        "{}",
        stderr(&out)
    );

    // `--local` goes through the component like any trigger: a stack that
    // refuses manual triggers refuses this one, and nothing is journaled.
    std::fs::write(
        &world.config,
        std::fs::read_to_string(&world.config).unwrap() + "manual = \"refuse\"\n",
    )
    .unwrap();
    let out = run(&["trigger", "broken", "--local", "--config", config], &[]);
    assert_error_saying(
        &out,
        &["broken: NOT deployed (403", "refuses manual triggers"],
    );
    assert_eq!(world.deploys().len(), 2);
    // And `history` reads the hook-only journal.
    let out = run(&["history", "--config", config], &[]);
    assert_success(&out);
    assert_eq!(stdout(&out).lines().count(), 3, "{}", stdout(&out));
}

#[test]
fn admin_hook_url_warns_of_an_address_no_sender_can_reach() {
    let stacks = Stack::repo("web", "acme/web", "main", 1).toml();
    let world = World::new("admin-hook-url-any", "listen = \"0.0.0.0:8080\"", &stacks);
    let out = run(&["hook-url", "web", "--config", config_arg(&world)], &[]);
    assert_success(&out);
    assert!(
        stdout(&out).starts_with("http://0.0.0.0:8080/hooks/"),
        "{}",
        stdout(&out)
    );
    assert!(
        stderr(&out).contains("warning: this URL names 0.0.0.0")
            && stderr(&out).contains("set server.public_url"),
        "{}",
        stderr(&out)
    );
    // With the address senders use, nothing to warn of.
    let world = World::new(
        "admin-hook-url-public",
        "listen = \"0.0.0.0:8080\"\npublic_url = \"https://deploy.example.com\"",
        &stacks,
    );
    let out = run(&["hook-url", "web", "--config", config_arg(&world)], &[]);
    assert_success(&out);
    assert!(
        stdout(&out).starts_with("https://deploy.example.com/hooks/"),
        "{}",
        stdout(&out)
    );
    assert_eq!(stderr(&out), "");
}

#[test]
fn admin_a_server_url_given_on_the_command_line_is_checked_as_hook_server_is() {
    let world = World::new(
        "admin-server-url",
        "",
        &Stack::repo("web", "acme/web", "main", 1).toml(),
    );
    let config = config_arg(&world);
    for (command, url, says) in [
        (
            "trigger",
            "http://bob:S3CRETPW@127.0.0.1:9",
            "--server must not hold a user or password",
        ),
        (
            "trigger",
            "http://deploy.example.com:8080",
            "must be https, or http to this host",
        ),
        (
            "post-receive",
            "http://bob:S3CRETPW@127.0.0.1:9",
            "--server must not hold a user or password",
        ),
    ] {
        let mut args = vec![command];
        if command == "trigger" {
            args.push("web");
        }
        args.extend(["--server", url, "--config", config]);
        let out = run(&args, &[]);
        assert_eq!(out.status.code(), Some(2), "{command}: {}", stderr(&out));
        assert!(stderr(&out).contains(says), "{command}: {}", stderr(&out));
        assert!(!stderr(&out).contains("S3CRETPW"), "{}", stderr(&out));
    }
}

#[test]
fn admin_a_deploy_whose_working_directory_is_missing_says_so() {
    let world = World::new(
        "admin-missing-workdir",
        "",
        &Stack::repo("web", "acme/web", "main", 1)
            .key("workdir", "/nonexistent/redeploy-workdir")
            .toml(),
    );
    let out = run(
        &["trigger", "web", "--local", "--config", config_arg(&world)],
        &[],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    // Not "no such file" about the command, which is there.
    assert!(
        stdout(&out).contains(
            "its working directory /nonexistent/redeploy-workdir is not there (No such file or directory"
        ),
        "{}",
        stdout(&out)
    );
}

#[test]
fn admin_history_before_anything_ran_says_what_creates_the_journal() {
    let world = World::new(
        "admin-history-fresh",
        "",
        &Stack::repo("web", "acme/web", "main", 1).toml(),
    );
    let out = run(&["history", "--config", config_arg(&world)], &[]);
    assert_error_saying(
        &out,
        &[
            "does not exist yet",
            "the post-receive hook",
            "trigger --local",
            "check server.state_dir",
        ],
    );
    assert!(!stderr(&out).contains("has `redeploy serve` run"));
}

#[test]
fn admin_trigger_local_stopped_by_a_signal_stops_its_deploy_and_records_it() {
    let slow = Stack::repo("slow", "acme/slow", "main", 1).env("SLEEP", "60");
    let world = World::new("admin-trigger-local-signal", "", &slow.toml());
    let trigger = Command::new(redeploy_bin())
        .args(["trigger", "slow", "--local", "--config", config_arg(&world)])
        .env_remove(CONFIG_ENV)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    world.wait_ran_more_than("slow", 0, 30);
    let pgid = crate::support::wait_for(10, "the deploy's process group", || {
        world.query_journal::<Option<i64>>("SELECT pgid FROM deploys WHERE id = 1")
    });
    // SAFETY: kill(2) on the child this test spawned.
    assert_eq!(unsafe { libc::kill(trigger.id() as i32, libc::SIGTERM) }, 0);
    let out = trigger.wait_with_output().unwrap();
    assert_error_saying(
        &out,
        &["stopped by SIGTERM: deploy #1 stopped and recorded interrupted"],
    );
    let deploys = world.deploys();
    assert_eq!(
        deploys[0].state,
        redeploy_host::journal::DeployState::Interrupted
    );
    // Nothing of the deploy's process group is left running (the last of
    // it may take a moment to be reaped).
    crate::support::wait_for(10, "the deploy's process group to end", || {
        // SAFETY: kill(2) with signal 0 only asks whether the group exists.
        (unsafe { libc::kill(-(pgid as i32), 0) } != 0).then_some(())
    });
}
