//! The body MACs the host computes natively for the component (the WIT
//! `evaluation-context.body-macs`).
//!
//! Verifying an HMAC signature means hashing the whole body once per
//! secret. In the component that is software SHA-256 (wasm has no SHA
//! instructions), about half of its time on a small signed push and most
//! of it on a large one; natively `sha2` uses the CPU's SHA extensions. So
//! the host hashes the body for each secret of the stacks evaluated and
//! passes the MACs in. The component still finds the signature header,
//! picks the scheme and the stack's secrets, and compares in constant time;
//! a MAC it is not given it computes itself, so these only save time and
//! never change a decision.

use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};

use super::wit;

/// Headers whose HMAC-SHA256 covers the body as sent (GitHub's, and
/// Gitea's fallback to it): their MAC is worth computing whatever the body.
const SHA256_HEADERS: &[&str] = &["x-hub-signature-256"];

/// GitHub's legacy header, and Bitbucket's: `sha1=<hex>` (GitHub, only
/// without [`SHA256_HEADERS`]) or `sha256=<hex>` (Bitbucket Cloud and
/// Server) over the body as sent.
const PREFIXED_HEADER: &str = "x-hub-signature";

/// Gitea's, Forgejo's and Gogs's bare-hex HMAC-SHA256: over the JSON
/// document, which is the body as sent unless it is form-encoded.
const JSON_HEADERS: &[&str] = &[
    "x-gitea-signature",
    "x-forgejo-signature",
    "x-gogs-signature",
];

/// A form-encoded body's `Content-Type`: its JSON is in a field, so a
/// Gitea-style signature does not cover the body as sent.
const FORM_TYPE: &str = "application/x-www-form-urlencoded";

/// Which MACs of the body the component may use, by the headers present.
/// Only an estimate to save work: a MAC not computed here the component
/// computes itself, and one computed needlessly is never used.
fn wanted(headers: &[(String, String)]) -> (bool, bool) {
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim())
    };
    let prefixed = |value: &str, prefix: &str| {
        value
            .get(..prefix.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(prefix))
    };
    let sha256_header = SHA256_HEADERS.iter().any(|h| header(h).is_some());
    let legacy = header(PREFIXED_HEADER);
    let form = header("content-type").is_some_and(|t| prefixed(t, FORM_TYPE));
    let sha256 = sha256_header
        || legacy.is_some_and(|v| prefixed(v, "sha256="))
        || (!form && JSON_HEADERS.iter().any(|h| header(h).is_some()));
    let sha1 = !sha256_header && legacy.is_some_and(|v| prefixed(v, "sha1="));
    (sha256, sha1)
}

/// The MACs worth computing for `delivery` to `stacks`: for an HTTP
/// delivery with a body and a signature header over it ([`wanted`]), the
/// HMAC-SHA256 of the body with each distinct secret of the stacks, and
/// the HMAC-SHA1 for GitHub's legacy `sha1=` header alone. `None` for
/// anything else (the component computes what it needs), so a delivery
/// that carries a token, or no signature at all, costs no hashing.
pub fn body_macs(stacks: &[wit::Stack], delivery: &wit::Delivery) -> Option<Vec<wit::BodyMac>> {
    let wit::Delivery::Http(request) = delivery else {
        return None;
    };
    if request.body.is_empty() {
        return None;
    }
    let (sha256, sha1) = wanted(&request.headers);
    if !sha256 && !sha1 {
        return None;
    }
    let mut secrets: Vec<&str> = stacks
        .iter()
        .flat_map(|s| s.secrets.iter().map(String::as_str))
        .collect();
    secrets.sort_unstable();
    secrets.dedup();
    if secrets.is_empty() {
        return None;
    }
    let mut macs = Vec::with_capacity(secrets.len());
    for secret in secrets {
        if sha256 {
            macs.push(wit::BodyMac {
                algorithm: wit::MacAlgorithm::HmacSha256,
                secret: secret.to_string(),
                mac: mac::<Hmac<sha2::Sha256>>(secret, &request.body),
            });
        }
        if sha1 {
            macs.push(wit::BodyMac {
                algorithm: wit::MacAlgorithm::HmacSha1,
                secret: secret.to_string(),
                mac: mac::<Hmac<sha1::Sha1>>(secret, &request.body),
            });
        }
    }
    Some(macs)
}

