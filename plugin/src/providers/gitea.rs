//! Gitea, Forgejo and Gogs webhook payloads (they share Gogs' `PushPayload`).
//!
//! Follows Gitea's `modules/structs/hook.go` (`PushPayload`: `ref`, `before`,
//! `after`, `compare_url`, `commits`, `total_commits`, `head_commit`,
//! `repository`, `pusher`, `sender`), which Forgejo keeps, and Gogs' original
//! shape (no `total_commits`, older versions no `head_commit`):
//! - `push` → [`Event::Push`]. None of the three sends `created`, `deleted` or
//!   `forced`: creation and deletion come from the zero ids, and a push is
//!   never reported as forced. A body that has them is refused: it is
//!   GitHub's, which signs alike, sent again under a looser label. The commit list is capped by the server's
//!   `FEED_MAX_COMMIT_NUM`, so it counts as whole only when `total_commits`
//!   (Gitea ≥ 1.18, Forgejo) says so.
//! - a `push` whose `before` equals `after` → [`Event::Ping`]: that is the
//!   "Test Delivery" button (Gitea's `TestWebhook` sends the default branch's
//!   last commit, or a fake commit with the zero id, as both `before` and
//!   `after`); a real push never has `before == after`.
//! - `create`, `delete`, `release`, `pull_request` and every other event →
//!   [`Event::Ignored`].

use super::common::{
    first_non_empty, message_of, missing, named_repository, non_empty, pushed_after, required,
    ForgePush, PushPayload, RefChange,
};
use crate::error::{malformed, PluginError};
use crate::model::{Event, Headers, Provider};
use crate::outcome::SignatureScheme;
use crate::providers::{any_event, HeaderSender, ParseFn};
use crate::signature::{prefixed_sha256, FoundProof, Proof, Signed};

/// Normalizes one Gitea, Forgejo or Gogs delivery; `event` is the
/// `X-Gitea-Event` / `X-Forgejo-Event` / `X-Gogs-Event` value.
pub fn parse(provider: Provider, event: &str, json: &[u8]) -> Result<Event, PluginError> {
    match event {
        "push" => parse_push(provider, json),
        "create" | "delete" => Ok(Event::Ignored {
            reason: format!(
                "{event} events are not pushes; the push event for the same ref decides"
            ),
        }),
        other => Ok(Event::Ignored {
            reason: format!("{other} events never deploy"),
        }),
    }
}

fn parse_push(provider: Provider, json: &[u8]) -> Result<Event, PluginError> {
    let what = format!("{} push", provider.as_str());
    let p: PushPayload = serde_json::from_slice(json).map_err(|e| malformed(&what, e))?;
    // GitHub signs alike (`X-Hub-Signature-256`, or its hex as a Gitea
    // signature), and none of the three sends GitHub's flags: a body with
    // them is GitHub's push under another label, which would be judged by
    // looser rules (no forced flag, a commit list never known whole).
    if p.created.is_some() || p.deleted.is_some() || p.forced.is_some() {
        return Err(PluginError::MalformedPayload(format!(
            "{what}: it has GitHub's created/deleted/forced flags, which no Gitea, Forgejo or Gogs push has: another sender's body, refused"
        )));
    }
    let repo = p
        .repository
        .as_ref()
        .ok_or_else(|| missing(&what, "repository"))?;
    let urls = [&repo.clone_url, &repo.ssh_url, &repo.html_url];
    let repository = named_repository(&repo.full_name, &what, urls)?;
    let before_raw = non_empty(&p.before);
    let after_raw = non_empty(&p.after);
    if before_raw.is_some() && before_raw == after_raw {
        // The "Test Delivery" button: a real push always moves the ref.
        return Ok(Event::Ping {
            repository: Some(repository),
        });
    }
    let git_ref = required(&p.git_ref, &what, "ref")?;
    let after = pushed_after(&p.after, &what)?;
    // None of the three sends `created` / `deleted` / `forced` flags.
    let change = RefChange::new(before_raw, Some(after), None, None);
    let pusher = [&p.pusher, &p.sender]
        .into_iter()
        .flatten()
        .find_map(|u| first_non_empty(&[&u.login, &u.username, &u.name, &u.full_name]))
        .map(str::to_string);

    let commits = p.commits();
    // Listed newest first; `head_commit` is missing from older Gogs/Gitea.
    let newest = if change.deleted {
        None
    } else {
        commits.first()
    };
    let head = p.head(change.after.as_deref(), newest);
    let commits_complete = match p.total_commits {
        Some(total) => commits.len() as u64 >= total,
        // Without a total the list may have been cut at FEED_MAX_COMMIT_NUM;
        // only a deletion is known to bring no commits.
        None => change.deleted && commits.is_empty(),
    };
    let push = ForgePush {
        pusher,
        head_message: message_of(head),
        commits_complete,
        ..ForgePush::new(repository, git_ref, change, commits)
    };
    Ok(Event::Push(vec![push.into_push()]))
}

