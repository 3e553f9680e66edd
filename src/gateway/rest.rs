//! Handles one REST request: finds its binding, transcodes the JSON into the protobuf
//! request, calls the RPC through the gRPC service stack, and transcodes the reply.

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use prost::Message as _;
use prost_reflect::{DescriptorPool, DynamicMessage, SerializeOptions};
use tonic::{Code, body::Body};
use tower::Service;

use super::{
    error::{bad_request, error_response, json_response, rpc_status_response},
    grpc_call::{self, UnaryOutcome},
    http_rule::{self, Binding, BindingError},
    request::{self, RequestError},
    router::{RouteMatch, Router},
};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Longest excerpt of a request path that an error message repeats.
const MAX_SHOWN_PATH_CHARS: usize = 200;

/// The REST side of the gateway: the routes and the pool that their messages come from.
#[derive(Debug)]
pub struct RestGateway {
    router: Router,
    pool: DescriptorPool,
    max_body_bytes: usize,
}

impl RestGateway {
    /// Builds the routes of `service_names` from the `google.api.http` rules in `pool`. The
    /// pool must also hold every type that can appear in an `Any` of a request or response.
    pub fn new(pool: DescriptorPool, service_names: &[&str], max_body_bytes: usize) -> Result<Self, BindingError> {
        let router = Router::new(http_rule::bindings(&pool, service_names)?);
        for binding in router.bindings() {
            tracing::debug!(method = %binding.method, path = %binding.template, rpc = binding.rpc.full_name(), "REST route");
        }
        Ok(Self { router, pool, max_body_bytes })
    }

    pub fn router(&self) -> &Router {
        &self.router
    }

    /// Answers a REST request; every failure becomes a JSON error response.
    pub async fn handle<S, B>(&self, request: Request<Body>, service: S) -> Response<Body>
    where
        S: Service<Request<Body>, Response = Response<B>>,
        S::Error: Into<BoxError>,
        B: http_body::Body<Data = Bytes>,
        B::Error: Into<BoxError>,
    {
        let (parts, body) = request.into_parts();
        let (binding, captures) = match self.router.find(&parts.method, parts.uri.path()) {
            RouteMatch::Found(binding, captures) => (binding, captures),
            RouteMatch::MethodNotAllowed(allowed) => return method_not_allowed(&parts.method, parts.uri.path(), &allowed),
            RouteMatch::NotFound => return not_found(&parts.method, parts.uri.path()),
        };
        let body = match read_body(body, &parts.headers, self.max_body_bytes).await {
            Ok(body) => body,
            Err(response) => return response,
        };

        let decoded = match request::decode(binding, captures, parts.uri.query(), &body) {
            Ok(decoded) => decoded,
            Err(error) => return request_error_response(binding, error),
        };
        if !decoded.ignored.is_empty() {
            tracing::debug!(rpc = binding.rpc.full_name(), ignored = ?decoded.ignored, "unknown REST request fields ignored");
        }
        let grpc_request =
            grpc_call::grpc_request(&binding.grpc_path(), decoded.message.encode_to_vec(), &parts.headers, parts.extensions);

        match grpc_call::call_unary(service, grpc_request).await {
            Ok(UnaryOutcome::Message(message)) => self.message_response(binding, message),
            Ok(UnaryOutcome::Failed(status)) => rpc_status_response(&self.pool, &status),
            Err(error) => {
                tracing::error!(rpc = binding.rpc.full_name(), %error, "REST call failed in the gateway");
                internal_error()
            }
        }
    }

    /// Transcodes a response message to proto3 JSON: lowerCamel names, default values
    /// omitted, enums by name, `Any` with `@type` resolved through the pool.
    fn message_response(&self, binding: &Binding, encoded: Bytes) -> Response<Body> {
        let message = match DynamicMessage::decode(binding.rpc.output(), encoded) {
            Ok(message) => message,
            Err(error) => {
                tracing::error!(rpc = binding.rpc.full_name(), %error, "the RPC returned a message that does not decode");
                return internal_error();
            }
        };
        match to_json(binding, &message) {
            Ok(json) => json_response(StatusCode::OK, &json),
            Err(error) => {
                tracing::error!(rpc = binding.rpc.full_name(), %error, "the RPC response cannot be written as JSON");
                internal_error()
            }
        }
    }
}

