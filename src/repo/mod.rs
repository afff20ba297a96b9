//! The repository: owns the backend, the keys, the config and the write order.
//!
//! Opening tries the password against every key file, then reads the single
//! config. Writers go through [`crate::write::store::BlobStore`] for packs and index
//! files and through [`Repository::write_snapshot`] for manifests; the store
//! writes packs before the index file that lists them, and callers write the
//! manifest only after the store has finished, so a crash at any moment
//! leaves a repository whose every snapshot is complete.
//!
//! Layer: the one door to stored bytes. Uses `backend`, `index`, `format`,
//! `blob`, `sys`; [`lock`] holds repository locks and [`chain`] decodes delta chains,
//! [`snapshots`] lists and finds manifests, [`read`] reads blobs, and
//! [`writer`] is the write side's handle for the store's threads.

pub mod chain;
pub mod lock;
mod maintenance;
pub mod mirror;
pub mod read;
pub mod snapshots;
pub mod writer;

pub use snapshots::{recorded_name, resolve_snapshot, unique_names, NAME_ID_SEPARATOR};

use crate::backend::{Backend, FileKind, README_NAME};
use crate::blob;
use crate::chunker::{Chunker, ChunkerProfile};
use crate::crypto::{MasterKey, Password, Secret32};
use crate::error::{Error, Result};
use crate::format::config::{Config, DEFAULT_COMPRESSION_LEVEL, DEFAULT_PACK_SIZE};
use crate::format::keyfile::{self, Kdf, KdfParams, KeyFile};
use crate::ids::{sha256, ChunkId, ConfigId, IndexId, KeyId, PackId};
use crate::index::{Index, IndexFile};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// How to open a repository.
#[derive(Clone, Debug, Default)]
pub struct OpenOptions {
    /// Where to keep the merged index; `None` uses a private temporary directory.
    pub cache_dir: Option<PathBuf>,
    /// The budget of the cache of decoded delta bases; `None` for the
    /// default of 32 MiB. It pays off when several versions of a file are
    /// read (mount, check). Reading one version (cat, restore) shares no
    /// base between chunks, so there it only holds memory: `Some(0)`.
    pub base_cache_bytes: Option<usize>,
}

/// Settings chosen at `init`.
#[derive(Clone, Debug)]
pub struct InitOptions {
    pub kdf: KdfParams,
    pub chunker: ChunkerProfile,
    pub compression_level: i32,
    pub pack_size: u32,
}

impl Default for InitOptions {
    fn default() -> Self {
        InitOptions {
            kdf: KdfParams::default(),
            chunker: ChunkerProfile::default(),
            compression_level: DEFAULT_COMPRESSION_LEVEL,
            pack_size: DEFAULT_PACK_SIZE,
        }
    }
}

/// A key file as shown by `key list`.
#[derive(Clone, Debug)]
pub struct KeyEntry {
    pub id: KeyId,
    pub label: String,
    pub created: i64,
    pub kdf: Kdf,
    pub current: bool,
}

pub struct Repository {
    backend: Arc<dyn Backend>,
    root: PathBuf,
    key: Arc<MasterKey>,
    config: Config,
    key_id: KeyId,
    cache_dir: PathBuf,
    _tmp_cache: Option<TempDir>,
    /// Damaged files that reads skipped; the command line prints them.
    warnings: std::sync::Mutex<Vec<String>>,
    /// Notices about how this run works around its surroundings (a full
    /// disk, an unusable cache): shown like warnings, but not damage.
    notices: std::sync::Mutex<Vec<String>>,
    /// Plaintexts of delta bases recently decoded.
    bases: crate::repo::chain::BaseCache,
    /// Listings taken under this run's lock while the key was derived
    /// ([`Repository::open_locked`]); the first listing of each kind uses it.
    prelisted: std::sync::Mutex<Prelisted>,
}

/// What [`Repository::open_locked`] lists ahead, in this order, so that each
/// listing is at least as new as the files that refer to it: every listed
/// snapshot's index file is listed, and every listed index file's packs.
#[derive(Default)]
struct Prelisted {
    snapshots: Option<Vec<(String, u64)>>,
    index: Option<Vec<(String, u64)>>,
    packs: Option<Vec<(String, u64)>>,
}

/// Whether [`Repository::open_locked`] lists snapshots, index files and packs
/// ahead (for commands that load the index) or not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListAhead {
    Index,
    Nothing,
}

