//! Read queries. Every page is a keyset scan on an index (`id > $after` or `id < $before`
//! with `LIMIT`), never `OFFSET`, so its cost depends on the page size only.

use chrono::{DateTime, Utc};
use deadpool_postgres::Client;
use tokio_postgres::{Row, types::ToSql};

use super::errors::driver;
use crate::{
    domain::{Connector, ConnectorKey, Credential, SyncRun, SyncState},
    store::{
        StoreError,
        record::{decode_connector, decode_credential, decode_sync, to_nanos},
    },
};

/// Column value of a sync state, as documented in the schema.
pub(super) fn state_column(state: SyncState) -> i16 {
    match state {
        SyncState::Pending => 1,
        SyncState::Running => 2,
        SyncState::Done => 3,
        SyncState::Error => 4,
        SyncState::Cancelled => 5,
    }
}

/// Runs a query through the connection's statement cache.
pub(super) async fn query(client: &Client, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>, StoreError> {
    let statement = client.prepare_cached(sql).await.map_err(driver)?;
    client.query(&statement, params).await.map_err(driver)
}

/// Decodes a row of `(record, revision)` with `decode`, and checks that the revision in the
/// record's header matches the column that conditional writes compare.
pub(super) fn decode_row<T>(
    row: &Row,
    key: &str,
    decode: impl Fn(&[u8], &[u8]) -> Result<T, StoreError>,
    revision_of: impl Fn(&T) -> u64,
) -> Result<T, StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt { key: key.to_owned(), reason };
    let bytes: &[u8] = row.try_get(0).map_err(|error| corrupt(format!("record column: {error}")))?;
    let column: i64 = row.try_get(1).map_err(|error| corrupt(format!("revision column: {error}")))?;
    let value = decode(key.as_bytes(), bytes)?;
    if i64::try_from(revision_of(&value)).ok() != Some(column) {
        return Err(corrupt(format!("record has revision {}, its row {column}", revision_of(&value))));
    }
    Ok(value)
}

pub(super) fn connector_row(row: &Row) -> Result<Connector, StoreError> {
    let key = format!("{}/{}", text(row, 2)?, text(row, 3)?);
    decode_row(row, &key, decode_connector, |connector| connector.revision)
}

pub(super) fn sync_row(row: &Row) -> Result<SyncRun, StoreError> {
    let key = format!("{}/{}/{}", text(row, 2)?, text(row, 3)?, text(row, 4)?);
    decode_row(row, &key, decode_sync, |sync| sync.revision)
}

pub(super) fn credential_row(row: &Row) -> Result<Credential, StoreError> {
    let key = format!("{}/{}/{}", text(row, 2)?, text(row, 3)?, text(row, 4)?);
    decode_row(row, &key, decode_credential, |credential| credential.revision)
}

fn text(row: &Row, index: usize) -> Result<&str, StoreError> {
    row.try_get(index).map_err(|error| StoreError::Backend(format!("column {index} is not text: {error}")))
}

fn rows<T>(rows: &[Row], decode: impl Fn(&Row) -> Result<T, StoreError>) -> Result<Vec<T>, StoreError> {
    rows.iter().map(decode).collect()
}

