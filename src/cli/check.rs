//! `sopvault check`: verify structure and, optionally, data.

use super::{exit, human_bytes, print_json, Ctx};
use sopvault::ops::check::ReadData;
use sopvault::repo::ListAhead;
use sopvault::Error;

#[derive(clap::Args)]
pub struct Args {
    /// Decrypt and verify every blob
    #[arg(long, conflicts_with = "read_data_subset")]
    read_data: bool,
    /// Decrypt and verify a random share of packs, e.g. 10%
    #[arg(long, value_name = "N%")]
    read_data_subset: Option<String>,
    /// Print the report as JSON
    #[arg(long)]
    json: bool,
}

fn parse_share(s: &str) -> Result<f64, Error> {
    let n: f64 = s.trim().trim_end_matches('%').parse().map_err(|_| {
        Error::Usage(format!(
            "--read-data-subset {s:?}: expected a percentage like 10%"
        ))
    })?;
    if !(n > 0.0 && n <= 100.0) {
        return Err(Error::Usage(format!(
            "--read-data-subset {s:?}: must be above 0% and at most 100%"
        )));
    }
    Ok(n / 100.0)
}

pub fn run(ctx: &Ctx, args: Args) -> Result<i32, Error> {
    let read = match (&args.read_data, &args.read_data_subset) {
        (true, _) => ReadData::All,
        (false, Some(s)) => ReadData::Subset(parse_share(s)?),
        _ => ReadData::None,
    };
    let (repo, _lock) = ctx.open_locked(
        sopvault::repo::lock::Access::Read,
        "check",
        ListAhead::Nothing,
    )?;
    ctx.print_warnings(&repo);
    let report = sopvault::ops::check::check(&repo, read)?;
    if args.json {
        let mut v = serde_json::to_value(&report).expect("report serialises");
        v["ok"] = report.ok().into();
        print_json(&v)?;
    } else {
        for w in &report.warnings {
            eprintln!("sopvault: warning: {w}");
        }
        for p in &report.problems {
            eprintln!("sopvault: damaged: {}: {}", p.object, p.message);
            for a in &p.affects {
                eprintln!("    affects {a}");
            }
        }
        if !ctx.quiet {
            outln!(
                "checked {} snapshots, {} trees, {} index files, {} packs; {} files ({}) hashed; {} blobs decrypted and verified",
                report.snapshots,
                report.trees,
                report.index_files,
                report.packs,
                report.files_hashed,
                human_bytes(report.bytes_hashed),
                report.blobs_verified
            )?;
            if report.ok() {
                outln!("no errors found")?;
            }
        }
    }
    if report.ok() {
        Ok(exit::OK)
    } else {
        eprintln!("sopvault: check found {} problem(s)", report.problems.len());
        Ok(exit::DAMAGED)
    }
}
