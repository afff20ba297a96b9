//! The parent snapshot's trees, read ahead of the archiver.
//!
//! On a rerun the archiver compares each directory with the same directory in
//! the parent snapshot, whose tree must first be read, decrypted, decompressed
//! and decoded: for a web tree of a few hundred directories that is several
//! milliseconds on the archiver's thread, while the other cores wait.
//! [`ParentTrees`] does it on a thread of its own. It walks the parent
//! snapshot in the archiver's order (pre-order, names sorted) and only into
//! the directories the archiver will visit (those leading to or under a
//! backed-up path, not excluded), so each subtree is ready when asked for.
//!
//! It is a cache and nothing more: the archiver takes a tree only when both
//! its path and its id match the request, and loads the tree itself otherwise
//! (a directory the read-ahead has not reached yet, or that it skipped).
//! Trees waiting to be taken are bounded by an estimate of their size in
//! memory.

use crate::format::tree::{NodeKind, Tree};
use crate::ids::ChunkId;
use crate::index::Index;
use crate::repo::Repository;
use std::collections::VecDeque;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::Scope;

/// How much decoded tree data may wait for the archiver (at least one tree).
const BYTES_AHEAD: usize = 8 << 20;
/// A decoded node's share of memory, for the bound above (names and chunk
/// lists make real nodes vary; this only has to keep the order of magnitude).
const NODE_BYTES: usize = 256;

/// Trees of the parent snapshot decoded ahead; dropping it stops the thread.
pub struct ParentTrees {
    shared: Arc<Shared>,
}

struct Shared {
    state: Mutex<State>,
    /// Signalled when a tree is queued or the walk ends.
    ready: Condvar,
    /// Signalled when the archiver takes a tree or stops the walk.
    room: Condvar,
}

#[derive(Default)]
struct State {
    queue: VecDeque<Ahead>,
    bytes: usize,
    done: bool,
    stop: bool,
}

struct Ahead {
    /// Path components below `/`, which orders the queue as the walk does.
    path: Vec<Vec<u8>>,
    id: ChunkId,
    /// `None` when the tree could not be read: the archiver then tries
    /// itself and reports nothing new (a damaged parent only costs reuse).
    tree: Option<Tree>,
    bytes: usize,
}

/// The components of an absolute path, as the queue orders them.
pub fn components(path: &Path) -> Vec<Vec<u8>> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(s.as_bytes().to_vec()),
            _ => None,
        })
        .collect()
}

impl ParentTrees {
    /// Starts reading the subtrees of `root` (the parent snapshot's `/`) on a
    /// thread of `scope`. `wanted(path, name)` says whether the archiver will
    /// enter the directory at `path`.
    pub fn start<'s, W>(
        scope: &'s Scope<'s, '_>,
        repo: &'s Repository,
        index: &'s Index,
        root: &Tree,
        wanted: W,
    ) -> ParentTrees
    where
        W: Fn(&Path, &[u8]) -> bool + Send + 's,
    {
        Self::start_with(scope, repo, index, root, wanted, BYTES_AHEAD)
    }

    fn start_with<'s, W>(
        scope: &'s Scope<'s, '_>,
        repo: &'s Repository,
        index: &'s Index,
        root: &Tree,
        wanted: W,
        budget: usize,
    ) -> ParentTrees
    where
        W: Fn(&Path, &[u8]) -> bool + Send + 's,
    {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            ready: Condvar::new(),
            room: Condvar::new(),
        });
        let mut stack = Vec::new();
        push_children(&mut stack, &[], root, &wanted);
        let producer = shared.clone();
        let started = std::thread::Builder::new()
            .name("sopvault-parent".into())
            .spawn_scoped(scope, move || {
                read_ahead(&producer, repo, index, stack, &wanted, budget);
                producer.lock().done = true;
                producer.ready.notify_all();
            });
        if started.is_err() {
            // No thread: every request falls back to the archiver's own read.
            shared.lock().done = true;
        }
        ParentTrees { shared }
    }

    /// The tree `id` of the directory at `path` (its components), if it was
    /// read ahead; `None` means: read it yourself.
    pub fn take(&mut self, path: &[Vec<u8>], id: &ChunkId) -> Option<Tree> {
        let mut st = self.shared.lock();
        loop {
            if let Some(front) = st.queue.front() {
                match front.path.as_slice().cmp(path) {
                    // A directory the archiver did not enter (gone since).
                    std::cmp::Ordering::Less => {
                        let gone = st.queue.pop_front().expect("front exists");
                        st.bytes -= gone.bytes;
                        self.shared.room.notify_one();
                        continue;
                    }
                    std::cmp::Ordering::Equal if front.id == *id => {
                        let hit = st.queue.pop_front().expect("front exists");
                        st.bytes -= hit.bytes;
                        self.shared.room.notify_one();
                        return hit.tree;
                    }
                    // Past the request, or another tree at the same path.
                    _ => return None,
                }
            }
            if st.done {
                return None;
            }
            st = self
                .shared
                .ready
                .wait(st)
                .unwrap_or_else(|e| e.into_inner());
        }
    }
}

