//! Writes, each inside one transaction that the caller commits.
//!
//! A write with an expected revision is an `UPDATE … WHERE revision = $expected`: when
//! another transaction changed the row first, PostgreSQL re-checks the condition on the new
//! row version (also under READ COMMITTED), no row matches, and the batch fails with
//! [`StoreError::Conflict`]. A new record is a plain `INSERT`. Its unique constraints and
//! indexes turn a second pending sync, a reused request id or a taken client id into a
//! unique violation, which also becomes `Conflict`. Any failure rolls the whole batch back,
//! because the transaction is dropped without a commit.

use deadpool_postgres::Transaction;
use tokio_postgres::types::ToSql;

use super::{
    errors::{driver, from_driver, revision_column},
    read::state_column,
};
use crate::{
    domain::{Connector, Credential, SyncRun, SyncState},
    store::{
        Inserted, StoreError, Versioned,
        record::{encode_connector, encode_credential, encode_sync, to_nanos},
    },
};

/// Runs one statement through the statement cache and returns how many rows it changed.
/// `conflict` words a unique violation from the constraint's name.
async fn execute(
    transaction: &Transaction<'_>,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
    conflict: impl FnOnce(&str) -> Option<String>,
) -> Result<u64, StoreError> {
    let statement = transaction.prepare_cached(sql).await.map_err(driver)?;
    transaction.execute(&statement, params).await.map_err(|error| from_driver(error, conflict))
}

/// Explains why a conditional update matched no row: the record is missing, or another
/// write changed its revision first.
async fn missed_update(transaction: &Transaction<'_>, exists_sql: &str, params: &[&(dyn ToSql + Sync)], what: String) -> StoreError {
    let statement = match transaction.prepare_cached(exists_sql).await {
        Ok(statement) => statement,
        Err(error) => return driver(error),
    };
    match transaction.query_opt(&statement, params).await {
        Ok(Some(_)) => StoreError::Conflict(format!("{what} was changed by another write")),
        Ok(None) => StoreError::NotFound(what),
        Err(error) => driver(error),
    }
}

/// Stores a new connector, or with a request id already recorded for the app, returns the
/// connector that the first insert created.
pub(super) async fn insert_connector(
    transaction: &Transaction<'_>,
    connector: &Connector,
    request_id: Option<&str>,
) -> Result<Inserted, StoreError> {
    if let Some(request_id) = request_id {
        // A concurrent insert of the same id locks the key until it commits or rolls
        // back. This statement waits for it, then inserts the row or nothing.
        let recorded = execute(
            transaction,
            "INSERT INTO connector_request_ids (app_id, request_id, connector_id, recorded_at_ns)
             VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
            &[&connector.app_id, &request_id, &connector.id, &to_nanos(connector.created_at)],
            |_| None,
        )
        .await?;
        if recorded == 0 {
            return replayed(transaction, &connector.app_id, request_id).await;
        }
    }
    write_connector(transaction, &Versioned::new(connector.clone())).await?;
    Ok(Inserted::Created)
}

/// Returns the connector that a recorded request id created.
async fn replayed(transaction: &Transaction<'_>, app_id: &str, request_id: &str) -> Result<Inserted, StoreError> {
    let statement = transaction
        .prepare_cached(
            "SELECT c.record, c.revision, c.app_id, c.id, r.connector_id
             FROM connector_request_ids r LEFT JOIN connectors c ON c.app_id = r.app_id AND c.id = r.connector_id
             WHERE r.app_id = $1 AND r.request_id = $2",
        )
        .await
        .map_err(driver)?;
    let Some(row) = transaction.query_opt(&statement, &[&app_id, &request_id]).await.map_err(driver)? else {
        // The purge removed the id between the insert and this read; the caller retries.
        return Err(StoreError::Conflict(format!("request id {request_id} expired while it was read")));
    };
    let has_connector: Option<&[u8]> = row.try_get(0).map_err(driver)?;
    if has_connector.is_none() {
        let connector_id: String = row.try_get(4).map_err(driver)?;
        return Err(StoreError::Corrupt {
            key: format!("{app_id}/{request_id}"),
            reason: format!("request id names missing connector {connector_id}"),
        });
    }
    Ok(Inserted::Replayed(super::read::connector_row(&row)?))
}

