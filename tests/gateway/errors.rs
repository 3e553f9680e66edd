//! REST error responses: the HTTP status of each gRPC code the server returns, the JSON
//! `google.rpc.Status` body, and the errors that the gateway raises itself.

use serde_json::json;
use tonic::Code;

use crate::support::{TestServer, expect_error, expect_ok, first_violation};

#[tokio::test]
async fn invalid_id_is_400_with_bad_request_details() {
    let server = TestServer::start().await;

    let response = server.get("/api/v1/apps/not%20valid/connectors/c1").await;

    let body = expect_error(response, 400, Code::InvalidArgument).await;
    let violation = first_violation(&body);
    assert_eq!(violation["field"], "app_id");
    assert!(violation["description"].as_str().unwrap().contains("[A-Za-z0-9_-]"), "{body}");
    server.stop().await;
}

#[tokio::test]
async fn missing_connector_is_404() {
    let server = TestServer::start().await;

    let response = server.get("/api/v1/apps/app-1/connectors/missing-1").await;

    let body = expect_error(response, 404, Code::NotFound).await;
    assert!(body["message"].as_str().unwrap().contains("missing-1"), "{body}");
    server.stop().await;
}

#[tokio::test]
async fn deleting_twice_is_404() {
    let server = TestServer::start().await;
    let connector = server.create_connector("app-1", "Once").await;
    let url = server.url(&format!("/api/v1/apps/app-1/connectors/{}", connector["id"].as_str().unwrap()));
    expect_ok(server.http.delete(&url).send().await.unwrap()).await;

    let response = server.http.delete(&url).json(&json!({})).send().await.unwrap();

    expect_error(response, 404, Code::NotFound).await;
    server.stop().await;
}

#[tokio::test]
async fn updating_deleted_connector_is_400_failed_precondition() {
    let server = TestServer::start().await;
    let connector = server.create_connector("app-1", "Gone").await;
    let path = format!("/api/v1/apps/app-1/connectors/{}", connector["id"].as_str().unwrap());
    expect_ok(server.http.delete(server.url(&path)).send().await.unwrap()).await;

    let response = server.post(&path, json!({"connector": {"displayName": "Back"}})).await;

    expect_error(response, 400, Code::FailedPrecondition).await;
    server.stop().await;
}

#[tokio::test]
async fn stale_etag_is_409_aborted() {
    let server = TestServer::start().await;
    let connector = server.create_connector("app-1", "Contested").await;
    let path = format!("/api/v1/apps/app-1/connectors/{}", connector["id"].as_str().unwrap());
    let stale = connector["etag"].clone();
    expect_ok(server.post(&path, json!({"connector": {"displayName": "First write"}})).await).await;

    let response =
        server.post(&path, json!({"connector": {"displayName": "Second write", "etag": stale}, "updateMask": "displayName"})).await;

    expect_error(response, 409, Code::Aborted).await;
    server.stop().await;
}

#[tokio::test]
async fn unknown_mask_path_is_named() {
    let server = TestServer::start().await;
    let connector = server.create_connector("app-1", "Masked").await;
    let path = format!("/api/v1/apps/app-1/connectors/{}", connector["id"].as_str().unwrap());

    let response = server.post(&path, json!({"connector": {"displayName": "x"}, "updateMask": "displayName,colour"})).await;

    let body = expect_error(response, 400, Code::InvalidArgument).await;
    assert_eq!(first_violation(&body)["field"], "update_mask.paths[1]");
    server.stop().await;
}

#[tokio::test]
async fn negative_page_size_is_400() {
    let server = TestServer::start().await;

    let response = server.get("/api/v1/apps/app-1/connectors?pageSize=-1").await;

    let body = expect_error(response, 400, Code::InvalidArgument).await;
    assert_eq!(first_violation(&body)["field"], "page_size");
    server.stop().await;
}

#[tokio::test]
async fn unparsable_query_value_is_400_naming_the_field() {
    let server = TestServer::start().await;

    let response = server.get("/api/v1/apps/app-1/connectors?page_size=lots").await;

    let body = expect_error(response, 400, Code::InvalidArgument).await;
    let violation = first_violation(&body);
    assert_eq!(violation["field"], "page_size");
    assert!(violation["description"].as_str().unwrap().contains("\"lots\""), "{body}");
    server.stop().await;
}

