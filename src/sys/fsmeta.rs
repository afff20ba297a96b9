//! File metadata: read from `lstat` and xattrs at backup, applied at restore.
//!
//! Owners are recorded as numbers and names; on restore as root, names win
//! when they exist on the target machine (as tar and restic do), numbers
//! otherwise. POSIX ACLs are xattrs (`system.posix_acl_*`) and ride along.

use crate::error::{Error, Result};
use crate::format::tree::{Node, NodeKind, Timestamp, Xattr};
use std::collections::HashMap;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Caches uid/gid → name lookups for one run.
#[derive(Default)]
pub struct NameCache {
    users: HashMap<u32, String>,
    groups: HashMap<u32, String>,
}

impl NameCache {
    pub fn user(&mut self, uid: u32) -> String {
        self.users
            .entry(uid)
            .or_insert_with(|| {
                uzers::get_user_by_uid(uid)
                    .map(|u| u.name().to_string_lossy().into_owned())
                    .unwrap_or_default()
            })
            .clone()
    }
    pub fn group(&mut self, gid: u32) -> String {
        self.groups
            .entry(gid)
            .or_insert_with(|| {
                uzers::get_group_by_gid(gid)
                    .map(|g| g.name().to_string_lossy().into_owned())
                    .unwrap_or_default()
            })
            .clone()
    }
}

/// A node for `path` with everything but the file content or subtree filled in.
///
/// `previous` is the same path's node in the parent snapshot. When its inode,
/// mtime and ctime (and a file's size) are what `md` says, nothing about the
/// entry changed since: setting an xattr or replacing a symlink changes the
/// ctime or the inode. Its xattrs and symlink target are then taken over
/// instead of read again, the rule that already decides that an unchanged
/// file is not read.
pub fn read_node(
    path: &Path,
    name: &[u8],
    md: &std::fs::Metadata,
    names: &mut NameCache,
    previous: Option<&Node>,
) -> Result<Node> {
    let previous = previous.filter(|p| unchanged(p, md));
    let ft = md.file_type();
    use std::os::unix::fs::FileTypeExt;
    let kind = if ft.is_file() {
        NodeKind::File {
            size: md.len(),
            content: crate::format::tree::Content::empty(),
        }
    } else if ft.is_dir() {
        NodeKind::Dir {
            tree: Default::default(),
        }
    } else if ft.is_symlink() {
        let target = match previous.map(|p| &p.kind) {
            Some(NodeKind::Symlink { target }) => target.clone(),
            _ => std::fs::read_link(path)
                .map_err(|e| Error::io(path, e))?
                .as_os_str()
                .as_bytes()
                .to_vec(),
        };
        NodeKind::Symlink { target }
    } else if ft.is_fifo() {
        NodeKind::Fifo
    } else if ft.is_char_device() {
        NodeKind::CharDevice { rdev: md.rdev() }
    } else if ft.is_block_device() {
        NodeKind::BlockDevice { rdev: md.rdev() }
    } else {
        NodeKind::Socket
    };
    Ok(Node {
        name: name.to_vec(),
        kind,
        mode: md.mode(),
        uid: md.uid(),
        gid: md.gid(),
        user: names.user(md.uid()),
        group: names.group(md.gid()),
        mtime: Timestamp {
            sec: md.mtime(),
            nsec: md.mtime_nsec() as u32,
        },
        ctime: Timestamp {
            sec: md.ctime(),
            nsec: md.ctime_nsec() as u32,
        },
        inode: md.ino(),
        device: md.dev(),
        links: md.nlink(),
        xattrs: match previous {
            Some(p) => p.xattrs.clone(),
            None => read_xattrs(path),
        },
    })
}

