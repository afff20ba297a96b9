//! End-to-end tests of `sopvault mount` through real FUSE (issue 6).
//!
//! Each test mounts a repository in its sandbox and inspects the mount with
//! ordinary file system calls. Without `/dev/fuse` or `fusermount3` (Debian's
//! `fuse3`, which `scripts/test.sh` installs), the tests print a SKIP line and
//! pass: they cannot run there, but they must not hide a failure where they can.
//! Under `SOPVAULT_STRICT=1` (`scripts/test.sh`) a missing FUSE fails them.

use crate::common::*;

use std::ffi::OsStr;
use std::io::ErrorKind;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

/// Why FUSE cannot be used here, if it cannot.
fn fuse_missing() -> Option<String> {
    if let Err(e) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/fuse")
    {
        return Some(format!("cannot open /dev/fuse: {e}"));
    }
    let found = std::process::Command::new("fusermount3")
        .arg("-V")
        .env("PATH", PATH)
        .output()
        .is_ok();
    if !found {
        return Some("fusermount3 is not installed (Debian package fuse3)".into());
    }
    None
}

macro_rules! require_fuse {
    () => {
        if let Some(why) = fuse_missing() {
            skip("the mount tests", &why);
            return;
        }
    };
}

/// A running `sopvault mount`; unmounts and stops it on drop if a test failed midway.
struct Mount {
    child: Option<Child>,
    dir: PathBuf,
}

impl Mount {
    fn start(sb: &Sandbox, name: &str) -> Mount {
        let dir = sb.path(name);
        std::fs::create_dir_all(&dir).unwrap();
        let child = sb.call(&["mount", &path_str(&dir)]).spawn();
        let mut m = Mount {
            child: Some(child),
            dir,
        };
        m.wait_ready();
        m
    }

