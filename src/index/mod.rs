//! Index files, and the merged, memory-mapped index used for lookups.
//!
//! An index file maps chunk ids to where their blobs live. Each snapshot run
//! writes one (or a few, for large runs) after its packs and before its
//! manifest; prune writes compacted ones that list the files they supersede.
//!
//! ```text
//! header(16): "SOPVIDX\0" | version u32 | flags u32 (0)
//! sealed with the metadata key, AAD = the header; plaintext:
//!   n_supersedes u32 | n × index_id[32]
//!   n_packs u32      | n × (pack_id[32] | pack_size u64)
//!   n_entries u32    | n × (pack_no u32 | pack entry(88)), sorted by chunk id
//! ```
//!
//! The repository's index is the union of every index file present, superseded
//! ones included, minus entries whose pack is absent; supersession only says
//! what prune may delete and which copy of a chunk a reader prefers. [`Index`] merges them
//! into one local file of sorted fixed-size entries with a bucket table on the
//! first two bytes of the id, read through memmap2: a lookup touches about
//! one page and the index never has to fit in RAM.
//!
//! Rewriting that file costs a write and an fsync of the whole merged index,
//! so the few files a day's runs add are not merged into it one run at a
//! time: up to [`OVERLAY_MAX_FILES`] files and [`OVERLAY_MAX_ENTRIES`]
//! entries newer than the cache are held in a small sorted overlay in memory,
//! and the cache is rewritten only once they outgrow it.
//!
//!
//! # Layout
//! - [`file`](mod@file): one index file's byte layout, encoding and checked decoding;
//! - [`filter`]: the blocked Bloom filter stored in the cache;
//! - `cache`: the cache file's layout, writing it, and opening it through a
//!   checked memory map;
//! - `build`: bringing the cache up to date with the index files present
//!   (open, overlay, merge or rebuild);
//! - this module: [`Index`], the lookups over the cache and its overlay.
//!
//! Layer: uses `format`, `blob`, `crypto` and the base modules; the
//! repository layer reads and writes the files.

mod build;
mod cache;
pub mod file;
pub mod filter;

pub use build::{OVERLAY_MAX_ENTRIES, OVERLAY_MAX_FILES};
pub use cache::{cache_path, create_private_dir};
pub use file::{IndexFile, INDEX_ENTRY_LEN, MAX_INDEX_ENTRIES, MAX_INDEX_PACKS};

use crate::blob::BlobInfo;
use crate::format::pack::decode_entry;
use crate::format::Reader;
use crate::ids::{ChunkId, IndexId, PackId};
use cache::{bucket_of, CACHE_HEADER_LEN};

/// Where a blob lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Location {
    pub pack: PackId,
    pub blob: BlobInfo,
}

/// The merged index of a repository: the cache file, read through a memory
/// map, plus an overlay of entries from index files newer than the cache.
pub struct Index {
    map: Option<memmap2::Mmap>,
    packs: Vec<(PackId, u64)>,
    included: Vec<IndexId>,
    entries_off: usize,
    count: u64,
    filter_off: usize,
    filter_blocks: u64,
    /// (pack_no, blob) of ids the cache does not hold, sorted by id, unique;
    /// their positions follow the cache's (`count + i`).
    overlay: Vec<(u32, BlobInfo)>,
    /// Why the cache file found on disk was not trusted and had to be
    /// rebuilt (it failed authentication or its checks), for a warning.
    rejected_cache: Option<String>,
}

/// Deltas to decode to reach the chunk: 0 for a full blob.
fn depth(b: &BlobInfo) -> u16 {
    b.delta.map_or(0, |d| d.depth)
}

