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
//! Layer: uses `format`, `blob`, `crypto` and the base modules; the
//! repository layer reads and writes the files.

use crate::blob::BlobInfo;
use crate::crypto::{KeyPurpose, MasterKey, Secret32};
use crate::error::{Error, Result};
use crate::format::pack::{decode_entry, encode_entry, ENTRY_LEN};
use crate::format::{write_header, Reader, HEADER_LEN, MAGIC_INDEX};
use crate::ids::{ChunkId, IndexId, PackId};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::fs::{self, File};
use std::io::{BufWriter, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

pub const INDEX_ENTRY_LEN: usize = 4 + ENTRY_LEN;
/// Decoder limits for one index file.
pub const MAX_INDEX_ENTRIES: usize = 64 * 1024 * 1024;
pub const MAX_INDEX_PACKS: usize = 16 * 1024 * 1024;

/// The decoded contents of one index file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IndexFile {
    pub supersedes: Vec<IndexId>,
    pub packs: Vec<(PackId, u64)>,
    /// (position in `packs`, blob), sorted by chunk id.
    pub entries: Vec<(u32, BlobInfo)>,
}

impl IndexFile {
    pub fn encode_plain(&self) -> Vec<u8> {
        let mut out =
            Vec::with_capacity(12 + self.packs.len() * 40 + self.entries.len() * INDEX_ENTRY_LEN);
        out.extend_from_slice(&(self.supersedes.len() as u32).to_le_bytes());
        for s in &self.supersedes {
            out.extend_from_slice(&s.0);
        }
        out.extend_from_slice(&(self.packs.len() as u32).to_le_bytes());
        for (p, size) in &self.packs {
            out.extend_from_slice(&p.0);
            out.extend_from_slice(&size.to_le_bytes());
        }
        out.extend_from_slice(&(self.entries.len() as u32).to_le_bytes());
        let mut sorted: Vec<&(u32, BlobInfo)> = self.entries.iter().collect();
        sorted.sort_by_key(|e| e.1.id);
        for (p, b) in sorted {
            out.extend_from_slice(&p.to_le_bytes());
            encode_entry(&mut out, b);
        }
        out
    }

    pub fn encode(&self, key: &MasterKey) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        write_header(&mut out, MAGIC_INDEX, 0);
        let sealed = key.seal(KeyPurpose::Meta, &out.clone(), &self.encode_plain())?;
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    pub fn decode(key: &MasterKey, bytes: &[u8], object: &str) -> Result<IndexFile> {
        let mut r = Reader::new(bytes, object);
        r.header(MAGIC_INDEX)?;
        let plain = key
            .open(KeyPurpose::Meta, &bytes[..HEADER_LEN], r.rest())
            .ok_or_else(|| Error::damaged(object, "index file failed authentication"))?;
        Self::decode_plain(&plain, object)
    }

    pub fn decode_plain(plain: &[u8], object: &str) -> Result<IndexFile> {
        let mut r = Reader::new(plain, object);
        let n = r.u32()? as usize;
        if n * 32 > r.remaining() {
            return Err(Error::damaged(
                object,
                format!("claims {n} superseded files, too many for its size"),
            ));
        }
        let supersedes = (0..n)
            .map(|_| Ok(IndexId(r.array()?)))
            .collect::<Result<Vec<_>>>()?;
        let n = r.u32()? as usize;
        if n > MAX_INDEX_PACKS || n * 40 > r.remaining() {
            return Err(Error::damaged(
                object,
                format!("claims {n} packs, too many for its size"),
            ));
        }
        let packs = (0..n)
            .map(|_| Ok((PackId(r.array()?), r.u64()?)))
            .collect::<Result<Vec<_>>>()?;
        let n = r.u32()? as usize;
        if n > MAX_INDEX_ENTRIES || n * INDEX_ENTRY_LEN != r.remaining() {
            return Err(Error::damaged(
                object,
                format!("claims {n} entries but holds {} bytes", r.remaining()),
            ));
        }
        let mut entries = Vec::with_capacity(n);
        for _ in 0..n {
            let p = r.u32()?;
            if p as usize >= packs.len() {
                return Err(Error::damaged(
                    object,
                    format!("entry refers to pack #{p} of {}", packs.len()),
                ));
            }
            let b = decode_entry(&mut r, object)?;
            let pack_size = packs[p as usize].1;
            if b.offset
                .checked_add(b.stored_len as u64)
                .is_none_or(|end| end > pack_size)
            {
                return Err(Error::damaged(
                    object,
                    format!("entry for chunk {} lies past the end of its pack", b.id),
                ));
            }
            if let Some((_, prev)) = entries.last() {
                let prev: &BlobInfo = prev;
                if prev.id > b.id {
                    return Err(Error::damaged(object, "entries are not sorted by chunk id"));
                }
            }
            entries.push((p, b));
        }
        Ok(IndexFile {
            supersedes,
            packs,
            entries,
        })
    }
}

