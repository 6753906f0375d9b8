//! What a notification says, in each channel's form: a chat line in Slack
//! mrkdwn ([`chat_body`]), the signed webhook's JSON document
//! ([`webhook_body`], schema [`WEBHOOK_SCHEMA`], described by
//! `docs/notification-webhook.v1.schema.json`), and an email's subject and
//! plain text ([`email_subject`], [`email_text`]).
//!
//! Pure: no I/O and no clock. Much of what a notification quotes comes
//! from a sender (a push's ref and pusher, the deploy's reason): the chat
//! and email forms make it one line, cut it to a display limit and, for
//! chat, escape it so it can form no link, image, code span or mention.
//! The webhook carries it whole, as JSON strings.

use std::time::Duration;

use serde_json::{json, Value};

use crate::config::NoticeEvent;

/// The webhook document's schema name and version, its `schema` field.
/// Any change to the fields (added, removed, retyped) is a new version:
/// the schema forbids other fields, so receivers may validate strictly.
pub const WEBHOOK_SCHEMA: &str = "redeploy.notification/v1";

/// The most characters of a detail or reason a chat message or email
/// shows: a display limit (a deploy command's last words, not its log; the
/// log link has the rest). The webhook carries the whole text.
pub const MAX_DISPLAY_DETAIL_CHARS: usize = 300;

/// The most characters of a name (ref, pusher, stack, profile, service
/// list) a chat message or email shows: a display limit, as a sender
/// chooses ref and pusher names. The webhook carries the whole text.
pub const MAX_DISPLAY_NAME_CHARS: usize = 100;

/// The most characters of an image reference a chat message or email
/// shows: room for a registry, a repository and a digest.
pub const MAX_DISPLAY_IMAGE_CHARS: usize = 200;

/// How many hex digits of a commit a chat message shows (as GitHub and
/// GitLab abbreviate them).
pub const SHORT_SHA_CHARS: usize = 12;

/// What one notification tells (built by the worker from the journal).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// The notification's id in the journal (the webhook's `id`): unique
    /// in one journal only.
    pub id: i64,
    /// The notification's delivery id, unique across journals and stable
    /// across retries: `{source}-{id}` where `source` is a random name the
    /// journal keeps (the worker fills it in); `test-{random}` for a test
    /// message. The webhook's `delivery` and `X-Redeploy-Delivery`, and
    /// part of the email's `Message-ID`: what receivers dedupe on.
    pub delivery: String,
    /// What happened; `None`: a test message from `redeploy notify test`.
    pub event: Option<NoticeEvent>,
    /// The stack it is about (empty for a test message about no stack).
    pub stack: String,
    /// When it happened (ms since the Unix epoch).
    pub at_ms: i64,
    /// The transition's reason (e.g. "exit code 1", "timed out after
    /// 10m", "superseded by deploy 7") or, for `refused`, what was refused.
    pub detail: Option<String>,
    /// The deploy it is about, for every event but `refused` and tests.
    pub deploy: Option<DeployFacts>,
    /// For `refused`: how many deliveries were refused in the window, and
    /// the window.
    pub refused: Option<RefusedFacts>,
}

/// The deploy a notification is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeployFacts {
    /// Its id in the journal.
    pub id: i64,
    /// Who asked for it: "github", "gitlab", "manual", "poll",
    /// "dockerhub"...
    pub provider: String,
    /// The ref pushed, e.g. "refs/heads/main".
    pub git_ref: Option<String>,
    /// The commit deployed.
    pub sha: Option<String>,
    /// The image reference pushed, for registry pushes.
    pub image: Option<String>,
    /// Who pushed (or triggered).
    pub pusher: Option<String>,
    /// The services deployed; empty: all of them.
    pub services: Vec<String>,
    /// The compose profile, if any.
    pub profile: Option<String>,
    /// Why it deployed.
    pub reason: String,
    /// When it was queued (ms since the Unix epoch).
    pub queued_at_ms: i64,
    /// When it started, if it did.
    pub started_at_ms: Option<i64>,
    /// When it finished, if it did.
    pub finished_at_ms: Option<i64>,
    /// Its command's exit code, if it exited.
    pub exit_code: Option<i32>,
    /// A link to the commit on its forge, when known.
    pub commit_url: Option<String>,
    /// The dashboard's deploy page, else the signed log link, else `None`.
    pub log_url: Option<String>,
}

