//! End-to-end tests of the `sopvault` command line.
//!
//! Every test drives the real binary on real temporary directories through the
//! small harness in `common/`: a [`Sandbox`] holds the repository, password
//! file, cache, source trees and restore targets, and every invocation runs
//! with a cleared environment and is checked for panics. Each `sopvault` run
//! costs a key derivation (a fraction of a second), so tests share one
//! repository per scenario rather than starting over for every assertion.

use crate::common::{exit, *};
use serde_json::Value;
use std::collections::BTreeSet;
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Builds the tree of the round-trip test; returns whether user xattrs are supported.
fn build_rich_tree(src: &Path) -> bool {
    use std::fs;
    fs::create_dir_all(src.join("nested/a/b/c")).unwrap();
    fs::create_dir(src.join("empty_dir")).unwrap();
    fs::create_dir(src.join("shared")).unwrap();
    fs::write(src.join("empty.txt"), b"").unwrap();
    fs::write(src.join("small.txt"), b"hello, sopvault\n").unwrap();
    fs::write(src.join("big.bin"), random_bytes(1, 1536 * 1024 + 123)).unwrap();
    let log: String = (0..100_000)
        .map(|i| format!("{i:08} GET /index.html 200 OK\n"))
        .collect();
    fs::write(src.join("access.log"), log).unwrap();
    fs::write(src.join("nested/a/b/c/deep.txt"), b"deep down\n").unwrap();
    fs::write(src.join("shared/inside.txt"), b"in a setgid directory\n").unwrap();
    fs::write(src.join("hard1"), b"one inode, two names\n").unwrap();
    fs::hard_link(src.join("hard1"), src.join("nested/hard2")).unwrap();
    std::os::unix::fs::symlink("small.txt", src.join("link_to_small")).unwrap();
    std::os::unix::fs::symlink(src.join("big.bin"), src.join("abs_link")).unwrap();
    std::os::unix::fs::symlink("does/not/exist", src.join("dangling")).unwrap();
    mkfifo(&src.join("fifo"), 0o640);
    fs::write(src.join("name with  spaces.txt"), b"spaces\n").unwrap();
    fs::write(
        src.join(OsStr::from_bytes(b"bytes-\xff\xfe-not-utf8.bin")),
        b"latin-1 name\n",
    )
    .unwrap();
    fs::write(src.join("new\nline.txt"), b"newline in the name\n").unwrap();
    fs::write(src.join("ütf8-名前.txt"), b"unicode\n").unwrap();
    chmod(&src.join("small.txt"), 0o600);
    chmod(&src.join("big.bin"), 0o755);
    chmod(&src.join("access.log"), 0o644);
    chmod(&src.join("shared"), 0o2775);
    chmod(&src.join("empty_dir"), 0o700);
    if is_root() {
        fs::write(src.join("owned.txt"), b"owned by someone else\n").unwrap();
        std::os::unix::fs::lchown(src.join("owned.txt"), Some(1234), Some(5678)).unwrap();
        std::os::unix::fs::lchown(src.join("dangling"), Some(1234), Some(5678)).unwrap();
    }
    let xattrs = xattr::set(src.join("small.txt"), "user.test", b"value\x00\x01\xff").is_ok();
    if xattrs {
        xattr::set(src.join("nested"), "user.test", b"on a directory").unwrap();
    } else {
        eprintln!("note: the temporary file system has no user xattrs; not testing them");
    }
    // Distinct mtimes with nanoseconds; deepest first, so directories keep theirs.
    let mut all: Vec<PathBuf> = list_tree(src).into_iter().collect();
    all.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for (i, rel) in all.iter().enumerate() {
        set_mtime(
            &src.join(rel),
            1_600_000_000 + i as i64 * 3607,
            123_456_789 + i as u32,
        );
    }
    set_mtime(src, 1_500_000_000, 987_654_321);
    xattrs
}

#[test]
fn restore_reproduces_a_tree_with_all_metadata() {
    let sb = Sandbox::init();
    let src = sb.path("src");
    let xattrs = build_rich_tree(&src);
    let file_count = list_tree(&src)
        .iter()
        .filter(|p| std::fs::symlink_metadata(src.join(p)).unwrap().is_file())
        .count() as u64;

    let snap = sb.json(&["snapshot", "--source", "rich", "--json", &path_str(&src)]);
    assert_eq!(snap["complete"], Value::Bool(true));
    assert_eq!(num(&snap, "/summary/files"), file_count);
    let (read, stored) = (
        num(&snap, "/summary/bytes_read"),
        num(&snap, "/summary/bytes_stored"),
    );
    assert!(
        stored * 10 < read * 7,
        "the compressible log should shrink: {stored} stored for {read} read"
    );

    let target = sb.path("target");
    let out = sb.ok(&["restore", "latest", "--target", &path_str(&target)]);
    assert!(
        !stderr(&out).contains("warning"),
        "restore warned:\n{}",
        show(&out)
    );
    let restored = restored_path(&target, &src);
    assert_same_tree(&src, &restored, is_root());
    // The restored file for SRC/x is at TARGET/SRC/x, and nothing else is in the target.
    let mut expected: BTreeSet<PathBuf> = src
        .strip_prefix("/")
        .unwrap()
        .ancestors()
        .filter(|p| !p.as_os_str().is_empty())
        .map(Path::to_path_buf)
        .collect();
    let rel_src = src.strip_prefix("/").unwrap();
    expected.extend(list_tree(&src).iter().map(|p| rel_src.join(p)));
    assert_eq!(list_tree(&target), expected);
    let fifo = std::fs::symlink_metadata(restored.join("fifo")).unwrap();
    assert!(std::os::unix::fs::FileTypeExt::is_fifo(&fifo.file_type()));
    if xattrs {
        assert_eq!(
            xattr::get(restored.join("small.txt"), "user.test").unwrap(),
            Some(b"value\x00\x01\xff".to_vec())
        );
    }

    // `ls --json` describes the same entries.
    let out = sb.ok(&["ls", "latest", &path_str(&src), "--json"]);
    let entries: Vec<Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert_eq!(entries.len(), list_tree(&src).len() + 1);
    let by_name = |suffix: &str| -> &Value {
        entries
            .iter()
            .find(|e| text(e, "/path").ends_with(suffix))
            .unwrap_or_else(|| panic!("ls --json lists no {suffix}"))
    };
    assert_eq!(text(by_name("/fifo"), "/type"), "fifo");
    assert_eq!(text(by_name("/dangling"), "/type"), "symlink");
    assert_eq!(text(by_name("/dangling"), "/target"), "does/not/exist");
    assert_eq!(text(by_name("/big.bin"), "/mode"), "755");
    assert_eq!(num(by_name("/big.bin"), "/size"), 1536 * 1024 + 123);
    assert_eq!(text(by_name("/shared"), "/mode"), "2775");
    let md = std::fs::metadata(src.join("small.txt")).unwrap();
    let mtime = chrono::DateTime::from_timestamp(md.mtime(), md.mtime_nsec() as u32)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
    assert_eq!(text(by_name("/small.txt"), "/mtime"), mtime);
}

#[test]
fn streams_stdin_and_paths_in_one_snapshot() {
    let sb = Sandbox::init();
    let blob = sb.write("data/blob.bin", &random_bytes(2, 1_200_000));
    let upload = random_bytes(3, 300_001);
    let file = sb.write("src/site/index.html", b"<h1>hello</h1>\n");
    let src = sb.path("src");
    let seq_cmd = "seq 1 200000";
    let seq_out: String = (1..=200_000).map(|i| format!("{i}\n")).collect();
    let cat_cmd = format!("cat '{}'", path_str(&blob));

    let out = sb
        .call(&[
            "snapshot",
            "--source",
            "app",
            "--stream",
            &format!("db.sql={seq_cmd}"),
            "--stream",
            &format!("blob.bin={cat_cmd}"),
            "--stdin",
            "upload.bin",
            "--tag",
            "nightly",
            &path_str(&src),
        ])
        .stdin(&upload)
        .ok();
    assert!(stdout(&out).contains("saved as app_"), "{}", show(&out));

    let blob_bytes = std::fs::read(&blob).unwrap();
    let expected: [(&str, &[u8]); 3] = [
        ("db.sql", seq_out.as_bytes()),
        ("blob.bin", &blob_bytes),
        ("upload.bin", &upload),
    ];
    for (name, data) in expected {
        let out = sb.ok(&["cat", "latest", name]);
        assert!(
            out.stdout == data,
            "cat {name}: output differs from the source"
        );
    }
    let out = sb.ok(&["cat", "latest", &path_str(&file)]);
    assert_eq!(out.stdout, b"<h1>hello</h1>\n");

    let snaps = sb.snapshots();
    assert_eq!(snaps.len(), 1);
    let s = &snaps[0];
    let id = text(s, "/id");
    assert!(id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()));
    assert!(id.starts_with(text(s, "/short_id")) && text(s, "/short_id").len() >= 8);
    assert!(text(s, "/name").starts_with("app_"));
    assert_eq!(text(s, "/source"), "app");
    assert_eq!(s["tags"], serde_json::json!(["nightly"]));
    assert_eq!(s["paths"], serde_json::json!([path_str(&src)]));
    assert_eq!(s["complete"], Value::Bool(true));
    let time = text(s, "/time");
    chrono::DateTime::parse_from_rfc3339(time).unwrap_or_else(|e| panic!("time {time:?}: {e}"));
    assert!(
        time.ends_with('Z') || time[time.len() - 6..].starts_with(['+', '-']),
        "time {time:?} has no UTC offset"
    );
    let streams = s["streams"].as_array().expect("streams is an array");
    assert_eq!(streams.len(), 3);
    let stream = |name: &str| -> &Value {
        streams
            .iter()
            .find(|r| r["name"] == name)
            .unwrap_or_else(|| panic!("no stream {name} in {s:#}"))
    };
    for (name, data) in expected {
        let r = stream(name);
        assert_eq!(num(r, "/bytes"), data.len() as u64, "{name}: bytes");
        assert_eq!(text(r, "/sha256"), sha256_hex(data), "{name}: sha256");
        let started = chrono::DateTime::parse_from_rfc3339(text(r, "/started")).unwrap();
        let ended = chrono::DateTime::parse_from_rfc3339(text(r, "/ended")).unwrap();
        assert!(started <= ended, "{name}: started after it ended");
    }
    assert_eq!(text(stream("db.sql"), "/command"), seq_cmd);
    assert_eq!(text(stream("blob.bin"), "/command"), cat_cmd);
    assert_eq!(num(stream("db.sql"), "/exit_status"), 0);
    assert!(stream("upload.bin")["command"].is_null());
    assert!(stream("upload.bin")["exit_status"].is_null());
    let total: u64 = expected.iter().map(|(_, d)| d.len() as u64).sum::<u64>() + 15;
    assert_eq!(num(s, "/summary/bytes_read"), total);
    assert!(num(s, "/summary/bytes_added") >= total);
    assert!(num(s, "/summary/bytes_stored") > 0);
    assert_repository_is_content_addressed(&sb);
}

