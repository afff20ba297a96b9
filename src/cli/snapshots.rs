//! `sopvault snapshots`: list snapshots.

use super::{human_bytes, print_json, Ctx};
use serde_json::json;
use sopvault::format::manifest::{Snapshot, SnapshotTime};
use sopvault::ids::SnapshotId;
use sopvault::repo::ListAhead;
use sopvault::Error;

#[derive(clap::Args)]
pub struct Args {
    /// Only snapshots of this source
    #[arg(long)]
    source: Option<String>,
    /// Print JSON
    #[arg(long)]
    json: bool,
}

fn time_json(t: &SnapshotTime) -> serde_json::Value {
    t.to_datetime()
        .to_rfc3339_opts(chrono::SecondsFormat::Nanos, false)
        .into()
}

/// The documented JSON object for one snapshot.
pub fn snapshot_json(id: &SnapshotId, s: &Snapshot) -> serde_json::Value {
    let sum = &s.summary;
    json!({
        "id": id.to_hex(),
        "short_id": id.short(),
        "name": s.name,
        "time": s.time.rfc3339(),
        "source": s.source,
        "host": s.host,
        "user": s.user,
        "tags": s.tags,
        "paths": s.paths.iter().map(|p| String::from_utf8_lossy(p).into_owned()).collect::<Vec<_>>(),
        "streams": s.streams.iter().map(|r| json!({
            "name": r.name,
            "command": r.command,
            "exit_status": r.exit_status,
            "bytes": r.bytes,
            "sha256": hex::encode(r.sha256),
            "started": time_json(&r.started),
            "ended": time_json(&r.ended),
            "shrunk_from": r.shrunk_from,
        })).collect::<Vec<_>>(),
        "parent": s.parent.map(|p| p.to_hex()),
        "complete": s.complete,
        "program": s.program,
        "summary": {
            "files": sum.files,
            "files_unchanged": sum.files_unchanged,
            "dirs": sum.dirs,
            "bytes_total": sum.bytes_total,
            "bytes_read": sum.bytes_read,
            "bytes_added": sum.bytes_new,
            "bytes_stored": sum.bytes_stored,
            "chunks_added": sum.chunks_new,
            "duration_ms": sum.duration_ms,
            "errors": sum.errors,
        },
    })
}

pub fn run(ctx: &Ctx, args: Args) -> Result<i32, Error> {
    let (repo, _lock) = ctx.open_locked(
        sopvault::repo::lock::Access::Read,
        "snapshots",
        ListAhead::Nothing,
    )?;
    let all = repo.snapshots()?;
    ctx.print_warnings(&repo);
    if let Some(src) = &args.source {
        if !all.iter().any(|(_, s)| &s.source == src) {
            let known: std::collections::BTreeSet<&str> =
                all.iter().map(|(_, s)| s.source.as_str()).collect();
            let known: Vec<&str> = known.into_iter().collect();
            return Err(Error::Usage(format!(
                "no snapshot of source {src:?} in the repository (sources: {})",
                if known.is_empty() {
                    "none yet".to_string()
                } else {
                    known.join(", ")
                }
            )));
        }
    }
    let snaps: Vec<_> = all
        .into_iter()
        .filter(|(_, s)| args.source.as_ref().is_none_or(|src| &s.source == src))
        .collect();
    if args.json {
        print_json(&serde_json::Value::Array(
            snaps.iter().map(|(id, s)| snapshot_json(id, s)).collect(),
        ))?;
        return Ok(super::exit::OK);
    }
    outln!(
        "{:<8}  {:<28}  {:<25}  {:>10}  {:>10}  contents",
        "id",
        "name",
        "time",
        "size",
        "stored"
    )?;
    for (id, s) in &snaps {
        let mut what: Vec<String> = s
            .streams
            .iter()
            .map(|r| format!("{} (stream)", r.name))
            .collect();
        what.extend(
            s.paths
                .iter()
                .map(|p| String::from_utf8_lossy(p).into_owned()),
        );
        let flag = if s.complete { "" } else { "  [incomplete]" };
        outln!(
            "{:<8}  {:<28}  {:<25}  {:>10}  {:>10}  {}{}{}",
            id.short(),
            s.name,
            s.time.rfc3339(),
            human_bytes(s.summary.bytes_total),
            human_bytes(s.summary.bytes_stored),
            what.join(" "),
            if s.tags.is_empty() {
                String::new()
            } else {
                format!("  tags: {}", s.tags.join(","))
            },
            flag
        )?;
    }
    if !ctx.quiet {
        outln!("{} snapshot(s)", snaps.len())?;
    }
    Ok(super::exit::OK)
}
