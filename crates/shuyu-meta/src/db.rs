//! [`Db`], the handle servers hold, and [`Tx`], the transaction its closures receive.

use std::cell::Cell;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::pg::{PgConn, PgDb};
use crate::sqlite::SqliteDb;
use crate::url::{MetadataUrl, PasswordSource};
use crate::value::{Row, Value};

/// Which database a [`Db`] or [`Tx`] runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// SQLite: one writer, WAL.
    Sqlite,
    /// PostgreSQL: several servers, serializable write transactions.
    Postgres,
}

/// How to open a [`Db`].
#[derive(Debug, Clone)]
pub struct DbOptions {
    /// Where a PostgreSQL password comes from (it overrides one written in the URL).
    pub password: PasswordSource,
    /// Most PostgreSQL connections this handle (and its clones) keeps open.
    pub pool_size: usize,
    /// How long a caller waits for a free pooled PostgreSQL connection before
    /// [`Error::PoolTimeout`].
    pub pool_wait: Duration,
    /// How many times a PostgreSQL transaction runs before a serialization failure or
    /// deadlock is given up as [`Error::RetriesExhausted`].
    pub max_attempts: u32,
    /// How long SQLite waits for a lock held by another process.
    pub busy_timeout: Duration,
    /// Opens for reading only (checks on the host, `audit verify`): SQLite opens an existing
    /// file read-only (immutable when no server has it open, so no `-wal` or `-shm` file is
    /// created) and refuses a missing one; PostgreSQL sessions default to read-only
    /// transactions. [`Db::write`] then fails.
    pub read_only: bool,
    /// An offset added to the database's clock ([`Tx::now_ms`] and leases); `None` in
    /// production. Test builds of the server use it to move time forward the same way on
    /// every server sharing the database.
    pub clock_skew: Option<ClockSkew>,
}

/// Milliseconds to add to the database's clock, asked once per transaction.
#[derive(Clone)]
pub struct ClockSkew(Arc<dyn Fn() -> i64 + Send + Sync>);

impl ClockSkew {
    /// A skew read from `offset_ms` at the start of every transaction.
    pub fn new(offset_ms: impl Fn() -> i64 + Send + Sync + 'static) -> ClockSkew {
        ClockSkew(Arc::new(offset_ms))
    }
}

impl fmt::Debug for ClockSkew {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClockSkew")
    }
}

impl Default for DbOptions {
    fn default() -> DbOptions {
        DbOptions {
            password: PasswordSource::None,
            pool_size: 8,
            pool_wait: Duration::from_secs(30),
            max_attempts: 30,
            busy_timeout: Duration::from_secs(10),
            read_only: false,
            clock_skew: None,
        }
    }
}

/// A handle on the metadata database; clones share one SQLite connection or one PostgreSQL
/// pool.
///
/// Every call blocks the calling thread until its transaction ends, like the
/// `Mutex<rusqlite::Connection>` it replaces. It may be called from plain threads and from
/// inside a tokio runtime of either flavour: PostgreSQL I/O runs on the handle's own small
/// runtime (two threads), never on the caller's, so no runtime is entered from within
/// another. Do not nest calls (a `write` inside a `write`): on SQLite that deadlocks.
#[derive(Clone)]
pub struct Db {
    inner: Arc<Inner>,
    skew: Option<ClockSkew>,
}

enum Inner {
    Sqlite(Box<SqliteDb>),
    Postgres(Box<PgDb>),
}

impl fmt::Debug for Db {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Db").field("url", self.url()).finish()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Isolation {
    /// Serializable (PostgreSQL) / `BEGIN IMMEDIATE` (SQLite).
    Write,
    /// A read-only snapshot.
    Read,
    /// Read committed under an advisory lock taken first: migrations, whose later
    /// statements must see what a server that held the lock before committed.
    LockedWrite,
}

