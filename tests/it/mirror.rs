//! End-to-end tests of `sopvault mirror` to a local directory: byte-for-byte
//! copies, reruns, interrupted runs, deletions by prune records after the
//! grace period, verification without the key, refusals, and `--status`.

use crate::common::{exit, *};
use std::collections::BTreeSet;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Command;

/// `diff -r`: the mirror must equal the source byte for byte, except the
/// source's space `reserve`, which belongs to its disk and is not mirrored.
fn assert_diff_equal(a: &Path, b: &Path) {
    assert!(
        !b.join("reserve").exists(),
        "{}: a mirror gets no copy of the reserve",
        b.display()
    );
    let out = Command::new("diff")
        .args(["-r", "-x", "reserve"])
        .arg(a)
        .arg(b)
        .output()
        .expect("run diff");
    assert!(
        out.status.success(),
        "diff -r {} {} found differences:\n{}",
        a.display(),
        b.display(),
        String::from_utf8_lossy(&out.stdout)
    );
}

/// Every file below `dir`, relative to it.
fn files(dir: &Path) -> BTreeSet<String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeSet<String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                walk(root, &e.path(), out);
            } else {
                out.insert(
                    e.path()
                        .strip_prefix(root)
                        .unwrap()
                        .to_string_lossy()
                        .into_owned(),
                );
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(dir, dir, &mut out);
    out
}

/// Snapshots of a tree whose `daily.bin` changes every time (seeded by `n`).
fn snapshots(sb: &Sandbox, range: std::ops::Range<u64>) {
    let src = sb.path("src");
    std::fs::create_dir_all(&src).unwrap();
    sb.write("src/stable.bin", &random_bytes(7, 300 * 1024));
    for n in range {
        sb.write("src/daily.bin", &random_bytes(1000 + n, 200 * 1024));
        sb.ok(&["snapshot", "--source", "db", &path_str(&src)]);
    }
}

fn restore_daily(sb: &Sandbox, repo: &Path, snapshot: &str, target: &str) -> Vec<u8> {
    let t = sb.path(target);
    sb.call(&["restore", snapshot, "--target", &path_str(&t)])
        .env("SOPVAULT_REPO", repo)
        .ok();
    std::fs::read(restored_path(&t, &sb.path("src/daily.bin"))).unwrap()
}

#[test]
fn a_mirror_is_a_byte_for_byte_copy_and_a_second_run_copies_nothing() {
    let sb = Sandbox::init();
    snapshots(&sb, 0..3);
    let mirror = sb.path("mirror");
    let out = sb.ok(&["mirror", "--init", &path_str(&mirror)]);
    // A temporary directory is never the root of a mounted file system.
    assert!(
        stderr(&out).contains("is not the root of a mounted file system"),
        "{}",
        show(&out)
    );
    assert_diff_equal(&sb.repo, &mirror);

    let out = sb.ok(&["mirror", &path_str(&mirror)]);
    assert!(stdout(&out).contains("nothing copied"), "{}", show(&out));
    let v = sb.json(&["mirror", "--json", &path_str(&mirror)]);
    assert_eq!(num(&v, "/copied_files"), 0);
    assert_eq!(num(&v, "/deleted_files"), 0);

    // A mirror is a repository: check and restore work on it with the key.
    sb.call(&["check", "--read-data"])
        .env("SOPVAULT_REPO", &mirror)
        .ok();
    let got = restore_daily(&sb, &mirror, "latest", "restored");
    assert_eq!(got, random_bytes(1002, 200 * 1024));

    // New snapshots: only the new files are copied.
    snapshots(&sb, 3..4);
    let v = sb.json(&["mirror", "--json", &path_str(&mirror)]);
    assert!(num(&v, "/copied_files") >= 3, "{v}");
    assert_diff_equal(&sb.repo, &mirror);
}

