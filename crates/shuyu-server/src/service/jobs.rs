//! Job service: SQL jobs run in the sandboxed engine on the job runtime; results stay
//! encrypted in the domain and engineers get status, schema and a masked preview.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use shuyu_engine::{Engine, JobLimits, JobRequest};
use shuyu_policy::Action;
use shuyu_proto::v1 as pb;
use shuyu_proto::v1::job_service_server::JobService;
use shuyu_vault::sha256_hex;
use tonic::{Request, Response, Status};

use super::catalog::table_spec;
use super::{Api, require_id};
use crate::audit::AuditEntry;
use crate::convert;
use crate::error::{Result, ServerError};
use crate::keys::{self, DOMAIN_KEK};
use crate::state::{AppState, Caller};
use crate::store::{self, JobRecord, JobStatus, Tenant};

impl Api {
    fn submit(&self, caller: &Caller, sql: String) -> Result<JobRecord> {
        let limits = &self.state.policy.limits;
        if sql.trim().is_empty() {
            return Err(ServerError::InvalidArgument("the SQL text is empty".into()));
        }
        if sql.len() > limits.max_sql_bytes {
            return Err(ServerError::InvalidArgument(format!(
                "the SQL text is {} bytes; the limit is {}",
                sql.len(),
                limits.max_sql_bytes
            )));
        }
        let tenant_id = caller.tenant()?.to_owned();
        let tenant = self
            .state
            .store
            .read(|c| store::tenant(c, &tenant_id))?
            .ok_or_else(|| ServerError::internal("the caller's tenant is missing"))?;
        let id = crate::new_id("job");
        let job = JobRecord {
            id: id.clone(),
            tenant_id: tenant_id.clone(),
            author_id: caller.principal.id.clone(),
            sql_sha256: sha256_hex(sql.as_bytes()),
            sql,
            status: JobStatus::Queued,
            error: String::new(),
            error_id: String::new(),
            n_rows: 0,
            columns: Vec::new(),
            aggregate: false,
            preview: Default::default(),
            inputs: Vec::new(),
            result_file: format!("results/{tenant_id}/{id}/result.parquet"),
            result_kek: tenant.kek_id.clone(),
            result_sha256: String::new(),
            created_at_ms: crate::now_ms(),
            finished_at_ms: 0,
        };
        self.state.store.commit(
            &caller.entry(
                format!("job:{id}"),
                "ok",
                json!({"sql_sha256": job.sql_sha256, "sql_bytes": job.sql.len()}),
            ),
            |tx| store::upsert_job(tx, &job),
        )?;
        let state = Arc::clone(&self.state);
        let queued = job.clone();
        self.state.jobs.spawn(async move {
            run_job(state, queued, tenant).await;
        });
        Ok(job)
    }
}

/// Runs one job to completion and records its outcome (audited as `job_finished`).
async fn run_job(state: Arc<AppState>, mut job: JobRecord, tenant: Tenant) {
    job.status = JobStatus::Running;
    if let Err(e) = state.store.read(|c| store::upsert_job(c, &job)) {
        tracing::error!(job = %job.id, error = %e, "could not mark the job running");
    }
    let mut entry = AuditEntry {
        principal_id: job.author_id.clone(),
        role: "engineer".into(),
        tenant_id: job.tenant_id.clone(),
        action: "job_finished".into(),
        target: format!("job:{}", job.id),
        ..AuditEntry::default()
    };
    let outcome = execute(&state, &job, &tenant).await;
    job.finished_at_ms = crate::now_ms();
    match outcome {
        Ok((output, result_sha256)) => {
            job.status = JobStatus::Succeeded;
            job.n_rows = output.n_rows;
            job.columns = output.columns;
            job.aggregate = output.aggregate;
            job.preview = output.preview;
            job.inputs = output.input_datasets;
            job.result_sha256 = result_sha256;
            entry.outcome = "ok".into();
            entry.detail = json!({
                "n_rows": job.n_rows, "inputs": job.inputs, "aggregate": job.aggregate,
                "result_sha256": job.result_sha256,
            });
        }
        Err(failure) => {
            let _ = state
                .storage
                .delete_prefix(&format!("results/{}/{}/", job.tenant_id, job.id))
                .await;
            job.status = JobStatus::Failed;
            job.error = failure.public;
            job.error_id = failure.error_id.clone().unwrap_or_default();
            entry.outcome = "error".into();
            entry.detail = json!({"error": job.error, "error_id": job.error_id});
            entry.secret_detail = failure.detail;
        }
    }
    let tracing_id = job.id.clone();
    if let Err(e) = state.store.commit(&entry, |tx| store::upsert_job(tx, &job)) {
        tracing::error!(job = %tracing_id, error = %e, "could not record the job outcome");
    }
}

struct Failure {
    public: String,
    error_id: Option<String>,
    detail: Option<String>,
}

