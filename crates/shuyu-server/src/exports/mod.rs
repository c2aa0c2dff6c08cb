//! The exports area: export requests, the quorum review (R22), the product delivered to
//! its recipient (packages, downloads, Arrow Flight), tracing leaked copies, and the budget
//! for handling staged results.

pub(crate) mod delivery;
mod flight;
pub mod package;
pub(crate) mod records;
pub(crate) mod result_budget;
pub(crate) mod review;
pub(crate) mod rpc;
pub(crate) mod tasks;

/// What the `ExportService`, Flight and the export tasks work with: the call protocol, the parts they use and their config slice.
#[derive(Debug, Clone)]
pub(crate) struct Context {
    /// The call protocol.
    pub(crate) calls: crate::state::Calls,
    /// Exports, votes, the release ledger and products.
    pub(crate) store: crate::store::Store,
    /// Result and package keys.
    pub(crate) keys: std::sync::Arc<crate::keys::KeyStore>,
    /// Staged results and packages.
    pub(crate) storage: shuyu_engine::Storage,
    /// Opens packages (shared key caches).
    pub(crate) envelope: std::sync::Arc<shuyu_vault::Envelope>,
    /// Disclosure, review and limits.
    pub(crate) policy: std::sync::Arc<shuyu_policy::Policy>,
    /// Signs packages.
    pub(crate) signing: std::sync::Arc<shuyu_vault::SigningKey>,
    /// Worker processes the checks run in.
    pub(crate) workers: std::sync::Arc<crate::jobs::worker::WorkerPool>,
    /// Turns and caps for handling staged results.
    pub(crate) results: std::sync::Arc<crate::exports::result_budget::ResultBudget>,
    /// `[worker]`: how export tasks' workers run.
    pub(crate) worker: crate::config::WorkerConfig,
    /// `[exports]`: review rows and task timeouts.
    pub(crate) exports: crate::config::ExportsConfig,
    /// `[pricing]`: commercial products' rates (R24).
    pub(crate) pricing: crate::config::PricingConfig,
}
