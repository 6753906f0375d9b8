//! Unit tests of `message.rs`, beside it so that file stays short.
use super::*;

const SHA: &str = "3f786850e387550fdab836ed7e6dc881de23001b";

fn failed() -> Message {
    super::sample_failed()
}

fn with_event(event: NoticeEvent) -> Message {
    let mut m = failed();
    m.event = Some(event);
    m
}

fn refused() -> Message {
    Message {
        id: 18,
        delivery: "a1b2c3d4e5f6-18".into(),
        event: Some(NoticeEvent::Refused),
        stack: "web".into(),
        at_ms: 1_767_225_600_000,
        detail: Some("bad signature".into()),
        deploy: None,
        refused: Some(RefusedFacts {
            count: 3,
            window: Duration::from_secs(600),
        }),
    }
}

fn test_message() -> Message {
    Message {
        id: 19,
        delivery: "test-9f8e7d6c5b4a".into(),
        event: None,
        stack: "web".into(),
        at_ms: 1_767_225_600_000,
        detail: None,
        deploy: None,
        refused: None,
    }
}

fn text(m: &Message) -> String {
    chat_body(m)["text"].as_str().unwrap().to_string()
}

#[test]
fn a_failed_deploy_in_chat() {
    assert_eq!(
        chat_body(&failed()),
        json!({
            "text": format!(
                "*web*: deploy failed: exit code 1\n\
                 <https://github.com/acme/web/commit/{SHA}|3f786850e387> on main by alice \
                 · after 1m 4s · <https://deploy.example.com/ui/deploys/42|log>"
            )
        })
    );
}

#[test]
fn each_event_in_words() {
    for (event, words) in [
        (NoticeEvent::Queued, "*web*: deploy queued"),
        (NoticeEvent::Started, "*web*: deploy started"),
        (NoticeEvent::Succeeded, "*web*: deploy succeeded"),
        (NoticeEvent::Failed, "*web*: deploy failed"),
        (NoticeEvent::Cancelled, "*web*: deploy cancelled"),
        (NoticeEvent::Interrupted, "*web*: deploy interrupted"),
        (NoticeEvent::TimedOut, "*web*: deploy timed out"),
    ] {
        let m = with_event(event);
        assert!(text(&m).starts_with(words), "{event}: {}", text(&m));
        assert_eq!(
            email_subject(&m),
            format!("[redeploy] web: {}", &words[7..])
        );
    }
    assert_eq!(
        text(&refused()),
        "*web*: 3 deliveries refused on the hook URL in the last 10m \
         (bad signature or token): bad signature"
    );
    assert_eq!(
        email_subject(&refused()),
        "[redeploy] web: 3 deliveries refused on the hook URL"
    );
    let mut one = refused();
    one.refused = Some(RefusedFacts {
        count: 1,
        window: Duration::from_secs(3600),
    });
    one.detail = None;
    assert_eq!(
        text(&one),
        "*web*: 1 delivery refused on the hook URL in the last 1h (bad signature or token)"
    );
    let mut first = refused();
    first.refused = Some(RefusedFacts {
        count: 1,
        window: Duration::ZERO,
    });
    assert_eq!(
        text(&first),
        "*web*: 1 delivery refused on the hook URL (bad signature or token): bad signature"
    );
    assert!(!email_text(&first).contains("Window"));
    let mut cut = refused();
    cut.refused = Some(RefusedFacts {
        count: 2,
        window: Duration::from_millis(432_517),
    });
    assert!(text(&cut).contains("in the last 7m 13s "), "{}", text(&cut));
    let body: Value = serde_json::from_slice(&webhook_body(&cut)).unwrap();
    assert_eq!(body["refused"]["window_seconds"], 433);
    assert_eq!(text(&test_message()), "*web*: test message from redeploy");
    let mut no_stack = test_message();
    no_stack.stack = String::new();
    assert_eq!(text(&no_stack), "test message from redeploy");
    assert_eq!(
        email_subject(&no_stack),
        "[redeploy] test message from redeploy"
    );
}

