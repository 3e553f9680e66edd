//! The connector model and the rules that apply to it, independent of the wire format and of
//! the storage engine.

pub mod config_types;
pub mod connector;
pub mod connector_text;
pub mod credential;
pub mod credentials;
pub mod error;
pub mod ids;
pub mod lifecycle;
pub mod registry;
pub mod secrets;
pub mod sync_run;

pub use config_types::{ConfigTypeError, ConfigTypes};
pub use connector::{Config, Connector, ConnectorKey, ConnectorPatch, ConnectorStatus, NewConnector, OAuthGrant, SyncDisabled, SyncStatus};
pub use credential::{Credential, Secret, SecretHash};
pub use credentials::{CredentialService, Rotated};
pub use error::{Error, FieldViolation};
pub use lifecycle::{LifecycleOptions, SyncLifecycle, SyncOutcome};
pub use registry::{ConnectorPage, ConnectorRegistry, ListQuery};
pub use sync_run::{CronSchedule, Schedule, ScheduleError, SyncRun, SyncState, SyncTrigger};
