//! Repository locks: shared for writers and readers, exclusive for prune.
//!
//! A lock is a small JSON file in `locks/` naming host, pid, user, time and
//! mode. Taking a lock writes ours first and then looks at the others, so two
//! processes racing for conflicting locks both back off rather than both
//! proceed. A lock whose process is gone (same host, no such pid) is stale:
//! it still blocks, but the message says so and `sopvault unlock` removes it.

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
}

impl LockInfo {
    /// True when the lock was taken on this host by a process that no longer exists.
    pub fn is_stale(&self) -> bool {
        if self.host != crate::sysinfo::hostname() {
            return false;
        }
        // SAFETY: kill with signal 0 only checks whether the process exists.
        let r = unsafe { libc::kill(self.pid as libc::pid_t, 0) };
        r != 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH)
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

/// A held lock; released on drop.
pub struct Lock {
    backend: Arc<dyn Backend>,
    name: String,
}

impl Drop for Lock {
    fn drop(&mut self) {
        let _ = self.backend.remove_lock(&self.name);
    }
}

impl Lock {
    pub fn acquire(backend: Arc<dyn Backend>, exclusive: bool, command: &str) -> Result<Lock> {
        let info = LockInfo {
            exclusive,
            host: crate::sysinfo::hostname(),
            pid: std::process::id(),
            user: crate::sysinfo::username(),
            time: chrono::Local::now().to_rfc3339(),
            command: command.to_string(),
        };
        let mut r = [0u8; 8];
        crate::crypto::fill_random(&mut r)?;
        let name = format!("{}.lock", hex::encode(r));
        backend.write_lock(
            &name,
            &serde_json::to_vec_pretty(&info).expect("lock info encodes"),
        )?;
        let lock = Lock {
            backend: backend.clone(),
            name,
        };
        for other in backend.list_locks()? {
            if other == lock.name {
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
            if o.exclusive || exclusive {
                return Err(Error::Locked {
                    mode: if o.exclusive { "exclusively" } else { "shared" },
                    holder: o.describe(),
                    lock: other,
                });
            }
        }
        Ok(lock)
    }
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