#[tokio::test]
async fn malformed_json_is_400_naming_the_problem() {
    let server = TestServer::start().await;

    let response = server.post_raw("/api/v1/apps/app-1/connectors/create", r#"{"catalogId": "okta", "#).await;

    let body = expect_error(response, 400, Code::InvalidArgument).await;
    let message = body["message"].as_str().unwrap();
    assert!(message.contains("not valid JSON"), "{message}");
    assert!(message.contains("line 1"), "{message}");
    server.stop().await;
}

#[tokio::test]
async fn wrongly_typed_json_is_400() {
    let server = TestServer::start().await;

    let response = server.post("/api/v1/apps/app-1/connectors/create", json!({"userIds": "not-a-list"})).await;

    let body = expect_error(response, 400, Code::InvalidArgument).await;
    let violation = first_violation(&body);
    assert_eq!(violation["field"], "userIds");
    assert!(violation["description"].as_str().unwrap().contains("list"), "{body}");
    server.stop().await;
}

#[tokio::test]
async fn wrongly_typed_nested_json_names_its_path() {
    let server = TestServer::start().await;
    let connector = server.create_connector("app-1", "Typed").await;
    let id = connector["id"].as_str().unwrap();
    let body = json!({"connector": {"displayName": 5}, "updateMask": "displayName"});

    let response = server.post(&format!("/api/v1/apps/app-1/connectors/{id}"), body).await;

    let body = expect_error(response, 400, Code::InvalidArgument).await;
    assert_eq!(first_violation(&body)["field"], "connector.displayName");
    assert!(body["message"].as_str().unwrap().starts_with("connector.displayName: "), "{body}");
    server.stop().await;
}

#[tokio::test]
async fn body_of_wrong_shape_names_the_message() {
    let server = TestServer::start().await;

    let response = server.post("/api/v1/apps/app-1/connectors/create", json!(["not", "an", "object"])).await;

    let body = expect_error(response, 400, Code::InvalidArgument).await;
    assert!(body["message"].as_str().unwrap().contains("ConnectorServiceCreateRequest"), "{body}");
    server.stop().await;
}

#[tokio::test]
async fn unregistered_any_type_is_400() {
    let server = TestServer::start().await;
    let body = json!({"catalogId": "okta", "config": {"@type": "type.googleapis.com/acme.Missing", "x": 1}});

    let response = server.post("/api/v1/apps/app-1/connectors/create", body).await;

    let body = expect_error(response, 400, Code::InvalidArgument).await;
    assert!(body["message"].as_str().unwrap().contains("acme.Missing"), "{body}");
    server.stop().await;
}

#[tokio::test]
async fn body_over_limit_is_413() {
    let server = TestServer::start().await;
    let oversized = format!(r#"{{"description": "{}"}}"#, "x".repeat(4 * 1024 * 1024));

    let response = server.post_raw("/api/v1/apps/app-1/connectors/create", oversized).await;

    expect_error(response, 413, Code::ResourceExhausted).await;
    server.stop().await;
}

#[tokio::test]
async fn unknown_path_is_404_json() {
    let server = TestServer::start().await;

    let unknown = server.get("/api/v2/anything").await;
    let grpc_path_as_json = server.post("/connectord.v1.ConnectorService/Get", json!({})).await;

    let body = expect_error(unknown, 404, Code::NotFound).await;
    assert!(body["message"].as_str().unwrap().contains("/api/v2/anything"), "{body}");
    expect_error(grpc_path_as_json, 404, Code::NotFound).await;
    server.stop().await;
}

#[tokio::test]
async fn wrong_method_is_405_with_allow() {
    let server = TestServer::start().await;

    let response = server.http.put(server.url("/api/v1/apps/app-1/connectors/c1")).send().await.unwrap();

    let allow = response.headers().get("allow").map(|value| value.to_str().unwrap().to_owned());
    expect_error(response, 405, Code::Unimplemented).await;
    assert_eq!(allow.as_deref(), Some("GET, POST, DELETE"));
    server.stop().await;
}

// NOTE: the credential and sync RPCs still return UNIMPLEMENTED. Once they are implemented,
// these cases check their real results instead of the 501 mapping.
#[tokio::test]
async fn lifecycle_routes_of_missing_connector_are_404() {
    let server = TestServer::start().await;
    let posts = [
        ("/api/v1/apps/connectors/credentials", json!({"appId": "app-1", "connectorId": "c1"})),
        ("/api/v1/apps/app-1/connectors/c1/credentials", json!({})),
        ("/api/v1/apps/app-1/connectors/c1/credentials/k1", json!({})),
        ("/api/v1/apps/app-1/connectors/c1/force_sync", json!({})),
        ("/api/v1/apps/app-1/connectors/c1/pause", json!({})),
        ("/api/v1/apps/app-1/connectors/c1/resume", json!({})),
        ("/api/v1/apps/app-1/connectors/c1/schedule", json!({"cron": {"cronSpec": "0 * * * *", "timezone": "UTC"}})),
        ("/api/v1/apps/app-1/connectors/c1/confirm_sync_valid/s1", json!({})),
    ];
    let gets = ["/api/v1/apps/app-1/connectors/c1/credentials/k1", "/api/v1/apps/app-1/connectors/c1/syncs/s1/download_url"];

    for (path, body) in posts {
        let body = expect_error(server.post(path, body).await, 404, Code::NotFound).await;
        assert!(body["message"].as_str().unwrap().contains("c1"), "POST {path}: {body}");
    }
    for path in gets {
        expect_error(server.get(path).await, 404, Code::NotFound).await;
    }
    server.stop().await;
}

#[tokio::test]
async fn lifecycle_routes_work_over_rest() {
    let server = TestServer::start().await;
    let connector = server.create_connector("app-1", "Lifecycle").await;
    let id = connector["id"].as_str().unwrap().to_owned();
    let base = format!("/api/v1/apps/app-1/connectors/{id}");

    let rotated = expect_ok(server.post("/api/v1/apps/connectors/credentials", json!({"appId": "app-1", "connectorId": id})).await).await;
    let secret = rotated["clientSecret"].as_str().unwrap();
    assert!(secret.starts_with("cds_"), "{rotated}");
    assert_eq!(rotated["credential"]["clientSecret"], secret);
    let second = expect_ok(server.post(&format!("{base}/credentials"), json!({})).await).await;
    assert_ne!(second["credential"]["id"], rotated["credential"]["id"]);
    let credential_id = rotated["credential"]["id"].as_str().unwrap();
    let read = expect_ok(server.get(&format!("{base}/credentials/{credential_id}")).await).await;
    assert!(read["credential"].get("clientSecret").is_none(), "{read}");

    let forced = expect_ok(server.post(&format!("{base}/force_sync"), json!({})).await).await;
    assert_eq!(forced["sync"]["state"], "STATE_PENDING");
    let sync_id = forced["sync"]["id"].as_str().unwrap();
    expect_error(server.get(&format!("{base}/syncs/{sync_id}/download_url")).await, 404, Code::NotFound).await;

    assert_eq!(expect_ok(server.post(&format!("{base}/pause"), json!({"reason": "maintenance"})).await).await, json!({}));
    let paused = expect_ok(server.get(&base).await).await;
    assert_eq!(paused["connectorView"]["connector"]["syncDisabledReason"], "maintenance");
    assert_eq!(expect_ok(server.post(&format!("{base}/resume"), json!({})).await).await, json!({}));

    let schedule = json!({"cron": {"cronSpec": "0 3 * * *", "timezone": "Europe/Berlin"}});
    let scheduled = expect_ok(server.post(&format!("{base}/schedule"), schedule).await).await;
    assert_eq!(scheduled["nextRuns"].as_array().unwrap().len(), 5);
    let bad = json!({"cron": {"cronSpec": "0 3 * * *", "timezone": "Mars/Olympus"}});
    let body = expect_error(server.post(&format!("{base}/schedule"), bad).await, 400, Code::InvalidArgument).await;
    assert_eq!(first_violation(&body)["field"], "cron.timezone");
    server.stop().await;
}

#[tokio::test]
async fn misspelled_schedule_field_keeps_the_schedule() {
    let server = TestServer::start().await;
    let connector = server.create_connector("app-1", "Scheduled").await;
    let id = connector["id"].as_str().unwrap().to_owned();
    let base = format!("/api/v1/apps/app-1/connectors/{id}");
    expect_ok(server.post(&format!("{base}/schedule"), json!({"cron": {"cronSpec": "0 3 * * *"}})).await).await;

    // `cron_spec` belongs inside `cron`, and the others misspell a field of `cron`. Ignored,
    // they would leave an empty `cron`, which removes the schedule, or drop the timezone.
    let misspellings = [
        (json!({"cron_spec": "0 4 * * *"}), "cron_spec"),
        (json!({"cron": {"cronSpc": "0 4 * * *"}}), "cron.cronSpc"),
        (json!({"cron": {"cronSpec": "0 4 * * *", "timeZone": "Europe/Berlin"}}), "cron.timeZone"),
    ];
    for (misspelled, field) in misspellings {
        let response = server.post(&format!("{base}/schedule"), misspelled.clone()).await;

        let body = expect_error(response, 400, Code::InvalidArgument).await;
        assert_eq!(first_violation(&body)["field"], field, "{misspelled}");
        assert!(first_violation(&body)["description"].as_str().unwrap().starts_with("is not a field of "), "{body}");
        let read = expect_ok(server.get(&base).await).await;
        assert_eq!(read["connectorView"]["connector"]["schedule"]["cronSpec"], "0 3 * * *", "{misspelled}");
    }

    let removed = expect_ok(server.post(&format!("{base}/schedule"), json!({"cron": {}})).await).await;
    assert_eq!(removed, json!({}));
    let read = expect_ok(server.get(&base).await).await;
    assert!(read["connectorView"]["connector"].get("schedule").is_none(), "{read}");
    server.stop().await;
}
