//! [`Store`] on an embedded sled database.
//!
//! Trees:
//! - `connectors`: `app_id \0 id` → encoded connector, deleted ones included;
//! - `live_connectors`: `app_id \0 id` → empty, present while the connector is not deleted;
//! - `request_ids`: `app_id \0 request_id` → the connector id it created and when.
//!
//! Ids and app ids never contain `\0` or `\x01` (the edge allows `[A-Za-z0-9_-]` only), so
//! the keys of one app are exactly the range `app_id \0 ..< app_id \x01`, in id order.

use std::{
    ops::Bound,
    path::{Path, PathBuf},
    sync::Arc,
};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sled::{
    Transactional,
    transaction::{ConflictableTransactionError, TransactionError},
};

use super::{
    Inserted, Store, StoreError,
    disk_space::{DiskSpaceReserve, is_no_space},
    group_commit::GroupCommit,
    record::{decode_connector, decode_request_id, encode_connector, encode_request_id, stored_revision},
};
use crate::domain::{Connector, ConnectorKey};

#[derive(Debug, Clone)]
pub struct SledStoreOptions {
    pub path: PathBuf,
    /// Size of sled's page cache in bytes.
    pub cache_capacity_bytes: u64,
    /// Writes fail with [`StoreError::NoSpace`] while fewer bytes than this are free on the
    /// data directory's file system; 0 turns the check off.
    pub min_free_disk_bytes: u64,
    /// UNSAFE, for tests only: acknowledge writes without waiting for a flush and turn off
    /// sled's periodic flush, so a crash loses acknowledged writes. Crash tests use it to
    /// show that their check detects lost writes.
    pub unsafe_skip_flush_for_tests: bool,
}

impl SledStoreOptions {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            cache_capacity_bytes: 256 * 1024 * 1024,
            min_free_disk_bytes: 0,
            unsafe_skip_flush_for_tests: false,
        }
    }
}

/// Failure to open the data directory.
#[derive(Debug, thiserror::Error)]
#[error("cannot open data directory {path}: {reason}")]
pub struct OpenError {
    pub path: PathBuf,
    pub reason: String,
}

pub struct SledStore {
    connectors: sled::Tree,
    live_connectors: sled::Tree,
    request_ids: sled::Tree,
    commit: Arc<GroupCommit>,
    disk_space: DiskSpaceReserve,
    skip_flush: bool,
}

impl SledStore {
    /// Opens or creates the database in `options.path` and starts its flusher task, so it
    /// must be called inside a tokio runtime. Fails when another process holds the
    /// directory's lock, or when the directory is unreadable or corrupt.
    pub fn open(options: &SledStoreOptions) -> Result<Self, OpenError> {
        let open_error = |reason: String| OpenError { path: options.path.clone(), reason };

        let periodic_flush_ms = if options.unsafe_skip_flush_for_tests {
            tracing::warn!("UNSAFE test mode: writes are acknowledged before they are durable");
            None
        } else {
            Some(500)
        };
        let db = sled::Config::new()
            .path(&options.path)
            .cache_capacity(options.cache_capacity_bytes)
            .flush_every_ms(periodic_flush_ms)
            .open()
            .map_err(|error| open_error(describe_open_error(&error)))?;
        let open_tree = |name: &str| {
            db.open_tree(name).map_err(|error| open_error(format!("cannot open tree {name}: {error}")))
        };
        let connectors = open_tree("connectors")?;
        let live_connectors = open_tree("live_connectors")?;
        let request_ids = open_tree("request_ids")?;

        let data_file = options.path.join("db");
        let flush_db = db.clone();
        let commit = GroupCommit::start(Arc::new(move || flush_durably(&flush_db, &data_file)));

        Ok(Self {
            connectors,
            live_connectors,
            request_ids,
            commit,
            disk_space: DiskSpaceReserve::new(options.path.clone(), options.min_free_disk_bytes),
            skip_flush: options.unsafe_skip_flush_for_tests,
        })
    }

    /// Checks the preconditions of a write: the store is open and the disk has room.
    fn ensure_open(&self) -> Result<(), StoreError> {
        if self.commit.is_closed() {
            return Err(StoreError::Closed);
        }
        self.disk_space.check()
    }

    async fn wait_durable(&self) -> Result<(), StoreError> {
        if self.skip_flush {
            return Ok(());
        }
        self.commit.wait_durable().await
    }

    fn read_connector(&self, key: &[u8]) -> Result<Option<Connector>, StoreError> {
        match self.connectors.get(key).map_err(backend_error)? {
            Some(bytes) => decode_connector(key, &bytes).map(Some),
            None => Ok(None),
        }
    }
}

