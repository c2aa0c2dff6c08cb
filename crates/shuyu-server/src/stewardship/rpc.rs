//! Stewardship service: a tenant's own data brought into the domain (R17), data-quality
//! tickets to the source's steward (R18), and risk stops that halt processing at once (R19).

use serde_json::json;
use shuyu_engine::IngestFormat;
use shuyu_policy::{Action, Role};
use shuyu_proto::v1 as pb;
use shuyu_proto::v1::stewardship_service_server::StewardshipService;
use tonic::{Request, Response, Status, Streaming};

use super::Context;
use crate::audit::trail::AuditEntry;
use crate::catalog::rpc::{Upload, read_chunks, valid_dataset_name};
use crate::convert;
use crate::error::{Refusal, Result, ServerError};
use crate::jobs::records::{JobMode, JobStatus};
use crate::jobs::scheduler::Cancelled;
use crate::notify::{self, Audience, NewNotification};
use crate::scenarios::records::ScenarioRecord;
use crate::service::{require_id, require_text};
use crate::state::{Caller, Done};
use crate::stewardship::records::{
    self as st, ImportApplication, ImportStatus, QualityTicket, RiskStop, RiskTarget, TicketStatus,
};
use crate::store::{Audited, Store, Tx};

/// The handler of `StewardshipService`: the area's context it serves from.
#[derive(Debug, Clone)]
pub(crate) struct StewardshipRpc {
    pub(crate) state: std::sync::Arc<super::Context>,
}

impl StewardshipRpc {
    /// The catalog's handler, whose uploads and dataset checks stewardship reuses.
    fn catalog(&self) -> crate::catalog::rpc::CatalogRpc {
        crate::catalog::rpc::CatalogRpc::new(std::sync::Arc::clone(&self.state.catalog))
    }

    /// The handler over its area's context.
    pub(crate) fn new(state: std::sync::Arc<super::Context>) -> StewardshipRpc {
        StewardshipRpc { state }
    }
}

const DAY_MS: i64 = 86_400_000;

/// Why a production job under `scenario` may not run now: an active risk stop on the
/// scenario or on a dataset of its data list.
///
/// # Errors
/// On store failure.
pub(crate) fn risk_stopped(store: &Store, scenario: &ScenarioRecord) -> Result<Option<String>> {
    store.read(|c| {
        if let Some(stop) = st::active_stop(c, RiskTarget::Scenario, &scenario.id)? {
            return Ok(Some(stop_message(&stop)));
        }
        for item in &scenario.data_list {
            if let Some(stop) = st::active_stop(c, RiskTarget::Dataset, &item.dataset_id)? {
                return Ok(Some(stop_message(&stop)));
            }
        }
        Ok(None)
    })
}

/// Whether a dataset is under an active risk stop (lab jobs leave it out).
///
/// # Errors
/// On store failure.
pub(crate) fn dataset_stopped(store: &Store, dataset_id: &str) -> Result<bool> {
    Ok(store
        .read(|c| st::active_stop(c, RiskTarget::Dataset, dataset_id))?
        .is_some())
}

fn stop_message(stop: &RiskStop) -> String {
    format!(
        "{} {} is under risk stop {} since {}; an admin must review and lift it",
        stop.target.as_str(),
        stop.target_id,
        stop.id,
        crate::format_ms(stop.raised_at_ms)
    )
}

/// Notifies the admins, once per ticket, of data-quality tickets past their deadline.
/// Returns how many notices were written. Runs inside the caller's transaction.
///
/// # Errors
/// On store failure.
pub fn overdue_ticket_notices(tx: &Tx<'_>, now_ms: i64) -> Result<usize> {
    let mut written = 0;
    for ticket in st::overdue_tickets(tx, now_ms)? {
        let key = format!("quality_overdue:{}", ticket.id);
        let subject = format!(
            "data-quality ticket {} on dataset {} is past its deadline",
            ticket.id, ticket.dataset_id
        );
        let body = format!(
            "due {}; the dataset's steward has not answered it",
            crate::format_ms(ticket.due_at_ms)
        );
        let note = NewNotification {
            audience: Audience::Admins,
            tenant_id: &ticket.tenant_id,
            kind: "quality_overdue",
            subject: &subject,
            body: &body,
            reference: &ticket.id,
            dedup_key: Some(&key),
        };
        if notify::notify(tx, &note, now_ms)? {
            written += 1;
        }
    }
    Ok(written)
}

