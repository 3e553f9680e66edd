//! Server reflection, v1 and v1alpha, as clients such as grpcurl use it: the service list,
//! the file of a symbol, every file it imports, and the registered config types.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::{OKTA_CONFIG_TYPE, TestServer, write_operator_descriptor_set};
use prost::Message;
use prost_reflect::{DescriptorPool, Value};
use tonic::{Code, Status, transport::Channel};

/// Generates a module of one-request helpers for one version of the reflection protocol.
macro_rules! reflection_helpers {
    ($version:ident) => {
        mod $version {
            use tonic::{Status, transport::Channel};
            use tonic_reflection::pb::$version::{
                ServerReflectionRequest, server_reflection_client::ServerReflectionClient, server_reflection_request::MessageRequest,
                server_reflection_response::MessageResponse,
            };

            async fn call(channel: Channel, request: MessageRequest) -> Result<MessageResponse, Status> {
                let request = ServerReflectionRequest { host: String::new(), message_request: Some(request) };
                let mut client = ServerReflectionClient::new(channel);
                let mut responses = client.server_reflection_info(tokio_stream::iter([request])).await?.into_inner();
                let response = responses.message().await?.expect("a response to the request");
                Ok(response.message_response.expect("the response has a message"))
            }

            pub async fn list_services(channel: Channel) -> Vec<String> {
                match call(channel, MessageRequest::ListServices(String::new())).await {
                    Ok(MessageResponse::ListServicesResponse(list)) => list.service.into_iter().map(|service| service.name).collect(),
                    other => panic!("unexpected response to ListServices: {other:?}"),
                }
            }

            /// Returns the encoded FileDescriptorProtos of the response.
            pub async fn files(channel: Channel, request: super::FileRequest<'_>) -> Result<Vec<Vec<u8>>, Status> {
                let request = match request {
                    super::FileRequest::ContainingSymbol(symbol) => MessageRequest::FileContainingSymbol(symbol.to_owned()),
                    super::FileRequest::ByFilename(name) => MessageRequest::FileByFilename(name.to_owned()),
                };
                match call(channel, request).await? {
                    MessageResponse::FileDescriptorResponse(files) => Ok(files.file_descriptor_proto),
                    other => panic!("unexpected response to a file request: {other:?}"),
                }
            }
        }
    };
}

reflection_helpers!(v1);
reflection_helpers!(v1alpha);

#[derive(Debug, Clone, Copy)]
enum Version {
    V1,
    V1alpha,
}

const VERSIONS: [Version; 2] = [Version::V1, Version::V1alpha];

