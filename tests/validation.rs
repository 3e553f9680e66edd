//! Request validation: every rule returns INVALID_ARGUMENT with a BadRequest violation
//! that names the offending field, and values at the limits are accepted.

mod common;

use common::{
    TestServer, address_of, connector_of, create, create_delegated_request, create_request, delete_request, expect_invalid, get_request,
    list_request, update_request, violation_description, violation_fields,
};
use connectord::pb;
use tonic::Code;

/// Ids that break the rule "1 to 64 characters of [A-Za-z0-9_-]", with what each breaks.
fn invalid_ids() -> Vec<(&'static str, String)> {
    vec![
        ("empty", String::new()),
        ("65 characters", "a".repeat(65)),
        ("slash", "app/1".to_owned()),
        ("space", "app 1".to_owned()),
        ("dot", "app.1".to_owned()),
        ("non-ASCII letter", "äpp".to_owned()),
        ("NUL byte", "app\0".to_owned()),
    ]
}

/// Builds a valid id of the maximum length, 64, with every allowed character class.
fn max_length_id() -> String {
    let id = format!("Az09_-{}", "x".repeat(58));
    assert_eq!(id.len(), 64);
    id
}

#[tokio::test]
async fn create_rejects_invalid_app_id() {
    let server = TestServer::start().await;
    let mut client = server.client().await;

    for (case, app_id) in invalid_ids() {
        let result = client.create(create_request(&app_id, "name")).await;
        let status = expect_invalid(result, "app_id");
        assert!(!violation_description(&status, "app_id").is_empty(), "{case}: violation has no description");
    }
}

#[tokio::test]
async fn create_rejects_invalid_catalog_id() {
    let server = TestServer::start().await;
    let mut client = server.client().await;

    for (_case, catalog_id) in invalid_ids() {
        let mut request = create_request("app-1", "name");
        request.catalog_id = catalog_id;
        expect_invalid(client.create(request).await, "catalog_id");
    }
}

#[tokio::test]
async fn create_rejects_invalid_request_id() {
    let server = TestServer::start().await;
    let mut client = server.client().await;

    for (case, request_id) in invalid_ids() {
        if request_id.is_empty() {
            continue; // An empty request id means "no idempotency key".
        }
        let mut request = create_request("app-1", case);
        request.request_id = request_id;
        expect_invalid(client.create(request).await, "request_id");
    }
}

#[tokio::test]
async fn create_accepts_max_length_ids() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let mut request = create_request(&max_length_id(), "name");
    request.catalog_id = max_length_id();
    request.request_id = max_length_id();
    request.user_ids = vec![max_length_id()];

    let connector = connector_of(client.create(request).await.expect("create with 64-character ids").into_inner().connector_view);

    assert_eq!(connector.app_id, max_length_id());
    assert_eq!(connector.catalog_id, max_length_id());
    assert_eq!(connector.user_ids, [max_length_id()]);
}

#[tokio::test]
async fn create_limits_display_name_to_256_characters() {
    let server = TestServer::start().await;
    let mut client = server.client().await;

    // Characters, not bytes: 256 two-byte characters are accepted.
    for accepted in ["n".repeat(256), "é".repeat(256)] {
        let mut request = create_request("app-1", "");
        request.display_name = accepted.clone();
        let connector = connector_of(client.create(request).await.expect("create").into_inner().connector_view);
        assert_eq!(connector.display_name, accepted);
    }

    let mut request = create_request("app-1", "");
    request.display_name = "n".repeat(257);
    let status = expect_invalid(client.create(request).await, "display_name");
    assert!(violation_description(&status, "display_name").contains("257"), "description does not give the length: {status:?}");
}

#[tokio::test]
async fn create_rejects_control_characters_in_display_name() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let mut request = create_request("app-1", "");
    request.display_name = "bell\u{7}".to_owned();

    expect_invalid(client.create(request).await, "display_name");
}

#[tokio::test]
async fn create_limits_description_to_4096_characters() {
    let server = TestServer::start().await;
    let mut client = server.client().await;

    let mut request = create_request("app-1", "longest description");
    request.description = "d".repeat(4096);
    let connector = connector_of(client.create(request).await.expect("create").into_inner().connector_view);
    assert_eq!(connector.description.chars().count(), 4096);

    let mut request = create_request("app-1", "too long description");
    request.description = "d".repeat(4097);
    expect_invalid(client.create(request).await, "description");
}

#[tokio::test]
async fn create_limits_user_ids_to_100() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let user_ids = |count: usize| (0..count).map(|index| format!("user-{index}")).collect::<Vec<_>>();

    let mut request = create_request("app-1", "100 owners");
    request.user_ids = user_ids(100);
    let connector = connector_of(client.create(request).await.expect("create").into_inner().connector_view);
    assert_eq!(connector.user_ids, user_ids(100));

    let mut request = create_request("app-1", "101 owners");
    request.user_ids = user_ids(101);
    expect_invalid(client.create(request).await, "user_ids");
}

