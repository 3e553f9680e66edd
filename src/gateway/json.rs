//! Prepares a parsed JSON request body for prost-reflect's canonical proto3 JSON decoder.
//!
//! prost-reflect accepts a `google.protobuf.FieldMask` only as one string of lowerCamel
//! paths, while clients of this API also send snake_case paths, a list of paths, or the
//! `{"paths": [...]}` object. The walk here rewrites every FieldMask it finds to the
//! canonical string, and it reports every field that the request's message types do not
//! define. Such a field is rejected, where grpc-gateway would ignore it. It is usually a
//! misspelled field, and the absence of the intended one has effects: a field mask clears
//! it, an empty `cron` removes a schedule, and a config must decode as its type.
//! Only an unknown field whose value is `null` is removed and ignored. In proto3 JSON, null
//! stands for a field that is not set, and client SDKs built for a newer version of the API
//! send the request fields it added as null.

use prost_reflect::{FieldDescriptor, Kind, MessageDescriptor};
use serde_json::{Map, Value};

const FIELD_MASK: &str = "google.protobuf.FieldMask";
const ANY: &str = "google.protobuf.Any";

/// The outcome of the walk.
#[derive(Debug, Default, PartialEq)]
pub struct Prepared {
    /// Dotted JSON paths of the unknown fields set to `null`, which were removed.
    pub ignored: Vec<String>,
    /// Unknown fields with a value and malformed field masks, in the order of the body. They
    /// stay in the JSON value, so nothing the client sent is dropped unseen.
    pub rejected: Vec<RejectedField>,
}

/// A field that its message type, or the type named by an `Any`'s `@type`, does not define,
/// or a field mask in none of the accepted forms.
#[derive(Debug, PartialEq)]
pub struct RejectedField {
    /// Dotted JSON path of the field, such as `config.port`.
    pub path: String,
    /// The rule that the field breaks, as the error's description.
    pub rule: String,
}

/// Rewrites FieldMask values of `value`, a JSON object for `descriptor`, into canonical form,
/// removes unknown fields set to `null` and reports the other fields that no message type
/// defines.
pub fn prepare_message(descriptor: &MessageDescriptor, value: &mut Value) -> Prepared {
    let mut prepared = Prepared::default();
    walk_message(descriptor, value, "", Scope::Request, &mut prepared);
    prepared
}

/// Position of a message in the request, which the description of an unknown field names.
#[derive(Clone, Copy, PartialEq)]
enum Scope {
    /// A message of the request itself.
    Request,
    /// The payload of an `Any`, whose type its `@type` names.
    Payload,
}

/// Converts a FieldMask in any accepted JSON form (a comma-separated string, a list of
/// strings, or `{"paths": [...]}`, with snake_case or lowerCamel paths) to the canonical
/// comma-separated lowerCamel string. Other values are left for the decoder to reject.
pub fn normalize_field_mask(value: &mut Value) {
    let paths = match &*value {
        Value::String(text) => Some(text.split(',').collect()),
        Value::Array(items) => string_items(items),
        Value::Object(object) if object.len() == 1 => match object.get("paths") {
            Some(Value::Array(items)) => string_items(items),
            _ => None,
        },
        _ => None,
    };
    if let Some(paths) = paths {
        let text = field_mask_text(paths);
        *value = Value::String(text);
    }
}

fn string_items(items: &[Value]) -> Option<Vec<&str>> {
    items.iter().map(Value::as_str).collect()
}

/// Joins FieldMask paths into the canonical string, converting each segment to lowerCamel.
pub fn field_mask_text<'a>(paths: impl IntoIterator<Item = &'a str>) -> String {
    paths
        .into_iter()
        .map(str::trim)
        .filter(|path| !path.is_empty())
        .map(|path| path.split('.').map(lower_camel_case).collect::<Vec<_>>().join("."))
        .collect::<Vec<_>>()
        .join(",")
}

/// Converts `sync_resource_type_ids` to `syncResourceTypeIds`; lowerCamel input is kept.
///
/// NOTE: prost-reflect turns the result back into snake_case by putting `_` before each
/// capital letter, so a proto field name with `_` before a digit (`field_1`) does not
/// survive the round trip. No field of connectord's API has such a name.
fn lower_camel_case(segment: &str) -> String {
    let mut camel = String::with_capacity(segment.len());
    let mut capitalize_next = false;
    for character in segment.chars() {
        if character == '_' {
            capitalize_next = true;
        } else if capitalize_next {
            camel.push(character.to_ascii_uppercase());
            capitalize_next = false;
        } else {
            camel.push(character);
        }
    }
    camel
}

