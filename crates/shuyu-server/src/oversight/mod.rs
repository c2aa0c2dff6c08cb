//! The oversight area: alerts over the trail, jobs and exports (R30), operation reports and
//! disclosure summaries (R34, R36), the periodic monitor, checkpoint and purge tasks, and
//! the `OversightService`.

pub(crate) mod alerts;
pub(crate) mod config;
pub(crate) mod reports;
pub(crate) mod rpc;
pub(crate) mod tasks;

/// What the `OversightService` and the monitor, checkpoint and purge tasks work with: the call protocol, the parts they use and their config slice.
#[derive(Debug, Clone)]
pub(crate) struct Context {
    /// The call protocol.
    pub(crate) calls: crate::state::Calls,
    /// The trail, alerts, reports.
    pub(crate) store: crate::store::Store,
    /// Where reports find the objects' root.
    pub(crate) storage: shuyu_engine::Storage,
    /// Signs checkpoints.
    pub(crate) signing: std::sync::Arc<shuyu_vault::SigningKey>,
    /// Which server runs each task.
    pub(crate) presence: crate::presence::Presence,
    /// `[oversight]`: periods, thresholds, retention.
    pub(crate) oversight: crate::oversight::config::OversightConfig,
}
