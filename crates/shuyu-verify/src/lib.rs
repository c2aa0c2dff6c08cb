//! Offline verifiers of what a Shuyu domain hands out: export packages (`package`), signed
//! checkpoints of the audit trail with their inclusion and consistency proofs (`checkpoint`),
//! and the hash chain of audit records (`audit`).
//!
//! Links neither DataFusion nor tonic, and no server: a recipient or an outside auditor
//! checks with it what the domain signed, holding only the domain's public signing key.

pub mod audit;
pub mod checkpoint;
mod error;
pub mod package;

pub use error::VerifyError;
