//! sopvault: content-addressed, deduplicating, encrypted backups.
//!
//! # Layers
//! Bottom to top; a module uses only the layers below it (and its own),
//! which `scripts/check-layers.py` checks in the test command:
//!
//! 1. [`error`], [`ids`], [`escape`], [`interrupt`] — typed errors, one id type per kind of
//!    object, names that are bytes printed reversibly, the interruption flag.
//! 2. [`crypto`] — master key, subkeys, XChaCha20-Poly1305 sealing; [`chunker`] — keyed FastCDC.
//! 3. [`blob`] — compress, seal, verify a chunk; open and verify it again.
//! 4. [`format`](mod@format) — the byte layout of every file kind (key, config, pack, tree, manifest).
//! 5. [`sys`] — everything that asks the operating system (metadata, walks, write-behind, host info,
//!    crash points for tests).
//! 6. [`backend`] — where bytes live (a directory, S3), no crypto and no format knowledge.
//! 7. [`index`] — index files and the merged, memory-mapped index.
//! 8. [`repo`] — the one door to stored bytes: keys, config, locks, snapshot lookup,
//!    blob reads and delta chains.
//! 9. [`write`] — the write side: dedup, parallel sealing, packs, index files, delta bases.
//! 10. [`ops`] — the commands: snapshot, restore, vfs, check, prune, retention, repair, mirror.
//! 11. [`sop`] — the written procedure: `sopvault.toml` and the nightly run it drives.
//!
//! `ARCHITECTURE.md` follows a chunk through these layers.
//!
//! The command line (`src/main.rs`, `src/cli/`) is a thin layer on top; this
//! library never imports clap, indicatif or fuser.

// `unsafe` only where the operating system is asked directly (`sys/`) and
// where the index cache is memory-mapped (`index/cache.rs`), each block with
// a SAFETY note (clippy::undocumented_unsafe_blocks in Cargo.toml).
#![deny(unsafe_code)]

pub mod backend;
pub mod blob;
pub mod chunker;
pub mod crypto;
pub mod error;
pub mod escape;
pub mod format;
pub mod ids;
pub mod index;
pub mod interrupt;
pub mod ops;
pub mod repo;
pub mod sop;
pub mod sys;
pub mod write;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod testutil;

pub use error::{Error, ErrorKind, Result};
pub use repo::Repository;
