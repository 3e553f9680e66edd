//! CORS for browsers that call the gRPC-Web or REST API from another origin.

use std::time::Duration;

use http::{HeaderName, HeaderValue, Method, header};
use tower_http::cors::{AllowOrigin, CorsLayer};

/// How long a browser may cache a preflight response. Chromium caps it at two hours
/// (MDN, Access-Control-Max-Age).
const PREFLIGHT_MAX_AGE: Duration = Duration::from_secs(2 * 60 * 60);

/// A `--cors-allow-origin` value that is not `*` or an origin such as `https://app.example`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("CORS origin {origin:?} is invalid: {reason}")]
pub struct OriginError {
    origin: String,
    reason: &'static str,
}

/// Checks one allowed origin: `*`, or `http://` or `https://` with a host, an optional port,
/// and nothing after it (browsers send `Origin` without a path or a trailing slash).
pub fn parse_origin(origin: &str) -> Result<HeaderValue, OriginError> {
    let error = |reason| OriginError { origin: origin.to_owned(), reason };
    if origin == "*" {
        return Ok(HeaderValue::from_static("*"));
    }
    let Some(host_and_port) = origin.strip_prefix("https://").or_else(|| origin.strip_prefix("http://")) else {
        return Err(error("it must start with http:// or https://, or be *"));
    };
    if host_and_port.is_empty() {
        return Err(error("it has no host"));
    }
    if host_and_port.contains(['/', '?', '#', '@', ' ']) {
        return Err(error("it must be scheme://host[:port] without a path, query or trailing slash"));
    }
    HeaderValue::from_str(origin).map_err(|_| error("it contains characters that a header cannot hold"))
}

/// Builds the CORS layer, or `None` when no origin is allowed. Without the layer a
/// preflight `OPTIONS` request gets the REST gateway's 405 response, and browsers block the
/// cross-origin call.
pub fn cors_layer(origins: &[String]) -> Result<Option<CorsLayer>, OriginError> {
    if origins.is_empty() {
        return Ok(None);
    }
    let values = origins.iter().map(|origin| parse_origin(origin)).collect::<Result<Vec<_>, _>>()?;
    let allow_origin = if values.iter().any(|value| value == "*") {
        if values.len() > 1 {
            return Err(OriginError { origin: "*".to_owned(), reason: "* allows every origin, so list no other" });
        }
        AllowOrigin::any()
    } else {
        AllowOrigin::list(values)
    };

    let layer = CorsLayer::new()
        .allow_origin(allow_origin)
        .allow_methods([Method::GET, Method::POST, Method::PUT, Method::PATCH, Method::DELETE])
        .allow_headers([
            header::ACCEPT,
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            HeaderName::from_static("grpc-timeout"),
            HeaderName::from_static("x-grpc-web"),
            HeaderName::from_static("x-user-agent"),
        ])
        .expose_headers([
            HeaderName::from_static("grpc-status"),
            HeaderName::from_static("grpc-message"),
            HeaderName::from_static("grpc-status-details-bin"),
        ])
        .max_age(PREFLIGHT_MAX_AGE);
    Ok(Some(layer))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_validated() {
        assert!(parse_origin("https://app.example").is_ok());
        assert!(parse_origin("http://localhost:3000").is_ok());
        assert!(parse_origin("*").is_ok());
        for bad in ["app.example", "https://app.example/", "https://", "ftp://x", "https://a.example/path"] {
            assert!(parse_origin(bad).is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn wildcard_stands_alone() {
        assert!(cors_layer(&["*".to_owned()]).unwrap().is_some());
        assert!(cors_layer(&["*".to_owned(), "https://a.example".to_owned()]).is_err());
        assert!(cors_layer(&[]).unwrap().is_none());
    }
}
