//! Credential and sync-control RPCs of `ConnectorService`. The trait methods in
//! `connector_service` delegate here and convert errors to statuses.

use super::{
    connector_service::{ConnectorApi, key, page_size},
    convert::{sync_state_filter, timestamp},
    page_token,
    validate::{MAX_DESCRIPTION_CHARS, Violations},
};
use crate::{
    domain::{ConnectorKey, Error},
    pb,
};

fn connector_key(app_id: &str, connector_id: &str) -> Result<ConnectorKey, Error> {
    key(app_id, connector_id, "connector_id")
}

/// Validates a connector address plus the id of one of its records.
fn record_key(app_id: &str, connector_id: &str, id_field: &str, id: &str) -> Result<ConnectorKey, Error> {
    let mut violations = Violations::new();
    violations.id("app_id", app_id);
    violations.id("connector_id", connector_id);
    violations.id(id_field, id);
    violations.into_result()?;
    Ok(ConnectorKey::new(app_id, connector_id))
}

/// Decodes an optional page token for a scope.
fn after_id(token: &str, scope: &str) -> Result<Option<String>, Error> {
    if token.is_empty() {
        return Ok(None);
    }
    page_token::decode(token, scope).map(Some).map_err(|error| Error::invalid("page_token", error.to_string()))
}

fn credential_scope(key: &ConnectorKey) -> String {
    format!("credentials\0{}\0{}", key.app_id, key.id)
}

fn sync_scope(key: &ConnectorKey, state: i32) -> String {
    format!("syncs\0{}\0{}\0{state}", key.app_id, key.id)
}

impl ConnectorApi {
    pub(super) async fn handle_get_credentials(
        &self,
        request: pb::ConnectorServiceGetCredentialsRequest,
    ) -> Result<pb::ConnectorServiceGetCredentialsResponse, Error> {
        let key = record_key(&request.app_id, &request.connector_id, "id", &request.id)?;

        let credential = self.credentials.get(&key, &request.id).await?;

        tracing::debug!(credential_id = %credential.id, "credential read");
        Ok(pb::ConnectorServiceGetCredentialsResponse { credential: Some(credential.into()) })
    }

    pub(super) async fn handle_rotate_credential(
        &self,
        request: pb::ConnectorServiceRotateCredentialRequest,
    ) -> Result<pb::ConnectorServiceRotateCredentialResponse, Error> {
        let key = connector_key(&request.app_id, &request.connector_id)?;

        let rotated = self.credentials.rotate(&key).await?;

        tracing::info!(credential_id = %rotated.credential.id, client_id = %rotated.credential.client_id, "credential created");
        let secret = rotated.secret.expose().to_owned();
        let mut credential = pb::ConnectorCredential::from(rotated.credential);
        credential.client_secret = secret.clone();
        Ok(pb::ConnectorServiceRotateCredentialResponse { credential: Some(credential), client_secret: secret })
    }

    pub(super) async fn handle_revoke_credential(
        &self,
        request: pb::ConnectorServiceRevokeCredentialRequest,
    ) -> Result<pb::ConnectorServiceRevokeCredentialResponse, Error> {
        let key = record_key(&request.app_id, &request.connector_id, "id", &request.id)?;

        let revoked = self.credentials.revoke(&key, &request.id).await?;

        tracing::info!(credential_id = %revoked.id, "credential revoked");
        Ok(pb::ConnectorServiceRevokeCredentialResponse {})
    }

    pub(super) async fn handle_list_credentials(
        &self,
        request: pb::ConnectorServiceListCredentialsRequest,
    ) -> Result<pb::ConnectorServiceListCredentialsResponse, Error> {
        let mut violations = Violations::new();
        violations.id("app_id", &request.app_id);
        violations.id("connector_id", &request.connector_id);
        let page_size = page_size("page_size", request.page_size, &mut violations);
        violations.into_result()?;
        let key = ConnectorKey::new(&request.app_id, &request.connector_id);
        let scope = credential_scope(&key);
        let before_id = after_id(&request.page_token, &scope)?;

        let (credentials, next) = self.credentials.list(&key, before_id.as_deref(), page_size).await?;

        tracing::debug!(count = credentials.len(), "credentials listed");
        Ok(pb::ConnectorServiceListCredentialsResponse {
            list: credentials.into_iter().map(Into::into).collect(),
            next_page_token: next.map(|id| page_token::encode(&scope, &id)).unwrap_or_default(),
        })
    }

