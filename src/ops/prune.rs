//! `prune`: forget snapshots by a retention policy and free their space, crash-safely.
//!
//! Plan first, then execute (`--dry-run` is printing the plan):
//!
//! ```text
//! plan:    group snapshots → RetentionPolicy::decide per group → keep / remove with reasons
//!          mark: walk the kept snapshots' trees → one bit per index entry that is live
//!          per pack: live and unused bytes → delete (nothing live) / repack (too much unused) / keep
//! execute: 1. prune record (what will be deleted: snapshots, packs, index files), authenticated
//!          2. forget: delete the removed snapshots' manifests
//!          3. repack: copy live blobs' ciphertext verbatim (each verified) into new packs
//!          4. write one compacted index that supersedes every old index file
//!          5. delete superseded index files, then unused and repacked packs
//! ```
//! Every step leaves a valid repository: before step 4 the old index still
//! lists everything the remaining snapshots need; after it, the superseded
//! files no longer count, and what has not been deleted yet is unreferenced.
//! A rerun plans again from what is there and finishes the job. The whole run
//! holds the exclusive lock, so no snapshot can start in between.

use crate::blob::{self, BlobInfo, SealedBlob};
use crate::error::{Error, Result};
use crate::format::manifest::{Snapshot, SnapshotTime};
use crate::format::pack::{PackKind, PackWriter};
use crate::format::tree::{Content, NodeKind};
use crate::ids::{ChunkId, IndexId, PackId, SnapshotId};
use crate::index::{Index, IndexFile};
use crate::ops::retention::{Action, Candidate, Decision, Policy};
use crate::repo::Repository;
use std::collections::{BTreeMap, HashMap, HashSet};

pub use crate::format::prune::{PruneRecord, MAGIC_PRUNE};

/// Which snapshot fields form a group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GroupBy {
    pub source: bool,
    pub host: bool,
    pub tags: bool,
}

impl Default for GroupBy {
    fn default() -> Self {
        GroupBy {
            source: true,
            host: false,
            tags: false,
        }
    }
}

impl GroupBy {
    pub fn parse(s: &str) -> Result<GroupBy> {
        let mut g = GroupBy {
            source: false,
            host: false,
            tags: false,
        };
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part {
                "source" => g.source = true,
                "host" => g.host = true,
                "tags" => g.tags = true,
                other => {
                    return Err(Error::UnknownGroupField {
                        field: other.to_string(),
                    })
                }
            }
        }
        Ok(g)
    }
    fn key(&self, s: &Snapshot) -> String {
        let mut parts = Vec::new();
        if self.source {
            parts.push(format!("source={}", s.source));
        }
        if self.host {
            parts.push(format!("host={}", s.host));
        }
        if self.tags {
            let mut t = s.tags.clone();
            t.sort();
            parts.push(format!("tags={}", t.join(",")));
        }
        if parts.is_empty() {
            "all".into()
        } else {
            parts.join(" ")
        }
    }
}

pub struct PruneOptions {
    pub policy: Policy,
    pub group_by: GroupBy,
    /// Only snapshots of this source.
    pub source: Option<String>,
    pub allow_remove_all: bool,
    /// Repack until at most this share of the remaining pack bytes is unused.
    pub max_unused: f64,
    /// Repack at most this many bytes of packs.
    pub max_repack_size: Option<u64>,
    /// The time recorded in the prune record (default: now). Mirrors measure
    /// their grace period from it; tests drive simulated days with it.
    pub time: Option<SnapshotTime>,
    /// Only plan: write nothing, not even an index file for packs that no
    /// index lists (which the plan then leaves alone).
    pub dry_run: bool,
}

/// One snapshot's fate.
#[derive(Clone, Debug)]
pub struct SnapshotDecision {
    pub id: SnapshotId,
    pub snapshot: Snapshot,
    pub group: String,
    pub keep: bool,
    pub reasons: Vec<String>,
}

