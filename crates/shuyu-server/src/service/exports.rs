//! Export service: the output-review gate (R1, R22).
//!
//! A request runs the automated disclosure checks: any failed check refuses it, otherwise it
//! is in review. Reviewers independent of the requesting tenant vote, each once: one reject
//! or return ends the review, and the policy's quorum of approvals approves it. Every vote
//! binds to the staged result's hash, the query hash and the policy version; an approval is
//! counted, and the signed package built, only while all approvals still match what is
//! staged now. Reviewers see each other's votes only after voting (blinding); the requesting
//! tenant never sees a vote or a private comment. Every status change is an event written in
//! the same transaction as the change and its audit record.
//!
//! An approved export is a data product for one recipient (R21, R23, R24): bound to its
//! scenario and a permitted use, usable until it expires, free or priced by the scenario's
//! category. The recipient's copy has its count cells rounded, its pseudonyms re-keyed for
//! the recipient and its rows in an order keyed by its fingerprint; only the recipient
//! downloads it (or fetches it over Arrow Flight, `flight.rs`), every time audited and
//! counted; `TraceExport` finds the product a leaked copy came from.

use serde_json::json;
use shuyu_engine::{
    CheckOutcome, ExportFormat, GateInput, ResultData, members_needed, read_result, release_checks,
    render_export_file, result_sketches, result_units_range, run_export_checks,
};
use shuyu_policy::{Action, PolicyError, PriceBasis, Role, product_days};
use shuyu_proto::v1 as pb;
use shuyu_proto::v1::export_service_server::ExportService;
use shuyu_vault::sha256_hex;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::{Api, require_id, require_text};
use crate::convert::{self, ExportView};
use crate::error::{Result, ServerError};
use crate::keys;
use crate::package::{
    self, MANIFEST_FORMAT, Manifest, ManifestApproval, ManifestCheck, ManifestDataset,
    ManifestFile, ManifestPrice, ManifestProduct,
};
use crate::state::Caller;
use crate::store::{
    self, CheckVerdict, EXPORT_SUBMITTED, ExportDecision, ExportHistory, ExportRecord,
    ExportStatus, ExportVote, JobMode, JobRecord, JobStatus, ProductRecord, StoredCheck,
};

const REVIEW_MAX_ROWS: usize = 100_000;
const CHUNK_BYTES: usize = 64 * 1024;
/// Longest comment, vote comment or private note, in characters.
const MAX_COMMENT_CHARS: usize = 4000;
/// Longest revocation reason, in characters.
const MAX_REASON_CHARS: usize = 2000;
/// Attempts of a vote whose approval reaches the quorum while other votes arrive.
const VOTE_ATTEMPTS: usize = 3;
/// Longest permitted use, in characters.
const MAX_USE_CHARS: usize = 2000;
/// Largest file TraceExport reads.
pub(super) const MAX_TRACE_BYTES: usize = 32 << 20;
const DAY_MS: i64 = 86_400_000;
/// How a product copy's rows are ordered (recorded in its manifest).
const ROW_ORDER: &str = "keyed-by-fingerprint/v1";

/// How a caller stands towards one export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Standing {
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
fn standing(caller: &Caller, export: &ExportRecord) -> Option<Standing> {
    let own_tenant = caller.principal.tenant_id.as_deref() == Some(export.tenant_id.as_str());
    match caller.principal.role {
        Role::Engineer if own_tenant => Some(Standing::TenantMember),
        Role::Reviewer if own_tenant => Some(Standing::TenantMember),
        Role::Reviewer => Some(Standing::Reviewer),
        Role::PlatformAdmin => Some(Standing::Admin),
        Role::Auditor => Some(Standing::Auditor),
        // Recipients reach their products through ListProducts, DownloadExport and DoGet.
        Role::Engineer | Role::DataSteward | Role::Recipient => None,
    }
}

/// The export `id` if `caller` is its product's recipient; NotFound to everyone else, the
/// requester included (R23).
pub(super) fn recipients_export(
    state: &crate::state::AppState,
    caller: &Caller,
    id: &str,
) -> Result<ExportRecord> {
    require_id(id, "export_id")?;
    match state.store.read(|c| store::export(c, id))? {
        Some(e) if e.recipient() == caller.principal.id => Ok(e),
        _ => Err(ServerError::NotFound(format!("export {id}"))),
    }
}

/// Refuses a product that is not approved, was revoked, or has expired, at `now_ms`.
pub(super) fn require_deliverable(export: &ExportRecord, now_ms: i64) -> Result<()> {
    let id = &export.id;
    match export.status_at(now_ms) {
        ExportStatus::Approved => Ok(()),
        // The reason is free text: it is in the export's history, not in this message
        // (which the audit trail records).
        ExportStatus::Revoked => Err(ServerError::FailedPrecondition(format!(
            "export {id} was revoked and can no longer be downloaded; its history gives the \
             reason"
        ))),
        ExportStatus::Expired => Err(ServerError::FailedPrecondition(format!(
            "product {id} expired at {} and can no longer be downloaded",
            crate::format_ms(export.product.as_ref().map_or(0, |p| p.expires_at_ms))
        ))),
        other => Err(ServerError::FailedPrecondition(format!(
            "export {id} is not approved (it is {})",
            other.as_str()
        ))),
    }
}

/// The recipient's copy of the staged result `data`: counts rounded to `round_counts_to`,
/// pseudonyms re-keyed for the recipient, rows in the order keyed by `fingerprint`, the
/// fingerprint in its schema metadata.
pub(super) fn product_copy(
    master: &shuyu_vault::MasterKey,
    data: ResultData,
    job: &JobRecord,
    recipient_id: &str,
    fingerprint: &str,
    round_counts_to: u64,
) -> Result<ResultData> {
    let recipient_key = keys::recipient_pseudonym_key(master, recipient_id)?;
    let order_key = keys::product_order_key(master, fingerprint)?;
    Ok(data
        .round_counts(&job.columns, round_counts_to)?
        .rekey_pseudonyms(&job.columns, &recipient_key)?
        .order_by_key(&order_key)?
        .with_fingerprint(fingerprint)?)
}

/// Refuses the requester and every member of the requesting tenant.
fn require_independent(caller: &Caller, export: &ExportRecord, what: &str) -> Result<()> {
    if export.requester_id == caller.principal.id {
        return Err(ServerError::PermissionDenied(format!(
            "a requester cannot {what} their own export"
        )));
    }
    if standing(caller, export) == Some(Standing::TenantMember) {
        return Err(ServerError::PermissionDenied(format!(
            "you are registered under tenant {}, which requested export {}: only reviewers \
             independent of the requesting tenant may {what} it",
            export.tenant_id, export.id
        )));
    }
    Ok(())
}