    pub(super) async fn handle_force_sync(
        &self,
        request: pb::ConnectorServiceForceSyncRequest,
    ) -> Result<pb::ConnectorServiceForceSyncResponse, Error> {
        let mut violations = Violations::new();
        violations.id("app_id", &request.app_id);
        violations.id("connector_id", &request.connector_id);
        violations.optional_id("request_id", &request.request_id);
        violations.into_result()?;
        let key = ConnectorKey::new(&request.app_id, &request.connector_id);
        let request_id = (!request.request_id.is_empty()).then_some(request.request_id.as_str());

        let sync = self.lifecycle.force_sync(&key, request_id).await?;

        tracing::info!(sync_id = %sync.id, "sync queued");
        Ok(pb::ConnectorServiceForceSyncResponse { sync: Some(sync.into()) })
    }

    pub(super) async fn handle_pause_sync(
        &self,
        request: pb::ConnectorServicePauseSyncRequest,
    ) -> Result<pb::ConnectorServicePauseSyncResponse, Error> {
        let mut violations = Violations::new();
        violations.id("app_id", &request.app_id);
        violations.id("connector_id", &request.connector_id);
        if let Some(reason) = &request.reason {
            violations.text("reason", reason, MAX_DESCRIPTION_CHARS);
        }
        violations.into_result()?;
        let key = ConnectorKey::new(&request.app_id, &request.connector_id);

        let connector = self.lifecycle.pause(&key, request.reason.as_deref()).await?;

        tracing::info!(revision = connector.revision, "syncing paused");
        Ok(pb::ConnectorServicePauseSyncResponse {})
    }

    pub(super) async fn handle_resume_sync(
        &self,
        request: pb::ConnectorServiceResumeSyncRequest,
    ) -> Result<pb::ConnectorServiceResumeSyncResponse, Error> {
        let key = connector_key(&request.app_id, &request.connector_id)?;

        let sync = self.lifecycle.resume(&key).await?;

        tracing::info!(sync_id = %sync.id, "syncing resumed");
        Ok(pb::ConnectorServiceResumeSyncResponse {})
    }

    pub(super) async fn handle_update_schedule(
        &self,
        request: pb::ConnectorServiceUpdateConnectorScheduleRequest,
    ) -> Result<pb::ConnectorServiceUpdateConnectorScheduleResponse, Error> {
        let key = connector_key(&request.app_id, &request.connector_id)?;
        let schedule = requested_schedule(&request)?;

        let next_runs = self.lifecycle.update_schedule(&key, schedule).await?;

        tracing::info!(scheduled = schedule.is_some(), "schedule updated");
        Ok(pb::ConnectorServiceUpdateConnectorScheduleResponse { next_runs: next_runs.into_iter().map(timestamp).collect() })
    }

    pub(super) async fn handle_confirm_sync_valid(
        &self,
        request: pb::ConnectorServiceConfirmSyncValidRequest,
    ) -> Result<pb::ConnectorServiceConfirmSyncValidResponse, Error> {
        let key = record_key(&request.app_id, &request.connector_id, "sync_lifecycle_id", &request.sync_lifecycle_id)?;

        let sync = self.lifecycle.confirm_sync_valid(&key, &request.sync_lifecycle_id).await?;

        tracing::info!(confirmed = %request.sync_lifecycle_id, sync_id = %sync.id, "data drop confirmed; sync queued");
        Ok(pb::ConnectorServiceConfirmSyncValidResponse {})
    }

