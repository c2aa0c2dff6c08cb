//! The export review workflow (R22) over mTLS against the real server: a quorum of
//! independent reviewers, blinded votes, comments, the binding of every approval to the
//! staged result, the query and the policy, returns, rejections, revocation, concurrent
//! votes, and the audit trail of every transition.

use std::path::PathBuf;

use shuyu_client::{Client, ClientError, v1 as pb};
use tonic::Code;

use crate::harness::fixtures::*;
use crate::harness::*;

const AGGREGATE_SQL: &str =
    "SELECT district, count(*) AS n, avg(cost) AS avg_cost FROM residents GROUP BY district";

/// The default policy with another version and, optionally, another review quorum.
fn policy_with(version: &str, quorum: Option<u64>) -> String {
    let default = include_str!("../../../../policies/default.toml");
    let mut changed = (false, quorum.is_none());
    let text = default
        .lines()
        .map(|line| {
            if line.starts_with("version = ") {
                changed.0 = true;
                format!("version = \"{version}\"")
            } else if let Some(q) = quorum.filter(|_| line.starts_with("quorum = ")) {
                changed.1 = true;
                format!("quorum = {q}")
            } else {
                line.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    assert_eq!(changed, (true, true), "the default policy's layout changed");
    text
}

async fn principal_id(client: &mut Client) -> String {
    client
        .session
        .who_am_i(pb::WhoAmIRequest {})
        .await
        .unwrap()
        .into_inner()
        .principal
        .unwrap()
        .id
}

async fn get(client: &mut Client, export_id: &str) -> pb::Export {
    client
        .exports
        .get_export(pb::GetExportRequest {
            export_id: export_id.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .export
        .unwrap()
}

async fn comment(
    client: &mut Client,
    export_id: &str,
    text: &str,
    private: bool,
) -> Result<pb::Export, tonic::Status> {
    client
        .exports
        .comment_export(pb::CommentExportRequest {
            export_id: export_id.into(),
            text: text.into(),
            private,
        })
        .await
        .map(|r| r.into_inner().export.expect("export"))
}

async fn revoke(
    client: &mut Client,
    export_id: &str,
    reason: &str,
) -> Result<pb::Export, tonic::Status> {
    client
        .exports
        .revoke_export(pb::RevokeExportRequest {
            export_id: export_id.into(),
            reason: reason.into(),
        })
        .await
        .map(|r| r.into_inner().export.expect("export"))
}

/// The stable reason of a refused call, which must have had code `expected`.
fn refusal_of(result: Result<pb::Export, tonic::Status>, expected: Code) -> String {
    match result {
        Err(status) => {
            assert_eq!(status.code(), expected, "{status:?}");
            reason(&status)
        }
        Ok(export) => panic!("expected {expected:?}, got {export:?}"),
    }
}

fn message(result: Result<pb::Export, tonic::Status>, expected: Code) -> String {
    match result {
        Err(status) => {
            assert_eq!(status.code(), expected, "{status:?}");
            status.message().to_owned()
        }
        Ok(export) => panic!("expected {expected:?}, got {export:?}"),
    }
}

/// A dataset granted to the people's tenant, an approved scenario and a succeeded aggregate
/// production job over it.
async fn aggregate_job(p: &mut People) -> pb::Job {
    let dataset = ingest_people(&mut p.steward, "residents").await;
    grant(&mut p.admin, &dataset.id, &p.tenant_id).await;
    let sc = scenario(p, &[&dataset]).await;
    let job = p.engineer.run_sql(AGGREGATE_SQL, &sc, WAIT).await.unwrap();
    assert_eq!(job.status, pb::JobStatus::Succeeded as i32, "{}", job.error);
    job
}

/// The staged result file of a production job, on disk (under its scenario's results).
fn result_file(domain: &Domain, tenant_id: &str, job_id: &str) -> PathBuf {
    let tenant = domain.data.join("objects/results").join(tenant_id);
    let found: Vec<PathBuf> = std::fs::read_dir(&tenant)
        .unwrap()
        .map(|e| e.unwrap().path().join(job_id).join("result.parquet"))
        .filter(|p| p.is_file())
        .collect();
    assert_eq!(
        found.len(),
        1,
        "no staged result of {job_id} under {}",
        tenant.display()
    );
    found[0].clone()
}

/// Package files stored for an export.
/// Every file stored for an export: its package (`.pkg`) and, for a CSV product, the
/// Parquet copy served over Flight (`.flight`) of the same build.
fn export_files(domain: &Domain, tenant_id: &str, export_id: &str) -> Vec<PathBuf> {
    let dir = domain
        .data
        .join("objects/exports")
        .join(tenant_id)
        .join(export_id);
    if dir.exists() { walk(&dir) } else { Vec::new() }
}

/// The packages stored for an export, each checked to have nothing beside it but its own
/// Flight copy.
fn package_files(domain: &Domain, tenant_id: &str, export_id: &str) -> Vec<PathBuf> {
    let files = export_files(domain, tenant_id, export_id);
    let packages: Vec<PathBuf> = files
        .iter()
        .filter(|f| f.extension().is_some_and(|e| e == "pkg"))
        .cloned()
        .collect();
    for other in files.iter().filter(|f| !packages.contains(f)) {
        assert!(
            packages.contains(&other.with_extension("pkg"))
                && other.extension().is_some_and(|e| e == "flight"),
            "{other:?} is stored beside the packages {packages:?}"
        );
    }
    packages
}

async fn audit_records(auditor: &mut Client) -> Vec<pb::AuditRecord> {
    let report = auditor
        .audit
        .verify_audit(pb::VerifyAuditRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(
        report.ok,
        "the audit chain does not verify: {}",
        report.problem
    );
    auditor
        .audit
        .list_audit_records(pb::ListAuditRecordsRequest {
            after_seq: 0,
            limit: 1000,
        })
        .await
        .unwrap()
        .into_inner()
        .records
}

/// Every event of the export is a transition some successful audit record states.
fn assert_transitions_audited(export: &pb::Export, records: &[pb::AuditRecord]) {
    assert!(!export.events.is_empty());
    let target = format!("export:{}", export.id);
    for event in &export.events {
        let found = records.iter().any(|r| {
            r.outcome == "ok"
                && r.target.split_whitespace().any(|t| t == target)
                && serde_json::from_str::<serde_json::Value>(&r.detail_json)
                    .ok()
                    .and_then(|d| d.get("transitions").cloned())
                    .and_then(|t| t.as_array().cloned())
                    .is_some_and(|steps| {
                        steps.iter().any(|s| {
                            s[0] == event.from_status.as_str() && s[1] == event.to_status.as_str()
                        })
                    })
        });
        assert!(
            found,
            "transition {} → {} of {} is not in the audit trail",
            event.from_status, event.to_status, export.id
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_quorum_of_blinded_votes_approves_and_revocation_stops_the_download() {
    let domain = Domain::new();
    let server = domain.start();
    let mut p = people(&server, &domain, "q").await;
    let reviewer_a = principal_id(&mut p.reviewer).await;
    let reviewer_b = principal_id(&mut p.reviewer2).await;
    let job = aggregate_job(&mut p).await;
    let export = request_export(&mut p, &job.id).await;
    assert_eq!(export.status, pb::ExportStatus::InReview as i32);
    assert_eq!((export.approvals, export.quorum), (0, 2));
    let steps: Vec<(&str, &str)> = export
        .events
        .iter()
        .map(|e| (e.from_status.as_str(), e.to_status.as_str()))
        .collect();
    assert_eq!(
        steps,
        [("", "submitted"), ("submitted", "in_review")],
        "submitted and checked are the first two events"
    );

    // Comments: the engineer answers in shared comments, never private ones.
    comment(
        &mut p.engineer,
        &export.id,
        "ENGINEER-NOTE: 按区县汇总",
        false,
    )
    .await
    .unwrap();
    let private = comment(&mut p.engineer, &export.id, "secret", true).await;
    assert_eq!(denied_code(private), Code::PermissionDenied);
    comment(&mut p.reviewer, &export.id, "REVIEWER-PRIVATE-NOTE", true)
        .await
        .unwrap();
    comment(
        &mut p.reviewer,
        &export.id,
        "REVIEWER-SHARED-QUESTION",
        false,
    )
    .await
    .unwrap();
    let too_long = comment(&mut p.reviewer, &export.id, &"长".repeat(4001), false).await;
    assert_eq!(denied_code(too_long), Code::InvalidArgument);

    // The first approval leaves the export in review; its voter sees their vote.
    let first = vote(
        &mut p.reviewer,
        &export.id,
        pb::ExportDecision::Approve,
        "VOTE-A-SHARED",
        "VOTE-A-PRIVATE",
    )
    .await
    .unwrap();
    assert_eq!(first.status, pb::ExportStatus::InReview as i32);
    assert_eq!((first.approvals, first.quorum, first.n_votes), (1, 2, 1));
    assert!(first.voted);
    assert_eq!(first.votes.len(), 1);
    let a_vote = &first.votes[0];
    assert_eq!(a_vote.reviewer_id, reviewer_a);
    assert_eq!(a_vote.private_comment, "VOTE-A-PRIVATE");
    assert_eq!(a_vote.query_sha256, job.query_sha256);
    assert_eq!(a_vote.result_sha256.len(), 64);
    assert!(!a_vote.policy_version.is_empty());

    // Blinding: reviewer B sees how many votes exist, not what they are.
    let before = get(&mut p.reviewer2, &export.id).await;
    assert_eq!((before.n_votes, before.approvals), (1, 1));
    assert!(before.votes.is_empty() && !before.voted, "{before:?}");
    assert!(!format!("{before:?}").contains("VOTE-A-"), "{before:?}");
    // Reviewers read every standalone comment, private ones included.
    assert!(
        before
            .comments
            .iter()
            .any(|c| c.private && c.text == "REVIEWER-PRIVATE-NOTE")
    );
    let queue = p
        .reviewer2
        .exports
        .list_exports(pb::ListExportsRequest {})
        .await
        .unwrap()
        .into_inner()
        .exports;
    let queued = queue.iter().find(|e| e.id == export.id).expect("queued");
    assert!(queued.votes.is_empty() && queued.n_votes == 1);

    // The engineer: status, approvals against the quorum, shared comments; no vote, no
    // private comment, no reviewer's identity.
    let seen = get(&mut p.engineer, &export.id).await;
    assert_eq!((seen.approvals, seen.quorum), (1, 2));
    assert!(seen.votes.is_empty() && seen.n_votes == 0 && !seen.voted);
    let text = format!("{seen:?}");
    for hidden in [
        "VOTE-A-SHARED",
        "VOTE-A-PRIVATE",
        "REVIEWER-PRIVATE-NOTE",
        &reviewer_a,
    ] {
        assert!(
            !text.contains(hidden),
            "{hidden} reached the engineer: {text}"
        );
    }
    assert!(text.contains("REVIEWER-SHARED-QUESTION") && text.contains("ENGINEER-NOTE"));

    // One vote per reviewer.
    let twice = vote(
        &mut p.reviewer,
        &export.id,
        pb::ExportDecision::Reject,
        "changed my mind",
        "",
    )
    .await;
    assert_eq!(refusal_of(twice, Code::FailedPrecondition), "ALREADY_VOTED");

    // The second approval reaches the quorum: approved, and B now sees both votes.
    let approved = vote(
        &mut p.reviewer2,
        &export.id,
        pb::ExportDecision::Approve,
        "VOTE-B-SHARED",
        "VOTE-B-PRIVATE",
    )
    .await
    .unwrap();
    assert_eq!(approved.status, pb::ExportStatus::Approved as i32);
    assert_eq!(approved.approvals, 2);
    let voters: Vec<&str> = approved
        .votes
        .iter()
        .map(|v| v.reviewer_id.as_str())
        .collect();
    assert_eq!(voters, [reviewer_a.as_str(), reviewer_b.as_str()]);
    assert!(!approved.package_sha256.is_empty());
    assert_eq!(package_files(&domain, &p.tenant_id, &export.id).len(), 1);

    // Once the review has ended the engineer reads the votes' shared comments, still no
    // vote and no private text.
    let after = get(&mut p.engineer, &export.id).await;
    assert!(after.votes.is_empty());
    let shared: Vec<&str> = after
        .comments
        .iter()
        .filter(|c| c.from_vote)
        .map(|c| c.text.as_str())
        .collect();
    assert_eq!(shared, ["VOTE-A-SHARED", "VOTE-B-SHARED"]);
    let text = format!("{after:?}");
    for hidden in [
        "VOTE-A-PRIVATE",
        "VOTE-B-PRIVATE",
        "REVIEWER-PRIVATE-NOTE",
        &reviewer_a,
        &reviewer_b,
    ] {
        assert!(
            !text.contains(hidden),
            "{hidden} reached the engineer: {text}"
        );
    }

    // The package downloads, verifies, and names both approvals and what they bound to.
    let package = p.recipient.download(&export.id).await.unwrap();
    let key = std::fs::read_to_string(domain.data.join("domain-signing.pub")).unwrap();
    let manifest = shuyu_verify::package::verify(&package, Some(key.trim()))
        .expect("the package verifies")
        .manifest;
    assert_eq!(manifest.quorum, 2);
    let approvers: Vec<&str> = manifest
        .approvals
        .iter()
        .map(|a| a.reviewer_id.as_str())
        .collect();
    assert_eq!(approvers, [reviewer_a.as_str(), reviewer_b.as_str()]);
    assert!(
        manifest
            .approvals
            .iter()
            .all(|a| a.result_sha256 == a_vote.result_sha256 && a.query_sha256 == job.query_sha256)
    );
    assert!(
        !contains(&package, b"PRIVATE"),
        "a private note in the package"
    );
    let path = domain.data.with_extension("review.tar");
    std::fs::write(&path, &package).unwrap();
    let verified = run_bin(&[
        "export",
        "verify",
        path.to_str().unwrap(),
        "--public-key",
        domain.data.join("domain-signing.pub").to_str().unwrap(),
    ]);
    assert!(
        verified.status.success(),
        "{}",
        String::from_utf8_lossy(&verified.stderr)
    );

    // Revocation: engineers cannot, a reason is required; then the download is refused.
    let by_engineer = revoke(&mut p.engineer, &export.id, "no").await;
    assert_eq!(denied_code(by_engineer), Code::PermissionDenied);
    let no_reason = revoke(&mut p.reviewer, &export.id, "  ").await;
    assert_eq!(denied_code(no_reason), Code::InvalidArgument);
    let revoked = revoke(&mut p.reviewer, &export.id, "用途超出场景范围")
        .await
        .unwrap();
    assert_eq!(revoked.status, pb::ExportStatus::Revoked as i32);
    let refused = p.recipient.download(&export.id).await;
    match refused {
        Err(ClientError::Status(status)) => {
            assert_eq!(status.code(), Code::FailedPrecondition);
            assert_eq!(reason(&status), "EXPORT_REVOKED");
        }
        other => panic!("a revoked export downloaded: {other:?}"),
    }
    let again = revoke(&mut p.reviewer2, &export.id, "twice").await;
    assert!(message(again, Code::FailedPrecondition).contains("only an approved export"));

    // Every transition is in the audit trail, and the chain verifies.
    let history = get(&mut p.reviewer, &export.id).await;
    let steps: Vec<&str> = history
        .events
        .iter()
        .map(|e| e.to_status.as_str())
        .collect();
    assert_eq!(steps, ["submitted", "in_review", "approved", "revoked"]);
    let records = audit_records(&mut p.auditor).await;
    assert_transitions_audited(&history, &records);
    for (action, outcome) in [
        ("comment_export", "ok"),
        ("comment_export", "denied"),
        ("vote_export", "ok"),
        ("vote_export", "invalid"),
        ("revoke_export", "ok"),
        ("revoke_export", "denied"),
        ("download_export", "invalid"),
    ] {
        assert!(
            records
                .iter()
                .any(|r| r.action == action && r.outcome == outcome),
            "no {outcome} {action} record"
        );
    }
    // Comments and votes are audited by hash, never by text.
    let trail = format!("{records:?}");
    for text in [
        "VOTE-A-",
        "VOTE-B-",
        "REVIEWER-",
        "ENGINEER-NOTE",
        "用途超出",
    ] {
        assert!(!trail.contains(text), "{text} in the audit trail");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn only_independent_reviewers_vote_and_a_reject_or_return_ends_the_review() {
    let domain = Domain::new();
    let server = domain.start();
    let mut p = people(&server, &domain, "i").await;
    let own = register(
        &mut p.admin,
        &domain,
        "reviewer-own-i",
        pb::Role::Reviewer,
        &p.tenant_id,
    )
    .await;
    let mut own_reviewer = server.client(&own).await;
    let job = aggregate_job(&mut p).await;
    let export = request_export(&mut p, &job.id).await;

    // The requester never votes; nor does a reviewer registered under the requesting tenant.
    // (The requester is an engineer: the role refuses before authorship is looked at.)
    let by_requester = approve(&mut p.engineer, &export.id, "").await;
    assert_eq!(
        refusal_of(by_requester, Code::PermissionDenied),
        "ROLE_NOT_ALLOWED"
    );
    let by_own = approve(&mut own_reviewer, &export.id, "").await;
    assert_eq!(
        refusal_of(by_own, Code::PermissionDenied),
        "NOT_INDEPENDENT"
    );
    let review = own_reviewer
        .exports
        .review_export(pb::ReviewExportRequest {
            export_id: export.id.clone(),
        })
        .await;
    assert_eq!(status_code(review), Code::PermissionDenied);
    let private = comment(&mut own_reviewer, &export.id, "note", true).await;
    assert_eq!(
        refusal_of(private, Code::PermissionDenied),
        "NOT_INDEPENDENT"
    );
    let revoke_own = revoke(&mut own_reviewer, &export.id, "no").await;
    assert_eq!(
        refusal_of(revoke_own, Code::PermissionDenied),
        "NOT_INDEPENDENT"
    );
    let own_queue = own_reviewer
        .exports
        .list_exports(pb::ListExportsRequest {})
        .await
        .unwrap()
        .into_inner()
        .exports;
    assert!(
        own_queue.iter().all(|e| e.id != export.id),
        "a reviewer's queue holds their own tenant's export"
    );
    let queue = p
        .reviewer
        .exports
        .list_exports(pb::ListExportsRequest {})
        .await
        .unwrap()
        .into_inner()
        .exports;
    assert!(queue.iter().any(|e| e.id == export.id));
    // The independent reviewer's review names the query and what a vote binds to.
    let review = p
        .reviewer
        .exports
        .review_export(pb::ReviewExportRequest {
            export_id: export.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(review.query_kind, "sql");
    assert_eq!(review.sql, AGGREGATE_SQL);
    // Reviewers see the lineage: per column and the population the result describes.
    assert_eq!(review.lineage.len(), review.columns.len());
    let avg = review
        .lineage
        .iter()
        .find(|c| c.name == "avg_cost")
        .unwrap();
    assert_eq!(avg.sources, ["residents.cost"]);
    assert!(avg.aggregated && avg.functions == ["avg"], "{avg:?}");
    assert!(
        review
            .row_influencing
            .iter()
            .any(|r| r.source == "residents.district" && r.role == "group_key"),
        "{:?}",
        review.row_influencing
    );
    assert_eq!(review.units, "counted");
    assert!(review.unanalysable.is_empty());
    assert_eq!(review.query_sha256, job.query_sha256);
    assert_eq!(review.result_sha256.len(), 64);
    assert_eq!(review.n_rows, 3);

    // A reject and a return need a shared comment; a decision is required.
    for decision in [pb::ExportDecision::Reject, pb::ExportDecision::Return] {
        let bare = vote(&mut p.reviewer, &export.id, decision, " ", "private only").await;
        assert!(message(bare, Code::InvalidArgument).contains("shared comment"));
    }
    let none = vote(
        &mut p.reviewer,
        &export.id,
        pb::ExportDecision::Unspecified,
        "x",
        "",
    )
    .await;
    assert_eq!(denied_code(none), Code::InvalidArgument);
    assert_eq!(get(&mut p.reviewer, &export.id).await.n_votes, 0);

    // One reject ends the review at once, whatever the quorum.
    let rejected = vote(
        &mut p.reviewer,
        &export.id,
        pb::ExportDecision::Reject,
        "REJECT-REASON: 分组过细",
        "",
    )
    .await
    .unwrap();
    assert_eq!(rejected.status, pb::ExportStatus::Rejected as i32);
    assert!(rejected.decided_at_ms > 0);
    let late = approve(&mut p.reviewer2, &export.id, "").await;
    assert_eq!(refusal_of(late, Code::FailedPrecondition), "NOT_IN_REVIEW");
    let seen = get(&mut p.engineer, &export.id).await;
    assert!(seen.votes.is_empty());
    assert!(
        seen.comments
            .iter()
            .any(|c| c.from_vote && c.text == "REJECT-REASON: 分组过细" && c.author_id.is_empty())
    );
    let download = p.recipient.download(&export.id).await;
    assert_eq!(code(download), Code::FailedPrecondition);
    // A reviewer of the requesting tenant sees what its engineers see: no vote, no evidence.
    let as_member = get(&mut own_reviewer, &export.id).await;
    assert!(as_member.votes.is_empty() && as_member.n_votes == 0);
    assert_eq!(as_member.checks, seen.checks);
    let revoke_rejected = revoke(&mut p.reviewer2, &export.id, "x").await;
    assert_eq!(denied_code(revoke_rejected), Code::FailedPrecondition);

    // One return ends the review too, even after an approval.
    let second = request_export(&mut p, &job.id).await;
    approve(&mut p.reviewer2, &second.id, "").await.unwrap();
    let returned = vote(
        &mut p.reviewer,
        &second.id,
        pb::ExportDecision::Return,
        "RETURN-REASON: 请合并小区县",
        "",
    )
    .await
    .unwrap();
    assert_eq!(returned.status, pb::ExportStatus::Returned as i32);
    assert_eq!(returned.approvals, 1);
    assert!(package_files(&domain, &p.tenant_id, &second.id).is_empty());
    // The engineer may still answer in a shared comment.
    let answered = comment(&mut p.engineer, &second.id, "已修改，将重新申请", false)
        .await
        .unwrap();
    assert!(
        answered
            .comments
            .iter()
            .any(|c| c.from_vote && c.text.starts_with("RETURN-REASON"))
    );
    let records = audit_records(&mut p.auditor).await;
    assert_transitions_audited(&get(&mut p.reviewer, &export.id).await, &records);
    assert_transitions_audited(&get(&mut p.reviewer, &second.id).await, &records);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_approval_binds_to_the_staged_result_and_the_policy_version() {
    let domain = Domain::new();
    let server = domain.start();
    let mut p = people(&server, &domain, "b").await;
    let job = aggregate_job(&mut p).await;
    let tenant_id = p.tenant_id.clone();

    // The staged result changes between the two approvals: the second is refused, the
    // export stays in review and nothing is packaged.
    let export = request_export(&mut p, &job.id).await;
    approve(&mut p.reviewer, &export.id, "").await.unwrap();
    let file = result_file(&domain, &tenant_id, &job.id);
    let original = std::fs::read(&file).unwrap();
    let mut tampered = original.clone();
    let middle = tampered.len() / 2;
    tampered[middle] ^= 0x01;
    std::fs::write(&file, &tampered).unwrap();
    let tampered_vote = approve(&mut p.reviewer2, &export.id, "").await;
    assert_eq!(
        refusal_of(tampered_vote, Code::FailedPrecondition),
        "BINDING_CHANGED"
    );
    let still = get(&mut p.reviewer2, &export.id).await;
    assert_eq!(still.status, pb::ExportStatus::InReview as i32);
    assert_eq!((still.approvals, still.n_votes), (1, 1));
    assert!(still.package_sha256.is_empty());
    assert!(package_files(&domain, &tenant_id, &export.id).is_empty());
    // With the checked result back in place, the same approval counts.
    std::fs::write(&file, &original).unwrap();
    let approved = approve(&mut p.reviewer2, &export.id, "").await.unwrap();
    assert_eq!(approved.status, pb::ExportStatus::Approved as i32);

    // The policy version changes between the two approvals (the server restarts on the same
    // data dir with another policy): the second approval is refused.
    let second = request_export(&mut p, &job.id).await;
    approve(&mut p.reviewer, &second.id, "").await.unwrap();
    drop(p);
    server.kill();
    let server = domain.start_with("", Some(&policy_with("test-policy-changed", None)));
    let mut reviewer2 = server.client(&domain.creds("reviewer2-b")).await;
    let mut auditor = server.client(&domain.creds("auditor-b")).await;
    let status = approve(&mut reviewer2, &second.id, "")
        .await
        .expect_err("the policy changed");
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert_eq!(reason(&status), "BINDING_CHANGED");
    // The message still says what changed.
    assert!(status.message().contains("policy"), "{status:?}");
    let still = get(&mut reviewer2, &second.id).await;
    assert_eq!(still.status, pb::ExportStatus::InReview as i32);
    assert_eq!(still.approvals, 1);
    assert!(package_files(&domain, &tenant_id, &second.id).is_empty());
    // The review can still end with a reject.
    let rejected = vote(
        &mut reviewer2,
        &second.id,
        pb::ExportDecision::Reject,
        "policy changed",
        "",
    )
    .await
    .unwrap();
    assert_eq!(rejected.status, pb::ExportStatus::Rejected as i32);
    let records = audit_records(&mut auditor).await;
    let refusals = records
        .iter()
        .filter(|r| {
            r.action == "vote_export"
                && r.outcome == "invalid"
                && r.detail_json.contains("request a new export")
        })
        .count();
    assert_eq!(refusals, 2, "both refused approvals are audited");
    drop((reviewer2, auditor));
    server.kill();
    let verify = audit_verify(&domain.data);
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_quorum_of_one_approves_with_one_vote() {
    let domain = Domain::new();
    let server = domain.start_with("", Some(&policy_with("test-quorum-1", Some(1))));
    let mut p = people(&server, &domain, "one").await;
    let job = aggregate_job(&mut p).await;
    let export = request_export(&mut p, &job.id).await;
    assert_eq!(export.quorum, 1);
    let approved = approve(&mut p.reviewer, &export.id, "").await.unwrap();
    assert_eq!(approved.status, pb::ExportStatus::Approved as i32);
    assert_eq!(approved.approvals, 1);
    let package = p.recipient.download(&export.id).await.unwrap();
    let manifest = shuyu_verify::package::verify(&package, None)
        .unwrap()
        .manifest;
    assert_eq!((manifest.quorum, manifest.approvals.len()), (1, 1));
    assert_eq!(manifest.policy_version, "test-quorum-1");
    // An admin may revoke it (without seeing exports otherwise); downloads then stop.
    let hidden = p
        .admin
        .exports
        .get_export(pb::GetExportRequest {
            export_id: export.id.clone(),
        })
        .await;
    assert_eq!(status_code(hidden), Code::PermissionDenied);
    let revoked = revoke(&mut p.admin, &export.id, "授权已撤销")
        .await
        .unwrap();
    assert_eq!(revoked.status, pb::ExportStatus::Revoked as i32);
    assert!(
        revoked.votes.is_empty(),
        "an admin sees no votes: {revoked:?}"
    );
    assert_eq!(
        code(p.recipient.download(&export.id).await),
        Code::FailedPrecondition
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn simultaneous_votes_neither_miss_nor_double_count_the_quorum() {
    let domain = Domain::new();
    let server = domain.start();
    let mut p = people(&server, &domain, "c").await;
    let third = register(&mut p.admin, &domain, "reviewer3-c", pb::Role::Reviewer, "").await;
    let job = aggregate_job(&mut p).await;
    for round in 0..3 {
        let export = request_export(&mut p, &job.id).await;
        let clients = [
            p.reviewer.clone(),
            p.reviewer2.clone(),
            server.client(&third).await,
        ];
        // Two at once reach the quorum exactly; with the third a vote arrives too late.
        let n = if round == 0 { 2 } else { 3 };
        let tasks: Vec<_> = clients
            .into_iter()
            .take(n)
            .map(|mut client| {
                let id = export.id.clone();
                tokio::spawn(async move { approve(&mut client, &id, "").await })
            })
            .collect();
        let mut votes = Vec::new();
        for task in tasks {
            votes.push(task.await.expect("vote task"));
        }
        let accepted = votes.iter().filter(|v| v.is_ok()).count();
        assert_eq!(accepted, 2, "round {round}: {votes:?}");
        for refused in votes.into_iter().filter_map(Result::err) {
            assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
        }
        let done = get(&mut p.reviewer, &export.id).await;
        assert_eq!(done.status, pb::ExportStatus::Approved as i32);
        assert_eq!(done.approvals, 2, "{done:?}");
        let approvals = done
            .events
            .iter()
            .filter(|e| e.to_status == "approved")
            .count();
        assert_eq!(approvals, 1);
        assert_eq!(
            package_files(&domain, &p.tenant_id, &export.id).len(),
            1,
            "exactly the committed package is stored"
        );
        let package = p.recipient.download(&export.id).await.unwrap();
        let manifest = shuyu_verify::package::verify(&package, None)
            .unwrap()
            .manifest;
        let mut named: Vec<String> = manifest
            .approvals
            .iter()
            .map(|a| a.reviewer_id.clone())
            .collect();
        let mut voted: Vec<String> = done.votes.iter().map(|v| v.reviewer_id.clone()).collect();
        named.sort();
        voted.sort();
        assert_eq!(
            named, voted,
            "the package names exactly the counted approvals"
        );
    }
}

/// The review from the command line.
#[tokio::test(flavor = "multi_thread")]
async fn the_cli_votes_comments_shows_and_revokes() {
    let domain = Domain::new();
    let server = domain.start();
    let mut p = people(&server, &domain, "x").await;
    let job = aggregate_job(&mut p).await;
    let export = request_export(&mut p, &job.id).await;
    let cli = |who: &str, args: &[&str]| {
        let creds = domain.creds(who);
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--as", creds.to_str().unwrap(), "--server", &server.addr]);
        let out = run_bin(&all);
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let id = export.id.as_str();

    let (code, out) = cli(
        "reviewer-x",
        &["export", "vote", id, "--approve", "--reject"],
    );
    assert_ne!(code, 0, "two decisions at once: {out}");
    let (code, out) = cli("reviewer-x", &["export", "vote", id]);
    assert_ne!(code, 0, "no decision: {out}");
    let (code, out) = cli(
        "engineer-x",
        &["export", "comment", id, "--text", "说明：按区县汇总"],
    );
    assert_eq!(code, 0, "{out}");
    let (code, out) = cli(
        "reviewer-x",
        &[
            "export",
            "comment",
            id,
            "--text",
            "CLI-PRIVATE",
            "--private",
        ],
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("[private]: CLI-PRIVATE"), "{out}");
    let (code, out) = cli(
        "reviewer-x",
        &[
            "export",
            "vote",
            id,
            "--approve",
            "--comment",
            "同意",
            "--private-note",
            "CLI-NOTE",
        ],
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("in review (1/2 approvals"), "{out}");
    let (code, out) = cli("reviewer2-x", &["export", "show", id]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("votes: hidden until you have voted"), "{out}");
    assert!(!out.contains("CLI-NOTE"), "{out}");
    let (code, out) = cli("reviewer2-x", &["export", "list"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(id) && out.contains("1/2 approvals"), "{out}");
    let (code, out) = cli(
        "reviewer2-x",
        &["export", "vote", id, "--approve", "--comment", "同意"],
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("— approved (2/2 approvals"), "{out}");
    assert!(out.contains("private: CLI-NOTE"), "{out}");
    assert!(out.contains("in review → approved"), "{out}");
    let (code, out) = cli("engineer-x", &["export", "show", id]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("approved (2/2 approvals)"), "{out}");
    assert!(out.contains("[with a vote]: 同意"), "{out}");
    assert!(
        !out.contains("CLI-NOTE") && !out.contains("CLI-PRIVATE"),
        "{out}"
    );
    let (code, out) = cli("reviewer-x", &["export", "revoke", id, "--reason", "误批"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("— revoked"), "{out}");
    let pkg = domain.data.with_extension("cli.tar");
    let (code, out) = cli(
        "recipient-x",
        &["export", "download", id, "--out", pkg.to_str().unwrap()],
    );
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("was revoked"), "{out}");
    let (code, out) = cli("engineer-x", &["export", "show", id]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("approved → revoked") && out.contains("(误批)"),
        "{out}"
    );
}

/// A production job under a fresh scenario over `dataset`, succeeded.
async fn run_ok(p: &mut People, sc: &str, sql: &str) -> pb::Job {
    let job = p.engineer.run_sql(sql, sc, WAIT).await.unwrap();
    assert_eq!(
        job.status,
        pb::JobStatus::Succeeded as i32,
        "{sql}: {}",
        job.error
    );
    job
}

#[tokio::test(flavor = "multi_thread")]
async fn the_release_ledger_refuses_differencing_across_exports_even_side_by_side() {
    let domain = Domain::new();
    let server = domain.start_with("", Some(&policy_with("test-ledger", Some(1))));
    let Approved {
        people: mut p,
        scenario_id: sc,
        datasets: _,
    } = approved_scenario(&server, &domain, "ledger", ["residents"]).await;

    // Released: totals per district.
    let base = "SELECT district, count(*) AS n, sum(cost) AS total FROM residents";
    let first = run_ok(&mut p, &sc, &format!("{base} GROUP BY district")).await;
    let export = request_export(&mut p, &first.id).await;
    assert_eq!(
        export.status,
        pb::ExportStatus::InReview as i32,
        "{export:?}"
    );
    let approved = approve(&mut p.reviewer, &export.id, "").await.unwrap();
    assert_eq!(approved.status, pb::ExportStatus::Approved as i32);

    // The same totals without one resident: each cell passes on its own, but the
    // difference with the released cell is that resident's cost.
    let second = run_ok(
        &mut p,
        &sc,
        &format!("{base} WHERE name <> '王0' GROUP BY district"),
    )
    .await;
    let refused = request_export(&mut p, &second.id).await;
    assert_eq!(
        refused.status,
        pb::ExportStatus::Refused as i32,
        "{refused:?}"
    );
    let failed: Vec<&pb::CheckResult> = refused
        .checks
        .iter()
        .filter(|c| c.outcome == pb::CheckOutcome::Fail as i32)
        .collect();
    // Differencing, and (districts are small enough to audit) reconstruction: the resident
    // is solvable.
    let names: Vec<&str> = failed.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["differencing", "reconstruction"], "{failed:?}");
    for check in &failed {
        assert!(
            !check.detail.contains("row") && !check.detail.contains("王"),
            "the engineer does not learn which cell: {:?}",
            check.detail
        );
    }
    let evidence = get(&mut p.reviewer, &refused.id).await;
    let differencing = evidence
        .checks
        .iter()
        .find(|c| c.name == "differencing")
        .unwrap();
    assert!(
        differencing
            .detail
            .contains(&format!("of export {}", export.id))
            && differencing.detail.contains("differ by 1 privacy units"),
        "{}",
        differencing.detail
    );

    // Two released districts minus one of their residents: no earlier cell is near it in
    // size, but with the two district cells it solves for that resident.
    let union = run_ok(
        &mut p,
        &sc,
        "SELECT count(*) AS n, sum(cost) AS total FROM residents \
         WHERE district IN ('海曙区', '江北区') AND name <> '王0'",
    )
    .await;
    let union = request_export(&mut p, &union.id).await;
    let failed: Vec<&str> = union
        .checks
        .iter()
        .filter(|c| c.outcome == pb::CheckOutcome::Fail as i32)
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(failed, ["reconstruction"], "{union:?}");

    // Two exports checked side by side, neither released yet: each passes alone; once one
    // is approved the other cannot be.
    // (Populations unlike the released districts': 200 residents across all three.)
    let dearer = "SELECT count(*) AS n, sum(cost) AS total FROM residents WHERE cost >= 200";
    let third = run_ok(&mut p, &sc, dearer).await;
    let fourth = run_ok(&mut p, &sc, &format!("{dearer} AND name <> '王150'")).await;
    let third = request_export(&mut p, &third.id).await;
    let fourth = request_export(&mut p, &fourth.id).await;
    for export in [&third, &fourth] {
        assert_eq!(
            export.status,
            pb::ExportStatus::InReview as i32,
            "{export:?}"
        );
    }
    approve(&mut p.reviewer, &third.id, "").await.unwrap();
    assert_eq!(
        refusal_of(
            approve(&mut p.reviewer, &fourth.id, "").await,
            Code::FailedPrecondition,
        ),
        "COMBINED_DISCLOSURE"
    );
    let fourth = get(&mut p.reviewer, &fourth.id).await;
    assert_eq!(fourth.status, pb::ExportStatus::InReview as i32);
    assert!(package_files(&domain, &p.tenant_id, &fourth.id).is_empty());
}

/// A Substrait plan of `sql` built as a dataframe client builds one: over empty tables with
/// only the catalog's schema of each dataset, serialized by DataFusion's producer.
async fn substrait_of(sql: &str, tables: &[(&str, &pb::Dataset)]) -> Vec<u8> {
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::datasource::MemTable;
    use datafusion::prelude::SessionContext;
    use prost::Message;

    let ctx = SessionContext::new();
    for (name, dataset) in tables {
        let fields: Vec<Field> = dataset
            .columns
            .iter()
            .map(|c| {
                let data_type = match c.data_type.as_str() {
                    "int64" => DataType::Int64,
                    "float64" => DataType::Float64,
                    "date" => DataType::Date32,
                    "bool" => DataType::Boolean,
                    _ => DataType::Utf8,
                };
                Field::new(&c.name, data_type, true)
            })
            .collect();
        let table = MemTable::try_new(std::sync::Arc::new(Schema::new(fields)), vec![vec![]])
            .expect("empty table");
        ctx.register_table(*name, std::sync::Arc::new(table))
            .expect("register");
    }
    let frame = ctx.sql(sql).await.expect("plan the dataframe");
    datafusion_substrait::logical_plan::producer::to_substrait_plan(
        frame.logical_plan(),
        &ctx.state(),
    )
    .expect("Substrait")
    .encode_to_vec()
}

#[tokio::test(flavor = "multi_thread")]
async fn reviewers_read_a_dataframe_jobs_plan_as_sql_with_its_sources() {
    let domain = Domain::new();
    let server = domain.start();
    let Approved {
        people: mut p,
        scenario_id: sc,
        datasets: [residents],
    } = approved_scenario(&server, &domain, "df", ["residents"]).await;
    let plan = substrait_of(AGGREGATE_SQL, &[("residents", &residents)]).await;
    let job = p
        .engineer
        .run_job(
            pb::SubmitJobRequest {
                substrait_plan: plan,
                scenario_id: sc.clone(),
                mode: pb::JobMode::Production as i32,
                ..Default::default()
            },
            WAIT,
        )
        .await
        .unwrap();
    assert_eq!(job.status, pb::JobStatus::Succeeded as i32, "{}", job.error);
    assert_eq!(job.query_kind, "substrait");
    let export = request_export(&mut p, &job.id).await;
    assert_eq!(export.status, pb::ExportStatus::InReview as i32);

    // The reviewer reads the plan as SQL (rendered by the worker at job time) and every
    // dataset and column it reads, beside the plan's hash.
    let review = p
        .reviewer
        .exports
        .review_export(pb::ReviewExportRequest {
            export_id: export.id.clone(),
        })
        .await
        .expect("review")
        .into_inner();
    assert_eq!(review.query_kind, "substrait");
    assert!(review.sql.is_empty());
    assert!(
        review.unrendered_reason.is_empty(),
        "{}",
        review.unrendered_reason
    );
    let rendered = &review.rendered_sql;
    assert!(rendered.starts_with("SELECT"), "{rendered}");
    for part in ["residents", "district", "count(", "avg(", "GROUP BY"] {
        assert!(rendered.contains(part), "{part}: {rendered}");
    }
    assert_eq!(
        review.sources,
        [pb::PlanSource {
            dataset_id: residents.id.clone(),
            table: "residents".into(),
            columns: vec!["district".into(), "cost".into()],
        }]
    );
    // So does the CLI.
    let creds = domain.creds("reviewer-df");
    let out = run_bin(&[
        "export",
        "review",
        &export.id,
        "--as",
        creds.to_str().unwrap(),
        "--server",
        &server.addr,
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("the plan as SQL"), "{text}");
    assert!(text.contains(rendered.as_str()), "{text}");
    assert!(
        text.contains(&format!("residents ({}): district, cost", residents.id)),
        "{text}"
    );

    // A SQL job is not rendered again (its text is what ran); its sources are listed too.
    let by_sql = p.engineer.run_sql(AGGREGATE_SQL, &sc, WAIT).await.unwrap();
    let export = request_export(&mut p, &by_sql.id).await;
    let review = p
        .reviewer
        .exports
        .review_export(pb::ReviewExportRequest {
            export_id: export.id.clone(),
        })
        .await
        .expect("review")
        .into_inner();
    assert_eq!(review.sql, AGGREGATE_SQL);
    assert!(review.rendered_sql.is_empty());
    assert_eq!(review.sources.len(), 1);
    assert_eq!(review.sources[0].columns, ["district", "cost"]);
}
