//! Unit tests of the engine on the in-memory backend: no binary is spawned
//! and no repository touches the disk (only the sources a snapshot reads,
//! the trees a restore writes and the index cache live in a temporary
//! directory). This is the top layer: it may use every module, through the
//! public entry points the command line uses.
//!
//! [`Scratch`] is the one scratch-repository builder: a repository on a
//! [`MemoryBackend`] with the cheapest key derivation and 1 MiB packs, and
//! helpers to write a source tree, take a snapshot, restore it and compare.

mod faults;
mod mirror;
mod pack;
mod prune;
mod snapshot;
mod store;

use crate::backend::{Backend, MemoryBackend};
use crate::crypto::Password;
use crate::format::keyfile::KdfParams;
use crate::format::manifest::SnapshotTime;
use crate::ids::SnapshotId;
use crate::ops::snapshot::{SnapshotOptions, SnapshotOutcome, StreamInput, StreamSpec};
use crate::repo::{InitOptions, OpenOptions, Repository};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

const PASSWORD: &[u8] = b"scratch";

/// A repository in memory, and a temporary directory for everything else.
pub(crate) struct Scratch {
    pub memory: MemoryBackend,
    pub repo: Repository,
    pub dir: tempfile::TempDir,
    /// For fresh names below `dir`.
    made: AtomicU64,
}

impl Scratch {
    pub fn new() -> Scratch {
        let memory = MemoryBackend::new();
        let dir = tempfile::tempdir().unwrap();
        // Made now, not when first used: sources live beside it, and their
        // parent directory's mtime (recorded in every snapshot) must not
        // change between two snapshots of an unchanged tree.
        std::fs::create_dir_all(dir.path().join("cache")).unwrap();
        let opts = InitOptions {
            kdf: KdfParams::CHEAPEST,
            pack_size: 1 << 20,
            ..InitOptions::default()
        };
        let backend: Arc<dyn Backend> = Arc::new(memory.clone());
        let repo =
            Repository::init_backend(backend, &password(), &opts, &open_options(&dir)).unwrap();
        Scratch {
            memory,
            repo,
            dir,
            made: AtomicU64::new(0),
        }
    }

    /// The same repository opened again through `backend` (the memory
    /// backend itself, or a wrapper of it).
    pub fn open(&self, backend: Arc<dyn Backend>) -> crate::Result<Repository> {
        Repository::open_backend(backend, &password(), &open_options(&self.dir))
    }

    /// A new, empty directory below the scratch directory.
    pub fn fresh_dir(&self, what: &str) -> PathBuf {
        let n = self.made.fetch_add(1, Ordering::Relaxed);
        let p = self.dir.path().join(format!("{what}-{n}"));
        std::fs::create_dir_all(&p).unwrap();
        p
    }

    /// A source tree holding `files` (relative paths, contents).
    pub fn source(&self, files: &[(&str, Vec<u8>)]) -> PathBuf {
        let root = self.fresh_dir("src");
        for (rel, bytes) in files {
            let p = root.join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, bytes).unwrap();
        }
        root
    }

    /// A source tree of files `f{n}` for each `n` in `pool`, file `n` holding
    /// `base + n * step` bytes of noise seeded by `n`: drawn from a small pool,
    /// so that snapshots share chunks.
    pub fn pool_source(&self, pool: &[u8], base: usize, step: usize) -> PathBuf {
        let files: Vec<(String, Vec<u8>)> = pool
            .iter()
            .map(|&n| {
                let len = base + usize::from(n) * step;
                (format!("f{n}"), crate::testutil::noise(len, u64::from(n)))
            })
            .collect();
        let refs: Vec<(&str, Vec<u8>)> = files
            .iter()
            .map(|(name, bytes)| (name.as_str(), bytes.clone()))
            .collect();
        self.source(&refs)
    }

    /// A snapshot of `paths` from source `source`, taken at `time` (now if `None`).
    pub fn snapshot_of(
        &self,
        repo: &Repository,
        source: &str,
        paths: &[&Path],
        time: Option<SnapshotTime>,
    ) -> crate::Result<SnapshotOutcome> {
        let opts = SnapshotOptions {
            source: source.into(),
            paths: paths.iter().map(|p| p.to_path_buf()).collect(),
            time,
            ..Default::default()
        };
        crate::ops::snapshot::run(repo, &opts, &crate::ops::progress::NoProgress, None)
    }

    /// Restores snapshot `id` of `repo` into a fresh directory.
    pub fn restore(&self, repo: &Repository, id: &SnapshotId) -> PathBuf {
        let target = self.fresh_dir("restore");
        let snap = repo.load_snapshot(id).unwrap();
        let index = repo.index().unwrap();
        let opts = crate::ops::restore::RestoreOptions {
            target: target.clone(),
            ..Default::default()
        };
        let report = crate::ops::restore::restore(repo, &index, &snap.root, &opts).unwrap();
        assert!(report.errors.is_empty(), "{:?}", report.errors);
        target
    }
}

/// A stream whose bytes a shell command prints.
pub(crate) fn stream(name: &str, command: &str) -> StreamSpec {
    StreamSpec {
        name: name.into(),
        input: StreamInput::Command(command.into()),
    }
}

/// Midnight UTC of day `day` after 2026-01-01, as a snapshot time.
pub(crate) fn day(day: u32) -> SnapshotTime {
    let start = chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z").unwrap();
    SnapshotTime::from_datetime(start + chrono::Duration::days(i64::from(day)))
}

/// The restored copy of `src` below `target` (a path keeps its absolute path).
pub(crate) fn restored_copy(target: &Path, src: &Path) -> PathBuf {
    target.join(src.strip_prefix("/").unwrap())
}

/// Every file below `root` by its relative path, with its bytes.
pub(crate) fn files_below(root: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
            } else {
                let bytes = std::fs::read(&p).unwrap();
                out.push((p.strip_prefix(root).unwrap().to_path_buf(), bytes));
            }
        }
    }
    out.sort();
    out
}

/// Fails unless `check` (reading every pack) finds nothing wrong.
pub(crate) fn assert_checks(repo: &Repository) {
    let report = crate::ops::check::check(repo, crate::ops::check::ReadData::All).unwrap();
    assert!(report.ok(), "{:#?}", report.problems);
}

fn password() -> Password {
    Password::new(PASSWORD.to_vec())
}

fn open_options(dir: &tempfile::TempDir) -> OpenOptions {
    OpenOptions {
        cache_dir: Some(dir.path().join("cache")),
        base_cache_bytes: None,
    }
}
