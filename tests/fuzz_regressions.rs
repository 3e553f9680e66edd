//! Replays the fuzz inputs kept in `fuzz/regressions/<target>/` (inputs that once made a
//! check fail) and the seed inputs in `fuzz/seeds/<target>/` through the same checks that
//! the cargo-fuzz targets run, so a fixed fault stays fixed without a nightly toolchain.

#[path = "../fuzz/src/lib.rs"]
mod harness;

use std::path::{Path, PathBuf};

use prost::Message;

/// A fuzz target's name and the check it runs on each input.
type Target = (&'static str, fn(&[u8]));

const TARGETS: [Target; 5] = [
    ("rpc_request", harness::check_rpc),
    ("rest_json", harness::check_rest_json),
    ("update_mask", harness::check_update_mask),
    ("page_token", harness::check_page_token),
    ("config_any", harness::check_config_any),
];

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

/// Returns the contents of every file in `directory`, sorted by name; none if it is missing.
fn inputs(directory: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let Ok(entries) = std::fs::read_dir(directory) else { return Vec::new() };
    let mut paths: Vec<PathBuf> = entries.flatten().map(|entry| entry.path()).filter(|path| path.is_file()).collect();
    paths.sort();
    paths
        .into_iter()
        .map(|path| {
            let bytes = std::fs::read(&path).unwrap();
            (path, bytes)
        })
        .collect()
}

fn replay(kind: &str) -> usize {
    let mut replayed = 0;
    for (target, check) in TARGETS {
        for (path, bytes) in inputs(&fuzz_dir().join(kind).join(target)) {
            let outcome = std::panic::catch_unwind(|| check(&bytes));
            assert!(outcome.is_ok(), "{target} fails on {}", path.display());
            replayed += 1;
        }
    }
    replayed
}

#[test]
fn saved_crash_inputs_pass() {
    let replayed = replay("regressions");
    eprintln!("replayed {replayed} saved crash inputs");
}

#[test]
fn seed_inputs_pass() {
    let replayed = replay("seeds");
    assert!(replayed > 0, "no seed inputs under {}", fuzz_dir().join("seeds").display());
}

/// Writes the seed corpus: one valid request per RPC and a few inputs per other target.
/// Run it after changing the request messages: `cargo test --test fuzz_regressions -- --ignored`.
#[test]
#[ignore]
fn write_seed_inputs() {
    use connectord::pb;
    let app = harness::SEEDED_APP_ID.to_owned();
    let id = harness::SEEDED_CONNECTOR_ID.to_owned();
    let connector = pb::Connector { app_id: app.clone(), id: id.clone(), display_name: "renamed".into(), ..Default::default() };
    let mask = Some(prost_types::FieldMask { paths: vec!["display_name".into()] });
    let struct_config = prost_types::Any {
        type_url: "type.googleapis.com/google.protobuf.Struct".into(),
        value: prost_types::Struct {
            fields: [("region".to_owned(), prost_types::Value { kind: Some(prost_types::value::Kind::StringValue("eu".into())) })].into(),
        }
        .encode_to_vec(),
    };

    let requests: Vec<Vec<u8>> = vec![
        pb::ConnectorServiceCreateRequest {
            app_id: app.clone(),
            catalog_id: "okta".into(),
            display_name: "x".into(),
            config: Some(struct_config.clone()),
            request_id: "r1".into(),
            ..Default::default()
        }
        .encode_to_vec(),
        pb::ConnectorServiceCreateDelegatedRequest {
            app_id: app.clone(),
            catalog_id: "okta".into(),
            user_ids: vec!["u1".into()],
            ..Default::default()
        }
        .encode_to_vec(),
        pb::ConnectorServiceGetRequest { app_id: app.clone(), id: id.clone() }.encode_to_vec(),
        pb::ConnectorServiceListRequest { app_id: app.clone(), page_size: 1, page_token: String::new(), show_deleted: true }
            .encode_to_vec(),
        pb::ConnectorServiceUpdateRequest {
            connector: Some(pb::Connector { config: Some(struct_config), ..connector.clone() }),
            update_mask: mask.clone(),
            expand_mask: None,
        }
        .encode_to_vec(),
        pb::ConnectorServiceUpdateDelegatedRequest { connector: Some(connector.clone()), update_mask: mask, expand_mask: None }
            .encode_to_vec(),
        pb::ConnectorServiceDeleteRequest { app_id: app.clone(), id: id.clone(), etag: "\"1\"".into() }.encode_to_vec(),
        pb::ConnectorServiceGetCredentialsRequest { app_id: app.clone(), connector_id: id.clone(), id: "k1".into() }.encode_to_vec(),
        pb::ConnectorServiceRotateCredentialRequest { app_id: app.clone(), connector_id: id.clone() }.encode_to_vec(),
        pb::ConnectorServiceRevokeCredentialRequest { app_id: app.clone(), connector_id: id.clone(), id: "k1".into() }.encode_to_vec(),
        pb::ConnectorServiceForceSyncRequest { app_id: app.clone(), connector_id: id.clone(), ..Default::default() }.encode_to_vec(),
        pb::ConnectorServicePauseSyncRequest { app_id: app.clone(), connector_id: id.clone(), ..Default::default() }.encode_to_vec(),
        pb::ConnectorServiceResumeSyncRequest { app_id: app.clone(), connector_id: id.clone() }.encode_to_vec(),
        pb::ConnectorServiceUpdateConnectorScheduleRequest { app_id: app.clone(), connector_id: id.clone(), schedule: None }
            .encode_to_vec(),
        pb::ConnectorServiceConfirmSyncValidRequest { app_id: app.clone(), connector_id: id.clone(), sync_lifecycle_id: "s1".into() }
            .encode_to_vec(),
        pb::ConnectorServiceGetConnectorSyncDownloadUrlRequest { app_id: app.clone(), connector_id: id.clone(), sync_id: "s1".into() }
            .encode_to_vec(),
    ];

    let seeds = fuzz_dir().join("seeds");
    let write = |target: &str, name: &str, bytes: &[u8]| {
        let directory = seeds.join(target);
        std::fs::create_dir_all(&directory).unwrap();
        std::fs::write(directory.join(name), bytes).unwrap();
    };

    for (index, payload) in requests.iter().enumerate() {
        let mut input = vec![index as u8];
        input.extend_from_slice(payload);
        write("rpc_request", harness::RPC_NAMES[index], &input);
    }

    write("update_mask", "display_name", b"\x02display_name");
    write("update_mask", "camel_case_paths", b"\x0edisplayName,userIds,description");
    write("update_mask", "delegated_config", b"\x01config");
    write("update_mask", "star", b"\x7f*");

    let token = connectord::api::page_token::encode(&connectord::api::page_token::connector_scope("app", false), "01HZX0000");
    let mut input = vec![0, 3];
    input.extend_from_slice(b"app");
    input.extend_from_slice(token.as_bytes());
    write("page_token", "valid_token", &input);

    write("config_any", "struct", &[0, 0x0a, 0x0c, 0x0a, 0x01, b'k', 0x12, 0x07, 0x1a, 0x05, b'v', b'a', b'l', b'u', b'e']);
    write("config_any", "struct_number", &[0, 0x0a, 0x0e, 0x0a, 0x01, b'n', 0x12, 0x09, 0x11, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f]);
    write("config_any", "reflection_request", &[1, 0x3a, 0x03, b'a', b'.', b'B']);

    let rest_seeds: [(&str, u8, &str, &str); 6] = [
        (
            "create",
            0,
            "",
            r#"{"catalogId":"okta","displayName":"x","config":{"@type":"type.googleapis.com/google.protobuf.Struct","value":{"region":"eu"}}}"#,
        ),
        ("list", 3, "page_size=2&showDeleted=true", ""),
        ("update", 4, "update_mask=displayName,description", r#"{"connector":{"displayName":"y"}}"#),
        ("delete_with_etag", 6, "", r#"{"etag":"\"1\""}"#),
        ("schedule", 12, "", r#"{"schedule":{"cronSpec":"0 * * * *","timezone":"Europe/Paris"}}"#),
        ("list_syncs", 13, "state=STATE_PENDING", ""),
    ];
    for (name, route, query, body) in rest_seeds {
        let mut input = vec![route];
        input.extend_from_slice(query.as_bytes());
        input.push(0);
        input.extend_from_slice(body.as_bytes());
        write("rest_json", name, &input);
    }
}