#[test]
fn unchanged_data_adds_almost_nothing() {
    let sb = Sandbox::init();
    let src = sb.path("src");
    for i in 0..40 {
        sb.write(
            format!("src/dir{}/file{i}.txt", i % 4),
            format!("file {i}\n").repeat(50 + i).as_bytes(),
        );
    }
    sb.write("src/big.bin", &random_bytes(4, 2 << 20));
    let args = ["snapshot", "--source", "www", "--json", &path_str(&src)];

    let first = sb.json(&args);
    assert_eq!(num(&first, "/summary/files"), 41);
    assert_eq!(num(&first, "/summary/files_unchanged"), 0);
    let size = num(&first, "/summary/bytes_total");
    assert!(num(&first, "/summary/bytes_added") >= size);

    let second = sb.json(&args);
    assert_eq!(second["parent"], first["id"]);
    assert_eq!(num(&second, "/summary/files"), 41);
    assert_eq!(num(&second, "/summary/files_unchanged"), 41);
    assert_eq!(num(&second, "/summary/bytes_read"), 0);
    let added = num(&second, "/summary/bytes_added");
    assert!(
        added < 16 * 1024 && added * 100 < size,
        "an unchanged tree of {size} bytes added {added} bytes"
    );

    let changed = random_bytes(5, 5000);
    std::fs::write(src.join("dir1/file1.txt"), &changed).unwrap();
    let third = sb.json(&args);
    assert_eq!(num(&third, "/summary/files_unchanged"), 40);
    assert_eq!(num(&third, "/summary/bytes_read"), 5000);
    let added = num(&third, "/summary/bytes_added");
    assert!(
        (5000..5000 + 16 * 1024).contains(&added),
        "changing a 5000-byte file added {added} bytes"
    );
    let out = sb.ok(&["cat", "latest", &sb.arg("src/dir1/file1.txt")]);
    assert!(out.stdout == changed);

    // Reading everything again, or the same tree under another source, finds it all stored.
    let forced = sb.json(&[
        "snapshot",
        "--source",
        "www",
        "--force",
        "--json",
        &path_str(&src),
    ]);
    let other = sb.json(&["snapshot", "--source", "mirror", "--json", &path_str(&src)]);
    for s in [&forced, &other] {
        assert_eq!(num(s, "/summary/files_unchanged"), 0);
        assert_eq!(
            num(s, "/summary/bytes_read"),
            num(s, "/summary/bytes_total")
        );
        let added = num(s, "/summary/bytes_added");
        assert!(
            added < 16 * 1024,
            "{} added {added} bytes of known data",
            text(s, "/name")
        );
    }
}

/// An unchanged entry's xattrs and symlink target come from the parent
/// snapshot; any change to them (which moves the ctime or the inode) is read again.
#[test]
fn metadata_changes_between_snapshots_are_recorded() {
    let sb = Sandbox::init();
    let src = sb.path("src");
    sb.write("src/a.txt", b"a");
    sb.write("src/b.txt", b"b");
    sb.write("src/sub/c.txt", b"c");
    std::os::unix::fs::symlink("a.txt", src.join("link")).unwrap();
    let xattrs = xattr::set(src.join("a.txt"), "user.v", b"1").is_ok();
    if xattrs {
        xattr::set(src.join("sub"), "user.v", b"dir 1").unwrap();
        xattr::set(src.join("b.txt"), "user.keep", b"kept").unwrap();
    }
    let args = ["snapshot", "--source", "meta", "--json", &path_str(&src)];
    sb.json(&args);

    // Changes without touching any content.
    if xattrs {
        xattr::set(src.join("a.txt"), "user.v", b"2").unwrap();
        xattr::set(src.join("sub"), "user.v", b"dir 2").unwrap();
    }
    std::fs::remove_file(src.join("link")).unwrap();
    std::os::unix::fs::symlink("sub/c.txt", src.join("link")).unwrap();
    std::fs::set_permissions(
        src.join("sub/c.txt"),
        std::fs::Permissions::from_mode(0o640),
    )
    .unwrap();
    let second = sb.json(&args);
    // Only the entries whose ctime moved are read again (one byte each): b.txt is not.
    let touched = if xattrs { 2 } else { 1 };
    assert_eq!(num(&second, "/summary/bytes_read"), touched);
    assert_eq!(num(&second, "/summary/files_unchanged"), 3 - touched);

    let target = sb.path("target");
    sb.ok(&["restore", "latest", "--target", &path_str(&target)]);
    let restored = restored_path(&target, &src);
    assert_same_tree(&src, &restored, is_root());
    assert_eq!(
        std::fs::read_link(restored.join("link")).unwrap(),
        Path::new("sub/c.txt")
    );
    let mode = std::fs::symlink_metadata(restored.join("sub/c.txt"))
        .unwrap()
        .mode();
    assert_eq!(mode & 0o7777, 0o640);
    if xattrs {
        let get = |p: &str, n: &str| xattr::get(restored.join(p), n).unwrap();
        assert_eq!(get("a.txt", "user.v"), Some(b"2".to_vec()));
        assert_eq!(get("sub", "user.v"), Some(b"dir 2".to_vec()));
        // Unchanged, so taken over from the parent snapshot: still there.
        assert_eq!(get("b.txt", "user.keep"), Some(b"kept".to_vec()));
    }
}

#[test]
fn failing_stream_writes_no_snapshot() {
    let sb = Sandbox::init();
    let big = sb.path("dump.bin");
    write_random_file(&big, 6, 20 << 20);
    sb.ok(&["snapshot", "--source", "db", "--stream", "dump=echo first"]);

    // Fails after 20 MiB of output, so packs of the failed run are already stored.
    let cmd = format!("dump=cat '{}'; exit 7", path_str(&big));
    let out = sb.code(
        &["snapshot", "--source", "db", "--stream", &cmd],
        exit::STREAM_FAILED,
    );
    let err = stderr(&out);
    assert!(err.contains("dump") && err.contains("7"), "{}", show(&out));
    assert_eq!(sb.snapshots().len(), 1, "a failed stream left a snapshot");

    let out = sb.code(
        &["snapshot", "--source", "db", "--stream", "dump=kill -9 $$"],
        exit::STREAM_FAILED,
    );
    assert!(stderr(&out).contains("signal 9"), "{}", show(&out));
    assert_eq!(sb.snapshots().len(), 1, "a killed stream left a snapshot");

    let out = sb.ok(&["check"]);
    assert!(stdout(&out).contains("no errors found"), "{}", show(&out));

    // The same data then goes in whole, reusing what the failed run stored; a second
    // dump of the same bytes adds next to nothing.
    let cmd = format!("dump=cat '{}'", path_str(&big));
    let args = ["snapshot", "--source", "db", "--json", "--stream", &cmd];
    let rerun = sb.json(&args);
    let added = num(&rerun, "/summary/bytes_added");
    assert!(
        added < 20 << 20,
        "the rerun added {added} bytes: nothing of the failed run was reused"
    );
    let again = sb.json(&args);
    let added = num(&again, "/summary/bytes_added");
    assert!(added < 64 * 1024, "an identical dump added {added} bytes");
    let out = sb.ok(&["cat", "db:latest", "dump"]);
    assert!(out.stdout == std::fs::read(&big).unwrap());
    sb.ok(&["check", "--read-data"]);
}

#[test]
fn wrong_password_and_missing_repository() {
    let sb = Sandbox::init();
    let wrong = sb.write("wrong-password", b"not the password\n");

    let one_line = |out: &std::process::Output| {
        let err = stderr(out);
        assert_eq!(err.trim_end().lines().count(), 1, "{}", show(out));
        err
    };
    let out = sb
        .call(&["snapshots"])
        .env("SOPVAULT_PASSWORD_FILE", &wrong)
        .code(exit::WRONG_PASSWORD);
    assert!(one_line(&out).contains("password"), "{}", show(&out));
    let out = sb
        .call(&["snapshots"])
        .env_remove("SOPVAULT_PASSWORD_FILE")
        .env("SOPVAULT_PASSWORD_COMMAND", "echo nope")
        .code(exit::WRONG_PASSWORD);
    one_line(&out);
    // The lock is taken while the key is derived; a wrong password removes
    // it again, and its error wins over a lock conflict.
    let locks = || std::fs::read_dir(sb.repo.join("locks")).unwrap().count();
    let out = sb
        .call(&["snapshot", "--source", "s", "--stream", "a=echo a"])
        .env("SOPVAULT_PASSWORD_FILE", &wrong)
        .code(exit::WRONG_PASSWORD);
    one_line(&out);
    assert_eq!(locks(), 0, "a lock was left behind: {}", show(&out));
    let foreign = sb.repo.join("locks/x.lock");
    std::fs::write(
        &foreign,
        br#"{"exclusive":true,"host":"otherhost","pid":1,"user":"u","time":"t","command":"prune"}"#,
    )
    .unwrap();
    let out = sb
        .call(&["restore", "latest", "--target", &sb.arg("r")])
        .env("SOPVAULT_PASSWORD_FILE", &wrong)
        .code(exit::WRONG_PASSWORD);
    one_line(&out);
    assert_eq!(locks(), 1, "{}", show(&out));
    std::fs::remove_file(&foreign).unwrap();
    sb.call(&["snapshots"])
        .env_remove("SOPVAULT_PASSWORD_FILE")
        .env(
            "SOPVAULT_PASSWORD_COMMAND",
            format!("cat '{}'", path_str(&sb.password_file)),
        )
        .ok();

    let missing = sb.arg("no-such-dir");
    let out = sb.code(&["snapshots", "--repo", &missing], exit::NO_REPOSITORY);
    one_line(&out);
    assert!(
        !sb.path("no-such-dir").exists(),
        "opening created the directory"
    );

    let not_repo = sb.write("plain/notes.txt", b"just a directory\n");
    let not_repo = path_str(not_repo.parent().unwrap());
    let out = sb.code(
        &[
            "snapshot", "--repo", &not_repo, "--source", "x", "--stream", "a=echo",
        ],
        exit::NO_REPOSITORY,
    );
    one_line(&out);
    std::fs::create_dir(sb.path("empty")).unwrap();
    sb.code(
        &["ls", "--repo", &sb.arg("empty"), "latest"],
        exit::NO_REPOSITORY,
    );

    sb.call(&["snapshots"])
        .env_remove("SOPVAULT_REPO")
        .code(exit::USAGE);
}

