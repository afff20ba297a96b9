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
use crate::error::{Error, Result};
use crate::format::tree::{Content, NodeKind};
use crate::ids::{sha256, ChunkId, IndexId, PackId, SnapshotId};
use crate::index::Index;
use crate::repo::Repository;
use rayon::prelude::*;
use serde::Serialize;
use std::collections::{HashMap, HashSet};
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
fn io_threads(backend: &dyn crate::backend::Backend) -> usize {
    if backend.local_root().is_some() {
        rayon::current_num_threads()
    } else {
        8
    }
}

pub fn check(repo: &Repository, read: ReadData) -> Result<CheckReport> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(io_threads(repo.backend().as_ref()))
        .build()
        .map_err(|e| Error::Other(format!("cannot start check threads: {e}")))?;
    pool.install(|| check_in_pool(repo, read))
}

fn check_in_pool(repo: &Repository, read: ReadData) -> Result<CheckReport> {
    let backend = repo.backend().clone();
    let mut report = CheckReport::default();
    let problems = Mutex::new(Vec::<Problem>::new());
    let add = |p: Problem| problems.lock().unwrap().push(p);

    // 1. Small files: names are hashes.
    for kind in [
        FileKind::Config,
        FileKind::Key,
        FileKind::Index,
        FileKind::Snapshot,
        FileKind::Prune,
    ] {
        let names = backend.list(kind)?;
        let hashed: Vec<u64> = names
            .par_iter()
            .map(|(name, _)| -> Result<Option<u64>> {
                crate::interrupt::check()?;
                let object = format!("{}/{name}", kind.dir());
                match backend.read(kind, name) {
                    Ok(bytes) => {
                        let found = hex::encode(sha256(&bytes));
                        if found != *name {
                            add(problem(
                                object,
                                format!("content hashes to {found}, not to its name"),
                            ));
                        }
                        Ok(Some(bytes.len() as u64))
                    }
                    Err(e) => {
                        add(problem(object, e.to_string()));
                        Ok(None)
                    }
                }
            })
            .collect::<Result<Vec<_>>>()?
            .into_iter()
            .flatten()
            .collect();
        report.files_hashed += hashed.len() as u64;
        report.bytes_hashed += hashed.iter().sum::<u64>();
    }

    // 2. Index files and the packs they list.
    let present: HashMap<PackId, u64> = backend
        .list(FileKind::Pack)?
        .into_iter()
        .filter_map(|(n, s)| Some((PackId::from_hex(&n)?, s)))
        .collect();
    let index_ids: Vec<IndexId> = backend
        .list(FileKind::Index)?
        .into_iter()
        .filter_map(|(n, _)| IndexId::from_hex(&n))
        .collect();
    let mut good_index = Vec::new();
    let mut loaded = Vec::new();
    let opened: Vec<_> = index_ids
        .par_iter()
        .map(|id| (*id, repo.load_index_file(id)))
        .collect();
    for (id, f) in opened {
        report.index_files += 1;
        match f {
            Ok(f) => {
                good_index.push(id);
                loaded.push((id, f));
            }
            Err(e) => add(problem(format!("index/{id}"), e.to_string())),
        }
    }
    // A superseded index file may list packs that prune has since deleted.
    let superseded: HashSet<IndexId> = loaded
        .iter()
        .flat_map(|(_, f)| f.supersedes.iter().copied())
        .collect();
    for (id, f) in &loaded {
        if superseded.contains(id) {
            continue;
        }
        {
            {
                for (p, size) in &f.packs {
                    match present.get(p) {
                        None => add(problem(
                            format!("packs/{p}"),
                            format!("listed by index/{id} but missing"),
                        )),
                        Some(s) if s != size => add(problem(
                            format!("packs/{p}"),
                            format!("index/{id} says {size} bytes, found {s}"),
                        )),
                        _ => {}
                    }
                }
            }
        }
    }
    drop(loaded);
    // A fresh merge, not the cache: check trusts nothing local.
    let tmp = std::env::temp_dir().join(format!(
        "sopvault-check-{}-{}",
        std::process::id(),
        hex::encode(&sha256(repo.root().as_os_str().as_encoded_bytes())[..4])
    ));
    let _ = std::fs::remove_dir_all(&tmp);
    let load = |id: &IndexId| repo.load_index_file(id);
    let index = Index::open_or_build(
        &tmp.join("index.cache"),
        repo.key().index_cache_key(),
        &good_index,
        &present,
        &load,
    );
    let _ = std::fs::remove_dir_all(&tmp);
    let index = index?;

    // 3. Packs: hash, footer against the index, and optionally every blob.
    let mut by_pack: HashMap<PackId, Vec<crate::blob::BlobInfo>> = HashMap::new();
    for loc in index.iter() {
        by_pack.entry(loc.pack).or_default().push(loc.blob);
    }
    let packs: Vec<(PackId, u64)> = present.iter().map(|(p, s)| (*p, *s)).collect();
    let selected: HashSet<PackId> = match read {
        ReadData::None => HashSet::new(),
        ReadData::All => packs.iter().map(|p| p.0).collect(),
        ReadData::Subset(frac) => random_subset(&packs, frac)?,
    };
    report.packs = packs.len() as u64;
    let damaged = Mutex::new(HashMap::<ChunkId, String>::new());
    let deltas = Mutex::new(Vec::<crate::index::Location>::new());
    let counters = Mutex::new((0u64, 0u64, 0u64));
    packs
        .par_iter()
        .try_for_each(|(pack, size)| -> Result<()> {
            crate::interrupt::check()?;
            let object = format!("packs/{pack}");
            let bytes = match backend.read(FileKind::Pack, &pack.to_hex()) {
                Ok(b) => b,
                Err(e) => {
                    add(problem(&object, e.to_string()));
                    return Ok(());
                }
            };
            {
                let mut c = counters.lock().unwrap();
                c.0 += 1;
                c.1 += *size;
            }
            let found = hex::encode(sha256(&bytes));
            let hash_ok = found == pack.to_hex();
            if !hash_ok {
                add(problem(
                    &object,
                    format!("content hashes to {found}, not to its name"),
                ));
            }
            let indexed = by_pack.get(pack);
            let footer =
                match crate::format::pack::read_footer_from_bytes(repo.key(), &bytes, &object) {
                    Ok(f) => f,
                    Err(e) => {
                        add(problem(&object, e.to_string()));
                        for b in indexed.into_iter().flatten() {
                            damaged
                                .lock()
                                .unwrap()
                                .insert(b.id, format!("in {object}, whose footer is unreadable"));
                        }
                        return Ok(());
                    }
                };
            match indexed {
                None => report_warning(&problems, &object),
                Some(list) => {
                    let in_footer: HashSet<_> = footer.iter().collect();
                    for b in list {
                        if !in_footer.contains(b) {
                            add(problem(
                                &object,
                                format!(
                                    "index entry for chunk {} does not match the pack footer",
                                    b.id
                                ),
                            ));
                            damaged
                                .lock()
                                .unwrap()
                                .insert(b.id, format!("index entry disagrees with {object}"));
                        }
                    }
                }
            }
            // A pack whose hash is wrong gets every blob opened, to say which are damaged.
            if selected.contains(pack) || !hash_ok {
                let mut verified = 0;
                for b in &footer {
                    let loc = crate::index::Location {
                        pack: *pack,
                        blob: *b,
                    };
                    let sealed =
                        &bytes[b.offset as usize..(b.offset + b.stored_len as u64) as usize];
                    // A delta's chain is decoded below, once every pack is read;
                    // one the index no longer lists (left in a kept pack by
                    // prune) may have lost its base and is only authenticated.
                    let opened = if b.delta.is_some() {
                        if indexed.is_some_and(|l| l.contains(b)) {
                            deltas.lock().unwrap().push(loc);
                        }
                        crate::blob::authenticate(repo.key(), &loc.blob, sealed).map(|_| ())
                    } else {
                        crate::blob::open(repo.key(), &loc.blob, sealed).map(|_| ())
                    };
                    if let Err(e) = opened {
                        add(problem(
                            format!("chunk {}", b.id),
                            format!("in {object} at offset {}: {e}", b.offset),
                        ));
                        damaged
                            .lock()
                            .unwrap()
                            .insert(b.id, format!("damaged in {object} at offset {}", b.offset));
                    }
                    verified += 1;
                }
                let mut c = counters.lock().unwrap();
                c.2 += verified;
            }
            Ok(())
        })?;
    let (read_packs, _bytes, verified) = *counters.lock().unwrap();
    report.packs_read = if read == ReadData::None {
        0
    } else {
        selected.len() as u64
    };
    report.blobs_verified = verified;
    report.files_hashed += read_packs;
    report.bytes_hashed += _bytes;
    let mut damaged = damaged.into_inner().unwrap();
    let dependents = check_deltas(
        repo,
        &index,
        deltas.into_inner().unwrap(),
        &mut damaged,
        &problems,
    )?;

    // 4. Snapshots and everything they reach.
    let mut walker = Walker {
        repo,
        index: &index,
        damaged: &damaged,
        trees: HashMap::new(),
        missing: HashMap::new(),
    };
    // Manifests are read side by side (each a round trip on an object store).
    let manifests: Vec<(String, Result<crate::format::manifest::Snapshot>)> = backend
        .list(FileKind::Snapshot)?
        .into_par_iter()
        .map(|(name, _)| {
            let id = SnapshotId::from_hex(&name).unwrap_or_default();
            let snap = repo.load_snapshot(&id);
            (name, snap)
        })
        .collect();
    for (name, snap) in manifests {
        crate::interrupt::check()?;
        report.snapshots += 1;
        let id = SnapshotId::from_hex(&name).unwrap_or_default();
        let snap = match snap {
            Ok(s) => s,
            Err(e) => {
                add(problem(format!("snapshots/{name}"), e.to_string()));
                continue;
            }
        };
        let label = format!("{} ({})", snap.name, id.short());
        for (chunk, path) in walker.tree(&snap.root, "")? {
            walker.missing.entry(chunk).or_default().push(format!(
                "{label}: {}",
                if path.is_empty() { "/" } else { &path }
            ));
        }
    }
    report.trees = walker.trees.len() as u64;
    let mut problems = problems.into_inner().unwrap();
    let missing = std::mem::take(&mut walker.missing);
    // A damaged base also affects what its dependents affect.
    for (base, deps) in &dependents {
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
    // Attach affected paths to the damage found in packs; report missing chunks.
    for (chunk, affects) in missing {
        let short = format!("chunk {chunk}");
        if let Some(p) = problems.iter_mut().find(|p| p.object == short) {
            p.affects.extend(affects);
        } else if let Some(why) = damaged.get(&chunk) {
            problems.push(Problem {
                object: short,
                message: why.clone(),
                affects,
            });
        } else {
            problems.push(Problem {
                object: short,
                message: "not in the index (missing)".into(),
                affects,
            });
        }
    }
    let (warnings, problems): (Vec<Problem>, Vec<Problem>) =
        problems.into_iter().partition(|p| p.message == UNINDEXED);
    report.warnings = warnings
        .into_iter()
        .map(|w| {
            format!(
                "{}: {} (left by an interrupted run; harmless, removed by prune)",
                w.object, w.message
            )
        })
        .collect();
    report.problems = problems;
    Ok(report)
}

const UNINDEXED: &str = "pack is not in any index";

/// Delta chains: every link must exist with the right depth; the deltas read
/// in step 3 are decoded through their chains; and a delta whose chain reaches
/// damage is damaged too. Returns, per damaged chunk, the deltas that depend on it.
fn check_deltas(
    repo: &Repository,
    index: &Index,
    mut read: Vec<crate::index::Location>,
    damaged: &mut HashMap<ChunkId, String>,
    problems: &Mutex<Vec<Problem>>,
) -> Result<HashMap<ChunkId, Vec<ChunkId>>> {
    let add = |p: Problem| problems.lock().unwrap().push(p);
    // Shallow links first, so the base cache holds what deeper ones need.
    read.sort_by_key(|l| (l.blob.delta.map(|d| d.depth), l.pack, l.blob.offset));
    let decoded: Vec<(ChunkId, String)> = read
        .par_iter()
        .filter(|l| !damaged.contains_key(&l.blob.id))
        .filter_map(|l| {
            if crate::interrupt::check().is_err() {
                return None;
            }
            repo.read_blob(index, l).err().map(|e| {
                (
                    l.blob.id,
                    format!("in packs/{} at offset {}: {e}", l.pack, l.blob.offset),
                )
            })
        })
        .collect();
    crate::interrupt::check()?;
    // Which chunks below each delta are damaged, from the links alone.
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
    // A delta already damaged by its links is reported once, for its links.
    let by_links: HashSet<ChunkId> = new_damage.iter().map(|(id, _)| *id).collect();
    for (id, why) in decoded {
        if !by_links.contains(&id) {
            new_damage.push((id, why));
        }
    }
    let dependent: HashSet<ChunkId> = dependents.values().flatten().copied().collect();
    for (id, why) in new_damage {
        if !dependent.contains(&id) {
            add(problem(format!("chunk {id}"), why.clone()));
        }
        damaged.insert(id, why);
    }
    Ok(dependents)
}

fn report_warning(problems: &Mutex<Vec<Problem>>, object: &str) {
    problems.lock().unwrap().push(problem(object, UNINDEXED));
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
