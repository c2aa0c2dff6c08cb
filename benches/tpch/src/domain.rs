//! A fresh domain served in-process on a loopback port, as `shuyu quickstart` builds one:
//! `domain::init`, `serve`, then an admin registers a tenant, a steward and an engineer
//! through the public API (keys generated here, only CSRs travel), and the steward's datasets
//! are granted to the tenant.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, ensure};
use shuyu_client::{Client, Credentials, v1 as pb};
use shuyu_server::{ServerConfig, ServerHandle};

/// The repository's default policy, the base of the benchmark policy.
const DEFAULT_POLICY: &str = include_str!("../../../policies/default.toml");

/// How to set up the domain.
#[derive(Debug, Clone)]
pub struct DomainOptions {
    /// Largest accepted ingest, bytes.
    pub max_ingest_bytes: usize,
    /// The `shuyu` binary run as `shuyu worker` (jobs only).
    pub worker_program: Option<PathBuf>,
    /// The workers' glibc malloc tunables (`worker.malloc_tunables`); `None` keeps the
    /// server's default.
    pub worker_malloc: Option<String>,
    /// Memory pool of one job; `None` keeps the default policy unchanged.
    pub memory_limit_bytes: Option<u64>,
}

/// A running domain and its principals' clients.
#[derive(Debug)]
pub struct Domain {
    /// The data dir.
    pub data_dir: PathBuf,
    /// The server.
    server: ServerHandle,
    /// The platform admin.
    pub admin: Client,
    /// A data steward (ingests).
    pub steward: Client,
    /// An engineer of the tenant (jobs, samples).
    pub engineer: Client,
    /// The tenant.
    pub tenant_id: String,
    /// The tenant's authorization (datasets join its scope as they are granted).
    pub authorization_id: String,
    /// The server's address, `https://localhost:<port>`.
    addr: String,
    /// Worker processes the server runs at once, domain-wide (its `max_running_jobs`).
    pub max_running_jobs: usize,
}

/// A further tenant of the domain ([`Domain::add_tenant`]) and its engineer.
#[derive(Debug, Clone)]
pub struct Tenant {
    /// Its engineer (jobs).
    pub engineer: Client,
    /// The tenant.
    pub tenant_id: String,
    /// Its authorization (with an emergency plan; datasets join its scope as they are
    /// granted).
    pub authorization_id: String,
}

/// The default policy text with a larger job memory pool and a version marking the change
/// (every other value, including `max_result_rows`, as in `policies/default.toml`).
///
/// # Errors
/// If the default policy no longer has the lines this rewrites.
pub fn bench_policy(memory_limit_bytes: u64) -> Result<String> {
    let mut found_version = false;
    let mut found_memory = false;
    let lines: Vec<String> = DEFAULT_POLICY
        .lines()
        .map(|line| {
            if let Some(version) = line.strip_prefix("version = ") {
                found_version = true;
                format!(
                    "version = \"{}+bench-memory-{memory_limit_bytes}\"",
                    version.trim().trim_matches('"')
                )
            } else if line.starts_with("memory_limit_bytes = ") {
                found_memory = true;
                format!("memory_limit_bytes = {memory_limit_bytes}")
            } else {
                line.to_owned()
            }
        })
        .collect();
    anyhow::ensure!(
        found_version && found_memory,
        "policies/default.toml no longer has `version` and `memory_limit_bytes` lines"
    );
    Ok(lines.join("\n") + "\n")
}

async fn connect(addr: &str, credentials: &Credentials) -> Result<Client> {
    Client::connect(addr, credentials)
        .await
        .with_context(|| format!("connecting to {addr}"))
}

/// A valid synthetic resident ID number for the `seq`-th person of the benchmark domain.
fn bench_id_number(seq: u32) -> Result<String> {
    let first17 = format!("33020319850101{seq:03}");
    let check = shuyu_policy::id_number_check_char(&first17).context("17 digits")?;
    Ok(format!("{first17}{check}"))
}

