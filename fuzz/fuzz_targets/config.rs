//! The repository config: `peek_repo_id`, `decode` (stops at authentication)
//! and `decode_plain`; a decoded chunker profile must build a working chunker.
//!
//! Input: a config file, and the same bytes as a config's plaintext.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sopvault::chunker::Chunker;
use sopvault::format::config::Config;
use sopvault::format::encode_postcard;
use sopvault_fuzz::{key, OBJECT};

fuzz_target!(|data: &[u8]| {
    let peeked = Config::peek_repo_id(data, OBJECT).ok();
    if let Ok(c) = Config::decode(key(), data, OBJECT) {
        assert_eq!(Some(c.repo_id), peeked);
    }
    if let Ok(c) = Config::decode_plain(data, OBJECT) {
        assert!(c.chunker.validate().is_ok());
        let again = Config::decode_plain(&encode_postcard(&c), OBJECT).expect("re-encoded config");
        assert_eq!(again, c);
        let points = Chunker::with_gear_key(&[1; 32], c.chunker).cut_points(data);
        assert_eq!(points.last().copied().unwrap_or(0), data.len());
    }
});
