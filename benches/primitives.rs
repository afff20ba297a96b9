//! Throughput of the primitives every backup and restore runs through.
//!
//! - `chunker` — keyed FastCDC cut points over 16 MiB of random bytes.
//! - `chunk_id` — keyed BLAKE3 of one average-sized (64 KiB) chunk.
//! - `blob` — seal (compress, encrypt, verify) and open (decrypt, decompress,
//!   verify) of a 64 KiB chunk, text-like and incompressible, at zstd level 3.
//! - `sha256` — the stream and file-name hash, over 16 MiB.
//! - `index` — lookups in a merged index of 1,000,000 entries, of ids that are
//!   present and ids that are not (the common case while deduplicating new data).
//!
//! Run with `cargo bench --bench primitives`; add `-- --quick` for a short run.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use sopvault::blob::{self, BlobInfo, BlobKind, Codec};
use sopvault::chunker::{Chunker, ChunkerProfile};
use sopvault::crypto::{MasterKey, Secret32};
use sopvault::ids::{sha256, ChunkId, IndexId, PackId};
use sopvault::index::{Index, IndexFile};
use std::collections::HashMap;
use std::hint::black_box;
use std::time::Duration;

const MIB: usize = 1024 * 1024;
const CHUNK: usize = 64 * 1024;
const INDEX_ENTRIES: usize = 1_000_000;
const INDEX_PACKS: usize = 1_000;
/// Lookups per iteration of an index benchmark, so one iteration is long enough to time.
const LOOKUPS: usize = 1024;

/// The generator the integration tests use (xorshift64*), started from fixed
/// states so the inputs stay byte for byte what they were.
#[path = "../tests/it/common/rng.rs"]
mod rng;
use rng::Xorshift;

/// A random 32-byte id.
fn random_id(rng: &mut Xorshift) -> [u8; 32] {
    rng.bytes(32).try_into().expect("32 bytes")
}

/// Rows of a SQL dump: repetitive structure, varying values (compresses about 3-5×).
fn text_like(len: usize) -> Vec<u8> {
    let mut rng = Xorshift::from_state(7);
    let mut out = Vec::with_capacity(len + 128);
    let names = ["widget", "gadget", "sprocket", "flange", "grommet"];
    while out.len() < len {
        let r = rng.next_u64();
        out.extend_from_slice(
            format!(
                "INSERT INTO orders VALUES ({}, '{}', {}, '2026-{:02}-{:02} {:02}:{:02}:00', {}.{:02});\n",
                r % 1_000_000,
                names[(r >> 20) as usize % names.len()],
                (r >> 24) % 100,
                (r >> 32) % 12 + 1,
                (r >> 36) % 28 + 1,
                (r >> 41) % 24,
                (r >> 46) % 60,
                (r >> 52) % 1000,
                (r >> 56) % 100,
            )
            .as_bytes(),
        );
    }
    out.truncate(len);
    out
}

fn key() -> MasterKey {
    MasterKey::from_master(Secret32::from_bytes([0x42; 32]))
}

fn chunker(c: &mut Criterion) {
    let data = Xorshift::from_state(1).bytes(16 * MIB);
    let chunker = Chunker::with_gear_key(&[0x17; 32], ChunkerProfile::default());
    let mut g = c.benchmark_group("chunker");
    g.throughput(Throughput::Bytes(data.len() as u64));
    g.sample_size(10);
    g.bench_function("cut_points/16MiB", |b| {
        b.iter(|| chunker.cut_points(black_box(&data)))
    });
    g.finish();
}

fn chunk_id(c: &mut Criterion) {
    let key = key();
    let data = Xorshift::from_state(2).bytes(CHUNK);
    let mut g = c.benchmark_group("chunk_id");
    g.throughput(Throughput::Bytes(CHUNK as u64));
    g.bench_function("keyed_blake3/64KiB", |b| {
        b.iter(|| key.chunk_id(black_box(&data)))
    });
    g.finish();
}

fn blobs(c: &mut Criterion) {
    let key = key();
    let mut g = c.benchmark_group("blob");
    g.throughput(Throughput::Bytes(CHUNK as u64));
    for (name, data) in [
        ("text", text_like(CHUNK)),
        ("random", Xorshift::from_state(3).bytes(CHUNK)),
    ] {
        let id = key.chunk_id(&data);
        g.bench_function(format!("seal/{name}/64KiB"), |b| {
            b.iter(|| blob::seal(&key, BlobKind::Data, id, black_box(&data), 3).expect("seal"))
        });
        let sealed = blob::seal(&key, BlobKind::Data, id, &data, 3).expect("seal");
        let expected = if name == "text" {
            Codec::Zstd
        } else {
            Codec::Raw
        };
        assert_eq!(
            sealed.codec, expected,
            "{name} data compressed unexpectedly"
        );
        let info = BlobInfo {
            id,
            kind: sealed.kind,
            codec: sealed.codec,
            offset: 0,
            stored_len: sealed.bytes.len() as u32,
            raw_len: sealed.raw_len,
            delta: None,
        };
        g.bench_function(format!("open/{name}/64KiB"), |b| {
            b.iter(|| blob::open(&key, &info, black_box(&sealed.bytes)).expect("open"))
        });
    }
    g.finish();
}