/// Runs [`sweep`] every minute on one server of the domain at a time, for the life of the
/// server.
pub async fn sweep_forever(state: std::sync::Arc<Context>) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(60));
    loop {
        tick.tick().await;
        let state = std::sync::Arc::clone(&state);
        let sweep = move || {
            if !state
                .presence
                .on_duty("stewardship-sweep", std::time::Duration::from_secs(60))?
            {
                return Ok(0);
            }
            sweep(&state)
        };
        match tokio::task::spawn_blocking(sweep).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "stewardship sweep failed"),
            Err(e) => tracing::warn!(error = %e, "stewardship sweep panicked"),
        }
    }
}

/// The periodic stewardship sweep: overdue data-quality tickets are reported to the admins
/// (each once), audited as a system action when any notice was written.
///
/// # Errors
/// On store failure.
pub fn sweep(state: &Context) -> Result<usize> {
    let now = crate::now_ms();
    let pending = state
        .store
        .read(|c| st::overdue_tickets(c, now))?
        .into_iter()
        .filter(|t| {
            !state
                .store
                .read(|c| notify::exists(c, &format!("quality_overdue:{}", t.id)))
                .unwrap_or(true)
        })
        .count();
    if pending == 0 {
        return Ok(0);
    }
    let entry = AuditEntry {
        principal_id: "-".into(),
        role: "system".into(),
        action: "quality_overdue_notice".into(),
        outcome: "ok".into(),
        detail: json!({"tickets": pending}),
        ..AuditEntry::default()
    };
    state
        .store
        .commit(&entry, |tx| overdue_ticket_notices(tx, now))
        .map(Audited::into_inner)
}

impl StewardshipRpc {
    // -------------------------------------------------------------- imports (R17)

    fn apply_import(
        &self,
        caller: &Caller,
        req: pb::ApplyImportRequest,
    ) -> Result<Audited<ImportApplication>> {
        let tenant_id = caller.tenant()?.to_owned();
        // R25: a tenant brings data in only under an authorization in force.
        crate::governance::records::require_in_force(&self.state.store, &tenant_id)?;
        let name = req.name.trim().to_owned();
        if !valid_dataset_name(&name) {
            return Err(ServerError::InvalidArgument(
                "the dataset name must be a lowercase SQL identifier (a-z, 0-9, _; at most 63 characters)".into(),
            ));
        }
        require_text(&req.description, "the description", 2000, false)?;
        require_text(&req.source, "the source", 500, true)?;
        require_text(&req.legal_basis, "the legal basis", 1000, true)?;
        if req.columns.is_empty() {
            return Err(ServerError::InvalidArgument(
                "list the columns of the data with their classifications".into(),
            ));
        }
        let columns = self.catalog().parse_columns(&req.columns)?;
        let id = crate::new_id("imp");
        let application = ImportApplication {
            id: id.clone(),
            tenant_id: tenant_id.clone(),
            applicant_id: caller.principal.id.clone(),
            name,
            description: req.description,
            source: req.source.trim().to_owned(),
            legal_basis: req.legal_basis.trim().to_owned(),
            columns,
            status: ImportStatus::Pending,
            decided_by: String::new(),
            decision_comment: String::new(),
            decided_at_ms: 0,
            dataset_id: String::new(),
            created_at_ms: crate::now_ms(),
        };
        self.state.store.commit_with(|tx| {
            if crate::catalog::records::dataset_name_taken(tx, &application.name)?
                || st::import_name_claimed(tx, &application.name)?
            {
                return Err(ServerError::AlreadyExists(format!(
                    "a dataset named '{}' already exists or is applied for",
                    application.name
                )));
            }
            st::upsert_import(tx, &application)?;
            let subject = format!("import application {id} to decide");
            notify::notify(
                tx,
                &NewNotification {
                    audience: Audience::Admins,
                    tenant_id: &tenant_id,
                    kind: "import_application",
                    subject: &subject,
                    body: "a tenant applies to bring its own data into the domain",
                    reference: &id,
                    dedup_key: None,
                },
                application.created_at_ms,
            )?;
            let entry = caller.entry(
                format!("import:{id}"),
                "ok",
                json!({"name": application.name, "n_columns": application.columns.len()}),
            );
            Ok((application.clone(), entry))
        })
    }

