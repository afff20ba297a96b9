//! Pack files: many sealed blobs, an encrypted footer that lists them, a fixed trailer.
//!
//! ```text
//! header(16): "SOPVPAK\0" | version u32 | pack kind u32 (0 data, 1 tree)
//! blob 0 | blob 1 | ...                     each sealed by blob.rs
//! footer: sealed with the metadata key, AAD = the 16 header bytes;
//!         plaintext = count u32 | count × entry(88)
//! trailer(16): footer_len u32 | reserved u32 (0) | "SOPVEND\0"
//! entry(88): chunk_id[32] | offset u64 | stored_len u32 | raw_len u32 |
//!            kind u8 | codec u8 | depth u16 | generation u32 | base_id[32]
//! ```
//! The last three fields describe a delta's base ([`crate::blob::DeltaRef`]) and
//! are zero for every other codec. Chunk ids and lengths never appear in the clear.

use crate::blob::{BlobInfo, BlobKind, Codec, DeltaRef, SealedBlob};
use crate::crypto::{KeyPurpose, MasterKey, SEAL_OVERHEAD};
use crate::error::{Error, Result};
use crate::format::{write_header, Reader, HEADER_LEN, MAGIC_PACK, MAGIC_PACK_END};
use crate::ids::{ChunkId, PackId};
use sha2::Digest;

pub const TRAILER_LEN: usize = 16;
pub const ENTRY_LEN: usize = 88;
/// No pack may be larger than this (a decoder limit).
pub const MAX_PACK_SIZE: u64 = 1 << 30;
/// No pack may list more blobs than this.
pub const MAX_PACK_BLOBS: usize = 1 << 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PackKind {
    Data = 0,
    Tree = 1,
}

impl PackKind {
    pub fn for_blob(kind: BlobKind) -> PackKind {
        match kind {
            BlobKind::Data => PackKind::Data,
            BlobKind::Tree | BlobKind::ChunkList => PackKind::Tree,
        }
    }
}

pub fn encode_entry(out: &mut Vec<u8>, b: &BlobInfo) {
    out.extend_from_slice(&b.id.0);
    out.extend_from_slice(&b.offset.to_le_bytes());
    out.extend_from_slice(&b.stored_len.to_le_bytes());
    out.extend_from_slice(&b.raw_len.to_le_bytes());
    out.push(b.kind as u8);
    out.push(b.codec as u8);
    let d = b.delta.unwrap_or(DeltaRef {
        base: ChunkId([0; 32]),
        depth: 0,
        generation: 0,
    });
    out.extend_from_slice(&d.depth.to_le_bytes());
    out.extend_from_slice(&d.generation.to_le_bytes());
    out.extend_from_slice(&d.base.0);
}

pub fn decode_entry(r: &mut Reader<'_>, object: &str) -> Result<BlobInfo> {
    let id = ChunkId(r.array()?);
    let offset = r.u64()?;
    let stored_len = r.u32()?;
    let raw_len = r.u32()?;
    let kind_b = r.u8()?;
    let codec_b = r.u8()?;
    let depth = r.u16()?;
    let generation = r.u32()?;
    let base = ChunkId(r.array::<32>()?);
    let kind = BlobKind::from_u8(kind_b)
        .ok_or_else(|| Error::damaged(object, format!("unknown blob kind {kind_b}")))?;
    let codec = Codec::from_u8(codec_b)
        .ok_or_else(|| Error::damaged(object, format!("unknown codec {codec_b}")))?;
    let delta = if codec == Codec::Delta {
        let d = DeltaRef {
            base,
            depth,
            generation,
        };
        d.validate(&id, kind)
            .map_err(|e| Error::damaged(object, format!("blob {id}: {e}")))?;
        Some(d)
    } else {
        if depth != 0 || generation != 0 || base != ChunkId([0; 32]) {
            return Err(Error::damaged(
                object,
                format!("blob {id}: delta fields are set on a blob that is not a delta"),
            ));
        }
        None
    };
    if raw_len > kind.max_raw_len() || (stored_len as usize) < SEAL_OVERHEAD {
        return Err(Error::damaged(
            object,
            format!("blob {id}: lengths out of range (stored {stored_len}, raw {raw_len})"),
        ));
    }
    Ok(BlobInfo {
        id,
        kind,
        codec,
        offset,
        stored_len,
        raw_len,
        delta,
    })
}

