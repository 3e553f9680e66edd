//! The gRPC edge: decodes and validates requests into domain values, calls the domain, and
//! converts results and errors into protobuf messages and statuses. Only this layer knows
//! the generated types and tonic.

mod audit;
mod config;
mod connector_service;
mod convert;
mod lifecycle_handlers;
pub mod page_token;
mod status;
mod sync_service;
mod update_mask;
pub mod validate;

pub use connector_service::{ConnectorApi, ConnectorApiOptions};
pub use status::to_status;
pub use sync_service::SyncWorkerApi;
