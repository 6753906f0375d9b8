//! Issue 18: the `[[notifications]]` channels. A real `redeploy serve`
//! with the stand-in deploy program, telling a scripted loopback HTTP
//! receiver (`support::receiver`: a chat service, a user's signed webhook)
//! and a real SMTP server (`support::smtp`: aiosmtpd) of deploy outcomes:
//!
//! - a failed deploy is told once to each channel that wants it (the chat
//!   text, the webhook's signed, schema-valid document, the mail), and to
//!   no channel of other stacks or other events;
//! - a superseded deploy is told as `cancelled`, a deploy its timeout
//!   killed as `timed_out`, each in order per channel;
//! - a server killed while a notification waits for its channel sends it
//!   after its restart, once;
//! - a channel answering 500, then 200, gets it twice with one delivery
//!   id (`{source}-{id}`, the body's `delivery` and `X-Redeploy-Delivery`),
//!   and the journal counts 2 attempts; a `Retry-After` is waited; a
//!   channel that never takes it is given up after `give_up_after`; a
//!   `Retry-After: 0` is waited no shorter than the back-off (1, 2, 4 s);
//! - a slow channel (6 s an answer) holds back no other channel of the
//!   same stack;
//! - probing a stack's hook URL with bad signatures: the first refusal
//!   is told of at once, the other 49 summed up when the server stops;
//! - a hook-only install (post-receive, no server): the hook's runner
//!   retries a notification and sends it before it exits;
//! - the dashboard's deploy page lists the deploy's notifications, never
//!   a channel's URL;
//! - a channel down for the whole test holds up no deploy, and `/metrics`
//!   shows its retries and that it is failing;
//! - `redeploy notify test` on each kind prints the channel's answer,
//!   fails with the reason, or exits 2 for a channel that does not exist;
//! - email over STARTTLS with a private CA (`ca_file`) and a login;
//! - no channel URL, signing key or SMTP password in the server's log,
//!   the CLI's output, `redeploy history` or the journal.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use redeploy_host::journal::{DeployRecord, DeployState, Journal};
use redeploy_host::notifications::LEASE_TTL;
use serde_json::Value;

use crate::support::cli::{stderr, stdout};
use crate::support::deliveries::{push_body, signed_github, signed_push};
use crate::support::git::git;
use crate::support::receiver::{Answer, Receiver, Request};
use crate::support::smtp::{certificate, Certificate, Mail, SmtpOptions, SmtpServer};
use crate::support::stacks::toml;
use crate::support::{
    free_port, hook, redeploy_bin, sig, wait_for, workspace, ServerProcess, Stack, World,
};
use crate::ui::{ui_table, Browser, PASSWORD};

/// The stacks' webhook secret.
const SECRET: &str = "s3cret-s3cret";
/// The webhook channels' signing key.
const WEBHOOK_KEY: &str = "webhook-signing-key-7x4p9q2m";
/// The SMTP login of the STARTTLS server.
const SMTP_USER: &str = "redeploy-mailer";
const SMTP_PASSWORD: &str = "smtp-password-2w8n5r1k";
/// The mail channels' recipients.
const TO: [&str; 2] = ["ops@example.test", "dev@example.test"];

/// A bound on anything these tests wait for: a few retries' back-off, a
/// killed server's notifications lease, with room.
const WAIT_SECS: u64 = 90;

/// The `n`th test commit: 40 hex digits whose first 7 (the short sha)
/// differ between commits.
fn commit(n: usize) -> String {
    format!("{n:02x}c0ffee{}", "ab".repeat(16))
}

/// A signed stack `label` following `main` of acme/web with hook token
/// `n`, deploying with the stand-in.
fn stack(n: u32, label: &str) -> Stack {
    Stack::repo(label, "acme/web", "main", n)
        .secret(SECRET)
        .timeout("1m")
}

/// A signed push of commit `c` to stack `n`, accepted.
fn push(server: &ServerProcess, n: u32, c: usize) {
    let r = signed_push(server, &hook(n), SECRET, &commit(c), &format!("d-{n}-{c}"));
    assert_eq!(r.status, 202, "{}", r.text());
}

/// A `[[notifications]]` table named `name` of `kind`, with `lines`.
fn channel(name: &str, kind: &str, lines: &[&str]) -> String {
    format!(
        "\n[[notifications]]\nname = {name:?}\nkind = {kind:?}\n{}\n",
        lines.join("\n")
    )
}

/// A chat channel whose URL is in the file `@DIR@/<name>-url`.
fn chat(name: &str, extra: &[&str]) -> String {
    let url_file = format!("url_file = \"@DIR@/{name}-url\"");
    channel(name, "chat", &[&[url_file.as_str()][..], extra].concat())
}

/// A webhook channel whose URL is in the file `@DIR@/<name>-url`, signed
/// with [`WEBHOOK_KEY`] from `@DIR@/webhook-key`.
fn webhook(name: &str, extra: &[&str]) -> String {
    let url_file = format!("url_file = \"@DIR@/{name}-url\"");
    let lines = [url_file.as_str(), "secret_file = \"@DIR@/webhook-key\""];
    channel(name, "webhook", &[&lines[..], extra].concat())
}

/// An email channel to the plain SMTP server on `port` (`tls = "none"`,
/// allowed on loopback), from redeploy@example.test to [`TO`].
fn plain_email(name: &str, port: u16, extra: &[&str]) -> String {
    let port = format!("smtp_port = {port}");
    let lines = ["smtp_host = \"127.0.0.1\"", port.as_str(), "tls = \"none\""];
    channel(name, "email", &[&lines[..], &addresses(), extra].concat())
}

/// `from` and `to` of the mail channels.
fn addresses() -> [&'static str; 2] {
    [
        "from = \"redeploy <redeploy@example.test>\"",
        "to = [\"ops@example.test\", \"dev@example.test\"]",
    ]
}

/// A world of `stacks` and `channels` whose server will listen on the
/// returned port, its `public_url` there; the webhook key is written.
fn world(name: &str, stacks: &[Stack], channels: &[String]) -> (World, u16) {
    let port = free_port();
    let server_toml = format!("public_url = \"http://127.0.0.1:{port}\"");
    let world = World::new(name, &server_toml, &(toml(stacks) + &channels.concat()));
    std::fs::write(world.dir.join("webhook-key"), format!("{WEBHOOK_KEY}\n")).unwrap();
    (world, port)
}

/// Writes channel `name`'s URL file (`@DIR@/<name>-url`).
fn url_file(world: &World, name: &str, url: &str) {
    std::fs::write(world.dir.join(&format!("{name}-url")), format!("{url}\n")).unwrap();
}

/// One row of the journal's `notifications` with its notice's event.
#[derive(Clone, Debug, PartialEq)]
struct Row {
    /// The notification's id in the journal.
    id: i64,
    channel: String,
    stack: String,
    event: String,
    deploy_id: Option<i64>,
    attempts: i64,
    outcome: Option<String>,
    outcome_detail: Option<String>,
}

/// Every notification the journal holds, in id order.
fn rows(world: &World) -> Vec<Row> {
    let path = Journal::path_in(&world.dir.join("state"));
    let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY;
    let conn = rusqlite::Connection::open_with_flags(path, flags).unwrap();
    let mut stmt = conn
        .prepare(
            "SELECT n.id, n.channel, n.stack, s.event, s.deploy_id, n.attempts, \
             n.outcome, n.outcome_detail FROM notifications n JOIN notices s ON s.id = n.notice_id \
             ORDER BY n.id",
        )
        .unwrap();
    stmt.query_map([], |r| {
        Ok(Row {
            id: r.get(0)?,
            channel: r.get(1)?,
            stack: r.get(2)?,
            event: r.get(3)?,
            deploy_id: r.get(4)?,
            attempts: r.get(5)?,
            outcome: r.get(6)?,
            outcome_detail: r.get(7)?,
        })
    })
    .unwrap()
    .map(Result::unwrap)
    .collect()
}

