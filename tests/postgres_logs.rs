//! Deploy logs on a PostgreSQL journal (issue 15): the replica that runs a
//! deploy copies its log into the database while it runs, so `/logs/...`
//! and `redeploy logs` work from any machine sharing the database, not
//! only the one that has the file.

use std::time::Duration;

use redeploy_host::journal::DeployRecord;
use redeploy_host::notify::LogLinks;

use crate::support::cli::{assert_success, stdout};
use crate::support::{hook, now_secs, wait_for, ServerProcess, Stack, World};

/// A stack triggered by hand (hook token `n`) running `command`, a TOML
/// array.
fn manual(name: &str, n: u32, command: &str) -> String {
    Stack::new(name)
        .key("image", &format!("acme/{name}"))
        .token(n)
        .line(&format!("command = {command}"))
        .timeout("2m")
        .toml()
}

/// Triggers stack `n` and returns its deploy once it has started.
fn trigger(world: &World, server: &ServerProcess, n: u32) -> DeployRecord {
    let r = server.post(&hook(n), &[], b"");
    assert_eq!(r.status, 202, "{}", r.text());
    let id = r.decision()["deploy_id"].as_i64().unwrap();
    wait_for(30, "the deploy to start", || {
        world
            .journal()
            .deploy(id)
            .unwrap()
            .filter(|d| d.log_path.is_some())
    })
}

/// Links to deploy logs keyed like the world's server.
fn links(world: &World) -> LogLinks {
    let mut config = redeploy_host::config::load(&world.config).unwrap();
    config.server.log_links = Some(Duration::from_secs(3600));
    LogLinks::new(&config, &world.journal()).unwrap()
}

/// `GET /logs/{id}/{key}` on `server`.
fn get_log(server: &ServerProcess, links: &LogLinks, id: i64) -> crate::support::http::Response {
    server.get(&format!(
        "/logs/{id}/{}",
        links.key_for(id, now_secs() + 600)
    ))
}

/// The line the runner ends deploy `id`'s log with, up to its duration.
fn trailer(id: i64) -> String {
    format!("-- redeploy: deploy #{id} succeeded (exit code 0) after ")
}

#[test]
fn a_deploy_log_is_served_from_the_journal_where_the_file_is_not() {
    let stacks = manual(
        "web",
        1,
        r#"["sh", "-c", "printf 'out\\000nul \\377bad\\n'; echo after"]"#,
    );
    let world = World::on_postgres("pg_logs_served", "", &stacks);
    // Another machine: its own state directory, the same database.
    let other = World::with_journal("pg-logs-other", "", &stacks, world.journal_url.clone());
    let server = world.start(&[]);
    let id = trigger(&world, &server, 1).id;
    let deploy = world.settle(30).pop().unwrap();
    let path = deploy.log_path.clone().unwrap();
    let file = std::fs::read(&path).unwrap();
    assert!(file.starts_with(b"out\0nul \xffbad\nafter\n"), "{file:?}");

    // The journal's copy: the file as text, NUL and the invalid byte
    // replaced, the trailer included.
    let stored = world.journal().deploy_log(id).unwrap().unwrap();
    let expected = String::from_utf8_lossy(&file).replace('\0', "\u{fffd}");
    assert_eq!(stored.text, expected);
    assert!(stored
        .text
        .starts_with("out\u{fffd}nul \u{fffd}bad\nafter\n"));
    assert!(stored.text.contains(&trailer(id)), "{}", stored.text);
    assert!(!stored.truncated);

    // This machine's file is gone: the log is served from the journal,
    // as the file was.
    let links = links(&world);
    let from_file = get_log(&server, &links, id);
    assert_eq!(from_file.status, 200, "{}", from_file.text());
    std::fs::remove_file(&path).unwrap();
    let from_journal = get_log(&server, &links, id);
    assert_eq!(from_journal.status, 200, "{}", from_journal.text());
    assert_eq!(from_journal.text(), expected);
    // The file keeps the NUL byte; the journal's text cannot.
    assert_eq!(
        from_journal.text(),
        from_file.text().replace('\0', "\u{fffd}")
    );
    assert_eq!(
        from_journal.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    // An unknown deploy is still 404.
    assert_eq!(get_log(&server, &links, id + 100).status, 404);

    // `redeploy logs` on the other machine prints the journal's copy.
    for args in [
        &["logs", &id.to_string()][..],
        &["logs", &id.to_string(), "--follow"],
    ] {
        let out = other.redeploy(args);
        assert_success(&out);
        assert_eq!(stdout(&out), expected, "{args:?}");
    }
    server.terminate();
}

#[test]
fn a_running_deploys_log_is_in_the_journal_before_it_ends() {
    // The command prints, then waits until the test lets it go on.
    let stacks = manual(
        "web",
        1,
        r#"["sh", "-c", "echo first-half; while [ ! -e @DIR@/release ]; do sleep 0.1; done; echo second-half"]"#,
    );
    let world = World::on_postgres("pg_logs_running", "", &stacks);
    let server = world.start(&[]);
    let id = trigger(&world, &server, 1).id;
    let journal = world.journal();
    let stored = wait_for(60, "the running deploy's log in the journal", || {
        journal
            .deploy_log(id)
            .unwrap()
            .filter(|log| log.text.contains("first-half"))
    });
    assert_eq!(stored.text, "first-half\n");
    let deploy = journal.deploy(id).unwrap().unwrap();
    assert!(
        !deploy.state.is_final(),
        "it waits for the test: {deploy:?}"
    );

    std::fs::write(world.dir.join("release"), b"").unwrap();
    world.settle(60);
    let stored = journal.deploy_log(id).unwrap().unwrap();
    assert!(
        stored
            .text
            .starts_with(&format!("first-half\nsecond-half\n{}", trailer(id))),
        "{}",
        stored.text
    );
    let file = std::fs::read_to_string(journal.deploy(id).unwrap().unwrap().log_path.unwrap());
    assert_eq!(stored.text, file.unwrap());
    server.terminate();
}

#[test]
fn a_log_past_the_cap_is_stored_within_it_with_its_trailer() {
    const CAP: u64 = 4096;
    let stacks = manual(
        "big",
        1,
        r#"["sh", "-c", "yes 0123456789abcdef | head -c 100000"]"#,
    );
    let world = World::on_postgres(
        "pg_logs_cap",
        &format!("max_deploy_log_bytes = {CAP}"),
        &stacks,
    );
    let server = world.start(&[]);
    let id = trigger(&world, &server, 1).id;
    world.settle(60);
    let stored = world.journal().deploy_log(id).unwrap().unwrap();
    assert!(
        stored.size_bytes <= CAP,
        "{} bytes stored",
        stored.size_bytes
    );
    assert_eq!(stored.size_bytes, stored.text.len() as u64);
    assert!(stored.truncated);
    assert!(stored
        .text
        .starts_with("0123456789abcdef\n0123456789abcdef\n"));
    assert!(stored.text.contains("[... output cut"), "{}", stored.text);
    let last = stored.text.lines().last().unwrap();
    assert!(last.starts_with(&trailer(id)), "{}", stored.text);
    server.terminate();
}