#[derive(Clone, Debug, Default)]
pub struct PackPlan {
    /// Packs with no live blob: deleted.
    pub delete: Vec<(PackId, u64)>,
    /// Packs with too much unused space: live blobs copied out, then deleted.
    pub repack: Vec<(PackId, u64)>,
    pub keep: u64,
    pub total_bytes: u64,
    pub live_bytes: u64,
    pub unused_bytes: u64,
    /// Unused bytes left in kept packs after this prune.
    pub unused_after: u64,
    /// Bytes the live blobs of repacked packs take.
    pub repack_live_bytes: u64,
}

impl PackPlan {
    pub fn freed_bytes(&self) -> u64 {
        self.delete.iter().map(|p| p.1).sum::<u64>() + self.repack.iter().map(|p| p.1).sum::<u64>()
            - self.repack_live_bytes
    }
}

/// Everything prune will do.
pub struct PrunePlan {
    pub snapshots: Vec<SnapshotDecision>,
    pub packs: PackPlan,
    pub index_files: Vec<IndexId>,
    /// The index the live bits refer to, by entry position.
    index: Index,
    live: Vec<u64>,
    /// The time the record will carry.
    time: SnapshotTime,
}

impl PrunePlan {
    pub fn forget(&self) -> impl Iterator<Item = &SnapshotDecision> {
        self.snapshots.iter().filter(|d| !d.keep)
    }
    fn is_live(&self, pos: u64) -> bool {
        bit_is_set(&self.live, pos)
    }
    /// How many index entries the kept snapshots need (the compacted index's size).
    pub fn live_entries(&self) -> u64 {
        self.live.iter().map(|w| u64::from(w.count_ones())).sum()
    }
}

/// Decides which snapshots to keep, group by group.
pub fn decide(
    snaps: &[(SnapshotId, Snapshot)],
    opts: &PruneOptions,
) -> Result<Vec<SnapshotDecision>> {
    if opts.policy.is_empty() {
        return Err(Error::NoKeepRule);
    }
    let mut groups: BTreeMap<String, Vec<&(SnapshotId, Snapshot)>> = BTreeMap::new();
    for s in snaps {
        if opts.source.as_ref().is_some_and(|src| &s.1.source != src) {
            continue;
        }
        groups.entry(opts.group_by.key(&s.1)).or_default().push(s);
    }
    let mut out = Vec::new();
    for (group, members) in groups {
        let candidates: Vec<Candidate> = members
            .iter()
            .map(|(id, s)| Candidate {
                id: *id,
                time: s.time,
                tags: s.tags.clone(),
                complete: s.complete,
            })
            .collect();
        let decisions: Vec<Decision> = opts.policy.decide(&candidates);
        let by_id: HashMap<SnapshotId, &Snapshot> =
            members.iter().map(|(id, s)| (*id, s)).collect();
        if !opts.allow_remove_all && decisions.iter().all(|d| matches!(d.action, Action::Remove)) {
            return Err(Error::WouldRemoveAll { group });
        }
        for d in decisions {
            out.push(SnapshotDecision {
                id: d.id,
                snapshot: by_id[&d.id].clone(),
                group: group.clone(),
                keep: matches!(d.action, Action::Keep),
                reasons: d.reasons,
            });
        }
    }
    Ok(out)
}