#[test]
fn mirror_refuses_an_empty_destination_without_init_and_another_repository() {
    let sb = Sandbox::init();
    snapshots(&sb, 0..1);
    // The empty mount point of a disk that is not plugged in.
    let empty = sb.path("media/hdd");
    std::fs::create_dir_all(&empty).unwrap();
    let out = sb.code(&["mirror", &path_str(&empty)], exit::NO_REPOSITORY);
    assert!(stderr(&out).contains("--init"), "{}", show(&out));
    assert_eq!(std::fs::read_dir(&empty).unwrap().count(), 0);

    // A directory holding other things.
    sb.write("media/other/notes.txt", b"hello");
    let out = sb.code(
        &["mirror", "--init", &sb.arg("media/other")],
        exit::NO_REPOSITORY,
    );
    assert!(stderr(&out).contains("not empty"), "{}", show(&out));

    // Another repository.
    let other = sb.path("other-repo");
    sb.call(&["init"]).env("SOPVAULT_REPO", &other).ok();
    let before = files(&other);
    let out = sb.code(
        &["mirror", "--init", &path_str(&other)],
        exit::NO_REPOSITORY,
    );
    assert!(
        stderr(&out).contains("another repository"),
        "{}",
        show(&out)
    );
    assert_eq!(files(&other), before);

    // The repository itself.
    sb.code(&["mirror", &path_str(&sb.repo)], exit::USAGE);

    // --dry-run prints the plan and writes nothing.
    let out = sb.ok(&["mirror", "--init", "--dry-run", &path_str(&empty)]);
    assert!(stdout(&out).contains("would copy"), "{}", show(&out));
    assert_eq!(std::fs::read_dir(&empty).unwrap().count(), 0);
}

#[test]
fn a_mirror_killed_half_way_is_incomplete_not_corrupt_and_a_rerun_finishes_it() {
    let sb = Sandbox::init();
    snapshots(&sb, 0..4);
    let mirror = sb.path("mirror");
    for point in ["mirror:copied-3", "mirror:after-packs"] {
        let _ = std::fs::remove_dir_all(&mirror);
        let mut child = sb
            .call(&["mirror", "--init", &path_str(&mirror)])
            .env("SOPVAULT_CRASH_AT", point)
            .spawn();
        let status = wait_at_most(&mut child, std::time::Duration::from_secs(60));
        assert_eq!(
            status.signal(),
            Some(9),
            "{point}: mirror was not killed there"
        );
        // What is there is whole: --verify (no key) finds nothing damaged.
        let out = sb
            .call(&["mirror", "--verify", &path_str(&mirror)])
            .env_remove("SOPVAULT_PASSWORD_FILE")
            .code(exit::INCOMPLETE);
        assert!(stdout(&out).contains("missing:"), "{point}: {}", show(&out));
        // Packs first: no index file or snapshot refers to a pack not yet there.
        assert!(
            files(&mirror.join("snapshots")).is_empty(),
            "{point}: a snapshot was copied before its data"
        );
        // A rerun (the killed run's lock is stale and its own) finishes the job.
        sb.ok(&["mirror", &path_str(&mirror)]);
        sb.ok(&["unlock"]);
        assert_diff_equal(&sb.repo, &mirror);
        assert!(files(&mirror.join("tmp")).is_empty());
    }
    sb.call(&["check", "--read-data"])
        .env("SOPVAULT_REPO", &mirror)
        .ok();
}

