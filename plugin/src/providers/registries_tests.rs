//! Unit tests of `providers::registries`, beside it so the parser file stays short.

use super::*;
use crate::providers::test_support::fixture;

fn image(registry: &str, repository: &str, tag: &str) -> ImagePush {
    ImagePush {
        registry: Some(registry.into()),
        repository: repository.into(),
        tag: Some(tag.into()),
        digest: None,
        pusher: None,
        callback_url: None,
        sent_at_ms: None,
    }
}

#[test]
fn docker_hub_docs_example() {
    let json = fixture("dockerhub/dockerdocs-webhook-example.json");
    assert_eq!(
        parse(Provider::DockerHub, "push", &json),
        Ok(Event::ImagePush(vec![ImagePush {
            pusher: Some("trustedbuilder".into()),
            callback_url: Some(
                "https://registry.hub.docker.com/u/svendowideit/testhook/hook/2141b5bi5i5b02bec211i4eeih0242eg11000a/"
                    .into()
            ),
            sent_at_ms: Some(1_417_566_161_000),
            ..image("docker.io", "svendowideit/testhook", "latest")
        }]))
    );
}

#[test]
fn docker_hub_official_image_keeps_its_name() {
    let json = br#"{"callback_url": null, "push_data": {"tag": "1.27", "pusher": null},
        "repository": {"repo_name": "nginx", "namespace": "library", "name": "nginx"}}"#;
    assert_eq!(
        parse(Provider::DockerHub, "push", json),
        Ok(Event::ImagePush(vec![image("docker.io", "nginx", "1.27")]))
    );
}

#[test]
fn harbor_docs_push_artifact() {
    let json = fixture("harbor/harbordocs-push-artifact.json");
    assert_eq!(
        parse(Provider::Harbor, "PUSH_ARTIFACT", &json),
        Ok(Event::ImagePush(vec![ImagePush {
            digest: Some(
                "sha256:8a9e9863dbb6e10edb5adfe917c00da84e1700fa76e7ed02476aa6e6fb8ee0d8".into()
            ),
            pusher: Some("admin".into()),
            sent_at_ms: Some(1_586_922_308_000),
            ..image("hub.harbor.com", "test-webhook/debian", "latest")
        }]))
    );
}

#[test]
fn harbor_one_image_per_resource_and_v1_event_name() {
    let json = br#"{"type": "pushImage", "occur_at": 1, "operator": "robot$ci",
        "event_data": {"resources": [
            {"digest": "sha256:aa", "tag": "7", "resource_url": "harbor.example.com:8443/library/centos:7"},
            {"digest": "sha256:aa", "tag": "latest", "resource_url": "harbor.example.com:8443/library/centos:latest"},
            {"digest": "sha256:bb"}
        ], "repository": {"name": "centos", "namespace": "library", "repo_full_name": "library/centos"}}}"#;
    let Ok(Event::ImagePush(images)) = parse(Provider::Harbor, "pushImage", json) else {
        panic!("expected an image push");
    };
    assert_eq!(images.len(), 3);
    assert_eq!(
        images[0].registry.as_deref(),
        Some("harbor.example.com:8443")
    );
    assert_eq!(images[1].tag.as_deref(), Some("latest"));
    assert_eq!(images[2].registry, None);
    assert_eq!(images[2].tag, None);
    assert_eq!(images[2].digest.as_deref(), Some("sha256:bb"));
    assert!(images.iter().all(|i| i.repository == "library/centos"));
    assert!(images
        .iter()
        .all(|i| i.pusher.as_deref() == Some("robot$ci")));
}

#[test]
fn harbor_other_types_are_ignored() {
    let json = fixture("harbor/harbordocs-push-artifact.json");
    for event in [
        "PULL_ARTIFACT",
        "DELETE_ARTIFACT",
        "SCANNING_COMPLETED",
        "QUOTA_EXCEED",
        "REPLICATION",
    ] {
        match parse(Provider::Harbor, event, &json) {
            Ok(Event::Ignored { reason }) => assert!(reason.contains(event), "{reason}"),
            other => panic!("{event}: {other:?}"),
        }
    }
}

#[test]
fn quay_docs_repo_push() {
    let json = fixture("quay/quaydocs-repo-push.json");
    assert_eq!(
        parse(Provider::Quay, "repo_push", &json),
        Ok(Event::ImagePush(vec![image(
            "quay.io",
            "mynamespace/repository",
            "latest"
        )]))
    );
}

