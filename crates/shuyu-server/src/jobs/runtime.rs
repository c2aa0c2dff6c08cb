//! The job runtime: the dispatcher that takes jobs from the fair queue, prepares their
//! tables (a scenario's datasets, or a lab's masked copies), runs each in a confined worker
//! and records how it ended; and the duty that fails the jobs of a server that is gone. The
//! RPCs that submit, read and cancel jobs are in [`crate::jobs::rpc`].

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use shuyu_engine::worker::{WireLimits, WorkerJob, masking_defaults_to_wire};
use shuyu_engine::{JobError, JobProgress, TableSpec};
use shuyu_policy::{Action, Role};
use shuyu_vault::sha256_hex;

use super::Context;
use crate::admin::records::Tenant;
use crate::audit::trail::AuditEntry;
use crate::catalog::rpc::table_spec;
use crate::error::{Refusal, Result, ServerError};
use crate::jobs::records::{JobGate, JobMode, JobRecord, JobStatus, JobUsage};
use crate::jobs::rpc::{job_folder, scenario_results};
use crate::jobs::scheduler::Dispatched;
use crate::jobs::worker::{self, WorkerEnd, WorkerRun};
use crate::keys;
use crate::scenarios::rpc as scenarios;
use shuyu_engine::worker::WorkerTask;

/// Takes jobs from the scheduler as slots free up and runs each in a worker. Runs for the
/// life of the server.
pub async fn dispatch_forever(state: Arc<Context>) {
    loop {
        let dispatched = state.scheduler.next().await;
        let state = Arc::clone(&state);
        tokio::spawn(async move {
            let job_id = dispatched.job_id.clone();
            run_dispatched(&state, dispatched).await;
            state.scheduler.finished(&job_id);
        });
    }
}

/// Records a queued job cancelled before it started (`job_cancelled`, on its author's
/// behalf, with `detail` saying why); a failure to record is logged.
fn cancel_queued(state: &Context, job: &mut JobRecord, error: String, detail: serde_json::Value) {
    job.status = JobStatus::Cancelled;
    job.error = error;
    job.finished_at_ms = crate::now_ms();
    let entry = AuditEntry {
        principal_id: job.author_id.clone(),
        role: Role::Engineer.as_str().into(),
        tenant_id: job.tenant_id.clone(),
        action: "job_cancelled".into(),
        target: format!("job:{}", job.id),
        outcome: "ok".into(),
        detail,
        secret_detail: None,
    };
    let job: &JobRecord = job;
    if let Err(e) = state.store.commit(&entry, |tx| {
        crate::jobs::records::upsert_job(tx, state.store.audit_log(), job)
    }) {
        tracing::error!(job = %job.id, error = %e, "could not record a queued job's cancellation");
    }
}

