//! Leases: a named role (a sweeper, a server's liveness) held by one holder until it
//! expires, on the database's clock.

use std::time::Duration;

use crate::db::Tx;
use crate::error::Result;
use crate::value::{Row, Value};

/// A lease as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// What is held (`"sweeper/retention"`, `"server/<id>"`).
    pub name: String,
    /// Who holds it (a server id).
    pub holder: String,
    /// When it lapses, in milliseconds since the epoch on the database clock.
    pub expires_at_ms: i64,
}

impl Lease {
    fn from_row(row: &Row) -> Result<Lease> {
        Ok(Lease {
            name: row.get("name")?,
            holder: row.get("holder")?,
            expires_at_ms: row.get("expires_at_ms")?,
        })
    }
}

fn millis(ttl: Duration) -> Value {
    Value::Int(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX / 2))
}

/// Leases live in `shuyu_meta_leases`, created by [`Db::migrate`](crate::Db::migrate). All
/// times are the database's clock ([`Tx::now_ms`]): servers sharing a PostgreSQL need not
/// agree on theirs. A holder that keeps a lease renews it well before `ttl` runs out (at a
/// third of it, say) and stops the leased work when a renewal returns `false`.
impl Tx<'_> {
    /// Takes lease `name` for `holder` for `ttl` from now, if it is free, expired or already
    /// `holder`'s (then it is renewed). `false` if someone else holds it.
    ///
    /// # Errors
    /// A failed statement.
    pub fn acquire_lease(&self, name: &str, holder: &str, ttl: Duration) -> Result<bool> {
        let now = self.now_ms_sql();
        let changed = self.execute(
            &format!(
                "INSERT INTO shuyu_meta_leases (name, holder, expires_at_ms) VALUES (?1, ?2, {now} + ?3) \
                 ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at_ms = excluded.expires_at_ms \
                 WHERE shuyu_meta_leases.holder = excluded.holder OR shuyu_meta_leases.expires_at_ms <= {now}"
            ),
            &[name.into(), holder.into(), millis(ttl)],
        )?;
        Ok(changed == 1)
    }

    /// Gives lease `name` up if `holder` has it; `false` if it did not.
    ///
    /// # Errors
    /// A failed statement.
    pub fn release_lease(&self, name: &str, holder: &str) -> Result<bool> {
        let changed = self.execute(
            "DELETE FROM shuyu_meta_leases WHERE name = ?1 AND holder = ?2",
            &[name.into(), holder.into()],
        )?;
        Ok(changed == 1)
    }

    /// The lease `name` as recorded, expired or not.
    ///
    /// # Errors
    /// A failed statement.
    pub fn lease(&self, name: &str) -> Result<Option<Lease>> {
        self.query_opt(
            "SELECT name, holder, expires_at_ms FROM shuyu_meta_leases WHERE name = ?1",
            &[name.into()],
        )?
        .as_ref()
        .map(Lease::from_row)
        .transpose()
    }

    /// Every lease past its expiry, by name: the holders that stopped renewing (a server that
    /// died), whose work others may take over.
    ///
    /// # Errors
    /// A failed statement.
    pub fn expired_leases(&self) -> Result<Vec<Lease>> {
        self.query(
            &format!(
                "SELECT name, holder, expires_at_ms FROM shuyu_meta_leases WHERE expires_at_ms <= {} ORDER BY name",
                self.now_ms_sql()
            ),
            &[],
        )?
        .iter()
        .map(Lease::from_row)
        .collect()
    }
}
