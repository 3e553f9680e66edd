//! connectord: a self-hosted registry of connectors behind a gRPC API.
//!
//! Layers, from the wire inwards: [`api`] (tonic services, validation, statuses), [`domain`]
//! (the connector model and its rules) and [`store`] (durable storage). [`server`] wires them
//! into tonic services that a binary or another server mounts, and [`gateway`] serves them
//! as REST/JSON and gRPC-Web on the same port.

pub mod admission;
pub mod api;
pub mod auth;
pub mod cli;
pub mod connection_limit;
pub mod domain;
pub mod gateway;
pub mod limits;
pub mod log_throttle;
pub mod pb;
pub mod server;
pub mod store;
pub mod stream_shutdown;
pub mod telemetry;
pub mod tls;
pub mod write_health;
