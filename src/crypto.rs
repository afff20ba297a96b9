//! Keys and authenticated encryption.
//!
//! A repository has one random 32-byte [`MasterKey`]. Subkeys are derived from
//! it with `blake3::derive_key` and fixed context strings, one per purpose:
//! chunk ids, the chunker's gear table, data blobs and metadata (trees, pack
//! footers, index files, snapshots, config). Every encrypted object is sealed
//! with XChaCha20-Poly1305 under a fresh random 24-byte nonce and laid out as
//! `nonce(24) || ciphertext || tag(16)`; the associated data names the kind of
//! object (and, for blobs, the chunk id) so one object cannot pass for another.

use crate::error::{Error, Result};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use zeroize::{Zeroize, ZeroizeOnDrop};

pub const NONCE_LEN: usize = 24;
pub const TAG_LEN: usize = 16;
/// Bytes a sealed object adds to its plaintext.
pub const SEAL_OVERHEAD: usize = NONCE_LEN + TAG_LEN;

pub const CTX_CHUNK_ID: &str = "sopvault 2026-11 chunk id key";
pub const CTX_GEAR: &str = "sopvault 2026-11 chunker gear table";
pub const CTX_DATA: &str = "sopvault 2026-11 data blob encryption key";
pub const CTX_META: &str = "sopvault 2026-11 metadata encryption key";

/// A 32-byte secret that wipes itself on drop and never prints.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct Secret32(pub(crate) [u8; 32]);

impl Secret32 {
    pub fn random() -> Result<Secret32> {
        let mut b = [0u8; 32];
        fill_random(&mut b)?;
        Ok(Secret32(b))
    }
    pub fn from_bytes(b: [u8; 32]) -> Secret32 {
        Secret32(b)
    }
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl std::fmt::Debug for Secret32 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret32(<redacted>)")
    }
}

/// A passphrase read from the user; wiped on drop, never printed.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct Password(Vec<u8>);

impl Password {
    pub fn new(bytes: Vec<u8>) -> Password {
        Password(bytes)
    }
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

pub fn fill_random(buf: &mut [u8]) -> Result<()> {
    getrandom::fill(buf)
        .map_err(|e| Error::Other(format!("operating system random source failed: {e}")))
}

/// The master secret and the subkeys derived from it.
pub struct MasterKey {
    master: Secret32,
    pub(crate) id_key: Secret32,
    pub(crate) gear_key: Secret32,
    data: XChaCha20Poly1305,
    meta: XChaCha20Poly1305,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(<redacted>)")
    }
}

/// Which subkey seals an object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyPurpose {
    Data,
    Meta,
}

impl MasterKey {
    pub fn from_master(master: Secret32) -> MasterKey {
        let derive = |ctx: &str| Secret32(blake3::derive_key(ctx, master.as_bytes()));
        let id_key = derive(CTX_CHUNK_ID);
        let gear_key = derive(CTX_GEAR);
        let data_key = derive(CTX_DATA);
        let meta_key = derive(CTX_META);
        MasterKey {
            data: XChaCha20Poly1305::new(data_key.as_bytes().into()),
            meta: XChaCha20Poly1305::new(meta_key.as_bytes().into()),
            master,
            id_key,
            gear_key,
        }
    }

    pub fn master(&self) -> &Secret32 {
        &self.master
    }

    /// The keyed BLAKE3 id of a plaintext.
    pub fn chunk_id(&self, plaintext: &[u8]) -> crate::ids::ChunkId {
        crate::ids::ChunkId(*blake3::keyed_hash(self.id_key.as_bytes(), plaintext).as_bytes())
    }

    fn cipher(&self, p: KeyPurpose) -> &XChaCha20Poly1305 {
        match p {
            KeyPurpose::Data => &self.data,
            KeyPurpose::Meta => &self.meta,
        }
    }

    /// Seals `plaintext` under a fresh random nonce: `nonce || ciphertext || tag`.
    pub fn seal(&self, p: KeyPurpose, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>> {
        let mut nonce = [0u8; NONCE_LEN];
        fill_random(&mut nonce)?;
        seal_with(self.cipher(p), &nonce, aad, plaintext)
    }

    /// Seals under a caller-chosen nonce. Only for test vectors: a nonce must
    /// never be used twice with one key, which is why [`MasterKey::seal`] draws it at random.
    #[doc(hidden)]
    pub fn seal_with_nonce(
        &self,
        p: KeyPurpose,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        plaintext: &[u8],
    ) -> Result<Vec<u8>> {
        seal_with(self.cipher(p), nonce, aad, plaintext)
    }

    /// The raw subkeys, for test vectors in format-spec.md.
    #[doc(hidden)]
    pub fn subkeys_for_test_vectors(&self) -> [[u8; 32]; 2] {
        [*self.id_key.as_bytes(), *self.gear_key.as_bytes()]
    }

    /// Opens a sealed object; `None` when authentication fails.
    pub fn open(&self, p: KeyPurpose, aad: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
        open_with(self.cipher(p), aad, sealed)
    }
}

pub(crate) fn seal_with(
    cipher: &XChaCha20Poly1305,
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
    plaintext: &[u8],
) -> Result<Vec<u8>> {
    let ct = cipher
        .encrypt(
            &XNonce::from(*nonce),
            Payload {
                msg: plaintext,
                aad,
            },
        )
        .map_err(|_| Error::Other("encryption failed: message too long".into()))?;
    let mut out = Vec::with_capacity(NONCE_LEN + ct.len());
    out.extend_from_slice(nonce);
    out.extend_from_slice(&ct);
    Ok(out)
}

pub(crate) fn open_with(cipher: &XChaCha20Poly1305, aad: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
    if sealed.len() < SEAL_OVERHEAD {
        return None;
    }
    let (nonce, ct) = sealed.split_at(NONCE_LEN);
    let nonce = XNonce::try_from(nonce).ok()?;
    cipher.decrypt(&nonce, Payload { msg: ct, aad }).ok()
}

/// A cipher from raw key bytes (used by key files, whose key comes from Argon2id).
pub(crate) fn cipher_from(key: &Secret32) -> XChaCha20Poly1305 {
    XChaCha20Poly1305::new(key.as_bytes().into())
}
