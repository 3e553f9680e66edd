//! Connector credentials: client ids and secrets that running connectors authenticate with.
//! Only a SHA-256 hash of each secret is kept; the secret itself exists in one response.

use std::fmt;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Prefix of every client id, so that logs and secret scanners can recognise them.
pub const CLIENT_ID_PREFIX: &str = "cdc_";
/// Prefix of every client secret.
pub const SECRET_PREFIX: &str = "cds_";
/// Random bytes in a secret: 256 bits.
const SECRET_BYTES: usize = 32;

/// A client secret in plain text. Its `Debug` and `Display` never show the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Draws a new secret from the operating system's CSPRNG.
    pub fn generate() -> Result<Self, getrandom::Error> {
        let mut bytes = [0u8; SECRET_BYTES];
        getrandom::fill(&mut bytes)?;
        Ok(Self(format!("{SECRET_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes))))
    }

    pub fn from_presented(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The plain text, for the one response that returns it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn hash(&self) -> SecretHash {
        SecretHash(Sha256::digest(self.0.as_bytes()).into())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// SHA-256 of a secret. A secret of 256 random bits needs no salt or slow hash: the hash
/// cannot be inverted by guessing.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SecretHash(pub [u8; 32]);

impl SecretHash {
    /// Compares in constant time, so response timing reveals nothing about the hash.
    pub fn matches(&self, presented: &Secret) -> bool {
        self.0.ct_eq(&presented.hash().0).into()
    }
}

impl fmt::Debug for SecretHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretHash(<redacted>)")
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    pub id: String,
    pub app_id: String,
    pub connector_id: String,
    pub client_id: String,
    pub display_name: String,
    pub secret_hash: SecretHash,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Set when revoked.
    pub deleted_at: Option<DateTime<Utc>>,
    /// Set on older credentials when a newer one is created.
    pub expires_at: Option<DateTime<Utc>>,
    /// Last successful authentication, recorded at most once a minute.
    pub last_used_at: Option<DateTime<Utc>>,
    pub revision: u64,
}

impl Credential {
    /// True while the credential may authenticate: not revoked and not expired.
    pub fn is_usable_at(&self, now: DateTime<Utc>) -> bool {
        self.deleted_at.is_none() && self.expires_at.is_none_or(|expires_at| now < expires_at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_has_256_random_bits_and_a_prefix() {
        let first = Secret::generate().unwrap();
        let second = Secret::generate().unwrap();
        assert!(first.expose().starts_with(SECRET_PREFIX));
        assert_eq!(first.expose().len(), SECRET_PREFIX.len() + 43);
        assert_ne!(first, second);
    }

    #[test]
    fn debug_output_hides_secret_and_hash() {
        let secret = Secret::generate().unwrap();
        let printed = format!("{secret:?} {:?}", secret.hash());
        assert!(!printed.contains(&secret.expose()[SECRET_PREFIX.len()..]));
        assert!(printed.contains("redacted"));
    }

    #[test]
    fn hash_matches_only_its_secret() {
        let secret = Secret::generate().unwrap();
        let hash = secret.hash();
        assert!(hash.matches(&secret));
        assert!(!hash.matches(&Secret::from_presented("cds_wrong")));
    }
}
