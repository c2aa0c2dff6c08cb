//! Several servers sharing one domain: one data dir and one PostgreSQL, each `shuyu serve`
//! holding a lease of its own. A job runs once, on the server it was submitted to; votes
//! cast on two servers at the same moment reach the quorum once and build one package; a
//! server killed with `kill -9` leaves the other serving, and its job failed with a reason.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use shuyu_client::{Client, production_sql, v1 as pb};

use crate::harness::fixtures::*;
use crate::harness::*;

/// Prints the tail of each server's log when the test fails (the log is kept beside the
/// data dir, `server.log`, and goes with the temporary directory).
struct LogsOnFailure(Vec<(&'static str, PathBuf)>);

impl LogsOnFailure {
    fn of(servers: &[(&'static str, &Server)]) -> LogsOnFailure {
        LogsOnFailure(
            servers
                .iter()
                .map(|(name, s)| (*name, s.log.clone()))
                .collect(),
        )
    }
}

impl Drop for LogsOnFailure {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        for (name, path) in &self.0 {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = &lines[lines.len().saturating_sub(300)..];
            eprintln!(
                "---- server {name} log ({}), last {} lines ----\n{}",
                path.display(),
                tail.len(),
                tail.join("\n")
            );
        }
    }
}

async fn get_job(client: &mut Client, id: &str) -> pb::Job {
    client
        .jobs
        .get_job(pb::GetJobRequest { job_id: id.into() })
        .await
        .expect("get job")
        .into_inner()
        .job
        .expect("job")
}

async fn whoami(client: &mut Client) -> pb::Principal {
    client
        .session
        .who_am_i(pb::WhoAmIRequest {})
        .await
        .expect("whoami")
        .into_inner()
        .principal
        .expect("principal")
}

async fn list_jobs(client: &mut Client) -> Vec<pb::Job> {
    client
        .jobs
        .list_jobs(pb::ListJobsRequest {
            tenant_id: String::new(),
        })
        .await
        .expect("list jobs")
        .into_inner()
        .jobs
}

/// How many audit records of `action` name each target (read from the metadata).
fn audited(domain: &Domain, action: &str) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for row in domain.query_texts(
        &format!("SELECT target FROM audit WHERE action = '{action}'"),
        &["target"],
    ) {
        *counts
            .entry(row[0].clone().unwrap_or_default())
            .or_default() += 1;
    }
    counts
}

/// `shuyu audit verify` passes over the domain (its servers stopped).
fn assert_audit_verifies(domain: &Domain) {
    let verify = audit_verify(&domain.data);
    assert!(
        verify.status.success(),
        "audit verify failed: {}{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn jobs_submitted_to_either_server_run_exactly_once() {
    let domain = Domain::new_postgres();
    let a = Server::start(&domain.data);
    let b = Server::start(&domain.data);
    let logs = LogsOnFailure::of(&[("A", &a), ("B", &b)]);
    let Approved {
        people: p,
        scenario_id: sc,
        ..
    } = approved_scenario(&a, &domain, "once", ["residents"]).await;
    let mut on_a = p.engineer.clone();
    let mut on_b = b.client(&domain.creds("engineer-once")).await;

    // Six jobs, each submitted alternately to A and to B, all before any is awaited.
    let mut submitted = Vec::new();
    for i in 0..6 {
        let sql = format!(
            "SELECT district, count(*) AS n FROM residents WHERE cost > {} GROUP BY district",
            100 + i * 10
        );
        let (server, client) = if i % 2 == 0 {
            ("A", &mut on_a)
        } else {
            ("B", &mut on_b)
        };
        let job = client
            .jobs
            .submit_job(production_sql(&sql, &sc))
            .await
            .expect("submit")
            .into_inner()
            .job
            .expect("job");
        submitted.push((server, job.id));
    }

    // Each finishes, seen through the server it was not submitted to.
    for (server, id) in &submitted {
        let other = if *server == "A" { &mut on_b } else { &mut on_a };
        let job = eventually(&format!("job {id} to finish"), WAIT, async || {
            let job = get_job(other, id).await;
            shuyu_client::is_finished(&job).then_some(job)
        })
        .await;
        assert_eq!(
            job.status,
            pb::JobStatus::Succeeded as i32,
            "job {id} (submitted to {server}): {}",
            job.error
        );
    }

    // Each ran once, on the server it was submitted to: one outcome each in the trail, none
    // interrupted, and one server recorded for A's jobs, another for B's.
    let finished = audited(&domain, "job_finished");
    let interrupted = audited(&domain, "job_interrupted");
    for (server, id) in &submitted {
        let target = format!("job:{id}");
        assert_eq!(
            finished.get(&target).copied().unwrap_or(0),
            1,
            "job {id} (submitted to {server}) has not exactly one outcome: {finished:?}"
        );
        assert!(!interrupted.contains_key(&target), "{interrupted:?}");
    }
    let runners: BTreeMap<String, String> = domain
        .query_texts(
            "SELECT job_id, server_id FROM job_servers",
            &["job_id", "server_id"],
        )
        .into_iter()
        .map(|row| {
            (
                row[0].clone().unwrap_or_default(),
                row[1].clone().unwrap_or_default(),
            )
        })
        .collect();
    let servers_of = |which: &str| -> BTreeSet<String> {
        submitted
            .iter()
            .filter(|(server, _)| *server == which)
            .map(|(_, id)| {
                runners
                    .get(id)
                    .unwrap_or_else(|| panic!("no server recorded for job {id}: {runners:?}"))
                    .clone()
            })
            .collect()
    };
    let (ran_a, ran_b) = (servers_of("A"), servers_of("B"));
    assert_eq!(ran_a.len(), 1, "A's jobs ran on {ran_a:?}");
    assert_eq!(ran_b.len(), 1, "B's jobs ran on {ran_b:?}");
    assert_ne!(ran_a, ran_b, "A's and B's jobs ran on one server");

    drop((p, on_a, on_b));
    drop((a, b));
    assert_audit_verifies(&domain);
    drop(logs);
}

/// The export's stored packages (`.pkg`; a CSV product's `.flight` copy beside each).
fn packages(domain: &Domain, tenant_id: &str, export_id: &str) -> Vec<PathBuf> {
    let dir = domain
        .data
        .join("objects/exports")
        .join(tenant_id)
        .join(export_id);
    if !dir.exists() {
        return Vec::new();
    }
    walk(&dir)
        .into_iter()
        .filter(|f| f.extension().is_some_and(|e| e == "pkg"))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn simultaneous_votes_on_two_servers_approve_one_package() {
    let domain = Domain::new_postgres();
    let a = Server::start(&domain.data);
    let b = Server::start(&domain.data);
    let logs = LogsOnFailure::of(&[("A", &a), ("B", &b)]);
    let Approved {
        people: mut p,
        scenario_id: sc,
        ..
    } = approved_scenario(&a, &domain, "votes", ["residents"]).await;
    let job = p
        .engineer
        .run_sql(
            "SELECT district, count(*) AS n, avg(cost) AS avg_cost FROM residents GROUP BY district",
            &sc,
            WAIT,
        )
        .await
        .unwrap();
    assert_eq!(job.status, pb::JobStatus::Succeeded as i32, "{}", job.error);
    let mut reviewer_a = p.reviewer.clone();
    let mut reviewer_b = b.client(&domain.creds("reviewer2-votes")).await;
    let mut recipient_b = b.client(&domain.creds("recipient-votes")).await;
    let reviewer_ids: BTreeSet<String> = [
        whoami(&mut reviewer_a).await.id,
        whoami(&mut reviewer_b).await.id,
    ]
    .into();

    // Rounds, so that the two votes meet in more than one interleaving.
    for round in 0..3 {
        let export = request_export(&mut p, &job.id).await;
        assert_eq!(export.quorum, 2, "the default policy's quorum");
        let (vote_a, vote_b) = tokio::join!(
            approve(&mut reviewer_a, &export.id, "on A"),
            approve(&mut reviewer_b, &export.id, "on B"),
        );
        let (vote_a, vote_b) = (
            vote_a.unwrap_or_else(|e| panic!("round {round}: the vote on A: {e:?}")),
            vote_b.unwrap_or_else(|e| panic!("round {round}: the vote on B: {e:?}")),
        );
        // One of the two saw the other's vote and reached the quorum.
        let approved = pb::ExportStatus::Approved as i32;
        assert!(
            vote_a.status == approved || vote_b.status == approved,
            "round {round}: neither vote approved: {vote_a:?} {vote_b:?}"
        );

        let done = p
            .reviewer
            .exports
            .get_export(pb::GetExportRequest {
                export_id: export.id.clone(),
            })
            .await
            .unwrap()
            .into_inner()
            .export
            .unwrap();
        assert_eq!(done.status, approved, "round {round}: {done:?}");
        assert_eq!(done.approvals, 2, "round {round}: {done:?}");
        let to_approved = done
            .events
            .iter()
            .filter(|e| e.to_status == "approved")
            .count();
        assert_eq!(to_approved, 1, "round {round}: {:?}", done.events);

        // In the metadata: one approval per reviewer and one package.
        let votes = domain.query_texts(
            &format!(
                "SELECT reviewer_id, decision FROM export_votes WHERE export_id = '{}'",
                export.id
            ),
            &["reviewer_id", "decision"],
        );
        let voted: BTreeSet<String> = votes
            .iter()
            .map(|v| {
                assert_eq!(v[1].as_deref(), Some("approve"), "round {round}: {votes:?}");
                v[0].clone().unwrap_or_default()
            })
            .collect();
        assert_eq!(votes.len(), 2, "round {round}: {votes:?}");
        assert_eq!(voted, reviewer_ids, "round {round}");
        let locations = domain.query_texts(
            &format!(
                "SELECT package_location FROM exports WHERE id = '{}'",
                export.id
            ),
            &["package_location"],
        );
        assert_eq!(locations.len(), 1);
        let location = locations[0][0].clone().unwrap_or_default();
        assert!(!location.is_empty(), "round {round}: no package recorded");
        let stored = packages(&domain, &p.tenant_id, &export.id);
        assert_eq!(
            stored.len(),
            1,
            "round {round}: exactly the committed package is stored: {stored:?} ({location})"
        );

        // The product downloads from either server, the same bytes, and verifies, naming
        // both approvals.
        let from_a = p.recipient.download(&export.id).await.unwrap();
        let from_b = recipient_b.download(&export.id).await.unwrap();
        assert!(
            from_a == from_b,
            "round {round}: A and B served other bytes"
        );
        let manifest = shuyu_verify::package::verify(&from_b, None)
            .unwrap()
            .manifest;
        assert_eq!(manifest.quorum, 2);
        let named: BTreeSet<String> = manifest
            .approvals
            .iter()
            .map(|a| a.reviewer_id.clone())
            .collect();
        assert_eq!(manifest.approvals.len(), 2, "round {round}");
        assert_eq!(named, reviewer_ids, "round {round}");
    }

    drop((p, reviewer_a, reviewer_b, recipient_b));
    drop((a, b));
    assert_audit_verifies(&domain);
    drop(logs);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_server_leaves_the_other_serving_and_its_job_failed_with_a_reason() {
    let domain = Domain::new_postgres();
    let a = Server::start(&domain.data);
    let b = Server::start(&domain.data);
    let logs = LogsOnFailure::of(&[("A", &a), ("B", &b)]);
    let Approved {
        people: p,
        scenario_id: sc,
        ..
    } = approved_scenario(&a, &domain, "kill", ["residents"]).await;
    let mut on_a = p.engineer.clone();
    let mut on_b = b.client(&domain.creds("engineer-kill")).await;
    let me = whoami(&mut on_b).await;

    let slow = on_a
        .jobs
        .submit_job(production_sql(
            "SELECT sum(value % 7) AS s FROM range(100000000000)",
            &sc,
        ))
        .await
        .expect("submit")
        .into_inner()
        .job
        .expect("job");
    eventually("the slow job to run on A", WAIT, async || {
        let job = get_job(&mut on_b, &slow.id).await;
        assert!(!shuyu_client::is_finished(&job), "it ended: {job:?}");
        (job.status == pb::JobStatus::Running as i32).then_some(())
    })
    .await;
    // Marked running as its worker starts: wait for the process itself.
    let a_pid = a.child.id();
    let workers = eventually("A's worker process", WAIT, async || {
        let workers = children_of(a_pid);
        (!workers.is_empty()).then_some(workers)
    })
    .await;

    drop((p, on_a));
    a.kill();

    // B keeps serving at once, and still sees the job as it was.
    assert_eq!(whoami(&mut on_b).await.id, me.id);
    let listed = list_jobs(&mut on_b).await;
    assert!(
        listed.iter().any(|j| j.id == slow.id),
        "B does not list the job: {listed:?}"
    );
    // A's workers do not outlive it.
    for worker in workers {
        eventually(&format!("A's worker {worker} to end"), WAIT, async || {
            dead(worker).then_some(())
        })
        .await;
    }

    // Once A's lease has expired (two minutes later on the domain's clock: past the 20 s
    // lease), B fails A's job, with the reason.
    domain.advance_clock(std::time::Duration::from_secs(120));
    let job = eventually("A's job to be failed by B", WAIT, async || {
        let job = get_job(&mut on_b, &slow.id).await;
        assert!(
            matches!(
                pb::JobStatus::try_from(job.status),
                Ok(pb::JobStatus::Queued | pb::JobStatus::Running | pb::JobStatus::Failed)
            ),
            "the job ended otherwise: {job:?}"
        );
        (job.status == pb::JobStatus::Failed as i32).then_some(job)
    })
    .await;
    assert!(
        job.error.contains("the server running it stopped"),
        "{}",
        job.error
    );
    assert_eq!(whoami(&mut on_b).await.id, me.id);
    let listed = list_jobs(&mut on_b).await;
    let seen = listed
        .iter()
        .find(|j| j.id == slow.id)
        .expect("B lists the job");
    assert_eq!(seen.status, pb::JobStatus::Failed as i32);
    let target = format!("job:{}", slow.id);
    assert_eq!(
        audited(&domain, "job_interrupted").get(&target).copied(),
        Some(1),
        "the interruption is audited once"
    );
    assert!(!audited(&domain, "job_finished").contains_key(&target));

    drop(on_b);
    drop(b);
    assert_audit_verifies(&domain);
    drop(logs);
}
