//! The tower layer that authenticates API tokens and checks roles before any service code
//! runs. REST calls reach it as the same gRPC calls, so one check covers both.

use crate::log_throttle::{LOG_INTERVAL, LogThrottle};
use std::{
    sync::Arc,
    task::{Context, Poll},
};

use http::{Request, Response};
use tonic::Status;
use tower::{Layer, Service};

use super::{Access, Role, Tokens, access_for};

/// The authenticated caller, stored in the request extensions for handlers and audit logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub name: String,
    pub role: Role,
}

impl Caller {
    /// Returns the caller recorded when the server runs without authentication.
    pub fn anonymous() -> Self {
        Self { name: "anonymous".to_owned(), role: Role::Admin }
    }
}

/// Policy that the layer enforces.
#[derive(Debug, Clone)]
pub struct AuthPolicy {
    /// `None` turns authentication off: every call runs as an anonymous admin.
    pub tokens: Option<Arc<Tokens>>,
    pub reflection_requires_auth: bool,
}

impl AuthPolicy {
    pub fn disabled() -> Self {
        Self { tokens: None, reflection_requires_auth: false }
    }

    /// Decides on a call to the gRPC method at `path` with the given `authorization` value.
    /// `Ok(None)` lets an unauthenticated call through (health, open reflection, or the
    /// worker service, which checks connector credentials itself).
    pub fn authorize(&self, path: &str, authorization: Option<&str>) -> Result<Option<Caller>, Status> {
        let Some(tokens) = &self.tokens else {
            return Ok(Some(Caller::anonymous()));
        };
        let roles = match access_for(path) {
            Access::Open | Access::ConnectorCredential => return Ok(None),
            Access::Reflection if !self.reflection_requires_auth => return Ok(None),
            Access::Reflection => &[Role::Admin, Role::Editor, Role::Viewer][..],
            Access::Roles(roles) => roles,
        };

        let Some(authorization) = authorization else {
            return Err(Status::unauthenticated("missing API token: send authorization: Bearer <token>"));
        };
        let Some(token) = bearer_token(authorization) else {
            return Err(Status::unauthenticated(format!(
                "{}, but {path} takes an API token: send authorization: Bearer <token>",
                describe_scheme(authorization)
            )));
        };
        let Some(caller) = tokens.lookup(token) else {
            return Err(Status::unauthenticated("invalid API token"));
        };
        if !roles.contains(&caller.role) {
            let allowed: Vec<&str> = roles.iter().map(|role| role.as_str()).collect();
            return Err(Status::permission_denied(format!(
                "token {:?} has role {}, but {path} needs one of: {}",
                caller.name,
                caller.role,
                allowed.join(", ")
            )));
        }
        Ok(Some(caller))
    }
}

/// Describes an authorization value that contains no Bearer token, without repeating any
/// part of it that could be a secret: only a registered scheme name is quoted.
fn describe_scheme(authorization: &str) -> String {
    const SCHEMES: [&str; 8] = ["Basic", "Bearer", "Digest", "DPoP", "HOBA", "Mutual", "Negotiate", "OAuth"];
    let first_word = authorization.split_whitespace().next().unwrap_or_default();
    match SCHEMES.iter().find(|scheme| scheme.eq_ignore_ascii_case(first_word)) {
        Some(&"Bearer") => "the Bearer token is empty".to_owned(),
        Some(scheme) => format!("the authorization header uses the {scheme} scheme"),
        None => "the authorization header does not start with a scheme name".to_owned(),
    }
}

fn bearer_token(value: &str) -> Option<&str> {
    let token = value.strip_prefix("Bearer ").or_else(|| value.strip_prefix("bearer "))?.trim();
    (!token.is_empty()).then_some(token)
}

#[derive(Debug, Clone)]
pub struct AuthLayer {
    policy: Arc<AuthPolicy>,
}

impl AuthLayer {
    pub fn new(policy: AuthPolicy) -> Self {
        Self { policy: Arc::new(policy) }
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = AuthService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AuthService { inner, policy: Arc::clone(&self.policy) }
    }
}

#[derive(Debug, Clone)]
pub struct AuthService<S> {
    inner: S,
    policy: Arc<AuthPolicy>,
}

