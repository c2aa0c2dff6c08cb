//! Catalog service: ingest (stewards), listing and description, masked samples (R14–R16).

use bytes::Bytes;
use serde_json::json;
use shuyu_engine::{
    ColumnSpec, ColumnType, IngestFormat, IngestOptions, TableSpec, validate_columns,
};
use shuyu_policy::{Action, Classification, MaskingRule, Role};
use shuyu_proto::v1 as pb;
use shuyu_proto::v1::catalog_service_server::CatalogService;
use shuyu_vault::{SecretKey, sha256_hex};
use tonic::{Request, Response, Status, Streaming};

use crate::catalog::records::DatasetRecord;
use crate::convert;
use crate::error::{Refusal, Result, ServerError};
use crate::keys::{self, DOMAIN_KEK};
use crate::service::{require_id, require_text};
use crate::state::{Caller, Done};
use crate::store::{self, Audited, Tx};

/// The handler of `CatalogService`: the area's context it serves from.
#[derive(Debug, Clone)]
pub(crate) struct CatalogRpc {
    pub(crate) state: std::sync::Arc<super::Context>,
}

impl CatalogRpc {
    /// The handler over its area's context.
    pub(crate) fn new(state: std::sync::Arc<super::Context>) -> CatalogRpc {
        CatalogRpc { state }
    }
}

/// A dataset name is a SQL identifier engineers type.
pub(crate) fn valid_dataset_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase())
        && name.len() <= 63
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// A validated upload, ready to become a dataset.
pub(crate) struct Upload {
    pub name: String,
    pub description: String,
    pub format: IngestFormat,
    pub columns: Vec<ColumnSpec>,
    pub steward_id: String,
    /// The KEK that wraps the dataset's KEK: the domain KEK for public data, the tenant's
    /// KEK for its imported data (so that terminating the tenant shreds it).
    pub kek_parent: String,
    /// Owner recorded with the KEK; `None`: the dataset itself.
    pub kek_owner: Option<String>,
}

/// Reads the data messages of an upload stream after its header, up to `max` bytes.
pub(crate) async fn read_chunks<M>(
    stream: &mut Streaming<M>,
    max: usize,
    chunk_of: impl Fn(M) -> Option<Vec<u8>>,
) -> Result<Vec<u8>> {
    let broken = |_: Status| ServerError::InvalidArgument("the upload stream broke off".into());
    let mut input = Vec::new();
    while let Some(message) = stream.message().await.map_err(broken)? {
        let Some(chunk) = chunk_of(message) else {
            return Err(ServerError::InvalidArgument(
                "only the first message of an upload may carry a header".into(),
            ));
        };
        if input.len() + chunk.len() > max {
            return Err(Refusal::UploadTooLarge(format!(
                "the upload is larger than the limit of {max} bytes"
            ))
            .into());
        }
        input.extend_from_slice(&chunk);
    }
    Ok(input)
}

pub(crate) fn table_spec(d: &DatasetRecord) -> TableSpec {
    TableSpec {
        name: d.name.clone(),
        dataset_id: d.id.clone(),
        location: d.location.clone(),
        columns: d.columns.clone(),
        privacy_unit: TableSpec::privacy_unit_of(&d.columns),
    }
}

