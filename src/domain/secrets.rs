//! Secret values inside configs: found through the `(connectord.v1.secret)` field option
//! and, in `google.protobuf.Struct` configs, by key name. Responses carry a fixed mask in
//! their place plus a salted fingerprint; an update that sends the mask back keeps the
//! stored value.

use std::{
    cell::RefCell,
    collections::{BTreeSet, HashMap},
};

use prost::Message;
use prost_reflect::{DynamicMessage, Kind, MapKey, ReflectMessage, Value};
use sha2::{Digest, Sha256};

use super::{Config, ConfigTypes, FieldViolation};

/// Placeholder that responses show in place of a secret value.
pub const SECRET_MASK: &str = "********";
/// Struct keys treated as secrets when the operator configures none.
pub const DEFAULT_SECRET_STRUCT_KEYS: &[&str] = &["password", "secret", "token", "api_key", "client_secret", "private_key"];
/// Full name of the field option that marks secret fields.
pub const SECRET_OPTION: &str = "connectord.v1.secret";

const STRUCT: &str = "google.protobuf.Struct";
const STRUCT_VALUE: &str = "google.protobuf.Value";

/// A secret value described without revealing it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretStatus {
    pub path: String,
    pub set: bool,
    pub fingerprint: String,
}

/// Rules that make a value secret during one walk: the field option and the server's Struct
/// keys, plus the Struct keys that a stored config recorded as secret when it was written.
struct Secrets<'a> {
    types: &'a ConfigTypes,
    recorded_keys: &'a [String],
    /// Names of the secret Struct keys that the walk met.
    met_keys: RefCell<BTreeSet<String>>,
}

impl<'a> Secrets<'a> {
    fn new(types: &'a ConfigTypes, recorded_keys: &'a [String]) -> Self {
        Self { types, recorded_keys, met_keys: RefCell::new(BTreeSet::new()) }
    }

    fn is_secret_field(&self, full_name: &str) -> bool {
        self.types.is_secret_field(full_name)
    }

    fn is_secret_struct_key(&self, key: &str) -> bool {
        let secret = self.types.is_secret_struct_key(key) || self.recorded_keys.iter().any(|recorded| recorded == key);
        if secret {
            self.met_keys.borrow_mut().insert(key.to_owned());
        }
        secret
    }
}

/// Calls `visit` with the path and value of every secret in `message`. A value is a
/// string, bytes, or a whole `google.protobuf.Value` for a secret Struct key.
fn walk(types: &Secrets<'_>, message: &mut DynamicMessage, path: &str, visit: &mut dyn FnMut(String, &mut Value)) {
    let descriptor = message.descriptor();
    if descriptor.full_name() == STRUCT {
        walk_struct(types, message, path, visit);
        return;
    }
    let fields: Vec<_> = descriptor.fields().filter(|field| message.has_field(field)).collect();
    for field in fields {
        let field_path = join(path, field.name());
        let secret = types.is_secret_field(field.full_name()) && matches!(field.kind(), Kind::String | Kind::Bytes) && !field.is_map();
        match message.get_field_mut(&field) {
            Value::List(items) if secret => {
                for (index, item) in items.iter_mut().enumerate() {
                    visit(format!("{field_path}[{index}]"), item);
                }
            }
            value if secret => visit(field_path, value),
            Value::Message(inner) => walk(types, inner, &field_path, visit),
            Value::List(items) => {
                for (index, item) in items.iter_mut().enumerate() {
                    if let Value::Message(inner) = item {
                        walk(types, inner, &format!("{field_path}[{index}]"), visit);
                    }
                }
            }
            Value::Map(entries) => {
                for (key, value) in entries.iter_mut() {
                    if let Value::Message(inner) = value {
                        walk(types, inner, &format!("{field_path}[{}]", map_key(key)), visit);
                    }
                }
            }
            _ => {}
        }
    }
}

