//! Reading directories and metadata for `snapshot`, optionally ahead of it.
//!
//! A daily snapshot of an unchanged tree spends its time in `getdents` and
//! `lstat`, neither of which needs the key (xattrs and symlink targets of
//! unchanged entries come from the parent snapshot: `fsmeta::read_node`).
//! [`Prescan`] does them on a thread of its own, in exactly the order the
//! archiver asks for directories (pre-order, names sorted, the same excludes
//! and file-system boundaries), and hands over one [`Listing`] per directory
//! through a bounded channel. The command line starts it before the
//! passphrase's key derivation, so the walk overlaps with Argon2id.
//!
//! The archiver checks that each listing is for the directory it expects;
//! on any mismatch (the tree changed between the two looks) it drops the
//! prescan and lists directly from then on, with [`list_dir`] — the same code.

use crate::error::{Error, Result};
use crossbeam_channel::{bounded, Receiver, Sender};
use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use std::collections::HashSet;
use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

/// What is left out of a snapshot: exclude globs and the repository itself.
#[derive(Clone, Debug)]
pub struct Excludes {
    names: GlobSet,
    paths: GlobSet,
    /// Patterns that are not UTF-8 (a name in another encoding), matched
    /// literally: globs are text, file names are bytes.
    literal_names: HashSet<Vec<u8>>,
    literal_paths: HashSet<Vec<u8>>,
    /// The repository's directory under every name the walk can meet it by.
    repo: Vec<PathBuf>,
}

impl Excludes {
    /// Globs without `/` match a name at any depth, globs with `/` the
    /// absolute path; blank lines and `#` comments are skipped. A pattern
    /// that is not valid UTF-8 matches that exact name (or path) literally.
    /// `repo` is the repository's directory as the walk would name it (one
    /// path for each way the walk can reach it).
    pub fn new(patterns: &[OsString], repo: Vec<PathBuf>) -> Result<Excludes> {
        let mut names = GlobSetBuilder::new();
        let mut paths = GlobSetBuilder::new();
        let (mut literal_names, mut literal_paths) = (HashSet::new(), HashSet::new());
        for p in patterns {
            let p = p.as_bytes().trim_ascii();
            if p.is_empty() || p.starts_with(b"#") {
                continue;
            }
            let mut bare = p;
            while let [rest @ .., b'/'] = bare {
                bare = rest;
            }
            let is_path = bare.contains(&b'/');
            let Ok(text) = std::str::from_utf8(bare) else {
                if is_path {
                    literal_paths.insert(bare.to_vec());
                } else {
                    literal_names.insert(bare.to_vec());
                }
                continue;
            };
            let shown = crate::escape::escape(p);
            let glob = GlobBuilder::new(text)
                .literal_separator(true)
                .backslash_escape(true)
                .build()
                .map_err(|e| Error::Usage(format!("invalid exclude pattern {shown:?}: {e}")))?;
            if is_path {
                paths.add(glob);
            } else {
                names.add(glob);
            }
        }
        let built = |b: GlobSetBuilder| {
            b.build()
                .map_err(|e| Error::Usage(format!("invalid exclude patterns: {e}")))
        };
        Ok(Excludes {
            names: built(names)?,
            paths: built(paths)?,
            literal_names,
            literal_paths,
            repo,
        })
    }

    pub fn excluded(&self, path: &Path, name: &[u8]) -> bool {
        self.repo.iter().any(|r| r == path)
            || self.names.is_match(std::ffi::OsStr::from_bytes(name))
            || self.paths.is_match(path)
            || self.literal_names.contains(name)
            || self.literal_paths.contains(path.as_os_str().as_bytes())
    }

    pub fn repo(&self) -> &[PathBuf] {
        &self.repo
    }
}

/// One directory entry: its `lstat`, or the message of why it failed. (Its
/// xattrs are read by the archiver, and only when the parent snapshot's
/// node does not already hold them: see `fsmeta::read_node`.)
pub struct Entry {
    pub name: Vec<u8>,
    pub path: PathBuf,
    pub stat: std::result::Result<std::fs::Metadata, String>,
}

/// One directory's entries, sorted by name, with excluded names left out.
pub struct Listing {
    pub dir: PathBuf,
    pub entries: Vec<Entry>,
    /// Why the directory, or some of its entries, could not be listed.
    pub errors: Vec<String>,
}

/// `lstat` of one path, with the message the archiver reports on failure.
pub fn stat_entry(path: &Path) -> std::result::Result<std::fs::Metadata, String> {
    std::fs::symlink_metadata(path).map_err(|e| format!("{}: {e}", path.display()))
}

