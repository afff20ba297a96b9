//! The names repository files have, and where each kind lives: one rule
//! for every backend and for the mirror.
//!
//! Every content-addressed file is named by the SHA-256 of its bytes in 64
//! lowercase hex digits ([`is_valid_name`]) and lives at
//! `DIR/NAME`, packs at `packs/HH/NAME` where `HH` is the name's first two
//! digits ([`rel_path`]); [`file_at`] reads such a path back.
//! [`Backend::list`](super::Backend::list) shows only valid names at their
//! right place, so a caller may parse a listed name as an id and rely on it.

use super::FileKind;

pub const README_NAME: &str = "SOPVAULT.txt";
/// Space held back for prune on a full disk (format-spec §2); not mirrored.
pub const RESERVE_NAME: &str = "reserve";
/// The directory of ephemeral lock files (never mirrored).
pub const LOCKS_DIR: &str = "locks";
/// The directory of files being written (never mirrored).
pub const TMP_DIR: &str = "tmp";

/// Whether `name` can name a repository file: 64 lowercase hex digits.
pub fn is_valid_name(name: &str) -> bool {
    name.len() == 64
        && name
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

/// The path of a file of `kind` named `name`, relative to the repository
/// root, with `/` separators: `packs/ab/ab12…` or `index/12ab…`.
pub fn rel_path(kind: FileKind, name: &str) -> String {
    match kind {
        FileKind::Pack => format!("{}/{}/{name}", kind.dir(), pack_subdir(name)),
        k => format!("{}/{name}", k.dir()),
    }
}

/// The two-digit directory below `packs/` that holds the pack `name`.
pub fn pack_subdir(name: &str) -> &str {
    name.get(..2).unwrap_or("00")
}

/// The kind and name of the repository file at `rel` (as [`rel_path`]
/// makes it), or `None` for anything else: a stray or misplaced name, the
/// `SOPVAULT.txt`, a lock, a temporary file.
pub fn file_at(rel: &str) -> Option<(FileKind, &str)> {
    let (_, name) = rel.rsplit_once('/')?;
    if !is_valid_name(name) {
        return None;
    }
    let kind = FileKind::ALL
        .into_iter()
        .find(|&k| rel_path(k, name) == rel)?;
    Some((kind, name))
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: &str = "ab00000000000000000000000000000000000000000000000000000000000001";

    #[test]
    fn only_lowercase_hex_of_64_digits_is_a_name() {
        assert!(is_valid_name(H));
        for bad in [
            "README",
            "abc",
            &H.to_uppercase(),
            &format!("{H}.tmp"),
            &H[1..],
        ] {
            assert!(!is_valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn paths_round_trip_and_misplaced_packs_are_not_files() {
        for kind in FileKind::ALL {
            let rel = rel_path(kind, H);
            assert_eq!(file_at(&rel), Some((kind, H)), "{rel}");
        }
        assert_eq!(rel_path(FileKind::Pack, H), format!("packs/ab/{H}"));
        for stray in [
            format!("packs/cd/{H}"),
            format!("packs/{H}"),
            format!("index/ab/{H}"),
            "index/README".to_string(),
            format!("tmp/{H}"),
            format!("locks/{H}"),
            README_NAME.to_string(),
        ] {
            assert_eq!(file_at(&stray), None, "{stray}");
        }
    }
}
