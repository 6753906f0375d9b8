//! A deploy that is an HTTP request: the event as JSON, POSTed to the
//! stack's URL with its headers (which may carry credentials, so redirects
//! are never followed).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use super::Failure;
use crate::journal::DeployRecord;

/// How long an HTTP deploy action may take to connect.
pub const HTTP_ACTION_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The client HTTP actions are sent with. No redirects: an HTTP action's
/// headers carry its credentials, and a redirect would carry them to
/// whatever host it names. A 3xx answer is a failed deploy that says so.
pub fn client() -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .connect_timeout(HTTP_ACTION_CONNECT_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .build()
}

/// POSTs `record`'s event to `url`, within `timeout`; a 2xx answer is a
/// success. The answer's status (or the error) is the deploy's log.
pub async fn post_event(
    http: &reqwest::Client,
    record: &DeployRecord,
    url: &str,
    headers: &BTreeMap<String, String>,
    timeout: Duration,
    log_path: &Path,
) -> Result<(), Failure> {
    let fail = Failure::failed;
    let mut req = http
        .post(url)
        .timeout(timeout)
        .header("content-type", "application/json")
        .body(record.queued.event_json.clone());
    for (k, v) in headers {
        req = req.header(k, v);
    }
    let result = req.send().await;
    let (line, outcome) = match result {
        Ok(resp) if resp.status().is_success() => (format!("POST -> {}\n", resp.status()), Ok(())),
        Ok(resp) => (
            format!("POST -> {}\n", resp.status()),
            Err(fail(format!("deploy endpoint answered {}", resp.status()))),
        ),
        // Its stack's `timeout` ran out: said as the runner says it of a
        // command, so it is told as `timed_out`.
        Err(e) if e.is_timeout() => (
            format!("POST failed: {}\n", e.without_url()),
            Err(fail(format!(
                "{}{}",
                crate::journal::TIMED_OUT_REASON,
                humantime::format_duration(timeout)
            ))),
        ),
        Err(e) => {
            let e = e.without_url();
            (
                format!("POST failed: {e}\n"),
                Err(fail(format!("deploy endpoint unreachable: {e}"))),
            )
        }
    };
    let _ = crate::logfiles::write_private(log_path, line.as_bytes());
    outcome
}