impl Drop for ParentTrees {
    fn drop(&mut self) {
        let mut st = self.shared.lock();
        st.stop = true;
        st.queue.clear();
        drop(st);
        self.shared.room.notify_all();
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

type Pending = Vec<(Vec<Vec<u8>>, ChunkId)>;

/// Pushes the wanted subdirectories of `tree` (at `path`) so that the first
/// by name is popped first.
fn push_children<W: Fn(&Path, &[u8]) -> bool>(
    stack: &mut Pending,
    path: &[Vec<u8>],
    tree: &Tree,
    wanted: &W,
) {
    let dir = to_path(path);
    for node in tree.nodes.iter().rev() {
        if let NodeKind::Dir { tree: id } = &node.kind {
            if wanted(&dir.join(OsStr::from_bytes(&node.name)), &node.name) {
                let mut child = path.to_vec();
                child.push(node.name.clone());
                stack.push((child, *id));
            }
        }
    }
}

fn to_path(components: &[Vec<u8>]) -> PathBuf {
    let mut p = PathBuf::from("/");
    for c in components {
        p.push(OsStr::from_bytes(c));
    }
    p
}

fn read_ahead<W: Fn(&Path, &[u8]) -> bool>(
    shared: &Shared,
    repo: &Repository,
    index: &Index,
    mut stack: Pending,
    wanted: &W,
    budget: usize,
) {
    while let Some((path, id)) = stack.pop() {
        let shown = to_path(&path).display().to_string();
        let tree = repo.load_tree(index, &id, &shown).ok();
        if let Some(t) = &tree {
            push_children(&mut stack, &path, t, wanted);
        }
        let bytes = tree.as_ref().map_or(0, |t| t.nodes.len() * NODE_BYTES);
        let mut st = shared.lock();
        while !st.stop && !st.queue.is_empty() && st.bytes + bytes > budget {
            st = shared.room.wait(st).unwrap_or_else(|e| e.into_inner());
        }
        if st.stop {
            return;
        }
        st.bytes += bytes;
        st.queue.push_back(Ahead {
            path,
            id,
            tree,
            bytes,
        });
        drop(st);
        shared.ready.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A repository with one snapshot of `src`: a/ (x/, y/ (z/)), b/, c
    /// (a file), and the trees of every directory in the archiver's order.
    fn fixture(dir: &Path) -> (Repository, Tree, Pending) {
        let src = dir.join("src");
        for d in ["a/x", "a/y/z", "b"] {
            std::fs::create_dir_all(src.join(d)).unwrap();
            std::fs::write(src.join(d).join("f"), d).unwrap();
        }
        std::fs::write(src.join("c"), "file").unwrap();
        let repo = crate::repo::scratch_with_snapshot(dir, &src);
        let index = repo.index().unwrap();
        let snaps = repo.snapshots().unwrap();
        let root = repo.load_tree(&index, &snaps[0].1.root, "/").unwrap();
        fn visit(
            repo: &Repository,
            index: &Index,
            path: Vec<Vec<u8>>,
            tree: &Tree,
            out: &mut Pending,
        ) {
            for n in &tree.nodes {
                if let NodeKind::Dir { tree: id } = &n.kind {
                    let mut p = path.clone();
                    p.push(n.name.clone());
                    out.push((p.clone(), *id));
                    let sub = repo.load_tree(index, id, "test").unwrap();
                    visit(repo, index, p, &sub, out);
                }
            }
        }
        let mut order = Vec::new();
        visit(&repo, &index, Vec::new(), &root, &mut order);
        (repo, root, order)
    }

    #[test]
    fn every_tree_in_walk_order_is_ready_and_equal_to_a_direct_read() {
        let tmp = tempfile::tempdir().unwrap();
        let (repo, root, order) = fixture(tmp.path());
        let index = repo.index().unwrap();
        assert!(order.len() >= 6, "{order:?}");
        std::thread::scope(|s| {
            let mut ahead = ParentTrees::start(s, &repo, &index, &root, |_: &Path, _: &[u8]| true);
            for (path, id) in &order {
                let got = ahead.take(path, id).expect("read ahead");
                let direct = repo.load_tree(&index, id, "test").unwrap();
                assert_eq!(got.encode(), direct.encode());
            }
            // Past the end: nothing, and no hang.
            assert!(ahead.take(&[b"zzz".to_vec()], &order[0].1).is_none());
        });
    }

    #[test]
    fn skipped_directories_are_dropped_and_surprises_fall_back() {
        let tmp = tempfile::tempdir().unwrap();
        let (repo, root, order) = fixture(tmp.path());
        let index = repo.index().unwrap();
        let at = |suffix: &str| {
            order
                .iter()
                .find(|(p, _)| {
                    let s = p.join(&b'/');
                    s.ends_with(suffix.as_bytes())
                })
                .cloned()
                .unwrap()
        };
        let (a, y, z, b) = (at("src/a"), at("src/a/y"), at("src/a/y/z"), at("src/b"));
        std::thread::scope(|s| {
            // One tree in flight at a time: the read-ahead waits for the archiver.
            let mut ahead =
                ParentTrees::start_with(s, &repo, &index, &root, |_: &Path, _: &[u8]| true, 1);
            assert!(ahead.take(&a.0, &a.1).is_some());
            // a/x is skipped (deleted since, say): dropped on the way to a/y.
            assert!(ahead.take(&y.0, &y.1).is_some());
            // The wrong id at the right path is not handed out...
            assert!(ahead.take(&z.0, &b.1).is_none());
            // ...and a directory already passed is not either.
            assert!(ahead.take(&a.0, &a.1).is_none());
            assert!(ahead.take(&b.0, &b.1).is_some());
        });
    }

    #[test]
    fn unwanted_directories_are_not_read_and_dropping_stops_a_blocked_reader() {
        let tmp = tempfile::tempdir().unwrap();
        let (repo, root, order) = fixture(tmp.path());
        let index = repo.index().unwrap();
        let y = order
            .iter()
            .find(|(p, _)| p.last().map(Vec::as_slice) == Some(b"y".as_slice()))
            .cloned()
            .unwrap();
        std::thread::scope(|s| {
            let not_a = |p: &Path, _: &[u8]| !p.ends_with("src/a");
            let mut ahead = ParentTrees::start(s, &repo, &index, &root, not_a);
            assert!(ahead.take(&y.0, &y.1).is_none(), "a/ was not to be read");
        });
        // With nothing taken the reader blocks on its budget; the scope only
        // ends if dropping the handle releases it.
        std::thread::scope(|s| {
            let ahead =
                ParentTrees::start_with(s, &repo, &index, &root, |_: &Path, _: &[u8]| true, 1);
            std::thread::sleep(std::time::Duration::from_millis(50));
            drop(ahead);
        });
    }
}
