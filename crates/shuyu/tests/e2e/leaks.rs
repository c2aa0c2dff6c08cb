//! Canaries planted in a dataset never reach an engineer's responses, the server log or a file on disk in plaintext.

use shuyu_client::v1 as pb;

use crate::harness::fixtures::*;
use crate::harness::*;

#[tokio::test(flavor = "multi_thread")]
async fn canaries_never_reach_engineers_logs_or_disk() {
    let domain = Domain::new();
    let server = domain.start();
    let Approved {
        people: mut p,
        scenario_id: sc,
        datasets: [dataset],
    } = approved_scenario(&server, &domain, "c", ["residents"]).await;
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
