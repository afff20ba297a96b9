//! Host and user names, and the local time with its UTC offset.

use crate::format::tree::Timestamp;

pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into buf.
    let r = unsafe { libc::gethostname(buf.as_mut_ptr() as *mut libc::c_char, buf.len()) };
    if r != 0 {
        return "unknown".into();
    }
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

pub fn username() -> String {
    // SAFETY: geteuid has no preconditions.
    let uid = unsafe { libc::geteuid() };
    uzers::get_user_by_uid(uid)
        .map(|u| u.name().to_string_lossy().into_owned())
        .unwrap_or_else(|| uid.to_string())
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// The current time with the local UTC offset.
pub fn now() -> crate::format::manifest::SnapshotTime {
    let t = chrono::Local::now();
    crate::format::manifest::SnapshotTime {
        at: Timestamp {
            sec: t.timestamp(),
            nsec: t.timestamp_subsec_nanos(),
        },
        utc_offset: t.offset().local_minus_utc(),
    }
}

/// This boot of the kernel (`/proc/sys/kernel/random/boot_id`), when known:
/// a pid names the same process only within one boot.
pub fn boot_id() -> Option<String> {
    let id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    Some(id.trim().to_string()).filter(|s| !s.is_empty())
}

/// This process's pid namespace (`pid:[4026531836]`), when known: two
/// containers on one host may share its name and boot, but not their pids.
pub fn pid_namespace() -> Option<String> {
    let link = std::fs::read_link("/proc/self/ns/pid").ok()?;
    Some(link.to_string_lossy().into_owned())
}
