//! Unit tests of secrets and hook tokens: where they are read from, their
//! minimum length, file size limits, and that they never leak.

use super::*;

#[test]
fn a_secret_shorter_than_the_minimum_is_refused_without_echoing_it() {
    let stack = |secrets: &str| {
        format!("[[stacks]]\nname = \"web\"\nimage = \"i\"\ncommand = [\"x\"]\n{secrets}")
    };
    let message = parse_err(&stack("secrets = [\"q\"]"));
    assert!(
        message.contains("stack \"web\": secrets[0] is shorter than the minimum of 8 bytes"),
        "{message}"
    );
    assert!(!message.contains("\"q\""), "{message}");
    parse_ok(&stack("secrets = [\"topsecret\"]"));
    let var = unique("SHORTSECRET");
    set_env(&var, "1234567");
    assert_err(
        &stack(&format!("secrets_env = [\"{var}\"]")),
        &[&format!(
            "secrets_env: environment variable {var} is shorter than the minimum of 8 bytes"
        )],
    );
    let file = temp_file("shortsecret", "long-enough-secret\nshort\n");
    assert_err(
        &stack(&format!("secrets_file = {:?}", file.display().to_string())),
        &["line 2 is shorter than the minimum of 8 bytes"],
    );
}

#[test]
fn a_secret_file_over_the_limit_is_refused_not_cut() {
    let mut text = "a-real-secret-1\n".repeat((MAX_SECRET_FILE_BYTES / 16) as usize);
    text.push_str("the-current-secret\n");
    let file = temp_file("bigsecrets", &text);
    assert_err(
        &format!(
            "[[stacks]]\nname = \"web\"\nimage = \"i\"\ncommand = [\"x\"]\nsecrets_file = {:?}",
            file.display().to_string()
        ),
        &["secrets_file", "is over 65536 bytes"],
    );
}

#[test]
fn secrets_from_env_and_file() {
    let var = unique("SECRET");
    set_env(&var, "env-secret");
    let file = temp_file("SECRETS", "\nfile-one-secret\r\n\n  file-two-secret  \n\n");
    let config = parse_ok(&format!(
        "{MINIMAL}secrets = [\"inline-secret\"]\nsecrets_env = [\"{var}\"]\nsecrets_file = \"{}\"\n",
        file.display()
    ));
    let secrets: Vec<&str> = config.stacks[0]
        .secrets
        .iter()
        .map(Secret::expose)
        .collect();
    assert_eq!(
        secrets,
        [
            "inline-secret",
            "env-secret",
            "file-one-secret",
            "file-two-secret"
        ]
    );
    std::fs::remove_file(&file).unwrap();

    let message = parse_err(&format!("{MINIMAL}secrets_file = \"{}\"\n", file.display()));
    assert!(
        message.starts_with("stack \"web\": secrets_file"),
        "{message}"
    );

    let empty = temp_file("EMPTYSECRETS", "\n\n");
    assert_err(
        &format!("{MINIMAL}secrets_file = \"{}\"\n", empty.display()),
        &["stack \"web\": secrets_file", "holds no secret"],
    );
    std::fs::remove_file(&empty).unwrap();

    let missing = unique("NOSUCHVAR");
    assert_err(
        &format!("{MINIMAL}secrets_env = [\"{missing}\"]\n"),
        &["stack \"web\": secrets_env", &missing, "is not set"],
    );
}

