//! `snapshot`: walk paths and read dump streams into one snapshot.
//!
//! ```text
//! streams (in the order given) ──────┐
//! paths → walk.rs: listings, lstat, ─┼→ chunk → id → BlobStore (dedup, seal, pack, index)
//!   xattrs (read ahead, during KDF)  │      refs → ContentBuilder → File node
//!          parent tree lookup ───────┘
//! nodes → Tree per directory → BlobStore → root tree → manifest (written last)
//! ```
//! Each stream becomes a file named after it at the snapshot's root; each path
//! keeps its absolute path below the root. Files whose size, mtime, ctime and
//! inode match the parent snapshot (the latest of the same source) reuse its
//! chunk list without being read. An unreadable path is reported and skipped,
//! and the snapshot is marked incomplete; a failing stream fails the run
//! before any manifest is written.

use crate::blob::BlobKind;
use crate::chunker::Chunker;
use crate::error::{Error, Result};
use crate::format::manifest::{Snapshot, SnapshotTime, StreamRecord, Summary};
use crate::format::tree::{
    ChunkList, ChunkRef, Content, ListRef, Node, NodeKind, Tree, INLINE_CHUNKS, LIST_CHUNKS_WRITTEN,
};
use crate::ids::{ChunkId, SnapshotId};
use crate::index::Index;
use crate::ops::progress::Progress;
use crate::repo::Repository;
use crate::sys::fsmeta::{self, NameCache};
use crate::sys::walk::{self, Excludes, Prescan};
use crate::write::delta::ParentCursor;
use crate::write::parent::{self, ParentTrees};
use crate::write::store::{BlobStore, StoreStats};
use sha2::Digest;
use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

pub enum StreamInput {
    Stdin,
    Command(String),
}

pub struct StreamSpec {
    pub name: String,
    pub input: StreamInput,
}

#[derive(Default)]
pub struct SnapshotOptions {
    pub source: String,
    pub tags: Vec<String>,
    pub paths: Vec<PathBuf>,
    pub streams: Vec<StreamSpec>,
    /// Glob patterns: without `/` they match a name at any depth, with `/` the
    /// absolute path; a pattern that is not UTF-8 matches literally.
    pub excludes: Vec<std::ffi::OsString>,
    pub one_file_system: bool,
    /// Record this time instead of now (for importing older backups).
    pub time: Option<SnapshotTime>,
    /// Read every file even when the parent says it is unchanged.
    pub force: bool,
    /// Store no new chunk as a delta against its parent version.
    pub no_delta: bool,
    /// Accept a stream that produces no bytes; otherwise it fails the run
    /// (closed standard input, a dump command that wrote nothing).
    pub allow_empty: bool,
    /// Warn about a stream smaller than this share of its size in the
    /// parent snapshot (`0.5`: under half); 0 never warns.
    pub shrink_warn: f64,
}

pub struct SnapshotOutcome {
    pub id: SnapshotId,
    pub snapshot: Snapshot,
    pub store: StoreStats,
}

/// Checks a source or stream name: 1 to 200 ASCII letters, digits, `.`,
/// `-` and `_`, and not `.`, `..`, `latest` or `latest-complete`. Names end
/// up in snapshot names, selectors (`SOURCE:latest`) and file names, so
/// nothing that a shell or a selector would read differently is allowed.
pub fn validate_name(what: &str, name: &str) -> Result<()> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_');
    if name.is_empty()
        || name == "."
        || name == ".."
        || name == "latest"
        || name == "latest-complete"
        || name.len() > 200
        || !name.chars().all(allowed)
    {
        return Err(Error::Usage(format!(
            "invalid {what} name {name:?}: use 1 to 200 ASCII letters, digits, '.', '-', '_' (not '.', '..', 'latest' or 'latest-complete')"
        )));
    }
    Ok(())
}

