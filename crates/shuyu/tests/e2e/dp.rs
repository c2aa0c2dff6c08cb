//! Differential-privacy jobs over mTLS against the real server: OpenDP noise on a production
//! job, a per-tenant budget per dataset's content that concurrent jobs cannot overspend and
//! re-registering the data does not reset, and DP results through the export gate.

use shuyu_client::{Client, v1 as pb};
use tonic::Code;

use crate::harness::fixtures::*;
use crate::harness::*;

const DP_SQL: &str =
    "SELECT district, count(*) AS n, avg(cost) AS mean FROM residents GROUP BY district";

fn dp_request(sql: &str, scenario_id: &str, epsilon: f64) -> pb::SubmitJobRequest {
    pb::SubmitJobRequest {
        dp: Some(pb::DpOptions {
            epsilon,
            max_groups_per_unit: 1,
            max_rows_per_unit: 1,
            bounds: vec![pb::DpBound {
                column: "cost".into(),
                lower: 0.0,
                upper: 500.0,
            }],
        }),
        ..shuyu_client::production_sql(sql, scenario_id)
    }
}

async fn budgets(client: &mut Client, tenant_id: &str) -> Vec<pb::PrivacyBudget> {
    client
        .jobs
        .get_privacy_budgets(pb::GetPrivacyBudgetsRequest {
            tenant_id: tenant_id.into(),
        })
        .await
        .expect("budgets")
        .into_inner()
        .budgets
}

async fn set_budget(
    admin: &mut Client,
    tenant_id: &str,
    dataset_id: &str,
    epsilon: f64,
) -> Result<pb::PrivacyBudget, tonic::Status> {
    admin
        .admin
        .set_privacy_budget(pb::SetPrivacyBudgetRequest {
            tenant_id: tenant_id.into(),
            dataset_id: dataset_id.into(),
            epsilon_total: epsilon,
        })
        .await
        .map(|r| r.into_inner().budget.expect("budget"))
}

