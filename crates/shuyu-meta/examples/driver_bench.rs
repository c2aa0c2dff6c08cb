//! Compares the PostgreSQL drivers considered for `shuyu-meta` on one workload, against a
//! throwaway PostgreSQL on a unix socket (and SQLite for reference):
//!
//! - `insert`: 5,000 single-row insert transactions, one thread;
//! - `point_read`: 5,000 read transactions of one row by key, one thread;
//! - `counter`: 8 threads × 50 read-modify-write increments of one row (serializable,
//!   retried on serialization failure), checked to lose no update;
//! - `insert_in_tokio`: the insert workload from inside a tokio multi-thread worker.
//!
//! Candidates: (A) the sync `postgres` crate, raw, statements prepared once per connection,
//! under `tokio::task::block_in_place` inside tokio (it panics without it, and cannot run on
//! a current-thread runtime at all); (B) `shuyu_meta::Db` — `tokio-postgres` on the
//! handle's own runtime, each statement handed over a channel.
//!
//! `cargo run --release -p shuyu-meta --features test-support --example driver_bench`

use std::time::{Duration, Instant};

use shuyu_meta::testing::TestPostgres;
use shuyu_meta::{Db, DbOptions, Error, MetadataUrl, Migration, PgHost, params};

const N_TX: i64 = 5_000;
const THREADS: usize = 8;
const INCREMENTS: usize = 50;

const SCHEMA: &[Migration] = &[Migration {
    version: 1,
    name: "bench",
    sql: "CREATE TABLE items (id BIGINT PRIMARY KEY, name TEXT NOT NULL, body BLOB);
          CREATE TABLE counters (name TEXT PRIMARY KEY, n BIGINT NOT NULL);",
}];

/// Every measurement, for the medians at the end: (candidate, workload, µs per op).
static RESULTS: std::sync::Mutex<Vec<(String, String, f64)>> = std::sync::Mutex::new(Vec::new());

fn report(candidate: &str, workload: &str, n_ops: usize, elapsed: Duration, note: &str) {
    RESULTS.lock().unwrap().push((
        candidate.to_owned(),
        workload.to_owned(),
        elapsed.as_secs_f64() * 1e6 / n_ops as f64,
    ));
    println!(
        "{candidate:<28} {workload:<16} {n_ops:>6} ops {:>9.1} ms {:>8.1} us/op {note}",
        elapsed.as_secs_f64() * 1e3,
        elapsed.as_secs_f64() * 1e6 / n_ops as f64
    );
}

fn reset(db: &Db) {
    db.write(|tx| {
        tx.execute("DELETE FROM items", &[])?;
        tx.execute("DELETE FROM counters", &[])?;
        tx.execute("INSERT INTO counters (name, n) VALUES ('c', 0)", &[])
    })
    .unwrap();
}

fn bench_db(candidate: &str, db: &Db) {
    reset(db);
    let start = Instant::now();
    for id in 0..N_TX {
        db.write(|tx| {
            tx.execute(
                "INSERT INTO items (id, name, body) VALUES (?1, ?2, ?3)",
                params![id, "item", vec![7u8; 64]],
            )
        })
        .unwrap();
    }
    report(candidate, "insert", N_TX as usize, start.elapsed(), "");
    let start = Instant::now();
    for id in 0..N_TX {
        let row = db
            .read(|tx| tx.query_one("SELECT name FROM items WHERE id = ?1", params![id]))
            .unwrap();
        assert_eq!(row.get::<String>("name").unwrap(), "item");
    }
    report(candidate, "point_read", N_TX as usize, start.elapsed(), "");
    let start = Instant::now();
    let attempts = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..THREADS {
            let attempts = &attempts;
            s.spawn(move || {
                for _ in 0..INCREMENTS {
                    db.write(|tx| {
                        attempts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let n: i64 = tx
                            .query_one("SELECT n FROM counters WHERE name = ?1", params!["c"])?
                            .get("n")?;
                        tx.execute(
                            "UPDATE counters SET n = ?1 WHERE name = ?2",
                            params![n + 1, "c"],
                        )
                    })
                    .unwrap();
                }
            });
        }
    });
    let elapsed = start.elapsed();
    let n: i64 = db
        .read(|tx| tx.query_one("SELECT n FROM counters WHERE name = 'c'", &[]))
        .unwrap()
        .get("n")
        .unwrap();
    assert_eq!(n, (THREADS * INCREMENTS) as i64);
    report(
        candidate,
        "counter",
        THREADS * INCREMENTS,
        elapsed,
        &format!("attempts={}", attempts.into_inner()),
    );
    reset(db);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .build()
        .unwrap();
    let db2 = db.clone();
    let elapsed = runtime.block_on(async move {
        tokio::spawn(async move {
            let start = Instant::now();
            for id in 0..N_TX {
                db2.write(|tx| {
                    tx.execute(
                        "INSERT INTO items (id, name, body) VALUES (?1, ?2, ?3)",
                        params![id, "item", vec![7u8; 64]],
                    )
                })
                .unwrap();
            }
            start.elapsed()
        })
        .await
        .unwrap()
    });
    report(candidate, "insert_in_tokio", N_TX as usize, elapsed, "");
}

/// Candidate A: the sync `postgres` crate.
mod sync_postgres {
    use super::*;
    use postgres::{Client, NoTls};

    pub fn connect(url: &MetadataUrl) -> Client {
        let MetadataUrl::Postgres(target) = url else {
            panic!("postgres url")
        };
        let mut config = postgres::Config::new();
        config
            .user(target.user.as_deref().unwrap())
            .dbname(&target.dbname)
            .port(target.port);
        match &target.host {
            PgHost::Socket(dir) => config.host_path(dir),
            PgHost::Tcp(host) => config.host(host),
        };
        config.connect(NoTls).unwrap()
    }

