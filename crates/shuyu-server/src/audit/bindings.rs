//! Decision rows bound to the audit trail: exports, their votes and products, authorizations,
//! holds, keys, certificates, principals, grants, scenarios and privacy budgets.
//!
//! The trail proves what was done; these rows are what the server acts on. Each change of a
//! bound row is noted by a trigger only the server's own transactions read ([`install_triggers`]:
//! TEMP triggers of its SQLite connection, or on PostgreSQL a note in a setting local to the
//! transaction); [`crate::store::Store::commit`] then writes, in the same transaction, the SHA-256 digest of
//! every changed row's decision fields into the detail of the audit record it appends
//! (`row_bindings`) and into `row_bindings` (table, key, digest, that record's sequence
//! number). [`verify`] recomputes every digest: a row edited, inserted or deleted in
//! `meta.db` behind the server's back no longer matches its binding, and a binding edited to
//! match no longer matches the MAC'd record that names it. An offline edit is never bound: on
//! SQLite it fires no trigger (they exist only in the server's connection), on PostgreSQL its
//! note is read by no one.

use std::collections::{BTreeMap, BTreeSet};

use shuyu_meta::{Backend, Db, Value, params};

use crate::error::ServerError;
use shuyu_meta::Tx;

use crate::error::Result;

/// The table of current bindings.
pub(crate) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS row_bindings (
    tbl TEXT NOT NULL, row_key TEXT NOT NULL, digest TEXT NOT NULL, seq BIGINT NOT NULL,
    PRIMARY KEY (tbl, row_key));
";

/// The action of the record that binds the rows a data dir held before rows were bound (once,
/// when a server of this version first opens it).
pub const BIND_EXISTING_ACTION: &str = "bind_existing_rows";

/// The key of the bindings in an audit record's detail.
pub const DETAIL_KEY: &str = "row_bindings";

/// The digest of a bound row that was deleted.
pub const DELETED: &str = "deleted";

/// A bound table: its key columns and the decision fields its digest covers (SQL expressions
/// over the row; BLOBs as hex).
struct Bound {
    table: &'static str,
    key: &'static [&'static str],
    fields: &'static [&'static str],
}

const BOUND: &[Bound] = &[
    Bound {
        table: "exports",
        key: &["id"],
        fields: &[
            "job_id",
            "tenant_id",
            "requester_id",
            "status",
            "checks_json",
            "decided_at_ms",
            "package_location",
            "package_sha256",
            "policy_version",
            "quorum",
            "recipient_id",
            "permitted_use",
            "expires_in_days",
            "product_json",
            "fingerprint",
            "download_count",
        ],
    },
    Bound {
        table: "export_votes",
        key: &["export_id", "reviewer_id"],
        fields: &[
            "decision",
            "result_sha256",
            "query_sha256",
            "policy_version",
            "at_ms",
        ],
    },
    Bound {
        table: "authorizations",
        key: &["id"],
        fields: &[
            "tenant_id",
            "dataset_ids",
            "categories",
            "valid_from_ms",
            "valid_until_ms",
            "revoked_at_ms",
            "renewed_from",
        ],
    },
    Bound {
        table: "tenant_holds",
        key: &["tenant_id"],
        fields: &[
            "suspended_at_ms",
            "fix_by_ms",
            "stopped_at_ms",
            "terminated_at_ms",
        ],
    },
    Bound {
        table: "keks",
        key: &["id"],
        fields: &["hex(wrapped)", "owner", "parent"],
    },
    Bound {
        table: "certificates",
        key: &["fingerprint"],
        fields: &["principal_id", "not_after_ms", "revoked"],
    },
    Bound {
        table: "principals",
        key: &["id"],
        fields: &["role", "tenant_id"],
    },
    Bound {
        table: "disabled_principals",
        key: &["principal_id"],
        fields: &["at_ms"],
    },
    Bound {
        table: "grants",
        key: &["dataset_id", "tenant_id"],
        fields: &["granted_by"],
    },
    Bound {
        table: "scenarios",
        key: &["id"],
        fields: &[
            "tenant_id",
            "data_list_json",
            "valid_from_ms",
            "valid_until_ms",
            "status",
            "category",
        ],
    },
    Bound {
        table: "scenario_approvals",
        key: &["scenario_id", "capacity", "dataset_id"],
        fields: &["approver_id", "decided", "approved", "decided_by"],
    },
    Bound {
        table: "privacy_budgets",
        key: &["tenant_id", "data_sha256"],
        fields: &["epsilon_total", "epsilon_spent"],
    },
];