/// Writes every record of a batch, in the batch's order.
pub(super) async fn apply(transaction: &Transaction<'_>, batch: &crate::store::Batch) -> Result<(), StoreError> {
    if let Some(write) = &batch.connector {
        write_connector(transaction, write).await?;
    }
    for write in &batch.syncs {
        write_sync(transaction, write).await?;
    }
    for write in &batch.credentials {
        write_credential(transaction, write).await?;
    }
    Ok(())
}

/// Next scheduled run of a live connector, the value of `next_run_at_ns`.
fn next_run_column(connector: &Connector) -> Option<i64> {
    if connector.is_deleted() {
        return None;
    }
    connector.schedule.as_ref()?.next_run_at.map(to_nanos)
}

async fn write_connector(transaction: &Transaction<'_>, write: &Versioned<Connector>) -> Result<(), StoreError> {
    let connector = &write.record;
    let key = connector.key();
    let revision = revision_column(connector.revision)?;
    let deleted = connector.is_deleted();
    let next_run = next_run_column(connector);
    let record = encode_connector(connector);
    let conflict = |constraint: &str| (constraint == "connectors_pkey").then(|| format!("{key} already exists"));

    let Some(expected) = write.expected_revision else {
        execute(
            transaction,
            "INSERT INTO connectors (app_id, id, revision, deleted, next_run_at_ns, record)
             VALUES ($1, $2, $3, $4, $5, $6)",
            &[&key.app_id, &key.id, &revision, &deleted, &next_run, &record],
            conflict,
        )
        .await?;
        return Ok(());
    };
    let expected = revision_column(expected)?;
    let updated = execute(
        transaction,
        "UPDATE connectors SET revision = $3, deleted = $4, next_run_at_ns = $5, record = $6
         WHERE app_id = $1 AND id = $2 AND revision = $7",
        &[&key.app_id, &key.id, &revision, &deleted, &next_run, &record, &expected],
        conflict,
    )
    .await?;
    if updated == 0 {
        return Err(missed_update(
            transaction,
            "SELECT 1 FROM connectors WHERE app_id = $1 AND id = $2",
            &[&key.app_id, &key.id],
            key.to_string(),
        )
        .await);
    }
    Ok(())
}

async fn write_sync(transaction: &Transaction<'_>, write: &Versioned<SyncRun>) -> Result<(), StoreError> {
    let sync = &write.record;
    let what = format!("sync {} of connector {} in app {}", sync.id, sync.connector_id, sync.app_id);
    let revision = revision_column(sync.revision)?;
    let state = state_column(sync.state);
    let lease_end = sync.lease_expires_at.filter(|_| sync.state == SyncState::Running).map(to_nanos);
    let record = encode_sync(sync);
    let conflict = |constraint: &str| match constraint {
        "syncs_pkey" => Some(format!("{what} already exists")),
        "syncs_one_pending" => Some(format!("connector {} already has a pending sync", sync.connector_id)),
        "syncs_request_id_key" => Some(format!("request id {} was already used", sync.request_id.as_deref().unwrap_or_default())),
        _ => None,
    };

    let Some(expected) = write.expected_revision else {
        execute(
            transaction,
            "INSERT INTO syncs (app_id, connector_id, id, revision, state, lease_expires_at_ns, request_id, record)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            &[&sync.app_id, &sync.connector_id, &sync.id, &revision, &state, &lease_end, &sync.request_id, &record],
            conflict,
        )
        .await?;
        return Ok(());
    };
    let expected = revision_column(expected)?;
    let updated = execute(
        transaction,
        "UPDATE syncs SET revision = $4, state = $5, lease_expires_at_ns = $6, request_id = $7, record = $8
         WHERE app_id = $1 AND connector_id = $2 AND id = $3 AND revision = $9",
        &[&sync.app_id, &sync.connector_id, &sync.id, &revision, &state, &lease_end, &sync.request_id, &record, &expected],
        conflict,
    )
    .await?;
    if updated == 0 {
        return Err(missed_update(
            transaction,
            "SELECT 1 FROM syncs WHERE app_id = $1 AND connector_id = $2 AND id = $3",
            &[&sync.app_id, &sync.connector_id, &sync.id],
            what.clone(),
        )
        .await);
    }
    Ok(())
}

