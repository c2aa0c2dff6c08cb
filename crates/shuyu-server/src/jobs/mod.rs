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
