//! Job service: jobs queue fairly per tenant ([`crate::jobs::scheduler`]) and each runs in its own
//! confined worker process ([`crate::jobs::worker`]); results stay encrypted in the domain and
//! engineers get status, progress, schema, metered usage and a masked preview.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use shuyu_engine::{DpBound, DpSpec, MAX_SUBSTRAIT_BYTES, referenced_tables};
use shuyu_policy::{Action, Role};
use shuyu_proto::v1 as pb;
use shuyu_proto::v1::job_service_server::JobService;
use shuyu_vault::sha256_hex;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::Context;
use crate::catalog::records::DatasetRecord;
use crate::convert;
use crate::error::{Refusal, Result, ServerError};
use crate::jobs::records::{JobGate, JobMode, JobRecord, JobStatus, JobUsage};
use crate::jobs::runtime::lab_open;
use crate::jobs::scheduler::{Cancelled, QueueRefusal};
use crate::keys::job_kek;
use crate::scenarios::rpc as scenarios;
use crate::service::require_id;
use crate::state::{Caller, Done};
use crate::store::Audited;

/// The handler of `JobService`: the area's context it serves from.
#[derive(Debug, Clone)]
pub(crate) struct JobsRpc {
    pub(crate) state: std::sync::Arc<super::Context>,
}

impl JobsRpc {
    /// The handler over its area's context.
    pub(crate) fn new(state: std::sync::Arc<super::Context>) -> JobsRpc {
        JobsRpc { state }
    }
}

/// What an engineer asks to run.
pub(crate) struct JobDraft {
    pub sql: String,
    pub substrait_plan: Vec<u8>,
    pub mode: JobMode,
    pub scenario_id: String,
    /// Set on promotion: the lab job whose query this is.
    pub promoted_from: String,
    /// A differential-privacy job (its threshold is filled in from the policy at submit).
    pub dp: Option<DpSpec>,
}

impl JobDraft {
    fn from_request(req: pb::SubmitJobRequest) -> Result<JobDraft> {
        let mode = match pb::JobMode::try_from(req.mode) {
            Ok(pb::JobMode::Unspecified | pb::JobMode::Production) => JobMode::Production,
            Ok(pb::JobMode::Lab) => JobMode::Lab,
            Err(_) => {
                return Err(ServerError::InvalidArgument(format!(
                    "unknown job mode {}",
                    req.mode
                )));
            }
        };
        let dp = match req.dp {
            Some(dp) if dp.epsilon != 0.0 => {
                let spec = DpSpec {
                    epsilon: dp.epsilon,
                    max_groups_per_unit: dp.max_groups_per_unit.max(1),
                    max_rows_per_unit: dp.max_rows_per_unit.max(1),
                    bounds: dp
                        .bounds
                        .into_iter()
                        .map(|b| DpBound {
                            column: b.column,
                            lower: b.lower,
                            upper: b.upper,
                        })
                        .collect(),
                    threshold: 0,
                };
                spec.validate().map_err(|e| {
                    ServerError::InvalidArgument(format!("differential privacy: {e}"))
                })?;
                Some(spec)
            }
            _ => None,
        };
        Ok(JobDraft {
            sql: req.sql,
            substrait_plan: req.substrait_plan,
            mode,
            scenario_id: req.scenario_id,
            promoted_from: String::new(),
            dp,
        })
    }

    fn query_sha256(&self) -> String {
        if self.substrait_plan.is_empty() {
            sha256_hex(self.sql.as_bytes())
        } else {
            sha256_hex(&self.substrait_plan)
        }
    }
}

