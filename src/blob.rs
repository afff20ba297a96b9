//! Blobs: compress, seal, verify; open, decompress, verify.
//!
//! A blob is one chunk of file data, one tree (a directory listing) or one
//! chunk list. Sealing compresses with zstd (stored raw when that does not
//! help), encrypts with XChaCha20-Poly1305 and then opens the result again and
//! recomputes the id, so a RAM or compressor fault is caught at backup time.
//! The associated data binds the blob's kind, codec, raw length and chunk id:
//! `"SOPVBLOB" | kind u8 | codec u8 | raw_len u32 | chunk_id[32]`.

use crate::crypto::{KeyPurpose, MasterKey, SEAL_OVERHEAD};
use crate::error::{Error, Result};
use crate::ids::ChunkId;
use std::cell::RefCell;

/// What a blob holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum BlobKind {
    Data = 0,
    Tree = 1,
    ChunkList = 2,
}

impl BlobKind {
    pub fn from_u8(v: u8) -> Option<BlobKind> {
        match v {
            0 => Some(BlobKind::Data),
            1 => Some(BlobKind::Tree),
            2 => Some(BlobKind::ChunkList),
            _ => None,
        }
    }
    pub fn purpose(self) -> KeyPurpose {
        match self {
            BlobKind::Data => KeyPurpose::Data,
            BlobKind::Tree | BlobKind::ChunkList => KeyPurpose::Meta,
        }
    }
    /// Largest raw length a decoder accepts for this kind.
    pub fn max_raw_len(self) -> u32 {
        match self {
            BlobKind::Data => 16 * 1024 * 1024,
            BlobKind::Tree => 256 * 1024 * 1024,
            BlobKind::ChunkList => 4 * 1024 * 1024,
        }
    }
}

/// How the sealed payload encodes the plaintext.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Codec {
    /// The plaintext itself.
    Raw = 0,
    /// One zstd frame.
    Zstd = 1,
}

impl Codec {
    pub fn from_u8(v: u8) -> Option<Codec> {
        match v {
            0 => Some(Codec::Raw),
            1 => Some(Codec::Zstd),
            _ => None,
        }
    }
}

/// Everything needed to find and open a blob, as stored in pack footers and index files.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlobInfo {
    pub id: ChunkId,
    pub kind: BlobKind,
    pub codec: Codec,
    pub offset: u64,
    pub stored_len: u32,
    pub raw_len: u32,
}

/// A blob sealed and verified, ready to be appended to a pack.
pub struct SealedBlob {
    pub id: ChunkId,
    pub kind: BlobKind,
    pub codec: Codec,
    pub raw_len: u32,
    pub bytes: Vec<u8>,
}

pub fn aad(kind: BlobKind, codec: Codec, raw_len: u32, id: &ChunkId) -> [u8; 46] {
    let mut a = [0u8; 46];
    a[..8].copy_from_slice(b"SOPVBLOB");
    a[8] = kind as u8;
    a[9] = codec as u8;
    a[10..14].copy_from_slice(&raw_len.to_le_bytes());
    a[14..].copy_from_slice(&id.0);
    a
}

thread_local! {
    static COMPRESSOR: RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> = const { RefCell::new(None) };
    static DECOMPRESSOR: RefCell<Option<zstd::bulk::Decompressor<'static>>> = const { RefCell::new(None) };
}

fn compress(level: i32, data: &[u8]) -> Result<Vec<u8>> {
    COMPRESSOR.with(|c| {
        let mut c = c.borrow_mut();
        if c.as_ref().map(|(l, _)| *l) != Some(level) {
            let comp = zstd::bulk::Compressor::new(level)
                .map_err(|e| Error::Other(format!("zstd level {level}: {e}")))?;
            *c = Some((level, comp));
        }
        let (_, comp) = c.as_mut().unwrap();
        comp.compress(data)
            .map_err(|e| Error::Other(format!("zstd compression failed: {e}")))
    })
}

fn decompress(data: &[u8], raw_len: usize) -> std::io::Result<Vec<u8>> {
    DECOMPRESSOR.with(|d| {
        let mut d = d.borrow_mut();
        if d.is_none() {
            *d = Some(zstd::bulk::Decompressor::new()?);
        }
        // The capacity bounds the output: a frame that claims more fails.
        d.as_mut().unwrap().decompress(data, raw_len)
    })
}

/// Compresses, seals and verifies a plaintext whose id is already known.
pub fn seal(
    key: &MasterKey,
    kind: BlobKind,
    id: ChunkId,
    plaintext: &[u8],
    level: i32,
) -> Result<SealedBlob> {
    let raw_len = u32::try_from(plaintext.len())
        .ok()
        .filter(|l| *l <= kind.max_raw_len())
        .ok_or_else(|| {
            Error::Other(format!(
                "blob of {} bytes exceeds the {kind:?} limit",
                plaintext.len()
            ))
        })?;
    let compressed = compress(level, plaintext)?;
    let (codec, payload): (Codec, &[u8]) = if compressed.len() < plaintext.len() {
        (Codec::Zstd, &compressed)
    } else {
        (Codec::Raw, plaintext)
    };
    let bytes = key.seal(kind.purpose(), &aad(kind, codec, raw_len, &id), payload)?;
    let blob = SealedBlob {
        id,
        kind,
        codec,
        raw_len,
        bytes,
    };
    let info = BlobInfo {
        id,
        kind,
        codec,
        offset: 0,
        stored_len: blob.bytes.len() as u32,
        raw_len,
    };
    open(key, &info, &blob.bytes).map_err(|e| {
        Error::Other(format!(
            "blob {id} failed verification right after sealing (memory or compressor fault?): {e}"
        ))
    })?;
    Ok(blob)
}

/// Why a blob failed to open; the caller adds the pack and offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpenError {
    Authentication,
    Decompression(String),
    Length { expected: u32, found: usize },
    IdMismatch { found: ChunkId },
    TooLarge,
}

impl std::fmt::Display for OpenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OpenError::Authentication => {
                f.write_str("authentication failed (wrong key or damaged bytes)")
            }
            OpenError::Decompression(e) => write!(f, "zstd decompression failed: {e}"),
            OpenError::Length { expected, found } => {
                write!(f, "raw length: expected {expected}, found {found}")
            }
            OpenError::IdMismatch { found } => write!(f, "plaintext hashes to {found}"),
            OpenError::TooLarge => f.write_str("declared length exceeds the limit for its kind"),
        }
    }
}

/// Opens, decompresses and verifies a sealed blob against its info.
pub fn open(
    key: &MasterKey,
    info: &BlobInfo,
    sealed: &[u8],
) -> std::result::Result<Vec<u8>, OpenError> {
    if info.raw_len > info.kind.max_raw_len() || sealed.len() < SEAL_OVERHEAD {
        return Err(OpenError::TooLarge);
    }
    let payload = key
        .open(
            info.kind.purpose(),
            &aad(info.kind, info.codec, info.raw_len, &info.id),
            sealed,
        )
        .ok_or(OpenError::Authentication)?;
    let plain = match info.codec {
        Codec::Raw => payload,
        Codec::Zstd => decompress(&payload, info.raw_len as usize)
            .map_err(|e| OpenError::Decompression(e.to_string()))?,
    };
    if plain.len() != info.raw_len as usize {
        return Err(OpenError::Length {
            expected: info.raw_len,
            found: plain.len(),
        });
    }
    let found = key.chunk_id(&plain);
    if found != info.id {
        return Err(OpenError::IdMismatch { found });
    }
    Ok(plain)
}
