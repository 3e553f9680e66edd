//! One contract for every [`Store`] backend: each test below runs against sled always and
//! against PostgreSQL when `CONNECTORD_TEST_POSTGRES_URL` is set (see `common/postgres.rs`).

#[allow(dead_code)]
#[path = "common/postgres.rs"]
mod test_database;

use std::{collections::HashSet, sync::Arc, time::Duration};

use chrono::{DateTime, TimeZone, Utc};
use connectord::{
    domain::{Connector, ConnectorKey, ConnectorStatus, Credential, Schedule, SecretHash, SyncRun, SyncState, SyncTrigger},
    store::{Batch, Inserted, PostgresStore, SledStore, SledStoreOptions, Store, StoreError, Versioned},
};
use tempfile::TempDir;
use test_database::TestDatabase;

/// A store under test and what must outlive it.
struct Backend {
    store: Arc<dyn Store>,
    _sled_dir: Option<TempDir>,
    database: Option<TestDatabase>,
}

impl Backend {
    fn sled() -> Self {
        let dir = TempDir::new().expect("create a temporary data directory");
        let store = SledStore::open(&SledStoreOptions::new(dir.path())).expect("open sled");
        Self { store: Arc::new(store), _sled_dir: Some(dir), database: None }
    }

    async fn postgres() -> Option<Self> {
        let database = TestDatabase::create().await?;
        let store = PostgresStore::open(&database.store_options()).await.expect("open the PostgreSQL store");
        Some(Self { store: Arc::new(store), _sled_dir: None, database: Some(database) })
    }

    /// Closes the store, then drops the test schema.
    async fn finish(self) {
        // A test may have closed the store already.
        match self.store.close().await {
            Ok(()) | Err(StoreError::Closed) => {}
            Err(error) => panic!("closing the store failed: {error}"),
        }
        drop(self.store);
        drop(self.database);
    }
}

/// Generates one test per backend for each contract function.
macro_rules! contract {
    ($($name:ident),* $(,)?) => {
        mod sled {
            $(
                #[tokio::test]
                async fn $name() {
                    let backend = super::Backend::sled();
                    super::$name(backend.store.clone()).await;
                    backend.finish().await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    let Some(backend) = super::Backend::postgres().await else { return };
                    super::$name(backend.store.clone()).await;
                    backend.finish().await;
                }
            )*
        }
    };
}

contract!(
    connector_round_trips,
    missing_records_read_as_none,
    request_id_replays_first_insert,
    request_ids_are_scoped_to_the_app,
    list_pages_in_id_order,
    list_skips_deleted_by_default,
    list_pages_past_many_deleted,
    stale_revision_conflicts,
    missing_record_with_revision_is_not_found,
    new_record_that_exists_conflicts,
    failed_batch_writes_nothing,
    one_pending_sync_per_connector,
    sync_request_id_is_unique,
    list_syncs_newest_first_with_filter,
    expired_leases_oldest_first,
    due_schedules_follow_connector_writes,
    credentials_list_newest_first,
    client_id_is_unique,
    purge_removes_only_old_request_ids,
    concurrent_writers_one_winner,
    concurrent_failures_leave_no_trace,
    closed_store_rejects_writes,
    store_reports_writable,
);

fn at(seconds: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_800_000_000 + seconds, 123_456_789).single().expect("valid time")
}

fn connector(app_id: &str, id: &str) -> Connector {
    Connector {
        id: id.to_owned(),
        app_id: app_id.to_owned(),
        catalog_id: "okta".to_owned(),
        display_name: format!("connector {id}"),
        description: String::new(),
        user_ids: vec!["owner".to_owned()],
        config: None,
        status: ConnectorStatus::default(),
        oauth_authorized_as: None,
        download_url: String::new(),
        created_at: Utc::now(),
        updated_at: Utc::now(),
        deleted_at: None,
        sync_resource_type_ids: None,
        profile_allow_list: Vec::new(),
        profile_ignore_list: Vec::new(),
        disable_check_bad_sync: false,
        can_resume_sync: false,
        sync_disabled: None,
        schedule: None,
        secret_salt: vec![7; 16],
        revision: 1,
        etag_revision: 1,
    }
}

