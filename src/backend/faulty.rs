//! [`FaultyBackend`] wraps any backend and fails on purpose, so that a test
//! can check that every failure of storage leaves a valid repository.
//!
//! Every call that touches storage is one *operation*, numbered from 0 in
//! the order the wrapper sees them (a staged file's `append` and `commit`
//! count too; `location`, `local_root` and `skipped_names` do not).
//! [`FaultyBackend::ops`] says how many there were, so a test can run a
//! command once to count them and then again failing at each index N in
//! turn ([`Trigger::Nth`]), or fail every operation of a kind
//! ([`Trigger::Every`]). What a [`Fault`] does:
//!
//! | fault | the operation | what is left behind |
//! |---|---|---|
//! | [`Fault::Eio`] | fails with EIO | nothing changes |
//! | [`Fault::NoSpace`] | fails with ENOSPC ([`Error::NoSpace`]) | nothing changes |
//! | [`Fault::ShortWrite`] | a write fails part-way with EIO | half its bytes under a temporary name, never under its final name; a `remove_many` removes only its first half |
//! | [`Fault::LostPublish`] | a write's bytes reach a temporary file, but the rename under its name does not happen; EIO | the whole file under a temporary name |
//! | [`Fault::Crash`] | the process dies before the operation | over a [`MemoryBackend`], every file not yet durable is lost ([`MemoryBackend::crash`]); every later operation fails with EIO until [`FaultyBackend::heal`] |
//!
//! Temporary files are left through [`Backend::stage_new`]; a backend that
//! takes files whole (S3) leaves nothing, as its uploads cannot stop part-way.
//! Where an operation cannot be short or unpublished (a read, a lock), those
//! two faults are plain EIO.

use super::{Backend, FileKind, MemoryBackend, StagedFile};
use crate::error::{Error, Result};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

/// What goes wrong (see the module doc for what each leaves behind).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    Eio,
    NoSpace,
    ShortWrite,
    LostPublish,
    Crash,
}

/// The kinds of operations, for [`Trigger::Every`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// `list`, `list_locks`, `all_files`.
    List,
    /// `read`, `read_range`, `size`, `read_lock`, `read_readme`, `stored_sha256`.
    Read,
    /// `write_new`, `stage_new`, a staged file's `append` and `commit`, `create`.
    Write,
    /// `remove`, `remove_many`, `clean_tmp`, `remove_lock`, `release_reserve`.
    Remove,
    /// `write_lock`, `keep_reserve`.
    Lock,
}

/// Which operations fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    /// The operation with this index, once.
    Nth(u64),
    /// Every operation of this kind.
    Every(Op),
}

/// A backend that fails when told to; see the module doc.
#[derive(Clone)]
pub struct FaultyBackend {
    inner: Arc<dyn Backend>,
    /// The inner backend, when it can lose what is not durable.
    memory: Option<MemoryBackend>,
    state: Arc<Mutex<FaultState>>,
}

#[derive(Default)]
struct FaultState {
    ops: u64,
    rule: Option<(Trigger, Fault)>,
    /// Set by a crash: every later operation fails.
    dead: bool,
    /// Each fault that fired: the operation's index and kind.
    fired: Vec<(u64, Op, Fault)>,
}

/// What an operation that may go on must do.
enum Go {
    /// Run as usual.
    Normal,
    /// Leave a short or unpublished temporary file and fail.
    Break(Fault),
}

impl FaultyBackend {
    /// Wraps `inner`, failing nothing until [`FaultyBackend::fail`].
    pub fn new(inner: Arc<dyn Backend>) -> FaultyBackend {
        FaultyBackend {
            inner,
            memory: None,
            state: Arc::default(),
        }
    }

    /// Wraps a memory backend, whose files a [`Fault::Crash`] can drop.
    pub fn over_memory(memory: MemoryBackend) -> FaultyBackend {
        FaultyBackend {
            inner: Arc::new(memory.clone()),
            memory: Some(memory),
            state: Arc::default(),
        }
    }

    /// From now on, `fault` happens at the operations `trigger` picks.
    pub fn fail(&self, trigger: Trigger, fault: Fault) {
        self.state().rule = Some((trigger, fault));
    }

    /// Fails nothing any more, and brings a crashed backend back.
    pub fn heal(&self) {
        let mut s = self.state();
        s.rule = None;
        s.dead = false;
    }

    /// Operations seen so far.
    pub fn ops(&self) -> u64 {
        self.state().ops
    }

