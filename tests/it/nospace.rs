//! A full disk, for real: the repository, a restore target, the index cache
//! and a mirror each on a small tmpfs that fills up.
//!
//! Each disk is a tmpfs mounted in a private mount namespace (`unshare
//! --user --map-root-user --mount`, so no root is needed), held open by a
//! `sleep`; `sopvault` runs inside it through `nsenter`, and the test reads
//! the disk through `/proc/PID/root`. Where user namespaces are not allowed,
//! the tests print a SKIP line and pass, as the FUSE tests do without FUSE
//! (and fail under `SOPVAULT_STRICT=1`, as `scripts/test.sh` runs them).

use crate::common::{exit, *};
use std::ffi::OsString;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// A tmpfs of a fixed size, visible only inside its own mount namespace.
struct Disk {
    holder: Child,
    /// The mount point, as `sopvault` inside the namespace sees it.
    dir: PathBuf,
}

impl Disk {
    /// Mounts a tmpfs of `kib` KiB on a new directory `name` in the sandbox.
    fn mount(sb: &Sandbox, name: &str, kib: u64) -> Result<Disk, String> {
        let dir = sb.path(name);
        std::fs::create_dir_all(&dir).unwrap();
        let script = format!(
            "mount -t tmpfs -o size={kib}k,mode=0755 tmpfs \"$0\" && echo ready && exec sleep 600"
        );
        let mut holder = Command::new("unshare")
            .args(["--user", "--map-root-user", "--mount", "sh", "-c", &script])
            .arg(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run unshare: {e}"))?;
        let mut line = String::new();
        let _ = std::io::BufReader::new(holder.stdout.take().unwrap()).read_line(&mut line);
        if line.trim() != "ready" {
            let _ = holder.kill();
            let out = holder.wait_with_output().unwrap();
            return Err(format!(
                "cannot mount a tmpfs in a user namespace: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(Disk { holder, dir })
    }

    /// `nsenter` into the disk's namespaces: prefix for a command.
    fn enter(&self) -> Vec<OsString> {
        [
            "nsenter",
            "--target",
            &self.holder.id().to_string(),
            "--user",
            "--mount",
            "--preserve-credentials",
            "--",
        ]
        .iter()
        .map(OsString::from)
        .collect()
    }

    /// A path on the disk, as this test process reaches it.
    fn outside(&self, inside: &Path) -> PathBuf {
        let rel = inside.strip_prefix("/").unwrap();
        PathBuf::from(format!("/proc/{}/root", self.holder.id())).join(rel)
    }

    /// Runs a shell command inside the namespace; returns whether it succeeded.
    fn sh(&self, script: &str) -> bool {
        let enter = self.enter();
        Command::new(&enter[0])
            .args(&enter[1..])
            .args(["sh", "-c", script])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap()
            .success()
    }

    /// Writes zeros into `fill` until the disk is full.
    fn fill(&self) {
        let fill = self.dir.join("fill");
        self.sh(&format!(
            "head -c 1000000000 /dev/zero > '{}'",
            fill.display()
        ));
        assert!(
            !self.sh(&format!("echo x >> '{}'", fill.display())),
            "the disk should be full"
        );
    }

    fn unfill(&self) {
        assert!(self.sh(&format!("rm -f '{}'", self.dir.join("fill").display())));
    }
}

impl Drop for Disk {
    fn drop(&mut self) {
        // The namespace, and the tmpfs with it, goes with its last process.
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

macro_rules! mount_or_skip {
    ($sb:expr, $name:expr, $kib:expr) => {
        match Disk::mount(&$sb, $name, $kib) {
            Ok(d) => d,
            Err(why) => {
                skip("the full-disk tests", &why);
                return;
            }
        }
    };
}

/// Asserts the one-line "no space" error that names a path below `dir`.
fn assert_no_space(out: &std::process::Output, dir: &Path) {
    let err = stderr(out);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "expected one line on stderr:\n{}",
        show(out)
    );
    let prefix = format!(
        "sopvault: error: no space left on device while writing {}/",
        dir.display()
    );
    assert!(
        lines[0].starts_with(&prefix),
        "expected {prefix:?}...:\n{}",
        show(out)
    );
}

/// A file of random bytes in the sandbox, with its parent directories.
fn random_file(sb: &Sandbox, rel: &str, seed: u64, len: u64) {
    let p = sb.path(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    write_random_file(&p, seed, len);
}

fn files_below(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    out.sort();
    out
}

#[test]
fn a_full_repository_disk_fails_writers_with_exit_6_and_still_serves_readers_and_prune() {
    let mut sb = Sandbox::new();
    let disk = mount_or_skip!(sb, "disk", 24 * 1024);
    sb.repo = disk.dir.join("repo");
    let enter = disk.enter();
    let run = |args: &[&str]| sb.call(args).wrapped(&enter);
    let count = |out: std::process::Output| parse_json(&out).as_array().unwrap().len();
    let site = sb.arg("site");
    let big = sb.arg("big");
    run(&["init"]).ok();
    let reserve = disk.outside(&sb.repo.join("reserve"));
    assert!(std::fs::metadata(&reserve).unwrap().len() >= 4 << 20);

    // Two days of a small site; the first will be pruned.
    for (day, file) in [(1, "a.bin"), (2, "b.bin")] {
        let _ = std::fs::remove_dir_all(sb.path("site"));
        random_file(&sb, &format!("site/{file}"), day, 1 << 20);
        let time = format!("2026-11-0{day}T02:00:00Z");
        run(&["snapshot", "-q", "--source", "site", "--time", &time, &site]).ok();
    }

    // Writers that do not fit fail cleanly: a tree, standard input, a command.
    random_file(&sb, "big/big.bin", 3, 40 << 20);
    let out = run(&["snapshot", "--source", "big", &big]).code(exit::NO_SPACE);
    assert_no_space(&out, &sb.repo);
    let dump = random_bytes(4, 40 << 20);
    let out = run(&["snapshot", "--source", "db", "--stdin", "db.sql"])
        .stdin(&dump)
        .code(exit::NO_SPACE);
    assert_no_space(&out, &sb.repo);
    let out = run(&[
        "snapshot",
        "--source",
        "db",
        "--stream",
        "db.sql=head -c 40000000 /dev/urandom",
    ])
    .code(exit::NO_SPACE);
    assert_no_space(&out, &sb.repo);
    for dir in ["tmp", "locks"] {
        let left = files_below(&disk.outside(&sb.repo.join(dir)));
        assert!(left.is_empty(), "{dir}/ holds {left:?} after the failures");
    }
    assert!(
        std::fs::metadata(&reserve).unwrap().len() >= 4 << 20,
        "a snapshot never uses the reserve"
    );
    run(&["check", "--read-data"]).ok();
    assert_eq!(count(run(&["snapshots", "--json"]).ok()), 2);

    // Now the disk is full to the last byte: nothing can be written. A
    // prune's lock, taken before, still keeps the lockless readers out.
    let foreign = disk.outside(&sb.repo.join("locks/x.lock"));
    std::fs::write(
        &foreign,
        br#"{"exclusive":true,"host":"otherhost","pid":1,"user":"u","time":"t","command":"prune"}"#,
    )
    .unwrap();
    disk.fill();
    let out = run(&["snapshots"]).code(exit::LOCKED);
    assert!(stderr(&out).contains("otherhost"), "{}", show(&out));
    std::fs::remove_file(&foreign).unwrap();
    disk.fill(); // the lock's page was freed
    let out = run(&["snapshot", "--source", "site", &site]).code(exit::NO_SPACE);
    assert_no_space(&out, &sb.repo);
    // Readers go on without a lock, and say so.
    let out = run(&["snapshots"]).ok();
    assert!(
        stderr(&out).contains("reading without a lock"),
        "{}",
        show(&out)
    );
    run(&["check"]).ok();
    run(&["restore", "site:latest", "--target", &sb.arg("restored")]).ok();
    assert_same_tree(
        &sb.path("site"),
        &restored_path(&sb.path("restored"), &sb.path("site")),
        false,
    );
    let left = files_below(&disk.outside(&sb.repo.join("tmp")));
    assert!(left.is_empty(), "the readers left {left:?} in tmp/");
    // A dry run changes nothing, so it does not touch the reserve either.
    let out = run(&["prune", "--keep-last", "1", "--dry-run"]).code(exit::NO_SPACE);
    assert_no_space(&out, &sb.repo);
    assert!(std::fs::metadata(&reserve).unwrap().len() >= 4 << 20);
    // Prune frees space: the reserve makes room for its lock and record.
    let out = run(&["prune", "--keep-last", "1"]).ok();
    let err = stderr(&out);
    assert!(err.contains("space reserve was deleted"), "{}", show(&out));
    assert!(err.contains("does not repack"), "{}", show(&out));
    // Day 1's pack goes, and so do the full packs the failed snapshots
    // committed before the disk filled (orphans, adopted as unused).
    assert!(
        stdout(&out).contains("removed 1 snapshot(s)"),
        "{}",
        show(&out)
    );
    assert_eq!(count(run(&["snapshots", "--json"]).ok()), 1);
    run(&["check", "--read-data"]).ok();

    // With room again, snapshots work and the reserve is back.
    disk.unfill();
    run(&["snapshot", "-q", "--source", "site", &site]).ok();
    assert!(std::fs::metadata(&reserve).unwrap().len() >= 4 << 20);
    run(&["check", "--read-data"]).ok();
}

#[test]
fn a_full_restore_target_fails_with_exit_6_naming_the_file_being_written() {
    let sb = Sandbox::init();
    let disk = mount_or_skip!(sb, "target", 4 * 1024);
    random_file(&sb, "src/a-small.bin", 5, 100_000);
    random_file(&sb, "src/big.bin", 6, 12 << 20);
    sb.ok(&["snapshot", "-q", "--source", "src", &sb.arg("src")]);
    let out = sb
        .call(&["restore", "src:latest", "--target", &path_str(&disk.dir)])
        .wrapped(&disk.enter())
        .code(exit::NO_SPACE);
    let big = restored_path(&disk.dir, &sb.path("src/big.bin"));
    let err = stderr(&out);
    assert_eq!(
        err.trim_end(),
        format!(
            "sopvault: error: no space left on device while writing {}",
            big.display()
        ),
        "{}",
        show(&out)
    );
    assert!(
        !disk.outside(&big).exists(),
        "the partly written file is removed"
    );
    let small = restored_path(&disk.dir, &sb.path("src/a-small.bin"));
    assert!(same_file_content(
        &sb.path("src/a-small.bin"),
        &disk.outside(&small)
    ));
}

#[test]
fn a_full_cache_disk_does_not_stop_a_snapshot() {
    let sb = Sandbox::init();
    let disk = mount_or_skip!(sb, "cachedisk", 1024);
    disk.fill();
    random_file(&sb, "src/f.bin", 7, 3 << 20);
    let out = sb
        .call(&["snapshot", "-q", "--source", "src", &sb.arg("src")])
        .env("SOPVAULT_CACHE_DIR", disk.dir.join("cache"))
        .wrapped(&disk.enter())
        .ok();
    assert!(
        stderr(&out).contains("the index cache is not usable"),
        "{}",
        show(&out)
    );
    sb.ok(&["restore", "src:latest", "--target", &sb.arg("restored")]);
    assert_same_tree(
        &sb.path("src"),
        &restored_path(&sb.path("restored"), &sb.path("src")),
        false,
    );
}

#[test]
fn a_mirror_that_fills_its_disk_fails_with_exit_6_and_finishes_once_there_is_room() {
    let sb = Sandbox::init();
    let disk = mount_or_skip!(sb, "usb", 8 * 1024);
    random_file(&sb, "src/big.bin", 8, 20 << 20);
    sb.ok(&["snapshot", "-q", "--source", "src", &sb.arg("src")]);
    let mirror = disk.dir.join("vault");
    let m = path_str(&mirror);
    let out = sb
        .call(&["mirror", "--init", &m])
        .wrapped(&disk.enter())
        .code(exit::NO_SPACE);
    assert!(
        stderr(&out).contains(&format!(
            "sopvault: error: no space left on device while writing {m}/"
        )),
        "{}",
        show(&out)
    );
    // What was copied is intact; the rest is missing (exit 3), nothing is damaged.
    let out = sb
        .call(&["mirror", "--verify", &m])
        .wrapped(&disk.enter())
        .code(exit::INCOMPLETE);
    assert!(stdout(&out).contains(" 0 damaged"), "{}", show(&out));
    // A bigger disk (here: the same one, grown) takes the rest.
    assert!(disk.sh(&format!(
        "mount -o remount,size=64m '{}'",
        disk.dir.display()
    )));
    sb.call(&["mirror", &m]).wrapped(&disk.enter()).ok();
    let out = sb
        .call(&["mirror", "--verify", &m])
        .wrapped(&disk.enter())
        .ok();
    assert!(
        stdout(&out).contains("0 missing, 0 extra, 0 damaged"),
        "{}",
        show(&out)
    );
    sb.call(&[
        "--repo",
        &m,
        "restore",
        "src:latest",
        "--target",
        &sb.arg("restored"),
    ])
    .wrapped(&disk.enter())
    .ok();
    assert_same_tree(
        &sb.path("src"),
        &restored_path(&sb.path("restored"), &sb.path("src")),
        false,
    );
}

#[test]
fn issue20_7_a_prune_usage_error_on_a_full_disk_keeps_the_reserve() {
    let mut sb = Sandbox::new();
    let disk = mount_or_skip!(sb, "disk", 16 * 1024);
    sb.repo = disk.dir.join("repo");
    let enter = disk.enter();
    let run = |args: &[&str]| sb.call(args).wrapped(&enter);
    run(&["init"]).ok();
    let reserve = disk.outside(&sb.repo.join("reserve"));
    let site = sb.arg("site");
    for (day, file) in [(1, "a.bin"), (2, "b.bin")] {
        let _ = std::fs::remove_dir_all(sb.path("site"));
        random_file(&sb, &format!("site/{file}"), day, 1 << 20);
        let time = format!("2026-11-0{day}T02:00:00Z");
        run(&["snapshot", "-q", "--source", "site", "--time", &time, &site]).ok();
    }
    disk.fill();
    // No keep rule; a policy that empties a group: both refused, reserve kept.
    for args in [
        &["prune"][..],
        &["prune", "--keep-tag", "nonexistent"],
        &["prune", "--keep-last", "1", "--group-by", "colour"],
    ] {
        let out = run(args).code(exit::USAGE);
        assert!(
            std::fs::metadata(&reserve).is_ok_and(|m| m.len() >= 4 << 20),
            "{args:?} deleted the reserve\n{}",
            show(&out)
        );
        assert!(!stderr(&out).contains("reserve"), "{}", show(&out));
        let left = files_below(&disk.outside(&sb.repo.join("locks")));
        assert!(left.is_empty(), "{args:?} left {left:?} in locks/");
    }
    // A valid prune then runs, using the reserve.
    let out = run(&["prune", "--keep-last", "1"]).ok();
    assert!(
        stderr(&out).contains("space reserve was deleted"),
        "{}",
        show(&out)
    );
    assert!(
        stdout(&out).contains("removed 1 snapshot(s)"),
        "{}",
        show(&out)
    );
    run(&["check", "--read-data"]).ok();
}
