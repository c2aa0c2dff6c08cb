//! The job engine end to end: worker processes, their confinement and keys, deadlines,
//! cancellation, progress, the fair queue and metering.

use shuyu_client::{Client, lab_sql, production_sql, v1 as pb};
use tonic::Code;

use crate::harness::fixtures::*;
use crate::harness::*;

/// A query that runs for minutes: a four-way cross join of the 301-row table, summed (it
/// reads a column, so bytes are scanned; `count(*)` alone reads only metadata).
pub(super) const SLOW_SQL: &str = "SELECT sum(a.cost + b.cost + c.cost + d.cost) AS s \
     FROM health_records a, health_records b, health_records c, health_records d";

pub(super) async fn submit(engineer: &mut Client, scenario: &str, sql: &str) -> pb::Job {
    engineer
        .jobs
        .submit_job(production_sql(sql, scenario))
        .await
        .expect("submit")
        .into_inner()
        .job
        .expect("job")
}

async fn get(engineer: &mut Client, id: &str) -> pb::Job {
    engineer
        .jobs
        .get_job(pb::GetJobRequest { job_id: id.into() })
        .await
        .expect("get job")
        .into_inner()
        .job
        .expect("job")
}

/// Polls until `accept` holds for the job (bounded by [`WAIT`]).
pub(super) async fn poll_until(
    engineer: &mut Client,
    id: &str,
    what: &str,
    accept: impl Fn(&pb::Job) -> bool,
) -> pb::Job {
    eventually(&format!("job {id} to become {what}"), WAIT, async || {
        let job = get(engineer, id).await;
        if accept(&job) {
            return Some(job);
        }
        assert!(
            !shuyu_client::is_finished(&job),
            "job {id} ended without becoming {what}: {job:?}"
        );
        None
    })
    .await
}

fn stage(job: &pb::Job) -> &str {
    job.progress.as_ref().map_or("", |p| p.stage.as_str())
}

async fn cancel(engineer: &mut Client, id: &str) -> pb::Job {
    engineer
        .jobs
        .cancel_job(pb::CancelJobRequest { job_id: id.into() })
        .await
        .expect("cancel")
        .into_inner()
        .job
        .expect("job")
}

pub(super) async fn audit_records(auditor: &mut Client) -> Vec<pb::AuditRecord> {
    let mut records = Vec::new();
    let mut after = 0;
    loop {
        let page = auditor
            .audit
            .list_audit_records(pb::ListAuditRecordsRequest {
                after_seq: after,
                limit: 1000,
            })
            .await
            .expect("audit")
            .into_inner()
            .records;
        // Reading the trail is audited too, so stop at a short page, not an empty one.
        let short = page.len() < 1000;
        if let Some(last) = page.last() {
            after = last.seq;
        }
        records.extend(page);
        if short {
            return records;
        }
    }
}

/// The audit detail of a job's outcome (`job_finished`) and the KEK ids it says were sent
/// to the job's worker.
pub(super) async fn job_outcome(
    auditor: &mut Client,
    job_id: &str,
) -> (serde_json::Value, Vec<String>) {
    let records = audit_records(auditor).await;
    let finished = records
        .iter()
        .find(|r| r.action == "job_finished" && r.target == format!("job:{job_id}"))
        .expect("the job's outcome is audited");
    let detail: serde_json::Value = serde_json::from_str(&finished.detail_json).unwrap();
    let sent = detail["keks_sent"]
        .as_array()
        .expect("keys sent are audited")
        .iter()
        .filter_map(|k| k.as_str().map(str::to_owned))
        .collect();
    (detail, sent)
}

