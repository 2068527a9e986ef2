//! Impression modes: what happens to an impression between the evaluation and the queue.
//!
//! - [`ImpressionsMode::Debug`]: every impression is queued, with `pt` from the dedupe cache.
//! - [`ImpressionsMode::Optimized`] (default): an impression already seen in the current hour
//!   (same key, flag, treatment, label and change number) is not queued but counted per flag
//!   and hour; the rest are queued with `pt`.
//! - [`ImpressionsMode::None`]: nothing is queued; impressions are counted per flag and hour,
//!   and the keys that saw each flag are collected (unique keys).
//!
//! A flag with `impressionsDisabled` is handled as `None` whatever the mode.

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::Mutex;

use crate::engine::{FastMap, FastSet};
use crate::intern::Name;
use crate::stripe::{self, Padded, STRIPES};

use super::flag_map::{FlagMap, FlagName};
use super::impression::ImpressionFields;

/// How impressions are reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ImpressionsMode {
    /// Only the first impression per key, flag, treatment, label and change number in each
    /// hour is sent; the rest are counted.
    #[default]
    Optimized,
    /// Every impression is sent.
    Debug,
    /// No impression is sent: counts per flag and hour and the keys per flag only.
    None,
}

impl ImpressionsMode {
    /// The value of the `SplitSDKImpressionsMode` header.
    pub fn as_header(self) -> &'static str {
        match self {
            ImpressionsMode::Optimized => "OPTIMIZED",
            ImpressionsMode::Debug => "DEBUG",
            ImpressionsMode::None => "NONE",
        }
    }
}

impl FromStr for ImpressionsMode {
    type Err = String;
    /// Case-insensitive `optimized`, `debug` or `none`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "optimized" => Ok(ImpressionsMode::Optimized),
            "debug" => Ok(ImpressionsMode::Debug),
            "none" => Ok(ImpressionsMode::None),
            _ => Err(format!(
                "unknown impressions mode {s:?}: expected optimized, debug or none"
            )),
        }
    }
}

/// Start of the hour of `ms`.
pub(crate) fn truncate_hour(ms: i64) -> i64 {
    ms - ms.rem_euclid(3_600_000)
}

const SHARDS: usize = 32;

/// Hasher for keys that are already hashes.
#[derive(Default)]
pub(crate) struct Identity(u64);

impl Hasher for Identity {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

type HashedMap<V> = HashMap<u64, V, BuildHasherDefault<Identity>>;

/// Two generations per shard: when the current one fills up it becomes the previous one, so
/// memory stays bounded and recently used entries survive (an approximate LRU).
#[derive(Default)]
struct Generations {
    current: HashedMap<i64>,
    previous: HashedMap<i64>,
}

/// The dedupe cache: impression hash to the last time it was seen.
pub(crate) struct Observer {
    shards: Box<[Mutex<Generations>]>,
    per_generation: usize,
    hasher: foldhash::fast::RandomState,
}

impl std::fmt::Debug for Observer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Observer")
            .field("capacity", &(self.per_generation * 2 * SHARDS))
            .finish()
    }
}

impl Observer {
    /// A cache remembering about `capacity` impressions.
    pub(crate) fn new(capacity: usize) -> Observer {
        Observer {
            shards: (0..SHARDS)
                .map(|_| Mutex::new(Generations::default()))
                .collect(),
            per_generation: (capacity / (2 * SHARDS)).max(1),
            hasher: foldhash::fast::RandomState::default(),
        }
    }

    /// The dedupe hash of (key, flag, treatment, label, change number).
    pub(crate) fn hash(&self, i: &ImpressionFields<'_>) -> u64 {
        self.hash_parts(
            [
                i.key.as_bytes(),
                i.flag.as_bytes(),
                i.treatment.as_bytes(),
                i.label.unwrap_or("UNKNOWN").as_bytes(),
            ],
            i.change_number.unwrap_or(0),
        )
    }

    /// [`hash`](Self::hash) of key, flag, treatment and label bytes and a change number.
    pub(crate) fn hash_parts(&self, parts: [&[u8]; 4], change_number: i64) -> u64 {
        let mut h = self.hasher.build_hasher();
        for part in parts {
            h.write(part);
            h.write_u8(0xff);
        }
        h.write_i64(change_number);
        h.finish()
    }

