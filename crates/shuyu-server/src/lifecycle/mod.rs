//! The lifecycle area: a tenant's holds, exit reports and drills (records) and the
//! `LifecycleService` that suspends, stops, terminates and sweeps.

pub(crate) mod records;
pub(crate) mod rpc;
