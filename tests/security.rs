//! Authentication and authorization: every RPC and REST route under each kind of caller,
//! token reload on SIGHUP, the loopback-only default, and secret config values masked in
//! gRPC and REST responses.

mod common;

use std::{collections::BTreeSet, path::Path};

use common::{ChildServer, TestServer, struct_config};
use connectord::{
    auth::{Role, TokenFile},
    pb::{self, connector_service_client::ConnectorServiceClient},
};
use http::uri::PathAndQuery;
use prost_reflect::DescriptorPool;
use serde_json::{Value, json};
use tonic::{Code, Request, transport::Channel};

/// RPCs that a viewer token may call.
const VIEWER_RPCS: &[&str] = &["Get", "List", "GetSync", "ListSyncs", "GetCredentials", "ListCredentials"];
/// RPCs that only an admin token may call.
const ADMIN_ONLY_RPCS: &[&str] = &["RotateCredential", "RevokeCredential"];
const WORKER_SERVICE: &str = "connectord.v1.ConnectorSyncService";

struct Tokens {
    admin: String,
    editor: String,
    viewer: String,
}

fn create_tokens(path: &Path) -> Tokens {
    let file = TokenFile::new(path);
    Tokens {
        admin: file.create("admin-1", Role::Admin).expect("create admin token"),
        editor: file.create("editor-1", Role::Editor).expect("create editor token"),
        viewer: file.create("viewer-1", Role::Viewer).expect("create viewer token"),
    }
}

async fn start_with_tokens() -> (TestServer, Tokens, tempfile::TempDir) {
    let directory = tempfile::tempdir().expect("temporary directory");
    let path = directory.path().join("tokens.jsonl");
    let tokens = create_tokens(&path);
    let server = TestServer::start_with(|options| options.tokens_file = Some(path.clone())).await;
    (server, tokens, directory)
}

/// Every method of our services, as gRPC paths.
fn all_rpc_paths() -> Vec<(String, String)> {
    let pool = DescriptorPool::decode(pb::FILE_DESCRIPTOR_SET).expect("descriptor set decodes");
    pool.services()
        .filter(|service| service.package_name() == "connectord.v1")
        .flat_map(|service| service.methods().map(|method| (service.full_name().to_owned(), method.name().to_owned())).collect::<Vec<_>>())
        .collect()
}

/// Calls any unary method with an empty request: an empty message decodes as every
/// request type, and whatever the handler returns, only the status code matters here.
async fn call_code(channel: &Channel, path: &str, authorization: Option<&str>) -> Code {
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready().await.expect("channel ready");
    let mut request = Request::new(());
    if let Some(value) = authorization {
        request.metadata_mut().insert("authorization", value.parse().expect("ASCII header"));
    }
    let codec = tonic_prost::ProstCodec::<(), ()>::default();
    let path = PathAndQuery::try_from(path.to_owned()).expect("valid path");
    match grpc.unary(request, path, codec).await {
        Ok(_) => Code::Ok,
        Err(status) => status.code(),
    }
}

fn is_auth_error(code: Code) -> bool {
    matches!(code, Code::Unauthenticated | Code::PermissionDenied)
}

#[tokio::test]
async fn every_rpc_checks_tokens_and_roles() {
    let (server, tokens, _directory) = start_with_tokens().await;
    let channel = server.channel().await;
    let rpcs = all_rpc_paths();
    assert!(rpcs.len() >= 23, "expected every RPC of both services, found {}", rpcs.len());

    for (service, method) in &rpcs {
        let path = format!("/{service}/{method}");
        let no_token = call_code(&channel, &path, None).await;
        assert_eq!(no_token, Code::Unauthenticated, "{path} without a token");
        let wrong = call_code(&channel, &path, Some("Bearer cdt_not-a-token")).await;
        assert_eq!(wrong, Code::Unauthenticated, "{path} with an unknown token");

        for (role, token) in [("admin", &tokens.admin), ("editor", &tokens.editor), ("viewer", &tokens.viewer)] {
            let code = call_code(&channel, &path, Some(&format!("Bearer {token}"))).await;
            let allowed = if service == WORKER_SERVICE {
                // Only connector credentials act on the worker service.
                assert_eq!(code, Code::Unauthenticated, "{path} as {role}");
                continue;
            } else {
                match role {
                    "admin" => true,
                    "editor" => !ADMIN_ONLY_RPCS.contains(&method.as_str()),
                    _ => VIEWER_RPCS.contains(&method.as_str()),
                }
            };
            if allowed {
                assert!(!is_auth_error(code), "{path} as {role} was rejected with {code:?}");
            } else {
                assert_eq!(code, Code::PermissionDenied, "{path} as {role}");
            }
        }
    }
    server.stop().await;
}