#[test]
fn quay_old_object_form_of_updated_tags() {
    let json = br#"{"pushed_image_count": 2, "name": "ubuntu", "repository": "devtable/ubuntu",
        "docker_url": "quay.io/devtable/ubuntu",
        "updated_tags": {"latest": "b750fe79269d2ec9a3c593ef05b4332b1d1a02a62b4accb2c21d589ff2f5f2dc", "20.04": "b750"},
        "namespace": "devtable", "visibility": "private", "homepage": "https://quay.io/repository/devtable/ubuntu"}"#;
    assert_eq!(
        parse(Provider::Quay, "repo_push", json),
        Ok(Event::ImagePush(vec![
            image("quay.io", "devtable/ubuntu", "20.04"),
            image("quay.io", "devtable/ubuntu", "latest"),
        ]))
    );
    let none = br#"{"repository": "a/b", "docker_url": "quay.io/a/b", "updated_tags": []}"#;
    assert!(matches!(
        parse(Provider::Quay, "repo_push", none),
        Ok(Event::Ignored { .. })
    ));
}

#[test]
fn acr_push() {
    let json = fixture("acr/jenkins-acr-payload-valid.json");
    assert_eq!(
        parse(Provider::Acr, "push", &json),
        Ok(Event::ImagePush(vec![ImagePush {
            digest: Some(
                "sha256:f5233545e43561214ca4891fd1157e1c3c563316ed8e237750d59bde73361e77".into()
            ),
            // "timestamp": "2018-06-04T09:04:00.000000000Z"
            sent_at_ms: Some(1_528_103_040_000),
            ..image("myregistry.azurecr.io", "hello-world", "v1")
        }]))
    );
    for action in ["delete", "chart_push", "quarantine"] {
        match parse(Provider::Acr, action, &json) {
            Ok(Event::Ignored { reason }) => assert!(reason.contains(action), "{reason}"),
            other => panic!("{action}: {other:?}"),
        }
    }
}

/// A fixture added with the Distribution provider (`tests/fixtures`).
fn distribution_fixture(name: &str) -> Vec<u8> {
    fixture(&format!("distribution/{name}"))
}

/// The manifest digest every Distribution docs example pushes or pulls.
const DOCS_DIGEST: &str = "sha256:fea8895f450959fa676bcc1df0611ea93823a735a01205fd8622846041d0c7cf";

/// `2006-01-02T15:04:05Z`, the time of Distribution's example events.
const GO_REFERENCE_TIME_MS: u64 = 1_136_214_245_000;

fn docs_manifest_push() -> ImagePush {
    ImagePush {
        registry: Some("registrycluster.local".into()),
        repository: "library/test".into(),
        tag: None,
        digest: Some(DOCS_DIGEST.into()),
        pusher: Some("test-actor".into()),
        callback_url: None,
        sent_at_ms: Some(GO_REFERENCE_TIME_MS),
    }
}

#[test]
fn distribution_docs_envelope_one_manifest_push_and_two_layers() {
    // Distribution 3's docs: a manifest (v2 schema) pushed by digest,
    // then two layer blobs, all three `push`.
    let n = distribution(&distribution_fixture("distdocs-push-envelope.json")).unwrap();
    assert_eq!(n.event, Event::ImagePush(vec![docs_manifest_push()]));
    assert_eq!(n.event_name.as_deref(), Some("push"));
    assert_eq!(n.delivery.as_deref(), Some("asdf-asdf-asdf-asdf-0"));
}

#[test]
fn distribution_2_0_docs_envelope_schema_1_manifest_without_tag() {
    // docker/distribution's 2016 docs (before `target.tag` existed): the
    // manifest is schema 1, the envelope `events.v1+json`.
    let n = distribution(&distribution_fixture(
        "dockerdistdocs-v1-push-envelope.json",
    ))
    .unwrap();
    assert_eq!(n.event, Event::ImagePush(vec![docs_manifest_push()]));
    assert_eq!(n.delivery.as_deref(), Some("asdf-asdf-asdf-asdf-0"));
}

#[test]
fn distribution_event_test_layers_are_skipped_whatever_their_url() {
    // Distribution's own format test gives its two layer pushes a
    // `/manifests/latest` URL: only the media type tells them apart.
    let n = distribution(&distribution_fixture("disttest-event-envelope.json")).unwrap();
    assert_eq!(
        n.event,
        Event::ImagePush(vec![ImagePush {
            digest: Some("sha256:0123456789abcdef0".into()),
            ..docs_manifest_push()
        }])
    );
    assert_eq!(n.delivery.as_deref(), Some("asdf-asdf-asdf-asdf-0"));
}

#[test]
fn distribution_pull_is_ignored_and_named_by_its_event() {
    let n = distribution(&distribution_fixture("distdocs-pull-envelope.json")).unwrap();
    assert_eq!(
        n.event,
        Event::Ignored {
            reason: "distribution pull events never deploy; only a manifest push names an image"
                .into()
        }
    );
    assert_eq!(n.event_name.as_deref(), Some("pull"));
    assert_eq!(
        n.delivery.as_deref(),
        Some("320678d8-ca14-430f-8bb6-4ca139cd83f7")
    );
}