fn sync(key: &ConnectorKey, id: &str, state: SyncState) -> SyncRun {
    SyncRun {
        id: id.to_owned(),
        app_id: key.app_id.clone(),
        connector_id: key.id.clone(),
        trigger: SyncTrigger::Manual,
        state,
        created_at: at(0),
        started_at: None,
        completed_at: None,
        updated_at: at(0),
        error: String::new(),
        data_drop: false,
        artifact_url: String::new(),
        confirmed: false,
        lease_expires_at: None,
        request_id: None,
        revision: 1,
    }
}

fn credential(key: &ConnectorKey, id: &str, client_id: &str) -> Credential {
    Credential {
        id: id.to_owned(),
        app_id: key.app_id.clone(),
        connector_id: key.id.clone(),
        client_id: client_id.to_owned(),
        display_name: format!("credential {id}"),
        secret_hash: SecretHash([3; 32]),
        created_at: at(0),
        updated_at: at(0),
        deleted_at: None,
        expires_at: None,
        last_used_at: None,
        revision: 1,
    }
}

/// Returns the next revision of a record, ready to write with `replacing`.
fn bumped<T: Clone>(record: &T, revision: impl Fn(&mut T) -> &mut u64) -> T {
    let mut next = record.clone();
    *revision(&mut next) += 1;
    next
}

async fn insert(store: &Arc<dyn Store>, app_id: &str, id: &str) -> Connector {
    let connector = connector(app_id, id);
    let inserted = store.insert_connector(&connector, None).await.expect("insert connector");
    assert_eq!(inserted, Inserted::Created);
    connector
}

async fn apply_syncs(store: &Arc<dyn Store>, syncs: Vec<Versioned<SyncRun>>) -> Result<(), StoreError> {
    store.apply(&Batch { syncs, ..Batch::default() }).await
}

#[track_caller]
fn assert_conflict(result: Result<(), StoreError>, context: &str) {
    match result {
        Err(StoreError::Conflict(_)) => {}
        other => panic!("{context}: expected Conflict, got {other:?}"),
    }
}

async fn connector_round_trips(store: Arc<dyn Store>) {
    let mut stored = connector("app", "01A");
    stored.description = "with every optional field".to_owned();
    stored.deleted_at = None;
    stored.schedule = Some(Schedule {
        cron_spec: "0 * * * *".to_owned(),
        timezone: "Europe/Berlin".to_owned(),
        next_run_at: Some(at(60)),
        last_run_at: Some(at(-60)),
    });
    store.insert_connector(&stored, None).await.expect("insert");

    let read = store.get_connector(&stored.key()).await.expect("get").expect("connector exists");
    assert_eq!(read, stored);

    // A scheduler write advances the revision but not the etag.
    let mut ticked = stored.clone();
    ticked.revision = 2;
    store.apply(&Batch::replace_connector(ticked.clone(), 1)).await.expect("replace");
    let read = store.get_connector(&stored.key()).await.expect("get").expect("connector exists");
    assert_eq!(read.revision, 2);
    assert_eq!(read.etag_revision, 1);
    assert_eq!(read, ticked);
}

async fn missing_records_read_as_none(store: Arc<dyn Store>) {
    let key = ConnectorKey::new("app", "missing");
    assert!(store.get_connector(&key).await.unwrap().is_none());
    assert!(store.get_sync(&key, "s").await.unwrap().is_none());
    assert!(store.pending_sync(&key).await.unwrap().is_none());
    assert!(store.find_sync_by_request_id(&key, "r").await.unwrap().is_none());
    assert!(store.get_credential(&key, "c").await.unwrap().is_none());
    assert!(store.find_credential("cdc_missing").await.unwrap().is_none());
    assert!(store.list_connectors("app", None, 10, true).await.unwrap().is_empty());
    assert!(store.list_syncs(&key, None, 10, None).await.unwrap().is_empty());
    assert!(store.list_credentials(&key, None, 10).await.unwrap().is_empty());
}

