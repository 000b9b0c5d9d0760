//! A small bounded map from strings to shared values: two generations, the older dropped whole
//! when the newer fills, entries read from the older promoted. Approximately least recently
//! used, O(1). Bounded by weight (the caller's estimate of each entry's bytes, its key
//! included), never by count alone: a few large entries cannot hold more memory than many
//! small ones.

use std::collections::HashMap;

/// Bounded cache keyed by string.
#[derive(Debug)]
pub(crate) struct BoundedCache<V> {
    current: HashMap<String, (V, usize)>,
    previous: HashMap<String, (V, usize)>,
    current_weight: usize,
    generation_budget: usize,
}

impl<V: Clone> BoundedCache<V> {
    /// A cache holding entries of total weight at most `budget` (each generation holds at most
    /// half; an entry heavier than half the budget is never cached).
    pub(crate) fn new(budget: usize) -> Self {
        Self {
            current: HashMap::new(),
            previous: HashMap::new(),
            current_weight: 0,
            generation_budget: (budget / 2).max(1),
        }
    }

    /// The value for `key` if it is in the newer generation (a read that changes nothing, so
    /// it can run under a shared lock).
    pub(crate) fn peek(&self, key: &str) -> Option<V> {
        self.current.get(key).map(|(v, _)| v.clone())
    }

    /// The value for `key`, if cached (promoted to the newer generation).
    pub(crate) fn get(&mut self, key: &str) -> Option<V> {
        if let Some((v, _)) = self.current.get(key) {
            return Some(v.clone());
        }
        let (key, (v, weight)) = self.previous.remove_entry(key)?;
        self.insert(key, v.clone(), weight);
        Some(v)
    }

    /// Caches `value` for `key`, weighing `weight`.
    pub(crate) fn insert(&mut self, key: String, value: V, weight: usize) {
        if weight > self.generation_budget {
            return;
        }
        if let Some((_, old)) = self.current.remove(&key) {
            self.current_weight = self.current_weight.saturating_sub(old);
        }
        if self.current_weight.saturating_add(weight) > self.generation_budget {
            self.previous = std::mem::take(&mut self.current);
            self.current_weight = 0;
        }
        self.current_weight = self.current_weight.saturating_add(weight);
        self.current.insert(key, (value, weight));
    }

    /// How many entries are cached.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.current.len() + self.previous.len()
    }

    /// The total weight cached.
    #[cfg(test)]
    pub(crate) fn weight(&self) -> usize {
        self.current
            .values()
            .chain(self.previous.values())
            .map(|(_, w)| w)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stays_bounded_and_keeps_what_is_used() {
        let mut cache = BoundedCache::new(4);
        for i in 0..100 {
            cache.insert(format!("k{i}"), i, 1);
            assert!(cache.get("k0").is_some(), "k0 is read every round");
            assert!(cache.len() <= 4);
        }
        assert_eq!(cache.get("k99"), Some(99));
        assert_eq!(cache.get("k50"), None);
    }

    #[test]
    fn reads_from_the_older_generation_promote() {
        let mut cache = BoundedCache::new(4);
        cache.insert("a".into(), 1, 1);
        cache.insert("b".into(), 2, 1);
        cache.insert("c".into(), 3, 1); // "a" and "b" move to the older generation
        assert_eq!(cache.peek("a"), None); // not in the newer generation
        assert_eq!(cache.get("a"), Some(1)); // promoted
        assert_eq!(cache.peek("a"), Some(1));
        cache.insert("d".into(), 4, 1); // the older generation, holding "b", is dropped
        assert_eq!(cache.get("b"), None);
        assert_eq!(cache.get("a"), Some(1));
    }

    #[test]
    fn heavy_entries_are_bounded_by_weight_not_count() {
        let mut cache = BoundedCache::new(1000);
        for i in 0..100 {
            cache.insert(format!("k{i}"), i, 300);
            assert!(cache.weight() <= 1000, "round {i}: {}", cache.weight());
        }
        assert!(cache.len() <= 3, "{}", cache.len());
        cache.insert("huge".into(), 0, 501);
        assert_eq!(
            cache.get("huge"),
            None,
            "heavier than a generation: never cached"
        );
        cache.insert("k99".into(), 99, 300);
        cache.insert("k99".into(), 99, 300);
        assert!(cache.weight() <= 1000);
    }
}
