//! `sopvault mount`: every snapshot as a read-only FUSE file system.
//!
//! This file is only the adapter between the kernel's FUSE requests (the
//! `fuser` crate, pure Rust, no libfuse) and the engine's read-only view,
//! [`sopvault::ops::vfs::Vfs`]. Lookups, attributes and listings are answered on the
//! session thread from the view's inode table; reads go to a small pool of
//! threads so the kernel's parallel read-ahead requests are served at once.
//!
//! Mount options: `ro`, `fsname=sopvault`, `subtype=sopvault`, `nosuid`,
//! `nodev` and `default_permissions`. With `default_permissions` the kernel
//! checks the recorded modes and owners, so a user who can reach the mount
//! (only the one who mounted it; FUSE's default without `allow_other`) still
//! cannot read a file the snapshot records as someone else's private file —
//! root, who restores, can read everything. `nosuid`/`nodev` keep recorded
//! set-uid programs and device nodes inert.
//!
//! The process holds a shared repository lock while mounted, so `prune` (which
//! needs an exclusive one) cannot delete data from under a reader. Ctrl-C,
//! SIGTERM or `fusermount3 -u MOUNTPOINT` unmount and end the process with 0.

use super::Ctx;
use fuser::{
    FileAttr, Filesystem, KernelConfig, MountOption, ReplyAttr, ReplyCreate, ReplyData,
    ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyWrite, ReplyXattr, Request, TimeOrNow,
};
use sopvault::format::tree::Timestamp;
use sopvault::ops::vfs::{Attr, FileType, Vfs, VfsError, VfsOptions, ROOT_INO};
use sopvault::repo::{ListAhead, Repository};
use sopvault::Error;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[derive(clap::Args)]
pub struct Args {
    /// An empty directory to mount on; the command stays in the foreground
    /// until Ctrl-C or `fusermount3 -u MOUNTPOINT`
    mountpoint: PathBuf,
}

/// How long the kernel may cache attributes and entries. Short, so the
/// directories above the snapshots pick up new snapshots quickly; snapshot
/// contents never change, but their attributes are cheap to serve again.
const TTL: Duration = Duration::from_secs(1);
/// Threads serving reads.
const READ_THREADS: usize = 8;

pub fn run(ctx: &Ctx, args: Args) -> Result<i32, Error> {
    check_mountpoint(&args.mountpoint)?;
    // The mount reads the snapshot list and the index lazily, for as long as
    // it runs: nothing is listed ahead.
    let (repo, lock) = ctx.open_locked(
        sopvault::repo::lock::Access::Read,
        "mount",
        ListAhead::Nothing,
    )?;
    let repo = Arc::new(repo);
    let (uid, gid) = sopvault::sys::files::real_ids();
    let vfs = Arc::new(Vfs::new(
        repo.clone(),
        VfsOptions {
            uid,
            gid,
            ..VfsOptions::default()
        },
    )?);
    ctx.print_warnings(&repo);
    let mut session = mount(Adapter::new(vfs.clone()), &args.mountpoint)?;
    if !ctx.quiet {
        eprintln!(
            "sopvault: mounted {} read-only; Ctrl-C or `fusermount3 -u {}` unmounts",
            args.mountpoint.display(),
            args.mountpoint.display()
        );
    }
    unmount_on_interrupt(&mut session, repo, args.mountpoint.clone());
    let result = session.run();
    drop(session);
    drop(lock);
    result.map_err(|e| Error::io(&args.mountpoint, e))?;
    if !ctx.quiet {
        eprintln!("sopvault: unmounted {}", args.mountpoint.display());
    }
    Ok(super::exit::OK)
}

/// Fails unless the mount point is an existing directory.
fn check_mountpoint(mountpoint: &Path) -> Result<(), Error> {
    let md = std::fs::metadata(mountpoint).map_err(|e| {
        Error::Usage(format!(
            "mount point {}: {e} (create an empty directory first)",
            mountpoint.display()
        ))
    })?;
    if !md.is_dir() {
        return Err(Error::Usage(format!(
            "mount point {} is not a directory",
            mountpoint.display()
        )));
    }
    Ok(())
}

