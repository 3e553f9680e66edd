//! Guarantees across replicas: three in-process servers share one PostgreSQL schema, as
//! replicas behind a load balancer would, and the clients spread concurrent calls over all
//! of them. Each test passes without running, after a notice, when
//! `CONNECTORD_TEST_POSTGRES_URL` is unset.

mod common;

use std::{collections::HashSet, sync::Arc, time::Duration};

use chrono::{DateTime, Timelike, Utc};
use common::{
    Client, TestServer, connector_of, create, create_request, get,
    lifecycle::{Worker, force_sync, list_all_syncs, poll_until, rotate, set_schedule, sleep_past},
    list_request,
    postgres::{TestDatabase, on_postgres},
    update_request,
};
use connectord::{
    pb::sync::{State, Trigger},
    store::{PostgresStore, Store},
};
use tonic::Code;

const REPLICAS: usize = 3;
/// Concurrent callers per replica in the race tests.
const CALLERS_PER_REPLICA: usize = 2;
const ROUNDS: usize = 5;

async fn clients_of(servers: &[TestServer]) -> Vec<Client> {
    let mut clients = Vec::with_capacity(servers.len());
    for server in servers {
        clients.push(server.client().await);
    }
    clients
}

/// Returns a time at least `lead` from now at a whole second, and the cron spec that runs
/// once a minute at that second.
fn once_a_minute_after(lead: Duration) -> (DateTime<Utc>, String) {
    let seconds = i64::try_from(lead.as_secs()).expect("lead fits in i64") + 1;
    let run = DateTime::from_timestamp(Utc::now().timestamp() + seconds, 0).expect("valid time");
    (run, format!("{} * * * * *", run.second()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etag_race_has_one_winner() {
    on_postgres(async {
        let servers = TestServer::start_replicas(REPLICAS, |_| {}).await;
        let mut clients = clients_of(&servers).await;
        let mut current = create(&mut clients[0], "app-1", "round 0").await;

        for round in 1..=ROUNDS {
            let mut updates = Vec::new();
            for (replica, client) in clients.iter().enumerate() {
                for caller in 0..CALLERS_PER_REPLICA {
                    let mut client = client.clone();
                    let mut request = update_request(&current, &["display_name"]);
                    let connector = request.connector.as_mut().expect("update carries a connector");
                    connector.display_name = format!("round {round} replica {replica} caller {caller}");
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

            assert_eq!(winners.len(), 1, "round {round}: winners {winners:?}, losers {losers:?}");
            assert!(losers.iter().all(|code| *code == Code::Aborted), "round {round}: losers {losers:?}");
            let winner = winners.remove(0);
            for (replica, client) in clients.iter_mut().enumerate() {
                let stored = get(client, "app-1", &winner.id).await;
                assert_eq!(stored, winner, "round {round}: replica {replica} reads another write than the winner");
            }
            current = winner;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_id_retries_create_once() {
    on_postgres(async {
        let servers = TestServer::start_replicas(REPLICAS, |_| {}).await;
        let mut clients = clients_of(&servers).await;

        let mut created_ids = HashSet::new();
        for round in 0..ROUNDS {
            let mut request = create_request("app-1", &format!("retried {round}"));
            request.request_id = format!("retry-{round}");
            let mut creates = Vec::new();
            for client in &clients {
                for _ in 0..CALLERS_PER_REPLICA {
                    let mut client = client.clone();
                    let request = request.clone();
                    creates.push(tokio::spawn(async move { client.create(request).await }));
                }
            }
            let mut ids = HashSet::new();
            for create in creates {
                let response = create.await.expect("create task").unwrap_or_else(|status| panic!("round {round}: {status:?}"));
                ids.insert(connector_of(response.into_inner().connector_view).id);
            }
            assert_eq!(ids.len(), 1, "round {round}: one request id created {ids:?}");
            created_ids.extend(ids);
        }

        for (replica, client) in clients.iter_mut().enumerate() {
            let listed: HashSet<String> = common::list_all_ids(client, "app-1", true).await.into_iter().collect();
            assert_eq!(listed, created_ids, "replica {replica} lists other connectors than were created");
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_is_claimed_once() {
    on_postgres(async {
        let servers = TestServer::start_replicas(REPLICAS, |_| {}).await;
        let mut clients = clients_of(&servers).await;
        let connector = create(&mut clients[0], "app-1", "claimed").await;
        let credential = rotate(&mut clients[0], &connector).await;
        let mut workers = Vec::new();
        for server in &servers {
            for _ in 0..CALLERS_PER_REPLICA {
                workers.push(Worker::new(server, &connector, credential.authorization()).await);
            }
        }

        for round in 0..ROUNDS {
            let queued = force_sync(&mut clients[round % REPLICAS], &connector).await;
            let claims: Vec<_> = workers
                .iter()
                .map(|worker| {
                    let mut worker = worker.clone();
                    tokio::spawn(async move { worker.claim().await })
                })
                .collect();
            let mut claimed = Vec::new();
            for claim in claims {
                let outcome = claim.await.expect("claim task").unwrap_or_else(|status| panic!("round {round}: {status:?}"));
                claimed.extend(outcome);
            }

            assert_eq!(claimed.len(), 1, "round {round}: claims {claimed:?}");
            assert_eq!(claimed[0].id, queued.id, "round {round}: the claimed sync is not the queued one");
            let mut finisher = workers[round % workers.len()].clone();
            finisher.succeed(&claimed[0].id, "https://artifacts.example/drop").await.expect("complete the claimed sync");
        }

        let done = list_all_syncs(&mut clients[1], &connector, State::Done).await;
        assert_eq!(done.len(), ROUNDS, "syncs done: {done:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_run_is_queued_once() {
    on_postgres(async {
        let servers = TestServer::start_replicas(REPLICAS, |_| {}).await;
        let mut clients = clients_of(&servers).await;
        let connector = create(&mut clients[0], "app-1", "scheduled").await;

        let (run, spec) = once_a_minute_after(Duration::from_secs(2));
        let preview = set_schedule(&mut clients[1], &connector, &spec, "UTC").await;
        assert_eq!(preview.first(), Some(&run), "the preview does not start with the run of {spec}");

        let queued = poll_until("the scheduled run is queued", Duration::from_secs(10), || {
            let mut client = clients[2].clone();
            let connector = connector.clone();
            async move { list_all_syncs(&mut client, &connector, State::Pending).await.into_iter().next() }
        })
        .await;
        assert_eq!(queued.trigger(), Trigger::Schedule);

        // Every replica's timers have run at least twice since the run was due.
        sleep_past(run + chrono::Duration::seconds(3)).await;
        let syncs = list_all_syncs(&mut clients[0], &connector, State::Unspecified).await;
        assert_eq!(syncs.len(), 1, "one due run queued these syncs: {syncs:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timers_move_to_a_live_replica() {
    on_postgres(async {
        let lease = Duration::from_secs(2);
        let mut servers = TestServer::start_replicas(1, |options| options.timer_lease = lease).await;
        // The first replica takes the timer lease on its first tick, before the others start.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let first = servers.remove(0);
        let mut survivors = Vec::new();
        for _ in 1..REPLICAS {
            survivors.push(first.start_replica().await);
        }
        let mut client = survivors[0].client().await;
        let connector = create(&mut client, "app-1", "handed over").await;

        // The lease holder stops and gives the lease back. tests/postgres_processes.rs kills
        // the holder instead, so that the lease has to expire.
        drop(first.stop().await);
        let (run, spec) = once_a_minute_after(Duration::from_secs(1));
        set_schedule(&mut client, &connector, &spec, "UTC").await;

        let queued = poll_until("a surviving replica queues the scheduled run", lease + Duration::from_secs(8), || {
            let mut client = client.clone();
            let connector = connector.clone();
            async move { list_all_syncs(&mut client, &connector, State::Pending).await.into_iter().next() }
        })
        .await;
        assert_eq!(queued.trigger(), Trigger::Schedule);
        sleep_past(run + chrono::Duration::seconds(3)).await;
        let syncs = list_all_syncs(&mut client, &connector, State::Unspecified).await;
        assert_eq!(syncs.len(), 1, "one due run queued these syncs: {syncs:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_pages_span_replicas() {
    on_postgres(async {
        let servers = TestServer::start_replicas(REPLICAS, |_| {}).await;
        let mut clients = clients_of(&servers).await;
        let mut expected = Vec::new();
        for index in 0..23 {
            expected.push(create(&mut clients[index % REPLICAS], "app-1", &format!("listed {index}")).await.id);
        }
        expected.sort();

        // A writer adds connectors while the pages are read, each page from the next replica.
        let writer = {
            let mut client = clients[0].clone();
            tokio::spawn(async move {
                for index in 0..10 {
                    create(&mut client, "app-1", &format!("added {index}")).await;
                }
            })
        };
        let mut seen = Vec::new();
        let mut page_token = String::new();
        for page_index in 0..100 {
            let client = &mut clients[page_index % REPLICAS];
            let page = client.list(list_request("app-1", 4, &page_token)).await.expect("list a page").into_inner();
            assert!(page.list.len() <= 4, "page {page_index} has {} connectors", page.list.len());
            seen.extend(page.list.into_iter().map(|view| view.connector.expect("view has a connector").id));
            if page.next_page_token.is_empty() {
                break;
            }
            page_token = page.next_page_token;
        }
        writer.await.expect("writer task");

        let mut sorted = seen.clone();
        sorted.sort();
        assert_eq!(seen, sorted, "pages are not in id order");
        let distinct: HashSet<&String> = seen.iter().collect();
        assert_eq!(distinct.len(), seen.len(), "a connector was listed twice");
        let missing: Vec<&String> = expected.iter().filter(|id| !distinct.contains(id)).collect();
        assert!(missing.is_empty(), "connectors created before the walk were not listed: {missing:?}");
    })
    .await;
}

#[tokio::test]
async fn lease_passes_after_expiry_or_release() {
    let Some(database) = TestDatabase::create().await else { return };
    let first: Arc<dyn Store> = Arc::new(PostgresStore::open(&database.store_options()).await.expect("open the first store"));
    let second: Arc<dyn Store> = Arc::new(PostgresStore::open(&database.store_options()).await.expect("open the second store"));
    let lease = Duration::from_millis(1500);

    assert!(first.acquire_lease("timers", "first", lease).await.expect("first takes"), "a free lease was not granted");
    assert!(!second.acquire_lease("timers", "second", lease).await.expect("second tries"), "a held lease was granted");
    assert!(first.acquire_lease("timers", "first", lease).await.expect("first renews"), "the holder could not renew");
    assert!(second.acquire_lease("other", "second", lease).await.expect("second takes other"), "leases are not per name");

    tokio::time::sleep(lease + Duration::from_millis(300)).await;
    assert!(second.acquire_lease("timers", "second", lease).await.expect("second takes over"), "an expired lease was not granted");
    assert!(!first.acquire_lease("timers", "first", lease).await.expect("first tries again"), "the old holder kept the lease");

    first.release_lease("timers", "first").await.expect("release by a non-holder");
    assert!(
        !first.acquire_lease("timers", "first", lease).await.expect("first tries after its release"),
        "a non-holder released the lease"
    );
    second.release_lease("timers", "second").await.expect("release by the holder");
    assert!(
        first.acquire_lease("timers", "first", lease).await.expect("first takes the released lease"),
        "a released lease was not granted"
    );

    first.close().await.expect("close the first store");
    second.close().await.expect("close the second store");
    drop((first, second));
    drop(database);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_serve_each_others_writes() {
    on_postgres(async {
        let servers = TestServer::start_replicas(REPLICAS, |_| {}).await;
        let mut clients = clients_of(&servers).await;
        let connector = create(&mut clients[0], "app-1", "shared").await;

        let mut request = update_request(&connector, &["display_name"]);
        request.connector.as_mut().expect("update carries a connector").display_name = "renamed".to_owned();
        let updated = connector_of(clients[1].update(request).await.expect("update on the second replica").into_inner().connector_view);
        let read = get(&mut clients[2], "app-1", &connector.id).await;
        assert_eq!(read, updated, "the third replica reads a stale connector");

        let deleted = clients[2].delete(common::delete_request("app-1", &connector.id)).await;
        assert!(deleted.is_ok(), "delete on the third replica: {deleted:?}");
        let listed = common::list_all_ids(&mut clients[0], "app-1", false).await;
        assert!(listed.is_empty(), "the first replica lists a deleted connector: {listed:?}");
    })
    .await;
}
