//! Unit tests of `providers::github`, beside it so the parser file stays short.

use std::borrow::Cow;

use super::*;
use crate::model::{ChangedFiles, Push};
use crate::providers::test_support::{assert_ref, Fixtures};

const GITHUB: Fixtures = Fixtures::new("github", parse);

fn push(name: &str) -> Push {
    GITHUB.push("push", name)
}

fn files(list: &[&str]) -> ChangedFiles {
    ChangedFiles::Complete(list.iter().map(|s| s.to_string()).collect())
}

#[test]
fn push_branch_update() {
    let p = push("goscm-push.json");
    assert_eq!(p.repository.full_name, "Codertocat/Hello-World");
    assert_eq!(
        p.repository.urls,
        vec![
            "https://github.com/Codertocat/Hello-World.git",
            "git@github.com:Codertocat/Hello-World.git",
            "git://github.com/Codertocat/Hello-World.git",
            "https://github.com/Codertocat/Hello-World",
        ]
    );
    assert_ref(
        &p,
        "refs/heads/master",
        Some("a10867b14bb761a232cd80139fbd4c0d33264240"),
        Some("199eddf46df50de8d02e99bf1c5fdb4101338224"),
    );
    assert!(!p.created && !p.deleted && !p.forced);
    assert_eq!(p.pusher.as_deref(), Some("Codertocat"));
    assert_eq!(p.head_message.as_deref(), Some("Update README"));
    assert_eq!(p.commit_messages, vec!["Update README"]);
    assert!(p.commits_complete);
    assert_eq!(p.changed_files, files(&["README.md"]));
}

#[test]
fn push_woodpecker_update() {
    let p = push("woodpecker-HookPush.json");
    assert_eq!(p.repository.full_name, "woodpecker-ci/woodpecker");
    assert_ref(
        &p,
        "refs/heads/main",
        Some("2f780193b136b72bfea4eeb640786a8c4450c7a2"),
        Some("366701fde727cb7a9e7f21eb88264f59f6f9b89c"),
    );
    assert!(!p.created && !p.deleted && !p.forced);
    assert_eq!(p.pusher.as_deref(), Some("6543"));
    assert_eq!(
        p.head_message.as_deref(),
        Some("Fix multiline secrets replacer (#700)\n\n* Fix multiline secrets replacer\r\n\r\n* Add tests")
    );
    assert_eq!(p.commit_messages.len(), 1);
    assert_eq!(
        p.changed_files,
        files(&[
            "pipeline/shared/replace_secrets.go",
            "pipeline/shared/replace_secrets_test.go"
        ])
    );
}

#[test]
fn push_forced_has_unknown_files() {
    let p = push("woodpecker-HookPushForced.json");
    assert_eq!(p.repository.full_name, "6543/oxiduct");
    assert_ref(
        &p,
        "refs/heads/main",
        Some("5ea737297f2e2e88f4cdf796e72cbcb12d40fd9c"),
        Some("f7220f1f753260bf6f1c533357c70213e9fd4abe"),
    );
    assert!(p.forced && !p.created && !p.deleted);
    assert_eq!(p.pusher.as_deref(), Some("6543"));
    assert!(p
        .head_message
        .as_deref()
        .is_some_and(|m| m.starts_with("feat: initial implementation\n")));
    assert_eq!(p.commit_messages.len(), 1);
    assert_eq!(p.changed_files, ChangedFiles::Unknown);
}

#[test]
fn push_branch_create() {
    let p = push("goscm-push_branch_create.json");
    assert_eq!(p.repository.full_name, "bradrydzewski/drone-test-go");
    assert_ref(
        &p,
        "refs/heads/feature-branch",
        None,
        Some("d2b75aa7797ec26b088fa2dd527e9d2c052fcedd"),
    );
    assert!(p.created && !p.deleted && !p.forced);
    assert_eq!(p.pusher.as_deref(), Some("bradrydzewski"));
    assert_eq!(p.head_message.as_deref(), Some("Update .drone.yml"));
    assert!(p.commit_messages.is_empty());
    assert_eq!(p.changed_files, ChangedFiles::Unknown);

    for name in [
        "octokit-push-with-new-branch.json",
        "octokit-push-with-no-username-committer.json",
    ] {
        let p = push(name);
        assert_eq!(p.repository.full_name, "Codertocat/Hello-World");
        assert_ref(
            &p,
            "refs/heads/master",
            None,
            Some("6113728f27ae82c7b1a177c8d03f9e96e0adf246"),
        );
        assert!(p.created && !p.deleted && !p.forced);
        assert_eq!(p.pusher.as_deref(), Some("Codertocat"));
        assert_eq!(p.head_message.as_deref(), Some("Initial commit"));
        assert_eq!(p.commit_messages, vec!["Initial commit"]);
        assert!(p.commits_complete);
        assert_eq!(p.changed_files, ChangedFiles::Unknown, "{name}");
    }
}