    /// Each fault that fired so far: the operation's index, its kind, the fault.
    pub fn fired(&self) -> Vec<(u64, Op, Fault)> {
        self.state().fired.clone()
    }

    /// The wrapped backend, to look at what the faults left.
    pub fn inner(&self) -> &Arc<dyn Backend> {
        &self.inner
    }

    fn state(&self) -> MutexGuard<'_, FaultState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts one operation of kind `op` on `what`, and fails it if the rule says so.
    fn begin(&self, op: Op, what: &str) -> Result<Go> {
        let mut s = self.state();
        let index = s.ops;
        s.ops += 1;
        if s.dead {
            return Err(eio(what, "the backend crashed before this operation"));
        }
        let fault = match s.rule {
            Some((Trigger::Nth(n), f)) if n == index => f,
            Some((Trigger::Every(o), f)) if o == op => f,
            _ => return Ok(Go::Normal),
        };
        s.fired.push((index, op, fault));
        match fault {
            Fault::Eio => Err(eio(what, "injected fault")),
            Fault::NoSpace => Err(Error::io(
                what,
                std::io::Error::from_raw_os_error(libc::ENOSPC),
            )),
            Fault::Crash => {
                s.dead = true;
                drop(s);
                if let Some(m) = &self.memory {
                    m.crash();
                }
                Err(eio(what, "injected crash"))
            }
            f @ (Fault::ShortWrite | Fault::LostPublish) => Ok(Go::Break(f)),
        }
    }

    /// [`FaultyBackend::begin`] for an operation that cannot break part-way.
    fn begin_whole(&self, op: Op, what: &str) -> Result<()> {
        match self.begin(op, what)? {
            Go::Normal => Ok(()),
            Go::Break(_) => Err(eio(what, "injected fault")),
        }
    }

    fn what(&self, kind: FileKind, name: &str) -> String {
        format!(
            "{}/{}",
            self.inner.location(),
            super::names::rel_path(kind, name)
        )
    }
}

fn eio(what: &str, why: &str) -> Error {
    let e = std::io::Error::from_raw_os_error(libc::EIO);
    Error::io(what, std::io::Error::new(e.kind(), format!("{why}: {e}")))
}

/// Leaves the first `keep` bytes of `bytes` under a temporary name of the
/// inner backend, as a writer killed there would (nothing where the backend
/// takes files whole), and fails.
fn leave_tmp(inner: &dyn Backend, kind: FileKind, bytes: &[u8], what: &str) -> Result<()> {
    if let Some(mut staged) = inner.stage_new(kind)? {
        staged.append(bytes)?;
        // Not dropped: dropping would remove the temporary file, which a
        // killed writer leaves behind. (The file handle leaks: a test's price.)
        #[allow(clippy::mem_forget)]
        std::mem::forget(staged);
    }
    Err(eio(
        what,
        "injected fault: the file was left under a temporary name",
    ))
}

/// How many bytes `fault` lets through of `len`.
fn kept(fault: Fault, len: usize) -> usize {
    if fault == Fault::ShortWrite {
        len / 2
    } else {
        len
    }
}

impl Backend for FaultyBackend {
    fn location(&self) -> String {
        self.inner.location()
    }

    fn list(&self, kind: FileKind) -> Result<Vec<(String, u64)>> {
        self.begin_whole(Op::List, kind.dir())?;
        self.inner.list(kind)
    }

    fn skipped_names(&self) -> u64 {
        self.inner.skipped_names()
    }

    fn read(&self, kind: FileKind, name: &str) -> Result<Vec<u8>> {
        self.begin_whole(Op::Read, &self.what(kind, name))?;
        self.inner.read(kind, name)
    }

    fn read_range(&self, kind: FileKind, name: &str, offset: u64, len: usize) -> Result<Vec<u8>> {
        self.begin_whole(Op::Read, &self.what(kind, name))?;
        self.inner.read_range(kind, name, offset, len)
    }

    fn size(&self, kind: FileKind, name: &str) -> Result<u64> {
        self.begin_whole(Op::Read, &self.what(kind, name))?;
        self.inner.size(kind, name)
    }

    fn write_new(&self, kind: FileKind, name: &str, bytes: &[u8]) -> Result<()> {
        let what = self.what(kind, name);
        match self.begin(Op::Write, &what)? {
            Go::Normal => self.inner.write_new(kind, name, bytes),
            Go::Break(f) => leave_tmp(&*self.inner, kind, &bytes[..kept(f, bytes.len())], &what),
        }
    }

