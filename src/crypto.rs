//! Keys and authenticated encryption.
//!
//! A repository has one random 32-byte [`MasterKey`]. Subkeys are derived from
//! it with `blake3::derive_key` and fixed context strings, one per purpose:
//! chunk ids, the chunker's gear table, data blobs and metadata (trees, pack
//! footers, index files, snapshots, config). Every encrypted object is sealed
//! with XChaCha20-Poly1305 under a fresh random 24-byte nonce and laid out as
//! `nonce(24) || ciphertext || tag(16)`; the associated data names the kind of
//! object (and, for blobs, the chunk id) so one object cannot pass for another.
//!
//! XChaCha20-Poly1305 is built as draft-irtf-cfrg-xchacha-03 §2.3 defines it:
//! HChaCha20 of the key and the nonce's first 16 bytes (RustCrypto's
//! `chacha20`) gives a one-message subkey for ChaCha20-Poly1305 (RFC 8439)
//! under the nonce `0u32 || nonce[16..24]`, which aws-lc runs in its
//! assembly: about twice the speed of RustCrypto's `chacha20poly1305` on the
//! reference machine (`benches/primitives.rs`, group `aead`). The bytes are
//! the same; a test checks them against `chacha20poly1305` on random inputs.

use crate::error::{Error, Result};
use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305};
use zeroize::{Zeroize, ZeroizeOnDrop};

pub const NONCE_LEN: usize = 24;
pub const TAG_LEN: usize = 16;
/// Bytes a sealed object adds to its plaintext.
pub const SEAL_OVERHEAD: usize = NONCE_LEN + TAG_LEN;

pub const CTX_CHUNK_ID: &str = "sopvault 2026-11 chunk id key";
pub const CTX_GEAR: &str = "sopvault 2026-11 chunker gear table";
pub const CTX_DATA: &str = "sopvault 2026-11 data blob encryption key";
pub const CTX_META: &str = "sopvault 2026-11 metadata encryption key";
/// Authenticates the local index cache (format-spec.md, Appendix A); never
/// used for anything stored in the repository.
pub const CTX_INDEX_CACHE: &str = "sopvault 2026-11 index cache authentication key";

/// A 32-byte secret that wipes itself on drop and never prints. Not `Clone`:
/// a second copy in memory is made only by the explicit [`Secret32::duplicate`].
#[derive(Zeroize, ZeroizeOnDrop)]
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
    /// A second copy, for a cipher that must own its key. Named so that every
    /// copy of a secret is visible in the code.
    pub(crate) fn duplicate(&self) -> Secret32 {
        Secret32(self.0)
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
    getrandom::fill(buf).map_err(|e| Error::Random {
        reason: e.to_string(),
    })
}

