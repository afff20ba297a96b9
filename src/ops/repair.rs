//! `repair index`: rebuild the index from the packs' own footers.
//!
//! Every pack ends in an encrypted footer listing its blobs (format-spec
//! §11), so the index files (§12) can always be written again from the packs.
//! When an index file is damaged, nothing else may change the repository
//! (prune refuses, `check` fails) until this has run:
//!
//! ```text
//! plan:    list index files and packs → read every pack's footer
//!          (a pack whose footer cannot be read keeps the entries an
//!          undamaged index file lists for it; otherwise it is reported)
//! execute: 1. new index file(s) covering every blob of every present pack,
//!             each superseding every index file there was
//!          2. a prune record naming the superseded files (for mirrors)
//!          3. delete the superseded index files
//! ```
//! Each step leaves a valid repository: before step 1 nothing has changed;
//! after it the old files no longer count, whatever is left of them.

use crate::blob::BlobInfo;
use crate::error::Result;
use crate::format::prune::PruneRecord;
use crate::ids::{ChunkId, IndexId, PackId};
use crate::index::IndexFile;
use crate::repo::Repository;
use std::collections::{HashMap, HashSet};

/// New index files hold at most this many entries each.
const ENTRIES_PER_FILE: usize = 1 << 20;

/// Where the entries of one pack come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PackSource {
    /// Its footer.
    Footer,
    /// Its footer cannot be read (the reason); an undamaged index file lists it.
    OldIndex(String),
    /// Its footer cannot be read (the reason) and no undamaged index file
    /// lists it: its blobs stay unindexed.
    Unindexed(String),
}

/// What `repair index` will do.
pub struct IndexRepairPlan {
    /// Every index file in the repository: the new ones supersede them all.
    pub old_index_files: Vec<IndexId>,
    /// Index files that cannot be read, with the reason.
    pub damaged_index_files: Vec<(IndexId, String)>,
    /// Every present pack, by name, with where its entries come from.
    pub packs: Vec<(PackId, u64, PackSource)>,
    /// Entries (distinct chunk ids) the new index files hold.
    pub entries: u64,
    new_files: Vec<IndexFile>,
}

impl IndexRepairPlan {
    pub fn new_index_files(&self) -> usize {
        self.new_files.len()
    }
    /// Packs whose blobs stay unindexed, with the reason.
    pub fn unindexed(&self) -> impl Iterator<Item = (&PackId, &str)> {
        self.packs.iter().filter_map(|(p, _, s)| match s {
            PackSource::Unindexed(why) => Some((p, why.as_str())),
            _ => None,
        })
    }
}

/// Plans the rebuild, reading every pack's footer; changes nothing.
pub fn plan_index(repo: &Repository) -> Result<IndexRepairPlan> {
    let mut old_index_files = repo.stored_index_files()?;
    old_index_files.sort();
    let mut packs = repo.stored_packs()?;
    packs.sort();
    let footers = read_footers(repo, &packs);
    let unreadable: HashSet<PackId> = packs
        .iter()
        .zip(&footers)
        .filter(|(_, f)| f.is_err())
        .map(|((p, _), _)| *p)
        .collect();
    let (mut from_old, damaged_index_files) =
        entries_from_old_index(repo, &old_index_files, &unreadable)?;
    let mut planned = Vec::new();
    let mut new_files = NewIndexFiles::default();
    for ((pack, size), footer) in packs.into_iter().zip(footers) {
        let (blobs, source) = match footer {
            Ok(blobs) => (blobs, PackSource::Footer),
            Err(e) if e.kind() == crate::ErrorKind::Damaged => match from_old.remove(&pack) {
                Some(blobs) => (blobs, PackSource::OldIndex(e.to_string())),
                None => (Vec::new(), PackSource::Unindexed(e.to_string())),
            },
            Err(e) => return Err(e),
        };
        planned.push((pack, size, source));
        new_files.add(pack, size, blobs);
    }
    let entries = new_files.seen.len() as u64;
    let new_files = new_files.finish(&old_index_files);
    Ok(IndexRepairPlan {
        old_index_files,
        damaged_index_files,
        packs: planned,
        entries,
        new_files,
    })
}

/// Every pack's footer, read side by side, in the order of `packs`.
fn read_footers(repo: &Repository, packs: &[(PackId, u64)]) -> Vec<Result<Vec<BlobInfo>>> {
    use rayon::prelude::*;
    packs
        .par_iter()
        .map(|(p, s)| {
            crate::interrupt::check()?;
            repo.read_pack_footer(p, *s)
        })
        .collect()
}

