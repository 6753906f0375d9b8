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

/// The header GitHub's legacy HMAC-SHA1 signature comes in (`sha1=<hex>`),
/// the only SHA-1 scheme: its MAC is computed only when a delivery
/// carries one.
const SHA1_SIGNATURE_HEADER: &str = "x-hub-signature";

/// The MACs worth computing for `delivery` to `stacks`: for an HTTP
/// delivery with a body and a signature header (a header whose name says
/// "signature"), the HMAC-SHA256 of the body with each secret of each stack,
/// and the HMAC-SHA1 as well when GitHub's legacy `sha1=` header is there.
/// `None` for anything else (the component computes what it needs), so a
/// delivery that carries a token, or no signature at all, costs no hashing.
pub fn body_macs(stacks: &[wit::Stack], delivery: &wit::Delivery) -> Option<Vec<wit::BodyMac>> {
    let wit::Delivery::Http(request) = delivery else {
        return None;
    };
    if request.body.is_empty() {
        return None;
    }
    let mut sha256 = false;
    let mut sha1 = false;
    for (name, value) in &request.headers {
        if contains_ignore_case(name, "signature") {
            sha256 = true;
            sha1 |= name.eq_ignore_ascii_case(SHA1_SIGNATURE_HEADER)
                && value
                    .trim_start()
                    .get(..5)
                    .is_some_and(|p| p.eq_ignore_ascii_case("sha1="));
        }
    }
    if !sha256 {
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
    let mut macs = Vec::with_capacity(secrets.len() * if sha1 { 2 } else { 1 });
    for secret in secrets {
        macs.push(wit::BodyMac {
            algorithm: wit::MacAlgorithm::HmacSha256,
            secret: secret.to_string(),
            mac: mac::<Hmac<sha2::Sha256>>(secret, &request.body),
        });
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

/// Whether `haystack` contains the lowercase ASCII `needle`, ignoring case.
fn contains_ignore_case(haystack: &str, needle: &str) -> bool {
    haystack
        .as_bytes()
        .windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
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
        // Any header naming a signature, in any case (Gitea's, Bitbucket's).
        let delivery = http(&[("x-gitea-SIGNATURE", "00")], DATA);
        assert_eq!(body_macs(&stacks, &delivery).unwrap().len(), 2);
    }

    #[test]
    fn githubs_legacy_sha1_header_adds_the_sha1_mac() {
        let stacks = stacks(&[&[KEY]]);
        let delivery = http(&[("X-Hub-Signature", "SHA1=00")], DATA);
        assert_eq!(
            described(&body_macs(&stacks, &delivery).unwrap()),
            [
                (KEY.to_string(), "sha256", SHA256.to_string()),
                (KEY.to_string(), "sha1", SHA1.to_string()),
            ]
        );
    }

    #[test]
    fn nothing_is_hashed_where_no_mac_can_be_used() {
        let signed = stacks(&[&[KEY]]);
        let sig = [("X-Hub-Signature-256", "sha256=00")];
        // A token, no signature header, an empty body, no secrets.
        assert!(body_macs(&signed, &http(&[("X-Gitlab-Token", KEY)], DATA)).is_none());
        assert!(body_macs(&signed, &http(&[("X-GitHub-Event", "push")], DATA)).is_none());
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
