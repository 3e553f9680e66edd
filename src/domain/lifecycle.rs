//! The sync lifecycle: queueing, pausing, scheduling and confirming syncs, and the worker
//! side that claims them, keeps them alive and reports how they ended.
//!
//! Every change that moves a sync also writes the connector's status in the same store
//! batch, so the two never disagree. Each operation reads, computes a batch and applies it.
//! When another write lands in between, the store rejects the batch, so the operation starts
//! over from fresh reads.

use std::{future::Future, sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use tokio::sync::Notify;

use super::{
    Connector, ConnectorKey, CronSchedule, Error, Schedule, SyncDisabled, SyncRun, SyncState, SyncStatus, SyncTrigger, ids::IdGenerator,
};
use crate::store::{Batch, Store, StoreError, Versioned};

/// Attempts of one operation before it gives up under write contention.
const MAX_ATTEMPTS: usize = 16;
/// Runs returned by a schedule preview.
pub const SCHEDULE_PREVIEW_RUNS: usize = 5;
/// Category of `sync_disabled_category` while paused.
pub const PAUSED_CATEGORY: &str = "paused";
/// Most expired leases or due schedules handled in one sweep.
const SWEEP_BATCH: usize = 100;
/// Pause between two timer sweeps, which is also how often the timer lease is renewed.
pub const TIMER_INTERVAL: Duration = Duration::from_secs(1);
/// Name of the store lease whose holder runs lease expiry and the scheduler.
pub const TIMER_LEASE: &str = "timers";
/// How often a waiting ClaimSync looks for a pending sync without being woken. Syncs that
/// another replica queues on a shared store wake no waiter here.
const CLAIM_RECHECK_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Debug, Clone)]
pub struct LifecycleOptions {
    /// How long a claimed sync stays with its worker without a heartbeat.
    pub sync_lease: Duration,
    /// Maximum time ClaimSync waits for a pending sync.
    pub max_claim_wait: Duration,
    /// How long one replica keeps running the timers after its last renewal. When it
    /// stops renewing, another replica on the same store takes over after this time.
    pub timer_lease: Duration,
}

impl Default for LifecycleOptions {
    fn default() -> Self {
        Self { sync_lease: Duration::from_secs(5 * 60), max_claim_wait: Duration::from_secs(30), timer_lease: Duration::from_secs(10) }
    }
}

/// End of a sync as the worker reports it.
#[derive(Debug, Clone)]
pub enum SyncOutcome {
    Succeeded { artifact_url: String },
    Failed { error: String, data_drop: bool },
}

/// Result of one attempt: done, or lost a race and worth retrying.
enum Attempt<T> {
    Done(T),
    Retry,
}

/// Applies a batch; a revision conflict becomes [`Attempt::Retry`].
async fn commit<T>(store: &dyn Store, batch: &Batch, value: T) -> Result<Attempt<T>, Error> {
    match store.apply(batch).await {
        Ok(()) => Ok(Attempt::Done(value)),
        Err(StoreError::Conflict(_)) => Ok(Attempt::Retry),
        Err(error) => Err(error.into()),
    }
}

async fn with_retries<T, F, Fut>(what: &str, mut attempt: F) -> Result<T, Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Attempt<T>, Error>>,
{
    for _ in 0..MAX_ATTEMPTS {
        if let Attempt::Done(value) = attempt().await? {
            return Ok(value);
        }
    }
    Err(Error::Aborted(format!("{what} lost against concurrent writes {MAX_ATTEMPTS} times; retry later")))
}

/// Fails when the connector has no config, because a worker cannot sync it: a delegated
/// connector before its owners complete it, or one whose config an update cleared.
fn require_config(connector: &Connector) -> Result<(), Error> {
    if connector.config.is_none() {
        return Err(Error::FailedPrecondition(format!("{} has no config, so it cannot sync; set one with Update first", connector.key())));
    }
    Ok(())
}

fn set_status(connector: &mut Connector, status: SyncStatus, now: DateTime<Utc>) {
    // While paused the status stays DISABLED; the other fields still record what happened.
    if !connector.is_paused() {
        connector.status.status = status;
    }
    connector.status.updated_at = Some(now);
}

