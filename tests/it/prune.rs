//! End-to-end tests of `sopvault prune`: the retention policy as users see it,
//! the space it frees, and crash safety at every step of its execution.

use crate::common::{exit, *};
use serde_json::Value;
use std::collections::BTreeSet;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;

const DAY: i64 = 86_400;

/// The RFC 3339 time of day `n` (0-based) of 2025 at 02:00 in +07:00.
fn day_time(n: i64) -> String {
    let t = chrono::DateTime::parse_from_rfc3339("2025-01-01T02:00:00+07:00").unwrap()
        + chrono::Duration::seconds(n * DAY);
    t.to_rfc3339()
}

/// The local date (in +07:00) of day `n`, as in snapshot names.
fn day_date(n: i64) -> chrono::NaiveDate {
    chrono::NaiveDate::from_ymd_opt(2025, 1, 1).unwrap() + chrono::Duration::days(n)
}

fn names(sb: &Sandbox) -> BTreeSet<String> {
    sb.snapshots()
        .iter()
        .map(|s| text(s, "/name").to_string())
        .collect()
}

fn packs_bytes(repo: &Path) -> u64 {
    let mut total = 0;
    for d in std::fs::read_dir(repo.join("packs")).unwrap() {
        for f in std::fs::read_dir(d.unwrap().path()).unwrap() {
            total += f.unwrap().metadata().unwrap().len();
        }
    }
    total
}

/// One snapshot per day: a stable file plus a file whose content is unique to the day.
fn daily_snapshots(sb: &Sandbox, days: i64, unique_len: usize) {
    let src = sb.path("src");
    std::fs::create_dir_all(&src).unwrap();
    sb.write("src/stable.bin", &random_bytes(7, 64 * 1024));
    for n in 0..days {
        sb.write("src/daily.bin", &random_bytes(1000 + n as u64, unique_len));
        sb.ok(&[
            "snapshot",
            "--source",
            "db",
            "--time",
            &day_time(n),
            &path_str(&src),
        ]);
    }
}

#[test]
fn a_year_of_dailies_keeps_31_days_and_12_months() {
    let sb = Sandbox::init();
    let unique = 24 * 1024;
    daily_snapshots(&sb, 365, unique);
    assert_eq!(sb.snapshots().len(), 365);

    // The expected set, computed from the calendar and not by sopvault's policy:
    // the last 31 days, and the last day of each of the 12 months.
    let mut expected = BTreeSet::new();
    for n in 365 - 31..365 {
        expected.insert(format!("db_{}", day_date(n)));
    }
    for n in 0..365 {
        let d = day_date(n);
        if (d + chrono::Duration::days(1)).format("%m").to_string() != d.format("%m").to_string() {
            expected.insert(format!("db_{d}"));
        }
    }
    assert_eq!(expected.len(), 42);

    let plan = sb.json(&[
        "prune",
        "--keep-daily",
        "31",
        "--keep-monthly",
        "12",
        "--dry-run",
        "--json",
    ]);
    let decisions = plan["snapshots"].as_array().unwrap();
    assert_eq!(decisions.len(), 365);
    let kept: BTreeSet<String> = decisions
        .iter()
        .filter(|d| d["action"] == "keep")
        .map(|d| text(d, "/name").to_string())
        .collect();
    assert_eq!(kept, expected, "dry run keeps exactly the calendar's set");
    let last = decisions
        .iter()
        .find(|d| d["name"] == "db_2025-12-31")
        .unwrap();
    let reasons: Vec<&str> = last["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    assert!(
        reasons.contains(&"daily #1") && reasons.contains(&"monthly #1"),
        "{reasons:?}"
    );
    assert_eq!(names(&sb).len(), 365, "a dry run changes nothing");

    let before = packs_bytes(&sb.repo);
    sb.ok(&["prune", "--keep-daily", "31", "--keep-monthly", "12"]);
    assert_eq!(names(&sb), expected);
    let after = packs_bytes(&sb.repo);
    let only_removed = (365 - 42) as u64 * unique as u64;
    assert!(
        before - after >= only_removed,
        "freed {} bytes, but the removed snapshots alone referenced {only_removed}",
        before - after
    );
    sb.ok(&["check", "--read-data"]);
    // Every kept snapshot restores byte for byte.
    for s in sb.snapshots() {
        let name = text(&s, "/name");
        let date = chrono::NaiveDate::parse_from_str(&name["db_".len()..], "%Y-%m-%d").unwrap();
        let n = (date - day_date(0)).num_days();
        let out = sb.ok(&[
            "cat",
            name,
            &format!("{}/daily.bin", path_str(&sb.path("src"))),
        ]);
        assert!(
            out.stdout == random_bytes(1000 + n as u64, unique),
            "{name} restores wrong data"
        );
    }
    // A second run finds nothing more to do.
    let again = sb.json(&[
        "prune",
        "--keep-daily",
        "31",
        "--keep-monthly",
        "12",
        "--json",
    ]);
    assert_eq!(again["forgotten"], 0);
    assert_eq!(names(&sb), expected);
}