impl Db {
    /// Opens the database at `url`; an SQLite file is created (mode 0600) if missing, a
    /// PostgreSQL database must exist. Apply the schema with [`Db::migrate`].
    ///
    /// # Errors
    /// If it cannot be opened or connected to, or the password source cannot be read.
    pub fn open(url: &MetadataUrl, options: &DbOptions) -> Result<Db> {
        let inner = match url {
            MetadataUrl::Sqlite(path) => {
                Inner::Sqlite(Box::new(SqliteDb::open(url, path, options)?))
            }
            MetadataUrl::Postgres(target) => {
                Inner::Postgres(Box::new(PgDb::open(url, target, options)?))
            }
        };
        Ok(Db {
            inner: Arc::new(inner),
            skew: options.clock_skew.clone(),
        })
    }

    /// The backend.
    pub fn backend(&self) -> Backend {
        match &*self.inner {
            Inner::Sqlite(_) => Backend::Sqlite,
            Inner::Postgres(_) => Backend::Postgres,
        }
    }

    /// The URL it was opened with, without any password.
    pub fn url(&self) -> &MetadataUrl {
        match &*self.inner {
            Inner::Sqlite(db) => db.url(),
            Inner::Postgres(db) => db.url(),
        }
    }

    /// Runs `change` in one write transaction and commits it if `change` returns `Ok` and
    /// no statement failed.
    ///
    /// SQLite: `BEGIN IMMEDIATE` on the one connection, so writers are serialised. PostgreSQL:
    /// `SERIALIZABLE`; on a serialization failure (40001) or deadlock (40P01) the
    /// transaction is rolled back and **`change` runs again** (up to
    /// [`DbOptions::max_attempts`] times, with jittered backoff) — so `change` must be
    /// re-runnable: no side effects outside the transaction (sending, spawning, consuming
    /// an input) unless they are idempotent; compute those from its result instead.
    ///
    /// # Errors
    /// What `change` returns (then nothing is committed); [`Error::TransactionAborted`] if
    /// `change` returned `Ok` after one of its statements failed;
    /// [`Error::RetriesExhausted`]; or a failure to begin or commit.
    pub fn write<T, E>(&self, change: impl FnMut(&Tx<'_>) -> Result<T, E>) -> Result<T, E>
    where
        E: From<Error>,
    {
        self.run(Isolation::Write, change)
    }

    /// Runs `read` in a read-only transaction (a consistent snapshot). A statement that
    /// would write fails with [`Error::WriteInRead`] (SQLite) or a read-only error
    /// (PostgreSQL). Retried like [`Db::write`] on PostgreSQL, so the same re-runnability
    /// applies.
    ///
    /// # Errors
    /// What `read` returns, or a failure of the transaction itself.
    pub fn read<T, E>(&self, read: impl FnMut(&Tx<'_>) -> Result<T, E>) -> Result<T, E>
    where
        E: From<Error>,
    {
        self.run(Isolation::Read, read)
    }

    pub(crate) fn run<T, E>(
        &self,
        isolation: Isolation,
        mut body: impl FnMut(&Tx<'_>) -> Result<T, E>,
    ) -> Result<T, E>
    where
        E: From<Error>,
    {
        let skew_ms = self.skew.as_ref().map_or(0, |skew| (skew.0)());
        let body = |tx: &Tx<'_>| {
            tx.skew_ms.set(skew_ms);
            body(tx)
        };
        match &*self.inner {
            Inner::Sqlite(db) => db.run(isolation, body),
            Inner::Postgres(db) => db.run(isolation, body),
        }
    }

    /// Moves SQLite's write-ahead log into the database file and empties it (`PRAGMA
    /// wal_checkpoint(TRUNCATE)`), so that overwritten content stays in no copy of the log.
    /// PostgreSQL: nothing to do.
    ///
    /// # Errors
    /// If the checkpoint fails.
    pub fn checkpoint(&self) -> Result<()> {
        match &*self.inner {
            Inner::Sqlite(db) => db.checkpoint(),
            Inner::Postgres(_) => Ok(()),
        }
    }

    /// Runs one statement outside any transaction (`CREATE DATABASE`). PostgreSQL only.
    #[cfg(feature = "test-support")]
    pub(crate) fn execute_outside_transaction(&self, sql: &str) -> Result<()> {
        match &*self.inner {
            Inner::Sqlite(_) => Err(Error::InvalidUrl(
                "statements outside a transaction are for PostgreSQL".to_owned(),
            )),
            Inner::Postgres(db) => db.batch_outside_transaction(sql),
        }
    }
}

/// Why a statement of the transaction failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// Serialization failure, deadlock, stale cached plan: run the transaction again.
    Retryable,
    /// Anything else: the transaction cannot commit.
    Fatal,
}

/// One transaction, handed to the closures of [`Db::write`] and [`Db::read`]. Its methods
/// take `?1, ?2, …` placeholders (see [`crate::sql`]) and parameters built with
/// [`params!`](crate::params) or `&[Value]`.
pub struct Tx<'a> {
    pub(crate) conn: TxConn<'a>,
    pub(crate) isolation: Isolation,
    pub(crate) failure: Cell<Option<Failure>>,
    /// Added to the database's clock ([`DbOptions::clock_skew`]).
    pub(crate) skew_ms: Cell<i64>,
}

pub(crate) enum TxConn<'a> {
    Sqlite(&'a rusqlite::Transaction<'a>),
    Postgres(&'a PgConn),
}

impl fmt::Debug for Tx<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tx")
            .field("backend", &self.backend())
            .field("isolation", &self.isolation)
            .field("failure", &self.failure.get())
            .finish()
    }
}

