//! Every scenario runs on both backends from one body: SQLite in a temporary folder and a
//! throwaway PostgreSQL on a unix socket (`testing::TestPostgres`).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use shuyu_meta::testing::TestPostgres;
use shuyu_meta::{
    Backend, ClockSkew, Db, DbOptions, Error, MetadataUrl, Migration, MigrationReport, Value,
    params,
};

struct Fixture {
    url: MetadataUrl,
    _pg: Option<TestPostgres>,
    _dir: Option<tempfile::TempDir>,
}

impl Fixture {
    fn sqlite() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        Fixture {
            url: MetadataUrl::Sqlite(dir.path().join("meta.db")),
            _pg: None,
            _dir: Some(dir),
        }
    }

    fn postgres() -> Fixture {
        let pg = TestPostgres::start().unwrap_or_else(|e| panic!("{e}"));
        Fixture {
            url: pg.url(),
            _pg: Some(pg),
            _dir: None,
        }
    }

    /// A new handle (its own SQLite connection or PostgreSQL pool) on the same database.
    fn open(&self) -> Db {
        let db = Db::open(&self.url, &DbOptions::default()).unwrap();
        db.migrate(SCHEMA).unwrap();
        db
    }
}

/// Runs `$body(Fixture)` as `$name::sqlite` and `$name::postgres`.
macro_rules! both {
    ($name:ident, $body:expr) => {
        mod $name {
            use super::*;

            #[test]
            fn sqlite() {
                ($body)(Fixture::sqlite());
            }
            #[test]
            fn postgres() {
                ($body)(Fixture::postgres());
            }
        }
    };
}

const SCHEMA: &[Migration] = &[
    Migration {
        version: 1,
        name: "values",
        sql: "CREATE TABLE vals (
            id BIGINT PRIMARY KEY,
            i BIGINT, r DOUBLE PRECISION, t TEXT, b BLOB, f BOOLEAN
        );",
    },
    Migration {
        version: 2,
        name: "jobs and counters",
        sql: "CREATE TABLE jobs (id BIGINT PRIMARY KEY, owner TEXT);
              CREATE TABLE counters (name TEXT PRIMARY KEY, n BIGINT NOT NULL);
              INSERT INTO counters (name, n) VALUES ('c', 0);",
    },
];

both!(values_round_trip, |f: Fixture| {
    let db = f.open();
    let bytes: Vec<u8> = (0..=255).collect();
    db.write(|tx| {
        tx.execute(
            "INSERT INTO vals (id, i, r, t, b, f) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![1, i64::MIN, -1.5e300, "héllo ' ? 世界", bytes.clone(), true],
        )?;
        tx.execute(
            "INSERT INTO vals (id, i, r, t, b, f) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![2, i64::MAX, 0.25, "", Vec::<u8>::new(), false],
        )?;
        tx.execute(
            "INSERT INTO vals (id, i, r, t, b, f) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            &[
                Value::Int(3),
                None::<i64>.into(),
                Value::Null,
                None::<String>.into(),
                Value::Null,
                Value::Null,
            ],
        )
    })
    .unwrap();
    let rows = db
        .read(|tx| tx.query("SELECT f, b, t, r, i, id FROM vals ORDER BY id", &[]))
        .unwrap();
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0].get::<i64>("i").unwrap(), i64::MIN);
    assert_eq!(rows[0].get::<f64>("r").unwrap(), -1.5e300);
    assert_eq!(rows[0].get::<String>("t").unwrap(), "héllo ' ? 世界");
    assert_eq!(rows[0].get::<Vec<u8>>("b").unwrap(), bytes);
    assert!(rows[0].get::<bool>("f").unwrap());
    assert_eq!(rows[1].get::<i64>("i").unwrap(), i64::MAX);
    assert_eq!(rows[1].get::<f64>("r").unwrap(), 0.25);
    assert_eq!(rows[1].get::<String>("t").unwrap(), "");
    assert_eq!(rows[1].get::<Vec<u8>>("b").unwrap(), Vec::<u8>::new());
    assert!(!rows[1].get::<bool>("f").unwrap());
    for column in ["i", "r", "t", "b", "f"] {
        assert_eq!(rows[2].value(column).unwrap(), &Value::Null, "{column}");
    }
    assert_eq!(rows[2].get::<Option<i64>>("i").unwrap(), None);
    assert_eq!(rows[2].get::<Option<String>>("t").unwrap(), None);
    assert_eq!(rows[0].get::<Option<u8>>("id").unwrap(), Some(1));
    assert!(matches!(
        rows[2].get::<i64>("i"),
        Err(Error::WrongType { .. })
    ));
    assert!(matches!(
        rows[0].get::<u32>("i"),
        Err(Error::WrongType { .. })
    ));
    assert!(matches!(
        rows[0].get::<i64>("nope"),
        Err(Error::NoSuchColumn(_))
    ));
    // Aggregates read by name; SUM of BIGINT (NUMERIC on PostgreSQL) reads as an integer.
    let row = db
        .read(|tx| {
            tx.query_one(
                "SELECT COUNT(*) AS n, SUM(id) AS total, CAST(SUM(id) AS BIGINT) AS cast_total FROM vals WHERE id <= ?1",
                params![2],
            )
        })
        .unwrap();
    assert_eq!(row.get::<i64>("n").unwrap(), 2);
    assert_eq!(row.get::<i64>("total").unwrap(), 3);
    assert_eq!(row.get::<i64>("cast_total").unwrap(), 3);
    let missing = db
        .read(|tx| tx.query_opt("SELECT id FROM vals WHERE id = ?1", params![99]))
        .unwrap();
    assert!(missing.is_none());
    let err = db
        .read(|tx| tx.query_one("SELECT id FROM vals", &[]))
        .unwrap_err();
    assert!(matches!(err, Error::RowCount(3)), "{err}");
});

