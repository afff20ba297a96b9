//! Blobs: compress, seal, verify; open, decompress, verify.
//!
//! A blob is one chunk of file data, one tree (a directory listing) or one
//! chunk list. Sealing compresses with zstd (stored raw when that does not
//! help), encrypts with XChaCha20-Poly1305 and then opens the result again and
//! recomputes the id, so a RAM or compressor fault is caught at backup time.
//! The associated data binds the blob's kind, codec, raw length and chunk id:
//! `"SOPVBLOB" | kind u8 | codec u8 | raw_len u32 | chunk_id[32]`, and for a
//! delta also its base: `| base_id[32] | depth u16 | generation u32`.
//!
//! A delta ([`Codec::Delta`]) is one zstd frame compressed with the plaintext
//! of an older chunk, its base, as the frame's prefix: what the two share
//! costs a few bytes. [`seal_delta`] keeps a delta only when it pays;
//! [`open_delta`] needs the base's verified plaintext (`repo::chain` finds it).
//!
//! [`cache`] keeps decoded chunk plaintexts within a byte budget.
//!
//! Layer: uses `crypto` and the base modules only.

pub mod cache;

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
    /// One zstd frame whose prefix is the plaintext of the base chunk.
    Delta = 2,
}

impl Codec {
    pub fn from_u8(v: u8) -> Option<Codec> {
        match v {
            0 => Some(Codec::Raw),
            1 => Some(Codec::Zstd),
            2 => Some(Codec::Delta),
            _ => None,
        }
    }
}

/// Longest chain of deltas a decoder follows: a delta's base is a full chunk
/// (depth 0) or a delta of depth at most `MAX_DELTA_DEPTH - 1`.
pub const MAX_DELTA_DEPTH: u16 = 8;

/// The base of a delta blob.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DeltaRef {
    /// The chunk whose plaintext is the frame's prefix.
    pub base: ChunkId,
    /// Deltas to decode to reach this chunk from a full one: the base's depth plus one.
    pub depth: u16,
    /// Versions of this region since its last full chunk (the writer's skip-delta rule).
    pub generation: u32,
}

impl DeltaRef {
    /// Checks the fields a decoder relies on; `id` is the delta blob's own id.
    pub fn validate(&self, id: &ChunkId, kind: BlobKind) -> std::result::Result<(), String> {
        if kind != BlobKind::Data {
            return Err(format!("a {kind:?} blob cannot be a delta"));
        }
        if self.depth == 0 || self.depth > MAX_DELTA_DEPTH {
            return Err(format!(
                "delta depth {} is outside 1..={MAX_DELTA_DEPTH}",
                self.depth
            ));
        }
        if self.generation == 0 {
            return Err("delta generation is 0".into());
        }
        if self.base == *id || self.base == ChunkId([0; 32]) {
            return Err(format!("delta base {} is not another chunk", self.base));
        }
        Ok(())
    }
}

/// Everything needed to find and open a blob, as stored in pack footers and index files.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BlobInfo {
    pub id: ChunkId,
    pub kind: BlobKind,
    pub codec: Codec,
    pub offset: u64,
    pub stored_len: u32,
    pub raw_len: u32,
    /// Set exactly when `codec` is [`Codec::Delta`].
    pub delta: Option<DeltaRef>,
}

/// A blob sealed and verified, ready to be appended to a pack.
pub struct SealedBlob {
    pub id: ChunkId,
    pub kind: BlobKind,
    pub codec: Codec,
    pub raw_len: u32,
    pub delta: Option<DeltaRef>,
    pub bytes: Vec<u8>,
}

