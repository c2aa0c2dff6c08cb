//! The admin area: tenants, principals and their certificates, notifications read by their
//! audience, and the `SessionService`, `AdminService` and `AuditService`.

mod rpc;
