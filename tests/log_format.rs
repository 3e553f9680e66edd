//! JSON log lines of the real binary. Each line is one object with unique keys. Rejected
//! requests, over gRPC or the REST gateway, are logged at the default level. So is each sync
//! that the scheduler queues, but not each run that it skips.

mod common;

use std::{collections::HashSet, fmt, time::Duration};

use common::{ChildServer, create_request};
use connectord::auth::{Role, TokenFile};
use connectord::pb::{self, sync::State};
use serde::de::{Deserialize, Deserializer, Error as _, IgnoredAny, MapAccess, Visitor};
use serde_json::Value;
use tonic::{Code, Request};

/// The keys of one JSON object, read without keeping the values. Deserializing fails on a
/// key that occurs twice, which `serde_json::Value` would silently collapse into one.
struct UniqueKeys;

impl<'de> Deserialize<'de> for UniqueKeys {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(UniqueKeysVisitor)
    }
}

struct UniqueKeysVisitor;

impl<'de> Visitor<'de> for UniqueKeysVisitor {
    type Value = UniqueKeys;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<UniqueKeys, A::Error> {
        let mut seen = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if !seen.insert(key.clone()) {
                return Err(A::Error::custom(format!("the key {key:?} occurs twice")));
            }
            map.next_value::<IgnoredAny>()?;
        }
        Ok(UniqueKeys)
    }
}

#[tokio::test]
async fn rejections_log_unique_json_keys() {
    let data = tempfile::tempdir().unwrap();
    let tokens_path = data.path().join("tokens.jsonl");
    let token = TokenFile::new(&tokens_path).create("editor-1", Role::Editor).unwrap();
    let server = ChildServer::spawn(&data.path().join("data"), &["--tokens-file", tokens_path.to_str().unwrap()]).await;
    let mut client = server.client().await;

    // Rejected by authentication, by validation, and for a missing connector.
    let unauthenticated = client.create(create_request("app-1", "No token")).await.unwrap_err();
    assert_eq!(unauthenticated.code(), Code::Unauthenticated);
    let mut without_config = create_request("app-1", "No config");
    without_config.config = None;
    let mut invalid = Request::new(without_config);
    invalid.metadata_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
    assert_eq!(client.create(invalid).await.unwrap_err().code(), Code::InvalidArgument);
    let mut missing = Request::new(common::get_request("app-1", "missing-1"));
    missing.metadata_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
    assert_eq!(client.get(missing).await.unwrap_err().code(), Code::NotFound);

    let mut bad_schedule = Request::new(pb::ConnectorServiceUpdateConnectorScheduleRequest {
        app_id: "app-1".to_owned(),
        connector_id: "missing-1".to_owned(),
        schedule: Some(pb::connector_service_update_connector_schedule_request::Schedule::Cron(pb::ConnectorScheduleCron {
            cron_spec: "61 * * * *".to_owned(),
            timezone: String::new(),
        })),
    });
    bad_schedule.metadata_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
    assert_eq!(client.update_connector_schedule(bad_schedule).await.unwrap_err().code(), Code::InvalidArgument);

    // Rejected by the REST gateway before any RPC runs.
    let http = reqwest::Client::new();
    let base = format!("http://{}", server.addr);
    let malformed = http
        .post(format!("{base}/api/v1/apps/app-1/connectors/create"))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(malformed.status(), 400);
    let no_route = http.get(format!("{base}/api/v1/nowhere")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(no_route.status(), 404);

    // The log is read by another task; give it a moment to catch up with the last lines.
    let mut lines = Vec::new();
    for _ in 0..50 {
        lines = server.log_text().lines().map(str::to_owned).collect::<Vec<_>>();
        if lines.iter().any(|line| line.contains("no REST route")) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    for line in &lines {
        if let Err(error) = serde_json::from_str::<UniqueKeys>(line) {
            panic!("log line is not a JSON object with unique keys ({error}): {line}");
        }
    }
    let events: Vec<Value> = lines.iter().map(|line| serde_json::from_str(line).unwrap()).collect();
    let logged = |message: &str| events.iter().any(|event| event["message"].as_str().is_some_and(|text| text.starts_with(message)));
    for message in [
        "call rejected by authentication",
        "request rejected: invalid argument",
        "request rejected",
        "REST request rejected",
        "no REST route",
    ] {
        assert!(logged(message), "no {message:?} line at the default level in:\n{}", lines.join("\n"));
    }
    let schedule_rejection = events
        .iter()
        .find(|event| event["message"] == "request rejected: invalid argument" && event["span"]["name"] == "UpdateConnectorSchedule");
    assert!(schedule_rejection.is_some_and(|event| event["span"]["connector_id"] == "missing-1"), "{}", lines.join("\n"));
    let rejected = events.iter().find(|event| event["message"] == "call rejected by authentication").unwrap();
    assert!(rejected["reason"].as_str().is_some_and(|reason| reason.contains("token")), "{rejected}");
}

#[tokio::test]
async fn scheduler_logs_queued_not_skipped() {
    let data = tempfile::tempdir().unwrap();
    let server = ChildServer::spawn(data.path(), &[]).await;
    let mut client = server.client().await;
    let connector = common::create(&mut client, "app-1", "Scheduled").await;

    // Every second: the first run queues a sync, and the runs after it are skipped while it
    // is pending.
    common::lifecycle::set_schedule(&mut client, &connector, "*/1 * * * * *", "").await;
    let queued = common::lifecycle::poll_until("a scheduled sync is queued", Duration::from_secs(4), || {
        let mut client = client.clone();
        let connector = connector.clone();
        async move { common::lifecycle::list_all_syncs(&mut client, &connector, State::Pending).await.into_iter().next() }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(2_200)).await;

    let log = server.log_text();
    let events: Vec<Value> = log.lines().filter_map(|line| serde_json::from_str(line).ok()).collect();
    let queued_lines: Vec<&Value> = events.iter().filter(|event| event["message"] == "scheduled sync queued").collect();
    assert_eq!(queued_lines.len(), 1, "{log}");
    assert_eq!(queued_lines[0]["sync_id"], queued.id.as_str(), "{log}");
    assert_eq!(queued_lines[0]["connector_id"], connector.id.as_str(), "{log}");
    assert!(!log.contains("scheduled run skipped"), "skipped runs are logged at the default level:\n{log}");
}
