//! One conformance suite that every backend passes: the contract written at
//! the top of `src/backend/mod.rs`, checked against a local directory, the
//! memory backend, a faulty backend told to fail nothing, and a real
//! S3-compatible server when `SOPVAULT_TEST_BUCKET` names a bucket there
//! (`scripts/test.sh` starts one; without it the S3 case is skipped with a
//! note, and fails under `SOPVAULT_STRICT=1`).
//!
//! Each backend comes with a way to plant a file at a raw relative path, so
//! that the suite can feed `list` stray names.

use super::names::{rel_path, README_NAME};
use super::s3::S3Backend;
use super::{Backend, FaultyBackend, FileKind, LocalBackend, MemoryBackend};
use crate::ErrorKind;
use std::sync::Arc;

fn sha(bytes: &[u8]) -> String {
    hex::encode(crate::ids::sha256(bytes))
}

/// Puts bytes at a relative path of the backend under test, bypassing it.
type Plant<'a> = &'a dyn Fn(&str, &[u8]);

fn conformance(b: &dyn Backend, plant: Plant) {
    assert!(b.read_readme().unwrap().is_none(), "{}", b.location());
    assert!(b.all_files().unwrap().is_empty(), "{}", b.location());
    b.create("readme\n").unwrap();
    assert_eq!(b.read_readme().unwrap().unwrap(), b"readme\n");
    // A second create refuses a place that is not empty.
    assert_eq!(b.create("again\n").unwrap_err().kind(), ErrorKind::Usage);
    whole_files(b);
    missing_and_removed_files(b);
    staged_files(b);
    locks(b);
    stray_names_are_skipped(b, plant);
}

fn whole_files(b: &dyn Backend) {
    let data = b"pack bytes, not really".repeat(1000);
    let name = sha(&data);
    b.write_new(FileKind::Pack, &name, &data).unwrap();
    // Same name, same bytes: a second write is a no-op; and whatever a
    // second write holds, it never replaces the file.
    b.write_new(FileKind::Pack, &name, &data).unwrap();
    b.write_new(FileKind::Pack, &name, b"other bytes").unwrap();
    assert_eq!(b.read(FileKind::Pack, &name).unwrap(), data);
    assert_eq!(b.size(FileKind::Pack, &name).unwrap(), data.len() as u64);
    assert_eq!(
        b.read_range(FileKind::Pack, &name, 5, 10).unwrap(),
        &data[5..15]
    );
    // Reading past the end is damage, not a short read.
    let e = b
        .read_range(FileKind::Pack, &name, data.len() as u64 - 4, 10)
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Damaged, "{e}");
    assert_eq!(
        b.list(FileKind::Pack).unwrap(),
        vec![(name.clone(), data.len() as u64)]
    );
    // Packs live under packs/hh/, like on disk.
    let rel = format!("packs/{}/{name}", &name[..2]);
    assert_eq!(rel, rel_path(FileKind::Pack, &name));
    let all = b.all_files().unwrap();
    assert!(all.iter().any(|(p, _)| *p == rel), "{all:?}");
}

fn missing_and_removed_files(b: &dyn Backend) {
    // A missing file is damage that names the object.
    let missing = sha(b"nothing");
    let e = b.read(FileKind::Index, &missing).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Damaged, "{e}");
    assert!(e.to_string().contains(&missing), "{e}");

    let small = b"index".to_vec();
    let iname = sha(&small);
    b.write_new(FileKind::Index, &iname, &small).unwrap();
    b.write_new(FileKind::Snapshot, &sha(b"s1"), b"s1").unwrap();
    b.write_new(FileKind::Snapshot, &sha(b"s2"), b"s2").unwrap();
    let mut both = vec![(sha(b"s1"), 2), (sha(b"s2"), 2)];
    both.sort();
    assert_eq!(b.list(FileKind::Snapshot).unwrap(), both);
    b.remove_many(FileKind::Snapshot, &[sha(b"s1"), sha(b"s2")])
        .unwrap();
    assert!(b.list(FileKind::Snapshot).unwrap().is_empty());
    b.remove(FileKind::Index, &iname).unwrap();
    assert!(b.list(FileKind::Index).unwrap().is_empty());
    // A prune directory may be absent.
    assert!(b.list(FileKind::Prune).unwrap().is_empty());
}

/// A staged file (where the backend has them) is invisible until
/// committed, then reads as one; committing the same name again keeps
/// the file; a staged file dropped unfinished leaves nothing behind.
fn staged_files(b: &dyn Backend) {
    const MIB: usize = 1024 * 1024;
    let big = crate::testutil::noise(3 * MIB + 5, 7);
    let big_name = sha(&big);
    let Some(mut st) = b.stage_new(FileKind::Pack).unwrap() else {
        return;
    };
    for part in big[..3 * MIB].chunks(700 * 1024) {
        st.append(part).unwrap();
    }
    assert_eq!(st.written(), 3 * MIB as u64);
    let listed = b.list(FileKind::Pack).unwrap();
    assert!(!listed.iter().any(|(n, _)| *n == big_name));
    st.commit(&big_name, &big[3 * MIB..]).unwrap();
    assert_eq!(b.read(FileKind::Pack, &big_name).unwrap(), big);
    let mut again = b.stage_new(FileKind::Pack).unwrap().unwrap();
    again.append(&big[..10]).unwrap();
    again.commit(&big_name, &big[10..]).unwrap();
    assert_eq!(b.read(FileKind::Pack, &big_name).unwrap(), big);
    let before = b.all_files().unwrap();
    let mut dropped = b.stage_new(FileKind::Pack).unwrap().unwrap();
    dropped.append(&big[..2 * MIB]).unwrap();
    drop(dropped);
    assert_eq!(b.all_files().unwrap(), before);
    b.remove(FileKind::Pack, &big_name).unwrap();
}

