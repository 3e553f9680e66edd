//! Admission control for connector RPCs: a bounded number run at once, a bounded number
//! wait for a slot, and the rest are rejected at once with `RESOURCE_EXHAUSTED`.
//!
//! A call requests a slot only once its request body is complete. Otherwise streams whose
//! body never arrives could take every slot and lock all other clients out. Every connector
//! RPC is unary, so the body is one message of at most [`MAX_MESSAGE_BYTES`], which tonic
//! would buffer anyway.
//!
//! Health and reflection calls are not limited, so probes still get responses while the
//! server sheds load.

use std::{
    future::Future,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full, Limited};
use tokio::sync::Semaphore;
use tonic::body::Body;
use tower::{Layer, Service};

use crate::{
    log_throttle::{LOG_INTERVAL, LogThrottle},
    pb::connector_service_server::SERVICE_NAME,
    server::MAX_MESSAGE_BYTES,
};

/// Length of the gRPC frame header in front of each message.
const GRPC_FRAME_HEADER_BYTES: usize = 5;

/// Bounds of [`AdmissionLayer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdmissionLimits {
    /// Maximum number of connector calls whose handlers run at once.
    pub max_concurrent_requests: usize,
    /// Maximum number of calls that wait for a slot. Calls beyond it are rejected at once.
    pub max_queued_requests: usize,
    /// Maximum wait for a slot before a call is rejected.
    pub queue_timeout: Duration,
}

impl Default for AdmissionLimits {
    // NOTE: estimates for a small server, not measured limits; tune them with the flags.
    fn default() -> Self {
        Self { max_concurrent_requests: 256, max_queued_requests: 1024, queue_timeout: Duration::from_secs(1) }
    }
}

struct Admission {
    limits: AdmissionLimits,
    running: Arc<Semaphore>,
    queued: AtomicUsize,
    /// Path prefix of the limited service, `/connectord.v1.ConnectorService/`.
    path_prefix: String,
}

/// Tower layer that applies [`AdmissionLimits`] to connector RPCs.
#[derive(Clone)]
pub struct AdmissionLayer {
    admission: Arc<Admission>,
}

impl AdmissionLayer {
    pub fn new(limits: AdmissionLimits) -> Self {
        Self {
            admission: Arc::new(Admission {
                limits,
                running: Arc::new(Semaphore::new(limits.max_concurrent_requests)),
                queued: AtomicUsize::new(0),
                path_prefix: format!("/{SERVICE_NAME}/"),
            }),
        }
    }
}

impl<S> Layer<S> for AdmissionLayer {
    type Service = AdmissionService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AdmissionService { inner, admission: Arc::clone(&self.admission) }
    }
}

#[derive(Clone)]
pub struct AdmissionService<S> {
    inner: S,
    admission: Arc<Admission>,
}

/// Releases a place in the queue when dropped, also when the caller gives up waiting.
struct QueuePlace<'a>(&'a AtomicUsize);

impl Drop for QueuePlace<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl<S, ResponseBody> Service<Request<Body>> for AdmissionService<S>
where
    S: Service<Request<Body>, Response = Response<ResponseBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ResponseBody: Default + Send + 'static,
{
    type Response = Response<ResponseBody>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, context: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(context)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        if !request.uri().path().starts_with(&self.admission.path_prefix) {
            return Box::pin(self.inner.call(request));
        }
        // The clone is not ready yet, so the instance that poll_ready prepared serves this call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let admission = Arc::clone(&self.admission);
        Box::pin(async move {
            let request = match read_body(request).await {
                Ok(request) => request,
                Err(status) => return Ok(status.into_http()),
            };
            let Some(_running) = admit(&admission).await else {
                return Ok(overloaded(&admission.limits));
            };
            inner.call(request).await
        })
    }
}

/// Reads the whole request body, up to one gRPC message of the maximum size, and returns
/// the request with the body in memory.
async fn read_body(request: Request<Body>) -> Result<Request<Body>, tonic::Status> {
    let (parts, body) = request.into_parts();
    let limit = MAX_MESSAGE_BYTES + GRPC_FRAME_HEADER_BYTES;
    let bytes: Bytes = match Limited::new(body, limit).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(error) if error.is::<http_body_util::LengthLimitError>() => {
            return Err(tonic::Status::resource_exhausted(format!(
                "request body is larger than the limit of {MAX_MESSAGE_BYTES} bytes per message"
            )));
        }
        Err(error) => {
            tracing::debug!(%error, "reading a request body failed");
            return Err(tonic::Status::cancelled(format!("reading the request body failed: {error}")));
        }
    };
    Ok(Request::from_parts(parts, Body::new(Full::new(bytes))))
}

