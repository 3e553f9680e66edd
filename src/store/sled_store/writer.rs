//! The one writer of a sled store, and the write-ahead log that makes its writes durable.
//!
//! sled 0.34 seals a log buffer and waits for the device (`sync_file_range`) at the end of
//! every transaction, however few keys it touches, so the writer uses no sled transactions.
//! It takes every write that queued while the previous batch ran and, for each in turn,
//! checks it against sled plus the changes of the batch's earlier writes. A write that fails
//! (a stale revision, a second pending sync, a taken client id) leaves no change behind.
//! The changes of the batch then go to the write-ahead log as one record (see `wal`), one
//! fdatasync makes them durable, and only then does the writer apply them to sled and
//! reply to the callers. So sled never contains a change that the log lacks, and readers
//! never see a write that a crash could undo.
//!
//! Plain sled writes are not atomic across keys, and a crash can keep any subset of the
//! writes that sled had not flushed. Opening the store replays every record of the log in
//! order, which restores each key's last logged value. The writer takes the write side of
//! [`Shared::gate`] while it applies a batch. Reads of more than one key take the read side,
//! so they never see half of a batch.

use std::{
    cell::RefCell,
    collections::HashMap,
    path::PathBuf,
    sync::{Arc, Mutex, RwLock, atomic::AtomicBool},
};

use sled::IVec;
use tokio::sync::{mpsc, oneshot};

use super::wal::{Changes, Wal};
use super::{
    backend_error, check_revision, child_key, connector_key, credential_key, lease_entry, schedule_entry, scoped_key, sync_key, wal_error,
};
use crate::{
    domain::{Connector, Credential, SyncRun, SyncState},
    store::{
        Batch, Inserted, StoreError, Versioned,
        record::{decode_connector, decode_request_id, decode_sync, encode_connector, encode_credential, encode_sync},
    },
};

/// Maximum number of writes in one batch, and so in one log record.
const MAX_WRITES_PER_BATCH: usize = 64;
/// Maximum number of writes waiting for the writer. Further callers wait to enqueue.
const QUEUE_CAPACITY: usize = 1024;
/// Room a segment must have left before a batch starts. A larger record still fits: it
/// starts a segment of its own size.
const RESERVED_LOG_BYTES: u64 = 1024 * 1024;

/// Handles of every tree that writes touch.
#[derive(Clone)]
pub(super) struct Trees {
    pub connectors: sled::Tree,
    /// Written only by builds before layout 3. Log records from such a build still replay
    /// into it, and the upgrade to layout 3 empties it.
    pub live_connectors: sled::Tree,
    pub request_ids: sled::Tree,
    pub schedule_due: sled::Tree,
    pub syncs: sled::Tree,
    pub pending_syncs: sled::Tree,
    pub sync_leases: sled::Tree,
    pub sync_request_ids: sled::Tree,
    pub credentials: sled::Tree,
    pub credential_clients: sled::Tree,
    pub deleted_connectors: sled::Tree,
}

impl Trees {
    /// Returns the trees by their number in log records, so existing positions must never
    /// change.
    pub(super) fn in_order(&self) -> [&sled::Tree; 11] {
        [
            &self.connectors,
            &self.live_connectors,
            &self.request_ids,
            &self.schedule_due,
            &self.syncs,
            &self.pending_syncs,
            &self.sync_leases,
            &self.sync_request_ids,
            &self.credentials,
            &self.credential_clients,
            &self.deleted_connectors,
        ]
    }
}

/// A key of one tree, by the tree's number in [`Trees::in_order`].
type TreeKey = (u8, IVec);

/// One change: the new value, or `None` for a removal.
type Change = (u8, IVec, Option<IVec>);

/// The changes of one write while it runs, on top of the batch's earlier writes.
struct Scope<'a> {
    batch: &'a HashMap<TreeKey, Option<IVec>>,
    changes: Vec<Change>,
}

impl Scope<'_> {
    fn get(&self, tree: u8, sled_tree: &sled::Tree, key: &[u8]) -> Result<Option<IVec>, StoreError> {
        let own = self.changes.iter().rev().find(|(number, changed, _)| *number == tree && changed.as_ref() == key);
        if let Some((_, _, value)) = own {
            return Ok(value.clone());
        }
        if let Some(value) = self.batch.get(&(tree, IVec::from(key))) {
            return Ok(value.clone());
        }
        sled_tree.get(key).map_err(backend_error)
    }
}

