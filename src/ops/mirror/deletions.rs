//! Which condemned files the mirror may delete now.
//!
//! ```text
//! condemned: every file an authenticated prune record names, due by its earliest record
//! due:       condemned, present in the mirror, gone from the source, past the grace period
//! index:     a due index file goes when every pack it lists stays listed or goes too
//! packs:     a due pack goes when no index file the mirror keeps lists it
//! grace:     the snapshots the mirror keeps for the grace period are walked in the
//!            mirror; the last index file and pack holding one of their chunks stay
//! ```

use super::listing::{FileRef, Listing};
use super::plan::{MirrorOptions, MirrorPlan};
use super::{format_time, COPY_ORDER};
use crate::backend::{Backend, FileKind};
use crate::error::{Error, Result};
use crate::ids::{ChunkId, IndexId, PackId};
use crate::index::{Index, IndexFile};
use crate::ops::prune::PruneRecord;
use crate::repo::Repository;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

/// Condemned files, each with the time of the earliest record that condemns it.
type Condemned = BTreeMap<(FileKind, String), i64>;
/// Condemned files the mirror may delete, unless something it keeps needs them.
type Due = BTreeSet<(FileKind, String)>;
/// An index file the mirror holds or is about to: its name, and its contents
/// (`None` when neither the source nor the mirror has a readable copy).
type LoadedIndex = (String, Option<IndexFile>);

/// The index files and packs the plan deletes (due snapshots always go).
#[derive(Default)]
struct Doomed {
    index: BTreeSet<String>,
    packs: BTreeSet<String>,
}

/// Files named by prune records that the mirror may delete now.
pub(super) fn plan_deletions(
    repo: &Repository,
    dest: &Arc<dyn Backend>,
    source: &Listing,
    target: &Listing,
    opts: &MirrorOptions,
    plan: &mut MirrorPlan,
) -> Result<()> {
    let condemned = condemned_by_records(repo)?;
    let due = due_now(&condemned, source, target, opts, plan);
    // Extra files nobody condemned are left alone, and counted.
    plan.extra = uncondemned_extra(source, target, &condemned);
    if due.is_empty() {
        return Ok(());
    }
    let mirror = repo.on_mirror(dest.clone())?;
    let (staying, candidates) = mirror_index_files(repo, &mirror, source, target, plan, &due);
    let mut needed = packs_listed_by(&staying)?;
    let mut doomed = Doomed {
        index: index_files_that_may_go(&candidates, &due, &mut needed, target, plan),
        packs: BTreeSet::new(),
    };
    doomed.packs = packs_that_may_go(&due, &needed, target, plan);
    let all_index: Vec<LoadedIndex> = staying.into_iter().chain(candidates).collect();
    keep_what_grace_snapshots_need(&mirror, source, &due, &all_index, &mut doomed, plan)?;
    plan.delete = in_deletion_order(target, &due, &doomed);
    Ok(())
}

/// Every file an authenticated prune record condemns; a file condemned
/// twice is due by the earlier record.
fn condemned_by_records(repo: &Repository) -> Result<Condemned> {
    let mut condemned = Condemned::new();
    for (_, record) in crate::ops::prune::records(repo)? {
        let at = record.time.map(|t| t.at.sec).unwrap_or(i64::MIN);
        for key in files_condemned_by(&record) {
            let e = condemned.entry(key).or_insert(at);
            *e = (*e).min(at);
        }
    }
    Ok(condemned)
}

fn files_condemned_by(record: &PruneRecord) -> impl Iterator<Item = (FileKind, String)> + '_ {
    let snapshots = record
        .forgotten
        .iter()
        .map(|id| (FileKind::Snapshot, id.to_hex()));
    let index = (record.superseded_index.iter()).map(|id| (FileKind::Index, id.to_hex()));
    let packs = (record.deleted_packs.iter()).map(|id| (FileKind::Pack, id.to_hex()));
    snapshots.chain(index).chain(packs)
}

/// The condemned files present here, gone from the source and past their
/// grace period; the others present here are kept, with the reason.
fn due_now(
    condemned: &Condemned,
    source: &Listing,
    target: &Listing,
    opts: &MirrorOptions,
    plan: &mut MirrorPlan,
) -> Due {
    let mut due = Due::new();
    for ((kind, name), at) in condemned {
        let Some(size) = target.get(*kind, name) else {
            continue;
        };
        let file = FileRef {
            kind: *kind,
            name: name.clone(),
            size,
        };
        if source.get(*kind, name).is_some() {
            // The prune that wrote the record has not finished at the source.
            plan.keep(file, "still present at the source".into());
            continue;
        }
        let may_go = at.saturating_add(opts.delete_after_secs);
        if may_go > opts.now {
            plan.next_deletion = Some(plan.next_deletion.map_or(may_go, |t| t.min(may_go)));
            let when = format_time(may_go);
            plan.keep(file, format!("grace period: may be deleted from {when}"));
            continue;
        }
        due.insert((*kind, name.clone()));
    }
    due
}

