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
//! all, and a file appears only after everything it refers to. A mirror never
//! deletes a file because it is missing at the source.
//!
//! [`verify()`] needs no key: names and sizes against the source, then SHA-256 of
//! each file (or a daily share of them) against its name. [`state`] remembers
//! the destinations a repository was mirrored to, for `mirror --status`.
//!
//! # Layout
//! - [`listing`]: what a path in a repository's place is, and listings by kind;
//! - [`plan`](mod@plan): the destination's state and the copy set;
//!   `deletions`: what prune records let the mirror delete now;
//! - [`execute`](mod@execute): copy, then delete;
//! - [`verify`](mod@verify): check without the key; how far a mirror is behind;
//! - [`state`]: remembered destinations.
//!
//! Layer: orchestration (`ops`). Reads the source through the repository's
//! operations ([`crate::repo::mirror`]), and the destination, a
//! [`Backend`](crate::backend::Backend) of its own, directly or as a
//! repository through [`Repository::on_mirror`](crate::repo::Repository::on_mirror).

mod deletions;
pub mod execute;
pub mod listing;
pub mod plan;
pub mod state;
pub mod verify;

pub use execute::{execute, init_destination, MirrorOutcome};
pub use listing::{classify_path, rel_path, FileRef, Listing, PathClass};
pub use plan::{
    classify_destination, plan, readme_repo_id, DestinationState, Kept, MirrorOptions, MirrorPlan,
};
pub use verify::{behind, verify, Behind, Sample, VerifyReport};

use crate::backend::FileKind;
use crate::error::{Error, Result};
use std::path::{Path, PathBuf};

/// The order in which files are copied: what a file refers to is always there
/// before it, which is the order of [`FileKind::ALL`].
pub const COPY_ORDER: [FileKind; 6] = FileKind::ALL;

/// The grace period when `--delete-after` is not given: 30 days.
pub const DEFAULT_DELETE_AFTER_SECS: i64 = 30 * 86400;

pub fn format_time(sec: i64) -> String {
    chrono::DateTime::from_timestamp(sec, 0)
        .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_else(|| sec.to_string())
}

/// A pool of `n` threads (at least one) for copying or hashing files.
fn thread_pool(n: usize, what: &str) -> Result<rayon::ThreadPool> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(n.max(1))
        .build()
        .map_err(|e| Error::Threads {
            what: format!("{what} threads"),
            reason: e.to_string(),
        })
}

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
