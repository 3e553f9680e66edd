//! [`Store`] on an embedded sled database.
//!
//! Trees, with `/` standing for a `\0` separator and `t` for a big-endian nanosecond time:
//! - `connectors`: `app/id` → encoded connector, for connectors that are not deleted;
//! - `deleted_connectors`: `app/id` → encoded connector, for soft-deleted ones;
//! - `live_connectors`: empty since layout 3 (see `Trees::live_connectors`);
//! - `request_ids`: `app/request_id` → the connector id it created and when;
//! - `schedule_due`: `t app/id` → empty, the next scheduled run of a live connector;
//! - `syncs`: `app/connector/sync_id` → encoded sync;
//! - `pending_syncs`: `app/connector` → id of the connector's one pending sync;
//! - `sync_leases`: `t app/connector/sync_id` → empty, the lease end of a running sync;
//! - `sync_request_ids`: `app/connector/request_id` → id of the sync a ForceSync queued;
//! - `credentials`: `app/connector/credential_id` → encoded credential;
//! - `credential_clients`: `client_id` → key of the credential in `credentials`.
//!
//! Writes become durable in the write-ahead log under `wal/` (see `writer` and `wal`), and
//! sled flushes in the background. Opening the store replays the log.
//!
//! Ids and app ids never contain `\0` or `\x01` (the edge allows `[A-Za-z0-9_-]` only), so
//! the keys under one prefix are exactly the range `prefix \0 ..< prefix \x01`, in id order.

