//! Unit tests of the configuration: helpers, whole files, the `[server]`
//! and `[hook]` tables, loading and syntax errors. The tests of stacks,
//! secrets and `[stacks.github]` are in the submodules.

use super::*;

mod github;
mod journal;
mod notifications;
mod secrets;
mod stacks;

fn base() -> PathBuf {
    PathBuf::from("/etc/redeploy")
}

fn parse_ok(text: &str) -> Config {
    match parse(text, &base()) {
        Ok(config) => config,
        Err(err) => panic!("expected the config to parse, got: {err}"),
    }
}

fn parse_err(text: &str) -> String {
    match parse(text, &base()) {
        Ok(_) => panic!("expected an error for:\n{text}"),
        Err(err) => err.to_string(),
    }
}

fn assert_err(text: &str, expected: &[&str]) {
    let message = parse_err(text);
    for part in expected {
        assert!(
            message.contains(part),
            "error {message:?} does not contain {part:?}"
        );
    }
    assert!(!message.ends_with('.'), "trailing period: {message:?}");
}

/// A unique name for an env var or temp file used by one test.
fn unique(tag: &str) -> String {
    format!(
        "REDEPLOY_CONFIG_TEST_{}_{}_{}",
        tag,
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}

fn set_env(name: &str, value: &str) {
    // Edition 2021: set_var is safe; each test uses its own unique name.
    #[allow(unused_unsafe)]
    unsafe {
        std::env::set_var(name, value)
    };
}

/// A file in the temporary directory, removed when dropped (a test that
/// fails removes it too).
struct TempFile(PathBuf);

impl std::ops::Deref for TempFile {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for TempFile {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        // Some tests remove it themselves, to see a missing file refused.
        let _ = std::fs::remove_file(&self.0);
    }
}

fn temp_file(tag: &str, contents: &str) -> TempFile {
    let path = std::env::temp_dir().join(unique(tag));
    std::fs::write(&path, contents).unwrap();
    TempFile(path)
}

const MINIMAL: &str = r#"
        [[stacks]]
        name = "web"
        repository = "octocat/Hello-World"
        branch = "main"
        command = ["./deploy.sh"]
    "#;

#[test]
fn parses_a_complete_example() {
    let gh_var = unique("GH");
    set_env(&gh_var, "ghp_secret_token_value");
    let env_secret_var = unique("HOOK");
    set_env(&env_secret_var, "from-env-secret");
    let text = format!(
        r#"
            [server]
            listen = "0.0.0.0:9000"
            public_url = "https://deploy.example.com/"
            state_dir = "/var/lib/redeploy"
            max_body_bytes = 1048576
            max_concurrent_deploys = 2
            max_queued_deliveries = 50
            shutdown_grace = "1m"
            header_timeout = "5s"
            body_timeout = "20s"

            [[stacks]]
            name = "web"
            repository = "octocat/Hello-World"
            branch = "main"
            tags = "v*"
            secrets = ["s3cret-s3cret", "0ld-s3cret"]
            secrets_env = ["{env_secret_var}"]
            hook_token = "abcdefghijklmnopqrstuvwxyz_-0123"
            ping = "acknowledge"
            paths = ["src/**", "Dockerfile"]
            skip_markers = ["[no deploy]"]
            command = ["./deploy.sh", "--fast"]
            workdir = "app"
            env = {{ APP_ENV = "production" }}
            timeout = "15m"
            environment_url = "https://web.example.com"

            [stacks.profiles.fast]
            command = ["./deploy.sh", "--faster"]
            env = {{ FAST = "1" }}

            [stacks.profiles.plain]

            [stacks.github]
            repository = "octocat/Hello-World"
            api_url = "https://ghe.example.com/api/v3/"
            token_env = "{gh_var}"
            environment = "prod"
            transient_environment = true
            production_environment = true
            auto_merge = true
            required_contexts = ["ci/build"]
            wait_for_event = false

            [[stacks]]
            name = "multi"
            http = {{ url = "https://deploy.internal/hooks/multi?x=1", headers = {{ Authorization = "Bearer x" }} }}

            [[stacks.services]]
            name = "api"
            repository = "https://github.com/acme/api.git"
            branch = "main"

            [[stacks.services]]
            name = "worker"
            image = "acme/worker"
            tags = "v*"
            "#
    );
    let config = parse_ok(&text);

    assert_eq!(config.base_dir, base());
    let server = &config.server;
    assert_eq!(server.listen, "0.0.0.0:9000".parse().unwrap());
    assert_eq!(
        server.public_url.as_deref(),
        Some("https://deploy.example.com")
    );
    assert_eq!(server.state_dir, PathBuf::from("/var/lib/redeploy"));
    assert_eq!(server.max_body_bytes, 1048576);
    assert_eq!(server.max_concurrent_deploys, 2);
    assert_eq!(server.max_queued_deliveries, 50);
    assert_eq!(server.shutdown_grace, Duration::from_secs(60));
    assert_eq!(server.header_timeout, Duration::from_secs(5));
    assert_eq!(server.body_timeout, Duration::from_secs(20));

    let web = config.stack("web").unwrap();
    assert_eq!(web.repository.as_deref(), Some("octocat/Hello-World"));
    assert_eq!(web.branch.as_deref(), Some("main"));
    assert_eq!(web.tags.as_deref(), Some("v*"));
    assert_eq!(web.image, None);
    assert!(web.services.is_empty());
    let secrets: Vec<&str> = web.secrets.iter().map(Secret::expose).collect();
    assert_eq!(secrets, ["s3cret-s3cret", "0ld-s3cret", "from-env-secret"]);
    assert_eq!(
        web.hook_token.as_ref().map(Secret::expose),
        Some("abcdefghijklmnopqrstuvwxyz_-0123")
    );
    assert_eq!(web.ping, PingSetting::Acknowledge);
    assert_eq!(web.paths, ["src/**", "Dockerfile"]);
    assert_eq!(web.skip_markers, ["[no deploy]"]);
    match &web.action {
        DeployAction::Command { argv, workdir, env } => {
            assert_eq!(argv, &["./deploy.sh", "--fast"]);
            assert_eq!(workdir, &PathBuf::from("/etc/redeploy/app"));
            assert_eq!(env.get("APP_ENV").map(String::as_str), Some("production"));
        }
        other => panic!("expected a command, got {other:?}"),
    }
    assert_eq!(web.timeout, Duration::from_secs(15 * 60));
    let fast = &web.profiles["fast"];
    assert_eq!(
        fast.command.as_deref(),
        Some(&["./deploy.sh".to_string(), "--faster".to_string()][..])
    );
    assert_eq!(fast.env.get("FAST").map(String::as_str), Some("1"));
    let plain = &web.profiles["plain"];
    assert!(plain.command.is_none() && plain.env.is_empty());
    assert_eq!(
        web.environment_url.as_deref(),
        Some("https://web.example.com")
    );
    let gh = web.github.as_ref().unwrap();
    assert_eq!(gh.repository, "octocat/Hello-World");
    assert_eq!(gh.api_url, "https://ghe.example.com/api/v3");
    assert_eq!(
        gh.token.as_ref().map(Secret::expose),
        Some("ghp_secret_token_value")
    );
    assert_eq!(gh.environment, "prod");
    assert!(gh.transient_environment);
    assert!(gh.production_environment);
    assert!(gh.auto_merge);
    assert_eq!(gh.required_contexts, ["ci/build"]);
    assert!(!gh.wait_for_event);

    let multi = config.stack("multi").unwrap();
    assert_eq!(multi.repository, None);
    assert_eq!(multi.services.len(), 2);
    assert_eq!(multi.services[0].name, "api");
    assert_eq!(
        multi.services[0].repository.as_deref(),
        Some("https://github.com/acme/api.git")
    );
    assert_eq!(multi.services[0].branch.as_deref(), Some("main"));
    assert_eq!(multi.services[1].name, "worker");
    assert_eq!(multi.services[1].image.as_deref(), Some("acme/worker"));
    assert_eq!(multi.services[1].tags.as_deref(), Some("v*"));
    match &multi.action {
        DeployAction::Http { url, headers } => {
            assert_eq!(url, "https://deploy.internal/hooks/multi?x=1");
            assert_eq!(
                headers.get("Authorization").map(String::as_str),
                Some("Bearer x")
            );
        }
        other => panic!("expected http, got {other:?}"),
    }
    assert!(config.stack("nope").is_none());
}

#[test]
fn server_defaults() {
    let config = parse_ok("");
    let server = &config.server;
    assert_eq!(server.listen, DEFAULT_LISTEN.parse().unwrap());
    assert_eq!(server.public_url, None);
    assert_eq!(server.state_dir, PathBuf::from("/etc/redeploy/state"));
    assert_eq!(server.max_body_bytes, 25 * 1024 * 1024);
    assert_eq!(server.max_concurrent_deploys, 4);
    assert_eq!(server.max_queued_deliveries, 1000);
    assert_eq!(server.shutdown_grace, Duration::from_secs(30));
    assert_eq!(server.header_timeout, Duration::from_secs(10));
    assert_eq!(server.body_timeout, Duration::from_secs(30));
    assert!(config.stacks.is_empty());
}

#[test]
fn relative_paths_resolve_against_base_dir() {
    let config = parse_ok(&format!(
        "[server]\nstate_dir = \"./data/../db\"\n{}",
        MINIMAL.replace("command", "workdir = \"./site\"\ncommand")
    ));
    // `std::path::absolute` drops `.` but keeps `..` (symlink-safe).
    assert_eq!(
        config.server.state_dir,
        PathBuf::from("/etc/redeploy/data/../db")
    );
    match &config.stacks[0].action {
        DeployAction::Command { workdir, .. } => {
            assert_eq!(workdir, &PathBuf::from("/etc/redeploy/site"))
        }
        other => panic!("expected a command, got {other:?}"),
    }
}

#[test]
fn server_validation_errors() {
    assert_err(
        "[server]\nlisten = \"nowhere\"",
        &["server: listen \"nowhere\""],
    );
    assert_err(
        "[server]\npublic_url = \"ftp://x\"",
        &["server: public_url \"ftp://x\" is not an http(s) URL"],
    );
    assert_err(
        "[server]\npublic_url = \"https://x/?a=b\"",
        &["server: public_url", "must not have a query"],
    );
    assert_err(
        "[server]\npublic_url = \"https://\"",
        &["public_url", "has no host"],
    );
    assert_err(
        "[server]\nmax_body_bytes = 0",
        &["server: max_body_bytes must be at least 1"],
    );
    assert_err(
        "[server]\nmax_concurrent_deploys = 0",
        &["server: max_concurrent_deploys must be at least 1"],
    );
    assert_err(
        "[server]\nmax_queued_deliveries = 0",
        &["server: max_queued_deliveries must be at least 1"],
    );
    assert_err(
        "[server]\nshutdown_grace = \"soon\"",
        &["server: shutdown_grace \"soon\" is not a duration"],
    );
    assert_err(
        "[server]\nheader_timeout = \"0s\"",
        &["server: header_timeout must be greater than zero"],
    );
    // A duration a deadline cannot be counted from: refused, not a panic on
    // every connection (hyper adds it to the time each request starts).
    assert_err(
        "[server]\nheader_timeout = \"18446744073709551615s\"",
        &["server: header_timeout \"18446744073709551615s\" is longer than 100 years"],
    );
    assert_err(
        "[server]\nwrite_timeout = \"101years\"",
        &["server: write_timeout \"101years\" is longer than 100 years"],
    );
    assert_err(
        "[server]\nbody_timeout = \"0s\"",
        &["server: body_timeout must be greater than zero"],
    );
    assert_err(
        "[server]\nmax_body_bytes = -1",
        &["line 2", "max_body_bytes"],
    );
}

#[test]
fn a_config_file_over_the_limit_is_refused() {
    let mut text = MINIMAL.to_string();
    text.push_str(&format!("# {}\n", "x".repeat(MAX_CONFIG_BYTES as usize)));
    let file = temp_file("bigconfig", &text);
    // The file is the message, what is wrong with reading it the source.
    let message = format!("{:#}", anyhow::Error::new(load(&file).unwrap_err()));
    assert!(message.starts_with(&format!("cannot read {}: ", file.display())));
    assert!(message.contains("is over 1048576 bytes"), "{message}");
}

/// Found by the `config` fuzz target: a syntax error after a non-ASCII
/// character and an `=` panicked while naming the key.
#[test]
fn syntax_error_after_non_ascii_text_names_the_position() {
    let message = parse_err("['{  \"reli[sv\0yive[[came oci.giety= \u{29f}-=");
    assert!(message.starts_with("line 1, column "), "{message}");
    let message = parse_err("[server]\nlisten = é=\n");
    assert!(message.starts_with("line 2, column "), "{message}");
}

#[test]
fn unknown_keys_are_rejected_naming_the_key() {
    assert_err("bogus = 1\n", &["line 1", "unknown field `bogus`"]);
    assert_err(
        "[server]\nlisten_on = \"x\"\n",
        &["line 2", "unknown field `listen_on`"],
    );
    assert_err(
        &format!("{MINIMAL}brnach = \"main\"\n"),
        &["unknown field `brnach`"],
    );
    assert_err(
        &format!("{MINIMAL}[stacks.github]\nrepository = \"o/r\"\nenviroment = \"x\"\n"),
        &["unknown field `enviroment`"],
    );
    assert_err(
        &format!("{MINIMAL}[stacks.profiles.fast]\ncmd = [\"x\"]\n"),
        &["unknown field `cmd`"],
    );
    assert_err(
        "[[stacks]]\nname = \"m\"\ncommand = [\"x\"]\n[[stacks.services]]\nname = \"a\"\nimage = \"i\"\nport = 1\n",
        &["unknown field `port`"],
    );
    assert_err(
        &format!("{MINIMAL}http = {{ url = \"https://h\", method = \"PUT\" }}\n"),
        &["line 7, column 33: unknown field `method`"],
    );
}

#[test]
fn load_names_the_file() {
    let path = temp_file("LOAD", "bogus = 1\n");
    let message = load(&path).unwrap_err().to_string();
    assert!(
        message.starts_with(&path.display().to_string()),
        "{message}"
    );
    assert!(message.contains("unknown field `bogus`"), "{message}");

    std::fs::write(&path, "[[stacks]]\nname = \"web\"\nimage = \"i\"\n").unwrap();
    let message = load(&path).unwrap_err().to_string();
    assert!(
        message.starts_with(&path.display().to_string()),
        "{message}"
    );
    assert!(
        message.ends_with("stack \"web\": set command or http"),
        "{message}"
    );

    std::fs::write(&path, MINIMAL).unwrap();
    let config = load(&path).unwrap();
    assert_eq!(config.base_dir, std::env::temp_dir());
    assert_eq!(config.server.state_dir, std::env::temp_dir().join("state"));
    std::fs::remove_file(&path).unwrap();

    let message = load(&path).unwrap_err().to_string();
    assert!(message.starts_with("cannot read "), "{message}");
}

#[test]
fn hook_table() {
    let config = parse(
        "[hook]\nserver = \"http://127.0.0.1:8080/\"\nrepositories = { \"/srv/git/app.git\" = \"acme/app\" }\n",
        Path::new("/etc/redeploy"),
    )
    .unwrap();
    assert_eq!(config.hook.server.as_deref(), Some("http://127.0.0.1:8080"));
    assert!(!config.hook.wait);
    assert!(
        parse("[hook]\nwait = true\n", Path::new("/"))
            .unwrap()
            .hook
            .wait
    );
    // With a server the hook runs nothing itself, so nothing to wait for:
    // refused, not ignored.
    let err = parse(
        "[hook]\nserver = \"http://127.0.0.1:8080\"\nwait = true\n",
        Path::new("/"),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains(
            "hook: wait = true with server: the hook hands each deploy to the server and returns"
        ),
        "{err}"
    );
    assert!(parse(
        "[hook]\nserver = \"http://127.0.0.1:8080\"\nwait = false\n",
        Path::new("/")
    )
    .is_ok());
    assert_eq!(
        config
            .hook
            .repositories
            .get(Path::new("/srv/git/app.git"))
            .map(String::as_str),
        Some("acme/app")
    );
    let err = parse(
        "[hook]\nrepositories = { \"relative.git\" = \"a/b\" }\n",
        Path::new("/"),
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("hook: repositories: \"relative.git\" is not an absolute path"),
        "{err}"
    );
    // git shows the hook's messages to whoever pushes, and the hook sends
    // each stack's hook token to the server.
    let err = parse(
        "[hook]\nserver = \"http://bob:S3CRETPW@127.0.0.1:8080\"\n",
        Path::new("/"),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("hook: server must not hold a user or password"),
        "{err}"
    );
    assert!(!err.contains("S3CRETPW"), "{err}");
    let err = parse(
        "[hook]\nserver = \"http://deploy.example.com:8080\"\n",
        Path::new("/"),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("must be https, or http to this host"), "{err}");
    for good in [
        "https://deploy.example.com",
        "http://[::1]:8080",
        "http://localhost:8080",
    ] {
        let toml = format!("[hook]\nserver = {good:?}\n");
        assert!(parse(&toml, Path::new("/")).is_ok(), "{good}");
    }
    assert!(parse("[hook]\nservr = \"x\"\n", Path::new("/"))
        .unwrap_err()
        .to_string()
        .contains("servr"));
}
