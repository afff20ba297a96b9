//! Key files: the master secret wrapped under a passphrase or a machine secret.
//!
//! A repository may hold several key files (one per passphrase or machine
//! secret); each wraps the same master secret, so adding or removing one never
//! re-encrypts data. For a passphrase the wrapping key comes from Argon2id with
//! the parameters stored in the file, so they can be raised later without a
//! format change. A machine secret is 256 random bits that `key add
//! --secret-file` writes to a file for unattended jobs (like a bupstash key or
//! a borg key file): it needs no stretching, so its wrapping key is one
//! BLAKE3 derivation and opening the repository costs no Argon2id work.
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
/// The input is a generated machine secret ([`SECRET_PREFIX`]): no stretching.
pub const KDF_MACHINE_SECRET: u32 = 2;
/// A machine secret's text: this prefix, then 64 lowercase hex digits.
pub const SECRET_PREFIX: &str = "sopvault-secret-v1:";
/// BLAKE3 `derive_key` context of a machine secret's wrapping key.
pub const SECRET_CONTEXT: &str = "sopvault 2026-12 machine secret wrapping key";
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

impl KdfParams {
    /// The cheapest parameters a key file may have (8 MiB, one pass, one
    /// lane): for tests and benchmarks, never for a repository that matters.
    pub const CHEAPEST: KdfParams = KdfParams {
        m_kib: MIN_M_KIB,
        t: 1,
        p: 1,
    };
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

/// How a key file's wrapping key is derived.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kdf {
    /// From a passphrase, by Argon2id with these costs.
    Argon2id(KdfParams),
    /// From a generated 256-bit machine secret, by BLAKE3 `derive_key`.
    MachineSecret,
}

impl Kdf {
    fn id(self) -> u32 {
        match self {
            Kdf::Argon2id(_) => KDF_ARGON2ID_V13,
            Kdf::MachineSecret => KDF_MACHINE_SECRET,
        }
    }
}

/// The machine secret that `password` holds, if it is one.
///
/// `Ok(None)` for an ordinary passphrase. Text that starts with
/// [`SECRET_PREFIX`] but is not followed by exactly 64 lowercase hex digits is
/// an error rather than a passphrase, so a cut-off secret file is named as such.
pub fn machine_secret(password: &Password) -> Result<Option<Secret32>> {
    let Some(rest) = password.as_bytes().strip_prefix(SECRET_PREFIX.as_bytes()) else {
        return Ok(None);
    };
    let malformed = || {
        Error::Usage(format!(
            "malformed machine secret: expected {SECRET_PREFIX} and 64 lowercase hex digits, found {} characters after the prefix",
            rest.len()
        ))
    };
    if rest.len() != 64 {
        return Err(malformed());
    }
    let mut out = [0u8; 32];
    for (o, pair) in out.iter_mut().zip(rest.chunks_exact(2)) {
        let digit = |c: u8| match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        };
        match (digit(pair[0]), digit(pair[1])) {
            (Some(h), Some(l)) => *o = h << 4 | l,
            _ => {
                out.zeroize();
                return Err(malformed());
            }
        }
    }
    Ok(Some(Secret32::from_bytes(out)))
}

/// A new machine secret from the operating system's random source, as text.
pub fn generate_secret() -> Result<Password> {
    let mut raw = [0u8; 32];
    fill_random(&mut raw)?;
    let mut text = Vec::with_capacity(SECRET_PREFIX.len() + 64);
    text.extend_from_slice(SECRET_PREFIX.as_bytes());
    // Digit by digit, so that no formatted copy of the secret is left behind.
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for b in raw {
        text.push(HEX[usize::from(b >> 4)]);
        text.push(HEX[usize::from(b & 0x0f)]);
    }
    raw.zeroize();
    Ok(Password::new(text))
}

