//! The PostgreSQL backend: `tokio-postgres` connections in a small pool, driven on the
//! handle's own runtime; callers block on a channel, so they may be plain threads or tokio
//! workers of any flavour.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio_postgres::types::{FromSql, IsNull, ToSql, Type, to_sql_checked};
use tokio_postgres::{Client, NoTls, Statement};

use crate::db::{DbOptions, Failure, Isolation, Tx, TxConn};
use crate::error::{Error, Result};
use crate::url::{MetadataUrl, PgHost, PgTarget};
use crate::value::{Columns, Row, Value};

/// Statements a connection keeps prepared; past this the cache is emptied.
const STATEMENT_CACHE: usize = 512;

/// The handle's runtime, shut down without waiting when the last handle drops (dropping a
/// runtime inside another runtime's worker would panic).
struct Runtime(Option<tokio::runtime::Runtime>);

impl Drop for Runtime {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

impl Runtime {
    fn handle(&self) -> &tokio::runtime::Handle {
        self.0
            .as_ref()
            .expect("runtime present until drop")
            .handle()
    }
}

/// Runs `future` on the handle's runtime and blocks this thread until it ends. Never enters
/// a runtime on the calling thread, so it works from inside a tokio worker.
fn block_on<F>(handle: &tokio::runtime::Handle, future: F) -> Result<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let (sender, receiver) = std::sync::mpsc::sync_channel(1);
    handle.spawn(async move {
        let _ = sender.send(future.await);
    });
    receiver.recv().map_err(|_| Error::RuntimeStopped)
}

pub(crate) struct PgDb {
    url: MetadataUrl,
    config: tokio_postgres::Config,
    pool: Pool,
    max_attempts: u32,
    runtime: Arc<Runtime>,
}

struct Pool {
    state: Mutex<PoolState>,
    freed: Condvar,
    size: usize,
    wait: Duration,
}

struct PoolState {
    idle: Vec<PgConn>,
    open: usize,
}

pub(crate) struct PgConn {
    client: Arc<Client>,
    statements: RefCell<HashMap<String, (Statement, Arc<Columns>)>>,
    /// The `BEGIN` of the current transaction until its first statement carries it.
    pending_begin: Cell<Option<&'static str>>,
    handle: tokio::runtime::Handle,
}