/// Where a blob lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Location {
    pub pack: PackId,
    pub blob: BlobInfo,
}

const CACHE_MAGIC: &[u8; 8] = b"SOPVIXC\0";
const BUCKETS: usize = 1 << 16;
const CACHE_HEADER_LEN: usize = 16 + 32 + 4 + 4 + 8;
const CACHE_VERSION: u32 = 3;
/// The keyed BLAKE3 MAC that ends the cache file.
const CACHE_MAC_LEN: usize = 32;

/// A blocked Bloom filter over the chunk ids, stored after the entries: one
/// 64-byte block per id (chosen by id bytes 8..16), six bits in it (from id
/// bytes 16..28, 9 bits each). About 10 bits per chunk give ~1% false
/// positives, so a new chunk (the common case when backing up new data) is
/// answered from one cache line without touching the entries.
pub mod filter {
    use crate::ids::ChunkId;

    pub const BLOCK_WORDS: usize = 8;
    const BITS_PER_ENTRY: u64 = 10;
    const PROBES: usize = 6;

    /// Number of 512-bit blocks for `count` entries (a power of two, at least 1).
    pub fn blocks_for(count: u64) -> u64 {
        (count * BITS_PER_ENTRY)
            .div_ceil(512)
            .max(1)
            .next_power_of_two()
    }

    fn probes(id: &ChunkId, blocks: u64) -> (usize, [u16; PROBES]) {
        let block = (u64::from_le_bytes(id.0[8..16].try_into().unwrap()) & (blocks - 1)) as usize;
        let mut bits = [0u16; PROBES];
        for (i, b) in bits.iter_mut().enumerate() {
            *b = u16::from_le_bytes([id.0[16 + 2 * i], id.0[17 + 2 * i]]) & 511;
        }
        (block, bits)
    }

    pub fn insert(words: &mut [u64], blocks: u64, id: &ChunkId) {
        let (block, bits) = probes(id, blocks);
        for b in bits {
            words[block * BLOCK_WORDS + (b as usize >> 6)] |= 1u64 << (b & 63);
        }
    }

    /// `word(i)` reads the i-th u64 of the filter.
    pub fn may_contain(word: impl Fn(usize) -> u64, blocks: u64, id: &ChunkId) -> bool {
        let (block, bits) = probes(id, blocks);
        bits.iter()
            .all(|&b| word(block * BLOCK_WORDS + (b as usize >> 6)) & (1u64 << (b & 63)) != 0)
    }
}

/// Index files newer than the cache are kept in memory, not merged into it,
/// while there are at most this many of them...
pub const OVERLAY_MAX_FILES: usize = 32;
/// ...holding at most this many entries (about 100 bytes of RAM each).
pub const OVERLAY_MAX_ENTRIES: usize = 1 << 16;

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

/// The pack table being built for a merge: `pack_no` is a position in `packs`.
#[derive(Default)]
struct PackTable {
    no: HashMap<PackId, u32>,
    packs: Vec<(PackId, u64)>,
}