/// Sets the bit of every blob the kept snapshots reach.
pub(crate) fn mark(repo: &Repository, index: &Index, roots: &[ChunkId]) -> Result<Vec<u64>> {
    let mut live = vec![0u64; (index.len() as usize).div_ceil(64).max(1)];
    let mut seen_trees: HashSet<ChunkId> = HashSet::new();
    let set = |live: &mut Vec<u64>, id: &ChunkId, what: &str| -> Result<()> {
        let pos = index.position(id).ok_or_else(|| Error::MissingChunk {
            chunk: *id,
            needed_by: what.to_string(),
        })?;
        live[(pos / 64) as usize] |= 1 << (pos % 64);
        Ok(())
    };
    let mut stack: Vec<(ChunkId, String)> = roots.iter().map(|r| (*r, "/".to_string())).collect();
    while let Some((tree_id, path)) = stack.pop() {
        crate::interrupt::check()?;
        if !seen_trees.insert(tree_id) {
            continue;
        }
        set(&mut live, &tree_id, &path)?;
        let tree = repo.load_tree(index, &tree_id, &path)?;
        for n in &tree.nodes {
            let child = format!("{}/{}", path.trim_end_matches('/'), n.name_lossy());
            match &n.kind {
                NodeKind::Dir { tree } => stack.push((*tree, child)),
                NodeKind::File { content, .. } => {
                    if let Content::Lists(lists) = content {
                        for l in lists {
                            set(&mut live, &l.id, &child)?;
                        }
                    }
                    for c in repo.content_chunks(index, content, &child)? {
                        set(&mut live, &c.id, &child)?;
                    }
                }
                _ => {}
            }
        }
    }
    // A delta's base stays live while the delta is: follow every live delta's chain.
    let mut bases: Vec<(ChunkId, ChunkId)> = index
        .iter_positions()
        .filter(|(pos, _)| bit_is_set(&live, *pos))
        .filter_map(|(_, loc)| loc.blob.delta.map(|d| (d.base, loc.blob.id)))
        .collect();
    while let Some((base, of)) = bases.pop() {
        let loc = index.lookup(&base).ok_or_else(|| Error::MissingChunk {
            chunk: base,
            needed_by: format!("delta chunk {of} (its base)"),
        })?;
        let pos = index.position(&base).expect("looked up above");
        if !bit_is_set(&live, pos) {
            set(&mut live, &base, "")?;
            if let Some(d) = loc.blob.delta {
                bases.push((d.base, base));
            }
        }
    }
    Ok(live)
}

/// Builds the whole plan without changing anything.
pub fn plan(repo: &Repository, opts: &PruneOptions) -> Result<PrunePlan> {
    let snaps = repo.snapshots()?;
    refuse_if_damaged(repo, "repository", |skipped| {
        format!("refusing to prune while files are damaged ({skipped}); run `sopvault check`")
    })?;
    let decisions = decide(&snaps, opts)?;
    let forget: HashSet<SnapshotId> = decisions.iter().filter(|d| !d.keep).map(|d| d.id).collect();
    let index = planning_index(repo, opts)?;
    // Every snapshot not forgotten stays whole, also those outside the selected groups.
    let roots: Vec<ChunkId> = snaps
        .iter()
        .filter(|(id, _)| !forget.contains(id))
        .map(|(_, s)| s.root)
        .collect();
    let live = mark(repo, &index, &roots)?;
    let packs = plan_packs(&index, &live, opts);
    Ok(PrunePlan {
        snapshots: decisions,
        packs,
        index_files: index.included().to_vec(),
        index,
        live,
        time: opts.time.unwrap_or_else(crate::sys::sysinfo::now),
    })
}

/// Fails with damage to `object` when reads so far skipped damaged files.
fn refuse_if_damaged(
    repo: &Repository,
    object: &str,
    message: impl FnOnce(&str) -> String,
) -> Result<()> {
    let skipped = repo.take_warnings();
    if skipped.is_empty() {
        return Ok(());
    }
    Err(Error::damaged(object, message(&skipped.join("; "))))
}

/// The index the plan marks in. Packs no index lists (left by an
/// interrupted run) must be counted too; a dry run writes nothing, so it
/// plans without them (they are kept). Neither adopts the packs of a
/// damaged index file, which would hide the damage: planning refuses until
/// `repair index` is run.
fn planning_index(repo: &Repository, opts: &PruneOptions) -> Result<Index> {
    let index = if opts.dry_run {
        repo.index()?
    } else {
        repo.index_adopting_orphans_unless_damaged()?
    };
    refuse_if_damaged(repo, "index", |damaged| {
        format!(
            "refusing to prune: {damaged}; `sopvault repair index` rebuilds the index from the packs"
        )
    })?;
    Ok(index)
}

fn bit_is_set(live: &[u64], pos: u64) -> bool {
    live[(pos / 64) as usize] & (1 << (pos % 64)) != 0
}

/// A pack that keeps live blobs: (pack, size, live bytes, unused bytes).
type RepackCandidate = (PackId, u64, u64, u64);

