//! Hand-written conversions between domain types and the `shuyu.v1` wire types.

use shuyu_engine::{ColumnSpec, MaskedTable, OutputColumn};
use shuyu_policy::{Role, ScenarioCategory};
use shuyu_proto::v1 as pb;

use crate::admin::records::{Principal, Tenant};
use crate::catalog::records::DatasetRecord;
use crate::error::{Result, ServerError};
use crate::exports::records::{
    CheckVerdict, ExportDecision, ExportHistory, ExportRecord, ExportStatus,
};
use crate::jobs::records::{JobMode, JobRecord, JobStatus};
use crate::jobs::scheduler::LiveState;
use crate::scenarios::records::{ScenarioRecord, ScenarioStatus};

pub fn role_to_pb(role: Role) -> pb::Role {
    match role {
        Role::PlatformAdmin => pb::Role::Admin,
        Role::DataSteward => pb::Role::Steward,
        Role::Engineer => pb::Role::Engineer,
        Role::Reviewer => pb::Role::Reviewer,
        Role::Auditor => pb::Role::Auditor,
        Role::Recipient => pb::Role::Recipient,
    }
}

pub fn role_from_pb(value: i32) -> Result<Role> {
    match pb::Role::try_from(value) {
        Ok(pb::Role::Admin) => Ok(Role::PlatformAdmin),
        Ok(pb::Role::Steward) => Ok(Role::DataSteward),
        Ok(pb::Role::Engineer) => Ok(Role::Engineer),
        Ok(pb::Role::Reviewer) => Ok(Role::Reviewer),
        Ok(pb::Role::Auditor) => Ok(Role::Auditor),
        Ok(pb::Role::Recipient) => Ok(Role::Recipient),
        Ok(pb::Role::Unspecified) | Err(_) => Err(ServerError::InvalidArgument(
            "role must be admin, steward, engineer, reviewer, auditor or recipient".into(),
        )),
    }
}

pub fn category_to_pb(category: ScenarioCategory) -> pb::ScenarioCategory {
    match category {
        ScenarioCategory::PublicGovernance => pb::ScenarioCategory::PublicGovernance,
        ScenarioCategory::PublicWelfare => pb::ScenarioCategory::PublicWelfare,
        ScenarioCategory::Commercial => pb::ScenarioCategory::Commercial,
    }
}

/// A scenario's category; unspecified is commercial (R24: priced unless shown otherwise).
pub fn category_from_pb(value: i32) -> Result<ScenarioCategory> {
    match pb::ScenarioCategory::try_from(value) {
        Ok(pb::ScenarioCategory::PublicGovernance) => Ok(ScenarioCategory::PublicGovernance),
        Ok(pb::ScenarioCategory::PublicWelfare) => Ok(ScenarioCategory::PublicWelfare),
        Ok(pb::ScenarioCategory::Commercial | pb::ScenarioCategory::Unspecified) => {
            Ok(ScenarioCategory::Commercial)
        }
        Err(_) => Err(ServerError::InvalidArgument(
            "category must be public_governance, public_welfare or commercial".into(),
        )),
    }
}

/// An import application (R17).
pub fn import_application(
    a: &crate::stewardship::records::ImportApplication,
) -> pb::ImportApplication {
    use crate::stewardship::records::ImportStatus;
    let status = match a.status {
        ImportStatus::Pending => pb::ImportStatus::Pending,
        ImportStatus::Approved => pb::ImportStatus::Approved,
        ImportStatus::Rejected => pb::ImportStatus::Rejected,
        ImportStatus::Imported => pb::ImportStatus::Imported,
    };
    pb::ImportApplication {
        id: a.id.clone(),
        tenant_id: a.tenant_id.clone(),
        applicant_id: a.applicant_id.clone(),
        name: a.name.clone(),
        description: a.description.clone(),
        source: a.source.clone(),
        legal_basis: a.legal_basis.clone(),
        columns: a.columns.iter().map(column).collect(),
        status: status as i32,
        decided_by: a.decided_by.clone(),
        decision_comment: a.decision_comment.clone(),
        decided_at_ms: a.decided_at_ms,
        dataset_id: a.dataset_id.clone(),
        created_at_ms: a.created_at_ms,
    }
}