#[test]
fn damaged_packs_and_index_are_reported() {
    let sb = Sandbox::init();
    let big = sb.write("src/big.bin", &random_bytes(7, 2 << 20));
    sb.write("src/small.txt", b"small and intact\n");
    let src = sb.path("src");
    // The stream has the same bytes as big.bin, so both depend on the same chunks.
    let stream = format!("dump=cat '{}'", path_str(&big));
    sb.ok(&[
        "snapshot",
        "--source",
        "web",
        "--stream",
        &stream,
        &path_str(&src),
    ]);
    let name = text(&sb.snapshots()[0], "/name").to_string();
    sb.ok(&["check", "--read-data"]);
    let trunc_pack = sb.path("repo-truncated-pack");
    let trunc_index = sb.path("repo-truncated-index");
    copy_tree(&sb.repo, &trunc_pack);
    copy_tree(&sb.repo, &trunc_index);

    // One flipped byte in the middle of the data pack.
    let packs = sb.data_packs(&sb.repo);
    assert_eq!(packs.len(), 1, "expected one data pack: {packs:?}");
    let pack = &packs[0];
    let pack_name = pack.file_name().unwrap().to_str().unwrap().to_string();
    let mut bytes = std::fs::read(pack).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    chmod(pack, 0o600);
    std::fs::write(pack, &bytes).unwrap();

    let out = sb.code(&["check"], exit::DAMAGED);
    let err = stderr(&out);
    assert!(
        err.contains(&pack_name) && err.contains("hash"),
        "{}",
        show(&out)
    );

    let out = sb.code(&["check", "--read-data"], exit::DAMAGED);
    let err = stderr(&out);
    let chunk_line = err
        .lines()
        .find(|l| l.contains("damaged: chunk "))
        .unwrap_or_else(|| panic!("check names no damaged chunk\n{}", show(&out)));
    let chunk = chunk_line
        .split("damaged: chunk ")
        .nth(1)
        .unwrap()
        .split(|c: char| !c.is_ascii_hexdigit())
        .next()
        .unwrap();
    assert_eq!(chunk.len(), 64, "no chunk id in {chunk_line:?}");
    assert!(
        chunk_line.contains(&pack_name),
        "{chunk_line:?} does not name the pack"
    );
    let affects: Vec<&str> = err.lines().filter(|l| l.contains("affects")).collect();
    assert!(
        affects
            .iter()
            .any(|l| l.contains(&name) && l.contains(&path_str(&big))),
        "check does not name {} in {name}\n{}",
        big.display(),
        show(&out)
    );
    assert!(
        affects
            .iter()
            .any(|l| l.contains(&name) && l.contains("/dump")),
        "check does not name the stream\n{}",
        show(&out)
    );

    let target = sb.path("target");
    let out = sb.code(
        &["restore", "latest", "--target", &path_str(&target)],
        exit::DAMAGED,
    );
    assert!(stderr(&out).contains("big.bin"), "{}", show(&out));
    assert!(
        !restored_path(&target, &big).exists(),
        "the damaged file was left in the target"
    );
    assert_eq!(
        std::fs::read(restored_path(&target, &src.join("small.txt"))).unwrap(),
        b"small and intact\n"
    );
    let out = sb.run(&["cat", "latest", "dump"]);
    assert_ne!(
        out.status.code(),
        Some(0),
        "cat of a damaged stream succeeded"
    );
    let out = sb.ok(&["cat", "latest", &sb.arg("src/small.txt")]);
    assert_eq!(out.stdout, b"small and intact\n");

    // A truncated pack.
    let packs = sb.data_packs(&trunc_pack);
    chmod(&packs[0], 0o600);
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&packs[0])
        .unwrap();
    f.set_len(f.metadata().unwrap().len() / 2).unwrap();
    let repo = path_str(&trunc_pack);
    let out = sb.run(&["check", "--repo", &repo, "--no-cache"]);
    assert_ne!(out.status.code(), Some(0), "check missed a truncated pack");
    assert!(stderr(&out).contains(&pack_name), "{}", show(&out));
    let out = sb.run(&["check", "--repo", &repo, "--no-cache", "--read-data"]);
    assert_ne!(
        out.status.code(),
        Some(0),
        "check --read-data missed a truncated pack"
    );
    let out = sb.run(&[
        "restore",
        "--repo",
        &repo,
        "--no-cache",
        "latest",
        "--target",
        &sb.arg("t2"),
    ]);
    assert_ne!(
        out.status.code(),
        Some(0),
        "restore from a truncated pack succeeded"
    );

    // A truncated index file.
    let index = std::fs::read_dir(trunc_index.join("index"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    chmod(&index, 0o600);
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&index)
        .unwrap();
    f.set_len(20).unwrap();
    let repo = path_str(&trunc_index);
    let out = sb.run(&["check", "--repo", &repo, "--no-cache"]);
    assert_ne!(
        out.status.code(),
        Some(0),
        "check missed a truncated index file"
    );
    let index_name = index.file_name().unwrap().to_str().unwrap();
    assert!(stderr(&out).contains(index_name), "{}", show(&out));
    let out = sb.run(&["ls", "--repo", &repo, "--no-cache", "latest"]);
    assert_ne!(out.status.code(), Some(0), "ls without an index succeeded");
}

/// Asserts that every file below config/, keys/, index/, snapshots/ and packs/
/// is named by the SHA-256 of its bytes.
fn assert_repository_is_content_addressed(sb: &Sandbox) {
    for dir in ["config", "keys", "index", "snapshots", "packs"] {
        let files = sb.repo_files(dir);
        assert!(!files.is_empty(), "{dir}/ is empty");
        for f in files {
            let name = f.file_name().unwrap().to_str().unwrap().to_string();
            let bytes = std::fs::read(&f).unwrap();
            assert_eq!(
                sha256_hex(&bytes),
                name,
                "{} is not named by its hash",
                f.display()
            );
            if dir == "packs" {
                let hh = f.parent().unwrap().file_name().unwrap().to_str().unwrap();
                assert_eq!(hh, &name[..2], "{} is in the wrong directory", f.display());
            }
        }
    }
}

#[test]
fn every_repository_file_is_named_by_its_sha256() {
    let sb = Sandbox::init();
    sb.write("src/a.txt", b"a\n");
    // Larger than two data packs: a pack is written out (and hashed) a
    // batch at a time while it is filled, and must still be named by the
    // SHA-256 of its whole file.
    sb.write("src/b.bin", &random_bytes(8, 40 << 20));
    sb.ok(&[
        "snapshot",
        "--source",
        "s",
        "--stream",
        "x=seq 1 1000",
        &sb.arg("src"),
    ]);
    assert!(
        sb.repo_files("packs").len() >= 4,
        "expected 3 data packs and a tree pack"
    );
    let new = sb.write("new-password", b"another password\n");
    sb.call(&["key", "add"])
        .env("SOPVAULT_NEW_PASSWORD_FILE", &new)
        .ok();
    assert_eq!(sb.repo_files("keys").len(), 2);
    assert_repository_is_content_addressed(&sb);
}

#[test]
fn snapshot_killed_midway_leaves_a_usable_repository() {
    const SIZE: u64 = 200 << 20;
    let sb = Sandbox::init();
    let data = sb.path("src/large.bin");
    std::fs::create_dir_all(data.parent().unwrap()).unwrap();
    write_random_file(&data, 9, SIZE);
    let args = ["snapshot", "--source", "big", "--json", &path_str(&data)];

    let mut child = sb.call(&args).spawn();
    let started = Instant::now();
    while sb.repo_files("packs").is_empty() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the snapshot ended ({status}) before its first pack appeared");
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no pack after 120 s"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().unwrap();
    let status = child.wait().unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        status.signal(),
        Some(9),
        "the snapshot finished ({status}) before it could be killed"
    );
    child_stderr(&mut child);
    let packs_left = sb.repo_files("packs").len();
    // The killed process's lock is stale: the next command removes it, and says so.
    let out = sb.ok(&["snapshots", "--json"]);
    assert_eq!(
        parse_json(&out),
        serde_json::json!([]),
        "a killed run left a snapshot"
    );
    assert!(
        stderr(&out).contains("removed the stale lock"),
        "{}",
        show(&out)
    );

    let out = sb.ok(&["check"]);
    let out_text = format!("{}{}", stdout(&out), stderr(&out));
    assert!(!out_text.contains("damaged"), "{}", show(&out));
    // The killed process's lock was stale, of this boot: the first command
    // after it removed it (issue 20, item 12), and `unlock` finds nothing.
    assert_eq!(std::fs::read_dir(sb.repo.join("locks")).unwrap().count(), 0);
    let out = sb.ok(&["unlock"]);
    assert!(stdout(&out).contains("0 lock(s) removed"), "{}", show(&out));

    let rerun = sb.json(&args);
    assert_eq!(rerun["complete"], Value::Bool(true));
    let added = num(&rerun, "/summary/bytes_added");
    if added < SIZE {
        eprintln!(
            "note: the rerun reused {} bytes of the killed run",
            SIZE - added
        );
    } else {
        eprintln!(
            "note: the rerun re-added all {SIZE} bytes; the {packs_left} pack(s) of the killed run \
             were not reused (orphan-pack recovery is not there yet)"
        );
    }
    sb.ok(&["check", "--read-data"]);
    let target = sb.path("target");
    sb.ok(&["restore", "latest", "--target", &path_str(&target)]);
    assert!(
        same_file_content(&data, &restored_path(&target, &data)),
        "the restored file differs"
    );
}

