//! The sandbox corpus (tests/corpus/sandbox.txt) is refused over the wire and the server keeps serving.

use std::path::Path;

use shuyu_client::{production_sql, v1 as pb};
use tonic::Code;

use crate::harness::fixtures::*;
use crate::harness::*;

#[tokio::test(flavor = "multi_thread")]
async fn sandbox_corpus_is_refused_and_the_server_keeps_serving() {
    let domain = Domain::new();
    let server = domain.start();
    let Approved {
        people: mut p,
        scenario_id: sc,
        datasets: _,
    } = approved_scenario(&server, &domain, "s", ["health_records"]).await;
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