    fn decide_import(
        &self,
        caller: &Caller,
        req: pb::DecideImportRequest,
    ) -> Result<Audited<ImportApplication>> {
        require_id(&req.import_id, "import_id")?;
        require_text(&req.comment, "the comment", 2000, !req.approve)?;
        self.state.store.commit_with(|tx| {
            let mut application = st::import(tx, &req.import_id)?
                .ok_or_else(|| ServerError::NotFound(format!("import {}", req.import_id)))?;
            if application.status != ImportStatus::Pending {
                return Err(Refusal::AlreadyDecided(format!(
                    "import {} is already {}",
                    application.id,
                    application.status.as_str()
                ))
                .into());
            }
            let now = crate::now_ms();
            application.status = if req.approve {
                ImportStatus::Approved
            } else {
                ImportStatus::Rejected
            };
            application.decided_by = caller.principal.id.clone();
            application.decision_comment = req.comment.clone();
            application.decided_at_ms = now;
            st::upsert_import(tx, &application)?;
            let subject = format!(
                "import application {} {}",
                application.id,
                application.status.as_str()
            );
            notify::notify(
                tx,
                &NewNotification {
                    audience: Audience::Tenant(application.tenant_id.clone()),
                    tenant_id: &application.tenant_id,
                    kind: "import_decision",
                    subject: &subject,
                    body: &application.decision_comment,
                    reference: &application.id,
                    dedup_key: None,
                },
                now,
            )?;
            let entry = caller.entry(
                format!("import:{}", application.id),
                "ok",
                json!({"decision": application.status.as_str(), "tenant_id": application.tenant_id}),
            );
            Ok((application, entry))
        })
    }

    async fn upload_import(
        &self,
        caller: &Caller,
        mut stream: Streaming<pb::UploadImportRequest>,
    ) -> Result<Audited<(ImportApplication, crate::catalog::records::DatasetRecord)>> {
        let tenant_id = caller.tenant()?.to_owned();
        crate::governance::records::require_in_force(&self.state.store, &tenant_id)?;
        let broken = |_: Status| ServerError::InvalidArgument("the upload stream broke off".into());
        let header = match stream.message().await.map_err(broken)? {
            Some(pb::UploadImportRequest {
                part: Some(pb::upload_import_request::Part::Header(header)),
            }) => header,
            _ => {
                return Err(ServerError::InvalidArgument(
                    "the first message of an upload must carry the header".into(),
                ));
            }
        };
        require_id(&header.import_id, "import_id")?;
        let application = self
            .state
            .store
            .read(|c| st::import(c, &header.import_id))?
            .filter(|a| a.tenant_id == tenant_id)
            .ok_or_else(|| ServerError::NotFound(format!("import {}", header.import_id)))?;
        match application.status {
            ImportStatus::Approved => {}
            ImportStatus::Pending => {
                return Err(Refusal::ImportNotApproved(format!(
                    "import {} is not approved yet",
                    application.id
                ))
                .into());
            }
            ImportStatus::Rejected => {
                return Err(Refusal::ImportNotApproved(format!(
                    "import {} was rejected",
                    application.id
                ))
                .into());
            }
            ImportStatus::Imported => {
                return Err(Refusal::AlreadyImported(format!(
                    "import {} was already uploaded as dataset {}",
                    application.id, application.dataset_id
                ))
                .into());
            }
        }
        let format = match pb::DataFormat::try_from(header.format) {
            Ok(pb::DataFormat::Csv) => IngestFormat::Csv,
            Ok(pb::DataFormat::Parquet) => IngestFormat::Parquet,
            _ => {
                return Err(ServerError::InvalidArgument(
                    "the format must be CSV or Parquet".into(),
                ));
            }
        };
        let input = read_chunks(&mut stream, self.state.max_ingest_bytes, |m| match m.part {
            Some(pb::upload_import_request::Part::Chunk(chunk)) => Some(chunk),
            _ => None,
        })
        .await?;
        let tenant = self
            .state
            .store
            .read(|c| crate::admin::records::tenant(c, &tenant_id))?
            .ok_or_else(|| ServerError::internal("the caller's tenant is missing"))?;
        // The approving admin answers for the data's use in scenarios, as a steward does
        // for public data; only the importing tenant is granted it.
        let upload = Upload {
            name: application.name.clone(),
            description: application.description.clone(),
            format,
            columns: application.columns.clone(),
            steward_id: application.decided_by.clone(),
            kek_parent: tenant.kek_id.clone(),
            kek_owner: Some(tenant_id.clone()),
        };
        let mut imported = application.clone();
        let dataset = self
            .catalog()
            .store_upload(caller, upload, input, |tx, record| {
                // Re-read inside the transaction: two uploads of one application race here.
                let current = st::import(tx, &application.id)?
                    .ok_or_else(|| ServerError::NotFound(format!("import {}", application.id)))?;
                if current.status != ImportStatus::Approved {
                    let message = format!(
                        "import {} is already {}",
                        current.id,
                        current.status.as_str()
                    );
                    return Err(match current.status {
                        ImportStatus::Imported => Refusal::AlreadyImported(message),
                        _ => Refusal::ImportNotApproved(message),
                    }
                    .into());
                }
                imported.status = ImportStatus::Imported;
                imported.dataset_id = record.id.clone();
                st::upsert_import(tx, &imported)?;
                crate::catalog::records::insert_grant(
                    tx,
                    &record.id,
                    &tenant_id,
                    &application.decided_by,
                )
            })
            .await?;
        Ok(dataset.map(|dataset| {
            imported.status = ImportStatus::Imported;
            imported.dataset_id = dataset.id.clone();
            (imported, dataset)
        }))
    }