/// The notifications once every notice is fanned out and every
/// notification settled: nothing more will be sent.
fn settled(world: &World) -> Vec<Row> {
    settled_within(world, WAIT_SECS)
}

/// [`settled`], waiting up to `secs`.
fn settled_within(world: &World, secs: u64) -> Vec<Row> {
    wait_for(secs, "every notification settled", || {
        let unfanned: i64 =
            world.query_journal("SELECT COUNT(*) FROM notices WHERE fanned_out_at_ms IS NULL");
        let rows = rows(world);
        (unfanned == 0 && rows.iter().all(|r| r.outcome.is_some())).then_some(rows)
    })
}

/// A notification as [`of_channel`] shows it: (event, deploy id, outcome,
/// attempts).
type Told = (String, Option<i64>, Option<String>, i64);

/// The notifications of `channel`.
fn of_channel(rows: &[Row], channel: &str) -> Vec<Told> {
    rows.iter()
        .filter(|r| r.channel == channel)
        .map(|r| (r.event.clone(), r.deploy_id, r.outcome.clone(), r.attempts))
        .collect()
}

/// (event, deploy id, "sent", 1) for each of `told`.
fn sent_once(told: &[(&str, i64)]) -> Vec<Told> {
    told.iter()
        .map(|(e, id)| (e.to_string(), Some(*id), Some("sent".to_string()), 1))
        .collect()
}

/// The value of the `/metrics` series `name` with (at least) `labels`.
fn metric(metrics: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    metrics.lines().find_map(|line| {
        let rest = line.strip_prefix(name)?.strip_prefix('{')?;
        let (series, value) = rest.split_once("} ")?;
        let all = labels.iter().all(|(k, v)| {
            let want = format!("{k}=\"{v}\"");
            series.split(',').any(|l| l == want)
        });
        all.then(|| value.trim().parse().ok()).flatten()
    })
}

/// `redeploy_notifications_total` of `channel` and `outcome`, 0 when absent.
fn told(metrics: &str, channel: &str, outcome: &str) -> f64 {
    let labels = [("channel", channel), ("outcome", outcome)];
    metric(metrics, "redeploy_notifications_total", &labels).unwrap_or(0.0)
}

/// `redeploy_notification_channel_failing` of `channel`.
fn failing(metrics: &str, channel: &str) -> Option<f64> {
    metric(
        metrics,
        "redeploy_notification_channel_failing",
        &[("channel", channel)],
    )
}

/// The text of a chat message, checking its shape: a JSON POST of
/// `{"text": ...}` and nothing else.
fn chat_text(request: &Request) -> String {
    assert_eq!(request.method, "POST");
    assert!(
        request
            .header("content-type")
            .is_some_and(|t| t.starts_with("application/json")),
        "{request:?}"
    );
    let body = request.json();
    let object = body.as_object().unwrap();
    assert_eq!(
        object.keys().collect::<Vec<_>>(),
        ["text"],
        "{}",
        request.text()
    );
    body["text"].as_str().unwrap().to_string()
}

/// The document of a webhook request, checking its signature and headers
/// (with [`WEBHOOK_KEY`]), its schema, and that its `delivery` is its
/// `X-Redeploy-Delivery`: `{source}-{id}`, or `test-...` for a test.
fn webhook_document(request: &Request) -> Value {
    assert_eq!(request.method, "POST");
    assert!(
        request
            .header("content-type")
            .is_some_and(|t| t.starts_with("application/json")),
        "{request:?}"
    );
    assert_eq!(
        request.header("x-redeploy-signature-256"),
        Some(sig(WEBHOOK_KEY, &request.body).as_str()),
        "the signature of {}",
        request.text()
    );
    assert!(
        request
            .header("user-agent")
            .is_some_and(|a| a.starts_with("redeploy/")),
        "{request:?}"
    );
    let delivery = request.header("x-redeploy-delivery").unwrap_or_default();
    assert!(!delivery.is_empty(), "{request:?}");
    let doc = request.json();
    assert_eq!(
        request.header("x-redeploy-event"),
        doc["event"].as_str(),
        "{request:?}"
    );
    assert_eq!(doc["schema"], "redeploy.notification/v1", "{doc}");
    assert_schema_valid(&doc);
    assert_eq!(doc["delivery"].as_str(), Some(delivery), "{doc}");
    if doc["test"] == true {
        assert!(delivery.starts_with("test-"), "{delivery:?}");
    } else {
        let id = doc["id"].as_i64().unwrap();
        let source = delivery.strip_suffix(&format!("-{id}"));
        assert!(
            source.is_some_and(|s| !s.is_empty()),
            "{delivery:?}, id {id}"
        );
    }
    doc
}

/// The source of a delivery id (`{source}-{id}`) of notification `id`.
#[track_caller]
fn delivery_source(delivery: &str, id: i64) -> &str {
    let source = delivery
        .strip_suffix(&format!("-{id}"))
        .unwrap_or_else(|| panic!("{delivery:?} does not end with -{id}"));
    assert!(!source.is_empty(), "{delivery:?}");
    source
}

/// Asserts that `doc` is valid against the published webhook schema,
/// `docs/notification-webhook.v1.schema.json`.
#[track_caller]
fn assert_schema_valid(doc: &Value) {
    let path = workspace().join("docs/notification-webhook.v1.schema.json");
    let text = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let schema: Value = serde_json::from_slice(&text).unwrap();
    let validator = jsonschema::options()
        .should_validate_formats(true)
        .build(&schema)
        .expect("a valid JSON Schema");
    let errors: Vec<String> = validator.iter_errors(doc).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "{errors:#?}\n{doc:#}");
}

