//! `mirror`: byte-for-byte copies of a repository, on a disk or in object storage.
//!
//! A mirror is a repository: the same files under the same relative paths,
//! each named by the SHA-256 of its bytes. Principle 2 of the design (a
//! superset of a valid repository is valid) makes additive copying always
//! safe; only deletion needs care. Plan first, then execute:
//!
//! ```text
//! plan:    classify the destination: a mirror of this repository / empty (needs --init) / refuse
//!          copy set: source files the destination lacks, in the order
//!                    SOPVAULT.txt, config, keys → packs → index → snapshots → prune records
//!          deletions: files named by authenticated prune records older than the grace
//!                    period, gone from the source, present in the mirror, and not
//!                    needed by the index files the mirror keeps
//! execute: copy each file: read, SHA-256 must equal its name, write whole (tmp + link, or one PUT)
//!          then delete: snapshots → index files → packs
//! ```
//! A mirror is a valid repository after every run: everything the source has
//! (what a prune wrote included: its compacted index, repacked packs, records)
//! is copied at once, because readers take the union of every index file
//! present; only deletions wait for the grace period. So whether a mirror runs
//! before or after a prune does not matter. An interrupted run leaves an
//! incomplete mirror, never a corrupt one: every file appears whole or not at
//! all, and a file appears only after everything it refers to. A mirror never deletes a file because it is missing at the source.
//!
//! [`verify`] needs no key: names and sizes against the source, then SHA-256 of
//! each file (or a daily share of them) against its name. [`state`] remembers
//! the destinations a repository was mirrored to, for `mirror --status`.

use crate::backend::{Backend, FileKind, README_NAME, RESERVE_NAME};
use crate::error::{Error, Result};
use crate::ids::{sha256, ChunkId, PackId};
use crate::index::IndexFile;
use crate::ops::progress::Progress;
use crate::repo::{check_name, Repository};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::sync::Mutex;

/// The order in which files are copied: what a file refers to is always there
/// before it, which is the order of [`FileKind::ALL`].
pub const COPY_ORDER: [FileKind; 6] = FileKind::ALL;

/// The grace period when `--delete-after` is not given: 30 days.
pub const DEFAULT_DELETE_AFTER_SECS: i64 = 30 * 86400;

/// One repository file.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct FileRef {
    pub kind: FileKind,
    pub name: String,
    pub size: u64,
}

impl FileRef {
    /// The path relative to the repository root, as on disk and in a bucket.
    pub fn rel_path(&self) -> String {
        rel_path(self.kind, &self.name)
    }
}

pub fn rel_path(kind: FileKind, name: &str) -> String {
    match kind {
        FileKind::Pack => format!("packs/{}/{name}", name.get(..2).unwrap_or("00")),
        k => format!("{}/{name}", k.dir()),
    }
}

fn is_hash_name(name: &str) -> bool {
    name.len() == 64
        && name
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

/// What a relative path is: a content-addressed repository file, the
/// `SOPVAULT.txt`, ephemeral (`locks/`, `tmp/`, the space `reserve`), or
/// something else.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PathClass {
    File(FileKind, String),
    Readme,
    Ephemeral,
    Stray,
}

pub fn classify_path(rel: &str) -> PathClass {
    if rel == README_NAME {
        return PathClass::Readme;
    }
    if rel.starts_with("locks/") || rel.starts_with("tmp/") || rel == RESERVE_NAME {
        return PathClass::Ephemeral;
    }
    let parts: Vec<&str> = rel.split('/').collect();
    for kind in FileKind::ALL {
        match (kind, parts.as_slice()) {
            (FileKind::Pack, ["packs", hh, name])
                if is_hash_name(name) && name.get(..2) == Some(*hh) =>
            {
                return PathClass::File(kind, name.to_string())
            }
            (FileKind::Pack, _) => {}
            (k, [dir, name]) if *dir == k.dir() && is_hash_name(name) => {
                return PathClass::File(k, name.to_string())
            }
            _ => {}
        }
    }
    PathClass::Stray
}

/// A listing of one place, by kind.
#[derive(Clone, Debug, Default)]
pub struct Listing {
    pub files: BTreeMap<FileKind, BTreeMap<String, u64>>,
    pub readme: bool,
    /// Files that are neither repository files nor ephemeral.
    pub stray: Vec<String>,
    /// Files in `tmp/` and `locks/`.
    pub ephemeral: usize,
}

