//! Unit tests of the `[stacks.github]` table.

use super::*;

/// Stack "web" of [`MINIMAL`] with `lines` in its `[stacks.github]` table
/// (the token from `var`), parsed: its GitHub settings.
fn github_settings(var: &str, lines: &str) -> GithubConfig {
    let config = parse_ok(&format!(
        "{MINIMAL}\n[stacks.github]\nrepository = \"o/r\"\ntoken_env = \"{var}\"\n{lines}"
    ));
    config.stack("web").unwrap().github.clone().unwrap()
}

#[test]
fn github_defaults() {
    let var = unique("GHDEF");
    set_env(&var, "tok");
    let gh = github_settings(&var, "");
    assert_eq!(gh.api_url, "https://api.github.com");
    assert_eq!(gh.environment, "web");
    assert!(!gh.transient_environment);
    assert!(!gh.production_environment);
    assert!(!gh.auto_merge);
    assert!(gh.required_contexts.is_empty());
    assert!(gh.wait_for_event);

    // production_environment follows environment == "production".
    assert!(github_settings(&var, "environment = \"production\"\n").production_environment);
    // A plain-http loopback API is allowed (tests use a stand-in).
    assert_eq!(
        github_settings(&var, "api_url = \"http://127.0.0.1:3456\"\n").api_url,
        "http://127.0.0.1:3456"
    );
}

#[test]
fn api_url_must_be_https_or_loopback_http() {
    let var = unique("GHAPIURL");
    set_env(&var, "tok");
    let gh = |url: &str| {
        format!("{MINIMAL}\n[stacks.github]\nrepository = \"o/r\"\ntoken_env = \"{var}\"\napi_url = \"{url}\"\n")
    };
    for bad in [
        "http://ghe.example.com/api/v3",
        "http://10.0.0.1",
        "http://127.0.0.1.example.com",
    ] {
        assert_err(
            &gh(bad),
            &[&format!("stack \"web\": github.api_url {bad:?} must be https (plain http only to a loopback host)")],
        );
    }
    for good in [
        "https://ghe.example.com/api/v3",
        "http://127.0.0.1:3456",
        "http://localhost:1",
        "http://[::1]:8",
    ] {
        parse_ok(&gh(good));
    }
}

#[test]
fn github_validation_errors() {
    let var = unique("GHERR");
    set_env(&var, "tok");
    let gh = |body: &str| format!("{MINIMAL}\n[stacks.github]\n{body}\n");
    assert_err(
        &gh(&format!("token_env = \"{var}\"")),
        &["stack \"web\": github.repository is required"],
    );
    assert_err(
        &gh(&format!(
            "repository = \"https://github.com/o/r\"\ntoken_env = \"{var}\""
        )),
        &["stack \"web\": github.repository \"https://github.com/o/r\" must be owner/name"],
    );
    assert_err(
        &gh("repository = \"o/r\""),
        &[
            "stack \"web\": github needs a token",
            "token_env",
            "token_file",
        ],
    );
    let missing = unique("GHMISSING");
    assert_err(
        &gh(&format!("repository = \"o/r\"\ntoken_env = \"{missing}\"")),
        &["stack \"web\": github.token_env", &missing, "is not set"],
    );
    assert_err(
        &gh(&format!(
            "repository = \"o/r\"\ntoken_env = \"{var}\"\napi_url = \"api.github.com\""
        )),
        &["stack \"web\": github.api_url \"api.github.com\" is not an http(s) URL"],
    );
    assert_err(
        &gh(&format!(
            "repository = \"o/r\"\ntoken_env = \"{var}\"\nrequired_contexts = [\"\"]"
        )),
        &["stack \"web\": github.required_contexts[0] is empty"],
    );
    let missing_file = std::env::temp_dir().join(unique("GHFILE"));
    assert_err(
        &gh(&format!(
            "repository = \"o/r\"\ntoken_file = \"{}\"",
            missing_file.display()
        )),
        &["stack \"web\": github.token_file", "no such file"],
    );
}

