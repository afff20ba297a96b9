//! `sopvault snapshot`: back up paths and dump streams into one snapshot.

use super::{exit, human_bytes, print_json, Ctx};
use sopvault::format::manifest::Snapshot;
use sopvault::ops::snapshot::{SnapshotOptions, SnapshotOutcome, StreamInput, StreamSpec};
use sopvault::repo::ListAhead;
use sopvault::Error;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// Name of what is backed up (groups snapshots; the name's prefix)
    #[arg(long, required = true)]
    source: String,
    /// Store standard input as a file NAME at the snapshot's root
    #[arg(long, value_name = "NAME")]
    stdin: Option<String>,
    /// Run COMMAND with `sh -c` and store its standard output as NAME
    #[arg(long, value_name = "NAME=COMMAND")]
    stream: Vec<String>,
    /// Add a tag (repeatable)
    #[arg(long)]
    tag: Vec<String>,
    /// Exclude paths matching GLOB (a name at any depth, or an absolute path when it has '/')
    #[arg(long, value_name = "GLOB")]
    exclude: Vec<std::ffi::OsString>,
    /// Read exclude patterns from a file, one per line ('#' comments)
    #[arg(long, value_name = "FILE")]
    exclude_file: Vec<PathBuf>,
    /// Do not cross file system boundaries
    #[arg(long, short = 'x')]
    one_file_system: bool,
    /// Record this time (RFC 3339, e.g. 2026-11-01T02:00:00+07:00) instead of now
    #[arg(long, value_name = "RFC3339")]
    time: Option<String>,
    /// Read all files even if the parent snapshot says they are unchanged
    #[arg(long)]
    force: bool,
    /// Store no changed chunk as a delta against its version in the parent snapshot
    #[arg(long)]
    no_delta: bool,
    /// Accept a stream (--stdin, --stream) that produces no bytes instead of failing
    #[arg(long)]
    allow_empty: bool,
    /// Warn about a stream smaller than RATIO times its size in the parent snapshot (0: never)
    #[arg(long, value_name = "RATIO", default_value_t = 0.5)]
    shrink_warn: f64,
    /// Print the result as JSON
    #[arg(long)]
    json: bool,
    /// Files and directories to back up
    paths: Vec<PathBuf>,
}

pub fn run(ctx: &Ctx, args: Args) -> Result<i32, Error> {
    let opts = options(&args)?;
    sopvault::ops::snapshot::validate_name("source", &opts.source)?;
    // Directories are read while the passphrase's key is being derived.
    let prescan = sopvault::ops::snapshot::prescan(&opts, &ctx.repo_path()?);
    let (repo, _lock) = ctx.open_locked(
        sopvault::repo::lock::Access::Write,
        "snapshot",
        ListAhead::Index,
    )?;
    let bar = super::progress::Bar::new(!ctx.quiet && !args.json);
    let out = sopvault::ops::snapshot::run(&repo, &opts, &bar, prescan);
    bar.finish();
    ctx.print_warnings(&repo);
    let out = out?;
    warn_shrunk(&out.snapshot);
    if args.json {
        let mut v = super::snapshots::snapshot_json(&out.id, &out.snapshot);
        v["packs_written"] = out.store.packs.into();
        v["chunks_delta"] = out.store.blobs_delta.into();
        print_json(&v)?;
    } else if !ctx.quiet {
        print_summary(&out)?;
    }
    let s = &out.snapshot;
    if !s.complete {
        eprintln!(
            "sopvault: warning: snapshot {} is incomplete: {} path(s) could not be read",
            out.id.short(),
            s.summary.errors.len()
        );
        return Ok(exit::INCOMPLETE);
    }
    Ok(exit::OK)
}