/// One of the three: its event header names the event, and its delivery
/// headers the delivery; all three sign alike ([`gitea_proof`]).
const fn gitea_family(
    id: Provider,
    parse: ParseFn,
    event_header: &'static str,
    delivery_headers: &'static [&'static str],
) -> HeaderSender {
    HeaderSender {
        id,
        also_serves: &[],
        event_header,
        claims: any_event,
        delivery_headers,
        proof: gitea_proof,
        parse,
    }
}

/// Forgejo: it also sends Gitea's and Gogs' headers, so it comes first.
pub static FORGEJO: HeaderSender = gitea_family(
    Provider::Forgejo,
    |event, json| parse(Provider::Forgejo, event, json),
    "x-forgejo-event",
    &["x-forgejo-delivery", "x-gitea-delivery"],
);

/// Gitea: it also sends Gogs' and GitHub-style headers.
pub static GITEA: HeaderSender = gitea_family(
    Provider::Gitea,
    |event, json| parse(Provider::Gitea, event, json),
    "x-gitea-event",
    &["x-gitea-delivery"],
);

/// Gogs.
pub static GOGS: HeaderSender = gitea_family(
    Provider::Gogs,
    |event, json| parse(Provider::Gogs, event, json),
    "x-gogs-event",
    &["x-gogs-delivery"],
);

/// The signature headers of the three, most specific first; each is a bare
/// hex HMAC-SHA256 of the JSON document (a form body's decoded `payload`).
const SIGNATURE_HEADERS: [&str; 3] = [
    "X-Forgejo-Signature",
    "X-Gitea-Signature",
    "X-Gogs-Signature",
];

