//! The SQLite backend: one connection behind a mutex, `BEGIN IMMEDIATE` writers, WAL.

use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, TransactionBehavior};

use crate::db::{DbOptions, Failure, Isolation, Tx, TxConn};
use crate::error::{Error, Result};
use crate::url::MetadataUrl;
use crate::value::{Columns, Row, Value};

pub(crate) struct SqliteDb {
    url: MetadataUrl,
    conn: Mutex<Connection>,
}

impl SqliteDb {
    pub(crate) fn open(url: &MetadataUrl, path: &Path, options: &DbOptions) -> Result<SqliteDb> {
        let conn = if options.read_only {
            open_read_only(path)?
        } else {
            create_private_file(path)?;
            let conn = Connection::open(path)?;
            conn.pragma_update(None, "journal_mode", "WAL")?;
            conn.pragma_update(None, "synchronous", "FULL")?;
            conn.pragma_update(None, "foreign_keys", "ON")?;
            // Deleted and overwritten content is zeroed, not left in free pages.
            conn.pragma_update(None, "secure_delete", "ON")?;
            conn
        };
        conn.busy_timeout(options.busy_timeout)?;
        conn.set_prepared_statement_cache_capacity(256);
        Ok(SqliteDb {
            url: url.clone(),
            conn: Mutex::new(conn),
        })
    }

    pub(crate) fn checkpoint(&self) -> Result<()> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        Ok(())
    }

    pub(crate) fn url(&self) -> &MetadataUrl {
        &self.url
    }

    pub(crate) fn run<T, E>(
        &self,
        isolation: Isolation,
        mut body: impl FnMut(&Tx<'_>) -> Result<T, E>,
    ) -> Result<T, E>
    where
        E: From<Error>,
    {
        // A panic while holding the lock cannot leave a half-applied transaction (dropping
        // the transaction rolls it back), so a poisoned lock is safe to reuse.
        let mut conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let behavior = match isolation {
            Isolation::Read => TransactionBehavior::Deferred,
            Isolation::Write | Isolation::LockedWrite => TransactionBehavior::Immediate,
        };
        let transaction = conn
            .transaction_with_behavior(behavior)
            .map_err(Error::from)?;
        let tx = Tx::new(TxConn::Sqlite(&transaction), isolation);
        let value = body(&tx)?;
        let failed = tx.failure.get();
        match failed {
            // SQLite has no retryable failures here: the writer is exclusive.
            Some(Failure::Fatal | Failure::Retryable) => Err(Error::TransactionAborted.into()),
            None if isolation == Isolation::Read => Ok(value),
            None => {
                transaction.commit().map_err(Error::from)?;
                Ok(value)
            }
        }
    }
}

/// Opens an existing file read-only: no schema, no write to the file or its log. With no
/// `-wal` beside it no server has it open and everything is in the file, so it is opened
/// immutable and SQLite creates no `-wal` or `-shm` file.
fn open_read_only(path: &Path) -> Result<Connection> {
    use rusqlite::OpenFlags;
    if !path.exists() {
        return Err(Error::Io {
            path: path.to_owned(),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        });
    }
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    let conn = if std::path::Path::new(&wal).exists() {
        Connection::open_with_flags(path, flags)?
    } else {
        let text = path.to_string_lossy();
        let escaped = text
            .replace('%', "%25")
            .replace('?', "%3f")
            .replace('#', "%23");
        Connection::open_with_flags(
            format!("file:{escaped}?immutable=1"),
            flags | OpenFlags::SQLITE_OPEN_URI,
        )?
    };
    conn.pragma_update(None, "query_only", true)?;
    Ok(conn)
}

/// Creates `path` with mode 0600 if it does not exist (SQLite's `-wal` and `-shm` files take
/// the database file's mode).
fn create_private_file(path: &Path) -> Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path).map(drop).map_err(|source| Error::Io {
        path: path.to_owned(),
        source,
    })
}

struct Param<'a>(&'a Value);

impl rusqlite::ToSql for Param<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self.0 {
            Value::Null => ToSqlOutput::Borrowed(ValueRef::Null),
            Value::Int(v) => ToSqlOutput::Borrowed(ValueRef::Integer(*v)),
            Value::Real(v) => ToSqlOutput::Borrowed(ValueRef::Real(*v)),
            Value::Text(v) => ToSqlOutput::Borrowed(ValueRef::Text(v.as_bytes())),
            Value::Bytes(v) => ToSqlOutput::Borrowed(ValueRef::Blob(v)),
            Value::Bool(v) => ToSqlOutput::Borrowed(ValueRef::Integer(i64::from(*v))),
        })
    }
}

fn prepare<'t>(
    tx: &'t rusqlite::Transaction<'_>,
    isolation: Isolation,
    sql: &str,
) -> Result<rusqlite::CachedStatement<'t>> {
    crate::sql::translate_placeholders(sql, false)?;
    let statement = tx.prepare_cached(sql)?;
    if isolation == Isolation::Read && !statement.readonly() {
        return Err(Error::WriteInRead);
    }
    Ok(statement)
}

pub(crate) fn execute(
    tx: &rusqlite::Transaction<'_>,
    isolation: Isolation,
    sql: &str,
    params: &[Value],
) -> Result<u64> {
    let mut statement = prepare(tx, isolation, sql)?;
    let n = statement.execute(rusqlite::params_from_iter(params.iter().map(Param)))?;
    Ok(n as u64)
}

pub(crate) fn query(
    tx: &rusqlite::Transaction<'_>,
    isolation: Isolation,
    sql: &str,
    params: &[Value],
) -> Result<Vec<Row>> {
    let mut statement = prepare(tx, isolation, sql)?;
    let columns = Arc::new(Columns::new(
        statement.column_names().into_iter().map(str::to_owned),
    ));
    let n_columns = statement.column_count();
    let mut rows = statement.query(rusqlite::params_from_iter(params.iter().map(Param)))?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        let mut values = Vec::with_capacity(n_columns);
        for idx in 0..n_columns {
            values.push(match row.get_ref(idx)? {
                ValueRef::Null => Value::Null,
                ValueRef::Integer(v) => Value::Int(v),
                ValueRef::Real(v) => Value::Real(v),
                ValueRef::Text(v) => Value::Text(
                    String::from_utf8(v.to_vec())
                        .map_err(|e| rusqlite::Error::Utf8Error(idx, e.utf8_error()))?,
                ),
                ValueRef::Blob(v) => Value::Bytes(v.to_vec()),
            });
        }
        out.push(Row {
            columns: columns.clone(),
            values,
        });
    }
    Ok(out)
}