/// Runs one dispatched job to completion and records its outcome (audited as
/// `job_finished`, or `job_cancelled`).
async fn run_dispatched(state: &Arc<Context>, dispatched: Dispatched) {
    let loaded = state.store.read(|c| {
        crate::jobs::records::job(
            c,
            state.store.audit_log(),
            &dispatched.tenant_id,
            &dispatched.job_id,
        )
    });
    let mut job = match loaded {
        Ok(Some(job)) if job.status == JobStatus::Queued => job,
        Ok(_) => return,
        Err(e) => {
            tracing::error!(job = %dispatched.job_id, error = %e, "loading a dispatched job");
            return;
        }
    };
    // A job that slipped into the queue as its tenant was suspended or stopped never starts.
    let held = state
        .store
        .read(|c| crate::lifecycle::records::hold(c, &job.tenant_id))
        .map(|hold| hold.refusal(Action::SubmitJob));
    if let Ok(Some(reason)) = held {
        let error = "cancelled before it started: the tenant is held".to_owned();
        cancel_queued(
            state,
            &mut job,
            error,
            json!({"was": "queued", "why": reason}),
        );
        return;
    }
    // A production job queued before its tenant's production submission froze never starts.
    if job.mode == JobMode::Production {
        let frozen = state
            .store
            .read(|c| crate::jobs::oracle::active_freeze(c, &job.tenant_id));
        if let Ok(Some(freeze)) = frozen {
            let error = format!("cancelled before it started: {}", freeze.reason());
            let detail = json!({"was": "queued", "why": "production_frozen", "freeze": freeze.id});
            cancel_queued(state, &mut job, error, detail);
            return;
        }
    }
    let started_ms = crate::now_ms();
    job.status = JobStatus::Running;
    // Bookkeeping, not a decision: no audit record of its own (its outcome gets one).
    if let Err(e) = state
        .store
        .write_unaudited(|tx| crate::jobs::records::upsert_job(tx, state.store.audit_log(), &job))
    {
        tracing::error!(job = %job.id, error = %e, "could not mark the job running");
    }
    let mut entry = AuditEntry {
        principal_id: job.author_id.clone(),
        role: Role::Engineer.as_str().into(),
        tenant_id: job.tenant_id.clone(),
        action: "job_finished".into(),
        target: format!("job:{}", job.id),
        ..AuditEntry::default()
    };
    let mut outcome = execute(state, &job, dispatched).await;
    // The result the worker wrote reaches the disk before the record that names it.
    if outcome.result.is_ok()
        && let Err(e) = state.storage.sync(&job_folder(&job)).await
    {
        let e = ServerError::from(e);
        outcome.result = Err(Failure::plain(
            match e.storage_fault() {
                Some(fault) => fault.to_string(),
                None => "the result could not be stored; submit the job again".into(),
            },
            Some(e.to_string()),
        ));
    }
    // Whether this outcome counts against the tenant's failed-production-job allowance.
    let counted = job.mode == JobMode::Production
        && matches!(&outcome.result, Err(failure) if failure.counted);
    job.finished_at_ms = crate::now_ms();
    job.usage = outcome.usage;
    job.usage.queued_ms = started_ms.saturating_sub(job.created_at_ms) as u64;
    let mut detail = json!({
        "usage": job.usage,
        "confinement": outcome.confinement,
        "keks_sent": outcome.keks_sent,
        "keks_refused": outcome.keks_refused,
        "worker": {"reused": outcome.worker_reused, "jobs": outcome.worker_jobs},
    });
    let mut plan_text = None;
    match outcome.result {
        Ok((output, result_sha256)) => {
            job.status = JobStatus::Succeeded;
            plan_text = Some(output.plan_text);
            job.n_rows = output.n_rows;
            job.columns = output.columns;
            job.aggregate = output.aggregate;
            job.gate = JobGate {
                row_influencing: output.row_influencing,
                unanalysable: output.unanalysable,
                disclosure: output.disclosure,
            };
            job.preview = output.preview;
            job.inputs = output.input_datasets;
            job.result_sha256 = result_sha256;
            entry.outcome = "ok".into();
            detail["n_rows"] = json!(job.n_rows);
            detail["inputs"] = json!(job.inputs);
            detail["aggregate"] = json!(job.aggregate);
            detail["result_sha256"] = json!(job.result_sha256);
        }
        Err(failure) => {
            let _ = state.storage.delete_prefix(&job_folder(&job)).await;
            job.status = if failure.cancelled {
                entry.action = "job_cancelled".into();
                JobStatus::Cancelled
            } else {
                JobStatus::Failed
            };
            job.error = failure.public;
            job.error_id = failure.error_id.clone().unwrap_or_default();
            entry.outcome = if failure.cancelled { "ok" } else { "error" }.into();
            detail["error"] = json!(job.error);
            detail["error_id"] = json!(job.error_id);
            entry.secret_detail = failure.detail;
        }
    }
    if counted {
        detail["counted_failure"] = json!(true);
    }
    entry.detail = detail;
    let tracing_id = job.id.clone();
    let jobs_config = state.jobs;
    let recorded = state.store.commit_with(|tx| {
        crate::jobs::records::upsert_job(tx, state.store.audit_log(), &job)?;
        if let Some(text) = &plan_text {
            crate::jobs::plan_texts::insert(tx, &job.id, text)?;
        }
        if !counted {
            return Ok(((), entry.clone()));
        }
        match crate::jobs::oracle::count_failure(
            tx,
            &jobs_config,
            &job.tenant_id,
            &job.id,
            job.finished_at_ms,
        )? {
            None => Ok(((), entry.clone())),
            // The outcome first, then the freeze it caused.
            Some(freeze) => {
                state.store.audit_log().append(tx, &entry)?;
                let mut frozen = crate::audit::trail::system_entry(
                    "production_frozen",
                    &format!("tenant:{}", job.tenant_id),
                    json!({
                        "freeze": freeze.id,
                        "failures": freeze.failures,
                        "allowance": freeze.allowance,
                        "window_hours": freeze.window_hours,
                        "job_ids": freeze.job_ids,
                    }),
                );
                frozen.tenant_id = job.tenant_id.clone();
                Ok(((), frozen))
            }
        }
    });
    if let Err(e) = recorded {
        tracing::error!(job = %tracing_id, error = %e, "could not record the job outcome");
    }
}

