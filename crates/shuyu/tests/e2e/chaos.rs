//! Kill -9 at random points (issue 17): the real server under a workload of ingests, tenants,
//! jobs, export requests and votes is SIGKILLed at a random moment, again and again. After
//! each kill: its worker processes die with it, the audit trail verifies; after each restart:
//! every call that was answered OK is still there, and no object is left that no record
//! names. `SHUYU_CHAOS_POINTS` sets the number of kills (20 by default; 200 or more on
//! demand), `SHUYU_CHAOS_SEED` the random seed (printed, to replay a failure).

use std::sync::{Arc, Mutex};

use std::time::Duration;

use shuyu_client::{Client, production_sql, v1 as pb};
use tonic::Code;

use crate::harness::fixtures::*;
use crate::harness::*;

/// What the server acknowledged (answered OK).
#[derive(Debug, Clone)]
enum Ack {
    Tenant(String),
    Dataset(String),
    JobSubmitted(String),
    JobSucceeded(String),
    Export(String),
    Approval { export: String, at_least: u64 },
    Approved(String),
}

/// A small deterministic generator (xorshift64*).
#[derive(Debug)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// The clients of one server life.
struct Actors {
    admin: Client,
    steward: Client,
    engineer: Client,
    reviewer: Client,
    reviewer2: Client,
}

async fn actors(server: &Server, domain: &Domain) -> Actors {
    Actors {
        admin: server.client(&domain.creds("admin")).await,
        steward: server.client(&domain.creds("steward-ch")).await,
        engineer: server.client(&domain.creds("engineer-ch")).await,
        reviewer: server.client(&domain.creds("reviewer-ch")).await,
        reviewer2: server.client(&domain.creds("reviewer2-ch")).await,
    }
}

const SQL: &str = "SELECT district, count(*) AS n FROM residents GROUP BY district";

/// Runs operations until the server dies (every call then fails), recording what was
/// acknowledged. `known` is what earlier lives acknowledged (jobs to export, exports to vote).
async fn workload(
    mut a: Actors,
    scenario: String,
    recipient_id: String,
    seed: u64,
    life: usize,
    acks: Arc<Mutex<Vec<Ack>>>,
) {
    let mut rng = Rng(seed | 1);
    let ack = |a: Ack| acks.lock().unwrap().push(a);
    let known = |pick: &dyn Fn(&Ack) -> Option<String>| -> Vec<String> {
        acks.lock().unwrap().iter().filter_map(pick).collect()
    };
    for i in 0.. {
        let result: Result<(), String> = match rng.below(6) {
            0 => a
                .admin
                .admin
                .create_tenant(pb::CreateTenantRequest {
                    name: format!("chaos-{life}-{i}"),
                })
                .await
                .map(|r| ack(Ack::Tenant(r.into_inner().tenant.unwrap().id)))
                .map_err(|e| e.to_string()),
            1 => a
                .steward
                .ingest(
                    pb::IngestHeader {
                        name: format!("chaos_{life}_{i}"),
                        description: String::new(),
                        format: pb::DataFormat::Csv as i32,
                        columns: people_columns(),
                    },
                    people_csv().into_bytes(),
                )
                .await
                .map(|d| ack(Ack::Dataset(d.id)))
                .map_err(|e| e.to_string()),
            2 => {
                match a
                    .engineer
                    .jobs
                    .submit_job(production_sql(SQL, &scenario))
                    .await
                {
                    Ok(r) => {
                        let id = r.into_inner().job.unwrap().id;
                        ack(Ack::JobSubmitted(id.clone()));
                        match a.engineer.wait_job(&id, WAIT).await {
                            Ok(job) if job.status == pb::JobStatus::Succeeded as i32 => {
                                ack(Ack::JobSucceeded(id));
                                Ok(())
                            }
                            Ok(job) => Err(format!("job {id}: {}", job.error)),
                            Err(e) => Err(e.to_string()),
                        }
                    }
                    Err(e) => Err(e.to_string()),
                }
            }
            3 => {
                let jobs = known(&|k| match k {
                    Ack::JobSucceeded(id) => Some(id.clone()),
                    _ => None,
                });
                if jobs.is_empty() {
                    continue;
                }
                let job = &jobs[rng.below(jobs.len() as u64) as usize];
                a.engineer
                    .exports
                    .request_export(pb::RequestExportRequest {
                        job_id: job.clone(),
                        purpose: "chaos".into(),
                        format: pb::DataFormat::Csv as i32,
                        recipient_id: recipient_id.clone(),
                        permitted_use: "chaos".into(),
                        expires_in_days: 0,
                    })
                    .await
                    .map(|r| ack(Ack::Export(r.into_inner().export.unwrap().id)))
                    .map_err(|e| e.to_string())
            }
            _ => {
                let exports = known(&|k| match k {
                    Ack::Export(id) => Some(id.clone()),
                    _ => None,
                });
                if exports.is_empty() {
                    continue;
                }
                let export = exports[rng.below(exports.len() as u64) as usize].clone();
                let reviewer = if rng.below(2) == 0 {
                    &mut a.reviewer
                } else {
                    &mut a.reviewer2
                };
                match approve(reviewer, &export, "chaos").await {
                    Ok(e) if e.status == pb::ExportStatus::Approved as i32 => {
                        ack(Ack::Approved(export));
                        Ok(())
                    }
                    Ok(e) => {
                        ack(Ack::Approval {
                            export,
                            at_least: e.approvals,
                        });
                        Ok(())
                    }
                    // Already voted, or no longer in review: a refusal, not a crash.
                    Err(status) if status.code() == Code::FailedPrecondition => Ok(()),
                    Err(status) if status.code() == Code::AlreadyExists => Ok(()),
                    Err(status) => Err(status.to_string()),
                }
            }
        };
        if result.is_err() {
            // The server is gone (or going): stop.
            return;
        }
    }
}