fn key_list(sb: &Sandbox, password: &Path) -> Vec<Value> {
    let out = sb
        .call(&["key", "list", "--json"])
        .env("SOPVAULT_PASSWORD_FILE", password)
        .ok();
    match parse_json(&out) {
        Value::Array(v) => v,
        other => panic!("key list --json printed {other}"),
    }
}

#[test]
fn keys_can_be_added_listed_removed_and_changed() {
    let sb = Sandbox::init();
    let first = sb.password_file.clone();
    let second = sb.write("password-2", b"second password\n");
    let third = sb.write("password-3", b"third password\n");

    sb.call(&["key", "add", "--label", "backup-admin"])
        .env("SOPVAULT_NEW_PASSWORD_FILE", &second)
        .ok();
    let keys = key_list(&sb, &second);
    assert_eq!(keys.len(), 2, "{keys:?}");
    let current: Vec<&Value> = keys.iter().filter(|k| k["current"] == true).collect();
    assert_eq!(current.len(), 1);
    assert_eq!(text(current[0], "/label"), "backup-admin");
    for k in &keys {
        assert!(text(k, "/id").starts_with(text(k, "/short_id")));
        assert!(num(k, "/argon2id/m_kib") > 0 && num(k, "/argon2id/t") > 0);
    }
    let second_id = text(current[0], "/id").to_string();
    let first_id = keys
        .iter()
        .map(|k| text(k, "/id").to_string())
        .find(|id| *id != second_id)
        .unwrap();

    // The key in use cannot be removed, the other one can.
    let out = sb
        .call(&["key", "remove", &second_id[..8]])
        .env("SOPVAULT_PASSWORD_FILE", &second)
        .run();
    assert_ne!(out.status.code(), Some(0), "removed the key in use");
    sb.call(&["key", "remove", &first_id[..8]])
        .env("SOPVAULT_PASSWORD_FILE", &second)
        .ok();
    sb.call(&["snapshots"])
        .env("SOPVAULT_PASSWORD_FILE", &first)
        .code(exit::WRONG_PASSWORD);

    sb.call(&["key", "passwd"])
        .env("SOPVAULT_PASSWORD_FILE", &second)
        .env("SOPVAULT_NEW_PASSWORD_FILE", &third)
        .ok();
    sb.call(&["snapshots"])
        .env("SOPVAULT_PASSWORD_FILE", &second)
        .code(exit::WRONG_PASSWORD);
    let keys = key_list(&sb, &third);
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert_eq!(keys[0]["current"], true);
    assert_ne!(text(&keys[0], "/id"), second_id);
    let only = text(&keys[0], "/id").to_string();

    let out = sb
        .call(&["key", "remove", &only])
        .env("SOPVAULT_PASSWORD_FILE", &third)
        .run();
    assert_ne!(out.status.code(), Some(0), "removed the last key");
    assert!(stderr(&out).contains("last key"), "{}", show(&out));
    assert_eq!(sb.repo_files("keys").len(), 1);
    assert_key_files_are_named_by_their_sha256(&sb);
}

#[test]
fn a_machine_secret_opens_the_repository_for_unattended_jobs() {
    let sb = Sandbox::init();
    let src = sb.path("src");
    std::fs::create_dir_all(&src).unwrap();
    write_random_file(&src.join("db.sql"), 41, 3 << 20);
    let secret = sb.path("secret");

    let out = sb
        .call(&[
            "key",
            "add",
            "--secret-file",
            &path_str(&secret),
            "--label",
            "cron",
        ])
        .ok();
    assert!(stdout(&out).contains("machine secret"), "{}", show(&out));
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&secret).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "secret file mode {mode:o}");
    let secret_text = std::fs::read_to_string(&secret).unwrap();
    assert!(
        secret_text.starts_with("sopvault-secret-v1:") && secret_text.len() == 19 + 64 + 1,
        "{secret_text:?}"
    );

    // Never overwritten: a second add into the same file fails and leaves it alone.
    let out = sb
        .call(&["key", "add", "--secret-file", &path_str(&secret)])
        .run();
    assert_eq!(out.status.code(), Some(exit::USAGE), "{}", show(&out));
    assert_eq!(std::fs::read_to_string(&secret).unwrap(), secret_text);

    // The secret alone backs up and restores, byte for byte.
    sb.call(&["snapshot", "--source", "db", &path_str(&src)])
        .env("SOPVAULT_PASSWORD_FILE", &secret)
        .ok();
    let target = sb.path("restored");
    sb.call(&["restore", "latest", "--target", &path_str(&target)])
        .env("SOPVAULT_PASSWORD_FILE", &secret)
        .ok();
    assert!(same_file_content(
        &src.join("db.sql"),
        &restored_path(&target, &src.join("db.sql"))
    ));
    let keys = key_list(&sb, &secret);
    assert_eq!(keys.len(), 2, "{keys:?}");
    let current: Vec<&Value> = keys.iter().filter(|k| k["current"] == true).collect();
    assert_eq!(text(current[0], "/kind"), "machine-secret");
    assert_eq!(text(current[0], "/label"), "cron");
    assert!(current[0]["argon2id"].is_null());
    // A secret has no password to change.
    sb.call(&["key", "passwd"])
        .env("SOPVAULT_PASSWORD_FILE", &secret)
        .code(exit::USAGE);

    // `snapshots` opened with the secret in `file`: exits `code`, stderr says `says`.
    let listing_fails = |file: &Path, code: i32, says: &str| {
        let out = sb
            .call(&["snapshots"])
            .env("SOPVAULT_PASSWORD_FILE", file)
            .code(code);
        assert!(stderr(&out).contains(says), "{}", show(&out));
    };
    let private_file = |name: &str, text: &str| {
        let path = sb.write(name, text.as_bytes());
        chmod(&path, 0o600);
        path
    };

    // A readable secret file is refused; so is a cut-off one, naming it.
    chmod(&secret, 0o644);
    listing_fails(&secret, exit::USAGE, "chmod 600");
    chmod(&secret, 0o600);
    let cut = private_file("secret-cut", &secret_text[..40]);
    listing_fails(&cut, exit::USAGE, "malformed machine secret");

    // Another secret is a wrong password; a passphrase may not look like a secret.
    let head = &secret_text[19..23];
    let other = secret_text.replacen(head, if head == "0000" { "1111" } else { "0000" }, 1);
    let other = private_file("secret-other", &other);
    listing_fails(&other, exit::WRONG_PASSWORD, "machine secret (1 key file");
    sb.call(&["key", "add"])
        .env("SOPVAULT_NEW_PASSWORD_FILE", &other)
        .code(exit::USAGE);

    // Revoked with `key remove`, through the password.
    let id = text(current[0], "/id").to_string();
    sb.call(&["key", "remove", &id[..8]]).ok();
    sb.call(&["snapshots"])
        .env("SOPVAULT_PASSWORD_FILE", &secret)
        .code(exit::WRONG_PASSWORD);
    sb.call(&["check"]).ok();
    assert_key_files_are_named_by_their_sha256(&sb);
}

fn assert_key_files_are_named_by_their_sha256(sb: &Sandbox) {
    for f in sb.repo_files("keys") {
        let name = f.file_name().unwrap().to_str().unwrap();
        assert_eq!(sha256_hex(&std::fs::read(&f).unwrap()), name);
    }
}

fn ls_paths(out: &std::process::Output) -> BTreeSet<String> {
    stdout(out)
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}"));
            assert!(v["type"].is_string() && v["mode"].is_string() && v["size"].is_u64());
            text(&v, "/path").to_string()
        })
        .collect()
}

