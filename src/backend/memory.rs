//! [`MemoryBackend`] keeps a repository in memory, for tests that should not
//! spawn the binary or touch the disk. It keeps [`LocalBackend`]'s contract
//! (the conformance suite checks both) and holds the same relative paths
//! (`packs/hh/NAME`, `tmp/…`, `locks/…`), so a test can plant a stray file
//! with [`MemoryBackend::put_raw`].
//!
//! It also models durability, which a test can then take away: a staged file
//! ([`Backend::stage_new`]) is written but not synced until it is committed,
//! and [`MemoryBackend::crash`] drops every file that is not durable, as a
//! power cut would. Files published by `write_new`, a commit or
//! `write_lock` are durable (the local backend syncs them and their
//! directory before it returns), and so are removals.
//!
//! [`LocalBackend`]: super::LocalBackend

use super::names::{file_at, rel_path, LOCKS_DIR, README_NAME, RESERVE_NAME, TMP_DIR};
use super::{Backend, FileKind, StagedFile};
use crate::error::{Error, Result};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// A repository held in memory; cheap to clone (clones share the files).
#[derive(Clone)]
pub struct MemoryBackend {
    shared: Arc<Shared>,
}

struct Shared {
    /// `memory://N`, unique in this process.
    location: String,
    state: Mutex<State>,
    skipped: AtomicU64,
}

#[derive(Default)]
struct State {
    /// Whether `create` has made the layout.
    created: bool,
    /// Every file by its path relative to the repository root.
    files: BTreeMap<String, Stored>,
    /// Temporary names handed out so far.
    tmp_count: u64,
}

struct Stored {
    bytes: Vec<u8>,
    /// Synced: survives [`MemoryBackend::crash`].
    durable: bool,
}

impl Default for MemoryBackend {
    fn default() -> Self {
        MemoryBackend::new()
    }
}

impl MemoryBackend {
    /// An empty place, without a repository layout yet (see [`Backend::create`]).
    pub fn new() -> MemoryBackend {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        MemoryBackend {
            shared: Arc::new(Shared {
                location: format!("memory://{}", NEXT.fetch_add(1, Ordering::Relaxed)),
                state: Mutex::default(),
                skipped: AtomicU64::new(0),
            }),
        }
    }

    /// Puts `bytes` at the relative path `rel`, durable, bypassing every
    /// rule: for tests that plant stray or damaged files.
    pub fn put_raw(&self, rel: &str, bytes: &[u8]) {
        self.state().files.insert(rel.to_string(), durable(bytes));
    }

    /// The bytes at the relative path `rel`, whatever it is.
    pub fn get_raw(&self, rel: &str) -> Option<Vec<u8>> {
        self.state().files.get(rel).map(|f| f.bytes.clone())
    }

    /// A power cut: every file written but not yet synced is lost. Returns
    /// the relative paths dropped.
    pub fn crash(&self) -> Vec<String> {
        let mut state = self.state();
        let lost: Vec<String> = state
            .files
            .iter()
            .filter(|(_, f)| !f.durable)
            .map(|(rel, _)| rel.clone())
            .collect();
        for rel in &lost {
            state.files.remove(rel);
        }
        lost
    }

