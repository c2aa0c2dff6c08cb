//! The audit area: the hash-chained trail, the decision rows bound to it, signed
//! checkpoints over it, retention per record class and the transport-level refusals it
//! records.

pub mod bindings;
pub mod checkpoint;
pub(crate) mod refusals;
pub(crate) mod retention;
pub mod trail;
pub(crate) mod tree;

pub use trail::VerifyReport;
pub use tree::verify_stored as verify_tree;