impl SealedBlob {
    /// Its info, at offset 0.
    pub fn info(&self) -> BlobInfo {
        BlobInfo {
            id: self.id,
            kind: self.kind,
            codec: self.codec,
            offset: 0,
            stored_len: self.bytes.len() as u32,
            raw_len: self.raw_len,
            delta: self.delta,
        }
    }
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

/// The associated data of a delta blob: [`aad`] followed by its base.
pub fn delta_aad(raw_len: u32, id: &ChunkId, d: &DeltaRef) -> [u8; 84] {
    let mut a = [0u8; 84];
    a[..46].copy_from_slice(&aad(BlobKind::Data, Codec::Delta, raw_len, id));
    a[46..78].copy_from_slice(&d.base.0);
    a[78..80].copy_from_slice(&d.depth.to_le_bytes());
    a[80..84].copy_from_slice(&d.generation.to_le_bytes());
    a
}

fn info_aad(info: &BlobInfo) -> std::result::Result<Vec<u8>, OpenError> {
    match (info.codec, &info.delta) {
        (Codec::Delta, Some(d)) => Ok(delta_aad(info.raw_len, &info.id, d).to_vec()),
        (Codec::Delta, None) | (_, Some(_)) => Err(OpenError::DeltaMismatch),
        _ => Ok(aad(info.kind, info.codec, info.raw_len, &info.id).to_vec()),
    }
}

/// The zstd window that covers a prefix and the data after it.
fn window_log(prefix: usize, data: usize) -> u32 {
    let total = (prefix + data).max(1024) as u64;
    (64 - (total - 1).leading_zeros()).clamp(10, 27)
}

/// Compresses `data` as one zstd frame with `base` as its prefix.
pub fn compress_with_prefix(level: i32, data: &[u8], base: &[u8]) -> Result<Vec<u8>> {
    use zstd::zstd_safe::{CCtx, CParameter};
    let fail = |e: usize| Error::Codec {
        what: "zstd delta compression failed",
        reason: zstd::zstd_safe::get_error_name(e).to_string(),
    };
    let mut cctx = CCtx::try_create().ok_or_else(|| Error::Codec {
        what: "zstd",
        reason: "no memory".into(),
    })?;
    cctx.set_parameter(CParameter::CompressionLevel(level))
        .map_err(fail)?;
    cctx.set_parameter(CParameter::WindowLog(window_log(base.len(), data.len())))
        .map_err(fail)?;
    cctx.ref_prefix(base).map_err(fail)?;
    let mut out = Vec::with_capacity(zstd::zstd_safe::compress_bound(data.len()));
    cctx.compress2(&mut out, data).map_err(fail)?;
    Ok(out)
}

/// Decompresses a delta frame against its base; never writes past `raw_len`.
pub fn decompress_with_prefix(
    payload: &[u8],
    base: &[u8],
    raw_len: usize,
) -> std::result::Result<Vec<u8>, String> {
    use zstd::zstd_safe::{DCtx, DParameter};
    let name = |e: usize| zstd::zstd_safe::get_error_name(e).to_string();
    let mut dctx = DCtx::try_create().ok_or_else(|| "zstd: no memory".to_string())?;
    dctx.set_parameter(DParameter::WindowLogMax(27))
        .map_err(name)?;
    dctx.ref_prefix(base).map_err(name)?;
    let mut out = Vec::with_capacity(raw_len);
    dctx.decompress(&mut out, payload).map_err(name)?;
    Ok(out)
}

thread_local! {
    static COMPRESSOR: RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> = const { RefCell::new(None) };
    static DECOMPRESSOR: RefCell<Option<zstd::bulk::Decompressor<'static>>> = const { RefCell::new(None) };
}

/// Runs `f` with this thread's compressor for `level`.
fn with_compressor<T>(
    level: i32,
    f: impl FnOnce(&mut zstd::bulk::Compressor<'static>) -> std::io::Result<T>,
) -> Result<T> {
    COMPRESSOR.with(|c| {
        let mut c = c.borrow_mut();
        if c.as_ref().map(|(l, _)| *l) != Some(level) {
            let comp = zstd::bulk::Compressor::new(level).map_err(|e| Error::Codec {
                what: "zstd",
                reason: format!("level {level}: {e}"),
            })?;
            *c = Some((level, comp));
        }
        let (_, comp) = c.as_mut().expect("set above");
        f(comp).map_err(|e| Error::Codec {
            what: "zstd compression failed",
            reason: e.to_string(),
        })
    })
}

fn compress(level: i32, data: &[u8]) -> Result<Vec<u8>> {
    with_compressor(level, |comp| comp.compress(data))
}

/// Compresses `data` into `out` (replacing what it held), reusing its memory.
fn compress_to(level: i32, data: &[u8], out: &mut Vec<u8>) -> Result<()> {
    out.clear();
    out.reserve(zstd::zstd_safe::compress_bound(data.len()));
    with_compressor(level, |comp| comp.compress_to_buffer(data, out)).map(|_| ())
}

/// Runs `f` with this thread's decompressor.
fn with_decompressor<T>(
    f: impl FnOnce(&mut zstd::bulk::Decompressor<'static>) -> std::io::Result<T>,
) -> std::io::Result<T> {
    DECOMPRESSOR.with(|d| {
        let mut d = d.borrow_mut();
        if d.is_none() {
            *d = Some(zstd::bulk::Decompressor::new()?);
        }
        f(d.as_mut().expect("set above"))
    })
}

fn decompress(data: &[u8], raw_len: usize) -> std::io::Result<Vec<u8>> {
    // The capacity bounds the output: a frame that claims more fails.
    with_decompressor(|d| d.decompress(data, raw_len))
}

/// Decompresses into `out`, whose length bounds the output; returns the length written.
fn decompress_to(data: &[u8], out: &mut [u8]) -> std::io::Result<usize> {
    with_decompressor(|d| d.decompress_to_buffer(data, out))
}

/// The raw length of a plaintext about to be sealed, within its kind's limit.
fn raw_len(kind: BlobKind, plaintext: &[u8]) -> Result<u32> {
    u32::try_from(plaintext.len())
        .ok()
        .filter(|l| *l <= kind.max_raw_len())
        .ok_or_else(|| Error::Internal {
            what: format!(
                "blob of {} bytes exceeds the {kind:?} limit",
                plaintext.len()
            ),
        })
}

/// What a blob stores: its zstd compression when that is smaller, else the plaintext.
fn payload<'a>(compressed: &'a [u8], plaintext: &'a [u8]) -> (Codec, &'a [u8]) {
    if compressed.len() < plaintext.len() {
        (Codec::Zstd, compressed)
    } else {
        (Codec::Raw, plaintext)
    }
}

/// Per-thread buffers that [`seal_into`] reuses, so that sealing a long
/// stream allocates no chunk-sized buffer per blob: freed buffers of every
/// size are what spreads the allocator's arenas over a long run.
#[derive(Default)]
struct SealScratch {
    compressed: Vec<u8>,
    opened: Vec<u8>,
    decoded: Vec<u8>,
}

impl SealScratch {
    /// Larger buffers (from a chunk list or a large tree) are not kept:
    /// they come from (and go back to) the system whole, as glibc maps them.
    const KEEP: usize = 1024 * 1024;

    fn trim(&mut self) {
        for b in [&mut self.compressed, &mut self.opened, &mut self.decoded] {
            if b.capacity() > Self::KEEP {
                *b = Vec::new();
            }
        }
    }
}

thread_local! {
    static SCRATCH: RefCell<SealScratch> = RefCell::new(SealScratch::default());
}

/// The most bytes [`seal_into`] writes for a plaintext of `len` bytes: a
/// blob is stored raw when compression does not make it smaller.
pub const fn sealed_bound(len: usize) -> usize {
    len + SEAL_OVERHEAD
}

/// Compresses, seals and verifies like [`seal`], but writes the sealed bytes
/// to the start of `out` (at least [`sealed_bound`] bytes) and reuses this
/// thread's buffers. Returns the blob's info, at offset 0.
pub fn seal_into(
    key: &MasterKey,
    kind: BlobKind,
    id: ChunkId,
    plaintext: &[u8],
    level: i32,
    out: &mut [u8],
) -> Result<BlobInfo> {
    let raw_len = raw_len(kind, plaintext)?;
    SCRATCH.with_borrow_mut(|s| {
        let r = (|| {
            compress_to(level, plaintext, &mut s.compressed)?;
            let (codec, payload) = payload(&s.compressed, plaintext);
            let aad = aad(kind, codec, raw_len, &id);
            let n = key.seal_to(kind.purpose(), &aad, payload, out)?;
            let info = BlobInfo {
                id,
                kind,
                codec,
                offset: 0,
                stored_len: n as u32,
                raw_len,
                delta: None,
            };
            verify_sealed(key, &info, &out[..n], s).map_err(|e| sealing_fault(&id, e))?;
            Ok(info)
        })();
        s.trim();
        r
    })
}

fn sealing_fault(id: &ChunkId, e: OpenError) -> Error {
    Error::SealingFault {
        what: "blob",
        chunk: *id,
        reason: e.to_string(),
    }
}

/// Opens a just-sealed plain (not delta) blob with `s`'s buffers and checks
/// that it decodes to its id.
fn verify_sealed(
    key: &MasterKey,
    info: &BlobInfo,
    sealed: &[u8],
    s: &mut SealScratch,
) -> std::result::Result<(), OpenError> {
    let aad = info_aad(info)?;
    if !key.open_to(info.kind.purpose(), &aad, sealed, &mut s.opened) {
        return Err(OpenError::Authentication);
    }
    let raw_len = info.raw_len as usize;
    let plain: &[u8] = match info.codec {
        Codec::Raw => &s.opened,
        Codec::Zstd => {
            s.decoded.resize(raw_len, 0);
            // The slice bounds the output: a frame that decodes to more fails.
            let n = decompress_to(&s.opened, &mut s.decoded)
                .map_err(|e| OpenError::Decompression(e.to_string()))?;
            &s.decoded[..n]
        }
        Codec::Delta => return Err(OpenError::NeedsBase),
    };
    if plain.len() != raw_len {
        return Err(OpenError::Length {
            expected: info.raw_len,
            found: plain.len(),
        });
    }
    check_id(key, info, plain)
}

/// Compresses, seals and verifies a plaintext whose id is already known.
pub fn seal(
    key: &MasterKey,
    kind: BlobKind,
    id: ChunkId,
    plaintext: &[u8],
    level: i32,
) -> Result<SealedBlob> {
    let mut bytes = vec![0u8; sealed_bound(plaintext.len())];
    let info = seal_into(key, kind, id, plaintext, level, &mut bytes)?;
    bytes.truncate(info.stored_len as usize);
    Ok(SealedBlob {
        id,
        kind,
        codec: info.codec,
        raw_len: info.raw_len,
        delta: None,
        bytes,
    })
}

/// Seals a plaintext given its zstd compression (stored raw when that is not smaller).
fn seal_compressed(
    key: &MasterKey,
    kind: BlobKind,
    id: ChunkId,
    plaintext: &[u8],
    raw_len: u32,
    compressed: Vec<u8>,
) -> Result<SealedBlob> {
    let (codec, payload) = payload(&compressed, plaintext);
    let bytes = key.seal(kind.purpose(), &aad(kind, codec, raw_len, &id), payload)?;
    let blob = SealedBlob {
        id,
        kind,
        codec,
        raw_len,
        delta: None,
        bytes,
    };
    open(key, &blob.info(), &blob.bytes).map_err(|e| sealing_fault(&id, e))?;
    Ok(blob)
}

/// A delta is kept when it is at most this fraction of the raw chunk without
/// trying plain compression, and otherwise only when it is at most half the
/// plainly compressed size: a delta costs its readers the base's decoding.
const DELTA_SURE_FRACTION: usize = 16;

/// Deltas are compressed at least at this zstd level: level 1's small hash
/// table misses much of a 64 KiB prefix (benches/delta_bases.rs measures it).
pub const DELTA_MIN_LEVEL: i32 = 3;

/// Seals a data chunk as a delta against `base` (the verified plaintext of
/// `delta.base`) when that is much smaller than plain compression, else as [`seal`] does.
pub fn seal_delta(
    key: &MasterKey,
    id: ChunkId,
    plaintext: &[u8],
    delta: DeltaRef,
    base: &[u8],
    level: i32,
) -> Result<SealedBlob> {
    let raw_len = raw_len(BlobKind::Data, plaintext)?;
    delta
        .validate(&id, BlobKind::Data)
        .map_err(|what| Error::Internal { what })?;
    let d = compress_with_prefix(level.max(DELTA_MIN_LEVEL), plaintext, base)?;
    if d.len() * DELTA_SURE_FRACTION > plaintext.len() {
        let plain = compress(level, plaintext)?;
        if d.len() * 2 > plain.len() {
            return seal_compressed(key, BlobKind::Data, id, plaintext, raw_len, plain);
        }
    }
    let bytes = key.seal(KeyPurpose::Data, &delta_aad(raw_len, &id, &delta), &d)?;
    let info = BlobInfo {
        id,
        kind: BlobKind::Data,
        codec: Codec::Delta,
        offset: 0,
        stored_len: bytes.len() as u32,
        raw_len,
        delta: Some(delta),
    };
    open_delta(key, &info, &bytes, base).map_err(|e| Error::SealingFault {
        what: "delta blob",
        chunk: id,
        reason: e.to_string(),
    })?;
    Ok(SealedBlob {
        id,
        kind: BlobKind::Data,
        codec: Codec::Delta,
        raw_len,
        delta: Some(delta),
        bytes,
    })
}

/// Why a blob failed to open; the caller adds the pack and offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpenError {
    Authentication,
    Decompression(String),
    Length {
        expected: u32,
        found: usize,
    },
    IdMismatch {
        found: ChunkId,
    },
    TooLarge,
    /// The codec and the presence of a delta base disagree, or the base fields are invalid.
    DeltaMismatch,
    /// A delta was opened without its base's plaintext.
    NeedsBase,
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
            OpenError::DeltaMismatch => {
                f.write_str("codec and delta base fields disagree or are invalid")
            }
            OpenError::NeedsBase => f.write_str("a delta needs its base chunk to be opened"),
        }
    }
}