impl JobsRpc {
    async fn submit(&self, caller: &Caller, draft: JobDraft) -> Result<Audited<JobRecord>> {
        let limits = &self.state.policy.limits;
        match (draft.sql.trim().is_empty(), draft.substrait_plan.is_empty()) {
            (true, true) => {
                return Err(ServerError::InvalidArgument(
                    "give the job as SQL text or as a Substrait plan".into(),
                ));
            }
            (false, false) => {
                return Err(ServerError::InvalidArgument(
                    "give the job as SQL text or as a Substrait plan, not both".into(),
                ));
            }
            _ => {}
        }
        if draft.sql.len() > limits.max_sql_bytes {
            return Err(ServerError::InvalidArgument(format!(
                "the SQL text is {} bytes; the limit is {}",
                draft.sql.len(),
                limits.max_sql_bytes
            )));
        }
        if draft.substrait_plan.len() > MAX_SUBSTRAIT_BYTES {
            return Err(ServerError::InvalidArgument(format!(
                "the Substrait plan is {} bytes; the limit is {MAX_SUBSTRAIT_BYTES}",
                draft.substrait_plan.len()
            )));
        }
        let tenant_id = caller.tenant()?.to_owned();
        let tenant = self
            .state
            .store
            .read(|c| crate::admin::records::tenant(c, &tenant_id))?
            .ok_or_else(|| ServerError::internal("the caller's tenant is missing"))?;
        let now = crate::now_ms();
        match draft.mode {
            JobMode::Lab => {
                if !draft.scenario_id.is_empty() {
                    return Err(ServerError::InvalidArgument(
                        "a lab job runs on masked samples of the tenant's catalog and takes no \
                         scenario"
                            .into(),
                    ));
                }
                self.state.store.read(|c| {
                    crate::governance::records::require_authorization(
                        c,
                        &tenant_id,
                        now,
                        &crate::governance::records::Need::default(),
                    )
                })?;
                lab_open(&tenant, now)?;
            }
            JobMode::Production => {
                if draft.scenario_id.is_empty() {
                    return Err(ServerError::InvalidArgument(
                        "a production job runs under exactly one approved scenario: give \
                         scenario_id (or run it in the lab)"
                            .into(),
                    ));
                }
                require_id(&draft.scenario_id, "scenario_id")?;
                let scenario = self
                    .state
                    .store
                    .read(|c| crate::scenarios::records::scenario(c, &draft.scenario_id))?
                    .filter(|s| s.tenant_id == tenant_id)
                    .ok_or_else(|| {
                        ServerError::NotFound(format!("scenario {}", draft.scenario_id))
                    })?;
                if let Some(reason) = scenarios::unusable(&scenario, now) {
                    return Err(Refusal::ScenarioUnusable(reason).into());
                }
                if let Some(reason) =
                    crate::stewardship::rpc::risk_stopped(&self.state.store, &scenario)?
                {
                    return Err(Refusal::RiskStopped(reason).into());
                }
                // Too many failed production jobs: frozen until an admin looks.
                if let Some(freeze) = self
                    .state
                    .store
                    .read(|c| crate::jobs::oracle::active_freeze(c, &tenant_id))?
                {
                    return Err(Refusal::ProductionFrozen(freeze.reason()).into());
                }
                // R25, R32: inside an authorization's term and scope, with an emergency plan.
                let need = crate::governance::records::Need {
                    datasets: scenario
                        .data_list
                        .iter()
                        .map(|d| d.dataset_id.as_str())
                        .collect(),
                    category: Some(scenario.category),
                    emergency_plan: true,
                };
                self.state.store.read(|c| {
                    crate::governance::records::require_authorization(c, &tenant_id, now, &need)
                })?;
            }
        }
        let id = crate::new_id("job");
        let mut draft = draft;
        let dp_dataset = match &mut draft.dp {
            Some(spec) => {
                spec.threshold = self.state.policy.disclosure.min_entities;
                Some(
                    self.dp_dataset(
                        caller,
                        &id,
                        &draft.sql,
                        &draft.substrait_plan,
                        draft.mode,
                        &draft.scenario_id,
                    )
                    .await?,
                )
            }
            None => None,
        };
        self.state
            .scheduler
            .admit(&tenant_id)
            .map_err(|QueueRefusal::TenantFull { limit }| {
                ServerError::from(Refusal::QueueFull(format!(
                    "the tenant already has {limit} jobs queued or running; wait for one to finish"
                )))
            })?;
        let result_file = result_file(&tenant_id, draft.mode, &draft.scenario_id, &id);
        let job = JobRecord {
            id: id.clone(),
            tenant_id: tenant_id.clone(),
            author_id: caller.principal.id.clone(),
            query_sha256: draft.query_sha256(),
            sql: draft.sql,
            substrait_plan: draft.substrait_plan,
            mode: draft.mode,
            scenario_id: draft.scenario_id,
            promoted_from: draft.promoted_from,
            status: JobStatus::Queued,
            error: String::new(),
            error_id: String::new(),
            n_rows: 0,
            columns: Vec::new(),
            aggregate: false,
            gate: JobGate::unknown(false),
            preview: Default::default(),
            inputs: Vec::new(),
            result_file,
            result_kek: job_kek(&id),
            result_sha256: String::new(),
            created_at_ms: now,
            finished_at_ms: 0,
            usage: JobUsage::default(),
            dp: draft.dp,
        };
        let keys = &self.state.keys;
        let default_epsilon = self.state.privacy.default_epsilon;
        // Wrapped before the transaction (which may run again on PostgreSQL), stored in it.
        let wrapped_kek = keys.prepare_child_kek(&job.result_kek, &tenant.kek_id)?;
        let audit = self.state.store.audit_log();
        let committed = self.state.store.commit(
            &caller.entry(
                format!("job:{id}"),
                "ok",
                json!({
                    "query_sha256": job.query_sha256,
                    "query_kind": job.query_kind(),
                    "query_bytes": job.sql.len() + job.substrait_plan.len(),
                    "mode": job.mode.as_str(),
                    "scenario_id": job.scenario_id,
                    "promoted_from": job.promoted_from,
                    "dp_epsilon": job.dp.as_ref().map(|d| d.epsilon),
                    "dp_dataset": dp_dataset.as_ref().map(|d| &d.id),
                }),
            ),
            |tx| {
                // The privacy budget is spent in the job's own transaction: concurrent DP
                // jobs cannot overspend, and a refused job spends nothing.
                if let (Some(spec), Some(dataset)) = (&job.dp, &dp_dataset) {
                    crate::jobs::records::spend_privacy(
                        tx,
                        &tenant_id,
                        &dataset.id,
                        &dataset.source_sha256,
                        &id,
                        spec.epsilon,
                        default_epsilon,
                    )?;
                }
                crate::store::insert_kek(
                    tx,
                    &job.result_kek,
                    &wrapped_kek,
                    &tenant_id,
                    Some(&tenant.kek_id),
                )?;
                crate::jobs::records::upsert_job(tx, audit, &job)?;
                crate::jobs::records::assign_job(tx, &id, self.state.presence.id())
            },
        );
        let done = match committed {
            Ok(done) => done,
            Err(e) => {
                keys.discard(&job.result_kek);
                return Err(e);
            }
        };
        self.state.scheduler.enqueue(&tenant_id, &id);
        Ok(done.map(|()| job))
    }

