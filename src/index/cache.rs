//! The local index cache: every index file merged into one file of sorted,
//! fixed-size entries with a bucket table and a filter, authenticated by a
//! keyed MAC, and read through a memory map.
//!
//! ```text
//! header(64):  "SOPVIXC\0" | version u32 (3) | flags u32 (0)
//!              | sha256(included ids)[32] | n_included u32 | n_packs u32 | count u64
//! buckets:     (65536 + 1) × u64: where the entries of each two-byte id prefix start
//! included:    n_included × index_id[32], sorted
//! packs:       n_packs × (pack_id[32] | size u64); an entry's pack_no is a position here
//! entries:     count × (pack_no u32 | pack entry(88)), sorted by chunk id, unique
//! filter:      filter::blocks_for(count) × 64 bytes (see [`super::filter`])
//! mac:         keyed BLAKE3 [32] over every byte before it
//! ```
//! The file is written to a temporary name, fsynced and renamed into place;
//! never modified in place.

use super::build::Merged;
use super::file::INDEX_ENTRY_LEN;
use super::{filter, Index};
use crate::blob::BlobInfo;
use crate::crypto::Secret32;
use crate::error::{Error, Result};
use crate::format::pack::encode_entry;
use crate::format::Reader;
use crate::ids::{IndexId, PackId};
use std::fs::{self, File};
use std::io::{BufWriter, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

const CACHE_MAGIC: &[u8; 8] = b"SOPVIXC\0";
pub(super) const BUCKETS: usize = 1 << 16;
pub(super) const CACHE_HEADER_LEN: usize = 16 + 32 + 4 + 4 + 8;
const CACHE_VERSION: u32 = 3;
/// The keyed BLAKE3 MAC that ends the cache file.
const CACHE_MAC_LEN: usize = 32;

/// The default place for a repository's index cache.
pub fn cache_path(cache_dir: &Path, repo_id: &[u8; 32]) -> PathBuf {
    cache_dir.join(hex::encode(repo_id)).join("index.cache")
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

fn set_hash(ids: &[IndexId]) -> [u8; 32] {
    let mut all = Vec::with_capacity(ids.len() * 32);
    for i in ids {
        all.extend_from_slice(&i.0);
    }
    crate::ids::sha256(&all)
}

pub(super) fn bucket_of(id: &crate::ids::ChunkId) -> usize {
    ((id.0[0] as usize) << 8) | id.0[1] as usize
}

/// Why a cache that could not be opened is worth a warning: not when there
/// is none or it is of another version, but when it is damaged or altered.
pub(super) fn rejection(e: &Error) -> Option<String> {
    match e {
        Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => None,
        Error::UnsupportedVersion { .. } => None,
        e => Some(e.to_string()),
    }
}

/// What the header, bucket table, included ids and pack table of a cache
/// file say, checked against each other and the file's length.
struct CacheLayout {
    included: Vec<IndexId>,
    packs: Vec<(PackId, u64)>,
    entries_off: usize,
    count: u64,
    filter_blocks: u64,
}

impl CacheLayout {
    /// Reads the layout of `body`, the cache file without its MAC.
    fn read(body: &[u8], object: &str) -> Result<CacheLayout> {
        let inconsistent = || Error::damaged(object, "inconsistent index cache");
        let mut r = Reader::new(body, object);
        if r.bytes(8)? != CACHE_MAGIC || r.u32()? != CACHE_VERSION {
            return Err(Error::damaged(object, "not an index cache of this version"));
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
            return Err(inconsistent());
        }
        let included = (0..n_inc)
            .map(|_| Ok(IndexId(r.array()?)))
            .collect::<Result<Vec<_>>>()?;
        if set_hash(&included) != hash || n_packs.saturating_mul(40) > r.remaining() {
            return Err(inconsistent());
        }
        let packs = (0..n_packs)
            .map(|_| Ok((PackId(r.array()?), r.u64()?)))
            .collect::<Result<Vec<_>>>()?;
        let filter_blocks = filter::blocks_for(count);
        let filter_len = filter_blocks * filter::BLOCK_WORDS as u64 * 8;
        if (r.remaining() as u64) != count * INDEX_ENTRY_LEN as u64 + filter_len {
            return Err(Error::damaged(object, "index cache has the wrong length"));
        }
        Ok(CacheLayout {
            included,
            packs,
            entries_off: r.pos(),
            count,
            filter_blocks,
        })
    }
}

impl Index {
    /// Opens a cache file, after checking its version and its MAC over
    /// every byte before it; a cache of another version is
    /// [`Error::UnsupportedVersion`], one that fails the MAC or a check is
    /// [`Error::Damaged`].
    pub(super) fn open_cache(path: &Path, key: &Secret32) -> Result<Index> {
        let mut f = File::open(path).map_err(|e| Error::io(path, e))?;
        let md = f.metadata().map_err(|e| Error::io(path, e))?;
        // Written by an older version with the umask's permissions: the ids
        // and lengths of the chunks are this user's business only.
        if md.permissions().mode() & 0o077 != 0 {
            let _ = f.set_permissions(fs::Permissions::from_mode(0o600));
        }
        let object = path.display().to_string();
        check_version(&mut f, &object)?;
        verify_cache_mac(&f, md.len(), key, &object)?;
        // SAFETY: the cache file is private to this user and only ever replaced
        // by rename, never modified in place, so the mapping stays valid.
        #[allow(unsafe_code)]
        let map = unsafe { memmap2::Mmap::map(&f) }.map_err(|e| Error::io(path, e))?;
        // Lookups are random: without this the kernel reads up to 128 KiB
        // around every fault, and RSS grows with the index instead of with
        // the lookups made.
        let _ = map.advise(memmap2::Advice::Random);
        if map.len() as u64 != md.len() {
            return Err(Error::damaged(&object, "changed while being opened"));
        }
        let layout = CacheLayout::read(&map[..map.len() - CACHE_MAC_LEN], &object)?;
        Ok(Index {
            map: if layout.count > 0 { Some(map) } else { None },
            packs: layout.packs,
            included: layout.included,
            entries_off: layout.entries_off,
            count: layout.count,
            filter_off: layout.entries_off + (layout.count as usize) * INDEX_ENTRY_LEN,
            filter_blocks: layout.filter_blocks,
            overlay: Vec::new(),
            rejected_cache: None,
        })
    }
}

/// Reads the magic and version at the start of the cache file.
fn check_version(f: &mut File, object: &str) -> Result<()> {
    let mut head = [0u8; 12];
    f.read_exact(&mut head)
        .map_err(|_| Error::damaged(object, "too short for an index cache"))?;
    if &head[..8] != CACHE_MAGIC {
        return Err(Error::damaged(object, "not an index cache"));
    }
    let version = u32::from_le_bytes(head[8..12].try_into().unwrap());
    if version != CACHE_VERSION {
        return Err(Error::UnsupportedVersion {
            object: object.to_string(),
            what: "index cache",
            expected: CACHE_VERSION,
            found: version,
        });
    }
    Ok(())
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

/// Writes a cache file of `entries` to a temporary file next to `path`
/// (in a private directory) and returns its name; the caller renames it
/// into place. Nothing is left behind on an error.
pub(super) fn write_cache_tmp(
    path: &Path,
    key: &Secret32,
    included: &[IndexId],
    packs: &[(PackId, u64)],
    entries: &Merged,
) -> Result<PathBuf> {
    let dir = path.parent().unwrap();
    create_private_dir(dir)?;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    if let Err(e) = write_cache_file(&tmp, key, included, packs, entries) {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    Ok(tmp)
}

fn write_cache_file(
    tmp: &Path,
    key: &Secret32,
    included: &[IndexId],
    packs: &[(PackId, u64)],
    entries: &Merged,
) -> Result<()> {
    // A leftover of a crashed run with our pid may have other permissions.
    let _ = fs::remove_file(tmp);
    let f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(tmp)
        .map_err(|e| Error::io(tmp, e))?;
    let mut w = MacWriter {
        inner: BufWriter::with_capacity(1 << 20, f),
        mac: blake3::Hasher::new_keyed(key.as_bytes()),
    };
    let (buckets, total) = bucket_table(entries);
    let head = cache_head(included, packs, &buckets, total);
    w.write_all(&head).map_err(|e| Error::io(tmp, e))?;
    let words = write_entries(&mut w, entries, total).map_err(|e| Error::io(tmp, e))?;
    let filter_bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
    w.write_all(&filter_bytes).map_err(|e| Error::io(tmp, e))?;
    let MacWriter { mut inner, mac } = w;
    inner
        .write_all(mac.finalize().as_bytes())
        .map_err(|e| Error::io(tmp, e))?;
    inner
        .into_inner()
        .map_err(|e| Error::io(tmp, e.into_error()))?
        .sync_all()
        .map_err(|e| Error::io(tmp, e))
}

/// The bucket table (where each two-byte id prefix starts) and the entry
/// count: a first walk of the merge.
fn bucket_table(entries: &Merged) -> (Vec<u64>, u64) {
    let mut buckets = vec![0u64; BUCKETS + 1];
    let mut total = 0u64;
    entries.for_each(|_, b| {
        buckets[bucket_of(&b.id) + 1] += 1;
        total += 1;
    });
    for i in 1..=BUCKETS {
        buckets[i] += buckets[i - 1];
    }
    (buckets, total)
}

/// Everything before the entries: header, bucket table, included ids, pack table.
fn cache_head(
    included: &[IndexId],
    packs: &[(PackId, u64)],
    buckets: &[u64],
    total: u64,
) -> Vec<u8> {
    let mut head = Vec::with_capacity(CACHE_HEADER_LEN + (BUCKETS + 1) * 8);
    head.extend_from_slice(CACHE_MAGIC);
    head.extend_from_slice(&CACHE_VERSION.to_le_bytes());
    head.extend_from_slice(&0u32.to_le_bytes());
    head.extend_from_slice(&set_hash(included));
    head.extend_from_slice(&(included.len() as u32).to_le_bytes());
    head.extend_from_slice(&(packs.len() as u32).to_le_bytes());
    head.extend_from_slice(&total.to_le_bytes());
    for b in buckets {
        head.extend_from_slice(&b.to_le_bytes());
    }
    for i in included {
        head.extend_from_slice(&i.0);
    }
    for (p, s) in packs {
        head.extend_from_slice(&p.0);
        head.extend_from_slice(&s.to_le_bytes());
    }
    head
}

/// Writes the entries (a second walk of the merge) and returns the filter over them.
fn write_entries(w: &mut impl Write, entries: &Merged, total: u64) -> std::io::Result<Vec<u64>> {
    let mut buf = Vec::with_capacity(INDEX_ENTRY_LEN);
    let mut err = None;
    let blocks = filter::blocks_for(total);
    let mut words = vec![0u64; blocks as usize * filter::BLOCK_WORDS];
    entries.for_each(|p, b| {
        filter::insert(&mut words, blocks, &b.id);
        buf.clear();
        entry_to_bytes(&mut buf, p, b);
        if err.is_none() {
            if let Err(e) = w.write_all(&buf) {
                err = Some(e);
            }
        }
    });
    match err {
        Some(e) => Err(e),
        None => Ok(words),
    }
}

fn entry_to_bytes(out: &mut Vec<u8>, pack_no: u32, b: &BlobInfo) {
    out.extend_from_slice(&pack_no.to_le_bytes());
    encode_entry(out, b);
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
