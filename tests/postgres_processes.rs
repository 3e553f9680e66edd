//! Three connectord processes on one PostgreSQL schema, reached through all three at once:
//! concurrent etag updates, request-id retries, sync claims, and a scheduled run after the
//! process that holds the timer lease was killed with SIGKILL. Passes without running, after
//! a notice, when `CONNECTORD_TEST_POSTGRES_URL` is unset.

mod common;

use std::{collections::HashSet, time::Duration};

use chrono::{DateTime, Timelike, Utc};
use common::{
    ChildServer, Client, connector_of, create, create_request,
    lifecycle::{Worker, force_sync, list_all_syncs, poll_until, rotate, set_schedule, sleep_past},
    postgres::TestDatabase,
    update_request,
};
use connectord::pb::{
    self,
    sync::{State, Trigger},
};
use tempfile::TempDir;
use tonic::Code;

/// Timer lease of the processes, short so that the hand-over fits in the test.
const TIMER_LEASE: &str = "2s";
const HANDOVER_LIMIT: Duration = Duration::from_secs(15);

/// Returns whether a JSON log shows that the process took the timer lease.
fn took_timer_lease(log: &str) -> bool {
    log.lines().filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok()).any(|entry| {
        entry.get("message").and_then(|message| message.as_str()) == Some("timer lease changed hands")
            && entry.get("holds_lease").and_then(|held| held.as_bool()) == Some(true)
    })
}

async fn race_etag_updates(clients: &[Client], current: &pb::Connector) -> pb::Connector {
    let mut updates = Vec::new();
    for (process, client) in clients.iter().enumerate() {
        for caller in 0..2 {
            let mut client = client.clone();
            let mut request = update_request(current, &["display_name"]);
            let connector = request.connector.as_mut().expect("update carries a connector");
            connector.display_name = format!("process {process} caller {caller}");
            connector.etag = current.etag.clone();
            updates.push(tokio::spawn(async move {
                client.update(request).await.map(|response| connector_of(response.into_inner().connector_view))
            }));
        }
    }
    let mut winners = Vec::new();
    let mut losers = Vec::new();
    for update in updates {
        match update.await.expect("update task") {
            Ok(connector) => winners.push(connector),
            Err(status) => losers.push(status.code()),
        }
    }
    assert_eq!(winners.len(), 1, "winners {winners:?}, losers {losers:?}");
    assert!(losers.iter().all(|code| *code == Code::Aborted), "losers {losers:?}");
    winners.remove(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_processes_share_one_database() {
    let Some(database) = TestDatabase::create().await else { return };
    let url = database.url.expose().to_owned();
    let args = ["--store", url.as_str(), "--timer-lease", TIMER_LEASE];
    let data_dirs: Vec<TempDir> = (0..3).map(|_| TempDir::new().expect("create a data directory")).collect();

    // The first process takes the timer lease before the others start.
    let mut first = ChildServer::spawn(data_dirs[0].path(), &args).await;
    poll_until("the first process takes the timer lease", Duration::from_secs(10), || {
        let holds_lease = took_timer_lease(&first.log_text());
        async move { holds_lease.then_some(()) }
    })
    .await;
    let mut second = ChildServer::spawn(data_dirs[1].path(), &args).await;
    let mut third = ChildServer::spawn(data_dirs[2].path(), &args).await;
    let mut clients = vec![first.client().await, second.client().await, third.client().await];

    // Concurrent etag updates: one winner per round, and every process reads it.
    let mut current = create(&mut clients[0], "app-1", "raced").await;
    for round in 0..3 {
        current = race_etag_updates(&clients, &current).await;
        for (process, client) in clients.iter_mut().enumerate() {
            let stored = common::get(client, "app-1", &current.id).await;
            assert_eq!(stored, current, "round {round}: process {process} reads another write than the winner");
        }
    }

    // Request-id retries over all three processes create one connector.
    let mut request = create_request("app-2", "retried");
    request.request_id = "retry-across-processes".to_owned();
    let mut created = HashSet::new();
    for client in &clients {
        let response = client.clone().create(request.clone()).await.expect("create with a request id");
        created.insert(connector_of(response.into_inner().connector_view).id);
    }
    assert_eq!(created.len(), 1, "one request id created {created:?}");
    assert_eq!(common::list_all_ids(&mut clients[2], "app-2", true).await.len(), 1);

    // Workers on all three processes claim each queued sync once.
    let claimed_connector = create(&mut clients[1], "app-1", "claimed").await;
    let credential = rotate(&mut clients[1], &claimed_connector).await;
    let mut workers = Vec::new();
    for server in [&first, &second, &third] {
        workers.push(Worker::with_channel(server.channel().await, &claimed_connector, credential.authorization()));
    }
    for round in 0..3 {
        let queued = force_sync(&mut clients[round], &claimed_connector).await;
        let claims: Vec<_> = workers
            .iter()
            .map(|worker| {
                let mut worker = worker.clone();
                tokio::spawn(async move { worker.claim().await })
            })
            .collect();
        let mut claimed = Vec::new();
        for claim in claims {
            claimed.extend(claim.await.expect("claim task").unwrap_or_else(|status| panic!("round {round}: {status:?}")));
        }
        assert_eq!(claimed.len(), 1, "round {round}: claims {claimed:?}");
        assert_eq!(claimed[0].id, queued.id);
        workers[round].succeed(&claimed[0].id, "https://artifacts.example/drop").await.expect("complete the sync");
    }

    // Kill the lease holder; one of the others queues the scheduled run, once.
    let scheduled = create(&mut clients[1], "app-1", "scheduled").await;
    first.kill();
    first.wait_for_exit().await;
    let run = DateTime::from_timestamp(Utc::now().timestamp() + 2, 0).expect("valid time");
    set_schedule(&mut clients[1], &scheduled, &format!("{} * * * * *", run.second()), "UTC").await;
    let queued = poll_until("a live process queues the scheduled run", HANDOVER_LIMIT, || {
        let mut client = clients[2].clone();
        let scheduled = scheduled.clone();
        async move { list_all_syncs(&mut client, &scheduled, State::Pending).await.into_iter().next() }
    })
    .await;
    assert_eq!(queued.trigger(), Trigger::Schedule);
    sleep_past(run + chrono::Duration::seconds(3)).await;
    let syncs = list_all_syncs(&mut clients[1], &scheduled, State::Unspecified).await;
    assert_eq!(syncs.len(), 1, "one due run queued these syncs: {syncs:?}");
    assert!(
        took_timer_lease(&second.log_text()) || took_timer_lease(&third.log_text()),
        "no live process logged that it took the timer lease"
    );

    for server in [&mut second, &mut third] {
        server.terminate();
        let exit = server.wait_for_exit().await;
        assert_eq!(exit.code(), Some(0), "exit status {exit:?}; log:\n{}", server.log_text());
    }
    drop(database);
}