#[tokio::test]
async fn health_is_open_and_reflection_follows_the_flag() {
    let (server, _tokens, _directory) = start_with_tokens().await;
    let channel = server.channel().await;
    let health = call_code(&channel, "/grpc.health.v1.Health/Check", None).await;
    assert_eq!(health, Code::Ok);
    server.stop().await;

    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("tokens.jsonl");
    let tokens_for_flag = create_tokens(&path);
    let server = TestServer::start_with(|options| {
        options.tokens_file = Some(path.clone());
        options.reflection_requires_auth = true;
    })
    .await;
    let mut reflection = tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient::new(server.channel().await);
    let request = tonic_reflection::pb::v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(tonic_reflection::pb::v1::server_reflection_request::MessageRequest::ListServices(String::new())),
    };
    let denied = reflection.server_reflection_info(tokio_stream::iter([request.clone()])).await;
    assert_eq!(denied.err().map(|status| status.code()), Some(Code::Unauthenticated));
    let mut authorized = Request::new(tokio_stream::iter([request]));
    authorized.metadata_mut().insert("authorization", format!("Bearer {}", tokens_for_flag.viewer).parse().unwrap());
    assert!(reflection.server_reflection_info(authorized).await.is_ok());
    server.stop().await;
}

/// Returns one REST route per binding, with the role rule it falls under.
fn rest_routes() -> Vec<(&'static str, &'static str, &'static str)> {
    vec![
        ("GET", "/api/v1/apps/a1/connectors/c1", "viewer"),
        ("GET", "/api/v1/apps/a1/connectors", "viewer"),
        ("POST", "/api/v1/apps/a1/connectors/create", "editor"),
        ("POST", "/api/v1/apps/a1/connectors", "editor"),
        ("POST", "/api/v1/apps/a1/connectors/c1", "editor"),
        ("POST", "/api/v1/apps/a1/connectors/c1/delegated", "editor"),
        ("DELETE", "/api/v1/apps/a1/connectors/c1", "editor"),
        ("GET", "/api/v1/apps/a1/connectors/c1/credentials/k1", "viewer"),
        ("GET", "/api/v1/apps/a1/connectors/c1/credentials", "viewer"),
        ("POST", "/api/v1/apps/connectors/credentials", "admin"),
        ("POST", "/api/v1/apps/a1/connectors/c1/credentials", "admin"),
        ("POST", "/api/v1/apps/a1/connectors/c1/credentials/k1", "admin"),
        ("POST", "/api/v1/apps/a1/connectors/c1/force_sync", "editor"),
        ("POST", "/api/v1/apps/a1/connectors/c1/pause", "editor"),
        ("POST", "/api/v1/apps/a1/connectors/c1/resume", "editor"),
        ("POST", "/api/v1/apps/a1/connectors/c1/schedule", "editor"),
        ("POST", "/api/v1/apps/a1/connectors/c1/confirm_sync_valid/s1", "editor"),
        ("GET", "/api/v1/apps/a1/connectors/c1/syncs/s1/download_url", "editor"),
        ("GET", "/api/v1/apps/a1/connectors/c1/syncs/s1", "viewer"),
        ("GET", "/api/v1/apps/a1/connectors/c1/syncs", "viewer"),
        ("POST", "/api/v1/apps/a1/connectors/c1/syncs/s1/cancel", "editor"),
        ("POST", "/api/v1/apps/a1/connectors/c1/syncs/claim", "worker"),
        ("POST", "/api/v1/apps/a1/connectors/c1/syncs/s1/heartbeat", "worker"),
        ("POST", "/api/v1/apps/a1/connectors/c1/syncs/s1/complete", "worker"),
    ]
}