/// Flushes sled's log, then fsyncs the data file: sled's own flush uses `sync_file_range`
/// on Linux, which does not reach the device cache, so without the fsync a power loss could
/// undo acknowledged writes.
fn flush_durably(db: &sled::Db, data_file: &Path) -> Result<(), StoreError> {
    db.flush().map_err(|error| match error {
        sled::Error::Io(io) if is_no_space(&io) => StoreError::NoSpace(io.to_string()),
        other => StoreError::Flush(other.to_string()),
    })?;
    let io_error = |action: &str, error: std::io::Error| {
        let message = format!("{action} {} failed: {error}", data_file.display());
        if is_no_space(&error) { StoreError::NoSpace(message) } else { StoreError::Flush(message) }
    };
    let file = std::fs::File::open(data_file).map_err(|error| io_error("opening for fsync", error))?;
    file.sync_data().map_err(|error| io_error("fsync of", error))
}

fn describe_open_error(error: &sled::Error) -> String {
    match error {
        sled::Error::Io(io) if io.kind() == std::io::ErrorKind::PermissionDenied => {
            format!("permission denied ({io}); check the directory's owner and mode")
        }
        sled::Error::Io(io) if io.to_string().contains("could not acquire lock") => {
            format!("{io}; is another connectord using this directory?")
        }
        sled::Error::Corruption { at, .. } => {
            format!("the database is corrupt (at {at:?}); restore it from a backup")
        }
        other => other.to_string(),
    }
}

fn backend_error(error: sled::Error) -> StoreError {
    match error {
        sled::Error::Io(io) if is_no_space(&io) => {
            StoreError::NoSpace(io.to_string())
        }
        other => StoreError::Backend(other.to_string()),
    }
}

fn transaction_error(error: TransactionError<StoreError>) -> StoreError {
    match error {
        TransactionError::Abort(error) => error,
        TransactionError::Storage(error) => backend_error(error),
    }
}

fn abort(error: StoreError) -> ConflictableTransactionError<StoreError> {
    ConflictableTransactionError::Abort(error)
}

fn scoped_key(app_id: &str, name: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(app_id.len() + 1 + name.len());
    key.extend_from_slice(app_id.as_bytes());
    key.push(0);
    key.extend_from_slice(name.as_bytes());
    key
}

fn connector_key(key: &ConnectorKey) -> Vec<u8> {
    scoped_key(&key.app_id, &key.id)
}

#[async_trait]
impl Store for SledStore {
    #[tracing::instrument(name = "store.insert_connector", skip_all, fields(app_id = %connector.app_id, connector_id = %connector.id))]
    async fn insert_connector(
        &self,
        connector: &Connector,
        request_id: Option<&str>,
    ) -> Result<Inserted, StoreError> {
        self.ensure_open()?;
        let key = connector_key(&connector.key());
        let value = encode_connector(connector);
        let request_key = request_id.map(|request_id| scoped_key(&connector.app_id, request_id));
        let request_value = encode_request_id(&connector.id, connector.created_at);

        let outcome = (&self.connectors, &self.live_connectors, &self.request_ids)
            .transaction(|(connectors, live_connectors, request_ids)| {
                if let Some(request_key) = &request_key {
                    if let Some(existing) = request_ids.get(request_key)? {
                        let (existing_id, _) =
                            decode_request_id(request_key, &existing).map_err(abort)?;
                        let existing_key = scoped_key(&connector.app_id, &existing_id);
                        let Some(bytes) = connectors.get(&existing_key)? else {
                            return Err(abort(StoreError::Corrupt {
                                key: String::from_utf8_lossy(request_key).replace('\0', "/"),
                                reason: format!("request id names missing connector {existing_id}"),
                            }));
                        };
                        let existing = decode_connector(&existing_key, &bytes).map_err(abort)?;
                        return Ok(Inserted::Replayed(existing));
                    }
                    request_ids.insert(request_key.as_slice(), request_value.as_slice())?;
                }
                connectors.insert(key.as_slice(), value.as_slice())?;
                live_connectors.insert(key.as_slice(), &[] as &[u8])?;
                Ok(Inserted::Created)
            })
            .map_err(transaction_error)?;

        // A replay waits too: the first insert may still be waiting for its own flush.
        self.wait_durable().await?;
        Ok(outcome)
    }

    #[tracing::instrument(name = "store.get_connector", skip_all, fields(app_id = %key.app_id, connector_id = %key.id))]
    async fn get_connector(&self, key: &ConnectorKey) -> Result<Option<Connector>, StoreError> {
        self.read_connector(&connector_key(key))
    }

    #[tracing::instrument(name = "store.list_connectors", skip(self))]
    async fn list_connectors(
        &self,
        app_id: &str,
        after_id: Option<&str>,
        limit: usize,
        include_deleted: bool,
    ) -> Result<Vec<Connector>, StoreError> {
        let start = match after_id {
            Some(after_id) => Bound::Excluded(scoped_key(app_id, after_id)),
            None => Bound::Included(scoped_key(app_id, "")),
        };
        let mut end = app_id.as_bytes().to_vec();
        end.push(1);
        let range = (start, Bound::Excluded(end));

        let mut page = Vec::with_capacity(limit);
        if include_deleted {
            for entry in self.connectors.range(range).take(limit) {
                let (key, bytes) = entry.map_err(backend_error)?;
                page.push(decode_connector(&key, &bytes)?);
            }
            return Ok(page);
        }

        // Reads past `limit` index entries when some are skipped: a short page would tell
        // the caller that the list has ended although live connectors follow.
        for entry in self.live_connectors.range(range) {
            if page.len() == limit {
                break;
            }
            let (key, _) = entry.map_err(backend_error)?;
            // A delete between the two reads leaves a deleted record here; skip it as if
            // the index had been read a moment later.
            if let Some(connector) = self.read_connector(&key)?
                && !connector.is_deleted()
            {
                page.push(connector);
            }
        }
        Ok(page)
    }

