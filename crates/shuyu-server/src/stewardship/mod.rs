//! The stewardship area: imports of a tenant's own data (R17), data-quality tickets (R18)
//! and risk stops (R19) — records, and the `StewardshipService` that decides on them.

pub(crate) mod records;
pub(crate) mod rpc;
