//! End-to-end tests: the real `shuyu` binary serving a domain over mTLS on a loopback port,
//! driven through the typed client as each role would.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use shuyu_client::{Client, ClientError, Credentials, lab_sql, production_sql, v1 as pb};
use tonic::Code;

mod chaos;
mod corpus;
mod data_dir;
mod dp;
mod governance_access;
mod jobs;
mod lifecycle;
mod memory;
mod oversight;
mod products;
mod python_client;
mod review;
mod scenarios;
mod stewardship;

const BIN: &str = env!("CARGO_BIN_EXE_shuyu");
const WAIT: Duration = Duration::from_secs(120);

// ---------------------------------------------------------------------------- harness

/// A domain in a temporary directory.
struct Domain {
    _temp: tempfile::TempDir,
    data: PathBuf,
    creds: PathBuf,
}

impl Domain {
    fn new() -> Domain {
        let temp = tempfile::tempdir().expect("temp dir");
        let data = temp.path().join("domain");
        let creds = temp.path().join("creds");
        let out = Command::new(BIN)
            .args(["init", "--data-dir"])
            .arg(&data)
            .arg("--creds-out")
            .arg(creds.join("admin"))
            .args(["--admin-id-number", &staff_id_number()])
            .output()
            .expect("run shuyu init");
        assert!(
            out.status.success(),
            "init failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Domain {
            _temp: temp,
            data,
            creds,
        }
    }

    fn start(&self) -> Server {
        Server::start(&self.data)
    }

    /// Starts the server with extra configuration (TOML keys after `data_dir`) and,
    /// optionally, a policy file's text.
    fn start_with(&self, config: &str, policy: Option<&str>) -> Server {
        let dir = self.data.with_extension(format!("conf-{}", uuid_like()));
        std::fs::create_dir_all(&dir).expect("config dir");
        let mut text = format!("data_dir = {:?}\n", self.data.display().to_string());
        if let Some(policy) = policy {
            let path = dir.join("policy.toml");
            std::fs::write(&path, policy).expect("policy file");
            text.push_str(&format!("policy_file = {:?}\n", path.display().to_string()));
        }
        text.push_str(config);
        let path = dir.join("shuyu.toml");
        std::fs::write(&path, text).expect("config file");
        Server::start_args(
            dir.join("server.log"),
            &["--config", &path.display().to_string()],
        )
    }

    fn creds(&self, name: &str) -> PathBuf {
        self.creds.join(name)
    }
}

/// A `shuyu serve` child process; its stderr (logs at debug level) goes to a file.
struct Server {
    child: Child,
    addr: String,
    log: PathBuf,
}

impl Server {
    fn start(data: &Path) -> Server {
        let log = data.with_extension(format!("log-{}", uuid_like()));
        Server::start_args(log, &["--data-dir", &data.display().to_string()])
    }

    fn start_args(log: PathBuf, args: &[&str]) -> Server {
        let child = Command::new(BIN)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(args)
            .env("RUST_LOG", "debug")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("spawn shuyu serve");
        let mut child = child;
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read the serving line");
        let port = line
            .split("https://127.0.0.1:")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| {
                panic!(
                    "unexpected first line {line:?}; log: {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                )
            });
        Server {
            child,
            addr: format!("https://localhost:{port}"),
            log,
        }
    }

    async fn client(&self, creds: &Path) -> Client {
        Client::connect(
            &self.addr,
            &Credentials::from_dir(creds).expect("credentials"),
        )
        .await
        .expect("connect")
    }