    #[tracing::instrument(name = "store.replace_connector", skip_all, fields(app_id = %connector.app_id, connector_id = %connector.id))]
    async fn replace_connector(
        &self,
        connector: &Connector,
        expected_revision: u64,
    ) -> Result<(), StoreError> {
        self.ensure_open()?;
        let connector_key_value = connector.key();
        let key = connector_key(&connector_key_value);
        let value = encode_connector(connector);

        (&self.connectors, &self.live_connectors)
            .transaction(|(connectors, live_connectors)| {
                let Some(current) = connectors.get(&key)? else {
                    return Err(abort(StoreError::NotFound(connector_key_value.clone())));
                };
                if stored_revision(&key, &current).map_err(abort)? != expected_revision {
                    return Err(abort(StoreError::Conflict(connector_key_value.clone())));
                }
                connectors.insert(key.as_slice(), value.as_slice())?;
                if connector.is_deleted() {
                    live_connectors.remove(key.as_slice())?;
                } else {
                    live_connectors.insert(key.as_slice(), &[] as &[u8])?;
                }
                Ok(())
            })
            .map_err(transaction_error)?;

        self.wait_durable().await
    }

    #[tracing::instrument(name = "store.purge_request_ids", skip(self))]
    async fn purge_request_ids(&self, cutoff: DateTime<Utc>) -> Result<usize, StoreError> {
        self.ensure_open()?;
        // NOTE: this scans every recorded request id; fine at an hourly cadence for millions
        // of entries, but a time-ordered index would make it proportional to what expires.
        let mut removed = 0;
        for entry in self.request_ids.iter() {
            let (key, bytes) = entry.map_err(backend_error)?;
            let (_, recorded_at) = decode_request_id(&key, &bytes)?;
            if recorded_at < cutoff {
                // Remove only the entry that was read, never one recorded since.
                if self
                    .request_ids
                    .compare_and_swap(&key, Some(&bytes), None as Option<&[u8]>)
                    .map_err(backend_error)?
                    .is_ok()
                {
                    removed += 1;
                }
            }
        }
        if removed > 0 {
            self.wait_durable().await?;
        }
        Ok(removed)
    }

    async fn close(&self) -> Result<(), StoreError> {
        self.commit.close();
        self.commit.wait_durable().await
    }

    /// Fails while the disk is below its reserve, or while the last flush failed. After a
    /// failed log write, sled 0.34.7 rejects every write until the database is opened again.
    fn check_writable(&self) -> Result<(), StoreError> {
        self.disk_space.check()?;
        match self.commit.last_flush_error() {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;
    use crate::domain::ConnectorStatus;

    fn connector(id: &str) -> Connector {
        let now = Utc::now();
        Connector {
            id: id.to_owned(),
            app_id: "app".to_owned(),
            catalog_id: "catalog".to_owned(),
            display_name: id.to_owned(),
            description: String::new(),
            user_ids: Vec::new(),
            config: None,
            status: ConnectorStatus::default(),
            oauth_authorized_as: None,
            download_url: String::new(),
            created_at: now,
            updated_at: now,
            deleted_at: None,
            sync_resource_type_ids: None,
            profile_allow_list: Vec::new(),
            profile_ignore_list: Vec::new(),
            disable_check_bad_sync: false,
            can_resume_sync: false,
            sync_disabled: None,
            revision: 1,
        }
    }

    /// A delete that lands between the index read and the record read of a list must not
    /// shorten the page, because a short page ends the caller's walk.
    #[tokio::test]
    async fn list_page_stays_full_past_concurrent_delete() {
        let directory = tempfile::tempdir().unwrap();
        let store = SledStore::open(&SledStoreOptions::new(directory.path())).unwrap();
        for id in ["a", "b", "c"] {
            store.insert_connector(&connector(id), None).await.unwrap();
        }
        // The record of b is deleted while its index entry is still there. A list reads this
        // state when the delete commits between its index read and its record read.
        let deleted = Connector { deleted_at: Some(Utc::now()), revision: 2, ..connector("b") };
        store.connectors.insert(scoped_key("app", "b"), encode_connector(&deleted)).unwrap();

        let page = store.list_connectors("app", None, 2, false).await.unwrap();
        let ids: Vec<&str> = page.iter().map(|connector| connector.id.as_str()).collect();
        assert_eq!(ids, ["a", "c"]);
    }
}
