//! Repository locks: shared for writers and readers, exclusive for prune.
//!
//! A lock is a small JSON file in `locks/` naming host, pid, user, time and
//! mode, and the boot and pid namespace it was taken in. Taking a lock writes
//! ours first and then looks at the others, so two processes racing for
//! conflicting locks both back off rather than both proceed.
//!
//! A lock whose process is gone (same host, no such pid) is stale. When the
//! lock also names this boot and this pid namespace, its pid can only mean
//! that process, which is certainly gone: the lock is removed on the spot,
//! with a note naming it (a killed prune blocks nothing). Otherwise (an
//! older lock without them, another boot or container) it still blocks,
//! the message says it is stale, and `sopvault unlock` removes it.
//!
//! On a full disk a lock file cannot be written. What happens then depends on
//! the [`Access`]: a reader goes on without a lock (nothing can write to that
//! disk, so nothing can prune under it) and says so; prune, whose job is to
//! free space, checks the other locks as a reader does and gets a lock that
//! is not written yet: once its arguments have been checked against the
//! snapshots, [`Lock::take_reserve`] deletes the repository's space reserve
//! and writes it (so a usage error leaves the reserve in place); a writer
//! fails, as its data would not fit either, and so does a prune's dry run,
//! which must not change anything.

use crate::backend::Backend;
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LockInfo {
    pub exclusive: bool,
    pub host: String,
    pub pid: u32,
    pub user: String,
    pub time: String,
    pub command: String,
    /// The kernel's boot id when the lock was taken; absent in older locks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_id: Option<String>,
    /// The pid namespace of the process (`pid:[…]`); absent in older locks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid_namespace: Option<String>,
}

impl LockInfo {
    /// True when the lock was taken on this host by a process that no longer exists.
    pub fn is_stale(&self) -> bool {
        if self.host != crate::sys::sysinfo::hostname() {
            return false;
        }
        crate::sys::files::process_is_gone(self.pid)
    }
    /// True when the lock is stale and its pid can mean no other process:
    /// taken in this boot and this pid namespace, so safe to remove unasked.
    pub fn is_certainly_dead(&self) -> bool {
        let same =
            |theirs: &Option<String>, ours: Option<String>| theirs.is_some() && *theirs == ours;
        same(&self.boot_id, crate::sys::sysinfo::boot_id())
            && same(&self.pid_namespace, crate::sys::sysinfo::pid_namespace())
            && self.is_stale()
    }

    fn describe(&self) -> String {
        let stale = if self.is_stale() {
            ", stale: that process is gone"
        } else {
            ""
        };
        format!(
            "{} (pid {} on {}, user {}, since {}{stale})",
            self.command, self.pid, self.host, self.user, self.time
        )
    }
}

/// What a command does to the repository, which decides its lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Reads only (list, restore, check, mount, mirror's source): a shared
    /// lock, or none when the disk is too full to write one.
    Read,
    /// Adds files (snapshot, key): a shared lock, always.
    Write,
    /// Deletes files (prune): the exclusive lock, using the space reserve
    /// when the disk is full.
    Prune,
    /// Plans a prune without running it (`prune --dry-run`): the exclusive
    /// lock, but never the space reserve, so that a dry run changes nothing.
    PrunePlan,
}

/// A held lock; released on drop.
pub struct Lock {
    backend: Arc<dyn Backend>,
    /// `None`: a reader that found no room for a lock file and holds none.
    name: Option<String>,
    /// Whether the space reserve was deleted to make room for this lock.
    pub released_reserve: bool,
    /// Why the lock is not what was asked for, and the stale locks removed
    /// on the way, to show as warnings.
    pub notes: Vec<String>,
    /// A prune's lock that did not fit on the full disk (the path it was
    /// to be written to): [`Lock::take_reserve`] writes it.
    awaiting_reserve: Option<std::path::PathBuf>,
}

impl Drop for Lock {
    fn drop(&mut self) {
        if let Some(name) = &self.name {
            let _ = self.backend.remove_lock(name);
        }
    }
}