/// One binding: a row (table, key as a JSON array) and its digest.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Binding {
    pub table: String,
    pub key: String,
    pub digest: String,
}

/// The SQL of a JSON array of `exprs` as text, on `backend` (each backend's own text form: a
/// digest is made and checked by the same backend).
fn json_array(backend: Backend, exprs: &[impl AsRef<str>]) -> String {
    let list = exprs
        .iter()
        .map(|e| field_sql(backend, e.as_ref()))
        .collect::<Vec<_>>()
        .join(", ");
    match backend {
        Backend::Sqlite => format!("json_array({list})"),
        Backend::Postgres => format!("CAST(json_build_array({list}) AS TEXT)"),
    }
}

/// A field expression on `backend` (BLOBs as hex).
fn field_sql(backend: Backend, expr: &str) -> String {
    match (
        backend,
        expr.strip_prefix("hex(").and_then(|e| e.strip_suffix(')')),
    ) {
        (Backend::Postgres, Some(column)) => format!("encode({column}, 'hex')"),
        _ => expr.to_owned(),
    }
}

/// A bound table by name: SQLite names the database so that a TEMP object never shadows it.
fn table_sql(backend: Backend, table: &str) -> String {
    match backend {
        Backend::Sqlite => format!("main.{table}"),
        Backend::Postgres => table.to_owned(),
    }
}

/// The lock under which servers sharing a PostgreSQL replace the triggers.
const TRIGGERS_LOCK: &str = "shuyu-server/bindings-triggers";

/// The PostgreSQL setting, local to each transaction, where the triggers note changed rows.
const PENDING_SETTING: &str = "shuyu.pending_bindings";

/// Installs the triggers that note changed bound rows.
///
/// SQLite: a TEMP table and TEMP triggers on the server's one connection, so offline edits
/// of `meta.db` (another connection) fire none of them. PostgreSQL: a trigger per bound table
/// appends each changed row to a setting local to the transaction, which only the server's
/// commit reads ([`take_pending`]); an edit made in any other session is noted in a setting
/// no one reads, so it is never bound either.
///
/// # Errors
/// On store failure.
pub(crate) fn install_triggers(db: &Db) -> Result<()> {
    match db.backend() {
        Backend::Sqlite => {
            // No key: a row changed twice is noted twice and [`take_pending`] keeps one. (A
            // conflict clause in a trigger would give way to that of the statement that fired
            // it, an upsert's.)
            let mut sql = String::from(
                "CREATE TEMP TABLE IF NOT EXISTS pending_bindings (
                     tbl TEXT NOT NULL, row_key TEXT NOT NULL);\n",
            );
            for b in BOUND {
                let t = b.table;
                let new = json_array(Backend::Sqlite, &prefixed(b.key, "NEW."));
                let old = json_array(Backend::Sqlite, &prefixed(b.key, "OLD."));
                sql.push_str(&format!(
                    "CREATE TEMP TRIGGER IF NOT EXISTS bind_{t}_insert AFTER INSERT ON main.{t} BEGIN
                         INSERT INTO pending_bindings VALUES ('{t}', {new}); END;
                     CREATE TEMP TRIGGER IF NOT EXISTS bind_{t}_update AFTER UPDATE ON main.{t} BEGIN
                         INSERT INTO pending_bindings VALUES ('{t}', {old});
                         INSERT INTO pending_bindings VALUES ('{t}', {new}); END;
                     CREATE TEMP TRIGGER IF NOT EXISTS bind_{t}_delete AFTER DELETE ON main.{t} BEGIN
                         INSERT INTO pending_bindings VALUES ('{t}', {old}); END;\n"
                ));
            }
            db.write(|tx| Ok::<_, ServerError>(tx.execute_batch(&sql)?))
        }
        Backend::Postgres => {
            let mut sql = String::new();
            for b in BOUND {
                let t = b.table;
                let note = |row: &str| {
                    let key = json_array(Backend::Postgres, &prefixed(b.key, row));
                    format!(
                        "PERFORM set_config('{PENDING_SETTING}',
                             COALESCE(current_setting('{PENDING_SETTING}', true), '')
                             || '{t}' || chr(9) || {key} || chr(10), true);"
                    )
                };
                let (old, new) = (note("OLD."), note("NEW."));
                sql.push_str(&format!(
                    "CREATE OR REPLACE FUNCTION shuyu_bind_{t}() RETURNS trigger LANGUAGE plpgsql AS $shuyu$
                     BEGIN
                         IF TG_OP <> 'INSERT' THEN {old} END IF;
                         IF TG_OP <> 'DELETE' THEN {new} END IF;
                         RETURN NULL;
                     END $shuyu$;
                     CREATE OR REPLACE TRIGGER shuyu_bind_{t} AFTER INSERT OR UPDATE OR DELETE ON {t}
                         FOR EACH ROW EXECUTE FUNCTION shuyu_bind_{t}();\n"
                ));
            }
            db.write(|tx| {
                tx.lock_exclusive(TRIGGERS_LOCK)?;
                Ok::<_, ServerError>(tx.execute_batch(&sql)?)
            })
        }
    }
}

