//! Index files: `IndexFile::decode` (stops at authentication) and `decode_plain`.
//!
//! Input: an index file, and the same bytes as an index file's plaintext.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sopvault::index::IndexFile;
use sopvault_fuzz::{key, OBJECT};

fuzz_target!(|data: &[u8]| {
    let _ = IndexFile::decode(key(), data, OBJECT);
    if let Ok(f) = IndexFile::decode_plain(data, OBJECT) {
        for (pack, _) in &f.entries {
            assert!((*pack as usize) < f.packs.len());
        }
        assert!(f.entries.windows(2).all(|w| w[0].1.id <= w[1].1.id));
        // Every field is fixed-width and the reserved ones must be zero, so
        // the encoding is canonical.
        assert_eq!(f.encode_plain(), data, "an index re-encodes to other bytes");
    }
});
