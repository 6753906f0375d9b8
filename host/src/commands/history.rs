//! `redeploy history [STACK]`: recent deploys from the journal. Sender text
//! (refs, reasons, GitHub's messages) is printed escaped to one line, so a
//! ref name cannot move the cursor or forge rows on the operator's terminal.

use crate::config;
use crate::journal::Journal;
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
        let journal = Journal::open_read_only(&Journal::path_in(&config.server.state_dir))?;
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
            println!("{}", serde_json::to_string_pretty(&deploys)?);
            return Ok(());
        }
        print_row(
            &DEPLOY_COLUMNS,
            ["ID", "STACK", "STATE", "CREATED", "SHA", "REF", "DETAIL"],
        );
        for d in deploys {
            let detail = d
                .detail
                .clone()
                .or_else(|| d.exit_code.map(|c| format!("exit code {c}")))
                .unwrap_or_default();
            print_row(
                &DEPLOY_COLUMNS,
                [
                    &d.id.to_string(),
                    &d.queued.stack,
                    d.state.as_str(),
                    &time(Some(d.queued.created_at_ms)),
                    short_sha(d.queued.sha.as_deref()),
                    &one_line(d.queued.git_ref.as_deref().unwrap_or("-")),
                    &one_line(&detail),
                ],
            );
        }
        // A journal from before GitHub deployments (schema 1) has no requests.
        let requests = journal
            .deployment_requests(self.stack.as_deref(), self.limit)
            .unwrap_or_default();
        if !requests.is_empty() {
            println!();
            println!("GitHub deployment requests:");
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
            );
            for r in requests {
                let deployment = r
                    .deployment_id
                    .map_or_else(|| "-".to_string(), |d| d.to_string());
                let detail = match (r.http_status, r.detail.as_deref()) {
                    (Some(code), Some(d)) => format!("{code}: {d}"),
                    (None, Some(d)) => d.to_string(),
                    _ => String::new(),
                };
                print_row(
                    &REQUEST_COLUMNS,
                    [
                        &r.id.to_string(),
                        &r.asked.stack,
                        r.state.as_str(),
                        &time(Some(r.asked.created_at_ms)),
                        short_sha(r.asked.sha.as_deref()),
                        &deployment,
                        &one_line(&detail),
                    ],
                );
            }
        }
        Ok(())
    }
}

/// The widths of the deploys table's columns but the last (DETAIL).
const DEPLOY_COLUMNS: [usize; 6] = [6, 16, 11, 20, 12, 24];

/// The widths of the deployment requests table's columns but the last.
const REQUEST_COLUMNS: [usize; 6] = [6, 16, 9, 20, 12, 12];

/// Prints one table row: the id right-aligned, the next cells padded to
/// `widths`, the last as it is.
fn print_row(widths: &[usize; 6], cells: [&str; 7]) {
    let mut line = format!("{:>w$} ", cells[0], w = widths[0]);
    for (cell, w) in cells[1..6].iter().zip(&widths[1..]) {
        line.push_str(&format!(" {cell:<w$}", w = *w));
    }
    println!("{line} {}", cells[6]);
}

/// How many characters of a commit SHA the tables show.
const SHORT_SHA_CHARS: usize = 12;

/// A commit SHA cut to [`SHORT_SHA_CHARS`], or `-`.
fn short_sha(sha: Option<&str>) -> &str {
    sha.map_or("-", |s| s.get(..SHORT_SHA_CHARS).unwrap_or(s))
}