/// Checks, on a freshly restarted server, that everything acknowledged is there — all of it
/// in the store (read beside the server, read-only), and what the last life acknowledged
/// (`fresh`) through the server's own API too — and that no object is left that no record
/// names.
async fn check_restarted(
    server: &Server,
    domain: &Domain,
    acks: &[Ack],
    fresh: &[Ack],
    tenant_id: &str,
) {
    // What the store committed, read beside the server on its backend.
    let pairs = |sql: &str| -> std::collections::HashMap<String, String> {
        domain
            .query_texts(sql, &["k", "v"])
            .into_iter()
            .map(|r| {
                (
                    r[0].clone().unwrap_or_default(),
                    r[1].clone().unwrap_or_default(),
                )
            })
            .collect()
    };
    let tenants = pairs("SELECT id AS k, name AS v FROM tenants");
    let datasets = pairs("SELECT id AS k, CAST(n_rows AS TEXT) AS v FROM datasets");
    let jobs = pairs("SELECT id AS k, status AS v FROM jobs");
    let exports = pairs("SELECT id AS k, status || ' ' || package_location AS v FROM exports");
    // A CSV product's Parquet copy for Flight, stored beside its package.
    let flight_copies: std::collections::HashMap<String, String> =
        pairs("SELECT id AS k, product_json AS v FROM exports WHERE product_json LIKE '{%'")
            .into_iter()
            .filter_map(|(id, product)| {
                let product: serde_json::Value = serde_json::from_str(&product).ok()?;
                let location = product["flight_copy"]["location"].as_str()?.to_owned();
                Some((id, location))
            })
            .collect();
    let approvals = pairs(
        "SELECT export_id AS k, CAST(count(*) AS TEXT) AS v FROM export_votes
         WHERE decision = 'approve' GROUP BY export_id",
    );
    for acked in acks {
        match acked {
            Ack::Tenant(id) => assert!(tenants.contains_key(id), "tenant {id} lost"),
            Ack::Dataset(id) => {
                assert_eq!(
                    datasets.get(id).map(String::as_str),
                    Some("301"),
                    "dataset {id}"
                )
            }
            Ack::JobSubmitted(id) => assert!(jobs.contains_key(id), "job {id} lost"),
            Ack::JobSucceeded(id) => {
                assert_eq!(
                    jobs.get(id).map(String::as_str),
                    Some("succeeded"),
                    "job {id}"
                )
            }
            Ack::Export(id) => assert!(exports.contains_key(id), "export {id} lost"),
            Ack::Approval { export, at_least } => {
                let n: u64 = approvals.get(export).map_or(0, |n| n.parse().unwrap());
                assert!(n >= *at_least, "export {export}: a vote lost");
            }
            Ack::Approved(id) => {
                let row = exports.get(id).map(String::as_str).unwrap_or_default();
                assert!(row.starts_with("approved exports/"), "export {id}: {row}");
            }
        }
    }
    // The last life's acknowledgements, through the API.
    let mut a = actors(server, domain).await;
    for acked in fresh {
        match acked {
            Ack::JobSubmitted(id) | Ack::JobSucceeded(id) => {
                a.engineer
                    .jobs
                    .get_job(pb::GetJobRequest { job_id: id.clone() })
                    .await
                    .unwrap_or_else(|e| panic!("job {id}: {e}"));
            }
            Ack::Export(id) | Ack::Approved(id) | Ack::Approval { export: id, .. } => {
                a.engineer
                    .exports
                    .get_export(pb::GetExportRequest {
                        export_id: id.clone(),
                    })
                    .await
                    .unwrap_or_else(|e| panic!("export {id}: {e}"));
            }
            Ack::Tenant(_) | Ack::Dataset(_) => {}
        }
    }
    // No object that no record names: dataset folders are the catalogued ones, every
    // package is an export's, every result file is in a recorded job's folder.
    let objects = domain.data.join("objects");
    let listing = |sub: &str| -> Vec<String> {
        let root = objects.join(sub);
        if !root.exists() {
            return Vec::new();
        }
        walk(&root)
            .into_iter()
            .filter(|p| p.is_file())
            .map(|p| p.strip_prefix(&objects).unwrap().display().to_string())
            .collect()
    };
    let on_disk: std::collections::BTreeSet<String> = std::fs::read_dir(objects.join("datasets"))
        .map(|dir| {
            dir.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    let catalogued: std::collections::BTreeSet<String> = datasets.keys().cloned().collect();
    assert_eq!(on_disk, catalogued, "dataset folders without a record");
    let mut packages: Vec<String> = exports
        .values()
        .filter_map(|row| row.split_once(' ').map(|(_, p)| p.to_owned()))
        .filter(|p| !p.is_empty())
        .chain(flight_copies.values().cloned())
        .collect();
    packages.sort();
    let mut files = listing("exports");
    files.sort();
    assert_eq!(files, packages, "packages on disk and in the store");
    for file in listing("results") {
        assert!(
            file.starts_with(&format!("results/{tenant_id}/"))
                && jobs.keys().any(|j| file.contains(&format!("/{j}/"))),
            "a result no job names: {file}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_at_random_points_loses_no_acknowledged_record() {
    let points: usize = std::env::var("SHUYU_CHAOS_POINTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let seed: u64 = std::env::var("SHUYU_CHAOS_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    eprintln!("chaos: {points} kill points, SHUYU_CHAOS_SEED={seed}");
    let mut rng = Rng(seed | 1);

    let domain = Domain::new();
    let server = domain.start();
    let Approved {
        people: p,
        scenario_id: scenario,
        datasets: _,
    } = approved_scenario(&server, &domain, "ch", ["residents"]).await;
    let (tenant_id, recipient_id) = (p.tenant_id.clone(), p.recipient_id.clone());
    drop(p);
    let acks = Arc::new(Mutex::new(Vec::<Ack>::new()));
    let mut server = Some(server);
    let mut n_workers_seen = 0;
    let mut checked = 0;
    for life in 0..points {
        let live = server.take().unwrap_or_else(|| domain.start());
        let task = tokio::spawn(workload(
            actors(&live, &domain).await,
            scenario.clone(),
            recipient_id.clone(),
            rng.next(),
            life,
            Arc::clone(&acks),
        ));
        // A random point: anywhere from the first calls to well into jobs and votes. This
        // sleep paces the chaos (the kill lands at a random moment); it awaits no state.
        tokio::time::sleep(Duration::from_millis(rng.below(1500))).await;
        let workers = children_of(live.child.id());
        n_workers_seen += workers.len();
        live.kill();
        task.abort();
        let _ = task.await;
        // Its workers die with it (parent-death signal); a generous hang guard only.
        for worker in workers {
            let what = format!("worker {worker} to die with its server (life {life}, seed {seed})");
            eventually(&what, WAIT, async || dead(worker).then_some(())).await;
        }
        let verify = audit_verify(&domain.data);
        assert!(
            verify.status.success(),
            "life {life}, seed {seed}: {}",
            String::from_utf8_lossy(&verify.stderr)
        );
        let restarted = domain.start();
        let snapshot = acks.lock().unwrap().clone();
        check_restarted(
            &restarted,
            &domain,
            &snapshot,
            &snapshot[checked..],
            &tenant_id,
        )
        .await;
        checked = snapshot.len();
        server = Some(restarted);
    }
    let acks = acks.lock().unwrap().clone();
    let count = |f: fn(&Ack) -> bool| acks.iter().filter(|a| f(a)).count();
    eprintln!(
        "chaos: {points} kills, {} acknowledged: {} tenants, {} datasets, {} jobs ({} finished), \
         {} exports, {} approvals, {} approved; {n_workers_seen} workers killed with their server",
        acks.len(),
        count(|a| matches!(a, Ack::Tenant(_))),
        count(|a| matches!(a, Ack::Dataset(_))),
        count(|a| matches!(a, Ack::JobSubmitted(_))),
        count(|a| matches!(a, Ack::JobSucceeded(_))),
        count(|a| matches!(a, Ack::Export(_))),
        count(|a| matches!(a, Ack::Approval { .. })),
        count(|a| matches!(a, Ack::Approved(_))),
    );
    assert!(!acks.is_empty(), "the workload never got an answer");
    if let Some(server) = server {
        server.kill();
    }
    let verify = audit_verify(&domain.data);
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stderr)
    );
}
