//! The export review rules (R22) as pure functions: a caller's standing towards an export,
//! a reviewer's independence, what a vote binds to and whether that changed, and the quorum
//! transition a new vote makes. No store, no IO: `rpc.rs` reads and commits around them.

use shuyu_policy::Role;

use crate::admin::records::Principal;
use crate::error::{Refusal, Result, ServerError};
use crate::exports::records::{
    CheckVerdict, ExportDecision, ExportRecord, ExportStatus, ExportVote,
};

/// How a caller stands towards one export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Standing {
    /// A reviewer who belongs to no tenant or to another one: reviews, votes, revokes.
    Reviewer,
    /// An engineer of the requesting tenant, or a reviewer registered under it.
    TenantMember,
    /// A platform admin (only reaches exports to revoke them).
    Admin,
    /// An auditor (R35): reads every export, never its check evidence or a private note.
    Auditor,
}

/// The caller's standing towards `export`; `None` when it does not exist for them.
pub(crate) fn standing(principal: &Principal, export: &ExportRecord) -> Option<Standing> {
    let own_tenant = principal.tenant_id.as_deref() == Some(export.tenant_id.as_str());
    match principal.role {
        Role::Engineer if own_tenant => Some(Standing::TenantMember),
        Role::Reviewer if own_tenant => Some(Standing::TenantMember),
        Role::Reviewer => Some(Standing::Reviewer),
        Role::PlatformAdmin => Some(Standing::Admin),
        Role::Auditor => Some(Standing::Auditor),
        // Recipients reach their products through ListProducts, DownloadExport and DoGet.
        Role::Engineer | Role::DataSteward | Role::Recipient => None,
    }
}

/// Refuses the requester and every member of the requesting tenant.
pub(crate) fn require_independent(
    principal: &Principal,
    export: &ExportRecord,
    what: &str,
) -> Result<()> {
    if export.requester_id == principal.id {
        return Err(Refusal::AuthorCannotReview(format!(
            "a requester cannot {what} their own export"
        ))
        .into());
    }
    if standing(principal, export) == Some(Standing::TenantMember) {
        return Err(Refusal::NotIndependent(format!(
            "you are registered under tenant {}, which requested export {}: only reviewers \
             independent of the requesting tenant may {what} it",
            export.tenant_id, export.id
        ))
        .into());
    }
    Ok(())
}

/// Refuses a vote on an export that is not in review.
pub(crate) fn require_in_review(export: &ExportRecord) -> Result<()> {
    match export.status {
        ExportStatus::InReview => Ok(()),
        ExportStatus::Refused => Err(Refusal::ChecksFailed(format!(
            "export {} failed its automated checks and cannot be approved",
            export.id
        ))
        .into()),
        other => Err(Refusal::NotInReview(format!(
            "export {} is {}: only exports in review take votes",
            export.id,
            other.as_str()
        ))
        .into()),
    }
}

/// Approvals needed for an export requested under `export_quorum`: never below the policy's
/// (exports migrated from the single-reviewer gate carry a quorum of one).
pub(crate) fn quorum(export_quorum: u64, policy_quorum: u64) -> u64 {
    export_quorum.max(policy_quorum)
}

/// The approving votes among `votes`.
pub(crate) fn approvals(votes: &[ExportVote]) -> Vec<&ExportVote> {
    votes
        .iter()
        .filter(|v| v.decision == ExportDecision::Approve)
        .collect()
}

/// What is staged now, which every approval must still bind to.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Staged<'a> {
    /// The job's result hash, as recorded when it ran (and as votes bind to it).
    pub result_sha256: &'a str,
    /// The stored file's actual hash, computed now.
    pub stored_result_sha256: &'a str,
    /// The job's query hash.
    pub query_sha256: &'a str,
    /// The policy version in force.
    pub policy_version: &'a str,
}