/// A repository where prune has snapshots to forget, packs to delete and a pack to repack.
fn build_crash_fixture(sb: &Sandbox) {
    let src = sb.path("src");
    std::fs::create_dir_all(&src).unwrap();
    // Day 0: ten files in one pack. Later days keep only half of them, so
    // forgetting day 0 leaves that pack half unused: a repack candidate.
    for i in 0..10 {
        sb.write(format!("src/f{i}.bin"), &random_bytes(50 + i, 100 * 1024));
    }
    sb.ok(&[
        "snapshot",
        "--source",
        "db",
        "--time",
        &day_time(0),
        &path_str(&src),
    ]);
    for i in 5..10 {
        std::fs::remove_file(src.join(format!("f{i}.bin"))).unwrap();
    }
    for n in 1..12 {
        sb.write("src/daily.bin", &random_bytes(2000 + n as u64, 30 * 1024));
        sb.ok(&[
            "snapshot",
            "--source",
            "db",
            "--time",
            &day_time(n),
            &path_str(&src),
        ]);
    }
}

const POLICY: [&str; 5] = ["prune", "--keep-last", "4", "--max-unused", "0%"];

#[test]
fn prune_repacks_partly_used_packs() {
    let sb = Sandbox::init();
    build_crash_fixture(&sb);
    let plan = sb.json(&[POLICY.as_slice(), &["--dry-run", "--json"]].concat());
    assert!(num(&plan, "/packs/repack") >= 1, "{plan}");
    assert!(num(&plan, "/packs/delete") >= 1, "{plan}");
    sb.ok(&POLICY);
    assert_eq!(sb.snapshots().len(), 4);
    sb.ok(&["check", "--read-data"]);
    let target = sb.path("restore");
    sb.ok(&["restore", "latest", "--target", &path_str(&target)]);
    for i in 0..5 {
        let f = restored_path(&target, &sb.path(format!("src/f{i}.bin")));
        assert_eq!(std::fs::read(f).unwrap(), random_bytes(50 + i, 100 * 1024));
    }
    // Mirrors learn deletions from the prune record.
    assert_eq!(sb.repo_files("prune").len(), 1);
}

#[test]
fn a_prune_killed_at_any_step_leaves_a_valid_repository_and_a_rerun_finishes() {
    let base = Sandbox::init();
    build_crash_fixture(&base);
    let expected: BTreeSet<String> = names(&base).into_iter().rev().take(4).collect();
    let points = [
        "prune:after-record",
        "remove:snapshots",
        "prune:after-forget",
        "prune:during-repack",
        "prune:after-index",
        "remove:index",
        "prune:after-delete-index",
        "remove:packs",
    ];
    for point in points {
        let sb = Sandbox::new();
        copy_tree(&base.repo, &sb.repo);
        let mut child = sb.call(&POLICY).env("SOPVAULT_CRASH_AT", point).spawn();
        let status = wait_at_most(&mut child, std::time::Duration::from_secs(60));
        assert_eq!(
            status.signal(),
            Some(libc::SIGKILL),
            "{point}: prune was not killed there ({status})"
        );
        // The dead process's lock is stale; unlock removes it.
        sb.ok(&["unlock"]);
        sb.ok(&["check"]);
        let left = names(&sb);
        assert!(
            left.is_superset(&expected),
            "{point}: a snapshot to keep is gone: {left:?}"
        );
        sb.ok(&POLICY);
        assert_eq!(
            names(&sb),
            expected,
            "{point}: the rerun did not finish the job"
        );
        sb.ok(&["check", "--read-data"]);
        let out = sb.ok(&[
            "cat",
            "latest",
            &format!("{}/f0.bin", path_str(&base.path("src"))),
        ]);
        assert!(
            out.stdout == random_bytes(50, 100 * 1024),
            "{point}: wrong data after the rerun"
        );
    }
}

