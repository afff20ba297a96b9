//! A read-only view of every snapshot as one directory tree, for `sopvault mount`.
//!
//! [`Vfs`] knows nothing about FUSE: the adapter in `src/cli/mount.rs` turns
//! kernel requests into calls of [`Vfs::lookup`], [`Vfs::getattr`],
//! [`Vfs::readdir`], [`Vfs::readlink`] and [`Vfs::read`]. The layout:
//!
//! ```text
//! sources/SOURCE/YYYY-MM-DD[-N]/…    the snapshot's name without `SOURCE_`
//! sources/SOURCE/latest -> YYYY-MM-DD[-N]
//! dates/YYYY/MM/DD/SOURCE[-N]/…      the date in the UTC offset the snapshot recorded
//! ids/SHORTID/…
//! ```
//!
//! Inodes are numbers into one table, allocated lazily (a directory's entries
//! get theirs when it is first listed or looked up) and never reused, so a
//! number stays valid for the life of the mount. The directories above the
//! snapshots are rebuilt from the snapshot list at most every
//! [`REFRESH_EVERY`], when one of them is listed or looked up, so snapshots
//! written while mounted appear without remounting.
//!
//! Reads never scan a file from its start: the chunk lengths recorded in the
//! tree give prefix sums, a binary search finds the first chunk of a range.
//! Decrypted chunks live in a bounded LRU [`ChunkCache`]; a read that follows
//! the previous one of the same file starts fetching the next
//! [`PREFETCH_BYTES`] in the background, in parallel (rayon), so sequential
//! reads find their chunks decrypted already. Listing a directory reads its
//! tree blob only, never file contents.
//!
//! The view is `Send + Sync`: the adapter serves requests from several threads.

use crate::blob::cache::ChunkLru;
use crate::error::Error;
use crate::format::manifest::Snapshot;
use crate::format::tree::{ChunkRef, Content, Node, NodeKind, Timestamp, Xattr};
use crate::ids::{ChunkId, SnapshotId};
use crate::index::{Index, Location};
use crate::repo::read::{contiguous_runs, sealed_in_run};
use crate::repo::Repository;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::{Duration, Instant};

/// The inode of the mount's root directory.
pub const ROOT_INO: u64 = 1;
/// Default bound of the decrypted-chunk cache.
pub const DEFAULT_CACHE_BYTES: usize = 64 << 20;
/// The snapshot list is read again at most this often.
pub const REFRESH_EVERY: Duration = Duration::from_secs(2);
/// How far ahead of a sequential reader chunks are fetched.
pub const PREFETCH_BYTES: u64 = 8 << 20;
/// Largest contiguous range of one pack read in one go by the prefetcher.
const MAX_RUN: u64 = 4 << 20;
/// Reads within this distance of where the previous read ended count as sequential.
const SEQUENTIAL_SLACK: u64 = 4 << 20;

/// What an inode is, as `stat` shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileType {
    Dir,
    File,
    Symlink,
    Fifo,
    CharDevice,
    BlockDevice,
    Socket,
}

/// The attributes of one inode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attr {
    pub ino: u64,
    pub kind: FileType,
    /// Permission bits (`mode & 0o7777`).
    pub perm: u16,
    pub nlink: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub mtime: Timestamp,
    pub ctime: Timestamp,
    pub rdev: u64,
}

/// One entry of a directory listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirEntry {
    pub name: Vec<u8>,
    pub ino: u64,
    pub kind: FileType,
}

/// Why a request failed; the adapter maps each to an errno.
#[derive(Debug, thiserror::Error)]
pub enum VfsError {
    #[error("no such file or directory")]
    NotFound,
    #[error("not a directory")]
    NotDir,
    #[error("is a directory")]
    IsDir,
    #[error("not a symbolic link")]
    NotSymlink,
    #[error("not a regular file")]
    NotFile,
    /// Stored data could not be read or failed verification (EIO).
    #[error("{path}: {source}")]
    Engine {
        /// The path below the mount point being read.
        path: String,
        #[source]
        source: Error,
    },
}

/// Settings of a view.
#[derive(Clone, Debug)]
pub struct VfsOptions {
    /// Owner of the directories that are not part of a snapshot.
    pub uid: u32,
    pub gid: u32,
    /// Bound of the decrypted-chunk cache, in bytes.
    pub cache_bytes: usize,
}

impl Default for VfsOptions {
    fn default() -> Self {
        VfsOptions {
            uid: 0,
            gid: 0,
            cache_bytes: DEFAULT_CACHE_BYTES,
        }
    }
}

/// What the view needs of one snapshot.
#[derive(Debug)]
struct SnapInfo {
    root: ChunkId,
    time: Timestamp,
}

enum Kind {
    /// A directory made from the snapshot list (root, sources/…, dates/…, ids/).
    Virtual,
    /// `sources/SOURCE/latest`.
    Latest { target: Vec<u8>, time: Timestamp },
    /// The root directory of one snapshot.
    SnapRoot(Arc<SnapInfo>),
    /// An entry inside a snapshot.
    Entry(Arc<Node>),
}