#[tokio::test]
async fn create_names_invalid_user_id_by_index() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let mut request = create_request("app-1", "bad owner");
    request.user_ids = vec!["owner-1".to_owned(), "not an id".to_owned(), String::new()];

    let status = expect_invalid(client.create(request).await, "user_ids[1]");

    assert!(violation_fields(&status).contains(&"user_ids[2]".to_owned()), "{status:?}");
}

#[tokio::test]
async fn create_removes_duplicate_user_ids() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let mut request = create_request("app-1", "duplicated owners");
    request.user_ids = ["b", "a", "b", "c", "a"].map(String::from).to_vec();

    let connector = connector_of(client.create(request).await.expect("create").into_inner().connector_view);

    assert_eq!(connector.user_ids, ["b", "a", "c"]);
}

#[tokio::test]
async fn create_requires_a_config() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let mut request = create_request("app-1", "name");
    request.config = None;

    let status = expect_invalid(client.create(request).await, "config");

    let description = violation_description(&status, "config");
    assert!(description.contains("CreateDelegated"), "the description does not name the alternative: {description}");
    let listed = client.list(list_request("app-1", 10, "")).await.expect("list").into_inner();
    assert!(listed.list.is_empty(), "a rejected create stored a connector");
}

#[tokio::test]
async fn create_reports_every_invalid_field() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let mut request = create_request("", "");
    request.catalog_id = "bad catalog".to_owned();
    request.display_name = "n".repeat(300);

    let status = expect_invalid(client.create(request).await, "app_id");

    let fields = violation_fields(&status);
    assert!(fields.contains(&"catalog_id".to_owned()), "{fields:?}");
    assert!(fields.contains(&"display_name".to_owned()), "{fields:?}");
}

#[tokio::test]
async fn create_delegated_applies_the_same_rules() {
    let server = TestServer::start().await;
    let mut client = server.client().await;

    for (_case, app_id) in invalid_ids() {
        expect_invalid(client.create_delegated(create_delegated_request(&app_id, "name")).await, "app_id");
    }
    let mut request = create_delegated_request("app-1", "name");
    request.catalog_id = String::new();
    expect_invalid(client.create_delegated(request).await, "catalog_id");

    let mut request = create_delegated_request("app-1", "name");
    request.display_name = "n".repeat(257);
    expect_invalid(client.create_delegated(request).await, "display_name");

    let mut request = create_delegated_request("app-1", "name");
    request.description = "d".repeat(4097);
    expect_invalid(client.create_delegated(request).await, "description");

    let mut request = create_delegated_request("app-1", "name");
    request.user_ids = (0..101).map(|index| format!("user-{index}")).collect();
    expect_invalid(client.create_delegated(request).await, "user_ids");

    let mut request = create_delegated_request("app-1", "name");
    request.user_ids = vec!["a/b".to_owned()];
    expect_invalid(client.create_delegated(request).await, "user_ids[0]");

    let mut request = create_delegated_request("app-1", "name");
    request.request_id = "key with spaces".to_owned();
    expect_invalid(client.create_delegated(request).await, "request_id");
}

#[tokio::test]
async fn get_rejects_invalid_ids() {
    let server = TestServer::start().await;
    let mut client = server.client().await;

    for (_case, bad) in invalid_ids() {
        expect_invalid(client.get(get_request(&bad, "connector-1")).await, "app_id");
        expect_invalid(client.get(get_request("app-1", &bad)).await, "id");
    }
}

#[tokio::test]
async fn delete_rejects_invalid_ids() {
    let server = TestServer::start().await;
    let mut client = server.client().await;

    for (_case, bad) in invalid_ids() {
        expect_invalid(client.delete(delete_request(&bad, "connector-1")).await, "app_id");
        expect_invalid(client.delete(delete_request("app-1", &bad)).await, "id");
    }
}

#[tokio::test]
async fn list_rejects_invalid_app_id() {
    let server = TestServer::start().await;
    let mut client = server.client().await;

    for (_case, app_id) in invalid_ids() {
        expect_invalid(client.list(list_request(&app_id, 10, "")).await, "app_id");
    }
}

#[tokio::test]
async fn list_rejects_negative_page_size() {
    let server = TestServer::start().await;
    let mut client = server.client().await;

    for page_size in [-1, i32::MIN] {
        let status = expect_invalid(client.list(list_request("app-1", page_size, "")).await, "page_size");
        assert!(
            violation_description(&status, "page_size").contains(&page_size.to_string()),
            "description does not give the value: {status:?}"
        );
    }
}