    fn retryable(e: &postgres::Error) -> bool {
        matches!(e.code().map(|c| c.code()), Some("40001" | "40P01"))
    }

    fn insert_all(client: &mut Client) {
        let insert = client
            .prepare("INSERT INTO items (id, name, body) VALUES ($1, $2, $3)")
            .unwrap();
        for id in 0..N_TX {
            client
                .batch_execute("BEGIN ISOLATION LEVEL SERIALIZABLE")
                .unwrap();
            client
                .execute(&insert, &[&id, &"item", &vec![7u8; 64]])
                .unwrap();
            client.batch_execute("COMMIT").unwrap();
        }
    }

    pub fn bench(candidate: &str, url: &MetadataUrl, db: &Db) {
        reset(db);
        let mut client = connect(url);
        let start = Instant::now();
        insert_all(&mut client);
        report(candidate, "insert", N_TX as usize, start.elapsed(), "");
        let select = client
            .prepare("SELECT name FROM items WHERE id = $1")
            .unwrap();
        let start = Instant::now();
        for id in 0..N_TX {
            client
                .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                .unwrap();
            let row = client.query_one(&select, &[&id]).unwrap();
            assert_eq!(row.get::<_, String>("name"), "item");
            client.batch_execute("COMMIT").unwrap();
        }
        report(candidate, "point_read", N_TX as usize, start.elapsed(), "");
        let start = Instant::now();
        let attempts = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..THREADS {
                let attempts = &attempts;
                s.spawn(move || {
                    let mut client = connect(url);
                    let read = client
                        .prepare("SELECT n FROM counters WHERE name = $1")
                        .unwrap();
                    let write = client
                        .prepare("UPDATE counters SET n = $1 WHERE name = $2")
                        .unwrap();
                    for _ in 0..INCREMENTS {
                        let mut attempt = 0u32;
                        loop {
                            attempt += 1;
                            attempts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            let result = (|| {
                                client.batch_execute("BEGIN ISOLATION LEVEL SERIALIZABLE")?;
                                let n: i64 = client.query_one(&read, &[&"c"])?.get("n");
                                client.execute(&write, &[&(n + 1), &"c"])?;
                                client.batch_execute("COMMIT")
                            })();
                            match result {
                                Ok(()) => break,
                                Err(e) if retryable(&e) => {
                                    client.batch_execute("ROLLBACK").unwrap();
                                    let base = (1000u64 << attempt.min(6)).min(50_000);
                                    std::thread::sleep(Duration::from_micros(
                                        base / 2 + u64::from(attempt) * 7919 % base,
                                    ));
                                }
                                Err(e) => panic!("{e}"),
                            }
                        }
                    }
                });
            }
        });
        let elapsed = start.elapsed();
        let n: i64 = client
            .query_one("SELECT n FROM counters WHERE name = 'c'", &[])
            .unwrap()
            .get("n");
        assert_eq!(n, (THREADS * INCREMENTS) as i64);
        report(
            candidate,
            "counter",
            THREADS * INCREMENTS,
            elapsed,
            &format!("attempts={}", attempts.into_inner()),
        );
        reset(db);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(4)
            .build()
            .unwrap();
        let elapsed = runtime.block_on(async move {
            tokio::spawn(async move {
                let start = Instant::now();
                // Without block_in_place, postgres's own runtime panics inside a tokio worker.
                tokio::task::block_in_place(|| insert_all(&mut client));
                let elapsed = start.elapsed();
                // Its runtime must not be dropped inside a worker either.
                tokio::task::block_in_place(move || drop(client));
                elapsed
            })
            .await
            .unwrap()
        });
        report(candidate, "insert_in_tokio", N_TX as usize, elapsed, "");
    }
}

fn main() -> Result<(), Error> {
    let pg = TestPostgres::start()?;
    let url = pg.url();
    let db = Db::open(&url, &DbOptions::default())?;
    db.migrate(SCHEMA)?;
    let dir = tempfile::tempdir().unwrap();
    let sqlite = Db::open(
        &MetadataUrl::Sqlite(dir.path().join("meta.db")),
        &DbOptions::default(),
    )?;
    sqlite.migrate(SCHEMA)?;
    println!("PostgreSQL on a unix socket (fsync off), {N_TX} transactions per workload");
    const ROUNDS: usize = 5;
    for round in 1..=ROUNDS {
        println!("-- round {round}");
        // Alternating which goes first, as the machine is noisy.
        if round % 2 == 1 {
            sync_postgres::bench("A sync postgres", &url, &db);
            bench_db("B shuyu-meta (tokio-postgres)", &db);
        } else {
            bench_db("B shuyu-meta (tokio-postgres)", &db);
            sync_postgres::bench("A sync postgres", &url, &db);
        }
        if round == 1 {
            bench_db("S shuyu-meta (sqlite, FULL)", &sqlite);
        }
    }
    println!("-- medians of {ROUNDS} rounds (SQLite: 1), us per transaction");
    let results = RESULTS.lock().unwrap().clone();
    let mut keys: Vec<(String, String)> = results
        .iter()
        .map(|(c, w, _)| (c.clone(), w.clone()))
        .collect();
    keys.dedup();
    let mut seen = std::collections::BTreeSet::new();
    for (candidate, workload) in keys {
        if !seen.insert((candidate.clone(), workload.clone())) {
            continue;
        }
        let mut values: Vec<f64> = results
            .iter()
            .filter(|(c, w, _)| *c == candidate && *w == workload)
            .map(|(_, _, v)| *v)
            .collect();
        values.sort_by(f64::total_cmp);
        println!(
            "{candidate:<30} {workload:<16} median {:>8.1} us/op",
            values[values.len() / 2]
        );
    }
    Ok(())
}
