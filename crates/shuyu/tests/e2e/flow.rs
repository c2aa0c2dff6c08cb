//! The whole flow: the quickstart, and the gate that lets only clean aggregates through to review, signed packages and the audit trail.

use shuyu_client::v1 as pb;
use tonic::Code;

use crate::harness::fixtures::*;
use crate::harness::*;

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

/// The quickstart with the domain's metadata in a running PostgreSQL, kept in a data dir;
/// then two servers serve that domain at once, and `shuyu audit verify` finds the trail
/// through the data dir's record alone.
#[tokio::test(flavor = "multi_thread")]
async fn quickstart_on_postgres_then_two_servers_serve_the_domain() {
    let pg = shuyu_meta::testing::TestPostgres::start().expect("a test PostgreSQL");
    let temp = tempfile::tempdir().unwrap();
    let data = temp.path().join("domain");
    let url = pg.url().to_string();
    let out = run_bin(&[
        "quickstart",
        "--rows",
        "600",
        "--data-dir",
        data.to_str().unwrap(),
        "--metadata-url",
        &url,
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "quickstart failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for expected in [
        "approved",
        "OK: signature and hashes verify",
        "audit records verify",
    ] {
        assert!(stdout.contains(expected), "lacks {expected:?}:\n{stdout}");
    }
    assert!(stdout.contains(&url), "{stdout}");
    assert!(
        !data.join("meta.db").exists(),
        "the metadata went to PostgreSQL"
    );
    let record = std::fs::read_to_string(data.join("metadata.toml")).unwrap();
    assert!(record.contains(&url), "{record}");

    let (a, b) = (Server::start(&data), Server::start(&data));
    let admin = data.join("credentials").join("admin");
    for server in [&a, &b] {
        let mut client = server.client(&admin).await;
        let me = client
            .session
            .who_am_i(pb::WhoAmIRequest {})
            .await
            .unwrap()
            .into_inner()
            .principal
            .unwrap();
        assert_eq!(me.role, pb::Role::Admin as i32, "{me:?}");
    }
    drop((a, b));
    let verified = audit_verify(&data);
    assert!(
        verified.status.success(),
        "{}",
        String::from_utf8_lossy(&verified.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn gate_approves_only_clean_aggregates_and_signs_them() {
    let domain = Domain::new();
    let server = domain.start();
    let Approved {
        people: mut p,
        scenario_id: sc,
        datasets: [dataset],
    } = approved_scenario(&server, &domain, "a", ["residents"]).await;
    assert_eq!(dataset.n_rows, 301);

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