#[test]
fn hook_token_from_env_and_file() {
    let var = unique("TOKEN");
    set_env(&var, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
    let config = parse_ok(&format!("{MINIMAL}hook_token_env = \"{var}\"\n"));
    assert_eq!(
        config.stacks[0].hook_token.as_ref().unwrap().expose(),
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
    );
    let file = temp_file("TOKENFILE", "BBBBBBBBBBBBBBBBBBBBBBBB\n");
    let config = parse_ok(&format!(
        "{MINIMAL}hook_token_file = \"{}\"\n",
        file.display()
    ));
    assert_eq!(
        config.stacks[0].hook_token.as_ref().unwrap().expose(),
        "BBBBBBBBBBBBBBBBBBBBBBBB"
    );
    std::fs::remove_file(&file).unwrap();
    let missing = unique("NOTOKEN");
    assert_err(
        &format!("{MINIMAL}hook_token_env = \"{missing}\"\n"),
        &["stack \"web\": hook_token_env", &missing, "is not set"],
    );
}

#[test]
fn secrets_never_appear_in_debug_or_errors() {
    let gh_var = unique("GHDBG");
    set_env(&gh_var, "GH-TOKEN-VALUE-XYZ");
    let config = parse_ok(&format!(
        "[[stacks]]\nname = \"web\"\nimage = \"i\"\nsecrets = [\"WEBHOOK-SECRET-XYZ\"]\n\
         hook_token = \"HOOKTOKENVALUEXYZ0123456789\"\ncommand = [\"x\"]\n\
         env = {{ DB_PASSWORD = \"ENV-SECRET-XYZ\" }}\n\
         [stacks.profiles.p]\nenv = {{ P = \"PROFILE-SECRET-XYZ\" }}\n\
         [stacks.github]\nrepository = \"o/r\"\ntoken_env = \"{gh_var}\"\n\
         [[stacks]]\nname = \"h\"\nimage = \"i\"\n\
         http = {{ url = \"https://h\", headers = {{ Authorization = \"Bearer HEADER-SECRET-XYZ\" }} }}\n"
    ));
    let debug = format!("{config:?} {:#?}", config.stacks);
    for secret in [
        "WEBHOOK-SECRET-XYZ",
        "HOOKTOKENVALUEXYZ",
        "GH-TOKEN-VALUE-XYZ",
        "ENV-SECRET-XYZ",
        "PROFILE-SECRET-XYZ",
        "HEADER-SECRET-XYZ",
    ] {
        assert!(!debug.contains(secret), "{secret} leaked into {debug}");
    }
    assert!(debug.contains("<redacted>"));
    assert!(debug.contains("DB_PASSWORD") && debug.contains("Authorization"));
    assert_eq!(format!("{}", Secret::new("x")), "<redacted>");

    // Type errors in secret-bearing fields do not quote the value, and
    // syntax errors do not quote the source line.
    for body in [
        "secrets = \"LEAKY-SECRET\"",
        "secrets = [\"ok\", 7]\nbogus = \"LEAKY-SECRET\"",
        "hook_token = [\"LEAKY-SECRET\"]",
        "env = \"LEAKY-SECRET\"",
        "http = { url = \"https://h\", headers = \"LEAKY-SECRET\" }",
        "secrets = [\"LEAKY-SECRET\"\n",
        "secretz = \"LEAKY-SECRET\"",
    ] {
        let message = parse_err(&format!("{MINIMAL}{body}\n"));
        assert!(!message.contains("LEAKY"), "{body}: {message}");
    }
    // A hook token that is too short is not echoed.
    let message = parse_err(&format!("{MINIMAL}hook_token = \"LEAKY-short\"\n"));
    assert!(!message.contains("LEAKY"), "{message}");
}

/// A command reads the secrets of the stacks it uses: a stack left out of
/// its [`SecretScope`] loads with its env and file secrets unread, and the
/// stack in it still fails on its own missing secret.
#[test]
fn only_the_stacks_in_the_secret_scope_have_their_secrets_read() {
    let missing = unique("UNSETVAR");
    let missing_file = std::env::temp_dir().join(unique("nosuchfile"));
    let text = format!(
        "[[stacks]]\nname = \"web\"\nimage = \"i\"\ncommand = [\"x\"]\nmanual = \"signed\"\n\
         secrets = [\"inline-secret\"]\nsecrets_env = [\"{missing}\"]\n\
         secrets_file = {:?}\nhook_token_env = \"{missing}\"\n\
         [stacks.github]\nrepository = \"acme/web\"\ntoken_env = \"{missing}\"\n\
         [[stacks]]\nname = \"api\"\nimage = \"j\"\ncommand = [\"x\"]\n",
        missing_file.display().to_string()
    );
    let scoped = |scope| parse_scoped(&text, &base(), &ProcessSecrets, scope);
    for scope in [SecretScope::Stack("api"), SecretScope::NoStack] {
        let config = scoped(scope).unwrap();
        let web = config.stack("web").unwrap();
        assert!(!web.secrets_read);
        assert_eq!(web.secrets.len(), 1, "only the inline secret");
        assert!(web.hook_token.is_none());
        assert!(web.github.as_ref().unwrap().token.is_none());
        assert_eq!(
            config.stack("api").unwrap().secrets_read,
            scope.includes("api")
        );
    }
    for scope in [SecretScope::Every, SecretScope::Stack("web")] {
        let message = scoped(scope).unwrap_err().to_string();
        assert!(
            message.contains(&format!(
                "stack \"web\": secrets_env: environment variable {missing} is not set"
            )),
            "{message}"
        );
    }
    // Every rule but the reading still applies to a stack left out.
    let no_secret =
        "[[stacks]]\nname = \"web\"\nimage = \"i\"\ncommand = [\"x\"]\nmanual = \"signed\"\n";
    let message = parse_scoped(no_secret, &base(), &ProcessSecrets, SecretScope::NoStack)
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("manual = \"signed\" needs secrets"),
        "{message}"
    );
}
