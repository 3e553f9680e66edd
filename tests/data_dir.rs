//! Start-up with a data directory that cannot be used: the server must exit non-zero with a
//! message that names the directory and the problem, never start on an empty database.

mod support;

use std::{
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use support::ServerProcess;

/// Longest wait for a refused start to exit.
const EXIT_TIMEOUT: Duration = Duration::from_secs(30);

/// Starts connectord on `data_dir`, expects it to exit with an error, and returns its log.
fn refused_start(data_dir: &Path) -> String {
    let mut child = Command::new(env!("CARGO_BIN_EXE_connectord"))
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > EXIT_TIMEOUT {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("connectord started on {} instead of refusing it", data_dir.display());
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut log = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut log).unwrap();
    assert!(!status.success(), "connectord exited with {status}; log:\n{log}");
    assert!(log.contains(&data_dir.display().to_string()), "the error does not name the directory; log:\n{log}");
    log
}

/// Creates a data directory with a few connectors in it and stops its server.
async fn populated_data_dir(path: &Path) {
    let server = ServerProcess::start(path, &[]);
    let mut client = server.client().await;
    for index in 0..3 {
        client.create(support::create_request("app", &format!("kept-{index}"))).await.unwrap();
    }
    server.kill();
}

#[tokio::test]
async fn directory_in_use_is_refused() {
    let directory = tempfile::tempdir().unwrap();
    let _server = ServerProcess::start(directory.path(), &[]);
    let log = refused_start(directory.path());
    assert!(log.contains("another connectord"), "{log}");
}

#[tokio::test]
async fn corrupt_database_file_is_refused() {
    let directory = tempfile::tempdir().unwrap();
    populated_data_dir(directory.path()).await;
    // Random bytes in place of the data file: sled alone would start with an empty database.
    let garbage: Vec<u8> = (0..200_000u32).map(|index| (index.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    std::fs::write(directory.path().join("db"), garbage).unwrap();
    let log = refused_start(directory.path());
    assert!(log.contains("corrupt"), "{log}");
}

#[tokio::test]
async fn corrupt_config_file_is_refused() {
    let directory = tempfile::tempdir().unwrap();
    populated_data_dir(directory.path()).await;
    std::fs::write(directory.path().join("conf"), "not a sled configuration").unwrap();
    let log = refused_start(directory.path());
    assert!(log.contains("corrupt"), "{log}");
}

#[test]
fn file_in_place_of_directory_is_refused() {
    let directory = tempfile::tempdir().unwrap();
    let file = directory.path().join("data");
    std::fs::write(&file, "").unwrap();
    let log = refused_start(&file);
    assert!(log.contains("Not a directory"), "{log}");
}

#[test]
fn unreadable_directory_is_refused() {
    // Root reads any directory whatever its mode, so the check needs another user.
    if unsafe { libc::geteuid() } == 0 {
        eprintln!("NOTE: running as root, where every directory is readable; skipped");
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let directory = tempfile::tempdir().unwrap();
    let data = directory.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o000)).unwrap();
    let log = refused_start(&data);
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).unwrap();
    assert!(log.contains("permission denied"), "{log}");
}
