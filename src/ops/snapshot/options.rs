//! What a snapshot is asked to back up ([`SnapshotOptions`]: paths, dump
//! streams, tags, excludes and switches) and the checks on it that need no
//! repository: names of sources and streams, tags, and that there is
//! something to back up.

use crate::error::{Error, Result};
use crate::format::manifest::SnapshotTime;
use std::path::PathBuf;

/// Where a dump stream's bytes come from.
pub enum StreamInput {
    Stdin,
    /// A command run with `sh -c`; its standard output is the stream.
    Command(String),
}

/// One dump stream: stored as a file `name` at the snapshot's root.
pub struct StreamSpec {
    pub name: String,
    pub input: StreamInput,
}

#[derive(Default)]
pub struct SnapshotOptions {
    pub source: String,
    pub tags: Vec<String>,
    pub paths: Vec<PathBuf>,
    pub streams: Vec<StreamSpec>,
    /// Glob patterns: without `/` they match a name at any depth, with `/` the
    /// absolute path; a pattern that is not UTF-8 matches literally.
    pub excludes: Vec<std::ffi::OsString>,
    pub one_file_system: bool,
    /// Record this time instead of now (for importing older backups).
    pub time: Option<SnapshotTime>,
    /// Read every file even when the parent says it is unchanged.
    pub force: bool,
    /// Store no new chunk as a delta against its parent version.
    pub no_delta: bool,
    /// Accept a stream that produces no bytes; otherwise it fails the run
    /// (closed standard input, a dump command that wrote nothing).
    pub allow_empty: bool,
    /// Warn about a stream smaller than this share of its size in the
    /// parent snapshot (`0.5`: under half); 0 never warns.
    pub shrink_warn: f64,
}

/// Checks a source or stream name: 1 to 200 ASCII letters, digits, `.`,
/// `-` and `_`, and not `.`, `..`, `latest` or `latest-complete`. Names end
/// up in snapshot names, selectors (`SOURCE:latest`) and file names, so
/// nothing that a shell or a selector would read differently is allowed.
pub fn validate_name(what: &str, name: &str) -> Result<()> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_');
    if name.is_empty()
        || name == "."
        || name == ".."
        || name == "latest"
        || name == "latest-complete"
        || name.len() > 200
        || !name.chars().all(allowed)
    {
        return Err(Error::Usage(format!(
            "invalid {what} name {name:?}: use 1 to 200 ASCII letters, digits, '.', '-', '_' (not '.', '..', 'latest' or 'latest-complete')"
        )));
    }
    Ok(())
}

impl SnapshotOptions {
    /// The checks that need neither the repository nor the file system:
    /// the source name, tags, stream names (distinct, at most one reading
    /// standard input), and something to back up.
    pub fn validate(&self) -> Result<()> {
        validate_name("source", &self.source)?;
        for t in &self.tags {
            if t.is_empty() || t.contains(',') || t.chars().any(|c| c.is_control()) {
                return Err(Error::Usage(format!("invalid tag {t:?}")));
            }
        }
        self.validate_streams()?;
        if self.paths.is_empty() && self.streams.is_empty() {
            return Err(Error::NothingToBackUp);
        }
        Ok(())
    }

    fn validate_streams(&self) -> Result<()> {
        let mut seen = std::collections::HashSet::new();
        for s in &self.streams {
            validate_name("stream", &s.name)?;
            if !seen.insert(s.name.as_str()) {
                return Err(Error::Usage(format!(
                    "stream name {:?} given twice",
                    s.name
                )));
            }
        }
        let stdin = self
            .streams
            .iter()
            .filter(|s| matches!(s.input, StreamInput::Stdin))
            .count();
        if stdin > 1 {
            return Err(Error::Usage(
                "only one stream can read standard input".into(),
            ));
        }
        Ok(())
    }
}
