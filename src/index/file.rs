//! One index file: its byte layout, encoding and checked decoding.
//!
//! ```text
//! header(16): "SOPVIDX\0" | version u32 | flags u32 (0)
//! sealed with the metadata key, AAD = the header; plaintext:
//!   n_supersedes u32 | n × index_id[32]
//!   n_packs u32      | n × (pack_id[32] | pack_size u64)
//!   n_entries u32    | n × (pack_no u32 | pack entry(88)), sorted by chunk id
//! ```

use crate::blob::BlobInfo;
use crate::crypto::{KeyPurpose, MasterKey};
use crate::error::{Error, Result};
use crate::format::pack::{decode_entry, encode_entry, ENTRY_LEN};
use crate::format::{write_header, Reader, HEADER_LEN, MAGIC_INDEX};
use crate::ids::{IndexId, PackId};

/// One entry of an index file (and of the cache): pack number, then the pack entry.
pub const INDEX_ENTRY_LEN: usize = 4 + ENTRY_LEN;
/// Decoder limits for one index file.
pub const MAX_INDEX_ENTRIES: usize = 64 * 1024 * 1024;
pub const MAX_INDEX_PACKS: usize = 16 * 1024 * 1024;

/// The decoded contents of one index file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IndexFile {
    pub supersedes: Vec<IndexId>,
    pub packs: Vec<(PackId, u64)>,
    /// (position in `packs`, blob), sorted by chunk id.
    pub entries: Vec<(u32, BlobInfo)>,
}

impl IndexFile {
    pub fn encode_plain(&self) -> Vec<u8> {
        let mut out =
            Vec::with_capacity(12 + self.packs.len() * 40 + self.entries.len() * INDEX_ENTRY_LEN);
        out.extend_from_slice(&(self.supersedes.len() as u32).to_le_bytes());
        for s in &self.supersedes {
            out.extend_from_slice(&s.0);
        }
        out.extend_from_slice(&(self.packs.len() as u32).to_le_bytes());
        for (p, size) in &self.packs {
            out.extend_from_slice(&p.0);
            out.extend_from_slice(&size.to_le_bytes());
        }
        out.extend_from_slice(&(self.entries.len() as u32).to_le_bytes());
        let mut sorted: Vec<&(u32, BlobInfo)> = self.entries.iter().collect();
        sorted.sort_by_key(|e| e.1.id);
        for (p, b) in sorted {
            out.extend_from_slice(&p.to_le_bytes());
            encode_entry(&mut out, b);
        }
        out
    }

    pub fn encode(&self, key: &MasterKey) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        write_header(&mut out, MAGIC_INDEX, 0);
        let sealed = key.seal(KeyPurpose::Meta, &out.clone(), &self.encode_plain())?;
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    pub fn decode(key: &MasterKey, bytes: &[u8], object: &str) -> Result<IndexFile> {
        let mut r = Reader::new(bytes, object);
        r.header(MAGIC_INDEX)?;
        let plain = key
            .open(KeyPurpose::Meta, &bytes[..HEADER_LEN], r.rest())
            .ok_or_else(|| Error::damaged(object, "index file failed authentication"))?;
        Self::decode_plain(&plain, object)
    }

    pub fn decode_plain(plain: &[u8], object: &str) -> Result<IndexFile> {
        let mut r = Reader::new(plain, object);
        let n = r.u32()? as usize;
        if n * 32 > r.remaining() {
            return Err(Error::damaged(
                object,
                format!("claims {n} superseded files, too many for its size"),
            ));
        }
        let supersedes = (0..n)
            .map(|_| Ok(IndexId(r.array()?)))
            .collect::<Result<Vec<_>>>()?;
        let n = r.u32()? as usize;
        if n > MAX_INDEX_PACKS || n * 40 > r.remaining() {
            return Err(Error::damaged(
                object,
                format!("claims {n} packs, too many for its size"),
            ));
        }
        let packs = (0..n)
            .map(|_| Ok((PackId(r.array()?), r.u64()?)))
            .collect::<Result<Vec<_>>>()?;
        let n = r.u32()? as usize;
        if n > MAX_INDEX_ENTRIES || n * INDEX_ENTRY_LEN != r.remaining() {
            return Err(Error::damaged(
                object,
                format!("claims {n} entries but holds {} bytes", r.remaining()),
            ));
        }
        let mut entries = Vec::with_capacity(n);
        for _ in 0..n {
            let p = r.u32()?;
            if p as usize >= packs.len() {
                return Err(Error::damaged(
                    object,
                    format!("entry refers to pack #{p} of {}", packs.len()),
                ));
            }
            let b = decode_entry(&mut r, object)?;
            let pack_size = packs[p as usize].1;
            if b.offset
                .checked_add(b.stored_len as u64)
                .is_none_or(|end| end > pack_size)
            {
                return Err(Error::damaged(
                    object,
                    format!("entry for chunk {} lies past the end of its pack", b.id),
                ));
            }
            if let Some((_, prev)) = entries.last() {
                let prev: &BlobInfo = prev;
                if prev.id > b.id {
                    return Err(Error::damaged(object, "entries are not sorted by chunk id"));
                }
            }
            entries.push((p, b));
        }
        Ok(IndexFile {
            supersedes,
            packs,
            entries,
        })
    }
}
