//! Fuzz checks for connectord's request decoding and validation, shared by the cargo-fuzz
//! targets in `fuzz_targets/` and by `tests/fuzz_regressions.rs`, which replays saved inputs
//! as a normal test. Each check takes raw bytes and panics when an invariant of one part of
//! the edge fails.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex, OnceLock},
};

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use connectord::{
    admission::{AdmissionLayer, AdmissionLimits},
    api::{page_token, validate::id_problem},
    domain::{ConfigTypes, Connector, ConnectorKey, ConnectorStatus, Credential, SyncRun, SyncState, config_types::TYPE_URL_PREFIX},
    gateway::{EdgeLayer, EdgeOptions},
    limits::ResourceExhaustedLayer,
    pb,
    server::ServicesBuilder,
    store::{Batch, Inserted, Store, StoreError},
};
use http_body_util::{BodyExt, Full};
use prost::Message;
use tonic::{Code, body::Body, service::Routes};
use tower::{Layer, ServiceExt};

/// App and id of the connector that every RPC check starts with, so inputs can reach the
/// logic behind the lookups.
pub const SEEDED_APP_ID: &str = "app";
pub const SEEDED_CONNECTOR_ID: &str = "c1";

/// Every `ConnectorService` RPC, indexed by the first input byte of [`check_rpc`].
pub const RPC_NAMES: [&str; 16] = [
    "Create",
    "CreateDelegated",
    "Get",
    "List",
    "Update",
    "UpdateDelegated",
    "Delete",
    "GetCredentials",
    "RotateCredential",
    "RevokeCredential",
    "ForceSync",
    "PauseSync",
    "ResumeSync",
    "UpdateConnectorSchedule",
    "ConfirmSyncValid",
    "GetConnectorSyncDownloadURL",
];

/// Returns whether `payload` decodes as the request message of RPC `index`.
fn decodes_as_request(index: usize, payload: &[u8]) -> bool {
    match index {
        0 => pb::ConnectorServiceCreateRequest::decode(payload).is_ok(),
        1 => pb::ConnectorServiceCreateDelegatedRequest::decode(payload).is_ok(),
        2 => pb::ConnectorServiceGetRequest::decode(payload).is_ok(),
        3 => pb::ConnectorServiceListRequest::decode(payload).is_ok(),
        4 => pb::ConnectorServiceUpdateRequest::decode(payload).is_ok(),
        5 => pb::ConnectorServiceUpdateDelegatedRequest::decode(payload).is_ok(),
        6 => pb::ConnectorServiceDeleteRequest::decode(payload).is_ok(),
        7 => pb::ConnectorServiceGetCredentialsRequest::decode(payload).is_ok(),
        8 => pb::ConnectorServiceRotateCredentialRequest::decode(payload).is_ok(),
        9 => pb::ConnectorServiceRevokeCredentialRequest::decode(payload).is_ok(),
        10 => pb::ConnectorServiceForceSyncRequest::decode(payload).is_ok(),
        11 => pb::ConnectorServicePauseSyncRequest::decode(payload).is_ok(),
        12 => pb::ConnectorServiceResumeSyncRequest::decode(payload).is_ok(),
        13 => pb::ConnectorServiceUpdateConnectorScheduleRequest::decode(payload).is_ok(),
        14 => pb::ConnectorServiceConfirmSyncValidRequest::decode(payload).is_ok(),
        15 => pb::ConnectorServiceGetConnectorSyncDownloadUrlRequest::decode(payload).is_ok(),
        _ => false,
    }
}

