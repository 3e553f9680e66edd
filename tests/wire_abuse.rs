//! Wire-level abuse against the running binary: malformed gRPC frames, oversized messages,
//! floods of half-open streams, connections that never finish the HTTP/2 handshake, and a
//! client that stops reading a server stream. Raw frames go through the `h2` crate or a
//! plain TCP socket, because a well-behaved client cannot produce them.

mod support;

use std::time::{Duration, Instant};

use bytes::Bytes;
use connectord::pb;
use h2::client::SendRequest;
use prost::Message;
use support::{ServerProcess, create_request};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};
use tonic::Code;

const GET_PATH: &str = "/connectord.v1.ConnectorService/Get";
const CREATE_PATH: &str = "/connectord.v1.ConnectorService/Create";
const REFLECTION_PATH: &str = "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo";
const CLIENT_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Prefixes an encoded message with the gRPC frame header: compression flag and length.
fn grpc_frame(compression_flag: u8, declared_len: u32, payload: &[u8]) -> Bytes {
    let mut frame = vec![compression_flag];
    frame.extend_from_slice(&declared_len.to_be_bytes());
    frame.extend_from_slice(payload);
    Bytes::from(frame)
}

fn encoded_get(id: &str) -> Vec<u8> {
    pb::ConnectorServiceGetRequest { app_id: "app".to_owned(), id: id.to_owned() }.encode_to_vec()
}

fn valid_get_frame() -> Bytes {
    let payload = encoded_get("missing");
    grpc_frame(0, payload.len() as u32, &payload)
}

async fn h2_connect(server: &ServerProcess) -> SendRequest<Bytes> {
    let tcp = TcpStream::connect(server.address).await.unwrap();
    let (send_request, connection) = h2::client::handshake(tcp).await.expect("HTTP/2 handshake");
    tokio::spawn(async move {
        let _ = connection.await;
    });
    send_request
}

