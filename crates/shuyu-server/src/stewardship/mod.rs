//! The stewardship area: imports of a tenant's own data (R17), data-quality tickets (R18)
//! and risk stops (R19) — records, and the `StewardshipService` that decides on them.

pub(crate) mod records;
pub(crate) mod rpc;

/// What the `StewardshipService` and the ticket sweep work with: the call protocol, the parts they use and their config slice.
#[derive(Debug, Clone)]
pub(crate) struct Context {
    /// The call protocol.
    pub(crate) calls: crate::state::Calls,
    /// Imports, tickets, risk stops.
    pub(crate) store: crate::store::Store,
    /// Cancels the jobs of a stopped scenario.
    pub(crate) scheduler: std::sync::Arc<crate::jobs::scheduler::Scheduler>,
    /// Ingests a tenant's own data (R17).
    pub(crate) catalog: std::sync::Arc<crate::catalog::Context>,
    /// Which server runs the sweep.
    pub(crate) presence: crate::presence::Presence,
    /// `[stewardship]`: fix-by days.
    pub(crate) stewardship: crate::config::StewardshipConfig,
    /// `max_ingest_bytes`: the largest accepted import.
    pub(crate) max_ingest_bytes: usize,
}
