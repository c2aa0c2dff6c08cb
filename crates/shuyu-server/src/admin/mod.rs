//! The admin area: tenants, principals and their certificates, notifications read by their
//! audience, and the `SessionService`, `AdminService` and `AuditService`.

pub(crate) mod records;
pub(crate) mod rpc;

/// What the `SessionService`, `AdminService` and `AuditService` work with: the call protocol, the parts they use and their config slice.
#[derive(Debug, Clone)]
pub(crate) struct Context {
    /// The call protocol.
    pub(crate) calls: crate::state::Calls,
    /// Tenants, principals, certificates and the trail.
    pub(crate) store: crate::store::Store,
    /// Tenant keys (made with a tenant).
    pub(crate) keys: std::sync::Arc<crate::keys::KeyStore>,
    /// The domain CA that signs principals' certificates.
    pub(crate) ca: std::sync::Arc<crate::tls::CaMaterial>,
    /// `[lab]`: a new tenant's default lab period.
    pub(crate) lab: crate::config::LabConfig,
}
