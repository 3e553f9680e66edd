//! Connector operations: create, read, list, update and soft delete over a [`Store`].

use std::sync::Arc;

use chrono::Utc;

use super::{
    ConfigTypes, Connector, ConnectorKey, ConnectorPatch, ConnectorStatus, Error, NewConnector,
    credentials::{ROTATION_SCAN, revoked},
    ids::IdGenerator,
    lifecycle::cancelled,
};
use crate::store::{Batch, Inserted, Store, StoreError};

/// How often an unconditional update is retried when another write to the same connector
/// lands between its read and its write.
const MAX_UPDATE_ATTEMPTS: usize = 16;

/// One page of a list request.
#[derive(Debug, Clone)]
pub struct ListQuery {
    pub app_id: String,
    /// Resume after this id; `None` starts at the beginning.
    pub after_id: Option<String>,
    pub page_size: usize,
    pub include_deleted: bool,
}

#[derive(Debug, Clone)]
pub struct ConnectorPage {
    pub connectors: Vec<Connector>,
    /// Id to resume after, when more connectors may follow.
    pub next_after_id: Option<String>,
}

/// Precondition of a write: the etag the client last read, if it sent one.
pub type ExpectedEtag<'a> = Option<&'a str>;

pub struct ConnectorRegistry {
    store: Arc<dyn Store>,
    config_types: Arc<ConfigTypes>,
    ids: IdGenerator,
}

/// Draws the per-connector salt of secret fingerprints from the OS CSPRNG.
fn new_salt() -> Result<Vec<u8>, Error> {
    let mut salt = vec![0u8; 16];
    getrandom::fill(&mut salt).map_err(|error| Error::Internal(format!("the OS random generator failed: {error}")))?;
    Ok(salt)
}

impl ConnectorRegistry {
    pub fn new(store: Arc<dyn Store>, config_types: Arc<ConfigTypes>) -> Self {
        Self { store, config_types, ids: IdGenerator::new() }
    }

