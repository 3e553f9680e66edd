//! The `connectord` binary under signals: SIGTERM drains and exits 0, and SIGKILL in the
//! middle of concurrent writes loses no acknowledged write.

mod common;

use std::{
    collections::BTreeMap,
    os::unix::process::ExitStatusExt,
    sync::{Arc, Mutex},
    time::Duration,
};

use common::{ChildServer, Client, WAIT_LIMIT, connector_of, create, create_request, get, update_request};
use tokio::{sync::watch, time::Instant};
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};

/// Writers in the SIGKILL test.
const WRITERS: usize = 8;
/// How long the writers write at most.
const WRITE_DURATION: Duration = Duration::from_secs(2);
/// Acknowledged writes after which the server is killed, so the kill lands while writes run.
const WRITES_BEFORE_KILL: usize = 100;
/// Updates per connector before a writer creates the next one.
const UPDATES_PER_CONNECTOR: usize = 3;
/// Upper bound on the operations of one writer, in case writes are much faster than expected.
const MAX_WRITES_PER_WRITER: usize = 2_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_calls_in_flight_exits_zero() {
    let data_dir = tempfile::TempDir::new().expect("temporary data directory");
    let mut server = ChildServer::spawn(data_dir.path(), &["--shutdown-grace", "1s"]).await;
    let mut client = server.client().await;
    let mut before = Vec::new();
    for index in 0..5 {
        before.push(create(&mut client, "app-1", &format!("before {index}")).await);
    }

    // A health watch is a call that stays open until the server ends it.
    let mut health = HealthClient::new(server.channel().await);
    let request = HealthCheckRequest { service: "connectord.v1.ConnectorService".to_owned() };
    let mut updates = health.watch(request).await.expect("watch").into_inner();
    let first = updates.message().await.expect("first update").expect("stream is open");
    assert_eq!(first.status(), ServingStatus::Serving);

    // Creates run while the signal arrives; each acknowledged one must survive.
    let acknowledged = Arc::new(Mutex::new(Vec::new()));
    let (progress, mut progress_receiver) = watch::channel(0usize);
    let writer = tokio::spawn(write_until_failure(server.client().await, Arc::clone(&acknowledged), progress));
    let _ = progress_receiver.wait_for(|count| *count >= 5).await;

    server.terminate();

    let update = tokio::time::timeout(WAIT_LIMIT, updates.message())
        .await
        .expect("an update within the wait limit")
        .expect("update")
        .expect("stream is open");
    assert_eq!(update.status(), ServingStatus::NotServing, "the open watch did not see the shutdown");
    let exit = server.wait_for_exit().await;
    assert_eq!(exit.code(), Some(0), "exit status {exit:?}; log:\n{}", server.log_text());
    writer.await.expect("writer task");

    let mut restarted = ChildServer::spawn(data_dir.path(), &[]).await;
    let mut client = restarted.client().await;
    for connector in &before {
        assert_eq!(&get(&mut client, "app-1", &connector.id).await, connector);
    }
    let acknowledged = acknowledged.lock().expect("lock").clone();
    assert!(acknowledged.len() >= 5, "only {} creates were acknowledged", acknowledged.len());
    for connector in &acknowledged {
        assert_eq!(&get(&mut client, "app-1", &connector.id).await, connector);
    }

    restarted.terminate();
    let exit = restarted.wait_for_exit().await;
    assert_eq!(exit.code(), Some(0), "exit status {exit:?}; log:\n{}", restarted.log_text());
}

/// Creates connectors one after another until a call fails, at most 10,000 times.
async fn write_until_failure(mut client: Client, acknowledged: Arc<Mutex<Vec<connectord::pb::Connector>>>, progress: watch::Sender<usize>) {
    for index in 0..10_000 {
        let Ok(response) = client.create(create_request("app-1", &format!("during shutdown {index}"))).await else {
            return;
        };
        acknowledged.lock().expect("lock").push(connector_of(response.into_inner().connector_view));
        progress.send_replace(index + 1);
    }
}

