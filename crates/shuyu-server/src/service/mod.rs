//! What the gRPC services of `shuyu.v1` share: request validation. Each service has its
//! own handler in its area's `rpc` module (`jobs::rpc::JobsRpc`, …); each method goes
//! through [`crate::state::Calls::call`]: authenticate, authorise, work, audit, answer.

use crate::error::{Result, ServerError};

/// Validates a required id field.
pub(crate) fn require_id(value: &str, what: &str) -> Result<()> {
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
pub(crate) fn require_text(
    value: &str,
    what: &str,
    max_chars: usize,
    required: bool,
) -> Result<()> {
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
