//! `sopvault mirror`: copy the repository to a disk or a bucket, verify a copy, list mirrors.

use super::{exit, human_bytes, print_json, Ctx};
use serde_json::json;
use sopvault::backend::{Backend, FileKind};
use sopvault::ops::mirror::{
    self, state, DestinationState, MirrorOptions, MirrorOutcome, MirrorPlan, Sample,
};
use sopvault::repo::lock::Lock;
use sopvault::repo::ListAhead;
use sopvault::{Error, Repository};
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(clap::Args)]
pub struct Args {
    /// Where the mirror lives: a directory or s3://BUCKET/PREFIX
    #[arg(value_name = "DIR|s3://BUCKET/PREFIX")]
    destination: Option<PathBuf>,
    /// Start a new mirror in an empty destination
    #[arg(long, conflicts_with_all = ["verify", "status"])]
    init: bool,
    /// Check the mirror without the key: names and sizes, then SHA-256 of every file against its name
    #[arg(long, conflicts_with = "status")]
    verify: bool,
    /// With --verify: hash only this share of files today (e.g. 5%); over 1/share days every file is hashed
    #[arg(long, requires = "verify", value_name = "N%")]
    sample: Option<String>,
    /// With --verify on S3: read and hash every object even where the server keeps a SHA-256 checksum
    #[arg(long, requires = "verify")]
    download: bool,
    /// List every mirror of this repository: last sync, files and bytes behind
    #[arg(long)]
    status: bool,
    /// Delete files condemned by a prune only this long after that prune (e.g. 30d, 2w, 0d)
    #[arg(long, value_name = "DURATION", default_value = "30d")]
    delete_after: String,
    /// Print what would be copied and deleted; change nothing
    #[arg(long, short = 'n')]
    dry_run: bool,
    /// Print the result as JSON
    #[arg(long)]
    json: bool,
    /// Take this as the current time (RFC 3339): for the grace period, the
    /// remembered last sync and the day of a --sample
    #[arg(long, value_name = "RFC3339")]
    time: Option<String>,
}

impl Args {
    /// Seconds since the epoch: `--time`, else the clock.
    fn now(&self) -> Result<i64, Error> {
        Ok(match super::parse_time(self.time.as_deref())? {
            Some(t) => t.at.sec,
            None => chrono::Utc::now().timestamp(),
        })
    }
}

/// Where remembered destinations live: `$XDG_STATE_HOME/sopvault`, else `~/.local/state/sopvault`.
fn state_dir() -> Result<PathBuf, Error> {
    if let Some(x) = std::env::var_os("XDG_STATE_HOME").filter(|x| !x.is_empty()) {
        return Ok(PathBuf::from(x).join("sopvault"));
    }
    std::env::var_os("HOME")
        .map(|h| PathBuf::from(h).join(".local/state/sopvault"))
        .ok_or_else(|| {
            Error::Usage(
                "neither XDG_STATE_HOME nor HOME is set: nowhere to remember mirrors".into(),
            )
        })
}

fn parse_delete_after(s: &str) -> Result<i64, Error> {
    let t = s.trim();
    if !t.is_empty()
        && t.trim_end_matches(['y', 'm', 'w', 'd', 'h'])
            .bytes()
            .all(|b| b == b'0')
    {
        return Ok(0);
    }
    sopvault::ops::retention::parse_duration(t)
        .map(|d| d.num_seconds())
        .map_err(|e| Error::Usage(format!("--delete-after {s:?}: {e}")))
}

fn parse_share(s: &str) -> Result<f64, Error> {
    let n: f64 = s
        .trim()
        .trim_end_matches('%')
        .parse()
        .map_err(|_| Error::Usage(format!("--sample {s:?}: expected a percentage like 5%")))?;
    if !(n > 0.0 && n <= 100.0) {
        return Err(Error::Usage(format!(
            "--sample {s:?}: must be above 0% and at most 100%"
        )));
    }
    Ok(n / 100.0)
}

/// Files copied or hashed at once: object stores gain from more requests in flight.
fn parallel(b: &dyn Backend) -> usize {
    if b.local_root().is_some() {
        2
    } else {
        8
    }
}

/// A destination's canonical name, as remembered for `--status`.
fn location_of(dest: &Path, backend: &dyn Backend) -> String {
    match backend.local_root() {
        Some(_) => std::fs::canonicalize(dest)
            .unwrap_or_else(|_| dest.to_path_buf())
            .display()
            .to_string(),
        None => backend.location(),
    }
}

