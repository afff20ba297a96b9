//! The archiver: walks the path tree and the directories below it, reuses
//! what the parent snapshot says is unchanged, chunks the rest into the
//! store ([`store_content`]), and builds one tree per directory. Streams
//! are read by [`super::streams`] through the same [`store_content`].

use super::options::SnapshotOptions;
use super::paths::VNode;
use crate::blob::BlobKind;
use crate::chunker::Chunker;
use crate::error::{Error, Result};
use crate::format::manifest::Summary;
use crate::format::tree::{
    ChunkList, ChunkRef, Content, ListRef, Node, NodeKind, Tree, INLINE_CHUNKS, LIST_CHUNKS_WRITTEN,
};
use crate::ids::ChunkId;
use crate::index::Index;
use crate::ops::progress::Progress;
use crate::repo::Repository;
use crate::sys::files;
use crate::sys::fsmeta::{self, NameCache};
use crate::sys::walk::{self, Excludes, Prescan};
use crate::write::delta::ParentCursor;
use crate::write::parent::{self, ParentTrees};
use crate::write::store::BlobStore;
use sha2::Digest;
use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Collects chunk refs; long files spill into chunk-list blobs.
struct ContentBuilder {
    refs: Vec<ChunkRef>,
    lists: Vec<ListRef>,
}

impl ContentBuilder {
    fn new() -> Self {
        ContentBuilder {
            refs: Vec::new(),
            lists: Vec::new(),
        }
    }
    fn push(&mut self, store: &mut BlobStore<'_>, r: ChunkRef) -> Result<()> {
        if self.refs.len() == INLINE_CHUNKS {
            // A long file: room for a whole list, allocated once and reused.
            self.refs.reserve_exact(LIST_CHUNKS_WRITTEN - INLINE_CHUNKS);
        }
        self.refs.push(r);
        if self.refs.len() >= LIST_CHUNKS_WRITTEN {
            self.spill(store)?;
        }
        Ok(())
    }
    fn spill(&mut self, store: &mut BlobStore<'_>) -> Result<()> {
        let list = ChunkList {
            chunks: std::mem::take(&mut self.refs),
        };
        let bytes = list.chunks.iter().map(|c| c.len as u64).sum();
        let n = list.chunks.len() as u32;
        let (id, _) = store.add(BlobKind::ChunkList, &list.encode())?;
        self.refs = list.chunks;
        self.refs.clear();
        self.lists.push(ListRef {
            id,
            chunks: n,
            bytes,
        });
        Ok(())
    }
    fn finish(mut self, store: &mut BlobStore<'_>) -> Result<Content> {
        if self.lists.is_empty() && self.refs.len() <= INLINE_CHUNKS {
            return Ok(Content::Chunks(self.refs));
        }
        if !self.refs.is_empty() {
            self.spill(store)?;
        }
        Ok(Content::Lists(self.lists))
    }
}

pub(super) struct Archiver<'a, 'r> {
    pub(super) repo: &'r Repository,
    pub(super) index: &'r Index,
    pub(super) store: BlobStore<'r>,
    pub(super) chunker: Chunker,
    pub(super) progress: &'a dyn Progress,
    pub(super) names: NameCache,
    pub(super) excludes: Excludes,
    /// Directory listings read ahead; dropped at the first surprise.
    pub(super) prescan: Option<Prescan>,
    /// The parent snapshot's trees read ahead.
    pub(super) parents: Option<ParentTrees>,
    pub(super) one_file_system: bool,
    pub(super) force: bool,
    pub(super) delta: bool,
    pub(super) summary: Summary,
    pub(super) hardlinks: HashMap<(u64, u64), (u64, Content)>,
}

