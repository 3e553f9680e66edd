//! Successful REST calls of the connector routes: response shapes, query parameter forms,
//! update mask forms and request bodies.

use std::collections::BTreeSet;

use connectord::pb;
use serde_json::{Value, json};

use crate::support::{STRUCT_TYPE_URL, TestServer, expect_error, expect_ok, first_violation};

/// Asserts that `time` is an RFC 3339 timestamp in UTC, as proto3 JSON writes them.
fn assert_rfc3339(time: &Value) {
    let text = time.as_str().unwrap_or_else(|| panic!("{time} is not a string"));
    assert!(text.ends_with('Z'), "{text}");
    chrono::DateTime::parse_from_rfc3339(text).unwrap_or_else(|error| panic!("{text}: {error}"));
}

#[tokio::test]
async fn create_returns_canonical_json() {
    let server = TestServer::start().await;
    let body = json!({
        "catalogId": "okta",
        "displayName": "Okta",
        "userIds": ["owner-1", "owner-2"],
        "config": {"@type": STRUCT_TYPE_URL, "value": {"domain": "acme.okta.com", "port": 443}},
    });

    let response = server.post("/api/v1/apps/app-1/connectors/create", body).await;

    let reply = expect_ok(response).await;
    let keys: BTreeSet<&str> = reply.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys, BTreeSet::from(["connectorView"]), "empty `expanded` is omitted");
    let connector = &reply["connectorView"]["connector"];
    assert!(connector["id"].as_str().is_some_and(|id| !id.is_empty()));
    assert_eq!(connector["appId"], "app-1");
    assert_eq!(connector["catalogId"], "okta");
    assert_eq!(connector["displayName"], "Okta");
    assert_eq!(connector["userIds"], json!(["owner-1", "owner-2"]));
    assert_eq!(connector["config"], json!({"@type": STRUCT_TYPE_URL, "value": {"domain": "acme.okta.com", "port": 443}}));
    assert_rfc3339(&connector["createdAt"]);
    assert_rfc3339(&connector["updatedAt"]);
    assert!(connector["etag"].as_str().is_some_and(|etag| !etag.is_empty()));
    for omitted in ["description", "deletedAt", "downloadUrl", "canResumeSync", "app_id", "created_at"] {
        assert!(connector.get(omitted).is_none(), "{omitted} is in {connector}");
    }
    server.stop().await;
}

#[tokio::test]
async fn create_accepts_proto_names_and_unknown_nulls() {
    let server = TestServer::start().await;
    // SDKs built for a newer API send the request fields it added as null.
    let body = json!({
        "catalog_id": "okta",
        "display_name": "Snake",
        "user_ids": ["u1"],
        "config": {"@type": STRUCT_TYPE_URL, "value": {}},
        "addedLater": null
    });

    let response = server.post("/api/v1/apps/app-1/connectors/create", body).await;

    let connector = expect_ok(response).await["connectorView"]["connector"].clone();
    assert_eq!(connector["displayName"], "Snake");
    assert_eq!(connector["userIds"], json!(["u1"]));
    server.stop().await;
}

#[tokio::test]
async fn unknown_body_fields_are_rejected_by_name() {
    let server = TestServer::start().await;
    let created = server.create_connector("app-1", "Named").await;
    let path = format!("/api/v1/apps/app-1/connectors/{}", created["id"].as_str().unwrap());

    // Ignoring `displayname` would clear the display name that the mask names.
    let update = json!({"connector": {"displayname": "Renamed"}, "updateMask": "displayName"});
    let body = expect_error(server.post(&path, update).await, 400, tonic::Code::InvalidArgument).await;

    assert_eq!(first_violation(&body)["field"], "connector.displayname");
    assert_eq!(first_violation(&body)["description"], "is not a field of connectord.v1.Connector");
    let read = expect_ok(server.get(&path).await).await;
    assert_eq!(read["connectorView"]["connector"]["displayName"], "Named");

    let create = json!({"catalogId": "okta", "config": {"@type": STRUCT_TYPE_URL, "value": {}}, "colour": "red"});
    let body = expect_error(server.post("/api/v1/apps/app-1/connectors/create", create).await, 400, tonic::Code::InvalidArgument).await;
    assert_eq!(first_violation(&body)["field"], "colour");
    server.stop().await;
}

#[tokio::test]
async fn create_delegated_leaves_config_unset() {
    let server = TestServer::start().await;
    let body = json!({"catalogId": "okta", "displayName": "Pending", "userIds": ["owner-1"]});

    let response = server.post("/api/v1/apps/app-1/connectors", body).await;

    let connector = expect_ok(response).await["connectorView"]["connector"].clone();
    assert_eq!(connector["displayName"], "Pending");
    assert_eq!(connector["appId"], "app-1");
    assert!(connector.get("config").is_none(), "{connector}");
    server.stop().await;
}