/// The entries that undamaged old index files list for the `unreadable`
/// packs, by pack, and the old index files that are damaged, with why.
#[allow(clippy::type_complexity)]
fn entries_from_old_index(
    repo: &Repository,
    old_index_files: &[IndexId],
    unreadable: &HashSet<PackId>,
) -> Result<(HashMap<PackId, Vec<BlobInfo>>, Vec<(IndexId, String)>)> {
    let mut damaged_index_files = Vec::new();
    let mut from_old: HashMap<PackId, Vec<BlobInfo>> = HashMap::new();
    for id in old_index_files {
        match repo.load_index_file(id) {
            Ok(f) => {
                for (no, b) in &f.entries {
                    let (pack, _) = f.packs[*no as usize];
                    if unreadable.contains(&pack) {
                        from_old.entry(pack).or_default().push(*b);
                    }
                }
            }
            Err(e) if e.kind() == crate::ErrorKind::Damaged => {
                damaged_index_files.push((*id, e.to_string()));
            }
            Err(e) => return Err(e),
        }
    }
    Ok((from_old, damaged_index_files))
}

/// The new index files as they fill up, pack by pack in name order.
#[derive(Default)]
struct NewIndexFiles {
    files: Vec<IndexFile>,
    file: IndexFile,
    /// Chunk ids indexed so far.
    seen: HashSet<ChunkId>,
}

impl NewIndexFiles {
    fn add(&mut self, pack: PackId, size: u64, blobs: Vec<BlobInfo>) {
        // A chunk stored twice is indexed once, in the first pack by name.
        let blobs: Vec<BlobInfo> = blobs
            .into_iter()
            .filter(|b| self.seen.insert(b.id))
            .collect();
        if blobs.is_empty() {
            return;
        }
        if self.file.entries.len() + blobs.len() > ENTRIES_PER_FILE && !self.file.entries.is_empty()
        {
            self.files.push(std::mem::take(&mut self.file));
        }
        let no = self.file.packs.len() as u32;
        self.file.packs.push((pack, size));
        self.file.entries.extend(blobs.into_iter().map(|b| (no, b)));
    }

    /// The files, each superseding every old index file, entries sorted by id.
    fn finish(mut self, old_index_files: &[IndexId]) -> Vec<IndexFile> {
        // An empty repository needs no index file; old ones are still superseded.
        if !self.file.entries.is_empty() || (self.files.is_empty() && !old_index_files.is_empty()) {
            self.files.push(self.file);
        }
        for f in &mut self.files {
            f.supersedes = old_index_files.to_vec();
            f.entries.sort_by_key(|e| e.1.id);
        }
        self.files
    }
}

/// Carries out a plan made under the same exclusive lock; returns the new index files.
pub fn execute_index(repo: &Repository, plan: &IndexRepairPlan) -> Result<Vec<IndexId>> {
    let mut written = Vec::new();
    for f in &plan.new_files {
        written.push(repo.write_index_file(f)?);
    }
    let superseded: Vec<IndexId> = plan
        .old_index_files
        .iter()
        .filter(|id| !written.contains(id))
        .copied()
        .collect();
    if superseded.is_empty() {
        return Ok(written);
    }
    let record = PruneRecord {
        time: Some(crate::sys::sysinfo::now()),
        host: crate::sys::sysinfo::hostname(),
        user: crate::sys::sysinfo::username(),
        forgotten: Vec::new(),
        deleted_packs: Vec::new(),
        superseded_index: superseded.clone(),
    };
    repo.write_prune_record(&record)?;
    repo.delete_index_files(&superseded)?;
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blob::{BlobKind, Codec};

    fn blob(id: u8, offset: u64) -> BlobInfo {
        BlobInfo {
            id: ChunkId([id; 32]),
            kind: BlobKind::Data,
            codec: Codec::Zstd,
            offset,
            stored_len: 100,
            raw_len: 200,
            delta: None,
        }
    }

    #[test]
    fn a_chunk_in_two_packs_is_indexed_once_in_the_first() {
        let (first, second) = (PackId([1; 32]), PackId([2; 32]));
        let old = [IndexId([9; 32])];
        let mut files = NewIndexFiles::default();
        files.add(first, 1000, vec![blob(5, 16), blob(3, 116)]);
        files.add(second, 500, vec![blob(3, 16)]);
        files.add(PackId([4; 32]), 300, vec![]);
        assert_eq!(files.seen.len(), 2);
        let files = files.finish(&old);
        assert_eq!(files.len(), 1);
        assert_eq!(files[0].supersedes, old);
        // The second pack had nothing new: it is not listed.
        assert_eq!(files[0].packs, vec![(first, 1000)]);
        let ids: Vec<(u32, ChunkId)> = files[0].entries.iter().map(|(n, b)| (*n, b.id)).collect();
        assert_eq!(ids, vec![(0, ChunkId([3; 32])), (0, ChunkId([5; 32]))]);
    }

    #[test]
    fn an_empty_repository_gets_one_empty_file_only_to_supersede_old_ones() {
        assert!(NewIndexFiles::default().finish(&[]).is_empty());
        let old = [IndexId([7; 32]), IndexId([8; 32])];
        let files = NewIndexFiles::default().finish(&old);
        assert_eq!(files.len(), 1);
        assert!(files[0].entries.is_empty() && files[0].packs.is_empty());
        assert_eq!(files[0].supersedes, old);
    }
}