/// Runs `redeploy ARGS... --config <world's config>` with `env`.
fn cli(world: &World, args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(redeploy_bin())
        .args(args)
        .arg("--config")
        .arg(&world.config)
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

/// Asserts a command's exit code, showing its outputs if it differs.
#[track_caller]
fn assert_exit(out: &Output, code: i32) {
    let outputs = format!("{}{}", stdout(out), stderr(out));
    assert_eq!(out.status.code(), Some(code), "{outputs}");
}

/// `redeploy notify test CHANNEL` of `world`.
fn notify_test(world: &World, channel: &str, env: &[(&str, &str)]) -> Output {
    cli(world, &["notify", "test", channel], env)
}

/// The one deploy of `stack`, once it ended.
fn deploy_of(world: &World, stack: &str) -> DeployRecord {
    let deploys: Vec<DeployRecord> = world
        .settle(WAIT_SECS)
        .into_iter()
        .filter(|d| d.queued.stack == stack)
        .collect();
    assert_eq!(deploys.len(), 1, "{deploys:#?}");
    deploys.into_iter().next().unwrap()
}

#[test]
fn a_failed_deploy_is_told_once_to_each_channel_that_wants_it_and_to_no_other() {
    let ops = Receiver::start(vec![]);
    let hooks = Receiver::start(vec![]);
    let other_stack = Receiver::start(vec![]);
    let other_events = Receiver::start(vec![]);
    let opt_in = Receiver::start(vec![]);
    let mail_dir = crate::support::TempDir::new("notify-mail");
    let mail = SmtpServer::start(&mail_dir.join("mail"), SmtpOptions::default());
    let (world, port) = world(
        "notify-failed",
        &[stack(1, "web").env("EXIT_CODE", "3"), stack(2, "api")],
        &[
            chat(
                "ops",
                &["events = [\"failed\", \"succeeded\"]", "stacks = [\"web\"]"],
            ),
            webhook("hooks", &[]),
            plain_email("mail", mail.port, &["events = [\"failed\"]"]),
            chat("api-only", &["stacks = [\"api\"]"]),
            chat("happy", &["events = [\"succeeded\", \"cancelled\"]"]),
            chat("starts", &["events = [\"queued\", \"started\"]"]),
        ],
    );
    url_file(&world, "ops", &ops.url("/services/T0/B0/ops"));
    url_file(&world, "hooks", &hooks.url("/redeploy"));
    url_file(&world, "api-only", &other_stack.url("/api"));
    url_file(&world, "happy", &other_events.url("/happy"));
    url_file(&world, "starts", &opt_in.url("/starts"));
    let server = world.start_on(port, &[], &[]);
    push(&server, 1, 1);
    let deploy = deploy_of(&world, "web");
    assert_eq!(deploy.state, DeployState::Failed);
    assert_eq!(deploy.exit_code, Some(3));
    let public = format!("http://127.0.0.1:{port}");
    let short = &commit(1)[..7];

    // The journal: one notification per channel that wants a failure of
    // web, each sent at the first try; the opt-in events to the channel
    // that asked for them.
    let rows = settled(&world);
    for channel in ["ops", "hooks", "mail"] {
        assert_eq!(
            of_channel(&rows, channel),
            sent_once(&[("failed", deploy.id)]),
            "{rows:#?}"
        );
    }
    assert_eq!(
        of_channel(&rows, "starts"),
        sent_once(&[("queued", deploy.id), ("started", deploy.id)]),
        "{rows:#?}"
    );
    assert_eq!(of_channel(&rows, "api-only"), [], "{rows:#?}");
    assert_eq!(of_channel(&rows, "happy"), [], "{rows:#?}");
    assert!(rows.iter().all(|r| r.stack == "web"), "{rows:#?}");

    // The chat: one short message with the stack, what happened, the
    // commit and a link to the deploy's log on the public URL.
    let chat = ops.requests();
    assert_eq!(chat.len(), 1, "{chat:#?}");
    assert_eq!(chat[0].path, "/services/T0/B0/ops");
    let text = chat_text(&chat[0]);
    for needle in ["web", "deploy failed", short, "|log>"] {
        assert!(text.contains(needle), "no {needle:?} in {text:?}");
    }
    assert!(text.contains(&format!("<{public}/")), "{text:?}");

    // The webhook: one signed document of the deploy.
    let requests = hooks.requests();
    assert_eq!(requests.len(), 1, "{requests:#?}");
    assert_eq!(requests[0].path, "/redeploy");
    let doc = webhook_document(&requests[0]);
    assert_eq!(doc["event"], "failed", "{doc:#}");
    assert_eq!(doc["test"], false, "{doc:#}");
    let hooks_row = rows.iter().find(|r| r.channel == "hooks").unwrap();
    assert_eq!(doc["id"], hooks_row.id, "{doc:#}");
    let delivery = requests[0].header("x-redeploy-delivery").unwrap();
    let source = delivery_source(delivery, hooks_row.id);
    assert_eq!(doc["stack"], "web", "{doc:#}");
    assert!(doc["refused"].is_null(), "{doc:#}");
    assert!(doc["at_ms"].as_i64().is_some(), "{doc:#}");
    let d = &doc["deploy"];
    assert_eq!(d["id"], deploy.id, "{doc:#}");
    assert_eq!(d["provider"], "github", "{doc:#}");
    assert_eq!(d["ref"], "refs/heads/main", "{doc:#}");
    assert_eq!(d["branch"], "main", "{doc:#}");
    assert_eq!(d["sha"], commit(1), "{doc:#}");
    assert_eq!(d["pusher"], "alice", "{doc:#}");
    assert_eq!(d["exit_code"], 3, "{doc:#}");
    assert_eq!(
        d["finished_at_ms"],
        deploy.finished_at_ms.unwrap(),
        "{doc:#}"
    );
    assert!(
        d["log_url"]
            .as_str()
            .is_some_and(|u| u.starts_with(&format!("{public}/"))),
        "{doc:#}"
    );

    // The mail: one, to every recipient, saying what happened.
    let mails = mail.messages();
    assert_eq!(mails.len(), 1, "{mails:#?}");
    let m = &mails[0];
    assert_eq!(m.mail_from, "redeploy@example.test");
    assert_eq!(m.rcpt_tos, TO);
    assert_eq!(m.header("subject"), Some("[redeploy] web: deploy failed"));
    assert!(
        m.header("from")
            .is_some_and(|f| f.contains("redeploy@example.test")),
        "{m:#?}"
    );
    for to in TO {
        assert!(m.header("to").is_some_and(|t| t.contains(to)), "{m:#?}");
    }
    let id = m.header("message-id").unwrap_or_default();
    assert!(
        id.starts_with("<redeploy.") && id.contains(".web@") && id.ends_with('>'),
        "{id:?}"
    );
    // `<redeploy.{source}-{id}.web@example.test>`: the journal's source,
    // as in the webhook's delivery id, and the mail's notification id.
    let mail_row = rows.iter().find(|r| r.channel == "mail").unwrap();
    assert_eq!(
        id,
        format!("<redeploy.{source}-{}.web@example.test>", mail_row.id),
        "{m:#?}"
    );
    assert!(m.body.contains(short), "{m:#?}");
    assert!(m.raw.contains("Content-Type: text/plain"), "{m:#?}");
    assert!(!m.tls && m.login.is_none(), "{m:#?}");

    // Nothing for a channel of another stack or of other events.
    assert_eq!((other_stack.count(), other_events.count()), (0, 0));
    let opted = opt_in.requests();
    assert_eq!(opted.len(), 2, "{opted:#?}");
    for (request, word) in opted.iter().zip(["queued", "started"]) {
        let text = chat_text(request);
        assert!(text.contains("web") && text.contains(word), "{text:?}");
    }

    let metrics = server.get("/metrics").text();
    for (channel, sent) in [("ops", 1.0), ("hooks", 1.0), ("mail", 1.0), ("starts", 2.0)] {
        assert_eq!(
            told(&metrics, channel, "sent"),
            sent,
            "{channel}:\n{metrics}"
        );
        assert_eq!(
            told(&metrics, channel, "retried"),
            0.0,
            "{channel}:\n{metrics}"
        );
        assert_eq!(
            failing(&metrics, channel),
            Some(0.0),
            "{channel}:\n{metrics}"
        );
    }
    server.terminate();
}

#[test]
fn a_private_dashboards_notifications_carry_no_link_to_the_log() {
    // The dashboard on an address of its own: the signed log link, which
    // reads the log on the hook's listener with no sign-in, is not sent.
    let hooks = Receiver::start(vec![]);
    let ui = ui_table(&format!("listen = \"127.0.0.1:{}\"", free_port()));
    let (world, port) = world(
        "notify-private-ui",
        &[stack(1, "web").env("EXIT_CODE", "3")],
        &[webhook("hooks", &[]), ui],
    );
    url_file(&world, "hooks", &hooks.url("/redeploy"));
    let server = world.start_on(port, &[], &[]);
    push(&server, 1, 1);
    let deploy = deploy_of(&world, "web");
    assert_eq!(deploy.state, DeployState::Failed);
    let rows = settled(&world);
    assert_eq!(
        of_channel(&rows, "hooks"),
        sent_once(&[("failed", deploy.id)]),
        "{rows:#?}"
    );
    let requests = hooks.requests();
    assert_eq!(requests.len(), 1, "{requests:#?}");
    let doc = webhook_document(&requests[0]);
    assert_eq!(doc["deploy"]["id"], deploy.id, "{doc:#}");
    assert!(doc["deploy"]["log_url"].is_null(), "{doc:#}");
    server.terminate();
}

#[test]
fn a_superseded_deploy_is_told_as_cancelled_in_order() {
    let hooks = Receiver::start(vec![]);
    let ops = Receiver::start(vec![]);
    let (world, port) = world(
        "notify-cancelled",
        &[stack(1, "web").env("SLEEP", "2")],
        &[
            webhook("hooks", &[]),
            chat("ops", &["events = [\"cancelled\"]"]),
        ],
    );
    url_file(&world, "hooks", &hooks.url("/h"));
    url_file(&world, "ops", &ops.url("/c"));
    let server = world.start_on(port, &[], &[]);
    // #1 runs; #2 waits behind it and is superseded by #3.
    push(&server, 1, 1);
    world.wait_ran_more_than("web", 0, 10);
    push(&server, 1, 2);
    push(&server, 1, 3);
    let deploys = world.settle(WAIT_SECS);
    let states: Vec<DeployState> = deploys.iter().map(|d| d.state).collect();
    assert_eq!(
        states,
        [
            DeployState::Succeeded,
            DeployState::Cancelled,
            DeployState::Succeeded
        ]
    );
    let ids: Vec<i64> = deploys.iter().map(|d| d.id).collect();

    // In the order it happened: #2 cancelled while #1 ran.
    let rows = settled(&world);
    let order = [
        ("cancelled", ids[1]),
        ("succeeded", ids[0]),
        ("succeeded", ids[2]),
    ];
    assert_eq!(of_channel(&rows, "hooks"), sent_once(&order), "{rows:#?}");
    let docs: Vec<Value> = hooks.requests().iter().map(webhook_document).collect();
    let told: Vec<(String, i64)> = docs
        .iter()
        .map(|d| {
            let event = d["event"].as_str().unwrap().to_string();
            (event, d["deploy"]["id"].as_i64().unwrap())
        })
        .collect();
    let expected: Vec<(String, i64)> = order.iter().map(|(e, id)| (e.to_string(), *id)).collect();
    assert_eq!(told, expected);
    assert!(docs[0].to_string().contains("superseded"), "{:#}", docs[0]);
    assert_eq!(docs[0]["deploy"]["sha"], commit(2));

    assert_eq!(
        of_channel(&rows, "ops"),
        sent_once(&[("cancelled", ids[1])])
    );
    let chat = ops.requests();
    assert_eq!(chat.len(), 1, "{chat:#?}");
    let text = chat_text(&chat[0]);
    for needle in ["web", "cancelled", &commit(2)[..7]] {
        assert!(text.contains(needle), "no {needle:?} in {text:?}");
    }
    server.terminate();
}

#[test]
fn a_deploy_killed_by_its_timeout_is_told_as_timed_out() {
    let hooks = Receiver::start(vec![]);
    let ops = Receiver::start(vec![]);
    let (world, port) = world(
        "notify-timed-out",
        &[Stack::repo("slow", "acme/web", "main", 1)
            .secret(SECRET)
            .env("SLEEP", "30")
            .timeout("1s")],
        &[webhook("hooks", &[]), chat("ops", &[])],
    );
    url_file(&world, "hooks", &hooks.url("/h"));
    url_file(&world, "ops", &ops.url("/c"));
    let server = world.start_on(port, &[], &[]);
    push(&server, 1, 1);
    let deploy = deploy_of(&world, "slow");
    assert_eq!(deploy.state, DeployState::Failed, "{deploy:?}");

    let rows = settled(&world);
    for channel in ["hooks", "ops"] {
        assert_eq!(
            of_channel(&rows, channel),
            sent_once(&[("timed_out", deploy.id)]),
            "{rows:#?}"
        );
    }
    let requests = hooks.requests();
    assert_eq!(requests.len(), 1, "{requests:#?}");
    let doc = webhook_document(&requests[0]);
    assert_eq!(doc["event"], "timed_out", "{doc:#}");
    assert_eq!(doc["deploy"]["id"], deploy.id, "{doc:#}");
    let chat = ops.requests();
    assert_eq!(chat.len(), 1, "{chat:#?}");
    let text = chat_text(&chat[0]);
    assert!(
        text.contains("slow") && text.contains("timed out"),
        "{text:?}"
    );
    server.terminate();
}

#[test]
fn a_server_killed_with_a_notification_waiting_sends_it_once_after_its_restart() {
    let mut ops = Receiver::start(vec![]);
    ops.down();
    let (world, port) = world("notify-restart", &[stack(1, "web")], &[chat("ops", &[])]);
    url_file(&world, "ops", &ops.url("/c"));
    let server = world.start_on(port, &[], &[]);
    push(&server, 1, 1);
    let deploy = deploy_of(&world, "web");
    assert_eq!(deploy.state, DeployState::Succeeded);
    // Tried, refused a connection, waiting for its retry.
    let waiting = wait_for(WAIT_SECS, "a failed try of the notification", || {
        let rows = rows(&world);
        rows.iter()
            .any(|r| r.attempts >= 1 && r.outcome.is_none())
            .then_some(rows)
    });
    assert_eq!(waiting.len(), 1, "{waiting:#?}");
    server.kill();

    ops.up();
    // The killed server's hold on the notifications (its lease) runs out
    // first.
    let server = world.start_on(port, &[], &[]);
    let bound = WAIT_SECS + LEASE_TTL.as_secs();
    ops.wait_for(1, bound);
    let rows = settled_within(&world, bound);
    assert_eq!(rows.len(), 1, "{rows:#?}");
    assert_eq!(rows[0].event, "succeeded");
    assert_eq!(rows[0].outcome.as_deref(), Some("sent"), "{rows:#?}");
    assert!(rows[0].attempts >= 2, "{rows:#?}");
    let chat = ops.requests();
    assert_eq!(chat.len(), 1, "{chat:#?}");
    assert!(chat_text(&chat[0]).contains("web"));
    // The deploy itself ran once.
    assert_eq!(world.ran("web").len(), 1);
    server.terminate();
}

#[test]
fn a_channel_answering_500_then_200_is_retried_and_told_once() {
    let hooks = Receiver::start(vec![500]);
    let (world, port) = world("notify-retry", &[stack(1, "web")], &[webhook("hooks", &[])]);
    url_file(&world, "hooks", &hooks.url("/h"));
    let server = world.start_on(port, &[], &[]);
    push(&server, 1, 1);
    let deploy = deploy_of(&world, "web");

    let rows = settled(&world);
    assert_eq!(rows.len(), 1, "{rows:#?}");
    assert_eq!(
        (
            rows[0].event.as_str(),
            rows[0].outcome.as_deref(),
            rows[0].attempts
        ),
        ("succeeded", Some("sent"), 2),
        "{rows:#?}"
    );
    let requests = hooks.requests();
    assert_eq!(requests.len(), 2, "{requests:#?}");
    assert_eq!((requests[0].answered, requests[1].answered), (500, 200));
    // The same notification twice: one delivery id, one document id.
    let docs: Vec<Value> = requests.iter().map(webhook_document).collect();
    assert_eq!(
        requests[0].header("x-redeploy-delivery"),
        requests[1].header("x-redeploy-delivery")
    );
    assert_eq!(docs[0]["delivery"], docs[1]["delivery"]);
    assert_eq!(docs[0]["id"], docs[1]["id"]);
    assert_eq!(docs[0]["id"], rows[0].id);
    delivery_source(
        requests[0].header("x-redeploy-delivery").unwrap(),
        rows[0].id,
    );
    assert_eq!(docs[1]["deploy"]["id"], deploy.id);
    // Retried after a back-off (about a second), not at once.
    let gap = requests[1].at - requests[0].at;
    assert!(gap >= Duration::from_millis(500), "{gap:?}");

    let metrics = server.get("/metrics").text();
    assert_eq!(told(&metrics, "hooks", "retried"), 1.0, "{metrics}");
    assert_eq!(told(&metrics, "hooks", "sent"), 1.0, "{metrics}");
    assert_eq!(told(&metrics, "hooks", "failed"), 0.0, "{metrics}");
    assert_eq!(failing(&metrics, "hooks"), Some(0.0), "{metrics}");
    server.terminate();
}

#[test]
fn a_channel_asking_to_retry_after_a_while_is_retried_no_sooner() {
    let ops = Receiver::answering(vec![Answer::status(429).retry_after("4")]);
    let (world, port) = world(
        "notify-retry-after",
        &[stack(1, "web")],
        &[chat("ops", &[])],
    );
    url_file(&world, "ops", &ops.url("/c"));
    let server = world.start_on(port, &[], &[]);
    push(&server, 1, 1);
    world.settle(WAIT_SECS);
    let rows = settled(&world);
    assert_eq!(
        of_channel(&rows, "ops")
            .into_iter()
            .map(|(e, _, o, a)| (e, o, a))
            .collect::<Vec<_>>(),
        [("succeeded".to_string(), Some("sent".to_string()), 2)]
    );
    let requests = ops.requests();
    assert_eq!(requests.len(), 2, "{requests:#?}");
    let gap = requests[1].at - requests[0].at;
    assert!(gap >= Duration::from_millis(3500), "retried after {gap:?}");
    server.terminate();
}

#[test]
fn a_channel_that_never_takes_it_is_given_up_after_give_up_after() {
    let ops = Receiver::start(vec![503; 1000]);
    let (world, port) = world(
        "notify-give-up",
        &[stack(1, "web")],
        &[chat("ops", &["give_up_after = \"10s\""])],
    );
    url_file(&world, "ops", &ops.url("/c"));
    let server = world.start_on(port, &[], &[]);
    push(&server, 1, 1);
    let deploy = deploy_of(&world, "web");
    let rows = settled(&world);
    assert_eq!(rows.len(), 1, "{rows:#?}");
    assert_eq!(rows[0].deploy_id, Some(deploy.id));
    assert_eq!(rows[0].outcome.as_deref(), Some("failed"), "{rows:#?}");
    let tries = ops.count();
    assert!(tries >= 3, "{tries} tries in 10 s of back-off");
    assert_eq!(rows[0].attempts, tries as i64, "{rows:#?}");
    assert!(
        rows[0]
            .outcome_detail
            .as_deref()
            .is_some_and(|d| d.contains("503")),
        "{rows:#?}"
    );
    let metrics = server.get("/metrics").text();
    assert_eq!(told(&metrics, "ops", "failed"), 1.0, "{metrics}");
    assert_eq!(told(&metrics, "ops", "sent"), 0.0, "{metrics}");
    assert_eq!(
        told(&metrics, "ops", "retried"),
        (tries - 1) as f64,
        "{metrics}"
    );
    server.terminate();
}

#[test]
fn a_channel_down_for_the_whole_test_holds_up_no_deploy() {
    let mut ops = Receiver::start(vec![]);
    ops.down();
    let (world, port) = world("notify-down", &[stack(1, "web")], &[chat("ops", &[])]);
    url_file(&world, "ops", &ops.url("/c"));
    let server = world.start_on(port, &[], &[]);
    // Three deploys one after the other, each on time.
    for c in 1..=3 {
        push(&server, 1, c);
        let deploys = world.settle(20);
        assert_eq!(deploys.len(), c, "{deploys:#?}");
    }
    let deploys = world.deploys();
    for d in &deploys {
        assert_eq!(d.state, DeployState::Succeeded, "{d:?}");
        let took = d.finished_at_ms.unwrap() - d.queued.created_at_ms;
        assert!(took < 10_000, "deploy #{} took {took} ms", d.id);
    }
    // The channel is retried and shown failing.
    let metrics = wait_for(WAIT_SECS, "the channel retried and failing", || {
        let m = server.get("/metrics").text();
        (told(&m, "ops", "retried") >= 1.0 && failing(&m, "ops") == Some(1.0)).then_some(m)
    });
    assert_eq!(told(&metrics, "ops", "sent"), 0.0, "{metrics}");
    // Nothing settled: every notification still waits, in order, once the
    // sender has fanned the third deploy's notice out (it may not have
    // when the first one's retry already shows).
    let rows = wait_for(WAIT_SECS, "the three notifications fanned out", || {
        let rows = rows(&world);
        (rows.len() >= 3).then_some(rows)
    });
    assert_eq!(rows.len(), 3, "{rows:#?}");
    assert!(rows.iter().all(|r| r.outcome.is_none()), "{rows:#?}");
    assert!(rows[0].attempts >= 1, "{rows:#?}");
    assert_eq!(
        rows[1..].iter().map(|r| r.attempts).collect::<Vec<_>>(),
        [0, 0],
        "later ones wait behind the first: {rows:#?}"
    );
    assert_eq!(ops.count(), 0);
    server.terminate();
}

#[test]
fn notify_test_sends_a_test_message_on_each_kind_and_prints_the_answer() {
    let ops = Receiver::start(vec![]);
    let hooks = Receiver::start(vec![]);
    let broken = Receiver::start(vec![500; 10]);
    let mail_dir = crate::support::TempDir::new("notify-test-mail");
    let mail = SmtpServer::start(&mail_dir.join("mail"), SmtpOptions::default());
    let (world, _) = world(
        "notify-test",
        &[stack(1, "web")],
        &[
            chat("ops", &[]),
            channel(
                "hooks",
                "webhook",
                &[
                    "url_env = \"HOOK_URL\"",
                    "secret_file = \"@DIR@/webhook-key\"",
                ],
            ),
            plain_email("mail", mail.port, &[]),
            chat("broken", &[]),
        ],
    );
    url_file(&world, "ops", &ops.url("/c"));
    url_file(&world, "broken", &broken.url("/b"));
    let hook_url = hooks.url("/h");
    let env = [("HOOK_URL", hook_url.as_str())];

    let out = notify_test(&world, "ops", &env);
    assert_exit(&out, 0);
    assert!(stdout(&out).contains("ops: HTTP 200"), "{}", stdout(&out));
    let chat = ops.requests();
    assert_eq!(chat.len(), 1, "{chat:#?}");
    assert!(chat_text(&chat[0]).to_lowercase().contains("test"));

    let out = notify_test(&world, "hooks", &env);
    assert_exit(&out, 0);
    assert!(stdout(&out).contains("hooks: HTTP 200"), "{}", stdout(&out));
    let requests = hooks.requests();
    assert_eq!(requests.len(), 1, "{requests:#?}");
    let doc = webhook_document(&requests[0]);
    assert_eq!(doc["event"], "test", "{doc:#}");
    assert_eq!(doc["test"], true, "{doc:#}");
    assert!(doc["deploy"].is_null(), "{doc:#}");

    // The SMTP server's own answer to the message.
    let out = notify_test(&world, "mail", &env);
    assert_exit(&out, 0);
    let said = stdout(&out);
    assert!(
        said.contains("mail: ") && said.contains("250") && said.contains("queued as test-1"),
        "{said}"
    );
    let mails = mail.messages();
    assert_eq!(mails.len(), 1, "{mails:#?}");
    assert!(
        mails[0]
            .header("subject")
            .is_some_and(|s| s.starts_with("[redeploy]")),
        "{mails:#?}"
    );
    assert_eq!(mails[0].rcpt_tos, TO);

    // A channel that answers 500: the reason on stderr, exit 1.
    let out = notify_test(&world, "broken", &env);
    assert_exit(&out, 1);
    assert!(stderr(&out).contains("500"), "{}", stderr(&out));
    assert!(!stdout(&out).contains("HTTP 200"), "{}", stdout(&out));
    assert!(broken.count() >= 1);

    // A channel the config does not have: exit 2, naming it.
    let out = notify_test(&world, "nope", &env);
    assert_exit(&out, 2);
    assert!(stderr(&out).contains("nope"), "{}", stderr(&out));
    // None of them sent anything more.
    assert_eq!(
        (ops.count(), hooks.count(), mail.messages().len()),
        (1, 1, 1)
    );
}

/// A world of a failing stack `web` and the email channel `mail` to an
/// aiosmtpd on STARTTLS with a login, its CA given in `ca_file`, its
/// password in `password_env = "SMTP_PASS"`; `extra` more channels.
fn starttls_world(name: &str, extra: &[String]) -> (World, u16, SmtpServer, Certificate) {
    let (world, port) = world(name, &[stack(1, "web").env("EXIT_CODE", "1")], extra);
    let cert = certificate(&world.dir.0, "IP:127.0.0.1,DNS:localhost");
    let options = SmtpOptions {
        tls: Some(&cert),
        login: Some((SMTP_USER, SMTP_PASSWORD)),
    };
    let mail = SmtpServer::start(&world.dir.join("mail"), options);
    let smtp_port = format!("smtp_port = {}", mail.port);
    let ca = format!("ca_file = {:?}", cert.ca.to_str().unwrap());
    let user = format!("username = {SMTP_USER:?}");
    let lines = [
        "smtp_host = \"127.0.0.1\"",
        smtp_port.as_str(),
        "tls = \"starttls\"",
        ca.as_str(),
        user.as_str(),
        "password_env = \"SMTP_PASS\"",
    ];
    append(
        &world,
        &channel("mail", "email", &[&lines[..], &addresses()].concat()),
    );
    (world, port, mail, cert)
}

/// Appends `toml` to the world's config.
fn append(world: &World, toml: &str) {
    let config = std::fs::read_to_string(&world.config).unwrap();
    std::fs::write(&world.config, format!("{config}\n{toml}")).unwrap();
}

#[test]
fn email_goes_over_starttls_to_a_private_ca_with_a_login() {
    let (world, port, mail, cert) = starttls_world("notify-starttls", &[]);
    // The same server without `ca_file`, and with a wrong password: both
    // refused, nothing sent (opt-in events nothing here triggers).
    let smtp_port = format!("smtp_port = {}", mail.port);
    let user = format!("username = {SMTP_USER:?}");
    let base = [
        "smtp_host = \"127.0.0.1\"",
        smtp_port.as_str(),
        "tls = \"starttls\"",
        user.as_str(),
        "events = [\"refused\"]",
    ];
    let ca = format!("ca_file = {:?}", cert.ca.to_str().unwrap());
    let no_ca = channel(
        "mail-no-ca",
        "email",
        &[&base[..], &["password_env = \"SMTP_PASS\""], &addresses()].concat(),
    );
    let bad_password = channel(
        "mail-bad-password",
        "email",
        &[
            &base[..],
            &[ca.as_str(), "password_env = \"SMTP_BAD\""],
            &addresses(),
        ]
        .concat(),
    );
    append(&world, &format!("{no_ca}\n{bad_password}"));
    let env = [
        ("SMTP_PASS", SMTP_PASSWORD),
        ("SMTP_BAD", "not-the-password-3k"),
    ];

    let server = world.start_on(port, &[], &env);
    push(&server, 1, 1);
    let deploy = deploy_of(&world, "web");
    let rows = settled(&world);
    assert_eq!(
        of_channel(&rows, "mail"),
        sent_once(&[("failed", deploy.id)])
    );
    let mails = mail.messages();
    assert_eq!(mails.len(), 1, "{mails:#?}");
    let m: &Mail = &mails[0];
    assert!(m.tls, "not under TLS: {m:#?}");
    assert_eq!(m.login.as_deref(), Some(SMTP_USER));
    assert_eq!(m.header("subject"), Some("[redeploy] web: deploy failed"));
    assert_eq!(m.rcpt_tos, TO);
    server.terminate();

    let out = notify_test(&world, "mail", &env);
    assert_exit(&out, 0);
    assert!(stdout(&out).contains("mail: "), "{}", stdout(&out));
    assert_eq!(mail.messages().len(), 2);
    assert!(mail.messages()[1].tls);

    // A CA the client was not told of: its certificate is not trusted.
    let out = notify_test(&world, "mail-no-ca", &env);
    assert_exit(&out, 1);
    assert!(
        stderr(&out).to_lowercase().contains("certificate"),
        "{}",
        stderr(&out)
    );
    // A wrong password: the server's refusal.
    let out = notify_test(&world, "mail-bad-password", &env);
    assert_exit(&out, 1);
    assert!(stderr(&out).contains("535"), "{}", stderr(&out));
    assert!(
        !stderr(&out).contains("not-the-password-3k"),
        "{}",
        stderr(&out)
    );
    assert_eq!(mail.messages().len(), 2, "nothing more was sent");
}

#[test]
fn no_channel_credential_appears_in_a_log_an_output_or_the_journal() {
    // The credentials, each distinctive: a chat URL with a key in its path
    // and its query, a webhook URL's path, the signing key, the SMTP
    // password.
    let chat_path_key = "T0CHATPATHKEY9f2k";
    let chat_query_key = "chatquerykey3j9x";
    let hook_path_key = "hookpathkey5m1q7";
    let credentials = [
        chat_path_key,
        chat_query_key,
        hook_path_key,
        WEBHOOK_KEY,
        SMTP_PASSWORD,
    ];

    let ops = Receiver::start(vec![500]);
    let mut hooks = Receiver::start(vec![]);
    hooks.down();
    let chat_url = ops.url(&format!(
        "/services/{chat_path_key}/x?token={chat_query_key}"
    ));
    let hook_url = hooks.url(&format!("/in/{hook_path_key}"));
    let channels = [
        chat("ops", &[]),
        channel(
            "hooks",
            "webhook",
            &["url_env = \"HOOK_URL\"", "secret_env = \"HOOK_KEY\""],
        ),
    ];
    let (world, port, mail, _cert) = starttls_world("notify-secrets", &channels);
    url_file(&world, "ops", &chat_url);
    let env = [
        ("SMTP_PASS", SMTP_PASSWORD),
        ("HOOK_URL", hook_url.as_str()),
        ("HOOK_KEY", WEBHOOK_KEY),
    ];
    let server = world.start_on(port, &[], &env);
    push(&server, 1, 1);
    world.settle(WAIT_SECS);
    // The chat refused once and the webhook refused connections: both
    // failures are logged, and retried.
    wait_for(WAIT_SECS, "both channels retried", || {
        let m = server.get("/metrics").text();
        (told(&m, "ops", "retried") >= 1.0 && told(&m, "hooks", "retried") >= 1.0).then_some(())
    });
    let mut outputs = Vec::new();
    // The CLI's failure, with the webhook still down.
    let out = notify_test(&world, "hooks", &env);
    assert_exit(&out, 1);
    outputs.push(out);
    hooks.up();
    let rows = settled(&world);
    assert!(
        rows.iter().all(|r| r.outcome.as_deref() == Some("sent")),
        "{rows:#?}"
    );
    assert_eq!(mail.messages().len(), 1);
    for channel in ["ops", "hooks", "mail"] {
        let out = notify_test(&world, channel, &env);
        assert_exit(&out, 0);
        outputs.push(out);
    }
    let commands = [
        &["history"][..],
        &["history", "--json"],
        &["deliveries"],
        &["config", "check"],
    ];
    for args in commands {
        let out = cli(&world, args, &env);
        assert!(
            out.status.success(),
            "{args:?}: {}{}",
            stdout(&out),
            stderr(&out)
        );
        outputs.push(out);
    }
    let metrics = server.get("/metrics").text();
    server.terminate();

    let mut texts = vec![("the server log".to_string(), world.server_log())];
    texts.push(("/metrics".to_string(), metrics));
    for (i, out) in outputs.iter().enumerate() {
        texts.push((
            format!("output #{i}"),
            format!("{}{}", stdout(out), stderr(out)),
        ));
    }
    for file in files_under(&world.dir.join("state")) {
        let bytes = std::fs::read(&file).unwrap();
        texts.push((
            file.display().to_string(),
            String::from_utf8_lossy(&bytes).into_owned(),
        ));
    }
    for (what, text) in &texts {
        for credential in credentials {
            assert!(
                !text.contains(credential),
                "{credential:?} in {what}:\n{text}"
            );
        }
    }
}

/// Every file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(files_under(&path));
        } else {
            files.push(path);
        }
    }
    files
}