/// Bytes of decoded delta bases a repository keeps for reuse.
const BASE_CACHE_BYTES: usize = 32 * 1024 * 1024;
/// The smallest space reserve: a lock, a prune record and a small index.
pub const RESERVE_MIN: u64 = 4 << 20;
/// Reserve per indexed blob: a compacted index entry takes 92 bytes
/// (format-spec §12), and the rest covers its packs and the prune record.
pub const RESERVE_BYTES_PER_ENTRY: u64 = 100;

/// A directory removed on drop.
struct TempDir(PathBuf);
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn readme(repo_id: &[u8; 32]) -> String {
    format!(
        "This directory is a sopvault repository.\n\
         Format version: {}\n\
         Repository id: {}\n\
         Every file below config/, keys/, packs/, index/, snapshots/ and prune/ is named by\n\
         the SHA-256 of its bytes: `sha256sum FILE` must print the file's name.\n\
         The format is described in format-spec.md of the sopvault sources.\n",
        crate::format::FORMAT_VERSION,
        hex::encode(repo_id)
    )
}

impl Repository {
    /// Creates a repository in an empty or missing directory, or at `s3://BUCKET/PREFIX`.
    pub fn init(
        path: &Path,
        password: &Password,
        opts: &InitOptions,
        open: &OpenOptions,
    ) -> Result<Repository> {
        Repository::init_backend(crate::backend::open(path)?, password, opts, open)
    }

    /// Creates a repository in an empty place of any backend.
    pub fn init_backend(
        backend: Arc<dyn Backend>,
        password: &Password,
        opts: &InitOptions,
        open: &OpenOptions,
    ) -> Result<Repository> {
        let path = place_of(backend.as_ref());
        let path = path.as_path();
        opts.chunker.validate()?;
        let mut repo_id = [0u8; 32];
        crate::crypto::fill_random(&mut repo_id)?;
        let master = Secret32::random()?;
        backend.create(&readme(&repo_id))?;
        let label = format!(
            "{}@{}",
            crate::sys::sysinfo::username(),
            crate::sys::sysinfo::hostname()
        );
        let now = chrono::Utc::now().timestamp();
        let keybytes = keyfile::create(
            &master,
            &repo_id,
            password,
            Kdf::Argon2id(opts.kdf),
            &label,
            now,
        )?;
        let key_id = KeyId(sha256(&keybytes));
        backend.write_new(FileKind::Key, &key_id.to_hex(), &keybytes)?;
        let key = MasterKey::from_master(master);
        let config = Config {
            repo_id,
            chunker: opts.chunker,
            pack_size: opts.pack_size,
            compression_level: opts.compression_level,
            created: now,
            features: vec![crate::format::config::FEATURE_DELTA.to_string()],
        };
        let cbytes = config.encode(&key)?;
        backend.write_new(
            FileKind::Config,
            &ConfigId(sha256(&cbytes)).to_hex(),
            &cbytes,
        )?;
        let repo = Repository::assemble(backend, path, Arc::new(key), config, key_id, open)?;
        repo.keep_reserve(0);
        Ok(repo)
    }

    /// The same repository on another backend — a mirror of it, which holds
    /// the same config and keys — opened with the key already in hand, with
    /// a private index cache (a mirror's index differs from this one's).
    pub fn on_mirror(&self, backend: Arc<dyn Backend>) -> Result<Repository> {
        let path = place_of(backend.as_ref());
        Repository::assemble(
            backend,
            &path,
            self.key.clone(),
            self.config.clone(),
            self.key_id,
            &OpenOptions::default(),
        )
    }

    /// Opens an existing repository (a directory or `s3://BUCKET/PREFIX`) with a password.
    pub fn open(path: &Path, password: &Password, open: &OpenOptions) -> Result<Repository> {
        Repository::open_backend(crate::backend::open(path)?, password, open)
    }

    /// Fails with [`Error::NoRepository`] unless the backend holds a repository's `SOPVAULT.txt` and config.
    pub fn probe(backend: &dyn Backend) -> Result<()> {
        let path = place_of(backend);
        let missing = match backend.local_root() {
            Some(root) => !root.join(README_NAME).is_file() || !root.join("config").is_dir(),
            None => backend.read_readme()?.is_none(),
        };
        if missing {
            let reason = match backend.local_root() {
                Some(root) if !root.exists() => "the directory does not exist",
                Some(_) => "it has no SOPVAULT.txt and config/ (not a sopvault repository)",
                None => "it has no SOPVAULT.txt (not a sopvault repository)",
            };
            return Err(Error::NoRepository {
                path,
                reason: reason.into(),
            });
        }
        Ok(())
    }

