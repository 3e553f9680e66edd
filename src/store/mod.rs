//! Durable storage of connectors behind the [`Store`] trait.
//!
//! A store knows keys, encodings and durability. Every write method returns only after the
//! change is durable, and every multi-key change is atomic.

mod disk_space;
mod group_commit;
mod record;
pub mod sled_store;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::domain::{Connector, ConnectorKey};

pub use sled_store::{SledStore, SledStoreOptions};

/// Failure of a store operation.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The stored revision differs from the expected one: another write came first.
    #[error("{0} was changed by another write")]
    Conflict(ConnectorKey),
    #[error("{0} not found")]
    NotFound(ConnectorKey),
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
}

/// Outcome of [`Store::insert_connector`].
#[derive(Debug, Clone, PartialEq)]
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
    async fn insert_connector(
        &self,
        connector: &Connector,
        request_id: Option<&str>,
    ) -> Result<Inserted, StoreError>;

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

    /// Replaces a stored connector if its stored revision is `expected_revision`, otherwise
    /// fails with [`StoreError::Conflict`].
    async fn replace_connector(
        &self,
        connector: &Connector,
        expected_revision: u64,
    ) -> Result<(), StoreError>;

    /// Forgets request ids recorded before `cutoff`; returns how many were removed.
    async fn purge_request_ids(&self, cutoff: DateTime<Utc>) -> Result<usize, StoreError>;

    /// Waits until every acknowledged write is durable and stops accepting writes.
    async fn close(&self) -> Result<(), StoreError>;

    /// Returns the error that writes would fail with now for a reason that outlasts one
    /// request, such as a full disk, or `Ok` when writes are expected to succeed.
    fn check_writable(&self) -> Result<(), StoreError> {
        Ok(())
    }
}
