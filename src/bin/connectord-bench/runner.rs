//! The closed loop: connects, preloads, warms up, measures and reports.

use std::{
    collections::BTreeMap,
    path::Path,
    process::ExitCode,
    sync::{
        Arc,
        atomic::{AtomicI64, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use rustls::pki_types::{CertificateDer, pem::PemObject};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

use crate::{
    RunArgs, Target, Workload,
    connectord_target::ConnectordClient,
    etcd_target::EtcdClient,
    report::{OpStats, Report},
};

/// Default number of keys preloaded for the workloads that read or update existing keys.
const DEFAULT_PRELOAD: usize = 10_000;
/// Errors printed in full to standard error; later ones are only counted.
const PRINTED_ERRORS: usize = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Op {
    Create,
    Get,
    List,
    Update,
}

impl Op {
    pub fn name(self) -> &'static str {
        match self {
            Op::Create => "create",
            Op::Get => "get",
            Op::List => "list",
            Op::Update => "update",
        }
    }
}

/// Weights of the mixed workload, in the order create, get, list, update.
#[derive(Debug, Clone, Copy)]
pub struct Mix {
    weights: [u32; 4],
}

const MIX_OPS: [Op; 4] = [Op::Create, Op::Get, Op::List, Op::Update];

impl Mix {
    fn pick(&self, rng: &mut fastrand::Rng) -> Op {
        let total: u32 = self.weights.iter().sum();
        let mut draw = rng.u32(0..total);
        for (op, weight) in MIX_OPS.iter().zip(self.weights) {
            if draw < weight {
                return *op;
            }
            draw -= weight;
        }
        Op::Get
    }
}

/// Parses `create=10,get=50,list=20,update=20`; operations left out get weight 0.
pub fn parse_mix(text: &str) -> Result<Mix, String> {
    let mut weights = [0u32; 4];
    for part in text.split(',').filter(|part| !part.is_empty()) {
        let Some((name, weight)) = part.split_once('=') else {
            return Err(format!("{part:?} is not name=weight"));
        };
        let index = MIX_OPS
            .iter()
            .position(|op| op.name() == name.trim())
            .ok_or_else(|| format!("unknown operation {name:?}; expected create, get, list or update"))?;
        weights[index] = weight.trim().parse().map_err(|_| format!("weight {weight:?} is not a whole number"))?;
    }
    if weights.iter().sum::<u32>() == 0 {
        return Err("at least one weight must be above 0".into());
    }
    Ok(Mix { weights })
}

/// A client of either server that can send every operation.
pub enum Client {
    Connectord(ConnectordClient),
    Etcd(EtcdClient),
}

impl Client {
    /// Sends one request. An `Err` names the gRPC code or the failed response check.
    async fn call(&mut self, op: Op) -> Result<(), Failure> {
        match self {
            Client::Connectord(client) => client.call(op).await,
            Client::Etcd(client) => client.call(op).await,
        }
    }
}

/// A failed call: the kind it is counted under and a message for the first few.
pub struct Failure {
    pub kind: String,
    pub message: String,
}

impl Failure {
    pub fn status(status: &tonic::Status) -> Self {
        Self { kind: format!("{:?}", status.code()), message: status.message().to_owned() }
    }

    pub fn check(message: impl Into<String>) -> Self {
        Self { kind: "check".into(), message: message.into() }
    }
}

/// When measuring starts and stops, shared by every client.
struct Schedule {
    measure_start: Instant,
    measure_end: Option<Instant>,
    /// Measured requests not yet sent, when the run is bounded by a request count.
    remaining: AtomicI64,
    hard_stop: Instant,
    printed_errors: AtomicUsize,
}

struct ClientOutcome {
    by_op: BTreeMap<Op, OpStats>,
    last_response: Option<Instant>,
}

/// Opens `count` HTTP/2 connections to `endpoint`, over TLS when `ca_cert` names the PEM
/// file of the server's CA.
pub async fn connect(endpoint: &str, ca_cert: Option<&Path>, count: usize) -> Result<Vec<Channel>, String> {
    let mut endpoint = Endpoint::from_shared(endpoint.to_owned())
        .map_err(|error| format!("invalid endpoint {endpoint:?}: {error}"))?
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(10));
    match ca_cert {
        Some(path) => {
            if endpoint.uri().scheme_str() != Some("https") {
                return Err(format!("--ca-cert needs an https:// endpoint, not {}", endpoint.uri()));
            }
            let pem = std::fs::read(path).map_err(|error| format!("cannot read --ca-cert {}: {error}", path.display()))?;
            let certificates = CertificateDer::pem_slice_iter(&pem).filter(Result::is_ok).count();
            if certificates == 0 {
                return Err(format!("--ca-cert {} contains no PEM certificate", path.display()));
            }
            let tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem));
            endpoint = endpoint.tls_config(tls).map_err(|error| format!("invalid TLS setup: {error}"))?;
        }
        None if endpoint.uri().scheme_str() == Some("https") => {
            return Err("an https:// endpoint needs --ca-cert with the PEM file of the server's CA".to_owned());
        }
        None => {}
    }
    let mut channels = Vec::with_capacity(count);
    for _ in 0..count.max(1) {
        let channel = endpoint.connect().await.map_err(|error| connect_error(endpoint.uri(), &error))?;
        channels.push(channel);
    }
    Ok(channels)
}