impl PackTable {
    fn intern(&mut self, pack: PackId, size: u64) -> u32 {
        let packs = &mut self.packs;
        *self.no.entry(pack).or_insert_with(|| {
            packs.push((pack, size));
            (packs.len() - 1) as u32
        })
    }

    /// The entries of `files` whose pack is present, sorted by id and unique.
    /// Every file counts, superseded ones too (a superset of a valid
    /// repository is valid: a mirror keeps superseded files through its grace
    /// period). Of several copies of an id the shallowest is kept (a full
    /// blob before a delta, format-spec §12 rule 4), so every reader checks a
    /// delta against the same base; among copies of one depth, one from a
    /// file nothing supersedes, else the first in `files` order, so readers
    /// prefer the packs a prune wrote to those it condemned. Every present
    /// pack a file lists is interned, even one none of whose entries survive:
    /// "listed by no index" then means "orphaned".
    fn fresh_entries(
        &mut self,
        files: &[(IndexId, IndexFile)],
        superseded: &HashSet<IndexId>,
        present: &HashMap<PackId, u64>,
    ) -> Vec<(u32, BlobInfo)> {
        let mut fresh: Vec<(u32, BlobInfo)> = Vec::new();
        let live = files.iter().filter(|(id, _)| !superseded.contains(id));
        let old = files.iter().filter(|(id, _)| superseded.contains(id));
        for (_, f) in live.chain(old) {
            for (pid, size) in &f.packs {
                if present.contains_key(pid) {
                    self.intern(*pid, *size);
                }
            }
            for (p, b) in &f.entries {
                let (pid, size) = f.packs[*p as usize];
                if present.contains_key(&pid) {
                    fresh.push((self.intern(pid, size), *b));
                }
            }
        }
        // Stable: among copies of one depth, the file order above decides.
        fresh.sort_by_key(|e| (e.1.id, depth(&e.1)));
        fresh.dedup_by(|a, b| a.1.id == b.1.id);
        fresh
    }
}

fn set_hash(ids: &[IndexId]) -> [u8; 32] {
    let mut all = Vec::with_capacity(ids.len() * 32);
    for i in ids {
        all.extend_from_slice(&i.0);
    }
    crate::ids::sha256(&all)
}

/// Deltas to decode to reach the chunk: 0 for a full blob.
fn depth(b: &BlobInfo) -> u16 {
    b.delta.map_or(0, |d| d.depth)
}

fn bucket_of(id: &ChunkId) -> usize {
    ((id.0[0] as usize) << 8) | id.0[1] as usize
}

