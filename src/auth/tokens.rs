//! API tokens. The tokens file contains one JSON object per line with a token's name, role and
//! SHA-256 hash; the tokens themselves are printed once, when created, and never stored.
//!
//! ```text
//! {"name":"ci","role":"editor","sha256":"9f86d081…"}
//! ```

use std::{
    collections::HashMap,
    io::Write,
    path::{Path, PathBuf},
    sync::{Arc, RwLock},
};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use sha2::{Digest, Sha256};

use super::{Caller, Role};

/// Prefix of every API token, so that secret scanners can recognise them.
pub const TOKEN_PREFIX: &str = "cdt_";

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenEntry {
    pub name: String,
    pub role: Role,
    /// Lowercase hex SHA-256 of the token.
    pub sha256: String,
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("cannot read tokens file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("cannot write tokens file {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("tokens file {path}, line {line}: {reason}")]
    Invalid { path: PathBuf, line: usize, reason: String },
    #[error(
        "tokens file {path} does not exist; create one with `connectord token create --tokens-file {path} --name NAME --role ROLE`, or fix the path"
    )]
    Missing { path: PathBuf },
    #[error("a token named {0:?} already exists; revoke it first or pick another name")]
    DuplicateName(String),
    #[error("no token named {0:?}")]
    UnknownName(String),
    #[error("token name {0:?} is invalid: use 1 to 64 characters of [A-Za-z0-9_.@-]")]
    InvalidName(String),
    #[error("the OS random generator failed: {0}")]
    Random(String),
}

/// Draws a new token of 256 random bits from the operating system's CSPRNG.
pub fn generate_token() -> Result<String, TokenError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|error| TokenError::Random(error.to_string()))?;
    Ok(format!("{TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes)))
}

fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn parse_hex(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 {
        return None;
    }
    let mut bytes = [0u8; 32];
    for (index, byte) in bytes.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(index * 2..index * 2 + 2)?, 16).ok()?;
    }
    Some(bytes)
}

fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len()) && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '@'))
}

/// The tokens file on disk.
#[derive(Debug, Clone)]
pub struct TokenFile {
    path: PathBuf,
}

impl TokenFile {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the tokens of a file that must exist. Servers use it, because a missing file
    /// there is more likely a wrong path than a wish to reject every call.
    pub fn load_existing(&self) -> Result<Vec<TokenEntry>, TokenError> {
        if !self.path.exists() {
            return Err(TokenError::Missing { path: self.path.clone() });
        }
        self.load()
    }

    /// Reads every entry; a missing file has none. Blank lines and lines starting with `#`
    /// are skipped.
    pub fn load(&self) -> Result<Vec<TokenEntry>, TokenError> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => return Err(TokenError::Read { path: self.path.clone(), source }),
        };
        let mut entries: Vec<TokenEntry> = Vec::new();
        for (index, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let invalid = |reason: String| TokenError::Invalid { path: self.path.clone(), line: index + 1, reason };
            let entry: TokenEntry = serde_json::from_str(line).map_err(|error| invalid(error.to_string()))?;
            if !valid_name(&entry.name) {
                return Err(invalid(format!("name {:?} is invalid", entry.name)));
            }
            if parse_hex(&entry.sha256).is_none() {
                return Err(invalid("sha256 must be 64 hex digits".to_owned()));
            }
            if entries.iter().any(|known| known.name == entry.name) {
                return Err(invalid(format!("name {:?} appears twice", entry.name)));
            }
            entries.push(entry);
        }
        Ok(entries)
    }

    /// Generates a token, appends its entry and returns the token, which exists nowhere else.
    pub fn create(&self, name: &str, role: Role) -> Result<String, TokenError> {
        if !valid_name(name) {
            return Err(TokenError::InvalidName(name.to_owned()));
        }
        let mut entries = self.load()?;
        if entries.iter().any(|entry| entry.name == name) {
            return Err(TokenError::DuplicateName(name.to_owned()));
        }
        let token = generate_token()?;
        entries.push(TokenEntry { name: name.to_owned(), role, sha256: hex(&token_hash(&token)) });
        self.save(&entries)?;
        Ok(token)
    }

    /// Removes the entry named `name`.
    pub fn revoke(&self, name: &str) -> Result<(), TokenError> {
        let mut entries = self.load()?;
        let before = entries.len();
        entries.retain(|entry| entry.name != name);
        if entries.len() == before {
            return Err(TokenError::UnknownName(name.to_owned()));
        }
        self.save(&entries)
    }

    /// Replaces the file atomically (write a sibling, then rename), readable by its owner only.
    fn save(&self, entries: &[TokenEntry]) -> Result<(), TokenError> {
        let write_error = |source| TokenError::Write { path: self.path.clone(), source };
        let mut text = String::new();
        for entry in entries {
            text.push_str(&serde_json::to_string(entry).expect("token entries always serialize"));
            text.push('\n');
        }
        let temporary = self.path.with_extension("tmp");
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&temporary).map_err(write_error)?;
        file.write_all(text.as_bytes()).map_err(write_error)?;
        file.sync_all().map_err(write_error)?;
        std::fs::rename(&temporary, &self.path).map_err(write_error)
    }
}

