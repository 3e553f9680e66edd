//! Round-trip latency of small responses, which Nagle's algorithm on the server's sockets
//! would stretch to the client's delayed-ACK timeout (about 40 ms on Linux) per call.

mod common;

use std::time::{Duration, Instant};

use common::{TestServer, create, list_request};

/// Sequential calls in the measurement.
const CALLS: u32 = 100;
/// Limit for all calls together: 20 ms per call, far above the under 1 ms a call took on
/// loopback in a debug build here, and far below the 40 ms per call that delayed ACKs add.
const TIME_LIMIT: Duration = Duration::from_secs(2);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequential_small_responses_are_not_delayed() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    for index in 0..3 {
        create(&mut client, "app-1", &format!("connector {index}")).await;
    }

    let started = Instant::now();
    for _ in 0..CALLS {
        client.list(list_request("app-1", 1, "")).await.expect("list");
    }
    let elapsed = started.elapsed();

    assert!(
        elapsed < TIME_LIMIT,
        "{CALLS} sequential List calls took {elapsed:?}; are the server's sockets missing TCP_NODELAY?"
    );
}