    /// Opens an existing repository on any backend.
    pub fn open_backend(
        backend: Arc<dyn Backend>,
        password: &Password,
        open: &OpenOptions,
    ) -> Result<Repository> {
        let path = place_of(backend.as_ref());
        let path = path.as_path();
        Repository::probe(backend.as_ref())?;
        let configs = backend.list(FileKind::Config)?;
        let [(config_name, _)] = configs.as_slice() else {
            return Err(Error::NoRepository {
                path: path.to_path_buf(),
                reason: format!(
                    "expected exactly one file in config/, found {}",
                    configs.len()
                ),
            });
        };
        let cbytes = backend.read(FileKind::Config, config_name)?;
        check_name(&cbytes, config_name, "config")?;
        let repo_id = Config::peek_repo_id(&cbytes, &format!("config/{config_name}"))?;
        let (master, key_id) = Self::unlock(backend.as_ref(), path, password, &repo_id)?;
        let key = MasterKey::from_master(master);
        let config = Config::decode(&key, &cbytes, &format!("config/{config_name}"))?;
        Repository::assemble(backend, path, Arc::new(key), config, key_id, open)
    }

    /// [`Repository::open_backend`] and [`Lock::acquire`](crate::repo::lock::Lock::acquire)
    /// at once: the lock is taken on a second thread while the passphrase's
    /// key is derived on this one, and then, with [`ListAhead::Index`], the
    /// snapshot, index and pack directories are listed there too. Listing after the
    /// lock is what makes that safe: a prune (exclusive) either holds its lock
    /// already, so ours fails, or sees ours and backs off. A password error
    /// wins over a lock error; a lock taken for a wrong password is removed.
    pub fn open_locked(
        backend: Arc<dyn Backend>,
        password: &Password,
        open: &OpenOptions,
        (access, command): (crate::repo::lock::Access, &str),
        ahead: ListAhead,
    ) -> Result<(Repository, crate::repo::lock::Lock)> {
        std::thread::scope(|s| {
            let side = std::thread::Builder::new()
                .name("sopvault-lock".into())
                .spawn_scoped(s, || {
                    let lock =
                        crate::repo::lock::Lock::acquire_for(backend.clone(), access, command)?;
                    // A listing that fails here is simply taken again later,
                    // where its error is reported in context.
                    // Without a lock yet, a listing is not to be trusted.
                    let listed = match ahead {
                        _ if lock.awaits_reserve() => Prelisted::default(),
                        ListAhead::Index => Prelisted {
                            snapshots: backend.list(FileKind::Snapshot).ok(),
                            index: backend.list(FileKind::Index).ok(),
                            packs: backend.list(FileKind::Pack).ok(),
                        },
                        ListAhead::Nothing => Prelisted::default(),
                    };
                    Ok((lock, listed))
                })
                .map_err(|e| Error::Threads {
                    what: "a thread".into(),
                    reason: e.to_string(),
                })?;
            let repo = Repository::open_backend(backend.clone(), password, open);
            let side: Result<_> = side.join().unwrap_or_else(|_| {
                Err(Error::Internal {
                    what: "the lock thread panicked".into(),
                })
            });
            let repo = repo?;
            let (lock, listed) = side?;
            *repo.prelisted.lock().unwrap_or_else(|e| e.into_inner()) = listed;
            for note in &lock.notes {
                repo.notice(note.clone());
            }
            Ok((repo, lock))
        })
    }

    /// The listing of `kind`, from [`Repository::open_locked`]'s if it is
    /// still unused.
    fn list_now(&self, kind: FileKind) -> Result<Vec<(String, u64)>> {
        let mut pre = self.prelisted.lock().unwrap_or_else(|e| e.into_inner());
        let taken = match kind {
            FileKind::Snapshot => pre.snapshots.take(),
            FileKind::Index => pre.index.take(),
            FileKind::Pack => pre.packs.take(),
            _ => None,
        };
        drop(pre);
        match taken {
            Some(l) => Ok(l),
            None => self.backend.list(kind),
        }
    }

