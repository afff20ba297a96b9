//! `snapshot`: walk paths and read dump streams into one snapshot.
//!
//! ```text
//! streams (in the order given) ──────┐
//! paths → walk.rs: listings, lstat, ─┼→ chunk → id → BlobStore (dedup, seal, pack, index)
//!   xattrs (read ahead, during KDF)  │      refs → ContentBuilder → File node
//!          parent tree lookup ───────┘
//! nodes → Tree per directory → BlobStore → root tree → manifest (written last)
//! ```
//! Each stream becomes a file named after it at the snapshot's root; each path
//! keeps its absolute path below the root. Files whose size, mtime, ctime and
//! inode match the parent snapshot (the latest of the same source) reuse its
//! chunk list without being read. An unreadable path is reported and skipped,
//! and the snapshot is marked incomplete; a failing stream fails the run
//! before any manifest is written.
//!
//! # Layout
//! - [`options`](SnapshotOptions): what to back up, and the checks that need
//!   no repository.
//! - `paths`: the tree of the given paths, the repository never backed up,
//!   [`prescan`].
//! - `archiver`: the walk, file contents reused or chunked into the store.
//! - `streams`: dump commands and standard input.
//! - here: [`run`] in its steps — check, plan the paths, find the parent,
//!   load the index, archive, finish the store, write the manifest.

mod archiver;
mod options;
mod paths;
mod streams;

pub use options::{validate_name, SnapshotOptions, StreamInput, StreamSpec};
pub use paths::{absolute, prescan};

use crate::blob::BlobKind;
use crate::error::{Error, Result};
use crate::format::manifest::{Snapshot, SnapshotTime, StreamRecord};
use crate::format::tree::{Node, NodeKind, Tree};
use crate::ids::{ChunkId, SnapshotId};
use crate::ops::progress::Progress;
use crate::repo::Repository;
use crate::sys::walk::{Excludes, Prescan};
use crate::write::parent::ParentTrees;
use crate::write::store::StoreStats;
use archiver::Archiver;
use paths::{listed_roots, plan_paths, repo_in_walk, PathPlan, VNode};
use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// What a run wrote: the manifest's id and content, and the store's figures.
pub struct SnapshotOutcome {
    pub id: SnapshotId,
    pub snapshot: Snapshot,
    pub store: StoreStats,
}

/// The human name for a new snapshot: `SOURCE_YYYY-MM-DD`, then `-2`, `-3`... that day.
/// Names made unique for listing (`NAME~ID`, see [`crate::repo::unique_names`])
/// count as the name recorded.
pub fn human_name(
    existing: &[(SnapshotId, Snapshot)],
    source: &str,
    time: &SnapshotTime,
) -> String {
    let base = format!("{source}_{}", time.date());
    let highest = existing
        .iter()
        .filter(|(_, s)| s.source == source)
        .filter_map(|(_, s)| {
            let name = crate::repo::recorded_name(&s.name);
            if name == base {
                Some(1)
            } else {
                name.strip_prefix(&format!("{base}-"))?.parse::<u32>().ok()
            }
        })
        .max();
    match highest {
        None => base,
        Some(n) => format!("{base}-{}", n + 1),
    }
}

/// Takes a snapshot. The manifest is written only if every stream succeeded.
pub fn run(
    repo: &Repository,
    opts: &SnapshotOptions,
    progress: &dyn Progress,
    prescan: Option<Prescan>,
) -> Result<SnapshotOutcome> {
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        if !opts.paths.is_empty() && progress.shown() {
            let paths: Vec<PathBuf> = opts.paths.iter().filter_map(|p| absolute(p).ok()).collect();
            let stop = &stop;
            scope.spawn(move || scan(&paths, opts.one_file_system, progress, stop));
        }
        let r = run_inner(repo, opts, progress, prescan);
        stop.store(true, Ordering::Relaxed);
        r
    })
}

