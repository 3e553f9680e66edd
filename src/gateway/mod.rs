//! The HTTP edge next to gRPC on the same port: a REST/JSON gateway driven by the
//! `google.api.http` rules in the descriptor pool.

pub mod descriptors;
mod http_rule;
mod json;
mod path_template;
mod request;
mod router;

pub use http_rule::BindingError;
