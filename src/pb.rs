//! Code generated from `proto/` and the encoded descriptor set it was compiled from.

#![allow(clippy::all, missing_docs)]

tonic::include_proto!("connectord.v1");

/// Encoded `FileDescriptorSet` of every file in `proto/` and its imports, options included.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("connectord_descriptor");