async fn request_id_replays_first_insert(store: Arc<dyn Store>) {
    let first = connector("app", "01A");
    let retry = connector("app", "01B");
    assert_eq!(store.insert_connector(&first, Some("req-1")).await.unwrap(), Inserted::Created);
    assert_eq!(store.insert_connector(&retry, Some("req-1")).await.unwrap(), Inserted::Replayed(first.clone()));

    let listed = store.list_connectors("app", None, 10, true).await.unwrap();
    assert_eq!(listed, vec![first]);
    assert!(store.get_connector(&retry.key()).await.unwrap().is_none());
}

async fn request_ids_are_scoped_to_the_app(store: Arc<dyn Store>) {
    let in_one = connector("app-one", "01A");
    let in_two = connector("app-two", "01B");
    assert_eq!(store.insert_connector(&in_one, Some("req")).await.unwrap(), Inserted::Created);
    assert_eq!(store.insert_connector(&in_two, Some("req")).await.unwrap(), Inserted::Created);
}

async fn list_pages_in_id_order(store: Arc<dyn Store>) {
    // Inserted out of order; "B" < "a" < "b" in byte order, which both backends must keep.
    for id in ["b", "B", "a", "0", "z-1", "z_1"] {
        insert(&store, "app", id).await;
    }
    insert(&store, "other", "0").await;

    let ids = |page: Vec<Connector>| page.into_iter().map(|connector| connector.id).collect::<Vec<_>>();
    assert_eq!(ids(store.list_connectors("app", None, 3, false).await.unwrap()), ["0", "B", "a"]);
    assert_eq!(ids(store.list_connectors("app", Some("a"), 3, false).await.unwrap()), ["b", "z-1", "z_1"]);
    assert!(store.list_connectors("app", Some("z_1"), 3, false).await.unwrap().is_empty());
    assert_eq!(ids(store.list_connectors("app", Some("A"), 1, false).await.unwrap()), ["B"]);
}

async fn list_skips_deleted_by_default(store: Arc<dyn Store>) {
    let kept = insert(&store, "app", "01A").await;
    let removed = insert(&store, "app", "01B").await;
    let mut deleted = bumped(&removed, |connector| &mut connector.revision);
    deleted.deleted_at = Some(at(5));
    store.apply(&Batch::replace_connector(deleted.clone(), removed.revision)).await.unwrap();

    assert_eq!(store.list_connectors("app", None, 10, false).await.unwrap(), vec![kept.clone()]);
    assert_eq!(store.list_connectors("app", None, 10, true).await.unwrap(), vec![kept, deleted.clone()]);
    assert_eq!(store.get_connector(&removed.key()).await.unwrap(), Some(deleted));
}

async fn list_pages_past_many_deleted(store: Arc<dyn Store>) {
    // Long runs of deleted connectors, longer than a page and than any scan limit a
    // backend may have, between and after live ones.
    let deleted_ranges = [3..60, 64..65, 70..150, 160..200];
    let mut live = Vec::new();
    for number in 0..200 {
        let id = format!("c{number:03}");
        let inserted = insert(&store, "app", &id).await;
        if deleted_ranges.iter().any(|range| range.contains(&number)) {
            let mut deleted = bumped(&inserted, |connector| &mut connector.revision);
            deleted.deleted_at = Some(at(5));
            store.apply(&Batch::replace_connector(deleted, inserted.revision)).await.unwrap();
        } else {
            live.push(id);
        }
    }

    for page_size in [1, 2, 7, 100] {
        let mut listed = Vec::new();
        let mut after: Option<String> = None;
        for _ in 0..=live.len() {
            let page = store.list_connectors("app", after.as_deref(), page_size, false).await.unwrap();
            let Some(last) = page.last() else { break };
            after = Some(last.id.clone());
            let full = page.len() == page_size;
            listed.extend(page.into_iter().map(|connector| connector.id));
            if !full {
                break;
            }
        }
        assert_eq!(listed, live, "pages of {page_size}");
    }
    assert_eq!(store.list_connectors("app", None, 300, true).await.unwrap().len(), 200);
}

