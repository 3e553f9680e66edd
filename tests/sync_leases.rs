//! Sync leases: a claimed sync whose worker stops sending heartbeats goes back to the
//! queue, or ends with an error when another sync is already queued. Heartbeats keep the
//! lease, and a lease that ran out while the server was down expires after the restart.

mod common;

use std::time::Duration;

use chrono::Utc;
use common::{
    Client, TestServer, create, get,
    lifecycle::{
        Worker, confirm_request, force_sync, get_sync, list_all_syncs, poll_until, sleep_past, start_again, status_of, utc, worker_for,
    },
};
use connectord::pb::{self, connector_status::SyncStatus, sync::State, sync::Trigger};

/// Lease of the tests that let it run out.
const SHORT_LEASE: Duration = Duration::from_secs(1);
/// Lease of the tests that must not lose it between two steps on a busy machine.
const HEARTBEAT_LEASE: Duration = Duration::from_secs(2);
/// Upper bound for the timers to act on an expired lease: they tick once a second.
const EXPIRY_WAIT: Duration = Duration::from_secs(4);

/// Polls until the sync is in `state` and returns it.
async fn wait_for_state(client: &Client, connector: &pb::Connector, sync_id: &str, state: State) -> pb::Sync {
    poll_until(&format!("sync {sync_id} is {state:?}"), EXPIRY_WAIT, || {
        let mut client = client.clone();
        let connector = connector.clone();
        let sync_id = sync_id.to_owned();
        async move { Some(get_sync(&mut client, &connector, &sync_id).await).filter(|sync| sync.state() == state) }
    })
    .await
}

async fn expired_lease_requeues_sync() {
    let server = TestServer::start_with(|options| options.sync_lease = SHORT_LEASE).await;
    let mut client = server.client().await;
    let connector = create(&mut client, "app-1", "okta").await;
    let mut worker = worker_for(&server, &mut client, &connector).await;
    force_sync(&mut client, &connector).await;
    let claimed = worker.claim_one().await;
    let lease_end = utc(&claimed.lease_expires_at);
    assert_eq!(lease_end - utc(&claimed.started_at), chrono::Duration::from_std(SHORT_LEASE).expect("lease fits"));

    let requeued = wait_for_state(&client, &connector, &claimed.id, State::Pending).await;

    assert!(Utc::now() >= lease_end, "the sync was requeued before its lease ended");
    assert_eq!(requeued.started_at, None, "a requeued sync keeps started_at");
    assert_eq!(requeued.lease_expires_at, None, "a requeued sync keeps its lease");
    let reclaimed = worker.claim_one().await;
    assert_eq!(reclaimed.id, claimed.id, "the requeued sync is not the one claimed next");
    assert_eq!(reclaimed.state(), State::Running);
    assert!(utc(&reclaimed.lease_expires_at) > lease_end, "the second claim did not get a new lease");
}

async fn expired_lease_with_queued_sync_ends_in_error() {
    let server = TestServer::start_with(|options| options.sync_lease = SHORT_LEASE).await;
    let mut client = server.client().await;
    let connector = create(&mut client, "app-1", "okta").await;
    let mut worker = worker_for(&server, &mut client, &connector).await;
    force_sync(&mut client, &connector).await;
    let abandoned = worker.claim_one().await;
    let queued = force_sync(&mut client, &connector).await;
    assert_ne!(queued.id, abandoned.id, "ForceSync returned the running sync");

    let ended = wait_for_state(&client, &connector, &abandoned.id, State::Error).await;

    assert!(ended.error.contains("heartbeat"), "the error does not say why the sync ended: {:?}", ended.error);
    assert!(ended.completed_at.is_some(), "completed_at is not set");
    assert_eq!(get_sync(&mut client, &connector, &queued.id).await.state(), State::Pending, "the queued sync changed");
    let connector_after = get(&mut client, "app-1", &connector.id).await;
    assert_eq!(status_of(&connector_after).status(), SyncStatus::Error);
    assert!(status_of(&connector_after).last_error.contains(&abandoned.id), "last_error does not name the sync");
}

async fn heartbeats_keep_lease() {
    let server = TestServer::start_with(|options| options.sync_lease = HEARTBEAT_LEASE).await;
    let mut client = server.client().await;
    let connector = create(&mut client, "app-1", "okta").await;
    let mut worker = worker_for(&server, &mut client, &connector).await;
    force_sync(&mut client, &connector).await;
    let claimed = worker.claim_one().await;
    let first_lease_end = utc(&claimed.lease_expires_at);

    // Send a heartbeat every 400 ms until a second after the first lease end.
    let mut lease_end = first_lease_end;
    for _ in 0..20 {
        if Utc::now() > first_lease_end + chrono::Duration::seconds(1) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(400)).await;
        let extended = worker.heartbeat(&claimed.id).await.expect("heartbeat");
        assert!(extended > lease_end, "heartbeat returned lease end {extended}, not after {lease_end}");
        lease_end = extended;
    }
    assert!(Utc::now() > first_lease_end, "the heartbeats ended before the first lease did");

    let running = get_sync(&mut client, &connector, &claimed.id).await;
    assert_eq!(running.state(), State::Running, "the sync lost its lease despite heartbeats");
    assert_eq!(utc(&running.lease_expires_at), lease_end, "GetSync shows another lease end than the last heartbeat");
    worker.succeed(&claimed.id, "").await.expect("complete after the first lease end");
}

