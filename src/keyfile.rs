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

fn derive(password: &Password, salt: &[u8; 32], kdf: KdfParams) -> Result<Secret32> {
    let params = argon2::Params::new(kdf.m_kib, kdf.t, kdf.p, Some(32))
        .map_err(|e| Error::Other(format!("Argon2id parameters rejected: {e}")))?;
    let blocks = params.block_count();
    let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let mut out = [0u8; 32];
    let done = match KdfMemory::new(blocks) {
        Some(mut mem) => {
            argon.hash_password_into_with_memory(password.as_bytes(), salt, &mut out, mem.blocks())
        }
        None => argon.hash_password_into(password.as_bytes(), salt, &mut out),
    };
    done.map_err(|e| Error::Other(format!("Argon2id failed: {e}")))?;
    Ok(Secret32::from_bytes(out))
}

/// The Argon2id work area in its own anonymous mapping, backed by huge pages
/// where the kernel allows it.
///
/// The crate's own allocation (`alloc_zeroed` with 64-byte alignment) zeroes
/// 64 MiB with `memset` on one thread, one 4 KiB page fault at a time, before
/// the lanes start in parallel: a third of the derivation's time. A fresh
/// mapping is already zero, and with `MADV_HUGEPAGE` it faults in 2 MiB at a
/// time, from whichever lane touches it first. The result is the same key.
struct KdfMemory {
    map: *mut libc::c_void,
    map_len: usize,
    blocks: *mut argon2::Block,
    len: usize,
}

impl KdfMemory {
    const HUGE: usize = 2 * 1024 * 1024;

    fn new(len: usize) -> Option<KdfMemory> {
        let bytes = len.checked_mul(std::mem::size_of::<argon2::Block>())?;
        let map_len = bytes.checked_add(Self::HUGE)?;
        // SAFETY: a private anonymous mapping with no address hint; the result is checked.
        let map = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if map == libc::MAP_FAILED {
            return None;
        }
        let start = (map as usize).next_multiple_of(Self::HUGE);
        // SAFETY: [start, start + bytes) lies inside the mapping (map_len leaves
        // room for the alignment). madvise is only advice: failure is harmless.
        unsafe {
            libc::madvise(start as *mut libc::c_void, bytes, libc::MADV_HUGEPAGE);
        }
        Some(KdfMemory {
            map,
            map_len,
            blocks: start as *mut argon2::Block,
            len,
        })
    }

    fn blocks(&mut self) -> &mut [argon2::Block] {
        // SAFETY: `blocks` is 2 MiB-aligned (more than Block's 64), points to
        // `len` blocks of zeroed, writable memory that only this value owns, and
        // all-zero bytes are a valid Block (an array of u64).
        unsafe { std::slice::from_raw_parts_mut(self.blocks, self.len) }
    }
}

impl Drop for KdfMemory {
    fn drop(&mut self) {
        // Not cleared first: once unmapped, the work area is out of this
        // process's reach, and the kernel zeroes the pages before reusing them.
        // SAFETY: unmaps exactly the mapping made in `new`, once.
        unsafe {
            libc::munmap(self.map, self.map_len);
        }
    }
}
