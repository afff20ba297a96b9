//! `blob::open` on arbitrary sealed bytes (stops at authentication).
//!
//! Input: a [`BlobPrefix`] (kind, codec, raw_len, id), then the sealed blob.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sopvault::blob;
use sopvault_fuzz::{key, BlobPrefix};

fuzz_target!(|data: &[u8]| {
    let Some((prefix, sealed)) = BlobPrefix::split(data) else {
        return;
    };
    let info = prefix.info(sealed.len());
    if let Ok(plain) = blob::open(key(), &info, sealed) {
        assert!(plain.len() <= info.raw_len as usize);
        assert_eq!(key().chunk_id(&plain), info.id);
    }
});
