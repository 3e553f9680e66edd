//! The one writer of a sled store: writes that queue up run together in one transaction.
//!
//! sled 0.34 seals and writes a log buffer of its own for every transaction, however few
//! keys it touches, so a small write costs about as much as a large one. The writer task
//! takes every write that queued while the previous transaction ran and applies them all
//! in one transaction, which pays that cost once.
//!
//! A write that fails (a stale revision, a second pending sync, a taken client id) must
//! leave no trace. sled cannot undo part of a transaction, so the writer aborts it and runs
//! it again without the failed write. The writes before it then do the same again. The
//! writes after it see the store as if the failed one had never been tried.

use std::sync::{Arc, Mutex};

use sled::{
    Transactional,
    transaction::{ConflictableTransactionError, TransactionError, TransactionalTree},
};
use tokio::{
    sync::{mpsc, oneshot},
    task::JoinHandle,
};

use super::{
    Abortable, abort, backend_error, check_revision, child_key, connector_key, credential_key,
    lease_entry, schedule_entry, scoped_key, sync_key,
};
use crate::{
    domain::{Connector, Credential, SyncRun, SyncState},
    store::{
        Batch, Inserted, StoreError, Versioned,
        record::{decode_connector, decode_request_id, decode_sync, encode_connector, encode_credential, encode_sync},
    },
};

/// Maximum number of writes in one transaction. A failed write costs a rerun of the writes
/// before it, so this also bounds the work that many failing writes can cause.
const MAX_WRITES_PER_TRANSACTION: usize = 64;
/// Maximum number of writes waiting for the writer. Further callers wait to enqueue.
const QUEUE_CAPACITY: usize = 1024;

/// Handles of every tree that writes touch.
#[derive(Clone)]
pub(super) struct Trees {
    pub connectors: sled::Tree,
    pub live_connectors: sled::Tree,
    pub request_ids: sled::Tree,
    pub schedule_due: sled::Tree,
    pub syncs: sled::Tree,
    pub pending_syncs: sled::Tree,
    pub sync_leases: sled::Tree,
    pub sync_request_ids: sled::Tree,
    pub credentials: sled::Tree,
    pub credential_clients: sled::Tree,
}

impl Trees {
    /// Returns the trees in the order that [`View::new`] expects.
    fn in_order(&self) -> [&sled::Tree; 10] {
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
        ]
    }
}

/// The trees inside one transaction, by name.
struct View<'a> {
    connectors: &'a TransactionalTree,
    live_connectors: &'a TransactionalTree,
    request_ids: &'a TransactionalTree,
    schedule_due: &'a TransactionalTree,
    syncs: &'a TransactionalTree,
    pending_syncs: &'a TransactionalTree,
    sync_leases: &'a TransactionalTree,
    sync_request_ids: &'a TransactionalTree,
    credentials: &'a TransactionalTree,
    credential_clients: &'a TransactionalTree,
}

impl<'a> View<'a> {
    fn new(trees: &'a [TransactionalTree]) -> Self {
        let [
            connectors,
            live_connectors,
            request_ids,
            schedule_due,
            syncs,
            pending_syncs,
            sync_leases,
            sync_request_ids,
            credentials,
            credential_clients,
        ] = trees
        else {
            unreachable!("a transaction over Trees::in_order has 10 trees, not {}", trees.len());
        };
        Self {
            connectors,
            live_connectors,
            request_ids,
            schedule_due,
            syncs,
            pending_syncs,
            sync_leases,
            sync_request_ids,
            credentials,
            credential_clients,
        }
    }
}

/// One write, with everything it needs already encoded.
pub(super) enum Write {
    InsertConnector(NewConnector),
    Apply(Box<Batch>),
}

/// A connector to insert, encoded outside the transaction so that a rerun does not encode
/// it again.
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
}

struct Queued {
    write: Write,
    reply: oneshot::Sender<Result<Written, StoreError>>,
}

/// Abort reason of a shared transaction: which write failed and why.
struct Failed {
    index: usize,
    error: StoreError,
}

pub(super) struct Writer {
    queue: Mutex<Option<mpsc::Sender<Queued>>>,
    task: tokio::sync::Mutex<Option<JoinHandle<()>>>,
}

impl Writer {
    /// Starts the writer task on the current tokio runtime.
    pub(super) fn start(trees: Trees) -> Self {
        let (sender, receiver) = mpsc::channel(QUEUE_CAPACITY);
        let task = tokio::spawn(run(Arc::new(trees), receiver));
        Self { queue: Mutex::new(Some(sender)), task: tokio::sync::Mutex::new(Some(task)) }
    }

