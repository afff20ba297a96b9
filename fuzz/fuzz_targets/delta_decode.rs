//! The delta decoder past authentication: `blob::open_delta` with a hostile
//! base and a hostile payload (sealed with the blob's real associated data),
//! so the prefix decompression, the length bound and the id check all see
//! attacker-chosen bytes.
//!
//! Input: `raw_len u32 | flag u8 | base_len u16 | base | payload`. With the
//! flag set, the raw length and id are replaced by those of what the payload
//! really decodes to against the base, and `open_delta` must return exactly that.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sopvault::blob::{self, BlobInfo, BlobKind, Codec, DeltaRef};
use sopvault::ids::ChunkId;
use sopvault_fuzz::{key, NONCE};

/// The largest output the harness itself decodes.
const HARNESS_LIMIT: usize = 1 << 20;

fuzz_target!(|data: &[u8]| {
    if data.len() < 7 {
        return;
    }
    let mut raw_len = u32::from_le_bytes(data[..4].try_into().unwrap()) % (HARNESS_LIMIT as u32);
    let flag = data[4] & 1 == 1;
    let base_len = u16::from_le_bytes(data[5..7].try_into().unwrap()) as usize;
    let rest = &data[7..];
    let base_len = base_len.min(rest.len());
    let (base, payload) = rest.split_at(base_len);
    let mut id = ChunkId([0x5a; 32]);
    let expected = if flag {
        let d = blob::decompress_with_prefix(payload, base, HARNESS_LIMIT).ok();
        if let Some(p) = &d {
            raw_len = p.len() as u32;
            id = key().chunk_id(p);
        }
        d
    } else {
        None
    };
    let delta = DeltaRef {
        base: ChunkId([0xb5; 32]),
        depth: 1,
        generation: 1,
    };
    let aad = blob::delta_aad(raw_len, &id, &delta);
    let sealed = key()
        .seal_with_nonce(BlobKind::Data.purpose(), &NONCE, &aad, payload)
        .expect("sealing a fuzz input cannot fail");
    let info = BlobInfo {
        id,
        kind: BlobKind::Data,
        codec: Codec::Delta,
        offset: 0,
        stored_len: sealed.len() as u32,
        raw_len,
        delta: Some(delta),
    };
    let opened = blob::open_delta(key(), &info, &sealed, base);
    if let Ok(plain) = &opened {
        assert_eq!(plain.len(), raw_len as usize);
        assert_eq!(key().chunk_id(plain), id);
    }
    if let Some(expected) = expected {
        assert_eq!(opened.as_ref().ok(), Some(&expected), "{opened:?}");
    }
});