pub struct SyncLifecycle {
    store: Arc<dyn Store>,
    ids: IdGenerator,
    options: LifecycleOptions,
    /// Wakes ClaimSync calls that wait for a pending sync.
    pending_signal: Notify,
    /// Set once the server shuts down, which ends waiting ClaimSync calls.
    stopping: tokio::sync::watch::Sender<bool>,
    /// This process's name as holder of the timer lease.
    timer_holder: String,
}

impl SyncLifecycle {
    pub fn new(store: Arc<dyn Store>, options: LifecycleOptions) -> Self {
        let ids = IdGenerator::new();
        let timer_holder = ids.next_id();
        Self { store, ids, options, pending_signal: Notify::new(), stopping: tokio::sync::watch::Sender::new(false), timer_holder }
    }

    /// Ends every waiting ClaimSync with no sync, now and for later calls, so that waiting
    /// workers do not hold a shutdown for its whole grace period.
    pub fn stop_waiting(&self) {
        self.stopping.send_replace(true);
    }

    /// Gives the timer lease back, if this process holds it, so that another replica takes
    /// the timers over at once. Call it after the [`run_timers`] task has ended.
    pub async fn release_timer_lease(&self) {
        if let Err(error) = self.store.release_lease(TIMER_LEASE, &self.timer_holder).await {
            tracing::warn!(%error, lease = TIMER_LEASE, holder = %self.timer_holder, "releasing the timer lease failed; another replica takes over when it expires");
        }
    }

    pub fn options(&self) -> &LifecycleOptions {
        &self.options
    }

    async fn connector(&self, key: &ConnectorKey) -> Result<Connector, Error> {
        self.store.get_connector(key).await?.ok_or_else(|| Error::NotFound(format!("{key} not found")))
    }

    /// Reads a connector that may still change.
    async fn live_connector(&self, key: &ConnectorKey) -> Result<Connector, Error> {
        let connector = self.connector(key).await?;
        if connector.is_deleted() {
            return Err(Error::FailedPrecondition(format!("{key} is deleted")));
        }
        Ok(connector)
    }

    async fn sync(&self, key: &ConnectorKey, sync_id: &str) -> Result<SyncRun, Error> {
        self.store.get_sync(key, sync_id).await?.ok_or_else(|| Error::NotFound(format!("sync {sync_id} of {key} not found")))
    }

    fn new_sync(&self, key: &ConnectorKey, trigger: SyncTrigger, now: DateTime<Utc>) -> SyncRun {
        SyncRun {
            id: self.ids.next_id(),
            app_id: key.app_id.clone(),
            connector_id: key.id.clone(),
            trigger,
            state: SyncState::Pending,
            created_at: now,
            started_at: None,
            completed_at: None,
            updated_at: now,
            error: String::new(),
            data_drop: false,
            artifact_url: String::new(),
            confirmed: false,
            lease_expires_at: None,
            request_id: None,
            revision: 1,
        }
    }

    /// Queues a sync, or returns the pending one. A repeated `request_id` returns the sync
    /// that the first request queued.
    pub async fn force_sync(&self, key: &ConnectorKey, request_id: Option<&str>) -> Result<SyncRun, Error> {
        let sync = with_retries("ForceSync", || async {
            if let Some(request_id) = request_id
                && let Some(replayed) = self.store.find_sync_by_request_id(key, request_id).await?
            {
                return Ok(Attempt::Done(replayed));
            }
            let connector = self.live_connector(key).await?;
            if connector.is_paused() {
                return Err(Error::FailedPrecondition(format!("{key} is paused; resume it first")));
            }
            require_config(&connector)?;
            // NOTE: when a sync is already pending, the request id is not recorded, so a
            // retry after that sync was claimed queues a new one.
            if let Some(pending) = self.store.pending_sync(key).await? {
                return Ok(Attempt::Done(pending));
            }

            let now = Utc::now();
            let mut sync = self.new_sync(key, SyncTrigger::Manual, now);
            sync.request_id = request_id.map(str::to_owned);
            let batch = Batch {
                // Unchanged, but its revision guards against a concurrent pause or delete.
                connector: Some(Versioned::replacing(connector.clone(), connector.revision)),
                syncs: vec![Versioned::new(sync.clone())],
                ..Batch::default()
            };
            commit(self.store.as_ref(), &batch, sync).await
        })
        .await?;
        self.pending_signal.notify_waiters();
        Ok(sync)
    }