    /// The one dataset a DP job reads: named in its SQL and on its scenario's data list.
    ///
    /// This is the only place the server reads an engineer's query rather than passing it
    /// to a worker. The request is audited first (so that it is on record whatever the
    /// parse does), then parsed off the async runtime on a large-stack thread that refuses
    /// deep nesting ([`referenced_tables`]).
    async fn dp_dataset(
        &self,
        caller: &Caller,
        job_id: &str,
        sql: &str,
        plan: &[u8],
        mode: JobMode,
        scenario_id: &str,
    ) -> Result<DatasetRecord> {
        if mode != JobMode::Production || !plan.is_empty() || sql.trim().is_empty() {
            return Err(ServerError::InvalidArgument(
                "differential privacy applies to production SQL jobs".into(),
            ));
        }
        self.state.store.record(&caller.entry(
            format!("job:{job_id}"),
            "received",
            json!({
                "stage": "dp_tables",
                "query_sha256": sha256_hex(sql.as_bytes()),
                "query_bytes": sql.len(),
                "scenario_id": scenario_id,
            }),
        ))?;
        let text = sql.to_owned();
        let names = tokio::task::spawn_blocking(move || referenced_tables(&text))
            .await
            .map_err(|e| ServerError::internal(format!("the DP table parse did not finish: {e}")))?
            .map_err(|e| ServerError::InvalidArgument(format!("differential privacy: {e}")))?;
        let scenario = self
            .state
            .store
            .read(|c| crate::scenarios::records::scenario(c, scenario_id))?
            .ok_or_else(|| ServerError::NotFound(format!("scenario {scenario_id}")))?;
        let datasets = self.state.store.read(|c| {
            scenario
                .data_list
                .iter()
                .map(|item| crate::catalog::records::dataset(c, &item.dataset_id))
                .collect::<Result<Vec<_>>>()
        })?;
        let read: Vec<DatasetRecord> = datasets
            .into_iter()
            .flatten()
            .filter(|d| names.contains(&d.name))
            .collect();
        match (read.len(), names.len()) {
            (1, 1) => Ok(read.into_iter().next().expect("one")),
            _ => Err(ServerError::InvalidArgument(
                "a differential-privacy job reads exactly one dataset of its scenario".into(),
            )),
        }
    }