async fn expired_lease_at_restart_requeues_sync() {
    let server = TestServer::start_with(|options| options.sync_lease = HEARTBEAT_LEASE).await;
    let mut client = server.client().await;
    let connector = create(&mut client, "app-1", "okta").await;
    let issued = common::lifecycle::rotate(&mut client, &connector).await;
    let mut worker = Worker::new(&server, &connector, issued.authorization()).await;
    force_sync(&mut client, &connector).await;
    let claimed = worker.claim_one().await;
    let lease_end = utc(&claimed.lease_expires_at);
    drop(client);
    drop(worker);

    let (data_dir, options) = server.stop().await;
    assert!(Utc::now() < lease_end, "the server stopped only after the lease ended; the test cannot tell the restart apart");
    sleep_past(lease_end).await;
    let server = start_again(data_dir, options).await;
    let client = server.client().await;

    let requeued = wait_for_state(&client, &connector, &claimed.id, State::Pending).await;
    assert_eq!(requeued.lease_expires_at, None, "a requeued sync keeps its lease");
    let mut worker = Worker::new(&server, &connector, issued.authorization()).await;
    let reclaimed = worker.claim_one().await;
    assert_eq!(reclaimed.id, claimed.id, "the requeued sync is not the one claimed next");
}

async fn unexpired_lease_survives_restart() {
    let lease = Duration::from_secs(30);
    let server = TestServer::start_with(|options| options.sync_lease = lease).await;
    let mut client = server.client().await;
    let connector = create(&mut client, "app-1", "okta").await;
    let issued = common::lifecycle::rotate(&mut client, &connector).await;
    let mut worker = Worker::new(&server, &connector, issued.authorization()).await;
    force_sync(&mut client, &connector).await;
    let claimed = worker.claim_one().await;
    drop(client);
    drop(worker);

    let server = server.restart().await;
    let mut client = server.client().await;

    let after = get_sync(&mut client, &connector, &claimed.id).await;
    assert_eq!(after.state(), State::Running, "a restart ended a sync whose lease is still running");
    assert_eq!(after.lease_expires_at, claimed.lease_expires_at, "the restart changed the lease end");
    let mut worker = Worker::new(&server, &connector, issued.authorization()).await;
    worker.heartbeat(&claimed.id).await.expect("heartbeat after the restart");
    worker.succeed(&claimed.id, "").await.expect("complete after the restart");
}

async fn confirm_replaces_requeued_sync() {
    let server = TestServer::start_with(|options| options.sync_lease = SHORT_LEASE).await;
    let mut client = server.client().await;
    let connector = create(&mut client, "app-1", "okta").await;
    let mut worker = worker_for(&server, &mut client, &connector).await;
    force_sync(&mut client, &connector).await;
    let abandoned = worker.claim_one().await;
    force_sync(&mut client, &connector).await;
    let dropped = worker.claim_one().await;
    worker.fail(&dropped.id, "would delete 80% of users", true).await.expect("report the data drop");
    // The abandoned sync returns to the queue, older than the data-drop sync.
    wait_for_state(&client, &connector, &abandoned.id, State::Pending).await;

    client.confirm_sync_valid(confirm_request(&connector, &dropped.id)).await.expect("confirm with a sync queued");

    assert!(get_sync(&mut client, &connector, &dropped.id).await.confirmed, "the data-drop sync is not confirmed");
    let pending = list_all_syncs(&mut client, &connector, State::Pending).await;
    assert_eq!(pending.len(), 1, "not exactly one pending sync: {pending:?}");
    assert_eq!(pending[0].trigger(), Trigger::Confirm, "the queued sync is not the confirm sync");
    let replaced = get_sync(&mut client, &connector, &abandoned.id).await;
    assert_eq!(replaced.state(), State::Cancelled, "the requeued sync was neither run nor cancelled");
}

crate::both_backends!(
    expired_lease_requeues_sync,
    expired_lease_with_queued_sync_ends_in_error,
    heartbeats_keep_lease,
    expired_lease_at_restart_requeues_sync,
    unexpired_lease_survives_restart,
    confirm_replaces_requeued_sync,
);