#[test]
fn push_branch_delete() {
    let p = push("goscm-push_branch_delete.json");
    assert_eq!(p.repository.full_name, "bradrydzewski/drone-test-go");
    assert_ref(
        &p,
        "refs/heads/feature-branch",
        Some("d2b75aa7797ec26b088fa2dd527e9d2c052fcedd"),
        None,
    );
    assert!(p.deleted && !p.created && !p.forced);
    assert_eq!(p.pusher.as_deref(), Some("bradrydzewski"));
    assert_eq!(p.head_message, None);
    assert!(p.commit_messages.is_empty());
    assert_eq!(p.changed_files, ChangedFiles::Complete(vec![]));
}

#[test]
fn push_tags() {
    let p = push("goscm-push_tag.json");
    assert_ref(
        &p,
        "refs/tags/v0.0.1",
        None,
        Some("d2b75aa7797ec26b088fa2dd527e9d2c052fcedd"),
    );
    assert!(p.created && !p.deleted);
    assert_eq!(p.head_message.as_deref(), Some("Update .drone.yml"));
    assert_eq!(p.changed_files, ChangedFiles::Unknown);

    let p = push("goscm-push_tag_delete.json");
    assert_ref(
        &p,
        "refs/tags/v0.0.1",
        Some("d2b75aa7797ec26b088fa2dd527e9d2c052fcedd"),
        None,
    );
    assert!(p.deleted && !p.created);
    assert_eq!(p.head_message, None);

    let p = push("woodpecker-HookTag.json");
    assert_eq!(p.repository.full_name, "6543/test_ci_tmp");
    assert_ref(
        &p,
        "refs/tags/the-tag-v1",
        None,
        Some("67012991d6c69b1c58378346fca366b864d8d1a1"),
    );
    assert!(p.created && !p.deleted && !p.forced);
    assert_eq!(p.pusher.as_deref(), Some("6543"));
    assert_eq!(p.head_message.as_deref(), Some("Update .woodpecker.yml"));
    assert!(p.commit_messages.is_empty());

    let p = push("octokit-ghes35-push-default.json");
    assert_eq!(p.repository.full_name, "Codertocat/Hello-World");
    assert_eq!(
        p.repository.urls[0],
        "https://octocoders.github.io/Codertocat/Hello-World.git"
    );
    assert_ref(
        &p,
        "refs/tags/simple-tag",
        None,
        Some("6113728f27ae82c7b1a177c8d03f9e96e0adf246"),
    );
    assert!(p.created && !p.deleted);
    assert_eq!(p.head_message.as_deref(), Some("Adding a .gitignore file"));
    assert_eq!(p.changed_files, ChangedFiles::Unknown);

    for name in [
        "octokit-push-1.json",
        "octokit-push-default.json",
        "octokit-push-with-installation.json",
        "octokit-push-with-organization.json",
    ] {
        let p = push(name);
        assert_eq!(p.repository.full_name, "Codertocat/Hello-World", "{name}");
        assert_ref(
            &p,
            "refs/tags/simple-tag",
            Some("6113728f27ae82c7b1a177c8d03f9e96e0adf246"),
            None,
        );
        assert!(p.deleted && !p.created && !p.forced);
        assert_eq!(p.pusher.as_deref(), Some("Codertocat"));
        assert_eq!(p.head_message, None);
        assert!(p.commit_messages.is_empty());
        assert_eq!(p.changed_files, ChangedFiles::Complete(vec![]));
    }
}

