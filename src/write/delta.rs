//! Delta compression, write side: which base a new chunk is compressed
//! against. (Decoding a chain of deltas is [`crate::repo::chain`].)
//!
//! Write side. While a file or stream is chunked, a [`ParentCursor`] follows
//! the same file's version in the parent snapshot and names, for each new
//! chunk, the parent chunk that covers the same region of the old version:
//! every chunk that deduplicates re-anchors the offset between the versions,
//! and a new chunk is matched to the parent chunk it overlaps most. A parent
//! cut point close to where a new chunk ends re-anchors it too, so a run of
//! changed chunks stays aligned even when no chunk in it deduplicates.
//! [`plan`] turns that "previous version" into a base under the skip-delta
//! rule: a region's versions are numbered by generation `g` since its last
//! full chunk, and version `g` is compressed against its ancestor of
//! generation `g & (g - 1)` (the lowest set bit cleared). A chain then has
//! at most `popcount(g)` deltas — 5 for the [`RESTART_GENERATION`] of 32 —
//! while most deltas are against yesterday's version. At generation 32 the
//! region is stored whole again.

use crate::blob::MAX_DELTA_DEPTH;
use crate::blob::{self, BlobInfo, DeltaRef};
use crate::format::tree::{ChunkList, ChunkRef, Content};
use crate::ids::ChunkId;
use crate::index::{Index, Location};
use crate::repo::chain::chain;
use crate::repo::Repository;
use std::collections::HashMap;

/// A region is stored whole again when its generation would reach this, which
/// bounds a writer's chains at `log2(RESTART_GENERATION)` = 5 deltas.
pub const RESTART_GENERATION: u32 = 32;

/// The base a new chunk is to be compressed against.
#[derive(Clone, Debug)]
pub struct DeltaPlan {
    pub delta: DeltaRef,
    /// The base first, then its base, …, down to a full chunk.
    pub chain: Vec<Location>,
}

fn generation(b: &BlobInfo) -> u32 {
    b.delta.map(|d| d.generation).unwrap_or(0)
}

fn depth(b: &BlobInfo) -> u16 {
    b.delta.map(|d| d.depth).unwrap_or(0)
}

/// The skip-delta base for a new version of the region whose previous version is `prev`.
pub fn plan(index: &Index, prev: &ChunkId) -> Option<DeltaPlan> {
    let prev = index.lookup(prev)?;
    if prev.blob.kind != blob::BlobKind::Data {
        return None;
    }
    let g = generation(&prev.blob) + 1;
    if g >= RESTART_GENERATION {
        return None;
    }
    let target = g & (g - 1);
    // Walk down from the previous version to the ancestor the rule names.
    let mut base = prev;
    while generation(&base.blob) > target || depth(&base.blob) >= MAX_DELTA_DEPTH {
        let d = base.blob.delta?;
        base = index.lookup(&d.base)?;
    }
    let chain = chain(index, &base, None).ok()?.0;
    Some(DeltaPlan {
        delta: DeltaRef {
            base: base.blob.id,
            depth: depth(&base.blob) + 1,
            generation: g,
        },
        chain,
    })
}

struct Segment {
    start: u64,
    bytes: u64,
    list: Option<ChunkId>,
    /// Loaded chunks: (offset in the file, ref).
    chunks: Option<Vec<(u64, ChunkRef)>>,
    /// First 8 bytes of each loaded id → its index in `chunks`.
    by_id: HashMap<u64, u32>,
}

fn short(id: &ChunkId) -> u64 {
    u64::from_le_bytes(id.0[..8].try_into().expect("8 bytes"))
}

impl Segment {
    fn load(&mut self, chunks: Vec<ChunkRef>) {
        let mut at = self.start;
        let mut v = Vec::with_capacity(chunks.len());
        self.by_id = HashMap::with_capacity(chunks.len());
        for (i, c) in chunks.into_iter().enumerate() {
            self.by_id.insert(short(&c.id), i as u32);
            v.push((at, c));
            at += c.len as u64;
        }
        self.chunks = Some(v);
    }
    fn unload(&mut self) {
        self.chunks = None;
        self.by_id = HashMap::new();
    }
}

/// At most this many chunk-list segments are held at once (each up to 32 Ki refs).
const LOADED_SEGMENTS: usize = 2;

/// Follows the parent version of one file or stream while its new version is
/// chunked; memory stays bounded by `LOADED_SEGMENTS` chunk lists.
pub struct ParentCursor<'r> {
    repo: &'r Repository,
    index: &'r Index,
    segments: Vec<Segment>,
    loaded: Vec<usize>,
    /// Parent offset minus new offset, as last anchored.
    shift: i64,
    total: u64,
    /// How far a parent cut point may lie from a new chunk's predicted end
    /// (and at most an eighth of that chunk) and still re-anchor the
    /// alignment: a quarter of the chunker's smallest chunk (4 KiB by
    /// default), well under half, so the nearest cut is the one that moved
    /// and not a neighbour.
    max_drift: u64,
}

