//! Sync runs from ForceSync to their end: claims, heartbeats and completion by a worker,
//! the connector status at each step, the artifact URL, ConfirmSyncValid after a data
//! drop, and GetSync, ListSyncs and CancelSync.

mod common;

use std::time::Duration;

use common::{
    Client, TestServer, connector_of, create, create_delegated_request, delete_request, expect_code, expect_invalid, get,
    lifecycle::{
        Worker, cancel_request, confirm_request, download_url_request, force_sync, force_sync_request, get_sync, list_all_syncs,
        list_syncs_request, pause_request, status_of, sync_request, utc, worker_for,
    },
    struct_config, update_request,
};
use connectord::pb::{self, connector_status::SyncStatus, sync::State, sync::Trigger};
use tonic::Code;

const ARTIFACT_URL: &str = "https://artifacts.example.com/syncs/okta.c1z";

/// Runs one sync from ForceSync to a successful end and returns it.
async fn run_sync(client: &mut Client, worker: &mut Worker, connector: &pb::Connector) -> pb::Sync {
    let queued = force_sync(client, connector).await;
    let claimed = worker.claim_one().await;
    assert_eq!(claimed.id, queued.id, "claimed a sync other than the queued one");
    worker.succeed(&claimed.id, "").await.expect("complete the sync")
}

/// Queues and claims a sync, reports it failed, and returns the failed sync.
async fn fail_sync(client: &mut Client, worker: &mut Worker, connector: &pb::Connector, error: &str, data_drop: bool) -> pb::Sync {
    force_sync(client, connector).await;
    let claimed = worker.claim_one().await;
    worker.fail(&claimed.id, error, data_drop).await.expect("report the failure")
}

async fn sync_runs_from_force_to_download_url() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let connector = create(&mut client, "app-1", "okta").await;
    let mut worker = worker_for(&server, &mut client, &connector).await;
    let initial = get(&mut client, "app-1", &connector.id).await;
    assert_eq!(status_of(&initial).status(), SyncStatus::Unspecified);

    let queued = force_sync(&mut client, &connector).await;
    assert_eq!(queued.state(), State::Pending);
    assert_eq!(queued.trigger(), Trigger::Manual);
    assert_eq!(queued.app_id, "app-1");
    assert_eq!(queued.connector_id, connector.id);
    assert!(queued.created_at.is_some(), "created_at is missing");
    assert_eq!(queued.started_at, None);
    assert_eq!(queued.lease_expires_at, None);

    let claimed = worker.claim_one().await;
    assert_eq!(claimed.id, queued.id);
    assert_eq!(claimed.state(), State::Running);
    let started_at = utc(&claimed.started_at);
    assert!(utc(&claimed.lease_expires_at) > started_at, "the lease ends before the sync started");
    let running = get(&mut client, "app-1", &connector.id).await;
    assert_eq!(status_of(&running).status(), SyncStatus::Running);
    assert_eq!(utc(&status_of(&running).started_at), started_at, "status started_at differs from the sync's");
    assert_ne!(running.etag, initial.etag, "the etag did not change when the sync started");

    let lease_end = worker.heartbeat(&claimed.id).await.expect("heartbeat");
    assert!(lease_end >= utc(&claimed.lease_expires_at), "the heartbeat shortened the lease");

    let done = worker.succeed(&claimed.id, ARTIFACT_URL).await.expect("complete");
    assert_eq!(done.state(), State::Done);
    assert_eq!(done.artifact_url, ARTIFACT_URL);
    assert_eq!(done.lease_expires_at, None, "a finished sync still has a lease");
    let completed_at = utc(&done.completed_at);
    assert!(completed_at >= started_at, "completed_at is before started_at");
    let finished = get(&mut client, "app-1", &connector.id).await;
    assert_eq!(status_of(&finished).status(), SyncStatus::Done);
    assert_eq!(utc(&status_of(&finished).completed_at), completed_at, "status completed_at differs from the sync's");
    assert_eq!(status_of(&finished).last_error, "");
    assert_ne!(finished.etag, running.etag, "the etag did not change when the sync finished");

    let download =
        client.get_connector_sync_download_url(download_url_request(&connector, &done.id)).await.expect("download URL").into_inner();
    assert_eq!(download.download_url, ARTIFACT_URL);
    assert_eq!(get_sync(&mut client, &connector, &done.id).await, done, "GetSync differs from the CompleteSync response");
}

