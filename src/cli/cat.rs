//! `sopvault cat`: write one file or stream of a snapshot to standard output.

use super::Ctx;
use sopvault::format::tree::NodeKind;
use sopvault::ops::restore::{join_display, resolve_path, write_content};
use sopvault::repo::ListAhead;
use sopvault::sys::writeback::WriteBehind;
use sopvault::Error;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;

#[derive(clap::Args)]
pub struct Args {
    /// Snapshot: latest, SOURCE:latest, a name or an id prefix
    snapshot: String,
    /// Path of a file or stream inside the snapshot (a name as `ls` prints it, `\xNN` escapes included, also works)
    path: std::ffi::OsString,
}

pub fn run(ctx: &Ctx, args: Args) -> Result<i32, Error> {
    let (repo, _lock) = ctx.open_locked_for_one_version(
        sopvault::repo::lock::Access::Read,
        "cat",
        ListAhead::Index,
    )?;
    let (id, snap) = repo.find_snapshot(&args.snapshot)?;
    ctx.warn_if_incomplete(&repo, &id, &snap);
    let index = repo.index()?;
    ctx.print_warnings(&repo);
    let (parts, node) = resolve_path(&repo, &index, &snap.root, args.path.as_bytes())?;
    let node = node.ok_or_else(|| {
        Error::Usage("give the path of a file or stream inside the snapshot".into())
    })?;
    let shown = join_display(&parts);
    let NodeKind::File { content, .. } = &node.kind else {
        return Err(Error::Usage(format!("{shown} is not a regular file")));
    };
    let chunks = repo.content_chunks(&index, content, &shown)?;
    let stdout = std::path::Path::new("standard output");
    // Chunks (64 KiB on average) go straight to the file descriptor: no
    // copy through a buffer, and no scan for line ends by `Stdout`.
    let out = std::io::stdout()
        .as_fd()
        .try_clone_to_owned()
        .map(std::fs::File::from)
        .map_err(|e| Error::io(stdout, e))?;
    // Redirected to a file, the stream leaves the page cache as it is
    // written, as a restore's files do; a pipe or a terminal is left alone.
    let behind = WriteBehind::default();
    let mut out = behind.writer(std::sync::Arc::new(out), stdout);
    let r = write_content(&repo, &index, &chunks, &shown, &mut out, stdout).map(|_| {
        out.finish();
        behind.drain();
    });
    let r = r.and_then(|()| behind.take_error());
    match r {
        Err(Error::Io { path, source }) if path == stdout => Err(super::stdout_error(source)),
        Err(e) => Err(e),
        Ok(()) => Ok(super::exit::OK),
    }
}
