//! Unit tests of senders whose rules span parsing and matching, through
//! `evaluate`: the Distribution registry (envelopes, digests, hosts, event
//! age), Bitbucket Server's personal repositories, and what the headers a
//! sender does not sign (the content type, the event) may not change of a
//! signed body.

use super::*;

fn distribution_fixture(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/../tests/fixtures/distribution/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

fn registry_post(content_type: &str, body: Vec<u8>) -> Delivery {
    Delivery::Http(HttpRequest {
        method: "POST".into(),
        query: String::new(),
        headers: Headers::new([("Content-Type", content_type)]),
        body,
    })
}

/// The manifest digest Distribution's docs examples push.
const DOCS_DIGEST: &str = "sha256:fea8895f450959fa676bcc1df0611ea93823a735a01205fd8622846041d0c7cf";

#[test]
fn a_distribution_push_by_digest_deploys_untagged_and_pinned_stacks_only() {
    let stacks = [
        image_stack("with-host", "registrycluster.local/library/test"),
        image_stack("without-host", "library/test"),
        image_stack("pinned", &format!("library/test@{DOCS_DIGEST}")),
        image_stack("follows-tag", "registrycluster.local/library/test:latest"),
        image_stack("other-digest", "library/test@sha256:0123"),
        image_stack("other-registry", "registry.example.com/library/test"),
        image_stack("hub-name", "test"),
    ];
    let outcome = evaluate(
        &stacks,
        &registry_post(
            "application/vnd.docker.distribution.events.v2+json",
            distribution_fixture("distdocs-push-envelope.json"),
        ),
    )
    .unwrap();
    assert_eq!(outcome.provider, Provider::Distribution);
    assert_eq!(outcome.event, "push");
    assert_eq!(outcome.delivery.as_deref(), Some("asdf-asdf-asdf-asdf-0"));
    assert_eq!(outcome.sent_at_ms, Some(1_136_214_245_000));
    let pushed = format!("registrycluster.local/library/test@{DOCS_DIGEST}");
    for d in &outcome.decisions[..3] {
        let e = d.deploy().unwrap_or_else(|| panic!("{d:?}"));
        assert_eq!(e.image.as_deref(), Some(pushed.as_str()), "{}", d.stack);
        assert_eq!(e.provider.as_str(), "distribution");
        assert_eq!(e.delivery.as_deref(), Some("asdf-asdf-asdf-asdf-0"));
    }
    let reasons: Vec<(&str, &str)> = outcome.decisions[3..]
        .iter()
        .map(|d| {
            assert!(d.deploy().is_none(), "{d:?}");
            (d.stack.as_str(), d.reason.as_str())
        })
        .collect();
    assert_eq!(
        reasons[0],
        (
            "follows-tag",
            format!("image \"{pushed}\" was pushed without a tag (by digest only); image \"registrycluster.local/library/test:latest\" follows tag \"latest\", and a digest alone does not say which tag points at it").as_str()
        )
    );
    for (stack, wanted) in [
        ("other-digest", "library/test@sha256:0123"),
        ("other-registry", "registry.example.com/library/test"),
        ("hub-name", "test"),
    ] {
        assert!(
            reasons.contains(&(
                stack,
                format!("image \"{pushed}\" does not match image \"{wanted}\"").as_str()
            )),
            "{stack}: {reasons:?}"
        );
    }
}

#[test]
fn a_distribution_pull_skips_every_stack_with_the_reason() {
    let outcome = evaluate(
        &[image_stack("web", "hello-world")],
        &registry_post(
            "application/vnd.docker.distribution.events.v2+json",
            distribution_fixture("distdocs-pull-envelope.json"),
        ),
    )
    .unwrap();
    assert_eq!(outcome.event, "pull");
    assert!(outcome.images.is_empty());
    assert_eq!(
        outcome.decisions[0].reason,
        "distribution pull events never deploy; only a manifest push names an image"
    );
    assert!(outcome.decisions[0].deploy().is_none());
}

#[test]
fn a_distribution_push_with_a_tag_deploys_the_tag_with_or_without_the_host() {
    let body = br#"{"events": [{"id": "0b5d", "timestamp": "2024-01-18T14:37:42.194082639Z", "action": "push",
        "target": {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "sha256:26fc", "repository": "team/app", "tag": "v1"},
        "request": {"host": "registry.example.com:5000"}, "actor": {"name": "ci"}}]}"#;
    let stacks = [
        image_stack("with-host", "registry.example.com:5000/team/app:v1"),
        image_stack("without-host", "team/app"),
        image_stack("other-tag", "team/app:v2"),
    ];
    let outcome = evaluate(&stacks, &registry_post("application/json", body.to_vec())).unwrap();
    assert_eq!(outcome.provider, Provider::Distribution);
    for d in &outcome.decisions[..2] {
        let e = d.deploy().unwrap_or_else(|| panic!("{d:?}"));
        assert_eq!(
            e.image.as_deref(),
            Some("registry.example.com:5000/team/app:v1")
        );
    }
    assert_eq!(
        outcome.decisions[2].reason,
        "image \"registry.example.com:5000/team/app:v1\" does not match image \"team/app:v2\""
    );
    assert_eq!(outcome.images[0].pusher.as_deref(), Some("ci"));
}