struct Inode {
    parent: u64,
    name: Vec<u8>,
    kind: Kind,
    /// For inodes inside a snapshot: the inode of that snapshot's root, which
    /// scopes hard links.
    view: u64,
    /// A directory's entries once listed, sorted by name.
    children: Option<Arc<Vec<DirEntry>>>,
    /// A file's chunk list once read.
    chunks: Option<Arc<FileChunks>>,
}

/// A file's chunks with the end offset of each (prefix sums of the lengths).
struct FileChunks {
    chunks: Vec<ChunkRef>,
    ends: Vec<u64>,
}

impl FileChunks {
    fn new(chunks: Vec<ChunkRef>) -> FileChunks {
        let mut at = 0u64;
        let ends = chunks
            .iter()
            .map(|c| {
                at += c.len as u64;
                at
            })
            .collect();
        FileChunks { chunks, ends }
    }
    fn size(&self) -> u64 {
        self.ends.last().copied().unwrap_or(0)
    }
    /// The chunk holding byte `offset` (which must be below the size).
    fn chunk_at(&self, offset: u64) -> usize {
        self.ends.partition_point(|&e| e <= offset)
    }
    fn start(&self, i: usize) -> u64 {
        if i == 0 {
            0
        } else {
            self.ends[i - 1]
        }
    }
}

#[derive(Default)]
struct Table {
    /// Inode `n` is `inodes[n - 1]`.
    inodes: Vec<Inode>,
    /// Inodes of the layout above the snapshots, by path, so a refresh keeps them.
    layout: HashMap<String, u64>,
    /// Hard-linked files inside one snapshot view share an inode: (view, device, inode).
    hardlinks: HashMap<(u64, u64, u64), u64>,
    /// Time of the newest snapshot: the mtime of the directories above the snapshots.
    newest: Timestamp,
}

impl Table {
    fn get(&self, ino: u64) -> Option<&Inode> {
        ino.checked_sub(1).and_then(|i| self.inodes.get(i as usize))
    }
    fn get_mut(&mut self, ino: u64) -> Option<&mut Inode> {
        ino.checked_sub(1)
            .and_then(|i| self.inodes.get_mut(i as usize))
    }
    fn push(&mut self, inode: Inode) -> u64 {
        self.inodes.push(inode);
        self.inodes.len() as u64
    }
}

struct Known {
    ids: BTreeSet<SnapshotId>,
    last: Option<Instant>,
}

#[derive(Default)]
struct ReadState {
    /// Where the previous read of the file ended.
    next: u64,
    /// Chunks before this index were already handed to the prefetcher.
    ahead: usize,
}

/// The read-only view of a repository's snapshots.
pub struct Vfs {
    repo: Arc<Repository>,
    opts: VfsOptions,
    index: RwLock<Arc<Index>>,
    table: RwLock<Table>,
    known: Mutex<Known>,
    cache: Arc<ChunkCache>,
    readers: Mutex<HashMap<u64, ReadState>>,
}

impl Vfs {
    /// Builds the view: reads the snapshot list and the index once.
    pub fn new(repo: Arc<Repository>, opts: VfsOptions) -> Result<Vfs, Error> {
        let index = repo.index()?;
        let mut table = Table::default();
        table.push(Inode {
            parent: ROOT_INO,
            name: Vec::new(),
            kind: Kind::Virtual,
            view: 0,
            children: Some(Arc::new(Vec::new())),
            chunks: None,
        });
        table.layout.insert(String::new(), ROOT_INO);
        let vfs = Vfs {
            cache: Arc::new(ChunkCache::new(opts.cache_bytes)),
            repo,
            opts,
            index: RwLock::new(Arc::new(index)),
            table: RwLock::new(table),
            known: Mutex::new(Known {
                ids: BTreeSet::new(),
                last: None,
            }),
            readers: Mutex::new(HashMap::new()),
        };
        vfs.refresh(true)?;
        Ok(vfs)
    }

    pub fn repository(&self) -> &Arc<Repository> {
        &self.repo
    }

    /// Reads the snapshot list again if [`REFRESH_EVERY`] has passed (or when
    /// `force`), and rebuilds the layout when snapshots came or went.
    pub fn refresh(&self, force: bool) -> Result<(), Error> {
        let mut known = if force {
            self.known.lock().unwrap()
        } else {
            // Another thread is refreshing: serve the current layout meanwhile.
            match self.known.try_lock() {
                Ok(k) => k,
                Err(std::sync::TryLockError::WouldBlock) => return Ok(()),
                Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
            }
        };
        if !force && known.last.is_some_and(|t| t.elapsed() < REFRESH_EVERY) {
            return Ok(());
        }
        known.last = Some(Instant::now());
        let ids = self.repo.snapshot_ids()?;
        if ids == known.ids && !force {
            return Ok(());
        }
        let snaps = self.repo.snapshots()?;
        if snaps.iter().any(|(id, _)| !known.ids.contains(id)) || force {
            // Packs and index files are written before the manifest that
            // needs them, so an index read now covers every snapshot listed.
            let index = self.repo.index()?;
            *self.index.write().unwrap() = Arc::new(index);
        }
        known.ids = ids;
        let newest = snaps.iter().map(|(_, s)| s.time.at).max();
        self.install_layout(Layout::build(&snaps), newest.unwrap_or_default());
        Ok(())
    }

