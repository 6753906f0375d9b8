//! `[journal]`: where the journal lives, and the PostgreSQL URL read
//! without ever being echoed.

use super::*;

const URL: &str = "postgres://app:pa55word@db.internal:6543/redeploy?sslmode=require";

#[test]
fn without_a_journal_table_the_journal_is_the_sqlite_file() {
    assert_eq!(parse_ok(MINIMAL).journal, JournalConfig::default());
    assert_eq!(
        parse_ok(&format!("[journal]\n{MINIMAL}")).journal,
        JournalConfig::default()
    );
}

#[test]
fn the_url_comes_inline_from_the_environment_or_from_a_file() {
    let inline = parse_ok(&format!("[journal]\nurl = \"{URL}\"\n{MINIMAL}"));
    let pg = inline.journal.postgres.unwrap();
    assert_eq!(pg.url.expose(), URL);
    assert_eq!(pg.pool_size, crate::journal::postgres::DEFAULT_POOL_SIZE);
    assert_eq!(
        pg.acquire_timeout,
        crate::journal::postgres::DEFAULT_ACQUIRE_TIMEOUT
    );
    assert!(!format!("{pg:?}").contains("pa55word"));

    let var = unique("JOURNAL_URL");
    set_env(&var, URL);
    let from_env = parse_ok(&format!(
        "[journal]\nurl_env = \"{var}\"\npool_size = 3\nconnect_timeout = \"2s\"\nacquire_timeout = \"750ms\"\n{MINIMAL}"
    ));
    let pg = from_env.journal.postgres.unwrap();
    assert_eq!(pg.url.expose(), URL);
    assert_eq!(pg.pool_size, 3);
    assert_eq!(pg.connect_timeout, Duration::from_secs(2));
    assert_eq!(pg.acquire_timeout, Duration::from_millis(750));

    let file = temp_file("JOURNAL_URL_FILE", &format!("{URL}\n"));
    let from_file = parse_ok(&format!(
        "[journal]\nurl_file = \"{}\"\n{MINIMAL}",
        file.display()
    ));
    let postgres = from_file.journal.postgres.unwrap();
    assert_eq!(postgres.url.expose(), URL);
    assert_eq!(postgres.lease, crate::cluster::DEFAULT_LEASE_TTL);
    assert!(postgres.runner, "replicas run deploys unless told not to");
    let tuned = parse_ok(&format!(
        "[journal]\nurl = \"{URL}\"\nlease = \"4s\"\nrunner = false\n{MINIMAL}"
    ));
    let tuned = tuned.journal.postgres.unwrap();
    assert_eq!(
        (tuned.lease, tuned.runner),
        (std::time::Duration::from_secs(4), false)
    );
}

#[test]
fn a_bad_journal_table_is_refused_without_quoting_the_url() {
    let cases: &[(String, &[&str])] = &[
        (
            "[journal]\nurl = \"mysql://app:pa55word@db/x\"\n".into(),
            &["journal: the database URL must start with postgres://"],
        ),
        (
            "[journal]\nurl = \"postgres://app:pa55word@db/x?sslmode=allow\"\n".into(),
            &["journal: sslmode=allow is not supported"],
        ),
        (
            format!("[journal]\nurl = \"{URL}\"\nurl_env = \"X\"\n"),
            &["journal: set only one of url, url_env and url_file"],
        ),
        (
            format!("[journal]\nurl = \"{URL}\"\npool_size = 0\n"),
            &["journal: pool_size 0 must be between 1 and 1024"],
        ),
        (
            format!("[journal]\nurl = \"{URL}\"\nacquire_timeout = \"0s\"\n"),
            &["journal: acquire_timeout must be greater than zero"],
        ),
        (
            format!("[journal]\nurl = \"{URL}\"\nanswer_timeout = \"5s\"\n"),
            &["journal: answer_timeout 5s must be longer than acquire_timeout 5s"],
        ),
        (
            "[journal]\nanswer_timeout = \"1m\"\n".into(),
            &["journal: pool_size, the timeouts, lease and runner are PostgreSQL settings"],
        ),
        (
            "[journal]\npool_size = 4\n".into(),
            &["journal: pool_size, the timeouts, lease and runner are PostgreSQL settings"],
        ),
        (
            "[journal]\nrunner = false\n".into(),
            &["journal: pool_size, the timeouts, lease and runner are PostgreSQL settings"],
        ),
        (
            format!("[journal]\nurl = \"{URL}\"\nlease = \"500ms\"\n"),
            &["journal: lease 500ms is shorter than 1s"],
        ),
        (
            format!("[journal]\nurl = \"{URL}\"\nlease = \"soon\"\n"),
            &["journal: lease"],
        ),
        (
            "[journal]\nurl_env = \"REDEPLOY_CONFIG_TEST_UNSET_JOURNAL_URL\"\n".into(),
            &["journal.url_env: environment variable REDEPLOY_CONFIG_TEST_UNSET_JOURNAL_URL is not set"],
        ),
        (
            format!("[journal]\nurl = \"{URL}\"\npassword = \"pa55word\"\n"),
            &["unknown field `password`"],
        ),
    ];
    for (journal, expected) in cases {
        let text = format!("{journal}{MINIMAL}");
        assert_err(&text, expected);
        assert!(
            !parse_err(&text).contains("pa55word"),
            "{}",
            parse_err(&text)
        );
    }
}

#[test]
fn a_reload_keeps_the_running_journal_and_says_a_restart_applies_it() {
    let running = parse_ok(MINIMAL);
    let new = parse_ok(&format!("[journal]\nurl = \"{URL}\"\n{MINIMAL}"));
    let reloaded = crate::config::merge_reload(&running, new);
    assert_eq!(reloaded.need_restart, ["journal"]);
    assert_eq!(reloaded.config.journal, JournalConfig::default());
}