#[tokio::test]
async fn get_returns_the_created_connector() {
    let server = TestServer::start().await;
    let created = server.create_connector("app-1", "Okta").await;
    let id = created["id"].as_str().unwrap();

    let response = server.get(&format!("/api/v1/apps/app-1/connectors/{id}")).await;

    let reply = expect_ok(response).await;
    assert_eq!(reply["connectorView"]["connector"], created);
    server.stop().await;
}

/// Walks every page of `app-1` with the given parameter names and returns the ids in order.
async fn walk_pages(server: &TestServer, size_name: &str, token_name: &str) -> Vec<String> {
    let mut ids = Vec::new();
    let mut token = String::new();
    for _ in 0..10 {
        let mut path = format!("/api/v1/apps/app-1/connectors?{size_name}=2");
        if !token.is_empty() {
            path.push_str(&format!("&{token_name}={token}"));
        }
        let page = expect_ok(server.get(&path).await).await;
        let list = page["list"].as_array().cloned().unwrap_or_default();
        assert!(list.len() <= 2, "{page}");
        ids.extend(list.iter().map(|view| view["connector"]["id"].as_str().unwrap().to_owned()));
        match page.get("nextPageToken").and_then(Value::as_str) {
            Some(next) => token = next.to_owned(),
            None => return ids,
        }
    }
    panic!("more than 10 pages for 5 connectors");
}

#[tokio::test]
async fn list_pages_with_snake_and_camel_query_parameters() {
    let server = TestServer::start().await;
    let mut created = Vec::new();
    for index in 0..5 {
        let connector = server.create_connector("app-1", &format!("Connector {index}")).await;
        created.push(connector["id"].as_str().unwrap().to_owned());
    }
    server.create_connector("app-2", "Elsewhere").await;

    let snake = walk_pages(&server, "page_size", "page_token").await;
    let camel = walk_pages(&server, "pageSize", "pageToken").await;

    assert_eq!(snake, created);
    assert_eq!(camel, created);
    server.stop().await;
}

#[tokio::test]
async fn list_of_empty_app_is_empty_object() {
    let server = TestServer::start().await;

    let reply = expect_ok(server.get("/api/v1/apps/app-empty/connectors").await).await;

    assert_eq!(reply, json!({}));
    server.stop().await;
}

#[tokio::test]
async fn list_shows_deleted_connectors_on_request() {
    let server = TestServer::start().await;
    let connector = server.create_connector("app-1", "Doomed").await;
    let id = connector["id"].as_str().unwrap();
    let response = server.http.delete(server.url(&format!("/api/v1/apps/app-1/connectors/{id}"))).send().await.unwrap();
    expect_ok(response).await;

    let hidden = expect_ok(server.get("/api/v1/apps/app-1/connectors").await).await;
    let snake = expect_ok(server.get("/api/v1/apps/app-1/connectors?show_deleted=true").await).await;
    let camel = expect_ok(server.get("/api/v1/apps/app-1/connectors?showDeleted=true").await).await;

    assert!(hidden.get("list").is_none(), "{hidden}");
    for reply in [snake, camel] {
        assert_eq!(reply["list"][0]["connector"]["id"], json!(id), "{reply}");
        assert!(reply["list"][0]["connector"]["deletedAt"].is_string(), "{reply}");
    }
    server.stop().await;
}

#[tokio::test]
async fn update_accepts_every_mask_form() {
    let server = TestServer::start().await;
    let connector = server.create_connector("app-1", "Before").await;
    let id = connector["id"].as_str().unwrap();
    let path = format!("/api/v1/apps/app-1/connectors/{id}");
    let masks = [
        json!("display_name,description"),
        json!("displayName,description"),
        json!("displayName, description"),
        json!({"paths": ["display_name", "description"]}),
        json!(["displayName", "description"]),
    ];

    for (index, mask) in masks.into_iter().enumerate() {
        let name = format!("Name {index}");
        let body = json!({
            "connector": {"displayName": name, "description": "changed", "userIds": ["ignored"]},
            "updateMask": mask,
        });
        let reply = expect_ok(server.post(&path, body).await).await;
        let updated = &reply["connectorView"]["connector"];
        assert_eq!(updated["displayName"], json!(name), "mask {mask}");
        assert_eq!(updated["description"], "changed", "mask {mask}");
        assert_eq!(updated["userIds"], json!(["owner-1"]), "mask {mask} left user_ids alone");
    }
    server.stop().await;
}

