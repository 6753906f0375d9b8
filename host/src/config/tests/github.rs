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