/// Sends `data` to one RPC of the real service stack (size-limit rewrite, admission,
/// routes) over an in-memory store.
///
/// Input layout: byte 0 picks the RPC (low 4 bits) and whether the rest is the raw request
/// body (bit 7) or a message that the check frames itself.
///
/// Invariants:
/// - the response carries a valid `grpc-status`;
/// - the status message and error details stay small enough for HTTP/2 header limits;
/// - a well-framed message that decodes as the RPC's request never gets `UNKNOWN` or
///   `INTERNAL`.
pub fn check_rpc(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else { return };
    let index = usize::from(selector & 0x0f);
    let raw_body = selector & 0x80 != 0;
    let body = if raw_body { rest.to_vec() } else { grpc_frame(rest) };
    let well_formed = !raw_body && decodes_as_request(index, rest);

    let (code, message, details_len) = call(index, body);

    assert!(message.len() <= 4096, "{} returned a status message of {} bytes", RPC_NAMES[index], message.len());
    assert!(details_len <= 16 * 1024, "{} returned {} bytes of error details", RPC_NAMES[index], details_len);
    if well_formed {
        assert!(!matches!(code, Code::Unknown | Code::Internal), "{} answered a valid request with {code:?}: {message}", RPC_NAMES[index]);
    }
}

/// Sends an Update or UpdateDelegated for the seeded connector built from `data`.
///
/// Input layout: byte 0 bit 0 picks UpdateDelegated, bits 1 to 7 set connector fields;
/// the rest is the mask, paths separated by commas.
///
/// Invariants:
/// - the status is `OK` or `INVALID_ARGUMENT`;
/// - a rejected mask names its fields in the `BadRequest` details;
/// - an accepted update keeps the immutable fields.
pub fn check_update_mask(data: &[u8]) {
    let Some((&flags, rest)) = data.split_first() else { return };
    let delegated = flags & 1 != 0;
    let Ok(mask_text) = std::str::from_utf8(rest) else { return };
    let paths: Vec<String> = if mask_text.is_empty() { Vec::new() } else { mask_text.split(',').map(str::to_owned).collect() };

    let connector = pb::Connector {
        app_id: SEEDED_APP_ID.to_owned(),
        id: SEEDED_CONNECTOR_ID.to_owned(),
        display_name: if flags & 2 != 0 { "renamed".to_owned() } else { String::new() },
        description: if flags & 4 != 0 { "described".to_owned() } else { String::new() },
        user_ids: if flags & 8 != 0 { vec!["owner-1".to_owned()] } else { Vec::new() },
        catalog_id: if flags & 16 != 0 { "other-catalog".to_owned() } else { String::new() },
        profile_allow_list: if flags & 32 != 0 { vec!["email".to_owned()] } else { Vec::new() },
        disable_check_bad_sync: flags & 64 != 0,
        sync_config: (flags & 128 != 0).then(|| pb::SyncConfig { sync_resource_type_ids: vec!["user".to_owned()] }),
        ..Default::default()
    };
    let update_mask = Some(prost_types::FieldMask { paths });
    let (index, payload) = if delegated {
        (5, pb::ConnectorServiceUpdateDelegatedRequest { connector: Some(connector), update_mask, expand_mask: None }.encode_to_vec())
    } else {
        (4, pb::ConnectorServiceUpdateRequest { connector: Some(connector), update_mask, expand_mask: None }.encode_to_vec())
    };

    let response = call_full(index, grpc_frame(&payload));
    match response.code {
        Code::Ok => {
            let connector = response.connector.expect("a successful update returns the connector");
            assert_eq!(connector.id, SEEDED_CONNECTOR_ID);
            assert_eq!(connector.app_id, SEEDED_APP_ID);
            assert_eq!(connector.catalog_id, "catalog", "an update changed the immutable catalog_id");
        }
        Code::InvalidArgument => {
            assert!(response.violation_fields > 0, "INVALID_ARGUMENT without field violations: {}", response.message);
        }
        other => panic!("an update mask caused {other:?}: {}", response.message),
    }
}

