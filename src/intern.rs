//! Names interned for the life of the process: the flag names, treatments and rule labels
//! of compiled definitions, so that a queued impression refers to them with one pointer
//! each instead of carrying copies of their bytes.
//!
//! Interning happens when a snapshot is compiled, never on an evaluation. A name once
//! interned is kept until the process exits: definitions that are loaded again intern
//! nothing new, so the table only grows by the names that were never seen before. It is
//! bounded by [`MAX_INTERNED_BYTES`]; past it, [`intern`] answers `None` (logged once) and
//! the impressions of the names it could not intern are queued whole, with their strings
//! copied, as before the table existed: slower, never lost.

use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;

use crate::engine::FastMap;
use crate::impressions::write_json_str;

/// A string interned for the life of the process, as one thin pointer.
#[derive(Clone, Copy)]
pub(crate) struct Name(&'static Entry);

/// What the table holds of a string: the string, its text as a JSON string (quoted and
/// escaped once, so that the impressions writer copies it instead of escaping it again), and
/// its [`name_hash`] (so that the dedupe cache hashes the name once, not per impression).
pub(crate) struct Entry {
    text: &'static str,
    json: &'static str,
    hash: u64,
}

/// The hash of a flag, treatment or label name that the dedupe cache combines with the key
/// (FNV-1a, 64 bits, over the length and the bytes): the same for a name interned or not.
/// A fixed function is enough here: names come from the flag definitions, and the key,
/// which callers choose, is hashed with a seed of the process's own.
pub(crate) const fn name_hash(bytes: &[u8]) -> u64 {
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut h = 0xcbf2_9ce4_8422_2325 ^ (bytes.len() as u64);
    let mut i = 0;
    while i < bytes.len() {
        h = (h ^ bytes[i] as u64).wrapping_mul(PRIME);
        i += 1;
    }
    h
}

/// The [`Name`] of a string literal the program holds in a `static` (it takes no room in
/// the table). The literal must need no JSON escaping, which a test checks for each use.
macro_rules! static_name {
    ($text:literal) => {{
        static ENTRY: $crate::intern::Entry =
            $crate::intern::Entry::literal($text, concat!("\"", $text, "\""));
        $crate::intern::Name::from_static(&ENTRY)
    }};
}
pub(crate) use static_name;

impl Entry {
    /// The entry of `text`, whose JSON string is `json` ([`static_name!`] only).
    pub(crate) const fn literal(text: &'static str, json: &'static str) -> Entry {
        Entry {
            text,
            json,
            hash: name_hash(text.as_bytes()),
        }
    }
}

impl Name {
    /// The name of a static entry ([`static_name!`] only).
    pub(crate) const fn from_static(entry: &'static Entry) -> Name {
        Name(entry)
    }

    /// The string.
    #[inline]
    pub(crate) fn as_str(self) -> &'static str {
        self.0.text
    }

    /// The string as a JSON string, quoted and escaped.
    #[inline]
    pub(crate) fn json(self) -> &'static [u8] {
        self.0.json.as_bytes()
    }

    /// [`name_hash`] of the string, computed when it was interned.
    #[inline]
    pub(crate) fn hash(self) -> u64 {
        self.0.hash
    }

    /// The name's address: equal for equal interned strings (the table holds one name per
    /// string), so a map can key by it instead of by the bytes. A name made by
    /// [`static_name!`] has an address of its own.
    #[inline]
    pub(crate) fn addr(self) -> usize {
        std::ptr::from_ref(self.0) as usize
    }
}

impl PartialEq for Name {
    fn eq(&self, other: &Name) -> bool {
        self.as_str() == other.as_str()
    }
}

impl std::fmt::Debug for Name {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.as_str(), f)
    }
}

/// The bytes the table may hold (strings and their pointers), 64 MiB: hundreds of times
/// what the names of a large environment take.
pub(crate) const MAX_INTERNED_BYTES: usize = 64 << 20;

/// What interning one string costs, in bytes: the string, its JSON text (at most six bytes
/// a byte, `\u00XX`, plus quotes), its entry and the table's.
fn cost(s: &str, json: &str) -> usize {
    s.len() + json.len() + 4 * size_of::<&str>() + size_of::<u64>()
}

#[derive(Default)]
struct Table {
    names: FastMap<&'static str, Name>,
    bytes: usize,
}

static TABLE: Mutex<Option<Table>> = Mutex::new(None);
static FULL_LOGGED: AtomicBool = AtomicBool::new(false);

/// The interned name for `s`, interning it if it is new; `None` once the table holds
/// [`MAX_INTERNED_BYTES`].
pub(crate) fn intern(s: &str) -> Option<Name> {
    intern_bounded(s, MAX_INTERNED_BYTES)
}

fn intern_bounded(s: &str, max: usize) -> Option<Name> {
    let mut guard = TABLE.lock();
    let table = guard.get_or_insert_with(Table::default);
    if let Some(&n) = table.names.get(s) {
        return Some(n);
    }
    let mut json = Vec::with_capacity(s.len() + 2);
    write_json_str(&mut json, s);
    // Escaping keeps UTF-8 valid (only ASCII bytes are replaced, by ASCII).
    let json = String::from_utf8(json).unwrap_or_default();
    if table.bytes + cost(s, &json) > max {
        drop(guard);
        if !FULL_LOGGED.swap(true, Ordering::Relaxed) {
            log::warn!(
                "the table of interned flag, treatment and label names is full ({max} bytes); impressions of names not yet interned are queued with copies of their strings"
            );
        }
        return None;
    }
    table.bytes += cost(s, &json);
    let text: &'static str = Box::leak(Box::<str>::from(s));
    let json: &'static str = Box::leak(json.into_boxed_str());
    let name = Name(Box::leak(Box::new(Entry {
        text,
        json,
        hash: name_hash(text.as_bytes()),
    })));
    table.names.insert(text, name);
    Some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_strings_get_the_same_pointer() {
        let a = intern("intern-test-checkout").map(Name::addr);
        let b = intern(&String::from("intern-test-checkout")).map(Name::addr);
        assert!(a.is_some());
        assert_eq!(a, b);
        assert_eq!(
            intern("intern-test-other").map(Name::as_str),
            Some("intern-test-other")
        );
    }

    #[test]
    fn a_name_holds_its_json_string() {
        for s in ["intern-test-plain", "intern-test \"quoted\"\n\u{1}é"] {
            let name = intern(s);
            let mut json = Vec::new();
            write_json_str(&mut json, s);
            assert_eq!(name.map(Name::json), Some(&json[..]), "{s:?}");
            assert_eq!(name.map(Name::hash), Some(name_hash(s.as_bytes())), "{s:?}");
        }
        // A static name's hash, computed at compile time, is the same function's.
        let control = static_name!("control");
        assert_eq!(control.hash(), name_hash(b"control"));
        assert_ne!(name_hash(b"on"), name_hash(b"off"));
        assert_ne!(name_hash(b""), name_hash(b"\0"));
    }

    #[test]
    fn a_full_table_answers_none_and_still_finds_what_it_holds() {
        let held = intern("intern-test-held");
        assert!(held.is_some());
        // A bound below what the table already holds: nothing new fits.
        assert_eq!(intern_bounded("intern-test-never-interned", 1), None);
        assert_eq!(intern_bounded("intern-test-held", 1), held);
    }
}
