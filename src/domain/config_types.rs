//! Registry of the message types a connector config may have, and the check that a config
//! payload decodes cleanly as its type.

use std::collections::{BTreeSet, HashSet};

use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor, Value};

use super::{Config, FieldViolation};

/// Prefix of every type URL that the server stores and returns.
pub const TYPE_URL_PREFIX: &str = "type.googleapis.com/";

/// The free-form JSON config type, registered on every server.
pub const STRUCT_TYPE: &str = "google.protobuf.Struct";

#[derive(Debug, thiserror::Error)]
pub enum ConfigTypeError {
    #[error("descriptor set {source_name} is invalid: {reason}")]
    InvalidDescriptorSet { source_name: String, reason: String },
    #[error("message type {0} is missing from the built-in descriptor set")]
    MissingBuiltinType(String),
}

/// Message types accepted as `Connector.config`.
#[derive(Debug, Clone)]
pub struct ConfigTypes {
    pool: DescriptorPool,
    registered: BTreeSet<String>,
    /// Full names of fields marked `(connectord.v1.secret) = true`.
    secret_fields: HashSet<String>,
    /// Struct keys whose values are secrets, at any depth.
    secret_struct_keys: HashSet<String>,
}

impl ConfigTypes {
    /// Creates a registry from the server's own encoded descriptor set, which must contain
    /// `google/protobuf/struct.proto`. Only Struct is registered at first.
    pub fn new(builtin_descriptor_set: &[u8]) -> Result<Self, ConfigTypeError> {
        let pool = DescriptorPool::decode(builtin_descriptor_set)
            .map_err(|error| ConfigTypeError::InvalidDescriptorSet { source_name: "built-in".to_owned(), reason: error.to_string() })?;
        if pool.get_message_by_name(STRUCT_TYPE).is_none() {
            return Err(ConfigTypeError::MissingBuiltinType(STRUCT_TYPE.to_owned()));
        }
        let registered = BTreeSet::from([STRUCT_TYPE.to_owned()]);
        let secret_struct_keys = super::secrets::DEFAULT_SECRET_STRUCT_KEYS.iter().map(|key| (*key).to_owned()).collect();
        let mut types = Self { pool, registered, secret_fields: HashSet::new(), secret_struct_keys };
        types.index_secret_fields();
        Ok(types)
    }

    /// Descriptor pool that config types are resolved in: the built-in files plus every
    /// registered descriptor set.
    pub fn pool(&self) -> &DescriptorPool {
        &self.pool
    }

    /// Replaces the Struct keys whose values are treated as secrets.
    pub fn set_secret_struct_keys(&mut self, keys: impl IntoIterator<Item = String>) {
        self.secret_struct_keys = keys.into_iter().collect();
    }

    pub(super) fn is_secret_field(&self, full_name: &str) -> bool {
        self.secret_fields.contains(full_name)
    }

    pub(super) fn is_secret_struct_key(&self, key: &str) -> bool {
        self.secret_struct_keys.contains(key)
    }

    /// Returns whether `config` is a Struct without any secret key. Map keys are stored as
    /// their UTF-8 bytes, so a payload without the bytes of any secret key has none at any depth.
    pub(super) fn is_struct_without_secret_keys(&self, config: &Config) -> bool {
        let payload = config.value.as_slice();
        config.type_url.strip_prefix(TYPE_URL_PREFIX) == Some(STRUCT_TYPE)
            && config.secret_keys.is_empty()
            && !self
                .secret_struct_keys
                .iter()
                .any(|key| key.is_empty() || payload.windows(key.len()).any(|window| window == key.as_bytes()))
    }

    /// Collects the fields that carry the secret option, once, so masking does not decode
    /// field options per request.
    fn index_secret_fields(&mut self) {
        let Some(option) = self.pool.get_extension_by_name(super::secrets::SECRET_OPTION) else {
            return;
        };
        self.secret_fields = self
            .pool
            .all_messages()
            .flat_map(|message| message.fields().collect::<Vec<_>>())
            .filter(|field| {
                let options = field.options();
                options.has_extension(&option) && options.get_extension(&option).as_bool() == Some(true)
            })
            .map(|field| field.full_name().to_owned())
            .collect();
    }

    /// Registers every message defined in the files of an encoded `FileDescriptorSet` that
    /// the pool did not already contain, and returns their full names.
    pub fn register_descriptor_set(&mut self, source_name: &str, encoded: &[u8]) -> Result<Vec<String>, ConfigTypeError> {
        let known_files: BTreeSet<String> = self.pool.files().map(|file| file.name().to_owned()).collect();
        self.pool
            .decode_file_descriptor_set(encoded)
            .map_err(|error| ConfigTypeError::InvalidDescriptorSet { source_name: source_name.to_owned(), reason: error.to_string() })?;

        let mut added = Vec::new();
        for file in self.pool.files().filter(|file| !known_files.contains(file.name())) {
            for message in file.messages() {
                collect_message_names(&message, &mut added);
            }
        }
        self.registered.extend(added.iter().cloned());
        self.index_secret_fields();
        Ok(added)
    }