/// Decodes `data` as a page token and checks that tokens round-trip.
///
/// Input layout: byte 0 bit 0 is `show_deleted`, byte 1 is the length of the app id that
/// follows, and the rest is the token text.
///
/// Invariants:
/// - decoding never panics, and an accepted token yields a valid id;
/// - a token encoded for a valid id decodes to the same id;
/// - that token is foreign to other apps.
pub fn check_page_token(data: &[u8]) {
    let [flags, app_len, rest @ ..] = data else { return };
    let include_deleted = flags & 1 != 0;
    let app_len = usize::from(*app_len).min(rest.len());
    let (app, token) = rest.split_at(app_len);
    let (Ok(app), Ok(token)) = (std::str::from_utf8(app), std::str::from_utf8(token)) else { return };

    let scope = page_token::connector_scope(app, include_deleted);
    if let Ok(after_id) = page_token::decode(token, &scope) {
        assert!(id_problem(&after_id).is_none(), "decoded an invalid id {after_id:?}");
    }

    // Round trip with the token text used as an id, when it is one.
    if id_problem(token).is_none() {
        let encoded = page_token::encode(&scope, token);
        assert_eq!(page_token::decode(&encoded, &scope).as_deref(), Ok(token));
        let other_app = page_token::connector_scope(&format!("{app}-other"), include_deleted);
        assert_eq!(page_token::decode(&encoded, &other_app), Err(page_token::PageTokenError::Foreign));
        let other_filter = page_token::connector_scope(app, !include_deleted);
        assert_eq!(page_token::decode(&encoded, &other_filter), Err(page_token::PageTokenError::Foreign));
    }
}

/// REST routes tried by [`check_rest_json`], on the seeded connector where a route names one.
pub const REST_ROUTES: [(&str, &str); 16] = [
    ("POST", "/api/v1/apps/app/connectors/create"),
    ("POST", "/api/v1/apps/app/connectors"),
    ("GET", "/api/v1/apps/app/connectors/c1"),
    ("GET", "/api/v1/apps/app/connectors"),
    ("POST", "/api/v1/apps/app/connectors/c1"),
    ("POST", "/api/v1/apps/app/connectors/c1/delegated"),
    ("DELETE", "/api/v1/apps/app/connectors/c1"),
    ("POST", "/api/v1/apps/app/connectors/c1/credentials"),
    ("POST", "/api/v1/apps/connectors/credentials"),
    ("POST", "/api/v1/apps/app/connectors/c1/force_sync"),
    ("POST", "/api/v1/apps/app/connectors/c1/pause"),
    ("POST", "/api/v1/apps/app/connectors/c1/resume"),
    ("POST", "/api/v1/apps/app/connectors/c1/schedule"),
    ("GET", "/api/v1/apps/app/connectors/c1/syncs"),
    ("POST", "/api/v1/apps/app/connectors/c1/syncs/claim"),
    ("GET", "/api/v1/apps/app/connectors/c1/credentials"),
];

/// Sends `data` as a REST/JSON request through the HTTP edge and the service stack.
///
/// Input layout: byte 0 picks the route (low 4 bits). The rest up to the first zero byte is
/// the query string; what follows it is the JSON body.
///
/// Invariants:
/// - client input never gets HTTP 500, which stands for `INTERNAL` and `UNKNOWN`;
/// - every response is JSON with `Content-Type: application/json`;
/// - an error response is a `google.rpc.Status` with a numeric `code` and a `message`.
pub fn check_rest_json(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else { return };
    let (method, path) = REST_ROUTES[usize::from(selector & 0x0f)];
    let (query, body) = match rest.iter().position(|byte| *byte == 0) {
        Some(split) => (&rest[..split], &rest[split + 1..]),
        None => (rest, &[][..]),
    };
    let Ok(query) = std::str::from_utf8(query) else { return };
    let uri = if query.is_empty() { format!("http://localhost{path}") } else { format!("http://localhost{path}?{query}") };
    // The HTTP layer rejects URIs that do not parse, so the gateway never receives them.
    let Ok(uri) = uri.parse::<http::Uri>() else { return };

    let harness = harness();
    harness.store.reset();
    let request = http::Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json")
        .body(Body::new(Full::new(Bytes::copy_from_slice(body))))
        .unwrap();
    let inner = ResourceExhaustedLayer.layer(AdmissionLayer::new(AdmissionLimits::default()).layer(harness.routes.clone()));
    let service = harness.edge.layer(inner);

    harness.runtime.block_on(async move {
        let response = service.oneshot(request).await.expect("the edge is infallible");
        let status = response.status();
        let content_type = response.headers().get("content-type").and_then(|value| value.to_str().ok()).unwrap_or_default().to_owned();
        let bytes = response.into_body().collect().await.expect("response body").to_bytes();
        let text = String::from_utf8_lossy(&bytes);
        assert_ne!(status, http::StatusCode::INTERNAL_SERVER_ERROR, "{method} {path}: HTTP 500 with {text}");
        assert!(content_type.starts_with("application/json"), "{method} {path}: HTTP {status} with content type {content_type:?}: {text}");
        let json: serde_json::Value =
            serde_json::from_slice(&bytes).unwrap_or_else(|error| panic!("{method} {path}: body is not JSON ({error}): {text}"));
        if !status.is_success() {
            assert!(json.get("code").is_some_and(serde_json::Value::is_number), "{method} {path}: error without a numeric code: {text}");
            assert!(json.get("message").is_some_and(serde_json::Value::is_string), "{method} {path}: error without a message: {text}");
        }
    });
}