/// Whether every approval still binds to what is staged now: the job's result hash (and the
/// stored file's actual hash), its query hash and the policy version in force, which must
/// also be the one the checks ran under.
pub(crate) fn verify_binding(
    export: &ExportRecord,
    staged: &Staged<'_>,
    votes: &[ExportVote],
) -> Result<()> {
    let changed = |what: &str| -> ServerError {
        Refusal::BindingChanged(format!(
            "{what} changed since it was reviewed; request a new export"
        ))
        .into()
    };
    let policy_version = staged.policy_version;
    if export
        .checks
        .iter()
        .any(|c| c.outcome == CheckVerdict::Fail)
    {
        return Err(Refusal::ChecksFailed("a failed check cannot be approved".into()).into());
    }
    if staged.stored_result_sha256 != staged.result_sha256 {
        return Err(changed("the staged result"));
    }
    if export.policy_version != policy_version {
        return Err(changed(&format!(
            "the policy (checked under {}, now {policy_version})",
            export.policy_version
        )));
    }
    for vote in approvals(votes) {
        if vote.result_sha256 != staged.result_sha256 {
            return Err(changed("the staged result"));
        }
        if vote.query_sha256 != staged.query_sha256 {
            return Err(changed("the query"));
        }
        if vote.policy_version != policy_version {
            return Err(changed(&format!(
                "the policy (approved by {} under {}, now {policy_version})",
                vote.reviewer_id, vote.policy_version
            )));
        }
    }
    Ok(())
}

/// The status an export in review moves to when a vote `decision` brings its approvals to
/// `n_approvals`: one reject or return ends the review, the quorum of approvals approves it.
pub(crate) fn transition(decision: ExportDecision, n_approvals: u64, quorum: u64) -> ExportStatus {
    match decision {
        ExportDecision::Reject => ExportStatus::Rejected,
        ExportDecision::Return => ExportStatus::Returned,
        ExportDecision::Approve if n_approvals >= quorum => ExportStatus::Approved,
        ExportDecision::Approve => ExportStatus::InReview,
    }
}

/// A vote counted: every vote so far (the new one last) and the status it leads to.
#[derive(Debug, Clone)]
pub(crate) struct Tally {
    pub votes: Vec<ExportVote>,
    pub to: ExportStatus,
}

impl Tally {
    /// The approving votes, in the order cast.
    pub(crate) fn approvals(&self) -> Vec<&ExportVote> {
        approvals(&self.votes)
    }
}

/// Counts `vote` on `export` (in review) after `votes`: one vote per reviewer; an approval
/// (when `staged` is given) only while every approval binds to what is staged; then the
/// quorum transition.
pub(crate) fn tally(
    export: &ExportRecord,
    mut votes: Vec<ExportVote>,
    vote: ExportVote,
    staged: Option<&Staged<'_>>,
    quorum: u64,
) -> Result<Tally> {
    if votes.iter().any(|v| v.reviewer_id == vote.reviewer_id) {
        return Err(Refusal::AlreadyVoted(format!(
            "you have already voted on export {}: one vote per reviewer",
            export.id
        ))
        .into());
    }
    let decision = vote.decision;
    votes.push(vote);
    if let Some(staged) = staged {
        verify_binding(export, staged, &votes)?;
    }
    let n_approvals = approvals(&votes).len() as u64;
    let to = transition(decision, n_approvals, quorum);
    Ok(Tally { votes, to })
}

#[cfg(test)]
mod tests {
    use expect_test::{Expect, expect};

    use super::*;

    /// Export `ex_1` of tenant `t_1`, requested by `eng` under policy `v1`, in review.
    fn export() -> ExportRecord {
        ExportRecord {
            id: "ex_1".into(),
            job_id: "job_1".into(),
            tenant_id: "t_1".into(),
            requester_id: "eng".into(),
            purpose: "a study".into(),
            format: "parquet".into(),
            status: ExportStatus::InReview,
            checks: Vec::new(),
            requested_at_ms: 10,
            decided_at_ms: 0,
            package_location: String::new(),
            package_sha256: String::new(),
            policy_version: "v1".into(),
            quorum: 2,
            recipient_id: "rec".into(),
            permitted_use: "research".into(),
            expires_in_days: 30,
            product: None,
            download_count: 0,
            last_download_at_ms: 0,
        }
    }

