//! sopvault: content-addressed, deduplicating, encrypted backups.
//!
//! # Layout
//! Bottom to top, each stage of the data flow in exactly one module:
//!
//! - [`error`], [`ids`] — typed errors; one id type per kind of object;
//!   [`escape`] — names that are bytes, printed reversibly.
//! - [`format`](mod@format) — fixed little-endian layouts and magic numbers.
//! - [`crypto`] — master key, subkeys, XChaCha20-Poly1305 sealing.
//! - [`chunker`] — keyed FastCDC.
//! - [`blob`] — compress, seal, verify a chunk; open and verify it again.
//! - [`delta`] — a new chunk's delta base; decoding chains of deltas.
//! - [`keyfile`], [`config`], [`pack`], [`index`], [`tree`], [`manifest`] — one module per file format.
//! - [`backend`] — where bytes live (a local directory), no crypto; [`s3`] — an
//!   S3-compatible object store behind the same trait.
//! - [`lock`] — shared and exclusive repository locks.
//! - [`repo`] — owns keys, backend and config; reads blobs, trees, snapshots.
//! - [`store`] — the write side: dedup, parallel sealing, packs, index files;
//!   [`added`] — the ids a run added, spilled to disk as they grow.
//! - [`walk`] — directory listings, `lstat` and xattrs for a snapshot, read ahead on a thread.
//! - [`retention`] — the retention policy, a pure function.
//! - [`snapshot`], [`restore`], [`check`], [`prune`], [`repair`], [`mirror`] — orchestration of the commands;
//!   [`writeback`] — restored data leaves the page cache once written.
//! - [`vfs`] — a read-only view of every snapshot (the FUSE adapter lives in the binary).
//! - [`faults`] — crash points for fault-injection tests.
//!
//! The command line (`src/main.rs`, `src/cli/`) is a thin layer on top; this
//! library never imports clap, indicatif or fuser.

#![deny(unsafe_op_in_unsafe_fn)]

pub mod added;
pub mod backend;
pub mod blob;
pub mod check;
pub mod chunker;
pub mod config;
pub mod crypto;
pub mod delta;
pub mod error;
pub mod escape;
pub mod faults;
pub mod format;
pub mod fsmeta;
pub mod ids;
pub mod index;
pub mod interrupt;
pub mod keyfile;
pub mod lock;
pub mod manifest;
pub mod mirror;
pub mod pack;
pub mod parent;
pub mod progress;
pub mod prune;
pub mod repair;
pub mod repo;
pub mod restore;
pub mod retention;
pub mod s3;
pub mod snapshot;
pub mod store;
pub mod sysinfo;
pub mod tree;
pub mod vfs;
pub mod walk;
pub mod writeback;

#[cfg(test)]
mod testutil;

pub use error::{Error, ErrorKind, Result};
pub use repo::Repository;
