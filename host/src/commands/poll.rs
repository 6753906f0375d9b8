//! `redeploy poll STACK`: looks at a stack's polled repositories and
//! image tags now and prints what the server's next poll would find, for
//! setting polling up and finding out why it deploys nothing. A dry run:
//! it deploys nothing and records nothing.

use std::io::Write as _;
use std::sync::Arc;

use anyhow::{bail, Context as _};

use crate::config::{self, PollKind};
use crate::poll::{self, PollFailure};
use crate::stacks;

/// Looks at a stack's polled repositories and images once (a dry run).
#[derive(Debug, clap::Args)]
pub struct Poll {
    /// The stack (it needs a `[stacks.poll]` table).
    pub stack: String,
    /// The configuration file (`--config`).
    #[command(flatten)]
    pub config: super::ConfigFile,
}

impl Poll {
    /// Asks each repository (or registry), compares with what the journal
    /// remembers, and prints each ref (or tag) that moved with the
    /// component's decision for it. Fails (exit 2) when a source could not
    /// be asked.
    pub fn execute(self) -> anyhow::Result<()> {
        let config = self
            .config
            .load_for(config::SecretScope::Stack(&self.stack))?;
        let stack = super::stack(&config, &self.stack, &self.config.path)?.clone();
        let Some(polling) = stack.poll.clone() else {
            bail!("stack \"{}\" has no [stacks.poll] table", stack.name);
        };
        let journal = Arc::new(super::open_state(&config)?);
        let runtime = super::one_shot_component(&config)?;
        let wit_stack = stacks::wit_stack(&stack);
        let context = stacks::dry_run_context(&config);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let mut failed = 0;
        let mut out = std::io::stdout().lock();
        for target in &polling.sources {
            writeln!(out, "{} ({})", target.url, target.repository)
                .map_err(crate::cli::stdout_error)?;
            let remembered = journal.poll_source(&stack.name, &target.url)?;
            if let Some(s) = &remembered {
                let when = crate::text::rfc3339_ms;
                match &s.error {
                    Some(e) => writeln!(
                        out,
                        "  last poll {}: failed ({} in a row): {e}",
                        when(s.polled_at_ms),
                        s.failures
                    )
                    .map_err(crate::cli::stdout_error)?,
                    None => writeln!(out, "  last poll {}: ok", when(s.polled_at_ms))
                        .map_err(crate::cli::stdout_error)?,
                }
            }
            let found = rt.block_on(poll::poll_once(&journal, None, &stack, &polling, target));
            let report = match found {
                Ok(report) => report,
                Err(e @ (PollFailure::Source(_) | PollFailure::Registry(_))) => {
                    failed += 1;
                    writeln!(out, "  cannot poll: {e}").map_err(crate::cli::stdout_error)?;
                    continue;
                }
                Err(e) => return Err(e).context("reading what the journal remembers"),
            };
            let image = matches!(target.kind, PollKind::Image(_));
            if image {
                for (tag, digest) in &report.now {
                    writeln!(out, "  {tag}: digest now {digest}")
                        .map_err(crate::cli::stdout_error)?;
                }
                if let Some(tips) = remembered.as_ref().and_then(|s| s.tips_json.as_deref()) {
                    let tips: poll::tips::Tips = serde_json::from_str(tips)
                        .context("the journal's remembered digest is not readable")?;
                    for (tag, digest) in &tips {
                        writeln!(out, "  {tag}: remembered {digest}")
                            .map_err(crate::cli::stdout_error)?;
                    }
                }
            } else {
                let followed = poll::followed_refs(&stack, target).unwrap_or_default();
                let patterns: Vec<&str> = followed.patterns().collect();
                writeln!(
                    out,
                    "  {} branches and tags followed (asked for: {})",
                    report.refs,
                    patterns.join(" ")
                )
                .map_err(crate::cli::stdout_error)?;
            }
            if report.first {
                let what = if image { "this digest" } else { "these tips" };
                writeln!(
                    out,
                    "  never polled: the server's first poll records {what} and deploys nothing"
                )
                .map_err(crate::cli::stdout_error)?;
                continue;
            }
            if report.moved.is_empty() {
                let what = if image {
                    "the digest is unchanged"
                } else {
                    "nothing moved"
                };
                writeln!(out, "  {what} since the last poll").map_err(crate::cli::stdout_error)?;
            }
            for (change, _) in &report.moved {
                let delivery = poll::delivery(&stack.name, target, change);
                let document =
                    runtime.report(std::slice::from_ref(&wit_stack), &delivery, &context)?;
                let verdict = match document {
                    Ok(document) => {
                        let document: serde_json::Value = serde_json::from_str(&document)
                            .context("the component's outcome document is not JSON")?;
                        let decision = &document["decisions"][0];
                        format!(
                            "{}: {}",
                            decision["action"].as_str().unwrap_or("?"),
                            decision["reason"].as_str().unwrap_or("")
                        )
                    }
                    Err(e) => format!("refused: {}", e.message()),
                };
                writeln!(
                    out,
                    "  {} {} -> {}: {verdict}",
                    change.name,
                    short(&change.old),
                    short(&change.new)
                )
                .map_err(crate::cli::stdout_error)?;
            }
        }
        if failed > 0 {
            bail!(
                "{failed} of {} repositories could not be polled",
                polling.sources.len()
            );
        }
        Ok(())
    }
}

/// The first 12 characters of an object id (after `sha256:` for a
/// digest).
fn short(id: &str) -> &str {
    let hex = id.find(':').map_or(0, |i| i + 1);
    &id[..id.len().min(hex + crate::ui::view::SHORT_SHA)]
}