    fn unlock(
        backend: &dyn Backend,
        path: &Path,
        password: &Password,
        repo_id: &[u8; 32],
    ) -> Result<(Secret32, KeyId)> {
        let keys = backend.list(FileKind::Key)?;
        if keys.is_empty() {
            return Err(Error::NoRepository {
                path: path.to_path_buf(),
                reason: "keys/ holds no key file".into(),
            });
        }
        let secret = keyfile::machine_secret(password)?.is_some();
        let mut tried = 0;
        let mut last_damage = None;
        for (name, _) in &keys {
            let object = format!("keys/{name}");
            let bytes = backend.read(FileKind::Key, name)?;
            let parsed =
                check_name(&bytes, name, "keys").and_then(|()| KeyFile::parse(&bytes, &object));
            let kf = match parsed {
                Ok(kf) => kf,
                Err(e) => {
                    last_damage = Some(e);
                    continue;
                }
            };
            // Only files of the password's kind: a secret never pays for Argon2id.
            if (kf.kdf == Kdf::MachineSecret) != secret {
                continue;
            }
            tried += 1;
            if let Some((master, rid)) = kf.open(password)? {
                if &rid != repo_id {
                    return Err(Error::damaged(
                        object,
                        "key file belongs to another repository",
                    ));
                }
                return Ok((master, KeyId::from_hex(name).unwrap_or_default()));
            }
        }
        match (tried, last_damage) {
            (0, Some(e)) => Err(e),
            _ => Err(Error::WrongPassword {
                repo: path.to_path_buf(),
                what: if secret { "machine secret" } else { "password" },
                tried,
            }),
        }
    }

    fn assemble(
        backend: Arc<dyn Backend>,
        path: &Path,
        key: Arc<MasterKey>,
        config: Config,
        key_id: KeyId,
        open: &OpenOptions,
    ) -> Result<Repository> {
        let (cache_dir, tmp) = match &open.cache_dir {
            Some(d) => (d.clone(), None),
            None => {
                let mut r = [0u8; 8];
                crate::crypto::fill_random(&mut r)?;
                let d = std::env::temp_dir().join(format!("sopvault-cache-{}", hex::encode(r)));
                (d.clone(), Some(TempDir(d)))
            }
        };
        Ok(Repository {
            backend,
            root: path.to_path_buf(),
            key,
            config,
            key_id,
            cache_dir,
            _tmp_cache: tmp,
            warnings: Default::default(),
            notices: Default::default(),
            bases: crate::repo::chain::BaseCache::new(
                open.base_cache_bytes.unwrap_or(BASE_CACHE_BYTES),
            ),
            prelisted: Default::default(),
        })
    }

    /// The local cache directory (the index cache; a run's spilled ids).
    pub fn cache_dir(&self) -> &Path {
        &self.cache_dir
    }

    /// The repository's place: its directory, or its `s3://` URL as a path.
    pub fn root(&self) -> &Path {
        &self.root
    }
    /// The repository's directory, when it is a local one.
    pub fn local_root(&self) -> Option<&Path> {
        self.backend.local_root()
    }
    pub fn config(&self) -> &Config {
        &self.config
    }
    pub fn chunker(&self) -> Chunker {
        Chunker::new(&self.key, self.config.chunker)
    }

    /// Records a damaged file that a read skipped, once however often it
    /// is read (a command may list the snapshots twice).
    fn warn_skipped(&self, e: &Error) {
        let warning = format!("skipped: {e} (run `sopvault check`)");
        let mut warnings = self.warnings.lock().unwrap();
        if !warnings.contains(&warning) {
            warnings.push(warning);
        }
    }

    /// Warnings about damaged files skipped so far.
    pub fn take_warnings(&self) -> Vec<String> {
        std::mem::take(&mut self.warnings.lock().unwrap())
    }

    fn notice(&self, message: String) {
        self.notices.lock().unwrap().push(message);
    }

    /// Notices so far (see the field): not damage, but worth showing.
    pub fn take_notices(&self) -> Vec<String> {
        std::mem::take(&mut self.notices.lock().unwrap())
    }

    /// Keeps the space reserve (format-spec §2) large enough for a prune of
    /// an index of `entries` blobs to fit on a full disk: its lock, its record
    /// and its compacted index. A reserve that does not fit is a notice, not
    /// an error: the data is safe, only a later prune may need room.
    pub fn keep_reserve(&self, entries: u64) {
        const MIB: u64 = 1 << 20;
        let want = (entries * RESERVE_BYTES_PER_ENTRY)
            .max(RESERVE_MIN)
            .div_ceil(MIB)
            * MIB;
        if let Err(e) = self.backend.keep_reserve(want) {
            self.notice(format!(
                "cannot keep {} MiB of space in reserve for prune ({e}); the repository's \
                 disk is nearly full",
                want / MIB
            ));
        }
    }

