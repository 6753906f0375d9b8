//! The `post_receive` fuzz target's checks: git's post-receive input (the
//! `<old> <new> <ref>` lines on the hook's stdin) through the host's line
//! parser and then the plugin's evaluation, as `redeploy post-receive`
//! does. Replayed by the regression test (see `lib.rs`).

use redeploy_host::commands::post_receive::parse_updates;
use redeploy_plugin::evaluate::{evaluate, Context, Delivery, RefUpdate};
use redeploy_plugin::model::{Service, Stack};
use redeploy_plugin::providers::common::is_zero_sha;

/// The repository path every input is evaluated for.
pub const REPOSITORY: &str = "/srv/git/app.git";

fn stack(name: &str, branch: Option<&str>, tags: Option<&str>) -> Stack {
    Stack {
        name: name.into(),
        services: vec![Service {
            name: name.into(),
            repository: Some(REPOSITORY.into()),
            branch: branch.map(str::to_string),
            tags: tags.map(str::to_string),
            image: None,
        }],
        skip_markers: vec!["[skip deploy]".into()],
        ..Stack::default()
    }
}

/// Stacks on the repository: every ref, `main` only, tags only, and one on
/// another repository.
pub fn stacks() -> Vec<Stack> {
    let mut other = stack("other-repo", Some("**"), None);
    other.services[0].repository = Some("/srv/git/other.git".into());
    vec![
        stack("everything", Some("**"), Some("**")),
        stack("main", Some("main"), None),
        stack("releases", None, Some("v*")),
        other,
    ]
}

/// Parses `input` as the hook does and evaluates it; panics when an
/// invariant does not hold.
pub fn check_post_receive(input: &str) {
    let lines = input.lines().filter(|l| !l.trim().is_empty()).count();
    let parsed = match parse_updates(input.as_bytes()) {
        Ok(parsed) => parsed,
        Err(e) => {
            assert!(e.to_string().starts_with("post-receive input line "));
            return;
        }
    };
    // Text is UTF-8: no ref is left out for not being so.
    assert!(parsed.not_utf8.is_empty());
    let updates = parsed.updates;
    assert_eq!(updates.len(), lines, "one update per non-blank line");
    for u in &updates {
        // git separates the fields with ASCII whitespace; a ref name may
        // hold other Unicode whitespace (a no-break space).
        for part in [&u.old, &u.new, &u.name] {
            assert!(!part.is_empty() && !part.contains(|c: char| c.is_ascii_whitespace()));
        }
    }
    let updates: Vec<RefUpdate> = updates
        .into_iter()
        .map(|u| RefUpdate {
            old: u.old,
            new: u.new,
            name: u.name,
        })
        .collect();
    let stacks = stacks();
    let delivery = Delivery::PostReceive {
        repository: REPOSITORY.into(),
        updates: updates.clone(),
        pusher: Some("fuzzer".into()),
        query: String::new(),
    };
    let Ok(outcome) = evaluate(&stacks, &delivery, &Context::default()) else {
        return;
    };
    assert_eq!(outcome.pushes.len(), updates.len(), "one push per line");
    for (push, u) in outcome.pushes.iter().zip(&updates) {
        assert_eq!(push.git_ref, u.name);
        assert_eq!(push.repository.full_name, REPOSITORY);
        assert_eq!(push.created, is_zero_sha(&u.old));
        assert_eq!(push.deleted, is_zero_sha(&u.new));
        assert_eq!(push.before.is_none(), push.created);
        assert_eq!(push.after.is_none(), push.deleted);
        for sha in push.before.iter().chain(&push.after) {
            assert!(sha.len() == 40 || sha.len() == 64, "object id {sha}");
            assert!(sha.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')));
        }
    }
    assert_eq!(outcome.decisions.len(), stacks.len());
    for (decision, stack) in outcome.decisions.iter().zip(&stacks) {
        assert_eq!(decision.stack, stack.name);
        if let Some(deploy) = decision.deploy() {
            assert_eq!(deploy.stack, stack.name);
            assert_ne!(stack.name, "other-repo", "deployed another repository");
            assert_eq!(deploy.provider.as_str(), "post-receive");
            let pushed = outcome
                .pushes
                .iter()
                .any(|p| Some(&p.git_ref) == deploy.git_ref.as_ref() && !p.deleted);
            assert!(pushed, "deploys a ref that was not pushed: {deploy:?}");
        }
    }
}