impl CatalogRpc {
    pub(crate) fn parse_columns(&self, columns: &[pb::Column]) -> Result<Vec<ColumnSpec>> {
        if columns.len() > 1000 {
            return Err(ServerError::InvalidArgument(
                "more than 1000 columns".into(),
            ));
        }
        let specs = columns
            .iter()
            .map(|c| {
                let name = c.name.trim().to_owned();
                let bad = |e: String| ServerError::InvalidArgument(format!("column '{name}': {e}"));
                let data_type: ColumnType = c
                    .data_type
                    .parse()
                    .map_err(|e: shuyu_engine::EngineError| bad(e.to_string()))?;
                let classification: Classification = c
                    .classification
                    .parse()
                    .map_err(|e: shuyu_policy::PolicyError| bad(e.to_string()))?;
                let masking = if c.masking.trim().is_empty() {
                    self.state.policy.masking.rule_for(classification).clone()
                } else {
                    c.masking
                        .parse::<MaskingRule>()
                        .map_err(|e: shuyu_policy::PolicyError| bad(e.to_string()))?
                };
                Ok(ColumnSpec {
                    name,
                    data_type,
                    classification,
                    masking,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        validate_columns(&specs)?;
        Ok(specs)
    }

    async fn ingest(
        &self,
        caller: &Caller,
        mut stream: Streaming<pb::IngestDatasetRequest>,
    ) -> Result<Audited<DatasetRecord>> {
        let broken = |_: Status| ServerError::InvalidArgument("the upload stream broke off".into());
        let header = match stream.message().await.map_err(broken)? {
            Some(pb::IngestDatasetRequest {
                part: Some(pb::ingest_dataset_request::Part::Header(header)),
            }) => header,
            _ => {
                return Err(ServerError::InvalidArgument(
                    "the first message of an upload must carry the header".into(),
                ));
            }
        };
        if !valid_dataset_name(&header.name) {
            return Err(ServerError::InvalidArgument(
                "the dataset name must be a lowercase SQL identifier (a-z, 0-9, _; at most 63 characters)".into(),
            ));
        }
        require_text(&header.description, "the description", 2000, false)?;
        let format = match pb::DataFormat::try_from(header.format) {
            Ok(pb::DataFormat::Csv) => IngestFormat::Csv,
            Ok(pb::DataFormat::Parquet) => IngestFormat::Parquet,
            _ => {
                return Err(ServerError::InvalidArgument(
                    "the format must be CSV or Parquet".into(),
                ));
            }
        };
        let columns = self.parse_columns(&header.columns)?;
        if self
            .state
            .store
            .read(|c| crate::catalog::records::dataset_name_taken(c, &header.name))?
        {
            return Err(ServerError::AlreadyExists(format!(
                "a dataset named '{}' already exists",
                header.name
            )));
        }
        let max = self.state.max_ingest_bytes;
        let input = read_chunks(&mut stream, max, |m| match m.part {
            Some(pb::ingest_dataset_request::Part::Chunk(chunk)) => Some(chunk),
            _ => None,
        })
        .await?;
        let upload = Upload {
            name: header.name.clone(),
            description: header.description.clone(),
            format,
            columns,
            steward_id: caller.principal.id.clone(),
            kek_parent: DOMAIN_KEK.to_owned(),
            kek_owner: None,
        };
        self.store_upload(caller, upload, input, |_, _| Ok(()))
            .await
    }

    /// Validates and encrypts an upload into a new dataset, and commits its record, its
    /// KEK (a child of `kek_parent`) and `also` in one audited transaction. On any failure
    /// nothing remains: no file, no key, no record. `also` runs again if the transaction
    /// does (after a conflict on PostgreSQL): it must change nothing outside `tx`.
    pub(crate) async fn store_upload(
        &self,
        caller: &Caller,
        upload: Upload,
        input: Vec<u8>,
        mut also: impl FnMut(&Tx<'_>, &DatasetRecord) -> Result<()>,
    ) -> Result<Audited<DatasetRecord>> {
        let source_sha256 = sha256_hex(&input);
        let id = crate::new_id("ds");
        let location = format!("datasets/{id}/");
        let storage = &self.state.storage;
        let kek_id = keys::dataset_kek(&id);
        let wrapped_kek = self
            .state
            .keys
            .prepare_child_kek(&kek_id, &upload.kek_parent)?;
        let outcome = match self
            .state
            .engine
            .ingest(
                upload.format,
                Bytes::from(input),
                &upload.columns,
                &location,
                &kek_id,
                &IngestOptions::default(),
            )
            .await
        {
            Ok(outcome) => outcome,
            Err(e) => {
                let _ = storage.delete_prefix(&location).await;
                self.state.keys.discard(&kek_id);
                return Err(e.into());
            }
        };
        // The files and their folders reach the disk before the record that names them.
        if let Err(e) = storage.sync(&location).await {
            let _ = storage.delete_prefix(&location).await;
            self.state.keys.discard(&kek_id);
            return Err(e.into());
        }
        let record = DatasetRecord {
            id: id.clone(),
            name: upload.name,
            description: upload.description,
            steward_id: upload.steward_id,
            columns: upload.columns,
            n_rows: outcome.n_rows,
            location: location.clone(),
            kek_id: kek_id.clone(),
            source_sha256: source_sha256.clone(),
            created_at_ms: crate::now_ms(),
            extra_approver_id: None,
        };
        let owner = upload.kek_owner.unwrap_or_else(|| id.clone());
        let committed = self.state.store.commit(
            &caller.entry(
                format!("dataset:{id}"),
                "ok",
                json!({"n_rows": record.n_rows, "source_sha256": source_sha256, "n_columns": record.columns.len()}),
            ),
            |tx| {
                store::insert_kek(tx, &kek_id, &wrapped_kek, &owner, Some(&upload.kek_parent))?;
                crate::catalog::records::insert_dataset(tx, &record)?;
                also(tx, &record)
            },
        );
        match committed {
            Ok(done) => Ok(done.map(|()| record)),
            Err(e) => {
                let _ = storage.delete_prefix(&location).await;
                self.state.keys.discard(&kek_id);
                Err(e)
            }
        }
    }

    /// A dataset the caller may see, or NotFound (missing and not granted look the same).
    pub(crate) fn visible_dataset(&self, caller: &Caller, id: &str) -> Result<DatasetRecord> {
        require_id(id, "dataset_id")?;
        let found = match caller.principal.role {
            Role::Engineer => {
                let tenant = caller.tenant()?;
                self.state
                    .store
                    .read(|c| crate::catalog::records::granted_dataset(c, tenant, id))?
            }
            // Stewards of source agencies do not see tenants' imported data.
            Role::DataSteward => self
                .state
                .store
                .read(|c| crate::catalog::records::dataset(c, id))?
                .filter(|d| {
                    caller.action != Action::SampleDataset || d.steward_id == caller.principal.id
                })
                .filter(|d| {
                    !self
                        .state
                        .store
                        .read(|c| crate::stewardship::records::imported_by(c, &d.id))
                        .is_ok_and(|owner| owner.is_some())
                }),
            _ => self
                .state
                .store
                .read(|c| crate::catalog::records::dataset(c, id))?,
        };
        found.ok_or_else(|| ServerError::NotFound(format!("dataset {id}")))
    }

    fn sample_key(&self, caller: &Caller) -> Result<SecretKey> {
        match caller.principal.role {
            Role::Engineer => {
                let tenant_id = caller.tenant()?;
                let tenant = self
                    .state
                    .store
                    .read(|c| crate::admin::records::tenant(c, tenant_id))?
                    .ok_or_else(|| ServerError::internal("the caller's tenant is missing"))?;
                keys::pseudonym_key(&self.state.keys, &tenant.pseudonym_kek_id)
            }
            _ => Ok(self
                .state
                .keys
                .master()
                .key()
                .derive("shuyu-steward-pseudonym:v1")),
        }
    }
}

#[tonic::async_trait]
impl CatalogService for CatalogRpc {
    async fn ingest_dataset(
        &self,
        request: Request<Streaming<pb::IngestDatasetRequest>>,
    ) -> Result<Response<pb::IngestDatasetResponse>, Status> {
        let no_target = |_: &Streaming<pb::IngestDatasetRequest>| String::new();
        let record =
            self.state
                .calls
                .call(
                    request,
                    Action::IngestDataset,
                    no_target,
                    |caller, stream| async move {
                        Ok(Done::Audited(self.ingest(&caller, stream).await?))
                    },
                )
                .await?;
        Ok(Response::new(pb::IngestDatasetResponse {
            dataset: Some(convert::dataset(&record)),
        }))
    }

    async fn list_datasets(
        &self,
        request: Request<pb::ListDatasetsRequest>,
    ) -> Result<Response<pb::ListDatasetsResponse>, Status> {
        let no_target = |_: &pb::ListDatasetsRequest| String::new();
        let response = self
            .state
            .calls
            .call(
                request,
                Action::ListDatasets,
                no_target,
                |caller, _| async move {
                    let datasets = match caller.principal.role {
                        Role::Engineer => {
                            let tenant = caller.tenant()?;
                            self.state
                                .store
                                .read(|c| crate::catalog::records::granted_datasets(c, tenant))?
                        }
                        Role::DataSteward => {
                            let imported = self
                                .state
                                .store
                                .read(crate::stewardship::records::imported_dataset_ids)?;
                            let mut all =
                                self.state.store.read(crate::catalog::records::datasets)?;
                            all.retain(|d| !imported.contains(&d.id));
                            all
                        }
                        _ => self.state.store.read(crate::catalog::records::datasets)?,
                    };
                    let n = datasets.len();
                    Ok(Done::Record(
                        pb::ListDatasetsResponse {
                            datasets: datasets.iter().map(convert::dataset).collect(),
                        },
                        json!({"n": n}),
                    ))
                },
            )
            .await?;
        Ok(Response::new(response))
    }

    async fn describe_dataset(
        &self,
        request: Request<pb::DescribeDatasetRequest>,
    ) -> Result<Response<pb::DescribeDatasetResponse>, Status> {
        let target = |req: &pb::DescribeDatasetRequest| format!("dataset:{}", req.dataset_id);
        let response = self
            .state
            .calls
            .call(
                request,
                Action::DescribeDataset,
                target,
                |caller, req| async move {
                    let d = self.visible_dataset(&caller, &req.dataset_id)?;
                    Ok(Done::Record(
                        pb::DescribeDatasetResponse {
                            dataset: Some(convert::dataset(&d)),
                        },
                        json!({}),
                    ))
                },
            )
            .await?;
        Ok(Response::new(response))
    }

    async fn sample_dataset(
        &self,
        request: Request<pb::SampleDatasetRequest>,
    ) -> Result<Response<pb::SampleDatasetResponse>, Status> {
        let target = |req: &pb::SampleDatasetRequest| format!("dataset:{}", req.dataset_id);
        let response = self
            .state
            .calls
            .call(
                request,
                Action::SampleDataset,
                target,
                |caller, req| async move {
                    let dataset = self.visible_dataset(&caller, &req.dataset_id)?;
                    // R25: an engineer sees data, even masked, only under an authorization in force.
                    if caller.principal.role == Role::Engineer {
                        crate::governance::records::require_in_force(
                            &self.state.store,
                            caller.tenant()?,
                        )?;
                    }
                    let policy_rows = self.state.policy.sample.rows;
                    let n = if req.n_rows == 0 {
                        policy_rows
                    } else {
                        (req.n_rows as usize).min(policy_rows)
                    };
                    let key = self.sample_key(&caller)?;
                    let viewer = caller
                        .principal
                        .tenant_id
                        .clone()
                        .unwrap_or_else(|| caller.principal.id.clone());
                    let seed_hash = sha256_hex(format!("{viewer}:{}", dataset.id).as_bytes());
                    let seed = u64::from_str_radix(&seed_hash[..16], 16).unwrap_or(0);
                    let sample = self
                        .state
                        .engine
                        .sample(&table_spec(&dataset), n, &key, seed)
                        .await?;
                    let n_rows = sample.rows.len();
                    Ok(Done::Record(
                        pb::SampleDatasetResponse {
                            sample: Some(convert::masked_table(&sample)),
                        },
                        json!({"n_rows": n_rows}),
                    ))
                },
            )
            .await?;
        Ok(Response::new(response))
    }
}
