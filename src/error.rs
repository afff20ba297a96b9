//! Typed errors of the engine.
//!
//! Every error names the object it concerns and, where there is one, what was
//! expected and what was found. The command line maps [`Error::kind`] to its
//! documented exit codes in one place (`src/cli/mod.rs`).
//!
//! Errors never name a command-line flag: where the fix is a flag, the
//! variant says what is wrong and the command line adds the hint
//! (`src/cli/hints.rs`). Ids are typed, so a message prints them one way.

use crate::ids::{ChunkId, PackId};
use std::path::PathBuf;

/// What went wrong, independent of the object: used for exit codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// No repository at the given place, or something that is not a sopvault repository.
    NoRepository,
    /// Another process holds a conflicting lock.
    Locked,
    /// No key file opens with the given password.
    WrongPassword,
    /// A stream's command failed or its input ended in an error.
    StreamFailed,
    /// Stored data failed authentication, a hash or a structural check.
    Damaged,
    /// The file system or device is full.
    NoSpace,
    /// The run was interrupted (Ctrl-C, SIGTERM).
    Interrupted,
    /// Standard output was closed by its reader (a pipe into `head`).
    OutputClosed,
    /// The user asked for something that does not exist or cannot be done.
    Usage,
    /// Any other I/O or internal failure.
    Other,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("no sopvault repository at {path}: {reason}")]
    NoRepository { path: PathBuf, reason: String },
    #[error("{path} already exists and is not empty; refusing to create a repository there")]
    RepositoryExists { path: PathBuf },
    #[error(
        "no key file of repository {repo} opens with this {what} ({tried} key file(s) of its kind tried)"
    )]
    WrongPassword {
        repo: PathBuf,
        what: &'static str,
        tried: usize,
    },
    #[error("repository is locked {mode} by {holder} (lock {lock}); wait for it to finish, or run `sopvault unlock` if that process is gone")]
    Locked {
        mode: &'static str,
        holder: String,
        lock: String,
    },
    #[error("{object}: unsupported {what} version: expected {expected}, found {found}")]
    UnsupportedVersion {
        object: String,
        what: &'static str,
        expected: u32,
        found: u32,
    },
    #[error("{object}: uses feature {feature:?}, which this version of sopvault does not know; upgrade sopvault")]
    UnsupportedFeature { object: String, feature: String },
    #[error("{object}: bad magic: expected {expected:?}, found {found:?}")]
    BadMagic {
        object: String,
        expected: String,
        found: String,
    },
    #[error("{object}: damaged: {reason}")]
    Damaged { object: String, reason: String },
    #[error("{object}: content hash mismatch: name says {expected}, bytes hash to {found}")]
    HashMismatch {
        object: String,
        expected: String,
        found: String,
    },
    #[error("chunk {chunk} in pack {pack} at offset {offset}: {reason}")]
    BlobDamaged {
        chunk: ChunkId,
        pack: PackId,
        offset: u64,
        reason: String,
    },
    #[error("chunk {chunk} is not in the index (needed by {needed_by})")]
    MissingChunk { chunk: ChunkId, needed_by: String },
    #[error("stream {name:?} failed: {reason}; no snapshot was written")]
    StreamFailed { name: String, reason: String },
    /// A stream produced no bytes and the caller did not allow that.
    #[error("stream {name:?} failed: {what}; no snapshot was written")]
    EmptyStream { name: String, what: &'static str },
    /// A snapshot was asked for with neither paths nor streams.
    #[error("nothing to back up: no paths and no streams given")]
    NothingToBackUp,
    /// A retention policy without a single keep rule.
    #[error("no keep rule given: refusing to forget every snapshot")]
    NoKeepRule,
    /// The policy would remove every snapshot of a group.
    #[error("the policy would remove every snapshot of group {group}; refusing")]
    WouldRemoveAll { group: String },
    /// A snapshot grouping names a field that does not exist.
    #[error("unknown grouping field {field:?} (source, host, tags)")]
    UnknownGroupField { field: String },
    /// A mirror destination that holds no repository yet.
    #[error("no sopvault repository at {path}: {reason}")]
    NotAMirror { path: PathBuf, reason: String },
    /// A password that has the form of a machine secret.
    #[error("a password may not start with {prefix}: that is a machine secret")]
    PasswordIsSecret { prefix: &'static str },
    /// A thread the engine needs could not be started.
    #[error("cannot start {what}: {reason}")]
    Threads { what: String, reason: String },
    /// A stage of the engine stopped without a result (a worker panicked or
    /// an internal invariant failed); the message says which.
    #[error("{what}")]
    Internal { what: String },
    /// A just-sealed blob did not open to its own id: memory or compressor fault.
    #[error("{what} {chunk} failed verification right after sealing (memory or compressor fault?): {reason}")]
    SealingFault {
        what: &'static str,
        chunk: ChunkId,
        reason: String,
    },
    /// Compression or encryption could not run (no memory, a rejected parameter).
    #[error("{what}: {reason}")]
    Codec { what: &'static str, reason: String },
    /// The operating system's random source failed.
    #[error("operating system random source failed: {reason}")]
    Random { reason: String },
    /// An object store refused or failed a request.
    #[error("{object}: {reason}")]
    Remote { object: String, reason: String },
    /// Something this machine lacks or refuses (a kernel facility, a device).
    #[error("{what}: {reason}")]
    Environment { what: String, reason: String },
    /// The configuration file (`sopvault.toml`) is not what sopvault expects;
    /// `object` names the file and the line.
    #[error("{object}: {reason}")]
    Config { object: String, reason: String },
    /// A file of this machine's own state (not of the repository) is unreadable.
    #[error("{path}: {reason}")]
    LocalState { path: PathBuf, reason: String },
    #[error("no space left on device while writing {path}")]
    NoSpace { path: PathBuf },
    #[error("interrupted")]
    Interrupted,
    #[error("standard output was closed")]
    OutputClosed,
    #[error("{0}")]
    Usage(String),
}

impl Error {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::NoRepository { .. } => ErrorKind::NoRepository,
            Error::WrongPassword { .. } => ErrorKind::WrongPassword,
            Error::Locked { .. } => ErrorKind::Locked,
            // Newer formats are not damage: never skipped as if they were.
            Error::UnsupportedVersion { .. } | Error::UnsupportedFeature { .. } => ErrorKind::Other,
            Error::BadMagic { .. }
            | Error::Damaged { .. }
            | Error::HashMismatch { .. }
            | Error::BlobDamaged { .. }
            | Error::MissingChunk { .. } => ErrorKind::Damaged,
            Error::StreamFailed { .. } | Error::EmptyStream { .. } => ErrorKind::StreamFailed,
            Error::NotAMirror { .. } => ErrorKind::NoRepository,
            Error::NothingToBackUp
            | Error::NoKeepRule
            | Error::WouldRemoveAll { .. }
            | Error::UnknownGroupField { .. }
            | Error::PasswordIsSecret { .. }
            | Error::Config { .. } => ErrorKind::Usage,
            Error::NoSpace { .. } => ErrorKind::NoSpace,
            Error::Interrupted => ErrorKind::Interrupted,
            Error::OutputClosed => ErrorKind::OutputClosed,
            Error::Usage(_) | Error::RepositoryExists { .. } => ErrorKind::Usage,
            Error::Io { source, .. } if is_no_space(source) => ErrorKind::NoSpace,
            Error::Io { .. }
            | Error::Threads { .. }
            | Error::Internal { .. }
            | Error::SealingFault { .. }
            | Error::Codec { .. }
            | Error::Random { .. }
            | Error::Remote { .. }
            | Error::LocalState { .. }
            | Error::Environment { .. } => ErrorKind::Other,
        }
    }

    /// Wraps an I/O error with the path it concerns; a full device becomes [`Error::NoSpace`].
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Error {
        let path = path.into();
        if is_no_space(&source) {
            Error::NoSpace { path }
        } else {
            Error::Io { path, source }
        }
    }

    pub fn damaged(object: impl std::fmt::Display, reason: impl Into<String>) -> Error {
        Error::Damaged {
            object: object.to_string(),
            reason: reason.into(),
        }
    }
}

fn is_no_space(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
        || e.kind() == std::io::ErrorKind::StorageFull
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
