//! Post-receive pushes a git server's hook forwards to a server: the one
//! definition of their body, of what their signature covers, and of how
//! the server checks them (the WIT `forwarding.forward-push` and the
//! `forwarded-post-receive` delivery).

use serde::{Deserialize, Serialize};

use crate::error::PluginError;
use crate::evaluate::RefUpdate;
use crate::model::{Headers, Stack};
use crate::outcome::SignatureScheme;
use crate::signature::{
    hmac_sha256_hex, hmac_sha256_verify, MANUAL_SIGNATURE_HEADER, MANUAL_SIGNATURE_WINDOW_MS,
    MANUAL_TIMESTAMP_HEADER,
};

/// The header carrying when the hook forwarded the push (Unix seconds).
pub const TIMESTAMP_HEADER: &str = MANUAL_TIMESTAMP_HEADER;

/// The header carrying the push's `sha256=<hex>` signature.
pub const SIGNATURE_HEADER: &str = MANUAL_SIGNATURE_HEADER;

/// How far a forwarded push's timestamp may be from the server's time,
/// either way: the hook forwards at once, so a genuine push arrives within
/// seconds; five minutes leaves room for clocks a little apart and a slow
/// network (the window Slack and Stripe give their signed webhooks) and
/// bounds how long a captured push replays.
pub const WINDOW_MS: u64 = MANUAL_SIGNATURE_WINDOW_MS;

/// A forwarded push's JSON body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForwardedPush {
    /// The repository identity (forge name or absolute path).
    pub repository: String,
    /// The `<old> <new> <ref>` updates.
    pub updates: Vec<RefUpdate>,
    /// Who pushed, when the git server says.
    pub pusher: Option<String>,
}

/// What a forwarded push's signature covers: the timestamp, `.`, the
/// stack, a newline and the body. Neither a timestamp (digits) nor a stack
/// name (`[A-Za-z0-9._-]`) holds a newline, so the parts cannot shift.
fn signed_bytes(timestamp: &str, stack: &str, body: &[u8]) -> Vec<u8> {
    let mut signed = Vec::with_capacity(timestamp.len() + stack.len() + 2 + body.len());
    signed.extend_from_slice(timestamp.as_bytes());
    signed.push(b'.');
    signed.extend_from_slice(stack.as_bytes());
    signed.push(b'\n');
    signed.extend_from_slice(body);
    signed
}

/// The headers and body a hook sends a server for `stack`'s share of a
/// push, forwarded at `timestamp` (Unix seconds), signed with `secret` when
/// the stack has one.
pub fn forward_push(
    stack: &str,
    push: &ForwardedPush,
    timestamp: u64,
    secret: Option<&str>,
) -> (Vec<(String, String)>, Vec<u8>) {
    // Serializing strings and a list of string records cannot fail.
    let body = serde_json::to_vec(push).unwrap_or_default();
    let timestamp = timestamp.to_string();
    let mut headers = vec![
        ("content-type".to_string(), "application/json".to_string()),
        (TIMESTAMP_HEADER.to_string(), timestamp.clone()),
    ];
    if let Some(secret) = secret {
        let mac = hmac_sha256_hex(secret.as_bytes(), &signed_bytes(&timestamp, stack, &body));
        headers.push((SIGNATURE_HEADER.to_string(), format!("sha256={mac}")));
    }
    (headers, body)
}

