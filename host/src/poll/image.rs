//! The pure core of registry polling: reading a registry's answers.
//! `WWW-Authenticate` challenges, `Docker-Content-Digest`, `Retry-After`
//! and the token server's JSON. No I/O and no clock: the caller passes
//! the time in.
//!
//! Sources: the Docker token authentication specification
//! (<https://distribution.github.io/distribution/spec/auth/token/>), the
//! challenge grammar of RFC 9110 §11 (`auth-scheme [ 1*SP ( token68 /
//! #auth-param ) ]`, parameters as `token` or `quoted-string`), and
//! `Retry-After` (RFC 9110 §10.2.3: seconds or an HTTP date).

use std::time::Duration;

/// The most characters of a `WWW-Authenticate` header read: a real one is
/// a few hundred; more is refused rather than parsed.
pub const MAX_CHALLENGE_CHARS: usize = 8 * 1024;

/// The longest wait a `Retry-After` can ask for: a registry asking for
/// more is asked again after this (a misconfigured one must not stop
/// polling for days).
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(60 * 60);

/// How long a token lives when the token server does not say: the token
/// specification's default.
pub const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(60);

/// How long before its end a token is no longer used: time for a look
/// (and the clocks of two machines) to finish within it.
pub const TOKEN_EXPIRY_MARGIN: Duration = Duration::from_secs(30);

/// The longest a token is kept, whatever the server says: a day.
pub const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(24 * 60 * 60);

/// One challenge of a `WWW-Authenticate` header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Challenge {
    /// The scheme, lower case (`bearer`, `basic`).
    pub scheme: String,
    /// Its parameters, names lower case, values unquoted, in order.
    pub params: Vec<(String, String)>,
}

impl Challenge {
    /// The value of parameter `name` (lower case), if given.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Whether `c` may appear in an HTTP `token` (RFC 9110 §5.6.2).
fn is_tchar(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c)
}

/// A cursor over a header value.
struct Cursor<'a> {
    text: &'a [u8],
    at: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.text.get(self.at).copied()
    }

    fn skip_spaces(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.at += 1;
        }
    }

    fn token(&mut self) -> &str {
        let start = self.at;
        while self.peek().is_some_and(is_tchar) {
            self.at += 1;
        }
        // tchars are ASCII.
        std::str::from_utf8(&self.text[start..self.at]).unwrap_or("")
    }

    /// A `token68` (`[A-Za-z0-9-._~+/]+ *"="`) standing alone up to the
    /// next comma or the end, consumed; `None` (nothing consumed) when what
    /// follows is not one, such as a parameter `name=value`.
    fn token68(&mut self) -> Option<String> {
        let start = self.at;
        let mut end = start;
        while self
            .text
            .get(end)
            .is_some_and(|c| c.is_ascii_alphanumeric() || b"-._~+/".contains(c))
        {
            end += 1;
        }
        if end == start {
            return None;
        }
        while self.text.get(end) == Some(&b'=') {
            end += 1;
        }
        let mut after = end;
        while matches!(self.text.get(after), Some(b' ' | b'\t')) {
            after += 1;
        }
        if !matches!(self.text.get(after), None | Some(b',')) {
            return None;
        }
        self.at = after;
        std::str::from_utf8(&self.text[start..end])
            .ok()
            .map(str::to_owned)
    }

    /// A `quoted-string` after its opening quote, with `\` escapes undone.
    fn quoted(&mut self) -> Result<String, String> {
        let mut value = Vec::new();
        loop {
            match self.peek() {
                None => return Err("a quoted string is not closed".into()),
                Some(b'"') => {
                    self.at += 1;
                    return String::from_utf8(value)
                        .map_err(|_| "a quoted string is not UTF-8".to_owned());
                }
                Some(b'\\') => {
                    self.at += 1;
                    let Some(c) = self.peek() else {
                        return Err("a quoted string ends in an escape".into());
                    };
                    value.push(c);
                    self.at += 1;
                }
                Some(c) => {
                    value.push(c);
                    self.at += 1;
                }
            }
        }
    }
}

