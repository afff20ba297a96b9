//! [`ChunkLru`]: chunk plaintexts by id, least recently used first out,
//! within a byte budget. One type for the two caches of decoded chunks: the
//! repository's delta bases ([`crate::repo::chain::BaseCache`], which keeps
//! no entry over a quarter of its budget) and the mount's decrypted chunks
//! (`ops::vfs::ChunkCache`, which keeps any entry that fits). Each wraps it
//! in its own lock; this type itself does no locking.
//!
//! Recency is a counter: every get and put takes the next tick, and an
//! ordered map from tick to id names the entry to evict in `O(log n)`.

use crate::ids::ChunkId;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// Chunk plaintexts within `budget` bytes; entries over `largest` bytes are
/// not kept.
pub struct ChunkLru {
    map: HashMap<ChunkId, (Arc<Vec<u8>>, u64)>,
    order: BTreeMap<u64, ChunkId>,
    bytes: usize,
    tick: u64,
    budget: usize,
    largest: usize,
}

impl ChunkLru {
    /// An empty cache of `budget` bytes that keeps no entry over `largest` bytes.
    pub fn new(budget: usize, largest: usize) -> ChunkLru {
        ChunkLru {
            map: HashMap::new(),
            order: BTreeMap::new(),
            bytes: 0,
            tick: 0,
            budget,
            largest,
        }
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn contains(&self, id: &ChunkId) -> bool {
        self.map.contains_key(id)
    }

    /// The plaintext of `id`, which becomes the most recently used.
    pub fn get(&mut self, id: &ChunkId) -> Option<Arc<Vec<u8>>> {
        let tick = self.next_tick();
        let (plain, used) = self.map.get_mut(id)?;
        let old = std::mem::replace(used, tick);
        let plain = plain.clone();
        self.order.remove(&old);
        self.order.insert(tick, *id);
        Some(plain)
    }

    /// Keeps `plain` as the most recently used entry, evicting the least
    /// recently used ones until it fits; one over `largest` bytes is not
    /// kept. A plaintext already held under `id` is replaced (decoded again,
    /// verified this time), without evicting others.
    pub fn put(&mut self, id: ChunkId, plain: Arc<Vec<u8>>) {
        let len = plain.len();
        if len > self.largest {
            return;
        }
        let tick = self.next_tick();
        if let Some((held, used)) = self.map.get_mut(&id) {
            let old_len = std::mem::replace(held, plain).len();
            let old = std::mem::replace(used, tick);
            self.bytes = self.bytes - old_len + len;
            self.order.remove(&old);
            self.order.insert(tick, id);
            return;
        }
        while self.bytes + len > self.budget {
            let Some((_, oldest)) = self.order.pop_first() else {
                break;
            };
            if let Some((p, _)) = self.map.remove(&oldest) {
                self.bytes -= p.len();
            }
        }
        self.bytes += len;
        self.map.insert(id, (plain, tick));
        self.order.insert(tick, id);
    }

    fn next_tick(&mut self) -> u64 {
        self.tick += 1;
        self.tick
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(b: u8) -> ChunkId {
        ChunkId([b; 32])
    }

    #[test]
    fn evicts_the_least_recently_used_and_stays_within_budget() {
        let mut c = ChunkLru::new(300, 300);
        for n in 1..=3 {
            c.put(id(n), Arc::new(vec![n; 100]));
        }
        assert!(c.get(&id(1)).is_some());
        c.put(id(4), Arc::new(vec![4; 100]));
        assert!(!c.contains(&id(2)), "2 was the least recently used");
        assert!(c.contains(&id(1)) && c.contains(&id(3)) && c.contains(&id(4)));
        assert_eq!(c.bytes(), 300);
        c.put(id(5), Arc::new(vec![5; 250]));
        assert_eq!(c.bytes(), 250, "all three older entries made room");
        assert!(c.contains(&id(5)));
    }

    #[test]
    fn refuses_entries_over_the_largest_and_replaces_in_place() {
        let mut c = ChunkLru::new(400, 100);
        c.put(id(1), Arc::new(vec![1; 101]));
        assert!(!c.contains(&id(1)));
        c.put(id(1), Arc::new(vec![1; 100]));
        c.put(id(2), Arc::new(vec![2; 100]));
        c.put(id(1), Arc::new(vec![7; 50]));
        assert_eq!(c.bytes(), 150);
        assert_eq!(c.get(&id(1)).unwrap()[0], 7);
    }
}