#[test]
fn distribution_tagged_pushes_one_image_each_and_the_first_push_names_the_delivery() {
    // Distribution 2.4 and later add `target.tag` to a push by tag.
    let json = br#"{"events": [
        {"id": "e-0", "timestamp": "2016-03-09T14:44:26.402973972-08:00", "action": "pull",
         "target": {"mediaType": "application/vnd.docker.distribution.manifest.v2+json", "repository": "team/app", "tag": "old", "digest": "sha256:00"},
         "request": {"host": "Registry.Example.com:5000"}},
        {"id": "e-1", "timestamp": "2016-03-09T14:44:26.402973972-08:00", "action": "push",
         "target": {"mediaType": "application/vnd.oci.image.index.v1+json", "repository": "team/app", "tag": "v1", "digest": "sha256:11"},
         "request": {"host": "Registry.Example.com:5000"}, "actor": {}},
        {"id": "e-2", "timestamp": "not a time", "action": "push",
         "target": {"mediaType": "application/octet-stream", "repository": "team/app", "digest": "sha256:22"},
         "request": {"host": "registry.example.com:5000"}},
        {"id": "e-3", "action": "push",
         "target": {"mediaType": "application/vnd.oci.image.manifest.v1+json", "repository": "team/api", "tag": "latest", "digest": "sha256:33"}}
    ]}"#;
    let n = distribution(json).unwrap();
    let Event::ImagePush(images) = n.event else {
        panic!("expected image pushes: {:?}", n.event);
    };
    assert_eq!(
        images,
        vec![
            ImagePush {
                registry: Some("registry.example.com:5000".into()),
                repository: "team/app".into(),
                tag: Some("v1".into()),
                digest: Some("sha256:11".into()),
                pusher: None,
                callback_url: None,
                sent_at_ms: Some(1_457_563_466_402),
            },
            ImagePush {
                registry: None,
                repository: "team/api".into(),
                tag: Some("latest".into()),
                digest: Some("sha256:33".into()),
                pusher: None,
                callback_url: None,
                sent_at_ms: None,
            },
        ]
    );
    assert_eq!(n.event_name.as_deref(), Some("push"));
    assert_eq!(n.delivery.as_deref(), Some("e-1"));
}