/// A data-quality ticket (R18), with whether it is overdue at `now_ms`.
pub fn quality_ticket(
    t: &crate::stewardship::records::QualityTicket,
    now_ms: i64,
) -> pb::QualityTicket {
    use crate::stewardship::records::TicketStatus;
    let status = match t.status {
        TicketStatus::Open => pb::TicketStatus::Open,
        TicketStatus::Resolved => pb::TicketStatus::Resolved,
        TicketStatus::Declined => pb::TicketStatus::Declined,
    };
    pb::QualityTicket {
        id: t.id.clone(),
        dataset_id: t.dataset_id.clone(),
        column: t.column.clone(),
        tenant_id: t.tenant_id.clone(),
        reporter_id: t.reporter_id.clone(),
        description: t.description.clone(),
        status: status as i32,
        created_at_ms: t.created_at_ms,
        due_at_ms: t.due_at_ms,
        resolved_by: t.resolved_by.clone(),
        resolution: t.resolution.clone(),
        resolved_at_ms: t.resolved_at_ms,
        overdue: t.overdue(now_ms),
    }
}

/// A risk stop (R19).
pub fn risk_stop(s: &crate::stewardship::records::RiskStop) -> pb::RiskStop {
    pb::RiskStop {
        id: s.id.clone(),
        target_kind: s.target.as_str().to_owned(),
        target_id: s.target_id.clone(),
        raised_by: s.raised_by.clone(),
        raised_by_role: s.raised_by_role.clone(),
        reason: s.reason.clone(),
        raised_at_ms: s.raised_at_ms,
        active: s.active,
        lifted_by: s.lifted_by.clone(),
        lift_comment: s.lift_comment.clone(),
        lifted_at_ms: s.lifted_at_ms,
        jobs_stopped: s.jobs_stopped.clone(),
    }
}

/// A notification.
pub fn notification(n: crate::notify::Notification) -> pb::Notification {
    pb::Notification {
        id: n.id,
        at_ms: n.at_ms,
        audience: n.audience,
        tenant_id: n.tenant_id,
        kind: n.kind,
        subject: n.subject,
        body: n.body,
        r#ref: n.reference,
    }
}

pub fn principal(p: &Principal) -> pb::Principal {
    pb::Principal {
        id: p.id.clone(),
        real_name: p.real_name.clone(),
        organisation: p.organisation.clone(),
        role: role_to_pb(p.role) as i32,
        tenant_id: p.tenant_id.clone().unwrap_or_default(),
        created_at_ms: p.created_at_ms,
    }
}

pub fn tenant(t: &Tenant) -> pb::Tenant {
    pb::Tenant {
        id: t.id.clone(),
        name: t.name.clone(),
        created_at_ms: t.created_at_ms,
        lab_until_ms: t.lab_until_ms,
    }
}

pub fn column(c: &ColumnSpec) -> pb::Column {
    pb::Column {
        name: c.name.clone(),
        data_type: c.data_type.as_str().to_owned(),
        classification: c.classification.as_str().to_owned(),
        masking: c.masking.to_string(),
    }
}

pub fn column_lineage(c: &OutputColumn) -> pb::ColumnLineage {
    pb::ColumnLineage {
        name: c.name.clone(),
        sources: c.sources.clone(),
        classification: c.classification.as_str().to_owned(),
        aggregated: c.aggregated,
        masked: c.masked,
        functions: c.functions.clone(),
    }
}

pub fn output_column(c: &OutputColumn) -> pb::Column {
    let data_type = shuyu_engine::ColumnType::from_arrow(
        &c.data_type
            .parse()
            .unwrap_or(arrow::datatypes::DataType::Utf8),
    )
    .map(|t| t.as_str().to_owned())
    .unwrap_or_else(|| c.data_type.clone());
    pb::Column {
        name: c.name.clone(),
        data_type,
        classification: c.classification.as_str().to_owned(),
        masking: if c.masked {
            "masked in SQL".to_owned()
        } else if c.aggregated {
            "aggregate".to_owned()
        } else {
            c.preview_rule.to_string()
        },
    }
}

pub fn dataset(d: &DatasetRecord) -> pb::Dataset {
    pb::Dataset {
        id: d.id.clone(),
        name: d.name.clone(),
        description: d.description.clone(),
        columns: d.columns.iter().map(column).collect(),
        n_rows: d.n_rows,
        steward_id: d.steward_id.clone(),
        created_at_ms: d.created_at_ms,
        source_sha256: d.source_sha256.clone(),
        extra_approver_id: d.extra_approver_id.clone().unwrap_or_default(),
    }
}

