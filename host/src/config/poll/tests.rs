//! Unit tests of `[stacks.poll]`: its keys, URLs, image references and
//! token hosts.

use super::*;

fn reference(image: &str) -> (String, String, String, &'static str) {
    let r = ImageReference::parse(image).unwrap_or_else(|e| panic!("{image}: {e}"));
    (r.registry, r.name, r.tag, r.scheme)
}

#[test]
fn image_references_are_read_by_dockers_rules() {
    let hub = |name: &str, tag: &str| {
        (
            DOCKER_HUB_REGISTRY.to_owned(),
            name.to_owned(),
            tag.to_owned(),
            "https",
        )
    };
    assert_eq!(reference("nginx"), hub("library/nginx", "latest"));
    assert_eq!(reference("nginx:1.27"), hub("library/nginx", "1.27"));
    assert_eq!(reference("owner/app:tag"), hub("owner/app", "tag"));
    assert_eq!(reference("docker.io/nginx"), hub("library/nginx", "latest"));
    assert_eq!(
        reference("index.docker.io/owner/app:v1"),
        hub("owner/app", "v1")
    );
    assert_eq!(
        reference("ghcr.io/o/a:tag"),
        ("ghcr.io".into(), "o/a".into(), "tag".into(), "https")
    );
    assert_eq!(
        reference("127.0.0.1:5000/team/app:latest"),
        (
            "127.0.0.1:5000".into(),
            "team/app".into(),
            "latest".into(),
            "http"
        )
    );
    assert_eq!(
        reference("localhost/app"),
        ("localhost".into(), "app".into(), "latest".into(), "http")
    );
    assert_eq!(
        reference("[::1]:5000/app:v2"),
        ("[::1]:5000".into(), "app".into(), "v2".into(), "http")
    );
    assert_eq!(
        reference("registry.example:5000/a/b/c"),
        (
            "registry.example:5000".into(),
            "a/b/c".into(),
            "latest".into(),
            "https"
        )
    );
    // A host-less first component with a dash or underscore is a path.
    assert_eq!(reference("my-org/app"), hub("my-org/app", "latest"));
    let r = ImageReference::parse("127.0.0.1:5000/team/app:latest").unwrap();
    assert_eq!(r.source(), "127.0.0.1:5000/team/app:latest");
    assert_eq!(
        r.manifest_url(),
        "http://127.0.0.1:5000/v2/team/app/manifests/latest"
    );
    assert_eq!(
        ImageReference::parse("nginx").unwrap().manifest_url(),
        "https://registry-1.docker.io/v2/library/nginx/manifests/latest"
    );
}

#[test]
fn pinned_and_malformed_image_references_are_not_polled() {
    let pinned = ImageReference::parse(&format!("nginx@sha256:{}", "a".repeat(64))).unwrap_err();
    assert!(pinned.contains("pinned by digest"), "{pinned}");
    assert!(pinned.contains("cannot be polled"), "{pinned}");
    for bad in [
        "",
        "app:",
        "app:-x",
        "a//b",
        "ghcr.io/",
        "app:tag with space",
        "-app",
        "x.io/a:b:c",
    ] {
        assert!(ImageReference::parse(bad).is_err(), "{bad:?}");
    }
    assert!(ImageReference::parse(&format!("app:{}", "t".repeat(129))).is_err());
}

#[test]
fn the_image_a_stack_names_is_matched_without_its_tag() {
    assert_eq!(without_tag("nginx"), "nginx");
    assert_eq!(without_tag("nginx:1.27"), "nginx");
    assert_eq!(
        without_tag("127.0.0.1:5000/team/app:latest"),
        "127.0.0.1:5000/team/app"
    );
    assert_eq!(
        without_tag("127.0.0.1:5000/team/app"),
        "127.0.0.1:5000/team/app"
    );
}

#[test]
fn only_urls_git_fetches_without_credentials_are_polled() {
    for ok in [
        "https://git.example/o/app.git",
        "http://127.0.0.1:9418/app.git",
        "ssh://git@git.example/o/app.git",
        "git@github.com:o/app.git",
        "git://127.0.0.1/app.git",
        "file:///srv/git/app.git",
        "/srv/git/app.git",
    ] {
        assert_eq!(git_url("repository", ok).as_deref(), Ok(ok), "{ok}");
    }
    for bad in [
        "o/app",
        "https://user:t0ken@git.example/o/app.git",
        "https://t0ken@git.example/o/app.git",
        "https://git.example/o/app.git?private_token=t0ken",
        "https://git.example/o/app.git#t0ken",
        "ext::sh -c touch% /tmp/x",
        "ext::sh",
        "--upload-pack=touch /tmp/x",
        "ftp://git.example/app.git",
        "",
        "https://git.example/app .git",
    ] {
        let refused = git_url("repository", bad).unwrap_err();
        assert!(!refused.contains("t0ken"), "{refused}");
    }
}

