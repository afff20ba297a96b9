//! The one deterministic generator of the integration tests and the benches
//! (xorshift64*): fast enough for hundreds of MiB, incompressible, and the
//! same bytes on every machine, so a failure reproduces.
//!
//! `benches/*.rs` include this file with `#[path]`; each includer uses part of
//! it, hence the `dead_code` allowance. The library's unit tests have their own
//! (`src/testutil.rs`), since a test binary cannot reach into a private module.

#![allow(dead_code)]

pub struct Xorshift(u64);

impl Xorshift {
    /// A generator whose state is `seed` spread over all 64 bits (never zero),
    /// so small neighbouring seeds give unrelated streams.
    pub fn new(seed: u64) -> Xorshift {
        Xorshift(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// A generator that starts from `state` as given (must not be zero); the
    /// benches use it so that their inputs stay byte for byte what they were.
    pub const fn from_state(state: u64) -> Xorshift {
        assert!(state != 0, "xorshift's state must not be zero");
        Xorshift(state)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n` (`n` > 0; the modulo bias is irrelevant for tests).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// Fills `buf` with the next outputs, little-endian, the last one cut short.
    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }

    /// The next `len` bytes, as [`Xorshift::fill`] writes them.
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut v = vec![0u8; len];
        self.fill(&mut v);
        v
    }
}
