//! `sopvault init`: create a repository.

use super::{password, Ctx};
use sopvault::repo::InitOptions;
use sopvault::{Error, Repository};

#[derive(clap::Args)]
pub struct Args {
    /// zstd compression level for new data (-7 to 19; negative levels are faster and larger)
    #[arg(long, default_value_t = sopvault::format::config::DEFAULT_COMPRESSION_LEVEL, value_parser = clap::value_parser!(i32).range(-7..=19), allow_negative_numbers = true)]
    compression: i32,
}

pub fn run(ctx: &Ctx, args: Args) -> Result<i32, Error> {
    let path = ctx.repo_path()?;
    let pw = password::new_password(true)?;
    let opts = InitOptions {
        compression_level: args.compression,
        ..InitOptions::default()
    };
    let repo = Repository::init(&path, &pw, &opts, &ctx.open_options())?;
    ctx.print_warnings(&repo);
    if !ctx.quiet {
        outln!(
            "created sopvault repository {} at {}",
            &hex::encode(repo.config().repo_id)[..8],
            path.display()
        )?;
        outln!("keep the password safe: without it the data cannot be read")?;
    }
    Ok(super::exit::OK)
}