/// Collects sealed blobs into one pack.
///
/// The bytes are held in memory until [`PackWriter::drain`] hands them to a
/// file the pack is staged in; from then on only what was added since the
/// last drain is held, so a pack being filled costs about one batch of
/// memory, not the whole pack. The pack's id (SHA-256 of its bytes) is
/// hashed as they go.
pub struct PackWriter {
    kind: PackKind,
    /// The header: the footer's associated data.
    header: [u8; HEADER_LEN],
    /// The bytes after the `drained` ones.
    buf: Vec<u8>,
    /// How many bytes were handed out by `drain`, and hashed.
    drained: u64,
    hasher: sha2::Sha256,
    blobs: Vec<BlobInfo>,
}

/// A finished pack: its id, what it holds, and its bytes after the ones
/// already drained.
pub struct FinishedPack {
    pub id: PackId,
    pub kind: PackKind,
    /// The pack's whole length.
    pub len: u64,
    /// The pack's last `bytes.len()` bytes: all of them if it was never drained.
    pub bytes: Vec<u8>,
    pub blobs: Vec<BlobInfo>,
}

impl PackWriter {
    pub fn new(kind: PackKind) -> PackWriter {
        PackWriter::with_buffer(kind, Vec::with_capacity(1 << 20))
    }
    /// A writer that fills `buf` (cleared first): the drained buffer of the
    /// pack before it, so that a long run reuses its buffers.
    pub fn with_buffer(kind: PackKind, mut buf: Vec<u8>) -> PackWriter {
        buf.clear();
        write_header(&mut buf, MAGIC_PACK, kind as u32);
        let header = buf[..].try_into().expect("a header is HEADER_LEN bytes");
        PackWriter {
            kind,
            header,
            buf,
            drained: 0,
            hasher: sha2::Sha256::new(),
            blobs: Vec::new(),
        }
    }
    /// The pack's length so far.
    pub fn len(&self) -> u64 {
        self.drained + self.buf.len() as u64
    }
    pub fn is_empty(&self) -> bool {
        self.blobs.is_empty()
    }
    pub fn add(&mut self, blob: &SealedBlob) -> BlobInfo {
        self.add_bytes(blob.info(), &blob.bytes)
    }
    /// Makes room for `additional` more bytes of blobs, exactly, so that a
    /// buffer reused pack after pack keeps the size its batches need.
    pub fn reserve(&mut self, additional: usize) {
        self.buf.reserve_exact(additional);
    }
    /// Hands over the buffer once every byte in it was drained (the writer
    /// goes on with an empty one, for its footer); `None` while it holds
    /// bytes, which are the pack's and must stay.
    pub fn take_buffer(&mut self) -> Option<Vec<u8>> {
        self.buf.is_empty().then(|| std::mem::take(&mut self.buf))
    }
    /// Appends a sealed blob's `bytes`, described by `info` (whose offset
    /// is set here); returns the info as recorded.
    pub fn add_bytes(&mut self, mut info: BlobInfo, bytes: &[u8]) -> BlobInfo {
        debug_assert_eq!(info.stored_len as usize, bytes.len());
        info.offset = self.len();
        self.buf.extend_from_slice(bytes);
        self.blobs.push(info);
        info
    }
    /// Hands the bytes added since the last drain to `write`, and forgets
    /// them once it succeeds. After an error the pack cannot be completed
    /// from memory any more: the caller gives it up.
    pub fn drain(&mut self, write: impl FnOnce(&[u8]) -> Result<()>) -> Result<()> {
        write(&self.buf)?;
        self.hasher.update(&self.buf);
        self.drained += self.buf.len() as u64;
        self.buf.clear();
        Ok(())
    }
    pub fn finish(mut self, key: &MasterKey) -> Result<FinishedPack> {
        let mut plain = Vec::with_capacity(4 + self.blobs.len() * ENTRY_LEN);
        let count = u32::try_from(self.blobs.len()).map_err(|_| Error::Internal {
            what: format!(
                "a pack of {} blobs: expected at most u32::MAX",
                self.blobs.len()
            ),
        })?;
        plain.extend_from_slice(&count.to_le_bytes());
        for b in &self.blobs {
            encode_entry(&mut plain, b);
        }
        let footer = key.seal(KeyPurpose::Meta, &self.header, &plain)?;
        self.buf
            .reserve_exact(footer.len() + 4 + 4 + MAGIC_PACK_END.len());
        self.buf.extend_from_slice(&footer);
        let footer_len = u32::try_from(footer.len()).map_err(|_| Error::Internal {
            what: format!(
                "a pack footer of {} bytes: expected at most u32::MAX",
                footer.len()
            ),
        })?;
        self.buf.extend_from_slice(&footer_len.to_le_bytes());
        self.buf.extend_from_slice(&0u32.to_le_bytes());
        self.buf.extend_from_slice(MAGIC_PACK_END);
        self.hasher.update(&self.buf);
        Ok(FinishedPack {
            id: PackId(self.hasher.finalize().into()),
            kind: self.kind,
            len: self.drained + self.buf.len() as u64,
            bytes: self.buf,
            blobs: self.blobs,
        })
    }
}