    /// Pauses syncing: cancels the pending sync and blocks claims and scheduled runs until
    /// resumed. Pausing a paused connector changes nothing.
    pub async fn pause(&self, key: &ConnectorKey, reason: Option<&str>) -> Result<Connector, Error> {
        with_retries("PauseSync", || async {
            let connector = self.live_connector(key).await?;
            if connector.is_paused() {
                return Ok(Attempt::Done(connector));
            }

            let now = Utc::now();
            let mut paused = connector.next_revision(now);
            paused.status.status = SyncStatus::Disabled;
            paused.status.updated_at = Some(now);
            paused.can_resume_sync = true;
            paused.sync_disabled =
                Some(SyncDisabled { at: now, category: PAUSED_CATEGORY.to_owned(), reason: reason.unwrap_or_default().to_owned() });
            let mut batch = Batch::replace_connector(paused.clone(), connector.revision);
            if let Some(pending) = self.store.pending_sync(key).await? {
                batch.syncs.push(cancelled(pending, "cancelled because the connector was paused", now));
            }
            commit(self.store.as_ref(), &batch, paused).await
        })
        .await
    }

    /// Resumes a paused connector and queues a sync with trigger `resume`.
    pub async fn resume(&self, key: &ConnectorKey) -> Result<SyncRun, Error> {
        let sync = with_retries("ResumeSync", || async {
            let connector = self.live_connector(key).await?;
            if !connector.is_paused() {
                return Err(Error::FailedPrecondition(format!("{key} is not paused")));
            }
            require_config(&connector)?;

            let now = Utc::now();
            let mut resumed = connector.next_revision(now);
            resumed.can_resume_sync = false;
            resumed.sync_disabled = None;
            resumed.status.status = SyncStatus::Unspecified;
            resumed.status.updated_at = Some(now);
            let mut batch = Batch::replace_connector(resumed, connector.revision);
            if let Some(pending) = self.store.pending_sync(key).await? {
                batch.syncs.push(cancelled(pending, "replaced by the sync queued on resume", now));
            }
            let sync = self.new_sync(key, SyncTrigger::Resume, now);
            batch.syncs.push(Versioned::new(sync.clone()));
            commit(self.store.as_ref(), &batch, sync).await
        })
        .await?;
        self.pending_signal.notify_waiters();
        Ok(sync)
    }

    /// Sets or (with `None`) removes the connector's cron schedule and returns its next runs.
    pub async fn update_schedule(&self, key: &ConnectorKey, schedule: Option<(&str, &str)>) -> Result<Vec<DateTime<Utc>>, Error> {
        let parsed = match schedule {
            Some((cron_spec, timezone)) => Some(CronSchedule::parse(cron_spec, timezone).map_err(|error| {
                let field = match error {
                    super::ScheduleError::CronSpec(_) => "cron.cron_spec",
                    super::ScheduleError::Timezone(_) => "cron.timezone",
                };
                Error::invalid(field, error.to_string())
            })?),
            None => None,
        };
        if let (Some(cron), Some((cron_spec, _))) = (&parsed, schedule)
            && cron.next_after(Utc::now()).is_none()
        {
            return Err(Error::invalid(
                "cron.cron_spec",
                format!(
                    "{} matches no date, so the schedule would never run; check the day of month against the month",
                    super::connector_text::shorten(cron_spec)
                ),
            ));
        }

        with_retries("UpdateConnectorSchedule", || async {
            let connector = self.live_connector(key).await?;
            let now = Utc::now();
            let upcoming = parsed.as_ref().map(|cron| cron.upcoming(now, SCHEDULE_PREVIEW_RUNS)).unwrap_or_default();

            let mut updated = connector.next_revision(now);
            updated.schedule = schedule.map(|(cron_spec, timezone)| Schedule {
                cron_spec: cron_spec.trim().to_owned(),
                timezone: timezone.to_owned(),
                next_run_at: upcoming.first().copied(),
                last_run_at: connector.schedule.as_ref().and_then(|old| old.last_run_at),
            });
            let batch = Batch::replace_connector(updated, connector.revision);
            commit(self.store.as_ref(), &batch, upcoming.clone()).await
        })
        .await
    }

