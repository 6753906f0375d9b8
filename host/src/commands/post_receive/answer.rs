//! What `redeploy post-receive` shows the pusher: one `remote:` line per
//! stack's decision, from the answer a running server or this host's
//! dispatcher gave, with a note on a forced update.

use crate::plugin::wit;

/// How many hexadecimal digits of a commit a `remote:` line shows.
const SHORT_SHA: usize = 7;

/// The note a stack's `remote:` line gets when the update of its ref was
/// forced: `is_ancestor` (git's `merge-base --is-ancestor`) said the old
/// commit is not an ancestor of the new one. Creations and deletions are
/// never forced; an update git could not judge (`None`) gets no note.
pub fn forced_note(update: &wit::RefUpdate, is_ancestor: Option<bool>) -> Option<String> {
    let zero = |s: &str| s.bytes().all(|b| b == b'0');
    if zero(&update.old) || zero(&update.new) || is_ancestor != Some(false) {
        return None;
    }
    let short = |s: &str| s.chars().take(SHORT_SHA).collect::<String>();
    Some(format!(
        "forced push: {} is not an ancestor of {}",
        short(&update.old),
        short(&update.new)
    ))
}

/// The lines telling the pusher what the answer to `stack`'s push (a
/// server's, or this host's dispatcher's) says: one per decision (a push
/// moving several refs the stack follows has one per ref), the deploying
/// ones with the note `forced_note_for` gives their ref, if any. When one
/// deploys, the skips beside it are left out: the hook said them already,
/// from its first look.
pub(super) fn describe_answer(
    stack: &str,
    status: u16,
    body: &str,
    place: &str,
    forced_note_for: &dyn Fn(&str) -> Option<String>,
) -> Vec<String> {
    let v: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
    if let Some(kind) = v["error"].as_str() {
        return vec![format!(
            "redeploy: {stack}: NOT deployed ({status} {kind}): {}",
            v["message"].as_str().unwrap_or("")
        )];
    }
    let decisions = match v["decisions"].as_array() {
        Some(all) if !all.is_empty() => all,
        _ => {
            return vec![format!(
                "redeploy: {stack}: not deploying: the answer ({status}) has no decision"
            )]
        }
    };
    let deploys = |d: &&serde_json::Value| d["action"].as_str() != Some("skip");
    let any_deploys = decisions.iter().any(|d| deploys(&d));
    decisions
        .iter()
        .filter(|d| !any_deploys || deploys(d))
        .map(|d| {
            let reason = d["reason"].as_str().unwrap_or("");
            let line = match (d["action"].as_str(), d["state"].as_str()) {
                (Some("request-deployment"), _) => format!(
                    "redeploy: {stack}: asked GitHub for a deployment ({reason}); its deployment event deploys"
                ),
                (Some("deploy"), Some("queued")) => format!(
                    "redeploy: {stack}: deploying ({reason}), deploy #{} on {place}",
                    d["deploy_id"]
                ),
                (Some("deploy"), Some(state)) => {
                    format!("redeploy: {stack}: deploy #{} {state}: {reason}", d["deploy_id"])
                }
                _ => return format!("redeploy: {stack}: not deploying: {reason}"),
            };
            match d["ref"].as_str().and_then(forced_note_for) {
                Some(note) => format!("{line} ({note})"),
                None => line,
            }
        })
        .collect()
}

/// Prints the lines git shows the pusher as `remote: ...`, each kept on
/// one line: ref names, reasons quoting them and deploy output cannot start
/// a forged `remote:` line or move the pusher's cursor.
///
/// A pusher whose connection dropped closes the hook's output; that never
/// stops a deploy, so a failed write is let go.
pub(super) fn print_lines(lines: &[String]) {
    for l in lines {
        let _ = crate::cli::print_line(format_args!("{}", crate::text::one_line(l)));
    }
}