/// Checks a sealed blob's authentication and returns its payload, without decoding it.
pub fn authenticate(
    key: &MasterKey,
    info: &BlobInfo,
    sealed: &[u8],
) -> std::result::Result<Vec<u8>, OpenError> {
    if info.raw_len > info.kind.max_raw_len() || sealed.len() < SEAL_OVERHEAD {
        return Err(OpenError::TooLarge);
    }
    if let Some(d) = &info.delta {
        d.validate(&info.id, info.kind)
            .map_err(|_| OpenError::DeltaMismatch)?;
    }
    let aad = info_aad(info)?;
    key.open(info.kind.purpose(), &aad, sealed)
        .ok_or(OpenError::Authentication)
}

fn verify(
    key: &MasterKey,
    info: &BlobInfo,
    plain: Vec<u8>,
) -> std::result::Result<Vec<u8>, OpenError> {
    check_id(key, info, &plain)?;
    Ok(plain)
}

/// Checks that a plaintext hashes to its blob's id.
fn check_id(key: &MasterKey, info: &BlobInfo, plain: &[u8]) -> std::result::Result<(), OpenError> {
    let found = key.chunk_id(plain);
    if found != info.id {
        return Err(OpenError::IdMismatch { found });
    }
    Ok(())
}

/// Opens, decompresses and verifies a sealed blob against its info. A delta
/// needs its base: see [`open_delta`].
pub fn open(
    key: &MasterKey,
    info: &BlobInfo,
    sealed: &[u8],
) -> std::result::Result<Vec<u8>, OpenError> {
    if info.codec == Codec::Delta {
        return Err(OpenError::NeedsBase);
    }
    verify(key, info, open_link(key, info, sealed, None)?)
}