async fn download_url_without_artifact_is_not_found() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let connector = create(&mut client, "app-1", "okta").await;
    let mut worker = worker_for(&server, &mut client, &connector).await;
    let without_url = run_sync(&mut client, &mut worker, &connector).await;
    let pending = force_sync(&mut client, &connector).await;

    let finished = client.get_connector_sync_download_url(download_url_request(&connector, &without_url.id)).await;
    let status = expect_code(finished, Code::NotFound);
    assert!(status.message().contains(&without_url.id), "message lacks the sync id: {}", status.message());
    let queued = client.get_connector_sync_download_url(download_url_request(&connector, &pending.id)).await;
    expect_code(queued, Code::NotFound);
    let unknown = client.get_connector_sync_download_url(download_url_request(&connector, "01ARZ3NDEKTSV4RRFFQ69G5FAV")).await;
    expect_code(unknown, Code::NotFound);
}

async fn failed_sync_sets_error_status() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let connector = create(&mut client, "app-1", "okta").await;
    let mut worker = worker_for(&server, &mut client, &connector).await;
    force_sync(&mut client, &connector).await;
    let claimed = worker.claim_one().await;
    let running = get(&mut client, "app-1", &connector.id).await;

    let failed = worker.fail(&claimed.id, "upstream returned HTTP 503", false).await.expect("report the failure");

    assert_eq!(failed.state(), State::Error);
    assert_eq!(failed.error, "upstream returned HTTP 503");
    assert!(!failed.data_drop, "data_drop is set on a plain failure");
    let errored = get(&mut client, "app-1", &connector.id).await;
    assert_eq!(status_of(&errored).status(), SyncStatus::Error);
    assert_eq!(status_of(&errored).last_error, "upstream returned HTTP 503");
    assert_eq!(utc(&status_of(&errored).completed_at), utc(&failed.completed_at));
    assert_ne!(errored.etag, running.etag, "the etag did not change when the sync failed");

    run_sync(&mut client, &mut worker, &connector).await;
    let recovered = get(&mut client, "app-1", &connector.id).await;
    assert_eq!(status_of(&recovered).status(), SyncStatus::Done);
    assert_eq!(status_of(&recovered).last_error, "", "a successful sync kept the last error");
}

async fn force_sync_returns_pending_sync() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let connector = create(&mut client, "app-1", "okta").await;

    let first = force_sync(&mut client, &connector).await;
    let second = force_sync(&mut client, &connector).await;

    assert_eq!(second.id, first.id, "a second ForceSync queued another sync");
    let pending = list_all_syncs(&mut client, &connector, State::Pending).await;
    assert_eq!(pending.len(), 1, "more than one pending sync: {pending:?}");
    assert_eq!(list_all_syncs(&mut client, &connector, State::Unspecified).await.len(), 1);
}

async fn force_sync_replays_request_id() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let connector = create(&mut client, "app-1", "okta").await;
    let mut worker = worker_for(&server, &mut client, &connector).await;
    let first = client.force_sync(force_sync_request(&connector, "retry-1")).await.expect("force").into_inner().sync;
    let first = first.expect("response has a sync");
    worker.claim_one().await;

    let replay = client.force_sync(force_sync_request(&connector, "retry-1")).await.expect("replay").into_inner().sync;
    let replay = replay.expect("response has a sync");

    assert_eq!(replay.id, first.id, "a replayed request id queued another sync");
    assert_eq!(replay.state(), State::Running, "the replay does not show the sync's current state");
    assert_eq!(list_all_syncs(&mut client, &connector, State::Unspecified).await.len(), 1);
    let fresh = client.force_sync(force_sync_request(&connector, "retry-2")).await.expect("new key").into_inner().sync;
    assert_ne!(fresh.expect("response has a sync").id, first.id, "a new request id returned the old sync");
}

