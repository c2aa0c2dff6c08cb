//! The admin area: tenants, principals and their certificates, notifications read by their
//! audience, and the `SessionService`, `AdminService` and `AuditService`.

pub(crate) mod records;
pub(crate) mod rpc;
