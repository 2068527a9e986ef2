//! A map keyed by flag for the structures every evaluating thread updates (impression
//! counts, unique keys): a flag whose name is interned (every flag of a compiled snapshot)
//! is found by the name's address, without hashing or comparing its bytes; any other by its
//! bytes.

use crate::engine::FastMap;
use crate::intern::Name;

/// Flag to `V`.
#[derive(Debug)]
pub(crate) struct FlagMap<V> {
    /// By the address of the interned name: one string has one address.
    interned: FastMap<usize, (Name, V)>,
    named: FastMap<String, V>,
}

impl<V> Default for FlagMap<V> {
    fn default() -> Self {
        FlagMap {
            interned: FastMap::default(),
            named: FastMap::default(),
        }
    }
}

impl<V> FlagMap<V> {
    /// Calls `f` with the value of `flag` (whose interned name is `name`, when it has one),
    /// inserting `new()` first when there is none; the name is copied only then.
    #[inline]
    pub(crate) fn update<R>(
        &mut self,
        flag: &str,
        name: Option<Name>,
        new: impl FnOnce() -> V,
        f: impl FnOnce(&mut V) -> R,
    ) -> R {
        match name {
            Some(n) => f(&mut self
                .interned
                .entry(n.addr())
                .or_insert_with(|| (n, new()))
                .1),
            None => match self.named.get_mut(flag) {
                Some(v) => f(v),
                None => {
                    let mut v = new();
                    let r = f(&mut v);
                    self.named.insert(flag.to_string(), v);
                    r
                }
            },
        }
    }

    /// Every flag's name and value (a flag seen both interned and not comes twice).
    pub(crate) fn iter(&self) -> impl Iterator<Item = (FlagName, &V)> {
        self.interned
            .values()
            .map(|(n, v)| (FlagName::Interned(*n), v))
            .chain(
                self.named
                    .iter()
                    .map(|(f, v)| (FlagName::Owned(f.clone()), v)),
            )
    }

    /// Inserts `v` for `flag` unless it has a value already.
    pub(crate) fn or_insert(&mut self, flag: FlagName, v: V) {
        match flag {
            FlagName::Interned(n) => {
                self.interned.entry(n.addr()).or_insert((n, v));
            }
            FlagName::Owned(f) => {
                self.named.entry(f).or_insert(v);
            }
        }
    }

    /// Takes every flag's value (a flag seen both interned and not comes twice).
    pub(crate) fn into_entries(self) -> impl Iterator<Item = (FlagName, V)> {
        self.interned
            .into_values()
            .map(|(n, v)| (FlagName::Interned(n), v))
            .chain(self.named.into_iter().map(|(f, v)| (FlagName::Owned(f), v)))
    }
}

/// A flag's name as a [`FlagMap`] holds it.
#[derive(Debug, Clone)]
pub(crate) enum FlagName {
    Interned(Name),
    Owned(String),
}

impl FlagName {
    /// The name.
    pub(crate) fn as_str(&self) -> &str {
        match self {
            FlagName::Interned(n) => n.as_str(),
            FlagName::Owned(s) => s,
        }
    }

    /// The name as an owned string (copied when interned).
    pub(crate) fn into_string(self) -> String {
        match self {
            FlagName::Interned(n) => n.as_str().to_string(),
            FlagName::Owned(s) => s,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flag_seen_interned_and_not_is_kept_under_both_and_drained_by_name() {
        let name = crate::intern::intern("flag-map-test").expect("interned");
        let mut m: FlagMap<u64> = FlagMap::default();
        for _ in 0..3 {
            m.update("flag-map-test", Some(name), || 0, |n| *n += 1);
        }
        m.update("flag-map-test", None, || 0, |n| *n += 10);
        m.update("other", None, || 0, |n| *n += 100);
        let mut seen: Vec<(String, u64)> = m.iter().map(|(f, v)| (f.into_string(), *v)).collect();
        seen.sort();
        assert_eq!(
            seen,
            [
                ("flag-map-test".to_string(), 3),
                ("flag-map-test".to_string(), 10),
                ("other".to_string(), 100)
            ]
        );
        let mut taken: Vec<(String, u64)> = m
            .into_entries()
            .map(|(f, v)| (f.into_string(), v))
            .collect();
        taken.sort();
        assert_eq!(taken, seen);
        let mut m: FlagMap<u64> = FlagMap::default();
        m.or_insert(FlagName::Interned(name), 1);
        m.or_insert(FlagName::Interned(name), 2);
        m.or_insert(FlagName::Owned("other".into()), 3);
        m.update("flag-map-test", Some(name), || 0, |n| *n += 1);
        let mut kept: Vec<(String, u64)> = m.iter().map(|(f, v)| (f.as_str().into(), *v)).collect();
        kept.sort();
        assert_eq!(
            kept,
            [("flag-map-test".to_string(), 2), ("other".to_string(), 3)]
        );
    }
}
