//! Prune records (`prune/`, format-spec §16.2): what a prune (or `repair
//! index`) forgot, deleted and superseded, so that mirrors can follow.
//!
//! ```text
//! | header: "SOPVPRN\0" version u32 flags u32 | sealed postcard(PruneRecord) |
//! ```
//! The header is the associated data of the seal (metadata key).

use crate::crypto::{KeyPurpose, MasterKey};
use crate::error::{Error, Result};
use crate::format::manifest::SnapshotTime;
use crate::format::{decode_postcard, encode_postcard, write_header, Reader, HEADER_LEN};
use crate::ids::{IndexId, PackId, SnapshotId};
use serde::{Deserialize, Serialize};

pub const MAGIC_PRUNE: &[u8; 8] = b"SOPVPRN\0";

/// What prune did, as written in its authenticated record.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PruneRecord {
    pub time: Option<SnapshotTime>,
    pub host: String,
    pub user: String,
    pub forgotten: Vec<SnapshotId>,
    pub deleted_packs: Vec<PackId>,
    pub superseded_index: Vec<IndexId>,
}

impl PruneRecord {
    pub fn encode(&self, key: &MasterKey) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        write_header(&mut out, MAGIC_PRUNE, 0);
        let sealed = key.seal(KeyPurpose::Meta, &out.clone(), &encode_postcard(self))?;
        out.extend_from_slice(&sealed);
        Ok(out)
    }
    pub fn decode(key: &MasterKey, bytes: &[u8], object: &str) -> Result<PruneRecord> {
        let mut r = Reader::new(bytes, object);
        r.header(MAGIC_PRUNE)?;
        let plain = key
            .open(KeyPurpose::Meta, &bytes[..HEADER_LEN], r.rest())
            .ok_or_else(|| Error::damaged(object, "prune record failed authentication"))?;
        decode_postcard(&plain, object)
    }
}
