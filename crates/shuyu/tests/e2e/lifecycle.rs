//! A tenant's lifecycle end to end (R26, R27, R28, R32): suspension closes access, cancels
//! work and freezes exports until resumption; a passed fix-by deadline tells the admins;
//! termination destroys the keys so that nothing of the tenant decrypts (not even copies of
//! its files taken before), reports it, and leaves the audit trail verifiable; an emergency
//! stop halts a long job at once; a drill is recorded.

use std::collections::BTreeSet;
use std::time::Instant;

use std::path::Path;

use shuyu_client::{Client, lab_sql, production_sql, v1 as pb};
use tonic::Code;

use crate::harness::fixtures::*;
use crate::harness::*;

/// A query that runs for minutes (a four-way cross join of the 301-row table).
const SLOW_SQL: &str = "SELECT sum(a.cost + b.cost + c.cost + d.cost) AS s \
     FROM residents a, residents b, residents c, residents d";
const AGGREGATE_SQL: &str = "SELECT district, count(*) AS n FROM residents GROUP BY district";

async fn submit(engineer: &mut Client, scenario: &str, sql: &str) -> pb::Job {
    engineer
        .jobs
        .submit_job(production_sql(sql, scenario))
        .await
        .expect("submit")
        .into_inner()
        .job
        .expect("job")
}

async fn job(engineer: &mut Client, id: &str) -> pb::Job {
    engineer
        .jobs
        .get_job(pb::GetJobRequest { job_id: id.into() })
        .await
        .expect("get job")
        .into_inner()
        .job
        .expect("job")
}

/// Polls until the job's worker reports that it is running and reading.
async fn wait_running(engineer: &mut Client, id: &str) {
    eventually(&format!("job {id} to run and read"), WAIT, async || {
        let j = job(engineer, id).await;
        assert!(!shuyu_client::is_finished(&j), "job {id} never ran: {j:?}");
        j.progress
            .as_ref()
            .is_some_and(|p| p.stage == "running" && p.bytes_scanned > 0)
            .then_some(())
    })
    .await;
}

async fn tenant_status(admin: &mut Client, tenant_id: &str) -> pb::TenantStatus {
    admin
        .lifecycle
        .get_tenant_status(pb::GetTenantStatusRequest {
            tenant_id: tenant_id.into(),
        })
        .await
        .expect("tenant status")
        .into_inner()
        .status
        .expect("status")
}

async fn notifications(client: &mut Client, kind: &str, tenant_id: &str) -> Vec<pb::Notification> {
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
        .into_iter()
        .filter(|n| n.kind == kind && n.tenant_id == tenant_id)
        .collect()
}

fn failed_precondition<T: std::fmt::Debug>(
    result: Result<tonic::Response<T>, tonic::Status>,
) -> String {
    match result {
        Err(status) if status.code() == Code::FailedPrecondition => status.message().to_owned(),
        other => panic!("expected FAILED_PRECONDITION, got {other:?}"),
    }
}

