//! The one table that maps every RPC to the callers allowed to make it.

use std::{fmt, str::FromStr};

/// Role of an API token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything.
    Admin,
    /// Everything except credential operations.
    Editor,
    /// Reads of connectors, syncs and credential metadata.
    Viewer,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Editor => "editor",
            Role::Viewer => "viewer",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value {
            "admin" => Ok(Role::Admin),
            "editor" => Ok(Role::Editor),
            "viewer" => Ok(Role::Viewer),
            other => Err(format!("unknown role {other:?}; expected admin, editor or viewer")),
        }
    }
}

/// Rule that says which callers may make a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone, without credentials: health checks.
    Open,
    /// Anyone, unless the server requires a token for reflection.
    Reflection,
    /// Only a connector credential, checked by the worker service itself, for its own
    /// connector.
    ConnectorCredential,
    /// An API token with one of these roles.
    Roles(&'static [Role]),
}

const ALL: &[Role] = &[Role::Admin, Role::Editor, Role::Viewer];
const WRITERS: &[Role] = &[Role::Admin, Role::Editor];
const ADMINS: &[Role] = &[Role::Admin];

/// Every RPC of the connector services and the callers allowed to make it.
const RPC_ACCESS: &[(&str, Access)] = &[
    ("/connectord.v1.ConnectorService/Create", Access::Roles(WRITERS)),
    ("/connectord.v1.ConnectorService/CreateDelegated", Access::Roles(WRITERS)),
    ("/connectord.v1.ConnectorService/Get", Access::Roles(ALL)),
    ("/connectord.v1.ConnectorService/List", Access::Roles(ALL)),
    ("/connectord.v1.ConnectorService/Update", Access::Roles(WRITERS)),
    ("/connectord.v1.ConnectorService/UpdateDelegated", Access::Roles(WRITERS)),
    ("/connectord.v1.ConnectorService/Delete", Access::Roles(WRITERS)),
    ("/connectord.v1.ConnectorService/GetCredentials", Access::Roles(ALL)),
    ("/connectord.v1.ConnectorService/ListCredentials", Access::Roles(ALL)),
    ("/connectord.v1.ConnectorService/RotateCredential", Access::Roles(ADMINS)),
    ("/connectord.v1.ConnectorService/RevokeCredential", Access::Roles(ADMINS)),
    ("/connectord.v1.ConnectorService/ForceSync", Access::Roles(WRITERS)),
    ("/connectord.v1.ConnectorService/PauseSync", Access::Roles(WRITERS)),
    ("/connectord.v1.ConnectorService/ResumeSync", Access::Roles(WRITERS)),
    ("/connectord.v1.ConnectorService/UpdateConnectorSchedule", Access::Roles(WRITERS)),
    ("/connectord.v1.ConnectorService/ConfirmSyncValid", Access::Roles(WRITERS)),
    ("/connectord.v1.ConnectorService/GetConnectorSyncDownloadURL", Access::Roles(WRITERS)),
    ("/connectord.v1.ConnectorService/GetSync", Access::Roles(ALL)),
    ("/connectord.v1.ConnectorService/ListSyncs", Access::Roles(ALL)),
    ("/connectord.v1.ConnectorService/CancelSync", Access::Roles(WRITERS)),
    ("/connectord.v1.ConnectorSyncService/ClaimSync", Access::ConnectorCredential),
    ("/connectord.v1.ConnectorSyncService/Heartbeat", Access::ConnectorCredential),
    ("/connectord.v1.ConnectorSyncService/CompleteSync", Access::ConnectorCredential),
];

/// Returns who may call the gRPC method at `path` (`/package.Service/Method`). Health is
/// open; reflection follows the server's setting; anything else, including methods this
/// table does not know, needs an admin token.
pub fn access_for(path: &str) -> Access {
    if path.starts_with("/grpc.health.v1.Health/") {
        return Access::Open;
    }
    if path.starts_with("/grpc.reflection.v1.ServerReflection/") || path.starts_with("/grpc.reflection.v1alpha.ServerReflection/") {
        return Access::Reflection;
    }
    RPC_ACCESS.iter().find(|(method, _)| *method == path).map(|(_, access)| *access).unwrap_or(Access::Roles(ADMINS))
}

#[cfg(test)]
mod tests {
    use prost_reflect::DescriptorPool;

    use super::*;

    #[test]
    fn table_covers_every_rpc_of_our_services() {
        let pool = DescriptorPool::decode(crate::pb::FILE_DESCRIPTOR_SET).unwrap();
        for service in pool.services().filter(|service| service.package_name() == "connectord.v1") {
            for method in service.methods() {
                let path = format!("/{}/{}", service.full_name(), method.name());
                assert!(RPC_ACCESS.iter().any(|(known, _)| *known == path), "{path} is missing from the access table");
            }
        }
    }

    #[test]
    fn viewers_only_read() {
        for (path, access) in RPC_ACCESS {
            let Access::Roles(roles) = access else { continue };
            let read = ["/Get", "/List", "/GetSync", "/ListSyncs", "/GetCredentials", "/ListCredentials"]
                .iter()
                .any(|suffix| path.ends_with(suffix));
            assert_eq!(roles.contains(&Role::Viewer), read, "{path}");
        }
    }

    #[test]
    fn editors_cannot_touch_credentials_secrets() {
        assert_eq!(access_for("/connectord.v1.ConnectorService/RotateCredential"), Access::Roles(ADMINS));
        assert_eq!(access_for("/connectord.v1.ConnectorService/RevokeCredential"), Access::Roles(ADMINS));
        assert_eq!(access_for("/grpc.health.v1.Health/Check"), Access::Open);
        assert_eq!(access_for("/unknown.Service/Method"), Access::Roles(ADMINS));
    }
}
