//! Key files: `KeyFile::parse` only. `open` runs Argon2id, far too slow to fuzz.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sopvault::keyfile::{KeyFile, MAX_M_KIB, MAX_P, MAX_T, MIN_M_KIB};
use sopvault_fuzz::OBJECT;

fuzz_target!(|data: &[u8]| {
    if let Ok(k) = KeyFile::parse(data, OBJECT) {
        // What open() would hand to Argon2id must stay within the limits.
        assert!((MIN_M_KIB..=MAX_M_KIB).contains(&k.kdf.m_kib));
        assert!((1..=MAX_T).contains(&k.kdf.t));
        assert!((1..=MAX_P).contains(&k.kdf.p));
    }
});
