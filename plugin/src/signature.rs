//! Webhook signature and token verification, constant-time.
//!
//! Each provider's [`Sender::proof`](crate::providers::Sender::proof) says
//! which header it signs with and what it signs (built with
//! [`prefixed_sha256`], [`prefixed_sha1`] and [`plain_token`]); this module
//! checks the proof against a stack's secrets. Today:
//! - GitHub: `X-Hub-Signature-256: sha256=<hex>` over the raw body as sent
//!   (form-encoded or not); `X-Hub-Signature: sha1=<hex>` only when no
//!   SHA-256 header is present.
//! - Gitea / Forgejo / Gogs: bare-hex HMAC-SHA256 in `X-Gitea-Signature`,
//!   `X-Forgejo-Signature` or `X-Gogs-Signature`. For form-encoded hooks the
//!   signature covers the JSON inside `payload`, not the raw body.
//! - GitLab (`X-Gitlab-Token`) and Gitee (`X-Gitee-Token`): the secret itself.
//! - Bitbucket Cloud and Server: `X-Hub-Signature: sha256=<hex>` over the raw body.
//!
//! Providers without a signing scheme (registries, Azure DevOps, the legacy
//! Bitbucket POST service, manual triggers) are only accepted by stacks
//! without secrets, which rely on the secret hook URL alone.

use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::PluginError;
use crate::model::{Headers, Provider};
use crate::outcome::SignatureScheme;
use crate::providers;

type HmacSha256 = Hmac<Sha256>;
type HmacSha1 = Hmac<sha1::Sha1>;

/// What a delivery carries to prove who sent it: each provider's
/// [`Sender::proof`](crate::providers::Sender::proof) finds it in the headers.
#[derive(Debug, PartialEq, Eq)]
pub enum Proof<'a> {
    /// An HMAC-SHA256 (hex) over `signed`.
    Sha256 {
        /// The header it came in, for messages.
        header: &'static str,
        /// The MAC, hex.
        hex: &'a str,
        /// Which bytes it covers.
        signed: Signed,
    },
    /// An HMAC-SHA1 (hex) over the raw body.
    Sha1 {
        /// The header it came in, for messages.
        header: &'static str,
        /// The MAC, hex.
        hex: &'a str,
    },
    /// The secret itself.
    Token {
        /// The header it came in, for messages.
        header: &'static str,
        /// The token.
        token: &'a str,
    },
}

/// Which bytes a signature covers.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum Signed {
    /// The body as sent.
    RawBody,
    /// The JSON document: a form-encoded body's `payload` field, decoded.
    DecodedJson,
}

/// The keyed hash of a [`BodyMac`] (WIT `mac-algorithm`).
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum MacAlgorithm {
    /// HMAC-SHA256.
    HmacSha256,
    /// HMAC-SHA1.
    HmacSha1,
}

/// An HMAC of a delivery's body as sent, keyed with one secret, that the
/// host computed natively (WIT `body-mac`). It only saves work: a proof is
/// still checked against each of the stack's secrets, in constant time,
/// and a MAC the host did not give is computed here.
#[derive(Clone, PartialEq, Eq)]
pub struct BodyMac {
    /// The hash.
    pub algorithm: MacAlgorithm,
    /// The secret it is keyed with.
    pub secret: String,
    /// The MAC.
    pub mac: Vec<u8>,
}

