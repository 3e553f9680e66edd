//! The typed `config`: accepted only when its type is registered (Struct always, operator
//! types from descriptor sets) and its payload decodes cleanly as that type.

mod common;

use common::{
    OKTA_CONFIG_TYPE, STRUCT_TYPE_URL, TestServer, connector_of, create, create_request, expect_invalid, get, list_request, okta_config,
    struct_config, update_request, violation_description, write_operator_descriptor_set,
};
use prost::Message;

/// Starts a server that has the operator fixture's types registered.
async fn start_with_operator_types() -> (TestServer, tempfile::TempDir) {
    let descriptor_dir = tempfile::TempDir::new().expect("temporary directory for the descriptor set");
    let descriptor_set = write_operator_descriptor_set(descriptor_dir.path());
    let server = TestServer::start_with(|options| options.descriptor_sets.push(descriptor_set)).await;
    (server, descriptor_dir)
}

#[tokio::test]
async fn create_accepts_struct_config() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let config = struct_config(&[("domain", "example.okta.com"), ("region", "eu")]);
    let mut request = create_request("app-1", "struct config");
    request.config = Some(config.clone());

    let created = connector_of(client.create(request).await.expect("create").into_inner().connector_view);

    assert_eq!(created.config.as_ref(), Some(&config));
    let stored = get(&mut client, "app-1", &created.id).await.config.expect("stored config");
    assert_eq!(stored.type_url, STRUCT_TYPE_URL);
    let decoded = prost_types::Struct::decode(stored.value.as_slice()).expect("stored value is a Struct");
    assert_eq!(decoded, prost_types::Struct::decode(config.value.as_slice()).expect("sent value is a Struct"));
}

#[tokio::test]
async fn create_accepts_empty_struct_config() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let mut request = create_request("app-1", "empty struct");
    request.config = Some(struct_config(&[]));

    let created = connector_of(client.create(request).await.expect("create").into_inner().connector_view);

    assert_eq!(created.config, Some(struct_config(&[])));
}

#[tokio::test]
async fn create_accepts_registered_operator_config() {
    let (server, _descriptor_dir) = start_with_operator_types().await;
    let mut client = server.client().await;
    let mut request = create_request("app-1", "typed config");
    request.config = Some(okta_config("acme.okta.com"));

    let created = connector_of(client.create(request).await.expect("create").into_inner().connector_view);

    let stored = get(&mut client, "app-1", &created.id).await.config.expect("stored config");
    assert_eq!(stored.type_url, format!("type.googleapis.com/{OKTA_CONFIG_TYPE}"));
    assert_eq!(stored.value, okta_config("acme.okta.com").value);
}

#[tokio::test]
async fn operator_config_is_unregistered_without_descriptor_set() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let mut request = create_request("app-1", "typed config");
    request.config = Some(okta_config("acme.okta.com"));

    expect_invalid(client.create(request).await, "config.type_url");
}

#[tokio::test]
async fn create_rejects_other_type_url_prefixes() {
    let server = TestServer::start().await;
    let mut client = server.client().await;

    let prefixes = ["example.com/types/", "http://type.googleapis.com/", "type.googleapis.com//", "a/b/", "type.googleapis.com.evil/"];
    for prefix in prefixes {
        let mut config = struct_config(&[("domain", "example.okta.com")]);
        config.type_url = format!("{prefix}google.protobuf.Struct");
        let mut request = create_request("app-1", "other prefix");
        request.config = Some(config);
        let status = expect_invalid(client.create(request).await, "config.type_url");
        let description = violation_description(&status, "config.type_url");
        assert!(description.contains("type.googleapis.com/<message name>"), "{prefix}: {description}");
    }

    let listed = client.list(list_request("app-1", 10, "")).await.expect("list").into_inner();
    assert!(listed.list.is_empty(), "a config with another prefix was stored");
}

#[tokio::test]
async fn create_rejects_unregistered_config_type() {
    let (server, _descriptor_dir) = start_with_operator_types().await;
    let mut client = server.client().await;

    // The last two are in the server's descriptor pool but are not config types.
    for type_name in ["acme.connectors.v1.Missing", "google.protobuf.Empty", "connectord.v1.Connector", "google.protobuf.Timestamp"] {
        let mut request = create_request("app-1", "unregistered");
        request.config = Some(prost_types::Any { type_url: format!("type.googleapis.com/{type_name}"), value: Vec::new() });
        let status = expect_invalid(client.create(request).await, "config.type_url");
        let description = violation_description(&status, "config.type_url");
        assert!(description.contains(type_name), "description does not name {type_name}: {description}");
    }
}

#[tokio::test]
async fn create_rejects_payload_of_another_type() {
    let (server, _descriptor_dir) = start_with_operator_types().await;
    let mut client = server.client().await;

    // ConnectorStatus field 2 (last_error) does not exist in Struct.
    let status_bytes = connectord::pb::ConnectorStatus { last_error: "boom".to_owned(), ..Default::default() }.encode_to_vec();
    let mut request = create_request("app-1", "wrong payload");
    request.config = Some(prost_types::Any { type_url: STRUCT_TYPE_URL.to_owned(), value: status_bytes });
    expect_invalid(client.create(request).await, "config.value");

    // ConnectorCredential field 5 (display_name) does not exist in OktaConfig.
    let foreign = connectord::pb::ConnectorCredential { display_name: "credential".to_owned(), ..Default::default() }.encode_to_vec();
    let mut request = create_request("app-1", "wrong payload");
    request.config = Some(prost_types::Any { type_url: format!("type.googleapis.com/{OKTA_CONFIG_TYPE}"), value: foreign });
    expect_invalid(client.create(request).await, "config.value");
}

