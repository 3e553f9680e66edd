//! Group commit: one flusher task makes writes durable in batches.
//!
//! A writer applies its change, then calls [`GroupCommit::wait_durable`], which returns once
//! a flush that *started after the call* has finished. Writers that arrive while a flush
//! runs share the next one, so a burst of writes costs one or two flushes, not one each.

use std::sync::{
    Arc,
    atomic::{AtomicBool, AtomicU64, Ordering},
};

use tokio::sync::{Notify, watch};

use super::StoreError;

/// Blocking operation that makes every write applied so far durable. It fails with
/// [`StoreError::NoSpace`] when the disk is full and [`StoreError::Flush`] otherwise.
pub(super) type FlushFn = Arc<dyn Fn() -> Result<(), StoreError> + Send + Sync>;

#[derive(Debug, Clone, Default)]
struct Completed {
    /// Number of the last finished flush; flushes are numbered from 1.
    generation: u64,
    /// Error of that flush, if it failed.
    error: Option<StoreError>,
    /// Flag set when the flusher stops. Waiters that the last flush did not cover then get
    /// `Closed`.
    flusher_stopped: bool,
}

pub(super) struct GroupCommit {
    /// Number of the last flush that started.
    started: AtomicU64,
    requested: Notify,
    completed: watch::Sender<Completed>,
    closed: AtomicBool,
    stop_requested: AtomicBool,
}

impl GroupCommit {
    /// Starts the flusher task on the current tokio runtime.
    pub(super) fn start(flush: FlushFn) -> Arc<Self> {
        let commit = Arc::new(Self {
            started: AtomicU64::new(0),
            requested: Notify::new(),
            completed: watch::Sender::new(Completed::default()),
            closed: AtomicBool::new(false),
            stop_requested: AtomicBool::new(false),
        });
        tokio::spawn(run_flusher(Arc::clone(&commit), flush));
        commit
    }

    /// Waits until a flush that started after this call has finished, and returns its error.
    pub(super) async fn wait_durable(&self) -> Result<(), StoreError> {
        let mut completed = self.completed.subscribe();
        let target = self.started.load(Ordering::SeqCst) + 1;
        self.requested.notify_one();
        loop {
            {
                let state = completed.borrow_and_update();
                if state.generation >= target {
                    return match &state.error {
                        None => Ok(()),
                        Some(error) => Err(error.clone()),
                    };
                }
                if state.flusher_stopped {
                    return Err(StoreError::Closed);
                }
            }
            if completed.changed().await.is_err() {
                return Err(StoreError::Closed);
            }
        }
    }

    /// Marks the store closed; writes started after this fail with [`StoreError::Closed`].
    pub(super) fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
    }

    pub(super) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// Returns the error of the last finished flush, if it failed.
    pub(super) fn last_flush_error(&self) -> Option<StoreError> {
        self.completed.borrow().error.clone()
    }

    /// Ends the flusher task once it is idle. The task drops the flush function, and with
    /// it the database handle that keeps the data directory locked.
    pub(super) fn stop_flusher(&self) {
        self.stop_requested.store(true, Ordering::SeqCst);
        self.requested.notify_one();
    }
}

async fn run_flusher(commit: Arc<GroupCommit>, flush: FlushFn) {
    loop {
        commit.requested.notified().await;
        if commit.stop_requested.load(Ordering::SeqCst) {
            commit.completed.send_modify(|completed| completed.flusher_stopped = true);
            return;
        }
        let generation = commit.started.fetch_add(1, Ordering::SeqCst) + 1;

        let flush = Arc::clone(&flush);
        let error = match tokio::task::spawn_blocking(move || flush()).await {
            Ok(Ok(())) => None,
            Ok(Err(error)) => Some(error),
            Err(join_error) => Some(StoreError::Flush(format!("flush task failed: {join_error}"))),
        };
        if let Some(error) = &error {
            tracing::error!(generation, %error, "flush failed; writes waiting on it are not acknowledged");
        }
        commit.completed.send_replace(Completed { generation, error, flusher_stopped: false });
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;

    #[tokio::test]
    async fn concurrent_writers_share_flushes() {
        let flushes = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&flushes);
        let commit = GroupCommit::start(Arc::new(move || {
            counter.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(std::time::Duration::from_millis(5));
            Ok(())
        }));

        let waiters: Vec<_> = (0..64)
            .map(|_| {
                let commit = Arc::clone(&commit);
                tokio::spawn(async move { commit.wait_durable().await })
            })
            .collect();
        for waiter in waiters {
            waiter.await.unwrap().unwrap();
        }

        let count = flushes.load(Ordering::SeqCst);
        assert!(count >= 1, "no flush ran");
        assert!(count < 64, "every writer flushed alone ({count} flushes)");
    }

    #[tokio::test]
    async fn failed_flush_is_reported_to_its_waiters() {
        let commit = GroupCommit::start(Arc::new(|| Err(StoreError::Flush("disk on fire".to_owned()))));
        let error = commit.wait_durable().await.unwrap_err();
        assert!(matches!(error, StoreError::Flush(ref message) if message == "disk on fire"));
        assert!(matches!(commit.last_flush_error(), Some(StoreError::Flush(_))));
    }

    #[tokio::test]
    async fn full_disk_flush_keeps_its_kind() {
        let commit = GroupCommit::start(Arc::new(|| Err(StoreError::NoSpace("ENOSPC".to_owned()))));
        let error = commit.wait_durable().await.unwrap_err();
        assert!(matches!(error, StoreError::NoSpace(ref message) if message == "ENOSPC"), "{error}");
    }

    #[tokio::test]
    async fn waiter_needs_a_flush_that_started_after_it() {
        let (release_sender, release_receiver) = std::sync::mpsc::channel::<()>();
        let release_receiver = Arc::new(std::sync::Mutex::new(release_receiver));
        let flushes = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&flushes);
        let commit = GroupCommit::start(Arc::new(move || {
            counter.fetch_add(1, Ordering::SeqCst);
            release_receiver.lock().unwrap().recv().map_err(|error| StoreError::Flush(error.to_string()))
        }));

        // The first waiter starts flush 1 and blocks inside it.
        let first = tokio::spawn({
            let commit = Arc::clone(&commit);
            async move { commit.wait_durable().await }
        });
        while flushes.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        // The second waiter arrives while flush 1 runs, so flush 1 must not release it.
        let second = tokio::spawn({
            let commit = Arc::clone(&commit);
            async move { commit.wait_durable().await }
        });
        tokio::task::yield_now().await;
        release_sender.send(()).unwrap();
        first.await.unwrap().unwrap();
        assert!(!second.is_finished() || flushes.load(Ordering::SeqCst) == 2);
        release_sender.send(()).unwrap();
        second.await.unwrap().unwrap();
        assert_eq!(flushes.load(Ordering::SeqCst), 2);
    }
}
