//! Crash loop: starts the connectord binary, runs concurrent creates, updates, deletes and
//! ForceSync calls, and kills the server with SIGKILL at a random moment. After the restart
//! it checks that every acknowledged write is present with its acknowledged content. It
//! also checks that no write is half applied: a connector record without its live-index
//! entry or the reverse, or a queued sync that the pending-sync index does not point to.
//!
//! Runs as a plain binary (`harness = false`), so it takes its own flags:
//! `cargo test --test crash_loop -- --rounds 200 --seed 7`. `--control` starts the server
//! without its write-ahead log and fails unless the check finds lost writes, which proves
//! that the check can fail.

mod support;

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    process::ExitCode,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use connectord::pb::{self, connector_service_client::ConnectorServiceClient};
use support::ServerProcess;
use tonic::transport::Channel;

const APP_ID: &str = "crashloop";
/// Time limit of one RPC, so a wedged server fails the run instead of hanging it.
const RPC_TIMEOUT: Duration = Duration::from_secs(10);
/// Upper bound on operations per worker and round.
const MAX_OPS_PER_WORKER: usize = 5_000;
/// Connectors per verification beyond those the round touched whose Get is compared with
/// their List entry.
const GET_SAMPLE: usize = 200;

struct Options {
    rounds: usize,
    seed: u64,
    /// Concurrent writers; `None` picks 8, or 32 for a control run.
    workers: Option<usize>,
    control: bool,
    /// Range of the random delay between the start of the load and the kill.
    kill_after: (Duration, Duration),
}

fn parse_options() -> Result<Options, String> {
    let mut options = Options {
        rounds: 20,
        seed: std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |time| time.as_nanos() as u64),
        workers: None,
        control: false,
        kill_after: (Duration::from_millis(50), Duration::from_millis(1500)),
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut number = |name: &str| -> Result<u64, String> {
            let value = args.next().ok_or(format!("{name} needs a value"))?;
            value.parse().map_err(|error| format!("{name} {value}: {error}"))
        };
        match arg.as_str() {
            "--rounds" => options.rounds = number("--rounds")? as usize,
            "--seed" => options.seed = number("--seed")?,
            "--workers" => options.workers = Some((number("--workers")? as usize).max(1)),
            "--max-kill-delay-ms" => options.kill_after.1 = Duration::from_millis(number("--max-kill-delay-ms")?.max(21)),
            "--control" => options.control = true,
            // cargo test passes libtest flags such as --nocapture to every test binary.
            other if other.starts_with("--") => eprintln!("crash loop: ignoring flag {other}"),
            other => eprintln!("crash loop: ignoring argument {other}"),
        }
    }
    Ok(options)
}

/// State of one connector as last acknowledged by the server.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Expected {
    display_name: String,
    description: String,
    /// Etag after the last acknowledged write. A Delete response carries no etag, so a
    /// deleted connector's etag is not checked.
    etag: Option<String>,
    deleted: bool,
    /// Pending sync that the last acknowledged ForceSync returned.
    sync_id: Option<String>,
}

/// The write a worker had sent when the server died, whose outcome is unknown.
#[derive(Debug, Clone)]
enum InFlight {
    Create { display_name: String },
    Update { id: String, display_name: String, description: String },
    Delete { id: String },
    ForceSync { id: String },
}

#[derive(Default)]
struct Totals {
    /// Rounds whose restart was verified.
    rounds: usize,
    acknowledged_writes: u64,
    lost_writes: u64,
    in_flight_applied: u64,
    in_flight_not_applied: u64,
    index_mismatches: u64,
    unexpected_errors: u64,
}

