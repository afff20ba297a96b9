//! Listings of a repository's place by kind: what a path is, where a file
//! lives, and which files one listing has that another lacks. The path rule
//! and the name check are the backends' own ([`crate::backend::names`]).

use super::COPY_ORDER;
use crate::backend::names::file_at;
pub use crate::backend::names::rel_path;
use crate::backend::{Backend, FileKind, README_NAME, RESERVE_NAME};
use crate::error::Result;
use crate::repo::Repository;
use std::collections::BTreeMap;

/// One repository file.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct FileRef {
    pub kind: FileKind,
    pub name: String,
    pub size: u64,
}

impl FileRef {
    /// The path relative to the repository root, as on disk and in a bucket.
    pub fn rel_path(&self) -> String {
        rel_path(self.kind, &self.name)
    }
}

/// What a relative path is: a content-addressed repository file, the
/// `SOPVAULT.txt`, ephemeral (`locks/`, `tmp/`, the space `reserve`), or
/// something else.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PathClass {
    File(FileKind, String),
    Readme,
    Ephemeral,
    Stray,
}

pub fn classify_path(rel: &str) -> PathClass {
    if rel == README_NAME {
        return PathClass::Readme;
    }
    if rel.starts_with("locks/") || rel.starts_with("tmp/") || rel == RESERVE_NAME {
        return PathClass::Ephemeral;
    }
    match file_at(rel) {
        Some((kind, name)) => PathClass::File(kind, name.to_string()),
        None => PathClass::Stray,
    }
}

/// A listing of one place, by kind.
#[derive(Clone, Debug, Default)]
pub struct Listing {
    pub files: BTreeMap<FileKind, BTreeMap<String, u64>>,
    pub readme: bool,
    /// Files that are neither repository files nor ephemeral.
    pub stray: Vec<String>,
    /// Files in `tmp/` and `locks/`.
    pub ephemeral: usize,
}

impl Listing {
    pub fn of(backend: &dyn Backend) -> Result<Listing> {
        let mut l = Listing::default();
        for (rel, size) in backend.all_files()? {
            match classify_path(&rel) {
                PathClass::File(kind, name) => {
                    l.files.entry(kind).or_default().insert(name, size);
                }
                PathClass::Readme => l.readme = true,
                PathClass::Ephemeral => l.ephemeral += 1,
                PathClass::Stray => l.stray.push(rel),
            }
        }
        Ok(l)
    }

    /// A source's listing, read without the key, in the reverse of the write
    /// order (see `in_reverse_write_order`).
    pub fn of_source(backend: &dyn Backend) -> Result<Listing> {
        Listing::in_reverse_write_order(
            |kind| backend.list(kind),
            || Ok(backend.read_readme()?.is_some()),
        )
    }

    /// An open repository's listing, in the reverse of the write order (see
    /// `in_reverse_write_order`).
    pub fn of_repository(repo: &Repository) -> Result<Listing> {
        Listing::in_reverse_write_order(
            |kind| repo.list_stored(kind),
            || Ok(repo.stored_readme()?.is_some()),
        )
    }

    /// A source's listing, taken in the reverse of the write order (prune
    /// records, snapshots, index, packs, keys, config): a file written while
    /// the listing runs is either missed or listed together with everything
    /// it refers to, which was written before it.
    fn in_reverse_write_order(
        list: impl Fn(FileKind) -> Result<Vec<(String, u64)>>,
        has_readme: impl FnOnce() -> Result<bool>,
    ) -> Result<Listing> {
        let mut l = Listing::default();
        for kind in COPY_ORDER.iter().rev() {
            l.files.insert(*kind, list(*kind)?.into_iter().collect());
        }
        l.readme = has_readme()?;
        Ok(l)
    }

    pub fn get(&self, kind: FileKind, name: &str) -> Option<u64> {
        self.files.get(&kind).and_then(|m| m.get(name)).copied()
    }
    pub fn kind(&self, kind: FileKind) -> impl Iterator<Item = (&String, &u64)> {
        self.files.get(&kind).into_iter().flatten()
    }
    pub fn count(&self) -> usize {
        self.files.values().map(|m| m.len()).sum()
    }
    pub fn is_empty(&self) -> bool {
        self.count() == 0 && !self.readme && self.stray.is_empty()
    }
    /// The file of this kind and name, with its size here (0 when it is not listed).
    pub fn file_ref(&self, kind: FileKind, name: &str) -> FileRef {
        FileRef {
            kind,
            name: name.to_string(),
            size: self.get(kind, name).unwrap_or(0),
        }
    }
    /// Source files the other listing lacks, in copy order.
    pub fn missing_from(&self, other: &Listing) -> Vec<FileRef> {
        let mut out = Vec::new();
        for kind in COPY_ORDER {
            for (name, size) in self.kind(kind) {
                if other.get(kind, name).is_none() {
                    out.push(FileRef {
                        kind,
                        name: name.clone(),
                        size: *size,
                    });
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_paths() {
        let h = "ab".to_string() + &"0".repeat(62);
        assert_eq!(
            classify_path(&format!("packs/ab/{h}")),
            PathClass::File(FileKind::Pack, h.clone())
        );
        assert_eq!(classify_path(&format!("packs/cd/{h}")), PathClass::Stray);
        assert_eq!(
            classify_path(&format!("index/{h}")),
            PathClass::File(FileKind::Index, h.clone())
        );
        assert_eq!(classify_path("SOPVAULT.txt"), PathClass::Readme);
        assert_eq!(classify_path("locks/x.lock"), PathClass::Ephemeral);
        assert_eq!(classify_path("tmp/x.tmp"), PathClass::Ephemeral);
        assert_eq!(classify_path("index/notahash"), PathClass::Stray);
    }
}
