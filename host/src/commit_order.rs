//! Which of two commits of a stack is newer, judged from what the journal
//! remembers: the rule that keeps an older commit from deploying after a
//! newer one, across restarts.
//!
//! The journal keeps, per stack and scope, every commit it accepted a
//! deploy of (the commits "seen", whether they ran or were superseded) with
//! the `before` of the push that brought each, and which one is the head
//! (the commit of the newest accepted deploy). A deploy is judged by the
//! commits of its own services, of the whole stack and of its lane
//! ([`Scopes`]): services following different branches, or different
//! repositories, each have their own order, and a stack deployed as a
//! whole has one. [`judge`] is a pure function of those
//! facts and the candidate push: no clock, no I/O, unit-tested here.
//!
//! A candidate is **older** when the stack has seen it before (it was
//! deployed or superseded), or when the chain shows it precedes a commit
//! the stack has seen (some push had `before` = this commit). An unknown
//! commit is newer. Two ways through remain for an intentional rollback: a
//! push whose `before` is the head itself, forced (or from a sender that
//! never says whether a push was forced, where the chain is all there is),
//! a deploy that names no commit (a manual trigger), which is never judged
//! here, and an operator's redeploy of an earlier deploy from `history`
//! ([`Candidate::requested`]), which names its commit on purpose.

/// The scope of the commits deployed to a whole stack (by a deploy that
/// names no service): they count for every service.
pub const WHOLE_STACK: &str = "";

/// What a service's scope begins with, before its name.
const SERVICE_PREFIX: &str = "service ";

/// The scopes a deploy's commit is judged in and recorded under
/// (`stack_commits.scope`): the commit order is per service, so a commit
/// one service deployed (from its branch, or its repository) is not older
/// for another; and per lane (a ref of a repository, [`crate::queue::Lane`]),
/// so that within a lane, whose deploys the queue orders by their ids, a
/// commit admitted later is never an older one.
///
/// A scope is a string: [`WHOLE_STACK`], `service NAME`, or `ref REF
/// REPOSITORY` (a git ref has no space, so no two scopes are equal by
/// accident).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scopes {
    /// `service NAME` of each service the deploy names (without repeats);
    /// none for a deploy of the whole stack.
    services: Vec<String>,
    /// `ref REF REPOSITORY`, when the deploy names a ref.
    lane: Option<String>,
}

impl Scopes {
    /// The scopes of a deploy of `services` (empty means all) of `lane`.
    pub fn of(services: &[String], lane: &crate::queue::Lane) -> Scopes {
        let mut named: Vec<String> = Vec::with_capacity(services.len());
        for service in services {
            let scope = format!("{SERVICE_PREFIX}{service}");
            if !named.contains(&scope) {
                named.push(scope);
            }
        }
        let lane = lane.git_ref.as_ref().map(|git_ref| match &lane.repository {
            Some(repository) => format!("ref {git_ref} {repository}"),
            None => format!("ref {git_ref}"),
        });
        Scopes {
            services: named,
            lane,
        }
    }

    /// The scopes whose commits judge the deploy, one judgment per service
    /// ([`combine`]), each with the service's name: the service's, the
    /// whole stack's and the lane's; one `(None, None)` for a deploy of the
    /// whole stack, judged by every scope's.
    pub fn judged_by(&self) -> Vec<(Option<&str>, Option<Vec<&str>>)> {
        if self.services.is_empty() {
            return vec![(None, None)];
        }
        self.services
            .iter()
            .map(|scope| {
                let name = scope.strip_prefix(SERVICE_PREFIX).unwrap_or(scope);
                let scopes = [scope.as_str(), WHOLE_STACK]
                    .into_iter()
                    .chain(self.lane.as_deref())
                    .collect();
                (Some(name), Some(scopes))
            })
            .collect()
    }

    /// The scopes the deploy's commit is recorded under: its services' (the
    /// whole stack's, for a deploy of all of them) and its lane's.
    pub fn recorded_as(&self) -> Vec<&str> {
        let services: Vec<&str> = match self.services.is_empty() {
            true => vec![WHOLE_STACK],
            false => self.services.iter().map(String::as_str).collect(),
        };
        services.into_iter().chain(self.lane.as_deref()).collect()
    }
}

/// A deploy's verdicts, one per service it names (or one for the whole
/// stack), combined by [`combine`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Combined {
    /// Deploy, maybe not every service.
    Deploy {
        /// The services to deploy, when some were left out (`None`: every
        /// one the deploy named).
        narrowed: Option<Vec<String>>,
        /// Each service left out, with why: its commit is older for it.
        left_out: Vec<(String, String)>,
    },
    /// Older for every service: the first one's verdict.
    Older {
        /// Why.
        reason: String,
        /// The newer deploy.
        newer_deploy: i64,
    },
}