/// The HMAC of `body` keyed with `secret`.
fn mac<M: Mac + KeyInit>(secret: &str, body: &[u8]) -> Vec<u8> {
    // HMAC takes keys of any length, so this cannot fail.
    let mut mac = <M as KeyInit>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(body);
    mac.finalize().into_bytes().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A secret (the configuration wants at least 8 bytes), a body, and
    /// their HMACs as Python's `hmac` module computes them.
    const KEY: &str = "a-secret-of-mine";
    const DATA: &[u8] = b"what do ya want for nothing?";
    const SHA256: &str = "b2c233ceb01b2aab0b116d49d098cc0fe65edfc5664813d8e7a16f553bcfa29e";
    const SHA1: &str = "b19b3828bdabfe61c1c27a4572116f614a50b567";

    /// Stacks `a` and `b` with the secrets each line lists (comma-separated).
    fn stacks(secrets: &[&[&str]]) -> Vec<wit::Stack> {
        let mut text = String::new();
        for (i, list) in secrets.iter().enumerate() {
            let list: Vec<String> = list.iter().map(|s| format!("{s:?}")).collect();
            text.push_str(&format!(
                "[[stacks]]\nname = \"s{i}\"\nrepository = \"acme/web\"\nbranch = \"main\"\n\
                 command = [\"true\"]\nsecrets = [{}]\n",
                list.join(", ")
            ));
        }
        let config = crate::config::parse(&text, std::path::Path::new("/etc/redeploy"))
            .unwrap_or_else(|e| panic!("{e}"));
        crate::stacks::wit_stacks(&config)
    }

    fn http(headers: &[(&str, &str)], body: &[u8]) -> wit::Delivery {
        wit::Delivery::Http(wit::HttpRequest {
            method: "POST".into(),
            query: String::new(),
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body: body.to_vec(),
        })
    }

    fn described(macs: &[wit::BodyMac]) -> Vec<(String, &'static str, String)> {
        macs.iter()
            .map(|m| {
                let algorithm = match m.algorithm {
                    wit::MacAlgorithm::HmacSha256 => "sha256",
                    wit::MacAlgorithm::HmacSha1 => "sha1",
                };
                (m.secret.clone(), algorithm, hex::encode(&m.mac))
            })
            .collect()
    }

    #[test]
    fn a_signed_body_gets_one_sha256_mac_per_distinct_secret() {
        let stacks = stacks(&[&[KEY, "other-secret"], &[KEY]]);
        let delivery = http(&[("X-Hub-Signature-256", "sha256=00")], DATA);
        let macs = described(&body_macs(&stacks, &delivery).unwrap());
        assert_eq!(macs.len(), 2, "{macs:?}");
        assert_eq!(macs[0], (KEY.to_string(), "sha256", SHA256.to_string()));
        assert_eq!(macs[1].0, "other-secret");
        assert_eq!(macs[1].1, "sha256");
        // Gitea's header over a JSON body, Bitbucket's `sha256=`, in any case.
        let delivery = http(&[("x-gitea-SIGNATURE", "00")], DATA);
        assert_eq!(body_macs(&stacks, &delivery).unwrap().len(), 2);
        let delivery = http(&[("X-Hub-Signature", "SHA256=00")], DATA);
        assert_eq!(body_macs(&stacks, &delivery).unwrap().len(), 2);
    }

    #[test]
    fn githubs_legacy_sha1_header_alone_gets_the_sha1_mac() {
        let stacks = stacks(&[&[KEY]]);
        let delivery = http(&[("X-Hub-Signature", "SHA1=00")], DATA);
        assert_eq!(
            described(&body_macs(&stacks, &delivery).unwrap()),
            [(KEY.to_string(), "sha1", SHA1.to_string())]
        );
        // Beside the SHA-256 header the SHA-1 one is never checked.
        let delivery = http(
            &[
                ("X-Hub-Signature", "sha1=00"),
                ("X-Hub-Signature-256", "sha256=00"),
            ],
            DATA,
        );
        assert_eq!(
            described(&body_macs(&stacks, &delivery).unwrap()),
            [(KEY.to_string(), "sha256", SHA256.to_string())]
        );
    }

    #[test]
    fn nothing_is_hashed_where_no_mac_can_be_used() {
        let signed = stacks(&[&[KEY]]);
        let sig = [("X-Hub-Signature-256", "sha256=00")];
        // A token, no signature header, a header the plugin never reads, a
        // Gitea signature over a form body's JSON, an empty body, no secrets.
        assert!(body_macs(&signed, &http(&[("X-Gitlab-Token", KEY)], DATA)).is_none());
        assert!(body_macs(&signed, &http(&[("X-GitHub-Event", "push")], DATA)).is_none());
        assert!(body_macs(&signed, &http(&[("X-Signature", "00")], DATA)).is_none());
        let form = [
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("X-Gitea-Signature", "00"),
        ];
        assert!(body_macs(&signed, &http(&form, DATA)).is_none());
        assert!(body_macs(&signed, &http(&sig, b"")).is_none());
        assert!(body_macs(&stacks(&[&[]]), &http(&sig, DATA)).is_none());
        // A delivery that is not an HTTP request.
        let push = wit::Delivery::PostReceive(wit::PostReceive {
            repository: "/srv/git/web.git".into(),
            updates: Vec::new(),
            pusher: None,
            query: String::new(),
        });
        assert!(body_macs(&signed, &push).is_none());
    }
}