/// Per pack: delete it (nothing live), repack it (too much unused) or keep it.
fn plan_packs(index: &Index, live: &[u64], opts: &PruneOptions) -> PackPlan {
    let mut live_per_pack: HashMap<PackId, u64> = HashMap::new();
    for (pos, loc) in index.iter_positions() {
        let e = live_per_pack.entry(loc.pack).or_default();
        if bit_is_set(live, pos) {
            *e += loc.blob.stored_len as u64;
        }
    }
    let mut packs = PackPlan::default();
    let mut candidates: Vec<RepackCandidate> = Vec::new();
    for (pack, size) in index.packs() {
        packs.total_bytes += size;
        let live_bytes = live_per_pack.get(pack).copied().unwrap_or(0);
        packs.live_bytes += live_bytes;
        let unused = size.saturating_sub(live_bytes);
        if live_bytes == 0 {
            packs.delete.push((*pack, *size));
        } else {
            packs.unused_after += unused;
            candidates.push((*pack, *size, live_bytes, unused));
        }
    }
    packs.unused_bytes = packs.total_bytes - packs.live_bytes;
    choose_repacks(&mut packs, candidates, opts);
    packs
}

/// Repacks the emptiest packs first until unused space is within bounds.
fn choose_repacks(packs: &mut PackPlan, mut candidates: Vec<RepackCandidate>, opts: &PruneOptions) {
    candidates.sort_by(|a, b| (b.3 * a.1).cmp(&(a.3 * b.1)).then(a.0.cmp(&b.0)));
    let kept_total = |p: &PackPlan| p.live_bytes + p.unused_after;
    let mut repacked_bytes = 0u64;
    for (pack, size, live_bytes, unused) in candidates {
        let over = packs.unused_after as f64 > opts.max_unused * kept_total(packs) as f64;
        // Packs that are mostly full stay, whatever the totals say.
        let worth_it = unused * 5 >= size;
        let budget = opts
            .max_repack_size
            .is_none_or(|m| repacked_bytes + size <= m);
        if over && worth_it && budget {
            packs.repack.push((pack, size));
            packs.repack_live_bytes += live_bytes;
            packs.unused_after -= unused;
            repacked_bytes += size;
        } else {
            packs.keep += 1;
        }
    }
}

/// Carries out a plan made under the same exclusive lock.
pub fn execute(repo: &Repository, plan: &PrunePlan) -> Result<PruneRecord> {
    let record = record_of(plan);
    // Under the exclusive lock nobody else writes: leftovers in tmp/ are garbage.
    repo.remove_temporary_files()?;
    let nothing_to_do = record.forgotten.is_empty() && record.deleted_packs.is_empty();
    if nothing_to_do {
        return Ok(record);
    }
    // 1. The record of what is about to go, for mirrors (and people).
    repo.write_prune_record(&record)?;
    crate::sys::faults::point("prune:after-record");

    // 2. Forget.
    repo.forget_snapshots(&record.forgotten)?;
    crate::sys::faults::point("prune:after-forget");

    // 3. Repack live blobs of the selected packs, ciphertext verbatim.
    let (mut compacted, to_copy) = compacted_index_of_kept_packs(plan);
    repack(repo, &to_copy, &mut compacted)?;

    // 4. One index that supersedes all the old ones.
    compacted.entries.sort_by_key(|e| e.1.id);
    repo.write_index_file(&compacted)?;
    crate::sys::faults::point("prune:after-index");

    // 5. Delete what is no longer referenced.
    repo.delete_index_files(&plan.index_files)?;
    crate::sys::faults::point("prune:after-delete-index");
    repo.delete_packs(&record.deleted_packs)?;
    Ok(record)
}

/// The record of what the plan forgets, deletes and supersedes.
fn record_of(plan: &PrunePlan) -> PruneRecord {
    PruneRecord {
        time: Some(plan.time),
        host: crate::sys::sysinfo::hostname(),
        user: crate::sys::sysinfo::username(),
        forgotten: plan.forget().map(|d| d.id).collect(),
        deleted_packs: plan
            .packs
            .delete
            .iter()
            .chain(&plan.packs.repack)
            .map(|p| p.0)
            .collect(),
        superseded_index: plan.index_files.clone(),
    }
}

