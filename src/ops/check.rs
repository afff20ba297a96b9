//! `check`: verify that the repository is whole, and say what any damage affects.
//!
//! 1. Every file in config/, keys/, index/, snapshots/, prune/ and packs/ must
//!    hash (SHA-256) to its name.
//! 2. Every index file must open; every pack it lists must exist with the
//!    listed size.
//! 3. Every pack's trailer and footer must open and agree with the index;
//!    with `--read-data` (or a random subset of packs) every blob is opened,
//!    decompressed and its id recomputed.
//! 4. Every snapshot must open, and every tree, chunk list and chunk it
//!    reaches must be in the index and undamaged. Damage found in step 3 is
//!    reported with the snapshots and paths it affects.

use crate::backend::FileKind;
use crate::blob::BlobInfo;
use crate::error::{Error, Result};
use crate::format::manifest::Snapshot;
use crate::format::tree::{Content, NodeKind};
use crate::ids::{sha256, ChunkId, IndexId, PackId, SnapshotId};
use crate::index::{Index, IndexFile, Location};
use crate::repo::Repository;
use rayon::prelude::*;
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ReadData {
    None,
    All,
    /// A fraction in (0, 1] of packs, chosen at random.
    Subset(f64),
}

#[derive(Clone, Debug, Serialize)]
pub struct Problem {
    /// The damaged or missing object (`packs/ab12…`, `chunk 1a2b3c4d`, ...).
    pub object: String,
    pub message: String,
    /// Snapshots and paths that depend on it (`siakad_2026-11-22 (1a2b3c4d): /var/www/x`).
    pub affects: Vec<String>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct CheckReport {
    pub files_hashed: u64,
    pub bytes_hashed: u64,
    pub packs: u64,
    pub packs_read: u64,
    pub blobs_verified: u64,
    pub index_files: u64,
    pub snapshots: u64,
    pub trees: u64,
    pub problems: Vec<Problem>,
    pub warnings: Vec<String>,
}

impl CheckReport {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

fn problem(object: impl Into<String>, message: impl Into<String>) -> Problem {
    Problem {
        object: object.into(),
        message: message.into(),
        affects: Vec::new(),
    }
}

/// Reads in flight at once: a local disk is read by the default pool; an
/// object store answers each request after a round trip, so more requests
/// overlap (each holds at most one pack in memory).
fn io_threads(repo: &Repository) -> usize {
    if repo.local_root().is_some() {
        rayon::current_num_threads()
    } else {
        8
    }
}

pub fn check(repo: &Repository, read: ReadData) -> Result<CheckReport> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(io_threads(repo))
        .build()
        .map_err(|e| Error::Threads {
            what: "check threads".into(),
            reason: e.to_string(),
        })?;
    pool.install(|| check_in_pool(repo, read))
}

/// The steps of the module doc, in order.
fn check_in_pool(repo: &Repository, read: ReadData) -> Result<CheckReport> {
    let mut c = Check::new(repo);
    c.hash_structure_files()?;
    let present: HashMap<PackId, u64> = repo.stored_packs()?.into_iter().collect();
    let good_index = c.check_index_files(&present)?;
    let index = repo.fresh_index(&good_index, &present)?;
    let deltas = c.check_packs(&index, &present, read)?;
    let dependents = c.check_deltas(&index, deltas)?;
    let missing = c.walk_snapshots(&index)?;
    Ok(c.finish(&dependents, missing))
}

/// What a step found: damage, or a pack that no index lists (only a warning).
enum Finding {
    Damage(Problem),
    UnindexedPack(PackId),
}

/// The state the steps share; steps that run side by side add to it
/// through its locks.
struct Check<'a> {
    repo: &'a Repository,
    report: CheckReport,
    problems: Mutex<Vec<Problem>>,
    unindexed: Mutex<Vec<PackId>>,
    /// Chunks found damaged so far, with why.
    damaged: Mutex<HashMap<ChunkId, String>>,
}