/// Walks a Struct: keys named secret are visited whole; other values are searched for
/// nested Structs and lists.
fn walk_struct(types: &Secrets<'_>, message: &mut DynamicMessage, path: &str, visit: &mut dyn FnMut(String, &mut Value)) {
    let Some(fields) = message.descriptor().get_field_by_name("fields") else { return };
    let Value::Map(entries) = message.get_field_mut(&fields) else { return };
    for (key, value) in entries.iter_mut() {
        let MapKey::String(name) = key else { continue };
        let key_path = join(path, name);
        if types.is_secret_struct_key(name) {
            visit(key_path, value);
        } else if let Value::Message(inner) = value {
            walk_struct_value(types, inner, &key_path, visit);
        }
    }
}

fn walk_struct_value(types: &Secrets<'_>, value: &mut DynamicMessage, path: &str, visit: &mut dyn FnMut(String, &mut Value)) {
    let descriptor = value.descriptor();
    if let Some(field) = descriptor.get_field_by_name("struct_value")
        && value.has_field(&field)
        && let Value::Message(inner) = value.get_field_mut(&field)
    {
        walk_struct(types, inner, path, visit);
    }
    if let Some(field) = descriptor.get_field_by_name("list_value")
        && value.has_field(&field)
        && let Value::Message(list) = value.get_field_mut(&field)
        && let Some(values) = list.descriptor().get_field_by_name("values")
        && let Value::List(items) = list.get_field_mut(&values)
    {
        for (index, item) in items.iter_mut().enumerate() {
            if let Value::Message(inner) = item {
                walk_struct_value(types, inner, &format!("{path}[{index}]"), visit);
            }
        }
    }
}

fn join(path: &str, name: &str) -> String {
    if path.is_empty() { name.to_owned() } else { format!("{path}.{name}") }
}

fn map_key(key: &MapKey) -> String {
    match key {
        MapKey::String(text) => format!("{text:?}"),
        MapKey::Bool(value) => value.to_string(),
        MapKey::I32(value) => value.to_string(),
        MapKey::I64(value) => value.to_string(),
        MapKey::U32(value) => value.to_string(),
        MapKey::U64(value) => value.to_string(),
    }
}

/// Returns the bytes that identify a secret value, or `None` when it is empty.
fn secret_bytes(value: &Value) -> Option<Vec<u8>> {
    match value {
        Value::String(text) if !text.is_empty() => Some(text.as_bytes().to_vec()),
        Value::Bytes(bytes) if !bytes.is_empty() => Some(bytes.to_vec()),
        Value::Message(message) if message.descriptor().full_name() == STRUCT_VALUE => {
            let encoded = message.encode_to_vec();
            (!encoded.is_empty()).then_some(encoded)
        }
        _ => None,
    }
}

fn is_mask(value: &Value) -> bool {
    match value {
        Value::String(text) => text == SECRET_MASK,
        Value::Bytes(bytes) => bytes.as_ref() == SECRET_MASK.as_bytes(),
        Value::Message(message) if message.descriptor().full_name() == STRUCT_VALUE => {
            message.descriptor().get_field_by_name("string_value").is_some_and(|field| {
                message.has_field(&field) && matches!(&*message.get_field(&field), Value::String(text) if text == SECRET_MASK)
            })
        }
        _ => false,
    }
}

fn mask_of(value: &Value) -> Value {
    match value {
        Value::Bytes(_) => Value::Bytes(SECRET_MASK.as_bytes().to_vec().into()),
        Value::Message(message) => {
            let mut masked = DynamicMessage::new(message.descriptor());
            if let Some(field) = masked.descriptor().get_field_by_name("string_value") {
                masked.set_field(&field, Value::String(SECRET_MASK.to_owned()));
            }
            Value::Message(masked)
        }
        _ => Value::String(SECRET_MASK.to_owned()),
    }
}

fn fingerprint(salt: &[u8], path: &str, value: &[u8]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(salt);
    hasher.update(path.as_bytes());
    hasher.update([0]);
    hasher.update(value);
    hasher.finalize()[..16].iter().map(|byte| format!("{byte:02x}")).collect()
}