/// Registers a principal with its qualification (R8, R9) and issues its certificate;
/// returns its credentials.
async fn create_principal(
    admin: &mut Client,
    name: &str,
    role: pb::Role,
    tenant_id: Option<&str>,
    seq: u32,
) -> Result<Credentials> {
    let principal = admin
        .admin
        .create_principal(pb::CreatePrincipalRequest {
            real_name: name.to_owned(),
            organisation: "Shuyu benchmark".to_owned(),
            role: role as i32,
            tenant_id: tenant_id.unwrap_or_default().to_owned(),
        })
        .await?
        .into_inner()
        .principal
        .unwrap_or_default();
    let now = chrono::Utc::now().timestamp_millis();
    admin
        .governance
        .qualify_principal(pb::QualifyPrincipalRequest {
            principal_id: principal.id.clone(),
            id_number: bench_id_number(seq)?,
            training_passed_ms: now,
            training_valid_until_ms: now + 365 * 86_400_000,
            nda_signed_ms: now,
            nda_valid_until_ms: now + 365 * 86_400_000,
        })
        .await
        .context("recording the qualification")?;
    let (key_pem, csr_pem) = shuyu_client::new_key_and_csr(&principal.id)?;
    let issued = admin
        .admin
        .issue_certificate(pb::IssueCertificateRequest {
            principal_id: principal.id.clone(),
            csr_pem,
            validity_days: 0,
        })
        .await?
        .into_inner();
    Ok(Credentials {
        ca_pem: issued.ca_certificate_pem,
        cert_pem: issued.certificate_pem,
        key_pem: key_pem.to_string(),
    })
}

/// Records an authorization for `tenant_id` (no datasets yet, commercial scenarios, a year)
/// with an emergency plan (R25, R32); returns its id.
async fn create_authorization(admin: &mut Client, tenant_id: &str) -> Result<String> {
    let now = chrono::Utc::now().timestamp_millis();
    let authorization = admin
        .governance
        .create_authorization(pb::CreateAuthorizationRequest {
            tenant_id: tenant_id.to_owned(),
            dataset_ids: Vec::new(),
            categories: vec![pb::ScenarioCategory::Commercial as i32],
            valid_from_ms: 0,
            valid_until_ms: now + 365 * 86_400_000,
            pricing_terms: "benchmark".into(),
        })
        .await
        .context("recording the authorization")?
        .into_inner()
        .authorization
        .unwrap_or_default();
    admin
        .governance
        .set_emergency_plan(pb::SetEmergencyPlanRequest {
            authorization_id: authorization.id.clone(),
            summary: "benchmark domain".into(),
            contact: "the benchmark operator".into(),
            actions: vec!["stop the benchmark".into()],
        })
        .await
        .context("recording the emergency plan")?;
    Ok(authorization.id)
}

