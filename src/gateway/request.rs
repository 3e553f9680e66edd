//! Builds the protobuf request message of a REST call from its JSON body, query string and
//! path variables, following the `google.api.http` rules. Path variables win over the body.
//! The query string sets only fields that neither the path nor the body binds.

use base64::Engine;
use prost_reflect::{DeserializeOptions, DynamicMessage, FieldDescriptor, Kind, MessageDescriptor, Value};

use super::{
    http_rule::{Binding, BodySelector},
    json,
    path_template::Capture,
};
use crate::domain::connector_text::shorten;

/// The request message and the inputs that were ignored.
#[derive(Debug)]
pub struct DecodedRequest {
    pub message: DynamicMessage,
    /// Unknown body fields set to `null` (dotted JSON paths), unknown query parameters and
    /// query parameters naming a field that the path or body sets.
    pub ignored: Vec<String>,
}

/// Failure to turn a REST request into a protobuf message; every variant is a client error.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("the request body is not valid JSON: {0}")]
    MalformedJson(serde_json::Error),
    #[error("the request body is not a valid {message_type} in proto3 JSON: {reason}")]
    InvalidBody { message_type: String, reason: String },
    /// A path variable or query parameter whose value does not fit its field.
    #[error("{field}: {description}")]
    InvalidField { field: String, description: String },
}

/// Decodes the request message of `binding` from the parts of a REST request.
pub fn decode(binding: &Binding, captures: Vec<Capture>, query: Option<&str>, body: &[u8]) -> Result<DecodedRequest, RequestError> {
    let input = binding.rpc.input();
    let mut ignored = Vec::new();
    let mut message = match &binding.body {
        BodySelector::Whole => decode_body(&input, body, None, &mut ignored)?,
        BodySelector::Field(field) => decode_body(&input, body, Some(field), &mut ignored)?,
        BodySelector::None => DynamicMessage::new(input.clone()),
    };

    if let Some(query) = query {
        match binding.body {
            BodySelector::Whole => reject_query_fields(&input, &captures, query, &mut ignored)?,
            _ => apply_query(&mut message, binding, &captures, query, &mut ignored)?,
        }
    }
    for capture in captures {
        let fields = resolve(&input, capture.field_path.iter().map(String::as_str))
            .expect("path variables are checked against the request type when routes are built");
        set_value(&mut message, &fields, &capture.value)
            .map_err(|description| RequestError::InvalidField { field: capture.field_path.join("."), description })?;
    }
    Ok(DecodedRequest { message, ignored })
}

/// Decodes the body as the whole message, or as the value of `field` inside it. An empty
/// body is an empty message, so `POST` without a body and `DELETE` with or without one work.
/// A field that the message types do not define is an error that names it, unless it is
/// `null`.
fn decode_body(
    input: &MessageDescriptor,
    body: &[u8],
    field: Option<&FieldDescriptor>,
    ignored: &mut Vec<String>,
) -> Result<DynamicMessage, RequestError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(DynamicMessage::new(input.clone()));
    }
    let mut value: serde_json::Value = serde_json::from_slice(body).map_err(RequestError::MalformedJson)?;
    if let Some(field) = field {
        value = serde_json::Value::Object(serde_json::Map::from_iter([(field.json_name().to_owned(), value)]));
    }
    let prepared = json::prepare_message(input, &mut value);
    ignored.extend(prepared.ignored);
    if let Some(unknown) = prepared.rejected.into_iter().next() {
        return Err(RequestError::InvalidField { field: unknown.path, description: unknown.rule });
    }

    let options = DeserializeOptions::new().deny_unknown_fields(false);
    let mut track = serde_path_to_error::Track::new();
    let tracked = serde_path_to_error::Deserializer::new(value, &mut track);
    DynamicMessage::deserialize_with_options(input.clone(), tracked, &options).map_err(|error| {
        let reason = without_string_values(&error.to_string());
        // The path is "." when the body itself has the wrong shape.
        match track.path().to_string() {
            field if field == "." => RequestError::InvalidBody { message_type: input.full_name().to_owned(), reason },
            field => RequestError::InvalidField { field, description: format!("is not valid proto3 JSON for this field: {reason}") },
        }
    })
}

/// Maximum length of the decoder message that an error repeats, in characters.
const MAX_REASON_CHARS: usize = 300;

