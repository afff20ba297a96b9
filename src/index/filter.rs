//! A blocked Bloom filter over the chunk ids, stored after the entries: one
//! 64-byte block per id (chosen by id bytes 8..16), six bits in it (from id
//! bytes 16..28, 9 bits each). About 10 bits per chunk give ~1% false
//! positives, so a new chunk (the common case when backing up new data) is
//! answered from one cache line without touching the entries.

use crate::ids::ChunkId;

pub const BLOCK_WORDS: usize = 8;
const BITS_PER_ENTRY: u64 = 10;
const PROBES: usize = 6;

/// Number of 512-bit blocks for `count` entries (a power of two, at least 1).
pub fn blocks_for(count: u64) -> u64 {
    (count * BITS_PER_ENTRY)
        .div_ceil(512)
        .max(1)
        .next_power_of_two()
}

fn probes(id: &ChunkId, blocks: u64) -> (usize, [u16; PROBES]) {
    let block = (u64::from_le_bytes(id.0[8..16].try_into().unwrap()) & (blocks - 1)) as usize;
    let mut bits = [0u16; PROBES];
    for (i, b) in bits.iter_mut().enumerate() {
        *b = u16::from_le_bytes([id.0[16 + 2 * i], id.0[17 + 2 * i]]) & 511;
    }
    (block, bits)
}

pub fn insert(words: &mut [u64], blocks: u64, id: &ChunkId) {
    let (block, bits) = probes(id, blocks);
    for b in bits {
        words[block * BLOCK_WORDS + (b as usize >> 6)] |= 1u64 << (b & 63);
    }
}

/// `word(i)` reads the i-th u64 of the filter.
pub fn may_contain(word: impl Fn(usize) -> u64, blocks: u64, id: &ChunkId) -> bool {
    let (block, bits) = probes(id, blocks);
    bits.iter()
        .all(|&b| word(block * BLOCK_WORDS + (b as usize >> 6)) & (1u64 << (b & 63)) != 0)
}
