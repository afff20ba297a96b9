//! Reading a delta's chain of bases: [`chain`] walks a delta's bases through
//! the index down to a full chunk (or one in the [`BaseCache`]) and
//! [`decode_chain`] decodes them bottom-up. Every link is checked: a base must
//! exist, be data, and have exactly one less depth, so a chain has at most
//! [`MAX_DELTA_DEPTH`] links. The write side (which base a new chunk is
//! compressed against) is [`crate::write::delta`].

use crate::backend::{Backend, FileKind};
use crate::blob::cache::ChunkLru;
use crate::blob::{self, BlobInfo, Codec, MAX_DELTA_DEPTH};
use crate::crypto::MasterKey;
use crate::error::{Error, Result};
use crate::ids::ChunkId;
use crate::index::{Index, Location};
use std::sync::Arc;

fn depth(b: &BlobInfo) -> u16 {
    b.delta.map(|d| d.depth).unwrap_or(0)
}

/// A chain's links, and the cached plaintext it ends on (if it ends on one).
pub type Chain = (Vec<Location>, Option<Arc<Vec<u8>>>);

/// The locations from `first` down to a full chunk, or to the first chunk
/// below `first` that the cache holds (left out, its plaintext returned).
/// Checks every link.
pub fn chain(index: &Index, first: &Location, cache: Option<&BaseCache>) -> Result<Chain> {
    let mut out = vec![*first];
    loop {
        let cur = *out.last().expect("never empty");
        if let (Some(c), true) = (cache, out.len() > 1) {
            if let Some(p) = c.get(&cur.blob.id) {
                out.pop();
                return Ok((out, Some(p)));
            }
        }
        let Some(d) = cur.blob.delta else {
            return Ok((out, None));
        };
        let damaged = |reason: String| Error::BlobDamaged {
            chunk: cur.blob.id,
            pack: cur.pack,
            offset: cur.blob.offset,
            reason,
        };
        let base = index
            .lookup(&d.base)
            .ok_or_else(|| damaged(format!("its delta base {} is not in the index", d.base)))?;
        // The index keeps the shallowest copy of an id, so an honest base is at
        // most `depth - 1` deep (format-spec §10.4 rule 3).
        if base.blob.kind != blob::BlobKind::Data || depth(&base.blob) >= d.depth {
            return Err(damaged(format!(
                "its delta base {} has depth {}, expected at most {}",
                d.base,
                depth(&base.blob),
                d.depth - 1
            )));
        }
        out.push(base);
        if out.len() > MAX_DELTA_DEPTH as usize + 1 {
            return Err(damaged("delta chain is longer than allowed".into()));
        }
    }
}

/// How much of each link [`decode_chain`] checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkCheck {
    /// Authenticity, length and the recomputed id: the plaintext is
    /// verified on its own. Writers and repairs need this.
    Full,
    /// Authenticity and length only: for a reader that verifies, in full,
    /// the chunk decoded on top of the chain, and decodes the chain again
    /// with [`LinkCheck::Full`] when that fails (to name the damaged link).
    Authenticity,
}

/// Decodes `chain` bottom-up (its last element first, on top of `start` when
/// the chain ends at a cached chunk) and returns the plaintext of `chain[0]`.
/// Every decoded link is offered to `cache`.
pub fn decode_chain(
    key: &MasterKey,
    backend: &dyn Backend,
    chain: &[Location],
    start: Option<Arc<Vec<u8>>>,
    cache: Option<&BaseCache>,
    check: LinkCheck,
) -> Result<Arc<Vec<u8>>> {
    let mut plain: Option<Arc<Vec<u8>>> = start;
    for loc in chain.iter().rev() {
        let sealed = backend.read_range(
            FileKind::Pack,
            &loc.pack.to_hex(),
            loc.blob.offset,
            loc.blob.stored_len as usize,
        )?;
        let opened = match (check, loc.blob.codec, &plain) {
            (LinkCheck::Authenticity, _, base) => blob::open_link(
                key,
                &loc.blob,
                &sealed,
                base.as_deref().map(|b| b.as_slice()),
            ),
            (LinkCheck::Full, Codec::Delta, Some(base)) => {
                blob::open_delta(key, &loc.blob, &sealed, base)
            }
            (LinkCheck::Full, _, _) => blob::open(key, &loc.blob, &sealed),
        };
        let p = Arc::new(opened.map_err(|e| Error::BlobDamaged {
            chunk: loc.blob.id,
            pack: loc.pack,
            offset: loc.blob.offset,
            reason: e.to_string(),
        })?);
        if let Some(c) = cache {
            c.put(loc.blob.id, p.clone());
        }
        plain = Some(p);
    }
    plain.ok_or_else(|| Error::Internal {
        what: "empty delta chain".into(),
    })
}

/// Decoded base plaintexts, least recently used first out, within a byte
/// budget; a base over a quarter of the budget is not kept, so one large
/// chunk cannot push out every other base.
pub struct BaseCache {
    inner: std::sync::Mutex<ChunkLru>,
}

impl BaseCache {
    pub fn new(budget: usize) -> BaseCache {
        BaseCache {
            inner: std::sync::Mutex::new(ChunkLru::new(budget, budget / 4)),
        }
    }

    pub fn get(&self, id: &ChunkId) -> Option<Arc<Vec<u8>>> {
        self.lock().get(id)
    }

    /// Keeps a decoded base; one decoded again (verified this time) replaces the old.
    pub fn put(&self, id: ChunkId, plain: Arc<Vec<u8>>) {
        self.lock().put(id, plain);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ChunkLru> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_evicts_least_recently_used() {
        let c = BaseCache::new(400);
        let id = |b: u8| ChunkId([b; 32]);
        c.put(id(1), Arc::new(vec![0; 100]));
        c.put(id(2), Arc::new(vec![0; 100]));
        c.put(id(3), Arc::new(vec![0; 100]));
        assert!(c.get(&id(1)).is_some());
        c.put(id(4), Arc::new(vec![0; 100]));
        c.put(id(5), Arc::new(vec![0; 100]));
        assert!(c.get(&id(2)).is_none(), "2 was the least recently used");
        assert!(c.get(&id(1)).is_some());
        assert!(c.get(&id(5)).is_some());
        c.put(id(6), Arc::new(vec![0; 200]));
        assert!(
            c.get(&id(6)).is_none(),
            "larger than a quarter of the budget"
        );
    }
}
