//! The jobs area: submission, the lab/production split and promotion, the fair scheduler,
//! the worker processes, what a production job tells its engineer, and the plan texts
//! reviewers read.

pub(crate) mod oracle;
pub(crate) mod plan_texts;
pub(crate) mod records;
pub(crate) mod rpc;
pub(crate) mod runtime;
pub(crate) mod scheduler;
pub(crate) mod worker;

/// What the `JobService`, the dispatcher and the workers work with: the call protocol, the parts they use and their config slice.
#[derive(Debug, Clone)]
pub(crate) struct Context {
    /// The call protocol.
    pub(crate) calls: crate::state::Calls,
    /// The engine with the domain-wide envelope.
    pub(crate) engine: shuyu_engine::Engine,
    /// Jobs, scenarios, datasets, budgets.
    pub(crate) store: crate::store::Store,
    /// Dataset, pseudonym and result keys.
    pub(crate) keys: std::sync::Arc<crate::keys::KeyStore>,
    /// Datasets read and results written.
    pub(crate) storage: shuyu_engine::Storage,
    /// Limits and disclosure.
    pub(crate) policy: std::sync::Arc<shuyu_policy::Policy>,
    /// The fair queue and live progress.
    pub(crate) scheduler: std::sync::Arc<crate::jobs::scheduler::Scheduler>,
    /// This server among those sharing the domain.
    pub(crate) presence: crate::presence::Presence,
    /// Worker processes between jobs.
    pub(crate) workers: std::sync::Arc<crate::jobs::worker::WorkerPool>,
    /// `[worker]`.
    pub(crate) worker: crate::config::WorkerConfig,
    /// `[lab]`: rows a lab job sees.
    pub(crate) lab: crate::config::LabConfig,
    /// `[jobs]`: the failed-production-job allowance.
    pub(crate) jobs: crate::jobs::oracle::JobsConfig,
    /// `[privacy]`: default epsilon.
    pub(crate) privacy: crate::config::PrivacyConfig,
}