pub fn masked_table(t: &MaskedTable) -> pb::MaskedTable {
    pb::MaskedTable {
        columns: t.columns.clone(),
        rows: t
            .rows
            .iter()
            .map(|row| pb::MaskedRow {
                values: row.iter().map(|v| v.clone().unwrap_or_default()).collect(),
                is_null: row.iter().map(Option::is_none).collect(),
            })
            .collect(),
        withheld_columns: t.withheld.clone(),
        rows_withheld: t.rows_withheld,
        note: t.note.clone(),
    }
}

pub fn job(j: &JobRecord) -> pb::Job {
    pb::Job {
        id: j.id.clone(),
        tenant_id: j.tenant_id.clone(),
        author_id: j.author_id.clone(),
        sql: j.sql.clone(),
        sql_sha256: j.query_sha256.clone(),
        query_sha256: j.query_sha256.clone(),
        query_kind: j.query_kind().into(),
        mode: match j.mode {
            JobMode::Production => pb::JobMode::Production,
            JobMode::Lab => pb::JobMode::Lab,
        } as i32,
        scenario_id: j.scenario_id.clone(),
        promoted_from: j.promoted_from.clone(),
        status: match j.status {
            JobStatus::Queued => pb::JobStatus::Queued,
            JobStatus::Running => pb::JobStatus::Running,
            JobStatus::Succeeded => pb::JobStatus::Succeeded,
            JobStatus::Failed => pb::JobStatus::Failed,
            JobStatus::Cancelled => pb::JobStatus::Cancelled,
        } as i32,
        error: j.error.clone(),
        error_id: j.error_id.clone(),
        // Protected columns chose the rows: how many there are is withheld too.
        n_rows: if j.preview.rows_withheld { 0 } else { j.n_rows },
        columns: j.columns.iter().map(output_column).collect(),
        preview: Some(masked_table(&j.preview)),
        input_dataset_ids: j.inputs.clone(),
        aggregate: j.aggregate,
        created_at_ms: j.created_at_ms,
        finished_at_ms: j.finished_at_ms,
        progress: None,
        usage: (j.finished_at_ms > 0).then_some(pb::JobUsage {
            cpu_ms: j.usage.cpu_ms,
            bytes_scanned: j.usage.bytes_scanned,
            rows_produced: if j.preview.rows_withheld { 0 } else { j.n_rows },
            peak_memory_bytes: j.usage.peak_memory_bytes,
            wall_ms: j.usage.wall_ms,
            queued_ms: j.usage.queued_ms,
        }),
        dp: j.gate.disclosure.dp.as_ref().map(|d| pb::DpResult {
            epsilon: d.epsilon,
            delta: d.delta,
            threshold: d.threshold,
            max_groups_per_unit: d.max_groups_per_unit,
            max_rows_per_unit: d.max_rows_per_unit,
            measures: d
                .measures
                .iter()
                .map(|(m, scale)| {
                    format!(
                        "{}: {scale:.4}",
                        m.trim_start_matches(shuyu_engine::HIDDEN_PREFIX)
                    )
                })
                .collect(),
        }),
    }
}

/// One table a job's plan reads, as reviewers see it.
pub fn plan_source(s: shuyu_engine::PlanSource) -> pb::PlanSource {
    pb::PlanSource {
        dataset_id: s.dataset_id,
        table: s.table,
        columns: s.columns,
    }
}

/// A queued or running job's live state.
pub fn live_state(state: &LiveState) -> pb::JobProgress {
    match state {
        LiveState::Queued { position } => pb::JobProgress {
            stage: "queued".into(),
            queue_position: u32::try_from(*position).unwrap_or(u32::MAX),
            ..Default::default()
        },
        LiveState::Starting => pb::JobProgress {
            stage: "starting".into(),
            ..Default::default()
        },
        LiveState::Running { progress, .. } => pb::JobProgress {
            stage: progress.stage.as_str().into(),
            rows: progress.rows,
            bytes_scanned: progress.bytes_scanned,
            queue_position: 0,
        },
    }
}

