//! Typed client for the Shuyu gRPC API, used by the CLI, the tests and the benches.
//!
//! Connects over TLS with the caller's client certificate; the server derives the caller's
//! identity from it.

use std::time::Duration;

use arrow::array::RecordBatch;
use arrow_flight::Ticket;
use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::flight_service_client::FlightServiceClient;
use futures::TryStreamExt;

use shuyu_proto::v1 as pb;
use shuyu_proto::v1::admin_service_client::AdminServiceClient;
use shuyu_proto::v1::audit_service_client::AuditServiceClient;
use shuyu_proto::v1::catalog_service_client::CatalogServiceClient;
use shuyu_proto::v1::export_service_client::ExportServiceClient;
use shuyu_proto::v1::governance_service_client::GovernanceServiceClient;
use shuyu_proto::v1::job_service_client::JobServiceClient;
use shuyu_proto::v1::lifecycle_service_client::LifecycleServiceClient;
use shuyu_proto::v1::oversight_service_client::OversightServiceClient;
use shuyu_proto::v1::scenario_service_client::ScenarioServiceClient;
use shuyu_proto::v1::session_service_client::SessionServiceClient;
use shuyu_proto::v1::stewardship_service_client::StewardshipServiceClient;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

pub use shuyu_proto::v1;

mod credentials;
pub use credentials::{Credentials, new_key_and_csr, write_credentials};

const MAX_MESSAGE_BYTES: usize = 64 << 20;
const UPLOAD_CHUNK_BYTES: usize = 1 << 20;

/// Client errors.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Reading credentials failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The connection could not be set up.
    #[error("cannot connect: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// The server answered with an error.
    #[error("{}: {}", .0.code(), .0.message())]
    Status(#[from] tonic::Status),
    /// A job did not finish in time.
    #[error("timed out waiting for {0}")]
    Timeout(String),
    /// An Arrow Flight stream did not decode.
    #[error("flight: {0}")]
    Flight(String),
    /// A key or certificate signing request could not be made.
    #[error("creating a key and CSR: {0}")]
    Csr(String),
}

impl ClientError {
    /// The stable reason the server gave (`google.rpc.ErrorInfo` in domain `shuyu.v1`), for
    /// an error the server answered; see [`error_reason`].
    pub fn reason(&self) -> Option<String> {
        match self {
            ClientError::Status(status) => error_reason(status),
            ClientError::Io { .. }
            | ClientError::Transport(_)
            | ClientError::Timeout(_)
            | ClientError::Flight(_)
            | ClientError::Csr(_) => None,
        }
    }
}

/// The stable, machine-readable reason of a status the server sent (e.g. `TENANT_SUSPENDED`,
/// `BINDING_CHANGED`, `NOT_FOUND`): the `google.rpc.ErrorInfo` in its details, domain
/// `shuyu.v1`. Match on it, not on the message. `None` for a status without one (one made
/// by the transport, or by another server).
pub fn error_reason(status: &tonic::Status) -> Option<String> {
    shuyu_proto::status::error_reason(status)
}

/// Connected service stubs.
#[derive(Debug, Clone)]
pub struct Client {
    /// Session service.
    pub session: SessionServiceClient<Channel>,
    /// Admin service.
    pub admin: AdminServiceClient<Channel>,
    /// Catalog service.
    pub catalog: CatalogServiceClient<Channel>,
    /// Job service.
    pub jobs: JobServiceClient<Channel>,
    /// Scenario service.
    pub scenarios: ScenarioServiceClient<Channel>,
    /// Stewardship service: imports (R17), data-quality tickets (R18), risk stops (R19).
    pub stewardship: StewardshipServiceClient<Channel>,
    /// Export service.
    pub exports: ExportServiceClient<Channel>,
    /// Audit service.
    pub audit: AuditServiceClient<Channel>,
    /// Governance: authorizations, emergency plans, qualification, certificate revocation.
    pub governance: GovernanceServiceClient<Channel>,
    /// Arrow Flight on the same server (DoGet of products).
    pub flight: FlightServiceClient<Channel>,
    /// Oversight: alerts, reports, audit checkpoints and retention.
    pub oversight: OversightServiceClient<Channel>,
    /// Tenant lifecycle: suspension, emergency stop, drills, termination.
    pub lifecycle: LifecycleServiceClient<Channel>,
}

