//! The success path of every implemented ConnectorService RPC, and NOT_FOUND for
//! connectors that do not exist.

mod common;

use common::{
    TestServer, address_of, connector_of, create, create_delegated_request, create_request, delete_request, expect_code, get, get_request,
    list_request, struct_config, update_request,
};
use connectord::pb;
use tonic::Code;

fn timestamp_parts(timestamp: &Option<prost_types::Timestamp>) -> (i64, i32) {
    let timestamp = timestamp.as_ref().expect("timestamp is set");
    (timestamp.seconds, timestamp.nanos)
}

async fn create_returns_stored_connector() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let mut request = create_request("app-1", "Okta production");
    request.user_ids = vec!["owner-1".to_owned(), "owner-2".to_owned()];

    let response = client.create(request.clone()).await.expect("create").into_inner();
    let connector = connector_of(response.connector_view);

    assert_eq!(connector.id.len(), 26, "id {} is not a ULID", connector.id);
    assert!(connector.id.chars().all(|c| c.is_ascii_alphanumeric()), "id {} is not URL-safe", connector.id);
    assert_eq!(connector.app_id, "app-1");
    assert_eq!(connector.catalog_id, "okta");
    assert_eq!(connector.display_name, "Okta production");
    assert_eq!(connector.description, request.description);
    assert_eq!(connector.user_ids, ["owner-1", "owner-2"]);
    assert_eq!(connector.config, request.config);
    assert!(connector.created_at.is_some(), "created_at is missing");
    assert_eq!(connector.updated_at, connector.created_at);
    assert_eq!(connector.deleted_at, None);
    assert!(!connector.etag.is_empty(), "etag is empty");
    assert!(response.expanded.is_empty(), "expanded without an expand mask");
}

async fn create_assigns_ids_in_creation_order() {
    let server = TestServer::start().await;
    let mut client = server.client().await;

    let mut ids = Vec::new();
    for index in 0..20 {
        ids.push(create(&mut client, "app-1", &format!("connector {index}")).await.id);
    }

    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(ids, sorted);
}

async fn create_delegated_returns_connector_without_config() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let mut request = create_delegated_request("app-1", "pending setup");
    request.description = "owners complete the config".to_owned();

    let response = client.create_delegated(request).await.expect("create delegated").into_inner();
    let connector = connector_of(response.connector_view);

    assert_eq!(connector.app_id, "app-1");
    assert_eq!(connector.catalog_id, "okta");
    assert_eq!(connector.display_name, "pending setup");
    assert_eq!(connector.description, "owners complete the config");
    assert_eq!(connector.user_ids, ["owner-1"]);
    assert_eq!(connector.config, None);
    assert!(!connector.etag.is_empty(), "etag is empty");
}

async fn get_returns_created_connector() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let created = create(&mut client, "app-1", "read me").await;

    let response = client.get(get_request("app-1", &created.id)).await.expect("get").into_inner();

    assert_eq!(connector_of(response.connector_view), created);
    assert!(response.expanded.is_empty(), "expanded without an expand mask");
}

async fn get_of_missing_connector_is_not_found() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let created = create(&mut client, "app-1", "exists").await;

    let status = expect_code(client.get(get_request("app-1", "01ARZ3NDEKTSV4RRFFQ69G5FAV")).await, Code::NotFound);
    assert!(status.message().contains("01ARZ3NDEKTSV4RRFFQ69G5FAV"), "message lacks the id: {}", status.message());

    // The same id in another app is another connector.
    expect_code(client.get(get_request("app-2", &created.id)).await, Code::NotFound);
}

async fn list_returns_connectors_of_one_app_in_order() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let first = create(&mut client, "app-1", "first").await;
    let other_app = create(&mut client, "app-2", "other app").await;
    let second = create(&mut client, "app-1", "second").await;

    let page = client.list(list_request("app-1", 0, "")).await.expect("list").into_inner();

    let connectors: Vec<pb::Connector> = page.list.into_iter().map(|view| connector_of(Some(view))).collect();
    assert_eq!(connectors, [first, second]);
    assert_eq!(page.next_page_token, "", "a single page has no next page");
    assert!(page.expanded.is_empty(), "expanded without an expand mask");

    let other = client.list(list_request("app-2", 0, "")).await.expect("list app-2").into_inner();
    assert_eq!(other.list.len(), 1);
    assert_eq!(connector_of(other.list.into_iter().next()), other_app);
}

