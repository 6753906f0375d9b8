//! `redeploy check`: a dry run that evaluates one delivery through the
//! component and prints the outcome, deploying nothing.

use std::path::PathBuf;

use anyhow::Context as _;

use crate::plugin::{wit, PluginRuntime, RuntimeOptions};
use crate::{config, headers, stacks};

/// A delivery the plugin rejected (exit code 1).
#[derive(Debug, thiserror::Error)]
#[error("delivery rejected: {}", .0.describe())]
pub struct Rejected(pub wit::Error);

/// Evaluates one delivery without deploying anything.
#[derive(Debug, clap::Args)]
pub struct Check {
    /// The configuration file (`--config`).
    #[command(flatten)]
    pub config: super::ConfigFile,
    /// The request body (raw bytes, exactly as sent).
    #[arg(long)]
    pub body: PathBuf,
    /// A file with one `Name: value` header per line.
    #[arg(long)]
    pub headers: Option<PathBuf>,
    /// The HTTP method.
    #[arg(long, default_value = "POST")]
    pub method: String,
    /// The hook URL's query, e.g. `services=web&deployment_profile=fast`.
    #[arg(long, default_value = "")]
    pub query: String,
    /// Evaluate for this stack only, as a delivery to its hook URL would be.
    #[arg(long)]
    pub stack: Option<String>,
    /// Load this component file instead of the embedded one.
    #[arg(long)]
    pub plugin: Option<PathBuf>,
}

impl Check {
    /// Runs the check and prints the outcome JSON.
    pub fn execute(self) -> anyhow::Result<()> {
        // A check of one stack reads that stack's secrets only; of every
        // stack, every stack's.
        let scope = match &self.stack {
            Some(name) => config::SecretScope::Stack(name),
            None => config::SecretScope::Every,
        };
        let config = self.config.load_for(scope)?;
        // The body file is refused over the limit `serve` applies to bodies.
        let body = crate::bounded::read_file(&self.body, config.server.max_body_bytes as u64)
            .with_context(|| format!("reading body file {}", self.body.display()))?;
        let headers = match &self.headers {
            Some(p) => headers::read_headers(p)?,
            None => Vec::new(),
        };
        let stacks: Vec<wit::Stack> = match &self.stack {
            Some(name) => vec![stacks::wit_stack(super::stack(
                &config,
                name,
                &self.config.path,
            )?)],
            None => stacks::wit_stacks(&config),
        };
        let runtime = match &self.plugin {
            Some(path) => PluginRuntime::new(
                &crate::plugin::component_source(Some(path)),
                RuntimeOptions::default(),
            )?,
            None => super::read_only_component(&config)?,
        };
        stacks::validate(&runtime, &stacks::wit_stacks(&config), &self.config.path)?;
        let delivery = wit::Delivery::Http(wit::HttpRequest {
            method: self.method,
            query: self.query,
            headers,
            body,
        });
        let context = stacks::dry_run_context(&config);
        // The component writes the document, as it does for `evaluate-json`.
        let document = runtime
            .report(&stacks, &delivery, &context)?
            .map_err(Rejected)?;
        let document: serde_json::Value = serde_json::from_str(&document)
            .context("the component's outcome document is not JSON")?;
        let mut text = serde_json::to_string_pretty(&document)?;
        text.push('\n');
        crate::cli::print_out(text)
    }
}