#[tokio::test]
async fn update_without_mask_changes_set_fields() {
    let server = TestServer::start().await;
    let connector = server.create_connector("app-1", "Before").await;
    let id = connector["id"].as_str().unwrap();
    let body = json!({"connector": {"description": "only this"}});

    let reply = expect_ok(server.post(&format!("/api/v1/apps/app-1/connectors/{id}"), body).await).await;

    let updated = &reply["connectorView"]["connector"];
    assert_eq!(updated["description"], "only this");
    assert_eq!(updated["displayName"], "Before");
    assert_ne!(updated["etag"], connector["etag"]);
    server.stop().await;
}

#[tokio::test]
async fn update_takes_ids_from_the_path() {
    let server = TestServer::start().await;
    let connector = server.create_connector("app-1", "Before").await;
    let id = connector["id"].as_str().unwrap();
    let body = json!({
        "connector": {"appId": "app-other", "id": "other", "displayName": "After"},
        "update_mask": "display_name",
    });

    let reply = expect_ok(server.post(&format!("/api/v1/apps/app-1/connectors/{id}"), body).await).await;

    let updated = &reply["connectorView"]["connector"];
    assert_eq!(updated["id"], json!(id));
    assert_eq!(updated["appId"], "app-1");
    assert_eq!(updated["displayName"], "After");
    server.stop().await;
}

#[tokio::test]
async fn update_delegated_changes_owner_fields() {
    let server = TestServer::start().await;
    let created =
        expect_ok(server.post("/api/v1/apps/app-1/connectors", json!({"catalogId": "okta", "displayName": "Pending"})).await).await;
    let id = created["connectorView"]["connector"]["id"].as_str().unwrap().to_owned();
    let body = json!({
        "connector": {"displayName": "Done", "description": "set by owner", "userIds": ["owner-9"]},
        "updateMask": "displayName,description,userIds",
    });

    let reply = expect_ok(server.post(&format!("/api/v1/apps/app-1/connectors/{id}/delegated"), body).await).await;

    let updated = &reply["connectorView"]["connector"];
    assert_eq!(updated["displayName"], "Done");
    assert_eq!(updated["description"], "set by owner");
    assert_eq!(updated["userIds"], json!(["owner-9"]));
    server.stop().await;
}

#[tokio::test]
async fn delete_accepts_a_body_or_none() {
    let server = TestServer::start().await;
    let first = server.create_connector("app-1", "First").await;
    let second = server.create_connector("app-1", "Second").await;
    let third = server.create_connector("app-1", "Third").await;
    let url = |connector: &Value| server.url(&format!("/api/v1/apps/app-1/connectors/{}", connector["id"].as_str().unwrap()));

    let without_body = server.http.delete(url(&first)).send().await.unwrap();
    let empty_object = server.http.delete(url(&second)).json(&json!({})).send().await.unwrap();
    let with_etag = server.http.delete(url(&third)).json(&json!({"etag": third["etag"]})).send().await.unwrap();

    for response in [without_body, empty_object, with_etag] {
        assert_eq!(expect_ok(response).await, json!({}));
    }
    let reply = expect_ok(server.get(&format!("/api/v1/apps/app-1/connectors/{}", first["id"].as_str().unwrap())).await).await;
    assert!(reply["connectorView"]["connector"]["deletedAt"].is_string(), "{reply}");
    server.stop().await;
}

#[tokio::test]
async fn post_with_empty_body_is_an_empty_request() {
    let server = TestServer::start().await;

    let response = server.post_raw("/api/v1/apps/app-1/connectors", "").await;

    // The empty body decodes as an empty message, so the service names the missing field
    // instead of the gateway reporting bad JSON.
    let body = expect_error(response, 400, tonic::Code::InvalidArgument).await;
    assert_eq!(crate::support::first_violation(&body)["field"], "catalog_id");
    server.stop().await;
}

#[tokio::test]
async fn rest_and_grpc_share_one_service() {
    let server = TestServer::start().await;
    let mut grpc = server.grpc_client().await;
    let from_rest = server.create_connector("app-1", "Made over REST").await;

    let read = grpc
        .get(pb::ConnectorServiceGetRequest { app_id: "app-1".to_owned(), id: from_rest["id"].as_str().unwrap().to_owned() })
        .await
        .expect("gRPC Get of a REST-created connector")
        .into_inner();
    let made = grpc
        .create_delegated(pb::ConnectorServiceCreateDelegatedRequest {
            app_id: "app-1".to_owned(),
            catalog_id: "okta".to_owned(),
            display_name: "Made over gRPC".to_owned(),
            ..Default::default()
        })
        .await
        .expect("gRPC CreateDelegated")
        .into_inner();

    assert_eq!(read.connector_view.unwrap().connector.unwrap().display_name, "Made over REST");
    let id = made.connector_view.unwrap().connector.unwrap().id;
    let reply = expect_ok(server.get(&format!("/api/v1/apps/app-1/connectors/{id}")).await).await;
    assert_eq!(reply["connectorView"]["connector"]["displayName"], "Made over gRPC");
    server.stop().await;
}

