//! Secrets never reach the server log. The test runs creates and updates with secret
//! configs, rotations, successful and failed authentications, a revocation and a full
//! sync. Afterwards neither the in-process server's tracing output at TRACE level nor the
//! JSON log of the real binary contains a client secret or a secret config value.
//!
//! The in-process test installs its subscriber with `set_default`, which covers only the
//! current thread. That is enough because `#[tokio::test]` runs a current-thread runtime,
//! so the server's tasks run on the test's thread.

mod common;

use std::{
    io,
    sync::{Arc, Mutex},
    time::Duration,
};

use common::{
    ChildServer, Client, TestServer, create,
    lifecycle::{IssuedCredential, Worker, basic_authorization, force_sync, get_credential, poll_until, revoke_request, rotate},
};
use connectord::pb;
use tempfile::TempDir;
use tonic::{Code, transport::Channel};
use tracing::Level;

/// An `io::Write` that appends to a buffer shared with the test.
#[derive(Clone, Default)]
struct SharedBuffer(Arc<Mutex<Vec<u8>>>);

impl SharedBuffer {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("log buffer lock")).into_owned()
    }
}

impl io::Write for SharedBuffer {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0.lock().expect("log buffer lock").extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Secrets issued or presented during [`exercise_credentials`].
struct Exercised {
    issued: Vec<IssuedCredential>,
    /// A well-formed secret that no credential has, presented with a real client id.
    wrong_secret: String,
    /// Secret config values sent in creates and updates.
    config_secrets: Vec<String>,
}

/// Creates and updates a connector whose config contains secrets, including an update that
/// sends the mask back, and returns the secret values used.
async fn exercise_config_secrets(client: &mut Client) -> Vec<String> {
    let first = "cfg-secret-alpha-7f3a9c".to_owned();
    let second = "cfg-secret-beta-2b81de".to_owned();
    let mut request = common::create_request("app-1", "vaulted");
    request.config = Some(common::struct_config(&[("domain", "a.example"), ("api_key", &first), ("password", &first)]));
    let created = client.create(request).await.expect("create with secrets").into_inner().connector_view.unwrap().connector.unwrap();

    for api_key in [second.as_str(), "********"] {
        let mut update = common::update_request(&created, &["config"]);
        update.connector.as_mut().unwrap().config =
            Some(common::struct_config(&[("domain", "b.example"), ("api_key", api_key), ("password", "********")]));
        client.update(update).await.expect("update with secrets");
    }
    vec![first, second]
}

/// Calls every RPC that takes or returns a secret: two rotations, authentications that succeed
/// and fail for each reason, a revocation, a full sync, and the credential reads.
async fn exercise_credentials(client: &mut Client, channel: Channel) -> Exercised {
    let connector = create(client, "app-1", "okta").await;
    let other = create(client, "app-1", "other").await;
    let first = rotate(client, &connector).await;
    let second = rotate(client, &connector).await;
    let wrong_secret = format!("cds_{}", "x".repeat(43));
    let worker = |authorization: String| Worker::with_channel(channel.clone(), &connector, authorization);

    worker(first.authorization()).claim().await.expect("claim with the first credential");
    let wrong = worker(basic_authorization(&first.credential.client_id, &wrong_secret)).claim().await;
    assert_eq!(wrong.expect_err("wrong secret").code(), Code::Unauthenticated);
    let bearer = worker(format!("Bearer {}", first.secret)).claim().await;
    assert_eq!(bearer.expect_err("bearer scheme").code(), Code::Unauthenticated);
    let mut foreign = Worker::with_channel(channel.clone(), &other, second.authorization());
    assert_eq!(foreign.claim().await.expect_err("other connector").code(), Code::PermissionDenied);

    client.revoke_credential(revoke_request(&first.credential)).await.expect("revoke");
    let revoked = worker(first.authorization()).claim().await;
    assert_eq!(revoked.expect_err("revoked credential").code(), Code::Unauthenticated);

    let mut sync_worker = worker(second.authorization());
    force_sync(client, &connector).await;
    let sync = sync_worker.claim_one().await;
    sync_worker.heartbeat(&sync.id).await.expect("heartbeat");
    sync_worker.succeed(&sync.id, "https://artifacts.example.com/sync.c1z").await.expect("complete");

    for issued in [&first, &second] {
        get_credential(client, &issued.credential).await;
    }
    client
        .list_credentials(pb::ConnectorServiceListCredentialsRequest {
            app_id: "app-1".to_owned(),
            connector_id: connector.id.clone(),
            page_size: 10,
            page_token: String::new(),
        })
        .await
        .expect("list credentials");

    let config_secrets = exercise_config_secrets(client).await;
    Exercised { issued: vec![first, second], wrong_secret, config_secrets }
}

/// Asserts that the log shows the credential events and contains none of the secrets.
#[track_caller]
fn assert_log_has_no_secrets(log: &str, exercised: &Exercised) {
    for IssuedCredential { credential, secret } in &exercised.issued {
        assert!(log.contains(&credential.client_id), "the log never mentions client id {}; is it captured?", credential.client_id);
        assert!(!log.contains(secret.as_str()), "the log contains the secret of credential {}", credential.id);
        let random_part = secret.strip_prefix("cds_").expect("secret has the cds_ prefix");
        assert!(!log.contains(random_part), "the log contains the secret of credential {} without its prefix", credential.id);
    }
    assert!(log.contains("authentication failed"), "the log lacks the failed authentications");
    assert!(!log.contains(&exercised.wrong_secret), "the log contains a presented wrong secret");
    assert!(log.contains("connectord::audit"), "the log lacks the audit events of the config updates");
    for value in &exercised.config_secrets {
        assert!(!log.contains(value.as_str()), "the log contains the secret config value {value}");
    }
}

#[tokio::test]
async fn in_process_log_has_no_secrets() {
    let buffer = SharedBuffer::default();
    let writer = buffer.clone();
    let subscriber = tracing_subscriber::fmt().with_max_level(Level::TRACE).with_ansi(false).with_writer(move || writer.clone()).finish();
    let _default = tracing::subscriber::set_default(subscriber);

    let server = TestServer::start().await;
    let mut client = server.client().await;
    let exercised = exercise_credentials(&mut client, server.channel().await).await;
    drop(client);
    server.stop().await;

    let log = buffer.text();
    assert!(log.contains("credential created"), "the captured log lacks the rotation events");
    assert_log_has_no_secrets(&log, &exercised);
}

#[tokio::test]
async fn binary_log_has_no_secrets() {
    let data_dir = TempDir::new().expect("create a temporary data directory");
    let mut server = ChildServer::spawn(data_dir.path(), &[]).await;
    let mut client = server.client().await;

    let exercised = exercise_credentials(&mut client, server.channel().await).await;
    drop(client);
    server.terminate();
    let exit = server.wait_for_exit().await;
    assert!(exit.success(), "connectord exited with {exit}; its log:\n{}", server.log_text());

    // The log is read by a background task, so the last lines may arrive after the exit.
    let log = poll_until("the final log line is collected", Duration::from_secs(5), || {
        let log = server.log_text();
        async move { log.contains("stopped").then_some(log) }
    })
    .await;
    assert!(log.contains("credential created"), "the binary's log lacks the rotation events");
    assert_log_has_no_secrets(&log, &exercised);
}