/// The events a channel of [`a_slow_channel_holds_back_no_other_channel`]
/// hears of: a failing deploy's every step.
const EVERY_STEP: &str = "events = [\"queued\", \"started\", \"failed\"]";

/// How long the slow channel takes to answer each message.
const SLOW_ANSWER: Duration = Duration::from_secs(6);

/// Asserts that `requests` are chat messages telling of `words`, one each,
/// in that order.
#[track_caller]
fn assert_told_in_order(requests: &[Request], words: &[&str]) {
    let texts: Vec<String> = requests.iter().map(chat_text).collect();
    assert_eq!(texts.len(), words.len(), "{texts:#?}");
    for (text, word) in texts.iter().zip(words) {
        assert!(text.contains("web") && text.contains(word), "{texts:#?}");
    }
}

#[test]
fn a_slow_channel_holds_back_no_other_channel() {
    let slow = Receiver::answering(vec![Answer::status(200).after(SLOW_ANSWER); 3]);
    let fast = Receiver::start(vec![]);
    let (world, port) = world(
        "notify-slow",
        &[stack(1, "web").env("EXIT_CODE", "3")],
        &[chat("slow", &[EVERY_STEP]), chat("fast", &[EVERY_STEP])],
    );
    url_file(&world, "slow", &slow.url("/slow"));
    url_file(&world, "fast", &fast.url("/fast"));
    let server = world.start_on(port, &[], &[]);
    push(&server, 1, 1);
    let deploy = deploy_of(&world, "web");
    assert_eq!(deploy.state, DeployState::Failed, "{deploy:?}");

    // Each channel told of every step once, in order: the slow one in
    // about three answers' time.
    let rows = settled_within(&world, WAIT_SECS + 3 * SLOW_ANSWER.as_secs());
    let steps = [
        ("queued", deploy.id),
        ("started", deploy.id),
        ("failed", deploy.id),
    ];
    for channel in ["slow", "fast"] {
        assert_eq!(of_channel(&rows, channel), sent_once(&steps), "{rows:#?}");
    }
    let (slow, fast) = (slow.requests(), fast.requests());
    let words = ["queued", "started", "failed"];
    assert_told_in_order(&slow, &words);
    assert_told_in_order(&fast, &words);

    // The slow channel got each message only once it had answered the
    // one before; the fast one had all three before the slow one's
    // second arrived.
    let slow_gap = slow[1].at - slow[0].at;
    assert!(
        slow_gap >= SLOW_ANSWER - Duration::from_millis(100),
        "the slow channel's second message came {slow_gap:?} after its first"
    );
    assert!(
        fast[2].at < slow[1].at,
        "the fast channel's last message came {:?} after the slow one's second",
        fast[2].at - slow[1].at
    );
    server.terminate();
}