    /// A new production job running a succeeded lab job's exact query under a scenario.
    async fn promote(
        &self,
        caller: &Caller,
        req: pb::PromoteJobRequest,
    ) -> Result<Audited<JobRecord>> {
        require_id(&req.job_id, "job_id")?;
        let tenant = caller.tenant()?.to_owned();
        let lab = self
            .state
            .store
            .read(|c| {
                crate::jobs::records::job(c, self.state.store.audit_log(), &tenant, &req.job_id)
            })?
            .ok_or_else(|| ServerError::NotFound(format!("job {}", req.job_id)))?;
        if lab.mode != JobMode::Lab {
            return Err(
                Refusal::NotALabJob(format!("job {} is already a production job", lab.id)).into(),
            );
        }
        if lab.status != JobStatus::Succeeded {
            return Err(Refusal::JobNotSucceeded(format!(
                "job {} has not succeeded ({}): only a working lab query is promoted",
                lab.id,
                lab.status.as_str()
            ))
            .into());
        }
        self.submit(
            caller,
            JobDraft {
                sql: lab.sql,
                substrait_plan: lab.substrait_plan,
                mode: JobMode::Production,
                scenario_id: req.scenario_id,
                promoted_from: lab.id,
                dp: None,
            },
        )
        .await
    }

    /// Job `id` as the caller may read it: an auditor any job (R35), an engineer only their
    /// tenant's (another tenant's is not found).
    fn visible_job(&self, caller: &Caller, id: &str) -> Result<JobRecord> {
        if caller.principal.role != Role::Auditor {
            return self.own_job(caller, id);
        }
        require_id(id, "job_id")?;
        self.state
            .store
            .read(|c| crate::jobs::records::job_any_tenant(c, self.state.store.audit_log(), id))?
            .ok_or_else(|| ServerError::NotFound(format!("job {id}")))
    }

    /// The jobs the caller may list: an engineer's tenant's; an auditor's, one tenant's or
    /// every tenant's (R35).
    fn visible_jobs(&self, caller: &Caller, tenant_id: &str) -> Result<Vec<JobRecord>> {
        if caller.principal.role != Role::Auditor {
            let tenant = caller.tenant()?;
            return self
                .state
                .store
                .read(|c| crate::jobs::records::jobs(c, self.state.store.audit_log(), tenant));
        }
        if !tenant_id.is_empty() {
            require_id(tenant_id, "tenant_id")?;
            return self
                .state
                .store
                .read(|c| crate::jobs::records::jobs(c, self.state.store.audit_log(), tenant_id));
        }
        self.state.store.read(|c| {
            let mut all = Vec::new();
            for tenant in crate::admin::records::tenants(c)? {
                all.extend(crate::jobs::records::jobs(
                    c,
                    self.state.store.audit_log(),
                    &tenant.id,
                )?);
            }
            all.sort_by_key(|j| std::cmp::Reverse(j.created_at_ms));
            Ok(all)
        })
    }

    /// The caller's tenant's job `id` (another tenant's is not found).
    fn own_job(&self, caller: &Caller, id: &str) -> Result<JobRecord> {
        require_id(id, "job_id")?;
        let tenant = caller.tenant()?;
        self.state
            .store
            .read(|c| crate::jobs::records::job(c, self.state.store.audit_log(), tenant, id))?
            .ok_or_else(|| ServerError::NotFound(format!("job {id}")))
    }

    fn cancel(&self, caller: &Caller, id: &str) -> Result<(JobRecord, serde_json::Value)> {
        let job = self.own_job(caller, id)?;
        let tenant = job.tenant_id.clone();
        match self.state.scheduler.cancel(&tenant, id) {
            Cancelled::FromQueue => {
                let mut job = job;
                job.status = JobStatus::Cancelled;
                job.error = "cancelled before it started".into();
                job.finished_at_ms = crate::now_ms();
                Ok((job, json!({"was": "queued"})))
            }
            Cancelled::Running => Ok((job, json!({"was": "running"}))),
            Cancelled::Unknown => Err(Refusal::JobFinished(format!(
                "job {id} has already finished ({})",
                job.status.as_str()
            ))
            .into()),
        }
    }
}

/// Whose eyes a job view is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum JobReader {
    /// An engineer of the job's tenant: everything, the masked preview included (a
    /// production job's usage and live figures coarsened).
    Tenant,
    /// An auditor (R35): the job with its query and exact usage, never a preview of values.
    Auditor,
}