impl ConfigTypes {
    fn decode_config(&self, config: &Config) -> Option<DynamicMessage> {
        let name = config.type_url.rsplit_once('/')?.1;
        let descriptor = self.pool().get_message_by_name(name)?;
        DynamicMessage::decode(descriptor, config.value.as_slice()).ok()
    }

    /// Returns the config with every set secret replaced by [`SECRET_MASK`], and one status
    /// per secret. `salt` makes fingerprints differ between connectors. Returns `None` when
    /// the config's type is not registered or its payload does not decode, because its
    /// secret fields cannot be found then.
    pub fn mask_secrets(&self, config: &Config, salt: &[u8]) -> Option<(Config, Vec<SecretStatus>)> {
        // Reads skip decoding a Struct config without a secret key, which a page of 100 would
        // otherwise do 100 times. Stored Structs were checked when they were written.
        if self.is_struct_without_secret_keys(config) {
            return Some((config.clone(), Vec::new()));
        }
        let mut message = self.decode_config(config)?;
        let mut statuses = Vec::new();
        walk(&Secrets::new(self, &config.secret_keys), &mut message, "", &mut |path, value| {
            let bytes = secret_bytes(value);
            statuses.push(SecretStatus {
                fingerprint: bytes.as_deref().map(|bytes| fingerprint(salt, &path, bytes)).unwrap_or_default(),
                set: bytes.is_some(),
                path,
            });
            if bytes.is_some() {
                *value = mask_of(value);
            }
        });
        if statuses.is_empty() {
            return Some((config.clone(), statuses));
        }
        statuses.sort_by(|left, right| left.path.cmp(&right.path));
        Some((
            Config { type_url: config.type_url.clone(), value: message.encode_to_vec(), secret_keys: config.secret_keys.clone() },
            statuses,
        ))
    }

