//! The repository config: chunker profile, pack size, compression level.
//!
//! ```text
//! header(16): "SOPVCFG\0" | version u32 | flags u32 (0)
//! repo_id[32]                                  in the clear, to recognise the repository
//! sealed with the metadata key, AAD = the 48 bytes before it: postcard(Config)
//! ```

use crate::chunker::ChunkerProfile;
use crate::crypto::{KeyPurpose, MasterKey};
use crate::error::{Error, Result};
use crate::format::{
    decode_postcard, encode_postcard, write_header, Reader, HEADER_LEN, MAGIC_CONFIG,
};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Config {
    pub repo_id: [u8; 32],
    pub chunker: ChunkerProfile,
    /// Target size of data packs in bytes.
    pub pack_size: u32,
    /// zstd level for new blobs.
    pub compression_level: i32,
    pub created: i64,
    /// Optional features this repository uses; readers refuse unknown ones.
    pub features: Vec<String>,
}

pub const DEFAULT_PACK_SIZE: u32 = 16 * 1024 * 1024;
/// zstd level 1: on 64 KiB chunks of a real pg_dump (the corpus of
/// `shared/corpus/make-corpus.sh`, day 1, 61 MB) it stored 19.9 MB at 218 MB/s
/// against 20.9 MB at 179 MB/s for level 3 and 22.3 MB at 135 MB/s for level 4:
/// faster *and* smaller at this chunk size. `init --compression N` overrides it.
pub const DEFAULT_COMPRESSION_LEVEL: i32 = 1;
/// The delta codec (codec 2): data blobs may be zstd deltas against a base chunk.
pub const FEATURE_DELTA: &str = "delta";
pub const KNOWN_FEATURES: &[&str] = &[FEATURE_DELTA];

impl Config {
    pub fn encode(&self, key: &MasterKey) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        write_header(&mut out, MAGIC_CONFIG, 0);
        out.extend_from_slice(&self.repo_id);
        let sealed = key.seal(KeyPurpose::Meta, &out.clone(), &encode_postcard(self))?;
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// The repository id from the clear part, without the key.
    pub fn peek_repo_id(bytes: &[u8], object: &str) -> Result<[u8; 32]> {
        let mut r = Reader::new(bytes, object);
        r.header(MAGIC_CONFIG)?;
        r.array()
    }

    pub fn decode(key: &MasterKey, bytes: &[u8], object: &str) -> Result<Config> {
        let repo_id = Self::peek_repo_id(bytes, object)?;
        let aad = &bytes[..HEADER_LEN + 32];
        let plain = key
            .open(KeyPurpose::Meta, aad, &bytes[HEADER_LEN + 32..])
            .ok_or_else(|| Error::damaged(object, "config failed authentication"))?;
        let c = Self::decode_plain(&plain, object)?;
        if c.repo_id != repo_id {
            return Err(Error::damaged(
                object,
                "repository id in the clear does not match the sealed one",
            ));
        }
        Ok(c)
    }

    pub fn decode_plain(plain: &[u8], object: &str) -> Result<Config> {
        let c: Config = decode_postcard(plain, object)?;
        c.chunker.validate().map_err(|_| {
            Error::damaged(object, format!("invalid chunker profile {:?}", c.chunker))
        })?;
        if !(1024 * 1024..=512 * 1024 * 1024).contains(&c.pack_size) {
            return Err(Error::damaged(
                object,
                format!("pack size {} out of range", c.pack_size),
            ));
        }
        if !(-7..=22).contains(&c.compression_level) {
            return Err(Error::damaged(
                object,
                format!("compression level {} out of range", c.compression_level),
            ));
        }
        if let Some(f) = c
            .features
            .iter()
            .find(|f| !KNOWN_FEATURES.contains(&f.as_str()))
        {
            return Err(Error::UnsupportedFeature {
                object: object.to_string(),
                feature: f.clone(),
            });
        }
        Ok(c)
    }
}