async fn stale_revision_conflicts(store: Arc<dyn Store>) {
    let original = insert(&store, "app", "01A").await;
    let mut first = bumped(&original, |connector| &mut connector.revision);
    first.display_name = "first".to_owned();
    store.apply(&Batch::replace_connector(first.clone(), original.revision)).await.unwrap();

    let mut second = bumped(&original, |connector| &mut connector.revision);
    second.display_name = "second".to_owned();
    assert_conflict(store.apply(&Batch::replace_connector(second, original.revision)).await, "stale connector write");
    assert_eq!(store.get_connector(&original.key()).await.unwrap(), Some(first));
}

async fn missing_record_with_revision_is_not_found(store: Arc<dyn Store>) {
    let ghost = connector("app", "ghost");
    let result = store.apply(&Batch::replace_connector(ghost.clone(), 1)).await;
    assert!(matches!(result, Err(StoreError::NotFound(_))), "{result:?}");

    let result = apply_syncs(&store, vec![Versioned::replacing(sync(&ghost.key(), "s1", SyncState::Done), 1)]).await;
    assert!(matches!(result, Err(StoreError::NotFound(_))), "{result:?}");
}

async fn new_record_that_exists_conflicts(store: Arc<dyn Store>) {
    let existing = insert(&store, "app", "01A").await;
    assert_conflict(
        store.apply(&Batch { connector: Some(Versioned::new(existing.clone())), ..Batch::default() }).await,
        "second insert of a connector",
    );
    let again = store.insert_connector(&existing, None).await.map(|_| ());
    assert_conflict(again, "second insert_connector with the same id");

    let key = existing.key();
    let done = sync(&key, "s1", SyncState::Done);
    apply_syncs(&store, vec![Versioned::new(done.clone())]).await.unwrap();
    assert_conflict(apply_syncs(&store, vec![Versioned::new(done)]).await, "second insert of a sync");

    let issued = credential(&key, "c1", "cdc_one");
    let batch = Batch { credentials: vec![Versioned::new(issued.clone())], ..Batch::default() };
    store.apply(&batch).await.unwrap();
    assert_conflict(store.apply(&batch).await, "second insert of a credential");
}

async fn failed_batch_writes_nothing(store: Arc<dyn Store>) {
    let original = insert(&store, "app", "01A").await;
    let key = original.key();
    let mut renamed = bumped(&original, |connector| &mut connector.revision);
    renamed.display_name = "renamed".to_owned();
    let batch = Batch {
        connector: Some(Versioned::replacing(renamed, original.revision)),
        syncs: vec![Versioned::new(sync(&key, "s1", SyncState::Pending)), Versioned::replacing(sync(&key, "s2", SyncState::Done), 4)],
        credentials: vec![Versioned::new(credential(&key, "c1", "cdc_one"))],
    };
    let result = store.apply(&batch).await;
    assert!(matches!(result, Err(StoreError::NotFound(_))), "{result:?}");

    assert_eq!(store.get_connector(&key).await.unwrap(), Some(original));
    assert!(store.get_sync(&key, "s1").await.unwrap().is_none());
    assert!(store.pending_sync(&key).await.unwrap().is_none());
    assert!(store.get_credential(&key, "c1").await.unwrap().is_none());
    assert!(store.find_credential("cdc_one").await.unwrap().is_none());
}

