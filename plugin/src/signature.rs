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
) -> Result<bool, PluginError> {
    Ok(match proof {
        Proof::Sha256 {
            header,
            hex,
            signed,
        } => {
            let expected = decode_hex(header, hex, 32)?;
            let mut mac = <HmacSha256 as KeyInit>::new_from_slice(secret.as_bytes())
                .map_err(|_| PluginError::InvalidStack("secret cannot key hmac-sha256".into()))?;
            mac.update(match signed {
                Signed::RawBody => raw,
                Signed::DecodedJson => json,
            });
            mac.verify_slice(&expected).is_ok()
        }
        Proof::Sha1 { header, hex } => {
            let expected = decode_hex(header, hex, 20)?;
            let mut mac = <HmacSha1 as KeyInit>::new_from_slice(secret.as_bytes())
                .map_err(|_| PluginError::InvalidStack("secret cannot key hmac-sha1".into()))?;
            mac.update(raw);
            mac.verify_slice(&expected).is_ok()
        }
        Proof::Token { token, .. } => token_matches(token, secret),
    })
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
/// the decoded JSON document (they differ for form-encoded bodies).
/// A stack without secrets accepts any delivery (`NotRequired`).
pub fn verify(
    stack: &str,
    secrets: &[String],
    provider: Provider,
    headers: &Headers,
    raw: &[u8],
    json: &[u8],
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
        if proof_matches(&proof, secret, raw, json)? {
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