use std::{
    ops::Bound,
    path::{Path, PathBuf},
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio::{sync::mpsc, task::JoinHandle};
use writer::{NewConnector, Shared, Trees, Write, Writer, Written};

use super::{
    Batch, Inserted, Store, StoreError,
    disk_space::{DiskSpaceReserve, is_no_space},
    group_commit::GroupCommit,
    record::{
        decode_connector, decode_credential, decode_request_id, decode_sync, encode_connector, encode_request_id, stored_revision, to_nanos,
    },
};
use crate::domain::{Connector, ConnectorKey, Credential, SyncRun, SyncState};

mod wal;
mod writer;

/// How often the checkpoint task flushes sled while writes arrive. The log keeps every
/// segment that a checkpoint has not covered yet.
const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(500);
/// Directory of the write-ahead log inside the data directory.
const WAL_DIR: &str = "wal";

/// Default size of sled's page cache in bytes.
pub const DEFAULT_CACHE_CAPACITY_BYTES: u64 = 256 * 1024 * 1024;

#[derive(Debug, Clone)]
pub struct SledStoreOptions {
    pub path: PathBuf,
    /// Size of sled's page cache in bytes.
    pub cache_capacity_bytes: u64,
    /// Writes fail with [`StoreError::NoSpace`] while fewer bytes than this are free on the
    /// data directory's file system; 0 turns the check off.
    pub min_free_disk_bytes: u64,
    /// UNSAFE, for tests only: acknowledge writes without writing them to the log and flush
    /// sled only when the store closes, so a crash loses acknowledged writes. Crash tests use
    /// it to show that their check detects lost writes.
    pub unsafe_skip_flush_for_tests: bool,
}

impl SledStoreOptions {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            cache_capacity_bytes: DEFAULT_CACHE_CAPACITY_BYTES,
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
    deleted_connectors: sled::Tree,
    request_ids: sled::Tree,
    schedule_due: sled::Tree,
    syncs: sled::Tree,
    pending_syncs: sled::Tree,
    sync_leases: sled::Tree,
    sync_request_ids: sled::Tree,
    credentials: sled::Tree,
    credential_clients: sled::Tree,
    writer: Writer,
    shared: Arc<Shared>,
    /// sled flushes, for checkpoints and the last flush at close.
    commit: Arc<GroupCommit>,
    checkpoints: std::sync::Mutex<Option<JoinHandle<()>>>,
    wal_dir: PathBuf,
    disk_space: Arc<DiskSpaceReserve>,
}

impl SledStore {
    /// Opens or creates the database in `options.path` and starts its flusher task, so it
    /// must be called inside a tokio runtime. Fails when another process holds the
    /// directory's lock, or when the directory is unreadable or corrupt.
    pub fn open(options: &SledStoreOptions) -> Result<Self, OpenError> {
        let open_error = |reason: String| OpenError { path: options.path.clone(), reason };

        if options.unsafe_skip_flush_for_tests {
            tracing::warn!("UNSAFE test mode: writes are acknowledged before they are durable");
        }
        // sled recovers a data file it cannot parse as an empty database, so a directory
        // that existed before must carry the marker that the first open wrote.
        let existed = options.path.join("conf").exists();
        // The checkpoint task flushes sled; a write is durable once it is in the log.
        let db = sled::Config::new()
            .path(&options.path)
            .cache_capacity(options.cache_capacity_bytes)
            .flush_every_ms(None)
            .open()
            .map_err(|error| open_error(describe_open_error(&error)))?;
        let layout = check_format_marker(&db, existed).map_err(open_error)?;
        let open_tree = |name: &str| db.open_tree(name).map_err(|error| open_error(format!("cannot open tree {name}: {error}")));
        let trees = Trees {
            connectors: open_tree("connectors")?,
            live_connectors: open_tree("live_connectors")?,
            request_ids: open_tree("request_ids")?,
            schedule_due: open_tree("schedule_due")?,
            syncs: open_tree("syncs")?,
            pending_syncs: open_tree("pending_syncs")?,
            sync_leases: open_tree("sync_leases")?,
            sync_request_ids: open_tree("sync_request_ids")?,
            credentials: open_tree("credentials")?,
            credential_clients: open_tree("credential_clients")?,
            deleted_connectors: open_tree("deleted_connectors")?,
        };

        let data_file = options.path.join("db");
        let wal_dir = options.path.join(WAL_DIR);
        let next_record = replay_log(&db, &trees, &wal_dir, &data_file).map_err(open_error)?;
        if layout < FORMAT_VERSION {
            upgrade_layout(&db, &trees, layout, &data_file).map_err(open_error)?;
        }
        let wal = if options.unsafe_skip_flush_for_tests {
            None
        } else {
            let wal = wal::Wal::create(&wal_dir, next_record)
                .map_err(|error| open_error(format!("cannot start the write-ahead log in {}: {error}", wal_dir.display())))?;
            Some(wal)
        };

        let flush_db = db.clone();
        let commit = GroupCommit::start(Arc::new(move || flush_durably(&flush_db, &data_file)));
        let (finished, finished_segments) = mpsc::unbounded_channel();
        let writer =
            Writer::start(trees.clone(), wal, finished).map_err(|error| open_error(format!("cannot start the writer thread: {error}")))?;
        let disk_space = Arc::new(DiskSpaceReserve::new(options.path.clone(), options.min_free_disk_bytes));
        let checkpoints = tokio::spawn(run_checkpoints(
            Arc::clone(&commit),
            writer.shared(),
            Arc::clone(&disk_space),
            finished_segments,
            wal_dir.clone(),
        ));

        Ok(Self {
            connectors: trees.connectors,
            deleted_connectors: trees.deleted_connectors,
            request_ids: trees.request_ids,
            schedule_due: trees.schedule_due,
            syncs: trees.syncs,
            pending_syncs: trees.pending_syncs,
            sync_leases: trees.sync_leases,
            sync_request_ids: trees.sync_request_ids,
            credentials: trees.credentials,
            credential_clients: trees.credential_clients,
            shared: writer.shared(),
            writer,
            commit,
            checkpoints: std::sync::Mutex::new(Some(checkpoints)),
            wal_dir,
            disk_space,
        })
    }

    /// Checks the preconditions of a write: the store is open and the disk has room.
    fn ensure_open(&self) -> Result<(), StoreError> {
        if self.commit.is_closed() {
            return Err(StoreError::Closed);
        }
        self.check_writable()
    }

    /// Keeps the writer from applying a batch while a read of several keys runs.
    fn read_gate(&self) -> std::sync::RwLockReadGuard<'_, ()> {
        self.shared.gate.read().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn read_connector(&self, key: &[u8]) -> Result<Option<Connector>, StoreError> {
        if let Some(bytes) = self.connectors.get(key).map_err(backend_error)? {
            return decode_connector(key, &bytes).map(Some);
        }
        // A delete moves the record to the other tree, and the gate keeps this read from
        // falling between the two halves of the move.
        let _gate = self.read_gate();
        let bytes = match self.connectors.get(key).map_err(backend_error)? {
            Some(bytes) => bytes,
            None => match self.deleted_connectors.get(key).map_err(backend_error)? {
                Some(bytes) => bytes,
                None => return Ok(None),
            },
        };
        decode_connector(key, &bytes).map(Some)
    }

    fn read_sync(&self, key: &[u8]) -> Result<Option<SyncRun>, StoreError> {
        match self.syncs.get(key).map_err(backend_error)? {
            Some(bytes) => decode_sync(key, &bytes).map(Some),
            None => Ok(None),
        }
    }

    fn read_credential(&self, key: &[u8]) -> Result<Option<Credential>, StoreError> {
        match self.credentials.get(key).map_err(backend_error)? {
            Some(bytes) => decode_credential(key, &bytes).map(Some),
            None => Ok(None),
        }
    }

    /// Reads up to `limit` values under `prefix`, newest id first, before `before_id`.
    fn newest_first<T>(
        &self,
        tree: &sled::Tree,
        prefix: &[u8],
        before_id: Option<&str>,
        limit: usize,
        decode: impl Fn(&[u8], &[u8]) -> Result<T, StoreError>,
        keep: impl Fn(&T) -> bool,
    ) -> Result<Vec<T>, StoreError> {
        let (start, end) = prefix_range(prefix);
        let end = match before_id {
            Some(before_id) => Bound::Excluded(child_key(prefix, before_id)),
            None => end,
        };
        let mut found = Vec::with_capacity(limit.min(128));
        for entry in tree.range((start, end)).rev() {
            let (key, bytes) = entry.map_err(backend_error)?;
            let value = decode(&key, &bytes)?;
            if keep(&value) {
                found.push(value);
                if found.len() == limit {
                    break;
                }
            }
        }
        Ok(found)
    }
}

impl SledStore {
    async fn remove_request_ids(&self, entries: Vec<(sled::IVec, sled::IVec)>) -> Result<usize, StoreError> {
        match self.writer.submit(Write::RemoveRequestIds(entries)).await? {
            Written::Removed(count) => Ok(count),
            _ => Err(StoreError::Backend("the writer returned another write's result for a purge".to_owned())),
        }
    }
}

/// Expired request ids removed per write batch.
const PURGE_BATCH: usize = 1_000;

/// Applies every record of the log to sled, in order, makes sled durable and removes the
/// log's segments. Returns the number that the next record gets.
///
/// A record whose changes sled already holds, in full or in part, is applied again: each
/// change sets a key to its logged value, so the keys end with their last logged values.
fn replay_log(db: &sled::Db, trees: &Trees, wal_dir: &Path, data_file: &Path) -> Result<u64, String> {
    let segments = wal::segments(wal_dir).map_err(|error| format!("cannot list the log in {}: {error}", wal_dir.display()))?;
    let in_order = trees.in_order();
    let mut last: Option<u64> = None;
    let mut replayed = 0_u64;
    for (position, segment) in segments.iter().enumerate() {
        let end = wal::read_segment(segment, |number, payload| {
            if let Some(last) = last
                && number != last + 1
            {
                return Err(format!("log record {number} in {} follows record {last}: the records between are missing", segment.display()));
            }
            replay_record(&in_order, payload)
                .map_err(|reason| format!("cannot apply log record {number} of {}: {reason}", segment.display()))?;
            last = Some(number);
            replayed += 1;
            Ok(())
        })?;
        if let wal::SegmentEnd::Torn { offset } = end {
            if position + 1 < segments.len() {
                return Err(format!(
                    "log segment {} is damaged before its end and newer segments follow; restore the directory from a backup",
                    segment.display()
                ));
            }
            // An append that a crash cut short was never acknowledged, so dropping it loses
            // no acknowledged write.
            tracing::warn!(segment = %segment.display(), offset, "dropped the last log record, which a crash cut short before it was acknowledged");
        }
    }
    if replayed > 0 {
        flush_durably(db, data_file).map_err(|error| format!("cannot flush the replayed log records: {error}"))?;
        tracing::info!(replayed, "applied the write-ahead log");
    }
    remove_segments(wal_dir, &segments);
    Ok(last.map_or(1, |last| last + 1))
}

/// Applies the changes of one log record.
fn replay_record(trees: &[&sled::Tree; 11], payload: &[u8]) -> Result<(), String> {
    for change in wal::decode_changes(payload)? {
        let (number, key) = match change {
            wal::Change::Put { tree, key, .. } | wal::Change::Remove { tree, key } => (usize::from(tree), key),
        };
        let tree = trees.get(number).ok_or_else(|| format!("unknown tree number {number}"))?;
        match change {
            wal::Change::Put { value, .. } => tree.insert(key, value).map(drop),
            wal::Change::Remove { .. } => tree.remove(key).map(drop),
        }
        .map_err(|error| describe_open_error(&error))?;
    }
    Ok(())
}

/// Removes log segments that a flush of sled covers. A segment left behind is replayed at
/// the next open, which costs time but loses nothing.
fn remove_segments(wal_dir: &Path, segments: &[PathBuf]) {
    if segments.is_empty() {
        return;
    }
    for segment in segments {
        if let Err(error) = std::fs::remove_file(segment) {
            tracing::warn!(%error, segment = %segment.display(), "cannot remove a log segment");
        }
    }
    if let Err(error) = wal::sync_dir(wal_dir) {
        tracing::warn!(%error, dir = %wal_dir.display(), "cannot sync the log directory");
    }
}

/// Flushes sled every [`CHECKPOINT_INTERVAL`] while writes arrive, and removes each log
/// segment that the writer finished once a flush covers it. Ends when the writer stops.
async fn run_checkpoints(
    commit: Arc<GroupCommit>,
    shared: Arc<Shared>,
    disk_space: Arc<DiskSpaceReserve>,
    mut finished: mpsc::UnboundedReceiver<PathBuf>,
    wal_dir: PathBuf,
) {
    let mut interval = tokio::time::interval(CHECKPOINT_INTERVAL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut waiting = Vec::new();
    loop {
        tokio::select! {
            segment = finished.recv() => match segment {
                Some(segment) => waiting.push(segment),
                None => return,
            },
            _ = interval.tick() => {}
        }
        while let Ok(segment) = finished.try_recv() {
            waiting.push(segment);
        }
        let wrote = shared.dirty.swap(false, Ordering::SeqCst);
        // A failed flush is tried again at every tick, so writes resume once it succeeds.
        if waiting.is_empty() && !wrote && commit.last_flush_error().is_none() {
            continue;
        }
        // A flush that hits ENOSPC breaks sled until the next open (see `disk_space`), so
        // below the reserve the log keeps the writes until space is freed.
        if disk_space.check().is_err() {
            shared.dirty.store(true, Ordering::SeqCst);
            continue;
        }
        // Every record in these segments was applied before the writer handed them over,
        // so the flush that starts now covers them.
        let covered = std::mem::take(&mut waiting);
        if commit.wait_durable().await.is_ok() {
            tokio::task::spawn_blocking({
                let wal_dir = wal_dir.clone();
                move || remove_segments(&wal_dir, &covered)
            })
            .await
            .unwrap_or_else(|error| tracing::error!(%error, "removing log segments failed"));
        } else {
            // The flusher logged the error.
            waiting = covered;
            shared.dirty.store(true, Ordering::SeqCst);
        }
    }
}

/// Bounds of every key `prefix \0 …`.
fn prefix_range(prefix: &[u8]) -> (Bound<Vec<u8>>, Bound<Vec<u8>>) {
    let mut start = prefix.to_vec();
    start.push(0);
    let mut end = prefix.to_vec();
    end.push(1);
    (Bound::Included(start), Bound::Excluded(end))
}

fn child_key(prefix: &[u8], name: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(prefix.len() + 1 + name.len());
    key.extend_from_slice(prefix);
    key.push(0);
    key.extend_from_slice(name.as_bytes());
    key
}

fn sync_key(sync: &SyncRun) -> Vec<u8> {
    child_key(&scoped_key(&sync.app_id, &sync.connector_id), &sync.id)
}

fn credential_key(credential: &Credential) -> Vec<u8> {
    child_key(&scoped_key(&credential.app_id, &credential.connector_id), &credential.id)
}

/// Key of a time-ordered index: big-endian nanoseconds, then the record key.
fn timed_key(time: DateTime<Utc>, key: &[u8]) -> Vec<u8> {
    let nanos = u64::try_from(to_nanos(time)).unwrap_or(0);
    let mut timed = Vec::with_capacity(8 + key.len());
    timed.extend_from_slice(&nanos.to_be_bytes());
    timed.extend_from_slice(key);
    timed
}

/// Time-ordered index entry of a connector's next scheduled run, if it has one.
fn schedule_entry(connector: &Connector, key: &[u8]) -> Option<Vec<u8>> {
    if connector.is_deleted() {
        return None;
    }
    let next = connector.schedule.as_ref()?.next_run_at?;
    Some(timed_key(next, key))
}

/// Time-ordered index entry of a running sync's lease end, if it has one.
fn lease_entry(sync: &SyncRun, key: &[u8]) -> Option<Vec<u8>> {
    if sync.state != SyncState::Running {
        return None;
    }
    Some(timed_key(sync.lease_expires_at?, key))
}

fn check_revision(key: &[u8], stored: Option<&[u8]>, expected: Option<u64>, what: &str) -> Result<(), StoreError> {
    match (stored, expected) {
        (None, None) => Ok(()),
        (Some(_), None) => Err(StoreError::Conflict(format!("{what} already exists"))),
        (None, Some(_)) => Err(StoreError::NotFound(what.to_owned())),
        (Some(bytes), Some(expected)) => {
            if stored_revision(key, bytes)? == expected {
                Ok(())
            } else {
                Err(StoreError::Conflict(format!("{what} was changed by another write")))
            }
        }
    }
}

impl SledStore {
    /// Reads every record, for `connectord migrate`. Records written during the read may
    /// be missed, so stop the server on this directory first.
    pub fn snapshot(&self) -> Result<super::migrate::Snapshot, StoreError> {
        let read_error = |tree: &str, error: sled::Error| StoreError::Backend(format!("reading tree {tree} failed: {error}"));
        let mut snapshot = super::migrate::Snapshot::default();
        for (name, tree) in [("connectors", &self.connectors), ("deleted_connectors", &self.deleted_connectors)] {
            for entry in tree.iter() {
                let (key, value) = entry.map_err(|error| read_error(name, error))?;
                snapshot.connectors.push(decode_connector(&key, &value)?);
            }
        }
        snapshot.connectors.sort_by(|left, right| (&left.app_id, &left.id).cmp(&(&right.app_id, &right.id)));
        for entry in self.syncs.iter() {
            let (key, value) = entry.map_err(|error| read_error("syncs", error))?;
            snapshot.syncs.push(decode_sync(&key, &value)?);
        }
        for entry in self.credentials.iter() {
            let (key, value) = entry.map_err(|error| read_error("credentials", error))?;
            snapshot.credentials.push(decode_credential(&key, &value)?);
        }
        for entry in self.request_ids.iter() {
            let (key, value) = entry.map_err(|error| read_error("request_ids", error))?;
            let text = String::from_utf8_lossy(&key).into_owned();
            let Some((app_id, request_id)) = text.split_once('\0') else {
                return Err(StoreError::Corrupt { key: text, reason: "request-id key has no app id".to_owned() });
            };
            let (connector_id, recorded_at) = decode_request_id(&key, &value)?;
            snapshot.request_ids.push(super::migrate::RequestIdEntry {
                app_id: app_id.to_owned(),
                request_id: request_id.to_owned(),
                connector_id,
                recorded_at,
            });
        }
        Ok(snapshot)
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

/// Key in sled's default tree that names the layout version of the data directory.
const FORMAT_MARKER_KEY: &[u8] = b"connectord.format";
/// Layout version written by this build. Version 2 added the write-ahead log, which an
/// older build would ignore. Version 3 keeps deleted connectors in a tree of their own.
const FORMAT_VERSION: u8 = 3;
/// Oldest layout version that this build opens and upgrades.
const OLDEST_FORMAT_VERSION: u8 = 1;

/// Writes the format marker into a new database, or checks it in an existing one, and
/// returns the directory's layout version. An older one is upgraded by [`upgrade_layout`].
fn check_format_marker(db: &sled::Db, existed: bool) -> Result<u8, String> {
    let marker = db.get(FORMAT_MARKER_KEY).map_err(|error| describe_open_error(&error))?;
    match marker.as_deref() {
        Some([version]) if (OLDEST_FORMAT_VERSION..=FORMAT_VERSION).contains(version) => Ok(*version),
        Some([version]) if *version > FORMAT_VERSION => {
            Err(format!("the data was written by a newer connectord (layout version {version}, this build reads {FORMAT_VERSION})"))
        }
        Some(other) => Err(format!("the format marker is corrupt ({} bytes); restore the directory from a backup", other.len())),
        // NOTE: a crash between sled creating the directory and the flush below leaves a
        // new, empty directory without a marker. The next start rejects it like a corrupt
        // one, and removing the directory fixes that.
        None if existed => Err("the database file is corrupt or was not written by connectord: its format marker is missing. \
             Restore the directory from a backup, or remove it to start with no data"
            .to_owned()),
        None => {
            db.insert(FORMAT_MARKER_KEY, &[FORMAT_VERSION]).map_err(|error| describe_open_error(&error))?;
            db.flush().map_err(|error| describe_open_error(&error))?;
            Ok(FORMAT_VERSION)
        }
    }
}

/// Brings a directory of an older layout to [`FORMAT_VERSION`], after its log was replayed.
/// The marker changes only once the data is flushed, so an upgrade cut short by a crash
/// runs again at the next open and finishes.
fn upgrade_layout(db: &sled::Db, trees: &Trees, from: u8, data_file: &Path) -> Result<(), String> {
    let mut moved = 0;
    if from < 3 {
        moved = move_deleted_connectors(trees)?;
    }
    flush_durably(db, data_file).map_err(|error| format!("cannot flush the upgraded data: {error}"))?;
    db.insert(FORMAT_MARKER_KEY, &[FORMAT_VERSION]).map_err(|error| describe_open_error(&error))?;
    flush_durably(db, data_file).map_err(|error| format!("cannot flush the new format marker: {error}"))?;
    tracing::info!(from, to = FORMAT_VERSION, moved_deleted_connectors = moved, "upgraded the data directory's layout");
    Ok(())
}

/// Moves every deleted connector from `connectors` to `deleted_connectors` and empties the
/// live-connector index of layout 2. Returns how many connectors moved.
fn move_deleted_connectors(trees: &Trees) -> Result<u64, String> {
    let read_error = |error: sled::Error| format!("cannot read the connectors for the upgrade: {}", describe_open_error(&error));
    let write_error = |error: sled::Error| format!("cannot move a deleted connector: {}", describe_open_error(&error));
    let mut deleted = Vec::new();
    for entry in trees.connectors.iter() {
        let (key, bytes) = entry.map_err(read_error)?;
        let connector = decode_connector(&key, &bytes).map_err(|error| error.to_string())?;
        if connector.is_deleted() {
            deleted.push(key);
        }
    }
    // The copy comes first, so a crash in between leaves the record in both trees, and
    // the upgrade's next run moves it again.
    for key in &deleted {
        if let Some(bytes) = trees.connectors.get(key).map_err(read_error)? {
            trees.deleted_connectors.insert(key, bytes).map_err(write_error)?;
            trees.connectors.remove(key).map_err(write_error)?;
        }
    }
    trees.live_connectors.clear().map_err(write_error)?;
    Ok(deleted.len() as u64)
}

fn describe_open_error(error: &sled::Error) -> String {
    match error {
        sled::Error::Io(io) if io.kind() == std::io::ErrorKind::PermissionDenied => {
            format!("permission denied ({io}); check the directory's owner and mode")
        }
        // sled 0.34 formats this error with the debug form of the OS error, which adds
        // nothing to the message below.
        sled::Error::Io(io) if io.to_string().contains("could not acquire lock") => {
            "another process holds the database lock; is another connectord using this directory?".to_owned()
        }
        sled::Error::Corruption { at, .. } => {
            format!("the database is corrupt (at {at:?}); restore it from a backup")
        }
        other => other.to_string(),
    }
}

fn wal_error(action: &str, error: &std::io::Error) -> StoreError {
    let message = format!("{action} failed: {error}");
    if is_no_space(error) { StoreError::NoSpace(message) } else { StoreError::Flush(message) }
}

fn backend_error(error: sled::Error) -> StoreError {
    match error {
        sled::Error::Io(io) if is_no_space(&io) => StoreError::NoSpace(io.to_string()),
        other => StoreError::Backend(other.to_string()),
    }
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
    #[tracing::instrument(level = "debug", name = "store.insert_connector", skip_all, fields(app_id = %connector.app_id, connector_id = %connector.id))]
    async fn insert_connector(&self, connector: &Connector, request_id: Option<&str>) -> Result<Inserted, StoreError> {
        self.ensure_open()?;
        let write = Write::InsertConnector(NewConnector {
            app_id: connector.app_id.clone(),
            key: connector_key(&connector.key()),
            name: connector.key().to_string(),
            encoded: encode_connector(connector),
            request_id: request_id
                .map(|request_id| (scoped_key(&connector.app_id, request_id), encode_request_id(&connector.id, connector.created_at))),
        });
        let outcome = match self.writer.submit(write).await? {
            Written::Inserted(outcome) => *outcome,
            _ => return Err(StoreError::Backend("the writer returned another write's result for an insert".to_owned())),
        };
        // A replay is durable too: the writer logged the first insert in this batch or an
        // earlier one, and replies only after the log is on the device.
        Ok(outcome)
    }

    #[tracing::instrument(level = "debug", name = "store.get_connector", skip_all, fields(app_id = %key.app_id, connector_id = %key.id))]
    async fn get_connector(&self, key: &ConnectorKey) -> Result<Option<Connector>, StoreError> {
        self.read_connector(&connector_key(key))
    }

    #[tracing::instrument(level = "debug", name = "store.list_connectors", skip(self))]
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
        if limit == 0 {
            return Ok(page);
        }
        // The gate keeps a page from showing half of a batch, or a connector that a delete
        // is moving between the trees in neither or both of them.
        let _gate = self.read_gate();
        if !include_deleted {
            for entry in self.connectors.range(range).take(limit) {
                let (key, bytes) = entry.map_err(backend_error)?;
                page.push(decode_connector(&key, &bytes)?);
            }
            return Ok(page);
        }

        // Both trees are in key order, so merging them gives the page in id order.
        let mut live = self.connectors.range(range.clone()).peekable();
        let mut deleted = self.deleted_connectors.range(range).peekable();
        while page.len() < limit {
            let take_live = match (live.peek(), deleted.peek()) {
                (None, None) => break,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (Some(Ok((live_key, _))), Some(Ok((deleted_key, _)))) => live_key < deleted_key,
                // Take the failed one, so that its error is returned below.
                (Some(Err(_)), _) => true,
                (_, Some(Err(_))) => false,
            };
            let next = if take_live { live.next() } else { deleted.next() };
            let Some(entry) = next else { break };
            let (key, bytes) = entry.map_err(backend_error)?;
            page.push(decode_connector(&key, &bytes)?);
        }
        Ok(page)
    }

    #[tracing::instrument(level = "debug", name = "store.apply", skip_all, fields(
        connector = batch.connector.is_some(),
        syncs = batch.syncs.len(),
        credentials = batch.credentials.len(),
    ))]
    async fn apply(&self, batch: &Batch) -> Result<(), StoreError> {
        self.ensure_open()?;
        self.writer.submit(Write::Apply(Box::new(batch.clone()))).await?;
        Ok(())
    }

    async fn get_sync(&self, key: &ConnectorKey, sync_id: &str) -> Result<Option<SyncRun>, StoreError> {
        self.read_sync(&child_key(&connector_key(key), sync_id))
    }

    async fn list_syncs(
        &self,
        key: &ConnectorKey,
        before_id: Option<&str>,
        limit: usize,
        state: Option<SyncState>,
    ) -> Result<Vec<SyncRun>, StoreError> {
        // NOTE: with a state filter this reads past non-matching syncs, so a page can cost
        // more than its size when few syncs are in the requested state.
        self.newest_first(&self.syncs, &connector_key(key), before_id, limit, decode_sync, |sync| {
            state.is_none_or(|state| sync.state == state)
        })
    }

    async fn pending_sync(&self, key: &ConnectorKey) -> Result<Option<SyncRun>, StoreError> {
        let prefix = connector_key(key);
        let _gate = self.read_gate();
        let Some(sync_id) = self.pending_syncs.get(&prefix).map_err(backend_error)? else {
            return Ok(None);
        };
        let sync_id = std::str::from_utf8(&sync_id)
            .map_err(|_| StoreError::Corrupt { key: key.to_string(), reason: "pending sync id is not UTF-8".into() })?;
        self.read_sync(&child_key(&prefix, sync_id))
    }

    async fn find_sync_by_request_id(&self, key: &ConnectorKey, request_id: &str) -> Result<Option<SyncRun>, StoreError> {
        let prefix = connector_key(key);
        let _gate = self.read_gate();
        let Some(sync_id) = self.sync_request_ids.get(child_key(&prefix, request_id)).map_err(backend_error)? else {
            return Ok(None);
        };
        let sync_id = String::from_utf8_lossy(&sync_id).into_owned();
        self.read_sync(&child_key(&prefix, &sync_id))
    }

    async fn expired_leases(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<SyncRun>, StoreError> {
        let end = timed_key(now, &[0xff]);
        let mut expired = Vec::new();
        let _gate = self.read_gate();
        for entry in self.sync_leases.range(..end).take(limit) {
            let (timed, _) = entry.map_err(backend_error)?;
            if let Some(sync) = self.read_sync(&timed[8..])? {
                expired.push(sync);
            }
        }
        Ok(expired)
    }

    async fn due_schedules(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<ConnectorKey>, StoreError> {
        let end = timed_key(now, &[0xff]);
        let mut due = Vec::new();
        for entry in self.schedule_due.range(..end).take(limit) {
            let (timed, _) = entry.map_err(backend_error)?;
            let key = &timed[8..];
            let Some(separator) = key.iter().position(|byte| *byte == 0) else {
                return Err(StoreError::Corrupt {
                    key: String::from_utf8_lossy(key).into_owned(),
                    reason: "schedule entry without separator".into(),
                });
            };
            due.push(ConnectorKey::new(String::from_utf8_lossy(&key[..separator]), String::from_utf8_lossy(&key[separator + 1..])));
        }
        Ok(due)
    }

    async fn get_credential(&self, key: &ConnectorKey, credential_id: &str) -> Result<Option<Credential>, StoreError> {
        self.read_credential(&child_key(&connector_key(key), credential_id))
    }

    async fn list_credentials(&self, key: &ConnectorKey, before_id: Option<&str>, limit: usize) -> Result<Vec<Credential>, StoreError> {
        self.newest_first(&self.credentials, &connector_key(key), before_id, limit, decode_credential, |_| true)
    }

    async fn find_credential(&self, client_id: &str) -> Result<Option<Credential>, StoreError> {
        let _gate = self.read_gate();
        match self.credential_clients.get(client_id.as_bytes()).map_err(backend_error)? {
            Some(key) => self.read_credential(&key),
            None => Ok(None),
        }
    }

    #[tracing::instrument(level = "debug", name = "store.purge_request_ids", skip(self))]
    async fn purge_request_ids(&self, cutoff: DateTime<Utc>) -> Result<usize, StoreError> {
        self.ensure_open()?;
        // NOTE: this scans every recorded request id. That is fine once an hour for millions
        // of entries, but a time-ordered index would make it proportional to what expires.
        let mut expired = Vec::new();
        let mut removed = 0;
        for entry in self.request_ids.iter() {
            let (key, bytes) = entry.map_err(backend_error)?;
            let (_, recorded_at) = decode_request_id(&key, &bytes)?;
            if recorded_at < cutoff {
                expired.push((key, bytes));
                if expired.len() == PURGE_BATCH {
                    removed += self.remove_request_ids(std::mem::take(&mut expired)).await?;
                }
            }
        }
        if !expired.is_empty() {
            removed += self.remove_request_ids(expired).await?;
        }
        Ok(removed)
    }

    async fn close(&self) -> Result<(), StoreError> {
        self.commit.close();
        // Writes already queued are applied first, so the flush below covers them.
        self.writer.stop().await;
        let checkpoints = self.checkpoints.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take();
        if let Some(checkpoints) = checkpoints
            && let Err(error) = checkpoints.await
        {
            tracing::error!(%error, "the checkpoint task failed");
        }
        let result = self.commit.wait_durable().await;
        if result.is_ok() {
            // sled contains every write now, so the next open has nothing to replay.
            match wal::segments(&self.wal_dir) {
                Ok(segments) => remove_segments(&self.wal_dir, &segments),
                Err(error) => tracing::warn!(%error, dir = %self.wal_dir.display(), "cannot list the log segments to remove"),
            }
        }
        self.commit.stop_flusher();
        result
    }

    /// Fails while the disk is below its reserve, after a failed log append, and while
    /// sled's last flush failed. After a failed log write, sled 0.34.7 rejects every write
    /// until the database is opened again.
    fn check_writable(&self) -> Result<(), StoreError> {
        self.disk_space.check()?;
        if let Some(error) = self.shared.failure() {
            return Err(error);
        }
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
    use crate::{domain::ConnectorStatus, store::Versioned};

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
            schedule: None,
            secret_salt: Vec::new(),
            revision: 1,
            etag_revision: 1,
        }
    }

    /// Copies a data directory, such as sled's files at a moment when it had not flushed
    /// what came later.
    fn copy_dir(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            let target = to.join(entry.file_name());
            if entry.file_type().unwrap().is_dir() {
                copy_dir(&entry.path(), &target);
            } else {
                std::fs::copy(entry.path(), &target).unwrap();
            }
        }
    }

    /// Opens `path` once the store that had it open let go of sled's lock: its flusher
    /// task drops the last database handle a moment after `close`.
    async fn reopen(path: &Path) -> SledStore {
        for _ in 0..100 {
            match SledStore::open(&SledStoreOptions::new(path)) {
                Ok(store) => return store,
                Err(error) if error.reason.contains("holds the database lock") => {
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
                Err(error) => panic!("{error}"),
            }
        }
        panic!("{} stayed locked for 5 s", path.display());
    }

    fn ids(page: &[Connector]) -> Vec<(&str, u64)> {
        page.iter().map(|connector| (connector.id.as_str(), connector.revision)).collect()
    }

    /// Writes in the log survive a crash in which sled lost everything it had not
    /// flushed: the copy below has sled's files from before the writes and the log from
    /// after them.
    #[tokio::test]
    async fn replay_restores_writes_that_sled_lost() {
        let directory = tempfile::tempdir().unwrap();
        let live = directory.path().join("live");
        let crashed = directory.path().join("crashed");
        let store = SledStore::open(&SledStoreOptions::new(&live)).unwrap();
        copy_dir(&live, &crashed);

        store.insert_connector(&connector("a"), Some("request-a")).await.unwrap();
        store.insert_connector(&connector("b"), None).await.unwrap();
        let updated = Connector { description: "second".to_owned(), revision: 2, ..connector("a") };
        store
            .apply(&Batch { connector: Some(Versioned { record: updated, expected_revision: Some(1) }), ..Batch::default() })
            .await
            .unwrap();
        let deleted = Connector { deleted_at: Some(Utc::now()), revision: 2, ..connector("b") };
        store
            .apply(&Batch { connector: Some(Versioned { record: deleted, expected_revision: Some(1) }), ..Batch::default() })
            .await
            .unwrap();
        std::fs::remove_dir_all(crashed.join(WAL_DIR)).unwrap();
        copy_dir(&live.join(WAL_DIR), &crashed.join(WAL_DIR));
        store.close().await.unwrap();

        let recovered = SledStore::open(&SledStoreOptions::new(&crashed)).unwrap();
        let a = recovered.get_connector(&ConnectorKey::new("app", "a")).await.unwrap().expect("a survives");
        assert_eq!((a.revision, a.description.as_str()), (2, "second"));
        assert_eq!(ids(&recovered.list_connectors("app", None, 10, false).await.unwrap()), [("a", 2)]);
        assert_eq!(ids(&recovered.list_connectors("app", None, 10, true).await.unwrap()), [("a", 2), ("b", 2)]);
        // The request id still names its connector, so a retry replays the create.
        let retried = recovered.insert_connector(&connector("other"), Some("request-a")).await.unwrap();
        assert!(matches!(retried, Inserted::Replayed(ref existing) if existing.id == "a"));
        // The replayed log is gone, and new writes go to a new one.
        recovered.insert_connector(&connector("c"), None).await.unwrap();
        recovered.close().await.unwrap();
        drop(recovered);
        assert_eq!(wal::segments(&crashed.join(WAL_DIR)).unwrap(), Vec::<PathBuf>::new());

        let reopened = reopen(&crashed).await;
        assert_eq!(ids(&reopened.list_connectors("app", None, 10, false).await.unwrap()), [("a", 2), ("c", 1)]);
        reopened.close().await.unwrap();
    }

    /// A batch that cannot start a log segment is rejected with nothing left behind, and the
    /// writer checks later writes without it.
    #[tokio::test]
    async fn batch_rejected_before_logging_leaves_no_trace() {
        let directory = tempfile::tempdir().unwrap();
        let store = SledStore::open(&SledStoreOptions::new(directory.path())).unwrap();
        // One record that leaves less room in its segment than the next batch reserves.
        let filler = usize::try_from(wal::SEGMENT_BYTES).unwrap() - 512 * 1024;
        store.insert_connector(&Connector { description: "x".repeat(filler), ..connector("large") }, None).await.unwrap();

        let wal_dir = directory.path().join(WAL_DIR);
        let segments = wal::segments(&wal_dir).unwrap();
        assert_eq!(segments.len(), 1, "{segments:?}");
        let first: u64 = segments[0].file_stem().unwrap().to_str().unwrap().parse().unwrap();
        let mut records = 0;
        wal::read_segment(&segments[0], |_, _| {
            records += 1;
            Ok(())
        })
        .unwrap();
        // A file in place of the next segment makes starting that segment fail.
        let blocker = wal_dir.join(format!("{:020}.wal", first + records));
        std::fs::write(&blocker, b"").unwrap();

        let error = store.insert_connector(&connector("b"), None).await.unwrap_err();
        assert!(error.to_string().contains("starting a log segment"), "{error}");
        assert!(store.get_connector(&ConnectorKey::new("app", "b")).await.unwrap().is_none());

        std::fs::remove_file(&blocker).unwrap();
        let retried = store.insert_connector(&connector("b"), None).await.unwrap();
        assert!(matches!(retried, Inserted::Created), "the rejected insert is still visible to the writer");
        assert_eq!(ids(&store.list_connectors("app", None, 10, true).await.unwrap()), [("b", 1), ("large", 1)]);
        store.close().await.unwrap();
        drop(store);

        let reopened = reopen(directory.path()).await;
        assert_eq!(ids(&reopened.list_connectors("app", None, 10, true).await.unwrap()), [("b", 1), ("large", 1)]);
        reopened.close().await.unwrap();
    }

    /// Replaying records that sled already contains leaves every key with its last value.
    #[tokio::test]
    async fn replay_over_flushed_writes_changes_nothing() {
        let directory = tempfile::tempdir().unwrap();
        let live = directory.path().join("live");
        let crashed = directory.path().join("crashed");
        let store = SledStore::open(&SledStoreOptions::new(&live)).unwrap();
        store.insert_connector(&connector("a"), None).await.unwrap();
        let updated = Connector { description: "second".to_owned(), revision: 2, ..connector("a") };
        store
            .apply(&Batch { connector: Some(Versioned { record: updated, expected_revision: Some(1) }), ..Batch::default() })
            .await
            .unwrap();
        store.connectors.flush().unwrap();
        copy_dir(&live, &crashed);
        assert!(!wal::segments(&crashed.join(WAL_DIR)).unwrap().is_empty(), "the copy has a log to replay");
        store.close().await.unwrap();

        let recovered = SledStore::open(&SledStoreOptions::new(&crashed)).unwrap();
        assert_eq!(ids(&recovered.list_connectors("app", None, 10, false).await.unwrap()), [("a", 2)]);
        recovered.close().await.unwrap();
    }

    #[tokio::test]
    async fn open_fails_on_damaged_older_segment() {
        let directory = tempfile::tempdir().unwrap();
        // An opened and closed store leaves an empty log directory.
        let store = SledStore::open(&SledStoreOptions::new(directory.path())).unwrap();
        store.close().await.unwrap();
        drop(store);
        let wal_dir = directory.path().join(WAL_DIR);
        let mut changes = wal::Changes::default();
        changes.put(0, b"app\0x", b"not a connector");
        let mut log = wal::Wal::create(&wal_dir, 1).unwrap();
        log.append(changes.as_bytes()).unwrap();
        let big = vec![0_u8; wal::SEGMENT_BYTES as usize / 2 + 1];
        log.append(&big).unwrap();
        log.append(&big).unwrap().expect("a second segment starts");
        drop(log);
        // Damage the checksum of the second record in the first segment.
        let first = wal::segments(&wal_dir).unwrap().remove(0);
        let file = std::fs::File::options().write(true).open(&first).unwrap();
        let second_record = 16 + changes.as_bytes().len() as u64;
        std::os::unix::fs::FileExt::write_all_at(&file, &[0xff; 4], second_record + 4).unwrap();

        let mut error = None;
        for _ in 0..100 {
            match SledStore::open(&SledStoreOptions::new(directory.path())) {
                Err(failure) if failure.reason.contains("holds the database lock") => {
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
                Err(failure) => {
                    error = Some(failure);
                    break;
                }
                Ok(_) => panic!("a damaged log opened"),
            }
        }
        let error = error.expect("the directory stayed locked");
        assert!(error.reason.contains("damaged before its end"), "{error}");
    }

    fn delete(id: &str, revision: u64) -> Batch {
        let deleted = Connector { deleted_at: Some(Utc::now()), revision: revision + 1, ..connector(id) };
        Batch { connector: Some(Versioned { record: deleted, expected_revision: Some(revision) }), ..Batch::default() }
    }

    /// Deleted connectors live in a tree of their own, and pages that include them merge
    /// both trees in id order.
    #[tokio::test]
    async fn pages_merge_live_and_deleted_connectors() {
        let directory = tempfile::tempdir().unwrap();
        let store = SledStore::open(&SledStoreOptions::new(directory.path())).unwrap();
        for id in ["a", "b", "c", "d", "e"] {
            store.insert_connector(&connector(id), None).await.unwrap();
        }
        store.apply(&delete("b", 1)).await.unwrap();
        store.apply(&delete("d", 1)).await.unwrap();

        assert!(store.deleted_connectors.contains_key(scoped_key("app", "b")).unwrap());
        assert!(!store.connectors.contains_key(scoped_key("app", "b")).unwrap());
        let b = store.get_connector(&ConnectorKey::new("app", "b")).await.unwrap().expect("a deleted connector is still read");
        assert!(b.is_deleted());
        assert_eq!(ids(&store.list_connectors("app", None, 10, false).await.unwrap()), [("a", 1), ("c", 1), ("e", 1)]);
        let all = [("a", 1), ("b", 2), ("c", 1), ("d", 2), ("e", 1)];
        assert_eq!(ids(&store.list_connectors("app", None, 10, true).await.unwrap()), all);
        for limit in 1..=5 {
            for start in 0..5 {
                let after = (start > 0).then(|| all[start - 1].0);
                let page = store.list_connectors("app", after, limit, true).await.unwrap();
                let expected = &all[start..(start + limit).min(all.len())];
                assert_eq!(ids(&page), expected, "after {after:?}, limit {limit}");
            }
        }

        // A second delete of the same record fails on its revision and moves nothing.
        assert!(matches!(store.apply(&delete("b", 1)).await, Err(StoreError::Conflict(_))));
        let conflict = store.insert_connector(&connector("d"), None).await.unwrap_err();
        assert!(matches!(conflict, StoreError::Conflict(_)), "a deleted id was created again: {conflict}");
        store.close().await.unwrap();
    }

    /// Opening a layout-2 directory, which kept deleted connectors among the live ones and
    /// indexed the live ones, moves the deleted ones to their own tree.
    #[tokio::test]
    async fn upgrade_moves_deleted_connectors() {
        let directory = tempfile::tempdir().unwrap();
        let store = SledStore::open(&SledStoreOptions::new(directory.path())).unwrap();
        for id in ["a", "b", "c"] {
            store.insert_connector(&connector(id), None).await.unwrap();
        }
        store.close().await.unwrap();
        drop(store);

        // Rewrite the directory into layout 2 with sled itself.
        let db = open_sled(directory.path()).await;
        let deleted = Connector { deleted_at: Some(Utc::now()), revision: 2, ..connector("b") };
        db.open_tree("connectors").unwrap().insert(scoped_key("app", "b"), encode_connector(&deleted)).unwrap();
        let live_index = db.open_tree("live_connectors").unwrap();
        for id in ["a", "c"] {
            live_index.insert(scoped_key("app", id), &[]).unwrap();
        }
        db.insert(FORMAT_MARKER_KEY, &[2]).unwrap();
        db.flush().unwrap();
        drop((live_index, db));

        let upgraded = reopen(directory.path()).await;
        assert!(upgraded.deleted_connectors.contains_key(scoped_key("app", "b")).unwrap());
        assert!(!upgraded.connectors.contains_key(scoped_key("app", "b")).unwrap());
        assert_eq!(ids(&upgraded.list_connectors("app", None, 10, false).await.unwrap()), [("a", 1), ("c", 1)]);
        assert_eq!(ids(&upgraded.list_connectors("app", None, 10, true).await.unwrap()), [("a", 1), ("b", 2), ("c", 1)]);
        upgraded.close().await.unwrap();
        drop(upgraded);

        let db = open_sled(directory.path()).await;
        assert_eq!(db.get(FORMAT_MARKER_KEY).unwrap().as_deref(), Some(&[FORMAT_VERSION][..]));
        assert!(db.open_tree("live_connectors").unwrap().is_empty(), "the layout-2 index was not emptied");
    }

    /// Opens `path` with sled alone, once the store that had it open let go of its lock.
    async fn open_sled(path: &Path) -> sled::Db {
        for _ in 0..100 {
            match sled::Config::new().path(path).open() {
                Ok(db) => return db,
                Err(error) if error.to_string().contains("could not acquire lock") => {
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
                Err(error) => panic!("{error}"),
            }
        }
        panic!("{} stayed locked for 5 s", path.display());
    }
}
