//! The offline loader: creates connectors through the registry, on a data directory that no
//! server uses. The connectors get the same ids, records and durability as over gRPC, but
//! the loader skips request validation and the network, which makes it about twice as
//! fast as gRPC creates (docs/benchmarks.md has the measured rates).

use std::{
    io::Write,
    path::PathBuf,
    process::ExitCode,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use clap::Args;
use connectord::{
    domain::{Config, ConfigTypes, ConnectorRegistry, NewConnector},
    pb,
    store::{SledStore, SledStoreOptions, Store},
};
use serde::Serialize;

use crate::{
    connectord_target::{bench_config, description_of},
    runner::run_concurrently,
};

#[derive(Debug, Clone, Args)]
pub struct LoadArgs {
    /// Data directory to add connectors to; created if missing. No server may be using it.
    #[arg(long)]
    pub data_dir: PathBuf,

    /// Number of connectors to create.
    #[arg(long)]
    pub connectors: usize,

    /// Number of apps to spread them over, round-robin.
    #[arg(long, default_value_t = 1)]
    pub apps: usize,

    /// App id, or with --apps above 1 the prefix of the app ids (PREFIX-0000, PREFIX-0001, …).
    #[arg(long, default_value = "scale")]
    pub app_id: String,

    /// Size in bytes of each connector's description.
    #[arg(long, default_value_t = 256)]
    pub value_size: usize,

    /// Creates in flight at once; they share flushes, so more means fewer fsyncs.
    #[arg(long, default_value_t = 1024)]
    pub concurrency: usize,

    /// Append a line `app_id id` per created connector to this file, for `run --keys-file`.
    #[arg(long)]
    pub ids_file: Option<PathBuf>,

    /// Worker threads of the loader's runtime. Default: the CPUs this process may run on.
    #[arg(long)]
    pub threads: Option<usize>,

    /// Stop after this long, such as 30m.
    #[arg(long, default_value = "60m", value_parser = humantime::parse_duration)]
    pub time_limit: Duration,
}

#[derive(Debug, Serialize)]
struct LoadReport {
    connectors: usize,
    apps: usize,
    seconds: f64,
    connectors_per_second: f64,
}

pub async fn run(args: LoadArgs) -> Result<ExitCode, String> {
    if args.apps == 0 {
        return Err("--apps must be at least 1".into());
    }
    let started = Instant::now();
    let store = SledStore::open(&SledStoreOptions::new(&args.data_dir)).map_err(|error| error.to_string())?;
    let store: Arc<dyn Store> = Arc::new(store);
    let config_types =
        ConfigTypes::new(pb::FILE_DESCRIPTOR_SET).map_err(|error| format!("cannot load the built-in config types: {error}"))?;
    let registry = Arc::new(ConnectorRegistry::new(Arc::clone(&store), Arc::new(config_types)));

    let app_ids: Arc<Vec<String>> = Arc::new(match args.apps {
        1 => vec![args.app_id.clone()],
        apps => (0..apps).map(|index| format!("{}-{index:04}", args.app_id)).collect(),
    });
    let description: Arc<str> = description_of(args.value_size).into();
    // The config that `run --workload create` sends, so loaded connectors have the same size.
    let config = {
        let any = bench_config();
        Config { type_url: any.type_url, value: any.value, secret_keys: Vec::new() }
    };
    let done = Arc::new(AtomicUsize::new(0));
    let total = args.connectors;

    let created = run_concurrently(args.connectors, args.concurrency, started + args.time_limit, {
        let registry = Arc::clone(&registry);
        let done = Arc::clone(&done);
        move |index| {
            let registry = Arc::clone(&registry);
            let done = Arc::clone(&done);
            let app_id = app_ids[index % app_ids.len()].clone();
            let new = NewConnector {
                app_id,
                catalog_id: "bench".to_owned(),
                display_name: format!("scale {index}"),
                description: description.to_string(),
                user_ids: Vec::new(),
                config: Some(config.clone()),
                request_id: None,
            };
            async move {
                let connector = registry.create(new).await.map_err(|error| format!("create failed: {error}"))?;
                let count = done.fetch_add(1, Ordering::Relaxed) + 1;
                if count.is_multiple_of(100_000) {
                    eprintln!("connectord-bench: {count} of {total} connectors created");
                }
                Ok((connector.app_id, connector.id))
            }
        }
    })
    .await?;
    store.close().await.map_err(|error| format!("closing the store failed: {error}"))?;
    let seconds = started.elapsed().as_secs_f64();

    if let Some(path) = &args.ids_file {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|error| format!("cannot open ids file {}: {error}", path.display()))?;
        let mut writer = std::io::BufWriter::new(file);
        for (app_id, id) in &created {
            writeln!(writer, "{app_id} {id}").map_err(|error| format!("cannot write ids file {}: {error}", path.display()))?;
        }
        writer.flush().map_err(|error| format!("cannot write ids file {}: {error}", path.display()))?;
    }

    let report = LoadReport { connectors: created.len(), apps: args.apps, seconds, connectors_per_second: created.len() as f64 / seconds };
    println!("{}", serde_json::to_string(&report).map_err(|error| format!("cannot encode the report: {error}"))?);
    Ok(ExitCode::SUCCESS)
}
