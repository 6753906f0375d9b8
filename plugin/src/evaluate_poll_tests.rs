//! Unit tests of poll deliveries, through `evaluate`: a polled ref is
//! decided as a push of it, a polled tag as a registry's push of it, for the
//! polled stack alone.

use super::*;

const DIGEST: &str = "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

fn git_poll(stack: &str, repository: &str, old: &str, new: &str, name: &str) -> Delivery {
    Delivery::Poll {
        stack: stack.into(),
        change: PollChange::Git(GitPoll {
            repository: repository.into(),
            update: RefUpdate {
                old: old.into(),
                new: new.into(),
                name: name.into(),
            },
        }),
        query: String::new(),
    }
}

fn image_poll(stack: &str, repository: &str, tag: &str, digest: &str) -> Delivery {
    Delivery::Poll {
        stack: stack.into(),
        change: PollChange::Image(ImagePoll {
            repository: repository.into(),
            tag: tag.into(),
            digest: digest.into(),
        }),
        query: String::new(),
    }
}

fn with_query(mut d: Delivery, q: &str) -> Delivery {
    if let Delivery::Poll { query, .. } = &mut d {
        *query = q.into();
    }
    d
}

#[test]
fn a_polled_branch_move_deploys_like_a_push_of_it() {
    let o = evaluate(
        &[stack("web", "acme/web", "main")],
        &git_poll("web", "acme/web", SHA1_A, SHA1_B, "refs/heads/main"),
    )
    .unwrap();
    assert_eq!(o.provider, Provider::Poll);
    assert_eq!(o.event, "poll");
    assert_eq!(o.delivery, None);
    assert_eq!(o.signature, SignatureScheme::NotRequired);
    assert_eq!(o.pushes.len(), 1);
    assert_eq!(o.pushes[0].before.as_deref(), Some(SHA1_A));
    assert_eq!(o.pushes[0].pusher, None);
    let d = &o.decisions[0];
    let e = d.deploy().cloned().expect("deploys");
    assert_eq!(e.git_ref.as_deref(), Some("refs/heads/main"));
    assert_eq!(e.branch.as_deref(), Some("main"));
    assert_eq!(e.sha.as_deref(), Some(SHA1_B));
    assert_eq!(e.repository.as_deref(), Some("acme/web"));
    assert_eq!(e.provider.as_str(), "poll");
    assert_eq!(
        d.reason,
        "poll saw refs/heads/main of acme/web move from 1111111 to 2222222, matching branch \"main\""
    );
    assert_eq!(e.reason, d.reason);
}

#[test]
fn a_polled_branch_seen_for_the_first_time_deploys() {
    let d = decision(
        &[stack("web", "acme/web", "main")],
        &git_poll("web", "acme/web", ZERO1, SHA1_B, "refs/heads/main"),
    );
    assert!(d.deploy().is_some());
    assert_eq!(
        d.reason,
        "poll saw refs/heads/main of acme/web appear at 2222222, matching branch \"main\""
    );
}

#[test]
fn a_polled_other_branch_skips_and_says_why() {
    let d = decision(
        &[stack("web", "acme/web", "main")],
        &git_poll("web", "acme/web", SHA1_A, SHA1_B, "refs/heads/feature/x"),
    );
    assert_eq!(d.skip(), Some(SkipCode::BranchMismatch));
    assert_eq!(
        d.reason,
        "polled branch \"feature/x\" does not match branch \"main\""
    );
    let d = decision(
        &[stack("web", "acme/web", "main")],
        &git_poll("web", "acme/other", SHA1_A, SHA1_B, "refs/heads/main"),
    );
    assert_eq!(d.skip(), Some(SkipCode::OtherRepository));
    assert_eq!(
        d.reason,
        "polled repository \"acme/other\" does not match repository \"acme/web\""
    );
}