impl<'a> Check<'a> {
    fn new(repo: &'a Repository) -> Self {
        Check {
            repo,
            report: CheckReport::default(),
            problems: Mutex::new(Vec::new()),
            unindexed: Mutex::new(Vec::new()),
            damaged: Mutex::new(HashMap::new()),
        }
    }

    fn found(&self, finding: Finding) {
        match finding {
            Finding::Damage(p) => self.problems.lock().unwrap().push(p),
            Finding::UnindexedPack(p) => self.unindexed.lock().unwrap().push(p),
        }
    }

    fn damage(&self, object: impl Into<String>, message: impl Into<String>) {
        self.found(Finding::Damage(problem(object, message)));
    }

    fn mark_damaged(&self, chunk: ChunkId, why: String) {
        self.damaged.lock().unwrap().insert(chunk, why);
    }

    /// Step 1: the small files' names are the hashes of their bytes.
    fn hash_structure_files(&mut self) -> Result<()> {
        for kind in [
            FileKind::Config,
            FileKind::Key,
            FileKind::Index,
            FileKind::Snapshot,
            FileKind::Prune,
        ] {
            let names = self.repo.stored_files(kind)?;
            let hashed: Vec<u64> = names
                .par_iter()
                .map(|(name, _)| self.hash_file(kind, name))
                .collect::<Result<Vec<_>>>()?
                .into_iter()
                .flatten()
                .collect();
            self.report.files_hashed += hashed.len() as u64;
            self.report.bytes_hashed += hashed.iter().sum::<u64>();
        }
        Ok(())
    }

    /// The length of a file that could be read (whatever its hash).
    fn hash_file(&self, kind: FileKind, name: &str) -> Result<Option<u64>> {
        crate::interrupt::check()?;
        let object = format!("{}/{name}", kind.dir());
        match self.repo.read_stored_file(kind, name) {
            Ok(bytes) => {
                let found = hex::encode(sha256(&bytes));
                if found != *name {
                    self.damage(
                        object,
                        format!("content hashes to {found}, not to its name"),
                    );
                }
                Ok(Some(bytes.len() as u64))
            }
            Err(e) => {
                self.damage(object, e.to_string());
                Ok(None)
            }
        }
    }

    /// Step 2: every index file opens, and every pack a current one lists
    /// is present with the listed size. Returns the index files that open.
    fn check_index_files(&mut self, present: &HashMap<PackId, u64>) -> Result<Vec<IndexId>> {
        let index_ids = self.repo.stored_index_files()?;
        let opened: Vec<_> = index_ids
            .par_iter()
            .map(|id| (*id, self.repo.load_index_file(id)))
            .collect();
        let mut loaded = Vec::new();
        for (id, f) in opened {
            self.report.index_files += 1;
            match f {
                Ok(f) => loaded.push((id, f)),
                Err(e) => self.damage(format!("index/{id}"), e.to_string()),
            }
        }
        // A superseded index file may list packs that prune has since deleted.
        let superseded: HashSet<IndexId> = loaded
            .iter()
            .flat_map(|(_, f)| f.supersedes.iter().copied())
            .collect();
        for (id, f) in loaded.iter().filter(|(id, _)| !superseded.contains(id)) {
            self.check_listed_packs(id, f, present);
        }
        Ok(loaded.into_iter().map(|(id, _)| id).collect())
    }

    fn check_listed_packs(&self, id: &IndexId, f: &IndexFile, present: &HashMap<PackId, u64>) {
        for (p, size) in &f.packs {
            match present.get(p) {
                None => self.damage(
                    format!("packs/{p}"),
                    format!("listed by index/{id} but missing"),
                ),
                Some(s) if s != size => self.damage(
                    format!("packs/{p}"),
                    format!("index/{id} says {size} bytes, found {s}"),
                ),
                _ => {}
            }
        }
    }