impl Listing {
    pub fn of(backend: &dyn Backend) -> Result<Listing> {
        let mut l = Listing::default();
        for (rel, size) in backend.all_files()? {
            match classify_path(&rel) {
                PathClass::File(kind, name) => {
                    l.files.entry(kind).or_default().insert(name, size);
                }
                PathClass::Readme => l.readme = true,
                PathClass::Ephemeral => l.ephemeral += 1,
                PathClass::Stray => l.stray.push(rel),
            }
        }
        Ok(l)
    }
    /// A source's listing, taken in the reverse of the write order (prune
    /// records, snapshots, index, packs, keys, config): a file written while
    /// the listing runs is either missed or listed together with everything
    /// it refers to, which was written before it.
    pub fn of_source(backend: &dyn Backend) -> Result<Listing> {
        let mut l = Listing::default();
        for kind in COPY_ORDER.iter().rev() {
            l.files
                .insert(*kind, backend.list(*kind)?.into_iter().collect());
        }
        l.readme = backend.read_readme()?.is_some();
        Ok(l)
    }
    pub fn get(&self, kind: FileKind, name: &str) -> Option<u64> {
        self.files.get(&kind).and_then(|m| m.get(name)).copied()
    }
    pub fn kind(&self, kind: FileKind) -> impl Iterator<Item = (&String, &u64)> {
        self.files.get(&kind).into_iter().flatten()
    }
    pub fn count(&self) -> usize {
        self.files.values().map(|m| m.len()).sum()
    }
    pub fn is_empty(&self) -> bool {
        self.count() == 0 && !self.readme && self.stray.is_empty()
    }
    /// Source files the other listing lacks, in copy order.
    pub fn missing_from(&self, other: &Listing) -> Vec<FileRef> {
        let mut out = Vec::new();
        for kind in COPY_ORDER {
            for (name, size) in self.kind(kind) {
                if other.get(kind, name).is_none() {
                    out.push(FileRef {
                        kind,
                        name: name.clone(),
                        size: *size,
                    });
                }
            }
        }
        out
    }
}

/// The repository id written in a `SOPVAULT.txt`.
pub fn readme_repo_id(readme: &[u8]) -> Option<String> {
    String::from_utf8_lossy(readme).lines().find_map(|l| {
        l.strip_prefix("Repository id: ")
            .map(|s| s.trim().to_string())
    })
}

/// What the destination holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DestinationState {
    /// A (possibly incomplete) mirror of this repository.
    Mirror,
    /// Nothing at all: a mirror may start here with `--init`.
    Empty,
}

/// How a mirror run behaves.
#[derive(Clone, Debug)]
pub struct MirrorOptions {
    /// Start a mirror in an empty destination.
    pub init: bool,
    /// Grace period before a condemned file is deleted from the mirror.
    pub delete_after_secs: i64,
    /// "Now", in seconds since the epoch (a parameter so tests can plan at any time).
    pub now: i64,
    /// Files copied at once (object stores gain from more).
    pub parallel: usize,
}

/// A condemned file the plan keeps, and why.
#[derive(Clone, Debug)]
pub struct Kept {
    pub file: FileRef,
    pub reason: String,
}

/// Everything a mirror run will do.
#[derive(Clone, Debug)]
pub struct MirrorPlan {
    pub source: String,
    pub destination: String,
    pub state: DestinationState,
    /// Copy `SOPVAULT.txt` first.
    pub copy_readme: bool,
    /// In copy order.
    pub copy: Vec<FileRef>,
    /// In deletion order: snapshots, index files, packs.
    pub delete: Vec<FileRef>,
    /// Condemned, but within the grace period (with the time it may go) or still needed.
    pub kept: Vec<Kept>,
    /// The earliest time a file now waiting for the grace period may be deleted.
    pub next_deletion: Option<i64>,
    /// Destination files the source does not have and no prune record condemns.
    pub extra: usize,
}

impl MirrorPlan {
    pub fn copy_bytes(&self) -> u64 {
        self.copy.iter().map(|f| f.size).sum()
    }
    pub fn delete_bytes(&self) -> u64 {
        self.delete.iter().map(|f| f.size).sum()
    }
    pub fn copy_count(&self, kind: FileKind) -> usize {
        self.copy.iter().filter(|f| f.kind == kind).count()
    }
}

/// Decides whether the destination holds a mirror of `repo`, is empty, or must be refused.
pub fn classify_destination(
    repo: &Repository,
    dest: &dyn Backend,
    listing: &Listing,
) -> Result<DestinationState> {
    let our_id = hex::encode(repo.config().repo_id);
    let short = &our_id[..8];
    let refuse = |what: String| Error::NoRepository {
        path: PathBuf::from(dest.location()),
        reason: format!("{what}; refusing to mirror repository {short} there"),
    };
    let configs: Vec<&String> = listing.kind(FileKind::Config).map(|(n, _)| n).collect();
    if let Some(name) = configs.first() {
        let bytes = dest.read(FileKind::Config, name)?;
        let theirs = crate::format::config::Config::peek_repo_id(&bytes, &format!("config/{name}"))
            .map(hex::encode)
            .unwrap_or_else(|_| "an unreadable one".into());
        if theirs != our_id || configs.len() > 1 {
            return Err(refuse(format!(
                "it holds another repository ({})",
                theirs.get(..8).unwrap_or(&theirs)
            )));
        }
        return Ok(DestinationState::Mirror);
    }
    if listing.readme {
        let readme = dest.read_readme()?.unwrap_or_default();
        return match readme_repo_id(&readme) {
            Some(id) if id == our_id => Ok(DestinationState::Mirror),
            Some(id) => Err(refuse(format!(
                "its SOPVAULT.txt names another repository ({})",
                id.get(..8).unwrap_or(&id)
            ))),
            None => Err(refuse("its SOPVAULT.txt names no repository".into())),
        };
    }
    if listing.count() == 0 && listing.stray.is_empty() {
        return Ok(DestinationState::Empty);
    }
    Err(refuse(format!(
        "it is not empty ({} files) and holds no sopvault repository",
        listing.count() + listing.stray.len()
    )))
}