    // -------------------------------------------------------------- quality tickets (R18)

    fn file_ticket(
        &self,
        caller: &Caller,
        req: pb::FileQualityTicketRequest,
    ) -> Result<Audited<QualityTicket>> {
        let tenant_id = caller.tenant()?.to_owned();
        // R25: working on a dataset, reporting its defects included, needs an authorization.
        crate::governance::records::require_in_force(&self.state.store, &tenant_id)?;
        let dataset = self.catalog().visible_dataset(caller, &req.dataset_id)?;
        let column = req.column.trim().to_owned();
        if !column.is_empty() && !dataset.columns.iter().any(|c| c.name == column) {
            return Err(ServerError::InvalidArgument(format!(
                "dataset {} has no column '{}'",
                dataset.name,
                column.chars().take(64).collect::<String>()
            )));
        }
        require_text(&req.description, "the description", 2000, true)?;
        let now = crate::now_ms();
        let days = i64::from(self.state.stewardship.quality_fix_days);
        let ticket = QualityTicket {
            id: crate::new_id("dq"),
            dataset_id: dataset.id.clone(),
            column,
            tenant_id: tenant_id.clone(),
            reporter_id: caller.principal.id.clone(),
            description: req.description,
            status: TicketStatus::Open,
            created_at_ms: now,
            due_at_ms: now + days * DAY_MS,
            resolved_by: String::new(),
            resolution: String::new(),
            resolved_at_ms: 0,
        };
        let entry = caller.entry(
            format!("quality_ticket:{}", ticket.id),
            "ok",
            json!({"dataset_id": ticket.dataset_id, "due_at_ms": ticket.due_at_ms}),
        );
        self.state.store.commit(&entry, |tx| {
            st::upsert_ticket(tx, &ticket)?;
            let subject = format!(
                "data-quality ticket {} on dataset {}, due {}",
                ticket.id,
                dataset.name,
                crate::format_ms(ticket.due_at_ms)
            );
            notify::notify(
                tx,
                &NewNotification {
                    audience: Audience::Principal(dataset.steward_id.clone()),
                    tenant_id: &tenant_id,
                    kind: "quality_ticket",
                    subject: &subject,
                    body: &ticket.description,
                    reference: &ticket.id,
                    dedup_key: None,
                },
                now,
            )?;
            Ok(ticket.clone())
        })
    }

    /// Tickets the caller may see.
    fn visible_tickets(&self, caller: &Caller) -> Result<Vec<QualityTicket>> {
        let all = self.state.store.read(st::tickets)?;
        Ok(match caller.principal.role {
            Role::Engineer => {
                let tenant = caller.tenant()?;
                all.into_iter().filter(|t| t.tenant_id == tenant).collect()
            }
            Role::PlatformAdmin | Role::Auditor => all,
            _ => {
                let mine = self.stewarded_by(&caller.principal.id)?;
                all.into_iter()
                    .filter(|t| mine.contains(&t.dataset_id))
                    .collect()
            }
        })
    }

    fn stewarded_by(&self, principal_id: &str) -> Result<Vec<String>> {
        Ok(self
            .state
            .store
            .read(crate::catalog::records::datasets)?
            .into_iter()
            .filter(|d| d.steward_id == principal_id)
            .map(|d| d.id)
            .collect())
    }