    pub fn registered_type_names(&self) -> impl Iterator<Item = &str> {
        self.registered.iter().map(String::as_str)
    }

    /// Checks a config against its registered type and returns it. The violation's field is relative to the config
    /// (`type_url` or `value`); the caller prefixes the request's path to the config.
    pub fn validate(&self, type_url: &str, value: &[u8], max_bytes: usize) -> Result<Config, FieldViolation> {
        if value.len() > max_bytes {
            return Err(FieldViolation::new("value", format!("config is {} bytes, more than the limit of {max_bytes} bytes", value.len())));
        }

        let descriptor = self.resolve(type_url)?;
        let message = DynamicMessage::decode(descriptor.clone(), value).map_err(|error| {
            // prost reports nesting past its limit of 100 messages only in the error text.
            if error.to_string().contains("recursion limit") {
                return too_deep("more than 100");
            }
            FieldViolation::new("value", format!("payload does not decode as {}: {error}", descriptor.full_name()))
        })?;
        let depth = message_depth(&message);
        if depth > MAX_CONFIG_DEPTH {
            return Err(too_deep(&depth.to_string()));
        }
        if let Some(path) = first_unknown_field(&message, descriptor.full_name()) {
            return Err(FieldViolation::new(
                "value",
                format!(
                    "payload has fields that {} does not define (first at {path}); \
                     is the type URL right?",
                    descriptor.full_name()
                ),
            ));
        }
        // Clients read configs as JSON through grpcurl and the REST gateway, so a payload
        // that protobuf accepts but JSON cannot express (a NaN number in a Struct, a
        // timestamp past the year 9999) would make the connector unreadable there. Within
        // the depth bound, a Struct's only such values are numbers that are not finite,
        // which a walk finds without writing the JSON.
        if descriptor.full_name() == STRUCT_TYPE {
            if has_non_finite_number(&message) {
                return Err(FieldViolation::new(
                    "value",
                    format!("payload of type {STRUCT_TYPE} has no JSON form: a number is NaN or infinite; numbers must be finite"),
                ));
            }
        } else if let Err(error) = serde_json::to_writer(std::io::sink(), &message) {
            return Err(FieldViolation::new(
                "value",
                format!(
                    "payload of type {} has no JSON form ({error}); numbers must be finite, \
                     and timestamps and durations within their JSON range",
                    descriptor.full_name()
                ),
            ));
        }

        Ok(Config { type_url: format!("{TYPE_URL_PREFIX}{}", descriptor.full_name()), value: value.to_vec(), secret_keys: Vec::new() })
    }

    /// Looks up the registered message named by a type URL.
    fn resolve(&self, type_url: &str) -> Result<MessageDescriptor, FieldViolation> {
        let shown = || crate::domain::connector_text::shorten(type_url);
        let malformed = || FieldViolation::new("type_url", format!("{} is malformed: expected {TYPE_URL_PREFIX}<message name>", shown()));
        let Some((prefix, name)) = type_url.rsplit_once('/') else {
            return Err(malformed());
        };
        if prefix.is_empty() || name.is_empty() {
            return Err(malformed());
        }
        if type_url.len() != TYPE_URL_PREFIX.len() + name.len() || !type_url.starts_with(TYPE_URL_PREFIX) {
            return Err(FieldViolation::new(
                "type_url",
                format!("{} has another prefix: config type URLs are {TYPE_URL_PREFIX}<message name>", shown()),
            ));
        }
        let registered = self.registered.contains(name);
        match self.pool.get_message_by_name(name) {
            Some(descriptor) if registered => Ok(descriptor),
            _ => Err(FieldViolation::new(
                "type_url",
                format!(
                    "type {} is not a registered config type; registered: {}",
                    crate::domain::connector_text::shorten(name),
                    self.registered.iter().cloned().collect::<Vec<_>>().join(", ")
                ),
            )),
        }
    }
}

fn collect_message_names(message: &MessageDescriptor, names: &mut Vec<String>) {
    if message.is_map_entry() {
        return;
    }
    names.push(message.full_name().to_owned());
    for nested in message.child_messages() {
        collect_message_names(&nested, names);
    }
}

/// Returns the path of the first unknown field in `message` or any message inside it.
fn first_unknown_field(message: &DynamicMessage, path: &str) -> Option<String> {
    if let Some(field) = message.unknown_fields().next() {
        return Some(format!("{path} field number {}", field.number()));
    }
    for (field, value) in message.fields() {
        let field_path = format!("{path}.{}", field.name());
        if let Some(found) = first_unknown_in_value(value, &field_path) {
            return Some(found);
        }
    }
    None
}

