//! The oversight service: alerts (R30), operation reports (R34), public disclosure
//! summaries (R36), signed checkpoints of the audit trail with their proofs (R27) and the
//! retention purge (R33). Auditors read all of it; only admins change anything (R35).

use std::sync::Arc;

use serde_json::json;
use shuyu_policy::Action;
use shuyu_proto::v1 as pb;
use shuyu_proto::v1::oversight_service_server::OversightService;
use tonic::{Request, Response, Status};

use crate::audit::{checkpoint, tree};
use crate::error::{Refusal, Result, ServerError};
use crate::notify::{Audience, NewNotification};
use crate::oversight::alerts::{self, Alert};
use crate::oversight::reports::{self, Evaluation, EvaluationOutcome, Format};
use crate::service::{require_id, require_text};
use crate::state::Done;

/// The handler of `OversightService`: the area's context it serves from.
#[derive(Debug, Clone)]
pub(crate) struct OversightRpc {
    pub(crate) state: std::sync::Arc<super::Context>,
}

impl OversightRpc {
    /// The handler over its area's context.
    pub(crate) fn new(state: std::sync::Arc<super::Context>) -> OversightRpc {
        OversightRpc { state }
    }
}

const DAY_MS: i64 = 86_400_000;

fn evaluation_pb(e: &Evaluation) -> pb::Evaluation {
    pb::Evaluation {
        tenant_id: e.tenant_id.clone(),
        year: e.year,
        outcome: match e.outcome {
            EvaluationOutcome::Pass => pb::EvaluationOutcome::Pass,
            EvaluationOutcome::FixIn30Days => pb::EvaluationOutcome::FixIn30Days,
            EvaluationOutcome::Fail => pb::EvaluationOutcome::Fail,
        } as i32,
        note: e.note.clone(),
        fix_due_ms: e.fix_due_ms,
        report_sha256: e.report_sha256.clone(),
        evaluated_by: e.evaluated_by.clone(),
        evaluated_at_ms: e.evaluated_at_ms,
    }
}

/// The wire form of an alert (mapped by hand: domain types never derive the wire format).
fn alert_pb(a: Alert) -> pb::Alert {
    pb::Alert {
        id: a.id,
        kind: a.kind,
        tenant_id: a.tenant_id,
        subject: a.subject,
        severity: a.severity,
        evidence_json: a.evidence_json,
        first_seen_ms: a.first_seen_ms,
        last_seen_ms: a.last_seen_ms,
        count: a.count,
        acked_by: a.acked_by,
        acked_at_ms: a.acked_at_ms,
    }
}

fn format_from_pb(value: i32) -> Result<Format> {
    match pb::ReportFormat::try_from(value) {
        Ok(pb::ReportFormat::Unspecified | pb::ReportFormat::Markdown) => Ok(Format::Markdown),
        Ok(pb::ReportFormat::Html) => Ok(Format::Html),
        Err(_) => Err(ServerError::InvalidArgument(
            "format must be markdown or html".into(),
        )),
    }
}

impl OversightRpc {
    async fn report(
        &self,
        request: Request<pb::ReportRequest>,
        public: bool,
    ) -> std::result::Result<Response<pb::ReportResponse>, Status> {
        let target = |req: &pb::ReportRequest| format!("tenant:{}", req.tenant_id);
        let response = self.state.calls.call(request, Action::ViewReports, target, |_, req| async move {
            require_id(&req.tenant_id, "tenant_id")?;
            let format = format_from_pb(req.format)?;
            let (from, to) = reports::period(req.from_ms, req.to_ms, crate::now_ms())?;
            let objects = self.state.storage.root().to_path_buf();
            let report = self.state.store.read(|c| {
                if public {
                    reports::disclosure_summary(c, &req.tenant_id, from, to)
                } else {
                    reports::operation_report(c, &objects, &req.tenant_id, from, to)
                }
            })?;
            let content = report.render(format);
            let detail = json!({"kind": if public {"disclosure_summary"} else {"operation_report"},
                                "from_ms": from, "to_ms": to, "bytes": content.len()});
            Ok(Done::Record(
                pb::ReportResponse {
                    content,
                    from_ms: from,
                    to_ms: to,
                },
                detail,
            ))
        }).await?;
        Ok(Response::new(response))
    }
}