    fn resolve_ticket(
        &self,
        caller: &Caller,
        req: pb::ResolveQualityTicketRequest,
    ) -> Result<Audited<QualityTicket>> {
        require_id(&req.ticket_id, "ticket_id")?;
        require_text(&req.resolution, "the resolution", 2000, true)?;
        self.state.store.commit_with(|tx| {
            let mut ticket = st::ticket(tx, &req.ticket_id)?
                .ok_or_else(|| ServerError::NotFound(format!("ticket {}", req.ticket_id)))?;
            let dataset = crate::catalog::records::dataset(tx, &ticket.dataset_id)?
                .ok_or_else(|| ServerError::NotFound(format!("ticket {}", req.ticket_id)))?;
            if dataset.steward_id != caller.principal.id {
                // Only the dataset's steward answers; to others the ticket does not exist.
                return Err(ServerError::NotFound(format!("ticket {}", req.ticket_id)));
            }
            if ticket.status != TicketStatus::Open {
                return Err(Refusal::TicketClosed(format!(
                    "ticket {} is already {}",
                    ticket.id,
                    ticket.status.as_str()
                ))
                .into());
            }
            let now = crate::now_ms();
            ticket.status = if req.fixed {
                TicketStatus::Resolved
            } else {
                TicketStatus::Declined
            };
            ticket.resolved_by = caller.principal.id.clone();
            ticket.resolution = req.resolution.clone();
            ticket.resolved_at_ms = now;
            st::upsert_ticket(tx, &ticket)?;
            let subject = format!(
                "data-quality ticket {} {}",
                ticket.id,
                ticket.status.as_str()
            );
            notify::notify(
                tx,
                &NewNotification {
                    audience: Audience::Tenant(ticket.tenant_id.clone()),
                    tenant_id: &ticket.tenant_id,
                    kind: "quality_ticket_answered",
                    subject: &subject,
                    body: &ticket.resolution,
                    reference: &ticket.id,
                    dedup_key: None,
                },
                now,
            )?;
            let entry = caller.entry(
                format!("quality_ticket:{}", ticket.id),
                "ok",
                json!({"status": ticket.status.as_str(), "late": now > ticket.due_at_ms}),
            );
            Ok((ticket, entry))
        })
    }

    // -------------------------------------------------------------- risk stops (R19)

    /// The stop's target, checked against what the caller may see.
    fn risk_target(
        &self,
        caller: &Caller,
        req: &pb::RaiseRiskStopRequest,
    ) -> Result<(RiskTarget, String)> {
        match (req.dataset_id.is_empty(), req.scenario_id.is_empty()) {
            (false, true) => {
                let dataset = match caller.principal.role {
                    Role::DataSteward => {
                        require_id(&req.dataset_id, "dataset_id")?;
                        self.state
                            .store
                            .read(|c| crate::catalog::records::dataset(c, &req.dataset_id))?
                            .filter(|d| d.steward_id == caller.principal.id)
                            .ok_or_else(|| {
                                ServerError::NotFound(format!("dataset {}", req.dataset_id))
                            })?
                    }
                    _ => self.catalog().visible_dataset(caller, &req.dataset_id)?,
                };
                Ok((RiskTarget::Dataset, dataset.id))
            }
            (true, false) => {
                require_id(&req.scenario_id, "scenario_id")?;
                let scenario = self
                    .state
                    .store
                    .read(|c| crate::scenarios::records::scenario(c, &req.scenario_id))?
                    .filter(|s| match caller.principal.role {
                        Role::Engineer => {
                            caller.principal.tenant_id.as_deref() == Some(&s.tenant_id)
                        }
                        _ => s
                            .approvals
                            .iter()
                            .any(|a| a.approver_id == caller.principal.id),
                    })
                    .ok_or_else(|| {
                        ServerError::NotFound(format!("scenario {}", req.scenario_id))
                    })?;
                Ok((RiskTarget::Scenario, scenario.id))
            }
            _ => Err(ServerError::InvalidArgument(
                "name exactly one dataset_id or scenario_id".into(),
            )),
        }
    }

    /// Unfinished jobs a stop on `target` halts: production jobs whose scenario is the
    /// target or lists the dataset; lab jobs of tenants granted the dataset.
    fn jobs_matching(
        &self,
        target: RiskTarget,
        target_id: &str,
    ) -> Result<Vec<crate::jobs::records::JobRecord>> {
        let store = &self.state.store;
        let jobs = store.read(|c| crate::jobs::records::unfinished_jobs(c, store.audit_log()))?;
        let mut matching = Vec::new();
        for job in jobs {
            let hit = match (target, job.mode) {
                (RiskTarget::Scenario, JobMode::Production) => job.scenario_id == target_id,
                (RiskTarget::Scenario, JobMode::Lab) => false,
                (RiskTarget::Dataset, JobMode::Production) => self
                    .state
                    .store
                    .read(|c| crate::scenarios::records::scenario(c, &job.scenario_id))?
                    .is_some_and(|s| s.data_list.iter().any(|i| i.dataset_id == target_id)),
                (RiskTarget::Dataset, JobMode::Lab) => self
                    .state
                    .store
                    .read(|c| {
                        crate::catalog::records::granted_dataset(c, &job.tenant_id, target_id)
                    })?
                    .is_some(),
            };
            if hit {
                matching.push(job);
            }
        }
        Ok(matching)
    }

