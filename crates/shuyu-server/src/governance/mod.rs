//! The governance area: authorizations, emergency plans, qualifications, certificate
//! revocations and disabled principals (records and gates), and the `GovernanceService`.

pub(crate) mod records;
pub(crate) mod rpc;

/// What the `GovernanceService` and the renewal sweep work with: the call protocol, the parts they use and their config slice.
#[derive(Debug, Clone)]
pub(crate) struct Context {
    /// The call protocol.
    pub(crate) calls: crate::state::Calls,
    /// Authorizations, plans, qualifications, revocations.
    pub(crate) store: crate::store::Store,
    /// The master key (sealed emergency material).
    pub(crate) keys: std::sync::Arc<crate::keys::KeyStore>,
    /// Which server runs the sweep.
    pub(crate) presence: crate::presence::Presence,
    /// Ends a tenant whose last authorization closed.
    pub(crate) lifecycle: std::sync::Arc<crate::lifecycle::Context>,
    /// `[governance]`: terms and the sweep's period.
    pub(crate) governance: crate::config::GovernanceConfig,
}