    fn wait_ready(&mut self) {
        let started = Instant::now();
        while !self.dir.join("sources").is_dir() {
            let child = self.child.as_mut().unwrap();
            if let Some(status) = child.try_wait().unwrap() {
                let err = child_stderr(child);
                panic!("sopvault mount ended ({status}) before the mount was ready\n{err}");
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "the mount was not ready after 60 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn path(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.dir.join(rel)
    }

    fn pid(&self) -> i32 {
        self.child.as_ref().unwrap().id() as i32
    }

    /// Waits for the process to end by itself; returns its status and stderr.
    fn wait(&mut self) -> (std::process::ExitStatus, String) {
        let mut child = self.child.take().unwrap();
        let status = wait_at_most(&mut child, Duration::from_secs(30));
        (status, child_stderr(&mut child))
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = std::process::Command::new("fusermount3")
                .args(["-u", "-z"])
                .arg(&self.dir)
                .env("PATH", PATH)
                .output();
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn fusermount_u(dir: &Path) {
    let out = std::process::Command::new("fusermount3")
        .arg("-u")
        .arg(dir)
        .env("PATH", PATH)
        .output()
        .expect("run fusermount3");
    assert!(
        out.status.success(),
        "fusermount3 -u failed\n{}",
        show(&out)
    );
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn assert_clean_unmount(sb: &Sandbox, m: &mut Mount) {
    let (status, err) = m.wait();
    assert_eq!(status.code(), Some(0), "mount exited with {status}\n{err}");
    assert!(
        names(&m.dir).is_empty(),
        "the mount point is not empty after unmount"
    );
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    assert!(
        !mounts.contains(&path_str(&m.dir)),
        "still listed in /proc/self/mounts"
    );
    assert_eq!(
        std::fs::read_dir(sb.repo.join("locks")).unwrap().count(),
        0,
        "the mount left its lock"
    );
}

/// A web tree with the kinds of entries and metadata a mount must show as recorded.
fn build_tree(src: &Path) {
    use std::fs;
    fs::create_dir_all(src.join("app/config")).unwrap();
    fs::create_dir(src.join("empty_dir")).unwrap();
    fs::write(src.join("app/config/config.php"), b"<?php $db = 'x';\n").unwrap();
    fs::write(src.join("empty.txt"), b"").unwrap();
    write_random_file(&src.join("app/big.bin"), 7, 3 * 1024 * 1024 + 321);
    fs::write(src.join("hard1"), b"one inode, two names\n").unwrap();
    fs::hard_link(src.join("hard1"), src.join("app/hard2")).unwrap();
    std::os::unix::fs::symlink("app/config/config.php", src.join("link")).unwrap();
    std::os::unix::fs::symlink("does/not/exist", src.join("dangling")).unwrap();
    mkfifo(&src.join("fifo"), 0o640);
    fs::write(
        src.join(OsStr::from_bytes(b"bytes-\xff-name")),
        b"latin-1\n",
    )
    .unwrap();
    chmod(&src.join("app/config/config.php"), 0o640);
    chmod(&src.join("app/big.bin"), 0o755);
    chmod(&src.join("empty_dir"), 0o700);
    if is_root() {
        std::os::unix::fs::lchown(src.join("app/config/config.php"), Some(33), Some(33)).unwrap();
    }
    let mut all: Vec<PathBuf> = list_tree(src).into_iter().collect();
    all.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for (i, rel) in all.iter().enumerate() {
        set_mtime(
            &src.join(rel),
            1_700_000_000 + i as i64 * 3607,
            123_456_789 + i as u32,
        );
    }
    set_mtime(src, 1_650_000_000, 987_654_321);
}

/// Where the snapshot path `original` appears inside a mounted snapshot directory.
fn inside(snapdir: &Path, original: &Path) -> PathBuf {
    snapdir.join(original.strip_prefix("/").unwrap())
}

fn errno_of<T: std::fmt::Debug>(r: std::io::Result<T>, what: &str) -> i32 {
    match r {
        Ok(v) => panic!("{what} succeeded on the read-only mount: {v:?}"),
        Err(e) => e
            .raw_os_error()
            .unwrap_or_else(|| panic!("{what}: no errno: {e}")),
    }
}

#[test]
fn mount_shows_every_snapshot_as_recorded_read_only() {
    require_fuse!();
    let sb = Sandbox::init();
    let web = sb.path("src/www");
    build_tree(&web);
    let webs = path_str(&web);
    let dump = random_bytes(11, 2 * 1024 * 1024 + 77);
    sb.ok(&[
        "snapshot",
        "--source",
        "web",
        &webs,
        "--time",
        "2026-11-20T23:30:00+07:00",
    ]);
    sb.ok(&[
        "snapshot",
        "--source",
        "web",
        &webs,
        "--time",
        "2026-11-20T23:45:00+07:00",
    ]);
    sb.call(&[
        "snapshot",
        "--source",
        "db",
        "--stdin",
        "db.sql",
        "--time",
        "2026-11-21T01:00:00+07:00",
    ])
    .stdin(&dump)
    .ok();
    // The next day's snapshot has one more file.
    std::fs::write(web.join("added.txt"), b"new on the 21st\n").unwrap();
    set_mtime(&web.join("added.txt"), 1_700_000_000, 5);
    set_mtime(&web, 1_650_000_000, 987_654_321);
    sb.ok(&[
        "snapshot",
        "--source",
        "web",
        &webs,
        "--time",
        "2026-11-21T09:00:00+07:00",
    ]);
    let snaps = sb.snapshots();
    let mut m = Mount::start(&sb, "mnt");

    // Layout.
    assert_eq!(names(&m.dir), ["dates", "ids", "sources"]);
    assert_eq!(names(&m.path("sources")), ["db", "web"]);
    assert_eq!(
        names(&m.path("sources/web")),
        ["2026-11-20", "2026-11-20-2", "2026-11-21", "latest"]
    );
    assert_eq!(
        std::fs::read_link(m.path("sources/web/latest")).unwrap(),
        Path::new("2026-11-21")
    );
    assert_eq!(
        std::fs::read_link(m.path("sources/db/latest")).unwrap(),
        Path::new("2026-11-21")
    );
    // Dates in the offset the snapshot recorded (+07:00), not UTC.
    assert_eq!(names(&m.path("dates")), ["2026"]);
    assert_eq!(names(&m.path("dates/2026/11")), ["20", "21"]);
    assert_eq!(names(&m.path("dates/2026/11/20")), ["web", "web-2"]);
    assert_eq!(names(&m.path("dates/2026/11/21")), ["db", "web"]);
    let mut ids: Vec<String> = snaps
        .iter()
        .map(|s| text(s, "/short_id").to_string())
        .collect();
    ids.sort();
    assert_eq!(names(&m.path("ids")), ids);

    // Every file of the newest web snapshot, byte for byte and by metadata, in all three places.
    let web_id = text(&snaps[3], "/short_id");
    for snapdir in [
        m.path("sources/web/latest"),
        m.path("dates/2026/11/21/web"),
        m.path("ids").join(web_id),
    ] {
        assert_same_tree(&web, &inside(&snapdir, &web), is_root());
    }
    // The older ones lack only the added file.
    for snapdir in ["sources/web/2026-11-20", "dates/2026/11/20/web-2"] {
        let old = inside(&m.path(snapdir), &web);
        let mut want = list_tree(&web);
        want.remove(Path::new("added.txt"));
        assert_eq!(list_tree(&old), want, "{snapdir}");
        assert!(same_file_content(
            &web.join("app/big.bin"),
            &old.join("app/big.bin")
        ));
    }

    // The stream is a regular file with its recorded size.
    for p in ["sources/db/latest/db.sql", "dates/2026/11/21/db/db.sql"] {
        let md = std::fs::symlink_metadata(m.path(p)).unwrap();
        assert!(md.is_file(), "{p} is not a regular file");
        assert_eq!(md.len(), dump.len() as u64, "{p}: size");
        assert!(std::fs::read(m.path(p)).unwrap() == dump, "{p}: content");
    }

    // Reads at random offsets of a multi-chunk file.
    let original = std::fs::read(web.join("app/big.bin")).unwrap();
    let f =
        std::fs::File::open(inside(&m.path("sources/web/2026-11-20-2"), &web).join("app/big.bin"))
            .unwrap();
    let mut rng = Xorshift::new(99);
    for _ in 0..200 {
        let off = (rng.next_u64() % original.len() as u64) as usize;
        let len = ((rng.next_u64() % 300_000) as usize).min(original.len() - off);
        let mut buf = vec![0u8; len];
        f.read_exact_at(&mut buf, off as u64).unwrap();
        assert!(buf == original[off..off + len], "bytes at {off}+{len}");
    }
    let mut tail = vec![0u8; 100];
    let n = f.read_at(&mut tail, original.len() as u64 - 10).unwrap();
    assert_eq!(&tail[..n], &original[original.len() - 10..]);
    drop(f);

    // Read-only: every change fails with EROFS.
    let snap = inside(&m.path("sources/web/latest"), &web);
    let file = snap.join("app/config/config.php");
    let erofs = libc::EROFS;
    assert_eq!(
        errno_of(std::fs::write(snap.join("new.txt"), b"x"), "create"),
        erofs
    );
    assert_eq!(
        errno_of(
            std::fs::OpenOptions::new().append(true).open(&file),
            "open for writing"
        ),
        erofs
    );
    assert_eq!(
        errno_of(std::fs::create_dir(snap.join("newdir")), "mkdir"),
        erofs
    );
    assert_eq!(
        errno_of(std::fs::create_dir(m.path("sources/newdir")), "mkdir"),
        erofs
    );
    assert_eq!(
        errno_of(std::fs::rename(&file, snap.join("moved.php")), "rename"),
        erofs
    );
    assert_eq!(errno_of(std::fs::remove_file(&file), "unlink"), erofs);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        errno_of(
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o777)),
            "chmod"
        ),
        erofs
    );
    assert_eq!(
        errno_of(
            std::os::unix::fs::symlink("x", snap.join("newlink")),
            "symlink"
        ),
        erofs
    );
    assert_eq!(
        std::fs::metadata(&file).unwrap().mode() & 0o7777,
        0o640,
        "chmod changed the mode"
    );

    // A snapshot written while mounted appears without remounting.
    sb.call(&["snapshot", "--source", "later", "--stdin", "later.sql"])
        .stdin(b"written while mounted\n")
        .ok();
    let started = Instant::now();
    let new_file = m.path("sources/later/latest/later.sql");
    loop {
        let listed = names(&m.path("sources"));
        if listed.contains(&"later".to_string()) && new_file.is_file() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the new snapshot did not appear within 10 s: sources/ lists {listed:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        std::fs::read(&new_file).unwrap(),
        b"written while mounted\n"
    );

    // Held a shared lock all along; `fusermount3 -u` ends the process cleanly.
    assert_eq!(
        std::fs::read_dir(sb.repo.join("locks")).unwrap().count(),
        1,
        "the mount holds no lock"
    );
    fusermount_u(&m.dir);
    assert_clean_unmount(&sb, &mut m);
    sb.ok(&["check"]);
}

#[test]
fn sigint_and_sigterm_unmount_cleanly() {
    require_fuse!();
    let sb = Sandbox::init();
    sb.call(&["snapshot", "--source", "db", "--stdin", "db.sql"])
        .stdin(b"select 1;\n")
        .ok();
    for (i, signal) in [libc::SIGINT, libc::SIGTERM].into_iter().enumerate() {
        let mut m = Mount::start(&sb, &format!("mnt{i}"));
        assert_eq!(
            std::fs::read(m.path("sources/db/latest/db.sql")).unwrap(),
            b"select 1;\n"
        );
        send_signal(m.pid(), signal);
        assert_clean_unmount(&sb, &mut m);
    }
    // Without a mount, prune's exclusive lock is free again.
    sb.ok(&["prune", "--keep-last", "1"]);
}

#[test]
fn a_mount_blocks_prune_while_it_reads() {
    require_fuse!();
    let sb = Sandbox::init();
    sb.call(&["snapshot", "--source", "db", "--stdin", "db.sql"])
        .stdin(b"x\n")
        .ok();
    let mut m = Mount::start(&sb, "mnt");
    let out = sb.code(&["prune", "--keep-last", "1"], exit::LOCKED);
    assert!(stderr(&out).contains("mount"), "{}", stderr(&out));
    fusermount_u(&m.dir);
    assert_clean_unmount(&sb, &mut m);
}

#[test]
fn a_damaged_chunk_fails_that_read_with_eio_and_names_pack_and_file() {
    require_fuse!();
    let sb = Sandbox::init();
    let src = sb.path("src");
    std::fs::create_dir_all(&src).unwrap();
    write_random_file(&src.join("big.bin"), 5, 4 * 1024 * 1024);
    std::fs::write(src.join("small.txt"), b"still readable\n").unwrap();
    sb.ok(&["snapshot", "--source", "web", &path_str(&src)]);
    let pack = sb.data_packs(&sb.repo).into_iter().next().unwrap();
    let mut bytes = std::fs::read(&pack).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    chmod(&pack, 0o644);
    std::fs::write(&pack, &bytes).unwrap();

    let mut m = Mount::start(&sb, "mnt");
    let snap = inside(&m.path("sources/web/latest"), &src);
    // Listing and stat still work: they never read file contents.
    assert_eq!(names(&snap), ["big.bin", "small.txt"]);
    assert_eq!(
        std::fs::metadata(snap.join("big.bin")).unwrap().len(),
        4 * 1024 * 1024
    );
    let e = std::fs::read(snap.join("big.bin")).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EIO), "{e}");
    assert_ne!(e.kind(), ErrorKind::NotFound);
    assert_eq!(
        std::fs::read(snap.join("small.txt")).unwrap(),
        b"still readable\n"
    );
    fusermount_u(&m.dir);
    let (status, err) = m.wait();
    assert_eq!(status.code(), Some(0), "{err}");
    let pack_name = pack.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        err.lines()
            .any(|l| l.contains(&pack_name) && l.contains("big.bin")),
        "no log line names the pack {pack_name} and the file:\n{err}"
    );
}
