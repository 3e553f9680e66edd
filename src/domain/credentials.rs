//! Credential operations: rotate, read, list, revoke, and authenticate a worker.

use crate::log_throttle::{LOG_INTERVAL, LogThrottle};
use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
    time::Duration,
};

use chrono::{DateTime, Utc};

use super::{Connector, ConnectorKey, Credential, Error, Secret, credential::CLIENT_ID_PREFIX, ids::IdGenerator};
use crate::store::{Batch, Store, StoreError, Versioned};

/// Most credentials of one connector that may authenticate at the same time.
pub const MAX_USABLE_CREDENTIALS: usize = 10;
/// Newest credentials read when a rotation or a delete looks for usable ones. Older ones expired
/// long ago unless more than this many rotations happened within one grace window, which
/// [`MAX_USABLE_CREDENTIALS`] prevents.
pub(super) const ROTATION_SCAN: usize = 100;
/// `last_used_at` is written at most this often per credential.
const LAST_USED_RESOLUTION: Duration = Duration::from_secs(60);
const MAX_ATTEMPTS: usize = 16;

pub struct CredentialService {
    store: Arc<dyn Store>,
    ids: IdGenerator,
    /// How long older credentials keep working after a rotation.
    rotation_grace: Duration,
    /// Credentials whose `last_used_at` write is under way, so bursts write once.
    recording_use: Mutex<HashSet<String>>,
}

/// A credential just created, with the one copy of its secret.
#[derive(Debug)]
pub struct Rotated {
    pub credential: Credential,
    pub secret: Secret,
}

impl CredentialService {
    pub fn new(store: Arc<dyn Store>, rotation_grace: Duration) -> Arc<Self> {
        Arc::new(Self { store, ids: IdGenerator::new(), rotation_grace, recording_use: Mutex::default() })
    }

    async fn live_connector(&self, key: &ConnectorKey) -> Result<Connector, Error> {
        let connector = self.store.get_connector(key).await?.ok_or_else(|| Error::NotFound(format!("{key} not found")))?;
        if connector.is_deleted() {
            return Err(Error::FailedPrecondition(format!("{key} is deleted")));
        }
        Ok(connector)
    }

    /// Creates a credential and sets older usable ones to expire after the grace window
    /// (unless they expire sooner).
    pub async fn rotate(&self, key: &ConnectorKey) -> Result<Rotated, Error> {
        for _ in 0..MAX_ATTEMPTS {
            let connector = self.live_connector(key).await?;
            let now = Utc::now();
            let grace_end = now + self.rotation_grace;
            let usable: Vec<Credential> = self
                .store
                .list_credentials(key, None, ROTATION_SCAN)
                .await?
                .into_iter()
                .filter(|credential| credential.is_usable_at(now))
                .collect();
            if usable.len() >= MAX_USABLE_CREDENTIALS {
                return Err(Error::FailedPrecondition(format!(
                    "{key} has {} usable credentials, the maximum; revoke one or wait until older ones expire",
                    usable.len()
                )));
            }

            let secret = Secret::generate().map_err(|error| Error::Internal(format!("the OS random generator failed: {error}")))?;
            let id = self.ids.next_id();
            let credential = Credential {
                client_id: format!("{CLIENT_ID_PREFIX}{}", id.to_ascii_lowercase()),
                display_name: format!("credential created {}", now.format("%Y-%m-%d %H:%M:%S UTC")),
                id,
                app_id: key.app_id.clone(),
                connector_id: key.id.clone(),
                secret_hash: secret.hash(),
                created_at: now,
                updated_at: now,
                deleted_at: None,
                expires_at: None,
                last_used_at: None,
                revision: 1,
            };
            // The connector's revision advances, though clients see no change, so that of
            // two rotations that counted the same credentials only one commits and the
            // other counts again. Its etag stays.
            let mut counted = connector.clone();
            counted.revision += 1;
            let mut batch = Batch {
                connector: Some(Versioned::replacing(counted, connector.revision)),
                credentials: vec![Versioned::new(credential.clone())],
                ..Batch::default()
            };
            for older in usable {
                if older.expires_at.is_some_and(|expires_at| expires_at <= grace_end) {
                    continue;
                }
                let expected = older.revision;
                let mut expiring = older;
                expiring.expires_at = Some(grace_end);
                expiring.updated_at = now;
                expiring.revision += 1;
                batch.credentials.push(Versioned::replacing(expiring, expected));
            }

            match self.store.apply(&batch).await {
                Ok(()) => return Ok(Rotated { credential, secret }),
                Err(StoreError::Conflict(_)) => continue,
                Err(error) => return Err(error.into()),
            }
        }
        Err(Error::Aborted(format!("rotating credentials of {key} lost against concurrent writes; retry")))
    }

