//! Bucketing: the hash of the bucketing key and a seed, mapped to a bucket in `1..=100`.

/// Which hash a flag buckets with (its `algo` field).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashAlgo {
    /// `algo: 1` (or absent/unknown): the legacy Java `String.hashCode`-style hash.
    Legacy,
    /// `algo: 2`: murmur3 x86 32-bit.
    Murmur3,
}

impl HashAlgo {
    /// The algorithm for an `algo` field value: `2` is murmur3, anything else legacy
    /// (the Go, Python and Java SDKs' rule).
    pub fn from_field(algo: Option<i64>) -> HashAlgo {
        if algo == Some(2) {
            HashAlgo::Murmur3
        } else {
            HashAlgo::Legacy
        }
    }
}

/// murmur3 x86 32-bit of the UTF-8 bytes of `key`; a negative seed is taken as its two's
/// complement `u32`.
#[inline]
pub fn murmur3_hash(key: &str, seed: i32) -> u32 {
    murmur3_x86_32(key.as_bytes(), seed as u32)
}

/// The murmur3 x86 32-bit mixing of one 4-byte block (or the zero-padded tail).
#[inline(always)]
fn mix_k(k: u32) -> u32 {
    k.wrapping_mul(0xcc9e_2d51)
        .rotate_left(15)
        .wrapping_mul(0x1b87_3593)
}

/// murmur3 x86 32-bit (Austin Appleby's `MurmurHash3_x86_32`) over a byte slice: little-endian
/// 4-byte blocks, then the 1 to 3 trailing bytes, then the length and the final avalanche.
fn murmur3_x86_32(data: &[u8], seed: u32) -> u32 {
    let mut h = seed;
    let (blocks, tail) = data.as_chunks::<4>();
    for block in blocks {
        h ^= mix_k(u32::from_le_bytes(*block));
        h = h.rotate_left(13).wrapping_mul(5).wrapping_add(0xe654_6b64);
    }
    if !tail.is_empty() {
        let k = tail
            .iter()
            .rev()
            .fold(0u32, |k, &b| (k << 8) | u32::from(b));
        h ^= mix_k(k);
    }
    // The reference takes the length as a 32-bit int: longer inputs wrap.
    h ^= data.len() as u32;
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 16)
}

/// The legacy hash: `h = h * 31 + c` over the UTF-16 code units of `key` in wrapping `i32`,
/// then XOR the seed (Java and JavaScript SDK semantics).
pub fn legacy_hash(key: &str, seed: i32) -> i32 {
    let mut h: i32 = 0;
    for unit in key.encode_utf16() {
        h = h.wrapping_mul(31).wrapping_add(i32::from(unit));
    }
    h ^ seed
}

/// The bucket (`1..=100`) of `key` under `seed` with `algo`.
///
/// # Examples
/// ```
/// use splitkit::bucketing::{bucket, HashAlgo};
/// let b = bucket("user-42", 1234, HashAlgo::Murmur3);
/// assert!((1..=100).contains(&b));
/// ```
#[inline]
pub fn bucket(key: &str, seed: i32, algo: HashAlgo) -> u8 {
    match algo {
        HashAlgo::Murmur3 => (murmur3_hash(key, seed) % 100) as u8 + 1,
        HashAlgo::Legacy => (legacy_hash(key, seed) % 100).unsigned_abs() as u8 + 1,
    }
}

/// Converts a seed from the JSON (an int64 holding an int32) to `i32`, wrapping like Java's
/// `(int)` cast would.
pub(crate) fn seed_of(v: Option<i64>) -> i32 {
    v.unwrap_or(0) as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values() {
        // small-data.csv row and a murmur3 row from the vectors.
        assert!((1..=100).contains(&bucket("", 0, HashAlgo::Legacy)));
        assert_eq!(legacy_hash("a", 0), 97);
        assert_eq!(bucket("a", 0, HashAlgo::Legacy), 98);
        assert_eq!(murmur3_hash("", 0), 0);
    }

    /// The direct implementation against the `murmur3` crate (which hashes through
    /// `io::Read`) on random inputs of every length up to 70 bytes, random seeds.
    #[test]
    fn murmur3_matches_the_murmur3_crate() {
        let mut state: u64 = 0x2545_F491_4F6C_DD1D;
        let mut next = || {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            state.wrapping_mul(0x2545_F491_4F6C_DD1D)
        };
        for round in 0..20_000usize {
            let len = round % 71;
            let bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            let seed = next() as u32;
            let expected = murmur3::murmur3_32(&mut bytes.as_slice(), seed).unwrap();
            assert_eq!(
                murmur3_x86_32(&bytes, seed),
                expected,
                "{bytes:?} seed {seed}"
            );
        }
        let key = "9f2c1a7e-3b4d-4e5f-8a6b-7c8d9e0f1a2b";
        for seed in [0, 1, -1, i32::MIN, i32::MAX, 1_314_229_456] {
            let expected = murmur3::murmur3_32(&mut key.as_bytes(), seed as u32).unwrap();
            assert_eq!(murmur3_hash(key, seed), expected);
        }
    }

    #[test]
    fn algo_field() {
        assert_eq!(HashAlgo::from_field(Some(2)), HashAlgo::Murmur3);
        assert_eq!(HashAlgo::from_field(Some(1)), HashAlgo::Legacy);
        assert_eq!(HashAlgo::from_field(None), HashAlgo::Legacy);
        assert_eq!(HashAlgo::from_field(Some(7)), HashAlgo::Legacy);
    }
}
