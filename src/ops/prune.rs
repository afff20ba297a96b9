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

use crate::backend::FileKind;
use crate::blob::{self, SealedBlob};
use crate::crypto::KeyPurpose;
use crate::error::{Error, Result};
use crate::format::manifest::{Snapshot, SnapshotTime};
use crate::format::pack::{PackKind, PackWriter};
use crate::format::tree::{Content, NodeKind};
use crate::format::{decode_postcard, encode_postcard, write_header, Reader, HEADER_LEN};
use crate::ids::{sha256, ChunkId, IndexId, PackId, SnapshotId};
use crate::index::{Index, IndexFile};
use crate::ops::retention::{Action, Candidate, Decision, Policy};
use crate::repo::Repository;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet};

pub const MAGIC_PRUNE: &[u8; 8] = b"SOPVPRN\0";

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
                    return Err(Error::Usage(format!(
                        "--group-by: unknown field {other:?} (source, host, tags)"
                    )))
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
        self.live[(pos / 64) as usize] & (1 << (pos % 64)) != 0
    }
    /// How many index entries the kept snapshots need (the compacted index's size).
    pub fn live_entries(&self) -> u64 {
        self.live.iter().map(|w| u64::from(w.count_ones())).sum()
    }
}

/// What prune did, as written in its authenticated record.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PruneRecord {
    pub time: Option<SnapshotTime>,
    pub host: String,
    pub user: String,
    pub forgotten: Vec<SnapshotId>,
    pub deleted_packs: Vec<PackId>,
    pub superseded_index: Vec<IndexId>,
}

impl PruneRecord {
    pub fn encode(&self, key: &crate::crypto::MasterKey) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        write_header(&mut out, MAGIC_PRUNE, 0);
        let sealed = key.seal(KeyPurpose::Meta, &out.clone(), &encode_postcard(self))?;
        out.extend_from_slice(&sealed);
        Ok(out)
    }
    pub fn decode(
        key: &crate::crypto::MasterKey,
        bytes: &[u8],
        object: &str,
    ) -> Result<PruneRecord> {
        let mut r = Reader::new(bytes, object);
        r.header(MAGIC_PRUNE)?;
        let plain = key
            .open(KeyPurpose::Meta, &bytes[..HEADER_LEN], r.rest())
            .ok_or_else(|| Error::damaged(object, "prune record failed authentication"))?;
        decode_postcard(&plain, object)
    }
}