#[test]
fn distribution_events_older_than_the_window_are_refused() {
    let s = image_stack("web", "library/test");
    let delivery = registry_post(
        "application/vnd.docker.distribution.events.v1+json",
        distribution_fixture("dockerdistdocs-v1-push-envelope.json"),
    );
    let sent = 1_136_214_245_000;
    let at = |now_ms| Context {
        now_ms: Some(now_ms),
        ..Context::default()
    };
    let fresh =
        crate::evaluate::evaluate(std::slice::from_ref(&s), &delivery, &at(sent + 60_000)).unwrap();
    assert!(fresh.decisions[0].deploy().is_some());
    let err =
        crate::evaluate::evaluate(std::slice::from_ref(&s), &delivery, &at(sent + 11 * 60_000))
            .unwrap_err();
    assert!(matches!(err, PluginError::StaleEvent(_)), "{err}");
    assert!(
        err.to_string().contains("distribution event is 660 s old"),
        "{err}"
    );
}

/// A Bitbucket Server personal repository: its project key is `~USER`. No
/// third-party payload of one was found, so this takes go-scm's
/// `repo:refs_changed` fixture (project `PRJ`, repository `my-repo`, a push
/// to `master`) and changes only the project to a personal one, as Bitbucket
/// Server names it. A stack set to `~gopher/webhook-test` (a setting the
/// host once refused) deploys it; one set to the project-less name does not.
#[test]
fn a_bitbucket_server_personal_repository_deploys_its_stack() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/fixtures/bitbucket-server/goscm-push.json"
    );
    let mut body: serde_json::Value =
        serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    body["repository"]["project"]["key"] = "~GOPHER".into();
    body["repository"]["project"]["type"] = "PERSONAL".into();
    body["repository"]["slug"] = "webhook-test".into();
    let delivery = Delivery::Http(HttpRequest {
        method: "POST".into(),
        query: String::new(),
        headers: Headers::new([
            ("X-Event-Key", "repo:refs_changed"),
            ("Content-Type", "application/json"),
        ]),
        body: serde_json::to_vec(&body).unwrap(),
    });
    let personal = stack("personal", "~gopher/webhook-test", "master");
    validate_stacks(std::slice::from_ref(&personal)).unwrap();
    let deployed = decision(std::slice::from_ref(&personal), &delivery);
    let event = deployed
        .deploy()
        .cloned()
        .expect("the personal repository's push deploys");
    assert_eq!(event.git_ref.as_deref(), Some("refs/heads/master"));
    let other = stack("other", "gopher/webhook-test", "master");
    assert!(decision(&[other], &delivery).deploy().is_none());
}

/// A header-signed delivery of `body` with `headers` (name, value).
fn signed_post(headers: &[(&str, &str)], body: Vec<u8>) -> Delivery {
    Delivery::Http(HttpRequest {
        method: "POST".into(),
        query: String::new(),
        headers: Headers::new(headers.iter().copied()),
        body,
    })
}

