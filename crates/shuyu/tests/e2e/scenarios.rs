//! Scenarios (R11, R12) and the data lab (R3, R16, R20) end to end: who must approve, what
//! a production job can read, what a lab job sees, promotion, lab expiry.

use crate::jobs::job_outcome;

use shuyu_client::{Client, ClientError, v1 as pb};
use tonic::Code;

use crate::harness::fixtures::*;
use crate::harness::*;

const DAY_MS: i64 = 86_400_000;

fn item(dataset: &pb::Dataset, columns: &[&str]) -> pb::DataListItem {
    pb::DataListItem {
        dataset_id: dataset.id.clone(),
        columns: columns.iter().map(|c| (*c).to_owned()).collect(),
    }
}

async fn apply(
    engineer: &mut Client,
    data_list: Vec<pb::DataListItem>,
    valid_until_ms: i64,
) -> Result<pb::Scenario, tonic::Status> {
    engineer
        .scenarios
        .apply_scenario(pb::ApplyScenarioRequest {
            name: "区县费用统计".into(),
            purpose: "按区县统计费用".into(),
            data_list,
            valid_from_ms: 0,
            valid_until_ms,
            ..Default::default()
        })
        .await
        .map(|r| r.into_inner().scenario.expect("scenario"))
}

async fn decide(
    client: &mut Client,
    id: &str,
    approve: bool,
    comment: &str,
) -> Result<pb::Scenario, tonic::Status> {
    client
        .scenarios
        .decide_scenario(pb::DecideScenarioRequest {
            scenario_id: id.into(),
            approve,
            comment: comment.into(),
        })
        .await
        .map(|r| r.into_inner().scenario.expect("scenario"))
}

