//! Unit tests of `[[stacks]]` entries: defaults, sources and services,
//! actions, profiles, names, patterns and the manual-trigger policy.

use super::*;

#[test]
fn stack_defaults() {
    let config = parse_ok(MINIMAL);
    let web = config.stack("web").unwrap();
    assert!(web.secrets.is_empty());
    assert!(web.hook_token.is_none());
    assert_eq!(web.ping, PingSetting::Deploy);
    assert!(web.paths.is_empty());
    assert_eq!(web.skip_markers, ["[skip deploy]", "[deploy skip]"]);
    assert_eq!(web.timeout, Duration::from_secs(600));
    assert!(web.profiles.is_empty());
    assert!(web.environment_url.is_none());
    assert!(web.github.is_none());
    assert!(web.tags.is_none());
    match &web.action {
        DeployAction::Command { workdir, env, .. } => {
            assert_eq!(workdir, &base());
            assert!(env.is_empty());
        }
        other => panic!("expected a command, got {other:?}"),
    }
}

#[test]
fn stack_validation_errors() {
    let stack = |body: &str| format!("[[stacks]]\nname = \"web\"\n{body}\n");
    let check = |body: &str, expected: &[&str]| assert_err(&stack(body), expected);
    check("image = \"i\"", &["stack \"web\": set command or http"]);
    check(
        "image = \"i\"\ncommand = [\"x\"]\nhttp = { url = \"https://h\" }",
        &["stack \"web\": set either command or http, not both"],
    );
    check(
        "image = \"i\"\ncommand = []",
        &["stack \"web\": command is empty"],
    );
    check(
        "image = \"i\"\ncommand = [\"\"]",
        &["stack \"web\": command[0] is empty"],
    );
    // One string is refused with how to write it, and never echoed (an
    // argument may hold a token); so are other types and non-string items.
    for (body, key) in [
        ("command = \"docker compose up -d --token=s3cr3t\"", "command"),
        (
            "command = [\"x\"]\n[stacks.profiles.fast]\ncommand = \"docker compose up -d --token=s3cr3t\"",
            "command",
        ),
    ] {
        let message = parse_err(&stack(&format!("image = \"i\"\n{body}")));
        assert!(
            message.contains(&format!("`{key}`: {}", super::super::raw::COMMAND_AS_ONE_STRING)),
            "{message}"
        );
        assert!(!message.contains("s3cr3t"), "{message}");
    }
    for body in ["command = 5", "command = [\"x\", 5]"] {
        let message = parse_err(&stack(&format!("image = \"i\"\n{body}")));
        assert!(
            message.contains("expected a list of arguments"),
            "{message}"
        );
    }
    check(
        "image = \"i\"\ncommand = [\"x\"]\ntimeout = \"10x\"",
        &["stack \"web\": timeout \"10x\" is not a duration"],
    );
    check(
        "image = \"i\"\ncommand = [\"x\"]\ntimeout = \"0s\"",
        &["stack \"web\": timeout must be greater than zero"],
    );
    check(
        "image = \"i\"\ncommand = [\"x\"]\nskip_markers = [\"\"]",
        &["stack \"web\": skip_markers[0] is empty"],
    );
    check(
        "image = \"i\"\ncommand = [\"x\"]\nsecrets = [\"long-enough\", \"\"]",
        &["stack \"web\": secrets[1] is empty"],
    );
    check(
        "image = \"i\"\ncommand = [\"x\"]\nenvironment_url = \"web.example.com\"",
        &["stack \"web\": environment_url \"web.example.com\" is not an http(s) URL"],
    );
    check(
        "image = \"i\"\nhttp = { url = \"ftp://h\" }",
        &["stack \"web\": http.url is not an http(s) URL"],
    );
    check(
        "image = \"i\"\nhttp = { headers = { A = \"b\" } }",
        &["stack \"web\": http.url is required"],
    );
    check(
        "image = \"i\"\nhttp = { url = \"https://h\", headers = { \"Bad Name\" = \"b\" } }",
        &["stack \"web\": http.headers: \"Bad Name\""],
    );
    check(
        "image = \"i\"\nhttp = { url = \"https://h\" }\nenv = { A = \"b\" }",
        &["stack \"web\": env only applies to command"],
    );
    check(
        "image = \"i\"\nhttp = { url = \"https://h\" }\nworkdir = \"x\"",
        &["stack \"web\": workdir only applies to command"],
    );
    check(
        "image = \"i\"\ncommand = [\"x\"]\nenv = { \"A=B\" = \"c\" }",
        &["stack \"web\": env: \"A=B\" is not a valid variable name"],
    );
    check(
        "image = \"i\"\ncommand = [\"x\"]\nhook_token = \"short\"",
        &["stack \"web\": hook_token must be at least 22 characters"],
    );
    check(
        "image = \"i\"\ncommand = [\"x\"]\nhook_token = \"abcdefghijklmnopqrstuvwxyz!\"",
        &["stack \"web\": hook_token must be at least 22 characters"],
    );
    check("image = \"i\"\ncommand = [\"x\"]\nhook_token = \"abcdefghijklmnopqrstuvwxyz\"\nhook_token_env = \"X\"", &["stack \"web\": set only one of hook_token"]);
    check(
        "image = \"i\"\ncommand = [\"x\"]\nping = \"maybe\"",
        &["unknown variant `maybe`", "line 5"],
    );
    check(
        "image = \"i\"\ncommand = [\"x\"]\n[stacks.profiles.\"bad name\"]",
        &["stack \"web\": profile \"bad name\": name must be"],
    );
    check(
        "image = \"i\"\ncommand = [\"x\"]\n[stacks.profiles.\"\"]",
        &["stack \"web\": profile \"\": name must be"],
    );
    check(
        "image = \"i\"\ncommand = [\"x\"]\n[stacks.profiles.fast]\ncommand = []",
        &["stack \"web\": profile \"fast\": command is empty"],
    );
    check(
        "image = \"i\"\nhttp = { url = \"https://h\" }\n[stacks.profiles.fast]\ncommand = [\"y\"]",
        &["stack \"web\": profile \"fast\": command only applies to command stacks"],
    );
    check(
        "command = [\"x\"]\n[[stacks.services]]\nimage = \"a\"",
        &["stack \"web\": services[0]: name is required"],
    );
    check(
        "command = [\"x\"]\n[[stacks.services]]\nname = \"\"\nimage = \"a\"",
        &["stack \"web\": services[0]: name is empty"],
    );
    check("command = [\"x\"]\n[[stacks.services]]\nname = \"api\"\nimage = \"a\"\n[[stacks.services]]\nname = \"api\"\nimage = \"b\"", &["stack \"web\": service \"api\": name is used by more than one service"]);
}