/// A parsed key file, not yet opened.
#[derive(Clone, Debug)]
pub struct KeyFile {
    pub kdf: Kdf,
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
        let kdf_id = r.u32()?;
        let params = KdfParams {
            m_kib: r.u32()?,
            t: r.u32()?,
            p: r.u32()?,
        };
        let kdf = match kdf_id {
            KDF_ARGON2ID_V13 => {
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
                Kdf::Argon2id(params)
            }
            KDF_MACHINE_SECRET => {
                if params
                    != (KdfParams {
                        m_kib: 0,
                        t: 0,
                        p: 0,
                    })
                {
                    return Err(Error::damaged(
                        object,
                        format!("a machine-secret key file has cost fields {params:?}, expected all zero"),
                    ));
                }
                Kdf::MachineSecret
            }
            found => {
                return Err(Error::UnsupportedVersion {
                    object: object.into(),
                    what: "key derivation function",
                    expected: KDF_MACHINE_SECRET,
                    found,
                })
            }
        };
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
            kdf,
            salt,
            created,
            label,
            sealed,
            aad,
        })
    }

    /// Whether `password` is of the kind this file is opened with (a machine
    /// secret for a machine-secret file, a passphrase otherwise). A reader
    /// tries only the files that match, so a secret never pays for Argon2id.
    pub fn matches(&self, password: &Password) -> Result<bool> {
        Ok(machine_secret(password)?.is_some() == (self.kdf == Kdf::MachineSecret))
    }

    /// Derives the wrapping key and opens the file: `Ok(None)` for a wrong
    /// password or one of the other kind ([`KeyFile::matches`]).
    pub fn open(&self, password: &Password) -> Result<Option<(Secret32, [u8; 32])>> {
        if !self.matches(password)? {
            return Ok(None);
        }
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
    kdf: Kdf,
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
    kdf: Kdf,
    label: &str,
    created: i64,
    salt: &[u8; 32],
    nonce: &[u8; NONCE_LEN],
) -> Result<Vec<u8>> {
    let params = match kdf {
        Kdf::Argon2id(p) => {
            if !(MIN_M_KIB..=MAX_M_KIB).contains(&p.m_kib)
                || !(1..=MAX_T).contains(&p.t)
                || !(1..=MAX_P).contains(&p.p)
                || p.m_kib < 8 * p.p
            {
                return Err(Error::Usage(format!(
                    "Argon2id parameters {p:?} are outside the limits readers accept"
                )));
            }
            if machine_secret(password)?.is_some() {
                return Err(Error::PasswordIsSecret {
                    prefix: SECRET_PREFIX,
                });
            }
            p
        }
        Kdf::MachineSecret => {
            if machine_secret(password)?.is_none() {
                return Err(Error::Usage(
                    "a machine-secret key file needs a generated machine secret".into(),
                ));
            }
            KdfParams {
                m_kib: 0,
                t: 0,
                p: 0,
            }
        }
    };
    let mut end = label.len().min(MAX_LABEL_LEN);
    while !label.is_char_boundary(end) {
        end -= 1;
    }
    let label = &label.as_bytes()[..end];
    let mut out = Vec::new();
    write_header(&mut out, MAGIC_KEY, 0);
    out.extend_from_slice(&kdf.id().to_le_bytes());
    out.extend_from_slice(&params.m_kib.to_le_bytes());
    out.extend_from_slice(&params.t.to_le_bytes());
    out.extend_from_slice(&params.p.to_le_bytes());
    out.extend_from_slice(salt);
    out.extend_from_slice(&created.to_le_bytes());
    let label_len = u16::try_from(label.len()).map_err(|_| Error::Internal {
        what: format!(
            "key label of {} bytes: expected at most {MAX_LABEL_LEN}",
            label.len()
        ),
    })?;
    out.extend_from_slice(&label_len.to_le_bytes());
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

/// The wrapping key, 32 bytes: for a machine secret, BLAKE3 `derive_key`
/// ([`SECRET_CONTEXT`]) of the secret's 32 bytes followed by the salt; for a
/// passphrase, Argon2id (version 0x13).
fn derive(password: &Password, salt: &[u8; 32], kdf: Kdf) -> Result<Secret32> {
    match kdf {
        Kdf::Argon2id(params) => argon2id(password, salt, params),
        Kdf::MachineSecret => {
            let secret = machine_secret(password)?.ok_or_else(|| {
                Error::Usage("a machine-secret key file needs a machine secret".into())
            })?;
            let mut input = [0u8; 64];
            input[..32].copy_from_slice(secret.as_bytes());
            input[32..].copy_from_slice(salt);
            let key = blake3::derive_key(SECRET_CONTEXT, &input);
            input.zeroize();
            Ok(Secret32::from_bytes(key))
        }
    }
}

/// Argon2id (version 0x13) of the passphrase, 32 bytes.
///
/// `argon2-rust` computes it: a port of the reference implementation's
/// AVX2/AVX-512 code with a huge-page work area and one thread per core,
/// about twice as fast here as RustCrypto's `argon2` (0.10 s against 0.16 s
/// of 64 MiB, 3 passes, 4 lanes), which matters because every command pays
/// it. The result is the same function of the same inputs: the key-file test
/// vector pins it, and a test checks both crates against each other.
fn argon2id(password: &Password, salt: &[u8; 32], kdf: KdfParams) -> Result<Secret32> {
    use argon2_rust::params::{Memory, TagLen};
    let rejected = |e: argon2_rust::Error| Error::Codec {
        what: "Argon2id parameters rejected",
        reason: e.to_string(),
    };
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| u32::try_from(n.get()).unwrap_or(u32::MAX));
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
        .map_err(|e| Error::Codec {
            what: "Argon2id failed",
            reason: e.to_string(),
        })?;
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
            let salt = [u8::try_from(i).unwrap() ^ 0x5a; 32];
            let kdf = KdfParams { m_kib, t, p };
            let password = Password::new(pw.as_bytes().to_vec());
            let ours = argon2id(&password, &salt, kdf).unwrap();
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

#[cfg(test)]
mod secret_tests {
    use super::*;

    fn passphrase_kdf() -> Kdf {
        Kdf::Argon2id(KdfParams {
            m_kib: MIN_M_KIB,
            t: 1,
            p: 1,
        })
    }

    #[test]
    fn a_machine_secret_opens_only_its_own_kind_of_key_file() {
        let master = Secret32::from_bytes([7; 32]);
        let rid = [9; 32];
        let secret = generate_secret().unwrap();
        let other = generate_secret().unwrap();
        let pass = Password::new(b"correct horse".to_vec());
        let sk = create(&master, &rid, &secret, Kdf::MachineSecret, "m", 1).unwrap();
        let pk = create(&master, &rid, &pass, passphrase_kdf(), "p", 1).unwrap();
        let sk = KeyFile::parse(&sk, "keys/s").unwrap();
        let pk = KeyFile::parse(&pk, "keys/p").unwrap();
        assert_eq!(sk.kdf, Kdf::MachineSecret);
        let (m, r) = sk.open(&secret).unwrap().unwrap();
        assert_eq!((m.as_bytes(), r), (master.as_bytes(), rid));
        assert!(sk.open(&other).unwrap().is_none());
        assert!(!sk.matches(&pass).unwrap() && sk.open(&pass).unwrap().is_none());
        assert!(!pk.matches(&secret).unwrap() && pk.open(&secret).unwrap().is_none());
        assert!(pk.open(&pass).unwrap().is_some());
    }

    #[test]
    fn kinds_cannot_be_mixed_up_when_writing() {
        let master = Secret32::from_bytes([1; 32]);
        let secret = generate_secret().unwrap();
        let pass = Password::new(b"hunter2".to_vec());
        assert!(create(&master, &[0; 32], &pass, Kdf::MachineSecret, "", 0).is_err());
        assert!(create(&master, &[0; 32], &secret, passphrase_kdf(), "", 0).is_err());
    }

    #[test]
    fn malformed_secrets_are_errors_not_passphrases() {
        let text = String::from_utf8(generate_secret().unwrap().as_bytes().to_vec()).unwrap();
        assert_eq!(text.len(), SECRET_PREFIX.len() + 64);
        for bad in [
            text[..text.len() - 1].to_string(),
            format!("{text}0"),
            text.to_uppercase()
                .replace("SOPVAULT-SECRET-V1:", SECRET_PREFIX),
            format!("{}{}", SECRET_PREFIX, "g".repeat(64)),
        ] {
            let r = machine_secret(&Password::new(bad.clone().into_bytes()));
            assert!(r.is_err(), "{bad}");
        }
        assert!(machine_secret(&Password::new(b"sopvault-secret".to_vec()))
            .unwrap()
            .is_none());
    }

    #[test]
    fn a_machine_secret_file_with_cost_fields_is_damaged() {
        let master = Secret32::from_bytes([1; 32]);
        let secret = generate_secret().unwrap();
        let mut bytes = create(&master, &[0; 32], &secret, Kdf::MachineSecret, "", 0).unwrap();
        bytes[20] = 1;
        assert_eq!(
            KeyFile::parse(&bytes, "keys/x").unwrap_err().kind(),
            crate::ErrorKind::Damaged
        );
        bytes[20] = 0;
        bytes[16] = 3;
        assert!(matches!(
            KeyFile::parse(&bytes, "keys/x").unwrap_err(),
            Error::UnsupportedVersion { found: 3, .. }
        ));
    }
}
