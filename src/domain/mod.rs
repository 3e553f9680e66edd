//! The connector model and the rules that apply to it, independent of the wire format and of
//! the storage engine.

pub mod config_types;
pub mod connector;
pub mod connector_text;
pub mod error;
pub mod ids;
pub mod registry;

pub use config_types::{ConfigTypeError, ConfigTypes};
pub use connector::{
    Config, Connector, ConnectorKey, ConnectorPatch, ConnectorStatus, NewConnector, OAuthGrant,
    SyncDisabled, SyncStatus,
};
pub use error::{Error, FieldViolation};
pub use registry::{ConnectorPage, ConnectorRegistry, ListQuery};
