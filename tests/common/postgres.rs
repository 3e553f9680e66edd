//! A fresh PostgreSQL schema per test, inside the database that the environment variable
//! `CONNECTORD_TEST_POSTGRES_URL` names. Tests that get `None` run against sled only.
//!
//! Each [`TestDatabase`] creates a schema with a random name and hands out a URL whose
//! `search_path` points into it; dropping the value drops the schema and every table in it.

use std::{io::Write, sync::Once, time::Duration};

use connectord::store::{DatabaseUrl, PostgresStoreOptions};
use tokio_postgres::NoTls;

/// Environment variable with the URL of a database that tests may create schemas in.
pub const URL_VARIABLE: &str = "CONNECTORD_TEST_POSTGRES_URL";

/// Longest wait for the server while creating or dropping a schema.
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
        let (client, connection) = tokio_postgres::connect(admin_url, NoTls)
            .await
            .unwrap_or_else(|error| panic!("connect to {URL_VARIABLE}: {error}"));
        let connection = tokio::spawn(connection);
        client
            .batch_execute(&format!("SET lock_timeout = '20s'; {sql}"))
            .await
            .unwrap_or_else(|error| panic!("{sql}: {error}"));
        drop(client);
        let _ = connection.await;
    };
    tokio::time::timeout(ADMIN_TIMEOUT, work).await.unwrap_or_else(|_| panic!("{sql} timed out"));
}