impl<'r> ParentCursor<'r> {
    /// A cursor over `parent` (the same file's content in the parent snapshot).
    pub fn new(repo: &'r Repository, index: &'r Index, parent: &Content) -> ParentCursor<'r> {
        let mut segments = Vec::new();
        let mut total = 0u64;
        match parent {
            Content::Chunks(c) => {
                let bytes = c.iter().map(|c| c.len as u64).sum();
                let mut s = Segment {
                    start: 0,
                    bytes,
                    list: None,
                    chunks: None,
                    by_id: HashMap::new(),
                };
                s.load(c.clone());
                segments.push(s);
                total = bytes;
            }
            Content::Lists(lists) => {
                for l in lists {
                    segments.push(Segment {
                        start: total,
                        bytes: l.bytes,
                        list: Some(l.id),
                        chunks: None,
                        by_id: HashMap::new(),
                    });
                    total += l.bytes;
                }
            }
        }
        // An inline list is loaded from the start (and, alone, never evicted).
        let loaded = match parent {
            Content::Chunks(_) => vec![0],
            Content::Lists(_) => Vec::new(),
        };
        ParentCursor {
            repo,
            index,
            segments,
            loaded,
            shift: 0,
            total,
            max_drift: u64::from(repo.config().chunker.min / 4),
        }
    }

    fn segment_at(&self, off: u64) -> Option<usize> {
        if off >= self.total {
            return None;
        }
        let i = self.segments.partition_point(|s| s.start + s.bytes <= off);
        (i < self.segments.len()).then_some(i)
    }

    /// Makes segment `i` available; false if its chunk list cannot be read.
    fn ensure(&mut self, i: usize) -> bool {
        if self.segments[i].chunks.is_some() {
            return true;
        }
        let Some(list) = self.segments[i].list else {
            return false;
        };
        let chunks = self
            .repo
            .read_blob_by_id(self.index, &list, "a parent chunk list")
            .and_then(|b| ChunkList::decode(&b, "parent chunk list"));
        let Ok(chunks) = chunks else {
            // An unreadable parent list only costs this file its deltas.
            self.segments[i].list = None;
            return false;
        };
        if self.loaded.len() >= LOADED_SEGMENTS {
            let old = self.loaded.remove(0);
            self.segments[old].unload();
        }
        self.segments[i].load(chunks.chunks);
        self.loaded.push(i);
        true
    }

    fn predicted(&self, off: u64) -> u64 {
        (off as i64 + self.shift).max(0) as u64
    }

    /// A chunk of the new version at `off` that the repository already holds:
    /// if the parent has it nearby, it re-anchors the alignment.
    pub fn known(&mut self, id: &ChunkId, off: u64) {
        let guess = self.predicted(off).min(self.total.saturating_sub(1));
        if let Some(i) = self.segment_at(guess) {
            // Loading the segment at the guess keeps the window moving along.
            self.ensure(i);
        }
        let found = self.loaded.iter().find_map(|&s| {
            let seg = &self.segments[s];
            let k = *seg.by_id.get(&short(id))?;
            let (at, c) = seg.chunks.as_ref()?[k as usize];
            (c.id == *id).then_some(at)
        });
        if let Some(at) = found {
            self.shift = at as i64 - off as i64;
        }
    }

    /// The parent chunk that covers most of the new chunk `[off, off + len)`.
    pub fn previous(&mut self, off: u64, len: u32) -> Option<ChunkId> {
        let start = self.predicted(off);
        let end = start + len as u64;
        // The parent chunk that overlaps most (overlap, ref), and the
        // parent's cut point nearest to where this chunk is predicted to end.
        let mut best: Option<(u64, ChunkRef)> = None;
        let mut nearest: Option<u64> = None;
        let mut at = start;
        while at < end {
            // Past the parent's end, or a chunk list that cannot be read: use what was found.
            let Some(i) = self.segment_at(at) else {
                break;
            };
            if !self.ensure(i) {
                break;
            }
            let seg = &self.segments[i];
            let Some(chunks) = seg.chunks.as_ref() else {
                break;
            };
            let mut k = chunks.partition_point(|(o, c)| o + c.len as u64 <= at);
            while k < chunks.len() && chunks[k].0 < end {
                let (o, c) = chunks[k];
                let overlap = (o + c.len as u64).min(end) - o.max(start);
                if best.is_none_or(|b| overlap > b.0) {
                    best = Some((overlap, c));
                }
                for cut in [o, o + c.len as u64] {
                    if nearest.is_none_or(|n| cut.abs_diff(end) < n.abs_diff(end)) {
                        nearest = Some(cut);
                    }
                }
                k += 1;
            }
            let next = seg.start + seg.bytes;
            if next <= at {
                break;
            }
            at = next;
        }
        // Cut points are content-defined: where the new chunk ends, the
        // parent most likely has a cut too, moved only by the edits inside
        // this chunk. A parent cut that close re-anchors the alignment at
        // this chunk's end. One farther away means a cut point moved (or
        // more was inserted than the tolerance): the old alignment stays,
        // and the next chunk that deduplicates re-anchors it exactly.
        // (Re-anchoring on the end of the best-overlapping parent chunk
        // instead, as before, could lock the alignment one chunk off for
        // the rest of a stream after a single moved cut point.)
        let tolerance = (len as u64 / 8).min(self.max_drift);
        if let Some(cut) = nearest.filter(|c| c.abs_diff(end) <= tolerance) {
            self.shift = cut as i64 - (off + len as u64) as i64;
        }
        let (overlap, c) = best?;
        if overlap * 2 < len as u64 {
            return None;
        }
        Some(c.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skip_delta_depth_is_popcount() {
        // The generation rule alone: following g → g & (g - 1) reaches 0 in popcount(g) steps.
        for g in 1..RESTART_GENERATION {
            let mut steps = 0;
            let mut x = g;
            while x != 0 {
                x &= x - 1;
                steps += 1;
            }
            assert_eq!(steps, g.count_ones());
            assert!(steps <= 5);
        }
    }

    /// An empty repository in `dir` (a cursor over an inline list reads nothing from it).
    fn empty_repo(dir: &std::path::Path) -> Repository {
        let opts = crate::repo::InitOptions {
            kdf: crate::format::keyfile::KdfParams::CHEAPEST,
            ..Default::default()
        };
        let open = crate::repo::OpenOptions {
            cache_dir: Some(dir.join("cache")),
            base_cache_bytes: None,
        };
        let pw = crate::crypto::Password::new(b"pw".to_vec());
        Repository::init(&dir.join("r"), &pw, &opts, &open).unwrap()
    }

    #[test]
    fn cursor_follows_the_parent_version_through_changes() {
        let dir = tempfile::tempdir().unwrap();
        let repo = empty_repo(dir.path());
        let index = repo.index().unwrap();
        let id = |b: u8| ChunkId([b; 32]);
        let r = |b: u8, len: u32| ChunkRef { id: id(b), len };
        // The parent: A B C D E, 100 bytes each.
        let parent = Content::Chunks(vec![r(1, 100), r(2, 100), r(3, 100), r(4, 100), r(5, 100)]);
        let mut c = ParentCursor::new(&repo, &index, &parent);
        // A changed in place; B unchanged.
        assert_eq!(c.previous(0, 100), Some(id(1)));
        c.known(&id(2), 100);
        // C grew by 10 bytes: still C, and D is expected 10 bytes later.
        assert_eq!(c.previous(200, 110), Some(id(3)));
        assert_eq!(c.previous(310, 100), Some(id(4)));
        // 30 bytes inserted into E: the cut points no longer agree, so the
        // alignment stays as it was.
        assert_eq!(c.previous(410, 130), Some(id(5)));
        assert_eq!(c.shift, -10);
        // A chunk that the parent covers less than half of gets no base.
        assert_eq!(c.previous(300, 250), None);
        // Beyond the parent's end there is nothing to compare with.
        assert_eq!(c.previous(540, 100), None);
        // An unchanged chunk re-anchors the alignment.
        c.known(&id(2), 0);
        assert_eq!(c.shift, 100);
    }

    #[test]
    fn a_moved_cut_point_does_not_shift_the_alignment_by_a_chunk() {
        let dir = tempfile::tempdir().unwrap();
        let repo = empty_repo(dir.path());
        let index = repo.index().unwrap();
        let id = |b: u8| ChunkId([b; 32]);
        let r = |b: u8, len: u32| ChunkRef { id: id(b), len };
        // The parent: P1 [0,1000) P2 [1000,2280) P3 [2280,2830) P4 [2830,3830) P5 [3830,4830).
        let parent = Content::Chunks(vec![
            r(1, 1000),
            r(2, 1280),
            r(3, 550),
            r(4, 1000),
            r(5, 1000),
        ]);
        let mut c = ParentCursor::new(&repo, &index, &parent);
        assert_eq!(c.previous(0, 1000), Some(id(1)));
        // The cut between P2 and P3 moved: the same 1830 bytes are now cut
        // 660 + 1170. Both new chunks overlap P2 most, and the second is
        // about as long as P2, but its end matches P3's end.
        assert_eq!(c.previous(1000, 660), Some(id(2)));
        assert_eq!(c.previous(1660, 1170), Some(id(2)));
        assert_eq!(c.shift, 0);
        // So every later chunk still meets its own parent version.
        assert_eq!(c.previous(2830, 1003), Some(id(4)));
        assert_eq!(c.shift, -3, "a few bytes of edits re-anchor at the end");
        assert_eq!(c.previous(3833, 1000), Some(id(5)));
    }
}
