//! grpc.health.v1: SERVING while the server runs, NOT_SERVING once shutdown starts. The
//! HTTP health check at /healthz reports the same status without a token.

mod common;

use common::{TestServer, WAIT_LIMIT};
use tonic::Code;
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};

const CONNECTOR_SERVICE: &str = "connectord.v1.ConnectorService";

fn check_request(service: &str) -> HealthCheckRequest {
    HealthCheckRequest { service: service.to_owned() }
}

#[tokio::test]
async fn health_reports_serving_after_start() {
    let server = TestServer::start().await;
    let mut health = HealthClient::new(server.channel().await);

    for service in ["", CONNECTOR_SERVICE] {
        let response = health.check(check_request(service)).await.expect("health check").into_inner();
        assert_eq!(response.status(), ServingStatus::Serving, "service {service:?}");
    }
}

#[tokio::test]
async fn healthz_serves_without_token() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let tokens_path = directory.path().join("tokens.jsonl");
    connectord::auth::TokenFile::new(&tokens_path).create("admin-1", connectord::auth::Role::Admin).expect("create token");
    let server = TestServer::start_with(|options| options.tokens_file = Some(tokens_path.clone())).await;

    let response = reqwest::get(format!("http://{}/healthz", server.addr)).await.expect("GET /healthz");

    assert_eq!(response.status().as_u16(), 200);
    let body: serde_json::Value = response.json().await.expect("JSON body");
    assert_eq!(body, serde_json::json!({"status": "SERVING"}));

    let head = reqwest::Client::new().head(format!("http://{}/healthz", server.addr)).send().await.expect("HEAD /healthz");
    assert_eq!(head.status().as_u16(), 200);
}

#[tokio::test]
async fn health_check_of_unknown_service_is_not_found() {
    let server = TestServer::start().await;
    let mut health = HealthClient::new(server.channel().await);

    let status = health.check(check_request("acme.NoSuchService")).await.expect_err("unknown service");

    assert_eq!(status.code(), Code::NotFound, "{status:?}");
}

#[tokio::test]
async fn health_watch_reports_not_serving_on_shutdown() {
    let server = TestServer::start().await;
    let mut health = HealthClient::new(server.channel().await);
    let mut watches = Vec::new();
    for service in ["", CONNECTOR_SERVICE] {
        let mut updates = health.watch(check_request(service)).await.expect("watch").into_inner();
        let first = updates.message().await.expect("first update").expect("stream is open");
        assert_eq!(first.status(), ServingStatus::Serving, "service {service:?}");
        watches.push((service, updates));
    }

    let stopping = tokio::spawn(server.stop());

    for (service, mut updates) in watches {
        let update = tokio::time::timeout(WAIT_LIMIT, updates.message())
            .await
            .expect("an update within the wait limit")
            .expect("update")
            .expect("stream is open");
        assert_eq!(update.status(), ServingStatus::NotServing, "service {service:?}");
    }
    stopping.await.expect("stop task");
}
