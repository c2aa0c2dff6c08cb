//! Oversight (issue 5): alerts raised from the trail and told to the admins (R30), operation
//! reports and public disclosure summaries with the right counts and nothing confidential
//! (R34, R36), auditors reading everything and writing nothing (R35), signed checkpoints
//! of the audit trail verified offline, consistent over time, and a rewritten trail caught
//! (R27, R33).

use std::path::Path;

use shuyu_client::{Client, v1 as pb};
use tonic::Code;

use crate::harness::fixtures::*;
use crate::harness::*;

fn cli(server: &Server, creds: &Path, args: &[&str]) -> std::process::Output {
    let mut all: Vec<&str> = args.to_vec();
    let creds = creds.to_str().unwrap().to_owned();
    all.extend(["--as", &creds, "--server", &server.addr]);
    run_bin(&all)
}

fn text(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

async fn principal_id(client: &mut Client) -> String {
    client
        .session
        .who_am_i(pb::WhoAmIRequest {})
        .await
        .unwrap()
        .into_inner()
        .principal
        .unwrap()
        .id
}

async fn open_alerts(client: &mut Client) -> Vec<pb::Alert> {
    client
        .oversight
        .list_alerts(pb::ListAlertsRequest {
            include_acked: false,
        })
        .await
        .expect("list alerts")
        .into_inner()
        .alerts
}

#[tokio::test(flavor = "multi_thread")]
async fn denied_streaks_and_refused_exports_raise_alerts_told_to_the_admins() {
    let domain = Domain::new();
    let server = domain.start_with(
        "[oversight]\nmonitor_interval_secs = 0\nrejected_exports_streak = 2\n",
        None,
    );
    let mut p = people(&server, &domain, "al").await;
    let engineer_id = principal_id(&mut p.engineer).await;
    // Five denied calls: the engineer reads the audit trail.
    for _ in 0..5 {
        let denied = p
            .engineer
            .audit
            .list_audit_records(pb::ListAuditRecordsRequest::default())
            .await;
        assert_eq!(status_code(denied), Code::PermissionDenied);
    }
    // Two exports refused by the checks in a row.
    let dataset = ingest_people(&mut p.steward, "residents").await;
    grant(&mut p.admin, &dataset.id, &p.tenant_id).await;
    let sc = scenario(&mut p, &[&dataset]).await;
    for _ in 0..2 {
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
    }
    assert!(
        open_alerts(&mut p.admin)
            .await
            .iter()
            .all(|a| a.kind != "denied_calls")
    );

    // The admin runs the monitor on demand, from the CLI.
    let out = cli(&server, &domain.creds("admin"), &["alerts", "scan"]);
    assert!(out.status.success(), "{}", text(&out));
    let printed = text(&out);
    assert!(printed.contains("denied_calls"), "{printed}");
    assert!(printed.contains("rejected_exports"), "{printed}");

    let alerts = open_alerts(&mut p.admin).await;
    let denied = alerts
        .iter()
        .find(|a| a.kind == "denied_calls")
        .expect("a denied-calls alert");
    assert_eq!(denied.subject, format!("principal:{engineer_id}"));
    assert_eq!(denied.tenant_id, p.tenant_id);
    assert_eq!(denied.count, 5);
    assert_eq!(denied.severity, "medium");
    let rejected = alerts
        .iter()
        .find(|a| a.kind == "rejected_exports")
        .expect("a refused-exports alert");
    assert_eq!(rejected.subject, format!("tenant:{}", p.tenant_id));
    assert_eq!(rejected.count, 2);
    // Evidence: counts and ids, no data value.
    for a in &alerts {
        for canary in [CANARY_NAME, CANARY_ID, CANARY_DIAGNOSIS, CANARY_COST] {
            assert!(!a.evidence_json.contains(canary), "{a:?}");
        }
    }

    // The admins were told, in their notifications.
    let notes = p
        .admin
        .session
        .list_notifications(pb::ListNotificationsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .notifications;
    let told = notes
        .iter()
        .find(|n| n.kind == "alert" && n.r#ref == format!("alert:{}", denied.id))
        .expect("a notification of the alert");
    assert!(told.subject.contains("denied calls"), "{told:?}");

    // Deduplicated: scanning again raises nothing; one more denial counts on the open alert.
    let again = p
        .admin
        .oversight
        .scan_alerts(pb::ScanAlertsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(
        again.raised.iter().all(|a| a.kind != "denied_calls"),
        "{again:?}"
    );
    let denied_call = p
        .engineer
        .oversight
        .list_alerts(pb::ListAlertsRequest::default())
        .await;
    assert_eq!(status_code(denied_call), Code::PermissionDenied);
    let again = p
        .admin
        .oversight
        .scan_alerts(pb::ScanAlertsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(again.n_updated >= 1);
    let alerts = open_alerts(&mut p.admin).await;
    let denied = alerts.iter().find(|a| a.kind == "denied_calls").unwrap();
    assert_eq!(denied.count, 6);
    assert_eq!(
        alerts.iter().filter(|a| a.kind == "denied_calls").count(),
        1
    );

    // Acknowledged from the CLI: no longer open; a second ack is refused.
    let id = denied.id.to_string();
    let out = cli(&server, &domain.creds("admin"), &["alerts", "ack", &id]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        open_alerts(&mut p.admin)
            .await
            .iter()
            .all(|a| a.kind != "denied_calls")
    );
    let twice = p
        .admin
        .oversight
        .ack_alert(pb::AckAlertRequest {
            alert_id: denied.id,
        })
        .await;
    assert_eq!(status_reason(twice), "ALREADY_ACKNOWLEDGED");
    let missing = p
        .admin
        .oversight
        .ack_alert(pb::AckAlertRequest { alert_id: 999_999 })
        .await;
    assert_eq!(status_code(missing), Code::NotFound);
    let out = cli(
        &server,
        &domain.creds("admin"),
        &["alerts", "list", "--all"],
    );
    assert!(text(&out).contains("acked by"), "{}", text(&out));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_periodic_tasks_raise_alerts_and_take_checkpoints_unasked() {
    let domain = Domain::new();
    let server = domain.start_with(
        "[oversight]\nmonitor_interval_secs = 1\ncheckpoint_interval_secs = 1\n",
        None,
    );
    let mut p = people(&server, &domain, "pt").await;
    for _ in 0..5 {
        let denied = p
            .engineer
            .oversight
            .scan_alerts(pb::ScanAlertsRequest {})
            .await;
        assert_eq!(status_code(denied), Code::PermissionDenied);
    }
    // WAIT is only a hang guard: the monitor runs every second.
    eventually(
        "the monitor to raise a denied_calls alert by itself",
        WAIT,
        async || {
            open_alerts(&mut p.auditor)
                .await
                .iter()
                .any(|a| a.kind == "denied_calls")
                .then_some(())
        },
    )
    .await;
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
    for action in ["scan_alerts", "take_checkpoint"] {
        assert!(
            records
                .iter()
                .any(|r| r.action == action && r.principal_id == "system"),
            "no {action} by the server itself"
        );
    }
}

fn ymd(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap()
        .format("%Y-%m-%d")
        .to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn reports_count_right_in_md_and_html_and_the_summary_leaks_nothing() {
    const QUERY_CANARY: &str = "CANARYQUERY_77";
    const COMMENT_CANARY: &str = "CANARYCOMMENT_55";
    let domain = Domain::new();
    let server = domain.start();
    let Approved {
        people: mut p,
        scenario_id: sc,
        datasets: _,
    } = approved_scenario(&server, &domain, "rp", ["residents", "households"]).await;
    let aggregate = p
        .engineer
        .run_sql(
            &format!(
                "SELECT district, count(*) AS n FROM residents WHERE name <> '{QUERY_CANARY}' GROUP BY district"
            ),
            &sc,
            WAIT,
        )
        .await
        .unwrap();
    assert_eq!(
        aggregate.status,
        pb::JobStatus::Succeeded as i32,
        "{}",
        aggregate.error
    );
    let fusion = p
        .engineer
        .run_sql(
            "SELECT a.district, count(*) AS n FROM residents a JOIN households b ON a.id_number = b.id_number GROUP BY a.district",
            &sc,
            WAIT,
        )
        .await
        .unwrap();
    assert_eq!(
        fusion.status,
        pb::JobStatus::Succeeded as i32,
        "{}",
        fusion.error
    );
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
    let export = request_export(&mut p, &aggregate.id).await;
    approve(&mut p.reviewer, &export.id, COMMENT_CANARY)
        .await
        .unwrap();
    let approved = approve(&mut p.reviewer2, &export.id, COMMENT_CANARY)
        .await
        .unwrap();
    assert_eq!(approved.status, pb::ExportStatus::Approved as i32);
    p.recipient.download(&export.id).await.expect("download");
    let denied = p
        .engineer
        .audit
        .list_audit_records(pb::ListAuditRecordsRequest::default())
        .await;
    assert_eq!(status_code(denied), Code::PermissionDenied);

    let (from, to) = (ymd(now_ms() - 86_400_000), ymd(now_ms() + 2 * 86_400_000));
    let dir = tempfile::tempdir().unwrap();
    let md_path = dir.path().join("report.md");
    let out = cli(
        &server,
        &domain.creds("admin"),
        &[
            "report",
            "operation",
            "--tenant",
            &p.tenant_id,
            "--from",
            &from,
            "--to",
            &to,
            "--format",
            "md",
            "--out",
            md_path.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let md = std::fs::read_to_string(&md_path).unwrap();
    for line in [
        "- jobs finished: 3",
        "- production jobs (under a scenario): 3",
        "- jobs reading more than one dataset: 1",
        "| households + residents | 1 |",
        "- requested: 2",
        "- approved: 1",
        "- refused by the automated checks: 1",
        "- denied calls: 1",
        "- products approved in the period: 1",
        "- downloads of these products: 1",
    ] {
        assert!(md.contains(line), "{line:?} missing from:\n{md}");
    }
    // A commercial product: charged for its rows and its download.
    assert!(md.contains("- charges to date, yuan: 110.00"), "{md}");

    let html_path = dir.path().join("report.html");
    let out = cli(
        &server,
        &domain.creds("auditor-rp"),
        &[
            "report",
            "operation",
            "--tenant",
            &p.tenant_id,
            "--from",
            &from,
            "--to",
            &to,
            "--format",
            "html",
            "--out",
            html_path.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let html = std::fs::read_to_string(&html_path).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(html.contains("<dt>jobs finished</dt><dd>3</dd>"), "{html}");
    assert!(html.contains("<dt>approved</dt><dd>1</dd>"), "{html}");

    let out = cli(
        &server,
        &domain.creds("auditor-rp"),
        &[
            "report",
            "disclosure",
            "--tenant",
            &p.tenant_id,
            "--from",
            &from,
            "--to",
            &to,
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let summary = String::from_utf8_lossy(&out.stdout).into_owned();
    for wanted in [
        "| residents | 3 |",
        "| households | 1 |",
        "测试场景",
        "end-to-end test",
        "commercial",
        "- production jobs: 3",
        "- data products provided: 1",
    ] {
        assert!(
            summary.contains(wanted),
            "{wanted:?} missing from:\n{summary}"
        );
    }
    let html_summary = p
        .auditor
        .oversight
        .disclosure_summary(pb::ReportRequest {
            tenant_id: p.tenant_id.clone(),
            from_ms: now_ms() - 86_400_000,
            to_ms: now_ms() + 86_400_000,
            format: pb::ReportFormat::Html as i32,
        })
        .await
        .unwrap()
        .into_inner()
        .content;
    for report in [&md, &html, &summary, &html_summary] {
        for secret in [
            QUERY_CANARY,
            COMMENT_CANARY,
            "SELECT",
            CANARY_NAME,
            CANARY_ID,
            CANARY_MOBILE,
            CANARY_DIAGNOSIS,
            CANARY_COST,
        ] {
            assert!(!report.contains(secret), "{secret} leaked into:\n{report}");
        }
    }
    // Another period: nothing.
    let empty = p
        .admin
        .oversight
        .operation_report(pb::ReportRequest {
            tenant_id: p.tenant_id.clone(),
            from_ms: 0,
            to_ms: 0,
            format: pb::ReportFormat::Markdown as i32,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        empty.content.contains("- jobs finished: 0"),
        "{}",
        empty.content
    );
    assert!(empty.to_ms <= now_ms());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_admin_records_the_annual_evaluation_and_the_tenant_is_told() {
    use chrono::Datelike;
    let domain = Domain::new();
    let server = domain.start();
    let mut p = people(&server, &domain, "ev").await;
    let last_year = chrono::Utc::now().year() - 1;
    let year = last_year.to_string();
    let args = |outcome: &str, note: &str| -> Vec<String> {
        [
            "report",
            "evaluate",
            "--tenant",
            &p.tenant_id,
            "--year",
            &year,
            "--outcome",
            outcome,
            "--note",
            note,
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect()
    };
    let run = |creds: &str, args: Vec<String>| {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        cli(&server, &domain.creds(creds), &refs)
    };
    // Auditors read, never evaluate; fix and fail need a note.
    let out = run("auditor-ev", args("pass", ""));
    assert!(!out.status.success());
    assert!(
        text(&out).contains("PermissionDenied") || text(&out).contains("may not"),
        "{}",
        text(&out)
    );
    let out = run("admin", args("fix", ""));
    assert!(text(&out).contains("note is required"), "{}", text(&out));
    let out = run("admin", args("fix", "审计日志留存不足"));
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("fixes due"), "{}", text(&out));
    // Once per tenant and year.
    let again = p
        .admin
        .oversight
        .record_evaluation(pb::RecordEvaluationRequest {
            tenant_id: p.tenant_id.clone(),
            year: last_year,
            outcome: pb::EvaluationOutcome::Pass as i32,
            note: String::new(),
        })
        .await;
    assert_eq!(status_code(again), Code::AlreadyExists);
    let this_year = p
        .admin
        .oversight
        .record_evaluation(pb::RecordEvaluationRequest {
            tenant_id: p.tenant_id.clone(),
            year: last_year + 1,
            outcome: pb::EvaluationOutcome::Pass as i32,
            note: String::new(),
        })
        .await;
    assert_eq!(status_code(this_year), Code::InvalidArgument);
    let unknown = p
        .admin
        .oversight
        .record_evaluation(pb::RecordEvaluationRequest {
            tenant_id: "t_nosuchtenant".into(),
            year: last_year,
            outcome: pb::EvaluationOutcome::Pass as i32,
            note: String::new(),
        })
        .await;
    assert_eq!(status_code(unknown), Code::NotFound);
    // The tenant's engineer is told; the last year's report shows it.
    let notes = p
        .engineer
        .session
        .list_notifications(pb::ListNotificationsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .notifications;
    let told = notes
        .iter()
        .find(|n| n.kind == "annual_evaluation")
        .expect("the tenant is told");
    assert!(told.subject.contains("fix in 30 days"), "{told:?}");
    let report = p
        .auditor
        .oversight
        .operation_report(pb::ReportRequest {
            tenant_id: p.tenant_id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .content;
    assert!(
        report.contains(&format!("| {last_year} | fix\\_in\\_30\\_days |")),
        "{report}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn auditors_read_every_oversight_view_and_write_nothing() {
    let domain = Domain::new();
    let server = domain.start();
    let mut p = people(&server, &domain, "au").await;
    let a = &mut p.auditor;
    let report = pb::ReportRequest {
        tenant_id: p.tenant_id.clone(),
        ..Default::default()
    };
    // Reads.
    a.oversight
        .list_alerts(pb::ListAlertsRequest::default())
        .await
        .expect("alerts");
    a.oversight
        .operation_report(report.clone())
        .await
        .expect("operation report");
    a.oversight
        .disclosure_summary(report.clone())
        .await
        .expect("disclosure summary");
    let cp = a
        .oversight
        .audit_checkpoint(pb::AuditCheckpointRequest::default())
        .await
        .expect("checkpoint")
        .into_inner();
    a.oversight
        .audit_inclusion_proof(pb::AuditInclusionProofRequest {
            seq: 1,
            tree_size: cp.tree_size,
        })
        .await
        .expect("inclusion proof");
    a.session
        .list_notifications(pb::ListNotificationsRequest::default())
        .await
        .expect("notifications");
    a.jobs
        .get_usage(pb::GetUsageRequest::default())
        .await
        .expect("usage");
    a.scenarios
        .list_scenarios(pb::ListScenariosRequest {})
        .await
        .expect("scenarios");
    a.audit
        .list_audit_records(pb::ListAuditRecordsRequest::default())
        .await
        .expect("audit");
    // Writes.
    assert_eq!(
        status_code(
            a.oversight
                .ack_alert(pb::AckAlertRequest { alert_id: 1 })
                .await
        ),
        Code::PermissionDenied
    );
    assert_eq!(
        status_code(a.oversight.scan_alerts(pb::ScanAlertsRequest {}).await),
        Code::PermissionDenied
    );
    assert_eq!(
        status_code(a.oversight.purge_audit(pb::PurgeAuditRequest {}).await),
        Code::PermissionDenied
    );
    assert_eq!(
        status_code(
            a.admin
                .create_tenant(pb::CreateTenantRequest { name: "x".into() })
                .await
        ),
        Code::PermissionDenied
    );
    // Engineers see none of it.
    assert_eq!(
        status_code(p.engineer.oversight.operation_report(report.clone()).await),
        Code::PermissionDenied
    );
    assert_eq!(
        status_code(
            p.engineer
                .oversight
                .audit_checkpoint(pb::AuditCheckpointRequest::default())
                .await
        ),
        Code::PermissionDenied
    );
    // Precise statuses.
    let unknown = pb::ReportRequest {
        tenant_id: "t_nosuchtenant".into(),
        ..Default::default()
    };
    assert_eq!(
        status_code(p.auditor.oversight.operation_report(unknown).await),
        Code::NotFound
    );
    let reversed = pb::ReportRequest {
        from_ms: 10,
        to_ms: 5,
        ..report.clone()
    };
    assert_eq!(
        status_code(p.auditor.oversight.disclosure_summary(reversed).await),
        Code::InvalidArgument
    );
    // A checkpoint held of more records than the trail has (a trail cut down): the current
    // checkpoint comes back without a proof, and the holder's verification says "rewritten".
    let beyond = p
        .auditor
        .oversight
        .audit_checkpoint(pb::AuditCheckpointRequest {
            consistency_from: 1 << 40,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(beyond.tree_size < 1 << 40 && beyond.consistency_proof.is_empty());
    // The auditor's attempts are in the trail, denied.
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
    for action in ["manage_alerts", "purge_audit"] {
        assert!(
            records
                .iter()
                .any(|r| r.action == action && r.outcome == "denied" && r.role == "auditor"),
            "{action}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn checkpoints_verify_offline_stay_consistent_and_catch_a_rewritten_trail() {
    let domain = Domain::new_sqlite();
    let server = domain.start();
    let mut p = people(&server, &domain, "cp").await;
    let auditor = domain.creds("auditor-cp");
    let key = domain.data.join("domain-signing.pub");
    let key = key.to_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();

    let out = cli(
        &server,
        &auditor,
        &["audit", "checkpoint", "--out", &path("old.ckpt")],
    );
    assert!(out.status.success(), "{}", text(&out));
    let old = std::fs::read_to_string(path("old.ckpt")).unwrap();
    assert!(old.starts_with("shuyu-audit/"), "{old}");
    // A backup of the data dir as it is now (restored later: a trail rolled back).
    let backup = domain
        .data
        .with_extension(format!("backup-{}", uuid_like()));
    copy_dir(&domain.data, &backup);
    // More activity, then a newer checkpoint with a consistency proof from the old one.
    p.admin
        .admin
        .create_tenant(pb::CreateTenantRequest {
            name: "later".into(),
        })
        .await
        .unwrap();
    let out = cli(
        &server,
        &auditor,
        &[
            "audit",
            "checkpoint",
            "--out",
            &path("new.ckpt"),
            "--since",
            &path("old.ckpt"),
            "--proof-out",
            &path("proof"),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let verify = |new: &str, older: &str, proof: &str| {
        run_bin(&[
            "audit",
            "verify-checkpoint",
            new,
            "--public-key",
            key,
            "--older",
            older,
            "--proof",
            proof,
        ])
    };
    let ok = verify(&path("new.ckpt"), &path("old.ckpt"), &path("proof"));
    assert!(ok.status.success(), "{}", text(&ok));
    assert!(text(&ok).contains("not rewritten"), "{}", text(&ok));
    // An inclusion proof of record 3 in the new checkpoint.
    let out = cli(
        &server,
        &auditor,
        &[
            "audit",
            "prove",
            "3",
            "--checkpoint",
            &path("new.ckpt"),
            "--public-key",
            key,
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    // A checkpoint edited by hand, or checked with another key, fails.
    std::fs::write(
        path("forged.ckpt"),
        std::fs::read_to_string(path("new.ckpt"))
            .unwrap()
            .replacen('\n', "\n1", 1),
    )
    .unwrap();
    let bad = run_bin(&[
        "audit",
        "verify-checkpoint",
        &path("forged.ckpt"),
        "--public-key",
        key,
    ]);
    assert_eq!(bad.status.code(), Some(2), "{}", text(&bad));
    let bad = run_bin(&[
        "audit",
        "verify-checkpoint",
        &path("new.ckpt"),
        "--public-key",
        &"ab".repeat(32),
    ]);
    assert_eq!(bad.status.code(), Some(2), "{}", text(&bad));
    // Only admins purge; nothing is past its retention yet.
    let out = cli(&server, &domain.creds("admin"), &["audit", "purge"]);
    assert!(text(&out).contains("redacted 0"), "{}", text(&out));
    drop(p);
    server.kill();

    // Someone with the database (even with the master key) rewrites record 2.
    let copy = domain
        .data
        .with_extension(format!("rewrite-{}", uuid_like()));
    copy_dir(&domain.data, &copy);
    {
        let conn = rusqlite::Connection::open(copy.join("meta.db")).unwrap();
        let n = conn
            .execute(
                "UPDATE audit SET outcome = 'ok', hash = ?1 WHERE seq = 2",
                [shuyu_vault::sha256_hex(b"a rewritten record")],
            )
            .unwrap();
        assert_eq!(n, 1);
    }
    let rewritten = Server::start(&copy);
    // The server signs nothing over a trail that does not verify, raises an alert, and the
    // holder of the old checkpoint is told the trail was rewritten (exit status 2).
    let out = cli(
        &rewritten,
        &auditor,
        &[
            "audit",
            "checkpoint",
            "--out",
            &path("after.ckpt"),
            "--since",
            &path("old.ckpt"),
            "--proof-out",
            &path("proof2"),
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("rewritten"), "{}", text(&out));
    assert!(!std::path::Path::new(&path("after.ckpt")).exists());
    let alerts = cli(&rewritten, &domain.creds("admin"), &["alerts", "list"]);
    assert!(
        text(&alerts).contains("audit_trail_broken"),
        "{}",
        text(&alerts)
    );
    drop(rewritten);
    // The same check against the untouched newer checkpoint still passes.
    assert!(
        verify(&path("new.ckpt"), &path("old.ckpt"), &path("proof"))
            .status
            .success()
    );

    // The data dir restored from the earlier backup: its own trail verifies, but it is not an
    // extension of the newer checkpoint an outsider holds: "rewritten", exit status 2, from
    // `audit checkpoint --since` and from `audit verify-checkpoint` alike.
    let restored = Server::start(&backup);
    let out = cli(
        &restored,
        &auditor,
        &[
            "audit",
            "checkpoint",
            "--out",
            &path("restored.ckpt"),
            "--since",
            &path("new.ckpt"),
            "--proof-out",
            &path("proof3"),
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("rewritten"), "{}", text(&out));
    let caught = verify(&path("restored.ckpt"), &path("new.ckpt"), &path("proof3"));
    assert_eq!(caught.status.code(), Some(2), "{}", text(&caught));
    assert!(text(&caught).contains("rewritten"), "{}", text(&caught));
}

#[test]
fn retention_below_the_legal_minimum_is_refused_at_start() {
    let domain = Domain::new();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("shuyu.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = {:?}\n[oversight]\nnetwork_log_days = 90\n",
            domain.data.display().to_string()
        ),
    )
    .unwrap();
    let out = run_bin(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--config",
        config.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(text(&out).contains("network_log_days"), "{}", text(&out));
}

#[tokio::test(flavor = "multi_thread")]
async fn auditors_read_jobs_exports_and_products_never_values_and_admins_read_the_trail() {
    let domain = Domain::new();
    let server = domain.start();
    let Approved {
        people: mut p,
        scenario_id: sc,
        datasets: _,
    } = approved_scenario(&server, &domain, "au2", ["residents"]).await;
    let sql = "SELECT district, count(*) AS n, avg(cost) AS mean FROM residents GROUP BY district";
    let job = p.engineer.run_sql(sql, &sc, WAIT).await.unwrap();
    assert_eq!(job.status, pb::JobStatus::Succeeded as i32, "{}", job.error);
    assert!(
        job.preview.as_ref().is_some_and(|t| !t.rows.is_empty()),
        "the engineer sees a preview"
    );
    let export = request_export(&mut p, &job.id).await;
    approve(&mut p.reviewer, &export.id, "ok").await.unwrap();
    let approved = approve(&mut p.reviewer2, &export.id, "ok").await.unwrap();
    assert_eq!(approved.status, pb::ExportStatus::Approved as i32);

    // R35: the auditor reads the job with its query, never its preview of values.
    let a = &mut p.auditor;
    let seen = a
        .jobs
        .get_job(pb::GetJobRequest {
            job_id: job.id.clone(),
        })
        .await
        .expect("auditors read jobs")
        .into_inner()
        .job
        .expect("job");
    assert_eq!(seen.sql, sql);
    assert_eq!(seen.tenant_id, p.tenant_id);
    assert!(seen.preview.is_none(), "{:?}", seen.preview);
    let mut listed = Vec::new();
    for tenant_id in [p.tenant_id.clone(), String::new()] {
        let jobs = a
            .jobs
            .list_jobs(pb::ListJobsRequest { tenant_id })
            .await
            .expect("auditors list jobs")
            .into_inner()
            .jobs;
        assert!(jobs.iter().any(|j| j.id == job.id), "{jobs:?}");
        assert!(jobs.iter().all(|j| j.preview.is_none()));
        listed.extend(jobs);
    }
    let watched = a
        .jobs
        .watch_job(pb::WatchJobRequest {
            job_id: job.id.clone(),
        })
        .await
        .expect("auditors watch jobs")
        .into_inner()
        .message()
        .await
        .expect("a message")
        .expect("the job")
        .job
        .expect("job");
    assert!(watched.preview.is_none());
    // Exports and products: their records, with the votes once decided; no evidence, no
    // private note, no row.
    let export_seen = a
        .exports
        .get_export(pb::GetExportRequest {
            export_id: export.id.clone(),
        })
        .await
        .expect("auditors read exports")
        .into_inner()
        .export
        .expect("export");
    assert_eq!(export_seen.votes.len(), 2, "{export_seen:?}");
    let exports = a
        .exports
        .list_exports(pb::ListExportsRequest::default())
        .await
        .expect("auditors list exports")
        .into_inner()
        .exports;
    assert!(exports.iter().any(|e| e.id == export.id));
    let products = a
        .exports
        .list_products(pb::ListProductsRequest::default())
        .await
        .expect("auditors list products")
        .into_inner()
        .products;
    assert!(
        products.iter().any(|pr| pr.export_id == export.id),
        "{products:?}"
    );
    assert_eq!(
        status_code(
            a.exports
                .review_export(pb::ReviewExportRequest {
                    export_id: export.id.clone(),
                })
                .await
        ),
        Code::PermissionDenied
    );
    assert_eq!(code(a.download(&export.id).await), Code::PermissionDenied);
    assert_eq!(
        code(a.fetch_product(&export.id).await),
        Code::PermissionDenied
    );
    let text = format!("{seen:?}{listed:?}{watched:?}{export_seen:?}{exports:?}{products:?}");
    for value in [
        "海曙区",
        "江北区",
        "鄞州区",
        CANARY_NAME,
        CANARY_ID,
        CANARY_COST,
    ] {
        assert!(!text.contains(value), "{value} reached the auditor");
    }

    // Admins read the audit trail (R35) and verify it; engineers do not.
    let records = p
        .admin
        .audit
        .list_audit_records(pb::ListAuditRecordsRequest {
            after_seq: 0,
            limit: 1000,
        })
        .await
        .expect("admins read the trail")
        .into_inner()
        .records;
    assert!(
        records
            .iter()
            .any(|r| r.action == "view_job" && r.role == "auditor")
    );
    assert!(
        p.admin
            .audit
            .verify_audit(pb::VerifyAuditRequest {})
            .await
            .expect("admins verify the trail")
            .into_inner()
            .ok
    );
    assert_eq!(
        status_code(
            p.engineer
                .audit
                .list_audit_records(pb::ListAuditRecordsRequest::default())
                .await
        ),
        Code::PermissionDenied
    );
}
