//! Calls a unary RPC in-process through the gRPC service stack, framed exactly as a gRPC
//! client would send it over HTTP/2, and reads back the message or the status.

use base64::Engine;
use bytes::{Buf, Bytes};
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, Version, header};
use http_body_util::{BodyExt, Full};
use percent_encoding::percent_decode;
use tonic::{Code, body::Body};
use tower::{Service, ServiceExt};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Length of the gRPC message prefix: one compression flag byte and a big-endian u32 length.
const FRAME_HEADER_BYTES: usize = 5;

/// REST request headers that describe the HTTP exchange itself rather than the call, so
/// they are not forwarded as gRPC metadata.
const HOP_HEADERS: [HeaderName; 9] = [
    header::ACCEPT,
    header::ACCEPT_ENCODING,
    header::CONNECTION,
    header::CONTENT_LENGTH,
    header::CONTENT_TYPE,
    header::HOST,
    header::TE,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// A non-OK gRPC status as it arrived in the response headers or trailers.
#[derive(Debug, Clone)]
pub struct RpcStatus {
    pub code: Code,
    pub message: String,
    /// Encoded `google.rpc.Status` from `grpc-status-details-bin`; empty when absent.
    pub details: Bytes,
}

/// Result of a unary call that completed as a gRPC exchange.
#[derive(Debug)]
pub enum UnaryOutcome {
    /// The encoded response message.
    Message(Bytes),
    Failed(RpcStatus),
}

/// Failure of the in-process exchange itself, as opposed to an RPC that returned an error
/// status. Each variant is a server fault.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("the gRPC service failed: {0}")]
    Service(BoxError),
    #[error("reading the gRPC response body failed: {0}")]
    Body(BoxError),
    #[error("the gRPC response is malformed: {0}")]
    Malformed(String),
}

/// Builds the gRPC request for `grpc_path` carrying `message`. Headers of the REST request
/// become metadata, except the ones that describe the HTTP exchange and any `grpc-*` header
/// other than `grpc-timeout`. The extensions (such as the peer address that tonic records)
/// are kept, so handlers see a REST call as they see a gRPC call.
pub fn grpc_request(grpc_path: &str, message: Vec<u8>, rest_headers: &HeaderMap, extensions: http::Extensions) -> Request<Body> {
    let mut frame = Vec::with_capacity(FRAME_HEADER_BYTES + message.len());
    frame.push(0);
    frame.extend_from_slice(&u32::try_from(message.len()).unwrap_or(u32::MAX).to_be_bytes());
    frame.extend_from_slice(&message);

    let mut request = Request::new(Body::new(Full::new(Bytes::from(frame))));
    *request.method_mut() = http::Method::POST;
    *request.uri_mut() = grpc_path.parse().expect("gRPC paths built from descriptor names are valid URIs");
    // tonic-web passes HTTP/2 requests through unchanged and rejects other HTTP/1 requests.
    *request.version_mut() = Version::HTTP_2;
    *request.extensions_mut() = extensions;

    let headers = request.headers_mut();
    for (name, value) in rest_headers {
        let is_grpc = name.as_str().starts_with("grpc-") && name.as_str() != "grpc-timeout";
        if !is_grpc && !HOP_HEADERS.contains(name) {
            headers.append(name.clone(), value.clone());
        }
    }
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    headers.insert(header::TE, HeaderValue::from_static("trailers"));
    request
}

/// Sends `request` to `service` and waits for the whole response.
pub async fn call_unary<S, B>(service: S, request: Request<Body>) -> Result<UnaryOutcome, CallError>
where
    S: Service<Request<Body>, Response = Response<B>>,
    S::Error: Into<BoxError>,
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    let response = service.oneshot(request).await.map_err(|error| CallError::Service(error.into()))?;
    let (parts, body) = response.into_parts();
    if parts.status != http::StatusCode::OK {
        return Err(CallError::Malformed(format!("HTTP status {}", parts.status)));
    }
    // A trailers-only response carries the status in the headers.
    if let Some(status) = status_from(&parts.headers)? {
        return Ok(outcome_without_message(status));
    }

    let collected = body.collect().await.map_err(|error| CallError::Body(error.into()))?;
    let status = match collected.trailers() {
        Some(trailers) => status_from(trailers)?,
        None => None,
    };
    let Some(status) = status else {
        return Err(CallError::Malformed("no grpc-status in the headers or trailers".to_owned()));
    };
    if status.code != Code::Ok {
        return Ok(UnaryOutcome::Failed(status));
    }
    message_from_frame(collected.to_bytes()).map(UnaryOutcome::Message)
}