impl std::fmt::Debug for BodyMac {
    /// Names the algorithm only: the secret and the MAC stay out of any
    /// debug output.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BodyMac")
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

/// Whether `expected` is the MAC `algorithm` of `data` keyed with `secret`:
/// taken from `macs` when `data` is the body as sent, `raw` itself (the
/// same bytes in memory, which is how callers pass it), over which the
/// host computed them; else computed here. Compared in constant time.
///
/// Identity, not equal contents: comparing the bytes cost a pass over the
/// whole body, byte by byte in the component (about 12 µs of an 8.5 KiB
/// push, about a fifth of a 1 MiB push's evaluation, BENCHMARKS.md part 5,
/// eighth pass), and the only other `data` a caller passes, a form body's
/// decoded `payload`, is never the raw body's bytes.
fn mac_matches(
    algorithm: MacAlgorithm,
    secret: &str,
    data: &[u8],
    raw: &[u8],
    macs: &[BodyMac],
    expected: &[u8],
) -> Result<bool, PluginError> {
    if core::ptr::eq(data, raw) {
        // A MAC of the wrong length is no MAC of this algorithm: ignored.
        if let Some(given) = macs.iter().find(|m| {
            m.algorithm == algorithm && m.secret == secret && m.mac.len() == expected.len()
        }) {
            return Ok(given.mac.ct_eq(expected).into());
        }
    }
    Ok(match algorithm {
        MacAlgorithm::HmacSha256 => {
            let mut mac = <HmacSha256 as KeyInit>::new_from_slice(secret.as_bytes())
                .map_err(|_| PluginError::InvalidStack("secret cannot key hmac-sha256".into()))?;
            mac.update(data);
            mac.verify_slice(expected).is_ok()
        }
        MacAlgorithm::HmacSha1 => {
            let mut mac = <HmacSha1 as KeyInit>::new_from_slice(secret.as_bytes())
                .map_err(|_| PluginError::InvalidStack("secret cannot key hmac-sha1".into()))?;
            mac.update(data);
            mac.verify_slice(expected).is_ok()
        }
    })
}

/// A proof and the scheme it implies, when the delivery carries one.
pub type FoundProof<'a> = Option<(SignatureScheme, Proof<'a>)>;

fn prefixed<'a>(value: &'a str, prefix: &str) -> Option<&'a str> {
    let (p, rest) = value.split_once('=')?;
    p.trim().eq_ignore_ascii_case(prefix).then_some(rest.trim())
}

/// An HMAC-SHA256 over `signed` in `header`, as `sha256=<hex>`; a value
/// without that prefix is a bad signature.
pub fn prefixed_sha256<'a>(
    headers: &'a Headers,
    header: &'static str,
    scheme: SignatureScheme,
    signed: Signed,
) -> Result<FoundProof<'a>, PluginError> {
    let Some(value) = headers.get(header) else {
        return Ok(None);
    };
    let hex = prefixed(value, "sha256").ok_or_else(|| {
        PluginError::BadSignature(format!("{header} does not start with \"sha256=\""))
    })?;
    Ok(Some((
        scheme,
        Proof::Sha256 {
            header,
            hex,
            signed,
        },
    )))
}

/// An HMAC-SHA1 over the raw body in `header`, as `sha1=<hex>`; a value
/// without that prefix is a bad signature.
pub fn prefixed_sha1<'a>(
    headers: &'a Headers,
    header: &'static str,
    scheme: SignatureScheme,
) -> Result<FoundProof<'a>, PluginError> {
    let Some(value) = headers.get(header) else {
        return Ok(None);
    };
    let hex = prefixed(value, "sha1").ok_or_else(|| {
        PluginError::BadSignature(format!("{header} does not start with \"sha1=\""))
    })?;
    Ok(Some((scheme, Proof::Sha1 { header, hex })))
}

/// The secret itself in `header`.
pub fn plain_token<'a>(headers: &'a Headers, header: &'static str) -> FoundProof<'a> {
    headers
        .get(header)
        .map(|token| (SignatureScheme::PlainToken, Proof::Token { header, token }))
}

fn decode_hex(header: &str, hex_text: &str, len: usize) -> Result<Vec<u8>, PluginError> {
    let bytes = hex::decode(hex_text)
        .map_err(|_| PluginError::BadSignature(format!("{header} is not hexadecimal")))?;
    if bytes.len() != len {
        return Err(PluginError::BadSignature(format!(
            "{header} has {} bytes, expected {len}",
            bytes.len()
        )));
    }
    Ok(bytes)
}

