//! The harness of the end-to-end tests: a [`Sandbox`] per test and helpers to
//! build, damage and compare real directory trees.
//!
//! A sandbox is one temporary directory holding the repository, the password
//! file, the index cache, `HOME`, `TMPDIR`, source trees and restore targets.
//! Every `sopvault` process starts with a cleared environment plus exactly the
//! variables set here, so no test depends on the host or on another test.
//! Every invocation is checked for a panic, whatever its exit code.

#![allow(dead_code)]

use serde_json::Value;
use sha2::Digest;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::{CString, OsStr, OsString};
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

mod rng;
pub use rng::Xorshift;

pub const BIN: &str = env!("CARGO_BIN_EXE_sopvault");
pub const PASSWORD: &str = "correct horse battery staple";
pub const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Exit codes documented in `src/cli/mod.rs`.
pub mod exit {
    pub const OK: i32 = 0;
    pub const USAGE: i32 = 2;
    pub const INCOMPLETE: i32 = 3;
    pub const STREAM_FAILED: i32 = 4;
    pub const DAMAGED: i32 = 5;
    pub const NO_SPACE: i32 = 6;
    pub const NO_REPOSITORY: i32 = 10;
    pub const LOCKED: i32 = 11;
    pub const WRONG_PASSWORD: i32 = 12;
}

pub struct Sandbox {
    dir: tempfile::TempDir,
    /// The sandbox directory, canonical (no symlinks), so snapshot paths are predictable.
    pub root: PathBuf,
    pub repo: PathBuf,
    pub password_file: PathBuf,
    pub cache: PathBuf,
    /// Run every process as this (uid, gid) instead of the test's own user.
    run_as: Option<(u32, u32)>,
}

impl Sandbox {
    /// A sandbox without a repository.
    pub fn new() -> Sandbox {
        // SOPVAULT_KEEP_SANDBOX=1 keeps it after the test, to look at a failure.
        let dir = tempfile::Builder::new()
            .prefix("sopvault-e2e-")
            .disable_cleanup(std::env::var_os("SOPVAULT_KEEP_SANDBOX").is_some())
            .tempdir()
            .expect("create a temporary directory");
        let root = dir.path().canonicalize().expect("canonical temp dir");
        for d in ["home", "tmp", "cache"] {
            std::fs::create_dir(root.join(d)).unwrap();
        }
        let password_file = root.join("password");
        std::fs::write(&password_file, format!("{PASSWORD}\n")).unwrap();
        Sandbox {
            repo: root.join("repo"),
            cache: root.join("cache"),
            password_file,
            root,
            dir,
            run_as: None,
        }
    }

    /// A sandbox with an initialised repository.
    pub fn init() -> Sandbox {
        let sb = Sandbox::new();
        sb.ok(&["init"]);
        sb
    }

    /// Runs every later process as another user (the sandbox must be readable by it).
    pub fn run_as(&mut self, uid: u32, gid: u32) {
        self.run_as = Some((uid, gid));
    }

    /// A path inside the sandbox.
    pub fn path(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.root.join(rel)
    }

    /// A path inside the sandbox as a `&str` argument.
    pub fn arg(&self, rel: impl AsRef<Path>) -> String {
        path_str(&self.path(rel))
    }

    /// Writes a file in the sandbox (creating parent directories) and returns its path.
    pub fn write(&self, rel: impl AsRef<Path>, bytes: &[u8]) -> PathBuf {
        let p = self.path(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&p, bytes).unwrap();
        p
    }

