//! The expected failures of an evaluation. Each crosses the WIT boundary as
//! an `error` variant and becomes exactly one HTTP status in the host.

use std::fmt;

/// Why a delivery was rejected. Messages are lowercase one-liners that name
/// the thing at fault, and never contain a secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PluginError {
    /// Headers and body match no provider redeploy knows.
    UnknownProvider(String),
    /// The body is not what the detected provider sends.
    MalformedPayload(String),
    /// A stack has secrets and the delivery carries no signature or token.
    MissingSignature(String),
    /// A signature or token is present but does not verify with any secret.
    BadSignature(String),
    /// The HTTP method cannot carry a delivery.
    UnsupportedMethod(String),
    /// The hook URL's query is wrong: an unknown service or profile, a bad modifier.
    BadRequest(String),
    /// A stack given to the plugin is invalid (bad glob, missing branch...).
    InvalidStack(String),
    /// The sender's event time is outside the accepted window: a replay or a
    /// very late delivery.
    StaleEvent(String),
    /// The stack refuses this kind of delivery (`manual = "refuse"`).
    Refused(String),
    /// A forwarded push's timestamp is outside the accepted window.
    StaleSignature(String),
}

impl PluginError {
    /// The kebab-case name of the case, as in the WIT `error` variant.
    pub fn kind(&self) -> &'static str {
        match self {
            PluginError::UnknownProvider(_) => "unknown-provider",
            PluginError::MalformedPayload(_) => "malformed-payload",
            PluginError::MissingSignature(_) => "missing-signature",
            PluginError::BadSignature(_) => "bad-signature",
            PluginError::UnsupportedMethod(_) => "unsupported-method",
            PluginError::BadRequest(_) => "bad-request",
            PluginError::InvalidStack(_) => "invalid-stack",
            PluginError::StaleEvent(_) => "stale-event",
            PluginError::Refused(_) => "refused",
            PluginError::StaleSignature(_) => "stale-signature",
        }
    }

    /// The message without the kind.
    pub fn message(&self) -> &str {
        match self {
            PluginError::UnknownProvider(m)
            | PluginError::MalformedPayload(m)
            | PluginError::MissingSignature(m)
            | PluginError::BadSignature(m)
            | PluginError::UnsupportedMethod(m)
            | PluginError::BadRequest(m)
            | PluginError::InvalidStack(m)
            | PluginError::StaleEvent(m)
            | PluginError::Refused(m)
            | PluginError::StaleSignature(m) => m,
        }
    }
}

impl fmt::Display for PluginError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind().replace('-', " "), self.message())
    }
}

impl std::error::Error for PluginError {}

/// Shorthand for a malformed-payload error from a serde_json error.
pub fn malformed(what: &str, err: serde_json::Error) -> PluginError {
    PluginError::MalformedPayload(format!("{what}: {err}"))
}