/// Parses the trailer from the last 16 bytes of a pack of `pack_len` bytes;
/// returns the footer's offset and length.
pub fn parse_trailer(trailer: &[u8], pack_len: u64, object: &str) -> Result<(u64, u32)> {
    if pack_len > MAX_PACK_SIZE {
        return Err(Error::damaged(
            object,
            format!("pack of {pack_len} bytes exceeds the limit of {MAX_PACK_SIZE}"),
        ));
    }
    let mut r = Reader::new(trailer, object);
    let footer_len = r.u32()?;
    let reserved = r.u32()?;
    let magic = r.bytes(8)?;
    r.finish()?;
    if magic != MAGIC_PACK_END {
        return Err(Error::damaged(
            object,
            "pack trailer has no end magic (truncated?)",
        ));
    }
    if reserved != 0 {
        return Err(Error::damaged(object, "reserved trailer field is not zero"));
    }
    let min = (HEADER_LEN + TRAILER_LEN) as u64 + footer_len as u64;
    if (footer_len as usize) < SEAL_OVERHEAD + 4 || min > pack_len {
        return Err(Error::damaged(
            object,
            format!("footer length {footer_len} does not fit in a pack of {pack_len} bytes"),
        ));
    }
    Ok((
        pack_len - TRAILER_LEN as u64 - footer_len as u64,
        footer_len,
    ))
}

/// Opens and decodes a sealed footer; checks every entry lies between header and footer.
pub fn decode_footer(
    key: &MasterKey,
    header: &[u8],
    sealed: &[u8],
    footer_offset: u64,
    object: &str,
) -> Result<Vec<BlobInfo>> {
    let mut hr = Reader::new(header, object);
    let kind = hr.header(MAGIC_PACK)?;
    if kind > 1 {
        return Err(Error::damaged(object, format!("unknown pack kind {kind}")));
    }
    let plain = key
        .open(KeyPurpose::Meta, header, sealed)
        .ok_or_else(|| Error::damaged(object, "pack footer failed authentication"))?;
    decode_footer_plain(&plain, footer_offset, object)
}

/// Decodes a footer's plaintext.
pub fn decode_footer_plain(
    plain: &[u8],
    footer_offset: u64,
    object: &str,
) -> Result<Vec<BlobInfo>> {
    let mut r = Reader::new(plain, object);
    let count = r.u32()? as usize;
    if count > MAX_PACK_BLOBS || count * ENTRY_LEN != r.remaining() {
        return Err(Error::damaged(
            object,
            format!(
                "footer claims {count} entries but holds {} bytes",
                r.remaining()
            ),
        ));
    }
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        let b = decode_entry(&mut r, object)?;
        let end = b.offset.checked_add(b.stored_len as u64);
        if b.offset < HEADER_LEN as u64 || end.is_none_or(|e| e > footer_offset) {
            return Err(Error::damaged(
                object,
                format!("blob {} lies outside the pack's blob area", b.id),
            ));
        }
        out.push(b);
    }
    Ok(out)
}

/// Reads the list of blobs of a whole pack held in memory.
pub fn read_footer_from_bytes(
    key: &MasterKey,
    bytes: &[u8],
    object: &str,
) -> Result<Vec<BlobInfo>> {
    if bytes.len() < HEADER_LEN + TRAILER_LEN {
        return Err(Error::damaged(
            object,
            format!("{} bytes is too short for a pack", bytes.len()),
        ));
    }
    let (off, len) = parse_trailer(
        &bytes[bytes.len() - TRAILER_LEN..],
        bytes.len() as u64,
        object,
    )?;
    // parse_trailer checked that the footer lies within `bytes`.
    let sealed = usize::try_from(off)
        .ok()
        .zip(usize::try_from(len).ok())
        .and_then(|(o, l)| bytes.get(o..o.checked_add(l)?))
        .ok_or_else(|| {
            Error::damaged(
                object,
                format!("footer at {off}+{len} lies outside the pack"),
            )
        })?;
    decode_footer(key, &bytes[..HEADER_LEN], sealed, off, object)
}
