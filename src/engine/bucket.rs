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
pub fn murmur3_hash(key: &str, seed: i32) -> u32 {
    let mut bytes = key.as_bytes();
    // Reading from an in-memory byte slice cannot fail.
    murmur3::murmur3_32(&mut bytes, seed as u32).unwrap_or_default()
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
/// use splitkit::{bucket, HashAlgo};
/// let b = bucket("user-42", 1234, HashAlgo::Murmur3);
/// assert!((1..=100).contains(&b));
/// ```
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

    #[test]
    fn algo_field() {
        assert_eq!(HashAlgo::from_field(Some(2)), HashAlgo::Murmur3);
        assert_eq!(HashAlgo::from_field(Some(1)), HashAlgo::Legacy);
        assert_eq!(HashAlgo::from_field(None), HashAlgo::Legacy);
        assert_eq!(HashAlgo::from_field(Some(7)), HashAlgo::Legacy);
    }
}