struct Failure {
    public: String,
    error_id: Option<String>,
    /// Full text for the audit trail (sealed): may contain data values.
    detail: Option<String>,
    cancelled: bool,
    /// The job failed once it ran (not refused before): for a production job, one bit
    /// about the data, counted against the tenant's allowance.
    counted: bool,
}

impl Failure {
    fn withheld(public: &str, detail: String) -> Failure {
        let id = crate::new_id("err");
        Failure {
            public: format!("{public} (error id {id})"),
            error_id: Some(id),
            detail: Some(detail),
            cancelled: false,
            counted: false,
        }
    }

    fn plain(public: impl Into<String>, detail: Option<String>) -> Failure {
        Failure {
            public: public.into(),
            error_id: None,
            detail,
            cancelled: false,
            counted: false,
        }
    }

    /// This failure happened while the job ran.
    fn while_running(mut self) -> Failure {
        self.counted = true;
        self
    }
}

struct Outcome {
    result: std::result::Result<(shuyu_engine::JobOutput, String), Failure>,
    usage: JobUsage,
    confinement: Option<String>,
    keks_sent: Vec<String>,
    keks_refused: Vec<String>,
    worker_reused: bool,
    worker_jobs: u32,
}

async fn execute(state: &Arc<Context>, job: &JobRecord, dispatched: Dispatched) -> Outcome {
    let mut outcome = Outcome {
        result: Err(Failure::plain("the job did not start", None)),
        usage: JobUsage::default(),
        confinement: None,
        keks_sent: Vec::new(),
        keks_refused: Vec::new(),
        worker_reused: false,
        worker_jobs: 0,
    };
    let prepared = prepare(state, job).await;
    let (worker_job, allowed_keks, reuse) = match prepared {
        Ok(prepared) => prepared,
        // The scenario expired or lab access ended while the job was queued.
        Err(ServerError::Refused(refusal)) => {
            outcome.result = Err(Failure::plain(refusal.into_message(), None));
            return outcome;
        }
        Err(e) => {
            outcome.result = Err(Failure::withheld("internal error", e.to_string()));
            return outcome;
        }
    };
    let result_dir = state.storage.root().join(job_folder(job));
    if let Err(e) = std::fs::create_dir_all(&result_dir) {
        outcome.result = Err(Failure::withheld(
            "internal error",
            format!("creating the result folder: {e}"),
        ));
        return outcome;
    }
    let timeout = Duration::from_secs(state.policy.limits.timeout_secs);
    let run = WorkerRun {
        task: WorkerTask::Job(Box::new(worker_job)),
        allowed_keks,
        keys: &state.keys,
        deadline: Instant::now() + timeout,
        cancel: dispatched.cancel,
        tenant_id: job.tenant_id.clone(),
        reuse_key: reuse.map(|(key, _)| key),
        ledger: None,
        max_line_bytes: worker::MAX_JOB_LINE_BYTES,
    };
    let scheduler = &state.scheduler;
    let job_id = job.id.clone();
    let on_progress =
        move |progress: JobProgress, usage| scheduler.report(&job_id, progress, usage);
    let report = worker::run(&state.worker, &state.workers, run, &on_progress).await;
    outcome.worker_reused = report.reused;
    outcome.worker_jobs = report.worker_jobs;
    outcome.usage = JobUsage {
        cpu_ms: report.usage.cpu_ms,
        // Until the worker's final count: what it last reported (a killed worker's stands).
        bytes_scanned: report.progress.map_or(0, |p| p.bytes_scanned),
        peak_memory_bytes: report.usage.peak_rss_bytes,
        wall_ms: report.wall.as_millis() as u64,
        queued_ms: 0,
        sort_merge_rerun: false,
    };
    outcome.confinement = report.confinement.clone();
    outcome.keks_sent = report.keks_sent.clone();
    outcome.keks_refused = report.keks_refused.clone();
    let stderr = (!report.stderr.is_empty()).then(|| report.stderr.clone());
    outcome.result = match report.end {
        // The worker hashed the result it wrote; nothing of it is read back here.
        WorkerEnd::Finished {
            output,
            result_sha256,
        } if !result_sha256.is_empty() => {
            outcome.usage.bytes_scanned = output.bytes_scanned;
            outcome.usage.sort_merge_rerun = output.sort_merge_rerun;
            Ok((*output, result_sha256))
        }
        WorkerEnd::Finished { .. } | WorkerEnd::ExportDone(_) => Err(Failure::withheld(
            "internal error",
            "the worker answered without the result's hash".to_owned(),
        )),
        WorkerEnd::Failed(error) => Err(job_failure(error, stderr)),
        WorkerEnd::TimedOut => {
            Err(Failure::plain(JobError::Timeout.public_message(), stderr).while_running())
        }
        WorkerEnd::Cancelled => Err(Failure {
            public: "cancelled".into(),
            error_id: None,
            detail: stderr,
            cancelled: true,
            counted: false,
        }),
        WorkerEnd::Died { reason } => Err(Failure::plain(reason, stderr).while_running()),
    };
    outcome
}