fn token_matches(token: &str, secret: &str) -> bool {
    // Compare digests so neither the length nor a common prefix leaks.
    let a = Sha256::digest(token.as_bytes());
    let b = Sha256::digest(secret.as_bytes());
    a.ct_eq(&b).into()
}

fn proof_matches(
    proof: &Proof<'_>,
    secret: &str,
    raw: &[u8],
    json: &[u8],
    macs: &[BodyMac],
) -> Result<bool, PluginError> {
    match proof {
        Proof::Sha256 {
            header,
            hex,
            signed,
        } => {
            let expected = decode_hex(header, hex, 32)?;
            let data = match signed {
                Signed::RawBody => raw,
                Signed::DecodedJson => json,
            };
            mac_matches(MacAlgorithm::HmacSha256, secret, data, raw, macs, &expected)
        }
        Proof::Sha1 { header, hex } => {
            let expected = decode_hex(header, hex, 20)?;
            mac_matches(MacAlgorithm::HmacSha1, secret, raw, raw, macs, &expected)
        }
        Proof::Token { token, .. } => Ok(token_matches(token, secret)),
    }
}

/// How far a signed manual trigger's `X-Redeploy-Timestamp` may be from
/// the evaluation's `now`, either way: five minutes covers clocks a little
/// apart and a slow network, and bounds how long a captured trigger replays.
pub const MANUAL_SIGNATURE_WINDOW_MS: u64 = 5 * 60 * 1000;

/// The header holding a signed manual trigger's Unix time in seconds.
pub const MANUAL_TIMESTAMP_HEADER: &str = "X-Redeploy-Timestamp";

/// The header holding a signed manual trigger's `sha256=<hex>` HMAC.
pub const MANUAL_SIGNATURE_HEADER: &str = "X-Redeploy-Signature-256";

/// The bytes a signed manual trigger's HMAC covers: `manual:<stack>:<timestamp>`
/// (the stack, so a trigger signed for one stack does not work on another
/// that shares its secret).
pub fn manual_signed_text(stack: &str, timestamp: &str) -> String {
    format!("manual:{stack}:{timestamp}")
}

/// The `X-Redeploy-Signature-256` value of a manual trigger of `stack` at
/// `timestamp` (Unix seconds, decimal) signed with `secret`.
pub fn sign_manual(secret: &str, stack: &str, timestamp: &str) -> String {
    format!(
        "sha256={}",
        hmac_sha256_hex(
            secret.as_bytes(),
            manual_signed_text(stack, timestamp).as_bytes()
        )
    )
}

/// Hex HMAC-SHA256 of `data` with `key`.
pub fn hmac_sha256_hex(key: &[u8], data: &[u8]) -> String {
    let mut mac = <HmacSha256 as KeyInit>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("hmac-sha256 takes keys of any length"));
    mac.update(data);
    hex::encode(mac.finalize().into_bytes())
}

/// Whether `hex_mac` is the HMAC-SHA256 of `data` with `key`, in constant time.
pub fn hmac_sha256_verify(key: &[u8], data: &[u8], hex_mac: &str) -> bool {
    let Ok(expected) = hex::decode(hex_mac.trim()) else {
        return false;
    };
    let Ok(mut mac) = <HmacSha256 as KeyInit>::new_from_slice(key) else {
        return false;
    };
    mac.update(data);
    mac.verify_slice(&expected).is_ok()
}