/// Combines the verdicts of a deploy's services (`(Some(name), verdict)`
/// in the deploy's order; `(None, verdict)` for the whole stack): the
/// commit order is each service's, so a commit older for one service (its
/// other branch, or tags, deployed a newer one) still deploys the others,
/// and the deploy is older, cancelled, only when it is older for all.
pub fn combine(verdicts: Vec<(Option<&str>, Verdict)>) -> Combined {
    let mut kept = Vec::with_capacity(verdicts.len());
    let mut left_out = Vec::new();
    let mut first_older = None;
    for (service, verdict) in verdicts {
        match verdict {
            Verdict::Older {
                reason,
                newer_deploy,
            } => {
                if let Some(service) = service {
                    left_out.push((service.to_owned(), reason.clone()));
                }
                first_older.get_or_insert((reason, newer_deploy));
            }
            _ => kept.extend(service.map(str::to_owned)),
        }
    }
    match first_older {
        Some((reason, newer_deploy)) if kept.is_empty() => Combined::Older {
            reason,
            newer_deploy,
        },
        _ => Combined::Deploy {
            narrowed: (!left_out.is_empty()).then_some(kept),
            left_out,
        },
    }
}

/// The stack's head: the commit of its newest accepted deploy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Head {
    /// The commit.
    pub sha: String,
    /// The newest deploy of it.
    pub deploy_id: i64,
}

/// What the journal knows about one stack's commits, as far as one
/// candidate commit is concerned.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Known {
    /// The stack's head, if it ever deployed a commit.
    pub head: Option<Head>,
    /// The newest deploy of the candidate commit, if the stack has seen it.
    pub seen: Option<i64>,
    /// A commit the stack has seen whose push had the candidate as its
    /// `before`, with that commit's newest deploy: the chain puts the
    /// candidate before it.
    pub precedes: Option<(String, i64)>,
}

/// The push (or event) that asks to deploy a commit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Candidate<'a> {
    /// The commit to deploy.
    pub sha: &'a str,
    /// The commit the ref pointed to before the push, when the sender says.
    pub before: Option<&'a str>,
    /// The sender says the push was forced.
    pub forced: bool,
    /// The sender reports forced pushes at all (GitHub, Bitbucket Cloud);
    /// for the others `forced` is always false and proves nothing.
    pub sender_reports_forced: bool,
    /// An operator asked for this commit by name (`redeploy trigger STACK
    /// --redeploy ID`): a rollback whatever the chain says.
    pub requested: bool,
}

/// What [`judge`] decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// A commit the stack has not seen, or the stack has no head: deploy.
    Newer,
    /// The stack's head itself, by another push (another ref, services or
    /// profile; the same push again is a duplicate before it is judged,
    /// `journal::Admitted::SameCommit`): deploy; the runner still refuses
    /// to run it twice at once.
    Head,
    /// A commit seen before, pushed on top of the head by a forced push:
    /// an intentional rollback, deploy.
    Rollback,
    /// Older than the head: do not deploy.
    Older {
        /// Why, in a sentence naming the commits and deploys.
        reason: String,
        /// The deploy that makes it older (the head's, or the newer
        /// commit's the chain names).
        newer_deploy: i64,
    },
}

impl Verdict {
    /// Whether the candidate may deploy.
    pub fn deploys(&self) -> bool {
        !matches!(self, Verdict::Older { .. })
    }
}

/// Judges whether `candidate` may deploy, given what the journal `known`s.
pub fn judge(candidate: &Candidate<'_>, known: &Known) -> Verdict {
    let Some(head) = &known.head else {
        return Verdict::Newer;
    };
    if candidate.sha == head.sha {
        return Verdict::Head;
    }
    if candidate.requested {
        return Verdict::Rollback;
    }
    let on_head = candidate.before == Some(head.sha.as_str());
    let rollback = on_head && (candidate.forced || !candidate.sender_reports_forced);
    if let Some(deploy) = known.seen {
        if rollback {
            return Verdict::Rollback;
        }
        let how = if on_head {
            "and this push on top of it is not forced"
        } else {
            "and this push does not start from it"
        };
        return Verdict::Older {
            reason: format!(
                "commit {} is older than commit {} (deploy #{}): this stack already \
                 deployed or superseded it (deploy #{deploy}), {how}",
                candidate.sha, head.sha, head.deploy_id
            ),
            newer_deploy: head.deploy_id,
        };
    }
    if let Some((newer, deploy)) = &known.precedes {
        if rollback {
            return Verdict::Rollback;
        }
        return Verdict::Older {
            reason: format!(
                "commit {} is older than commit {newer} (deploy #{deploy}): the push that \
                 brought {newer} started from it",
                candidate.sha
            ),
            newer_deploy: *deploy,
        };
    }
    Verdict::Newer
}

