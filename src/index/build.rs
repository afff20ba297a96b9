//! Bringing the merged index up to date with the index files present:
//! open the cache if it covers exactly them; else lay the few new files over
//! it in memory; else merge them into it; else rebuild it from every file.
//!
//! ```text
//! cache covers `current`             → open it
//! cache ⊂ current, nothing superseded,
//!   few new files, none shallower     → cache + overlay in memory
//! cache ⊂ current, nothing superseded → merge the new files into a new cache
//! new files supersede some            → rebuild from every file
//! no usable cache                     → build from every file
//! ```

use super::cache::{rejection, write_cache_tmp};
use super::{depth, Index, IndexFile};
use crate::blob::BlobInfo;
use crate::crypto::Secret32;
use crate::error::{Error, Result};
use crate::ids::{IndexId, PackId};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::fs;
use std::path::Path;

/// Index files newer than the cache are kept in memory, not merged into it,
/// while there are at most this many of them...
pub const OVERLAY_MAX_FILES: usize = 32;
/// ...holding at most this many entries (about 100 bytes of RAM each).
pub const OVERLAY_MAX_ENTRIES: usize = 1 << 16;

/// Index files laid over the cache in memory: the extended pack table, and
/// the entries of ids the cache does not hold, sorted by id.
struct Overlay {
    packs: Vec<(PackId, u64)>,
    entries: Vec<(u32, BlobInfo)>,
}

/// Decodes one index file.
type Load<'a> = &'a (dyn Fn(&IndexId) -> Result<IndexFile> + Sync);

/// The pack table being built for a merge: `pack_no` is a position in `packs`.
#[derive(Default)]
struct PackTable {
    no: HashMap<PackId, u32>,
    packs: Vec<(PackId, u64)>,
}

impl PackTable {
    /// The old cache's table, to extend.
    fn of(index: &Index) -> PackTable {
        PackTable {
            no: (index.packs.iter().enumerate())
                .map(|(i, p)| (p.0, i as u32))
                .collect(),
            packs: index.packs.clone(),
        }
    }

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

/// Every index file that `files` supersede.
fn superseded_by(files: &[(IndexId, IndexFile)]) -> HashSet<IndexId> {
    files
        .iter()
        .flat_map(|(_, f)| f.supersedes.iter().copied())
        .collect()
}

/// Loads index files side by side.
fn load_all(ids: &[IndexId], load: Load) -> Result<Vec<(IndexId, IndexFile)>> {
    use rayon::prelude::*;
    ids.par_iter()
        .map(|i| Ok((*i, load(i)?)))
        .collect::<Result<Vec<_>>>()
}

/// The entries of a new cache: the old cache's (pack numbers remapped) and
/// fresh ones, merged in id order.
pub(super) struct Merged<'a> {
    old: Option<&'a Index>,
    old_map: &'a [u32],
    fresh: &'a [(u32, BlobInfo)],
}

impl Merged<'_> {
    /// Calls `f` with every (pack_no, blob) in id order, one per id: the
    /// shallower copy, the old one on a tie.
    pub(super) fn for_each(&self, mut f: impl FnMut(u32, &BlobInfo)) {
        let fresh = self.fresh;
        let old_count = self.old.map_or(0, |o| o.count);
        let old_at = |i: u64| -> Option<(u32, BlobInfo)> {
            let o = self.old.unwrap();
            let b = o.entry_bytes(i);
            let p = u32::from_le_bytes(b[..4].try_into().unwrap());
            let loc = o.decode_at(i)?;
            Some((*self.old_map.get(p as usize)?, loc.blob))
        };
        let (mut i, mut j) = (0u64, 0usize);
        while i < old_count || j < fresh.len() {
            if i >= old_count {
                f(fresh[j].0, &fresh[j].1);
                j += 1;
                continue;
            }
            let Some((p, b)) = old_at(i) else {
                i += 1;
                continue;
            };
            if j < fresh.len() && fresh[j].1.id < b.id {
                f(fresh[j].0, &fresh[j].1);
                j += 1;
            } else if j < fresh.len() && fresh[j].1.id == b.id {
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
        }
    }
}