both!(rollback_leaves_nothing, |f: Fixture| {
    let db = f.open();
    #[derive(Debug)]
    enum AppError {
        Refused,
        Meta(Error),
    }
    impl From<Error> for AppError {
        fn from(e: Error) -> AppError {
            AppError::Meta(e)
        }
    }
    let err = db
        .write(|tx| -> Result<(), AppError> {
            tx.execute("INSERT INTO jobs (id) VALUES (?1)", params![1])?;
            Err(AppError::Refused)
        })
        .unwrap_err();
    match err {
        AppError::Refused => {}
        AppError::Meta(e) => panic!("refusal expected, got {e}"),
    }
    // A failed statement whose error the closure swallows still dooms the transaction.
    db.write(|tx| tx.execute("INSERT INTO jobs (id) VALUES (?1)", params![7]))
        .unwrap();
    let err = db
        .write(|tx| {
            tx.execute("INSERT INTO jobs (id) VALUES (?1)", params![2])?;
            let duplicate = tx.execute("INSERT INTO jobs (id) VALUES (?1)", params![7]);
            assert!(duplicate.is_err());
            Ok::<_, Error>(())
        })
        .unwrap_err();
    assert!(matches!(err, Error::TransactionAborted), "{err}");
    let ids: Vec<i64> = db
        .read(|tx| tx.query("SELECT id FROM jobs ORDER BY id", &[]))
        .unwrap()
        .iter()
        .map(|r| r.get("id").unwrap())
        .collect();
    assert_eq!(ids, [7]);
    // A read transaction does not write.
    let err = db
        .read(|tx| tx.execute("INSERT INTO jobs (id) VALUES (?1)", params![3]))
        .unwrap_err();
    assert!(
        matches!(err, Error::WriteInRead) || err.sqlstate() == Some("25006"),
        "{err}"
    );
    // Bare placeholders are refused on both backends.
    let err = db
        .read(|tx| tx.query("SELECT id FROM jobs WHERE id = ?", params![7]))
        .unwrap_err();
    assert!(matches!(err, Error::Placeholder(_)), "{err}");
});