/// Builds the plan without changing anything.
pub fn plan(
    repo: &Repository,
    dest: &Arc<dyn Backend>,
    opts: &MirrorOptions,
) -> Result<MirrorPlan> {
    let src = repo.backend();
    if same_place(src.as_ref(), dest.as_ref()) {
        return Err(Error::Usage(format!(
            "{} is the repository itself, not a mirror destination",
            dest.location()
        )));
    }
    let source = Listing::of_source(src.as_ref())?;
    let target = Listing::of(dest.as_ref())?;
    let state = classify_destination(repo, dest.as_ref(), &target)?;
    if state == DestinationState::Empty && !opts.init {
        let hint = if dest.local_root().is_some() {
            "it is empty (is the disk plugged in and mounted?)"
        } else {
            "it holds no objects"
        };
        return Err(Error::NoRepository {
            path: PathBuf::from(dest.location()),
            reason: format!("{hint}; run `sopvault mirror --init` to start a new mirror there"),
        });
    }
    let copy = source.missing_from(&target);
    let mut plan = MirrorPlan {
        source: src.location(),
        destination: dest.location(),
        state,
        copy_readme: !target.readme,
        copy,
        delete: Vec::new(),
        kept: Vec::new(),
        next_deletion: None,
        extra: 0,
    };
    plan_deletions(repo, dest, &source, &target, opts, &mut plan)?;
    Ok(plan)
}

fn same_place(a: &dyn Backend, b: &dyn Backend) -> bool {
    match (a.local_root(), b.local_root()) {
        (Some(x), Some(y)) => match (std::fs::canonicalize(x), std::fs::canonicalize(y)) {
            (Ok(x), Ok(y)) => x == y,
            _ => x == y,
        },
        _ => a.location() == b.location(),
    }
}

