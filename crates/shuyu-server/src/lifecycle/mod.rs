//! The lifecycle area: a tenant's holds, exit reports and drills (records) and the
//! `LifecycleService` that suspends, stops, terminates and sweeps.

pub(crate) mod records;
pub(crate) mod rpc;

/// What the `LifecycleService` and the overdue sweep work with: the call protocol, the parts they use and their config slice.
#[derive(Debug, Clone)]
pub(crate) struct Context {
    /// The call protocol.
    pub(crate) calls: crate::state::Calls,
    /// Holds, exit reports, drills.
    pub(crate) store: crate::store::Store,
    /// Keys destroyed at termination.
    pub(crate) keys: std::sync::Arc<crate::keys::KeyStore>,
    /// Opens results for exit reports.
    pub(crate) engine: shuyu_engine::Engine,
    /// Objects deleted at termination.
    pub(crate) storage: shuyu_engine::Storage,
    /// Forgets destroyed keys.
    pub(crate) envelope: std::sync::Arc<shuyu_vault::Envelope>,
    /// Signs exit reports.
    pub(crate) signing: std::sync::Arc<shuyu_vault::SigningKey>,
    /// Cancels a held tenant's jobs.
    pub(crate) scheduler: std::sync::Arc<crate::jobs::scheduler::Scheduler>,
    /// Which server runs the sweep.
    pub(crate) presence: crate::presence::Presence,
    /// Evicts a held tenant's kept workers.
    pub(crate) workers: std::sync::Arc<crate::jobs::worker::WorkerPool>,
    /// The exports area, to tell a leaked copy's kind (package or result).
    pub(crate) exports: std::sync::Arc<crate::exports::Context>,
    /// `[lifecycle]`: fix-by and notice periods.
    pub(crate) lifecycle: crate::config::LifecycleConfig,
}