impl JobReader {
    fn of(caller: &Caller) -> JobReader {
        if caller.principal.role == Role::Auditor {
            JobReader::Auditor
        } else {
            JobReader::Tenant
        }
    }
}

/// The job record with its live state (queue position or progress) attached, as `reader`
/// may see it.
fn job_view(state: &Context, job: &JobRecord, reader: JobReader) -> pb::Job {
    let mut view = match reader {
        JobReader::Tenant => engineer_job(job),
        JobReader::Auditor => {
            let mut view = convert::job(job);
            view.preview = None;
            view
        }
    };
    if !job.status.is_finished() {
        view.progress = state.scheduler.live_state(&job.id).map(|state| {
            let mut progress = convert::live_state(&state);
            if job.mode == JobMode::Production {
                progress.rows =
                    crate::jobs::oracle::coarse(progress.rows, crate::jobs::oracle::ROWS_FLOOR);
                progress.bytes_scanned = crate::jobs::oracle::coarse(
                    progress.bytes_scanned,
                    crate::jobs::oracle::BYTES_FLOOR,
                );
            }
            progress
        });
    }
    view
}

/// A job as its engineer sees it: a production job's metered usage coarsened (the exact
/// figures stay with admins, auditors and billing).
fn engineer_job(job: &JobRecord) -> pb::Job {
    let mut view = convert::job(job);
    if job.mode == JobMode::Production
        && let Some(usage) = view.usage.as_mut()
    {
        let shown = crate::jobs::oracle::coarse_usage(&job.usage);
        usage.cpu_ms = shown.cpu_ms;
        usage.bytes_scanned = shown.bytes_scanned;
        usage.peak_memory_bytes = shown.peak_memory_bytes;
        usage.wall_ms = shown.wall_ms;
        usage.queued_ms = shown.queued_ms;
    }
    view
}

/// How long one `WatchJob` stream may last; the client watches again to go on.
pub const WATCH_JOB_MAX: Duration = Duration::from_secs(3600);

/// How often a watched job is re-read even if the change feed names nothing (changes that
/// bypass the scheduler, such as a tenant's termination, show within this time).
const WATCH_RECHECK: Duration = Duration::from_secs(1);

/// Sends `job` to `tx`, then its view again each time it changes, until it finishes, the
/// client goes away or [`WATCH_JOB_MAX`] passes.
async fn follow_job(
    state: Arc<Context>,
    reader: JobReader,
    mut job: JobRecord,
    mut changes: tokio::sync::broadcast::Receiver<Arc<str>>,
    tx: tokio::sync::mpsc::Sender<Result<pb::WatchJobResponse, Status>>,
) {
    use tokio::sync::broadcast::error::RecvError;
    let until = tokio::time::Instant::now() + WATCH_JOB_MAX;
    let mut last: Option<pb::Job> = None;
    loop {
        let view = job_view(&state, &job, reader);
        if last.as_ref() != Some(&view) {
            let message = pb::WatchJobResponse {
                job: Some(view.clone()),
            };
            if tx.send(Ok(message)).await.is_err() {
                return;
            }
            last = Some(view);
        }
        if job.status.is_finished() {
            return;
        }
        // Wait until the feed names this job (or lagged, which may have hidden it), the
        // re-check is due, the client hangs up or the stream's time is over.
        let recheck = tokio::time::sleep(WATCH_RECHECK);
        tokio::pin!(recheck);
        loop {
            tokio::select! {
                event = changes.recv() => match event {
                    Ok(changed) if *changed == *job.id => break,
                    Ok(_) => {}
                    Err(RecvError::Lagged(_)) => break,
                    Err(RecvError::Closed) => return,
                },
                () = &mut recheck => break,
                () = tx.closed() => return,
                () = tokio::time::sleep_until(until) => return,
            }
        }
        job = match state.store.read(|c| {
            crate::jobs::records::job(c, state.store.audit_log(), &job.tenant_id, &job.id)
        }) {
            Ok(Some(job)) => job,
            Ok(None) => {
                let gone = ServerError::NotFound(format!("job {}", job.id));
                let _ = tx.send(Err(gone.into_status())).await;
                return;
            }
            Err(e) => {
                let _ = tx.send(Err(e.into_status())).await;
                return;
            }
        };
    }
}

