//! PauseSync and ResumeSync: a paused connector shows why and since when, cancels its
//! pending sync, hands out no syncs and skips its scheduled runs. ResumeSync undoes all
//! of that and queues a sync.

mod common;

use common::{
    TestServer, connector_of, create, create_delegated_request, delete_request, expect_code, expect_invalid, get,
    lifecycle::{
        claim_scheduled_syncs, force_sync, get_sync, list_all_syncs, pause_request, resume_request, set_schedule, status_of, utc,
        worker_for,
    },
};
use connectord::pb::{connector_status::SyncStatus, sync::State, sync::Trigger};
use tonic::Code;

/// Cron spec that runs every second. Six-field specs start with the seconds field.
const EVERY_SECOND: &str = "*/1 * * * * *";

async fn pause_disables_syncing() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let connector = create(&mut client, "app-1", "okta").await;
    let mut worker = worker_for(&server, &mut client, &connector).await;
    let pending = force_sync(&mut client, &connector).await;
    let before = get(&mut client, "app-1", &connector.id).await;

    client.pause_sync(pause_request(&connector, Some("vendor maintenance until Monday"))).await.expect("pause");

    let paused = get(&mut client, "app-1", &connector.id).await;
    assert_eq!(status_of(&paused).status(), SyncStatus::Disabled);
    assert!(paused.sync_disabled_at.is_some(), "sync_disabled_at is not set");
    assert!(utc(&paused.sync_disabled_at) >= utc(&before.updated_at), "sync_disabled_at is before the last write");
    assert_eq!(paused.sync_disabled_category, "paused");
    assert_eq!(paused.sync_disabled_reason, "vendor maintenance until Monday");
    assert!(paused.can_resume_sync, "can_resume_sync is false while paused");
    assert_ne!(paused.etag, before.etag, "the etag did not change on pause");

    let cancelled = get_sync(&mut client, &connector, &pending.id).await;
    assert_eq!(cancelled.state(), State::Cancelled, "the pending sync survived the pause");
    assert_eq!(worker.claim().await.expect("claim while paused"), None, "a sync was claimed while paused");
}

async fn pause_without_reason_leaves_reason_empty() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let connector = create(&mut client, "app-1", "okta").await;

    client.pause_sync(pause_request(&connector, None)).await.expect("pause");

    let paused = get(&mut client, "app-1", &connector.id).await;
    assert_eq!(paused.sync_disabled_reason, "");
    assert_eq!(paused.sync_disabled_category, "paused");
    assert!(paused.can_resume_sync, "can_resume_sync is false while paused");
}

async fn second_pause_changes_nothing() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let connector = create(&mut client, "app-1", "okta").await;
    client.pause_sync(pause_request(&connector, Some("first reason"))).await.expect("first pause");
    let paused = get(&mut client, "app-1", &connector.id).await;

    client.pause_sync(pause_request(&connector, Some("second reason"))).await.expect("second pause");

    let again = get(&mut client, "app-1", &connector.id).await;
    assert_eq!(again.etag, paused.etag, "a second pause changed the etag");
    assert_eq!(again.sync_disabled_reason, "first reason", "a second pause replaced the reason");
    assert_eq!(again, paused, "a second pause changed the connector");
}

async fn pause_rejects_deleted_connector_and_long_reason() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let connector = create(&mut client, "app-1", "okta").await;
    let deleted = create(&mut client, "app-1", "deleted").await;
    client.delete(delete_request("app-1", &deleted.id)).await.expect("delete");

    let long_reason = "x".repeat(4097);
    expect_invalid(client.pause_sync(pause_request(&connector, Some(&long_reason))).await, "reason");
    expect_code(client.pause_sync(pause_request(&deleted, None)).await, Code::FailedPrecondition);
    expect_code(client.resume_sync(resume_request(&deleted)).await, Code::FailedPrecondition);

    let unchanged = get(&mut client, "app-1", &connector.id).await;
    assert!(!unchanged.can_resume_sync, "a rejected pause paused the connector");
}

async fn running_sync_completes_while_paused() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let connector = create(&mut client, "app-1", "okta").await;
    let mut worker = worker_for(&server, &mut client, &connector).await;
    force_sync(&mut client, &connector).await;
    let running = worker.claim_one().await;
    client.pause_sync(pause_request(&connector, None)).await.expect("pause");

    let done = worker.succeed(&running.id, "").await.expect("complete while paused");

    assert_eq!(done.state(), State::Done);
    let paused = get(&mut client, "app-1", &connector.id).await;
    assert_eq!(status_of(&paused).status(), SyncStatus::Disabled, "completing a sync lifted the pause");
    assert_eq!(utc(&status_of(&paused).completed_at), utc(&done.completed_at));
    assert!(paused.can_resume_sync, "completing a sync lifted the pause");
}