#[test]
fn a_signed_json_push_sent_again_as_a_form_is_not_read_as_a_payload_inside_it() {
    // The real push to `master`, its head commit's message written by an
    // attacker: `&payload=` and, percent-encoded, a push of another commit.
    let mut push: serde_json::Value = serde_json::from_slice(
        &crate::providers::test_support::fixture("github/goscm-push.json"),
    )
    .unwrap();
    let mut forged = push.clone();
    forged["after"] = "3".repeat(40).into();
    let forged: String = form_urlencoded::byte_serialize(forged.to_string().as_bytes()).collect();
    push["ref"] = "refs/heads/feature".into();
    push["head_commit"]["message"] = format!("x &payload={forged}& y").into();
    let body = push.to_string().into_bytes();
    let signature = format!("sha256={}", signature::hmac_sha256_hex(b"s3cret", &body));
    let s = with_secret(stack("web", "Codertocat/Hello-World", "master"));
    let stacks = std::slice::from_ref(&s);
    let sent = |content_type: &str| {
        signed_post(
            &[
                ("X-GitHub-Event", "push"),
                ("Content-Type", content_type),
                ("X-Hub-Signature-256", &signature),
            ],
            body.clone(),
        )
    };
    // As GitHub sent it: a push to `feature`, skipped.
    let o = evaluate(stacks, &sent("application/json")).unwrap();
    assert_eq!(
        o.decisions[0].skip(),
        Some(SkipCode::BranchMismatch),
        "{o:?}"
    );
    // Sent again as a form: its signature still holds (it covers the body
    // as sent), and the body is refused, not read as the forged push.
    let err = evaluate(stacks, &sent("application/x-www-form-urlencoded")).unwrap_err();
    assert!(
        matches!(&err, PluginError::MalformedPayload(m) if m.contains("one payload field")),
        "{err}"
    );
}

#[test]
fn a_signed_github_push_sent_again_under_a_gitea_label_is_refused() {
    // GitHub's real push to `master`: Gitea, Forgejo and Gogs sign alike
    // (the same HMAC-SHA256 of the body, as `X-Hub-Signature-256` or bare
    // hex), but their rules are looser (no forced flag, a commit list never
    // known whole), so the same bytes must not be judged by them.
    let body = crate::providers::test_support::fixture("github/goscm-push.json");
    let event: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(event["ref"], "refs/heads/master");
    assert_eq!(event["forced"], false);
    let hex = signature::hmac_sha256_hex(b"s3cret", &body);
    let prefixed = format!("sha256={hex}");
    let s = with_secret(stack("web", "Codertocat/Hello-World", "master"));
    let stacks = std::slice::from_ref(&s);
    let github = signed_post(
        &[
            ("X-GitHub-Event", "push"),
            ("X-Hub-Signature-256", &prefixed),
        ],
        body.clone(),
    );
    let o = evaluate(stacks, &github).unwrap();
    assert!(o.decisions[0].deploy().is_some(), "{o:?}");
    for (event_header, signature_header, value) in [
        ("X-Gitea-Event", "X-Hub-Signature-256", prefixed.as_str()),
        ("X-Gitea-Event", "X-Gitea-Signature", hex.as_str()),
        ("X-Forgejo-Event", "X-Forgejo-Signature", hex.as_str()),
        ("X-Gogs-Event", "X-Gogs-Signature", hex.as_str()),
    ] {
        let relabelled = signed_post(
            &[(event_header, "push"), (signature_header, value)],
            body.clone(),
        );
        let err = evaluate(stacks, &relabelled).unwrap_err();
        assert!(
            matches!(&err, PluginError::MalformedPayload(m) if m.contains("GitHub's created/deleted/forced flags")),
            "{event_header}: {err}"
        );
    }
}

