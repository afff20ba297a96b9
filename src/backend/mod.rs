//! Where repository bytes live. No crypto and no format knowledge here.
//!
//! The contract every backend keeps:
//! - `write_new` makes a file appear whole or not at all, and never replaces an
//!   existing file (content-addressed names make a second write of the same
//!   name a no-op);
//! - reading a missing file is [`Error::Damaged`](crate::Error::Damaged)
//!   naming the object;
//! - `list` shows only valid names ([`names::is_valid_name`]) at their
//!   right place ([`names::rel_path`]): never a temporary file, a lock or a
//!   stray file someone put there, which it skips and counts
//!   ([`Backend::skipped_names`]). A listed name always parses as an id.
//!
//! [`open`] turns a `--repo` argument into a backend: a directory, or
//! `s3://BUCKET/PREFIX` for [`crate::backend::s3::S3Backend`].
//!
//! The implementations live beside this trait: [`local`] (a directory),
//! [`s3`] (an S3-compatible object store), [`memory`] (for tests, with
//! durability modelled) and [`faulty`] (wraps any backend and fails on
//! purpose); [`names`] holds the one rule for file names and paths that they
//! share. `conformance` (tests only) checks every one of them against this
//! contract.
//!
//! This layer uses only layers below it: `error`, `interrupt`, `sys` (crash points, fallocate)
//! and `crypto` for random temporary names.

pub mod faulty;
pub mod local;
pub mod memory;
pub mod names;
pub mod s3;

#[cfg(test)]
mod conformance;

pub use faulty::FaultyBackend;
pub use local::LocalBackend;
pub use memory::MemoryBackend;
pub use names::{README_NAME, RESERVE_NAME};

use crate::error::Result;
use std::path::Path;

/// The kinds of repository files, each in its own directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FileKind {
    Config,
    Key,
    Pack,
    Index,
    Snapshot,
    Prune,
}

impl FileKind {
    /// Every kind, in dependency order: a file refers only to kinds before it
    /// (mirrors copy in this order).
    pub const ALL: [FileKind; 6] = [
        FileKind::Config,
        FileKind::Key,
        FileKind::Pack,
        FileKind::Index,
        FileKind::Snapshot,
        FileKind::Prune,
    ];
    pub fn dir(self) -> &'static str {
        match self {
            FileKind::Config => "config",
            FileKind::Key => "keys",
            FileKind::Pack => "packs",
            FileKind::Index => "index",
            FileKind::Snapshot => "snapshots",
            FileKind::Prune => "prune",
        }
    }
}

/// A narrow interface to stored files.
pub trait Backend: Send + Sync {
    /// A human-readable location, for messages.
    fn location(&self) -> String;
    /// Names and sizes of all files of a kind, sorted by name. Every name is
    /// valid ([`names::is_valid_name`]) and was found at its place
    /// ([`names::rel_path`]); anything else in the directory is skipped and
    /// counted in [`Backend::skipped_names`].
    fn list(&self, kind: FileKind) -> Result<Vec<(String, u64)>>;
    /// How many names [`Backend::list`] has skipped so far as no repository
    /// file's (a `README`, an uppercase or short name, a misplaced pack).
    fn skipped_names(&self) -> u64 {
        0
    }
    fn read(&self, kind: FileKind, name: &str) -> Result<Vec<u8>>;
    fn read_range(&self, kind: FileKind, name: &str, offset: u64, len: usize) -> Result<Vec<u8>>;
    fn size(&self, kind: FileKind, name: &str) -> Result<u64>;
    fn write_new(&self, kind: FileKind, name: &str, bytes: &[u8]) -> Result<()>;
    /// Starts a new file of `kind` whose name is known only once it is
    /// complete (a pack is named by the hash of its bytes), so that its bytes
    /// can go to the disk while it is still being filled. `None`: this
    /// backend takes files whole, through `write_new`.
    fn stage_new(&self, _kind: FileKind) -> Result<Option<Box<dyn StagedFile>>> {
        Ok(None)
    }
    fn remove(&self, kind: FileKind, name: &str) -> Result<()>;
    /// Removes several files of a kind, making the removals durable once at the end.
    fn remove_many(&self, kind: FileKind, names: &[String]) -> Result<()> {
        names.iter().try_for_each(|n| self.remove(kind, n))
    }
    /// Removes temporary files left by interrupted writers; only safe under an exclusive lock.
    fn clean_tmp(&self) -> Result<usize>;
    /// Ephemeral lock files (never mirrored).
    fn write_lock(&self, name: &str, bytes: &[u8]) -> Result<()>;
    fn list_locks(&self) -> Result<Vec<String>>;
    fn read_lock(&self, name: &str) -> Result<Vec<u8>>;
    fn remove_lock(&self, name: &str) -> Result<()>;
    /// `SOPVAULT.txt`, or `None` when there is none.
    fn read_readme(&self) -> Result<Option<Vec<u8>>>;
    /// Creates the layout and `SOPVAULT.txt` in an empty place; refuses a non-empty one.
    fn create(&self, readme: &str) -> Result<()>;
    /// Every stored file (also `locks/` and `tmp/`) by its path relative to
    /// the repository root, with its size: for mirrors and `mirror --verify`.
    fn all_files(&self) -> Result<Vec<(String, u64)>>;
    /// The directory, for a local backend.
    fn local_root(&self) -> Option<&Path> {
        None
    }
    /// Keeps `reserve` (format-spec §2) at least `bytes` long: space held
    /// back so that prune can still run when the disk is full. A backend
    /// without a file system of its own (S3) keeps none.
    fn keep_reserve(&self, _bytes: u64) -> Result<()> {
        Ok(())
    }
    /// Deletes the reserve; whether there was one.
    fn release_reserve(&self) -> Result<bool> {
        Ok(false)
    }
    /// The hex SHA-256 of a file as the storage recorded it at upload, when it
    /// keeps one (S3's `x-amz-checksum-sha256`); `None` means: read the file.
    fn stored_sha256(&self, _kind: FileKind, _name: &str) -> Result<Option<String>> {
        Ok(None)
    }
}

/// A file being written ahead of its name (see [`Backend::stage_new`]).
/// Dropping it without `commit` deletes what was written.
pub trait StagedFile: Send {
    /// Appends bytes, and starts writing them out without waiting.
    fn append(&mut self, bytes: &[u8]) -> Result<()>;
    /// How many bytes were appended.
    fn written(&self) -> u64;
    /// Appends the last bytes and makes the file durable as `name`, with
    /// `write_new`'s guarantees: it appears whole or not at all, and an
    /// existing file of that name is kept.
    fn commit(self: Box<Self>, name: &str, rest: &[u8]) -> Result<()>;
}

/// The backend for a `--repo` argument: `s3://BUCKET/PREFIX` or a directory.
pub fn open(spec: &Path) -> Result<std::sync::Arc<dyn Backend>> {
    match spec.to_str() {
        Some(s) if crate::backend::s3::is_url(s) => Ok(std::sync::Arc::new(
            crate::backend::s3::S3Backend::from_url(s)?,
        )),
        _ => Ok(std::sync::Arc::new(LocalBackend::new(spec))),
    }
}