#[test]
fn prune_refuses_to_remove_a_whole_group_or_to_run_under_a_lock() {
    let sb = Sandbox::init();
    daily_snapshots(&sb, 3, 1024);
    let out = sb.code(&["prune", "--keep-tag", "nonexistent"], exit::USAGE);
    assert!(
        stderr(&out).contains("--allow-remove-all"),
        "{}",
        show(&out)
    );
    sb.code(&["prune"], exit::USAGE);
    assert_eq!(sb.snapshots().len(), 3);
    // A snapshot in progress elsewhere holds a shared lock: prune waits for nobody.
    std::fs::write(
        sb.repo.join("locks/other.lock"),
        br#"{"exclusive":false,"host":"otherhost","pid":1,"user":"u","time":"t","command":"snapshot"}"#,
    )
    .unwrap();
    let out = sb.code(&["prune", "--keep-last", "1"], exit::LOCKED);
    assert_eq!(stderr(&out).lines().count(), 1, "{}", show(&out));
    assert_eq!(sb.snapshots().len(), 3);
    std::fs::remove_file(sb.repo.join("locks/other.lock")).unwrap();
    let v: Value = sb.json(&["prune", "--keep-last", "1", "--allow-remove-all", "--json"]);
    assert_eq!(v["forgotten"], 2);
    sb.ok(&["check"]);
}

#[test]
fn issue20_12_stale_lock_of_dead_process_is_removed() {
    let sb = Sandbox::init();
    daily_snapshots(&sb, 3, 1024);
    let mut child = sb
        .call(&["prune", "--keep-last", "1"])
        .env("SOPVAULT_CRASH_AT", "prune:after-record")
        .spawn();
    let status = wait_at_most(&mut child, std::time::Duration::from_secs(60));
    assert_eq!(status.signal(), Some(libc::SIGKILL), "prune was not killed");
    let left = sb.repo_files("locks");
    assert_eq!(left.len(), 1, "the killed prune left no lock");
    let lock_name = left[0].file_name().unwrap().to_str().unwrap().to_string();

    // Its process is gone, in this boot and pid namespace: the lock goes, with a warning.
    let target = sb.path("target");
    let out = sb.ok(&["restore", "latest", "--target", &path_str(&target)]);
    let err = stderr(&out);
    assert!(
        err.contains("warning")
            && err.contains(&format!("locks/{lock_name}"))
            && err.contains("prune"),
        "{}",
        show(&out)
    );
    let restored = restored_path(&target, &sb.path("src/stable.bin"));
    assert_eq!(std::fs::read(restored).unwrap(), random_bytes(7, 64 * 1024));
    assert!(sb.repo_files("locks").is_empty());
    sb.ok(&["check"]);

    // A lock of a gone pid from another boot may not be ours to judge: it
    // still blocks, and the message points to `unlock`.
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let info = serde_json::json!({
        "exclusive": true, "host": host.trim(), "pid": dead_pid(), "user": "u",
        "time": "t", "command": "prune", "boot_id": "another boot",
        "pid_namespace": std::fs::read_link("/proc/self/ns/pid").unwrap(),
    });
    let lock = sb.repo.join("locks/0123456789abcdef.lock");
    std::fs::write(&lock, info.to_string()).unwrap();
    let out = sb.code(&["ls", "latest"], exit::LOCKED);
    assert!(stderr(&out).contains("stale"), "{}", show(&out));
    sb.ok(&["unlock"]);
    assert!(!lock.exists());
    sb.ok(&["ls", "latest"]);
}

