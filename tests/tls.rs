//! TLS and mutual TLS on the one listener, with certificates the test generates: gRPC
//! through tonic's TLS client and REST over HTTP/1.1 through a plain rustls client.

mod common;

use std::{
    io,
    path::Path,
    pin::Pin,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    task::{Context, Poll},
};

use common::TestServer;
use connectord::{
    pb::{self, connector_service_client::ConnectorServiceClient},
    server::ServicesBuilder,
    store::{SledStore, SledStoreOptions},
    tls::TlsFiles,
};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, pem::PemObject};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream, ReadBuf};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity, server::Connected};

/// A CA and the PEM files of a server and a client certificate it signed.
struct Pki {
    ca_pem: String,
    client_cert_pem: String,
    client_key_pem: String,
    files: TlsFiles,
    _directory: tempfile::TempDir,
}

fn generate_pki() -> Pki {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();

    let server_key = KeyPair::generate().unwrap();
    let server_cert =
        CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap().signed_by(&server_key, &ca).unwrap();
    let client_key = KeyPair::generate().unwrap();
    let client_cert = CertificateParams::new(vec!["worker.example".to_owned()]).unwrap().signed_by(&client_key, &ca).unwrap();

    let directory = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let path = directory.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let files = TlsFiles {
        cert: write("server.pem", &server_cert.pem()),
        key: write("server.key", &server_key.serialize_pem()),
        client_ca: Some(write("ca.pem", &ca.pem())),
    };
    Pki { ca_pem: ca.pem(), client_cert_pem: client_cert.pem(), client_key_pem: client_key.serialize_pem(), files, _directory: directory }
}

async fn tls_channel(server: &TestServer, pki: &Pki, with_client_cert: bool) -> Result<Channel, tonic::transport::Error> {
    let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&pki.ca_pem)).domain_name("localhost");
    if with_client_cert {
        tls = tls.identity(Identity::from_pem(&pki.client_cert_pem, &pki.client_key_pem));
    }
    Channel::from_shared(format!("https://127.0.0.1:{}", server.addr.port())).unwrap().tls_config(tls)?.connect().await
}

fn list_request() -> pb::ConnectorServiceListRequest {
    pb::ConnectorServiceListRequest { app_id: "app-1".to_owned(), ..Default::default() }
}

/// Sends one REST GET over TLS with HTTP/1.1 and returns the status line.
async fn rest_status_line(server: &TestServer, pki: &Pki, path: &str, client_cert: bool) -> std::io::Result<String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_slice(pki.ca_pem.as_bytes()).unwrap()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder =
        rustls::ClientConfig::builder_with_provider(provider).with_safe_default_protocol_versions().unwrap().with_root_certificates(roots);
    let mut config = if client_cert {
        let chain = vec![CertificateDer::from_pem_slice(pki.client_cert_pem.as_bytes()).unwrap()];
        let key = PrivateKeyDer::from_pem_slice(pki.client_key_pem.as_bytes()).unwrap();
        builder.with_client_auth_cert(chain, key).unwrap()
    } else {
        builder.with_no_client_auth()
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];

    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(server.addr).await?;
    let mut stream = connector.connect(ServerName::try_from("localhost").unwrap(), tcp).await?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await?;
    let text = String::from_utf8_lossy(&response).into_owned();
    Ok(text.lines().next().unwrap_or_default().to_owned())
}

fn without_client_ca(files: &TlsFiles) -> TlsFiles {
    TlsFiles { client_ca: None, ..files.clone() }
}

#[tokio::test]
async fn grpc_and_rest_are_served_over_tls() {
    let pki = generate_pki();
    let files = without_client_ca(&pki.files);
    let server = TestServer::start_with(|options| options.tls = Some(files)).await;

    let channel = tls_channel(&server, &pki, false).await.expect("TLS connect");
    let mut client = ConnectorServiceClient::new(channel);
    client.list(list_request()).await.expect("list over TLS");

    let status = rest_status_line(&server, &pki, "/api/v1/apps/app-1/connectors", false).await.expect("REST over TLS");
    assert_eq!(status, "HTTP/1.1 200 OK");

    let plaintext = common::connect_channel_result(server.addr).await;
    let plain_call = match plaintext {
        Ok(channel) => ConnectorServiceClient::new(channel).list(list_request()).await.err(),
        Err(_) => Some(tonic::Status::unavailable("connect failed")),
    };
    assert!(plain_call.is_some(), "a plaintext call to the TLS port succeeded");
    server.stop().await;
}