#[test]
fn a_polled_ref_that_is_gone_skips_as_a_deletion() {
    for (old, name, what) in [
        (SHA1_A, "refs/heads/main", "branch \"main\""),
        (SHA256_A, "refs/tags/v1.0", "tag \"v1.0\""),
    ] {
        let zero = if old.len() == 40 { ZERO1 } else { ZERO256 };
        let mut s = stack("web", "acme/web", "main");
        s.services[0].tags = Some("v*".into());
        let poll = decision(
            std::slice::from_ref(&s),
            &git_poll("web", "acme/web", old, zero, name),
        );
        let push = decision(&[s], &post_receive("acme/web", &[(old, zero, name)], ""));
        assert_eq!(poll.skip(), Some(SkipCode::RefDeleted));
        assert_eq!(
            poll.reason,
            format!("{what} was deleted; deletions never deploy")
        );
        assert_eq!(poll.reason, push.reason);
    }
}

#[test]
fn a_polled_tag_deploys_only_with_a_matching_tag_pattern() {
    let mut s = stack("web", "acme/web", "main");
    let d = decision(
        std::slice::from_ref(&s),
        &git_poll("web", "acme/web", ZERO1, SHA1_B, "refs/tags/v1.2.0"),
    );
    assert_eq!(d.skip(), Some(SkipCode::TagMismatch));
    assert_eq!(
        d.reason,
        "tag \"v1.2.0\" polled; this stack deploys no tags (no tags pattern)"
    );
    s.services[0].tags = Some("v*".into());
    let d = decision(
        std::slice::from_ref(&s),
        &git_poll("web", "acme/web", ZERO1, SHA1_B, "refs/tags/v1.2.0"),
    );
    let e = d.deploy().cloned().expect("deploys");
    assert_eq!(e.tag.as_deref(), Some("v1.2.0"));
    assert_eq!(e.sha.as_deref(), Some(SHA1_B));
    assert_eq!(
        d.reason,
        "poll saw refs/tags/v1.2.0 of acme/web appear at 2222222, matching tags \"v*\""
    );
    let d = decision(
        &[s],
        &git_poll("web", "acme/web", ZERO1, SHA1_B, "refs/tags/nightly"),
    );
    assert_eq!(d.skip(), Some(SkipCode::TagMismatch));
    assert_eq!(d.reason, "tag \"nightly\" does not match tags \"v*\"");
}

#[test]
fn only_the_polled_stack_is_evaluated() {
    let stacks = [
        stack("api", "acme/web", "main"),
        stack("web", "acme/web", "main"),
    ];
    let o = evaluate(
        &stacks,
        &git_poll("web", "acme/web", SHA1_A, SHA1_B, "refs/heads/main"),
    )
    .unwrap();
    assert_eq!(o.decisions.len(), 2);
    assert_eq!(o.decisions[0].stack, "api");
    assert_eq!(o.decisions[0].skip(), Some(SkipCode::OtherStack));
    assert_eq!(o.decisions[0].reason, "poll of another stack's source");
    assert!(o.decisions[1].deploy().is_some());
}

#[test]
fn a_poll_of_an_unknown_stack_is_refused() {
    let err = evaluate(
        &[stack("web", "acme/web", "main")],
        &git_poll("db", "acme/web", SHA1_A, SHA1_B, "refs/heads/main"),
    )
    .unwrap_err();
    assert_eq!(err, PluginError::BadRequest("no stack named \"db\"".into()));
}