/// Checks a forwarded push for every stack: a stack with secrets needs the
/// timestamp and a signature by one of them over (timestamp, its name,
/// body); a timestamp, signed or not, must be within [`WINDOW_MS`] of
/// `now_ms`. The signature is checked first, so the answer tells nothing
/// about the time to someone without the secret.
pub fn authorize(
    stacks: &[Stack],
    headers: &Headers,
    body: &[u8],
    now_ms: Option<u64>,
) -> Result<SignatureScheme, PluginError> {
    let timestamp = headers.get(TIMESTAMP_HEADER);
    let mut scheme = SignatureScheme::NotRequired;
    for stack in stacks.iter().filter(|s| !s.secrets.is_empty()) {
        let Some(presented) = headers.get(SIGNATURE_HEADER) else {
            return Err(PluginError::MissingSignature(format!(
                "this stack has secrets: a forwarded post-receive push must carry {SIGNATURE_HEADER}"
            )));
        };
        let Some(timestamp) = timestamp else {
            return Err(PluginError::BadSignature(format!(
                "{TIMESTAMP_HEADER} is missing: the signature covers the time the push was forwarded"
            )));
        };
        let signed = signed_bytes(timestamp, &stack.name, body);
        let valid = presented.strip_prefix("sha256=").is_some_and(|hex| {
            stack
                .secrets
                .iter()
                .any(|secret| hmac_sha256_verify(secret.as_bytes(), &signed, hex))
        });
        if !valid {
            return Err(PluginError::BadSignature(format!(
                "{SIGNATURE_HEADER} does not match the timestamp, stack and body with any of the stack's secrets"
            )));
        }
        scheme = SignatureScheme::RedeploySha256;
    }
    if let Some(timestamp) = timestamp {
        let fresh = match (timestamp.parse::<u64>(), now_ms) {
            (Ok(seconds), Some(now)) => seconds.saturating_mul(1000).abs_diff(now) <= WINDOW_MS,
            _ => false,
        };
        if !fresh {
            return Err(PluginError::StaleSignature(format!(
                "{TIMESTAMP_HEADER} is not within {} min of the server's clock: a replayed or delayed push",
                WINDOW_MS / 60_000
            )));
        }
    }
    Ok(scheme)
}

/// The forwarded push in `body`.
pub fn parse(body: &[u8]) -> Result<ForwardedPush, PluginError> {
    serde_json::from_slice(body)
        .map_err(|e| PluginError::MalformedPayload(format!("post-receive body: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stack(name: &str, secrets: &[&str]) -> Stack {
        Stack {
            name: name.into(),
            secrets: secrets.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    fn push() -> ForwardedPush {
        ForwardedPush {
            repository: "/srv/git/web.git".into(),
            updates: vec![RefUpdate {
                old: "1".repeat(40),
                new: "2".repeat(40),
                name: "refs/heads/main".into(),
            }],
            pusher: Some("alice".into()),
        }
    }

    /// The time the pushes are checked at, and a timestamp a minute before.
    const NOW_MS: u64 = 1_700_000_000_000;
    const AT: u64 = 1_699_999_940;

    #[test]
    fn a_signed_forward_verifies_for_its_stack_only_and_within_the_window() {
        let (headers, body) = forward_push("web", &push(), AT, Some("s3cret"));
        let headers = Headers::new(headers);
        assert_eq!(parse(&body).unwrap(), push());
        let web = [stack("web", &["old", "s3cret"])];
        assert_eq!(
            authorize(&web, &headers, &body, Some(NOW_MS)),
            Ok(SignatureScheme::RedeploySha256)
        );
        // Another stack sharing the secret, another body, another secret.
        let api = [stack("api", &["s3cret"])];
        assert!(matches!(
            authorize(&api, &headers, &body, Some(NOW_MS)),
            Err(PluginError::BadSignature(_))
        ));
        let mut tampered = body.clone();
        tampered.extend_from_slice(b" ");
        assert!(matches!(
            authorize(&web, &headers, &tampered, Some(NOW_MS)),
            Err(PluginError::BadSignature(_))
        ));
        let other = [stack("web", &["other"])];
        assert!(matches!(
            authorize(&other, &headers, &body, Some(NOW_MS)),
            Err(PluginError::BadSignature(_))
        ));
        // Six minutes later, or without a clock: stale.
        for now in [Some(NOW_MS + 6 * 60_000), None] {
            assert!(matches!(
                authorize(&web, &headers, &body, now),
                Err(PluginError::StaleSignature(_))
            ));
        }
    }

    #[test]
    fn an_unsigned_forward_passes_only_stacks_without_secrets_and_still_must_be_fresh() {
        let (headers, body) = forward_push("web", &push(), AT, None);
        let headers = Headers::new(headers);
        let open = [stack("web", &[])];
        assert_eq!(
            authorize(&open, &headers, &body, Some(NOW_MS)),
            Ok(SignatureScheme::NotRequired)
        );
        assert!(matches!(
            authorize(&[stack("web", &["s3cret"])], &headers, &body, Some(NOW_MS)),
            Err(PluginError::MissingSignature(_))
        ));
        assert!(matches!(
            authorize(&open, &headers, &body, Some(NOW_MS - 10 * 60_000)),
            Err(PluginError::StaleSignature(_))
        ));
        assert!(matches!(
            parse(br#"{"repository":"x","updates":[],"pusher":null,"extra":1}"#),
            Err(PluginError::MalformedPayload(_))
        ));
    }
}