#[test]
fn a_queued_deploy_says_why_and_has_no_duration() {
    let mut m = with_event(NoticeEvent::Queued);
    m.detail = None;
    let d = m.deploy.as_mut().unwrap();
    d.started_at_ms = None;
    d.finished_at_ms = None;
    d.commit_url = None;
    d.log_url = None;
    d.git_ref = Some("refs/tags/v1.2.0".into());
    assert_eq!(
        text(&m),
        "*web*: deploy queued: push to refs/heads/main\n3f786850e387 on tag v1.2.0 by alice"
    );
}

#[test]
fn an_image_push_shows_the_image() {
    let mut m = with_event(NoticeEvent::Succeeded);
    m.detail = None;
    let d = m.deploy.as_mut().unwrap();
    d.sha = None;
    d.commit_url = None;
    d.git_ref = None;
    d.pusher = None;
    d.provider = "dockerhub".into();
    d.reason = "image push".into();
    d.image = Some("docker.io/acme/web:1.2".into());
    assert_eq!(
        text(&m),
        "*web*: deploy succeeded: image push\nimage docker.io/acme/web:1.2 · after 1m 4s \
         · <https://deploy.example.com/ui/deploys/42|log>"
    );
}

#[test]
fn hostile_text_cannot_mention_link_or_break_lines() {
    let mut m = failed();
    m.detail = Some("exit code 1\n*web*: deploy succeeded @here".into());
    let d = m.deploy.as_mut().unwrap();
    d.pusher = Some("<!channel> & <http://evil|x>".into());
    d.git_ref = Some("refs/heads/<!here>\r\u{202E}x".into());
    let t = text(&m);
    assert!(
        t.contains("by &lt;!\u{200B}channel&gt; &amp; &lt;http://evil|x&gt;"),
        "{t}"
    );
    assert!(t.contains("on &lt;!\u{200B}here&gt;  x"), "{t}");
    assert!(!t.contains("<!"), "{t}");
    assert!(!t.contains("<http://evil"), "{t}");
    assert!(t.contains("deploy succeeded @\u{200B}here"), "{t}");
    assert_eq!(t.lines().count(), 2, "{t}");
    // Email: one line each, the text as it is.
    let mail = email_text(&m);
    assert!(
        mail.contains("\nPushed by: <!channel> & <http://evil|x>\n"),
        "{mail}"
    );
    assert!(mail.contains("\nDetail: exit code 1 *web*: deploy succeeded @here\n"));
    m.stack = "web\nBcc: x@example.com".into();
    assert_eq!(
        email_subject(&m),
        "[redeploy] web Bcc: x@example.com: deploy failed"
    );
}

#[test]
fn hostile_text_cannot_make_a_markdown_link_image_or_code_span() {
    let link = "[Approve rollback](https://evil.example/login)";
    let image = "![](https://attacker/p.png)";
    let mut m = failed();
    m.detail = Some(link.into());
    m.stack = image.into();
    {
        let d = m.deploy.as_mut().unwrap();
        d.pusher = Some(link.into());
        d.git_ref = Some(format!("refs/heads/{image}"));
        d.reason = image.into();
    }
    let mut by_reason = m.clone();
    by_reason.detail = None;
    let mut by_image = m.clone();
    {
        let d = by_image.deploy.as_mut().unwrap();
        d.sha = None;
        d.image = Some(link.into());
        d.git_ref = Some(link.into());
        d.pusher = Some(image.into());
    }
    for m in [m, by_reason, by_image] {
        let t = text(&m);
        assert!(!t.contains("]("), "{t}");
        assert!(!t.contains("!["), "{t}");
        // The links the message builds itself are still links.
        assert!(t.contains("|log>"), "the deploy's log link is kept: {t}");
        // Read without the zero-width spaces, the text is as sent.
        let shown = t.replace('\u{200B}', "");
        assert!(shown.contains(image) || shown.contains(link), "{shown}");
    }
    assert_eq!(
        chat_escape(link),
        "[\u{200B}Approve rollback]\u{200B}(https://evil.example/login)"
    );
    assert_eq!(
        chat_escape(image),
        "!\u{200B}[\u{200B}]\u{200B}(https://attacker/p.png)"
    );
    // A reference link, and an image nested in a link, are broken too.
    for hostile in ["[x][y]", "[![a](b)](c)", "[a]\n(b)"] {
        let escaped = chat(hostile, MAX_DISPLAY_NAME_CHARS);
        assert!(!escaped.contains("]("), "{escaped}");
        assert!(!escaped.contains("]["), "{escaped}");
        assert!(!escaped.contains("!["), "{escaped}");
    }
    // No code span: a backtick is shown as a look-alike.
    let code = "ok `rm -rf /` ```hidden```";
    let escaped = chat_escape(code);
    assert!(!escaped.contains('`'), "{escaped}");
    assert_eq!(escaped, "ok ˋrm -rf /ˋ ˋˋˋhiddenˋˋˋ");
    // Text with none of these characters is unchanged.
    assert_eq!(
        chat_escape("deploy failed: exit code 1"),
        "deploy failed: exit code 1"
    );
    // Email and the webhook carry the text as it is.
    let mut m = failed();
    m.detail = Some(link.into());
    assert!(email_text(&m).contains(&format!("\nDetail: {link}\n")));
    let body: Value = serde_json::from_slice(&webhook_body(&m)).unwrap();
    assert_eq!(body["detail"], link);
}