/// Asserts that each gap between `requests` is at least the matching
/// `back_off`, less 10%.
#[track_caller]
fn assert_backed_off(requests: &[Request], back_off: &[Duration]) {
    assert_eq!(requests.len(), back_off.len() + 1, "{requests:#?}");
    for (pair, wait) in requests.windows(2).zip(back_off) {
        let gap = pair[1].at - pair[0].at;
        assert!(
            gap >= wait.mul_f64(0.9),
            "retried {gap:?} after an attempt, before the back-off's {wait:?}"
        );
    }
}

#[test]
fn a_retry_after_of_zero_is_not_a_loop() {
    let ops = Receiver::answering(vec![Answer::status(429).retry_after("0"); 3]);
    let (world, port) = world(
        "notify-retry-after-0",
        &[stack(1, "web")],
        &[chat("ops", &[])],
    );
    url_file(&world, "ops", &ops.url("/c"));
    let server = world.start_on(port, &[], &[]);
    push(&server, 1, 1);
    let deploy = deploy_of(&world, "web");
    let rows = settled(&world);
    assert_eq!(
        of_channel(&rows, "ops"),
        [(
            "succeeded".to_string(),
            Some(deploy.id),
            Some("sent".to_string()),
            4
        )],
        "{rows:#?}"
    );
    let requests = ops.requests();
    let answered: Vec<u16> = requests.iter().map(|r| r.answered).collect();
    assert_eq!(answered, [429, 429, 429, 200]);
    // One message each time (its log link's signature renewed).
    let first_lines: Vec<String> = requests
        .iter()
        .map(|r| chat_text(r).lines().next().unwrap_or_default().to_string())
        .collect();
    assert!(
        first_lines.iter().all(|l| l == &first_lines[0]),
        "{first_lines:#?}"
    );
    assert_backed_off(&requests, &[1, 2, 4].map(Duration::from_secs));
    let metrics = server.get("/metrics").text();
    assert_eq!(told(&metrics, "ops", "retried"), 3.0, "{metrics}");
    assert_eq!(told(&metrics, "ops", "sent"), 1.0, "{metrics}");
    server.terminate();
}