/// Files named by prune records that the mirror may delete now.
fn plan_deletions(
    repo: &Repository,
    dest: &Arc<dyn Backend>,
    source: &Listing,
    target: &Listing,
    opts: &MirrorOptions,
    plan: &mut MirrorPlan,
) -> Result<()> {
    // Candidates: condemned by an authenticated record, gone from the source, present here.
    let mut condemned: BTreeMap<(FileKind, String), i64> = BTreeMap::new();
    for (_, record) in crate::ops::prune::records(repo)? {
        let at = record.time.map(|t| t.at.sec).unwrap_or(i64::MIN);
        let names = record
            .forgotten
            .iter()
            .map(|id| (FileKind::Snapshot, id.to_hex()))
            .chain(
                record
                    .superseded_index
                    .iter()
                    .map(|id| (FileKind::Index, id.to_hex())),
            )
            .chain(
                record
                    .deleted_packs
                    .iter()
                    .map(|id| (FileKind::Pack, id.to_hex())),
            );
        for key in names {
            // A file condemned twice is due by the earlier record.
            let e = condemned.entry(key).or_insert(at);
            *e = (*e).min(at);
        }
    }
    let mut due: BTreeSet<(FileKind, String)> = BTreeSet::new();
    for ((kind, name), at) in &condemned {
        let Some(size) = target.get(*kind, name) else {
            continue;
        };
        if source.get(*kind, name).is_some() {
            // The prune that wrote the record has not finished at the source.
            plan.kept.push(Kept {
                file: FileRef {
                    kind: *kind,
                    name: name.clone(),
                    size,
                },
                reason: "still present at the source".into(),
            });
            continue;
        }
        let may_go = at.saturating_add(opts.delete_after_secs);
        if may_go > opts.now {
            plan.next_deletion = Some(plan.next_deletion.map_or(may_go, |t| t.min(may_go)));
            plan.kept.push(Kept {
                file: FileRef {
                    kind: *kind,
                    name: name.clone(),
                    size,
                },
                reason: format!("grace period: may be deleted from {}", format_time(may_go)),
            });
            continue;
        }
        due.insert((*kind, name.clone()));
    }
    // Extra files nobody condemned are left alone, and counted.
    for kind in COPY_ORDER {
        for (name, _) in target.kind(kind) {
            if source.get(kind, name).is_none() && !condemned.contains_key(&(kind, name.clone())) {
                plan.extra += 1;
            }
        }
    }
    if due.is_empty() {
        return Ok(());
    }
    // The mirror's live index: the index files it keeps (present here, or
    // about to be copied here) and the packs they list.
    let mut staying: Vec<(String, Option<IndexFile>)> = Vec::new();
    let mut kept_index = Vec::new();
    let index_names: BTreeSet<String> = target
        .kind(FileKind::Index)
        .map(|(n, _)| n.clone())
        .chain(
            plan.copy
                .iter()
                .filter(|f| f.kind == FileKind::Index)
                .map(|f| f.name.clone()),
        )
        .collect();
    let mut candidate_index = Vec::new();
    let loaded: Vec<(String, Result<Option<IndexFile>>)> = {
        use rayon::prelude::*;
        index_names
            .into_par_iter()
            .map(|name| {
                let file = load_index(repo, dest.as_ref(), source, &name);
                (name, file)
            })
            .collect()
    };
    for (name, file) in loaded {
        let file = file?;
        if due.contains(&(FileKind::Index, name.clone())) {
            candidate_index.push((name, file));
        } else {
            staying.push((name, file));
        }
    }
    let packs_of = |f: &Option<IndexFile>| -> Option<HashSet<PackId>> {
        f.as_ref().map(|f| f.packs.iter().map(|p| p.0).collect())
    };
    let mut needed: HashSet<PackId> = HashSet::new();
    for (name, f) in &staying {
        match packs_of(f) {
            Some(p) => needed.extend(p),
            None => {
                return Err(Error::damaged(
                    format!("index/{name}"),
                    "cannot be read in the mirror or at the source; \
                     refusing to delete anything until `sopvault check` passes",
                ))
            }
        }
    }
    let due_pack = |p: &PackId| due.contains(&(FileKind::Pack, p.to_hex())) && !needed.contains(p);
    // An index file goes only when every pack it lists stays listed or goes too.
    let mut delete_index = Vec::new();
    for (name, f) in &candidate_index {
        let packs = packs_of(f);
        let ok = packs.as_ref().is_some_and(|ps| {
            ps.iter().all(|p| {
                needed.contains(p)
                    || due_pack(p)
                    || target.get(FileKind::Pack, &p.to_hex()).is_none()
            })
        });
        if ok {
            delete_index.push(name.clone());
        } else {
            kept_index.push((name.clone(), packs));
        }
    }
    for (name, packs) in &kept_index {
        if let Some(ps) = packs {
            needed.extend(ps.iter().copied());
        }
        plan.kept.push(Kept {
            file: FileRef {
                kind: FileKind::Index,
                name: name.clone(),
                size: target.get(FileKind::Index, name).unwrap_or(0),
            },
            reason: "lists packs the mirror still holds and no kept index file lists".into(),
        });
    }
    let mut delete_packs: BTreeSet<String> = BTreeSet::new();
    for (kind, name) in due.iter().filter(|(k, _)| *k == FileKind::Pack) {
        let listed = PackId::from_hex(name).is_some_and(|id| needed.contains(&id));
        if listed {
            plan.kept.push(Kept {
                file: file_ref(target, *kind, name),
                reason: "still listed by an index file the mirror keeps".into(),
            });
        } else {
            delete_packs.insert(name.clone());
        }
    }
    let mut delete_index: BTreeSet<String> = delete_index.into_iter().collect();
    let all_index: Vec<(String, Option<IndexFile>)> =
        staying.into_iter().chain(candidate_index).collect();
    keep_what_grace_snapshots_need(
        repo,
        dest,
        source,
        &due,
        &all_index,
        &mut delete_index,
        &mut delete_packs,
        plan,
    )?;
    let mut deletions = Vec::new();
    for (kind, name) in due.iter().filter(|(k, _)| *k == FileKind::Snapshot) {
        deletions.push(file_ref(target, *kind, name));
    }
    for name in &delete_index {
        deletions.push(file_ref(target, FileKind::Index, name));
    }
    for name in &delete_packs {
        deletions.push(file_ref(target, FileKind::Pack, name));
    }
    plan.delete = deletions;
    Ok(())
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
#[allow(clippy::too_many_arguments)]
fn keep_what_grace_snapshots_need(
    repo: &Repository,
    dest: &Arc<dyn Backend>,
    source: &Listing,
    due: &BTreeSet<(FileKind, String)>,
    index_files: &[(String, Option<IndexFile>)],
    delete_index: &mut BTreeSet<String>,
    delete_packs: &mut BTreeSet<String>,
    plan: &mut MirrorPlan,
) -> Result<()> {
    if delete_index.is_empty() && delete_packs.is_empty() {
        return Ok(());
    }
    let mirror = repo.on_mirror(dest.clone())?;
    let roots: Vec<ChunkId> = mirror
        .snapshots()?
        .into_iter()
        .filter(|(id, _)| {
            let name = id.to_hex();
            source.get(FileKind::Snapshot, &name).is_none()
                && !due.contains(&(FileKind::Snapshot, name))
        })
        .map(|(_, s)| s.root)
        .collect();
    if roots.is_empty() {
        return Ok(());
    }
    let index = mirror.index()?;
    let live_bits = crate::ops::prune::mark(&mirror, &index, &roots).map_err(|e| {
        Error::damaged(
            dest.location(),
            format!(
                "a snapshot kept for the grace period cannot be walked ({e}); \
                 refusing to delete anything until `sopvault check` passes on the mirror"
            ),
        )
    })?;
    let live: HashSet<ChunkId> = index
        .iter_positions()
        .filter(|(pos, _)| live_bits[(*pos / 64) as usize] & (1 << (*pos % 64)) != 0)
        .map(|(_, loc)| loc.blob.id)
        .collect();
    let present: HashSet<PackId> = index.packs().iter().map(|p| p.0).collect();
    // Where each live chunk is, by index file and pack.
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
    for (chunk, places) in &holders {
        let kept = |(i, pack): &(usize, PackId)| {
            !delete_index.contains(&index_files[*i].0) && !delete_packs.contains(&pack.to_hex())
        };
        if places.iter().any(kept) {
            continue;
        }
        // The first holder stays: its index file, and every pack that file
        // lists (a kept index file that lists a missing pack fails `check`).
        let (i, pack) = places[0];
        let why = format!("holds chunk {chunk} of a snapshot kept for the grace period");
        let (name, file) = &index_files[i];
        if delete_index.remove(name) {
            plan.kept.push(Kept {
                file: FileRef {
                    kind: FileKind::Index,
                    name: name.clone(),
                    size: 0,
                },
                reason: why.clone(),
            });
        }
        let listed = file.iter().flat_map(|f| f.packs.iter().map(|p| p.0));
        for p in std::iter::once(pack).chain(listed) {
            if delete_packs.remove(&p.to_hex()) {
                plan.kept.push(Kept {
                    file: FileRef {
                        kind: FileKind::Pack,
                        name: p.to_hex(),
                        size: 0,
                    },
                    reason: why.clone(),
                });
            }
        }
    }
    Ok(())
}

fn file_ref(listing: &Listing, kind: FileKind, name: &str) -> FileRef {
    FileRef {
        kind,
        name: name.to_string(),
        size: listing.get(kind, name).unwrap_or(0),
    }
}

/// Reads and decodes an index file: from the source when it has it (the same
/// bytes, as the name is their hash, and the source is usually the nearer
/// copy), else from the mirror; `None` when neither can.
fn load_index(
    repo: &Repository,
    dest: &dyn Backend,
    source: &Listing,
    name: &str,
) -> Result<Option<IndexFile>> {
    let object = format!("index/{name}");
    let from = |b: &dyn Backend| -> Option<IndexFile> {
        let bytes = b.read(FileKind::Index, name).ok()?;
        check_name(&bytes, name, "index").ok()?;
        IndexFile::decode(repo.key(), &bytes, &object).ok()
    };
    if source.get(FileKind::Index, name).is_some() {
        if let Some(f) = from(repo.backend().as_ref()) {
            return Ok(Some(f));
        }
    }
    Ok(from(dest))
}

pub fn format_time(sec: i64) -> String {
    chrono::DateTime::from_timestamp(sec, 0)
        .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_else(|| sec.to_string())
}

/// What a run did.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct MirrorOutcome {
    pub copied_files: u64,
    pub copied_bytes: u64,
    pub deleted_files: u64,
    pub deleted_bytes: u64,
    /// Source files whose bytes do not hash to their name: not copied.
    pub damaged_at_source: Vec<String>,
}