/// Refuses a vote on an export that is not in review.
fn require_in_review(export: &ExportRecord) -> Result<()> {
    match export.status {
        ExportStatus::InReview => Ok(()),
        ExportStatus::Refused => Err(ServerError::FailedPrecondition(format!(
            "export {} failed its automated checks and cannot be approved",
            export.id
        ))),
        other => Err(ServerError::FailedPrecondition(format!(
            "export {} is {}: only exports in review take votes",
            export.id,
            other.as_str()
        ))),
    }
}

fn approvals(votes: &[ExportVote]) -> Vec<&ExportVote> {
    votes
        .iter()
        .filter(|v| v.decision == ExportDecision::Approve)
        .collect()
}

/// Whether every approval still binds to what is staged now: the job's result hash (and the
/// stored file's actual hash), its query hash and the policy version in force, which must
/// also be the one the checks ran under.
fn verify_binding(
    export: &ExportRecord,
    job: &JobRecord,
    stored_result_sha256: &str,
    policy_version: &str,
    votes: &[ExportVote],
) -> Result<()> {
    let changed = |what: &str| {
        ServerError::FailedPrecondition(format!(
            "{what} changed since it was reviewed; request a new export"
        ))
    };
    if export
        .checks
        .iter()
        .any(|c| c.outcome == CheckVerdict::Fail)
    {
        return Err(ServerError::FailedPrecondition(
            "a failed check cannot be approved".into(),
        ));
    }
    if stored_result_sha256 != job.result_sha256 {
        return Err(changed("the staged result"));
    }
    if export.policy_version != policy_version {
        return Err(changed(&format!(
            "the policy (checked under {}, now {policy_version})",
            export.policy_version
        )));
    }
    for vote in approvals(votes) {
        if vote.result_sha256 != job.result_sha256 {
            return Err(changed("the staged result"));
        }
        if vote.query_sha256 != job.query_sha256 {
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

/// A package built for one set of approvals, stored but not yet committed.
#[derive(Debug)]
struct BuiltPackage {
    location: String,
    sha256: String,
    approvers: Vec<String>,
    approved_at_ms: i64,
    result_sha256: String,
    product: ProductRecord,
}

impl Api {
    /// Approvals needed for `export`: the quorum it was requested under, never below the
    /// policy's (exports migrated from the single-reviewer gate carry a quorum of one).
    fn quorum(&self, export: &ExportRecord) -> u64 {
        export.quorum.max(self.state.policy.review.quorum)
    }

    fn view(
        &self,
        caller: &Caller,
        standing: Standing,
        export: &ExportRecord,
        history: &ExportHistory,
    ) -> ExportView {
        let quorum = self.quorum(export);
        match standing {
            Standing::Reviewer => {
                let voted = history
                    .votes
                    .iter()
                    .any(|v| v.reviewer_id == caller.principal.id);
                ExportView {
                    evidence: true,
                    votes: voted || export.status != ExportStatus::InReview,
                    n_votes: true,
                    private_comments: true,
                    vote_comments: false,
                    reviewer_ids: true,
                    voted,
                    quorum,
                }
            }
            // After the review, who voted what and why, as shared (R35); never the evidence
            // (which cells), nor a private note.
            Standing::Auditor => ExportView {
                evidence: false,
                votes: export.status != ExportStatus::InReview,
                n_votes: true,
                private_comments: false,
                vote_comments: false,
                reviewer_ids: true,
                voted: false,
                quorum,
            },
            Standing::TenantMember | Standing::Admin => ExportView {
                evidence: false,
                votes: false,
                n_votes: false,
                private_comments: false,
                vote_comments: export.status != ExportStatus::InReview,
                reviewer_ids: false,
                voted: false,
                quorum,
            },
        }
    }

    /// The export as `caller` may see it, read afresh.
    fn export_for(&self, caller: &Caller, export: &ExportRecord) -> Result<pb::Export> {
        let standing = standing(caller, export)
            .ok_or_else(|| ServerError::NotFound(format!("export {}", export.id)))?;
        let history = self
            .state
            .store
            .read(|c| store::export_history(c, &export.id))?;
        let view = self.view(caller, standing, export, &history);
        Ok(convert::export(export, &history, &view))
    }

    /// An export the caller may see with their standing, or NotFound: engineers see their
    /// tenant's, reviewers every export, admins every export (to revoke it), auditors every
    /// export.
    fn visible_export(&self, caller: &Caller, id: &str) -> Result<(ExportRecord, Standing)> {
        require_id(id, "export_id")?;
        let export = self.state.store.read(|c| store::export(c, id))?;
        match export.and_then(|e| standing(caller, &e).map(|s| (e, s))) {
            Some(found) => Ok(found),
            None => Err(ServerError::NotFound(format!("export {id}"))),
        }
    }

    fn job_of(&self, export: &ExportRecord) -> Result<JobRecord> {
        self.state
            .store
            .read(|c| store::job_any_tenant(c, &export.job_id))?
            .ok_or_else(|| ServerError::internal("an export's job is missing"))
    }

    async fn request_export(
        &self,
        caller: &Caller,
        req: pb::RequestExportRequest,
    ) -> Result<ExportRecord> {
        require_id(&req.job_id, "job_id")?;
        require_text(&req.purpose, "the purpose", 2000, true)?;
        let format = match pb::DataFormat::try_from(req.format) {
            Ok(pb::DataFormat::Csv) => "csv",
            Ok(pb::DataFormat::Parquet) | Ok(pb::DataFormat::Unspecified) => "parquet",
            Err(_) => return Err(ServerError::InvalidArgument("unknown export format".into())),
        };
        let tenant = caller.tenant()?;
        let job = self
            .state
            .store
            .read(|c| store::job(c, tenant, &req.job_id))?
            .ok_or_else(|| ServerError::NotFound(format!("job {}", req.job_id)))?;
        if job.status != JobStatus::Succeeded {
            return Err(ServerError::FailedPrecondition(
                "only a succeeded job's result can be exported".into(),
            ));
        }
        if job.mode == JobMode::Lab {
            return Err(ServerError::FailedPrecondition(
                "a lab job's result never leaves the lab: promote the job to production under \
                 a scenario and export that result"
                    .into(),
            ));
        }
        if req.recipient_id.trim().is_empty() {
            return Err(ServerError::InvalidArgument(
                "recipient_id is required: name the recipient principal the product is for".into(),
            ));
        }
        // R25: nothing leaves outside an authorization's term.
        self.state.store.read(|c| {
            crate::governance::require_authorization(
                c,
                tenant,
                crate::now_ms(),
                &crate::governance::Need::default(),
            )
        })?;
        require_id(&req.recipient_id, "recipient_id")?;
        require_text(&req.permitted_use, "the permitted use", MAX_USE_CHARS, true)?;
        let recipient = self
            .state
            .store
            .read(|c| store::principal(c, &req.recipient_id))?
            .ok_or_else(|| ServerError::NotFound(format!("recipient {}", req.recipient_id)))?;
        if recipient.role != Role::Recipient {
            return Err(ServerError::InvalidArgument(format!(
                "principal {} is not a recipient (it is a {}): products go to recipient \
                 principals",
                recipient.id,
                recipient.role.as_str()
            )));
        }
        let scenario = self
            .state
            .store
            .read(|c| store::scenario(c, &job.scenario_id))?
            .ok_or_else(|| ServerError::internal("a production job's scenario is missing"))?;
        let now = crate::now_ms();
        let days_left = (scenario.valid_until_ms - now).max(0) / DAY_MS;
        let expires_in_days =
            product_days(req.expires_in_days, days_left as u64).map_err(|e| match e {
                PolicyError::ScenarioEnding => ServerError::FailedPrecondition(format!(
                    "scenario {} ends at {}: {e}",
                    scenario.id,
                    crate::format_ms(scenario.valid_until_ms)
                )),
                other => ServerError::InvalidArgument(other.to_string()),
            })?;
        // The sketches' heads first; the whole result only when a close pair or the
        // reconstruction audit needs the members.
        let mut batches = self
            .state
            .engine
            .read_result_for_checks(&job.result_file)
            .await?;
        let k = self.state.policy.disclosure.min_entities;
        let released = match result_units_range(&batches, k) {
            Some((lo, hi)) => self
                .state
                .store
                .read(|c| store::released_cells(c, &job.tenant_id, lo, hi))?,
            None => Vec::new(),
        };
        if members_needed(
            &gate_input(&job, &batches, &released),
            &self.state.policy.disclosure,
        ) {
            batches = self.state.engine.read_result(&job.result_file).await?;
        }
        let checks = run_export_checks(
            &gate_input(&job, &batches, &released),
            &self.state.policy.disclosure,
        );
        let checks: Vec<StoredCheck> = checks
            .reports
            .iter()
            .map(|r| StoredCheck {
                name: r.name.to_owned(),
                outcome: match r.outcome {
                    CheckOutcome::Pass => CheckVerdict::Pass,
                    CheckOutcome::Review => CheckVerdict::Review,
                    CheckOutcome::Fail => CheckVerdict::Fail,
                },
                detail: r.detail.clone(),
                summary: r.summary.clone(),
            })
            .collect();
        let named = |verdict: CheckVerdict| -> Vec<String> {
            checks
                .iter()
                .filter(|c| c.outcome == verdict)
                .map(|c| c.name.clone())
                .collect()
        };
        let (failed, flagged) = (named(CheckVerdict::Fail), named(CheckVerdict::Review));
        let status = if failed.is_empty() {
            ExportStatus::InReview
        } else {
            ExportStatus::Refused
        };
        let id = crate::new_id("exp");
        let export = ExportRecord {
            id: id.clone(),
            job_id: job.id.clone(),
            tenant_id: job.tenant_id.clone(),
            requester_id: caller.principal.id.clone(),
            purpose: req.purpose.trim().to_owned(),
            format: format.to_owned(),
            status,
            checks,
            requested_at_ms: now,
            decided_at_ms: 0,
            package_location: String::new(),
            package_sha256: String::new(),
            policy_version: self.state.policy.version.clone(),
            quorum: self.state.policy.review.quorum,
            recipient_id: recipient.id.clone(),
            permitted_use: req.permitted_use.trim().to_owned(),
            expires_in_days,
            product: None,
            download_count: 0,
            last_download_at_ms: 0,
        };
        let checked_note = if failed.is_empty() {
            format!("checks passed; for review: {}", or_none(&flagged))
        } else {
            format!("checks failed: {}", failed.join(", "))
        };
        self.state.store.commit(
            &caller.entry(
                format!("export:{id} job:{}", job.id),
                "ok",
                json!({"status": status.as_str(), "failed_checks": failed,
                       "review_checks": flagged, "result_sha256": job.result_sha256,
                       "query_sha256": job.query_sha256,
                       "policy_version": export.policy_version, "quorum": export.quorum,
                       "recipient_id": export.recipient_id,
                       "permitted_use_sha256": sha256_hex(export.permitted_use.as_bytes()),
                       "expires_in_days": expires_in_days,
                       "scenario_category": scenario.category.as_str(),
                       "transitions": [["", EXPORT_SUBMITTED],
                                       [EXPORT_SUBMITTED, status.as_str()]]}),
            ),
            |tx| {
                store::upsert_export(tx, &export)?;
                store::append_export_event(
                    tx,
                    &id,
                    now,
                    &caller.principal.id,
                    "",
                    EXPORT_SUBMITTED,
                    "",
                )?;
                store::append_export_event(
                    tx,
                    &id,
                    now,
                    &caller.principal.id,
                    EXPORT_SUBMITTED,
                    status.as_str(),
                    &checked_note,
                )?;
                Ok(())
            },
        )?;
        Ok(export)
    }

    /// Records one reviewer's vote. The vote, the status change, its event and its audit
    /// record commit in one transaction that re-reads the export and its votes, so
    /// simultaneous votes can neither both miss nor both count towards the quorum. When an
    /// approval reaches the quorum, the package is built and stored first (for exactly the
    /// approvals it names); if another vote changed the approvals meanwhile, it is rebuilt.
    async fn vote(&self, caller: &Caller, req: &pb::VoteExportRequest) -> Result<ExportRecord> {
        let decision = match pb::ExportDecision::try_from(req.decision) {
            Ok(pb::ExportDecision::Approve) => ExportDecision::Approve,
            Ok(pb::ExportDecision::Reject) => ExportDecision::Reject,
            Ok(pb::ExportDecision::Return) => ExportDecision::Return,
            Ok(pb::ExportDecision::Unspecified) | Err(_) => {
                return Err(ServerError::InvalidArgument(
                    "the decision must be approve, reject or return".into(),
                ));
            }
        };
        if decision != ExportDecision::Approve && req.shared_comment.trim().is_empty() {
            return Err(ServerError::InvalidArgument(format!(
                "a {} vote needs a shared comment telling the requester why",
                decision.as_str()
            )));
        }
        require_text(
            &req.shared_comment,
            "the shared comment",
            MAX_COMMENT_CHARS,
            false,
        )?;
        require_text(
            &req.private_comment,
            "the private note",
            MAX_COMMENT_CHARS,
            false,
        )?;
        let (export, _) = self.visible_export(caller, &req.export_id)?;
        require_independent(caller, &export, "vote on")?;
        require_in_review(&export)?;
        crate::lifecycle::require_exports_open(&self.state.store, &export.tenant_id)?;
        // R25, R27: nothing is released for a tenant whose authorization ended while its
        // export was in review (a rejection or return still ends the review).
        if decision == ExportDecision::Approve {
            crate::governance::require_in_force(&self.state.store, &export.tenant_id)?;
        }
        let job = self.job_of(&export)?;
        let stored_result_sha256 = if decision == ExportDecision::Approve {
            Some(sha256_hex(&self.state.storage.get(&job.result_file).await?))
        } else {
            None
        };
        let policy_version = self.state.policy.version.clone();
        let quorum = self.quorum(&export);
        let target = format!("export:{}", export.id);
        // An aggregate's cells go into the tenant's release ledger when it is approved; the
        // ledger checks run again then, inside the approving transaction, so two exports
        // checked side by side cannot both be released when together they isolate people.
        // (Read only when the stored result is the one checked: otherwise the binding check
        // below refuses the vote.)
        let intact = stored_result_sha256.as_deref() == Some(job.result_sha256.as_str());
        let staged = if intact && job.aggregate {
            self.state.engine.read_result(&job.result_file).await?
        } else {
            Vec::new()
        };
        let sketches = result_sketches(&staged);
        let mut package: Option<BuiltPackage> = None;
        for attempt in 1..=VOTE_ATTEMPTS {
            let mut needs_package: Option<Vec<ExportVote>> = None;
            let outcome = self.state.store.commit_with(|tx| {
                let mut current = store::export(tx, &export.id)?
                    .ok_or_else(|| ServerError::NotFound(format!("export {}", export.id)))?;
                require_in_review(&current)?;
                // Checked again inside the transaction: a hold that commits while the vote
                // is prepared still freezes it.
                if let Some(reason) =
                    crate::lifecycle::hold(tx, &current.tenant_id)?.frozen_reason()
                {
                    return Err(ServerError::FailedPrecondition(format!(
                        "the export is frozen: {reason}"
                    )));
                }
                let mut votes = store::export_votes(tx, &export.id)?;
                if votes.iter().any(|v| v.reviewer_id == caller.principal.id) {
                    return Err(ServerError::FailedPrecondition(format!(
                        "you have already voted on export {}: one vote per reviewer",
                        export.id
                    )));
                }
                let now = crate::now_ms();
                let vote = ExportVote {
                    reviewer_id: caller.principal.id.clone(),
                    decision,
                    shared_comment: req.shared_comment.trim().to_owned(),
                    private_comment: req.private_comment.trim().to_owned(),
                    result_sha256: job.result_sha256.clone(),
                    query_sha256: job.query_sha256.clone(),
                    policy_version: policy_version.clone(),
                    at_ms: now,
                };
                votes.push(vote.clone());
                if let Some(stored) = &stored_result_sha256 {
                    verify_binding(&current, &job, stored, &policy_version, &votes)?;
                }
                let approved: Vec<&ExportVote> = approvals(&votes);
                let to = match decision {
                    ExportDecision::Reject => ExportStatus::Rejected,
                    ExportDecision::Return => ExportStatus::Returned,
                    ExportDecision::Approve if approved.len() as u64 >= quorum => {
                        ExportStatus::Approved
                    }
                    ExportDecision::Approve => ExportStatus::InReview,
                };
                let mut detail = json!({
                    "decision": decision.as_str(),
                    "approvals": approved.len(), "quorum": quorum, "n_votes": votes.len(),
                    "result_sha256": vote.result_sha256, "query_sha256": vote.query_sha256,
                    "policy_version": vote.policy_version,
                    "shared_comment_sha256": sha256_hex(vote.shared_comment.as_bytes()),
                    "private_comment_sha256": sha256_hex(vote.private_comment.as_bytes()),
                    "status": to.as_str(),
                });
                if to == ExportStatus::Approved && job.aggregate {
                    self.recheck_ledger(tx, &job, &staged)?;
                    let disclosure = &self.state.policy.disclosure;
                    let screened = disclosure
                        .block_differencing
                        .then_some(disclosure.min_entities);
                    store::record_release(tx, &current, &job, &sketches, screened)?;
                }
                if to == ExportStatus::Approved {
                    let approvers: Vec<String> =
                        approved.iter().map(|v| v.reviewer_id.clone()).collect();
                    match &package {
                        Some(built) if built.approvers == approvers => {
                            current.package_location = built.location.clone();
                            current.package_sha256 = built.sha256.clone();
                            current.decided_at_ms = built.approved_at_ms;
                            current.product = Some(built.product.clone());
                            detail["package_sha256"] = json!(built.sha256);
                            detail["package_result_sha256"] = json!(built.result_sha256);
                            detail["recipient_id"] = json!(current.recipient());
                            detail["fingerprint"] = json!(built.product.fingerprint);
                            detail["expires_at_ms"] = json!(built.product.expires_at_ms);
                            detail["round_counts_to"] = json!(built.product.round_counts_to);
                        }
                        _ => {
                            needs_package = Some(approved.into_iter().cloned().collect());
                            return Err(ServerError::FailedPrecondition(format!(
                                "other votes on export {} were recorded at the same time; \
                                 vote again",
                                export.id
                            )));
                        }
                    }
                } else if to != ExportStatus::InReview {
                    current.decided_at_ms = now;
                }
                store::insert_export_vote(tx, &export.id, &vote)?;
                if to != current.status {
                    let from = current.status;
                    let note = match to {
                        ExportStatus::Approved => format!("{}/{quorum} approvals", approved.len()),
                        _ => format!("{} vote", decision.as_str()),
                    };
                    store::append_export_event(
                        tx,
                        &export.id,
                        now,
                        &caller.principal.id,
                        from.as_str(),
                        to.as_str(),
                        &note,
                    )?;
                    detail["transitions"] = json!([[from.as_str(), to.as_str()]]);
                    current.status = to;
                    store::upsert_export(tx, &current)?;
                }
                Ok((current, caller.entry(target.clone(), "ok", detail)))
            });
            match (outcome, needs_package) {
                (Err(_), Some(approved)) if attempt < VOTE_ATTEMPTS => {
                    if let Some(stale) = package.take() {
                        self.discard_package(&stale).await;
                    }
                    package = Some(self.build_package(&export, &job, quorum, &approved).await?);
                }
                (outcome, _) => {
                    if let Some(built) = package {
                        let committed = matches!(
                            &outcome,
                            Ok(e) if e.package_location == built.location
                        );
                        if !committed {
                            self.discard_package(&built).await;
                        }
                    }
                    return outcome;
                }
            }
        }
        Err(ServerError::internal("a vote ran out of attempts"))
    }

    /// Builds, signs, seals and stores the package for `approvals`, checking again that the
    /// staged result is the one that was checked and reviewed.
    async fn build_package(
        &self,
        export: &ExportRecord,
        job: &JobRecord,
        quorum: u64,
        approvals: &[ExportVote],
    ) -> Result<BuiltPackage> {
        let stored = self.state.storage.get(&job.result_file).await?;
        if sha256_hex(&stored) != job.result_sha256 {
            return Err(ServerError::FailedPrecondition(
                "the staged result changed since it was reviewed; request a new export".into(),
            ));
        }
        let recipient_id = export.recipient().to_owned();
        let recipient = self
            .state
            .store
            .read(|c| store::principal(c, &recipient_id))?
            .ok_or_else(|| ServerError::internal("an export's recipient is missing"))?;
        let scenario = self
            .state
            .store
            .read(|c| store::scenario(c, &job.scenario_id))?
            .ok_or_else(|| ServerError::internal("a production job's scenario is missing"))?;
        let master = self.state.keys.master();
        let fingerprint = keys::product_fingerprint(master, &export.id, &recipient_id);
        let round_counts_to = match self.state.policy.disclosure.round_counts_to {
            0 | 1 => 0,
            base => base,
        };
        let staged = read_result(self.state.engine.read_result(&job.result_file).await?)?;
        let data = product_copy(
            master,
            staged,
            job,
            &recipient_id,
            &fingerprint,
            round_counts_to,
        )?;
        let format = if export.format == "csv" {
            ExportFormat::Csv
        } else {
            ExportFormat::Parquet
        };
        let file = render_export_file(&data, format)?;
        let datasets = self.state.store.read(|c| {
            job.inputs
                .iter()
                .map(|id| store::dataset(c, id))
                .collect::<Result<Vec<_>>>()
        })?;
        let approved_at_ms = crate::now_ms();
        let expires_at_ms = approved_at_ms
            .saturating_add(i64::from(export.expires_in_days.max(1)) * DAY_MS)
            .min(scenario.valid_until_ms);
        let basis = PriceBasis::new(
            scenario.category,
            self.state.config.pricing.rates(),
            data.n_rows(),
        );
        let product = ProductRecord {
            scenario_id: scenario.id.clone(),
            scenario_category: scenario.category,
            recipient_organisation: recipient.organisation.clone(),
            approved_at_ms,
            expires_at_ms,
            per_10k_rows_fen: basis.rates.per_10k_rows_fen,
            per_download_fen: basis.rates.per_download_fen,
            n_rows: data.n_rows(),
            fingerprint: fingerprint.clone(),
            round_counts_to,
            rekeyed_columns: ResultData::rekeyed_columns(&job.columns),
            rows_digest: data.rows_digest()?,
        };
        let manifest = Manifest {
            format: MANIFEST_FORMAT.into(),
            export_id: export.id.clone(),
            job_id: job.id.clone(),
            tenant_id: export.tenant_id.clone(),
            query_sha256: job.query_sha256.clone(),
            query_kind: job.query_kind().into(),
            scenario_id: job.scenario_id.clone(),
            input_datasets: datasets
                .into_iter()
                .flatten()
                .map(|d| ManifestDataset {
                    id: d.id,
                    name: d.name,
                    source_sha256: d.source_sha256,
                })
                .collect(),
            policy_version: export.policy_version.clone(),
            checks: export
                .checks
                .iter()
                .map(|c| ManifestCheck {
                    name: c.name.clone(),
                    outcome: c.outcome.as_str().to_owned(),
                })
                .collect(),
            purpose: export.purpose.clone(),
            requester_id: export.requester_id.clone(),
            quorum,
            approvals: approvals
                .iter()
                .map(|v| ManifestApproval {
                    reviewer_id: v.reviewer_id.clone(),
                    comment: v.shared_comment.clone(),
                    approved_at_ms: v.at_ms,
                    result_sha256: v.result_sha256.clone(),
                    query_sha256: v.query_sha256.clone(),
                    policy_version: v.policy_version.clone(),
                })
                .collect(),
            requested_at_ms: export.requested_at_ms,
            approved_at_ms,
            result: ManifestFile {
                name: format.file_name().to_owned(),
                sha256: sha256_hex(&file),
                bytes: file.len() as u64,
                rows: data.n_rows(),
            },
            domain_public_key: hex::encode(self.state.signing.public_key()),
            product: Some(ManifestProduct {
                recipient_id: recipient_id.clone(),
                recipient_organisation: recipient.organisation.clone(),
                permitted_use: export.permitted_use.clone(),
                expires_at_ms,
                scenario_id: scenario.id.clone(),
                scenario_category: scenario.category.as_str().to_owned(),
                price_basis: ManifestPrice {
                    free: basis.is_free(),
                    currency: "CNY".into(),
                    per_10k_rows_fen: basis.rates.per_10k_rows_fen,
                    per_download_fen: basis.rates.per_download_fen,
                    rows: basis.rows,
                    rows_charge_fen: basis.rows_charge_fen(),
                },
                fingerprint,
                row_order: ROW_ORDER.to_owned(),
                round_counts_to,
                rekeyed_columns: product.rekeyed_columns.clone(),
            }),
        };
        let package = package::build(&manifest, &file, &self.state.signing)?;
        let tenant = self
            .state
            .store
            .read(|c| store::tenant(c, &export.tenant_id))?
            .ok_or_else(|| ServerError::internal("the export's tenant is missing"))?;
        // One location per build: a package built for approvals that lost a race never
        // overwrites the one that is committed.
        let location = format!(
            "exports/{}/{}/{}.pkg",
            export.tenant_id,
            export.id,
            crate::new_id("pkg")
        );
        let sealed = package::seal(&self.state.envelope, &tenant.kek_id, &location, &package)?;
        self.state.storage.put(&location, sealed).await?;
        Ok(BuiltPackage {
            location,
            sha256: sha256_hex(&package),
            approvers: approvals.iter().map(|v| v.reviewer_id.clone()).collect(),
            approved_at_ms,
            result_sha256: manifest.result.sha256,
            product,
        })
    }

    /// The release-ledger checks (differencing, reconstruction) of `job`'s staged result
    /// against the tenant's ledger as it is inside transaction `tx`.
    fn recheck_ledger(
        &self,
        tx: &rusqlite::Connection,
        job: &JobRecord,
        staged: &[arrow::array::RecordBatch],
    ) -> Result<()> {
        let k = self.state.policy.disclosure.min_entities;
        let released = match result_units_range(staged, k) {
            Some((lo, hi)) => store::released_cells(tx, &job.tenant_id, lo, hi)?,
            None => Vec::new(),
        };
        let failed: Vec<&'static str> = release_checks(
            &gate_input(job, staged, &released),
            &self.state.policy.disclosure,
        )
        .into_iter()
        .filter(|r| r.outcome == CheckOutcome::Fail)
        .map(|r| r.name)
        .collect();
        if failed.is_empty() {
            Ok(())
        } else {
            Err(ServerError::FailedPrecondition(format!(
                "since this export was checked, its tenant released other results that, \
                 together with this one, would isolate individuals ({}): it cannot be \
                 approved; the requester must request a new export",
                failed.join(", ")
            )))
        }
    }

    /// Removes a package that was built but not committed.
    async fn discard_package(&self, built: &BuiltPackage) {
        if let Err(e) = self.state.storage.delete(&built.location).await {
            tracing::warn!(error = %e, "an uncommitted export package could not be removed");
        }
    }

    fn comment(&self, caller: &Caller, req: &pb::CommentExportRequest) -> Result<ExportRecord> {
        require_text(&req.text, "the comment", MAX_COMMENT_CHARS, true)?;
        let (export, standing) = self.visible_export(caller, &req.export_id)?;
        if req.private && standing != Standing::Reviewer {
            return Err(ServerError::PermissionDenied(
                "private comments are written and read only by reviewers independent of the \
                 requesting tenant"
                    .into(),
            ));
        }
        let text = req.text.trim();
        self.state.store.commit(
            &caller.entry(
                format!("export:{}", export.id),
                "ok",
                json!({"private": req.private, "chars": text.chars().count(),
                       "text_sha256": sha256_hex(text.as_bytes())}),
            ),
            |tx| {
                store::insert_export_comment(
                    tx,
                    &export.id,
                    &caller.principal.id,
                    caller.principal.role,
                    req.private,
                    text,
                    crate::now_ms(),
                )
            },
        )?;
        Ok(export)
    }

    fn revoke(&self, caller: &Caller, req: &pb::RevokeExportRequest) -> Result<ExportRecord> {
        require_text(&req.reason, "the reason", MAX_REASON_CHARS, true)?;
        let (export, _) = self.visible_export(caller, &req.export_id)?;
        require_independent(caller, &export, "revoke")?;
        let reason = req.reason.trim();
        let target = format!("export:{}", export.id);
        self.state.store.commit_with(|tx| {
            let mut current = store::export(tx, &export.id)?
                .ok_or_else(|| ServerError::NotFound(format!("export {}", export.id)))?;
            if current.status != ExportStatus::Approved {
                return Err(ServerError::FailedPrecondition(format!(
                    "only an approved export can be revoked; export {} is {}",
                    current.id,
                    current.status.as_str()
                )));
            }
            let from = current.status;
            current.status = ExportStatus::Revoked;
            store::upsert_export(tx, &current)?;
            store::append_export_event(
                tx,
                &current.id,
                crate::now_ms(),
                &caller.principal.id,
                from.as_str(),
                current.status.as_str(),
                reason,
            )?;
            let detail = json!({
                "reason_sha256": sha256_hex(reason.as_bytes()),
                "package_sha256": current.package_sha256,
                "status": current.status.as_str(),
                "transitions": [[from.as_str(), current.status.as_str()]],
            });
            Ok((current, caller.entry(target, "ok", detail)))
        })
    }
}

fn or_none(names: &[String]) -> String {
    if names.is_empty() {
        "none".to_owned()
    } else {
        names.join(", ")
    }
}

#[tonic::async_trait]
impl ExportService for Api {
    async fn request_export(
        &self,
        request: Request<pb::RequestExportRequest>,
    ) -> Result<Response<pb::RequestExportResponse>, Status> {
        let caller = self.state.begin(&request, Action::RequestExport)?;
        let req = request.into_inner();
        let target = format!("job:{}", req.job_id);
        let result = async {
            let export = self.request_export(&caller, req).await?;
            self.export_for(&caller, &export)
        }
        .await;
        let export = self.state.finish_write(&caller, &target, result)?;
        Ok(Response::new(pb::RequestExportResponse {
            export: Some(export),
        }))
    }

    async fn get_export(
        &self,
        request: Request<pb::GetExportRequest>,
    ) -> Result<Response<pb::GetExportResponse>, Status> {
        let caller = self.state.begin(&request, Action::ViewExport)?;
        let id = request.into_inner().export_id;
        let target = format!("export:{id}");
        let result = self.visible_export(&caller, &id).and_then(|(e, _)| {
            let export = self.export_for(&caller, &e)?;
            Ok((
                pb::GetExportResponse {
                    export: Some(export),
                },
                json!({}),
            ))
        });
        Ok(Response::new(
            self.state.finish_read(&caller, &target, result)?,
        ))
    }

    async fn list_exports(
        &self,
        request: Request<pb::ListExportsRequest>,
    ) -> Result<Response<pb::ListExportsResponse>, Status> {
        let caller = self.state.begin(&request, Action::ViewExport)?;
        let result = (|| {
            let records = match caller.principal.role {
                Role::Reviewer => self
                    .state
                    .store
                    .read(|c| store::exports_in_review(c, caller.principal.tenant_id.as_deref()))?,
                Role::Auditor => self.state.store.read(|c| {
                    let mut all = Vec::new();
                    for tenant in store::tenants(c)? {
                        all.extend(store::exports_of_tenant(c, &tenant.id)?);
                    }
                    all.sort_by_key(|e| std::cmp::Reverse(e.requested_at_ms));
                    Ok(all)
                })?,
                _ => {
                    let tenant = caller.tenant()?;
                    self.state
                        .store
                        .read(|c| store::exports_of_tenant(c, tenant))?
                }
            };
            let exports = records
                .iter()
                .map(|e| self.export_for(&caller, e))
                .collect::<Result<Vec<_>>>()?;
            let n = exports.len();
            Ok((pb::ListExportsResponse { exports }, json!({"n": n})))
        })();
        Ok(Response::new(self.state.finish_read(&caller, "", result)?))
    }

    async fn review_export(
        &self,
        request: Request<pb::ReviewExportRequest>,
    ) -> Result<Response<pb::ReviewExportResponse>, Status> {
        let caller = self.state.begin(&request, Action::ReviewExport)?;
        let id = request.into_inner().export_id;
        let target = format!("export:{id}");
        let result = async {
            let (export, _) = self.visible_export(&caller, &id)?;
            require_independent(&caller, &export, "review")?;
            let job = self.job_of(&export)?;
            let data = read_result(self.state.engine.read_result(&job.result_file).await?)?;
            let (ipc, truncated) = data.to_ipc(REVIEW_MAX_ROWS)?;
            let plan_text = self
                .state
                .store
                .read(|c| crate::plan_texts::get(c, &job.id))?;
            let (rendered_sql, unrendered_reason, sources) = match plan_text {
                Some(text) => (
                    text.sql.unwrap_or_default(),
                    text.unrendered.unwrap_or_default(),
                    text.sources.into_iter().map(convert::plan_source).collect(),
                ),
                None if job.query_kind() == "substrait" => (
                    String::new(),
                    "the job ran before dataframe plans were rendered for review: request a \
                     new export of a rerun"
                        .to_owned(),
                    Vec::new(),
                ),
                None => Default::default(),
            };
            let response = pb::ReviewExportResponse {
                export: Some(self.export_for(&caller, &export)?),
                sql: job.sql.clone(),
                columns: job.columns.iter().map(convert::output_column).collect(),
                result_arrow_ipc: ipc,
                truncated,
                n_rows: data.n_rows(),
                input_dataset_ids: job.inputs.clone(),
                query_kind: job.query_kind().to_owned(),
                query_sha256: job.query_sha256.clone(),
                result_sha256: job.result_sha256.clone(),
                policy_version: self.state.policy.version.clone(),
                scenario_id: job.scenario_id.clone(),
                lineage: job.columns.iter().map(convert::column_lineage).collect(),
                row_influencing: job
                    .gate
                    .row_influencing
                    .iter()
                    .map(|r| pb::RowInfluence {
                        source: r.source.clone(),
                        role: r.role.clone(),
                        classification: r.classification.as_str().to_owned(),
                    })
                    .collect(),
                unanalysable: job.gate.unanalysable.clone(),
                units: match &job.gate.disclosure.units {
                    shuyu_engine::UnitCount::Counted(_) => "counted".to_owned(),
                    shuyu_engine::UnitCount::Rows(reason)
                    | shuyu_engine::UnitCount::NoUnits(reason) => reason.clone(),
                },
                rendered_sql,
                unrendered_reason,
                sources,
            };
            Ok((response, json!({"job_id": job.id, "n_rows": data.n_rows()})))
        }
        .await;
        Ok(Response::new(
            self.state.finish_read(&caller, &target, result)?,
        ))
    }

    async fn vote_export(
        &self,
        request: Request<pb::VoteExportRequest>,
    ) -> Result<Response<pb::VoteExportResponse>, Status> {
        let caller = self.state.begin(&request, Action::VoteExport)?;
        let req = request.into_inner();
        let target = format!("export:{}", req.export_id);
        let result = async {
            let export = self.vote(&caller, &req).await?;
            self.export_for(&caller, &export)
        }
        .await;
        let export = self.state.finish_write(&caller, &target, result)?;
        Ok(Response::new(pb::VoteExportResponse {
            export: Some(export),
        }))
    }

    async fn comment_export(
        &self,
        request: Request<pb::CommentExportRequest>,
    ) -> Result<Response<pb::CommentExportResponse>, Status> {
        let caller = self.state.begin(&request, Action::CommentExport)?;
        let req = request.into_inner();
        let target = format!("export:{}", req.export_id);
        let result = self
            .comment(&caller, &req)
            .and_then(|export| self.export_for(&caller, &export));
        let export = self.state.finish_write(&caller, &target, result)?;
        Ok(Response::new(pb::CommentExportResponse {
            export: Some(export),
        }))
    }

    async fn revoke_export(
        &self,
        request: Request<pb::RevokeExportRequest>,
    ) -> Result<Response<pb::RevokeExportResponse>, Status> {
        let caller = self.state.begin(&request, Action::RevokeExport)?;
        let req = request.into_inner();
        let target = format!("export:{}", req.export_id);
        let result = self
            .revoke(&caller, &req)
            .and_then(|export| self.export_for(&caller, &export));
        let export = self.state.finish_write(&caller, &target, result)?;
        Ok(Response::new(pb::RevokeExportResponse {
            export: Some(export),
        }))
    }

    type DownloadExportStream = ReceiverStream<Result<pb::DownloadExportResponse, Status>>;

    async fn download_export(
        &self,
        request: Request<pb::DownloadExportRequest>,
    ) -> Result<Response<Self::DownloadExportStream>, Status> {
        let caller = self.state.begin(&request, Action::DownloadExport)?;
        let id = request.into_inner().export_id;
        let target = format!("export:{id}");
        let result = async {
            let export = recipients_export(&self.state, &caller, &id)?;
            require_deliverable(&export, crate::now_ms())?;
            crate::lifecycle::require_exports_open(&self.state.store, &export.tenant_id)?;
            let stored = self.state.storage.get(&export.package_location).await?;
            let package = package::open(&self.state.envelope, &export.package_location, &stored)?;
            if sha256_hex(&package) != export.package_sha256 {
                return Err(ServerError::internal(
                    "a stored package does not match its recorded hash",
                ));
            }
            self.record_download(&caller, &export, "package", package.len() as u64)?;
            Ok(package)
        }
        .await;
        let package = self.state.finish_write(&caller, &target, result)?;
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tokio::spawn(async move {
            for chunk in package.chunks(CHUNK_BYTES) {
                if tx
                    .send(Ok(pb::DownloadExportResponse {
                        chunk: chunk.to_vec(),
                    }))
                    .await
                    .is_err()
                {
                    break;
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn list_products(
        &self,
        request: Request<pb::ListProductsRequest>,
    ) -> Result<Response<pb::ListProductsResponse>, Status> {
        let caller = self.state.begin(&request, Action::ListProducts)?;
        let result = (|| {
            let p = &caller.principal;
            let records = match p.role {
                Role::Recipient => self
                    .state
                    .store
                    .read(|c| store::products_of_recipient(c, &p.id))?,
                Role::Reviewer => self
                    .state
                    .store
                    .read(|c| store::products(c, None, p.tenant_id.as_deref()))?,
                Role::Engineer => {
                    let tenant = caller.tenant()?;
                    self.state
                        .store
                        .read(|c| store::products(c, Some(tenant), None))?
                }
                // Supervisors see every product's record (R35), never its rows.
                Role::Auditor => self.state.store.read(|c| store::products(c, None, None))?,
                Role::PlatformAdmin | Role::DataSteward => {
                    return Err(ServerError::PermissionDenied(format!(
                        "the {} role has no products to list",
                        p.role.as_str()
                    )));
                }
            };
            let now = crate::now_ms();
            let products: Vec<pb::Product> = records
                .iter()
                .filter_map(|e| convert::product(e, now))
                .collect();
            let n = products.len();
            Ok((pb::ListProductsResponse { products }, json!({"n": n})))
        })();
        Ok(Response::new(self.state.finish_read(&caller, "", result)?))
    }

    async fn trace_export(
        &self,
        request: Request<pb::TraceExportRequest>,
    ) -> Result<Response<pb::TraceExportResponse>, Status> {
        let caller = self.state.begin(&request, Action::TraceExport)?;
        let file = request.into_inner().file;
        let result = self.trace(&file);
        Ok(Response::new(self.state.finish_read(&caller, "", result)?))
    }
}

impl Api {
    /// Counts one delivery of `export` to its recipient (a package download or a Flight
    /// fetch) and audits it, in one transaction: who (the caller), which export, how many
    /// bytes, which package.
    pub(super) fn record_download(
        &self,
        caller: &Caller,
        export: &ExportRecord,
        via: &str,
        bytes: u64,
    ) -> Result<u64> {
        let target = format!("export:{}", export.id);
        self.state.store.commit_with(|tx| {
            let count = store::record_download(tx, &export.id, crate::now_ms())?;
            let detail = json!({
                "via": via,
                "bytes": bytes,
                "package_sha256": export.package_sha256,
                "fingerprint": export.product.as_ref().map(|p| p.fingerprint.as_str()),
                "download_count": count,
            });
            Ok((count, caller.entry(target, "ok", detail)))
        })
    }

    /// Finds the product `file` (a leaked copy) came from: by the fingerprint in its
    /// metadata if a product has it, else by the keyed order of its rows among the products
    /// with exactly its rows.
    fn trace(&self, file: &[u8]) -> Result<(pb::TraceExportResponse, serde_json::Value)> {
        if file.is_empty() {
            return Err(ServerError::InvalidArgument("the file is empty".into()));
        }
        if file.len() > MAX_TRACE_BYTES {
            return Err(ServerError::InvalidArgument(format!(
                "the file is larger than {} MiB",
                MAX_TRACE_BYTES >> 20
            )));
        }
        let leaked = ResultData::from_export_file(file)?;
        let master = self.state.keys.master();
        let ordered =
            |e: &ExportRecord| -> Result<bool> {
                match &e.product {
                    Some(p) => Ok(leaked
                        .is_ordered_by_key(&keys::product_order_key(master, &p.fingerprint)?)?),
                    None => Ok(false),
                }
            };
        let by_metadata = match leaked.fingerprint() {
            Some(fp) => self
                .state
                .store
                .read(|c| store::product_by_fingerprint(c, &fp))?,
            None => None,
        };
        let (export, matched_by, consistent, n_candidates) = match by_metadata {
            Some(export) => {
                let consistent = ordered(&export)?;
                (export, "metadata", consistent, 1)
            }
            None => {
                let digest = leaked.rows_digest()?;
                let candidates = self
                    .state
                    .store
                    .read(|c| store::products_with_rows(c, &digest))?;
                let n = candidates.len();
                let mut matches = Vec::new();
                for candidate in candidates {
                    if ordered(&candidate)? {
                        matches.push(candidate);
                    }
                }
                match matches.len() {
                    0 if n == 0 => {
                        return Err(ServerError::NotFound(
                            "a product with exactly this file's rows".into(),
                        ));
                    }
                    0 => {
                        return Err(ServerError::NotFound(format!(
                            "a product whose row order matches the file ({n} products have \
                             its rows, but it was reordered)"
                        )));
                    }
                    1 => (matches.remove(0), "row_order", true, n as u64),
                    _ => {
                        let ids: Vec<&str> = matches.iter().map(|e| e.id.as_str()).collect();
                        return Err(ServerError::FailedPrecondition(format!(
                            "the file's row order fits {} products ({}): too few rows to tell \
                             their copies apart",
                            ids.len(),
                            ids.join(", ")
                        )));
                    }
                }
            }
        };
        let recipient_id = export.recipient().to_owned();
        let organisation = export
            .product
            .as_ref()
            .map(|p| p.recipient_organisation.clone())
            .unwrap_or_default();
        let fingerprint = export
            .product
            .as_ref()
            .map(|p| p.fingerprint.clone())
            .unwrap_or_default();
        let detail = json!({
            "file_sha256": sha256_hex(file), "bytes": file.len(), "rows": leaked.n_rows(),
            "matched_by": matched_by, "export_id": export.id, "recipient_id": recipient_id,
            "row_order_consistent": consistent, "n_candidates": n_candidates,
        });
        Ok((
            pb::TraceExportResponse {
                export_id: export.id.clone(),
                recipient_id,
                recipient_organisation: organisation,
                tenant_id: export.tenant_id.clone(),
                matched_by: matched_by.to_owned(),
                row_order_consistent: consistent,
                n_candidates,
                fingerprint,
            },
            detail,
        ))
    }
}

/// What the export checks read of `job`'s staged result `batches`, against `released`.
fn gate_input<'a>(
    job: &'a JobRecord,
    batches: &'a [arrow::array::RecordBatch],
    released: &'a [shuyu_engine::ReleasedCell],
) -> GateInput<'a> {
    GateInput {
        columns: &job.columns,
        unanalysable: &job.gate.unanalysable,
        row_influencing: &job.gate.row_influencing,
        disclosure: &job.gate.disclosure,
        batches,
        released,
    }
}
