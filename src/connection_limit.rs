//! Accepting TCP connections with a cap on their number and a deadline for the client's
//! half of the HTTP/2 handshake.
//!
//! Neither tonic nor hyper closes a connection that never sends the HTTP/2 preface, and
//! neither caps the number of connections, so idle sockets could pile up until the process
//! runs out of file descriptors. Here every accepted connection holds a permit of a
//! semaphore until it closes, and connections over the cap are closed at once. A connection
//! reaches tonic only after it has sent the client preface and its first SETTINGS frame
//! within the handshake timeout. The bytes read for that check are replayed to tonic.

use crate::log_throttle::{LOG_INTERVAL, LogThrottle};
use std::{
    io,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::{OwnedSemaphorePermit, Semaphore, mpsc},
    task::JoinHandle,
};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::{Connected, TcpConnectInfo};

/// The first bytes that an HTTP/2 client sends (RFC 9113, section 3.4).
const CLIENT_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const FRAME_HEADER_LEN: usize = 9;
const SETTINGS_FRAME_TYPE: u8 = 0x4;
/// Largest first SETTINGS frame accepted: 6 bytes per setting, far more settings than
/// RFC 9113 defines.
const MAX_SETTINGS_PAYLOAD: usize = 6 * 64;
/// Pause after an accept error such as EMFILE, so a full descriptor table does not spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// Limits on accepted connections.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// Maximum number of open connections, including those still in the handshake.
    pub max_connections: usize,
    /// Time a new connection gets to send the HTTP/2 client preface and its first SETTINGS
    /// frame.
    pub handshake_timeout: Duration,
}

impl Default for ConnectionLimits {
    // NOTE: 1024 connections is an estimate for a small server, not a measured limit.
    fn default() -> Self {
        Self { max_connections: 1024, handshake_timeout: Duration::from_secs(10) }
    }
}

/// Accepts connections from `listener` under `limits` and returns them as the incoming
/// stream for tonic, together with the accept task. The task ends, closing the listener,
/// once the stream is dropped.
pub fn limited_incoming(
    listener: TcpListener,
    limits: ConnectionLimits,
) -> (ReceiverStream<io::Result<LimitedConnection>>, JoinHandle<()>) {
    let (sender, receiver) = mpsc::channel(64);
    let task = tokio::spawn(accept_loop(listener, limits, sender));
    (ReceiverStream::new(receiver), task)
}

async fn accept_loop(listener: TcpListener, limits: ConnectionLimits, sender: mpsc::Sender<io::Result<LimitedConnection>>) {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let reject_log = LogThrottle::new(LOG_INTERVAL);
    loop {
        let accepted = tokio::select! {
            () = sender.closed() => return,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(%error, "accepting a connection failed; retrying");
                tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
            if let Some(rejected) = reject_log.admit() {
                tracing::warn!(
                    max_connections = limits.max_connections,
                    rejected,
                    "connections closed at once because the connection limit is reached; raise --max-connections if clients are legitimate"
                );
            }
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(hand_over(stream, peer, permit, limits.handshake_timeout, sender.clone()));
    }
}

/// Waits for the client's half of the handshake and passes the connection to tonic, or
/// closes it when the deadline passes first.
async fn hand_over(
    mut stream: TcpStream,
    peer: std::net::SocketAddr,
    permit: OwnedSemaphorePermit,
    timeout: Duration,
    sender: mpsc::Sender<io::Result<LimitedConnection>>,
) {
    let prefix = match tokio::time::timeout(timeout, read_handshake(&mut stream)).await {
        Ok(Ok(prefix)) => prefix,
        Ok(Err(error)) => {
            tracing::debug!(%peer, %error, "connection closed during the HTTP/2 handshake");
            return;
        }
        Err(_) => {
            tracing::info!(%peer, timeout_seconds = timeout.as_secs_f64(), "connection closed: no HTTP/2 handshake within the timeout");
            return;
        }
    };
    let connection = LimitedConnection { stream, prefix, prefix_read: 0, _permit: permit };
    // The send fails once tonic has dropped the incoming stream at shutdown, and dropping
    // the connection then closes it.
    let _ = sender.send(Ok(connection)).await;
}

/// Reads the client preface and the first frame when it is SETTINGS, and returns the bytes
/// read. A connection whose first bytes differ from the HTTP/2 preface (HTTP/1.1 for REST
/// and gRPC-Web, a TLS ClientHello) is handed over as soon as they differ. The HTTP or TLS
/// layer then applies its own rules.
async fn read_handshake(stream: &mut TcpStream) -> io::Result<Vec<u8>> {
    let mut prefix = vec![0; CLIENT_PREFACE.len() + FRAME_HEADER_LEN];
    let mut filled = 0;
    while filled < CLIENT_PREFACE.len() {
        let count = stream.read(&mut prefix[filled..CLIENT_PREFACE.len()]).await?;
        if count == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        filled += count;
        if prefix[..filled] != CLIENT_PREFACE[..filled] {
            prefix.truncate(filled);
            return Ok(prefix);
        }
    }
    stream.read_exact(&mut prefix[CLIENT_PREFACE.len()..]).await?;
    let header = &prefix[CLIENT_PREFACE.len()..];
    let payload_len = usize::from(header[0]) << 16 | usize::from(header[1]) << 8 | usize::from(header[2]);
    if header[3] != SETTINGS_FRAME_TYPE || payload_len > MAX_SETTINGS_PAYLOAD {
        // Not a valid handshake, so the HTTP/2 layer rejects it with a GOAWAY.
        return Ok(prefix);
    }
    let start = prefix.len();
    prefix.resize(start + payload_len, 0);
    stream.read_exact(&mut prefix[start..]).await?;
    Ok(prefix)
}

/// An accepted connection that keeps a slot of the connection limit until it is dropped.
/// Reads return the bytes consumed by the handshake check first.
pub struct LimitedConnection {
    stream: TcpStream,
    prefix: Vec<u8>,
    prefix_read: usize,
    _permit: OwnedSemaphorePermit,
}

impl Connected for LimitedConnection {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.stream.connect_info()
    }
}

