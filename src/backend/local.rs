//! [`LocalBackend`] is a directory: files are written under `tmp/`, fsynced,
//! hard-linked into place (which fails rather than overwrites) and the
//! directory is fsynced. A pack may be staged there while it is filled
//! ([`Backend::stage_new`]) and linked under its name once complete.

use super::names::{is_valid_name, pack_subdir, rel_path};
use super::{Backend, FileKind, StagedFile, README_NAME, RESERVE_NAME};
use crate::error::{Error, Result};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

pub struct LocalBackend {
    root: PathBuf,
    /// Recently read packs, kept open: a walk reads hundreds of small trees
    /// from a few tree packs, and `pread` on an open file is one system call
    /// where open, seek, read and close are four. Files are immutable, and a
    /// pack that prune removes still reads the same bytes through its handle.
    open_packs: std::sync::Mutex<Vec<(String, std::sync::Arc<File>)>>,
    /// Names `list` skipped as not a repository file's.
    skipped: std::sync::atomic::AtomicU64,
}

/// Packs kept open by [`LocalBackend`].
const OPEN_PACKS: usize = 16;

impl LocalBackend {
    pub fn new(root: impl Into<PathBuf>) -> LocalBackend {
        LocalBackend {
            root: root.into(),
            open_packs: Default::default(),
            skipped: Default::default(),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn path_of(&self, kind: FileKind, name: &str) -> PathBuf {
        path_in(&self.root, kind, name)
    }

    /// An open handle of a pack, from the most-recently-used cache.
    fn open_pack(&self, name: &str, path: &Path) -> Result<std::sync::Arc<File>> {
        let mut cache = self.open_packs.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = cache.iter().position(|(n, _)| n == name) {
            let hit = cache.remove(i);
            let f = hit.1.clone();
            cache.push(hit);
            return Ok(f);
        }
        let f = std::sync::Arc::new(File::open(path).map_err(|e| missing_or_io(path, e))?);
        if cache.len() >= OPEN_PACKS {
            cache.remove(0);
        }
        cache.push((name.to_string(), f.clone()));
        Ok(f)
    }

    /// Closes the cached handles of packs about to be removed, so their space is freed.
    fn forget_open(&self, kind: FileKind, names: &[String]) {
        if kind == FileKind::Pack {
            let mut cache = self.open_packs.lock().unwrap_or_else(|e| e.into_inner());
            cache.retain(|(n, _)| !names.contains(n));
        }
    }

    fn tmp_path(&self, hint: &str) -> Result<PathBuf> {
        let mut r = [0u8; 8];
        crate::crypto::fill_random(&mut r)?;
        Ok(self.root.join("tmp").join(format!(
            "{}.{}.tmp",
            hint.get(..16).unwrap_or(hint),
            hex::encode(r)
        )))
    }
}

/// Repository directories are the owner's only, whatever the umask (as
/// restic's): the files are encrypted, but their names and sizes say how
/// much is backed up and when. Files are created 0600, and content-addressed
/// ones made read-only once written.
fn private_dir(recursive: bool) -> fs::DirBuilder {
    use std::os::unix::fs::DirBuilderExt;
    let mut b = fs::DirBuilder::new();
    b.recursive(recursive).mode(0o700);
    b
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    f.write_all(bytes).map_err(|e| Error::io(path, e))?;
    f.sync_all().map_err(|e| Error::io(path, e))
}

/// Where a file of `kind` named `name` lives under the repository `root`.
fn path_in(root: &Path, kind: FileKind, name: &str) -> PathBuf {
    root.join(rel_path(kind, name))
}

/// Links the written (or failed) temporary file `tmp` into place as `dst`
/// and makes the name durable; `tmp` is removed either way. Errors name
/// the file being stored, not its temporary name. The file becomes
/// read-only (0400, as restic's): a content-addressed file never changes.
fn publish(tmp: &Path, dst: &Path, written: Result<()>) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let dir = dst.parent().expect("repository paths have a parent");
    let result = written
        .map_err(|e| match e {
            Error::NoSpace { .. } => Error::NoSpace {
                path: dst.to_path_buf(),
            },
            Error::Io { source, .. } => Error::Io {
                path: dst.to_path_buf(),
                source,
            },
            e => e,
        })
        .and_then(|()| {
            fs::set_permissions(tmp, fs::Permissions::from_mode(0o400))
                .map_err(|e| Error::io(dst, e))?;
            if !dir.exists() {
                private_dir(true)
                    .create(dir)
                    .map_err(|e| Error::io(dir, e))?;
            }
            match fs::hard_link(tmp, dst) {
                Ok(()) => Ok(()),
                // Same name means same bytes: the file is already there.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
                Err(e) => Err(Error::io(dst, e)),
            }
        });
    let _ = fs::remove_file(tmp);
    result?;
    sync_dir(dir)
}

/// A file under `tmp/` that is written, and pushed to the disk, as it grows.
struct LocalStaged {
    /// The repository's root.
    root: PathBuf,
    kind: FileKind,
    tmp: PathBuf,
    /// `None` once committed.
    file: Option<File>,
    len: u64,
    /// Bytes appended since the last background sync started.
    unsynced: u64,
    /// The background sync in progress, if any.
    syncing: Option<std::thread::JoinHandle<()>>,
}

/// Sync a staged file in the background every this many bytes. What is
/// left for `commit` to sync is at most this plus a sync in flight: 256 KiB
/// rather than 1 MiB shortened a day's web run by ~3 ms (medians of 15
/// alternating runs), with dumps unchanged.
const STAGE_SYNC_BYTES: u64 = 256 << 10;

impl StagedFile for LocalStaged {
    fn append(&mut self, bytes: &[u8]) -> Result<()> {
        let f = self.file.as_mut().expect("not committed");
        f.write_all(bytes).map_err(|e| Error::io(&self.tmp, e))?;
        self.len += bytes.len() as u64;
        self.unsynced += bytes.len() as u64;
        // What a sync costs grows with the bytes written since the last one
        // (on a VM, the host flushes them too), so most of it is paid here,
        // on a thread of its own, and little is left for `commit`.
        let idle = self.syncing.as_ref().is_none_or(|h| h.is_finished());
        if self.unsynced >= STAGE_SYNC_BYTES && idle {
            if let Ok(dup) = f.try_clone() {
                self.syncing = std::thread::Builder::new()
                    .name("sopvault-sync".into())
                    .spawn(move || {
                        let _ = dup.sync_data();
                    })
                    .ok();
                self.unsynced = 0;
            }
        }
        Ok(())
    }

