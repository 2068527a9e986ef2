//! The evaluation engine: pure functions from compiled definitions, a key and attributes to a
//! treatment and a label. No I/O, no threads, no locks.

use std::collections::{HashMap, HashSet};

pub(crate) mod attributes;
pub(crate) mod bucket;
pub(crate) mod compile;
pub(crate) mod evaluator;
pub(crate) mod labels;
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
