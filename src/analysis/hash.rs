//! Hashing for the analysis' internal maps: a fast non-cryptographic hasher, a string interner
//! for small sets (labels, treatments, types) and a cache-friendly table for user keys.
//!
//! The standard SipHash is DoS-resistant but several times slower on short keys; the analysis
//! runs offline on the caller's own data, so the Fx algorithm (the one rustc uses) is the better
//! trade.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

/// The Fx hash: rotate, xor, multiply, one machine word at a time.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct FxHasher {
    hash: u64,
}

impl FxHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
}

impl Hasher for FxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(word));
        }
    }

    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.add(u64::from(i));
    }

    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }

    #[inline]
    fn write_i64(&mut self, i: i64) {
        self.add(i as u64);
    }

    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        // The multiply leaves its entropy in the high bits; tables index with the low ones.
        self.hash.rotate_left(26)
    }
}

/// A `HashMap` using [`FxHasher`].
pub(crate) type FxMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;

/// Strings mapped to dense `u32` ids, with the names kept for the way back.
#[derive(Debug, Default)]
pub(crate) struct Interner {
    ids: FxMap<Box<str>, u32>,
    names: Vec<Box<str>>,
}

impl Interner {
    /// The id of `name`, assigning the next one when it is new.
    #[inline]
    pub(crate) fn intern(&mut self, name: &str) -> u32 {
        if let Some(&id) = self.ids.get(name) {
            return id;
        }
        let id = self.names.len() as u32;
        self.ids.insert(name.into(), id);
        self.names.push(name.into());
        id
    }

    /// The id of `name` if it was interned.
    #[inline]
    pub(crate) fn get(&self, name: &str) -> Option<u32> {
        self.ids.get(name).copied()
    }

    /// The name behind `id` (empty for an unknown id).
    pub(crate) fn name(&self, id: u32) -> &str {
        self.names.get(id as usize).map_or("", |n| n)
    }

    /// How many names were interned.
    pub(crate) fn len(&self) -> usize {
        self.names.len()
    }
}

/// Keys up to this many bytes are stored inside the table entry, saving a pointer chase (a
/// cache miss) on every lookup.
const INLINE_KEY: usize = 22;

/// A user key as stored in [`KeyTable`]: inline when short, else on the heap.
#[derive(Debug, Clone)]
enum CompactKey {
    Inline { len: u8, bytes: [u8; INLINE_KEY] },
    Heap(Box<[u8]>),
}

impl Default for CompactKey {
    fn default() -> Self {
        CompactKey::Inline {
            len: 0,
            bytes: [0; INLINE_KEY],
        }
    }
}

impl CompactKey {
    fn new(key: &[u8]) -> Self {
        if key.len() <= INLINE_KEY {
            let mut bytes = [0u8; INLINE_KEY];
            bytes[..key.len()].copy_from_slice(key);
            CompactKey::Inline {
                len: key.len() as u8,
                bytes,
            }
        } else {
            CompactKey::Heap(key.into())
        }
    }

    fn as_bytes(&self) -> &[u8] {
        match self {
            CompactKey::Inline { len, bytes } => &bytes[..usize::from(*len)],
            CompactKey::Heap(bytes) => bytes,
        }
    }
}

/// One slot of [`KeyTable`]; `tag == 0` marks it empty.
#[derive(Debug, Clone, Default)]
struct Entry {
    tag: u32,
    value: u32,
    key: CompactKey,
}

/// The hash [`KeyTable`] uses for `key`.
#[inline]
pub(crate) fn hash_key(key: &[u8]) -> u64 {
    let mut h = FxHasher::default();
    h.write(key);
    h.finish()
}

/// The non-zero tag of a hash: its high half, which the index (low bits) does not use.
fn tag_of(hash: u64) -> u32 {
    ((hash >> 32) as u32) | 1
}

/// User keys mapped to `u32` values: an open-addressing table (linear probing, at most half
/// full) whose 32-byte entries hold short keys inline, so a lookup usually touches one cache
/// line. The analysis is bound by such lookups over millions of keys.
#[derive(Debug, Default)]
pub(crate) struct KeyTable {
    entries: Vec<Entry>,
    len: usize,
}

impl KeyTable {
    /// Where `key` is (`Ok`) or would go (`Err`). The table must not be empty.
    #[inline]
    fn find(&self, key: &[u8], hash: u64) -> Result<usize, usize> {
        let mask = self.entries.len() - 1;
        let tag = tag_of(hash);
        let mut i = hash as usize & mask;
        loop {
            let entry = &self.entries[i];
            if entry.tag == 0 {
                return Err(i);
            }
            if entry.tag == tag && entry.key.as_bytes() == key {
                return Ok(i);
            }
            i = (i + 1) & mask;
        }
    }