/// Removes the string values that serde's messages quote (`invalid type: string "…",
/// expected a map`) and shortens what remains. Such a value may be a secret, for example a
/// config sent as a JSON string, and the message reaches the client and the log.
fn without_string_values(reason: &str) -> String {
    const MARKER: &str = "string \"";
    let mut cleaned = String::with_capacity(reason.len().min(MAX_REASON_CHARS));
    let mut rest = reason;
    while let Some(start) = rest.find(MARKER) {
        cleaned.push_str(&rest[..start]);
        cleaned.push_str("string");
        // The value is written in Rust's debug form, so `\\` and `\"` are escapes.
        let mut escaped = false;
        let mut end = rest.len();
        for (offset, character) in rest[start + MARKER.len()..].char_indices() {
            match (escaped, character) {
                (false, '\\') => escaped = true,
                (false, '"') => {
                    end = start + MARKER.len() + offset + 1;
                    break;
                }
                _ => escaped = false,
            }
        }
        rest = &rest[end..];
    }
    cleaned.push_str(rest);
    match cleaned.char_indices().nth(MAX_REASON_CHARS) {
        Some((cut, _)) => format!("{}…", &cleaned[..cut]),
        None => cleaned,
    }
}

/// Sets the fields named by query parameters (`page_size=5` or `pageSize=5`, and dotted
/// paths into nested messages). Repeated fields take every occurrence of their parameter.
fn apply_query(
    message: &mut DynamicMessage,
    binding: &Binding,
    captures: &[Capture],
    query: &str,
    ignored: &mut Vec<String>,
) -> Result<(), RequestError> {
    let input = binding.rpc.input();
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        let Some(fields) = resolve(&input, key.split('.')) else {
            ignored.push(format!("query parameter {key}"));
            continue;
        };
        if is_bound_elsewhere(&fields, binding, captures) {
            ignored.push(format!("query parameter {key} (the path or body sets this field)"));
            continue;
        }
        set_value(message, &fields, &value).map_err(|description| RequestError::InvalidField {
            field: fields.iter().map(FieldDescriptor::name).collect::<Vec<_>>().join("."),
            description,
        })?;
    }
    Ok(())
}

/// Rejects query parameters that name a request field on a route whose body is the whole
/// message, where only the body sets fields. Ignoring them would apply the request without
/// the field, such as an update without the mask that was sent as `?updateMask=`. Other
/// parameters are ignored.
fn reject_query_fields(
    input: &MessageDescriptor,
    captures: &[Capture],
    query: &str,
    ignored: &mut Vec<String>,
) -> Result<(), RequestError> {
    for (key, _) in form_urlencoded::parse(query.as_bytes()) {
        let Some(fields) = resolve(input, key.split('.')) else {
            ignored.push(format!("query parameter {key}"));
            continue;
        };
        if !bound_by_path(&fields, captures) {
            return Err(RequestError::InvalidField {
                field: key.into_owned(),
                description: "is a query parameter, but this route reads fields only from the JSON body. Send it in the body".to_owned(),
            });
        }
    }
    Ok(())
}

/// Resolves a dotted path of proto or JSON field names. Returns `None` if a name is unknown,
/// or if it follows a field that is not a message.
fn resolve<'a>(input: &MessageDescriptor, names: impl Iterator<Item = &'a str>) -> Option<Vec<FieldDescriptor>> {
    let mut message = Some(input.clone());
    let mut fields = Vec::new();
    for name in names {
        let field = json::find_field(message.as_ref()?, name)?;
        message = match field.kind() {
            Kind::Message(child) => Some(child),
            _ => None,
        };
        fields.push(field);
    }
    (!fields.is_empty()).then_some(fields)
}

/// True when the query parameter's field, or a message around it, is bound by a path
/// variable or by the body.
fn is_bound_elsewhere(fields: &[FieldDescriptor], binding: &Binding, captures: &[Capture]) -> bool {
    if let BodySelector::Field(body_field) = &binding.body
        && fields[0] == *body_field
    {
        return true;
    }
    bound_by_path(fields, captures)
}

/// True when a path variable sets the query parameter's field or a message around it.
fn bound_by_path(fields: &[FieldDescriptor], captures: &[Capture]) -> bool {
    captures.iter().any(|capture| capture.field_path.iter().zip(fields).all(|(name, field)| name == field.name()))
}

/// Sets the field at the end of `fields`, creating the messages on the way. A repeated
/// field gets the value appended.
fn set_value(message: &mut DynamicMessage, fields: &[FieldDescriptor], text: &str) -> Result<(), String> {
    let (field, rest) = fields.split_first().expect("field paths are never empty");
    if !rest.is_empty() {
        if field.is_list() || field.is_map() {
            return Err(format!("{} is repeated, so fields inside it cannot be set one by one", field.name()));
        }
        let Value::Message(child) = message.get_field_mut(field) else {
            return Err(format!("{} is not a message", field.name()));
        };
        return set_value(child, rest, text);
    }

    if field.is_map() {
        return Err("is a map, which query parameters and path variables cannot set".to_owned());
    }
    let value = parse_value(field, text)?;
    if field.is_list() {
        if let Value::List(values) = message.get_field_mut(field) {
            values.push(value);
        }
    } else {
        message.set_field(field, value);
    }
    Ok(())
}