/// Normalises a path to an absolute one without following symlinks.
pub fn absolute(p: &Path) -> Result<PathBuf> {
    let abs = std::path::absolute(p).map_err(|e| Error::io(p, e))?;
    let mut out = PathBuf::from("/");
    for c in abs.components() {
        match c {
            Component::Normal(s) => out.push(s),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    Ok(out)
}

/// The human name for a new snapshot: `SOURCE_YYYY-MM-DD`, then `-2`, `-3`... that day.
/// Names made unique for listing (`NAME~ID`, see [`crate::repo::unique_names`])
/// count as the name recorded.
pub fn human_name(
    existing: &[(SnapshotId, Snapshot)],
    source: &str,
    time: &SnapshotTime,
) -> String {
    let base = format!("{source}_{}", time.date());
    let highest = existing
        .iter()
        .filter(|(_, s)| s.source == source)
        .filter_map(|(_, s)| {
            let name = crate::repo::recorded_name(&s.name);
            if name == base {
                Some(1)
            } else {
                name.strip_prefix(&format!("{base}-"))?.parse::<u32>().ok()
            }
        })
        .max();
    match highest {
        None => base,
        Some(n) => format!("{base}-{}", n + 1),
    }
}

/// The repository directory as the walk compares paths with it (it is never backed up).
fn repo_root_of(repo: &Path) -> Option<PathBuf> {
    std::fs::canonicalize(repo).ok()
}

/// Where a path really is: its directory with symlinks resolved, and its
/// own name as it is (a symlink is backed up as one, never followed).
fn real_path(abs: &Path) -> PathBuf {
    match (abs.parent(), abs.file_name()) {
        (Some(dir), Some(name)) => std::fs::canonicalize(dir)
            .map(|d| d.join(name))
            .unwrap_or_else(|_| abs.to_path_buf()),
        _ => abs.to_path_buf(),
    }
}

/// The repository's directory under every name the walk of `paths`
/// (absolute) can meet it by: the walk names entries after the path given,
/// so below `/home/x`, where `/home` is a symlink to `/data/home`, a
/// repository at `/data/home/x/repo` is met as `/home/x/repo`.
fn repo_in_walk(paths: &[PathBuf], repo_root: Option<PathBuf>) -> Vec<PathBuf> {
    let Some(repo_root) = repo_root else {
        return Vec::new();
    };
    let mut out = vec![repo_root.clone()];
    for p in paths {
        if let Ok(rel) = repo_root.strip_prefix(real_path(p)) {
            let alias = p.join(rel);
            if !out.contains(&alias) {
                out.push(alias);
            }
        }
    }
    out
}

/// Refuses a path to back up that is the repository or lies inside it. The
/// walk leaves the repository out where it meets it below a path
/// ([`Excludes`], [`repo_in_walk`]); a path given to back up is where the
/// walk starts, so it is checked here, as it [really is](real_path): a
/// symlink to the repository is backed up as the symlink it is, no copy.
fn refuse_repository(abs: &Path, repo_root: &Path) -> Result<()> {
    let real = real_path(abs);
    if real.starts_with(repo_root) {
        let what = if real == repo_root {
            "is the repository"
        } else {
            "is inside the repository"
        };
        return Err(Error::Usage(format!(
            "{}: cannot back up: it {what} {}; a repository is never backed up into itself",
            abs.display(),
            repo_root.display()
        )));
    }
    Ok(())
}

/// The given paths as a tree of the directories that lead to them.
fn path_tree(paths: &[PathBuf]) -> Result<BTreeMap<Vec<u8>, VNode>> {
    let mut root = BTreeMap::new();
    for p in paths {
        insert_path(&mut root, &absolute(p)?);
    }
    Ok(root)
}

/// The backed-up paths in the order the archiver visits them (`/` when the
/// whole root is backed up): the roots of the walk.
fn listed_roots(root: &BTreeMap<Vec<u8>, VNode>) -> Vec<PathBuf> {
    fn visit(map: &BTreeMap<Vec<u8>, VNode>, dir: &Path, out: &mut Vec<PathBuf>) {
        if let Some(VNode::Real) = map.get(&Vec::new()) {
            out.push(dir.to_path_buf());
            return;
        }
        for (name, child) in map {
            let path = dir.join(std::ffi::OsStr::from_bytes(name));
            match child {
                VNode::Real => out.push(path),
                VNode::Virtual(m) => visit(m, &path, out),
            }
        }
    }
    let mut out = Vec::new();
    visit(root, Path::new("/"), &mut out);
    out
}

/// Starts reading the directories `opts` backs up into the repository at
/// `repo` (a directory or an `s3://` URL), before the repository is even
/// opened; `run` takes the result. `None` when there is nothing to walk or
/// the options are invalid (`run` reports that).
pub fn prescan(opts: &SnapshotOptions, repo: &Path) -> Option<Prescan> {
    if opts.paths.is_empty() {
        return None;
    }
    let root = path_tree(&opts.paths).ok()?;
    let repo_root = repo_root_of(repo);
    let abs: Vec<PathBuf> = opts
        .paths
        .iter()
        .map(|p| absolute(p).ok())
        .collect::<Option<_>>()?;
    if let Some(r) = &repo_root {
        for p in &abs {
            refuse_repository(p, r).ok()?;
        }
    }
    let excludes = Excludes::new(&opts.excludes, repo_in_walk(&abs, repo_root)).ok()?;
    Some(Prescan::start(
        listed_roots(&root),
        excludes,
        opts.one_file_system,
    ))
}

enum VNode {
    Real,
    Virtual(BTreeMap<Vec<u8>, VNode>),
}

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

struct Archiver<'a, 'r> {
    repo: &'r Repository,
    index: &'r Index,
    store: BlobStore<'r>,
    chunker: Chunker,
    progress: &'a dyn Progress,
    names: NameCache,
    excludes: Excludes,
    /// Directory listings read ahead; dropped at the first surprise.
    prescan: Option<Prescan>,
    /// The parent snapshot's trees read ahead.
    parents: Option<ParentTrees>,
    one_file_system: bool,
    force: bool,
    delta: bool,
    summary: Summary,
    hardlinks: HashMap<(u64, u64), (u64, Content)>,
}

/// Takes a snapshot. The manifest is written only if every stream succeeded.
pub fn run(
    repo: &Repository,
    opts: &SnapshotOptions,
    progress: &dyn Progress,
    prescan: Option<Prescan>,
) -> Result<SnapshotOutcome> {
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        if !opts.paths.is_empty() && progress.shown() {
            let paths: Vec<PathBuf> = opts.paths.iter().filter_map(|p| absolute(p).ok()).collect();
            let stop = &stop;
            scope.spawn(move || scan(&paths, opts.one_file_system, progress, stop));
        }
        let r = run_inner(repo, opts, progress, prescan);
        stop.store(true, Ordering::Relaxed);
        r
    })
}