fn run_inner(
    repo: &Repository,
    opts: &SnapshotOptions,
    progress: &dyn Progress,
    prescan: Option<Prescan>,
) -> Result<SnapshotOutcome> {
    let started = Instant::now();
    opts.validate()?;
    let PathPlan {
        root,
        abs_paths,
        given,
        repo_root,
    } = plan_paths(opts, repo.root())?;
    let time = opts.time.unwrap_or_else(crate::sys::sysinfo::now);
    let snaps = repo.snapshots()?;
    let parent = latest_of_source(&snaps, &opts.source);
    let index = repo.index_adopting_orphans()?;
    let excludes = Excludes::new(&opts.excludes, repo_in_walk(&given, repo_root))?;
    let roots = listed_roots(&root);
    let prescan = prescan.filter(|p| p.matches(&roots, opts.one_file_system, &excludes));
    let parent_root = match &parent {
        Some((_, p)) if !opts.force => repo.load_tree(&index, &p.root, "/").ok(),
        _ => None,
    };
    std::thread::scope(|scope| {
        let parents = parent_root.as_ref().map(|root_tree| {
            let (excludes, roots) = (excludes.clone(), roots.clone());
            // The directories the archiver enters: those on the way to a
            // backed-up path, and those under one that are not excluded.
            let wanted = move |path: &Path, name: &[u8]| {
                roots.iter().any(|r| {
                    r.starts_with(path) || (path.starts_with(r) && !excludes.excluded(path, name))
                })
            };
            ParentTrees::start(scope, repo, &index, root_tree, wanted)
        });
        let archiver = Archiver::new(repo, opts, &index, progress, (excludes, prescan, parents));
        let parent = ParentSnapshot {
            snapshot: parent.as_ref(),
            root: parent_root.as_ref(),
        };
        let (root_id, archiver) = archive(archiver, opts, &parent, root)?;
        let draft = Draft {
            started,
            time,
            snaps: &snaps,
            parent: parent.snapshot,
            root: root_id,
            abs_paths,
        };
        finish(repo, opts, archiver, draft)
    })
}

/// The parent snapshot: the latest of the same source.
fn latest_of_source(
    snaps: &[(SnapshotId, Snapshot)],
    source: &str,
) -> Option<(SnapshotId, Snapshot)> {
    snaps
        .iter()
        .filter(|(_, s)| s.source == source)
        .max_by_key(|(_, s)| s.time.at)
        .cloned()
}

/// The parent snapshot and its root tree (none with `--force`).
struct ParentSnapshot<'x> {
    snapshot: Option<&'x (SnapshotId, Snapshot)>,
    root: Option<&'x Tree>,
}

/// Reads the streams and walks the paths into the store; returns the root
/// tree's id, and the archiver with the records of the streams it read.
fn archive<'a, 'r>(
    mut a: Archiver<'a, 'r>,
    opts: &SnapshotOptions,
    parent: &ParentSnapshot<'_>,
    root: BTreeMap<Vec<u8>, VNode>,
) -> Result<(ChunkId, (Archiver<'a, 'r>, Vec<StreamRecord>))> {
    let mut records = Vec::new();
    let mut stream_nodes = Vec::new();
    for s in &opts.streams {
        let (node, rec) = archive_stream(&mut a, opts, parent, s)?;
        stream_nodes.push(node);
        records.push(rec);
    }
    let mut root_tree = a.virtual_dir(Path::new("/"), root, parent.root)?;
    for n in stream_nodes {
        root_tree.insert(n);
    }
    let (root_id, _) = a.store.add(BlobKind::Tree, &root_tree.encode())?;
    crate::interrupt::check()?;
    Ok((root_id, (a, records)))
}

