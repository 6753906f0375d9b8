//! A manual trigger as the HTTP delivery the component evaluates: what
//! `curl -X POST -d "" <hook URL>` sends, with `services=` and
//! `deployment_profile=` in the query, and, for a stack that requires signed
//! manual triggers (`manual = "signed"`), the signature the component makes
//! with the stack's first secret. `redeploy trigger` sends it to the server;
//! `trigger --local` and the dashboard's "Redeploy now" hand it to the
//! dispatcher, so each goes through the component, the journal and the
//! queue like any delivery.

use anyhow::Context as _;

use crate::config::{ManualSetting, StackConfig};
use crate::plugin::{wit, PluginRuntime};

/// The header carrying a signed manual trigger's Unix time in seconds.
pub const MANUAL_TIMESTAMP_HEADER: &str = "X-Redeploy-Timestamp";

/// The header carrying a signed manual trigger's HMAC.
pub const MANUAL_SIGNATURE_HEADER: &str = "X-Redeploy-Signature-256";

/// The query string (`services=`, `deployment_profile=`) and headers of a
/// manual trigger of `stack` at `unix_secs`; `services` is a comma-separated
/// list (spaces dropped). `runtime` signs it, and is needed only for a
/// stack that requires signed triggers.
pub fn manual_request(
    runtime: Option<&PluginRuntime>,
    stack: &StackConfig,
    services: Option<&str>,
    profile: Option<&str>,
    unix_secs: u64,
) -> anyhow::Result<(String, Vec<(String, String)>)> {
    let mut query = form_urlencoded::Serializer::new(String::new());
    if let Some(s) = services {
        query.append_pair("services", &s.replace(' ', ""));
    }
    if let Some(p) = profile {
        query.append_pair("deployment_profile", p);
    }
    let mut headers = Vec::new();
    if stack.manual == ManualSetting::Signed {
        let secret = stack.secrets.first().with_context(|| {
            format!(
                "stack \"{}\" requires signed manual triggers but has no secret",
                stack.name
            )
        })?;
        let runtime = runtime.context("a signed manual trigger needs the component to sign it")?;
        let signature = runtime.sign_manual_trigger(&stack.name, unix_secs, secret.expose())?;
        headers.push((MANUAL_SIGNATURE_HEADER.to_string(), signature));
        headers.push((MANUAL_TIMESTAMP_HEADER.to_string(), unix_secs.to_string()));
    }
    Ok((query.finish(), headers))
}

/// The delivery of a manual trigger made by [`manual_request`].
pub fn manual_delivery(query: String, headers: Vec<(String, String)>) -> wit::Delivery {
    wit::Delivery::Http(wit::HttpRequest {
        method: "POST".into(),
        query,
        headers,
        body: Vec::new(),
    })
}