/// The master secret and the subkeys derived from it.
pub struct MasterKey {
    master: Secret32,
    pub(crate) id_key: Secret32,
    pub(crate) gear_key: Secret32,
    index_cache_key: Secret32,
    data: Cipher,
    meta: Cipher,
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
        let index_cache_key = derive(CTX_INDEX_CACHE);
        MasterKey {
            data: Cipher::new(data_key),
            meta: Cipher::new(meta_key),
            master,
            id_key,
            gear_key,
            index_cache_key,
        }
    }

    pub fn master(&self) -> &Secret32 {
        &self.master
    }

    /// The key of the keyed BLAKE3 MAC that authenticates the local index
    /// cache, so that a damaged or altered cache is rebuilt, not trusted.
    pub fn index_cache_key(&self) -> &Secret32 {
        &self.index_cache_key
    }

    /// The keyed BLAKE3 id of a plaintext.
    pub fn chunk_id(&self, plaintext: &[u8]) -> crate::ids::ChunkId {
        crate::ids::ChunkId(*blake3::keyed_hash(self.id_key.as_bytes(), plaintext).as_bytes())
    }

    fn cipher(&self, p: KeyPurpose) -> &Cipher {
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

    /// Seals `plaintext` as [`MasterKey::seal`] does, into the start of
    /// `out` (at least `SEAL_OVERHEAD + plaintext.len()` bytes); returns the
    /// length written. For callers that reuse their buffers.
    pub fn seal_to(
        &self,
        p: KeyPurpose,
        aad: &[u8],
        plaintext: &[u8],
        out: &mut [u8],
    ) -> Result<usize> {
        let mut nonce = [0u8; NONCE_LEN];
        fill_random(&mut nonce)?;
        seal_with_into(self.cipher(p), &nonce, aad, plaintext, out)
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

    /// Opens a sealed object into `out` (replacing what it held), reusing
    /// its memory; false when authentication fails.
    pub fn open_to(&self, p: KeyPurpose, aad: &[u8], sealed: &[u8], out: &mut Vec<u8>) -> bool {
        open_with_into(self.cipher(p), aad, sealed, out)
    }
}

/// An XChaCha20-Poly1305 key (see the module's doc for the construction).
pub(crate) struct Cipher {
    key: Secret32,
}

impl Cipher {
    pub(crate) fn new(key: Secret32) -> Cipher {
        Cipher { key }
    }

    /// The one-message ChaCha20-Poly1305 key and nonce for an XChaCha20 nonce.
    fn message_key(&self, nonce: &[u8; NONCE_LEN]) -> (LessSafeKey, Nonce) {
        let (head, tail) = nonce.split_at(16);
        let head: &[u8; 16] = head.try_into().expect("16 bytes");
        let mut subkey =
            chacha20::hchacha::<chacha20::R20>(self.key.as_bytes().into(), head.into());
        let unbound = UnboundKey::new(&CHACHA20_POLY1305, subkey.as_slice())
            .expect("a ChaCha20-Poly1305 key is 32 bytes");
        subkey.as_mut_slice().zeroize();
        let mut ietf = [0u8; 12];
        ietf[4..].copy_from_slice(tail);
        (
            LessSafeKey::new(unbound),
            Nonce::assume_unique_for_key(ietf),
        )
    }
}

pub(crate) fn seal_with(
    cipher: &Cipher,
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
    plaintext: &[u8],
) -> Result<Vec<u8>> {
    let mut out = vec![0u8; SEAL_OVERHEAD + plaintext.len()];
    seal_with_into(cipher, nonce, aad, plaintext, &mut out)?;
    Ok(out)
}

/// `nonce || ciphertext || tag` into the start of `out`; returns its length.
fn seal_with_into(
    cipher: &Cipher,
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
    plaintext: &[u8],
    out: &mut [u8],
) -> Result<usize> {
    let len = SEAL_OVERHEAD + plaintext.len();
    let room = out.len();
    let out = out.get_mut(..len).ok_or_else(|| Error::Internal {
        what: format!(
            "sealing {} bytes: expected {len} bytes of room, found {room}",
            plaintext.len()
        ),
    })?;
    let (head, rest) = out.split_at_mut(NONCE_LEN);
    let (body, tag_out) = rest.split_at_mut(plaintext.len());
    head.copy_from_slice(nonce);
    body.copy_from_slice(plaintext);
    let (key, ietf) = cipher.message_key(nonce);
    let tag = key
        .seal_in_place_separate_tag(ietf, Aad::from(aad), body)
        .map_err(|_| Error::Codec {
            what: "encryption failed",
            reason: "message too long".into(),
        })?;
    tag_out.copy_from_slice(tag.as_ref());
    Ok(len)
}

pub(crate) fn open_with(cipher: &Cipher, aad: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    open_with_into(cipher, aad, sealed, &mut out).then_some(out)
}

fn open_with_into(cipher: &Cipher, aad: &[u8], sealed: &[u8], out: &mut Vec<u8>) -> bool {
    out.clear();
    if sealed.len() < SEAL_OVERHEAD {
        return false;
    }
    let (nonce, ct) = sealed.split_at(NONCE_LEN);
    let Ok(nonce) = nonce.try_into() else {
        return false;
    };
    let (key, ietf) = cipher.message_key(nonce);
    out.extend_from_slice(ct);
    match key.open_in_place(ietf, Aad::from(aad), out) {
        Ok(plain) => {
            let len = plain.len();
            out.truncate(len);
            true
        }
        Err(_) => {
            out.clear();
            false
        }
    }
}

/// A cipher from raw key bytes (used by key files, whose key comes from Argon2id).
pub(crate) fn cipher_from(key: &Secret32) -> Cipher {
    Cipher::new(key.duplicate())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chacha20poly1305::aead::{Aead, KeyInit, Payload};

    /// The construction gives RustCrypto's XChaCha20-Poly1305 bytes, and each
    /// opens the other's output; a flipped bit or a different AAD fails.
    #[test]
    fn same_bytes_as_rustcrypto_xchacha20poly1305() {
        let mut rng = crate::testutil::Rng::new(0x9e37_79b9_7f4a_7c15);
        let mut next = move || rng.next_u64();
        for round in 0..200 {
            let mut key = [0u8; 32];
            let mut nonce = [0u8; NONCE_LEN];
            key.iter_mut()
                .chain(nonce.iter_mut())
                .for_each(|b| *b = next() as u8);
            let len = match round {
                0 => 0,
                1 => 1,
                _ => (next() % 70_000) as usize,
            };
            let plain: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            let aad: Vec<u8> = (0..(next() % 100) as usize).map(|_| next() as u8).collect();
            let ours = Cipher::new(Secret32::from_bytes(key));
            let theirs = chacha20poly1305::XChaCha20Poly1305::new(&key.into());
            let sealed = seal_with(&ours, &nonce, &aad, &plain).unwrap();
            let reference = theirs
                .encrypt(
                    &nonce.into(),
                    Payload {
                        msg: &plain,
                        aad: &aad,
                    },
                )
                .unwrap();
            assert_eq!(&sealed[..NONCE_LEN], &nonce);
            assert_eq!(&sealed[NONCE_LEN..], &reference[..], "round {round}");
            assert_eq!(open_with(&ours, &aad, &sealed).as_deref(), Some(&plain[..]));
            let opened = theirs
                .decrypt(
                    &nonce.into(),
                    Payload {
                        msg: &sealed[NONCE_LEN..],
                        aad: &aad,
                    },
                )
                .unwrap();
            assert_eq!(opened, plain);
            let mut bad = sealed.clone();
            let at = (next() as usize) % bad.len();
            bad[at] ^= 1 << (next() % 8);
            assert_eq!(open_with(&ours, &aad, &bad), None);
            let mut other_aad = aad.clone();
            other_aad.push(0);
            assert_eq!(open_with(&ours, &other_aad, &sealed), None);
        }
        assert_eq!(
            open_with(&Cipher::new(Secret32::from_bytes([0; 32])), b"", &[0; 39]),
            None
        );
    }
}
