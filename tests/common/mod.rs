//! Test harness shared by the integration tests: an in-process server on a temporary data
//! directory, the real binary as a child process, and helpers for requests and errors.

// Each test file compiles this module on its own and uses only part of it.
#![allow(dead_code)]
pub mod lifecycle;
pub mod postgres;

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{ExitStatus, Stdio},
    sync::{Arc, Mutex},
    time::Duration,
};

use connectord::{
    pb::{self, connector_service_client::ConnectorServiceClient},
    server::{self, ServeOptions, ServerError},
};
use prost::Message;
use prost_reflect::{DescriptorPool, DynamicMessage, Value};
use tempfile::TempDir;
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    net::TcpListener,
    process::{Child, Command},
    sync::oneshot,
    task::JoinHandle,
};
use tonic::{Code, Status, transport::Channel};
use tonic_types::StatusExt;

pub type Client = ConnectorServiceClient<Channel>;

/// Type URL of the always-registered free-form config type.
pub const STRUCT_TYPE_URL: &str = "type.googleapis.com/google.protobuf.Struct";
/// Full name of the config message in `tests/fixtures/acme/okta_config.proto`.
pub const OKTA_CONFIG_TYPE: &str = "acme.connectors.v1.OktaConfig";

/// Upper bound for any single wait on a server: startup, shutdown, a log line.
pub const WAIT_LIMIT: Duration = Duration::from_secs(60);

/// In-flight calls get this long after shutdown starts, so a stuck call fails a test
/// quickly instead of holding it for the production default.
const TEST_SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// A server started with [`server::run`] inside the test's runtime.
pub struct TestServer {
    pub addr: SocketAddr,
    data_dir: TempDir,
    options: ServeOptions,
    shutdown: oneshot::Sender<()>,
    task: JoinHandle<Result<(), ServerError>>,
}

impl TestServer {
    /// Starts a server with default options on a new temporary data directory.
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// Starts a server on a new temporary data directory after `configure` has adjusted
    /// the options (descriptor sets, config size limit).
    /// Inside [`on_postgres`] the server keeps its data in a new PostgreSQL schema instead.
    pub async fn start_with(configure: impl FnOnce(&mut ServeOptions)) -> Self {
        let data_dir = TempDir::new().expect("create a temporary data directory");
        let mut options = ServeOptions::new(data_dir.path());
        options.shutdown_grace = TEST_SHUTDOWN_GRACE;
        options.postgres = postgres::scoped_store_options().await;
        configure(&mut options);
        Self::spawn(data_dir, options).await
    }

    /// Starts a server on an existing data directory, such as one that [`Self::stop`]
    /// returned, with `options`.
    pub async fn start_on(data_dir: TempDir, options: ServeOptions) -> Self {
        Self::spawn(data_dir, options).await
    }

    /// Starts `count` servers that share one new PostgreSQL schema, as replicas behind a
    /// load balancer would. Must run inside [`on_postgres`].
    pub async fn start_replicas(count: usize, configure: impl FnOnce(&mut ServeOptions)) -> Vec<Self> {
        assert!(postgres::in_postgres_scope(), "start_replicas runs inside on_postgres");
        let first = Self::start_with(configure).await;
        let mut servers = Vec::with_capacity(count);
        for _ in 1..count {
            servers.push(first.start_replica().await);
        }
        servers.insert(0, first);
        servers
    }

    /// Starts another server with this one's options and PostgreSQL schema, on a new data
    /// directory.
    pub async fn start_replica(&self) -> Self {
        assert!(self.options.postgres.is_some(), "only a server on PostgreSQL can have replicas");
        let data_dir = TempDir::new().expect("create a temporary data directory");
        let mut options = self.options.clone();
        options.data_dir = data_dir.path().to_path_buf();
        Self::spawn(data_dir, options).await
    }

