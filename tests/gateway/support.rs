//! Harness of the gateway tests: a real server on 127.0.0.1:0 with a temporary data
//! directory, an HTTP client, and helpers that check JSON error bodies.

use std::{net::SocketAddr, time::Duration};

use connectord::{
    pb::connector_service_client::ConnectorServiceClient,
    server::{self, ServeOptions, ServerError},
};
use reqwest::{Response, StatusCode};
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};
use tonic::transport::Channel;

/// Upper bound for one HTTP exchange or for the server to stop.
pub const WAIT_LIMIT: Duration = Duration::from_secs(30);

/// Type URL of the config type that every server registers.
pub const STRUCT_TYPE_URL: &str = "type.googleapis.com/google.protobuf.Struct";

pub struct TestServer {
    pub addr: SocketAddr,
    pub http: reqwest::Client,
    _data_dir: TempDir,
    shutdown: oneshot::Sender<()>,
    task: JoinHandle<Result<(), ServerError>>,
}

impl TestServer {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// Starts a server that allows CORS from `origins`.
    pub async fn start_with_origins(origins: &[&str]) -> Self {
        Self::start_with(|options| {
            options.cors_allow_origins = origins.iter().map(|origin| (*origin).to_owned()).collect();
        })
        .await
    }

    /// Starts a server after `configure` has adjusted its options. The listener is bound
    /// before the server task starts, so requests made right away queue instead of failing.
    pub async fn start_with(configure: impl FnOnce(&mut ServeOptions)) -> Self {
        let data_dir = TempDir::new().expect("create a temporary data directory");
        let mut options = ServeOptions::new(data_dir.path());
        options.shutdown_grace = Duration::from_secs(2);
        configure(&mut options);

        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local address of the listener");
        let (shutdown, shutdown_receiver) = oneshot::channel::<()>();
        let task = tokio::spawn(server::run(listener, options, async move {
            let _ = shutdown_receiver.await;
        }));
        let http = reqwest::Client::builder().timeout(WAIT_LIMIT).build().expect("build the HTTP client");
        Self { addr, http, _data_dir: data_dir, shutdown, task }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub async fn grpc_client(&self) -> ConnectorServiceClient<Channel> {
        ConnectorServiceClient::connect(self.url("")).await.expect("connect the gRPC client")
    }

    pub async fn get(&self, path: &str) -> Response {
        self.http.get(self.url(path)).send().await.expect("send GET")
    }

    pub async fn post(&self, path: &str, body: Value) -> Response {
        self.http.post(self.url(path)).json(&body).send().await.expect("send POST")
    }

    /// POSTs `body` as is, with `Content-Type: application/json`.
    pub async fn post_raw(&self, path: &str, body: impl Into<reqwest::Body>) -> Response {
        self.http.post(self.url(path)).header("content-type", "application/json").body(body).send().await.expect("send POST")
    }

    /// Creates a connector with a Struct config through REST and returns the connector.
    pub async fn create_connector(&self, app_id: &str, display_name: &str) -> Value {
        let body = json!({
            "catalogId": "okta",
            "displayName": display_name,
            "userIds": ["owner-1"],
            "config": {"@type": STRUCT_TYPE_URL, "value": {"domain": "acme.okta.com"}},
        });
        let response = self.post(&format!("/api/v1/apps/{app_id}/connectors/create"), body).await;
        let view = expect_ok(response).await;
        view["connectorView"]["connector"].clone()
    }

    /// Stops the server and waits for it to close its store.
    pub async fn stop(self) {
        let _ = self.shutdown.send(());
        let result = tokio::time::timeout(WAIT_LIMIT, self.task).await.expect("server stops in time");
        result.expect("server task does not panic").expect("server stops without an error");
    }
}

/// Asserts HTTP 200 with a JSON content type and returns the body.
pub async fn expect_ok(response: Response) -> Value {
    let status = response.status();
    assert_json_content_type(&response);
    let body: Value = response.json().await.expect("response body is JSON");
    assert_eq!(status, StatusCode::OK, "body: {body}");
    body
}

/// Asserts an error response: the HTTP status, a JSON `google.rpc.Status` body with the gRPC
/// code, a message and a details list. Returns the body.
pub async fn expect_error(response: Response, http_status: u16, grpc_code: tonic::Code) -> Value {
    let status = response.status();
    assert_json_content_type(&response);
    let body: Value = response.json().await.expect("error body is JSON");
    assert_eq!(status.as_u16(), http_status, "body: {body}");
    assert_eq!(body["code"], json!(grpc_code as i32), "body: {body}");
    assert!(body["message"].as_str().is_some_and(|message| !message.is_empty()), "body: {body}");
    assert!(body["details"].is_array(), "body: {body}");
    body
}

/// Returns the first `google.rpc.BadRequest` field violation of an error body.
pub fn first_violation(body: &Value) -> &Value {
    let detail = body["details"]
        .as_array()
        .and_then(|details| details.iter().find(|detail| detail["@type"] == "type.googleapis.com/google.rpc.BadRequest"))
        .unwrap_or_else(|| panic!("no BadRequest detail in {body}"));
    &detail["fieldViolations"][0]
}

fn assert_json_content_type(response: &Response) {
    let content_type = response.headers().get("content-type").map(|value| value.to_str().unwrap_or_default().to_owned());
    assert_eq!(content_type.as_deref(), Some("application/json"), "status {}", response.status());
}
