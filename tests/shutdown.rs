//! Shutdown under load: SIGTERM during concurrent writes turns health NOT_SERVING first,
//! in-flight calls finish or fail cleanly within the grace period, the process exits 0, and
//! every acknowledged write is present after a restart.

mod support;

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use connectord::pb::{self, connector_service_client::ConnectorServiceClient};
use support::{ServerProcess, create_request};
use tokio_stream::StreamExt;
use tonic::Code;
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};

const WORKERS: usize = 8;
const GRACE: Duration = Duration::from_secs(10);
/// Maximum time from SIGTERM to exit: in-flight creates take milliseconds, and the open
/// Watch stream must not hold the process for the whole grace period.
const PROMPT_EXIT: Duration = Duration::from_secs(5);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_write_load() {
    let data_dir = tempfile::tempdir().unwrap();
    let mut server = ServerProcess::start(data_dir.path(), &["--shutdown-grace", "10s"]);

    let mut health = HealthClient::new(server.channel().await);
    let mut watch = health.watch(HealthCheckRequest { service: String::new() }).await.unwrap().into_inner();
    let first = watch.next().await.unwrap().unwrap();
    assert_eq!(first.status, ServingStatus::Serving as i32);

    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for worker in 0..WORKERS {
        let client = server.client().await;
        workers.push(tokio::spawn(write_until_failure(client, worker, Arc::clone(&stop))));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    let signalled = Instant::now();
    server.signal(libc::SIGTERM);
    let not_serving = tokio::time::timeout(Duration::from_secs(5), watch.next()).await.expect("health changes after SIGTERM");
    let not_serving = not_serving.expect("watch stream open").expect("watch message");
    assert_eq!(not_serving.status, ServingStatus::NotServing as i32);

    let ended = tokio::time::timeout(Duration::from_secs(5), watch.next()).await.expect("watch stream ends after NOT_SERVING");
    match ended {
        None => {}
        Some(Err(status)) => assert_eq!(status.code(), Code::Unavailable, "{status:?}"),
        Some(Ok(message)) => panic!("unexpected health message after NOT_SERVING: {message:?}"),
    }

    let status = server.wait_exit(GRACE + Duration::from_secs(10)).expect("server exits within the grace period");
    let exit_time = signalled.elapsed();
    assert!(status.success(), "exit status {status:?}; log:\n{}", server.log_text());
    assert!(exit_time < PROMPT_EXIT, "exit took {exit_time:?} with a Watch stream open; grace is {GRACE:?}");
    eprintln!("exited {exit_time:?} after SIGTERM");
    stop.store(true, Ordering::SeqCst);

    let mut acknowledged = Vec::new();
    for worker in workers {
        let (written, failure) = worker.await.unwrap();
        if let Some(status) = failure {
            assert!(
                matches!(status.code(), Code::Unavailable | Code::Cancelled) || failed_in_transport(&status),
                "a write failed during shutdown with {status:?}; expected UNAVAILABLE, CANCELLED or a transport failure"
            );
        }
        acknowledged.extend(written);
    }
    assert!(!acknowledged.is_empty(), "no write was acknowledged before SIGTERM");

    let server = ServerProcess::start(data_dir.path(), &[]);
    let mut client = server.client().await;
    for connector in &acknowledged {
        let request = pb::ConnectorServiceGetRequest { app_id: "app".to_owned(), id: connector.id.clone() };
        let stored = client.get(request).await.expect("acknowledged connector after restart").into_inner();
        let stored = stored.connector_view.unwrap().connector.unwrap();
        assert_eq!(stored.display_name, connector.display_name);
        assert_eq!(stored.etag, connector.etag);
    }
    eprintln!("{} acknowledged writes present after restart", acknowledged.len());
}

/// Returns whether a call failed in the HTTP/2 transport before the server took it, because
/// the connection broke under it or the server's GOAWAY rejected its stream. The client maps
/// these to UNKNOWN or INTERNAL, not UNAVAILABLE. The write was never acknowledged, so it
/// is a clean failure.
fn failed_in_transport(status: &tonic::Status) -> bool {
    const LOST_CONNECTION_MESSAGES: [&str; 4] = ["broken pipe", "connection reset", "connection closed", "connection aborted"];
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(status);
    while let Some(error) = source {
        if error.is::<std::io::Error>() {
            return true;
        }
        if let Some(http2) = error.downcast_ref::<h2::Error>() {
            // A stream above the GOAWAY's last stream id was never processed.
            let rejected_by_goaway = http2.is_go_away() && http2.is_remote() && http2.reason() == Some(h2::Reason::NO_ERROR);
            if http2.is_io() || rejected_by_goaway {
                return true;
            }
        }
        source = error.source();
    }
    let message = status.message().to_lowercase();
    status.code() == Code::Unknown && LOST_CONNECTION_MESSAGES.iter().any(|phrase| message.contains(phrase))
}

/// Creates connectors until a call fails or `stop` is set; returns the acknowledged ones
/// and the failure.
async fn write_until_failure(
    mut client: ConnectorServiceClient<tonic::transport::Channel>,
    worker: usize,
    stop: Arc<AtomicBool>,
) -> (Vec<pb::Connector>, Option<tonic::Status>) {
    let mut written = Vec::new();
    for index in 0..100_000 {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let mut request = tonic::Request::new(create_request("app", &format!("w{worker}-{index}")));
        request.set_timeout(Duration::from_secs(20));
        match client.create(request).await {
            Ok(response) => written.push(response.into_inner().connector_view.unwrap().connector.unwrap()),
            Err(status) => return (written, Some(status)),
        }
    }
    (written, None)
}