    /// Binds before spawning, so the address accepts connections as soon as this returns.
    async fn spawn(data_dir: TempDir, options: ServeOptions) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local address of the listener");
        let (shutdown, shutdown_receiver) = oneshot::channel::<()>();
        let task = tokio::spawn(server::run(listener, options.clone(), async move {
            let _ = shutdown_receiver.await;
        }));
        Self { addr, data_dir, options, shutdown, task }
    }

    pub fn data_dir(&self) -> &Path {
        self.data_dir.path()
    }

    pub async fn channel(&self) -> Channel {
        connect_channel(self.addr).await
    }

    pub async fn client(&self) -> Client {
        ConnectorServiceClient::new(self.channel().await)
    }

    /// Stops the server and waits until `run` has returned, which happens only after the
    /// store has made every acknowledged write durable.
    pub async fn stop(self) -> (TempDir, ServeOptions) {
        let _ = self.shutdown.send(());
        let result = tokio::time::timeout(WAIT_LIMIT, self.task)
            .await
            .expect("server stops within the wait limit")
            .expect("server task does not panic");
        if let Err(error) = result {
            panic!("server stopped with an error: {error}");
        }
        (self.data_dir, self.options)
    }

    /// Stops the server and starts a new one on the same data directory and options.
    pub async fn restart(self) -> Self {
        let (data_dir, options) = self.stop().await;
        Self::spawn(data_dir, options).await
    }
}

/// Connects without TLS, returning the error instead of panicking.
pub async fn connect_channel_result(addr: SocketAddr) -> Result<Channel, tonic::transport::Error> {
    Channel::from_shared(format!("http://{addr}")).expect("valid endpoint URI").connect().await
}

pub async fn connect_channel(addr: SocketAddr) -> Channel {
    Channel::from_shared(format!("http://{addr}"))
        .expect("valid endpoint URI")
        .connect()
        .await
        .unwrap_or_else(|error| panic!("connect to {addr}: {error}"))
}

/// The `connectord` binary running as a child process, for signal tests.
pub struct ChildServer {
    pub addr: SocketAddr,
    pid: i32,
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
}

impl ChildServer {
    /// Starts the binary on `127.0.0.1:0` with JSON logs and waits for the log line that
    /// carries `local_addr`. Later log lines are collected for failure messages.
    pub async fn spawn(data_dir: &Path, extra_args: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_connectord"))
            .args(["--listen", "127.0.0.1:0", "--log-format", "json", "--data-dir"])
            .arg(data_dir)
            .args(extra_args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn the connectord binary");
        let pid = i32::try_from(child.id().expect("a running child has a pid")).expect("pid fits in i32");

        let mut lines = BufReader::new(child.stderr.take().expect("stderr is piped")).lines();
        let mut startup_log = Vec::new();
        let addr = tokio::time::timeout(WAIT_LIMIT, async {
            while let Some(line) = lines.next_line().await.expect("read the child's stderr") {
                let address = listening_address(&line);
                startup_log.push(line);
                if let Some(address) = address {
                    return Some(address);
                }
            }
            None
        })
        .await
        .expect("the binary logs its address within the wait limit");
        let Some(addr) = addr else {
            panic!("the binary exited before logging local_addr; its log:\n{}", startup_log.join("\n"));
        };

        // The child blocks once the pipe is full, so its log must be read to the end.
        let log = Arc::new(Mutex::new(startup_log));
        let collected = Arc::clone(&log);
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                collected.lock().expect("log lock").push(line);
            }
        });

        Self { addr, pid, child, log }
    }

    pub async fn client(&self) -> Client {
        ConnectorServiceClient::new(connect_channel(self.addr).await)
    }

    pub async fn channel(&self) -> Channel {
        connect_channel(self.addr).await
    }

    /// Sends SIGTERM, which starts a graceful shutdown.
    pub fn terminate(&self) {
        self.send_signal(libc::SIGTERM);
    }

    /// Sends SIGHUP, which makes the server reload its tokens file.
    pub fn hangup(&self) {
        self.send_signal(libc::SIGHUP);
    }

    /// Sends SIGKILL, which ends the process without any cleanup.
    pub fn kill(&self) {
        self.send_signal(libc::SIGKILL);
    }

    fn send_signal(&self, signal: libc::c_int) {
        // tokio clears the id once it has reaped the child; after that the pid may be reused.
        assert!(self.child.id().is_some(), "connectord (pid {}) has already been reaped", self.pid);
        // SAFETY: kill(2) has no memory effects in this process, and the assert above makes
        // sure the pid still names our own child.
        let result = unsafe { libc::kill(self.pid, signal) };
        assert_eq!(result, 0, "kill({}, {signal}) failed: {}", self.pid, std::io::Error::last_os_error());
    }

    pub async fn wait_for_exit(&mut self) -> ExitStatus {
        tokio::time::timeout(WAIT_LIMIT, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("connectord did not exit in time; its log:\n{}", self.log_text()))
            .expect("wait for the child")
    }

    pub fn log_text(&self) -> String {
        self.log.lock().expect("log lock").join("\n")
    }
}