    pub fn call(&self, args: &[&str]) -> Call<'_> {
        Call {
            sandbox: self,
            args: args.iter().map(OsString::from).collect(),
            env: Vec::new(),
            stdin: None,
            own_group: false,
            wrapper: Vec::new(),
        }
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.call(args).run()
    }

    /// Runs and asserts exit code 0.
    pub fn ok(&self, args: &[&str]) -> Output {
        self.call(args).ok()
    }

    /// Runs and asserts the given exit code.
    pub fn code(&self, args: &[&str], expected: i32) -> Output {
        self.call(args).code(expected)
    }

    /// Runs successfully and parses standard output as one JSON value.
    pub fn json(&self, args: &[&str]) -> Value {
        parse_json(&self.ok(args))
    }

    /// `snapshots --json`, oldest first.
    pub fn snapshots(&self) -> Vec<Value> {
        match self.json(&["snapshots", "--json"]) {
            Value::Array(v) => v,
            other => panic!("snapshots --json printed {other}, not an array"),
        }
    }

    /// Every regular file in the repository below `dir` (e.g. `packs`), sorted.
    pub fn repo_files(&self, dir: &str) -> Vec<PathBuf> {
        let mut out = Vec::new();
        collect_files(&self.repo.join(dir), &mut out);
        out.sort();
        out
    }

    /// Data packs (pack kind 0 in the header), largest first.
    pub fn data_packs(&self, repo: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        collect_files(&repo.join("packs"), &mut out);
        let mut data: Vec<(u64, PathBuf)> = out
            .into_iter()
            .filter(|p| {
                let b = std::fs::read(p).unwrap();
                b.len() > 16 && b[12..16] == [0, 0, 0, 0]
            })
            .map(|p| (std::fs::metadata(&p).unwrap().len(), p))
            .collect();
        data.sort_by(|a, b| b.cmp(a));
        data.into_iter().map(|(_, p)| p).collect()
    }
}

/// One invocation, with optional extra environment and standard input.
pub struct Call<'a> {
    sandbox: &'a Sandbox,
    args: Vec<OsString>,
    env: Vec<(OsString, Option<OsString>)>,
    stdin: Option<Vec<u8>>,
    own_group: bool,
    /// A program (and its arguments) that runs `sopvault`, e.g. `nsenter`.
    wrapper: Vec<OsString>,
}

impl Call<'_> {
    /// Starts the process in a new process group (whose id is its pid), as a shell job.
    pub fn own_process_group(mut self) -> Self {
        self.own_group = true;
        self
    }

    /// One more argument, which need not be UTF-8.
    pub fn arg_os(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.args.push(arg.as_ref().to_os_string());
        self
    }

    pub fn env(mut self, key: &str, value: impl AsRef<OsStr>) -> Self {
        self.env
            .push((key.into(), Some(value.as_ref().to_os_string())));
        self
    }

    pub fn env_remove(mut self, key: &str) -> Self {
        self.env.push((key.into(), None));
        self
    }

    pub fn stdin(mut self, bytes: &[u8]) -> Self {
        self.stdin = Some(bytes.to_vec());
        self
    }

    /// Runs `sopvault` through another program: `wrapper... sopvault args...`.
    pub fn wrapped(mut self, wrapper: &[OsString]) -> Self {
        self.wrapper = wrapper.to_vec();
        self
    }

    fn command(&self) -> Command {
        let sb = self.sandbox;
        let mut c = match self.wrapper.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(BIN);
                c
            }
            None => Command::new(BIN),
        };
        c.args(&self.args)
            .env_clear()
            .env("PATH", PATH)
            .env("HOME", sb.path("home"))
            .env("TMPDIR", sb.path("tmp"))
            .env("TZ", "UTC")
            .env("LC_ALL", "C")
            .env("SOPVAULT_REPO", &sb.repo)
            .env("SOPVAULT_PASSWORD_FILE", &sb.password_file)
            .env("SOPVAULT_CACHE_DIR", &sb.cache)
            .current_dir(&sb.root);
        for (k, v) in &self.env {
            match v {
                Some(v) => c.env(k, v),
                None => c.env_remove(k),
            };
        }
        if let Some((uid, gid)) = sb.run_as {
            c.uid(uid).gid(gid);
        }
        if self.own_group {
            c.process_group(0);
        }
        c
    }

    /// Starts the process in the background (standard streams discarded).
    pub fn spawn(&self) -> Child {
        self.command()
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start sopvault")
    }

    /// Starts the process in the background with standard output and error
    /// piped to the caller (standard input empty).
    pub fn spawn_piped(&self) -> Child {
        self.command()
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start sopvault")
    }

    pub fn run(self) -> Output {
        let mut c = self.command();
        c.stdin(if self.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let mut child = c.spawn().expect("start sopvault");
        let writer = self.stdin.clone().map(|bytes| {
            let mut pipe = child.stdin.take().unwrap();
            std::thread::spawn(move || {
                let _ = pipe.write_all(&bytes);
            })
        });
        let out = child.wait_with_output().expect("wait for sopvault");
        if let Some(w) = writer {
            w.join().unwrap();
        }
        assert_no_panic(&self.describe(), &out);
        out
    }

    pub fn ok(self) -> Output {
        self.code(exit::OK)
    }

    pub fn code(self, expected: i32) -> Output {
        let what = self.describe();
        let out = self.run();
        assert_eq!(
            out.status.code(),
            Some(expected),
            "`{what}` exited with {:?}, expected {expected}\n{}",
            out.status,
            show(&out)
        );
        out
    }

    fn describe(&self) -> String {
        let mut s = String::from("sopvault");
        for a in &self.args {
            s.push(' ');
            s.push_str(&a.to_string_lossy());
        }
        s
    }
}

