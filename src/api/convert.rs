//! Conversions from domain values to generated protobuf messages.

use chrono::{DateTime, Utc};

use crate::{
    domain::{Connector, SyncStatus},
    pb,
};

pub fn timestamp(time: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: time.timestamp(),
        nanos: time.timestamp_subsec_nanos() as i32,
    }
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
            config: connector
                .config
                .map(|config| prost_types::Any { type_url: config.type_url, value: config.value }),
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
            sync_config: connector
                .sync_resource_type_ids
                .map(|ids| pb::SyncConfig { sync_resource_type_ids: ids }),
            profile_allow_list: connector.profile_allow_list,
            profile_ignore_list: connector.profile_ignore_list,
            disable_check_bad_sync: connector.disable_check_bad_sync,
            can_resume_sync: connector.can_resume_sync,
            sync_disabled_at: sync_disabled.as_ref().map(|disabled| timestamp(disabled.at)),
            sync_disabled_category: sync_disabled
                .as_ref()
                .map(|disabled| disabled.category.clone())
                .unwrap_or_default(),
            sync_disabled_reason: sync_disabled.map(|disabled| disabled.reason).unwrap_or_default(),
            etag,
        }
    }
}

/// Wraps a connector in the view that every response carries. Expansion is not supported
/// yet, so the JSONPath fields stay empty.
pub fn view(connector: Connector) -> pb::ConnectorView {
    pb::ConnectorView { connector: Some(connector.into()), app_path: String::new(), users_path: String::new() }
}
