//! Formatting of client-supplied values for error messages.

/// Longest excerpt of a client value that an error message repeats.
const MAX_SHOWN_CHARS: usize = 40;

/// Quotes a client value for an error message, cut to a few dozen characters.
pub fn shorten(value: &str) -> String {
    if value.chars().count() <= MAX_SHOWN_CHARS {
        return format!("{value:?}");
    }
    let head: String = value.chars().take(MAX_SHOWN_CHARS).collect();
    format!("{head:?}…")
}
