//! The audit log: one event per mutating call on the `connectord::audit` target, with the
//! caller, RPC, ids, changed field paths and result code, and never a value.
//!
//! The subscriber is installed with `set_default`, which covers the current thread; the
//! current-thread runtime of `#[tokio::test]` runs the server's tasks there too.

mod common;

use std::{
    io,
    sync::{Arc, Mutex},
};

use common::{TestServer, create_request, update_request};
use connectord::auth::{Role, TokenFile};
use serde_json::Value;
use tonic::Request;

#[derive(Clone, Default)]
struct SharedBuffer(Arc<Mutex<Vec<u8>>>);

impl io::Write for SharedBuffer {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn audit_events(buffer: &SharedBuffer) -> Vec<Value> {
    let text = String::from_utf8_lossy(&buffer.0.lock().unwrap()).into_owned();
    text.lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|event| event["target"] == "connectord::audit")
        .collect()
}

fn with_token<T>(message: T, token: &str) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
    request
}

#[tokio::test]
async fn mutating_calls_log_one_audit_event_each() {
    let buffer = SharedBuffer::default();
    let writer = buffer.clone();
    let subscriber = tracing_subscriber::fmt().json().flatten_event(true).with_writer(move || writer.clone()).finish();
    let _default = tracing::subscriber::set_default(subscriber);

    let directory = tempfile::tempdir().unwrap();
    let tokens_path = directory.path().join("tokens.jsonl");
    let token = TokenFile::new(&tokens_path).create("deployer", Role::Editor).unwrap();
    let server = TestServer::start_with(|options| options.tokens_file = Some(tokens_path.clone())).await;
    let mut client = server.client().await;

    let mut create = create_request("app-1", "Audited");
    create.config = Some(common::struct_config(&[("password", "audit-secret-91c2")]));
    let created = client.create(with_token(create, &token)).await.unwrap().into_inner().connector_view.unwrap().connector.unwrap();
    let mut update = update_request(&created, &["display_name"]);
    update.connector.as_mut().unwrap().display_name = "Renamed".to_owned();
    client.update(with_token(update, &token)).await.unwrap();
    let missing = common::get_request("app-1", "missing-1");
    client.get(with_token(missing, &token)).await.unwrap_err();
    let delete = common::delete_request("app-1", "missing-1");
    client.delete(with_token(delete, &token)).await.unwrap_err();
    drop(client);
    server.stop().await;

    let events = audit_events(&buffer);
    let rpcs: Vec<&str> = events.iter().map(|event| event["rpc"].as_str().unwrap()).collect();
    assert_eq!(rpcs, ["Create", "Update", "Delete"], "reads are not audited; every write is, once");

    let update = &events[1];
    assert_eq!(update["caller"], "deployer");
    assert_eq!(update["role"], "editor");
    assert_eq!(update["app_id"], "app-1");
    assert_eq!(update["connector_id"], created.id.as_str());
    assert_eq!(update["changed"], "display_name");
    assert_eq!(update["code"], "Ok");
    assert_eq!(events[0]["connector_id"], created.id.as_str());
    assert_eq!(events[2]["code"], "NotFound");
    assert_eq!(events[2]["changed"], "", "a failed delete changed nothing");
    assert_eq!(events[2]["attempted"], "deleted_at");
    assert_eq!(update["attempted"], "");

    let text = String::from_utf8_lossy(&buffer.0.lock().unwrap()).into_owned();
    assert!(!text.contains("audit-secret-91c2"), "a config value reached the log");
    assert!(!text.contains(&token), "the API token reached the log");
}
