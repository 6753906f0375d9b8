//! Text from outside (ref names, query values, messages quoting them) made
//! safe for one-line output: server log lines, `remote:` lines shown to a
//! pusher, deploy log headers; and journal times as RFC 3339.

/// `text` with every control character (newline, carriage return, escape,
/// NUL...) written as its Rust escape (`\n`, `\r`, `\u{1b}`), so text from a
/// sender can never start a line of its own or move the terminal's cursor:
/// a ref name `main\n... INFO deploy succeeded` cannot forge a log line.
/// Printable text, quotes included, is left as it is.
pub fn one_line(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// A journal time (milliseconds since the Unix epoch) in RFC 3339, to the
/// second and in UTC: `2026-12-01T10:23:50Z`.
pub fn rfc3339_ms(ms: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0).unsigned_abs());
    humantime::format_rfc3339_seconds(t).to_string()
}

/// A journal time (milliseconds since the Unix epoch) in RFC 3339 to the
/// millisecond, in UTC, for JSON: `2026-12-01T10:23:50.123Z`.
pub fn rfc3339_millis(ms: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0).unsigned_abs());
    humantime::format_rfc3339_millis(t).to_string()
}

#[cfg(test)]
mod tests {
    use super::one_line;

    #[test]
    fn control_characters_are_escaped_and_the_rest_kept() {
        assert_eq!(one_line("push to \"main\""), "push to \"main\"");
        assert_eq!(
            one_line("web\n2026-01-01T00:00:00Z INFO deploy succeeded\r\u{1b}[2K\u{0}"),
            "web\\n2026-01-01T00:00:00Z INFO deploy succeeded\\r\\u{1b}[2K\\u{0}"
        );
        assert_eq!(one_line("tab\there"), "tab\\there");
        assert_eq!(one_line("ünïcode ✓"), "ünïcode ✓");
    }
}