/// The writes to one connector, as its writer recorded them.
#[derive(Debug, Clone)]
struct Tracked {
    /// Display name of the last acknowledged write.
    acknowledged_name: String,
    /// Display name of an update that was sent but not acknowledged, which may or may not
    /// have been applied.
    unacknowledged_name: Option<String>,
}

type Ledger = Arc<Mutex<BTreeMap<String, Tracked>>>;

/// Creates connectors and updates each a few times until `deadline`, a failed call or
/// [`MAX_WRITES_PER_WRITER`], recording every acknowledged write in `ledger`.
async fn write_and_record(mut client: Client, writer: usize, deadline: Instant, ledger: Ledger, acknowledged: watch::Sender<usize>) {
    let mut writes = 0;
    while Instant::now() < deadline && writes < MAX_WRITES_PER_WRITER {
        let name = format!("writer {writer} connector {writes}");
        let Ok(response) = client.create(create_request("app-1", &name)).await else { return };
        let created = connector_of(response.into_inner().connector_view);
        let tracked = Tracked { acknowledged_name: name, unacknowledged_name: None };
        ledger.lock().expect("lock").insert(created.id.clone(), tracked);
        acknowledged.send_modify(|count| *count += 1);
        writes += 1;

        for version in 1..=UPDATES_PER_CONNECTOR {
            let name = format!("writer {writer} connector {writes} version {version}");
            ledger.lock().expect("lock").get_mut(&created.id).expect("tracked").unacknowledged_name = Some(name.clone());
            let mut request = update_request(&created, &["display_name"]);
            request.connector.as_mut().expect("connector").display_name = name.clone();
            if client.update(request).await.is_err() {
                return;
            }
            let mut ledger = ledger.lock().expect("lock");
            let tracked = ledger.get_mut(&created.id).expect("tracked");
            tracked.acknowledged_name = name;
            tracked.unacknowledged_name = None;
            drop(ledger);
            acknowledged.send_modify(|count| *count += 1);
            writes += 1;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_writes_keeps_acknowledged_writes() {
    let data_dir = tempfile::TempDir::new().expect("temporary data directory");
    let mut server = ChildServer::spawn(data_dir.path(), &[]).await;
    let ledger: Ledger = Arc::new(Mutex::new(BTreeMap::new()));
    let (acknowledged, mut acknowledged_count) = watch::channel(0usize);
    let deadline = Instant::now() + WRITE_DURATION;

    let mut writers = Vec::new();
    for writer in 0..WRITERS {
        let client = server.client().await;
        writers.push(tokio::spawn(write_and_record(client, writer, deadline, Arc::clone(&ledger), acknowledged.clone())));
    }
    drop(acknowledged);
    // The wait also ends, with an error, once every writer has stopped.
    let _ = acknowledged_count.wait_for(|count| *count >= WRITES_BEFORE_KILL).await;

    server.kill();

    let exit = server.wait_for_exit().await;
    assert_eq!(exit.signal(), Some(libc::SIGKILL), "exit status {exit:?}");
    for writer in writers {
        writer.await.expect("writer task");
    }
    let ledger = ledger.lock().expect("lock").clone();
    let updated = ledger.values().filter(|tracked| tracked.acknowledged_name.contains("version")).count();
    assert!(ledger.len() >= WRITERS, "only {} creates were acknowledged", ledger.len());
    assert!(updated > 0, "no update was acknowledged before the kill");

    let mut restarted = ChildServer::spawn(data_dir.path(), &[]).await;
    let mut client = restarted.client().await;
    for (id, tracked) in &ledger {
        let stored = get(&mut client, "app-1", id).await;
        let acceptable =
            stored.display_name == tracked.acknowledged_name || tracked.unacknowledged_name.as_ref() == Some(&stored.display_name);
        assert!(acceptable, "connector {id} reads {:?} after the restart; acknowledged {tracked:?}", stored.display_name);
    }

    restarted.terminate();
    let exit = restarted.wait_for_exit().await;
    assert_eq!(exit.code(), Some(0), "exit status {exit:?}; log:\n{}", restarted.log_text());
}