impl DeployFacts {
    /// How long it ran: finished − started, when both are known.
    pub fn duration_ms(&self) -> Option<i64> {
        Some((self.finished_at_ms? - self.started_at_ms?).max(0))
    }
}

/// How many deliveries a stack's hook URL refused, and in what window.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefusedFacts {
    /// How many deliveries were refused.
    pub count: u64,
    /// The window they were counted in.
    pub window: Duration,
}

/// The Slack incoming-webhook body (`{"text": ...}`, Slack mrkdwn, which
/// Mattermost, Rocket.Chat and Discord's `/slack` endpoint also read): the
/// stack and what happened on the first line, then the commit, ref,
/// pusher, duration and a link to the log.
pub fn chat_body(m: &Message) -> Value {
    json!({ "text": chat_text(m) })
}

/// The text of [`chat_body`].
fn chat_text(m: &Message) -> String {
    let mut first = String::new();
    if !m.stack.is_empty() {
        first.push_str(&format!("*{}*: ", chat(&m.stack, MAX_DISPLAY_NAME_CHARS)));
    }
    first.push_str(&chat_escape(&state(m)));
    let said = m
        .detail
        .as_deref()
        .or(m.deploy.as_ref().map(|d| d.reason.as_str()))
        .filter(|s| !s.trim().is_empty());
    if let Some(said) = said {
        first.push_str(": ");
        first.push_str(&chat(said, MAX_DISPLAY_DETAIL_CHARS));
    }
    let Some(d) = &m.deploy else {
        return first;
    };
    let mut what = Vec::new();
    if let Some(sha) = d.sha.as_deref().filter(|s| !s.is_empty()) {
        let short: String = clean(sha).chars().take(SHORT_SHA_CHARS).collect();
        what.push(chat_link(d.commit_url.as_deref(), &chat_escape(&short)));
    } else if let Some(image) = &d.image {
        what.push(format!("image {}", chat(image, MAX_DISPLAY_IMAGE_CHARS)));
    }
    if let Some(r) = &d.git_ref {
        what.push(match ref_name(r) {
            RefName::Branch(b) => format!("on {}", chat(b, MAX_DISPLAY_NAME_CHARS)),
            RefName::Tag(t) => format!("on tag {}", chat(t, MAX_DISPLAY_NAME_CHARS)),
            RefName::Other(o) => format!("on {}", chat(o, MAX_DISPLAY_NAME_CHARS)),
        });
    }
    if let Some(p) = d.pusher.as_deref().filter(|p| !p.is_empty()) {
        what.push(format!("by {}", chat(p, MAX_DISPLAY_NAME_CHARS)));
    }
    let mut second = Vec::new();
    if !what.is_empty() {
        second.push(what.join(" "));
    }
    if let Some(ms) = d.duration_ms() {
        second.push(format!("after {}", human_ms(ms)));
    }
    if let Some(url) = d.log_url.as_deref() {
        second.push(chat_link(Some(url), "log"));
    }
    if second.is_empty() {
        first
    } else {
        format!("{first}\n{}", second.join(" · "))
    }
}

/// What happened, in words: "deploy failed", "3 deliveries refused on the
/// hook URL in the last 10m (bad signature or token)", "test message from
/// redeploy".
pub fn state(m: &Message) -> String {
    let Some(event) = m.event else {
        return "test message from redeploy".into();
    };
    let words = match event {
        NoticeEvent::Queued => "deploy queued",
        NoticeEvent::Started => "deploy started",
        NoticeEvent::Succeeded => "deploy succeeded",
        NoticeEvent::Failed => "deploy failed",
        NoticeEvent::Cancelled => "deploy cancelled",
        NoticeEvent::Interrupted => "deploy interrupted",
        NoticeEvent::TimedOut => "deploy timed out",
        NoticeEvent::Refused => {
            return match &m.refused {
                Some(r) if window_secs(r.window) > 0 => format!(
                    "{} refused on the hook URL in the last {} (bad signature or token)",
                    deliveries(r.count),
                    humantime::format_duration(Duration::from_secs(window_secs(r.window)))
                ),
                Some(r) => format!(
                    "{} refused on the hook URL (bad signature or token)",
                    deliveries(r.count)
                ),
                None => "deliveries refused on the hook URL (bad signature or token)".into(),
            };
        }
    };
    words.into()
}

