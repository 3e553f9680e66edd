//! Opaque list page tokens, bound to the request they came from.
//!
//! Layout before base64url:
//! - a version byte;
//! - 8 bytes of SHA-256 over the request's scope, which names the collection and every
//!   filter, such as the app id and `show_deleted`;
//! - the last id returned;
//! - 4 bytes of SHA-256 over all of the above, as a checksum.
//!
//! The token only records where to resume and grants nothing, so it needs no secret.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use sha2::{Digest, Sha256};

use super::validate::{MAX_PAGE_TOKEN_CHARS, id_problem};

const TOKEN_VERSION: u8 = 1;
const BINDING_LEN: usize = 8;
const CHECKSUM_LEN: usize = 4;

/// Reason a page token was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PageTokenError {
    #[error("page token is malformed; pass the next_page_token of a previous response unchanged")]
    Malformed,
    #[error(
        "page token belongs to a different request: another app_id, connector_id or filter such as show_deleted; start again without a token"
    )]
    Foreign,
}

fn binding(scope: &str) -> [u8; BINDING_LEN] {
    Sha256::digest(scope.as_bytes())[..BINDING_LEN].try_into().expect("SHA-256 is longer than 8 bytes")
}

/// Scope of a connector list: the app and whether deleted connectors are included.
pub fn connector_scope(app_id: &str, include_deleted: bool) -> String {
    format!("connectors\0{app_id}\0{include_deleted}")
}

fn checksum(bytes: &[u8]) -> [u8; CHECKSUM_LEN] {
    Sha256::digest(bytes)[..CHECKSUM_LEN].try_into().expect("SHA-256 is longer than 4 bytes")
}

/// Creates the token that resumes a list with this scope after `after_id`.
pub fn encode(scope: &str, after_id: &str) -> String {
    let mut bytes = Vec::with_capacity(1 + BINDING_LEN + after_id.len() + CHECKSUM_LEN);
    bytes.push(TOKEN_VERSION);
    bytes.extend_from_slice(&binding(scope));
    bytes.extend_from_slice(after_id.as_bytes());
    let sum = checksum(&bytes);
    bytes.extend_from_slice(&sum);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Returns the id to resume after, if the token was issued for this scope.
pub fn decode(token: &str, scope: &str) -> Result<String, PageTokenError> {
    if token.len() > MAX_PAGE_TOKEN_CHARS {
        return Err(PageTokenError::Malformed);
    }
    let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| PageTokenError::Malformed)?;
    if bytes.len() < 1 + BINDING_LEN + CHECKSUM_LEN + 1 || bytes[0] != TOKEN_VERSION {
        return Err(PageTokenError::Malformed);
    }
    let (body, sum) = bytes.split_at(bytes.len() - CHECKSUM_LEN);
    if checksum(body) != sum {
        return Err(PageTokenError::Malformed);
    }
    if body[1..1 + BINDING_LEN] != binding(scope) {
        return Err(PageTokenError::Foreign);
    }
    let after_id = std::str::from_utf8(&body[1 + BINDING_LEN..]).map_err(|_| PageTokenError::Malformed)?;
    if id_problem(after_id).is_some() {
        return Err(PageTokenError::Malformed);
    }
    Ok(after_id.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_round_trips() {
        let token = encode(&connector_scope("app-1", false), "01HZX0000");
        assert_eq!(decode(&token, &connector_scope("app-1", false)).unwrap(), "01HZX0000");
    }

    #[test]
    fn token_of_other_app_or_flag_is_foreign() {
        let token = encode(&connector_scope("app-1", false), "01HZX");
        assert_eq!(decode(&token, &connector_scope("app-2", false)), Err(PageTokenError::Foreign));
        assert_eq!(decode(&token, &connector_scope("app-1", true)), Err(PageTokenError::Foreign));
    }

    #[test]
    fn garbled_tokens_are_malformed() {
        let scope = connector_scope("app-1", false);
        let token = encode(&scope, "01HZX");
        let mut flipped = token.clone().into_bytes();
        flipped[5] = if flipped[5] == b'A' { b'B' } else { b'A' };
        for garbled in [String::from_utf8(flipped).unwrap(), "!!!".into(), "AAAA".into(), token[..token.len() - 2].into()] {
            assert_eq!(decode(&garbled, &scope), Err(PageTokenError::Malformed), "{garbled}");
        }
    }
}