async fn list_of_empty_app_is_empty() {
    let server = TestServer::start().await;
    let mut client = server.client().await;

    let page = client.list(list_request("app-without-connectors", 10, "")).await.expect("list").into_inner();

    assert!(page.list.is_empty(), "unexpected connectors: {:?}", page.list);
    assert_eq!(page.next_page_token, "");
}

async fn update_changes_fields_and_keeps_the_rest() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let created = create(&mut client, "app-1", "before").await;

    let mut request = update_request(&created, &["display_name", "config", "sync_config", "profile_allow_list"]);
    let connector = request.connector.as_mut().expect("connector");
    connector.display_name = "after".to_owned();
    connector.config = Some(struct_config(&[("domain", "new.okta.com")]));
    connector.sync_config = Some(pb::SyncConfig { sync_resource_type_ids: vec!["user".to_owned(), "group".to_owned()] });
    connector.profile_allow_list = vec!["department".to_owned()];
    let response = client.update(request.clone()).await.expect("update").into_inner();
    let updated = connector_of(response.connector_view);

    assert_eq!(updated.id, created.id);
    assert_eq!(updated.display_name, "after");
    assert_eq!(updated.config, request.connector.as_ref().expect("connector").config);
    assert_eq!(updated.sync_config.as_ref().expect("sync_config").sync_resource_type_ids, ["user", "group"]);
    assert_eq!(updated.profile_allow_list, ["department"]);
    assert_eq!(updated.description, created.description);
    assert_eq!(updated.user_ids, created.user_ids);
    assert_eq!(updated.catalog_id, created.catalog_id);
    assert_eq!(updated.created_at, created.created_at);
    assert!(timestamp_parts(&updated.updated_at) >= timestamp_parts(&created.updated_at), "updated_at went back");
    assert_ne!(updated.etag, created.etag);
    assert_eq!(get(&mut client, "app-1", &created.id).await, updated);
}

async fn update_of_missing_connector_is_not_found() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let missing = pb::Connector { app_id: "app-1".to_owned(), id: "no-such-connector".to_owned(), ..Default::default() };

    let mut request = update_request(&missing, &["display_name"]);
    request.connector.as_mut().expect("connector").display_name = "renamed".to_owned();

    expect_code(client.update(request).await, Code::NotFound);
}

async fn update_delegated_completes_owner_fields() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let response = client.create_delegated(create_delegated_request("app-1", "pending")).await.expect("create delegated").into_inner();
    let created = connector_of(response.connector_view);

    let mut connector = address_of(&created);
    connector.display_name = "configured by owner".to_owned();
    connector.description = "owner notes".to_owned();
    connector.user_ids = vec!["owner-2".to_owned(), "owner-3".to_owned()];
    let request = pb::ConnectorServiceUpdateDelegatedRequest { connector: Some(connector), update_mask: None, expand_mask: None };
    let updated = connector_of(client.update_delegated(request).await.expect("update delegated").into_inner().connector_view);

    assert_eq!(updated.display_name, "configured by owner");
    assert_eq!(updated.description, "owner notes");
    assert_eq!(updated.user_ids, ["owner-2", "owner-3"]);
    assert_eq!(updated.config, None);
    assert_ne!(updated.etag, created.etag);
    assert_eq!(get(&mut client, "app-1", &created.id).await, updated);
}

async fn delete_returns_empty_response() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let created = create(&mut client, "app-1", "short-lived").await;

    let response = client.delete(delete_request("app-1", &created.id)).await.expect("delete").into_inner();

    assert_eq!(response, pb::ConnectorServiceDeleteResponse {});
}

async fn delete_of_missing_connector_is_not_found() {
    let server = TestServer::start().await;
    let mut client = server.client().await;

    expect_code(client.delete(delete_request("app-1", "no-such-connector")).await, Code::NotFound);
}

crate::both_backends!(
    create_returns_stored_connector,
    create_assigns_ids_in_creation_order,
    create_delegated_returns_connector_without_config,
    get_returns_created_connector,
    get_of_missing_connector_is_not_found,
    list_returns_connectors_of_one_app_in_order,
    list_of_empty_app_is_empty,
    update_changes_fields_and_keeps_the_rest,
    update_of_missing_connector_is_not_found,
    update_delegated_completes_owner_fields,
    delete_returns_empty_response,
    delete_of_missing_connector_is_not_found,
);
