//! `sopvault prune`: forget snapshots by a retention policy and free the space.

use super::{human_bytes, print_json, Ctx};
use serde_json::json;
use sopvault::ops::prune::{GroupBy, PackPlan, PruneOptions, PrunePlan};
use sopvault::ops::retention::{parse_count, parse_duration, Count, Policy};
use sopvault::repo::lock::{Access, Lock};
use sopvault::repo::{ListAhead, Repository};
use sopvault::Error;

#[derive(clap::Args)]
pub struct Args {
    /// Keep the N newest snapshots
    #[arg(long, value_name = "N|unlimited")]
    keep_last: Option<String>,
    /// Keep the newest snapshot of each of the last N hours that have snapshots
    #[arg(long, value_name = "N|unlimited")]
    keep_hourly: Option<String>,
    /// Keep the newest snapshot of each of the last N days that have snapshots
    #[arg(long, value_name = "N|unlimited")]
    keep_daily: Option<String>,
    /// Keep the newest snapshot of each of the last N ISO weeks that have snapshots
    #[arg(long, value_name = "N|unlimited")]
    keep_weekly: Option<String>,
    /// Keep the newest snapshot of each of the last N months that have snapshots
    #[arg(long, value_name = "N|unlimited")]
    keep_monthly: Option<String>,
    /// Keep the newest snapshot of each of the last N years that have snapshots
    #[arg(long, value_name = "N|unlimited")]
    keep_yearly: Option<String>,
    /// Keep every snapshot within DURATION of the newest one (e.g. 10d, 2w, 1y6m)
    #[arg(long, value_name = "DURATION")]
    keep_within: Option<String>,
    /// Keep snapshots with this tag (repeatable)
    #[arg(long, value_name = "TAG")]
    keep_tag: Vec<String>,
    /// Only snapshots of this source
    #[arg(long)]
    source: Option<String>,
    /// Fields that group snapshots for the policy: source, host, tags
    #[arg(long, default_value = "source")]
    group_by: String,
    /// Allow a policy to remove every snapshot of a group
    #[arg(long)]
    allow_remove_all: bool,
    /// Repack until at most this share of pack space is unused
    #[arg(long, default_value = "5%", value_name = "N%")]
    max_unused: String,
    /// Repack at most this much pack data per run (e.g. 2G, 500M)
    #[arg(long, value_name = "SIZE")]
    max_repack_size: Option<String>,
    /// Print what would be removed and why; change nothing
    #[arg(long, short = 'n')]
    dry_run: bool,
    /// Print the plan (and the result) as JSON
    #[arg(long)]
    json: bool,
    /// Record this time in the prune record instead of now (RFC 3339); mirrors
    /// measure their grace period from it
    #[arg(long, value_name = "RFC3339")]
    time: Option<String>,
}

fn count(flag: &str, v: &Option<String>) -> Result<Option<Count>, Error> {
    v.as_deref()
        .map(|s| parse_count(s).map_err(|e| Error::Usage(format!("--{flag} {s:?}: {e}"))))
        .transpose()
}

fn parse_size(s: &str) -> Result<u64, Error> {
    let t = s.trim();
    let (num, mult) = match t.chars().last().map(|c| c.to_ascii_uppercase()) {
        Some('K') => (&t[..t.len() - 1], 1u64 << 10),
        Some('M') => (&t[..t.len() - 1], 1 << 20),
        Some('G') => (&t[..t.len() - 1], 1 << 30),
        Some('T') => (&t[..t.len() - 1], 1 << 40),
        _ => (t, 1),
    };
    num.trim().parse::<u64>().map(|n| n * mult).map_err(|_| {
        Error::Usage(format!(
            "--max-repack-size {s:?}: expected a size like 500M or 2G"
        ))
    })
}

fn parse_share(s: &str) -> Result<f64, Error> {
    let n: f64 =
        s.trim().trim_end_matches('%').parse().map_err(|_| {
            Error::Usage(format!("--max-unused {s:?}: expected a percentage like 5%"))
        })?;
    if !(0.0..=100.0).contains(&n) {
        return Err(Error::Usage(format!(
            "--max-unused {s:?}: must be between 0% and 100%"
        )));
    }
    Ok(n / 100.0)
}

fn policy(args: &Args) -> Result<Policy, Error> {
    Ok(Policy {
        keep_last: count("keep-last", &args.keep_last)?,
        keep_hourly: count("keep-hourly", &args.keep_hourly)?,
        keep_daily: count("keep-daily", &args.keep_daily)?,
        keep_weekly: count("keep-weekly", &args.keep_weekly)?,
        keep_monthly: count("keep-monthly", &args.keep_monthly)?,
        keep_yearly: count("keep-yearly", &args.keep_yearly)?,
        keep_within: args
            .keep_within
            .as_deref()
            .map(|s| {
                parse_duration(s).map_err(|e| Error::Usage(format!("--keep-within {s:?}: {e}")))
            })
            .transpose()?,
        keep_tags: args.keep_tag.clone(),
    })
}

fn options(args: &Args) -> Result<PruneOptions, Error> {
    Ok(PruneOptions {
        policy: policy(args)?,
        group_by: GroupBy::parse(&args.group_by)?,
        source: args.source.clone(),
        allow_remove_all: args.allow_remove_all,
        max_unused: parse_share(&args.max_unused)?,
        max_repack_size: args
            .max_repack_size
            .as_deref()
            .map(parse_size)
            .transpose()?,
        time: super::parse_time(args.time.as_deref())?,
        dry_run: args.dry_run,
    })
}