pub fn run(ctx: &Ctx, args: Args) -> Result<i32, Error> {
    if args.status {
        return status(ctx, &args);
    }
    let Some(dest_arg) = args.destination.clone() else {
        return Err(Error::Usage(
            "mirror: give a destination (a directory or s3://BUCKET/PREFIX), or --status".into(),
        ));
    };
    if args.verify {
        return verify(ctx, &args, &dest_arg);
    }
    let delete_after = parse_delete_after(&args.delete_after)?;
    let (repo, _src_lock) = ctx.open_locked(
        sopvault::repo::lock::Access::Read,
        "mirror",
        ListAhead::Nothing,
    )?;
    let dest = sopvault::backend::open(&dest_arg)?;
    let opts = MirrorOptions {
        init: args.init,
        delete_after_secs: delete_after,
        now: args.now()?,
        parallel: parallel(dest.as_ref()),
    };
    if args.init {
        if let Some(root) = dest.local_root() {
            report_mount(ctx, root)?;
        }
    }
    let first = mirror::plan(&repo, &dest, &opts)?;
    if args.dry_run {
        print_plan(ctx, &args, &first, true)?;
        return Ok(exit::OK);
    }
    if first.state == DestinationState::Empty {
        mirror::init_destination(&repo, dest.as_ref())?;
        if !ctx.quiet && !args.json {
            outln!("started a new mirror at {}", dest.location())?;
        }
    }
    let _dest_lock = lock_destination(&dest)?;
    let plan = mirror::plan(&repo, &dest, &opts)?;
    if !args.json {
        print_plan(ctx, &args, &plan, false)?;
    }
    let bar = super::progress::Bar::new(!ctx.quiet && !args.json);
    let outcome = mirror::execute(&repo, dest.as_ref(), &plan, &opts, &bar);
    bar.finish();
    let outcome = outcome?;
    ctx.print_warnings(&repo);
    if outcome.damaged_at_source.is_empty() {
        remember(
            &repo,
            location_of(&dest_arg, dest.as_ref()),
            &opts,
            &outcome,
        );
    }
    print_outcome(ctx, &args, &plan, &outcome)?;
    if !outcome.damaged_at_source.is_empty() {
        for d in &outcome.damaged_at_source {
            eprintln!("sopvault: damaged at the source, not copied: {d}");
        }
        eprintln!(
            "sopvault: nothing was deleted from the mirror; run `sopvault check` on the source"
        );
        return Ok(exit::DAMAGED);
    }
    Ok(exit::OK)
}

/// Takes the destination's exclusive lock, after clearing what an earlier
/// run killed on this host left behind; then removes that run's temporary files.
fn lock_destination(dest: &Arc<dyn Backend>) -> Result<Lock, Error> {
    if let Some(root) = dest.local_root() {
        // A mirror copied by other tools may lack the ephemeral directories.
        for d in ["locks", "tmp"] {
            let p = root.join(d);
            std::fs::create_dir_all(&p).map_err(|e| Error::io(&p, e))?;
        }
    }
    // A mirror run killed on this host leaves its lock behind; only mirror runs
    // write to a mirror, so such a lock of a process that is gone is removed.
    for (name, info) in sopvault::repo::lock::list(dest.as_ref())? {
        if info.is_some_and(|i| i.command == "mirror" && i.is_stale()) {
            dest.remove_lock(&name)?;
        }
    }
    let lock = Lock::acquire(dest.clone(), true, "mirror")?;
    // Leftovers of an interrupted run; nobody else writes under our exclusive lock.
    dest.clean_tmp()?;
    Ok(lock)
}

/// Remembers a successful run for `--status`; a failure only warns.
fn remember(repo: &Repository, location: String, opts: &MirrorOptions, outcome: &MirrorOutcome) {
    let repo_id = hex::encode(repo.config().repo_id);
    let entry = state::Destination {
        location,
        last_sync: opts.now,
        copied_files: outcome.copied_files,
        copied_bytes: outcome.copied_bytes,
        deleted_files: outcome.deleted_files,
    };
    if let Err(e) = state_dir().and_then(|d| state::record(&d, &repo_id, entry)) {
        eprintln!("sopvault: warning: the mirror is complete, but --status will not know it: {e}");
    }
}

