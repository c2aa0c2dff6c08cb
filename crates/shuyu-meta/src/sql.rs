//! The SQL both backends accept, and the few translations this crate makes.
//!
//! Write statements once, for both SQLite and PostgreSQL:
//!
//! - Placeholders are numbered, `?1, ?2, …` (a bare `?` is refused); on PostgreSQL they
//!   become `$1, $2, …`. Text inside quotes and comments is left alone.
//! - Types: `BIGINT` for integers (a PostgreSQL `INTEGER` is 32-bit and refuses a 64-bit
//!   parameter), `DOUBLE PRECISION` for reals (PostgreSQL's `REAL` is 32-bit), `TEXT`,
//!   `BOOLEAN`, and `BLOB` for bytes — in [`Migration`](crate::Migration) SQL only, `BLOB`
//!   becomes `BYTEA` on PostgreSQL ([`schema_for_postgres`]); that is the only type mapping.
//! - No `AUTOINCREMENT`, no `INTEGER PRIMARY KEY` row ids: keys come from the application
//!   (ids, UUIDs) or from `SELECT COALESCE(MAX(id), 0) + 1` inside a write transaction
//!   (serializable on both backends).
//! - Upserts with `INSERT … ON CONFLICT (cols) DO NOTHING` or `DO UPDATE SET c = excluded.c`
//!   (both support them); no `INSERT OR IGNORE` / `OR REPLACE`. `RETURNING` works on both.
//! - Where PostgreSQL cannot infer a parameter's type (`SELECT ?1`, `?1 IS NULL`), cast it:
//!   `CAST(?1 AS BIGINT)`. `SUM` of `BIGINT` is `NUMERIC` on PostgreSQL; it is read back as
//!   an integer when integral, but `CAST(SUM(x) AS BIGINT)` says what is meant.
//! - Text never holds a NUL character (PostgreSQL refuses it); such values are bytes.
//! - Lower-case column names (PostgreSQL folds unquoted names to lower case), read by name.
//! - Time: store milliseconds since the epoch as `BIGINT`; the database clock is
//!   [`Tx::now_ms`](crate::Tx::now_ms).
//! - Any failed statement ends the transaction on both backends (PostgreSQL's rule, which
//!   SQLite is held to): handle expected conflicts in SQL (`ON CONFLICT`), not by catching
//!   errors.

use std::borrow::Cow;

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// Checks that `sql` uses only numbered placeholders and, for PostgreSQL, rewrites `?N` as
/// `$N`.
///
/// # Errors
/// [`Error::Placeholder`] for a bare `?`.
pub fn translate_placeholders(sql: &str, postgres: bool) -> Result<Cow<'_, str>> {
    let bytes = sql.as_bytes();
    let mut out: Option<String> = None;
    let mut copied = 0;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            quote @ (b'\'' | b'"') => {
                i += 1;
                while i < bytes.len() && bytes[i] != quote {
                    i += 1;
                }
                i += 1;
            }
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                i += 2;
                while i + 1 < bytes.len() && !(bytes[i] == b'*' && bytes[i + 1] == b'/') {
                    i += 1;
                }
                i += 2;
            }
            b'?' => {
                let digits = bytes[i + 1..]
                    .iter()
                    .take_while(|b| b.is_ascii_digit())
                    .count();
                if digits == 0 {
                    return Err(Error::Placeholder(format!(
                        "bare ? at byte {i}: number placeholders ?1, ?2, …"
                    )));
                }
                if postgres {
                    let out = out.get_or_insert_with(|| String::with_capacity(sql.len()));
                    out.push_str(&sql[copied..i]);
                    out.push('$');
                    copied = i + 1;
                }
                i += 1 + digits;
            }
            _ => i += 1,
        }
    }
    Ok(match out {
        Some(mut out) => {
            out.push_str(&sql[copied..]);
            Cow::Owned(out)
        }
        None => Cow::Borrowed(sql),
    })
}

/// The schema type mapping for migrations on PostgreSQL: the word `BLOB` (any case, outside
/// quotes and comments) becomes `BYTEA`.
pub fn schema_for_postgres(sql: &str) -> String {
    let bytes = sql.as_bytes();
    let mut out = String::with_capacity(sql.len());
    let mut i = 0;
    let mut copied = 0;
    let is_word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    while i < bytes.len() {
        match bytes[i] {
            quote @ (b'\'' | b'"') => {
                i += 1;
                while i < bytes.len() && bytes[i] != quote {
                    i += 1;
                }
                i += 1;
            }
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b if is_word(b) => {
                let start = i;
                while i < bytes.len() && is_word(bytes[i]) {
                    i += 1;
                }
                if sql[start..i].eq_ignore_ascii_case("blob") {
                    out.push_str(&sql[copied..start]);
                    out.push_str("BYTEA");
                    copied = i;
                }
            }
            _ => i += 1,
        }
    }
    out.push_str(&sql[copied.min(sql.len())..]);
    out
}

/// The 64-bit advisory-lock key of a lock name: the first 8 bytes of a SHA-256 of it, so
/// every server computes the same key for the same name.
pub fn lock_key(name: &str) -> i64 {
    let digest = Sha256::new()
        .chain_update(b"shuyu-meta lock\0")
        .chain_update(name.as_bytes())
        .finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(sql: &str, postgres: &str) {
        assert_eq!(translate_placeholders(sql, true).unwrap(), postgres);
        assert_eq!(translate_placeholders(sql, false).unwrap(), sql);
    }

    #[test]
    fn placeholders() {
        check("SELECT 1", "SELECT 1");
        check(
            "UPDATE t SET a = ?2 WHERE id = ?1 AND b = ?12",
            "UPDATE t SET a = $2 WHERE id = $1 AND b = $12",
        );
        check(
            "SELECT '?1 it''s', \"q?\" FROM t WHERE x = ?1 -- ?9\n AND y = ?2 /* ?3 */",
            "SELECT '?1 it''s', \"q?\" FROM t WHERE x = $1 -- ?9\n AND y = $2 /* ?3 */",
        );
        for bad in ["SELECT ?", "SELECT * FROM t WHERE a = ?1 AND b = ?"] {
            assert!(matches!(
                translate_placeholders(bad, false),
                Err(Error::Placeholder(_))
            ));
        }
        assert!(translate_placeholders("SELECT '?'", false).is_ok());
    }

    #[test]
    fn blob_becomes_bytea() {
        assert_eq!(
            schema_for_postgres(
                "CREATE TABLE t (a BLOB, blobs BLOB NOT NULL, c blob, d TEXT DEFAULT 'BLOB') -- BLOB"
            ),
            "CREATE TABLE t (a BYTEA, blobs BYTEA NOT NULL, c BYTEA, d TEXT DEFAULT 'BLOB') -- BLOB"
        );
    }

    const PINNED: i64 = -493_581_422_176_589_678;

    #[test]
    fn lock_keys_are_stable() {
        assert_eq!(lock_key("a"), lock_key("a"));
        assert_ne!(lock_key("a"), lock_key("b"));
        // Fixed forever: servers of different versions must agree.
        assert_eq!(lock_key("shuyu-meta/migrate"), PINNED);
    }
}