    /// SIGKILL: no shutdown path runs.
    fn kill(mut self) {
        self.child.kill().expect("kill");
        self.child.wait().expect("wait");
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A valid resident ID number, distinct on each call in this process (real-name
/// registration refuses the same number twice).
fn staff_id_number() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let first17 = format!(
        "3302031985{:02}{:02}{:03}",
        1 + n / 28_000 % 12,
        1 + n / 1000 % 28,
        n % 1000
    );
    let check = shuyu_policy::id_number_check_char(&first17).expect("17 digits");
    format!("{first17}{check}")
}

/// Records `principal_id`'s real-name registration, a training valid for a year and an NDA
/// valid for three, as an admin does before a person may act (R8, R9).
async fn qualify(admin: &mut Client, principal_id: &str) -> pb::Qualification {
    let now = now_ms();
    admin
        .governance
        .qualify_principal(pb::QualifyPrincipalRequest {
            principal_id: principal_id.to_owned(),
            id_number: staff_id_number(),
            training_passed_ms: now - 86_400_000,
            training_valid_until_ms: now + 365 * 86_400_000,
            nda_signed_ms: now - 86_400_000,
            nda_valid_until_ms: now + 3 * 365 * 86_400_000,
        })
        .await
        .expect("qualify")
        .into_inner()
        .qualification
        .expect("qualification")
}

/// The people of one tenant plus the domain-wide roles (two reviewers: the default policy's
/// quorum).
struct People {
    tenant_id: String,
    /// The tenant's authorization (all categories, a year; datasets join its scope when
    /// granted) with an emergency plan.
    authorization_id: String,
    /// The recipient of the people's products (an organisation outside the tenant).
    recipient_id: String,
    recipient: Client,
    steward: Client,
    engineer: Client,
    reviewer: Client,
    reviewer2: Client,
    auditor: Client,
    admin: Client,
}

async fn register(
    admin: &mut Client,
    domain: &Domain,
    dir: &str,
    role: pb::Role,
    tenant: &str,
) -> PathBuf {
    let principal = admin
        .admin
        .create_principal(pb::CreatePrincipalRequest {
            real_name: format!("测试{dir}"),
            organisation: "测试单位".into(),
            role: role as i32,
            tenant_id: tenant.to_owned(),
        })
        .await
        .expect("create principal")
        .into_inner()
        .principal
        .expect("principal");
    qualify(admin, &principal.id).await;
    let (key, csr) = shuyu_client::new_key_and_csr(&principal.id).expect("csr");
    let issued = admin
        .admin
        .issue_certificate(pb::IssueCertificateRequest {
            principal_id: principal.id.clone(),
            csr_pem: csr,
            validity_days: 0,
        })
        .await
        .expect("issue")
        .into_inner();
    let out = domain.creds(dir);
    shuyu_client::write_credentials(
        &out,
        &issued.ca_certificate_pem,
        &issued.certificate_pem,
        &key,
    )
    .expect("write credentials");
    out
}

async fn people(server: &Server, domain: &Domain, suffix: &str) -> People {
    let mut admin = server.client(&domain.creds("admin")).await;
    let tenant_id = admin
        .admin
        .create_tenant(pb::CreateTenantRequest {
            name: format!("operator-{suffix}"),
        })
        .await
        .expect("create tenant")
        .into_inner()
        .tenant
        .expect("tenant")
        .id;
    let authorization_id = authorize(&mut admin, &tenant_id).await;
    let steward = register(
        &mut admin,
        domain,
        &format!("steward-{suffix}"),
        pb::Role::Steward,
        "",
    )
    .await;
    let engineer = register(
        &mut admin,
        domain,
        &format!("engineer-{suffix}"),
        pb::Role::Engineer,
        &tenant_id,
    )
    .await;
    let reviewer = register(
        &mut admin,
        domain,
        &format!("reviewer-{suffix}"),
        pb::Role::Reviewer,
        "",
    )
    .await;
    let reviewer2 = register(
        &mut admin,
        domain,
        &format!("reviewer2-{suffix}"),
        pb::Role::Reviewer,
        "",
    )
    .await;
    let auditor = register(
        &mut admin,
        domain,
        &format!("auditor-{suffix}"),
        pb::Role::Auditor,
        "",
    )
    .await;
    let recipient_creds = register(
        &mut admin,
        domain,
        &format!("recipient-{suffix}"),
        pb::Role::Recipient,
        "",
    )
    .await;
    let mut recipient = server.client(&recipient_creds).await;
    let recipient_id = recipient
        .session
        .who_am_i(pb::WhoAmIRequest {})
        .await
        .expect("whoami")
        .into_inner()
        .principal
        .expect("principal")
        .id;
    People {
        tenant_id,
        authorization_id,
        recipient_id,
        recipient,
        steward: server.client(&steward).await,
        engineer: server.client(&engineer).await,
        reviewer: server.client(&reviewer).await,
        reviewer2: server.client(&reviewer2).await,
        auditor: server.client(&auditor).await,
        admin,
    }
}

fn column(name: &str, data_type: &str, classification: &str, masking: &str) -> pb::Column {
    pb::Column {
        name: name.into(),
        data_type: data_type.into(),
        classification: classification.into(),
        masking: masking.into(),
    }
}

fn people_columns() -> Vec<pb::Column> {
    vec![
        column("name", "string", "direct_identifier", "partial_name"),
        column("id_number", "string", "direct_identifier", "pseudonym"),
        column("mobile", "string", "direct_identifier", "partial_mobile"),
        column(
            "birth_date",
            "date",
            "quasi_identifier",
            "generalize_date:year",
        ),
        column("district", "string", "ordinary", "keep"),
        column("diagnosis", "string", "sensitive", ""),
        column("cost", "float64", "sensitive", "generalize_number:100"),
    ]
}

const CANARY_NAME: &str = "CANARYNAME豪";
const CANARY_ID: &str = "330203198807071236";
const CANARY_MOBILE: &str = "13999990001";
const CANARY_DIAGNOSIS: &str = "CANARYDIAG_ZQX";
const CANARY_COST: &str = "98765.43";

/// 300 ordinary rows in three districts plus one row of canaries in district 鄞州区.
fn people_csv() -> String {
    let mut csv = String::from("name,id_number,mobile,birth_date,district,diagnosis,cost\n");
    let districts = ["海曙区", "江北区", "鄞州区"];
    for i in 0..300 {
        csv.push_str(&format!(
            "王{},33020319{:02}0101{:03}X,1380000{:04},19{:02}-01-01,{},高血压,{}.50\n",
            i,
            50 + i % 40,
            i,
            i,
            50 + i % 40,
            districts[i % 3],
            100 + i
        ));
    }
    csv.push_str(&format!(
        "{CANARY_NAME},{CANARY_ID},{CANARY_MOBILE},1988-07-07,鄞州区,{CANARY_DIAGNOSIS},{CANARY_COST}\n"
    ));
    csv
}

async fn ingest_people(steward: &mut Client, name: &str) -> pb::Dataset {
    steward
        .ingest(
            pb::IngestHeader {
                name: name.into(),
                description: "test residents".into(),
                format: pb::DataFormat::Csv as i32,
                columns: people_columns(),
            },
            people_csv().into_bytes(),
        )
        .await
        .expect("ingest")
}

/// Records a tenant's authorization (every scenario category, one year, no dataset yet) and
/// its emergency plan, as an admin does before the tenant may work (R25, R32).
async fn authorize(admin: &mut Client, tenant_id: &str) -> String {
    let now = now_ms();
    let authorization = admin
        .governance
        .create_authorization(pb::CreateAuthorizationRequest {
            tenant_id: tenant_id.to_owned(),
            dataset_ids: Vec::new(),
            categories: vec![
                pb::ScenarioCategory::PublicGovernance as i32,
                pb::ScenarioCategory::PublicWelfare as i32,
                pb::ScenarioCategory::Commercial as i32,
            ],
            valid_from_ms: 0,
            valid_until_ms: now + 365 * 86_400_000,
            pricing_terms: "the [pricing] rates".into(),
        })
        .await
        .expect("create authorization")
        .into_inner()
        .authorization
        .expect("authorization");
    set_plan(admin, &authorization.id).await;
    authorization.id
}

async fn set_plan(admin: &mut Client, authorization_id: &str) {
    admin
        .governance
        .set_emergency_plan(pb::SetEmergencyPlanRequest {
            authorization_id: authorization_id.to_owned(),
            summary: "stop, assess, report".into(),
            contact: "duty desk 0574-00000000".into(),
            actions: vec![
                "suspend the tenant's jobs".into(),
                "report within 2 h".into(),
            ],
        })
        .await
        .expect("set emergency plan");
}

/// Grants a dataset to a tenant and adds it to the scope of the tenant's authorization in
/// force (R25), as the admin does when a granted dataset joins the agreement.
async fn grant(admin: &mut Client, dataset_id: &str, tenant_id: &str) {
    admin
        .admin
        .grant_dataset(pb::GrantDatasetRequest {
            dataset_id: dataset_id.into(),
            tenant_id: tenant_id.into(),
        })
        .await
        .expect("grant");
    let authorizations = admin
        .governance
        .list_authorizations(pb::ListAuthorizationsRequest {
            tenant_id: tenant_id.into(),
        })
        .await
        .expect("list authorizations")
        .into_inner()
        .authorizations;
    if let Some(a) = authorizations
        .iter()
        .find(|a| a.status == pb::AuthorizationStatus::Active as i32)
    {
        admin
            .governance
            .amend_authorization_scope(pb::AmendAuthorizationScopeRequest {
                authorization_id: a.id.clone(),
                add_dataset_ids: vec![dataset_id.into()],
                add_categories: Vec::new(),
            })
            .await
            .expect("add the dataset to the authorization's scope");
    }
}

/// Applies, as `engineer`, for a scenario listing every column of `datasets`; each dataset's
/// steward (`steward`) and an admin approve it. Returns its id.
async fn scenario_approved_by(
    engineer: &mut Client,
    steward: &mut Client,
    admin: &mut Client,
    datasets: &[&pb::Dataset],
) -> String {
    let now = now_ms();
    let applied = engineer
        .scenarios
        .apply_scenario(pb::ApplyScenarioRequest {
            name: "测试场景".into(),
            purpose: "end-to-end test".into(),
            data_list: datasets
                .iter()
                .map(|d| pb::DataListItem {
                    dataset_id: d.id.clone(),
                    columns: d.columns.iter().map(|c| c.name.clone()).collect(),
                })
                .collect(),
            valid_from_ms: 0,
            valid_until_ms: now + 30 * 86_400_000,
            category: pb::ScenarioCategory::Commercial as i32,
        })
        .await
        .expect("apply for a scenario")
        .into_inner()
        .scenario
        .expect("scenario");
    for approver in [steward, admin] {
        approver
            .scenarios
            .decide_scenario(pb::DecideScenarioRequest {
                scenario_id: applied.id.clone(),
                approve: true,
                comment: String::new(),
            })
            .await
            .expect("approve the scenario");
    }
    applied.id
}

/// [`scenario_approved_by`] the people's own steward and admin.
async fn scenario(p: &mut People, datasets: &[&pb::Dataset]) -> String {
    scenario_approved_by(&mut p.engineer, &mut p.steward, &mut p.admin, datasets).await
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn code(result: Result<impl std::fmt::Debug, ClientError>) -> Code {
    match result {
        Err(ClientError::Status(status)) => status.code(),
        other => panic!("expected a status, got {other:?}"),
    }
}

fn status_code<T: std::fmt::Debug>(result: Result<tonic::Response<T>, tonic::Status>) -> Code {
    match result {
        Err(status) => status.code(),
        Ok(response) => panic!("expected an error, got {response:?}"),
    }
}

/// Requests an export of `job_id` as a CSV product for the people's recipient.
async fn request_export(p: &mut People, job_id: &str) -> pb::Export {
    p.engineer
        .exports
        .request_export(pb::RequestExportRequest {
            job_id: job_id.into(),
            purpose: "test purpose".into(),
            format: pb::DataFormat::Csv as i32,
            recipient_id: p.recipient_id.clone(),
            permitted_use: "test use".into(),
            expires_in_days: 0,
        })
        .await
        .expect("request export")
        .into_inner()
        .export
        .expect("export")
}

/// A vote on an export, by a reviewer or by anyone trying.
async fn vote(
    client: &mut Client,
    export_id: &str,
    decision: pb::ExportDecision,
    shared_comment: &str,
    private_comment: &str,
) -> Result<pb::Export, tonic::Status> {
    client
        .exports
        .vote_export(pb::VoteExportRequest {
            export_id: export_id.into(),
            decision: decision as i32,
            shared_comment: shared_comment.into(),
            private_comment: private_comment.into(),
        })
        .await
        .map(|r| r.into_inner().export.expect("export"))
}

/// An approval with a shared comment.
async fn approve(
    client: &mut Client,
    export_id: &str,
    comment: &str,
) -> Result<pb::Export, tonic::Status> {
    vote(client, export_id, pb::ExportDecision::Approve, comment, "").await
}

fn denied_code(result: Result<pb::Export, tonic::Status>) -> Code {
    match result {
        Err(status) => status.code(),
        Ok(export) => panic!("expected an error, got {export:?}"),
    }
}

fn run_bin(args: &[&str]) -> std::process::Output {
    Command::new(BIN).args(args).output().expect("run shuyu")
}

// ---------------------------------------------------------------------------- tests

#[test]
fn quickstart_walks_the_whole_flow() {
    let out = run_bin(&["quickstart", "--rows", "600"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "quickstart failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for expected in [
        "masked sample",
        "refused",
        "approved",
        "OK: signature and hashes verify",
        "audit records verify",
    ] {
        assert!(
            stdout.contains(expected),
            "quickstart output lacks {expected:?}:\n{stdout}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn gate_approves_only_clean_aggregates_and_signs_them() {
    let domain = Domain::new();
    let server = domain.start();
    let mut p = people(&server, &domain, "a").await;
    let dataset = ingest_people(&mut p.steward, "residents").await;
    assert_eq!(dataset.n_rows, 301);
    grant(&mut p.admin, &dataset.id, &p.tenant_id).await;
    let sc = scenario(&mut p, &[&dataset]).await;

    // Aggregate over big groups: passes the checks, goes to review.
    let aggregate = p
        .engineer
        .run_sql("SELECT district, count(*) AS n, avg(cost) AS avg_cost FROM residents GROUP BY district", &sc, WAIT)
        .await
        .unwrap();
    assert_eq!(
        aggregate.status,
        pb::JobStatus::Succeeded as i32,
        "{}",
        aggregate.error
    );
    assert!(aggregate.aggregate);
    let export = request_export(&mut p, &aggregate.id).await;
    assert_eq!(
        export.status,
        pb::ExportStatus::InReview as i32,
        "{export:?}"
    );
    assert_eq!((export.approvals, export.quorum), (0, 2));

    // The requester (an engineer) cannot approve: neither by role nor as the author.
    let self_approval = approve(&mut p.engineer, &export.id, "").await;
    assert_eq!(denied_code(self_approval), Code::PermissionDenied);

    // Small groups fail the k check; a failed check cannot be approved.
    let small = p
        .engineer
        .run_sql(
            "SELECT name, count(*) AS n FROM residents GROUP BY name",
            &sc,
            WAIT,
        )
        .await
        .unwrap();
    let refused = request_export(&mut p, &small.id).await;
    assert_eq!(refused.status, pb::ExportStatus::Refused as i32);
    let failed: Vec<_> = refused
        .checks
        .iter()
        .filter(|c| c.outcome == pb::CheckOutcome::Fail as i32)
        .collect();
    assert!(
        failed.iter().any(|c| c.name == "privacy_units"),
        "{refused:?}"
    );
    // The engineer learns that groups are too small, not which.
    assert!(
        failed.iter().all(|c| !c.detail.contains("row ")),
        "{failed:?}"
    );
    let approve_refused = approve(&mut p.reviewer, &refused.id, "").await;
    assert_eq!(denied_code(approve_refused), Code::FailedPrecondition);

    // Row-level output with raw identifiers is refused by the checks.
    let rows = p
        .engineer
        .run_sql("SELECT name, diagnosis FROM residents", &sc, WAIT)
        .await
        .unwrap();
    assert_eq!(
        request_export(&mut p, &rows.id).await.status,
        pb::ExportStatus::Refused as i32
    );
    // Row-level output with every non-ordinary column masked passes to review.
    let masked = p
        .engineer
        .run_sql(
            "SELECT pseudonym(id_number) AS pid, district FROM residents",
            &sc,
            WAIT,
        )
        .await
        .unwrap();
    assert_eq!(
        request_export(&mut p, &masked.id).await.status,
        pb::ExportStatus::InReview as i32
    );

    // The reviewer sees SQL, evidence and the full result, then approves.
    let review = p
        .reviewer
        .exports
        .review_export(pb::ReviewExportRequest {
            export_id: export.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(review.sql.contains("GROUP BY district"));
    assert_eq!(review.n_rows, 3);
    assert!(!review.result_arrow_ipc.is_empty());
    let first = approve(&mut p.reviewer, &export.id, "ok").await.unwrap();
    assert_eq!(first.status, pb::ExportStatus::InReview as i32);
    assert_eq!(first.approvals, 1);
    let approved = approve(&mut p.reviewer2, &export.id, "ok").await.unwrap();
    assert_eq!(approved.status, pb::ExportStatus::Approved as i32);
    assert_eq!(approved.approvals, 2);

    // Only the recipient downloads; the package verifies offline, a tampered copy does not.
    assert_eq!(
        code(p.steward.download(&export.id).await),
        Code::PermissionDenied
    );
    assert_eq!(code(p.engineer.download(&export.id).await), Code::NotFound);
    let package = p.recipient.download(&export.id).await.unwrap();
    let path = domain.data.with_extension("pkg.tar");
    std::fs::write(&path, &package).unwrap();
    let key_file = domain.data.join("domain-signing.pub");
    let ok = run_bin(&[
        "export",
        "verify",
        path.to_str().unwrap(),
        "--public-key",
        key_file.to_str().unwrap(),
    ]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let text = String::from_utf8_lossy(&package).into_owned();
    let csv_at = text
        .find("district,n,avg_cost")
        .expect("the CSV is in the package");
    for offset in [csv_at + 25, 100] {
        let mut tampered = package.clone();
        tampered[offset] ^= 0x01;
        std::fs::write(&path, &tampered).unwrap();
        let bad = run_bin(&["export", "verify", path.to_str().unwrap()]);
        assert!(
            !bad.status.success(),
            "a package tampered at byte {offset} verified"
        );
    }
    // A package re-signed by another key is refused when the trusted key is given.
    let other_key = "00".repeat(32);
    std::fs::write(&path, &package).unwrap();
    let wrong = run_bin(&[
        "export",
        "verify",
        path.to_str().unwrap(),
        "--public-key",
        &other_key,
    ]);
    assert!(!wrong.status.success());
    // The approval cannot be repeated.
    let again = approve(&mut p.reviewer, &export.id, "").await;
    assert_eq!(denied_code(again), Code::FailedPrecondition);
    // Auditors see every step, and the chain verifies.
    let report = p
        .auditor
        .audit
        .verify_audit(pb::VerifyAuditRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(report.ok, "{}", report.problem);
    let records = p
        .auditor
        .audit
        .list_audit_records(pb::ListAuditRecordsRequest {
            after_seq: 0,
            limit: 1000,
        })
        .await
        .unwrap()
        .into_inner()
        .records;
    for action in [
        "ingest_dataset",
        "submit_job",
        "job_finished",
        "request_export",
        "vote_export",
        "download_export",
    ] {
        assert!(
            records.iter().any(|r| r.action == action),
            "no {action} record"
        );
    }
    assert!(
        records
            .iter()
            .any(|r| r.action == "vote_export" && r.outcome == "denied")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn canaries_never_reach_engineers_logs_or_disk() {
    let domain = Domain::new();
    let server = domain.start();
    let mut p = people(&server, &domain, "c").await;
    let dataset = ingest_people(&mut p.steward, "residents").await;
    grant(&mut p.admin, &dataset.id, &p.tenant_id).await;
    let sc = scenario(&mut p, &[&dataset]).await;
    let mut seen = Vec::new();

    let sample = p
        .engineer
        .catalog
        .sample_dataset(pb::SampleDatasetRequest {
            dataset_id: dataset.id.clone(),
            n_rows: 200,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        sample.sample.as_ref().unwrap().rows.len(),
        20,
        "capped by the policy"
    );
    seen.push(format!("{sample:?}"));
    let describe = p
        .engineer
        .catalog
        .describe_dataset(pb::DescribeDatasetRequest {
            dataset_id: dataset.id.clone(),
        })
        .await
        .unwrap();
    seen.push(format!("{describe:?}"));
    for sql in [
        "SELECT * FROM residents",
        "SELECT * FROM residents WHERE cost > 90000",
        "SELECT name, upper(diagnosis) AS d, cost * 2 AS c FROM residents WHERE district = '鄞州区'",
        "SELECT district, max(name) AS m, max(cost) AS top FROM residents GROUP BY district",
        "SELECT (SELECT max(diagnosis) FROM residents WHERE cost > 90000) AS x",
        "SELECT district, count(*) FROM residents WHERE cost > 90000 GROUP BY district",
        "SELECT CAST(name AS BIGINT) FROM residents",
        "SELECT CAST(diagnosis AS INT) FROM residents WHERE cost > 90000",
        "SELECT to_timestamp(name) FROM residents",
        "SELECT arrow_cast(diagnosis, 'Int64') FROM residents",
        "SELECT * FROM residents WHERE name = 1",
    ] {
        let job = p.engineer.run_sql(sql, &sc, WAIT).await.unwrap();
        seen.push(format!("{job:?}"));
        if job.status == pb::JobStatus::Succeeded as i32 {
            let export = request_export(&mut p, &job.id).await;
            seen.push(format!("{export:?}"));
        } else {
            assert!(!job.error.is_empty(), "a failed job explains itself");
        }
    }
    let jobs = p
        .engineer
        .jobs
        .list_jobs(pb::ListJobsRequest::default())
        .await
        .unwrap();
    seen.push(format!("{jobs:?}"));
    let exports = p
        .engineer
        .exports
        .list_exports(pb::ListExportsRequest {})
        .await
        .unwrap();
    seen.push(format!("{exports:?}"));
    let audit = p
        .auditor
        .audit
        .list_audit_records(pb::ListAuditRecordsRequest {
            after_seq: 0,
            limit: 1000,
        })
        .await
        .unwrap();
    seen.push(format!("{audit:?}"));

    let canaries = [
        CANARY_NAME,
        CANARY_ID,
        CANARY_MOBILE,
        CANARY_DIAGNOSIS,
        CANARY_COST,
        "CANARY",
    ];
    let responses = seen.join("\n");
    for canary in canaries {
        assert!(
            !responses.contains(canary),
            "{canary} reached an engineer or auditor response"
        );
    }
    // The failed CAST is withheld with an error id, not echoed.
    assert!(
        responses.contains("error id"),
        "value errors come back with an error id"
    );

    drop(p);
    let log = server.log_text();
    assert!(log.contains("DEBUG"), "the server logged at debug level");
    server.kill();
    for canary in canaries {
        assert!(!log.contains(canary), "{canary} appears in the server log");
    }
    // No file under the data dir holds a canary in plaintext (store, WAL, objects).
    let mut n_files = 0;
    for file in walk(&domain.data) {
        let bytes = std::fs::read(&file).unwrap();
        n_files += 1;
        for canary in canaries {
            assert!(
                !contains(&bytes, canary.as_bytes()),
                "{canary} appears in plaintext in {}",
                file.display()
            );
        }
    }
    assert!(n_files >= 3, "walked the data dir");
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test(flavor = "multi_thread")]
async fn another_tenant_cannot_see_or_touch_anything() {
    let domain = Domain::new();
    let server = domain.start();
    let mut a = people(&server, &domain, "a").await;
    let mut b = people(&server, &domain, "b").await;
    let dataset = ingest_people(&mut a.steward, "residents").await;
    grant(&mut a.admin, &dataset.id, &a.tenant_id).await;
    let sc_a = scenario(&mut a, &[&dataset]).await;
    let job = a
        .engineer
        .run_sql(
            "SELECT district, count(*) AS n FROM residents GROUP BY district",
            &sc_a,
            WAIT,
        )
        .await
        .unwrap();
    let export = request_export(&mut a, &job.id).await;

    let listed = b
        .engineer
        .catalog
        .list_datasets(pb::ListDatasetsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(listed.datasets.is_empty());
    let jobs = b
        .engineer
        .jobs
        .list_jobs(pb::ListJobsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(jobs.jobs.is_empty());
    let exports = b
        .engineer
        .exports
        .list_exports(pb::ListExportsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(exports.exports.is_empty());

    // Every probe of A's ids answers exactly like a probe of ids that never existed.
    for (real, missing) in [
        (dataset.id.as_str(), "ds_00000000000000000000"),
        (job.id.as_str(), "job_00000000000000000000"),
        (export.id.as_str(), "exp_00000000000000000000"),
    ] {
        for id in [real, missing] {
            let describe = b
                .engineer
                .catalog
                .describe_dataset(pb::DescribeDatasetRequest {
                    dataset_id: id.into(),
                })
                .await;
            let sample = b
                .engineer
                .catalog
                .sample_dataset(pb::SampleDatasetRequest {
                    dataset_id: id.into(),
                    n_rows: 5,
                })
                .await;
            let get_job = b
                .engineer
                .jobs
                .get_job(pb::GetJobRequest { job_id: id.into() })
                .await;
            let request = b
                .engineer
                .exports
                .request_export(pb::RequestExportRequest {
                    job_id: id.into(),
                    purpose: "probe".into(),
                    format: 0,
                    ..Default::default()
                })
                .await;
            let get_export = b
                .engineer
                .exports
                .get_export(pb::GetExportRequest {
                    export_id: id.into(),
                })
                .await;
            let download = b.engineer.download(id).await;
            let messages = [
                describe.map(|_| ()).unwrap_err(),
                sample.map(|_| ()).unwrap_err(),
                get_job.map(|_| ()).unwrap_err(),
                request.map(|_| ()).unwrap_err(),
                get_export.map(|_| ()).unwrap_err(),
            ];
            for status in &messages {
                assert_eq!(status.code(), Code::NotFound, "{status:?}");
                assert!(
                    status.message().ends_with(&format!("{id} not found")),
                    "{status:?}"
                );
            }
            assert_eq!(code(download), Code::NotFound);
        }
    }
    // A's scenario does not exist for B.
    let borrowed = b
        .engineer
        .run_sql("SELECT count(*) FROM residents", &sc_a, WAIT)
        .await;
    assert_eq!(code(borrowed), Code::NotFound);
    // SQL over A's table name fails exactly like SQL over a table that does not exist.
    let theirs = b
        .engineer
        .run_lab_sql("SELECT count(*) FROM residents", WAIT)
        .await
        .unwrap();
    let nowhere = b
        .engineer
        .run_lab_sql("SELECT count(*) FROM residentz", WAIT)
        .await
        .unwrap();
    assert_eq!(theirs.status, pb::JobStatus::Failed as i32);
    assert_eq!(
        theirs.error.replace("residents", "X"),
        nowhere.error.replace("residentz", "X")
    );
    // A's reviewer-side view is unaffected.
    let queue = a
        .reviewer
        .exports
        .list_exports(pb::ListExportsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(queue.exports.len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn nothing_is_served_without_a_valid_client_certificate() {
    use tonic::transport::{Certificate, ClientTlsConfig, Identity};
    let domain = Domain::new();
    let server = domain.start();
    let ca = std::fs::read_to_string(domain.creds("admin").join("ca.pem")).unwrap();

    async fn whoami(server: &Server, tls: ClientTlsConfig) -> Result<(), String> {
        let mut client = Client::connect_with(&server.addr, tls)
            .await
            .map_err(|e| e.to_string())?;
        client
            .session
            .who_am_i(pb::WhoAmIRequest {})
            .await
            .map(|_| ())
            .map_err(|e| ClientError::from(e).to_string())
    }
    let base = || {
        ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&ca))
            .domain_name("localhost")
    };

    // No certificate.
    let err = whoami(&server, base()).await.unwrap_err();
    assert!(err.contains("no client certificate was presented"), "{err}");
    // A certificate from another CA.
    let other = tempfile::tempdir().unwrap();
    let other_out = run_bin(&[
        "init",
        "--data-dir",
        other.path().join("d").to_str().unwrap(),
        "--creds-out",
        other.path().join("c").to_str().unwrap(),
        "--admin-id-number",
        &staff_id_number(),
    ]);
    assert!(other_out.status.success());
    let foreign = Credentials::from_dir(&other.path().join("c")).unwrap();
    let err = whoami(
        &server,
        base().identity(Identity::from_pem(&foreign.cert_pem, &foreign.key_pem)),
    )
    .await
    .unwrap_err();
    assert!(err.contains("not issued by this domain's CA"), "{err}");
    // An expired certificate signed by the right CA.
    let opened = shuyu_server::domain::open(&domain.data).unwrap();
    let issuer = rcgen::Issuer::from_ca_cert_pem(
        &opened.ca.cert_pem,
        rcgen::KeyPair::from_pem(&opened.ca.key_pem).unwrap(),
    )
    .unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.not_before = time::OffsetDateTime::now_utc() - time::Duration::days(10);
    params.not_after = time::OffsetDateTime::now_utc() - time::Duration::days(1);
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let expired = params.signed_by(&key, &issuer).unwrap();
    let err = whoami(
        &server,
        base().identity(Identity::from_pem(expired.pem(), key.serialize_pem())),
    )
    .await
    .unwrap_err();
    assert!(err.contains("expired"), "{err}");
    // A valid certificate from the right CA that no principal is bound to.
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let unbound = params.signed_by(&key, &issuer).unwrap();
    let err = whoami(
        &server,
        base().identity(Identity::from_pem(unbound.pem(), key.serialize_pem())),
    )
    .await
    .unwrap_err();
    assert!(
        err.contains("Unauthenticated") || err.contains("not registered"),
        "{err}"
    );
    // The admin's own certificate works.
    let admin = Credentials::from_dir(&domain.creds("admin")).unwrap();
    whoami(
        &server,
        base().identity(Identity::from_pem(&admin.cert_pem, &admin.key_pem)),
    )
    .await
    .expect("a registered certificate is served");
}

#[tokio::test(flavor = "multi_thread")]
async fn sandbox_corpus_is_refused_and_the_server_keeps_serving() {
    let domain = Domain::new();
    let server = domain.start();
    let mut p = people(&server, &domain, "s").await;
    let dataset = ingest_people(&mut p.steward, "health_records").await;
    grant(&mut p.admin, &dataset.id, &p.tenant_id).await;
    let sc = scenario(&mut p, &[&dataset]).await;
    let corpus = include_str!("../../../../tests/corpus/sandbox.txt");
    let mut n = 0;
    for sql in corpus
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let job = p.engineer.run_sql(sql, &sc, WAIT).await.unwrap();
        assert_eq!(
            job.status,
            pb::JobStatus::Failed as i32,
            "{sql} was not refused"
        );
        assert!(
            !job.error.is_empty() && !job.error.contains("error id"),
            "{sql}: unclear error {:?}",
            job.error
        );
        n += 1;
    }
    assert!(n >= 15);
    // Oversized SQL is refused before it is planned.
    let huge = format!("SELECT {} AS x", vec!["1"; 40_000].join("+"));
    let refused = p.engineer.jobs.submit_job(production_sql(&huge, &sc)).await;
    assert_eq!(status_code(refused), Code::InvalidArgument);
    // Nothing escaped to the file system.
    assert!(!Path::new("/tmp/shuyu-escape.csv").exists());
    // And the server still answers.
    let ok = p
        .engineer
        .run_sql("SELECT count(*) AS n FROM health_records", &sc, WAIT)
        .await
        .unwrap();
    assert_eq!(ok.status, pb::JobStatus::Succeeded as i32, "{}", ok.error);
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_uploads_get_clear_errors_and_leave_nothing() {
    let domain = Domain::new();
    let server = domain.start();
    let mut p = people(&server, &domain, "u").await;
    let header = |name: &str, format: pb::DataFormat, columns: Vec<pb::Column>| pb::IngestHeader {
        name: name.into(),
        description: String::new(),
        format: format as i32,
        columns,
    };
    let two = || {
        vec![
            column("a", "string", "ordinary", "keep"),
            column("b", "int64", "sensitive", ""),
        ]
    };
    let cases: Vec<(pb::IngestHeader, Vec<u8>, &str)> = vec![
        (
            header("q", pb::DataFormat::Csv, two()),
            b"a,b\n\"x,1\n".to_vec(),
            "line",
        ),
        (
            header("q", pb::DataFormat::Csv, two()),
            b"a,b\nx,1,2\n".to_vec(),
            "fields",
        ),
        (
            header("q", pb::DataFormat::Csv, two()),
            b"a,b\nx,SECRET42\n".to_vec(),
            "not a valid int64",
        ),
        (
            header("q", pb::DataFormat::Csv, two()),
            b"a,c\nx,1\n".to_vec(),
            "header",
        ),
        (
            header("q", pb::DataFormat::Csv, two()),
            b"a,b\n".to_vec(),
            "no data rows",
        ),
        (
            header("q", pb::DataFormat::Csv, two()),
            b"a,b\nx,1\n,\n".to_vec(),
            "empty",
        ),
        (
            header("q", pb::DataFormat::Parquet, two()),
            b"PAR1 not really parquet".to_vec(),
            "not a valid Parquet",
        ),
        (
            header(
                "q",
                pb::DataFormat::Csv,
                vec![column("a", "varchar2", "ordinary", "")],
            ),
            b"a\nx\n".to_vec(),
            "unknown column type",
        ),
        (
            header(
                "q",
                pb::DataFormat::Csv,
                vec![column("a", "string", "sensitive", "keep")],
            ),
            b"a\nx\n".to_vec(),
            "only allowed for ordinary",
        ),
        (
            header("Bad Name", pb::DataFormat::Csv, two()),
            b"a,b\nx,1\n".to_vec(),
            "SQL identifier",
        ),
        (
            header("q", pb::DataFormat::Unspecified, two()),
            b"a,b\nx,1\n".to_vec(),
            "CSV or Parquet",
        ),
    ];
    for (header, data, expected) in cases {
        let result = p.steward.ingest(header, data).await;
        match result {
            Err(ClientError::Status(status)) => {
                assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
                assert!(
                    status.message().contains(expected),
                    "{:?} lacks {expected:?}",
                    status.message()
                );
                assert!(!status.message().contains("SECRET42"));
            }
            other => panic!("expected INVALID_ARGUMENT containing {expected:?}, got {other:?}"),
        }
    }
    // Too large for the server's limit: RESOURCE_EXHAUSTED. (Default limit 256 MiB is too big
    // to test here; a huge row is covered by the engine tests.)
    let listed = p
        .steward
        .catalog
        .list_datasets(pb::ListDatasetsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(listed.datasets.is_empty());
    let objects = domain.data.join("objects");
    assert!(
        walk(&objects).is_empty(),
        "a failed ingest left files: {:?}",
        walk(&objects)
    );
    // A dataset name can be used once.
    ingest_people(&mut p.steward, "once").await;
    let again = p
        .steward
        .ingest(
            header("once", pb::DataFormat::Csv, people_columns()),
            people_csv().into_bytes(),
        )
        .await;
    assert_eq!(code(again), Code::AlreadyExists);
    // Roles are enforced: an engineer cannot ingest, a steward cannot run jobs.
    let denied = p
        .engineer
        .ingest(
            header("x", pb::DataFormat::Csv, two()),
            b"a,b\nx,1\n".to_vec(),
        )
        .await;
    assert_eq!(code(denied), Code::PermissionDenied);
    let denied = p.steward.jobs.submit_job(lab_sql("SELECT 1")).await;
    assert_eq!(status_code(denied), Code::PermissionDenied);
}

fn audit_verify(data: &Path) -> std::process::Output {
    run_bin(&["audit", "verify", "--data-dir", data.to_str().unwrap()])
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn audit_tampering_is_detected() {
    let domain = Domain::new();
    let server = domain.start();
    let mut p = people(&server, &domain, "t").await;
    let dataset = ingest_people(&mut p.steward, "residents").await;
    grant(&mut p.admin, &dataset.id, &p.tenant_id).await;
    let sc = scenario(&mut p, &[&dataset]).await;
    p.engineer
        .run_sql("SELECT count(*) FROM residents", &sc, WAIT)
        .await
        .unwrap();
    drop(p);
    server.kill();
    let ok = audit_verify(&domain.data);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );

    let tampers: [(&str, &str); 6] = [
        (
            "change a field",
            "UPDATE audit SET outcome = 'denied' WHERE seq = 5",
        ),
        (
            "flip one character of the detail",
            "UPDATE audit SET detail = replace(detail, '\"', '''') WHERE seq = 8",
        ),
        ("remove a record", "DELETE FROM audit WHERE seq = 6"),
        (
            "reorder two records",
            "UPDATE audit SET seq = -3 WHERE seq = 3; UPDATE audit SET seq = 3 WHERE seq = 4; \
             UPDATE audit SET seq = 4 WHERE seq = -3;",
        ),
        (
            "remove the last record",
            "DELETE FROM audit WHERE seq = (SELECT max(seq) FROM audit)",
        ),
        (
            "insert a record",
            "INSERT INTO audit SELECT seq + 1000, at_ms, principal_id, role, tenant_id, action, target, outcome, detail, sealed_detail, hash, hash, mac FROM audit WHERE seq = (SELECT max(seq) FROM audit)",
        ),
    ];
    for (what, sql) in tampers {
        let copy = domain
            .data
            .with_extension(format!("tamper-{}", uuid_like()));
        copy_dir(&domain.data, &copy);
        let conn = rusqlite::Connection::open(copy.join("meta.db")).unwrap();
        conn.execute_batch(sql).unwrap();
        assert!(
            conn.total_changes() > 0,
            "{what}: the tamper changed nothing"
        );
        drop(conn);
        let out = audit_verify(&copy);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{what} went undetected: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    // Flipping a raw byte inside the stored record text is detected too.
    let copy = domain.data.with_extension("tamper-bytes");
    copy_dir(&domain.data, &copy);
    {
        let conn = rusqlite::Connection::open(copy.join("meta.db")).unwrap();
        conn.pragma_update(None, "journal_mode", "DELETE").unwrap();
    }
    let db = copy.join("meta.db");
    let mut bytes = std::fs::read(&db).unwrap();
    // Every occurrence, so the live record is among them (free pages may hold stale copies).
    let hits: Vec<usize> = bytes
        .windows(13)
        .enumerate()
        .filter(|(_, w)| *w == b"create_tenant")
        .map(|(at, _)| at)
        .collect();
    assert!(!hits.is_empty(), "an audit action in the file");
    for at in hits {
        bytes[at] ^= 0x20;
    }
    std::fs::write(&db, bytes).unwrap();
    let out = audit_verify(&copy);
    assert_eq!(out.status.code(), Some(2));
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("was changed"), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_during_ingest_and_job_loses_no_committed_record() {
    let domain = Domain::new();
    let server = domain.start();
    let mut p = people(&server, &domain, "k").await;
    let committed = ingest_people(&mut p.steward, "residents").await;
    grant(&mut p.admin, &committed.id, &p.tenant_id).await;
    let sc = scenario(&mut p, &[&committed]).await;
    let done = p
        .engineer
        .run_sql(
            "SELECT district, count(*) AS n FROM residents GROUP BY district",
            &sc,
            WAIT,
        )
        .await
        .unwrap();
    assert_eq!(done.status, pb::JobStatus::Succeeded as i32);
    let tenant_id = p.tenant_id.clone();

    // A large upload in flight, killed mid-way.
    let mut big = String::from("name,id_number,mobile,birth_date,district,diagnosis,cost\n");
    for i in 0..300_000 {
        big.push_str(&format!(
            "赵{i},330203199001011234,13800000000,1990-01-01,海曙区,高血压,{i}.00\n"
        ));
    }
    let mut steward = p.steward.clone();
    let upload = tokio::spawn(async move {
        steward
            .ingest(
                pb::IngestHeader {
                    name: "big".into(),
                    description: String::new(),
                    format: pb::DataFormat::Csv as i32,
                    columns: people_columns(),
                },
                big.into_bytes(),
            )
            .await
    });
    tokio::time::sleep(Duration::from_millis(700)).await;
    drop(p);
    server.kill();
    let _ = upload.await;

    let server = domain.start();
    let mut admin = server.client(&domain.creds("admin")).await;
    let mut steward = server.client(&domain.creds("steward-k")).await;
    let mut engineer = server.client(&domain.creds("engineer-k")).await;
    let tenants = admin
        .admin
        .list_tenants(pb::ListTenantsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(tenants.tenants.iter().any(|t| t.id == tenant_id));
    let datasets = steward
        .catalog
        .list_datasets(pb::ListDatasetsRequest {})
        .await
        .unwrap()
        .into_inner()
        .datasets;
    assert!(datasets.iter().any(|d| d.id == committed.id));
    // Either the big dataset committed whole, or it left no trace.
    let on_disk: std::collections::BTreeSet<String> =
        std::fs::read_dir(domain.data.join("objects/datasets"))
            .map(|dir| {
                dir.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
    let in_catalog: std::collections::BTreeSet<String> =
        datasets.iter().map(|d| d.id.clone()).collect();
    assert_eq!(
        on_disk, in_catalog,
        "dataset files without a catalog entry, or the reverse"
    );
    if let Some(big) = datasets.iter().find(|d| d.name == "big") {
        assert_eq!(big.n_rows, 300_000);
    }
    let old = engineer
        .jobs
        .get_job(pb::GetJobRequest {
            job_id: done.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(old.job.unwrap().status, pb::JobStatus::Succeeded as i32);

    // A job in flight, killed mid-way: after the restart it is Failed with a reason.
    let slow = engineer
        .jobs
        .submit_job(production_sql(
            "SELECT sum(value % 7) AS s FROM range(100000000000)",
            &sc,
        ))
        .await
        .unwrap()
        .into_inner()
        .job
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    drop((admin, steward, engineer));
    server.kill();
    let server = domain.start();
    let mut engineer = server.client(&domain.creds("engineer-k")).await;
    let job = engineer
        .jobs
        .get_job(pb::GetJobRequest {
            job_id: slow.id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .job
        .unwrap();
    assert_eq!(job.status, pb::JobStatus::Failed as i32);
    assert!(job.error.contains("interrupted"), "{}", job.error);
    let sample = engineer
        .catalog
        .sample_dataset(pb::SampleDatasetRequest {
            dataset_id: committed.id.clone(),
            n_rows: 3,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(sample.sample.unwrap().rows.len(), 3);
    drop(engineer);
    server.kill();
    let verify = audit_verify(&domain.data);
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stderr)
    );
}
