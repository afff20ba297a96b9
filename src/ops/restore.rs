//! The read side: find nodes in a snapshot, list them, write files out.
//!
//! Restore walks the trees, creating directories, and queues plain files:
//! they are written on every core in batches of up to 1024, whatever
//! directories they are in, each with its metadata (owner names looked up
//! once per name); a file's chunks are fetched with parallel reads and
//! written in order, each range handed to [`crate::sys::writeback`] so that the
//! restore keeps only a small window of its data in the page cache.
//! Directory metadata is applied last so that creating children does not
//! disturb the recorded mtimes.
//! Every chunk is authenticated and its id recomputed; a damaged chunk fails
//! that one file with an error naming the pack and the file, the partial file
//! is removed, and the restore goes on with the rest. A directory whose tree
//! cannot be read is reported the same way (it and everything below it) and
//! the rest of the snapshot is restored; [`walk`] lists around it likewise.

use crate::error::{Error, Result};
use crate::format::tree::{ChunkRef, Node, NodeKind, Tree};
use crate::ids::ChunkId;
use crate::index::Index;
use crate::repo::read::{contiguous_runs, sealed_in_run};
use crate::repo::Repository;
use crate::sys::fsmeta;
use crate::sys::writeback::WriteBehind;
use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Splits a snapshot path (`/var/www/x`, `siakad.sql`) into components.
/// Paths are bytes: a name need not be UTF-8.
pub fn split_path(p: &[u8]) -> Vec<Vec<u8>> {
    p.split(|b| *b == b'/')
        .filter(|c| !c.is_empty() && *c != b".")
        .map(<[u8]>::to_vec)
        .collect()
}

/// A path for messages: its names escaped ([`crate::escape`]).
pub fn join_display(parts: &[Vec<u8>]) -> String {
    let mut s = String::new();
    for p in parts {
        s.push('/');
        s.push_str(&crate::escape::escape(p));
    }
    if s.is_empty() {
        s.push('/');
    }
    s
}

/// Finds the node at `path` below the tree `root`; `None` for the root itself.
pub fn find_node(
    repo: &Repository,
    index: &Index,
    root: &ChunkId,
    path: &[u8],
) -> Result<Option<Node>> {
    Ok(resolve_path(repo, index, root, path)?.1)
}

/// Finds the node at `path` and the exact names that lead to it. A
/// component that names nothing as given is tried unescaped
/// ([`crate::escape::unescape`]), so a name copied from `ls` (`caf\xe9`)
/// finds the file whose name is not UTF-8.
pub fn resolve_path(
    repo: &Repository,
    index: &Index,
    root: &ChunkId,
    path: &[u8],
) -> Result<(Vec<Vec<u8>>, Option<Node>)> {
    let mut parts = split_path(path);
    let mut tree = repo.load_tree(index, root, "/")?;
    let mut node = None;
    for i in 0..parts.len() {
        let n = match tree.find(&parts[i]) {
            Some(n) => n.clone(),
            None => {
                let raw = crate::escape::unescape(&parts[i]);
                let n = tree.find(&raw).cloned().ok_or_else(|| {
                    Error::Usage(format!(
                        "{} is not in this snapshot",
                        join_display(&parts[..=i])
                    ))
                })?;
                parts[i] = raw;
                n
            }
        };
        if i + 1 < parts.len() {
            match &n.kind {
                NodeKind::Dir { tree: t } => {
                    tree = repo.load_tree(index, t, &join_display(&parts[..=i]))?
                }
                _ => {
                    return Err(Error::Usage(format!(
                        "{} is not a directory",
                        join_display(&parts[..=i])
                    )))
                }
            }
        }
        node = Some(n);
    }
    Ok((parts, node))
}