    /// Records that the impression was seen at `time`; returns when it was last seen.
    pub(crate) fn test_and_set(&self, hash: u64, time: i64) -> Option<i64> {
        let shard = &self.shards[(hash >> 59) as usize % SHARDS];
        let mut g = shard.lock();
        if let Some(v) = g.current.get_mut(&hash) {
            return Some(std::mem::replace(v, time));
        }
        let previous = g.previous.remove(&hash);
        if g.current.len() >= self.per_generation {
            g.previous = std::mem::take(&mut g.current);
        }
        g.current.insert(hash, time);
        previous
    }
}

/// Impression counts per flag and hour, one map per thread stripe (a thread only locks its
/// own, which no other evaluating thread takes).
#[derive(Debug, Default)]
pub(crate) struct Counter {
    stripes: [Padded<Mutex<HourCounts>>; STRIPES],
}

/// Flag to its (hour, count) pairs; a flag sees one or two hours between flushes, so a
/// short vector beats a map.
type HourCounts = FlagMap<Vec<(i64, u64)>>;

impl Counter {
    /// Counts an impression of `flag` (interned as `name`, when it is) in `hour`.
    pub(crate) fn inc(&self, flag: &str, name: Option<Name>, hour: i64) {
        let mut s = self.stripes[stripe::this_thread()].0.lock();
        s.update(flag, name, Vec::new, |hours| {
            match hours.iter_mut().find(|(h, _)| *h == hour) {
                Some((_, n)) => *n += 1,
                None => hours.push((hour, 1)),
            }
        });
    }

    /// Takes every count: `(flag, hour, count)`, sorted, the stripes' counts added up.
    pub(crate) fn drain(&self) -> Vec<(String, i64, u64)> {
        let mut all: FastMap<(String, i64), u64> = FastMap::default();
        for stripe in &self.stripes {
            let taken = std::mem::take(&mut *stripe.0.lock());
            for (flag, hours) in taken.into_entries() {
                for (hour, n) in hours {
                    *all.entry((flag.as_str().to_string(), hour)).or_default() += n;
                }
            }
        }
        let mut out: Vec<(String, i64, u64)> =
            all.into_iter().map(|((f, h), n)| (f, h, n)).collect();
        out.sort();
        out
    }
}

/// The keys that saw each flag, for `none` mode: one map per thread stripe, merged when
/// drained.
#[derive(Debug, Default)]
pub(crate) struct UniqueKeys {
    stripes: [Padded<Mutex<FlagKeySets>>; STRIPES],
    /// Keys held over all stripes (a key seen by two threads is held, and counted, twice
    /// until the next drain merges them).
    held: AtomicUsize,
}

type FlagKeySets = FlagMap<FastSet<String>>;

impl UniqueKeys {
    /// Adds a key of `flag` (interned as `name`, when it is); returns the number of keys
    /// held.
    pub(crate) fn add(&self, flag: &str, name: Option<Name>, key: &str) -> usize {
        let mut map = self.stripes[stripe::this_thread()].0.lock();
        let inserted = map.update(flag, name, FastSet::default, |keys| {
            !keys.contains(key) && keys.insert(key.to_string())
        });
        // Counted under the stripe's lock, so that a drain never takes a key it has not
        // counted yet.
        if inserted {
            self.held.fetch_add(1, Ordering::Relaxed) + 1
        } else {
            self.held.load(Ordering::Relaxed)
        }
    }

    /// Takes every flag's keys, sorted. A flag seen since the last drain keeps a set sized
    /// for as many keys, so the next period's inserts do not regrow it on the evaluating
    /// threads; a flag not seen since is forgotten.
    pub(crate) fn drain(&self) -> Vec<(String, Vec<String>)> {
        let mut all: FastMap<String, FastSet<String>> = FastMap::default();
        let mut taken_keys = 0;
        for stripe in &self.stripes {
            // The lock is held only to swap the map out and, later, to put the sized sets
            // in: the allocations happen outside it.
            let taken = std::mem::take(&mut *stripe.0.lock());
            let sized: Vec<(FlagName, FastSet<String>)> = taken
                .iter()
                .filter(|(_, keys)| !keys.is_empty())
                .map(|(flag, keys)| {
                    let set = FastSet::with_capacity_and_hasher(keys.len(), Default::default());
                    (flag, set)
                })
                .collect();
            if !sized.is_empty() {
                let mut map = stripe.0.lock();
                for (flag, set) in sized {
                    // A set created since the swap (a key added meanwhile) is kept.
                    map.or_insert(flag, set);
                }
            }
            for (flag, keys) in taken.into_entries() {
                taken_keys += keys.len();
                if !keys.is_empty() {
                    all.entry(flag.into_string()).or_default().extend(keys);
                }
            }
        }
        self.held.fetch_sub(taken_keys, Ordering::Relaxed);
        let mut out: Vec<(String, Vec<String>)> = all
            .into_iter()
            .map(|(f, ks)| {
                let mut ks: Vec<String> = ks.into_iter().collect();
                ks.sort();
                (f, ks)
            })
            .collect();
        out.sort();
        out
    }
}

