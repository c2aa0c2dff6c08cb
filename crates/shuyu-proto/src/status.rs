//! Machine-readable error details on a gRPC status: a `google.rpc.Status` whose details
//! hold one `google.rpc.ErrorInfo` (domain [`ERROR_DOMAIN`], a stable SCREAMING_SNAKE_CASE
//! reason), carried in the `grpc-status-details-bin` trailer as `tonic-types` writes it.
//!
//! The three messages are written by hand (they are stable Google API types) so that the
//! server and the client share them without another dependency.

use std::collections::HashMap;

/// The `ErrorInfo.domain` of every status the server sends.
pub const ERROR_DOMAIN: &str = "shuyu.v1";

/// The `Any.type_url` of an `ErrorInfo`.
pub const ERROR_INFO_TYPE_URL: &str = "type.googleapis.com/google.rpc.ErrorInfo";

/// `google.rpc.ErrorInfo`: why a call failed, as a stable reason within a domain.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct ErrorInfo {
    /// The reason, e.g. `TENANT_SUSPENDED`; stable, matched by clients and tests.
    #[prost(string, tag = "1")]
    pub reason: String,
    /// The reason's domain ([`ERROR_DOMAIN`]).
    #[prost(string, tag = "2")]
    pub domain: String,
    /// Further context (none is sent today).
    #[prost(map = "string, string", tag = "3")]
    pub metadata: HashMap<String, String>,
}

/// `google.protobuf.Any`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
struct Any {
    #[prost(string, tag = "1")]
    type_url: String,
    #[prost(bytes = "vec", tag = "2")]
    value: Vec<u8>,
}

/// `google.rpc.Status`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
    #[prost(message, repeated, tag = "3")]
    details: Vec<Any>,
}

/// A status of `code` and `message` whose details carry an `ErrorInfo` with `reason` in
/// [`ERROR_DOMAIN`].
pub fn status_with_reason(
    code: tonic::Code,
    message: impl Into<String>,
    reason: &str,
) -> tonic::Status {
    use prost::Message as _;
    let message = message.into();
    let info = ErrorInfo {
        reason: reason.to_owned(),
        domain: ERROR_DOMAIN.to_owned(),
        metadata: HashMap::new(),
    };
    let details = RpcStatus {
        code: code as i32,
        message: message.clone(),
        details: vec![Any {
            type_url: ERROR_INFO_TYPE_URL.to_owned(),
            value: info.encode_to_vec(),
        }],
    };
    tonic::Status::with_details(
        code,
        message,
        tonic::codegen::Bytes::from(details.encode_to_vec()),
    )
}

/// The `ErrorInfo` in a status's details, if it carries one.
pub fn error_info(status: &tonic::Status) -> Option<ErrorInfo> {
    use prost::Message as _;
    let details = RpcStatus::decode(status.details()).ok()?;
    details
        .details
        .iter()
        .find(|any| any.type_url == ERROR_INFO_TYPE_URL)
        .and_then(|any| ErrorInfo::decode(any.value.as_slice()).ok())
}

/// The stable reason of a status the server sent (its `ErrorInfo` in [`ERROR_DOMAIN`]).
pub fn error_reason(status: &tonic::Status) -> Option<String> {
    error_info(status)
        .filter(|info| info.domain == ERROR_DOMAIN)
        .map(|info| info.reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reason_survives_the_status_details() {
        let status = status_with_reason(tonic::Code::FailedPrecondition, "held", "TENANT_HELD");
        assert_eq!(status.code(), tonic::Code::FailedPrecondition);
        assert_eq!(status.message(), "held");
        assert_eq!(error_reason(&status).as_deref(), Some("TENANT_HELD"));
        // Through the wire form (the trailers tonic writes and reads).
        let back =
            tonic::Status::from_header_map(status.clone().into_http::<()>().headers()).unwrap();
        assert_eq!(error_reason(&back).as_deref(), Some("TENANT_HELD"));
        assert_eq!(error_reason(&tonic::Status::internal("x")), None);
    }
}
