//! The scenarios area: applications for production scenarios and their approvals
//! (R11, R12), served by the `ScenarioService`.

pub(crate) mod records;
pub(crate) mod rpc;