#[derive(Debug, Clone, Copy)]
enum FileRequest<'a> {
    ContainingSymbol(&'a str),
    ByFilename(&'a str),
}

async fn list_services(version: Version, channel: Channel) -> Vec<String> {
    match version {
        Version::V1 => v1::list_services(channel).await,
        Version::V1alpha => v1alpha::list_services(channel).await,
    }
}

async fn files(version: Version, channel: Channel, request: FileRequest<'_>) -> Result<Vec<Vec<u8>>, Status> {
    match version {
        Version::V1 => v1::files(channel, request).await,
        Version::V1alpha => v1alpha::files(channel, request).await,
    }
}

fn decode_file(bytes: &[u8]) -> prost_types::FileDescriptorProto {
    prost_types::FileDescriptorProto::decode(bytes).expect("reflection returns valid FileDescriptorProtos")
}

/// Resolves `symbol` and then every import by file name, as reflection clients do when a
/// response omits the imports, until the set of files is closed. Returns the encoded files by name, and the name of the symbol's file.
async fn resolve_with_imports(version: Version, channel: &Channel, symbol: &str) -> (BTreeMap<String, Vec<u8>>, String) {
    let symbol_files = files(version, channel.clone(), FileRequest::ContainingSymbol(symbol))
        .await
        .unwrap_or_else(|status| panic!("{version:?}: resolve {symbol}: {status:?}"));
    assert!(!symbol_files.is_empty(), "{version:?}: no file for {symbol}");
    let symbol_file = decode_file(&symbol_files[0]).name().to_owned();

    let mut resolved = BTreeMap::new();
    let mut pending: Vec<Vec<u8>> = symbol_files;
    // Bounded: the files of this server import fewer than 100 others.
    for _ in 0..100 {
        let Some(bytes) = pending.pop() else { return (resolved, symbol_file) };
        let file = decode_file(&bytes);
        resolved.insert(file.name().to_owned(), bytes);
        for import in &file.dependency {
            if resolved.contains_key(import) {
                continue;
            }
            let imported = files(version, channel.clone(), FileRequest::ByFilename(import))
                .await
                .unwrap_or_else(|status| panic!("{version:?}: import {import} of {} is not served: {status:?}", file.name()));
            pending.extend(imported);
        }
    }
    panic!("{version:?}: more than 100 files reachable from {symbol}");
}

/// Builds a descriptor pool from encoded files, keeping their options.
fn pool_of(files: &BTreeMap<String, Vec<u8>>) -> DescriptorPool {
    let mut set = Vec::new();
    for bytes in files.values() {
        // FileDescriptorSet.file is field 1, length-delimited.
        prost::encoding::encode_key(1, prost::encoding::WireType::LengthDelimited, &mut set);
        prost::encoding::encode_varint(bytes.len() as u64, &mut set);
        set.extend_from_slice(bytes);
    }
    DescriptorPool::decode(set.as_slice()).expect("the served files form a complete pool")
}

#[tokio::test]
async fn reflection_lists_mounted_services() {
    let server = TestServer::start().await;
    let channel = server.channel().await;

    for version in VERSIONS {
        let services: BTreeSet<String> = list_services(version, channel.clone()).await.into_iter().collect();

        for expected in [
            "connectord.v1.ConnectorService",
            "connectord.v1.ConnectorSyncService",
            "grpc.health.v1.Health",
            "grpc.reflection.v1.ServerReflection",
            "grpc.reflection.v1alpha.ServerReflection",
        ] {
            assert!(services.contains(expected), "{version:?}: {expected} is missing from {services:?}");
        }
        assert_eq!(services.len(), 5, "{version:?}: unexpected services in {services:?}");
    }
}

#[tokio::test]
async fn reflection_serves_service_file_and_imports() {
    let server = TestServer::start().await;
    let channel = server.channel().await;

    for version in VERSIONS {
        let (resolved, symbol_file) = resolve_with_imports(version, &channel, "connectord.v1.ConnectorService").await;

        assert_eq!(symbol_file, "connectord/v1/connector_service.proto", "{version:?}");
        let service_file = decode_file(&resolved[&symbol_file]);
        for import in [
            "connectord/v1/connector.proto",
            "google/api/annotations.proto",
            "google/protobuf/any.proto",
            "google/protobuf/field_mask.proto",
        ] {
            assert!(service_file.dependency.iter().any(|name| name == import), "{version:?}: service file lacks import {import}");
        }
        for file in [
            "connectord/v1/connector.proto",
            "google/api/annotations.proto",
            "google/api/http.proto",
            "google/protobuf/any.proto",
            "google/protobuf/descriptor.proto",
            "google/protobuf/field_mask.proto",
            "google/protobuf/timestamp.proto",
        ] {
            assert!(resolved.contains_key(file), "{version:?}: {file} was not served; got {:?}", resolved.keys());
        }
    }
}

#[tokio::test]
async fn reflection_keeps_http_annotations() {
    let server = TestServer::start().await;
    let channel = server.channel().await;

    for version in VERSIONS {
        let (resolved, _) = resolve_with_imports(version, &channel, "connectord.v1.ConnectorService").await;
        let pool = pool_of(&resolved);
        let service = pool.get_service_by_name("connectord.v1.ConnectorService").expect("service in pool");
        let create = service.methods().find(|method| method.name() == "Create").expect("Create method");
        let http = pool.get_extension_by_name("google.api.http").expect("google.api.http extension in pool");

        let options = create.options();
        assert!(options.has_extension(&http), "{version:?}: Create lost its google.api.http option");
        let rule = options.get_extension(&http);
        let Value::Message(rule) = rule.as_ref() else { panic!("{version:?}: google.api.http is not a message: {rule:?}") };
        let post = rule.get_field_by_name("post").expect("HttpRule has post");
        assert_eq!(post.as_str(), Some("/api/v1/apps/{app_id}/connectors/create"), "{version:?}");
    }
}

#[tokio::test]
async fn reflection_resolves_struct_type() {
    let server = TestServer::start().await;
    let channel = server.channel().await;

    for version in VERSIONS {
        let (resolved, symbol_file) = resolve_with_imports(version, &channel, "google.protobuf.Struct").await;

        assert_eq!(symbol_file, "google/protobuf/struct.proto", "{version:?}");
        let pool = pool_of(&resolved);
        assert!(pool.get_message_by_name("google.protobuf.Struct").is_some(), "{version:?}: Struct is not in the served file");
    }
}

#[tokio::test]
async fn reflection_serves_operator_config_types() {
    let descriptor_dir = tempfile::TempDir::new().expect("temporary directory");
    let descriptor_set = write_operator_descriptor_set(descriptor_dir.path());
    let server = TestServer::start_with(|options| options.descriptor_sets.push(descriptor_set)).await;
    let channel = server.channel().await;

    for version in VERSIONS {
        let (resolved, symbol_file) = resolve_with_imports(version, &channel, OKTA_CONFIG_TYPE).await;

        assert_eq!(symbol_file, "acme/okta_config.proto", "{version:?}");
        assert!(resolved.contains_key("google/protobuf/duration.proto"), "{version:?}: import of the operator file missing");
        let pool = pool_of(&resolved);
        assert!(pool.get_message_by_name(OKTA_CONFIG_TYPE).is_some(), "{version:?}: OktaConfig is not in the served file");

        // The operator's file defines a service that the server does not mount.
        let services = list_services(version, channel.clone()).await;
        assert!(!services.iter().any(|name| name.starts_with("acme.")), "{version:?}: unmounted service listed: {services:?}");
    }
}

#[tokio::test]
async fn reflection_reports_unknown_symbol_as_not_found() {
    let server = TestServer::start().await;
    let channel = server.channel().await;

    for version in VERSIONS {
        let status =
            files(version, channel.clone(), FileRequest::ContainingSymbol("acme.NoSuchType")).await.expect_err("an unknown symbol fails");
        assert_eq!(status.code(), Code::NotFound, "{version:?}: {status:?}");
    }
}
