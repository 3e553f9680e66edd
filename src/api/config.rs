//! Validation of `google.protobuf.Any` configs against the registered config types.

use super::validate::Violations;
use crate::domain::{Config, ConfigTypes};

/// The registered types and the size limit that a config must satisfy.
#[derive(Clone, Copy)]
pub struct ConfigCheck<'a> {
    pub types: &'a ConfigTypes,
    pub max_bytes: usize,
}

impl ConfigCheck<'_> {
    /// Validates a config that may be absent, recording a violation under `field`.
    pub fn optional(&self, field: &str, config: Option<&prost_types::Any>, violations: &mut Violations) -> Option<Config> {
        let config = config?;
        match self.types.validate(&config.type_url, &config.value, self.max_bytes) {
            Ok(config) => Some(config),
            Err(violation) => {
                violations.add(format!("{field}.{}", violation.field), violation.description);
                None
            }
        }
    }
}
