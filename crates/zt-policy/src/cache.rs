//! A small bounded map from strings to shared values: two generations, the older dropped whole
//! when the newer fills, entries read from the older promoted. Approximately least recently
//! used, O(1), never more than `capacity` entries.

use std::collections::HashMap;

/// Bounded cache keyed by string.
#[derive(Debug)]
pub(crate) struct BoundedCache<V> {
    current: HashMap<String, V>,
    previous: HashMap<String, V>,
    generation: usize,
}

impl<V: Clone> BoundedCache<V> {
    /// A cache holding at most `capacity` entries (at least 2).
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            current: HashMap::new(),
            previous: HashMap::new(),
            generation: (capacity / 2).max(1),
        }
    }

    /// The value for `key` if it is in the newer generation (a read that changes nothing, so
    /// it can run under a shared lock).
    pub(crate) fn peek(&self, key: &str) -> Option<V> {
        self.current.get(key).cloned()
    }

    /// The value for `key`, if cached (promoted to the newer generation).
    pub(crate) fn get(&mut self, key: &str) -> Option<V> {
        if let Some(v) = self.current.get(key) {
            return Some(v.clone());
        }
        let (key, v) = self.previous.remove_entry(key)?;
        self.insert(key, v.clone());
        Some(v)
    }

    /// Caches `value` for `key`.
    pub(crate) fn insert(&mut self, key: String, value: V) {
        if self.current.len() >= self.generation && !self.current.contains_key(&key) {
            self.previous = std::mem::take(&mut self.current);
        }
        self.current.insert(key, value);
    }

    /// How many entries are cached.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.current.len() + self.previous.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stays_bounded_and_keeps_what_is_used() {
        let mut cache = BoundedCache::new(4);
        for i in 0..100 {
            cache.insert(format!("k{i}"), i);
            assert!(cache.get("k0").is_some(), "k0 is read every round");
            assert!(cache.len() <= 4);
        }
        assert_eq!(cache.get("k99"), Some(99));
        assert_eq!(cache.get("k50"), None);
    }

    #[test]
    fn reads_from_the_older_generation_promote() {
        let mut cache = BoundedCache::new(4);
        cache.insert("a".into(), 1);
        cache.insert("b".into(), 2);
        cache.insert("c".into(), 3); // "a" and "b" move to the older generation
        assert_eq!(cache.peek("a"), None); // not in the newer generation
        assert_eq!(cache.get("a"), Some(1)); // promoted
        assert_eq!(cache.peek("a"), Some(1));
        cache.insert("d".into(), 4); // the older generation, holding "b", is dropped
        assert_eq!(cache.get("b"), None);
        assert_eq!(cache.get("a"), Some(1));
    }
}
