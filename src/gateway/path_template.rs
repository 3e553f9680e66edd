//! Parsing and matching of `google.api.http` path templates such as
//! `/api/v1/apps/{app_id}/connectors/{id}`.
//!
//! The grammar is the one in `google/api/http.proto`:
//!
//! ```text
//! Template = "/" Segments [ Verb ] ;
//! Segments = Segment { "/" Segment } ;
//! Segment  = "*" | "**" | LITERAL | Variable ;
//! Variable = "{" FieldPath [ "=" Segments ] "}" ;
//! FieldPath = IDENT { "." IDENT } ;
//! Verb     = ":" LITERAL ;
//! ```

use std::{cmp::Ordering, fmt};

use percent_encoding::percent_decode_str;

/// One segment of a parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    /// `*`: exactly one non-empty path segment.
    Single,
    /// `**`: zero or more path segments; only allowed last.
    Multi,
}

/// A variable and the template segments it captures, `start..end`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Variable {
    field_path: Vec<String>,
    start: usize,
    end: usize,
}

/// A parsed path template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathTemplate {
    text: String,
    segments: Vec<Segment>,
    variables: Vec<Variable>,
    verb: Option<String>,
}

/// A path variable bound by a match: the request field path and its decoded value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capture {
    pub field_path: Vec<String>,
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid path template {template:?}: {reason}")]
pub struct TemplateError {
    template: String,
    reason: String,
}

impl PathTemplate {
    /// Parses a template. Rejects templates that do not start with `/`, empty segments,
    /// nested variables, and `**` anywhere but in the last segment.
    pub fn parse(text: &str) -> Result<Self, TemplateError> {
        let error = |reason: &str| TemplateError { template: text.to_owned(), reason: reason.to_owned() };
        let Some(rest) = text.strip_prefix('/') else {
            return Err(error("it must start with '/'"));
        };
        let (path, verb) = split_verb(rest);
        if verb.is_some_and(str::is_empty) {
            return Err(error("the verb after ':' is empty"));
        }

        let mut template =
            PathTemplate { text: text.to_owned(), segments: Vec::new(), variables: Vec::new(), verb: verb.map(str::to_owned) };
        for part in split_top_level(path) {
            template.push_part(part).map_err(|reason| error(&reason))?;
        }
        if let Some(position) = template.segments.iter().position(|segment| *segment == Segment::Multi)
            && position + 1 != template.segments.len()
        {
            return Err(error("'**' must be the last segment"));
        }
        Ok(template)
    }

    /// Appends one top-level part: a literal, a wildcard, or a variable with its segments.
    fn push_part(&mut self, part: &str) -> Result<(), String> {
        let Some(inner) = part.strip_prefix('{') else {
            return self.push_segment(part);
        };
        let Some(inner) = inner.strip_suffix('}') else {
            return Err(format!("variable {part:?} has no closing '}}'"));
        };
        let (field_path, pattern) = match inner.split_once('=') {
            Some((field_path, pattern)) => (field_path, pattern),
            None => (inner, "*"),
        };
        let field_path: Vec<String> = field_path.split('.').map(str::to_owned).collect();
        if field_path.iter().any(|name| !is_identifier(name)) {
            return Err(format!("variable {part:?} does not name a field path"));
        }

        let start = self.segments.len();
        for segment in pattern.split('/') {
            if segment.starts_with('{') {
                return Err(format!("variable {part:?} contains another variable"));
            }
            self.push_segment(segment)?;
        }
        self.variables.push(Variable { field_path, start, end: self.segments.len() });
        Ok(())
    }

    fn push_segment(&mut self, segment: &str) -> Result<(), String> {
        let segment = match segment {
            "" => return Err("it has an empty segment".to_owned()),
            "*" => Segment::Single,
            "**" => Segment::Multi,
            literal if literal.contains(['{', '}', '*']) => {
                return Err(format!("segment {literal:?} mixes a literal with '{{', '}}' or '*'"));
            }
            literal => Segment::Literal(literal.to_owned()),
        };
        self.segments.push(segment);
        Ok(())
    }