/// The snapshot's options from the command line.
fn options(args: &Args) -> Result<SnapshotOptions, Error> {
    let streams = stream_specs(args)?;
    let excludes = excludes(args)?;
    let time = super::parse_time(args.time.as_deref())?;
    if !(0.0..=1.0).contains(&args.shrink_warn) {
        return Err(Error::Usage(format!(
            "--shrink-warn {}: give a share of the parent's size from 0 to 1 (0.5: under half)",
            args.shrink_warn
        )));
    }
    Ok(SnapshotOptions {
        source: args.source.clone(),
        tags: args.tag.clone(),
        paths: args.paths.clone(),
        streams,
        excludes,
        one_file_system: args.one_file_system,
        time,
        force: args.force,
        no_delta: args.no_delta,
        allow_empty: args.allow_empty,
        shrink_warn: args.shrink_warn,
    })
}

/// The streams of `--stream NAME=COMMAND` (in order), then `--stdin NAME`.
fn stream_specs(args: &Args) -> Result<Vec<StreamSpec>, Error> {
    let mut streams = Vec::new();
    for s in &args.stream {
        let (name, cmd) = s
            .split_once('=')
            .ok_or_else(|| Error::Usage(format!("--stream {s:?}: expected NAME=COMMAND")))?;
        if cmd.trim().is_empty() {
            return Err(Error::Usage(format!(
                "--stream {s:?}: the command is empty"
            )));
        }
        streams.push(StreamSpec {
            name: name.to_string(),
            input: StreamInput::Command(cmd.to_string()),
        });
    }
    if let Some(n) = &args.stdin {
        use std::io::IsTerminal;
        if std::io::stdin().is_terminal() {
            return Err(Error::Usage(format!(
                "--stdin {n}: standard input is a terminal; pipe the dump in (e.g. `mysqldump db | sopvault snapshot --stdin {n} ...`)"
            )));
        }
        streams.push(StreamSpec {
            name: n.clone(),
            input: StreamInput::Stdin,
        });
    }
    Ok(streams)
}

/// `--exclude` patterns, then those of each `--exclude-file`, line by line.
fn excludes(args: &Args) -> Result<Vec<std::ffi::OsString>, Error> {
    let mut excludes = args.exclude.clone();
    for f in &args.exclude_file {
        // Bytes, not text: a name in another encoding is a valid pattern.
        let bytes = std::fs::read(f).map_err(|e| Error::Usage(format!("{}: {e}", f.display())))?;
        excludes.extend(
            bytes
                .split(|b| *b == b'\n')
                .map(|line| {
                    let line = line.strip_suffix(b"\r").unwrap_or(line);
                    std::os::unix::ffi::OsStrExt::from_bytes(line)
                })
                .map(|l: &std::ffi::OsStr| l.to_os_string()),
        );
    }
    Ok(excludes)
}

/// Warns about each stream that shrank below `--shrink-warn` of its size in the parent.
fn warn_shrunk(s: &Snapshot) {
    for r in &s.streams {
        if let Some(before) = r.shrunk_from {
            eprintln!(
                "sopvault: warning: stream {:?} is {}, {:.0}% of its {} in the parent snapshot {}; a dump that shrank this much may be a failed one",
                r.name,
                human_bytes(r.bytes),
                r.bytes as f64 * 100.0 / before as f64,
                human_bytes(before),
                s.parent.map(|p| p.short()).unwrap_or_default()
            );
        }
    }
}

/// The three lines a snapshot prints: its name, what was read, what was stored.
fn print_summary(out: &SnapshotOutcome) -> Result<(), Error> {
    let s = &out.snapshot;
    outln!("snapshot {} saved as {}", out.id.short(), s.name)?;
    let sum = &s.summary;
    outln!(
        "  {} files ({} unchanged), {} dirs, {} streams; {} in total, {} read",
        // The summary counts streams as files too; show them apart.
        sum.files.saturating_sub(s.streams.len() as u64),
        sum.files_unchanged,
        sum.dirs,
        s.streams.len(),
        human_bytes(sum.bytes_total),
        human_bytes(sum.bytes_read)
    )?;
    outln!(
        "  {} new in {} chunks ({} as deltas), {} stored after compression; {:.1} s",
        human_bytes(sum.bytes_new),
        sum.chunks_new,
        out.store.blobs_delta,
        human_bytes(sum.bytes_stored),
        sum.duration_ms as f64 / 1000.0
    )?;
    Ok(())
}