async fn rest_status(http: &reqwest::Client, method: &str, url: &str, token: Option<&str>) -> u16 {
    let mut request = match method {
        "GET" => http.get(url),
        "DELETE" => http.delete(url),
        _ => http.post(url).json(&json!({})),
    };
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.expect("send REST request").status().as_u16()
}

#[tokio::test]
async fn rest_checks_the_token_before_the_body() {
    let (server, tokens, _directory) = start_with_tokens().await;
    let http = reqwest::Client::new();
    let url = format!("http://{}/api/v1/apps/a1/connectors/create", server.addr);
    let oversized = vec![b' '; 5 * 1024 * 1024];
    let bodies: [(&str, Vec<u8>); 3] =
        [("malformed", b"{\"catalogId\":".to_vec()), ("unknown field", br#"{"bogus": 1}"#.to_vec()), ("oversized", oversized)];

    for (kind, body) in bodies {
        let response = http.post(&url).header("content-type", "application/json").body(body.clone()).send().await.expect("send");
        assert_eq!(response.status().as_u16(), 401, "{kind} body without a token");
        let error: Value = response.json().await.expect("JSON error body");
        assert!(error["message"].as_str().unwrap().contains("missing API token"), "{kind}: {error}");

        let viewer = http.post(&url).bearer_auth(&tokens.viewer).body(body).send().await.expect("send");
        assert_eq!(viewer.status().as_u16(), 403, "{kind} body with a viewer token");
    }
    server.stop().await;
}

#[tokio::test]
async fn every_rest_route_checks_tokens_and_roles() {
    let (server, tokens, _directory) = start_with_tokens().await;
    let http = reqwest::Client::new();

    for (method, path, needs) in rest_routes() {
        let url = format!("http://{}{path}", server.addr);
        assert_eq!(rest_status(&http, method, &url, None).await, 401, "{method} {path} without a token");
        assert_eq!(rest_status(&http, method, &url, Some("cdt_wrong")).await, 401, "{method} {path} with a wrong token");
        for (role, token) in [("admin", &tokens.admin), ("editor", &tokens.editor), ("viewer", &tokens.viewer)] {
            let status = rest_status(&http, method, &url, Some(token)).await;
            let allowed = match (needs, role) {
                ("worker", _) => {
                    assert_eq!(status, 401, "{method} {path} as {role}: only connector credentials work here");
                    continue;
                }
                (_, "admin") => true,
                ("admin", _) => false,
                ("editor", "editor") | ("viewer", _) => true,
                _ => false,
            };
            if allowed {
                assert_ne!(status, 401, "{method} {path} as {role}");
                assert_ne!(status, 403, "{method} {path} as {role}");
            } else {
                assert_eq!(status, 403, "{method} {path} as {role}");
            }
        }
    }
    server.stop().await;
}

#[tokio::test]
async fn sighup_reload_survives_bad_file() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("tokens.jsonl");
    let file = TokenFile::new(&path);
    let first = file.create("first", Role::Viewer).unwrap();
    let data = tempfile::tempdir().unwrap();
    let server = ChildServer::spawn(data.path(), &["--tokens-file", path.to_str().unwrap()]).await;
    let channel = server.channel().await;
    let list = "/connectord.v1.ConnectorService/List";
    let bearer = |token: &str| format!("Bearer {token}");
    assert!(!is_auth_error(call_code(&channel, list, Some(&bearer(&first))).await));

    file.revoke("first").unwrap();
    let second = file.create("second", Role::Viewer).unwrap();
    server.hangup();
    let reloaded = wait_until(|| async { call_code(&channel, list, Some(&bearer(&first))).await == Code::Unauthenticated }).await;
    assert!(reloaded, "the revoked token still works after SIGHUP");
    assert!(!is_auth_error(call_code(&channel, list, Some(&bearer(&second))).await));

    std::fs::write(&path, "this is not json\n").unwrap();
    server.hangup();
    let logged = wait_until(|| async { server.log_text().contains("reloading API tokens failed") }).await;
    assert!(logged, "a bad tokens file is not reported: {}", server.log_text());
    assert!(!is_auth_error(call_code(&channel, list, Some(&bearer(&second))).await), "the old tokens must stay");

    // A missing file is an error too, not an empty set of tokens that locks everyone out.
    std::fs::remove_file(&path).unwrap();
    server.hangup();
    let logged = wait_until(|| async { server.log_text().contains("does not exist") }).await;
    assert!(logged, "a missing tokens file is not reported: {}", server.log_text());
    assert!(!is_auth_error(call_code(&channel, list, Some(&bearer(&second))).await), "the old tokens must stay");
    server.terminate();
}

#[test]
fn missing_tokens_file_stops_the_start() {
    let data = tempfile::tempdir().unwrap();
    let missing = data.path().join("no-such-tokens.jsonl");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_connectord"))
        .args(["--listen", "127.0.0.1:0", "--tokens-file"])
        .arg(&missing)
        .arg("--data-dir")
        .arg(data.path().join("data"))
        .output()
        .expect("run connectord");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "connectord started with a tokens file that does not exist");
    assert!(stderr.contains("does not exist"), "{stderr}");
    assert!(stderr.contains("token create"), "the error does not say how to create the file: {stderr}");
}