    /// Returns the template as written in the annotation.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Field paths of every variable, in template order.
    pub fn variable_paths(&self) -> impl Iterator<Item = &[String]> {
        self.variables.iter().map(|variable| variable.field_path.as_slice())
    }

    /// Matches a request path (without query) and returns the bound variables, or `None`.
    ///
    /// Literals are compared after percent-decoding. A variable of one segment is fully
    /// percent-decoded; a variable of several segments keeps `%2F` encoded, as the
    /// `google.api.http` rules prescribe.
    pub fn matches(&self, path: &str) -> Option<Vec<Capture>> {
        let rest = path.strip_prefix('/')?;
        let rest = match &self.verb {
            Some(verb) => rest.strip_suffix(verb.as_str())?.strip_suffix(':')?,
            None => rest,
        };
        let parts: Vec<&str> = rest.split('/').collect();

        for (index, segment) in self.segments.iter().enumerate() {
            match segment {
                Segment::Literal(literal) => {
                    let part = parts.get(index)?;
                    if percent_decode_str(part).decode_utf8().ok()? != literal.as_str() {
                        return None;
                    }
                }
                Segment::Single => {
                    if parts.get(index).is_none_or(|part| part.is_empty()) {
                        return None;
                    }
                }
                Segment::Multi => {}
            }
        }
        let ends_with_multi = self.segments.last() == Some(&Segment::Multi);
        if !ends_with_multi && parts.len() != self.segments.len() {
            return None;
        }
        if ends_with_multi && parts.len() + 1 < self.segments.len() {
            return None;
        }

        self.variables.iter().map(|variable| self.capture(variable, &parts)).collect()
    }

    /// Extracts and decodes the value of one variable from the split request path.
    fn capture(&self, variable: &Variable, parts: &[&str]) -> Option<Capture> {
        let pattern = &self.segments[variable.start..variable.end];
        let end = if pattern.last() == Some(&Segment::Multi) { parts.len() } else { variable.end };
        let raw = parts.get(variable.start..end)?;
        let value = if pattern == [Segment::Single] {
            percent_decode_str(raw[0]).decode_utf8().ok()?.into_owned()
        } else {
            decode_keeping_slashes(&raw.join("/"))?
        };
        Some(Capture { field_path: variable.field_path.clone(), value })
    }

    /// Orders templates so that the more specific one comes first when both match a path:
    /// at the first segment where they differ, a literal beats `*`, and `*` beats `**`.
    pub fn specificity_order(&self, other: &PathTemplate) -> Ordering {
        let rank = |segment: &Segment| match segment {
            Segment::Literal(_) => 0,
            Segment::Single => 1,
            Segment::Multi => 2,
        };
        let own = self.segments.iter().map(rank);
        let theirs = other.segments.iter().map(rank);
        own.cmp(theirs).then_with(|| other.verb.is_some().cmp(&self.verb.is_some()))
    }
}

impl fmt::Display for PathTemplate {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.text)
    }
}

/// Splits off a trailing `:verb` that is outside every variable.
fn split_verb(path: &str) -> (&str, Option<&str>) {
    let mut depth = 0usize;
    let mut verb_start = None;
    for (index, character) in path.char_indices() {
        match character {
            '{' => depth += 1,
            '}' => depth = depth.saturating_sub(1),
            '/' => verb_start = None,
            ':' if depth == 0 => verb_start = Some(index),
            _ => {}
        }
    }
    match verb_start {
        Some(index) => (&path[..index], Some(&path[index + 1..])),
        None => (path, None),
    }
}

/// Splits a template path on the `/` characters that are outside variables.
fn split_top_level(path: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (index, character) in path.char_indices() {
        match character {
            '{' => depth += 1,
            '}' => depth = depth.saturating_sub(1),
            '/' if depth == 0 => {
                parts.push(&path[start..index]);
                start = index + 1;
            }
            _ => {}
        }
    }
    parts.push(&path[start..]);
    parts
}