both!(migrations, |f: Fixture| {
    let db = Db::open(&f.url, &DbOptions::default()).unwrap();
    assert_eq!(db.schema_version().unwrap(), 0);
    assert_eq!(
        db.migrate(&SCHEMA[..1]).unwrap(),
        MigrationReport { from: 0, to: 1 }
    );
    assert_eq!(
        db.migrate(SCHEMA).unwrap(),
        MigrationReport { from: 1, to: 2 }
    );
    assert_eq!(
        db.migrate(SCHEMA).unwrap(),
        MigrationReport { from: 2, to: 2 }
    );
    assert_eq!(db.schema_version().unwrap(), 2);
    // The seed row of step 2 was inserted once.
    let n = db
        .read(|tx| tx.query_one("SELECT COUNT(*) AS n FROM counters", &[]))
        .unwrap();
    assert_eq!(n.get::<i64>("n").unwrap(), 1);
    // An older binary refuses the newer schema and changes nothing.
    let err = db.migrate(&SCHEMA[..1]).unwrap_err();
    assert!(
        matches!(err, Error::SchemaNewer { found: 2, known: 1 }),
        "{err}"
    );
    assert!(err.to_string().contains("newer shuyu"));
    // A step renamed after release is caught.
    let renamed = [
        SCHEMA[0],
        Migration {
            name: "something else",
            ..SCHEMA[1]
        },
    ];
    assert!(matches!(
        db.migrate(&renamed),
        Err(Error::MigrationMismatch { version: 2, .. })
    ));
    // A failing step commits nothing of its call, not even the steps before it.
    let failing = [
        SCHEMA[0],
        SCHEMA[1],
        Migration {
            version: 3,
            name: "three",
            sql: "CREATE TABLE three (a BIGINT);",
        },
        Migration {
            version: 4,
            name: "broken",
            sql: "INSERT INTO no_such_table (a) VALUES (1);",
        },
    ];
    assert!(db.migrate(&failing).is_err());
    assert_eq!(db.schema_version().unwrap(), 2);
    let three = db.read(|tx| tx.query("SELECT a FROM three", &[]));
    assert!(three.is_err(), "step 3 was rolled back");
});