/// Verifies a signed manual trigger for one stack: `X-Redeploy-Timestamp`
/// within [`MANUAL_SIGNATURE_WINDOW_MS`] of `now_ms`, and
/// `X-Redeploy-Signature-256` the HMAC of [`manual_signed_text`] with one of
/// the stack's secrets. Without `now_ms` the timestamp cannot be checked,
/// so the trigger is refused.
pub fn verify_manual(
    stack: &str,
    secrets: &[String],
    headers: &Headers,
    now_ms: Option<u64>,
) -> Result<SignatureScheme, PluginError> {
    if secrets.is_empty() {
        return Err(PluginError::InvalidStack(format!(
            "stack \"{stack}\" requires signed manual triggers but has no secrets"
        )));
    }
    let (Some(timestamp), Some(signature)) = (
        headers.get(MANUAL_TIMESTAMP_HEADER),
        headers.get(MANUAL_SIGNATURE_HEADER),
    ) else {
        return Err(PluginError::MissingSignature(format!(
            "stack \"{stack}\" requires signed manual triggers (manual = \"signed\"): send {MANUAL_TIMESTAMP_HEADER} and {MANUAL_SIGNATURE_HEADER}"
        )));
    };
    let hex = prefixed(signature, "sha256").ok_or_else(|| {
        PluginError::BadSignature(format!(
            "{MANUAL_SIGNATURE_HEADER} does not start with \"sha256=\""
        ))
    })?;
    let expected = decode_hex(MANUAL_SIGNATURE_HEADER, hex, 32)?;
    let signed = manual_signed_text(stack, timestamp);
    let valid = secrets.iter().any(|secret| {
        <HmacSha256 as KeyInit>::new_from_slice(secret.as_bytes())
            .map(|mut mac| {
                mac.update(signed.as_bytes());
                mac.verify_slice(&expected).is_ok()
            })
            .unwrap_or(false)
    });
    if !valid {
        return Err(PluginError::BadSignature(format!(
            "{MANUAL_SIGNATURE_HEADER} does not match any secret of stack \"{stack}\""
        )));
    }
    // Checked after the signature, so the answer tells nothing about the
    // time to someone without the secret.
    let seconds: u64 = timestamp.parse().map_err(|_| {
        PluginError::BadSignature(format!(
            "{MANUAL_TIMESTAMP_HEADER} is not a Unix time in seconds"
        ))
    })?;
    let Some(now_ms) = now_ms else {
        return Err(PluginError::BadSignature(
            "a signed manual trigger needs the current time, which the host did not give".into(),
        ));
    };
    let sent_ms = seconds.saturating_mul(1000);
    if sent_ms.abs_diff(now_ms) > MANUAL_SIGNATURE_WINDOW_MS {
        return Err(PluginError::BadSignature(format!(
            "{MANUAL_TIMESTAMP_HEADER} is more than {} s away from the server's time",
            MANUAL_SIGNATURE_WINDOW_MS / 1000
        )));
    }
    Ok(SignatureScheme::RedeploySha256)
}

