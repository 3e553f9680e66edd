//! connectord-bench: a closed-loop gRPC load generator for connectord and, with the same
//! workloads and value sizes, for etcd's KV service.
//!
//! `run` drives a server over the network. `load` writes a large data set straight into a
//! data directory, and `startup` times a server from spawn to a SERVING health check.

mod connectord_target;
mod disk;
mod etcd_target;
mod keys;
mod load;
mod report;
mod runner;
mod startup;

use std::{process::ExitCode, time::Duration};

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Generated client of etcd's KV service (packages `etcdserverpb` and `mvccpb`).
pub mod etcd {
    pub mod etcdserverpb {
        #![allow(clippy::all)]
        tonic::include_proto!("etcdserverpb");
    }
    pub mod mvccpb {
        #![allow(clippy::all)]
        tonic::include_proto!("mvccpb");
    }
}

#[derive(Debug, Parser)]
#[command(name = "connectord-bench", version, about = "Load generator for connectord and etcd.")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Preload keys, warm up, then measure one workload and print its throughput and latency.
    Run(RunArgs),
    /// Write connectors straight into a data directory (no server may be using it).
    Load(load::LoadArgs),
    /// Spawn a server command, time it until its health check reports SERVING, then stop it.
    Startup(startup::StartupArgs),
    /// Time small appends made durable with fdatasync, back to back and with pauses between
    /// them, to see how the disk under a data directory behaves.
    Disk(disk::DiskArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Target {
    /// connectord's ConnectorService.
    Connectord,
    /// etcd's KV service: Put for create and update, Range for get and list.
    Etcd,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Workload {
    /// New connectors (etcd: Put of a new key), one unique key per request.
    Create,
    /// Point reads of preloaded keys (etcd: Range of one key).
    Get,
    /// A page of 100 from a random position (etcd: prefix Range with limit 100).
    List,
    /// Update of the description with an update mask and the last etag (etcd: Put of an
    /// existing key). Each client owns its own keys, so etags never conflict.
    Update,
    /// A random mix of the four, weighted by --mix.
    Mixed,
}

#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Server to drive.
    #[arg(long, value_enum, default_value_t = Target::Connectord)]
    pub target: Target,

    /// Workload to measure.
    #[arg(long, value_enum)]
    pub workload: Workload,

    /// Server address, such as http://127.0.0.1:50051, or https://localhost:50051 with
    /// --ca-cert.
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    pub endpoint: String,

    /// PEM file of the CA that signed the server's certificate. Connects with TLS, so the
    /// endpoint must start with https:// and name a host the certificate covers.
    #[arg(long)]
    pub ca_cert: Option<std::path::PathBuf>,

    /// File whose first line is an API token, sent as `authorization: Bearer <token>` to a
    /// server started with --tokens-file. connectord only; the token is never printed.
    #[arg(long)]
    pub token_file: Option<std::path::PathBuf>,

    /// Requests in flight at once (closed loop: each client sends its next request when the
    /// previous one returns).
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,

    /// HTTP/2 connections. Clients are spread over them round-robin.
    #[arg(long, default_value_t = 4)]
    pub connections: usize,

    /// Measured time after the warm-up, such as 10s. Ignored when --requests is set.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub duration: Duration,

    /// Number of measured requests after the warm-up, instead of --duration.
    #[arg(long)]
    pub requests: Option<u64>,

    /// Time spent sending unmeasured requests before measuring, such as 2s or 0s.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    pub warmup: Duration,

    /// Size in bytes of each connector's description. etcd values are the encoded size of
    /// a connector with such a description, so both servers store about the same bytes.
    #[arg(long, default_value_t = 256)]
    pub value_size: usize,

    /// Keys created before the warm-up, for the workloads that read or update them.
    /// Default: 10000, or 0 for the create workload.
    #[arg(long)]
    pub preload: Option<usize>,

    /// Use the connectors listed in this file (lines of `app_id id`, as written by `load
    /// --ids-file`) instead of preloading. connectord only.
    #[arg(long, conflicts_with = "preload")]
    pub keys_file: Option<std::path::PathBuf>,

    /// App id (etcd: key prefix) for this run. Default: a new random one per run.
    #[arg(long)]
    pub app_id: Option<String>,

    /// Weights of the mixed workload, such as create=10,get=50,list=20,update=20.
    #[arg(long, default_value = "create=10,get=50,list=20,update=20", value_parser = runner::parse_mix)]
    pub mix: runner::Mix,

    /// Send etcd reads with serializable=true, which the local member serves without a
    /// ReadIndex round trip. On a single-member cluster they still see every acknowledged
    /// write.
    #[arg(long)]
    pub etcd_serializable: bool,

    /// Worker threads of the client's runtime. Default: the CPUs this process may run on.
    #[arg(long)]
    pub threads: Option<usize>,

    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,

    /// Stop the whole run, warm-up and preload included, after this long.
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    pub time_limit: Duration,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let threads = match &cli.command {
        Command::Run(args) => args.threads,
        Command::Load(args) => args.threads,
        Command::Startup(_) | Command::Disk(_) => Some(1),
    };
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = threads {
        builder.worker_threads(threads.max(1));
    }
    let runtime = match builder.enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("connectord-bench: cannot start the tokio runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Run(args) => runner::run(args).await,
            Command::Load(args) => load::run(args).await,
            Command::Startup(args) => startup::run(args).await,
            Command::Disk(args) => disk::run(&args),
        }
    });
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("connectord-bench: {error}");
            ExitCode::FAILURE
        }
    }
}