/// A tree plus the changes of the running write.
struct Staged<'a, 'b> {
    tree: &'a sled::Tree,
    number: u8,
    scope: &'a RefCell<Scope<'b>>,
}

impl Staged<'_, '_> {
    fn get(&self, key: &[u8]) -> Result<Option<IVec>, StoreError> {
        self.scope.borrow().get(self.number, self.tree, key)
    }

    fn insert(&self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.scope.borrow_mut().changes.push((self.number, IVec::from(key), Some(IVec::from(value))));
        Ok(())
    }

    fn remove(&self, key: &[u8]) -> Result<(), StoreError> {
        self.scope.borrow_mut().changes.push((self.number, IVec::from(key), None));
        Ok(())
    }
}

/// All trees plus the changes of the running write, by name.
struct View<'a, 'b> {
    connectors: Staged<'a, 'b>,
    deleted_connectors: Staged<'a, 'b>,
    request_ids: Staged<'a, 'b>,
    schedule_due: Staged<'a, 'b>,
    syncs: Staged<'a, 'b>,
    pending_syncs: Staged<'a, 'b>,
    sync_leases: Staged<'a, 'b>,
    sync_request_ids: Staged<'a, 'b>,
    credentials: Staged<'a, 'b>,
    credential_clients: Staged<'a, 'b>,
}

impl<'a, 'b> View<'a, 'b> {
    fn new(trees: &'a Trees, scope: &'a RefCell<Scope<'b>>) -> Self {
        let staged = |tree, number| Staged { tree, number, scope };
        Self {
            connectors: staged(&trees.connectors, 0),
            deleted_connectors: staged(&trees.deleted_connectors, 10),
            request_ids: staged(&trees.request_ids, 2),
            schedule_due: staged(&trees.schedule_due, 3),
            syncs: staged(&trees.syncs, 4),
            pending_syncs: staged(&trees.pending_syncs, 5),
            sync_leases: staged(&trees.sync_leases, 6),
            sync_request_ids: staged(&trees.sync_request_ids, 7),
            credentials: staged(&trees.credentials, 8),
            credential_clients: staged(&trees.credential_clients, 9),
        }
    }
}

/// One write, with everything it needs already encoded.
pub(super) enum Write {
    InsertConnector(NewConnector),
    Apply(Box<Batch>),
    /// Removes request-id entries whose value is still the one given.
    RemoveRequestIds(Vec<(IVec, IVec)>),
}

/// A connector to insert, encoded before it reaches the writer.
pub(super) struct NewConnector {
    pub app_id: String,
    pub key: Vec<u8>,
    /// The connector's key as text, for error messages.
    pub name: String,
    pub encoded: Vec<u8>,
    /// Key and value of the request-id entry, when the caller sent a request id.
    pub request_id: Option<(Vec<u8>, Vec<u8>)>,
}

/// Result of a successful write.
pub(super) enum Written {
    Inserted(Box<Inserted>),
    Applied,
    /// Number of request-id entries removed.
    Removed(usize),
}

struct Queued {
    write: Write,
    reply: oneshot::Sender<Result<Written, StoreError>>,
}

/// State that the writer shares with the store.
#[derive(Default)]
pub(super) struct Shared {
    /// Error of a failed log append or sled write. The writer then rejects every later
    /// write until the store is opened again, which replays the log.
    failure: Mutex<Option<StoreError>>,
    /// Set after every log append; the checkpoint task clears it when it flushes sled.
    pub dirty: AtomicBool,
    /// Held for writing while the writer applies a batch to sled. Reads of more than one
    /// key hold it for reading.
    pub gate: RwLock<()>,
}

impl Shared {
    pub(super) fn failure(&self) -> Option<StoreError> {
        self.failure.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    fn fail(&self, error: StoreError) {
        *self.failure.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(error);
    }
}

/// Channel for the log segments that the writer finished. A checkpoint removes them.
pub(super) type FinishedSegments = mpsc::UnboundedSender<PathBuf>;

pub(super) struct Writer {
    queue: Mutex<Option<mpsc::Sender<Queued>>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    shared: Arc<Shared>,
}

impl Writer {
    /// Starts the writer thread. Without a log (`wal` is `None`), writes are acknowledged
    /// once sled applied them, which only the unsafe test mode does.
    pub(super) fn start(trees: Trees, wal: Option<Wal>, finished: FinishedSegments) -> std::io::Result<Self> {
        let (sender, receiver) = mpsc::channel(QUEUE_CAPACITY);
        let shared = Arc::new(Shared::default());
        let thread = std::thread::Builder::new().name("sled-writer".to_owned()).spawn({
            let shared = Arc::clone(&shared);
            move || run(&trees, receiver, wal, &finished, &shared)
        })?;
        Ok(Self { queue: Mutex::new(Some(sender)), thread: Mutex::new(Some(thread)), shared })
    }

