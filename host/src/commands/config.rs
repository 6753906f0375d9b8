//! `redeploy config check`: validates a configuration as `serve` does at
//! start (the host's rules, every stack's secrets, and the component's
//! `validate-stacks`) without a delivery, and prints what each stack
//! follows and the hook URLs it answers on. It prints no secret: hook URLs
//! show `<token>` (`redeploy hook-url STACK` prints the real one), and of
//! secrets only how many there are.

use std::fmt::Write as _;

use crate::config::{Config, ServiceConfig, StackConfig};
use crate::tokens::{hook_base, hook_url};

/// What `config check` shows in a hook URL instead of the stack's token.
pub const TOKEN_PLACEHOLDER: &str = "<token>";

/// Configuration commands.
#[derive(Debug, clap::Args)]
pub struct ConfigCommand {
    /// What to do.
    #[command(subcommand)]
    pub command: ConfigSubcommand,
}

/// `redeploy config` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum ConfigSubcommand {
    /// Validate the configuration as `serve` does at start, and print each
    /// stack's sources, services, profiles and hook URL forms.
    Check(ConfigCheck),
}

/// `redeploy config check`.
#[derive(Debug, clap::Args)]
pub struct ConfigCheck {
    /// The configuration file (`--config`).
    #[command(flatten)]
    pub config: super::ConfigFile,
}

impl ConfigCommand {
    /// Runs the subcommand.
    pub fn execute(self) -> anyhow::Result<()> {
        match self.command {
            ConfigSubcommand::Check(c) => c.execute(),
        }
    }
}

impl ConfigCheck {
    /// Validates the configuration and prints its summary.
    pub fn execute(self) -> anyhow::Result<()> {
        let config = self.config.load_for(crate::config::SecretScope::Server)?;
        super::validate_stacks_here(&config, &self.config.path)?;
        crate::cli::print_out(summary(&config, &self.config.path))?;
        Ok(())
    }
}

/// The text `config check` prints for a valid configuration: a line
/// naming the file, then one block per stack.
pub fn summary(config: &Config, path: &std::path::Path) -> String {
    let mut out = String::new();
    let count = config.stacks.len();
    let _ = writeln!(
        out,
        "{}: valid, {count} stack{}",
        path.display(),
        if count == 1 { "" } else { "s" }
    );
    let base = hook_base(config);
    for stack in &config.stacks {
        out.push('\n');
        stack_summary(&mut out, stack, &base);
    }
    for channel in &config.notifications {
        out.push('\n');
        channel_summary(&mut out, channel);
    }
    out
}

/// A `[[notifications]]` channel: its kind and where it sends (never its
/// URL or key: they are credentials), its events and stacks.
fn channel_summary(out: &mut String, channel: &crate::config::NotificationChannel) {
    use crate::config::ChannelTarget;
    let to = match &channel.target {
        ChannelTarget::Chat { .. } => "chat webhook (URL from its file or variable)".to_owned(),
        ChannelTarget::Webhook { .. } => {
            "signed webhook (URL and key from their files or variables)".to_owned()
        }
        ChannelTarget::Email(e) => format!(
            "email via {}:{} ({}) to {}",
            e.host,
            e.port,
            e.tls.as_str(),
            e.to.join(", ")
        ),
    };
    let _ = writeln!(out, "notifications {:?}: {to}", channel.name);
    let events: Vec<&str> = channel.events.iter().map(|e| e.as_str()).collect();
    let _ = writeln!(out, "  events: {}", events.join(", "));
    let _ = writeln!(
        out,
        "  stacks: {}",
        match &channel.stacks {
            None => "every stack".to_owned(),
            Some(s) => s.iter().cloned().collect::<Vec<_>>().join(", "),
        }
    );
}

fn stack_summary(out: &mut String, stack: &StackConfig, base: &str) {
    let _ = writeln!(out, "stack {:?}", stack.name);
    if stack.services.is_empty() {
        let _ = writeln!(
            out,
            "  follows: {}",
            sources(&stack.repository, &stack.branch, &stack.tags, &stack.image)
        );
    } else {
        let _ = writeln!(out, "  services:");
        for service in &stack.services {
            let _ = writeln!(out, "    {}: {}", service.name, service_sources(service));
        }
    }
    if !stack.paths.is_empty() {
        let _ = writeln!(out, "  paths: {}", stack.paths.join(", "));
    }
    if !stack.profiles.is_empty() {
        let profiles: Vec<String> = stack
            .profiles
            .iter()
            .map(|(name, p)| {
                if p.selectable {
                    name.clone()
                } else {
                    format!("{name} (not selectable)")
                }
            })
            .collect();
        let _ = writeln!(out, "  profiles: {}", profiles.join(", "));
    }
    let _ = writeln!(
        out,
        "  secrets: {}",
        match stack.secrets.len() {
            0 => "none (the hook URL alone authorizes a delivery)".to_string(),
            n => format!("{n} (a delivery must be signed with one)"),
        }
    );
    let url = hook_url(base, TOKEN_PLACEHOLDER);
    let _ = writeln!(
        out,
        "  hook URL ({}):",
        if stack.hook_token.is_some() {
            "token set in the config"
        } else {
            "token kept in the journal; `redeploy hook-url` prints it"
        }
    );
    for query in hook_queries(stack) {
        let _ = writeln!(out, "    {url}{query}");
    }
}

/// The query strings a stack's hook URL takes: none, `?services=NAME` for
/// each selectable service of a stack with several, and
/// `?deployment_profile=NAME` for each selectable profile.
pub fn hook_queries(stack: &StackConfig) -> Vec<String> {
    let mut queries = vec![String::new()];
    if stack.services.len() > 1 && stack.query_services {
        for service in stack.services.iter().filter(|s| s.selectable) {
            queries.push(query("services", &service.name));
        }
    }
    for (name, _) in stack.profiles.iter().filter(|(_, p)| p.selectable) {
        queries.push(query("deployment_profile", name));
    }
    queries
}

fn query(key: &str, value: &str) -> String {
    let pair = form_urlencoded::Serializer::new(String::new())
        .append_pair(key, value)
        .finish();
    format!("?{pair}")
}

fn service_sources(service: &ServiceConfig) -> String {
    let mut text = sources(
        &service.repository,
        &service.branch,
        &service.tags,
        &service.image,
    );
    if !service.selectable {
        text.push_str(" (not selectable)");
    }
    text
}

/// `repository R, branch B, tags T, image I`, each part that is set.
fn sources(
    repository: &Option<String>,
    branch: &Option<String>,
    tags: &Option<String>,
    image: &Option<String>,
) -> String {
    let parts: Vec<String> = [
        ("repository", repository),
        ("branch", branch),
        ("tags", tags),
        ("image", image),
    ]
    .into_iter()
    .filter_map(|(key, value)| {
        value
            .as_ref()
            .map(|v| format!("{key} {}", crate::config::shown_setting(v)))
    })
    .collect();
    if parts.is_empty() {
        "nothing".to_string()
    } else {
        parts.join(", ")
    }
}