fn run_inner(
    repo: &Repository,
    opts: &SnapshotOptions,
    progress: &dyn Progress,
    prescan: Option<Prescan>,
) -> Result<SnapshotOutcome> {
    let started = Instant::now();
    validate_name("source", &opts.source)?;
    for t in &opts.tags {
        if t.is_empty() || t.contains(',') || t.chars().any(|c| c.is_control()) {
            return Err(Error::Usage(format!("invalid tag {t:?}")));
        }
    }
    let mut seen = std::collections::HashSet::new();
    for s in &opts.streams {
        validate_name("stream", &s.name)?;
        if !seen.insert(s.name.as_str()) {
            return Err(Error::Usage(format!(
                "stream name {:?} given twice",
                s.name
            )));
        }
    }
    if opts
        .streams
        .iter()
        .filter(|s| matches!(s.input, StreamInput::Stdin))
        .count()
        > 1
    {
        return Err(Error::Usage(
            "only one stream can read standard input".into(),
        ));
    }
    if opts.paths.is_empty() && opts.streams.is_empty() {
        return Err(Error::Usage(
            "nothing to back up: give paths, --stream or --stdin".into(),
        ));
    }
    // Resolve paths and build the virtual directory structure above them.
    let mut root = BTreeMap::new();
    let mut abs_paths = Vec::new();
    let repo_root = repo_root_of(repo.root());
    let mut given = Vec::new();
    for p in &opts.paths {
        let abs = absolute(p)?;
        std::fs::symlink_metadata(&abs)
            .map_err(|e| Error::Usage(format!("{}: cannot back up: {e}", abs.display())))?;
        if let Some(repo_root) = &repo_root {
            refuse_repository(&abs, repo_root)?;
        }
        abs_paths.push(abs.as_os_str().as_bytes().to_vec());
        insert_path(&mut root, &abs);
        given.push(abs);
    }
    let root_names: Vec<&Vec<u8>> = root.keys().collect();
    for s in &opts.streams {
        if root_names.iter().any(|n| n.as_slice() == s.name.as_bytes()) {
            return Err(Error::Usage(format!(
                "stream name {:?} collides with the top directory of a backed-up path",
                s.name
            )));
        }
    }
    let time = opts.time.unwrap_or_else(crate::sys::sysinfo::now);
    let snaps = repo.snapshots()?;
    let parent = snaps
        .iter()
        .filter(|(_, s)| s.source == opts.source)
        .max_by_key(|(_, s)| s.time.at)
        .cloned();
    let index = repo.index_adopting_orphans()?;
    let excludes = Excludes::new(&opts.excludes, repo_in_walk(&given, repo_root))?;
    let roots = listed_roots(&root);
    let prescan = prescan.filter(|p| p.matches(&roots, opts.one_file_system, &excludes));
    let parent_root = match &parent {
        Some((_, p)) if !opts.force => repo.load_tree(&index, &p.root, "/").ok(),
        _ => None,
    };
    std::thread::scope(|scope| {
        let parents = parent_root.as_ref().map(|root_tree| {
            let excludes = excludes.clone();
            let roots = roots.clone();
            // The directories the archiver enters: those on the way to a
            // backed-up path, and those under one that are not excluded.
            let wanted = move |path: &Path, name: &[u8]| {
                roots.iter().any(|r| {
                    r.starts_with(path) || (path.starts_with(r) && !excludes.excluded(path, name))
                })
            };
            ParentTrees::start(scope, repo, &index, root_tree, wanted)
        });
        archive(
            repo,
            opts,
            progress,
            ArchiveInput {
                started,
                time,
                snaps: &snaps,
                parent: parent.as_ref(),
                parent_root: parent_root.as_ref(),
                index: &index,
                excludes,
                prescan,
                parents,
                root,
                abs_paths,
            },
        )
    })
}