#[test]
fn commit_ids_tags_and_digests_that_git_and_registries_never_make_are_refused() {
    // A stack without secrets takes a push from whoever has its URL: the
    // fields that reach the command's environment must be what they say.
    let refused = |body: Vec<u8>, headers: &[(&str, &str)], s: Stack| {
        let err = evaluate(std::slice::from_ref(&s), &signed_post(headers, body)).unwrap_err();
        match err {
            PluginError::MalformedPayload(m) => m,
            other => panic!("{other}"),
        }
    };
    let github = || -> serde_json::Value {
        serde_json::from_slice(&crate::providers::test_support::fixture(
            "github/goscm-push.json",
        ))
        .unwrap()
    };
    let web = || stack("web", "Codertocat/Hello-World", "master");
    let as_github = [("X-GitHub-Event", "push")];
    // The real push deploys as it is.
    let real = signed_post(&as_github, github().to_string().into_bytes());
    assert!(evaluate(&[web()], &real).unwrap().decisions[0]
        .deploy()
        .is_some());
    for (field, value) in [
        ("after", "--orphan=x"),
        ("after", "199edd"),
        ("before", "$(touch pwned)"),
        ("after", &"g".repeat(40)),
        ("after", &"a".repeat(65)),
    ] {
        let mut push = github();
        push[field] = value.into();
        let m = refused(push.to_string().into_bytes(), &as_github, web());
        assert!(
            m.starts_with(&format!("the push's {field} "))
                && m.ends_with("is not a commit id (7 to 64 hex digits)"),
            "{m}"
        );
    }
    // The legacy Bitbucket service's commit named by its 12-digit `node`
    // alone (no `raw_node`): an abbreviated id, taken.
    let mut legacy: serde_json::Value = serde_json::from_slice(
        &crate::providers::test_support::fixture("bitbucket-legacy-post/zulip-bitbucket_push.json"),
    )
    .unwrap();
    let commit = legacy["commits"][0].as_object_mut().unwrap();
    let raw = commit.remove("raw_node").unwrap();
    commit.insert("node".into(), raw.as_str().unwrap()[..12].into());
    let form: String = form_urlencoded::byte_serialize(legacy.to_string().as_bytes()).collect();
    let posted = signed_post(
        &[("Content-Type", "application/x-www-form-urlencoded")],
        format!("payload={form}").into_bytes(),
    );
    let o = evaluate(
        &[stack("web", "kolaszek/repository-name", "master")],
        &posted,
    )
    .unwrap();
    let deployed = o.decisions[0].deploy().unwrap_or_else(|| panic!("{o:?}"));
    assert_eq!(deployed.sha.as_deref(), Some("25f93d22b719"));
    // Docker Hub's example push of `latest`: a tag never starts with `-`.
    let hub = || -> serde_json::Value {
        serde_json::from_slice(&crate::providers::test_support::fixture(
            "dockerhub/dockerdocs-webhook-example.json",
        ))
        .unwrap()
    };
    let testhook = || image_stack("img", "svendowideit/testhook");
    let real = signed_post(&[], hub().to_string().into_bytes());
    assert!(evaluate(&[testhook()], &real).unwrap().decisions[0]
        .deploy()
        .is_some());
    for tag in ["--rm", ".hidden", "a b", &"t".repeat(129)] {
        let mut push = hub();
        push["push_data"]["tag"] = tag.into();
        let m = refused(push.to_string().into_bytes(), &[], testhook());
        assert!(m.starts_with("the image's tag "), "{tag}: {m}");
    }
    // Distribution's docs push, its `request.host` written by the pusher.
    for host in ["--orphan=x", "-v /:/host"] {
        let mut envelope: serde_json::Value =
            serde_json::from_slice(&distribution_fixture("distdocs-push-envelope.json")).unwrap();
        envelope["events"][0]["request"]["host"] = host.into();
        let m = refused(
            envelope.to_string().into_bytes(),
            &[(
                "Content-Type",
                "application/vnd.docker.distribution.events.v2+json",
            )],
            image_stack("test", "library/test"),
        );
        assert!(m.starts_with("the image's registry "), "{host}: {m}");
    }
    // A branch never starts with `-`: on a stack following every branch,
    // such a push deploys nothing.
    let mut dash = github();
    dash["ref"] = "refs/heads/--upload-pack=touch${IFS}x".into();
    let any = stack("web", "Codertocat/Hello-World", "*");
    let o = evaluate(
        std::slice::from_ref(&any),
        &signed_post(&as_github, dash.to_string().into_bytes()),
    )
    .unwrap();
    assert!(o.decisions[0].deploy().is_none(), "{o:?}");
    for host in [
        "registry.example.com:5000",
        "localhost",
        "10.0.0.1:443",
        "[::1]:5000",
        "my-registry.azurecr.io",
    ] {
        assert!(crate::matching::is_registry_host(host), "{host}");
    }
    for host in [
        "--orphan=x",
        "-v /:/host",
        "a b",
        "host:",
        "host:x",
        "-a.example.com",
        "a..b",
        "[]",
        "h/x",
    ] {
        assert!(!crate::matching::is_registry_host(host), "{host}");
    }
    assert!(crate::matching::is_digest("sha256:0123abcdef"));
    assert!(crate::matching::is_digest(
        "multihash+base58:QmRZxt2b1FVZPNqd8hsiykDL3TdBDeTSPX9Kv46HmX4Gx8"
    ));
    for digest in [
        "sha256",
        "sha256:",
        "SHA256:ab",
        ":ab",
        "sha256:a b",
        "sha256:-x;y",
    ] {
        assert!(!crate::matching::is_digest(digest), "{digest}");
    }
}