/// Starts a mirror in an empty destination: the layout (a directory's, as
/// `init` makes it) and the source's `SOPVAULT.txt`, byte for byte.
pub fn init_destination(repo: &Repository, dest: &dyn Backend) -> Result<()> {
    let text = source_readme(repo)?;
    match dest.local_root() {
        // Layout first, SOPVAULT.txt last: an interrupted --init leaves
        // only empty directories, which still count as empty.
        Some(root) => write_local_layout(root, &text),
        None => dest.create(&text),
    }
}

fn source_readme(repo: &Repository) -> Result<String> {
    let src = repo.backend();
    let object = || format!("{}/{README_NAME}", src.location());
    let readme = src
        .read_readme()?
        .ok_or_else(|| Error::damaged(object(), "missing"))?;
    String::from_utf8(readme).map_err(|_| Error::damaged(object(), "not plain text"))
}

/// Carries out a plan made under the destination's exclusive lock: copies,
/// then (only if every copy succeeded) deletes.
pub fn execute(
    repo: &Repository,
    dest: &dyn Backend,
    plan: &MirrorPlan,
    opts: &MirrorOptions,
    progress: &dyn Progress,
) -> Result<MirrorOutcome> {
    if plan.copy_readme {
        match dest.local_root() {
            Some(root) => write_local_layout(root, &source_readme(repo)?)?,
            None => return Err(Error::damaged(
                format!("{}/{README_NAME}", dest.location()),
                "missing in a mirror that holds repository files; copy it from the source by hand",
            )),
        }
    }
    execute_files(repo, dest, plan, opts, progress)
}

