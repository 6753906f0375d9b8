//! Stage 2 for the `[[notifications]]` channels: who is told of deploy
//! outcomes, how, and of which events and stacks.
//!
//! A channel's credentials (a chat's or a webhook's URL, a webhook's
//! signing key, an SMTP password) come from a file or an environment
//! variable, never from the config text, and are read only when the
//! command loads with a scope that sends notifications
//! ([`SecretScope::Every`], [`SecretScope::Server`]); errors name the key,
//! never a value.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::raw::RawNotification;
use super::secrets::{read_env, read_secret_file};
use super::server::{check_http_url, duration, resolve};
use super::{ConfigError, Result, Secret, SecretScope, SecretSource, MIN_SECRET_BYTES};

/// The longest channel name.
pub const MAX_CHANNEL_NAME_LEN: usize = 64;

/// The most `[[notifications]]` channels one config may have.
pub const MAX_CHANNELS: usize = 64;

/// The most recipients of one email channel.
pub const MAX_EMAIL_RECIPIENTS: usize = 100;

/// `give_up_after`'s default: a day of retries covers a chat service's
/// outage and a mail server's maintenance; a notification older than that
/// is news nobody needs any more.
pub const DEFAULT_GIVE_UP_AFTER: Duration = Duration::from_secs(24 * 60 * 60);

/// The shortest `give_up_after`: a few retries' worth.
pub const MIN_GIVE_UP_AFTER: Duration = Duration::from_secs(10);

/// The longest `give_up_after`: a week.
pub const MAX_GIVE_UP_AFTER: Duration = Duration::from_secs(7 * 24 * 60 * 60);

/// The events a channel hears of when it names none: how each deploy
/// ended. `queued`, `started` and `refused` are opt-in.
pub const DEFAULT_EVENTS: [NoticeEvent; 5] = [
    NoticeEvent::Succeeded,
    NoticeEvent::Failed,
    NoticeEvent::Cancelled,
    NoticeEvent::Interrupted,
    NoticeEvent::TimedOut,
];

/// What a notification tells of: a deploy's change of state, or refused
/// deliveries on a stack's hook URL.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum NoticeEvent {
    /// A deploy was queued.
    Queued,
    /// A deploy started.
    Started,
    /// A deploy succeeded.
    Succeeded,
    /// A deploy failed (its command exited non-zero, or could not run).
    Failed,
    /// A deploy was cancelled (superseded by a newer one, or by a person).
    Cancelled,
    /// A deploy was running when its runner stopped (a crash, a lost lease).
    Interrupted,
    /// A deploy ran past its stack's `timeout` and was killed.
    TimedOut,
    /// Deliveries to a stack's hook URL were refused for a bad signature
    /// or token: someone who knows the URL is probing it.
    Refused,
}

impl NoticeEvent {
    /// Every event, in the order above.
    pub const ALL: [NoticeEvent; 8] = [
        NoticeEvent::Queued,
        NoticeEvent::Started,
        NoticeEvent::Succeeded,
        NoticeEvent::Failed,
        NoticeEvent::Cancelled,
        NoticeEvent::Interrupted,
        NoticeEvent::TimedOut,
        NoticeEvent::Refused,
    ];

    /// Its name in the config, the journal and the webhook's `event`.
    pub fn as_str(self) -> &'static str {
        match self {
            NoticeEvent::Queued => "queued",
            NoticeEvent::Started => "started",
            NoticeEvent::Succeeded => "succeeded",
            NoticeEvent::Failed => "failed",
            NoticeEvent::Cancelled => "cancelled",
            NoticeEvent::Interrupted => "interrupted",
            NoticeEvent::TimedOut => "timed_out",
            NoticeEvent::Refused => "refused",
        }
    }

    /// The event named `name`, if any.
    pub fn parse(name: &str) -> Option<NoticeEvent> {
        NoticeEvent::ALL.into_iter().find(|e| e.as_str() == name)
    }
}