impl<'a, 'r> Archiver<'a, 'r> {
    /// An archiver for one run: a store over `index`, and the walk's state.
    pub(super) fn new(
        repo: &'r Repository,
        opts: &SnapshotOptions,
        index: &'r Index,
        progress: &'a dyn Progress,
        walk: (Excludes, Option<Prescan>, Option<ParentTrees>),
    ) -> Self {
        let (excludes, prescan, parents) = walk;
        Archiver {
            repo,
            index,
            store: BlobStore::new(repo, index),
            chunker: repo.chunker(),
            progress,
            names: NameCache::default(),
            excludes,
            prescan,
            parents,
            one_file_system: opts.one_file_system,
            force: opts.force,
            // Only a repository that announces the delta codec gets deltas, so
            // that readers which predate it refuse it cleanly instead of failing on codec 2.
            delta: !opts.no_delta
                && repo
                    .config()
                    .features
                    .iter()
                    .any(|f| f == crate::format::config::FEATURE_DELTA),
            summary: Summary::default(),
            hardlinks: HashMap::new(),
        }
    }
}

impl Archiver<'_, '_> {
    pub(super) fn error(&mut self, msg: String) {
        self.progress.warn(&msg);
        self.summary.errors.push(msg);
    }

    fn parent_subtree(&mut self, node: Option<&Node>, path: &Path) -> Option<Tree> {
        let Some(NodeKind::Dir { tree }) = node.map(|n| &n.kind) else {
            return None;
        };
        if let Some(ahead) = self.parents.as_mut() {
            if let Some(t) = ahead.take(&parent::components(path), tree) {
                return Some(t);
            }
        }
        self.repo
            .load_tree(self.index, tree, &path.display().to_string())
            .ok()
    }

    /// The id of a directory's new `tree`: the parent snapshot's, when the
    /// tree is equal to the one read from it (`ptree`, under the parent's
    /// node `pnode`), which saves encoding and hashing every unchanged
    /// directory; stored as a new blob otherwise.
    fn tree_id(
        &mut self,
        tree: &Tree,
        pnode: Option<&Node>,
        ptree: Option<&Tree>,
    ) -> Result<ChunkId> {
        if let (Some(NodeKind::Dir { tree: id }), Some(p)) = (pnode.map(|n| &n.kind), ptree) {
            if p == tree {
                return Ok(*id);
            }
        }
        Ok(self.store.add(BlobKind::Tree, &tree.encode())?.0)
    }

    /// A directory that exists only to lead to backed-up paths.
    pub(super) fn virtual_dir(
        &mut self,
        dir: &Path,
        children: BTreeMap<Vec<u8>, VNode>,
        parent: Option<&Tree>,
    ) -> Result<Tree> {
        if let Some(VNode::Real) = children.get(&Vec::new()) {
            // Backing up "/": the whole root directory's contents.
            return self.dir_tree(Path::new("/"), parent, None);
        }
        let mut tree = Tree::default();
        for (name, child) in children {
            crate::interrupt::check()?;
            let path = dir.join(std::ffi::OsStr::from_bytes(&name));
            let pnode = parent.and_then(|t| t.find(&name));
            match child {
                VNode::Real => {
                    if let Some(n) = self.path_node(&path, &name, pnode, None, None)? {
                        tree.insert(n);
                    }
                }
                VNode::Virtual(m) => {
                    let md = match walk::stat_entry(&path) {
                        Ok(md) => md,
                        Err(e) => {
                            self.error(e);
                            continue;
                        }
                    };
                    let previous = pnode.filter(|_| !self.force);
                    let mut node = fsmeta::read_node(&path, &name, &md, &mut self.names, previous)?;
                    let ptree = self.parent_subtree(pnode, &path);
                    let sub = self.virtual_dir(&path, m, ptree.as_ref())?;
                    node.kind = NodeKind::Dir {
                        tree: self.tree_id(&sub, pnode, ptree.as_ref())?,
                    };
                    self.summary.dirs += 1;
                    tree.insert(node);
                }
            }
        }
        Ok(tree)
    }