fn job_failure(error: JobError, stderr: Option<String>) -> Failure {
    let withheld = error.is_withheld();
    // Refusals before the job ran say nothing about the data; everything after does.
    let ran = match &error {
        JobError::Refused(_) | JobError::Plan(_) => false,
        JobError::ResourcesExhausted | JobError::Timeout | JobError::Execution { .. } => true,
    };
    let detail = match stderr {
        Some(stderr) => format!("{error}\n--- worker stderr ---\n{stderr}"),
        None => error.to_string(),
    };
    let failure = if withheld {
        Failure::withheld(&error.public_message(), detail)
    } else {
        Failure::plain(error.public_message(), Some(detail))
    };
    if ran {
        failure.while_running()
    } else {
        failure
    }
}

/// Refuses lab work once the tenant's lab access has ended (R20).
pub(crate) fn lab_open(tenant: &Tenant, now_ms: i64) -> Result<()> {
    if tenant.lab_until_ms == 0 {
        return Err(Refusal::LabClosed(
            "the tenant has no data-lab access; an admin can open it for up to six months".into(),
        )
        .into());
    }
    if now_ms >= tenant.lab_until_ms {
        return Err(Refusal::LabClosed(format!(
            "the tenant's data-lab access ended at {}",
            crate::format_ms(tenant.lab_until_ms)
        ))
        .into());
    }
    Ok(())
}

/// A production job's tables: its scenario's data list, each dataset with only its listed
/// columns (the others do not exist for the job).
fn scenario_tables(state: &Context, job: &JobRecord) -> Result<Vec<(TableSpec, String)>> {
    let scenario = state
        .store
        .read(|c| crate::scenarios::records::scenario(c, &job.scenario_id))?
        .filter(|s| s.tenant_id == job.tenant_id)
        .ok_or_else(|| {
            Refusal::ScenarioUnusable(format!("scenario {} is gone", job.scenario_id))
        })?;
    if let Some(reason) = scenarios::unusable(&scenario, crate::now_ms()) {
        return Err(Refusal::ScenarioUnusable(reason).into());
    }
    // A risk stop raised while the job waited in the queue stops it here (R19).
    if let Some(reason) = crate::stewardship::rpc::risk_stopped(&state.store, &scenario)? {
        return Err(Refusal::RiskStopped(reason).into());
    }
    let mut tables = Vec::with_capacity(scenario.data_list.len());
    for item in &scenario.data_list {
        let dataset = state
            .store
            .read(|c| crate::catalog::records::dataset(c, &item.dataset_id))?
            .ok_or_else(|| {
                Refusal::ScenarioUnusable(format!(
                    "dataset {} of the scenario is gone",
                    item.dataset_id
                ))
            })?;
        let mut spec = table_spec(&dataset);
        spec.columns.retain(|c| item.columns.contains(&c.name));
        tables.push((spec, dataset.kek_id));
    }
    Ok(tables)
}