async fn one_pending_sync_per_connector(store: Arc<dyn Store>) {
    let key = insert(&store, "app", "01A").await.key();
    let other = insert(&store, "app", "01B").await.key();
    let first = sync(&key, "s1", SyncState::Pending);
    apply_syncs(&store, vec![Versioned::new(first.clone())]).await.unwrap();
    apply_syncs(&store, vec![Versioned::new(sync(&other, "s1", SyncState::Pending))]).await.unwrap();
    assert_eq!(store.pending_sync(&key).await.unwrap(), Some(first.clone()));

    assert_conflict(apply_syncs(&store, vec![Versioned::new(sync(&key, "s2", SyncState::Pending))]).await, "second pending sync");

    // Claiming the first frees the slot; cancelling and queueing in one batch also works.
    let mut running = bumped(&first, |sync| &mut sync.revision);
    running.state = SyncState::Running;
    running.lease_expires_at = Some(at(300));
    apply_syncs(&store, vec![Versioned::replacing(running.clone(), first.revision)]).await.unwrap();
    assert!(store.pending_sync(&key).await.unwrap().is_none());
    let second = sync(&key, "s2", SyncState::Pending);
    apply_syncs(&store, vec![Versioned::new(second.clone())]).await.unwrap();

    let mut cancelled = bumped(&second, |sync| &mut sync.revision);
    cancelled.state = SyncState::Cancelled;
    let third = sync(&key, "s3", SyncState::Pending);
    apply_syncs(&store, vec![Versioned::replacing(cancelled, second.revision), Versioned::new(third.clone())]).await.unwrap();
    assert_eq!(store.pending_sync(&key).await.unwrap(), Some(third.clone()));

    // Moving a running sync back to pending while another is pending breaks the rule too.
    let mut requeued = bumped(&running, |sync| &mut sync.revision);
    requeued.state = SyncState::Pending;
    requeued.lease_expires_at = None;
    assert_conflict(
        apply_syncs(&store, vec![Versioned::replacing(requeued, running.revision)]).await,
        "requeue while another sync is pending",
    );
}

async fn sync_request_id_is_unique(store: Arc<dyn Store>) {
    let key = insert(&store, "app", "01A").await.key();
    let other = insert(&store, "app", "01B").await.key();
    let mut forced = sync(&key, "s1", SyncState::Pending);
    forced.request_id = Some("force-1".to_owned());
    apply_syncs(&store, vec![Versioned::new(forced.clone())]).await.unwrap();
    assert_eq!(store.find_sync_by_request_id(&key, "force-1").await.unwrap(), Some(forced));
    assert!(store.find_sync_by_request_id(&other, "force-1").await.unwrap().is_none());

    let mut reused = sync(&key, "s2", SyncState::Done);
    reused.request_id = Some("force-1".to_owned());
    assert_conflict(apply_syncs(&store, vec![Versioned::new(reused)]).await, "reused ForceSync request id");

    let mut elsewhere = sync(&other, "s2", SyncState::Pending);
    elsewhere.request_id = Some("force-1".to_owned());
    apply_syncs(&store, vec![Versioned::new(elsewhere)]).await.unwrap();
}

async fn list_syncs_newest_first_with_filter(store: Arc<dyn Store>) {
    let key = insert(&store, "app", "01A").await.key();
    let states = [SyncState::Done, SyncState::Error, SyncState::Done, SyncState::Cancelled, SyncState::Done];
    let syncs: Vec<_> = states.iter().enumerate().map(|(index, state)| Versioned::new(sync(&key, &format!("s{index}"), *state))).collect();
    apply_syncs(&store, syncs).await.unwrap();
    apply_syncs(&store, vec![Versioned::new(sync(&insert(&store, "app", "01B").await.key(), "s9", SyncState::Done))]).await.unwrap();

    let ids = |page: Vec<SyncRun>| page.into_iter().map(|sync| sync.id).collect::<Vec<_>>();
    assert_eq!(ids(store.list_syncs(&key, None, 2, None).await.unwrap()), ["s4", "s3"]);
    assert_eq!(ids(store.list_syncs(&key, Some("s3"), 10, None).await.unwrap()), ["s2", "s1", "s0"]);
    assert_eq!(ids(store.list_syncs(&key, None, 10, Some(SyncState::Done)).await.unwrap()), ["s4", "s2", "s0"]);
    assert_eq!(ids(store.list_syncs(&key, Some("s4"), 1, Some(SyncState::Done)).await.unwrap()), ["s2"]);
    assert!(store.list_syncs(&key, None, 10, Some(SyncState::Running)).await.unwrap().is_empty());
}