/// POSTs a GitHub push of commit `c` to stack `n`'s hook URL, signed with
/// a key that is not the stack's: refused as `bad-signature`.
fn probe(server: &ServerProcess, n: u32, c: usize) {
    let r = signed_github(
        server,
        &hook(n),
        "not-the-s3cret",
        ("push", &format!("probe-{n}-{c}")),
        &push_body(&commit(c)),
    );
    assert_eq!(r.status, 401, "{}", r.text());
    assert!(r.text().contains("bad-signature"), "{}", r.text());
}

/// The `refused` object of a webhook document: (count, window_seconds).
fn refused_of(doc: &Value) -> (i64, i64) {
    let refused = &doc["refused"];
    (
        refused["count"].as_i64().unwrap_or(-1),
        refused["window_seconds"].as_i64().unwrap_or(-1),
    )
}

#[test]
fn probing_a_hook_url_is_told_once_then_summed_up() {
    let probes = Receiver::start(vec![]);
    let ops = Receiver::start(vec![]);
    let (world, port) = world(
        "notify-probes",
        &[stack(1, "web")],
        &[
            webhook("probes", &["events = [\"refused\"]"]),
            chat("ops", &[]),
        ],
    );
    url_file(&world, "probes", &probes.url("/probes"));
    url_file(&world, "ops", &ops.url("/ops"));
    let server = world.start_on(port, &[], &[]);
    for c in 0..50 {
        probe(&server, 1, c);
    }

    // The first refusal, told at once.
    let first = probes.wait_for(1, 10);
    let doc = webhook_document(&first[0]);
    assert_eq!(doc["event"], "refused", "{doc:#}");
    assert_eq!(doc["stack"], "web", "{doc:#}");
    assert!(doc["deploy"].is_null(), "{doc:#}");
    assert_eq!(refused_of(&doc), (1, 0), "{doc:#}");
    assert!(
        doc["detail"]
            .as_str()
            .is_some_and(|d| d.contains("bad-signature")),
        "{doc:#}"
    );
    // Nothing more while the window lasts: the rest are not even in the
    // journal yet.
    let rows = settled(&world);
    assert_eq!(
        rows.iter()
            .map(|r| (r.channel.as_str(), r.event.as_str(), r.outcome.as_deref()))
            .collect::<Vec<_>>(),
        [("probes", "refused", Some("sent"))],
        "{rows:#?}"
    );
    let notices: i64 = world.query_journal("SELECT COUNT(*) FROM notices");
    assert_eq!(notices, 1);
    assert_eq!(probes.count(), 1);

    // A graceful stop sums the other 49 up and sends it.
    let status = server.terminate();
    assert!(status.success(), "{status:?}\n{}", world.server_log());
    let requests = probes.requests();
    assert_eq!(requests.len(), 2, "{requests:#?}\n{}", world.server_log());
    let summary = webhook_document(&requests[1]);
    assert_eq!(summary["event"], "refused", "{summary:#}");
    assert_eq!(refused_of(&summary).0, 49, "{summary:#}");
    assert!(
        summary["detail"].as_str().is_some_and(|d| d.contains("49")),
        "{summary:#}"
    );
    assert_ne!(summary["delivery"], doc["delivery"]);
    let rows = settled(&world);
    assert_eq!(rows.len(), 2, "{rows:#?}");
    assert!(
        rows.iter()
            .all(|r| r.channel == "probes" && r.outcome.as_deref() == Some("sent")),
        "{rows:#?}"
    );
    // A channel that did not ask for `refused` heard nothing.
    assert_eq!(ops.count(), 0);
}