/// Verifies a delivery for one stack. `raw` is the body as sent and `json`
/// the decoded JSON document (they differ for form-encoded bodies);
/// `macs` are the MACs of `raw` the host computed (see [`BodyMac`]).
/// A stack without secrets accepts any delivery (`NotRequired`).
pub fn verify(
    stack: &str,
    secrets: &[String],
    provider: Provider,
    headers: &Headers,
    raw: &[u8],
    json: &[u8],
    macs: &[BodyMac],
) -> Result<SignatureScheme, PluginError> {
    if secrets.is_empty() {
        return Ok(SignatureScheme::NotRequired);
    }
    let found = match providers::sender(provider) {
        Some(sender) => sender.proof(headers)?,
        None => None,
    };
    let (scheme, proof) = found.ok_or_else(|| {
        PluginError::MissingSignature(format!(
            "stack \"{stack}\" has secrets and this {} delivery carries no signature or token",
            provider.as_str()
        ))
    })?;
    for secret in secrets {
        if proof_matches(&proof, secret, raw, json, macs)? {
            return Ok(scheme);
        }
    }
    let header = match proof {
        Proof::Sha256 { header, .. } | Proof::Sha1 { header, .. } | Proof::Token { header, .. } => {
            header
        }
    };
    Err(PluginError::BadSignature(format!(
        "{header} does not match any secret of stack \"{stack}\""
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hmac256(secret: &str, body: &[u8]) -> String {
        let mut mac = <HmacSha256 as KeyInit>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(body);
        hex::encode(mac.finalize().into_bytes())
    }

    fn secrets(s: &[&str]) -> Vec<String> {
        s.iter().map(|s| s.to_string()).collect()
    }

    /// [`super::verify`] without MACs from the host.
    fn verify(
        stack: &str,
        secrets: &[String],
        provider: Provider,
        headers: &Headers,
        raw: &[u8],
        json: &[u8],
    ) -> Result<SignatureScheme, PluginError> {
        super::verify(stack, secrets, provider, headers, raw, json, &[])
    }

    fn body_mac(algorithm: MacAlgorithm, secret: &str, mac: Vec<u8>) -> BodyMac {
        BodyMac {
            algorithm,
            secret: secret.into(),
            mac,
        }
    }

    /// The host's MAC of the body is what the signature is compared with:
    /// a signature over other bytes verifies when the host says that is
    /// the body's MAC (the host is trusted with the secrets anyway), and
    /// not without it.
    #[test]
    fn a_body_mac_from_the_host_stands_for_the_computed_one() {
        let other = hmac256("k", b"other bytes");
        let sig = format!("sha256={other}");
        let h = Headers::new([("X-Hub-Signature-256", sig.as_str())]);
        let given = [body_mac(
            MacAlgorithm::HmacSha256,
            "k",
            hex::decode(&other).unwrap(),
        )];
        let k = secrets(&["k"]);
        assert_eq!(
            super::verify("web", &k, Provider::Github, &h, b"{}", b"{}", &given),
            Ok(SignatureScheme::GithubSha256)
        );
        assert!(matches!(
            verify("web", &k, Provider::Github, &h, b"{}", b"{}"),
            Err(PluginError::BadSignature(_))
        ));
    }

    fn h_json(sig: &str) -> Headers {
        Headers::new([("X-Hub-Signature-256", sig)])
    }

    /// A MAC is used only for its own secret, its own algorithm, and the
    /// bytes it covers (the body as sent): otherwise the plugin computes
    /// the MAC itself and the true signature verifies.
    #[test]
    fn a_body_mac_is_used_only_for_its_secret_algorithm_and_bytes() {
        let body = br#"{"ref":"refs/heads/main"}"#;
        let wrong = vec![0u8; 32];
        let sig = format!("sha256={}", hmac256("k", body));
        let h = Headers::new([("X-Hub-Signature-256", sig.as_str())]);
        let k = secrets(&["k"]);
        for given in [
            body_mac(MacAlgorithm::HmacSha256, "other", wrong.clone()),
            body_mac(MacAlgorithm::HmacSha1, "k", vec![0u8; 20]),
        ] {
            assert_eq!(
                super::verify("web", &k, Provider::Github, &h, body, body, &[given]),
                Ok(SignatureScheme::GithubSha256)
            );
        }
        // Gitea signs the JSON inside a form body: the raw body's MAC
        // does not cover it.
        let form = b"payload=%7B%7D";
        let h = Headers::new([("X-Gitea-Signature", hmac256("k", body))]);
        let given = [body_mac(MacAlgorithm::HmacSha256, "k", wrong)];
        assert_eq!(
            super::verify("web", &k, Provider::Gitea, &h, form, body, &given),
            Ok(SignatureScheme::GiteaSha256)
        );
        // A MAC of the wrong length is ignored, not taken for a mismatch.
        let short = [body_mac(MacAlgorithm::HmacSha256, "k", vec![0u8; 31])];
        assert_eq!(
            super::verify(
                "web",
                &k,
                Provider::Github,
                &h_json(&sig),
                body,
                body,
                &short
            ),
            Ok(SignatureScheme::GithubSha256)
        );
        // And a wrong MAC for the right secret and bytes is a bad signature.
        let h = Headers::new([("X-Hub-Signature-256", sig.as_str())]);
        assert!(matches!(
            super::verify("web", &k, Provider::Github, &h, body, body, &given),
            Err(PluginError::BadSignature(_))
        ));
    }

    /// GitHub's legacy SHA-1 header is checked with the host's HMAC-SHA1.
    #[test]
    fn a_sha1_body_mac_verifies_the_legacy_github_header() {
        let mut mac = <HmacSha1 as KeyInit>::new_from_slice(b"k").unwrap();
        mac.update(b"{}");
        let real = mac.finalize().into_bytes().to_vec();
        let sig = format!("sha1={}", hex::encode(&real));
        let h = Headers::new([("X-Hub-Signature", sig.as_str())]);
        let k = secrets(&["k"]);
        let given = [body_mac(MacAlgorithm::HmacSha1, "k", real)];
        assert_eq!(
            super::verify("web", &k, Provider::Github, &h, b"{}", b"{}", &given),
            Ok(SignatureScheme::GithubSha1)
        );
        let given = [body_mac(MacAlgorithm::HmacSha1, "k", vec![0u8; 20])];
        assert!(matches!(
            super::verify("web", &k, Provider::Github, &h, b"{}", b"{}", &given),
            Err(PluginError::BadSignature(_))
        ));
    }

    #[test]
    fn no_secrets_needs_no_signature() {
        let h = Headers::new([("X-GitHub-Event", "push")]);
        assert_eq!(
            verify("web", &[], Provider::Github, &h, b"{}", b"{}"),
            Ok(SignatureScheme::NotRequired)
        );
    }

    #[test]
    fn missing_signature_is_rejected() {
        let h = Headers::new([("X-GitHub-Event", "push")]);
        let err = verify("web", &secrets(&["s"]), Provider::Github, &h, b"{}", b"{}").unwrap_err();
        assert!(matches!(err, PluginError::MissingSignature(_)), "{err}");
    }

    #[test]
    fn rotation_accepts_any_listed_secret() {
        let sig = format!("sha256={}", hmac256("new", b"{}"));
        let h = Headers::new([("X-Hub-Signature-256", sig.as_str())]);
        assert_eq!(
            verify(
                "web",
                &secrets(&["old", "new"]),
                Provider::Github,
                &h,
                b"{}",
                b"{}"
            ),
            Ok(SignatureScheme::GithubSha256)
        );
        let err = verify(
            "web",
            &secrets(&["old"]),
            Provider::Github,
            &h,
            b"{}",
            b"{}",
        )
        .unwrap_err();
        assert!(matches!(err, PluginError::BadSignature(_)));
    }

    #[test]
    fn malformed_signatures_are_bad_not_panics() {
        for value in ["sha256=zz", "sha256=abcd", "md5=00", "", "sha256="] {
            let h = Headers::new([("X-Hub-Signature-256", value)]);
            let err =
                verify("web", &secrets(&["s"]), Provider::Github, &h, b"{}", b"{}").unwrap_err();
            assert!(
                matches!(err, PluginError::BadSignature(_)),
                "{value}: {err}"
            );
        }
    }

    #[test]
    fn gitea_signs_the_decoded_json() {
        let json = br#"{"ref":"refs/heads/main"}"#;
        let h = Headers::new([("X-Gitea-Signature", hmac256("k", json))]);
        assert_eq!(
            verify(
                "web",
                &secrets(&["k"]),
                Provider::Gitea,
                &h,
                b"payload=...",
                json
            ),
            Ok(SignatureScheme::GiteaSha256)
        );
    }

    #[test]
    fn plain_tokens_compare_whole() {
        let h = Headers::new([("X-Gitlab-Token", "secret")]);
        assert_eq!(
            verify("web", &secrets(&["secret"]), Provider::Gitlab, &h, b"", b""),
            Ok(SignatureScheme::PlainToken)
        );
        let h = Headers::new([("X-Gitlab-Token", "secre")]);
        assert!(verify("web", &secrets(&["secret"]), Provider::Gitlab, &h, b"", b"").is_err());
    }

    #[test]
    fn registries_cannot_satisfy_a_stack_with_secrets() {
        let h = Headers::new([("Content-Type", "application/json")]);
        let err = verify(
            "web",
            &secrets(&["s"]),
            Provider::DockerHub,
            &h,
            b"{}",
            b"{}",
        )
        .unwrap_err();
        assert!(matches!(err, PluginError::MissingSignature(_)));
    }
}