impl fmt::Display for NoticeEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How an email channel's connection to its SMTP server is protected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SmtpTls {
    /// Plain connection upgraded with `STARTTLS`, required (port 587 by
    /// default).
    StartTls,
    /// TLS from the first byte, "implicit TLS" (port 465 by default).
    Tls,
    /// No TLS at all: only to a loopback host (port 25 by default).
    None,
}

impl SmtpTls {
    /// Its name in the config.
    pub fn as_str(self) -> &'static str {
        match self {
            SmtpTls::StartTls => "starttls",
            SmtpTls::Tls => "tls",
            SmtpTls::None => "none",
        }
    }

    /// The port used when `smtp_port` is not set.
    pub fn default_port(self) -> u16 {
        match self {
            SmtpTls::StartTls => 587,
            SmtpTls::Tls => 465,
            SmtpTls::None => 25,
        }
    }
}

/// An email channel's server, sender and recipients.
#[derive(Clone, Debug)]
pub struct EmailChannel {
    /// The SMTP server's host name or IP address.
    pub host: String,
    /// Its port.
    pub port: u16,
    /// How the connection is protected.
    pub tls: SmtpTls,
    /// A PEM file of extra root certificates to trust (a private CA),
    /// beside the web's roots.
    pub ca_file: Option<PathBuf>,
    /// The SMTP user name and password, when the server wants a login.
    pub login: Option<(String, Secret)>,
    /// The `From` address (`"Name <addr@host>"` or `addr@host`).
    pub from: String,
    /// The `To` addresses, at least one.
    pub to: Vec<String>,
}

/// Where and how a channel sends.
#[derive(Clone, Debug)]
pub enum ChannelTarget {
    /// A Slack incoming webhook or a Slack-compatible one (Mattermost,
    /// Rocket.Chat, Discord's `/slack` endpoint): a short message.
    Chat {
        /// The webhook URL (a credential).
        url: Secret,
    },
    /// A webhook of the user's own: a JSON document of a versioned schema,
    /// signed with HMAC-SHA256.
    Webhook {
        /// The receiver's URL (a credential).
        url: Secret,
        /// The HMAC-SHA256 signing key.
        secret: Secret,
    },
    /// Email over SMTP.
    Email(EmailChannel),
}

impl ChannelTarget {
    /// The channel's kind as the config names it.
    pub fn kind(&self) -> &'static str {
        match self {
            ChannelTarget::Chat { .. } => "chat",
            ChannelTarget::Webhook { .. } => "webhook",
            ChannelTarget::Email(_) => "email",
        }
    }
}

/// One validated `[[notifications]]` channel.
#[derive(Clone, Debug)]
pub struct NotificationChannel {
    /// Its name: unique, what `redeploy notify test` and the metrics call it.
    pub name: String,
    /// The events it hears of.
    pub events: BTreeSet<NoticeEvent>,
    /// The stacks it hears of; `None`: every stack.
    pub stacks: Option<BTreeSet<String>>,
    /// How long a notification it could not send is retried.
    pub give_up_after: Duration,
    /// Where and how it sends.
    pub target: ChannelTarget,
    /// Whether its credentials were read (the loading command's
    /// [`SecretScope`] sends notifications); when false they are empty.
    pub secrets_read: bool,
}

impl NotificationChannel {
    /// Whether it wants to hear of `event` on stack `stack`.
    pub fn wants(&self, event: NoticeEvent, stack: &str) -> bool {
        self.events.contains(&event) && self.stacks.as_ref().is_none_or(|s| s.contains(stack))
    }
}

/// Whether a command loading with `scope` reads the channels' credentials.
fn reads_channel_secrets(scope: SecretScope<'_>) -> bool {
    matches!(scope, SecretScope::Every | SecretScope::Server)
}