both!(queue_jobs_claimed_once, |f: Fixture| {
    const N_JOBS: i64 = 120;
    let handles = [f.open(), f.open()];
    handles[0]
        .write(|tx| {
            for id in 0..N_JOBS {
                tx.execute("INSERT INTO jobs (id) VALUES (?1)", params![id])?;
            }
            Ok::<_, Error>(())
        })
        .unwrap();
    let claimed: Vec<Vec<i64>> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..4)
            .map(|worker| {
                let db = handles[worker % 2].clone();
                s.spawn(move || {
                    let me = format!("worker-{worker}");
                    let mut mine = Vec::new();
                    loop {
                        let job = db
                            .write(|tx| {
                                let Some(row) = tx
                                    .query_claim(
                                        "SELECT id FROM jobs WHERE owner IS NULL ORDER BY id LIMIT 1",
                                        &[],
                                    )?
                                    .pop()
                                else {
                                    return Ok::<_, Error>(None);
                                };
                                let id: i64 = row.get("id")?;
                                tx.execute(
                                    "UPDATE jobs SET owner = ?1 WHERE id = ?2",
                                    params![me.as_str(), id],
                                )?;
                                Ok(Some(id))
                            })
                            .unwrap();
                        match job {
                            Some(id) => mine.push(id),
                            None => return mine,
                        }
                    }
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    let all: Vec<i64> = claimed.iter().flatten().copied().collect();
    let distinct: BTreeSet<i64> = all.iter().copied().collect();
    assert_eq!(all.len(), distinct.len(), "a job was claimed twice");
    assert_eq!(distinct, (0..N_JOBS).collect::<BTreeSet<_>>());
    for (worker, ids) in claimed.iter().enumerate() {
        let owner = format!("worker-{worker}");
        let recorded = handles[1]
            .read(|tx| {
                tx.query_one(
                    "SELECT COUNT(*) AS n FROM jobs WHERE owner = ?1",
                    params![owner.as_str()],
                )
            })
            .unwrap();
        assert_eq!(recorded.get::<usize>("n").unwrap(), ids.len());
    }
});

both!(read_modify_write_loses_no_update, |f: Fixture| {
    let handles = [f.open(), f.open()];
    std::thread::scope(|s| {
        for thread in 0..8 {
            let db = handles[thread % 2].clone();
            s.spawn(move || {
                for _ in 0..50 {
                    db.write(|tx| {
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
    let n: i64 = handles[0]
        .read(|tx| tx.query_one("SELECT n FROM counters WHERE name = 'c'", &[]))
        .unwrap()
        .get("n")
        .unwrap();
    assert_eq!(n, 400);
});

both!(try_lock_is_exclusive, |f: Fixture| {
    let handles = [f.open(), f.open()];
    let inside = AtomicBool::new(false);
    let ran = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for thread in 0..4 {
            let db = handles[thread % 2].clone();
            let (inside, ran) = (&inside, &ran);
            s.spawn(move || {
                for _ in 0..10 {
                    db.write(|tx| {
                        if tx.try_lock("sweep/retention")? {
                            assert!(!inside.swap(true, Ordering::SeqCst), "two sweepers at once");
                            std::thread::sleep(Duration::from_millis(2));
                            inside.store(false, Ordering::SeqCst);
                            ran.fetch_add(1, Ordering::SeqCst);
                        }
                        Ok::<_, Error>(())
                    })
                    .unwrap();
                }
            });
        }
    });
    assert!(ran.load(Ordering::SeqCst) > 0);
});

/// While one server holds a lock another's `try_lock` is refused, and given once released.
#[test]
fn postgres_try_lock_refused_while_held() {
    let f = Fixture::postgres();
    let (a, b) = (f.open(), f.open());
    let (held_tx, held_rx) = std::sync::mpsc::channel();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    std::thread::scope(|s| {
        let a = &a;
        s.spawn(move || {
            a.write(|tx| {
                assert!(tx.try_lock("sweep")?);
                held_tx.send(()).unwrap();
                done_rx.recv().unwrap();
                Ok::<_, Error>(())
            })
            .unwrap();
        });
        held_rx.recv().unwrap();
        assert!(!b.write(|tx| tx.try_lock("sweep")).unwrap());
        assert!(b.write(|tx| tx.try_lock("other")).unwrap());
        done_tx.send(()).unwrap();
    });
    assert!(b.write(|tx| tx.try_lock("sweep")).unwrap());
    // lock_exclusive waits instead of refusing.
    b.write(|tx| tx.lock_exclusive("sweep")).unwrap();
}

both!(leases_expire_on_the_database_clock, |f: Fixture| {
    let db = f.open();
    let long = Duration::from_secs(60);
    let acquire =
        |name: &str, holder: &str, ttl| db.write(|tx| tx.acquire_lease(name, holder, ttl)).unwrap();
    assert!(acquire("sweeper", "server-a", long));
    assert!(!acquire("sweeper", "server-b", long));
    assert!(acquire("sweeper", "server-a", long), "the holder renews");
    let lease = db.read(|tx| tx.lease("sweeper")).unwrap().unwrap();
    assert_eq!(lease.holder, "server-a");
    let now = db.read(|tx| tx.now_ms()).unwrap();
    assert!(lease.expires_at_ms > now + 50_000 && lease.expires_at_ms <= now + 60_000);
    assert!(acquire("server/a", "server-a", Duration::from_millis(1)));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let expired = db.read(|tx| tx.expired_leases()).unwrap();
        if expired
            .iter()
            .any(|l| l.name == "server/a" && l.holder == "server-a")
        {
            assert!(expired.iter().all(|l| l.name != "sweeper"));
            break;
        }
        assert!(Instant::now() < deadline, "lease never expired");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(
        acquire("server/a", "server-b", long),
        "an expired lease is taken over"
    );
    assert!(
        !db.write(|tx| tx.release_lease("sweeper", "server-b"))
            .unwrap()
    );
    assert!(
        db.write(|tx| tx.release_lease("sweeper", "server-a"))
            .unwrap()
    );
    assert!(acquire("sweeper", "server-b", long));
});

both!(
    a_clock_skew_moves_the_database_clock_and_leases_with_it,
    |f: Fixture| {
        let skew = Arc::new(AtomicI64::new(0));
        let seen = Arc::clone(&skew);
        let options = DbOptions {
            clock_skew: Some(ClockSkew::new(move || seen.load(Ordering::SeqCst))),
            ..DbOptions::default()
        };
        let db = Db::open(&f.url, &options).unwrap();
        db.migrate(SCHEMA).unwrap();
        let plain = f.open();
        let minute = Duration::from_secs(60);
        assert!(
            db.write(|tx| tx.acquire_lease("server/a", "a", minute))
                .unwrap()
        );
        let before = db.read(|tx| tx.now_ms()).unwrap();
        assert!(db.read(|tx| tx.expired_leases()).unwrap().is_empty());

        // An hour later by the skewed clock: the lease has lapsed there, not on a plain handle.
        skew.store(3_600_000, Ordering::SeqCst);
        let after = db.read(|tx| tx.now_ms()).unwrap();
        assert!(
            after - before >= 3_600_000 && after - before < 3_660_000,
            "{before} {after}"
        );
        let real = plain.read(|tx| tx.now_ms()).unwrap();
        assert!(real < after - 3_000_000, "the skew is the handle's own");
        let expired = db.read(|tx| tx.expired_leases()).unwrap();
        assert_eq!(expired.len(), 1, "{expired:?}");
        assert!(plain.read(|tx| tx.expired_leases()).unwrap().is_empty());
        // Taken over on the skewed clock, for a term measured on it.
        assert!(
            db.write(|tx| tx.acquire_lease("server/a", "b", minute))
                .unwrap()
        );
        let lease = db.read(|tx| tx.lease("server/a")).unwrap().unwrap();
        assert!(lease.expires_at_ms > after + 50_000, "{lease:?}");
    }
);

/// Calls from inside tokio workers (as tonic handlers make them) neither panic nor
/// deadlock, on both runtime flavours.
mod inside_tokio {
    use super::*;

    async fn scenario(f: Fixture) {
        let db = f.open();
        db.write(|tx| tx.execute("INSERT INTO jobs (id) VALUES (?1)", params![1]))
            .unwrap();
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let db = db.clone();
                tokio::spawn(async move {
                    db.write(|tx| {
                        tx.execute("UPDATE counters SET n = n + 1 WHERE name = 'c'", &[])
                    })
                    .unwrap();
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        let n: i64 = db
            .read(|tx| tx.query_one("SELECT n FROM counters", &[]))
            .unwrap()
            .get("n")
            .unwrap();
        assert_eq!(n, 8);
        // The last handle dropped inside the runtime.
        drop(db);
        drop(f);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn sqlite_multi_thread() {
        scenario(Fixture::sqlite()).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn postgres_multi_thread() {
        scenario(Fixture::postgres()).await;
    }

    #[tokio::test(flavor = "current_thread")]
    async fn postgres_current_thread() {
        scenario(Fixture::postgres()).await;
    }
}

/// Two servers migrating one PostgreSQL at once apply each step once.
#[test]
fn postgres_concurrent_migrations() {
    let f = Fixture::postgres();
    let reports: Vec<MigrationReport> = std::thread::scope(|s| {
        let runs: Vec<_> = (0..4)
            .map(|_| {
                s.spawn(|| {
                    let db = Db::open(&f.url, &DbOptions::default()).unwrap();
                    db.migrate(SCHEMA).unwrap()
                })
            })
            .collect();
        runs.into_iter().map(|r| r.join().unwrap()).collect()
    });
    assert_eq!(
        reports.iter().filter(|r| r.from == 0).count(),
        1,
        "{reports:?}"
    );
    assert!(reports.iter().all(|r| r.to == 2));
    let db = f.open();
    assert_eq!(db.backend(), Backend::Postgres);
    let n = db
        .read(|tx| tx.query_one("SELECT COUNT(*) AS n FROM counters", &[]))
        .unwrap();
    assert_eq!(n.get::<i64>("n").unwrap(), 1);
}

/// A second database on the same server is separate; the URL shown has no password.
#[test]
fn postgres_databases_are_separate() {
    let pg = TestPostgres::start().unwrap_or_else(|e| panic!("{e}"));
    let other = pg.create_database("other").unwrap();
    let a = Db::open(&pg.url(), &DbOptions::default()).unwrap();
    let b = Db::open(&other, &DbOptions::default()).unwrap();
    a.migrate(SCHEMA).unwrap();
    assert_eq!(b.schema_version().unwrap(), 0);
    assert!(
        b.url()
            .to_string()
            .starts_with("postgresql://shuyu@/other?host=/")
    );
    let _ = Arc::new(a);
}