#[test]
fn a_polled_ref_with_bad_ids_or_name_is_malformed() {
    for (old, new, name) in [
        (SHA1_A, SHA256_A, "refs/heads/main"),
        ("xyz", SHA1_B, "refs/heads/main"),
        (SHA1_A, "", "refs/heads/main"),
        (SHA1_A, SHA1_B, ""),
        (SHA1_A, SHA1_B, "refs/heads/ma in"),
    ] {
        let err = evaluate(
            &[stack("web", "acme/web", "main")],
            &git_poll("web", "acme/web", old, new, name),
        )
        .unwrap_err();
        assert!(
            matches!(&err, PluginError::MalformedPayload(m) if m.starts_with("poll: ")),
            "{err}"
        );
    }
    let err = evaluate(
        &[stack("web", "acme/web", "main")],
        &git_poll("web", " ", SHA1_A, SHA1_B, "refs/heads/main"),
    )
    .unwrap_err();
    assert_eq!(
        err,
        PluginError::MalformedPayload("poll: repository is empty".into())
    );
}

#[test]
fn a_polled_ref_obeys_the_query_modifiers_of_the_polled_stack_only() {
    let shop = multi_service_stack();
    let other = stack("web", "acme/web", "main");
    // `services=worker` names no service of "web": another stack is not
    // checked against the polled stack's modifiers.
    let d = with_query(
        git_poll("shop", "acme/worker", SHA1_A, SHA1_B, "refs/heads/main"),
        "services=worker&deployment_profile=fast",
    );
    let o = evaluate(&[other, shop.clone()], &d).unwrap();
    assert_eq!(o.decisions[0].skip(), Some(SkipCode::OtherStack));
    let e = o.decisions[1].deploy().cloned().expect("deploys");
    assert_eq!(e.services, vec!["worker"]);
    assert_eq!(e.profile.as_deref(), Some("fast"));
    // The polled stack's own modifiers are checked as a hook URL's are.
    let d = with_query(
        git_poll("shop", "acme/worker", SHA1_A, SHA1_B, "refs/heads/main"),
        "services=db",
    );
    assert!(matches!(
        evaluate(std::slice::from_ref(&shop), &d),
        Err(PluginError::BadRequest(_))
    ));
    // A service the query leaves out is not deployed.
    let d = with_query(
        git_poll("shop", "acme/worker", SHA1_A, SHA1_B, "refs/heads/main"),
        "services=web",
    );
    assert!(decision(&[shop], &d).deploy().is_none());
}

#[test]
fn a_polled_ref_of_a_github_cd_stack_requests_a_deployment_like_a_push() {
    let mut s = with_github_cd(stack("web", "acme/web", "main"));
    let poll = decision(
        std::slice::from_ref(&s),
        &git_poll("web", "acme/web", SHA1_A, SHA1_B, "refs/heads/main"),
    );
    let push = decision(
        std::slice::from_ref(&s),
        &post_receive("acme/web", &[(SHA1_A, SHA1_B, "refs/heads/main")], ""),
    );
    let (Action::RequestDeployment(polled), Action::RequestDeployment(pushed)) =
        (&poll.action, &push.action)
    else {
        panic!("expected deployment requests: {poll:?} {push:?}");
    };
    assert_eq!(
        polled.github_deployment_request,
        pushed.github_deployment_request
    );
    if let Some(gh) = s.github.as_mut() {
        gh.wait_for_event = false;
    }
    let poll = decision(
        &[s],
        &git_poll("web", "acme/web", SHA1_A, SHA1_B, "refs/heads/main"),
    );
    let Action::Deploy(e) = &poll.action else {
        panic!("expected a deploy, got {:?}", poll.action);
    };
    assert!(e.github_deployment_request.is_some());
}

#[test]
fn a_polled_tag_digest_deploys_the_image_with_its_digest() {
    let o = evaluate(
        &[image_stack("api", "ghcr.io/acme/api:latest")],
        &image_poll("api", "ghcr.io/acme/api", "latest", DIGEST),
    )
    .unwrap();
    assert_eq!(o.provider, Provider::Poll);
    assert_eq!(o.images.len(), 1);
    assert_eq!(o.images[0].registry.as_deref(), Some("ghcr.io"));
    assert_eq!(o.images[0].repository, "acme/api");
    assert_eq!(o.images[0].tag.as_deref(), Some("latest"));
    assert_eq!(o.images[0].digest.as_deref(), Some(DIGEST));
    let d = &o.decisions[0];
    let e = d.deploy().cloned().expect("deploys");
    assert_eq!(e.image.as_deref(), Some("ghcr.io/acme/api:latest"));
    assert_eq!(e.provider, Provider::Poll);
    assert_eq!(
        d.reason,
        format!("poll saw image ghcr.io/acme/api:latest now at {DIGEST}; followed by \"api\"")
    );
}