/// Sends one unary gRPC call with `body` as its raw request body and returns the
/// `grpc-status` code and message from the headers or trailers.
async fn raw_call(send_request: &mut SendRequest<Bytes>, path: &str, body: Bytes) -> (i32, String) {
    let request = http::Request::builder()
        .method("POST")
        .uri(format!("http://localhost{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .unwrap();
    let ready = send_request.clone().ready().await.expect("connection usable");
    *send_request = ready;
    let (response, mut stream) = send_request.send_request(request, false).expect("send request");
    stream.send_data(body, true).expect("send body");

    let response = tokio::time::timeout(Duration::from_secs(10), response).await.expect("response in time").expect("response");
    let (parts, mut body) = response.into_parts();
    if let Some(status) = grpc_status(&parts.headers) {
        return status;
    }
    while let Some(chunk) = body.data().await {
        let chunk = chunk.expect("response data");
        let _ = body.flow_control().release_capacity(chunk.len());
    }
    let trailers = body.trailers().await.expect("trailers").expect("trailers present");
    grpc_status(&trailers).expect("grpc-status in trailers")
}

fn grpc_status(headers: &http::HeaderMap) -> Option<(i32, String)> {
    let code = headers.get("grpc-status")?.to_str().ok()?.parse().ok()?;
    let message = headers.get("grpc-message").map(|value| value.to_str().unwrap_or_default().to_owned()).unwrap_or_default();
    Some((code, message))
}

#[tokio::test]
async fn malformed_frames_get_status_and_connection_survives() {
    let data_dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(data_dir.path(), &[]);
    let mut connection = h2_connect(&server).await;
    let payload = encoded_get("missing");

    let cases: [(&str, Bytes, Code); 5] = [
        ("length prefix longer than the body", grpc_frame(0, payload.len() as u32 + 100, &payload), Code::Internal),
        ("truncated frame header", Bytes::from_static(&[0, 0, 0]), Code::Internal),
        ("bytes that are not protobuf", grpc_frame(0, 6, &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff]), Code::Internal),
        ("compression flag without grpc-encoding", grpc_frame(1, payload.len() as u32, &payload), Code::Internal),
        ("compression flag that is not 0 or 1", grpc_frame(7, payload.len() as u32, &payload), Code::Internal),
    ];
    for (case, body, expected) in cases {
        let (code, message) = raw_call(&mut connection, GET_PATH, body).await;
        assert_eq!(Code::from_i32(code), expected, "{case}: {message}");

        // The same connection still serves a valid call.
        let (code, message) = raw_call(&mut connection, GET_PATH, valid_get_frame()).await;
        assert_eq!(Code::from_i32(code), Code::NotFound, "valid call after {case}: {message}");
    }
}

#[tokio::test]
async fn oversized_message_is_resource_exhausted() {
    let data_dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(data_dir.path(), &[]);

    let mut client = server.client().await.max_encoding_message_size(16 * 1024 * 1024);
    let request = pb::ConnectorServiceCreateRequest { description: "x".repeat(5 * 1024 * 1024), ..create_request("app", "big") };
    let status = client.create(request).await.expect_err("a 5 MiB message");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");

    // A frame header that declares 5 MiB is rejected before the body arrives.
    let mut connection = h2_connect(&server).await;
    let (code, message) = raw_call(&mut connection, CREATE_PATH, grpc_frame(0, 5 * 1024 * 1024, &[])).await;
    assert_eq!(Code::from_i32(code), Code::ResourceExhausted, "{message}");

    let created = client.create(create_request("app", "small")).await;
    assert!(created.is_ok(), "{created:?}");
}

/// HPACK literal header field without indexing, with a literal name (RFC 7541, 6.2.2).
fn hpack_literal(block: &mut Vec<u8>, name: &str, value: &str) {
    assert!(name.len() < 127, "{name} needs a multi-byte length");
    assert!(value.len() < 127, "{value} needs a multi-byte length");
    block.push(0x00);
    block.push(name.len() as u8);
    block.extend_from_slice(name.as_bytes());
    block.push(value.len() as u8);
    block.extend_from_slice(value.as_bytes());
}

fn frame_header(payload_len: usize, frame_type: u8, flags: u8, stream_id: u32) -> [u8; 9] {
    let len = (payload_len as u32).to_be_bytes();
    let id = stream_id.to_be_bytes();
    [len[1], len[2], len[3], frame_type, flags, id[0], id[1], id[2], id[3]]
}

/// Opens a raw HTTP/2 connection: preface, empty SETTINGS, and an ACK of the server's.
async fn raw_h2(server: &ServerProcess) -> TcpStream {
    let mut tcp = TcpStream::connect(server.address).await.unwrap();
    tcp.write_all(CLIENT_PREFACE).await.unwrap();
    tcp.write_all(&frame_header(0, 0x4, 0, 0)).await.unwrap();
    tcp.write_all(&frame_header(0, 0x4, 0x1, 0)).await.unwrap();
    tcp
}

#[tokio::test]
async fn half_open_stream_flood_is_capped() {
    let data_dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(data_dir.path(), &[]);
    let mut client = server.client().await;
    client.create(create_request("app", "warm-up")).await.unwrap();
    let before_kib = server.resident_kib();

    let mut header_block = vec![0x83, 0x86]; // :method POST and :scheme http from the static table
    hpack_literal(&mut header_block, ":path", GET_PATH);
    hpack_literal(&mut header_block, ":authority", "localhost");
    hpack_literal(&mut header_block, "content-type", "application/grpc");
    hpack_literal(&mut header_block, "te", "trailers");

    let tcp = raw_h2(&server).await;
    let (mut reader, mut writer) = tcp.into_split();
    // Drain what the server sends (RST_STREAM, GOAWAY) so its writes never block.
    let drain = tokio::spawn(async move {
        let mut buffer = vec![0; 64 * 1024];
        let mut total = 0usize;
        while let Ok(Ok(read)) = tokio::time::timeout(Duration::from_secs(5), reader.read(&mut buffer)).await {
            if read == 0 {
                break;
            }
            total += read;
        }
        total
    });

    let mut batch = Vec::new();
    let mut sent_streams = 0u32;
    for index in 0..20_000u32 {
        batch.extend_from_slice(&frame_header(header_block.len(), 0x1, 0x4, 2 * index + 1));
        batch.extend_from_slice(&header_block);
        if batch.len() > 64 * 1024 {
            if writer.write_all(&batch).await.is_err() {
                break; // The server closed the connection, which also caps the streams.
            }
            batch.clear();
        }
        sent_streams = index + 1;
    }
    let _ = writer.write_all(&batch).await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    let after_kib = server.resident_kib();
    let growth_kib = after_kib.saturating_sub(before_kib);
    eprintln!("{sent_streams} half-open streams sent; resident memory {before_kib} KiB -> {after_kib} KiB");
    assert!(growth_kib < 20 * 1024, "resident memory grew by {growth_kib} KiB");

    // Other clients are still served.
    let mut other = server.client().await;
    let created = other.create(create_request("app", "after-flood")).await;
    assert!(created.is_ok(), "{created:?}");
    drop(writer);
    let _ = drain.await;
}

/// Reads from `tcp` until EOF or an error and returns how long that took, or `None` if the
/// connection stayed open for `limit`.
async fn time_until_closed(tcp: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut buffer = [0; 256];
    loop {
        match tokio::time::timeout(limit.saturating_sub(started.elapsed()), tcp.read(&mut buffer)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Some(started.elapsed()),
            Ok(Ok(_)) => continue,
            Err(_) => return None,
        }
    }
}

#[tokio::test]
async fn stalled_handshakes_are_capped_and_closed() {
    let data_dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(data_dir.path(), &["--max-connections", "16", "--handshake-timeout", "2s"]);

    let mut silent = Vec::new();
    for _ in 0..40 {
        silent.push(TcpStream::connect(server.address).await.unwrap());
    }
    // One slow client sends half of the preface and stops.
    silent[0].write_all(&CLIENT_PREFACE[..10]).await.unwrap();

    let mut closed_at_once = 0;
    let mut closed_by_timeout = 0;
    for tcp in &mut silent {
        let closed = time_until_closed(tcp, Duration::from_secs(10)).await.expect("connection closed within 10 s");
        if closed < Duration::from_millis(1500) {
            closed_at_once += 1;
        } else {
            closed_by_timeout += 1;
        }
    }
    assert!(closed_at_once >= 24, "only {closed_at_once} connections over the limit of 16 were closed at once");
    assert!(closed_by_timeout <= 16, "{closed_by_timeout} connections were kept open past the limit of 16");

    let mut client = server.client().await;
    let created = client.create(create_request("app", "after-stall")).await;
    assert!(created.is_ok(), "{created:?}");
}

#[tokio::test]
async fn silent_connection_closed_within_default_timeout() {
    let data_dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(data_dir.path(), &[]);
    let mut tcp = TcpStream::connect(server.address).await.unwrap();
    let closed = time_until_closed(&mut tcp, Duration::from_secs(12)).await;
    let closed = closed.expect("a connection without a handshake is open after 12 s");
    assert!(closed <= Duration::from_secs(11), "closed after {closed:?}");
}

fn reflection_request_frame() -> Bytes {
    use tonic_reflection::pb::v1::{ServerReflectionRequest, server_reflection_request::MessageRequest};
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::FileContainingSymbol("connectord.v1.ConnectorService".to_owned())),
    };
    let payload = request.encode_to_vec();
    grpc_frame(0, payload.len() as u32, &payload)
}

