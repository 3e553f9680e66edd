//! Update masks (AIP-134): which fields Update and UpdateDelegated change for each mask,
//! and which mask paths they reject.

mod common;

use common::{
    Client, TestServer, address_of, connector_of, create, expect_invalid, field_mask, get, struct_config, update_request,
    violation_description,
};
use connectord::pb;

/// Creates a connector with every client-writable field set to a non-default value.
async fn create_fully_populated(client: &mut Client) -> pb::Connector {
    let created = create(client, "app-1", "original name").await;
    let mut connector = address_of(&created);
    connector.sync_config = Some(pb::SyncConfig { sync_resource_type_ids: vec!["user".to_owned()] });
    connector.profile_allow_list = vec!["email".to_owned()];
    connector.profile_ignore_list = vec!["phone".to_owned()];
    connector.disable_check_bad_sync = true;
    let request = pb::ConnectorServiceUpdateRequest {
        connector: Some(connector),
        update_mask: Some(field_mask(&["sync_config", "profile_allow_list", "profile_ignore_list", "disable_check_bad_sync"])),
        expand_mask: None,
    };
    connector_of(client.update(request).await.expect("populate").into_inner().connector_view)
}

async fn update(client: &mut Client, request: pb::ConnectorServiceUpdateRequest) -> pb::Connector {
    connector_of(client.update(request).await.expect("update").into_inner().connector_view)
}

fn delegated(connector: pb::Connector, mask: Option<prost_types::FieldMask>) -> pb::ConnectorServiceUpdateDelegatedRequest {
    pb::ConnectorServiceUpdateDelegatedRequest { connector: Some(connector), update_mask: mask, expand_mask: None }
}

#[tokio::test]
async fn update_applies_snake_case_paths() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let original = create_fully_populated(&mut client).await;

    let mut request = update_request(&original, &["display_name", "user_ids", "profile_ignore_list"]);
    let connector = request.connector.as_mut().expect("connector");
    connector.display_name = "new name".to_owned();
    connector.user_ids = vec!["owner-9".to_owned()];
    connector.profile_ignore_list = vec!["title".to_owned()];
    // Set but not in the mask, so it must not change.
    connector.description = "ignored description".to_owned();
    let updated = update(&mut client, request).await;

    assert_eq!(updated.display_name, "new name");
    assert_eq!(updated.user_ids, ["owner-9"]);
    assert_eq!(updated.profile_ignore_list, ["title"]);
    assert_eq!(updated.description, original.description);
    assert_eq!(updated.config, original.config);
    assert_eq!(updated.profile_allow_list, original.profile_allow_list);
}

#[tokio::test]
async fn update_applies_lower_camel_paths() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let original = create_fully_populated(&mut client).await;

    let mut request =
        update_request(&original, &["displayName", "userIds", "profileAllowList", "disableCheckBadSync", "syncConfig.syncResourceTypeIds"]);
    let connector = request.connector.as_mut().expect("connector");
    connector.display_name = "camel name".to_owned();
    connector.user_ids = vec!["owner-7".to_owned()];
    connector.profile_allow_list = vec!["department".to_owned()];
    connector.disable_check_bad_sync = false;
    connector.sync_config = Some(pb::SyncConfig { sync_resource_type_ids: vec!["group".to_owned()] });
    let updated = update(&mut client, request).await;

    assert_eq!(updated.display_name, "camel name");
    assert_eq!(updated.user_ids, ["owner-7"]);
    assert_eq!(updated.profile_allow_list, ["department"]);
    assert!(!updated.disable_check_bad_sync, "disableCheckBadSync was not cleared");
    assert_eq!(updated.sync_config.as_ref().expect("sync_config").sync_resource_type_ids, ["group"]);
    assert_eq!(updated.description, original.description);
}

#[tokio::test]
async fn update_clears_masked_fields_left_unset() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let original = create_fully_populated(&mut client).await;

    let request = update_request(&original, &["description", "config", "sync_config", "profile_allow_list"]);
    let updated = update(&mut client, request).await;

    assert_eq!(updated.description, "");
    assert_eq!(updated.config, None);
    assert_eq!(updated.sync_config, None);
    assert!(updated.profile_allow_list.is_empty(), "profile_allow_list: {:?}", updated.profile_allow_list);
    assert_eq!(updated.display_name, original.display_name);
    assert_eq!(updated.profile_ignore_list, original.profile_ignore_list);
}