/// Decides which snapshots to keep, group by group.
pub fn decide(
    snaps: &[(SnapshotId, Snapshot)],
    opts: &PruneOptions,
) -> Result<Vec<SnapshotDecision>> {
    if opts.policy.is_empty() {
        return Err(Error::Usage(
            "no keep rule given: refusing to forget every snapshot (use --keep-daily, --keep-monthly, ...)".into(),
        ));
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
            return Err(Error::Usage(format!(
                "the policy would remove every snapshot of group {group}; refusing (give --allow-remove-all if you mean it)"
            )));
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
            chunk: id.to_hex(),
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
    let is_live = |live: &Vec<u64>, pos: u64| live[(pos / 64) as usize] & (1 << (pos % 64)) != 0;
    let mut bases: Vec<(ChunkId, ChunkId)> = index
        .iter_positions()
        .filter(|(pos, _)| is_live(&live, *pos))
        .filter_map(|(_, loc)| loc.blob.delta.map(|d| (d.base, loc.blob.id)))
        .collect();
    while let Some((base, of)) = bases.pop() {
        let loc = index.lookup(&base).ok_or_else(|| Error::MissingChunk {
            chunk: base.to_hex(),
            needed_by: format!("delta chunk {of} (its base)"),
        })?;
        let pos = index.position(&base).expect("looked up above");
        if !is_live(&live, pos) {
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
    let skipped = repo.take_warnings();
    if !skipped.is_empty() {
        return Err(Error::damaged(
            "repository",
            format!(
                "refusing to prune while files are damaged ({}); run `sopvault check`",
                skipped.join("; ")
            ),
        ));
    }
    let decisions = decide(&snaps, opts)?;
    let forget: HashSet<SnapshotId> = decisions.iter().filter(|d| !d.keep).map(|d| d.id).collect();
    // Packs no index lists (left by an interrupted run) must be counted too;
    // a dry run writes nothing, so it plans without them (they are kept).
    // Neither adopts the packs of a damaged index file, which would hide
    // the damage: the plan refuses below until `repair index` is run.
    let index = if opts.dry_run {
        repo.index()?
    } else {
        repo.index_adopting_orphans_unless_damaged()?
    };
    let damaged = repo.take_warnings();
    if !damaged.is_empty() {
        return Err(Error::damaged(
            "index",
            format!(
                "refusing to prune: {}; `sopvault repair index` rebuilds the index from the packs",
                damaged.join("; ")
            ),
        ));
    }
    // Every snapshot not forgotten stays whole, also those outside the selected groups.
    let roots: Vec<ChunkId> = snaps
        .iter()
        .filter(|(id, _)| !forget.contains(id))
        .map(|(_, s)| s.root)
        .collect();
    let live = mark(repo, &index, &roots)?;
    let is_live = |pos: u64| live[(pos / 64) as usize] & (1 << (pos % 64)) != 0;

    let mut per_pack: HashMap<PackId, (u64, u64)> = HashMap::new();
    for (pos, loc) in index.iter_positions() {
        let e = per_pack.entry(loc.pack).or_default();
        if is_live(pos) {
            e.0 += loc.blob.stored_len as u64;
        }
    }
    let mut packs = PackPlan::default();
    let mut candidates = Vec::new();
    for (pack, size) in index.packs() {
        packs.total_bytes += size;
        let live_bytes = per_pack.get(pack).map(|e| e.0).unwrap_or(0);
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
    // Repack the emptiest packs first until unused space is within bounds.
    candidates.sort_by(|a, b| (b.3 * a.1).cmp(&(a.3 * b.1)).then(a.0.cmp(&b.0)));
    let kept_total = |p: &PackPlan| p.live_bytes + p.unused_after;
    let mut repacked_bytes = 0u64;
    for (pack, size, live_bytes, unused) in candidates {
        let over = packs.unused_after as f64 > opts.max_unused * kept_total(&packs) as f64;
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
    Ok(PrunePlan {
        snapshots: decisions,
        packs,
        index_files: index.included().to_vec(),
        index,
        live,
        time: opts.time.unwrap_or_else(crate::sys::sysinfo::now),
    })
}

/// Carries out a plan made under the same exclusive lock.
pub fn execute(repo: &Repository, plan: &PrunePlan) -> Result<PruneRecord> {
    let backend = repo.backend();
    let index = &plan.index;
    let record = PruneRecord {
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
    };
    // Under the exclusive lock nobody else writes: leftovers in tmp/ are garbage.
    backend.clean_tmp()?;
    let nothing_to_do = record.forgotten.is_empty() && record.deleted_packs.is_empty();
    if nothing_to_do {
        return Ok(record);
    }
    // 1. The record of what is about to go, for mirrors (and people).
    let bytes = record.encode(repo.key())?;
    backend.write_new(FileKind::Prune, &hex::encode(sha256(&bytes)), &bytes)?;
    crate::faults::point("prune:after-record");

    // 2. Forget.
    let names: Vec<String> = record.forgotten.iter().map(|id| id.to_hex()).collect();
    backend.remove_many(FileKind::Snapshot, &names)?;
    crate::faults::point("prune:after-forget");

    // 3. Repack live blobs of the selected packs, ciphertext verbatim.
    let repack: HashSet<PackId> = plan.packs.repack.iter().map(|p| p.0).collect();
    let deleted: HashSet<PackId> = plan.packs.delete.iter().map(|p| p.0).collect();
    let mut by_pack: HashMap<PackId, Vec<crate::blob::BlobInfo>> = HashMap::new();
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
            by_pack.entry(loc.pack).or_default().push(loc.blob);
        } else {
            let no = *pack_no.entry(loc.pack).or_insert_with(|| {
                compacted.packs.push((loc.pack, sizes[&loc.pack]));
                (compacted.packs.len() - 1) as u32
            });
            compacted.entries.push((no, loc.blob));
        }
    }
    let mut writers: HashMap<u32, PackWriter> = HashMap::new();
    let target = u64::from(repo.config().pack_size);
    let flush = |w: PackWriter, compacted: &mut IndexFile| -> Result<()> {
        let pack = w.finish(repo.key())?;
        backend.write_new(FileKind::Pack, &pack.id.to_hex(), &pack.bytes)?;
        crate::faults::point("prune:during-repack");
        compacted.packs.push((pack.id, pack.len));
        let no = (compacted.packs.len() - 1) as u32;
        compacted
            .entries
            .extend(pack.blobs.iter().map(|b| (no, *b)));
        Ok(())
    };
    let mut order: Vec<&PackId> = by_pack.keys().collect();
    order.sort();
    for pack in order {
        crate::interrupt::check()?;
        let bytes = backend.read(FileKind::Pack, &pack.to_hex())?;
        for b in &by_pack[pack] {
            let sealed = &bytes[b.offset as usize..(b.offset + b.stored_len as u64) as usize];
            // Never carry damage forward: a blob must open before it is copied.
            let loc = crate::index::Location {
                pack: *pack,
                blob: *b,
            };
            // A delta is authenticated here; its chain is `check --read-data`'s job.
            let opened = match b.codec {
                blob::Codec::Delta => blob::authenticate(repo.key(), b, sealed),
                _ => blob::open(repo.key(), b, sealed),
            };
            opened.map_err(|e| Error::BlobDamaged {
                chunk: b.id.to_hex(),
                pack: loc.pack.to_hex(),
                offset: b.offset,
                reason: format!("{e}; prune stopped before deleting anything of it"),
            })?;
            let kind = PackKind::for_blob(b.kind);
            let w = writers
                .entry(kind as u32)
                .or_insert_with(|| PackWriter::new(kind));
            w.add(&SealedBlob {
                id: b.id,
                kind: b.kind,
                codec: b.codec,
                raw_len: b.raw_len,
                delta: b.delta,
                bytes: sealed.to_vec(),
            });
            if w.len() >= target {
                let full = std::mem::replace(w, PackWriter::new(kind));
                flush(full, &mut compacted)?;
            }
        }
    }
    for (_, w) in writers {
        if !w.is_empty() {
            flush(w, &mut compacted)?;
        }
    }

    // 4. One index that supersedes all the old ones.
    compacted.entries.sort_by_key(|e| e.1.id);
    repo.write_index_file(&compacted)?;
    crate::faults::point("prune:after-index");

    // 5. Delete what is no longer referenced.
    let names: Vec<String> = plan.index_files.iter().map(|id| id.to_hex()).collect();
    backend.remove_many(FileKind::Index, &names)?;
    crate::faults::point("prune:after-delete-index");
    let names: Vec<String> = record.deleted_packs.iter().map(|id| id.to_hex()).collect();
    backend.remove_many(FileKind::Pack, &names)?;
    Ok(record)
}

/// Reads every prune record (oldest first by time).
pub fn records(repo: &Repository) -> Result<Vec<(String, PruneRecord)>> {
    let mut out = Vec::new();
    for (name, _) in repo.backend().list(FileKind::Prune)? {
        let bytes = repo.backend().read(FileKind::Prune, &name)?;
        crate::repo::check_name(&bytes, &name, "prune")?;
        out.push((
            name.clone(),
            PruneRecord::decode(repo.key(), &bytes, &format!("prune/{name}"))?,
        ));
    }
    out.sort_by_key(|(_, r)| r.time.map(|t| t.at));
    Ok(out)
}