fn main() -> ExitCode {
    let options = match parse_options() {
        Ok(options) => options,
        Err(message) => {
            eprintln!("crash loop: {message}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let totals = runtime.block_on(run(&options));

    let mode = if options.control { "control run (no write-ahead log)" } else { "crash loop" };
    println!(
        "{mode}: seed {}, {} of {} rounds, {} acknowledged writes, {} lost, {} index mismatches, {} unexpected errors, in flight at a kill: {} applied, {} not applied",
        options.seed,
        totals.rounds,
        options.rounds,
        totals.acknowledged_writes,
        totals.lost_writes,
        totals.index_mismatches,
        totals.unexpected_errors,
        totals.in_flight_applied,
        totals.in_flight_not_applied,
    );
    let passed = if options.control {
        // The control run passes when the check notices that writes were lost. Without the
        // log, a crash can also keep part of a write's keys, so index mismatches are
        // expected there too.
        totals.lost_writes > 0 && totals.unexpected_errors == 0
    } else {
        let failures = totals.index_mismatches + totals.unexpected_errors;
        totals.lost_writes == 0 && failures == 0 && totals.acknowledged_writes > 0
    };
    if passed {
        println!("crash_loop: 1 passed, 0 failed");
        ExitCode::SUCCESS
    } else {
        println!("crash_loop: 0 passed, 1 failed");
        ExitCode::FAILURE
    }
}

async fn run(options: &Options) -> Totals {
    let data_dir = tempfile::tempdir().expect("temporary data directory");
    let mut random = fastrand::Rng::with_seed(options.seed);
    let mut known: BTreeMap<String, Expected> = BTreeMap::new();
    let mut totals = Totals::default();
    let env: &[(&str, &str)] = if options.control { &[("CONNECTORD_UNSAFE_SKIP_FLUSH_FOR_TESTS", "true")] } else { &[] };
    let started = Instant::now();

    let mut in_flight: Vec<InFlight> = Vec::new();
    let mut touched: BTreeSet<String> = BTreeSet::new();
    // Each start after the first is the restart after a kill, which verification checks.
    for round in 0..=options.rounds {
        let server = ServerProcess::start_with_env(data_dir.path(), &[], env);
        let client = server.client().await;
        if round > 0 {
            verify(&client, &mut known, &in_flight, &touched, &mut totals, &mut random).await;
            totals.rounds = round;
        }
        // Once a control run has found lost writes it has shown what it must, and without
        // the log later rounds would build on half-applied writes.
        if round == options.rounds || (options.control && totals.lost_writes > 0) {
            server.kill();
            break;
        }

        let kill_delay = random_duration(&mut random, options.kill_after);
        // Without the flush, only writes still in sled's buffers at the kill are lost, so a
        // control run needs more writers in flight to lose some in every few rounds.
        let workers = options.workers.unwrap_or(if options.control { 32 } else { 8 });
        let outcome = run_load(&server, &known, workers, round, random.u64(..), kill_delay).await;
        server.kill();
        totals.acknowledged_writes += outcome.acknowledged_writes;
        totals.unexpected_errors += outcome.unexpected_errors;
        known.extend(outcome.acknowledged);
        in_flight = outcome.in_flight;
        touched = outcome.touched;
        eprintln!(
            "round {round}: {} acknowledged, {} in flight at the kill after {kill_delay:?}, {:.1}s elapsed",
            outcome.acknowledged_writes,
            in_flight.len(),
            started.elapsed().as_secs_f64()
        );
    }
    totals
}

fn random_duration(random: &mut fastrand::Rng, (low, high): (Duration, Duration)) -> Duration {
    Duration::from_millis(random.u64(low.as_millis() as u64..high.as_millis() as u64))
}

struct LoadOutcome {
    acknowledged: BTreeMap<String, Expected>,
    acknowledged_writes: u64,
    in_flight: Vec<InFlight>,
    /// Ids written in this round, all of which verification reads with Get.
    touched: BTreeSet<String>,
    unexpected_errors: u64,
}

/// Runs `workers` writers, each on its own share of the live connectors, and kills nothing
/// itself: it returns once `kill_delay` has passed and every worker has stopped.
async fn run_load(
    server: &ServerProcess,
    known: &BTreeMap<String, Expected>,
    workers: usize,
    round: usize,
    seed: u64,
    kill_delay: Duration,
) -> LoadOutcome {
    let stop = Arc::new(AtomicBool::new(false));
    let mut shares: Vec<HashMap<String, Expected>> = vec![HashMap::new(); workers];
    for (index, (id, expected)) in known.iter().filter(|(_, expected)| !expected.deleted).enumerate() {
        shares[index % workers].insert(id.clone(), expected.clone());
    }
    let mut tasks = Vec::new();
    for (worker, share) in shares.into_iter().enumerate() {
        let client = server.client().await;
        let stop = Arc::clone(&stop);
        let random = fastrand::Rng::with_seed(seed.wrapping_add(worker as u64));
        tasks.push(tokio::spawn(write_loop(client, share, worker, round, random, stop)));
    }

    tokio::time::sleep(kill_delay).await;
    stop.store(true, Ordering::SeqCst);
    // SIGKILL now, while the workers still have calls in flight.
    server.signal(libc::SIGKILL);

    let mut outcome = LoadOutcome {
        acknowledged: BTreeMap::new(),
        acknowledged_writes: 0,
        in_flight: Vec::new(),
        touched: BTreeSet::new(),
        unexpected_errors: 0,
    };
    for task in tasks {
        let result = task.await.expect("worker panicked");
        outcome.acknowledged_writes += result.acknowledged_writes;
        outcome.unexpected_errors += result.unexpected_errors;
        outcome.touched.extend(result.touched);
        outcome.acknowledged.extend(result.share);
        outcome.in_flight.extend(result.in_flight);
    }
    outcome
}

struct WorkerResult {
    share: HashMap<String, Expected>,
    acknowledged_writes: u64,
    in_flight: Option<InFlight>,
    touched: BTreeSet<String>,
    unexpected_errors: u64,
}

async fn write_loop(
    mut client: ConnectorServiceClient<Channel>,
    mut share: HashMap<String, Expected>,
    worker: usize,
    round: usize,
    mut random: fastrand::Rng,
    stop: Arc<AtomicBool>,
) -> WorkerResult {
    let mut result =
        WorkerResult { share: HashMap::new(), acknowledged_writes: 0, in_flight: None, touched: BTreeSet::new(), unexpected_errors: 0 };
    let mut live: Vec<String> = share.iter().filter(|(_, expected)| !expected.deleted).map(|(id, _)| id.clone()).collect();
    for operation in 0..MAX_OPS_PER_WORKER {
        let display_name = format!("w{worker}-r{round}-op{operation}");
        // Long descriptions make each write's log record larger, so more of them are still
        // in sled's buffers at the kill.
        let description = format!("written in round {round} by worker {worker}: {} {}", random.u32(..), "x".repeat(random.usize(0..3000)));
        let choice = random.u8(0..100);
        let written = if live.is_empty() || choice < 40 {
            let request =
                pb::ConnectorServiceCreateRequest { description: description.clone(), ..support::create_request(APP_ID, &display_name) };
            match client.create(timed(request)).await {
                Ok(response) => {
                    let connector = response.into_inner().connector_view.unwrap().connector.unwrap();
                    let expected =
                        Expected { display_name, description, etag: Some(connector.etag.clone()), deleted: false, sync_id: None };
                    share.insert(connector.id.clone(), expected);
                    live.push(connector.id.clone());
                    Ok(connector.id)
                }
                Err(status) => Err((status, InFlight::Create { display_name })),
            }
        } else if choice < 75 {
            let id = live[random.usize(..live.len())].clone();
            let current = &share[&id];
            let sync_id = current.sync_id.clone();
            let request = pb::ConnectorServiceUpdateRequest {
                connector: Some(pb::Connector {
                    app_id: APP_ID.to_owned(),
                    id: id.clone(),
                    display_name: display_name.clone(),
                    description: description.clone(),
                    etag: current.etag.clone().unwrap_or_default(),
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask { paths: vec!["display_name".into(), "description".into()] }),
                ..Default::default()
            };
            match client.update(timed(request)).await {
                Ok(response) => {
                    let connector = response.into_inner().connector_view.unwrap().connector.unwrap();
                    share.insert(id.clone(), Expected { display_name, description, etag: Some(connector.etag), deleted: false, sync_id });
                    Ok(id)
                }
                Err(status) => Err((status, InFlight::Update { id, display_name, description })),
            }
        } else if choice < 88 {
            let id = live[random.usize(..live.len())].clone();
            let request =
                pb::ConnectorServiceForceSyncRequest { app_id: APP_ID.to_owned(), connector_id: id.clone(), ..Default::default() };
            match client.force_sync(timed(request)).await {
                Ok(response) => {
                    let sync = response.into_inner().sync.unwrap();
                    share.get_mut(&id).unwrap().sync_id = Some(sync.id);
                    Ok(id)
                }
                Err(status) => Err((status, InFlight::ForceSync { id })),
            }
        } else {
            let index = random.usize(..live.len());
            let id = live[index].clone();
            let request = pb::ConnectorServiceDeleteRequest {
                app_id: APP_ID.to_owned(),
                id: id.clone(),
                etag: share[&id].etag.clone().unwrap_or_default(),
            };
            match client.delete(timed(request)).await {
                Ok(_) => {
                    let expected = share.get_mut(&id).unwrap();
                    expected.deleted = true;
                    expected.etag = None;
                    // Delete cancels the pending sync, which is then no longer checked.
                    expected.sync_id = None;
                    live.swap_remove(index);
                    Ok(id)
                }
                Err(status) => Err((status, InFlight::Delete { id })),
            }
        };
        match written {
            Ok(id) => {
                result.acknowledged_writes += 1;
                result.touched.insert(id);
            }
            Err((status, in_flight)) => {
                if !stop.load(Ordering::SeqCst) {
                    eprintln!("worker {worker}: unexpected error before the kill: {status:?}");
                    result.unexpected_errors += 1;
                }
                if let InFlight::Update { id, .. } | InFlight::Delete { id } | InFlight::ForceSync { id } = &in_flight {
                    result.touched.insert(id.clone());
                }
                result.in_flight = Some(in_flight);
                break;
            }
        }
    }
    result.share = share;
    result
}

fn timed<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.set_timeout(RPC_TIMEOUT);
    request
}

/// Reads every connector through List (with and without deleted ones) and Get, and checks
/// them against `known` and the writes in flight at the kill. Then `known` is set to what
/// the server stores, so a control run counts each loss once.
async fn verify(
    client: &ConnectorServiceClient<Channel>,
    known: &mut BTreeMap<String, Expected>,
    in_flight: &[InFlight],
    touched: &BTreeSet<String>,
    totals: &mut Totals,
    random: &mut fastrand::Rng,
) {
    let mut client = client.clone();
    let all = list_all(&mut client, true).await;
    let live: BTreeSet<String> = list_all(&mut client, false).await.into_keys().collect();

    // The live list must contain exactly the connectors whose record is not deleted.
    for id in &live {
        if !all.contains_key(id) {
            eprintln!("index mismatch: {id} is listed as live but has no record");
            totals.index_mismatches += 1;
        }
    }
    let mut checked_with_get: BTreeSet<&String> = touched.iter().collect();
    for id in all.keys() {
        if checked_with_get.len() >= touched.len() + GET_SAMPLE {
            break;
        }
        if random.u8(0..4) == 0 {
            checked_with_get.insert(id);
        }
    }
    for (id, connector) in &all {
        let deleted = connector.deleted_at.is_some();
        if deleted == live.contains(id) {
            eprintln!("index mismatch: {id} deleted={deleted} but listed as live={}", live.contains(id));
            totals.index_mismatches += 1;
        }
        if checked_with_get.contains(id) {
            let request = pb::ConnectorServiceGetRequest { app_id: APP_ID.to_owned(), id: id.clone() };
            let got = client.get(timed(request)).await.expect("Get of a listed connector").into_inner();
            let got = got.connector_view.unwrap().connector.unwrap();
            if &got != connector {
                eprintln!("index mismatch: Get of {id} differs from its List entry");
                totals.index_mismatches += 1;
            }
        }
    }

    let in_flight_ids: BTreeSet<&str> = in_flight
        .iter()
        .filter_map(|write| match write {
            InFlight::Update { id, .. } | InFlight::Delete { id } | InFlight::ForceSync { id } => Some(id.as_str()),
            InFlight::Create { .. } => None,
        })
        .collect();
    for (id, expected) in known.iter() {
        if in_flight_ids.contains(id.as_str()) {
            continue;
        }
        match all.get(id) {
            None => {
                eprintln!("lost: acknowledged connector {id} is missing");
                totals.lost_writes += 1;
            }
            Some(connector) if !matches_expected(connector, expected) => {
                eprintln!("lost: {id} is {} but the last acknowledged write made it {expected:?}", describe(connector));
                totals.lost_writes += 1;
            }
            Some(_) => {}
        }
    }
    resolve_in_flight(&all, known, in_flight, totals);
    let pending = verify_syncs(&mut client, &all, known, &in_flight_ids, totals).await;

    // Anything left unexplained was never written by this test.
    let pending_creates: BTreeSet<&str> = in_flight
        .iter()
        .filter_map(|write| match write {
            InFlight::Create { display_name } => Some(display_name.as_str()),
            _ => None,
        })
        .collect();
    for (id, connector) in &all {
        if !known.contains_key(id) && !pending_creates.contains(connector.display_name.as_str()) {
            eprintln!("index mismatch: connector {id} ({}) was never written", connector.display_name);
            totals.index_mismatches += 1;
        }
    }

    // From here on the model is what the server holds.
    known.clear();
    for (id, connector) in all {
        let mut expected = observed(&connector);
        expected.sync_id = pending.get(&id).cloned();
        known.insert(id, expected);
    }
}

/// Checks that each acknowledged ForceSync survived: its sync is stored and is still the
/// connector's pending sync, so a second ForceSync returns it. For connectors with a
/// ForceSync in flight at the kill, it learns which sync is pending now. Returns the
/// pending sync id of every connector it checked.
async fn verify_syncs(
    client: &mut ConnectorServiceClient<Channel>,
    all: &BTreeMap<String, pb::Connector>,
    known: &BTreeMap<String, Expected>,
    in_flight_ids: &BTreeSet<&str>,
    totals: &mut Totals,
) -> BTreeMap<String, String> {
    let mut pending = BTreeMap::new();
    for (id, connector) in all {
        if connector.deleted_at.is_some() {
            continue;
        }
        let expected_sync = known.get(id).and_then(|expected| expected.sync_id.clone());
        let in_flight = in_flight_ids.contains(id.as_str());
        if expected_sync.is_none() && !in_flight {
            continue;
        }
        let mut stored_sync = None;
        if let (Some(sync_id), false) = (&expected_sync, in_flight) {
            let request = pb::ConnectorServiceGetSyncRequest { app_id: APP_ID.to_owned(), connector_id: id.clone(), id: sync_id.clone() };
            match client.get_sync(timed(request)).await {
                Ok(_) => stored_sync = Some(sync_id),
                Err(status) if status.code() == tonic::Code::NotFound => {
                    eprintln!("lost: acknowledged sync {sync_id} of connector {id} is missing");
                    totals.lost_writes += 1;
                }
                Err(status) => panic!("GetSync of {sync_id}: {status:?}"),
            }
        }
        // Without a stored pending-sync entry this queues a new sync instead.
        let request = pb::ConnectorServiceForceSyncRequest { app_id: APP_ID.to_owned(), connector_id: id.clone(), ..Default::default() };
        let sync = match client.force_sync(timed(request)).await {
            Ok(response) => response.into_inner().sync.unwrap(),
            // A pending-sync entry whose sync is missing makes every ForceSync conflict, which
            // only a half-applied write leaves behind.
            Err(status) => {
                eprintln!("index mismatch: ForceSync of connector {id} failed: {status:?}");
                totals.index_mismatches += 1;
                continue;
            }
        };
        if let Some(sync_id) = stored_sync
            && sync.id != *sync_id
        {
            eprintln!("index mismatch: connector {id} has pending sync {sync_id}, but ForceSync returned {}", sync.id);
            totals.index_mismatches += 1;
        }
        pending.insert(id.clone(), sync.id);
    }
    pending
}

/// Counts whether each write in flight at the kill was applied; either outcome is correct.
fn resolve_in_flight(
    all: &BTreeMap<String, pb::Connector>,
    known: &BTreeMap<String, Expected>,
    in_flight: &[InFlight],
    totals: &mut Totals,
) {
    for write in in_flight {
        let applied = match write {
            InFlight::Create { display_name } => {
                all.iter().any(|(id, connector)| !known.contains_key(id) && &connector.display_name == display_name)
            }
            InFlight::Update { id, display_name, description } => {
                let Some(connector) = all.get(id) else {
                    eprintln!("lost: connector {id} with an update in flight is missing");
                    totals.lost_writes += 1;
                    continue;
                };
                let applied = &connector.display_name == display_name && &connector.description == description;
                if !applied && !matches_expected(connector, &known[id]) {
                    eprintln!("lost: {id} is {} which is neither its acknowledged state nor the update in flight", describe(connector));
                    totals.lost_writes += 1;
                }
                applied
            }
            InFlight::ForceSync { id } => {
                // ForceSync leaves the connector as it was; verify_syncs learns whether a
                // sync was queued.
                if !all.get(id).is_some_and(|connector| matches_expected(connector, &known[id])) {
                    eprintln!("lost: connector {id} with a ForceSync in flight is not in its acknowledged state");
                    totals.lost_writes += 1;
                }
                continue;
            }
            InFlight::Delete { id } => {
                let Some(connector) = all.get(id) else {
                    eprintln!("lost: connector {id} with a delete in flight is missing");
                    totals.lost_writes += 1;
                    continue;
                };
                let applied = connector.deleted_at.is_some();
                if !applied && !matches_expected(connector, &known[id]) {
                    eprintln!("lost: {id} is {} which is not its acknowledged state", describe(connector));
                    totals.lost_writes += 1;
                }
                applied
            }
        };
        if applied {
            totals.in_flight_applied += 1;
        } else {
            totals.in_flight_not_applied += 1;
        }
    }
}

fn matches_expected(connector: &pb::Connector, expected: &Expected) -> bool {
    connector.display_name == expected.display_name
        && connector.description == expected.description
        && connector.deleted_at.is_some() == expected.deleted
        && expected.etag.as_ref().is_none_or(|etag| etag == &connector.etag)
}

fn observed(connector: &pb::Connector) -> Expected {
    let deleted = connector.deleted_at.is_some();
    Expected {
        display_name: connector.display_name.clone(),
        description: connector.description.clone(),
        etag: (!deleted).then(|| connector.etag.clone()),
        deleted,
        sync_id: None,
    }
}

fn describe(connector: &pb::Connector) -> String {
    format!("{:?}/{} etag {} deleted={}", connector.display_name, connector.description, connector.etag, connector.deleted_at.is_some())
}

/// Walks every page of the app's connectors.
async fn list_all(client: &mut ConnectorServiceClient<Channel>, show_deleted: bool) -> BTreeMap<String, pb::Connector> {
    let mut connectors = BTreeMap::new();
    let mut page_token = String::new();
    // Bounded: each page holds up to 100 connectors, far more pages than the test creates.
    for _ in 0..100_000 {
        let request = pb::ConnectorServiceListRequest { app_id: APP_ID.to_owned(), page_size: 100, page_token, show_deleted };
        let page = client.list(timed(request)).await.expect("List").into_inner();
        for view in page.list {
            let connector = view.connector.unwrap();
            connectors.insert(connector.id.clone(), connector);
        }
        if page.next_page_token.is_empty() {
            return connectors;
        }
        page_token = page.next_page_token;
    }
    panic!("List did not end after 100000 pages");
}
