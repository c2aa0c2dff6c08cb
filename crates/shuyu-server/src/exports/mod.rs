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