fn print_outcome(
    ctx: &Ctx,
    args: &Args,
    plan: &MirrorPlan,
    outcome: &MirrorOutcome,
) -> Result<(), Error> {
    if args.json {
        print_json(&json!({
            "destination": plan.destination,
            "copied_files": outcome.copied_files,
            "copied_bytes": outcome.copied_bytes,
            "deleted_files": outcome.deleted_files,
            "deleted_bytes": outcome.deleted_bytes,
            "waiting_files": plan.kept.len(),
            "damaged_at_source": outcome.damaged_at_source,
        }))?;
    } else if !ctx.quiet {
        if outcome.copied_files == 0 && outcome.deleted_files == 0 {
            outln!("mirror {} is up to date: nothing copied", plan.destination)?;
        } else {
            outln!(
                "mirror {}: copied {} files ({}), deleted {} files ({})",
                plan.destination,
                outcome.copied_files,
                human_bytes(outcome.copied_bytes),
                outcome.deleted_files,
                human_bytes(outcome.deleted_bytes)
            )?;
        }
    }
    Ok(())
}

fn report_mount(ctx: &Ctx, root: &Path) -> Result<(), Error> {
    let probe = if root.exists() {
        root.to_path_buf()
    } else {
        match root.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        }
    };
    let info = mirror::mount_info(&probe)?;
    if info.is_mount_root && probe == root {
        if !ctx.quiet {
            outln!("{} is the root of a mounted file system", root.display())?;
        }
    } else {
        eprintln!(
            "sopvault: warning: {} is not the root of a mounted file system: it is on the file system mounted at {}; if the mirror belongs on an external disk, check that the disk is mounted",
            root.display(),
            info.mount_root.display()
        );
    }
    Ok(())
}

fn kind_counts(plan: &MirrorPlan) -> String {
    let parts: Vec<String> = [
        (FileKind::Config, "config"),
        (FileKind::Key, "key"),
        (FileKind::Pack, "pack"),
        (FileKind::Index, "index"),
        (FileKind::Snapshot, "snapshot"),
        (FileKind::Prune, "prune record"),
    ]
    .iter()
    .filter_map(|(k, what)| {
        let n = plan.copy_count(*k);
        (n > 0).then(|| format!("{n} {what}"))
    })
    .collect();
    parts.join(", ")
}

fn print_plan_json(plan: &MirrorPlan, dry_run: bool) -> Result<(), Error> {
    let files = |v: &[mirror::FileRef]| -> Vec<serde_json::Value> {
        v.iter()
            .map(|f| json!({"path": f.rel_path(), "size": f.size}))
            .collect()
    };
    print_json(&json!({
        "dry_run": dry_run,
        "source": plan.source,
        "destination": plan.destination,
        "init": plan.state == DestinationState::Empty,
        "copy": files(&plan.copy),
        "copy_bytes": plan.copy_bytes(),
        "delete": files(&plan.delete),
        "delete_bytes": plan.delete_bytes(),
        "kept": plan.kept.iter().map(|k| json!({"path": k.file.rel_path(), "reason": k.reason})).collect::<Vec<_>>(),
        "extra": plan.extra,
    }))
}

fn print_plan(ctx: &Ctx, args: &Args, plan: &MirrorPlan, dry_run: bool) -> Result<(), Error> {
    if args.json {
        return print_plan_json(plan, dry_run);
    }
    if ctx.quiet {
        return Ok(());
    }
    let would = if dry_run { "would " } else { "" };
    if plan.state == DestinationState::Empty {
        outln!("{would}start a new mirror at {}", plan.destination)?;
    }
    if plan.copy.is_empty() {
        if dry_run {
            outln!("nothing to copy: {} is up to date", plan.destination)?;
        }
    } else {
        outln!(
            "{would}copy {} files ({}): {}",
            plan.copy.len(),
            human_bytes(plan.copy_bytes()),
            kind_counts(plan)
        )?;
        if dry_run {
            for f in &plan.copy {
                outln!("  copy {}", f.rel_path())?;
            }
        }
    }
    if !plan.delete.is_empty() {
        outln!(
            "{would}delete {} files ({}) that prune records condemn",
            plan.delete.len(),
            human_bytes(plan.delete_bytes())
        )?;
        if dry_run {
            for f in &plan.delete {
                outln!("  delete {}", f.rel_path())?;
            }
        }
    }
    if plan.extra > 0 {
        outln!(
            "{} files in the mirror are gone from the source without a prune record; they stay",
            plan.extra
        )?;
    }
    if !plan.kept.is_empty() {
        let first = plan
            .next_deletion
            .map(|t| format!("; the first may go from {}", mirror::format_time(t)))
            .unwrap_or_default();
        outln!(
            "{} files condemned by prune stay for now{first}",
            plan.kept.len()
        )?;
        if dry_run {
            for k in &plan.kept {
                outln!("  keep {}: {}", k.file.rel_path(), k.reason)?;
            }
        }
    }
    Ok(())
}