/// Runs the CLI as `who` against `server`; returns (exit code, stdout + stderr).
fn cli(domain: &Domain, server: &Server, who: &str, args: &[&str]) -> (i32, String) {
    let creds = domain.creds(who);
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--as", creds.to_str().unwrap(), "--server", &server.addr]);
    let out = run_bin(&all);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

/// An aggregate job, exported and approved by both reviewers: a product of the tenant.
async fn approved_product(p: &mut People, scenario: &str) -> pb::Export {
    let aggregate = p
        .engineer
        .run_sql(AGGREGATE_SQL, scenario, WAIT)
        .await
        .unwrap();
    assert_eq!(
        aggregate.status,
        pb::JobStatus::Succeeded as i32,
        "{}",
        aggregate.error
    );
    let export = request_export(p, &aggregate.id).await;
    approve(&mut p.reviewer, &export.id, "ok").await.unwrap();
    let approved = approve(&mut p.reviewer2, &export.id, "ok").await.unwrap();
    assert_eq!(approved.status, pb::ExportStatus::Approved as i32);
    approved
}

#[tokio::test(flavor = "multi_thread")]
async fn suspension_closes_access_cancels_work_freezes_exports_until_resumed() {
    let domain = Domain::new();
    let server = domain.start();
    let Approved {
        people: mut p,
        scenario_id: sc,
        datasets: _,
    } = approved_scenario(&server, &domain, "sus", ["residents"]).await;

    // A product already approved, and an export half-way through its review.
    let product = approved_product(&mut p, &sc).await;
    let pending_job = p.engineer.run_sql(AGGREGATE_SQL, &sc, WAIT).await.unwrap();
    let pending = request_export(&mut p, &pending_job.id).await;
    let half = approve(&mut p.reviewer, &pending.id, "ok").await.unwrap();
    assert_eq!(
        (half.approvals, half.status),
        (1, pb::ExportStatus::InReview as i32)
    );
    let slow = submit(&mut p.engineer, &sc, SLOW_SQL).await;
    wait_running(&mut p.engineer, &slow.id).await;

    // The admin suspends the tenant from the CLI.
    let (code_suspend, out) = cli(
        &domain,
        &server,
        "admin",
        &[
            "tenant",
            "suspend",
            &p.tenant_id,
            "--reason",
            "数据使用超出授权范围",
        ],
    );
    assert_eq!(code_suspend, 0, "{out}");
    assert!(out.contains("suspended"), "{out}");
    assert!(out.contains(&slow.id), "the running job is stopped: {out}");

    // The engineer's next call is refused, saying why and until when.
    let refused = failed_precondition(p.engineer.session.who_am_i(pb::WhoAmIRequest {}).await);
    assert!(refused.contains("tenant suspended since"), "{refused}");
    assert!(refused.contains("fix by"), "{refused}");
    assert!(refused.contains("数据使用超出授权范围"), "{refused}");
    failed_precondition(
        p.engineer
            .jobs
            .submit_job(production_sql("SELECT 1 AS one", &sc))
            .await,
    );

    // Its running job is cancelled (seen by the admin: the engineer may not look).
    let status = eventually("the suspended tenant's job to stop", WAIT, async || {
        let status = tenant_status(&mut p.admin, &p.tenant_id).await;
        (status.jobs_unfinished == 0).then_some(status)
    })
    .await;
    assert_eq!(status.state, "suspended");
    assert_eq!(status.exports_frozen, 2, "{status:?}");
    let default_fix = status.fix_by_ms - status.suspended_at_ms;
    assert_eq!(default_fix, 30 * 86_400_000, "the default is 30 days");
    assert!(!status.overdue);

    // Its exports are frozen: no vote, no download, no Flight fetch.
    let vote = approve(&mut p.reviewer2, &pending.id, "ok").await;
    assert!(
        matches!(&vote, Err(s) if s.code() == Code::FailedPrecondition && s.message().contains("frozen")),
        "{vote:?}"
    );
    assert_eq!(
        code(p.recipient.download(&product.id).await),
        Code::FailedPrecondition
    );
    assert_eq!(
        code(p.recipient.fetch_product(&product.id).await),
        Code::FailedPrecondition
    );

    // A fix-by deadline that has passed tells the admins, once.
    assert!(
        notifications(&mut p.admin, "tenant_due_for_termination", &p.tenant_id)
            .await
            .is_empty()
    );
    let fix_by = rfc3339_ms(status.suspended_at_ms);
    let (code_amend, out) = cli(
        &domain,
        &server,
        "admin",
        &[
            "tenant",
            "suspend",
            &p.tenant_id,
            "--reason",
            "数据使用超出授权范围",
            "--fix-by",
            &fix_by,
        ],
    );
    assert_eq!(code_amend, 0, "{out}");
    assert!(out.contains("OVERDUE"), "{out}");
    let told = notifications(&mut p.admin, "tenant_due_for_termination", &p.tenant_id).await;
    assert_eq!(told.len(), 1, "{told:?}");
    assert!(told[0].body.contains("tenant terminate"), "{told:?}");
    // The background sweep runs every 2 s; it must not tell them again: wait until two more
    // sweeps have run (each logs a line), then read the count again.
    let sweeps = || server.log_text().matches("overdue sweep ran").count();
    let before = sweeps();
    eventually("two more overdue sweeps", WAIT, async || {
        (sweeps() >= before + 2).then_some(())
    })
    .await;
    let (code_status, out) = cli(
        &domain,
        &server,
        "admin",
        &["tenant", "status", &p.tenant_id],
    );
    assert_eq!(code_status, 0, "{out}");
    assert!(out.contains("OVERDUE"), "{out}");
    assert_eq!(
        notifications(&mut p.admin, "tenant_due_for_termination", &p.tenant_id)
            .await
            .len(),
        1
    );
    // Other roles may not suspend; auditors may read the status.
    failed_or_denied(
        p.reviewer
            .lifecycle
            .resume_tenant(pb::ResumeTenantRequest {
                tenant_id: p.tenant_id.clone(),
                note: String::new(),
            })
            .await,
    );
    assert_eq!(
        tenant_status(&mut p.auditor, &p.tenant_id).await.state,
        "suspended"
    );

    // Resumption reopens access; the frozen exports resume where they were.
    let (code_resume, out) = cli(
        &domain,
        &server,
        "admin",
        &["tenant", "resume", &p.tenant_id],
    );
    assert_eq!(code_resume, 0, "{out}");
    assert!(out.contains("active"), "{out}");
    p.engineer
        .session
        .who_am_i(pb::WhoAmIRequest {})
        .await
        .expect("access reopens");
    let cancelled = job(&mut p.engineer, &slow.id).await;
    assert_eq!(
        cancelled.status,
        pb::JobStatus::Cancelled as i32,
        "{cancelled:?}"
    );
    let told = notifications(&mut p.engineer, "tenant_suspended", &p.tenant_id).await;
    assert!(!told.is_empty(), "the tenant's people are told");
    let approved = approve(&mut p.reviewer2, &pending.id, "ok").await.unwrap();
    assert_eq!(
        (approved.approvals, approved.status),
        (2, pb::ExportStatus::Approved as i32)
    );
    p.recipient
        .download(&product.id)
        .await
        .expect("download resumes");
    p.recipient
        .fetch_product(&product.id)
        .await
        .expect("fetch resumes");
    let again = p
        .admin
        .lifecycle
        .resume_tenant(pb::ResumeTenantRequest {
            tenant_id: p.tenant_id.clone(),
            note: String::new(),
        })
        .await;
    assert_eq!(status_reason(again), "NOT_SUSPENDED");
    let missing = p
        .admin
        .lifecycle
        .suspend_tenant(pb::SuspendTenantRequest {
            tenant_id: "t_missing".into(),
            reason: "x".into(),
            fix_days: 0,
            fix_by_ms: 0,
        })
        .await;
    assert_eq!(status_code(missing), Code::NotFound);
    let no_reason = p
        .admin
        .lifecycle
        .suspend_tenant(pb::SuspendTenantRequest {
            tenant_id: p.tenant_id.clone(),
            reason: " ".into(),
            fix_days: 0,
            fix_by_ms: 0,
        })
        .await;
    assert_eq!(status_code(no_reason), Code::InvalidArgument);
}

/// RFC 3339 to the millisecond (the CLI's `--fix-by`).
fn rfc3339_ms(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn failed_or_denied<T: std::fmt::Debug>(result: Result<tonic::Response<T>, tonic::Status>) {
    assert_eq!(status_code(result), Code::PermissionDenied);
}

/// Copies every file under `from` into `to`, keeping relative paths; returns them.
fn copy_tree(from: &Path, to: &Path, root: &Path, copied: &mut BTreeSet<String>) {
    let Ok(entries) = std::fs::read_dir(from) else {
        return;
    };
    for entry in entries {
        let path = entry.unwrap().path();
        if path.is_dir() {
            copy_tree(&path, to, root, copied);
        } else {
            let relative = path.strip_prefix(root).unwrap().to_path_buf();
            let target = to.join(&relative);
            std::fs::create_dir_all(target.parent().unwrap()).unwrap();
            std::fs::copy(&path, &target).unwrap();
            copied.insert(relative.to_string_lossy().into_owned());
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn termination_shreds_keys_deletes_files_and_proves_nothing_decrypts() {
    let domain = Domain::new();
    let server = domain.start();
    let mut a = people(&server, &domain, "ta").await;
    let mut b = people(&server, &domain, "tb").await;
    let dataset = ingest_people(&mut a.steward, "residents").await;
    grant(&mut a.admin, &dataset.id, &a.tenant_id).await;
    grant(&mut a.admin, &dataset.id, &b.tenant_id).await;
    let sc_a = scenario(&mut a, &[&dataset]).await;
    let sc_b =
        scenario_approved_by(&mut b.engineer, &mut a.steward, &mut a.admin, &[&dataset]).await;

    // Tenant A: a product downloaded by its recipient, an export in review, a lab job.
    let product = approved_product(&mut a, &sc_a).await;
    a.recipient.download(&product.id).await.expect("download");
    let pending_job = a
        .engineer
        .run_sql(AGGREGATE_SQL, &sc_a, WAIT)
        .await
        .unwrap();
    let pending = request_export(&mut a, &pending_job.id).await;
    let lab = a
        .engineer
        .run_lab_sql(
            "SELECT district, count(*) AS n FROM residents GROUP BY district",
            WAIT,
        )
        .await
        .unwrap();
    assert_eq!(lab.status, pb::JobStatus::Succeeded as i32, "{}", lab.error);
    // Tenant B: the control, whose files must still decrypt.
    let b_job = b
        .engineer
        .run_sql(AGGREGATE_SQL, &sc_b, WAIT)
        .await
        .unwrap();
    assert_eq!(
        b_job.status,
        pb::JobStatus::Succeeded as i32,
        "{}",
        b_job.error
    );

    // Copies of A's files, taken before termination.
    let objects = domain.data.join("objects");
    let copies = domain.data.with_extension("copies");
    let mut copied = BTreeSet::new();
    for dir in ["results", "exports"] {
        copy_tree(
            &objects.join(dir).join(&a.tenant_id),
            &copies,
            &objects,
            &mut copied,
        );
    }
    assert!(copied.iter().any(|p| p.ends_with(".parquet")), "{copied:?}");
    assert!(copied.iter().any(|p| p.ends_with(".pkg")), "{copied:?}");

    // Termination needs the id repeated, then runs from the CLI.
    let (code_wrong, _) = cli(
        &domain,
        &server,
        "admin",
        &[
            "tenant",
            "terminate",
            &a.tenant_id,
            "--reason",
            "x",
            "--confirm",
            "t_other",
        ],
    );
    assert_ne!(code_wrong, 0);
    let (code_term, out) = cli(
        &domain,
        &server,
        "admin",
        &[
            "tenant",
            "terminate",
            &a.tenant_id,
            "--reason",
            "逾期未整改 (R26)",
            "--confirm",
            &a.tenant_id,
        ],
    );
    assert_eq!(code_term, 0, "{out}");
    assert!(
        out.contains("RESULT: nothing of the tenant decrypts."),
        "{out}"
    );

    // Its authorization ended with it.
    let authorization = a
        .auditor
        .governance
        .get_authorization(pb::GetAuthorizationRequest {
            authorization_id: a.authorization_id.clone(),
        })
        .await
        .expect("auditors read authorizations")
        .into_inner()
        .authorization
        .expect("authorization");
    assert!(authorization.revoked_at_ms > 0, "{authorization:?}");
    assert_eq!(authorization.revoked_reason, "tenant terminated");

    // The exit report: signed, listing every key and file, each tried and failed.
    let report = a
        .auditor
        .lifecycle
        .get_exit_report(pb::GetExitReportRequest {
            tenant_id: a.tenant_id.clone(),
        })
        .await
        .expect("auditors read exit reports")
        .into_inner()
        .report
        .expect("report");
    let signing_key = std::fs::read_to_string(domain.data.join("domain-signing.pub")).unwrap();
    shuyu_vault::verify_signature(
        &hex::decode(signing_key.trim()).unwrap(),
        report.report_json.as_bytes(),
        &hex::decode(&report.signature_hex).unwrap(),
    )
    .expect("the exit report is signed with the domain signing key");
    let json: serde_json::Value = serde_json::from_str(&report.report_json).unwrap();
    let keks: BTreeSet<String> = json["destroyed"]["keks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap().to_owned())
        .collect();
    for kek in [
        format!("tenant:{}", a.tenant_id),
        format!("pseudonym:{}", a.tenant_id),
        format!("job:{}", pending_job.id),
        format!("job:{}", lab.id),
    ] {
        assert!(keks.contains(&kek), "{kek} not destroyed: {keks:?}");
    }
    assert!(
        !keks
            .iter()
            .any(|k| k.contains(&b.tenant_id) || k.contains(&b_job.id))
    );
    let listed: BTreeSet<String> = json["proof"]["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            assert_eq!(o["decrypted"], serde_json::json!(false), "{o}");
            o["path"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(
        listed, copied,
        "the report lists exactly the tenant's files"
    );
    assert!(
        json["proof"]["keks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|k| k["unwraps"] == serde_json::json!(false))
    );
    assert_eq!(json["proof"]["all_failed"], serde_json::json!(true));
    let obligations = &json["obligations"];
    assert_eq!(
        obligations["exports_revoked"],
        serde_json::json!([product.id])
    );
    assert_eq!(
        obligations["pending_exports_rejected"],
        serde_json::json!([pending.id])
    );
    assert_eq!(
        obligations["products_valid_at_recipients"][0]["downloads"],
        serde_json::json!(1)
    );
    assert!(obligations["usage"]["n_jobs"].as_u64().unwrap() >= 3);
    assert!(report.report_text.contains("does not decrypt"));

    // Its files are gone, its people and products shut out, and it cannot come back.
    for path in &copied {
        assert!(!objects.join(path).exists(), "{path} still exists");
    }
    let refused = failed_precondition(a.engineer.session.who_am_i(pb::WhoAmIRequest {}).await);
    assert!(refused.contains("terminated"), "{refused}");
    assert_eq!(
        code(a.recipient.download(&product.id).await),
        Code::FailedPrecondition
    );
    let resume = a
        .admin
        .lifecycle
        .resume_tenant(pb::ResumeTenantRequest {
            tenant_id: a.tenant_id.clone(),
            note: String::new(),
        })
        .await;
    assert!(failed_precondition(resume).contains("never resumed"));
    let again = a
        .admin
        .lifecycle
        .terminate_tenant(pb::TerminateTenantRequest {
            tenant_id: a.tenant_id.clone(),
            reason: "again".into(),
        })
        .await;
    failed_precondition(again);
    // Its name stays reserved.
    let same_name = a
        .admin
        .admin
        .create_tenant(pb::CreateTenantRequest {
            name: "operator-ta".into(),
        })
        .await;
    assert_eq!(status_code(same_name), Code::AlreadyExists);
    // Tenant B is untouched.
    b.engineer
        .session
        .who_am_i(pb::WhoAmIRequest {})
        .await
        .expect("B works");

    // The audit trail still verifies, online and offline, and keeps A's records.
    let verified = a
        .auditor
        .audit
        .verify_audit(pb::VerifyAuditRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(verified.ok, "{}", verified.problem);
    server.kill();
    let out = run_bin(&[
        "audit",
        "verify",
        "--data-dir",
        domain.data.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    // The copies taken before termination, put back where they were (the object path is
    // the AAD), do not decrypt through the server's own key store and engine; tenant B's
    // result does (the control).
    for path in &copied {
        let target = objects.join(path);
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::copy(copies.join(path), &target).unwrap();
    }
    let opened = shuyu_server::domain::open(
        &domain.data,
        &shuyu_server::domain::MetadataConfig::default(),
    )
    .expect("open the domain");
    let storage = shuyu_engine::Storage::local(&opened.dir.objects()).unwrap();
    let envelope = opened.envelope();
    let engine = shuyu_engine::Engine::new(storage.clone(), envelope.clone());
    // A production job's result lies under its scenario's results.
    let b_file = format!(
        "results/{}/{}/{}/result.parquet",
        b.tenant_id, sc_b, b_job.id
    );
    let control = engine
        .read_result(&b_file)
        .await
        .expect("B's result decrypts");
    assert!(!control.is_empty());
    use shuyu_vault::KekProvider;
    assert!(opened.keys.kek(&format!("tenant:{}", b.tenant_id)).is_ok());
    for kek in &keks {
        assert!(opened.keys.kek(kek).is_err(), "{kek} still unwraps");
    }
    let mut tried = 0;
    for path in &copied {
        if path.ends_with(".parquet") {
            assert!(engine.read_result(path).await.is_err(), "{path} decrypts");
        } else {
            let stored = storage.get(path).await.unwrap();
            assert!(
                shuyu_server::package::open(&envelope, path, &stored).is_err(),
                "{path} opens"
            );
        }
        tried += 1;
    }
    println!(
        "termination: {} keys destroyed, {tried} copied files tried, none decrypts",
        keks.len()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn emergency_stop_halts_a_long_job_at_once_and_a_drill_is_recorded() {
    let domain = Domain::new();
    let server = domain.start_with("tenant_max_running_jobs = 1\n", None);
    let Approved {
        people: mut p,
        scenario_id: sc,
        datasets: _,
    } = approved_scenario(&server, &domain, "es", ["residents"]).await;

    let running = submit(&mut p.engineer, &sc, SLOW_SQL).await;
    let queued = submit(&mut p.engineer, &sc, SLOW_SQL).await;
    wait_running(&mut p.engineer, &running.id).await;

    let called = Instant::now();
    let stopped = p
        .admin
        .lifecycle
        .emergency_stop(pb::EmergencyStopRequest {
            tenant_id: p.tenant_id.clone(),
            reason: "疑似数据泄露".into(),
        })
        .await
        .expect("emergency stop")
        .into_inner();
    let returned = Instant::now();
    let ids: BTreeSet<&str> = stopped.jobs_stopped.iter().map(String::as_str).collect();
    assert_eq!(
        ids,
        BTreeSet::from([running.id.as_str(), queued.id.as_str()])
    );
    // Poll tightly until both jobs are reported terminal (the engineer may still read).
    let mut terminal = BTreeSet::new();
    while terminal.len() < 2 {
        for id in [&running.id, &queued.id] {
            let j = job(&mut p.engineer, id).await;
            if matches!(
                pb::JobStatus::try_from(j.status),
                Ok(pb::JobStatus::Cancelled | pb::JobStatus::Failed)
            ) {
                terminal.insert(id.clone());
            }
        }
        assert!(returned.elapsed() < WAIT, "the jobs were never halted");
    }
    // Measured and printed, not asserted: a loaded machine must not fail the test on time
    // (WAIT above is only a hang guard). What is asserted is that the stop ended the job:
    // the slow query runs for minutes, and it was cancelled, not finished.
    println!(
        "emergency stop: jobs halted {} ms after the RPC returned ({} ms after it was called)",
        returned.elapsed().as_millis(),
        called.elapsed().as_millis()
    );
    let halted = job(&mut p.engineer, &running.id).await;
    assert_eq!(
        halted.status,
        pb::JobStatus::Cancelled as i32,
        "{}",
        halted.error
    );
    let status = stopped.status.unwrap();
    assert_eq!(status.state, "stopped");

    // Stopped: reads allowed, new work refused; released by an admin.
    let refused = failed_precondition(
        p.engineer
            .jobs
            .submit_job(production_sql("SELECT 1 AS one", &sc))
            .await,
    );
    assert!(refused.contains("emergency stop"), "{refused}");
    assert!(
        !notifications(&mut p.admin, "emergency_stop", &p.tenant_id)
            .await
            .is_empty()
    );
    let (code_release, out) = cli(
        &domain,
        &server,
        "admin",
        &["tenant", "release", &p.tenant_id],
    );
    assert_eq!(code_release, 0, "{out}");
    let quick = p
        .engineer
        .run_sql("SELECT count(*) AS n FROM residents", &sc, WAIT)
        .await
        .expect("work resumes after release");
    assert_eq!(
        quick.status,
        pb::JobStatus::Succeeded as i32,
        "{}",
        quick.error
    );

    // A drill: the stop on current work, timed, recorded, released by itself.
    let drilled = submit(&mut p.engineer, &sc, SLOW_SQL).await;
    wait_running(&mut p.engineer, &drilled.id).await;
    let (code_drill, out) = cli(
        &domain,
        &server,
        "admin",
        &[
            "tenant",
            "drill",
            &p.tenant_id,
            "--plan",
            &p.authorization_id,
            "--note",
            "季度演练",
        ],
    );
    assert_eq!(code_drill, 0, "{out}");
    assert!(out.contains("halted"), "{out}");
    let drills = p
        .auditor
        .lifecycle
        .list_drills(pb::ListDrillsRequest {
            tenant_id: p.tenant_id.clone(),
        })
        .await
        .expect("auditors read drills")
        .into_inner()
        .drills;
    assert_eq!(drills.len(), 1, "{drills:?}");
    let drill = &drills[0];
    println!(
        "drill: halt {} ms, outcome {}",
        drill.halt_ms, drill.outcome
    );
    assert_eq!(drill.outcome, "halted");
    assert_eq!(drill.jobs_stopped, std::slice::from_ref(&drilled.id));
    // The drill is recorded against the authorization's emergency plan (R32).
    assert_eq!(drill.plan_id, p.authorization_id);
    let plan = p
        .auditor
        .governance
        .get_emergency_plan(pb::GetEmergencyPlanRequest {
            authorization_id: p.authorization_id.clone(),
        })
        .await
        .expect("auditors read plans")
        .into_inner()
        .plan
        .expect("plan");
    assert_eq!(plan.last_drill_at_ms, drill.started_at_ms);
    // A plan that is not the tenant's is refused.
    let (code_foreign, out) = cli(
        &domain,
        &server,
        "admin",
        &["tenant", "drill", &p.tenant_id, "--plan", "au_not_a_plan"],
    );
    assert_ne!(code_foreign, 0, "{out}");
    assert!(out.contains("au_not_a_plan"), "{out}");
    assert!(drill.halt_ms > 0 && drill.released_at_ms >= drill.started_at_ms);
    assert_eq!(
        tenant_status(&mut p.admin, &p.tenant_id).await.state,
        "active"
    );
    let cancelled = job(&mut p.engineer, &drilled.id).await;
    assert_eq!(cancelled.status, pb::JobStatus::Cancelled as i32);
    let (code_list, out) = cli(
        &domain,
        &server,
        "admin",
        &["tenant", "drills", &p.tenant_id],
    );
    assert_eq!(code_list, 0, "{out}");
    assert!(out.contains(&drill.id), "{out}");
    // Only admins stop; engineers may not.
    let denied = p
        .engineer
        .lifecycle
        .emergency_stop(pb::EmergencyStopRequest {
            tenant_id: p.tenant_id.clone(),
            reason: "x".into(),
        })
        .await;
    assert_eq!(status_code(denied), Code::PermissionDenied);
}

/// Polls job `id` until it has finished (WAIT is only a hang guard) and returns it.
async fn finished(engineer: &mut Client, id: &str) -> pb::Job {
    eventually(&format!("job {id} to end"), WAIT, async || {
        let j = job(engineer, id).await;
        shuyu_client::is_finished(&j).then_some(j)
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn an_ended_authorization_closes_the_tenants_work_at_once_and_tells_the_admins() {
    let domain = Domain::new();
    // No notice period here, so that the notice of termination comes at once too (the
    // default of 30 days is checked in the server's unit tests).
    let server = domain.start_with(
        "tenant_max_running_jobs = 1\n[lifecycle]\ntermination_notice_days = 0\n",
        None,
    );
    let Approved {
        people: mut p,
        scenario_id: sc,
        datasets: [dataset],
    } = approved_scenario(&server, &domain, "end", ["residents"]).await;
    let aggregate = p.engineer.run_sql(AGGREGATE_SQL, &sc, WAIT).await.unwrap();
    let in_review = request_export(&mut p, &aggregate.id).await;
    assert_eq!(in_review.status, pb::ExportStatus::InReview as i32);

    // Revocation (R27): a running and a queued job are stopped at once.
    let running = submit(&mut p.engineer, &sc, SLOW_SQL).await;
    let queued = submit(&mut p.engineer, &sc, SLOW_SQL).await;
    wait_running(&mut p.engineer, &running.id).await;
    p.admin
        .governance
        .revoke_authorization(pb::RevokeAuthorizationRequest {
            authorization_id: p.authorization_id.clone(),
            reason: "违反授权协议".into(),
        })
        .await
        .expect("revoke");
    let stopped = finished(&mut p.engineer, &running.id).await;
    assert_eq!(
        stopped.status,
        pb::JobStatus::Cancelled as i32,
        "{stopped:?}"
    );
    let never_ran = finished(&mut p.engineer, &queued.id).await;
    assert_eq!(
        never_ran.status,
        pb::JobStatus::Cancelled as i32,
        "{never_ran:?}"
    );
    assert!(
        never_ran.error.contains("was revoked"),
        "{}",
        never_ran.error
    );
    // New work is refused; the tenant's people may still read what happened.
    let refused = failed_precondition(
        p.engineer
            .jobs
            .submit_job(production_sql(AGGREGATE_SQL, &sc))
            .await,
    );
    assert!(refused.contains("was revoked"), "{refused}");
    // Nothing of it is released any more: its export in review takes no approval.
    let vote = approve(&mut p.reviewer, &in_review.id, "ok").await;
    assert!(
        matches!(&vote, Err(s) if s.code() == Code::FailedPrecondition
            && s.message().contains("was revoked")),
        "{vote:?}"
    );
    // The admins are told that the work was closed and (no notice period here) that the
    // tenant is due for termination; the tenant is told its work was closed. Once each.
    let closed = notifications(&mut p.admin, "authorization_ended", &p.tenant_id).await;
    assert_eq!(closed.len(), 1, "{closed:?}");
    assert!(closed[0].body.contains("was revoked"), "{closed:?}");
    let due = notifications(&mut p.admin, "tenant_due_for_termination", &p.tenant_id).await;
    assert_eq!(due.len(), 1, "{due:?}");
    assert!(due[0].body.contains("tenant terminate"), "{due:?}");
    let told = notifications(&mut p.engineer, "authorization_ended", &p.tenant_id).await;
    assert_eq!(told.len(), 1, "{told:?}");
    // The closing is on the record, with the jobs it stopped.
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
    let closing: Vec<&pb::AuditRecord> = records
        .iter()
        .filter(|r| r.action == "authorization_ended" && r.tenant_id == p.tenant_id)
        .collect();
    assert!(
        closing
            .iter()
            .any(|r| r.detail_json.contains(&running.id) && r.detail_json.contains(&queued.id)),
        "{closing:?}"
    );

    // Expiry without renewal: a second tenant's term ends in an hour, with a long lab job of
    // it submitted inside the term; the job does not outlive the term, two hours later.
    let tenant_id = p
        .admin
        .admin
        .create_tenant(pb::CreateTenantRequest {
            name: "operator-lapsing".into(),
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
        "engineer-lapsing",
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
            dataset_ids: vec![dataset.id.clone()],
            categories: vec![pb::ScenarioCategory::Commercial as i32],
            valid_from_ms: 0,
            valid_until_ms: domain.now_ms() + HOUR_MS,
            pricing_terms: "x".into(),
        })
        .await
        .expect("a short term")
        .into_inner()
        .authorization
        .expect("authorization");
    grant(&mut p.admin, &dataset.id, &tenant_id).await;
    p.admin
        .admin
        .set_lab_access(pb::SetLabAccessRequest {
            tenant_id: tenant_id.clone(),
            lab_until_ms: now_ms() + 30 * 86_400_000,
        })
        .await
        .expect("lab access");
    let lab = engineer
        .jobs
        .submit_job(lab_sql(SLOW_SQL))
        .await
        .expect("inside the term")
        .into_inner()
        .job
        .expect("job");
    domain.advance_clock(2 * HOUR);
    // Running when the term ends: cancelled by the server's sweep; still waiting: refused
    // when its turn comes. Either way it ends, for the authorization.
    let ended = finished(&mut engineer, &lab.id).await;
    assert!(
        ended.status == pb::JobStatus::Cancelled as i32
            || (ended.status == pb::JobStatus::Failed as i32
                && ended.error.contains("authorization")),
        "{ended:?}"
    );
    let closed = eventually(
        "the admins to be told the authorization ended",
        WAIT,
        async || {
            let closed = notifications(&mut p.admin, "authorization_ended", &tenant_id).await;
            (!closed.is_empty()).then_some(closed)
        },
    )
    .await;
    assert_eq!(closed[0].r#ref, short.id);
    assert!(
        closed[0].body.contains("expired without renewal"),
        "{closed:?}"
    );
}

/// The built-in policy with a 2-second job time limit (under a version of its own).
fn policy_with_short_timeout() -> String {
    include_str!("../../../../policies/default.toml")
        .lines()
        .map(|line| {
            if line.starts_with("timeout_secs = ") {
                "timeout_secs = 2".to_owned()
            } else if line.starts_with("version = ") {
                "version = \"test-failure-allowance\"".to_owned()
            } else {
                line.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test(flavor = "multi_thread")]
async fn failed_production_jobs_past_the_allowance_freeze_submission_until_an_admin_lifts_it() {
    let domain = Domain::new();
    let config = "[jobs]\nfailed_production_allowance = 1\n";
    let policy = policy_with_short_timeout();
    assert!(policy.contains("timeout_secs = 2") && policy.contains("test-failure-allowance"));
    let server = domain.start_with(config, Some(&policy));
    let Approved {
        people: mut p,
        scenario_id: sc,
        datasets: _,
    } = approved_scenario(&server, &domain, "fa", ["residents"]).await;
    let failed = |j: &pb::Job| j.status == pb::JobStatus::Failed as i32;

    // A query that does not plan fails before it runs: it does not count.
    let bad = submit(&mut p.engineer, &sc, "SELECT no_such_column FROM residents").await;
    let bad = p.engineer.wait_job(&bad.id, WAIT).await.unwrap();
    assert!(failed(&bad), "{bad:?}");
    // A job killed at its time limit ran: it counts, and one is within the allowance.
    let first = p.engineer.run_sql(SLOW_SQL, &sc, WAIT).await.unwrap();
    assert!(
        failed(&first) && first.error.contains("time limit"),
        "{first:?}"
    );
    assert_eq!(
        tenant_status(&mut p.admin, &p.tenant_id)
            .await
            .production_frozen_at_ms,
        0
    );

    // The second overruns it; the job queued behind it never starts.
    let second = submit(&mut p.engineer, &sc, SLOW_SQL).await;
    let queued = submit(&mut p.engineer, &sc, AGGREGATE_SQL).await;
    let second = p.engineer.wait_job(&second.id, WAIT).await.unwrap();
    assert!(failed(&second), "{second:?}");
    let queued = p.engineer.wait_job(&queued.id, WAIT).await.unwrap();
    assert_eq!(queued.status, pb::JobStatus::Cancelled as i32, "{queued:?}");
    assert!(queued.error.contains("frozen"), "{:?}", queued.error);
    let refusal = failed_precondition(
        p.engineer
            .jobs
            .submit_job(production_sql(AGGREGATE_SQL, &sc))
            .await,
    );
    assert!(
        refusal.contains("frozen") && refusal.contains("2 production jobs failed"),
        "{refusal}"
    );
    let status = tenant_status(&mut p.admin, &p.tenant_id).await;
    assert!(status.production_frozen_at_ms > 0, "{status:?}");
    assert_eq!(
        status.state, "active",
        "only production submission is frozen"
    );

    // The admins are alerted, the tenant told, the freeze audited.
    let alerts = p
        .admin
        .oversight
        .list_alerts(pb::ListAlertsRequest {
            include_acked: false,
        })
        .await
        .unwrap()
        .into_inner()
        .alerts;
    assert!(
        alerts
            .iter()
            .any(|a| a.kind == "production_frozen" && a.tenant_id == p.tenant_id),
        "{alerts:?}"
    );
    assert_eq!(
        notifications(&mut p.engineer, "production_frozen", &p.tenant_id)
            .await
            .len(),
        1
    );
    let records = super::jobs::audit_records(&mut p.auditor).await;
    let frozen = records
        .iter()
        .find(|r| r.action == "production_frozen" && r.target == format!("tenant:{}", p.tenant_id))
        .expect("the freeze is audited");
    assert!(
        frozen.detail_json.contains(&second.id),
        "{}",
        frozen.detail_json
    );
    assert!(
        !frozen.detail_json.contains(&bad.id),
        "{}",
        frozen.detail_json
    );

    // It survives a restart.
    drop(server);
    let server = domain.start_with(config, Some(&policy));
    let mut engineer = server.client(&domain.creds("engineer-fa")).await;
    let refusal = failed_precondition(
        engineer
            .jobs
            .submit_job(production_sql(AGGREGATE_SQL, &sc))
            .await,
    );
    assert!(refusal.contains("frozen"), "{refusal}");

    // Only an admin lifts it, with a note; audited, and the tenant is told.
    let (code, out) = cli(
        &domain,
        &server,
        "engineer-fa",
        &["tenant", "lift-freeze", &p.tenant_id, "--note", "mine"],
    );
    assert_ne!(code, 0, "{out}");
    let (code, out) = cli(
        &domain,
        &server,
        "admin",
        &[
            "tenant",
            "lift-freeze",
            &p.tenant_id,
            "--note",
            "两次超时，查询已核对",
        ],
    );
    assert_eq!(code, 0, "{out}");
    assert!(!out.contains("production submission frozen"), "{out}");
    let (code, out) = cli(
        &domain,
        &server,
        "admin",
        &["tenant", "lift-freeze", &p.tenant_id, "--note", "again"],
    );
    assert_ne!(code, 0, "nothing left to lift: {out}");
    let mut auditor = server.client(&domain.creds("auditor-fa")).await;
    let records = super::jobs::audit_records(&mut auditor).await;
    assert!(records.iter().any(|r| r.action == "suspend_tenant"
        && r.outcome == "ok"
        && r.detail_json.contains("production_freeze")
        && r.detail_json.contains("两次超时")));
    assert_eq!(
        notifications(&mut engineer, "production_unfrozen", &p.tenant_id)
            .await
            .len(),
        1
    );
    let ok = engineer.run_sql(AGGREGATE_SQL, &sc, WAIT).await.unwrap();
    assert_eq!(ok.status, pb::JobStatus::Succeeded as i32, "{}", ok.error);
}