#[tonic::async_trait]
impl OversightService for OversightRpc {
    async fn list_alerts(
        &self,
        request: Request<pb::ListAlertsRequest>,
    ) -> std::result::Result<Response<pb::ListAlertsResponse>, Status> {
        let target = |_: &pb::ListAlertsRequest| "alerts".to_owned();
        let response = self
            .state
            .calls
            .call(request, Action::ViewAlerts, target, |_, req| async move {
                let include_acked = req.include_acked;
                let list = self.state.store.read(|c| alerts::list(c, include_acked))?;
                let n = list.len();
                Ok(Done::Record(
                    pb::ListAlertsResponse {
                        alerts: list.into_iter().map(alert_pb).collect(),
                    },
                    json!({"n": n, "include_acked": include_acked}),
                ))
            })
            .await?;
        Ok(Response::new(response))
    }

    async fn ack_alert(
        &self,
        request: Request<pb::AckAlertRequest>,
    ) -> std::result::Result<Response<pb::AckAlertResponse>, Status> {
        let target = |req: &pb::AckAlertRequest| format!("alert:{}", req.alert_id);
        let alert = self
            .state
            .calls
            .call(
                request,
                Action::ManageAlerts,
                target,
                |caller, req| async move {
                    let id = req.alert_id;
                    let target = format!("alert:{id}");
                    if id <= 0 {
                        return Err(ServerError::InvalidArgument(
                            "alert_id must be positive".into(),
                        ));
                    }
                    self.state
                        .store
                        .commit_with(|tx| {
                            let alert = alerts::get(tx, id)?
                                .ok_or_else(|| ServerError::NotFound(format!("alert {id}")))?;
                            if alert.acked_at_ms != 0 {
                                return Err(Refusal::AlreadyAcknowledged(format!(
                                    "alert {id} was already acknowledged"
                                ))
                                .into());
                            }
                            let acked = alerts::ack(tx, id, &caller.principal.id, crate::now_ms())?
                                .ok_or_else(|| ServerError::NotFound(format!("alert {id}")))?;
                            let entry =
                                caller.entry(target.clone(), "ok", json!({"kind": acked.kind}));
                            Ok((acked, entry))
                        })
                        .map(Done::Audited)
                },
            )
            .await?;
        Ok(Response::new(pb::AckAlertResponse {
            alert: Some(alert_pb(alert)),
        }))
    }

    async fn scan_alerts(
        &self,
        request: Request<pb::ScanAlertsRequest>,
    ) -> std::result::Result<Response<pb::ScanAlertsResponse>, Status> {
        let target = |_: &pb::ScanAlertsRequest| "alerts".to_owned();
        let outcome = self
            .state
            .calls
            .call(
                request,
                Action::ManageAlerts,
                target,
                |caller, _| async move {
                    crate::oversight::tasks::scan(
                        &self.state,
                        Some(caller.entry("alerts", "ok", json!({}))),
                    )
                    .map(Done::Audited)
                },
            )
            .await?;
        Ok(Response::new(pb::ScanAlertsResponse {
            raised: outcome.raised.into_iter().map(alert_pb).collect(),
            n_updated: outcome.n_updated,
        }))
    }

    async fn operation_report(
        &self,
        request: Request<pb::ReportRequest>,
    ) -> std::result::Result<Response<pb::ReportResponse>, Status> {
        self.report(request, false).await
    }

    async fn disclosure_summary(
        &self,
        request: Request<pb::ReportRequest>,
    ) -> std::result::Result<Response<pb::ReportResponse>, Status> {
        self.report(request, true).await
    }

