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
//! whole has one. Where those scopes together make the candidate the
//! head, it is judged again by each service's commits (with the whole
//! stack's) and by its lane's alone ([`judge_each`]): the newest commit of
//! them all may be one another service or lane deployed last.
//! [`judge`] and [`judge_each`] are pure functions of those facts and the
//! candidate push: no clock, no I/O, unit-tested here.
//!
//! A candidate is **older** when the stack has seen it before (it was
//! deployed or superseded), or when the chain shows it precedes a commit
//! the stack has seen (some push had `before` = this commit). An unknown
//! commit is newer, unless its push, redelivered late by the catch-up
//! (after the live push that followed it), started from a commit its lane
//! (one ref) had before the lane's head, without force
//! ([`started_behind`]). Two ways through remain for an intentional rollback: a
//! push whose `before` is the head itself, forced (or from a sender that
//! never says whether a push was forced, where the chain is all there is),
//! a deploy that names no commit (a manual trigger), which is never judged
//! here, and an operator's redeploy of an earlier deploy from `history`
//! ([`Candidate::requested`]), which names its commit on purpose.

/// The scope of the commits deployed to a whole stack (by a deploy that
/// names no service): they count for every service.
pub const WHOLE_STACK: &str = "";

/// The scope of the commits deployed to `service` (`service NAME`), or to
/// the whole stack ([`WHOLE_STACK`]) for `None`.
pub fn service_scope(service: Option<&str>) -> String {
    match service {
        Some(service) => format!("service {service}"),
        None => WHOLE_STACK.to_owned(),
    }
}

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
            let scope = service_scope(Some(service));
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

    /// The scopes whose commits judge the deploy: its services', the whole
    /// stack's and its lane's; `None` for a deploy of the whole stack,
    /// judged by every scope's.
    pub fn judged_by(&self) -> Option<Vec<&str>> {
        if self.services.is_empty() {
            return None;
        }
        Some(
            self.services
                .iter()
                .map(String::as_str)
                .chain([WHOLE_STACK])
                .chain(self.lane.as_deref())
                .collect(),
        )
    }

    /// The groups of scopes the deploy is judged by again, one at a time,
    /// when all of them together make it the head
    /// ([`judge_each`]): each service's with the whole stack's (the whole
    /// stack's alone, for a deploy of the whole stack), and its lane's.
    pub fn each(&self) -> Vec<Vec<&str>> {
        let services = match self.services.is_empty() {
            true => vec![vec![WHOLE_STACK]],
            false => self
                .services
                .iter()
                .map(|service| vec![service.as_str(), WHOLE_STACK])
                .collect(),
        };
        services
            .into_iter()
            .chain(self.lane.as_deref().map(|lane| vec![lane]))
            .collect()
    }

    /// Its lane's scope, when it names a ref.
    pub fn lane(&self) -> Option<&str> {
        self.lane.as_deref()
    }

    /// The scope its lane's commits found behind the lane's head are
    /// recorded under ([`started_behind`]), when it names a ref: `behind
    /// ref REF REPOSITORY`, no scope a deploy is judged by or a head is
    /// read from.
    pub fn behind(&self) -> Option<String> {
        self.lane.as_deref().map(|lane| format!("{BEHIND}{lane}"))
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

/// The prefix of the scopes of commits found behind their lane's head
/// ([`Scopes::behind`]): those rows are read only by [`started_behind`]'s
/// question, never as a head or a commit that precedes another.
pub const BEHIND: &str = "behind ";

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
        let reason = if on_head {
            // A fast-forward back to a commit the stack moved away from (a
            // forced push back to the head, since): the push that brought
            // it the first time, sent again, looks the same.
            format!(
                "commit {} was deployed or superseded (deploy #{deploy}) before commit {} \
                 (deploy #{}) replaced it: a push from {} back to it that is not forced \
                 cannot be told from its first push sent again, so it deploys nothing \
                 (push it forced, or `redeploy trigger` deploys the branch)",
                candidate.sha, head.sha, head.deploy_id, head.sha
            )
        } else {
            format!(
                "commit {} is older than commit {} (deploy #{}): this stack already \
                 deployed or superseded it (deploy #{deploy}), and this push does not \
                 start from it",
                candidate.sha, head.sha, head.deploy_id
            )
        };
        return Verdict::Older {
            reason,
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

/// Whether a push of a commit none of its scopes knows ([`Verdict::Newer`]
/// by [`judge`]), delivered late, is still older, by where it starts: from
/// a commit its lane (one ref of one repository) deployed or superseded
/// before the lane's head (`before_seen`, that commit's newest deploy of
/// the lane; or a commit found behind the lane's head the same way,
/// [`Scopes::behind`]), by a push its sender says was not forced. A ref
/// moves off a commit without force only to a descendant, so the ref
/// passed through this commit on its way to the head. Only for senders
/// that report forced pushes, never for an operator's redeploy, and asked
/// by the journal only of a delivery the catch-up asked for again (missed
/// in an outage, it comes after the live pushes that followed it): a live
/// push after a forced one that GitHub delivered out of order, or after a
/// branch was recreated at an earlier commit, starts from such a commit
/// too, and must deploy.
pub fn started_behind(
    candidate: &Candidate<'_>,
    before_seen: Option<i64>,
    lane_head: Option<&Head>,
) -> Option<Verdict> {
    let before = candidate.before?;
    let head = lane_head?;
    let deploy = before_seen?;
    if candidate.requested
        || candidate.forced
        || !candidate.sender_reports_forced
        || before == head.sha
        || candidate.sha == head.sha
    {
        return None;
    }
    Some(Verdict::Older {
        reason: format!(
            "commit {} is older than commit {} (deploy #{}): the push that brought it \
             started from commit {before}, which its branch or tag had before that \
             (deploy #{deploy}), and was not forced, so the ref passed through it first",
            candidate.sha, head.sha, head.deploy_id
        ),
        newer_deploy: head.deploy_id,
    })
}

/// Judges whether `candidate` may deploy: by what the journal `known`s of
/// all its scopes together ([`Scopes::judged_by`]), then, when that says
/// it is the head, by each group of [`Scopes::each`] alone, what
/// `known_of` reads of one. The head of all scopes together is the newest
/// commit any of them deployed, which may be another service's or another
/// lane's: a commit one service deployed last is no head for a service
/// that moved past it, nor for a lane that did. When `each` covers every
/// scope the deploy is judged by (`older_too`: a deploy of some services),
/// an older commit of them all together is judged again too, and stays
/// older only if one group calls it so: together, "seen" may come from
/// one service's or the lane's commits and the head from another's, which
/// makes it older for none of them. A rollback is not judged again: a
/// forced push from the newest commit of them all is the latest move of
/// its ref, whatever commit a service deployed alone last. A commit none
/// of the scopes knows is newer for each.
pub fn judge_each<E>(
    candidate: &Candidate<'_>,
    known: &Known,
    each: &[Vec<&str>],
    older_too: bool,
    mut known_of: impl FnMut(&[&str]) -> Result<Known, E>,
) -> Result<Verdict, E> {
    let verdict = judge(candidate, known);
    let again = match verdict {
        Verdict::Head => true,
        Verdict::Older { .. } => older_too,
        Verdict::Newer | Verdict::Rollback => false,
    };
    if !again {
        return Ok(verdict);
    }
    let mut by_groups = Verdict::Newer;
    for scopes in each {
        match judge(candidate, &known_of(scopes)?) {
            Verdict::Older {
                reason,
                newer_deploy,
            } => {
                let of = match scopes.first().copied() {
                    Some(WHOLE_STACK) | None => "the whole stack".to_owned(),
                    Some(scope) => scope.to_owned(),
                };
                return Ok(Verdict::Older {
                    reason: format!("{reason} (judged for {of})"),
                    newer_deploy,
                });
            }
            Verdict::Newer => {}
            other => {
                if by_groups == Verdict::Newer {
                    by_groups = other;
                }
            }
        }
    }
    Ok(match verdict {
        Verdict::Head => verdict,
        _ => by_groups,
    })
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
        assert_eq!(whole.judged_by(), None, "every scope's");
        assert_eq!(whole.recorded_as(), [WHOLE_STACK, main]);
        let named: Vec<String> = ["web", "worker", "web"].map(String::from).into();
        let scopes = Scopes::of(&named, &lane);
        assert_eq!(
            scopes.judged_by(),
            Some(vec!["service web", "service worker", WHOLE_STACK, main])
        );
        assert_eq!(
            scopes.recorded_as(),
            ["service web", "service worker", main]
        );
        assert_eq!(
            scopes.each(),
            [
                vec!["service web", WHOLE_STACK],
                vec!["service worker", WHOLE_STACK],
                vec![main]
            ]
        );
        assert_eq!(whole.each(), [vec![WHOLE_STACK], vec![main]]);
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
        // of an old push or a fast-forward to a commit already superseded,
        // and says so.
        assert_older(
            &judge(&push("a", Some("b"), false), &known),
            2,
            "commit a was deployed or superseded (deploy #1) before commit b (deploy #2) \
             replaced it: a push from b back to it that is not forced cannot be told from \
             its first push sent again",
        );
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

    /// What [`judge_each`] is given: the scopes' `known`, and each group's.
    fn judged_each(candidate: &Candidate<'_>, known: &Known, each: &[(&str, Known)]) -> Verdict {
        let groups: Vec<Vec<&str>> = each.iter().map(|(scope, _)| vec![*scope]).collect();
        let mut asked = Vec::new();
        let verdict = judge_each(candidate, known, &groups, false, |scopes| {
            asked.push(scopes[0].to_owned());
            let (_, known) = each.iter().find(|(s, _)| *s == scopes[0]).unwrap();
            Ok::<_, ()>(known.clone())
        })
        .unwrap();
        // Only the head asks the groups.
        if judge(candidate, known) != Verdict::Head {
            assert!(asked.is_empty(), "{asked:?}");
        }
        verdict
    }

    #[test]
    fn a_head_another_service_deployed_is_older_for_a_service_that_moved_past_it() {
        // web had 5 (#2) then 6 (#3); worker then deployed 5 alone (#5),
        // which is the head of all of web's and worker's scopes together.
        let together = Known {
            head: head("5", 5),
            seen: Some(5),
            ..Known::default()
        };
        let web = Known {
            head: head("6", 3),
            seen: Some(2),
            ..Known::default()
        };
        let worker = Known {
            head: head("5", 5),
            seen: Some(5),
            ..Known::default()
        };
        let v = judged_each(
            &push("5", Some("a"), false),
            &together,
            &[
                ("service worker", worker.clone()),
                ("service web", web.clone()),
            ],
        );
        assert_older(&v, 3, "commit 5 is older than commit 6 (deploy #3)");
        let Verdict::Older { reason, .. } = v else {
            unreachable!()
        };
        assert!(reason.ends_with("(judged for service web)"), "{reason}");
        // A forced push from 5, the newest commit of them all, is a
        // rollback, for web too: the latest move of its ref.
        let forced = push("4", Some("5"), true);
        let together_4 = Known {
            seen: Some(1),
            ..together.clone()
        };
        let web_4 = Known {
            seen: Some(1),
            ..web.clone()
        };
        assert_eq!(
            judged_each(&forced, &together_4, &[("service web", web_4)]),
            Verdict::Rollback
        );
        // For worker alone, both deploy.
        assert_eq!(
            judged_each(
                &push("5", Some("a"), false),
                &together,
                &[("service worker", worker)]
            ),
            Verdict::Head
        );
        // A commit web never had is newer for it, though another service
        // deployed it last.
        let fresh = Known { seen: None, ..web };
        assert_eq!(
            judged_each(
                &push("5", Some("a"), false),
                &together,
                &[("service web", fresh)]
            ),
            Verdict::Head
        );
    }

    #[test]
    fn newer_older_and_rolled_back_commits_are_judged_once() {
        let known = Known {
            head: head("b", 2),
            seen: Some(1),
            ..Known::default()
        };
        let any = Known {
            head: head("z", 9),
            ..Known::default()
        };
        assert!(
            !judged_each(&push("a", Some("x"), false), &known, &[("g", any.clone())]).deploys()
        );
        assert_eq!(
            judged_each(
                &push("c", Some("b"), false),
                &Known::default(),
                &[("g", any)]
            ),
            Verdict::Newer
        );
        // A group that would call it older is not asked about a rollback.
        // (An older commit is, for a deploy whose groups cover its scopes:
        // `an_older_commit_of_the_scopes_together_is_judged_again_by_each_group`.)
        let stale = Known {
            head: head("z", 1),
            seen: Some(1),
            ..Known::default()
        };
        assert_eq!(
            judged_each(&push("a", Some("b"), true), &known, &[("g", stale)]),
            Verdict::Rollback
        );
    }

    #[test]
    fn an_older_commit_of_the_scopes_together_is_judged_again_by_each_group() {
        // worker deployed X on main (#2, seen in main's scope); web deployed
        // D on develop (#3, the head of web's scopes). Together X is older
        // than D; for web alone X is new, for main X is its head.
        let together = Known {
            head: head("D", 3),
            seen: Some(2),
            ..Known::default()
        };
        let web = Known {
            head: head("D", 3),
            ..Known::default()
        };
        let main = Known {
            head: head("X", 2),
            seen: Some(2),
            ..Known::default()
        };
        let groups = [vec!["service web"], vec!["ref main"]];
        let known_of = |scopes: &[&str]| {
            Ok::<_, ()>(match scopes[0] {
                "service web" => web.clone(),
                _ => main.clone(),
            })
        };
        let candidate = push("X", Some("G"), false);
        assert_eq!(
            judge_each(&candidate, &together, &groups, true, known_of).unwrap(),
            Verdict::Head
        );
        // Without groups covering every scope (a deploy of the whole
        // stack), older together stays older.
        assert!(!judge_each(&candidate, &together, &groups, false, known_of)
            .unwrap()
            .deploys());
        // Older for one group stays older.
        let older_main = Known {
            head: head("Y", 4),
            seen: Some(2),
            ..Known::default()
        };
        let v = judge_each(&candidate, &together, &groups, true, |scopes| {
            Ok::<_, ()>(match scopes[0] {
                "service web" => web.clone(),
                _ => older_main.clone(),
            })
        })
        .unwrap();
        assert_older(&v, 4, "(judged for ref main)");
    }

    #[test]
    fn a_push_that_started_behind_its_lanes_head_without_force_is_older() {
        let head = Head {
            sha: "e".into(),
            deploy_id: 5,
        };
        let push = |before: &'static str| Candidate {
            sha: "c",
            before: Some(before),
            forced: false,
            sender_reports_forced: true,
            requested: false,
        };
        // From a commit the lane had before its head (deploy 1): older.
        let v = started_behind(&push("a"), Some(1), Some(&head)).unwrap();
        assert_older(
            &v,
            5,
            "commit c is older than commit e (deploy #5): the push that brought it started \
             from commit a, which its branch or tag had before that (deploy #1), and was not \
             forced, so the ref passed through it first",
        );
        // From the head, from a commit the lane never had, with no head.
        assert_eq!(started_behind(&push("e"), Some(5), Some(&head)), None);
        assert_eq!(started_behind(&push("a"), None, Some(&head)), None);
        assert_eq!(started_behind(&push("a"), Some(1), None), None);
        // Forced, from a sender that never says, an operator's redeploy.
        for c in [
            Candidate {
                forced: true,
                ..push("a")
            },
            Candidate {
                sender_reports_forced: false,
                ..push("a")
            },
            Candidate {
                requested: true,
                ..push("a")
            },
        ] {
            assert_eq!(started_behind(&c, Some(1), Some(&head)), None, "{c:?}");
        }
    }
}
