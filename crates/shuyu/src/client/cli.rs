//! The client commands of every role but the governance, lifecycle, oversight and
//! stewardship ones: each acts as the principal whose credentials directory `--as` names.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use shuyu_client::{Client, v1 as pb};

use super::{Conn, render};

#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Show who the server thinks you are.
    Whoami {},
    /// Tenants (operating units): admins.
    #[command(subcommand)]
    Tenant(TenantCommand),
    /// Principals (registered people): admins.
    #[command(subcommand)]
    Principal(PrincipalCommand),
    /// Datasets: stewards ingest, admins grant, engineers browse and sample.
    #[command(subcommand)]
    Dataset(DatasetCommand),
    /// Jobs: engineers, in the data lab (masked samples) or in production (a scenario).
    #[command(subcommand)]
    Job(JobCommand),
    /// Scenarios (R11, R12): engineers apply, stewards and admins approve.
    #[command(subcommand)]
    Scenario(ScenarioCommand),
    /// Data products (approved exports for one recipient): recipients, engineers, reviewers.
    #[command(subcommand)]
    Product(ProductCommand),
    /// Metered resource use per tenant (R6): engineers see their tenant, admins and
    /// auditors every tenant.
    Usage {
        /// Only this tenant (admins, auditors).
        #[arg(long)]
        tenant: Option<String>,
        /// Start of the period, YYYY-MM-DD (UTC); default: this month.
        #[arg(long)]
        from: Option<String>,
        /// End of the period (exclusive), YYYY-MM-DD (UTC).
        #[arg(long)]
        to: Option<String>,
    },
    /// Differential-privacy budgets per dataset (engineers: their tenant's).
    #[command(subcommand)]
    Budget(BudgetCommand),
    /// Imports of your tenant's own data (R17): engineers apply and upload, admins decide.
    #[command(subcommand)]
    Import(super::stewardship::ImportCommand),
    /// Data-quality tickets (R18): engineers file, the dataset's steward answers by the
    /// deadline.
    #[command(subcommand)]
    Quality(super::stewardship::QualityCommand),
    /// Risk stops (R19): engineers and stewards halt a dataset's or scenario's jobs at once;
    /// admins lift them.
    #[command(subcommand)]
    RiskStop(super::stewardship::RiskStopCommand),
    /// Alerts of the monitor (R30): admins and auditors list, admins acknowledge and scan.
    #[command(subcommand)]
    Alerts(super::oversight::AlertsCommand),
    /// Operation reports and public disclosure summaries (R34, R36): admins and auditors.
    #[command(subcommand)]
    Report(super::oversight::ReportCommand),
    /// Authorization agreements of tenants (R25): admins manage, auditors and the tenant's
    /// engineers read.
    #[command(subcommand)]
    Authorization(super::governance::AuthorizationCommand),
    /// Emergency plans of authorizations (R32): admins set, auditors and engineers read.
    #[command(subcommand, name = "emergency-plan")]
    EmergencyPlan(super::governance::EmergencyPlanCommand),
    /// Your notifications, newest first (renewal windows, risk stops, alerts); auditors
    /// see all of them.
    Notifications {
        /// Only those with a larger id than this (the last one you saw).
        #[arg(long, default_value_t = 0)]
        after: i64,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
}