/// Parses the text of a path variable or query parameter as the value of `field`.
fn parse_value(field: &FieldDescriptor, text: &str) -> Result<Value, String> {
    let invalid = |kind: &str| format!("{} is not a valid {kind}", shorten(text));
    let value = match field.kind() {
        Kind::String => Value::String(text.to_owned()),
        Kind::Bool => match text {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            _ => return Err(format!("{} is not a boolean; use true or false", shorten(text))),
        },
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => Value::I32(text.parse().map_err(|_| invalid("int32"))?),
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => Value::I64(text.parse().map_err(|_| invalid("int64"))?),
        Kind::Uint32 | Kind::Fixed32 => Value::U32(text.parse().map_err(|_| invalid("uint32"))?),
        Kind::Uint64 | Kind::Fixed64 => Value::U64(text.parse().map_err(|_| invalid("uint64"))?),
        Kind::Float => Value::F32(text.parse().map_err(|_| invalid("float"))?),
        Kind::Double => Value::F64(text.parse().map_err(|_| invalid("double"))?),
        Kind::Bytes => Value::Bytes(decode_base64(text).ok_or_else(|| invalid("base64 value"))?.into()),
        Kind::Enum(enumeration) => {
            let number = match enumeration.get_value_by_name(text) {
                Some(value) => value.number(),
                None => text.parse().map_err(|_| {
                    let names: Vec<String> = enumeration.values().map(|value| value.name().to_owned()).collect();
                    format!("{} is not one of {}", shorten(text), names.join(", "))
                })?,
            };
            Value::EnumNumber(number)
        }
        Kind::Message(message_type) => Value::Message(parse_message(field, &message_type, text)?),
    };
    Ok(value)
}

/// Parses the well-known types that have a scalar JSON form: wrappers, Timestamp,
/// Duration and FieldMask. Other messages cannot be set from one string.
fn parse_message(field: &FieldDescriptor, message_type: &MessageDescriptor, text: &str) -> Result<DynamicMessage, String> {
    let name = message_type.full_name();
    let is_wrapper = name.starts_with("google.protobuf.") && name.ends_with("Value") && message_type.fields().len() == 1;
    if is_wrapper && let Some(inner) = message_type.get_field_by_name("value") {
        let mut wrapper = DynamicMessage::new(message_type.clone());
        wrapper.set_field(&inner, parse_value(&inner, text)?);
        return Ok(wrapper);
    }

    let mut json_value = serde_json::Value::String(text.to_owned());
    match name {
        "google.protobuf.FieldMask" => json::normalize_field_mask(&mut json_value),
        "google.protobuf.Timestamp" | "google.protobuf.Duration" => {}
        _ => {
            return Err(format!("is a message; set its fields one by one, such as {}.<field>", field.name()));
        }
    }
    DynamicMessage::deserialize(message_type.clone(), json_value)
        .map_err(|error| format!("{} is not a valid {name}: {error}", shorten(text)))
}

fn decode_base64(text: &str) -> Option<Vec<u8>> {
    use base64::engine::general_purpose::{STANDARD_PAD_INDIFFERENT, URL_SAFE_PAD_INDIFFERENT};
    STANDARD_PAD_INDIFFERENT.decode(text).or_else(|_| URL_SAFE_PAD_INDIFFERENT.decode(text)).ok()
}

#[cfg(test)]
mod tests {
    use prost_reflect::DescriptorPool;

    use super::*;
    use crate::{
        gateway::{
            http_rule::bindings,
            router::{RouteMatch, Router},
        },
        pb,
    };