    /// Accepts the data drop of the connector's latest sync and queues a sync with trigger
    /// `confirm`, which replaces a pending sync.
    pub async fn confirm_sync_valid(&self, key: &ConnectorKey, sync_id: &str) -> Result<SyncRun, Error> {
        let sync = with_retries("ConfirmSyncValid", || async {
            let connector = self.live_connector(key).await?;
            if connector.is_paused() {
                return Err(Error::FailedPrecondition(format!("{key} is paused; resume it first")));
            }
            require_config(&connector)?;
            let target = self.sync(key, sync_id).await?;
            let latest = self.store.list_syncs(key, None, 1, None).await?;
            if latest.first().map(|latest| latest.id.as_str()) != Some(sync_id) {
                return Err(Error::FailedPrecondition(format!(
                    "sync {sync_id} is not the latest sync of {key}; only the latest can be confirmed"
                )));
            }
            if target.state != SyncState::Error || !target.data_drop {
                return Err(Error::FailedPrecondition(format!(
                    "sync {sync_id} did not end with a data-drop error; there is nothing to confirm"
                )));
            }
            if target.confirmed {
                return Err(Error::FailedPrecondition(format!("sync {sync_id} is already confirmed")));
            }

            let now = Utc::now();
            let mut confirmed = target.clone();
            confirmed.confirmed = true;
            confirmed.updated_at = now;
            confirmed.revision += 1;
            let sync = self.new_sync(key, SyncTrigger::Confirm, now);
            let mut syncs = vec![Versioned::replacing(confirmed, target.revision)];
            // A sync requeued after its lease ran out can still be pending. Only one sync may be
            // pending, and the confirm sync must run next, so it replaces that one.
            if let Some(pending) = self.store.pending_sync(key).await? {
                syncs.push(cancelled(pending, "replaced by the sync queued on confirm", now));
            }
            syncs.push(Versioned::new(sync.clone()));
            let batch = Batch { connector: Some(Versioned::replacing(connector.clone(), connector.revision)), syncs, ..Batch::default() };
            commit(self.store.as_ref(), &batch, sync).await
        })
        .await?;
        self.pending_signal.notify_waiters();
        Ok(sync)
    }

    /// Returns the artifact URL that the worker reported for a sync.
    pub async fn download_url(&self, key: &ConnectorKey, sync_id: &str) -> Result<String, Error> {
        let sync = self.sync(key, sync_id).await?;
        if sync.artifact_url.is_empty() {
            return Err(Error::NotFound(format!("sync {sync_id} of {key} has no artifact URL")));
        }
        Ok(sync.artifact_url)
    }

    pub async fn get_sync(&self, key: &ConnectorKey, sync_id: &str) -> Result<SyncRun, Error> {
        self.connector(key).await?;
        self.sync(key, sync_id).await
    }

    /// Returns a page of syncs, newest first, and the id to continue before.
    pub async fn list_syncs(
        &self,
        key: &ConnectorKey,
        before_id: Option<&str>,
        page_size: usize,
        state: Option<SyncState>,
    ) -> Result<(Vec<SyncRun>, Option<String>), Error> {
        self.connector(key).await?;
        let mut syncs = self.store.list_syncs(key, before_id, page_size + 1, state).await?;
        let next = if syncs.len() > page_size {
            syncs.truncate(page_size);
            syncs.last().map(|last| last.id.clone())
        } else {
            None
        };
        Ok((syncs, next))
    }

    /// Cancels a pending or running sync.
    pub async fn cancel_sync(&self, key: &ConnectorKey, sync_id: &str) -> Result<SyncRun, Error> {
        with_retries("CancelSync", || async {
            let connector = self.connector(key).await?;
            let sync = self.sync(key, sync_id).await?;
            if sync.state.is_finished() {
                return Err(Error::FailedPrecondition(format!(
                    "sync {sync_id} has already ended ({}) and cannot be cancelled",
                    sync.state.api_name()
                )));
            }

            let now = Utc::now();
            let was_running = sync.state == SyncState::Running;
            let cancelled_sync = cancelled(sync, "cancelled by request", now);
            let mut batch = Batch { syncs: vec![cancelled_sync.clone()], ..Batch::default() };
            if was_running && !connector.is_deleted() {
                let mut updated = connector.next_revision(now);
                set_status(&mut updated, SyncStatus::Unspecified, now);
                updated.status.completed_at = Some(now);
                batch.connector = Some(Versioned::replacing(updated, connector.revision));
            }
            commit(self.store.as_ref(), &batch, cancelled_sync.record).await
        })
        .await
    }