#[tokio::test]
async fn stalled_stream_reader_does_not_block_others() {
    let data_dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(data_dir.path(), &[]);
    // The baseline is taken after the same calls as below have run once, so that caches
    // and runtime threads that any traffic starts are not counted as growth.
    let mut client = server.client().await;
    create_and_get(&mut client, "warm-up").await;
    let before_kib = server.resident_kib();

    // A client with a 1 KiB stream window sends many reflection requests and never reads
    // the responses.
    let tcp = TcpStream::connect(server.address).await.unwrap();
    let (send_request, connection) = h2::client::Builder::new().initial_window_size(1024).handshake::<_, Bytes>(tcp).await.unwrap();
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let mut stalled = Vec::new();
    for _ in 0..8 {
        let mut send_request = send_request.clone().ready().await.unwrap();
        let request = http::Request::builder()
            .method("POST")
            .uri(format!("http://localhost{REFLECTION_PATH}"))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(())
            .unwrap();
        let (response, mut stream) = send_request.send_request(request, false).unwrap();
        for _ in 0..200 {
            stream.reserve_capacity(1024);
            if stream.send_data(reflection_request_frame(), false).is_err() {
                break;
            }
        }
        stalled.push((response, stream));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Meanwhile other clients write and read, each call within a 2 s deadline.
    create_and_get(&mut client, "beside-stalled").await;

    let after_kib = server.resident_kib();
    let growth_kib = after_kib.saturating_sub(before_kib);
    eprintln!("resident memory {before_kib} KiB -> {after_kib} KiB with stalled readers");
    assert!(growth_kib < 20 * 1024, "resident memory grew by {growth_kib} KiB");
    drop(stalled);
}

/// Creates 50 connectors and reads each back, every call within a 2 s deadline.
async fn create_and_get(client: &mut pb::connector_service_client::ConnectorServiceClient<tonic::transport::Channel>, prefix: &str) {
    for index in 0..50 {
        let mut request = tonic::Request::new(create_request("app", &format!("{prefix}-{index}")));
        request.set_timeout(Duration::from_secs(2));
        let created = client.create(request).await.expect("create beside a stalled reader").into_inner();
        let id = created.connector_view.unwrap().connector.unwrap().id;
        let mut request = tonic::Request::new(pb::ConnectorServiceGetRequest { app_id: "app".to_owned(), id });
        request.set_timeout(Duration::from_secs(2));
        client.get(request).await.expect("get beside a stalled reader");
    }
}

#[tokio::test]
async fn short_http1_request_is_answered_at_once() {
    let data_dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(data_dir.path(), &[]);
    let mut tcp = TcpStream::connect(server.address).await.unwrap();
    // 19 bytes, shorter than the HTTP/2 preface that the connection limit looks for.
    tcp.write_all(b"GET /x HTTP/1.1\r\n\r\n").await.unwrap();
    let mut response = vec![0; 64];
    let read = tokio::time::timeout(Duration::from_secs(3), tcp.read(&mut response))
        .await
        .expect("no answer within 3 s, far below the 10 s handshake timeout")
        .unwrap();
    assert!(response[..read].starts_with(b"HTTP/1.1 "), "{:?}", String::from_utf8_lossy(&response[..read]));
}