#[test]
fn snapshot_names_selectors_tags_excludes_and_includes() {
    let sb = Sandbox::init();
    let src = sb.path("src");
    let s = path_str(&src);
    sb.write("src/a.txt", b"alpha v1\n");
    sb.write("src/b.log", b"excluded by name\n");
    sb.write("src/keep/c.txt", b"kept\n");
    sb.write("src/skip/d.txt", b"excluded by path\n");
    sb.write("src/sub/e.tmp", b"excluded by the exclude file\n");
    sb.write("src/sub/f.txt", b"f\n");
    sb.write("src/sub/deeper/g.log", b"excluded by name, deep\n");
    let excludes = sb.write(
        "excludes",
        format!("# comment\n*.tmp\n\n{s}/skip\n").as_bytes(),
    );
    let time = "2026-03-01T10:00:00+07:00";
    let snapshot = |tag: &str| {
        sb.json(&[
            "snapshot",
            "--source",
            "web",
            "--time",
            time,
            "--tag",
            tag,
            "--tag",
            "daily",
            "--exclude",
            "*.log",
            "--exclude-file",
            &path_str(&excludes),
            "--json",
            &s,
        ])
    };

    let first = snapshot("before");
    assert_eq!(text(&first, "/name"), "web_2026-03-01");
    assert_eq!(text(&first, "/time"), time);
    assert_eq!(first["tags"], serde_json::json!(["before", "daily"]));
    let expected: BTreeSet<String> = [
        "",
        "/a.txt",
        "/keep",
        "/keep/c.txt",
        "/sub",
        "/sub/deeper",
        "/sub/f.txt",
    ]
    .iter()
    .map(|p| format!("{s}{p}"))
    .collect();
    let out = sb.ok(&["ls", "web_2026-03-01", &s, "--json"]);
    assert_eq!(ls_paths(&out), expected);

    std::fs::write(src.join("a.txt"), b"alpha v2, longer\n").unwrap();
    let second = snapshot("after");
    assert_eq!(text(&second, "/name"), "web_2026-03-01-2");
    sb.ok(&[
        "snapshot",
        "--source",
        "other",
        "--time",
        "2026-03-02T08:00:00Z",
        "--stream",
        "note=printf other",
    ]);
    let web = sb.json(&["snapshots", "--source", "web", "--json"]);
    assert_eq!(web.as_array().unwrap().len(), 2);
    assert_eq!(web[1]["tags"], serde_json::json!(["after", "daily"]));

    let a = format!("{s}/a.txt");
    let first_id = &text(&first, "/id")[..10];
    let second_id = &text(&second, "/id")[..8];
    for (spec, want) in [
        ("web:latest", &b"alpha v2, longer\n"[..]),
        ("web_2026-03-01", b"alpha v1\n"),
        ("web_2026-03-01-2", b"alpha v2, longer\n"),
        (first_id, b"alpha v1\n"),
    ] {
        let out = sb.ok(&["cat", spec, &a]);
        assert_eq!(out.stdout, want, "cat {spec} {a}");
    }
    assert_eq!(sb.ok(&["cat", "latest", "note"]).stdout, b"other");
    let out = sb.ok(&["ls", "web:latest", &a, "--json"]);
    assert_eq!(ls_paths(&out), BTreeSet::from([a.clone()]));
    let out = sb.ok(&["ls", "latest", "--json"]);
    assert_eq!(ls_paths(&out), BTreeSet::from(["/note".to_string()]));
    let out = sb.ok(&["ls", second_id, &format!("{s}/keep"), "--json"]);
    assert_eq!(
        ls_paths(&out),
        BTreeSet::from([format!("{s}/keep"), format!("{s}/keep/c.txt")])
    );

    let t1 = sb.path("t1");
    sb.ok(&[
        "restore",
        "web:latest",
        "--target",
        &path_str(&t1),
        "--include",
        &format!("{s}/keep"),
    ]);
    let got = list_tree(&restored_path(&t1, &src));
    assert_eq!(
        got,
        BTreeSet::from([PathBuf::from("keep"), PathBuf::from("keep/c.txt")])
    );
    let t2 = sb.path("t2");
    sb.ok(&["restore", first_id, "--target", &path_str(&t2)]);
    let root2 = restored_path(&t2, &src);
    assert_eq!(std::fs::read(root2.join("a.txt")).unwrap(), b"alpha v1\n");
    assert_eq!(list_tree(&root2).len(), expected.len() - 1);
    let t3 = sb.path("t3");
    sb.ok(&[
        "restore",
        "web_2026-03-01-2",
        "--target",
        &path_str(&t3),
        "--include",
        &format!("{s}/sub/f.txt"),
    ]);
    let got = list_tree(&restored_path(&t3, &src));
    assert_eq!(
        got,
        BTreeSet::from([PathBuf::from("sub"), PathBuf::from("sub/f.txt")])
    );
    let t4 = sb.path("t4");
    sb.ok(&["restore", "latest", "--target", &path_str(&t4)]);
    assert_eq!(std::fs::read(t4.join("note")).unwrap(), b"other");
    assert_eq!(list_tree(&t4).len(), 1);
}

#[test]
fn unreadable_file_gives_an_incomplete_snapshot() {
    let mut sb = Sandbox::init();
    sb.write("src/ok.txt", b"readable\n");
    let secret = sb.write("src/secret.txt", b"nobody may read this\n");
    let closed = sb.path("src/closed");
    std::fs::create_dir(&closed).unwrap();
    sb.write("src/closed/inner.txt", b"behind a closed door\n");
    if is_root() {
        // Root reads everything: run sopvault as nobody, with the sandbox handed over to it.
        chown_tree(&sb.root, 65534, 65534);
        std::os::unix::fs::lchown(&secret, Some(0), Some(0)).unwrap();
        std::os::unix::fs::lchown(&closed, Some(0), Some(0)).unwrap();
        sb.run_as(65534, 65534);
    }
    // Day 1 reads everything; on day 2 two paths are closed.
    let src = sb.arg("src");
    sb.ok(&[
        "snapshot",
        "-q",
        "--source",
        "s",
        "--time",
        "2026-11-01T02:00:00Z",
        &src,
    ]);
    chmod(&secret, 0o000);
    chmod(&closed, 0o000);

    let out = sb.code(
        &[
            "snapshot",
            "--source",
            "s",
            "--time",
            "2026-11-02T02:00:00Z",
            &src,
        ],
        exit::INCOMPLETE,
    );
    assert!(stderr(&out).contains("incomplete"), "{}", show(&out));
    let snaps = sb.snapshots();
    assert_eq!(snaps.len(), 2);
    assert_eq!(snaps[0]["complete"], Value::Bool(true));
    assert_eq!(snaps[1]["complete"], Value::Bool(false));
    let errors = snaps[1]["summary"]["errors"].to_string();
    assert!(errors.contains("secret.txt"), "errors: {errors}");
    assert!(errors.contains("closed"), "errors: {errors}");
    // Reading the incomplete one works, with a warning that names the newest complete one.
    let out = sb.ok(&["cat", "latest", &sb.arg("src/ok.txt")]);
    assert_eq!(out.stdout, b"readable\n");
    let day1 = text(&snaps[0], "/name").to_string();
    let warning = format!("is incomplete: 2 path(s) could not be read when it was taken; the newest complete one of its source is {day1}");
    assert!(stderr(&out).contains(&warning), "{}", show(&out));
    let out = sb.ok(&["restore", "s:latest", "--target", &sb.arg("t1")]);
    assert!(stderr(&out).contains(&warning), "{}", show(&out));
    assert!(!restored_path(&sb.path("t1"), &secret).exists());
    // `latest-complete` picks day 1, which has every file.
    let out = sb.ok(&["restore", "s:latest-complete", "--target", &sb.arg("t2")]);
    assert!(!stderr(&out).contains("incomplete"), "{}", show(&out));
    let restored = restored_path(&sb.path("t2"), &secret);
    assert_eq!(std::fs::symlink_metadata(&restored).unwrap().len(), 21);
    let restored_closed = restored_path(&sb.path("t2"), &closed);
    chmod(&restored_closed, 0o755); // restored with its recorded mode, 000
    assert!(restored_closed.join("inner.txt").exists());
    let out = sb.code(
        &[
            "restore",
            "nosuch:latest-complete",
            "--target",
            &sb.arg("t3"),
        ],
        exit::USAGE,
    );
    assert!(
        stderr(&out).contains("no complete snapshot of source \"nosuch\""),
        "{}",
        show(&out)
    );
    // A damaged manifest is skipped with one warning, though naming the
    // newest complete snapshot lists the snapshots a second time.
    let junk = b"not a manifest".to_vec();
    let junk_path = sb.repo.join("snapshots").join(sha256_hex(&junk));
    std::fs::write(&junk_path, &junk).unwrap();
    let out = sb.ok(&["cat", "s:latest", &sb.arg("src/ok.txt")]);
    assert!(stderr(&out).contains(&warning), "{}", show(&out));
    assert_eq!(
        stderr(&out).matches("skipped:").count(),
        1,
        "{}",
        show(&out)
    );
    std::fs::remove_file(&junk_path).unwrap();
    chmod(&closed, 0o755);
}

#[test]
fn a_foreign_exclusive_lock_blocks_until_removed() {
    let sb = Sandbox::init();
    let lock = sb.repo.join("locks/x.lock");
    std::fs::write(
        &lock,
        br#"{"exclusive":true,"host":"otherhost","pid":1,"user":"u","time":"t","command":"prune"}"#,
    )
    .unwrap();
    let args = ["snapshot", "--source", "s", "--stream", "a=echo a"];
    let out = sb.code(&args, exit::LOCKED);
    let err = stderr(&out);
    assert!(
        err.contains("locked") && err.contains("prune") && err.contains("otherhost"),
        "{}",
        show(&out)
    );
    assert_eq!(err.trim_end().lines().count(), 1, "{}", show(&out));

    // A lock of another host is not stale: plain `unlock` keeps it.
    let out = sb.ok(&["unlock"]);
    assert!(stdout(&out).contains("kept lock x.lock"), "{}", show(&out));
    assert!(lock.exists());
    sb.ok(&["unlock", "--remove-all"]);
    assert!(!lock.exists());
    sb.ok(&args);
    assert_eq!(sb.snapshots().len(), 1);
}