fn limit_column(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

const CONNECTOR_COLUMNS: &str = "record, revision, app_id, id";
const SYNC_COLUMNS: &str = "record, revision, app_id, connector_id, id";
const CREDENTIAL_COLUMNS: &str = "record, revision, app_id, connector_id, id";

pub(super) async fn connector(client: &Client, key: &ConnectorKey) -> Result<Option<Connector>, StoreError> {
    let sql = format!("SELECT {CONNECTOR_COLUMNS} FROM connectors WHERE app_id = $1 AND id = $2");
    let found = query(client, &sql, &[&key.app_id, &key.id]).await?;
    found.first().map(connector_row).transpose()
}

pub(super) async fn connectors(
    client: &Client,
    app_id: &str,
    after_id: Option<&str>,
    limit: usize,
    include_deleted: bool,
) -> Result<Vec<Connector>, StoreError> {
    let live = if include_deleted { "" } else { "AND NOT deleted" };
    // Ids are never empty, so "after the empty id" starts at the first one.
    let sql = format!("SELECT {CONNECTOR_COLUMNS} FROM connectors WHERE app_id = $1 AND id > $2 {live} ORDER BY id LIMIT $3");
    let found = query(client, &sql, &[&app_id, &after_id.unwrap_or(""), &limit_column(limit)]).await?;
    rows(&found, connector_row)
}

pub(super) async fn sync(client: &Client, key: &ConnectorKey, sync_id: &str) -> Result<Option<SyncRun>, StoreError> {
    let sql = format!("SELECT {SYNC_COLUMNS} FROM syncs WHERE app_id = $1 AND connector_id = $2 AND id = $3");
    let found = query(client, &sql, &[&key.app_id, &key.id, &sync_id]).await?;
    found.first().map(sync_row).transpose()
}

pub(super) async fn syncs(
    client: &Client,
    key: &ConnectorKey,
    before_id: Option<&str>,
    limit: usize,
    state: Option<SyncState>,
) -> Result<Vec<SyncRun>, StoreError> {
    let limit = limit_column(limit);
    let state = state.map(state_column);
    let mut params: Vec<&(dyn ToSql + Sync)> = vec![&key.app_id, &key.id, &limit];
    let mut filters = String::new();
    if let Some(before_id) = &before_id {
        params.push(before_id);
        filters.push_str(&format!(" AND id < ${}", params.len()));
    }
    if let Some(state) = &state {
        params.push(state);
        filters.push_str(&format!(" AND state = ${}", params.len()));
    }
    let sql = format!("SELECT {SYNC_COLUMNS} FROM syncs WHERE app_id = $1 AND connector_id = $2{filters} ORDER BY id DESC LIMIT $3");
    let found = query(client, &sql, &params).await?;
    rows(&found, sync_row)
}

pub(super) async fn pending_sync(client: &Client, key: &ConnectorKey) -> Result<Option<SyncRun>, StoreError> {
    let sql = format!("SELECT {SYNC_COLUMNS} FROM syncs WHERE app_id = $1 AND connector_id = $2 AND state = 1");
    let found = query(client, &sql, &[&key.app_id, &key.id]).await?;
    found.first().map(sync_row).transpose()
}

pub(super) async fn sync_by_request_id(client: &Client, key: &ConnectorKey, request_id: &str) -> Result<Option<SyncRun>, StoreError> {
    let sql = format!("SELECT {SYNC_COLUMNS} FROM syncs WHERE app_id = $1 AND connector_id = $2 AND request_id = $3");
    let found = query(client, &sql, &[&key.app_id, &key.id, &request_id]).await?;
    found.first().map(sync_row).transpose()
}

pub(super) async fn expired_leases(client: &Client, now: DateTime<Utc>, limit: usize) -> Result<Vec<SyncRun>, StoreError> {
    let sql = format!("SELECT {SYNC_COLUMNS} FROM syncs WHERE lease_expires_at_ns <= $1 ORDER BY lease_expires_at_ns LIMIT $2");
    let found = query(client, &sql, &[&to_nanos(now), &limit_column(limit)]).await?;
    rows(&found, sync_row)
}

pub(super) async fn due_schedules(client: &Client, now: DateTime<Utc>, limit: usize) -> Result<Vec<ConnectorKey>, StoreError> {
    let sql = "SELECT app_id, id FROM connectors WHERE next_run_at_ns <= $1 ORDER BY next_run_at_ns LIMIT $2";
    let found = query(client, sql, &[&to_nanos(now), &limit_column(limit)]).await?;
    found.iter().map(|row| Ok(ConnectorKey::new(text(row, 0)?, text(row, 1)?))).collect()
}

pub(super) async fn credential(client: &Client, key: &ConnectorKey, credential_id: &str) -> Result<Option<Credential>, StoreError> {
    let sql = format!("SELECT {CREDENTIAL_COLUMNS} FROM credentials WHERE app_id = $1 AND connector_id = $2 AND id = $3");
    let found = query(client, &sql, &[&key.app_id, &key.id, &credential_id]).await?;
    found.first().map(credential_row).transpose()
}

pub(super) async fn credentials(
    client: &Client,
    key: &ConnectorKey,
    before_id: Option<&str>,
    limit: usize,
) -> Result<Vec<Credential>, StoreError> {
    let limit = limit_column(limit);
    let found = match before_id {
        Some(before_id) => {
            let sql = format!(
                "SELECT {CREDENTIAL_COLUMNS} FROM credentials WHERE app_id = $1 AND connector_id = $2 AND id < $4 ORDER BY id DESC LIMIT $3"
            );
            query(client, &sql, &[&key.app_id, &key.id, &limit, &before_id]).await?
        }
        None => {
            let sql =
                format!("SELECT {CREDENTIAL_COLUMNS} FROM credentials WHERE app_id = $1 AND connector_id = $2 ORDER BY id DESC LIMIT $3");
            query(client, &sql, &[&key.app_id, &key.id, &limit]).await?
        }
    };
    rows(&found, credential_row)
}

pub(super) async fn credential_by_client_id(client: &Client, client_id: &str) -> Result<Option<Credential>, StoreError> {
    let sql = format!("SELECT {CREDENTIAL_COLUMNS} FROM credentials WHERE client_id = $1");
    let found = query(client, &sql, &[&client_id]).await?;
    found.first().map(credential_row).transpose()
}