    pub(super) async fn handle_download_url(
        &self,
        request: pb::ConnectorServiceGetConnectorSyncDownloadUrlRequest,
    ) -> Result<pb::ConnectorServiceGetConnectorSyncDownloadUrlResponse, Error> {
        let key = record_key(&request.app_id, &request.connector_id, "sync_id", &request.sync_id)?;

        let download_url = self.lifecycle.download_url(&key, &request.sync_id).await?;

        tracing::debug!(sync_id = %request.sync_id, "download URL read");
        Ok(pb::ConnectorServiceGetConnectorSyncDownloadUrlResponse { download_url })
    }

    pub(super) async fn handle_get_sync(
        &self,
        request: pb::ConnectorServiceGetSyncRequest,
    ) -> Result<pb::ConnectorServiceGetSyncResponse, Error> {
        let key = record_key(&request.app_id, &request.connector_id, "id", &request.id)?;

        let sync = self.lifecycle.get_sync(&key, &request.id).await?;

        tracing::debug!(sync_id = %sync.id, "sync read");
        Ok(pb::ConnectorServiceGetSyncResponse { sync: Some(sync.into()) })
    }

    pub(super) async fn handle_list_syncs(
        &self,
        request: pb::ConnectorServiceListSyncsRequest,
    ) -> Result<pb::ConnectorServiceListSyncsResponse, Error> {
        let mut violations = Violations::new();
        violations.id("app_id", &request.app_id);
        violations.id("connector_id", &request.connector_id);
        let page_size = page_size("page_size", request.page_size, &mut violations);
        let state = match pb::sync::State::try_from(request.state) {
            Ok(state) => sync_state_filter(state),
            Err(_) => {
                violations.add("state", format!("{} is not a sync state", request.state));
                None
            }
        };
        violations.into_result()?;
        let key = ConnectorKey::new(&request.app_id, &request.connector_id);
        let scope = sync_scope(&key, request.state);
        let before_id = after_id(&request.page_token, &scope)?;

        let (syncs, next) = self.lifecycle.list_syncs(&key, before_id.as_deref(), page_size, state).await?;

        tracing::debug!(count = syncs.len(), "syncs listed");
        Ok(pb::ConnectorServiceListSyncsResponse {
            list: syncs.into_iter().map(Into::into).collect(),
            next_page_token: next.map(|id| page_token::encode(&scope, &id)).unwrap_or_default(),
        })
    }

    pub(super) async fn handle_cancel_sync(
        &self,
        request: pb::ConnectorServiceCancelSyncRequest,
    ) -> Result<pb::ConnectorServiceCancelSyncResponse, Error> {
        let key = record_key(&request.app_id, &request.connector_id, "id", &request.id)?;

        let sync = self.lifecycle.cancel_sync(&key, &request.id).await?;

        tracing::info!(sync_id = %sync.id, "sync cancelled");
        Ok(pb::ConnectorServiceCancelSyncResponse { sync: Some(sync.into()) })
    }
}

/// Reads the schedule to set, or `None` to remove it. A request without `cron` is rejected
/// rather than read as a removal, so a misspelled field cannot remove a schedule.
fn requested_schedule(request: &pb::ConnectorServiceUpdateConnectorScheduleRequest) -> Result<Option<(&str, &str)>, Error> {
    let Some(pb::connector_service_update_connector_schedule_request::Schedule::Cron(cron)) = &request.schedule else {
        return Err(Error::invalid(
            "cron",
            "is missing: send cron with a cron_spec to set the schedule, or with an empty cron_spec to remove it",
        ));
    };
    if !cron.cron_spec.is_empty() {
        return Ok(Some((cron.cron_spec.as_str(), cron.timezone.as_str())));
    }
    if !cron.timezone.is_empty() {
        return Err(Error::invalid(
            "cron.timezone",
            format!("is {:?} but cron_spec is empty, which removes the schedule; send a cron_spec or no timezone", cron.timezone),
        ));
    }
    Ok(None)
}
