//! Governance as enforced state, end to end over mTLS: staff qualification (R8, R9) gates
//! every call, revoked certificates are refused on their next call, nothing runs outside an
//! authorization's term and scope (R25), renewal has a window and is announced once, and
//! production work needs the authorization's emergency plan (R32).

use std::path::PathBuf;

use shuyu_client::{Client, lab_sql, production_sql, v1 as pb};
use tonic::Code;

use crate::harness::fixtures::*;
use crate::harness::*;

const DAY_MS: i64 = 86_400_000;

async fn whoami(client: &mut Client) -> Result<pb::Principal, tonic::Status> {
    client
        .session
        .who_am_i(pb::WhoAmIRequest {})
        .await
        .map(|r| r.into_inner().principal.expect("principal"))
}

async fn qualify_with(
    admin: &mut Client,
    principal_id: &str,
    id_number: &str,
    training: (i64, i64),
    nda: (i64, i64),
) -> Result<pb::Qualification, tonic::Status> {
    admin
        .governance
        .qualify_principal(pb::QualifyPrincipalRequest {
            principal_id: principal_id.into(),
            id_number: id_number.into(),
            training_passed_ms: training.0,
            training_valid_until_ms: training.1,
            nda_signed_ms: nda.0,
            nda_valid_until_ms: nda.1,
        })
        .await
        .map(|r| r.into_inner().qualification.expect("qualification"))
}

fn date(ms: i64) -> String {
    shuyu_policy::format_date(ms)
}

#[tokio::test(flavor = "multi_thread")]
async fn lapsed_training_or_nda_blocks_the_next_call_until_requalified() {
    let domain = Domain::new();
    let server = domain.start();
    let mut p = people(&server, &domain, "q").await;
    let engineer = whoami(&mut p.engineer)
        .await
        .expect("a qualified engineer acts");
    let now = now_ms();

    // The training lapsed yesterday: the engineer's next call is refused, naming it.
    let lapsed = (now - 400 * DAY_MS, now - DAY_MS);
    let valid = (now - DAY_MS, now + 365 * DAY_MS);
    let q = qualify_with(&mut p.admin, &engineer.id, "", lapsed, (0, 0))
        .await
        .expect("record the training");
    assert!(!q.qualified);
    assert!(q.problem.contains("training expired"), "{}", q.problem);
    let refused = whoami(&mut p.engineer).await.expect_err("refused");
    assert_eq!(refused.code(), Code::PermissionDenied);
    assert!(
        refused
            .message()
            .contains(&format!("the training expired on {}", date(now - DAY_MS))),
        "{}",
        refused.message()
    );
    let sample = p
        .engineer
        .catalog
        .list_datasets(pb::ListDatasetsRequest {})
        .await
        .expect_err("every call is gated");
    assert_eq!(sample.code(), Code::PermissionDenied);

    // Renewed training restores access.
    qualify_with(&mut p.admin, &engineer.id, "", valid, (0, 0))
        .await
        .expect("renew the training");
    whoami(&mut p.engineer).await.expect("access restored");

    // The NDA lapses: refused again, naming the NDA; a new NDA restores access.
    qualify_with(&mut p.admin, &engineer.id, "", valid, lapsed)
        .await
        .expect("record the NDA");
    let refused = whoami(&mut p.engineer).await.expect_err("refused");
    assert_eq!(refused.code(), Code::PermissionDenied);
    assert_eq!(reason(&refused), "NOT_QUALIFIED");
    // The message names the gap.
    assert!(
        refused.message().contains("(NDA) expired on"),
        "{}",
        refused.message()
    );
    qualify_with(&mut p.admin, &engineer.id, "", valid, valid)
        .await
        .expect("renew the NDA");
    whoami(&mut p.engineer).await.expect("access restored");

    // A principal registered without a qualification cannot act at all.
    let (steward_creds, bare_id) =
        register_unqualified(&mut p.admin, &domain, "bare-steward").await;
    let mut bare = server.client(&steward_creds).await;
    let refused = whoami(&mut bare).await.expect_err("refused");
    assert_eq!(refused.code(), Code::PermissionDenied);
    assert_eq!(reason(&refused), "NOT_QUALIFIED");
    assert!(
        refused.message().contains("no real-name registration"),
        "{}",
        refused.message()
    );

    // The ID number is stored only as a keyed hash: shown masked, and a second registration
    // of the same number is detected.
    let number = staff_id_number();
    let shown = qualify_with(&mut p.admin, &engineer.id, &number, valid, valid)
        .await
        .expect("register the ID number");
    assert_eq!(shown.id_number_masked.chars().count(), 18);
    assert!(shown.id_number_masked.starts_with(&number[..3]));
    assert!(shown.id_number_masked.ends_with(&number[14..]));
    assert!(!shown.id_number_masked.contains(&number[6..14]));
    let twice = qualify_with(&mut p.admin, &bare_id, &number, valid, valid)
        .await
        .expect_err("the same number twice");
    assert_eq!(twice.code(), Code::AlreadyExists);
    assert!(
        twice.message().contains(&engineer.id),
        "{}",
        twice.message()
    );
    assert!(!twice.message().contains(&number), "no echo of the number");
    let bad = qualify_with(&mut p.admin, &bare_id, "330203198501011230", valid, valid)
        .await
        .expect_err("a wrong check character");
    assert_eq!(bad.code(), Code::InvalidArgument);

    // Auditors see the qualification, masked; the refusals are in the trail.
    let seen = p
        .auditor
        .governance
        .get_qualification(pb::GetQualificationRequest {
            principal_id: engineer.id.clone(),
        })
        .await
        .expect("auditors read qualifications")
        .into_inner()
        .qualification
        .expect("qualification");
    assert!(seen.qualified);
    assert_eq!(seen.id_number_masked, shown.id_number_masked);
    let records = p
        .auditor
        .audit
        .list_audit_records(pb::ListAuditRecordsRequest {
            after_seq: 0,
            limit: 1000,
        })
        .await
        .expect("audit")
        .into_inner()
        .records;
    let denied = records
        .iter()
        .filter(|r| {
            r.principal_id == engineer.id
                && r.outcome == "denied"
                && r.detail_json.contains("training expired")
        })
        .count();
    assert!(denied >= 2, "each refusal is audited ({denied})");
    assert!(
        !records.iter().any(|r| r.detail_json.contains(&number)),
        "the ID number never reaches the trail"
    );
}

