//! `connectord migrate`: data written through a server on sled reads the same through a
//! server on PostgreSQL after the copy, and a second run copies nothing. Passes without
//! running, after a notice, when `CONNECTORD_TEST_POSTGRES_URL` is unset.

mod common;

use std::{path::Path, process::Output};

use common::{
    TestServer, connector_of, create, create_request, delete_request, get,
    lifecycle::{Worker, force_sync, get_credential, list_all_syncs, rotate},
    list_all_ids,
    postgres::TestDatabase,
};
use connectord::pb::sync::State;

/// Runs `connectord migrate` to completion and returns its output.
async fn run_migrate(from: &Path, to: &str) -> Output {
    let run = tokio::process::Command::new(env!("CARGO_BIN_EXE_connectord"))
        .arg("migrate")
        .arg("--from")
        .arg(from)
        .args(["--to", to])
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(common::WAIT_LIMIT, run).await.expect("migrate finishes within the wait limit").expect("run the connectord binary")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_copies_sled_data() {
    let Some(database) = TestDatabase::create().await else { return };

    // Records of every kind on sled: live and deleted connectors, a request id, a
    // credential, a running sync with a lease and a pending one.
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let kept = create(&mut client, "app-1", "kept").await;
    let mut request = create_request("app-1", "replayed");
    request.request_id = "migrated-request".to_owned();
    let replayed = connector_of(client.create(request.clone()).await.expect("create with a request id").into_inner().connector_view);
    let deleted = create(&mut client, "app-2", "deleted").await;
    client.delete(delete_request("app-2", &deleted.id)).await.expect("delete");
    let credential = rotate(&mut client, &kept).await;
    let mut worker = Worker::new(&server, &kept, credential.authorization()).await;
    force_sync(&mut client, &kept).await;
    let running = worker.claim_one().await;
    force_sync(&mut client, &kept).await;

    let mut before = Vec::new();
    for app_id in ["app-1", "app-2"] {
        for id in list_all_ids(&mut client, app_id, true).await {
            before.push(get(&mut client, app_id, &id).await);
        }
    }
    let syncs_before = list_all_syncs(&mut client, &kept, State::Unspecified).await;
    let credential_before = get_credential(&mut client, &credential.credential).await;
    drop(client);
    let (data_dir, _) = server.stop().await;

    let url = database.url.expose().to_owned();
    let first = run_migrate(data_dir.path(), &url).await;
    let first_text = String::from_utf8_lossy(&first.stdout).into_owned();
    assert!(first.status.success(), "first run failed: {}", String::from_utf8_lossy(&first.stderr));
    assert!(first_text.contains("copied 3 connectors, 2 syncs, 1 credentials and 1 request ids"), "{first_text}");
    assert!(first_text.contains("7 records were new"), "{first_text}");

    let second = run_migrate(data_dir.path(), &url).await;
    let second_text = String::from_utf8_lossy(&second.stdout).into_owned();
    assert!(second.status.success(), "second run failed: {}", String::from_utf8_lossy(&second.stderr));
    assert!(second_text.contains("0 records were new"), "{second_text}");

    let server = TestServer::start_with(|options| options.postgres = Some(database.store_options())).await;
    let mut client = server.client().await;
    for connector in &before {
        assert_eq!(&get(&mut client, &connector.app_id, &connector.id).await, connector, "connector {} changed", connector.id);
    }
    assert_eq!(list_all_ids(&mut client, "app-2", false).await, Vec::<String>::new(), "the deleted connector is live");
    assert_eq!(list_all_syncs(&mut client, &kept, State::Unspecified).await, syncs_before);
    assert_eq!(get_credential(&mut client, &credential.credential).await, credential_before);

    let replay = connector_of(client.create(request).await.expect("replay the request id").into_inner().connector_view);
    assert_eq!(replay.id, replayed.id, "the request id created a second connector");
    let mut worker = Worker::new(&server, &kept, credential.authorization()).await;
    worker.heartbeat(&running.id).await.expect("the migrated secret authenticates the worker");

    server.stop().await;
    drop(database);
}

#[tokio::test]
async fn migrate_rejects_a_missing_directory() {
    let Some(database) = TestDatabase::create().await else { return };
    let empty = tempfile::TempDir::new().expect("create a directory");

    let output = run_migrate(&empty.path().join("absent"), database.url.expose()).await;

    assert!(!output.status.success(), "migrate from a missing directory succeeded");
    let message = String::from_utf8_lossy(&output.stderr);
    assert!(message.contains("holds no sled database"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_rejects_a_target_with_other_data() {
    let Some(database) = TestDatabase::create().await else { return };
    let target = TestServer::start_with(|options| options.postgres = Some(database.store_options())).await;
    create(&mut target.client().await, "app-1", "already in PostgreSQL").await;
    target.stop().await;
    let source = TestServer::start().await;
    create(&mut source.client().await, "app-1", "only in sled").await;
    let (data_dir, _) = source.stop().await;

    let output = run_migrate(data_dir.path(), database.url.expose()).await;

    assert!(!output.status.success(), "migrate into a database with other data succeeded");
    let message = String::from_utf8_lossy(&output.stderr);
    assert!(message.contains("migrate only into an empty database"), "{message}");
}