async fn force_sync_on_paused_connector_fails() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let connector = create(&mut client, "app-1", "okta").await;
    client.pause_sync(pause_request(&connector, None)).await.expect("pause");

    let status = expect_code(client.force_sync(force_sync_request(&connector, "")).await, Code::FailedPrecondition);

    assert!(status.message().contains(&connector.id), "message lacks the connector id: {}", status.message());
    assert!(list_all_syncs(&mut client, &connector, State::Unspecified).await.is_empty(), "a sync was queued while paused");
}

async fn force_sync_on_deleted_connector_fails() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let connector = create(&mut client, "app-1", "okta").await;
    client.delete(delete_request("app-1", &connector.id)).await.expect("delete");

    expect_code(client.force_sync(force_sync_request(&connector, "")).await, Code::FailedPrecondition);

    let mut unknown = force_sync_request(&connector, "");
    unknown.connector_id = "01ARZ3NDEKTSV4RRFFQ69G5FAV".to_owned();
    expect_code(client.force_sync(unknown).await, Code::NotFound);
}

async fn confirm_queues_sync_after_data_drop() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let connector = create(&mut client, "app-1", "okta").await;
    let mut worker = worker_for(&server, &mut client, &connector).await;
    let dropped = fail_sync(&mut client, &mut worker, &connector, "would delete 80% of users", true).await;
    assert_eq!(dropped.state(), State::Error);
    assert!(dropped.data_drop, "data_drop is not recorded");
    assert!(!dropped.confirmed, "a fresh data-drop sync is already confirmed");
    assert_eq!(status_of(&get(&mut client, "app-1", &connector.id).await).status(), SyncStatus::Error);

    client.confirm_sync_valid(confirm_request(&connector, &dropped.id)).await.expect("confirm");

    let original = get_sync(&mut client, &connector, &dropped.id).await;
    assert!(original.confirmed, "the data-drop sync is not marked confirmed");
    assert_eq!(original.state(), State::Error, "confirming changed the state of the data-drop sync");
    let syncs = list_all_syncs(&mut client, &connector, State::Unspecified).await;
    assert_eq!(syncs.len(), 2, "confirm did not queue exactly one sync: {syncs:?}");
    assert_eq!(syncs[0].state(), State::Pending);
    assert_eq!(syncs[0].trigger(), Trigger::Confirm);
    assert_eq!(worker.claim_one().await.id, syncs[0].id, "the confirm sync cannot be claimed");

    // The data-drop sync is no longer the latest, and it is confirmed already.
    expect_code(client.confirm_sync_valid(confirm_request(&connector, &dropped.id)).await, Code::FailedPrecondition);
}

async fn confirm_rejects_sync_not_latest() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let connector = create(&mut client, "app-1", "okta").await;
    let mut worker = worker_for(&server, &mut client, &connector).await;
    let dropped = fail_sync(&mut client, &mut worker, &connector, "would delete 80% of users", true).await;
    let newer = force_sync(&mut client, &connector).await;

    let status = expect_code(client.confirm_sync_valid(confirm_request(&connector, &dropped.id)).await, Code::FailedPrecondition);

    assert!(status.message().contains("latest"), "message does not say why: {}", status.message());
    assert!(!get_sync(&mut client, &connector, &dropped.id).await.confirmed, "a rejected confirm marked the sync");
    let syncs = list_all_syncs(&mut client, &connector, State::Unspecified).await;
    let ids: Vec<&str> = syncs.iter().map(|sync| sync.id.as_str()).collect();
    assert_eq!(ids, [newer.id.as_str(), dropped.id.as_str()], "a rejected confirm queued a sync");
}

async fn confirm_rejects_sync_without_data_drop() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let connector = create(&mut client, "app-1", "okta").await;
    let mut worker = worker_for(&server, &mut client, &connector).await;

    let plain_error = fail_sync(&mut client, &mut worker, &connector, "upstream returned HTTP 503", false).await;
    expect_code(client.confirm_sync_valid(confirm_request(&connector, &plain_error.id)).await, Code::FailedPrecondition);

    let done = run_sync(&mut client, &mut worker, &connector).await;
    expect_code(client.confirm_sync_valid(confirm_request(&connector, &done.id)).await, Code::FailedPrecondition);

    let pending = force_sync(&mut client, &connector).await;
    expect_code(client.confirm_sync_valid(confirm_request(&connector, &pending.id)).await, Code::FailedPrecondition);

    let unknown = client.confirm_sync_valid(confirm_request(&connector, "01ARZ3NDEKTSV4RRFFQ69G5FAV")).await;
    expect_code(unknown, Code::NotFound);
    let syncs = list_all_syncs(&mut client, &connector, State::Unspecified).await;
    assert_eq!(syncs.len(), 3, "a rejected confirm queued a sync: {syncs:?}");
}