/// Destination files the source does not have and no prune record condemns.
fn uncondemned_extra(source: &Listing, target: &Listing, condemned: &Condemned) -> usize {
    COPY_ORDER
        .iter()
        .flat_map(|kind| target.kind(*kind).map(move |(name, _)| (*kind, name)))
        .filter(|(kind, name)| {
            source.get(*kind, name).is_none() && !condemned.contains_key(&(*kind, (*name).clone()))
        })
        .count()
}

/// The mirror's index files (present here, or about to be copied here),
/// read side by side, as (staying, due for deletion).
fn mirror_index_files(
    repo: &Repository,
    mirror: &Repository,
    source: &Listing,
    target: &Listing,
    plan: &MirrorPlan,
    due: &Due,
) -> (Vec<LoadedIndex>, Vec<LoadedIndex>) {
    use rayon::prelude::*;
    let names: BTreeSet<String> = target
        .kind(FileKind::Index)
        .map(|(n, _)| n.clone())
        .chain(
            plan.copy
                .iter()
                .filter(|f| f.kind == FileKind::Index)
                .map(|f| f.name.clone()),
        )
        .collect();
    let loaded: Vec<LoadedIndex> = names
        .into_par_iter()
        .map(|name| {
            let file = load_index(repo, mirror, source, &name);
            (name, file)
        })
        .collect();
    loaded
        .into_iter()
        .partition(|(name, _)| !due.contains(&(FileKind::Index, name.clone())))
}

/// Reads and decodes an index file: from the source when it has it (the same
/// bytes, as the name is their hash, and the source is usually the nearer
/// copy), else from the mirror; `None` when neither can.
fn load_index(
    repo: &Repository,
    mirror: &Repository,
    source: &Listing,
    name: &str,
) -> Option<IndexFile> {
    let id = IndexId::from_hex(name)?;
    if source.get(FileKind::Index, name).is_some() {
        if let Ok(f) = repo.load_index_file(&id) {
            return Some(f);
        }
    }
    mirror.load_index_file(&id).ok()
}

fn packs_of(f: &Option<IndexFile>) -> Option<HashSet<PackId>> {
    f.as_ref().map(|f| f.packs.iter().map(|p| p.0).collect())
}

/// The packs the index files that stay list: the mirror's live index.
fn packs_listed_by(staying: &[LoadedIndex]) -> Result<HashSet<PackId>> {
    let mut needed = HashSet::new();
    for (name, f) in staying {
        let Some(packs) = packs_of(f) else {
            return Err(Error::damaged(
                format!("index/{name}"),
                "cannot be read in the mirror or at the source; \
                 refusing to delete anything until `sopvault check` passes",
            ));
        };
        needed.extend(packs);
    }
    Ok(needed)
}

/// The due index files that may go: those whose every pack stays listed,
/// goes too, or is not in the mirror. The packs of the others become needed.
fn index_files_that_may_go(
    candidates: &[LoadedIndex],
    due: &Due,
    needed: &mut HashSet<PackId>,
    target: &Listing,
    plan: &mut MirrorPlan,
) -> BTreeSet<String> {
    let due_pack = |p: &PackId| due.contains(&(FileKind::Pack, p.to_hex())) && !needed.contains(p);
    let mut delete = BTreeSet::new();
    let mut kept = Vec::new();
    for (name, f) in candidates {
        let packs = packs_of(f);
        let may_go = packs.as_ref().is_some_and(|ps| {
            ps.iter().all(|p| {
                needed.contains(p)
                    || due_pack(p)
                    || target.get(FileKind::Pack, &p.to_hex()).is_none()
            })
        });
        if may_go {
            delete.insert(name.clone());
        } else {
            kept.push((name, packs));
        }
    }
    for (name, packs) in kept {
        needed.extend(packs.into_iter().flatten());
        plan.keep(
            target.file_ref(FileKind::Index, name),
            "lists packs the mirror still holds and no kept index file lists".into(),
        );
    }
    delete
}

/// The due packs that no index file the mirror keeps lists.
fn packs_that_may_go(
    due: &Due,
    needed: &HashSet<PackId>,
    target: &Listing,
    plan: &mut MirrorPlan,
) -> BTreeSet<String> {
    let mut delete = BTreeSet::new();
    for (kind, name) in due.iter().filter(|(k, _)| *k == FileKind::Pack) {
        if PackId::from_hex(name).is_some_and(|id| needed.contains(&id)) {
            plan.keep(
                target.file_ref(*kind, name),
                "still listed by an index file the mirror keeps".into(),
            );
        } else {
            delete.insert(name.clone());
        }
    }
    delete
}

/// Snapshots, then index files, then packs: nothing goes before what refers to it.
fn in_deletion_order(target: &Listing, due: &Due, doomed: &Doomed) -> Vec<FileRef> {
    let snapshots = due
        .iter()
        .filter(|(k, _)| *k == FileKind::Snapshot)
        .map(|(k, n)| target.file_ref(*k, n));
    let index = doomed
        .index
        .iter()
        .map(|n| target.file_ref(FileKind::Index, n));
    let packs = doomed
        .packs
        .iter()
        .map(|n| target.file_ref(FileKind::Pack, n));
    snapshots.chain(index).chain(packs).collect()
}