/// Fails if a process panicked (message on stderr, exit code 101 or an abort).
pub fn assert_no_panic(what: &str, out: &Output) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !err.contains("panicked"),
        "`{what}` panicked\n{}",
        show(out)
    );
    assert_ne!(
        out.status.code(),
        Some(101),
        "`{what}` panicked\n{}",
        show(out)
    );
    assert_eq!(
        out.status.signal(),
        None,
        "`{what}` died from a signal\n{}",
        show(out)
    );
}

pub fn show(out: &Output) -> String {
    format!(
        "--- stdout ---\n{}\n--- stderr ---\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn parse_json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON: {e}\n{}", show(out)))
}

/// A `u64` field of a JSON object, addressed by a `/`-separated pointer.
pub fn num(v: &Value, pointer: &str) -> u64 {
    v.pointer(pointer)
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("{pointer} is not a number in {v:#}"))
}

pub fn text<'v>(v: &'v Value, pointer: &str) -> &'v str {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("{pointer} is not a string in {v:#}"))
}

pub fn path_str(p: &Path) -> String {
    p.to_str().expect("sandbox paths are UTF-8").to_string()
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    let d: [u8; 32] = sha2::Sha256::digest(bytes).into();
    hex::encode(d)
}

/// Whether `SOPVAULT_STRICT=1` (as `scripts/test.sh` sets it, after installing
/// what the tests need): then a test may not skip anything.
pub fn strict() -> bool {
    std::env::var_os("SOPVAULT_STRICT").is_some_and(|v| v == "1")
}

/// The one way a test skips what this machine cannot run: prints
/// `SKIP what: why` and returns, so the caller returns or carries on without
/// that part; under `SOPVAULT_STRICT=1` it fails the test instead, so a run
/// that should have everything cannot pass by skipping.
#[track_caller]
pub fn skip(what: &str, why: &str) {
    assert!(
        !strict(),
        "{what} cannot run: {why} (SOPVAULT_STRICT=1 turns this SKIP into a failure)"
    );
    eprintln!("SKIP {what}: {why}");
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// `len` deterministic, incompressible bytes from `seed`.
pub fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    Xorshift::new(seed).bytes(len)
}

/// Writes `len` pseudo-random bytes to `path` without holding them in memory.
pub fn write_random_file(path: &Path, seed: u64, len: u64) {
    let mut rng = Xorshift::new(seed);
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut buf = vec![0u8; 1 << 20];
    let mut left = len;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        rng.fill(&mut buf[..n]);
        f.write_all(&buf[..n]).unwrap();
        left -= n as u64;
    }
    f.flush().unwrap();
}

/// True when two files have the same bytes (compared in blocks).
pub fn same_file_content(a: &Path, b: &Path) -> bool {
    let (mut fa, mut fb) = (
        std::fs::File::open(a).unwrap(),
        std::fs::File::open(b).unwrap(),
    );
    if fa.metadata().unwrap().len() != fb.metadata().unwrap().len() {
        return false;
    }
    let (mut ba, mut bb) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    loop {
        let n = read_full(&mut fa, &mut ba);
        let m = read_full(&mut fb, &mut bb);
        if n != m || ba[..n] != bb[..m] {
            return false;
        }
        if n == 0 {
            return true;
        }
    }
}

