//! `sopvault restore`: write a snapshot, or parts of it, into a directory.

use super::{exit, human_bytes, print_json, Ctx};
use serde_json::json;
use sopvault::ops::restore::RestoreOptions;
use sopvault::repo::ListAhead;
use sopvault::Error;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// Snapshot: latest, SOURCE:latest, a name or an id prefix
    snapshot: String,
    /// Directory to restore into (created if missing)
    #[arg(long)]
    target: PathBuf,
    /// Restore only this snapshot path and what is below it (repeatable)
    #[arg(long, value_name = "PATH")]
    include: Vec<std::ffi::OsString>,
    /// Print the result as JSON
    #[arg(long)]
    json: bool,
}

pub fn run(ctx: &Ctx, args: Args) -> Result<i32, Error> {
    let (repo, _lock) = ctx.open_locked_for_one_version(
        sopvault::repo::lock::Access::Read,
        "restore",
        ListAhead::Index,
    )?;
    let (id, snap) = repo.find_snapshot(&args.snapshot)?;
    ctx.warn_if_incomplete(&repo, &id, &snap);
    let index = repo.index()?;
    ctx.print_warnings(&repo);
    let opts = RestoreOptions {
        target: args.target.clone(),
        includes: args
            .include
            .iter()
            .map(|p| std::os::unix::ffi::OsStrExt::as_bytes(p.as_os_str()).to_vec())
            .collect(),
        owners: sopvault::sys::sysinfo::is_root(),
    };
    let report = sopvault::ops::restore::restore(&repo, &index, &snap.root, &opts)?;
    for w in &report.warnings {
        eprintln!("sopvault: warning: {w}");
    }
    for e in &report.errors {
        eprintln!("sopvault: error: {e}");
    }
    if args.json {
        print_json(&json!({
            "snapshot": id.to_hex(), "name": snap.name, "target": args.target.display().to_string(),
            "files": report.files, "dirs": report.dirs, "bytes": report.bytes,
            "errors": report.errors, "warnings": report.warnings,
        }))?;
    } else if !ctx.quiet {
        outln!(
            "restored {} ({}) into {}: {} files, {} dirs, {}",
            snap.name,
            id.short(),
            args.target.display(),
            report.files,
            report.dirs,
            human_bytes(report.bytes)
        )?;
    }
    if !report.errors.is_empty() {
        eprintln!(
            "sopvault: {} path(s) could not be restored because of damaged data",
            report.errors.len()
        );
        return Ok(exit::DAMAGED);
    }
    Ok(exit::OK)
}