fn verify(ctx: &Ctx, args: &Args, dest_arg: &Path) -> Result<i32, Error> {
    let dest = sopvault::backend::open(dest_arg)?;
    let source = verify_source(ctx, dest.as_ref())?;
    let sample = match &args.sample {
        Some(s) => Sample::Share {
            share: parse_share(s)?,
            day: args.now()?.div_euclid(86400),
        },
        None => Sample::All,
    };
    let report = mirror::verify(
        dest.as_ref(),
        source.as_deref(),
        sample,
        parallel(dest.as_ref()),
        args.download,
    )?;
    if args.json {
        let mut v = serde_json::to_value(&report).expect("report serialises");
        v["ok"] = report.ok().into();
        v["destination"] = dest.location().into();
        print_json(&v)?;
    } else {
        for d in &report.damaged {
            eprintln!("sopvault: damaged: {d}");
        }
        if !ctx.quiet {
            print_verify_report(&report, dest.as_ref(), dest_arg)?;
        }
    }
    Ok(verify_code(&report, dest.as_ref()))
}

/// The source to compare names and sizes with: the repository given, unless
/// it is the mirror itself. No password is needed.
fn verify_source(ctx: &Ctx, dest: &dyn Backend) -> Result<Option<Arc<dyn Backend>>, Error> {
    let Some(p) = &ctx.repo_path else {
        return Ok(None);
    };
    let b = sopvault::backend::open(p)?;
    let same = match (b.local_root(), dest.local_root()) {
        (Some(a), Some(d)) => std::fs::canonicalize(a).ok() == std::fs::canonicalize(d).ok(),
        _ => b.location() == dest.location(),
    };
    if same {
        return Ok(None);
    }
    Repository::probe(b.as_ref())?;
    Ok(Some(b))
}

fn print_verify_report(
    report: &mirror::VerifyReport,
    dest: &dyn Backend,
    dest_arg: &Path,
) -> Result<(), Error> {
    for m in &report.missing {
        outln!("missing: {m}")?;
    }
    for e in &report.extra {
        outln!("extra: {e}")?;
    }
    for s in &report.stray {
        outln!("stray (not a repository file): {s}")?;
    }
    let stored = if report.files_by_stored_checksum > 0 {
        format!(
            ", {} by the SHA-256 checksum the server stored (--download reads them)",
            report.files_by_stored_checksum
        )
    } else {
        String::new()
    };
    outln!(
        "verified {}: {} files ({}); {} files ({}) hashed{stored}{}; {} missing, {} extra, {} damaged",
        dest.location(),
        report.files,
        human_bytes(report.bytes),
        report.files_hashed,
        human_bytes(report.bytes_hashed),
        if report.compared_with_source {
            ", names and sizes compared with the source"
        } else {
            ""
        },
        report.missing.len(),
        report.extra.len(),
        report.damaged.len()
    )?;
    if !report.missing.is_empty() {
        outln!(
            "the mirror is behind: run `sopvault mirror {}` to copy the missing files",
            dest_arg.display()
        )?;
    }
    if !report.extra.is_empty() {
        outln!("extra files are normal for files pruned at the source within the grace period")?;
    }
    Ok(())
}

/// `--verify`'s exit code: damaged files first, then missing ones.
fn verify_code(report: &mirror::VerifyReport, dest: &dyn Backend) -> i32 {
    if !report.ok() {
        eprintln!(
            "sopvault: --verify found {} damaged file(s)",
            report.damaged.len()
        );
        exit::DAMAGED
    } else if !report.missing.is_empty() {
        eprintln!(
            "sopvault: {} is behind: {} file(s) of the source are missing",
            dest.location(),
            report.missing.len()
        );
        exit::INCOMPLETE
    } else {
        exit::OK
    }
}

