//! Reads the `google.api.http` options of the served RPCs from the descriptor pool and turns
//! each rule, additional bindings included, into a [`Binding`].

use http::Method;
use prost_reflect::{DescriptorPool, DynamicMessage, FieldDescriptor, Kind, MessageDescriptor, MethodDescriptor, Value};

use super::path_template::{PathTemplate, TemplateError};

const HTTP_RULE_EXTENSION: &str = "google.api.http";

/// Source of the request message, besides path variables and the query string.
#[derive(Debug, Clone)]
pub enum BodySelector {
    /// No body; fields not bound by the path come from the query string.
    None,
    /// `body: "*"`: the body is the whole request message, and the query string is ignored.
    Whole,
    /// `body: "field"`: the body is the value of one top-level field.
    Field(FieldDescriptor),
}

/// One HTTP route of an RPC.
#[derive(Debug, Clone)]
pub struct Binding {
    pub method: Method,
    pub template: PathTemplate,
    pub body: BodySelector,
    /// The response field sent as the body instead of the whole response message.
    pub response_body: Option<FieldDescriptor>,
    pub rpc: MethodDescriptor,
}

impl Binding {
    /// Returns the gRPC path of the RPC, such as `/connectord.v1.ConnectorService/Get`.
    pub fn grpc_path(&self) -> String {
        format!("/{}/{}", self.rpc.parent_service().full_name(), self.rpc.name())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BindingError {
    #[error("service {0} is not in the descriptor pool")]
    UnknownService(String),
    #[error("HTTP rule of {rpc}: {source}")]
    Template { rpc: String, source: TemplateError },
    #[error("HTTP rule of {rpc}: {reason}")]
    Invalid { rpc: String, reason: String },
}

/// Collects the bindings of every unary RPC of the named services. RPCs without a
/// `google.api.http` option get no binding; streaming RPCs are skipped with a warning.
pub fn bindings(pool: &DescriptorPool, service_names: &[&str]) -> Result<Vec<Binding>, BindingError> {
    let Some(extension) = pool.get_extension_by_name(HTTP_RULE_EXTENSION) else {
        tracing::warn!("the descriptor pool lacks google.api.http; no REST routes are served");
        return Ok(Vec::new());
    };

    let mut bindings = Vec::new();
    for service_name in service_names {
        let service = pool.get_service_by_name(service_name).ok_or_else(|| BindingError::UnknownService((*service_name).to_owned()))?;
        for rpc in service.methods() {
            let options = rpc.options();
            if !options.has_extension(&extension) {
                continue;
            }
            if rpc.is_client_streaming() || rpc.is_server_streaming() {
                tracing::warn!(rpc = rpc.full_name(), "streaming RPCs have no REST route");
                continue;
            }
            if let Value::Message(rule) = options.get_extension(&extension).as_ref() {
                push_rule(&rpc, rule, true, &mut bindings)?;
            }
        }
    }
    Ok(bindings)
}

/// Adds the binding of one rule and, at the top level, of its additional bindings.
fn push_rule(rpc: &MethodDescriptor, rule: &DynamicMessage, top_level: bool, bindings: &mut Vec<Binding>) -> Result<(), BindingError> {
    let invalid = |reason: String| BindingError::Invalid { rpc: rpc.full_name().to_owned(), reason };
    let (method, path) = pattern(rule).ok_or_else(|| invalid("it sets no HTTP method and path".to_owned()))?;
    let template = PathTemplate::parse(&path).map_err(|source| BindingError::Template { rpc: rpc.full_name().to_owned(), source })?;

    let input = rpc.input();
    for field_path in template.variable_paths() {
        check_variable(&input, field_path).map_err(&invalid)?;
    }
    let body = match string_field(rule, "body").as_str() {
        "" => BodySelector::None,
        "*" => BodySelector::Whole,
        name => BodySelector::Field(
            input.get_field_by_name(name).ok_or_else(|| invalid(format!("body field {name:?} is not a field of {}", input.full_name())))?,
        ),
    };
    let response_body = match string_field(rule, "response_body").as_str() {
        "" => None,
        name => Some(
            rpc.output()
                .get_field_by_name(name)
                .ok_or_else(|| invalid(format!("response_body {name:?} is not a field of {}", rpc.output().full_name())))?,
        ),
    };
    bindings.push(Binding { method, template, body, response_body, rpc: rpc.clone() });

    let additional = match rule.get_field_by_name("additional_bindings").as_deref() {
        Some(Value::List(additional)) => additional.clone(),
        _ => Vec::new(),
    };
    if !top_level && !additional.is_empty() {
        return Err(invalid("additional_bindings must not be nested".to_owned()));
    }
    for binding in &additional {
        if let Value::Message(binding) = binding {
            push_rule(rpc, binding, false, bindings)?;
        }
    }
    Ok(())
}

/// Returns the HTTP method and path template of a rule's `pattern` oneof.
fn pattern(rule: &DynamicMessage) -> Option<(Method, String)> {
    let simple = [("get", Method::GET), ("put", Method::PUT), ("post", Method::POST), ("delete", Method::DELETE), ("patch", Method::PATCH)];
    for (field, method) in simple {
        let path = string_field(rule, field);
        if !path.is_empty() {
            return Some((method, path));
        }
    }
    let custom = rule.get_field_by_name("custom")?;
    let Value::Message(custom) = custom.as_ref() else {
        return None;
    };
    let method = Method::from_bytes(string_field(custom, "kind").as_bytes()).ok()?;
    let path = string_field(custom, "path");
    (!path.is_empty()).then_some((method, path))
}

fn string_field(message: &DynamicMessage, name: &str) -> String {
    message.get_field_by_name(name).and_then(|value| value.as_str().map(str::to_owned)).unwrap_or_default()
}

/// Checks that a path variable names a chain of singular message fields that ends in a
/// singular scalar or enum field.
fn check_variable(input: &MessageDescriptor, field_path: &[String]) -> Result<(), String> {
    let mut message = input.clone();
    for (index, name) in field_path.iter().enumerate() {
        let field = message
            .get_field_by_name(name)
            .ok_or_else(|| format!("path variable {} names no field of {}", field_path.join("."), input.full_name()))?;
        if field.is_list() || field.is_map() {
            return Err(format!("path variable {} names a repeated field", field_path.join(".")));
        }
        let last = index + 1 == field_path.len();
        match (field.kind(), last) {
            (Kind::Message(child), false) => message = child,
            (Kind::Message(_), true) => {
                return Err(format!("path variable {} names a message field", field_path.join(".")));
            }
            (_, false) => {
                return Err(format!("path variable {} goes through a scalar field", field_path.join(".")));
            }
            (_, true) => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pb;

    fn connector_bindings() -> Vec<Binding> {
        let pool = DescriptorPool::decode(pb::FILE_DESCRIPTOR_SET).unwrap();
        bindings(&pool, &[pb::connector_service_server::SERVICE_NAME]).unwrap()
    }

    #[test]
    fn every_annotated_rpc_gets_a_binding() {
        let bindings = connector_bindings();
        let rotate: Vec<&str> =
            bindings.iter().filter(|binding| binding.rpc.name() == "RotateCredential").map(|binding| binding.template.as_str()).collect();
        assert_eq!(rotate, ["/api/v1/apps/connectors/credentials", "/api/v1/apps/{app_id}/connectors/{connector_id}/credentials"]);
        assert_eq!(bindings.len(), 21, "20 RPCs plus one additional binding");
    }

    #[test]
    fn methods_and_bodies_follow_the_rules() {
        let bindings = connector_bindings();
        let find = |name: &str| bindings.iter().find(|binding| binding.rpc.name() == name).unwrap();
        assert_eq!(find("Get").method, Method::GET);
        assert!(matches!(find("Get").body, BodySelector::None));
        assert_eq!(find("Delete").method, Method::DELETE);
        assert!(matches!(find("Delete").body, BodySelector::Whole));
        assert_eq!(find("Update").grpc_path(), "/connectord.v1.ConnectorService/Update");
    }
}