/// A refusal window in whole seconds, rounded (a window cut short at a
/// stop is not a whole number of them); 0 for the first refusal, told of
/// at once.
fn window_secs(window: Duration) -> u64 {
    let millis = u64::try_from(window.as_millis()).unwrap_or(u64::MAX);
    millis.saturating_add(500) / 1000
}

/// "1 delivery", "3 deliveries".
fn deliveries(count: u64) -> String {
    if count == 1 {
        "1 delivery".into()
    } else {
        format!("{count} deliveries")
    }
}

/// The webhook's `event`: the event's name, or `test`.
pub fn event_name(m: &Message) -> &'static str {
    m.event.map_or("test", NoticeEvent::as_str)
}

/// The signed webhook's body: a JSON document of schema
/// [`WEBHOOK_SCHEMA`] (`docs/notification-webhook.v1.schema.json`). Every
/// field is always present (`null` when unknown); text is carried whole.
pub fn webhook_body(m: &Message) -> Vec<u8> {
    let deploy = m.deploy.as_ref().map(|d| {
        let (branch, tag) = match d.git_ref.as_deref().map(ref_name) {
            Some(RefName::Branch(b)) => (Some(b), None),
            Some(RefName::Tag(t)) => (None, Some(t)),
            _ => (None, None),
        };
        json!({
            "id": d.id,
            "provider": d.provider,
            "ref": d.git_ref,
            "branch": branch,
            "tag": tag,
            "sha": d.sha,
            "image": d.image,
            "pusher": d.pusher,
            "services": d.services,
            "profile": d.profile,
            "reason": d.reason,
            "queued_at_ms": d.queued_at_ms,
            "started_at_ms": d.started_at_ms,
            "finished_at_ms": d.finished_at_ms,
            "duration_ms": d.duration_ms(),
            "exit_code": d.exit_code,
            "commit_url": d.commit_url,
            "log_url": d.log_url,
        })
    });
    let refused = m.refused.as_ref().map(|r| {
        json!({
            "count": r.count,
            "window_seconds": window_secs(r.window),
        })
    });
    let body = json!({
        "schema": WEBHOOK_SCHEMA,
        "id": m.id,
        "delivery": m.delivery,
        "event": event_name(m),
        "test": m.event.is_none(),
        "stack": m.stack,
        "at_ms": m.at_ms,
        "at": crate::text::rfc3339_millis(m.at_ms),
        "detail": m.detail,
        "deploy": deploy,
        "refused": refused,
    });
    body.to_string().into_bytes()
}

/// An email's subject: `[redeploy] web: deploy failed`, one line.
pub fn email_subject(m: &Message) -> String {
    let what = match (m.event, &m.refused) {
        (Some(NoticeEvent::Refused), Some(r)) => {
            format!("{} refused on the hook URL", deliveries(r.count))
        }
        (Some(NoticeEvent::Refused), None) => "deliveries refused on the hook URL".into(),
        _ => state(m),
    };
    if m.stack.is_empty() {
        format!("[redeploy] {what}")
    } else {
        format!(
            "[redeploy] {}: {what}",
            display(&m.stack, MAX_DISPLAY_NAME_CHARS)
        )
    }
}