#[derive(Debug, Subcommand)]
pub enum BudgetCommand {
    /// Budgets of a tenant over each dataset granted to it: total and spent epsilon.
    List {
        /// The tenant (admins, auditors).
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Set a tenant's total epsilon over a dataset's content (admins; never below spent).
    Set {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        dataset: String,
        #[arg(long)]
        epsilon: f64,
    },
}

/// `COLUMN:LOWER:UPPER`, a DP clamp of one person's total.
fn parse_bound(text: &str) -> Result<pb::DpBound, String> {
    let parts: Vec<&str> = text.rsplitn(3, ':').collect();
    let [upper, lower, column] = parts.as_slice() else {
        return Err("expected COLUMN:LOWER:UPPER".into());
    };
    let number = |s: &str| {
        s.trim()
            .parse::<f64>()
            .map_err(|_| format!("'{s}' is not a number"))
    };
    Ok(pb::DpBound {
        column: (*column).to_owned(),
        lower: number(lower)?,
        upper: number(upper)?,
    })
}

#[derive(Debug, Subcommand)]
pub enum TenantCommand {
    /// Create a tenant.
    Create { name: String },
    /// List tenants.
    List {},
    /// Open, extend or end a tenant's data-lab access (R20: at most 183 days ahead).
    LabAccess {
        id: String,
        /// Days from now; 0 ends lab access now.
        #[arg(long)]
        days: u32,
    },
    #[command(flatten)]
    Lifecycle(super::lifecycle::LifecycleCommand),
}

#[derive(Debug, Subcommand)]
pub enum ScenarioCommand {
    /// Apply for a scenario: a purpose and a data list of datasets and columns (engineers).
    Apply {
        #[arg(long)]
        name: String,
        #[arg(long)]
        purpose: String,
        /// A data-list entry, repeated: DATASET_ID:col1,col2,…
        #[arg(long = "data", required = true)]
        data: Vec<String>,
        /// Validity in days from now.
        #[arg(long, default_value_t = 365)]
        days: u32,
        /// public_governance or public_welfare (products free) or commercial (priced).
        #[arg(long, default_value = "commercial")]
        category: String,
    },
    /// List the scenarios you may see.
    List {},
    /// Show a scenario with its approvals.
    Show { id: String },
    /// Approve as a required approver (a listed dataset's steward or extra approver, an
    /// admin).
    Approve {
        id: String,
        #[arg(long, default_value = "")]
        comment: String,
    },
    /// Reject, with the reason.
    Reject {
        id: String,
        #[arg(long)]
        comment: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum PrincipalCommand {
    /// Register a person and issue their certificate (the key is generated locally).
    Create {
        /// Real name.
        #[arg(long)]
        name: String,
        /// Organisation.
        #[arg(long)]
        org: String,
        /// admin, steward, engineer, reviewer, auditor or recipient (an application unit
        /// receiving data products; `--org` names it).
        #[arg(long)]
        role: String,
        /// Tenant id: required for engineers; optional for reviewers, who then never review
        /// that tenant's exports.
        #[arg(long)]
        tenant: Option<String>,
        /// Where to write the new principal's credentials.
        #[arg(long)]
        out: PathBuf,
    },
    /// List principals.
    List {},
    /// Qualification (R8, R9) and certificate revocation: admins.
    #[command(flatten)]
    Governance(super::governance::PrincipalGovernanceCommand),
}

#[derive(Debug, Subcommand)]
pub enum DatasetCommand {
    /// Ingest a CSV or Parquet file (stewards).
    Ingest {
        /// Dataset name (a lowercase SQL identifier).
        #[arg(long)]
        name: String,
        /// The file.
        #[arg(long)]
        file: PathBuf,
        /// csv or parquet.
        #[arg(long, default_value = "csv")]
        format: String,
        /// Column declaration, repeated in file order: NAME:TYPE:CLASSIFICATION[:MASKING],
        /// e.g. `id_number:string:direct_identifier:pseudonym`.
        #[arg(long = "column", required = true)]
        columns: Vec<String>,
        /// Description.
        #[arg(long, default_value = "")]
        description: String,
    },
    /// List visible datasets.
    List {},
    /// Show a dataset's schema and classifications.
    Show { id: String },
    /// A masked sample of server-chosen rows.
    Sample {
        id: String,
        #[arg(long, default_value_t = 0)]
        rows: u32,
    },
    /// Grant a dataset to a tenant (admins).
    Grant {
        id: String,
        #[arg(long)]
        tenant: String,
    },
    /// Require one more approver on every new scenario listing this dataset (R12, admins);
    /// `--principal ""` clears it.
    Approver {
        id: String,
        #[arg(long)]
        principal: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum JobCommand {
    /// Submit a job and wait for it: in the lab (`--lab`: masked samples of your catalog,
    /// results shown directly) or in production (`--scenario`: the raw data of the scenario's
    /// data list, result staged for the export gate, masked preview).
    Submit {
        /// SQL text.
        #[arg(long, required_unless_present = "plan", conflicts_with = "plan")]
        sql: Option<String>,
        /// A Substrait plan file (protobuf bytes), e.g. from datafusion-python.
        #[arg(long)]
        plan: Option<PathBuf>,
        /// Run in the data lab.
        #[arg(long, conflicts_with = "scenario")]
        lab: bool,
        /// The approved scenario a production job runs under.
        #[arg(long, required_unless_present = "lab")]
        scenario: Option<String>,
        /// Differential-privacy mode: the job's epsilon, spent from the tenant's budget over
        /// the dataset it reads (one aggregate of count, sum or avg over one dataset).
        #[arg(long)]
        dp_epsilon: Option<f64>,
        /// DP clamp of one person's total of a summed or averaged column,
        /// `COLUMN:LOWER:UPPER` (repeat per column).
        #[arg(long = "dp-bound", value_parser = parse_bound)]
        dp_bounds: Vec<pb::DpBound>,
        /// DP: most groups one person contributes to (default 1).
        #[arg(long, default_value_t = 1)]
        dp_max_groups: u32,
        /// DP: most rows one person contributes to a count (default 1).
        #[arg(long, default_value_t = 1)]
        dp_max_rows: u32,
        /// Return at once instead of waiting.
        #[arg(long)]
        no_wait: bool,
    },
    /// Run a succeeded lab job's exact query in production under a scenario (same query
    /// hash), and wait for it.
    Promote {
        id: String,
        #[arg(long)]
        scenario: String,
    },
    /// Show a job.
    Show { id: String },
    /// List your tenant's jobs (auditors: every tenant's, or one with --tenant).
    List {
        #[arg(long, default_value = "")]
        tenant: String,
    },
    /// Cancel a queued or running job (its worker process is stopped).
    Cancel { id: String },
}

#[derive(Debug, Subcommand)]
pub enum ExportClientCommand {
    /// Ask to export a job's result as a data product for one recipient (engineers).
    Request {
        /// The job (or --job).
        #[arg(value_name = "JOB", required_unless_present = "job_flag")]
        job: Option<String>,
        #[arg(long = "job", value_name = "JOB", conflicts_with = "job")]
        job_flag: Option<String>,
        /// The recipient principal the product is for.
        #[arg(long)]
        recipient: String,
        /// What the recipient may use it for (R23).
        #[arg(long = "use")]
        permitted_use: String,
        /// Days the product is usable after approval (default 90; at most 365 and what the
        /// scenario has left).
        #[arg(long)]
        expires_days: Option<u32>,
        /// Why it is exported (default: the permitted use).
        #[arg(long)]
        purpose: Option<String>,
        /// parquet or csv.
        #[arg(long, default_value = "parquet")]
        format: String,
    },
    /// Which product a leaked file (Parquet or CSV) was copied from (admins, auditors).
    Trace { file: PathBuf },
    /// Show an export: status, approvals against the quorum, history, and the votes and
    /// comments you may see.
    Show { id: String },
    /// Your tenant's exports (engineers) or the review queue (reviewers: exports in review,
    /// except your own tenant's).
    List {},
    /// Everything a reviewer needs: the query, lineage, checks with evidence, the full
    /// result, and the hashes a vote binds to.
    Review { id: String },
    /// Vote on an export in review (reviewers independent of the requesting tenant; once).
    /// One reject or return ends the review; the policy's quorum of approvals approves it.
    #[command(group(clap::ArgGroup::new("decision").required(true).multiple(false)))]
    Vote {
        id: String,
        /// Approve the export.
        #[arg(long, group = "decision")]
        approve: bool,
        /// Reject it (needs --comment).
        #[arg(long, group = "decision")]
        reject: bool,
        /// Return it for changes (needs --comment): the engineer revises the job and
        /// requests a new export.
        #[arg(long = "return", group = "decision")]
        return_: bool,
        /// Shared comment: the requesting tenant reads it once the review has ended.
        #[arg(long, default_value = "")]
        comment: String,
        /// Private note: only reviewers read it.
        #[arg(long, default_value = "")]
        private_note: String,
    },
    /// Comment on an export: reviewers shared or private, the requesting tenant shared.
    Comment {
        id: String,
        #[arg(long)]
        text: String,
        /// Only reviewers read it (reviewers only).
        #[arg(long)]
        private: bool,
    },
    /// Withdraw an approved export: its package can no longer be downloaded (reviewers
    /// independent of the requesting tenant, admins).
    Revoke {
        id: String,
        #[arg(long)]
        reason: String,
    },
    /// Download an approved, unexpired product's package (its recipient only).
    Download {
        id: String,
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum ProductCommand {
    /// Products: a recipient's own, an engineer's tenant's, or (reviewers) other tenants'.
    List {},
}

#[derive(Debug, Subcommand)]
pub enum AuditClientCommand {
    /// Print audit records (auditors).
    Tail {
        /// Records after this sequence number.
        #[arg(long, default_value_t = 0)]
        after: u64,
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Ask the server to verify its audit chain (auditors).
    Check {},
    /// Signed checkpoints, proofs and retention.
    #[command(flatten)]
    Oversight(super::oversight::AuditOversightCommand),
}

pub fn parse_role(text: &str) -> Result<pb::Role> {
    Ok(match text {
        "admin" => pb::Role::Admin,
        "steward" => pb::Role::Steward,
        "engineer" => pb::Role::Engineer,
        "reviewer" => pb::Role::Reviewer,
        "auditor" => pb::Role::Auditor,
        "recipient" => pb::Role::Recipient,
        other => bail!(
            "unknown role '{other}': admin, steward, engineer, reviewer, auditor or recipient"
        ),
    })
}

pub fn parse_column(spec: &str) -> Result<pb::Column> {
    let parts: Vec<&str> = spec.splitn(4, ':').collect();
    if parts.len() < 3 {
        bail!("column '{spec}' must be NAME:TYPE:CLASSIFICATION[:MASKING]");
    }
    Ok(pb::Column {
        name: parts[0].to_owned(),
        data_type: parts[1].to_owned(),
        classification: parts[2].to_owned(),
        masking: parts.get(3).copied().unwrap_or_default().to_owned(),
    })
}

pub(crate) fn format_from(text: &str) -> Result<pb::DataFormat> {
    Ok(match text {
        "csv" => pb::DataFormat::Csv,
        "parquet" => pb::DataFormat::Parquet,
        other => bail!("unknown format '{other}': csv or parquet"),
    })
}

/// Registers a principal, generates its key locally, has the CA sign it, and writes the
/// credentials directory.
pub async fn create_principal(
    client: &mut Client,
    name: &str,
    org: &str,
    role: pb::Role,
    tenant: Option<&str>,
    out: &std::path::Path,
) -> Result<pb::Principal> {
    let principal = client
        .admin
        .create_principal(pb::CreatePrincipalRequest {
            real_name: name.to_owned(),
            organisation: org.to_owned(),
            role: role as i32,
            tenant_id: tenant.unwrap_or_default().to_owned(),
        })
        .await?
        .into_inner()
        .principal
        .unwrap_or_default();
    let (key_pem, csr_pem) = shuyu_client::new_key_and_csr(&principal.id)?;
    let issued = client
        .admin
        .issue_certificate(pb::IssueCertificateRequest {
            principal_id: principal.id.clone(),
            csr_pem,
            validity_days: 0,
        })
        .await?
        .into_inner();
    shuyu_client::write_credentials(
        out,
        &issued.ca_certificate_pem,
        &issued.certificate_pem,
        &key_pem,
    )?;
    Ok(principal)
}

/// Waits for a submitted job (unless `no_wait`) with a progress bar, and prints it.
async fn finish_job(client: &mut Client, submitted: pb::Job, no_wait: bool) -> Result<ExitCode> {
    let job = if no_wait {
        submitted
    } else {
        let bar = render::JobProgressBar::new(&submitted.id);
        let done = client
            .wait_job_with(&submitted.id, Duration::from_secs(7 * 24 * 3600), |job| {
                bar.update(job)
            })
            .await;
        bar.finish();
        done?
    };
    render::print_job(&job);
    if job.status != pb::JobStatus::Succeeded as i32 && !no_wait {
        return Ok(ExitCode::from(3));
    }
    Ok(ExitCode::SUCCESS)
}

/// Parses `DATASET_ID:col1,col2`.
fn parse_data_item(text: &str) -> Result<pb::DataListItem> {
    let Some((dataset, columns)) = text.split_once(':') else {
        bail!("--data must be DATASET_ID:col1,col2,… (got {text:?})");
    };
    let columns: Vec<String> = columns
        .split(',')
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(str::to_owned)
        .collect();
    if columns.is_empty() {
        bail!("--data {text:?} lists no columns");
    }
    Ok(pb::DataListItem {
        dataset_id: dataset.trim().to_owned(),
        columns,
    })
}

async fn run_scenario(command: ScenarioCommand, conn: &Conn) -> Result<()> {
    match command {
        ScenarioCommand::Apply {
            name,
            purpose,
            data,
            days,
            category,
        } => {
            let category = parse_category(&category)?;
            let data_list = data
                .iter()
                .map(|d| parse_data_item(d))
                .collect::<Result<Vec<_>>>()?;
            let now = chrono::Utc::now().timestamp_millis();
            let scenario = conn
                .connect()
                .await?
                .scenarios
                .apply_scenario(pb::ApplyScenarioRequest {
                    name,
                    purpose,
                    data_list,
                    valid_from_ms: now,
                    valid_until_ms: now + i64::from(days) * 86_400_000,
                    category: category as i32,
                })
                .await?
                .into_inner()
                .scenario
                .unwrap_or_default();
            render::print_scenario(&scenario);
        }
        ScenarioCommand::List {} => {
            let list = conn
                .connect()
                .await?
                .scenarios
                .list_scenarios(pb::ListScenariosRequest {})
                .await?
                .into_inner();
            for s in &list.scenarios {
                println!(
                    "{}  {:<9}  {}  until {}",
                    s.id,
                    render::scenario_status(s.status),
                    s.name,
                    render::time(s.valid_until_ms)
                );
            }
        }
        ScenarioCommand::Show { id } => {
            let scenario = conn
                .connect()
                .await?
                .scenarios
                .get_scenario(pb::GetScenarioRequest { scenario_id: id })
                .await?
                .into_inner()
                .scenario
                .unwrap_or_default();
            render::print_scenario(&scenario);
        }
        ScenarioCommand::Approve { id, comment } => {
            decide_scenario(conn, id, true, comment).await?;
        }
        ScenarioCommand::Reject { id, comment } => {
            decide_scenario(conn, id, false, comment).await?;
        }
    }
    Ok(())
}

async fn decide_scenario(conn: &Conn, id: String, approve: bool, comment: String) -> Result<()> {
    let scenario = conn
        .connect()
        .await?
        .scenarios
        .decide_scenario(pb::DecideScenarioRequest {
            scenario_id: id,
            approve,
            comment,
        })
        .await?
        .into_inner()
        .scenario
        .unwrap_or_default();
    render::print_scenario(&scenario);
    Ok(())
}

pub async fn run(command: ClientCommand, conn: &Conn) -> Result<ExitCode> {
    match command {
        ClientCommand::Whoami {} => {
            let me = conn
                .connect()
                .await?
                .session
                .who_am_i(pb::WhoAmIRequest {})
                .await?
                .into_inner();
            render::print_principals(&me.principal.into_iter().collect::<Vec<_>>());
        }
        ClientCommand::Import(command) => super::stewardship::run_import(command, conn).await?,
        ClientCommand::Quality(command) => super::stewardship::run_quality(command, conn).await?,
        ClientCommand::RiskStop(command) => {
            super::stewardship::run_risk_stop(command, conn).await?;
        }
        ClientCommand::Notifications { after, limit } => {
            let list = conn
                .connect()
                .await?
                .session
                .list_notifications(pb::ListNotificationsRequest {
                    after_id: after,
                    limit,
                })
                .await?
                .into_inner();
            if list.notifications.is_empty() {
                println!("no notifications");
            }
            for n in &list.notifications {
                println!(
                    "#{}  {}  {:<16} {:<20} {}",
                    n.id,
                    render::time(n.at_ms),
                    n.kind,
                    n.audience,
                    n.subject
                );
                if !n.body.is_empty() {
                    println!("      {}", n.body);
                }
            }
        }
        ClientCommand::Tenant(TenantCommand::Create { name }) => {
            let tenant = conn
                .connect()
                .await?
                .admin
                .create_tenant(pb::CreateTenantRequest { name })
                .await?
                .into_inner()
                .tenant
                .unwrap_or_default();
            println!("created tenant {} ({})", tenant.id, tenant.name);
        }
        ClientCommand::Tenant(TenantCommand::List {}) => {
            let tenants = conn
                .connect()
                .await?
                .admin
                .list_tenants(pb::ListTenantsRequest {})
                .await?
                .into_inner();
            for t in tenants.tenants {
                println!("{}  {}", t.id, t.name);
            }
        }
        ClientCommand::Principal(PrincipalCommand::Create {
            name,
            org,
            role,
            tenant,
            out,
        }) => {
            let mut client = conn.connect().await?;
            let principal = create_principal(
                &mut client,
                &name,
                &org,
                parse_role(&role)?,
                tenant.as_deref(),
                &out,
            )
            .await?;
            println!(
                "registered {} ({}); credentials in {}",
                principal.id,
                role,
                out.display()
            );
        }
        ClientCommand::Principal(PrincipalCommand::List {}) => {
            let list = conn
                .connect()
                .await?
                .admin
                .list_principals(pb::ListPrincipalsRequest {})
                .await?
                .into_inner();
            render::print_principals(&list.principals);
        }
        ClientCommand::Dataset(DatasetCommand::Ingest {
            name,
            file,
            format,
            columns,
            description,
        }) => {
            let data =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let header = pb::IngestHeader {
                name,
                description,
                format: format_from(&format)? as i32,
                columns: columns
                    .iter()
                    .map(|c| parse_column(c))
                    .collect::<Result<_>>()?,
            };
            let dataset = conn.connect().await?.ingest(header, data).await?;
            println!(
                "ingested {} ({}): {} rows, encrypted",
                dataset.id, dataset.name, dataset.n_rows
            );
        }
        ClientCommand::Dataset(DatasetCommand::List {}) => {
            let list = conn
                .connect()
                .await?
                .catalog
                .list_datasets(pb::ListDatasetsRequest {})
                .await?
                .into_inner();
            render::print_datasets(&list.datasets);
        }
        ClientCommand::Dataset(DatasetCommand::Show { id }) => {
            let d = conn
                .connect()
                .await?
                .catalog
                .describe_dataset(pb::DescribeDatasetRequest { dataset_id: id })
                .await?
                .into_inner()
                .dataset
                .unwrap_or_default();
            render::print_dataset(&d);
        }
        ClientCommand::Dataset(DatasetCommand::Sample { id, rows }) => {
            let sample = conn
                .connect()
                .await?
                .catalog
                .sample_dataset(pb::SampleDatasetRequest {
                    dataset_id: id,
                    n_rows: rows,
                })
                .await?
                .into_inner();
            render::print_masked(&sample.sample.unwrap_or_default());
        }
        ClientCommand::Dataset(DatasetCommand::Grant { id, tenant }) => {
            conn.connect()
                .await?
                .admin
                .grant_dataset(pb::GrantDatasetRequest {
                    dataset_id: id.clone(),
                    tenant_id: tenant.clone(),
                })
                .await?;
            println!("granted {id} to {tenant}");
        }
        ClientCommand::Job(JobCommand::Submit {
            sql,
            plan,
            lab,
            scenario,
            dp_epsilon,
            dp_bounds,
            dp_max_groups,
            dp_max_rows,
            no_wait,
        }) => {
            let substrait_plan = match &plan {
                Some(path) => {
                    std::fs::read(path).with_context(|| format!("reading {}", path.display()))?
                }
                None => Vec::new(),
            };
            let request = pb::SubmitJobRequest {
                sql: sql.unwrap_or_default(),
                substrait_plan,
                mode: if lab {
                    pb::JobMode::Lab
                } else {
                    pb::JobMode::Production
                } as i32,
                scenario_id: scenario.unwrap_or_default(),
                dp: dp_epsilon.map(|epsilon| pb::DpOptions {
                    epsilon,
                    max_groups_per_unit: dp_max_groups,
                    max_rows_per_unit: dp_max_rows,
                    bounds: dp_bounds,
                }),
            };
            let mut client = conn.connect().await?;
            let submitted = client
                .jobs
                .submit_job(request)
                .await?
                .into_inner()
                .job
                .unwrap_or_default();
            return finish_job(&mut client, submitted, no_wait).await;
        }
        ClientCommand::Job(JobCommand::Promote { id, scenario }) => {
            let mut client = conn.connect().await?;
            let submitted = client
                .jobs
                .promote_job(pb::PromoteJobRequest {
                    job_id: id,
                    scenario_id: scenario,
                })
                .await?
                .into_inner()
                .job
                .unwrap_or_default();
            return finish_job(&mut client, submitted, false).await;
        }
        ClientCommand::Tenant(TenantCommand::LabAccess { id, days }) => {
            let lab_until_ms = if days == 0 {
                0
            } else {
                chrono::Utc::now().timestamp_millis() + i64::from(days) * 86_400_000
            };
            let tenant = conn
                .connect()
                .await?
                .admin
                .set_lab_access(pb::SetLabAccessRequest {
                    tenant_id: id,
                    lab_until_ms,
                })
                .await?
                .into_inner()
                .tenant
                .unwrap_or_default();
            match tenant.lab_until_ms {
                0 => println!("tenant {} has no lab access", tenant.id),
                until => println!(
                    "tenant {} has lab access until {}",
                    tenant.id,
                    render::time(until)
                ),
            }
        }
        ClientCommand::Dataset(DatasetCommand::Approver { id, principal }) => {
            let dataset = conn
                .connect()
                .await?
                .admin
                .set_dataset_approver(pb::SetDatasetApproverRequest {
                    dataset_id: id,
                    approver_id: principal,
                })
                .await?
                .into_inner()
                .dataset
                .unwrap_or_default();
            render::print_dataset(&dataset);
        }
        ClientCommand::Tenant(TenantCommand::Lifecycle(command)) => {
            super::lifecycle::run(command, conn).await?;
        }
        ClientCommand::Scenario(command) => run_scenario(command, conn).await?,
        ClientCommand::Alerts(command) => return super::oversight::run_alerts(command, conn).await,
        ClientCommand::Report(command) => return super::oversight::run_report(command, conn).await,
        ClientCommand::Authorization(command) => {
            super::governance::run_authorization(command, conn).await?
        }
        ClientCommand::EmergencyPlan(command) => super::governance::run_plan(command, conn).await?,
        ClientCommand::Principal(PrincipalCommand::Governance(command)) => {
            super::governance::run_principal(command, conn).await?
        }
        ClientCommand::Product(command) => run_product(command, conn).await?,
        ClientCommand::Job(JobCommand::Cancel { id }) => {
            let job = conn
                .connect()
                .await?
                .jobs
                .cancel_job(pb::CancelJobRequest { job_id: id })
                .await?
                .into_inner()
                .job
                .unwrap_or_default();
            render::print_job(&job);
        }
        ClientCommand::Budget(BudgetCommand::List { tenant }) => {
            let budgets = conn
                .connect()
                .await?
                .jobs
                .get_privacy_budgets(pb::GetPrivacyBudgetsRequest {
                    tenant_id: tenant.unwrap_or_default(),
                })
                .await?
                .into_inner()
                .budgets;
            render::print_budgets(&budgets);
        }
        ClientCommand::Budget(BudgetCommand::Set {
            tenant,
            dataset,
            epsilon,
        }) => {
            let budget = conn
                .connect()
                .await?
                .admin
                .set_privacy_budget(pb::SetPrivacyBudgetRequest {
                    tenant_id: tenant,
                    dataset_id: dataset,
                    epsilon_total: epsilon,
                })
                .await?
                .into_inner()
                .budget
                .unwrap_or_default();
            render::print_budgets(&[budget]);
        }
        ClientCommand::Usage { tenant, from, to } => {
            let day = |text: &Option<String>, what: &str| -> Result<i64> {
                match text {
                    None => Ok(0),
                    Some(text) => {
                        let date = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
                            .with_context(|| format!("--{what} must be YYYY-MM-DD"))?;
                        Ok(date
                            .and_hms_opt(0, 0, 0)
                            .map(|t| t.and_utc().timestamp_millis())
                            .unwrap_or_default())
                    }
                }
            };
            let (from_ms, to_ms) = (day(&from, "from")?, day(&to, "to")?);
            if (from_ms == 0) != (to_ms == 0) {
                bail!("give both --from and --to, or neither (this month)");
            }
            let usage = conn
                .connect()
                .await?
                .jobs
                .get_usage(pb::GetUsageRequest {
                    from_ms,
                    to_ms,
                    tenant_id: tenant.unwrap_or_default(),
                })
                .await?
                .into_inner();
            render::print_usage(&usage);
        }
        ClientCommand::Job(JobCommand::Show { id }) => {
            let job = conn
                .connect()
                .await?
                .jobs
                .get_job(pb::GetJobRequest { job_id: id })
                .await?
                .into_inner()
                .job
                .unwrap_or_default();
            render::print_job(&job);
        }
        ClientCommand::Job(JobCommand::List { tenant }) => {
            let list = conn
                .connect()
                .await?
                .jobs
                .list_jobs(pb::ListJobsRequest { tenant_id: tenant })
                .await?
                .into_inner();
            for job in list.jobs {
                let query = if job.query_kind == "substrait" {
                    format!(
                        "[substrait {}…]",
                        &job.query_sha256[..12.min(job.query_sha256.len())]
                    )
                } else {
                    job.sql.replace('\n', " ")
                };
                println!(
                    "{}  {:<10}  {:<9}  {} rows  {}",
                    job.id,
                    render::job_mode(job.mode),
                    render::job_status(job.status),
                    job.n_rows,
                    query
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn run_export(command: ExportClientCommand, conn: &Conn) -> Result<ExitCode> {
    match command {
        ExportClientCommand::Request {
            job,
            job_flag,
            recipient,
            permitted_use,
            expires_days,
            purpose,
            format,
        } => {
            let job = job.or(job_flag).context("name the job")?;
            let export = conn
                .connect()
                .await?
                .exports
                .request_export(pb::RequestExportRequest {
                    job_id: job,
                    purpose: purpose.unwrap_or_else(|| permitted_use.clone()),
                    format: format_from(&format)? as i32,
                    recipient_id: recipient,
                    permitted_use,
                    expires_in_days: expires_days.unwrap_or(0),
                })
                .await?
                .into_inner()
                .export
                .unwrap_or_default();
            render::print_export(&export);
        }
        ExportClientCommand::Show { id } => {
            let export = conn
                .connect()
                .await?
                .exports
                .get_export(pb::GetExportRequest { export_id: id })
                .await?
                .into_inner()
                .export
                .unwrap_or_default();
            render::print_export(&export);
        }
        ExportClientCommand::List {} => {
            let list = conn
                .connect()
                .await?
                .exports
                .list_exports(pb::ListExportsRequest {})
                .await?
                .into_inner();
            for e in list.exports {
                println!(
                    "{}  {:<10}  {}/{} approvals  job {}  by {}  — {}",
                    e.id,
                    render::export_status(e.status),
                    e.approvals,
                    e.quorum,
                    e.job_id,
                    e.requester_id,
                    e.purpose
                );
            }
        }
        ExportClientCommand::Review { id } => {
            let review = conn
                .connect()
                .await?
                .exports
                .review_export(pb::ReviewExportRequest { export_id: id })
                .await?
                .into_inner();
            render::print_review(&review)?;
        }
        ExportClientCommand::Vote {
            id,
            approve,
            reject,
            return_,
            comment,
            private_note,
        } => {
            let decision = match (approve, reject, return_) {
                (true, false, false) => pb::ExportDecision::Approve,
                (false, true, false) => pb::ExportDecision::Reject,
                (false, false, true) => pb::ExportDecision::Return,
                _ => bail!("give exactly one of --approve, --reject and --return"),
            };
            let export = conn
                .connect()
                .await?
                .exports
                .vote_export(pb::VoteExportRequest {
                    export_id: id,
                    decision: decision as i32,
                    shared_comment: comment,
                    private_comment: private_note,
                })
                .await?
                .into_inner()
                .export
                .unwrap_or_default();
            render::print_export(&export);
        }
        ExportClientCommand::Comment { id, text, private } => {
            let export = conn
                .connect()
                .await?
                .exports
                .comment_export(pb::CommentExportRequest {
                    export_id: id,
                    text,
                    private,
                })
                .await?
                .into_inner()
                .export
                .unwrap_or_default();
            render::print_export(&export);
        }
        ExportClientCommand::Revoke { id, reason } => {
            let export = conn
                .connect()
                .await?
                .exports
                .revoke_export(pb::RevokeExportRequest {
                    export_id: id,
                    reason,
                })
                .await?
                .into_inner()
                .export
                .unwrap_or_default();
            render::print_export(&export);
        }
        ExportClientCommand::Trace { file } => {
            let bytes =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let traced = conn
                .connect()
                .await?
                .exports
                .trace_export(pb::TraceExportRequest { file: bytes })
                .await?
                .into_inner();
            render::print_trace(&traced);
        }
        ExportClientCommand::Download { id, out } => {
            let package = conn.connect().await?.download(&id).await?;
            std::fs::write(&out, &package).with_context(|| format!("writing {}", out.display()))?;
            println!(
                "wrote {} ({} bytes); check it with: shuyu export verify {}",
                out.display(),
                package.len(),
                out.display()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn parse_category(text: &str) -> Result<pb::ScenarioCategory> {
    let category: shuyu_policy::ScenarioCategory = text.parse()?;
    Ok(match category {
        shuyu_policy::ScenarioCategory::PublicGovernance => pb::ScenarioCategory::PublicGovernance,
        shuyu_policy::ScenarioCategory::PublicWelfare => pb::ScenarioCategory::PublicWelfare,
        shuyu_policy::ScenarioCategory::Commercial => pb::ScenarioCategory::Commercial,
    })
}

async fn run_product(command: ProductCommand, conn: &Conn) -> Result<()> {
    match command {
        ProductCommand::List {} => {
            let list = conn
                .connect()
                .await?
                .exports
                .list_products(pb::ListProductsRequest {})
                .await?
                .into_inner();
            if list.products.is_empty() {
                println!("no products");
            }
            for p in &list.products {
                render::print_product(p);
            }
        }
    }
    Ok(())
}

pub async fn run_audit(command: AuditClientCommand, conn: &Conn) -> Result<ExitCode> {
    match command {
        AuditClientCommand::Oversight(command) => {
            return super::oversight::run_audit(command, conn).await;
        }
        AuditClientCommand::Tail { after, limit } => {
            let list = conn
                .connect()
                .await?
                .audit
                .list_audit_records(pb::ListAuditRecordsRequest {
                    after_seq: after,
                    limit,
                })
                .await?
                .into_inner();
            for r in list.records {
                render::print_audit_record(&r);
            }
        }
        AuditClientCommand::Check {} => {
            let report = conn
                .connect()
                .await?
                .audit
                .verify_audit(pb::VerifyAuditRequest {})
                .await?
                .into_inner();
            if report.ok {
                println!(
                    "OK: {} audit records verify (head {})",
                    report.n_records, report.head_hash
                );
            } else {
                eprintln!("FAILED: {}", report.problem);
                return Ok(ExitCode::from(2));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
