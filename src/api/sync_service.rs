//! `connectord.v1.ConnectorSyncService`: the worker side of syncing. Every call
//! authenticates with a connector credential and may act only for that connector.

use std::{sync::Arc, time::Duration};

use base64::{Engine, engine::general_purpose::STANDARD};
use tonic::{Request, Response, Status, metadata::MetadataMap};

use super::{
    audit::Audit,
    convert::timestamp,
    status::to_status,
    validate::{MAX_DESCRIPTION_CHARS, Violations},
};
use crate::{
    domain::{ConnectorKey, CredentialService, Error, Secret, SyncLifecycle, SyncOutcome},
    pb::{self, connector_sync_service_server::ConnectorSyncService},
};

/// Maximum length of an artifact URL, in characters.
const MAX_URL_CHARS: usize = 2048;

pub struct SyncWorkerApi {
    lifecycle: Arc<SyncLifecycle>,
    credentials: Arc<CredentialService>,
}

impl SyncWorkerApi {
    pub fn new(lifecycle: Arc<SyncLifecycle>, credentials: Arc<CredentialService>) -> Self {
        Self { lifecycle, credentials }
    }

    /// Authenticates the caller and checks that its credential belongs to the connector
    /// named in the request.
    async fn authorize(&self, metadata: &MetadataMap, app_id: &str, connector_id: &str, audit: &mut Audit) -> Result<ConnectorKey, Error> {
        audit.target(app_id, connector_id);
        let (client_id, secret) = basic_credentials(metadata)?;
        audit.worker(&client_id);
        let credential = self.credentials.authenticate(&client_id, &secret).await?;

        let mut violations = Violations::new();
        violations.id("app_id", app_id);
        violations.id("connector_id", connector_id);
        violations.into_result()?;
        if credential.app_id != app_id || credential.connector_id != connector_id {
            return Err(Error::PermissionDenied(format!(
                "credential {client_id} belongs to another connector; it may act only for connector {} in app {}",
                credential.connector_id, credential.app_id
            )));
        }
        tracing::Span::current().record("client_id", client_id.as_str());
        Ok(ConnectorKey::new(app_id, connector_id))
    }
}

impl SyncWorkerApi {
    async fn handle_claim(&self, request: &Request<pb::ClaimSyncRequest>, audit: &mut Audit) -> Result<pb::ClaimSyncResponse, Error> {
        let body = request.get_ref();
        let key = self.authorize(request.metadata(), &body.app_id, &body.connector_id, audit).await?;
        let wait = match &body.wait {
            Some(wait) if wait.seconds < 0 || wait.nanos < 0 => {
                return Err(Error::invalid("wait", "must not be negative"));
            }
            Some(wait) => Duration::new(wait.seconds as u64, wait.nanos as u32),
            None => Duration::ZERO,
        };

        let sync = self.lifecycle.claim(&key, wait).await?;

        match &sync {
            Some(sync) => {
                audit.changed(["syncs", "status"]);
                tracing::info!(sync_id = %sync.id, "sync claimed");
            }
            None => tracing::debug!("no sync to claim"),
        }
        Ok(pb::ClaimSyncResponse { sync: sync.map(Into::into) })
    }

    async fn handle_heartbeat(&self, request: &Request<pb::HeartbeatRequest>, audit: &mut Audit) -> Result<pb::HeartbeatResponse, Error> {
        let body = request.get_ref();
        let key = self.authorize(request.metadata(), &body.app_id, &body.connector_id, audit).await?;
        sync_id(&body.sync_id)?;

        let lease_end = self.lifecycle.heartbeat(&key, &body.sync_id).await?;

        tracing::debug!(sync_id = %body.sync_id, "lease extended");
        Ok(pb::HeartbeatResponse { lease_expires_at: Some(timestamp(lease_end)) })
    }

    async fn handle_complete(
        &self,
        request: &Request<pb::CompleteSyncRequest>,
        audit: &mut Audit,
    ) -> Result<pb::CompleteSyncResponse, Error> {
        let body = request.get_ref();
        let key = self.authorize(request.metadata(), &body.app_id, &body.connector_id, audit).await?;
        let outcome = outcome(body)?;

        let sync = self.lifecycle.complete(&key, &body.sync_id, &outcome).await?;

        tracing::info!(sync_id = %sync.id, state = ?sync.state, data_drop = sync.data_drop, "sync completed");
        Ok(pb::CompleteSyncResponse { sync: Some(sync.into()) })
    }
}