impl<'a> Tx<'a> {
    pub(crate) fn new(conn: TxConn<'a>, isolation: Isolation) -> Tx<'a> {
        Tx {
            conn,
            isolation,
            failure: Cell::new(None),
            skew_ms: Cell::new(0),
        }
    }

    /// The backend this transaction runs on.
    pub fn backend(&self) -> Backend {
        match self.conn {
            TxConn::Sqlite(_) => Backend::Sqlite,
            TxConn::Postgres(_) => Backend::Postgres,
        }
    }

    /// Notes a failed statement: it dooms the transaction (and, if retryable, asks for a
    /// rerun).
    fn noted<T>(&self, result: Result<T>) -> Result<T> {
        if let Err(e) = &result {
            let failure = match self.conn {
                TxConn::Postgres(conn) => conn.classify(e),
                // Not a database error (a bad placeholder, a read-only refusal) still counts:
                // the rule is the same on both backends.
                TxConn::Sqlite(_) => Failure::Fatal,
            };
            if self.failure.get() != Some(Failure::Retryable) {
                self.failure.set(Some(failure));
            }
        }
        result
    }

    /// Runs a statement that returns no rows; returns the number of rows it changed.
    ///
    /// # Errors
    /// A failed statement (which also dooms the transaction).
    pub fn execute(&self, sql: &str, params: &[Value]) -> Result<u64> {
        self.noted(match self.conn {
            TxConn::Sqlite(tx) => crate::sqlite::execute(tx, self.isolation, sql, params),
            TxConn::Postgres(conn) => conn.execute(sql, params),
        })
    }

    /// Runs a query and returns all its rows.
    ///
    /// # Errors
    /// A failed statement (which also dooms the transaction).
    pub fn query(&self, sql: &str, params: &[Value]) -> Result<Vec<Row>> {
        self.noted(match self.conn {
            TxConn::Sqlite(tx) => crate::sqlite::query(tx, self.isolation, sql, params),
            TxConn::Postgres(conn) => conn.query(sql, params),
        })
    }

    /// Runs a query that returns at most one row.
    ///
    /// # Errors
    /// [`Error::RowCount`] for more than one row, or a failed statement.
    pub fn query_opt(&self, sql: &str, params: &[Value]) -> Result<Option<Row>> {
        let mut rows = self.query(sql, params)?;
        match rows.len() {
            0 => Ok(None),
            1 => Ok(rows.pop()),
            n => Err(Error::RowCount(n)),
        }
    }

    /// Runs a query that returns exactly one row.
    ///
    /// # Errors
    /// [`Error::RowCount`] for none or several, or a failed statement.
    pub fn query_one(&self, sql: &str, params: &[Value]) -> Result<Row> {
        let mut rows = self.query(sql, params)?;
        match rows.len() {
            1 => Ok(rows.pop().expect("one row")),
            n => Err(Error::RowCount(n)),
        }
    }

    /// Runs several `;`-separated statements without parameters (schema changes, triggers).
    ///
    /// # Errors
    /// A failed statement (which also dooms the transaction).
    pub fn execute_batch(&self, sql: &str) -> Result<()> {
        self.noted(match self.conn {
            TxConn::Sqlite(tx) => tx.execute_batch(sql).map_err(Error::from),
            TxConn::Postgres(conn) => conn.batch(sql),
        })
    }

    /// Waits for and takes the exclusive lock `name` until this transaction ends, so that
    /// no other server runs code under the same name meanwhile. PostgreSQL:
    /// `pg_advisory_xact_lock` on [`crate::sql::lock_key`]`(name)`. SQLite: nothing to do,
    /// the one writer is already exclusive.
    ///
    /// In a write transaction on PostgreSQL, the snapshot is taken by the lock's own
    /// statement, before the wait ends; rows another server changed while this one waited
    /// make the transaction fail to serialize and run again — correct, but a lock does
    /// not spare reruns.
    ///
    /// # Errors
    /// A failed statement.
    pub fn lock_exclusive(&self, name: &str) -> Result<()> {
        match self.conn {
            TxConn::Sqlite(_) => Ok(()),
            TxConn::Postgres(_) => self
                .execute(
                    "SELECT pg_advisory_xact_lock(?1)",
                    &[Value::Int(crate::sql::lock_key(name))],
                )
                .map(drop),
        }
    }

    /// Takes the exclusive lock `name` until this transaction ends if no one holds it;
    /// `false` if another server does (run a periodic sweep only when `true`). SQLite: always
    /// `true`. For "one server does this for a while" across transactions use a lease
    /// ([`Tx::acquire_lease`]).
    ///
    /// # Errors
    /// A failed statement.
    pub fn try_lock(&self, name: &str) -> Result<bool> {
        match self.conn {
            TxConn::Sqlite(_) => Ok(true),
            TxConn::Postgres(_) => self
                .query_one(
                    "SELECT pg_try_advisory_xact_lock(?1) AS locked",
                    &[Value::Int(crate::sql::lock_key(name))],
                )?
                .get("locked"),
        }
    }

    /// Runs a `SELECT` of queue rows to claim and returns them locked for this transaction:
    /// PostgreSQL appends `FOR UPDATE SKIP LOCKED`, so concurrent claimers on other servers
    /// get other rows; SQLite runs it as written inside its exclusive writer. `select` must
    /// be a plain single-table `SELECT … WHERE … ORDER BY … LIMIT n`; mark the claimed rows
    /// (e.g. `UPDATE jobs SET state = 'running', owner = ?1 WHERE id = ?2`) in the same
    /// transaction.
    ///
    /// # Errors
    /// A failed statement.
    pub fn query_claim(&self, select: &str, params: &[Value]) -> Result<Vec<Row>> {
        match self.conn {
            TxConn::Sqlite(_) => self.query(select, params),
            TxConn::Postgres(_) => self.query(&format!("{select} FOR UPDATE SKIP LOCKED"), params),
        }
    }

    /// The database's clock, in milliseconds since the Unix epoch: the one clock every
    /// server sharing a PostgreSQL agrees on (`clock_timestamp()`), plus the
    /// [`DbOptions::clock_skew`] if one is set.
    ///
    /// # Errors
    /// A failed statement.
    pub fn now_ms(&self) -> Result<i64> {
        self.query_one(&format!("SELECT {} AS now_ms", self.now_ms_sql()), &[])?
            .get("now_ms")
    }

    pub(crate) fn now_ms_sql(&self) -> String {
        let clock = match self.conn {
            TxConn::Sqlite(_) => "CAST(unixepoch('subsec') * 1000 AS INTEGER)",
            TxConn::Postgres(_) => "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)",
        };
        match self.skew_ms.get() {
            0 => clock.to_owned(),
            skew => format!("({clock} + {skew})"),
        }
    }
}