    fn written(&self) -> u64 {
        self.len
    }

    fn commit(mut self: Box<Self>, name: &str, rest: &[u8]) -> Result<()> {
        let dst = path_in(&self.root, self.kind, name);
        let mut f = self.file.take().expect("committed once");
        let written = f
            .write_all(rest)
            .and_then(|()| f.sync_all())
            .map_err(|e| Error::io(&self.tmp, e));
        drop(f);
        publish(&self.tmp, &dst, written)
    }
}

impl Drop for LocalStaged {
    fn drop(&mut self) {
        if let Some(h) = self.syncing.take() {
            let _ = h.join();
        }
        if self.file.take().is_some() {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(|e| Error::io(dir, e))
}

impl Backend for LocalBackend {
    fn location(&self) -> String {
        self.root.display().to_string()
    }

    fn list(&self, kind: FileKind) -> Result<Vec<(String, u64)>> {
        let dir = self.root.join(kind.dir());
        let mut dirs = vec![dir.clone()];
        if kind == FileKind::Pack {
            dirs = Vec::new();
            for e in fs::read_dir(&dir).map_err(|e| Error::io(&dir, e))? {
                let e = e.map_err(|e| Error::io(&dir, e))?;
                if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                    dirs.push(e.path());
                }
            }
        }
        let list_dir = |d: &PathBuf| -> Result<Vec<(String, u64)>> {
            let rd = match fs::read_dir(d) {
                Ok(rd) => rd,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && kind == FileKind::Prune => {
                    return Ok(Vec::new())
                }
                Err(e) => return Err(Error::io(d, e)),
            };
            let mut out = Vec::new();
            for e in rd {
                let e = e.map_err(|e| Error::io(d, e))?;
                let name = e.file_name().to_string_lossy().into_owned();
                let md = e.metadata().map_err(|err| Error::io(e.path(), err))?;
                let placed = kind != FileKind::Pack
                    || d.file_name().and_then(|h| h.to_str()) == Some(pack_subdir(&name));
                if md.is_file() && is_valid_name(&name) && placed {
                    out.push((name, md.len()));
                } else {
                    self.skipped
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
            Ok(out)
        };
        // The 256 pack directories are listed in parallel.
        use rayon::prelude::*;
        let mut out: Vec<(String, u64)> = dirs
            .par_iter()
            .map(list_dir)
            .collect::<Result<Vec<_>>>()?
            .into_iter()
            .flatten()
            .collect();
        out.sort();
        Ok(out)
    }

    fn skipped_names(&self) -> u64 {
        self.skipped.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn read(&self, kind: FileKind, name: &str) -> Result<Vec<u8>> {
        let p = self.path_of(kind, name);
        fs::read(&p).map_err(|e| missing_or_io(&p, e))
    }

    fn read_range(&self, kind: FileKind, name: &str, offset: u64, len: usize) -> Result<Vec<u8>> {
        use std::os::unix::fs::FileExt;
        let p = self.path_of(kind, name);
        let f = match kind {
            FileKind::Pack => self.open_pack(name, &p)?,
            _ => std::sync::Arc::new(File::open(&p).map_err(|e| missing_or_io(&p, e))?),
        };
        let mut buf = vec![0u8; len];
        let mut got = 0;
        while got < len {
            let n = f.read_at(&mut buf[got..], offset + got as u64);
            match n {
                Ok(0) => {
                    return Err(Error::damaged(
                        p.display(),
                        format!("truncated: expected {len} bytes at offset {offset}, found {got}"),
                    ))
                }
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::io(&p, e)),
            }
        }
        Ok(buf)
    }

    fn size(&self, kind: FileKind, name: &str) -> Result<u64> {
        let p = self.path_of(kind, name);
        fs::metadata(&p)
            .map(|m| m.len())
            .map_err(|e| missing_or_io(&p, e))
    }

    fn write_new(&self, kind: FileKind, name: &str, bytes: &[u8]) -> Result<()> {
        let dst = self.path_of(kind, name);
        let tmp = self.tmp_path(name)?;
        let written = write_synced(&tmp, bytes);
        publish(&tmp, &dst, written)
    }

    fn stage_new(&self, kind: FileKind) -> Result<Option<Box<dyn StagedFile>>> {
        let tmp = self.tmp_path(kind.dir())?;
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| Error::io(&tmp, e))?;
        Ok(Some(Box::new(LocalStaged {
            root: self.root.clone(),
            kind,
            tmp,
            file: Some(file),
            len: 0,
            unsynced: 0,
            syncing: None,
        })))
    }

    fn remove(&self, kind: FileKind, name: &str) -> Result<()> {
        let p = self.path_of(kind, name);
        self.forget_open(kind, std::slice::from_ref(&name.to_string()));
        fs::remove_file(&p).map_err(|e| Error::io(&p, e))?;
        sync_dir(p.parent().unwrap())
    }

    fn remove_many(&self, kind: FileKind, names: &[String]) -> Result<()> {
        self.forget_open(kind, names);
        let mut dirs = std::collections::BTreeSet::new();
        for name in names {
            crate::interrupt::check()?;
            let p = self.path_of(kind, name);
            fs::remove_file(&p).map_err(|e| Error::io(&p, e))?;
            dirs.insert(p.parent().unwrap().to_path_buf());
            crate::sys::faults::point(&format!("remove:{}", kind.dir()));
        }
        dirs.iter().try_for_each(|d| sync_dir(d))
    }

    fn create(&self, readme: &str) -> Result<()> {
        if self.root.exists() {
            let mut entries = fs::read_dir(&self.root).map_err(|e| Error::io(&self.root, e))?;
            if entries.next().is_some() {
                return Err(Error::RepositoryExists {
                    path: self.root.clone(),
                });
            }
        }
        private_dir(true)
            .create(&self.root)
            .map_err(|e| Error::io(&self.root, e))?;
        for d in FileKind::ALL
            .iter()
            .map(|k| k.dir())
            .chain(["locks", "tmp"])
        {
            let p = self.root.join(d);
            private_dir(false)
                .create(&p)
                .map_err(|e| Error::io(&p, e))?;
        }
        for i in 0..256 {
            let p = self.root.join("packs").join(format!("{i:02x}"));
            private_dir(false)
                .create(&p)
                .map_err(|e| Error::io(&p, e))?;
        }
        let tmp = self.root.join("tmp").join("SOPVAULT.txt.new");
        write_synced(&tmp, readme.as_bytes())?;
        let dst = self.root.join(README_NAME);
        fs::rename(&tmp, &dst).map_err(|e| Error::io(&dst, e))?;
        sync_dir(&self.root)?;
        Ok(())
    }

    fn keep_reserve(&self, bytes: u64) -> Result<()> {
        use std::os::unix::fs::OpenOptionsExt;
        let p = self.root.join(RESERVE_NAME);
        let f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&p)
            .map_err(|e| Error::io(&p, e))?;
        let have = f.metadata().map_err(|e| Error::io(&p, e))?.len();
        if have >= bytes {
            return Ok(());
        }
        if let Err(e) = crate::sys::files::allocate(&f, bytes) {
            // Give back what a partial allocation took: a reserve that fills
            // the disk would only make the next write fail.
            let _ = f.set_len(have);
            return Err(Error::io(&p, e));
        }
        Ok(())
    }

    fn release_reserve(&self) -> Result<bool> {
        let p = self.root.join(RESERVE_NAME);
        match fs::remove_file(&p) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(Error::io(&p, e)),
        }
    }

