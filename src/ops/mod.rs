//! The commands' engine, one module per operation: [`snapshot`], [`restore`],
//! [`vfs`] (the read-only view `mount` shows), [`check`], [`prune`] with its
//! pure policy [`retention`], [`repair`] and [`mirror`]; [`progress`] is the
//! trait through which they report.
//!
//! Layer: the top of the library. Uses `repo` and `write` (and what lies
//! below them); the command line in `src/cli/` is the only caller.

pub mod check;
pub mod mirror;
pub mod progress;
pub mod prune;
pub mod repair;
pub mod restore;
pub mod retention;
pub mod snapshot;
pub mod vfs;
