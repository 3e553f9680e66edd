//! Failures of the PostgreSQL store: a database that goes away and comes back, and a schema
//! newer than this binary. The database is reached through a TCP proxy on 127.0.0.1 that
//! the test cuts and restores. Each test passes without running, after a notice, when
//! `CONNECTORD_TEST_POSTGRES_URL` is unset.

mod common;

use std::{
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use common::{TestServer, create, create_request, get_request, lifecycle::poll_until, list_request, postgres::TestDatabase};
use connectord::store::{
    DatabaseUrl, PostgresStore, PostgresStoreOptions, Store,
    postgres::{OpenError, schema},
};
use tokio::{
    net::{TcpListener, TcpStream},
    task::JoinHandle,
};
use tokio_postgres::NoTls;
use tonic::Code;
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};

const CONNECTOR_SERVICE: &str = "connectord.v1.ConnectorService";
/// Statement timeout of the server under test, short so that calls fail fast.
const STATEMENT_TIMEOUT: Duration = Duration::from_secs(1);
/// Maximum wait for the server to notice that the database left or came back.
const NOTICE_LIMIT: Duration = Duration::from_secs(20);

/// A TCP proxy on 127.0.0.1 that forwards to the test database while open. Cutting it
/// closes every forwarded connection, and while cut it closes new ones at once, as a
/// database host that went away would look to a client.
struct Proxy {
    addr: SocketAddr,
    open: Arc<AtomicBool>,
    connections: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept_task: JoinHandle<()>,
}

impl Proxy {
    async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the proxy on 127.0.0.1:0");
        let addr = listener.local_addr().expect("proxy address");
        let open = Arc::new(AtomicBool::new(true));
        let connections = Arc::new(Mutex::new(Vec::new()));
        let accept_task = {
            let open = Arc::clone(&open);
            let connections = Arc::clone(&connections);
            tokio::spawn(async move {
                while let Ok((mut downstream, _)) = listener.accept().await {
                    if !open.load(Ordering::SeqCst) {
                        drop(downstream);
                        continue;
                    }
                    let forward = tokio::spawn(async move {
                        if let Ok(mut upstream) = TcpStream::connect(target).await {
                            let _ = tokio::io::copy_bidirectional(&mut downstream, &mut upstream).await;
                        }
                    });
                    connections.lock().expect("proxy connection list").push(forward);
                }
            })
        };
        Self { addr, open, connections, accept_task }
    }

    fn cut(&self) {
        self.open.store(false, Ordering::SeqCst);
        for forward in self.connections.lock().expect("proxy connection list").drain(..) {
            forward.abort();
        }
    }

    fn restore(&self) {
        self.open.store(true, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
        self.accept_task.abort();
    }
}

/// Splits a `postgres://user@host:port/db?query` URL around its `host:port`.
fn split_authority(url: &str) -> (&str, &str, &str) {
    let scheme_end = url.find("://").expect("URL has a scheme") + 3;
    let authority_end = url[scheme_end..].find(['/', '?']).map_or(url.len(), |end| scheme_end + end);
    let host_start = url[scheme_end..authority_end].rfind('@').map_or(scheme_end, |at| scheme_end + at + 1);
    (&url[..host_start], &url[host_start..authority_end], &url[authority_end..])
}

/// Returns the URL pointed at `proxy` in place of its host and port.
fn through_proxy(url: &DatabaseUrl, proxy: SocketAddr) -> DatabaseUrl {
    let (head, _, tail) = split_authority(url.expose());
    DatabaseUrl::parse(&format!("{head}{proxy}{tail}")).expect("proxied URL is valid")
}

/// Resolves the host and port of a URL; 5432 when the URL has no port.
async fn database_addr(url: &DatabaseUrl) -> SocketAddr {
    let (_, host_port, _) = split_authority(url.expose());
    let host_port = if host_port.contains(':') { host_port.to_owned() } else { format!("{host_port}:5432") };
    tokio::net::lookup_host(&host_port)
        .await
        .unwrap_or_else(|error| panic!("resolve {host_port}: {error}"))
        .next()
        .unwrap_or_else(|| panic!("{host_port} resolves to no address"))
}