/// Lists and stats one directory.
pub fn list_dir(dir: &Path, excludes: &Excludes) -> Listing {
    let mut listing = Listing {
        dir: dir.to_path_buf(),
        entries: Vec::new(),
        errors: Vec::new(),
    };
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) => {
            listing
                .errors
                .push(format!("{}: cannot list directory: {e}", dir.display()));
            return listing;
        }
    };
    let mut found: Vec<Vec<u8>> = Vec::new();
    for e in rd {
        match e {
            Ok(e) => found.push(e.file_name().as_bytes().to_vec()),
            Err(e) => listing
                .errors
                .push(format!("{}: cannot list directory: {e}", dir.display())),
        }
    }
    found.sort_unstable();
    for name in found {
        let path = dir.join(std::ffi::OsStr::from_bytes(&name));
        if excludes.excluded(&path, &name) {
            continue;
        }
        let stat = stat_entry(&path);
        listing.entries.push(Entry { name, path, stat });
    }
    listing
}

/// The device that bounds the walk below an entry, and whether the archiver
/// descends into it: a directory that `--one-file-system` does not cross.
pub fn descends(entry: &Entry, root_dev: Option<u64>, one_file_system: bool) -> Option<u64> {
    let md = entry.stat.as_ref().ok()?;
    if !md.is_dir() {
        return None;
    }
    let root_dev = root_dev.unwrap_or(md.dev());
    (!(one_file_system && md.dev() != root_dev)).then_some(root_dev)
}

/// Listings travel in batches of about this many entries (a huge directory
/// is split into parts of exactly this many; small ones are grouped).
const PART_ENTRIES: usize = 1024;
/// Batches in flight between the prescan thread and the archiver: with
/// [`PART_ENTRIES`], this bounds the memory the read-ahead holds (~16k entries).
const BATCHES_IN_FLIGHT: usize = 16;

/// A walk of the paths to back up, running ahead on its own thread.
pub struct Prescan {
    rx: Option<Receiver<Vec<Listing>>>,
    pending: std::collections::VecDeque<Listing>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    roots: Vec<PathBuf>,
    one_file_system: bool,
    repo: Vec<PathBuf>,
}

impl Prescan {
    /// Starts walking `roots` (each a directory the archiver will list, with
    /// its device; `None` for `/`) in the archiver's order.
    pub fn start(roots: Vec<PathBuf>, excludes: Excludes, one_file_system: bool) -> Prescan {
        let (tx, rx) = bounded(BATCHES_IN_FLIGHT);
        let stop = Arc::new(AtomicBool::new(false));
        let repo = excludes.repo().to_vec();
        let thread = {
            let stop = stop.clone();
            let roots = roots.clone();
            std::thread::Builder::new()
                .name("sopvault-prescan".into())
                .spawn(move || {
                    let mut w = Walker {
                        tx,
                        batch: Vec::new(),
                        batch_entries: 0,
                        stop,
                        excludes,
                        one_file_system,
                    };
                    for root in &roots {
                        let root_dev = if root.as_os_str() == "/" {
                            None
                        } else {
                            match std::fs::symlink_metadata(root) {
                                Ok(md) if md.is_dir() => Some(md.dev()),
                                _ => continue,
                            }
                        };
                        if w.walk(root, root_dev).is_err() {
                            return;
                        }
                    }
                    let _ = w.flush();
                })
                .ok()
        };
        Prescan {
            rx: Some(rx),
            pending: Default::default(),
            stop,
            thread,
            roots,
            one_file_system,
            repo,
        }
    }

    /// Whether this prescan walks what the archiver is about to walk.
    pub fn matches(&self, roots: &[PathBuf], one_file_system: bool, excludes: &Excludes) -> bool {
        self.thread.is_some()
            && self.roots == roots
            && self.one_file_system == one_file_system
            && self.repo == excludes.repo()
    }

    /// The listing of `dir` if it is the next one. `None` means the walks
    /// diverged: the caller lists directly from now on.
    pub fn take(&mut self, dir: &Path) -> Option<Listing> {
        let mut first = self.next_part(dir)?;
        // More parts follow while a part is full; an empty part ends a full one.
        let mut last_len = first.entries.len();
        while last_len == PART_ENTRIES {
            let part = self.next_part(dir)?;
            last_len = part.entries.len();
            first.entries.extend(part.entries);
            first.errors.extend(part.errors);
        }
        Some(first)
    }

    fn next_part(&mut self, dir: &Path) -> Option<Listing> {
        if self.pending.is_empty() {
            let batch = self.rx.as_ref()?.recv().ok();
            self.pending.extend(batch.into_iter().flatten());
        }
        match self.pending.pop_front() {
            Some(part) if part.dir == dir => Some(part),
            _ => {
                self.rx = None;
                self.pending.clear();
                None
            }
        }
    }
}

