//! Status rewriting that tonic's size limits need.

use std::task::{Context, Poll};

use http::{HeaderValue, Response};
use tower::{Layer, Service};

/// Rewrites `OUT_OF_RANGE` in trailers-only responses to `RESOURCE_EXHAUSTED`.
///
/// tonic reports a request over the decoding limit as `OUT_OF_RANGE`, while the gRPC spec
/// (and etcd) use `RESOURCE_EXHAUSTED`. No connectord handler returns `OUT_OF_RANGE`, so every
/// such status comes from that limit.
#[derive(Debug, Clone, Copy, Default)]
pub struct ResourceExhaustedLayer;

impl<S> Layer<S> for ResourceExhaustedLayer {
    type Service = ResourceExhausted<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ResourceExhausted { inner }
    }
}

#[derive(Debug, Clone)]
pub struct ResourceExhausted<S> {
    inner: S,
}

const OUT_OF_RANGE: &str = "11";
const RESOURCE_EXHAUSTED: &str = "8";

impl<S, Request, Body> Service<Request> for ResourceExhausted<S>
where
    S: Service<Request, Response = Response<Body>>,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = std::pin::Pin<Box<dyn std::future::Future<Output = Result<Response<Body>, S::Error>> + Send>>;

    fn poll_ready(&mut self, context: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(context)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let future = self.inner.call(request);
        Box::pin(async move {
            let mut response = future.await?;
            let headers = response.headers_mut();
            if headers.get("grpc-status").is_some_and(|status| status == OUT_OF_RANGE) {
                headers.insert("grpc-status", HeaderValue::from_static(RESOURCE_EXHAUSTED));
            }
            Ok(response)
        })
    }
}