    /// Applies `write` in the next transaction. The change is applied, not yet durable,
    /// when this returns.
    pub(super) async fn submit(&self, write: Write) -> Result<Written, StoreError> {
        let sender = self.queue.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone();
        let sender = sender.ok_or(StoreError::Closed)?;
        let (reply, written) = oneshot::channel();
        sender.send(Queued { write, reply }).await.map_err(|_| StoreError::Closed)?;
        written
            .await
            .map_err(|_| StoreError::Backend("the write transaction ended without a result".to_owned()))?
    }

    /// Refuses new writes, lets the queued ones finish, and waits for the task to end, so
    /// that its tree handles no longer hold the database open.
    pub(super) async fn stop(&self) {
        drop(self.queue.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take());
        if let Some(task) = self.task.lock().await.take()
            && let Err(error) = task.await
        {
            tracing::error!(%error, "the sled writer task failed");
        }
    }
}

async fn run(trees: Arc<Trees>, mut queue: mpsc::Receiver<Queued>) {
    let mut queued = Vec::with_capacity(MAX_WRITES_PER_TRANSACTION);
    while queue.recv_many(&mut queued, MAX_WRITES_PER_TRANSACTION).await > 0 {
        let writes = std::mem::replace(&mut queued, Vec::with_capacity(MAX_WRITES_PER_TRANSACTION));
        let trees = Arc::clone(&trees);
        // A sled transaction can wait for a whole flush (see `flush_durably`), so it must
        // not run on a runtime worker.
        if let Err(error) = tokio::task::spawn_blocking(move || apply_together(&trees, writes)).await {
            // The replies were dropped with the task, so their callers get an error.
            tracing::error!(%error, "a write transaction panicked");
        }
    }
}

/// Applies `writes` in one transaction and sends each caller its result.
fn apply_together(trees: &Trees, mut writes: Vec<Queued>) {
    let in_order = trees.in_order();
    while !writes.is_empty() {
        let result = in_order.as_slice().transaction(|view: &Vec<TransactionalTree>| {
            let view = View::new(view);
            let mut written = Vec::with_capacity(writes.len());
            for (index, queued) in writes.iter().enumerate() {
                let outcome = apply_one(&queued.write, &view).map_err(|error| match error {
                    ConflictableTransactionError::Abort(error) => {
                        ConflictableTransactionError::Abort(Failed { index, error })
                    }
                    ConflictableTransactionError::Storage(error) => ConflictableTransactionError::Storage(error),
                    // sled retries the whole closure on a conflict.
                    _ => ConflictableTransactionError::Conflict,
                })?;
                written.push(outcome);
            }
            Ok(written)
        });
        match result {
            Ok(written) => {
                for (queued, outcome) in writes.into_iter().zip(written) {
                    // A caller that went away gets no result, but its write is kept.
                    let _ = queued.reply.send(Ok(outcome));
                }
                return;
            }
            Err(TransactionError::Abort(Failed { index, error })) => {
                let failed = writes.remove(index);
                let _ = failed.reply.send(Err(error));
            }
            Err(TransactionError::Storage(error)) => {
                let error = backend_error(error);
                tracing::error!(%error, writes = writes.len(), "write transaction failed");
                for queued in writes {
                    let _ = queued.reply.send(Err(error.clone()));
                }
                return;
            }
        }
    }
}

fn apply_one(write: &Write, view: &View<'_>) -> Abortable<Written> {
    match write {
        Write::InsertConnector(connector) => {
            insert_connector(connector, view).map(|inserted| Written::Inserted(Box::new(inserted)))
        }
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
    }
}

fn insert_connector(connector: &NewConnector, view: &View<'_>) -> Abortable<Inserted> {
    if let Some((request_key, request_value)) = &connector.request_id {
        if let Some(existing) = view.request_ids.get(request_key)? {
            let (existing_id, _) = decode_request_id(request_key, &existing).map_err(abort)?;
            let existing_key = scoped_key(&connector.app_id, &existing_id);
            let Some(bytes) = view.connectors.get(&existing_key)? else {
                return Err(abort(StoreError::Corrupt {
                    key: String::from_utf8_lossy(request_key).replace('\0', "/"),
                    reason: format!("request id names missing connector {existing_id}"),
                }));
            };
            let existing = decode_connector(&existing_key, &bytes).map_err(abort)?;
            return Ok(Inserted::Replayed(existing));
        }
        view.request_ids.insert(request_key.as_slice(), request_value.as_slice())?;
    }
    if view.connectors.get(&connector.key)?.is_some() {
        return Err(abort(StoreError::Conflict(format!("{} already exists", connector.name))));
    }
    view.connectors.insert(connector.key.as_slice(), connector.encoded.as_slice())?;
    view.live_connectors.insert(connector.key.as_slice(), &[] as &[u8])?;
    Ok(Inserted::Created)
}