async fn data_drop_is_done_without_bad_sync_check() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let connector = create(&mut client, "app-1", "okta").await;
    let mut worker = worker_for(&server, &mut client, &connector).await;
    let mut update = update_request(&connector, &["disable_check_bad_sync"]);
    update.connector.as_mut().expect("connector").disable_check_bad_sync = true;
    let updated = common::connector_of(client.update(update).await.expect("update").into_inner().connector_view);
    assert!(updated.disable_check_bad_sync, "the update did not set disable_check_bad_sync");

    let accepted = fail_sync(&mut client, &mut worker, &connector, "would delete 80% of users", true).await;

    assert_eq!(accepted.state(), State::Done, "a data drop was not accepted with the bad-sync check off");
    assert!(accepted.data_drop, "data_drop is not recorded");
    let after = get(&mut client, "app-1", &connector.id).await;
    assert_eq!(status_of(&after).status(), SyncStatus::Done);
    assert_eq!(status_of(&after).last_error, "");
    expect_code(client.confirm_sync_valid(confirm_request(&connector, &accepted.id)).await, Code::FailedPrecondition);
}

async fn claim_waits_for_queued_sync() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let connector = create(&mut client, "app-1", "okta").await;
    let mut worker = worker_for(&server, &mut client, &connector).await;

    let started = tokio::time::Instant::now();
    let idle = worker.claim_waiting(Some(Duration::from_millis(500))).await.expect("claim with a wait");
    assert_eq!(idle, None);
    assert!(started.elapsed() >= Duration::from_millis(450), "claim returned after {:?} without waiting", started.elapsed());

    let mut waiting_worker = worker.clone();
    let waiting = tokio::spawn(async move { waiting_worker.claim_waiting(Some(Duration::from_secs(5))).await });
    let queued = force_sync(&mut client, &connector).await;
    let claimed = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("the waiting claim returns within its wait")
        .expect("claim task")
        .expect("claim");
    assert_eq!(claimed.expect("the waiting claim got a sync").id, queued.id);
}

async fn heartbeat_and_complete_need_running_sync() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let connector = create(&mut client, "app-1", "okta").await;
    let mut worker = worker_for(&server, &mut client, &connector).await;
    let done = run_sync(&mut client, &mut worker, &connector).await;
    let pending = force_sync(&mut client, &connector).await;

    expect_code(worker.heartbeat(&pending.id).await, Code::FailedPrecondition);
    let status = expect_code(worker.succeed(&pending.id, "").await, Code::FailedPrecondition);
    assert!(status.message().contains("(STATE_PENDING)"), "the message does not use the API's state name: {}", status.message());
    let status = expect_code(worker.heartbeat(&done.id).await, Code::FailedPrecondition);
    assert!(status.message().contains("(STATE_DONE)"), "the message does not use the API's state name: {}", status.message());
    expect_code(worker.succeed(&done.id, "").await, Code::FailedPrecondition);
    expect_code(worker.fail(&done.id, "late failure", false).await, Code::FailedPrecondition);
    expect_code(worker.heartbeat("01ARZ3NDEKTSV4RRFFQ69G5FAV").await, Code::NotFound);

    assert_eq!(get_sync(&mut client, &connector, &done.id).await, done, "a rejected report changed the finished sync");
    assert_eq!(get_sync(&mut client, &connector, &pending.id).await.state(), State::Pending);
}