async fn connector_health(channel: tonic::transport::Channel) -> Option<ServingStatus> {
    let response = HealthClient::new(channel).check(HealthCheckRequest { service: CONNECTOR_SERVICE.to_owned() }).await.ok()?;
    ServingStatus::try_from(response.into_inner().status).ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_database_recovers_by_itself() {
    let Some(database) = TestDatabase::create().await else { return };
    let proxy = Proxy::start(database_addr(&database.url).await).await;
    let url = through_proxy(&database.url, proxy.addr);
    let server = TestServer::start_with(|options| {
        options.postgres = Some(PostgresStoreOptions { url, pool_size: 4, statement_timeout: STATEMENT_TIMEOUT });
    })
    .await;
    let mut client = server.client().await;
    let connector = create(&mut client, "app-1", "before the outage").await;
    assert_eq!(connector_health(server.channel().await).await, Some(ServingStatus::Serving));

    proxy.cut();
    let status = poll_until("Get fails while the database is gone", NOTICE_LIMIT, || {
        let mut client = client.clone();
        let id = connector.id.clone();
        async move { client.get(get_request("app-1", &id)).await.err() }
    })
    .await;
    assert_eq!(status.code(), Code::Unavailable, "Get during the outage: {status:?}");
    let created = tokio::time::timeout(NOTICE_LIMIT, client.create(create_request("app-1", "during the outage")))
        .await
        .expect("Create returns within the limit");
    assert_eq!(created.map_err(|status| status.code()).err(), Some(Code::Unavailable), "Create during the outage");
    let listed =
        tokio::time::timeout(NOTICE_LIMIT, client.list(list_request("app-1", 10, ""))).await.expect("List returns within the limit");
    assert_eq!(listed.map_err(|status| status.code()).err(), Some(Code::Unavailable), "List during the outage");
    poll_until("health reports NOT_SERVING", NOTICE_LIMIT, || {
        let channel = server.channel();
        async move { (connector_health(channel.await).await == Some(ServingStatus::NotServing)).then_some(()) }
    })
    .await;
    let http_health = reqwest::get(format!("http://{}/healthz", server.addr)).await.expect("GET /healthz");
    assert_eq!(http_health.status().as_u16(), 503, "HTTP health during the outage");
    let body: serde_json::Value = http_health.json().await.expect("JSON body");
    assert_eq!(body["status"], "NOT_SERVING");

    proxy.restore();
    let restored = poll_until("Get succeeds after the database returns", NOTICE_LIMIT, || {
        let mut client = client.clone();
        let id = connector.id.clone();
        async move { client.get(get_request("app-1", &id)).await.ok() }
    })
    .await;
    let restored = common::connector_of(restored.into_inner().connector_view);
    assert_eq!(restored, connector, "the connector changed across the outage");
    poll_until("health reports SERVING again", NOTICE_LIMIT, || {
        let channel = server.channel();
        async move { (connector_health(channel.await).await == Some(ServingStatus::Serving)).then_some(()) }
    })
    .await;
    create(&mut client, "app-1", "after the outage").await;

    server.stop().await;
    drop(proxy);
    drop(database);
}

#[tokio::test]
async fn newer_schema_is_rejected() {
    let Some(database) = TestDatabase::create().await else { return };
    let store = PostgresStore::open(&database.store_options()).await.expect("the first open migrates");
    store.close().await.expect("close the store");
    drop(store);

    let newer = schema::latest_version() + 1;
    let (client, connection) = tokio_postgres::connect(database.url.expose(), NoTls).await.expect("connect to the test schema");
    let connection = tokio::spawn(connection);
    client
        .execute("INSERT INTO connectord_schema_migrations (version, name) VALUES ($1, 'from a newer connectord')", &[&newer])
        .await
        .expect("record a newer schema version");
    drop(client);
    let _ = connection.await;

    let error = match PostgresStore::open(&database.store_options()).await {
        Ok(_) => panic!("a store opened a database whose schema is at version {newer}"),
        Err(error) => error,
    };
    let OpenError::Schema { source: schema::SchemaError::Newer { found, supported }, .. } = &error else {
        panic!("expected a newer-schema error, got {error}");
    };
    assert_eq!(*found, newer);
    assert_eq!(*supported, schema::latest_version());
    assert!(error.to_string().contains("newer"), "the message does not say why: {error}");
    drop(database);
}

#[test]
fn authority_is_found_in_test_urls() {
    let (head, host_port, tail) = split_authority("postgres://connectord@127.0.0.1:5433/db?options=-c%20x");
    assert_eq!(head, "postgres://connectord@");
    assert_eq!(host_port, "127.0.0.1:5433");
    assert_eq!(tail, "/db?options=-c%20x");
    let (head, host_port, tail) = split_authority("postgresql://localhost/db");
    assert_eq!(head, "postgresql://");
    assert_eq!(host_port, "localhost");
    assert_eq!(tail, "/db");
}
