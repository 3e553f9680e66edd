//! TLS for every protocol on the listener (gRPC, gRPC-Web, REST), with optional client
//! certificates. The handshake runs here rather than in tonic so that ALPN can offer
//! HTTP/1.1 next to HTTP/2: REST clients such as Python's requests speak only HTTP/1.1.

use crate::log_throttle::{LOG_INTERVAL, LogThrottle};
use std::{
    io,
    path::PathBuf,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use rustls::{
    RootCertStore, ServerConfig,
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
    server::WebPkiClientVerifier,
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_rustls::{TlsAcceptor, server::TlsStream};
use tokio_stream::{Stream, StreamExt, wrappers::ReceiverStream};
use tonic::transport::server::Connected;

/// How long a client may take to complete the TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshakes that may run at once; further connections wait to be accepted.
const MAX_PENDING_HANDSHAKES: usize = 256;

/// PEM files of the server's certificate chain and key, and optionally the CA that client
/// certificates must chain to.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {what} from {path}: {reason}")]
    Pem { what: &'static str, path: PathBuf, reason: String },
    #[error("{path} holds no {what}")]
    Empty { what: &'static str, path: PathBuf },
    #[error("invalid TLS setup: {0}")]
    Config(String),
}

fn read_certificates(path: &PathBuf, what: &'static str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certificates = CertificateDer::pem_file_iter(path)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|error| TlsError::Pem { what, path: path.clone(), reason: error.to_string() })?;
    if certificates.is_empty() {
        return Err(TlsError::Empty { what, path: path.clone() });
    }
    Ok(certificates)
}

/// Builds the acceptor: TLS 1.2 and 1.3 with ring, ALPN `h2` then `http/1.1`, and client
/// certificates required when `client_ca` is set.
pub fn acceptor(files: &TlsFiles) -> Result<TlsAcceptor, TlsError> {
    let chain = read_certificates(&files.cert, "certificate")?;
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|error| TlsError::Pem {
        what: "private key",
        path: files.key.clone(),
        reason: error.to_string(),
    })?;

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|error| TlsError::Config(error.to_string()))?;
    let builder = match &files.client_ca {
        Some(path) => {
            let mut roots = RootCertStore::empty();
            for certificate in read_certificates(path, "client CA certificate")? {
                roots.add(certificate).map_err(|error| TlsError::Config(format!("client CA {}: {error}", path.display())))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|error| TlsError::Config(error.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config =
        builder.with_single_cert(chain, key).map_err(|error| TlsError::Config(format!("certificate and key do not fit: {error}")))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Wraps a stream of accepted connections in TLS. Each handshake runs in its own task with
/// [`HANDSHAKE_TIMEOUT`], so a slow client cannot hold up the others; failed handshakes are
/// logged and dropped.
pub fn tls_incoming<S, IO>(incoming: S, acceptor: TlsAcceptor) -> impl Stream<Item = Result<TlsConnection<IO>, io::Error>>
where
    S: Stream<Item = Result<IO, io::Error>> + Send + 'static,
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sender, receiver) = tokio::sync::mpsc::channel(MAX_PENDING_HANDSHAKES);
    tokio::spawn(async move {
        let mut incoming = std::pin::pin!(incoming);
        let handshakes = Arc::new(tokio::sync::Semaphore::new(MAX_PENDING_HANDSHAKES));
        while let Some(connection) = incoming.next().await {
            let connection = match connection {
                Ok(connection) => connection,
                Err(error) => {
                    tracing::warn!(%error, "accepting a connection failed");
                    continue;
                }
            };
            let Ok(permit) = Arc::clone(&handshakes).acquire_owned().await else { return };
            let acceptor = acceptor.clone();
            let sender = sender.clone();
            tokio::spawn(async move {
                let _permit = permit;
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(connection)).await {
                    Ok(Ok(stream)) => {
                        let _ = sender.send(Ok(TlsConnection(stream))).await;
                    }
                    Ok(Err(error)) => {
                        static LOG: LogThrottle = LogThrottle::new(LOG_INTERVAL);
                        if let Some(failed) = LOG.admit() {
                            // The first bytes were not a TLS record: most often a client
                            // that speaks plain HTTP/2 to the TLS port.
                            let hint = if error.to_string().contains("InvalidContentType") {
                                "; the client did not start TLS: use https:// or drop -plaintext"
                            } else {
                                ""
                            };
                            tracing::info!(%error, failed, "TLS handshake failed{hint}");
                        }
                    }
                    Err(_) => tracing::info!(timeout_seconds = HANDSHAKE_TIMEOUT.as_secs(), "TLS handshake timed out"),
                }
            });
        }
    });
    ReceiverStream::new(receiver)
}

/// An accepted TLS connection that reports no vectored writes, so HTTP/2 and HTTP/1.1 copy
/// a small response into one buffer and tokio-rustls sends it as one record in one write.
pub struct TlsConnection<IO>(TlsStream<IO>);

impl<IO: Connected + AsyncRead + AsyncWrite + Unpin> Connected for TlsConnection<IO> {
    type ConnectInfo = <TlsStream<IO> as Connected>::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.0.connect_info()
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncRead for TlsConnection<IO> {
    fn poll_read(mut self: Pin<&mut Self>, context: &mut Context<'_>, buffer: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(context, buffer)
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncWrite for TlsConnection<IO> {
    fn poll_write(mut self: Pin<&mut Self>, context: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(context, data)
    }

    fn is_write_vectored(&self) -> bool {
        false
    }

    fn poll_flush(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(context)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(context)
    }
}
