//! Handles one REST request: finds its binding, transcodes the JSON into the protobuf
//! request, calls the RPC through the gRPC service stack, and transcodes the reply.

use crate::log_throttle::{LOG_INTERVAL, LogThrottle};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use prost::Message as _;
use prost_reflect::{DescriptorPool, DynamicMessage, SerializeOptions};
use tonic::{Code, body::Body};
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse, health_check_response::ServingStatus};
use tower::Service;

use super::{
    error::{bad_request, error_response, json_response, rpc_status_response},
    grpc_call::{self, RpcStatus, UnaryOutcome},
    http_rule::{self, Binding, BindingError},
    request::{self, RequestError},
    router::{RouteMatch, Router},
};

use crate::auth::AuthPolicy;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Path of the HTTP health check, for load balancers and probes that cannot use gRPC health.
pub const HEALTH_PATH: &str = "/healthz";

/// Maximum number of characters of a request path that an error message quotes.
const MAX_SHOWN_PATH_CHARS: usize = 200;

/// The REST side of the gateway: the routes and the pool that their messages come from.
#[derive(Debug)]
pub struct RestGateway {
    router: Router,
    pool: DescriptorPool,
    max_body_bytes: usize,
    auth: AuthPolicy,
}

impl RestGateway {
    /// Builds the routes of `service_names` from the `google.api.http` rules in `pool`. The
    /// pool must also hold every type that can appear in an `Any` of a request or response.
    pub fn new(pool: DescriptorPool, service_names: &[&str], max_body_bytes: usize, auth: AuthPolicy) -> Result<Self, BindingError> {
        let router = Router::new(http_rule::bindings(&pool, service_names)?);
        for binding in router.bindings() {
            tracing::debug!(method = %binding.method, path = %binding.template, rpc = binding.rpc.full_name(), "REST route");
        }
        Ok(Self { router, pool, max_body_bytes, auth })
    }

    pub fn router(&self) -> &Router {
        &self.router
    }

