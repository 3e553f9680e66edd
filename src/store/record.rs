//! On-disk encoding of stored records: a format-version byte, for connectors the revision,
//! then a protobuf message defined here (not the API's, so the API can change freely).

use chrono::{DateTime, Utc};

use super::StoreError;
use crate::domain::{
    Config, Connector, ConnectorStatus, Credential, OAuthGrant, Schedule, SecretHash, SyncDisabled, SyncRun, SyncState, SyncStatus,
    SyncTrigger,
};

/// Version of the record layout below; readers reject any other value.
const FORMAT_VERSION: u8 = 1;
const HEADER_LEN: usize = 1 + 8;

#[derive(Clone, PartialEq, prost::Message)]
struct ConnectorRecord {
    #[prost(string, tag = "1")]
    id: String,
    #[prost(string, tag = "2")]
    app_id: String,
    #[prost(string, tag = "3")]
    catalog_id: String,
    #[prost(string, tag = "4")]
    display_name: String,
    #[prost(string, tag = "5")]
    description: String,
    #[prost(string, repeated, tag = "6")]
    user_ids: Vec<String>,
    #[prost(message, optional, tag = "7")]
    config: Option<ConfigRecord>,
    #[prost(message, optional, tag = "8")]
    status: Option<StatusRecord>,
    #[prost(message, optional, tag = "9")]
    oauth_authorized_as: Option<OAuthRecord>,
    #[prost(string, tag = "10")]
    download_url: String,
    #[prost(int64, tag = "11")]
    created_at_nanos: i64,
    #[prost(int64, tag = "12")]
    updated_at_nanos: i64,
    #[prost(int64, optional, tag = "13")]
    deleted_at_nanos: Option<i64>,
    #[prost(message, optional, tag = "14")]
    sync_config: Option<SyncConfigRecord>,
    #[prost(string, repeated, tag = "15")]
    profile_allow_list: Vec<String>,
    #[prost(string, repeated, tag = "16")]
    profile_ignore_list: Vec<String>,
    #[prost(bool, tag = "17")]
    disable_check_bad_sync: bool,
    #[prost(bool, tag = "18")]
    can_resume_sync: bool,
    #[prost(message, optional, tag = "19")]
    sync_disabled: Option<SyncDisabledRecord>,
    #[prost(message, optional, tag = "20")]
    schedule: Option<ScheduleRecord>,
    #[prost(bytes = "vec", tag = "21")]
    secret_salt: Vec<u8>,
    /// The connector's `etag_revision`, left out when it equals the revision, as it does in
    /// records written before the field existed.
    #[prost(uint64, optional, tag = "22")]
    etag_revision: Option<u64>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct ScheduleRecord {
    #[prost(string, tag = "1")]
    cron_spec: String,
    #[prost(string, tag = "2")]
    timezone: String,
    #[prost(int64, optional, tag = "3")]
    next_run_at_nanos: Option<i64>,
    #[prost(int64, optional, tag = "4")]
    last_run_at_nanos: Option<i64>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct SyncRecord {
    #[prost(string, tag = "1")]
    id: String,
    #[prost(string, tag = "2")]
    app_id: String,
    #[prost(string, tag = "3")]
    connector_id: String,
    /// 1 manual, 2 schedule, 3 resume, 4 confirm.
    #[prost(int32, tag = "4")]
    trigger: i32,
    /// 1 pending, 2 running, 3 done, 4 error, 5 cancelled.
    #[prost(int32, tag = "5")]
    state: i32,
    #[prost(int64, tag = "6")]
    created_at_nanos: i64,
    #[prost(int64, optional, tag = "7")]
    started_at_nanos: Option<i64>,
    #[prost(int64, optional, tag = "8")]
    completed_at_nanos: Option<i64>,
    #[prost(int64, tag = "9")]
    updated_at_nanos: i64,
    #[prost(string, tag = "10")]
    error: String,
    #[prost(bool, tag = "11")]
    data_drop: bool,
    #[prost(string, tag = "12")]
    artifact_url: String,
    #[prost(bool, tag = "13")]
    confirmed: bool,
    #[prost(int64, optional, tag = "14")]
    lease_expires_at_nanos: Option<i64>,
    #[prost(string, optional, tag = "15")]
    request_id: Option<String>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct CredentialRecord {
    #[prost(string, tag = "1")]
    id: String,
    #[prost(string, tag = "2")]
    app_id: String,
    #[prost(string, tag = "3")]
    connector_id: String,
    #[prost(string, tag = "4")]
    client_id: String,
    #[prost(string, tag = "5")]
    display_name: String,
    #[prost(bytes = "vec", tag = "6")]
    secret_sha256: Vec<u8>,
    #[prost(int64, tag = "7")]
    created_at_nanos: i64,
    #[prost(int64, tag = "8")]
    updated_at_nanos: i64,
    #[prost(int64, optional, tag = "9")]
    deleted_at_nanos: Option<i64>,
    #[prost(int64, optional, tag = "10")]
    expires_at_nanos: Option<i64>,
    #[prost(int64, optional, tag = "11")]
    last_used_at_nanos: Option<i64>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct ConfigRecord {
    #[prost(string, tag = "1")]
    type_url: String,
    #[prost(bytes = "vec", tag = "2")]
    value: Vec<u8>,
    // NOTE: records written before this field existed read as having no recorded secret
    // keys, so until an update rewrites them they follow only the server's current list.
    #[prost(string, repeated, tag = "3")]
    secret_keys: Vec<String>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct StatusRecord {
    /// 0 unspecified, 1 running, 2 done, 3 error, 4 disabled.
    #[prost(int32, tag = "1")]
    status: i32,
    #[prost(string, tag = "2")]
    last_error: String,
    #[prost(int64, optional, tag = "3")]
    started_at_nanos: Option<i64>,
    #[prost(int64, optional, tag = "4")]
    completed_at_nanos: Option<i64>,
    #[prost(int64, optional, tag = "5")]
    updated_at_nanos: Option<i64>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct OAuthRecord {
    #[prost(string, tag = "1")]
    auth_email: String,
    #[prost(int64, optional, tag = "2")]
    authorized_at_nanos: Option<i64>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct SyncConfigRecord {
    #[prost(string, repeated, tag = "1")]
    sync_resource_type_ids: Vec<String>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct SyncDisabledRecord {
    #[prost(int64, tag = "1")]
    at_nanos: i64,
    #[prost(string, tag = "2")]
    category: String,
    #[prost(string, tag = "3")]
    reason: String,
}

#[derive(Clone, PartialEq, prost::Message)]
struct RequestIdRecord {
    #[prost(string, tag = "1")]
    connector_id: String,
    #[prost(int64, tag = "2")]
    recorded_at_nanos: i64,
}

/// Encodes a record with its revision in the header, so that conditional writes can
/// compare revisions without decoding the message.
fn encode_versioned(revision: u64, record: &impl prost::Message) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(HEADER_LEN + record.encoded_len());
    bytes.push(FORMAT_VERSION);
    bytes.extend_from_slice(&revision.to_be_bytes());
    record.encode(&mut bytes).expect("a Vec grows to fit any message");
    bytes
}

fn decode_versioned<M: prost::Message + Default>(key: &[u8], bytes: &[u8], kind: &str) -> Result<(u64, M), StoreError> {
    let revision = stored_revision(key, bytes)?;
    let record = M::decode(&bytes[HEADER_LEN..]).map_err(|error| corrupt(key, format!("undecodable {kind} record: {error}")))?;
    Ok((revision, record))
}

pub(super) fn encode_connector(connector: &Connector) -> Vec<u8> {
    encode_versioned(connector.revision, &ConnectorRecord::from(connector))
}

pub(super) fn decode_connector(key: &[u8], bytes: &[u8]) -> Result<Connector, StoreError> {
    let (revision, record) = decode_versioned::<ConnectorRecord>(key, bytes, "connector")?;
    Ok(record.into_connector(revision))
}

pub(super) fn encode_sync(sync: &SyncRun) -> Vec<u8> {
    encode_versioned(sync.revision, &SyncRecord::from(sync))
}

pub(super) fn decode_sync(key: &[u8], bytes: &[u8]) -> Result<SyncRun, StoreError> {
    let (revision, record) = decode_versioned::<SyncRecord>(key, bytes, "sync")?;
    record.into_sync(revision).map_err(|reason| corrupt(key, reason))
}

pub(super) fn encode_credential(credential: &Credential) -> Vec<u8> {
    encode_versioned(credential.revision, &CredentialRecord::from(credential))
}

pub(super) fn decode_credential(key: &[u8], bytes: &[u8]) -> Result<Credential, StoreError> {
    let (revision, record) = decode_versioned::<CredentialRecord>(key, bytes, "credential")?;
    record.into_credential(revision).map_err(|reason| corrupt(key, reason))
}

/// Reads the revision from an encoded connector's header.
pub(super) fn stored_revision(key: &[u8], bytes: &[u8]) -> Result<u64, StoreError> {
    check_version(key, bytes)?;
    if bytes.len() < HEADER_LEN {
        return Err(corrupt(key, format!("record of {} bytes is shorter than its header", bytes.len())));
    }
    let revision: [u8; 8] = bytes[1..HEADER_LEN].try_into().expect("slice of 8 bytes");
    Ok(u64::from_be_bytes(revision))
}

pub(super) fn encode_request_id(connector_id: &str, recorded_at: DateTime<Utc>) -> Vec<u8> {
    let record = RequestIdRecord { connector_id: connector_id.to_owned(), recorded_at_nanos: to_nanos(recorded_at) };
    let mut bytes = vec![FORMAT_VERSION];
    prost::Message::encode(&record, &mut bytes).expect("a Vec grows to fit any message");
    bytes
}

/// Returns the connector id and the time a request id was recorded.
pub(super) fn decode_request_id(key: &[u8], bytes: &[u8]) -> Result<(String, DateTime<Utc>), StoreError> {
    check_version(key, bytes)?;
    let record: RequestIdRecord =
        prost::Message::decode(&bytes[1..]).map_err(|error| corrupt(key, format!("undecodable request-id record: {error}")))?;
    Ok((record.connector_id, from_nanos(record.recorded_at_nanos)))
}

fn check_version(key: &[u8], bytes: &[u8]) -> Result<(), StoreError> {
    match bytes.first() {
        Some(&FORMAT_VERSION) => Ok(()),
        Some(other) => Err(corrupt(
            key,
            format!("format version {other} is not supported (expected {FORMAT_VERSION}); was the data written by a newer connectord?"),
        )),
        None => Err(corrupt(key, "empty record".to_owned())),
    }
}

fn corrupt(key: &[u8], reason: String) -> StoreError {
    StoreError::Corrupt { key: String::from_utf8_lossy(key).replace('\0', "/"), reason }
}

pub(super) fn to_nanos(time: DateTime<Utc>) -> i64 {
    // Out of range only after the year 2262.
    time.timestamp_nanos_opt().unwrap_or(i64::MAX)
}

fn from_nanos(nanos: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_nanos(nanos)
}

fn status_code(status: SyncStatus) -> i32 {
    match status {
        SyncStatus::Unspecified => 0,
        SyncStatus::Running => 1,
        SyncStatus::Done => 2,
        SyncStatus::Error => 3,
        SyncStatus::Disabled => 4,
    }
}

fn status_from_code(code: i32) -> SyncStatus {
    match code {
        1 => SyncStatus::Running,
        2 => SyncStatus::Done,
        3 => SyncStatus::Error,
        4 => SyncStatus::Disabled,
        _ => SyncStatus::Unspecified,
    }
}

impl From<&Connector> for ConnectorRecord {
    fn from(connector: &Connector) -> Self {
        let status = &connector.status;
        Self {
            id: connector.id.clone(),
            app_id: connector.app_id.clone(),
            catalog_id: connector.catalog_id.clone(),
            display_name: connector.display_name.clone(),
            description: connector.description.clone(),
            user_ids: connector.user_ids.clone(),
            config: connector.config.as_ref().map(|config| ConfigRecord {
                type_url: config.type_url.clone(),
                value: config.value.clone(),
                secret_keys: config.secret_keys.clone(),
            }),
            status: Some(StatusRecord {
                status: status_code(status.status),
                last_error: status.last_error.clone(),
                started_at_nanos: status.started_at.map(to_nanos),
                completed_at_nanos: status.completed_at.map(to_nanos),
                updated_at_nanos: status.updated_at.map(to_nanos),
            }),
            oauth_authorized_as: connector
                .oauth_authorized_as
                .as_ref()
                .map(|grant| OAuthRecord { auth_email: grant.auth_email.clone(), authorized_at_nanos: grant.authorized_at.map(to_nanos) }),
            download_url: connector.download_url.clone(),
            created_at_nanos: to_nanos(connector.created_at),
            updated_at_nanos: to_nanos(connector.updated_at),
            deleted_at_nanos: connector.deleted_at.map(to_nanos),
            sync_config: connector.sync_resource_type_ids.as_ref().map(|ids| SyncConfigRecord { sync_resource_type_ids: ids.clone() }),
            profile_allow_list: connector.profile_allow_list.clone(),
            profile_ignore_list: connector.profile_ignore_list.clone(),
            disable_check_bad_sync: connector.disable_check_bad_sync,
            can_resume_sync: connector.can_resume_sync,
            sync_disabled: connector.sync_disabled.as_ref().map(|disabled| SyncDisabledRecord {
                at_nanos: to_nanos(disabled.at),
                category: disabled.category.clone(),
                reason: disabled.reason.clone(),
            }),
            schedule: connector.schedule.as_ref().map(|schedule| ScheduleRecord {
                cron_spec: schedule.cron_spec.clone(),
                timezone: schedule.timezone.clone(),
                next_run_at_nanos: schedule.next_run_at.map(to_nanos),
                last_run_at_nanos: schedule.last_run_at.map(to_nanos),
            }),
            secret_salt: connector.secret_salt.clone(),
            etag_revision: Some(connector.etag_revision).filter(|etag_revision| *etag_revision != connector.revision),
        }
    }
}

impl ConnectorRecord {
    fn into_connector(self, revision: u64) -> Connector {
        let status = self.status.unwrap_or_default();
        Connector {
            id: self.id,
            app_id: self.app_id,
            catalog_id: self.catalog_id,
            display_name: self.display_name,
            description: self.description,
            user_ids: self.user_ids,
            config: self.config.map(|config| Config { type_url: config.type_url, value: config.value, secret_keys: config.secret_keys }),
            status: ConnectorStatus {
                status: status_from_code(status.status),
                last_error: status.last_error,
                started_at: status.started_at_nanos.map(from_nanos),
                completed_at: status.completed_at_nanos.map(from_nanos),
                updated_at: status.updated_at_nanos.map(from_nanos),
            },
            oauth_authorized_as: self
                .oauth_authorized_as
                .map(|grant| OAuthGrant { auth_email: grant.auth_email, authorized_at: grant.authorized_at_nanos.map(from_nanos) }),
            download_url: self.download_url,
            created_at: from_nanos(self.created_at_nanos),
            updated_at: from_nanos(self.updated_at_nanos),
            deleted_at: self.deleted_at_nanos.map(from_nanos),
            sync_resource_type_ids: self.sync_config.map(|config| config.sync_resource_type_ids),
            profile_allow_list: self.profile_allow_list,
            profile_ignore_list: self.profile_ignore_list,
            disable_check_bad_sync: self.disable_check_bad_sync,
            can_resume_sync: self.can_resume_sync,
            sync_disabled: self.sync_disabled.map(|disabled| SyncDisabled {
                at: from_nanos(disabled.at_nanos),
                category: disabled.category,
                reason: disabled.reason,
            }),
            schedule: self.schedule.map(|schedule| Schedule {
                cron_spec: schedule.cron_spec,
                timezone: schedule.timezone,
                next_run_at: schedule.next_run_at_nanos.map(from_nanos),
                last_run_at: schedule.last_run_at_nanos.map(from_nanos),
            }),
            secret_salt: self.secret_salt,
            revision,
            etag_revision: self.etag_revision.unwrap_or(revision),
        }
    }
}

fn trigger_code(trigger: SyncTrigger) -> i32 {
    match trigger {
        SyncTrigger::Manual => 1,
        SyncTrigger::Schedule => 2,
        SyncTrigger::Resume => 3,
        SyncTrigger::Confirm => 4,
    }
}

fn state_code(state: SyncState) -> i32 {
    match state {
        SyncState::Pending => 1,
        SyncState::Running => 2,
        SyncState::Done => 3,
        SyncState::Error => 4,
        SyncState::Cancelled => 5,
    }
}

impl From<&SyncRun> for SyncRecord {
    fn from(sync: &SyncRun) -> Self {
        Self {
            id: sync.id.clone(),
            app_id: sync.app_id.clone(),
            connector_id: sync.connector_id.clone(),
            trigger: trigger_code(sync.trigger),
            state: state_code(sync.state),
            created_at_nanos: to_nanos(sync.created_at),
            started_at_nanos: sync.started_at.map(to_nanos),
            completed_at_nanos: sync.completed_at.map(to_nanos),
            updated_at_nanos: to_nanos(sync.updated_at),
            error: sync.error.clone(),
            data_drop: sync.data_drop,
            artifact_url: sync.artifact_url.clone(),
            confirmed: sync.confirmed,
            lease_expires_at_nanos: sync.lease_expires_at.map(to_nanos),
            request_id: sync.request_id.clone(),
        }
    }
}

impl SyncRecord {
    fn into_sync(self, revision: u64) -> Result<SyncRun, String> {
        let trigger = match self.trigger {
            1 => SyncTrigger::Manual,
            2 => SyncTrigger::Schedule,
            3 => SyncTrigger::Resume,
            4 => SyncTrigger::Confirm,
            other => return Err(format!("unknown sync trigger {other}")),
        };
        let state = match self.state {
            1 => SyncState::Pending,
            2 => SyncState::Running,
            3 => SyncState::Done,
            4 => SyncState::Error,
            5 => SyncState::Cancelled,
            other => return Err(format!("unknown sync state {other}")),
        };
        Ok(SyncRun {
            id: self.id,
            app_id: self.app_id,
            connector_id: self.connector_id,
            trigger,
            state,
            created_at: from_nanos(self.created_at_nanos),
            started_at: self.started_at_nanos.map(from_nanos),
            completed_at: self.completed_at_nanos.map(from_nanos),
            updated_at: from_nanos(self.updated_at_nanos),
            error: self.error,
            data_drop: self.data_drop,
            artifact_url: self.artifact_url,
            confirmed: self.confirmed,
            lease_expires_at: self.lease_expires_at_nanos.map(from_nanos),
            request_id: self.request_id,
            revision,
        })
    }
}

impl From<&Credential> for CredentialRecord {
    fn from(credential: &Credential) -> Self {
        Self {
            id: credential.id.clone(),
            app_id: credential.app_id.clone(),
            connector_id: credential.connector_id.clone(),
            client_id: credential.client_id.clone(),
            display_name: credential.display_name.clone(),
            secret_sha256: credential.secret_hash.0.to_vec(),
            created_at_nanos: to_nanos(credential.created_at),
            updated_at_nanos: to_nanos(credential.updated_at),
            deleted_at_nanos: credential.deleted_at.map(to_nanos),
            expires_at_nanos: credential.expires_at.map(to_nanos),
            last_used_at_nanos: credential.last_used_at.map(to_nanos),
        }
    }
}

impl CredentialRecord {
    fn into_credential(self, revision: u64) -> Result<Credential, String> {
        let hash: [u8; 32] = self
            .secret_sha256
            .as_slice()
            .try_into()
            .map_err(|_| format!("secret hash has {} bytes, expected 32", self.secret_sha256.len()))?;
        Ok(Credential {
            id: self.id,
            app_id: self.app_id,
            connector_id: self.connector_id,
            client_id: self.client_id,
            display_name: self.display_name,
            secret_hash: SecretHash(hash),
            created_at: from_nanos(self.created_at_nanos),
            updated_at: from_nanos(self.updated_at_nanos),
            deleted_at: self.deleted_at_nanos.map(from_nanos),
            expires_at: self.expires_at_nanos.map(from_nanos),
            last_used_at: self.last_used_at_nanos.map(from_nanos),
            revision,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Connector {
        let now = DateTime::from_timestamp_nanos(1_700_000_000_123_456_789);
        Connector {
            id: "01HZX".into(),
            app_id: "app".into(),
            catalog_id: "okta".into(),
            display_name: "Okta".into(),
            description: "prod".into(),
            user_ids: vec!["u1".into()],
            config: Some(Config { type_url: "type.googleapis.com/x.Y".into(), value: vec![1, 2], secret_keys: vec!["password".into()] }),
            status: ConnectorStatus {
                status: SyncStatus::Error,
                last_error: "boom".into(),
                started_at: Some(now),
                completed_at: None,
                updated_at: Some(now),
            },
            oauth_authorized_as: Some(OAuthGrant { auth_email: "a@b".into(), authorized_at: Some(now) }),
            download_url: "https://example.test/x".into(),
            created_at: now,
            updated_at: now,
            deleted_at: Some(now),
            sync_resource_type_ids: Some(vec!["user".into()]),
            profile_allow_list: vec!["email".into()],
            profile_ignore_list: vec!["phone".into()],
            disable_check_bad_sync: true,
            can_resume_sync: true,
            sync_disabled: Some(SyncDisabled { at: now, category: "paused".into(), reason: "r".into() }),
            schedule: Some(Schedule { cron_spec: "0 * * * *".into(), timezone: "UTC".into(), next_run_at: Some(now), last_run_at: None }),
            secret_salt: vec![9; 16],
            revision: 7,
            etag_revision: 5,
        }
    }

    #[test]
    fn connector_round_trips_through_record() {
        let connector = sample();
        let bytes = encode_connector(&connector);
        assert_eq!(stored_revision(b"k", &bytes).unwrap(), 7);
        assert_eq!(decode_connector(b"k", &bytes).unwrap(), connector);
    }

    #[test]
    fn unknown_format_version_is_corrupt() {
        let mut bytes = encode_connector(&sample());
        bytes[0] = 99;
        let error = decode_connector(b"app\0id", &bytes).unwrap_err();
        assert!(matches!(error, StoreError::Corrupt { ref key, .. } if key == "app/id"), "{error}");
    }

    #[test]
    fn truncated_record_is_corrupt() {
        let error = decode_connector(b"k", &[FORMAT_VERSION, 0, 0]).unwrap_err();
        assert!(matches!(error, StoreError::Corrupt { .. }), "{error}");
    }
}