/// Creates a repository directory's layout (as `init` does) and writes `SOPVAULT.txt`.
fn write_local_layout(root: &Path, text: &str) -> Result<()> {
    if !root.exists() {
        // Only the last component: a missing parent is likely an unmounted disk.
        std::fs::create_dir(root).map_err(|e| Error::io(root, e))?;
    }
    let dirs = FileKind::ALL
        .iter()
        .map(|k| k.dir().to_string())
        .chain(["locks".into(), "tmp".into()])
        .chain((0..256).map(|i| format!("packs/{i:02x}")));
    for d in dirs {
        let p = root.join(d);
        std::fs::create_dir_all(&p).map_err(|e| Error::io(&p, e))?;
    }
    let tmp = root.join("tmp").join("SOPVAULT.txt.new");
    let _ = std::fs::remove_file(&tmp);
    std::fs::write(&tmp, text).map_err(|e| Error::io(&tmp, e))?;
    std::fs::File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(|e| Error::io(&tmp, e))?;
    let dst = root.join(README_NAME);
    std::fs::rename(&tmp, &dst).map_err(|e| Error::io(&dst, e))
}

fn execute_files(
    repo: &Repository,
    dest: &dyn Backend,
    plan: &MirrorPlan,
    opts: &MirrorOptions,
    progress: &dyn Progress,
) -> Result<MirrorOutcome> {
    let src = repo.backend();
    let copied_files = AtomicU64::new(0);
    let copied_bytes = AtomicU64::new(0);
    let damaged = Mutex::new(Vec::new());
    let first_error: Mutex<Option<Error>> = Mutex::new(None);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(opts.parallel.max(1))
        .build()
        .map_err(|e| Error::Other(format!("cannot start copy threads: {e}")))?;
    progress.set_total(plan.copy_bytes(), plan.copy.len() as u64);
    // One kind after another: a file is only written once everything it refers to is there.
    for kind in COPY_ORDER {
        let files: Vec<&FileRef> = plan.copy.iter().filter(|f| f.kind == kind).collect();
        if files.is_empty() {
            continue;
        }
        pool.install(|| {
            use rayon::prelude::*;
            files.par_iter().for_each(|f| {
                if first_error.lock().unwrap().is_some() {
                    return;
                }
                let r = (|| -> Result<()> {
                    crate::interrupt::check()?;
                    let bytes = src.read(f.kind, &f.name)?;
                    // Never carry damage forward: the bytes must hash to the name.
                    if let Err(e) = check_name(&bytes, &f.name, f.kind.dir()) {
                        damaged.lock().unwrap().push(e.to_string());
                        return Ok(());
                    }
                    dest.write_new(f.kind, &f.name, &bytes)?;
                    let n = copied_files.fetch_add(1, Ordering::SeqCst) + 1;
                    copied_bytes.fetch_add(bytes.len() as u64, Ordering::Relaxed);
                    progress.bytes(f.size);
                    progress.current(&f.rel_path());
                    progress.file_done();
                    crate::faults::point(&format!("mirror:copied-{n}"));
                    Ok(())
                })();
                if let Err(e) = r {
                    first_error.lock().unwrap().get_or_insert(e);
                }
            });
        });
        if let Some(e) = first_error.lock().unwrap().take() {
            return Err(e);
        }
        crate::faults::point(&format!("mirror:after-{}", kind.dir()));
    }
    let mut outcome = MirrorOutcome {
        copied_files: copied_files.into_inner(),
        copied_bytes: copied_bytes.into_inner(),
        damaged_at_source: damaged.into_inner().unwrap(),
        ..Default::default()
    };
    if !outcome.damaged_at_source.is_empty() {
        // Nothing is deleted from a mirror while the source is damaged.
        return Ok(outcome);
    }
    for kind in [FileKind::Snapshot, FileKind::Index, FileKind::Pack] {
        let names: Vec<String> = plan
            .delete
            .iter()
            .filter(|f| f.kind == kind)
            .map(|f| f.name.clone())
            .collect();
        if names.is_empty() {
            continue;
        }
        crate::interrupt::check()?;
        dest.remove_many(kind, &names)?;
        crate::faults::point(&format!("mirror:deleted-{}", kind.dir()));
        outcome.deleted_files += names.len() as u64;
    }
    outcome.deleted_bytes = plan.delete_bytes();
    Ok(outcome)
}

// ---- verification without the key ----

/// How much of the content to hash.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Sample {
    All,
    /// This share of files, chosen by name and day: over `ceil(1 / share)`
    /// consecutive days every file is hashed once.
    Share {
        share: f64,
        day: i64,
    },
}

/// What `mirror --verify` found.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct VerifyReport {
    pub files: u64,
    pub bytes: u64,
    pub files_hashed: u64,
    pub bytes_hashed: u64,
    /// Files checked through the SHA-256 the object store recorded at upload, without reading them.
    pub files_by_stored_checksum: u64,
    /// At the source, not in the mirror.
    pub missing: Vec<String>,
    /// In the mirror, not at the source (normal for files pruned within the grace period).
    pub extra: Vec<String>,
    /// Wrong size or wrong content; each with what was expected and found.
    pub damaged: Vec<String>,
    /// Files that are not repository files (ignored by sopvault).
    pub stray: Vec<String>,
    /// Whether the names were compared with a source repository.
    pub compared_with_source: bool,
}

impl VerifyReport {
    pub fn ok(&self) -> bool {
        self.damaged.is_empty()
    }
}

