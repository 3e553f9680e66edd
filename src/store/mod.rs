//! Durable storage of connectors behind the [`Store`] trait.
//!
//! A store knows keys, encodings and durability. Every write method returns only after the
//! change is durable, and every multi-key change is atomic.

mod backend;
mod disk_space;
mod group_commit;
pub mod migrate;
pub mod postgres;
mod record;
pub mod sled_store;

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::domain::{Connector, ConnectorKey, Credential, SyncRun, SyncState};

pub use backend::{OpenStoreError, StoreBackend, open_store};
pub use postgres::{DatabaseUrl, PostgresStore, PostgresStoreOptions};
pub use sled_store::{SledStore, SledStoreOptions};

/// Failure of a store operation.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The stored revision differs from the expected one (another write came first), or a
    /// uniqueness rule would break. The text names the record.
    #[error("{0}")]
    Conflict(String),
    #[error("{0} not found")]
    NotFound(String),
    #[error("stored record {key} is corrupt: {reason}")]
    Corrupt { key: String, reason: String },
    /// The disk is full; reads still work.
    #[error("no space left for the write: {0}")]
    NoSpace(String),
    /// The write was applied in memory but the flush that makes it durable failed, so it
    /// must not be acknowledged.
    #[error("flushing to disk failed: {0}")]
    Flush(String),
    #[error("storage engine failed: {0}")]
    Backend(String),
    /// The store is shutting down and accepts no more writes.
    #[error("store is closed")]
    Closed,
    /// The database server cannot be reached or cannot serve now (lost connection,
    /// timeout, restart); retrying later may succeed. The text is safe to show to clients.
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
}

/// Outcome of [`Store::insert_connector`].
#[derive(Debug, Clone, PartialEq)]
#[expect(clippy::large_enum_variant, reason = "one value per create call, moved once; boxing would not pay")]
pub enum Inserted {
    /// The connector was stored.
    Created,
    /// The request id was seen before for this app; this is the connector it created.
    Replayed(Connector),
}

/// Stored connectors, their per-app ordering and request-id index.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Stores a new connector. With a request id, atomically records it for the app, or
    /// returns the connector that an earlier insert with the same id created.
    async fn insert_connector(&self, connector: &Connector, request_id: Option<&str>) -> Result<Inserted, StoreError>;

    async fn get_connector(&self, key: &ConnectorKey) -> Result<Option<Connector>, StoreError>;

    /// Returns up to `limit` connectors of an app in id order, starting after `after_id`.
    /// The cost depends on `limit`, not on the number of connectors stored.
    async fn list_connectors(
        &self,
        app_id: &str,
        after_id: Option<&str>,
        limit: usize,
        include_deleted: bool,
    ) -> Result<Vec<Connector>, StoreError>;

    /// Writes every record of the batch atomically, each only if its stored revision is the
    /// expected one. The indexes stay in step: the live-connector list, the schedule queue,
    /// the single pending sync per connector, sync leases, ForceSync request ids and
    /// credential client ids. Fails with [`StoreError::Conflict`] and writes nothing when a
    /// revision differs or a second pending sync, request id or client id would appear.
    async fn apply(&self, batch: &Batch) -> Result<(), StoreError>;

    async fn get_sync(&self, key: &ConnectorKey, sync_id: &str) -> Result<Option<SyncRun>, StoreError>;

    /// Returns up to `limit` syncs of a connector, newest first, starting before `before_id`,
    /// optionally only those in one state.
    async fn list_syncs(
        &self,
        key: &ConnectorKey,
        before_id: Option<&str>,
        limit: usize,
        state: Option<SyncState>,
    ) -> Result<Vec<SyncRun>, StoreError>;

    /// Returns the connector's pending sync, if any.
    async fn pending_sync(&self, key: &ConnectorKey) -> Result<Option<SyncRun>, StoreError>;

    /// Returns the sync that a ForceSync with this request id queued.
    async fn find_sync_by_request_id(&self, key: &ConnectorKey, request_id: &str) -> Result<Option<SyncRun>, StoreError>;

    /// Returns up to `limit` running syncs whose lease ended at or before `now`, oldest first.
    async fn expired_leases(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<SyncRun>, StoreError>;

    /// Returns up to `limit` connectors whose next scheduled run is at or before `now`.
    async fn due_schedules(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<ConnectorKey>, StoreError>;

    async fn get_credential(&self, key: &ConnectorKey, credential_id: &str) -> Result<Option<Credential>, StoreError>;

    /// Returns up to `limit` credentials of a connector, newest first, starting before
    /// `before_id`; revoked and expired ones included.
    async fn list_credentials(&self, key: &ConnectorKey, before_id: Option<&str>, limit: usize) -> Result<Vec<Credential>, StoreError>;

    async fn find_credential(&self, client_id: &str) -> Result<Option<Credential>, StoreError>;

    /// Forgets request ids recorded before `cutoff`; returns how many were removed.
    async fn purge_request_ids(&self, cutoff: DateTime<Utc>) -> Result<usize, StoreError>;

    /// Waits until every acknowledged write is durable and stops accepting writes.
    async fn close(&self) -> Result<(), StoreError>;

    /// Returns the error that writes would fail with now for a reason that outlasts one
    /// request, such as a full disk, or `Ok` when writes are expected to succeed.
    fn check_writable(&self) -> Result<(), StoreError> {
        Ok(())
    }

    /// Takes or renews the lease `name` for `holder` until `duration` from now, and returns
    /// whether `holder` holds it afterwards. A lease that its holder stopped renewing passes
    /// to the next caller once `duration` has run out. A store that only one process opens
    /// grants every call, which the default does.
    async fn acquire_lease(&self, name: &str, holder: &str, duration: Duration) -> Result<bool, StoreError> {
        let _ = (name, holder, duration);
        Ok(true)
    }

    /// Ends the lease `name` if `holder` holds it, so that the next caller gets it at once.
    async fn release_lease(&self, name: &str, holder: &str) -> Result<(), StoreError> {
        let _ = (name, holder);
        Ok(())
    }
}

/// A record to write and the revision it must have in the store, `None` for a new record.
#[derive(Debug, Clone)]
pub struct Versioned<T> {
    pub record: T,
    pub expected_revision: Option<u64>,
}

impl<T> Versioned<T> {
    pub fn new(record: T) -> Self {
        Self { record, expected_revision: None }
    }

    pub fn replacing(record: T, expected_revision: u64) -> Self {
        Self { record, expected_revision: Some(expected_revision) }
    }
}

/// Records that [`Store::apply`] writes together or not at all.
#[derive(Debug, Clone, Default)]
pub struct Batch {
    pub connector: Option<Versioned<Connector>>,
    pub syncs: Vec<Versioned<SyncRun>>,
    pub credentials: Vec<Versioned<Credential>>,
}

impl Batch {
    pub fn replace_connector(connector: Connector, expected_revision: u64) -> Self {
        Self { connector: Some(Versioned::replacing(connector, expected_revision)), ..Self::default() }
    }
}
