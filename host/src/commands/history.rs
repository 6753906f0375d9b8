//! `redeploy history [STACK]`: recent deploys from the journal. Sender text
//! (refs, reasons, GitHub's messages) is printed escaped to one line, so a
//! ref name cannot move the cursor or forge rows on the operator's terminal.

use serde::Serialize;

use crate::cli::print_out;
use crate::config;
use crate::journal::DeployRecord;
use crate::text::one_line;

/// How many deploys `history` shows by default.
pub const DEFAULT_HISTORY_LIMIT: usize = 20;

/// Prints recent deploys as a table, or as JSON.
#[derive(Debug, clap::Args)]
pub struct History {
    /// Only this stack's deploys.
    pub stack: Option<String>,
    /// The configuration file (`--config`).
    #[command(flatten)]
    pub config: super::ConfigFile,
    /// How many deploys.
    #[arg(long, default_value_t = DEFAULT_HISTORY_LIMIT)]
    pub limit: usize,
    /// Print JSON (one array) instead of a table.
    #[arg(long)]
    pub json: bool,
}

fn time(ms: Option<i64>) -> String {
    ms.map_or_else(|| "-".into(), crate::text::rfc3339_ms)
}

impl History {
    /// Prints the history.
    pub fn execute(self) -> anyhow::Result<()> {
        let config = self.config.load_for(config::SecretScope::NoStack)?;
        let journal = super::open_for_reading(&config)?;
        let deploys = journal.deploys(self.stack.as_deref(), self.limit)?;
        // A stack neither configured nor in the journal is a typo: say so,
        // with the stacks there are. A stack removed from the config still
        // shows the history the journal keeps of it.
        if let Some(name) = &self.stack {
            if deploys.is_empty() {
                super::stack(&config, name, &self.config.path)?;
            }
        }
        if self.json {
            let entries: Vec<Entry<'_>> = deploys.iter().map(Entry::of).collect();
            print_out(serde_json::to_string_pretty(&entries)? + "\n")?;
            return Ok(());
        }
        print_row(
            &DEPLOY_COLUMNS,
            [
                "ID", "STACK", "STATE", "CREATED", "TOOK", "SHA", "REF", "IMAGE", "DETAIL",
            ],
        )?;
        for d in &deploys {
            let detail = d
                .detail
                .clone()
                .or_else(|| d.exit_code.map(|c| format!("exit code {c}")))
                .unwrap_or_default();
            let image = event_of(d)["image"]
                .as_str()
                .map(|i| one_line(i).into_owned());
            print_row(
                &DEPLOY_COLUMNS,
                [
                    d.id.to_string(),
                    d.queued.stack.clone(),
                    d.state.as_str().to_string(),
                    time(Some(d.queued.created_at_ms)),
                    duration_seconds(d).map_or_else(|| "-".into(), |s| format!("{s:.1}s")),
                    short_sha(d.queued.sha.as_deref()).to_string(),
                    one_line(d.queued.git_ref.as_deref().unwrap_or("-")).into_owned(),
                    image.unwrap_or_else(|| "-".into()),
                    one_line(&detail).into_owned(),
                ],
            )?;
        }
        // A journal from before GitHub deployments (schema 1) has no requests.
        let requests = journal
            .deployment_requests(self.stack.as_deref(), self.limit)
            .unwrap_or_default();
        if !requests.is_empty() {
            print_out("\nGitHub deployment requests:\n")?;
            print_row(
                &REQUEST_COLUMNS,
                [
                    "ID",
                    "STACK",
                    "STATE",
                    "CREATED",
                    "SHA",
                    "DEPLOYMENT",
                    "DETAIL",
                ],
            )?;
            for r in requests {
                let deployment = r
                    .deployment_id
                    .map_or_else(|| "-".to_string(), |d| d.to_string());
                let mut detail = match (r.http_status, r.detail.as_deref()) {
                    (Some(code), Some(d)) => format!("{code}: {d}"),
                    (None, Some(d)) => d.to_string(),
                    _ => String::new(),
                };
                if let Some(fallback) = r.fallback {
                    detail = format!("{}; {detail}", fallback.describe(r.fallback_deploy_id));
                }
                print_row(
                    &REQUEST_COLUMNS,
                    [
                        r.id.to_string(),
                        r.asked.stack.clone(),
                        r.state.as_str().to_string(),
                        time(Some(r.asked.created_at_ms)),
                        short_sha(r.asked.sha.as_deref()).to_string(),
                        deployment,
                        one_line(&detail).into_owned(),
                    ],
                )?;
            }
        }
        // A journal from before polling (SQLite 13, PostgreSQL 9) has none.
        let polled = journal
            .poll_sources(self.stack.as_deref())
            .unwrap_or_default();
        if !polled.is_empty() {
            print_out("\nPolled repositories:\n")?;
            print_row(
                &POLL_COLUMNS,
                [
                    "STACK",
                    "LAST POLL",
                    "LAST SUCCESS",
                    "FAILURES",
                    "SOURCE",
                    "LAST ERROR",
                ],
            )?;
            for p in polled {
                print_row(
                    &POLL_COLUMNS,
                    [
                        p.stack.clone(),
                        time(Some(p.polled_at_ms)),
                        time(p.ok_at_ms),
                        p.failures.to_string(),
                        one_line(&p.source).into_owned(),
                        one_line(p.error.as_deref().unwrap_or("-")).into_owned(),
                    ],
                )?;
            }
        }
        let hooks = journal.github_hooks().unwrap_or_default();
        let hooks: Vec<_> = hooks
            .into_iter()
            .filter(|h| self.stack.as_deref().is_none_or(|s| s == h.stack))
            .collect();
        if !hooks.is_empty() {
            print_out("\nGitHub webhooks (catch-up of deliveries that did not arrive):\n")?;
            print_row(
                &POLL_COLUMNS,
                [
                    "STACK",
                    "LAST LOOK",
                    "LAST SUCCESS",
                    "FAILURES",
                    "WEBHOOK",
                    "LAST ERROR",
                ],
            )?;
            for h in hooks {
                print_row(
                    &POLL_COLUMNS,
                    [
                        h.stack.clone(),
                        time(h.checked_at_ms),
                        time(h.ok_at_ms),
                        h.failures.to_string(),
                        format!("{} hook {}", one_line(&h.repository), h.hook_id),
                        one_line(h.error.as_deref().unwrap_or("-")).into_owned(),
                    ],
                )?;
            }
        }
        Ok(())
    }
}

