//! `sopvault unlock`: remove locks whose process is gone.

use super::Ctx;
use sopvault::Error;

#[derive(clap::Args)]
pub struct Args {
    /// Remove every lock, also those of live processes or other hosts
    #[arg(long)]
    remove_all: bool,
}

pub fn run(ctx: &Ctx, args: Args) -> Result<i32, Error> {
    let repo = ctx.open()?;
    let mut removed = 0;
    for (name, info) in repo.locks()? {
        let stale = info.as_ref().map(|i| i.is_stale()).unwrap_or(false);
        if args.remove_all || stale {
            repo.remove_lock(&name)?;
            removed += 1;
            if !ctx.quiet {
                outln!("removed lock {name}")?;
            }
        } else if let Some(i) = info {
            outln!(
                "kept lock {name}: {} (pid {} on {}) is still running or on another host",
                i.command,
                i.pid,
                i.host
            )?;
        }
    }
    if !ctx.quiet {
        outln!("{removed} lock(s) removed")?;
    }
    Ok(super::exit::OK)
}