/// Waits for a slot to run in; `None` when the queue is full or the wait timed out.
async fn admit(admission: &Admission) -> Option<tokio::sync::OwnedSemaphorePermit> {
    if let Ok(permit) = Arc::clone(&admission.running).try_acquire_owned() {
        return Some(permit);
    }
    if admission.queued.fetch_add(1, Ordering::SeqCst) >= admission.limits.max_queued_requests {
        admission.queued.fetch_sub(1, Ordering::SeqCst);
        return None;
    }
    let _place = QueuePlace(&admission.queued);
    let acquire = Arc::clone(&admission.running).acquire_owned();
    match tokio::time::timeout(admission.limits.queue_timeout, acquire).await {
        Ok(Ok(permit)) => Some(permit),
        // The semaphore is never closed; a timeout means the server stayed saturated.
        Ok(Err(_)) | Err(_) => None,
    }
}

fn overloaded<ResponseBody: Default>(limits: &AdmissionLimits) -> Response<ResponseBody> {
    static LOG: LogThrottle = LogThrottle::new(LOG_INTERVAL);
    if let Some(rejected) = LOG.admit() {
        tracing::warn!(
            max_concurrent_requests = limits.max_concurrent_requests,
            max_queued_requests = limits.max_queued_requests,
            rejected,
            "request rejected: server overloaded; `rejected` counts the rejections since the last such line"
        );
    }
    tonic::Status::resource_exhausted(format!(
        "the server is overloaded ({} requests running, {} queued); retry with backoff",
        limits.max_concurrent_requests, limits.max_queued_requests
    ))
    .into_http()
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use super::*;

    /// Inner service that blocks every call until `release` gets a permit.
    #[derive(Clone)]
    struct Blocking {
        release: Arc<Semaphore>,
    }

    impl Service<Request<Body>> for Blocking {
        type Response = Response<String>;
        type Error = Infallible;
        type Future = Pin<Box<dyn Future<Output = Result<Response<String>, Infallible>> + Send>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, _: Request<Body>) -> Self::Future {
            let release = Arc::clone(&self.release);
            Box::pin(async move {
                release.acquire().await.unwrap().forget();
                Ok(Response::new("done".to_owned()))
            })
        }
    }

    fn connector_call() -> Request<Body> {
        Request::builder().uri(format!("/{SERVICE_NAME}/Get")).body(Body::empty()).unwrap()
    }

    fn grpc_status(response: &Response<String>) -> Option<&str> {
        response.headers().get("grpc-status").map(|value| value.to_str().unwrap())
    }

    #[tokio::test]
    async fn calls_beyond_running_and_queued_are_rejected() {
        let release = Arc::new(Semaphore::new(0));
        let limits = AdmissionLimits { max_concurrent_requests: 1, max_queued_requests: 1, queue_timeout: Duration::from_secs(30) };
        let mut service = AdmissionLayer::new(limits).layer(Blocking { release: Arc::clone(&release) });

        let running = tokio::spawn(service.call(connector_call()));
        let queued = tokio::spawn(service.call(connector_call()));
        tokio::task::yield_now().await;
        let rejected = service.call(connector_call()).await.unwrap();
        assert_eq!(grpc_status(&rejected), Some("8"));

        release.add_permits(2);
        assert_eq!(running.await.unwrap().unwrap().body(), "done");
        assert_eq!(queued.await.unwrap().unwrap().body(), "done");
    }

    #[tokio::test]
    async fn queued_call_times_out() {
        let release = Arc::new(Semaphore::new(0));
        let limits = AdmissionLimits { max_concurrent_requests: 1, max_queued_requests: 8, queue_timeout: Duration::from_millis(50) };
        let mut service = AdmissionLayer::new(limits).layer(Blocking { release: Arc::clone(&release) });

        let _running = tokio::spawn(service.call(connector_call()));
        tokio::task::yield_now().await;
        let timed_out = service.call(connector_call()).await.unwrap();
        assert_eq!(grpc_status(&timed_out), Some("8"));
    }

    #[tokio::test]
    async fn health_calls_bypass_the_limit() {
        let release = Arc::new(Semaphore::new(0));
        let limits = AdmissionLimits { max_concurrent_requests: 1, max_queued_requests: 0, queue_timeout: Duration::ZERO };
        let mut service = AdmissionLayer::new(limits).layer(Blocking { release: Arc::clone(&release) });

        let _running = tokio::spawn(service.call(connector_call()));
        tokio::task::yield_now().await;
        let health = tokio::spawn(service.call(Request::builder().uri("/grpc.health.v1.Health/Check").body(Body::empty()).unwrap()));
        release.add_permits(2);
        let response = health.await.unwrap().unwrap();
        assert_eq!(grpc_status(&response), None);
    }
}
