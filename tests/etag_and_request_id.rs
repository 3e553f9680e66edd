//! Optimistic concurrency and idempotency: the etag changes on every write, a stale etag
//! makes a write fail with ABORTED and change nothing, and a repeated request_id returns
//! the connector of the first Create instead of creating another.

mod common;

use std::collections::HashSet;

use common::{
    TestServer, address_of, connector_of, create, create_delegated_request, create_request, delete_request, expect_code, get, list_all_ids,
    update_request,
};
use connectord::pb;
use tonic::Code;

async fn etag_changes_on_every_write() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let created = create(&mut client, "app-1", "v1").await;

    let mut request = update_request(&created, &["display_name"]);
    request.connector.as_mut().expect("connector").display_name = "v2".to_owned();
    let after_update = connector_of(client.update(request).await.expect("update").into_inner().connector_view);

    let mut connector = address_of(&created);
    connector.description = "v3".to_owned();
    let request = pb::ConnectorServiceUpdateDelegatedRequest { connector: Some(connector), update_mask: None, expand_mask: None };
    let after_delegated = connector_of(client.update_delegated(request).await.expect("update delegated").into_inner().connector_view);

    // The same content again is still a write.
    let mut request = update_request(&created, &["description"]);
    request.connector.as_mut().expect("connector").description = "v3".to_owned();
    let after_rewrite = connector_of(client.update(request).await.expect("rewrite").into_inner().connector_view);

    client.delete(delete_request("app-1", &created.id)).await.expect("delete");
    let after_delete = get(&mut client, "app-1", &created.id).await;

    let etags = [&created.etag, &after_update.etag, &after_delegated.etag, &after_rewrite.etag, &after_delete.etag];
    let distinct: HashSet<&&String> = etags.iter().collect();
    assert_eq!(distinct.len(), etags.len(), "etags repeat: {etags:?}");
}

async fn get_returns_etag_of_last_write() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let created = create(&mut client, "app-1", "v1").await;

    let mut request = update_request(&created, &["display_name"]);
    request.connector.as_mut().expect("connector").display_name = "v2".to_owned();
    let updated = connector_of(client.update(request).await.expect("update").into_inner().connector_view);

    assert_eq!(get(&mut client, "app-1", &created.id).await.etag, updated.etag);
}

async fn update_with_current_etag_succeeds() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let created = create(&mut client, "app-1", "v1").await;

    let mut request = update_request(&created, &["display_name"]);
    let connector = request.connector.as_mut().expect("connector");
    connector.display_name = "v2".to_owned();
    connector.etag = created.etag.clone();
    let updated = connector_of(client.update(request).await.expect("update with current etag").into_inner().connector_view);

    assert_eq!(updated.display_name, "v2");
}

async fn update_accepts_etag_without_quotes() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let created = create(&mut client, "app-1", "v1").await;

    let mut request = update_request(&created, &["display_name"]);
    let connector = request.connector.as_mut().expect("connector");
    connector.display_name = "v2".to_owned();
    connector.etag = created.etag.trim_matches('"').to_owned();
    let updated = connector_of(client.update(request).await.expect("update with bare etag").into_inner().connector_view);
    assert_eq!(updated.display_name, "v2");

    let mut stale = update_request(&created, &["display_name"]);
    stale.connector.as_mut().expect("connector").etag = created.etag.trim_matches('"').to_owned();
    let status = client.update(stale).await.expect_err("stale bare etag");
    assert_eq!(status.code(), Code::Aborted);
    let expected_start = format!("etag {} does not match the current etag {} of ", created.etag.trim_matches('"'), updated.etag);
    assert!(status.message().starts_with(&expected_start), "{}", status.message());
}

