//! The names repository files have, and where each kind lives: one rule
//! for every backend and for the mirror.

pub const README_NAME: &str = "SOPVAULT.txt";
/// Space held back for prune on a full disk (format-spec §2); not mirrored.
pub const RESERVE_NAME: &str = "reserve";

pub(crate) fn is_valid_name(name: &str) -> bool {
    name.len() == 64
        && name
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}
