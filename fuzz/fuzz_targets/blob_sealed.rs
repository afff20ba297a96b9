//! `blob::open` past authentication: the payload (a zstd frame or raw bytes)
//! comes from the fuzzer and is sealed with the blob's real associated data,
//! so decompression, the length check and the id check all see hostile input.
//!
//! Input: a [`BlobPrefix`], then the payload. With the prefix's flag set, the
//! raw length and id are replaced by those of what the payload really holds,
//! and `open` must then return exactly that.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sopvault::blob::{self, Codec};
use sopvault_fuzz::{key, BlobPrefix, NONCE};

/// The largest frame content the harness itself decodes (the decoder may allow more).
const HARNESS_LIMIT: usize = 1 << 20;

fuzz_target!(|data: &[u8]| {
    let Some((mut prefix, payload)) = BlobPrefix::split(data) else {
        return;
    };
    let expected = if prefix.flag {
        let plain = match prefix.codec {
            Codec::Raw => Some(payload.to_vec()),
            Codec::Zstd => zstd::bulk::decompress(payload, HARNESS_LIMIT).ok(),
            // A delta opens only with its base: the delta_decode target covers it.
            Codec::Delta => None,
        };
        if let Some(p) = &plain {
            prefix.raw_len = p.len() as u32;
            prefix.id = key().chunk_id(p);
        }
        plain.filter(|p| p.len() <= prefix.kind.max_raw_len() as usize)
    } else {
        None
    };
    let aad = blob::aad(prefix.kind, prefix.codec, prefix.raw_len, &prefix.id);
    let sealed = key()
        .seal_with_nonce(prefix.kind.purpose(), &NONCE, &aad, payload)
        .expect("sealing a fuzz input cannot fail");
    let info = prefix.info(sealed.len());
    let opened = blob::open(key(), &info, &sealed);
    if let Ok(plain) = &opened {
        assert_eq!(plain.len(), info.raw_len as usize);
        assert_eq!(key().chunk_id(plain), info.id);
    }
    if let Some(expected) = expected {
        assert_eq!(opened.as_ref().ok(), Some(&expected), "{opened:?}");
    }
});
