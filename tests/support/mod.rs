//! Helpers for tests that run the real `connectord` binary: start it on `127.0.0.1:0`,
//! read the address it logs, connect clients, and stop it with a signal.

#![allow(dead_code)]

use std::{
    io::{BufRead, BufReader},
    net::SocketAddr,
    path::Path,
    process::{Child, Command, ExitStatus, Stdio},
    sync::{Arc, Mutex, mpsc},
    time::{Duration, Instant},
};

use connectord::pb::connector_service_client::ConnectorServiceClient;
use tonic::transport::Channel;

/// Maximum time the server may take to log its address.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A running `connectord` process. Dropping it kills the process.
pub struct ServerProcess {
    child: Child,
    pub address: SocketAddr,
    /// Every stderr line the server wrote so far.
    pub log: Arc<Mutex<Vec<String>>>,
}

impl ServerProcess {
    /// Starts the binary on a free loopback port with `data_dir` and `extra_args`, and waits
    /// until it logs its listening address.
    pub fn start(data_dir: &Path, extra_args: &[&str]) -> Self {
        Self::start_with_env(data_dir, extra_args, &[])
    }

    pub fn start_with_env(data_dir: &Path, extra_args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_connectord"));
        command
            .args(["--listen", "127.0.0.1:0", "--log-format", "json", "--data-dir"])
            .arg(data_dir)
            .args(extra_args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (name, value) in env {
            command.env(name, value);
        }
        let mut child = command.spawn().expect("start connectord");

        let stderr = child.stderr.take().expect("piped stderr");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (address_sender, address_receiver) = mpsc::channel();
        let lines = Arc::clone(&log);
        // The thread drains stderr for the whole run, so the server never blocks on a full pipe.
        std::thread::spawn(move || {
            let mut address_sender = Some(address_sender);
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(address) = parse_local_addr(&line)
                    && let Some(sender) = address_sender.take()
                {
                    let _ = sender.send(address);
                }
                lines.lock().unwrap().push(line);
            }
        });

        let address = match address_receiver.recv_timeout(START_TIMEOUT) {
            Ok(address) => address,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("connectord did not log its address within {START_TIMEOUT:?}; log:\n{}", log.lock().unwrap().join("\n"));
            }
        };
        Self { child, address, log }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    pub async fn client(&self) -> ConnectorServiceClient<Channel> {
        ConnectorServiceClient::new(self.channel().await)
    }

    pub async fn channel(&self) -> Channel {
        Channel::from_shared(self.url()).unwrap().connect_timeout(Duration::from_secs(5)).connect().await.expect("connect to connectord")
    }

    /// Sends `signal` (such as `libc::SIGTERM`) to the process.
    pub fn signal(&self, signal: libc::c_int) {
        let pid = libc::pid_t::try_from(self.child.id()).expect("pid fits pid_t");
        // SAFETY: kill has no memory effects; the pid is our own child, not yet reaped.
        let result = unsafe { libc::kill(pid, signal) };
        assert_eq!(result, 0, "kill({pid}, {signal}) failed: {}", std::io::Error::last_os_error());
    }

    /// Kills the process with SIGKILL and reaps it.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits up to `timeout` for the process to exit and returns its status.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Resident memory of the process in KiB, from /proc.
    pub fn resident_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).expect("read /proc status");
        let line = status.lines().find(|line| line.starts_with("VmRSS:")).expect("VmRSS line");
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Extracts the address from the JSON line that the server logs when listening, whose field
/// reads `"local_addr":"Some(127.0.0.1:PORT)"`.
fn parse_local_addr(line: &str) -> Option<SocketAddr> {
    let start = line.find("\"local_addr\":\"")? + "\"local_addr\":\"".len();
    let rest = &line[start..];
    let value = &rest[..rest.find('"')?];
    let value = value.strip_prefix("Some(").and_then(|value| value.strip_suffix(')')).unwrap_or(value);
    value.parse().ok()
}

/// Builds a create request whose display name identifies the write, with an empty
/// `google.protobuf.Struct` config.
pub fn create_request(app_id: &str, display_name: &str) -> connectord::pb::ConnectorServiceCreateRequest {
    connectord::pb::ConnectorServiceCreateRequest {
        app_id: app_id.to_owned(),
        catalog_id: "catalog".to_owned(),
        display_name: display_name.to_owned(),
        config: Some(prost_types::Any { type_url: "type.googleapis.com/google.protobuf.Struct".to_owned(), value: Vec::new() }),
        ..Default::default()
    }
}