    /// Step 3: every pack hashes to its name and its footer agrees with the
    /// index; the selected packs (and any whose hash is wrong) have every
    /// blob opened. Returns the deltas read, whose chains step 3 decodes.
    fn check_packs(
        &mut self,
        index: &Index,
        present: &HashMap<PackId, u64>,
        read: ReadData,
    ) -> Result<Vec<Location>> {
        let mut by_pack: HashMap<PackId, Vec<BlobInfo>> = HashMap::new();
        for loc in index.iter() {
            by_pack.entry(loc.pack).or_default().push(loc.blob);
        }
        let packs: Vec<(PackId, u64)> = present.iter().map(|(p, s)| (*p, *s)).collect();
        let selected: HashSet<PackId> = match read {
            ReadData::None => HashSet::new(),
            ReadData::All => packs.iter().map(|p| p.0).collect(),
            ReadData::Subset(frac) => random_subset(&packs, frac)?,
        };
        self.report.packs = packs.len() as u64;
        let read_packs = AtomicU64::new(0);
        let read_bytes = AtomicU64::new(0);
        let verified = AtomicU64::new(0);
        let deltas = Mutex::new(Vec::new());
        packs
            .par_iter()
            .try_for_each(|(pack, size)| -> Result<()> {
                crate::interrupt::check()?;
                let Some(bytes) = self.read_pack(pack) else {
                    return Ok(());
                };
                read_packs.fetch_add(1, Ordering::Relaxed);
                read_bytes.fetch_add(*size, Ordering::Relaxed);
                let opened = self.check_pack(pack, &bytes, by_pack.get(pack), &selected);
                if let Some((n, mut d)) = opened {
                    verified.fetch_add(n, Ordering::Relaxed);
                    deltas.lock().unwrap().append(&mut d);
                }
                Ok(())
            })?;
        self.report.packs_read = if read == ReadData::None {
            0
        } else {
            selected.len() as u64
        };
        self.report.blobs_verified = verified.into_inner();
        self.report.files_hashed += read_packs.into_inner();
        self.report.bytes_hashed += read_bytes.into_inner();
        Ok(deltas.into_inner().unwrap())
    }

    fn read_pack(&self, pack: &PackId) -> Option<Vec<u8>> {
        self.repo
            .read_pack(pack)
            .map_err(|e| self.damage(format!("packs/{pack}"), e.to_string()))
            .ok()
    }

    /// One pack read whole: its hash, its footer against the index and, if
    /// selected or wrongly hashed, its blobs. Returns how many blobs were
    /// opened and the indexed deltas among them, when they were.
    fn check_pack(
        &self,
        pack: &PackId,
        bytes: &[u8],
        indexed: Option<&Vec<BlobInfo>>,
        selected: &HashSet<PackId>,
    ) -> Option<(u64, Vec<Location>)> {
        let object = format!("packs/{pack}");
        let found = hex::encode(sha256(bytes));
        let hash_ok = found == pack.to_hex();
        if !hash_ok {
            self.damage(
                &object,
                format!("content hashes to {found}, not to its name"),
            );
        }
        let footer = match self.repo.pack_footer_from_bytes(pack, bytes) {
            Ok(f) => f,
            Err(e) => {
                self.damage(&object, e.to_string());
                for b in indexed.into_iter().flatten() {
                    self.mark_damaged(b.id, format!("in {object}, whose footer is unreadable"));
                }
                return None;
            }
        };
        match indexed {
            None => self.found(Finding::UnindexedPack(*pack)),
            Some(list) => self.compare_footer(&object, list, &footer),
        }
        // A pack whose hash is wrong gets every blob opened, to say which are damaged.
        (selected.contains(pack) || !hash_ok)
            .then(|| self.open_blobs(pack, bytes, &footer, indexed))
    }

    /// Every index entry for a pack must be one its footer lists.
    fn compare_footer(&self, object: &str, indexed: &[BlobInfo], footer: &[BlobInfo]) {
        let in_footer: HashSet<_> = footer.iter().collect();
        for b in indexed.iter().filter(|b| !in_footer.contains(b)) {
            self.damage(
                object,
                format!(
                    "index entry for chunk {} does not match the pack footer",
                    b.id
                ),
            );
            self.mark_damaged(b.id, format!("index entry disagrees with {object}"));
        }
    }

