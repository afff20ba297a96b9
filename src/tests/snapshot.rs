//! `ops::snapshot` and `ops::restore` on the memory backend: a tree and a
//! dump stream come back byte for byte.

use super::{files_below, restored_copy, stream, Scratch};
use crate::ops::snapshot::SnapshotOptions;
use crate::testutil::noise;

fn web_tree(s: &Scratch) -> std::path::PathBuf {
    s.source(&[
        ("index.php", b"<?php echo 1;".to_vec()),
        ("empty", Vec::new()),
        ("assets/big.bin", noise(700_000, 3)),
        ("assets/css/site.css", b"body{}".repeat(5000)),
        ("deep/a/b/c/d.txt", b"deep".to_vec()),
    ])
}

#[test]
fn a_tree_and_a_stream_restore_byte_for_byte() {
    let s = Scratch::new();
    let src = web_tree(&s);
    let opts = SnapshotOptions {
        source: "site".into(),
        paths: vec![src.clone()],
        streams: vec![stream("db.sql", "seq 1 200000")],
        ..Default::default()
    };
    let out =
        crate::ops::snapshot::run(&s.repo, &opts, &crate::ops::progress::NoProgress, None).unwrap();
    assert!(out.snapshot.complete);
    assert_eq!(out.snapshot.streams.len(), 1);

    let target = s.restore(&s.repo, &out.id);
    assert_eq!(
        files_below(&restored_copy(&target, &src)),
        files_below(&src)
    );
    let dump = std::fs::read(target.join("db.sql")).unwrap();
    let expected: String = (1..=200_000).map(|i| format!("{i}\n")).collect();
    assert_eq!(dump, expected.as_bytes());
    super::assert_checks(&s.repo);
}

#[test]
fn a_second_snapshot_of_the_same_tree_stores_nothing_new() {
    let s = Scratch::new();
    let src = web_tree(&s);
    let first = s.snapshot_of(&s.repo, "site", &[&src], None).unwrap();
    assert!(first.store.blobs_new > 0);
    let second = s.snapshot_of(&s.repo, "site", &[&src], None).unwrap();
    assert_eq!(second.snapshot.parent, Some(first.id));
    // Nothing below the source is new. The root tree may be: it records the
    // metadata of the source's ancestors, and other tests running at the same
    // time change the mtime of the shared /tmp.
    assert!(
        second.store.blobs_new <= 1 && second.store.bytes_new < 1024,
        "new in the second snapshot: {} blobs, {} bytes",
        second.store.blobs_new,
        second.store.bytes_new
    );
    let target = s.restore(&s.repo, &second.id);
    assert_eq!(
        files_below(&restored_copy(&target, &src)),
        files_below(&src)
    );
}

#[test]
fn a_failing_stream_writes_no_snapshot() {
    let s = Scratch::new();
    let opts = SnapshotOptions {
        source: "db".into(),
        streams: vec![stream("db.sql", "echo partial; exit 3")],
        ..Default::default()
    };
    let run = crate::ops::snapshot::run(&s.repo, &opts, &crate::ops::progress::NoProgress, None);
    assert!(run.is_err());
    assert!(s.repo.snapshots().unwrap().is_empty());
    super::assert_checks(&s.repo);
}