pub fn run(ctx: &Ctx, args: Args) -> Result<i32, Error> {
    let mut opts = options(&args)?;
    let access = if args.dry_run {
        Access::PrunePlan
    } else {
        Access::Prune
    };
    let (repo, mut lock) = ctx.open_locked(access, "prune", ListAhead::Index)?;
    // Only the notices: damage skipped while planning makes the plan refuse.
    ctx.print_notices(&repo);
    take_reserve_if_full(&repo, &mut lock, &mut opts)?;
    let plan = sopvault::ops::prune::plan(&repo, &opts)?;
    let snapshots_json = snapshots_json(&plan);
    let packs_json = packs_json(&plan.packs);
    if !args.json && !ctx.quiet {
        print_plan(&plan)?;
    }
    if args.dry_run {
        if args.json {
            print_json(
                &json!({"dry_run": true, "snapshots": snapshots_json, "packs": packs_json}),
            )?;
        } else {
            outln!("dry run: nothing was changed")?;
        }
        return Ok(super::exit::OK);
    }
    let record = sopvault::ops::prune::execute(&repo, &plan)?;
    repo.keep_reserve(plan.live_entries());
    ctx.print_warnings(&repo);
    if args.json {
        print_json(&json!({
            "dry_run": false, "snapshots": snapshots_json, "packs": packs_json,
            "forgotten": record.forgotten.len(), "deleted_packs": record.deleted_packs.len(),
            "superseded_index_files": record.superseded_index.len(),
        }))?;
    } else if !ctx.quiet {
        outln!(
            "removed {} snapshot(s), deleted {} pack(s), freed {}",
            record.forgotten.len(),
            record.deleted_packs.len(),
            human_bytes(plan.packs.freed_bytes())
        )?;
    }
    Ok(super::exit::OK)
}

/// On a full disk the lock waits for the space reserve: the policy is
/// checked against the snapshots before the reserve goes (so that a usage
/// error leaves it in place), and a prune on the freed reserve only deletes.
fn take_reserve_if_full(
    repo: &Repository,
    lock: &mut Lock,
    opts: &mut PruneOptions,
) -> Result<(), Error> {
    if lock.awaits_reserve() {
        sopvault::ops::prune::decide(&repo.snapshots()?, opts)?;
        for n in lock.take_reserve("prune")? {
            eprintln!("sopvault: warning: {n}");
        }
    }
    if lock.released_reserve {
        // Repacking writes before it frees; on a full disk, only delete.
        opts.max_repack_size = Some(0);
        eprintln!(
            "sopvault: note: this prune deletes but does not repack; run prune again once there is room"
        );
    }
    Ok(())
}

fn snapshots_json(plan: &PrunePlan) -> Vec<serde_json::Value> {
    plan.snapshots
        .iter()
        .map(|d| {
            json!({
                "id": d.id.to_hex(), "short_id": d.id.short(), "name": d.snapshot.name,
                "time": d.snapshot.time.rfc3339(), "source": d.snapshot.source, "group": d.group,
                "action": if d.keep { "keep" } else { "remove" }, "reasons": d.reasons,
            })
        })
        .collect()
}

fn packs_json(p: &PackPlan) -> serde_json::Value {
    json!({
        "total": p.delete.len() as u64 + p.repack.len() as u64 + p.keep,
        "delete": p.delete.len(), "repack": p.repack.len(), "keep": p.keep,
        "total_bytes": p.total_bytes, "live_bytes": p.live_bytes, "unused_bytes": p.unused_bytes,
        "unused_bytes_after": p.unused_after, "repack_live_bytes": p.repack_live_bytes,
        "freed_bytes": p.freed_bytes(),
    })
}

/// Each group's decisions with their reasons, then what happens to the packs.
fn print_plan(plan: &PrunePlan) -> Result<(), Error> {
    let mut group = None;
    for d in &plan.snapshots {
        if group.as_ref() != Some(&d.group) {
            let (k, r) =
                plan.snapshots
                    .iter()
                    .filter(|x| x.group == d.group)
                    .fold(
                        (0, 0),
                        |(k, r), x| if x.keep { (k + 1, r) } else { (k, r + 1) },
                    );
            outln!("group {}: keep {k}, remove {r}", d.group)?;
            group = Some(d.group.clone());
        }
        outln!(
            "  {:<6} {}  {:<28} {}  {}",
            if d.keep { "keep" } else { "remove" },
            d.id.short(),
            d.snapshot.name,
            d.snapshot.time.rfc3339(),
            d.reasons.join(", ")
        )?;
    }
    let p = &plan.packs;
    outln!(
        "packs: {} in all ({}): delete {}, repack {} (copying {} live), keep {}; frees {}; unused space {} -> {}",
        p.delete.len() as u64 + p.repack.len() as u64 + p.keep,
        human_bytes(p.total_bytes),
        p.delete.len(),
        p.repack.len(),
        human_bytes(p.repack_live_bytes),
        p.keep,
        human_bytes(p.freed_bytes()),
        human_bytes(p.unused_bytes),
        human_bytes(p.unused_after)
    )
}