    /// Relative paths of the files written but not yet synced.
    pub fn unsynced(&self) -> Vec<String> {
        let state = self.state();
        let files = state.files.iter().filter(|(_, f)| !f.durable);
        files.map(|(rel, _)| rel.clone()).collect()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.shared.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How errors name the file at `rel`.
    fn object(&self, rel: &str) -> String {
        format!("{}/{rel}", self.shared.location)
    }

    fn not_found(&self, rel: &str) -> Error {
        Error::io(
            self.object(rel),
            std::io::Error::from(std::io::ErrorKind::NotFound),
        )
    }

    fn missing(&self, rel: &str) -> Error {
        Error::damaged(self.object(rel), "file is missing")
    }

    /// Runs `f` on the bytes of the repository file, or fails as a missing file does.
    fn with_file<T>(&self, kind: FileKind, name: &str, f: impl FnOnce(&[u8]) -> T) -> Result<T> {
        let rel = rel_path(kind, name);
        let state = self.state();
        let file = state.files.get(&rel).ok_or_else(|| self.missing(&rel))?;
        Ok(f(&file.bytes))
    }

    fn tmp_name(&self, hint: &str) -> String {
        let mut state = self.state();
        state.tmp_count += 1;
        format!("{TMP_DIR}/{hint}.{}.tmp", state.tmp_count)
    }
}

fn durable(bytes: &[u8]) -> Stored {
    Stored {
        bytes: bytes.to_vec(),
        durable: true,
    }
}

/// Publishes `bytes` at `rel` unless a file is there (same name, same bytes).
fn publish(state: &mut State, rel: String, bytes: &[u8]) {
    state.files.entry(rel).or_insert_with(|| durable(bytes));
}

impl Backend for MemoryBackend {
    fn location(&self) -> String {
        self.shared.location.clone()
    }