    /// Lock order: `known` (held by the caller) before `table`, never the reverse.
    fn install_layout(&self, layout: Layout, newest: Timestamp) {
        let mut t = self.table.write().unwrap();
        t.newest = newest;
        let inos = t.place_layout(&layout);
        t.list_layout(&layout, &inos);
    }
}

impl Table {
    /// Allocates (or finds) the inode of every path of `layout`, parents
    /// first; a `latest` link that moved is updated in place.
    fn place_layout<'l>(&mut self, layout: &'l Layout) -> BTreeMap<&'l str, u64> {
        let mut inos: BTreeMap<&str, u64> = BTreeMap::new();
        inos.insert("", ROOT_INO);
        for (path, spec) in &layout.entries {
            let key = match spec {
                Spec::Snapshot(id, _) => format!("{path}@{}", id.to_hex()),
                _ => path.clone(),
            };
            let (parent_path, name) = split_path(path);
            let parent = inos[parent_path];
            let kind = match spec {
                Spec::Dir => Kind::Virtual,
                Spec::Latest(target, time) => Kind::Latest {
                    target: target.as_bytes().to_vec(),
                    time: *time,
                },
                Spec::Snapshot(_, info) => Kind::SnapRoot(info.clone()),
            };
            let ino = match self.layout.get(&key).copied() {
                Some(ino) => {
                    let inode = self.get_mut(ino).expect("layout inodes exist");
                    if let Kind::Latest { .. } = kind {
                        inode.kind = kind;
                    }
                    ino
                }
                None => {
                    let is_virtual = matches!(kind, Kind::Virtual);
                    let is_snapshot = matches!(kind, Kind::SnapRoot(_));
                    let ino = self.push(Inode {
                        parent,
                        name: name.as_bytes().to_vec(),
                        kind,
                        view: 0,
                        children: is_virtual.then(|| Arc::new(Vec::new())),
                        chunks: None,
                    });
                    if is_snapshot {
                        // A snapshot root scopes the hard links below it.
                        self.get_mut(ino).unwrap().view = ino;
                    }
                    self.layout.insert(key, ino);
                    ino
                }
            };
            inos.insert(path.as_str(), ino);
        }
        inos
    }

    /// Makes every virtual directory list exactly its children in
    /// `layout`; one whose snapshots were all pruned becomes empty.
    fn list_layout(&mut self, layout: &Layout, inos: &BTreeMap<&str, u64>) {
        let mut children: BTreeMap<u64, Vec<DirEntry>> = BTreeMap::new();
        children.insert(ROOT_INO, Vec::new());
        for (path, spec) in &layout.entries {
            let (parent_path, name) = split_path(path);
            let kind = match spec {
                Spec::Dir => {
                    children.entry(inos[path.as_str()]).or_default();
                    FileType::Dir
                }
                Spec::Latest(..) => FileType::Symlink,
                Spec::Snapshot(..) => FileType::Dir,
            };
            children
                .entry(inos[parent_path])
                .or_default()
                .push(DirEntry {
                    name: name.as_bytes().to_vec(),
                    ino: inos[path.as_str()],
                    kind,
                });
        }
        // Virtual directories that vanished (all their snapshots pruned) become empty.
        let virtual_inos: Vec<u64> = self
            .layout
            .values()
            .copied()
            .filter(|&ino| matches!(self.get(ino).map(|i| &i.kind), Some(Kind::Virtual)))
            .collect();
        for ino in virtual_inos {
            let mut list = children.remove(&ino).unwrap_or_default();
            list.sort_by(|a, b| a.name.cmp(&b.name));
            self.get_mut(ino).unwrap().children = Some(Arc::new(list));
        }
    }
}

impl Vfs {
    fn index(&self) -> Arc<Index> {
        self.index.read().unwrap().clone()
    }

    fn is_virtual(&self, ino: u64) -> bool {
        matches!(
            self.table.read().unwrap().get(ino).map(|i| &i.kind),
            Some(Kind::Virtual)
        )
    }

    /// The path of an inode below the mount point, for messages.
    pub fn path_of(&self, ino: u64) -> String {
        let t = self.table.read().unwrap();
        let mut parts = Vec::new();
        let mut at = ino;
        while at != ROOT_INO {
            let Some(inode) = t.get(at) else { break };
            parts.push(String::from_utf8_lossy(&inode.name).into_owned());
            at = inode.parent;
        }
        parts.reverse();
        parts.join("/")
    }

    /// The parent directory of an inode (the root is its own parent).
    pub fn parent(&self, ino: u64) -> Result<u64, VfsError> {
        let t = self.table.read().unwrap();
        t.get(ino).map(|i| i.parent).ok_or(VfsError::NotFound)
    }

    /// The attributes of an inode.
    pub fn getattr(&self, ino: u64) -> Result<Attr, VfsError> {
        let t = self.table.read().unwrap();
        let inode = t.get(ino).ok_or(VfsError::NotFound)?;
        Ok(self.attr_of(ino, inode, t.newest))
    }