/// Start of the current calendar month (UTC) and of the next, in ms.
fn this_month() -> (i64, i64) {
    use chrono::{Datelike, TimeZone, Utc};
    let now = chrono::DateTime::from_timestamp_millis(crate::now_ms()).unwrap_or_else(Utc::now);
    let start = Utc
        .with_ymd_and_hms(now.year(), now.month(), 1, 0, 0, 0)
        .single()
        .unwrap_or(now);
    let (y, m) = if now.month() == 12 {
        (now.year() + 1, 1)
    } else {
        (now.year(), now.month() + 1)
    };
    let end = Utc
        .with_ymd_and_hms(y, m, 1, 0, 0, 0)
        .single()
        .unwrap_or(now);
    (start.timestamp_millis(), end.timestamp_millis())
}

impl JobsRpc {
    /// The privacy budgets of a tenant over each dataset granted to it (budgets not used yet
    /// show the configured default).
    fn budgets(
        &self,
        caller: &Caller,
        request: pb::GetPrivacyBudgetsRequest,
    ) -> Result<(pb::GetPrivacyBudgetsResponse, serde_json::Value)> {
        let tenant_id = match caller.principal.role {
            Role::Engineer => caller.tenant()?.to_owned(),
            _ => {
                require_id(&request.tenant_id, "tenant_id")?;
                request.tenant_id.clone()
            }
        };
        let default_total = self.state.privacy.default_epsilon;
        let budgets = self.state.store.read(|c| {
            if crate::admin::records::tenant(c, &tenant_id)?.is_none() {
                return Err(ServerError::NotFound(format!("tenant {tenant_id}")));
            }
            let set = crate::jobs::records::privacy_budgets(c, &tenant_id)?;
            Ok(crate::catalog::records::granted_datasets(c, &tenant_id)?
                .into_iter()
                .map(|d| {
                    let budget = set.iter().find(|b| b.data_sha256 == d.source_sha256);
                    pb::PrivacyBudget {
                        tenant_id: tenant_id.clone(),
                        dataset_id: d.id,
                        dataset_name: d.name,
                        data_sha256: d.source_sha256,
                        epsilon_total: budget.map_or(default_total, |b| b.epsilon_total),
                        epsilon_spent: budget.map_or(0.0, |b| b.epsilon_spent),
                    }
                })
                .collect::<Vec<_>>())
        })?;
        let n = budgets.len();
        Ok((
            pb::GetPrivacyBudgetsResponse { budgets },
            json!({"tenant_id": tenant_id, "n": n}),
        ))
    }

    fn usage(
        &self,
        caller: &Caller,
        request: pb::GetUsageRequest,
    ) -> Result<(pb::GetUsageResponse, serde_json::Value)> {
        let (from_ms, to_ms) = if request.from_ms == 0 && request.to_ms == 0 {
            this_month()
        } else {
            (request.from_ms, request.to_ms)
        };
        if from_ms < 0 || to_ms <= from_ms {
            return Err(ServerError::InvalidArgument(
                "the period must have 0 <= from_ms < to_ms".into(),
            ));
        }
        let tenant_filter = match caller.principal.role {
            Role::Engineer => Some(caller.tenant()?.to_owned()),
            _ if request.tenant_id.is_empty() => None,
            _ => {
                require_id(&request.tenant_id, "tenant_id")?;
                Some(request.tenant_id.clone())
            }
        };
        let (jobs, tenants) = self.state.store.read(|c| {
            Ok((
                crate::jobs::records::finished_jobs_between(
                    c,
                    tenant_filter.as_deref(),
                    from_ms,
                    to_ms,
                )?,
                crate::admin::records::tenants(c)?,
            ))
        })?;
        if let Some(id) = &tenant_filter
            && !tenants.iter().any(|t| &t.id == id)
        {
            return Err(ServerError::NotFound(format!("tenant {id}")));
        }
        let mut rows: Vec<pb::TenantUsage> = Vec::new();
        for tenant in tenants
            .iter()
            .filter(|t| tenant_filter.as_ref().is_none_or(|id| &t.id == id))
        {
            let mut row = pb::TenantUsage {
                tenant_id: tenant.id.clone(),
                tenant_name: tenant.name.clone(),
                total: Some(pb::JobUsage::default()),
                ..Default::default()
            };
            let total = row.total.get_or_insert_default();
            // Engineers get each production job's coarsened figures summed, so that a
            // narrow period does not give one job's exact figures back.
            let coarsened = caller.principal.role == Role::Engineer;
            for job in jobs.iter().filter(|j| j.tenant_id == tenant.id) {
                let usage = match job.mode {
                    JobMode::Production if coarsened => {
                        crate::jobs::oracle::coarse_usage(&job.usage)
                    }
                    _ => job.usage,
                };
                row.jobs += 1;
                match job.status {
                    JobStatus::Succeeded => row.jobs_succeeded += 1,
                    JobStatus::Failed => row.jobs_failed += 1,
                    JobStatus::Cancelled => row.jobs_cancelled += 1,
                    JobStatus::Queued | JobStatus::Running => {}
                }
                total.cpu_ms += usage.cpu_ms;
                total.bytes_scanned += usage.bytes_scanned;
                total.rows_produced += job.n_rows;
                total.peak_memory_bytes = total.peak_memory_bytes.max(usage.peak_memory_bytes);
                total.wall_ms += usage.wall_ms;
                total.queued_ms += usage.queued_ms;
            }
            rows.push(row);
        }
        let n = rows.len();
        Ok((
            pb::GetUsageResponse {
                from_ms,
                to_ms,
                tenants: rows,
            },
            json!({"from_ms": from_ms, "to_ms": to_ms, "tenants": n}),
        ))
    }
}