fn refusal(result: Result<pb::Job, ClientError>) -> (Code, String) {
    match result {
        Err(ClientError::Status(status)) => (status.code(), status.message().to_owned()),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// The code and stable reason of a refused job submission.
fn refusal_reason(result: Result<pb::Job, ClientError>) -> (Code, String) {
    match result {
        Err(ClientError::Status(status)) => (status.code(), reason(&status)),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_scenario_needs_every_approver_and_bounds_what_production_reads() {
    let domain = Domain::new();
    let server = domain.start();
    let mut p = people(&server, &domain, "s1").await;
    let residents = ingest_people(&mut p.steward, "residents").await;
    let other = ingest_people(&mut p.steward, "other_records").await;
    let ungranted = ingest_people(&mut p.steward, "ungranted").await;
    grant(&mut p.admin, &residents.id, &p.tenant_id).await;
    grant(&mut p.admin, &other.id, &p.tenant_id).await;
    let until = now_ms() + 30 * DAY_MS;

    // Applications are validated: an empty list, a missing column, an ungranted dataset,
    // no columns, a validity past three years.
    let bad = [
        (vec![], Code::InvalidArgument),
        (
            vec![item(&residents, &["district", "no_such"])],
            Code::InvalidArgument,
        ),
        (vec![item(&ungranted, &["district"])], Code::NotFound),
        (vec![item(&residents, &[])], Code::InvalidArgument),
    ];
    for (list, expected) in bad {
        let got = apply(&mut p.engineer, list.clone(), until).await;
        assert_eq!(
            status_code(got.map(tonic::Response::new)),
            expected,
            "{list:?}"
        );
    }
    let too_long = apply(
        &mut p.engineer,
        vec![item(&residents, &["district"])],
        now_ms() + 4 * 366 * DAY_MS,
    )
    .await;
    assert_eq!(
        status_code(too_long.map(tonic::Response::new)),
        Code::InvalidArgument
    );

    // R12: the dataset carries an extra approver (a provincial steward).
    let province = register(&mut p.admin, &domain, "province-s1", pb::Role::Steward, "").await;
    let mut province = server.client(&province).await;
    let province_id = province
        .session
        .who_am_i(pb::WhoAmIRequest {})
        .await
        .unwrap()
        .into_inner()
        .principal
        .unwrap()
        .id;
    let not_a_steward = p
        .admin
        .admin
        .set_dataset_approver(pb::SetDatasetApproverRequest {
            dataset_id: residents.id.clone(),
            approver_id: p
                .engineer
                .session
                .who_am_i(pb::WhoAmIRequest {})
                .await
                .unwrap()
                .into_inner()
                .principal
                .unwrap()
                .id,
        })
        .await;
    assert_eq!(status_code(not_a_steward), Code::InvalidArgument);
    let with_extra = p
        .admin
        .admin
        .set_dataset_approver(pb::SetDatasetApproverRequest {
            dataset_id: residents.id.clone(),
            approver_id: province_id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .dataset
        .unwrap();
    assert_eq!(with_extra.extra_approver_id, province_id);

    let scenario = apply(
        &mut p.engineer,
        vec![item(&residents, &["cost", "district"])],
        until,
    )
    .await
    .unwrap();
    assert_eq!(scenario.status, pb::ScenarioStatus::Pending as i32);
    let capacities: Vec<&str> = scenario
        .approvals
        .iter()
        .map(|a| a.capacity.as_str())
        .collect();
    assert_eq!(capacities, ["steward", "extra", "admin"]);
    // Columns are kept in file order whatever order they were listed in.
    assert_eq!(scenario.data_list[0].columns, ["district", "cost"]);

    // Nothing runs while approvals are missing, and the refusal names who is missing.
    let run = p
        .engineer
        .run_sql("SELECT count(*) AS n FROM residents", &scenario.id, WAIT)
        .await;
    let Err(ClientError::Status(status)) = run else {
        panic!("expected a refusal, got {run:?}");
    };
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert_eq!(reason(&status), "SCENARIO_UNUSABLE");
    let message = status.message();
    assert!(message.contains("waiting for approval"), "{message}");
    assert!(message.contains("extra approver"), "{message}");

    // Engineers cannot approve; a reviewer neither; a steward who is not required cannot.
    let by_engineer = decide(&mut p.engineer, &scenario.id, true, "").await;
    assert_eq!(
        status_code(by_engineer.map(tonic::Response::new)),
        Code::PermissionDenied
    );
    let mut q = people(&server, &domain, "s1b").await;
    let by_other_steward = decide(&mut q.steward, &scenario.id, true, "").await;
    assert_eq!(
        status_code(by_other_steward.map(tonic::Response::new)),
        Code::NotFound
    );
    let by_reviewer = decide(&mut p.reviewer, &scenario.id, true, "").await;
    assert_eq!(
        status_code(by_reviewer.map(tonic::Response::new)),
        Code::PermissionDenied
    );
    // A rejection needs a reason.
    let no_reason = decide(&mut p.steward, &scenario.id, false, "").await;
    assert_eq!(
        status_code(no_reason.map(tonic::Response::new)),
        Code::InvalidArgument
    );

    let after_steward = decide(&mut p.steward, &scenario.id, true, "ok")
        .await
        .unwrap();
    assert_eq!(after_steward.status, pb::ScenarioStatus::Pending as i32);
    let again = decide(&mut p.steward, &scenario.id, true, "ok").await;
    assert_eq!(
        status_code(again.map(tonic::Response::new)),
        Code::FailedPrecondition
    );
    let after_admin = decide(&mut p.admin, &scenario.id, true, "ok")
        .await
        .unwrap();
    assert_eq!(after_admin.status, pb::ScenarioStatus::Pending as i32);
    let approved = decide(&mut province, &scenario.id, true, "省级同意")
        .await
        .unwrap();
    assert_eq!(approved.status, pb::ScenarioStatus::Approved as i32);
    assert!(approved.approvals.iter().all(|a| a.decided && a.approved));

    // The job reads only the listed columns of the listed datasets.
    let ok = p
        .engineer
        .run_sql(
            "SELECT district, count(*) AS n, sum(cost) AS s FROM residents GROUP BY district",
            &scenario.id,
            WAIT,
        )
        .await
        .unwrap();
    assert_eq!(ok.status, pb::JobStatus::Succeeded as i32, "{}", ok.error);
    assert_eq!(ok.scenario_id, scenario.id);
    assert_eq!(ok.mode, pb::JobMode::Production as i32);
    for (sql, what) in [
        ("SELECT name FROM residents", "an unlisted column"),
        (
            "SELECT count(*) AS n FROM residents WHERE diagnosis = 'x'",
            "an unlisted column in a filter",
        ),
        (
            "SELECT * FROM residents",
            "a star over the listed columns only",
        ),
        (
            "SELECT count(*) AS n FROM other_records",
            "a granted dataset not on the list",
        ),
    ] {
        let job = p.engineer.run_sql(sql, &scenario.id, WAIT).await.unwrap();
        if what.starts_with("a star") {
            assert_eq!(job.status, pb::JobStatus::Succeeded as i32, "{}", job.error);
            let names: Vec<&str> = job.columns.iter().map(|c| c.name.as_str()).collect();
            assert_eq!(names, ["district", "cost"], "{what}");
        } else {
            assert_eq!(job.status, pb::JobStatus::Failed as i32, "{what}: {sql}");
        }
    }

    // The worker got the listed dataset's key and its own, nothing else.
    let (_, sent) = job_outcome(&mut p.auditor, &ok.id).await;
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert!(
        sent.contains(&format!("dataset:{}", residents.id)),
        "{sent:?}"
    );
    assert!(sent.contains(&format!("job:{}", ok.id)), "{sent:?}");

    // Another tenant's engineer cannot use or see the scenario.
    let foreign = q
        .engineer
        .run_sql("SELECT count(*) AS n FROM residents", &scenario.id, WAIT)
        .await;
    assert_eq!(code_of(foreign), Code::NotFound);
    let listed = q
        .engineer
        .scenarios
        .list_scenarios(pb::ListScenariosRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(listed.scenarios.is_empty());
    // The province sees it (it must decide on it); the unrelated steward does not.
    let seen = province
        .scenarios
        .list_scenarios(pb::ListScenariosRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(seen.scenarios.len(), 1);

    // A rejected scenario runs nothing.
    let rejected = apply(&mut p.engineer, vec![item(&other, &["district"])], until)
        .await
        .unwrap();
    let rejected = decide(&mut p.admin, &rejected.id, false, "目的不明确")
        .await
        .unwrap();
    assert_eq!(rejected.status, pb::ScenarioStatus::Rejected as i32);
    let (code, _) = refusal(
        p.engineer
            .run_sql(
                "SELECT count(*) AS n FROM other_records",
                &rejected.id,
                WAIT,
            )
            .await,
    );
    assert_eq!(code, Code::FailedPrecondition);
    // No scenario at all is refused as well.
    let (code, message) = refusal(
        p.engineer
            .run_sql("SELECT count(*) AS n FROM residents", "", WAIT)
            .await,
    );
    assert_eq!(code, Code::InvalidArgument);
    assert!(message.contains("scenario"), "{message}");
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

#[tokio::test(flavor = "multi_thread")]
async fn one_person_fills_one_approval_and_admins_are_no_extra_approvers() {
    let domain = Domain::new();
    let server = domain.start();
    let mut p = people(&server, &domain, "s4").await;
    let residents = ingest_people(&mut p.steward, "residents").await;
    let creds = register(&mut p.admin, &domain, "province-s4", pb::Role::Steward, "").await;
    let mut province = server.client(&creds).await;
    let returned = ingest_people(&mut province, "returned_records").await;
    grant(&mut p.admin, &residents.id, &p.tenant_id).await;
    grant(&mut p.admin, &returned.id, &p.tenant_id).await;
    let until = now_ms() + 30 * DAY_MS;

    // An admin gives every scenario's admin approval: as an extra approver they would give
    // two (R12).
    let admin_id = principal_id(&mut p.admin).await;
    let refused = p
        .admin
        .admin
        .set_dataset_approver(pb::SetDatasetApproverRequest {
            dataset_id: returned.id.clone(),
            approver_id: admin_id,
        })
        .await
        .expect_err("an admin as extra approver");
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert!(
        refused.message().contains("admin approval"),
        "{}",
        refused.message()
    );

    // The residents' steward as the extra approver of the returned records: a scenario
    // listing both would count that steward twice, and is refused naming them.
    let steward_id = principal_id(&mut p.steward).await;
    p.admin
        .admin
        .set_dataset_approver(pb::SetDatasetApproverRequest {
            dataset_id: returned.id.clone(),
            approver_id: steward_id.clone(),
        })
        .await
        .expect("another dataset's steward may be an extra approver");
    let both = apply(
        &mut p.engineer,
        vec![
            item(&residents, &["district"]),
            item(&returned, &["district"]),
        ],
        until,
    )
    .await
    .expect_err("one person in two capacities");
    assert_eq!(both.code(), Code::FailedPrecondition);
    assert_eq!(reason(&both), "ONE_APPROVAL_PER_PERSON");
    assert!(
        both.message().contains(&steward_id) && both.message().contains("twice"),
        "{}",
        both.message()
    );

    // Listing the returned records only: three people, one approval each.
    let scenario = apply(&mut p.engineer, vec![item(&returned, &["district"])], until)
        .await
        .unwrap();
    let capacities: Vec<&str> = scenario
        .approvals
        .iter()
        .map(|a| a.capacity.as_str())
        .collect();
    assert_eq!(capacities, ["steward", "extra", "admin"]);
    for approver in [&mut province, &mut p.steward] {
        let pending = decide(approver, &scenario.id, true, "").await.unwrap();
        assert_eq!(pending.status, pb::ScenarioStatus::Pending as i32);
        let again = decide(approver, &scenario.id, true, "").await;
        assert_eq!(
            status_code(again.map(tonic::Response::new)),
            Code::FailedPrecondition
        );
    }
    let approved = decide(&mut p.admin, &scenario.id, true, "").await.unwrap();
    assert_eq!(approved.status, pb::ScenarioStatus::Approved as i32);
    let deciders: std::collections::BTreeSet<&str> = approved
        .approvals
        .iter()
        .map(|a| a.decided_by.as_str())
        .collect();
    assert_eq!(deciders.len(), 3, "{approved:?}");
}

fn code_of(result: Result<pb::Job, ClientError>) -> Code {
    refusal(result).0
}

#[tokio::test(flavor = "multi_thread")]
async fn a_scenario_expires() {
    let domain = Domain::new();
    let server = domain.start();
    let mut p = people(&server, &domain, "s2").await;
    let residents = ingest_people(&mut p.steward, "residents").await;
    grant(&mut p.admin, &residents.id, &p.tenant_id).await;
    // Valid for an hour on the domain's clock: its job runs, then two hours pass.
    let scenario = apply(
        &mut p.engineer,
        vec![item(&residents, &["district"])],
        domain.now_ms() + HOUR_MS,
    )
    .await
    .unwrap();
    decide(&mut p.steward, &scenario.id, true, "")
        .await
        .unwrap();
    decide(&mut p.admin, &scenario.id, true, "").await.unwrap();
    let ran = p
        .engineer
        .run_sql(
            "SELECT count(district) AS n FROM residents",
            &scenario.id,
            WAIT,
        )
        .await
        .expect("a job inside the scenario's term");
    assert_eq!(ran.status, pb::JobStatus::Succeeded as i32, "{ran:?}");
    domain.advance_clock(2 * HOUR);
    // Polled until it shows as expired (WAIT is only a hang guard).
    eventually("the scenario to show as expired", WAIT, async || {
        let shown = p
            .engineer
            .scenarios
            .get_scenario(pb::GetScenarioRequest {
                scenario_id: scenario.id.clone(),
            })
            .await
            .unwrap()
            .into_inner()
            .scenario
            .unwrap();
        if shown.status == pb::ScenarioStatus::Expired as i32 {
            return Some(());
        }
        assert_eq!(shown.status, pb::ScenarioStatus::Approved as i32);
        None
    })
    .await;
    let (code, why) = refusal_reason(
        p.engineer
            .run_sql(
                "SELECT count(district) AS n FROM residents",
                &scenario.id,
                WAIT,
            )
            .await,
    );
    assert_eq!(code, Code::FailedPrecondition);
    assert_eq!(why, "SCENARIO_UNUSABLE");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_lab_shows_masked_data_only_and_promotion_keeps_the_query() {
    let domain = Domain::new();
    let server = domain.start();
    let mut p = people(&server, &domain, "lab").await;
    let residents = ingest_people(&mut p.steward, "residents").await;
    grant(&mut p.admin, &residents.id, &p.tenant_id).await;

    // Every column, raw values asked for directly: the lab answers with masked values of
    // the same types, and no canary appears.
    let sql = "SELECT name, id_number, mobile, birth_date, district, diagnosis, cost \
               FROM residents WHERE district = '鄞州区' ORDER BY cost DESC";
    let lab = p.engineer.run_lab_sql(sql, WAIT).await.unwrap();
    assert_eq!(lab.status, pb::JobStatus::Succeeded as i32, "{}", lab.error);
    assert_eq!(lab.mode, pb::JobMode::Lab as i32);
    assert_eq!(lab.n_rows, 101);
    let preview = lab.preview.clone().unwrap();
    assert_eq!(preview.rows.len(), 101, "lab results are shown in full");
    let text = format!("{lab:?}");
    for canary in [
        CANARY_NAME,
        CANARY_ID,
        CANARY_MOBILE,
        CANARY_DIAGNOSIS,
        CANARY_COST,
    ] {
        assert!(!text.contains(canary), "{canary} reached the lab");
    }
    // Types are kept: costs are bucket floors (generalize_number:100), dates the first of
    // their year, the sensitive diagnosis suppressed to NULL, pseudonyms as in samples.
    let types: Vec<&str> = lab.columns.iter().map(|c| c.data_type.as_str()).collect();
    assert_eq!(
        types,
        [
            "string", "string", "string", "date", "string", "string", "float64"
        ]
    );
    for row in &preview.rows {
        let cost: f64 = row.values[6].parse().expect("a number");
        assert_eq!(cost % 100.0, 0.0, "{row:?}");
        assert!(row.values[3].ends_with("-01-01"), "{row:?}");
        assert!(row.is_null[5], "{row:?}");
        assert!(row.values[1].starts_with("p_"), "{row:?}");
    }

    // The lab worker got no dataset key: only its own job key.
    let (_, sent) = job_outcome(&mut p.auditor, &lab.id).await;
    assert_eq!(sent, [format!("job:{}", lab.id)]);

    // Lab results never leave.
    let export = p
        .engineer
        .exports
        .request_export(pb::RequestExportRequest {
            job_id: lab.id.clone(),
            purpose: "x".into(),
            format: pb::DataFormat::Csv as i32,
            ..Default::default()
        })
        .await;
    assert_eq!(status_code(export), Code::FailedPrecondition);

    // Promotion runs the same query on the raw data under a scenario, same hash.
    let aggregate = "SELECT district, count(*) AS n FROM residents GROUP BY district";
    let lab = p.engineer.run_lab_sql(aggregate, WAIT).await.unwrap();
    assert_eq!(lab.status, pb::JobStatus::Succeeded as i32, "{}", lab.error);
    let sc = scenario(&mut p, &[&residents]).await;
    let promoted = p
        .engineer
        .jobs
        .promote_job(pb::PromoteJobRequest {
            job_id: lab.id.clone(),
            scenario_id: sc.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .job
        .unwrap();
    let promoted = p.engineer.wait_job(&promoted.id, WAIT).await.unwrap();
    assert_eq!(
        promoted.status,
        pb::JobStatus::Succeeded as i32,
        "{}",
        promoted.error
    );
    assert_eq!(promoted.mode, pb::JobMode::Production as i32);
    assert_eq!(promoted.promoted_from, lab.id);
    assert_eq!(promoted.query_sha256, lab.query_sha256);
    assert_eq!(promoted.sql, aggregate);
    // A production job is not promoted again; a failed lab job is not promoted.
    let again = p
        .engineer
        .jobs
        .promote_job(pb::PromoteJobRequest {
            job_id: promoted.id.clone(),
            scenario_id: sc.clone(),
        })
        .await;
    assert_eq!(status_reason(again), "NOT_A_LAB_JOB");
    let broken = p
        .engineer
        .run_lab_sql("SELECT nothing FROM residents", WAIT)
        .await
        .unwrap();
    assert_eq!(broken.status, pb::JobStatus::Failed as i32);
    let broken = p
        .engineer
        .jobs
        .promote_job(pb::PromoteJobRequest {
            job_id: broken.id.clone(),
            scenario_id: sc.clone(),
        })
        .await;
    assert_eq!(status_reason(broken), "JOB_NOT_SUCCEEDED");

    // R20: lab access is time-limited per tenant, at most six months ahead.
    let too_far = p
        .admin
        .admin
        .set_lab_access(pb::SetLabAccessRequest {
            tenant_id: p.tenant_id.clone(),
            lab_until_ms: now_ms() + 200 * DAY_MS,
        })
        .await;
    assert_eq!(status_code(too_far), Code::InvalidArgument);
    let by_engineer = p
        .engineer
        .admin
        .set_lab_access(pb::SetLabAccessRequest {
            tenant_id: p.tenant_id.clone(),
            lab_until_ms: 0,
        })
        .await;
    assert_eq!(status_code(by_engineer), Code::PermissionDenied);
    let closed = p
        .admin
        .admin
        .set_lab_access(pb::SetLabAccessRequest {
            tenant_id: p.tenant_id.clone(),
            lab_until_ms: 0,
        })
        .await
        .unwrap()
        .into_inner()
        .tenant
        .unwrap();
    assert_eq!(closed.lab_until_ms, 0);
    let (code, why) = refusal_reason(p.engineer.run_lab_sql(aggregate, WAIT).await);
    assert_eq!(code, Code::FailedPrecondition);
    assert_eq!(why, "LAB_CLOSED");
    // Production under the scenario goes on.
    let still = p.engineer.run_sql(aggregate, &sc, WAIT).await.unwrap();
    assert_eq!(
        still.status,
        pb::JobStatus::Succeeded as i32,
        "{}",
        still.error
    );
    let reopened = p
        .admin
        .admin
        .set_lab_access(pb::SetLabAccessRequest {
            tenant_id: p.tenant_id.clone(),
            lab_until_ms: now_ms() + 30 * DAY_MS,
        })
        .await
        .unwrap()
        .into_inner()
        .tenant
        .unwrap();
    assert!(reopened.lab_until_ms > now_ms());
    let lab = p.engineer.run_lab_sql(aggregate, WAIT).await.unwrap();
    assert_eq!(lab.status, pb::JobStatus::Succeeded as i32, "{}", lab.error);
}

#[tokio::test(flavor = "multi_thread")]
async fn substrait_submissions_are_validated() {
    let domain = Domain::new();
    let server = domain.start();
    let mut p = people(&server, &domain, "sub").await;
    let residents = ingest_people(&mut p.steward, "residents").await;
    grant(&mut p.admin, &residents.id, &p.tenant_id).await;
    let both = p
        .engineer
        .jobs
        .submit_job(pb::SubmitJobRequest {
            sql: "SELECT 1".into(),
            substrait_plan: vec![1, 2, 3],
            mode: pb::JobMode::Lab as i32,
            scenario_id: String::new(),
            dp: None,
        })
        .await;
    assert_eq!(status_code(both), Code::InvalidArgument);
    let oversized = p
        .engineer
        .jobs
        .submit_job(pb::SubmitJobRequest {
            substrait_plan: vec![0; (1 << 20) + 1],
            mode: pb::JobMode::Lab as i32,
            ..Default::default()
        })
        .await;
    assert_eq!(status_code(oversized), Code::InvalidArgument);
    let unknown_mode = p
        .engineer
        .jobs
        .submit_job(pb::SubmitJobRequest {
            sql: "SELECT 1".into(),
            mode: 99,
            ..Default::default()
        })
        .await;
    assert_eq!(status_code(unknown_mode), Code::InvalidArgument);
    // Garbage bytes: the job fails with a plain message, and the hash is of the bytes.
    let garbage = b"\x0a\xff\xff\xff\xff\x0f not a plan".to_vec();
    let job = p
        .engineer
        .run_job(
            pb::SubmitJobRequest {
                substrait_plan: garbage.clone(),
                mode: pb::JobMode::Lab as i32,
                ..Default::default()
            },
            WAIT,
        )
        .await
        .unwrap();
    assert_eq!(job.status, pb::JobStatus::Failed as i32);
    assert_eq!(job.query_kind, "substrait");
    assert!(job.sql.is_empty());
    assert!(!job.error.contains('/'), "{}", job.error);
    let expected = {
        use sha2::Digest;
        hex_lower(&sha2::Sha256::digest(&garbage))
    };
    assert_eq!(job.query_sha256, expected);
}

fn hex_lower(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The same flow from the command line, as each person would type it.
#[tokio::test(flavor = "multi_thread")]
async fn the_cli_walks_the_lab_a_scenario_and_promotion() {
    let domain = Domain::new();
    let server = domain.start();
    let mut p = people(&server, &domain, "cli").await;
    let residents = ingest_people(&mut p.steward, "residents").await;
    grant(&mut p.admin, &residents.id, &p.tenant_id).await;
    let cli = |who: &str, args: &[&str]| {
        let creds = domain.creds(who);
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--as", creds.to_str().unwrap(), "--server", &server.addr]);
        let out = run_bin(&all);
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let aggregate = "SELECT district, count(*) AS n FROM residents GROUP BY district";

    let (code, out) = cli(
        "engineer-cli",
        &["job", "submit", "--lab", "--sql", aggregate],
    );
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("(lab)") && out.contains("masked lab data"),
        "{out}"
    );
    assert!(!out.contains(CANARY_NAME), "{out}");
    let lab_id = out
        .split_whitespace()
        .find(|w| w.starts_with("job_"))
        .expect("a job id")
        .to_owned();

    let data = format!("{}:district,cost", residents.id);
    let (code, out) = cli(
        "engineer-cli",
        &[
            "scenario",
            "apply",
            "--name",
            "区县统计",
            "--purpose",
            "测试",
            "--data",
            &data,
            "--days",
            "30",
        ],
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("pending"), "{out}");
    let scenario = out
        .split_whitespace()
        .find(|w| w.starts_with("sc_"))
        .expect("a scenario id")
        .to_owned();
    let (code, out) = cli("engineer-cli", &["scenario", "approve", &scenario]);
    assert_ne!(code, 0, "an engineer cannot approve: {out}");
    assert!(
        out.contains("PermissionDenied") || out.contains("permission"),
        "{out}"
    );
    let (code, out) = cli("steward-cli", &["scenario", "approve", &scenario]);
    assert_eq!(code, 0, "{out}");
    let (code, out) = cli(
        "admin",
        &["scenario", "approve", &scenario, "--comment", "同意"],
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("— approved"), "{out}");

    let (code, out) = cli(
        "engineer-cli",
        &["job", "promote", &lab_id, "--scenario", &scenario],
    );
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!("promoted from lab job {lab_id}")),
        "{out}"
    );
    let (code, out) = cli(
        "engineer-cli",
        &[
            "job",
            "submit",
            "--scenario",
            &scenario,
            "--sql",
            "SELECT name FROM residents",
        ],
    );
    assert_eq!(code, 3, "a column outside the list fails the job: {out}");
    let (code, out) = cli("engineer-cli", &["job", "list"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("lab") && out.contains("production"), "{out}");

    let tenant = p.tenant_id.clone();
    let (code, out) = cli("admin", &["tenant", "lab-access", &tenant, "--days", "0"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("no lab access"), "{out}");
    let (code, out) = cli(
        "engineer-cli",
        &["job", "submit", "--lab", "--sql", aggregate],
    );
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("lab access"), "{out}");
    let (code, out) = cli("admin", &["tenant", "lab-access", &tenant, "--days", "400"]);
    assert_ne!(code, 0, "more than six months is refused: {out}");
}