#[test]
fn stack_name_errors() {
    assert_err(
        "[[stacks]]\nimage = \"i\"\ncommand = [\"x\"]",
        &["stacks[0]: name is required"],
    );
    assert_err(
        "[[stacks]]\nname = \"a b\"\nimage = \"i\"\ncommand = [\"x\"]",
        &["stack \"a b\": name must be 1 to 64 characters"],
    );
    let long = "a".repeat(65);
    assert_err(
        &format!("[[stacks]]\nname = \"{long}\"\nimage = \"i\"\ncommand = [\"x\"]"),
        &["name must be 1 to 64 characters"],
    );
    parse_ok(&format!(
        "[[stacks]]\nname = \"{}\"\nimage = \"i\"\ncommand = [\"x\"]",
        "a".repeat(64)
    ));
    assert_err(
        &format!("{MINIMAL}{MINIMAL}"),
        &["stack \"web\": name is used by more than one stack"],
    );
}

#[test]
fn stack_names_that_escape_the_logs_directory_are_refused() {
    for bad in [".", "..", ".hidden", "-x", "_x"] {
        assert_err(
            &format!("[[stacks]]\nname = \"{bad}\"\nimage = \"i\"\ncommand = [\"x\"]"),
            &[
                &format!("stack {bad:?}: name must be 1 to 64 characters"),
                "starting with a letter or digit",
            ],
        );
    }
    parse_ok("[[stacks]]\nname = \"web.v2_a-b\"\nimage = \"i\"\ncommand = [\"x\"]");
}

#[test]
fn manual_policy_and_query_selection_settings() {
    let config = parse_ok(MINIMAL);
    let web = &config.stacks[0];
    assert_eq!(web.manual, DEFAULT_MANUAL);
    assert!(web.query_services);
    assert_eq!(config.server.max_event_age, DEFAULT_MAX_EVENT_AGE);
    let config = parse_ok(&format!(
        "[server]\nmax_event_age = \"2m\"\n{MINIMAL}secrets = [\"s3cret-of-16-bytes\"]\nmanual = \"signed\"\nquery_services = false\n[stacks.profiles.risky]\nselectable = false\n[stacks.profiles.fast]\n"
    ));
    let web = &config.stacks[0];
    assert_eq!(web.manual, ManualSetting::Signed);
    assert!(!web.query_services);
    assert!(!web.profiles["risky"].selectable);
    assert!(web.profiles["fast"].selectable);
    assert_eq!(config.server.max_event_age, Duration::from_secs(120));
    assert_err(
        &format!("{MINIMAL}manual = \"signed\"\n"),
        &["stack \"web\"", "manual = \"signed\" needs secrets"],
    );
    assert_err(&format!("{MINIMAL}manual = \"sometimes\"\n"), &["manual"]);
    assert_err(
        &format!("[server]\nmax_event_age = \"0s\"\n{MINIMAL}"),
        &["max_event_age"],
    );
}