async fn get_sync_is_scoped_to_connector() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let connector = create(&mut client, "app-1", "okta").await;
    let other = create(&mut client, "app-1", "other").await;
    let queued = force_sync(&mut client, &connector).await;

    assert_eq!(get_sync(&mut client, &connector, &queued.id).await, queued);
    expect_code(client.get_sync(sync_request(&other, &queued.id)).await, Code::NotFound);
    expect_code(client.get_sync(sync_request(&connector, "01ARZ3NDEKTSV4RRFFQ69G5FAV")).await, Code::NotFound);
    expect_invalid(client.get_sync(sync_request(&connector, "not/an id")).await, "id");
}

async fn list_syncs_pages_newest_first() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let connector = create(&mut client, "app-1", "okta").await;
    let mut worker = worker_for(&server, &mut client, &connector).await;
    let mut created = Vec::new();
    for _ in 0..4 {
        created.push(run_sync(&mut client, &mut worker, &connector).await.id);
    }
    created.push(force_sync(&mut client, &connector).await.id);
    let newest_first: Vec<String> = created.iter().rev().cloned().collect();

    let mut listed = Vec::new();
    let mut page_sizes = Vec::new();
    let mut page_token = String::new();
    for _ in 0..10 {
        let page =
            client.list_syncs(list_syncs_request(&connector, 2, &page_token, State::Unspecified)).await.expect("list syncs").into_inner();
        page_sizes.push(page.list.len());
        listed.extend(page.list.into_iter().map(|sync| sync.id));
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }

    assert_eq!(listed, newest_first, "syncs are not listed newest first, each once");
    assert_eq!(page_sizes, [2, 2, 1]);
}

async fn list_syncs_filters_by_state() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let connector = create(&mut client, "app-1", "okta").await;
    let other = create(&mut client, "app-1", "other").await;
    let mut worker = worker_for(&server, &mut client, &connector).await;
    let mut done = Vec::new();
    for _ in 0..3 {
        done.push(run_sync(&mut client, &mut worker, &connector).await.id);
    }
    let failed = fail_sync(&mut client, &mut worker, &connector, "upstream returned HTTP 503", false).await;
    let pending = force_sync(&mut client, &connector).await;
    done.reverse();

    let listed_done: Vec<String> = list_all_syncs(&mut client, &connector, State::Done).await.into_iter().map(|sync| sync.id).collect();
    let listed_error: Vec<String> = list_all_syncs(&mut client, &connector, State::Error).await.into_iter().map(|sync| sync.id).collect();
    let listed_pending: Vec<String> =
        list_all_syncs(&mut client, &connector, State::Pending).await.into_iter().map(|sync| sync.id).collect();
    assert_eq!(listed_done, done);
    assert_eq!(listed_error, [failed.id]);
    assert_eq!(listed_pending, [pending.id]);
    assert!(list_all_syncs(&mut client, &connector, State::Running).await.is_empty(), "a sync is listed as running");

    let first_done_page =
        client.list_syncs(list_syncs_request(&connector, 1, "", State::Done)).await.expect("first page of done syncs").into_inner();
    let token = first_done_page.next_page_token;
    assert!(!token.is_empty(), "a page of 1 out of 3 has no next page token");
    expect_invalid(client.list_syncs(list_syncs_request(&connector, 1, &token, State::Pending)).await, "page_token");
    expect_invalid(client.list_syncs(list_syncs_request(&other, 1, &token, State::Done)).await, "page_token");

    let mut unknown_state = list_syncs_request(&connector, 1, "", State::Unspecified);
    unknown_state.state = 99;
    expect_invalid(client.list_syncs(unknown_state).await, "state");
    expect_invalid(client.list_syncs(list_syncs_request(&connector, -1, "", State::Unspecified)).await, "page_size");
}

async fn cancel_pending_sync() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let connector = create(&mut client, "app-1", "okta").await;
    let mut worker = worker_for(&server, &mut client, &connector).await;
    let pending = force_sync(&mut client, &connector).await;

    let cancelled = client.cancel_sync(cancel_request(&connector, &pending.id)).await.expect("cancel").into_inner().sync;
    let cancelled = cancelled.expect("response has a sync");

    assert_eq!(cancelled.id, pending.id);
    assert_eq!(cancelled.state(), State::Cancelled);
    assert!(cancelled.completed_at.is_some(), "completed_at is not set on cancel");
    assert_eq!(get_sync(&mut client, &connector, &pending.id).await, cancelled);
    assert_eq!(worker.claim().await.expect("claim"), None, "a cancelled sync was claimed");
    let next = force_sync(&mut client, &connector).await;
    assert_ne!(next.id, pending.id, "ForceSync after a cancel returned the cancelled sync");
}