fn entry_to_bytes(out: &mut Vec<u8>, pack_no: u32, b: &BlobInfo) {
    out.extend_from_slice(&pack_no.to_le_bytes());
    encode_entry(out, b);
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

    /// Opens the cached merge at `path` if it covers exactly `current`;
    /// otherwise builds it, extending the old cache when only new files were
    /// added, or laying those over it in memory while they are few
    /// ([`OVERLAY_MAX_FILES`], [`OVERLAY_MAX_ENTRIES`]).
    /// `load` decodes one index file; `present` is the set of packs that exist.
    /// `key` authenticates the cache file ([`MasterKey::index_cache_key`]):
    /// one that does not verify is rebuilt, never read.
    pub fn open_or_build(
        path: &Path,
        key: &Secret32,
        current: &[IndexId],
        present: &HashMap<PackId, u64>,
        load: &(dyn Fn(&IndexId) -> Result<IndexFile> + Sync),
    ) -> Result<Index> {
        Index::open_or_build_with(
            path,
            key,
            current,
            present,
            load,
            (OVERLAY_MAX_FILES, OVERLAY_MAX_ENTRIES),
        )
    }

    /// [`Index::open_or_build`] with the overlay's limits (files, entries) as arguments.
    fn open_or_build_with(
        path: &Path,
        key: &Secret32,
        current: &[IndexId],
        present: &HashMap<PackId, u64>,
        load: &(dyn Fn(&IndexId) -> Result<IndexFile> + Sync),
        (max_files, max_entries): (usize, usize),
    ) -> Result<Index> {
        let mut current: Vec<IndexId> = current.to_vec();
        current.sort();
        let mut rejected = None;
        let old = match Index::open_cache(path, key) {
            Ok(o) if o.included == current => return Ok(o),
            Ok(o) => Some(o),
            Err(e) => {
                rejected = rejection(&e);
                None
            }
        };
        use rayon::prelude::*;
        let cur_set: BTreeSet<IndexId> = current.iter().copied().collect();
        // Superseded files drop out of the union.
        let to_load: Vec<IndexId> = match &old {
            Some(o) if o.included.iter().all(|i| cur_set.contains(i)) => {
                let have: HashSet<IndexId> = o.included.iter().copied().collect();
                current
                    .iter()
                    .filter(|i| !have.contains(i))
                    .copied()
                    .collect()
            }
            _ => current.clone(),
        };
        let loaded: Vec<(IndexId, IndexFile)> = to_load
            .par_iter()
            .map(|i| Ok((*i, load(i)?)))
            .collect::<Result<Vec<_>>>()?;
        let superseded: HashSet<IndexId> = loaded
            .iter()
            .flat_map(|(_, f)| f.supersedes.iter().copied())
            .collect();
        let incremental = match &old {
            Some(o) => o.included.iter().all(|i| cur_set.contains(i)) && superseded.is_empty(),
            None => false,
        };
        let new_entries: usize = loaded.iter().map(|(_, f)| f.entries.len()).sum();
        if let Some(o) = old.as_ref().filter(|_| incremental) {
            if loaded.len() <= max_files && new_entries <= max_entries {
                let mut table = PackTable {
                    no: o
                        .packs
                        .iter()
                        .enumerate()
                        .map(|(i, p)| (p.0, i as u32))
                        .collect(),
                    packs: o.packs.clone(),
                };
                let mut fresh = table.fresh_entries(&loaded, &superseded, present);
                // As in a merge, the cache wins ties of equal depth; a shallower
                // new copy replaces a cached entry, which only a merge can do.
                let shallower = fresh.iter().any(|e| {
                    o.cache_position(&e.1.id)
                        .and_then(|i| o.decode_at(i))
                        .is_some_and(|c| depth(&e.1) < depth(&c.blob))
                });
                if !shallower {
                    fresh.retain(|e| o.cache_position(&e.1.id).is_none());
                    let mut index = old.expect("matched above");
                    index.packs = table.packs;
                    index.included = current;
                    index.overlay = fresh;
                    return Ok(index);
                }
            }
        }
        if !superseded.is_empty() && to_load.len() != current.len() {
            // Something supersedes; rebuild from every file.
            let all: Vec<(IndexId, IndexFile)> = current
                .par_iter()
                .map(|i| Ok((*i, load(i)?)))
                .collect::<Result<Vec<_>>>()?;
            return Index::build(path, key, &current, all, None, present)
                .map(|i| i.rejected_because(rejected));
        }
        Index::build(
            path,
            key,
            &current,
            loaded,
            if incremental { old } else { None },
            present,
        )
        .map(|i| i.rejected_because(rejected))
    }

    fn rejected_because(mut self, why: Option<String>) -> Index {
        self.rejected_cache = why;
        self
    }

    fn build(
        path: &Path,
        key: &Secret32,
        included: &[IndexId],
        files: Vec<(IndexId, IndexFile)>,
        old: Option<Index>,
        present: &HashMap<PackId, u64>,
    ) -> Result<Index> {
        let superseded: HashSet<IndexId> = files
            .iter()
            .flat_map(|(_, f)| f.supersedes.iter().copied())
            .collect();
        let mut table = PackTable::default();
        let fresh = table.fresh_entries(&files, &superseded, present);
        let mut old_map = Vec::new();
        if let Some(o) = &old {
            debug_assert!(o.overlay.is_empty(), "an overlay is never extended");
            for (p, size) in &o.packs {
                old_map.push(table.intern(*p, *size));
            }
        }
        let packs = table.packs;
        // Merge old (already sorted) and fresh into a temporary file, then rename.
        let dir = path.parent().unwrap();
        create_private_dir(dir)?;
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        let result = (|| -> Result<()> {
            // A leftover of a crashed run with our pid may have other permissions.
            let _ = fs::remove_file(&tmp);
            let f = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)
                .map_err(|e| Error::io(&tmp, e))?;
            let mut w = MacWriter {
                inner: BufWriter::with_capacity(1 << 20, f),
                mac: blake3::Hasher::new_keyed(key.as_bytes()),
            };
            let old_count = old.as_ref().map(|o| o.count).unwrap_or(0);
            // Count entries first for the bucket table: walk the merge twice.
            let mut buckets = vec![0u64; BUCKETS + 1];
            let mut total = 0u64;
            merge(&old, &old_map, &fresh, old_count, |_, b| {
                buckets[bucket_of(&b.id) + 1] += 1;
                total += 1;
            });
            for i in 1..=BUCKETS {
                buckets[i] += buckets[i - 1];
            }
            let mut head = Vec::with_capacity(CACHE_HEADER_LEN + (BUCKETS + 1) * 8);
            head.extend_from_slice(CACHE_MAGIC);
            head.extend_from_slice(&CACHE_VERSION.to_le_bytes());
            head.extend_from_slice(&0u32.to_le_bytes());
            head.extend_from_slice(&set_hash(included));
            head.extend_from_slice(&(included.len() as u32).to_le_bytes());
            head.extend_from_slice(&(packs.len() as u32).to_le_bytes());
            head.extend_from_slice(&total.to_le_bytes());
            for b in &buckets {
                head.extend_from_slice(&b.to_le_bytes());
            }
            for i in included {
                head.extend_from_slice(&i.0);
            }
            for (p, s) in &packs {
                head.extend_from_slice(&p.0);
                head.extend_from_slice(&s.to_le_bytes());
            }
            w.write_all(&head).map_err(|e| Error::io(&tmp, e))?;
            let mut buf = Vec::with_capacity(INDEX_ENTRY_LEN);
            let mut err = None;
            let blocks = filter::blocks_for(total);
            let mut words = vec![0u64; blocks as usize * filter::BLOCK_WORDS];
            merge(&old, &old_map, &fresh, old_count, |p, b| {
                filter::insert(&mut words, blocks, &b.id);
                buf.clear();
                entry_to_bytes(&mut buf, p, b);
                if err.is_none() {
                    if let Err(e) = w.write_all(&buf) {
                        err = Some(e);
                    }
                }
            });
            if let Some(e) = err {
                return Err(Error::io(&tmp, e));
            }
            let filter_bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
            w.write_all(&filter_bytes).map_err(|e| Error::io(&tmp, e))?;
            let MacWriter { mut inner, mac } = w;
            inner
                .write_all(mac.finalize().as_bytes())
                .map_err(|e| Error::io(&tmp, e))?;
            inner
                .into_inner()
                .map_err(|e| Error::io(&tmp, e.into_error()))?
                .sync_all()
                .map_err(|e| Error::io(&tmp, e))?;
            Ok(())
        })();
        if let Err(e) = result {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        drop(old);
        fs::rename(&tmp, path).map_err(|e| Error::io(path, e))?;
        Index::open_cache(path, key)
    }

    /// Opens a cache file, after checking its version and its MAC over
    /// every byte before it; a cache of another version is
    /// [`Error::UnsupportedVersion`], one that fails the MAC or a check is
    /// [`Error::Damaged`].
    fn open_cache(path: &Path, key: &Secret32) -> Result<Index> {
        let mut f = File::open(path).map_err(|e| Error::io(path, e))?;
        let md = f.metadata().map_err(|e| Error::io(path, e))?;
        // Written by an older version with the umask's permissions: the ids
        // and lengths of the chunks are this user's business only.
        if md.permissions().mode() & 0o077 != 0 {
            let _ = f.set_permissions(fs::Permissions::from_mode(0o600));
        }
        let object = path.display().to_string();
        let mut head = [0u8; 12];
        f.read_exact(&mut head)
            .map_err(|_| Error::damaged(&object, "too short for an index cache"))?;
        if &head[..8] != CACHE_MAGIC {
            return Err(Error::damaged(&object, "not an index cache"));
        }
        let version = u32::from_le_bytes(head[8..12].try_into().unwrap());
        if version != CACHE_VERSION {
            return Err(Error::UnsupportedVersion {
                object,
                what: "index cache",
                expected: CACHE_VERSION,
                found: version,
            });
        }
        verify_cache_mac(&f, md.len(), key, &object)?;
        // SAFETY: the cache file is private to this user and only ever replaced
        // by rename, never modified in place, so the mapping stays valid.
        let map = unsafe { memmap2::Mmap::map(&f) }.map_err(|e| Error::io(path, e))?;
        // Lookups are random: without this the kernel reads up to 128 KiB
        // around every fault, and RSS grows with the index instead of with
        // the lookups made.
        let _ = map.advise(memmap2::Advice::Random);
        if map.len() as u64 != md.len() {
            return Err(Error::damaged(&object, "changed while being opened"));
        }
        let body = &map[..map.len() - CACHE_MAC_LEN];
        let mut r = Reader::new(body, &object);
        if r.bytes(8)? != CACHE_MAGIC || r.u32()? != CACHE_VERSION {
            return Err(Error::damaged(
                &object,
                "not an index cache of this version",
            ));
        }
        r.u32()?;
        let hash = r.array::<32>()?;
        let n_inc = r.u32()? as usize;
        let n_packs = r.u32()? as usize;
        let count = r.u64()?;
        let buckets = r.bytes((BUCKETS + 1) * 8)?;
        let bucket = |k: usize| u64::from_le_bytes(buckets[k * 8..k * 8 + 8].try_into().unwrap());
        let monotonic = (0..BUCKETS).all(|k| bucket(k) <= bucket(k + 1));
        let last = bucket(BUCKETS);
        if !monotonic || bucket(0) != 0 || last != count || n_inc.saturating_mul(32) > r.remaining()
        {
            return Err(Error::damaged(&object, "inconsistent index cache"));
        }
        let included = (0..n_inc)
            .map(|_| Ok(IndexId(r.array()?)))
            .collect::<Result<Vec<_>>>()?;
        if set_hash(&included) != hash || n_packs.saturating_mul(40) > r.remaining() {
            return Err(Error::damaged(&object, "inconsistent index cache"));
        }
        let packs = (0..n_packs)
            .map(|_| Ok((PackId(r.array()?), r.u64()?)))
            .collect::<Result<Vec<_>>>()?;
        let entries_off = r.pos();
        let filter_blocks = filter::blocks_for(count);
        let filter_len = filter_blocks * filter::BLOCK_WORDS as u64 * 8;
        if (r.remaining() as u64) != count * INDEX_ENTRY_LEN as u64 + filter_len {
            return Err(Error::damaged(&object, "index cache has the wrong length"));
        }
        Ok(Index {
            map: if count > 0 { Some(map) } else { None },
            packs,
            included,
            entries_off,
            count,
            filter_off: entries_off + (count as usize) * INDEX_ENTRY_LEN,
            filter_blocks,
            overlay: Vec::new(),
            rejected_cache: None,
        })
    }
}