impl PgDb {
    pub(crate) fn open(url: &MetadataUrl, target: &PgTarget, options: &DbOptions) -> Result<PgDb> {
        let mut config = tokio_postgres::Config::new();
        if let Some(user) = &target.user {
            config.user(user);
        }
        match &target.host {
            PgHost::Tcp(host) => config.host(host),
            PgHost::Socket(dir) => config.host_path(dir),
        };
        config.port(target.port).dbname(&target.dbname);
        if let Some(name) = &target.application_name {
            config.application_name(name);
        }
        if let Some(timeout) = target.connect_timeout {
            config.connect_timeout(timeout);
        }
        if options.read_only {
            config.options("-c default_transaction_read_only=on");
        }
        if let Some(password) = options
            .password
            .read()?
            .as_deref()
            .or(target.url_password())
        {
            config.password(password);
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("shuyu-meta-pg")
            .enable_all()
            .build()
            .map_err(|source| Error::Io {
                path: "tokio runtime".into(),
                source,
            })?;
        let db = PgDb {
            url: url.without_password(),
            config,
            pool: Pool {
                state: Mutex::new(PoolState {
                    idle: Vec::new(),
                    open: 0,
                }),
                freed: Condvar::new(),
                size: options.pool_size.max(1),
                wait: options.pool_wait,
            },
            max_attempts: options.max_attempts.max(1),
            runtime: Arc::new(Runtime(Some(runtime))),
        };
        // Fail now, not at the first transaction, on a wrong URL or password.
        let conn = db.checkout()?;
        db.checkin(conn);
        Ok(db)
    }

    pub(crate) fn url(&self) -> &MetadataUrl {
        &self.url
    }

    fn connect(&self) -> Result<PgConn> {
        let config = self.config.clone();
        let client = block_on(self.runtime.handle(), async move {
            let (client, connection) = config.connect(NoTls).await?;
            // The connection ends when the client is dropped; its error, if any, reaches
            // the client's next call.
            tokio::spawn(async move {
                let _ = connection.await;
            });
            Ok::<_, tokio_postgres::Error>(client)
        })??;
        Ok(PgConn {
            client: Arc::new(client),
            statements: RefCell::new(HashMap::new()),
            pending_begin: Cell::new(None),
            handle: self.runtime.handle().clone(),
        })
    }

    fn checkout(&self) -> Result<PgConn> {
        let deadline = Instant::now() + self.pool.wait;
        let mut state = self.pool.state.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            while let Some(conn) = state.idle.pop() {
                if !conn.client.is_closed() {
                    return Ok(conn);
                }
                state.open -= 1;
            }
            if state.open < self.pool.size {
                state.open += 1;
                drop(state);
                return self.connect().inspect_err(|_| self.forget());
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(Error::PoolTimeout(self.pool.wait));
            }
            state = self
                .pool
                .freed
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    fn checkin(&self, conn: PgConn) {
        let mut state = self.pool.state.lock().unwrap_or_else(|p| p.into_inner());
        state.idle.push(conn);
        drop(state);
        self.pool.freed.notify_one();
    }

    /// A connection left in an unknown state is dropped (closing it rolls back its
    /// transaction) and its place freed.
    fn forget(&self) {
        let mut state = self.pool.state.lock().unwrap_or_else(|p| p.into_inner());
        state.open -= 1;
        drop(state);
        self.pool.freed.notify_one();
    }

    pub(crate) fn run<T, E>(
        &self,
        isolation: Isolation,
        mut body: impl FnMut(&Tx<'_>) -> Result<T, E>,
    ) -> Result<T, E>
    where
        E: From<Error>,
    {
        let begin = match isolation {
            Isolation::Write => "BEGIN ISOLATION LEVEL SERIALIZABLE",
            Isolation::Read => "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY",
            Isolation::LockedWrite => "BEGIN ISOLATION LEVEL READ COMMITTED",
        };
        for attempt in 1..=self.max_attempts {
            let conn = self.checkout()?;
            // Dropped (not returned) if `body` panics or the connection misbehaves.
            let guard = ConnGuard {
                db: self,
                conn: Some(conn),
            };
            let conn = guard.conn.as_ref().expect("present");
            // Sent with the first statement, in the same round trip.
            conn.pending_begin.set(Some(begin));
            let tx = Tx::new(TxConn::Postgres(conn), isolation);
            let outcome = body(&tx);
            let failure = tx.failure.get();
            // Nothing was sent: nothing to commit or roll back.
            let untouched = conn.pending_begin.take().is_some();
            match (outcome, failure) {
                (Ok(value), None) => {
                    if untouched {
                        guard.release();
                        return Ok(value);
                    }
                    match conn.batch("COMMIT") {
                        Ok(()) => {
                            guard.release();
                            return Ok(value);
                        }
                        Err(e) if conn.classify(&e) == Failure::Retryable => {}
                        Err(e) => return Err(e.into()),
                    }
                }
                (outcome, failure) => {
                    if !untouched {
                        conn.batch("ROLLBACK")?;
                    }
                    match (outcome, failure) {
                        (_, Some(Failure::Retryable)) => {}
                        (Err(e), _) => {
                            guard.release();
                            return Err(e);
                        }
                        (Ok(_), _) => {
                            guard.release();
                            return Err(Error::TransactionAborted.into());
                        }
                    }
                }
            }
            guard.release();
            if attempt < self.max_attempts {
                std::thread::sleep(backoff(attempt));
            }
        }
        Err(Error::RetriesExhausted {
            attempts: self.max_attempts,
        }
        .into())
    }

    #[cfg(feature = "test-support")]
    pub(crate) fn batch_outside_transaction(&self, sql: &str) -> Result<()> {
        let conn = self.checkout()?;
        let result = conn.batch(sql);
        self.checkin(conn);
        result
    }
}

struct ConnGuard<'a> {
    db: &'a PgDb,
    conn: Option<PgConn>,
}

impl ConnGuard<'_> {
    fn release(mut self) {
        if let Some(conn) = self.conn.take() {
            self.db.checkin(conn);
        }
    }
}

impl Drop for ConnGuard<'_> {
    fn drop(&mut self) {
        if self.conn.take().is_some() {
            self.db.forget();
        }
    }
}

/// Jittered exponential backoff: about 1, 2, 4, … ms, capped near 50 ms.
fn backoff(attempt: u32) -> Duration {
    let base_us = (1000u64 << attempt.min(6)).min(50_000);
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    Duration::from_micros(base_us / 2 + random % base_us)
}

impl PgConn {
    pub(crate) fn classify(&self, error: &Error) -> Failure {
        match error.sqlstate() {
            Some("40001" | "40P01") => Failure::Retryable,
            // A schema change by another server invalidated a cached statement.
            Some("0A000") if error.to_string().contains("cached plan") => {
                self.statements.borrow_mut().clear();
                Failure::Retryable
            }
            _ => Failure::Fatal,
        }
    }