/// Type URLs tried by [`check_config_any`]: registered types, and malformed ones.
const CONFIG_TYPE_URLS: [&str; 10] = [
    "type.googleapis.com/google.protobuf.Struct",
    "type.googleapis.com/grpc.reflection.v1.ServerReflectionRequest",
    "type.googleapis.com/grpc.reflection.v1.ServerReflectionResponse",
    "type.googleapis.com/grpc.health.v1.HealthCheckResponse",
    "example.com/google.protobuf.Struct",
    "type.googleapis.com/",
    "google.protobuf.Struct",
    "/google.protobuf.Struct",
    "type.googleapis.com/google.protobuf.Value",
    "type.googleapis.com/grpc.reflection.v1.Unknown",
];

fn config_types() -> &'static ConfigTypes {
    static TYPES: OnceLock<ConfigTypes> = OnceLock::new();
    TYPES.get_or_init(|| {
        let mut types = ConfigTypes::new(pb::FILE_DESCRIPTOR_SET).expect("built-in descriptor set");
        types.register_descriptor_set("reflection", tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET).expect("reflection descriptor set");
        types.register_descriptor_set("health", tonic_health::pb::FILE_DESCRIPTOR_SET).expect("health descriptor set");
        types
    })
}

/// Validates `data` as a config payload.
///
/// Input layout: byte 0 picks a type URL from a fixed list. When it is 0xff, the type URL
/// is the text up to the first zero byte instead. The rest is the payload.
///
/// Invariants:
/// - validation never panics;
/// - an accepted config has a canonical type URL and the unchanged payload;
/// - an accepted payload decodes without unknown fields and can be written as JSON, which
///   grpcurl and the REST gateway need.
pub fn check_config_any(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else { return };
    let (type_url, value) = if selector == 0xff {
        let end = rest.iter().position(|&byte| byte == 0).unwrap_or(rest.len());
        let Ok(type_url) = std::str::from_utf8(&rest[..end]) else { return };
        (type_url.to_owned(), &rest[(end + 1).min(rest.len())..])
    } else {
        (CONFIG_TYPE_URLS[usize::from(selector) % CONFIG_TYPE_URLS.len()].to_owned(), rest)
    };

    let Ok(config) = config_types().validate(&type_url, value, 64 * 1024) else { return };

    assert!(config.type_url.starts_with(TYPE_URL_PREFIX), "{}", config.type_url);
    assert_eq!(config.type_url, type_url, "only canonical type URLs are accepted");
    assert_eq!(config.value, value);
    let name = &config.type_url[TYPE_URL_PREFIX.len()..];
    let descriptor = reference_pool().get_message_by_name(name).expect("accepted type is in a registered descriptor set");
    let message = prost_reflect::DynamicMessage::decode(descriptor, value).expect("accepted payload decodes");
    if let Err(error) = serde_json::to_string(&message) {
        panic!("accepted config of type {name} cannot be written as JSON: {error}");
    }
}

/// Descriptors of every registered config type, kept apart from [`ConfigTypes`] so the
/// check does not rely on the code it checks.
fn reference_pool() -> &'static prost_reflect::DescriptorPool {
    static POOL: OnceLock<prost_reflect::DescriptorPool> = OnceLock::new();
    POOL.get_or_init(|| {
        let mut pool = prost_reflect::DescriptorPool::decode(pb::FILE_DESCRIPTOR_SET).expect("built-in descriptor set");
        pool.decode_file_descriptor_set(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET).expect("reflection descriptor set");
        pool.decode_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET).expect("health descriptor set");
        pool
    })
}