async fn cancel_running_sync() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let connector = create(&mut client, "app-1", "okta").await;
    let mut worker = worker_for(&server, &mut client, &connector).await;
    force_sync(&mut client, &connector).await;
    let running = worker.claim_one().await;
    let before = get(&mut client, "app-1", &connector.id).await;

    let cancelled = client.cancel_sync(cancel_request(&connector, &running.id)).await.expect("cancel").into_inner().sync;
    let cancelled = cancelled.expect("response has a sync");

    assert_eq!(cancelled.state(), State::Cancelled);
    assert_eq!(cancelled.lease_expires_at, None, "a cancelled sync keeps its lease");
    expect_code(worker.heartbeat(&running.id).await, Code::FailedPrecondition);
    expect_code(worker.succeed(&running.id, ARTIFACT_URL).await, Code::FailedPrecondition);
    let after = get(&mut client, "app-1", &connector.id).await;
    assert_ne!(status_of(&after).status(), SyncStatus::Running, "the connector still shows a running sync");
    assert!(status_of(&after).completed_at.is_some(), "completed_at is not set after the cancel");
    assert_ne!(after.etag, before.etag, "the etag did not change with the status");
}

async fn cancel_finished_sync_fails() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let connector = create(&mut client, "app-1", "okta").await;
    let mut worker = worker_for(&server, &mut client, &connector).await;
    let done = run_sync(&mut client, &mut worker, &connector).await;
    let failed = fail_sync(&mut client, &mut worker, &connector, "upstream returned HTTP 503", false).await;
    let cancelled = force_sync(&mut client, &connector).await;
    client.cancel_sync(cancel_request(&connector, &cancelled.id)).await.expect("first cancel");

    for (label, sync) in [("done", &done), ("failed", &failed), ("cancelled", &cancelled)] {
        let result = client.cancel_sync(cancel_request(&connector, &sync.id)).await;
        let status = result.expect_err(&format!("cancel of the {label} sync: expected FAILED_PRECONDITION"));
        assert_eq!(status.code(), Code::FailedPrecondition, "cancel of the {label} sync: {status:?}");
    }
    assert_eq!(get_sync(&mut client, &connector, &done.id).await, done, "a rejected cancel changed the done sync");
    assert_eq!(get_sync(&mut client, &connector, &failed.id).await, failed, "a rejected cancel changed the failed sync");
}

async fn concurrent_force_syncs_queue_one() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let connector = create(&mut client, "app-1", "okta").await;

    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let mut client = client.clone();
            let connector = connector.clone();
            tokio::spawn(async move { force_sync(&mut client, &connector).await.id })
        })
        .collect();
    let mut ids = Vec::new();
    for task in tasks {
        ids.push(task.await.expect("ForceSync task"));
    }

    ids.dedup();
    assert_eq!(ids.len(), 1, "concurrent ForceSync calls returned different syncs: {ids:?}");
    assert_eq!(list_all_syncs(&mut client, &connector, State::Unspecified).await.len(), 1);
}

async fn concurrent_claims_hand_out_sync_once() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let connector = create(&mut client, "app-1", "okta").await;
    let worker = worker_for(&server, &mut client, &connector).await;
    let queued = force_sync(&mut client, &connector).await;

    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let mut worker = worker.clone();
            tokio::spawn(async move { worker.claim().await.map(|sync| sync.map(|sync| sync.id)).map_err(|status| status.code()) })
        })
        .collect();
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.push(task.await.expect("claim task"));
    }

    let claimed: Vec<&String> = outcomes.iter().filter_map(|outcome| outcome.as_ref().ok()?.as_ref()).collect();
    assert_eq!(claimed, [&queued.id], "the sync was not claimed exactly once: {outcomes:?}");
    assert!(outcomes.iter().all(Result::is_ok), "a concurrent claim failed: {outcomes:?}");
}

