//! The metadata store's transaction core: one API over SQLite (embedded, one server) or a
//! PostgreSQL shared by several servers. It knows no domain area: callers bring their SQL,
//! their [`Migration`] lists and their lock and lease names.
//!
//! - [`MetadataUrl`] says where the metadata lives (`sqlite:PATH` or `postgresql://…`); a
//!   password never comes from it but from a [`PasswordSource`] the caller names.
//! - [`Db`] is a cheaply cloneable handle; [`Db::write`] and [`Db::read`] run a synchronous
//!   closure inside one transaction ([`Tx`]) and may be called from plain threads and from
//!   inside a tokio runtime (multi-thread or current-thread) alike.
//! - SQL is written once with `?1, ?2, …` placeholders; see [`sql`] for the portable subset.
//! - [`Migration`] lists are applied in order under a lock; a schema newer than the binary
//!   is refused ([`Error::SchemaNewer`]).
//! - Servers sharing a PostgreSQL coordinate with [`Tx::lock_exclusive`], [`Tx::try_lock`],
//!   [`Tx::query_claim`] (queues) and leases ([`Tx::acquire_lease`]).

mod db;
mod error;
mod lease;
mod migrate;
mod pg;
pub mod sql;
mod sqlite;
#[cfg(feature = "test-support")]
pub mod testing;
mod url;
mod value;

pub use db::{Backend, ClockSkew, Db, DbOptions, Tx};
pub use error::{Error, Result};
pub use lease::Lease;
pub use migrate::{Migration, MigrationReport};
pub use url::{MetadataUrl, PasswordSource, PgHost, PgTarget};
pub use value::{FromValue, Row, Value};