#[tokio::test]
async fn create_rejects_unknown_fields_in_nested_messages() {
    let (server, _descriptor_dir) = start_with_operator_types().await;
    let mut client = server.client().await;

    // OktaConfig.sync_interval (field 4) is a Duration, which has no field 3.
    let mut value = okta_config("acme.okta.com").value;
    value.extend_from_slice(&[0x22, 0x02, 0x18, 0x01]);
    let mut request = create_request("app-1", "nested unknown field");
    request.config = Some(prost_types::Any { type_url: format!("type.googleapis.com/{OKTA_CONFIG_TYPE}"), value });

    expect_invalid(client.create(request).await, "config.value");
}

#[tokio::test]
async fn create_rejects_undecodable_payload() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let mut request = create_request("app-1", "garbage");
    // A length-delimited field 1 that claims 100 bytes but carries 2.
    request.config = Some(prost_types::Any { type_url: STRUCT_TYPE_URL.to_owned(), value: vec![0x0a, 100, 1, 2] });

    expect_invalid(client.create(request).await, "config.value");
}

#[tokio::test]
async fn create_rejects_malformed_type_url() {
    let server = TestServer::start().await;
    let mut client = server.client().await;

    for type_url in ["google.protobuf.Struct", "", "type.googleapis.com/", "/google.protobuf.Struct"] {
        let mut config = struct_config(&[("domain", "example.okta.com")]);
        config.type_url = type_url.to_owned();
        let mut request = create_request("app-1", "malformed type URL");
        request.config = Some(config);
        expect_invalid(client.create(request).await, "config.type_url");
    }
}

#[tokio::test]
async fn create_limits_config_size() {
    let server = TestServer::start_with(|options| options.max_config_bytes = 64).await;
    let mut client = server.client().await;

    let at_limit = struct_config(&[("k", &"v".repeat(55))]);
    assert_eq!(at_limit.value.len(), 64, "the fixture must sit exactly at the limit");
    let mut request = create_request("app-1", "at the limit");
    request.config = Some(at_limit);
    client.create(request).await.expect("a config of max_config_bytes is accepted");

    let over_limit = struct_config(&[("k", &"v".repeat(56))]);
    let mut request = create_request("app-1", "over the limit");
    request.config = Some(over_limit);
    let status = expect_invalid(client.create(request).await, "config.value");
    assert!(violation_description(&status, "config.value").contains("64"), "description lacks the limit: {status:?}");
}

#[tokio::test]
async fn create_delegated_has_no_config() {
    let server = TestServer::start().await;
    let mut client = server.client().await;

    let created =
        client.create_delegated(common::create_delegated_request("app-1", "no config")).await.expect("create delegated").into_inner();

    assert_eq!(connector_of(created.connector_view).config, None);
}

#[tokio::test]
async fn update_validates_config() {
    let (server, _descriptor_dir) = start_with_operator_types().await;
    let mut client = server.client().await;
    let created = create(&mut client, "app-1", "config owner").await;

    let mut request = update_request(&created, &["config"]);
    request.connector.as_mut().expect("connector").config =
        Some(prost_types::Any { type_url: "google.protobuf.Struct".to_owned(), value: Vec::new() });
    expect_invalid(client.update(request).await, "connector.config.type_url");

    let mut request = update_request(&created, &["config"]);
    request.connector.as_mut().expect("connector").config =
        Some(prost_types::Any { type_url: STRUCT_TYPE_URL.to_owned(), value: vec![0x10, 0x01] });
    expect_invalid(client.update(request).await, "connector.config.value");

    let mut request = update_request(&created, &["config"]);
    request.connector.as_mut().expect("connector").config = Some(okta_config("changed.okta.com"));
    let updated = connector_of(client.update(request).await.expect("switch to the operator type").into_inner().connector_view);
    assert_eq!(updated.config, Some(okta_config("changed.okta.com")));
}

#[tokio::test]
async fn config_of_unregistered_type_is_withheld_after_restart() {
    let (server, _descriptor_dir) = start_with_operator_types().await;
    let mut client = server.client().await;
    let mut request = create_request("app-1", "okta");
    request.config = Some(okta_config("acme.okta.com"));
    let created = client.create(request).await.expect("create with an operator config").into_inner();
    let id = created.connector_view.unwrap().connector.unwrap().id;

    // The same data directory without the descriptor set that defines the config type.
    let (data_dir, mut options) = server.stop().await;
    options.descriptor_sets.clear();
    let server = TestServer::start_on(data_dir, options).await;
    let mut client = server.client().await;

    let connector = get(&mut client, "app-1", &id).await;
    assert_eq!(connector.config, None, "a config that cannot be masked was returned");
    assert_eq!(connector.display_name, "okta");

    let url = format!("http://{}/api/v1/apps/app-1/connectors", server.addr);
    let response = reqwest::get(&url).await.expect("REST list");
    assert_eq!(response.status(), reqwest::StatusCode::OK);
    let body = response.text().await.expect("REST body");
    assert!(!body.contains("acme.okta.com"), "the REST list returned the config: {body}");
}
