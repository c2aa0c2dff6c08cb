//! The governance area: authorizations, emergency plans, qualifications, certificate
//! revocations and disabled principals (records and gates), and the `GovernanceService`.

pub(crate) mod records;
pub(crate) mod rpc;
