//! API keys resolved in the last moments, so that a busy key is not looked up in the database on
//! every request (a pooled connection and a round trip before the request's own work).
//!
//! An entry lives [`KEY_CACHE_TTL`]. Revoking a key or deleting a tenant clears the cache of the
//! server that did it, so there the key fails at once; another server sharing the database may
//! accept it until its entry expires.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::Principal;

/// How long a resolved key is trusted without a database lookup.
pub const KEY_CACHE_TTL: Duration = Duration::from_secs(2);
/// Most keys held; past it the cache starts over (a server sees few distinct keys a second).
const CAPACITY: usize = 10_000;

#[derive(Default)]
pub struct KeyCache {
    entries: Mutex<Entries>,
}

#[derive(Default)]
struct Entries {
    map: HashMap<[u8; 32], (Principal, Instant)>,
    /// Counts the clears: a lookup that began before one does not put its (maybe revoked) key.
    generation: u64,
}

impl KeyCache {
    /// The principal of the key hashed to `hash`, if it was resolved less than the TTL ago.
    pub fn get(&self, hash: &[u8; 32]) -> Option<Principal> {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries
            .map
            .get(hash)
            .filter(|(_, at)| at.elapsed() < KEY_CACHE_TTL)
            .map(|(principal, _)| principal.clone())
    }

    /// The generation to give [`KeyCache::put`]: take it before the database lookup.
    pub fn generation(&self) -> u64 {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner).generation
    }

    /// Keeps a key's principal, unless the cache was cleared since `generation` was taken.
    pub fn put(&self, hash: [u8; 32], principal: Principal, generation: u64) {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if entries.generation != generation {
            return;
        }
        if entries.map.len() >= CAPACITY {
            entries.map.retain(|_, (_, at)| at.elapsed() < KEY_CACHE_TTL);
            if entries.map.len() >= CAPACITY {
                entries.map.clear();
            }
        }
        entries.map.insert(hash, (principal, Instant::now()));
    }

    /// Forgets every key (after a revocation or a tenant's deletion).
    pub fn clear(&self) {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries.map.clear();
        entries.generation += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{Actor, Role};

    fn principal() -> Principal {
        Principal {
            actor: Actor::ApiKey(uuid::Uuid::nil()),
            role: Role::Reader,
            tenant_id: Some(uuid::Uuid::nil()),
        }
    }

    #[test]
    fn a_key_is_held_until_cleared() {
        let cache = KeyCache::default();
        assert!(cache.get(&[1; 32]).is_none());
        cache.put([1; 32], principal(), cache.generation());
        assert_eq!(cache.get(&[1; 32]).map(|p| p.role), Some(Role::Reader));
        assert!(cache.get(&[2; 32]).is_none());
        cache.clear();
        assert!(cache.get(&[1; 32]).is_none());
    }

    #[test]
    fn a_lookup_that_began_before_a_clear_is_not_kept() {
        let cache = KeyCache::default();
        let before = cache.generation();
        cache.clear();
        cache.put([1; 32], principal(), before);
        assert!(cache.get(&[1; 32]).is_none(), "the key may have been revoked meanwhile");
        cache.put([1; 32], principal(), cache.generation());
        assert!(cache.get(&[1; 32]).is_some());
    }
}
