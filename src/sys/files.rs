//! Files and processes as a backup run asks for them: opening a file to
//! back up without touching its access time ([`open_for_backup`]), a file
//! with no name for spilled data ([`unnamed_file`]), stopping a dump
//! command together with everything it started ([`signal_group`]), and who
//! this process runs as ([`effective_ids`], [`real_ids`]).

use std::fs::File;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// The file type bits of a regular file, as a tree node's mode records them.
pub const S_IFREG: u32 = libc::S_IFREG;

/// Opens a file to read it for a backup: with `O_NOATIME` where this user
/// may (its owner, or root), so a backup does not change the access times
/// it reads; plainly otherwise.
pub fn open_for_backup(path: &Path) -> std::io::Result<File> {
    let noatime = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOATIME)
        .open(path);
    match noatime {
        Ok(f) => Ok(f),
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => File::open(path),
        Err(e) => Err(e),
    }
}

/// A new file in `dir` that has no name: O_TMPFILE where the file system
/// offers it, else a fresh name unlinked at once. The directory is created
/// private (mode 0700) if missing, and the file is readable by its owner only.
pub fn unnamed_file(dir: &Path) -> std::io::Result<File> {
    std::os::unix::fs::DirBuilderExt::mode(std::fs::DirBuilder::new().recursive(true), 0o700)
        .create(dir)?;
    let tmpfile = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .mode(0o600)
        .custom_flags(libc::O_TMPFILE)
        .open(dir);
    if let Ok(f) = tmpfile {
        return Ok(f);
    }
    let mut r = [0u8; 8];
    crate::crypto::fill_random(&mut r).map_err(std::io::Error::other)?;
    let path = dir.join(format!(".added-ids-{}", hex::encode(r)));
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)?;
    std::fs::remove_file(&path)?;
    Ok(f)
}

/// A signal [`signal_group`] sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// SIGTERM: asks the group to end.
    Terminate,
    /// SIGKILL: ends it.
    Kill,
}

/// Sends `stop` to the process group `pgid` (a child started in its own
/// group, whose id is its pid). The caller must not have reaped the child
/// yet, so that the group id still names it.
pub fn signal_group(pgid: u32, stop: Stop) {
    let signal = match stop {
        Stop::Terminate => libc::SIGTERM,
        Stop::Kill => libc::SIGKILL,
    };
    // SAFETY: plain kill(2) of a process group; it takes no pointers, and
    // a group that no longer exists is only an ESRCH, ignored here.
    unsafe { libc::kill(-(pgid as libc::pid_t), signal) };
}

/// The effective user and group ids of this process.
pub fn effective_ids() -> (u32, u32) {
    // SAFETY: geteuid/getegid have no preconditions.
    unsafe { (libc::geteuid(), libc::getegid()) }
}

/// The real user and group ids of this process (who started it).
pub fn real_ids() -> (u32, u32) {
    // SAFETY: getuid/getgid have no preconditions and cannot fail.
    unsafe { (libc::getuid(), libc::getgid()) }
}

/// Allocates `len` bytes of `file` on the disk without writing them where the
/// file system can (glibc writes one byte per block where it cannot).
pub fn allocate(file: &File, len: u64) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let len = libc::off_t::try_from(len).map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{len} bytes: larger than a file offset"),
        )
    })?;
    // SAFETY: a valid open descriptor (borrowed for the call) and a non-negative length.
    let r = unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, len) };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::from_raw_os_error(r))
    }
}

/// True when no process with id `pid` exists (in this pid namespace).
pub fn process_is_gone(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: kill with signal 0 sends nothing; it only checks whether the process exists.
    let r = unsafe { libc::kill(pid, 0) };
    r != 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH)
}

/// Kills this process with SIGKILL: no destructors, no cleanup.
pub fn kill_self() {
    // SAFETY: kill(2) on our own pid; SIGKILL cannot be caught.
    unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
}