    /// Opens every blob of a pack's footer; returns how many, and the
    /// indexed deltas among them (their chains are decoded once every pack
    /// is read).
    fn open_blobs(
        &self,
        pack: &PackId,
        bytes: &[u8],
        footer: &[BlobInfo],
        indexed: Option<&Vec<BlobInfo>>,
    ) -> (u64, Vec<Location>) {
        let mut deltas = Vec::new();
        for b in footer {
            let sealed = &bytes[b.offset as usize..(b.offset + b.stored_len as u64) as usize];
            // A delta is only authenticated here: its chain is decoded in
            // check_deltas. One the index no longer lists (left in a kept
            // pack by prune) may have lost its base and is not decoded.
            let opened = if b.delta.is_some() {
                if indexed.is_some_and(|l| l.contains(b)) {
                    deltas.push(Location {
                        pack: *pack,
                        blob: *b,
                    });
                }
                self.repo.authenticate_sealed_blob(b, sealed)
            } else {
                self.repo.verify_sealed_blob(b, sealed)
            };
            if let Err(e) = opened {
                let place = format!("packs/{pack} at offset {}", b.offset);
                self.damage(format!("chunk {}", b.id), format!("in {place}: {e}"));
                self.mark_damaged(b.id, format!("damaged in {place}"));
            }
        }
        (footer.len() as u64, deltas)
    }

    /// Delta chains: every link must exist with the right depth; the deltas
    /// read in step 3 are decoded through their chains; and a delta whose
    /// chain reaches damage is damaged too. Returns, per damaged chunk, the
    /// deltas that depend on it.
    fn check_deltas(
        &mut self,
        index: &Index,
        mut read: Vec<Location>,
    ) -> Result<HashMap<ChunkId, Vec<ChunkId>>> {
        // Shallow links first, so the base cache holds what deeper ones need.
        read.sort_by_key(|l| (l.blob.delta.map(|d| d.depth), l.pack, l.blob.offset));
        let damaged = self.damaged.get_mut().unwrap();
        let decoded: Vec<(ChunkId, String)> = read
            .par_iter()
            .filter(|l| !damaged.contains_key(&l.blob.id))
            .filter_map(|l| {
                if crate::interrupt::check().is_err() {
                    return None;
                }
                self.repo.read_blob(index, l).err().map(|e| {
                    (
                        l.blob.id,
                        format!("in packs/{} at offset {}: {e}", l.pack, l.blob.offset),
                    )
                })
            })
            .collect();
        crate::interrupt::check()?;
        let (dependents, mut new_damage) = damage_through_links(index, damaged);
        // A delta already damaged by its links is reported once, for its links.
        let by_links: HashSet<ChunkId> = new_damage.iter().map(|(id, _)| *id).collect();
        new_damage.extend(decoded.into_iter().filter(|(id, _)| !by_links.contains(id)));
        let dependent: HashSet<ChunkId> = dependents.values().flatten().copied().collect();
        for (id, why) in new_damage {
            if !dependent.contains(&id) {
                self.damage(format!("chunk {id}"), why.clone());
            }
            self.damaged.get_mut().unwrap().insert(id, why);
        }
        Ok(dependents)
    }

    /// Step 4: every snapshot opens, and everything it reaches is indexed
    /// and undamaged. Returns the missing or damaged chunks with the
    /// snapshots and paths that need them.
    fn walk_snapshots(&mut self, index: &Index) -> Result<HashMap<ChunkId, Vec<String>>> {
        let damaged = self.damaged.get_mut().unwrap();
        let mut walker = Walker {
            repo: self.repo,
            index,
            damaged,
            trees: HashMap::new(),
            missing: HashMap::new(),
        };
        // Manifests are read side by side (each a round trip on an object store).
        let manifests: Vec<(String, Result<Snapshot>)> = self
            .repo
            .stored_files(FileKind::Snapshot)?
            .into_par_iter()
            .map(|(name, _)| {
                let id = SnapshotId::from_hex(&name).unwrap_or_default();
                let snap = self.repo.load_snapshot(&id);
                (name, snap)
            })
            .collect();
        for (name, snap) in manifests {
            crate::interrupt::check()?;
            self.report.snapshots += 1;
            let id = SnapshotId::from_hex(&name).unwrap_or_default();
            let snap = match snap {
                Ok(s) => s,
                Err(e) => {
                    let p = problem(format!("snapshots/{name}"), e.to_string());
                    self.problems.get_mut().unwrap().push(p);
                    continue;
                }
            };
            let label = format!("{} ({})", snap.name, id.short());
            for (chunk, path) in walker.tree(&snap.root, "")? {
                let path = if path.is_empty() { "/" } else { &path };
                walker
                    .missing
                    .entry(chunk)
                    .or_default()
                    .push(format!("{label}: {path}"));
            }
        }
        self.report.trees = walker.trees.len() as u64;
        Ok(walker.missing)
    }