/// A pid that no process has: one of a child that has been reaped.
fn dead_pid() -> u32 {
    let mut c = std::process::Command::new("true").spawn().unwrap();
    let pid = c.id();
    c.wait().unwrap();
    pid
}

/// Every file and directory in the repository, with sizes and content hashes.
fn repo_state(sb: &Sandbox) -> Vec<(std::path::PathBuf, String)> {
    list_tree(&sb.repo)
        .into_iter()
        .map(|rel| {
            let p = sb.repo.join(&rel);
            let h = if p.is_file() {
                sha256_hex(&std::fs::read(&p).unwrap())
            } else {
                String::new()
            };
            (rel, h)
        })
        .collect()
}

#[test]
fn issue20_2_prune_refuses_a_damaged_index_until_repair_index() {
    let sb = Sandbox::init();
    daily_snapshots(&sb, 4, 32 * 1024);
    let index_files = sb.repo_files("index");
    assert!(index_files.len() >= 4);
    let victim = &index_files[1];
    let mut bytes = std::fs::read(victim).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    chmod(victim, 0o600);
    std::fs::write(victim, &bytes).unwrap();
    sb.code(&["check"], exit::DAMAGED);

    let before = repo_state(&sb);
    for args in [
        &["prune", "--keep-last", "2", "--dry-run"][..],
        &["prune", "--keep-last", "2", "--dry-run"],
        &["prune", "--keep-last", "2"],
        &["prune", "--keep-last", "2"],
    ] {
        let out = sb.code(args, exit::DAMAGED);
        assert!(
            stderr(&out).contains("repair index"),
            "{args:?}: {}",
            show(&out)
        );
        assert_eq!(repo_state(&sb), before, "{args:?} changed the repository");
    }
    sb.code(&["check"], exit::DAMAGED);

    let out = sb.ok(&["repair", "index", "--dry-run"]);
    assert!(stdout(&out).contains("dry run"), "{}", show(&out));
    assert_eq!(
        repo_state(&sb),
        before,
        "repair index --dry-run changed the repository"
    );
    let out = sb.ok(&["repair", "index"]);
    assert!(stdout(&out).contains("1 damaged"), "{}", show(&out));
    assert!(!victim.exists(), "the damaged index file is still there");
    sb.ok(&["check", "--read-data"]);
    sb.ok(&["prune", "--keep-last", "2"]);
    assert_eq!(sb.snapshots().len(), 2);
    sb.ok(&["check", "--read-data"]);
    let target = sb.path("target");
    sb.ok(&["restore", "latest", "--target", &path_str(&target)]);
    let file =
        |name: &str| std::fs::read(restored_path(&target, &sb.path("src").join(name))).unwrap();
    assert_eq!(file("stable.bin"), random_bytes(7, 64 * 1024));
    assert_eq!(file("daily.bin"), random_bytes(1003, 32 * 1024));
}

#[test]
fn issue20_2_repair_index_keeps_the_entries_of_a_pack_whose_footer_is_damaged() {
    let sb = Sandbox::init();
    daily_snapshots(&sb, 2, 32 * 1024);
    let pack = sb.data_packs(&sb.repo).remove(0);
    let mut b = std::fs::read(&pack).unwrap();
    let len = b.len();
    // The footer's last sealed byte (its tag), just before the trailer.
    b[len - 17] ^= 0x01;
    chmod(&pack, 0o600);
    std::fs::write(&pack, b).unwrap();

    let out = sb.ok(&["repair", "index"]);
    let name = pack.file_name().unwrap().to_str().unwrap();
    assert!(
        stderr(&out).contains(name) && stderr(&out).contains("undamaged index file"),
        "{}",
        show(&out)
    );
    // The blobs are still indexed and read: the footer is the only damage.
    let target = sb.path("target");
    sb.ok(&["restore", "latest", "--target", &path_str(&target)]);
    let file = |n: &str| std::fs::read(restored_path(&target, &sb.path("src").join(n))).unwrap();
    assert_eq!(file("stable.bin"), random_bytes(7, 64 * 1024));
    assert_eq!(file("daily.bin"), random_bytes(1001, 32 * 1024));
}