impl Domain {
    /// Creates a domain under `root` (which must be empty or absent) and serves it.
    ///
    /// # Errors
    /// If the domain cannot be created, served or populated with principals.
    pub async fn start(root: &Path, options: &DomainOptions) -> Result<Domain> {
        let data_dir = root.join("domain");
        let admin_dir = root.join("credentials").join("admin");
        shuyu_server::domain::init(
            &data_dir,
            &shuyu_server::domain::MetadataConfig::default(),
            "Bench Admin",
            "Shuyu benchmark",
            &shuyu_server::domain::AdminQualification {
                id_number: bench_id_number(0)?,
                training_days: 365,
                nda_days: 365,
            },
            &admin_dir,
        )?;
        let mut config = ServerConfig::new(data_dir.clone());
        config.listen = "127.0.0.1:0".parse()?;
        config.max_ingest_bytes = options.max_ingest_bytes;
        config.worker.program = options.worker_program.clone();
        if let Some(tunables) = &options.worker_malloc {
            config.worker.malloc_tunables = tunables.clone();
        }
        if let Some(limit) = options.memory_limit_bytes {
            let policy_file = root.join("policy.toml");
            std::fs::write(&policy_file, bench_policy(limit)?)?;
            config.policy_file = Some(policy_file);
        }
        let max_running_jobs = config.max_running_jobs;
        let server = shuyu_server::serve(config).await?;
        let addr = format!("https://localhost:{}", server.addr.port());

        let mut admin = connect(&addr, &Credentials::from_dir(&admin_dir)?).await?;
        let tenant = admin
            .admin
            .create_tenant(pb::CreateTenantRequest {
                name: "bench-tenant".into(),
            })
            .await?
            .into_inner()
            .tenant
            .unwrap_or_default();
        // R25, R32: the tenant works under an authorization with an emergency plan.
        let authorization_id = create_authorization(&mut admin, &tenant.id).await?;
        let steward_creds =
            create_principal(&mut admin, "Bench Steward", pb::Role::Steward, None, 1).await?;
        let engineer_creds = create_principal(
            &mut admin,
            "Bench Engineer",
            pb::Role::Engineer,
            Some(&tenant.id),
            2,
        )
        .await?;
        let steward = connect(&addr, &steward_creds).await?;
        let engineer = connect(&addr, &engineer_creds).await?;
        Ok(Domain {
            data_dir,
            server,
            admin,
            steward,
            engineer,
            tenant_id: tenant.id,
            authorization_id,
            addr,
            max_running_jobs,
        })
    }

    /// Ingests a dataset as the steward and grants it to the tenant.
    ///
    /// # Errors
    /// The server's answer.
    pub async fn ingest_and_grant(
        &mut self,
        header: pb::IngestHeader,
        data: Vec<u8>,
    ) -> Result<pb::Dataset> {
        let name = header.name.clone();
        let dataset = self
            .steward
            .ingest(header, data)
            .await
            .with_context(|| format!("ingesting {name}"))?;
        let (tenant_id, authorization_id) = (self.tenant_id.clone(), self.authorization_id.clone());
        self.grant(&dataset, &tenant_id, &authorization_id).await?;
        Ok(dataset)
    }

    /// Grants `dataset` to a tenant and adds it to the scope of the tenant's authorization.
    ///
    /// # Errors
    /// The server's answer.
    pub async fn grant(
        &mut self,
        dataset: &pb::Dataset,
        tenant_id: &str,
        authorization_id: &str,
    ) -> Result<()> {
        let name = &dataset.name;
        self.admin
            .admin
            .grant_dataset(pb::GrantDatasetRequest {
                dataset_id: dataset.id.clone(),
                tenant_id: tenant_id.to_owned(),
            })
            .await
            .with_context(|| format!("granting {name}"))?;
        self.admin
            .governance
            .amend_authorization_scope(pb::AmendAuthorizationScopeRequest {
                authorization_id: authorization_id.to_owned(),
                add_dataset_ids: vec![dataset.id.clone()],
                add_categories: Vec::new(),
            })
            .await
            .with_context(|| format!("adding {name} to the authorization's scope"))?;
        Ok(())
    }

    /// Registers a further tenant `name` with an authorization (and emergency plan) and an
    /// engineer whose qualification uses `bench_id_number(seq)`: `seq` must differ from every
    /// other principal's (the admin, steward and first engineer use 0, 1 and 2). No dataset is
    /// granted yet ([`Domain::grant`]).
    ///
    /// # Errors
    /// The server's answer.
    pub async fn add_tenant(&mut self, name: &str, seq: u32) -> Result<Tenant> {
        ensure!(seq > 2, "ID sequence numbers 0 to 2 are taken");
        let tenant = self
            .admin
            .admin
            .create_tenant(pb::CreateTenantRequest { name: name.into() })
            .await
            .with_context(|| format!("creating tenant {name}"))?
            .into_inner()
            .tenant
            .unwrap_or_default();
        let authorization_id = create_authorization(&mut self.admin, &tenant.id).await?;
        let credentials = create_principal(
            &mut self.admin,
            &format!("Bench Engineer {seq}"),
            pb::Role::Engineer,
            Some(&tenant.id),
            seq,
        )
        .await?;
        let engineer = connect(&self.addr, &credentials).await?;
        Ok(Tenant {
            engineer,
            tenant_id: tenant.id,
            authorization_id,
        })
    }

