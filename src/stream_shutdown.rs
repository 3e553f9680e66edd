//! Ends open response streams, such as health Watch and reflection, once shutdown starts.
//!
//! tonic's graceful shutdown waits until every response has ended, and a Watch stream never
//! ends by itself. Without this layer one watching client keeps the process running until
//! the grace period runs out. Streams end with `UNAVAILABLE` after they have sent every message that
//! was ready, so a Watch client still receives the NOT_SERVING update that precedes it.
//!
//! Connector RPCs are unary and are left alone: their responses end by themselves, and
//! cutting one short could report a failure for a write that was applied.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response};
use http_body::{Body as HttpBody, Frame, SizeHint};
use tokio::sync::watch;
use tonic::body::Body;
use tower::{Layer, Service};

use crate::pb::connector_service_server::SERVICE_NAME;

/// gRPC status code UNAVAILABLE.
const UNAVAILABLE: &str = "14";

/// Starts the end of every stream that [`EndStreamsLayer`] wraps.
pub struct StreamShutdown {
    sender: watch::Sender<bool>,
}

impl StreamShutdown {
    pub fn new() -> Self {
        Self { sender: watch::Sender::new(false) }
    }

    pub fn layer(&self) -> EndStreamsLayer {
        EndStreamsLayer { stopping: self.sender.subscribe() }
    }

    /// Ends every wrapped stream at its next pause, now and for responses created later.
    pub fn trigger(&self) {
        self.sender.send_replace(true);
    }
}

impl Default for StreamShutdown {
    fn default() -> Self {
        Self::new()
    }
}

#[derive(Clone)]
pub struct EndStreamsLayer {
    stopping: watch::Receiver<bool>,
}

impl<S> Layer<S> for EndStreamsLayer {
    type Service = EndStreams<S>;

    fn layer(&self, inner: S) -> Self::Service {
        EndStreams { inner, stopping: self.stopping.clone() }
    }
}

#[derive(Clone)]
pub struct EndStreams<S> {
    inner: S,
    stopping: watch::Receiver<bool>,
}

impl<S, RequestBody> Service<Request<RequestBody>> for EndStreams<S>
where
    S: Service<Request<RequestBody>, Response = Response<Body>>,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, S::Error>> + Send>>;

    fn poll_ready(&mut self, context: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(context)
    }

    fn call(&mut self, request: Request<RequestBody>) -> Self::Future {
        let unary = request.uri().path().strip_prefix('/').is_some_and(|path| path.starts_with(SERVICE_NAME));
        let future = self.inner.call(request);
        if unary {
            return Box::pin(future);
        }
        let stopping = self.stopping.clone();
        Box::pin(async move {
            let response = future.await?;
            Ok(response.map(|body| Body::new(EndableBody::new(body, stopping))))
        })
    }
}

/// A response body that ends with UNAVAILABLE trailers when shutdown starts while the inner
/// body waits for its next frame.
struct EndableBody {
    inner: Body,
    stopped: Pin<Box<dyn Future<Output = ()> + Send>>,
    ended: bool,
}

impl EndableBody {
    fn new(inner: Body, mut stopping: watch::Receiver<bool>) -> Self {
        let stopped = Box::pin(async move {
            // An error means the sender is gone, which happens only after shutdown.
            let _ = stopping.wait_for(|stopping| *stopping).await;
        });
        Self { inner, stopped, ended: false }
    }
}

impl HttpBody for EndableBody {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if self.ended {
            return Poll::Ready(None);
        }
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(context) {
            return Poll::Ready(frame);
        }
        if self.stopped.as_mut().poll(context).is_pending() {
            return Poll::Pending;
        }
        self.ended = true;
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", HeaderValue::from_static(UNAVAILABLE));
        trailers.insert("grpc-message", HeaderValue::from_static("the server is shutting down"));
        Poll::Ready(Some(Ok(Frame::trailers(trailers))))
    }

    fn is_end_stream(&self) -> bool {
        self.ended || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;

    use super::*;

    /// A body that never produces a frame, like an idle Watch stream.
    struct Idle;

    impl HttpBody for Idle {
        type Data = Bytes;
        type Error = tonic::Status;

        fn poll_frame(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            Poll::Pending
        }
    }

    #[tokio::test]
    async fn idle_stream_ends_with_unavailable_at_shutdown() {
        let shutdown = StreamShutdown::new();
        let mut body = EndableBody::new(Body::new(Idle), shutdown.layer().stopping);
        let waiting = tokio::time::timeout(std::time::Duration::from_millis(50), body.frame()).await;
        assert!(waiting.is_err(), "the stream ended before shutdown");

        shutdown.trigger();
        let frame = body.frame().await.expect("a frame").expect("no error");
        let trailers = frame.into_trailers().expect("trailers");
        assert_eq!(trailers["grpc-status"], UNAVAILABLE);
        assert!(body.frame().await.is_none());
    }

    #[tokio::test]
    async fn ready_data_is_sent_before_the_end() {
        let shutdown = StreamShutdown::new();
        shutdown.trigger();
        let inner = Body::new(http_body_util::Full::new(Bytes::from_static(b"last message")).map_err(|never| match never {}));
        let mut body = EndableBody::new(inner, shutdown.layer().stopping);
        let frame = body.frame().await.expect("a frame").expect("no error");
        assert_eq!(frame.into_data().expect("data"), Bytes::from_static(b"last message"));
    }
}