fn is_identifier(name: &str) -> bool {
    let mut characters = name.chars();
    characters.next().is_some_and(|first| first.is_ascii_alphabetic() || first == '_')
        && characters.all(|character| character.is_ascii_alphanumeric() || character == '_')
}

/// Percent-decodes everything except `%2F`, so that a captured multi-segment value keeps
/// its segment boundaries.
fn decode_keeping_slashes(raw: &str) -> Option<String> {
    let pieces: Vec<String> = split_encoded_slashes(raw)
        .into_iter()
        .map(|piece| percent_decode_str(piece).decode_utf8().ok().map(|text| text.into_owned()))
        .collect::<Option<_>>()?;
    Some(pieces.join("%2F"))
}

fn split_encoded_slashes(raw: &str) -> Vec<&str> {
    let mut pieces = Vec::new();
    let mut start = 0;
    let bytes = raw.as_bytes();
    let mut index = 0;
    while index + 3 <= bytes.len() {
        if bytes[index] == b'%' && bytes[index + 1] == b'2' && bytes[index + 2].eq_ignore_ascii_case(&b'f') {
            pieces.push(&raw[start..index]);
            index += 3;
            start = index;
        } else {
            index += 1;
        }
    }
    pieces.push(&raw[start..]);
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;

    fn capture(path: &str, value: &str) -> Capture {
        Capture { field_path: path.split('.').map(str::to_owned).collect(), value: value.to_owned() }
    }

    #[test]
    fn simple_variables_match_one_segment() {
        let template = PathTemplate::parse("/api/v1/apps/{app_id}/connectors/{id}").unwrap();
        assert_eq!(template.matches("/api/v1/apps/a1/connectors/c%201"), Some(vec![capture("app_id", "a1"), capture("id", "c 1")]));
        assert_eq!(template.matches("/api/v1/apps/a1/connectors"), None);
        assert_eq!(template.matches("/api/v1/apps/a1/connectors/c1/x"), None);
        assert_eq!(template.matches("/api/v1/apps//connectors/c1"), None);
    }

    #[test]
    fn nested_field_paths_are_kept() {
        let template = PathTemplate::parse("/api/v1/apps/{connector.app_id}/connectors/{connector.id}").unwrap();
        let paths: Vec<_> = template.variable_paths().collect();
        assert_eq!(paths, [["connector", "app_id"], ["connector", "id"]]);
        assert_eq!(
            template.matches("/api/v1/apps/a/connectors/b"),
            Some(vec![capture("connector.app_id", "a"), capture("connector.id", "b")])
        );
    }

    #[test]
    fn multi_segment_variables_keep_encoded_slashes() {
        let template = PathTemplate::parse("/v1/{name=shelves/*/books/**}").unwrap();
        assert_eq!(template.matches("/v1/shelves/s1/books/a/b%2Fc"), Some(vec![capture("name", "shelves/s1/books/a/b%2Fc")]));
        assert_eq!(template.matches("/v1/shelves/s1/authors/a"), None);
    }

    #[test]
    fn verbs_are_matched_after_the_last_segment() {
        let template = PathTemplate::parse("/v1/{name}:undelete").unwrap();
        assert_eq!(template.matches("/v1/x:undelete"), Some(vec![capture("name", "x")]));
        assert_eq!(template.matches("/v1/x"), None);
    }

    #[test]
    fn invalid_templates_are_rejected() {
        for text in ["v1/x", "/v1//x", "/v1/**/x", "/v1/{a.}", "/v1/{a={b}}", "/v1/x:", "/v1/a*"] {
            assert!(PathTemplate::parse(text).is_err(), "{text} was accepted");
        }
    }

    #[test]
    fn literals_are_more_specific_than_variables() {
        let literal = PathTemplate::parse("/api/v1/apps/{app_id}/connectors/create").unwrap();
        let variable = PathTemplate::parse("/api/v1/apps/{a}/connectors/{b}").unwrap();
        assert_eq!(literal.specificity_order(&variable), Ordering::Less);
        assert_eq!(variable.specificity_order(&literal), Ordering::Greater);
    }
}
