//! Export service: the output-review gate (R1, R22). Automated checks run when the export is
//! requested; a reviewer who is not the requester approves or rejects; approval packages the
//! result with a signed manifest; only the requester downloads it.

use serde_json::json;
use shuyu_engine::{
    CheckOutcome, ExportFormat, GateInput, read_result, render_export_file, result_sketches,
    run_export_checks, units_range,
};
use shuyu_policy::{Action, Role};
use shuyu_proto::v1 as pb;
use shuyu_proto::v1::export_service_server::ExportService;
use shuyu_vault::sha256_hex;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::{Api, require_id, require_text};
use crate::convert;
use crate::error::{Result, ServerError};
use crate::package::{self, Manifest, ManifestCheck, ManifestDataset, ManifestFile};
use crate::state::Caller;
use crate::store::{self, ExportRecord, ExportStatus, JobMode, JobRecord, JobStatus, StoredCheck};

const REVIEW_MAX_ROWS: usize = 100_000;
const CHUNK_BYTES: usize = 64 * 1024;

impl Api {
    /// An export the caller may see, or NotFound: engineers see their tenant's, reviewers
    /// every export.
    fn visible_export(&self, caller: &Caller, id: &str) -> Result<ExportRecord> {
        require_id(id, "export_id")?;
        let export = self.state.store.read(|c| store::export(c, id))?;
        let visible = match (&export, caller.principal.role) {
            (Some(e), Role::Engineer) => caller.tenant().is_ok_and(|t| t == e.tenant_id),
            (Some(_), Role::Reviewer) => true,
            _ => false,
        };
        match export {
            Some(e) if visible => Ok(e),
            _ => Err(ServerError::NotFound(format!("export {id}"))),
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
        let batches = self.state.engine.read_result(&job.result_file).await?;
        let k = self.state.policy.disclosure.min_entities;
        let released = match units_range(&result_sketches(&batches), k) {
            Some((lo, hi)) => self
                .state
                .store
                .read(|c| store::released_cells(c, &job.tenant_id, lo, hi))?,
            None => Vec::new(),
        };
        let checks = run_export_checks(
            &GateInput {
                columns: &job.columns,
                unanalysable: &job.gate.unanalysable,
                disclosure: &job.gate.disclosure,
                batches: &batches,
                released: &released,
            },
            &self.state.policy.disclosure,
        );
        let passed = checks.passed();
        let id = crate::new_id("exp");
        let export = ExportRecord {
            id: id.clone(),
            job_id: job.id.clone(),
            tenant_id: job.tenant_id.clone(),
            requester_id: caller.principal.id.clone(),
            purpose: req.purpose.trim().to_owned(),
            format: format.to_owned(),
            status: if passed {
                ExportStatus::PendingReview
            } else {
                ExportStatus::Refused
            },
            checks: checks
                .reports
                .iter()
                .map(|r| StoredCheck {
                    name: r.name.to_owned(),
                    passed: r.outcome != CheckOutcome::Fail,
                    detail: r.detail.clone(),
                    summary: r.summary.clone(),
                })
                .collect(),
            reviewer_id: String::new(),
            comment: String::new(),
            requested_at_ms: crate::now_ms(),
            decided_at_ms: 0,
            package_location: String::new(),
            package_sha256: String::new(),
            policy_version: self.state.policy.version.clone(),
        };
        let failed: Vec<&str> = export
            .checks
            .iter()
            .filter(|c| !c.passed)
            .map(|c| c.name.as_str())
            .collect();
        self.state.store.commit(
            &caller.entry(
                format!("export:{id} job:{}", job.id),
                "ok",
                json!({"status": if passed {"pending_review"} else {"refused"}, "failed_checks": failed,
                       "result_sha256": job.result_sha256, "policy_version": export.policy_version}),
            ),
            |tx| store::upsert_export(tx, &export),
        )?;
        Ok(export)
    }

    async fn decide(&self, caller: &Caller, req: pb::DecideExportRequest) -> Result<ExportRecord> {
        require_text(&req.comment, "the comment", 4000, !req.approve)?;
        let mut export = self.visible_export(caller, &req.export_id)?;
        if export.requester_id == caller.principal.id {
            return Err(ServerError::PermissionDenied(
                "a requester cannot review their own export".into(),
            ));
        }
        match export.status {
            ExportStatus::PendingReview => {}
            ExportStatus::Refused => {
                return Err(ServerError::FailedPrecondition(
                    "the export failed its automated checks and cannot be approved".into(),
                ));
            }
            ExportStatus::Approved | ExportStatus::Rejected => {
                return Err(ServerError::FailedPrecondition(
                    "the export was already decided".into(),
                ));
            }
        }
        if req.approve && export.checks.iter().any(|c| !c.passed) {
            return Err(ServerError::FailedPrecondition(
                "a failed check cannot be approved".into(),
            ));
        }
        let job = self.job_of(&export)?;
        export.reviewer_id = caller.principal.id.clone();
        export.comment = req.comment.trim().to_owned();
        export.decided_at_ms = crate::now_ms();
        if !req.approve {
            export.status = ExportStatus::Rejected;
            self.state.store.commit(
                &caller.entry(
                    format!("export:{}", export.id),
                    "ok",
                    json!({"decision": "rejected"}),
                ),
                |tx| store::upsert_export(tx, &export),
            )?;
            return Ok(export);
        }
        // The approval binds to the staged result that was checked: refuse if it changed.
        let stored = self.state.storage.get(&job.result_file).await?;
        if sha256_hex(&stored) != job.result_sha256 {
            return Err(ServerError::FailedPrecondition(
                "the staged result changed since it was checked; request a new export".into(),
            ));
        }
        let data = read_result(self.state.engine.read_result(&job.result_file).await?)?;
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
        let manifest = Manifest {
            format: "shuyu-export/v1".into(),
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
                    passed: c.passed,
                })
                .collect(),
            purpose: export.purpose.clone(),
            requester_id: export.requester_id.clone(),
            reviewer_id: export.reviewer_id.clone(),
            review_comment: export.comment.clone(),
            requested_at_ms: export.requested_at_ms,
            approved_at_ms: export.decided_at_ms,
            result: ManifestFile {
                name: format.file_name().to_owned(),
                sha256: sha256_hex(&file),
                bytes: file.len() as u64,
                rows: data.n_rows(),
            },
            domain_public_key: hex::encode(self.state.signing.public_key()),
        };
        let package = package::build(&manifest, &file, &self.state.signing)?;
        let sketches = if job.aggregate {
            result_sketches(&self.state.engine.read_result(&job.result_file).await?)
        } else {
            Vec::new()
        };
        let tenant = self
            .state
            .store
            .read(|c| store::tenant(c, &export.tenant_id))?
            .ok_or_else(|| ServerError::internal("the export's tenant is missing"))?;
        let location = format!("exports/{}/{}.pkg", export.tenant_id, export.id);
        let sealed = package::seal(&self.state.envelope, &tenant.kek_id, &location, &package)?;
        self.state.storage.put(&location, sealed).await?;
        export.status = ExportStatus::Approved;
        export.package_location = location;
        export.package_sha256 = sha256_hex(&package);
        self.state.store.commit(
            &caller.entry(
                format!("export:{}", export.id),
                "ok",
                json!({"decision": "approved", "package_sha256": export.package_sha256,
                       "result_sha256": manifest.result.sha256, "job_result_sha256": job.result_sha256}),
            ),
            |tx| {
                store::upsert_export(tx, &export)?;
                // The release ledger: later exports are compared with these cells.
                if job.aggregate {
                    store::record_release(tx, &export, &job, &sketches)?;
                }
                Ok(())
            },
        )?;
        Ok(export)
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
        let result = self.request_export(&caller, req).await;
        let export = self.state.finish_write(&caller, &target, result)?;
        Ok(Response::new(pb::RequestExportResponse {
            export: Some(convert::export(&export, false)),
        }))
    }

    async fn get_export(
        &self,
        request: Request<pb::GetExportRequest>,
    ) -> Result<Response<pb::GetExportResponse>, Status> {
        let caller = self.state.begin(&request, Action::ViewExport)?;
        let id = request.into_inner().export_id;
        let target = format!("export:{id}");
        let result = self.visible_export(&caller, &id).map(|e| {
            let evidence = caller.principal.role == Role::Reviewer;
            (
                pb::GetExportResponse {
                    export: Some(convert::export(&e, evidence)),
                },
                json!({}),
            )
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
            let (exports, evidence) = match caller.principal.role {
                Role::Reviewer => (self.state.store.read(store::exports_in_review)?, true),
                _ => {
                    let tenant = caller.tenant()?;
                    (
                        self.state
                            .store
                            .read(|c| store::exports_of_tenant(c, tenant))?,
                        false,
                    )
                }
            };
            let n = exports.len();
            Ok((
                pb::ListExportsResponse {
                    exports: exports
                        .iter()
                        .map(|e| convert::export(e, evidence))
                        .collect(),
                },
                json!({"n": n}),
            ))
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
            let export = self.visible_export(&caller, &id)?;
            if export.requester_id == caller.principal.id {
                return Err(ServerError::PermissionDenied(
                    "a requester cannot review their own export".into(),
                ));
            }
            let job = self.job_of(&export)?;
            let data = read_result(self.state.engine.read_result(&job.result_file).await?)?;
            let (ipc, truncated) = data.to_ipc(REVIEW_MAX_ROWS)?;
            let response = pb::ReviewExportResponse {
                export: Some(convert::export(&export, true)),
                sql: job.sql.clone(),
                columns: job.columns.iter().map(convert::output_column).collect(),
                result_arrow_ipc: ipc,
                truncated,
                n_rows: data.n_rows(),
                input_dataset_ids: job.inputs.clone(),
            };
            Ok((response, json!({"job_id": job.id, "n_rows": data.n_rows()})))
        }
        .await;
        Ok(Response::new(
            self.state.finish_read(&caller, &target, result)?,
        ))
    }

    async fn decide_export(
        &self,
        request: Request<pb::DecideExportRequest>,
    ) -> Result<Response<pb::DecideExportResponse>, Status> {
        let caller = self.state.begin(&request, Action::DecideExport)?;
        let req = request.into_inner();
        let target = format!("export:{}", req.export_id);
        let result = self.decide(&caller, req).await;
        let export = self.state.finish_write(&caller, &target, result)?;
        Ok(Response::new(pb::DecideExportResponse {
            export: Some(convert::export(&export, true)),
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
            let export = self.visible_export(&caller, &id)?;
            if export.requester_id != caller.principal.id {
                // R23: only the recipient downloads; to others it does not exist.
                return Err(ServerError::NotFound(format!("export {id}")));
            }
            if export.status != ExportStatus::Approved {
                return Err(ServerError::FailedPrecondition(
                    "the export is not approved".into(),
                ));
            }
            let stored = self.state.storage.get(&export.package_location).await?;
            let package = package::open(&self.state.envelope, &export.package_location, &stored)?;
            if sha256_hex(&package) != export.package_sha256 {
                return Err(ServerError::internal(
                    "a stored package does not match its recorded hash",
                ));
            }
            Ok((package, json!({"package_sha256": export.package_sha256})))
        }
        .await;
        let package = self.state.finish_read(&caller, &target, result)?;
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
}