#[tokio::test(flavor = "multi_thread")]
async fn dp_jobs_spend_a_budget_that_concurrency_and_re_registration_cannot_beat() {
    let domain = Domain::new();
    let server = domain.start();
    let Approved {
        people: mut p,
        scenario_id: sc,
        datasets: [dataset],
    } = approved_scenario(&server, &domain, "dp", ["residents"]).await;

    // Before any use: the configured default.
    let before = budgets(&mut p.engineer, "").await;
    assert_eq!(before.len(), 1);
    assert_eq!(
        (before[0].epsilon_total, before[0].epsilon_spent),
        (3.0, 0.0)
    );
    let set = set_budget(&mut p.admin, &p.tenant_id, &dataset.id, 1.0)
        .await
        .unwrap();
    assert_eq!(set.epsilon_total, 1.0);
    // Engineers cannot set budgets.
    assert_eq!(
        status_code(
            p.engineer
                .admin
                .set_privacy_budget(pb::SetPrivacyBudgetRequest {
                    tenant_id: p.tenant_id.clone(),
                    dataset_id: dataset.id.clone(),
                    epsilon_total: 100.0,
                })
                .await
        ),
        Code::PermissionDenied
    );

    let job = p
        .engineer
        .run_job(dp_request(DP_SQL, &sc, 0.3), WAIT)
        .await
        .unwrap();
    assert_eq!(job.status, pb::JobStatus::Succeeded as i32, "{}", job.error);
    let dp = job.dp.clone().expect("the DP guarantee");
    assert!(dp.epsilon <= 0.3 && dp.epsilon > 0.29, "{dp:?}");
    assert_eq!(dp.threshold, 10);
    assert_eq!(dp.measures.len(), 4, "count, mean (two), people: {dp:?}");
    let spent = budgets(&mut p.engineer, "").await[0].epsilon_spent;
    assert!((spent - 0.3).abs() < 1e-9, "{spent}");

    // 0.7 left: of six concurrent jobs of 0.3, exactly two are admitted.
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let mut engineer = p.engineer.clone();
        let request = dp_request(DP_SQL, &sc, 0.3);
        tasks.push(tokio::spawn(async move {
            engineer
                .jobs
                .submit_job(request)
                .await
                .map(|r| r.into_inner())
        }));
    }
    let mut admitted = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => admitted += 1,
            Err(status) => {
                assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
                assert_eq!(reason(&status), "PRIVACY_BUDGET_EXHAUSTED");
            }
        }
    }
    assert_eq!(admitted, 2);
    let spent = budgets(&mut p.engineer, "").await[0].epsilon_spent;
    assert!((spent - 0.9).abs() < 1e-9, "{spent}");
    // The total cannot go below what is spent.
    assert_eq!(
        reason(
            &set_budget(&mut p.admin, &p.tenant_id, &dataset.id, 0.5)
                .await
                .unwrap_err()
        ),
        "BUDGET_BELOW_SPENT"
    );

    // The same data registered again under another name draws on the same budget.
    let copy = ingest_people(&mut p.steward, "residents_again").await;
    grant(&mut p.admin, &copy.id, &p.tenant_id).await;
    let copy_sc = scenario(&mut p, &[&copy]).await;
    let listed = budgets(&mut p.admin, &p.tenant_id).await;
    let again = listed.iter().find(|b| b.dataset_id == copy.id).unwrap();
    assert!((again.epsilon_spent - 0.9).abs() < 1e-9, "{listed:?}");
    let refused = p
        .engineer
        .jobs
        .submit_job(dp_request(
            "SELECT district, count(*) AS n, avg(cost) AS mean FROM residents_again GROUP BY district",
            &copy_sc,
            0.3,
        ))
        .await;
    assert_eq!(status_code(refused), Code::ResourceExhausted);

    // A DP result goes through the gate with its guarantee as evidence.
    let export = request_export(&mut p, &job.id).await;
    assert_eq!(
        export.status,
        pb::ExportStatus::InReview as i32,
        "{export:?}"
    );
    assert!(
        export.checks.iter().any(|c| c.name == "differential_privacy"
            && c.outcome == pb::CheckOutcome::Pass as i32),
        "{export:?}"
    );
    // The audit trail names the epsilon charged with each job.
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
    assert!(
        records
            .iter()
            .any(|r| r.action == "submit_job" && r.detail_json.contains("\"dp_epsilon\":0.3")),
        "the audit records the epsilon"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn dp_requests_that_cannot_be_bounded_are_refused_before_spending() {
    let domain = Domain::new();
    let server = domain.start();
    let Approved {
        people: mut p,
        scenario_id: sc,
        datasets: _,
    } = approved_scenario(&server, &domain, "dpbad", ["residents"]).await;
    let mut lab = dp_request(DP_SQL, "", 0.5);
    lab.mode = pb::JobMode::Lab as i32;
    let cases = [
        (lab, Code::InvalidArgument),
        (dp_request(DP_SQL, &sc, 11.0), Code::InvalidArgument),
        (dp_request(DP_SQL, &sc, -1.0), Code::InvalidArgument),
        (dp_request("SELECT 1 +", &sc, 0.5), Code::InvalidArgument),
    ];
    for (request, expected) in cases {
        let sql = request.sql.clone();
        let result = p.engineer.jobs.submit_job(request).await;
        assert_eq!(status_code(result), expected, "{sql}");
    }
    // Refused by the worker (no bounds for the sum): a failed job, with the reason.
    let job = p
        .engineer
        .run_job(
            pb::SubmitJobRequest {
                dp: Some(pb::DpOptions {
                    epsilon: 0.5,
                    ..Default::default()
                }),
                ..shuyu_client::production_sql(
                    "SELECT district, sum(cost) AS s FROM residents GROUP BY district",
                    &sc,
                )
            },
            WAIT,
        )
        .await
        .unwrap();
    assert_eq!(job.status, pb::JobStatus::Failed as i32);
    assert!(job.error.contains("needs bounds"), "{}", job.error);
    let spent = budgets(&mut p.engineer, "").await[0].epsilon_spent;
    assert!(
        (spent - 0.5).abs() < 1e-9,
        "spent at submit, before the worker: {spent}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deep_dp_query_is_audited_then_refused_and_the_server_keeps_serving() {
    let domain = Domain::new();
    let server = domain.start();
    let Approved {
        people: mut p,
        scenario_id: sc,
        datasets: _,
    } = approved_scenario(&server, &domain, "dq", ["residents"]).await;

    // A flat chain of ~32,000 terms under the 64 KiB SQL cap: parsed on an ordinary stack,
    // it aborts the whole process.
    let deep = format!(
        "SELECT district, count(*) AS n FROM residents WHERE {} > 0 GROUP BY district",
        vec!["1"; 32_000].join("+")
    );
    assert!(deep.len() <= 65_536);
    let refused = p
        .engineer
        .jobs
        .submit_job(dp_request(&deep, &sc, 0.5))
        .await
        .expect_err("refused");
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    assert!(refused.message().contains("levels deep"), "{refused:?}");

    // The server still serves: an ordinary DP job is accepted and runs.
    let job = p
        .engineer
        .jobs
        .submit_job(dp_request(DP_SQL, &sc, 0.5))
        .await
        .expect("the server still serves")
        .into_inner()
        .job
        .unwrap();
    let job = p.engineer.wait_job(&job.id, WAIT).await.unwrap();
    assert_eq!(job.status, pb::JobStatus::Succeeded as i32, "{}", job.error);

    // The refused request was on record before it was parsed, and its refusal after.
    let records = super::jobs::audit_records(&mut p.auditor).await;
    let sha = shuyu_vault::sha256_hex(deep.as_bytes());
    let received = records
        .iter()
        .position(|r| {
            r.action == "submit_job"
                && r.outcome == "received"
                && r.detail_json.contains(&sha)
                && r.role == "engineer"
        })
        .expect("the request is audited before it is parsed");
    assert!(
        records[received + 1..]
            .iter()
            .any(|r| r.action == "submit_job"
                && r.outcome == "invalid"
                && r.detail_json.contains("levels deep")),
        "its refusal is audited after it"
    );
}