#[test]
fn prune_reaches_a_mirror_only_after_the_grace_period_and_only_through_prune_records() {
    let sb = Sandbox::init();
    snapshots(&sb, 0..5);
    let mirror = sb.path("mirror");
    sb.ok(&["mirror", "--init", &path_str(&mirror)]);
    let before = files(&sb.repo);
    sb.ok(&["prune", "--keep-last", "2", "--max-unused", "0%"]);
    let after = files(&sb.repo);
    let condemned: BTreeSet<String> = before.difference(&after).cloned().collect();
    assert!(
        condemned.iter().any(|f| f.starts_with("packs/"))
            && condemned.iter().any(|f| f.starts_with("snapshots/"))
            && condemned.iter().any(|f| f.starts_with("index/")),
        "{condemned:?}"
    );

    // A snapshot taken after the prune reaches the mirror at once.
    snapshots(&sb, 5..6);
    let after = files(&sb.repo);

    // Default grace period (30 days): nothing is deleted, and what the prune
    // wrote (compacted index, repacked packs) is copied at once.
    let out = sb.ok(&["mirror", &path_str(&mirror)]);
    assert!(stdout(&out).contains("stay for now"), "{}", show(&out));
    let held = files(&mirror);
    assert!(condemned.is_subset(&held));
    let missing: Vec<&String> = after
        .difference(&held)
        .filter(|f| *f != "reserve")
        .collect();
    assert!(
        missing.is_empty(),
        "everything the source has is in the mirror: {missing:?}"
    );
    // The mirror is a valid repository meanwhile, in which the forgotten
    // snapshots still restore: the grace period is an undo window.
    sb.call(&["check", "--read-data"])
        .env("SOPVAULT_REPO", &mirror)
        .ok();
    let ids: Vec<String> = {
        let out = sb
            .call(&["snapshots", "--json"])
            .env("SOPVAULT_REPO", &mirror)
            .ok();
        parse_json(&out)
            .as_array()
            .unwrap()
            .iter()
            .map(|s| text(s, "/id").to_string())
            .collect()
    };
    assert_eq!(ids.len(), 6);
    for (i, id) in ids.iter().enumerate() {
        let got = restore_daily(&sb, &mirror, id, &format!("grace{i}"));
        assert_eq!(
            got,
            random_bytes(1000 + i as u64, 200 * 1024),
            "snapshot {i}"
        );
    }

    // The plan names exactly the condemned files.
    let plan = sb.json(&[
        "mirror",
        "--dry-run",
        "--json",
        "--delete-after",
        "0d",
        &path_str(&mirror),
    ]);
    let planned: BTreeSet<String> = plan["delete"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| text(f, "/path").to_string())
        .collect();
    assert_eq!(planned, condemned);

    let v = sb.json(&[
        "mirror",
        "--json",
        "--delete-after",
        "0d",
        &path_str(&mirror),
    ]);
    assert_eq!(num(&v, "/deleted_files"), condemned.len() as u64);
    assert_diff_equal(&sb.repo, &mirror);
    sb.call(&["check", "--read-data"])
        .env("SOPVAULT_REPO", &mirror)
        .ok();
    // Every kept snapshot restores from the mirror, byte for byte.
    let snaps = sb.snapshots();
    assert_eq!(snaps.len(), 3);
    for (i, s) in snaps.iter().enumerate() {
        let got = restore_daily(&sb, &mirror, text(s, "/id"), &format!("r{i}"));
        assert_eq!(got, random_bytes(1003 + i as u64, 200 * 1024));
    }

    // A file missing at the source without a prune record is never deleted from the mirror.
    let snap = sb.repo_files("snapshots").into_iter().next().unwrap();
    let rel = snap.strip_prefix(&sb.repo).unwrap().to_path_buf();
    std::fs::remove_file(&snap).unwrap();
    sb.ok(&["mirror", "--delete-after", "0d", &path_str(&mirror)]);
    assert!(mirror.join(&rel).is_file());
}