    fn read_readme(&self) -> Result<Option<Vec<u8>>> {
        let p = self.root.join(README_NAME);
        match fs::read(&p) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(&p, e)),
        }
    }

    fn all_files(&self) -> Result<Vec<(String, u64)>> {
        fn walk(dir: &Path, rel: &str, out: &mut Vec<(String, u64)>) -> Result<()> {
            let rd = match fs::read_dir(dir) {
                Ok(rd) => rd,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
                Err(e) => return Err(Error::io(dir, e)),
            };
            for e in rd {
                let e = e.map_err(|e| Error::io(dir, e))?;
                let name = e.file_name().to_string_lossy().into_owned();
                let r = if rel.is_empty() {
                    name
                } else {
                    format!("{rel}/{name}")
                };
                let md = e.metadata().map_err(|err| Error::io(e.path(), err))?;
                if md.is_dir() {
                    walk(&e.path(), &r, out)?;
                } else {
                    out.push((r, md.len()));
                }
            }
            Ok(())
        }
        let mut out = Vec::new();
        walk(&self.root, "", &mut out)?;
        out.sort();
        Ok(out)
    }

    fn local_root(&self) -> Option<&Path> {
        Some(&self.root)
    }

    fn clean_tmp(&self) -> Result<usize> {
        let dir = self.root.join("tmp");
        let mut n = 0;
        for e in fs::read_dir(&dir).map_err(|e| Error::io(&dir, e))? {
            let e = e.map_err(|e| Error::io(&dir, e))?;
            if e.file_name().to_string_lossy().ends_with(".tmp") {
                fs::remove_file(e.path()).map_err(|err| Error::io(e.path(), err))?;
                n += 1;
            }
        }
        Ok(n)
    }

    fn write_lock(&self, name: &str, bytes: &[u8]) -> Result<()> {
        let dir = self.root.join("locks");
        let tmp = self.tmp_path("lock")?;
        if let Err(e) = write_synced(&tmp, bytes) {
            // On a full disk the file exists, empty: leave nothing behind.
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        let dst = dir.join(name);
        fs::rename(&tmp, &dst).map_err(|e| Error::io(&dst, e))?;
        sync_dir(&dir)
    }

    fn list_locks(&self) -> Result<Vec<String>> {
        let dir = self.root.join("locks");
        let mut out = Vec::new();
        for e in fs::read_dir(&dir).map_err(|e| Error::io(&dir, e))? {
            let e = e.map_err(|e| Error::io(&dir, e))?;
            let name = e.file_name().to_string_lossy().into_owned();
            if name.ends_with(".lock") {
                out.push(name);
            }
        }
        out.sort();
        Ok(out)
    }

    fn read_lock(&self, name: &str) -> Result<Vec<u8>> {
        let p = self.root.join("locks").join(name);
        fs::read(&p).map_err(|e| Error::io(&p, e))
    }

    fn remove_lock(&self, name: &str) -> Result<()> {
        let p = self.root.join("locks").join(name);
        match fs::remove_file(&p) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(&p, e)),
        }
    }
}

fn missing_or_io(p: &Path, e: std::io::Error) -> Error {
    if e.kind() == std::io::ErrorKind::NotFound {
        Error::damaged(p.display(), "file is missing")
    } else {
        Error::io(p, e)
    }
}