async fn expired_leases_oldest_first(store: Arc<dyn Store>) {
    let key = insert(&store, "app", "01A").await.key();
    let running = |id: &str, lease_end: i64| {
        let mut run = sync(&key, id, SyncState::Running);
        run.lease_expires_at = Some(at(lease_end));
        Versioned::new(run)
    };
    let mut finished = sync(&key, "done", SyncState::Done);
    finished.lease_expires_at = Some(at(-100));
    apply_syncs(&store, vec![running("late", 50), running("early", 10), running("future", 500), Versioned::new(finished)]).await.unwrap();

    let ids = |page: Vec<SyncRun>| page.into_iter().map(|sync| sync.id).collect::<Vec<_>>();
    assert_eq!(ids(store.expired_leases(at(100), 10).await.unwrap()), ["early", "late"]);
    assert_eq!(ids(store.expired_leases(at(100), 1).await.unwrap()), ["early"]);
    // A lease that ends exactly now has expired.
    assert_eq!(ids(store.expired_leases(at(10), 10).await.unwrap()), ["early"]);
    assert!(store.expired_leases(at(0), 10).await.unwrap().is_empty());

    // Extending a lease moves it in the index.
    let early = store.get_sync(&key, "early").await.unwrap().unwrap();
    let mut extended = bumped(&early, |sync| &mut sync.revision);
    extended.lease_expires_at = Some(at(1000));
    apply_syncs(&store, vec![Versioned::replacing(extended, early.revision)]).await.unwrap();
    assert_eq!(ids(store.expired_leases(at(100), 10).await.unwrap()), ["late"]);
}

async fn due_schedules_follow_connector_writes(store: Arc<dyn Store>) {
    // New connectors have no schedule; UpdateConnectorSchedule sets one with a write.
    for (id, next_run) in [("later", 50), ("sooner", 10), ("future", 500)] {
        let created = insert(&store, "app", id).await;
        let mut scheduled = bumped(&created, |connector| &mut connector.revision);
        scheduled.schedule = Some(Schedule {
            cron_spec: "* * * * *".to_owned(),
            timezone: String::new(),
            next_run_at: Some(at(next_run)),
            last_run_at: None,
        });
        store.apply(&Batch::replace_connector(scheduled, created.revision)).await.unwrap();
    }
    insert(&store, "app", "unscheduled").await;

    let ids = |keys: Vec<ConnectorKey>| keys.into_iter().map(|key| key.id).collect::<Vec<_>>();
    assert_eq!(ids(store.due_schedules(at(100), 10).await.unwrap()), ["sooner", "later"]);
    assert_eq!(ids(store.due_schedules(at(100), 1).await.unwrap()), ["sooner"]);

    // Moving the next run and deleting a connector both update the index.
    let sooner = store.get_connector(&ConnectorKey::new("app", "sooner")).await.unwrap().unwrap();
    let mut moved = bumped(&sooner, |connector| &mut connector.revision);
    moved.schedule.as_mut().unwrap().next_run_at = Some(at(1000));
    store.apply(&Batch::replace_connector(moved, sooner.revision)).await.unwrap();
    let later = store.get_connector(&ConnectorKey::new("app", "later")).await.unwrap().unwrap();
    let mut deleted = bumped(&later, |connector| &mut connector.revision);
    deleted.deleted_at = Some(at(60));
    store.apply(&Batch::replace_connector(deleted, later.revision)).await.unwrap();

    assert!(store.due_schedules(at(100), 10).await.unwrap().is_empty());
    assert_eq!(ids(store.due_schedules(at(1000), 10).await.unwrap()), ["future", "sooner"]);
}