    pub(crate) fn batch(&self, sql: &str) -> Result<()> {
        let client = self.client.clone();
        let sql = match self.pending_begin.take() {
            Some(begin) => format!("{begin}; {sql}"),
            None => sql.to_owned(),
        };
        block_on(
            &self.handle,
            async move { client.batch_execute(&sql).await },
        )??;
        Ok(())
    }

    fn cached(&self, sql: &str) -> Option<(Statement, Arc<Columns>)> {
        self.statements.borrow().get(sql).cloned()
    }

    fn remember(&self, sql: String, statement: &Statement) -> Arc<Columns> {
        let columns = Arc::new(Columns::new(
            statement.columns().iter().map(|c| c.name().to_owned()),
        ));
        let mut statements = self.statements.borrow_mut();
        if statements.len() >= STATEMENT_CACHE {
            statements.clear();
        }
        statements.insert(sql, (statement.clone(), columns.clone()));
        columns
    }

    pub(crate) fn execute(&self, sql: &str, params: &[Value]) -> Result<u64> {
        let sql = crate::sql::translate_placeholders(sql, true)?.into_owned();
        let cached = self.cached(&sql).map(|(statement, _)| statement);
        let to_prepare = cached.is_none().then(|| sql.clone());
        let client = self.client.clone();
        let params = params.to_vec();
        let begin = self.pending_begin.take();
        let (statement, n) = block_on(&self.handle, async move {
            let work = async {
                let statement = prepared(&client, cached, to_prepare).await?;
                let refs: Vec<&(dyn ToSql + Sync)> =
                    params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
                let n = client.execute(&statement, &refs).await?;
                Ok::<_, tokio_postgres::Error>((statement, n))
            };
            pipelined(&client, begin, work).await
        })??;
        if self.cached(&sql).is_none() {
            self.remember(sql, &statement);
        }
        Ok(n)
    }

    pub(crate) fn query(&self, sql: &str, params: &[Value]) -> Result<Vec<Row>> {
        let sql = crate::sql::translate_placeholders(sql, true)?.into_owned();
        let cached = self.cached(&sql).map(|(statement, _)| statement);
        let to_prepare = cached.is_none().then(|| sql.clone());
        let client = self.client.clone();
        let params = params.to_vec();
        let begin = self.pending_begin.take();
        let (statement, rows) = block_on(&self.handle, async move {
            let work = async {
                let statement = prepared(&client, cached, to_prepare).await?;
                let refs: Vec<&(dyn ToSql + Sync)> =
                    params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
                let rows = client.query(&statement, &refs).await?;
                Ok::<_, tokio_postgres::Error>((statement, rows))
            };
            pipelined(&client, begin, work).await
        })??;
        let columns = match self.cached(&sql) {
            Some((_, columns)) => columns,
            None => self.remember(sql, &statement),
        };
        rows.iter()
            .map(|row| {
                let values = statement
                    .columns()
                    .iter()
                    .enumerate()
                    .map(|(idx, column)| read_column(row, idx, column.name(), column.type_()))
                    .collect::<Result<Vec<_>>>()?;
                Ok(Row {
                    columns: columns.clone(),
                    values,
                })
            })
            .collect()
    }
}

/// Runs `work` after `begin` (if any) without waiting for `begin`'s answer first: the
/// driver sends requests in the order their futures are first polled (`biased`: in order), so both leave in one
/// round trip.
async fn pipelined<T>(
    client: &Client,
    begin: Option<&'static str>,
    work: impl Future<Output = std::result::Result<T, tokio_postgres::Error>>,
) -> std::result::Result<T, tokio_postgres::Error> {
    match begin {
        None => work.await,
        Some(begin) => {
            let (began, done) = tokio::join!(biased; client.batch_execute(begin), work);
            began?;
            done
        }
    }
}

/// The cached statement, or `sql` prepared now.
async fn prepared(
    client: &Client,
    cached: Option<Statement>,
    sql: Option<String>,
) -> std::result::Result<Statement, tokio_postgres::Error> {
    match (cached, sql) {
        (Some(statement), _) => Ok(statement),
        (None, sql) => client.prepare(sql.as_deref().unwrap_or_default()).await,
    }
}