#[tonic::async_trait]
impl JobService for JobsRpc {
    async fn submit_job(
        &self,
        request: Request<pb::SubmitJobRequest>,
    ) -> Result<Response<pb::SubmitJobResponse>, Status> {
        let no_target = |_: &pb::SubmitJobRequest| String::new();
        let job = self
            .state
            .calls
            .call(
                request,
                Action::SubmitJob,
                no_target,
                |caller, req| async move {
                    let draft = JobDraft::from_request(req)?;
                    Ok(Done::Audited(self.submit(&caller, draft).await?))
                },
            )
            .await?;
        Ok(Response::new(pb::SubmitJobResponse {
            job: Some(engineer_job(&job)),
        }))
    }

    async fn get_job(
        &self,
        request: Request<pb::GetJobRequest>,
    ) -> Result<Response<pb::GetJobResponse>, Status> {
        let target = |req: &pb::GetJobRequest| format!("job:{}", req.job_id);
        let response = self
            .state
            .calls
            .call(request, Action::ViewJob, target, |caller, req| async move {
                let job = self.visible_job(&caller, &req.job_id)?;
                Ok(Done::Record(
                    pb::GetJobResponse {
                        job: Some(job_view(&self.state, &job, JobReader::of(&caller))),
                    },
                    json!({}),
                ))
            })
            .await?;
        Ok(Response::new(response))
    }

    type WatchJobStream = ReceiverStream<Result<pb::WatchJobResponse, Status>>;

