//! sopvault's integration tests, in one test binary so that the harness in
//! [`common`] is compiled once.
//!
//! One module per area; a module path filters them, e.g.
//! `cargo test --release --test it cli::` or
//! `SOPVAULT_YEAR_DAYS=25 cargo test --release --test it year::`.
//! Most modules drive the real `sopvault` binary on real temporary
//! directories; `format_vectors` calls the library and pins the on-disk format
//! (and checks that `format-spec.md` §17 prints the same vectors).
//!
//! Tests that need something the machine may lack (FUSE, user namespaces,
//! an S3 server, rclone) print SKIP and pass, unless `SOPVAULT_STRICT=1`
//! (set by `scripts/test.sh`), where a SKIP fails: see [`common::skip`].

mod common;

mod cli;
mod delta;
mod format_vectors;
mod mirror;
mod mount;
mod nospace;
mod prune;
mod s3;
mod sop;
mod year;