/// Validates every `[[notifications]]` channel; `stacks`: the config's stack
/// names, which a channel's `stacks` must be among.
pub(super) fn validate_notifications(
    raw: Vec<RawNotification>,
    stacks: &BTreeSet<String>,
    base_dir: &Path,
    sources: &dyn SecretSource,
    scope: SecretScope<'_>,
) -> Result<Vec<NotificationChannel>> {
    if raw.len() > MAX_CHANNELS {
        return Err(ConfigError::invalid(format!(
            "at most {MAX_CHANNELS} [[notifications]] channels are allowed"
        )));
    }
    let read = reads_channel_secrets(scope).then_some(sources);
    let mut names = BTreeSet::new();
    let mut channels = Vec::with_capacity(raw.len());
    for (index, r) in raw.into_iter().enumerate() {
        let label = match &r.name {
            Some(name) => format!("notifications {name:?}"),
            None => format!("notifications[{index}]"),
        };
        let channel = validate_channel(r, stacks, base_dir, read)
            .map_err(|why| ConfigError::invalid(format!("{label}: {why}")))?;
        if !names.insert(channel.name.clone()) {
            return Err(ConfigError::invalid(format!(
                "{label}: name is used by more than one channel"
            )));
        }
        channels.push(channel);
    }
    Ok(channels)
}

/// Whether `name` may name a channel: 1 to [`MAX_CHANNEL_NAME_LEN`]
/// characters of `A-Z a-z 0-9 _ . -`.
pub fn is_channel_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_CHANNEL_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

fn validate_channel(
    r: RawNotification,
    stacks: &BTreeSet<String>,
    base_dir: &Path,
    sources: Option<&dyn SecretSource>,
) -> Result<NotificationChannel, String> {
    let name = r.name.ok_or("name is required")?;
    if !is_channel_name(&name) {
        return Err(format!(
            "name must be 1 to {MAX_CHANNEL_NAME_LEN} characters of A-Z a-z 0-9 _ . -"
        ));
    }
    let events = match r.events {
        None => DEFAULT_EVENTS.into_iter().collect(),
        Some(list) if list.is_empty() => return Err("events is empty".into()),
        Some(list) => list
            .iter()
            .map(|e| {
                NoticeEvent::parse(e).ok_or_else(|| {
                    let names: Vec<&str> = NoticeEvent::ALL.iter().map(|e| e.as_str()).collect();
                    format!("events: {e:?} is not one of {}", names.join(", "))
                })
            })
            .collect::<Result<BTreeSet<_>, _>>()?,
    };
    let channel_stacks = match r.stacks {
        None => None,
        Some(list) if list.is_empty() => return Err("stacks is empty".into()),
        Some(list) => {
            for s in &list {
                if !stacks.contains(s) {
                    return Err(format!("stacks: {s:?} is no stack of this config"));
                }
            }
            Some(list.into_iter().collect())
        }
    };
    let give_up_after = duration("give_up_after", r.give_up_after, DEFAULT_GIVE_UP_AFTER)?;
    if !(MIN_GIVE_UP_AFTER..=MAX_GIVE_UP_AFTER).contains(&give_up_after) {
        return Err(format!(
            "give_up_after must be between {} and {}",
            humantime::format_duration(MIN_GIVE_UP_AFTER),
            humantime::format_duration(MAX_GIVE_UP_AFTER)
        ));
    }
    if r.url.is_some() {
        return Err(
            "url is not allowed: the URL is a credential; keep it out of the config file, use url_env or url_file"
                .into(),
        );
    }
    let kind = r.kind.ok_or("kind is required (chat, webhook or email)")?;
    let http_only = |key: &str, set: bool| -> Result<(), String> {
        if set {
            Err(format!("{key} is for kind = \"email\" only"))
        } else {
            Ok(())
        }
    };
    let email_keys = [
        ("smtp_host", r.smtp_host.is_some()),
        ("smtp_port", r.smtp_port.is_some()),
        ("tls", r.tls.is_some()),
        ("ca_file", r.ca_file.is_some()),
        ("username", r.username.is_some()),
        ("password_env", r.password_env.is_some()),
        ("password_file", r.password_file.is_some()),
        ("from", r.from.is_some()),
        ("to", r.to.is_some()),
    ];
    let target = match kind.as_str() {
        "chat" | "webhook" => {
            for (key, set) in email_keys {
                http_only(key, set)?;
            }
            let url = read_url(r.url_env, r.url_file, base_dir, sources)?;
            if kind == "chat" {
                if r.secret_env.is_some() || r.secret_file.is_some() {
                    return Err("secret_env and secret_file are for kind = \"webhook\" only".into());
                }
                ChannelTarget::Chat { url }
            } else {
                let secret = read_signing_key(r.secret_env, r.secret_file, base_dir, sources)?;
                ChannelTarget::Webhook { url, secret }
            }
        }
        "email" => {
            if r.url_env.is_some() || r.url_file.is_some() {
                return Err("url_env and url_file are for kind = \"chat\" or \"webhook\"".into());
            }
            if r.secret_env.is_some() || r.secret_file.is_some() {
                return Err("secret_env and secret_file are for kind = \"webhook\" only".into());
            }
            let email = RawEmail {
                smtp_host: r.smtp_host,
                smtp_port: r.smtp_port,
                tls: r.tls,
                ca_file: r.ca_file,
                username: r.username,
                password_env: r.password_env,
                password_file: r.password_file,
                from: r.from,
                to: r.to,
            };
            ChannelTarget::Email(validate_email(email, base_dir, sources)?)
        }
        other => return Err(format!("kind {other:?} is not chat, webhook or email")),
    };
    Ok(NotificationChannel {
        name,
        events,
        stacks: channel_stacks,
        give_up_after,
        target,
        secrets_read: sources.is_some(),
    })
}

