//! The evaluation engine: pure functions from compiled definitions, a key and attributes to a
//! treatment and a label. No I/O, no threads, no locks.

use std::collections::{HashMap, HashSet};

pub(crate) mod attribute_ref;
pub(crate) mod attribute_string;
pub(crate) mod attributes;
pub(crate) mod bucket;
pub(crate) mod coerce;
pub(crate) mod compile;
pub(crate) mod evaluator;
pub(crate) mod labels;
pub(crate) mod landing;
pub(crate) mod pattern;
pub(crate) mod semver;

/// The hasher of the maps and sets evaluation reads (flags by name, segment members,
/// whitelists, attributes): foldhash, several times faster than SipHash on short strings,
/// with a random seed per process so that the layout cannot be predicted from outside.
pub(crate) type FastHasher = foldhash::fast::RandomState;

/// A [`HashMap`] with the [`FastHasher`].
pub(crate) type FastMap<K, V> = HashMap<K, V, FastHasher>;

/// A [`HashSet`] with the [`FastHasher`].
pub(crate) type FastSet<T> = HashSet<T, FastHasher>;

/// The first 16 bytes of `b` as one little-endian number, zero-padded: two strings of the
/// same length up to 16 are equal exactly when these are, and longer ones differ when these
/// do. Built from at most two overlapping loads (no byte loop, no `memcpy` call), so that a
/// short list of names or keys is scanned with word comparisons.
#[inline(always)]
pub(crate) fn head16(b: &[u8]) -> u128 {
    let n = b.len();
    if let Some(c) = b.first_chunk::<16>() {
        return u128::from_le_bytes(*c);
    }
    // The last `k` bytes of `b`, as the high part: the load of the last `w` bytes shifted so
    // that the bytes the first load already holds drop out.
    if let (Some(lo), Some(hi)) = (b.first_chunk::<8>(), b.last_chunk::<8>()) {
        // 8 <= n < 16: bytes 8..n are the top n - 8 bytes of `hi`.
        let hi = u64::from_le_bytes(*hi)
            .checked_shr(8 * (16 - n) as u32)
            .unwrap_or(0);
        return u128::from(u64::from_le_bytes(*lo)) | u128::from(hi) << 64;
    }
    if let (Some(lo), Some(hi)) = (b.first_chunk::<4>(), b.last_chunk::<4>()) {
        // 4 <= n < 8: bytes 4..n are the top n - 4 bytes of `hi`.
        let hi = u32::from_le_bytes(*hi)
            .checked_shr(8 * (8 - n) as u32)
            .unwrap_or(0);
        return u128::from(u32::from_le_bytes(*lo)) | u128::from(hi) << 32;
    }
    b.iter()
        .rev()
        .fold(0u128, |acc, &byte| acc << 8 | u128::from(byte))
}

#[cfg(test)]
mod tests {
    use super::head16;

    proptest::proptest! {
        #[test]
        fn head16_is_the_zero_padded_prefix(b in proptest::collection::vec(proptest::num::u8::ANY, 0..40)) {
            let mut padded = [0u8; 16];
            let n = b.len().min(16);
            padded[..n].copy_from_slice(&b[..n]);
            proptest::prop_assert_eq!(head16(&b), u128::from_le_bytes(padded));
        }
    }
}