/// Finds a field by its JSON name or its proto name; proto3 JSON parsers accept both.
pub fn find_field(descriptor: &MessageDescriptor, name: &str) -> Option<FieldDescriptor> {
    descriptor.get_field_by_json_name(name).or_else(|| descriptor.get_field_by_name(name))
}

fn walk_message(descriptor: &MessageDescriptor, value: &mut Value, path: &str, scope: Scope, prepared: &mut Prepared) {
    match descriptor.full_name() {
        FIELD_MASK => {
            normalize_field_mask(value);
            // An accepted object form became a string, so an object left here is malformed.
            if let Value::Object(object) = value {
                let rejected = if object.contains_key("paths") {
                    RejectedField {
                        path: format!("{path}.paths"),
                        rule: "must be a list of field paths, such as [\"displayName\"]".to_owned(),
                    }
                } else {
                    RejectedField {
                        path: path.to_owned(),
                        rule: "must be a comma-separated string of field paths, a list of them, or {\"paths\": [...]}".to_owned(),
                    }
                };
                prepared.rejected.push(rejected);
            }
            return;
        }
        ANY => return walk_any(descriptor, value, path, prepared),
        // The other well-known types have their own JSON forms, without message fields.
        name if name.starts_with("google.protobuf.") && name != "google.protobuf.Empty" => return,
        _ => {}
    }
    if let Value::Object(object) = value {
        walk_fields(descriptor, object, path, scope, prepared, &[]);
    }
}

/// Walks the payload of an Any whose `@type` names a type in the pool. An unknown type is
/// left for the decoder, which reports it.
fn walk_any(any: &MessageDescriptor, value: &mut Value, path: &str, prepared: &mut Prepared) {
    let Value::Object(object) = value else {
        return;
    };
    let Some(type_name) = object.get("@type").and_then(Value::as_str).and_then(|url| url.rsplit('/').next()) else {
        return;
    };
    let Some(payload_type) = any.parent_pool().get_message_by_name(type_name) else {
        return;
    };
    if payload_type.full_name().starts_with("google.protobuf.") && payload_type.full_name() != "google.protobuf.Empty" {
        // A well-known type's JSON form is under "value", and "@type" is the only other key.
        for key in object.keys().filter(|key| !matches!(key.as_str(), "@type" | "value")) {
            let field_path = if path.is_empty() { key.clone() } else { format!("{path}.{key}") };
            let rule = format!("is not allowed: an Any of {} takes only \"@type\" and \"value\"", payload_type.full_name());
            prepared.rejected.push(RejectedField { path: field_path, rule });
        }
        if let Some(payload) = object.get_mut("value") {
            walk_message(&payload_type, payload, path, Scope::Payload, prepared);
        }
        return;
    }
    walk_fields(&payload_type, object, path, Scope::Payload, prepared, &["@type"]);
}

fn walk_fields(
    descriptor: &MessageDescriptor,
    object: &mut Map<String, Value>,
    path: &str,
    scope: Scope,
    prepared: &mut Prepared,
    reserved_keys: &[&str],
) {
    let mut removed = Vec::new();
    for (key, value) in object.iter_mut() {
        // `[full.name]` keys set extension fields, which the decoder resolves itself.
        if reserved_keys.contains(&key.as_str()) || key.starts_with('[') {
            continue;
        }
        let field_path = if path.is_empty() { key.clone() } else { format!("{path}.{key}") };
        let Some(field) = find_field(descriptor, key) else {
            if value.is_null() {
                removed.push(key.clone());
                prepared.ignored.push(field_path);
                continue;
            }
            let rule = match scope {
                Scope::Request => format!("is not a field of {}", descriptor.full_name()),
                Scope::Payload => format!("is not a field of {}, the type named by @type", descriptor.full_name()),
            };
            prepared.rejected.push(RejectedField { path: field_path, rule });
            continue;
        };
        walk_field_value(&field, value, &field_path, scope, prepared);
    }
    for key in removed {
        object.remove(&key);
    }
}

fn walk_field_value(field: &FieldDescriptor, value: &mut Value, path: &str, scope: Scope, prepared: &mut Prepared) {
    if field.is_map() {
        let Kind::Message(entry) = field.kind() else {
            return;
        };
        let Kind::Message(value_type) = entry.map_entry_value_field().kind() else {
            return;
        };
        if let Value::Object(entries) = value {
            for (key, entry_value) in entries.iter_mut() {
                walk_message(&value_type, entry_value, &format!("{path}.{key}"), scope, prepared);
            }
        }
        return;
    }
    let Kind::Message(message_type) = field.kind() else {
        return;
    };
    match value {
        Value::Array(items) if field.is_list() => {
            for (index, item) in items.iter_mut().enumerate() {
                walk_message(&message_type, item, &format!("{path}[{index}]"), scope, prepared);
            }
        }
        _ => walk_message(&message_type, value, path, scope, prepared),
    }
}

