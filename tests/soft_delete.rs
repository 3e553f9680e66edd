//! Soft delete: a deleted connector stays readable with Get, leaves lists unless
//! show_deleted is set, and accepts no further writes.

mod common;

use common::{TestServer, address_of, create, delete_request, expect_code, get, list_all_ids, list_request, update_request};
use connectord::pb;
use tonic::Code;

async fn get_shows_deleted_at_after_delete() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let created = create(&mut client, "app-1", "doomed").await;

    client.delete(delete_request("app-1", &created.id)).await.expect("delete");
    let deleted = get(&mut client, "app-1", &created.id).await;

    let deleted_at = deleted.deleted_at.as_ref().expect("deleted_at is set");
    let created_at = created.created_at.as_ref().expect("created_at is set");
    assert!(
        (deleted_at.seconds, deleted_at.nanos) >= (created_at.seconds, created_at.nanos),
        "deleted_at {deleted_at:?} is before created_at {created_at:?}"
    );
    assert_eq!(deleted.display_name, created.display_name);
    assert_eq!(deleted.config, created.config);
    assert_ne!(deleted.etag, created.etag);
}

async fn list_hides_deleted_unless_show_deleted() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let first = create(&mut client, "app-1", "first").await;
    let deleted = create(&mut client, "app-1", "deleted").await;
    let last = create(&mut client, "app-1", "last").await;
    client.delete(delete_request("app-1", &deleted.id)).await.expect("delete");

    let live = list_all_ids(&mut client, "app-1", false).await;
    let all = list_all_ids(&mut client, "app-1", true).await;

    assert_eq!(live, [first.id.clone(), last.id.clone()]);
    assert_eq!(all, [first.id, deleted.id.clone(), last.id]);

    let mut request = list_request("app-1", 10, "");
    request.show_deleted = true;
    let page = client.list(request).await.expect("list with show_deleted").into_inner();
    let listed_deleted = page
        .list
        .into_iter()
        .filter_map(|view| view.connector)
        .find(|connector| connector.id == deleted.id)
        .expect("the deleted connector is listed");
    assert!(listed_deleted.deleted_at.is_some(), "listed deleted connector lacks deleted_at");
}

async fn update_of_deleted_connector_fails_precondition() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let created = create(&mut client, "app-1", "doomed").await;
    client.delete(delete_request("app-1", &created.id)).await.expect("delete");
    let deleted = get(&mut client, "app-1", &created.id).await;

    let mut request = update_request(&created, &["display_name"]);
    request.connector.as_mut().expect("connector").display_name = "revived".to_owned();
    let status = expect_code(client.update(request.clone()).await, Code::FailedPrecondition);
    assert!(status.message().contains(&created.id), "message lacks the id: {}", status.message());

    // Also with the etag of the deleted connector: the precondition is the deletion.
    request.connector.as_mut().expect("connector").etag = deleted.etag.clone();
    expect_code(client.update(request).await, Code::FailedPrecondition);

    let mut connector = address_of(&created);
    connector.display_name = "revived".to_owned();
    let request = pb::ConnectorServiceUpdateDelegatedRequest { connector: Some(connector), update_mask: None, expand_mask: None };
    expect_code(client.update_delegated(request).await, Code::FailedPrecondition);

    assert_eq!(get(&mut client, "app-1", &created.id).await, deleted, "a rejected update changed the connector");
}

async fn second_delete_is_not_found() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let created = create(&mut client, "app-1", "doomed").await;
    client.delete(delete_request("app-1", &created.id)).await.expect("first delete");
    let deleted = get(&mut client, "app-1", &created.id).await;

    let status = expect_code(client.delete(delete_request("app-1", &created.id)).await, Code::NotFound);

    assert!(status.message().contains(&created.id), "message lacks the id: {}", status.message());
    assert_eq!(get(&mut client, "app-1", &created.id).await, deleted, "the second delete changed the connector");
}

async fn concurrent_deletes_succeed_once() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let created = create(&mut client, "app-1", "doomed").await;

    let deletes: Vec<_> = (0..8)
        .map(|_| {
            let mut client = client.clone();
            let request = delete_request("app-1", &created.id);
            tokio::spawn(async move { client.delete(request).await.map(|_| ()).map_err(|status| status.code()) })
        })
        .collect();
    let mut outcomes = Vec::new();
    for delete in deletes {
        outcomes.push(delete.await.expect("delete task"));
    }

    assert_eq!(outcomes.iter().filter(|outcome| outcome.is_ok()).count(), 1, "{outcomes:?}");
    assert!(outcomes.iter().all(|outcome| matches!(outcome, Ok(()) | Err(Code::NotFound))), "{outcomes:?}");
}

crate::both_backends!(
    get_shows_deleted_at_after_delete,
    list_hides_deleted_unless_show_deleted,
    update_of_deleted_connector_fails_precondition,
    second_delete_is_not_found,
    concurrent_deletes_succeed_once,
);