/// Waits until a spawned `sopvault` holds its repository lock, i.e. is past opening.
fn wait_for_lock(sb: &Sandbox, child: &mut std::process::Child) {
    let started = Instant::now();
    while std::fs::read_dir(sb.repo.join("locks")).unwrap().count() == 0 {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("sopvault ended ({status}) before taking its lock");
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no lock after 60 s"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn interrupted_snapshot_exits_130_and_releases_its_lock() {
    let sb = Sandbox::init();
    // Endless enough: 20 GB of zeros take far longer than the test waits.
    let args = [
        "snapshot",
        "--source",
        "z",
        "--stream",
        "zeros=head -c 20000000000 /dev/zero",
    ];
    for signal in [libc::SIGINT, libc::SIGTERM] {
        let mut child = sb.call(&args).spawn();
        wait_for_lock(&sb, &mut child);
        std::thread::sleep(Duration::from_millis(300));
        assert!(
            child.try_wait().unwrap().is_none(),
            "the snapshot ended early"
        );
        send_signal(child.id() as i32, signal);
        let status = wait_at_most(&mut child, Duration::from_secs(30));
        let err = child_stderr(&mut child);
        assert_eq!(status.code(), Some(130), "signal {signal}: {status}\n{err}");
        assert!(err.contains("interrupted"), "{err}");
        assert_eq!(
            std::fs::read_dir(sb.repo.join("locks")).unwrap().count(),
            0,
            "an interrupted run left its lock"
        );
    }
    assert!(
        sb.snapshots().is_empty(),
        "an interrupted run left a snapshot"
    );
    sb.ok(&["check"]);
}

#[test]
fn ctrl_c_during_a_stream_exits_130() {
    let sb = Sandbox::init();
    let mut child = sb
        .call(&["snapshot", "--source", "db", "--stream", "dump=sleep 30"])
        .own_process_group()
        .spawn();
    wait_for_lock(&sb, &mut child);
    std::thread::sleep(Duration::from_millis(300));
    // What a terminal does on Ctrl-C: signal the whole foreground job.
    send_signal(-(child.id() as i32), libc::SIGINT);
    let status = wait_at_most(&mut child, Duration::from_secs(30));
    let err = child_stderr(&mut child);
    assert_eq!(status.code(), Some(130), "{status}\n{err}");
    assert!(sb.snapshots().is_empty());
}

#[test]
fn sigint_to_sopvault_alone_stops_a_silent_stream_command_promptly() {
    let sb = Sandbox::init();
    let mut child = sb
        .call(&["snapshot", "--source", "db", "--stream", "dump=sleep 30"])
        .own_process_group()
        .spawn();
    wait_for_lock(&sb, &mut child);
    std::thread::sleep(Duration::from_millis(300));
    let sent = std::time::Instant::now();
    // Only sopvault gets the signal; the dump command writes nothing and
    // would otherwise keep the read blocked for 30 seconds.
    send_signal(child.id() as i32, libc::SIGINT);
    let status = wait_at_most(&mut child, Duration::from_secs(20));
    let err = child_stderr(&mut child);
    assert_eq!(status.code(), Some(130), "{status}\n{err}");
    assert!(
        sent.elapsed() < Duration::from_secs(5),
        "took {:?} to stop",
        sent.elapsed()
    );
    assert!(sb.snapshots().is_empty());
    sb.ok(&["check"]);
}

#[test]
fn restore_does_not_write_through_a_symlink_in_the_target() {
    let sb = Sandbox::init();
    let outside = sb.path("outside");
    std::fs::create_dir(&outside).unwrap();
    let src = sb.path("src");
    std::fs::create_dir(&src).unwrap();
    std::os::unix::fs::symlink(&outside, src.join("a")).unwrap();
    sb.ok(&["snapshot", "--source", "one", &path_str(&src)]);
    std::fs::remove_file(src.join("a")).unwrap();
    sb.write("src/a/f", b"must stay inside the target\n");
    sb.ok(&["snapshot", "--source", "two", &path_str(&src)]);

    let target = sb.path("target");
    sb.ok(&["restore", "one:latest", "--target", &path_str(&target)]);
    let out = sb.run(&["restore", "two:latest", "--target", &path_str(&target)]);
    assert!(
        !outside.join("f").exists(),
        "restore wrote {} outside the target\n{}",
        outside.join("f").display(),
        show(&out)
    );
    if out.status.success() {
        let a = restored_path(&target, &src.join("a"));
        assert!(std::fs::symlink_metadata(&a).unwrap().is_dir());
        assert_eq!(
            std::fs::read(a.join("f")).unwrap(),
            b"must stay inside the target\n"
        );
    }
}

/// A stream with more new chunks than a snapshot keeps in memory: the ids
/// it added spill to unnamed files in the cache directory, and the second
/// copy of its data, which comes after the spill, is found there and stored
/// no second time. (Small chunks, from a repository made through the
/// library, give the 16384+ chunks from a few MB.)
#[test]
fn ids_spilled_to_disk_still_deduplicate_the_rest_of_the_run() {
    use sopvault::chunker::ChunkerProfile;
    use sopvault::crypto::Password;
    use sopvault::format::keyfile::KdfParams;
    use sopvault::repo::{InitOptions, OpenOptions, Repository};
    let sb = Sandbox::new();
    let opts = InitOptions {
        chunker: ChunkerProfile {
            min: 64,
            avg: 256,
            max: 1024,
        },
        kdf: KdfParams::CHEAPEST,
        ..InitOptions::default()
    };
    let open = OpenOptions {
        cache_dir: Some(sb.cache.clone()),
        ..OpenOptions::default()
    };
    Repository::init(&sb.repo, &Password::new(PASSWORD.into()), &opts, &open).unwrap();
    let half = random_bytes(11, 8 << 20);
    let dump = sb.write("dump.bin", &[&half[..], &half[..]].concat());

    let snap = sb.json(&[
        "snapshot",
        "--source",
        "db",
        "--json",
        "--stream",
        &format!("db.bin=cat '{}'", path_str(&dump)),
    ]);
    let chunks = snap["summary"]["chunks_added"].as_u64().unwrap();
    let bytes = snap["summary"]["bytes_added"].as_u64().unwrap();
    // The first half alone spills: 16384 ids are about 5 MB of it.
    assert!(chunks > 20_000, "too few chunks to spill: {snap}");
    // New bytes: the first half, its chunk lists (35 bytes a chunk) and
    // the few chunks that straddle the seam; a second copy would double it.
    assert!(
        bytes < half.len() as u64 * 3 / 2,
        "the second copy was stored again: {bytes} new bytes for a {} byte half",
        half.len()
    );
    // The spill files had no name: nothing is left beside the index cache.
    let left: Vec<_> = std::fs::read_dir(&sb.cache)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().starts_with('.'))
        .collect();
    assert!(left.is_empty(), "left in the cache directory: {left:?}");
    let out = sb.ok(&["cat", "latest", "db.bin"]);
    assert!(
        out.stdout == std::fs::read(&dump).unwrap(),
        "cat: the stream differs"
    );
    sb.ok(&["check", "--read-data"]);
}

/// Runs `sopvault` under `umask 000`.
fn umask_000() -> Vec<std::ffi::OsString> {
    ["/bin/sh", "-c", "umask 000; exec \"$0\" \"$@\""]
        .iter()
        .map(Into::into)
        .collect()
}

/// Every directory and file below (and including) `dir`: path, permission bits, whether a directory.
fn modes_below(dir: &Path) -> Vec<(PathBuf, u32, bool)> {
    std::iter::once(dir.to_path_buf())
        .chain(list_tree(dir).into_iter().map(|rel| dir.join(rel)))
        .map(|p| {
            let md = std::fs::symlink_metadata(&p).unwrap();
            (p, md.mode() & 0o7777, md.is_dir())
        })
        .collect()
}

/// The index cache file of the sandbox's repository below `cache`.
fn index_cache_file(cache: &Path) -> PathBuf {
    list_tree(cache)
        .into_iter()
        .map(|rel| cache.join(rel))
        .find(|p| p.file_name() == Some(OsStr::new("index.cache")))
        .unwrap_or_else(|| panic!("no index.cache below {}", cache.display()))
}

#[test]
fn issue20_11_cache_and_repository_are_private_under_umask_000() {
    let sb = Sandbox::new();
    let cache = sb.path("fresh/cache");
    let run = |args: &[&str]| {
        sb.call(args)
            .env("SOPVAULT_CACHE_DIR", &cache)
            .wrapped(&umask_000())
            .ok()
    };
    run(&["init"]);
    sb.write("src/a.txt", b"private\n");
    run(&["snapshot", "--source", "s", &sb.arg("src")]);
    run(&["restore", "latest", "--target", &sb.arg("target")]);
    let cache_files = modes_below(&sb.path("fresh"));
    assert!(cache_files
        .iter()
        .any(|(p, _, _)| p.ends_with("index.cache")));
    for (p, mode, is_dir) in modes_below(&sb.repo).into_iter().chain(cache_files) {
        // Content-addressed files never change: read-only, as restic's.
        let named_by_hash = p.file_name().is_some_and(|n| n.len() == 64);
        let want = match (is_dir, named_by_hash) {
            (true, _) => 0o700,
            (false, true) => 0o400,
            (false, false) => 0o600,
        };
        assert_eq!(
            mode,
            want,
            "{}: mode {mode:04o}, expected {want:04o}",
            p.display()
        );
    }
}

#[test]
fn issue20_11_a_damaged_index_cache_is_rebuilt_not_trusted() {
    let sb = Sandbox::init();
    let src = sb.path("src");
    sb.write("src/a.bin", &random_bytes(11, 300_000));
    sb.write("src/sub/b.txt", b"bee\n");
    sb.ok(&["snapshot", "--source", "s", &path_str(&src)]);
    // Without a cache, the next run merges every index file into a new one
    // (rather than holding the newest ones in memory on top of it).
    std::fs::remove_file(index_cache_file(&sb.cache)).unwrap();
    sb.ok(&["restore", "latest", "--target", &sb.arg("t1")]);
    // Flip a bit in the id of every entry: a lookup by binary search then
    // misses chunks that the repository holds.
    let cache = index_cache_file(&sb.cache);
    let mut bytes = std::fs::read(&cache).unwrap();
    let u32_at = |o: usize| u32::from_le_bytes(bytes[o..o + 4].try_into().unwrap()) as usize;
    let count = u64::from_le_bytes(bytes[56..64].try_into().unwrap()) as usize;
    assert!(count > 0);
    let entries = 64 + 8 * 65537 + 32 * u32_at(48) + 40 * u32_at(52);
    for i in 0..count {
        bytes[entries + i * 92 + 4 + 20] ^= 0x10;
    }
    std::fs::write(&cache, &bytes).unwrap();

    let target = sb.path("t2");
    let out = sb.ok(&["restore", "latest", "--target", &path_str(&target)]);
    let err = stderr(&out);
    assert!(
        err.contains("warning") && err.contains("index cache") && err.contains("rebuilt"),
        "{}",
        show(&out)
    );
    assert_same_tree(&src, &restored_path(&target, &src), is_root());
    // Rebuilt: the next run trusts it again, without a warning.
    let out = sb.ok(&["restore", "latest", "--target", &sb.arg("t3")]);
    assert!(!stderr(&out).contains("warning"), "{}", show(&out));
}