/// Mounts the view read-only, without set-uid programs or devices.
fn mount(fs: Adapter, mountpoint: &Path) -> Result<fuser::Session<Adapter>, Error> {
    let options = [
        MountOption::RO,
        MountOption::FSName("sopvault".into()),
        MountOption::Subtype("sopvault".into()),
        MountOption::NoSuid,
        MountOption::NoDev,
        MountOption::DefaultPermissions,
    ];
    fuser::Session::new(fs, mountpoint, &options).map_err(|e| Error::Environment {
        what: format!("cannot mount on {}", mountpoint.display()),
        reason: format!("{e} (FUSE needs /dev/fuse and Debian's fuse3 package)"),
    })
}

/// Ctrl-C and SIGTERM only set the interruption flag (src/cli/mod.rs); a
/// thread turns it into an unmount, which ends the session's loop. Until
/// then it prints the repository's warnings as reads find damage.
fn unmount_on_interrupt(
    session: &mut fuser::Session<Adapter>,
    repo: Arc<Repository>,
    mountpoint: PathBuf,
) {
    let mut unmounter = session.unmount_callable();
    std::thread::spawn(move || loop {
        std::thread::sleep(Duration::from_millis(100));
        for w in repo.take_warnings() {
            eprintln!("sopvault: warning: {w}");
        }
        if sopvault::interrupt::flag().load(Ordering::SeqCst) {
            if let Err(e) = unmounter.unmount() {
                eprintln!("sopvault: cannot unmount {}: {e}", mountpoint.display());
            }
            return;
        }
    });
}

/// The FUSE file system: translates requests into calls of the view.
struct Adapter {
    vfs: Arc<Vfs>,
    reads: crossbeam_channel::Sender<Box<dyn FnOnce() + Send>>,
}

impl Adapter {
    fn new(vfs: Arc<Vfs>) -> Adapter {
        let (tx, rx) = crossbeam_channel::unbounded::<Box<dyn FnOnce() + Send>>();
        for _ in 0..READ_THREADS {
            let rx = rx.clone();
            std::thread::spawn(move || {
                for job in rx {
                    job();
                }
            });
        }
        Adapter { vfs, reads: tx }
    }
}

/// The errno for a failed request; damage is logged with the path and the pack.
fn errno(e: &VfsError) -> i32 {
    match e {
        VfsError::NotFound => libc::ENOENT,
        VfsError::NotDir => libc::ENOTDIR,
        VfsError::IsDir => libc::EISDIR,
        VfsError::NotSymlink | VfsError::NotFile => libc::EINVAL,
        VfsError::Engine { .. } => {
            eprintln!("sopvault: error: {e}");
            libc::EIO
        }
    }
}

fn system_time(t: Timestamp) -> SystemTime {
    let nanos = Duration::from_nanos(t.nsec.min(999_999_999) as u64);
    if t.sec >= 0 {
        UNIX_EPOCH + Duration::from_secs(t.sec as u64) + nanos
    } else {
        UNIX_EPOCH - Duration::from_secs(t.sec.unsigned_abs()) + nanos
    }
}

fn file_type(k: FileType) -> fuser::FileType {
    match k {
        FileType::Dir => fuser::FileType::Directory,
        FileType::File => fuser::FileType::RegularFile,
        FileType::Symlink => fuser::FileType::Symlink,
        FileType::Fifo => fuser::FileType::NamedPipe,
        FileType::CharDevice => fuser::FileType::CharDevice,
        FileType::BlockDevice => fuser::FileType::BlockDevice,
        FileType::Socket => fuser::FileType::Socket,
    }
}