    fn raise_stop(
        &self,
        caller: &Caller,
        req: pb::RaiseRiskStopRequest,
    ) -> Result<Audited<RiskStop>> {
        let (target, target_id) = self.risk_target(caller, &req)?;
        require_text(&req.reason, "the reason", 2000, true)?;
        let now = crate::now_ms();
        // Stop first, record second: a job must not run on while the record commits.
        let mut stopped = Vec::new();
        let mut cancelled_queued = Vec::new();
        for mut job in self.jobs_matching(target, &target_id)? {
            match self.state.scheduler.cancel(&job.tenant_id, &job.id) {
                Cancelled::FromQueue => {
                    job.status = JobStatus::Cancelled;
                    job.error = "stopped by a risk stop before it started".into();
                    job.finished_at_ms = now;
                    stopped.push(job.id.clone());
                    cancelled_queued.push(job);
                }
                Cancelled::Running => stopped.push(job.id.clone()),
                Cancelled::Unknown => {}
            }
        }
        let stop = RiskStop {
            id: crate::new_id("rs"),
            target,
            target_id,
            raised_by: caller.principal.id.clone(),
            raised_by_role: caller.principal.role.as_str().to_owned(),
            tenant_id: caller.principal.tenant_id.clone().unwrap_or_default(),
            reason: req.reason,
            raised_at_ms: now,
            active: true,
            lifted_by: String::new(),
            lift_comment: String::new(),
            lifted_at_ms: 0,
            jobs_stopped: stopped,
        };
        let entry = caller.entry(
            format!("{}:{}", stop.target.as_str(), stop.target_id),
            "ok",
            json!({"risk_stop": stop.id, "jobs_stopped": stop.jobs_stopped}),
        );
        self.state.store.commit(&entry, |tx| {
            st::upsert_stop(tx, &stop)?;
            for job in &cancelled_queued {
                crate::jobs::records::upsert_job(tx, self.state.store.audit_log(), job)?;
            }
            let subject = format!(
                "risk stop {} on {} {}: {} job(s) stopped",
                stop.id,
                stop.target.as_str(),
                stop.target_id,
                stop.jobs_stopped.len()
            );
            notify::notify(
                tx,
                &NewNotification {
                    audience: Audience::Admins,
                    tenant_id: &stop.tenant_id,
                    kind: "risk_stop",
                    subject: &subject,
                    body: &stop.reason,
                    reference: &stop.id,
                    dedup_key: None,
                },
                now,
            )?;
            Ok(stop.clone())
        })
    }

    fn visible_stops(&self, caller: &Caller) -> Result<Vec<RiskStop>> {
        let all = self.state.store.read(st::stops)?;
        Ok(match caller.principal.role {
            Role::PlatformAdmin | Role::Auditor => all,
            Role::Engineer => {
                let tenant = caller.tenant()?.to_owned();
                let mut visible = Vec::new();
                for stop in all {
                    let concerns = stop.tenant_id == tenant
                        || match stop.target {
                            RiskTarget::Dataset => self
                                .state
                                .store
                                .read(|c| {
                                    crate::catalog::records::granted_dataset(
                                        c,
                                        &tenant,
                                        &stop.target_id,
                                    )
                                })?
                                .is_some(),
                            RiskTarget::Scenario => self
                                .state
                                .store
                                .read(|c| crate::scenarios::records::scenario(c, &stop.target_id))?
                                .is_some_and(|s| s.tenant_id == tenant),
                        };
                    if concerns {
                        visible.push(stop);
                    }
                }
                visible
            }
            _ => {
                let mine = self.stewarded_by(&caller.principal.id)?;
                all.into_iter()
                    .filter(|s| {
                        s.raised_by == caller.principal.id
                            || (s.target == RiskTarget::Dataset && mine.contains(&s.target_id))
                    })
                    .collect()
            }
        })
    }

    fn lift_stop(
        &self,
        caller: &Caller,
        req: pb::LiftRiskStopRequest,
    ) -> Result<Audited<RiskStop>> {
        require_id(&req.stop_id, "stop_id")?;
        require_text(&req.comment, "the comment", 2000, true)?;
        self.state.store.commit_with(|tx| {
            let mut stop = st::stop(tx, &req.stop_id)?
                .ok_or_else(|| ServerError::NotFound(format!("risk stop {}", req.stop_id)))?;
            if !stop.active {
                return Err(Refusal::StopLifted(format!(
                    "risk stop {} was already lifted",
                    stop.id
                ))
                .into());
            }
            let now = crate::now_ms();
            stop.active = false;
            stop.lifted_by = caller.principal.id.clone();
            stop.lift_comment = req.comment.clone();
            stop.lifted_at_ms = now;
            st::upsert_stop(tx, &stop)?;
            let subject = format!("risk stop {} lifted", stop.id);
            notify::notify(
                tx,
                &NewNotification {
                    audience: Audience::Principal(stop.raised_by.clone()),
                    tenant_id: &stop.tenant_id,
                    kind: "risk_stop_lifted",
                    subject: &subject,
                    body: &stop.lift_comment,
                    reference: &stop.id,
                    dedup_key: None,
                },
                now,
            )?;
            let entry = caller.entry(
                format!("{}:{}", stop.target.as_str(), stop.target_id),
                "ok",
                json!({"risk_stop": stop.id}),
            );
            Ok((stop, entry))
        })
    }
}