    /// Replaces every mask in `incoming` with the value stored at the same path, and
    /// records which Struct keys of the result are secret. A mask where nothing is stored
    /// is rejected, because the client never read a secret there.
    ///
    /// Keys that the stored config recorded stay secret in the result, so a server whose
    /// list of secret keys no longer names them still masks them.
    pub fn restore_secrets(&self, incoming: &Config, stored: Option<&Config>) -> Result<Config, FieldViolation> {
        let stored = stored.filter(|stored| stored.type_url == incoming.type_url);
        let recorded_keys = stored.map_or(&[][..], |stored| stored.secret_keys.as_slice());
        let unrecorded = || Config { secret_keys: Vec::new(), ..incoming.clone() };
        // Without a secret key, a Struct has no place where a mask counts.
        if recorded_keys.is_empty() && incoming.secret_keys.is_empty() && self.is_struct_without_secret_keys(incoming) {
            return Ok(incoming.clone());
        }
        let Some(mut message) = self.decode_config(incoming) else {
            return Ok(unrecorded());
        };
        let mut stored_values: HashMap<String, Value> = HashMap::new();
        if let Some(mut stored_message) = stored.and_then(|stored| self.decode_config(stored)) {
            walk(&Secrets::new(self, recorded_keys), &mut stored_message, "", &mut |path, value| {
                stored_values.insert(path, value.clone());
            });
        }

        let secrets = Secrets::new(self, recorded_keys);
        let mut restored = false;
        let mut missing: Option<String> = None;
        walk(&secrets, &mut message, "", &mut |path, value| {
            if !is_mask(value) {
                return;
            }
            match stored_values.get(&path) {
                Some(stored) => {
                    *value = stored.clone();
                    restored = true;
                }
                None => {
                    missing.get_or_insert(path);
                }
            }
        });
        if let Some(path) = missing {
            return Err(FieldViolation::new(
                "value",
                format!("secret {path} holds the mask {SECRET_MASK:?} but no secret is stored there; send the real value"),
            ));
        }
        let secret_keys = secrets.met_keys.into_inner().into_iter().collect();
        if !restored {
            return Ok(Config { secret_keys, ..incoming.clone() });
        }
        Ok(Config { type_url: incoming.type_url.clone(), value: message.encode_to_vec(), secret_keys })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn types() -> ConfigTypes {
        ConfigTypes::new(crate::pb::FILE_DESCRIPTOR_SET).unwrap()
    }

    fn struct_config(types: &ConfigTypes, json: &str) -> Config {
        let descriptor = types.pool().get_message_by_name(STRUCT).unwrap();
        let mut deserializer = serde_json::Deserializer::from_str(json);
        let message = DynamicMessage::deserialize(descriptor, &mut deserializer).unwrap();
        Config { type_url: format!("type.googleapis.com/{STRUCT}"), value: message.encode_to_vec(), secret_keys: Vec::new() }
    }

    fn to_json(types: &ConfigTypes, config: &Config) -> serde_json::Value {
        let message = types.decode_config(config).unwrap();
        serde_json::to_value(&message).unwrap()
    }

    #[test]
    fn struct_secret_keys_are_masked_at_any_depth() {
        let types = types();
        let config = struct_config(&types, r#"{"domain":"x","password":"hunter2","nested":{"token":"t0k"}}"#);
        let (masked, statuses) = types.mask_secrets(&config, b"salt").unwrap();
        let json = to_json(&types, &masked);
        assert_eq!(json["password"], SECRET_MASK);
        assert_eq!(json["nested"]["token"], SECRET_MASK);
        assert_eq!(json["domain"], "x");
        let paths: Vec<&str> = statuses.iter().map(|status| status.path.as_str()).collect();
        assert_eq!(paths, ["nested.token", "password"]);
        assert!(statuses.iter().all(|status| status.set && status.fingerprint.len() == 32));
    }

    #[test]
    fn written_config_records_its_secret_keys() {
        let types = types();
        let incoming = struct_config(&types, r#"{"domain":"x","password":"hunter2","nested":{"token":"t0k"}}"#);
        let written = types.restore_secrets(&incoming, None).unwrap();
        assert_eq!(written.secret_keys, ["password", "token"]);
        assert_eq!(written.value, incoming.value);

        let plain = types.restore_secrets(&struct_config(&types, r#"{"domain":"x"}"#), None).unwrap();
        assert!(plain.secret_keys.is_empty());
    }

    #[test]
    fn recorded_keys_outlive_key_list() {
        let before = types();
        let written = before.restore_secrets(&struct_config(&before, r#"{"domain":"x","password":"hunter2"}"#), None).unwrap();

        // The server restarts with a list that no longer names "password".
        let mut after = types();
        after.set_secret_struct_keys(["domain".to_owned()]);
        let (masked, statuses) = after.mask_secrets(&written, b"salt").unwrap();
        let json = to_json(&after, &masked);
        assert_eq!(json["password"], SECRET_MASK);
        assert_eq!(json["domain"], SECRET_MASK);
        assert_eq!(statuses.len(), 2);

        // An update that sends a new password keeps it secret, and the mask of the
        // unchanged domain restores the stored value.
        let update = struct_config(&after, &format!(r#"{{"domain":"{SECRET_MASK}","password":"new"}}"#));
        let updated = after.restore_secrets(&update, Some(&written)).unwrap();
        assert_eq!(updated.secret_keys, ["domain", "password"]);
        let json = to_json(&after, &updated);
        assert_eq!(json["domain"], "x");
        assert_eq!(json["password"], "new");
    }

    #[test]
    fn struct_without_secret_keys_is_returned_as_stored() {
        let types = types();
        // "tokens" and "secretary" contain secret key names, so they take the full walk,
        // which leaves them unmasked.
        for json in [r#"{"domain":"x","nested":{"port":443}}"#, r#"{"tokens":"a","list":[{"secretary":"b"}]}"#] {
            let config = struct_config(&types, json);
            let (masked, statuses) = types.mask_secrets(&config, b"salt").unwrap();
            assert_eq!(masked, config, "{json}");
            assert!(statuses.is_empty(), "{json}: {statuses:?}");
        }
        let deep = struct_config(&types, r#"{"a":{"b":[{"c":{"api_key":"k"}}]}}"#);
        let (masked, statuses) = types.mask_secrets(&deep, b"salt").unwrap();
        assert_eq!(to_json(&types, &masked)["a"]["b"][0]["c"]["api_key"], SECRET_MASK);
        assert_eq!(statuses.len(), 1);
    }

    #[test]
    fn mask_sent_back_keeps_stored_secret() {
        let types = types();
        let stored = struct_config(&types, r#"{"password":"hunter2","token":"old"}"#);
        let incoming = struct_config(&types, r#"{"password":"********","token":"new"}"#);
        let restored = types.restore_secrets(&incoming, Some(&stored)).unwrap();
        let json = to_json(&types, &restored);
        assert_eq!(json["password"], "hunter2");
        assert_eq!(json["token"], "new");
    }

    #[test]
    fn mask_without_stored_secret_is_rejected() {
        let types = types();
        let incoming = struct_config(&types, r#"{"password":"********"}"#);
        let violation = types.restore_secrets(&incoming, None).unwrap_err();
        assert!(violation.description.contains("password"), "{}", violation.description);
    }

    #[test]
    fn fingerprint_follows_value_and_salt() {
        let types = types();
        let first = struct_config(&types, r#"{"password":"one"}"#);
        let second = struct_config(&types, r#"{"password":"two"}"#);
        let fingerprint = |config: &Config, salt: &[u8]| types.mask_secrets(config, salt).unwrap().1[0].fingerprint.clone();
        assert_eq!(fingerprint(&first, b"a"), fingerprint(&first, b"a"));
        assert_ne!(fingerprint(&first, b"a"), fingerprint(&second, b"a"));
        assert_ne!(fingerprint(&first, b"a"), fingerprint(&first, b"b"));
    }
}

#[cfg(test)]
mod option_tests {
    use super::*;

    /// Compiles a config message with one secret field against the project's protos.
    fn operator_types() -> ConfigTypes {
        let directory = tempfile::tempdir().unwrap();
        std::fs::write(
            directory.path().join("vault.proto"),
            r#"syntax = "proto3";
package acme.v1;
import "connectord/v1/options.proto";
message VaultConfig {
  string address = 1;
  string token = 2 [(connectord.v1.secret) = true];
  repeated string keys = 3 [(connectord.v1.secret) = true];
}"#,
        )
        .unwrap();
        let proto_root = concat!(env!("CARGO_MANIFEST_DIR"), "/proto");
        let mut compiler = protox::Compiler::new([directory.path().to_str().unwrap(), proto_root]).unwrap();
        compiler.include_imports(true).open_file("vault.proto").unwrap();
        let mut types = ConfigTypes::new(crate::pb::FILE_DESCRIPTOR_SET).unwrap();
        types.register_descriptor_set("vault", &compiler.encode_file_descriptor_set()).unwrap();
        types
    }

    #[test]
    fn fields_with_the_secret_option_are_masked() {
        let types = operator_types();
        let descriptor = types.pool().get_message_by_name("acme.v1.VaultConfig").unwrap();
        let json = r#"{"address":"https://vault","token":"s3cr3t","keys":["k1","k2"]}"#;
        let message = DynamicMessage::deserialize(descriptor, &mut serde_json::Deserializer::from_str(json)).unwrap();
        let config =
            Config { type_url: "type.googleapis.com/acme.v1.VaultConfig".into(), value: message.encode_to_vec(), secret_keys: Vec::new() };

        let (masked, statuses) = types.mask_secrets(&config, b"salt").unwrap();

        let shown = serde_json::to_value(types.decode_config(&masked).unwrap()).unwrap();
        assert_eq!(shown["token"], SECRET_MASK);
        assert_eq!(shown["keys"][1], SECRET_MASK);
        assert_eq!(shown["address"], "https://vault");
        let paths: Vec<&str> = statuses.iter().map(|status| status.path.as_str()).collect();
        assert_eq!(paths, ["keys[0]", "keys[1]", "token"]);
    }
}