#[test]
fn verify_finds_tampered_truncated_and_missing_files_without_the_key() {
    let sb = Sandbox::init();
    snapshots(&sb, 0..3);
    let mirror = sb.path("mirror");
    sb.ok(&["mirror", "--init", &path_str(&mirror)]);
    let verify = |extra: &[&str], code: i32| {
        let mut args = vec!["mirror", "--verify"];
        args.extend_from_slice(extra);
        let m = path_str(&mirror);
        args.push(&m);
        sb.call(&args)
            .env_remove("SOPVAULT_PASSWORD_FILE")
            .code(code)
    };
    let out = verify(&[], exit::OK);
    assert!(stdout(&out).contains("0 damaged"), "{}", show(&out));

    // A sample hashes a share of the files.
    let v = parse_json(&verify(&["--sample", "5%", "--json"], exit::OK));
    assert!(num(&v, "/files_hashed") < num(&v, "/files"), "{v}");

    // One flipped byte in a pack, one truncated index file, one missing snapshot.
    let pack = sb.data_packs(&mirror)[0].clone();
    let mut bytes = std::fs::read(&pack).unwrap();
    bytes[100] ^= 1;
    chmod(&pack, 0o600);
    std::fs::write(&pack, &bytes).unwrap();
    let index = files(&mirror.join("index")).into_iter().next().unwrap();
    let index = mirror.join("index").join(index);
    let b = std::fs::read(&index).unwrap();
    chmod(&index, 0o600);
    std::fs::write(&index, &b[..b.len() - 1]).unwrap();
    let snap = files(&mirror.join("snapshots")).into_iter().next().unwrap();
    std::fs::remove_file(mirror.join("snapshots").join(&snap)).unwrap();

    let out = verify(&[], exit::DAMAGED);
    let err = stderr(&out);
    let pack_name = pack.file_name().unwrap().to_string_lossy().into_owned();
    assert!(err.contains(&pack_name), "{}", show(&out));
    assert!(
        err.contains(&*index.file_name().unwrap().to_string_lossy()),
        "{}",
        show(&out)
    );
    assert!(
        stdout(&out).contains(&format!("missing: snapshots/{snap}")),
        "{}",
        show(&out)
    );

    // Without a source to compare with, content hashes still find the damage.
    let out = sb
        .call(&["mirror", "--verify", &path_str(&mirror)])
        .env_remove("SOPVAULT_REPO")
        .env_remove("SOPVAULT_PASSWORD_FILE")
        .code(exit::DAMAGED);
    assert!(stderr(&out).contains(&pack_name), "{}", show(&out));

    // A damaged file is never copied over: the next mirror refuses to trust names alone,
    // so the user repairs the mirror by deleting the damaged files and mirroring again.
    std::fs::remove_file(&pack).unwrap();
    std::fs::remove_file(&index).unwrap();
    sb.ok(&["mirror", &path_str(&mirror)]);
    verify(&[], exit::OK);
    assert_diff_equal(&sb.repo, &mirror);
}

#[test]
fn status_lists_every_mirror_with_what_it_is_behind() {
    let sb = Sandbox::init();
    let out = sb.ok(&["mirror", "--status"]);
    assert!(stdout(&out).contains("no mirrors yet"), "{}", show(&out));
    snapshots(&sb, 0..2);
    let (a, b) = (sb.path("mirror-a"), sb.path("mirror-b"));
    sb.ok(&["mirror", "--init", &path_str(&a)]);
    sb.ok(&["mirror", "--init", &path_str(&b)]);
    let out = sb.ok(&["mirror", "--status"]);
    let text_out = stdout(&out);
    assert!(
        text_out.contains(&format!("{}: last sync", a.display()))
            && text_out.contains(&format!("{}: last sync", b.display()))
            && text_out.matches("up to date").count() == 2,
        "{}",
        show(&out)
    );
    snapshots(&sb, 2..3);
    sb.ok(&["mirror", &path_str(&a)]);
    // One mirror behind: exit 3, with the JSON all the same.
    let out = sb.code(&["mirror", "--status", "--json"], exit::INCOMPLETE);
    let v = parse_json(&out);
    let rows = v.as_array().unwrap();
    assert_eq!(rows.len(), 2);
    let row_b = rows
        .iter()
        .find(|r| text(r, "/location") == path_str(&b))
        .unwrap();
    assert!(num(row_b, "/behind_files") >= 3, "{v}");
    let row_a = rows
        .iter()
        .find(|r| text(r, "/location") == path_str(&a))
        .unwrap();
    assert_eq!(num(row_a, "/behind_files"), 0, "{v}");

    // An unplugged disk is reported, with exit 10 for monitoring.
    std::fs::rename(&b, sb.path("unplugged")).unwrap();
    let out = sb.code(&["mirror", "--status"], exit::NO_REPOSITORY);
    assert!(stdout(&out).contains("not reachable"), "{}", show(&out));
}

