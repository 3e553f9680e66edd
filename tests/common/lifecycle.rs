//! Helpers for the credential and sync lifecycle tests: a worker client that authenticates
//! with a connector credential, calls of the sync-control RPCs, bounded polling, and a
//! restart with a pause between stop and start.

use std::{future::Future, time::Duration};

use base64::{Engine, engine::general_purpose::STANDARD};
use chrono::{DateTime, Utc};
use connectord::{
    pb::{self, connector_sync_service_client::ConnectorSyncServiceClient},
    server::ServeOptions,
};
use tempfile::TempDir;
use tonic::{Request, Status, metadata::MetadataValue, transport::Channel};

use super::{Client, TestServer};

/// Pause between two checks of a poll loop.
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// Calls `check` until it returns `Some`, at most `limit` long, and returns that value.
/// Panics with `condition` in the message when the limit passes first.
pub async fn poll_until<T, F, Fut>(condition: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    let max_checks = limit.as_millis() / POLL_INTERVAL.as_millis() + 2;
    for _ in 0..max_checks {
        if let Some(value) = check().await {
            return value;
        }
        if tokio::time::Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
    panic!("timed out after {limit:?} waiting until {condition}");
}

/// Sleeps until the wall clock has passed `instant`, for waits on server timers that
/// compare against `Utc::now()`.
pub async fn sleep_past(instant: DateTime<Utc>) {
    let remaining = (instant - Utc::now()).to_std().unwrap_or_default();
    tokio::time::sleep(remaining + Duration::from_millis(20)).await;
}

/// Converts a protobuf timestamp to UTC. Panics when it is absent or out of range.
#[track_caller]
pub fn utc(timestamp: &Option<prost_types::Timestamp>) -> DateTime<Utc> {
    let timestamp = timestamp.as_ref().expect("timestamp is set");
    DateTime::from_timestamp(timestamp.seconds, u32::try_from(timestamp.nanos).expect("nanos are not negative"))
        .expect("timestamp is in chrono's range")
}

/// Builds the `authorization` metadata value for a credential.
pub fn basic_authorization(client_id: &str, client_secret: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{client_id}:{client_secret}")))
}

/// A credential as RotateCredential returned it, with its one copy of the secret.
#[derive(Debug, Clone)]
pub struct IssuedCredential {
    pub credential: pb::ConnectorCredential,
    pub secret: String,
}

impl IssuedCredential {
    pub fn authorization(&self) -> String {
        basic_authorization(&self.credential.client_id, &self.secret)
    }
}

pub async fn rotate(client: &mut Client, connector: &pb::Connector) -> IssuedCredential {
    let response = client
        .rotate_credential(pb::ConnectorServiceRotateCredentialRequest {
            app_id: connector.app_id.clone(),
            connector_id: connector.id.clone(),
        })
        .await
        .unwrap_or_else(|status| panic!("rotate a credential of {}: {status:?}", connector.id))
        .into_inner();
    IssuedCredential { credential: response.credential.expect("response has a credential"), secret: response.client_secret }
}

pub async fn get_credential(client: &mut Client, credential: &pb::ConnectorCredential) -> pb::ConnectorCredential {
    client
        .get_credentials(pb::ConnectorServiceGetCredentialsRequest {
            app_id: credential.app_id.clone(),
            connector_id: credential.connector_id.clone(),
            id: credential.id.clone(),
        })
        .await
        .unwrap_or_else(|status| panic!("get credential {}: {status:?}", credential.id))
        .into_inner()
        .credential
        .expect("response has a credential")
}

pub fn revoke_request(credential: &pb::ConnectorCredential) -> pb::ConnectorServiceRevokeCredentialRequest {
    pb::ConnectorServiceRevokeCredentialRequest {
        app_id: credential.app_id.clone(),
        connector_id: credential.connector_id.clone(),
        id: credential.id.clone(),
    }
}

/// A connector process: calls `ConnectorSyncService` for one connector with one
/// `authorization` value, which need not belong to that connector.
#[derive(Clone)]
pub struct Worker {
    client: ConnectorSyncServiceClient<Channel>,
    authorization: String,
    pub app_id: String,
    pub connector_id: String,
}

impl Worker {
    /// Creates a worker for `connector` that sends `authorization` with every call, or no
    /// `authorization` metadata at all when it is empty.
    pub async fn new(server: &TestServer, connector: &pb::Connector, authorization: impl Into<String>) -> Self {
        Self::with_channel(server.channel().await, connector, authorization)
    }

    /// Creates a worker on an existing channel, such as one to a child-process server.
    pub fn with_channel(channel: Channel, connector: &pb::Connector, authorization: impl Into<String>) -> Self {
        Self {
            client: ConnectorSyncServiceClient::new(channel),
            authorization: authorization.into(),
            app_id: connector.app_id.clone(),
            connector_id: connector.id.clone(),
        }
    }

    fn request<T>(&self, message: T) -> Request<T> {
        let mut request = Request::new(message);
        if !self.authorization.is_empty() {
            let value = MetadataValue::try_from(self.authorization.as_str()).expect("authorization is valid ASCII metadata");
            request.metadata_mut().insert("authorization", value);
        }
        request
    }

    /// Claims the connector's pending sync without waiting.
    pub async fn claim(&mut self) -> Result<Option<pb::Sync>, Status> {
        self.claim_waiting(None).await
    }

    pub async fn claim_waiting(&mut self, wait: Option<Duration>) -> Result<Option<pb::Sync>, Status> {
        let message = pb::ClaimSyncRequest {
            app_id: self.app_id.clone(),
            connector_id: self.connector_id.clone(),
            wait: wait.map(|wait| prost_types::Duration {
                seconds: i64::try_from(wait.as_secs()).expect("wait fits in i64"),
                nanos: i32::try_from(wait.subsec_nanos()).expect("nanos fit in i32"),
            }),
        };
        self.claim_request(message).await
    }

    /// Sends a ClaimSync request as given, for requests that the helpers cannot build.
    pub async fn claim_request(&mut self, message: pb::ClaimSyncRequest) -> Result<Option<pb::Sync>, Status> {
        let request = self.request(message);
        Ok(self.client.claim_sync(request).await?.into_inner().sync)
    }

    /// Claims the pending sync and panics unless there is one.
    pub async fn claim_one(&mut self) -> pb::Sync {
        self.claim()
            .await
            .unwrap_or_else(|status| panic!("claim a sync of {}: {status:?}", self.connector_id))
            .unwrap_or_else(|| panic!("connector {} has no pending sync to claim", self.connector_id))
    }

    /// Extends the lease of a sync and returns its new end.
    pub async fn heartbeat(&mut self, sync_id: &str) -> Result<DateTime<Utc>, Status> {
        let message =
            pb::HeartbeatRequest { app_id: self.app_id.clone(), connector_id: self.connector_id.clone(), sync_id: sync_id.to_owned() };
        let request = self.request(message);
        let response = self.client.heartbeat(request).await?.into_inner();
        Ok(utc(&response.lease_expires_at))
    }

    pub async fn succeed(&mut self, sync_id: &str, artifact_url: &str) -> Result<pb::Sync, Status> {
        let result = pb::complete_sync_request::Result::Succeeded(pb::SyncSucceeded { artifact_url: artifact_url.to_owned() });
        self.complete(sync_id, Some(result)).await
    }

    pub async fn fail(&mut self, sync_id: &str, error: &str, data_drop: bool) -> Result<pb::Sync, Status> {
        let result = pb::complete_sync_request::Result::Failed(pb::SyncFailed { error: error.to_owned(), data_drop });
        self.complete(sync_id, Some(result)).await
    }

    /// Reports the end of a sync. `None` sends a request without a result.
    pub async fn complete(&mut self, sync_id: &str, result: Option<pb::complete_sync_request::Result>) -> Result<pb::Sync, Status> {
        let message = pb::CompleteSyncRequest {
            app_id: self.app_id.clone(),
            connector_id: self.connector_id.clone(),
            sync_id: sync_id.to_owned(),
            result,
        };
        let request = self.request(message);
        let response = self.client.complete_sync(request).await?.into_inner();
        Ok(response.sync.expect("response has a sync"))
    }
}

/// Creates a credential for `connector` and returns a worker that uses it.
pub async fn worker_for(server: &TestServer, client: &mut Client, connector: &pb::Connector) -> Worker {
    let issued = rotate(client, connector).await;
    Worker::new(server, connector, issued.authorization()).await
}

pub fn force_sync_request(connector: &pb::Connector, request_id: &str) -> pb::ConnectorServiceForceSyncRequest {
    pb::ConnectorServiceForceSyncRequest {
        app_id: connector.app_id.clone(),
        connector_id: connector.id.clone(),
        request_id: request_id.to_owned(),
    }
}

/// Queues a sync or returns the pending one. Panics when the call fails.
pub async fn force_sync(client: &mut Client, connector: &pb::Connector) -> pb::Sync {
    client
        .force_sync(force_sync_request(connector, ""))
        .await
        .unwrap_or_else(|status| panic!("force a sync of {}: {status:?}", connector.id))
        .into_inner()
        .sync
        .expect("response has a sync")
}

pub fn sync_request(connector: &pb::Connector, sync_id: &str) -> pb::ConnectorServiceGetSyncRequest {
    pb::ConnectorServiceGetSyncRequest { app_id: connector.app_id.clone(), connector_id: connector.id.clone(), id: sync_id.to_owned() }
}

pub async fn get_sync(client: &mut Client, connector: &pb::Connector, sync_id: &str) -> pb::Sync {
    client
        .get_sync(sync_request(connector, sync_id))
        .await
        .unwrap_or_else(|status| panic!("get sync {sync_id}: {status:?}"))
        .into_inner()
        .sync
        .expect("response has a sync")
}

pub fn list_syncs_request(
    connector: &pb::Connector,
    page_size: i32,
    page_token: &str,
    state: pb::sync::State,
) -> pb::ConnectorServiceListSyncsRequest {
    pb::ConnectorServiceListSyncsRequest {
        app_id: connector.app_id.clone(),
        connector_id: connector.id.clone(),
        page_size,
        page_token: page_token.to_owned(),
        state: state.into(),
    }
}

/// Walks every page of a connector's syncs in `state` (unspecified for all) and returns
/// them in the order served.
pub async fn list_all_syncs(client: &mut Client, connector: &pb::Connector, state: pb::sync::State) -> Vec<pb::Sync> {
    let mut syncs = Vec::new();
    let mut page_token = String::new();
    for _ in 0..1000 {
        let page = client
            .list_syncs(list_syncs_request(connector, 100, &page_token, state))
            .await
            .unwrap_or_else(|status| panic!("list syncs of {}: {status:?}", connector.id))
            .into_inner();
        syncs.extend(page.list);
        if page.next_page_token.is_empty() {
            return syncs;
        }
        page_token = page.next_page_token;
    }
    panic!("sync list of {} did not end after 1000 pages", connector.id);
}

/// Waits for `count` scheduled syncs of `connector`, whose schedule runs every second,
/// and claims each one as it appears. Each claimed sync shows at least one more scheduler
/// tick, so tests can wait for ticks without sleeping.
pub async fn claim_scheduled_syncs(client: &Client, worker: &mut Worker, connector: &pb::Connector, count: usize) -> Vec<pb::Sync> {
    let mut claimed = Vec::with_capacity(count);
    for index in 0..count {
        let scheduled = poll_until(&format!("scheduled sync {index} of {} is queued", connector.id), Duration::from_secs(4), || {
            let mut client = client.clone();
            let connector = connector.clone();
            async move { list_all_syncs(&mut client, &connector, pb::sync::State::Pending).await.into_iter().next() }
        })
        .await;
        assert_eq!(scheduled.trigger(), pb::sync::Trigger::Schedule, "sync {} was not queued by the schedule", scheduled.id);
        claimed.push(worker.claim_one().await);
    }
    claimed
}

pub fn schedule_request(connector: &pb::Connector, cron_spec: &str, timezone: &str) -> pb::ConnectorServiceUpdateConnectorScheduleRequest {
    pb::ConnectorServiceUpdateConnectorScheduleRequest {
        app_id: connector.app_id.clone(),
        connector_id: connector.id.clone(),
        schedule: Some(pb::connector_service_update_connector_schedule_request::Schedule::Cron(pb::ConnectorScheduleCron {
            cron_spec: cron_spec.to_owned(),
            timezone: timezone.to_owned(),
        })),
    }
}

/// Sets a cron schedule and returns the next runs that the response previews.
pub async fn set_schedule(client: &mut Client, connector: &pb::Connector, cron_spec: &str, timezone: &str) -> Vec<DateTime<Utc>> {
    client
        .update_connector_schedule(schedule_request(connector, cron_spec, timezone))
        .await
        .unwrap_or_else(|status| panic!("set schedule {cron_spec:?} in {timezone:?}: {status:?}"))
        .into_inner()
        .next_runs
        .into_iter()
        .map(|run| utc(&Some(run)))
        .collect()
}

pub fn pause_request(connector: &pb::Connector, reason: Option<&str>) -> pb::ConnectorServicePauseSyncRequest {
    pb::ConnectorServicePauseSyncRequest {
        app_id: connector.app_id.clone(),
        connector_id: connector.id.clone(),
        reason: reason.map(str::to_owned),
    }
}

pub fn resume_request(connector: &pb::Connector) -> pb::ConnectorServiceResumeSyncRequest {
    pb::ConnectorServiceResumeSyncRequest { app_id: connector.app_id.clone(), connector_id: connector.id.clone() }
}

pub fn confirm_request(connector: &pb::Connector, sync_id: &str) -> pb::ConnectorServiceConfirmSyncValidRequest {
    pb::ConnectorServiceConfirmSyncValidRequest {
        app_id: connector.app_id.clone(),
        connector_id: connector.id.clone(),
        sync_lifecycle_id: sync_id.to_owned(),
    }
}

pub fn cancel_request(connector: &pb::Connector, sync_id: &str) -> pb::ConnectorServiceCancelSyncRequest {
    pb::ConnectorServiceCancelSyncRequest { app_id: connector.app_id.clone(), connector_id: connector.id.clone(), id: sync_id.to_owned() }
}

pub fn download_url_request(connector: &pb::Connector, sync_id: &str) -> pb::ConnectorServiceGetConnectorSyncDownloadUrlRequest {
    pb::ConnectorServiceGetConnectorSyncDownloadUrlRequest {
        app_id: connector.app_id.clone(),
        connector_id: connector.id.clone(),
        sync_id: sync_id.to_owned(),
    }
}

/// Returns the connector's status. Panics when the connector has none.
pub fn status_of(connector: &pb::Connector) -> pb::ConnectorStatus {
    connector.status.clone().expect("connector has a status")
}

/// Starts a server on the data directory and options that [`TestServer::stop`] returned,
/// so a test can let time pass while no server runs.
pub async fn start_again(data_dir: TempDir, options: ServeOptions) -> TestServer {
    TestServer::spawn(data_dir, options).await
}