fn file_attr(a: &Attr) -> FileAttr {
    FileAttr {
        ino: a.ino,
        size: a.size,
        blocks: a.size.div_ceil(512),
        atime: system_time(a.mtime),
        mtime: system_time(a.mtime),
        ctime: system_time(a.ctime),
        crtime: system_time(a.mtime),
        kind: file_type(a.kind),
        perm: a.perm,
        nlink: a.nlink,
        uid: a.uid,
        gid: a.gid,
        rdev: a.rdev as u32,
        blksize: 128 * 1024,
        flags: 0,
    }
}

impl Filesystem for Adapter {
    fn init(&mut self, _req: &Request<'_>, config: &mut KernelConfig) -> Result<(), libc::c_int> {
        // Larger kernel read-ahead: more requests in flight for sequential readers.
        let _ = config.set_max_readahead(4 << 20);
        Ok(())
    }

    fn lookup(&mut self, _req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEntry) {
        match self.vfs.lookup(parent, name.as_bytes()) {
            Ok(a) => reply.entry(&TTL, &file_attr(&a), 0),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn getattr(&mut self, _req: &Request<'_>, ino: u64, _fh: Option<u64>, reply: ReplyAttr) {
        match self.vfs.getattr(ino) {
            Ok(a) => reply.attr(&TTL, &file_attr(&a)),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn readlink(&mut self, _req: &Request<'_>, ino: u64, reply: ReplyData) {
        match self.vfs.readlink(ino) {
            Ok(t) => reply.data(&t),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn open(&mut self, _req: &Request<'_>, ino: u64, flags: i32, reply: ReplyOpen) {
        if flags & libc::O_ACCMODE != libc::O_RDONLY || flags & libc::O_TRUNC != 0 {
            return reply.error(libc::EROFS);
        }
        match self.vfs.getattr(ino) {
            // Snapshot data never changes: the page cache may keep it across opens.
            Ok(_) => reply.opened(0, fuser::consts::FOPEN_KEEP_CACHE),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn read(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        _fh: u64,
        offset: i64,
        size: u32,
        _flags: i32,
        _lock_owner: Option<u64>,
        reply: ReplyData,
    ) {
        let Ok(offset) = u64::try_from(offset) else {
            return reply.error(libc::EINVAL);
        };
        let vfs = self.vfs.clone();
        let job = Box::new(move || match vfs.read(ino, offset, size) {
            Ok(data) => reply.data(&data),
            Err(e) => reply.error(errno(&e)),
        });
        if let Err(crossbeam_channel::SendError(job)) = self.reads.send(job) {
            job();
        }
    }

    fn release(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        _fh: u64,
        _flags: i32,
        _lock_owner: Option<u64>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.vfs.release(ino);
        reply.ok();
    }

    fn readdir(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        _fh: u64,
        offset: i64,
        mut reply: ReplyDirectory,
    ) {
        let (entries, parent) = match (self.vfs.readdir(ino), self.vfs.parent(ino)) {
            (Ok(e), Ok(p)) => (e, p),
            (Err(e), _) | (_, Err(e)) => return reply.error(errno(&e)),
        };
        let dots = [(ino, &b"."[..]), (parent, &b".."[..])];
        let all = dots
            .iter()
            .map(|&(i, n)| (i, fuser::FileType::Directory, n))
            .chain(
                entries
                    .iter()
                    .map(|e| (e.ino, file_type(e.kind), e.name.as_slice())),
            );
        for (i, (child, kind, name)) in all.enumerate().skip(offset.max(0) as usize) {
            if reply.add(child, (i + 1) as i64, kind, OsStr::from_bytes(name)) {
                break;
            }
        }
        reply.ok();
    }

    fn getxattr(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        name: &OsStr,
        size: u32,
        reply: ReplyXattr,
    ) {
        let xattrs = match self.vfs.xattrs(ino) {
            Ok(x) => x,
            Err(e) => return reply.error(errno(&e)),
        };
        match xattrs.iter().find(|x| x.name == name.as_bytes()) {
            None => reply.error(libc::ENODATA),
            Some(x) if size == 0 => reply.size(x.value.len() as u32),
            Some(x) if x.value.len() > size as usize => reply.error(libc::ERANGE),
            Some(x) => reply.data(&x.value),
        }
    }

    fn listxattr(&mut self, _req: &Request<'_>, ino: u64, size: u32, reply: ReplyXattr) {
        let xattrs = match self.vfs.xattrs(ino) {
            Ok(x) => x,
            Err(e) => return reply.error(errno(&e)),
        };
        let mut list = Vec::new();
        for x in &xattrs {
            list.extend_from_slice(&x.name);
            list.push(0);
        }
        if size == 0 {
            reply.size(list.len() as u32)
        } else if list.len() > size as usize {
            reply.error(libc::ERANGE)
        } else {
            reply.data(&list)
        }
    }

    // Everything that would change the file system: read-only. The kernel
    // already refuses most of these on an `ro` mount; these make sure.

    fn setattr(
        &mut self,
        _req: &Request<'_>,
        _ino: u64,
        _mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        _size: Option<u64>,
        _atime: Option<TimeOrNow>,
        _mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<u64>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<u32>,
        reply: ReplyAttr,
    ) {
        reply.error(libc::EROFS);
    }

    fn mknod(
        &mut self,
        _req: &Request<'_>,
        _parent: u64,
        _name: &OsStr,
        _mode: u32,
        _umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        reply.error(libc::EROFS);
    }

    fn mkdir(
        &mut self,
        _req: &Request<'_>,
        _parent: u64,
        _name: &OsStr,
        _mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        reply.error(libc::EROFS);
    }

    fn unlink(&mut self, _req: &Request<'_>, _parent: u64, _name: &OsStr, reply: ReplyEmpty) {
        reply.error(libc::EROFS);
    }

    fn rmdir(&mut self, _req: &Request<'_>, _parent: u64, _name: &OsStr, reply: ReplyEmpty) {
        reply.error(libc::EROFS);
    }

    fn symlink(
        &mut self,
        _req: &Request<'_>,
        _parent: u64,
        _link_name: &OsStr,
        _target: &Path,
        reply: ReplyEntry,
    ) {
        reply.error(libc::EROFS);
    }

    fn rename(
        &mut self,
        _req: &Request<'_>,
        _parent: u64,
        _name: &OsStr,
        _newparent: u64,
        _newname: &OsStr,
        _flags: u32,
        reply: ReplyEmpty,
    ) {
        reply.error(libc::EROFS);
    }

    fn link(
        &mut self,
        _req: &Request<'_>,
        _ino: u64,
        _newparent: u64,
        _newname: &OsStr,
        reply: ReplyEntry,
    ) {
        reply.error(libc::EROFS);
    }

    fn write(
        &mut self,
        _req: &Request<'_>,
        _ino: u64,
        _fh: u64,
        _offset: i64,
        _data: &[u8],
        _write_flags: u32,
        _flags: i32,
        _lock_owner: Option<u64>,
        reply: ReplyWrite,
    ) {
        reply.error(libc::EROFS);
    }

    fn create(
        &mut self,
        _req: &Request<'_>,
        _parent: u64,
        _name: &OsStr,
        _mode: u32,
        _umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        reply.error(libc::EROFS);
    }

    fn setxattr(
        &mut self,
        _req: &Request<'_>,
        _ino: u64,
        _name: &OsStr,
        _value: &[u8],
        _flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        reply.error(libc::EROFS);
    }

    fn removexattr(&mut self, _req: &Request<'_>, _ino: u64, _name: &OsStr, reply: ReplyEmpty) {
        reply.error(libc::EROFS);
    }
}

const _ROOT_IS_FUSE_ROOT: () = assert!(ROOT_INO == fuser::FUSE_ROOT_ID);