/// A lab job's tables: typed masked copies of the tenant's granted datasets, written into the
/// job's own folder under the job's own KEK. The worker receives no dataset key.
async fn lab_tables(
    state: &Context,
    job: &JobRecord,
    tenant: &Tenant,
    pseudonym_key: &shuyu_vault::SecretKey,
) -> Result<Vec<TableSpec>> {
    lab_open(tenant, crate::now_ms())?;
    let datasets = state
        .store
        .read(|c| crate::catalog::records::granted_datasets(c, &job.tenant_id))?;
    let mut tables = Vec::with_capacity(datasets.len());
    for dataset in &datasets {
        // A dataset under a risk stop does not exist for lab work either (R19).
        if crate::stewardship::rpc::dataset_stopped(&state.store, &dataset.id)? {
            continue;
        }
        // The same rows on every run of the tenant's lab, like its samples.
        let seed_hash = sha256_hex(format!("lab:{}:{}", job.tenant_id, dataset.id).as_bytes());
        let seed = u64::from_str_radix(&seed_hash[..16], 16).unwrap_or(0);
        let location = format!("results/{}/{}/lab/{}/", job.tenant_id, job.id, dataset.id);
        let spec = state
            .engine
            .write_lab_table(
                &table_spec(dataset),
                state.lab.rows,
                pseudonym_key,
                seed,
                &location,
                &job.result_kek,
            )
            .await?;
        tables.push(spec);
    }
    Ok(tables)
}

/// The worker's job and the KEKs it may ask for: its tables' and its own result's.
/// A job's worker request, the KEKs it may receive, and for a production job the key and
/// scope under which its worker may serve the scenario's later jobs.
async fn prepare(
    state: &Context,
    job: &JobRecord,
) -> Result<(WorkerJob, HashSet<String>, Option<(String, String)>)> {
    let tenant = state
        .store
        .read(|c| crate::admin::records::tenant(c, &job.tenant_id))?
        .ok_or_else(|| ServerError::internal("the job's tenant is missing"))?;
    // R25, R27: a job queued while its tenant's authorization ended never starts.
    crate::governance::records::require_in_force(&state.store, &job.tenant_id)?;
    let pseudonym_key = keys::pseudonym_key(&state.keys, &tenant.pseudonym_kek_id)?;
    let policy = &state.policy;
    let mut allowed: HashSet<String> = HashSet::from([job.result_kek.clone()]);
    let (tables, preview_rows) = match job.mode {
        JobMode::Production => {
            let tables = scenario_tables(state, job)?;
            allowed.extend(tables.iter().map(|(_, kek)| kek.clone()));
            (
                tables.into_iter().map(|(spec, _)| spec).collect(),
                policy.sample.preview_rows,
            )
        }
        JobMode::Lab => (
            lab_tables(state, job, &tenant, &pseudonym_key).await?,
            state.lab.rows,
        ),
    };
    let worker_job = WorkerJob {
        scope: match job.mode {
            JobMode::Lab => shuyu_engine::JobScope::Lab,
            JobMode::Production => shuyu_engine::JobScope::Production,
        },
        job_id: job.id.clone(),
        sql: job.sql.clone(),
        substrait_plan_hex: (!job.substrait_plan.is_empty())
            .then(|| hex::encode(&job.substrait_plan)),
        tables,
        pseudonym_key: shuyu_engine::worker::WireKey::new(&pseudonym_key),
        result_file: job.result_file.clone(),
        result_kek: job.result_kek.clone(),
        limits: WireLimits {
            max_sql_bytes: policy.limits.max_sql_bytes,
            memory_limit_bytes: policy.limits.memory_limit_bytes as usize,
            timeout_ms: policy.limits.timeout_secs.saturating_mul(1000),
            max_result_rows: policy.limits.max_result_rows,
            preview_rows,
        },
        masking_defaults: masking_defaults_to_wire(&policy.masking),
        min_entities: policy.disclosure.min_entities,
        dominance_n: policy.disclosure.dominance_n,
        dp: job.dp.clone(),
        objects_root: state.storage.root().to_path_buf(),
        spill_max_bytes: state.worker.spill_mib.saturating_mul(1 << 20),
        reuse_scope: None,
    };
    // A production job's worker may serve the scenario's next jobs: the same tables (their
    // folders are its view) and result folders under the scenario's (its only writable
    // one). Older jobs, whose results lie elsewhere, get a worker of their own.
    let scope = scenario_results(&job.tenant_id, &job.scenario_id);
    let reuse =
        (job.mode == JobMode::Production && job.result_file.starts_with(&scope)).then(|| {
            let mut folders: Vec<&str> = worker_job
                .tables
                .iter()
                .map(|t| t.location.as_str())
                .collect();
            folders.sort_unstable();
            (
                format!(
                    "{}\n{}\n{}",
                    job.tenant_id,
                    job.scenario_id,
                    folders.join("\n")
                ),
                scope,
            )
        });
    let mut worker_job = worker_job;
    worker_job.reuse_scope = reuse.as_ref().map(|(_, scope)| scope.clone());
    Ok((worker_job, allowed, reuse))
}

