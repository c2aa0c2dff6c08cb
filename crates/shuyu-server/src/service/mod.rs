//! The gRPC services of `shuyu.v1`. One `Api` value implements every service trait; each
//! method follows the protocol of [`crate::state::AppState`]: begin (authenticate, authorise),
//! work, finish (audit, answer).

mod admin;
mod catalog;
mod delivery;
mod export_tasks;
mod exports;
mod flight;
mod governance;
mod jobs;
mod lifecycle;
mod oversight;
mod scenarios;
mod stewardship;

use std::sync::Arc;

use crate::error::{Result, ServerError};
use crate::state::AppState;

pub use jobs::{dispatch_forever, recover_interrupted_jobs};
pub use lifecycle::sweep_overdue_forever;
pub use stewardship::sweep as stewardship_sweep;

/// The service implementation.
#[derive(Debug, Clone)]
pub struct Api {
    pub(crate) state: Arc<AppState>,
}

impl Api {
    /// Services over `state`.
    pub fn new(state: Arc<AppState>) -> Api {
        Api { state }
    }
}

/// Validates a required id field.
fn require_id(value: &str, what: &str) -> Result<()> {
    if value.is_empty()
        || value.len() > 64
        || !value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(ServerError::InvalidArgument(format!(
            "{what} is missing or malformed"
        )));
    }
    Ok(())
}

/// Validates free text: non-empty (when required), bounded, no control characters.
fn require_text(value: &str, what: &str, max_chars: usize, required: bool) -> Result<()> {
    let n = value.chars().count();
    if required && value.trim().is_empty() {
        return Err(ServerError::InvalidArgument(format!("{what} is required")));
    }
    if n > max_chars {
        return Err(ServerError::InvalidArgument(format!(
            "{what} is longer than {max_chars} characters"
        )));
    }
    if value
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return Err(ServerError::InvalidArgument(format!(
            "{what} contains control characters"
        )));
    }
    Ok(())
}