fn outcome_without_message(status: RpcStatus) -> UnaryOutcome {
    if status.code == Code::Ok {
        // A unary RPC that succeeds without a message gets an empty message.
        UnaryOutcome::Message(Bytes::new())
    } else {
        UnaryOutcome::Failed(status)
    }
}

/// Reads `grpc-status`, `grpc-message` and `grpc-status-details-bin`.
fn status_from(headers: &HeaderMap) -> Result<Option<RpcStatus>, CallError> {
    let Some(code) = headers.get("grpc-status") else {
        return Ok(None);
    };
    let code = code
        .to_str()
        .ok()
        .and_then(|code| code.parse::<i32>().ok())
        .map(Code::from_i32)
        .ok_or_else(|| CallError::Malformed(format!("grpc-status {code:?} is not a number")))?;
    let message =
        headers.get("grpc-message").map(|message| percent_decode(message.as_bytes()).decode_utf8_lossy().into_owned()).unwrap_or_default();
    let details = match headers.get("grpc-status-details-bin") {
        Some(encoded) => {
            base64::engine::general_purpose::STANDARD_PAD_INDIFFERENT.decode(encoded.as_bytes()).map(Bytes::from).unwrap_or_else(|error| {
                tracing::warn!(%error, "grpc-status-details-bin is not valid base64; details dropped");
                Bytes::new()
            })
        }
        None => Bytes::new(),
    };
    Ok(Some(RpcStatus { code, message, details }))
}

/// Extracts the one message of a unary response body.
fn message_from_frame(mut body: Bytes) -> Result<Bytes, CallError> {
    if body.len() < FRAME_HEADER_BYTES {
        return Err(CallError::Malformed(format!("the body has {} bytes, fewer than a frame header", body.len())));
    }
    let compressed = body.get_u8();
    let length = body.get_u32() as usize;
    if compressed != 0 {
        return Err(CallError::Malformed("the message is compressed, but none was requested".to_owned()));
    }
    if body.len() != length {
        return Err(CallError::Malformed(format!(
            "the frame announces {length} bytes, but {} follow; a unary response has one message",
            body.len()
        )));
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rest_headers_become_metadata_without_hop_headers() {
        let mut rest_headers = HeaderMap::new();
        rest_headers.insert("authorization", HeaderValue::from_static("Bearer t"));
        rest_headers.insert("content-type", HeaderValue::from_static("application/json"));
        rest_headers.insert("content-length", HeaderValue::from_static("12"));
        rest_headers.insert("grpc-encoding", HeaderValue::from_static("gzip"));
        rest_headers.insert("grpc-timeout", HeaderValue::from_static("5S"));

        let request = grpc_request("/p.S/M", vec![1, 2], &rest_headers, http::Extensions::new());
        let headers = request.headers();
        assert_eq!(headers["authorization"], "Bearer t");
        assert_eq!(headers["content-type"], "application/grpc");
        assert_eq!(headers["grpc-timeout"], "5S");
        assert!(headers.get("content-length").is_none());
        assert!(headers.get("grpc-encoding").is_none());
        assert_eq!(request.uri().path(), "/p.S/M");
    }

    #[test]
    fn frames_must_hold_exactly_one_message() {
        assert_eq!(message_from_frame(Bytes::from_static(&[0, 0, 0, 0, 2, 7, 8])).unwrap(), Bytes::from_static(&[7, 8]));
        assert!(message_from_frame(Bytes::from_static(&[0, 0, 0, 0, 3, 7, 8])).is_err());
        assert!(message_from_frame(Bytes::from_static(&[1, 0, 0, 0, 1, 7])).is_err());
        assert!(message_from_frame(Bytes::from_static(&[0, 0])).is_err());
    }

    #[test]
    fn status_headers_are_decoded() {
        let mut headers = HeaderMap::new();
        headers.insert("grpc-status", HeaderValue::from_static("5"));
        headers.insert("grpc-message", HeaderValue::from_static("connector%20a%2Fb%20not%20found"));
        let status = status_from(&headers).unwrap().unwrap();
        assert_eq!(status.code, Code::NotFound);
        assert_eq!(status.message, "connector a/b not found");
        assert!(status.details.is_empty());
    }
}
