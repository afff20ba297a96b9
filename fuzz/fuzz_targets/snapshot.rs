//! Snapshot manifests: `Snapshot::decode` (stops at authentication) and
//! `decode_plain`; the times a listing prints must render without panicking.
//!
//! Input: a manifest file, and the same bytes as a manifest's plaintext.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sopvault::format::encode_postcard;
use sopvault::format::manifest::Snapshot;
use sopvault_fuzz::{key, OBJECT};

fuzz_target!(|data: &[u8]| {
    let _ = Snapshot::decode(key(), data, OBJECT);
    if let Ok(s) = Snapshot::decode_plain(data, OBJECT) {
        let again = Snapshot::decode_plain(&encode_postcard(&s), OBJECT).expect("re-encoded");
        assert_eq!(again, s);
        let times =
            std::iter::once(&s.time).chain(s.streams.iter().flat_map(|r| [&r.started, &r.ended]));
        for t in times {
            let _ = (t.rfc3339(), t.date());
        }
    }
});
