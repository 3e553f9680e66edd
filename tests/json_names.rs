//! Canonical JSON names of the API messages. JSON clients of the reference API read these
//! exact keys and silently drop any other, so each fully populated message must serialize
//! to exactly the expected set of keys.

use std::collections::BTreeSet;

use connectord::pb;
use prost::{Message, Name};
use prost_reflect::{DescriptorPool, DynamicMessage};
use serde_json::Value;

fn timestamp(seconds: i64) -> Option<prost_types::Timestamp> {
    Some(prost_types::Timestamp { seconds, nanos: 500 })
}

fn struct_any() -> prost_types::Any {
    let fields =
        [("domain".to_owned(), prost_types::Value { kind: Some(prost_types::value::Kind::StringValue("example.okta.com".to_owned())) })];
    let value = prost_types::Struct { fields: fields.into_iter().collect() };
    prost_types::Any { type_url: "type.googleapis.com/google.protobuf.Struct".to_owned(), value: value.encode_to_vec() }
}

fn full_status() -> pb::ConnectorStatus {
    pb::ConnectorStatus {
        status: pb::connector_status::SyncStatus::Running.into(),
        last_error: "timeout".to_owned(),
        started_at: timestamp(1),
        completed_at: timestamp(2),
        updated_at: timestamp(3),
    }
}

fn full_connector() -> pb::Connector {
    pb::Connector {
        id: "01HZX0000000000000000000AB".to_owned(),
        app_id: "app-1".to_owned(),
        catalog_id: "okta".to_owned(),
        display_name: "Okta".to_owned(),
        description: "production tenant".to_owned(),
        user_ids: vec!["owner-1".to_owned()],
        config: Some(struct_any()),
        status: Some(full_status()),
        oauth_authorized_as: Some(pb::OAuth2AuthorizedAs { auth_email: "admin@example.com".to_owned(), authorized_at: timestamp(4) }),
        download_url: "https://files.example.com/upload.xlsx".to_owned(),
        created_at: timestamp(5),
        updated_at: timestamp(6),
        deleted_at: timestamp(7),
        sync_config: Some(pb::SyncConfig { sync_resource_type_ids: vec!["user".to_owned()] }),
        profile_allow_list: vec!["email".to_owned()],
        profile_ignore_list: vec!["phone".to_owned()],
        disable_check_bad_sync: true,
        can_resume_sync: true,
        sync_disabled_at: timestamp(8),
        sync_disabled_category: "auth".to_owned(),
        sync_disabled_reason: "token expired".to_owned(),
        etag: "\"2\"".to_owned(),
        schedule: Some(pb::ConnectorScheduleCron { cron_spec: "0 3 * * *".to_owned(), timezone: "UTC".to_owned() }),
        config_secrets: vec![pb::ConfigSecret { path: "api_key".to_owned(), set: true, fingerprint: "00ff".to_owned() }],
    }
}

fn full_view() -> pb::ConnectorView {
    pb::ConnectorView { connector: Some(full_connector()), app_path: "$.expanded[0]".to_owned(), users_path: "$.expanded[1]".to_owned() }
}

fn full_credential() -> pb::ConnectorCredential {
    pb::ConnectorCredential {
        id: "credential-1".to_owned(),
        app_id: "app-1".to_owned(),
        connector_id: "connector-1".to_owned(),
        client_id: "client-1".to_owned(),
        display_name: "worker".to_owned(),
        created_at: timestamp(1),
        updated_at: timestamp(2),
        deleted_at: timestamp(3),
        expires_time: timestamp(4),
        last_used_at: timestamp(5),
        client_secret: "secret".to_owned(),
    }
}

fn full_expand_mask() -> Option<pb::ConnectorExpandMask> {
    Some(pb::ConnectorExpandMask { paths: vec!["app".to_owned()] })
}

/// Serializes `message` to JSON through prost-reflect with the default options, the way a
/// JSON gateway built on the served descriptors would.
fn to_json<M: Message + Name>(message: &M) -> Value {
    let pool = DescriptorPool::decode(pb::FILE_DESCRIPTOR_SET).expect("the built-in descriptor set decodes");
    let descriptor =
        pool.get_message_by_name(&M::full_name()).unwrap_or_else(|| panic!("{} is missing from the descriptor set", M::full_name()));
    let dynamic = DynamicMessage::decode(descriptor, message.encode_to_vec().as_slice()).expect("decode as DynamicMessage");
    serde_json::to_value(&dynamic).unwrap_or_else(|error| panic!("serialize {}: {error}", M::full_name()))
}