async fn resume_clears_pause_and_queues_sync() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let connector = create(&mut client, "app-1", "okta").await;
    let mut worker = worker_for(&server, &mut client, &connector).await;
    client.pause_sync(pause_request(&connector, Some("vendor maintenance"))).await.expect("pause");
    let paused = get(&mut client, "app-1", &connector.id).await;

    client.resume_sync(resume_request(&connector)).await.expect("resume");

    let resumed = get(&mut client, "app-1", &connector.id).await;
    assert!(!resumed.can_resume_sync, "can_resume_sync is still true");
    assert_eq!(resumed.sync_disabled_at, None, "sync_disabled_at is still set");
    assert_eq!(resumed.sync_disabled_category, "");
    assert_eq!(resumed.sync_disabled_reason, "");
    assert_ne!(status_of(&resumed).status(), SyncStatus::Disabled, "the status is still DISABLED");
    assert_ne!(resumed.etag, paused.etag, "the etag did not change on resume");

    let pending = list_all_syncs(&mut client, &connector, State::Pending).await;
    assert_eq!(pending.len(), 1, "resume did not queue exactly one sync: {pending:?}");
    assert_eq!(pending[0].trigger(), Trigger::Resume);
    assert_eq!(worker.claim_one().await.id, pending[0].id, "the resume sync cannot be claimed");
}

async fn resume_of_unpaused_connector_fails() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let connector = create(&mut client, "app-1", "okta").await;
    let before = get(&mut client, "app-1", &connector.id).await;

    let status = expect_code(client.resume_sync(resume_request(&connector)).await, Code::FailedPrecondition);

    assert!(status.message().contains("not paused"), "message does not say why: {}", status.message());
    assert_eq!(get(&mut client, "app-1", &connector.id).await, before, "a rejected resume changed the connector");
    assert!(list_all_syncs(&mut client, &connector, State::Unspecified).await.is_empty(), "a rejected resume queued a sync");

    client.pause_sync(pause_request(&connector, None)).await.expect("pause");
    client.resume_sync(resume_request(&connector)).await.expect("resume");
    expect_code(client.resume_sync(resume_request(&connector)).await, Code::FailedPrecondition);
}

async fn resume_without_config_fails_and_stays_paused() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let response = client.create_delegated(create_delegated_request("app-1", "awaiting owners")).await.expect("create delegated");
    let delegated = connector_of(response.into_inner().connector_view);
    client.pause_sync(pause_request(&delegated, None)).await.expect("pause");

    let status = expect_code(client.resume_sync(resume_request(&delegated)).await, Code::FailedPrecondition);
    assert!(status.message().contains("has no config"), "{}", status.message());
    let still_paused = get(&mut client, "app-1", &delegated.id).await;
    assert!(still_paused.can_resume_sync, "a failed resume unpaused the connector");
}

async fn scheduled_runs_skip_paused_connector() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let paused = create(&mut client, "app-1", "paused").await;
    let control = create(&mut client, "app-1", "control").await;
    let mut control_worker = worker_for(&server, &mut client, &control).await;
    client.pause_sync(pause_request(&paused, None)).await.expect("pause");
    set_schedule(&mut client, &paused, EVERY_SECOND, "").await;
    set_schedule(&mut client, &control, EVERY_SECOND, "").await;

    // Both schedules are due on every tick, so each scheduled sync of the control connector
    // proves a tick that also handled the paused one. Two such ticks, with the first sync
    // claimed in between, show that the paused connector was skipped more than once.
    claim_scheduled_syncs(&client, &mut control_worker, &control, 2).await;

    let syncs = list_all_syncs(&mut client, &paused, State::Unspecified).await;
    assert!(syncs.is_empty(), "the paused connector got scheduled syncs: {syncs:?}");
    let still_paused = get(&mut client, "app-1", &paused.id).await;
    assert_eq!(status_of(&still_paused).status(), SyncStatus::Disabled);
}

crate::both_backends!(
    pause_disables_syncing,
    pause_without_reason_leaves_reason_empty,
    second_pause_changes_nothing,
    pause_rejects_deleted_connector_and_long_reason,
    running_sync_completes_while_paused,
    resume_clears_pause_and_queues_sync,
    resume_of_unpaused_connector_fails,
    scheduled_runs_skip_paused_connector,
    resume_without_config_fails_and_stays_paused,
);
