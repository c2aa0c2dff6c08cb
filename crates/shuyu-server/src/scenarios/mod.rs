//! The scenarios area: applications for production scenarios and their approvals
//! (R11, R12), served by the `ScenarioService`.

pub(crate) mod records;
pub(crate) mod rpc;

/// What the `ScenarioService` work with: the call protocol, the parts they use and their config slice.
#[derive(Debug, Clone)]
pub(crate) struct Context {
    /// The call protocol.
    pub(crate) calls: crate::state::Calls,
    /// Scenarios and their approvals.
    pub(crate) store: crate::store::Store,
}