async fn credentials_list_newest_first(store: Arc<dyn Store>) {
    let key = insert(&store, "app", "01A").await.key();
    let other = insert(&store, "app", "01B").await.key();
    let issued: Vec<_> = (0..4).map(|index| Versioned::new(credential(&key, &format!("c{index}"), &format!("cdc_{index}")))).collect();
    let elsewhere = Versioned::new(credential(&other, "c9", "cdc_9"));
    store.apply(&Batch { credentials: [issued, vec![elsewhere]].concat(), ..Batch::default() }).await.unwrap();

    let ids = |page: Vec<Credential>| page.into_iter().map(|credential| credential.id).collect::<Vec<_>>();
    assert_eq!(ids(store.list_credentials(&key, None, 3).await.unwrap()), ["c3", "c2", "c1"]);
    assert_eq!(ids(store.list_credentials(&key, Some("c1"), 3).await.unwrap()), ["c0"]);

    let found = store.find_credential("cdc_2").await.unwrap().expect("client id is indexed");
    assert_eq!(found, credential(&key, "c2", "cdc_2"));
    assert_eq!(store.get_credential(&key, "c2").await.unwrap(), Some(found.clone()));

    // A revoked credential stays readable by id and by client id.
    let mut revoked = bumped(&found, |credential| &mut credential.revision);
    revoked.deleted_at = Some(at(9));
    let batch = Batch { credentials: vec![Versioned::replacing(revoked.clone(), found.revision)], ..Batch::default() };
    store.apply(&batch).await.unwrap();
    assert_eq!(store.find_credential("cdc_2").await.unwrap(), Some(revoked));
}

async fn client_id_is_unique(store: Arc<dyn Store>) {
    let key = insert(&store, "app", "01A").await.key();
    let other = insert(&store, "other-app", "01B").await.key();
    let first = Batch { credentials: vec![Versioned::new(credential(&key, "c1", "cdc_shared"))], ..Batch::default() };
    store.apply(&first).await.unwrap();

    let taken = Batch { credentials: vec![Versioned::new(credential(&other, "c2", "cdc_shared"))], ..Batch::default() };
    assert_conflict(store.apply(&taken).await, "client id of another connector");
    assert!(store.get_credential(&other, "c2").await.unwrap().is_none());
}

async fn purge_removes_only_old_request_ids(store: Arc<dyn Store>) {
    let mut old = connector("app", "01A");
    old.created_at = Utc::now() - chrono::Duration::hours(48);
    let recent = connector("app", "01B");
    store.insert_connector(&old, Some("old-request")).await.unwrap();
    store.insert_connector(&recent, Some("recent-request")).await.unwrap();

    let removed = store.purge_request_ids(Utc::now() - chrono::Duration::hours(24)).await.unwrap();
    assert_eq!(removed, 1);

    // The purged id is free again; the recent one still replays.
    let again = connector("app", "01C");
    assert_eq!(store.insert_connector(&again, Some("old-request")).await.unwrap(), Inserted::Created);
    let retry = connector("app", "01D");
    assert_eq!(store.insert_connector(&retry, Some("recent-request")).await.unwrap(), Inserted::Replayed(recent));
    assert_eq!(store.purge_request_ids(Utc::now() - chrono::Duration::hours(24)).await.unwrap(), 0);
}

async fn concurrent_writers_one_winner(store: Arc<dyn Store>) {
    let original = insert(&store, "app", "01A").await;
    let writers: Vec<_> = (0..8)
        .map(|writer| {
            let store = Arc::clone(&store);
            let mut next = bumped(&original, |connector| &mut connector.revision);
            next.display_name = format!("writer {writer}");
            let expected = original.revision;
            tokio::spawn(async move { store.apply(&Batch::replace_connector(next, expected)).await })
        })
        .collect();

    let mut winners = Vec::new();
    for (writer, handle) in writers.into_iter().enumerate() {
        match tokio::time::timeout(Duration::from_secs(30), handle).await.expect("writer finishes").expect("no panic") {
            Ok(()) => winners.push(writer),
            Err(StoreError::Conflict(_)) => {}
            Err(other) => panic!("writer {writer} failed: {other}"),
        }
    }
    assert_eq!(winners.len(), 1, "winners: {winners:?}");
    let stored = store.get_connector(&original.key()).await.unwrap().unwrap();
    assert_eq!(stored.display_name, format!("writer {}", winners[0]));
    assert_eq!(stored.revision, original.revision + 1);

    // Pending syncs queued at once for one connector: exactly one is stored.
    let key = original.key();
    let queuers: Vec<_> = (0..8)
        .map(|index| {
            let store = Arc::clone(&store);
            let queued = sync(&key, &format!("s{index}"), SyncState::Pending);
            tokio::spawn(async move { apply_syncs(&store, vec![Versioned::new(queued)]).await })
        })
        .collect();
    let mut queued = HashSet::new();
    for (index, handle) in queuers.into_iter().enumerate() {
        match handle.await.expect("no panic") {
            Ok(()) => {
                queued.insert(index);
            }
            Err(StoreError::Conflict(_)) => {}
            Err(other) => panic!("queuer {index} failed: {other}"),
        }
    }
    assert_eq!(queued.len(), 1, "queued: {queued:?}");
}