    pub fn config_types(&self) -> &Arc<ConfigTypes> {
        &self.config_types
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Stores a new connector, or returns the one created earlier with the same request id.
    pub async fn create(&self, mut new: NewConnector) -> Result<Connector, Error> {
        if let Some(config) = &new.config {
            new.config = Some(self.restore_secrets("config", config, None)?);
        }
        let now = Utc::now();
        let connector = Connector {
            id: self.ids.next_id(),
            app_id: new.app_id,
            catalog_id: new.catalog_id,
            display_name: new.display_name,
            description: new.description,
            user_ids: new.user_ids,
            config: new.config,
            status: ConnectorStatus::default(),
            oauth_authorized_as: None,
            download_url: String::new(),
            created_at: now,
            updated_at: now,
            deleted_at: None,
            sync_resource_type_ids: None,
            profile_allow_list: Vec::new(),
            profile_ignore_list: Vec::new(),
            disable_check_bad_sync: false,
            can_resume_sync: false,
            sync_disabled: None,
            schedule: None,
            secret_salt: new_salt()?,
            revision: 1,
            etag_revision: 1,
        };

        match self.store.insert_connector(&connector, new.request_id.as_deref()).await? {
            Inserted::Created => Ok(connector),
            Inserted::Replayed(existing) => {
                tracing::info!(connector_id = %existing.id, "request id seen before; returning the connector it created");
                Ok(existing)
            }
        }
    }

    /// Returns a connector, deleted or not.
    pub async fn get(&self, key: &ConnectorKey) -> Result<Connector, Error> {
        self.store.get_connector(key).await?.ok_or_else(|| Error::NotFound(format!("{key} not found")))
    }

    pub async fn list(&self, query: &ListQuery) -> Result<ConnectorPage, Error> {
        // One extra row tells whether another page follows without a second query.
        let mut connectors =
            self.store.list_connectors(&query.app_id, query.after_id.as_deref(), query.page_size + 1, query.include_deleted).await?;
        let next_after_id = if connectors.len() > query.page_size {
            connectors.truncate(query.page_size);
            connectors.last().map(|last| last.id.clone())
        } else {
            None
        };
        Ok(ConnectorPage { connectors, next_after_id })
    }

    /// Applies a patch to a live connector.
    pub async fn update(&self, key: &ConnectorKey, patch: &ConnectorPatch, expected_etag: ExpectedEtag<'_>) -> Result<Connector, Error> {
        self.modify(key, expected_etag, |connector| {
            let mut patch = patch.clone();
            if let Some(Some(config)) = &patch.config {
                patch.config = Some(Some(self.restore_secrets("connector.config", config, connector.config.as_ref())?));
            }
            patch.apply_to(connector);
            Ok(())
        })
        .await
    }

    /// Puts stored secrets back where a client sent the mask; `field` names the config in
    /// the request for errors.
    fn restore_secrets(&self, field: &str, incoming: &super::Config, stored: Option<&super::Config>) -> Result<super::Config, Error> {
        self.config_types
            .restore_secrets(incoming, stored)
            .map_err(|violation| Error::invalid(format!("{field}.{}", violation.field), violation.description))
    }

    /// Soft-deletes a connector: it stays readable with `get` but leaves lists and accepts
    /// no more writes. Its pending sync is cancelled and its credentials are revoked in the
    /// same write.
    pub async fn delete(&self, key: &ConnectorKey, expected_etag: ExpectedEtag<'_>) -> Result<Connector, Error> {
        for _ in 0..MAX_UPDATE_ATTEMPTS {
            let current = self.get(key).await?;
            if current.is_deleted() {
                return Err(Error::NotFound(format!("{key} not found: it was deleted")));
            }
            if let Some(expected) = expected_etag
                && !etag_matches(expected, &current)
            {
                return Err(stale_etag(key, expected, &current));
            }

            let now = Utc::now();
            let mut deleted = current.next_revision(now);
            deleted.deleted_at = Some(now);
            let mut batch = Batch::replace_connector(deleted.clone(), current.revision);
            if let Some(pending) = self.store.pending_sync(key).await? {
                batch.syncs.push(cancelled(pending, "cancelled because the connector was deleted", now));
            }
            for credential in self.store.list_credentials(key, None, ROTATION_SCAN).await? {
                if credential.deleted_at.is_none() {
                    batch.credentials.push(revoked(credential, now));
                }
            }

            match self.store.apply(&batch).await {
                Ok(()) => return Ok(deleted),
                // The next attempt reads the connector again and checks the etag against it.
                Err(StoreError::Conflict(_)) => continue,
                Err(error) => return Err(error.into()),
            }
        }
        Err(Error::Aborted(format!("{key} is being changed by many writers at once; retry later")))
    }

    /// Reads a live connector, lets `change` edit it, and writes it back if nothing else
    /// wrote in between. A lost race is retried. When the other write changed the etag that
    /// the client sent, the retry fails with `Aborted`, because the client's view is stale.
    pub async fn modify<F>(&self, key: &ConnectorKey, expected_etag: ExpectedEtag<'_>, change: F) -> Result<Connector, Error>
    where
        F: Fn(&mut Connector) -> Result<(), Error>,
    {
        for _ in 0..MAX_UPDATE_ATTEMPTS {
            let current = self.get(key).await?;
            if current.is_deleted() {
                return Err(Error::FailedPrecondition(format!("{key} is deleted and cannot be changed")));
            }
            if let Some(expected) = expected_etag
                && !etag_matches(expected, &current)
            {
                return Err(stale_etag(key, expected, &current));
            }

            let mut updated = current.next_revision(Utc::now());
            change(&mut updated)?;

            match self.store.apply(&Batch::replace_connector(updated.clone(), current.revision)).await {
                Ok(()) => return Ok(updated),
                // The next attempt reads the connector again and checks the etag against it.
                Err(StoreError::Conflict(_)) => continue,
                Err(error) => return Err(error.into()),
            }
        }
        Err(Error::Aborted(format!("{key} is being changed by many writers at once; retry later")))
    }
}

/// Compares an etag from a request with the connector's. The quotes of the entity-tag form
/// are optional, because JSON clients often drop them when they copy the value.
fn etag_matches(expected: &str, current: &Connector) -> bool {
    let current = current.etag();
    expected == current || format!("\"{expected}\"") == current
}

/// Builds the error for a stale etag. Etags are printed as they are, with their own quotes.
/// A client value that is long or not visible ASCII is shortened and escaped instead.
fn stale_etag(key: &ConnectorKey, expected: &str, current: &Connector) -> Error {
    let plain = expected.len() <= 32 && expected.bytes().all(|byte| byte.is_ascii_graphic());
    let expected_etag = if plain { expected.to_owned() } else { super::connector_text::shorten(expected) };
    Error::Aborted(format!("etag {expected_etag} does not match the current etag {} of {key}; read it again and retry", current.etag()))
}

impl From<StoreError> for Error {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NotFound(what) => Error::NotFound(format!("{what} not found")),
            StoreError::Conflict(what) => Error::Aborted(format!("{what}; retry")),
            StoreError::NoSpace(detail) => {
                // The detail may name server paths, so it goes to the log only.
                tracing::warn!(%detail, "write rejected: the disk is full");
                Error::ResourceExhausted(
                    "the server's disk is full, so the write was not saved; retry once an operator has freed space".to_owned(),
                )
            }
            StoreError::Closed => Error::Unavailable("the server is shutting down".to_owned()),
            error @ (StoreError::Flush(_) | StoreError::Unavailable(_)) => Error::Unavailable(error.to_string()),
            error @ (StoreError::Corrupt { .. } | StoreError::Backend(_)) => Error::Internal(error.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_disk_is_resource_exhausted() {
        let error = Error::from(StoreError::NoSpace("No space left on device (os error 28)".to_owned()));
        assert!(matches!(error, Error::ResourceExhausted(ref message) if message.contains("disk is full")), "{error:?}");
    }

    #[test]
    fn other_flush_failure_is_unavailable() {
        let error = Error::from(StoreError::Flush("Input/output error".to_owned()));
        assert!(matches!(error, Error::Unavailable(_)), "{error:?}");
    }
}