/// Parses the address from a JSON log line with a `local_addr` field, written either as
/// `127.0.0.1:PORT` or as the Debug form of an `Option`, `Some(127.0.0.1:PORT)`.
fn listening_address(line: &str) -> Option<SocketAddr> {
    let entry: serde_json::Value = serde_json::from_str(line).ok()?;
    let text = entry.get("local_addr")?.as_str()?;
    let text = text.strip_prefix("Some(").and_then(|rest| rest.strip_suffix(')')).unwrap_or(text);
    text.parse().ok()
}

/// Returns the field names of the `google.rpc.BadRequest` violations in a status.
pub fn violation_fields(status: &Status) -> Vec<String> {
    status
        .get_details_bad_request()
        .map(|bad_request| bad_request.field_violations.into_iter().map(|violation| violation.field).collect())
        .unwrap_or_default()
}

/// Asserts that a call failed with INVALID_ARGUMENT and that `field` is among the fields
/// of its BadRequest details; returns the status for further checks.
#[track_caller]
pub fn expect_invalid<T: std::fmt::Debug>(result: Result<T, Status>, field: &str) -> Status {
    let status = result.expect_err(&format!("expected INVALID_ARGUMENT naming {field}"));
    assert_eq!(status.code(), Code::InvalidArgument, "code of {status:?}");
    let fields = violation_fields(&status);
    assert!(fields.iter().any(|found| found == field), "violations {fields:?} do not name {field}; {status:?}");
    status
}

/// Asserts that a call failed with `code`; returns the status for further checks.
#[track_caller]
pub fn expect_code<T: std::fmt::Debug>(result: Result<T, Status>, code: Code) -> Status {
    let status = result.expect_err(&format!("expected {code:?}"));
    assert_eq!(status.code(), code, "code of {status:?}");
    status
}

/// Returns the description of the violation on `field`, or an empty string without one.
pub fn violation_description(status: &Status, field: &str) -> String {
    status
        .get_details_bad_request()
        .and_then(|bad_request| bad_request.field_violations.into_iter().find(|violation| violation.field == field))
        .map(|violation| violation.description)
        .unwrap_or_default()
}

/// Builds a `google.protobuf.Struct` config with string fields.
pub fn struct_config(fields: &[(&str, &str)]) -> prost_types::Any {
    let value = prost_types::Struct {
        fields: fields
            .iter()
            .map(|(key, text)| {
                let value = prost_types::Value { kind: Some(prost_types::value::Kind::StringValue((*text).to_owned())) };
                ((*key).to_owned(), value)
            })
            .collect(),
    };
    prost_types::Any { type_url: STRUCT_TYPE_URL.to_owned(), value: value.encode_to_vec() }
}

/// Builds a valid Create request for `app_id` with a Struct config.
pub fn create_request(app_id: &str, display_name: &str) -> pb::ConnectorServiceCreateRequest {
    pb::ConnectorServiceCreateRequest {
        app_id: app_id.to_owned(),
        catalog_id: "okta".to_owned(),
        display_name: display_name.to_owned(),
        description: format!("description of {display_name}"),
        user_ids: vec!["owner-1".to_owned()],
        config: Some(struct_config(&[("domain", "example.okta.com")])),
        expand_mask: None,
        request_id: String::new(),
    }
}

/// Builds a valid CreateDelegated request for `app_id`.
pub fn create_delegated_request(app_id: &str, display_name: &str) -> pb::ConnectorServiceCreateDelegatedRequest {
    pb::ConnectorServiceCreateDelegatedRequest {
        app_id: app_id.to_owned(),
        catalog_id: "okta".to_owned(),
        display_name: display_name.to_owned(),
        description: String::new(),
        user_ids: vec!["owner-1".to_owned()],
        expand_mask: None,
        request_id: String::new(),
    }
}

/// Creates a connector and returns it; panics when the call fails.
pub async fn create(client: &mut Client, app_id: &str, display_name: &str) -> pb::Connector {
    let response = client
        .create(create_request(app_id, display_name))
        .await
        .unwrap_or_else(|status| panic!("create {display_name} in {app_id}: {status:?}"));
    connector_of(response.into_inner().connector_view)
}

pub async fn get(client: &mut Client, app_id: &str, id: &str) -> pb::Connector {
    let response = client.get(get_request(app_id, id)).await.unwrap_or_else(|status| panic!("get {id} in {app_id}: {status:?}"));
    connector_of(response.into_inner().connector_view)
}

