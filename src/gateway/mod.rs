//! The HTTP edge next to gRPC on the same port: a REST/JSON gateway driven by the
//! `google.api.http` rules in the descriptor pool, gRPC-Web through tonic-web, and CORS.
//!
//! [`EdgeLayer`] goes outermost on the tonic server. Requests whose content type starts
//! with `application/grpc` pass through to the gRPC stack; gRPC-Web ones are translated to
//! gRPC on the way. Every other request is REST: its JSON is transcoded to the protobuf
//! request, sent through the layers inside `EdgeLayer` as an in-process gRPC call, and the
//! reply or status is transcoded back to JSON.

mod cors;
pub mod descriptors;
mod error;
mod grpc_call;
mod http_rule;
mod json;
mod path_template;
mod request;
mod rest;
mod router;
mod service;

use prost_reflect::{DescriptorError, DescriptorPool};
use tonic_web::{GrpcWebLayer, GrpcWebService};
use tower::{Layer, util::Either};
use tower_http::cors::{Cors, CorsLayer};

pub use cors::{OriginError, parse_origin};
pub use error::http_status;
pub use http_rule::BindingError;
pub use rest::RestGateway;
pub use service::{GatewayLayer, GatewayService};

/// Failure to set up the HTTP edge.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("cannot add the google.rpc error types to the descriptor pool: {0}")]
    Descriptors(#[from] DescriptorError),
    #[error("cannot build the REST routes: {0}")]
    Routes(#[from] BindingError),
    #[error(transparent)]
    Origin(#[from] OriginError),
}

/// Settings of the HTTP edge.
#[derive(Debug, Clone)]
pub struct EdgeOptions {
    /// Services whose `google.api.http` rules become REST routes; they must be mounted.
    pub rest_services: Vec<String>,
    /// Origins allowed by CORS: `*` or `scheme://host[:port]` values. Empty disables CORS.
    pub cors_allow_origins: Vec<String>,
    /// Largest REST request body, in bytes; larger ones get HTTP 413.
    pub max_body_bytes: usize,
    /// The token check of the gRPC stack. The gateway applies it too, before it reads a
    /// request body, so a caller without a valid token learns nothing from body errors.
    pub auth: crate::auth::AuthPolicy,
}

/// CORS, then the REST gateway, then gRPC-Web translation, around a gRPC service stack.
#[derive(Debug, Clone)]
pub struct EdgeLayer {
    cors: Option<CorsLayer>,
    gateway: GatewayLayer,
}

impl EdgeLayer {
    /// Builds the edge from a pool with every type that requests and responses may carry,
    /// including the config types that operators registered.
    pub fn new(pool: DescriptorPool, options: &EdgeOptions) -> Result<Self, GatewayError> {
        let pool = descriptors::gateway_pool(pool)?;
        let service_names: Vec<&str> = options.rest_services.iter().map(String::as_str).collect();
        let gateway = RestGateway::new(pool, &service_names, options.max_body_bytes, options.auth.clone())?;
        tracing::info!(
            routes = gateway.router().bindings().len(),
            cors_origins = %options.cors_allow_origins.join(","),
            "REST gateway and gRPC-Web enabled"
        );
        Ok(Self { cors: cors::cors_layer(&options.cors_allow_origins)?, gateway: GatewayLayer::new(gateway) })
    }
}

impl<S> Layer<S> for EdgeLayer {
    type Service = Either<Cors<GatewayService<GrpcWebService<S>>>, GatewayService<GrpcWebService<S>>>;

    fn layer(&self, inner: S) -> Self::Service {
        let service = self.gateway.layer(GrpcWebLayer::new().layer(inner));
        match &self.cors {
            Some(cors) => Either::Left(cors.layer(service)),
            None => Either::Right(service),
        }
    }
}
