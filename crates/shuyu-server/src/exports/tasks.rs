//! The work an export needs of its staged result, run in a worker process (an export task of
//! the `shuyu worker` protocol), never in the server: the export checks, the release
//! ledger's inputs (the result's population sketches and the ledger checks against the
//! tenant's releases, which the server sends page by page) and the recipient's copy, written
//! chunk-sealed into the export's folder. The worker gets the job's KEK only through the
//! allow-listed key requests, and for the copy only keys derived or made here (the
//! recipient's pseudonym key, the copy's order key, the files' data keys), never the master
//! key or a tenant KEK. What comes back is small: reports, sketches (capped with the answer
//! line at `[exports] max_request_mib`) and the copy's hashes.

use std::collections::HashSet;
use std::time::Instant;

use shuyu_engine::worker::{
    ExportAnswer, ExportTask, ProductTask, SealedOutput, WireDisclosure, WireKey, WorkerTask,
};
use shuyu_engine::{JobError, PopulationId, ProductFacts, ResultGate, UnitSketch};
use shuyu_vault::SecretKey;

use crate::error::{Refusal, Result, ServerError};
use crate::exports::records::{CheckVerdict, StoredCheck};
use crate::exports::rpc::ExportsRpc;
use crate::jobs::records::JobRecord;
use crate::jobs::worker::{self, LedgerFeed, WorkerEnd, WorkerRun};

/// The release ledger's inputs for an approval, as a worker computed them.
#[derive(Debug)]
pub(crate) struct LedgerCheck {
    /// The ledger position the checks ran against; `None` when they read no released cell
    /// (the result has no populations), so that later releases cannot change them.
    pub mark: Option<u64>,
    /// Ledger checks that failed.
    pub failed: Vec<String>,
    /// What the ledger records.
    pub sketches: Vec<(PopulationId, UnitSketch)>,
}

/// How the recipient's copy is to be made.
#[derive(Debug)]
pub(crate) struct CopySpec {
    /// The export's folder, the worker's only writable one.
    pub work_dir: String,
    /// `parquet` or `csv`.
    pub format: String,
    pub round_counts_to: u64,
    pub recipient_key: SecretKey,
    pub order_key: SecretKey,
    pub fingerprint: String,
    /// Where the data file goes, and its ephemeral key.
    pub data_location: String,
    pub data_key: SecretKey,
    /// Where the Parquet copy for Flight goes (a CSV product), its data key and the key's
    /// wrapped form (under the tenant's KEK).
    pub flight: Option<(String, SecretKey, Vec<u8>)>,
}

impl ExportsRpc {
    /// An export task over `job`'s staged result that does nothing yet.
    fn export_task(&self, label: String, job: &JobRecord) -> ExportTask {
        ExportTask {
            label,
            objects_root: self.state.storage.root().to_path_buf(),
            result_file: job.result_file.clone(),
            gate: ResultGate {
                columns: job.columns.clone(),
                unanalysable: job.gate.unanalysable.clone(),
                row_influencing: job.gate.row_influencing.clone(),
                disclosure: job.gate.disclosure.clone(),
            },
            policy: WireDisclosure::from(&self.state.policy.disclosure),
            checks: false,
            ledger: false,
            product: None,
            review_rows: 0,
        }
    }

    /// Runs `task` in a worker (the spare, or a new process) that may receive only the
    /// job's result KEK and read only the job's tenant's release ledger.
    async fn run_export_task(&self, task: ExportTask, job: &JobRecord) -> Result<ExportAnswer> {
        let label = task.label.clone();
        let (_never, cancel) = tokio::sync::watch::channel(false);
        let run = WorkerRun {
            task: WorkerTask::Export(Box::new(task)),
            allowed_keks: HashSet::from([job.result_kek.clone()]),
            keys: &self.state.keys,
            deadline: Instant::now()
                + std::time::Duration::from_secs(self.state.exports.task_timeout_secs),
            cancel,
            tenant_id: job.tenant_id.clone(),
            reuse_key: None,
            ledger: Some(LedgerFeed {
                store: &self.state.store,
                tenant_id: job.tenant_id.clone(),
            }),
            max_line_bytes: self.state.results.max_request_bytes(),
        };
        let started = Instant::now();
        let report = worker::run(&self.state.worker, &self.state.workers, run, &|_, _| {}).await;
        tracing::info!(
            task = %label,
            wall_ms = started.elapsed().as_millis() as u64,
            peak_rss_bytes = report.usage.peak_rss_bytes,
            "export task"
        );
        // The worker's stderr may hold data values: only the sealed audit detail sees it.
        let stderr = report.stderr;
        match report.end {
            WorkerEnd::ExportDone(answer) => Ok(*answer),
            WorkerEnd::Failed(JobError::ResourcesExhausted) => Err(Refusal::WorkerMemory(
                "the staged result is too large for the export worker's memory and spill \
                 space ([worker] address_space_mib and spill_mib, the policy's \
                 memory_limit_bytes)"
                    .into(),
            )
            .into()),
            WorkerEnd::TimedOut => Err(Refusal::WorkerTimeout(format!(
                "the export's worker did not finish within {} s ([exports] task_timeout_secs)",
                self.state.exports.task_timeout_secs
            ))
            .into()),
            WorkerEnd::Failed(e) => Err(ServerError::internal(format!(
                "export task {label} failed: {e}; stderr: {stderr}"
            ))),
            WorkerEnd::Died { reason } if reason.contains("line too long") => {
                Err(Refusal::ResultTooLarge(format!(
                    "the export worker's answer is larger than the {} MiB the server holds for \
                     one request ([exports] max_request_mib)",
                    self.state.results.max_request_bytes() >> 20
                ))
                .into())
            }
            WorkerEnd::Died { reason } => Err(ServerError::internal(format!(
                "export task {label}: {reason}; stderr: {stderr}"
            ))),
            WorkerEnd::Cancelled | WorkerEnd::Finished { .. } => Err(ServerError::internal(
                format!("export task {label} ended unexpectedly; stderr: {stderr}"),
            )),
        }
    }

