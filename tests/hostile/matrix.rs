//! The rows of the hostile-input matrix, one named test each. A row is
//! `name => |t| expect(request, status, error kind)`, where `t` holds the
//! case's own stacks and hook URLs ([`Target`]).

use serde_json::json;

use super::{
    expect, github, post, push, raw_post, run, sig, Case, Send, Target, OTHER_SECRET, SECRET,
};
use crate::support::hmac_sha256_hex;

/// Declares the rows: one `#[test]` per row, and [`CASES`], the list the
/// shared server makes stacks for.
macro_rules! matrix {
    ($($(#[doc = $doc:literal])* $name:ident => $build:expr;)*) => {
        /// Every row's name, in order.
        pub const CASES: &[&str] = &[$(stringify!($name)),*];
        $(
            $(#[doc = $doc])*
            #[test]
            fn $name() {
                let build: fn(&Target) -> Case = $build;
                run(stringify!($name), build);
            }
        )*
    };
}

/// The commit of the pushes to main.
fn main_sha() -> String {
    "c".repeat(40)
}

/// A well-formed push to main, the branch every case's stacks follow.
fn good() -> Vec<u8> {
    push("refs/heads/main", &main_sha())
}

fn form_ct() -> [(&'static str, &'static str); 1] {
    [("Content-Type", "application/x-www-form-urlencoded")]
}

/// The hex HMAC of [`good`] with [`SECRET`], last byte's low bit flipped.
fn one_bit_off() -> String {
    let mut hex = hmac_sha256_hex(SECRET, &good());
    let last = u8::from_str_radix(&hex[62..], 16).unwrap() ^ 1;
    hex.replace_range(62.., &format!("{last:02x}"));
    format!("sha256={hex}")
}

/// A push of 60,000 commits to a branch no case follows (over 5 MB).
fn huge_push() -> Vec<u8> {
    let commits: Vec<serde_json::Value> = (0..60_000)
        .map(|i| json!({"id": format!("{i:040x}"), "message": "x", "added": [], "removed": [], "modified": ["a"]}))
        .collect();
    let huge = json!({
        "ref": "refs/heads/feature", "before": "1".repeat(40), "after": format!("{:040x}", 59_999),
        "repository": {"full_name": "acme/web"}, "pusher": {"name": "mallory"},
        "commits": commits, "head_commit": {"id": format!("{:040x}", 59_999), "message": "x"},
    })
    .to_string()
    .into_bytes();
    assert!(huge.len() > 5_000_000, "{}", huge.len());
    huge
}

/// A push to main, just under the default 25 MiB body limit, whose one
/// commit adds 8.7 million files with empty names: parsed, their list
/// (24 bytes a name, grown by doubling past 2^23 names) takes more than
/// the plugin's 256 MiB of memory.
fn a_push_of_empty_file_names() -> Vec<u8> {
    let names = vec!["\"\""; 8_700_000].join(",");
    let body = format!(
        r#"{{"ref": "refs/heads/main", "before": "{}", "after": "{}", "repository": {{"full_name": "acme/web"}}, "commits": [{{"id": "{}", "message": "x", "added": [{names}], "removed": [], "modified": []}}]}}"#,
        "1".repeat(40),
        main_sha(),
        main_sha()
    );
    assert!(
        body.len() > 26_000_000 && body.len() < 25 * 1024 * 1024,
        "{}",
        body.len()
    );
    body.into_bytes()
}

/// 26 MiB of spaces, over the default 25 MiB body limit.
fn big() -> Vec<u8> {
    vec![b' '; 26 * 1024 * 1024]
}

const JSON_CT: [(&str, &str); 1] = [("Content-Type", "application/json")];

/// A forwarded post-receive push of a new commit to main.
fn main_forward() -> String {
    json!({"repository": "acme/web", "pusher": null,
        "updates": [{"old": "1".repeat(40), "new": "2".repeat(40), "name": "refs/heads/main"}]})
    .to_string()
}

fn pr(t: &Target) -> String {
    format!("{}/post-receive", t.open_hook())
}

matrix! {
    // Bodies that are not the JSON they claim to be.
    invalid_json => |t| expect(
        github(t, "push", b"{ref: refs/heads/main}".to_vec(), &[]),
        400, Some("malformed-payload"));
    truncated_json => |t| {
        let good = good();
        expect(github(t, "push", good[..good.len() / 2].to_vec(), &[]), 400, Some("malformed-payload"))
    };
    json_nested_100000_deep => |t| {
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        expect(github(t, "push", deep.into_bytes(), &[]), 400, Some("malformed-payload"))
    };
    a_push_whose_commits_are_nested_5000_deep => |t| {
        let deep_field = format!(
            "{{\"ref\":\"refs/heads/main\",\"after\":\"{}\",\"repository\":{{\"full_name\":\"acme/web\"}},\"commits\":{}{}}}",
            main_sha(), "[".repeat(5_000), "]".repeat(5_000)
        );
        expect(github(t, "push", deep_field.into_bytes(), &[]), 400, Some("malformed-payload"))
    };
    a_body_that_is_not_utf8 => |t| expect(
        github(t, "push", vec![0xff, 0xfe, 0x7b, 0x00, 0xc3, 0x28, 0x80], &[]),
        400, Some("malformed-payload"));
    invalid_utf8_inside_a_json_string => |t| {
        let mut bad_utf8 = br#"{"ref":"refs/heads/ma"#.to_vec();
        bad_utf8.extend_from_slice(&[0xc3, 0x28]);
        bad_utf8.extend_from_slice(
            format!("in\",\"after\":\"{}\",\"repository\":{{\"full_name\":\"acme/web\"}}}}", main_sha()).as_bytes(),
        );
        expect(github(t, "push", bad_utf8, &[]), 400, Some("malformed-payload"))
    };
    a_json_array_instead_of_an_object => |t| expect(
        github(t, "push", b"[1, 2, 3]".to_vec(), &[]), 400, Some("malformed-payload"));
    json_null => |t| expect(github(t, "push", b"null".to_vec(), &[]), 400, Some("malformed-payload"));
    an_empty_body_under_a_push_event => |t| expect(
        github(t, "push", Vec::new(), &[]), 400, Some("malformed-payload"));
    a_json_body_labelled_as_a_form => |t| expect(
        github(t, "push", good(), &form_ct()), 400, Some("malformed-payload"));
    a_form_body_without_a_payload_field => |t| {
        let body = b"ref=refs%2Fheads%2Fmain&after=cc".to_vec();
        expect(github(t, "push", body, &form_ct()), 400, Some("malformed-payload"))
    };
    a_form_whose_payload_is_not_json => |t| expect(
        github(t, "push", b"payload=%7Bnot+json".to_vec(), &form_ct()), 400, Some("malformed-payload"));
    a_form_body_labelled_as_json => |t| {
        let form: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("payload", std::str::from_utf8(&good()).unwrap())
            .finish();
        expect(github(t, "push", form.into_bytes(), &[]), 400, Some("malformed-payload"))
    };

    // Signatures.
    no_signature_on_a_stack_with_a_secret => |t| expect(
        post(t.hook(), &[("X-GitHub-Event", "push"), ("Content-Type", "application/json")], &good()),
        401, Some("missing-signature"));
    an_empty_signature_header => |t| expect(
        github(t, "push", good(), &[("X-Hub-Signature-256", "")]), 401, Some("bad-signature"));
    a_signature_with_the_wrong_prefix => |t| {
        let wrong_prefix = format!("sha1={}", hmac_sha256_hex(SECRET, &good()));
        expect(github(t, "push", good(), &[("X-Hub-Signature-256", &wrong_prefix)]), 401, Some("bad-signature"))
    };
    a_signature_of_the_wrong_length => |t| {
        let short = format!("sha256={}", &hmac_sha256_hex(SECRET, &good())[..40]);
        expect(github(t, "push", good(), &[("X-Hub-Signature-256", &short)]), 401, Some("bad-signature"))
    };
    a_signature_one_byte_too_long => |t| {
        let long = format!("sha256={}00", hmac_sha256_hex(SECRET, &good()));
        expect(github(t, "push", good(), &[("X-Hub-Signature-256", &long)]), 401, Some("bad-signature"))
    };
    a_signature_that_is_not_hexadecimal => |t| {
        let non_hex = format!("sha256={}", "zz".repeat(32));
        expect(github(t, "push", good(), &[("X-Hub-Signature-256", &non_hex)]), 401, Some("bad-signature"))
    };
    the_right_hmac_with_the_wrong_secret => |t| {
        let wrong_secret = sig(OTHER_SECRET, &good());
        expect(github(t, "push", good(), &[("X-Hub-Signature-256", &wrong_secret)]), 401, Some("bad-signature"))
    };
    a_valid_signature_of_a_different_body => |t| {
        let other_body = sig(SECRET, &push("refs/heads/main", &"d".repeat(40)));
        expect(github(t, "push", good(), &[("X-Hub-Signature-256", &other_body)]), 401, Some("bad-signature"))
    };
    /// Every byte of the MAC is compared.
    a_signature_one_bit_off_in_its_last_byte => |t| expect(
        github(t, "push", good(), &[("X-Hub-Signature-256", &one_bit_off())]), 401, Some("bad-signature"));
    a_wrong_sha1_signature_and_no_sha256_one => |t| expect(
        post(t.hook(), &[("X-GitHub-Event", "push"), ("X-Hub-Signature", "sha1=0000000000000000000000000000000000000000")], &good()),
        401, Some("bad-signature"));
    /// The GitHub-style signature (`sha256=` prefix) where Gitea sends bare hex.
    a_github_payload_under_gitea_headers => |t| {
        let gh_sig = sig(SECRET, &good());
        expect(post(t.hook(), &[
            ("X-Gitea-Event", "push"),
            ("X-Gitea-Delivery", "hostile-gitea"),
            ("X-Gitea-Signature", &gh_sig),
            ("Content-Type", "application/json"),
        ], &good()), 401, Some("bad-signature"))
    };
    /// Gitea's bare-hex signature, which GitHub never sends.
    a_gitea_payload_under_github_headers => |t| {
        let gitea_sig = hmac_sha256_hex(SECRET, &good());
        expect(post(t.hook(), &[
            ("X-GitHub-Event", "push"),
            ("X-GitHub-Delivery", "hostile-github"),
            ("X-Gitea-Signature", &gitea_sig),
            ("Content-Type", "application/json"),
        ], &good()), 401, Some("missing-signature"))
    };
    a_gitlab_token_on_a_stack_whose_secret_is_an_hmac_key => |t| expect(
        post(t.hook(), &[("X-Gitlab-Event", "Push Hook"), ("X-Gitlab-Token", OTHER_SECRET)], &good()),
        401, Some("bad-signature"));

    // Headers.
    the_signature_header_twice_the_wrong_one_first => |t| {
        let wrong_secret = sig(OTHER_SECRET, &good());
        let right = sig(SECRET, &good());
        expect(github(t, "push", good(), &[
            ("X-Hub-Signature-256", &wrong_secret),
            ("X-Hub-Signature-256", &right),
        ]), 400, Some("bad-request"))
    };
    the_event_header_twice => |t| expect(
        github(t, "push", good(), &[("X-GitHub-Event", "ping")]), 400, Some("bad-request"));
    two_hundred_headers => |t| {
        let mut many = String::new();
        for i in 0..200 {
            many.push_str(&format!("X-Pad-{i}: {i}\r\n"));
        }
        expect(raw_post(t, &format!("{many}Content-Length: 0\r\n"), b""), 431, None)
    };
    a_1_mib_header => |t| {
        let huge_header = format!("X-Pad: {}\r\nContent-Length: 0\r\n", "a".repeat(1024 * 1024));
        expect(raw_post(t, &huge_header, b""), 431, None)
    };
    two_different_content_length_headers => |t| expect(
        raw_post(t, "Content-Length: 2\r\nContent-Length: 3\r\n", b"{}x"), 400, None);
    /// RFC 9112: the chunked framing wins and the connection is closed after
    /// the answer, so the request hidden behind the body is never served (a
    /// second answer would make the body unreadable as JSON).
    content_length_and_transfer_encoding_together => |t| expect(
        Send::Raw(format!(
            "POST {} HTTP/1.1\r\nHost: x\r\nX-GitHub-Event: push\r\n\
             Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n\
             2\r\n{{}}\r\n0\r\n\r\nGET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
            t.hook()
        ).into_bytes()),
        401, Some("missing-signature"));
    a_malformed_chunked_body => |t| expect(
        raw_post(t, "Transfer-Encoding: chunked\r\n", b"zz\r\n{}\r\n0\r\n\r\n"), 400, Some("bad-body"));
    a_request_line_that_is_not_http => |_t| expect(Send::Raw(b"POST\r\n\r\n".to_vec()), 400, None);
    an_event_header_with_bytes_that_are_not_utf8 => |t| {
        let good = good();
        let mut raw = format!(
            "POST {} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-GitHub-Event: pu",
            t.hook()
        ).into_bytes();
        raw.extend_from_slice(&[0xff, 0xfe]);
        raw.extend_from_slice(format!(
            "sh\r\nX-Hub-Signature-256: {}\r\nContent-Length: {}\r\n\r\n",
            sig(SECRET, &good), good.len()
        ).as_bytes());
        raw.extend_from_slice(&good);
        expect(Send::Raw(raw), 200, None)
    };

    // Payload contents: well-formed, signed, and still nothing to deploy.
    a_ref_without_refs_heads => |t| expect(github(t, "push", push("main", &main_sha()), &[]), 200, None);
    a_branch_named_like_a_path_traversal => |t| expect(
        github(t, "push", push("refs/heads/../../../etc/passwd", &main_sha()), &[]), 200, None);
    a_branch_that_walks_back_to_main => |t| expect(
        github(t, "push", push("refs/heads/feature/../main", &main_sha()), &[]), 200, None);
    a_tag_named_like_the_branch => |t| expect(
        github(t, "push", push("refs/tags/main", &main_sha()), &[]), 200, None);
    a_deletion_of_the_deployed_branch => |t| {
        let mut deleted: serde_json::Value = serde_json::from_slice(&good()).unwrap();
        deleted["after"] = json!("0".repeat(40));
        deleted["deleted"] = json!(true);
        expect(github(t, "push", deleted.to_string().into_bytes(), &[]), 200, None)
    };
    a_repository_named_like_a_path_traversal => |t| {
        let mut other_repo: serde_json::Value = serde_json::from_slice(&good()).unwrap();
        other_repo["repository"]["full_name"] = json!("acme/web/../evil");
        other_repo["repository"]["clone_url"] = json!("https://github.com/acme/evil.git");
        expect(github(t, "push", other_repo.to_string().into_bytes(), &[]), 200, None)
    };
    a_push_of_60000_commits_to_another_branch => |t| expect(
        github(t, "push", huge_push(), &[]), 200, None);
    a_push_of_60000_commits_with_a_wrong_signature => |t| {
        let huge = huge_push();
        let huge_sig = sig(OTHER_SECRET, &huge);
        expect(github(t, "push", huge, &[("X-Hub-Signature-256", &huge_sig)]), 401, Some("bad-signature"))
    };
    an_event_that_never_deploys => |t| {
        let gh_sig = sig(SECRET, &good());
        expect(post(t.hook(), &[
            ("X-GitHub-Event", "issues"),
            ("X-Hub-Signature-256", &gh_sig),
            ("Content-Type", "application/json"),
        ], &good()), 200, None)
    };
    /// Unsigned senders are refused before their body is parsed.
    no_provider_header_and_a_body_of_no_known_shape => |t| expect(
        post(t.hook(), &[], br#"{"hello": "world"}"#), 401, Some("missing-signature"));
    /// An empty POST without provider headers is a manual trigger, which a
    /// stack with secrets takes by default (`hostile::plugin`); one that
    /// names a signing sender still needs its signature.
    an_empty_post_under_a_gitlab_event_header_without_the_token => |t| expect(
        post(t.hook(), &[("X-Gitlab-Event", "Push Hook")], b""), 401, Some("missing-signature"));

    // Sizes.
    a_26_mib_body => |t| expect(github(t, "push", big(), &[]), 413, Some("payload-too-large"));
    /// A signed body under the limit whose shape needs more than the
    /// plugin's memory: too large for it, not the plugin's failure.
    a_push_under_the_limit_whose_parse_needs_more_than_the_plugins_memory => |t| expect(
        github(t, "push", a_push_of_empty_file_names(), &[]), 413, Some("payload-too-large"));
    a_26_mib_chunked_body_without_content_length => |t| {
        let mut chunked = Vec::new();
        for chunk in big().chunks(1024 * 1024) {
            chunked.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
            chunked.extend_from_slice(chunk);
            chunked.extend_from_slice(b"\r\n");
        }
        chunked.extend_from_slice(b"0\r\n\r\n");
        expect(raw_post(t, "Transfer-Encoding: chunked\r\n", &chunked), 413, Some("payload-too-large"))
    };

    // URLs and methods.
    an_empty_post_to_an_unknown_token => |_t| expect(
        post("/hooks/not-a-configured-token-0000000000".into(), &[], b""), 404, Some("not-found"));
    a_prefix_of_the_right_token => |t| expect(
        post(format!("/hooks/{}", &t.token[..t.token.len() - 1]), &[], b""), 404, Some("not-found"));
    the_right_token_with_one_more_character => |t| expect(
        post(format!("/hooks/{}0", t.token), &[], b""), 404, Some("not-found"));
    the_right_token_in_upper_case => |t| expect(
        post(format!("/hooks/{}", t.token.to_uppercase()), &[], b""), 404, Some("not-found"));
    an_empty_token => |_t| expect(post("/hooks/".into(), &[], b""), 404, Some("not-found"));
    a_path_below_the_hook => |t| expect(
        post(format!("{}/../../healthz", t.hook()), &[], b""), 404, Some("not-found"));
    get_on_a_hook_url => |t| expect(
        Send::Http { method: "GET", path: t.hook(), headers: vec![], body: vec![] },
        405, Some("unsupported-method"));
    delete_on_a_hook_url => |t| expect(
        Send::Http { method: "DELETE", path: t.hook(), headers: vec![], body: vec![] },
        405, Some("unsupported-method"));
    a_query_longer_than_the_plugin_parses => |t| {
        let long_query = format!("{}?services={}", t.hook(), "a".repeat(5000));
        expect(github(t, "push", good(), &[]).with_path(long_query), 400, Some("bad-request"))
    };
    an_unknown_service_modifier => |t| expect(
        github(t, "push", good(), &[]).with_path(format!("{}?services=db", t.hook())),
        400, Some("bad-request"));

    // The post-receive route of a stack without a secret.
    post_receive_a_body_that_is_not_json => |t| expect(
        post(pr(t), &JSON_CT, b"deadbeef refs/heads/main"), 400, Some("malformed-payload"));
    post_receive_an_unknown_field => |t| expect(
        post(pr(t), &JSON_CT, br#"{"repository":"acme/web","updates":[],"pusher":null,"admin":true}"#),
        400, Some("malformed-payload"));
    post_receive_an_object_id_that_is_not_one => |t| {
        let bad_line = json!({"repository": "acme/web", "pusher": null,
            "updates": [{"old": "1".repeat(40), "new": "../../etc/passwd", "name": "refs/heads/main"}]});
        expect(post(pr(t), &JSON_CT, bad_line.to_string().as_bytes()), 400, Some("malformed-payload"))
    };
    post_receive_more_ref_updates_than_the_limit => |t| {
        let updates: Vec<serde_json::Value> = (0..10_001)
            .map(|i| json!({"old": "1".repeat(40), "new": "2".repeat(40), "name": format!("refs/heads/b{i}")}))
            .collect();
        let too_many = json!({"repository": "acme/web", "pusher": null, "updates": updates});
        expect(post(pr(t), &JSON_CT, too_many.to_string().as_bytes()), 400, Some("malformed-payload"))
    };
    // The post-receive route of a stack with secrets wants a signature.
    post_receive_a_stack_with_secrets_unsigned => |t| expect(
        post(format!("{}/post-receive", t.hook()), &JSON_CT, main_forward().as_bytes()),
        401, Some("missing-signature"));
    post_receive_a_stack_with_secrets_signed_with_another_secret => |t| {
        let body = main_forward();
        let forged = format!("sha256={}", hmac_sha256_hex("not-the-secret", body.as_bytes()));
        expect(post(format!("{}/post-receive", t.hook()), &[
            ("Content-Type", "application/json"),
            ("X-Redeploy-Signature-256", &forged),
        ], body.as_bytes()), 401, Some("bad-signature"))
    };
    post_receive_get_is_not_allowed => |t| expect(
        Send::Http { method: "GET", path: pr(t), headers: vec![], body: vec![] }, 405, None);
}