    // ---- index ----

    /// The merged index of all present index files.
    pub fn index(&self) -> Result<Index> {
        self.index_of(&self.list_packs()?)
    }

    /// The index, after adopting the packs an interrupted run left unindexed
    /// (see `adopt_orphans`); the packs are listed once.
    pub fn index_adopting_orphans(&self) -> Result<Index> {
        let present = self.list_packs()?;
        let index = self.index_of(&present)?;
        self.adopt_orphans_into(index, &present)
    }

    /// The index of [`Repository::index`], or, when it merged every index
    /// file undamaged, [`Repository::index_adopting_orphans`]'s. While an
    /// index file is damaged its packs look unindexed; adopting them would
    /// write an index file that hides the damage, so this writes nothing
    /// and leaves the damage for [`Repository::take_warnings`] to report.
    pub fn index_adopting_orphans_unless_damaged(&self) -> Result<Index> {
        let present = self.list_packs()?;
        let before = self.warnings.lock().unwrap().len();
        let index = self.index_of(&present)?;
        if self.warnings.lock().unwrap().len() > before {
            return Ok(index);
        }
        self.adopt_orphans_into(index, &present)
    }

    fn adopt_orphans_into(&self, index: Index, present: &HashMap<PackId, u64>) -> Result<Index> {
        match self.adopt_orphans(&index, present)? {
            0 => Ok(index),
            _ => self.index_of(present),
        }
    }

    fn list_packs(&self) -> Result<HashMap<PackId, u64>> {
        Ok(self
            .list_now(FileKind::Pack)?
            .into_iter()
            .filter_map(|(n, s)| Some((PackId::from_hex(&n)?, s)))
            .collect())
    }

    fn index_of(&self, present: &HashMap<PackId, u64>) -> Result<Index> {
        let ids: Vec<IndexId> = self
            .list_now(FileKind::Index)?
            .into_iter()
            .filter_map(|(n, _)| IndexId::from_hex(&n))
            .collect();
        let path = crate::index::cache_path(&self.cache_dir, &self.config.repo_id);
        // A damaged index file contributes nothing; its packs become orphans
        // that the next snapshot re-indexes from their own footers.
        let damaged = std::sync::atomic::AtomicBool::new(false);
        let load = |id: &IndexId| match self.load_index_file(id) {
            Err(e) if e.kind() == crate::ErrorKind::Damaged => {
                damaged.store(true, std::sync::atomic::Ordering::Relaxed);
                self.warn_skipped(&e);
                Ok(IndexFile::default())
            }
            r => r,
        };
        match Index::open_or_build(&path, self.key.index_cache_key(), &ids, present, &load) {
            Ok(i) => {
                if let Some(why) = i.rejected_cache() {
                    self.notice(format!("the index cache was rebuilt: {why}"));
                }
                if damaged.load(std::sync::atomic::Ordering::Relaxed) {
                    // The cache would count the damaged file as merged (and
                    // empty), and the next run would not read it again: the
                    // damage would go unnoticed (no warning, prune no longer
                    // refusing) until it is repaired. Without a cache, every
                    // run reads it and reports it. (The map stays valid.)
                    let _ = std::fs::remove_file(&path);
                }
                Ok(i)
            }
            Err(e @ Error::Io { .. }) | Err(e @ Error::NoSpace { .. })
                if open_fallback(&path, &e) =>
            {
                // The cache directory is unusable (not writable, or its file
                // system is full): build a private one for this run instead.
                self.notice(format!(
                    "the index cache is not usable ({e}); this run uses a temporary one"
                ));
                let tmp =
                    std::env::temp_dir().join(format!("sopvault-index-{}", std::process::id()));
                let r = Index::open_or_build(
                    &tmp.join("index.cache"),
                    self.key.index_cache_key(),
                    &ids,
                    present,
                    &load,
                );
                let _ = std::fs::remove_dir_all(&tmp);
                r
            }
            Err(e) => Err(e),
        }
    }