fn sampled(name: &str, sample: Sample) -> bool {
    match sample {
        Sample::All => true,
        Sample::Share { share, day } => {
            let period = (1.0 / share).ceil().max(1.0) as u64;
            let n = u64::from_str_radix(name.get(..12).unwrap_or("0"), 16).unwrap_or(0);
            n % period == (day.rem_euclid(period as i64)) as u64
        }
    }
}

/// Checks a mirror without the key: names and sizes (against `source`, when
/// given), then the SHA-256 of the sampled files against their names.
pub fn verify(
    dest: &dyn Backend,
    source: Option<&dyn Backend>,
    sample: Sample,
    parallel: usize,
    read_all: bool,
) -> Result<VerifyReport> {
    let target = Listing::of(dest)?;
    let mut report = VerifyReport {
        files: target.count() as u64,
        bytes: target.files.values().flat_map(|m| m.values()).sum(),
        stray: target.stray.clone(),
        ..Default::default()
    };
    if !target.readme && target.count() == 0 {
        return Err(Error::NoRepository {
            path: PathBuf::from(dest.location()),
            reason: "it holds no repository files and no SOPVAULT.txt".into(),
        });
    }
    if let Some(src) = source {
        let source = Listing::of_source(src)?;
        report.compared_with_source = true;
        for kind in COPY_ORDER {
            for (name, size) in source.kind(kind) {
                match target.get(kind, name) {
                    None => report.missing.push(rel_path(kind, name)),
                    Some(s) if s != *size => report.damaged.push(format!(
                        "{}: size: expected {size} bytes (as at the source), found {s}",
                        rel_path(kind, name)
                    )),
                    _ => {}
                }
            }
            for (name, _) in target.kind(kind) {
                if source.get(kind, name).is_none() {
                    report.extra.push(rel_path(kind, name));
                }
            }
        }
    }
    let todo: Vec<(FileKind, String)> = COPY_ORDER
        .iter()
        .flat_map(|k| target.kind(*k).map(|(n, _)| (*k, n.clone())))
        .filter(|(_, n)| sampled(n, sample))
        .collect();
    let damaged = Mutex::new(Vec::new());
    let hashed = AtomicU64::new(0);
    let hashed_bytes = AtomicU64::new(0);
    let by_checksum = AtomicU64::new(0);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(parallel.max(1))
        .build()
        .map_err(|e| Error::Other(format!("cannot start verify threads: {e}")))?;
    let result: Result<()> = pool.install(|| {
        use rayon::prelude::*;
        todo.par_iter().try_for_each(|(kind, name)| {
            crate::interrupt::check()?;
            let stored = if read_all {
                None
            } else {
                match dest.stored_sha256(*kind, name) {
                    Ok(s) => s,
                    Err(e @ Error::Damaged { .. }) => {
                        damaged.lock().unwrap().push(e.to_string());
                        return Ok(());
                    }
                    Err(e) => return Err(e),
                }
            };
            if let Some(found) = stored {
                by_checksum.fetch_add(1, Ordering::Relaxed);
                if &found != name {
                    damaged.lock().unwrap().push(format!(
                        "{}: content: name says {name}, the stored SHA-256 checksum is {found}",
                        rel_path(*kind, name)
                    ));
                }
                return Ok(());
            }
            match dest.read(*kind, name) {
                Ok(bytes) => {
                    hashed.fetch_add(1, Ordering::Relaxed);
                    hashed_bytes.fetch_add(bytes.len() as u64, Ordering::Relaxed);
                    let found = hex::encode(sha256(&bytes));
                    if &found != name {
                        damaged.lock().unwrap().push(format!(
                            "{}: content: name says {name}, bytes hash to {found}",
                            rel_path(*kind, name)
                        ));
                    }
                    Ok(())
                }
                Err(e @ Error::Damaged { .. }) => {
                    damaged.lock().unwrap().push(e.to_string());
                    Ok(())
                }
                Err(e) => Err(e),
            }
        })
    });
    result?;
    report.files_hashed = hashed.into_inner();
    report.bytes_hashed = hashed_bytes.into_inner();
    report.files_by_stored_checksum = by_checksum.into_inner();
    report.damaged.extend(damaged.into_inner().unwrap());
    report.damaged.sort();
    Ok(report)
}

// ---- where a destination lives ----

/// Whether a directory is the root of a mounted file system, and which one holds it.
#[derive(Clone, Debug)]
pub struct MountInfo {
    pub is_mount_root: bool,
    /// The root of the file system the directory is on.
    pub mount_root: PathBuf,
}

/// Compares device numbers up the path: a mount root has another device than its parent.
pub fn mount_info(dir: &Path) -> Result<MountInfo> {
    use std::os::unix::fs::MetadataExt;
    let dir = std::fs::canonicalize(dir).map_err(|e| Error::io(dir, e))?;
    let dev = |p: &Path| {
        std::fs::metadata(p)
            .map(|m| m.dev())
            .map_err(|e| Error::io(p, e))
    };
    let own = dev(&dir)?;
    let mut root = dir.clone();
    while let Some(parent) = root.parent() {
        if dev(parent)? != own {
            break;
        }
        root = parent.to_path_buf();
    }
    Ok(MountInfo {
        is_mount_root: root == dir,
        mount_root: root,
    })
}