/// The AEAD alone: sopvault's XChaCha20-Poly1305 (HChaCha20 + aws-lc's
/// ChaCha20-Poly1305) against RustCrypto's `chacha20poly1305`, same bytes.
fn aead(c: &mut Criterion) {
    use chacha20poly1305::aead::{Aead, KeyInit, Payload};
    use sopvault::crypto::{KeyPurpose, NONCE_LEN};
    let key = key();
    let raw = [5u8; 32];
    let peer = chacha20poly1305::XChaCha20Poly1305::new(&raw.into());
    let data = Xorshift::from_state(5).bytes(CHUNK);
    let aad = [1u8; 46];
    let nonce = [2u8; NONCE_LEN];
    let payload = |msg| Payload { msg, aad: &aad };
    let mut g = c.benchmark_group("aead");
    g.throughput(Throughput::Bytes(CHUNK as u64));
    g.bench_function("seal/sopvault/64KiB", |b| {
        b.iter(|| {
            key.seal(KeyPurpose::Data, &aad, black_box(&data))
                .expect("seal")
        })
    });
    g.bench_function("seal/rustcrypto/64KiB", |b| {
        b.iter(|| {
            peer.encrypt(&nonce.into(), payload(black_box(&data)))
                .expect("seal")
        })
    });
    let sealed = key.seal(KeyPurpose::Data, &aad, &data).expect("seal");
    g.bench_function("open/sopvault/64KiB", |b| {
        b.iter(|| {
            key.open(KeyPurpose::Data, &aad, black_box(&sealed))
                .expect("open")
        })
    });
    let theirs = peer.encrypt(&nonce.into(), payload(&data)).expect("seal");
    g.bench_function("open/rustcrypto/64KiB", |b| {
        b.iter(|| {
            peer.decrypt(&nonce.into(), payload(black_box(&theirs)))
                .expect("open")
        })
    });
    g.finish();
}

fn sha(c: &mut Criterion) {
    let data = Xorshift::from_state(4).bytes(16 * MIB);
    let mut g = c.benchmark_group("sha256");
    g.throughput(Throughput::Bytes(data.len() as u64));
    g.sample_size(10);
    g.bench_function("16MiB", |b| b.iter(|| sha256(black_box(&data))));
    g.finish();
}

/// An index file of `INDEX_ENTRIES` random ids spread over `INDEX_PACKS` packs.
fn index_file(rng: &mut Xorshift) -> IndexFile {
    let packs: Vec<(PackId, u64)> = (0..INDEX_PACKS)
        .map(|_| (PackId(random_id(rng)), 16 * MIB as u64))
        .collect();
    let entries = (0..INDEX_ENTRIES)
        .map(|i| {
            let blob = BlobInfo {
                id: ChunkId(random_id(rng)),
                kind: BlobKind::Data,
                codec: Codec::Zstd,
                offset: 16 + (i % 256) as u64 * CHUNK as u64,
                stored_len: 30_000,
                raw_len: CHUNK as u32,
                delta: None,
            };
            ((i % INDEX_PACKS) as u32, blob)
        })
        .collect();
    IndexFile {
        supersedes: vec![],
        packs,
        entries,
    }
}

fn index(c: &mut Criterion) {
    let mut rng = Xorshift::from_state(5);
    let file = index_file(&mut rng);
    let present: HashMap<PackId, u64> = file.packs.iter().copied().collect();
    let mut present_ids: Vec<ChunkId> = file
        .entries
        .iter()
        .step_by(INDEX_ENTRIES / (16 * LOOKUPS))
        .map(|(_, b)| b.id)
        .collect();
    // Visit the sample in random order, not in the file's order.
    present_ids.sort_by_key(|id| sha256(&id.0));
    let absent_ids: Vec<ChunkId> = (0..present_ids.len())
        .map(|_| ChunkId(random_id(&mut rng)))
        .collect();

    let dir = tempfile::TempDir::new().expect("temporary directory");
    let path = dir.path().join("index.cache");
    let index_id = IndexId([1; 32]);
    let index = Index::open_or_build(
        &path,
        &sopvault::crypto::Secret32::from_bytes([7; 32]),
        &[index_id],
        &present,
        &|_| Ok(file.clone()),
    )
    .expect("build the index");
    assert_eq!(index.len(), INDEX_ENTRIES as u64);
    drop(file);
    assert!(present_ids.iter().all(|id| index.contains(id)));
    assert!(!absent_ids.iter().any(|id| index.contains(id)));

    let mut g = c.benchmark_group("index_1M");
    g.throughput(Throughput::Elements(LOOKUPS as u64));
    for (name, ids) in [("present", &present_ids), ("absent", &absent_ids)] {
        let mut batches = ids.chunks_exact(LOOKUPS).cycle();
        g.bench_function(format!("lookup/{name}"), |b| {
            b.iter_batched(
                || batches.next().expect("a cycle never ends"),
                |batch| {
                    for id in batch {
                        black_box(index.lookup(black_box(id)));
                    }
                },
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = chunker, chunk_id, blobs, aead, sha, index
}
criterion_main!(benches);
