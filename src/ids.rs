//! One id type per kind of object.
//!
//! [`ChunkId`] is the keyed BLAKE3 hash of a blob's plaintext. The other ids
//! name repository files: each is the SHA-256 of the file's exact bytes, so
//! `sha256sum FILE` equals the file's base name. A pack id cannot be passed
//! where a snapshot id belongs.

use serde::{Deserialize, Serialize};
use sha2::Digest;
use std::fmt;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize)]
        pub struct $name(pub [u8; 32]);

        impl $name {
            pub fn to_hex(&self) -> String {
                hex::encode(self.0)
            }
            /// The first 8 hex digits, as shown to users.
            pub fn short(&self) -> String {
                hex::encode(&self.0[..4])
            }
            pub fn from_hex(s: &str) -> Option<Self> {
                let mut out = [0u8; 32];
                hex::decode_to_slice(s, &mut out).ok()?;
                Some(Self(out))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.to_hex())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.short())
            }
        }
    };
}

id_type!(
    /// Keyed BLAKE3 of a blob's plaintext (data chunk, tree or chunk list).
    ChunkId
);
id_type!(
    /// SHA-256 of a pack file.
    PackId
);
id_type!(
    /// SHA-256 of an index file.
    IndexId
);
id_type!(
    /// SHA-256 of a snapshot manifest file.
    SnapshotId
);
id_type!(
    /// SHA-256 of a key file.
    KeyId
);
id_type!(
    /// SHA-256 of a config file.
    ConfigId
);

/// SHA-256 of a byte string: the name every repository file must carry.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    sha2::Sha256::digest(bytes).into()
}
