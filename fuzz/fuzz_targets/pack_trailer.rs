//! `pack::parse_trailer`: the 16 bytes read before anything else of a pack.
//!
//! Input: `pack_len u64 | bytes`, the trailer being the last 16 of `bytes`;
//! then the whole input again as a pack, the way `read_footer_from_bytes` calls it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sopvault::crypto::SEAL_OVERHEAD;
use sopvault::format::HEADER_LEN;
use sopvault::format::pack::{parse_trailer, MAX_PACK_SIZE, TRAILER_LEN};
use sopvault_fuzz::{split_u64, OBJECT};

fn check(trailer: &[u8], pack_len: u64) {
    if let Ok((offset, len)) = parse_trailer(trailer, pack_len, OBJECT) {
        assert_eq!(trailer.len(), TRAILER_LEN);
        assert!(pack_len <= MAX_PACK_SIZE);
        assert!(len as usize >= SEAL_OVERHEAD + 4);
        assert!(offset >= HEADER_LEN as u64, "footer overlaps the header");
        assert_eq!(offset + len as u64 + TRAILER_LEN as u64, pack_len);
    }
}

fn tail(bytes: &[u8]) -> &[u8] {
    &bytes[bytes.len().saturating_sub(TRAILER_LEN)..]
}

fuzz_target!(|data: &[u8]| {
    if let Some((pack_len, rest)) = split_u64(data) {
        check(tail(rest), pack_len);
    }
    check(tail(data), data.len() as u64);
});