    /// `eng`: the requesting engineer; `eng2`: another engineer of `t_1`; `t1rev`: a
    /// reviewer registered under `t_1`; `t2rev`: one under `t_2`; `rev…`: reviewers of no
    /// tenant; `aud`, `admin`, `rec`.
    fn principal(id: &str) -> Principal {
        let (role, tenant) = match id {
            "eng" | "eng2" => (Role::Engineer, Some("t_1")),
            "t1rev" => (Role::Reviewer, Some("t_1")),
            "t2rev" => (Role::Reviewer, Some("t_2")),
            "aud" => (Role::Auditor, None),
            "admin" => (Role::PlatformAdmin, None),
            "rec" => (Role::Recipient, None),
            _ => (Role::Reviewer, None),
        };
        Principal {
            id: id.into(),
            real_name: id.into(),
            organisation: "org".into(),
            role,
            tenant_id: tenant.map(str::to_owned),
            created_at_ms: 0,
        }
    }

    /// `who:decision`, then optional bindings that differ from what is staged
    /// (`#r0` result hash, `?q0` query hash, `@v0` policy version).
    fn vote(spec: &str) -> ExportVote {
        let (who, rest) = spec.split_once(':').expect("who:decision");
        let mut parts = rest.split(['#', '?', '@']);
        let decision = match parts.next() {
            Some("approve") => ExportDecision::Approve,
            Some("reject") => ExportDecision::Reject,
            Some("return") => ExportDecision::Return,
            other => panic!("unknown decision {other:?}"),
        };
        let binding = |mark: char, staged: &str| {
            rest.split_once(mark)
                .map_or(staged, |(_, tail)| {
                    tail.split(['#', '?', '@']).next().unwrap_or("")
                })
                .to_owned()
        };
        ExportVote {
            reviewer_id: who.into(),
            decision,
            shared_comment: String::new(),
            private_comment: String::new(),
            result_sha256: binding('#', "r1"),
            query_sha256: binding('?', "q1"),
            policy_version: binding('@', "v1"),
            at_ms: 0,
        }
    }

    /// Casts `new` after the votes in `prior` (space-separated) on `export()` with `quorum`,
    /// as the vote RPC does, and compares the outcome: `in_review 1/2`, `approved 2/2`,
    /// `rejected`, `returned`, or the refusal's text. `staged` is `stored_hash policy` (the
    /// result and query staged are `r1` and `q1`).
    #[track_caller]
    fn check(quorum: u64, staged: &str, prior: &str, new: &str, expect: &str) {
        let actual = match cast(quorum, staged, prior, new) {
            Ok(tally) => decided(&tally, quorum),
            Err(e) => e.to_string(),
        };
        assert_eq!(actual, expect);
    }

    /// Casts `new` after `prior` as [`check`] describes, through the real rules.
    fn cast(quorum: u64, staged: &str, prior: &str, new: &str) -> Result<Tally> {
        let export = export();
        let (stored, policy) = staged.split_once(' ').expect("stored_hash policy");
        let staged = Staged {
            result_sha256: "r1",
            stored_result_sha256: stored,
            query_sha256: "q1",
            policy_version: policy,
        };
        let prior: Vec<ExportVote> = prior.split_whitespace().map(vote).collect();
        let new = vote(new);
        let voter = principal(&new.reviewer_id);
        let binds = (new.decision == ExportDecision::Approve).then_some(&staged);
        require_independent(&voter, &export, "vote on")
            .and_then(|()| require_in_review(&export))
            .and_then(|()| tally(&export, prior, new, binds, quorum))
    }

    /// `in_review 1/2`, `approved 2/2`, `rejected`, `returned`.
    fn decided(tally: &Tally, quorum: u64) -> String {
        match tally.to {
            ExportStatus::InReview | ExportStatus::Approved => {
                format!("{} {}/{quorum}", tally.to.as_str(), tally.approvals().len())
            }
            other => other.as_str().to_owned(),
        }
    }

