//! Finds the binding of a REST request by HTTP method and path.

use http::Method;

use super::{http_rule::Binding, path_template::Capture};

/// Every binding of the served RPCs, most specific template first.
#[derive(Debug)]
pub struct Router {
    bindings: Vec<Binding>,
}

/// Result of a route lookup.
#[derive(Debug)]
pub enum RouteMatch<'a> {
    Found(&'a Binding, Vec<Capture>),
    /// The path matches, but only for other methods; those are listed.
    MethodNotAllowed(Vec<Method>),
    NotFound,
}

impl Router {
    /// Orders the bindings so that where two templates match one path, the one with a
    /// literal at the first differing segment wins, as in
    /// `/apps/{app_id}/connectors/create` over `/apps/{app_id}/connectors/{id}`. Ties keep
    /// declaration order.
    pub fn new(mut bindings: Vec<Binding>) -> Self {
        bindings.sort_by(|left, right| left.template.specificity_order(&right.template));
        Self { bindings }
    }

    pub fn find(&self, method: &Method, path: &str) -> RouteMatch<'_> {
        let mut other_methods = Vec::new();
        for binding in &self.bindings {
            let Some(captures) = binding.template.matches(path) else {
                continue;
            };
            if binding.method == method {
                return RouteMatch::Found(binding, captures);
            }
            if !other_methods.contains(&binding.method) {
                other_methods.push(binding.method.clone());
            }
        }
        if other_methods.is_empty() { RouteMatch::NotFound } else { RouteMatch::MethodNotAllowed(other_methods) }
    }

    pub fn bindings(&self) -> &[Binding] {
        &self.bindings
    }
}

#[cfg(test)]
mod tests {
    use prost_reflect::DescriptorPool;

    use super::*;
    use crate::{gateway::http_rule::bindings, pb};

    fn router() -> Router {
        let pool = DescriptorPool::decode(pb::FILE_DESCRIPTOR_SET).unwrap();
        Router::new(bindings(&pool, &[pb::connector_service_server::SERVICE_NAME]).unwrap())
    }

    fn rpc_of(router: &Router, method: Method, path: &str) -> String {
        match router.find(&method, path) {
            RouteMatch::Found(binding, _) => binding.rpc.name().to_owned(),
            other => format!("{other:?}"),
        }
    }

    #[test]
    fn literal_segments_win_over_variables() {
        let router = router();
        assert_eq!(rpc_of(&router, Method::POST, "/api/v1/apps/a/connectors/create"), "Create");
        assert_eq!(rpc_of(&router, Method::POST, "/api/v1/apps/a/connectors/c1"), "Update");
        assert_eq!(rpc_of(&router, Method::POST, "/api/v1/apps/a/connectors/c1/delegated"), "UpdateDelegated");
        assert_eq!(rpc_of(&router, Method::POST, "/api/v1/apps/connectors/credentials"), "RotateCredential");
        assert_eq!(rpc_of(&router, Method::POST, "/api/v1/apps/a/connectors/c1/credentials"), "RotateCredential");
        assert_eq!(rpc_of(&router, Method::POST, "/api/v1/apps/a/connectors/c1/credentials/k"), "RevokeCredential");
        assert_eq!(rpc_of(&router, Method::GET, "/api/v1/apps/a/connectors/c1/credentials/k"), "GetCredentials");
    }

    #[test]
    fn other_methods_are_reported() {
        let router = router();
        match router.find(&Method::PUT, "/api/v1/apps/a/connectors/c1") {
            RouteMatch::MethodNotAllowed(methods) => {
                assert!(methods.contains(&Method::GET));
                assert!(methods.contains(&Method::POST));
                assert!(methods.contains(&Method::DELETE));
            }
            other => panic!("expected MethodNotAllowed, got {other:?}"),
        }
        assert!(matches!(router.find(&Method::GET, "/api/v2/nothing"), RouteMatch::NotFound));
    }
}