/// The processes whose command line runs `redeploy run-queued` with the
/// config `config`.
fn runners(config: &Path) -> Vec<u32> {
    let config = config.canonicalize().unwrap();
    let config = config.to_str().unwrap();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            // A zombie's command line is empty: it has exited.
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
            args.contains(&&b"run-queued"[..]) && args.contains(&config.as_bytes())
        })
        .collect()
}

#[test]
fn a_hook_only_install_retries_within_its_runners_grace() {
    let ops = Receiver::start(vec![500]);
    let stacks = toml(&[Stack::bare_repo("web", "main")]);
    let world = World::new("notify-hook", "", &(stacks + &chat("ops", &[])));
    url_file(&world, "ops", &ops.url("/c"));
    // The bare repository with redeploy as its post-receive hook, and a
    // clone pushing to it; no server.
    let bare = world.dir.join("app.git");
    let bare = bare.to_str().unwrap();
    git(
        &world.dir.0,
        &["init", "--quiet", "--bare", "--initial-branch=main", bare],
    );
    let out = world.redeploy(&["install-hook", bare]);
    assert_exit(&out, 0);
    let work = world.dir.join("work");
    git(
        &world.dir.0,
        &["clone", "--quiet", bare, work.to_str().unwrap()],
    );
    git(&work, &["checkout", "--quiet", "-B", "main"]);
    git(
        &work,
        &["commit", "--quiet", "--allow-empty", "-m", "first"],
    );
    let out = git(&work, &["push", "origin", "main"]);
    assert!(out.contains("remote: redeploy: web: deploying"), "{out}");

    let deploy = deploy_of(&world, "web");
    assert_eq!(deploy.state, DeployState::Succeeded, "{deploy:?}");
    // The runner the hook started exits once it has told the channel,
    // retry included.
    wait_for(WAIT_SECS, "the hook's runner to exit", || {
        runners(&world.config).is_empty().then_some(())
    });
    let requests = ops.requests();
    let answered: Vec<u16> = requests.iter().map(|r| r.answered).collect();
    assert_eq!(answered, [500, 200], "{requests:#?}");
    assert_backed_off(&requests, &[Duration::from_secs(1)]);
    let text = chat_text(&requests[1]);
    assert!(
        text.contains("web") && text.contains("succeeded"),
        "{text:?}"
    );
    let rows = rows(&world);
    assert_eq!(
        of_channel(&rows, "ops"),
        [(
            "succeeded".to_string(),
            Some(deploy.id),
            Some("sent".to_string()),
            2
        )],
        "{rows:#?}"
    );
    let unfanned: i64 =
        world.query_journal("SELECT COUNT(*) FROM notices WHERE fanned_out_at_ms IS NULL");
    assert_eq!(unfanned, 0);
}