/// Registers a principal and issues its certificate, without recording a qualification.
async fn register_unqualified(admin: &mut Client, domain: &Domain, dir: &str) -> (PathBuf, String) {
    let principal = admin
        .admin
        .create_principal(pb::CreatePrincipalRequest {
            real_name: format!("测试{dir}"),
            organisation: "测试单位".into(),
            role: pb::Role::Steward as i32,
            tenant_id: String::new(),
        })
        .await
        .expect("create principal")
        .into_inner()
        .principal
        .expect("principal");
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
    (out, principal.id)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_revoked_certificate_is_refused_on_its_next_call() {
    let domain = Domain::new();
    let server = domain.start();
    let mut p = people(&server, &domain, "r").await;
    let engineer = whoami(&mut p.engineer).await.expect("engineer");

    // Revoke every certificate of the engineer: the open connection's next call fails.
    let revoked = p
        .admin
        .governance
        .revoke_certificates(pb::RevokeCertificatesRequest {
            principal_id: engineer.id.clone(),
            fingerprint: String::new(),
            reason: "laptop lost".into(),
            disable_principal: false,
        })
        .await
        .expect("revoke")
        .into_inner();
    assert_eq!(revoked.revoked_fingerprints.len(), 1);
    let refused = whoami(&mut p.engineer).await.expect_err("revoked");
    assert_eq!(refused.code(), Code::Unauthenticated);
    let q = p
        .admin
        .governance
        .get_qualification(pb::GetQualificationRequest {
            principal_id: engineer.id.clone(),
        })
        .await
        .expect("qualification")
        .into_inner()
        .qualification
        .expect("qualification");
    assert!(q.certificates.iter().all(|c| c.revoked));
    assert_eq!(q.certificates[0].revoked_reason, "laptop lost");
    // Nothing left to revoke.
    let again = p
        .admin
        .governance
        .revoke_certificates(pb::RevokeCertificatesRequest {
            principal_id: engineer.id.clone(),
            fingerprint: String::new(),
            reason: "again".into(),
            disable_principal: false,
        })
        .await
        .expect_err("nothing to revoke");
    assert_eq!(reason(&again), "NO_CERTIFICATE");

    // Through the CLI: one certificate by fingerprint, and disabling the principal.
    let reviewer = whoami(&mut p.reviewer).await.expect("reviewer");
    let fingerprint = p
        .admin
        .governance
        .get_qualification(pb::GetQualificationRequest {
            principal_id: reviewer.id.clone(),
        })
        .await
        .expect("qualification")
        .into_inner()
        .qualification
        .expect("qualification")
        .certificates[0]
        .fingerprint
        .clone();
    let admin_creds = domain.creds("admin");
    let out = run_bin(&[
        "principal",
        "revoke-cert",
        &reviewer.id,
        "--fingerprint",
        &fingerprint,
        "--reason",
        "left the expert group",
        "--disable",
        "--as",
        admin_creds.to_str().unwrap(),
        "--server",
        &server.addr,
    ]);
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(text.contains(&fingerprint), "{text}");
    assert!(text.contains("disabled"), "{text}");
    assert_eq!(
        whoami(&mut p.reviewer).await.expect_err("revoked").code(),
        Code::Unauthenticated
    );
    // A disabled principal gets no new certificate.
    let (_, csr) = shuyu_client::new_key_and_csr(&reviewer.id).expect("csr");
    let refused = p
        .admin
        .admin
        .issue_certificate(pb::IssueCertificateRequest {
            principal_id: reviewer.id.clone(),
            csr_pem: csr,
            validity_days: 0,
        })
        .await
        .expect_err("disabled");
    assert_eq!(reason(&refused), "TARGET_DISABLED");
    // Others are unaffected; only admins revoke.
    whoami(&mut p.reviewer2)
        .await
        .expect("another reviewer still acts");
    let denied = p
        .auditor
        .governance
        .revoke_certificates(pb::RevokeCertificatesRequest {
            principal_id: engineer.id.clone(),
            fingerprint: String::new(),
            reason: "x".into(),
            disable_principal: true,
        })
        .await
        .expect_err("auditors do not revoke");
    assert_eq!(denied.code(), Code::PermissionDenied);
}

#[tokio::test(flavor = "multi_thread")]
async fn nothing_runs_outside_the_authorization_term_scope_or_plan() {
    let domain = Domain::new();
    let server = domain.start();
    let mut p = people(&server, &domain, "z").await;
    let dataset = ingest_people(&mut p.steward, "residents").await;
    let other = ingest_people(&mut p.steward, "residents_other").await;

    // A tenant without an authorization: nothing runs, and the refusal says why.
    let tenant_id = p
        .admin
        .admin
        .create_tenant(pb::CreateTenantRequest {
            name: "operator-unauthorized".into(),
        })
        .await
        .expect("tenant")
        .into_inner()
        .tenant
        .expect("tenant")
        .id;
    let creds = register(
        &mut p.admin,
        &domain,
        "engineer-na",
        pb::Role::Engineer,
        &tenant_id,
    )
    .await;
    let mut engineer = server.client(&creds).await;
    grant(&mut p.admin, &dataset.id, &tenant_id).await;
    let refused = engineer
        .jobs
        .submit_job(lab_sql("SELECT count(*) AS n FROM residents"))
        .await
        .expect_err("no authorization");
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert_eq!(reason(&refused), "NO_AUTHORIZATION");
    // Nor does anything else a tenant starts: a masked sample, an import, a quality ticket.
    for refused in outside_the_term(&mut engineer, &dataset).await {
        assert!(refused.contains("no authorization agreement"), "{refused}");
    }

    // An authorization of public-governance scenarios, without datasets or a plan yet.
    let now = now_ms();
    let authorization = p
        .admin
        .governance
        .create_authorization(pb::CreateAuthorizationRequest {
            tenant_id: tenant_id.clone(),
            dataset_ids: Vec::new(),
            categories: vec![pb::ScenarioCategory::PublicGovernance as i32],
            valid_from_ms: 0,
            valid_until_ms: now + 365 * DAY_MS,
            pricing_terms: "free (public governance)".into(),
        })
        .await
        .expect("authorize")
        .into_inner()
        .authorization
        .expect("authorization");
    assert!(!authorization.has_emergency_plan);
    // The lab is open: a lab job is accepted.
    let lab = engineer
        .run_lab_sql(
            "SELECT district, count(*) AS n FROM residents GROUP BY district",
            WAIT,
        )
        .await
        .expect("lab job under the authorization");
    assert_eq!(lab.status, pb::JobStatus::Succeeded as i32, "{}", lab.error);

    let apply = |category: pb::ScenarioCategory, ds: &pb::Dataset| pb::ApplyScenarioRequest {
        name: "区县统计".into(),
        purpose: "public governance statistics".into(),
        data_list: vec![pb::DataListItem {
            dataset_id: ds.id.clone(),
            columns: vec!["district".into(), "cost".into()],
        }],
        valid_from_ms: 0,
        valid_until_ms: now + 30 * DAY_MS,
        category: category as i32,
    };
    // The dataset is outside the authorization's scope.
    let refused = engineer
        .scenarios
        .apply_scenario(apply(pb::ScenarioCategory::PublicGovernance, &dataset))
        .await
        .expect_err("dataset outside scope");
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert!(
        refused
            .message()
            .contains(&format!("dataset {} is outside the scope", dataset.id)),
        "{}",
        refused.message()
    );
    p.admin
        .governance
        .amend_authorization_scope(pb::AmendAuthorizationScopeRequest {
            authorization_id: authorization.id.clone(),
            add_dataset_ids: vec![dataset.id.clone()],
            add_categories: Vec::new(),
        })
        .await
        .expect("add the dataset");
    // A commercial scenario is outside the categories.
    let refused = engineer
        .scenarios
        .apply_scenario(apply(pb::ScenarioCategory::Commercial, &dataset))
        .await
        .expect_err("category outside scope");
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert_eq!(reason(&refused), "OUTSIDE_AUTHORIZATION");
    // Another dataset, granted but not in scope, stays refused.
    p.admin
        .admin
        .grant_dataset(pb::GrantDatasetRequest {
            dataset_id: other.id.clone(),
            tenant_id: tenant_id.clone(),
        })
        .await
        .expect("grant without scope");
    let refused = engineer
        .scenarios
        .apply_scenario(apply(pb::ScenarioCategory::PublicGovernance, &other))
        .await
        .expect_err("granted is not authorized");
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert_eq!(reason(&refused), "OUTSIDE_AUTHORIZATION");

    let scenario = engineer
        .scenarios
        .apply_scenario(apply(pb::ScenarioCategory::PublicGovernance, &dataset))
        .await
        .expect("inside the scope")
        .into_inner()
        .scenario
        .expect("scenario");
    for approver in [&mut p.steward, &mut p.admin] {
        approver
            .scenarios
            .decide_scenario(pb::DecideScenarioRequest {
                scenario_id: scenario.id.clone(),
                approve: true,
                comment: String::new(),
            })
            .await
            .expect("approve");
    }

    // No emergency plan: production jobs and promotions are refused, naming the plan.
    let sql = "SELECT district, count(*) AS n FROM residents GROUP BY district";
    let refused = engineer
        .jobs
        .submit_job(production_sql(sql, &scenario.id))
        .await
        .expect_err("no plan");
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert_eq!(reason(&refused), "NO_EMERGENCY_PLAN");
    let refused = engineer
        .jobs
        .promote_job(pb::PromoteJobRequest {
            job_id: lab.id.clone(),
            scenario_id: scenario.id.clone(),
        })
        .await
        .expect_err("no plan");
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert_eq!(reason(&refused), "NO_EMERGENCY_PLAN");

    // With the plan: accepted, and it runs.
    set_plan(&mut p.admin, &authorization.id).await;
    let plan = engineer
        .governance
        .get_emergency_plan(pb::GetEmergencyPlanRequest {
            authorization_id: authorization.id.clone(),
        })
        .await
        .expect("engineers read their tenant's plan")
        .into_inner()
        .plan
        .expect("plan");
    assert_eq!(plan.actions.len(), 2);
    let job = engineer
        .run_sql(sql, &scenario.id, WAIT)
        .await
        .expect("production job with a plan");
    assert_eq!(job.status, pb::JobStatus::Succeeded as i32, "{}", job.error);
    // Another tenant's engineer cannot see this authorization.
    let hidden = p
        .engineer
        .governance
        .get_authorization(pb::GetAuthorizationRequest {
            authorization_id: authorization.id.clone(),
        })
        .await
        .expect_err("another tenant's");
    assert_eq!(hidden.code(), Code::NotFound);

    // Revoked: everything stops again, naming the revocation.
    p.admin
        .governance
        .revoke_authorization(pb::RevokeAuthorizationRequest {
            authorization_id: authorization.id.clone(),
            reason: "breach of contract".into(),
        })
        .await
        .expect("revoke");
    let refused = engineer
        .jobs
        .submit_job(production_sql(sql, &scenario.id))
        .await
        .expect_err("revoked");
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert_eq!(reason(&refused), "NO_AUTHORIZATION");
    assert!(
        refused.message().contains("was revoked"),
        "{}",
        refused.message()
    );
    let refused = engineer
        .exports
        .request_export(pb::RequestExportRequest {
            job_id: job.id.clone(),
            purpose: "planning".into(),
            format: pb::DataFormat::Csv as i32,
            recipient_id: p.recipient_id.clone(),
            permitted_use: "planning".into(),
            expires_in_days: 30,
        })
        .await
        .expect_err("no export outside the term");
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert_eq!(reason(&refused), "NO_AUTHORIZATION");
    for refused in outside_the_term(&mut engineer, &dataset).await {
        assert!(refused.contains("was revoked"), "{refused}");
    }
}

/// Tries what a tenant's engineer starts besides jobs and exports — a masked sample, an
/// import application, a data-quality ticket — and returns each refusal's message, asserting
/// it is FAILED_PRECONDITION (R25).
async fn outside_the_term(engineer: &mut Client, dataset: &pb::Dataset) -> Vec<String> {
    let sample = engineer
        .catalog
        .sample_dataset(pb::SampleDatasetRequest {
            dataset_id: dataset.id.clone(),
            n_rows: 5,
        })
        .await
        .map(drop);
    let import = engineer
        .stewardship
        .apply_import(pb::ApplyImportRequest {
            name: "members".into(),
            description: String::new(),
            source: "会员系统".into(),
            legal_basis: "会员书面同意".into(),
            columns: vec![column("tier", "int64", "ordinary", "keep")],
        })
        .await
        .map(drop);
    let ticket = engineer
        .stewardship
        .file_quality_ticket(pb::FileQualityTicketRequest {
            dataset_id: dataset.id.clone(),
            column: "birth_date".into(),
            description: "出生日期晚于就诊日期".into(),
        })
        .await
        .map(drop);
    [("sample", sample), ("import", import), ("ticket", ticket)]
        .into_iter()
        .map(|(what, result)| match result {
            Err(status) if status.code() == Code::FailedPrecondition => status.message().to_owned(),
            other => panic!("{what} outside an authorization: {other:?}"),
        })
        .collect()
}

/// An admin's renewal of `authorization_id` until `valid_until_ms`.
async fn renew(
    admin: &mut Client,
    authorization_id: &str,
    valid_until_ms: i64,
) -> Result<tonic::Response<pb::AuthorizationResponse>, tonic::Status> {
    admin
        .governance
        .renew_authorization(pb::RenewAuthorizationRequest {
            authorization_id: authorization_id.to_owned(),
            valid_until_ms,
            pricing_terms: String::new(),
        })
        .await
}

async fn renewal_notes(client: &mut Client, authorization_id: &str) -> usize {
    client
        .session
        .list_notifications(pb::ListNotificationsRequest {
            after_id: 0,
            limit: 1000,
        })
        .await
        .expect("notifications")
        .into_inner()
        .notifications
        .iter()
        .filter(|n| n.kind == "renewal_window" && n.r#ref == authorization_id)
        .count()
}

#[tokio::test(flavor = "multi_thread")]
async fn renewal_has_a_window_is_announced_once_and_expiry_stops_work() {
    let domain = Domain::new();
    // A sweep every second, to see a window that opens as the clock moves.
    let server = domain.start_with("[governance]\nrenewal_sweep_secs = 1\n", None);
    let mut p = people(&server, &domain, "w").await;

    // A year-long term: renewal opens six months before its end, not now.
    let a = p
        .admin
        .governance
        .get_authorization(pb::GetAuthorizationRequest {
            authorization_id: p.authorization_id.clone(),
        })
        .await
        .expect("authorization")
        .into_inner()
        .authorization
        .expect("authorization");
    assert_eq!(a.status, pb::AuthorizationStatus::Active as i32);
    assert_eq!(
        a.renewal_opens_at_ms,
        shuyu_policy::add_months(a.valid_until_ms, -6)
    );
    let early = renew(&mut p.admin, &a.id, a.valid_until_ms + 365 * DAY_MS)
        .await
        .expect_err("too early");
    assert_eq!(reason(&early), "RENEWAL_NOT_OPEN");
    assert!(
        early
            .message()
            .contains(&format!("opens on {}", date(a.renewal_opens_at_ms))),
        "{}",
        early.message()
    );
    assert_eq!(renewal_notes(&mut p.engineer, &a.id).await, 0);
    // Terms are limited to the configured three years.
    let too_long = p
        .admin
        .governance
        .create_authorization(pb::CreateAuthorizationRequest {
            tenant_id: p.tenant_id.clone(),
            dataset_ids: Vec::new(),
            categories: vec![pb::ScenarioCategory::Commercial as i32],
            valid_from_ms: 0,
            valid_until_ms: now_ms() + (3 * 366 + 1) * DAY_MS,
            pricing_terms: "x".into(),
        })
        .await
        .expect_err("over three years");
    assert_eq!(too_long.code(), Code::InvalidArgument);

    // A second tenant whose term ends in an hour: its window is open at once, and the
    // tenant's people and the admins are told, once.
    let tenant_id = p
        .admin
        .admin
        .create_tenant(pb::CreateTenantRequest {
            name: "operator-short".into(),
        })
        .await
        .expect("tenant")
        .into_inner()
        .tenant
        .expect("tenant")
        .id;
    let creds = register(
        &mut p.admin,
        &domain,
        "engineer-short",
        pb::Role::Engineer,
        &tenant_id,
    )
    .await;
    let mut engineer = server.client(&creds).await;
    let short = p
        .admin
        .governance
        .create_authorization(pb::CreateAuthorizationRequest {
            tenant_id: tenant_id.clone(),
            dataset_ids: Vec::new(),
            categories: vec![pb::ScenarioCategory::Commercial as i32],
            valid_from_ms: 0,
            valid_until_ms: domain.now_ms() + HOUR_MS,
            pricing_terms: "x".into(),
        })
        .await
        .expect("short term")
        .into_inner()
        .authorization
        .expect("authorization");
    assert_eq!(renewal_notes(&mut engineer, &short.id).await, 1);
    assert_eq!(renewal_notes(&mut p.admin, &short.id).await, 1);
    assert_eq!(
        renewal_notes(&mut p.engineer, &short.id).await,
        0,
        "another tenant is not told"
    );

    // Work is accepted inside the term, refused once it has ended: two hours later on the
    // domain's clock.
    engineer
        .jobs
        .submit_job(lab_sql("SELECT 1 AS one"))
        .await
        .expect("inside the term");
    domain.advance_clock(2 * HOUR);
    eventually("the short authorization to expire", WAIT, async || {
        let status = engineer
            .governance
            .get_authorization(pb::GetAuthorizationRequest {
                authorization_id: short.id.clone(),
            })
            .await
            .expect("own tenant's")
            .into_inner()
            .authorization
            .expect("authorization")
            .status;
        (status == pb::AuthorizationStatus::Expired as i32).then_some(())
    })
    .await;
    let refused = engineer
        .jobs
        .submit_job(lab_sql("SELECT 1 AS one"))
        .await
        .expect_err("expired");
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert!(
        refused
            .message()
            .contains(&format!("authorization {} expired on", short.id)),
        "{}",
        refused.message()
    );

    // Renewal inside the window is accepted; the new term starts now and work resumes.
    let renewed = renew(&mut p.admin, &short.id, domain.now_ms() + 365 * DAY_MS)
        .await
        .expect("renewal inside the window")
        .into_inner()
        .authorization
        .expect("authorization");
    assert_eq!(renewed.renewed_from, short.id);
    assert_eq!(renewed.status, pb::AuthorizationStatus::Active as i32);
    engineer
        .jobs
        .submit_job(lab_sql("SELECT 1 AS one"))
        .await
        .expect("work resumes under the renewed term");
    let old = engineer
        .governance
        .get_authorization(pb::GetAuthorizationRequest {
            authorization_id: short.id.clone(),
        })
        .await
        .expect("own tenant's")
        .into_inner()
        .authorization
        .expect("authorization");
    assert_eq!(old.status, pb::AuthorizationStatus::Superseded as i32);
    assert_eq!(old.renewed_by, renewed.id);
    // Renewed once only; and the old term's notice was not repeated by later sweeps.
    let twice = renew(&mut p.admin, &short.id, domain.now_ms() + 365 * DAY_MS)
        .await
        .expect_err("already renewed");
    assert_eq!(reason(&twice), "ALREADY_RENEWED");
    assert_eq!(renewal_notes(&mut engineer, &short.id).await, 1);
    assert_eq!(renewal_notes(&mut p.admin, &short.id).await, 1);

    // The CLI lists the tenant's authorizations.
    let admin_creds = domain.creds("admin");
    let out = run_bin(&[
        "authorization",
        "list",
        "--tenant",
        &tenant_id,
        "--as",
        admin_creds.to_str().unwrap(),
        "--server",
        &server.addr,
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains(&short.id) && text.contains("superseded"),
        "{text}"
    );
    assert!(text.contains(&renewed.id), "{text}");

    // Seven months on, the year-long term's window has opened: its tenant is told, once, by
    // the sweep, and the renewal that was too early is accepted.
    let into_window = a.renewal_opens_at_ms - domain.now_ms() + 30 * DAY_MS;
    domain.advance_clock(std::time::Duration::from_millis(
        u64::try_from(into_window).expect("the window is ahead"),
    ));
    eventually("the year-long term's renewal notice", WAIT, async || {
        (renewal_notes(&mut p.engineer, &a.id).await == 1).then_some(())
    })
    .await;
    let renewed = renew(&mut p.admin, &a.id, a.valid_until_ms + 365 * DAY_MS)
        .await
        .expect("renewal inside the window")
        .into_inner()
        .authorization
        .expect("authorization");
    assert_eq!(renewed.renewed_from, a.id);
    assert_eq!(renewal_notes(&mut p.engineer, &a.id).await, 1);
}