#[tokio::test]
async fn update_wildcard_replaces_every_writable_field() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let original = create_fully_populated(&mut client).await;

    let mut request = update_request(&original, &["*"]);
    request.connector.as_mut().expect("connector").display_name = "only this is set".to_owned();
    let updated = update(&mut client, request).await;

    assert_eq!(updated.display_name, "only this is set");
    assert_eq!(updated.description, "");
    assert!(updated.user_ids.is_empty(), "user_ids: {:?}", updated.user_ids);
    assert_eq!(updated.config, None);
    assert_eq!(updated.sync_config, None);
    assert!(updated.profile_allow_list.is_empty(), "profile_allow_list: {:?}", updated.profile_allow_list);
    assert!(updated.profile_ignore_list.is_empty(), "profile_ignore_list: {:?}", updated.profile_ignore_list);
    assert!(!updated.disable_check_bad_sync, "disable_check_bad_sync was not cleared");
    // Immutable and server-written fields are outside "*".
    assert_eq!(updated.id, original.id);
    assert_eq!(updated.app_id, original.app_id);
    assert_eq!(updated.catalog_id, original.catalog_id);
    assert_eq!(updated.created_at, original.created_at);
}

#[tokio::test]
async fn update_without_mask_changes_only_set_fields() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let original = create_fully_populated(&mut client).await;

    let mut connector = address_of(&original);
    connector.description = "new description".to_owned();
    connector.profile_ignore_list = vec!["nickname".to_owned()];
    let request = pb::ConnectorServiceUpdateRequest { connector: Some(connector), update_mask: None, expand_mask: None };
    let updated = update(&mut client, request).await;

    assert_eq!(updated.description, "new description");
    assert_eq!(updated.profile_ignore_list, ["nickname"]);
    assert_eq!(updated.display_name, original.display_name);
    assert_eq!(updated.user_ids, original.user_ids);
    assert_eq!(updated.config, original.config);
    assert_eq!(updated.sync_config, original.sync_config);
    assert_eq!(updated.profile_allow_list, original.profile_allow_list);
    assert!(updated.disable_check_bad_sync, "an unset bool was written");
}

#[tokio::test]
async fn update_with_empty_mask_changes_only_set_fields() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let original = create_fully_populated(&mut client).await;

    let mut request = update_request(&original, &[]);
    request.connector.as_mut().expect("connector").config = Some(struct_config(&[("domain", "other.okta.com")]));
    let updated = update(&mut client, request.clone()).await;

    assert_eq!(updated.config, request.connector.expect("connector").config);
    assert_eq!(updated.display_name, original.display_name);
    assert_eq!(updated.description, original.description);
    assert_eq!(updated.user_ids, original.user_ids);
    assert_eq!(updated.sync_config, original.sync_config);
    assert_eq!(updated.profile_allow_list, original.profile_allow_list);
    assert_eq!(updated.profile_ignore_list, original.profile_ignore_list);
    assert!(updated.disable_check_bad_sync, "an unset bool was written");
}

#[tokio::test]
async fn update_rejects_unknown_mask_path() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let original = create(&mut client, "app-1", "original").await;

    for path in ["nonsense", "display_name.first", "DisplayName", "connector.display_name"] {
        let mut request = update_request(&original, &["display_name", path]);
        request.connector.as_mut().expect("connector").display_name = "renamed".to_owned();
        let status = expect_invalid(client.update(request).await, "update_mask.paths[1]");
        let description = violation_description(&status, "update_mask.paths[1]");
        assert!(description.contains(path), "description does not name {path}: {description}");
    }

    assert_eq!(get(&mut client, "app-1", &original.id).await, original, "a rejected update changed the connector");
}

#[tokio::test]
async fn update_rejects_immutable_mask_paths() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let original = create(&mut client, "app-1", "original").await;

    for path in ["catalog_id", "catalogId", "id", "app_id", "appId"] {
        let mut request = update_request(&original, &[path]);
        request.connector.as_mut().expect("connector").catalog_id = "other-catalog".to_owned();
        let status = expect_invalid(client.update(request).await, "update_mask.paths[0]");
        let description = violation_description(&status, "update_mask.paths[0]");
        assert!(description.contains(path), "description does not name {path}: {description}");
        assert!(description.contains("immutable"), "description does not give the rule: {description}");
    }

    assert_eq!(get(&mut client, "app-1", &original.id).await.catalog_id, "okta");
}