fn read_column(row: &tokio_postgres::Row, idx: usize, name: &str, ty: &Type) -> Result<Value> {
    fn get<'a, T: FromSql<'a>>(
        row: &'a tokio_postgres::Row,
        idx: usize,
        wrap: impl FnOnce(T) -> Value,
    ) -> Result<Value> {
        Ok(row.try_get::<_, Option<T>>(idx)?.map_or(Value::Null, wrap))
    }
    if *ty == Type::INT8 {
        get(row, idx, Value::Int)
    } else if *ty == Type::INT4 {
        get(row, idx, |v: i32| Value::Int(v.into()))
    } else if *ty == Type::INT2 {
        get(row, idx, |v: i16| Value::Int(v.into()))
    } else if *ty == Type::OID {
        get(row, idx, |v: u32| Value::Int(v.into()))
    } else if *ty == Type::FLOAT8 {
        get(row, idx, Value::Real)
    } else if *ty == Type::FLOAT4 {
        get(row, idx, |v: f32| Value::Real(v.into()))
    } else if *ty == Type::BOOL {
        get(row, idx, Value::Bool)
    } else if *ty == Type::BYTEA {
        get(row, idx, |v: Vec<u8>| Value::Bytes(v))
    } else if *ty == Type::NUMERIC {
        get(row, idx, |v: Numeric| v.0)
    } else if <&str as FromSql>::accepts(ty) {
        get(row, idx, |v: String| Value::Text(v))
    } else {
        Err(Error::UnsupportedColumnType {
            column: name.to_owned(),
            pg_type: ty.name().to_owned(),
        })
    }
}

/// A `NUMERIC` read as an integer when integral and in range, else as a double.
struct Numeric(Value);

impl<'a> FromSql<'a> for Numeric {
    fn from_sql(
        _: &Type,
        raw: &'a [u8],
    ) -> std::result::Result<Numeric, Box<dyn std::error::Error + Sync + Send>> {
        let word =
            |i: usize| -> std::result::Result<u16, Box<dyn std::error::Error + Sync + Send>> {
                raw.get(i * 2..i * 2 + 2)
                    .map(|b| u16::from_be_bytes([b[0], b[1]]))
                    .ok_or_else(|| "truncated NUMERIC".into())
            };
        let n_digits = usize::from(word(0)?);
        let weight = i32::from(word(1)? as i16);
        let sign = word(2)?;
        match sign {
            0xC000 => return Ok(Numeric(Value::Real(f64::NAN))),
            0xD000 => return Ok(Numeric(Value::Real(f64::INFINITY))),
            0xF000 => return Ok(Numeric(Value::Real(f64::NEG_INFINITY))),
            _ => {}
        }
        let negative = sign == 0x4000;
        let mut integer: Option<i128> = Some(0);
        let mut real = 0f64;
        for k in 0..n_digits {
            let digit = word(4 + k)?;
            let exponent = weight - k as i32;
            real += f64::from(digit) * 10000f64.powi(exponent);
            integer = match integer {
                Some(acc) if exponent >= 0 => u32::try_from(exponent)
                    .ok()
                    .and_then(|e| 10000i128.checked_pow(e))
                    .and_then(|scale| acc.checked_add(i128::from(digit).checked_mul(scale)?)),
                Some(acc) if digit == 0 => Some(acc),
                _ => None,
            };
        }
        let value = match integer.and_then(|v| i64::try_from(if negative { -v } else { v }).ok()) {
            Some(v) => Value::Int(v),
            None => Value::Real(if negative { -real } else { real }),
        };
        Ok(Numeric(value))
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::NUMERIC
    }
}

impl ToSql for Value {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> std::result::Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        let refused = || -> Box<dyn std::error::Error + Sync + Send> {
            format!(
                "a {} parameter cannot be bound to {}",
                self.type_name(),
                ty.name()
            )
            .into()
        };
        match self {
            Value::Null => Ok(IsNull::Yes),
            Value::Int(v) if *ty == Type::INT8 => v.to_sql(ty, out),
            Value::Int(v) if *ty == Type::INT4 => i32::try_from(*v)?.to_sql(ty, out),
            Value::Int(v) if *ty == Type::INT2 => i16::try_from(*v)?.to_sql(ty, out),
            Value::Real(v) if *ty == Type::FLOAT8 => v.to_sql(ty, out),
            Value::Text(v) if <&str as ToSql>::accepts(ty) => v.as_str().to_sql(ty, out),
            Value::Bytes(v) if *ty == Type::BYTEA => v.as_slice().to_sql(ty, out),
            Value::Bool(v) if *ty == Type::BOOL => v.to_sql(ty, out),
            _ => Err(refused()),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}
