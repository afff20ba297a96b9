//! Pack footers: `read_footer_from_bytes` on a whole pack (stops at
//! authentication), and `decode_footer_plain` on a footer's plaintext.
//!
//! Input: the whole pack; and, for the plaintext decoder,
//! `footer_offset u64 | footer plaintext`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sopvault::format::HEADER_LEN;
use sopvault::format::pack::{decode_footer_plain, encode_entry, read_footer_from_bytes, ENTRY_LEN};
use sopvault_fuzz::{key, split_u64, OBJECT};

fuzz_target!(|data: &[u8]| {
    let _ = read_footer_from_bytes(key(), data, OBJECT);
    let Some((footer_offset, plain)) = split_u64(data) else {
        return;
    };
    if let Ok(blobs) = decode_footer_plain(plain, footer_offset, OBJECT) {
        assert_eq!(4 + blobs.len() * ENTRY_LEN, plain.len());
        let mut encoded = (blobs.len() as u32).to_le_bytes().to_vec();
        for b in &blobs {
            assert!(b.offset >= HEADER_LEN as u64);
            let end = b.offset.checked_add(b.stored_len as u64);
            assert!(
                end.is_some_and(|end| end <= footer_offset),
                "{b:?} past {footer_offset}"
            );
            assert!(b.raw_len <= b.kind.max_raw_len());
            encode_entry(&mut encoded, b);
        }
        assert_eq!(encoded, plain, "a footer re-encodes to other bytes");
    }
});