/// An email's plain text: one fact per line (`Label: value`), each value
/// one line and cut to its display limit, links whole.
pub fn email_text(m: &Message) -> String {
    let mut lines: Vec<(&str, String)> = Vec::new();
    if !m.stack.is_empty() {
        lines.push(("Stack", display(&m.stack, MAX_DISPLAY_NAME_CHARS)));
    }
    lines.push(("State", state(m)));
    lines.push(("At", crate::text::rfc3339_ms(m.at_ms)));
    if let Some(detail) = m.detail.as_deref().filter(|s| !s.is_empty()) {
        lines.push(("Detail", display(detail, MAX_DISPLAY_DETAIL_CHARS)));
    }
    if let Some(r) = &m.refused {
        lines.push(("Refused", r.count.to_string()));
        if window_secs(r.window) > 0 {
            let window = Duration::from_secs(window_secs(r.window));
            lines.push(("Window", humantime::format_duration(window).to_string()));
        }
    }
    if let Some(d) = &m.deploy {
        lines.push((
            "Deploy",
            format!(
                "{} ({})",
                d.id,
                display(&d.provider, MAX_DISPLAY_NAME_CHARS)
            ),
        ));
        if let Some(sha) = d.sha.as_deref().filter(|s| !s.is_empty()) {
            let mut commit = display(sha, MAX_DISPLAY_NAME_CHARS);
            if let Some(url) = &d.commit_url {
                commit.push_str(&format!(" <{}>", clean(url)));
            }
            lines.push(("Commit", commit));
        }
        if let Some(image) = &d.image {
            lines.push(("Image", display(image, MAX_DISPLAY_IMAGE_CHARS)));
        }
        if let Some(r) = &d.git_ref {
            lines.push(("Ref", display(r, MAX_DISPLAY_NAME_CHARS)));
        }
        if let Some(p) = &d.pusher {
            lines.push(("Pushed by", display(p, MAX_DISPLAY_NAME_CHARS)));
        }
        let services = if d.services.is_empty() {
            "all".to_string()
        } else {
            display(&d.services.join(", "), MAX_DISPLAY_DETAIL_CHARS)
        };
        lines.push(("Services", services));
        if let Some(p) = &d.profile {
            lines.push(("Profile", display(p, MAX_DISPLAY_NAME_CHARS)));
        }
        if !d.reason.is_empty() {
            lines.push(("Reason", display(&d.reason, MAX_DISPLAY_DETAIL_CHARS)));
        }
        lines.push(("Queued", crate::text::rfc3339_ms(d.queued_at_ms)));
        if let Some(ms) = d.started_at_ms {
            lines.push(("Started", crate::text::rfc3339_ms(ms)));
        }
        if let Some(ms) = d.finished_at_ms {
            lines.push(("Finished", crate::text::rfc3339_ms(ms)));
        }
        if let Some(ms) = d.duration_ms() {
            lines.push(("Duration", human_ms(ms)));
        }
        if let Some(code) = d.exit_code {
            lines.push(("Exit code", code.to_string()));
        }
        if let Some(url) = &d.log_url {
            lines.push(("Log", clean(url)));
        }
    }
    let mut text = String::new();
    for (label, value) in lines {
        text.push_str(label);
        text.push_str(": ");
        text.push_str(&value);
        text.push('\n');
    }
    text.push_str(&format!(
        "\n-- \nSent by redeploy (notification {}).\n",
        m.id
    ));
    text
}