/// The compacted index's entries for live blobs in packs that stay, and,
/// per pack to repack (in name order), its live blobs.
fn compacted_index_of_kept_packs(plan: &PrunePlan) -> (IndexFile, BTreeMap<PackId, Vec<BlobInfo>>) {
    let index = &plan.index;
    let repack: HashSet<PackId> = plan.packs.repack.iter().map(|p| p.0).collect();
    let deleted: HashSet<PackId> = plan.packs.delete.iter().map(|p| p.0).collect();
    let mut to_copy: BTreeMap<PackId, Vec<BlobInfo>> = BTreeMap::new();
    let mut compacted = IndexFile {
        supersedes: plan.index_files.clone(),
        ..Default::default()
    };
    let mut pack_no: HashMap<PackId, u32> = HashMap::new();
    let sizes: HashMap<PackId, u64> = index.packs().iter().copied().collect();
    for (pos, loc) in index.iter_positions() {
        if !plan.is_live(pos) || deleted.contains(&loc.pack) {
            continue;
        }
        if repack.contains(&loc.pack) {
            to_copy.entry(loc.pack).or_default().push(loc.blob);
        } else {
            let no = *pack_no.entry(loc.pack).or_insert_with(|| {
                compacted.packs.push((loc.pack, sizes[&loc.pack]));
                (compacted.packs.len() - 1) as u32
            });
            compacted.entries.push((no, loc.blob));
        }
    }
    (compacted, to_copy)
}

/// Copies the live blobs of the packs to repack into new packs (one writer
/// per pack kind), each verified first, and lists them in `compacted`.
fn repack(
    repo: &Repository,
    to_copy: &BTreeMap<PackId, Vec<BlobInfo>>,
    compacted: &mut IndexFile,
) -> Result<()> {
    let mut writers: HashMap<u32, PackWriter> = HashMap::new();
    let target = u64::from(repo.config().pack_size);
    for (pack, blobs) in to_copy {
        crate::interrupt::check()?;
        let bytes = repo.read_pack(pack)?;
        for b in blobs {
            let sealed = verified_copy(repo, pack, b, &bytes)?;
            let kind = PackKind::for_blob(b.kind);
            let w = writers
                .entry(kind as u32)
                .or_insert_with(|| PackWriter::new(kind));
            w.add(&sealed);
            if w.len() >= target {
                let full = std::mem::replace(w, PackWriter::new(kind));
                store_repacked(repo, full, compacted)?;
            }
        }
    }
    for (_, w) in writers {
        if !w.is_empty() {
            store_repacked(repo, w, compacted)?;
        }
    }
    Ok(())
}

/// One live blob's ciphertext, cut from its pack's bytes once it opens:
/// prune never carries damage forward.
fn verified_copy(
    repo: &Repository,
    pack: &PackId,
    b: &BlobInfo,
    bytes: &[u8],
) -> Result<SealedBlob> {
    let sealed = &bytes[b.offset as usize..(b.offset + b.stored_len as u64) as usize];
    // A delta is authenticated here; its chain is `check --read-data`'s job.
    let opened = match b.codec {
        blob::Codec::Delta => repo.authenticate_sealed_blob(b, sealed),
        _ => repo.verify_sealed_blob(b, sealed),
    };
    opened.map_err(|e| Error::BlobDamaged {
        chunk: b.id,
        pack: *pack,
        offset: b.offset,
        reason: format!("{e}; prune stopped before deleting anything of it"),
    })?;
    Ok(SealedBlob {
        id: b.id,
        kind: b.kind,
        codec: b.codec,
        raw_len: b.raw_len,
        delta: b.delta,
        bytes: sealed.to_vec(),
    })
}

/// Stores a full pack of copied blobs and lists its blobs in `compacted`.
fn store_repacked(repo: &Repository, w: PackWriter, compacted: &mut IndexFile) -> Result<()> {
    let pack = repo.store_pack(w)?;
    crate::sys::faults::point("prune:during-repack");
    compacted.packs.push((pack.id, pack.len));
    let no = (compacted.packs.len() - 1) as u32;
    compacted
        .entries
        .extend(pack.blobs.iter().map(|b| (no, *b)));
    Ok(())
}

/// Reads every prune record (oldest first by time).
pub fn records(repo: &Repository) -> Result<Vec<(String, PruneRecord)>> {
    repo.prune_records()
}