/// [`judge`] in each of the scopes that judge a deploy of one service
/// (each its own order, [`Scopes::judged_by`]), combined: older in any of
/// them is older (the first such verdict), else a rollback in any is one,
/// else the head of any is the head, else newer. Not the order of their
/// commits together: the newest of them may be the head of the lane,
/// deployed for another service, while this service's own commits moved
/// past the candidate.
pub fn judge_in_each(candidate: &Candidate<'_>, known: &[Known]) -> Verdict {
    let verdicts: Vec<Verdict> = known.iter().map(|k| judge(candidate, k)).collect();
    let rank = |v: &Verdict| match v {
        Verdict::Older { .. } => 0,
        Verdict::Rollback => 1,
        Verdict::Head => 2,
        Verdict::Newer => 3,
    };
    verdicts
        .into_iter()
        .min_by_key(rank)
        .unwrap_or(Verdict::Newer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deploy_is_judged_by_its_services_its_lane_and_the_whole_stacks_commits() {
        let lane = crate::queue::Lane {
            git_ref: Some("refs/heads/main".into()),
            repository: Some("acme/web".into()),
        };
        let main = "ref refs/heads/main acme/web";
        let whole = Scopes::of(&[], &lane);
        assert_eq!(whole.judged_by(), [(None, None)], "every scope's");
        assert_eq!(whole.recorded_as(), [WHOLE_STACK, main]);
        let named: Vec<String> = ["web", "worker", "web"].map(String::from).into();
        let scopes = Scopes::of(&named, &lane);
        assert_eq!(
            scopes.judged_by(),
            [
                (Some("web"), Some(vec!["service web", WHOLE_STACK, main])),
                (
                    Some("worker"),
                    Some(vec!["service worker", WHOLE_STACK, main])
                )
            ],
            "each service by its own commits"
        );
        assert_eq!(
            scopes.recorded_as(),
            ["service web", "service worker", main]
        );
        // A deploy naming no ref has no lane's; one naming no repository a
        // lane of the ref alone.
        let manual = Scopes::of(&named[..1], &crate::queue::Lane::default());
        assert_eq!(manual.recorded_as(), ["service web"]);
        let bare = crate::queue::Lane {
            repository: None,
            ..lane
        };
        assert_eq!(
            Scopes::of(&named[..1], &bare).recorded_as(),
            ["service web", "ref refs/heads/main"]
        );
    }

    /// Asserts `v` refuses the commit as older than deploy `newer`, saying `why`.
    #[test]
    fn a_commit_older_in_any_of_its_scopes_is_older_whatever_the_newest_of_them_says() {
        // web's own commits: 5 (#2), then 6 (#3); the lane's: 5 again
        // (#4, deployed for another service). 5 is the newest of them
        // together, and older for web.
        let own = Known {
            head: head("6", 3),
            seen: Some(2),
            precedes: None,
        };
        let lane = Known {
            head: head("5", 4),
            seen: Some(4),
            precedes: None,
        };
        let five = push("5", Some("a"), false);
        assert_older(
            &judge_in_each(&five, &[own.clone(), Known::default(), lane.clone()]),
            3,
            "already deployed or superseded it (deploy #2)",
        );
        assert_eq!(
            judge_in_each(&five, &[lane.clone(), Known::default()]),
            Verdict::Head
        );
        let rollback = Candidate {
            requested: true,
            ..five
        };
        assert_eq!(judge_in_each(&rollback, &[own, lane]), Verdict::Rollback);
        assert_eq!(
            judge_in_each(&push("7", Some("6"), false), &[]),
            Verdict::Newer
        );
    }

    #[test]
    fn a_deploy_older_for_some_services_deploys_the_others_and_is_older_only_for_all() {
        let older = |reason: &str, newer_deploy| Verdict::Older {
            reason: reason.into(),
            newer_deploy,
        };
        assert_eq!(
            combine(vec![
                (Some("web"), older("web's tag", 3)),
                (Some("worker"), Verdict::Newer),
                (Some("cron"), Verdict::Head),
            ]),
            Combined::Deploy {
                narrowed: Some(vec!["worker".into(), "cron".into()]),
                left_out: vec![("web".into(), "web's tag".into())],
            }
        );
        assert_eq!(
            combine(vec![
                (Some("web"), Verdict::Newer),
                (Some("worker"), Verdict::Rollback)
            ]),
            Combined::Deploy {
                narrowed: None,
                left_out: vec![],
            }
        );
        assert_eq!(
            combine(vec![
                (Some("web"), older("first", 3)),
                (Some("worker"), older("second", 4))
            ]),
            Combined::Older {
                reason: "first".into(),
                newer_deploy: 3
            }
        );
        assert_eq!(
            combine(vec![(None, older("whole", 5))]),
            Combined::Older {
                reason: "whole".into(),
                newer_deploy: 5
            }
        );
        assert_eq!(
            combine(vec![(None, Verdict::Newer)]),
            Combined::Deploy {
                narrowed: None,
                left_out: vec![],
            }
        );
    }

    #[track_caller]
    fn assert_older(v: &Verdict, newer: i64, why: &str) {
        let Verdict::Older {
            reason,
            newer_deploy,
        } = v
        else {
            panic!("{v:?}")
        };
        assert_eq!(*newer_deploy, newer);
        assert!(reason.contains(why), "{reason}");
    }

    fn head(sha: &str, id: i64) -> Option<Head> {
        Some(Head {
            sha: sha.into(),
            deploy_id: id,
        })
    }

    fn push<'a>(sha: &'a str, before: Option<&'a str>, forced: bool) -> Candidate<'a> {
        Candidate {
            sha,
            before,
            forced,
            sender_reports_forced: true,
            requested: false,
        }
    }

    #[test]
    fn a_stack_without_a_head_deploys_anything() {
        assert_eq!(
            judge(&push("a", None, false), &Known::default()),
            Verdict::Newer
        );
    }

    #[test]
    fn an_unknown_commit_is_newer() {
        let known = Known {
            head: head("b", 2),
            ..Known::default()
        };
        assert_eq!(judge(&push("c", Some("b"), false), &known), Verdict::Newer);
        // Even when the sender gives no `before`, or another one.
        assert_eq!(judge(&push("c", None, false), &known), Verdict::Newer);
        assert_eq!(judge(&push("c", Some("x"), false), &known), Verdict::Newer);
    }

    #[test]
    fn the_head_itself_deploys_again() {
        let known = Known {
            head: head("b", 2),
            seen: Some(2),
            ..Known::default()
        };
        assert_eq!(judge(&push("b", Some("a"), false), &known), Verdict::Head);
    }

    #[test]
    fn a_commit_deployed_before_the_head_is_older() {
        // Deploy #1 was a, deploy #2 b: a delayed delivery of a's push.
        let known = Known {
            head: head("b", 2),
            seen: Some(1),
            ..Known::default()
        };
        let v = judge(&push("a", Some("0"), false), &known);
        assert_older(&v, 2, "commit a is older than commit b (deploy #2)");
        // A forced push that does not start from the head proves nothing.
        assert!(!judge(&push("a", Some("x"), true), &known).deploys());
    }

    #[test]
    fn a_commit_the_chain_puts_before_a_seen_one_is_older() {
        // a was never deployed here, but b's push started from a.
        let known = Known {
            head: head("c", 3),
            seen: None,
            precedes: Some(("b".into(), 2)),
        };
        let v = judge(&push("a", None, false), &known);
        assert_older(&v, 2, "the push that brought b started from it");
    }

    #[test]
    fn a_forced_push_from_the_head_back_to_a_seen_commit_is_a_rollback() {
        let known = Known {
            head: head("b", 2),
            seen: Some(1),
            precedes: Some(("b".into(), 2)),
        };
        assert_eq!(
            judge(&push("a", Some("b"), true), &known),
            Verdict::Rollback
        );
        // The same push not forced, from a sender that says so, is a replay
        // of an old push or a fast-forward to a commit already superseded.
        assert!(!judge(&push("a", Some("b"), false), &known).deploys());
    }

    #[test]
    fn without_a_forced_flag_the_chain_from_the_head_is_enough() {
        let known = Known {
            head: head("b", 2),
            seen: Some(1),
            ..Known::default()
        };
        let gitlab = Candidate {
            sha: "a",
            before: Some("b"),
            forced: false,
            sender_reports_forced: false,
            requested: false,
        };
        assert_eq!(judge(&gitlab, &known), Verdict::Rollback);
        let elsewhere = Candidate {
            before: Some("x"),
            ..gitlab
        };
        assert!(!judge(&elsewhere, &known).deploys());
    }

    #[test]
    fn an_operators_redeploy_of_an_older_commit_is_a_rollback() {
        // Deploy #1 was a, #2 b, and b's push started from a: both rules
        // that make a older hold, and the operator's request still wins.
        let known = Known {
            head: head("b", 2),
            seen: Some(1),
            precedes: Some(("b".into(), 2)),
        };
        let requested = Candidate {
            requested: true,
            ..push("a", None, false)
        };
        assert_eq!(judge(&requested, &known), Verdict::Rollback);
        assert!(!judge(&push("a", None, false), &known).deploys());
        // Asking for the head is the head.
        let head_again = Candidate {
            requested: true,
            ..push("b", None, false)
        };
        assert_eq!(judge(&head_again, &known), Verdict::Head);
    }
}
