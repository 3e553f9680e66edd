//! Embedded, versioned schema migrations, applied at start-up.
//!
//! The table `connectord_schema_migrations` records every applied version. Replicas that
//! start together take turns through an advisory lock, so each migration runs once. A
//! database whose schema version is newer than this binary supports is rejected before
//! anything is read or written.

use deadpool_postgres::Client;

/// One schema change. Versions are consecutive from 1 and never edited once released.
struct Migration {
    version: i32,
    name: &'static str,
    sql: &'static str,
}

const MIGRATIONS: &[Migration] = &[
    Migration { version: 1, name: "create tables", sql: include_str!("migrations/0001_create_tables.sql") },
    Migration { version: 2, name: "create leases", sql: include_str!("migrations/0002_create_leases.sql") },
];

/// Key of the transaction-scoped advisory lock held while migrating: the bytes of
/// "connecto" read as a big-endian integer.
const MIGRATION_LOCK_KEY: i64 = 0x636f_6e6e_6563_746f;

const CREATE_VERSION_TABLE: &str = "CREATE TABLE IF NOT EXISTS connectord_schema_migrations (
    version     integer PRIMARY KEY,
    name        text NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
)";

/// Failure to bring the schema up to date.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error(
        "the database schema is at version {found}, newer than version {supported} that this \
         connectord knows; run a connectord at least as new as the one that migrated it"
    )]
    Newer { found: i32, supported: i32 },
    #[error("reading or writing the schema version failed: {0}")]
    Version(tokio_postgres::Error),
    #[error("migration {version} ({name}) failed: {source}")]
    Migration { version: i32, name: &'static str, source: tokio_postgres::Error },
}

/// Returns the schema version that this binary creates.
pub fn latest_version() -> i32 {
    MIGRATIONS.last().map_or(0, |migration| migration.version)
}

/// Applies every migration newer than the database's version, all in one transaction,
/// and returns the version the database was at before.
pub(super) async fn migrate(client: &mut Client) -> Result<i32, SchemaError> {
    let transaction = client.transaction().await.map_err(SchemaError::Version)?;
    transaction.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK_KEY]).await.map_err(SchemaError::Version)?;
    transaction.batch_execute(CREATE_VERSION_TABLE).await.map_err(SchemaError::Version)?;
    let found: i32 = transaction
        .query_one("SELECT coalesce(max(version), 0) FROM connectord_schema_migrations", &[])
        .await
        .and_then(|row| row.try_get(0))
        .map_err(SchemaError::Version)?;

    let supported = latest_version();
    if found > supported {
        return Err(SchemaError::Newer { found, supported });
    }
    for migration in MIGRATIONS.iter().filter(|migration| migration.version > found) {
        let failed = |source| SchemaError::Migration { version: migration.version, name: migration.name, source };
        transaction.batch_execute(migration.sql).await.map_err(failed)?;
        transaction
            .execute("INSERT INTO connectord_schema_migrations (version, name) VALUES ($1, $2)", &[&migration.version, &migration.name])
            .await
            .map_err(failed)?;
        tracing::info!(version = migration.version, name = migration.name, "database schema migrated");
    }
    transaction.commit().await.map_err(SchemaError::Version)?;
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_consecutive_from_one() {
        for (index, migration) in MIGRATIONS.iter().enumerate() {
            assert_eq!(migration.version, i32::try_from(index).unwrap() + 1, "{}", migration.name);
        }
    }
}
