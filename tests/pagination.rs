//! List pagination: page sizes, stable paging while connectors are created and deleted,
//! and page tokens bound to the request that produced them.

mod common;

use std::collections::HashSet;

use common::{Client, TestServer, connector_of, create, delete_request, expect_invalid, list_all_ids, list_request};
use tokio::{sync::watch, task::JoinSet};

/// Connectors that exist for the whole test.
const STABLE_COUNT: usize = 250;
/// Connectors created before the walks and deleted during them, interleaved with the
/// stable ones so that deletes land both ahead of and behind a walk's position.
const DOOMED_COUNT: usize = 50;
/// Page sizes requested, with the page size the server must serve for each.
const PAGE_SIZES: [(i32, usize); 5] = [(0, 25), (1, 1), (7, 7), (100, 100), (1000, 100)];
/// Operations per walk, each one create and one delete. The bound makes every walk end.
const CHURN_OPERATIONS: usize = 10;
/// Creates in flight at once while filling an app.
const CREATE_CONCURRENCY: usize = 16;

/// Creates `count` connectors in `app_id`, several at a time, and returns their ids sorted.
async fn create_many(client: &Client, app_id: &str, count: usize) -> Vec<String> {
    let mut ids = Vec::with_capacity(count);
    let mut tasks = JoinSet::new();
    for index in 0..count {
        if tasks.len() == CREATE_CONCURRENCY {
            ids.push(tasks.join_next().await.expect("a task is running").expect("create task"));
        }
        let mut client = client.clone();
        let app_id = app_id.to_owned();
        tasks.spawn(async move { create(&mut client, &app_id, &format!("connector {index}")).await.id });
    }
    while let Some(id) = tasks.join_next().await {
        ids.push(id.expect("create task"));
    }
    ids.sort();
    ids
}

/// Result of one walk over every page.
struct Walk {
    ids: Vec<String>,
    page_lengths: Vec<usize>,
}

/// Walks every page of `app_id` with `page_size`. Before page N it waits until the churn
/// task has finished N operations (or has stopped), so writes land between pages.
async fn walk(client: &mut Client, app_id: &str, page_size: i32, churn_progress: &mut watch::Receiver<usize>) -> Walk {
    let mut walk = Walk { ids: Vec::new(), page_lengths: Vec::new() };
    let mut page_token = String::new();
    for page_number in 0..10_000 {
        let _ = churn_progress.wait_for(|done| *done >= page_number.min(CHURN_OPERATIONS)).await;
        let page = client.list(list_request(app_id, page_size, &page_token)).await.expect("list a page").into_inner();
        walk.page_lengths.push(page.list.len());
        for view in page.list {
            let connector = connector_of(Some(view));
            assert_eq!(connector.deleted_at, None, "a deleted connector {} was listed", connector.id);
            walk.ids.push(connector.id);
        }
        if page.next_page_token.is_empty() {
            return walk;
        }
        page_token = page.next_page_token;
    }
    panic!("list did not end after 10000 pages");
}

/// Creates one connector and deletes one doomed connector per operation, reporting each
/// finished operation on `progress`. Returns the ids it created and deleted.
async fn churn(mut client: Client, app_id: String, doomed: Vec<String>, progress: watch::Sender<usize>) -> (Vec<String>, Vec<String>) {
    let mut created = Vec::new();
    let mut deleted = Vec::new();
    for (operation, doomed_id) in doomed.into_iter().enumerate().take(CHURN_OPERATIONS) {
        created.push(create(&mut client, &app_id, &format!("churn {operation}")).await.id);
        client.delete(delete_request(&app_id, &doomed_id)).await.expect("delete a doomed connector");
        deleted.push(doomed_id);
        progress.send_replace(operation + 1);
    }
    (created, deleted)
}

