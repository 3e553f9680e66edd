//! `connectord migrate`: copies every record of a sled store into a PostgreSQL store and
//! verifies the copy.
//!
//! The copy inserts each record unless a record with its key exists already, so a second
//! run after an interruption inserts the rest and changes nothing else. The check then
//! compares counts and every record, so a target that held other data, or records that
//! differ from the source, fail the command.

use chrono::{DateTime, Utc};

use super::{PostgresStore, SledStore, Store, StoreError};
use crate::domain::{Connector, ConnectorKey, Credential, SyncRun};

/// Every record of a store: connectors (deleted ones included), syncs, credentials (secret
/// hashes only) and the request ids of Create calls.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub connectors: Vec<Connector>,
    pub syncs: Vec<SyncRun>,
    pub credentials: Vec<Credential>,
    pub request_ids: Vec<RequestIdEntry>,
}

/// A recorded Create request id and the connector it created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestIdEntry {
    pub app_id: String,
    pub request_id: String,
    pub connector_id: String,
    pub recorded_at: DateTime<Utc>,
}

/// Number of records of each kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecordCounts {
    pub connectors: u64,
    pub syncs: u64,
    pub credentials: u64,
    pub request_ids: u64,
}

impl Snapshot {
    pub fn counts(&self) -> RecordCounts {
        let count = |length: usize| u64::try_from(length).unwrap_or(u64::MAX);
        RecordCounts {
            connectors: count(self.connectors.len()),
            syncs: count(self.syncs.len()),
            credentials: count(self.credentials.len()),
            request_ids: count(self.request_ids.len()),
        }
    }
}

/// Outcome of a verified copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MigrationReport {
    /// Records in the source, and after the copy in the target.
    pub records: RecordCounts,
    /// Records this run inserted; the rest were in the target already.
    pub inserted: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the copy does not match the source: {0}")]
    Mismatch(String),
}

/// Copies every record of `source` into `target` and verifies the copy. Stop every server
/// on both stores first, because writes during the copy may be missed or fail the check.
pub async fn copy_sled_to_postgres(source: &SledStore, target: &PostgresStore) -> Result<MigrationReport, MigrateError> {
    let snapshot = source.snapshot()?;
    let inserted = target.import(&snapshot).await?;
    verify(&snapshot, target).await?;
    Ok(MigrationReport { records: snapshot.counts(), inserted })
}

async fn verify(snapshot: &Snapshot, target: &PostgresStore) -> Result<(), MigrateError> {
    let expected = snapshot.counts();
    let found = target.count_records().await?;
    if found != expected {
        return Err(MigrateError::Mismatch(format!(
            "the target contains {found:?} and the source {expected:?}; migrate only into an empty database"
        )));
    }
    for connector in &snapshot.connectors {
        if target.get_connector(&connector.key()).await?.as_ref() != Some(connector) {
            return Err(MigrateError::Mismatch(format!("connector {} differs", connector.key())));
        }
    }
    for sync in &snapshot.syncs {
        let key = ConnectorKey::new(&sync.app_id, &sync.connector_id);
        if target.get_sync(&key, &sync.id).await?.as_ref() != Some(sync) {
            return Err(MigrateError::Mismatch(format!("sync {} of connector {key} differs", sync.id)));
        }
    }
    for credential in &snapshot.credentials {
        let key = ConnectorKey::new(&credential.app_id, &credential.connector_id);
        if target.get_credential(&key, &credential.id).await?.as_ref() != Some(credential) {
            return Err(MigrateError::Mismatch(format!("credential {} of connector {key} differs", credential.id)));
        }
    }
    for entry in &snapshot.request_ids {
        if target.request_id_connector(&entry.app_id, &entry.request_id).await?.as_deref() != Some(entry.connector_id.as_str()) {
            return Err(MigrateError::Mismatch(format!("request id {} of app {} differs", entry.request_id, entry.app_id)));
        }
    }
    Ok(())
}
