//! The tower layer that splits traffic on the shared port: gRPC and gRPC-Web requests go
//! to the inner stack unchanged, everything else is a REST request for [`RestGateway`].

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use bytes::Bytes;
use http::{Request, Response, header};
use tonic::body::Body;
use tower::{Layer, Service};

use super::rest::RestGateway;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Wraps a gRPC service stack with the REST gateway.
#[derive(Debug, Clone)]
pub struct GatewayLayer {
    gateway: Arc<RestGateway>,
}

impl GatewayLayer {
    pub fn new(gateway: RestGateway) -> Self {
        Self { gateway: Arc::new(gateway) }
    }
}

impl<S> Layer<S> for GatewayLayer {
    type Service = GatewayService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GatewayService { inner, gateway: Arc::clone(&self.gateway) }
    }
}

/// See [`GatewayLayer`]. A REST request reaches the inner service as an in-process gRPC
/// call, so it passes the same layers and handlers as a call from a gRPC client.
#[derive(Debug, Clone)]
pub struct GatewayService<S> {
    inner: S,
    gateway: Arc<RestGateway>,
}

impl<S, B> Service<Request<Body>> for GatewayService<S>
where
    S: Service<Request<Body>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError> + Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, S::Error>> + Send>>;

    fn poll_ready(&mut self, context: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(context)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        if is_grpc(&request) {
            let future = self.inner.call(request);
            return Box::pin(async move { future.await.map(|response| response.map(Body::new)) });
        }
        // The REST call waits for its body before it calls the stack, so it takes a clone
        // and drives that clone's readiness itself.
        let service = self.inner.clone();
        let gateway = Arc::clone(&self.gateway);
        Box::pin(async move { Ok(gateway.handle(request, service).await) })
    }
}

/// True for `application/grpc`, `application/grpc+proto`, `application/grpc-web` and the
/// other gRPC content types.
fn is_grpc<B>(request: &Request<B>) -> bool {
    request
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|value| value.as_bytes().get(..16).is_some_and(|prefix| prefix.eq_ignore_ascii_case(b"application/grpc")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_content_types_are_recognized() {
        for content_type in ["application/grpc", "application/grpc+proto", "application/grpc-web-text", "Application/GRPC"] {
            let request = Request::builder().header(header::CONTENT_TYPE, content_type).body(()).unwrap();
            assert!(is_grpc(&request), "{content_type}");
        }
        for content_type in [Some("application/json"), Some("text/plain"), Some("application/gr"), None] {
            let mut builder = Request::builder();
            if let Some(content_type) = content_type {
                builder = builder.header(header::CONTENT_TYPE, content_type);
            }
            assert!(!is_grpc(&builder.body(()).unwrap()), "{content_type:?}");
        }
    }
}
