//! Content-defined chunking: FastCDC (fastcdc 5.0.0, pinned) with a key-derived gear table.
//!
//! The 256-entry gear table is the first 2048 bytes of the BLAKE3 XOF keyed
//! with the chunker subkey, read as little-endian u64s; the shifted table is
//! each entry shifted left by one. Keying the table hides cut points (and so
//! chunk sizes) from anyone without the key. Masks come from
//! `fastcdc::v2020::select_masks(avg, Level1)`.

use crate::crypto::MasterKey;
use crate::error::{Error, Result};
use fastcdc::v2020::{cut_gear, select_masks, Normalization};
use serde::{Deserialize, Serialize};
use std::io::Read;

/// Minimum, average and maximum chunk sizes in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkerProfile {
    pub min: u32,
    pub avg: u32,
    pub max: u32,
}

impl Default for ChunkerProfile {
    /// 16 KiB / 64 KiB / 256 KiB: small enough that a dump's changed rows cost
    /// little, large enough to keep per-chunk overhead low (DESIGN.md §4).
    fn default() -> Self {
        ChunkerProfile {
            min: 16 * 1024,
            avg: 64 * 1024,
            max: 256 * 1024,
        }
    }
}

impl ChunkerProfile {
    pub fn validate(&self) -> Result<()> {
        use fastcdc::v2020 as f;
        let (min, avg, max) = (self.min as usize, self.avg as usize, self.max as usize);
        let ok = (f::MINIMUM_MIN..=f::MINIMUM_MAX).contains(&min)
            && (f::AVERAGE_MIN..=f::AVERAGE_MAX).contains(&avg)
            && (f::MAXIMUM_MIN..=f::MAXIMUM_MAX).contains(&max)
            && min <= avg
            && avg <= max
            && min % 2 == 0
            && avg % 2 == 0
            && max % 2 == 0;
        if ok {
            Ok(())
        } else {
            Err(Error::damaged(
                "chunker profile",
                format!("invalid sizes {self:?}"),
            ))
        }
    }
}

/// A keyed FastCDC chunker.
pub struct Chunker {
    gear: Box<[u64; 256]>,
    gear_ls: Box<[u64; 256]>,
    profile: ChunkerProfile,
    mask_s: u64,
    mask_l: u64,
}

impl Chunker {
    pub fn new(key: &MasterKey, profile: ChunkerProfile) -> Chunker {
        Chunker::with_gear_key(key.gear_key.as_bytes(), profile)
    }

    /// A chunker from the raw 32-byte gear subkey (test vectors use this).
    pub fn with_gear_key(gear_key: &[u8; 32], profile: ChunkerProfile) -> Chunker {
        let mut xof = blake3::Hasher::new_keyed(gear_key).finalize_xof();
        let mut raw = [0u8; 2048];
        xof.fill(&mut raw);
        let mut gear = Box::new([0u64; 256]);
        let mut gear_ls = Box::new([0u64; 256]);
        for i in 0..256 {
            gear[i] = u64::from_le_bytes(raw[i * 8..i * 8 + 8].try_into().unwrap());
            gear_ls[i] = gear[i] << 1;
        }
        let (mask_s, mask_l) = select_masks(profile.avg as usize, Normalization::Level1);
        Chunker {
            gear,
            gear_ls,
            profile,
            mask_s,
            mask_l,
        }
    }

    pub fn profile(&self) -> ChunkerProfile {
        self.profile
    }

    /// Length of the next chunk at the start of `buf`, which must hold either
    /// at least `max` bytes or the whole rest of the input.
    pub fn cut(&self, buf: &[u8]) -> usize {
        let p = self.profile;
        let (_, len) = cut_gear(
            buf,
            p.min as usize,
            p.avg as usize,
            p.max as usize,
            self.mask_s,
            self.mask_l,
            self.mask_s << 1,
            self.mask_l << 1,
            &self.gear[..],
            &self.gear_ls[..],
        );
        len
    }

    /// All cut points (chunk end offsets) of an in-memory buffer.
    pub fn cut_points(&self, data: &[u8]) -> Vec<usize> {
        let mut out = Vec::new();
        let mut pos = 0;
        while pos < data.len() {
            pos += self.cut(&data[pos..]);
            out.push(pos);
        }
        out
    }

    /// Splits a reader into chunks with a bounded buffer, calling `f` for each.
    /// `on_read` sees every byte read, in order (for stream hashes).
    pub fn for_each_chunk<R: Read>(
        &self,
        reader: R,
        mut on_read: impl FnMut(&[u8]),
        mut f: impl FnMut(&[u8]) -> Result<()>,
        read_err: impl FnMut(std::io::Error) -> Error,
    ) -> Result<u64> {
        self.for_each_batch(
            reader,
            None,
            |new, chunks| {
                on_read(new);
                chunks.iter().try_for_each(|c| f(c))
            },
            read_err,
        )
    }

    /// Splits a reader into chunks with a bounded buffer (4 MiB or twice the
    /// maximum chunk). After each refill it calls `f(new_bytes, chunks)`: the
    /// bytes just read, in stream order, and every chunk that can be cut before
    /// the next refill. Callers hash and process a batch in parallel.
    ///
    /// `size_hint` (a file's size from `stat`) only sizes the first buffer, so
    /// that a small file does not cost a 4 MiB allocation; a file that grew
    /// while being read still gets the full buffer.
    pub fn for_each_batch<R: Read>(
        &self,
        mut reader: R,
        size_hint: Option<u64>,
        mut f: impl FnMut(&[u8], &[&[u8]]) -> Result<()>,
        mut read_err: impl FnMut(std::io::Error) -> Error,
    ) -> Result<u64> {
        let max = self.profile.max as usize;
        let cap = (4 * 1024 * 1024).max(max * 2);
        // One byte past the hint, so that the end of the file is seen without a refill.
        let first = size_hint.map_or(cap, |n| (n as usize).saturating_add(1).clamp(4096, cap));
        let mut buf = vec![0u8; first];
        let (mut start, mut end) = (0usize, 0usize);
        let mut eof = false;
        let mut total = 0u64;
        loop {
            // Keep the unchunked tail, then fill the buffer up.
            buf.copy_within(start..end, 0);
            end -= start;
            let new_from = end;
            while !eof && end < cap {
                if end == buf.len() {
                    buf.resize(cap, 0);
                }
                crate::interrupt::check()?;
                match reader.read(&mut buf[end..]) {
                    Ok(0) => eof = true,
                    Ok(n) => {
                        end += n;
                        total += n as u64;
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(read_err(e)),
                }
            }
            // Cut while a whole maximal chunk is buffered, or to the end at EOF.
            let mut cuts = Vec::new();
            let mut pos = 0;
            while pos < end && (eof || end - pos >= max) {
                let n = self.cut(&buf[pos..end]);
                cuts.push((pos, n));
                pos += n;
            }
            let chunks: Vec<&[u8]> = cuts.iter().map(|&(p, n)| &buf[p..p + n]).collect();
            f(&buf[new_from..end], &chunks)?;
            start = pos;
            if eof && start == end {
                return Ok(total);
            }
        }
    }
}