/// What `run_inner` prepared for the archiver.
struct ArchiveInput<'x> {
    started: Instant,
    time: SnapshotTime,
    snaps: &'x [(SnapshotId, Snapshot)],
    parent: Option<&'x (SnapshotId, Snapshot)>,
    parent_root: Option<&'x Tree>,
    index: &'x Index,
    excludes: Excludes,
    prescan: Option<Prescan>,
    parents: Option<ParentTrees>,
    root: BTreeMap<Vec<u8>, VNode>,
    abs_paths: Vec<Vec<u8>>,
}

/// Walks the paths and reads the streams, stores what is new, and writes the manifest.
fn archive(
    repo: &Repository,
    opts: &SnapshotOptions,
    progress: &dyn Progress,
    input: ArchiveInput<'_>,
) -> Result<SnapshotOutcome> {
    let ArchiveInput {
        started,
        time,
        snaps,
        parent,
        parent_root,
        index,
        excludes,
        prescan,
        parents,
        root,
        abs_paths,
    } = input;
    let indexed = index.len();
    let mut a = Archiver {
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
    };
    let mut records = Vec::new();
    let mut stream_nodes = Vec::new();
    for s in &opts.streams {
        let prev = parent_root
            .and_then(|t| t.find(s.name.as_bytes()))
            .and_then(|n| match &n.kind {
                NodeKind::File { content, .. } => Some(content.clone()),
                _ => None,
            });
        let (node, mut rec) = a.stream(s, prev.as_ref())?;
        if rec.bytes == 0 && !opts.allow_empty {
            let what = match s.input {
                StreamInput::Stdin => "standard input was empty or closed",
                StreamInput::Command(_) => "the command wrote nothing",
            };
            return Err(Error::StreamFailed {
                name: s.name.clone(),
                reason: format!("{what} (give --allow-empty if an empty stream is expected)"),
            });
        }
        let before = parent
            .and_then(|(_, p)| p.streams.iter().find(|r| r.name == s.name))
            .map(|r| r.bytes);
        if let Some(before) = before {
            if (rec.bytes as f64) < opts.shrink_warn * before as f64 {
                rec.shrunk_from = Some(before);
            }
        }
        stream_nodes.push(node);
        records.push(rec);
    }
    let mut root_tree = a.virtual_dir(Path::new("/"), root, parent_root)?;
    for n in stream_nodes {
        root_tree.insert(n);
    }
    let (root_id, _) = a.store.add(BlobKind::Tree, &root_tree.encode())?;
    crate::interrupt::check()?;
    let Archiver {
        store,
        mut summary,
        parents,
        ..
    } = a;
    // The walk is over: stop reading ahead while the store finishes.
    drop(parents);
    let stats = store.finish()?;
    summary.bytes_new = stats.bytes_new;
    summary.bytes_stored = stats.bytes_stored;
    summary.chunks_new = stats.blobs_new;
    summary.duration_ms = started.elapsed().as_millis() as u64;
    let complete = summary.errors.is_empty();
    let snapshot = Snapshot {
        time,
        name: human_name(snaps, &opts.source, &time),
        source: opts.source.clone(),
        host: crate::sys::sysinfo::hostname(),
        user: crate::sys::sysinfo::username(),
        tags: opts.tags.clone(),
        paths: abs_paths,
        streams: records,
        root: root_id,
        parent: parent.map(|(id, _)| *id),
        chunker: repo.config().chunker,
        program: format!("sopvault {}", env!("CARGO_PKG_VERSION")),
        summary,
        complete,
    };
    let id = repo.write_snapshot(&snapshot)?;
    // Once the snapshot is safe, keep room for the prune that will free space.
    repo.keep_reserve(indexed + stats.blobs_new);
    Ok(SnapshotOutcome {
        id,
        snapshot,
        store: stats,
    })
}