    /// Packs that exist but that no index file lists were left by an
    /// interrupted run. Reads their footers and writes one index file for
    /// them, so their blobs are reused instead of stored again. Returns how
    /// many packs were adopted; damaged ones are left for `check` to report.
    fn adopt_orphans(&self, index: &Index, present: &HashMap<PackId, u64>) -> Result<usize> {
        let listed: std::collections::HashSet<PackId> =
            index.packs().iter().map(|(p, _)| *p).collect();
        let mut file = IndexFile::default();
        let mut orphans: Vec<(PackId, u64)> = present
            .iter()
            .filter(|(p, _)| !listed.contains(p))
            .map(|(p, s)| (*p, *s))
            .collect();
        // In name order, as a listing gives them: the adopted index file is deterministic.
        orphans.sort();
        for (pack, size) in orphans {
            let Ok(blobs) = self.read_pack_footer(&pack, size) else {
                continue;
            };
            let no = file.packs.len() as u32;
            file.packs.push((pack, size));
            file.entries.extend(blobs.into_iter().map(|b| (no, b)));
        }
        // A delta is adopted only with its base, so that nothing deduplicates
        // against a chunk that cannot be decoded (its base may have been pruned
        // since the interrupted run).
        loop {
            let adopted: std::collections::HashSet<ChunkId> =
                file.entries.iter().map(|(_, b)| b.id).collect();
            let before = file.entries.len();
            file.entries.retain(|(_, b)| {
                b.delta
                    .is_none_or(|d| index.contains(&d.base) || adopted.contains(&d.base))
            });
            if file.entries.len() == before {
                break;
            }
        }
        if file.packs.is_empty() {
            return Ok(0);
        }
        self.write_index_file(&file)?;
        Ok(file.packs.len())
    }

    /// Reads the trailer and footer of a pack of `size` bytes.
    pub fn read_pack_footer(&self, pack: &PackId, size: u64) -> Result<Vec<blob::BlobInfo>> {
        use crate::format::pack::{decode_footer, parse_trailer, TRAILER_LEN};
        use crate::format::HEADER_LEN;
        let name = pack.to_hex();
        let object = format!("packs/{name}");
        if size < (HEADER_LEN + TRAILER_LEN) as u64 {
            return Err(Error::damaged(
                &object,
                format!("{size} bytes is too short for a pack"),
            ));
        }
        let trailer = self.backend.read_range(
            FileKind::Pack,
            &name,
            size - TRAILER_LEN as u64,
            TRAILER_LEN,
        )?;
        let (off, len) = parse_trailer(&trailer, size, &object)?;
        let header = self
            .backend
            .read_range(FileKind::Pack, &name, 0, HEADER_LEN)?;
        let sealed = self
            .backend
            .read_range(FileKind::Pack, &name, off, len as usize)?;
        decode_footer(&self.key, &header, &sealed, off, &object)
    }

    pub fn load_index_file(&self, id: &IndexId) -> Result<IndexFile> {
        let name = id.to_hex();
        let bytes = self.backend.read(FileKind::Index, &name)?;
        check_name(&bytes, &name, "index")?;
        IndexFile::decode(&self.key, &bytes, &format!("index/{name}"))
    }

    pub fn write_index_file(&self, f: &IndexFile) -> Result<IndexId> {
        self.writer().write_index_file(f)
    }

    // ---- keys ----

    pub fn keys(&self) -> Result<Vec<KeyEntry>> {
        let mut out = Vec::new();
        for (name, _) in self.backend.list(FileKind::Key)? {
            let bytes = self.backend.read(FileKind::Key, &name)?;
            let kf = KeyFile::parse(&bytes, &format!("keys/{name}"))?;
            let id = KeyId::from_hex(&name).unwrap_or_default();
            out.push(KeyEntry {
                id,
                label: kf.label,
                created: kf.created,
                kdf: kf.kdf,
                current: id == self.key_id,
            });
        }
        Ok(out)
    }

    pub fn current_key(&self) -> KeyId {
        self.key_id
    }

    /// Adds a key file wrapping the master secret under a new password.
    pub fn add_key(&self, password: &Password, kdf: Kdf, label: &str) -> Result<KeyId> {
        let bytes = keyfile::create(
            self.key.master(),
            &self.config.repo_id,
            password,
            kdf,
            label,
            chrono::Utc::now().timestamp(),
        )?;
        let id = KeyId(sha256(&bytes));
        self.backend
            .write_new(FileKind::Key, &id.to_hex(), &bytes)?;
        Ok(id)
    }