    fn attr_of(&self, ino: u64, inode: &Inode, newest: Timestamp) -> Attr {
        let synthetic = |kind, perm, size, time| Attr {
            ino,
            kind,
            perm,
            nlink: if kind == FileType::Dir { 2 } else { 1 },
            uid: self.opts.uid,
            gid: self.opts.gid,
            size,
            mtime: time,
            ctime: time,
            rdev: 0,
        };
        match &inode.kind {
            Kind::Virtual => synthetic(FileType::Dir, 0o555, 0, newest),
            Kind::Latest { target, time } => {
                synthetic(FileType::Symlink, 0o777, target.len() as u64, *time)
            }
            Kind::SnapRoot(info) => synthetic(FileType::Dir, 0o555, 0, info.time),
            Kind::Entry(node) => node_attr(ino, node),
        }
    }

    /// A directory's entries (without `.` and `..`), sorted by name. Reads the
    /// directory's tree blob on first use; never reads file contents.
    pub fn readdir(&self, ino: u64) -> Result<Arc<Vec<DirEntry>>, VfsError> {
        if self.is_virtual(ino) {
            self.refresh(false).map_err(|e| self.engine(ino, e))?;
        }
        self.children(ino)
    }

    /// The entry `name` of directory `parent`.
    pub fn lookup(&self, parent: u64, name: &[u8]) -> Result<Attr, VfsError> {
        if self.is_virtual(parent) {
            self.refresh(false).map_err(|e| self.engine(parent, e))?;
        }
        let children = self.children(parent)?;
        let i = children
            .binary_search_by(|e| e.name.as_slice().cmp(name))
            .map_err(|_| VfsError::NotFound)?;
        self.getattr(children[i].ino)
    }

    fn children(&self, ino: u64) -> Result<Arc<Vec<DirEntry>>, VfsError> {
        let tree = {
            let t = self.table.read().unwrap();
            let inode = t.get(ino).ok_or(VfsError::NotFound)?;
            if let Some(c) = &inode.children {
                return Ok(c.clone());
            }
            match &inode.kind {
                Kind::SnapRoot(info) => info.root,
                Kind::Entry(node) => match &node.kind {
                    NodeKind::Dir { tree } => *tree,
                    _ => return Err(VfsError::NotDir),
                },
                Kind::Latest { .. } => return Err(VfsError::NotDir),
                Kind::Virtual => return Ok(Arc::new(Vec::new())),
            }
        };
        let path = self.path_of(ino);
        let tree = self
            .repo
            .load_tree(&self.index(), &tree, &path)
            .map_err(|source| VfsError::Engine {
                path: path.clone(),
                source,
            })?;
        let mut t = self.table.write().unwrap();
        let inode = t.get(ino).ok_or(VfsError::NotFound)?;
        if let Some(c) = &inode.children {
            return Ok(c.clone()); // another thread listed it meanwhile
        }
        let view = inode.view;
        let mut list = Vec::with_capacity(tree.nodes.len());
        for node in tree.nodes {
            let kind = node_type(&node.kind);
            let link_key = (matches!(node.kind, NodeKind::File { .. }) && node.links > 1)
                .then_some((view, node.device, node.inode));
            let existing = link_key.and_then(|k| t.hardlinks.get(&k).copied());
            let child = match existing {
                Some(c) => c,
                None => {
                    let c = t.push(Inode {
                        parent: ino,
                        name: node.name.clone(),
                        view,
                        kind: Kind::Entry(Arc::new(node.clone())),
                        children: None,
                        chunks: None,
                    });
                    if let Some(k) = link_key {
                        t.hardlinks.insert(k, c);
                    }
                    c
                }
            };
            list.push(DirEntry {
                name: node.name,
                ino: child,
                kind,
            });
        }
        let list = Arc::new(list);
        t.get_mut(ino).unwrap().children = Some(list.clone());
        Ok(list)
    }

    /// The target of a symbolic link.
    pub fn readlink(&self, ino: u64) -> Result<Vec<u8>, VfsError> {
        let t = self.table.read().unwrap();
        let inode = t.get(ino).ok_or(VfsError::NotFound)?;
        match &inode.kind {
            Kind::Latest { target, .. } => Ok(target.clone()),
            Kind::Entry(node) => match &node.kind {
                NodeKind::Symlink { target } => Ok(target.clone()),
                _ => Err(VfsError::NotSymlink),
            },
            _ => Err(VfsError::NotSymlink),
        }
    }

    /// The extended attributes recorded for an inode.
    pub fn xattrs(&self, ino: u64) -> Result<Vec<Xattr>, VfsError> {
        let t = self.table.read().unwrap();
        let inode = t.get(ino).ok_or(VfsError::NotFound)?;
        Ok(match &inode.kind {
            Kind::Entry(node) => node.xattrs.clone(),
            _ => Vec::new(),
        })
    }

    fn engine(&self, ino: u64, source: Error) -> VfsError {
        VfsError::Engine {
            path: self.path_of(ino),
            source,
        }
    }