/// Counts bytes and files so the progress bar can show an ETA; stops early when asked.
fn scan(paths: &[PathBuf], one_fs: bool, progress: &dyn Progress, stop: &AtomicBool) {
    let (mut bytes, mut files) = (0u64, 0u64);
    let mut stack: Vec<(PathBuf, Option<u64>)> = paths.iter().map(|p| (p.clone(), None)).collect();
    while let Some((p, dev)) = stack.pop() {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let Ok(md) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        let dev = dev.unwrap_or(md.dev());
        if md.is_file() {
            bytes += md.len();
            files += 1;
        } else if md.is_dir() && (!one_fs || md.dev() == dev) {
            if let Ok(rd) = std::fs::read_dir(&p) {
                stack.extend(rd.filter_map(|e| e.ok().map(|e| (e.path(), Some(dev)))));
            }
        }
    }
    progress.set_total(bytes, files);
}

fn insert_path(root: &mut BTreeMap<Vec<u8>, VNode>, abs: &Path) {
    let comps: Vec<Vec<u8>> = abs
        .components()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(s.as_bytes().to_vec()),
            _ => None,
        })
        .collect();
    if comps.is_empty() {
        // "/" itself: everything.
        root.clear();
        root.insert(Vec::new(), VNode::Real);
        return;
    }
    if matches!(root.get(&Vec::new()), Some(VNode::Real)) {
        return;
    }
    let mut cur = root;
    for (i, c) in comps.iter().enumerate() {
        let last = i + 1 == comps.len();
        if last {
            cur.insert(c.clone(), VNode::Real);
            return;
        }
        let entry = cur
            .entry(c.clone())
            .or_insert_with(|| VNode::Virtual(BTreeMap::new()));
        match entry {
            VNode::Real => return,
            VNode::Virtual(m) => cur = m,
        }
    }
}