#[test]
fn push_file_lists_at_the_limits_are_unknown() {
    let many: Vec<String> = (0..MAX_COMMIT_FILES).map(|i| format!("\"f{i}\"")).collect();
    let body = format!(
        r#"{{"ref":"refs/heads/main","before":"{b}","after":"{a}","created":false,"deleted":false,"forced":false,
        "repository":{{"full_name":"o/r"}},"pusher":{{"name":"p"}},
        "commits":[{{"id":"{a}","message":"m","added":[{files}],"removed":[],"modified":[]}}]}}"#,
        b = "1".repeat(40),
        a = "2".repeat(40),
        files = many.join(",")
    );
    let Ok(Event::Push(v)) = parse("push", body.as_bytes()) else {
        panic!("not a push")
    };
    assert_eq!(v[0].changed_files, ChangedFiles::Unknown);
    assert!(v[0].commits_complete);
    // A commit without file lists (e.g. a minimal sender) also gives Unknown.
    let body = r#"{"ref":"refs/heads/main","before":"1111111111111111111111111111111111111111",
        "after":"2222222222222222222222222222222222222222","repository":{"full_name":"o/r"},
        "commits":[{"id":"2222222222222222222222222222222222222222","message":"m"}],"sender":{"login":"s"}}"#;
    let Ok(Event::Push(v)) = parse("push", body.as_bytes()) else {
        panic!("not a push")
    };
    assert_eq!(v[0].changed_files, ChangedFiles::Unknown);
    assert_eq!(v[0].pusher.as_deref(), Some("s"));
    assert_eq!(v[0].head_message.as_deref(), Some("m"));
}