#[test]
fn distribution_envelopes_without_a_manifest_push_say_what_they_held() {
    let cases: [(&[u8], &str); 4] = [
        (
            br#"{"events": [{"id": "b", "action": "push", "target": {"mediaType": "application/octet-stream", "repository": "a/b"}}]}"#,
            "distribution blob pushes (layers, configs) never deploy; only a manifest push names an image",
        ),
        (
            br#"{"events": [{"action": "delete", "target": {"repository": "a/b", "tag": "v1"}},
                {"action": "mount", "target": {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip"}},
                {"action": "push", "target": {"repository": "a/b"}}]}"#,
            "distribution delete/mount events and blob pushes (layers, configs) never deploy; only a manifest push names an image",
        ),
        (
            br#"{"events": [{"action": "a"}, {"action": "b"}, {"action": "c"}, {"action": "d"}, {"action": "e"}, {}]}"#,
            "distribution a/b/c/d/... events never deploy; only a manifest push names an image",
        ),
        (br#"{"events": []}"#, "distribution notification carries no events"),
    ];
    for (json, reason) in cases {
        let n = distribution(json).unwrap();
        assert_eq!(
            n.event,
            Event::Ignored {
                reason: reason.into()
            }
        );
    }
}

#[test]
fn distribution_envelopes_are_bounded_and_refused_whole() {
    let envelope = |n: usize| {
        let event = r#"{"action": "push", "target": {"mediaType": "application/vnd.docker.distribution.manifest.v2+json", "repository": "a/b", "tag": "v1"}}"#;
        format!("{{\"events\": [{}]}}", vec![event; n].join(","))
    };
    let Ok(DistributionNotification {
        event: Event::ImagePush(images),
        ..
    }) = distribution(envelope(MAX_DISTRIBUTION_EVENTS).as_bytes())
    else {
        panic!("the maximum is accepted");
    };
    assert_eq!(images.len(), MAX_DISTRIBUTION_EVENTS);
    // The event past the maximum is refused before it is read, even `null`.
    let one_null_too_many = envelope(MAX_DISTRIBUTION_EVENTS).replace("}]}", "}, null]}");
    for body in [envelope(MAX_DISTRIBUTION_EVENTS + 1), one_null_too_many] {
        match distribution(body.as_bytes()) {
            Err(PluginError::MalformedPayload(m)) => assert!(
                m.starts_with("distribution notification: more than 1000 events in one envelope"),
                "{m}"
            ),
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn distribution_malformed_envelopes_are_errors() {
    let cases: [(&[u8], &str); 4] = [
        (b"{}", "distribution notification: missing field `events`"),
        (br#"{"events": {}}"#, "distribution notification: invalid type: map"),
        (
            br#"{"events": [{"action": "pull"}, {"action": "push", "target": {"mediaType": "application/vnd.docker.distribution.manifest.v2+json", "repository": " "}}]}"#,
            "distribution notification: events[1].target.repository is missing or empty",
        ),
        (
            // ACR's bare event under Distribution's media type.
            &br#"{"id": "x", "action": "push", "target": {"repository": "a"}, "request": {}}"#[..],
            "distribution notification: missing field `events`",
        ),
    ];
    for (json, prefix) in cases {
        match distribution(json) {
            Err(PluginError::MalformedPayload(m)) => assert!(m.starts_with(prefix), "{m}"),
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn rfc3339_times() {
    for (text, ms) in [
        ("2006-01-02T15:04:05Z", Some(GO_REFERENCE_TIME_MS)),
        (
            "2016-03-09T14:44:26.402973972-08:00",
            Some(1_457_563_466_402),
        ),
        ("2015-10-06T13:00:54.450615408Z", Some(1_444_136_454_450)),
        ("2000-02-29T23:59:59.9+05:30", Some(951_848_999_900)),
        ("1970-01-01t00:00:00z", Some(0)),
        // Go's zero time, before 1970.
        ("0001-01-01T00:00:00Z", None),
        ("1969-12-31T23:59:59Z", None),
        ("2001-02-29T00:00:00Z", None),
        ("2006-13-02T15:04:05Z", None),
        ("2006-01-02T24:04:05Z", None),
        ("2006-01-02T15:04:05", None),
        ("2006-01-02T15:04:05.Z", None),
        ("2006-01-02T15:04:05+0100", None),
        ("2006-01-02T15:04:05Zjunk", None),
        ("2006-01-02 15:04:05Z", None),
        ("+006-01-02T15:04:05Z", None),
        ("9999-12-31T23:59:59Z", None),
        ("", None),
    ] {
        assert_eq!(rfc3339_ms(text), ms, "{text}");
    }
}

#[test]
fn acr_docs_push_and_delete() {
    // The ACR reference's examples: one event, no envelope; its time is
    // read as Distribution's.
    let json = distribution_fixture("azuredocs-acr-push.json");
    assert_eq!(
        parse(Provider::Acr, "push", &json),
        Ok(Event::ImagePush(vec![ImagePush {
            digest: Some(
                "sha256:xxxxd5c8786bb9e621a45ece0dbxxxx1cdc624ad20da9fe62e9d25490f33xxxx".into()
            ),
            // "timestamp": "2023-11-17T16:52:01.343145347Z"
            sent_at_ms: Some(1_700_239_921_343),
            ..image("myregistry.azurecr.io", "hello-world", "v1")
        }]))
    );
    let json = distribution_fixture("azuredocs-acr-delete.json");
    assert_eq!(
        parse(Provider::Acr, "delete", &json),
        Ok(Event::Ignored {
            reason: "azure container registry delete events never deploy".into()
        })
    );
}

#[test]
fn registry_hosts() {
    assert_eq!(registry_host("quay.io/ns/repo").as_deref(), Some("quay.io"));
    assert_eq!(
        registry_host("https://Reg.Example:5000/r").as_deref(),
        Some("reg.example:5000")
    );
    assert_eq!(registry_host("localhost/r:1").as_deref(), Some("localhost"));
    assert_eq!(registry_host("library/nginx:latest"), None);
    assert_eq!(registry_host("debian:latest"), None);
}

#[test]
fn malformed_payloads_are_errors() {
    let cases: [(Provider, &str, &[u8], &str); 5] = [
        (Provider::DockerHub, "push", b"{}", "docker-hub push: "),
        (
            Provider::DockerHub,
            "push",
            br#"{"repository": {}}"#,
            "docker-hub push: ",
        ),
        (
            Provider::Harbor,
            "PUSH_ARTIFACT",
            br#"{"event_data": []}"#,
            "harbor PUSH_ARTIFACT: ",
        ),
        (Provider::Quay, "repo_push", b"nope", "quay repo_push: "),
        (
            Provider::Acr,
            "push",
            br#"{"target": {"tag": "v1"}}"#,
            "acr push: ",
        ),
    ];
    for (provider, event, body, prefix) in cases {
        match parse(provider, event, body) {
            Err(PluginError::MalformedPayload(m)) => assert!(m.starts_with(prefix), "{m}"),
            other => panic!("{provider:?} {event}: {other:?}"),
        }
    }
}