impl Archiver<'_, '_> {
    fn error(&mut self, msg: String) {
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
    fn virtual_dir(
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
        let file = open_for_backup(path).map_err(|e| Error::io(path, e))?;
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

    fn stream(
        &mut self,
        spec: &StreamSpec,
        prev: Option<&Content>,
    ) -> Result<(Node, StreamRecord)> {
        let mut cursor = prev
            .filter(|_| self.delta)
            .map(|c| ParentCursor::new(self.repo, self.index, c));
        let started = crate::sys::sysinfo::now();
        self.progress.current(&spec.name);
        let fail = |reason: String| Error::StreamFailed {
            name: spec.name.clone(),
            reason,
        };
        let (reader, mut child): (Box<dyn Read>, _) = match &spec.input {
            StreamInput::Stdin => (Box::new(std::io::stdin().lock()), None),
            StreamInput::Command(cmd) => {
                let mut child = Command::new("/bin/sh")
                    .arg("-c")
                    .arg(cmd)
                    .stdin(Stdio::null())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::inherit())
                    // Its own process group, so that on Ctrl-C the watcher below
                    // can stop the command together with everything it started.
                    .process_group(0)
                    .spawn()
                    .map_err(|e| fail(format!("cannot start `{cmd}`: {e}")))?;
                let out = child.stdout.take().expect("stdout is piped");
                (Box::new(out), Some(child))
            }
        };
        let mut sha = sha2::Sha256::new();
        let progress = self.progress;
        let store = &mut self.store;
        let chunker = &self.chunker;
        let done = AtomicBool::new(false);
        let child_pid = child.as_ref().map(|c| c.id());
        let read = std::thread::scope(|scope| {
            // On Ctrl-C, stop the command even if it writes nothing, so the
            // read below ends and the run unwinds promptly.
            if let Some(pid) = child_pid {
                let done = &done;
                scope.spawn(move || {
                    while !done.load(Ordering::Relaxed) {
                        if crate::interrupt::check().is_err() {
                            // SAFETY: plain kill(2) of the command's process group;
                            // the child is reaped only after this scope ends, so
                            // the group id still names it.
                            unsafe { libc::kill(-(pid as libc::pid_t), libc::SIGTERM) };
                            return;
                        }
                        std::thread::sleep(std::time::Duration::from_millis(50));
                    }
                });
            }
            let r = store_content(
                chunker,
                store,
                progress,
                Input {
                    reader,
                    size_hint: None,
                    sha: Some(&mut sha),
                },
                cursor.as_mut(),
                |e| fail(format!("reading its input failed: {e}")),
            );
            done.store(true, Ordering::Relaxed);
            r
        });
        let (read, content) = match read {
            Ok(r) => r,
            Err(e) => {
                if let Some(c) = child.as_mut() {
                    // The whole process group: `sh -c` forks the command
                    // rather than exec'ing it, and a survivor would run on
                    // (holding our standard error) after we exit.
                    // SAFETY: plain kill(2); the child is not reaped yet, so
                    // its group id still names it.
                    unsafe { libc::kill(-(c.id() as libc::pid_t), libc::SIGKILL) };
                    let _ = c.wait();
                }
                return Err(e);
            }
        };
        let exit_status = match child {
            Some(mut c) => {
                let status = c
                    .wait()
                    .map_err(|e| fail(format!("waiting for the command failed: {e}")))?;
                // A Ctrl-C on a terminal reaches the dump command too: that is
                // an interruption, not a failed dump.
                crate::interrupt::check()?;
                use std::os::unix::process::ExitStatusExt;
                if let Some(sig) = status.signal() {
                    return Err(fail(format!("the command was killed by signal {sig}")));
                }
                let code = status.code().unwrap_or(-1);
                if code != 0 {
                    return Err(fail(format!("the command exited with status {code}")));
                }
                Some(code)
            }
            None => None,
        };
        let ended = crate::sys::sysinfo::now();
        self.summary.files += 1;
        self.summary.bytes_read += read;
        self.summary.bytes_total += read;
        // SAFETY: geteuid/getegid have no preconditions.
        let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
        let node = Node {
            name: spec.name.as_bytes().to_vec(),
            kind: NodeKind::File {
                size: read,
                content,
            },
            mode: libc::S_IFREG | 0o600,
            uid,
            gid,
            user: self.names.user(uid),
            group: self.names.group(gid),
            mtime: ended.at,
            ctime: ended.at,
            inode: 0,
            device: 0,
            links: 1,
            xattrs: Vec::new(),
        };
        let record = StreamRecord {
            name: spec.name.clone(),
            command: match &spec.input {
                StreamInput::Stdin => None,
                StreamInput::Command(c) => Some(c.clone()),
            },
            exit_status,
            bytes: read,
            sha256: sha.finalize().into(),
            started,
            ended,
            shrunk_from: None,
        };
        Ok((node, record))
    }
}

/// What [`store_content`] reads: a file (with its size from `stat`) or a
/// stream (with the hash of every byte).
struct Input<'s, R> {
    reader: R,
    size_hint: Option<u64>,
    sha: Option<&'s mut sha2::Sha256>,
}

/// Chunks a reader into the store. Per batch of chunks, the keyed ids (and
/// the stream's SHA-256, when asked for) are computed in parallel; storing
/// stays in input order, so output is deterministic. With a cursor over the
/// parent version, each new chunk is offered a delta base.
fn store_content<R: Read>(
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

fn open_for_backup(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let noatime = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOATIME)
        .open(path);
    match noatime {
        Ok(f) => Ok(f),
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => std::fs::File::open(path),
        Err(e) => Err(e),
    }
}