impl Index {
    /// Opens the cached merge at `path` if it covers exactly `current`;
    /// otherwise builds it, extending the old cache when only new files were
    /// added, or laying those over it in memory while they are few
    /// ([`OVERLAY_MAX_FILES`], [`OVERLAY_MAX_ENTRIES`]).
    /// `load` decodes one index file; `present` is the set of packs that exist.
    /// `key` authenticates the cache file ([`crate::crypto::MasterKey::index_cache_key`]):
    /// one that does not verify is rebuilt, never read.
    pub fn open_or_build(
        path: &Path,
        key: &Secret32,
        current: &[IndexId],
        present: &HashMap<PackId, u64>,
        load: Load,
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
    pub(super) fn open_or_build_with(
        path: &Path,
        key: &Secret32,
        current: &[IndexId],
        present: &HashMap<PackId, u64>,
        load: Load,
        limits: (usize, usize),
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
        let cur_set: BTreeSet<IndexId> = current.iter().copied().collect();
        let old = old.filter(|o| o.included.iter().all(|i| cur_set.contains(i)));
        // Only the files the old cache lacks are read; without one, all of them.
        let to_load: Vec<IndexId> = match &old {
            Some(o) => {
                let have: HashSet<IndexId> = o.included.iter().copied().collect();
                current
                    .iter()
                    .filter(|i| !have.contains(i))
                    .copied()
                    .collect()
            }
            None => current.clone(),
        };
        let loaded = load_all(&to_load, load)?;
        let superseded = superseded_by(&loaded);
        let index = if !superseded.is_empty() {
            // Superseded files drop out of the union; rebuild from every file.
            let all = if to_load.len() != current.len() {
                load_all(&current, load)?
            } else {
                loaded
            };
            Index::build(path, key, &current, all, None, present)
        } else {
            if let Some(mut index) = old {
                if let Some(overlay) = index.overlay_of(&loaded, present, limits) {
                    index.packs = overlay.packs;
                    index.included = current;
                    index.overlay = overlay.entries;
                    return Ok(index);
                }
                Index::build(path, key, &current, loaded, Some(index), present)
            } else {
                Index::build(path, key, &current, loaded, None, present)
            }
        };
        index.map(|i| i.rejected_because(rejected))
    }

    /// The pack table and the overlay that lay `loaded` (which supersede
    /// nothing) over this cache in memory, when they are few and none holds
    /// a shallower copy of a cached id (which only a merge can replace).
    fn overlay_of(
        &self,
        loaded: &[(IndexId, IndexFile)],
        present: &HashMap<PackId, u64>,
        (max_files, max_entries): (usize, usize),
    ) -> Option<Overlay> {
        let new_entries: usize = loaded.iter().map(|(_, f)| f.entries.len()).sum();
        if loaded.len() > max_files || new_entries > max_entries {
            return None;
        }
        let mut table = PackTable::of(self);
        let mut fresh = table.fresh_entries(loaded, &HashSet::new(), present);
        // As in a merge, the cache wins ties of equal depth; a shallower
        // new copy replaces a cached entry, which only a merge can do.
        let shallower = fresh.iter().any(|e| {
            self.cache_position(&e.1.id)
                .and_then(|i| self.decode_at(i))
                .is_some_and(|c| depth(&e.1) < depth(&c.blob))
        });
        if shallower {
            return None;
        }
        fresh.retain(|e| self.cache_position(&e.1.id).is_none());
        Some(Overlay {
            packs: table.packs,
            entries: fresh,
        })
    }

    fn rejected_because(mut self, why: Option<String>) -> Index {
        self.rejected_cache = why;
        self
    }

    /// Writes a new cache of `files` (merged into `old`, when given) and opens it.
    fn build(
        path: &Path,
        key: &Secret32,
        included: &[IndexId],
        files: Vec<(IndexId, IndexFile)>,
        old: Option<Index>,
        present: &HashMap<PackId, u64>,
    ) -> Result<Index> {
        let mut table = PackTable::default();
        let fresh = table.fresh_entries(&files, &superseded_by(&files), present);
        drop(files);
        let mut old_map = Vec::new();
        if let Some(o) = &old {
            debug_assert!(o.overlay.is_empty(), "an overlay is never extended");
            for (p, size) in &o.packs {
                old_map.push(table.intern(*p, *size));
            }
        }
        let merged = Merged {
            old: old.as_ref(),
            old_map: &old_map,
            fresh: &fresh,
        };
        let tmp = write_cache_tmp(path, key, included, &table.packs, &merged)?;
        drop(old);
        fs::rename(&tmp, path).map_err(|e| Error::io(path, e))?;
        Index::open_cache(path, key)
    }
}