#[tonic::async_trait]
impl StewardshipService for StewardshipRpc {
    async fn apply_import(
        &self,
        request: Request<pb::ApplyImportRequest>,
    ) -> std::result::Result<Response<pb::ApplyImportResponse>, Status> {
        let no_target = |_: &pb::ApplyImportRequest| String::new();
        let application = self
            .state
            .calls
            .call(
                request,
                Action::ApplyImport,
                no_target,
                |caller, req| async move { Ok(Done::Audited(self.apply_import(&caller, req)?)) },
            )
            .await?;
        Ok(Response::new(pb::ApplyImportResponse {
            application: Some(convert::import_application(&application)),
        }))
    }

    async fn decide_import(
        &self,
        request: Request<pb::DecideImportRequest>,
    ) -> std::result::Result<Response<pb::DecideImportResponse>, Status> {
        let target = |req: &pb::DecideImportRequest| format!("import:{}", req.import_id);
        let application = self
            .state
            .calls
            .call(
                request,
                Action::DecideImport,
                target,
                |caller, req| async move { Ok(Done::Audited(self.decide_import(&caller, req)?)) },
            )
            .await?;
        Ok(Response::new(pb::DecideImportResponse {
            application: Some(convert::import_application(&application)),
        }))
    }

    async fn list_imports(
        &self,
        request: Request<pb::ListImportsRequest>,
    ) -> std::result::Result<Response<pb::ListImportsResponse>, Status> {
        let no_target = |_: &pb::ListImportsRequest| String::new();
        let response = self
            .state
            .calls
            .call(
                request,
                Action::ViewImports,
                no_target,
                |caller, _| async move {
                    let tenant = match caller.principal.role {
                        Role::Engineer => Some(caller.tenant()?.to_owned()),
                        _ => None,
                    };
                    let list = self
                        .state
                        .store
                        .read(|c| st::imports(c, tenant.as_deref()))?;
                    let n = list.len();
                    Ok(Done::Record(
                        pb::ListImportsResponse {
                            applications: list.iter().map(convert::import_application).collect(),
                        },
                        json!({"n": n}),
                    ))
                },
            )
            .await?;
        Ok(Response::new(response))
    }

    async fn upload_import(
        &self,
        request: Request<Streaming<pb::UploadImportRequest>>,
    ) -> std::result::Result<Response<pb::UploadImportResponse>, Status> {
        let no_target = |_: &Streaming<pb::UploadImportRequest>| String::new();
        let (application, dataset) =
            self.state
                .calls
                .call(
                    request,
                    Action::UploadImport,
                    no_target,
                    |caller, req| async move {
                        Ok(Done::Audited(self.upload_import(&caller, req).await?))
                    },
                )
                .await?;
        Ok(Response::new(pb::UploadImportResponse {
            application: Some(convert::import_application(&application)),
            dataset: Some(convert::dataset(&dataset)),
        }))
    }

    async fn file_quality_ticket(
        &self,
        request: Request<pb::FileQualityTicketRequest>,
    ) -> std::result::Result<Response<pb::FileQualityTicketResponse>, Status> {
        let target = |req: &pb::FileQualityTicketRequest| format!("dataset:{}", req.dataset_id);
        let ticket = self
            .state
            .calls
            .call(
                request,
                Action::FileQualityTicket,
                target,
                |caller, req| async move { Ok(Done::Audited(self.file_ticket(&caller, req)?)) },
            )
            .await?;
        Ok(Response::new(pb::FileQualityTicketResponse {
            ticket: Some(convert::quality_ticket(&ticket, crate::now_ms())),
        }))
    }

    async fn list_quality_tickets(
        &self,
        request: Request<pb::ListQualityTicketsRequest>,
    ) -> std::result::Result<Response<pb::ListQualityTicketsResponse>, Status> {
        let no_target = |_: &pb::ListQualityTicketsRequest| String::new();
        let response = self
            .state
            .calls
            .call(
                request,
                Action::ViewQualityTickets,
                no_target,
                |caller, req| async move {
                    let open_only = req.open_only;
                    let tickets = self.visible_tickets(&caller)?;
                    let now = crate::now_ms();
                    let tickets: Vec<pb::QualityTicket> = tickets
                        .iter()
                        .filter(|t| !open_only || t.status == TicketStatus::Open)
                        .map(|t| convert::quality_ticket(t, now))
                        .collect();
                    let n = tickets.len();
                    Ok(Done::Record(
                        pb::ListQualityTicketsResponse { tickets },
                        json!({"n": n}),
                    ))
                },
            )
            .await?;
        Ok(Response::new(response))
    }