    /// The report: damage with what it affects, and the warnings.
    fn finish(
        mut self,
        dependents: &HashMap<ChunkId, Vec<ChunkId>>,
        missing: HashMap<ChunkId, Vec<String>>,
    ) -> CheckReport {
        let damaged = self.damaged.into_inner().unwrap();
        let mut problems = self.problems.into_inner().unwrap();
        attach_dependents(&mut problems, dependents, &missing, &damaged);
        attach_missing(&mut problems, missing, &damaged);
        self.report.warnings = self
            .unindexed
            .into_inner()
            .unwrap()
            .into_iter()
            .map(|p| {
                format!(
                    "packs/{p}: pack is not in any index (left by an interrupted run; harmless, removed by prune)"
                )
            })
            .collect();
        self.report.problems = problems;
        self.report
    }
}

/// Which deltas' chains reach a damaged chunk, from the links alone: per
/// damaged chunk the deltas above it, and the deltas newly damaged, with why.
#[allow(clippy::type_complexity)]
fn damage_through_links(
    index: &Index,
    damaged: &HashMap<ChunkId, String>,
) -> (HashMap<ChunkId, Vec<ChunkId>>, Vec<(ChunkId, String)>) {
    let mut dependents: HashMap<ChunkId, Vec<ChunkId>> = HashMap::new();
    let mut new_damage: Vec<(ChunkId, String)> = Vec::new();
    for loc in index.iter().filter(|l| l.blob.delta.is_some()) {
        let id = loc.blob.id;
        match crate::repo::chain::chain(index, &loc, None) {
            Err(e) => new_damage.push((id, e.to_string())),
            Ok((links, _)) => {
                if let Some(bad) = links[1..].iter().find(|b| damaged.contains_key(&b.blob.id)) {
                    dependents.entry(bad.blob.id).or_default().push(id);
                    if !damaged.contains_key(&id) {
                        new_damage.push((
                            id,
                            format!("its delta base chunk {} is damaged", bad.blob.id),
                        ));
                    }
                }
            }
        }
    }
    (dependents, new_damage)
}

/// A damaged base also affects what its dependent deltas affect.
fn attach_dependents(
    problems: &mut Vec<Problem>,
    dependents: &HashMap<ChunkId, Vec<ChunkId>>,
    missing: &HashMap<ChunkId, Vec<String>>,
    damaged: &HashMap<ChunkId, String>,
) {
    for (base, deps) in dependents {
        let short = format!("chunk {base}");
        let mut extra: Vec<String> = Vec::new();
        for d in deps {
            if let Some(a) = missing.get(d) {
                extra.extend(
                    a.iter()
                        .map(|a| format!("{a} (through delta chunk {})", d.short())),
                );
            }
        }
        let note = format!(
            "; {} delta chunk(s) depend on it: {}",
            deps.len(),
            deps.iter()
                .map(|d| d.short())
                .collect::<Vec<_>>()
                .join(", ")
        );
        if let Some(p) = problems.iter_mut().find(|p| p.object == short) {
            p.message.push_str(&note);
            p.affects.extend(extra);
        } else {
            problems.push(Problem {
                object: short,
                message: format!(
                    "{}{note}",
                    damaged.get(base).map(String::as_str).unwrap_or("damaged")
                ),
                affects: extra,
            });
        }
    }
}

