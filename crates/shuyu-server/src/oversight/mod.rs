//! The oversight area: alerts over the trail, jobs and exports (R30), operation reports and
//! disclosure summaries (R34, R36), the periodic monitor, checkpoint and purge tasks, and
//! the `OversightService`.

pub(crate) mod alerts;
pub(crate) mod config;
pub(crate) mod reports;
pub(crate) mod rpc;
pub(crate) mod tasks;