/// Issue 20, item 10: names that are not UTF-8 (or hold a newline) can be
/// given to `cat`, `restore --include` and an exclude file, as raw bytes or
/// as `ls` prints them; `ls` prints them escaped, one per line, and its JSON
/// carries the exact bytes.
#[test]
fn issue20_10_names_that_are_not_utf8_work_everywhere() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    let sb = Sandbox::init();
    let src = sb.path("src");
    std::fs::create_dir_all(&src).unwrap();
    let latin1 = OsStr::from_bytes(b"caf\xe9.txt");
    let newline = OsStr::from_bytes(b"new\nline.txt");
    let skipped = OsStr::from_bytes(b"skip-\xff.log");
    std::fs::write(src.join(latin1), b"latin-1 name\n").unwrap();
    std::fs::write(src.join(newline), b"newline name\n").unwrap();
    std::fs::write(src.join(skipped), b"excluded\n").unwrap();
    std::fs::write(src.join("plain.txt"), b"plain\n").unwrap();
    let excludes = sb.path("excludes");
    std::fs::write(
        &excludes,
        b"# names in another encoding\r\nskip-\xff.log\r\n",
    )
    .unwrap();
    sb.ok(&[
        "snapshot",
        "--source",
        "names",
        "--exclude-file",
        &path_str(&excludes),
        &path_str(&src),
    ]);
    let dir = path_str(&src);
    // ls: escaped, one line per entry; the excluded file is not there.
    let out = sb.ok(&["ls", "latest", &dir]);
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{}", show(&out));
    assert!(
        lines.contains(&format!("{dir}/caf\\xe9.txt").as_str()),
        "{lines:?}"
    );
    assert!(
        lines.contains(&format!("{dir}/new\\x0aline.txt").as_str()),
        "{lines:?}"
    );
    assert!(!stdout(&out).contains("skip-"), "{}", show(&out));
    // ls --json: the escaped text and the exact bytes.
    let out = sb.ok(&["ls", "--json", "latest", &dir]);
    let mut exact = Vec::new();
    for line in stdout(&out).lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        if let Some(b) = v.get("path_base64") {
            use base64::Engine;
            exact.push(
                base64::engine::general_purpose::STANDARD
                    .decode(b.as_str().unwrap())
                    .unwrap(),
            );
        }
    }
    let mut want = vec![
        [src.as_os_str().as_bytes(), b"/caf\xe9.txt"].concat(),
        [src.as_os_str().as_bytes(), b"/new\nline.txt"].concat(),
    ];
    want.sort();
    exact.sort();
    assert_eq!(exact, want);
    // cat: the raw bytes, and the name as ls printed it.
    let out = sb.call(&["cat", "latest"]).arg_os(src.join(latin1)).ok();
    assert_eq!(out.stdout, b"latin-1 name\n");
    let out = sb.ok(&["cat", "latest", &format!("{dir}/caf\\xe9.txt")]);
    assert_eq!(out.stdout, b"latin-1 name\n");
    let out = sb.call(&["cat", "latest"]).arg_os(src.join(newline)).ok();
    assert_eq!(out.stdout, b"newline name\n");
    // restore --include: only that file comes back, under its exact name.
    let target = sb.path("target");
    sb.call(&[
        "restore",
        "latest",
        "--target",
        &path_str(&target),
        "--include",
    ])
    .arg_os(src.join(latin1))
    .ok();
    let back = restored_path(&target, &src);
    assert_eq!(std::fs::read(back.join(latin1)).unwrap(), b"latin-1 name\n");
    assert!(!back.join(newline).exists() && !back.join("plain.txt").exists());
}

#[test]
fn issue20_3_the_repository_given_as_a_path_is_refused() {
    let sb = Sandbox::init();
    let repo = path_str(&sb.repo);
    for path in [
        repo.clone(),
        format!("{repo}/keys"),
        format!("{repo}/./config"),
    ] {
        let out = sb.code(&["snapshot", "--source", "self", &path], exit::USAGE);
        let err = stderr(&out);
        assert!(
            err.contains("cannot back up") && err.contains("repository"),
            "snapshot of {path}: {err}"
        );
    }
    // Reached through a symlinked directory, it is the same repository.
    std::os::unix::fs::symlink(&sb.repo, sb.path("via")).unwrap();
    sb.code(
        &["snapshot", "--source", "self", &sb.arg("via/keys")],
        exit::USAGE,
    );
    assert!(sb.snapshots().is_empty(), "a refused snapshot was written");
    // Around it, the repository is left out, as before; a symlink to it stays a symlink.
    sb.write("data.txt", b"data\n");
    sb.ok(&["snapshot", "--source", "around", &path_str(&sb.root)]);
    let out = sb.ok(&["ls", "latest", "--json"]);
    let paths = ls_paths(&out);
    assert!(paths.contains(&sb.arg("data.txt")));
    assert!(paths.contains(&sb.arg("via")));
    assert!(
        !paths.iter().any(|p| p.starts_with(&repo)),
        "the repository was backed up: {paths:?}"
    );
    sb.ok(&["snapshot", "--source", "link", &sb.arg("via")]);
    // Around it, reached through a symlinked directory, it is left out too.
    let inner = sb.path("outer/inner");
    let repo2 = inner.join("repo2");
    std::fs::create_dir_all(&inner).unwrap();
    sb.write("outer/inner/data.txt", b"inner\n");
    std::os::unix::fs::symlink(sb.path("outer"), sb.path("alias")).unwrap();
    let in_repo2 = |args: &[&str]| sb.call(args).env("SOPVAULT_REPO", &repo2).ok();
    in_repo2(&["init"]);
    let alias = sb.arg("alias/inner");
    in_repo2(&["snapshot", "--source", "alias", &alias]);
    let paths = ls_paths(&in_repo2(&["ls", "latest", "--json"]));
    assert!(paths.contains(&format!("{alias}/data.txt")), "{paths:?}");
    assert!(
        !paths
            .iter()
            .any(|p| p.starts_with(&format!("{alias}/repo2"))),
        "the repository was backed up through a symlink: {paths:?}"
    );
}

#[test]
fn issue20_9_source_names_are_letters_digits_dot_dash_underscore() {
    let sb = Sandbox::init();
    for bad in [
        "a b",
        " ",
        "",
        "tab\tname",
        "é",
        "a/b",
        "a:b",
        "latest",
        "..",
        "a~b",
        "*",
    ] {
        let out = sb.code(
            &["snapshot", "--source", bad, "--stream", "a=echo a"],
            exit::USAGE,
        );
        assert!(
            stderr(&out).contains("invalid source name"),
            "source {bad:?}: {}",
            stderr(&out)
        );
        let out = sb.code(
            &[
                "snapshot",
                "--source",
                "ok",
                "--stream",
                &format!("{bad}=echo a"),
            ],
            exit::USAGE,
        );
        assert!(
            stderr(&out).contains("invalid stream name"),
            "stream {bad:?}: {}",
            stderr(&out)
        );
    }
    assert!(sb.snapshots().is_empty());
    sb.ok(&[
        "snapshot",
        "--source",
        "Web-1.prod_x",
        "--stream",
        "db.sql=echo a",
    ]);
    assert_eq!(sb.snapshots().len(), 1);
}

/// Runs `args` with standard output into a pipe whose reader takes one line
/// and closes it; returns the exit status and standard error.
fn read_one_line_and_close(sb: &Sandbox, args: &[&str]) -> (std::process::ExitStatus, String) {
    use std::io::BufRead;
    let mut child = sb.call(args).spawn_piped();
    let mut reader = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert!(!line.is_empty(), "`{}` printed nothing", args.join(" "));
    drop(reader);
    let status = wait_at_most(&mut child, Duration::from_secs(60));
    (status, child_stderr(&mut child))
}

#[test]
fn issue20_4_closed_pipe_ends_quietly() {
    let sb = Sandbox::init();
    // Far more output than a pipe holds, so the writer meets the closed pipe.
    let names: Vec<String> = (0..2000)
        .map(|i| {
            sb.write(
                format!("src/a-rather-long-file-name-to-fill-the-pipe-{i:05}.txt"),
                b"x",
            )
            .to_str()
            .unwrap()
            .to_string()
        })
        .collect();
    let mut args = vec!["snapshot", "--source", "many"];
    args.extend(names.iter().map(String::as_str));
    sb.ok(&args);
    let lines = "a line of a dump, one of many\n".repeat(40_000);
    sb.call(&["snapshot", "--source", "dump", "--stdin", "dump.sql"])
        .stdin(lines.as_bytes())
        .ok();
    for args in [
        &["cat", "dump:latest", "dump.sql"][..],
        &["ls", "many:latest"],
        &["ls", "-l", "many:latest"],
        &["ls", "--json", "many:latest"],
        &["snapshots"],
        &["snapshots", "--json"],
    ] {
        let (status, err) = read_one_line_and_close(&sb, args);
        assert_eq!(
            status.code(),
            Some(141),
            "`{}` exited with {status:?}; stderr:\n{err}",
            args.join(" ")
        );
        assert_eq!(err, "", "`{}` wrote to stderr", args.join(" "));
    }
    // Its lock was released: prune's exclusive lock is free.
    assert!(sb.repo_files("locks").is_empty(), "a lock was left behind");
}

#[test]
fn issue20_5_empty_or_closed_stdin_is_no_backup() {
    let sb = Sandbox::init();
    let args = ["snapshot", "--source", "db", "--stdin", "db.sql"];
    // Standard input closed (`<&-`), and empty.
    let closed = [
        OsString::from("/bin/sh"),
        OsString::from("-c"),
        OsString::from("exec \"$0\" \"$@\" <&-"),
    ];
    let out = sb.call(&args).wrapped(&closed).code(exit::STREAM_FAILED);
    assert!(stderr(&out).contains("db.sql"), "{}", show(&out));
    let out = sb.call(&args).stdin(b"").code(exit::STREAM_FAILED);
    assert!(stderr(&out).contains("--allow-empty"), "{}", show(&out));
    let out = sb.code(
        &["snapshot", "--source", "db", "--stream", "db.sql=true"],
        exit::STREAM_FAILED,
    );
    assert!(stderr(&out).contains("wrote nothing"), "{}", show(&out));
    assert!(
        sb.snapshots().is_empty(),
        "a failed stream wrote a snapshot"
    );
    let empty = sb.json(&[&args[..], &["--allow-empty", "--json"]].concat());
    assert_eq!(num(&empty, "/streams/0/bytes"), 0);
    assert_eq!(empty["complete"], Value::Bool(true));
}