async fn worker_requests_are_validated() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let connector = create(&mut client, "app-1", "okta").await;
    let mut worker = worker_for(&server, &mut client, &connector).await;
    force_sync(&mut client, &connector).await;
    let running = worker.claim_one().await;

    let negative_wait = pb::ClaimSyncRequest {
        app_id: "app-1".to_owned(),
        connector_id: connector.id.clone(),
        wait: Some(prost_types::Duration { seconds: -1, nanos: 0 }),
    };
    expect_invalid(worker.claim_request(negative_wait).await, "wait");
    expect_invalid(worker.complete(&running.id, None).await, "result");
    let long_url = format!("https://artifacts.example.com/{}", "a".repeat(2048));
    expect_invalid(worker.succeed(&running.id, &long_url).await, "succeeded.artifact_url");
    for not_absolute in ["javascript:alert(1)", "files/sync.c1z", "://nowhere", "https://"] {
        expect_invalid(worker.succeed(&running.id, not_absolute).await, "succeeded.artifact_url");
    }
    expect_invalid(worker.fail(&running.id, &"e".repeat(4097), false).await, "failed.error");
    let empty = expect_invalid(worker.fail(&running.id, " ", false).await, "failed.error");
    assert!(common::violation_description(&empty, "failed.error").contains("is empty"), "{empty:?}");
    expect_invalid(worker.heartbeat("not/an id").await, "sync_id");
    expect_invalid(worker.succeed("", "").await, "sync_id");

    let unchanged = get_sync(&mut client, &connector, &running.id).await;
    assert_eq!(unchanged.state(), State::Running, "a rejected request ended the sync");
}

async fn waiting_claim_ends_empty_at_shutdown() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let connector = create(&mut client, "app-1", "waiting worker").await;
    let mut worker = worker_for(&server, &mut client, &connector).await;
    let claim = tokio::spawn(async move { worker.claim_waiting(Some(Duration::from_secs(25))).await });
    // Lets the claim reach its wait before the shutdown starts.
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Without the early end, the claim would wait out its 25 s, far past the shutdown.
    let stopped = tokio::spawn(server.stop());
    let claimed = tokio::time::timeout(Duration::from_secs(10), claim)
        .await
        .expect("the waiting claim did not end when shutdown started")
        .expect("claim task")
        .expect("a waiting claim ends without an error");
    assert_eq!(claimed, None);
    stopped.await.expect("server stops");
}

async fn connector_without_config_cannot_sync() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let response = client.create_delegated(create_delegated_request("app-1", "awaiting owners")).await.expect("create delegated");
    let delegated = connector_of(response.into_inner().connector_view);

    let status = expect_code(client.force_sync(force_sync_request(&delegated, "")).await, Code::FailedPrecondition);
    assert!(status.message().contains("has no config"), "{}", status.message());

    // Once an update sets the config, the connector syncs.
    let mut configured = update_request(&delegated, &["config"]);
    configured.connector.as_mut().unwrap().config = Some(struct_config(&[("domain", "example.okta.com")]));
    client.update(configured).await.expect("set the config");
    let queued = force_sync(&mut client, &delegated).await;
    assert_eq!(queued.state(), State::Pending);
}

crate::both_backends!(
    sync_runs_from_force_to_download_url,
    connector_without_config_cannot_sync,
    download_url_without_artifact_is_not_found,
    failed_sync_sets_error_status,
    force_sync_returns_pending_sync,
    force_sync_replays_request_id,
    force_sync_on_paused_connector_fails,
    force_sync_on_deleted_connector_fails,
    confirm_queues_sync_after_data_drop,
    confirm_rejects_sync_not_latest,
    confirm_rejects_sync_without_data_drop,
    data_drop_is_done_without_bad_sync_check,
    claim_waits_for_queued_sync,
    heartbeat_and_complete_need_running_sync,
    get_sync_is_scoped_to_connector,
    list_syncs_pages_newest_first,
    list_syncs_filters_by_state,
    cancel_pending_sync,
    cancel_running_sync,
    cancel_finished_sync_fails,
    concurrent_force_syncs_queue_one,
    concurrent_claims_hand_out_sync_once,
    worker_requests_are_validated,
    waiting_claim_ends_empty_at_shutdown,
);
