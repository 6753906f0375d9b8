//! Unit tests of the `[[notifications]]` channels.

use super::*;

/// [`MINIMAL`] with `channel` as its one `[[notifications]]` table.
fn with_channel(channel: &str) -> String {
    format!("{MINIMAL}\n[[notifications]]\n{channel}")
}

#[test]
fn a_chat_channel_reads_its_url_from_a_file_and_hears_how_deploys_end_by_default() {
    let url = temp_file(
        "CHATURL",
        "https://hooks.slack.com/services/T0/B0/s3cretpart\n",
    );
    let config = parse_ok(&with_channel(&format!(
        "name = \"ops\"\nkind = \"chat\"\nurl_file = {:?}\n",
        url.to_str().unwrap()
    )));
    let channel = &config.notifications[0];
    assert_eq!(channel.name, "ops");
    assert!(channel.secrets_read);
    match &channel.target {
        ChannelTarget::Chat { url } => {
            assert_eq!(
                url.expose(),
                "https://hooks.slack.com/services/T0/B0/s3cretpart"
            )
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        channel.events.iter().copied().collect::<Vec<_>>(),
        DEFAULT_EVENTS.to_vec()
    );
    assert!(channel.wants(NoticeEvent::Failed, "web"));
    assert!(!channel.wants(NoticeEvent::Queued, "web"));
    assert!(!channel.wants(NoticeEvent::Refused, "web"));
    assert_eq!(channel.give_up_after, DEFAULT_GIVE_UP_AFTER);
    // The URL is a credential: Debug never shows it.
    assert!(!format!("{config:?}").contains("s3cretpart"));
}

#[test]
fn a_url_in_the_config_text_is_refused_without_echoing_it() {
    let message = parse_err(&with_channel(
        "name = \"ops\"\nkind = \"chat\"\nurl = \"https://hooks.slack.com/services/T0/B0/s3cretpart\"\n",
    ));
    assert!(message.contains("url is not allowed"), "{message}");
    assert!(!message.contains("s3cretpart"), "{message}");
}

#[test]
fn a_url_that_is_not_http_is_refused_without_echoing_it() {
    let var = unique("BADURL");
    set_env(&var, "ftp://hooks.example.com/s3cretpart");
    let message = parse_err(&with_channel(&format!(
        "name = \"ops\"\nkind = \"chat\"\nurl_env = \"{var}\"\n"
    )));
    assert!(message.contains("notifications \"ops\""), "{message}");
    assert!(!message.contains("s3cretpart"), "{message}");
}

#[test]
fn a_plain_http_url_is_refused_unless_to_a_loopback_host() {
    let var = unique("HTTPURL");
    set_env(&var, "http://hooks.example.com/services/s3cretpart");
    let message = parse_err(&with_channel(&format!(
        "name = \"ops\"\nkind = \"chat\"\nurl_env = \"{var}\"\n"
    )));
    assert!(message.contains("must be https"), "{message}");
    assert!(!message.contains("s3cretpart"), "{message}");
    let local = unique("LOCALURL");
    set_env(&local, "http://127.0.0.1:9/hook");
    parse_ok(&with_channel(&format!(
        "name = \"ops\"\nkind = \"chat\"\nurl_env = \"{local}\"\n"
    )));
}

#[test]
fn a_webhook_needs_a_signing_key_of_at_least_eight_bytes() {
    let var = unique("HOOKURL");
    set_env(&var, "https://example.com/hook");
    assert_err(
        &with_channel(&format!(
            "name = \"h\"\nkind = \"webhook\"\nurl_env = \"{var}\"\n"
        )),
        &["notifications \"h\"", "secret_env or secret_file"],
    );
    let short = unique("SHORTKEY");
    set_env(&short, "1234567");
    let message = parse_err(&with_channel(&format!(
        "name = \"h\"\nkind = \"webhook\"\nurl_env = \"{var}\"\nsecret_env = \"{short}\"\n"
    )));
    assert!(message.contains("shorter than the minimum"), "{message}");
    assert!(!message.contains("1234567"), "{message}");
}

#[test]
fn events_and_stacks_are_checked_by_name() {
    let var = unique("EVURL");
    set_env(&var, "https://example.com/hook");
    let chat = |more: &str| {
        with_channel(&format!(
            "name = \"ops\"\nkind = \"chat\"\nurl_env = \"{var}\"\n{more}"
        ))
    };
    assert_err(
        &chat("events = [\"exploded\"]\n"),
        &["events: \"exploded\" is not one of queued, started"],
    );
    assert_err(&chat("events = []\n"), &["events is empty"]);
    assert_err(
        &chat("stacks = [\"api\"]\n"),
        &["stacks: \"api\" is no stack of this config"],
    );
    let config = parse_ok(&chat(
        "events = [\"refused\", \"timed_out\"]\nstacks = [\"web\"]\ngive_up_after = \"1h\"\n",
    ));
    let channel = &config.notifications[0];
    assert!(channel.wants(NoticeEvent::Refused, "web"));
    assert!(channel.wants(NoticeEvent::TimedOut, "web"));
    assert!(!channel.wants(NoticeEvent::TimedOut, "api"));
    assert!(!channel.wants(NoticeEvent::Failed, "web"));
    assert_eq!(channel.give_up_after, Duration::from_secs(3600));
    assert_err(
        &chat("give_up_after = \"1s\"\n"),
        &["give_up_after must be between"],
    );
}

#[test]
fn channel_names_are_unique_and_plain() {
    let var = unique("NAMEURL");
    set_env(&var, "https://example.com/hook");
    let one = format!("name = \"ops\"\nkind = \"chat\"\nurl_env = \"{var}\"\n");
    assert_err(
        &format!("{}\n[[notifications]]\n{one}", with_channel(&one)),
        &["name is used by more than one channel"],
    );
    assert_err(
        &with_channel(&format!(
            "name = \"o ps\"\nkind = \"chat\"\nurl_env = \"{var}\"\n"
        )),
        &["name must be 1 to 64 characters"],
    );
    assert_err(
        &with_channel(&format!(
            "name = \"ops\"\nkind = \"pager\"\nurl_env = \"{var}\"\n"
        )),
        &["kind \"pager\" is not chat, webhook or email"],
    );
}

#[test]
fn an_email_channel_defaults_to_starttls_on_587_and_reads_its_password() {
    let pass = unique("SMTPPASS");
    set_env(&pass, "pa55word");
    let config = parse_ok(&with_channel(&format!(
        "name = \"mail\"\nkind = \"email\"\nsmtp_host = \"smtp.example.com\"\n\
         username = \"redeploy\"\npassword_env = \"{pass}\"\n\
         from = \"redeploy <redeploy@example.com>\"\nto = [\"ops@example.com\", \"Dev <dev@example.com>\"]\n"
    )));
    let ChannelTarget::Email(email) = &config.notifications[0].target else {
        panic!("not an email channel");
    };
    assert_eq!((email.port, email.tls), (587, SmtpTls::StartTls));
    let (user, password) = email.login.as_ref().unwrap();
    assert_eq!((user.as_str(), password.expose()), ("redeploy", "pa55word"));
    assert_eq!(email.to.len(), 2);
    assert!(!format!("{config:?}").contains("pa55word"));
}

#[test]
fn plain_smtp_only_to_a_loopback_host_and_addresses_must_be_addresses() {
    let mail = |more: &str| {
        with_channel(&format!(
            "name = \"mail\"\nkind = \"email\"\nfrom = \"r@example.com\"\nto = [\"o@example.com\"]\n{more}"
        ))
    };
    assert_err(
        &mail("smtp_host = \"smtp.example.com\"\ntls = \"none\"\n"),
        &["tls = \"none\" is allowed only to a loopback host"],
    );
    for bad in [
        "smtp.example.com:587",
        "-",
        "...",
        "a..b",
        "-x.example.com",
        "[::1",
    ] {
        assert_err(
            &mail(&format!("smtp_host = {bad:?}\n")),
            &["is not a host name or IP address"],
        );
    }
    assert!(parse(&mail("smtp_host = \"[::1]\"\ntls = \"none\"\n"), &base()).is_ok());
    let config = parse_ok(&mail("smtp_host = \"127.0.0.1\"\ntls = \"none\"\n"));
    let ChannelTarget::Email(email) = &config.notifications[0].target else {
        panic!("not an email channel");
    };
    assert_eq!(email.port, 25);
    assert_err(
        &with_channel(
            "name = \"mail\"\nkind = \"email\"\nsmtp_host = \"smtp.example.com\"\nfrom = \"not an address\"\nto = [\"o@example.com\"]\n",
        ),
        &["from: \"not an address\" is not an email address"],
    );
    assert_err(
        &mail("smtp_host = \"smtp.example.com\"\nusername = \"u\"\n"),
        &["username needs password_env or password_file"],
    );
    assert_err(
        &mail("smtp_host = \"smtp.example.com\"\nurl_env = \"X\"\n"),
        &["url_env and url_file are for kind = \"chat\" or \"webhook\""],
    );
}

#[test]
fn channel_credentials_are_read_only_by_commands_that_send() {
    let text = with_channel(
        "name = \"ops\"\nkind = \"chat\"\nurl_env = \"REDEPLOY_TEST_NOT_SET_ANYWHERE\"\n",
    );
    // `history` reads no secret: the unset variable is not an error.
    let config = parse_scoped(&text, &base(), &ProcessSecrets, SecretScope::NoStack).unwrap();
    assert!(!config.notifications[0].secrets_read);
    // `serve` reads them.
    let message = parse_err(&text);
    assert!(
        message.contains("REDEPLOY_TEST_NOT_SET_ANYWHERE is not set"),
        "{message}"
    );
}