/// Describes a failed connection with every cause tonic wraps, such as a refused
/// connection or an untrusted certificate, because tonic's own message is only "transport
/// error".
fn connect_error(uri: &tonic::codegen::http::Uri, error: &tonic::transport::Error) -> String {
    use std::error::Error as _;

    let mut message = format!("cannot connect to {uri}: {}", with_causes(&error.to_string(), error.source()));
    let connection_refused = std::iter::successors(Some(error as &dyn std::error::Error), |error| (*error).source())
        .filter_map(|error| error.downcast_ref::<std::io::Error>())
        .any(|error| error.kind() == std::io::ErrorKind::ConnectionRefused);
    if connection_refused {
        message.push_str("; is the server running?");
    }
    message
}

/// Joins `message` with the messages of `source` and its own sources.
pub fn with_causes(message: &str, mut source: Option<&dyn std::error::Error>) -> String {
    let mut message = message.to_owned();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.ends_with(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    message
}

pub async fn run(args: RunArgs) -> Result<ExitCode, String> {
    if args.concurrency == 0 {
        return Err("--concurrency must be at least 1".into());
    }
    let hard_stop = Instant::now() + args.time_limit;
    let channels = connect(&args.endpoint, args.ca_cert.as_deref(), args.connections).await?;
    let run_id = format!("{:08x}", fastrand::u32(..));
    let preload = match (args.preload, args.workload) {
        (Some(count), _) => count,
        (None, Workload::Create) => 0,
        (None, _) => DEFAULT_PRELOAD,
    };
    if args.workload != Workload::Create && preload == 0 && args.keys_file.is_none() {
        return Err("every workload but create needs --preload above 0 or --keys-file".into());
    }

    let (clients, preloaded, etcd_value_bytes) = match args.target {
        Target::Connectord => {
            let (clients, preloaded) = crate::connectord_target::prepare(&args, &channels, &run_id, preload, hard_stop).await?;
            (clients.into_iter().map(Client::Connectord).collect::<Vec<_>>(), preloaded, 0)
        }
        Target::Etcd => {
            if args.keys_file.is_some() {
                return Err("--keys-file works only with --target connectord".into());
            }
            if args.token_file.is_some() {
                return Err("--token-file works only with --target connectord".into());
            }
            let (clients, value_bytes) = crate::etcd_target::prepare(&args, &channels, &run_id, preload, hard_stop).await?;
            (clients.into_iter().map(Client::Etcd).collect::<Vec<_>>(), preload, value_bytes)
        }
    };

    let measure_start = Instant::now() + args.warmup;
    let schedule = Arc::new(Schedule {
        measure_start,
        measure_end: args.requests.is_none().then(|| measure_start + args.duration),
        remaining: AtomicI64::new(args.requests.map_or(i64::MAX, |count| i64::try_from(count).unwrap_or(i64::MAX))),
        hard_stop,
        printed_errors: AtomicUsize::new(0),
    });
    let tasks: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(index, client)| {
            let schedule = Arc::clone(&schedule);
            let workload = args.workload;
            let mix = args.mix;
            tokio::spawn(drive(client, workload, mix, schedule, index as u64))
        })
        .collect();

    let mut by_op: BTreeMap<Op, OpStats> = BTreeMap::new();
    let mut last_response = measure_start;
    for task in tasks {
        let outcome = task.await.map_err(|error| format!("a client task failed: {error}"))?;
        for (op, stats) in outcome.by_op {
            by_op.entry(op).or_insert_with(OpStats::new).merge(&stats);
        }
        if let Some(at) = outcome.last_response {
            last_response = last_response.max(at);
        }
    }
    if Instant::now() >= hard_stop {
        eprintln!("connectord-bench: stopped by --time-limit before the measurement finished");
    }

    let report = Report::new(&args, etcd_value_bytes, preloaded, &by_op, last_response.saturating_duration_since(measure_start));
    if args.json {
        println!("{}", serde_json::to_string(&report).map_err(|error| format!("cannot encode the report: {error}"))?);
    } else {
        print!("{}", report.text());
    }
    if report.total.errors > 0 {
        eprintln!("connectord-bench: {} of {} measured requests failed", report.total.errors, report.total.requests);
    }
    Ok(ExitCode::SUCCESS)
}

