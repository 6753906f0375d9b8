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
    match ms {
        Some(ms) => {
            let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64);
            humantime::format_rfc3339_seconds(t).to_string()
        }
        None => "-".into(),
    }
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
        println!(
            "{:>6}  {:<16} {:<11} {:<20} {:<12} {:<24} DETAIL",
            "ID", "STACK", "STATE", "CREATED", "SHA", "REF"
        );
        for d in deploys {
            let sha = d
                .sha
                .as_deref()
                .map(|s| &s[..s.len().min(12)])
                .unwrap_or("-");
            let detail = d
                .detail
                .clone()
                .or_else(|| d.exit_code.map(|c| format!("exit code {c}")))
                .unwrap_or_default();
            println!(
                "{:>6}  {:<16} {:<11} {:<20} {:<12} {:<24} {}",
                d.id,
                d.stack,
                d.state.as_str(),
                time(Some(d.created_at_ms)),
                sha,
                one_line(d.git_ref.as_deref().unwrap_or("-")),
                one_line(&detail)
            );
        }
        // A journal from before GitHub deployments (schema 1) has no requests.
        let requests = journal
            .deployment_requests(self.stack.as_deref(), self.limit)
            .unwrap_or_default();
        if !requests.is_empty() {
            println!();
            println!("GitHub deployment requests:");
            println!(
                "{:>6}  {:<16} {:<9} {:<20} {:<12} {:<12} DETAIL",
                "ID", "STACK", "STATE", "CREATED", "SHA", "DEPLOYMENT"
            );
            for r in requests {
                let sha = r
                    .sha
                    .as_deref()
                    .map(|s| &s[..s.len().min(12)])
                    .unwrap_or("-");
                let deployment = r
                    .deployment_id
                    .map_or_else(|| "-".to_string(), |d| d.to_string());
                let detail = match (r.http_status, r.detail.as_deref()) {
                    (Some(code), Some(d)) => format!("{code}: {d}"),
                    (None, Some(d)) => d.to_string(),
                    _ => String::new(),
                };
                println!(
                    "{:>6}  {:<16} {:<9} {:<20} {:<12} {:<12} {}",
                    r.id,
                    r.stack,
                    r.state.as_str(),
                    time(Some(r.created_at_ms)),
                    sha,
                    deployment,
                    one_line(&detail)
                );
            }
        }
        Ok(())
    }
}
