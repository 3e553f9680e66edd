//! connectord-bench against a test server: every workload completes a few hundred requests
//! without errors and prints a valid JSON report. The disk probe runs on a temporary
//! directory. No timing is asserted.

mod common;

use std::path::Path;

use common::{TestServer, WAIT_LIMIT};
use connectord::{
    auth::{Role, TokenFile},
    tls::TlsFiles,
};
use serde_json::Value;

const MEASURED_REQUESTS: u64 = 200;
/// Keys created before measuring: more than the clients, so each client owns keys to update.
const PRELOAD: [&str; 2] = ["--preload", "150"];

/// Runs connectord-bench with `args` and returns its exit status and output.
async fn bench_output(args: &[&str]) -> std::process::Output {
    tokio::time::timeout(
        WAIT_LIMIT,
        tokio::process::Command::new(env!("CARGO_BIN_EXE_connectord-bench")).args(args).kill_on_drop(true).output(),
    )
    .await
    .expect("connectord-bench finishes within the wait limit")
    .expect("connectord-bench starts")
}

/// Runs connectord-bench with `args` and returns its JSON report.
async fn run_bench(args: &[&str]) -> Value {
    let output = bench_output(args).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "connectord-bench {args:?} failed: {}\n{stderr}", output.status);
    let stdout = String::from_utf8(output.stdout).expect("the report is UTF-8");
    serde_json::from_str(stdout.trim()).unwrap_or_else(|error| panic!("report is not JSON ({error}): {stdout}\n{stderr}"))
}