impl Index {
    /// The ids of the index files merged into this view.
    pub fn included(&self) -> &[IndexId] {
        &self.included
    }
    /// Every present pack listed by a merged index file, with its size.
    pub fn packs(&self) -> &[(PackId, u64)] {
        &self.packs
    }
    pub fn len(&self) -> u64 {
        self.count + self.overlay.len() as u64
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn entry_bytes(&self, i: u64) -> &[u8] {
        let map = self.map.as_ref().expect("non-empty index has a map");
        let off = self.entries_off + i as usize * INDEX_ENTRY_LEN;
        &map[off..off + INDEX_ENTRY_LEN]
    }

    /// The entry at position `i`; `None` if the cache file was corrupted
    /// (then the chunk counts as absent: a snapshot stores it again, a
    /// restore reports it missing, nothing panics).
    fn decode_at(&self, i: u64) -> Option<Location> {
        if i >= self.count {
            let (pack_no, blob) = *self.overlay.get((i - self.count) as usize)?;
            return Some(Location {
                pack: self.packs.get(pack_no as usize)?.0,
                blob,
            });
        }
        let b = self.entry_bytes(i);
        let pack_no = u32::from_le_bytes(b[..4].try_into().unwrap());
        let mut r = Reader::new(&b[4..], "index cache");
        let blob = decode_entry(&mut r, "index cache").ok()?;
        Some(Location {
            pack: self.packs.get(pack_no as usize)?.0,
            blob,
        })
    }

    fn bucket_range(&self, b: usize) -> (u64, u64) {
        let map = self.map.as_ref().unwrap();
        let at = |k: usize| {
            let off = CACHE_HEADER_LEN + k * 8;
            u64::from_le_bytes(map[off..off + 8].try_into().unwrap())
        };
        (at(b), at(b + 1))
    }

    fn filter_says_absent(&self, id: &ChunkId) -> bool {
        let map = self.map.as_ref().expect("non-empty index has a map");
        let word = |i: usize| {
            let off = self.filter_off + i * 8;
            u64::from_le_bytes(map[off..off + 8].try_into().unwrap())
        };
        !filter::may_contain(word, self.filter_blocks, id)
    }

    /// The entry's position, unique and below [`Index::len`], for compact
    /// per-entry bitsets (prune's mark phase).
    pub fn position(&self, id: &ChunkId) -> Option<u64> {
        self.cache_position(id).or_else(|| {
            let i = self.overlay.binary_search_by(|e| e.1.id.cmp(id)).ok()?;
            Some(self.count + i as u64)
        })
    }

    fn cache_position(&self, id: &ChunkId) -> Option<u64> {
        if self.count == 0 || self.filter_says_absent(id) {
            return None;
        }
        let (mut lo, mut hi) = self.bucket_range(bucket_of(id));
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.entry_bytes(mid)[4..36].cmp(&id.0[..]) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return Some(mid),
            }
        }
        None
    }

    /// Every (position, location), in id order.
    pub fn iter_positions(&self) -> impl Iterator<Item = (u64, Location)> + '_ {
        let at = move |i: u64| Some((i, self.decode_at(i)?));
        let mut cached = (0..self.count).filter_map(at).peekable();
        let end = self.len();
        let mut newer = (self.count..end).filter_map(at).peekable();
        std::iter::from_fn(move || match (cached.peek(), newer.peek()) {
            (Some(c), Some(n)) if n.1.blob.id < c.1.blob.id => newer.next(),
            (Some(_), _) => cached.next(),
            (None, _) => newer.next(),
        })
    }

    pub fn lookup(&self, id: &ChunkId) -> Option<Location> {
        self.position(id).and_then(|pos| self.decode_at(pos))
    }

    /// Whether `id` is stored; the dedup check of every chunk, so it decodes nothing.
    pub fn contains(&self, id: &ChunkId) -> bool {
        self.position(id).is_some()
    }

    /// Every location, in chunk-id order.
    pub fn iter(&self) -> impl Iterator<Item = Location> + '_ {
        self.iter_positions().map(|(_, loc)| loc)
    }

    /// Why the cache file on disk was rejected and rebuilt in this open,
    /// if it was: a damaged or altered cache, not a damaged repository.
    pub fn rejected_cache(&self) -> Option<&str> {
        self.rejected_cache.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blob::{BlobKind, Codec};
    use crate::crypto::Secret32;
    use crate::ids::sha256;
    use std::collections::{BTreeMap, HashMap, HashSet};
    use std::os::unix::fs::PermissionsExt;

    fn test_key() -> Secret32 {
        Secret32::from_bytes([7; 32])
    }

    /// The shared deterministic generator, so failures reproduce, with chunk ids.
    struct Rng(crate::testutil::Rng);
    impl Rng {
        fn new(seed: u64) -> Rng {
            Rng(crate::testutil::Rng::new(seed))
        }
        fn next(&mut self) -> u64 {
            self.0.next_u64()
        }
        fn id(&mut self, space: u64) -> ChunkId {
            // A small id space makes duplicates across files common.
            let n = self.next() % space;
            ChunkId(*blake3::hash(&n.to_le_bytes()).as_bytes())
        }
    }

    fn blob(id: ChunkId, offset: u64) -> BlobInfo {
        BlobInfo {
            id,
            kind: BlobKind::Data,
            codec: Codec::Zstd,
            offset,
            stored_len: 100,
            raw_len: 200,
            delta: None,
        }
    }

    fn random_file(
        rng: &mut Rng,
        n_packs: usize,
        n_entries: usize,
        supersedes: Vec<IndexId>,
    ) -> IndexFile {
        let packs: Vec<(PackId, u64)> = (0..n_packs)
            .map(|_| (PackId(rng.id(u64::MAX).0), 4096))
            .collect();
        let mut entries: Vec<(u32, BlobInfo)> = (0..n_entries)
            .map(|i| {
                (
                    (rng.next() % n_packs as u64) as u32,
                    blob(rng.id(5000), 16 + i as u64),
                )
            })
            .collect();
        entries.sort_by_key(|e| e.1.id);
        IndexFile {
            supersedes,
            packs,
            entries,
        }
    }

    /// The union rule, computed the obvious way: every file counts; a file
    /// nothing supersedes wins a duplicate, then the first file in id order
    /// (the generated blobs are all full, so depth never decides here).
    fn model(
        files: &BTreeMap<IndexId, IndexFile>,
        present: &HashMap<PackId, u64>,
    ) -> BTreeMap<ChunkId, PackId> {
        let superseded: HashSet<IndexId> = files
            .values()
            .flat_map(|f| f.supersedes.iter().copied())
            .collect();
        let mut out = BTreeMap::new();
        let live = files.iter().filter(|(id, _)| !superseded.contains(id));
        let old = files.iter().filter(|(id, _)| superseded.contains(id));
        for (_, f) in live.chain(old) {
            for (p, b) in &f.entries {
                let pack = f.packs[*p as usize].0;
                if present.contains_key(&pack) {
                    out.entry(b.id).or_insert(pack);
                }
            }
        }
        out
    }

    fn check_against_model(index: &Index, expected: &BTreeMap<ChunkId, PackId>, rng: &mut Rng) {
        assert_eq!(index.len(), expected.len() as u64);
        let listed: Vec<ChunkId> = index.iter().map(|l| l.blob.id).collect();
        assert_eq!(
            listed,
            expected.keys().copied().collect::<Vec<_>>(),
            "iteration is sorted and complete"
        );
        for id in expected.keys() {
            let loc = index.lookup(id).expect("present id is found");
            assert_eq!(loc.blob.id, *id);
        }
        // Positions are unique, below len, and agree with position() (prune's bitsets).
        let mut seen = HashSet::new();
        for (pos, loc) in index.iter_positions() {
            assert!(pos < index.len() && seen.insert(pos));
            assert_eq!(index.position(&loc.blob.id), Some(pos));
            assert!(index.packs().iter().any(|(p, _)| *p == loc.pack));
        }
        assert_eq!(seen.len() as u64, index.len());
        for _ in 0..500 {
            let id = ChunkId(*blake3::hash(&rng.next().to_le_bytes()).as_bytes());
            if !expected.contains_key(&id) {
                assert!(index.lookup(&id).is_none());
            }
        }
    }

    /// Issue 20, item 1: a superseded index file still counts while its packs
    /// are present (a mirror in its grace period), and the file that
    /// supersedes it is preferred where both list a chunk.
    #[test]
    fn issue20_1_superseded_files_stay_in_the_union() {
        let dir = std::env::temp_dir().join(format!("sopvault-union-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut rng = Rng::new(7);
        let mut old = random_file(&mut rng, 2, 200, Vec::new());
        old.entries.dedup_by(|a, b| a.1.id == b.1.id);
        let old_id = IndexId(sha256(&old.encode_plain()));
        // The compacted file moves half of the old chunks to a new pack and
        // drops the rest (prune forgot them; the mirror still holds them).
        let new_pack = PackId(rng.id(u64::MAX).0);
        let moved: Vec<(u32, BlobInfo)> = old.entries.iter().step_by(2).map(|e| (0, e.1)).collect();
        let compact = IndexFile {
            supersedes: vec![old_id],
            packs: vec![(new_pack, 4096)],
            entries: moved.clone(),
        };
        let compact_id = IndexId(sha256(&compact.encode_plain()));
        let mut present: HashMap<PackId, u64> = old.packs.iter().copied().collect();
        present.insert(new_pack, 4096);
        let files: HashMap<IndexId, IndexFile> = [(old_id, old.clone()), (compact_id, compact)]
            .into_iter()
            .collect();
        let load = |i: &IndexId| Ok(files[i].clone());
        let index = Index::open_or_build(
            &dir.join("index.cache"),
            &test_key(),
            &[old_id, compact_id],
            &present,
            &load,
        )
        .unwrap();
        assert_eq!(index.len(), old.entries.len() as u64);
        for (_, b) in &moved {
            assert_eq!(index.lookup(&b.id).unwrap().pack, new_pack);
        }
        for (p, b) in old.entries.iter().skip(1).step_by(2) {
            assert_eq!(index.lookup(&b.id).unwrap().pack, old.packs[*p as usize].0);
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Issue 20, item 5.1: of a chunk stored once whole and once as a delta,
    /// every build keeps the whole copy, whichever file came first and
    /// whether the delta is in the cache and the whole copy new.
    #[test]
    fn issue20_5_the_shallowest_copy_of_an_id_wins() {
        let dir = std::env::temp_dir().join(format!("sopvault-depth-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut rng = Rng::new(11);
        let id = rng.id(u64::MAX);
        let one = |depth: u16, rng: &mut Rng| {
            let mut b = blob(id, 16);
            if depth > 0 {
                b.codec = Codec::Delta;
                b.delta = Some(crate::blob::DeltaRef {
                    base: rng.id(u64::MAX),
                    depth,
                    generation: 1,
                });
            }
            IndexFile {
                supersedes: Vec::new(),
                packs: vec![(PackId(rng.id(u64::MAX).0), 4096)],
                entries: vec![(0, b)],
            }
        };
        let deep = one(3, &mut rng);
        let full = one(0, &mut rng);
        let (deep_id, full_id) = (
            IndexId(sha256(&deep.encode_plain())),
            IndexId(sha256(&full.encode_plain())),
        );
        let present: HashMap<PackId, u64> = deep.packs.iter().chain(&full.packs).copied().collect();
        let files: HashMap<IndexId, IndexFile> = [(deep_id, deep), (full_id, full.clone())]
            .into_iter()
            .collect();
        let load = |i: &IndexId| Ok(files[i].clone());
        for (n, limits) in [(0, 0), (OVERLAY_MAX_FILES, OVERLAY_MAX_ENTRIES)]
            .into_iter()
            .enumerate()
        {
            let path = dir.join(format!("index{n}.cache"));
            // The delta alone first (cached), then both.
            Index::open_or_build_with(&path, &test_key(), &[deep_id], &present, &load, limits)
                .unwrap();
            let both = Index::open_or_build_with(
                &path,
                &test_key(),
                &[deep_id, full_id],
                &present,
                &load,
                limits,
            )
            .unwrap();
            assert_eq!(both.len(), 1);
            assert_eq!(
                both.lookup(&id).unwrap().pack,
                full.packs[0].0,
                "limits {limits:?}"
            );
            let _ = std::fs::remove_file(&path);
            let fresh = Index::open_or_build_with(
                &path,
                &test_key(),
                &[full_id, deep_id],
                &present,
                &load,
                limits,
            )
            .unwrap();
            assert_eq!(fresh.lookup(&id).unwrap().pack, full.packs[0].0);
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn incremental_and_full_builds_agree_with_the_union_rule() {
        // Never an overlay, the default limits, and limits that mix overlays and merges.
        for (n, limits) in [(0, 0), (OVERLAY_MAX_FILES, OVERLAY_MAX_ENTRIES), (3, 1000)]
            .into_iter()
            .enumerate()
        {
            builds_agree_with_the_union_rule(n, limits);
        }
    }

    fn builds_agree_with_the_union_rule(n: usize, limits: (usize, usize)) {
        let dir =
            std::env::temp_dir().join(format!("sopvault-index-test-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("index.cache");
        let mut rng = Rng::new(0x9e3779b97f4a7c15);
        let mut files: BTreeMap<IndexId, IndexFile> = BTreeMap::new();
        let mut present: HashMap<PackId, u64> = HashMap::new();
        let mut overlays = 0;
        for round in 0..12 {
            // Mostly additions (incremental path); sometimes a file that supersedes
            // others (full rebuild); sometimes a pack goes missing.
            let supersedes = if round % 5 == 4 {
                files.keys().take(2).copied().collect()
            } else {
                Vec::new()
            };
            let f = random_file(&mut rng, 3, 400, supersedes);
            for (p, s) in &f.packs {
                present.insert(*p, *s);
            }
            if round % 4 == 3 {
                let gone = *present.keys().next().unwrap();
                present.remove(&gone);
                // A pack disappearing changes nothing the cache keys on, so
                // start from scratch as a real run would after prune.
                let _ = std::fs::remove_file(&path);
            }
            let id = IndexId(sha256(&f.encode_plain()));
            files.insert(id, f);
            let ids: Vec<IndexId> = files.keys().copied().collect();
            let load = |i: &IndexId| Ok(files[i].clone());
            let index =
                Index::open_or_build_with(&path, &test_key(), &ids, &present, &load, limits)
                    .unwrap();
            check_against_model(&index, &model(&files, &present), &mut rng);
            let overlaid = !index.overlay.is_empty();
            assert!(!overlaid || limits.0 > 0, "no overlay beyond its limits");
            // Reopening the same set sees the same thing.
            let again =
                Index::open_or_build_with(&path, &test_key(), &ids, &present, &load, limits)
                    .unwrap();
            assert_eq!(again.len(), index.len());
            assert_eq!(again.overlay.len(), index.overlay.len());
            overlays += usize::from(overlaid);
        }
        assert_eq!(
            overlays > 0,
            limits.0 > 0,
            "overlays used exactly when allowed"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_corrupted_cache_never_panics() {
        let dir =
            std::env::temp_dir().join(format!("sopvault-index-corrupt-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("index.cache");
        let mut rng = Rng::new(42);
        let f = random_file(&mut rng, 2, 300, Vec::new());
        let present: HashMap<PackId, u64> = f.packs.iter().copied().collect();
        let id = IndexId(sha256(&f.encode_plain()));
        let load = |_: &IndexId| Ok(f.clone());
        Index::open_or_build(&path, &test_key(), &[id], &present, &load).unwrap();
        let good = std::fs::read(&path).unwrap();
        for step in 0..200 {
            let mut bad = good.clone();
            let at = (rng.next() as usize) % bad.len();
            bad[at] ^= 1 << (step % 8);
            std::fs::write(&path, &bad).unwrap();
            // Either the cache is rejected and rebuilt, or lookups stay panic-free.
            if let Ok(index) = Index::open_or_build(&path, &test_key(), &[id], &present, &load) {
                for (_, b) in &f.entries {
                    let _ = index.lookup(&b.id);
                }
                let _ = index.iter().count();
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_flipped_bit_anywhere_in_the_cache_is_caught_and_the_cache_rebuilt() {
        let dir = std::env::temp_dir().join(format!("sopvault-index-mac-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("index.cache");
        let mut rng = Rng::new(7);
        let f = random_file(&mut rng, 2, 300, Vec::new());
        let present: HashMap<PackId, u64> = f.packs.iter().copied().collect();
        let id = IndexId(sha256(&f.encode_plain()));
        let load = |_: &IndexId| Ok(f.clone());
        let key = test_key();
        let fresh = Index::open_or_build(&path, &key, &[id], &present, &load).unwrap();
        assert!(fresh.rejected_cache().is_none());
        assert!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777 == 0o600);
        let good = std::fs::read(&path).unwrap();
        // Past the version (an older version is rebuilt without a warning).
        for step in 0..50 {
            let mut bad = good.clone();
            let at = 12 + (rng.next() as usize) % (bad.len() - 12);
            bad[at] ^= 1 << (step % 8);
            std::fs::write(&path, &bad).unwrap();
            let index = Index::open_or_build(&path, &key, &[id], &present, &load).unwrap();
            assert!(
                index.rejected_cache().is_some(),
                "byte {at} flipped unnoticed"
            );
            for (_, b) in &f.entries {
                assert!(index.lookup(&b.id).is_some());
            }
        }
        // Another key (another repository's cache in its place) fails too.
        let other = Secret32::from_bytes([8; 32]);
        let index = Index::open_or_build(&path, &other, &[id], &present, &load).unwrap();
        assert!(index.rejected_cache().is_some());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_filter_has_no_false_negatives_and_few_false_positives() {
        let n = 100_000u64;
        let blocks = filter::blocks_for(n);
        let mut words = vec![0u64; blocks as usize * filter::BLOCK_WORDS];
        let id = |i: u64| ChunkId(*blake3::hash(&i.to_le_bytes()).as_bytes());
        for i in 0..n {
            filter::insert(&mut words, blocks, &id(i));
        }
        let word = |i: usize| words[i];
        assert!((0..n).all(|i| filter::may_contain(word, blocks, &id(i))));
        let false_positives = (n..2 * n)
            .filter(|i| filter::may_contain(word, blocks, &id(*i)))
            .count();
        let rate = false_positives as f64 / n as f64;
        assert!(rate < 0.03, "false positive rate {rate}");
    }
}