#[tokio::test]
async fn mutual_tls_requires_a_client_certificate() {
    let pki = generate_pki();
    let files = pki.files.clone();
    let server = TestServer::start_with(|options| options.tls = Some(files)).await;

    let with_cert = tls_channel(&server, &pki, true).await.expect("mutual TLS connect");
    ConnectorServiceClient::new(with_cert).list(list_request()).await.expect("list with a client certificate");
    let status = rest_status_line(&server, &pki, "/api/v1/apps/app-1/connectors", true).await.expect("REST with a certificate");
    assert_eq!(status, "HTTP/1.1 200 OK");

    let rejected = match tls_channel(&server, &pki, false).await {
        Ok(channel) => ConnectorServiceClient::new(channel).list(list_request()).await.is_err(),
        Err(_) => true,
    };
    assert!(rejected, "a client without a certificate was served");
    let rest_without_cert = rest_status_line(&server, &pki, "/api/v1/apps/app-1/connectors", false).await;
    assert!(rest_without_cert.map_or(true, |line| !line.contains("200")), "REST without a client certificate was served");
    server.stop().await;
}

#[test]
fn missing_key_file_is_named() {
    let pki = generate_pki();
    let files = TlsFiles { key: Path::new("/nonexistent/server.key").to_path_buf(), ..pki.files.clone() };
    let error = connectord::tls::acceptor(&files).err().expect("a missing key must fail");
    assert!(error.to_string().contains("/nonexistent/server.key"), "{error}");
}

/// The server's end of an in-memory connection, counting the writes the server makes.
struct CountingConnection {
    inner: DuplexStream,
    writes: Arc<AtomicUsize>,
}

impl Connected for CountingConnection {
    type ConnectInfo = ();

    fn connect_info(&self) -> Self::ConnectInfo {}
}

impl AsyncRead for CountingConnection {
    fn poll_read(mut self: Pin<&mut Self>, context: &mut Context<'_>, buffer: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(context, buffer)
    }
}

impl AsyncWrite for CountingConnection {
    fn poll_write(mut self: Pin<&mut Self>, context: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.inner).poll_write(context, data);
        if matches!(written, Poll::Ready(Ok(count)) if count > 0) {
            self.writes.fetch_add(1, Ordering::SeqCst);
        }
        written
    }

    fn poll_flush(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(context)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(context)
    }
}

#[tokio::test]
async fn tls_response_takes_one_write() {
    const CALLS: usize = 20;
    let pki = generate_pki();
    let acceptor = connectord::tls::acceptor(&without_client_ca(&pki.files)).unwrap();
    let data_dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(&SledStoreOptions::new(data_dir.path())).expect("open the store");
    let routes = ServicesBuilder::new(Arc::new(store)).unwrap().build().unwrap().into_routes();

    let (client_end, server_end) = tokio::io::duplex(64 * 1024);
    let writes = Arc::new(AtomicUsize::new(0));
    let connection = CountingConnection { inner: server_end, writes: Arc::clone(&writes) };
    // The stream of connections stays open after the first, so the server keeps serving.
    let incoming = tokio_stream::StreamExt::chain(tokio_stream::once(Ok::<_, io::Error>(connection)), tokio_stream::pending());
    let server = tokio::spawn(
        tonic::transport::Server::builder().add_routes(routes).serve_with_incoming(connectord::tls::tls_incoming(incoming, acceptor)),
    );

    let client_end = Arc::new(Mutex::new(Some(client_end)));
    let tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&pki.ca_pem)).domain_name("localhost");
    let channel = Endpoint::from_static("https://localhost")
        .tls_config(tls)
        .unwrap()
        .connect_with_connector(tower::service_fn(move |_| {
            let end = client_end.lock().unwrap().take();
            async move {
                let end = end.ok_or_else(|| io::Error::other("the in-memory connection was already used"))?;
                Ok::<_, io::Error>(hyper_util::rt::TokioIo::new(end))
            }
        }))
        .await
        .expect("TLS connect over the in-memory connection");
    let mut client = ConnectorServiceClient::new(channel);

    let mut create = common::create_request("app-1", "Okta");
    create.description = "Syncs the users and groups of the Okta tenant. ".repeat(8);
    let created = client.create(create).await.expect("create").into_inner();
    let connector = created.connector_view.unwrap().connector.unwrap();
    let get = pb::ConnectorServiceGetRequest { app_id: "app-1".to_owned(), id: connector.id.clone() };
    let first = client.get(get.clone()).await.expect("first get").into_inner();
    // h2 copies a data frame under 256 bytes into its buffer even with vectored writes, so
    // only a larger response shows the difference.
    let size = prost::Message::encoded_len(&first);
    assert!(size > 256, "the response has {size} bytes, too few to tell one write from two");

    let before = writes.load(Ordering::SeqCst);
    for _ in 0..CALLS {
        client.get(get.clone()).await.expect("get");
    }
    let per_call = (writes.load(Ordering::SeqCst) - before) as f64 / CALLS as f64;
    // A data frame written apart from the trailers behind it takes a second write.
    assert!(per_call < 1.5, "{per_call} writes per unary response over TLS, expected 1");
    server.abort();
}