/// Reads `authorization: Basic base64(client_id:client_secret)`.
fn basic_credentials(metadata: &MetadataMap) -> Result<(String, Secret), Error> {
    let missing = || Error::Unauthenticated("missing credentials: send authorization: Basic base64(client_id:client_secret)".to_owned());
    let malformed = || Error::Unauthenticated("malformed authorization header: expected Basic base64(client_id:client_secret)".to_owned());

    let value = metadata.get("authorization").ok_or_else(missing)?;
    let value = value.to_str().map_err(|_| malformed())?;
    // Authentication scheme names are case-insensitive (RFC 9110, section 11.1).
    let (scheme, encoded) = value.split_once(' ').ok_or_else(malformed)?;
    if !scheme.eq_ignore_ascii_case("Basic") {
        return Err(malformed());
    }
    let decoded = STANDARD.decode(encoded.trim()).map_err(|_| malformed())?;
    let decoded = String::from_utf8(decoded).map_err(|_| malformed())?;
    let (client_id, secret) = decoded.split_once(':').ok_or_else(malformed)?;
    if client_id.is_empty() || secret.is_empty() {
        return Err(malformed());
    }
    Ok((client_id.to_owned(), Secret::from_presented(secret)))
}

fn sync_id(value: &str) -> Result<(), Error> {
    let mut violations = Violations::new();
    violations.id("sync_id", value);
    violations.into_result()
}

#[tonic::async_trait]
impl ConnectorSyncService for SyncWorkerApi {
    #[tracing::instrument(name = "ClaimSync", skip_all, fields(app_id = %request.get_ref().app_id, connector_id = %request.get_ref().connector_id, client_id))]
    async fn claim_sync(&self, request: Request<pb::ClaimSyncRequest>) -> Result<Response<pb::ClaimSyncResponse>, Status> {
        let mut audit = Audit::start("ClaimSync", &request);
        let result = self.handle_claim(&request, &mut audit).await;
        audit.finish(&result);
        result.map(Response::new).map_err(to_status)
    }

    #[tracing::instrument(name = "Heartbeat", skip_all, fields(app_id = %request.get_ref().app_id, connector_id = %request.get_ref().connector_id, client_id))]
    async fn heartbeat(&self, request: Request<pb::HeartbeatRequest>) -> Result<Response<pb::HeartbeatResponse>, Status> {
        let mut audit = Audit::start("Heartbeat", &request);
        audit.changed(["syncs.lease_expires_at"]);
        let result = self.handle_heartbeat(&request, &mut audit).await;
        audit.finish(&result);
        result.map(Response::new).map_err(to_status)
    }

    #[tracing::instrument(name = "CompleteSync", skip_all, fields(app_id = %request.get_ref().app_id, connector_id = %request.get_ref().connector_id, client_id))]
    async fn complete_sync(&self, request: Request<pb::CompleteSyncRequest>) -> Result<Response<pb::CompleteSyncResponse>, Status> {
        let mut audit = Audit::start("CompleteSync", &request);
        audit.changed(["syncs", "status"]);
        let result = self.handle_complete(&request, &mut audit).await;
        audit.finish(&result);
        result.map(Response::new).map_err(to_status)
    }
}

/// An artifact URL is handed to clients by GetConnectorSyncDownloadURL, so it must be an
/// absolute `scheme://` URL (https, s3, gs and the like), never a `javascript:` or `data:`
/// URL that a console could render as a link.
fn artifact_url_problem(url: &str) -> Option<String> {
    if url.is_empty() {
        return None;
    }
    let scheme_ok = url.split_once("://").is_some_and(|(scheme, rest)| {
        !rest.is_empty()
            && scheme.starts_with(|c: char| c.is_ascii_alphabetic())
            && scheme.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
    });
    (!scheme_ok).then(|| {
        format!("{} is not an absolute URL; use the form scheme://location, such as https://…", crate::domain::connector_text::shorten(url))
    })
}

fn outcome(request: &pb::CompleteSyncRequest) -> Result<SyncOutcome, Error> {
    use pb::complete_sync_request::Result as Wire;

    let mut violations = Violations::new();
    violations.id("sync_id", &request.sync_id);
    let outcome = match &request.result {
        Some(Wire::Succeeded(succeeded)) => {
            violations.text("succeeded.artifact_url", &succeeded.artifact_url, MAX_URL_CHARS);
            if let Some(problem) = artifact_url_problem(&succeeded.artifact_url) {
                violations.add("succeeded.artifact_url", problem);
            }
            Some(SyncOutcome::Succeeded { artifact_url: succeeded.artifact_url.clone() })
        }
        Some(Wire::Failed(failed)) => {
            if failed.error.trim().is_empty() {
                violations.add("failed.error", "is empty; say why the sync failed, since operators read it in the connector's status");
            } else {
                violations.text("failed.error", &failed.error, MAX_DESCRIPTION_CHARS);
            }
            Some(SyncOutcome::Failed { error: failed.error.clone(), data_drop: failed.data_drop })
        }
        None => {
            violations.add("result", "is required: set succeeded or failed");
            None
        }
    };
    violations.into_result()?;
    Ok(outcome.expect("a missing result is a violation"))
}