#[tokio::test]
async fn update_rejects_invalid_connector_ids() {
    let server = TestServer::start().await;
    let mut client = server.client().await;

    for (_case, bad) in invalid_ids() {
        let connector = pb::Connector { app_id: bad.clone(), id: "connector-1".to_owned(), ..Default::default() };
        let mut request = update_request(&connector, &["display_name"]);
        request.connector.as_mut().expect("connector").display_name = "renamed".to_owned();
        expect_invalid(client.update(request).await, "connector.app_id");

        let connector = pb::Connector { app_id: "app-1".to_owned(), id: bad, ..Default::default() };
        let mut request = update_request(&connector, &["display_name"]);
        request.connector.as_mut().expect("connector").display_name = "renamed".to_owned();
        expect_invalid(client.update(request).await, "connector.id");
    }
}

#[tokio::test]
async fn update_requires_a_connector() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let request = pb::ConnectorServiceUpdateRequest { connector: None, update_mask: None, expand_mask: None };

    expect_invalid(client.update(request).await, "connector");

    let request = pb::ConnectorServiceUpdateDelegatedRequest { connector: None, update_mask: None, expand_mask: None };
    expect_invalid(client.update_delegated(request).await, "connector");
}

#[tokio::test]
async fn update_applies_field_rules() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let created = create(&mut client, "app-1", "valid").await;

    let mut request = update_request(&created, &["display_name"]);
    request.connector.as_mut().expect("connector").display_name = "n".repeat(257);
    expect_invalid(client.update(request).await, "connector.display_name");

    let mut request = update_request(&created, &["description"]);
    request.connector.as_mut().expect("connector").description = "d".repeat(4097);
    expect_invalid(client.update(request).await, "connector.description");

    let mut request = update_request(&created, &["user_ids"]);
    request.connector.as_mut().expect("connector").user_ids = (0..101).map(|index| format!("user-{index}")).collect();
    expect_invalid(client.update(request).await, "connector.user_ids");

    let mut request = update_request(&created, &["user_ids"]);
    request.connector.as_mut().expect("connector").user_ids = vec!["ok".to_owned(), "not ok".to_owned()];
    expect_invalid(client.update(request).await, "connector.user_ids[1]");

    let unchanged = common::get(&mut client, "app-1", &created.id).await;
    assert_eq!(unchanged, created, "a rejected update changed the connector");
}

#[tokio::test]
async fn update_removes_duplicate_user_ids() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let created = create(&mut client, "app-1", "owners").await;

    let mut connector = address_of(&created);
    connector.user_ids = ["x", "y", "x"].map(String::from).to_vec();
    let request = pb::ConnectorServiceUpdateDelegatedRequest { connector: Some(connector), update_mask: None, expand_mask: None };
    let updated = connector_of(client.update_delegated(request).await.expect("update delegated").into_inner().connector_view);

    assert_eq!(updated.user_ids, ["x", "y"]);
}

#[tokio::test]
async fn update_delegated_applies_field_rules() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let created = create(&mut client, "app-1", "valid").await;
    let delegated = |connector: pb::Connector| pb::ConnectorServiceUpdateDelegatedRequest {
        connector: Some(connector),
        update_mask: None,
        expand_mask: None,
    };

    let mut connector = address_of(&created);
    connector.display_name = "n".repeat(257);
    expect_invalid(client.update_delegated(delegated(connector)).await, "connector.display_name");

    let mut connector = address_of(&created);
    connector.description = "d".repeat(4097);
    expect_invalid(client.update_delegated(delegated(connector)).await, "connector.description");

    let mut connector = address_of(&created);
    connector.app_id = "bad app".to_owned();
    connector.display_name = "renamed".to_owned();
    expect_invalid(client.update_delegated(delegated(connector)).await, "connector.app_id");
}

#[tokio::test]
async fn rejected_create_stores_nothing() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let mut request = create_request("app-1", "rejected");
    request.description = "d".repeat(4097);

    let status = client.create(request).await.expect_err("create with a long description");
    assert_eq!(status.code(), Code::InvalidArgument);

    let page = client.list(list_request("app-1", 0, "")).await.expect("list").into_inner();
    assert!(page.list.is_empty(), "a rejected create stored {:?}", page.list);
}

#[tokio::test]
async fn update_and_delete_reject_overlong_etag() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let created = create(&mut client, "app-1", "valid").await;
    let overlong = "e".repeat(65);

    let mut request = update_request(&created, &["display_name"]);
    let connector = request.connector.as_mut().expect("connector");
    connector.display_name = "renamed".to_owned();
    connector.etag = overlong.clone();
    expect_invalid(client.update(request).await, "connector.etag");

    let mut request = delete_request("app-1", &created.id);
    request.etag = overlong;
    expect_invalid(client.delete(request).await, "etag");

    assert_eq!(common::get(&mut client, "app-1", &created.id).await, created, "a rejected write changed the connector");
}

#[tokio::test]
async fn oversized_request_is_resource_exhausted() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let mut request = create_request("app-1", "huge");
    // Over the server's 4 MiB message limit, so it fails before any field rule runs.
    request.description = "d".repeat(connectord::server::MAX_MESSAGE_BYTES + 1);

    let status = client.create(request).await.expect_err("a request over the message limit fails");

    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
}