    fn decode_route(method: http::Method, target: &str, body: &str) -> Result<DecodedRequest, RequestError> {
        let pool = DescriptorPool::decode(pb::FILE_DESCRIPTOR_SET).unwrap();
        let router = Router::new(bindings(&pool, &[pb::connector_service_server::SERVICE_NAME]).unwrap());
        let (path, query) = match target.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (target, None),
        };
        let RouteMatch::Found(binding, captures) = router.find(&method, path) else {
            panic!("no route for {target}");
        };
        decode(binding, captures, query, body.as_bytes())
    }

    fn transcoded<T: prost::Message + Default>(decoded: DecodedRequest) -> T {
        decoded.message.transcode_to().unwrap()
    }

    #[test]
    fn query_parameters_accept_both_cases() {
        for query in ["page_size=7&page_token=t&show_deleted=true", "pageSize=7&pageToken=t&showDeleted=true"] {
            let decoded = decode_route(http::Method::GET, &format!("/api/v1/apps/a1/connectors?{query}"), "").unwrap();
            let request: pb::ConnectorServiceListRequest = transcoded(decoded);
            assert_eq!(request.app_id, "a1");
            assert_eq!(request.page_size, 7);
            assert_eq!(request.page_token, "t");
            assert!(request.show_deleted);
        }
    }

    #[test]
    fn bad_query_values_name_the_field() {
        let error = decode_route(http::Method::GET, "/api/v1/apps/a1/connectors?pageSize=many", "").unwrap_err();
        let RequestError::InvalidField { field, description } = error else { panic!("{error:?}") };
        assert_eq!(field, "page_size");
        assert!(description.contains("\"many\""), "{description}");
    }

    #[test]
    fn unknown_query_parameters_are_ignored() {
        let decoded = decode_route(http::Method::GET, "/api/v1/apps/a1/connectors?colour=red&app_id=x", "").unwrap();
        assert_eq!(decoded.ignored.len(), 2, "{:?}", decoded.ignored);
        let request: pb::ConnectorServiceListRequest = transcoded(decoded);
        assert_eq!(request.app_id, "a1");
    }

    #[test]
    fn path_variables_override_the_body() {
        let body = r#"{"connector": {"appId": "other", "displayName": "n"}, "update_mask": "display_name"}"#;
        let decoded = decode_route(http::Method::POST, "/api/v1/apps/a1/connectors/c1", body).unwrap();
        let request: pb::ConnectorServiceUpdateRequest = transcoded(decoded);
        let connector = request.connector.unwrap();
        assert_eq!((connector.app_id.as_str(), connector.id.as_str()), ("a1", "c1"));
        assert_eq!(connector.display_name, "n");
        assert_eq!(request.update_mask.unwrap().paths, ["display_name"]);
    }

    #[test]
    fn empty_bodies_decode_as_empty_messages() {
        for body in ["", "  \n", "{}"] {
            let decoded = decode_route(http::Method::DELETE, "/api/v1/apps/a1/connectors/c1", body).unwrap();
            let request: pb::ConnectorServiceDeleteRequest = transcoded(decoded);
            assert_eq!((request.app_id.as_str(), request.id.as_str()), ("a1", "c1"));
        }
    }

    #[test]
    fn malformed_json_is_reported_with_its_position() {
        let error = decode_route(http::Method::POST, "/api/v1/apps/a1/connectors", "{\"displayName\": ").unwrap_err();
        assert!(matches!(error, RequestError::MalformedJson(_)), "{error:?}");
        assert!(error.to_string().contains("line 1"), "{error}");
    }

    #[test]
    fn wrongly_typed_json_names_the_field() {
        let error = decode_route(http::Method::POST, "/api/v1/apps/a1/connectors", r#"{"userIds": "u1"}"#).unwrap_err();
        let RequestError::InvalidField { field, description } = &error else {
            panic!("expected a field error: {error:?}");
        };
        assert_eq!(field, "userIds");
        assert!(description.contains("list"), "{description}");
    }

    #[test]
    fn body_of_wrong_shape_names_the_type() {
        let error = decode_route(http::Method::POST, "/api/v1/apps/a1/connectors", "[1]").unwrap_err();
        assert!(matches!(error, RequestError::InvalidBody { .. }), "{error:?}");
        assert!(error.to_string().contains("ConnectorServiceCreateDelegatedRequest"), "{error}");
    }

    #[test]
    fn decoder_messages_drop_string_values() {
        let reason = r#"invalid type: string "{\"api_key\":\"sk_live_9f8e7d\"}", expected a map"#;
        assert_eq!(without_string_values(reason), "invalid type: string, expected a map");
        assert_eq!(without_string_values("invalid type: integer `5`, expected a string"), "invalid type: integer `5`, expected a string");
        let long = "x".repeat(1_000);
        assert_eq!(without_string_values(&long).chars().count(), MAX_REASON_CHARS + 1);
    }

    #[test]
    fn string_config_value_not_echoed() {
        let body = r#"{"catalogId": "x", "config": {"@type": "type.googleapis.com/google.protobuf.Struct", "value": "{\"api_key\": \"sk_live_9f8e7d\"}"}}"#;
        let error = decode_route(http::Method::POST, "/api/v1/apps/a1/connectors/create", body).unwrap_err().to_string();
        assert!(error.starts_with("config"), "{error}");
        assert!(!error.contains("sk_live_9f8e7d"), "{error}");
    }

    #[test]
    fn body_route_rejects_query_fields() {
        let body = r#"{"connector": {"displayName": "Q"}}"#;
        let error = decode_route(http::Method::POST, "/api/v1/apps/a1/connectors/c1?updateMask=description", body).unwrap_err();
        assert!(matches!(&error, RequestError::InvalidField { field, .. } if field == "updateMask"), "{error}");

        let decoded = decode_route(http::Method::POST, "/api/v1/apps/a1/connectors/c1?cacheBuster=1", body).unwrap();
        assert_eq!(decoded.ignored, ["query parameter cacheBuster"]);
    }
}