async fn update_with_stale_etag_is_aborted() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let created = create(&mut client, "app-1", "v1").await;
    let mut request = update_request(&created, &["display_name"]);
    request.connector.as_mut().expect("connector").display_name = "v2".to_owned();
    let current = connector_of(client.update(request).await.expect("update").into_inner().connector_view);

    let mut stale = update_request(&created, &["display_name"]);
    let connector = stale.connector.as_mut().expect("connector");
    connector.display_name = "lost update".to_owned();
    connector.etag = created.etag.clone();
    let status = client.update(stale.clone()).await.expect_err("stale etag");
    assert_eq!(status.code(), Code::Aborted);
    let expected_start = format!("etag {} does not match the current etag {} of ", created.etag, current.etag);
    assert!(status.message().starts_with(&expected_start), "{}", status.message());

    let mut invented = stale;
    invented.connector.as_mut().expect("connector").etag = "\"no-such-etag\"".to_owned();
    expect_code(client.update(invented).await, Code::Aborted);

    assert_eq!(get(&mut client, "app-1", &created.id).await, current, "a rejected update changed the connector");
}

async fn update_delegated_with_stale_etag_is_aborted() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let created = create(&mut client, "app-1", "v1").await;
    let mut request = update_request(&created, &["description"]);
    request.connector.as_mut().expect("connector").description = "changed".to_owned();
    let current = connector_of(client.update(request).await.expect("update").into_inner().connector_view);

    let mut connector = address_of(&created);
    connector.display_name = "lost update".to_owned();
    connector.etag = created.etag.clone();
    let stale = pb::ConnectorServiceUpdateDelegatedRequest { connector: Some(connector), update_mask: None, expand_mask: None };
    expect_code(client.update_delegated(stale).await, Code::Aborted);

    assert_eq!(get(&mut client, "app-1", &created.id).await, current, "a rejected update changed the connector");
}

async fn delete_with_stale_etag_is_aborted() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let created = create(&mut client, "app-1", "v1").await;
    let mut request = update_request(&created, &["display_name"]);
    request.connector.as_mut().expect("connector").display_name = "v2".to_owned();
    let current = connector_of(client.update(request).await.expect("update").into_inner().connector_view);

    let mut stale = delete_request("app-1", &created.id);
    stale.etag = created.etag.clone();
    expect_code(client.delete(stale).await, Code::Aborted);

    let after = get(&mut client, "app-1", &created.id).await;
    assert_eq!(after.deleted_at, None, "a rejected delete deleted the connector");
    assert_eq!(after, current, "a rejected delete changed the connector");
    assert_eq!(list_all_ids(&mut client, "app-1", false).await, [created.id]);
}

async fn delete_with_current_etag_succeeds() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let created = create(&mut client, "app-1", "v1").await;

    let mut request = delete_request("app-1", &created.id);
    request.etag = created.etag.clone();
    client.delete(request).await.expect("delete with current etag");

    assert!(get(&mut client, "app-1", &created.id).await.deleted_at.is_some(), "deleted_at is not set");
}

async fn concurrent_updates_with_one_etag_succeed_once() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let created = create(&mut client, "app-1", "v1").await;

    let updates: Vec<_> = (0..8)
        .map(|index| {
            let mut client = client.clone();
            let mut request = update_request(&created, &["display_name"]);
            let connector = request.connector.as_mut().expect("connector");
            connector.display_name = format!("writer {index}");
            connector.etag = created.etag.clone();
            tokio::spawn(async move {
                client
                    .update(request)
                    .await
                    .map(|response| connector_of(response.into_inner().connector_view))
                    .map_err(|status| status.code())
            })
        })
        .collect();
    let mut outcomes = Vec::new();
    for update in updates {
        outcomes.push(update.await.expect("update task"));
    }

    let winners: Vec<&pb::Connector> = outcomes.iter().filter_map(|outcome| outcome.as_ref().ok()).collect();
    assert_eq!(winners.len(), 1, "{outcomes:?}");
    assert!(outcomes.iter().all(|outcome| matches!(outcome, Ok(_) | Err(Code::Aborted))), "{outcomes:?}");
    assert_eq!(&get(&mut client, "app-1", &created.id).await, winners[0]);
}