fn read_full(f: &mut std::fs::File, buf: &mut [u8]) -> usize {
    let mut got = 0;
    while got < buf.len() {
        match f.read(&mut buf[got..]).unwrap() {
            0 => break,
            n => got += n,
        }
    }
    got
}

fn cpath(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).unwrap()
}

/// Sets atime and mtime of `path` without following a symlink.
pub fn set_mtime(path: &Path, sec: i64, nsec: u32) {
    let ts = libc::timespec {
        tv_sec: sec as libc::time_t,
        tv_nsec: nsec as _,
    };
    let times = [ts, ts];
    let c = cpath(path);
    // SAFETY: c is a valid NUL-terminated path and times points to two timespecs.
    let r = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            c.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    assert_eq!(
        r,
        0,
        "utimensat {}: {}",
        path.display(),
        std::io::Error::last_os_error()
    );
}

pub fn mkfifo(path: &Path, mode: u32) {
    let c = cpath(path);
    // SAFETY: c is a valid NUL-terminated path.
    let r = unsafe { libc::mkfifo(c.as_ptr(), mode as libc::mode_t) };
    assert_eq!(
        r,
        0,
        "mkfifo {}: {}",
        path.display(),
        std::io::Error::last_os_error()
    );
}

/// Sends `signal` to a process, or to a process group when `pid` is negative.
pub fn send_signal(pid: i32, signal: i32) {
    // SAFETY: kill has no memory-safety preconditions.
    let r = unsafe { libc::kill(pid, signal) };
    assert_eq!(
        r,
        0,
        "kill({pid}, {signal}): {}",
        std::io::Error::last_os_error()
    );
}

/// Waits for a child at most `limit`; kills it and fails if it is still running then.
pub fn wait_at_most(child: &mut Child, limit: std::time::Duration) -> std::process::ExitStatus {
    let start = std::time::Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the process was still running after {limit:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// Reads what a spawned child wrote to its piped stderr, and fails on a panic message.
pub fn child_stderr(child: &mut Child) -> String {
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        e.read_to_string(&mut err).unwrap();
    }
    assert!(!err.contains("panicked"), "the process panicked:\n{err}");
    err
}

pub fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn collect_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd {
        let e = e.unwrap();
        let t = e.file_type().unwrap();
        if t.is_dir() {
            collect_files(&e.path(), out);
        } else if t.is_file() {
            out.push(e.path());
        }
    }
}

/// Copies a directory tree (regular files and directories only).
pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dst = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &dst);
        } else {
            std::fs::copy(e.path(), &dst).unwrap();
        }
    }
}

/// Changes the owner of everything below and including `path` (no symlinks followed).
pub fn chown_tree(path: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid)).unwrap();
    let md = std::fs::symlink_metadata(path).unwrap();
    if md.is_dir() {
        for e in std::fs::read_dir(path).unwrap() {
            chown_tree(&e.unwrap().path(), uid, gid);
        }
    }
}

/// Where `restore` puts the snapshot path `original` below `target`.
pub fn restored_path(target: &Path, original: &Path) -> PathBuf {
    target.join(original.strip_prefix("/").expect("absolute path"))
}

/// The user xattrs of a path (not following symlinks).
pub fn user_xattrs(path: &Path) -> BTreeMap<OsString, Vec<u8>> {
    let mut out = BTreeMap::new();
    if let Ok(names) = xattr::list(path) {
        for n in names {
            if n.as_bytes().starts_with(b"user.") {
                if let Ok(Some(v)) = xattr::get(path, &n) {
                    out.insert(n, v);
                }
            }
        }
    }
    out
}

/// Relative paths of everything below `dir` (not following symlinks).
pub fn list_tree(dir: &Path) -> BTreeSet<PathBuf> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeSet<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            out.insert(p.strip_prefix(base).unwrap().to_path_buf());
            if e.file_type().unwrap().is_dir() {
                walk(base, &p, out);
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(dir, dir, &mut out);
    out
}

fn kind(md: &std::fs::Metadata) -> &'static str {
    let t = md.file_type();
    if t.is_file() {
        "file"
    } else if t.is_dir() {
        "dir"
    } else if t.is_symlink() {
        "symlink"
    } else if t.is_fifo() {
        "fifo"
    } else {
        "other"
    }
}