#[test]
fn a_create_or_delete_event_sent_again_as_a_push_is_refused_not_deployed() {
    // Real `delete` and `create` events of a branch, relabelled `push` (the
    // event header is not signed): they name a ref and no `after`.
    let cases = [
        (
            "github/goscm-branch_delete.json",
            "X-GitHub-Event",
            "Codertocat/Hello-World",
            "feature-branch",
        ),
        (
            "github/goscm-branch_create.json",
            "X-GitHub-Event",
            "Codertocat/Hello-World",
            "feature-branch",
        ),
        (
            "gitea/goscm-branch_delete.json",
            "X-Gitea-Event",
            "gogits/hello-world",
            "feature",
        ),
        (
            "gitea/goscm-branch_create.json",
            "X-Gitea-Event",
            "gogits/hello-world",
            "feature",
        ),
    ];
    for (path, event_header, repository, branch) in cases {
        let body = crate::providers::test_support::fixture(path);
        let event: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(event["ref"], branch, "{path}");
        assert!(event.get("after").is_none(), "{path}");
        let s = stack("web", repository, branch);
        let relabelled = signed_post(&[(event_header, "push")], body);
        let err = evaluate(std::slice::from_ref(&s), &relabelled).unwrap_err();
        assert!(
            matches!(&err, PluginError::MalformedPayload(m) if m.ends_with("missing after")),
            "{path}: {err}"
        );
    }
}

#[test]
fn a_form_with_an_empty_payload_is_a_manual_trigger_under_the_stacks_policy() {
    let form = [("Content-Type", "application/x-www-form-urlencoded")];
    let mut refuse = stack("web", "acme/web", "main");
    refuse.manual = ManualPolicy::Refuse;
    for body in ["payload=", "payload=%20%0A"] {
        let d = signed_post(&form, body.as_bytes().to_vec());
        let err = evaluate(std::slice::from_ref(&refuse), &d).unwrap_err();
        assert!(matches!(err, PluginError::Refused(_)), "{body}: {err}");
        let allow = stack("web", "acme/web", "main");
        let o = evaluate(std::slice::from_ref(&allow), &d).unwrap();
        assert_eq!(o.provider, Provider::Manual, "{body}");
    }
}

#[test]
fn redeploys_own_deployment_of_a_commit_deploys_only_that_commit() {
    let key = "deployment-key";
    let mut s = with_github_cd(stack("web", "Codertocat/Hello-World", "master"));
    if let Some(gh) = s.github.as_mut() {
        gh.repository = "Codertocat/Hello-World".into();
    }
    let body = |sha: &str| {
        let mut event: serde_json::Value = serde_json::from_slice(
            &crate::providers::test_support::fixture("github/goscm-deployment.json"),
        )
        .unwrap();
        let asked = "199eddf46df50de8d02e99bf1c5fdb4101338224";
        let mac = crate::github::deployment_mac(
            key,
            &crate::github::MacInput {
                stack: "web",
                git_ref: asked,
                environment: "production",
                services: &[],
                profile: None,
            },
        );
        let d = &mut event["deployment"];
        d["ref"] = asked.into();
        d["sha"] = sha.into();
        d["environment"] = "production".into();
        d["task"] = "deploy".into();
        d["payload"] = serde_json::json!({ "stack": "web", "redeploy-mac": mac });
        event.to_string().into_bytes()
    };
    let ctx = Context {
        deployment_key: Some(key.into()),
        ..Default::default()
    };
    let deployment = |sha: &str| signed_post(&[("X-GitHub-Event", "deployment")], body(sha));
    let stacks = std::slice::from_ref(&s);
    let asked = "199eddf46df50de8d02e99bf1c5fdb4101338224";
    let o = crate::evaluate::evaluate(stacks, &deployment(asked), &ctx).unwrap();
    assert_eq!(o.decisions[0].deploy().unwrap().sha.as_deref(), Some(asked));
    let other = "e".repeat(40);
    let o = crate::evaluate::evaluate(stacks, &deployment(&other), &ctx).unwrap();
    assert_eq!(
        o.decisions[0].skip(),
        Some(SkipCode::ForeignDeployment),
        "{o:?}"
    );
    assert!(
        o.decisions[0].reason.contains("redeploy asked for commit"),
        "{o:?}"
    );
}