    fn file_chunks(&self, ino: u64) -> Result<Arc<FileChunks>, VfsError> {
        let (content, size) = {
            let t = self.table.read().unwrap();
            let inode = t.get(ino).ok_or(VfsError::NotFound)?;
            if let Some(c) = &inode.chunks {
                return Ok(c.clone());
            }
            match &inode.kind {
                Kind::Entry(node) => match &node.kind {
                    NodeKind::File { size, content } => (content.clone(), *size),
                    NodeKind::Dir { .. } => return Err(VfsError::IsDir),
                    _ => return Err(VfsError::NotFile),
                },
                Kind::Latest { .. } => return Err(VfsError::NotFile),
                _ => return Err(VfsError::IsDir),
            }
        };
        let path = self.path_of(ino);
        let chunks = match content {
            Content::Chunks(c) => c,
            lists => self
                .repo
                .content_chunks(&self.index(), &lists, &path)
                .map_err(|e| self.engine(ino, e))?,
        };
        let fc = FileChunks::new(chunks);
        if fc.size() != size {
            return Err(self.engine(
                ino,
                Error::damaged(
                    format!("chunk list of {path}"),
                    format!("chunks add up to {} bytes, the file has {size}", fc.size()),
                ),
            ));
        }
        let fc = Arc::new(fc);
        let mut t = self.table.write().unwrap();
        if let Some(inode) = t.get_mut(ino) {
            inode.chunks = Some(fc.clone());
        }
        Ok(fc)
    }

    /// Forgets the read position of a file (the adapter calls it on release).
    pub fn release(&self, ino: u64) {
        self.readers.lock().unwrap().remove(&ino);
    }

    /// Reads up to `size` bytes of a file at `offset`. Fewer bytes only at the end of the file.
    pub fn read(&self, ino: u64, offset: u64, size: u32) -> Result<Vec<u8>, VfsError> {
        let fc = self.file_chunks(ino)?;
        let total = fc.size();
        if offset >= total || size == 0 {
            return Ok(Vec::new());
        }
        let end = total.min(offset + size as u64);
        let first = fc.chunk_at(offset);
        let last = fc.chunk_at(end - 1);
        let index = self.index();

        // Sequential readers get the next PREFETCH_BYTES fetched in the background.
        let ahead = {
            let mut readers = self.readers.lock().unwrap();
            let st = readers.entry(ino).or_default();
            let sequential = offset == 0 || offset.abs_diff(st.next) <= SEQUENTIAL_SLACK;
            st.next = end;
            if st.ahead < last + 1 || !sequential {
                st.ahead = last + 1;
            }
            let want = fc.chunk_at((end + PREFETCH_BYTES).min(total - 1)) + 1;
            let half = fc.chunk_at((end + PREFETCH_BYTES / 2).min(total - 1)) + 1;
            if sequential && st.ahead < half.max(last + 2).min(fc.chunks.len()) {
                let from = st.ahead;
                st.ahead = want;
                from..want
            } else {
                0..0
            }
        };
        if !ahead.is_empty() {
            let claimed = self.cache.claim(&fc.chunks[ahead]);
            if !claimed.is_empty() {
                let (repo, cache, index) = (self.repo.clone(), self.cache.clone(), index.clone());
                rayon::spawn(move || prefetch(&repo, &index, &cache, claimed));
            }
        }

        let mut out = Vec::with_capacity((end - offset) as usize);
        for i in first..=last {
            let data = self.chunk(&index, &fc.chunks[i], ino)?;
            let start = fc.start(i);
            let from = offset.saturating_sub(start) as usize;
            let to = ((end - start) as usize).min(data.len());
            out.extend_from_slice(&data[from..to]);
        }
        Ok(out)
    }

    /// One decrypted chunk: from the cache, from a prefetch in flight, or read now.
    fn chunk(&self, index: &Index, c: &ChunkRef, ino: u64) -> Result<Arc<Vec<u8>>, VfsError> {
        if let Some(d) = self.cache.get_or_claim(&c.id) {
            return Ok(d);
        }
        let path = self.path_of(ino);
        let r = self
            .repo
            .read_blob_by_id(index, &c.id, &path)
            .and_then(|d| check_len(d, c, &path));
        match r {
            Ok(d) => {
                let d = Arc::new(d);
                self.cache.finish(&c.id, Some(d.clone()));
                Ok(d)
            }
            Err(source) => {
                self.cache.finish(&c.id, None);
                Err(VfsError::Engine { path, source })
            }
        }
    }
}

fn check_len(data: Vec<u8>, c: &ChunkRef, path: &str) -> Result<Vec<u8>, Error> {
    if data.len() != c.len as usize {
        return Err(Error::damaged(
            format!("chunk {} of {path}", c.id.short()),
            format!("expected {} bytes, found {}", c.len, data.len()),
        ));
    }
    Ok(data)
}

/// Fetches claimed chunks in parallel, one read per contiguous run in a pack.
/// Failures only release the claim: the reader then fetches the chunk itself
/// and reports the error with the file's path.
fn prefetch(repo: &Repository, index: &Index, cache: &ChunkCache, chunks: Vec<ChunkRef>) {
    use rayon::prelude::*;
    let mut located: Vec<(ChunkRef, Location)> = Vec::with_capacity(chunks.len());
    for c in chunks {
        match index.lookup(&c.id) {
            Some(loc) => located.push((c, loc)),
            None => cache.finish(&c.id, None),
        }
    }
    let locs: Vec<Location> = located.iter().map(|(_, loc)| *loc).collect();
    contiguous_runs(&locs, MAX_RUN)
        .par_iter()
        .for_each(|range| {
            let run = &locs[range.clone()];
            let bytes = repo.read_sealed_run(run);
            located[range.clone()].par_iter().for_each(|(c, loc)| {
                let data = bytes.as_ref().ok().and_then(|b| {
                    let d = repo
                        .open_blob(index, loc, sealed_in_run(run, b, loc))
                        .ok()?;
                    (d.len() == c.len as usize).then(|| Arc::new(d))
                });
                cache.finish(&c.id, data);
            });
        });
}

