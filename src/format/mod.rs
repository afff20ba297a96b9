//! Fixed little-endian byte layouts: a bounds-checked reader and a writer.
//!
//! Everything parsed before decryption (file headers, pack trailers, key files,
//! index entries) uses these helpers, so a truncated or hostile file becomes a
//! [`Error::Damaged`] naming the object and the offset, never a panic.
//! The layouts themselves are written down in `format-spec.md`.
//!
//! One submodule per file kind: [`keyfile`], [`config`], [`pack`] (blobs and
//! the pack footer), [`tree`], [`manifest`], [`prune`] (prune records); index
//! files are [`crate::index`].
//!
//! Layer: uses `error`, `ids`, `crypto`, `chunker` and `blob` only; never I/O.

// On-disk lengths are u16/u32/u64: a narrowing cast must say why it fits.
#![deny(clippy::cast_possible_truncation)]

pub mod config;
pub mod keyfile;
pub mod manifest;
pub mod pack;
pub mod prune;
pub mod tree;

use crate::error::{Error, Result};

/// Magic numbers, 8 bytes each, at the start of every repository file.
pub const MAGIC_KEY: &[u8; 8] = b"SOPVKEY\0";
pub const MAGIC_CONFIG: &[u8; 8] = b"SOPVCFG\0";
pub const MAGIC_PACK: &[u8; 8] = b"SOPVPAK\0";
pub const MAGIC_PACK_END: &[u8; 8] = b"SOPVEND\0";
pub const MAGIC_INDEX: &[u8; 8] = b"SOPVIDX\0";
pub const MAGIC_SNAPSHOT: &[u8; 8] = b"SOPVSNP\0";

/// The format version this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// Length of the common header: magic(8) + version(u32) + flags(u32).
pub const HEADER_LEN: usize = 16;

pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    object: &'a str,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8], object: &'a str) -> Reader<'a> {
        Reader {
            buf,
            pos: 0,
            object,
        }
    }
    pub fn pos(&self) -> usize {
        self.pos
    }
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }
    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.remaining() < n {
            return Err(Error::damaged(
                self.object,
                format!(
                    "truncated: expected {n} more bytes at offset {}, found {}",
                    self.pos,
                    self.remaining()
                ),
            ));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    pub fn rest(&mut self) -> &'a [u8] {
        let s = &self.buf[self.pos..];
        self.pos = self.buf.len();
        s
    }
    pub fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.bytes(N)?);
        Ok(a)
    }
    pub fn u8(&mut self) -> Result<u8> {
        Ok(self.bytes(1)?[0])
    }
    pub fn u16(&mut self) -> Result<u16> {
        Ok(u16::from_le_bytes(self.array()?))
    }
    pub fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    pub fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array()?))
    }
    pub fn i64(&mut self) -> Result<i64> {
        Ok(i64::from_le_bytes(self.array()?))
    }
    /// Reads and checks the common 16-byte header; returns its flags word.
    pub fn header(&mut self, magic: &[u8; 8]) -> Result<u32> {
        Ok(self.header_versions(magic, &[FORMAT_VERSION])?.1)
    }
    /// Reads and checks the common 16-byte header of a file kind that has
    /// several versions; returns its version and flags word.
    pub fn header_versions(&mut self, magic: &[u8; 8], known: &[u32]) -> Result<(u32, u32)> {
        let found = self.bytes(8)?;
        if found != magic {
            return Err(Error::BadMagic {
                object: self.object.to_string(),
                expected: String::from_utf8_lossy(magic)
                    .trim_end_matches('\0')
                    .to_string(),
                found: String::from_utf8_lossy(found)
                    .trim_end_matches('\0')
                    .to_string(),
            });
        }
        let version = self.u32()?;
        if !known.contains(&version) {
            return Err(Error::UnsupportedVersion {
                object: self.object.to_string(),
                what: "file format",
                expected: known.iter().copied().max().unwrap_or(FORMAT_VERSION),
                found: version,
            });
        }
        Ok((version, self.u32()?))
    }
    /// Fails unless every byte was consumed.
    pub fn finish(&self) -> Result<()> {
        if self.remaining() != 0 {
            return Err(Error::damaged(
                self.object,
                format!(
                    "{} unexpected trailing bytes at offset {}",
                    self.remaining(),
                    self.pos
                ),
            ));
        }
        Ok(())
    }
}

/// Writes the common 16-byte header.
pub fn write_header(out: &mut Vec<u8>, magic: &[u8; 8], flags: u32) {
    write_header_version(out, magic, FORMAT_VERSION, flags);
}

/// Writes the common 16-byte header with another version than [`FORMAT_VERSION`].
pub fn write_header_version(out: &mut Vec<u8>, magic: &[u8; 8], version: u32, flags: u32) {
    out.extend_from_slice(magic);
    out.extend_from_slice(&version.to_le_bytes());
    out.extend_from_slice(&flags.to_le_bytes());
}

/// Decodes a postcard payload, mapping failures to a damage error naming the object.
pub fn decode_postcard<T: serde::de::DeserializeOwned>(bytes: &[u8], object: &str) -> Result<T> {
    let (v, rest) = postcard::take_from_bytes::<T>(bytes)
        .map_err(|e| Error::damaged(object, format!("undecodable payload: {e}")))?;
    if !rest.is_empty() {
        return Err(Error::damaged(
            object,
            format!("{} trailing bytes after payload", rest.len()),
        ));
    }
    Ok(v)
}

pub fn encode_postcard<T: serde::Serialize>(v: &T) -> Vec<u8> {
    postcard::to_allocvec(v).expect("postcard encoding into a Vec cannot fail")
}