    /// The node for one real path (and everything below it); `None` when
    /// skipped. `stat` is its `lstat` when a listing already read it.
    fn path_node(
        &mut self,
        path: &Path,
        name: &[u8],
        parent: Option<&Node>,
        root_dev: Option<u64>,
        stat: Option<std::result::Result<std::fs::Metadata, String>>,
    ) -> Result<Option<Node>> {
        crate::interrupt::check()?;
        let md = match stat.unwrap_or_else(|| walk::stat_entry(path)) {
            Ok(md) => md,
            Err(e) => {
                self.error(e);
                return Ok(None);
            }
        };
        let previous = parent.filter(|_| !self.force);
        let mut node = match fsmeta::read_node(path, name, &md, &mut self.names, previous) {
            Ok(n) => n,
            Err(e) => {
                self.error(e.to_string());
                return Ok(None);
            }
        };
        let root_dev = root_dev.unwrap_or(md.dev());
        match node.kind {
            NodeKind::File { .. } => {
                if self.progress.shown() {
                    self.progress.current(&path.display().to_string());
                }
                match self.file_content(path, &md, parent) {
                    Ok((size, content)) => node.kind = NodeKind::File { size, content },
                    Err(e @ Error::Interrupted) | Err(e @ Error::NoSpace { .. }) => return Err(e),
                    // Only a failure to read this file skips it; a failure to
                    // store into the repository ends the run.
                    Err(e) if matches!(&e, Error::Io { path: p, .. } if p == path) => {
                        self.error(e.to_string());
                        return Ok(None);
                    }
                    Err(e) => return Err(e),
                }
                self.summary.files += 1;
                self.progress.file_done();
            }
            NodeKind::Dir { .. } => {
                let crosses = self.one_file_system && md.dev() != root_dev;
                let ptree = self.parent_subtree(parent, path);
                let tree = if crosses {
                    Tree::default()
                } else {
                    self.dir_tree(path, ptree.as_ref(), Some(root_dev))?
                };
                node.kind = NodeKind::Dir {
                    tree: self.tree_id(&tree, parent, ptree.as_ref())?,
                };
                self.summary.dirs += 1;
            }
            _ => {}
        }
        Ok(Some(node))
    }

    fn dir_tree(
        &mut self,
        dir: &Path,
        parent: Option<&Tree>,
        root_dev: Option<u64>,
    ) -> Result<Tree> {
        let listing = match self.prescan.as_mut().map(|p| p.take(dir)) {
            Some(Some(l)) => l,
            Some(None) => {
                // The tree changed under the prescan: list directly from now on.
                self.prescan = None;
                walk::list_dir(dir, &self.excludes)
            }
            None => walk::list_dir(dir, &self.excludes),
        };
        for e in listing.errors {
            self.error(e);
        }
        let mut tree = Tree::default();
        for entry in listing.entries {
            self.store.tick()?;
            let pnode = parent.and_then(|t| t.find(&entry.name));
            if let Some(n) =
                self.path_node(&entry.path, &entry.name, pnode, root_dev, Some(entry.stat))?
            {
                tree.nodes.push(n);
            }
        }
        Ok(tree)
    }

    /// Whether every chunk (or list) of `content` is stored; a failed
    /// lookup counts as missing, so the file is read again.
    fn all_present(&self, content: &Content) -> bool {
        let has = |id| self.store.has(id).unwrap_or(false);
        match content {
            Content::Chunks(c) => c.iter().all(|r| has(&r.id)),
            Content::Lists(l) => l.iter().all(|r| has(&r.id)),
        }
    }