fn node_type(kind: &NodeKind) -> FileType {
    match kind {
        NodeKind::File { .. } => FileType::File,
        NodeKind::Dir { .. } => FileType::Dir,
        NodeKind::Symlink { .. } => FileType::Symlink,
        NodeKind::Fifo => FileType::Fifo,
        NodeKind::CharDevice { .. } => FileType::CharDevice,
        NodeKind::BlockDevice { .. } => FileType::BlockDevice,
        NodeKind::Socket => FileType::Socket,
    }
}

fn node_attr(ino: u64, node: &Node) -> Attr {
    let rdev = match node.kind {
        NodeKind::CharDevice { rdev } | NodeKind::BlockDevice { rdev } => rdev,
        _ => 0,
    };
    Attr {
        ino,
        kind: node_type(&node.kind),
        perm: (node.mode & 0o7777) as u16,
        nlink: node.links.clamp(1, u32::MAX as u64) as u32,
        uid: node.uid,
        gid: node.gid,
        size: node.size(),
        mtime: node.mtime,
        ctime: node.ctime,
        rdev,
    }
}

fn split_path(path: &str) -> (&str, &str) {
    match path.rfind('/') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => ("", path),
    }
}

enum Spec {
    Dir,
    Latest(String, Timestamp),
    Snapshot(SnapshotId, Arc<SnapInfo>),
}

/// The directories above the snapshots, by path (parents sort before children).
struct Layout {
    entries: BTreeMap<String, Spec>,
}

impl Layout {
    fn build(snaps: &[(SnapshotId, Snapshot)]) -> Layout {
        let mut entries = BTreeMap::new();
        for d in ["sources", "dates", "ids"] {
            entries.insert(d.to_string(), Spec::Dir);
        }
        let add_dirs = |entries: &mut BTreeMap<String, Spec>, path: &str| {
            let mut at = 0;
            while let Some(i) = path[at..].find('/') {
                entries
                    .entry(path[..at + i].to_string())
                    .or_insert(Spec::Dir);
                at += i + 1;
            }
        };
        // Oldest first, so `latest` ends on the newest and `-N` suffixes count up.
        let mut latest: BTreeMap<String, (String, Timestamp)> = BTreeMap::new();
        for (id, s) in snaps {
            let info = Arc::new(SnapInfo {
                root: s.root,
                time: s.time.at,
            });
            let source = sanitize(&s.source);
            let date = s.time.to_datetime().format("%Y/%m/%d").to_string();
            let suffix = name_suffix(s);
            let place = |entries: &mut BTreeMap<String, Spec>, dir: String, base: String| {
                let mut path = format!("{dir}/{base}");
                if entries.contains_key(&path) {
                    path = format!("{dir}/{base}~{}", id.short());
                }
                add_dirs(entries, &path);
                entries.insert(path.clone(), Spec::Snapshot(*id, info.clone()));
                path
            };
            let in_source = place(
                &mut entries,
                format!("sources/{source}"),
                format!("{}{suffix}", s.time.date()),
            );
            let (_, leaf) = split_path(&in_source);
            latest.insert(source.clone(), (leaf.to_string(), s.time.at));
            place(
                &mut entries,
                format!("dates/{date}"),
                format!("{source}{suffix}"),
            );
            place(&mut entries, "ids".to_string(), id.short());
        }
        for (source, (target, time)) in latest {
            let path = format!("sources/{source}/latest");
            // A snapshot dir can never be called `latest` (names start with a date).
            entries.insert(path, Spec::Latest(target, time));
        }
        Layout { entries }
    }
}

/// The `-N` of a snapshot's name `SOURCE_YYYY-MM-DD-N`, or "".
fn name_suffix(s: &Snapshot) -> String {
    let base = format!("{}_{}", s.source, s.time.date());
    match s.name.strip_prefix(&base) {
        Some("") => String::new(),
        Some(rest) if rest.starts_with('-') && rest[1..].parse::<u32>().is_ok() => rest.to_string(),
        // A name that does not follow the pattern: keep what distinguishes it.
        _ => match s.name.strip_prefix(&format!("{}_", s.source)) {
            Some(rest) => format!("-{}", sanitize(rest)),
            None => format!("-{}", sanitize(&s.name)),
        },
    }
}

fn sanitize(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| if c == '/' || c == '\0' { '_' } else { c })
        .collect();
    match s.as_str() {
        "" | "." | ".." => format!("_{s}"),
        _ => s,
    }
}

/// A bounded LRU cache of decrypted chunks, by id. A chunk being fetched is
/// "claimed": other readers of it wait instead of fetching it twice.
pub struct ChunkCache {
    inner: Mutex<Claimed>,
    ready: Condvar,
}

/// The cached chunks, and those being fetched.
struct Claimed {
    lru: ChunkLru,
    claimed: HashSet<ChunkId>,
}