    /// Claims the connector's pending sync for a worker, waiting up to `wait` (capped) for
    /// one. Returns `None` when none became available, also while the connector is paused.
    pub async fn claim(&self, key: &ConnectorKey, wait: Duration) -> Result<Option<SyncRun>, Error> {
        let deadline = tokio::time::Instant::now() + wait.min(self.options.max_claim_wait);
        let mut stopping = self.stopping.subscribe();
        loop {
            // Registered before looking, so a sync queued right after the look still wakes us.
            let notified = self.pending_signal.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();

            if let Some(sync) = self.try_claim(key).await? {
                return Ok(Some(sync));
            }
            if *stopping.borrow_and_update() {
                return Ok(None);
            }
            // Another replica's ForceSync does not wake this one, so the store is checked
            // again at an interval.
            let wake_at = deadline.min(tokio::time::Instant::now() + CLAIM_RECHECK_INTERVAL);
            tokio::select! {
                () = &mut notified => {}
                () = tokio::time::sleep_until(wake_at) => {
                    if wake_at >= deadline {
                        return Ok(None);
                    }
                }
                _ = stopping.changed() => return Ok(None),
            }
        }
    }

    async fn try_claim(&self, key: &ConnectorKey) -> Result<Option<SyncRun>, Error> {
        with_retries("ClaimSync", || async {
            let connector = self.live_connector(key).await?;
            if connector.is_paused() {
                return Ok(Attempt::Done(None));
            }
            let Some(pending) = self.store.pending_sync(key).await? else {
                return Ok(Attempt::Done(None));
            };

            let now = Utc::now();
            let mut running = pending.clone();
            running.state = SyncState::Running;
            running.started_at = Some(now);
            running.updated_at = now;
            running.lease_expires_at = Some(now + self.options.sync_lease);
            running.revision += 1;
            let mut updated = connector.next_revision(now);
            set_status(&mut updated, SyncStatus::Running, now);
            updated.status.started_at = Some(now);
            let batch = Batch {
                connector: Some(Versioned::replacing(updated, connector.revision)),
                syncs: vec![Versioned::replacing(running.clone(), pending.revision)],
                ..Batch::default()
            };
            commit(self.store.as_ref(), &batch, Some(running)).await
        })
        .await
    }

    /// Extends the lease of a running sync and returns its new end.
    pub async fn heartbeat(&self, key: &ConnectorKey, sync_id: &str) -> Result<DateTime<Utc>, Error> {
        with_retries("Heartbeat", || async {
            let sync = self.sync(key, sync_id).await?;
            if sync.state != SyncState::Running {
                return Err(Error::FailedPrecondition(format!(
                    "sync {sync_id} is not running ({}); stop working on it",
                    sync.state.api_name()
                )));
            }
            let now = Utc::now();
            let mut extended = sync.clone();
            extended.lease_expires_at = Some(now + self.options.sync_lease);
            extended.updated_at = now;
            extended.revision += 1;
            let lease_end = now + self.options.sync_lease;
            let batch = Batch { syncs: vec![Versioned::replacing(extended, sync.revision)], ..Batch::default() };
            commit(self.store.as_ref(), &batch, lease_end).await
        })
        .await
    }