fn prefixed(columns: &[&str], prefix: &str) -> Vec<String> {
    columns.iter().map(|c| format!("{prefix}{c}")).collect()
}

fn bound(table: &str) -> Option<&'static Bound> {
    BOUND.iter().find(|b| b.table == table)
}

fn digest_of(table: &str, key: &str, fields_json: &str) -> String {
    shuyu_vault::sha256_hex(format!("{table}\n{key}\n{fields_json}").as_bytes())
}

/// The current digest of one row ([`DELETED`] when it does not exist).
fn row_digest(tx: &Tx<'_>, b: &Bound, key: &str) -> Result<String> {
    let values: Vec<Value> = serde_json::from_str::<Vec<serde_json::Value>>(key)
        .unwrap_or_default()
        .into_iter()
        .map(|v| Value::Text(v.as_str().map_or_else(|| v.to_string(), str::to_owned)))
        .collect();
    let condition = b
        .key
        .iter()
        .enumerate()
        .map(|(i, c)| format!("{c} = ?{}", i + 1))
        .collect::<Vec<_>>()
        .join(" AND ");
    let sql = format!(
        "SELECT {} AS fields FROM {} WHERE {condition}",
        json_array(tx.backend(), b.fields),
        table_sql(tx.backend(), b.table)
    );
    let fields: Option<String> = tx
        .query_opt(&sql, &values)?
        .map(|r| r.get("fields"))
        .transpose()?;
    Ok(fields.map_or_else(|| DELETED.to_owned(), |f| digest_of(b.table, key, &f)))
}

/// Takes the rows changed in `tx` since the last call, with their digests now.
///
/// # Errors
/// On store failure.
pub(crate) fn take_pending(tx: &Tx<'_>) -> Result<Vec<Binding>> {
    let pending: BTreeSet<(String, String)> = match tx.backend() {
        Backend::Sqlite => {
            let rows = tx.query("SELECT tbl, row_key FROM temp.pending_bindings", &[])?;
            if rows.is_empty() {
                return Ok(Vec::new());
            }
            tx.execute("DELETE FROM temp.pending_bindings", &[])?;
            rows.iter()
                .map(|r| Ok((r.get("tbl")?, r.get("row_key")?)))
                .collect::<Result<_>>()?
        }
        Backend::Postgres => {
            let noted: Option<String> = tx
                .query_one(
                    &format!("SELECT current_setting('{PENDING_SETTING}', true) AS pending"),
                    &[],
                )?
                .get("pending")?;
            let noted = noted.unwrap_or_default();
            if noted.is_empty() {
                return Ok(Vec::new());
            }
            tx.query(
                &format!("SELECT set_config('{PENDING_SETTING}', '', true) AS reset"),
                &[],
            )?;
            noted
                .lines()
                .filter_map(|line| line.split_once('\t'))
                .map(|(t, k)| (t.to_owned(), k.to_owned()))
                .collect()
        }
    };
    let mut out = Vec::with_capacity(pending.len());
    for (table, key) in pending {
        let Some(b) = bound(&table) else { continue };
        let digest = row_digest(tx, b, &key)?;
        out.push(Binding { table, key, digest });
    }
    Ok(out)
}

/// `detail` with the bindings added under [`DETAIL_KEY`].
pub(crate) fn with_bindings(detail: &serde_json::Value, bindings: &[Binding]) -> serde_json::Value {
    let list: Vec<serde_json::Value> = bindings
        .iter()
        .map(|b| serde_json::json!([b.table, b.key, b.digest]))
        .collect();
    let mut detail = match detail {
        serde_json::Value::Object(map) => serde_json::Value::Object(map.clone()),
        serde_json::Value::Null => serde_json::json!({}),
        other => serde_json::json!({"detail": other}),
    };
    detail[DETAIL_KEY] = serde_json::Value::Array(list);
    detail
}