    async fn audit_checkpoint(
        &self,
        request: Request<pb::AuditCheckpointRequest>,
    ) -> std::result::Result<Response<pb::AuditCheckpointResponse>, Status> {
        let target = |_: &pb::AuditCheckpointRequest| "audit".to_owned();
        let response = self
            .state
            .calls
            .call(
                request,
                Action::ReadCheckpoint,
                target,
                |who, req| async move {
                    let from = req.consistency_from;
                    let state = Arc::clone(&self.state);
                    // The root and proof are read from the stored tree (O(log n) reads) off the
                    // async threads; every checkpoint handed out is kept, so the domain can show
                    // what it signed.
                    let result = tokio::task::spawn_blocking(move || {
                        // A checkpoint the caller holds of more records than the trail has now: the
                        // trail was cut down. The current checkpoint comes back without a proof, and the
                        // caller's verification says "rewritten".
                        let (tree_size, root_hash, proof) = state.store.read(|c| {
                            let n = tree::size(c)?;
                            let proof = if from > 0 && from <= n {
                                tree::consistency_proof(c, from, n)?
                            } else {
                                Vec::new()
                            };
                            Ok((n, tree::root(c, n)?, proof))
                        })?;
                        crate::oversight::tasks::check_before_signing(&state, tree_size)?;
                        let (cp, note) = checkpoint::signed(tree_size, root_hash, &state.signing);
                        let entry = who.entry(
                "audit",
                "ok",
                json!({"tree_size": cp.tree_size, "root_hash": hex::encode(cp.root_hash),
                       "consistency_from": from, "cut_down": from > cp.tree_size}),
            );
                        let done = state.store.commit(&entry, |tx| {
                            checkpoint::store(tx, &cp, &note, crate::now_ms())
                        })?;
                        Ok(done.map(|()| pb::AuditCheckpointResponse {
                            checkpoint: note,
                            tree_size: cp.tree_size,
                            root_hash: cp.root_hash.to_vec(),
                            consistency_proof: proof.iter().map(|h| h.to_vec()).collect(),
                        }))
                    })
                    .await
                    .unwrap_or_else(|e| {
                        Err(ServerError::internal(format!("checkpoint task: {e}")))
                    });
                    result.map(Done::Audited)
                },
            )
            .await?;
        Ok(Response::new(response))
    }

    async fn audit_inclusion_proof(
        &self,
        request: Request<pb::AuditInclusionProofRequest>,
    ) -> std::result::Result<Response<pb::AuditInclusionProofResponse>, Status> {
        let target = |req: &pb::AuditInclusionProofRequest| format!("audit:{}", req.seq);
        let response = self
            .state
            .calls
            .call(
                request,
                Action::ReadCheckpoint,
                target,
                |_, req| async move {
                    let state = Arc::clone(&self.state);
                    let result = tokio::task::spawn_blocking(move || {
                        let (size, record_hash, proof) = state.store.read(|c| {
                            let n = tree::size(c)?;
                            let size = if req.tree_size == 0 { n } else { req.tree_size };
                            if size > n {
                                return Err(ServerError::InvalidArgument(format!(
                                    "tree_size {size} is beyond the trail's {n} records"
                                )));
                            }
                            if req.seq == 0 || req.seq > size {
                                return Err(ServerError::NotFound(format!(
                                    "audit record {} in a tree of {size}",
                                    req.seq
                                )));
                            }
                            let record_hash = tree::record_hash(c, req.seq)?;
                            Ok((
                                size,
                                record_hash,
                                tree::inclusion_proof(c, req.seq - 1, size)?,
                            ))
                        })?;
                        Ok((
                            pb::AuditInclusionProofResponse {
                                leaf_index: req.seq - 1,
                                tree_size: size,
                                record_hash,
                                proof: proof.iter().map(|h| h.to_vec()).collect(),
                            },
                            json!({"tree_size": size}),
                        ))
                    })
                    .await
                    .unwrap_or_else(|e| Err(ServerError::internal(format!("proof task: {e}"))));
                    let (response, detail) = result?;
                    Ok(Done::Record(response, detail))
                },
            )
            .await?;
        Ok(Response::new(response))
    }