/// `--status`'s exit code: 10 when a mirror cannot be reached, else 3 when one
/// is behind, else 0.
fn status_code(rows: &[StatusRow]) -> i32 {
    if rows.iter().any(|(_, b)| b.is_err()) {
        exit::NO_REPOSITORY
    } else if rows
        .iter()
        .any(|(_, b)| b.as_ref().is_ok_and(|b| b.files > 0))
    {
        exit::INCOMPLETE
    } else {
        exit::OK
    }
}

/// A remembered destination, and how far behind it is (or why that is unknown).
type StatusRow<'a> = (&'a state::Destination, Result<mirror::Behind, Error>);

fn status(ctx: &Ctx, args: &Args) -> Result<i32, Error> {
    let src = sopvault::backend::open(&ctx.repo_path()?)?;
    Repository::probe(src.as_ref())?;
    let repo_id = repo_id_of(src.as_ref())?;
    let dir = state_dir()?;
    let st = state::load(&dir, &repo_id)?;
    let now = args.now()?;
    let mut rows: Vec<StatusRow> = Vec::new();
    for d in &st.destinations {
        let behind = sopvault::backend::open(Path::new(&d.location)).and_then(|b| {
            Repository::probe(b.as_ref())?;
            mirror::behind(src.as_ref(), b.as_ref())
        });
        rows.push((d, behind));
    }
    if args.json {
        print_status_json(&rows)?;
        return Ok(status_code(&rows));
    }
    if rows.is_empty() {
        outln!(
            "repository {} has no mirrors yet (they are remembered in {})",
            &repo_id[..8],
            state::path(&dir, &repo_id).display()
        )?;
        return Ok(exit::OK);
    }
    let code = status_code(&rows);
    for (d, b) in rows {
        print_status_line(d, b, now)?;
    }
    Ok(code)
}

/// The repository id, read from the single config file's clear header (no password).
fn repo_id_of(src: &dyn Backend) -> Result<String, Error> {
    let configs = src.list(FileKind::Config)?;
    let [(config_name, _)] = configs.as_slice() else {
        return Err(Error::damaged(
            format!("{}/config", src.location()),
            format!("expected exactly one file, found {}", configs.len()),
        ));
    };
    let bytes = src.read(FileKind::Config, config_name)?;
    Ok(hex::encode(sopvault::format::config::Config::peek_repo_id(
        &bytes,
        &format!("config/{config_name}"),
    )?))
}

fn print_status_json(rows: &[StatusRow]) -> Result<(), Error> {
    let v: Vec<serde_json::Value> = rows
        .iter()
        .map(|(d, b)| {
            let mut v = json!({
                "location": d.location,
                "last_sync": chrono::DateTime::from_timestamp(d.last_sync, 0).map(|t| t.to_rfc3339()),
            });
            match b {
                Ok(b) => {
                    v["reachable"] = true.into();
                    v["behind_files"] = b.files.into();
                    v["behind_bytes"] = b.bytes.into();
                    v["extra_files"] = b.extra_files.into();
                    v["extra_bytes"] = b.extra_bytes.into();
                }
                Err(e) => {
                    v["reachable"] = false.into();
                    v["error"] = super::hints::describe(e).into();
                }
            }
            v
        })
        .collect();
    print_json(&serde_json::Value::Array(v))
}

fn print_status_line(
    d: &state::Destination,
    b: Result<mirror::Behind, Error>,
    now: i64,
) -> Result<(), Error> {
    let age = sopvault::ops::retention::format_duration(chrono::Duration::seconds(
        (now - d.last_sync).max(0),
    ));
    let when = format!("last sync {} ({age} ago)", mirror::format_time(d.last_sync));
    match b {
        Ok(b) if b.files == 0 => outln!("{}: {when}; up to date{}", d.location, extra_note(&b))?,
        Ok(b) => outln!(
            "{}: {when}; behind by {} files ({}){}",
            d.location,
            b.files,
            human_bytes(b.bytes),
            extra_note(&b)
        )?,
        Err(e) => outln!(
            "{}: {when}; not reachable now: {}",
            d.location,
            super::hints::describe(&e)
        )?,
    }
    Ok(())
}

fn extra_note(b: &mirror::Behind) -> String {
    if b.extra_files == 0 {
        String::new()
    } else {
        format!(
            "; {} files ({}) pruned at the source still held",
            b.extra_files,
            human_bytes(b.extra_bytes)
        )
    }
}
