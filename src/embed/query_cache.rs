//! A least-recently-used cache of query embeddings: the same search text is embedded once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

pub struct QueryCache {
    capacity: usize,
    inner: Mutex<Entries>,
}

#[derive(Default)]
struct Entries {
    map: HashMap<String, (Arc<Vec<f32>>, u64)>,
    tick: u64,
}

impl QueryCache {
    pub fn new(capacity: usize) -> Self {
        QueryCache {
            capacity,
            inner: Mutex::new(Entries::default()),
        }
    }

    pub fn get(&self, text: &str) -> Option<Arc<Vec<f32>>> {
        let mut entries = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        entries.tick += 1;
        let tick = entries.tick;
        entries.map.get_mut(text).map(|(vector, used)| {
            *used = tick;
            vector.clone()
        })
    }

    pub fn put(&self, text: String, vector: Arc<Vec<f32>>) {
        if self.capacity == 0 {
            return;
        }
        let mut entries = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        entries.tick += 1;
        let tick = entries.tick;
        if entries.map.len() >= self.capacity && !entries.map.contains_key(&text) {
            // O(capacity) eviction of the least recently used entry; small next to an embedding.
            if let Some(oldest) = entries
                .map
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(k, _)| k.clone())
            {
                entries.map.remove(&oldest);
            }
        }
        entries.map.insert(text, (vector, tick));
    }

    pub fn len(&self) -> usize {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner).map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_most_recently_used() {
        let cache = QueryCache::new(2);
        cache.put("a".into(), Arc::new(vec![1.0]));
        cache.put("b".into(), Arc::new(vec![2.0]));
        assert!(cache.get("a").is_some()); // a is now more recent than b
        cache.put("c".into(), Arc::new(vec![3.0]));

        assert!(cache.get("b").is_none(), "b was the least recently used");
        assert_eq!(cache.get("a").as_deref(), Some(&vec![1.0]));
        assert_eq!(cache.get("c").as_deref(), Some(&vec![3.0]));
        assert_eq!(cache.len(), 2);
    }
}