/// What one caller may see of an export; the export service decides it (R22 blinding).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExportView {
    /// Check evidence (reviewers) rather than summaries.
    pub evidence: bool,
    /// Individual votes, with both comments and what they bound to.
    pub votes: bool,
    /// How many votes were cast.
    pub n_votes: bool,
    /// Private comments.
    pub private_comments: bool,
    /// Votes' shared comments, as comments without their vote.
    pub vote_comments: bool,
    /// Who the reviewers and admins on comments and events are.
    pub reviewer_ids: bool,
    /// Whether the caller has voted.
    pub voted: bool,
    /// Approvals needed.
    pub quorum: u64,
}

pub fn export_status(status: ExportStatus) -> pb::ExportStatus {
    match status {
        ExportStatus::Refused => pb::ExportStatus::Refused,
        ExportStatus::InReview => pb::ExportStatus::InReview,
        ExportStatus::Approved => pb::ExportStatus::Approved,
        ExportStatus::Rejected => pb::ExportStatus::Rejected,
        ExportStatus::Returned => pb::ExportStatus::Returned,
        ExportStatus::Revoked => pb::ExportStatus::Revoked,
        ExportStatus::Expired => pb::ExportStatus::Expired,
    }
}

/// The product an approved export became, as it stands at `now_ms`; `None` before approval.
pub fn product(e: &ExportRecord, now_ms: i64) -> Option<pb::Product> {
    let p = e.product.as_ref()?;
    let basis = p.price_basis();
    Some(pb::Product {
        export_id: e.id.clone(),
        tenant_id: e.tenant_id.clone(),
        job_id: e.job_id.clone(),
        scenario_id: p.scenario_id.clone(),
        scenario_category: category_to_pb(p.scenario_category) as i32,
        recipient_id: e.recipient().to_owned(),
        recipient_organisation: p.recipient_organisation.clone(),
        permitted_use: e.permitted_use.clone(),
        format: format_to_pb(&e.format) as i32,
        status: export_status(e.status_at(now_ms)) as i32,
        approved_at_ms: p.approved_at_ms,
        expires_at_ms: p.expires_at_ms,
        price: Some(pb::PriceBasis {
            free: basis.is_free(),
            currency: "CNY".into(),
            per_10k_rows_fen: basis.rates.per_10k_rows_fen,
            per_download_fen: basis.rates.per_download_fen,
            rows: basis.rows,
            rows_charge_fen: basis.rows_charge_fen(),
            charge_fen: basis.charge_fen(e.download_count),
        }),
        n_rows: p.n_rows,
        download_count: e.download_count,
        last_download_at_ms: e.last_download_at_ms,
        package_sha256: e.package_sha256.clone(),
        fingerprint: p.fingerprint.clone(),
        round_counts_to: p.round_counts_to,
    })
}

pub fn export_decision(decision: ExportDecision) -> pb::ExportDecision {
    match decision {
        ExportDecision::Approve => pb::ExportDecision::Approve,
        ExportDecision::Reject => pb::ExportDecision::Reject,
        ExportDecision::Return => pb::ExportDecision::Return,
    }
}

pub fn check_outcome(verdict: CheckVerdict) -> pb::CheckOutcome {
    match verdict {
        CheckVerdict::Pass => pb::CheckOutcome::Pass,
        CheckVerdict::Review => pb::CheckOutcome::Review,
        CheckVerdict::Fail => pb::CheckOutcome::Fail,
    }
}

