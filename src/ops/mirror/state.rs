//! The destinations a repository was mirrored to, for `mirror --status`:
//! one JSON file per repository, `STATE_DIR/mirrors/REPO_ID.json`
//! (format-spec.md §16). Local bookkeeping only; losing it loses no data.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Destination {
    /// The directory (absolute) or `s3://` URL.
    pub location: String,
    /// Last successful run, seconds since the epoch (UTC).
    pub last_sync: i64,
    pub copied_files: u64,
    pub copied_bytes: u64,
    pub deleted_files: u64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct MirrorState {
    pub version: u32,
    pub repository: String,
    pub destinations: Vec<Destination>,
}

pub fn path(state_dir: &Path, repo_id: &str) -> PathBuf {
    state_dir.join("mirrors").join(format!("{repo_id}.json"))
}

pub fn load(state_dir: &Path, repo_id: &str) -> Result<MirrorState> {
    let p = path(state_dir, repo_id);
    match std::fs::read(&p) {
        Ok(b) => serde_json::from_slice(&b).map_err(|e| Error::LocalState {
            path: p.clone(),
            reason: format!("not a mirror state file ({e}); remove it to start afresh"),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(MirrorState {
            version: 1,
            repository: repo_id.to_string(),
            destinations: Vec::new(),
        }),
        Err(e) => Err(Error::io(&p, e)),
    }
}

/// Records a successful run (replacing the destination's previous entry).
pub fn record(state_dir: &Path, repo_id: &str, entry: Destination) -> Result<()> {
    let mut s = load(state_dir, repo_id)?;
    s.version = 1;
    s.repository = repo_id.to_string();
    s.destinations.retain(|d| d.location != entry.location);
    s.destinations.push(entry);
    s.destinations.sort_by(|a, b| a.location.cmp(&b.location));
    let p = path(state_dir, repo_id);
    let dir = p.parent().expect("state path has a parent");
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let tmp = p.with_extension(format!("json.{}.tmp", std::process::id()));
    let bytes = serde_json::to_vec_pretty(&s).expect("state encodes");
    std::fs::write(&tmp, bytes).map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, &p).map_err(|e| Error::io(&p, e))
}