/// Opens a delta blob given the verified plaintext of its base, and verifies the result.
pub fn open_delta(
    key: &MasterKey,
    info: &BlobInfo,
    sealed: &[u8],
    base: &[u8],
) -> std::result::Result<Vec<u8>, OpenError> {
    if info.codec != Codec::Delta || info.delta.is_none() {
        return Err(OpenError::DeltaMismatch);
    }
    verify(key, info, open_link(key, info, sealed, Some(base))?)
}

/// Authenticates and decodes a blob (a delta on top of `base`) and checks its
/// length, but does not recompute its id.
///
/// Only for a link inside a delta chain on the read path: whatever it
/// decodes is the base of a chunk that is verified in full, and a wrong
/// base shows there as a wrong id (the reader then decodes the chain again
/// with [`open`] and [`open_delta`] to name the damaged link).
pub fn open_link(
    key: &MasterKey,
    info: &BlobInfo,
    sealed: &[u8],
    base: Option<&[u8]>,
) -> std::result::Result<Vec<u8>, OpenError> {
    let payload = authenticate(key, info, sealed)?;
    let plain = match (info.codec, base) {
        (Codec::Raw, _) => payload,
        (Codec::Zstd, _) => decompress(&payload, info.raw_len as usize)
            .map_err(|e| OpenError::Decompression(e.to_string()))?,
        (Codec::Delta, Some(base)) => decompress_with_prefix(&payload, base, info.raw_len as usize)
            .map_err(OpenError::Decompression)?,
        (Codec::Delta, None) => return Err(OpenError::NeedsBase),
    };
    if plain.len() != info.raw_len as usize {
        return Err(OpenError::Length {
            expected: info.raw_len,
            found: plain.len(),
        });
    }
    Ok(plain)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `seal_into` writes what `open` reads, raw or compressed, within
    /// `sealed_bound`, reusing its buffers across sizes; too little room
    /// is an error, not a short blob.
    #[test]
    fn seal_into_writes_blobs_that_open() {
        use crate::testutil::noise;
        let key = MasterKey::from_master(crate::crypto::Secret32::from_bytes([7; 32]));
        let texts = [
            (Vec::new(), Codec::Raw),
            (b"x".to_vec(), Codec::Raw),
            (noise(70_000, 1), Codec::Raw),
            (vec![b'a'; 200_000], Codec::Zstd),
            (noise(3000, 2), Codec::Raw),
            (b"row 1\nrow 2\n".repeat(5000), Codec::Zstd),
        ];
        for (i, (plain, codec)) in texts.iter().enumerate() {
            let kind = [BlobKind::Data, BlobKind::Tree][i % 2];
            let id = key.chunk_id(plain);
            let mut out = vec![0xee; sealed_bound(plain.len()) + 5];
            let info = seal_into(&key, kind, id, plain, 3, &mut out).unwrap();
            let n = info.stored_len as usize;
            assert!(n <= sealed_bound(plain.len()));
            assert!(
                out[n..].iter().all(|&b| b == 0xee),
                "text {i}: wrote past its length"
            );
            assert_eq!(info.codec, *codec, "text {i}");
            assert_eq!(open(&key, &info, &out[..n]).unwrap(), *plain);
            let short = sealed_bound(plain.len()) - 1;
            if info.codec == Codec::Raw {
                assert!(seal_into(&key, kind, id, plain, 3, &mut out[..short]).is_err());
            }
        }
    }

    /// A delta decodes against its base as raw content (a prefix), even a
    /// base that begins with zstd's dictionary magic, which zstd's
    /// dictionary loading would parse as a dictionary instead.
    #[test]
    fn deltas_decode_whatever_their_base_begins_with() {
        let mut base: Vec<u8> = (0u32..20_000)
            .flat_map(|i| (i * 7919).to_le_bytes())
            .collect();
        for magic in [false, true, false] {
            if magic {
                base[..4].copy_from_slice(&0xEC30_A437u32.to_le_bytes());
            } else {
                base[..4].copy_from_slice(b"INSE");
            }
            let mut data = base.clone();
            data[1000..1010].copy_from_slice(b"0123456789");
            data.extend_from_slice(b"a new row at the end");
            let frame = compress_with_prefix(3, &data, &base).unwrap();
            assert!(frame.len() < 200, "not a delta: {} bytes", frame.len());
            assert_eq!(
                decompress_with_prefix(&frame, &base, data.len()).unwrap(),
                data
            );
            // The output is bounded by the length the index claims.
            assert!(decompress_with_prefix(&frame, &base, data.len() - 1).is_err());
        }
    }
}