/// Why a cache that could not be opened is worth a warning: not when there
/// is none or it is of another version, but when it is damaged or altered.
fn rejection(e: &Error) -> Option<String> {
    match e {
        Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => None,
        Error::UnsupportedVersion { .. } => None,
        e => Some(e.to_string()),
    }
}

/// Checks the keyed BLAKE3 MAC at the end of the `len` bytes of the cache
/// file `f`, reading the file rather than its map so that the pages read
/// do not count towards this process's memory.
fn verify_cache_mac(f: &File, len: u64, key: &Secret32, object: &str) -> Result<()> {
    let Some(body) = len.checked_sub(CACHE_MAC_LEN as u64) else {
        return Err(Error::damaged(object, "too short for an index cache"));
    };
    let io = |e: std::io::Error| Error::io(object, e);
    let mut r = f;
    std::io::Seek::seek(&mut r, std::io::SeekFrom::Start(0)).map_err(io)?;
    let mut mac = blake3::Hasher::new_keyed(key.as_bytes());
    let hashed = std::io::copy(&mut r.take(body), &mut mac).map_err(io)?;
    let mut stored = [0u8; CACHE_MAC_LEN];
    r.read_exact(&mut stored).map_err(io)?;
    // blake3::Hash compares in constant time.
    if hashed != body || mac.finalize() != blake3::Hash::from_bytes(stored) {
        return Err(Error::damaged(
            object,
            "the index cache fails authentication (damaged or altered)",
        ));
    }
    Ok(())
}