#[test]
fn a_reason_quotes_a_repository_url_without_its_credentials() {
    let setting = "https://deploybot:glpat-s3cret@git.example.com/acme/open.git";
    let s = stack("web", setting, "master");
    let push = signed_post(
        &[("X-GitHub-Event", "push")],
        crate::providers::test_support::fixture("github/goscm-push.json"),
    );
    let o = evaluate(std::slice::from_ref(&s), &push).unwrap();
    let d = &o.decisions[0];
    assert_eq!(d.skip(), Some(SkipCode::OtherRepository), "{d:?}");
    assert!(
        d.reason
            .ends_with("\"https://<redacted>@git.example.com/acme/open.git\""),
        "{}",
        d.reason
    );
    assert!(!d.reason.contains("glpat"), "{}", d.reason);
}

#[test]
fn a_post_receive_push_under_a_url_with_credentials_is_quoted_without_them() {
    // `[hook] repositories` may name the repository by a URL that holds a
    // token: the pushed repository's name in a reason goes through the
    // same filter as a setting.
    let url = "https://deploybot:glpat-s3cret@git.example.com/acme/app.git";
    let s = stack("app", url, "main");
    let a = "a".repeat(40);
    let push = post_receive(
        url,
        &[("0".repeat(40).as_str(), a.as_str(), "refs/heads/main")],
        "",
    );
    let d = decision(std::slice::from_ref(&s), &push);
    assert!(d.deploy().is_some(), "{d:?}");
    assert!(
        d.reason
            .contains("of https://<redacted>@git.example.com/acme/app.git"),
        "{}",
        d.reason
    );
    assert!(!d.reason.contains("glpat"), "{}", d.reason);
}

#[test]
fn an_envelope_of_two_images_a_stack_follows_deploys_each() {
    // Distribution's documented envelope, its manifest event sent again for
    // a second repository (library/worker), as a registry batching two
    // pushes does; the layer events deploy nothing.
    let mut envelope: serde_json::Value =
        serde_json::from_slice(&distribution_fixture("distdocs-push-envelope.json")).unwrap();
    let events = envelope["events"].as_array_mut().unwrap();
    let mut worker = events[0].clone();
    worker["id"] = "asdf-asdf-asdf-asdf-3".into();
    worker["target"]["repository"] = "library/worker".into();
    events.push(worker);
    let shop = Stack {
        name: "shop".into(),
        services: ["test", "worker"]
            .iter()
            .map(|name| Service {
                name: (*name).into(),
                image: Some(format!("registrycluster.local/library/{name}")),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    let outcome = evaluate(
        &[shop, image_stack("test-only", "library/test")],
        &registry_post(
            "application/vnd.docker.distribution.events.v2+json",
            serde_json::to_vec(&envelope).unwrap(),
        ),
    )
    .unwrap();
    assert_eq!(outcome.images.len(), 2, "{:?}", outcome.images);
    let deploys: Vec<(&str, Vec<String>, Option<String>)> = outcome
        .decisions
        .iter()
        .map(|d| {
            let e = d.deploy().unwrap_or_else(|| panic!("{d:?}"));
            (d.stack.as_str(), e.services.clone(), e.image.clone())
        })
        .collect();
    let image = |repo: &str| {
        Some(format!(
            "registrycluster.local/library/{repo}@{DOCS_DIGEST}"
        ))
    };
    assert_eq!(
        deploys,
        [
            ("shop", vec!["test".to_string()], image("test")),
            ("shop", vec!["worker".to_string()], image("worker")),
            ("test-only", vec!["test-only".to_string()], image("test")),
        ]
    );
}
