//! The mirror plan: what the destination is, which source files it lacks,
//! and (by `deletions`) which condemned files it may delete now.
//! Planning changes nothing.

use super::deletions::plan_deletions;
use super::listing::{FileRef, Listing};
use crate::backend::{Backend, FileKind};
use crate::error::{Error, Result};
use crate::repo::Repository;
use std::path::PathBuf;
use std::sync::Arc;

/// What the destination holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DestinationState {
    /// A (possibly incomplete) mirror of this repository.
    Mirror,
    /// Nothing at all: a mirror may start here with `--init`.
    Empty,
}

/// How a mirror run behaves.
#[derive(Clone, Debug)]
pub struct MirrorOptions {
    /// Start a mirror in an empty destination.
    pub init: bool,
    /// Grace period before a condemned file is deleted from the mirror.
    pub delete_after_secs: i64,
    /// "Now", in seconds since the epoch (a parameter so tests can plan at any time).
    pub now: i64,
    /// Files copied at once (object stores gain from more).
    pub parallel: usize,
}

/// A condemned file the plan keeps, and why.
#[derive(Clone, Debug)]
pub struct Kept {
    pub file: FileRef,
    pub reason: String,
}

/// Everything a mirror run will do.
#[derive(Clone, Debug)]
pub struct MirrorPlan {
    pub source: String,
    pub destination: String,
    pub state: DestinationState,
    /// Copy `SOPVAULT.txt` first.
    pub copy_readme: bool,
    /// In copy order.
    pub copy: Vec<FileRef>,
    /// In deletion order: snapshots, index files, packs.
    pub delete: Vec<FileRef>,
    /// Condemned, but within the grace period (with the time it may go) or still needed.
    pub kept: Vec<Kept>,
    /// The earliest time a file now waiting for the grace period may be deleted.
    pub next_deletion: Option<i64>,
    /// Destination files the source does not have and no prune record condemns.
    pub extra: usize,
}

impl MirrorPlan {
    pub fn copy_bytes(&self) -> u64 {
        self.copy.iter().map(|f| f.size).sum()
    }
    pub fn delete_bytes(&self) -> u64 {
        self.delete.iter().map(|f| f.size).sum()
    }
    pub fn copy_count(&self, kind: FileKind) -> usize {
        self.copy.iter().filter(|f| f.kind == kind).count()
    }
    /// Keeps a condemned file, saying why.
    pub(super) fn keep(&mut self, file: FileRef, reason: String) {
        self.kept.push(Kept { file, reason });
    }
}

/// The repository id written in a `SOPVAULT.txt`.
pub fn readme_repo_id(readme: &[u8]) -> Option<String> {
    String::from_utf8_lossy(readme).lines().find_map(|l| {
        l.strip_prefix("Repository id: ")
            .map(|s| s.trim().to_string())
    })
}

/// Decides whether the destination holds a mirror of `repo`, is empty, or must be refused.
pub fn classify_destination(
    repo: &Repository,
    dest: &dyn Backend,
    listing: &Listing,
) -> Result<DestinationState> {
    let our_id = hex::encode(repo.config().repo_id);
    let short = &our_id[..8];
    let refuse = |what: String| Error::NoRepository {
        path: PathBuf::from(dest.location()),
        reason: format!("{what}; refusing to mirror repository {short} there"),
    };
    let configs: Vec<&String> = listing.kind(FileKind::Config).map(|(n, _)| n).collect();
    if let Some(name) = configs.first() {
        let bytes = dest.read(FileKind::Config, name)?;
        let theirs = crate::format::config::Config::peek_repo_id(&bytes, &format!("config/{name}"))
            .map(hex::encode)
            .unwrap_or_else(|_| "an unreadable one".into());
        if theirs != our_id || configs.len() > 1 {
            return Err(refuse(format!(
                "it holds another repository ({})",
                theirs.get(..8).unwrap_or(&theirs)
            )));
        }
        return Ok(DestinationState::Mirror);
    }
    if listing.readme {
        let readme = dest.read_readme()?.unwrap_or_default();
        return match readme_repo_id(&readme) {
            Some(id) if id == our_id => Ok(DestinationState::Mirror),
            Some(id) => Err(refuse(format!(
                "its SOPVAULT.txt names another repository ({})",
                id.get(..8).unwrap_or(&id)
            ))),
            None => Err(refuse("its SOPVAULT.txt names no repository".into())),
        };
    }
    if listing.count() == 0 && listing.stray.is_empty() {
        return Ok(DestinationState::Empty);
    }
    Err(refuse(format!(
        "it is not empty ({} files) and holds no sopvault repository",
        listing.count() + listing.stray.len()
    )))
}

/// Builds the plan without changing anything.
pub fn plan(
    repo: &Repository,
    dest: &Arc<dyn Backend>,
    opts: &MirrorOptions,
) -> Result<MirrorPlan> {
    if repo.is_stored_at(dest.as_ref()) {
        return Err(Error::Usage(format!(
            "{} is the repository itself, not a mirror destination",
            dest.location()
        )));
    }
    let source = Listing::of_repository(repo)?;
    let target = Listing::of(dest.as_ref())?;
    let state = classify_destination(repo, dest.as_ref(), &target)?;
    if state == DestinationState::Empty && !opts.init {
        return Err(empty_without_init(dest.as_ref()));
    }
    let mut plan = MirrorPlan {
        source: repo.location(),
        destination: dest.location(),
        state,
        copy_readme: !target.readme,
        copy: source.missing_from(&target),
        delete: Vec::new(),
        kept: Vec::new(),
        next_deletion: None,
        extra: 0,
    };
    plan_deletions(repo, dest, &source, &target, opts, &mut plan)?;
    Ok(plan)
}

/// The refusal to copy into an empty destination without `--init`: an empty
/// directory is often the mount point of a disk that is not mounted.
fn empty_without_init(dest: &dyn Backend) -> Error {
    let hint = if dest.local_root().is_some() {
        "it is empty (is the disk plugged in and mounted?)"
    } else {
        "it holds no objects"
    };
    Error::NotAMirror {
        path: PathBuf::from(dest.location()),
        reason: hint.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_repository_id_of_a_readme() {
        let r =
            b"This directory is a sopvault repository.\nFormat version: 1\nRepository id: abc\n";
        assert_eq!(readme_repo_id(r).as_deref(), Some("abc"));
        assert_eq!(readme_repo_id(b"hello"), None);
    }
}