/// Attaches affected paths to the damage found in packs; reports missing chunks.
fn attach_missing(
    problems: &mut Vec<Problem>,
    missing: HashMap<ChunkId, Vec<String>>,
    damaged: &HashMap<ChunkId, String>,
) {
    for (chunk, affects) in missing {
        let short = format!("chunk {chunk}");
        if let Some(p) = problems.iter_mut().find(|p| p.object == short) {
            p.affects.extend(affects);
        } else {
            let message = match damaged.get(&chunk) {
                Some(why) => why.clone(),
                None => "not in the index (missing)".into(),
            };
            problems.push(Problem {
                object: short,
                message,
                affects,
            });
        }
    }
}

fn random_subset(packs: &[(PackId, u64)], frac: f64) -> Result<HashSet<PackId>> {
    let want = ((packs.len() as f64) * frac).ceil() as usize;
    let mut order: Vec<(u64, PackId)> = Vec::with_capacity(packs.len());
    for (p, _) in packs {
        let mut r = [0u8; 8];
        crate::crypto::fill_random(&mut r)?;
        order.push((u64::from_le_bytes(r), *p));
    }
    order.sort();
    Ok(order.into_iter().take(want).map(|(_, p)| p).collect())
}

struct Walker<'a> {
    repo: &'a Repository,
    index: &'a Index,
    damaged: &'a HashMap<ChunkId, String>,
    /// Per tree: the (chunk, relative path) pairs below it that are missing or damaged.
    trees: HashMap<ChunkId, Vec<(ChunkId, String)>>,
    missing: HashMap<ChunkId, Vec<String>>,
}

impl Walker<'_> {
    fn bad(&self, id: &ChunkId) -> bool {
        self.damaged.contains_key(id) || !self.index.contains(id)
    }

    fn tree(&mut self, id: &ChunkId, path: &str) -> Result<Vec<(ChunkId, String)>> {
        if let Some(r) = self.trees.get(id) {
            return Ok(r.iter().map(|(c, p)| (*c, format!("{path}{p}"))).collect());
        }
        let mut bad: Vec<(ChunkId, String)> = Vec::new();
        if self.bad(id) {
            bad.push((*id, String::new()));
        } else {
            match self
                .repo
                .load_tree(self.index, id, if path.is_empty() { "/" } else { path })
            {
                Err(Error::Interrupted) => return Err(Error::Interrupted),
                Err(_) => bad.push((*id, String::new())),
                Ok(t) => {
                    for n in &t.nodes {
                        let rel = format!("/{}", n.name_lossy());
                        match &n.kind {
                            NodeKind::Dir { tree } => {
                                for (c, p) in self.tree(tree, "")? {
                                    bad.push((c, format!("{rel}{p}")));
                                }
                            }
                            NodeKind::File { content, .. } => {
                                let lists: Vec<ChunkId> = match content {
                                    Content::Chunks(_) => Vec::new(),
                                    Content::Lists(l) => l.iter().map(|l| l.id).collect(),
                                };
                                let mut any_list_bad = false;
                                for l in &lists {
                                    if self.bad(l) {
                                        bad.push((*l, rel.clone()));
                                        any_list_bad = true;
                                    }
                                }
                                if any_list_bad {
                                    continue;
                                }
                                match self.repo.content_chunks(self.index, content, &rel) {
                                    Ok(chunks) => {
                                        let mut seen = HashSet::new();
                                        for c in chunks {
                                            if self.bad(&c.id) && seen.insert(c.id) {
                                                bad.push((c.id, rel.clone()));
                                            }
                                        }
                                    }
                                    Err(Error::Interrupted) => return Err(Error::Interrupted),
                                    Err(_) => bad.extend(lists.iter().map(|l| (*l, rel.clone()))),
                                }
                            }
                            _ => {}
                        }
                    }
                }
            }
        }
        self.trees.insert(*id, bad.clone());
        Ok(bad
            .into_iter()
            .map(|(c, p)| (c, format!("{path}{p}")))
            .collect())
    }
}
