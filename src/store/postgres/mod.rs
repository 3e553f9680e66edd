//! [`Store`] on a PostgreSQL database, shared by any number of connectord replicas.
//!
//! Rows keep the records in the sled store's encoding plus the columns that keys, revision
//! checks, uniqueness rules and ordered scans need (see `migrations/`). Each write method
//! runs in one transaction and returns after PostgreSQL acknowledged the commit, which with
//! the default `synchronous_commit = on` means the commit record is flushed to the
//! server's WAL. Revisions are compared in the database, so replicas never overwrite each
//! other's writes, and unique constraints enforce the indexes of [`Store::apply`] across
//! replicas.

mod errors;
mod health;
mod read;
pub mod schema;
mod write;

use std::{
    fmt,
    str::FromStr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio::task::JoinHandle;
use tokio_postgres::NoTls;

use super::{Batch, Inserted, Store, StoreError, record::to_nanos};
use crate::domain::{Connector, ConnectorKey, Credential, SyncRun, SyncState};

/// Connect timeout used when the URL sets none.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// `application_name` used when the URL sets none, so operators can find our sessions.
const APPLICATION_NAME: &str = "connectord";

/// A `postgres://` or `postgresql://` URL. Its `Debug` and `Display` hide the password.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    /// Accepts a URL in libpq's URI form; the full check happens when the store opens.
    pub fn parse(url: &str) -> Result<Self, String> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Self(url.to_owned()))
        } else {
            Err("expected a URL that starts with postgres:// or postgresql://".to_owned())
        }
    }

    /// Returns the URL with its password, for the driver only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl FromStr for DatabaseUrl {
    type Err = String;

    fn from_str(url: &str) -> Result<Self, String> {
        Self::parse(url)
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact_password(&self.0))
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseUrl({self})")
    }
}

/// Replaces the password in the user-info part and in a `password=` parameter with `***`.
fn redact_password(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let (authority_end, _) = rest.char_indices().find(|(_, c)| matches!(c, '/' | '?')).unwrap_or((rest.len(), ' '));
    let (authority, tail) = rest.split_at(authority_end);
    let authority = match authority.rsplit_once('@') {
        Some((user_info, host)) => match user_info.split_once(':') {
            Some((user, _)) => format!("{user}:***@{host}"),
            None => authority.to_owned(),
        },
        None => authority.to_owned(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let query: Vec<String> = query
                .split('&')
                .map(|pair| if pair.starts_with("password=") { "password=***".to_owned() } else { pair.to_owned() })
                .collect();
            format!("{path}?{}", query.join("&"))
        }
        None => tail.to_owned(),
    };
    format!("{scheme}://{authority}{tail}")
}

/// Settings of [`PostgresStore::open`].
#[derive(Debug, Clone)]
pub struct PostgresStoreOptions {
    pub url: DatabaseUrl,
    /// Most connections this replica opens to the database.
    pub pool_size: usize,
    /// Maximum time the server lets one statement run. It also bounds the wait for a
    /// pooled connection and the time a transaction may sit idle.
    pub statement_timeout: Duration,
}

impl PostgresStoreOptions {
    pub fn new(url: DatabaseUrl) -> Self {
        Self { url, pool_size: 16, statement_timeout: Duration::from_secs(5) }
    }
}

/// Failure to open the PostgreSQL store.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("invalid PostgreSQL URL {url}: {reason}")]
    InvalidUrl { url: DatabaseUrl, reason: String },
    #[error("cannot set up the connection pool: {0}")]
    Pool(String),
    #[error("cannot connect to PostgreSQL at {url}: {reason}; check that it runs and that the URL is right")]
    Connect { url: DatabaseUrl, reason: String },
    #[error("cannot migrate the schema of {url}: {source}")]
    Schema { url: DatabaseUrl, source: schema::SchemaError },
}

pub struct PostgresStore {
    pool: Pool,
    /// Limit of one whole store call: waiting for a connection plus every statement.
    call_timeout: Duration,
    reachability: Arc<Reachability>,
    probe: Mutex<Option<JoinHandle<()>>>,
    closed: AtomicBool,
}

use health::Reachability;