/// Reads one stream; fails it when empty (unless allowed), and marks it
/// when it shrank below the warning share of its size in the parent.
fn archive_stream(
    a: &mut Archiver<'_, '_>,
    opts: &SnapshotOptions,
    parent: &ParentSnapshot<'_>,
    s: &StreamSpec,
) -> Result<(Node, StreamRecord)> {
    let prev = parent
        .root
        .and_then(|t| t.find(s.name.as_bytes()))
        .and_then(|n| match &n.kind {
            NodeKind::File { content, .. } => Some(content.clone()),
            _ => None,
        });
    let (node, mut rec) = a.stream(s, prev.as_ref())?;
    if rec.bytes == 0 && !opts.allow_empty {
        let what = match s.input {
            StreamInput::Stdin => "standard input was empty or closed",
            StreamInput::Command(_) => "the command wrote nothing",
        };
        return Err(Error::EmptyStream {
            name: s.name.clone(),
            what,
        });
    }
    let before = parent
        .snapshot
        .and_then(|(_, p)| p.streams.iter().find(|r| r.name == s.name))
        .map(|r| r.bytes);
    if let Some(before) = before {
        if (rec.bytes as f64) < opts.shrink_warn * before as f64 {
            rec.shrunk_from = Some(before);
        }
    }
    Ok((node, rec))
}

/// What the manifest records besides the archiver's summary.
struct Draft<'x> {
    started: Instant,
    time: SnapshotTime,
    snaps: &'x [(SnapshotId, Snapshot)],
    parent: Option<&'x (SnapshotId, Snapshot)>,
    root: ChunkId,
    abs_paths: Vec<Vec<u8>>,
}

/// Finishes the store (last packs, last index file), then writes the
/// manifest: last, so that everything it names is stored before it.
fn finish(
    repo: &Repository,
    opts: &SnapshotOptions,
    (archiver, records): (Archiver<'_, '_>, Vec<StreamRecord>),
    draft: Draft<'_>,
) -> Result<SnapshotOutcome> {
    let indexed = archiver.index.len();
    let Archiver {
        store,
        mut summary,
        parents,
        ..
    } = archiver;
    // The walk is over: stop reading ahead while the store finishes.
    drop(parents);
    let stats = store.finish()?;
    summary.bytes_new = stats.bytes_new;
    summary.bytes_stored = stats.bytes_stored;
    summary.chunks_new = stats.blobs_new;
    summary.duration_ms = draft.started.elapsed().as_millis() as u64;
    let complete = summary.errors.is_empty();
    let snapshot = Snapshot {
        time: draft.time,
        name: human_name(draft.snaps, &opts.source, &draft.time),
        source: opts.source.clone(),
        host: crate::sys::sysinfo::hostname(),
        user: crate::sys::sysinfo::username(),
        tags: opts.tags.clone(),
        paths: draft.abs_paths,
        streams: records,
        root: draft.root,
        parent: draft.parent.map(|(id, _)| *id),
        chunker: repo.config().chunker,
        program: format!("sopvault {}", env!("CARGO_PKG_VERSION")),
        summary,
        complete,
    };
    let id = repo.write_snapshot(&snapshot)?;
    // Once the snapshot is safe, keep room for the prune that will free space.
    repo.keep_reserve(indexed + stats.blobs_new);
    Ok(SnapshotOutcome {
        id,
        snapshot,
        store: stats,
    })
}

/// Counts bytes and files so the progress bar can show an ETA; stops early when asked.
fn scan(paths: &[PathBuf], one_fs: bool, progress: &dyn Progress, stop: &AtomicBool) {
    let (mut bytes, mut files) = (0u64, 0u64);
    let mut stack: Vec<(PathBuf, Option<u64>)> = paths.iter().map(|p| (p.clone(), None)).collect();
    while let Some((p, dev)) = stack.pop() {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let Ok(md) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        let dev = dev.unwrap_or(md.dev());
        if md.is_file() {
            bytes += md.len();
            files += 1;
        } else if md.is_dir() && (!one_fs || md.dev() == dev) {
            if let Ok(rd) = std::fs::read_dir(&p) {
                stack.extend(rd.filter_map(|e| e.ok().map(|e| (e.path(), Some(dev)))));
            }
        }
    }
    progress.set_total(bytes, files);
}