#[test]
fn a_polled_image_without_a_registry_is_docker_hubs() {
    for (followed, polled) in [
        ("nginx", "nginx"),
        ("nginx:latest", "nginx"),
        ("docker.io/library/nginx", "nginx"),
        ("nginx", "library/nginx"),
    ] {
        let o = evaluate(
            &[image_stack("proxy", followed)],
            &image_poll("proxy", polled, "latest", DIGEST),
        )
        .unwrap();
        assert_eq!(o.images[0].registry.as_deref(), Some("docker.io"));
        assert!(o.decisions[0].deploy().is_some(), "{followed} {polled}");
    }
    // A name on another registry is not Docker Hub's.
    let d = decision(
        &[image_stack("proxy", "docker.io/library/nginx")],
        &image_poll("proxy", "quay.io/nginx", "latest", DIGEST),
    );
    assert_eq!(d.skip(), Some(SkipCode::ImageMismatch));
}

#[test]
fn a_polled_other_tag_skips() {
    let d = decision(
        &[image_stack("api", "ghcr.io/acme/api:latest")],
        &image_poll("api", "ghcr.io/acme/api", "edge", DIGEST),
    );
    assert_eq!(d.skip(), Some(SkipCode::ImageMismatch));
    assert_eq!(
        d.reason,
        "image \"ghcr.io/acme/api:edge\" does not match image \"ghcr.io/acme/api:latest\""
    );
    // A git stack follows no image.
    let d = decision(
        &[stack("web", "acme/web", "main")],
        &image_poll("web", "ghcr.io/acme/api", "latest", DIGEST),
    );
    assert_eq!(d.skip(), Some(SkipCode::NotFollowed));
}

#[test]
fn a_polled_image_with_a_bad_digest_name_or_tag_is_malformed() {
    let sha512 = format!("sha512:{}", "ab".repeat(64));
    assert!(evaluate(
        &[image_stack("api", "ghcr.io/acme/api:latest")],
        &image_poll("api", "ghcr.io/acme/api", "latest", &sha512),
    )
    .unwrap()
    .decisions[0]
        .deploy()
        .is_some());
    let upper = DIGEST.to_ascii_uppercase().replace("SHA256", "sha256");
    let short = &DIGEST[..DIGEST.len() - 1];
    for (repository, tag, digest) in [
        ("ghcr.io/acme/api", "latest", upper.as_str()),
        ("ghcr.io/acme/api", "latest", short),
        ("ghcr.io/acme/api", "latest", "md5:0123"),
        ("ghcr.io/acme/api", "latest", ""),
        ("ghcr.io/acme/api", "latest", &DIGEST[7..]),
        ("", "latest", DIGEST),
        ("ghcr.io/acme/api", "", DIGEST),
        ("ghcr.io/acme/api", "la test", DIGEST),
        ("ghcr.io/acme/api:latest", "latest", DIGEST),
        ("ghcr.io/acme/api@sha256:00", "latest", DIGEST),
        ("ghcr.io/acme api", "latest", DIGEST),
    ] {
        let err = evaluate(
            &[image_stack("api", "ghcr.io/acme/api:latest")],
            &image_poll("api", repository, tag, digest),
        )
        .unwrap_err();
        assert!(
            matches!(&err, PluginError::MalformedPayload(m) if m.starts_with("poll: ")),
            "{repository:?} {tag:?} {digest:?}: {err}"
        );
    }
}
