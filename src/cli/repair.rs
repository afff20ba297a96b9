//! `sopvault repair index`: rebuild the index from the packs' footers.

use super::{exit, Ctx};
use sopvault::ops::repair::PackSource;
use sopvault::repo::ListAhead;
use sopvault::Error;

#[derive(clap::Subcommand)]
pub enum RepairCommand {
    /// Rebuild the index from every pack's footer, replacing every index file (also damaged ones)
    Index(IndexArgs),
}

#[derive(clap::Args)]
pub struct IndexArgs {
    /// Print what would be written and deleted; change nothing
    #[arg(long, short = 'n')]
    dry_run: bool,
}

pub fn run(ctx: &Ctx, cmd: RepairCommand) -> Result<i32, Error> {
    match cmd {
        RepairCommand::Index(a) => index(ctx, a),
    }
}

fn index(ctx: &Ctx, args: IndexArgs) -> Result<i32, Error> {
    let access = if args.dry_run {
        sopvault::repo::lock::Access::PrunePlan
    } else {
        sopvault::repo::lock::Access::Prune
    };
    let (repo, mut lock) = ctx.open_locked(access, "repair index", ListAhead::Nothing)?;
    ctx.print_notices(&repo);
    for n in lock.take_reserve("repair index")? {
        eprintln!("sopvault: warning: {n}");
    }
    let plan = sopvault::ops::repair::plan_index(&repo)?;
    for (id, why) in &plan.damaged_index_files {
        eprintln!("sopvault: damaged index file index/{}: {why}", id.to_hex());
    }
    for (pack, _, source) in &plan.packs {
        if let PackSource::OldIndex(why) = source {
            eprintln!(
                "sopvault: warning: packs/{}: {why}; indexed from an undamaged index file instead",
                pack.to_hex()
            );
        }
    }
    let unindexed: Vec<_> = plan.unindexed().collect();
    for (pack, why) in &unindexed {
        eprintln!(
            "sopvault: packs/{}: {why}; its blobs stay unindexed",
            pack.to_hex()
        );
    }
    if !ctx.quiet {
        println!(
            "index: {} pack(s) hold {} blob(s); write {} new index file(s) superseding {} old one(s) ({} damaged), then delete those",
            plan.packs.len(),
            plan.entries,
            plan.new_index_files(),
            plan.old_index_files.len(),
            plan.damaged_index_files.len()
        );
    }
    if args.dry_run {
        if !ctx.quiet {
            println!("dry run: nothing was changed");
        }
    } else {
        let written = sopvault::ops::repair::execute_index(&repo, &plan)?;
        if !ctx.quiet {
            println!(
                "wrote {} index file(s), deleted {} old one(s)",
                written.len(),
                plan.old_index_files.len()
            );
        }
    }
    ctx.print_warnings(&repo);
    Ok(if unindexed.is_empty() {
        exit::OK
    } else {
        exit::DAMAGED
    })
}