#[test]
fn long_text_is_cut_on_a_character_boundary() {
    let mut m = failed();
    m.detail = Some("é".repeat(1000));
    m.deploy.as_mut().unwrap().pusher = Some("ü".repeat(500));
    let t = text(&m);
    let expected_detail = format!("{}…", "é".repeat(MAX_DISPLAY_DETAIL_CHARS - 1));
    assert!(!t.contains("exit code"), "{t}");
    assert!(t.contains(&format!(": {expected_detail}\n")), "{t}");
    assert!(t.contains(&format!("by {}… ·", "ü".repeat(MAX_DISPLAY_NAME_CHARS - 1))));
    assert_eq!(clip("abc", 3), "abc");
    assert_eq!(clip("abcd", 3), "ab…");
    // The webhook carries the whole text.
    let body: Value = serde_json::from_slice(&webhook_body(&m)).unwrap();
    assert_eq!(body["detail"].as_str().unwrap().chars().count(), 1000);
}

#[test]
fn links_that_do_not_fit_slack_syntax_are_not_linked() {
    assert_eq!(
        chat_link(Some("https://x.example/a?b=1&c=2"), "log"),
        "<https://x.example/a?b=1&amp;c=2|log>"
    );
    assert_eq!(chat_link(Some("https://x.example/a|b"), "log"), "log");
    assert_eq!(chat_link(Some("https://x.example/a>b"), "log"), "log");
    assert_eq!(chat_link(Some("javascript:alert(1)"), "log"), "log");
    assert_eq!(chat_link(Some("https://x.example/a b"), "log"), "log");
    assert_eq!(chat_link(None, "log"), "log");
}

#[test]
fn durations_read_as_people_read_them() {
    assert_eq!(human_ms(64_000), "1m 4s");
    assert_eq!(human_ms(64_499), "1m 4s");
    assert_eq!(human_ms(0), "0s");
    assert_eq!(human_ms(-5), "0s");
    assert_eq!(human_ms(3_723_000), "1h 2m 3s");
}

#[test]
fn the_webhook_body_of_a_failed_deploy() {
    let body: Value = serde_json::from_slice(&webhook_body(&failed())).unwrap();
    assert_eq!(
        body,
        json!({
            "schema": "redeploy.notification/v1",
            "id": 17,
            "delivery": "a1b2c3d4e5f6-17",
            "event": "failed",
            "test": false,
            "stack": "web",
            "at_ms": 1_767_225_594_000_i64,
            "at": "2025-12-31T23:59:54.000Z",
            "detail": "exit code 1",
            "deploy": {
                "id": 42,
                "provider": "github",
                "ref": "refs/heads/main",
                "branch": "main",
                "tag": null,
                "sha": SHA,
                "image": null,
                "pusher": "alice",
                "services": [],
                "profile": null,
                "reason": "push to refs/heads/main",
                "queued_at_ms": 1_767_225_500_000_i64,
                "started_at_ms": 1_767_225_530_000_i64,
                "finished_at_ms": 1_767_225_594_000_i64,
                "duration_ms": 64_000,
                "exit_code": 1,
                "commit_url": format!("https://github.com/acme/web/commit/{SHA}"),
                "log_url": "https://deploy.example.com/ui/deploys/42",
            },
            "refused": null,
        })
    );
    let body: Value = serde_json::from_slice(&webhook_body(&refused())).unwrap();
    assert_eq!(body["event"], "refused");
    assert_eq!(body["refused"], json!({"count": 3, "window_seconds": 600}));
    assert_eq!(body["deploy"], Value::Null);
    let body: Value = serde_json::from_slice(&webhook_body(&test_message())).unwrap();
    assert_eq!(body["event"], "test");
    assert_eq!(body["test"], true);
    assert_eq!(body["delivery"], "test-9f8e7d6c5b4a");
}

