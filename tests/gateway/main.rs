//! Integration tests of the HTTP edge: REST routes, errors, gRPC-Web, CORS and the
//! descriptor-set command, each against a real server or binary.

mod connectors;
mod descriptor_set;
mod errors;
mod grpc_web;
mod support;