    fn list(&self, kind: FileKind) -> Result<Vec<(String, u64)>> {
        let dir = format!("{}/", kind.dir());
        let state = self.state();
        if !state.created && kind != FileKind::Prune {
            return Err(self.not_found(kind.dir()));
        }
        let mut out = Vec::new();
        for (rel, file) in state.files.range(dir.clone()..) {
            if !rel.starts_with(&dir) {
                break;
            }
            match file_at(rel) {
                Some((k, name)) if k == kind => {
                    out.push((name.to_string(), file.bytes.len() as u64))
                }
                _ => {
                    self.shared.skipped.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        Ok(out)
    }

    fn skipped_names(&self) -> u64 {
        self.shared.skipped.load(Ordering::Relaxed)
    }

    fn read(&self, kind: FileKind, name: &str) -> Result<Vec<u8>> {
        self.with_file(kind, name, <[u8]>::to_vec)
    }

    fn read_range(&self, kind: FileKind, name: &str, offset: u64, len: usize) -> Result<Vec<u8>> {
        let got = self.with_file(kind, name, |b| {
            let start = usize::try_from(offset).unwrap_or(usize::MAX).min(b.len());
            b[start..b.len().min(start.saturating_add(len))].to_vec()
        })?;
        if got.len() != len {
            return Err(Error::damaged(
                self.object(&rel_path(kind, name)),
                format!(
                    "truncated: expected {len} bytes at offset {offset}, found {}",
                    got.len()
                ),
            ));
        }
        Ok(got)
    }

    fn size(&self, kind: FileKind, name: &str) -> Result<u64> {
        self.with_file(kind, name, |b| b.len() as u64)
    }

    fn write_new(&self, kind: FileKind, name: &str, bytes: &[u8]) -> Result<()> {
        publish(&mut self.state(), rel_path(kind, name), bytes);
        Ok(())
    }

    fn stage_new(&self, kind: FileKind) -> Result<Option<Box<dyn StagedFile>>> {
        let tmp = self.tmp_name(kind.dir());
        self.state().files.insert(
            tmp.clone(),
            Stored {
                bytes: Vec::new(),
                durable: false,
            },
        );
        Ok(Some(Box::new(MemoryStaged {
            backend: self.clone(),
            kind,
            tmp,
            len: 0,
            committed: false,
        })))
    }

    fn remove(&self, kind: FileKind, name: &str) -> Result<()> {
        let rel = rel_path(kind, name);
        match self.state().files.remove(&rel) {
            Some(_) => Ok(()),
            None => Err(self.not_found(&rel)),
        }
    }

    fn clean_tmp(&self) -> Result<usize> {
        let mut state = self.state();
        let before = state.files.len();
        state
            .files
            .retain(|rel, _| !(rel.starts_with(TMP_DIR) && rel.ends_with(".tmp")));
        Ok(before - state.files.len())
    }

    fn write_lock(&self, name: &str, bytes: &[u8]) -> Result<()> {
        let rel = format!("{LOCKS_DIR}/{name}");
        self.state().files.insert(rel, durable(bytes));
        Ok(())
    }

    fn list_locks(&self) -> Result<Vec<String>> {
        let prefix = format!("{LOCKS_DIR}/");
        let state = self.state();
        let names = state
            .files
            .keys()
            .filter_map(|rel| rel.strip_prefix(&prefix));
        Ok(names
            .filter(|n| n.ends_with(".lock") && !n.contains('/'))
            .map(str::to_string)
            .collect())
    }

    fn read_lock(&self, name: &str) -> Result<Vec<u8>> {
        let rel = format!("{LOCKS_DIR}/{name}");
        let state = self.state();
        let file = state.files.get(&rel).ok_or_else(|| self.not_found(&rel))?;
        Ok(file.bytes.clone())
    }

    fn remove_lock(&self, name: &str) -> Result<()> {
        self.state().files.remove(&format!("{LOCKS_DIR}/{name}"));
        Ok(())
    }

    fn read_readme(&self) -> Result<Option<Vec<u8>>> {
        Ok(self.get_raw(README_NAME))
    }

    fn create(&self, readme: &str) -> Result<()> {
        let mut state = self.state();
        if state.created || !state.files.is_empty() {
            return Err(Error::RepositoryExists {
                path: self.shared.location.clone().into(),
            });
        }
        state.created = true;
        publish(&mut state, README_NAME.to_string(), readme.as_bytes());
        Ok(())
    }

    fn all_files(&self) -> Result<Vec<(String, u64)>> {
        let state = self.state();
        let files = state.files.iter();
        Ok(files
            .map(|(rel, f)| (rel.clone(), f.bytes.len() as u64))
            .collect())
    }

    fn keep_reserve(&self, bytes: u64) -> Result<()> {
        let mut state = self.state();
        let reserve = state
            .files
            .entry(RESERVE_NAME.to_string())
            .or_insert_with(|| durable(&[]));
        let len = usize::try_from(bytes).unwrap_or(usize::MAX);
        if reserve.bytes.len() < len {
            reserve.bytes.resize(len, 0);
        }
        Ok(())
    }

    fn release_reserve(&self) -> Result<bool> {
        Ok(self.state().files.remove(RESERVE_NAME).is_some())
    }
}

/// A file being written under `tmp/`, not durable until committed.
struct MemoryStaged {
    backend: MemoryBackend,
    kind: FileKind,
    tmp: String,
    len: u64,
    committed: bool,
}

impl MemoryStaged {
    fn append_to_tmp(&mut self, bytes: &[u8]) -> Result<()> {
        let mut state = self.backend.state();
        let file = state.files.get_mut(&self.tmp).ok_or_else(|| {
            // Gone: a crash or `clean_tmp` took it while it was being written.
            Error::io(
                self.backend.object(&self.tmp),
                std::io::Error::from(std::io::ErrorKind::NotFound),
            )
        })?;
        file.bytes.extend_from_slice(bytes);
        self.len += bytes.len() as u64;
        Ok(())
    }
}

impl StagedFile for MemoryStaged {
    fn append(&mut self, bytes: &[u8]) -> Result<()> {
        self.append_to_tmp(bytes)
    }

    fn written(&self) -> u64 {
        self.len
    }

    fn commit(mut self: Box<Self>, name: &str, rest: &[u8]) -> Result<()> {
        self.append_to_tmp(rest)?;
        let mut state = self.backend.state();
        let tmp = state.files.remove(&self.tmp).expect("appended to just now");
        publish(&mut state, rel_path(self.kind, name), &tmp.bytes);
        self.committed = true;
        Ok(())
    }
}

impl Drop for MemoryStaged {
    fn drop(&mut self) {
        if !self.committed {
            self.backend.state().files.remove(&self.tmp);
        }
    }
}