fn to_json(binding: &Binding, message: &DynamicMessage) -> Result<serde_json::Value, serde_json::Error> {
    let options = SerializeOptions::new();
    let json = message.serialize_with_options(serde_json::value::Serializer, &options)?;
    let Some(field) = &binding.response_body else {
        return Ok(json);
    };
    if let serde_json::Value::Object(mut object) = json
        && let Some(value) = object.remove(field.json_name())
    {
        return Ok(value);
    }
    // The field holds its default value, which the first pass left out.
    let with_defaults = message.serialize_with_options(serde_json::value::Serializer, &options.clone().skip_default_fields(false))?;
    Ok(with_defaults.get(field.json_name()).cloned().unwrap_or(serde_json::Value::Null))
}

/// Reads the whole body, rejecting one longer than `max_bytes` with 413.
async fn read_body(body: Body, headers: &HeaderMap, max_bytes: usize) -> Result<Bytes, Response<Body>> {
    let declared_length = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|length| length.to_str().ok())
        .and_then(|length| length.parse::<u64>().ok());
    if declared_length.is_some_and(|length| length > max_bytes as u64) {
        return Err(body_too_large(max_bytes));
    }
    match Limited::new(body, max_bytes).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.downcast_ref::<LengthLimitError>().is_some() => Err(body_too_large(max_bytes)),
        Err(error) => {
            tracing::debug!(%error, "reading a REST request body failed");
            Err(error_response(
                StatusCode::BAD_REQUEST,
                Code::InvalidArgument,
                &format!("reading the request body failed: {error}"),
                Vec::new(),
            ))
        }
    }
}

fn request_error_response(binding: &Binding, error: RequestError) -> Response<Body> {
    tracing::debug!(rpc = binding.rpc.full_name(), %error, "REST request rejected");
    match error {
        RequestError::InvalidField { field, description } => bad_request(&field, &description),
        error => error_response(StatusCode::BAD_REQUEST, Code::InvalidArgument, &error.to_string(), Vec::new()),
    }
}

fn body_too_large(max_bytes: usize) -> Response<Body> {
    error_response(
        StatusCode::PAYLOAD_TOO_LARGE,
        Code::ResourceExhausted,
        &format!("the request body is larger than the limit of {max_bytes} bytes"),
        Vec::new(),
    )
}

fn not_found(method: &Method, path: &str) -> Response<Body> {
    tracing::debug!(%method, path, "no REST route");
    error_response(
        StatusCode::NOT_FOUND,
        Code::NotFound,
        &format!("no REST route for {method} {}", quoted_path(path)),
        Vec::new(),
    )
}

fn method_not_allowed(method: &Method, path: &str, allowed: &[Method]) -> Response<Body> {
    let allowed: Vec<&str> = allowed.iter().map(Method::as_str).collect();
    let mut response = error_response(
        StatusCode::METHOD_NOT_ALLOWED,
        Code::Unimplemented,
        &format!(
            "{method} is not allowed on {}; use {}",
            quoted_path(path),
            allowed.join(" or ")
        ),
        Vec::new(),
    );
    if let Ok(value) = HeaderValue::from_str(&allowed.join(", ")) {
        response.headers_mut().insert(header::ALLOW, value);
    }
    response
}

/// Quotes a request path for an error message, cut to [`MAX_SHOWN_PATH_CHARS`].
fn quoted_path(path: &str) -> String {
    if path.chars().count() <= MAX_SHOWN_PATH_CHARS {
        return format!("{path:?}");
    }
    let head: String = path.chars().take(MAX_SHOWN_PATH_CHARS).collect();
    format!("{head:?}…")
}

fn internal_error() -> Response<Body> {
    error_response(
        StatusCode::INTERNAL_SERVER_ERROR,
        Code::Internal,
        "internal error; the server log has the details",
        Vec::new(),
    )
}