    pub async fn get(&self, key: &ConnectorKey, credential_id: &str) -> Result<Credential, Error> {
        self.store
            .get_credential(key, credential_id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("credential {credential_id} of {key} not found")))
    }

    /// Returns a page of credentials, newest first, and the id to continue before.
    pub async fn list(
        &self,
        key: &ConnectorKey,
        before_id: Option<&str>,
        page_size: usize,
    ) -> Result<(Vec<Credential>, Option<String>), Error> {
        if self.store.get_connector(key).await?.is_none() {
            return Err(Error::NotFound(format!("{key} not found")));
        }
        let mut credentials = self.store.list_credentials(key, before_id, page_size + 1).await?;
        let next = if credentials.len() > page_size {
            credentials.truncate(page_size);
            credentials.last().map(|last| last.id.clone())
        } else {
            None
        };
        Ok((credentials, next))
    }

    /// Revokes a credential; it stops working at once. Revoking twice is `NOT_FOUND`.
    pub async fn revoke(&self, key: &ConnectorKey, credential_id: &str) -> Result<Credential, Error> {
        for _ in 0..MAX_ATTEMPTS {
            let credential = self.get(key, credential_id).await?;
            if credential.deleted_at.is_some() {
                return Err(Error::NotFound(format!("credential {credential_id} of {key} not found: it was revoked")));
            }
            let revocation = revoked(credential, Utc::now());
            let revoked = revocation.record.clone();
            let batch = Batch { credentials: vec![revocation], ..Batch::default() };
            match self.store.apply(&batch).await {
                Ok(()) => return Ok(revoked),
                Err(StoreError::Conflict(_)) => continue,
                Err(error) => return Err(error.into()),
            }
        }
        Err(Error::Aborted(format!("revoking credential {credential_id} lost against concurrent writes; retry")))
    }

    /// Checks a client id and secret. Unknown ids, wrong secrets, revoked or expired
    /// credentials and credentials of deleted connectors all fail alike, so the error
    /// reveals nothing to an attacker.
    pub async fn authenticate(self: &Arc<Self>, client_id: &str, secret: &Secret) -> Result<Credential, Error> {
        let rejected = || Error::Unauthenticated("invalid client credentials".to_owned());
        let now = Utc::now();

        // A client that retries with a wrong secret, or guesses, fails many times a second.
        static LOG: LogThrottle = LogThrottle::new(LOG_INTERVAL);
        let failed = |reason: &str| {
            if let Some(failed) = LOG.admit() {
                tracing::info!(client_id, reason, failed, "authentication failed");
            }
            rejected()
        };

        let Some(credential) = self.store.find_credential(client_id).await? else {
            return Err(failed("unknown client id"));
        };
        if !credential.secret_hash.matches(secret) {
            return Err(failed("wrong secret"));
        }
        if !credential.is_usable_at(now) {
            return Err(failed(if credential.deleted_at.is_some() { "credential revoked" } else { "credential expired" }));
        }
        let key = ConnectorKey::new(&credential.app_id, &credential.connector_id);
        if self.store.get_connector(&key).await?.is_none_or(|connector| connector.is_deleted()) {
            return Err(failed("the connector is deleted"));
        }

        self.record_use(&credential, now);
        Ok(credential)
    }

    /// Writes `last_used_at` in the background when the stored value is older than a minute.
    fn record_use(self: &Arc<Self>, credential: &Credential, now: DateTime<Utc>) {
        let stale =
            credential.last_used_at.is_none_or(|last| now - last >= chrono::Duration::from_std(LAST_USED_RESOLUTION).unwrap_or_default());
        if !stale {
            return;
        }
        {
            let mut recording = self.recording_use.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            if !recording.insert(credential.id.clone()) {
                return;
            }
        }
        let service = Arc::clone(self);
        let mut used = credential.clone();
        tokio::spawn(async move {
            let expected = used.revision;
            used.last_used_at = Some(now);
            used.revision += 1;
            let batch = Batch { credentials: vec![Versioned::replacing(used.clone(), expected)], ..Batch::default() };
            match service.store.apply(&batch).await {
                Ok(()) | Err(StoreError::Conflict(_)) => {}
                Err(error) => tracing::warn!(credential_id = %used.id, %error, "recording credential use failed"),
            }
            service.recording_use.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).remove(&used.id);
        });
    }
}

/// Returns the write that revokes `credential` at `now`.
pub(super) fn revoked(mut credential: Credential, now: DateTime<Utc>) -> Versioned<Credential> {
    let expected = credential.revision;
    credential.deleted_at = Some(now);
    credential.updated_at = now;
    credential.revision += 1;
    Versioned::replacing(credential, expected)
}
