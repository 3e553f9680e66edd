//! Conversions from domain values to generated protobuf messages.

use crate::log_throttle::{LOG_INTERVAL, LogThrottle};
use chrono::{DateTime, Utc};

use crate::{
    domain::{ConfigTypes, Connector, Credential, SyncRun, SyncState, SyncStatus, SyncTrigger},
    pb,
};

pub fn timestamp(time: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp { seconds: time.timestamp(), nanos: time.timestamp_subsec_nanos() as i32 }
}

fn optional_timestamp(time: Option<DateTime<Utc>>) -> Option<prost_types::Timestamp> {
    time.map(timestamp)
}

fn sync_status(status: SyncStatus) -> pb::connector_status::SyncStatus {
    use pb::connector_status::SyncStatus as Wire;
    match status {
        SyncStatus::Unspecified => Wire::Unspecified,
        SyncStatus::Running => Wire::Running,
        SyncStatus::Done => Wire::Done,
        SyncStatus::Error => Wire::Error,
        SyncStatus::Disabled => Wire::Disabled,
    }
}

impl From<Connector> for pb::Connector {
    fn from(connector: Connector) -> Self {
        let etag = connector.etag();
        let status = connector.status;
        let sync_disabled = connector.sync_disabled;
        pb::Connector {
            id: connector.id,
            app_id: connector.app_id,
            catalog_id: connector.catalog_id,
            display_name: connector.display_name,
            description: connector.description,
            user_ids: connector.user_ids,
            config: connector.config.map(|config| prost_types::Any { type_url: config.type_url, value: config.value }),
            status: Some(pb::ConnectorStatus {
                status: sync_status(status.status).into(),
                last_error: status.last_error,
                started_at: optional_timestamp(status.started_at),
                completed_at: optional_timestamp(status.completed_at),
                updated_at: optional_timestamp(status.updated_at),
            }),
            oauth_authorized_as: connector.oauth_authorized_as.map(|grant| pb::OAuth2AuthorizedAs {
                auth_email: grant.auth_email,
                authorized_at: optional_timestamp(grant.authorized_at),
            }),
            download_url: connector.download_url,
            created_at: Some(timestamp(connector.created_at)),
            updated_at: Some(timestamp(connector.updated_at)),
            deleted_at: optional_timestamp(connector.deleted_at),
            sync_config: connector.sync_resource_type_ids.map(|ids| pb::SyncConfig { sync_resource_type_ids: ids }),
            profile_allow_list: connector.profile_allow_list,
            profile_ignore_list: connector.profile_ignore_list,
            disable_check_bad_sync: connector.disable_check_bad_sync,
            can_resume_sync: connector.can_resume_sync,
            sync_disabled_at: sync_disabled.as_ref().map(|disabled| timestamp(disabled.at)),
            sync_disabled_category: sync_disabled.as_ref().map(|disabled| disabled.category.clone()).unwrap_or_default(),
            sync_disabled_reason: sync_disabled.map(|disabled| disabled.reason).unwrap_or_default(),
            etag,
            schedule: connector
                .schedule
                .map(|schedule| pb::ConnectorScheduleCron { cron_spec: schedule.cron_spec, timezone: schedule.timezone }),
            config_secrets: Vec::new(),
        }
    }
}

/// Wraps a connector in the view that every response carries, with config secrets masked.
/// Expansion is not supported yet, so the JSONPath fields stay empty.
pub fn view(mut connector: Connector, config_types: &ConfigTypes) -> pb::ConnectorView {
    let mut secrets = Vec::new();
    if let Some(config) = connector.config.take() {
        // A config whose type is not registered (the server started without the descriptor
        // set that defines it) may hold secrets that cannot be found, so it is withheld.
        match config_types.mask_secrets(&config, &connector.secret_salt) {
            Some((masked, statuses)) => {
                connector.config = Some(masked);
                secrets = statuses
                    .into_iter()
                    .map(|status| pb::ConfigSecret { path: status.path, set: status.set, fingerprint: status.fingerprint })
                    .collect();
            }
            None => {
                static LOG: LogThrottle = LogThrottle::new(LOG_INTERVAL);
                if let Some(withheld) = LOG.admit() {
                    tracing::warn!(
                        app_id = %connector.app_id,
                        connector_id = %connector.id,
                        type_url = %config.type_url,
                        withheld,
                        "config withheld from the response: its type is not registered; start the server with the --descriptor-set that defines it"
                    );
                }
            }
        }
    }
    let mut wire = pb::Connector::from(connector);
    wire.config_secrets = secrets;
    pb::ConnectorView { connector: Some(wire), app_path: String::new(), users_path: String::new() }
}

pub fn sync_state(state: SyncState) -> pb::sync::State {
    match state {
        SyncState::Pending => pb::sync::State::Pending,
        SyncState::Running => pb::sync::State::Running,
        SyncState::Done => pb::sync::State::Done,
        SyncState::Error => pb::sync::State::Error,
        SyncState::Cancelled => pb::sync::State::Cancelled,
    }
}

/// Converts a wire state filter; `None` for unspecified, which means any state.
pub fn sync_state_filter(state: pb::sync::State) -> Option<SyncState> {
    match state {
        pb::sync::State::Unspecified => None,
        pb::sync::State::Pending => Some(SyncState::Pending),
        pb::sync::State::Running => Some(SyncState::Running),
        pb::sync::State::Done => Some(SyncState::Done),
        pb::sync::State::Error => Some(SyncState::Error),
        pb::sync::State::Cancelled => Some(SyncState::Cancelled),
    }
}

fn sync_trigger(trigger: SyncTrigger) -> pb::sync::Trigger {
    match trigger {
        SyncTrigger::Manual => pb::sync::Trigger::Manual,
        SyncTrigger::Schedule => pb::sync::Trigger::Schedule,
        SyncTrigger::Resume => pb::sync::Trigger::Resume,
        SyncTrigger::Confirm => pb::sync::Trigger::Confirm,
    }
}

impl From<SyncRun> for pb::Sync {
    fn from(sync: SyncRun) -> Self {
        pb::Sync {
            id: sync.id,
            app_id: sync.app_id,
            connector_id: sync.connector_id,
            trigger: sync_trigger(sync.trigger).into(),
            state: sync_state(sync.state).into(),
            created_at: Some(timestamp(sync.created_at)),
            started_at: optional_timestamp(sync.started_at),
            completed_at: optional_timestamp(sync.completed_at),
            error: sync.error,
            data_drop: sync.data_drop,
            artifact_url: sync.artifact_url,
            confirmed: sync.confirmed,
            lease_expires_at: optional_timestamp(sync.lease_expires_at),
            updated_at: Some(timestamp(sync.updated_at)),
        }
    }
}

/// Converts credential metadata; `client_secret` stays empty, because only the rotation
/// response carries a secret.
impl From<Credential> for pb::ConnectorCredential {
    fn from(credential: Credential) -> Self {
        pb::ConnectorCredential {
            id: credential.id,
            app_id: credential.app_id,
            connector_id: credential.connector_id,
            client_id: credential.client_id,
            display_name: credential.display_name,
            created_at: Some(timestamp(credential.created_at)),
            updated_at: Some(timestamp(credential.updated_at)),
            deleted_at: optional_timestamp(credential.deleted_at),
            expires_time: optional_timestamp(credential.expires_at),
            last_used_at: optional_timestamp(credential.last_used_at),
            client_secret: String::new(),
        }
    }
}
