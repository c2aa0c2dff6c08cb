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

use std::sync::Arc;

use serde_json::json;
use shuyu_engine::{ExportFormat, ResultData, SealedFile, object_context};
use shuyu_policy::{Action, PolicyError, PriceBasis, Role, product_days};
use shuyu_proto::v1 as pb;
use shuyu_proto::v1::export_service_server::ExportService;
use shuyu_vault::sha256_hex;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::convert::{self, ExportView};
use crate::error::{Refusal, Result, ServerError};
use crate::exports::delivery::read_full;
use crate::exports::package::{
    self, MANIFEST_FORMAT, Manifest, ManifestApproval, ManifestCheck, ManifestDataset,
    ManifestFile, ManifestPrice, ManifestProduct,
};
use crate::exports::records::{
    CheckVerdict, EXPORT_SUBMITTED, ExportDecision, ExportHistory, ExportRecord, ExportStatus,
    ExportVote, ProductRecord, StoredCopy,
};
use crate::exports::review::{
    self, Staged, Standing, require_in_review, require_independent, standing,
};
use crate::exports::tasks::{CopySpec, LedgerCheck};
use crate::jobs::records::{JobMode, JobRecord, JobStatus};
use crate::keys;
use crate::service::{require_id, require_text};
use crate::state::{Caller, Done};
use crate::store::Audited;

/// The handler of `ExportService` and the Arrow Flight service of its products: the area's context it serves from.
#[derive(Debug, Clone)]
pub(crate) struct ExportsRpc {
    pub(crate) state: std::sync::Arc<super::Context>,
}

impl ExportsRpc {
    /// The handler over its area's context.
    pub(crate) fn new(state: std::sync::Arc<super::Context>) -> ExportsRpc {
        ExportsRpc { state }
    }
}

/// Bytes of a package per message of a download.
const CHUNK_BYTES: usize = 64 * 1024;
/// Longest comment, vote comment or private note, in characters.
const MAX_COMMENT_CHARS: usize = 4000;
/// Longest revocation reason, in characters.
const MAX_REASON_CHARS: usize = 2000;
/// Attempts of a vote whose approval reaches the quorum while other votes or releases of the
/// tenant arrive.
const VOTE_ATTEMPTS: usize = 4;
/// Longest permitted use, in characters.
const MAX_USE_CHARS: usize = 2000;
/// Largest file TraceExport reads.
pub(crate) const MAX_TRACE_BYTES: usize = 32 << 20;
const DAY_MS: i64 = 86_400_000;
/// How a product copy's rows are ordered (recorded in its manifest).
const ROW_ORDER: &str = "keyed-by-fingerprint/v1";

/// The export `id` if `caller` is its product's recipient; NotFound to everyone else, the
/// requester included (R23).
pub(crate) fn recipients_export(
    state: &super::Context,
    caller: &Caller,
    id: &str,
) -> Result<ExportRecord> {
    require_id(id, "export_id")?;
    match state
        .store
        .read(|c| crate::exports::records::export(c, id))?
    {
        Some(e) if e.recipient() == caller.principal.id => Ok(e),
        _ => Err(ServerError::NotFound(format!("export {id}"))),
    }
}

/// Refuses a product that is not approved, was revoked, or has expired, at `now_ms`.
pub(crate) fn require_deliverable(export: &ExportRecord, now_ms: i64) -> Result<()> {
    let id = &export.id;
    match export.status_at(now_ms) {
        ExportStatus::Approved => Ok(()),
        // The reason is free text: it is in the export's history, not in this message
        // (which the audit trail records).
        ExportStatus::Revoked => Err(Refusal::ExportRevoked(format!(
            "export {id} was revoked and can no longer be downloaded; its history gives the \
             reason"
        ))
        .into()),
        ExportStatus::Expired => Err(Refusal::ProductExpired(format!(
            "product {id} expired at {} and can no longer be downloaded",
            crate::format_ms(export.product.as_ref().map_or(0, |p| p.expires_at_ms))
        ))
        .into()),
        other => Err(Refusal::ExportNotApproved(format!(
            "export {id} is not approved (it is {})",
            other.as_str()
        ))
        .into()),
    }
}

/// A package built for one set of approvals, stored but not yet committed.
#[derive(Debug)]
struct BuiltPackage {
    location: String,
    /// The product's Flight copy, when it has one of its own (a CSV package).
    flight_location: Option<String>,
    sha256: String,
    approvers: Vec<String>,
    approved_at_ms: i64,
    result_sha256: String,
    product: ProductRecord,
}

impl ExportsRpc {
    /// Approvals needed for `export` (see [`review::quorum`]).
    fn quorum(&self, export: &ExportRecord) -> u64 {
        review::quorum(export.quorum, self.state.policy.review.quorum)
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
        let standing = standing(&caller.principal, export)
            .ok_or_else(|| ServerError::NotFound(format!("export {}", export.id)))?;
        let history = self
            .state
            .store
            .read(|c| crate::exports::records::export_history(c, &export.id))?;
        let view = self.view(caller, standing, export, &history);
        Ok(convert::export(export, &history, &view))
    }