    pub(super) fn shared(&self) -> Arc<Shared> {
        Arc::clone(&self.shared)
    }

    /// Applies `write` in the next batch. The change is durable when this returns `Ok`.
    pub(super) async fn submit(&self, write: Write) -> Result<Written, StoreError> {
        let sender = self.queue.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone();
        let sender = sender.ok_or(StoreError::Closed)?;
        let (reply, written) = oneshot::channel();
        sender.send(Queued { write, reply }).await.map_err(|_| StoreError::Closed)?;
        written.await.map_err(|_| StoreError::Backend("the write batch ended without a result".to_owned()))?
    }

    /// Refuses new writes, lets the queued ones finish, and waits for the thread to end, so
    /// that its tree handles no longer hold the database open.
    pub(super) async fn stop(&self) {
        drop(self.queue.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take());
        let thread = self.thread.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take();
        if let Some(thread) = thread {
            match tokio::task::spawn_blocking(move || thread.join()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => tracing::error!("the sled writer thread panicked"),
                Err(error) => tracing::error!(%error, "waiting for the sled writer thread failed"),
            }
        }
    }
}

fn run(trees: &Trees, mut queue: mpsc::Receiver<Queued>, mut wal: Option<Wal>, finished: &FinishedSegments, shared: &Shared) {
    let mut writes = Vec::with_capacity(MAX_WRITES_PER_BATCH);
    while let Some(first) = queue.blocking_recv() {
        writes.push(first);
        while writes.len() < MAX_WRITES_PER_BATCH {
            match queue.try_recv() {
                Ok(queued) => writes.push(queued),
                Err(_) => break,
            }
        }
        if let Some(error) = shared.failure() {
            reply_all(writes.drain(..), &error);
            continue;
        }
        if let Some(wal) = &mut wal {
            // Nothing is logged yet, so a failure here fails these writes and nothing else.
            match wal.reserve(RESERVED_LOG_BYTES) {
                Ok(segment) => hand_over(finished, segment),
                Err(error) => {
                    let error = wal_error("starting a log segment", &error);
                    tracing::error!(%error, writes = writes.len(), "write batch not started");
                    reply_all(writes.drain(..), &error);
                    continue;
                }
            }
        }
        run_batch(trees, writes.drain(..), wal.as_mut(), finished, shared);
    }
}

fn hand_over(finished: &FinishedSegments, segment: Option<PathBuf>) {
    if let Some(segment) = segment {
        // The checkpoint task runs until the writer drops its sender, unless it panicked or
        // its runtime shut down. A segment it never receives is replayed at the next open.
        let _ = finished.send(segment);
    }
}

/// Checks each write in turn, logs the changes of those that succeed, applies them to sled
/// and sends each caller its result.
fn run_batch(trees: &Trees, writes: impl Iterator<Item = Queued>, wal: Option<&mut Wal>, finished: &FinishedSegments, shared: &Shared) {
    let mut latest: HashMap<TreeKey, Option<IVec>> = HashMap::new();
    let mut changes: Vec<Change> = Vec::new();
    let mut succeeded = Vec::with_capacity(MAX_WRITES_PER_BATCH);
    for queued in writes {
        let scope = RefCell::new(Scope { batch: &latest, changes: Vec::new() });
        let outcome = apply_one(&queued.write, &View::new(trees, &scope));
        let own = scope.into_inner().changes;
        match outcome {
            Ok(written) => {
                for (tree, key, value) in &own {
                    latest.insert((*tree, key.clone()), value.clone());
                }
                changes.extend(own);
                succeeded.push((queued.reply, written));
            }
            // The failed write's changes are dropped with `own`.
            Err(error) => {
                let _ = queued.reply.send(Err(error));
            }
        }
    }
    if changes.is_empty() {
        // Replays and writes that change nothing need no record.
        for (reply, written) in succeeded {
            let _ = reply.send(Ok(written));
        }
        return;
    }

    if let Some(wal) = wal {
        let mut record = Changes::default();
        for (tree, key, value) in &changes {
            match value {
                Some(value) => record.put(*tree, key, value),
                None => record.remove(*tree, key),
            }
        }
        match wal.append(record.as_bytes()) {
            Ok(segment) => hand_over(finished, segment),
            Err(error) => {
                let error = wal_error("appending to the write-ahead log", &error);
                // A failed fdatasync may have dropped pages that an earlier success did
                // not cover, so the log cannot be trusted until it is opened again.
                tracing::error!(%error, writes = succeeded.len(), "write-ahead log append failed; writes are rejected until the server restarts");
                shared.fail(error.clone());
                reply_all(succeeded.into_iter().map(|(reply, _)| reply), &error);
                return;
            }
        }
        shared.dirty.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    if let Err(error) = apply_to_sled(trees, &changes, shared) {
        // The record is durable, so the batch takes effect when the store is opened again
        // and replays the log. Until then sled may contain part of it.
        tracing::error!(%error, writes = succeeded.len(), "applying a logged batch to sled failed; writes are rejected until the server restarts");
        shared.fail(error.clone());
        reply_all(succeeded.into_iter().map(|(reply, _)| reply), &error);
        return;
    }
    for (reply, written) in succeeded {
        // A caller that went away gets no result, but its write is kept.
        let _ = reply.send(Ok(written));
    }
}

/// Applies logged changes to sled, in order.
pub(super) fn apply_to_sled(trees: &Trees, changes: &[Change], shared: &Shared) -> Result<(), StoreError> {
    let in_order = trees.in_order();
    let _gate = shared.gate.write().unwrap_or_else(|poisoned| poisoned.into_inner());
    for (tree, key, value) in changes {
        let tree = in_order[usize::from(*tree)];
        match value {
            Some(value) => tree.insert(key, value.clone()),
            None => tree.remove(key),
        }
        .map_err(backend_error)?;
    }
    Ok(())
}

/// Sends `error` to every caller behind `replies`.
fn reply_all<R: Into<Reply>>(replies: impl Iterator<Item = R>, error: &StoreError) {
    for reply in replies {
        let _ = reply.into().0.send(Err(error.clone()));
    }
}

/// The reply channel of a queued write.
struct Reply(oneshot::Sender<Result<Written, StoreError>>);

impl From<Queued> for Reply {
    fn from(queued: Queued) -> Self {
        Self(queued.reply)
    }
}

impl From<oneshot::Sender<Result<Written, StoreError>>> for Reply {
    fn from(sender: oneshot::Sender<Result<Written, StoreError>>) -> Self {
        Self(sender)
    }
}

fn apply_one(write: &Write, view: &View<'_, '_>) -> Result<Written, StoreError> {
    match write {
        Write::InsertConnector(connector) => insert_connector(connector, view).map(|inserted| Written::Inserted(Box::new(inserted))),
        Write::Apply(batch) => {
            if let Some(write) = &batch.connector {
                write_connector(write, view)?;
            }
            for write in &batch.syncs {
                write_sync(write, view)?;
            }
            for write in &batch.credentials {
                write_credential(write, view)?;
            }
            Ok(Written::Applied)
        }
        Write::RemoveRequestIds(entries) => {
            let mut removed = 0;
            for (key, expected) in entries {
                // Remove only the entry that was read, never one recorded since.
                if view.request_ids.get(key)?.as_ref() == Some(expected) {
                    view.request_ids.remove(key)?;
                    removed += 1;
                }
            }
            Ok(Written::Removed(removed))
        }
    }
}

fn insert_connector(connector: &NewConnector, view: &View<'_, '_>) -> Result<Inserted, StoreError> {
    if let Some((request_key, request_value)) = &connector.request_id {
        if let Some(existing) = view.request_ids.get(request_key)? {
            let (existing_id, _) = decode_request_id(request_key, &existing)?;
            let existing_key = scoped_key(&connector.app_id, &existing_id);
            let Some(bytes) = stored_connector(view, &existing_key)? else {
                return Err(StoreError::Corrupt {
                    key: String::from_utf8_lossy(request_key).replace('\0', "/"),
                    reason: format!("request id names missing connector {existing_id}"),
                });
            };
            let existing = decode_connector(&existing_key, &bytes)?;
            return Ok(Inserted::Replayed(existing));
        }
        view.request_ids.insert(request_key.as_slice(), request_value.as_slice())?;
    }
    if stored_connector(view, &connector.key)?.is_some() {
        return Err(StoreError::Conflict(format!("{} already exists", connector.name)));
    }
    view.connectors.insert(connector.key.as_slice(), connector.encoded.as_slice())?;
    Ok(Inserted::Created)
}

/// Reads a connector's record, live or deleted.
fn stored_connector(view: &View<'_, '_>, key: &[u8]) -> Result<Option<IVec>, StoreError> {
    match view.connectors.get(key)? {
        Some(bytes) => Ok(Some(bytes)),
        None => view.deleted_connectors.get(key),
    }
}

fn write_connector(write: &Versioned<Connector>, view: &View<'_, '_>) -> Result<(), StoreError> {
    let connector = &write.record;
    let key = connector_key(&connector.key());
    let stored = stored_connector(view, &key)?;
    check_revision(&key, stored.as_deref(), write.expected_revision, &connector.key().to_string())?;

    let mut was_deleted = false;
    if let Some(stored) = &stored {
        let old = decode_connector(&key, stored)?;
        was_deleted = old.is_deleted();
        if let Some(entry) = schedule_entry(&old, &key) {
            view.schedule_due.remove(&entry)?;
        }
    }
    // A record moves between the trees with its insert first, so a reader that looks in
    // `connectors` and then in `deleted_connectors` always finds it.
    let encoded = encode_connector(connector);
    if connector.is_deleted() {
        view.deleted_connectors.insert(&key, &encoded)?;
        if stored.is_some() && !was_deleted {
            view.connectors.remove(key.as_slice())?;
        }
    } else {
        view.connectors.insert(&key, &encoded)?;
        if was_deleted {
            view.deleted_connectors.remove(key.as_slice())?;
        }
    }
    if let Some(entry) = schedule_entry(connector, &key) {
        view.schedule_due.insert(&entry, &[])?;
    }
    Ok(())
}

fn write_sync(write: &Versioned<SyncRun>, view: &View<'_, '_>) -> Result<(), StoreError> {
    let sync = &write.record;
    let key = sync_key(sync);
    let connector = scoped_key(&sync.app_id, &sync.connector_id);
    let what = format!("sync {} of connector {} in app {}", sync.id, sync.connector_id, sync.app_id);
    let stored = view.syncs.get(&key)?;
    check_revision(&key, stored.as_deref(), write.expected_revision, &what)?;
    let old = stored.as_ref().map(|bytes| decode_sync(&key, bytes)).transpose()?;

    // At most one pending sync per connector.
    let pending_id = view.pending_syncs.get(&connector)?;
    let is_this = |id: &sled::IVec| id.as_ref() == sync.id.as_bytes();
    if sync.state == SyncState::Pending {
        if let Some(other) = pending_id.as_ref().filter(|id| !is_this(id)) {
            return Err(StoreError::Conflict(format!(
                "connector {} already has pending sync {}",
                sync.connector_id,
                String::from_utf8_lossy(other)
            )));
        }
        view.pending_syncs.insert(connector.as_slice(), sync.id.as_bytes())?;
    } else if pending_id.as_ref().is_some_and(is_this) {
        view.pending_syncs.remove(connector.as_slice())?;
    }

    if let Some(entry) = old.as_ref().and_then(|old| lease_entry(old, &key)) {
        view.sync_leases.remove(&entry)?;
    }
    if let Some(entry) = lease_entry(sync, &key) {
        view.sync_leases.insert(&entry, &[])?;
    }

    if let Some(request_id) = &sync.request_id
        && old.as_ref().is_none_or(|old| old.request_id.is_none())
    {
        let request_key = child_key(&connector, request_id);
        if view.sync_request_ids.get(&request_key)?.is_some() {
            return Err(StoreError::Conflict(format!("request id {request_id} was already used")));
        }
        view.sync_request_ids.insert(&request_key, sync.id.as_bytes())?;
    }

    view.syncs.insert(&key, &encode_sync(sync))?;
    Ok(())
}

fn write_credential(write: &Versioned<Credential>, view: &View<'_, '_>) -> Result<(), StoreError> {
    let credential = &write.record;
    let key = credential_key(credential);
    let what = format!("credential {} of connector {}", credential.id, credential.connector_id);
    let stored = view.credentials.get(&key)?;
    check_revision(&key, stored.as_deref(), write.expected_revision, &what)?;
    if stored.is_none() {
        if view.credential_clients.get(credential.client_id.as_bytes())?.is_some() {
            return Err(StoreError::Conflict(format!("client id {} is taken", credential.client_id)));
        }
        view.credential_clients.insert(credential.client_id.as_bytes(), key.as_slice())?;
    }
    view.credentials.insert(&key, &encode_credential(credential))?;
    Ok(())
}