/// An export with its history, filtered by `view`.
pub fn export(e: &ExportRecord, history: &ExportHistory, view: &ExportView) -> pb::Export {
    let approvals = history
        .votes
        .iter()
        .filter(|v| v.decision == ExportDecision::Approve)
        .count() as u64;
    let mut comments: Vec<pb::ExportComment> = history
        .comments
        .iter()
        .filter(|c| view.private_comments || !c.private)
        .map(|c| pb::ExportComment {
            author_id: if view.reviewer_ids || c.author_role == Role::Engineer {
                c.author_id.clone()
            } else {
                String::new()
            },
            author_role: role_to_pb(c.author_role) as i32,
            private: c.private,
            text: c.text.clone(),
            at_ms: c.at_ms,
            from_vote: false,
        })
        .collect();
    if view.vote_comments {
        comments.extend(
            history
                .votes
                .iter()
                .filter(|v| !v.shared_comment.is_empty())
                .map(|v| pb::ExportComment {
                    author_id: if view.reviewer_ids {
                        v.reviewer_id.clone()
                    } else {
                        String::new()
                    },
                    author_role: pb::Role::Reviewer as i32,
                    private: false,
                    text: v.shared_comment.clone(),
                    at_ms: v.at_ms,
                    from_vote: true,
                }),
        );
        comments.sort_by_key(|c| c.at_ms);
    }
    pb::Export {
        id: e.id.clone(),
        job_id: e.job_id.clone(),
        tenant_id: e.tenant_id.clone(),
        requester_id: e.requester_id.clone(),
        purpose: e.purpose.clone(),
        format: format_to_pb(&e.format) as i32,
        status: export_status(e.status_at(crate::now_ms())) as i32,
        checks: e
            .checks
            .iter()
            .map(|c| pb::CheckResult {
                name: c.name.clone(),
                outcome: check_outcome(c.outcome) as i32,
                detail: if view.evidence {
                    c.detail.clone()
                } else {
                    c.summary.clone()
                },
            })
            .collect(),
        requested_at_ms: e.requested_at_ms,
        decided_at_ms: e.decided_at_ms,
        package_sha256: e.package_sha256.clone(),
        approvals,
        quorum: view.quorum,
        n_votes: if view.n_votes {
            history.votes.len() as u64
        } else {
            0
        },
        voted: view.voted,
        votes: if view.votes {
            history
                .votes
                .iter()
                .map(|v| pb::ExportVote {
                    reviewer_id: v.reviewer_id.clone(),
                    decision: export_decision(v.decision) as i32,
                    shared_comment: v.shared_comment.clone(),
                    private_comment: if view.private_comments {
                        v.private_comment.clone()
                    } else {
                        String::new()
                    },
                    result_sha256: v.result_sha256.clone(),
                    query_sha256: v.query_sha256.clone(),
                    policy_version: v.policy_version.clone(),
                    voted_at_ms: v.at_ms,
                })
                .collect()
        } else {
            Vec::new()
        },
        comments,
        events: history
            .events
            .iter()
            .map(|ev| pb::ExportEvent {
                seq: ev.seq,
                at_ms: ev.at_ms,
                actor_id: if view.reviewer_ids || ev.actor_id == e.requester_id {
                    ev.actor_id.clone()
                } else {
                    String::new()
                },
                from_status: ev.from_status.clone(),
                to_status: ev.to_status.clone(),
                note: ev.note.clone(),
            })
            .collect(),
        policy_version: e.policy_version.clone(),
        recipient_id: e.recipient().to_owned(),
        permitted_use: e.permitted_use.clone(),
        expires_in_days: e.expires_in_days,
        product: product(e, crate::now_ms()),
    }
}

pub fn format_to_pb(format: &str) -> pb::DataFormat {
    match format {
        "csv" => pb::DataFormat::Csv,
        _ => pb::DataFormat::Parquet,
    }
}

pub fn scenario(s: &ScenarioRecord, now_ms: i64) -> pb::Scenario {
    let status = match s.status {
        ScenarioStatus::Pending => pb::ScenarioStatus::Pending,
        ScenarioStatus::Rejected => pb::ScenarioStatus::Rejected,
        ScenarioStatus::Approved if now_ms >= s.valid_until_ms => pb::ScenarioStatus::Expired,
        ScenarioStatus::Approved => pb::ScenarioStatus::Approved,
    };
    pb::Scenario {
        id: s.id.clone(),
        tenant_id: s.tenant_id.clone(),
        name: s.name.clone(),
        purpose: s.purpose.clone(),
        data_list: s
            .data_list
            .iter()
            .map(|item| pb::DataListItem {
                dataset_id: item.dataset_id.clone(),
                columns: item.columns.clone(),
            })
            .collect(),
        valid_from_ms: s.valid_from_ms,
        valid_until_ms: s.valid_until_ms,
        category: category_to_pb(s.category) as i32,
        status: status as i32,
        approvals: s
            .approvals
            .iter()
            .map(|a| pb::ScenarioApproval {
                capacity: a.capacity.as_str().into(),
                dataset_id: a.dataset_id.clone(),
                approver_id: a.approver_id.clone(),
                decided: a.decided,
                approved: a.approved,
                decided_by: a.decided_by.clone(),
                comment: a.comment.clone(),
                decided_at_ms: a.decided_at_ms,
            })
            .collect(),
        applicant_id: s.applicant_id.clone(),
        created_at_ms: s.created_at_ms,
    }
}