    /// A refusal as its stable reason, or `ok`.
    fn reason_of<T>(result: &Result<T>) -> &'static str {
        match result {
            Ok(_) => "ok",
            Err(ServerError::Refused(refusal)) => refusal.reason(),
            Err(other) => panic!("a review rule answered {other:?}, not a refusal"),
        }
    }

    const OK: &str = "r1 v1";
    const CHANGED_RESULT: &str = "failed precondition: the staged result changed since it was reviewed; request a new export";

    #[test]
    fn quorum_transitions() {
        check(2, OK, "", "rev1:approve", "in_review 1/2");
        check(2, OK, "rev1:approve", "rev2:approve", "approved 2/2");
        check(1, OK, "", "rev1:approve", "approved 1/1");
        check(3, OK, "rev1:approve", "rev2:approve", "in_review 2/3");
        check(2, OK, "rev1:approve", "rev2:reject", "rejected");
        check(2, OK, "", "rev1:reject", "rejected");
        check(2, OK, "rev1:approve", "rev2:return", "returned");
        check(2, OK, "", "t2rev:approve", "in_review 1/2");
    }

    #[test]
    fn one_vote_per_reviewer() {
        let dup =
            "failed precondition: you have already voted on export ex_1: one vote per reviewer";
        check(2, OK, "rev1:approve", "rev1:approve", dup);
        check(2, OK, "rev1:return", "rev1:reject", dup);
    }

    #[test]
    fn only_independent_reviewers_vote() {
        check(
            2,
            OK,
            "",
            "eng:approve",
            "permission denied: a requester cannot vote on their own export",
        );
        let member = "permission denied: you are registered under tenant t_1, which requested \
                      export ex_1: only reviewers independent of the requesting tenant may vote on it";
        check(2, OK, "", "t1rev:approve", member);
        check(2, OK, "", "eng2:reject", member);
    }

    #[test]
    fn approvals_bind_to_what_is_staged() {
        check(2, "r2 v1", "", "rev1:approve", CHANGED_RESULT);
        check(2, OK, "rev1:approve#r0", "rev2:approve", CHANGED_RESULT);
        check(
            2,
            OK,
            "rev1:approve?q0",
            "rev2:approve",
            "failed precondition: the query changed since it was reviewed; request a new export",
        );
        check(
            2,
            OK,
            "rev1:approve@v0",
            "rev2:approve",
            "failed precondition: the policy (approved by rev1 under v0, now v1) changed since \
             it was reviewed; request a new export",
        );
        check(
            2,
            "r1 v2",
            "",
            "rev1:approve@v2",
            "failed precondition: the policy (checked under v1, now v2) changed since it was \
             reviewed; request a new export",
        );
        // A rejection or return ends the review whatever changed; a stale rejection is no
        // approval.
        check(2, "r2 v1", "rev1:approve#r0", "rev2:reject", "rejected");
        check(2, OK, "rev1:reject#r0", "rev2:approve", "in_review 1/2");
    }

    #[test]
    fn standings() {
        let export = export();
        let of = |id: &str| standing(&principal(id), &export);
        assert_eq!(of("eng"), Some(Standing::TenantMember));
        assert_eq!(of("t1rev"), Some(Standing::TenantMember));
        assert_eq!(of("t2rev"), Some(Standing::Reviewer));
        assert_eq!(of("rev1"), Some(Standing::Reviewer));
        assert_eq!(of("admin"), Some(Standing::Admin));
        assert_eq!(of("aud"), Some(Standing::Auditor));
        assert_eq!(of("rec"), None);
        assert_eq!(quorum(1, 2), 2);
        assert_eq!(quorum(3, 2), 3);
    }

    #[test]
    fn only_exports_in_review_take_votes() {
        let mut done = export();
        done.status = ExportStatus::Approved;
        assert_eq!(
            require_in_review(&done).map_err(|e| e.to_string()),
            Err(
                "failed precondition: export ex_1 is approved: only exports in review take votes"
                    .into()
            )
        );
    }
    // Snapshots: each table below is computed by the rules above, one line per case, so a
    // change in any rule shows as a diff. `UPDATE_EXPECT=1 cargo nextest run -p shuyu-server
    // review` rewrites them after a deliberate change.

    /// Votes on `export()`: `(quorum, staged, prior votes, new vote)` as [`check`] reads them.
    /// These rules leave roles to the call's authorisation: `aud` shows what they alone
    /// decide, though an auditor's vote is refused before them (the role may not vote).
    const VOTES: &[(u64, &str, &str, &str)] = &[
        (1, OK, "", "rev1:approve"),
        (2, OK, "", "rev1:approve"),
        (2, OK, "rev1:approve", "rev2:approve"),
        (2, OK, "rev1:approve", "rev2:reject"),
        (2, OK, "rev1:approve", "rev2:return"),
        (2, OK, "rev1:reject", "rev2:approve"),
        (3, OK, "rev1:approve", "rev2:approve"),
        (3, OK, "rev1:approve rev2:approve", "rev3:approve"),
        (3, OK, "rev1:approve rev2:approve", "t2rev:approve"),
        (2, OK, "rev1:approve", "rev1:approve"),
        (2, OK, "rev1:return", "rev1:reject"),
        (2, OK, "", "eng:approve"),
        (2, OK, "", "eng2:reject"),
        (2, OK, "", "t1rev:approve"),
        (2, OK, "", "aud:approve"),
        (2, "r2 v1", "", "rev1:approve"),
        (2, "r2 v1", "", "rev1:reject"),
        (2, "r1 v2", "", "rev1:approve@v2"),
        (2, OK, "rev1:approve#r0", "rev2:approve"),
        (2, OK, "rev1:approve?q0", "rev2:approve"),
        (2, OK, "rev1:approve@v0", "rev2:approve"),
        (2, OK, "rev1:approve#r0", "rev2:return"),
        (2, OK, "rev1:reject#r0", "rev2:approve"),
    ];

    #[track_caller]
    fn snapshot(lines: Vec<String>, expect: Expect) {
        expect.assert_eq(&(lines.join("\n") + "\n"));
    }

    #[test]
    fn vote_outcomes_snapshot() {
        let lines = VOTES
            .iter()
            .map(|&(quorum, staged, prior, new)| {
                let outcome = cast(quorum, staged, prior, new);
                let decision = match &outcome {
                    Ok(tally) => decided(tally, quorum),
                    Err(_) => format!("refused {}", reason_of(&outcome)),
                };
                let prior = if prior.is_empty() { "-" } else { prior };
                format!("quorum {quorum} | staged {staged:5} | {prior:25} + {new:16} => {decision}")
            })
            .collect();
        snapshot(
            lines,
            expect![[r#"
            quorum 1 | staged r1 v1 | -                         + rev1:approve     => approved 1/1
            quorum 2 | staged r1 v1 | -                         + rev1:approve     => in_review 1/2
            quorum 2 | staged r1 v1 | rev1:approve              + rev2:approve     => approved 2/2
            quorum 2 | staged r1 v1 | rev1:approve              + rev2:reject      => rejected
            quorum 2 | staged r1 v1 | rev1:approve              + rev2:return      => returned
            quorum 2 | staged r1 v1 | rev1:reject               + rev2:approve     => in_review 1/2
            quorum 3 | staged r1 v1 | rev1:approve              + rev2:approve     => in_review 2/3
            quorum 3 | staged r1 v1 | rev1:approve rev2:approve + rev3:approve     => approved 3/3
            quorum 3 | staged r1 v1 | rev1:approve rev2:approve + t2rev:approve    => approved 3/3
            quorum 2 | staged r1 v1 | rev1:approve              + rev1:approve     => refused ALREADY_VOTED
            quorum 2 | staged r1 v1 | rev1:return               + rev1:reject      => refused ALREADY_VOTED
            quorum 2 | staged r1 v1 | -                         + eng:approve      => refused AUTHOR_CANNOT_REVIEW
            quorum 2 | staged r1 v1 | -                         + eng2:reject      => refused NOT_INDEPENDENT
            quorum 2 | staged r1 v1 | -                         + t1rev:approve    => refused NOT_INDEPENDENT
            quorum 2 | staged r1 v1 | -                         + aud:approve      => in_review 1/2
            quorum 2 | staged r2 v1 | -                         + rev1:approve     => refused BINDING_CHANGED
            quorum 2 | staged r2 v1 | -                         + rev1:reject      => rejected
            quorum 2 | staged r1 v2 | -                         + rev1:approve@v2  => refused BINDING_CHANGED
            quorum 2 | staged r1 v1 | rev1:approve#r0           + rev2:approve     => refused BINDING_CHANGED
            quorum 2 | staged r1 v1 | rev1:approve?q0           + rev2:approve     => refused BINDING_CHANGED
            quorum 2 | staged r1 v1 | rev1:approve@v0           + rev2:approve     => refused BINDING_CHANGED
            quorum 2 | staged r1 v1 | rev1:approve#r0           + rev2:return      => returned
            quorum 2 | staged r1 v1 | rev1:reject#r0            + rev2:approve     => in_review 1/2
        "#]],
        );
    }

    #[test]
    fn transition_snapshot() {
        let mut lines = Vec::new();
        for quorum in 1..=3 {
            for decision in [
                ExportDecision::Approve,
                ExportDecision::Reject,
                ExportDecision::Return,
            ] {
                let row: Vec<String> = (0..=3)
                    .map(|n| format!("{n}:{}", transition(decision, n, quorum).as_str()))
                    .collect();
                lines.push(format!(
                    "quorum {quorum} {:7} {}",
                    decision.as_str(),
                    row.join(" ")
                ));
            }
        }
        snapshot(
            lines,
            expect![[r#"
            quorum 1 approve 0:in_review 1:approved 2:approved 3:approved
            quorum 1 reject  0:rejected 1:rejected 2:rejected 3:rejected
            quorum 1 return  0:returned 1:returned 2:returned 3:returned
            quorum 2 approve 0:in_review 1:in_review 2:approved 3:approved
            quorum 2 reject  0:rejected 1:rejected 2:rejected 3:rejected
            quorum 2 return  0:returned 1:returned 2:returned 3:returned
            quorum 3 approve 0:in_review 1:in_review 2:in_review 3:approved
            quorum 3 reject  0:rejected 1:rejected 2:rejected 3:rejected
            quorum 3 return  0:returned 1:returned 2:returned 3:returned
        "#]],
        );
    }

    #[test]
    fn standing_snapshot() {
        let export = export();
        let lines = [
            "eng", "eng2", "t1rev", "t2rev", "rev1", "admin", "aud", "rec",
        ]
        .iter()
        .map(|id| {
            let p = principal(id);
            let standing =
                standing(&p, &export).map_or_else(|| "none".to_owned(), |s| format!("{s:?}"));
            format!(
                "{id:6} {:13} tenant {:4} | standing {standing:12} | independent {}",
                p.role.as_str(),
                p.tenant_id.as_deref().unwrap_or("-"),
                reason_of(&require_independent(&p, &export, "vote on")),
            )
        })
        .collect();
        snapshot(
            lines,
            expect![[r#"
            eng    engineer      tenant t_1  | standing TenantMember | independent AUTHOR_CANNOT_REVIEW
            eng2   engineer      tenant t_1  | standing TenantMember | independent NOT_INDEPENDENT
            t1rev  reviewer      tenant t_1  | standing TenantMember | independent NOT_INDEPENDENT
            t2rev  reviewer      tenant t_2  | standing Reviewer     | independent ok
            rev1   reviewer      tenant -    | standing Reviewer     | independent ok
            admin  admin         tenant -    | standing Admin        | independent ok
            aud    auditor       tenant -    | standing Auditor      | independent ok
            rec    recipient     tenant -    | standing none         | independent ok
        "#]],
        );
    }

    #[test]
    fn status_and_quorum_snapshot() {
        let mut lines: Vec<String> = [
            ExportStatus::Refused,
            ExportStatus::InReview,
            ExportStatus::Approved,
            ExportStatus::Rejected,
            ExportStatus::Returned,
            ExportStatus::Revoked,
            ExportStatus::Expired,
        ]
        .into_iter()
        .map(|status| {
            let mut e = export();
            e.status = status;
            format!(
                "{:9} takes votes: {}",
                status.as_str(),
                reason_of(&require_in_review(&e))
            )
        })
        .collect();
        for (export_quorum, policy_quorum) in [(1, 2), (2, 2), (3, 2), (0, 1)] {
            lines.push(format!(
                "export quorum {export_quorum}, policy {policy_quorum} => {}",
                quorum(export_quorum, policy_quorum)
            ));
        }
        snapshot(
            lines,
            expect![[r#"
            refused   takes votes: CHECKS_FAILED
            in_review takes votes: ok
            approved  takes votes: NOT_IN_REVIEW
            rejected  takes votes: NOT_IN_REVIEW
            returned  takes votes: NOT_IN_REVIEW
            revoked   takes votes: NOT_IN_REVIEW
            expired   takes votes: NOT_IN_REVIEW
            export quorum 1, policy 2 => 2
            export quorum 2, policy 2 => 2
            export quorum 3, policy 2 => 3
            export quorum 0, policy 1 => 1
        "#]],
        );
    }
}