impl Client {
    /// Connects to `endpoint` (e.g. `https://localhost:7443`) with a client certificate.
    ///
    /// # Errors
    /// If the TLS handshake or connection fails.
    pub async fn connect(endpoint: &str, credentials: &Credentials) -> Result<Client, ClientError> {
        let tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&credentials.ca_pem))
            .identity(Identity::from_pem(
                &credentials.cert_pem,
                &credentials.key_pem,
            ))
            .domain_name("localhost");
        Self::connect_with(endpoint, tls).await
    }

    /// Connects with an arbitrary TLS configuration (tests use it to try without a client
    /// certificate).
    ///
    /// # Errors
    /// If the connection fails.
    pub async fn connect_with(endpoint: &str, tls: ClientTlsConfig) -> Result<Client, ClientError> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let channel = Endpoint::from_shared(endpoint.to_owned())?
            .tls_config(tls)?
            .connect_timeout(Duration::from_secs(10))
            .tcp_nodelay(true)
            .connect()
            .await?;
        Ok(Client {
            session: SessionServiceClient::new(channel.clone()),
            admin: AdminServiceClient::new(channel.clone())
                .max_decoding_message_size(MAX_MESSAGE_BYTES),
            catalog: CatalogServiceClient::new(channel.clone())
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
            jobs: JobServiceClient::new(channel.clone())
                .max_decoding_message_size(MAX_MESSAGE_BYTES),
            scenarios: ScenarioServiceClient::new(channel.clone()),
            stewardship: StewardshipServiceClient::new(channel.clone())
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
            exports: ExportServiceClient::new(channel.clone())
                .max_decoding_message_size(MAX_MESSAGE_BYTES),
            audit: AuditServiceClient::new(channel.clone())
                .max_decoding_message_size(MAX_MESSAGE_BYTES),
            oversight: OversightServiceClient::new(channel.clone())
                .max_decoding_message_size(MAX_MESSAGE_BYTES),
            lifecycle: LifecycleServiceClient::new(channel.clone())
                .max_decoding_message_size(MAX_MESSAGE_BYTES),
            governance: GovernanceServiceClient::new(channel.clone()),
            flight: FlightServiceClient::new(channel).max_decoding_message_size(MAX_MESSAGE_BYTES),
        })
    }

    /// Uploads a dataset in chunks.
    ///
    /// # Errors
    /// The server's answer (e.g. `INVALID_ARGUMENT` for malformed input).
    pub async fn ingest(
        &mut self,
        header: pb::IngestHeader,
        data: Vec<u8>,
    ) -> Result<pb::Dataset, ClientError> {
        let mut messages = vec![pb::IngestDatasetRequest {
            part: Some(pb::ingest_dataset_request::Part::Header(header)),
        }];
        messages.extend(
            data.chunks(UPLOAD_CHUNK_BYTES)
                .map(|chunk| pb::IngestDatasetRequest {
                    part: Some(pb::ingest_dataset_request::Part::Chunk(chunk.to_vec())),
                }),
        );
        let response = self
            .catalog
            .ingest_dataset(tokio_stream::iter(messages))
            .await?;
        response
            .into_inner()
            .dataset
            .ok_or_else(|| tonic::Status::internal("empty response").into())
    }

    /// Uploads the data of an approved import application in chunks (R17).
    ///
    /// # Errors
    /// The server's answer (e.g. `FAILED_PRECONDITION` before approval).
    pub async fn upload_import(
        &mut self,
        import_id: &str,
        format: pb::DataFormat,
        data: Vec<u8>,
    ) -> Result<pb::UploadImportResponse, ClientError> {
        let mut messages = vec![pb::UploadImportRequest {
            part: Some(pb::upload_import_request::Part::Header(
                pb::UploadImportHeader {
                    import_id: import_id.to_owned(),
                    format: format as i32,
                },
            )),
        }];
        messages.extend(
            data.chunks(UPLOAD_CHUNK_BYTES)
                .map(|chunk| pb::UploadImportRequest {
                    part: Some(pb::upload_import_request::Part::Chunk(chunk.to_vec())),
                }),
        );
        Ok(self
            .stewardship
            .upload_import(tokio_stream::iter(messages))
            .await?
            .into_inner())
    }

    /// Submits a job and waits until it finishes (or `timeout` passes).
    ///
    /// # Errors
    /// The server's answer, or [`ClientError::Timeout`].
    pub async fn run_job(
        &mut self,
        request: pb::SubmitJobRequest,
        timeout: Duration,
    ) -> Result<pb::Job, ClientError> {
        let job = self
            .jobs
            .submit_job(request)
            .await?
            .into_inner()
            .job
            .unwrap_or_default();
        self.wait_job(&job.id, timeout).await
    }

    /// Runs SQL in production under a scenario and waits for it.
    ///
    /// # Errors
    /// As [`Client::run_job`].
    pub async fn run_sql(
        &mut self,
        sql: &str,
        scenario_id: &str,
        timeout: Duration,
    ) -> Result<pb::Job, ClientError> {
        self.run_job(production_sql(sql, scenario_id), timeout)
            .await
    }

    /// Runs SQL in the data lab (masked samples; results shown directly) and waits for it.
    ///
    /// # Errors
    /// As [`Client::run_job`].
    pub async fn run_lab_sql(
        &mut self,
        sql: &str,
        timeout: Duration,
    ) -> Result<pb::Job, ClientError> {
        self.run_job(lab_sql(sql), timeout).await
    }

    /// Follows a job (`WatchJob`) until it has finished (succeeded, failed or cancelled).
    ///
    /// # Errors
    /// The server's answer, or [`ClientError::Timeout`].
    pub async fn wait_job(
        &mut self,
        job_id: &str,
        timeout: Duration,
    ) -> Result<pb::Job, ClientError> {
        self.wait_job_with(job_id, timeout, |_| {}).await
    }

    /// [`Client::wait_job`], calling `on_update` with every state the server pushes (queue
    /// position, stage, rows, bytes) while it waits. The server sends a message only when the
    /// job's view changes, so waiting costs no polling; a stream that ends before the job
    /// does (the server's per-stream limit) is opened again.
    ///
    /// # Errors
    /// The server's answer, or [`ClientError::Timeout`].
    pub async fn wait_job_with(
        &mut self,
        job_id: &str,
        timeout: Duration,
        mut on_update: impl FnMut(&pb::Job),
    ) -> Result<pb::Job, ClientError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let timed_out = || ClientError::Timeout(format!("job {job_id}"));
        loop {
            let request = pb::WatchJobRequest {
                job_id: job_id.to_owned(),
            };
            let mut stream = tokio::time::timeout_at(deadline, self.jobs.watch_job(request))
                .await
                .map_err(|_| timed_out())??
                .into_inner();
            while let Some(message) = tokio::time::timeout_at(deadline, stream.message())
                .await
                .map_err(|_| timed_out())??
            {
                let job = message.job.unwrap_or_default();
                if is_finished(&job) {
                    return Ok(job);
                }
                on_update(&job);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(timed_out());
            }
        }
    }

    /// Downloads an approved export package.
    ///
    /// # Errors
    /// The server's answer.
    pub async fn download(&mut self, export_id: &str) -> Result<Vec<u8>, ClientError> {
        let mut stream = self
            .exports
            .download_export(pb::DownloadExportRequest {
                export_id: export_id.to_owned(),
            })
            .await?
            .into_inner();
        let mut out = Vec::new();
        while let Some(message) = stream.message().await? {
            out.extend_from_slice(&message.chunk);
        }
        Ok(out)
    }

    /// Fetches a product's record batches over Arrow Flight (DoGet, ticket = the export id):
    /// the recipient's copy, its fingerprint in the schema metadata (`shuyu.fingerprint`).
    ///
    /// # Errors
    /// The server's answer (NOT_FOUND unless the caller is the recipient;
    /// FAILED_PRECONDITION when revoked, expired or not approved), or a stream that does not
    /// decode.
    pub async fn fetch_product(
        &mut self,
        export_id: &str,
    ) -> Result<Vec<RecordBatch>, ClientError> {
        let stream = self
            .flight
            .do_get(Ticket {
                ticket: export_id.as_bytes().to_vec().into(),
            })
            .await?
            .into_inner()
            .map_err(|status| arrow_flight::error::FlightError::Tonic(Box::new(status)));
        FlightRecordBatchStream::new_from_flight_data(stream)
            .try_collect()
            .await
            .map_err(|e| match e {
                arrow_flight::error::FlightError::Tonic(status) => ClientError::Status(*status),
                other => ClientError::Flight(other.to_string()),
            })
    }
}

/// A production SQL job under a scenario.
pub fn production_sql(sql: &str, scenario_id: &str) -> pb::SubmitJobRequest {
    pb::SubmitJobRequest {
        sql: sql.to_owned(),
        mode: pb::JobMode::Production as i32,
        scenario_id: scenario_id.to_owned(),
        ..Default::default()
    }
}

/// A lab SQL job.
pub fn lab_sql(sql: &str) -> pb::SubmitJobRequest {
    pb::SubmitJobRequest {
        sql: sql.to_owned(),
        mode: pb::JobMode::Lab as i32,
        ..Default::default()
    }
}

/// Whether a job has reached a final state.
pub fn is_finished(job: &pb::Job) -> bool {
    matches!(
        pb::JobStatus::try_from(job.status),
        Ok(pb::JobStatus::Succeeded | pb::JobStatus::Failed | pb::JobStatus::Cancelled)
    )
}