/// Stores the bindings as made by audit record `seq`.
///
/// # Errors
/// On store failure.
pub(crate) fn record(tx: &Tx<'_>, bindings: &[Binding], seq: u64) -> Result<()> {
    let seq = crate::audit::trail::seq_param(seq)?;
    for b in bindings {
        tx.execute(
            "INSERT INTO row_bindings (tbl, row_key, digest, seq) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(tbl, row_key) DO UPDATE SET digest = excluded.digest, seq = excluded.seq",
            params![b.table.as_str(), b.key.as_str(), b.digest.as_str(), seq],
        )?;
    }
    Ok(())
}

/// The `LIKE` pattern of an audit detail that binds rows.
fn binds_pattern() -> String {
    format!("%\"{DETAIL_KEY}\"%")
}

/// Whether the rows of this data dir were bound (by the genesis record or later), i.e. the
/// domain was written by a server that binds rows.
fn trail_binds_rows(tx: &Tx<'_>) -> Result<bool> {
    Ok(tx
        .query_opt(
            "SELECT 1 AS found FROM audit WHERE action = ?1 OR detail LIKE ?2 LIMIT 1",
            params![BIND_EXISTING_ACTION, binds_pattern()],
        )?
        .is_some())
}

/// Marks every bound row that has no binding as changed, so that the next commit binds it:
/// run once per data dir, by the record [`BIND_EXISTING_ACTION`], for the rows written before
/// rows were bound. Returns whether that record is still to be written. Only SQLite data dirs
/// predate bound rows: a PostgreSQL domain binds its rows from its first record.
///
/// # Errors
/// On store failure.
pub(crate) fn mark_unbound_rows(tx: &Tx<'_>) -> Result<bool> {
    if tx.backend() == Backend::Postgres {
        return Ok(false);
    }
    let empty: bool = tx
        .query_one("SELECT count(*) = 0 AS empty FROM audit", &[])?
        .get("empty")?;
    let done = tx
        .query_opt(
            "SELECT 1 AS found FROM audit WHERE action = ?1 LIMIT 1",
            params![BIND_EXISTING_ACTION],
        )?
        .is_some();
    if empty || done {
        return Ok(false);
    }
    for b in BOUND {
        let key = json_array(Backend::Sqlite, b.key);
        tx.execute(
            &format!(
                "INSERT INTO temp.pending_bindings (tbl, row_key)
                 SELECT '{t}', {key} FROM main.{t}
                 WHERE {key} NOT IN (SELECT row_key FROM row_bindings WHERE tbl = '{t}')",
                t = b.table,
            ),
            &[],
        )?;
    }
    Ok(true)
}