impl Drop for Prescan {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Dropping the receiver ends a send the thread is blocked in.
        self.rx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct Walker {
    tx: Sender<Vec<Listing>>,
    batch: Vec<Listing>,
    batch_entries: usize,
    stop: Arc<AtomicBool>,
    excludes: Excludes,
    one_file_system: bool,
}

/// The archiver stopped listening.
struct Stopped;

impl Walker {
    fn walk(&mut self, dir: &Path, root_dev: Option<u64>) -> std::result::Result<(), Stopped> {
        if self.stop.load(Ordering::Relaxed) || crate::interrupt::check().is_err() {
            return Err(Stopped);
        }
        let listing = list_dir(dir, &self.excludes);
        let below: Vec<(PathBuf, u64)> = listing
            .entries
            .iter()
            .filter_map(|e| Some((e.path.clone(), descends(e, root_dev, self.one_file_system)?)))
            .collect();
        self.send(listing)?;
        for (path, dev) in below {
            self.walk(&path, Some(dev))?;
        }
        Ok(())
    }

    /// Queues a listing in parts; a listing whose last part is full is
    /// followed by an empty one, so the receiver knows where it ends.
    fn send(&mut self, listing: Listing) -> std::result::Result<(), Stopped> {
        let Listing {
            dir,
            mut entries,
            errors,
        } = listing;
        let mut errors = Some(errors);
        loop {
            let rest = entries.split_off(entries.len().min(PART_ENTRIES));
            let full = entries.len() == PART_ENTRIES;
            // An empty directory still costs its place in the batch.
            self.batch_entries += entries.len().max(1);
            self.batch.push(Listing {
                dir: dir.clone(),
                entries,
                errors: errors.take().unwrap_or_default(),
            });
            if self.batch_entries >= PART_ENTRIES {
                self.flush()?;
            }
            if !full {
                return Ok(());
            }
            entries = rest;
        }
    }

    fn flush(&mut self) -> std::result::Result<(), Stopped> {
        self.batch_entries = 0;
        if self.batch.is_empty() {
            return Ok(());
        }
        self.tx
            .send(std::mem::take(&mut self.batch))
            .map_err(|_| Stopped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every directory below `dir` in the archiver's order, listed directly.
    fn direct(dir: &Path, ex: &Excludes, out: &mut Vec<(PathBuf, Vec<Vec<u8>>)>) {
        let l = list_dir(dir, ex);
        out.push((
            dir.to_path_buf(),
            l.entries.iter().map(|e| e.name.clone()).collect(),
        ));
        for e in &l.entries {
            if descends(e, None, false).is_some() {
                direct(&e.path, ex, out);
            }
        }
    }

    fn tree() -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        // Sizes around the part size: split, exactly full, and grouped.
        for (dir, n) in [
            ("big", 2500),
            ("full", PART_ENTRIES),
            ("a/b/c", 3),
            ("skip", 2),
        ] {
            std::fs::create_dir_all(r.join(dir)).unwrap();
            for i in 0..n {
                std::fs::write(r.join(dir).join(format!("f{i:05}")), b"x").unwrap();
            }
        }
        std::fs::create_dir(r.join("empty")).unwrap();
        std::os::unix::fs::symlink("a", r.join("link")).unwrap();
        t
    }

    #[test]
    fn prescan_gives_the_direct_listings_in_order() {
        let t = tree();
        let ex = Excludes::new(&["skip".into()], Vec::new()).unwrap();
        let mut want = Vec::new();
        direct(t.path(), &ex, &mut want);
        assert_eq!(
            want.len(),
            7,
            "root, a, a/b, a/b/c, big, empty, full; nothing of skip"
        );
        assert!(!want.iter().any(|(d, _)| d.ends_with("skip")));
        let mut p = Prescan::start(vec![t.path().to_path_buf()], ex, false);
        for (dir, names) in &want {
            let l = p.take(dir).expect("the next listing");
            assert_eq!(&l.dir, dir);
            let got: Vec<Vec<u8>> = l.entries.iter().map(|e| e.name.clone()).collect();
            assert_eq!(&got, names, "{}", dir.display());
            assert!(l.entries.iter().all(|e| e.stat.is_ok()));
        }
        assert_eq!(
            want.iter()
                .find(|(d, _)| d.ends_with("big"))
                .unwrap()
                .1
                .len(),
            2500
        );
    }

    #[test]
    fn a_surprise_stops_the_prescan_for_good() {
        let t = tree();
        let ex = Excludes::new(&[], Vec::new()).unwrap();
        let mut p = Prescan::start(vec![t.path().to_path_buf()], ex, false);
        assert!(p.take(&t.path().join("not-next")).is_none());
        // Even the listing that was next is no longer given out.
        assert!(p.take(t.path()).is_none());
    }

    #[test]
    fn dropping_a_blocked_prescan_returns() {
        let t = tree();
        let ex = Excludes::new(&[], Vec::new()).unwrap();
        // Nothing is taken: the thread fills the channel and blocks; drop must end it.
        let p = Prescan::start(vec![t.path().to_path_buf()], ex, false);
        std::thread::sleep(std::time::Duration::from_millis(50));
        drop(p);
    }
}