#[test]
fn webhook_bodies_match_the_published_schema() {
    let schema: Value = serde_json::from_str(include_str!(
        "../../../docs/notification-webhook.v1.schema.json"
    ))
    .unwrap();
    let validator = jsonschema::options()
        .should_validate_formats(true)
        .build(&schema)
        .expect("a valid schema");
    let mut tag = with_event(NoticeEvent::Started);
    {
        let d = tag.deploy.as_mut().unwrap();
        d.git_ref = Some("refs/tags/v1".into());
        d.finished_at_ms = None;
        d.exit_code = None;
        d.services = vec!["api".into(), "worker".into()];
        d.profile = Some("prod".into());
    }
    let mut bare = with_event(NoticeEvent::Queued);
    {
        bare.detail = None;
        let d = bare.deploy.as_mut().unwrap();
        d.git_ref = None;
        d.sha = None;
        d.pusher = None;
        d.image = Some("ghcr.io/acme/web@sha256:abc".into());
        d.started_at_ms = None;
        d.finished_at_ms = None;
        d.exit_code = None;
        d.commit_url = None;
        d.log_url = None;
    }
    let mut messages = vec![failed(), refused(), test_message(), tag, bare];
    messages.extend(NoticeEvent::ALL.into_iter().map(with_event));
    for m in &messages {
        let body: Value = serde_json::from_slice(&webhook_body(m)).unwrap();
        let errors: Vec<String> = validator
            .iter_errors(&body)
            .map(|e| e.to_string())
            .collect();
        assert!(errors.is_empty(), "{body}: {errors:?}");
    }
    // The schema is strict: an unknown field is refused.
    let mut body: Value = serde_json::from_slice(&webhook_body(&failed())).unwrap();
    body["extra"] = json!(1);
    assert!(!validator.is_valid(&body));
    let mut body: Value = serde_json::from_slice(&webhook_body(&failed())).unwrap();
    body["deploy"]["extra"] = json!(1);
    assert!(!validator.is_valid(&body));
}

#[test]
fn the_email_of_a_failed_deploy() {
    assert_eq!(email_subject(&failed()), "[redeploy] web: deploy failed");
    assert_eq!(
        email_text(&failed()),
        format!(
            "Stack: web\n\
             State: deploy failed\n\
             At: 2025-12-31T23:59:54Z\n\
             Detail: exit code 1\n\
             Deploy: 42 (github)\n\
             Commit: {SHA} <https://github.com/acme/web/commit/{SHA}>\n\
             Ref: refs/heads/main\n\
             Pushed by: alice\n\
             Services: all\n\
             Reason: push to refs/heads/main\n\
             Queued: 2025-12-31T23:58:20Z\n\
             Started: 2025-12-31T23:58:50Z\n\
             Finished: 2025-12-31T23:59:54Z\n\
             Duration: 1m 4s\n\
             Exit code: 1\n\
             Log: https://deploy.example.com/ui/deploys/42\n\
             \n\
             -- \n\
             Sent by redeploy (notification 17).\n"
        )
    );
}

#[test]
fn the_email_of_refused_deliveries() {
    assert_eq!(
        email_text(&refused()),
        "Stack: web\n\
         State: 3 deliveries refused on the hook URL in the last 10m (bad signature or token)\n\
         At: 2026-01-01T00:00:00Z\n\
         Detail: bad signature\n\
         Refused: 3\n\
         Window: 10m\n\
         \n\
         -- \n\
         Sent by redeploy (notification 18).\n"
    );
}