/// Calls `f(path, node)` for every node below `tree`, depth first, in name
/// order, with its path in the snapshot as bytes (`prefix` is the path of
/// `tree`, empty for the root). A directory whose tree is damaged is passed
/// to `damaged(path, error)` and skipped (with everything below it); the
/// walk goes on.
pub fn walk(
    repo: &Repository,
    index: &Index,
    tree: &Tree,
    prefix: &[u8],
    f: &mut dyn FnMut(&[u8], &Node) -> Result<()>,
    damaged: &mut dyn FnMut(&[u8], Error),
) -> Result<()> {
    for n in &tree.nodes {
        let mut path = prefix.strip_suffix(b"/").unwrap_or(prefix).to_vec();
        path.push(b'/');
        path.extend_from_slice(&n.name);
        f(&path, n)?;
        if let NodeKind::Dir { tree: t } = &n.kind {
            match repo.load_tree(index, t, &crate::escape::escape(&path)) {
                Ok(sub) => walk(repo, index, &sub, &path, f, damaged)?,
                Err(e) if e.kind() == crate::ErrorKind::Damaged => damaged(&path, e),
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

/// Most bytes one coalesced read fetches.
const MAX_RUN: u64 = 2 * 1024 * 1024;
/// Chunks resolved and fetched per step; bounds memory for any file size.
const WINDOW: usize = 64;

/// Writes a file's content to `out`, verifying every chunk. Chunks stored
/// back to back in one pack are fetched with one read per run; runs are read,
/// decrypted and decompressed in parallel, and written in order.
///
/// `path` is the file's path in the snapshot (named in errors about its
/// chunks), `dest` what `out` writes to (named in errors about writing).
pub fn write_content(
    repo: &Repository,
    index: &Index,
    chunks: &[ChunkRef],
    path: &str,
    out: &mut (dyn Write + Send),
    dest: &Path,
) -> Result<u64> {
    let mut written = 0u64;
    let mut pending: Vec<Vec<Vec<u8>>> = Vec::new();
    let write = |out: &mut (dyn Write + Send), data: Vec<Vec<Vec<u8>>>| -> Result<u64> {
        let mut n = 0;
        for d in data.iter().flatten() {
            out.write_all(d).map_err(|e| Error::io(dest, e))?;
            n += d.len() as u64;
        }
        Ok(n)
    };
    // Write window k while window k+1 is fetched, decrypted and checked.
    for window in chunks.chunks(WINDOW) {
        crate::interrupt::check()?;
        let previous = std::mem::take(&mut pending);
        let (w, fetched) = rayon::join(
            || write(out, previous),
            || fetch_window(repo, index, window, path),
        );
        written += w?;
        pending = fetched?;
    }
    Ok(written + write(out, pending)?)
}

/// Fetches one window of chunks: one read per run of chunks contiguous in a pack.
fn fetch_window(
    repo: &Repository,
    index: &Index,
    window: &[ChunkRef],
    path: &str,
) -> Result<Vec<Vec<Vec<u8>>>> {
    use rayon::prelude::*;
    let locs = window
        .iter()
        .map(|c| {
            index.lookup(&c.id).ok_or_else(|| Error::MissingChunk {
                chunk: c.id,
                needed_by: path.to_string(),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    contiguous_runs(&locs, MAX_RUN)
        .par_iter()
        .map(|range| {
            let run = &locs[range.clone()];
            let bytes = repo.read_sealed_run(run)?;
            run.par_iter()
                .zip(window[range.clone()].par_iter())
                .map(|(loc, c)| {
                    let data = repo.open_blob(index, loc, sealed_in_run(run, &bytes, loc))?;
                    if data.len() != c.len as usize {
                        return Err(Error::damaged(
                            format!("chunk {} of {path}", c.id.short()),
                            format!("expected {} bytes, found {}", c.len, data.len()),
                        ));
                    }
                    Ok(data)
                })
                .collect::<Result<Vec<_>>>()
        })
        .collect::<Result<Vec<_>>>()
        .map_err(|e| annotate(e, path))
}

fn annotate(e: Error, path: &str) -> Error {
    match e {
        Error::BlobDamaged {
            chunk,
            pack,
            offset,
            reason,
        } => Error::BlobDamaged {
            chunk,
            pack,
            offset,
            reason: format!("{reason}; needed by {path}"),
        },
        e => e,
    }
}

#[derive(Clone, Debug, Default)]
pub struct RestoreOptions {
    pub target: PathBuf,
    /// Snapshot paths to restore (with everything below them), as bytes;
    /// empty means all.
    pub includes: Vec<Vec<u8>>,
    /// Set owners (only meaningful as root).
    pub owners: bool,
}

#[derive(Clone, Debug, Default)]
pub struct RestoreReport {
    pub files: u64,
    pub dirs: u64,
    pub bytes: u64,
    /// Files and directories that could not be restored, one line each with
    /// the path and the reason.
    pub errors: Vec<String>,
    /// Metadata that could not be applied.
    pub warnings: Vec<String>,
}

struct Restorer<'a> {
    repo: &'a Repository,
    index: &'a Index,
    includes: Vec<Vec<Vec<u8>>>,
    links: HashMap<(u64, u64), PathBuf>,
    report: RestoreReport,
    dir_meta: Vec<(PathBuf, Node)>,
    owners: Option<fsmeta::Owners>,
    /// Plain files found by the walk, written in parallel in batches of
    /// [`FILE_BATCH`] whatever directories they are in.
    files: Vec<(Node, PathBuf, String)>,
    /// Keeps what the files wrote from piling up in the page cache.
    behind: WriteBehind,
}

/// A file's bytes, and what of its metadata could not be applied (or the
/// error that ends the restore, as for any entry).
type Written = (u64, Result<Vec<String>>);

/// Plain files written in parallel at a time: enough to keep every core
/// busy across many small directories, few enough to bound the nodes held.
const FILE_BATCH: usize = 1024;

/// Restores the tree `root` into `opts.target`.
pub fn restore(
    repo: &Repository,
    index: &Index,
    root: &ChunkId,
    opts: &RestoreOptions,
) -> Result<RestoreReport> {
    std::fs::create_dir_all(&opts.target).map_err(|e| Error::io(&opts.target, e))?;
    let mut r = Restorer {
        repo,
        index,
        includes: Vec::new(),
        links: HashMap::new(),
        report: RestoreReport::default(),
        dir_meta: Vec::new(),
        owners: opts.owners.then(fsmeta::Owners::default),
        files: Vec::new(),
        behind: WriteBehind::default(),
    };
    // Each include must exist; it selects the exact names it resolved to.
    for inc in &opts.includes {
        let (parts, _) = resolve_path(repo, index, root, inc)?;
        r.includes.push(parts);
    }
    let tree = repo.load_tree(index, root, "/")?;
    r.dir(&tree, &opts.target.clone(), &mut Vec::new())?;
    r.files_in_parallel()?;
    r.behind.drain();
    r.behind.take_error()?;
    // Directory metadata last, deepest first.
    for (path, node) in std::mem::take(&mut r.dir_meta).into_iter().rev() {
        let w = fsmeta::apply(&path, &node, r.owners.as_ref())?;
        r.report.warnings.extend(w);
    }
    Ok(r.report)
}

impl Restorer<'_> {
    /// 0: not selected; 1: an ancestor of a selected path; 2: selected.
    fn selection(&self, parts: &[Vec<u8>]) -> u8 {
        if self.includes.is_empty() {
            return 2;
        }
        let mut best = 0;
        for inc in &self.includes {
            if parts.len() >= inc.len() && parts[..inc.len()] == inc[..] {
                return 2;
            }
            if inc.len() > parts.len() && inc[..parts.len()] == parts[..] {
                best = 1;
            }
        }
        best
    }

    fn dir(&mut self, tree: &Tree, target: &Path, parts: &mut Vec<Vec<u8>>) -> Result<()> {
        // Plain files are queued and written in parallel batches; hard-linked
        // ones go in order, so a link always finds its first name.
        for node in &tree.nodes {
            crate::interrupt::check()?;
            parts.push(node.name.clone());
            let sel = self.selection(parts);
            if sel > 0 {
                let path = target.join(std::ffi::OsStr::from_bytes(&node.name));
                let shown = join_display(parts);
                match &node.kind {
                    NodeKind::Dir { tree: t } => match self.repo.load_tree(self.index, t, &shown) {
                        Ok(sub) => {
                            make_dir(&path)?;
                            self.dir(&sub, &path, parts)?;
                            self.report.dirs += 1;
                            self.dir_meta.push((path, node.clone()));
                        }
                        // Nothing below it can be found: report it, restore the rest.
                        Err(e) if e.kind() == crate::ErrorKind::Damaged => {
                            self.report.errors.push(format!(
                                "{shown}: directory not restored, nor anything below it: {e}"
                            ));
                        }
                        Err(e) => return Err(e),
                    },
                    NodeKind::File { .. } if sel == 2 && !is_hard_linked(node) => {
                        self.files.push((node.clone(), path, shown));
                        if self.files.len() >= FILE_BATCH {
                            self.files_in_parallel()?;
                        }
                    }
                    _ if sel == 2 => self.leaf(node, &path, &shown)?,
                    _ => {}
                }
            }
            parts.pop();
        }
        Ok(())
    }

    /// Writes the queued files on every core, each with its metadata. After
    /// a file fails for want of space or an interruption, the files not yet
    /// started are left alone and that error ends the restore.
    fn files_in_parallel(&mut self) -> Result<()> {
        use rayon::prelude::*;
        use std::sync::atomic::{AtomicBool, Ordering};
        let batch = std::mem::take(&mut self.files);
        let stop = AtomicBool::new(false);
        let this = &*self;
        // Per file: None if skipped, else bytes written and metadata warnings.
        let results: Vec<Option<Result<Written>>> = batch
            .par_iter()
            .map(|(node, path, shown)| {
                if stop.load(Ordering::Relaxed) {
                    return None;
                }
                let r = this.file_data(node, path, shown).map(|(n, file)| {
                    (
                        n,
                        fsmeta::apply_to_file(&file, path, node, this.owners.as_ref()),
                    )
                });
                if matches!(r, Err(Error::Interrupted) | Err(Error::NoSpace { .. })) {
                    stop.store(true, Ordering::Relaxed);
                }
                Some(r)
            })
            .collect();
        let mut end = Ok(());
        for ((_, path, shown), r) in batch.iter().zip(results) {
            let Some(r) = r else { continue };
            let (r, meta) = match r {
                Ok((n, meta)) => (Ok(n), meta),
                Err(e) => (Err(e), Ok(Vec::new())),
            };
            // A file whose data is written stays, even if its metadata
            // cannot be set: that error ends the restore, as before.
            match self.settle(r, path, shown).and(meta) {
                Ok(warnings) => self.report.warnings.extend(warnings),
                Err(e) => {
                    if end.is_ok() {
                        end = Err(e);
                    }
                }
            }
        }
        // A file whose writeback failed (its bytes may not be on disk) ends
        // the restore, like a file that ran out of space.
        end.and(self.behind.take_error())
    }

    /// Writes a regular file's data (clearing whatever is in the way), and
    /// checks the size. The file stays open for its metadata.
    fn file_data(&self, node: &Node, path: &Path, shown: &str) -> Result<(u64, Arc<File>)> {
        let NodeKind::File { content, .. } = &node.kind else {
            unreachable!("only regular files are written as data")
        };
        let (n, file) = self.file(content, path, shown)?;
        if n != node.size() {
            return Err(Error::damaged(
                shown,
                format!("tree says {} bytes, chunks hold {n}", node.size()),
            ));
        }
        Ok((n, file))
    }

    /// Records a file's outcome. A damaged file is removed and reported, and
    /// the restore goes on; running out of space or an interruption ends it.
    fn settle(&mut self, r: Result<u64>, path: &Path, shown: &str) -> Result<bool> {
        match r {
            Ok(n) => {
                self.report.bytes += n;
                self.report.files += 1;
                Ok(true)
            }
            Err(e @ Error::Interrupted) | Err(e @ Error::NoSpace { .. }) => {
                let _ = std::fs::remove_file(path);
                Err(e)
            }
            Err(e) => {
                let _ = std::fs::remove_file(path);
                self.report
                    .errors
                    .push(format!("{shown}: not restored: {e}"));
                Ok(false)
            }
        }
    }

    fn leaf(&mut self, node: &Node, path: &Path, shown: &str) -> Result<()> {
        remove_existing(path)?;
        match &node.kind {
            NodeKind::File { .. } => {
                let key = (node.device, node.inode);
                if is_hard_linked(node) {
                    if let Some(first) = self.links.get(&key) {
                        std::fs::hard_link(first, path).map_err(|e| Error::io(path, e))?;
                        self.report.files += 1;
                        return Ok(());
                    }
                }
                let file = match self.file_data(node, path, shown) {
                    Ok((n, file)) => {
                        self.settle(Ok(n), path, shown)?;
                        file
                    }
                    Err(e) => {
                        self.settle(Err(e), path, shown)?;
                        return Ok(());
                    }
                };
                if is_hard_linked(node) {
                    self.links.insert(key, path.to_path_buf());
                }
                let w = fsmeta::apply_to_file(&file, path, node, self.owners.as_ref())?;
                self.report.warnings.extend(w);
                return Ok(());
            }
            NodeKind::Symlink { target } => {
                std::os::unix::fs::symlink(std::ffi::OsStr::from_bytes(target), path)
                    .map_err(|e| Error::io(path, e))?;
            }
            NodeKind::Fifo | NodeKind::CharDevice { .. } | NodeKind::BlockDevice { .. } => {
                if let Err(e) = fsmeta::make_special(path, node) {
                    self.report
                        .warnings
                        .push(format!("{shown}: not created: {e}"));
                    return Ok(());
                }
            }
            NodeKind::Socket => return Ok(()),
            NodeKind::Dir { .. } => unreachable!("directories are handled by the caller"),
        }
        let w = fsmeta::apply(path, node, self.owners.as_ref())?;
        self.report.warnings.extend(w);
        Ok(())
    }

    fn file(
        &self,
        content: &crate::format::tree::Content,
        path: &Path,
        shown: &str,
    ) -> Result<(u64, Arc<File>)> {
        use std::os::unix::fs::OpenOptionsExt;
        let chunks = self.repo.content_chunks(self.index, content, shown)?;
        let create = || {
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
        };
        // `create_new` follows no symlink; whatever is in the way is
        // removed (a directory is an error) and the file created again.
        let f = match create() {
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                remove_existing(path)?;
                create()
            }
            r => r,
        }
        .map_err(|e| Error::io(path, e))?;
        // Chunks are written whole (64 KiB on average), so no buffer.
        let f = Arc::new(f);
        let mut out = self.behind.writer(Arc::clone(&f), path);
        let n = write_content(self.repo, self.index, &chunks, shown, &mut out, path)?;
        out.finish();
        Ok((n, f))
    }
}

fn is_hard_linked(node: &Node) -> bool {
    node.links > 1 && node.inode != 0
}

/// Creates a directory, or keeps a real one that is there. Anything else in
/// the way (a symlink above all: following it would write outside the
/// target) is replaced, as tar does.
fn make_dir(path: &Path) -> Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(md) if md.is_dir() => return Ok(()),
        Ok(_) => std::fs::remove_file(path).map_err(|e| Error::io(path, e))?,
        Err(_) => {}
    }
    std::fs::create_dir(path).map_err(|e| Error::io(path, e))
}

fn remove_existing(path: &Path) -> Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(md) if md.is_dir() => Err(Error::Usage(format!(
            "{}: a directory is in the way of a file being restored",
            path.display()
        ))),
        Ok(_) => std::fs::remove_file(path).map_err(|e| Error::io(path, e)),
        Err(_) => Ok(()),
    }
}
