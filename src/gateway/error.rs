//! REST error responses: a JSON `google.rpc.Status` body with the HTTP status that
//! `google/rpc/code.proto` documents for each gRPC code.

use http::{HeaderValue, Response, StatusCode, header};
use prost::Message as _;
use prost_reflect::{DescriptorPool, DynamicMessage, SerializeOptions, Value};
use serde_json::json;
use tonic::{Code, body::Body};

use super::grpc_call::RpcStatus;

/// Type URL of the `google.rpc.BadRequest` detail.
pub const BAD_REQUEST_TYPE_URL: &str = "type.googleapis.com/google.rpc.BadRequest";

/// Maps a gRPC code to the HTTP status of the REST response.
pub fn http_status(code: Code) -> StatusCode {
    match code {
        Code::Ok => StatusCode::OK,
        Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => StatusCode::BAD_REQUEST,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::Cancelled => StatusCode::from_u16(499).expect("499 is a valid status code"),
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::Unknown | Code::Internal | Code::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// Converts the status of a failed RPC into its REST response. Details are rendered as
/// proto3 JSON `Any` values with `@type`; a detail whose type the pool lacks is dropped
/// with a warning.
pub fn rpc_status_response(pool: &DescriptorPool, status: &RpcStatus) -> Response<Body> {
    let details = if status.details.is_empty() { Vec::new() } else { render_details(pool, &status.details) };
    error_response(http_status(status.code), status.code, &status.message, details)
}

/// Builds a JSON `google.rpc.Status` response. Unlike message responses, all three fields
/// are always present, so clients can read them without defaults.
pub fn error_response(http_status: StatusCode, code: Code, message: &str, details: Vec<serde_json::Value>) -> Response<Body> {
    let body = json!({ "code": code as i32, "message": message, "details": details });
    json_response(http_status, &body)
}

/// Builds an `INVALID_ARGUMENT` response with one `google.rpc.BadRequest` field violation.
pub fn bad_request(field: &str, description: &str) -> Response<Body> {
    let detail = json!({
        "@type": BAD_REQUEST_TYPE_URL,
        "fieldViolations": [{ "field": field, "description": description }],
    });
    error_response(StatusCode::BAD_REQUEST, Code::InvalidArgument, &format!("{field}: {description}"), vec![detail])
}

/// Serializes `body` as the response with `Content-Type: application/json`.
pub fn json_response(status: StatusCode, body: &serde_json::Value) -> Response<Body> {
    let bytes = serde_json::to_vec(body).expect("serde_json values always serialize");
    let mut response = Response::new(Body::new(http_body_util::Full::new(bytes::Bytes::from(bytes))));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

fn render_details(pool: &DescriptorPool, encoded_status: &[u8]) -> Vec<serde_json::Value> {
    let status = match tonic_types::pb::Status::decode(encoded_status) {
        Ok(status) => status,
        Err(error) => {
            tracing::warn!(%error, "grpc-status-details-bin is not a google.rpc.Status; details dropped");
            return Vec::new();
        }
    };
    let Some(any_type) = pool.get_message_by_name("google.protobuf.Any") else {
        return Vec::new();
    };
    status
        .details
        .into_iter()
        .filter_map(|detail| {
            let type_url = detail.type_url.clone();
            let mut any = DynamicMessage::new(any_type.clone());
            any.set_field_by_name("type_url", Value::String(detail.type_url));
            any.set_field_by_name("value", Value::Bytes(detail.value.into()));
            any.serialize_with_options(serde_json::value::Serializer, &SerializeOptions::new())
                .inspect_err(|error| tracing::warn!(%type_url, %error, "error detail cannot be rendered as JSON; dropped"))
                .ok()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use tonic_types::{ErrorDetails, StatusExt};

    use super::*;
    use crate::gateway::descriptors;

    #[test]
    fn codes_map_to_the_documented_http_statuses() {
        let expected = [
            (Code::InvalidArgument, 400),
            (Code::FailedPrecondition, 400),
            (Code::OutOfRange, 400),
            (Code::Unauthenticated, 401),
            (Code::PermissionDenied, 403),
            (Code::NotFound, 404),
            (Code::AlreadyExists, 409),
            (Code::Aborted, 409),
            (Code::ResourceExhausted, 429),
            (Code::Cancelled, 499),
            (Code::Unknown, 500),
            (Code::Internal, 500),
            (Code::DataLoss, 500),
            (Code::Unimplemented, 501),
            (Code::Unavailable, 503),
            (Code::DeadlineExceeded, 504),
        ];
        for (code, status) in expected {
            assert_eq!(http_status(code).as_u16(), status, "{code:?}");
        }
    }

    #[test]
    fn bad_request_details_render_with_their_type() {
        let pool = descriptors::gateway_pool(DescriptorPool::decode(crate::pb::FILE_DESCRIPTOR_SET).unwrap()).unwrap();
        let status = tonic::Status::with_error_details(
            Code::InvalidArgument,
            "bad",
            ErrorDetails::with_bad_request_violation("app_id", "is required"),
        );
        let details = render_details(&pool, status.details());
        assert_eq!(
            details,
            [json!({
                "@type": BAD_REQUEST_TYPE_URL,
                "fieldViolations": [{"field": "app_id", "description": "is required"}]
            })]
        );
    }
}