    /// Reads the entry where a key of hash `hash` would be found first, so that its cache
    /// line is loaded; the result means nothing. Callers touch the entries of a whole batch of
    /// keys before looking them up, so the cache misses overlap.
    #[inline]
    pub(crate) fn touch(&self, hash: u64) -> u32 {
        let mask = self.entries.len().wrapping_sub(1);
        self.entries.get(hash as usize & mask).map_or(0, |e| e.tag)
    }

    /// The value of `key` (of hash `hash`), assigning it the number of keys so far (a dense id)
    /// when it is new.
    #[inline]
    pub(crate) fn intern(&mut self, key: &[u8], hash: u64) -> u32 {
        if (self.len + 1) * 2 > self.entries.len() {
            self.grow();
        }
        match self.find(key, hash) {
            Ok(i) => self.entries[i].value,
            Err(i) => {
                let value = self.len as u32;
                self.entries[i] = Entry {
                    tag: tag_of(hash),
                    value,
                    key: CompactKey::new(key),
                };
                self.len += 1;
                value
            }
        }
    }

    /// The value of `key` (of hash `hash`), if present.
    #[inline]
    pub(crate) fn get(&self, key: &[u8], hash: u64) -> Option<u32> {
        if self.entries.is_empty() {
            return None;
        }
        let i = self.find(key, hash).ok()?;
        Some(self.entries[i].value)
    }

    /// Replaces every value `v` by `f(v)`.
    pub(crate) fn remap(&mut self, mut f: impl FnMut(u32) -> u32) {
        for entry in self.entries.iter_mut().filter(|e| e.tag != 0) {
            entry.value = f(entry.value);
        }
    }

    fn grow(&mut self) {
        let capacity = (self.entries.len() * 2).max(16);
        let old = std::mem::replace(&mut self.entries, vec![Entry::default(); capacity]);
        for entry in old.into_iter().filter(|e| e.tag != 0) {
            let hash = hash_key(entry.key.as_bytes());
            if let Err(i) = self.find(entry.key.as_bytes(), hash) {
                self.entries[i] = entry;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::Hash;

    fn hash_of<T: Hash>(value: T) -> u64 {
        let mut h = FxHasher::default();
        value.hash(&mut h);
        h.finish()
    }

    #[test]
    fn different_short_strings_hash_differently() {
        assert_ne!(hash_of("user-1"), hash_of("user-2"));
        assert_ne!(hash_of("abcdefgh1"), hash_of("abcdefgh2"));
        assert_eq!(hash_of("same"), hash_of("same"));
    }

    #[test]
    fn interner_round_trips() {
        let mut i = Interner::default();
        assert_eq!(i.intern("a"), 0);
        assert_eq!(i.intern("b"), 1);
        assert_eq!(i.intern("a"), 0);
        assert_eq!(i.get("b"), Some(1));
        assert_eq!(i.get("c"), None);
        assert_eq!(i.name(1), "b");
        assert_eq!(i.name(9), "");
    }

    #[test]
    fn key_table_assigns_dense_ids() {
        let mut k = KeyTable::default();
        assert_eq!(k.get(b"x", hash_key(b"x")), None);
        assert_eq!(k.intern(b"x", hash_key(b"x")), 0);
        assert_eq!(k.intern(b"y", hash_key(b"y")), 1);
        assert_eq!(k.intern(b"x", hash_key(b"x")), 0);
        assert_eq!(k.get(b"y", hash_key(b"y")), Some(1));
        let long: &[u8] = b"a-key-longer-than-twenty-two-bytes";
        let short = &long[..22];
        assert_eq!(k.intern(long, hash_key(long)), 2);
        assert_eq!(k.get(long, hash_key(long)), Some(2));
        assert_eq!(k.get(short, hash_key(short)), None);
        assert_eq!(k.intern(short, hash_key(short)), 3);
        assert_eq!(k.intern(b"", hash_key(b"")), 4);
        assert_eq!(k.get(b"", hash_key(b"")), Some(4));
        assert_eq!(std::mem::size_of::<Entry>(), 32);
    }

    #[test]
    fn key_table_survives_growth_and_remaps() {
        let mut k = KeyTable::default();
        for i in 0..10_000u32 {
            let key = format!("customer-{i:08}");
            assert_eq!(k.intern(key.as_bytes(), hash_key(key.as_bytes())), i);
        }
        for i in (0..10_000u32).rev() {
            let key = format!("customer-{i:08}");
            assert_eq!(
                k.touch(hash_key(key.as_bytes())) & 1,
                1,
                "occupied home entry"
            );
            assert_eq!(k.get(key.as_bytes(), hash_key(key.as_bytes())), Some(i));
        }
        assert_eq!(k.get(b"customer-x", hash_key(b"customer-x")), None);
        k.remap(|v| v * 2);
        let key = b"customer-00000021";
        assert_eq!(k.get(key, hash_key(key)), Some(42));
    }
}
