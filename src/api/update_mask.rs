//! Turns an update request (a connector plus a field mask) into a validated
//! [`ConnectorPatch`], following AIP-134.

use prost_types::FieldMask;

use super::{config::ConfigCheck, validate::Violations};
use crate::{
    domain::{ConnectorPatch, Error, connector_text::shorten},
    pb,
};

/// Update RPC that a mask belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateScope {
    /// Update: every client-writable field.
    Full,
    /// UpdateDelegated: only `display_name`, `description` and `user_ids`.
    Delegated,
}

/// Client-writable connector fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Writable {
    DisplayName,
    Description,
    UserIds,
    Config,
    SyncConfig,
    ProfileAllowList,
    ProfileIgnoreList,
    DisableCheckBadSync,
}

const ALL_WRITABLE: [Writable; 8] = [
    Writable::DisplayName,
    Writable::Description,
    Writable::UserIds,
    Writable::Config,
    Writable::SyncConfig,
    Writable::ProfileAllowList,
    Writable::ProfileIgnoreList,
    Writable::DisableCheckBadSync,
];

const DELEGATED_WRITABLE: [Writable; 3] = [Writable::DisplayName, Writable::Description, Writable::UserIds];

/// Kind of field that a mask path names.
enum PathKind {
    Writable(Writable),
    Immutable,
    ServerWritten,
    /// A field that only the named RPC changes.
    SetByRpc(&'static str),
    Unknown,
}

fn classify(path: &str) -> PathKind {
    let snake = to_snake_case(path);
    let top = snake.split('.').next().unwrap_or_default();
    match snake.as_str() {
        "display_name" => return PathKind::Writable(Writable::DisplayName),
        "description" => return PathKind::Writable(Writable::Description),
        "user_ids" => return PathKind::Writable(Writable::UserIds),
        "config" => return PathKind::Writable(Writable::Config),
        "sync_config" | "sync_config.sync_resource_type_ids" => {
            return PathKind::Writable(Writable::SyncConfig);
        }
        "profile_allow_list" => return PathKind::Writable(Writable::ProfileAllowList),
        "profile_ignore_list" => return PathKind::Writable(Writable::ProfileIgnoreList),
        "disable_check_bad_sync" => return PathKind::Writable(Writable::DisableCheckBadSync),
        "id" | "app_id" | "catalog_id" => return PathKind::Immutable,
        _ => {}
    }
    match top {
        "status"
        | "oauth_authorized_as"
        | "download_url"
        | "created_at"
        | "updated_at"
        | "deleted_at"
        | "can_resume_sync"
        | "sync_disabled_at"
        | "sync_disabled_category"
        | "sync_disabled_reason"
        | "config_secrets"
        | "etag" => PathKind::ServerWritten,
        "schedule" => PathKind::SetByRpc("UpdateConnectorSchedule"),
        _ => PathKind::Unknown,
    }
}

/// Converts a lowerCamel path such as `userIds` or `syncConfig.syncResourceTypeIds` to
/// snake_case; snake_case input is returned unchanged.
fn to_snake_case(path: &str) -> String {
    let mut snake = String::with_capacity(path.len() + 4);
    for c in path.chars() {
        if c.is_ascii_uppercase() {
            snake.push('_');
            snake.push(c.to_ascii_lowercase());
        } else {
            snake.push(c);
        }
    }
    snake
}

/// Builds the patch for `connector` under `mask`:
/// - no mask or no paths: every writable field set in the request (non-default value);
/// - `*` alone: every writable field, cleared where the request leaves it unset;
/// - otherwise: the named fields, cleared where unset.
///
/// Unknown, immutable and server-written paths are rejected by name, as are fields outside
/// the scope of UpdateDelegated.
pub fn build_patch(
    connector: &pb::Connector,
    mask: Option<&FieldMask>,
    scope: UpdateScope,
    config_check: &ConfigCheck<'_>,
) -> Result<ConnectorPatch, Error> {
    let allowed: &[Writable] = match scope {
        UpdateScope::Full => &ALL_WRITABLE,
        UpdateScope::Delegated => &DELEGATED_WRITABLE,
    };
    let paths = mask.map(|mask| mask.paths.as_slice()).unwrap_or_default();
    let mut violations = Violations::new();

    let selected: Vec<Writable> = if paths.is_empty() {
        let set = set_fields(connector);
        for field in set.iter().filter(|field| !allowed.contains(field)) {
            violations.add(
                format!("connector.{}", field_name(*field)),
                format!("is set, but UpdateDelegated can change only {}", allowed_names(allowed)),
            );
        }
        set
    } else if paths.iter().any(|path| path == "*") {
        if paths.len() > 1 {
            violations.add("update_mask", "\"*\" must be the only path when present");
        }
        allowed.to_vec()
    } else {
        select_paths(paths, allowed, &mut violations)
    };
    violations.into_result()?;

    if selected.is_empty() {
        return Err(Error::invalid("update_mask", "nothing to update: name fields in update_mask or set them in the connector"));
    }
    patch_from(connector, &selected, config_check)
}

fn select_paths(paths: &[String], allowed: &[Writable], violations: &mut Violations) -> Vec<Writable> {
    let mut selected = Vec::new();
    for (index, path) in paths.iter().enumerate() {
        let field = format!("update_mask.paths[{index}]");
        match classify(path) {
            PathKind::Writable(writable) if allowed.contains(&writable) => {
                if !selected.contains(&writable) {
                    selected.push(writable);
                }
            }
            PathKind::Writable(_) => violations
                .add(field, format!("{} cannot be changed by UpdateDelegated; allowed: {}", shorten(path), allowed_names(allowed))),
            PathKind::Immutable => {
                violations.add(field, format!("{} is immutable after create", shorten(path)));
            }
            PathKind::ServerWritten => {
                violations.add(field, format!("{} is written by the server only", shorten(path)));
            }
            PathKind::SetByRpc(rpc) => {
                violations.add(field, format!("{} can be changed only with {rpc}", shorten(path)));
            }
            PathKind::Unknown => {
                violations.add(field, format!("{} is not a field of Connector; writable fields: {}", shorten(path), allowed_names(allowed)))
            }
        }
    }
    selected
}

/// Writable fields that hold a non-default value in the request.
fn set_fields(connector: &pb::Connector) -> Vec<Writable> {
    ALL_WRITABLE
        .into_iter()
        .filter(|field| match field {
            Writable::DisplayName => !connector.display_name.is_empty(),
            Writable::Description => !connector.description.is_empty(),
            Writable::UserIds => !connector.user_ids.is_empty(),
            Writable::Config => connector.config.is_some(),
            Writable::SyncConfig => connector.sync_config.is_some(),
            Writable::ProfileAllowList => !connector.profile_allow_list.is_empty(),
            Writable::ProfileIgnoreList => !connector.profile_ignore_list.is_empty(),
            Writable::DisableCheckBadSync => connector.disable_check_bad_sync,
        })
        .collect()
}

fn patch_from(connector: &pb::Connector, selected: &[Writable], config_check: &ConfigCheck<'_>) -> Result<ConnectorPatch, Error> {
    let mut violations = Violations::new();
    let mut patch = ConnectorPatch::default();
    for field in selected {
        match field {
            Writable::DisplayName => {
                violations.text("connector.display_name", &connector.display_name, super::validate::MAX_DISPLAY_NAME_CHARS);
                patch.display_name = Some(connector.display_name.clone());
            }
            Writable::Description => {
                violations.text("connector.description", &connector.description, super::validate::MAX_DESCRIPTION_CHARS);
                patch.description = Some(connector.description.clone());
            }
            Writable::UserIds => {
                patch.user_ids = Some(violations.user_ids("connector.user_ids", &connector.user_ids));
            }
            Writable::Config => {
                let config = config_check.optional("connector.config", connector.config.as_ref(), &mut violations);
                patch.config = Some(config);
            }
            Writable::SyncConfig => {
                let ids = connector.sync_config.as_ref().map(|config| config.sync_resource_type_ids.clone());
                if let Some(ids) = &ids {
                    violations.string_list("connector.sync_config.sync_resource_type_ids", ids);
                }
                patch.sync_resource_type_ids = Some(ids);
            }
            Writable::ProfileAllowList => {
                violations.string_list("connector.profile_allow_list", &connector.profile_allow_list);
                patch.profile_allow_list = Some(connector.profile_allow_list.clone());
            }
            Writable::ProfileIgnoreList => {
                violations.string_list("connector.profile_ignore_list", &connector.profile_ignore_list);
                patch.profile_ignore_list = Some(connector.profile_ignore_list.clone());
            }
            Writable::DisableCheckBadSync => {
                patch.disable_check_bad_sync = Some(connector.disable_check_bad_sync);
            }
        }
    }
    violations.into_result()?;
    Ok(patch)
}

fn field_name(field: Writable) -> &'static str {
    match field {
        Writable::DisplayName => "display_name",
        Writable::Description => "description",
        Writable::UserIds => "user_ids",
        Writable::Config => "config",
        Writable::SyncConfig => "sync_config",
        Writable::ProfileAllowList => "profile_allow_list",
        Writable::ProfileIgnoreList => "profile_ignore_list",
        Writable::DisableCheckBadSync => "disable_check_bad_sync",
    }
}

fn allowed_names(allowed: &[Writable]) -> String {
    allowed.iter().map(|field| field_name(*field)).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn camel_paths_become_snake_case() {
        assert_eq!(to_snake_case("displayName"), "display_name");
        assert_eq!(to_snake_case("syncConfig.syncResourceTypeIds"), "sync_config.sync_resource_type_ids");
        assert_eq!(to_snake_case("user_ids"), "user_ids");
    }

    #[test]
    fn paths_are_classified() {
        assert!(matches!(classify("userIds"), PathKind::Writable(Writable::UserIds)));
        assert!(matches!(classify("catalogId"), PathKind::Immutable));
        assert!(matches!(classify("status.lastError"), PathKind::ServerWritten));
        assert!(matches!(classify("etag"), PathKind::ServerWritten));
        assert!(matches!(classify("nonsense"), PathKind::Unknown));
        assert!(matches!(classify("display_name.x"), PathKind::Unknown));
    }
}