/// A ref's kind and short name.
#[derive(Debug, PartialEq, Eq)]
enum RefName<'a> {
    /// `refs/heads/<name>`.
    Branch(&'a str),
    /// `refs/tags/<name>`.
    Tag(&'a str),
    /// Any other ref, whole.
    Other(&'a str),
}

fn ref_name(r: &str) -> RefName<'_> {
    if let Some(b) = r.strip_prefix("refs/heads/") {
        RefName::Branch(b)
    } else if let Some(t) = r.strip_prefix("refs/tags/") {
        RefName::Tag(t)
    } else {
        RefName::Other(r)
    }
}

/// Milliseconds as people read a duration, to the second: `1m 4s`.
fn human_ms(ms: i64) -> String {
    let secs = (ms.max(0) as u64 + 500) / 1000;
    humantime::format_duration(Duration::from_secs(secs)).to_string()
}

/// Whether `c` could break a line, reorder what is shown or hide: a
/// control character, a Unicode line or paragraph separator, a
/// bidirectional override or isolate, or an invisible character
/// ([`crate::text::is_deceptive`]).
fn is_unsafe_char(c: char) -> bool {
    c.is_control() || matches!(c, '\u{2028}' | '\u{2029}') || crate::text::is_deceptive(c)
}

/// `text` on one line: every control character, line separator,
/// bidirectional override and invisible character a space.
fn clean(text: &str) -> String {
    text.chars()
        .map(|c| if is_unsafe_char(c) { ' ' } else { c })
        .collect()
}

/// `text` cut to at most `max` characters, on a character boundary, the
/// cut marked with `…`.
fn clip(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// Outside text for an email: one line, at most `max` characters.
fn display(text: &str, max: usize) -> String {
    clip(&clean(text), max)
}

/// Outside text for a chat message: one line, at most `max` characters,
/// escaped ([`chat_escape`]).
fn chat(text: &str, max: usize) -> String {
    chat_escape(&display(text, max))
}

/// Slack's escaping (`&` `<` `>` as `&amp;` `&lt;` `&gt;`), so text can
/// make no `<url|label>` link and no `<!channel>` mention; and, for
/// Mattermost, Rocket.Chat and Discord, which also read Markdown and
/// plain-text mentions:
///
/// - a zero-width space after every `@`, so `@channel`, `@here` or
///   `@everyone` mention nobody;
/// - a zero-width space after every `[`, `]` and `!`, so neither `](` nor
///   `![` appears: `[label](url)` makes no masked link (a label hiding
///   where it points) and `![](url)` no inline image (fetched from the
///   sender's server by every reader's client);
/// - every backtick as `ˋ` (U+02CB), so no code span hides or restyles
///   text.
///
/// Slack shows the zero-width spaces as nothing and `ˋ` much as a
/// backtick: the text reads as it was.
fn chat_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '@' | '[' | ']' | '!' => {
                out.push(c);
                out.push(ZERO_WIDTH_SPACE);
            }
            '`' => out.push(BACKTICK_STAND_IN),
            c => out.push(c),
        }
    }
    out
}

/// What [`chat_escape`] puts after a character that could start a
/// mention, a link or an image.
const ZERO_WIDTH_SPACE: char = '\u{200B}';

/// What [`chat_escape`] writes for a backtick: U+02CB MODIFIER LETTER
/// GRAVE ACCENT, which looks like one but opens no code span.
const BACKTICK_STAND_IN: char = '\u{02CB}';

/// `<url|label>` (`label` already escaped) when `url` is an http(s) URL
/// that fits Slack's link syntax; else `label` alone.
fn chat_link(url: Option<&str>, label: &str) -> String {
    let linkable = |u: &str| {
        (u.starts_with("https://") || u.starts_with("http://"))
            && !u
                .chars()
                .any(|c| c.is_whitespace() || is_unsafe_char(c) || matches!(c, '<' | '>' | '|'))
    };
    match url.filter(|u| linkable(u)) {
        Some(url) => format!("<{}|{label}>", url.replace('&', "&amp;")),
        None => label.to_string(),
    }
}

/// The commit of [`sample_failed`].
#[cfg(test)]
const SAMPLE_SHA: &str = "3f786850e387550fdab836ed7e6dc881de23001b";

/// A failed deploy's message, for the unit tests of this module and
/// `send.rs`.
#[cfg(test)]
pub(crate) fn sample_failed() -> Message {
    Message {
        id: 17,
        delivery: "a1b2c3d4e5f6-17".into(),
        event: Some(NoticeEvent::Failed),
        stack: "web".into(),
        at_ms: 1_767_225_594_000,
        detail: Some("exit code 1".into()),
        deploy: Some(DeployFacts {
            id: 42,
            provider: "github".into(),
            git_ref: Some("refs/heads/main".into()),
            sha: Some(SAMPLE_SHA.into()),
            image: None,
            pusher: Some("alice".into()),
            services: vec![],
            profile: None,
            reason: "push to refs/heads/main".into(),
            queued_at_ms: 1_767_225_500_000,
            started_at_ms: Some(1_767_225_530_000),
            finished_at_ms: Some(1_767_225_594_000),
            exit_code: Some(1),
            commit_url: Some(format!("https://github.com/acme/web/commit/{SAMPLE_SHA}")),
            log_url: Some("https://deploy.example.com/ui/deploys/42".into()),
        }),
        refused: None,
    }
}

#[cfg(test)]
#[path = "message_tests.rs"]
mod tests;
