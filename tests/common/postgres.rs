//! A fresh PostgreSQL schema per test, inside the database that the environment variable
//! `CONNECTORD_TEST_POSTGRES_URL` names. Tests that get `None` run against sled only.
//!
//! Each [`TestDatabase`] creates a schema with a random name and hands out a URL whose
//! `search_path` points into it. Dropping the value drops the schema and every table in it.
//!
//! [`both_backends!`](crate::both_backends) runs service-level tests twice: once on sled
//! and once inside [`on_postgres`], where every server that the test starts gets a schema
//! of its own, dropped when the test ends.

use std::{
    future::Future,
    io::Write,
    sync::{Arc, Mutex, Once},
    time::Duration,
};

use connectord::store::{DatabaseUrl, PostgresStoreOptions};
use tokio_postgres::NoTls;

/// Environment variable with the URL of a database that tests may create schemas in.
pub const URL_VARIABLE: &str = "CONNECTORD_TEST_POSTGRES_URL";

/// Maximum wait for the server while creating or dropping a schema.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(30);

static SKIP_NOTICE: Once = Once::new();

pub struct TestDatabase {
    admin_url: String,
    schema: String,
    /// URL of the test's own schema, for the store under test.
    pub url: DatabaseUrl,
}

impl TestDatabase {
    /// Returns the admin URL, or `None` after printing a notice once per test binary.
    pub fn admin_url() -> Option<String> {
        match std::env::var(URL_VARIABLE) {
            Ok(url) if !url.trim().is_empty() => Some(url),
            _ => {
                // Written to the real stderr, past the test harness's output capture, so
                // that a skipped backend is visible in a normal `cargo test` run.
                SKIP_NOTICE.call_once(|| {
                    let _ = writeln!(
                        std::io::stderr(),
                        "NOTE: {URL_VARIABLE} is not set; PostgreSQL tests are skipped (run .ci/postgres-tests.sh)"
                    );
                });
                None
            }
        }
    }

    /// Creates a new schema, or returns `None` when no test database is configured.
    pub async fn create() -> Option<Self> {
        let admin_url = Self::admin_url()?;
        let schema = format!("test_{}", connectord::domain::ids::IdGenerator::new().next_id().to_ascii_lowercase());
        run_admin(&admin_url, &format!("CREATE SCHEMA {schema}")).await;
        let separator = if admin_url.contains('?') { '&' } else { '?' };
        let url = format!("{admin_url}{separator}options=-c%20search_path%3D{schema}");
        let url = DatabaseUrl::parse(&url).expect("the test database URL is a postgres:// URL");
        Some(Self { admin_url, schema, url })
    }

    /// Store options for this schema, with a small pool.
    pub fn store_options(&self) -> PostgresStoreOptions {
        let mut options = PostgresStoreOptions::new(self.url.clone());
        options.pool_size = 8;
        options
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let admin_url = self.admin_url.clone();
        let sql = format!("DROP SCHEMA IF EXISTS {} CASCADE", self.schema);
        // Drop runs inside the test's runtime, which cannot block on a future, so the
        // statement runs on a thread with a runtime of its own.
        let dropped = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("build a runtime to drop the test schema")
                .block_on(run_admin(&admin_url, &sql));
        })
        .join();
        if dropped.is_err() && !std::thread::panicking() {
            panic!("dropping test schema {} failed", self.schema);
        }
    }
}

/// Runs one statement on a new connection with the admin URL; panics when it fails.
async fn run_admin(admin_url: &str, sql: &str) {
    let work = async {
        let (client, connection) =
            tokio_postgres::connect(admin_url, NoTls).await.unwrap_or_else(|error| panic!("connect to {URL_VARIABLE}: {error}"));
        let connection = tokio::spawn(connection);
        client.batch_execute(&format!("SET lock_timeout = '20s'; {sql}")).await.unwrap_or_else(|error| panic!("{sql}: {error}"));
        drop(client);
        let _ = connection.await;
    };
    tokio::time::timeout(ADMIN_TIMEOUT, work).await.unwrap_or_else(|_| panic!("{sql} timed out"));
}

/// The schemas created for the servers of one test, dropped together when it ends.
#[derive(Default)]
struct PostgresScope {
    databases: Mutex<Vec<TestDatabase>>,
}

tokio::task_local! {
    static POSTGRES_SCOPE: Arc<PostgresScope>;
}

/// Runs `test` with PostgreSQL as the store of every server it starts, then drops their
/// schemas. Prints a notice and returns at once when no test database is configured.
pub async fn on_postgres(test: impl Future<Output = ()>) {
    if TestDatabase::admin_url().is_none() {
        return;
    }
    let scope = Arc::new(PostgresScope::default());
    POSTGRES_SCOPE.scope(Arc::clone(&scope), test).await;
    let databases = std::mem::take(&mut *scope.databases.lock().unwrap_or_else(|poisoned| poisoned.into_inner()));
    assert!(!databases.is_empty(), "the test started no server, so nothing ran on PostgreSQL");
    drop(databases);
}

/// Returns whether the calling test runs inside [`on_postgres`].
pub fn in_postgres_scope() -> bool {
    POSTGRES_SCOPE.try_with(|_| ()).is_ok()
}

/// Creates a schema for one more server when the calling test runs inside
/// [`on_postgres`], and returns its store options; `None` outside it.
pub async fn scoped_store_options() -> Option<PostgresStoreOptions> {
    let scope = POSTGRES_SCOPE.try_with(Arc::clone).ok()?;
    let database = TestDatabase::create().await.expect("on_postgres checked that a test database is configured");
    let mut options = database.store_options();
    // Several servers may share one schema and tests run in parallel, so each pool stays
    // small against the test server's connection limit.
    options.pool_size = 4;
    scope.databases.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).push(database);
    Some(options)
}

/// Generates two tests for each listed async test function: `sled::NAME` and
/// `postgres::NAME`. The second runs the function inside [`on_postgres`] and passes
/// without running it when `CONNECTORD_TEST_POSTGRES_URL` is unset. Arguments in
/// parentheses after a name go to `#[tokio::test]`, such as `flavor = "multi_thread"`.
#[macro_export]
macro_rules! both_backends {
    ($($name:ident $(($($arguments:tt)*))?),+ $(,)?) => {
        mod sled {
            $(
                #[tokio::test $(($($arguments)*))?]
                async fn $name() {
                    super::$name().await;
                }
            )+
        }

        mod postgres {
            $(
                #[tokio::test $(($($arguments)*))?]
                async fn $name() {
                    $crate::common::postgres::on_postgres(super::$name()).await;
                }
            )+
        }
    };
}
