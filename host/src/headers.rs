//! Reading `Name: value` header files (the format of the fixtures'
//! `.headers` files and of `redeploy check --headers`).

use anyhow::{bail, Context as _};
use std::path::Path;

/// Parses one `Name: value` per line; blank lines and `#` comments are skipped.
pub fn parse_headers(text: &str) -> anyhow::Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        let Some((name, value)) = line.split_once(':') else {
            bail!("line {}: expected \"Name: value\", got {:?}", i + 1, line);
        };
        let name = name.trim();
        if name.is_empty() || name.contains(char::is_whitespace) {
            bail!("line {}: {:?} is not a header name", i + 1, name);
        }
        let lower = name.to_ascii_lowercase();
        if must_not_repeat(&lower)
            && out
                .iter()
                .any(|(n, _): &(String, _)| n.eq_ignore_ascii_case(name))
        {
            bail!(
                "line {}: header {lower} appears more than once, which the server refuses (400)",
                i + 1
            );
        }
        out.push((name.to_string(), value.trim().to_string()));
    }
    Ok(out)
}

/// Whether header `name` (lower case) may appear at most once in a
/// delivery: the content type and every `X-` header (event names, delivery
/// ids, signatures and tokens are all `X-` headers), except the
/// `X-Forwarded-*` headers proxies may repeat. Two values would leave it to
/// chance which event or which signature counts, so the server refuses such
/// a request, and `redeploy check` such a headers file.
pub fn must_not_repeat(name: &str) -> bool {
    name == "content-type" || (name.starts_with("x-") && !name.starts_with("x-forwarded-"))
}

/// The largest headers file read (1 MiB): a real request's headers are a
/// few KiB (servers cap them at 8 to 64 KiB); a larger file is refused
/// whole, never read in part.
pub const MAX_HEADERS_FILE_BYTES: u64 = 1024 * 1024;

/// Reads and parses a headers file.
pub fn read_headers(path: &Path) -> anyhow::Result<Vec<(String, String)>> {
    let text = crate::bounded::read_file_to_string(path, MAX_HEADERS_FILE_BYTES)
        .with_context(|| format!("reading headers file {}", path.display()))?;
    parse_headers(&text).with_context(|| format!("headers file {}", path.display()))
}

/// How long a `Retry-After` value asks to wait from `now`: seconds, or an
/// HTTP date (a date in the past is no wait); at most `max`. `None`
/// when it is neither.
pub fn retry_after(
    value: &str,
    now: std::time::SystemTime,
    max: std::time::Duration,
) -> Option<std::time::Duration> {
    let value = value.trim();
    let wait = if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        std::time::Duration::from_secs(value.parse::<u64>().unwrap_or(u64::MAX))
    } else {
        let at = httpdate::parse_http_date(value).ok()?;
        at.duration_since(now).unwrap_or(std::time::Duration::ZERO)
    };
    Some(wait.min(max))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_headers_file_repeating_a_header_the_server_refuses_twice_is_refused() {
        let err = parse_headers("X-GitHub-Event: ping\nx-github-event: push\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "line 2: header x-github-event appears more than once, which the server refuses (400)"
        );
        assert!(parse_headers("Content-Type: a\ncontent-type: b").is_err());
        // Proxies may repeat these, and others may repeat.
        let fine = "X-Forwarded-For: 1\nX-Forwarded-For: 2\nAccept: a\nAccept: b\n";
        assert_eq!(parse_headers(fine).unwrap().len(), 4);
    }

    #[test]
    fn retry_after_is_seconds_or_an_http_date_and_bounded() {
        const HOUR: std::time::Duration = std::time::Duration::from_secs(3600);
        use std::time::Duration;
        let now = httpdate::parse_http_date("Wed, 21 Oct 2015 07:28:00 GMT").unwrap();
        assert_eq!(
            retry_after("120", now, HOUR),
            Some(Duration::from_secs(120))
        );
        assert_eq!(retry_after(" 0 ", now, HOUR), Some(Duration::ZERO));
        assert_eq!(
            retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now, HOUR),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now, HOUR),
            Some(Duration::ZERO),
            "a date past is no wait"
        );
        assert_eq!(retry_after("86400", now, HOUR), Some(HOUR));
        assert_eq!(
            retry_after("99999999999999999999999", now, HOUR),
            Some(HOUR)
        );
        for bad in ["", "-5", "1.5", "soon", "Wed, 21 Oct 2015"] {
            assert_eq!(retry_after(bad, now, HOUR), None, "{bad:?}");
        }
    }
}
