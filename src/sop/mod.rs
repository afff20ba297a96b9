//! The written procedure (SOP) on top of the commands: [`config`] reads
//! `sopvault.toml`, which says what a night of backups does.
//!
//! Layer: above `ops`; uses the commands' engine and everything below it.

pub mod config;