/// The challenges of a `WWW-Authenticate` header value, in order:
/// `Bearer realm="https://auth.docker.io/token",service="registry.docker.io"`,
/// several comma-separated challenges, quoted values holding commas, any
/// letter case in scheme and parameter names, a `token68` (kept as the
/// parameter `""`). Anything else is refused with why.
pub fn parse_challenges(header: &str) -> Result<Vec<Challenge>, String> {
    if header.len() > MAX_CHALLENGE_CHARS {
        return Err(format!(
            "the WWW-Authenticate header is over {MAX_CHALLENGE_CHARS} characters"
        ));
    }
    let mut c = Cursor {
        text: header.as_bytes(),
        at: 0,
    };
    let mut challenges: Vec<Challenge> = Vec::new();
    loop {
        while matches!(c.peek(), Some(b' ' | b'\t' | b',')) {
            c.at += 1;
        }
        if c.peek().is_none() {
            break;
        }
        let scheme = c.token().to_ascii_lowercase();
        if scheme.is_empty() {
            return Err(format!(
                "the WWW-Authenticate header has no scheme at character {}",
                c.at + 1
            ));
        }
        let mut challenge = Challenge {
            scheme,
            params: Vec::new(),
        };
        let spaced = matches!(c.peek(), Some(b' ' | b'\t'));
        c.skip_spaces();
        if spaced {
            if let Some(token68) = c.token68() {
                challenge.params.push((String::new(), token68));
            }
        }
        // Parameters, until a new challenge's scheme or the end.
        loop {
            let start = c.at;
            while matches!(c.peek(), Some(b' ' | b'\t' | b',')) {
                c.at += 1;
            }
            if c.peek().is_none() {
                break;
            }
            let name = c.token().to_ascii_lowercase();
            if name.is_empty() {
                return Err(format!(
                    "the WWW-Authenticate header has an unexpected character at {}",
                    c.at + 1
                ));
            }
            c.skip_spaces();
            if c.peek() != Some(b'=') {
                c.at = start;
                break;
            }
            c.at += 1;
            c.skip_spaces();
            let value = if c.peek() == Some(b'"') {
                c.at += 1;
                c.quoted()?
            } else {
                c.token().to_owned()
            };
            if value.is_empty() {
                return Err(format!(
                    "the WWW-Authenticate parameter {name} has no value"
                ));
            }
            challenge.params.push((name, value));
            c.skip_spaces();
            if !matches!(c.peek(), None | Some(b',')) {
                return Err(format!(
                    "the WWW-Authenticate header has text after a parameter at character {}",
                    c.at + 1
                ));
            }
        }
        challenges.push(challenge);
    }
    if challenges.is_empty() {
        return Err("the WWW-Authenticate header is empty".into());
    }
    Ok(challenges)
}

/// Whether `digest` is a manifest digest polling accepts: `sha256:` and 64
/// lowercase hex digits.
pub fn is_sha256_digest(digest: &str) -> bool {
    digest.strip_prefix("sha256:").is_some_and(|hex| {
        hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    })
}

/// `sha256:` and the hex SHA-256 of `bytes`: the digest of a manifest
/// read whole.
pub fn sha256_digest(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}

/// A token server's answer, read.
#[derive(Clone, PartialEq, Eq)]
pub struct IssuedToken {
    /// The bearer token (`token`, or `access_token`).
    pub token: String,
    /// How long it may be used from now: `expires_in` (default 60 s),
    /// less [`TOKEN_EXPIRY_MARGIN`], at most [`MAX_TOKEN_LIFETIME`].
    pub usable_for: Duration,
}

impl std::fmt::Debug for IssuedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedToken")
            .field("token", &"(redacted)")
            .field("usable_for", &self.usable_for)
            .finish()
    }
}

/// The most bytes a token that goes into a header may have.
pub const MAX_TOKEN_CHARS: usize = 16 * 1024;