/// Fails the jobs left queued or running by a server that is gone (a crash, a restart, a
/// `kill -9`; see [`crate::presence`]), each audited with the reason, and removes their
/// partial results. Run at start and, while servers share the domain, as a periodic duty.
///
/// # Errors
/// On store failure.
pub async fn fail_orphaned_jobs(state: &Context) -> Result<usize> {
    let me = state.presence.id().to_owned();
    let jobs = state
        .store
        .read(|c| crate::jobs::records::orphaned_jobs(c, state.store.audit_log(), &me))?;
    let mut failed = 0;
    for job in &jobs {
        let entry = AuditEntry {
            principal_id: "-".into(),
            role: "system".into(),
            tenant_id: job.tenant_id.clone(),
            action: "job_interrupted".into(),
            target: format!("job:{}", job.id),
            outcome: "error".into(),
            detail: json!({}),
            secret_detail: None,
        };
        // Re-read in the transaction: another server may have failed it meanwhile.
        let changed = state
            .store
            .commit(&entry, |tx| {
                let audit = state.store.audit_log();
                let Some(mut current) = crate::jobs::records::job_any_tenant(tx, audit, &job.id)?
                else {
                    return Ok(false);
                };
                if !matches!(current.status, JobStatus::Queued | JobStatus::Running) {
                    return Ok(false);
                }
                current.status = JobStatus::Failed;
                current.error =
                    "the job was interrupted: the server running it stopped; submit it again"
                        .into();
                current.finished_at_ms = crate::now_ms();
                crate::jobs::records::upsert_job(tx, audit, &current)?;
                Ok(true)
            })?
            .into_inner();
        if changed {
            let _ = state.storage.delete_prefix(&job_folder(job)).await;
            failed += 1;
        }
    }
    Ok(failed)
}

/// Fails orphaned jobs every few seconds while this server holds that duty.
pub async fn fail_orphaned_jobs_forever(state: std::sync::Arc<Context>) {
    let period = crate::presence::HEARTBEAT;
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let on_duty = {
            let presence = state.presence.clone();
            tokio::task::spawn_blocking(move || presence.on_duty("orphaned-jobs", period)).await
        };
        if !matches!(on_duty, Ok(Ok(true))) {
            continue;
        }
        match fail_orphaned_jobs(&state).await {
            Ok(0) => {}
            Ok(n) => tracing::warn!(n, "failed the jobs of a server that is gone"),
            Err(e) => tracing::warn!(error = %e, "failing orphaned jobs failed"),
        }
    }
}