fn write_connector(write: &Versioned<Connector>, view: &View<'_>) -> Abortable<()> {
    let connector = &write.record;
    let key = connector_key(&connector.key());
    let stored = view.connectors.get(&key)?;
    check_revision(&key, stored.as_deref(), write.expected_revision, &connector.key().to_string())?;

    if let Some(stored) = &stored {
        let old = decode_connector(&key, stored).map_err(abort)?;
        if let Some(entry) = schedule_entry(&old, &key) {
            view.schedule_due.remove(entry)?;
        }
    }
    view.connectors.insert(key.as_slice(), encode_connector(connector))?;
    if connector.is_deleted() {
        view.live_connectors.remove(key.as_slice())?;
    } else {
        view.live_connectors.insert(key.as_slice(), &[] as &[u8])?;
    }
    if let Some(entry) = schedule_entry(connector, &key) {
        view.schedule_due.insert(entry, &[] as &[u8])?;
    }
    Ok(())
}

fn write_sync(write: &Versioned<SyncRun>, view: &View<'_>) -> Abortable<()> {
    let sync = &write.record;
    let key = sync_key(sync);
    let connector = scoped_key(&sync.app_id, &sync.connector_id);
    let what = format!("sync {} of connector {} in app {}", sync.id, sync.connector_id, sync.app_id);
    let stored = view.syncs.get(&key)?;
    check_revision(&key, stored.as_deref(), write.expected_revision, &what)?;
    let old = stored.as_ref().map(|bytes| decode_sync(&key, bytes)).transpose().map_err(abort)?;

    // At most one pending sync per connector.
    let pending_id = view.pending_syncs.get(&connector)?;
    let is_this = |id: &sled::IVec| id.as_ref() == sync.id.as_bytes();
    if sync.state == SyncState::Pending {
        if let Some(other) = pending_id.as_ref().filter(|id| !is_this(id)) {
            return Err(abort(StoreError::Conflict(format!(
                "connector {} already has pending sync {}",
                sync.connector_id,
                String::from_utf8_lossy(other)
            ))));
        }
        view.pending_syncs.insert(connector.as_slice(), sync.id.as_bytes())?;
    } else if pending_id.as_ref().is_some_and(is_this) {
        view.pending_syncs.remove(connector.as_slice())?;
    }

    if let Some(entry) = old.as_ref().and_then(|old| lease_entry(old, &key)) {
        view.sync_leases.remove(entry)?;
    }
    if let Some(entry) = lease_entry(sync, &key) {
        view.sync_leases.insert(entry, &[] as &[u8])?;
    }

    if let Some(request_id) = &sync.request_id
        && old.as_ref().is_none_or(|old| old.request_id.is_none())
    {
        let request_key = child_key(&connector, request_id);
        if view.sync_request_ids.get(&request_key)?.is_some() {
            return Err(abort(StoreError::Conflict(format!("request id {request_id} was already used"))));
        }
        view.sync_request_ids.insert(request_key, sync.id.as_bytes())?;
    }

    view.syncs.insert(key, encode_sync(sync))?;
    Ok(())
}

fn write_credential(write: &Versioned<Credential>, view: &View<'_>) -> Abortable<()> {
    let credential = &write.record;
    let key = credential_key(credential);
    let what = format!("credential {} of connector {}", credential.id, credential.connector_id);
    let stored = view.credentials.get(&key)?;
    check_revision(&key, stored.as_deref(), write.expected_revision, &what)?;
    if stored.is_none() {
        if view.credential_clients.get(credential.client_id.as_bytes())?.is_some() {
            return Err(abort(StoreError::Conflict(format!("client id {} is taken", credential.client_id))));
        }
        view.credential_clients.insert(credential.client_id.as_bytes(), key.as_slice())?;
    }
    view.credentials.insert(key, encode_credential(credential))?;
    Ok(())
}