fn grpc_frame(payload: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(payload.len() + 5);
    frame.push(0);
    frame.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    frame.extend_from_slice(payload);
    frame
}

struct Harness {
    runtime: tokio::runtime::Runtime,
    routes: Routes,
    store: Arc<MemoryStore>,
    edge: EdgeLayer,
}

fn harness() -> &'static Harness {
    static HARNESS: OnceLock<Harness> = OnceLock::new();
    HARNESS.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let store = Arc::new(MemoryStore::default());
        let services = ServicesBuilder::new(store.clone()).expect("services").build().expect("services");
        let edge = EdgeLayer::new(
            services.descriptor_pool.clone(),
            &EdgeOptions {
                rest_services: vec![
                    pb::connector_service_server::SERVICE_NAME.to_owned(),
                    pb::connector_sync_service_server::SERVICE_NAME.to_owned(),
                ],
                cors_allow_origins: Vec::new(),
                max_body_bytes: connectord::server::MAX_MESSAGE_BYTES,
                auth: connectord::auth::AuthPolicy::disabled(),
            },
        )
        .expect("edge layer");
        Harness { runtime, routes: services.into_routes().prepare(), store, edge }
    })
}

struct CallResult {
    code: Code,
    message: String,
    details_len: usize,
    violation_fields: usize,
    connector: Option<pb::Connector>,
}

fn call(index: usize, body: Vec<u8>) -> (Code, String, usize) {
    let result = call_full(index, body);
    (result.code, result.message, result.details_len)
}

fn call_full(index: usize, body: Vec<u8>) -> CallResult {
    let harness = harness();
    harness.store.reset();
    let request = http::Request::builder()
        .method("POST")
        .uri(format!("http://localhost/connectord.v1.ConnectorService/{}", RPC_NAMES[index]))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(Body::new(Full::new(Bytes::from(body))))
        .unwrap();
    let service = ResourceExhaustedLayer.layer(AdmissionLayer::new(AdmissionLimits::default()).layer(harness.routes.clone()));

    harness.runtime.block_on(async move {
        let response = service.oneshot(request).await.expect("routes are infallible");
        let (parts, body) = response.into_parts();
        let collected = body.collect().await.expect("response body");
        let trailers = collected.trailers().cloned();
        let data = collected.to_bytes();
        let headers =
            if parts.headers.contains_key("grpc-status") { parts.headers } else { trailers.expect("grpc-status in headers or trailers") };

        let code = headers.get("grpc-status").expect("grpc-status").to_str().unwrap().parse::<i32>().expect("numeric grpc-status");
        let code = Code::from_i32(code);
        assert!(code != Code::Unknown || headers.get("grpc-status").unwrap() == "2", "unparsable status");
        let message = headers.get("grpc-message").map(|value| value.to_str().unwrap_or_default().to_owned()).unwrap_or_default();
        let details = headers.get("grpc-status-details-bin").map(|value| value.len()).unwrap_or(0);
        let status = tonic::Status::from_header_map(&headers);
        let violation_fields = status
            .as_ref()
            .map(|status| {
                use tonic_types::StatusExt;
                status.get_details_bad_request().map_or(0, |bad_request| {
                    assert!(
                        bad_request.field_violations.iter().all(|violation| !violation.field.is_empty()),
                        "a violation without a field"
                    );
                    bad_request.field_violations.len()
                })
            })
            .unwrap_or(0);
        let connector = (code == Code::Ok && data.len() >= 5)
            .then(|| pb::ConnectorServiceUpdateResponse::decode(&data[5..]).ok())
            .flatten()
            .and_then(|response| response.connector_view)
            .and_then(|view| view.connector);
        CallResult { code, message, details_len: details, violation_fields, connector }
    })
}

/// In-memory [`Store`] that starts every check with one seeded connector. It keeps the
/// revision checks of [`Store::apply`], so conflicting writes fail as they do on disk. The
/// background timers never run in the harness, so leases and schedules stay empty.
#[derive(Default)]
struct MemoryStore {
    state: Mutex<MemoryState>,
}

