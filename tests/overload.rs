//! Overload: a burst far above the configured capacity must be shed with
//! RESOURCE_EXHAUSTED instead of queueing without bound, health probes keep getting
//! responses, and the server serves every call again once the burst is over.

mod support;

use std::time::{Duration, Instant};

use support::{ServerProcess, create_request};
use tonic::Code;
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};

const BURST_CALLS: usize = 2_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn burst_above_capacity_is_shed_and_server_recovers() {
    let data_dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(
        data_dir.path(),
        &["--max-concurrent-requests", "4", "--max-queued-requests", "8", "--queue-timeout", "100ms"],
    );
    let before_kib = server.resident_kib();

    let mut channels = Vec::new();
    for _ in 0..4 {
        channels.push(server.channel().await);
    }
    let mut calls = Vec::new();
    for index in 0..BURST_CALLS {
        let mut client = connectord::pb::connector_service_client::ConnectorServiceClient::new(channels[index % channels.len()].clone());
        calls.push(tokio::spawn(async move {
            let mut request = tonic::Request::new(create_request("app", &format!("burst-{index}")));
            request.set_timeout(Duration::from_secs(30));
            client.create(request).await.map(|_| ()).map_err(|status| status.code())
        }));
    }

    // Health is not limited, so probes get a response in the middle of the burst.
    let mut health = HealthClient::new(server.channel().await);
    let probe_started = Instant::now();
    let status = health.check(HealthCheckRequest { service: String::new() }).await.expect("health during overload");
    assert_eq!(status.into_inner().status, ServingStatus::Serving as i32);
    assert!(probe_started.elapsed() < Duration::from_secs(2), "health probe took {:?}", probe_started.elapsed());

    let (mut succeeded, mut shed) = (0, 0);
    for call in calls {
        match call.await.unwrap() {
            Ok(()) => succeeded += 1,
            Err(Code::ResourceExhausted) => shed += 1,
            Err(other) => panic!("a call in the burst failed with {other:?}, expected OK or RESOURCE_EXHAUSTED"),
        }
    }
    let after_kib = server.resident_kib();
    eprintln!("burst of {BURST_CALLS}: {succeeded} succeeded, {shed} shed; resident memory {before_kib} KiB -> {after_kib} KiB");
    assert!(shed > 0, "no call was shed although {BURST_CALLS} arrived at once");
    assert!(succeeded > 0, "no call succeeded during the burst");
    assert!(after_kib.saturating_sub(before_kib) < 50 * 1024, "resident memory grew from {before_kib} KiB to {after_kib} KiB");

    // Once the burst is over, calls at a sustainable rate all succeed.
    let mut client = server.client().await;
    for index in 0..50 {
        let created = client.create(create_request("app", &format!("after-burst-{index}"))).await;
        assert!(created.is_ok(), "call {index} after the burst: {created:?}");
    }
}