fn hosts(list: &[&str]) -> Vec<TokenHost> {
    token_hosts(
        Some(list.iter().map(|h| (*h).to_owned()).collect()),
        &[],
        true,
    )
    .unwrap()
}

fn url(text: &str) -> url::Url {
    url::Url::parse(text).unwrap()
}

#[test]
fn a_registry_host_is_a_bare_host_and_port() {
    for bad in [
        "evil.com#@good.com/x",
        "evil.com?@good.com/x",
        "evil.com#x/app",
        "evil.com?x=1/app",
        "user@good.com/app",
        "good.com\\evil.com/app",
        "good.com:x/app",
        "good.com:99999/app",
        "[::1]x/app",
        "bad_host.io/app",
    ] {
        assert!(ImageReference::parse(bad).is_err(), "{bad:?}");
    }
    let r = ImageReference::parse("Registry.Example:5000/app").unwrap();
    assert_eq!(r.registry, "registry.example:5000");
    assert_eq!(
        r.registry_url().unwrap().as_str(),
        "https://registry.example:5000/"
    );
}

#[test]
fn token_hosts_are_bare_hosts_with_an_optional_port() {
    assert_eq!(
        TokenHost::parse("GHCR.io"),
        Some(TokenHost {
            host: "ghcr.io".into(),
            port: None
        })
    );
    assert_eq!(
        TokenHost::parse("127.0.0.1:5000").map(|h| h.to_string()),
        Some("127.0.0.1:5000".into())
    );
    assert_eq!(
        TokenHost::parse("[::1]:5000").map(|h| h.to_string()),
        Some("[::1]:5000".into())
    );
    for bad in [
        "",
        "https://ghcr.io",
        "ghcr.io/",
        "ghcr.io/path",
        "user@ghcr.io",
        "ghcr.io#x",
        "ghcr.io?x",
        "ghcr .io",
        " ghcr.io",
        "ghcr.io:",
        "ghcr.io:0",
        "ghcr.io:65536",
        "ghcr.io:443:1",
        "-ghcr.io",
        "ghcr..io",
        "[::1",
    ] {
        assert_eq!(TokenHost::parse(bad), None, "{bad:?}");
    }
    let refused =
        token_hosts(Some(vec!["https://x:s3cret@ghcr.io".into()]), &[], true).unwrap_err();
    assert!(refused.contains("poll.token_hosts[0]"), "{refused}");
    assert!(!refused.contains("s3cret"), "{refused}");
    // Docker Hub may be named by its short name.
    assert_eq!(hosts(&["docker.io"]), hosts(&["registry-1.docker.io"]));
    assert_eq!(
        hosts(&["index.docker.io"]),
        hosts(&["registry-1.docker.io"])
    );
}

#[test]
fn the_token_goes_only_to_listed_hosts_and_ports() {
    let listed = hosts(&["github.com", "ghcr.io", "127.0.0.1:5000"]);
    assert!(sends_token_to(
        &listed,
        &url("https://github.com/acme/app.git")
    ));
    assert!(sends_token_to(
        &listed,
        &url("https://GitHub.com:443/acme/app")
    ));
    assert!(sends_token_to(&listed, &url("https://ghcr.io/")));
    assert!(sends_token_to(&listed, &url("http://127.0.0.1:5000/")));
    assert!(!sends_token_to(&listed, &url("http://127.0.0.1:5001/")));
    assert!(!sends_token_to(&listed, &url("https://github.com:8443/")));
    assert!(!sends_token_to(
        &listed,
        &url("https://registry-1.docker.io/")
    ));
    assert!(!sends_token_to(&listed, &url("https://api.github.com/")));
    assert!(!sends_token_to(
        &listed,
        &url("https://github.com.evil.io/")
    ));
    assert!(!sends_token_to(&[], &url("https://github.com/")));
}

