//! `write::store` on the memory backend: dedup, packs, index files.

use super::Scratch;
use crate::backend::{Backend, FileKind};
use crate::blob::BlobKind;
use crate::ids::{IndexId, PackId};
use crate::testutil::noise;
use crate::write::store::BlobStore;

#[test]
fn the_same_bytes_are_stored_once_within_a_run_and_across_runs() {
    let s = Scratch::new();
    let bytes = noise(100_000, 1);
    let index = s.repo.index().unwrap();
    let mut store = BlobStore::new(&s.repo, &index);
    let (first, new_first) = store.add(BlobKind::Data, &bytes).unwrap();
    let (again, new_again) = store.add(BlobKind::Data, &bytes).unwrap();
    assert_eq!(first, again);
    assert!(new_first && !new_again);
    let stats = store.finish().unwrap();
    assert_eq!((stats.blobs_new, stats.packs), (1, 1));

    let index = s.repo.index().unwrap();
    assert!(index.contains(&first));
    let mut store = BlobStore::new(&s.repo, &index);
    assert!(!store.add(BlobKind::Data, &bytes).unwrap().1);
    let stats = store.finish().unwrap();
    assert_eq!((stats.blobs_new, stats.packs), (0, 0));
    assert!(stats.index_files.is_empty(), "{:?}", stats.index_files);
    assert_eq!(s.memory.list(FileKind::Pack).unwrap().len(), 1);
}

#[test]
fn blobs_fill_packs_of_the_configured_size_and_one_index_file_lists_them() {
    let s = Scratch::new();
    let blobs: Vec<Vec<u8>> = (0..40).map(|i| noise(100_000, 101 + 2 * i)).collect();
    let index = s.repo.index().unwrap();
    let mut store = BlobStore::new(&s.repo, &index);
    let ids: Vec<_> = blobs
        .iter()
        .map(|b| store.add(BlobKind::Data, b).unwrap().0)
        .collect();
    let stats = store.finish().unwrap();
    assert_eq!(stats.blobs_new, 40);

    // 4 MB of incompressible blobs in 1 MiB packs.
    let packs = s.memory.list(FileKind::Pack).unwrap();
    assert_eq!(packs.len() as u64, stats.packs);
    assert!((4..=6).contains(&packs.len()), "{} packs", packs.len());
    for (name, size) in &packs {
        // A pack is closed once it reaches the target: at most a blob more.
        assert!(*size < (1 << 20) + 101_000, "{name}: {size} bytes");
        let bytes = s.memory.read(FileKind::Pack, name).unwrap();
        assert_eq!(PackId(crate::ids::sha256(&bytes)).to_hex(), *name);
    }
    let listed: Vec<_> = s.memory.list(FileKind::Index).unwrap();
    let written: Vec<String> = stats.index_files.iter().map(IndexId::to_hex).collect();
    assert_eq!(written.len(), 1);
    assert!(listed.iter().any(|(n, _)| *n == written[0]), "{listed:?}");

    let index = s.repo.index().unwrap();
    for (id, bytes) in ids.iter().zip(&blobs) {
        let loc = index.lookup(id).expect("stored blobs are indexed");
        assert!(packs.iter().any(|(n, _)| *n == loc.pack.to_hex()));
        assert_eq!(s.repo.read_blob_by_id(&index, id, "test").unwrap(), *bytes);
    }
}