/// Deepest nesting of messages accepted in a config. Rendering a config as JSON decodes it
/// again with prost, whose limit is 100, and a `google.protobuf.Struct` nests three
/// messages (the Struct, a map entry and a Value) per level of JSON objects.
const MAX_CONFIG_DEPTH: usize = 96;

fn too_deep(depth: &str) -> FieldViolation {
    FieldViolation::new(
        "value",
        format!(
            "payload nests messages {depth} levels deep; the maximum is {MAX_CONFIG_DEPTH}, \
             which allows 32 levels of JSON objects in a google.protobuf.Struct"
        ),
    )
}

/// Returns whether a double anywhere in `message` is NaN or infinite.
fn has_non_finite_number(message: &DynamicMessage) -> bool {
    message.fields().any(|(_, value)| value_has_non_finite_number(value))
}

fn value_has_non_finite_number(value: &Value) -> bool {
    match value {
        Value::F64(number) => !number.is_finite(),
        Value::Message(message) => has_non_finite_number(message),
        Value::List(values) => values.iter().any(value_has_non_finite_number),
        Value::Map(entries) => entries.values().any(value_has_non_finite_number),
        _ => false,
    }
}

/// Returns how deep messages nest in `message`, counting `message` itself and each map
/// entry, as the protobuf wire format does.
fn message_depth(message: &DynamicMessage) -> usize {
    1 + message.fields().map(|(_, value)| value_depth(value)).max().unwrap_or(0)
}

fn value_depth(value: &Value) -> usize {
    match value {
        Value::Message(message) => message_depth(message),
        Value::List(values) => values.iter().map(value_depth).max().unwrap_or(0),
        Value::Map(entries) => 1 + entries.values().map(value_depth).max().unwrap_or(0),
        _ => 0,
    }
}

fn first_unknown_in_value(value: &Value, path: &str) -> Option<String> {
    match value {
        Value::Message(message) => first_unknown_field(message, path),
        Value::List(values) => values.iter().find_map(|value| first_unknown_in_value(value, path)),
        Value::Map(entries) => entries.values().find_map(|value| first_unknown_in_value(value, path)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;

    fn struct_with_number(number: f64) -> Vec<u8> {
        let value = prost_types::Value { kind: Some(prost_types::value::Kind::NumberValue(number)) };
        prost_types::Struct { fields: [("n".to_owned(), value)].into() }.encode_to_vec()
    }

    /// Encodes a Struct that nests `levels` levels of JSON objects: {"a": {"a": ... {}}}.
    fn nested_struct(levels: usize) -> Vec<u8> {
        let mut inner = prost_types::Struct::default();
        for _ in 1..levels {
            let value = prost_types::Value { kind: Some(prost_types::value::Kind::StructValue(inner)) };
            inner = prost_types::Struct { fields: [("a".to_owned(), value)].into() };
        }
        inner.encode_to_vec()
    }

    #[test]
    fn nesting_is_limited_to_32_json_levels() {
        let types = ConfigTypes::new(crate::pb::FILE_DESCRIPTOR_SET).unwrap();
        let struct_type = "type.googleapis.com/google.protobuf.Struct";
        let deepest = types.validate(struct_type, &nested_struct(32), 64 * 1024).expect("32 levels are accepted");
        let descriptor = types.pool.get_message_by_name(STRUCT_TYPE).unwrap();
        let message = DynamicMessage::decode(descriptor, deepest.value.as_slice()).unwrap();
        assert!(serde_json::to_string(&message).is_ok(), "an accepted config has no JSON form");
        for levels in [33, 40, 60] {
            let violation = types.validate(struct_type, &nested_struct(levels), 64 * 1024).expect_err("too deep a config was accepted");
            assert_eq!(violation.field, "value");
            assert!(violation.description.contains("the maximum is 96"), "{levels} levels: {}", violation.description);
        }
    }

    #[test]
    fn struct_with_finite_number_is_accepted() {
        let types = ConfigTypes::new(crate::pb::FILE_DESCRIPTOR_SET).unwrap();
        let config = types.validate("type.googleapis.com/google.protobuf.Struct", &struct_with_number(1.5), 1024);
        assert!(config.is_ok(), "{config:?}");
    }

    #[test]
    fn struct_without_json_form_is_rejected() {
        let types = ConfigTypes::new(crate::pb::FILE_DESCRIPTOR_SET).unwrap();
        for number in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            let violation = types
                .validate("type.googleapis.com/google.protobuf.Struct", &struct_with_number(number), 1024)
                .expect_err("non-finite number accepted");
            assert_eq!(violation.field, "value");
            assert!(violation.description.contains("no JSON form"), "{}", violation.description);
        }
    }
}
