//! One conformance suite that every backend passes: the contract written at
//! the top of `src/backend/mod.rs`, checked against a local directory and against
//! a real S3-compatible server (skipped, with a note, when `scripts/test.sh`
//! has not started one: see `tests/s3.rs`).

use sopvault::backend::s3::S3Backend;
use sopvault::backend::{Backend, FileKind, LocalBackend};
use sopvault::ErrorKind;

fn sha(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

fn conformance(b: &dyn Backend) {
    assert!(b.read_readme().unwrap().is_none(), "{}", b.location());
    assert!(b.all_files().unwrap().is_empty(), "{}", b.location());
    b.create("readme\n").unwrap();
    assert_eq!(b.read_readme().unwrap().unwrap(), b"readme\n");
    // A second create refuses a place that is not empty.
    assert_eq!(b.create("again\n").unwrap_err().kind(), ErrorKind::Usage);

    let data = b"pack bytes, not really".repeat(1000);
    let name = sha(&data);
    b.write_new(FileKind::Pack, &name, &data).unwrap();
    // Same name, same bytes: a second write is a no-op.
    b.write_new(FileKind::Pack, &name, &data).unwrap();
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
    assert!(
        b.all_files().unwrap().iter().any(|(p, _)| *p == rel),
        "{:?}",
        b.all_files().unwrap()
    );

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
    assert_eq!(b.list(FileKind::Snapshot).unwrap().len(), 2);
    b.remove_many(FileKind::Snapshot, &[sha(b"s1"), sha(b"s2")])
        .unwrap();
    assert!(b.list(FileKind::Snapshot).unwrap().is_empty());
    b.remove(FileKind::Index, &iname).unwrap();
    assert!(b.list(FileKind::Index).unwrap().is_empty());
    // A prune directory may be absent.
    assert!(b.list(FileKind::Prune).unwrap().is_empty());

    // A staged file (where the backend has them) is invisible until
    // committed, then reads as one; committing the same name again keeps
    // the file; a staged file dropped unfinished leaves nothing behind.
    let big: Vec<u8> = (0..3 * 1024 * 1024 + 5)
        .map(|i| (i * 7 % 251) as u8)
        .collect();
    let big_name = sha(&big);
    if let Some(mut st) = b.stage_new(FileKind::Pack).unwrap() {
        for part in big[..3 * 1024 * 1024].chunks(700 * 1024) {
            st.append(part).unwrap();
        }
        assert_eq!(st.written(), 3 * 1024 * 1024);
        assert!(!b
            .list(FileKind::Pack)
            .unwrap()
            .iter()
            .any(|(n, _)| *n == big_name));
        st.commit(&big_name, &big[3 * 1024 * 1024..]).unwrap();
        assert_eq!(b.read(FileKind::Pack, &big_name).unwrap(), big);
        let mut again = b.stage_new(FileKind::Pack).unwrap().unwrap();
        again.append(&big[..10]).unwrap();
        again.commit(&big_name, &big[10..]).unwrap();
        assert_eq!(b.read(FileKind::Pack, &big_name).unwrap(), big);
        let mut dropped = b.stage_new(FileKind::Pack).unwrap().unwrap();
        dropped.append(&big[..2 * 1024 * 1024]).unwrap();
        drop(dropped);
        b.remove(FileKind::Pack, &big_name).unwrap();
    }

    // Locks are ephemeral and never listed as repository files.
    b.write_lock("0123456789abcdef.lock", b"{}").unwrap();
    assert_eq!(b.list_locks().unwrap(), vec!["0123456789abcdef.lock"]);
    assert_eq!(b.read_lock("0123456789abcdef.lock").unwrap(), b"{}");
    b.remove_lock("0123456789abcdef.lock").unwrap();
    b.remove_lock("0123456789abcdef.lock").unwrap();
    assert!(b.list_locks().unwrap().is_empty());
    assert_eq!(b.clean_tmp().unwrap(), 0);
}

#[test]
fn a_local_directory_keeps_the_backend_contract() {
    let dir = tempfile::tempdir().unwrap();
    let b = LocalBackend::new(dir.path().join("repo"));
    conformance(&b);
    // The suite checks staged files only where a backend has them: this one must.
    assert!(b.stage_new(FileKind::Pack).unwrap().is_some());
    assert_eq!(b.local_root(), Some(dir.path().join("repo").as_path()));
}

#[test]
fn an_s3_bucket_keeps_the_backend_contract() {
    let (Ok(_), Ok(bucket)) = (
        std::env::var("AWS_ENDPOINT_URL"),
        std::env::var("SOPVAULT_TEST_BUCKET"),
    ) else {
        eprintln!("SKIP an_s3_bucket_keeps_the_backend_contract: no local S3 server (run scripts/test.sh)");
        return;
    };
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let url = format!("s3://{bucket}/conformance-{nanos:x}");
    let b = S3Backend::from_url(&url).unwrap();
    assert_eq!(b.location(), url);
    conformance(&b);
    assert!(b.local_root().is_none());
}

#[test]
fn s3_urls_are_checked() {
    for bad in ["s3://", "s3:///prefix", "s3://bucket/a/../b"] {
        let e = S3Backend::from_url(bad).err().expect(bad);
        assert_eq!(e.kind(), ErrorKind::Usage, "{bad}: {e}");
    }
}
