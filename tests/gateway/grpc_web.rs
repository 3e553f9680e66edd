//! gRPC-Web calls over HTTP/1.1 and the CORS headers that browsers need for them.

use connectord::pb;
use prost::Message;
use reqwest::Response;

use crate::support::TestServer;

const GET_PATH: &str = "/connectord.v1.ConnectorService/Get";
const ORIGIN: &str = "https://console.example";

/// Frames a message as a gRPC-Web data frame.
fn data_frame(message: &impl Message) -> Vec<u8> {
    let encoded = message.encode_to_vec();
    let mut frame = vec![0];
    frame.extend_from_slice(&u32::try_from(encoded.len()).unwrap().to_be_bytes());
    frame.extend_from_slice(&encoded);
    frame
}

/// A gRPC-Web response split into its data frames and its trailers.
struct GrpcWebReply {
    messages: Vec<Vec<u8>>,
    trailers: Vec<(String, String)>,
}

impl GrpcWebReply {
    /// Reads the body: frames with flag 0 carry messages, the frame with flag 0x80 carries
    /// the trailers as HTTP/1 header lines.
    async fn read(response: Response) -> Self {
        let mut body = &response.bytes().await.expect("read the gRPC-Web body")[..];
        let mut reply = GrpcWebReply { messages: Vec::new(), trailers: Vec::new() };
        while !body.is_empty() {
            assert!(body.len() >= 5, "truncated frame header");
            let flag = body[0];
            let length = u32::from_be_bytes(body[1..5].try_into().unwrap()) as usize;
            let payload = &body[5..5 + length];
            if flag & 0x80 == 0 {
                reply.messages.push(payload.to_vec());
            } else {
                for line in String::from_utf8_lossy(payload).split("\r\n").filter(|line| !line.is_empty()) {
                    let (name, value) = line.split_once(':').expect("trailer line has a colon");
                    reply.trailers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
                }
            }
            body = &body[5 + length..];
        }
        reply
    }

    fn trailer(&self, name: &str) -> Option<&str> {
        self.trailers.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str())
    }
}

async fn grpc_web_get(server: &TestServer, app_id: &str, id: &str, origin: Option<&str>) -> Response {
    let request = pb::ConnectorServiceGetRequest { app_id: app_id.to_owned(), id: id.to_owned() };
    let mut builder = server
        .http
        .post(server.url(GET_PATH))
        .header("content-type", "application/grpc-web+proto")
        .header("x-grpc-web", "1")
        .body(data_frame(&request));
    if let Some(origin) = origin {
        builder = builder.header("origin", origin);
    }
    builder.send().await.expect("send the gRPC-Web request")
}

/// Reads the grpc-status of a gRPC-Web response from its headers (trailers-only responses)
/// or from its trailer frame.
async fn grpc_status(response: Response) -> (String, GrpcWebReply) {
    let header_status = response.headers().get("grpc-status").map(|value| value.to_str().unwrap().to_owned());
    let reply = GrpcWebReply::read(response).await;
    let status =
        header_status.or_else(|| reply.trailer("grpc-status").map(str::to_owned)).expect("grpc-status in the headers or the trailers");
    (status, reply)
}

#[tokio::test]
async fn grpc_web_get_missing_is_not_found() {
    let server = TestServer::start().await;

    let response = grpc_web_get(&server, "app-1", "missing-1", None).await;

    assert_eq!(response.status(), 200, "gRPC-Web reports errors in grpc-status");
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("application/grpc-web"), "{:?}", response.headers());
    let (status, reply) = grpc_status(response).await;
    assert_eq!(status, (tonic::Code::NotFound as i32).to_string());
    assert!(reply.messages.is_empty());
    server.stop().await;
}

#[tokio::test]
async fn grpc_web_get_returns_the_connector() {
    let server = TestServer::start().await;
    let created = server.create_connector("app-1", "Browser").await;
    let id = created["id"].as_str().unwrap();

    let response = grpc_web_get(&server, "app-1", id, None).await;

    let (status, reply) = grpc_status(response).await;
    assert_eq!(status, "0");
    assert_eq!(reply.messages.len(), 1);
    let decoded = pb::ConnectorServiceGetResponse::decode(reply.messages[0].as_slice()).unwrap();
    assert_eq!(decoded.connector_view.unwrap().connector.unwrap().display_name, "Browser");
    server.stop().await;
}

#[tokio::test]
async fn cors_preflight_allows_configured_origin() {
    let server = TestServer::start_with_origins(&[ORIGIN]).await;

    let response = server
        .http
        .request(reqwest::Method::OPTIONS, server.url(GET_PATH))
        .header("origin", ORIGIN)
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type,x-grpc-web,x-user-agent")
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), 200);
    let headers = response.headers();
    assert_eq!(headers["access-control-allow-origin"], ORIGIN);
    let methods = headers["access-control-allow-methods"].to_str().unwrap();
    assert!(methods.contains("POST"), "{methods}");
    let allowed = headers["access-control-allow-headers"].to_str().unwrap();
    for header in ["content-type", "x-grpc-web", "x-user-agent"] {
        assert!(allowed.contains(header), "{header} missing from {allowed}");
    }
    server.stop().await;
}

#[tokio::test]
async fn cors_exposes_grpc_status_headers() {
    let server = TestServer::start_with_origins(&[ORIGIN]).await;

    let response = grpc_web_get(&server, "app-1", "missing-1", Some(ORIGIN)).await;

    let headers = response.headers();
    assert_eq!(headers["access-control-allow-origin"], ORIGIN);
    let exposed = headers["access-control-expose-headers"].to_str().unwrap();
    for header in ["grpc-status", "grpc-message", "grpc-status-details-bin"] {
        assert!(exposed.contains(header), "{header} missing from {exposed}");
    }
    let (status, _) = grpc_status(response).await;
    assert_eq!(status, (tonic::Code::NotFound as i32).to_string());
    server.stop().await;
}

#[tokio::test]
async fn cors_applies_to_rest_calls() {
    let server = TestServer::start_with_origins(&[ORIGIN]).await;

    let response = server.http.get(server.url("/api/v1/apps/app-1/connectors")).header("origin", ORIGIN).send().await.unwrap();

    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["access-control-allow-origin"], ORIGIN);
    server.stop().await;
}

#[tokio::test]
async fn cors_ignores_unlisted_origins() {
    let server = TestServer::start_with_origins(&[ORIGIN]).await;

    let response = grpc_web_get(&server, "app-1", "missing-1", Some("https://other.example")).await;

    assert!(response.headers().get("access-control-allow-origin").is_none(), "{:?}", response.headers());
    server.stop().await;
}

#[tokio::test]
async fn cors_is_off_without_origins() {
    let server = TestServer::start().await;

    let response = server
        .http
        .request(reqwest::Method::OPTIONS, server.url("/api/v1/apps/app-1/connectors"))
        .header("origin", ORIGIN)
        .header("access-control-request-method", "GET")
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), 405);
    assert!(response.headers().get("access-control-allow-origin").is_none());
    server.stop().await;
}