async fn write_credential(transaction: &Transaction<'_>, write: &Versioned<Credential>) -> Result<(), StoreError> {
    let credential = &write.record;
    let what = format!("credential {} of connector {}", credential.id, credential.connector_id);
    let revision = revision_column(credential.revision)?;
    let record = encode_credential(credential);
    let conflict = |constraint: &str| match constraint {
        "credentials_pkey" => Some(format!("{what} already exists")),
        "credentials_client_id_key" => Some(format!("client id {} is taken", credential.client_id)),
        _ => None,
    };

    let Some(expected) = write.expected_revision else {
        execute(
            transaction,
            "INSERT INTO credentials (app_id, connector_id, id, revision, client_id, record)
             VALUES ($1, $2, $3, $4, $5, $6)",
            &[&credential.app_id, &credential.connector_id, &credential.id, &revision, &credential.client_id, &record],
            conflict,
        )
        .await?;
        return Ok(());
    };
    let expected = revision_column(expected)?;
    let updated = execute(
        transaction,
        "UPDATE credentials SET revision = $4, client_id = $5, record = $6
         WHERE app_id = $1 AND connector_id = $2 AND id = $3 AND revision = $7",
        &[&credential.app_id, &credential.connector_id, &credential.id, &revision, &credential.client_id, &record, &expected],
        conflict,
    )
    .await?;
    if updated == 0 {
        return Err(missed_update(
            transaction,
            "SELECT 1 FROM credentials WHERE app_id = $1 AND connector_id = $2 AND id = $3",
            &[&credential.app_id, &credential.connector_id, &credential.id],
            what.clone(),
        )
        .await);
    }
    Ok(())
}

/// Inserts every record of a snapshot whose key is not stored yet, and returns how many it
/// inserted. A record that breaks another uniqueness rule is skipped as well, and the
/// caller's check of the copy reports it.
pub(super) async fn import(transaction: &Transaction<'_>, snapshot: &crate::store::migrate::Snapshot) -> Result<u64, StoreError> {
    let mut inserted = 0;
    for connector in &snapshot.connectors {
        let key = connector.key();
        inserted += execute(
            transaction,
            "INSERT INTO connectors (app_id, id, revision, deleted, next_run_at_ns, record)
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
            &[
                &key.app_id,
                &key.id,
                &revision_column(connector.revision)?,
                &connector.is_deleted(),
                &next_run_column(connector),
                &encode_connector(connector),
            ],
            |_| None,
        )
        .await?;
    }
    for sync in &snapshot.syncs {
        let lease_end = sync.lease_expires_at.filter(|_| sync.state == SyncState::Running).map(to_nanos);
        inserted += execute(
            transaction,
            "INSERT INTO syncs (app_id, connector_id, id, revision, state, lease_expires_at_ns, request_id, record)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING",
            &[
                &sync.app_id,
                &sync.connector_id,
                &sync.id,
                &revision_column(sync.revision)?,
                &state_column(sync.state),
                &lease_end,
                &sync.request_id,
                &encode_sync(sync),
            ],
            |_| None,
        )
        .await?;
    }
    for credential in &snapshot.credentials {
        inserted += execute(
            transaction,
            "INSERT INTO credentials (app_id, connector_id, id, revision, client_id, record)
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
            &[
                &credential.app_id,
                &credential.connector_id,
                &credential.id,
                &revision_column(credential.revision)?,
                &credential.client_id,
                &encode_credential(credential),
            ],
            |_| None,
        )
        .await?;
    }
    for entry in &snapshot.request_ids {
        inserted += execute(
            transaction,
            "INSERT INTO connector_request_ids (app_id, request_id, connector_id, recorded_at_ns)
             VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
            &[&entry.app_id, &entry.request_id, &entry.connector_id, &to_nanos(entry.recorded_at)],
            |_| None,
        )
        .await?;
    }
    Ok(inserted)
}