    /// Removes a key file by id or unique id prefix; never the last one.
    pub fn remove_key(&self, prefix: &str, allow_current: bool) -> Result<KeyId> {
        let keys = self.keys()?;
        let matches: Vec<&KeyEntry> = keys
            .iter()
            .filter(|k| k.id.to_hex().starts_with(prefix))
            .collect();
        let k = match matches.as_slice() {
            [k] => *k,
            [] => return Err(Error::Usage(format!("no key file matches {prefix:?}"))),
            _ => {
                return Err(Error::Usage(format!(
                    "{prefix:?} matches {} key files; give more digits",
                    matches.len()
                )))
            }
        };
        if keys.len() == 1 {
            return Err(Error::Usage(
                "refusing to remove the last key file: the repository would be unreadable".into(),
            ));
        }
        if k.current && !allow_current {
            return Err(Error::Usage(
                "refusing to remove the key file this password opened; use `key passwd` to change it".into(),
            ));
        }
        self.backend.remove(FileKind::Key, &k.id.to_hex())?;
        Ok(k.id)
    }
}

/// The repository's place as a path: its directory (exactly, also when not UTF-8), or its URL.
fn place_of(backend: &dyn Backend) -> PathBuf {
    backend
        .local_root()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(backend.location()))
}

/// Whether a failure to open or build the index cache at `path` means the
/// cache directory cannot be used (rather than that the repository is at fault).
fn open_fallback(path: &Path, e: &Error) -> bool {
    matches!(e, Error::NoSpace { path: p } if p.starts_with(path.parent().unwrap_or(path)))
        || !path
            .parent()
            .map(|p| p.exists() && is_writable(p))
            .unwrap_or(false)
}

fn is_writable(p: &Path) -> bool {
    let probe = p.join(format!(".probe{}", std::process::id()));
    let ok = std::fs::write(&probe, b"").is_ok();
    let _ = std::fs::remove_file(&probe);
    ok
}

/// Fails unless `bytes` hash to `name`.
pub fn check_name(bytes: &[u8], name: &str, dir: &str) -> Result<()> {
    let found = hex::encode(sha256(bytes));
    if found != name {
        return Err(Error::HashMismatch {
            object: format!("{dir}/{name}"),
            expected: name.to_string(),
            found,
        });
    }
    Ok(())
}