    /// Handles a REST request. Every failure becomes a JSON error response.
    pub async fn handle<S, B>(&self, request: Request<Body>, service: S) -> Response<Body>
    where
        S: Service<Request<Body>, Response = Response<B>>,
        S::Error: Into<BoxError>,
        B: http_body::Body<Data = Bytes>,
        B::Error: Into<BoxError>,
    {
        let (parts, body) = request.into_parts();
        if parts.uri.path() == HEALTH_PATH {
            if parts.method == Method::HEAD {
                // Checkers that send HEAD read only the status line.
                let (head, _) = health_response(service).await.into_parts();
                return Response::from_parts(head, Body::empty());
            }
            if parts.method == Method::GET {
                return health_response(service).await;
            }
        }
        let (binding, captures) = match self.router.find(&parts.method, parts.uri.path()) {
            RouteMatch::Found(binding, captures) => (binding, captures),
            RouteMatch::MethodNotAllowed(allowed) => return method_not_allowed(&parts.method, parts.uri.path(), &allowed),
            RouteMatch::NotFound => return not_found(&parts.method, parts.uri.path()),
        };
        // The auth layer checks the call again. Checking here first means that a caller
        // without a valid token gets no body errors and no body parsing.
        let authorization = parts.headers.get(header::AUTHORIZATION).and_then(|value| value.to_str().ok());
        if let Err(status) = self.auth.authorize(&binding.grpc_path(), authorization) {
            static LOG: LogThrottle = LogThrottle::new(LOG_INTERVAL);
            if let Some(rejected) = LOG.admit() {
                tracing::info!(path = %parts.uri.path(), code = ?status.code(), reason = status.message(), rejected, "REST call rejected by authentication");
            }
            let status = RpcStatus { code: status.code(), message: status.message().to_owned(), details: Bytes::new() };
            return rpc_status_response(&self.pool, &status);
        }
        let body = match read_body(body, &parts.headers, self.max_body_bytes, parts.uri.path()).await {
            Ok(body) => body,
            Err(response) => return response,
        };

        let decoded = match request::decode(binding, captures, parts.uri.query(), &body) {
            Ok(decoded) => decoded,
            Err(error) => return request_error_response(binding, error),
        };
        if !decoded.ignored.is_empty() {
            tracing::debug!(rpc = binding.rpc.full_name(), ignored = ?decoded.ignored, "REST request inputs ignored");
        }
        let grpc_request = grpc_call::grpc_request(&binding.grpc_path(), decoded.message.encode_to_vec(), &parts.headers, parts.extensions);

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
    let mut json = message.serialize_with_options(serde_json::value::Serializer, &options)?;
    write_integral_floats_as_integers(&mut json);
    let Some(field) = &binding.response_body else {
        return Ok(json);
    };
    if let serde_json::Value::Object(mut object) = json
        && let Some(value) = object.remove(field.json_name())
    {
        return Ok(value);
    }
    // The field has its default value, which the first pass left out.
    let with_defaults = message.serialize_with_options(serde_json::value::Serializer, &options.clone().skip_default_fields(false))?;
    Ok(with_defaults.get(field.json_name()).cloned().unwrap_or(serde_json::Value::Null))
}

/// Largest magnitude below which every integer is exactly representable as an f64 (2^53).
const MAX_EXACT_FLOAT_INTEGER: f64 = 9_007_199_254_740_992.0;

/// Rewrites floats without a fractional part, such as the numbers of a
/// `google.protobuf.Struct`, from `443.0` to `443`, as Go's protojson writes them. Both are
/// the same JSON number, but clients that parse integers strictly reject the first form.
fn write_integral_floats_as_integers(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Number(number) => {
            if let Some(float) = number.as_f64().filter(|_| number.is_f64())
                && float.fract() == 0.0
                && float.abs() < MAX_EXACT_FLOAT_INTEGER
            {
                *number = serde_json::Number::from(float as i64);
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(write_integral_floats_as_integers),
        serde_json::Value::Object(object) => object.values_mut().for_each(write_integral_floats_as_integers),
        _ => {}
    }
}

/// Returns the response to the HTTP health check, from the gRPC health service: 200 while
/// the connector service is SERVING, else 503. The body names the status, as
/// `{"status": "SERVING"}`.
async fn health_response<S, B>(service: S) -> Response<Body>
where
    S: Service<Request<Body>, Response = Response<B>>,
    S::Error: Into<BoxError>,
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    let check = HealthCheckRequest { service: crate::pb::connector_service_server::SERVICE_NAME.to_owned() };
    let request =
        grpc_call::grpc_request("/grpc.health.v1.Health/Check", check.encode_to_vec(), &HeaderMap::new(), http::Extensions::new());
    let status = match grpc_call::call_unary(service, request).await {
        Ok(UnaryOutcome::Message(message)) => match HealthCheckResponse::decode(message) {
            Ok(response) => response.status(),
            Err(error) => {
                tracing::error!(%error, "decoding the health check response failed");
                return internal_error();
            }
        },
        Ok(UnaryOutcome::Failed(status)) => {
            tracing::warn!(code = ?status.code, reason = %status.message, "the health check failed");
            ServingStatus::Unknown
        }
        Err(error) => {
            tracing::error!(%error, "the health check failed in the gateway");
            return internal_error();
        }
    };
    let http_status = if status == ServingStatus::Serving { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    json_response(http_status, &serde_json::json!({ "status": status.as_str_name() }))
}

/// Reads the whole body, rejecting one longer than `max_bytes` with 413.
async fn read_body(body: Body, headers: &HeaderMap, max_bytes: usize, path: &str) -> Result<Bytes, Response<Body>> {
    let declared_length =
        headers.get(header::CONTENT_LENGTH).and_then(|length| length.to_str().ok()).and_then(|length| length.parse::<u64>().ok());
    if declared_length.is_some_and(|length| length > max_bytes as u64) {
        return Err(body_too_large(max_bytes, path));
    }
    match Limited::new(body, max_bytes).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.downcast_ref::<LengthLimitError>().is_some() => Err(body_too_large(max_bytes, path)),
        Err(error) => {
            tracing::info!(path, %error, "reading a REST request body failed");
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
    tracing::info!(rpc = binding.rpc.full_name(), %error, "REST request rejected");
    match error {
        RequestError::InvalidField { field, description } => bad_request(&field, &description),
        error => error_response(StatusCode::BAD_REQUEST, Code::InvalidArgument, &error.to_string(), Vec::new()),
    }
}

fn body_too_large(max_bytes: usize, path: &str) -> Response<Body> {
    tracing::info!(path, max_bytes, "REST request body too large");
    error_response(
        StatusCode::PAYLOAD_TOO_LARGE,
        Code::ResourceExhausted,
        &format!("the request body is larger than the limit of {max_bytes} bytes"),
        Vec::new(),
    )
}

fn not_found(method: &Method, path: &str) -> Response<Body> {
    tracing::info!(%method, path, "no REST route");
    error_response(StatusCode::NOT_FOUND, Code::NotFound, &format!("no REST route for {method} {}", quoted_path(path)), Vec::new())
}

fn method_not_allowed(method: &Method, path: &str, allowed: &[Method]) -> Response<Body> {
    let allowed: Vec<&str> = allowed.iter().map(Method::as_str).collect();
    tracing::info!(%method, path, allowed = %allowed.join(","), "REST method not allowed");
    let mut response = error_response(
        StatusCode::METHOD_NOT_ALLOWED,
        Code::Unimplemented,
        &format!("{method} is not allowed on {}; use {}", quoted_path(path), allowed.join(" or ")),
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
    error_response(StatusCode::INTERNAL_SERVER_ERROR, Code::Internal, "internal error; the server log has the details", Vec::new())
}

#[cfg(test)]
mod tests {
    use std::{
        convert::Infallible,
        sync::{Arc, Mutex},
    };

    use http_body::Frame;
    use http_body_util::{Full, StreamBody};
    use serde_json::json;

    use super::*;
    use crate::{gateway::descriptors, pb};

    fn gateway(max_body_bytes: usize) -> RestGateway {
        let pool = descriptors::gateway_pool(DescriptorPool::decode(pb::FILE_DESCRIPTOR_SET).unwrap()).unwrap();
        RestGateway::new(pool, &[pb::connector_service_server::SERVICE_NAME], max_body_bytes, AuthPolicy::disabled()).unwrap()
    }

    fn get_request(body: Body) -> Request<Body> {
        Request::builder().uri("/api/v1/apps/app-1/connectors/c-1").body(body).unwrap()
    }

    /// Builds a gRPC response that carries its status in the headers, with no body.
    fn trailers_only(code: Code) -> Response<Body> {
        Response::builder()
            .header("content-type", "application/grpc")
            .header("grpc-status", (code as i32).to_string())
            .header("grpc-message", "stub%20failure")
            .body(Body::empty())
            .unwrap()
    }

    /// Builds a gRPC response with one message frame and the status in the trailers.
    fn with_trailers(message: &[u8], code: Code) -> Response<Body> {
        let mut frame = vec![0];
        frame.extend_from_slice(&(message.len() as u32).to_be_bytes());
        frame.extend_from_slice(message);
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", HeaderValue::from_str(&(code as i32).to_string()).unwrap());
        let frames = vec![Ok::<_, Infallible>(Frame::data(Bytes::from(frame))), Ok(Frame::trailers(trailers))];
        Response::new(Body::new(StreamBody::new(tokio_stream::iter(frames))))
    }

    async fn body_json(response: Response<Body>) -> serde_json::Value {
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[tokio::test]
    async fn every_error_code_maps_to_its_http_status() {
        let gateway = gateway(1024);
        let codes = [
            Code::Cancelled,
            Code::Unknown,
            Code::InvalidArgument,
            Code::DeadlineExceeded,
            Code::NotFound,
            Code::AlreadyExists,
            Code::PermissionDenied,
            Code::ResourceExhausted,
            Code::FailedPrecondition,
            Code::Aborted,
            Code::OutOfRange,
            Code::Unimplemented,
            Code::Internal,
            Code::Unavailable,
            Code::DataLoss,
            Code::Unauthenticated,
        ];
        for code in codes {
            let stub = tower::service_fn(move |_: Request<Body>| async move { Ok::<_, Infallible>(trailers_only(code)) });

            let response = gateway.handle(get_request(Body::empty()), stub).await;

            assert_eq!(response.status(), super::super::http_status(code), "{code:?}");
            assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
            assert_eq!(body_json(response).await, json!({"code": code as i32, "message": "stub failure", "details": []}), "{code:?}");
        }
    }

    #[tokio::test]
    async fn status_in_trailers_is_read() {
        let gateway = gateway(1024);
        let reply = pb::ConnectorServiceGetResponse {
            connector_view: Some(pb::ConnectorView {
                connector: Some(pb::Connector { id: "c-1".to_owned(), ..Default::default() }),
                ..Default::default()
            }),
            expanded: Vec::new(),
        }
        .encode_to_vec();
        let ok_reply = reply.clone();
        let ok = tower::service_fn(move |_: Request<Body>| {
            let reply = ok_reply.clone();
            async move { Ok::<_, Infallible>(with_trailers(&reply, Code::Ok)) }
        });
        let denied =
            tower::service_fn(move |_: Request<Body>| async move { Ok::<_, Infallible>(with_trailers(&[], Code::PermissionDenied)) });

        let success = gateway.handle(get_request(Body::empty()), ok).await;
        let failure = gateway.handle(get_request(Body::empty()), denied).await;

        assert_eq!(success.status(), StatusCode::OK);
        assert_eq!(body_json(success).await, json!({"connectorView": {"connector": {"id": "c-1"}}}));
        assert_eq!(failure.status(), StatusCode::FORBIDDEN);
    }

    #[tokio::test]
    async fn rest_request_reaches_the_stack_as_grpc() {
        let gateway = gateway(1024);
        let seen = Arc::new(Mutex::new(None));
        let recorder = {
            let seen = Arc::clone(&seen);
            tower::service_fn(move |request: Request<Body>| {
                let seen = Arc::clone(&seen);
                async move {
                    let (parts, body) = request.into_parts();
                    let bytes = body.collect().await.unwrap().to_bytes();
                    *seen.lock().unwrap() = Some((parts, bytes));
                    Ok::<_, Infallible>(trailers_only(Code::NotFound))
                }
            })
        };
        let request = Request::builder()
            .uri("/api/v1/apps/app-1/connectors/c-1")
            .header("authorization", "Bearer token")
            .body(Body::empty())
            .unwrap();

        gateway.handle(request, recorder).await;

        let (parts, bytes) = seen.lock().unwrap().take().expect("the stub was called");
        assert_eq!(parts.method, Method::POST);
        assert_eq!(parts.uri.path(), "/connectord.v1.ConnectorService/Get");
        assert_eq!(parts.headers[header::CONTENT_TYPE], "application/grpc");
        assert_eq!(parts.headers["authorization"], "Bearer token");
        let decoded = pb::ConnectorServiceGetRequest::decode(&bytes[5..]).unwrap();
        assert_eq!((decoded.app_id.as_str(), decoded.id.as_str()), ("app-1", "c-1"));
    }

    #[tokio::test]
    async fn body_without_length_over_limit_is_413() {
        let gateway = gateway(16);
        // Were the stack called, the response would be 500.
        let stub = tower::service_fn(|_: Request<Body>| async { Ok::<_, Infallible>(trailers_only(Code::Internal)) });
        let request = Request::builder()
            .method(Method::POST)
            .uri("/api/v1/apps/app-1/connectors")
            .body(Body::new(Full::new(Bytes::from(vec![b' '; 64]))))
            .unwrap();

        let response = gateway.handle(request, stub).await;

        assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(body_json(response).await["code"], json!(Code::ResourceExhausted as i32));
    }

    #[test]
    fn integral_floats_lose_their_fraction() {
        let mut value = json!({"a": 443.0, "b": [1.5, -2.0], "c": 7, "d": 1e300});
        write_integral_floats_as_integers(&mut value);
        assert_eq!(serde_json::to_string(&value).unwrap(), r#"{"a":443,"b":[1.5,-2],"c":7,"d":1e+300}"#);
    }
}
