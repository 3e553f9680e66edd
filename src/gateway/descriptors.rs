//! Descriptor pools and sets that carry the API, its `google.api.http` rules and the
//! `google.rpc` error types.

use std::path::Path;

use prost_reflect::{DescriptorError, DescriptorPool};

use crate::pb;

/// Message whose presence shows that a pool already has the `google.rpc` status types.
const RPC_STATUS: &str = "google.rpc.Status";

/// Adds the `google.rpc` status and error detail types to `pool` unless it already has
/// them. They come from tonic-types, whose files are named `status.proto` and
/// `error_details.proto`, because the errors that tonic-types encodes are defined there, and
/// a second copy under googleapis' file names would make the pool reject duplicate names.
pub fn gateway_pool(mut pool: DescriptorPool) -> Result<DescriptorPool, DescriptorError> {
    if pool.get_message_by_name(RPC_STATUS).is_none() {
        pool.decode_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)?;
    }
    Ok(pool)
}

/// Returns the encoded `FileDescriptorSet` of the API with its imports, the `google.api`
/// annotations and the `google.rpc` error types. Custom options such as `google.api.http`
/// are kept, so Envoy's gRPC-JSON transcoder can read the routes from it.
pub fn api_descriptor_set() -> Result<Vec<u8>, DescriptorError> {
    let pool = gateway_pool(DescriptorPool::decode(pb::FILE_DESCRIPTOR_SET)?)?;
    Ok(pool.encode_to_vec())
}

/// Failure of the `descriptor-set` command.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("the built-in descriptor set is invalid: {0}")]
    Descriptor(#[from] DescriptorError),
    #[error("cannot write {path}: {source}")]
    Io { path: String, source: std::io::Error },
}

/// Writes [`api_descriptor_set`] to `path`, replacing the file if it exists.
pub fn write_api_descriptor_set(path: &Path) -> Result<(), WriteError> {
    let encoded = api_descriptor_set()?;
    std::fs::write(path, encoded).map_err(|source| WriteError::Io { path: path.display().to_string(), source })
}

#[cfg(test)]
mod tests {
    use prost_reflect::Value;

    use super::*;

    #[test]
    fn api_set_keeps_http_rules_and_error_types() {
        let pool = DescriptorPool::decode(api_descriptor_set().unwrap().as_slice()).unwrap();
        assert!(pool.get_message_by_name("google.rpc.BadRequest").is_some());
        assert!(pool.get_message_by_name("google.rpc.Status").is_some());

        let http = pool.get_extension_by_name("google.api.http").unwrap();
        let create =
            pool.get_service_by_name("connectord.v1.ConnectorService").unwrap().methods().find(|method| method.name() == "Create").unwrap();
        let rule = create.options().get_extension(&http).into_owned();
        let Value::Message(rule) = rule else { panic!("google.api.http is not a message") };
        assert_eq!(rule.get_field_by_name("post").unwrap().as_str(), Some("/api/v1/apps/{app_id}/connectors/create"));
    }

    #[test]
    fn pools_that_have_rpc_types_are_left_alone() {
        let pool = gateway_pool(DescriptorPool::decode(pb::FILE_DESCRIPTOR_SET).unwrap()).unwrap();
        let files = pool.files().count();
        let again = gateway_pool(pool).unwrap();
        assert_eq!(again.files().count(), files);
    }
}