impl PostgresStore {
    /// Connects, applies missing schema migrations and starts the reachability probe, so
    /// it must be called inside a tokio runtime. Fails when the database cannot be
    /// reached, or when its schema version is newer than this binary supports.
    pub async fn open(options: &PostgresStoreOptions) -> Result<Self, OpenError> {
        let pool = connection_pool(options)?;
        let url = &options.url;
        let mut client = pool.get().await.map_err(|error| OpenError::Connect { url: url.clone(), reason: error_chain(&error) })?;
        let before = schema::migrate(&mut client).await.map_err(|source| OpenError::Schema { url: url.clone(), source })?;
        drop(client);
        tracing::info!(%url, schema_version = schema::latest_version(), migrated_from = before, "PostgreSQL store opened");

        let reachability = Arc::new(Reachability::default());
        let probe = tokio::spawn(health::probe(pool.clone(), Arc::clone(&reachability), options.statement_timeout));
        Ok(Self {
            pool,
            call_timeout: options.statement_timeout * 3,
            reachability,
            probe: Mutex::new(Some(probe)),
            closed: AtomicBool::new(false),
        })
    }

    fn ensure_open(&self) -> Result<(), StoreError> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(StoreError::Closed);
        }
        Ok(())
    }

    async fn client(&self) -> Result<deadpool_postgres::Client, StoreError> {
        self.pool.get().await.map_err(errors::from_pool)
    }

    /// Runs one store call within the call timeout and records whether it reached the
    /// database.
    async fn guarded<T>(&self, call: impl Future<Output = Result<T, StoreError>>) -> Result<T, StoreError> {
        let result = tokio::time::timeout(self.call_timeout, call)
            .await
            .unwrap_or_else(|_| Err(StoreError::Unavailable(format!("the database did not respond within {:?}", self.call_timeout))));
        self.reachability.observe(&result);
        result
    }
}

/// Builds the pool: the URL's settings plus a statement timeout, an idle-in-transaction
/// timeout, a connect timeout and an application name where the URL sets none.
fn connection_pool(options: &PostgresStoreOptions) -> Result<Pool, OpenError> {
    let url = &options.url;
    let mut config = tokio_postgres::Config::from_str(url.expose())
        .map_err(|error| OpenError::InvalidUrl { url: url.clone(), reason: error.to_string() })?;
    let timeout_ms = options.statement_timeout.as_millis();
    let settings = format!("-c statement_timeout={timeout_ms} -c idle_in_transaction_session_timeout={timeout_ms}");
    let merged = match config.get_options() {
        Some(existing) if !existing.trim().is_empty() => format!("{existing} {settings}"),
        _ => settings,
    };
    config.options(merged);
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(DEFAULT_CONNECT_TIMEOUT);
    }
    if config.get_application_name().is_none() {
        config.application_name(APPLICATION_NAME);
    }
    let connect_timeout = config.get_connect_timeout().copied().unwrap_or(DEFAULT_CONNECT_TIMEOUT);

    // Fast recycling checks only that the connection is open. A connection that the
    // server closed since its last use fails its next call with UNAVAILABLE, and the
    // pool then drops it.
    let manager = Manager::from_config(config, NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
    Pool::builder(manager)
        .max_size(options.pool_size.max(1))
        .wait_timeout(Some(options.statement_timeout))
        .create_timeout(Some(connect_timeout))
        .recycle_timeout(Some(connect_timeout))
        .runtime(Runtime::Tokio1)
        .build()
        .map_err(|error| OpenError::Pool(error.to_string()))
}

impl PostgresStore {
    /// Inserts every record of `snapshot` that is not stored yet, in one transaction, and
    /// returns how many it inserted. Records whose key exists are left as they are.
    pub async fn import(&self, snapshot: &super::migrate::Snapshot) -> Result<u64, StoreError> {
        self.ensure_open()?;
        let mut client = self.client().await?;
        let transaction = client.transaction().await.map_err(errors::driver)?;
        let inserted = write::import(&transaction, snapshot).await?;
        transaction.commit().await.map_err(errors::driver)?;
        Ok(inserted)
    }

    /// Counts the stored records of each kind.
    pub async fn count_records(&self) -> Result<super::migrate::RecordCounts, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_one(
                "SELECT (SELECT count(*) FROM connectors), (SELECT count(*) FROM syncs),
                        (SELECT count(*) FROM credentials), (SELECT count(*) FROM connector_request_ids)",
                &[],
            )
            .await
            .map_err(errors::driver)?;
        let column = |index: usize| -> Result<u64, StoreError> {
            let count: i64 = row.try_get(index).map_err(errors::driver)?;
            Ok(u64::try_from(count).unwrap_or_default())
        };
        Ok(super::migrate::RecordCounts { connectors: column(0)?, syncs: column(1)?, credentials: column(2)?, request_ids: column(3)? })
    }

    /// Returns the id of the connector that a recorded Create request id created.
    pub async fn request_id_connector(&self, app_id: &str, request_id: &str) -> Result<Option<String>, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_opt("SELECT connector_id FROM connector_request_ids WHERE app_id = $1 AND request_id = $2", &[&app_id, &request_id])
            .await
            .map_err(errors::driver)?;
        row.map(|row| row.try_get(0).map_err(errors::driver)).transpose()
    }
}