/// Issue 20, item 1: a mirror made after a prune restores the newest
/// snapshots. What a prune wrote (its compacted index) reaches the mirror at
/// once; readers take the union of every index file present, so the index
/// files the prune superseded, kept in the mirror for the grace period, hide
/// nothing and the compacted one hides nothing either.
#[test]
fn issue20_1_a_mirror_made_after_a_prune_restores_the_newest_snapshots() {
    let sb = Sandbox::init();
    let day = |n: u64, lines: u64| {
        let cmd = format!("db.sql=seq 1 {lines}");
        let time = format!("2026-12-{n:02}T00:00:00+07:00");
        sb.ok(&[
            "snapshot", "--source", "db", "--stream", &cmd, "--time", &time,
        ]);
    };
    let seq = |lines: u64| -> Vec<u8> {
        (1..=lines)
            .map(|i| format!("{i}\n"))
            .collect::<String>()
            .into_bytes()
    };
    let mirror = sb.path("M");
    let m = path_str(&mirror);
    day(1, 100_000);
    sb.ok(&["mirror", "--init", &m]);
    day(2, 200_000);
    day(3, 300_000);
    sb.ok(&["prune", "--keep-last", "2"]);
    sb.ok(&["mirror", &m]);
    let on_mirror = |args: &[&str]| sb.call(args).env("SOPVAULT_REPO", &mirror).run();
    let out = on_mirror(&["check", "--read-data"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    // Every snapshot the mirror holds restores, the forgotten one included
    // (the grace period is an undo window).
    for (n, lines) in [(1, 100_000), (2, 200_000), (3, 300_000)] {
        let name = format!("db_2026-12-{n:02}");
        let out = on_mirror(&["cat", &name, "db.sql"]);
        assert_eq!(out.status.code(), Some(0), "{name}: {}", show(&out));
        assert!(out.stdout == seq(lines), "{name} differs from the mirror");
    }
    // A rerun copies nothing, and every monitoring view agrees.
    let out = sb.ok(&["mirror", &m]);
    assert!(stdout(&out).contains("up to date"), "{}", show(&out));
    sb.ok(&["mirror", "--verify", &m]);
    sb.ok(&["mirror", "--status"]);
    // Once the grace period is over, the mirror equals the repository.
    sb.ok(&["mirror", "--delete-after", "0d", &m]);
    assert_diff_equal(&sb.repo, &mirror);
    let out = on_mirror(&["check", "--read-data"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    for (n, lines) in [(2, 200_000), (3, 300_000)] {
        let out = on_mirror(&["cat", &format!("db_2026-12-{n:02}"), "db.sql"]);
        assert!(out.stdout == seq(lines), "day {n} after the grace period");
    }
}

/// Issue 20, item 4: monitoring sees what is wrong in the exit code.
/// `mirror --status`: 3 when a mirror is behind, 10 when one is unreachable;
/// `mirror --verify`: 3 when a file is missing, 5 when one is damaged, a
/// prune record included; `snapshots --source NAME`: 2 for an unknown source.
#[test]
fn issue20_4_monitoring_sees_a_mirror_behind_unreachable_or_damaged() {
    let sb = Sandbox::init();
    snapshots(&sb, 0..3);
    let mirror = sb.path("mirror");
    let m = path_str(&mirror);
    sb.ok(&["mirror", "--init", &m]);
    sb.ok(&["mirror", "--status"]);
    sb.ok(&["mirror", "--verify", &m]);
    sb.ok(&["prune", "--keep-last", "2"]);
    snapshots(&sb, 3..4);
    // Behind: both views say so in the exit code.
    let out = sb.code(&["mirror", "--status"], exit::INCOMPLETE);
    assert!(stdout(&out).contains("behind by"), "{}", show(&out));
    sb.code(&["mirror", "--status", "--json"], exit::INCOMPLETE);
    let out = sb.code(&["mirror", "--verify", &m], exit::INCOMPLETE);
    assert!(stdout(&out).contains("missing: "), "{}", show(&out));
    sb.ok(&["mirror", &m]);
    sb.ok(&["mirror", "--status"]);
    // A damaged prune record is found without the key, like any other file.
    let record = std::fs::read_dir(mirror.join("prune"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mut bytes = std::fs::read(&record).unwrap();
    bytes[20] ^= 1;
    std::fs::write(&record, &bytes).unwrap();
    let out = sb
        .call(&["mirror", "--verify", &m])
        .env_remove("SOPVAULT_PASSWORD_FILE")
        .env_remove("SOPVAULT_REPO")
        .code(exit::DAMAGED);
    assert!(stderr(&out).contains("prune/"), "{}", show(&out));
    bytes[20] ^= 1;
    std::fs::write(&record, &bytes).unwrap();
    // Unreachable: the disk is gone.
    std::fs::rename(&mirror, sb.path("elsewhere")).unwrap();
    let out = sb.code(&["mirror", "--status"], exit::NO_REPOSITORY);
    assert!(stdout(&out).contains("not reachable"), "{}", show(&out));
    std::fs::rename(sb.path("elsewhere"), &mirror).unwrap();
    sb.ok(&["mirror", "--status"]);
    // An unknown source is not an empty list.
    sb.ok(&["snapshots", "--source", "db"]);
    let out = sb.code(&["snapshots", "--source", "dbb"], exit::USAGE);
    assert!(stderr(&out).contains("dbb"), "{}", show(&out));
}

/// Found by the simulated year: a mirror that ran before a prune never saw
/// that prune's output (its compacted index and the pack it repacked a live
/// chunk into) when the next prune superseded it first. When the first
/// prune's record came due, the mirror deleted the only pack it had with that
/// chunk, while a snapshot the second prune forgot, still in its grace
/// period, needed it. Deletions now keep what the snapshots the mirror holds
/// still need.
#[test]
fn a_mirror_keeps_what_its_grace_snapshots_need_when_it_missed_a_prunes_output() {
    let sb = Sandbox::init();
    let part = |seed: u64| random_bytes(seed, 600 * 1024);
    let (a, b, c, d) = (part(1), part(2), part(3), part(4));
    let day = |n: u32, content: &[Vec<u8>]| {
        let file = sb.write("dump.sql", &content.concat());
        let cmd = format!("db.sql=cat {}", path_str(&file));
        let time = format!("2026-03-{n:02}T00:00:00+07:00");
        sb.ok(&[
            "snapshot", "--source", "db", "--stream", &cmd, "--time", &time,
        ]);
    };
    let at = |n: u32, hh: u32| {
        let (m, d) = if n <= 31 { (3, n) } else { (4, n - 31) };
        format!("2026-{m:02}-{d:02}T{hh:02}:00:00+07:00")
    };
    let mirror = sb.path("M");
    let m = path_str(&mirror);
    day(1, &[a.clone(), b.clone()]);
    day(2, &[b.clone(), c.clone()]);
    day(3, std::slice::from_ref(&d));
    sb.ok(&["mirror", "--init", &m, "--time", &at(3, 1)]);
    // Day 3's prune forgets day 1 and repacks the pack that held `a` and `b`
    // (`b` is live for day 2); the mirror ran before it and does not see it.
    let prune = |keep: &str, n: u32| {
        sb.ok(&[
            "prune",
            "--keep-last",
            keep,
            "--max-unused",
            "0%",
            "--time",
            &at(n, 2),
        ])
    };
    prune("2", 3);
    // Day 4's prune forgets day 2 before any mirror ran: `b` is dead at the
    // source, and the pack the first prune repacked it into is deleted.
    prune("1", 4);
    sb.ok(&["mirror", &m, "--time", &at(4, 3)]);
    let on_mirror = |args: &[&str]| sb.call(args).env("SOPVAULT_REPO", &mirror).run();
    // Day 33: the first prune's record is due, the second's is not.
    sb.ok(&["mirror", &m, "--time", &at(33, 3)]);
    let out = on_mirror(&["check", "--read-data"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let out = on_mirror(&["cat", "db_2026-03-02", "db.sql"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert!(
        out.stdout == [b.clone(), c.clone()].concat(),
        "day 2 differs"
    );
    // Day 35: both are due, and the mirror equals the repository.
    sb.ok(&["mirror", &m, "--time", &at(35, 3)]);
    assert_diff_equal(&sb.repo, &mirror);
    let out = on_mirror(&["check", "--read-data"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let out = on_mirror(&["cat", "db_2026-03-03", "db.sql"]);
    assert!(out.stdout == d, "day 3 differs");
}