/// What the mode decided for one impression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Queue it, with this previous time (`pt`).
    Queue { previous_time: Option<i64> },
    /// Seen this hour already: counted, not queued.
    Deduplicated { previous_time: Option<i64> },
    /// `none` mode or `impressionsDisabled`: counted and its key tracked, not queued.
    CountedOnly {
        /// Number of unique keys held after this one.
        unique_keys: usize,
    },
}

/// Applies the mode to impressions.
#[derive(Debug)]
pub(crate) struct Strategy {
    pub(crate) mode: ImpressionsMode,
    /// Debug mode leaves `pt` to the impressions worker (see [`Strategy::deferring_pt`]).
    defer_debug_pt: bool,
    pub(crate) observer: Observer,
    pub(crate) counter: Counter,
    pub(crate) unique_keys: UniqueKeys,
}

impl Strategy {
    pub(crate) fn new(mode: ImpressionsMode, cache_size: usize) -> Strategy {
        Strategy {
            mode,
            defer_debug_pt: false,
            observer: Observer::new(cache_size),
            counter: Counter::default(),
            unique_keys: UniqueKeys::default(),
        }
    }

    /// In debug mode, queue impressions without `pt`: the impressions worker sets it as it
    /// takes them from the queue (its own dedupe cache, in queue order), so that the
    /// evaluating thread does not pay for the cache. Only where nothing else needs `pt`
    /// at recording time (no listener).
    pub(crate) fn deferring_pt(mut self) -> Strategy {
        self.defer_debug_pt = self.mode == ImpressionsMode::Debug;
        self
    }

