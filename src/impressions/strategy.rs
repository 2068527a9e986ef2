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

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::str::FromStr;

use parking_lot::Mutex;

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
type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

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

/// Impression counts per flag and hour.
#[derive(Debug, Default)]
pub(crate) struct Counter {
    /// Flag to its (hour, count) pairs; a flag sees one or two hours between flushes, so a
    /// short vector beats a map.
    shards: [Mutex<HourCounts>; 8],
}

/// Flag to its (hour, count) pairs.
type HourCounts = FastMap<String, Vec<(i64, u64)>>;

impl Counter {
    fn shard(&self, flag: &str) -> &Mutex<HourCounts> {
        let h = flag.bytes().fold(0usize, |a, b| {
            a.wrapping_mul(31).wrapping_add(usize::from(b))
        });
        &self.shards[h % self.shards.len()]
    }

    pub(crate) fn inc(&self, flag: &str, hour: i64) {
        let mut s = self.shard(flag).lock();
        match s.get_mut(flag) {
            Some(hours) => match hours.iter_mut().find(|(h, _)| *h == hour) {
                Some((_, n)) => *n += 1,
                None => hours.push((hour, 1)),
            },
            None => {
                s.insert(flag.to_string(), vec![(hour, 1)]);
            }
        }
    }

    /// Takes every count: `(flag, hour, count)`.
    pub(crate) fn drain(&self) -> Vec<(String, i64, u64)> {
        let mut out = Vec::new();
        for shard in &self.shards {
            for (flag, hours) in shard.lock().drain() {
                for (hour, n) in hours {
                    out.push((flag.clone(), hour, n));
                }
            }
        }
        out.sort();
        out
    }
}

/// The keys that saw each flag, for `none` mode.
#[derive(Debug, Default)]
pub(crate) struct UniqueKeys {
    inner: Mutex<(HashMap<String, HashSet<String>>, usize)>,
}

impl UniqueKeys {
    /// Adds a key; returns the number of keys held.
    pub(crate) fn add(&self, flag: &str, key: &str) -> usize {
        let mut g = self.inner.lock();
        let (map, total) = &mut *g;
        let inserted = match map.get_mut(flag) {
            Some(keys) => !keys.contains(key) && keys.insert(key.to_string()),
            None => {
                map.insert(flag.to_string(), HashSet::from([key.to_string()]));
                true
            }
        };
        if inserted {
            *total += 1;
        }
        *total
    }

    /// Takes every flag's keys, sorted.
    pub(crate) fn drain(&self) -> Vec<(String, Vec<String>)> {
        let mut g = self.inner.lock();
        g.1 = 0;
        let mut out: Vec<(String, Vec<String>)> =
            g.0.drain()
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
    pub(crate) fn process(&self, imp: &ImpressionFields<'_>, now: i64) -> Decision {
        if self.mode == ImpressionsMode::None || imp.disabled {
            self.counter.inc(imp.flag, truncate_hour(now));
            let unique_keys = self.unique_keys.add(imp.flag, imp.key);
            return Decision::CountedOnly { unique_keys };
        }
        if self.defer_debug_pt {
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
                self.counter.inc(imp.flag, truncate_hour(now));
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
        }
    }

    const H: i64 = 3_600_000;

    #[test]
    fn optimized_dedupes_within_the_hour() {
        let s = Strategy::new(ImpressionsMode::Optimized, 1000);
        let now = 10 * H + 5;
        assert!(matches!(
            s.process(&imp("a", "on", now, false), now),
            Decision::Queue {
                previous_time: None
            }
        ));
        assert!(matches!(
            s.process(&imp("a", "on", now + 1, false), now + 1),
            Decision::Deduplicated { .. }
        ));
        assert!(matches!(
            s.process(&imp("a", "off", now + 2, false), now + 2),
            Decision::Queue { .. }
        ));
        // The next hour: queued again, with pt from the last hour.
        let later = 11 * H + 1;
        assert!(
            matches!(s.process(&imp("a", "on", later, false), later), Decision::Queue { previous_time: Some(p) } if p == now + 1)
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
            s.process(&imp("a", "on", 1, false), 1),
            Decision::Queue {
                previous_time: None
            }
        ));
        assert!(matches!(
            s.process(&imp("a", "on", 2, false), 2),
            Decision::Queue {
                previous_time: Some(1)
            }
        ));
        assert!(s.counter.drain().is_empty());
        let deferred = Strategy::new(ImpressionsMode::Debug, 1000).deferring_pt();
        for t in [1, 2] {
            assert_eq!(
                deferred.process(&imp("a", "on", t, false), t),
                Decision::Queue {
                    previous_time: None
                }
            );
        }
        let optimized = Strategy::new(ImpressionsMode::Optimized, 1000).deferring_pt();
        optimized.process(&imp("a", "on", 1, false), 1);
        assert!(matches!(
            optimized.process(&imp("a", "on", 2, false), 2),
            Decision::Deduplicated { .. }
        ));
    }

    #[test]
    fn none_and_disabled_only_count() {
        let s = Strategy::new(ImpressionsMode::None, 1000);
        assert!(matches!(
            s.process(&imp("a", "on", 1, false), 1),
            Decision::CountedOnly { unique_keys: 1 }
        ));
        assert!(matches!(
            s.process(&imp("a", "on", 2, false), 2),
            Decision::CountedOnly { unique_keys: 1 }
        ));
        assert!(matches!(
            s.process(&imp("b", "on", 2, false), 2),
            Decision::CountedOnly { unique_keys: 2 }
        ));
        assert_eq!(s.counter.drain(), vec![("f".to_string(), 0, 3)]);
        assert_eq!(
            s.unique_keys.drain(),
            vec![("f".to_string(), vec!["a".to_string(), "b".to_string()])]
        );
        let d = Strategy::new(ImpressionsMode::Debug, 1000);
        assert!(matches!(
            d.process(&imp("a", "on", 1, true), 1),
            Decision::CountedOnly { .. }
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