/// Locks are ephemeral and never listed as repository files.
fn locks(b: &dyn Backend) {
    b.write_lock("0123456789abcdef.lock", b"{}").unwrap();
    assert_eq!(b.list_locks().unwrap(), vec!["0123456789abcdef.lock"]);
    assert_eq!(b.read_lock("0123456789abcdef.lock").unwrap(), b"{}");
    for kind in FileKind::ALL {
        let names = b.list(kind).unwrap();
        assert!(!names.iter().any(|(n, _)| n.contains("lock")), "{names:?}");
    }
    b.remove_lock("0123456789abcdef.lock").unwrap();
    b.remove_lock("0123456789abcdef.lock").unwrap();
    assert!(b.list_locks().unwrap().is_empty());
    assert_eq!(b.clean_tmp().unwrap(), 0);
}

/// Names that are no repository file's are skipped and counted, never
/// listed: a caller parses every listed name as an id.
fn stray_names_are_skipped(b: &dyn Backend, plant: Plant) {
    let good = sha(b"a real index file");
    let pack = sha(b"a misplaced pack");
    let other_hh = if pack.starts_with("00") { "01" } else { "00" };
    b.write_new(FileKind::Index, &good, b"a real index file")
        .unwrap();
    let strays = [
        "index/README".to_string(),
        "index/abc".to_string(),
        format!("index/{}", good.to_uppercase()),
        format!("index/{good}.tmp"),
        format!("index/{}", &good[1..]),
        format!("packs/{other_hh}/{pack}"),
        format!("snapshots/{good}-copy"),
    ];
    let packs = b.list(FileKind::Pack).unwrap();
    let skipped_before = b.skipped_names();
    for rel in &strays {
        plant(rel, b"stray");
    }
    let index = b.list(FileKind::Index).unwrap();
    assert_eq!(index, vec![(good.clone(), 17)], "{}", b.location());
    assert_eq!(b.list(FileKind::Pack).unwrap(), packs);
    assert!(b.list(FileKind::Snapshot).unwrap().is_empty());
    assert!(
        b.skipped_names() >= skipped_before + strays.len() as u64,
        "{}: {} names skipped, {} strays",
        b.location(),
        b.skipped_names() - skipped_before,
        strays.len()
    );
    for (kind, names) in FileKind::ALL.map(|k| (k, b.list(k).unwrap())) {
        for (name, _) in names {
            assert!(super::names::is_valid_name(&name), "{kind:?}: {name}");
        }
    }
    // Everything is still in the full listing, which mirrors verify.
    let all = b.all_files().unwrap();
    assert!(all.iter().any(|(p, _)| *p == README_NAME), "{all:?}");
    for rel in &strays {
        assert!(all.iter().any(|(p, _)| p == rel), "{rel}: {all:?}");
    }
}

fn plant_in_dir(root: &std::path::Path) -> impl Fn(&str, &[u8]) + '_ {
    move |rel, bytes| {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, bytes).unwrap();
    }
}

#[test]
fn a_local_directory_keeps_the_backend_contract() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("repo");
    let b = LocalBackend::new(&root);
    conformance(&b, &plant_in_dir(&root));
    // The suite checks staged files only where a backend has them: this one must.
    assert!(b.stage_new(FileKind::Pack).unwrap().is_some());
    assert_eq!(b.local_root(), Some(root.as_path()));
}

#[test]
fn the_memory_backend_keeps_the_backend_contract() {
    let b = MemoryBackend::new();
    conformance(&b, &|rel, bytes| b.put_raw(rel, bytes));
    assert!(b.stage_new(FileKind::Pack).unwrap().is_some());
    assert!(b.local_root().is_none());
}

#[test]
fn a_faulty_backend_without_faults_keeps_the_backend_contract() {
    let memory = MemoryBackend::new();
    let b = FaultyBackend::over_memory(memory.clone());
    conformance(&b, &|rel, bytes| memory.put_raw(rel, bytes));
    assert!(b.ops() > 50, "{} operations counted", b.ops());
    assert!(b.fired().is_empty());
}

#[test]
fn a_faulty_backend_over_a_directory_keeps_the_backend_contract() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("repo");
    let b = FaultyBackend::new(Arc::new(LocalBackend::new(&root)));
    conformance(&b, &plant_in_dir(&root));
}

#[test]
fn an_s3_bucket_keeps_the_backend_contract() {
    let (Ok(_), Ok(bucket)) = (
        std::env::var("AWS_ENDPOINT_URL"),
        std::env::var("SOPVAULT_TEST_BUCKET"),
    ) else {
        let why = "no local S3 server (run scripts/test.sh, or source its environment)";
        assert!(
            std::env::var_os("SOPVAULT_STRICT").is_none_or(|v| v != "1"),
            "SOPVAULT_STRICT=1: an_s3_bucket_keeps_the_backend_contract cannot be skipped: {why}"
        );
        eprintln!("SKIP an_s3_bucket_keeps_the_backend_contract: {why}");
        return;
    };
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let url = format!("s3://{bucket}/conformance-{nanos:x}");
    let b = S3Backend::from_url(&url).unwrap();
    assert_eq!(b.location(), url);
    conformance(&b, &|rel, bytes| b.put(rel, bytes, false).unwrap());
    assert!(b.local_root().is_none());
}

#[test]
fn s3_urls_are_checked() {
    for bad in ["s3://", "s3:///prefix", "s3://bucket/a/../b"] {
        let e = S3Backend::from_url(bad).err().expect(bad);
        assert_eq!(e.kind(), ErrorKind::Usage, "{bad}: {e}");
    }
}