    /// An export the caller may see with their standing, or NotFound: engineers see their
    /// tenant's, reviewers every export, admins every export (to revoke it), auditors every
    /// export.
    fn visible_export(&self, caller: &Caller, id: &str) -> Result<(ExportRecord, Standing)> {
        require_id(id, "export_id")?;
        let export = self
            .state
            .store
            .read(|c| crate::exports::records::export(c, id))?;
        match export.and_then(|e| standing(&caller.principal, &e).map(|s| (e, s))) {
            Some(found) => Ok(found),
            None => Err(ServerError::NotFound(format!("export {id}"))),
        }
    }

    fn job_of(&self, export: &ExportRecord) -> Result<JobRecord> {
        self.state
            .store
            .read(|c| {
                crate::jobs::records::job_any_tenant(
                    c,
                    self.state.store.audit_log(),
                    &export.job_id,
                )
            })?
            .ok_or_else(|| ServerError::internal("an export's job is missing"))
    }

    async fn request_export(
        &self,
        caller: &Caller,
        req: pb::RequestExportRequest,
    ) -> Result<Audited<ExportRecord>> {
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
            .read(|c| {
                crate::jobs::records::job(c, self.state.store.audit_log(), tenant, &req.job_id)
            })?
            .ok_or_else(|| ServerError::NotFound(format!("job {}", req.job_id)))?;
        if job.status != JobStatus::Succeeded {
            return Err(Refusal::JobNotSucceeded(
                "only a succeeded job's result can be exported".into(),
            )
            .into());
        }
        if job.mode == JobMode::Lab {
            return Err(Refusal::LabResultStays(
                "a lab job's result never leaves the lab: promote the job to production under \
                 a scenario and export that result"
                    .into(),
            )
            .into());
        }
        if req.recipient_id.trim().is_empty() {
            return Err(ServerError::InvalidArgument(
                "recipient_id is required: name the recipient principal the product is for".into(),
            ));
        }
        // R25: nothing leaves outside an authorization's term.
        self.state.store.read(|c| {
            crate::governance::records::require_authorization(
                c,
                tenant,
                crate::now_ms(),
                &crate::governance::records::Need::default(),
            )
        })?;
        require_id(&req.recipient_id, "recipient_id")?;
        require_text(&req.permitted_use, "the permitted use", MAX_USE_CHARS, true)?;
        let recipient = self
            .state
            .store
            .read(|c| crate::admin::records::principal(c, &req.recipient_id))?
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
            .read(|c| crate::scenarios::records::scenario(c, &job.scenario_id))?
            .ok_or_else(|| ServerError::internal("a production job's scenario is missing"))?;
        let now = crate::now_ms();
        let days_left = (scenario.valid_until_ms - now).max(0) / DAY_MS;
        let expires_in_days =
            product_days(req.expires_in_days, days_left as u64).map_err(|e| match e {
                PolicyError::ScenarioEnding => Refusal::ScenarioEnding(format!(
                    "scenario {} ends at {}: {e}",
                    scenario.id,
                    crate::format_ms(scenario.valid_until_ms)
                ))
                .into(),
                other => ServerError::InvalidArgument(other.to_string()),
            })?;
        // The checks run in a worker, as the server ran them before: the sketches' heads
        // first, the whole result only when a close pair or the reconstruction audit needs the
        // members. The server holds none of it.
        let checks = {
            let _turn = self.state.results.turn("the export request").await?;
            self.staged_checks(&job).await?
        };
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
        let done = self.state.store.commit(
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
                crate::exports::records::upsert_export(tx, &export)?;
                crate::exports::records::append_export_event(
                    tx,
                    &id,
                    now,
                    &caller.principal.id,
                    "",
                    EXPORT_SUBMITTED,
                    "",
                )?;
                crate::exports::records::append_export_event(
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
        Ok(done.map(|()| export))
    }

    /// Records one reviewer's vote. The vote, the status change, its event and its audit
    /// record commit in one transaction that re-reads the export and its votes, so
    /// simultaneous votes can neither both miss nor both count towards the quorum. When an
    /// approval reaches the quorum, the package is built and stored first (for exactly the
    /// approvals it names); if another vote changed the approvals meanwhile, it is rebuilt.
    async fn vote(
        &self,
        caller: &Caller,
        req: &pb::VoteExportRequest,
    ) -> Result<Audited<ExportRecord>> {
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
        require_independent(&caller.principal, &export, "vote on")?;
        require_in_review(&export)?;
        crate::lifecycle::records::require_exports_open(&self.state.store, &export.tenant_id)?;
        // R25, R27: nothing is released for a tenant whose authorization ended while its
        // export was in review (a rejection or return still ends the review).
        if decision == ExportDecision::Approve {
            crate::governance::records::require_in_force(&self.state.store, &export.tenant_id)?;
        }
        let job = self.job_of(&export)?;
        // An approval handles the staged result (its hash, the ledger's inputs, the package):
        // one turn of the server's budget for the whole vote.
        let _turn = match decision {
            ExportDecision::Approve => Some(self.state.results.turn("the approving vote").await?),
            ExportDecision::Reject | ExportDecision::Return => None,
        };
        // The stored file as it is now, hashed in chunks.
        let stored_result_sha256 = if decision == ExportDecision::Approve {
            Some(self.state.storage.sha256(&job.result_file).await?)
        } else {
            None
        };
        let policy_version = self.state.policy.version.clone();
        let quorum = self.quorum(&export);
        let target = format!("export:{}", export.id);
        // An aggregate's cells go into the tenant's release ledger when it is approved. The
        // ledger checks ran in a worker against the ledger up to a mark; inside the approving
        // transaction the mark must still be the ledger's (cells are only ever added), so two
        // exports checked side by side cannot both be released when together they isolate
        // people: a release in between sends the vote back to check again. (Only when the
        // stored result is the one checked: otherwise the binding check refuses the vote.)
        let intact = stored_result_sha256.as_deref() == Some(job.result_sha256.as_str());
        let mut ledger: Option<LedgerCheck> = None;
        let mut package: Option<BuiltPackage> = None;
        for attempt in 1..=VOTE_ATTEMPTS {
            let mut needs_package: Option<Vec<ExportVote>> = None;
            let mut needs_ledger = false;
            let outcome = self.state.store.commit_with(|tx| {
                // What a previous run of this transaction (rerun after a conflict) asked for
                // does not hold for this one.
                needs_package = None;
                needs_ledger = false;
                let mut current = crate::exports::records::export(tx, &export.id)?
                    .ok_or_else(|| ServerError::NotFound(format!("export {}", export.id)))?;
                require_in_review(&current)?;
                // Checked again inside the transaction: a hold that commits while the vote
                // is prepared still freezes it.
                if let Some(reason) =
                    crate::lifecycle::records::hold(tx, &current.tenant_id)?.frozen_reason()
                {
                    return Err(
                        Refusal::ExportFrozen(format!("the export is frozen: {reason}")).into(),
                    );
                }
                let votes = crate::exports::records::export_votes(tx, &export.id)?;
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
                let staged = stored_result_sha256.as_deref().map(|stored| Staged {
                    result_sha256: &job.result_sha256,
                    stored_result_sha256: stored,
                    query_sha256: &job.query_sha256,
                    policy_version: &policy_version,
                });
                let tally = review::tally(&current, votes, vote.clone(), staged.as_ref(), quorum)?;
                let (votes, to) = (&tally.votes, tally.to);
                let approved: Vec<&ExportVote> = tally.approvals();
                let mut detail = json!({
                    "decision": decision.as_str(),
                    "approvals": approved.len(), "quorum": quorum, "n_votes": votes.len(),
                    "result_sha256": vote.result_sha256, "query_sha256": vote.query_sha256,
                    "policy_version": vote.policy_version,
                    "shared_comment_sha256": sha256_hex(vote.shared_comment.as_bytes()),
                    "private_comment_sha256": sha256_hex(vote.private_comment.as_bytes()),
                    "status": to.as_str(),
                });
                if to == ExportStatus::Approved && job.aggregate && intact {
                    let mark = crate::exports::records::ledger_mark(tx, &job.tenant_id)?;
                    match &ledger {
                        Some(checked) if checked.mark.is_none_or(|m| m == mark) => {
                            if !checked.failed.is_empty() {
                                return Err(ledger_refusal(&checked.failed));
                            }
                            let disclosure = &self.state.policy.disclosure;
                            let screened = disclosure
                                .block_differencing
                                .then_some(disclosure.min_entities);
                            crate::exports::records::record_release(
                                tx,
                                &current,
                                &job,
                                &checked.sketches,
                                screened,
                            )?;
                        }
                        _ => {
                            needs_ledger = true;
                            needs_package = Some(approved.into_iter().cloned().collect());
                            return Err(Refusal::ConcurrentChange(format!(
                                "other exports of tenant {} were released at the same time; \
                                 vote again",
                                job.tenant_id
                            ))
                            .into());
                        }
                    }
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
                            return Err(Refusal::ConcurrentChange(format!(
                                "other votes on export {} were recorded at the same time; \
                                 vote again",
                                export.id
                            ))
                            .into());
                        }
                    }
                } else if to != ExportStatus::InReview {
                    current.decided_at_ms = now;
                }
                crate::exports::records::insert_export_vote(tx, &export.id, &vote)?;
                if to != current.status {
                    let from = current.status;
                    let note = match to {
                        ExportStatus::Approved => format!("{}/{quorum} approvals", approved.len()),
                        _ => format!("{} vote", decision.as_str()),
                    };
                    crate::exports::records::append_export_event(
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
                    crate::exports::records::upsert_export(tx, &current)?;
                }
                Ok((current, caller.entry(target.clone(), "ok", detail)))
            });
            match (outcome, needs_package) {
                (Err(_), Some(approved)) if attempt < VOTE_ATTEMPTS => {
                    let approvers: Vec<&str> =
                        approved.iter().map(|v| v.reviewer_id.as_str()).collect();
                    let rebuild = package
                        .as_ref()
                        .is_none_or(|built| built.approvers != approvers);
                    if rebuild && let Some(stale) = package.take() {
                        self.discard_package(&stale).await;
                    }
                    let (checked, built) = self
                        .prepare_release(&export, &job, quorum, &approved, needs_ledger, rebuild)
                        .await?;
                    if checked.is_some() {
                        ledger = checked;
                    }
                    if built.is_some() {
                        package = built;
                    }
                }
                (outcome, _) => {
                    if let Some(built) = package {
                        let committed = matches!(
                            &outcome,
                            Ok(e) if e.value().package_location == built.location
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

    /// What an approval by `approvals` needs that is not ready: the release ledger's inputs
    /// (when `ledger`) and the signed, sealed, stored package (when `package`), computed in
    /// one worker.
    async fn prepare_release(
        &self,
        export: &ExportRecord,
        job: &JobRecord,
        quorum: u64,
        approvals: &[ExportVote],
        ledger: bool,
        package: bool,
    ) -> Result<(Option<LedgerCheck>, Option<BuiltPackage>)> {
        if !package {
            let (checked, _) = self.release_work(&export.id, job, ledger, None).await?;
            return Ok((checked, None));
        }
        let (checked, built) = self
            .build_package(export, job, quorum, approvals, ledger)
            .await?;
        Ok((checked, Some(built)))
    }

    /// Builds, signs, seals and stores the package for `approvals` (with the release
    /// ledger's inputs when `ledger`), checking again that the staged result is the one that
    /// was checked and reviewed. A worker writes the recipient's copy into the export's
    /// folder; the package is then streamed from it into its sealed object (and a CSV
    /// product's Parquet copy for Flight stays beside it): nothing is held whole.
    async fn build_package(
        &self,
        export: &ExportRecord,
        job: &JobRecord,
        quorum: u64,
        approvals: &[ExportVote],
        ledger: bool,
    ) -> Result<(Option<LedgerCheck>, BuiltPackage)> {
        if self.state.storage.sha256(&job.result_file).await? != job.result_sha256 {
            return Err(Refusal::BindingChanged(
                "the staged result changed since it was reviewed; request a new export".into(),
            )
            .into());
        }
        let recipient_id = export.recipient().to_owned();
        let recipient = self
            .state
            .store
            .read(|c| crate::admin::records::principal(c, &recipient_id))?
            .ok_or_else(|| ServerError::internal("an export's recipient is missing"))?;
        let scenario = self
            .state
            .store
            .read(|c| crate::scenarios::records::scenario(c, &job.scenario_id))?
            .ok_or_else(|| ServerError::internal("a production job's scenario is missing"))?;
        let tenant = self
            .state
            .store
            .read(|c| crate::admin::records::tenant(c, &export.tenant_id))?
            .ok_or_else(|| ServerError::internal("the export's tenant is missing"))?;
        let master = self.state.keys.master();
        let fingerprint = keys::product_fingerprint(master, &export.id, &recipient_id);
        let round_counts_to = match self.state.policy.disclosure.round_counts_to {
            0 | 1 => 0,
            base => base,
        };
        let format = if export.format == "csv" {
            ExportFormat::Csv
        } else {
            ExportFormat::Parquet
        };
        // One set of files per build: a package built for approvals that lost a race never
        // overwrites the one that is committed.
        let work_dir = format!("exports/{}/{}/", export.tenant_id, export.id);
        let build_id = crate::new_id("pkg");
        let location = format!("{work_dir}{build_id}.pkg");
        let data_location = format!("{work_dir}{build_id}.data");
        let flight = match format {
            ExportFormat::Parquet => None,
            ExportFormat::Csv => {
                let (key, metadata) = self.state.envelope.new_data_key(&tenant.kek_id)?;
                Some((format!("{work_dir}{build_id}.flight"), key, metadata))
            }
        };
        std::fs::create_dir_all(self.state.storage.path_of(&work_dir))
            .map_err(|e| ServerError::from_io("creating the export's folder", e))?;
        let spec = CopySpec {
            work_dir,
            format: export.format.clone(),
            round_counts_to,
            recipient_key: keys::recipient_pseudonym_key(master, &recipient_id)?,
            order_key: keys::product_order_key(master, &fingerprint)?,
            fingerprint: fingerprint.clone(),
            data_location: data_location.clone(),
            data_key: shuyu_vault::SecretKey::generate(),
            flight,
        };
        let built = async {
            let (checked, facts) = self
                .release_work(&export.id, job, ledger, Some(&spec))
                .await?;
            let facts =
                facts.ok_or_else(|| ServerError::internal("an export worker wrote no copy"))?;
            let datasets = self.state.store.read(|c| {
                job.inputs
                    .iter()
                    .map(|id| crate::catalog::records::dataset(c, id))
                    .collect::<Result<Vec<_>>>()
            })?;
            let approved_at_ms = crate::now_ms();
            let expires_at_ms = approved_at_ms
                .saturating_add(i64::from(export.expires_in_days.max(1)) * DAY_MS)
                .min(scenario.valid_until_ms);
            let basis =
                PriceBasis::new(scenario.category, self.state.pricing.rates(), facts.n_rows);
            let product = ProductRecord {
                scenario_id: scenario.id.clone(),
                scenario_category: scenario.category,
                recipient_organisation: recipient.organisation.clone(),
                approved_at_ms,
                expires_at_ms,
                per_10k_rows_fen: basis.rates.per_10k_rows_fen,
                per_download_fen: basis.rates.per_download_fen,
                n_rows: facts.n_rows,
                fingerprint: fingerprint.clone(),
                round_counts_to,
                rekeyed_columns: ResultData::rekeyed_columns(&job.columns),
                rows_digest: facts.rows_digest.clone(),
                flight_copy: match (&spec.flight, &facts.flight) {
                    (Some((location, _, _)), Some(copy)) => Some(StoredCopy {
                        location: location.clone(),
                        sha256: copy.sha256.clone(),
                        bytes: copy.bytes,
                    }),
                    (None, None) => None,
                    _ => {
                        return Err(ServerError::internal(
                            "an export worker wrote a Flight copy other than the one asked for",
                        ));
                    }
                },
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
                    sha256: facts.data.sha256.clone(),
                    bytes: facts.data.bytes,
                    rows: facts.n_rows,
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
            let written = self
                .write_package(
                    &manifest,
                    &data_location,
                    &spec.data_key,
                    &tenant.kek_id,
                    &location,
                )
                .await?;
            if let Some(copy) = &product.flight_copy {
                self.state.storage.sync(&copy.location).await?;
            }
            Ok((
                checked,
                BuiltPackage {
                    location: location.clone(),
                    flight_location: product.flight_copy.as_ref().map(|c| c.location.clone()),
                    sha256: written.sha256,
                    approvers: approvals.iter().map(|v| v.reviewer_id.clone()).collect(),
                    approved_at_ms,
                    result_sha256: manifest.result.sha256,
                    product,
                },
            ))
        }
        .await;
        // The data file was only the package's source.
        if let Err(e) = self.state.storage.delete(&data_location).await {
            tracing::warn!(error = %e, "a product's data file could not be removed");
        }
        if built.is_err() {
            for leftover in std::iter::once(&location).chain(spec.flight.as_ref().map(|f| &f.0)) {
                let _ = self.state.storage.delete(leftover).await;
            }
        }
        built
    }

    /// Streams the package for `manifest` into its sealed object at `location` (a data key
    /// wrapped by KEK `kek_id`): the data file is read chunk by chunk from `data_location`
    /// (sealed under `data_key` by the worker) and checked against the manifest as it passes.
    async fn write_package(
        &self,
        manifest: &Manifest,
        data_location: &str,
        data_key: &shuyu_vault::SecretKey,
        kek_id: &str,
        location: &str,
    ) -> Result<package::Written> {
        let state = Arc::clone(&self.state);
        let (manifest, data_location, data_key, kek_id, location) = (
            manifest.clone(),
            data_location.to_owned(),
            data_key.clone(),
            kek_id.to_owned(),
            location.to_owned(),
        );
        tokio::task::spawn_blocking(move || -> Result<package::Written> {
            let data = Arc::new(SealedFile::open(
                state.storage.open_file(&data_location)?,
                &object_context(&data_location),
                |_| Ok(data_key),
            )?);
            let out = std::io::BufWriter::with_capacity(
                shuyu_engine::READ_CHUNK_BYTES,
                state.storage.create_durable(&location)?,
            );
            let sealer = package::sealer(&state.envelope, &kek_id, &location, out)?;
            let reader =
                std::io::BufReader::with_capacity(shuyu_engine::READ_CHUNK_BYTES, data.reader());
            let (sealer, written) = package::write(&manifest, reader, &state.signing, sealer)?;
            let (out, _) = sealer
                .finish()
                .map_err(|e| ServerError::from_io("sealing the package", e))?;
            let durable = out
                .into_inner()
                .map_err(|e| ServerError::from_io("writing the package", e.into_error()))?;
            durable
                .commit()
                .map_err(|e| ServerError::from_io("storing the package", e))?;
            Ok(written)
        })
        .await
        .map_err(|e| ServerError::internal(format!("writing the package: {e}")))?
    }

    /// Removes a package (and its Flight copy) that was built but not committed.
    async fn discard_package(&self, built: &BuiltPackage) {
        for location in std::iter::once(&built.location).chain(&built.flight_location) {
            if let Err(e) = self.state.storage.delete(location).await {
                tracing::warn!(error = %e, "an uncommitted export package could not be removed");
            }
        }
    }

    fn comment(
        &self,
        caller: &Caller,
        req: &pb::CommentExportRequest,
    ) -> Result<Audited<ExportRecord>> {
        require_text(&req.text, "the comment", MAX_COMMENT_CHARS, true)?;
        let (export, standing) = self.visible_export(caller, &req.export_id)?;
        if req.private && standing != Standing::Reviewer {
            return Err(Refusal::NotIndependent(
                "private comments are written and read only by reviewers independent of the \
                 requesting tenant"
                    .into(),
            )
            .into());
        }
        let text = req.text.trim();
        let done = self.state.store.commit(
            &caller.entry(
                format!("export:{}", export.id),
                "ok",
                json!({"private": req.private, "chars": text.chars().count(),
                       "text_sha256": sha256_hex(text.as_bytes())}),
            ),
            |tx| {
                crate::exports::records::insert_export_comment(
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
        Ok(done.map(|_| export))
    }

    fn revoke(
        &self,
        caller: &Caller,
        req: &pb::RevokeExportRequest,
    ) -> Result<Audited<ExportRecord>> {
        require_text(&req.reason, "the reason", MAX_REASON_CHARS, true)?;
        let (export, _) = self.visible_export(caller, &req.export_id)?;
        require_independent(&caller.principal, &export, "revoke")?;
        let reason = req.reason.trim();
        let target = format!("export:{}", export.id);
        self.state.store.commit_with(|tx| {
            let mut current = crate::exports::records::export(tx, &export.id)?
                .ok_or_else(|| ServerError::NotFound(format!("export {}", export.id)))?;
            if current.status != ExportStatus::Approved {
                return Err(Refusal::ExportNotApproved(format!(
                    "only an approved export can be revoked; export {} is {}",
                    current.id,
                    current.status.as_str()
                ))
                .into());
            }
            let from = current.status;
            current.status = ExportStatus::Revoked;
            crate::exports::records::upsert_export(tx, &current)?;
            crate::exports::records::append_export_event(
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
            Ok((current, caller.entry(target.clone(), "ok", detail)))
        })
    }
}

/// The refusal of an approval whose result, with releases since it was checked, would
/// isolate individuals.
fn ledger_refusal(failed: &[String]) -> ServerError {
    Refusal::CombinedDisclosure(format!(
        "since this export was checked, its tenant released other results that, together \
         with this one, would isolate individuals ({}): it cannot be approved; the requester \
         must request a new export",
        failed.join(", ")
    ))
    .into()
}

fn or_none(names: &[String]) -> String {
    if names.is_empty() {
        "none".to_owned()
    } else {
        names.join(", ")
    }
}

#[tonic::async_trait]
impl ExportService for ExportsRpc {
    async fn request_export(
        &self,
        request: Request<pb::RequestExportRequest>,
    ) -> Result<Response<pb::RequestExportResponse>, Status> {
        let target = |req: &pb::RequestExportRequest| format!("job:{}", req.job_id);
        let export = self
            .state
            .calls
            .call(
                request,
                Action::RequestExport,
                target,
                |caller, req| async move {
                    let export = self.request_export(&caller, req).await?;
                    Ok(Done::Audited(
                        export.and_then(|export| self.export_for(&caller, &export))?,
                    ))
                },
            )
            .await?;
        Ok(Response::new(pb::RequestExportResponse {
            export: Some(export),
        }))
    }

    async fn get_export(
        &self,
        request: Request<pb::GetExportRequest>,
    ) -> Result<Response<pb::GetExportResponse>, Status> {
        let target = |req: &pb::GetExportRequest| format!("export:{}", req.export_id);
        let response = self
            .state
            .calls
            .call(
                request,
                Action::ViewExport,
                target,
                |caller, req| async move {
                    let (e, _) = self.visible_export(&caller, &req.export_id)?;
                    let export = self.export_for(&caller, &e)?;
                    Ok(Done::Record(
                        pb::GetExportResponse {
                            export: Some(export),
                        },
                        json!({}),
                    ))
                },
            )
            .await?;
        Ok(Response::new(response))
    }

    async fn list_exports(
        &self,
        request: Request<pb::ListExportsRequest>,
    ) -> Result<Response<pb::ListExportsResponse>, Status> {
        let no_target = |_: &pb::ListExportsRequest| String::new();
        let response = self
            .state
            .calls
            .call(
                request,
                Action::ViewExport,
                no_target,
                |caller, _| async move {
                    let records = match caller.principal.role {
                        Role::Reviewer => self.state.store.read(|c| {
                            crate::exports::records::exports_in_review(
                                c,
                                caller.principal.tenant_id.as_deref(),
                            )
                        })?,
                        Role::Auditor => self.state.store.read(|c| {
                            let mut all = Vec::new();
                            for tenant in crate::admin::records::tenants(c)? {
                                all.extend(crate::exports::records::exports_of_tenant(
                                    c, &tenant.id,
                                )?);
                            }
                            all.sort_by_key(|e| std::cmp::Reverse(e.requested_at_ms));
                            Ok(all)
                        })?,
                        _ => {
                            let tenant = caller.tenant()?;
                            self.state
                                .store
                                .read(|c| crate::exports::records::exports_of_tenant(c, tenant))?
                        }
                    };
                    let exports = records
                        .iter()
                        .map(|e| self.export_for(&caller, e))
                        .collect::<Result<Vec<_>>>()?;
                    let n = exports.len();
                    Ok(Done::Record(
                        pb::ListExportsResponse { exports },
                        json!({"n": n}),
                    ))
                },
            )
            .await?;
        Ok(Response::new(response))
    }

    async fn review_export(
        &self,
        request: Request<pb::ReviewExportRequest>,
    ) -> Result<Response<pb::ReviewExportResponse>, Status> {
        let target = |req: &pb::ReviewExportRequest| format!("export:{}", req.export_id);
        let response = self
            .state
            .calls
            .call(
                request,
                Action::ReviewExport,
                target,
                |caller, req| async move {
                    let (export, _) = self.visible_export(&caller, &req.export_id)?;
                    require_independent(&caller.principal, &export, "review")?;
                    let job = self.job_of(&export)?;
                    // The first rows only, read by a worker: the server never reads the result.
                    let (ipc, shown) = {
                        let _turn = self.state.results.turn("the review").await?;
                        self.review_rows(&job).await?
                    };
                    let truncated = shown < job.n_rows;
                    let plan_text = self
                        .state
                        .store
                        .read(|c| crate::jobs::plan_texts::get(c, &job.id))?;
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
                        n_rows: job.n_rows,
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
                    Ok(Done::Record(
                        response,
                        json!({"job_id": job.id, "n_rows": job.n_rows, "rows_shown": shown}),
                    ))
                },
            )
            .await?;
        Ok(Response::new(response))
    }

    async fn vote_export(
        &self,
        request: Request<pb::VoteExportRequest>,
    ) -> Result<Response<pb::VoteExportResponse>, Status> {
        let target = |req: &pb::VoteExportRequest| format!("export:{}", req.export_id);
        let export = self
            .state
            .calls
            .call(
                request,
                Action::VoteExport,
                target,
                |caller, req| async move {
                    let export = self.vote(&caller, &req).await?;
                    Ok(Done::Audited(
                        export.and_then(|export| self.export_for(&caller, &export))?,
                    ))
                },
            )
            .await?;
        Ok(Response::new(pb::VoteExportResponse {
            export: Some(export),
        }))
    }

    async fn comment_export(
        &self,
        request: Request<pb::CommentExportRequest>,
    ) -> Result<Response<pb::CommentExportResponse>, Status> {
        let target = |req: &pb::CommentExportRequest| format!("export:{}", req.export_id);
        let export = self
            .state
            .calls
            .call(
                request,
                Action::CommentExport,
                target,
                |caller, req| async move {
                    let export = self.comment(&caller, &req)?;
                    Ok(Done::Audited(
                        export.and_then(|export| self.export_for(&caller, &export))?,
                    ))
                },
            )
            .await?;
        Ok(Response::new(pb::CommentExportResponse {
            export: Some(export),
        }))
    }

    async fn revoke_export(
        &self,
        request: Request<pb::RevokeExportRequest>,
    ) -> Result<Response<pb::RevokeExportResponse>, Status> {
        let target = |req: &pb::RevokeExportRequest| format!("export:{}", req.export_id);
        let export = self
            .state
            .calls
            .call(
                request,
                Action::RevokeExport,
                target,
                |caller, req| async move {
                    let export = self.revoke(&caller, &req)?;
                    Ok(Done::Audited(
                        export.and_then(|export| self.export_for(&caller, &export))?,
                    ))
                },
            )
            .await?;
        Ok(Response::new(pb::RevokeExportResponse {
            export: Some(export),
        }))
    }

    type DownloadExportStream = ReceiverStream<Result<pb::DownloadExportResponse, Status>>;

    async fn download_export(
        &self,
        request: Request<pb::DownloadExportRequest>,
    ) -> Result<Response<Self::DownloadExportStream>, Status> {
        let target = |req: &pb::DownloadExportRequest| format!("export:{}", req.export_id);
        let (package, turn) = self
            .state
            .calls
            .call(
                request,
                Action::DownloadExport,
                target,
                |caller, req| async move {
                    let export = recipients_export(&self.state, &caller, &req.export_id)?;
                    require_deliverable(&export, crate::now_ms())?;
                    crate::lifecycle::records::require_exports_open(
                        &self.state.store,
                        &export.tenant_id,
                    )?;
                    // Held until the last chunk is sent.
                    let turn = self.state.results.turn("the download").await?;
                    let package = self.open_package(&export).await?;
                    let done = self.record_download(&caller, &export, "package", package.len())?;
                    Ok(Done::Audited(done.map(|_| (package, turn))))
                },
            )
            .await?;
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tokio::task::spawn_blocking(move || {
            let _turn = turn;
            let mut reader = package.reader();
            loop {
                let mut chunk = vec![0u8; CHUNK_BYTES];
                let message = match read_full(&mut reader, &mut chunk) {
                    Ok(0) => break,
                    Ok(n) => {
                        chunk.truncate(n);
                        Ok(pb::DownloadExportResponse { chunk })
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "a verified package stopped reading");
                        Err(Status::internal("the package could not be read to its end"))
                    }
                };
                let stop = message.is_err();
                if tx.blocking_send(message).is_err() || stop {
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
        let no_target = |_: &pb::ListProductsRequest| String::new();
        let response =
            self.state
                .calls
                .call(
                    request,
                    Action::ListProducts,
                    no_target,
                    |caller, _| async move {
                        let p = &caller.principal;
                        let records = match p.role {
                            Role::Recipient => self.state.store.read(|c| {
                                crate::exports::records::products_of_recipient(c, &p.id)
                            })?,
                            Role::Reviewer => self.state.store.read(|c| {
                                crate::exports::records::products(c, None, p.tenant_id.as_deref())
                            })?,
                            Role::Engineer => {
                                let tenant = caller.tenant()?;
                                self.state.store.read(|c| {
                                    crate::exports::records::products(c, Some(tenant), None)
                                })?
                            }
                            // Supervisors see every product's record (R35), never its rows.
                            Role::Auditor => self
                                .state
                                .store
                                .read(|c| crate::exports::records::products(c, None, None))?,
                            Role::PlatformAdmin | Role::DataSteward => {
                                return Err(Refusal::RoleNotAllowed(format!(
                                    "the {} role has no products to list",
                                    p.role.as_str()
                                ))
                                .into());
                            }
                        };
                        let now = crate::now_ms();
                        let products: Vec<pb::Product> = records
                            .iter()
                            .filter_map(|e| convert::product(e, now))
                            .collect();
                        let n = products.len();
                        Ok(Done::Record(
                            pb::ListProductsResponse { products },
                            json!({"n": n}),
                        ))
                    },
                )
                .await?;
        Ok(Response::new(response))
    }

    async fn trace_export(
        &self,
        request: Request<pb::TraceExportRequest>,
    ) -> Result<Response<pb::TraceExportResponse>, Status> {
        let no_target = |_: &pb::TraceExportRequest| String::new();
        let response = self
            .state
            .calls
            .call(
                request,
                Action::TraceExport,
                no_target,
                |_, req| async move {
                    let (response, detail) = self.trace(&req.file)?;
                    Ok(Done::Record(response, detail))
                },
            )
            .await?;
        Ok(Response::new(response))
    }
}

impl ExportsRpc {
    /// Counts one delivery of `export` to its recipient (a package download or a Flight
    /// fetch) and audits it, in one transaction: who (the caller), which export, how many
    /// bytes, which package.
    pub(crate) fn record_download(
        &self,
        caller: &Caller,
        export: &ExportRecord,
        via: &str,
        bytes: u64,
    ) -> Result<Audited<u64>> {
        let target = format!("export:{}", export.id);
        self.state.store.commit_with(|tx| {
            let count = crate::exports::records::record_download(tx, &export.id, crate::now_ms())?;
            let detail = json!({
                "via": via,
                "bytes": bytes,
                "package_sha256": export.package_sha256,
                "fingerprint": export.product.as_ref().map(|p| p.fingerprint.as_str()),
                "download_count": count,
            });
            Ok((count, caller.entry(target.clone(), "ok", detail)))
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
                .read(|c| crate::exports::records::product_by_fingerprint(c, &fp))?,
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
                    .read(|c| crate::exports::records::products_with_rows(c, &digest))?;
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
                        return Err(Refusal::TraceAmbiguous(format!(
                            "the file's row order fits {} products ({}): too few rows to tell \
                             their copies apart",
                            ids.len(),
                            ids.join(", ")
                        ))
                        .into());
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