/// The tokens the server accepts, replaceable while it runs.
#[derive(Debug, Default)]
pub struct Tokens {
    by_hash: RwLock<Arc<HashMap<[u8; 32], Caller>>>,
}

impl Tokens {
    pub fn new(entries: &[TokenEntry]) -> Self {
        let tokens = Self::default();
        tokens.replace(entries);
        tokens
    }

    /// Swaps in a new set of entries; calls already authenticated are unaffected.
    pub fn replace(&self, entries: &[TokenEntry]) {
        let by_hash = entries
            .iter()
            .filter_map(|entry| {
                let hash = parse_hex(&entry.sha256)?;
                Some((hash, Caller { name: entry.name.clone(), role: entry.role }))
            })
            .collect();
        *self.by_hash.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(by_hash);
    }

    pub fn len(&self) -> usize {
        self.by_hash.read().unwrap_or_else(|poisoned| poisoned.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Returns the caller that a presented token belongs to. The lookup is by SHA-256 of the
    /// token, so its timing depends on the hash, not on how much of a real token matched.
    pub fn lookup(&self, token: &str) -> Option<Caller> {
        let by_hash = Arc::clone(&self.by_hash.read().unwrap_or_else(|poisoned| poisoned.into_inner()));
        by_hash.get(&token_hash(token)).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_token_is_found_and_revoked() {
        let directory = tempfile::tempdir().unwrap();
        let file = TokenFile::new(directory.path().join("tokens.jsonl"));
        let token = file.create("ci", Role::Editor).unwrap();
        assert!(token.starts_with(TOKEN_PREFIX));
        let text = std::fs::read_to_string(file.path()).unwrap();
        assert!(!text.contains(&token), "the file must hold only the hash");

        let tokens = Tokens::new(&file.load().unwrap());
        assert_eq!(tokens.lookup(&token).map(|caller| caller.role), Some(Role::Editor));
        assert!(tokens.lookup("cdt_wrong").is_none());

        file.revoke("ci").unwrap();
        assert!(file.load().unwrap().is_empty());
        assert!(matches!(file.revoke("ci"), Err(TokenError::UnknownName(_))));
    }

    #[test]
    fn duplicate_names_are_rejected() {
        let directory = tempfile::tempdir().unwrap();
        let file = TokenFile::new(directory.path().join("tokens.jsonl"));
        file.create("ci", Role::Viewer).unwrap();
        assert!(matches!(file.create("ci", Role::Admin), Err(TokenError::DuplicateName(_))));
    }

    #[test]
    fn malformed_line_is_named() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("tokens.jsonl");
        std::fs::write(&path, "# comment\n{\"name\":\"a\",\"role\":\"boss\",\"sha256\":\"00\"}\n").unwrap();
        let error = TokenFile::new(&path).load().unwrap_err();
        assert!(matches!(error, TokenError::Invalid { line: 2, .. }), "{error}");
    }
}