    /// Content of a regular file: reused from the parent or a hard link, or read and chunked.
    fn file_content(
        &mut self,
        path: &Path,
        md: &std::fs::Metadata,
        parent: Option<&Node>,
    ) -> Result<(u64, Content)> {
        if !self.force {
            if let Some(p) = parent {
                if let NodeKind::File { size, content } = &p.kind {
                    let same = *size == md.len()
                        && p.mtime.sec == md.mtime()
                        && p.mtime.nsec == md.mtime_nsec() as u32
                        && p.ctime.sec == md.ctime()
                        && p.ctime.nsec == md.ctime_nsec() as u32
                        && p.inode == md.ino();
                    if same && self.all_present(content) {
                        self.summary.files_unchanged += 1;
                        self.summary.bytes_total += size;
                        self.progress.bytes(*size);
                        return Ok((*size, content.clone()));
                    }
                }
            }
        }
        let key = (md.dev(), md.ino());
        if md.nlink() > 1 {
            if let Some((size, content)) = self.hardlinks.get(&key) {
                if *size == md.len() {
                    let r = (*size, content.clone());
                    self.summary.bytes_total += r.0;
                    return Ok(r);
                }
            }
        }
        let file = files::open_for_backup(path).map_err(|e| Error::io(path, e))?;
        let mut cursor = match parent.map(|p| &p.kind) {
            Some(NodeKind::File { content, .. }) if self.delta => {
                Some(ParentCursor::new(self.repo, self.index, content))
            }
            _ => None,
        };
        let (read, content) = store_content(
            &self.chunker,
            &mut self.store,
            self.progress,
            Input {
                reader: file,
                size_hint: Some(md.len()),
                sha: None,
            },
            cursor.as_mut(),
            |e| Error::io(path, e),
        )?;
        self.summary.bytes_read += read;
        self.summary.bytes_total += read;
        if md.nlink() > 1 {
            self.hardlinks.insert(key, (read, content.clone()));
        }
        Ok((read, content))
    }
}

/// What [`store_content`] reads: a file (with its size from `stat`) or a
/// stream (with the hash of every byte).
pub(super) struct Input<'s, R> {
    pub reader: R,
    pub size_hint: Option<u64>,
    pub sha: Option<&'s mut sha2::Sha256>,
}

/// Chunks a reader into the store. Per batch of chunks, the keyed ids (and
/// the stream's SHA-256, when asked for) are computed in parallel; storing
/// stays in input order, so output is deterministic. With a cursor over the
/// parent version, each new chunk is offered a delta base.
pub(super) fn store_content<R: Read>(
    chunker: &Chunker,
    store: &mut BlobStore<'_>,
    progress: &dyn Progress,
    input: Input<'_, R>,
    mut cursor: Option<&mut ParentCursor<'_>>,
    read_err: impl FnMut(std::io::Error) -> Error,
) -> Result<(u64, Content)> {
    use rayon::prelude::*;
    let Input {
        reader,
        size_hint,
        mut sha,
    } = input;
    let repo = store.repo();
    let index = store.index();
    let mut builder = ContentBuilder::new();
    let mut off = 0u64;
    let read = chunker.for_each_batch(
        reader,
        size_hint,
        |new, chunks| {
            let ids = || -> Vec<ChunkId> { chunks.par_iter().map(|c| repo.chunk_id(c)).collect() };
            let ids = match sha.as_deref_mut() {
                Some(h) => rayon::join(|| h.update(new), ids).1,
                None => ids(),
            };
            progress.bytes(new.len() as u64);
            for (chunk, id) in chunks.iter().zip(ids) {
                let len = chunk.len() as u32;
                let new = store.add_delta(BlobKind::Data, id, chunk, || {
                    let prev = cursor.as_deref_mut()?.previous(off, len)?;
                    crate::write::delta::plan(index, &prev)
                })?;
                if let (false, Some(c)) = (new, cursor.as_deref_mut()) {
                    c.known(&id, off);
                }
                off += len as u64;
                builder.push(
                    store,
                    ChunkRef {
                        id,
                        len: chunk.len() as u32,
                    },
                )?;
            }
            Ok(())
        },
        read_err,
    )?;
    Ok((read, builder.finish(store)?))
}