#[test]
fn issue20_5_a_stream_much_smaller_than_its_parent_is_warned_about() {
    let sb = Sandbox::init();
    let snap = |bytes: &[u8], extra: &[&str]| {
        let args = [
            &["snapshot", "--source", "db", "--stdin", "db.sql", "--json"][..],
            extra,
        ]
        .concat();
        let out = sb.call(&args).stdin(bytes).ok();
        (parse_json(&out), stderr(&out))
    };
    let (first, err) = snap(&random_bytes(5, 100_000), &[]);
    assert_eq!(first["streams"][0]["shrunk_from"], Value::Null);
    assert!(!err.contains("warning"), "{err}");
    // 60% of the parent: not under half.
    let (second, err) = snap(&random_bytes(6, 60_000), &[]);
    assert_eq!(second["streams"][0]["shrunk_from"], Value::Null);
    assert!(!err.contains("warning"), "{err}");
    // 20% of the parent: warned about on stderr, in the JSON and in the manifest.
    let (third, err) = snap(&random_bytes(7, 12_000), &[]);
    assert_eq!(num(&third, "/streams/0/shrunk_from"), 60_000);
    assert!(
        err.contains("warning: stream \"db.sql\"") && err.contains("20%"),
        "{err}"
    );
    let listed = sb.snapshots();
    assert_eq!(num(&listed[2], "/streams/0/shrunk_from"), 60_000);
    assert_eq!(listed[1]["streams"][0]["shrunk_from"], Value::Null);
    // The text output warns too; the threshold is a flag.
    let out = sb
        .call(&["snapshot", "--source", "db", "--stdin", "db.sql"])
        .stdin(&random_bytes(8, 3_000))
        .ok();
    assert!(stderr(&out).contains("sopvault: warning: stream \"db.sql\""));
    let (quiet, err) = snap(&random_bytes(9, 2_000), &["--shrink-warn", "0.1"]);
    assert_eq!(quiet["streams"][0]["shrunk_from"], Value::Null, "{err}");
    sb.code(
        &[
            "snapshot",
            "--source",
            "db",
            "--stream",
            "a=echo a",
            "--shrink-warn",
            "2",
        ],
        exit::USAGE,
    );
    // Every manifest, with its stream tail or without, still reads and checks.
    sb.ok(&["check"]);
    assert_eq!(
        sb.ok(&["cat", text(&listed[2], "/id"), "db.sql"])
            .stdout
            .len(),
        12_000
    );
}

#[test]
fn issue20_6_snapshots_of_one_source_and_day_have_unique_names() {
    let sb = Sandbox::init();
    // Both runs list the snapshots, then wait in their stream until both are there.
    let run = |tag: &str| {
        let cmd =
            format!("dump=touch ready-{tag}; while [ ! -e go ]; do sleep 0.05; done; printf {tag}");
        sb.call(&[
            "snapshot",
            "--source",
            "db",
            "--time",
            "2026-12-01T02:00:00Z",
            "--stream",
            &cmd,
        ])
        .spawn()
    };
    let mut a = run("a");
    let mut b = run("b");
    let start = Instant::now();
    while !(sb.path("ready-a").exists() && sb.path("ready-b").exists()) {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the runs did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    sb.write("go", b"");
    for c in [&mut a, &mut b] {
        let status = wait_at_most(c, Duration::from_secs(60));
        let err = child_stderr(c);
        assert_eq!(status.code(), Some(0), "{err}");
    }
    let snaps = sb.snapshots();
    let names: BTreeSet<&str> = snaps.iter().map(|s| text(s, "/name")).collect();
    assert_eq!(names.len(), 2, "names are not unique: {names:?}");
    for s in &snaps {
        let name = text(s, "/name");
        assert!(name.starts_with("db_2026-12-01~"), "{name}");
        let out = sb.ok(&["cat", name, "dump"]);
        let id = text(s, "/id");
        assert!(
            name.ends_with(&id[..8]),
            "{name} is not named by its id {id}"
        );
        assert_eq!(sb.ok(&["cat", id, "dump"]).stdout, out.stdout);
    }
    // The name both chose names neither: the error lists both.
    let out = sb.code(&["cat", "db_2026-12-01", "dump"], exit::USAGE);
    for s in &snaps {
        assert!(stderr(&out).contains(text(s, "/name")), "{}", stderr(&out));
    }
    // The text listing shows the unique names; the next snapshot that day goes on counting.
    let listed = stdout(&sb.ok(&["snapshots"]));
    for name in &names {
        assert!(listed.contains(name), "{listed}");
    }
    let third = sb.json(&[
        "snapshot",
        "--source",
        "db",
        "--time",
        "2026-12-01T03:00:00Z",
        "--stream",
        "dump=printf c",
        "--json",
    ]);
    assert_eq!(text(&third, "/name"), "db_2026-12-01-2");
    assert_eq!(sb.ok(&["cat", "db_2026-12-01-2", "dump"]).stdout, b"c");
}

#[test]
fn issue20_8_a_damaged_manifest_named_by_id_or_name_is_damage() {
    let sb = Sandbox::init();
    let time = ["--time", "2026-12-01T02:00:00Z"];
    let web = sb.json(
        &[
            &[
                "snapshot", "--source", "web", "--stream", "a=echo a", "--json",
            ][..],
            &time,
        ]
        .concat(),
    );
    let db = sb.json(
        &[
            &[
                "snapshot", "--source", "db", "--stream", "b=echo b", "--json",
            ][..],
            &time,
        ]
        .concat(),
    );
    let id = text(&db, "/id").to_string();
    let file = sb.repo.join("snapshots").join(&id);
    let mut bytes = std::fs::read(&file).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x40;
    chmod(&file, 0o644);
    std::fs::write(&file, &bytes).unwrap();
    for spec in [&id[..], &id[..8], "db_2026-12-01"] {
        let out = sb.code(&["cat", spec, "b"], exit::DAMAGED);
        let err = stderr(&out);
        assert!(
            err.contains(&format!("snapshots/{id}")) && err.contains("damaged"),
            "cat {spec}: {err}"
        );
        assert!(!err.contains("no snapshot matches"), "{err}");
        assert_eq!(
            err.lines().filter(|l| l.contains("error")).count(),
            1,
            "{err}"
        );
        sb.code(&["ls", spec], exit::DAMAGED);
    }
    // The readable one is found as before.
    assert_eq!(sb.ok(&["cat", text(&web, "/name"), "a"]).stdout, b"a\n");
}

/// Tree packs (pack kind 1 in the header), by path.
fn tree_packs(sb: &Sandbox) -> BTreeSet<PathBuf> {
    sb.repo_files("packs")
        .into_iter()
        .filter(|p| {
            let b = std::fs::read(p).unwrap();
            b.len() > 16 && b[12..16] == [1, 0, 0, 0]
        })
        .collect()
}

/// Flips a bit in every 16th byte of a pack's blobs (format-spec §11:
/// header(16) | blobs | footer | trailer(16) with the footer's length first),
/// so that every blob in it fails authentication while its footer still reads.
fn damage_every_blob(pack: &Path) {
    let mut b = std::fs::read(pack).unwrap();
    let footer_len = u32::from_le_bytes(b[b.len() - 16..b.len() - 12].try_into().unwrap());
    let blobs_end = b.len() - 16 - footer_len as usize;
    for i in (16..blobs_end).step_by(16) {
        b[i] ^= 0x04;
    }
    chmod(pack, 0o600);
    std::fs::write(pack, b).unwrap();
}

#[test]
fn issue20_1_a_damaged_tree_blob_fails_only_its_directory() {
    let sb = Sandbox::init();
    let src = sb.path("src");
    sb.write("src/old/a.txt", b"old a\n");
    sb.write("src/old/sub/b.txt", b"old b\n");
    sb.ok(&["snapshot", "--source", "s", &path_str(&src)]);
    let first = tree_packs(&sb);
    // The second snapshot shares the trees of old/ (unchanged) with the first;
    // every other tree of it is new, so in a new tree pack.
    sb.write("src/keep.txt", b"keep\n");
    sb.write("src/new/c.bin", &random_bytes(21, 200_000));
    sb.write("src/zz.txt", b"after old in name order\n");
    sb.ok(&["snapshot", "--source", "s", &path_str(&src)]);
    assert!(tree_packs(&sb).len() > first.len(), "no new tree pack");
    for p in &first {
        damage_every_blob(p);
    }
    let old = format!("{}/old", path_str(&src));

    let target = sb.path("target");
    let out = sb.code(
        &["restore", "latest", "--target", &path_str(&target)],
        exit::DAMAGED,
    );
    let err = stderr(&out);
    let named: Vec<&str> = err.lines().filter(|l| l.contains(&old)).collect();
    assert_eq!(named.len(), 1, "{}", show(&out));
    assert!(named[0].contains("not restored"), "{}", show(&out));
    let restored = restored_path(&target, &src);
    for f in ["keep.txt", "new/c.bin", "zz.txt"] {
        assert!(
            same_file_content(&src.join(f), &restored.join(f)),
            "{f} was not restored\n{}",
            show(&out)
        );
    }
    assert!(!restored.join("old").exists());

    let out = sb.code(&["ls", "latest"], exit::DAMAGED);
    let listed = stdout(&out);
    for f in ["keep.txt", "new/c.bin", "zz.txt", "old"] {
        assert!(
            listed
                .lines()
                .any(|l| l == format!("{}/{f}", path_str(&src))),
            "{f} not listed\n{}",
            show(&out)
        );
    }
    assert!(!listed.contains("a.txt"), "{}", show(&out));
    let err = stderr(&out);
    assert!(
        err.lines()
            .any(|l| l.contains(&old) && l.contains("not listed")),
        "{}",
        show(&out)
    );
}