/// Runs connectord-bench with `args`, expects it to fail, and returns its standard error.
async fn run_bench_failing(args: &[&str]) -> String {
    let output = bench_output(args).await;
    assert!(!output.status.success(), "connectord-bench {args:?} succeeded");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Arguments of a short `run`; `keys` is `--preload N` or `--keys-file FILE`.
fn run_args<'a>(endpoint: &'a str, workload: &'a str, requests: &'a str, keys: [&'a str; 2]) -> Vec<&'a str> {
    let mut args = vec![
        "run",
        "--endpoint",
        endpoint,
        "--workload",
        workload,
        "--concurrency",
        "8",
        "--connections",
        "2",
        "--warmup",
        "0s",
        "--requests",
        requests,
        "--json",
    ];
    args.extend(keys);
    args
}

fn assert_clean_report(report: &Value, workload: &str) {
    assert_eq!(report["workload"], workload, "{report}");
    assert_eq!(report["errors"], 0, "{workload}: {report}");
    assert_eq!(report["requests"], MEASURED_REQUESTS, "{workload}: {report}");
    assert!(report["throughput_per_second"].as_f64().is_some_and(|rate| rate > 0.0), "{workload}: {report}");
    let latency = &report["latency_micros"];
    for percentile in ["p50", "p99", "p999"] {
        assert!(latency[percentile].as_u64().is_some_and(|micros| micros > 0), "{workload} {percentile}: {report}");
    }
}

#[tokio::test]
async fn bench_workloads_run_without_errors() {
    let server = TestServer::start().await;
    let endpoint = format!("http://{}", server.addr);
    let requests = MEASURED_REQUESTS.to_string();

    for workload in ["create", "get", "list", "update", "mixed"] {
        let report = run_bench(&run_args(&endpoint, workload, &requests, PRELOAD)).await;
        assert_clean_report(&report, workload);
    }
}

#[tokio::test]
async fn bench_mixed_reports_each_operation() {
    let server = TestServer::start().await;
    let endpoint = format!("http://{}", server.addr);
    let requests = MEASURED_REQUESTS.to_string();

    let mut args = run_args(&endpoint, "mixed", &requests, PRELOAD);
    args.extend(["--mix", "create=1,get=1,list=1,update=1"]);
    let report = run_bench(&args).await;

    let operations = report["operations"].as_object().expect("operations is an object");
    let total: u64 = operations.values().map(|operation| operation["requests"].as_u64().unwrap()).sum();
    assert_eq!(total, MEASURED_REQUESTS, "{report}");
    for name in ["create", "get", "list", "update"] {
        assert!(operations.contains_key(name), "no {name} in {report}");
    }
}

#[tokio::test]
async fn loaded_data_set_serves_pages() {
    let data_dir = tempfile::TempDir::new().expect("create a temporary data directory");
    let ids_file = data_dir.path().join("ids.txt");
    let store_dir = data_dir.path().join("store");
    let load =
        run_bench(&["load", "--data-dir", path_text(&store_dir), "--connectors", "450", "--apps", "3", "--ids-file", path_text(&ids_file)])
            .await;
    assert_eq!(load["connectors"], 450, "{load}");
    let ids = std::fs::read_to_string(&ids_file).expect("read the ids file");
    assert_eq!(ids.lines().count(), 450);

    let server = TestServer::start_with(|options| options.data_dir = store_dir.clone()).await;
    let endpoint = format!("http://{}", server.addr);
    let requests = MEASURED_REQUESTS.to_string();
    for workload in ["list", "get"] {
        let args = run_args(&endpoint, workload, &requests, ["--keys-file", path_text(&ids_file)]);
        let report = run_bench(&args).await;
        assert_clean_report(&report, workload);
    }
    server.stop().await;
}

#[tokio::test]
async fn bench_connects_over_tls() {
    let directory = tempfile::TempDir::new().expect("create a temporary directory");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, rcgen::KeyPair::generate().unwrap()).unwrap();
    let server_key = rcgen::KeyPair::generate().unwrap();
    let server_cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap().signed_by(&server_key, &ca).unwrap();
    let write = |name: &str, text: String| {
        let path = directory.path().join(name);
        std::fs::write(&path, text).expect("write a PEM file");
        path
    };
    let ca_file = write("ca.pem", ca.pem());
    let files =
        TlsFiles { cert: write("server.pem", server_cert.pem()), key: write("server.key", server_key.serialize_pem()), client_ca: None };
    let server = TestServer::start_with(|options| options.tls = Some(files)).await;
    let endpoint = format!("https://{}", server.addr);
    let requests = MEASURED_REQUESTS.to_string();

    let mut args = run_args(&endpoint, "get", &requests, PRELOAD);
    args.extend(["--ca-cert", path_text(&ca_file)]);
    let report = run_bench(&args).await;
    assert_clean_report(&report, "get");

    let mut other_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    other_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let other_ca = rcgen::CertifiedIssuer::self_signed(other_params, rcgen::KeyPair::generate().unwrap()).unwrap();
    let other_ca_file = write("other-ca.pem", other_ca.pem());
    let empty_file = write("empty.pem", String::new());
    let cases = [
        (None, "an https:// endpoint needs --ca-cert"),
        (Some(&other_ca_file), "invalid peer certificate"),
        (Some(&empty_file), "contains no PEM certificate"),
    ];
    for (ca_cert, expected) in cases {
        let mut args = run_args(&endpoint, "get", &requests, PRELOAD);
        if let Some(path) = ca_cert {
            args.extend(["--ca-cert", path_text(path)]);
        }
        let stderr = run_bench_failing(&args).await;
        assert!(stderr.contains(expected), "{args:?}: the error does not say {expected:?}: {stderr}");
    }
    server.stop().await;
}

#[tokio::test]
async fn bench_sends_the_api_token() {
    let directory = tempfile::TempDir::new().expect("create a temporary directory");
    let tokens_file = directory.path().join("tokens.jsonl");
    let token = TokenFile::new(&tokens_file).create("bench", Role::Editor).expect("create a token");
    let token_file = directory.path().join("token.txt");
    std::fs::write(&token_file, format!("{token}\n")).expect("write the token file");
    let empty_file = directory.path().join("empty.txt");
    std::fs::write(&empty_file, "").expect("write an empty file");
    let server = TestServer::start_with(|options| options.tokens_file = Some(tokens_file.clone())).await;
    let endpoint = format!("http://{}", server.addr);
    let requests = MEASURED_REQUESTS.to_string();

    let mut args = run_args(&endpoint, "update", &requests, PRELOAD);
    args.extend(["--token-file", path_text(&token_file)]);
    assert_clean_report(&run_bench(&args).await, "update");

    let cases = [(None, "pass an API token with --token-file"), (Some(&empty_file), "is empty")];
    for (file, expected) in cases {
        let mut args = run_args(&endpoint, "get", &requests, PRELOAD);
        if let Some(path) = file {
            args.extend(["--token-file", path_text(path)]);
        }
        let stderr = run_bench_failing(&args).await;
        assert!(stderr.contains(expected), "{args:?}: the error does not say {expected:?}: {stderr}");
        assert!(!stderr.contains(&token), "the token appeared in the output");
    }
    server.stop().await;
}

#[tokio::test]
async fn disk_probe_reports_each_pause() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let dir_text = path_text(dir.path());
    let report =
        run_bench(&["disk", "--dir", dir_text, "--writes", "20", "--write-size", "512", "--pauses-micros", "0,30", "--json"]).await;

    let results = report["results"].as_array().expect("results is an array");
    assert_eq!(results.len(), 2, "one result per pause: {report}");
    for (result, pause) in results.iter().zip([0, 30]) {
        assert_eq!(result["pause_micros"], pause, "{result}");
        assert_eq!(result["writes"], 20, "{result}");
        let p50 = result["p50"].as_u64().expect("p50 is a number");
        let max = result["max"].as_u64().expect("max is a number");
        assert!(p50 >= 1, "an fdatasync took no time: {result}");
        assert!(p50 <= max, "p50 above max: {result}");
    }
    let left: Vec<_> = std::fs::read_dir(dir.path()).expect("the directory is readable").collect();
    assert!(left.is_empty(), "the probe file was not removed: {left:?}");

    for (args, expected) in [
        (vec!["disk", "--dir", dir_text, "--writes", "0"], "--writes must be between 1 and"),
        (vec!["disk", "--dir", dir_text, "--pauses-micros", "200000"], "--pauses-micros values must be at most"),
        (vec!["disk", "--dir", dir_text, "--writes", "100000", "--write-size", "1048576"], "lower one of them"),
        (vec!["disk", "--dir", "/nonexistent/connectord-bench"], "is not a directory"),
    ] {
        let stderr = run_bench_failing(&args).await;
        assert!(stderr.contains(expected), "{args:?}: the error does not say {expected:?}: {stderr}");
    }
}

fn path_text(path: &Path) -> &str {
    path.to_str().expect("temporary paths are UTF-8")
}