#[tokio::test(flavor = "multi_thread")]
async fn workers_are_confined_and_get_only_the_keys_their_job_reads() {
    let domain = Domain::new();
    let server = domain.start();
    let Approved {
        people: mut p,
        scenario_id: sc,
        datasets: [read, _unread],
    } = approved_scenario(&server, &domain, "w", ["health_records", "other_records"]).await;

    let job = p
        .engineer
        .run_sql(
            "SELECT district, count(*) AS n FROM health_records GROUP BY district",
            &sc,
            WAIT,
        )
        .await
        .unwrap();
    assert_eq!(job.status, pb::JobStatus::Succeeded as i32, "{}", job.error);
    let usage = job.usage.expect("a finished job is metered");
    assert!(usage.bytes_scanned > 0, "{usage:?}");
    assert!(usage.peak_memory_bytes > 1 << 20, "{usage:?}");
    assert_eq!(usage.rows_produced, 3);
    assert!(usage.wall_ms > 0, "{usage:?}");

    let (detail, sent) = job_outcome(&mut p.auditor, &job.id).await;
    assert!(sent.contains(&format!("dataset:{}", read.id)), "{sent:?}");
    assert!(sent.contains(&format!("job:{}", job.id)), "{sent:?}");
    assert_eq!(
        sent.len(),
        2,
        "only the read dataset's and the result's keys: {sent:?}"
    );
    let confinement = detail["confinement"].as_str().expect("confinement audited");
    assert!(confinement.contains("seccomp"), "{confinement}");
    assert!(confinement.contains("landlock"), "{confinement}");
    assert!(confinement.contains("RLIMIT_AS"), "{confinement}");
    assert!(detail["usage"]["cpu_ms"].as_u64().is_some(), "{detail}");
}

