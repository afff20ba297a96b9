//! Snapshot manifests: what one snapshot run recorded.
//!
//! ```text
//! header(16): "SOPVSNP\0" | version u32 (1 or 2) | flags u32 (0)
//! sealed with the metadata key, AAD = the header:
//!   version 1: postcard(Snapshot)
//!   version 2: postcard(Snapshot) || postcard(Vec<Option<u64>>)   (the stream tail)
//! ```
//! The stream tail holds, per stream record in order, what postcard cannot
//! add to `StreamRecord` without breaking older manifests: `shrunk_from`.
//! A manifest is written as version 2 only when the tail says something, so
//! every other manifest stays byte for byte what older versions wrote, and
//! an older reader meeting a version-2 one stops with `UnsupportedVersion`
//! rather than skipping it as damaged.
//! The time carries the UTC offset of the machine that took the snapshot, so
//! the human name `SOURCE_YYYY-MM-DD[-N]` and retention buckets never depend on
//! the time zone of the machine that reads it.

use crate::chunker::ChunkerProfile;
use crate::crypto::{KeyPurpose, MasterKey};
use crate::error::{Error, Result};
use crate::format::tree::Timestamp;
use crate::format::{
    decode_postcard, encode_postcard, write_header_version, Reader, FORMAT_VERSION, HEADER_LEN,
    MAGIC_SNAPSHOT,
};
use crate::ids::{ChunkId, SnapshotId};
use chrono::{DateTime, FixedOffset, TimeZone};
use serde::{Deserialize, Serialize};

/// Decoder limit on a manifest's sealed payload.
pub const MAX_MANIFEST_LEN: usize = 64 * 1024 * 1024;

/// The manifest version whose payload ends with the stream tail.
pub const MANIFEST_VERSION_TAIL: u32 = 2;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotTime {
    pub at: Timestamp,
    /// Seconds east of UTC.
    pub utc_offset: i32,
}

impl SnapshotTime {
    pub fn to_datetime(&self) -> DateTime<FixedOffset> {
        let off = FixedOffset::east_opt(self.utc_offset)
            .unwrap_or_else(|| FixedOffset::east_opt(0).unwrap());
        off.timestamp_opt(self.at.sec, self.at.nsec.min(999_999_999))
            .single()
            .unwrap_or_else(|| off.timestamp_opt(0, 0).unwrap())
    }
    pub fn from_datetime(t: DateTime<FixedOffset>) -> SnapshotTime {
        SnapshotTime {
            at: Timestamp {
                sec: t.timestamp(),
                nsec: t.timestamp_subsec_nanos(),
            },
            utc_offset: t.offset().local_minus_utc(),
        }
    }
    pub fn rfc3339(&self) -> String {
        self.to_datetime()
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, false)
    }
    pub fn date(&self) -> String {
        self.to_datetime().format("%Y-%m-%d").to_string()
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamRecord {
    /// File name of the stream at the snapshot's root.
    pub name: String,
    /// The shell command, or `None` for standard input.
    pub command: Option<String>,
    /// Exit status of the command (None for standard input).
    pub exit_status: Option<i32>,
    pub bytes: u64,
    /// SHA-256 of the stream's bytes, comparable with `sha256sum`.
    pub sha256: [u8; 32],
    pub started: SnapshotTime,
    pub ended: SnapshotTime,
    /// The stream's size in the parent snapshot, when this one is smaller
    /// than the share of it the run warns under (a dump that shrank that
    /// much is often a failed one). Carried in the stream tail of a
    /// version-2 manifest, not in the postcard struct.
    #[serde(skip)]
    pub shrunk_from: Option<u64>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub files: u64,
    pub dirs: u64,
    /// Files whose content was reused from the parent snapshot without reading.
    pub files_unchanged: u64,
    /// Bytes of all files and streams in the snapshot.
    pub bytes_total: u64,
    /// Bytes actually read from files and streams.
    pub bytes_read: u64,
    /// Raw bytes of chunks that were new to the repository.
    pub bytes_new: u64,
    /// Bytes written to packs (compressed and sealed) for new blobs.
    pub bytes_stored: u64,
    pub chunks_new: u64,
    pub duration_ms: u64,
    /// Paths that could not be read (the snapshot is incomplete when non-empty).
    pub errors: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub time: SnapshotTime,
    /// The human name, `SOURCE_YYYY-MM-DD` with `-N` for a second, third... snapshot that day.
    pub name: String,
    pub source: String,
    pub host: String,
    pub user: String,
    pub tags: Vec<String>,
    /// The absolute paths that were backed up, as bytes.
    pub paths: Vec<Vec<u8>>,
    pub streams: Vec<StreamRecord>,
    pub root: ChunkId,
    pub parent: Option<SnapshotId>,
    pub chunker: ChunkerProfile,
    pub program: String,
    pub summary: Summary,
    /// False when some path could not be read.
    pub complete: bool,
}

impl Snapshot {
    pub fn encode(&self, key: &MasterKey) -> Result<Vec<u8>> {
        let mut plain = encode_postcard(self);
        let version = if self.streams.iter().any(|r| r.shrunk_from.is_some()) {
            let tail: Vec<Option<u64>> = self.streams.iter().map(|r| r.shrunk_from).collect();
            plain.extend_from_slice(&encode_postcard(&tail));
            MANIFEST_VERSION_TAIL
        } else {
            FORMAT_VERSION
        };
        let mut out = Vec::new();
        write_header_version(&mut out, MAGIC_SNAPSHOT, version, 0);
        let sealed = key.seal(KeyPurpose::Meta, &out.clone(), &plain)?;
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    pub fn decode(key: &MasterKey, bytes: &[u8], object: &str) -> Result<Snapshot> {
        let mut r = Reader::new(bytes, object);
        let (version, _flags) =
            r.header_versions(MAGIC_SNAPSHOT, &[FORMAT_VERSION, MANIFEST_VERSION_TAIL])?;
        let sealed = r.rest();
        if sealed.len() > MAX_MANIFEST_LEN {
            return Err(Error::damaged(object, "manifest exceeds the size limit"));
        }
        let plain = key
            .open(KeyPurpose::Meta, &bytes[..HEADER_LEN], sealed)
            .ok_or_else(|| Error::damaged(object, "snapshot manifest failed authentication"))?;
        Self::decode_payload(&plain, version, object)
    }

    /// Decodes a version-1 payload.
    pub fn decode_plain(plain: &[u8], object: &str) -> Result<Snapshot> {
        decode_postcard(plain, object)
    }

    /// Decodes the payload of a manifest of `version` (1, or 2 with the stream tail).
    pub fn decode_payload(plain: &[u8], version: u32, object: &str) -> Result<Snapshot> {
        if version != MANIFEST_VERSION_TAIL {
            return Self::decode_plain(plain, object);
        }
        let (mut snap, tail) = postcard::take_from_bytes::<Snapshot>(plain)
            .map_err(|e| Error::damaged(object, format!("undecodable payload: {e}")))?;
        let tail: Vec<Option<u64>> = decode_postcard(tail, object)?;
        if tail.len() != snap.streams.len() {
            return Err(Error::damaged(
                object,
                format!(
                    "stream tail: expected {} entries (one per stream), found {}",
                    snap.streams.len(),
                    tail.len()
                ),
            ));
        }
        for (r, shrunk_from) in snap.streams.iter_mut().zip(tail) {
            r.shrunk_from = shrunk_from;
        }
        Ok(snap)
    }
}