    /// Registers an auditor (who reads every tenant's jobs with their exact usage, R35) whose
    /// qualification uses `bench_id_number(seq)`, distinct as for [`Domain::add_tenant`];
    /// returns its client.
    ///
    /// # Errors
    /// The server's answer.
    pub async fn add_auditor(&mut self, seq: u32) -> Result<Client> {
        ensure!(seq > 2, "ID sequence numbers 0 to 2 are taken");
        let credentials = create_principal(
            &mut self.admin,
            &format!("Bench Auditor {seq}"),
            pb::Role::Auditor,
            None,
            seq,
        )
        .await?;
        connect(&self.addr, &credentials).await
    }

    /// Applies, as the engineer, for a scenario listing every column of `datasets`, approved
    /// by the steward and the admin: production jobs run under it. Returns its id.
    ///
    /// # Errors
    /// The server's answer.
    pub async fn approved_scenario(&mut self, datasets: &[&pb::Dataset]) -> Result<String> {
        let mut engineer = self.engineer.clone();
        self.approved_scenario_for(&mut engineer, datasets).await
    }

    /// [`Domain::approved_scenario`] applied for by `engineer` (of any tenant holding the
    /// datasets).
    ///
    /// # Errors
    /// The server's answer.
    pub async fn approved_scenario_for(
        &mut self,
        engineer: &mut Client,
        datasets: &[&pb::Dataset],
    ) -> Result<String> {
        let now = chrono::Utc::now().timestamp_millis();
        let scenario = engineer
            .scenarios
            .apply_scenario(pb::ApplyScenarioRequest {
                name: "benchmark".into(),
                purpose: "TPC-H benchmark".into(),
                data_list: datasets
                    .iter()
                    .map(|d| pb::DataListItem {
                        dataset_id: d.id.clone(),
                        columns: d.columns.iter().map(|c| c.name.clone()).collect(),
                    })
                    .collect(),
                valid_from_ms: now,
                valid_until_ms: now + 30 * 86_400_000,
                category: pb::ScenarioCategory::Commercial as i32,
            })
            .await
            .context("applying for the scenario")?
            .into_inner()
            .scenario
            .context("no scenario")?;
        for approver in [&mut self.steward, &mut self.admin] {
            approver
                .scenarios
                .decide_scenario(pb::DecideScenarioRequest {
                    scenario_id: scenario.id.clone(),
                    approve: true,
                    comment: String::new(),
                })
                .await
                .context("approving the scenario")?;
        }
        Ok(scenario.id)
    }

    /// Stops the server.
    ///
    /// # Errors
    /// If the transport failed.
    pub async fn shutdown(self) -> Result<()> {
        self.server.shutdown().await?;
        Ok(())
    }
}

/// A column declaration for an ingest header.
pub fn column(name: &str, data_type: &str, classification: &str, masking: &str) -> pb::Column {
    pb::Column {
        name: name.to_owned(),
        data_type: data_type.to_owned(),
        classification: classification.to_owned(),
        masking: masking.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bench_policy_changes_only_memory_and_version() {
        let text = bench_policy(4 << 30).expect("rewrites");
        let policy = shuyu_policy::Policy::from_toml_str(&text).expect("valid policy");
        let default = shuyu_policy::Policy::from_toml_str(DEFAULT_POLICY).expect("valid");
        assert_eq!(policy.limits.memory_limit_bytes, 4 << 30);
        assert_eq!(
            policy.limits.max_result_rows,
            default.limits.max_result_rows
        );
        assert_eq!(policy.limits.timeout_secs, default.limits.timeout_secs);
        assert_ne!(policy.version, default.version);
    }
}