/// The audited worker of a finished job: whether it had served earlier jobs, and how many
/// jobs it has been given.
async fn worker_of(auditor: &mut Client, job: &pb::Job) -> (bool, u64, Vec<String>) {
    assert_eq!(job.status, pb::JobStatus::Succeeded as i32, "{}", job.error);
    let (detail, sent) = job_outcome(auditor, &job.id).await;
    let confinement = detail["confinement"].as_str().unwrap_or_default();
    assert!(confinement.contains("landlock"), "{confinement}");
    (
        detail["worker"]["reused"].as_bool().expect("audited"),
        detail["worker"]["jobs"].as_u64().expect("audited"),
        sent,
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_scenarios_jobs_share_a_confined_worker_that_keeps_no_keys() {
    let domain = Domain::new();
    let server = domain.start_with("[worker]\naddress_space_mib = 1024\n", None);
    let Approved {
        people: mut p,
        scenario_id: sc,
        datasets: [health, other],
    } = approved_scenario(&server, &domain, "r", ["health_records", "other_records"]).await;
    let sc_health = scenario(&mut p, &[&health]).await;
    let health_kek = format!("dataset:{}", health.id);
    let other_kek = format!("dataset:{}", other.id);
    let run = |sql: &'static str, sc: String| {
        let mut engineer = p.engineer.clone();
        async move { engineer.run_sql(sql, &sc, WAIT).await.unwrap() }
    };
    let by_district = "SELECT district, count(*) AS n FROM health_records GROUP BY district";

    // The scenario's first job starts a worker; the next ones run in it, one after another.
    let first = run(by_district, sc.clone()).await;
    let (reused, jobs, _) = worker_of(&mut p.auditor, &first).await;
    assert!(!reused && jobs == 1);
    let second = run("SELECT count(*) AS n FROM other_records", sc.clone()).await;
    let (reused, jobs, sent) = worker_of(&mut p.auditor, &second).await;
    assert!(reused && jobs == 2, "{reused} {jobs}");
    // Keys are per job: the second got only what it read, the third asks for the first's
    // dataset key again (the worker dropped it with the first job's engine).
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert!(
        sent.contains(&other_kek) && !sent.contains(&health_kek),
        "{sent:?}"
    );
    let third = run(by_district, sc.clone()).await;
    let (reused, jobs, sent) = worker_of(&mut p.auditor, &third).await;
    assert!(reused && jobs == 3, "{reused} {jobs}");
    assert!(sent.contains(&health_kek), "{sent:?}");
    assert!(sent.contains(&format!("job:{}", third.id)), "{sent:?}");
    // Each job is metered on its own.
    assert!(
        third
            .usage
            .as_ref()
            .is_some_and(|u| u.peak_memory_bytes > 1 << 20)
    );

    // Another scenario gets a worker of its own.
    let elsewhere = run(by_district, sc_health.clone()).await;
    let (reused, jobs, _) = worker_of(&mut p.auditor, &elsewhere).await;
    assert!(!reused && jobs == 1, "{reused} {jobs}");

    // A job that kills its worker (past the address-space ceiling) ends only that worker:
    // the scenario's next job gets a fresh one and runs.
    let hog = "SELECT length(repeat('x', 1500000000)) AS n FROM health_records LIMIT 1";
    let died = run(hog, sc.clone()).await;
    assert_eq!(died.status, pb::JobStatus::Failed as i32, "{died:?}");
    let after = run(by_district, sc.clone()).await;
    let (reused, jobs, _) = worker_of(&mut p.auditor, &after).await;
    assert!(!reused && jobs == 1, "{reused} {jobs}");
    // The same figures as in the first worker.
    assert_eq!(after.n_rows, first.n_rows);
    let rows = |job: &pb::Job| {
        let mut rows: Vec<Vec<String>> = job
            .preview
            .as_ref()
            .map(|t| t.rows.iter().map(|r| r.values.clone()).collect())
            .unwrap_or_default();
        rows.sort();
        rows
    };
    assert_eq!(rows(&after), rows(&first));
    assert!(!rows(&first).is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_that_dies_fails_only_its_own_job() {
    let domain = Domain::new();
    // A 1 GiB address-space ceiling: a 1.5 GB string cannot be allocated, and the allocator
    // aborts the worker process (memory a pool does not track, as in a memory hog).
    let server = domain.start_with("[worker]\nstack_mib = 32\naddress_space_mib = 1024\n", None);
    let Approved {
        people: mut p,
        scenario_id: sc,
        datasets: _,
    } = approved_scenario(&server, &domain, "d", ["health_records"]).await;

    let hog = "SELECT length(repeat('x', 1500000000)) AS n FROM health_records LIMIT 1";
    let job = p.engineer.run_sql(hog, &sc, WAIT).await.unwrap();
    assert_eq!(job.status, pb::JobStatus::Failed as i32);
    assert!(
        job.error.contains("memory ceiling") || job.error.contains("worker process died"),
        "a clear reason: {:?}",
        job.error
    );
    // The server and the next job are unaffected.
    let ok = p
        .engineer
        .run_sql("SELECT count(*) AS n FROM health_records", &sc, WAIT)
        .await
        .unwrap();
    assert_eq!(ok.status, pb::JobStatus::Succeeded as i32, "{}", ok.error);
}

#[tokio::test(flavor = "multi_thread")]
async fn deep_expressions_are_refused_before_planning() {
    let domain = Domain::new();
    let server = domain.start();
    let Approved {
        people: mut p,
        scenario_id: sc,
        datasets: _,
    } = approved_scenario(&server, &domain, "x", ["health_records"]).await;
    // The flat chain that aborts DataFusion's planner (ENGINE-NOTES), a long OR chain, and
    // parentheses past the parser's own recursion limit.
    for deep in [
        format!("SELECT {} AS x", vec!["1"; 5_000].join("+")),
        format!(
            "SELECT count(*) AS n FROM health_records WHERE {}",
            vec!["cost > 1"; 2_000].join(" OR ")
        ),
        format!("SELECT {}1{} AS x", "(".repeat(200), ")".repeat(200)),
    ] {
        let job = p.engineer.run_sql(&deep, &sc, WAIT).await.unwrap();
        assert_eq!(job.status, pb::JobStatus::Failed as i32, "{job:?}");
        assert!(
            job.error.contains("levels deep") || job.error.contains("ecursion"),
            "{:?}",
            job.error
        );
    }
    // A wide but shallow query is fine.
    let wide = format!(
        "SELECT {} FROM health_records",
        (0..300)
            .map(|i| format!("cost + {i} AS c{i}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let ok = p.engineer.run_sql(&wide, &sc, WAIT).await.unwrap();
    assert_eq!(ok.status, pb::JobStatus::Succeeded as i32, "{}", ok.error);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deadline_stops_the_worker() {
    let domain = Domain::new();
    let policy = include_str!("../../../../policies/default.toml")
        .replace("timeout_secs = 300", "timeout_secs = 2")
        .replace(
            "version = \"2026.11-2\"",
            "version = \"test-short-timeout\"",
        );
    assert!(policy.contains("timeout_secs = 2") && policy.contains("test-short-timeout"));
    let server = domain.start_with("max_running_jobs = 2\n", Some(&policy));
    let Approved {
        people: mut p,
        scenario_id: sc,
        datasets: _,
    } = approved_scenario(&server, &domain, "c", ["health_records"]).await;

    let timed_out = p.engineer.run_sql(SLOW_SQL, &sc, WAIT).await.unwrap();
    assert_eq!(timed_out.status, pb::JobStatus::Failed as i32);
    assert!(
        timed_out.error.contains("time limit"),
        "{:?}",
        timed_out.error
    );
    let usage = timed_out.usage.expect("metered");
    assert!(usage.wall_ms >= 1_500, "{usage:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn cancel_progress_fair_queue_and_usage() {
    let domain = Domain::new();
    let server = domain.start_with(
        "max_running_jobs = 2\ntenant_max_running_jobs = 1\ntenant_max_queued_jobs = 3\n",
        None,
    );
    let mut a = people(&server, &domain, "qa").await;
    let mut b = people(&server, &domain, "qb").await;
    let dataset = ingest_people(&mut a.steward, "health_records").await;
    grant(&mut a.admin, &dataset.id, &a.tenant_id).await;
    grant(&mut a.admin, &dataset.id, &b.tenant_id).await;
    let sc_a = scenario(&mut a, &[&dataset]).await;
    let sc_b =
        scenario_approved_by(&mut b.engineer, &mut a.steward, &mut a.admin, &[&dataset]).await;

    // Tenant A fills its share: one job runs, the others wait in A's queue.
    let a1 = submit(&mut a.engineer, &sc_a, SLOW_SQL).await;
    let a2 = submit(&mut a.engineer, &sc_a, SLOW_SQL).await;
    let a3 = submit(
        &mut a.engineer,
        &sc_a,
        "SELECT count(*) AS n, sum(cost) AS s FROM health_records",
    )
    .await;
    let refused = a
        .engineer
        .jobs
        .submit_job(production_sql("SELECT 1 AS one", &sc_a))
        .await;
    assert_eq!(status_code(refused), Code::ResourceExhausted);
    let running = poll_until(&mut a.engineer, &a1.id, "running", |j| {
        stage(j) == "running" && j.progress.as_ref().is_some_and(|p| p.bytes_scanned > 0)
    })
    .await;
    assert_eq!(running.status, pb::JobStatus::Running as i32);
    let queued = get(&mut a.engineer, &a3.id).await;
    assert_eq!(stage(&queued), "queued");
    assert_eq!(queued.progress.unwrap().queue_position, 2);

    // Tenant B's job, submitted after all of A's, runs at once on the free slot.
    let b1 = b
        .engineer
        .run_sql("SELECT count(*) AS n FROM health_records", &sc_b, WAIT)
        .await
        .unwrap();
    assert_eq!(b1.status, pb::JobStatus::Succeeded as i32, "{}", b1.error);
    assert_eq!(
        stage(&get(&mut a.engineer, &a2.id).await),
        "queued",
        "A's second job still waits for A's slot"
    );

    // Another tenant cannot cancel A's job, nor learn that it exists.
    let foreign = b
        .engineer
        .jobs
        .cancel_job(pb::CancelJobRequest {
            job_id: a1.id.clone(),
        })
        .await;
    assert_eq!(status_code(foreign), Code::NotFound);

    // Cancelling a queued job removes it; cancelling the running one kills its worker.
    let cancelled = cancel(&mut a.engineer, &a2.id).await;
    assert_eq!(cancelled.status, pb::JobStatus::Cancelled as i32);
    let cancelled = cancel(&mut a.engineer, &a1.id).await;
    assert_eq!(
        cancelled.status,
        pb::JobStatus::Cancelled as i32,
        "{cancelled:?}"
    );
    assert!(cancelled.usage.is_some());
    // A's last job now gets the slot and finishes.
    let a3 = a.engineer.wait_job(&a3.id, WAIT).await.unwrap();
    assert_eq!(a3.status, pb::JobStatus::Succeeded as i32, "{}", a3.error);
    // Cancelling a finished job is refused, and changes nothing.
    let again = a
        .engineer
        .jobs
        .cancel_job(pb::CancelJobRequest {
            job_id: a3.id.clone(),
        })
        .await;
    assert_eq!(status_reason(again), "JOB_FINISHED");

    // Metering: each tenant's engineer sees its own totals only; admins and auditors all.
    let usage = |r: pb::GetUsageResponse| r.tenants;
    let own = usage(
        a.engineer
            .jobs
            .get_usage(pb::GetUsageRequest {
                tenant_id: b.tenant_id.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner(),
    );
    assert_eq!(own.len(), 1);
    assert_eq!(
        own[0].tenant_id, a.tenant_id,
        "engineers see their own tenant"
    );
    assert_eq!(
        (
            own[0].jobs,
            own[0].jobs_succeeded,
            own[0].jobs_failed,
            own[0].jobs_cancelled
        ),
        (3, 1, 0, 2)
    );
    let total = own[0].total.unwrap();
    assert!(total.cpu_ms > 0 && total.bytes_scanned > 0, "{total:?}");
    for viewer in [&mut a.admin, &mut a.auditor] {
        let all = usage(
            viewer
                .jobs
                .get_usage(pb::GetUsageRequest::default())
                .await
                .unwrap()
                .into_inner(),
        );
        let b_row = all.iter().find(|t| t.tenant_id == b.tenant_id).expect("B");
        assert_eq!((b_row.jobs, b_row.jobs_succeeded), (1, 1));
    }
    let denied = a
        .reviewer
        .jobs
        .get_usage(pb::GetUsageRequest::default())
        .await;
    assert_eq!(status_code(denied), Code::PermissionDenied);
    let bad_period = a
        .admin
        .jobs
        .get_usage(pb::GetUsageRequest {
            from_ms: 10,
            to_ms: 5,
            ..Default::default()
        })
        .await;
    assert_eq!(status_code(bad_period), Code::InvalidArgument);
}

/// Opens `WatchJob` and collects every message until the stream ends.
async fn watch_all(engineer: &mut Client, id: &str) -> Vec<pb::Job> {
    let mut stream = engineer
        .jobs
        .watch_job(pb::WatchJobRequest { job_id: id.into() })
        .await
        .expect("watch")
        .into_inner();
    let mut seen = Vec::new();
    while let Some(message) = tokio::time::timeout(WAIT, stream.message())
        .await
        .expect("the watch ends once the job has")
        .expect("watch message")
    {
        seen.push(message.job.expect("job"));
    }
    seen
}

#[tokio::test(flavor = "multi_thread")]
async fn watch_job_pushes_each_change_until_the_end_and_is_audited_once() {
    let domain = Domain::new();
    let server = domain.start_with("max_running_jobs = 1\ntenant_max_running_jobs = 1\n", None);
    let Approved {
        people: mut a,
        scenario_id: sc_a,
        datasets: _,
    } = approved_scenario(&server, &domain, "wa", ["health_records"]).await;
    let mut b = people(&server, &domain, "wb").await;

    // a1 holds the only slot; a2 waits behind it.
    let a1 = submit(&mut a.engineer, &sc_a, SLOW_SQL).await;
    poll_until(&mut a.engineer, &a1.id, "running", |j| {
        stage(j) == "running"
    })
    .await;
    let a2 = submit(
        &mut a.engineer,
        &sc_a,
        "SELECT count(*) AS n, sum(cost) AS s FROM health_records",
    )
    .await;

    // Bad ids and other tenants' jobs are refused before any stream opens.
    let invalid = a
        .engineer
        .jobs
        .watch_job(pb::WatchJobRequest {
            job_id: String::new(),
        })
        .await;
    assert_eq!(status_code(invalid), Code::InvalidArgument);
    let foreign = b
        .engineer
        .jobs
        .watch_job(pb::WatchJobRequest {
            job_id: a2.id.clone(),
        })
        .await;
    assert_eq!(status_code(foreign), Code::NotFound);

    // Watch a2 while a1 is cancelled: a2 moves from the queue to its worker and finishes.
    let mut stream = a
        .engineer
        .jobs
        .watch_job(pb::WatchJobRequest {
            job_id: a2.id.clone(),
        })
        .await
        .expect("watch")
        .into_inner();
    let first = stream.message().await.unwrap().unwrap().job.unwrap();
    assert_eq!(first.status, pb::JobStatus::Queued as i32, "{first:?}");
    assert_eq!(first.progress.as_ref().unwrap().queue_position, 1);
    cancel(&mut a.engineer, &a1.id).await;
    let mut seen = vec![first];
    while let Some(message) = tokio::time::timeout(WAIT, stream.message())
        .await
        .expect("the watch ends once the job has")
        .expect("watch message")
    {
        seen.push(message.job.expect("job"));
    }
    let last = seen.last().unwrap();
    assert_eq!(last.status, pb::JobStatus::Succeeded as i32, "{seen:?}");
    assert_eq!(last.n_rows, 1);
    assert!(
        seen[..seen.len() - 1]
            .iter()
            .all(|j| !shuyu_client::is_finished(j)),
        "the stream ends with the finished job: {seen:?}"
    );
    assert!(
        seen.windows(2).all(|w| w[0] != w[1]),
        "a message is sent only when the job's view changed: {seen:?}"
    );
    // A finished job is sent once, and the stream ends.
    let again = watch_all(&mut a.engineer, &a2.id).await;
    assert_eq!(again.len(), 1);
    assert_eq!(again[0], *last);

    // Each watch is one audit record, however many messages it sent.
    let records = audit_records(&mut a.auditor).await;
    let watches = records
        .iter()
        .filter(|r| r.action == "view_job" && r.target == format!("job:{}", a2.id))
        .filter(|r| r.detail_json.contains("\"watch\":true"))
        .count();
    assert_eq!(watches, 2, "two watches of a2, {} messages", seen.len());
}

/// The bucket a figure shows as to engineers: the smallest of `floor × {1, 3, 10, 30, …}`
/// at least as large (0 stays 0).
fn bucket(exact: u64, floor: u64) -> u64 {
    if exact == 0 {
        return 0;
    }
    let mut b = floor;
    let mut times_three = true;
    while b < exact {
        b = if times_three { b * 3 } else { b / 3 * 10 };
        times_three = !times_three;
    }
    b
}

#[tokio::test(flavor = "multi_thread")]
async fn engineers_see_production_usage_coarsened_admins_and_auditors_exact() {
    let domain = Domain::new();
    let server = domain.start();
    let Approved {
        people: mut p,
        scenario_id: sc,
        datasets: _,
    } = approved_scenario(&server, &domain, "u", ["health_records"]).await;

    let sql =
        "SELECT district, count(*) AS n, sum(cost) AS s FROM health_records GROUP BY district";
    let job = p.engineer.run_sql(sql, &sc, WAIT).await.unwrap();
    assert_eq!(job.status, pb::JobStatus::Succeeded as i32, "{}", job.error);
    let shown = job.usage.expect("metered");
    let (detail, _) = job_outcome(&mut p.auditor, &job.id).await;
    let exact = |key: &str| detail["usage"][key].as_u64().expect("exact usage audited");
    for (key, shown, floor) in [
        ("cpu_ms", shown.cpu_ms, 1_000),
        ("wall_ms", shown.wall_ms, 1_000),
        ("bytes_scanned", shown.bytes_scanned, 1_000_000),
        ("peak_memory_bytes", shown.peak_memory_bytes, 1_000_000),
    ] {
        assert_eq!(
            shown,
            bucket(exact(key), floor),
            "{key}: exact {}",
            exact(key)
        );
    }
    // A worker's peak memory is never a round bucket: what the engineer sees is not it.
    assert_ne!(shown.peak_memory_bytes, exact("peak_memory_bytes"));
    assert_eq!(
        shown.queued_ms,
        exact("queued_ms"),
        "queueing is not coarsened"
    );
    // Every view of the job shows the same coarse figures.
    let listed = p
        .engineer
        .jobs
        .list_jobs(pb::ListJobsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .jobs;
    assert_eq!(listed[0].usage, Some(shown));

    // GetUsage: the engineer's totals are the coarse figures summed; billing's are exact.
    let total = |r: pb::GetUsageResponse, tenant: &str| {
        r.tenants
            .into_iter()
            .find(|t| t.tenant_id == tenant)
            .and_then(|t| t.total)
            .expect("the tenant's row")
    };
    let engineer_total = total(
        p.engineer
            .jobs
            .get_usage(pb::GetUsageRequest::default())
            .await
            .unwrap()
            .into_inner(),
        &p.tenant_id,
    );
    assert_eq!(
        (engineer_total.cpu_ms, engineer_total.peak_memory_bytes),
        (shown.cpu_ms, shown.peak_memory_bytes)
    );
    for viewer in [&mut p.admin, &mut p.auditor] {
        let exact_total = total(
            viewer
                .jobs
                .get_usage(pb::GetUsageRequest::default())
                .await
                .unwrap()
                .into_inner(),
            &p.tenant_id,
        );
        assert_eq!(
            (
                exact_total.cpu_ms,
                exact_total.bytes_scanned,
                exact_total.peak_memory_bytes
            ),
            (
                exact("cpu_ms"),
                exact("bytes_scanned"),
                exact("peak_memory_bytes")
            )
        );
    }

    // A lab job runs on masked copies: its figures stay exact.
    let lab = p
        .engineer
        .jobs
        .submit_job(lab_sql(sql))
        .await
        .unwrap()
        .into_inner()
        .job
        .unwrap();
    let lab = p.engineer.wait_job(&lab.id, WAIT).await.unwrap();
    assert_eq!(lab.status, pb::JobStatus::Succeeded as i32, "{}", lab.error);
    let (lab_detail, _) = job_outcome(&mut p.auditor, &lab.id).await;
    assert_eq!(
        lab.usage.unwrap().peak_memory_bytes,
        lab_detail["usage"]["peak_memory_bytes"].as_u64().unwrap()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_plan_that_panics_the_engine_is_refused_and_counts_no_failure() {
    let domain = Domain::new();
    let server = domain.start();
    let mut p = people(&server, &domain, "pp").await;
    // The engine fuzz fixture's `visits` table, which the plan reads.
    let mut csv = String::from("person_id,district,birth_year,diagnosis,cost,year\n");
    for i in 0..30 {
        csv.push_str(&format!(
            "P{i},D{},{},flu,{}.5,2021\n",
            i % 3,
            1950 + i,
            100 + i
        ));
    }
    let visits = p
        .steward
        .ingest(
            pb::IngestHeader {
                name: "visits".into(),
                description: "fuzz fixture".into(),
                format: pb::DataFormat::Csv as i32,
                columns: vec![
                    column("person_id", "string", "direct_identifier", "pseudonym"),
                    column("district", "string", "ordinary", "keep"),
                    column("birth_year", "int64", "quasi_identifier", ""),
                    column("diagnosis", "string", "sensitive", ""),
                    column("cost", "float64", "sensitive", ""),
                    column("year", "int64", "ordinary", "keep"),
                ],
            },
            csv.into_bytes(),
        )
        .await
        .expect("ingest");
    grant(&mut p.admin, &visits.id, &p.tenant_id).await;
    let sc = scenario(&mut p, &[&visits]).await;

    // A Substrait plan (from the engine's fuzzing) whose field reference lies past its
    // input: datafusion-substrait indexes out of bounds and panics while planning.
    let plan = include_bytes!(
        "../../../shuyu-engine/tests/fuzz-regressions/substrait-field-reference-panic.bin"
    );
    let job = p
        .engineer
        .jobs
        .submit_job(pb::SubmitJobRequest {
            substrait_plan: plan.to_vec(),
            ..production_sql("", &sc)
        })
        .await
        .expect("submitted")
        .into_inner()
        .job
        .unwrap();
    let job = p.engineer.wait_job(&job.id, WAIT).await.unwrap();
    assert_eq!(job.status, pb::JobStatus::Failed as i32, "{job:?}");
    assert!(
        job.error.contains("refused") && job.error.contains("engine fault"),
        "a refusal, not a dead worker: {:?}",
        job.error
    );
    let (detail, _) = job_outcome(&mut p.auditor, &job.id).await;
    assert!(detail.get("counted_failure").is_none(), "{detail}");
    // The scenario's next job runs.
    let ok = p
        .engineer
        .run_sql(
            "SELECT district, count(*) AS n FROM visits GROUP BY district",
            &sc,
            WAIT,
        )
        .await
        .unwrap();
    assert_eq!(ok.status, pb::JobStatus::Succeeded as i32, "{}", ok.error);
}