#[async_trait]
impl Store for PostgresStore {
    #[tracing::instrument(level = "debug", name = "store.insert_connector", skip_all, fields(app_id = %connector.app_id, connector_id = %connector.id))]
    async fn insert_connector(&self, connector: &Connector, request_id: Option<&str>) -> Result<Inserted, StoreError> {
        self.ensure_open()?;
        self.guarded(async {
            let mut client = self.client().await?;
            let transaction = client.transaction().await.map_err(errors::driver)?;
            let inserted = write::insert_connector(&transaction, connector, request_id).await?;
            transaction.commit().await.map_err(errors::driver)?;
            Ok(inserted)
        })
        .await
    }

    #[tracing::instrument(level = "debug", name = "store.get_connector", skip_all, fields(app_id = %key.app_id, connector_id = %key.id))]
    async fn get_connector(&self, key: &ConnectorKey) -> Result<Option<Connector>, StoreError> {
        self.guarded(async { read::connector(&self.client().await?, key).await }).await
    }

    #[tracing::instrument(level = "debug", name = "store.list_connectors", skip(self))]
    async fn list_connectors(
        &self,
        app_id: &str,
        after_id: Option<&str>,
        limit: usize,
        include_deleted: bool,
    ) -> Result<Vec<Connector>, StoreError> {
        self.guarded(async { read::connectors(&self.client().await?, app_id, after_id, limit, include_deleted).await }).await
    }