pub fn get_request(app_id: &str, id: &str) -> pb::ConnectorServiceGetRequest {
    pb::ConnectorServiceGetRequest { app_id: app_id.to_owned(), id: id.to_owned() }
}

pub fn delete_request(app_id: &str, id: &str) -> pb::ConnectorServiceDeleteRequest {
    pb::ConnectorServiceDeleteRequest { app_id: app_id.to_owned(), id: id.to_owned(), etag: String::new() }
}

/// Builds an Update request that addresses `existing` and carries only its ids.
pub fn update_request(existing: &pb::Connector, paths: &[&str]) -> pb::ConnectorServiceUpdateRequest {
    pb::ConnectorServiceUpdateRequest { connector: Some(address_of(existing)), update_mask: Some(field_mask(paths)), expand_mask: None }
}

/// Builds a connector message that carries only the app id and id of `existing`.
pub fn address_of(existing: &pb::Connector) -> pb::Connector {
    pb::Connector { app_id: existing.app_id.clone(), id: existing.id.clone(), ..Default::default() }
}

pub fn field_mask(paths: &[&str]) -> prost_types::FieldMask {
    prost_types::FieldMask { paths: paths.iter().map(|path| (*path).to_owned()).collect() }
}

/// Unwraps the connector of a response's view; panics when either is missing.
pub fn connector_of(view: Option<pb::ConnectorView>) -> pb::Connector {
    view.expect("response has a connector_view").connector.expect("view has a connector")
}

/// Builds a request for one page of an app's live connectors.
pub fn list_request(app_id: &str, page_size: i32, page_token: &str) -> pb::ConnectorServiceListRequest {
    pb::ConnectorServiceListRequest { app_id: app_id.to_owned(), page_size, page_token: page_token.to_owned(), show_deleted: false }
}

/// Walks every page of an app's connectors and returns their ids in the order served.
pub async fn list_all_ids(client: &mut Client, app_id: &str, show_deleted: bool) -> Vec<String> {
    let mut ids = Vec::new();
    let mut page_token = String::new();
    // Bounded: a list that never ends would otherwise hang the test.
    for _ in 0..10_000 {
        let mut request = list_request(app_id, 100, &page_token);
        request.show_deleted = show_deleted;
        let page = client.list(request).await.expect("list a page").into_inner();
        ids.extend(page.list.into_iter().map(|view| view.connector.expect("view has a connector").id));
        if page.next_page_token.is_empty() {
            return ids;
        }
        page_token = page.next_page_token;
    }
    panic!("list of {app_id} did not end after 10000 pages");
}

/// Returns the directory of the operator config fixture.
pub fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join("fixtures")
}

/// Compiles `tests/fixtures/acme/okta_config.proto` and its imports, as
/// `protoc --include_imports -o` would, and returns the encoded `FileDescriptorSet`.
pub fn operator_descriptor_set() -> Vec<u8> {
    let mut compiler = protox::Compiler::new([fixtures_dir()]).expect("protox compiler over tests/fixtures");
    compiler.include_imports(true);
    compiler.open_file("acme/okta_config.proto").expect("compile the operator config fixture");
    compiler.encode_file_descriptor_set()
}

/// Writes the operator descriptor set into `dir` and returns the file's path.
pub fn write_operator_descriptor_set(dir: &Path) -> PathBuf {
    let path = dir.join("operator-config.binpb");
    std::fs::write(&path, operator_descriptor_set()).expect("write the descriptor set");
    path
}

/// Builds an `acme.connectors.v1.OktaConfig` config from the fixture's descriptors.
pub fn okta_config(domain: &str) -> prost_types::Any {
    let pool = DescriptorPool::decode(operator_descriptor_set().as_slice()).expect("decode the fixture's descriptor set");
    let descriptor = pool.get_message_by_name(OKTA_CONFIG_TYPE).expect("fixture defines OktaConfig");
    let mut message = DynamicMessage::new(descriptor);
    message.set_field_by_name("domain", Value::String(domain.to_owned()));
    message.set_field_by_name("page_limit", Value::I32(200));
    message.set_field_by_name("scopes", Value::List(vec![Value::String("okta.users.read".to_owned())]));
    prost_types::Any { type_url: format!("type.googleapis.com/{OKTA_CONFIG_TYPE}"), value: message.encode_to_vec() }
}
