//! `redeploy deliveries [STACK]`: what arrived on the hook URLs and what
//! became of it: provider, event, delivery id, the status answered, and
//! each stack's decision with its reason ("push to \"feature/x\" does not
//! match branch \"main\""), refused deliveries ("signature does not match")
//! included. Sender text is printed escaped to one line.

use serde_json::{json, Value};

use crate::cli::print_out;
use crate::config;
use crate::journal::DeliveryRecord;
use crate::text::{one_line, rfc3339_ms};

/// How many deliveries `deliveries` shows by default.
pub const DEFAULT_DELIVERIES_LIMIT: usize = 20;

/// Prints recent deliveries and each stack's decision, or JSON.
#[derive(Debug, clap::Args)]
pub struct Deliveries {
    /// Only deliveries to this stack's hook URL.
    pub stack: Option<String>,
    /// The configuration file (`--config`).
    #[command(flatten)]
    pub config: super::ConfigFile,
    /// How many deliveries.
    #[arg(long, default_value_t = DEFAULT_DELIVERIES_LIMIT)]
    pub limit: usize,
    /// Print JSON (one array, times in RFC 3339, each answer as an object).
    #[arg(long)]
    pub json: bool,
}

impl Deliveries {
    /// Prints the deliveries.
    pub fn execute(self) -> anyhow::Result<()> {
        let config = self.config.load_for(config::SecretScope::NoStack)?;
        let journal = super::open_for_reading(&config)?;
        let deliveries = journal.deliveries_of(self.stack.as_deref(), self.limit)?;
        if let Some(name) = &self.stack {
            if deliveries.is_empty() {
                // A typo, not a quiet stack: name the stacks there are.
                super::stack(&config, name, &self.config.path)?;
            }
        }
        if self.json {
            let all: Vec<Value> = deliveries.iter().map(delivery_json).collect();
            print_out(serde_json::to_string_pretty(&all)? + "\n")?;
            return Ok(());
        }
        for d in &deliveries {
            for line in describe(d) {
                print_out(format!("{}\n", one_line(&line)))?;
            }
        }
        Ok(())
    }
}

/// The server's answer a delivery's row keeps, as JSON when it is JSON.
fn answer(d: &DeliveryRecord) -> Value {
    serde_json::from_str(&d.recorded.summary)
        .unwrap_or_else(|_| Value::String(d.recorded.summary.clone()))
}

/// One delivery as JSON: its row, the time in RFC 3339, the answer as an
/// object.
fn delivery_json(d: &DeliveryRecord) -> Value {
    let r = &d.recorded;
    json!({
        "id": d.id,
        "received_at": rfc3339_ms(r.received_at_ms),
        "stack": r.stack,
        "provider": r.provider,
        "event": r.event,
        "delivery_id": r.delivery_id,
        "status": r.status,
        "answer": answer(d),
    })
}

/// A delivery's lines: a heading, then one line per stack decision (or
/// the refusal).
fn describe(d: &DeliveryRecord) -> Vec<String> {
    let r = &d.recorded;
    let dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    let mut lines = vec![format!(
        "#{} {} {} {} {} {} {}",
        d.id,
        rfc3339_ms(r.received_at_ms),
        dash(&r.stack),
        dash(&r.provider),
        dash(&r.event),
        r.status,
        dash(&r.delivery_id),
    )];
    let answer = answer(d);
    if let Some(kind) = answer["error"].as_str() {
        let message = answer["message"].as_str().unwrap_or("");
        lines.push(format!("    refused ({kind}): {message}"));
    } else if let Some(decisions) = answer["decisions"].as_array() {
        lines.extend(decisions.iter().map(decision_line));
    } else if let Value::String(text) = &answer {
        lines.push(format!("    {text}"));
    } else {
        lines.push(format!("    {answer}"));
    }
    lines
}

/// `stack: action [skip code] (state, deploy #id): reason`.
fn decision_line(d: &Value) -> String {
    let mut what = d["action"].as_str().unwrap_or("?").to_string();
    if let Some(code) = d["skip"].as_str() {
        what.push_str(&format!(" [{code}]"));
    }
    let mut done = Vec::new();
    if let Some(state) = d["state"].as_str() {
        done.push(state.to_string());
    }
    if let Some(id) = d["deploy_id"].as_i64() {
        done.push(format!("deploy #{id}"));
    }
    if !done.is_empty() {
        what.push_str(&format!(" ({})", done.join(", ")));
    }
    format!(
        "    {}: {what}: {}",
        d["stack"].as_str().unwrap_or("?"),
        d["reason"].as_str().unwrap_or("")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::NewDelivery;

    fn row(status: u16, summary: Value) -> DeliveryRecord {
        DeliveryRecord {
            id: 9,
            recorded: NewDelivery {
                received_at_ms: 1_764_584_630_000,
                stack: Some("web".into()),
                provider: Some("github".into()),
                event: Some("push".into()),
                delivery_id: Some("d-1".into()),
                status,
                summary: summary.to_string(),
            },
        }
    }

    #[test]
    fn each_decision_and_each_refusal_reads_as_one_line() {
        let accepted = row(
            202,
            json!({"provider": "github", "decisions": [
                {"stack": "web", "action": "deploy", "skip": null, "state": "queued", "deploy_id": 3,
                 "reason": "push to \"main\" of acme/web matches branch \"main\""},
                {"stack": "api", "action": "skip", "skip": "branch-mismatch",
                 "reason": "push to \"main\" does not match branch \"release\""},
            ]}),
        );
        assert_eq!(
            describe(&accepted),
            [
                "#9 2025-12-01T10:23:50Z web github push 202 d-1",
                "    web: deploy (queued, deploy #3): push to \"main\" of acme/web matches branch \"main\"",
                "    api: skip [branch-mismatch]: push to \"main\" does not match branch \"release\"",
            ]
        );
        let refused = row(
            401,
            json!({"error": "bad-signature", "message": "X-Hub-Signature-256 does not match"}),
        );
        assert_eq!(
            describe(&refused)[1],
            "    refused (bad-signature): X-Hub-Signature-256 does not match"
        );
        let v = delivery_json(&refused);
        assert_eq!(v["received_at"], "2025-12-01T10:23:50Z");
        assert_eq!(v["answer"]["error"], "bad-signature");
    }
}
