//! Recovery: SIGKILL during an ingest and during a job loses no committed record.

use std::time::Duration;

use shuyu_client::{production_sql, v1 as pb};

use crate::harness::fixtures::*;
use crate::harness::*;

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_during_ingest_and_job_loses_no_committed_record() {
    let domain = Domain::new();
    let server = domain.start();
    let Approved {
        people: mut p,
        scenario_id: sc,
        datasets: [committed],
    } = approved_scenario(&server, &domain, "k", ["residents"]).await;
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
    // A pace, not a wait: the kill lands at some point of the upload (about 24 MB), and
    // what is checked below holds wherever it lands. No state marks "part of an upload
    // received" to poll for.
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
    eventually("the slow job to run", WAIT, async || {
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
        assert!(!shuyu_client::is_finished(&job), "it ended: {job:?}");
        (job.status == pb::JobStatus::Running as i32).then_some(())
    })
    .await;
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