    async fn record_evaluation(
        &self,
        request: Request<pb::RecordEvaluationRequest>,
    ) -> std::result::Result<Response<pb::RecordEvaluationResponse>, Status> {
        let target = |req: &pb::RecordEvaluationRequest| {
            format!("tenant:{} year:{}", req.tenant_id, req.year)
        };
        let evaluation = self
            .state
            .calls
            .call(
                request,
                Action::EvaluateTenant,
                target,
                |caller, req| async move {
                    let target = format!("tenant:{} year:{}", req.tenant_id, req.year);
                    require_id(&req.tenant_id, "tenant_id")?;
                    let outcome = match pb::EvaluationOutcome::try_from(req.outcome) {
                        Ok(pb::EvaluationOutcome::Pass) => EvaluationOutcome::Pass,
                        Ok(pb::EvaluationOutcome::FixIn30Days) => EvaluationOutcome::FixIn30Days,
                        Ok(pb::EvaluationOutcome::Fail) => EvaluationOutcome::Fail,
                        _ => {
                            return Err(ServerError::InvalidArgument(
                                "the outcome must be pass, fix_in_30_days or fail".into(),
                            ));
                        }
                    };
                    require_text(
                        &req.note,
                        "the note",
                        2000,
                        outcome != EvaluationOutcome::Pass,
                    )?;
                    let (from, to) = reports::year_period(req.year)?;
                    let now = crate::now_ms();
                    if to > now {
                        return Err(ServerError::InvalidArgument(format!(
                            "{} has not ended: evaluate a past year",
                            req.year
                        )));
                    }
                    let objects = self.state.storage.root().to_path_buf();
                    self.state
                        .store
                        .commit_with(|tx| {
                            let report =
                                reports::operation_report(tx, &objects, &req.tenant_id, from, to)?;
                            let evaluation = Evaluation {
                                tenant_id: req.tenant_id.clone(),
                                year: req.year,
                                outcome,
                                note: req.note.trim().to_owned(),
                                fix_due_ms: if outcome == EvaluationOutcome::FixIn30Days {
                                    now + 30 * DAY_MS
                                } else {
                                    0
                                },
                                report_sha256: shuyu_vault::sha256_hex(
                                    report.render(Format::Markdown).as_bytes(),
                                ),
                                evaluated_by: caller.principal.id.clone(),
                                evaluated_at_ms: now,
                            };
                            reports::insert_evaluation(tx, &evaluation)?;
                            let subject = format!(
                                "annual evaluation {}: {}",
                                req.year,
                                outcome.as_str().replace('_', " ")
                            );
                            let body = match outcome {
                                EvaluationOutcome::FixIn30Days => format!(
                                    "Fix by {}: {}",
                                    crate::format_ms(evaluation.fix_due_ms),
                                    evaluation.note
                                ),
                                _ => evaluation.note.clone(),
                            };
                            let dedup = format!("evaluation:{}:{}", req.tenant_id, req.year);
                            crate::notify::notify(
                                tx,
                                &NewNotification {
                                    audience: Audience::Tenant(req.tenant_id.clone()),
                                    tenant_id: &req.tenant_id,
                                    kind: "annual_evaluation",
                                    subject: &subject,
                                    body: &body,
                                    reference: &format!("tenant:{}", req.tenant_id),
                                    dedup_key: Some(&dedup),
                                },
                                now,
                            )?;
                            let entry = caller.entry(
                                target.clone(),
                                "ok",
                                json!({"year": req.year, "outcome": outcome.as_str(),
                           "report_sha256": evaluation.report_sha256}),
                            );
                            Ok((evaluation, entry))
                        })
                        .map(Done::Audited)
                },
            )
            .await?;
        Ok(Response::new(pb::RecordEvaluationResponse {
            evaluation: Some(evaluation_pb(&evaluation)),
        }))
    }

    async fn purge_audit(
        &self,
        request: Request<pb::PurgeAuditRequest>,
    ) -> std::result::Result<Response<pb::PurgeAuditResponse>, Status> {
        let target = |_: &pb::PurgeAuditRequest| "audit".to_owned();
        let n = self
            .state
            .calls
            .call(
                request,
                Action::PurgeAudit,
                target,
                |caller, _| async move {
                    crate::oversight::tasks::purge(
                        &self.state,
                        Some(caller.entry("audit", "ok", json!({}))),
                    )
                    .map(Done::Audited)
                },
            )
            .await?;
        Ok(Response::new(pb::PurgeAuditResponse { n_redacted: n }))
    }
}
