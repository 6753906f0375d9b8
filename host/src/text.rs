//! Text from outside (ref names, query values, messages quoting them) made
//! safe for one-line output: server log lines, `remote:` lines shown to a
//! pusher, deploy log headers; and journal times as RFC 3339.

/// Whether `c` changes the order in which the text around it is shown:
/// Unicode's bidirectional embeddings, overrides and isolates (U+202A to
/// U+202E, U+2066 to U+2069). A ref name holding U+202E can be shown as
/// another name. The direction marks (U+200E, U+200F, U+061C), which
/// right-to-left text uses and which move no strong character, are kept.
pub fn is_reordering(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Whether `c` is a format character shown as nothing at all: the soft
/// hyphen, the Mongolian vowel separator, the zero-width space, the word
/// joiner and the invisible operators (U+2060 to U+2064), and the
/// zero-width no-break space (U+FEFF). A branch `main\u{200B}` would be
/// shown as `main`, and a skip saying it does not match `main` would read as
/// a lie. The zero-width joiner and non-joiner (U+200C, U+200D), which
/// Persian, Indic scripts and emoji sequences need, are kept.
pub fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}' | '\u{180E}' | '\u{200B}' | '\u{2060}'..='\u{2064}' | '\u{FEFF}'
    )
}

/// Whether `c` is shown other than as itself: [`is_reordering`] or
/// [`is_invisible`].
pub fn is_deceptive(c: char) -> bool {
    is_reordering(c) || is_invisible(c)
}

/// `text` with every control character (newline, carriage return, escape,
/// NUL...), every reordering character ([`is_reordering`]) and every
/// invisible one ([`is_invisible`]) written as its Rust escape (`\n`, `\r`,
/// `\u{1b}`, `\u{202e}`, `\u{200b}`), so text from a sender can never
/// start a line of its own, move the terminal's cursor, show itself in
/// another order or hide part of itself: a ref name
/// `main\n... INFO deploy succeeded` cannot forge a log line. Printable
/// text, quotes included, is left as it is.
pub fn one_line(text: &str) -> std::borrow::Cow<'_, str> {
    escape(text, |c| c.is_control() || is_deceptive(c))
}

/// `text` with every reordering ([`is_reordering`]) and invisible
/// ([`is_invisible`]) character written as its Rust escape, and nothing
/// else changed: for a whole page, whose own line breaks stay.
pub fn without_reordering(text: &str) -> std::borrow::Cow<'_, str> {
    escape(text, is_deceptive)
}

fn escape(text: &str, unsafe_char: impl Fn(char) -> bool) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(&unsafe_char) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if unsafe_char(c) {
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
    use super::{one_line, without_reordering};

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

    #[test]
    fn reordering_characters_are_escaped_and_line_breaks_kept_on_a_page() {
        let name = "refs/heads/main\u{202E}nimda\u{2066}x\u{2069}";
        let shown = "refs/heads/main\\u{202e}nimda\\u{2066}x\\u{2069}";
        assert_eq!(one_line(name), shown);
        assert_eq!(
            without_reordering(&format!("<td>\n{name}</td>\n")),
            format!("<td>\n{shown}</td>\n")
        );
        assert_eq!(without_reordering("עברית\u{200F} ✓\n"), "עברית\u{200F} ✓\n");
    }

    #[test]
    fn invisible_characters_are_escaped_and_joiners_kept() {
        let name = "refs/heads/main\u{200B}\u{FEFF}\u{2060}\u{AD}";
        let shown = "refs/heads/main\\u{200b}\\u{feff}\\u{2060}\\u{ad}";
        assert_eq!(one_line(name), shown);
        assert_eq!(without_reordering(name), shown);
        // Persian's non-joiner and an emoji's joiner are text.
        for kept in ["می\u{200C}خواهم", "👩\u{200D}💻"] {
            assert_eq!(one_line(kept), kept);
        }
    }
}
