//! Durability of the in-process server: state written before a graceful stop is read back
//! by a new server on the same data directory, and concurrent creates all land.

mod common;

use std::collections::HashSet;

use common::{TestServer, create, create_delegated_request, create_request, delete_request, get, list_all_ids, update_request};

#[tokio::test]
async fn connectors_survive_restart() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let unchanged = create(&mut client, "app-1", "unchanged").await;
    let changed = create(&mut client, "app-1", "to be renamed").await;
    let removed = create(&mut client, "app-1", "to be deleted").await;
    let delegated = client.create_delegated(create_delegated_request("app-2", "delegated")).await.expect("create delegated").into_inner();
    let delegated = common::connector_of(delegated.connector_view);

    let mut rename = update_request(&changed, &["display_name"]);
    rename.connector.as_mut().expect("connector").display_name = "renamed".to_owned();
    client.update(rename).await.expect("rename");
    client.delete(delete_request("app-1", &removed.id)).await.expect("delete");
    let before = [
        get(&mut client, "app-1", &unchanged.id).await,
        get(&mut client, "app-1", &changed.id).await,
        get(&mut client, "app-1", &removed.id).await,
        get(&mut client, "app-2", &delegated.id).await,
    ];
    drop(client);

    let server = server.restart().await;
    let mut client = server.client().await;

    for connector in &before {
        let after = get(&mut client, &connector.app_id, &connector.id).await;
        assert_eq!(&after, connector, "connector {} changed across the restart", connector.id);
    }
    assert_eq!(list_all_ids(&mut client, "app-1", false).await, [unchanged.id.clone(), changed.id.clone()]);
    assert_eq!(list_all_ids(&mut client, "app-1", true).await, [unchanged.id, changed.id, removed.id]);
    assert_eq!(list_all_ids(&mut client, "app-2", false).await, [delegated.id]);
}

#[tokio::test]
async fn request_ids_survive_restart() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let mut request = create_request("app-1", "first");
    request.request_id = "retry-key-1".to_owned();
    let first = common::connector_of(client.create(request.clone()).await.expect("create").into_inner().connector_view);
    drop(client);

    let server = server.restart().await;
    let mut client = server.client().await;
    let replay = common::connector_of(client.create(request).await.expect("replayed create").into_inner().connector_view);

    assert_eq!(replay.id, first.id);
    assert_eq!(list_all_ids(&mut client, "app-1", false).await, [first.id]);
}

#[tokio::test]
async fn concurrent_creates_are_all_readable() {
    let server = TestServer::start().await;
    let client = server.client().await;

    let tasks: Vec<_> = (0..64)
        .map(|index| {
            let mut client = client.clone();
            tokio::spawn(async move { create(&mut client, "app-1", &format!("connector {index}")).await })
        })
        .collect();
    let mut created = Vec::new();
    for task in tasks {
        created.push(task.await.expect("create task"));
    }

    let mut client = client;
    let ids: HashSet<String> = created.iter().map(|connector| connector.id.clone()).collect();
    assert_eq!(ids.len(), 64, "ids are not unique");
    for connector in &created {
        assert_eq!(&get(&mut client, "app-1", &connector.id).await, connector);
    }
    let listed = list_all_ids(&mut client, "app-1", false).await;
    assert_eq!(listed.iter().cloned().collect::<HashSet<_>>(), ids);
    assert_eq!(listed.len(), 64, "list repeats an id");
    drop(client);

    let server = server.restart().await;
    let mut client = server.client().await;
    for connector in &created {
        assert_eq!(&get(&mut client, "app-1", &connector.id).await, connector);
    }
}