    /// Decides what happens to an impression (before it is built, so that deduplicated ones
    /// cost no allocation).
    /// `flag` is the impression's flag name where it is interned.
    pub(crate) fn process(
        &self,
        imp: &ImpressionFields<'_>,
        flag: Option<Name>,
        now: i64,
    ) -> Decision {
        if self.mode == ImpressionsMode::None || imp.disabled {
            self.counter.inc(imp.flag, flag, truncate_hour(now));
            let unique_keys = self.unique_keys.add(imp.flag, flag, imp.key);
            return Decision::CountedOnly { unique_keys };
        }
        // Impression properties make every impression count: queued, never deduplicated,
        // without `pt` (as the official SDKs do).
        if self.defer_debug_pt || imp.properties.is_some() {
            return Decision::Queue {
                previous_time: None,
            };
        }
        let previous_time = self
            .observer
            .test_and_set(self.observer.hash(imp), imp.time);
        if self.mode == ImpressionsMode::Debug {
            return Decision::Queue { previous_time };
        }
        match previous_time {
            Some(pt) => {
                self.counter.inc(imp.flag, flag, truncate_hour(now));
                if pt < truncate_hour(now) {
                    Decision::Queue { previous_time }
                } else {
                    Decision::Deduplicated { previous_time }
                }
            }
            None => Decision::Queue { previous_time },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn imp<'a>(key: &'a str, t: &'a str, time: i64, disabled: bool) -> ImpressionFields<'a> {
        ImpressionFields {
            key,
            bucketing_key: None,
            flag: "f",
            treatment: t,
            label: Some("l"),
            change_number: Some(1),
            time,
            disabled,
            properties: None,
        }
    }

    const H: i64 = 3_600_000;

    #[test]
    fn counts_and_keys_of_a_flag_seen_interned_and_not_are_merged_by_name() {
        let s = Strategy::new(ImpressionsMode::None, 1000);
        let name = crate::intern::intern("f");
        assert!(name.is_some());
        s.process(&imp("a", "on", H, false), name, H);
        s.process(&imp("a", "on", H, false), None, H);
        s.process(&imp("b", "on", H, false), name, H);
        assert_eq!(s.counter.drain(), [("f".to_string(), H, 3)]);
        assert_eq!(
            s.unique_keys.drain(),
            [("f".to_string(), vec!["a".to_string(), "b".to_string()])]
        );
    }

    #[test]
    fn optimized_dedupes_within_the_hour() {
        let s = Strategy::new(ImpressionsMode::Optimized, 1000);
        let now = 10 * H + 5;
        assert!(matches!(
            s.process(&imp("a", "on", now, false), None, now),
            Decision::Queue {
                previous_time: None
            }
        ));
        assert!(matches!(
            s.process(&imp("a", "on", now + 1, false), None, now + 1),
            Decision::Deduplicated { .. }
        ));
        assert!(matches!(
            s.process(&imp("a", "off", now + 2, false), None, now + 2),
            Decision::Queue { .. }
        ));
        // The next hour: queued again, with pt from the last hour.
        let later = 11 * H + 1;
        assert!(
            matches!(s.process(&imp("a", "on", later, false), None, later), Decision::Queue { previous_time: Some(p) } if p == now + 1)
        );
        assert_eq!(
            s.counter.drain(),
            vec![("f".to_string(), 10 * H, 1), ("f".to_string(), 11 * H, 1)]
        );
    }

    #[test]
    fn debug_queues_everything_with_pt() {
        let s = Strategy::new(ImpressionsMode::Debug, 1000);
        assert!(matches!(
            s.process(&imp("a", "on", 1, false), None, 1),
            Decision::Queue {
                previous_time: None
            }
        ));
        assert!(matches!(
            s.process(&imp("a", "on", 2, false), None, 2),
            Decision::Queue {
                previous_time: Some(1)
            }
        ));
        assert!(s.counter.drain().is_empty());
        let deferred = Strategy::new(ImpressionsMode::Debug, 1000).deferring_pt();
        for t in [1, 2] {
            assert_eq!(
                deferred.process(&imp("a", "on", t, false), None, t),
                Decision::Queue {
                    previous_time: None
                }
            );
        }
        let optimized = Strategy::new(ImpressionsMode::Optimized, 1000).deferring_pt();
        optimized.process(&imp("a", "on", 1, false), None, 1);
        assert!(matches!(
            optimized.process(&imp("a", "on", 2, false), None, 2),
            Decision::Deduplicated { .. }
        ));
    }

    #[test]
    fn none_and_disabled_only_count() {
        let s = Strategy::new(ImpressionsMode::None, 1000);
        assert!(matches!(
            s.process(&imp("a", "on", 1, false), None, 1),
            Decision::CountedOnly { unique_keys: 1 }
        ));
        assert!(matches!(
            s.process(&imp("a", "on", 2, false), None, 2),
            Decision::CountedOnly { unique_keys: 1 }
        ));
        assert!(matches!(
            s.process(&imp("b", "on", 2, false), None, 2),
            Decision::CountedOnly { unique_keys: 2 }
        ));
        assert_eq!(s.counter.drain(), vec![("f".to_string(), 0, 3)]);
        assert_eq!(
            s.unique_keys.drain(),
            vec![("f".to_string(), vec!["a".to_string(), "b".to_string()])]
        );
        let d = Strategy::new(ImpressionsMode::Debug, 1000);
        assert!(matches!(
            d.process(&imp("a", "on", 1, true), None, 1),
            Decision::CountedOnly { .. }
        ));
    }

    #[test]
    fn threads_counts_and_keys_are_merged_when_drained() {
        let s = Strategy::new(ImpressionsMode::None, 1000);
        std::thread::scope(|scope| {
            for t in 0..3 {
                let s = &s;
                scope.spawn(move || {
                    for n in 0..100 {
                        // Every thread sees keys k0..k49 twice, and its own key once.
                        s.process(
                            &imp(&format!("k{}", n % 50), "on", H + n, false),
                            None,
                            H + n,
                        );
                    }
                    s.process(&imp(&format!("own{t}"), "on", 2 * H, false), None, 2 * H);
                });
            }
        });
        assert_eq!(
            s.counter.drain(),
            vec![("f".to_string(), H, 300), ("f".to_string(), 2 * H, 3)]
        );
        let keys = s.unique_keys.drain();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].1.len(), 53, "each key once: {:?}", keys[0].1);
        assert_eq!(s.unique_keys.held.load(Ordering::Relaxed), 0);
        assert!(s.counter.drain().is_empty());
        assert!(s.unique_keys.drain().is_empty());
        // After a drain the next key counts from 1 again.
        assert!(matches!(
            s.process(&imp("again", "on", 1, false), None, 1),
            Decision::CountedOnly { unique_keys: 1 }
        ));
    }

    #[test]
    fn observer_memory_is_bounded() {
        let o = Observer::new(640);
        for i in 0..100_000u64 {
            o.test_and_set(i.wrapping_mul(0x9E37_79B9_7F4A_7C15), 1);
        }
        let held: usize = o
            .shards
            .iter()
            .map(|s| {
                let g = s.lock();
                g.current.len() + g.previous.len()
            })
            .sum();
        assert!(held <= 640, "{held}");
    }
}