fn keys(json: &Value) -> BTreeSet<String> {
    json.as_object().unwrap_or_else(|| panic!("not a JSON object: {json}")).keys().cloned().collect()
}

fn names(expected: &[&str]) -> BTreeSet<String> {
    expected.iter().map(|name| (*name).to_owned()).collect()
}

#[test]
fn connector_json_keys_match_contract() {
    let json = to_json(&full_connector());

    let expected = names(&[
        "id",
        "appId",
        "catalogId",
        "displayName",
        "description",
        "userIds",
        "config",
        "status",
        "oauthAuthorizedAs",
        "downloadUrl",
        "createdAt",
        "updatedAt",
        "deletedAt",
        "syncConfig",
        "profileAllowList",
        "profileIgnoreList",
        "disableCheckBadSync",
        "canResumeSync",
        "syncDisabledAt",
        "syncDisabledCategory",
        "syncDisabledReason",
        "etag",
        "schedule",
        "configSecrets",
    ]);
    assert_eq!(keys(&json), expected);
}

#[test]
fn connector_nested_json_keys_match_contract() {
    let json = to_json(&full_connector());

    assert_eq!(keys(&json["status"]), names(&["status", "lastError", "startedAt", "completedAt", "updatedAt"]));
    assert_eq!(keys(&json["oauthAuthorizedAs"]), names(&["authEmail", "authorizedAt"]));
    assert_eq!(keys(&json["syncConfig"]), names(&["syncResourceTypeIds"]));
    assert_eq!(keys(&json["config"]), names(&["@type", "value"]));
}

#[test]
fn connector_json_values_use_canonical_forms() {
    let json = to_json(&full_connector());

    assert_eq!(json["status"]["status"], "SYNC_STATUS_RUNNING");
    assert_eq!(json["config"]["@type"], "type.googleapis.com/google.protobuf.Struct");
    assert_eq!(json["config"]["value"]["domain"], "example.okta.com");
    assert_eq!(json["createdAt"], "1970-01-01T00:00:05.000000500Z");
    assert_eq!(json["userIds"], serde_json::json!(["owner-1"]));
}

#[test]
fn connector_status_json_keys_match_contract() {
    let json = to_json(&full_status());

    assert_eq!(keys(&json), names(&["status", "lastError", "startedAt", "completedAt", "updatedAt"]));
}

#[test]
fn connector_view_json_keys_match_contract() {
    let json = to_json(&full_view());

    assert_eq!(keys(&json), names(&["connector", "appPath", "usersPath"]));
}

#[test]
fn credential_json_keys_match_contract() {
    let json = to_json(&full_credential());

    let expected = names(&[
        "id",
        "appId",
        "connectorId",
        "clientId",
        "displayName",
        "createdAt",
        "updatedAt",
        "deletedAt",
        "expiresTime",
        "lastUsedAt",
        "clientSecret",
    ]);
    assert_eq!(keys(&json), expected);
}

#[test]
fn connector_responses_json_keys_match_contract() {
    let expected = names(&["connectorView", "expanded"]);

    let create = pb::ConnectorServiceCreateResponse { connector_view: Some(full_view()), expanded: vec![struct_any()] };
    assert_eq!(keys(&to_json(&create)), expected, "Create");
    let delegated = pb::ConnectorServiceCreateDelegatedResponse { connector_view: Some(full_view()), expanded: vec![struct_any()] };
    assert_eq!(keys(&to_json(&delegated)), expected, "CreateDelegated");
    let get = pb::ConnectorServiceGetResponse { connector_view: Some(full_view()), expanded: vec![struct_any()] };
    assert_eq!(keys(&to_json(&get)), expected, "Get");
    let update = pb::ConnectorServiceUpdateResponse { connector_view: Some(full_view()), expanded: vec![struct_any()] };
    assert_eq!(keys(&to_json(&update)), expected, "Update");
    let update_delegated = pb::ConnectorServiceUpdateDelegatedResponse { connector_view: Some(full_view()), expanded: vec![struct_any()] };
    assert_eq!(keys(&to_json(&update_delegated)), expected, "UpdateDelegated");
}