/// For unit tests: a repository in `dir/repo` (cache in `dir/cache`, the
/// cheapest key derivation) holding one snapshot of `src`, source `web`.
#[cfg(test)]
pub(crate) fn scratch_with_snapshot(dir: &Path, src: &Path) -> Repository {
    use crate::format::keyfile::{KdfParams, MIN_M_KIB};
    let repo = Repository::init(
        &dir.join("repo"),
        &crate::crypto::Password::new(b"pw".to_vec()),
        &InitOptions {
            kdf: KdfParams {
                m_kib: MIN_M_KIB,
                t: 1,
                p: 1,
            },
            ..InitOptions::default()
        },
        &OpenOptions {
            cache_dir: Some(dir.join("cache")),
            base_cache_bytes: None,
        },
    )
    .unwrap();
    let opts = crate::ops::snapshot::SnapshotOptions {
        source: "web".into(),
        paths: vec![src.to_path_buf()],
        ..Default::default()
    };
    crate::ops::snapshot::run(&repo, &opts, &crate::ops::progress::NoProgress, None).unwrap();
    repo
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::KeyPurpose;
    use crate::repo::chain::LinkCheck;

    /// A delta's bases are decoded without recomputing their ids; when one
    /// authenticates but holds the wrong plaintext (a writer's fault), the
    /// delta on top fails its id check, the chain is decoded again verified,
    /// and the error names the base, not the delta.
    #[test]
    fn a_wrong_base_behind_a_delta_is_named() {
        use crate::blob::{BlobInfo, BlobKind, Codec, DeltaRef};
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        std::fs::create_dir_all(&src).unwrap();
        let repo = scratch_with_snapshot(dir.path(), &src);
        let key = &repo.key;
        let base: Vec<u8> = (0u32..5000)
            .flat_map(|i| (i * 7919).to_le_bytes())
            .collect();
        let mut wrong = base.clone();
        wrong[100] ^= 1;
        let mut data = base.clone();
        data[1000..1004].copy_from_slice(b"new!");
        // The base is sealed under the id of `base` but holds `wrong`.
        let base_id = key.chunk_id(&base);
        let sealed_base = key
            .seal(
                KeyPurpose::Data,
                &blob::aad(BlobKind::Data, Codec::Raw, wrong.len() as u32, &base_id),
                &wrong,
            )
            .unwrap();
        let id = key.chunk_id(&data);
        let d = DeltaRef {
            base: base_id,
            depth: 1,
            generation: 1,
        };
        let frame = blob::compress_with_prefix(3, &data, &base).unwrap();
        let sealed_delta = key
            .seal(
                KeyPurpose::Data,
                &blob::delta_aad(data.len() as u32, &id, &d),
                &frame,
            )
            .unwrap();
        let pack_bytes = [&sealed_base[..], &sealed_delta[..]].concat();
        let pack = PackId(sha256(&pack_bytes));
        repo.backend
            .write_new(FileKind::Pack, &pack.to_hex(), &pack_bytes)
            .unwrap();
        let info = |id, codec, offset: usize, stored: &[u8], raw_len: usize, delta| BlobInfo {
            id,
            kind: BlobKind::Data,
            codec,
            offset: offset as u64,
            stored_len: stored.len() as u32,
            raw_len: raw_len as u32,
            delta,
        };
        let entries = vec![
            (
                0,
                info(base_id, Codec::Raw, 0, &sealed_base, wrong.len(), None),
            ),
            (
                0,
                info(
                    id,
                    Codec::Delta,
                    sealed_base.len(),
                    &sealed_delta,
                    data.len(),
                    Some(d),
                ),
            ),
        ];
        repo.write_index_file(&crate::index::IndexFile {
            supersedes: vec![],
            packs: vec![(pack, pack_bytes.len() as u64)],
            entries,
        })
        .unwrap();
        let index = repo.index().unwrap();
        let loc = index.lookup(&id).unwrap();
        // Unverified, the base decodes (and is cached) ...
        let unverified = repo
            .delta_base(&index, &loc, LinkCheck::Authenticity)
            .unwrap();
        assert_eq!(&unverified[..], &wrong[..]);
        // ... but reading the delta names the base and its id mismatch.
        let err = repo.read_blob(&index, &loc).unwrap_err().to_string();
        assert!(err.contains(&base_id.to_hex()), "{err}");
        assert!(err.contains("its delta base cannot be read"), "{err}");
        assert!(err.contains("hashes to"), "{err}");
    }

    /// `open_locked` lists ahead once: the first listing of each kind is the
    /// one taken under the lock, a later one lists again; a wrong password
    /// leaves no lock behind.
    #[test]
    fn listings_taken_ahead_are_used_once() {
        let dir = std::env::temp_dir().join(format!("sopvault-prelist-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let src = dir.join("src");
        std::fs::create_dir_all(&src).unwrap();
        std::fs::write(src.join("f"), "one").unwrap();
        let writer = scratch_with_snapshot(&dir, &src);
        let backend = writer.backend.clone();
        let open = OpenOptions {
            cache_dir: Some(dir.join("cache")),
            base_cache_bytes: None,
        };
        let pw = Password::new(b"pw".to_vec());
        let (repo, lock) = Repository::open_locked(
            backend.clone(),
            &pw,
            &open,
            (crate::repo::lock::Access::Read, "test"),
            ListAhead::Index,
        )
        .unwrap();
        assert_eq!(backend.list_locks().unwrap().len(), 1);

        // A second snapshot (new pack, index file and manifest) lands after the listings.
        std::fs::write(src.join("g"), "two").unwrap();
        let opts = crate::ops::snapshot::SnapshotOptions {
            source: "web".into(),
            paths: vec![src.clone()],
            ..Default::default()
        };
        crate::ops::snapshot::run(&writer, &opts, &crate::ops::progress::NoProgress, None).unwrap();

        assert_eq!(
            repo.snapshots().unwrap().len(),
            1,
            "first: the listing taken ahead"
        );
        assert_eq!(repo.snapshots().unwrap().len(), 2, "then: listed again");
        assert_eq!(repo.index().unwrap().included().len(), 1);
        assert_eq!(repo.index().unwrap().included().len(), 2);
        drop(lock);
        assert!(backend.list_locks().unwrap().is_empty());

        let (repo, exclusive) = Repository::open_locked(
            backend.clone(),
            &pw,
            &open,
            (crate::repo::lock::Access::Prune, "test"),
            ListAhead::Nothing,
        )
        .unwrap();
        assert_eq!(repo.snapshots().unwrap().len(), 2);
        drop(exclusive);

        let wrong = Password::new(b"not it".to_vec());
        let err = Repository::open_locked(
            backend.clone(),
            &wrong,
            &open,
            (crate::repo::lock::Access::Read, "test"),
            ListAhead::Index,
        )
        .err()
        .expect("a wrong password fails");
        assert_eq!(err.kind(), crate::ErrorKind::WrongPassword);
        assert!(
            backend.list_locks().unwrap().is_empty(),
            "its lock is removed"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