    async fn resolve_quality_ticket(
        &self,
        request: Request<pb::ResolveQualityTicketRequest>,
    ) -> std::result::Result<Response<pb::ResolveQualityTicketResponse>, Status> {
        let target =
            |req: &pb::ResolveQualityTicketRequest| format!("quality_ticket:{}", req.ticket_id);
        let ticket = self
            .state
            .calls
            .call(
                request,
                Action::ResolveQualityTicket,
                target,
                |caller, req| async move { Ok(Done::Audited(self.resolve_ticket(&caller, req)?)) },
            )
            .await?;
        Ok(Response::new(pb::ResolveQualityTicketResponse {
            ticket: Some(convert::quality_ticket(&ticket, crate::now_ms())),
        }))
    }

    async fn raise_risk_stop(
        &self,
        request: Request<pb::RaiseRiskStopRequest>,
    ) -> std::result::Result<Response<pb::RaiseRiskStopResponse>, Status> {
        let no_target = |_: &pb::RaiseRiskStopRequest| String::new();
        let stop = self
            .state
            .calls
            .call(
                request,
                Action::RaiseRiskStop,
                no_target,
                |caller, req| async move { Ok(Done::Audited(self.raise_stop(&caller, req)?)) },
            )
            .await?;
        Ok(Response::new(pb::RaiseRiskStopResponse {
            stop: Some(convert::risk_stop(&stop)),
        }))
    }

    async fn list_risk_stops(
        &self,
        request: Request<pb::ListRiskStopsRequest>,
    ) -> std::result::Result<Response<pb::ListRiskStopsResponse>, Status> {
        let no_target = |_: &pb::ListRiskStopsRequest| String::new();
        let response = self
            .state
            .calls
            .call(
                request,
                Action::ViewRiskStops,
                no_target,
                |caller, req| async move {
                    let active_only = req.active_only;
                    let stops = self.visible_stops(&caller)?;
                    let stops: Vec<pb::RiskStop> = stops
                        .iter()
                        .filter(|s| !active_only || s.active)
                        .map(convert::risk_stop)
                        .collect();
                    let n = stops.len();
                    Ok(Done::Record(
                        pb::ListRiskStopsResponse { stops },
                        json!({"n": n}),
                    ))
                },
            )
            .await?;
        Ok(Response::new(response))
    }

    async fn lift_risk_stop(
        &self,
        request: Request<pb::LiftRiskStopRequest>,
    ) -> std::result::Result<Response<pb::LiftRiskStopResponse>, Status> {
        let target = |req: &pb::LiftRiskStopRequest| format!("risk_stop:{}", req.stop_id);
        let stop = self
            .state
            .calls
            .call(
                request,
                Action::LiftRiskStop,
                target,
                |caller, req| async move { Ok(Done::Audited(self.lift_stop(&caller, req)?)) },
            )
            .await?;
        Ok(Response::new(pb::LiftRiskStopResponse {
            stop: Some(convert::risk_stop(&stop)),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing::{each_backend, write};

    #[test]
    fn overdue_tickets_are_reported_to_admins_once() {
        let ticket = |id: &str, due: i64| QualityTicket {
            id: id.into(),
            dataset_id: "ds_1".into(),
            column: String::new(),
            tenant_id: "t_1".into(),
            reporter_id: "p_1".into(),
            description: "dates in the future".into(),
            status: TicketStatus::Open,
            created_at_ms: 0,
            due_at_ms: due,
            resolved_by: String::new(),
            resolution: String::new(),
            resolved_at_ms: 0,
        };
        each_backend(|store| {
            write(store, |tx| {
                st::upsert_ticket(tx, &ticket("dq_late", 100))?;
                st::upsert_ticket(tx, &ticket("dq_on_time", 10_000))
            });
            assert_eq!(write(store, |tx| overdue_ticket_notices(tx, 500)), 1);
            // The next sweep finds the same ticket and writes nothing.
            assert_eq!(write(store, |tx| overdue_ticket_notices(tx, 600)), 0);
            let exists = |key: &str| store.read(|tx| notify::exists(tx, key)).unwrap();
            assert!(exists("quality_overdue:dq_late"));
            assert!(!exists("quality_overdue:dq_on_time"));
            // Once the second ticket's deadline passes, it is reported too.
            assert_eq!(write(store, |tx| overdue_ticket_notices(tx, 10_000)), 1);
        });
    }
}