impl AsyncRead for LimitedConnection {
    fn poll_read(mut self: Pin<&mut Self>, context: &mut Context<'_>, buffer: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.prefix_read < this.prefix.len() {
            let remaining = &this.prefix[this.prefix_read..];
            let count = remaining.len().min(buffer.remaining());
            buffer.put_slice(&remaining[..count]);
            this.prefix_read += count;
            if this.prefix_read == this.prefix.len() {
                this.prefix = Vec::new();
                this.prefix_read = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.stream).poll_read(context, buffer)
    }
}

impl AsyncWrite for LimitedConnection {
    fn poll_write(mut self: Pin<&mut Self>, context: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(context, data)
    }

    /// Reports no vectored writes, so that HTTP/2 (h2 0.4) copies data frames smaller than
    /// 1 KiB into its write buffer instead of chaining them. A unary response then leaves
    /// in one write, where a chained data frame needed a write of its own before the
    /// trailers behind it.
    fn is_write_vectored(&self) -> bool {
        false
    }

    fn poll_flush(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(context)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(context)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncWriteExt;
    use tokio_stream::StreamExt;

    use super::*;

    async fn listen(
        max_connections: usize,
        handshake_timeout: Duration,
    ) -> (std::net::SocketAddr, ReceiverStream<io::Result<LimitedConnection>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (incoming, _task) = limited_incoming(listener, ConnectionLimits { max_connections, handshake_timeout });
        (address, incoming)
    }

    #[tokio::test]
    async fn handshake_bytes_are_replayed() {
        let (address, mut incoming) = listen(4, Duration::from_secs(5)).await;
        let mut client = TcpStream::connect(address).await.unwrap();
        let mut sent = CLIENT_PREFACE.to_vec();
        sent.extend_from_slice(&[0, 0, 6, SETTINGS_FRAME_TYPE, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 100]);
        sent.extend_from_slice(b"next frame");
        client.write_all(&sent).await.unwrap();

        let mut connection = incoming.next().await.unwrap().unwrap();
        let mut received = vec![0; sent.len()];
        connection.read_exact(&mut received).await.unwrap();
        assert_eq!(received, sent);
    }

    #[tokio::test]
    async fn silent_connection_is_closed_after_timeout() {
        let (address, _incoming) = listen(4, Duration::from_millis(200)).await;
        let mut client = TcpStream::connect(address).await.unwrap();
        let mut buffer = [0; 1];
        let read = tokio::time::timeout(Duration::from_secs(5), client.read(&mut buffer)).await;
        assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "connection still open: {read:?}");
    }

    #[tokio::test]
    async fn connections_over_the_limit_are_closed() {
        let (address, _incoming) = listen(2, Duration::from_secs(30)).await;
        let _first = TcpStream::connect(address).await.unwrap();
        let _second = TcpStream::connect(address).await.unwrap();
        let mut third = TcpStream::connect(address).await.unwrap();
        let mut buffer = [0; 1];
        let read = tokio::time::timeout(Duration::from_secs(5), third.read(&mut buffer)).await;
        assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "third connection still open: {read:?}");
    }
}