#[tokio::test]
async fn update_rejects_server_written_mask_paths() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let original = create(&mut client, "app-1", "original").await;

    let paths = [
        "status",
        "status.last_error",
        "etag",
        "created_at",
        "createdAt",
        "updated_at",
        "deleted_at",
        "download_url",
        "oauth_authorized_as",
        "can_resume_sync",
        "sync_disabled_at",
        "sync_disabled_category",
        "syncDisabledReason",
        "config_secrets",
        "configSecrets",
    ];
    for path in paths {
        let status = expect_invalid(client.update(update_request(&original, &[path])).await, "update_mask.paths[0]");
        let description = violation_description(&status, "update_mask.paths[0]");
        assert!(description.contains(path), "description does not name {path}: {description}");
        assert!(description.contains("written by the server"), "path {path}: {description}");
    }

    assert_eq!(get(&mut client, "app-1", &original.id).await, original, "a rejected update changed the connector");
}

#[tokio::test]
async fn update_rejects_wildcard_with_other_paths() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let original = create(&mut client, "app-1", "original").await;

    expect_invalid(client.update(update_request(&original, &["*", "display_name"])).await, "update_mask");
}

#[tokio::test]
async fn update_delegated_changes_owner_fields() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let original = create_fully_populated(&mut client).await;

    let mut connector = address_of(&original);
    connector.display_name = "delegated name".to_owned();
    connector.user_ids = vec!["owner-5".to_owned()];
    let request = delegated(connector, Some(field_mask(&["display_name", "userIds", "description"])));
    let updated = connector_of(client.update_delegated(request).await.expect("update delegated").into_inner().connector_view);

    assert_eq!(updated.display_name, "delegated name");
    assert_eq!(updated.user_ids, ["owner-5"]);
    assert_eq!(updated.description, "", "a masked unset description was not cleared");
    assert_eq!(updated.config, original.config);
}

#[tokio::test]
async fn update_delegated_wildcard_leaves_other_fields() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let original = create_fully_populated(&mut client).await;

    let mut connector = address_of(&original);
    connector.display_name = "wildcard name".to_owned();
    let request = delegated(connector, Some(field_mask(&["*"])));
    let updated = connector_of(client.update_delegated(request).await.expect("update delegated").into_inner().connector_view);

    assert_eq!(updated.display_name, "wildcard name");
    assert_eq!(updated.description, "");
    assert!(updated.user_ids.is_empty(), "user_ids: {:?}", updated.user_ids);
    assert_eq!(updated.config, original.config);
    assert_eq!(updated.sync_config, original.sync_config);
    assert_eq!(updated.profile_allow_list, original.profile_allow_list);
    assert_eq!(updated.profile_ignore_list, original.profile_ignore_list);
    assert!(updated.disable_check_bad_sync, "disable_check_bad_sync was cleared");
}

#[tokio::test]
async fn update_delegated_rejects_other_mask_paths() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let original = create_fully_populated(&mut client).await;

    for path in ["config", "sync_config", "profileAllowList", "profile_ignore_list", "disable_check_bad_sync"] {
        let request = delegated(address_of(&original), Some(field_mask(&["display_name", path])));
        let status = expect_invalid(client.update_delegated(request).await, "update_mask.paths[1]");
        let description = violation_description(&status, "update_mask.paths[1]");
        assert!(description.contains(path), "description does not name {path}: {description}");
    }
    for path in ["catalog_id", "status", "nonsense"] {
        let request = delegated(address_of(&original), Some(field_mask(&[path])));
        expect_invalid(client.update_delegated(request).await, "update_mask.paths[0]");
    }

    assert_eq!(get(&mut client, "app-1", &original.id).await, original, "a rejected update changed the connector");
}

#[tokio::test]
async fn update_delegated_rejects_set_fields_outside_scope() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let original = create_fully_populated(&mut client).await;

    let mut connector = address_of(&original);
    connector.display_name = "allowed".to_owned();
    connector.config = Some(struct_config(&[("domain", "sneaky.okta.com")]));
    expect_invalid(client.update_delegated(delegated(connector, None)).await, "connector.config");

    let mut connector = address_of(&original);
    connector.profile_allow_list = vec!["salary".to_owned()];
    expect_invalid(client.update_delegated(delegated(connector, Some(field_mask(&[])))).await, "connector.profile_allow_list");

    assert_eq!(get(&mut client, "app-1", &original.id).await, original, "a rejected update changed the connector");
}