impl<S, RequestBody, ResponseBody> Service<Request<RequestBody>> for AuthService<S>
where
    S: Service<Request<RequestBody>, Response = Response<ResponseBody>>,
    S::Future: Send + 'static,
    ResponseBody: Default + Send + 'static,
{
    type Response = Response<ResponseBody>;
    type Error = S::Error;
    type Future = std::pin::Pin<Box<dyn std::future::Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, context: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(context)
    }

    fn call(&mut self, mut request: Request<RequestBody>) -> Self::Future {
        let path = request.uri().path().to_owned();
        let authorization = request.headers().get(http::header::AUTHORIZATION).and_then(|value| value.to_str().ok());
        match self.policy.authorize(&path, authorization) {
            Ok(caller) => {
                if let Some(caller) = caller {
                    request.extensions_mut().insert(caller);
                }
                Box::pin(self.inner.call(request))
            }
            Err(status) => {
                static LOG: LogThrottle = LogThrottle::new(LOG_INTERVAL);
                if let Some(rejected) = LOG.admit() {
                    tracing::info!(%path, code = ?status.code(), reason = status.message(), rejected, "call rejected by authentication");
                }
                Box::pin(async move { Ok(status.into_http()) })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::TokenEntry;

    fn policy_with(role: Role, token: &str) -> AuthPolicy {
        use sha2::{Digest, Sha256};
        let sha256 = Sha256::digest(token.as_bytes()).iter().map(|byte| format!("{byte:02x}")).collect();
        let tokens = Tokens::new(&[TokenEntry { name: "someone".into(), role, sha256 }]);
        AuthPolicy { tokens: Some(Arc::new(tokens)), reflection_requires_auth: false }
    }

    #[test]
    fn missing_and_unknown_tokens_are_unauthenticated() {
        let policy = policy_with(Role::Admin, "cdt_a");
        let get = "/connectord.v1.ConnectorService/Get";
        assert_eq!(policy.authorize(get, None).unwrap_err().code(), tonic::Code::Unauthenticated);
        assert_eq!(policy.authorize(get, Some("Bearer cdt_b")).unwrap_err().code(), tonic::Code::Unauthenticated);
        assert_eq!(policy.authorize(get, Some("Basic abc")).unwrap_err().code(), tonic::Code::Unauthenticated);
        assert_eq!(policy.authorize(get, Some("Bearer cdt_a")).unwrap().unwrap().name, "someone");
    }

    #[test]
    fn wrong_scheme_is_named_without_the_value() {
        let policy = policy_with(Role::Admin, "cdt_a");
        let get = "/connectord.v1.ConnectorService/Get";
        let cases = [
            ("Basic c2VjcmV0", "uses the Basic scheme"),
            ("Bearer ", "Bearer token is empty"),
            ("cdt_a_raw_secret", "does not start with a scheme name"),
            ("cdt_a raw secret", "does not start with a scheme name"),
        ];
        for (value, expected) in cases {
            let error = policy.authorize(get, Some(value)).unwrap_err();
            assert_eq!(error.code(), tonic::Code::Unauthenticated, "{value:?}");
            assert!(error.message().contains(expected), "{value:?}: {}", error.message());
            let secrets = value.split_whitespace().filter(|part| !["basic", "bearer"].contains(&part.to_ascii_lowercase().as_str()));
            for part in secrets {
                assert!(!error.message().contains(part), "{value:?}: the message repeats {part:?}");
            }
        }
    }

    #[test]
    fn viewer_cannot_write() {
        let policy = policy_with(Role::Viewer, "cdt_v");
        let error = policy.authorize("/connectord.v1.ConnectorService/Create", Some("Bearer cdt_v")).unwrap_err();
        assert_eq!(error.code(), tonic::Code::PermissionDenied);
        assert!(error.message().contains("admin, editor"), "{}", error.message());
    }

    #[test]
    fn health_and_worker_calls_pass_without_token() {
        let policy = policy_with(Role::Viewer, "cdt_v");
        assert_eq!(policy.authorize("/grpc.health.v1.Health/Check", None).unwrap(), None);
        assert_eq!(policy.authorize("/connectord.v1.ConnectorSyncService/ClaimSync", None).unwrap(), None);
    }
}