    /// Records how a running sync ended and updates the connector's status with it.
    pub async fn complete(&self, key: &ConnectorKey, sync_id: &str, outcome: &SyncOutcome) -> Result<SyncRun, Error> {
        with_retries("CompleteSync", || async {
            let connector = self.connector(key).await?;
            let sync = self.sync(key, sync_id).await?;
            if sync.state != SyncState::Running {
                return Err(Error::FailedPrecondition(format!(
                    "sync {sync_id} is not running ({}); only a running sync can be completed",
                    sync.state.api_name()
                )));
            }

            let now = Utc::now();
            let mut finished = sync.clone();
            finished.completed_at = Some(now);
            finished.updated_at = now;
            finished.lease_expires_at = None;
            finished.revision += 1;
            match outcome {
                SyncOutcome::Succeeded { artifact_url } => {
                    finished.state = SyncState::Done;
                    finished.artifact_url = artifact_url.clone();
                }
                SyncOutcome::Failed { error, data_drop } => {
                    finished.error = error.clone();
                    finished.data_drop = *data_drop;
                    // With the bad-sync check off, a data drop is accepted as it is.
                    finished.state = if *data_drop && connector.disable_check_bad_sync { SyncState::Done } else { SyncState::Error };
                }
            }

            let mut batch = Batch { syncs: vec![Versioned::replacing(finished.clone(), sync.revision)], ..Batch::default() };
            if !connector.is_deleted() {
                let mut updated = connector.next_revision(now);
                let status = if finished.state == SyncState::Done { SyncStatus::Done } else { SyncStatus::Error };
                set_status(&mut updated, status, now);
                updated.status.completed_at = Some(now);
                updated.status.last_error = if finished.state == SyncState::Error { finished.error.clone() } else { String::new() };
                batch.connector = Some(Versioned::replacing(updated, connector.revision));
            }
            commit(self.store.as_ref(), &batch, finished).await
        })
        .await
    }

    /// Returns running syncs whose worker stopped sending heartbeats to the queue, or ends
    /// them with an error when another sync is already pending. Returns how many it handled.
    pub async fn expire_leases(&self, now: DateTime<Utc>) -> Result<usize, Error> {
        let expired = self.store.expired_leases(now, SWEEP_BATCH).await?;
        let mut handled = 0;
        for candidate in expired {
            let key = ConnectorKey::new(&candidate.app_id, &candidate.connector_id);
            let requeued = with_retries("lease expiry", || self.expire_one(&key, &candidate.id, now)).await?;
            if requeued {
                self.pending_signal.notify_waiters();
            }
            handled += 1;
        }
        Ok(handled)
    }

    async fn expire_one(&self, key: &ConnectorKey, sync_id: &str, now: DateTime<Utc>) -> Result<Attempt<bool>, Error> {
        let Some(sync) = self.store.get_sync(key, sync_id).await? else {
            return Ok(Attempt::Done(false));
        };
        if sync.state != SyncState::Running || sync.lease_expires_at.is_some_and(|end| end > now) {
            return Ok(Attempt::Done(false));
        }

        let connector = self.connector(key).await?;
        let pending = self.store.pending_sync(key).await?;
        let requeue = pending.is_none() && !connector.is_deleted() && !connector.is_paused();
        let mut next = sync.clone();
        next.lease_expires_at = None;
        next.updated_at = now;
        next.revision += 1;
        let message = if requeue {
            next.state = SyncState::Pending;
            next.started_at = None;
            format!("worker stopped sending heartbeats; sync {} is queued again", sync.id)
        } else {
            next.state = SyncState::Error;
            next.completed_at = Some(now);
            next.error = "worker stopped sending heartbeats".to_owned();
            format!("worker stopped sending heartbeats during sync {}", sync.id)
        };
        tracing::warn!(app_id = %key.app_id, connector_id = %key.id, sync_id = %sync.id, requeue, "sync lease expired");

        let mut batch = Batch { syncs: vec![Versioned::replacing(next, sync.revision)], ..Batch::default() };
        if !connector.is_deleted() {
            let mut updated = connector.next_revision(now);
            set_status(&mut updated, SyncStatus::Error, now);
            updated.status.last_error = message;
            batch.connector = Some(Versioned::replacing(updated, connector.revision));
        }
        commit(self.store.as_ref(), &batch, requeue).await
    }

    /// Queues the scheduled syncs that are due at `now` and moves each schedule to its next
    /// run after `now`, so runs missed while the server was down happen once. Paused
    /// connectors and connectors without a config skip their run. Returns how many syncs were queued.
    pub async fn run_due_schedules(&self, now: DateTime<Utc>) -> Result<usize, Error> {
        let due = self.store.due_schedules(now, SWEEP_BATCH).await?;
        let mut queued = 0;
        for key in due {
            if with_retries("scheduled run", || self.run_schedule(&key, now)).await? {
                queued += 1;
            }
        }
        if queued > 0 {
            self.pending_signal.notify_waiters();
        }
        Ok(queued)
    }