/// The signature of all three: the first of [`SIGNATURE_HEADERS`] present,
/// else a GitHub-style `X-Hub-Signature-256: sha256=<hex>` over the raw body.
fn gitea_proof(headers: &Headers) -> Result<FoundProof<'_>, PluginError> {
    for header in SIGNATURE_HEADERS {
        if let Some(hex) = headers.get(header) {
            let proof = Proof::Sha256 {
                header,
                hex,
                signed: Signed::DecodedJson,
            };
            return Ok(Some((SignatureScheme::GiteaSha256, proof)));
        }
    }
    let scheme = SignatureScheme::GiteaSha256;
    prefixed_sha256(headers, "X-Hub-Signature-256", scheme, Signed::RawBody)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ChangedFiles, Push, Repository};
    use crate::providers::test_support::{self, assert_ref, fixture};

    fn push(provider: Provider, path: &str) -> Push {
        test_support::one_push(path, parse(provider, "push", &fixture(path)))
    }

    fn ignored_reason(provider: Provider, event: &str, path: &str) -> String {
        test_support::ignored_reason(path, parse(provider, event, &fixture(path)))
    }

    #[test]
    fn gitea_push_without_total_commits() {
        // go-scm's Gitea and Gogs fixtures are one payload from two hosts.
        for (provider, path, host) in [
            (Provider::Gitea, "gitea/goscm-push.json", "try.gitea.io"),
            (Provider::Gogs, "gogs/goscm-push.json", "try.gogs.io"),
        ] {
            let p = push(provider, path);
            assert_eq!(p.repository.full_name, "gogits/hello-world");
            assert_eq!(
                p.repository.urls,
                vec![
                    format!("http://{host}/gogits/hello-world.git"),
                    "git@localhost:gogits/hello-world.git".into(),
                    format!("http://{host}/gogits/hello-world"),
                ]
            );
            assert_ref(
                &p,
                "refs/heads/master",
                Some("9836a96a253cce25d17988fcf41b8c4205cf779f"),
                Some("4522cbcefc20728a5b72b3a86af35e608622c514"),
            );
            assert!(!p.created && !p.deleted && !p.forced);
            assert_eq!(p.pusher.as_deref(), Some("unknwon"));
            // No head_commit in this old payload: the listed commit with id == after.
            assert_eq!(p.head_message.as_deref(), Some("Updated readme\n"));
            assert_eq!(p.commit_messages, vec!["Updated readme\n"]);
            // No total_commits: the list may have been cut at FEED_MAX_COMMIT_NUM.
            assert!(!p.commits_complete);
            assert_eq!(p.changed_files, ChangedFiles::Unknown);
        }

        let p = push(Provider::Gitea, "gitea/woodpecker-HookPush.json");
        assert_eq!(p.repository.full_name, "gordon/hello-world");
        assert_ref(
            &p,
            "refs/heads/main",
            Some("4b2626259b5a97b6b4eab5e6cca66adb986b672b"),
            Some("ef98532add3b2feb7a137426bba1248724367df5"),
        );
        assert!(!p.created && !p.deleted && !p.forced);
        assert_eq!(p.pusher.as_deref(), Some("gordon"));
        assert_eq!(p.head_message.as_deref(), Some("bump\n"));
        assert_eq!(p.commit_messages.len(), 1);
        assert_eq!(p.changed_files, ChangedFiles::Unknown);
    }

    #[test]
    fn gitea_push_with_total_commits() {
        let p = push(Provider::Gitea, "gitea/woodpecker-HookPushMulti.json");
        assert_eq!(p.repository.full_name, "Test-CI/multi-line-secrets");
        assert_eq!(
            p.repository.urls,
            vec![
                "http://127.0.0.1:3000/Test-CI/multi-line-secrets.git",
                "ssh://git@127.0.0.1:2200/Test-CI/multi-line-secrets.git",
                "http://127.0.0.1:3000/Test-CI/multi-line-secrets",
            ]
        );
        assert_ref(
            &p,
            "refs/heads/main",
            Some("6efcf5b7c98f3e7a491675164b7a2e7acac27941"),
            Some("29be01c073851cf0db0c6a466e396b725a670453"),
        );
        assert!(!p.created && !p.deleted && !p.forced);
        assert_eq!(p.pusher.as_deref(), Some("test-user"));
        assert_eq!(p.head_message.as_deref(), Some("add some text\n"));
        assert_eq!(
            p.commit_messages,
            vec!["add some text\n", "rm a a file\n", "add some a files\n"]
        );
        assert!(p.commits_complete);
        // modified aaa; removed aa; added aa, aaa.
        assert_eq!(
            p.changed_files,
            ChangedFiles::Complete(vec!["aa".into(), "aaa".into()])
        );
    }

    #[test]
    fn gitea_branch_create_push() {
        let p = push(Provider::Gitea, "gitea/woodpecker-HookPushBranch.json");
        assert_eq!(p.repository.full_name, "meisam/woodpecktester");
        assert_ref(
            &p,
            "refs/heads/fdsafdsa",
            None,
            Some("28c3613ae62640216bea5e7dc71aa65356e4298b"),
        );
        assert!(p.created && !p.deleted && !p.forced);
        assert_eq!(p.pusher.as_deref(), Some("6543"));
        assert_eq!(
            p.head_message.as_deref(),
            Some("Delete '.woodpecker/.check.yml'\n")
        );
        assert!(p.commit_messages.is_empty());
        assert_eq!(p.changed_files, ChangedFiles::Unknown);
    }

    #[test]
    fn forgejo_and_gogs_push() {
        let p = push(Provider::Forgejo, "forgejo/woodpecker-HookPush.json");
        assert_eq!(p.repository.full_name, "gordon/hello-world");
        assert_eq!(
            p.repository.urls[0],
            "http://forgejo.golang.org/gordon/hello-world.git"
        );
        assert_ref(
            &p,
            "refs/heads/main",
            Some("4b2626259b5a97b6b4eab5e6cca66adb986b672b"),
            Some("ef98532add3b2feb7a137426bba1248724367df5"),
        );
        assert_eq!(p.pusher.as_deref(), Some("gordon"));
        assert_eq!(p.head_message.as_deref(), Some("bump\n"));
        assert_eq!(p.changed_files, ChangedFiles::Unknown);
    }

    #[test]
    fn deletion_push() {
        let body = br#"{"ref":"refs/tags/v1","before":"4522cbcefc20728a5b72b3a86af35e608622c514",
            "after":"0000000000000000000000000000000000000000","commits":[],"head_commit":null,
            "repository":{"full_name":"o/r"},"pusher":{"login":"me"}}"#;
        let Ok(Event::Push(v)) = parse(Provider::Gitea, "push", body) else {
            panic!("not a push")
        };
        let p = &v[0];
        assert!(p.deleted && !p.created);
        assert_eq!(p.after, None);
        assert_eq!(p.head_message, None);
        assert!(p.commits_complete);
        assert_eq!(p.changed_files, ChangedFiles::Complete(vec![]));
    }

    #[test]
    fn test_delivery_is_a_ping() {
        // Gitea's "Test Delivery": the last commit as both before and after.
        let body =
            br#"{"ref":"refs/heads/main","before":"4522cbcefc20728a5b72b3a86af35e608622c514",
            "after":"4522cbcefc20728a5b72b3a86af35e608622c514","total_commits":1,
            "commits":[{"id":"4522cbcefc20728a5b72b3a86af35e608622c514","message":"x"}],
            "repository":{"full_name":"o/r","clone_url":"https://g.example/o/r.git"}}"#;
        let expected = Event::Ping {
            repository: Some(Repository {
                full_name: "o/r".into(),
                urls: vec!["https://g.example/o/r.git".into()],
            }),
        };
        assert_eq!(parse(Provider::Gitea, "push", body), Ok(expected.clone()));
        assert_eq!(parse(Provider::Forgejo, "push", body), Ok(expected));
        // Newer Gitea sends a fake commit with the zero id for both.
        let body =
            br#"{"ref":"refs/heads/main","before":"0000000000000000000000000000000000000000",
            "after":"0000000000000000000000000000000000000000","repository":{"full_name":"o/r"}}"#;
        assert!(matches!(
            parse(Provider::Gitea, "push", body),
            Ok(Event::Ping {
                repository: Some(_)
            })
        ));
    }

    #[test]
    fn malformed() {
        let err = parse(Provider::Gogs, "push", b"[").unwrap_err();
        assert!(
            matches!(err, PluginError::MalformedPayload(ref m) if m.starts_with("gogs push: "))
        );
        let err = parse(Provider::Forgejo, "push", br#"{"ref":"refs/heads/x"}"#).unwrap_err();
        assert_eq!(
            err,
            PluginError::MalformedPayload("forgejo push: missing repository".into())
        );
        let err = parse(
            Provider::Gitea,
            "push",
            br#"{"repository":{"full_name":"o/r"}}"#,
        )
        .unwrap_err();
        assert_eq!(
            err,
            PluginError::MalformedPayload("gitea push: missing ref".into())
        );
    }

    #[test]
    fn ignored_events() {
        for (provider, path) in [
            (Provider::Gitea, "gitea/goscm-branch_create.json"),
            (Provider::Gitea, "gitea/goscm-tag_create.json"),
            (Provider::Gitea, "gitea/woodpecker-HookTag.json"),
            (Provider::Forgejo, "forgejo/woodpecker-HookTag.json"),
            (Provider::Gogs, "gogs/goscm-branch_create.json"),
            (Provider::Gogs, "gogs/goscm-tag_create.json"),
        ] {
            let r = ignored_reason(provider, "create", path);
            assert!(r.starts_with("create events are not pushes"), "{path}: {r}");
        }
        for (provider, path) in [
            (Provider::Gitea, "gitea/goscm-branch_delete.json"),
            (Provider::Gitea, "gitea/goscm-tag_delete.json"),
            (Provider::Gogs, "gogs/goscm-branch_delete.json"),
            (Provider::Gogs, "gogs/goscm-tag_delete.json"),
        ] {
            let r = ignored_reason(provider, "delete", path);
            assert!(r.starts_with("delete events are not pushes"), "{path}: {r}");
        }
        assert_eq!(
            ignored_reason(
                Provider::Gitea,
                "pull_request",
                "gitea/goscm-pull_request_opened.json"
            ),
            "pull_request events never deploy"
        );
        assert_eq!(
            ignored_reason(
                Provider::Gogs,
                "pull_request",
                "gogs/goscm-pull_request_opened.json"
            ),
            "pull_request events never deploy"
        );
        assert_eq!(
            ignored_reason(
                Provider::Gitea,
                "release",
                "gitea/woodpecker-HookRelease.json"
            ),
            "release events never deploy"
        );
    }
}