    async fn watch_job(
        &self,
        request: Request<pb::WatchJobRequest>,
    ) -> Result<Response<Self::WatchJobStream>, Status> {
        let target = |req: &pb::WatchJobRequest| format!("job:{}", req.job_id);
        let (job, changes, reader) = self
            .state
            .calls
            .call(request, Action::ViewJob, target, |caller, req| async move {
                // Subscribed before the first read, so no change after it is missed.
                let changes = self.state.scheduler.subscribe();
                let job = self.visible_job(&caller, &req.job_id)?;
                let reader = JobReader::of(&caller);
                Ok(Done::Record((job, changes, reader), json!({"watch": true})))
            })
            .await?;
        let (tx, rx) = tokio::sync::mpsc::channel(8);
        tokio::spawn(follow_job(
            Arc::clone(&self.state),
            reader,
            job,
            changes,
            tx,
        ));
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn list_jobs(
        &self,
        request: Request<pb::ListJobsRequest>,
    ) -> Result<Response<pb::ListJobsResponse>, Status> {
        let no_target = |_: &pb::ListJobsRequest| String::new();
        let response = self
            .state
            .calls
            .call(
                request,
                Action::ViewJob,
                no_target,
                |caller, req| async move {
                    let tenant_id = req.tenant_id;
                    let jobs = self.visible_jobs(&caller, &tenant_id)?;
                    let n = jobs.len();
                    let reader = JobReader::of(&caller);
                    Ok(Done::Record(
                        pb::ListJobsResponse {
                            jobs: jobs
                                .iter()
                                .map(|j| job_view(&self.state, j, reader))
                                .collect(),
                        },
                        json!({"n": n, "tenant_id": tenant_id}),
                    ))
                },
            )
            .await?;
        Ok(Response::new(response))
    }

    async fn cancel_job(
        &self,
        request: Request<pb::CancelJobRequest>,
    ) -> Result<Response<pb::CancelJobResponse>, Status> {
        let target = |req: &pb::CancelJobRequest| format!("job:{}", req.job_id);
        let job = self
            .state
            .calls
            .call(
                request,
                Action::CancelJob,
                target,
                |caller, req| async move {
                    let (job, detail) = self.cancel(&caller, &req.job_id)?;
                    if job.status != JobStatus::Cancelled {
                        return Ok(Done::Record(job, detail));
                    }
                    // Cancelled while queued: the new state commits with its audit record.
                    let entry = caller.entry(format!("job:{}", req.job_id), "ok", detail);
                    let done = self.state.store.commit(&entry, |tx| {
                        crate::jobs::records::upsert_job(tx, self.state.store.audit_log(), &job)
                    })?;
                    Ok(Done::Audited(done.map(|()| job)))
                },
            )
            .await?;
        self.state.scheduler.changed(&job.id);
        // A running job is stopped by its runner: give it a moment so the answer is final.
        let mut current = job;
        for _ in 0..50 {
            if !matches!(current.status, JobStatus::Queued | JobStatus::Running) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            match self.state.store.read(|c| {
                crate::jobs::records::job(
                    c,
                    self.state.store.audit_log(),
                    &current.tenant_id,
                    &current.id,
                )
            }) {
                Ok(Some(job)) => current = job,
                _ => break,
            }
        }
        Ok(Response::new(pb::CancelJobResponse {
            job: Some(job_view(&self.state, &current, JobReader::Tenant)),
        }))
    }

    async fn promote_job(
        &self,
        request: Request<pb::PromoteJobRequest>,
    ) -> Result<Response<pb::PromoteJobResponse>, Status> {
        let no_target = |_: &pb::PromoteJobRequest| String::new();
        let job = self
            .state
            .calls
            .call(
                request,
                Action::PromoteJob,
                no_target,
                |caller, req| async move { Ok(Done::Audited(self.promote(&caller, req).await?)) },
            )
            .await?;
        Ok(Response::new(pb::PromoteJobResponse {
            job: Some(engineer_job(&job)),
        }))
    }

    async fn get_usage(
        &self,
        request: Request<pb::GetUsageRequest>,
    ) -> Result<Response<pb::GetUsageResponse>, Status> {
        let no_target = |_: &pb::GetUsageRequest| String::new();
        let response = self
            .state
            .calls
            .call(
                request,
                Action::ViewUsage,
                no_target,
                |caller, req| async move {
                    let (response, detail) = self.usage(&caller, req)?;
                    Ok(Done::Record(response, detail))
                },
            )
            .await?;
        Ok(Response::new(response))
    }

    async fn get_privacy_budgets(
        &self,
        request: Request<pb::GetPrivacyBudgetsRequest>,
    ) -> Result<Response<pb::GetPrivacyBudgetsResponse>, Status> {
        let no_target = |_: &pb::GetPrivacyBudgetsRequest| String::new();
        let response = self
            .state
            .calls
            .call(
                request,
                Action::ViewUsage,
                no_target,
                |caller, req| async move {
                    let (response, detail) = self.budgets(&caller, req)?;
                    Ok(Done::Record(response, detail))
                },
            )
            .await?;
        Ok(Response::new(response))
    }
}

/// The folder of a production job's results under its scenario: a worker kept for the
/// scenario's next jobs may write here and nowhere else.
pub(crate) fn scenario_results(tenant_id: &str, scenario_id: &str) -> String {
    format!("results/{tenant_id}/{scenario_id}/")
}

/// Where a new job's result goes: under its scenario's results for a production job, in a
/// folder of its own under the tenant's results for a lab job.
fn result_file(tenant_id: &str, mode: JobMode, scenario_id: &str, job_id: &str) -> String {
    match mode {
        JobMode::Production if !scenario_id.is_empty() => format!(
            "{}{job_id}/result.parquet",
            scenario_results(tenant_id, scenario_id)
        ),
        _ => format!("results/{tenant_id}/{job_id}/result.parquet"),
    }
}

/// The folder of a job's result file (with its spill files and a lab job's masked tables).
pub(crate) fn job_folder(job: &JobRecord) -> String {
    match job.result_file.rsplit_once('/') {
        Some((folder, _)) => format!("{folder}/"),
        None => format!("results/{}/{}/", job.tenant_id, job.id),
    }
}