/// Polls `condition` up to 10 s.
async fn wait_until<F, Fut>(mut condition: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..100 {
        if condition().await {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    false
}

#[tokio::test]
async fn loopback_default_warns_and_other_addresses_are_refused() {
    let data = tempfile::tempdir().unwrap();
    let server = ChildServer::spawn(data.path(), &[]).await;
    assert!(server.log_text().contains("WITHOUT authentication"), "{}", server.log_text());
    server.terminate();

    // 192.0.2.1 is reserved for documentation (RFC 5737): the refusal must come before any
    // bind, and if it did not, binding there would fail instead of opening a port.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_connectord"))
        .args(["--listen", "192.0.2.1:0", "--data-dir"])
        .arg(data.path().join("refused"))
        .output()
        .expect("run connectord");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "connectord started without authentication on a public address");
    assert!(stderr.contains("--tokens-file"), "the error does not name the flag: {stderr}");
    assert!(stderr.contains("refusing"), "{stderr}");
}

fn struct_string(value: &prost_types::Struct, key: &str) -> String {
    match value.fields.get(key).and_then(|value| value.kind.as_ref()) {
        Some(prost_types::value::Kind::StringValue(text)) => text.clone(),
        other => panic!("{key} is not a string: {other:?}"),
    }
}

fn masked_keys(config: &Value) -> BTreeSet<String> {
    config["value"]
        .as_object()
        .map(|object| object.iter().filter(|(_, value)| *value == "********").map(|(key, _)| key.clone()).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn secret_configs_masked_in_grpc_rest() {
    let server = TestServer::start().await;
    let mut client: ConnectorServiceClient<Channel> = server.client().await;
    let mut request = common::create_request("app-1", "Vaulted");
    request.config = Some(struct_config(&[("domain", "acme.okta.com"), ("api_key", "sk-live-123"), ("password", "hunter2")]));

    let created = client.create(request).await.expect("create").into_inner().connector_view.unwrap().connector.unwrap();

    let secrets: Vec<(&str, bool)> = created.config_secrets.iter().map(|secret| (secret.path.as_str(), secret.set)).collect();
    assert_eq!(secrets, [("api_key", true), ("password", true)]);
    let config = created.config.as_ref().unwrap();
    let value = <prost_types::Struct as prost::Message>::decode(config.value.as_slice()).unwrap();
    assert_eq!(struct_string(&value, "api_key"), "********");
    assert_eq!(struct_string(&value, "domain"), "acme.okta.com");

    let http = reqwest::Client::new();
    let url = format!("http://{}/api/v1/apps/app-1/connectors/{}", server.addr, created.id);
    let body: Value = http.get(&url).send().await.unwrap().json().await.unwrap();
    let rest_config = &body["connectorView"]["connector"]["config"];
    assert_eq!(masked_keys(rest_config), BTreeSet::from(["api_key".to_owned(), "password".to_owned()]));
    let text = body.to_string();
    assert!(!text.contains("sk-live-123"), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
    assert_eq!(body["connectorView"]["connector"]["configSecrets"][0]["path"], "api_key");
    server.stop().await;
}

#[tokio::test]
async fn mask_round_trip_and_fingerprint() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let mut request = common::create_request("app-1", "Rotating");
    request.config = Some(struct_config(&[("domain", "a.example"), ("token", "first-token")]));
    let created = client.create(request).await.unwrap().into_inner().connector_view.unwrap().connector.unwrap();
    let first_fingerprint = created.config_secrets[0].fingerprint.clone();

    // Send back what Get returned (the mask) with another field changed.
    let mut update = common::update_request(&created, &["config"]);
    update.connector.as_mut().unwrap().config = Some(struct_config(&[("domain", "b.example"), ("token", "********")]));
    let kept = client.update(update).await.unwrap().into_inner().connector_view.unwrap().connector.unwrap();
    assert_eq!(kept.config_secrets[0].fingerprint, first_fingerprint, "the mask must keep the stored secret");

    let mut update = common::update_request(&kept, &["config"]);
    update.connector.as_mut().unwrap().config = Some(struct_config(&[("domain", "b.example"), ("token", "second-token")]));
    let replaced = client.update(update).await.unwrap().into_inner().connector_view.unwrap().connector.unwrap();
    assert_ne!(replaced.config_secrets[0].fingerprint, first_fingerprint, "a new secret must change the fingerprint");

    let mut bad = common::create_request("app-1", "Masked");
    bad.config = Some(struct_config(&[("token", "********")]));
    let status = client.create(bad).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(common::violation_fields(&status), ["config.value"]);
    server.stop().await;
}

#[tokio::test]
async fn dropped_secret_keys_stay_masked() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let mut request = common::create_request("app-1", "Vaulted");
    request.config = Some(struct_config(&[("domain", "acme.okta.com"), ("password", "hunter2")]));
    let created = client.create(request).await.expect("create").into_inner().connector_view.unwrap().connector.unwrap();

    // The operator restarts with a key list that no longer names "password".
    let (data_dir, mut options) = server.stop().await;
    options.secret_struct_keys = vec!["domain".to_owned()];
    let server = TestServer::start_on(data_dir, options).await;
    let mut client = server.client().await;

    let read =
        client.get(common::get_request("app-1", &created.id)).await.expect("get").into_inner().connector_view.unwrap().connector.unwrap();
    let value = <prost_types::Struct as prost::Message>::decode(read.config.as_ref().unwrap().value.as_slice()).unwrap();
    assert_eq!(struct_string(&value, "password"), "********", "a secret written under the old list is shown");
    assert_eq!(struct_string(&value, "domain"), "********");
    server.stop().await;
}

#[tokio::test]
async fn rejected_calls_log_throttled() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("tokens.jsonl");
    create_tokens(&path);
    let data = tempfile::tempdir().unwrap();
    let server = ChildServer::spawn(data.path(), &["--tokens-file", path.to_str().unwrap()]).await;
    let channel = server.channel().await;
    let list = "/connectord.v1.ConnectorService/List";
    for _ in 0..200 {
        assert_eq!(call_code(&channel, list, None).await, Code::Unauthenticated);
    }
    let logged = wait_until(|| async { server.log_text().contains("call rejected by authentication") }).await;
    assert!(logged, "no rejection was logged: {}", server.log_text());

    // All 200 fall within one interval of the throttle, so only the first is logged.
    let log = server.log_text();
    let lines: Vec<&str> = log.lines().filter(|line| line.contains("call rejected by authentication")).collect();
    assert_eq!(lines.len(), 1, "{log}");
    assert!(lines[0].contains(r#""rejected":1"#), "{log}");
    server.terminate();
}
