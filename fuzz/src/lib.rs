//! Shared pieces of sopvault's fuzz targets.
//!
//! # Layout
//! - [`key`] — one fixed master key, so a crash reproduces byte for byte.
//! - [`seal_meta_file`], [`BlobPrefix`] — how targets turn fuzzer bytes into
//!   decoder arguments: a sealed metadata file, or a blob's index entry
//!   followed by its sealed bytes.
//! - [`seeds`] — real repository structures, written out as seed corpora by
//!   `examples/seed_corpus.rs` (each in the input layout of its target).
//!
//! The fuzzer cannot forge a Poly1305 tag, so the full decoders
//! (`IndexFile::decode`, `Snapshot::decode`, ...) stop at authentication on
//! random bytes. The `*_plain` decoders take the plaintext directly, and the
//! `sealed_roundtrip` and `blob_sealed` targets seal the fuzzer's bytes with
//! [`key`] first, so the code after decryption is reached too.

use sopvault::blob::{BlobInfo, BlobKind, Codec};
use sopvault::crypto::{KeyPurpose, MasterKey, Secret32, NONCE_LEN};
use sopvault::format::write_header;
use sopvault::ids::ChunkId;
use std::sync::OnceLock;

pub mod seeds;

/// The object name passed to every decoder.
pub const OBJECT: &str = "fuzz input";

/// A fixed nonce: the fuzz key never protects anything, so reuse is harmless
/// and keeps every sealed input deterministic.
pub const NONCE: [u8; NONCE_LEN] = [0x11; NONCE_LEN];

/// The fixed master key of every target.
pub fn key() -> &'static MasterKey {
    static KEY: OnceLock<MasterKey> = OnceLock::new();
    KEY.get_or_init(|| MasterKey::from_master(Secret32::from_bytes([0x5a; 32])))
}

/// `header(magic, flags 0) | clear | seal(Meta, aad = header | clear, plain)`:
/// the layout of config, index and snapshot files.
pub fn seal_meta_file(magic: &[u8; 8], clear: &[u8], plain: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + clear.len() + plain.len() + 40);
    write_header(&mut out, magic, 0);
    out.extend_from_slice(clear);
    let sealed = key()
        .seal_with_nonce(KeyPurpose::Meta, &NONCE, &out, plain)
        .expect("sealing a fuzz input cannot fail");
    out.extend_from_slice(&sealed);
    out
}

/// The first bytes of a blob target's input: what an index entry would say
/// about the blob that follows.
///
/// ```text
/// kind u8 (mod 3; bit 7 is a flag for the target) | codec u8 (mod 2) |
/// raw_len u32 | chunk_id[32] | rest: the blob (sealed or to be sealed)
/// ```
#[derive(Clone, Copy, Debug)]
pub struct BlobPrefix {
    pub kind: BlobKind,
    pub codec: Codec,
    pub raw_len: u32,
    pub id: ChunkId,
    pub flag: bool,
}

impl BlobPrefix {
    pub const LEN: usize = 38;

    /// Splits an input into its prefix and the rest; `None` when too short.
    pub fn split(data: &[u8]) -> Option<(BlobPrefix, &[u8])> {
        if data.len() < Self::LEN {
            return None;
        }
        let (head, rest) = data.split_at(Self::LEN);
        let kind = BlobKind::from_u8((head[0] & 0x7f) % 3).expect("0..3 is a blob kind");
        let codec = Codec::from_u8(head[1] % 2).expect("0..2 is a codec");
        let raw_len = u32::from_le_bytes(head[2..6].try_into().expect("4 bytes"));
        let id = ChunkId(head[6..38].try_into().expect("32 bytes"));
        let flag = head[0] & 0x80 != 0;
        Some((
            BlobPrefix {
                kind,
                codec,
                raw_len,
                id,
                flag,
            },
            rest,
        ))
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(Self::LEN);
        out.push(self.kind as u8 | if self.flag { 0x80 } else { 0 });
        out.push(self.codec as u8);
        out.extend_from_slice(&self.raw_len.to_le_bytes());
        out.extend_from_slice(&self.id.0);
        out
    }

    /// The index entry of a blob of `stored_len` bytes at offset 0.
    pub fn info(&self, stored_len: usize) -> BlobInfo {
        BlobInfo {
            id: self.id,
            kind: self.kind,
            codec: self.codec,
            offset: 0,
            stored_len: u32::try_from(stored_len).unwrap_or(u32::MAX),
            raw_len: self.raw_len,
            delta: None,
        }
    }
}

/// Reads a little-endian u64 from the first 8 bytes; `None` when too short.
pub fn split_u64(data: &[u8]) -> Option<(u64, &[u8])> {
    let head = data.get(..8)?;
    Some((
        u64::from_le_bytes(head.try_into().expect("8 bytes")),
        &data[8..],
    ))
}

/// What the first byte of a `sealed_roundtrip` input selects (taken mod [`sealed::COUNT`]).
pub mod sealed {
    /// An index file's plaintext.
    pub const INDEX: u8 = 0;
    /// A snapshot manifest's plaintext.
    pub const SNAPSHOT: u8 = 1;
    /// A config's plaintext.
    pub const CONFIG: u8 = 2;
    /// `blob area length u16 | a pack footer's plaintext`.
    pub const PACK_FOOTER: u8 = 3;
    /// A tree, sealed as a tree blob.
    pub const TREE_BLOB: u8 = 4;
    /// A chunk list, sealed as a chunk-list blob.
    pub const CHUNK_LIST_BLOB: u8 = 5;
    pub const COUNT: u8 = 6;
}