#[test]
fn a_token_realm_gets_the_token_only_near_a_listed_registry() {
    let hub = url("https://registry-1.docker.io/");
    let ghcr = url("https://ghcr.io/");
    let local = url("http://127.0.0.1:5000/");
    let both = hosts(&["docker.io", "ghcr.io", "127.0.0.1:5000"]);
    // Docker Hub's token server shares its registry's parent domain.
    assert!(realm_gets_token(
        &both,
        &hub,
        &url("https://auth.docker.io/token")
    ));
    assert!(realm_gets_token(
        &both,
        &hub,
        &url("https://docker.io/token")
    ));
    assert!(realm_gets_token(
        &both,
        &hub,
        &url("https://registry-1.docker.io:8443/t")
    ));
    assert!(!realm_gets_token(
        &both,
        &hub,
        &url("https://auth.docker.io.evil/t")
    ));
    assert!(!realm_gets_token(
        &both,
        &hub,
        &url("https://a.b.docker.io/t")
    ));
    assert!(!realm_gets_token(
        &both,
        &hub,
        &url("https://evil.io/token")
    ));
    // ghcr.io's parent is one label: only ghcr.io itself (or a listed
    // host).
    assert!(realm_gets_token(
        &both,
        &ghcr,
        &url("https://ghcr.io/token")
    ));
    assert!(!realm_gets_token(
        &both,
        &ghcr,
        &url("https://evil.io/token")
    ));
    assert!(!realm_gets_token(
        &both,
        &ghcr,
        &url("https://auth.ghcr.io.evil/t")
    ));
    // A listed host is a realm too.
    assert!(realm_gets_token(
        &both,
        &ghcr,
        &url("http://127.0.0.1:5000/token")
    ));
    assert!(realm_gets_token(
        &both,
        &local,
        &url("http://127.0.0.1:5000/token")
    ));
    assert!(realm_gets_token(
        &both,
        &local,
        &url("http://127.0.0.1:5009/token")
    ));
    assert!(!realm_gets_token(
        &both,
        &local,
        &url("http://127.0.0.2:5000/token")
    ));
    // No realm gets it for a registry not listed: not even its own.
    let github_only = hosts(&["github.com"]);
    assert!(!realm_gets_token(
        &github_only,
        &hub,
        &url("https://auth.docker.io/token")
    ));
    assert!(!realm_gets_token(
        &github_only,
        &hub,
        &url("https://registry-1.docker.io/t")
    ));
    assert!(!realm_gets_token(
        &github_only,
        &ghcr,
        &url("https://github.com/token")
    ));
}

fn target(kind: &str, what: &str) -> PollTarget {
    match kind {
        "git" => PollTarget {
            repository: what.into(),
            url: what.into(),
            kind: PollKind::Git,
        },
        _ => {
            let image = ImageReference::parse(what).unwrap();
            PollTarget {
                repository: without_tag(what).into(),
                url: image.source(),
                kind: PollKind::Image(image),
            }
        }
    }
}

#[test]
fn token_hosts_default_to_the_git_host_else_the_one_registry() {
    let default = |targets: &[PollTarget]| {
        token_hosts(None, targets, true)
            .map(|h| h.iter().map(ToString::to_string).collect::<Vec<_>>())
    };
    // git's host, not the images' registries.
    assert_eq!(
        default(&[
            target("git", "https://github.com/acme/app.git"),
            target("image", "nginx:stable"),
            target("image", "ghcr.io/acme/app"),
        ]),
        Ok(vec!["github.com".to_owned()])
    );
    assert_eq!(
        default(&[target("git", "http://127.0.0.1:8080/app.git")]),
        Ok(vec!["127.0.0.1:8080".to_owned()])
    );
    // An ssh or file repository never carries the token: the images'
    // one registry.
    assert_eq!(
        default(&[
            target("git", "git@github.com:acme/app.git"),
            target("image", "nginx"),
            target("image", "docker.io/acme/api:v1"),
        ]),
        Ok(vec!["registry-1.docker.io".to_owned()])
    );
    assert_eq!(default(&[target("git", "/srv/git/app.git")]), Ok(vec![]));
    // Several registries and a token: list them.
    let several = default(&[
        target("image", "nginx"),
        target("image", "ghcr.io/acme/app"),
    ])
    .unwrap_err();
    assert!(several.contains("poll.token_hosts"), "{several}");
    assert!(
        several.contains("registry-1.docker.io, ghcr.io"),
        "{several}"
    );
    let repos = default(&[
        target("git", "https://github.com/acme/app.git"),
        target("git", "https://gitlab.com/acme/api.git"),
    ])
    .unwrap_err();
    assert!(repos.contains("github.com, gitlab.com"), "{repos}");
    // Without a token nothing is sent, so nothing needs listing.
    assert!(token_hosts(
        None,
        &[target("image", "nginx"), target("image", "ghcr.io/a/b")],
        false
    )
    .is_ok());
    // Listed, the default is not used.
    assert_eq!(
        token_hosts(
            Some(vec!["ghcr.io".into()]),
            &[target("image", "nginx")],
            true
        ),
        Ok(vec![TokenHost {
            host: "ghcr.io".into(),
            port: None
        }])
    );
}
