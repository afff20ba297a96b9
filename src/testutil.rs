//! Helpers shared by the library's unit tests: [`Rng`], the one deterministic
//! generator for them (the integration tests and benches share
//! `tests/it/common/rng.rs`, the same xorshift64*).

/// Deterministic, fast, incompressible pseudo-random numbers (xorshift64*),
/// so a failing unit test reproduces.
pub struct Rng(u64);

impl Rng {
    /// A generator whose state is `seed` spread over all 64 bits (never zero),
    /// so small neighbouring seeds give unrelated streams.
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Fills `buf` with the next outputs, little-endian, the last one cut short.
    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

/// `len` deterministic, incompressible bytes from `seed`.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut v = vec![0u8; len];
    Rng::new(seed).fill(&mut v);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The stream is xorshift64* from the mixed seed, pinned so that it is
    /// the same as `tests/it/common/rng.rs` gives; `noise` is its bytes.
    #[test]
    fn rng_is_xorshift64_star_and_noise_is_its_bytes() {
        let mut r = Rng::new(1);
        let (first, second) = (r.next_u64(), r.next_u64());
        assert_eq!(
            (first, second),
            (0x0d83_b3e2_9a21_487a, 0x54c4_4c79_f1fe_9d67)
        );
        let bytes = noise(13, 1);
        assert_eq!(bytes[..8], first.to_le_bytes());
        assert_eq!(bytes[8..], second.to_le_bytes()[..5]);
        assert_ne!(noise(64, 1), noise(64, 2));
    }
}