/// Writes a descriptor set that defines `acme.v1.OktaConfig { string domain = 1; string
/// api_token_ref = 2; }` and returns its path inside `directory`.
fn write_okta_config_set(directory: &std::path::Path) -> std::path::PathBuf {
    use prost::Message;
    use prost_types::{
        DescriptorProto, FieldDescriptorProto, FileDescriptorProto, FileDescriptorSet,
        field_descriptor_proto::{Label, Type},
    };

    let string_field = |name: &str, json_name: &str, number: i32| FieldDescriptorProto {
        name: Some(name.to_owned()),
        json_name: Some(json_name.to_owned()),
        number: Some(number),
        label: Some(Label::Optional as i32),
        r#type: Some(Type::String as i32),
        ..Default::default()
    };
    let file = FileDescriptorProto {
        name: Some("acme/v1/okta_config.proto".to_owned()),
        package: Some("acme.v1".to_owned()),
        syntax: Some("proto3".to_owned()),
        message_type: vec![DescriptorProto {
            name: Some("OktaConfig".to_owned()),
            field: vec![string_field("domain", "domain", 1), string_field("api_token_ref", "apiTokenRef", 2)],
            ..Default::default()
        }],
        ..Default::default()
    };
    let path = directory.join("okta_config.pb");
    std::fs::write(&path, FileDescriptorSet { file: vec![file] }.encode_to_vec()).unwrap();
    path
}

#[tokio::test]
async fn operator_config_types_round_trip_as_json() {
    let descriptor_directory = tempfile::TempDir::new().unwrap();
    let set = write_okta_config_set(descriptor_directory.path());
    let server = TestServer::start_with(|options| options.descriptor_sets.push(set)).await;
    let config = json!({
        "@type": "type.googleapis.com/acme.v1.OktaConfig",
        "domain": "acme.okta.com",
        "api_token_ref": "vault:okta",
    });

    let created = server.post("/api/v1/apps/app-1/connectors/create", json!({"catalogId": "okta", "config": config})).await;

    let connector = expect_ok(created).await["connectorView"]["connector"].clone();
    assert_eq!(
        connector["config"],
        json!({"@type": "type.googleapis.com/acme.v1.OktaConfig", "domain": "acme.okta.com", "apiTokenRef": "vault:okta"})
    );
    let mut grpc = server.grpc_client().await;
    let stored = grpc
        .get(pb::ConnectorServiceGetRequest { app_id: "app-1".to_owned(), id: connector["id"].as_str().unwrap().to_owned() })
        .await
        .unwrap()
        .into_inner()
        .connector_view
        .unwrap()
        .connector
        .unwrap()
        .config
        .unwrap();
    assert_eq!(stored.type_url, "type.googleapis.com/acme.v1.OktaConfig");
    assert!(!stored.value.is_empty());
    server.stop().await;
}

#[tokio::test]
async fn unknown_config_fields_are_rejected() {
    let descriptor_directory = tempfile::TempDir::new().unwrap();
    let set = write_okta_config_set(descriptor_directory.path());
    let server = TestServer::start_with(|options| options.descriptor_sets.push(set)).await;
    let config = json!({"@type": "type.googleapis.com/acme.v1.OktaConfig", "domain": "acme.okta.com", "domian": "typo"});

    let response = server.post("/api/v1/apps/app-1/connectors/create", json!({"catalogId": "okta", "config": config})).await;

    let body = expect_error(response, 400, tonic::Code::InvalidArgument).await;
    let violation = crate::support::first_violation(&body);
    assert_eq!(violation["field"], "config.domian");
    assert!(violation["description"].as_str().unwrap().contains("acme.v1.OktaConfig"), "{body}");
    let listed = expect_ok(server.get("/api/v1/apps/app-1/connectors").await).await;
    assert_eq!(listed, json!({}), "the rejected create stored nothing");
    server.stop().await;
}

#[tokio::test]
async fn unregistered_config_type_is_rejected() {
    let server = TestServer::start().await;
    // connectord.v1.SyncConfig is in the pool, so the JSON decodes, but it is no config type.
    let config = json!({"@type": "type.googleapis.com/connectord.v1.SyncConfig", "syncResourceTypeIds": ["user"]});

    let response = server.post("/api/v1/apps/app-1/connectors/create", json!({"catalogId": "okta", "config": config})).await;

    let body = expect_error(response, 400, tonic::Code::InvalidArgument).await;
    assert_eq!(crate::support::first_violation(&body)["field"], "config.type_url");
    server.stop().await;
}