#[test]
fn github_token_in_toml_is_rejected_without_echoing_it() {
    let message = parse_err(&format!(
        "{MINIMAL}\n[stacks.github]\nrepository = \"o/r\"\ntoken = \"ghp_TOPSECRET\"\n"
    ));
    assert!(
        message.contains("stack \"web\": github.token is not allowed"),
        "{message}"
    );
    assert!(
        message.contains("token_env") && message.contains("token_file"),
        "{message}"
    );
    assert!(!message.contains("TOPSECRET"), "{message}");
}

#[test]
fn github_token_from_file() {
    let file = temp_file("GHTOKEN", "ghp_from_file\n");
    let config = parse_ok(&format!(
        "{MINIMAL}\n[stacks.github]\nrepository = \"o/r\"\ntoken_file = \"{}\"\n",
        file.display()
    ));
    let gh = config.stack("web").unwrap().github.clone().unwrap();
    assert_eq!(gh.token.unwrap().expose(), "ghp_from_file");
}

#[test]
fn a_failed_request_and_a_missing_event_have_defaults_and_bounds() {
    let var = unique("GHFALLBACK");
    set_env(&var, "tok");
    let gh = github_settings(&var, "");
    assert_eq!(
        gh.retry_request_for,
        crate::config::DEFAULT_RETRY_REQUEST_FOR
    );
    assert_eq!(
        gh.on_request_failure,
        crate::config::OnRequestFailure::Deploy
    );
    assert_eq!(gh.event_wait, crate::config::DEFAULT_EVENT_WAIT);
    let gh = github_settings(
        &var,
        "retry_request_for = \"90s\"\non_request_failure = \"give-up\"\nevent_wait = \"3s\"\n",
    );
    assert_eq!(gh.retry_request_for, std::time::Duration::from_secs(90));
    assert_eq!(
        gh.on_request_failure,
        crate::config::OnRequestFailure::GiveUp
    );
    assert_eq!(gh.event_wait, std::time::Duration::from_secs(3));
    // No retry at all is allowed: a failure falls back at once.
    assert!(github_settings(&var, "retry_request_for = \"0s\"\n")
        .retry_request_for
        .is_zero());
    let gh = |line: &str| {
        format!("{MINIMAL}\n[stacks.github]\nrepository = \"o/r\"\ntoken_env = \"{var}\"\n{line}\n")
    };
    assert_err(
        &gh("retry_request_for = \"2days\""),
        &["stack \"web\": github.retry_request_for must be at most 1day"],
    );
    assert_err(
        &gh("retry_request_for = \"soon\""),
        &["stack \"web\": github.retry_request_for \"soon\" is not a duration"],
    );
    assert_err(
        &gh("on_request_failure = \"retry\""),
        &["stack \"web\": github.on_request_failure \"retry\" must be \"deploy\" or \"give-up\""],
    );
    for bad in ["0s", "500ms", "25h"] {
        assert_err(
            &gh(&format!("event_wait = \"{bad}\"")),
            &["stack \"web\": github.event_wait must be between 1s and 1day"],
        );
    }
}

#[test]
fn catch_up_is_on_by_default_bounded_and_can_be_turned_off() {
    let var = unique("GHCATCHUP");
    set_env(&var, "tok");
    assert_eq!(
        github_settings(&var, "").catch_up_every,
        Some(DEFAULT_CATCH_UP_EVERY)
    );
    assert_eq!(
        github_settings(&var, "catch_up_every = \"30s\"\n").catch_up_every,
        Some(Duration::from_secs(30))
    );
    assert_eq!(
        github_settings(&var, "catch_up_every = \"off\"\n").catch_up_every,
        None
    );
    let gh = |every: &str| {
        format!("{MINIMAL}\n[stacks.github]\nrepository = \"o/r\"\ntoken_env = \"{var}\"\ncatch_up_every = \"{every}\"\n")
    };
    for (every, why) in [
        ("0s", "must be from 1s to 1day"),
        ("2days", "must be from 1s to 1day"),
        ("often", "is not a duration"),
    ] {
        assert_err(&gh(every), &["stack \"web\": github.catch_up_every", why]);
    }
}