// ---- remembered destinations ----

pub mod state {
    //! The destinations a repository was mirrored to, for `mirror --status`:
    //! one JSON file per repository, `STATE_DIR/mirrors/REPO_ID.json`
    //! (format-spec.md §16). Local bookkeeping only; losing it loses no data.

    use crate::error::{Error, Result};
    use serde::{Deserialize, Serialize};
    use std::path::{Path, PathBuf};

    #[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
    pub struct Destination {
        /// The directory (absolute) or `s3://` URL.
        pub location: String,
        /// Last successful run, seconds since the epoch (UTC).
        pub last_sync: i64,
        pub copied_files: u64,
        pub copied_bytes: u64,
        pub deleted_files: u64,
    }

    #[derive(Clone, Debug, Default, Serialize, Deserialize)]
    pub struct MirrorState {
        pub version: u32,
        pub repository: String,
        pub destinations: Vec<Destination>,
    }

    pub fn path(state_dir: &Path, repo_id: &str) -> PathBuf {
        state_dir.join("mirrors").join(format!("{repo_id}.json"))
    }

    pub fn load(state_dir: &Path, repo_id: &str) -> Result<MirrorState> {
        let p = path(state_dir, repo_id);
        match std::fs::read(&p) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| {
                Error::Other(format!(
                    "{}: not a mirror state file ({e}); remove it to start afresh",
                    p.display()
                ))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(MirrorState {
                version: 1,
                repository: repo_id.to_string(),
                destinations: Vec::new(),
            }),
            Err(e) => Err(Error::io(&p, e)),
        }
    }

    /// Records a successful run (replacing the destination's previous entry).
    pub fn record(state_dir: &Path, repo_id: &str, entry: Destination) -> Result<()> {
        let mut s = load(state_dir, repo_id)?;
        s.version = 1;
        s.repository = repo_id.to_string();
        s.destinations.retain(|d| d.location != entry.location);
        s.destinations.push(entry);
        s.destinations.sort_by(|a, b| a.location.cmp(&b.location));
        let p = path(state_dir, repo_id);
        let dir = p.parent().expect("state path has a parent");
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let tmp = p.with_extension(format!("json.{}.tmp", std::process::id()));
        let bytes = serde_json::to_vec_pretty(&s).expect("state encodes");
        std::fs::write(&tmp, bytes).map_err(|e| Error::io(&tmp, e))?;
        std::fs::rename(&tmp, &p).map_err(|e| Error::io(&p, e))
    }
}

/// How far a destination is behind its source, by names and sizes (no key).
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Behind {
    pub files: u64,
    pub bytes: u64,
    /// Files in the mirror the source no longer has (pruned, waiting for deletion).
    pub extra_files: u64,
    pub extra_bytes: u64,
}

pub fn behind(source: &dyn Backend, dest: &dyn Backend) -> Result<Behind> {
    let s = Listing::of_source(source)?;
    let d = Listing::of(dest)?;
    let missing = s.missing_from(&d);
    let extra = d.missing_from(&s);
    Ok(Behind {
        files: missing.len() as u64,
        bytes: missing.iter().map(|f| f.size).sum(),
        extra_files: extra.len() as u64,
        extra_bytes: extra.iter().map(|f| f.size).sum(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_paths() {
        let h = "ab".to_string() + &"0".repeat(62);
        assert_eq!(
            classify_path(&format!("packs/ab/{h}")),
            PathClass::File(FileKind::Pack, h.clone())
        );
        assert_eq!(classify_path(&format!("packs/cd/{h}")), PathClass::Stray);
        assert_eq!(
            classify_path(&format!("index/{h}")),
            PathClass::File(FileKind::Index, h.clone())
        );
        assert_eq!(classify_path("SOPVAULT.txt"), PathClass::Readme);
        assert_eq!(classify_path("locks/x.lock"), PathClass::Ephemeral);
        assert_eq!(classify_path("tmp/x.tmp"), PathClass::Ephemeral);
        assert_eq!(classify_path("index/notahash"), PathClass::Stray);
    }

    #[test]
    fn a_daily_sample_covers_every_name_once_per_period() {
        let names: Vec<String> = (0..200u32)
            .map(|i| hex::encode(sha256(&i.to_le_bytes())))
            .collect();
        let share = 0.05;
        let mut seen = vec![0; names.len()];
        for day in 100..120 {
            for (i, n) in names.iter().enumerate() {
                if sampled(n, Sample::Share { share, day }) {
                    seen[i] += 1;
                }
            }
        }
        assert!(seen.iter().all(|&c| c == 1), "{seen:?}");
    }

    #[test]
    fn reads_the_repository_id_of_a_readme() {
        let r =
            b"This directory is a sopvault repository.\nFormat version: 1\nRepository id: abc\n";
        assert_eq!(readme_repo_id(r).as_deref(), Some("abc"));
        assert_eq!(readme_repo_id(b"hello"), None);
    }
}
