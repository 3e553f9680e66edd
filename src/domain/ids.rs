//! Server-generated ids: ULIDs, which are URL-safe, unique and sort by creation time.

use std::sync::Mutex;

use ulid::Generator;

/// Generates ids that sort in creation order, also within one millisecond.
#[derive(Default)]
pub struct IdGenerator {
    generator: Mutex<Generator>,
}

impl IdGenerator {
    pub fn new() -> Self {
        Self::default()
    }

    /// Returns a new 26-character id greater than every id this generator returned before.
    pub fn next_id(&self) -> String {
        let mut generator = self.generator.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        // The monotonic generator overflows only after 2^80 ids within one millisecond;
        // a fresh random ULID is still unique then, just not ordered.
        match generator.generate() {
            Ok(id) => id.to_string(),
            Err(overflow) => overflow.commit_overflow_random().to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_sort_in_generation_order() {
        let generator = IdGenerator::new();
        let ids: Vec<String> = (0..1000).map(|_| generator.next_id()).collect();
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(ids, sorted);
        assert!(ids.iter().all(|id| id.len() == 26 && id.chars().all(|c| c.is_ascii_alphanumeric())));
    }
}
