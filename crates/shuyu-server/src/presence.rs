//! The servers that share one domain. Several `shuyu serve` processes may keep one domain's
//! metadata in one PostgreSQL (and its objects in one data dir): each holds a lease
//! `server:<id>` on the database's clock, renewed every [`HEARTBEAT`]; a server whose lease
//! has expired is gone, and the jobs it was running are failed by whichever server notices
//! first ([`crate::jobs::runtime::fail_orphaned_jobs`]). The periodic duties (oversight tasks,
//! sweeps) run on one server at a time, each under a lease of its own ([`Presence::on_duty`]).
//!
//! A server that found the data dir's `serve.lock` free (always, on SQLite, where one server
//! holds it) knows every other server's lease is a leftover of a server that died:
//! [`Presence::join`] clears them, so the jobs they ran are failed at once.

use std::time::Duration;

use shuyu_meta::Backend;

use crate::error::Result;
use crate::store::Store;

/// How long a server's lease lasts without renewal: after a `kill -9`, this long passes
/// before another server fails its jobs.
pub const LEASE_TTL: Duration = Duration::from_secs(20);

/// How often a server renews its lease.
pub const HEARTBEAT: Duration = Duration::from_secs(4);

/// The prefix of servers' lease names.
const SERVER_LEASE: &str = "server:";

/// This server among those sharing the domain.
#[derive(Debug, Clone)]
pub struct Presence {
    id: String,
    store: Store,
}

impl Presence {
    /// Joins the domain under a fresh id and takes its lease; `alone`: no other server is
    /// running (see [`crate::domain::ServeLock`]), so other servers' leases are cleared.
    ///
    /// # Errors
    /// On store failure.
    pub fn join(store: &Store, alone: bool) -> Result<Presence> {
        let id = format!("srv_{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        let presence = Presence {
            id,
            store: store.clone(),
        };
        store.write_unaudited(|tx| {
            if alone || tx.backend() == Backend::Sqlite {
                tx.execute(
                    "DELETE FROM shuyu_meta_leases WHERE name LIKE ?1",
                    shuyu_meta::params![format!("{SERVER_LEASE}%")],
                )?;
            }
            Ok(())
        })?;
        presence.renew()?;
        Ok(presence)
    }

    /// This server's id (recorded beside the jobs it runs).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The lease name of server `id`.
    pub fn lease_name(id: &str) -> String {
        format!("{SERVER_LEASE}{id}")
    }

    /// Renews this server's lease.
    ///
    /// # Errors
    /// On store failure.
    pub fn renew(&self) -> Result<()> {
        let name = Presence::lease_name(&self.id);
        self.store.write_unaudited(|tx| {
            if !tx.acquire_lease(&name, &self.id, LEASE_TTL)? {
                return Err(crate::error::ServerError::internal(format!(
                    "the lease {name} is held by another server"
                )));
            }
            Ok(())
        })
    }

    /// Gives up this server's lease (a clean stop): its unfinished jobs are then failed by
    /// the next server that looks, at once.
    pub fn leave(&self) {
        let name = Presence::lease_name(&self.id);
        let _ = self
            .store
            .write_unaudited(|tx| Ok(tx.release_lease(&name, &self.id)?));
    }

    /// Whether this server is to run the periodic duty `name` now: it holds the duty's lease
    /// (taking it when free or expired) for a while longer than `period`, so that the duty
    /// stays with one server while that server lives.
    ///
    /// # Errors
    /// On store failure.
    pub fn on_duty(&self, name: &str, period: Duration) -> Result<bool> {
        let ttl = (period * 3).max(LEASE_TTL);
        let lease = format!("duty:{name}");
        self.store
            .write_unaudited(|tx| Ok(tx.acquire_lease(&lease, &self.id, ttl)?))
    }

    /// Whether no other server holds a live lease: then nothing is half-written by anyone
    /// else, and objects no record names are leftovers.
    ///
    /// # Errors
    /// On store failure.
    pub fn alone(&self) -> Result<bool> {
        let me = Presence::lease_name(&self.id);
        self.store.read(|tx| {
            let now = tx.now_ms()?;
            Ok(tx
                .query_opt(
                    "SELECT name FROM shuyu_meta_leases
                     WHERE name LIKE ?1 AND name <> ?2 AND expires_at_ms > ?3 LIMIT 1",
                    shuyu_meta::params![format!("{SERVER_LEASE}%"), me.as_str(), now],
                )?
                .is_none())
        })
    }

    /// Keeps the lease renewed until the task is aborted. A renewal that fails is logged and
    /// tried again at the next beat.
    pub async fn heartbeat_forever(self) {
        let mut tick = tokio::time::interval(HEARTBEAT);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let presence = self.clone();
            match tokio::task::spawn_blocking(move || presence.renew()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::error!(error = %e, "renewing the server's lease failed"),
                Err(e) => tracing::error!(error = %e, "renewing the server's lease panicked"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing;

    #[test]
    fn duties_go_to_one_server_and_a_gone_server_is_noticed() {
        testing::each_backend(|store| {
            let a = Presence::join(store, false).unwrap();
            assert!(a.alone().unwrap());
            let b = Presence {
                id: "srv_b".into(),
                store: store.clone(),
            };
            b.renew().unwrap();
            assert!(!a.alone().unwrap());
            assert!(a.on_duty("sweep", Duration::from_secs(1)).unwrap());
            assert!(!b.on_duty("sweep", Duration::from_secs(1)).unwrap());
            assert!(a.on_duty("sweep", Duration::from_secs(1)).unwrap());
            b.leave();
            assert!(a.alone().unwrap());
            assert_ne!(a.id(), Presence::join(store, false).unwrap().id());
            // Joining alone clears the leases of servers that died.
            b.renew().unwrap();
            let c = Presence::join(store, true).unwrap();
            assert!(c.alone().unwrap());
        });
    }
}