/// Sends requests one after another until the schedule ends, recording those sent after
/// the warm-up.
async fn drive(mut client: Client, workload: Workload, mix: crate::runner::Mix, schedule: Arc<Schedule>, seed: u64) -> ClientOutcome {
    let mut rng = fastrand::Rng::with_seed(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ fastrand::u64(..));
    let mut outcome = ClientOutcome { by_op: BTreeMap::new(), last_response: None };
    loop {
        let now = Instant::now();
        if now >= schedule.hard_stop {
            break;
        }
        let measured = now >= schedule.measure_start;
        if measured {
            match schedule.measure_end {
                Some(end) if now >= end => break,
                Some(_) => {}
                None => {
                    if schedule.remaining.fetch_sub(1, Ordering::Relaxed) <= 0 {
                        break;
                    }
                }
            }
        }

        let op = match workload {
            Workload::Create => Op::Create,
            Workload::Get => Op::Get,
            Workload::List => Op::List,
            Workload::Update => Op::Update,
            Workload::Mixed => mix.pick(&mut rng),
        };
        let sent = Instant::now();
        let result = client.call(op).await;
        let received = Instant::now();

        if let Err(failure) = &result
            && schedule.printed_errors.fetch_add(1, Ordering::Relaxed) < PRINTED_ERRORS
        {
            eprintln!("connectord-bench: {} failed: {}: {}", op.name(), failure.kind, failure.message);
        }
        if measured {
            let result = result.map_err(|failure| failure.kind);
            outcome.by_op.entry(op).or_insert_with(OpStats::new).record(received - sent, &result);
            outcome.last_response = Some(received);
        }
    }
    outcome
}

/// Runs `count` calls of `make` with up to `concurrency` in flight and returns their results
/// in no particular order. Used by the preload steps.
pub async fn run_concurrently<T, F, Fut>(count: usize, concurrency: usize, hard_stop: Instant, make: F) -> Result<Vec<T>, String>
where
    T: Send + 'static,
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = Result<T, String>> + Send + 'static,
{
    let mut results = Vec::with_capacity(count);
    let mut in_flight = tokio::task::JoinSet::new();
    let mut next = 0;
    while next < count || !in_flight.is_empty() {
        while next < count && in_flight.len() < concurrency.max(1) {
            in_flight.spawn(make(next));
            next += 1;
        }
        let Ok(joined) = tokio::time::timeout_at(hard_stop.into(), in_flight.join_next()).await else {
            return Err("preload did not finish within --time-limit".into());
        };
        let Some(joined) = joined else { break };
        results.push(joined.map_err(|error| format!("a preload task failed: {error}"))??);
    }
    Ok(results)
}