/// Asserts that `restored` is a faithful copy of `original`: the same entries,
/// types, bytes, modes, sizes, mtimes (with nanoseconds), symlink targets,
/// user xattrs, hard-link groups, and owners when `owners` is set.
pub fn assert_same_tree(original: &Path, restored: &Path, owners: bool) {
    let a = list_tree(original);
    let b = list_tree(restored);
    assert_eq!(
        a,
        b,
        "restored tree {} has different entries than {}",
        restored.display(),
        original.display()
    );
    let mut groups_a: HashMap<(u64, u64), BTreeSet<PathBuf>> = HashMap::new();
    let mut inode_b: HashMap<PathBuf, (u64, u64)> = HashMap::new();
    let mut compare = |rel: &Path| {
        let (pa, pb) = (original.join(rel), restored.join(rel));
        let (ma, mb) = (
            std::fs::symlink_metadata(&pa).unwrap(),
            std::fs::symlink_metadata(&pb).unwrap(),
        );
        let what = rel.display();
        assert_eq!(kind(&ma), kind(&mb), "{what}: file type");
        if !ma.file_type().is_symlink() {
            assert_eq!(
                format!("{:o}", ma.mode() & 0o7777),
                format!("{:o}", mb.mode() & 0o7777),
                "{what}: mode"
            );
        }
        assert_eq!(
            (ma.mtime(), ma.mtime_nsec()),
            (mb.mtime(), mb.mtime_nsec()),
            "{what}: mtime (seconds, nanoseconds)"
        );
        if owners {
            assert_eq!((ma.uid(), ma.gid()), (mb.uid(), mb.gid()), "{what}: owner");
        }
        assert_eq!(user_xattrs(&pa), user_xattrs(&pb), "{what}: user xattrs");
        if ma.file_type().is_file() {
            assert_eq!(ma.len(), mb.len(), "{what}: size");
            assert!(same_file_content(&pa, &pb), "{what}: content differs");
            if ma.nlink() > 1 {
                groups_a
                    .entry((ma.dev(), ma.ino()))
                    .or_default()
                    .insert(rel.to_path_buf());
            }
            inode_b.insert(rel.to_path_buf(), (mb.dev(), mb.ino()));
        }
        if ma.file_type().is_symlink() {
            assert_eq!(
                std::fs::read_link(&pa).unwrap(),
                std::fs::read_link(&pb).unwrap(),
                "{what}: symlink target"
            );
        }
    };
    compare(Path::new(""));
    for rel in &a {
        compare(rel);
    }
    // Files hard-linked together in the original share one inode after restore, and only those.
    for group in groups_a.values() {
        let inodes: BTreeSet<_> = group.iter().map(|p| inode_b[p]).collect();
        assert_eq!(
            inodes.len(),
            1,
            "hard links {group:?} were not restored as one inode"
        );
    }
    let linked: BTreeSet<&PathBuf> = groups_a.values().flatten().collect();
    let mut seen: HashMap<(u64, u64), &PathBuf> = HashMap::new();
    for (p, ino) in &inode_b {
        if linked.contains(p) {
            continue;
        }
        if let Some(other) = seen.insert(*ino, p) {
            panic!(
                "{} and {} share an inode after restore",
                p.display(),
                other.display()
            );
        }
    }
}

/// The generator's stream is pinned (the same as `src/testutil.rs` pins for
/// the unit tests' `Rng`), so test data cannot change unnoticed.
#[test]
fn the_generator_is_xorshift64_star_from_a_mixed_seed() {
    let mut r = Xorshift::new(1);
    assert_eq!(
        (r.next_u64(), r.next_u64()),
        (0x0d83_b3e2_9a21_487a, 0x54c4_4c79_f1fe_9d67)
    );
    let mut raw = Xorshift::from_state(0x9E37_79B9_7F4A_7C15 | 1);
    assert_eq!(raw.next_u64(), 0x0d83_b3e2_9a21_487a);
    assert_eq!(
        random_bytes(1, 13)[..8],
        0x0d83_b3e2_9a21_487au64.to_le_bytes()
    );
}