impl Lock {
    /// Takes the lock that `access` needs; see the module documentation for
    /// what a full disk changes.
    pub fn acquire_for(backend: Arc<dyn Backend>, access: Access, command: &str) -> Result<Lock> {
        let exclusive = matches!(access, Access::Prune | Access::PrunePlan);
        match Lock::acquire(backend.clone(), exclusive, command) {
            Err(Error::NoSpace { path }) => match access {
                Access::Write | Access::PrunePlan => Err(Error::NoSpace { path }),
                Access::Prune => {
                    // Nobody may hold a lock, but the reserve stays until
                    // the prune is known to run.
                    let notes = check_others(backend.as_ref(), None, true)?;
                    Ok(Lock {
                        backend,
                        name: None,
                        released_reserve: false,
                        notes,
                        awaiting_reserve: Some(path),
                    })
                }
                Access::Read => {
                    // Without a lock of our own, still respect a prune's.
                    let mut notes = check_others(backend.as_ref(), None, false)?;
                    notes.push(format!(
                        "no room for a lock file ({}): reading without a lock",
                        Error::NoSpace { path }
                    ));
                    Ok(Lock {
                        backend,
                        name: None,
                        released_reserve: false,
                        notes,
                        awaiting_reserve: None,
                    })
                }
            },
            r => r,
        }
    }

    /// Whether this is a prune's lock that the full disk had no room for:
    /// nothing is locked until [`Lock::take_reserve`].
    pub fn awaits_reserve(&self) -> bool {
        self.awaiting_reserve.is_some()
    }

    /// For a lock that [`Lock::awaits_reserve`]: deletes the space reserve
    /// and writes the exclusive lock in its room. Call it once the prune is
    /// known to run. Returns notes to show; a no-op for any other lock.
    pub fn take_reserve(&mut self, command: &str) -> Result<Vec<String>> {
        let Some(path) = self.awaiting_reserve.take() else {
            return Ok(Vec::new());
        };
        if !self.backend.release_reserve()? {
            return Err(Error::NoSpace { path });
        }
        let mut lock = Lock::acquire(self.backend.clone(), true, command)?;
        self.name = lock.name.take();
        self.released_reserve = true;
        let mut notes = std::mem::take(&mut lock.notes);
        notes.push(
            "the repository's disk is full: its space reserve was deleted to make room for this \
             prune"
                .into(),
        );
        Ok(notes)
    }

    /// Writes a lock file (exclusive or shared) and checks it against the others.
    pub fn acquire(backend: Arc<dyn Backend>, exclusive: bool, command: &str) -> Result<Lock> {
        let info = LockInfo {
            exclusive,
            host: crate::sys::sysinfo::hostname(),
            pid: std::process::id(),
            user: crate::sys::sysinfo::username(),
            time: chrono::Local::now().to_rfc3339(),
            command: command.to_string(),
            boot_id: crate::sys::sysinfo::boot_id(),
            pid_namespace: crate::sys::sysinfo::pid_namespace(),
        };
        let mut r = [0u8; 8];
        crate::crypto::fill_random(&mut r)?;
        let name = format!("{}.lock", hex::encode(r));
        backend.write_lock(
            &name,
            &serde_json::to_vec_pretty(&info).expect("lock info encodes"),
        )?;
        let mut lock = Lock {
            backend: backend.clone(),
            name: Some(name.clone()),
            released_reserve: false,
            notes: Vec::new(),
            awaiting_reserve: None,
        };
        lock.notes = check_others(backend.as_ref(), Some(&name), exclusive)?;
        Ok(lock)
    }
}

/// Fails if a lock other than `own` conflicts: any exclusive one, any one
/// when `exclusive`, and any that cannot be parsed. One that is gone by
/// the time it is read (released meanwhile) does not count, nor does one
/// whose process is certainly gone ([`LockInfo::is_certainly_dead`]): it is
/// removed, and the returned notes name it.
fn check_others(backend: &dyn Backend, own: Option<&str>, exclusive: bool) -> Result<Vec<String>> {
    let mut notes = Vec::new();
    for other in backend.list_locks()? {
        if Some(other.as_str()) == own {
            continue;
        }
        let Ok(bytes) = backend.read_lock(&other) else {
            continue;
        };
        let Ok(o) = serde_json::from_slice::<LockInfo>(&bytes) else {
            return Err(Error::Locked {
                mode: "with an unreadable lock file",
                holder: "an unknown process".into(),
                lock: other,
            });
        };
        if o.is_certainly_dead() && backend.remove_lock(&other).is_ok() {
            notes.push(format!(
                "removed the stale lock locks/{other} of {} (pid {} on {}, since {}): that process \
                 is gone",
                o.command, o.pid, o.host, o.time
            ));
            continue;
        }
        if o.exclusive || exclusive {
            return Err(Error::Locked {
                mode: if o.exclusive { "exclusively" } else { "shared" },
                holder: o.describe(),
                lock: other,
            });
        }
    }
    Ok(notes)
}

/// All locks with their parsed contents (None when unreadable).
pub fn list(backend: &dyn Backend) -> Result<Vec<(String, Option<LockInfo>)>> {
    let mut out = Vec::new();
    for name in backend.list_locks()? {
        let info = backend
            .read_lock(&name)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        out.push((name, info));
    }
    Ok(out)
}