/// Keeps what the snapshots the mirror holds for the grace period still need.
///
/// A snapshot that a later prune forgot stays in the mirror until that
/// prune's record is due, and may need chunks that only files an *earlier*
/// prune condemned still hold: when the earlier prune's output (its compacted
/// index, the packs it repacked into) never reached the mirror because the
/// next prune superseded it first (a mirror that runs before the prune, or a
/// disk that was not plugged in), the mirror has those chunks only in what
/// the earlier prune condemned. So the trees of the snapshots the mirror
/// keeps but the source no longer has are walked in the mirror, and an index
/// file and a pack that are the last to hold one of their chunks stay.
/// Snapshots still at the source need nothing here: every file the source
/// has is in the mirror (or copied by this run) and is never deleted.
fn keep_what_grace_snapshots_need(
    mirror: &Repository,
    source: &Listing,
    due: &Due,
    index_files: &[LoadedIndex],
    doomed: &mut Doomed,
    plan: &mut MirrorPlan,
) -> Result<()> {
    if doomed.index.is_empty() && doomed.packs.is_empty() {
        return Ok(());
    }
    let roots = grace_snapshot_roots(mirror, source, due)?;
    if roots.is_empty() {
        return Ok(());
    }
    let index = mirror.index()?;
    let live = live_chunks(mirror, &index, &roots)?;
    for (chunk, places) in &holders_of(&live, &index, index_files) {
        let stays = |(i, pack): &(usize, PackId)| {
            !doomed.index.contains(&index_files[*i].0) && !doomed.packs.contains(&pack.to_hex())
        };
        if !places.iter().any(stays) {
            keep_first_holder(chunk, places[0], index_files, doomed, plan);
        }
    }
    Ok(())
}

/// The root trees of the snapshots the mirror keeps but the source no longer has.
fn grace_snapshot_roots(mirror: &Repository, source: &Listing, due: &Due) -> Result<Vec<ChunkId>> {
    Ok(mirror
        .snapshots()?
        .into_iter()
        .filter(|(id, _)| {
            let name = id.to_hex();
            source.get(FileKind::Snapshot, &name).is_none()
                && !due.contains(&(FileKind::Snapshot, name))
        })
        .map(|(_, s)| s.root)
        .collect())
}

/// The chunks the trees under `roots` need, walked in the mirror.
fn live_chunks(mirror: &Repository, index: &Index, roots: &[ChunkId]) -> Result<HashSet<ChunkId>> {
    let live_bits = crate::ops::prune::mark(mirror, index, roots).map_err(|e| {
        Error::damaged(
            mirror.location(),
            format!(
                "a snapshot kept for the grace period cannot be walked ({e}); \
                 refusing to delete anything until `sopvault check` passes on the mirror"
            ),
        )
    })?;
    Ok(index
        .iter_positions()
        .filter(|(pos, _)| live_bits[(*pos / 64) as usize] & (1 << (*pos % 64)) != 0)
        .map(|(_, loc)| loc.blob.id)
        .collect())
}

/// Where each live chunk is, by index file (its position in `index_files`)
/// and pack, among the packs present in the mirror.
fn holders_of(
    live: &HashSet<ChunkId>,
    index: &Index,
    index_files: &[LoadedIndex],
) -> HashMap<ChunkId, Vec<(usize, PackId)>> {
    let present: HashSet<PackId> = index.packs().iter().map(|p| p.0).collect();
    let mut holders: HashMap<ChunkId, Vec<(usize, PackId)>> = HashMap::new();
    for (i, (_, file)) in index_files.iter().enumerate() {
        let Some(file) = file else { continue };
        for (p, b) in &file.entries {
            let pack = file.packs[*p as usize].0;
            if live.contains(&b.id) && present.contains(&pack) {
                holders.entry(b.id).or_default().push((i, pack));
            }
        }
    }
    holders
}

/// The first holder of a chunk no other holder keeps stays: its index file,
/// and every pack that file lists (a kept index file that lists a missing
/// pack fails `check`).
fn keep_first_holder(
    chunk: &ChunkId,
    (i, pack): (usize, PackId),
    index_files: &[LoadedIndex],
    doomed: &mut Doomed,
    plan: &mut MirrorPlan,
) {
    let why = format!("holds chunk {chunk} of a snapshot kept for the grace period");
    let (name, file) = &index_files[i];
    if doomed.index.remove(name) {
        let file = FileRef {
            kind: FileKind::Index,
            name: name.clone(),
            size: 0,
        };
        plan.keep(file, why.clone());
    }
    let listed = file.iter().flat_map(|f| f.packs.iter().map(|p| p.0));
    for p in std::iter::once(pack).chain(listed) {
        if doomed.packs.remove(&p.to_hex()) {
            let file = FileRef {
                kind: FileKind::Pack,
                name: p.to_hex(),
                size: 0,
            };
            plan.keep(file, why.clone());
        }
    }
}