/// Many writers at once, every other one failing after its first record. A backend may
/// apply concurrent writes together; the failed ones must still leave nothing behind, and
/// the others must all land.
async fn concurrent_failures_leave_no_trace(store: Arc<dyn Store>) {
    const WRITERS: usize = 48;
    let taken = insert(&store, "app", "taken").await;
    store
        .apply(&Batch { credentials: vec![Versioned::new(credential(&taken.key(), "c0", "cdc_taken"))], ..Batch::default() })
        .await
        .unwrap();
    let mut connectors = Vec::new();
    for index in 0..WRITERS {
        connectors.push(insert(&store, "app", &format!("w{index:02}")).await);
    }

    // Even writers queue a sync and add a credential with a fresh client id. Odd writers
    // use the taken client id, so their batch fails after the sync.
    let writers: Vec<_> = connectors
        .iter()
        .enumerate()
        .map(|(index, connector)| {
            let store = Arc::clone(&store);
            let key = connector.key();
            let client_id = if index % 2 == 0 { format!("cdc_{index}") } else { "cdc_taken".to_owned() };
            let batch = Batch {
                syncs: vec![Versioned::new(sync(&key, "s1", SyncState::Pending))],
                credentials: vec![Versioned::new(credential(&key, "c1", &client_id))],
                ..Batch::default()
            };
            tokio::spawn(async move { store.apply(&batch).await })
        })
        .collect();
    for (index, handle) in writers.into_iter().enumerate() {
        let result = tokio::time::timeout(Duration::from_secs(30), handle).await.expect("writer finishes").expect("no panic");
        if index % 2 == 0 {
            assert!(result.is_ok(), "writer {index}: {result:?}");
        } else {
            assert_conflict(result, &format!("writer {index}"));
        }
    }

    for (index, connector) in connectors.iter().enumerate() {
        let key = connector.key();
        let pending = store.pending_sync(&key).await.unwrap();
        let credential = store.get_credential(&key, "c1").await.unwrap();
        if index % 2 == 0 {
            assert_eq!(pending.map(|sync| sync.id), Some("s1".to_owned()), "writer {index}");
            assert_eq!(credential.map(|credential| credential.client_id), Some(format!("cdc_{index}")));
        } else {
            assert!(pending.is_none(), "failed writer {index} left a pending sync");
            assert!(store.get_sync(&key, "s1").await.unwrap().is_none(), "failed writer {index} left its sync");
            assert!(credential.is_none(), "failed writer {index} left a credential");
        }
    }
    let owner = store.find_credential("cdc_taken").await.unwrap().expect("the taken client id stays");
    assert_eq!(owner.connector_id, "taken");
}

async fn closed_store_rejects_writes(store: Arc<dyn Store>) {
    let kept = insert(&store, "app", "01A").await;
    store.close().await.unwrap();
    let result = store.insert_connector(&connector("app", "01B"), None).await;
    assert!(matches!(result, Err(StoreError::Closed)), "{result:?}");
    let result = store.apply(&Batch::replace_connector(bumped(&kept, |connector| &mut connector.revision), 1)).await;
    assert!(matches!(result, Err(StoreError::Closed)), "{result:?}");
}

async fn store_reports_writable(store: Arc<dyn Store>) {
    insert(&store, "app", "01A").await;
    assert!(store.check_writable().is_ok());
}