#[cfg(test)]
mod tests {
    use prost_reflect::DescriptorPool;
    use serde_json::json;

    use super::*;
    use crate::pb;

    fn message(name: &str) -> MessageDescriptor {
        DescriptorPool::decode(pb::FILE_DESCRIPTOR_SET).unwrap().get_message_by_name(name).unwrap()
    }

    #[test]
    fn masks_in_every_form_become_lower_camel_strings() {
        let forms = [
            json!("display_name,user_ids"),
            json!("displayName, userIds"),
            json!(["display_name", "userIds"]),
            json!({"paths": ["display_name", "user_ids"]}),
        ];
        for mut form in forms {
            normalize_field_mask(&mut form);
            assert_eq!(form, json!("displayName,userIds"));
        }
        let mut nested = json!("sync_config.sync_resource_type_ids");
        normalize_field_mask(&mut nested);
        assert_eq!(nested, json!("syncConfig.syncResourceTypeIds"));
    }

    fn paths(prepared: &Prepared) -> Vec<&str> {
        prepared.rejected.iter().map(|field| field.path.as_str()).collect()
    }

    #[test]
    fn unknown_fields_are_reported_at_every_level() {
        let descriptor = message("connectord.v1.ConnectorServiceUpdateRequest");
        let mut body = json!({
            "connector": {"displayName": "x", "colour": "red", "syncConfig": {"extra": 1}},
            "update_mask": "display_name",
            "trace": true
        });
        let prepared = prepare_message(&descriptor, &mut body);
        assert_eq!(paths(&prepared), ["connector.colour", "connector.syncConfig.extra", "trace"]);
        assert_eq!(prepared.rejected[0].rule, "is not a field of connectord.v1.Connector");
        assert!(prepared.ignored.is_empty());
        assert_eq!(body["update_mask"], json!("displayName"));
        assert_eq!(body["connector"]["colour"], json!("red"));
    }

    #[test]
    fn unknown_payload_fields_name_the_type() {
        let descriptor = message("connectord.v1.ConnectorServiceCreateRequest");
        let mut body = json!({
            "config": {"@type": "type.googleapis.com/connectord.v1.SyncConfig", "syncResourceTypeIds": ["a"], "x": 1},
            "expandMask": {"paths": []}
        });
        let prepared = prepare_message(&descriptor, &mut body);
        let expected = RejectedField {
            path: "config.x".to_owned(),
            rule: "is not a field of connectord.v1.SyncConfig, the type named by @type".to_owned(),
        };
        assert_eq!(prepared.rejected, [expected]);
    }

    #[test]
    fn unknown_fields_set_to_null_are_removed() {
        let descriptor = message("connectord.v1.ConnectorServiceCreateRequest");
        let mut body = json!({"catalogId": "okta", "addedLater": null, "config": {"@type": "type.googleapis.com/connectord.v1.SyncConfig", "y": null}});
        let prepared = prepare_message(&descriptor, &mut body);
        assert_eq!(prepared.ignored, ["addedLater", "config.y"]);
        assert!(prepared.rejected.is_empty());
        assert_eq!(body, json!({"catalogId": "okta", "config": {"@type": "type.googleapis.com/connectord.v1.SyncConfig"}}));
    }

    #[test]
    fn struct_payloads_take_any_keys() {
        let descriptor = message("connectord.v1.ConnectorServiceCreateRequest");
        let mut body = json!({
            "config": {"@type": "type.googleapis.com/google.protobuf.Struct", "value": {"anything": {"x": 1}}}
        });
        assert_eq!(prepare_message(&descriptor, &mut body), Prepared::default());
    }

    #[test]
    fn struct_payloads_outside_value_are_rejected() {
        let descriptor = message("connectord.v1.ConnectorServiceCreateRequest");
        let mut body = json!({"config": {"@type": "type.googleapis.com/google.protobuf.Struct", "domain": "example.com"}});
        assert_eq!(paths(&prepare_message(&descriptor, &mut body)), ["config.domain"]);
    }

    #[test]
    fn malformed_mask_objects_name_their_paths() {
        let descriptor = message("connectord.v1.ConnectorServiceUpdateRequest");
        let mut body = json!({"connector": {"displayName": "S"}, "updateMask": {"paths": "displayName"}});
        assert_eq!(paths(&prepare_message(&descriptor, &mut body)), ["updateMask.paths"]);

        let mut body = json!({"connector": {"displayName": "S"}, "updateMask": {"path": ["displayName"]}});
        assert_eq!(paths(&prepare_message(&descriptor, &mut body)), ["updateMask"]);
    }
}