/// Reads a token server's JSON answer (`{"token": ..., "expires_in": ...}`,
/// or `access_token`, per the token specification). The error never
/// quotes the body (it may hold a token).
pub fn read_token_answer(body: &[u8]) -> Result<IssuedToken, String> {
    #[derive(serde::Deserialize)]
    struct Answer {
        token: Option<String>,
        access_token: Option<String>,
        expires_in: Option<serde_json::Value>,
    }
    let answer: Answer = serde_json::from_slice(body)
        .map_err(|_| "the token server's answer is not a JSON object".to_owned())?;
    let token = answer
        .token
        .filter(|t| !t.is_empty())
        .or(answer.access_token.filter(|t| !t.is_empty()))
        .ok_or("the token server's answer has no token")?;
    // What goes into a header: visible ASCII, bounded.
    if token.len() > MAX_TOKEN_CHARS || !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("the token server's token is not a header value".into());
    }
    let lifetime = match answer.expires_in {
        None | Some(serde_json::Value::Null) => DEFAULT_TOKEN_LIFETIME,
        Some(v) => v
            .as_u64()
            .map(Duration::from_secs)
            .ok_or("the token server's expires_in is not a number of seconds")?,
    };
    Ok(IssuedToken {
        token,
        usable_for: lifetime
            .min(MAX_TOKEN_LIFETIME)
            .saturating_sub(TOKEN_EXPIRY_MARGIN),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn challenge(scheme: &str, params: &[(&str, &str)]) -> Challenge {
        Challenge {
            scheme: scheme.into(),
            params: params
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn challenges_are_read_as_registries_send_them() {
        // Docker Hub's, as the token specification shows it.
        assert_eq!(
            parse_challenges(
                r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:samalba/my-app:pull,push""#
            )
            .unwrap(),
            [challenge(
                "bearer",
                &[
                    ("realm", "https://auth.docker.io/token"),
                    ("service", "registry.docker.io"),
                    ("scope", "repository:samalba/my-app:pull,push"),
                ]
            )]
        );
        // Any letter case, spaces around `=` and `,`, escapes, token values.
        assert_eq!(
            parse_challenges(r#"BEARER Realm = "https://r.example/t\"x" , Service=reg.example"#)
                .unwrap(),
            [challenge(
                "bearer",
                &[
                    ("realm", "https://r.example/t\"x"),
                    ("service", "reg.example")
                ]
            )]
        );
        // Several challenges in one header.
        assert_eq!(
            parse_challenges(r#"Basic realm="Registry Realm", Bearer realm="https://a/t",scope="repository:a/b:pull""#)
                .unwrap(),
            [
                challenge("basic", &[("realm", "Registry Realm")]),
                challenge("bearer", &[("realm", "https://a/t"), ("scope", "repository:a/b:pull")]),
            ]
        );
        // A bare scheme, and token68 forms.
        assert_eq!(
            parse_challenges("Basic").unwrap(),
            [challenge("basic", &[])]
        );
        assert_eq!(
            parse_challenges("Negotiate abc, Basic realm=x").unwrap(),
            [
                challenge("negotiate", &[("", "abc")]),
                challenge("basic", &[("realm", "x")]),
            ]
        );
        assert_eq!(
            parse_challenges("Negotiate dXNlcg==").unwrap(),
            [challenge("negotiate", &[("", "dXNlcg==")])]
        );
    }

    #[test]
    fn malformed_challenges_are_refused() {
        for bad in [
            "",
            "   ,  ",
            r#"Bearer realm="https://a/t"#,
            r#"Bearer realm="x" junk"#,
            "=x",
            r#"Bearer realm="a\"#,
        ] {
            assert!(parse_challenges(bad).is_err(), "{bad:?}");
        }
        assert!(parse_challenges(&"a".repeat(MAX_CHALLENGE_CHARS + 1)).is_err());
    }

    #[test]
    fn only_sha256_digests_of_64_lowercase_hex_digits_are_taken() {
        let hex = "0123456789abcdef".repeat(4);
        assert!(is_sha256_digest(&format!("sha256:{hex}")));
        for bad in [
            hex.clone(),
            format!("sha256:{}", hex.to_uppercase()),
            format!("sha256:{}", &hex[1..]),
            format!("sha256:{hex}0"),
            format!("sha512:{hex}{hex}"),
            format!("sha256:{}g", &hex[1..]),
            format!(" sha256:{hex}"),
        ] {
            assert!(!is_sha256_digest(&bad), "{bad}");
        }
        assert_eq!(
            sha256_digest(b""),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn token_answers_follow_the_token_specification() {
        let t = read_token_answer(br#"{"token":"abc","expires_in":300}"#).unwrap();
        assert_eq!(t.token, "abc");
        assert_eq!(t.usable_for, Duration::from_secs(300) - TOKEN_EXPIRY_MARGIN);
        let t = read_token_answer(br#"{"access_token":"xyz"}"#).unwrap();
        assert_eq!(t.token, "xyz");
        assert_eq!(t.usable_for, DEFAULT_TOKEN_LIFETIME - TOKEN_EXPIRY_MARGIN);
        let t = read_token_answer(br#"{"token":"a","access_token":"b","expires_in":999999999}"#)
            .unwrap();
        assert_eq!(t.token, "a");
        assert_eq!(t.usable_for, MAX_TOKEN_LIFETIME - TOKEN_EXPIRY_MARGIN);
        for bad in [
            &br#"{}"#[..],
            br#"{"token":""}"#,
            br#"{"token":"a b"}"#,
            br#"{"token":"a","expires_in":"soon"}"#,
            br#"not json s3cret"#,
        ] {
            let refused = read_token_answer(bad).unwrap_err();
            assert!(!refused.contains("s3cret"), "{refused}");
        }
        let t = read_token_answer(br#"{"token":"s3cret-bearer"}"#).unwrap();
        assert!(!format!("{t:?}").contains("s3cret"));
    }
}
