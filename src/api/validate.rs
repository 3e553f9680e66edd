//! Field rules for request values. Each check appends a [`FieldViolation`] naming the field,
//! the shortened value and the rule, so one response reports every bad field at once.

use crate::domain::{Error, FieldViolation, connector_text::shorten};

pub const MAX_ID_CHARS: usize = 64;
pub const MAX_DISPLAY_NAME_CHARS: usize = 256;
pub const MAX_DESCRIPTION_CHARS: usize = 4096;
pub const MAX_USER_IDS: usize = 100;
pub const MAX_LIST_ENTRIES: usize = 100;
pub const MAX_LIST_ENTRY_CHARS: usize = 256;
pub const MAX_ETAG_CHARS: usize = 64;
pub const MAX_PAGE_TOKEN_CHARS: usize = 1024;

/// Collects the violations of one request.
#[derive(Debug, Default)]
pub struct Violations(Vec<FieldViolation>);

impl Violations {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn add(&mut self, field: impl Into<String>, description: impl Into<String>) {
        self.0.push(FieldViolation::new(field, description));
    }

    pub fn push(&mut self, violation: FieldViolation) {
        self.0.push(violation);
    }

    /// Returns `Err(InvalidArgument)` when any rule was broken.
    pub fn into_result(self) -> Result<(), Error> {
        if self.0.is_empty() { Ok(()) } else { Err(Error::InvalidArgument(self.0)) }
    }

    /// A required id: 1 to 64 characters of `[A-Za-z0-9_-]`.
    pub fn id(&mut self, field: &str, value: &str) {
        if let Some(problem) = id_problem(value) {
            self.add(field, problem);
        }
    }

    /// An id that may be empty.
    pub fn optional_id(&mut self, field: &str, value: &str) {
        if !value.is_empty() {
            self.id(field, value);
        }
    }

    /// Free text of at most `max_chars` characters without control characters other than
    /// line breaks and tabs.
    pub fn text(&mut self, field: &str, value: &str, max_chars: usize) {
        let chars = value.chars().count();
        if chars > max_chars {
            self.add(field, format!("{} is {chars} characters long; the maximum is {max_chars}", shorten(value)));
        } else if value.chars().any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t')) {
            self.add(field, format!("{} contains control characters", shorten(value)));
        }
    }

    /// User ids: at most 100 valid ids. Returns them with duplicates removed, in order.
    pub fn user_ids(&mut self, field: &str, values: &[String]) -> Vec<String> {
        if values.len() > MAX_USER_IDS {
            self.add(field, format!("has {} entries; the maximum is {MAX_USER_IDS}", values.len()));
            return Vec::new();
        }
        let mut unique: Vec<String> = Vec::with_capacity(values.len());
        for (index, value) in values.iter().enumerate() {
            if let Some(problem) = id_problem(value) {
                self.add(format!("{field}[{index}]"), problem);
            } else if !unique.contains(value) {
                unique.push(value.clone());
            }
        }
        unique
    }

    /// A list of short strings such as profile attribute names.
    pub fn string_list(&mut self, field: &str, values: &[String]) {
        if values.len() > MAX_LIST_ENTRIES {
            self.add(field, format!("has {} entries; the maximum is {MAX_LIST_ENTRIES}", values.len()));
            return;
        }
        for (index, value) in values.iter().enumerate() {
            if value.is_empty() {
                self.add(format!("{field}[{index}]"), "must not be empty");
            } else {
                self.text(&format!("{field}[{index}]"), value, MAX_LIST_ENTRY_CHARS);
            }
        }
    }

    pub fn etag(&mut self, field: &str, value: &str) {
        if value.chars().count() > MAX_ETAG_CHARS {
            self.add(field, format!("{} is longer than {MAX_ETAG_CHARS} characters", shorten(value)));
        }
    }
}

/// Describes why `value` is not a valid id, or returns `None` when it is.
pub fn id_problem(value: &str) -> Option<String> {
    if value.is_empty() {
        return Some("is required: 1 to 64 characters of [A-Za-z0-9_-]".to_owned());
    }
    let chars = value.chars().count();
    if chars > MAX_ID_CHARS {
        return Some(format!("{} is {chars} characters long; an id has 1 to 64 characters of [A-Za-z0-9_-]", shorten(value)));
    }
    if !value.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
        return Some(format!("{} is invalid: an id has only the characters [A-Za-z0-9_-]", shorten(value)));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_rules() {
        assert!(id_problem("abc_DEF-019").is_none());
        assert!(id_problem("").unwrap().contains("required"));
        assert!(id_problem(&"a".repeat(65)).unwrap().contains("65 characters"));
        assert!(id_problem("a/b").unwrap().contains("[A-Za-z0-9_-]"));
        assert!(id_problem("ünï").is_some());
    }

    #[test]
    fn user_ids_are_deduplicated_in_order() {
        let mut violations = Violations::new();
        let ids = ["b", "a", "b", "c", "a"].map(String::from);
        assert_eq!(violations.user_ids("user_ids", &ids), ["b", "a", "c"]);
        assert!(violations.into_result().is_ok());
    }

    #[test]
    fn bad_user_id_is_named_by_index() {
        let mut violations = Violations::new();
        violations.user_ids("user_ids", &["ok".into(), "not ok".into()]);
        let Err(Error::InvalidArgument(found)) = violations.into_result() else { panic!() };
        assert_eq!(found[0].field, "user_ids[1]");
    }

    #[test]
    fn long_values_are_shortened_in_messages() {
        let mut violations = Violations::new();
        violations.text("display_name", &"x".repeat(300), MAX_DISPLAY_NAME_CHARS);
        let Err(Error::InvalidArgument(found)) = violations.into_result() else { panic!() };
        assert!(found[0].description.len() < 120, "{}", found[0].description);
        assert!(found[0].description.contains("300 characters"));
    }
}