/// Checks every bound row against its binding and every binding against the audit record
/// that made it. `None` when everything holds (or the data dir predates bound rows); else the
/// first problem. Run after the chain itself verified.
///
/// # Errors
/// On store failure.
pub fn verify(tx: &Tx<'_>) -> Result<Option<String>> {
    if !trail_binds_rows(tx)? {
        return Ok(None);
    }
    // What the (verified) trail says, latest per row, and which records were redacted.
    let redacted: BTreeSet<u64> = tx
        .query("SELECT seq FROM audit_redactions", &[])?
        .iter()
        .map(|r| Ok(r.get("seq")?))
        .collect::<Result<_>>()?;
    let mut in_trail: BTreeMap<(String, String), (String, u64)> = BTreeMap::new();
    for row in tx.query(
        "SELECT seq, detail FROM audit WHERE detail LIKE ?1 ORDER BY seq",
        params![binds_pattern()],
    )? {
        let seq: u64 = row.get("seq")?;
        let detail: String = row.get("detail")?;
        let Ok(value) = serde_json::from_str::<serde_json::Value>(&detail) else {
            continue;
        };
        for b in value[DETAIL_KEY].as_array().into_iter().flatten() {
            if let (Some(t), Some(k), Some(d)) = (b[0].as_str(), b[1].as_str(), b[2].as_str()) {
                in_trail.insert((t.to_owned(), k.to_owned()), (d.to_owned(), seq));
            }
        }
    }
    let stored: BTreeMap<(String, String), (String, u64)> = tx
        .query("SELECT tbl, row_key, digest, seq FROM row_bindings", &[])?
        .iter()
        .map(|r| {
            Ok((
                (r.get("tbl")?, r.get("row_key")?),
                (r.get("digest")?, r.get("seq")?),
            ))
        })
        .collect::<Result<_>>()?;
    let name = |(t, k): &(String, String)| format!("{t} row {k}");
    // Each binding is the one its audit record made (or that record was redacted).
    for (row, (digest, seq)) in &stored {
        match in_trail.get(row) {
            Some((d, s)) if d == digest && s == seq => {}
            Some((_, s)) if s < seq && redacted.contains(seq) => {}
            None if redacted.contains(seq) => {}
            _ => {
                return Ok(Some(format!(
                    "the binding of {} does not match audit record {seq} (the binding was edited)",
                    name(row)
                )));
            }
        }
    }
    for row in in_trail.keys() {
        if !stored.contains_key(row) {
            return Ok(Some(format!(
                "{} is bound by the trail but its binding was removed",
                name(row)
            )));
        }
    }
    // Each row matches its binding; no row is unbound; no bound row vanished.
    for b in BOUND {
        let rows = tx.query(
            &format!(
                "SELECT {} AS row_key, {} AS fields FROM {}",
                json_array(tx.backend(), b.key),
                json_array(tx.backend(), b.fields),
                table_sql(tx.backend(), b.table)
            ),
            &[],
        )?;
        for r in &rows {
            let key: String = r.get("row_key")?;
            let fields: String = r.get("fields")?;
            let row = (b.table.to_owned(), key);
            match stored.get(&row) {
                None => {
                    return Ok(Some(format!(
                        "{} is bound by no audit record (written outside the server)",
                        name(&row)
                    )));
                }
                Some((digest, seq)) if *digest != digest_of(b.table, &row.1, &fields) => {
                    return Ok(Some(format!(
                        "{} no longer matches what audit record {seq} bound (the row was edited)",
                        name(&row)
                    )));
                }
                Some(_) => {}
            }
        }
    }
    for (row, (digest, seq)) in &stored {
        if digest == DELETED {
            continue;
        }
        let exists = bound(&row.0)
            .map(|b| row_digest(tx, b, &row.1))
            .transpose()?
            .is_some_and(|d| d != DELETED);
        if !exists {
            return Ok(Some(format!(
                "{} bound by audit record {seq} was deleted",
                name(row)
            )));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::trail::system_entry;
    use crate::audit::trail::{AuditLog, GENESIS_ACTION};
    use crate::store::Store;
    use crate::store::testing::{self, TestStore};
    use rusqlite::Connection;

    /// A store with a genesis record, a KEK and an export row written through the server.
    fn domain_on(test: TestStore) -> TestStore {
        test.commit(
            &system_entry(GENESIS_ACTION, "-", serde_json::json!({})),
            |tx| crate::store::insert_kek(tx, "domain", b"wrapped", "domain", None),
        )
        .unwrap()
        .into_inner();
        test.commit(
            &system_entry("approve", "-", serde_json::json!({"x": 1})),
            |tx| {
                tx.execute_batch(
                    "INSERT INTO tenants (id, name, kek_id, pseudonym_kek_id, created_at_ms)
                     VALUES ('t', 't', 'k', 'k', 0);",
                )?;
                tx.execute(
                    "INSERT INTO jobs (id, tenant_id, author_id, sql, substrait_plan, sql_sha256,
                         status, error, error_id, n_rows, columns_json, aggregate, preview_json,
                         inputs_json, result_file, result_kek, result_sha256, created_at_ms,
                         finished_at_ms)
                     VALUES ('j', 't', 'p', '', ?1, '', 'succeeded', '', '', 0, '[]', TRUE, '',
                         '[]', '', '', '', 0, 0)",
                    params![Vec::<u8>::new()],
                )?;
                tx.execute_batch(
                    "INSERT INTO exports (id, job_id, tenant_id, requester_id, purpose, format,
                     status, checks_json, requested_at_ms, decided_at_ms, package_location,
                     package_sha256, policy_version) VALUES ('e', 'j', 't', 'p', '', 'csv',
                     'rejected', '[]', 0, 0, '', '', 'v1');",
                )?;
                Ok(())
            },
        )
        .unwrap()
        .into_inner();
        test
    }

    /// An SQLite domain, and a second, offline connection to the same file.
    fn domain() -> (TestStore, Connection) {
        let test = domain_on(testing::sqlite());
        let offline = Connection::open(sqlite_path(&test)).unwrap();
        (test, offline)
    }

    fn sqlite_path(store: &Store) -> std::path::PathBuf {
        match store.url() {
            shuyu_meta::MetadataUrl::Sqlite(path) => path.clone(),
            other => panic!("not SQLite: {other}"),
        }
    }

    fn problem(store: &Store) -> Option<String> {
        store.read(verify).unwrap()
    }

    #[test]
    fn rows_written_by_the_server_verify_and_their_record_names_them() {
        for test in [testing::sqlite(), testing::postgres()] {
            let store = domain_on(test);
            assert_eq!(problem(&store), None);
            let detail: String = store
                .read(|tx| {
                    Ok(tx
                        .query_one("SELECT detail FROM audit WHERE seq = 2", &[])?
                        .get("detail")?)
                })
                .unwrap();
            assert!(
                detail.contains("\"exports\"") && detail.contains("\"x\":1"),
                "{detail}"
            );
            // A later change by the server is bound to its own record.
            store
                .commit(&system_entry("revoke", "-", serde_json::json!({})), |tx| {
                    tx.execute("UPDATE exports SET status = 'revoked'", &[])?;
                    Ok(())
                })
                .unwrap()
                .into_inner();
            assert_eq!(problem(&store), None);
            // A change made outside the server's commit is bound by no record.
            testing::tamper(&store, |tx| {
                Ok(tx.execute("UPDATE exports SET status = 'approved'", &[])?)
            });
            let found = problem(&store).expect("an edit outside the server is detected");
            assert!(found.contains("no longer matches"), "{found}");
        }
    }

    #[track_caller]
    fn check_detected(sql: &str, expect: &str) {
        let (store, offline) = domain();
        offline.execute_batch(sql).unwrap();
        let found = problem(&store).unwrap_or_else(|| panic!("{sql}: not detected"));
        assert!(found.contains(expect), "{sql}: {found}");
    }

    #[test]
    fn an_offline_edit_of_a_decision_is_detected() {
        check_detected(
            "UPDATE exports SET status = 'approved'",
            "exports row [\"e\"] no longer matches",
        );
        check_detected("UPDATE keks SET wrapped = x'00'", "keks row");
        check_detected("DELETE FROM exports", "was deleted");
        check_detected(
            "INSERT INTO export_votes VALUES ('e', 'p_r', 'approve', '', '', '', '', 'v1', 0)",
            "bound by no audit record",
        );
        // The binding edited to match the new row no longer matches its audit record.
        let (store, offline) = domain();
        offline
            .execute("UPDATE exports SET status = 'approved'", [])
            .unwrap();
        let (key, fields): (String, String) = offline
            .query_row(
                &format!(
                    "SELECT json_array(id), json_array({}) FROM exports",
                    BOUND[0].fields.join(", ")
                ),
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        offline
            .execute(
                "UPDATE row_bindings SET digest = ?1 WHERE tbl = 'exports'",
                [digest_of("exports", &key, &fields)],
            )
            .unwrap();
        assert!(
            problem(&store)
                .unwrap()
                .contains("does not match audit record")
        );
        // Removing the binding too: the trail still names the row.
        offline
            .execute("DELETE FROM row_bindings WHERE tbl = 'exports'", [])
            .unwrap();
        assert!(problem(&store).unwrap().contains("binding was removed"));
    }

    #[test]
    fn rows_of_an_older_data_dir_are_bound_once_when_it_is_opened() {
        let (test, offline) = domain();
        let options = crate::store::StoreOptions::sqlite(&sqlite_path(&test));
        let test_dir = test;
        // As an older server left it: rows, no bindings, no binding record.
        offline
            .execute_batch("DELETE FROM row_bindings; UPDATE audit SET detail = '{}';")
            .unwrap();
        let log = AuditLog::new(&shuyu_vault::SecretKey::generate());
        let store = crate::domain::open_store(&options, log.clone()).unwrap();
        assert_eq!(problem(&store), None);
        let n: i64 = store
            .read(|tx| {
                Ok(tx
                    .query_one(
                        "SELECT count(*) AS n FROM audit WHERE action = ?1",
                        params![BIND_EXISTING_ACTION],
                    )?
                    .get("n")?)
            })
            .unwrap();
        assert_eq!(n, 1);
        // Opening again binds nothing more, and an edit is caught as before.
        drop(store);
        let store = crate::domain::open_store(&options, log).unwrap();
        offline
            .execute("UPDATE exports SET status = 'approved'", [])
            .unwrap();
        assert!(problem(&store).is_some());
        drop(test_dir);
    }
}