#[test]
fn the_deploy_page_lists_its_notifications() {
    let url_key = "uipagekey4t8w2q";
    let ops = Receiver::start(vec![]);
    let (world, port) = world("notify-ui", &[stack(1, "web")], &[chat("ops", &[])]);
    append(&world, &ui_table(""));
    let url = ops.url(&format!("/services/{url_key}/x"));
    url_file(&world, "ops", &url);
    let server = world.start_on(port, &[], &[]);
    push(&server, 1, 1);
    let deploy = deploy_of(&world, "web");
    settled(&world);

    let mut browser = Browser::new(&server);
    browser.sign_in("alice", PASSWORD);
    let page = browser.get(&format!("/ui/deploys/{}", deploy.id));
    assert_eq!(page.status, 200, "{}", page.text());
    let html = page.text();
    let section = html
        .find("<h2 id=\"notifications\">Notifications</h2>")
        .map(|at| &html[at..])
        .unwrap_or_else(|| panic!("no Notifications section in {html}"));
    let section = &section[..section.find("</section>").unwrap()];
    assert!(
        section.contains("<tr><td>ops</td><td>succeeded</td><td>sent: HTTP 200</td></tr>"),
        "{section}"
    );
    let receiver = url.split("/services").next().unwrap();
    for secret in [url.as_str(), url_key, receiver] {
        assert!(!html.contains(secret), "{secret:?} in {html}");
    }
    server.terminate();
}
