//! Flags of the real binary read from the environment: switches take the usual boolean words.

mod support;

use std::time::Duration;

use support::ServerProcess;

#[tokio::test]
async fn environment_switches_take_one_and_yes() {
    for value in ["1", "yes", "on", "true"] {
        let data = tempfile::tempdir().unwrap();
        let server = ServerProcess::start_with_env(data.path(), &[], &[("CONNECTORD_REFLECTION_REQUIRES_AUTH", value)]);

        let mut client = server.client().await;
        let listed = client.list(connectord::pb::ConnectorServiceListRequest { app_id: "app-1".to_owned(), ..Default::default() }).await;
        assert!(listed.is_ok(), "{value}: {listed:?}");
        server.kill();
    }

    let data = tempfile::tempdir().unwrap();
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_connectord"));
    command.args(["--listen", "127.0.0.1:0", "--data-dir"]).arg(data.path()).env("CONNECTORD_INSECURE_NO_AUTH", "maybe");
    let output = tokio::time::timeout(Duration::from_secs(30), tokio::task::spawn_blocking(move || command.output().unwrap()))
        .await
        .unwrap()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("maybe"), "{stderr}");
}
