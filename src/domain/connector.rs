//! The connector resource and the changes a client may make to it.

use chrono::{DateTime, Utc};

/// Address of a connector: every connector belongs to exactly one app.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ConnectorKey {
    pub app_id: String,
    pub id: String,
}

impl ConnectorKey {
    pub fn new(app_id: impl Into<String>, id: impl Into<String>) -> Self {
        Self { app_id: app_id.into(), id: id.into() }
    }
}

impl std::fmt::Display for ConnectorKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "connector {} in app {}", self.id, self.app_id)
    }
}

/// A typed configuration that has been decoded against its registered type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// `type.googleapis.com/<full message name>`.
    pub type_url: String,
    /// The message, protobuf-encoded.
    pub value: Vec<u8>,
    /// Struct keys in `value` that were secret when it was written, sorted. They stay
    /// masked after the server's list of secret keys drops them.
    pub secret_keys: Vec<String>,
}

/// Sync lifecycle state as reported to clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SyncStatus {
    #[default]
    Unspecified,
    Running,
    Done,
    Error,
    Disabled,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConnectorStatus {
    pub status: SyncStatus,
    pub last_error: String,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    pub updated_at: Option<DateTime<Utc>>,
}

/// The user who granted OAuth access to the connector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthGrant {
    pub auth_email: String,
    pub authorized_at: Option<DateTime<Utc>>,
}

/// Why and since when syncing is switched off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncDisabled {
    pub at: DateTime<Utc>,
    pub category: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connector {
    pub id: String,
    pub app_id: String,
    pub catalog_id: String,
    pub display_name: String,
    pub description: String,
    pub user_ids: Vec<String>,
    /// `None` for a delegated connector whose owners have not configured it yet.
    pub config: Option<Config>,
    pub status: ConnectorStatus,
    pub oauth_authorized_as: Option<OAuthGrant>,
    pub download_url: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub deleted_at: Option<DateTime<Utc>>,
    /// Resource types to sync; `None` when the client never set a sync config.
    pub sync_resource_type_ids: Option<Vec<String>>,
    pub profile_allow_list: Vec<String>,
    pub profile_ignore_list: Vec<String>,
    pub disable_check_bad_sync: bool,
    pub can_resume_sync: bool,
    pub sync_disabled: Option<SyncDisabled>,
    pub schedule: Option<super::Schedule>,
    /// Random bytes that make the fingerprints of this connector's config secrets unique to
    /// it; never returned.
    pub secret_salt: Vec<u8>,
    /// Number of writes so far, starting at 1. Conditional writes in the store compare it.
    pub revision: u64,
    /// Revision of the last write that changed what clients read; the etag is derived from
    /// it. The scheduler's bookkeeping (the next and last run times) advances only `revision`.
    pub etag_revision: u64,
}

impl Connector {
    pub fn key(&self) -> ConnectorKey {
        ConnectorKey::new(&self.app_id, &self.id)
    }

    pub fn is_deleted(&self) -> bool {
        self.deleted_at.is_some()
    }

    pub fn is_paused(&self) -> bool {
        self.can_resume_sync
    }

    /// Opaque version tag that changes on every write that clients can see.
    pub fn etag(&self) -> String {
        etag_for_revision(self.etag_revision)
    }

    /// Returns a copy for the next write that clients can see, at `now`.
    pub fn next_revision(&self, now: DateTime<Utc>) -> Connector {
        let mut next = self.clone();
        next.revision += 1;
        next.etag_revision = next.revision;
        next.updated_at = now;
        next
    }
}

/// Formats a revision as an etag. Etags are quoted like HTTP entity tags.
pub fn etag_for_revision(revision: u64) -> String {
    format!("\"{revision}\"")
}

/// A validated create request.
#[derive(Debug, Clone)]
pub struct NewConnector {
    pub app_id: String,
    pub catalog_id: String,
    pub display_name: String,
    pub description: String,
    pub user_ids: Vec<String>,
    pub config: Option<Config>,
    /// Idempotency key, unique per app.
    pub request_id: Option<String>,
}

impl NewConnector {
    /// Names of the fields the request sets, for audit logs.
    pub fn set_fields(&self) -> Vec<&'static str> {
        let mut fields = vec!["app_id", "catalog_id"];
        if !self.display_name.is_empty() {
            fields.push("display_name");
        }
        if !self.description.is_empty() {
            fields.push("description");
        }
        if !self.user_ids.is_empty() {
            fields.push("user_ids");
        }
        if self.config.is_some() {
            fields.push("config");
        }
        fields
    }
}

/// The client-writable fields that an update replaces; `None` leaves a field unchanged.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConnectorPatch {
    pub display_name: Option<String>,
    pub description: Option<String>,
    pub user_ids: Option<Vec<String>>,
    /// `Some(None)` removes the config.
    pub config: Option<Option<Config>>,
    /// `Some(None)` removes the sync config.
    pub sync_resource_type_ids: Option<Option<Vec<String>>>,
    pub profile_allow_list: Option<Vec<String>>,
    pub profile_ignore_list: Option<Vec<String>>,
    pub disable_check_bad_sync: Option<bool>,
}

impl ConnectorPatch {
    pub fn is_empty(&self) -> bool {
        *self == ConnectorPatch::default()
    }

    /// Names of the fields the patch replaces, for audit logs.
    pub fn changed_fields(&self) -> Vec<&'static str> {
        [
            ("display_name", self.display_name.is_some()),
            ("description", self.description.is_some()),
            ("user_ids", self.user_ids.is_some()),
            ("config", self.config.is_some()),
            ("sync_config", self.sync_resource_type_ids.is_some()),
            ("profile_allow_list", self.profile_allow_list.is_some()),
            ("profile_ignore_list", self.profile_ignore_list.is_some()),
            ("disable_check_bad_sync", self.disable_check_bad_sync.is_some()),
        ]
        .into_iter()
        .filter_map(|(name, set)| set.then_some(name))
        .collect()
    }

    /// Writes every field of the patch into `connector`.
    pub fn apply_to(&self, connector: &mut Connector) {
        if let Some(value) = &self.display_name {
            connector.display_name = value.clone();
        }
        if let Some(value) = &self.description {
            connector.description = value.clone();
        }
        if let Some(value) = &self.user_ids {
            connector.user_ids = value.clone();
        }
        if let Some(value) = &self.config {
            connector.config = value.clone();
        }
        if let Some(value) = &self.sync_resource_type_ids {
            connector.sync_resource_type_ids = value.clone();
        }
        if let Some(value) = &self.profile_allow_list {
            connector.profile_allow_list = value.clone();
        }
        if let Some(value) = &self.profile_ignore_list {
            connector.profile_ignore_list = value.clone();
        }
        if let Some(value) = self.disable_check_bad_sync {
            connector.disable_check_bad_sync = value;
        }
    }
}
