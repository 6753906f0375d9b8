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