/// The widths of the polled repositories table's columns but the last.
const POLL_COLUMNS: [usize; 5] = [16, 20, 20, 8, 40];

/// The widths of the deploys table's columns but the last (DETAIL).
const DEPLOY_COLUMNS: [usize; 8] = [6, 16, 11, 20, 7, 12, 24, 32];

/// The widths of the deployment requests table's columns but the last.
const REQUEST_COLUMNS: [usize; 6] = [6, 16, 9, 20, 12, 12];

/// Prints one table row: the id right-aligned, the next cells padded to
/// `widths`, the last as it is. `N` widths make `N + 1` cells.
fn print_row<const N: usize>(
    widths: &[usize; N],
    cells: impl IntoIterator<Item = impl AsRef<str>>,
) -> anyhow::Result<()> {
    let mut cells = cells.into_iter();
    let first = cells
        .next()
        .map(|c| c.as_ref().to_string())
        .unwrap_or_default();
    let mut line = format!("{first:>w$} ", w = widths[0]);
    for w in &widths[1..] {
        let cell = cells
            .next()
            .map(|c| c.as_ref().to_string())
            .unwrap_or_default();
        line.push_str(&format!(" {cell:<w$}"));
    }
    let last = cells
        .next()
        .map(|c| c.as_ref().to_string())
        .unwrap_or_default();
    print_out(format!("{line} {last}\n"))
}

/// The deploy event a deploy was queued with, as its JSON object (the
/// document its command read); `null` if the journal holds none.
fn event_of(d: &DeployRecord) -> serde_json::Value {
    serde_json::from_str(&d.queued.event_json).unwrap_or(serde_json::Value::Null)
}

/// How long a finished deploy ran, in seconds; `None` until it has ended
/// (or if it never started).
fn duration_seconds(d: &DeployRecord) -> Option<f64> {
    let (start, end) = (d.started_at_ms?, d.finished_at_ms?);
    Some((end - start).max(0) as f64 / 1000.0)
}

/// One deploy as `history --json` prints it: times in RFC 3339 (to the
/// millisecond), the
/// duration in seconds, and the deploy event as an object.
#[derive(Debug, Serialize)]
struct Entry<'a> {
    id: i64,
    stack: &'a str,
    state: &'a str,
    provider: &'a str,
    delivery_id: Option<&'a str>,
    pusher: Option<&'a str>,
    git_ref: Option<&'a str>,
    sha: Option<&'a str>,
    image: Option<String>,
    services: &'a [String],
    profile: Option<&'a str>,
    reason: &'a str,
    created_at: String,
    started_at: Option<String>,
    finished_at: Option<String>,
    duration_seconds: Option<f64>,
    exit_code: Option<i32>,
    detail: Option<&'a str>,
    superseded_by: Option<i64>,
    log_path: Option<&'a str>,
    event: serde_json::Value,
}

impl<'a> Entry<'a> {
    fn of(d: &'a DeployRecord) -> Entry<'a> {
        let q = &d.queued;
        let event = event_of(d);
        let image = event["image"].as_str().map(str::to_string);
        Entry {
            id: d.id,
            stack: &q.stack,
            state: d.state.as_str(),
            provider: &q.provider,
            delivery_id: q.delivery_id.as_deref(),
            pusher: q.pusher.as_deref(),
            git_ref: q.git_ref.as_deref(),
            sha: q.sha.as_deref(),
            image,
            services: &q.services,
            profile: q.profile.as_deref(),
            reason: &q.reason,
            created_at: crate::text::rfc3339_millis(q.created_at_ms),
            started_at: d.started_at_ms.map(crate::text::rfc3339_millis),
            finished_at: d.finished_at_ms.map(crate::text::rfc3339_millis),
            duration_seconds: duration_seconds(d),
            exit_code: d.exit_code,
            detail: d.detail.as_deref(),
            superseded_by: d.superseded_by,
            log_path: d.log_path.as_deref(),
            event,
        }
    }
}

/// How many characters of a commit SHA the tables show.
const SHORT_SHA_CHARS: usize = 12;

/// A commit SHA cut to [`SHORT_SHA_CHARS`], or `-`.
fn short_sha(sha: Option<&str>) -> &str {
    sha.map_or("-", |s| s.get(..SHORT_SHA_CHARS).unwrap_or(s))
}