    fn stage_new(&self, kind: FileKind) -> Result<Option<Box<dyn StagedFile>>> {
        self.begin_whole(Op::Write, kind.dir())?;
        Ok(self.inner.stage_new(kind)?.map(|inner| {
            Box::new(FaultyStaged {
                outer: self.clone(),
                kind,
                inner,
            }) as Box<dyn StagedFile>
        }))
    }

    fn remove(&self, kind: FileKind, name: &str) -> Result<()> {
        self.begin_whole(Op::Remove, &self.what(kind, name))?;
        self.inner.remove(kind, name)
    }

    fn remove_many(&self, kind: FileKind, names: &[String]) -> Result<()> {
        match self.begin(Op::Remove, kind.dir())? {
            Go::Normal => self.inner.remove_many(kind, names),
            Go::Break(_) => {
                self.inner.remove_many(kind, &names[..names.len() / 2])?;
                Err(eio(kind.dir(), "injected fault: removal stopped half-way"))
            }
        }
    }

    fn clean_tmp(&self) -> Result<usize> {
        self.begin_whole(Op::Remove, "tmp")?;
        self.inner.clean_tmp()
    }

    fn write_lock(&self, name: &str, bytes: &[u8]) -> Result<()> {
        self.begin_whole(Op::Lock, name)?;
        self.inner.write_lock(name, bytes)
    }

    fn list_locks(&self) -> Result<Vec<String>> {
        self.begin_whole(Op::List, "locks")?;
        self.inner.list_locks()
    }

    fn read_lock(&self, name: &str) -> Result<Vec<u8>> {
        self.begin_whole(Op::Read, name)?;
        self.inner.read_lock(name)
    }

    fn remove_lock(&self, name: &str) -> Result<()> {
        self.begin_whole(Op::Remove, name)?;
        self.inner.remove_lock(name)
    }

    fn read_readme(&self) -> Result<Option<Vec<u8>>> {
        self.begin_whole(Op::Read, super::README_NAME)?;
        self.inner.read_readme()
    }

    fn create(&self, readme: &str) -> Result<()> {
        self.begin_whole(Op::Write, super::README_NAME)?;
        self.inner.create(readme)
    }

    fn all_files(&self) -> Result<Vec<(String, u64)>> {
        self.begin_whole(Op::List, "")?;
        self.inner.all_files()
    }

    fn local_root(&self) -> Option<&Path> {
        self.inner.local_root()
    }

    fn keep_reserve(&self, bytes: u64) -> Result<()> {
        self.begin_whole(Op::Lock, super::RESERVE_NAME)?;
        self.inner.keep_reserve(bytes)
    }

    fn release_reserve(&self) -> Result<bool> {
        self.begin_whole(Op::Remove, super::RESERVE_NAME)?;
        self.inner.release_reserve()
    }

    fn stored_sha256(&self, kind: FileKind, name: &str) -> Result<Option<String>> {
        self.begin_whole(Op::Read, &self.what(kind, name))?;
        self.inner.stored_sha256(kind, name)
    }
}

/// A staged file of the inner backend whose `append` and `commit` are operations too.
struct FaultyStaged {
    outer: FaultyBackend,
    kind: FileKind,
    inner: Box<dyn StagedFile>,
}

impl StagedFile for FaultyStaged {
    fn append(&mut self, bytes: &[u8]) -> Result<()> {
        match self.outer.begin(Op::Write, self.kind.dir())? {
            Go::Normal => self.inner.append(bytes),
            Go::Break(_) => {
                self.inner.append(&bytes[..bytes.len() / 2])?;
                Err(eio(self.kind.dir(), "injected fault: a short write"))
            }
        }
    }

    fn written(&self) -> u64 {
        self.inner.written()
    }

    fn commit(mut self: Box<Self>, name: &str, rest: &[u8]) -> Result<()> {
        let what = self.outer.what(self.kind, name);
        match self.outer.begin(Op::Write, &what)? {
            Go::Normal => self.inner.commit(name, rest),
            Go::Break(f) => {
                self.inner.append(&rest[..kept(f, rest.len())])?;
                // Not dropped: dropping would remove the temporary file, which
                // a killed writer leaves behind.
                #[allow(clippy::mem_forget)]
                std::mem::forget(self.inner);
                Err(eio(
                    &what,
                    "injected fault: the file was left under a temporary name",
                ))
            }
        }
    }
}