    async fn run_schedule(&self, key: &ConnectorKey, now: DateTime<Utc>) -> Result<Attempt<bool>, Error> {
        let Some(connector) = self.store.get_connector(key).await? else {
            return Ok(Attempt::Done(false));
        };
        let Some(schedule) = connector.schedule.clone().filter(|_| !connector.is_deleted()) else {
            return Ok(Attempt::Done(false));
        };
        let Some(due_at) = schedule.next_run_at.filter(|due_at| *due_at <= now) else {
            return Ok(Attempt::Done(false));
        };

        let next_run_at = match CronSchedule::parse(&schedule.cron_spec, &schedule.timezone) {
            Ok(cron) => cron.next_after(now),
            Err(error) => {
                tracing::error!(app_id = %key.app_id, connector_id = %key.id, %error, "stored schedule no longer parses; it is stopped");
                None
            }
        };
        // Run times are not part of the API, so the etag and `updated_at` stay as they are and
        // clients holding the etag can still write.
        let mut updated = connector.clone();
        updated.revision += 1;
        updated.schedule = Some(Schedule { next_run_at, last_run_at: Some(due_at), ..schedule });
        let mut batch = Batch::replace_connector(updated, connector.revision);

        let pending = self.store.pending_sync(key).await?;
        let queue = !connector.is_paused() && connector.config.is_some() && pending.is_none();
        let mut queued_id = None;
        if queue {
            let sync = self.new_sync(key, SyncTrigger::Schedule, now);
            queued_id = Some(sync.id.clone());
            batch.syncs.push(Versioned::new(sync));
        }
        let attempt = commit(self.store.as_ref(), &batch, queue).await?;
        if let Attempt::Done(_) = attempt {
            match queued_id {
                Some(sync_id) => tracing::info!(app_id = %key.app_id, connector_id = %key.id, %sync_id, %due_at, "scheduled sync queued"),
                // Debug level, because a schedule with a seconds field would log this every second.
                None => {
                    tracing::debug!(app_id = %key.app_id, connector_id = %key.id, paused = connector.is_paused(), has_config = connector.config.is_some(), "scheduled run skipped")
                }
            }
        }
        Ok(attempt)
    }
}

/// Returns the write that cancels a pending or running sync.
pub(super) fn cancelled(mut sync: SyncRun, reason: &str, now: DateTime<Utc>) -> Versioned<SyncRun> {
    let expected = sync.revision;
    sync.state = SyncState::Cancelled;
    sync.error = reason.to_owned();
    sync.completed_at = Some(now);
    sync.updated_at = now;
    sync.lease_expires_at = None;
    sync.revision += 1;
    Versioned::replacing(sync, expected)
}

/// Runs lease expiry and the scheduler once a second until `stop` changes or its sender is
/// dropped, but only while this process holds the store's [`TIMER_LEASE`]. A round in
/// progress finishes first. A lease query cut off midway could still take the lease after
/// [`SyncLifecycle::release_timer_lease`] gave it back. So replicas on one store run the
/// timers one at a time, and the timers of a stopped replica resume elsewhere within the
/// lease time. When two replicas overlap anyway (after a pause longer than the lease),
/// revision checks still keep each due run and each expiry to one write.
pub async fn run_timers(lifecycle: Arc<SyncLifecycle>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let holder = &lifecycle.timer_holder;
    let lease = lifecycle.options.timer_lease;
    let mut leading = false;
    let mut interval = tokio::time::interval(TIMER_INTERVAL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = stop.changed() => return,
        }
        let holds_lease = match lifecycle.store.acquire_lease(TIMER_LEASE, holder, lease).await {
            Ok(granted) => granted,
            Err(error) => {
                tracing::warn!(%error, lease = TIMER_LEASE, %holder, "renewing the timer lease failed; retrying in a second");
                false
            }
        };
        if holds_lease != leading {
            tracing::info!(lease = TIMER_LEASE, %holder, holds_lease, "timer lease changed hands");
            leading = holds_lease;
        }
        if !holds_lease {
            continue;
        }
        let now = Utc::now();
        if let Err(error) = lifecycle.expire_leases(now).await {
            tracing::warn!(%error, "expiring sync leases failed; retrying in a second");
        }
        if let Err(error) = lifecycle.run_due_schedules(now).await {
            tracing::warn!(%error, "queueing scheduled syncs failed; retrying in a second");
        }
    }
}
