//! Key files: `KeyFile::parse`, and `open` for machine-secret files (one
//! BLAKE3 derivation). A passphrase file's `open` runs Argon2id, far too slow to fuzz.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sopvault::crypto::Password;
use sopvault::format::keyfile::{Kdf, KeyFile, MAX_M_KIB, MAX_P, MAX_T, MIN_M_KIB, SECRET_PREFIX};
use sopvault_fuzz::OBJECT;

fuzz_target!(|data: &[u8]| {
    if let Ok(k) = KeyFile::parse(data, OBJECT) {
        match k.kdf {
            // What open() would hand to Argon2id must stay within the limits.
            Kdf::Argon2id(p) => {
                assert!((MIN_M_KIB..=MAX_M_KIB).contains(&p.m_kib));
                assert!((1..=MAX_T).contains(&p.t));
                assert!((1..=MAX_P).contains(&p.p));
            }
            Kdf::MachineSecret => {
                let secret = format!("{SECRET_PREFIX}{}", "5a".repeat(32));
                let _ = k.open(&Password::new(secret.into_bytes()));
            }
        }
    }
});