/// Creates a cache directory (and missing parents) that only its owner can
/// enter: file names there say which repositories this user backs up.
pub fn create_private_dir(dir: &Path) -> Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| Error::io(dir, e))
}

/// A writer that feeds every byte it writes into a MAC.
struct MacWriter<W: Write> {
    inner: W,
    mac: blake3::Hasher,
}

impl<W: Write> Write for MacWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.mac.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Two-way merge of the old cache's entries (pack numbers remapped) and new ones; old wins ties.
fn merge(
    old: &Option<Index>,
    old_map: &[u32],
    fresh: &[(u32, BlobInfo)],
    old_count: u64,
    mut f: impl FnMut(u32, &BlobInfo),
) {
    let mut i = 0u64;
    let mut j = 0usize;
    let old_at = |i: u64| -> Option<(u32, BlobInfo)> {
        let o = old.as_ref().unwrap();
        let b = o.entry_bytes(i);
        let p = u32::from_le_bytes(b[..4].try_into().unwrap());
        let loc = o.decode_at(i)?;
        Some((*old_map.get(p as usize)?, loc.blob))
    };
    while i < old_count || j < fresh.len() {
        if i < old_count {
            let Some((p, b)) = old_at(i) else {
                i += 1;
                continue;
            };
            if j < fresh.len() && fresh[j].1.id < b.id {
                f(fresh[j].0, &fresh[j].1);
                j += 1;
            } else if j < fresh.len() && fresh[j].1.id == b.id {
                // One entry per id: the shallower copy, the old one on a tie.
                if depth(&fresh[j].1) < depth(&b) {
                    f(fresh[j].0, &fresh[j].1);
                } else {
                    f(p, &b);
                }
                i += 1;
                j += 1;
            } else {
                f(p, &b);
                i += 1;
            }
        } else {
            f(fresh[j].0, &fresh[j].1);
            j += 1;
        }
    }
}

/// The default place for a repository's index cache.
pub fn cache_path(cache_dir: &Path, repo_id: &[u8; 32]) -> PathBuf {
    cache_dir.join(hex::encode(repo_id)).join("index.cache")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blob::{BlobKind, Codec};
    use crate::ids::sha256;
    use std::collections::BTreeMap;

    fn test_key() -> Secret32 {
        Secret32::from_bytes([7; 32])
    }

    /// A tiny deterministic generator, so failures reproduce.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
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
        let mut rng = Rng(7);
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
        let mut rng = Rng(11);
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
        let mut rng = Rng(0x9e3779b97f4a7c15);
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
        let mut rng = Rng(42);
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
        let mut rng = Rng(7);
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