impl ChunkCache {
    pub fn new(cap: usize) -> ChunkCache {
        ChunkCache {
            inner: Mutex::new(Claimed {
                lru: ChunkLru::new(cap, cap),
                claimed: HashSet::new(),
            }),
            ready: Condvar::new(),
        }
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.inner.lock().unwrap().lru.bytes()
    }

    /// The chunk if cached (waiting while another thread fetches it); `None`
    /// means the caller has claimed it and must call [`ChunkCache::finish`].
    pub fn get_or_claim(&self, id: &ChunkId) -> Option<Arc<Vec<u8>>> {
        let mut g = self.inner.lock().unwrap();
        loop {
            if let Some(data) = g.lru.get(id) {
                return Some(data);
            }
            if g.claimed.insert(*id) {
                return None;
            }
            g = self.ready.wait(g).unwrap();
        }
    }

    /// Claims the chunks that are neither cached nor being fetched.
    fn claim(&self, chunks: &[ChunkRef]) -> Vec<ChunkRef> {
        let mut g = self.inner.lock().unwrap();
        let mut out = Vec::new();
        for c in chunks {
            if !g.lru.contains(&c.id) && g.claimed.insert(c.id) {
                out.push(*c);
            }
        }
        out
    }

    /// Ends a claim: stores the chunk (evicting the least recently used) or just releases it.
    pub fn finish(&self, id: &ChunkId, data: Option<Arc<Vec<u8>>>) {
        let mut g = self.inner.lock().unwrap();
        g.claimed.remove(id);
        if let Some(data) = data {
            if !g.lru.contains(id) {
                g.lru.put(*id, data);
            }
        }
        drop(g);
        self.ready.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::manifest::SnapshotTime;

    fn id(n: u8) -> ChunkId {
        ChunkId([n; 32])
    }

    #[test]
    fn offsets_map_to_chunks_by_prefix_sums() {
        let fc = FileChunks::new(
            [10u32, 5, 20]
                .iter()
                .enumerate()
                .map(|(i, &len)| ChunkRef {
                    id: id(i as u8),
                    len,
                })
                .collect(),
        );
        assert_eq!(fc.size(), 35);
        assert_eq!(fc.chunk_at(0), 0);
        assert_eq!(fc.chunk_at(9), 0);
        assert_eq!(fc.chunk_at(10), 1);
        assert_eq!(fc.chunk_at(14), 1);
        assert_eq!(fc.chunk_at(15), 2);
        assert_eq!(fc.chunk_at(34), 2);
        assert_eq!((fc.start(0), fc.start(2)), (0, 15));
    }

    #[test]
    fn cache_evicts_least_recently_used_and_stays_bounded() {
        let c = ChunkCache::new(100);
        for n in 0..3u8 {
            assert!(c.get_or_claim(&id(n)).is_none());
            c.finish(&id(n), Some(Arc::new(vec![n; 40])));
        }
        // 0 was evicted to make room for 2; 1 and 2 remain.
        assert!(c.bytes() <= 100);
        assert!(c.get_or_claim(&id(2)).is_some());
        assert!(c.get_or_claim(&id(1)).is_some());
        assert!(c.get_or_claim(&id(0)).is_none());
        c.finish(&id(0), Some(Arc::new(vec![0; 40])));
        // Inserting 0 evicted 2, touched less recently than 1.
        assert!(c.get_or_claim(&id(1)).is_some());
        assert!(c.get_or_claim(&id(2)).is_none());
        c.finish(&id(2), None);
        assert_eq!(c.bytes(), 80);
    }

    #[test]
    fn a_claimed_chunk_is_waited_for_not_fetched_twice() {
        let c = Arc::new(ChunkCache::new(1 << 20));
        assert!(c.get_or_claim(&id(7)).is_none());
        let c2 = c.clone();
        let waiter = std::thread::spawn(move || c2.get_or_claim(&id(7)).map(|d| d.len()));
        std::thread::sleep(Duration::from_millis(50));
        c.finish(&id(7), Some(Arc::new(vec![1; 9])));
        assert_eq!(waiter.join().unwrap(), Some(9));
    }

    fn snap(source: &str, name: &str, rfc3339: &str) -> Snapshot {
        let t = chrono::DateTime::parse_from_rfc3339(rfc3339).unwrap();
        Snapshot {
            time: SnapshotTime::from_datetime(t),
            name: name.into(),
            source: source.into(),
            host: String::new(),
            user: String::new(),
            tags: vec![],
            paths: vec![],
            streams: vec![],
            root: id(0),
            parent: None,
            chunker: Default::default(),
            program: String::new(),
            summary: Default::default(),
            complete: true,
        }
    }

    #[test]
    fn layout_names_sources_dates_ids_and_latest() {
        let snaps = vec![
            (
                SnapshotId([1; 32]),
                snap("web", "web_2026-11-21", "2026-11-21T23:30:00+07:00"),
            ),
            (
                SnapshotId([2; 32]),
                snap("web", "web_2026-11-21-2", "2026-11-21T23:50:00+07:00"),
            ),
            (
                SnapshotId([3; 32]),
                snap("db", "db_2026-11-22", "2026-11-22T01:00:00+00:00"),
            ),
        ];
        let l = Layout::build(&snaps);
        let keys: Vec<&str> = l.entries.keys().map(|k| k.as_str()).collect();
        for want in [
            "sources/web/2026-11-21",
            "sources/web/2026-11-21-2",
            "sources/db/2026-11-22",
            // The date in the snapshot's own offset, not UTC (16:30Z is still the 21st at +07:00).
            "dates/2026/11/21/web",
            "dates/2026/11/21/web-2",
            "dates/2026/11/22/db",
            "ids/01010101",
            "ids/03030303",
        ] {
            assert!(keys.contains(&want), "{want} missing from {keys:?}");
        }
        match &l.entries["sources/web/latest"] {
            Spec::Latest(target, _) => assert_eq!(target, "2026-11-21-2"),
            _ => panic!("latest is not a link"),
        }
    }

    /// A real repository with one snapshot of `n` small files and one big one.
    fn repo_with_snapshot(
        dir: &std::path::Path,
        n: usize,
    ) -> (Repository, std::path::PathBuf, Vec<u8>) {
        let src = dir.join("src");
        std::fs::create_dir_all(src.join("many")).unwrap();
        for i in 0..n {
            std::fs::write(src.join("many").join(format!("f{i:05}")), format!("{i}\n")).unwrap();
        }
        let big = crate::testutil::noise(3 * 1024 * 1024 + 17, 0x9E37_79B9_7F4A_7C15);
        std::fs::write(src.join("big.bin"), &big).unwrap();
        let repo = crate::repo::scratch_with_snapshot(dir, &src);
        (repo, src, big)
    }

    /// Walks from the root of the view along a `/`-separated path.
    fn walk(vfs: &Vfs, path: &str) -> u64 {
        let mut ino = ROOT_INO;
        for part in path.split('/').filter(|p| !p.is_empty()) {
            ino = vfs
                .lookup(ino, part.as_bytes())
                .unwrap_or_else(|e| panic!("{part} in {path}: {e}"))
                .ino;
        }
        ino
    }

    #[test]
    fn reads_at_any_offset_and_lists_without_reading_contents() {
        let tmp = tempfile::tempdir().unwrap();
        let (repo, src, big) = repo_with_snapshot(tmp.path(), 300);
        let repo = Arc::new(repo);
        let vfs = Vfs::new(repo.clone(), VfsOptions::default()).unwrap();
        let latest = walk(&vfs, "sources/web/latest");
        assert_eq!(vfs.getattr(latest).unwrap().kind, FileType::Symlink);
        let date = String::from_utf8(vfs.readlink(latest).unwrap()).unwrap();
        let base = format!("sources/web/{date}{}", src.display());
        let file = walk(&vfs, &format!("{base}/big.bin"));
        assert_eq!(vfs.getattr(file).unwrap().size, big.len() as u64);
        // Sequentially, in kernel-sized requests.
        let mut got = Vec::new();
        while (got.len() as u64) < big.len() as u64 {
            got.extend(vfs.read(file, got.len() as u64, 128 * 1024).unwrap());
        }
        assert!(got == big);
        // At arbitrary offsets, crossing chunk boundaries, and past the end.
        for (off, len) in [
            (0, 1),
            (65_535, 70_000),
            (1_000_003, 500_000),
            (big.len() - 5, 100),
        ] {
            let data = vfs.read(file, off as u64, len).unwrap();
            assert!(
                data == big[off..(off + len as usize).min(big.len())],
                "{off}+{len}"
            );
        }
        assert!(vfs
            .read(file, big.len() as u64 + 10, 10)
            .unwrap()
            .is_empty());
        assert!(vfs.cache.bytes() <= DEFAULT_CACHE_BYTES);

        // Without any data pack, a fresh view still lists and stats every entry:
        // listing never reads file contents. Reading fails with the file's path.
        let mut packs = Vec::new();
        for sub in std::fs::read_dir(repo.root().join("packs")).unwrap() {
            for f in std::fs::read_dir(sub.unwrap().path()).unwrap() {
                packs.push(f.unwrap().path());
            }
        }
        for p in packs {
            let b = std::fs::read(&p).unwrap();
            if b[12..16] == [0, 0, 0, 0] {
                std::fs::remove_file(&p).unwrap();
            }
        }
        // A fresh view of a freshly opened repository: the backend keeps
        // recently read packs open, and those would still read.
        drop(repo);
        let repo = Arc::new(
            Repository::open(
                &tmp.path().join("repo"),
                &crate::crypto::Password::new(b"pw".to_vec()),
                &crate::repo::OpenOptions {
                    cache_dir: Some(tmp.path().join("cache")),
                    base_cache_bytes: None,
                },
            )
            .unwrap(),
        );
        let vfs = Vfs::new(repo, VfsOptions::default()).unwrap();
        let many = walk(&vfs, &format!("{base}/many"));
        let entries = vfs.readdir(many).unwrap();
        assert_eq!(entries.len(), 300);
        for e in entries.iter() {
            assert_eq!(vfs.getattr(e.ino).unwrap().kind, FileType::File);
        }
        let file = walk(&vfs, &format!("{base}/big.bin"));
        match vfs.read(file, 0, 4096) {
            Err(VfsError::Engine { path, .. }) => assert!(path.ends_with("big.bin"), "{path}"),
            other => panic!("read without packs gave {other:?}"),
        }
    }
}
