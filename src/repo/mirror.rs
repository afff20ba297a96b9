//! What a mirror run needs from the repository it copies: its stored files
//! by kind and size, its `SOPVAULT.txt`, and a verified copy of one stored
//! file onto a destination backend.
//!
//! The destination is a plain [`Backend`] the mirror module opens and writes;
//! where the mirror reads the destination as a repository (its index files,
//! its snapshots), it does so through [`Repository::on_mirror`].

use crate::backend::{Backend, FileKind};
use crate::error::{Error, Result};
use crate::repo::{check_name, Repository};

/// What [`Repository::copy_file_to`] did with one file.
#[derive(Debug)]
pub enum FileCopy {
    /// Written whole to the destination: this many bytes.
    Copied { bytes: u64 },
    /// Not copied: the stored bytes do not hash to the file's name.
    DamagedAtSource(Error),
}

impl Repository {
    /// Where the repository lives, as its backend names it (a directory, an `s3://` URL).
    pub fn location(&self) -> String {
        self.backend.location()
    }

    /// Whether `other` is this repository's own place (the same directory,
    /// or the same location).
    pub fn is_stored_at(&self, other: &dyn Backend) -> bool {
        match (self.backend.local_root(), other.local_root()) {
            (Some(x), Some(y)) => match (std::fs::canonicalize(x), std::fs::canonicalize(y)) {
                (Ok(x), Ok(y)) => x == y,
                _ => x == y,
            },
            _ => self.backend.location() == other.location(),
        }
    }

    /// The stored files of one kind, with their sizes, as listed now.
    pub fn list_stored(&self, kind: FileKind) -> Result<Vec<(String, u64)>> {
        self.backend.list(kind)
    }

    /// The repository's `SOPVAULT.txt`, byte for byte; `None` when it has none.
    pub fn stored_readme(&self) -> Result<Option<Vec<u8>>> {
        self.backend.read_readme()
    }

    /// Copies one stored file to `dest` under the same name, after checking
    /// that its bytes hash to that name: damage is never carried forward.
    pub fn copy_file_to(&self, dest: &dyn Backend, kind: FileKind, name: &str) -> Result<FileCopy> {
        let bytes = self.backend.read(kind, name)?;
        if let Err(e) = check_name(&bytes, name, kind.dir()) {
            return Ok(FileCopy::DamagedAtSource(e));
        }
        dest.write_new(kind, name, &bytes)?;
        Ok(FileCopy::Copied {
            bytes: bytes.len() as u64,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::local::LocalBackend;
    use crate::repo::scratch_with_snapshot;

    /// A stored file reaches the destination byte for byte; one whose bytes
    /// no longer hash to its name is not copied, and the error names it.
    #[test]
    fn copy_file_to_copies_whole_files_and_never_carries_damage() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        std::fs::create_dir_all(&src).unwrap();
        std::fs::write(src.join("a"), crate::testutil::noise(100_000, 1)).unwrap();
        let repo = scratch_with_snapshot(dir.path(), &src);
        let dest = LocalBackend::new(dir.path().join("mirror"));
        dest.create("a mirror\n").unwrap();
        assert!(repo.is_stored_at(&LocalBackend::new(dir.path().join("repo"))));
        assert!(!repo.is_stored_at(&dest));

        let packs = repo.list_stored(FileKind::Pack).unwrap();
        let (pack, size) = &packs[0];
        match repo.copy_file_to(&dest, FileKind::Pack, pack).unwrap() {
            FileCopy::Copied { bytes } => assert_eq!(bytes, *size),
            other => panic!("expected a copy, found {other:?}"),
        }
        let stored = repo.backend.read(FileKind::Pack, pack).unwrap();
        assert_eq!(dest.read(FileKind::Pack, pack).unwrap(), stored);

        let index = repo.list_stored(FileKind::Index).unwrap();
        let (name, _) = &index[0];
        let path = dir.path().join("repo").join("index").join(name);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[20] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        match repo.copy_file_to(&dest, FileKind::Index, name).unwrap() {
            FileCopy::DamagedAtSource(Error::HashMismatch { object, .. }) => {
                assert_eq!(object, format!("index/{name}"))
            }
            other => panic!("expected damage at the source, found {other:?}"),
        }
        assert!(dest.read(FileKind::Index, name).is_err());
    }
}