async fn list_walks_are_stable_under_concurrent_writes() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let all = create_many(&client, "app-1", STABLE_COUNT + DOOMED_COUNT).await;
    let mut stable = Vec::new();
    let mut doomed = Vec::new();
    for (index, id) in all.into_iter().enumerate() {
        if index % 6 == 3 {
            doomed.push(id);
        } else {
            stable.push(id);
        }
    }
    assert_eq!(stable.len(), STABLE_COUNT);
    assert_eq!(doomed.len(), DOOMED_COUNT);
    let mut deleted_before_walk: HashSet<String> = HashSet::new();
    let mut created_during_walks: Vec<String> = Vec::new();

    for (page_size, served_size) in PAGE_SIZES {
        let doomed_now: Vec<String> = doomed.drain(..CHURN_OPERATIONS).collect();
        let (progress, mut churn_progress) = watch::channel(0);
        let churn_task = tokio::spawn(churn(client.clone(), "app-1".to_owned(), doomed_now, progress));

        let walk = walk(&mut client, "app-1", page_size, &mut churn_progress).await;
        let (created, deleted) = churn_task.await.expect("churn task");

        let unique: HashSet<&String> = walk.ids.iter().collect();
        assert_eq!(unique.len(), walk.ids.len(), "page size {page_size}: a connector was listed twice");
        let mut sorted = walk.ids.clone();
        sorted.sort();
        assert_eq!(walk.ids, sorted, "page size {page_size}: connectors are out of creation order");
        let missing: Vec<&String> = stable.iter().filter(|id| !unique.contains(id)).collect();
        assert!(
            missing.is_empty(),
            "page size {page_size}: skipped {} stable connectors, first {:?}; page lengths {:?}",
            missing.len(),
            missing.first(),
            walk.page_lengths
        );
        let resurrected: Vec<&String> = walk.ids.iter().filter(|id| deleted_before_walk.contains(*id)).collect();
        assert!(resurrected.is_empty(), "page size {page_size}: listed connectors deleted earlier: {resurrected:?}");
        let (last_page, full_pages) = walk.page_lengths.split_last().expect("at least one page");
        assert!(
            full_pages.iter().all(|length| *length == served_size),
            "page size {page_size}: pages before the last must hold {served_size}: {:?}",
            walk.page_lengths
        );
        assert!(*last_page <= served_size, "page size {page_size}: last page holds {last_page}");

        deleted_before_walk.extend(deleted);
        created_during_walks.extend(created);
    }

    let with_deleted: HashSet<String> = list_all_ids(&mut client, "app-1", true).await.into_iter().collect();
    assert!(stable.iter().all(|id| with_deleted.contains(id)), "show_deleted lost a stable connector");
    assert!(deleted_before_walk.iter().all(|id| with_deleted.contains(id)), "show_deleted lost a deleted connector");
    assert!(created_during_walks.iter().all(|id| with_deleted.contains(id)), "show_deleted lost a connector created during a walk");
    assert_eq!(with_deleted.len(), STABLE_COUNT + DOOMED_COUNT + created_during_walks.len());
}

async fn list_without_token_starts_at_first_connector() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let ids = create_many(&client, "app-1", 30).await;

    let first = client.list(list_request("app-1", 0, "")).await.expect("first page").into_inner();
    let second = client.list(list_request("app-1", 0, &first.next_page_token)).await.expect("second page").into_inner();

    let first_ids: Vec<String> = first.list.into_iter().map(|view| connector_of(Some(view)).id).collect();
    let second_ids: Vec<String> = second.list.into_iter().map(|view| connector_of(Some(view)).id).collect();
    assert_eq!(first_ids, ids[..25]);
    assert_eq!(second_ids, ids[25..]);
    assert_eq!(second.next_page_token, "", "the last page has a next page token");
}

async fn page_token_from_another_app_is_invalid() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    create_many(&client, "app-1", 3).await;
    create_many(&client, "app-2", 3).await;
    let page = client.list(list_request("app-1", 1, "")).await.expect("list app-1").into_inner();

    let status = expect_invalid(client.list(list_request("app-2", 1, &page.next_page_token)).await, "page_token");

    assert!(status.message().contains("app_id"), "message does not explain the binding: {}", status.message());
}

async fn page_token_with_other_show_deleted_is_invalid() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    create_many(&client, "app-1", 3).await;
    let page = client.list(list_request("app-1", 1, "")).await.expect("list").into_inner();
    let mut request = list_request("app-1", 1, &page.next_page_token);
    request.show_deleted = true;

    expect_invalid(client.list(request).await, "page_token");

    let mut request = list_request("app-1", 1, "");
    request.show_deleted = true;
    let page = client.list(request).await.expect("list with show_deleted").into_inner();
    expect_invalid(client.list(list_request("app-1", 1, &page.next_page_token)).await, "page_token");
}

async fn garbled_page_tokens_are_invalid() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    create_many(&client, "app-1", 3).await;
    let token = client.list(list_request("app-1", 1, "")).await.expect("list").into_inner().next_page_token;
    assert!(!token.is_empty(), "three connectors in pages of one need a next page");

    let mut flipped = token.clone().into_bytes();
    flipped[4] = if flipped[4] == b'A' { b'B' } else { b'A' };
    let garbled = [
        ("one character changed", String::from_utf8(flipped).expect("ASCII")),
        ("truncated", token[..token.len() - 3].to_owned()),
        ("extended", format!("{token}AA")),
        ("not base64", "!!!not-a-token!!!".to_owned()),
        ("too short", "AAAA".to_owned()),
        ("very long", "A".repeat(5000)),
        ("padded", format!("{token}==")),
    ];
    for (case, page_token) in garbled {
        let result = client.list(list_request("app-1", 1, &page_token)).await;
        let status = expect_invalid(result, "page_token");
        assert!(!status.message().is_empty(), "{case}: empty message");
    }
}

crate::both_backends!(
    list_walks_are_stable_under_concurrent_writes(flavor = "multi_thread", worker_threads = 2),
    list_without_token_starts_at_first_connector,
    page_token_from_another_app_is_invalid,
    page_token_with_other_show_deleted_is_invalid,
    garbled_page_tokens_are_invalid,
);