#[test]
fn list_response_json_keys_match_contract() {
    let list =
        pb::ConnectorServiceListResponse { list: vec![full_view()], next_page_token: "token".to_owned(), expanded: vec![struct_any()] };

    assert_eq!(keys(&to_json(&list)), names(&["list", "nextPageToken", "expanded"]));
}

#[test]
fn credential_responses_json_keys_match_contract() {
    let get = pb::ConnectorServiceGetCredentialsResponse { credential: Some(full_credential()) };
    assert_eq!(keys(&to_json(&get)), names(&["credential"]));

    let rotate = pb::ConnectorServiceRotateCredentialResponse { credential: Some(full_credential()), client_secret: "secret".to_owned() };
    assert_eq!(keys(&to_json(&rotate)), names(&["credential", "clientSecret"]));
}

#[test]
fn download_url_response_json_keys_match_contract() {
    let response =
        pb::ConnectorServiceGetConnectorSyncDownloadUrlResponse { download_url: "https://files.example.com/sync.c1z".to_owned() };

    assert_eq!(keys(&to_json(&response)), names(&["downloadUrl"]));
}

#[test]
fn empty_responses_serialize_as_empty_objects() {
    assert_eq!(to_json(&pb::ConnectorServiceDeleteResponse {}), serde_json::json!({}));
    assert_eq!(to_json(&pb::ConnectorServicePauseSyncResponse {}), serde_json::json!({}));
}

#[test]
fn update_requests_json_keys_match_contract() {
    let expected = names(&["connector", "updateMask", "expandMask"]);
    let mask = prost_types::FieldMask { paths: vec!["display_name".to_owned(), "user_ids".to_owned()] };

    let update = pb::ConnectorServiceUpdateRequest {
        connector: Some(full_connector()),
        update_mask: Some(mask.clone()),
        expand_mask: full_expand_mask(),
    };
    let json = to_json(&update);
    assert_eq!(keys(&json), expected, "Update");
    assert_eq!(json["updateMask"], "displayName,userIds");
    assert_eq!(keys(&json["expandMask"]), names(&["paths"]));

    let delegated = pb::ConnectorServiceUpdateDelegatedRequest {
        connector: Some(full_connector()),
        update_mask: Some(mask),
        expand_mask: full_expand_mask(),
    };
    assert_eq!(keys(&to_json(&delegated)), expected, "UpdateDelegated");
}

#[test]
fn create_request_json_keys_match_contract() {
    let request = pb::ConnectorServiceCreateRequest {
        app_id: "app-1".to_owned(),
        catalog_id: "okta".to_owned(),
        display_name: "Okta".to_owned(),
        description: "production tenant".to_owned(),
        user_ids: vec!["owner-1".to_owned()],
        config: Some(struct_any()),
        expand_mask: full_expand_mask(),
        request_id: "retry-key".to_owned(),
    };

    let expected = names(&["appId", "catalogId", "displayName", "description", "userIds", "config", "expandMask", "requestId"]);
    assert_eq!(keys(&to_json(&request)), expected);
}

#[test]
fn list_request_json_keys_match_contract() {
    let request =
        pb::ConnectorServiceListRequest { app_id: "app-1".to_owned(), page_size: 10, page_token: "token".to_owned(), show_deleted: true };

    assert_eq!(keys(&to_json(&request)), names(&["appId", "pageSize", "pageToken", "showDeleted"]));
}

#[test]
fn schedule_request_json_keys_match_contract() {
    use pb::connector_service_update_connector_schedule_request::Schedule;
    let request = pb::ConnectorServiceUpdateConnectorScheduleRequest {
        app_id: "app-1".to_owned(),
        connector_id: "connector-1".to_owned(),
        schedule: Some(Schedule::Cron(pb::ConnectorScheduleCron {
            cron_spec: "0 * * * *".to_owned(),
            timezone: "Europe/Berlin".to_owned(),
        })),
    };

    let json = to_json(&request);
    assert_eq!(keys(&json), names(&["appId", "connectorId", "cron"]));
    assert_eq!(keys(&json["cron"]), names(&["cronSpec", "timezone"]));
}