    /// The export checks of `job`'s staged result, run in a worker.
    pub(crate) async fn staged_checks(&self, job: &JobRecord) -> Result<Vec<StoredCheck>> {
        let mut task = self.export_task(format!("request:{}", job.id), job);
        task.checks = true;
        let answer = self.run_export_task(task, job).await?;
        answer
            .checks
            .into_iter()
            .map(|c| {
                let outcome = match c.outcome.as_str() {
                    "pass" => CheckVerdict::Pass,
                    "review" => CheckVerdict::Review,
                    "fail" => CheckVerdict::Fail,
                    other => {
                        return Err(ServerError::internal(format!(
                            "a worker answered the check outcome {other:?}"
                        )));
                    }
                };
                Ok(StoredCheck {
                    name: c.name,
                    outcome,
                    detail: c.detail,
                    summary: c.summary,
                })
            })
            .collect()
    }

    /// The first `[exports] review_rows` rows of `job`'s staged result (an Arrow IPC
    /// stream) and how many they are, read in a worker.
    pub(crate) async fn review_rows(&self, job: &JobRecord) -> Result<(Vec<u8>, u64)> {
        let mut task = self.export_task(format!("review:{}", job.id), job);
        task.review_rows = self.state.exports.review_rows;
        let answer = self.run_export_task(task, job).await?;
        let rows = answer
            .review
            .ok_or_else(|| ServerError::internal("an export worker answered without rows"))?;
        let ipc = hex::decode(&rows.ipc_hex)
            .map_err(|_| ServerError::internal("an export worker's rows are not hex"))?;
        Ok((ipc, rows.n_rows))
    }

    /// What an approval of `job`'s staged result needs, computed in one worker: the release
    /// ledger's inputs (when `ledger`) and the recipient's copy (when `copy` is given).
    pub(crate) async fn release_work(
        &self,
        export_id: &str,
        job: &JobRecord,
        ledger: bool,
        copy: Option<&CopySpec>,
    ) -> Result<(Option<LedgerCheck>, Option<ProductFacts>)> {
        let mut task = self.export_task(format!("export:{export_id}"), job);
        task.ledger = ledger;
        let limits = &self.state.policy.limits;
        task.product = copy.map(|c| ProductTask {
            work_dir: c.work_dir.clone(),
            format: c.format.clone(),
            round_counts_to: c.round_counts_to,
            recipient_key: WireKey::new(&c.recipient_key),
            order_key: WireKey::new(&c.order_key),
            fingerprint: c.fingerprint.clone(),
            expected_rows: job.n_rows,
            memory_limit_bytes: usize::try_from(limits.memory_limit_bytes).unwrap_or(usize::MAX),
            spill_max_bytes: self.state.worker.spill_mib << 20,
            data: SealedOutput {
                location: c.data_location.clone(),
                key: WireKey::new(&c.data_key),
                metadata_hex: String::new(),
            },
            flight: c
                .flight
                .as_ref()
                .map(|(location, key, metadata)| SealedOutput {
                    location: location.clone(),
                    key: WireKey::new(key),
                    metadata_hex: hex::encode(metadata),
                }),
        });
        let answer = self.run_export_task(task, job).await?;
        let ledger = match answer.ledger {
            Some(l) => Some(LedgerCheck {
                mark: l.mark,
                failed: l.failed,
                sketches: l
                    .sketches
                    .iter()
                    .map(|s| s.decode().map_err(ServerError::internal))
                    .collect::<Result<_>>()?,
            }),
            None if ledger => {
                return Err(ServerError::internal(
                    "an export worker answered without the ledger's inputs",
                ));
            }
            None => None,
        };
        if copy.is_some() && answer.product.is_none() {
            return Err(ServerError::internal(
                "an export worker answered without the recipient's copy",
            ));
        }
        Ok((ledger, answer.product))
    }
}