async fn create_replays_request_id() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let mut request = create_request("app-1", "first attempt");
    request.request_id = "create-1".to_owned();
    let first = connector_of(client.create(request.clone()).await.expect("create").into_inner().connector_view);

    // A retry returns the first connector, even if the retry's content differs.
    request.display_name = "second attempt".to_owned();
    let replay = connector_of(client.create(request).await.expect("replayed create").into_inner().connector_view);

    assert_eq!(replay.id, first.id);
    assert_eq!(replay, first);
    assert_eq!(list_all_ids(&mut client, "app-1", false).await, [first.id]);
}

async fn create_delegated_replays_request_id() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let mut request = create_delegated_request("app-1", "first attempt");
    request.request_id = "delegated-1".to_owned();
    let first = connector_of(client.create_delegated(request.clone()).await.expect("create delegated").into_inner().connector_view);

    request.display_name = "second attempt".to_owned();
    let replay = connector_of(client.create_delegated(request).await.expect("replayed create delegated").into_inner().connector_view);

    assert_eq!(replay.id, first.id);
    assert_eq!(replay, first);
    assert_eq!(list_all_ids(&mut client, "app-1", false).await, [first.id]);
}

async fn request_id_is_scoped_to_app() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let mut request = create_request("app-1", "in app 1");
    request.request_id = "shared-key".to_owned();
    let in_first_app = connector_of(client.create(request.clone()).await.expect("create in app-1").into_inner().connector_view);

    request.app_id = "app-2".to_owned();
    let in_second_app = connector_of(client.create(request).await.expect("create in app-2").into_inner().connector_view);

    assert_ne!(in_second_app.id, in_first_app.id);
    assert_eq!(in_second_app.app_id, "app-2");
    assert_eq!(list_all_ids(&mut client, "app-1", false).await, [in_first_app.id]);
    assert_eq!(list_all_ids(&mut client, "app-2", false).await, [in_second_app.id]);
}

async fn concurrent_creates_with_one_request_id_create_one_connector() {
    let server = TestServer::start().await;
    let client = server.client().await;

    let creates: Vec<_> = (0..8)
        .map(|index| {
            let mut client = client.clone();
            let mut request = create_request("app-1", &format!("attempt {index}"));
            request.request_id = "racing-key".to_owned();
            tokio::spawn(async move { connector_of(client.create(request).await.expect("create").into_inner().connector_view) })
        })
        .collect();
    let mut ids = HashSet::new();
    for create in creates {
        ids.insert(create.await.expect("create task").id);
    }

    let mut client = client;
    assert_eq!(ids.len(), 1, "one request id created {ids:?}");
    assert_eq!(list_all_ids(&mut client, "app-1", false).await.len(), 1);
}

async fn request_id_still_replays_after_delete() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let mut request = create_request("app-1", "first attempt");
    request.request_id = "create-then-delete".to_owned();
    let first = connector_of(client.create(request.clone()).await.expect("create").into_inner().connector_view);
    client.delete(delete_request("app-1", &first.id)).await.expect("delete");

    let replay = connector_of(client.create(request).await.expect("replayed create").into_inner().connector_view);

    assert_eq!(replay.id, first.id);
    assert!(replay.deleted_at.is_some(), "the replay hides that the connector was deleted");
}

crate::both_backends!(
    etag_changes_on_every_write,
    get_returns_etag_of_last_write,
    update_with_current_etag_succeeds,
    update_accepts_etag_without_quotes,
    update_with_stale_etag_is_aborted,
    update_delegated_with_stale_etag_is_aborted,
    delete_with_stale_etag_is_aborted,
    delete_with_current_etag_succeeds,
    concurrent_updates_with_one_etag_succeed_once,
    create_replays_request_id,
    create_delegated_replays_request_id,
    request_id_is_scoped_to_app,
    concurrent_creates_with_one_request_id_create_one_connector,
    request_id_still_replays_after_delete,
);