    #[tracing::instrument(level = "debug", name = "store.apply", skip_all, fields(
        connector = batch.connector.is_some(),
        syncs = batch.syncs.len(),
        credentials = batch.credentials.len(),
    ))]
    async fn apply(&self, batch: &Batch) -> Result<(), StoreError> {
        self.ensure_open()?;
        self.guarded(async {
            let mut client = self.client().await?;
            let transaction = client.transaction().await.map_err(errors::driver)?;
            write::apply(&transaction, batch).await?;
            transaction.commit().await.map_err(errors::driver)
        })
        .await
    }

    async fn get_sync(&self, key: &ConnectorKey, sync_id: &str) -> Result<Option<SyncRun>, StoreError> {
        self.guarded(async { read::sync(&self.client().await?, key, sync_id).await }).await
    }

    async fn list_syncs(
        &self,
        key: &ConnectorKey,
        before_id: Option<&str>,
        limit: usize,
        state: Option<SyncState>,
    ) -> Result<Vec<SyncRun>, StoreError> {
        self.guarded(async { read::syncs(&self.client().await?, key, before_id, limit, state).await }).await
    }

    async fn pending_sync(&self, key: &ConnectorKey) -> Result<Option<SyncRun>, StoreError> {
        self.guarded(async { read::pending_sync(&self.client().await?, key).await }).await
    }

    async fn find_sync_by_request_id(&self, key: &ConnectorKey, request_id: &str) -> Result<Option<SyncRun>, StoreError> {
        self.guarded(async { read::sync_by_request_id(&self.client().await?, key, request_id).await }).await
    }

    async fn expired_leases(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<SyncRun>, StoreError> {
        self.guarded(async { read::expired_leases(&self.client().await?, now, limit).await }).await
    }

    async fn due_schedules(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<ConnectorKey>, StoreError> {
        self.guarded(async { read::due_schedules(&self.client().await?, now, limit).await }).await
    }

    async fn get_credential(&self, key: &ConnectorKey, credential_id: &str) -> Result<Option<Credential>, StoreError> {
        self.guarded(async { read::credential(&self.client().await?, key, credential_id).await }).await
    }

    async fn list_credentials(&self, key: &ConnectorKey, before_id: Option<&str>, limit: usize) -> Result<Vec<Credential>, StoreError> {
        self.guarded(async { read::credentials(&self.client().await?, key, before_id, limit).await }).await
    }

    async fn find_credential(&self, client_id: &str) -> Result<Option<Credential>, StoreError> {
        self.guarded(async { read::credential_by_client_id(&self.client().await?, client_id).await }).await
    }

    #[tracing::instrument(level = "debug", name = "store.purge_request_ids", skip(self))]
    async fn purge_request_ids(&self, cutoff: DateTime<Utc>) -> Result<usize, StoreError> {
        self.ensure_open()?;
        self.guarded(async {
            let client = self.client().await?;
            let statement =
                client.prepare_cached("DELETE FROM connector_request_ids WHERE recorded_at_ns < $1").await.map_err(errors::driver)?;
            let removed = client.execute(&statement, &[&to_nanos(cutoff)]).await.map_err(errors::driver)?;
            Ok(usize::try_from(removed).unwrap_or(usize::MAX))
        })
        .await
    }

    /// Stops accepting writes and closes the pool. Every acknowledged write was committed
    /// already, so there is nothing left to make durable.
    async fn close(&self) -> Result<(), StoreError> {
        self.closed.store(true, Ordering::SeqCst);
        if let Some(probe) = self.probe.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take() {
            probe.abort();
        }
        self.pool.close();
        Ok(())
    }

    fn check_writable(&self) -> Result<(), StoreError> {
        self.ensure_open()?;
        self.reachability.check()
    }

    /// Takes the lease when it is free, expired or already ours, in one statement, so two
    /// replicas never both get it. The database clock decides expiry.
    async fn acquire_lease(&self, name: &str, holder: &str, duration: Duration) -> Result<bool, StoreError> {
        self.ensure_open()?;
        let duration_ms = i64::try_from(duration.as_millis()).unwrap_or(i64::MAX);
        self.guarded(async {
            let client = self.client().await?;
            let statement = client
                .prepare_cached(
                    "INSERT INTO leases (name, holder, expires_at)
                     VALUES ($1, $2, clock_timestamp() + $3::bigint * interval '1 millisecond')
                     ON CONFLICT (name) DO UPDATE SET holder = EXCLUDED.holder, expires_at = EXCLUDED.expires_at
                     WHERE leases.holder = EXCLUDED.holder OR leases.expires_at <= clock_timestamp()",
                )
                .await
                .map_err(errors::driver)?;
            let written = client.execute(&statement, &[&name, &holder, &duration_ms]).await.map_err(errors::driver)?;
            Ok(written == 1)
        })
        .await
    }

    async fn release_lease(&self, name: &str, holder: &str) -> Result<(), StoreError> {
        self.ensure_open()?;
        self.guarded(async {
            let client = self.client().await?;
            let statement = client.prepare_cached("DELETE FROM leases WHERE name = $1 AND holder = $2").await.map_err(errors::driver)?;
            client.execute(&statement, &[&name, &holder]).await.map_err(errors::driver)?;
            Ok(())
        })
        .await
    }
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        if let Some(probe) = self.probe.get_mut().unwrap_or_else(|poisoned| poisoned.into_inner()).take() {
            probe.abort();
        }
    }
}

/// Formats an error with its sources, as `outer: inner: innermost`, and skips a source
/// whose text the outer one already contains. The pool's own text ("error connecting to
/// server") leaves out the cause, such as a refused connection or a failed password check.
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_chain_names_the_cause_once() {
        #[derive(Debug, thiserror::Error)]
        #[error("error connecting to server")]
        struct Outer(#[source] std::io::Error);
        let refused = Outer(std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "Connection refused"));
        assert_eq!(error_chain(&refused), "error connecting to server: Connection refused");

        #[derive(Debug, thiserror::Error)]
        #[error("wrapped: {0}")]
        struct Repeating(#[source] std::io::Error);
        let repeating = Repeating(std::io::Error::other("boom"));
        assert_eq!(error_chain(&repeating), "wrapped: boom");
    }

    #[test]
    fn password_is_hidden_in_url_text() {
        let url = DatabaseUrl::parse("postgres://app:s3cret@db.internal:5432/connectord?sslmode=disable&password=other").unwrap();
        let shown = format!("{url} {url:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(!shown.contains("other"), "{shown}");
        assert!(shown.contains("postgres://app:***@db.internal:5432/connectord?sslmode=disable&password=***"), "{shown}");
    }

    #[test]
    fn url_without_password_is_shown_whole() {
        let url = DatabaseUrl::parse("postgresql://app@127.0.0.1/connectord").unwrap();
        assert_eq!(url.to_string(), "postgresql://app@127.0.0.1/connectord");
    }

    #[test]
    fn other_schemes_are_rejected() {
        assert!(DatabaseUrl::parse("mysql://app@127.0.0.1/connectord").is_err());
        assert!(DatabaseUrl::parse("./connectord-data").is_err());
    }
}