#[derive(Default)]
struct MemoryState {
    connectors: BTreeMap<(String, String), Connector>,
    request_ids: BTreeMap<(String, String), String>,
    syncs: BTreeMap<(String, String, String), SyncRun>,
    credentials: BTreeMap<(String, String, String), Credential>,
}

fn child_key(key: &ConnectorKey, id: &str) -> (String, String, String) {
    (key.app_id.clone(), key.id.clone(), id.to_owned())
}

fn check_revision(stored: Option<u64>, expected: Option<u64>, what: &str) -> Result<(), StoreError> {
    match (stored, expected) {
        (None, None) => Ok(()),
        (Some(stored), Some(expected)) if stored == expected => Ok(()),
        _ => Err(StoreError::Conflict(format!("{what} was changed by another write"))),
    }
}

impl MemoryStore {
    fn reset(&self) {
        let now = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let seeded = Connector {
            id: SEEDED_CONNECTOR_ID.to_owned(),
            app_id: SEEDED_APP_ID.to_owned(),
            catalog_id: "catalog".to_owned(),
            display_name: "seeded".to_owned(),
            description: String::new(),
            user_ids: Vec::new(),
            config: None,
            status: ConnectorStatus::default(),
            oauth_authorized_as: None,
            download_url: String::new(),
            created_at: now,
            updated_at: now,
            deleted_at: None,
            sync_resource_type_ids: None,
            profile_allow_list: Vec::new(),
            profile_ignore_list: Vec::new(),
            disable_check_bad_sync: false,
            can_resume_sync: false,
            sync_disabled: None,
            schedule: None,
            secret_salt: vec![7; 16],
            revision: 1,
            etag_revision: 1,
        };
        let mut state = self.state.lock().unwrap();
        *state = MemoryState::default();
        state.connectors.insert((seeded.app_id.clone(), seeded.id.clone()), seeded);
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn insert_connector(&self, connector: &Connector, request_id: Option<&str>) -> Result<Inserted, StoreError> {
        let mut state = self.state.lock().unwrap();
        if let Some(request_id) = request_id {
            let key = (connector.app_id.clone(), request_id.to_owned());
            if let Some(existing) = state.request_ids.get(&key) {
                let existing = state.connectors[&(connector.app_id.clone(), existing.clone())].clone();
                return Ok(Inserted::Replayed(existing));
            }
            state.request_ids.insert(key, connector.id.clone());
        }
        state.connectors.insert((connector.app_id.clone(), connector.id.clone()), connector.clone());
        Ok(Inserted::Created)
    }

    async fn get_connector(&self, key: &ConnectorKey) -> Result<Option<Connector>, StoreError> {
        Ok(self.state.lock().unwrap().connectors.get(&(key.app_id.clone(), key.id.clone())).cloned())
    }

    async fn list_connectors(
        &self,
        app_id: &str,
        after_id: Option<&str>,
        limit: usize,
        include_deleted: bool,
    ) -> Result<Vec<Connector>, StoreError> {
        let state = self.state.lock().unwrap();
        Ok(state
            .connectors
            .values()
            .filter(|connector| connector.app_id == app_id)
            .filter(|connector| after_id.is_none_or(|after| connector.id.as_str() > after))
            .filter(|connector| include_deleted || connector.deleted_at.is_none())
            .take(limit)
            .cloned()
            .collect())
    }

    async fn apply(&self, batch: &Batch) -> Result<(), StoreError> {
        let mut state = self.state.lock().unwrap();
        // Checks every revision first, so a conflict writes nothing.
        if let Some(write) = &batch.connector {
            let key = (write.record.app_id.clone(), write.record.id.clone());
            check_revision(state.connectors.get(&key).map(|stored| stored.revision), write.expected_revision, "connector")?;
        }
        for write in &batch.syncs {
            let key = child_key(&ConnectorKey::new(write.record.app_id.clone(), write.record.connector_id.clone()), &write.record.id);
            check_revision(state.syncs.get(&key).map(|stored| stored.revision), write.expected_revision, "sync")?;
        }
        for write in &batch.credentials {
            let key = child_key(&ConnectorKey::new(write.record.app_id.clone(), write.record.connector_id.clone()), &write.record.id);
            check_revision(state.credentials.get(&key).map(|stored| stored.revision), write.expected_revision, "credential")?;
        }
        if let Some(write) = &batch.connector {
            state.connectors.insert((write.record.app_id.clone(), write.record.id.clone()), write.record.clone());
        }
        for write in &batch.syncs {
            state.syncs.insert(
                child_key(&ConnectorKey::new(write.record.app_id.clone(), write.record.connector_id.clone()), &write.record.id),
                write.record.clone(),
            );
        }
        for write in &batch.credentials {
            state.credentials.insert(
                child_key(&ConnectorKey::new(write.record.app_id.clone(), write.record.connector_id.clone()), &write.record.id),
                write.record.clone(),
            );
        }
        Ok(())
    }

    async fn get_sync(&self, key: &ConnectorKey, sync_id: &str) -> Result<Option<SyncRun>, StoreError> {
        Ok(self.state.lock().unwrap().syncs.get(&child_key(key, sync_id)).cloned())
    }

    async fn list_syncs(
        &self,
        key: &ConnectorKey,
        before_id: Option<&str>,
        limit: usize,
        state_filter: Option<SyncState>,
    ) -> Result<Vec<SyncRun>, StoreError> {
        let state = self.state.lock().unwrap();
        Ok(state
            .syncs
            .values()
            .rev()
            .filter(|sync| sync.app_id == key.app_id && sync.connector_id == key.id)
            .filter(|sync| before_id.is_none_or(|before| sync.id.as_str() < before))
            .filter(|sync| state_filter.is_none_or(|wanted| sync.state == wanted))
            .take(limit)
            .cloned()
            .collect())
    }

    async fn pending_sync(&self, key: &ConnectorKey) -> Result<Option<SyncRun>, StoreError> {
        let state = self.state.lock().unwrap();
        Ok(state
            .syncs
            .values()
            .find(|sync| sync.app_id == key.app_id && sync.connector_id == key.id && sync.state == SyncState::Pending)
            .cloned())
    }

    async fn find_sync_by_request_id(&self, key: &ConnectorKey, request_id: &str) -> Result<Option<SyncRun>, StoreError> {
        let state = self.state.lock().unwrap();
        Ok(state
            .syncs
            .values()
            .find(|sync| sync.app_id == key.app_id && sync.connector_id == key.id && sync.request_id.as_deref() == Some(request_id))
            .cloned())
    }

    async fn expired_leases(&self, _now: DateTime<Utc>, _limit: usize) -> Result<Vec<SyncRun>, StoreError> {
        Ok(Vec::new())
    }

    async fn due_schedules(&self, _now: DateTime<Utc>, _limit: usize) -> Result<Vec<ConnectorKey>, StoreError> {
        Ok(Vec::new())
    }

    async fn get_credential(&self, key: &ConnectorKey, credential_id: &str) -> Result<Option<Credential>, StoreError> {
        Ok(self.state.lock().unwrap().credentials.get(&child_key(key, credential_id)).cloned())
    }

    async fn list_credentials(&self, key: &ConnectorKey, before_id: Option<&str>, limit: usize) -> Result<Vec<Credential>, StoreError> {
        let state = self.state.lock().unwrap();
        Ok(state
            .credentials
            .values()
            .rev()
            .filter(|credential| credential.app_id == key.app_id && credential.connector_id == key.id)
            .filter(|credential| before_id.is_none_or(|before| credential.id.as_str() < before))
            .take(limit)
            .cloned()
            .collect())
    }

    async fn find_credential(&self, client_id: &str) -> Result<Option<Credential>, StoreError> {
        let state = self.state.lock().unwrap();
        Ok(state.credentials.values().find(|credential| credential.client_id == client_id).cloned())
    }

    async fn purge_request_ids(&self, _cutoff: DateTime<Utc>) -> Result<usize, StoreError> {
        Ok(0)
    }

    async fn close(&self) -> Result<(), StoreError> {
        Ok(())
    }
}