async fn execute(
    state: &AppState,
    job: &JobRecord,
    tenant: &Tenant,
) -> std::result::Result<(shuyu_engine::JobOutput, String), Failure> {
    let internal = |e: ServerError| {
        let id = crate::new_id("err");
        Failure {
            public: format!("internal error (error id {id})"),
            error_id: Some(id),
            detail: Some(e.to_string()),
        }
    };
    let datasets = state
        .store
        .read(|c| store::granted_datasets(c, &job.tenant_id))
        .map_err(internal)?;
    let pseudonym_key =
        keys::pseudonym_key(&state.keys, &tenant.pseudonym_kek_id).map_err(internal)?;
    let policy = &state.policy;
    let request = JobRequest {
        job_id: job.id.clone(),
        sql: job.sql.clone(),
        tables: datasets.iter().map(table_spec).collect(),
        pseudonym_key,
        result_file: job.result_file.clone(),
        result_kek: job.result_kek.clone(),
        limits: JobLimits {
            max_sql_bytes: policy.limits.max_sql_bytes,
            memory_limit_bytes: policy.limits.memory_limit_bytes as usize,
            timeout: Duration::from_secs(policy.limits.timeout_secs),
            max_result_rows: policy.limits.max_result_rows,
            preview_rows: policy.sample.preview_rows,
        },
        masking_defaults: policy.masking.clone(),
        min_group_rows: policy.export.min_group_rows,
    };
    // The job may unwrap only the keys it needs: published datasets and its tenant's KEK.
    let mut allowed: Vec<String> = datasets.iter().map(|d| d.kek_id.clone()).collect();
    allowed.push(DOMAIN_KEK.to_owned());
    allowed.push(tenant.kek_id.clone());
    let engine = Engine::new(
        state.storage.clone(),
        keys::restricted_envelope(&state.keys, allowed),
    );
    match engine.run_job(&request).await {
        Ok(output) => {
            let bytes = state
                .storage
                .get(&job.result_file)
                .await
                .map_err(|e| internal(e.into()))?;
            Ok((output, sha256_hex(&bytes)))
        }
        Err(e) => {
            let withheld = e.is_withheld();
            let id = crate::new_id("err");
            Err(Failure {
                public: if withheld {
                    format!("{} (error id {id})", e.public_message())
                } else {
                    e.public_message()
                },
                error_id: withheld.then_some(id),
                detail: Some(e.to_string()),
            })
        }
    }
}

/// Marks jobs left queued or running by a crash as failed (audited), and removes their
/// partial results.
///
/// # Errors
/// On store failure.
pub async fn recover_interrupted_jobs(state: &AppState) -> Result<usize> {
    let jobs = state.store.read(store::unfinished_jobs)?;
    for mut job in jobs.iter().cloned() {
        let _ = state
            .storage
            .delete_prefix(&format!("results/{}/{}/", job.tenant_id, job.id))
            .await;
        job.status = JobStatus::Failed;
        job.error = "the job was interrupted by a server restart; submit it again".into();
        job.finished_at_ms = crate::now_ms();
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
        state
            .store
            .commit(&entry, |tx| store::upsert_job(tx, &job))?;
    }
    Ok(jobs.len())
}

#[tonic::async_trait]
impl JobService for Api {
    async fn submit_job(
        &self,
        request: Request<pb::SubmitJobRequest>,
    ) -> Result<Response<pb::SubmitJobResponse>, Status> {
        let caller = self.state.begin(&request, Action::SubmitJob)?;
        let result = self.submit(&caller, request.into_inner().sql);
        let job = self.state.finish_write(&caller, "", result)?;
        Ok(Response::new(pb::SubmitJobResponse {
            job: Some(convert::job(&job)),
        }))
    }

    async fn get_job(
        &self,
        request: Request<pb::GetJobRequest>,
    ) -> Result<Response<pb::GetJobResponse>, Status> {
        let caller = self.state.begin(&request, Action::ViewJob)?;
        let id = request.into_inner().job_id;
        let target = format!("job:{id}");
        let result = (|| {
            require_id(&id, "job_id")?;
            let tenant = caller.tenant()?;
            let job = self
                .state
                .store
                .read(|c| store::job(c, tenant, &id))?
                .ok_or_else(|| ServerError::NotFound(format!("job {id}")))?;
            Ok((
                pb::GetJobResponse {
                    job: Some(convert::job(&job)),
                },
                json!({}),
            ))
        })();
        Ok(Response::new(
            self.state.finish_read(&caller, &target, result)?,
        ))
    }

    async fn list_jobs(
        &self,
        request: Request<pb::ListJobsRequest>,
    ) -> Result<Response<pb::ListJobsResponse>, Status> {
        let caller = self.state.begin(&request, Action::ViewJob)?;
        let result = (|| {
            let tenant = caller.tenant()?;
            let jobs = self.state.store.read(|c| store::jobs(c, tenant))?;
            let n = jobs.len();
            Ok((
                pb::ListJobsResponse {
                    jobs: jobs.iter().map(convert::job).collect(),
                },
                json!({"n": n}),
            ))
        })();
        Ok(Response::new(self.state.finish_read(&caller, "", result)?))
    }
}