/// The email keys of a raw channel.
struct RawEmail {
    smtp_host: Option<String>,
    smtp_port: Option<u16>,
    tls: Option<String>,
    ca_file: Option<PathBuf>,
    username: Option<String>,
    password_env: Option<String>,
    password_file: Option<PathBuf>,
    from: Option<String>,
    to: Option<Vec<String>>,
}

/// Whether `host` is a DNS name (labels of letters, digits and inner
/// hyphens), an IPv4 address or a bracketed IPv6 address.
fn is_host(host: &str) -> bool {
    if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return v6.parse::<std::net::Ipv6Addr>().is_ok();
    }
    if host.parse::<std::net::Ipv4Addr>().is_ok() {
        return true;
    }
    let name = host.strip_suffix('.').unwrap_or(host);
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// Whether `host` is a loopback host (`localhost`, `127.0.0.0/8`, `::1`).
fn is_loopback_host(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || bare
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn validate_email(
    r: RawEmail,
    base_dir: &Path,
    sources: Option<&dyn SecretSource>,
) -> Result<EmailChannel, String> {
    let host = r
        .smtp_host
        .ok_or("smtp_host is required for kind = \"email\"")?;
    if !is_host(&host) {
        return Err(format!(
            "smtp_host {host:?} is not a host name or IP address (the port is smtp_port)"
        ));
    }
    let tls = match r.tls.as_deref() {
        None | Some("starttls") => SmtpTls::StartTls,
        Some("tls") => SmtpTls::Tls,
        Some("none") => SmtpTls::None,
        Some(other) => return Err(format!("tls {other:?} is not starttls, tls or none")),
    };
    if tls == SmtpTls::None && !is_loopback_host(&host) {
        return Err(format!(
            "tls = \"none\" is allowed only to a loopback host, not {host:?}: mail and password would cross the network in clear"
        ));
    }
    let port = match r.smtp_port {
        Some(0) => return Err("smtp_port must not be 0".into()),
        Some(port) => port,
        None => tls.default_port(),
    };
    let ca_file = r.ca_file.map(|f| resolve(base_dir, &f));
    let login = match (r.username, r.password_env, r.password_file) {
        (None, None, None) => None,
        (None, _, _) => return Err("password_env or password_file needs username".into()),
        (Some(_), None, None) => return Err("username needs password_env or password_file".into()),
        (Some(_), Some(_), Some(_)) => {
            return Err("set only one of password_env and password_file".into())
        }
        (Some(user), env, file) => {
            if user.is_empty() {
                return Err("username is empty".into());
            }
            let password = match sources {
                None => String::new(),
                Some(sources) => read_one(sources, base_dir, ("password", env, file))?,
            };
            Some((user, Secret::new(password)))
        }
    };
    let from = r.from.ok_or("from is required for kind = \"email\"")?;
    check_mailbox("from", &from)?;
    let to = r.to.ok_or("to is required for kind = \"email\"")?;
    if to.is_empty() {
        return Err("to is empty".into());
    }
    if to.len() > MAX_EMAIL_RECIPIENTS {
        return Err(format!("to has more than {MAX_EMAIL_RECIPIENTS} addresses"));
    }
    for addr in &to {
        check_mailbox("to", addr)?;
    }
    Ok(EmailChannel {
        host,
        port,
        tls,
        ca_file,
        login,
        from,
        to,
    })
}

/// Checks that `value` is a mailbox (`addr@host` or `Name <addr@host>`).
fn check_mailbox(key: &str, value: &str) -> Result<(), String> {
    value
        .parse::<lettre::message::Mailbox>()
        .map(|_| ())
        .map_err(|_| format!("{key}: {value:?} is not an email address"))
}

/// Reads `{what}_env` or `{what}_file` (exactly one), trimmed, not empty.
fn read_one(
    sources: &dyn SecretSource,
    base_dir: &Path,
    (what, env, file): (&str, Option<String>, Option<PathBuf>),
) -> Result<String, String> {
    let value = match (env, file) {
        (Some(_), Some(_)) => return Err(format!("set only one of {what}_env and {what}_file")),
        (None, None) => return Err(format!("set {what}_env or {what}_file")),
        (Some(var), None) => read_env(sources, &format!("{what}_env"), &var)?,
        (None, Some(file)) => {
            let path = resolve(base_dir, &file);
            read_secret_file(sources, &format!("{what}_file"), &path)?
        }
    };
    let value = value.trim().to_string();
    if value.is_empty() {
        return Err(format!("{what} is empty"));
    }
    Ok(value)
}

/// A chat's or webhook's URL from `url_env` or `url_file`: an http(s) URL
/// (a query allowed, as some chat services put their key there). The
/// error never quotes it: the URL is a credential.
fn read_url(
    env: Option<String>,
    file: Option<PathBuf>,
    base_dir: &Path,
    sources: Option<&dyn SecretSource>,
) -> Result<Secret, String> {
    if env.is_none() && file.is_none() {
        return Err("set url_env or url_file".into());
    }
    let Some(sources) = sources else {
        return Ok(Secret::new(String::new()));
    };
    let url = read_one(sources, base_dir, ("url", env, file))?;
    check_http_url(&url, true).map_err(|why| format!("the url {why}"))?;
    if !super::is_https_or_loopback_http(&url) {
        return Err(
            "the url must be https (plain http only to a loopback host): it is a credential, and the message crosses the network"
                .into(),
        );
    }
    Ok(Secret::new(url))
}

/// A webhook's signing key from `secret_env` or `secret_file`: required,
/// at least [`MIN_SECRET_BYTES`] long.
fn read_signing_key(
    env: Option<String>,
    file: Option<PathBuf>,
    base_dir: &Path,
    sources: Option<&dyn SecretSource>,
) -> Result<Secret, String> {
    if env.is_none() && file.is_none() {
        return Err("a webhook is signed: set secret_env or secret_file".into());
    }
    let Some(sources) = sources else {
        return Ok(Secret::new(String::new()));
    };
    let secret = read_one(sources, base_dir, ("secret", env, file))?;
    if secret.len() < MIN_SECRET_BYTES {
        return Err(format!(
            "the signing key is shorter than the minimum of {MIN_SECRET_BYTES} bytes \
             (generate one with `openssl rand -hex 32`)"
        ));
    }
    Ok(Secret::new(secret))
}
