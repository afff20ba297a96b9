//! The full decoders past authentication: the fuzzer's bytes are sealed with
//! the fixed key as the plaintext of an index file, a manifest, a config, a
//! pack footer or a tree / chunk-list blob, and the full decoder must agree
//! with the plaintext decoder. Blobs are sealed both ways (`seal`, and
//! `seal_into` as the snapshot pipeline does) and must open to the plaintext.
//!
//! Input: a selector byte (see [`sopvault_fuzz::sealed`]; for packs, the
//! quotient picks the pack kind), then the plaintext.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sopvault::blob::{self, BlobInfo, BlobKind};
use sopvault::format::config::Config;
use sopvault::crypto::KeyPurpose;
use sopvault::format::{
    write_header, HEADER_LEN, MAGIC_CONFIG, MAGIC_INDEX, MAGIC_PACK, MAGIC_PACK_END, MAGIC_SNAPSHOT,
};
use sopvault::index::IndexFile;
use sopvault::format::manifest::Snapshot;
use sopvault::format::pack::{decode_footer_plain, read_footer_from_bytes};
use sopvault::format::tree::{ChunkList, Tree};
use sopvault_fuzz::{key, seal_meta_file, sealed, NONCE, OBJECT};

/// `header | blob area of zeros | seal(footer) | trailer`.
fn pack(kind: u32, area_len: usize, footer_plain: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + area_len + footer_plain.len() + 56);
    write_header(&mut out, MAGIC_PACK, kind);
    let footer = key()
        .seal_with_nonce(KeyPurpose::Meta, &NONCE, &out, footer_plain)
        .expect("sealing a fuzz input cannot fail");
    out.resize(HEADER_LEN + area_len, 0);
    out.extend_from_slice(&footer);
    out.extend_from_slice(&(footer.len() as u32).to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(MAGIC_PACK_END);
    out
}

/// Seals `plain` as a blob of `kind`, opens it again and returns what it held.
fn blob_roundtrip(kind: BlobKind, plain: &[u8]) -> Vec<u8> {
    let id = key().chunk_id(plain);
    let b = blob::seal(key(), kind, id, plain, 3).expect("a small blob seals");
    let info = BlobInfo {
        id,
        kind,
        codec: b.codec,
        offset: 0,
        stored_len: b.bytes.len() as u32,
        raw_len: b.raw_len,
        delta: None,
    };
    let opened = blob::open(key(), &info, &b.bytes).expect("a sealed blob opens");
    assert_eq!(opened, plain);
    // The pipeline's way: into a slot of the largest sealed size (a guard
    // byte after it), with reused buffers; the same codec, and it opens.
    let mut slot = vec![0xa5; blob::sealed_bound(plain.len()) + 1];
    let (room, guard) = slot.split_at_mut(blob::sealed_bound(plain.len()));
    let into = blob::seal_into(key(), kind, id, plain, 3, room).expect("a small blob seals");
    assert_eq!(guard, [0xa5]);
    assert_eq!((into.codec, into.raw_len), (b.codec, b.raw_len));
    let sealed = &slot[..into.stored_len as usize];
    assert_eq!(blob::open(key(), &into, sealed).expect("a blob sealed in place opens"), plain);
    opened
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, plain)) = data.split_first() else {
        return;
    };
    match selector % sealed::COUNT {
        sealed::INDEX => {
            let file = seal_meta_file(MAGIC_INDEX, &[], plain);
            assert_eq!(
                IndexFile::decode(key(), &file, OBJECT).ok(),
                IndexFile::decode_plain(plain, OBJECT).ok()
            );
        }
        sealed::SNAPSHOT => {
            let file = seal_meta_file(MAGIC_SNAPSHOT, &[], plain);
            assert_eq!(
                Snapshot::decode(key(), &file, OBJECT).ok(),
                Snapshot::decode_plain(plain, OBJECT).ok()
            );
        }
        sealed::CONFIG => {
            let expected = Config::decode_plain(plain, OBJECT).ok();
            let repo_id = expected.as_ref().map_or([0; 32], |c| c.repo_id);
            let file = seal_meta_file(MAGIC_CONFIG, &repo_id, plain);
            assert_eq!(Config::decode(key(), &file, OBJECT).ok(), expected);
            // The clear repository id must match the sealed one.
            let mut other = repo_id;
            other[0] ^= 1;
            let file = seal_meta_file(MAGIC_CONFIG, &other, plain);
            assert!(Config::decode(key(), &file, OBJECT).is_err());
        }
        sealed::PACK_FOOTER => {
            let Some((area, footer)) = plain.split_first_chunk::<2>() else {
                return;
            };
            let area_len = u16::from_le_bytes(*area) as usize;
            let kind = u32::from(selector / sealed::COUNT % 2);
            let bytes = pack(kind, area_len, footer);
            assert_eq!(
                read_footer_from_bytes(key(), &bytes, OBJECT).ok(),
                decode_footer_plain(footer, (HEADER_LEN + area_len) as u64, OBJECT).ok()
            );
        }
        sealed::TREE_BLOB => {
            let opened = blob_roundtrip(BlobKind::Tree, plain);
            assert_eq!(
                Tree::decode(&opened, OBJECT).ok(),
                Tree::decode(plain, OBJECT).ok()
            );
        }
        sealed::CHUNK_LIST_BLOB => {
            let opened = blob_roundtrip(BlobKind::ChunkList, plain);
            assert_eq!(
                ChunkList::decode(&opened, OBJECT).ok(),
                ChunkList::decode(plain, OBJECT).ok()
            );
        }
        _ => unreachable!("the selector is taken mod sealed::COUNT"),
    }
});