/// Whether `md` describes the entry `node` recorded, unchanged.
fn unchanged(node: &Node, md: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::FileTypeExt;
    let ft = md.file_type();
    let same_kind = match &node.kind {
        NodeKind::File { size, .. } => ft.is_file() && *size == md.len(),
        NodeKind::Dir { .. } => ft.is_dir(),
        NodeKind::Symlink { .. } => ft.is_symlink(),
        NodeKind::Fifo => ft.is_fifo(),
        NodeKind::CharDevice { .. } => ft.is_char_device(),
        NodeKind::BlockDevice { .. } => ft.is_block_device(),
        NodeKind::Socket => ft.is_socket(),
    };
    same_kind
        && node.inode == md.ino()
        && node.mtime.sec == md.mtime()
        && node.mtime.nsec == md.mtime_nsec() as u32
        && node.ctime.sec == md.ctime()
        && node.ctime.nsec == md.ctime_nsec() as u32
}

/// Extended attributes of `path` (not following symlinks); unsupported file systems give none.
pub fn read_xattrs(path: &Path) -> Vec<Xattr> {
    let Ok(names) = xattr::list(path) else {
        return Vec::new();
    };
    let mut out: Vec<Xattr> = names
        .filter_map(|n| {
            let value = xattr::get(path, &n).ok().flatten()?;
            Some(Xattr {
                name: n.as_bytes().to_vec(),
                value,
            })
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

fn cpath(path: &Path) -> Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| Error::Usage(format!("{}: path contains a NUL byte", path.display())))
}

fn last_err(path: &Path) -> Error {
    Error::io(path, std::io::Error::last_os_error())
}

/// This system's ids for the user and group names recorded in a snapshot
/// (the recorded ids where a name is unknown), each name looked up once: a
/// lookup reads `/etc/passwd` or `/etc/group` or asks NSS, and per file
/// that was two file reads for every file restored.
#[derive(Default)]
pub struct Owners {
    users: std::sync::Mutex<HashMap<String, Option<u32>>>,
    groups: std::sync::Mutex<HashMap<String, Option<u32>>>,
}

impl Owners {
    fn uid(&self, node: &Node) -> u32 {
        Self::id(&self.users, &node.user, node.uid, |n| {
            uzers::get_user_by_name(n).map(|u| u.uid())
        })
    }

    fn gid(&self, node: &Node) -> u32 {
        Self::id(&self.groups, &node.group, node.gid, |n| {
            uzers::get_group_by_name(n).map(|g| g.gid())
        })
    }

    /// The id of `name` in `cache`, looked up on first use; `recorded` when
    /// the name is empty or unknown here.
    fn id(
        cache: &std::sync::Mutex<HashMap<String, Option<u32>>>,
        name: &str,
        recorded: u32,
        lookup: impl FnOnce(&str) -> Option<u32>,
    ) -> u32 {
        if name.is_empty() {
            return recorded;
        }
        let mut cache = cache.lock().unwrap();
        let found = cache
            .entry(name.to_string())
            .or_insert_with(|| lookup(name));
        found.unwrap_or(recorded)
    }
}

/// Applies owner (with `owners`), xattrs, mode and mtime to an already created entry.
/// Returns warnings for what could not be applied.
pub fn apply(path: &Path, node: &Node, owners: Option<&Owners>) -> Result<Vec<String>> {
    let c = cpath(path)?;
    let is_link = matches!(node.kind, NodeKind::Symlink { .. });
    apply_to(Entry::Path(&c, is_link), path, node, owners)
}

/// [`apply`] for a regular file still open for writing: through its
/// descriptor, so no path is resolved again (`fchown`, `fsetxattr`,
/// `fchmod`, `futimens`). Call it after the last write: setting the mtime
/// must come after the data.
pub fn apply_to_file(
    file: &std::fs::File,
    path: &Path,
    node: &Node,
    owners: Option<&Owners>,
) -> Result<Vec<String>> {
    apply_to(Entry::File(file), path, node, owners)
}

/// How [`apply_to`] reaches the entry.
#[derive(Clone, Copy)]
enum Entry<'a> {
    /// A path, and whether it is a symlink (not followed; its mode is not set).
    Path(&'a std::ffi::CStr, bool),
    /// An open regular file.
    File(&'a std::fs::File),
}

fn apply_to(
    entry: Entry<'_>,
    path: &Path,
    node: &Node,
    owners: Option<&Owners>,
) -> Result<Vec<String>> {
    use std::os::fd::AsRawFd;
    let mut warnings = Vec::new();
    if let Some(owners) = owners {
        let (uid, gid) = (owners.uid(node), owners.gid(node));
        // SAFETY: a valid NUL-terminated path, or a descriptor that `entry` keeps open.
        let r = match entry {
            // SAFETY: `c` is a valid NUL-terminated path.
            Entry::Path(c, _) => unsafe { libc::lchown(c.as_ptr(), uid, gid) },
            // SAFETY: `f` keeps the descriptor open for the call.
            Entry::File(f) => unsafe { libc::fchown(f.as_raw_fd(), uid, gid) },
        };
        if r != 0 {
            warnings.push(format!(
                "{}: cannot set owner: {}",
                path.display(),
                std::io::Error::last_os_error()
            ));
        }
    }
    for x in &node.xattrs {
        let name = std::ffi::OsStr::from_bytes(&x.name);
        let r = match entry {
            Entry::Path(..) => xattr::set(path, name, &x.value),
            Entry::File(f) => xattr::FileExt::set_xattr(f, name, &x.value),
        };
        if let Err(e) = r {
            warnings.push(format!(
                "{}: cannot set xattr {}: {e}",
                path.display(),
                name.to_string_lossy()
            ));
        }
    }
    let mode = (node.mode & 0o7777) as libc::mode_t;
    // SAFETY: as above.
    let r = match entry {
        Entry::Path(_, true) => 0,
        // SAFETY: `c` is a valid NUL-terminated path.
        Entry::Path(c, false) => unsafe { libc::chmod(c.as_ptr(), mode) },
        // SAFETY: `f` keeps the descriptor open for the call.
        Entry::File(f) => unsafe { libc::fchmod(f.as_raw_fd(), mode) },
    };
    if r != 0 {
        return Err(last_err(path));
    }
    let ts = libc::timespec {
        tv_sec: node.mtime.sec as libc::time_t,
        tv_nsec: node.mtime.nsec as _,
    };
    let times = [ts, ts];
    // SAFETY: as above; times points to two timespecs.
    let r = match entry {
        // SAFETY: `c` is a valid NUL-terminated path; `times` holds two timespecs.
        Entry::Path(c, _) => unsafe {
            libc::utimensat(
                libc::AT_FDCWD,
                c.as_ptr(),
                times.as_ptr(),
                libc::AT_SYMLINK_NOFOLLOW,
            )
        },
        // SAFETY: `f` keeps the descriptor open; `times` holds two timespecs.
        Entry::File(f) => unsafe { libc::futimens(f.as_raw_fd(), times.as_ptr()) },
    };
    if r != 0 {
        warnings.push(format!(
            "{}: cannot set mtime: {}",
            path.display(),
            std::io::Error::last_os_error()
        ));
    }
    Ok(warnings)
}

/// Creates a fifo or device node.
pub fn make_special(path: &Path, node: &Node) -> Result<()> {
    let c = cpath(path)?;
    let (fmt, rdev) = match node.kind {
        NodeKind::Fifo => (libc::S_IFIFO, 0),
        NodeKind::CharDevice { rdev } => (libc::S_IFCHR, rdev),
        NodeKind::BlockDevice { rdev } => (libc::S_IFBLK, rdev),
        _ => return Ok(()),
    };
    // SAFETY: c is a valid NUL-terminated path.
    if unsafe {
        libc::mknod(
            c.as_ptr(),
            fmt | (node.mode & 0o7777) as libc::mode_t,
            rdev as libc::dev_t,
        )
    } != 0
    {
        return Err(last_err(path));
    }
    Ok(())
}
