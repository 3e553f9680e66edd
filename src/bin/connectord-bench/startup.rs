//! Start-up time: spawn a server, poll its gRPC health check until SERVING, then stop it.

use std::{
    process::{ExitCode, Stdio},
    time::{Duration, Instant},
};

use clap::Args;
use serde::Serialize;
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};

/// Pause between two health checks while the server starts.
const POLL_INTERVAL: Duration = Duration::from_millis(2);

#[derive(Debug, Clone, Args)]
pub struct StartupArgs {
    /// Address the server will listen on, such as http://127.0.0.1:50051.
    #[arg(long)]
    pub endpoint: String,

    /// Service whose health status must be SERVING.
    #[arg(long, default_value = "connectord.v1.ConnectorService")]
    pub service: String,

    /// Give up when the server is not SERVING after this long.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,

    /// The server command and its arguments, after `--`.
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
}

#[derive(Debug, Serialize)]
struct StartupReport {
    /// Time from spawning the command to the first SERVING response.
    seconds_to_serving: f64,
    /// Resident set size of the server when it was first SERVING, in KiB.
    rss_kib: Option<u64>,
}

pub async fn run(args: StartupArgs) -> Result<ExitCode, String> {
    let started = Instant::now();
    let mut child = tokio::process::Command::new(&args.command[0])
        .args(&args.command[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|error| format!("cannot start {:?}: {error}", args.command[0]))?;
    let pid = child.id().ok_or("the server exited at once")?;

    let serving = wait_serving(&args, started, &mut child).await;
    let elapsed = started.elapsed();
    let rss_kib = resident_kib(pid);

    // Stop the server by its PID with SIGTERM, so it closes its store cleanly.
    let _ = std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status();
    if tokio::time::timeout(Duration::from_secs(60), child.wait()).await.is_err() {
        eprintln!("connectord-bench: server {pid} did not stop within 60 s of SIGTERM; killing it");
        let _ = child.kill().await;
    }
    serving?;

    let report = StartupReport { seconds_to_serving: elapsed.as_secs_f64(), rss_kib };
    println!("{}", serde_json::to_string(&report).map_err(|error| format!("cannot encode the report: {error}"))?);
    Ok(ExitCode::SUCCESS)
}

async fn wait_serving(args: &StartupArgs, started: Instant, child: &mut tokio::process::Child) -> Result<(), String> {
    let endpoint = tonic::transport::Endpoint::from_shared(args.endpoint.clone())
        .map_err(|error| format!("invalid endpoint {:?}: {error}", args.endpoint))?
        .connect_timeout(Duration::from_secs(1));
    let deadline = started + args.timeout;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("the server exited with {status} before it was SERVING"));
        }
        if let Ok(channel) = endpoint.connect().await {
            let request = HealthCheckRequest { service: args.service.clone() };
            if let Ok(response) = HealthClient::new(channel).check(request).await
                && response.into_inner().status() == ServingStatus::Serving
            {
                return Ok(());
            }
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
    Err(format!("the server was not SERVING within {:?}", args.timeout))
}

/// Reads VmRSS of a process from /proc (Linux only).
pub fn resident_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