#[test]
fn push_malformed() {
    let err = parse("push", b"{not json").unwrap_err();
    assert!(matches!(err, PluginError::MalformedPayload(ref m) if m.starts_with("github push: ")));
    let err = parse("push", br#"{"repository":{"full_name":"o/r"}}"#).unwrap_err();
    assert_eq!(
        err,
        PluginError::MalformedPayload("github push: missing ref".into())
    );
    let err = parse("push", br#"{"ref":"refs/heads/x"}"#).unwrap_err();
    assert_eq!(
        err,
        PluginError::MalformedPayload("github push: missing repository".into())
    );
    let err = parse(
        "push",
        br#"{"ref":"refs/heads/x","repository":{"full_name":null}}"#,
    )
    .unwrap_err();
    assert_eq!(
        err,
        PluginError::MalformedPayload("github push: missing repository.full_name".into())
    );
}

#[test]
fn ping() {
    for name in [
        "octokit-ping-default.json",
        "octokit-ping-with-app_id.json",
        "octokit-ghes35-ping-default.json",
    ] {
        match GITHUB.parse("ping", name) {
            Ok(Event::Ping {
                repository: Some(r),
            }) => {
                assert_eq!(r.full_name, "Octocoders/Hello-World", "{name}")
            }
            other => panic!("{name}: {other:?}"),
        }
    }
    assert_eq!(
        GITHUB.parse("ping", "octokit-ping-with-organization.json"),
        Ok(Event::Ping { repository: None })
    );
}

fn deployment(name: &str) -> Deployment {
    match GITHUB.parse("deployment", name) {
        Ok(Event::Deployment(d)) => *d,
        other => panic!("{name}: {other:?}"),
    }
}

#[test]
fn deployments() {
    let d = deployment("goscm-deployment.json");
    assert_eq!(d.id, 87972451);
    assert_eq!(d.repository.full_name, "Codertocat/Hello-World");
    assert_eq!(d.environment, "production");
    assert_eq!(d.git_ref, "master");
    assert_eq!(d.sha, "a10867b14bb761a232cd80139fbd4c0d33264240");
    assert_eq!(d.task, "deploy");
    assert_eq!(d.payload_stack, None);
    assert_eq!(d.payload_delivery, None);
    assert_eq!(d.creator.as_deref(), Some("Codertocat"));

    let d = deployment("goscm-deployment_commit.json");
    assert_eq!(d.git_ref, "a10867b14bb761a232cd80139fbd4c0d33264240");
    assert_eq!(d.sha, "a10867b14bb761a232cd80139fbd4c0d33264240");

    for name in [
        "octokit-deployment-default.json",
        "octokit-deployment-with-installation.json",
    ] {
        let d = deployment(name);
        assert_eq!(d.id, 145988746);
        assert_eq!(d.repository.full_name, "Codertocat/Hello-World");
        assert_eq!(d.environment, "production");
        assert_eq!(d.git_ref, "master");
        assert_eq!(d.sha, "f95f852bd8fca8fcc58a9a2d6c842781e32a215e");
        assert_eq!(d.creator.as_deref(), Some("Codertocat"));
    }
    let d = deployment("octokit-deployment-gh-pages.json");
    assert_eq!(d.environment, "github-pages");
    assert_eq!(d.git_ref, "gh-pages");
    assert_eq!(d.creator.as_deref(), Some("github-pages[bot]"));

    let d = deployment("woodpecker-HookDeploy.json");
    assert_eq!(d.id, 710692);
    assert_eq!(d.repository.full_name, "baxterthehacker/public-repo");
    assert_eq!(
        d.repository.urls,
        vec![
            "https://github.com/baxterthehacker/public-repo.git",
            "https://github.com/baxterthehacker/public-repo"
        ]
    );
    assert_eq!(d.environment, "production");
    assert_eq!(d.git_ref, "main");
    assert_eq!(d.sha, "9049f1265b7d61be4a8904a9a27120d2064dab3b");
    assert_eq!(d.creator.as_deref(), Some("baxterthehacker"));
}

#[test]
fn deployment_payload_shapes() {
    let body = |payload: &str| {
        format!(
            r#"{{"deployment":{{"id":7,"sha":"abc","ref":"main","task":"deploy","environment":"prod",
            "payload":{payload},"creator":{{"login":"bot"}}}},"repository":{{"full_name":"o/r"}}}}"#
        )
    };
    let get = |payload: &str| match parse("deployment", body(payload).as_bytes()) {
        Ok(Event::Deployment(d)) => (d.payload_stack, d.payload_delivery),
        other => panic!("{payload}: {other:?}"),
    };
    let both = (Some("web".to_string()), Some("d-1".to_string()));
    assert_eq!(get(r#"{"stack":"web","delivery":"d-1"}"#), both);
    assert_eq!(get(r#""{\"stack\":\"web\",\"delivery\":\"d-1\"}""#), both);
    assert_eq!(get(r#""""#), (None, None));
    assert_eq!(get("null"), (None, None));
    assert_eq!(get(r#""not json""#), (None, None));
    assert_eq!(get(r#"{"stack":5}"#), (None, None));
    let err = parse(
        "deployment",
        br#"{"deployment":{"id":1},"repository":{"full_name":"o/r"}}"#,
    )
    .unwrap_err();
    assert_eq!(
        err,
        PluginError::MalformedPayload("github deployment: missing deployment.sha".into())
    );
}

#[test]
fn packages() {
    let expected = |pusher: &str| {
        Event::ImagePush(vec![ImagePush {
            registry: Some("ghcr.io".into()),
            repository: "codertocat/hello-world".into(),
            tag: None,
            digest: Some("sha256:6c62fb45fe66bfb1ea9a66abc38f6a0cc974292b".into()),
            pusher: Some(pusher.into()),
            callback_url: None,
            sent_at_ms: None,
        }])
    };
    assert_eq!(
        parse(
            "package",
            &GITHUB.read("octokit-package-published-docker.json")
        ),
        Ok(expected("Codertocat"))
    );
    assert_eq!(
        parse(
            "registry_package",
            &GITHUB.read("octokit-registry_package-published-docker.json")
        ),
        Ok(expected("github-actions[bot]"))
    );
    let reason = GITHUB.ignored_reason("package", "octokit-package-published-npm.json");
    assert!(reason.contains("npm"), "{reason}");
}

#[test]
fn package_shapes() {
    // Current GHCR shape: the tag in container_metadata, the digest as version.
    let body = br#"{"action":"published","package":{"name":"www","namespace":"Ryan","ecosystem":"CONTAINER",
        "package_type":"CONTAINER","owner":{"login":"Ryan"},"package_version":{"version":"sha256:89",
        "name":"sha256:89","container_metadata":{"tag":{"name":"0e2a89b","digest":"sha256:89"}},
        "package_url":"ghcr.io/ryan/www:0e2a89b"}},"sender":{"login":"Ryan"}}"#;
    let Ok(Event::ImagePush(v)) = parse("package", body) else {
        panic!("not an image push")
    };
    assert_eq!(v[0].registry.as_deref(), Some("ghcr.io"));
    assert_eq!(v[0].repository, "ryan/www");
    assert_eq!(v[0].tag.as_deref(), Some("0e2a89b"));
    assert_eq!(v[0].digest.as_deref(), Some("sha256:89"));
    // Old docker.pkg.github.com shape: the tag as version, no package_url.
    let body = br#"{"action":"updated","package":{"name":"Image","package_type":"docker",
        "owner":{"login":"Andy"},"package_version":{"version":"latest",
        "installation_command":"docker pull docker.pkg.github.com/andy/repo/image:latest"}}}"#;
    let Ok(Event::ImagePush(v)) = parse("package", body) else {
        panic!("not an image push")
    };
    assert_eq!(v[0].registry.as_deref(), Some("docker.pkg.github.com"));
    assert_eq!(v[0].repository, "andy/repo/image");
    assert_eq!(v[0].tag.as_deref(), Some("latest"));
    // No URL at all: owner/name on ghcr.io.
    let body =
        br#"{"action":"published","registry_package":{"name":"App/Web","package_type":"CONTAINER",
        "owner":{"login":"Org"},"package_version":{"version":"v2"}}}"#;
    let Ok(Event::ImagePush(v)) = parse("registry_package", body) else {
        panic!("not an image push")
    };
    assert_eq!(v[0].registry.as_deref(), Some("ghcr.io"));
    assert_eq!(v[0].repository, "org/app/web");
    assert_eq!(v[0].tag.as_deref(), Some("v2"));
    // Other actions and types.
    let body = br#"{"action":"deleted","package":{"package_type":"CONTAINER"}}"#;
    assert!(matches!(parse("package", body), Ok(Event::Ignored { .. })));
    let body = br#"{"action":"published","package":{"package_type":"maven"}}"#;
    let Ok(Event::Ignored { reason }) = parse("package", body) else {
        panic!("not ignored")
    };
    assert!(reason.starts_with("maven packages"), "{reason}");
    let err = parse("package", br#"{"action":"published"}"#).unwrap_err();
    assert_eq!(
        err,
        PluginError::MalformedPayload("github package: missing package".into())
    );
}

#[test]
fn ignored_events() {
    let r = GITHUB.ignored_reason("create", "octokit-create-default.json");
    assert!(r.starts_with("create events are not pushes"), "{r}");
    let r = GITHUB.ignored_reason("delete", "goscm-branch_delete.json");
    assert!(r.starts_with("delete events are not pushes"), "{r}");
    let r = GITHUB.ignored_reason(
        "deployment_status",
        "octokit-deployment_status-default.json",
    );
    assert!(r.starts_with("deployment_status events"), "{r}");
    assert_eq!(
        GITHUB.ignored_reason("pull_request", "goscm-pr_opened.json"),
        "pull_request events never deploy"
    );
    assert_eq!(
        GITHUB.ignored_reason("release", "octokit-release-published.json"),
        "release events never deploy"
    );
    assert_eq!(
        GITHUB.ignored_reason("workflow_run", "octokit-workflow_run-completed.json"),
        "workflow_run events never deploy"
    );
    assert_eq!(
        GITHUB.ignored_reason("check_suite", "octokit-check_suite-completed.json"),
        "check_suite events never deploy"
    );
    assert_eq!(
        GITHUB.ignored_reason("status", "octokit-status-default.json"),
        "status events never deploy"
    );
    assert_eq!(
        GITHUB.ignored_reason("something_new", "goscm-status.json"),
        "something_new events never deploy"
    );
}

#[test]
fn strings_borrow_from_the_input() {
    let p: PushPayload = serde_json::from_slice(br#"{"ref":"refs/heads/main"}"#).unwrap();
    assert!(matches!(p.git_ref, Some(Str(Cow::Borrowed(_)))));
}
