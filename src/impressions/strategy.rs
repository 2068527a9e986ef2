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
//!
//! Where the recorder has a delivery queue and no listener, the mode is applied by the
//! impressions worker as it takes each impression from the queue, so that the evaluating
//! thread only queues it, whatever the mode; otherwise (and for an impression that finds
//! the queue full) on the evaluating thread, before the impression is queued.

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use crossbeam_channel::Sender;
use parking_lot::Mutex;

use crate::engine::evaluator::Names;
use crate::engine::{FastMap, FastSet};
use crate::intern::{Name, name_hash};
use crate::stripe::{self, Padded, STRIPES};

use super::UNIQUE_KEYS_EARLY_FLUSH;
use super::flag_map::{FlagMap, FlagName};
use super::impression::ImpressionFields;
use super::queued::Queued;

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

    /// The dedupe hash of the key's bytes, the [`name_hash`]es of flag, treatment and label
    /// and a change number: the key with the process's seed (foldhash folds its length in),
    /// the names as the numbers their entries hold.
    #[inline]
    pub(crate) fn hash_parts(&self, key: &[u8], names: [u64; 3], change_number: i64) -> u64 {
        let mut h = self.hasher.build_hasher();
        h.write(key);
        for name in names {
            h.write_u64(name);
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

/// What the mode reads of an impression, from the evaluation ([`ImpressionFields`]) or from
/// the queue ([`Queued`]).
pub(crate) struct Seen<'a> {
    /// The matching key's bytes (UTF-8)...
    pub(crate) key: &'a [u8],
    /// ...and as text, where it is at hand (validated only when a unique key needs it).
    pub(crate) key_text: Option<&'a str>,
    pub(crate) flag: &'a str,
    /// The flag name, where it is interned.
    pub(crate) flag_name: Option<Name>,
    /// The [`name_hash`]es of flag, treatment and label ([`UNKNOWN_LABEL`] without one):
    /// what the dedupe cache hashes after the key, with the change number (0 without one).
    pub(crate) name_hashes: [u64; 3],
    pub(crate) change_number: i64,
    pub(crate) time: i64,
    /// The flag has `impressionsDisabled`.
    pub(crate) disabled: bool,
    /// The evaluation gave impression properties.
    pub(crate) properties: bool,
}

/// [`name_hash`] of `UNKNOWN`, what the dedupe cache reads for an impression without a
/// label (labels disabled), as the official SDKs do.
pub(crate) const UNKNOWN_LABEL: u64 = name_hash(b"UNKNOWN");

impl<'a> Seen<'a> {
    /// What the mode reads of an impression being recorded; `names` are its flag, treatment
    /// and label interned, where the engine has them.
    pub(crate) fn fields(f: &ImpressionFields<'a>, names: Names) -> Seen<'a> {
        let hash = |name: Option<Name>, text: &str| {
            name.map_or_else(|| name_hash(text.as_bytes()), Name::hash)
        };
        Seen {
            key: f.key.as_bytes(),
            key_text: Some(f.key),
            flag: f.flag,
            flag_name: names.flag,
            name_hashes: [
                hash(names.flag, f.flag),
                hash(names.treatment, f.treatment),
                f.label.map_or(UNKNOWN_LABEL, |l| hash(names.label, l)),
            ],
            change_number: f.change_number.unwrap_or(0),
            time: f.time,
            disabled: f.disabled,
            properties: f.properties.is_some(),
        }
    }
}

/// What the mode decided for one impression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Queue it, with this previous time (`pt`).
    Queue { previous_time: Option<i64> },
    /// Seen this hour already: counted, not queued.
    Deduplicated,
    /// `none` mode or `impressionsDisabled`: counted and its key tracked, not queued.
    CountedOnly,
}

/// Applies the mode to impressions, and counts what it keeps from the queue.
#[derive(Debug)]
pub(crate) struct Strategy {
    pub(crate) mode: ImpressionsMode,
    pub(crate) observer: Observer,
    pub(crate) counter: Counter,
    pub(crate) unique_keys: UniqueKeys,
    /// Impressions found deduplicated.
    pub(crate) deduplicated: AtomicU64,
    /// Impressions only counted (`none` mode, `impressionsDisabled`).
    pub(crate) counted_only: AtomicU64,
    /// Asks for the unique keys to be sent early, once [`UNIQUE_KEYS_EARLY_FLUSH`] are held.
    early_flush: Option<Sender<()>>,
}

impl Strategy {
    /// A strategy for `mode` whose dedupe cache remembers about `cache_size` impressions;
    /// `early_flush` is told when the unique keys held pass [`UNIQUE_KEYS_EARLY_FLUSH`].
    pub(crate) fn new(
        mode: ImpressionsMode,
        cache_size: usize,
        early_flush: Option<Sender<()>>,
    ) -> Strategy {
        Strategy {
            mode,
            observer: Observer::new(cache_size),
            counter: Counter::default(),
            unique_keys: UniqueKeys::default(),
            deduplicated: AtomicU64::new(0),
            counted_only: AtomicU64::new(0),
            early_flush,
        }
    }

    /// Decides what happens to an impression (before it is built, so that deduplicated ones
    /// cost no allocation), and counts it if it is not to be queued.
    pub(crate) fn process(&self, imp: &Seen<'_>) -> Decision {
        if self.mode == ImpressionsMode::None || imp.disabled {
            self.counter
                .inc(imp.flag, imp.flag_name, truncate_hour(imp.time));
            let key = match imp.key_text {
                Some(k) => k,
                // Queued keys were copied from whole `&str`s: always UTF-8.
                None => std::str::from_utf8(imp.key).unwrap_or_default(),
            };
            let held = self.unique_keys.add(imp.flag, imp.flag_name, key);
            self.counted_only.fetch_add(1, Ordering::Relaxed);
            if held >= UNIQUE_KEYS_EARLY_FLUSH
                && let Some(tx) = &self.early_flush
            {
                // A full channel already holds a request.
                let _ = tx.try_send(());
            }
            return Decision::CountedOnly;
        }
        // Impression properties make every impression count: queued, never deduplicated,
        // without `pt` (as the official SDKs do).
        if imp.properties {
            return Decision::Queue {
                previous_time: None,
            };
        }
        let hash = self
            .observer
            .hash_parts(imp.key, imp.name_hashes, imp.change_number);
        let previous_time = self.observer.test_and_set(hash, imp.time);
        if self.mode == ImpressionsMode::Debug {
            return Decision::Queue { previous_time };
        }
        match previous_time {
            Some(pt) => {
                // Only optimized mode needs the hour: debug mode returned above.
                let hour = truncate_hour(imp.time);
                self.counter.inc(imp.flag, imp.flag_name, hour);
                if pt < hour {
                    Decision::Queue { previous_time }
                } else {
                    self.deduplicated.fetch_add(1, Ordering::Relaxed);
                    Decision::Deduplicated
                }
            }
            None => Decision::Queue { previous_time },
        }
    }

    /// [`process`](Self::process) of an impression the worker took from the queue: sets its
    /// `pt`; true when it is still to be sent.
    pub(crate) fn process_queued(&self, i: &mut Queued) -> bool {
        match self.process(&i.seen()) {
            Decision::Queue { previous_time } => {
                i.set_previous_time(previous_time);
                true
            }
            Decision::Deduplicated | Decision::CountedOnly => false,
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

    fn process(s: &Strategy, f: ImpressionFields<'_>, flag: Option<Name>) -> Decision {
        s.process(&Seen::fields(
            &f,
            Names {
                flag,
                ..Names::default()
            },
        ))
    }

    fn strategy(mode: ImpressionsMode) -> Strategy {
        Strategy::new(mode, 1000, None)
    }

    #[test]
    fn counts_and_keys_of_a_flag_seen_interned_and_not_are_merged_by_name() {
        let s = strategy(ImpressionsMode::None);
        let name = crate::intern::intern("f");
        assert!(name.is_some());
        process(&s, imp("a", "on", H, false), name);
        process(&s, imp("a", "on", H, false), None);
        process(&s, imp("b", "on", H, false), name);
        assert_eq!(s.counter.drain(), [("f".to_string(), H, 3)]);
        assert_eq!(
            s.unique_keys.drain(),
            [("f".to_string(), vec!["a".to_string(), "b".to_string()])]
        );
    }

    /// The dedupe cache reads a name's hash from its entry when the name is interned and
    /// computes it otherwise: the same impression is the same either way.
    #[test]
    fn an_impression_dedupes_alike_with_its_names_interned_or_not() {
        let s = strategy(ImpressionsMode::Optimized);
        let names = Names {
            flag: crate::intern::intern("f"),
            treatment: crate::intern::intern("on"),
            label: crate::intern::intern("l"),
        };
        assert!(names.flag.is_some() && names.treatment.is_some() && names.label.is_some());
        let now = 10 * H + 5;
        let first = s.process(&Seen::fields(&imp("a", "on", now, false), names));
        assert!(matches!(
            first,
            Decision::Queue {
                previous_time: None
            }
        ));
        let again = s.process(&Seen::fields(
            &imp("a", "on", now + 1, false),
            Names::default(),
        ));
        assert!(matches!(again, Decision::Deduplicated));
        // Without a label, interned names or not: `UNKNOWN`, one impression.
        let unlabelled = ImpressionFields {
            label: None,
            ..imp("b", "on", now, false)
        };
        assert!(matches!(
            s.process(&Seen::fields(&unlabelled, names)),
            Decision::Queue {
                previous_time: None
            }
        ));
        assert!(matches!(
            s.process(&Seen::fields(&unlabelled, Names::default())),
            Decision::Deduplicated
        ));
        // A different treatment or label is another impression.
        for (t, l) in [
            ("off", Some("l")),
            ("on", Some("m")),
            ("on", Some("UNKNOWN")),
        ] {
            let other = ImpressionFields {
                treatment: t,
                label: l,
                ..imp("a", "on", now + 2, false)
            };
            let d = s.process(&Seen::fields(&other, Names::default()));
            assert!(
                matches!(
                    d,
                    Decision::Queue {
                        previous_time: None
                    }
                ),
                "{t} {l:?}"
            );
        }
    }

    #[test]
    fn optimized_dedupes_within_the_hour() {
        let s = strategy(ImpressionsMode::Optimized);
        let now = 10 * H + 5;
        assert!(matches!(
            process(&s, imp("a", "on", now, false), None),
            Decision::Queue {
                previous_time: None
            }
        ));
        assert!(matches!(
            process(&s, imp("a", "on", now + 1, false), None),
            Decision::Deduplicated
        ));
        assert!(matches!(
            process(&s, imp("a", "off", now + 2, false), None),
            Decision::Queue { .. }
        ));
        // The next hour: queued again, with pt from the last hour.
        let later = 11 * H + 1;
        assert!(
            matches!(process(&s, imp("a", "on", later, false), None), Decision::Queue { previous_time: Some(p) } if p == now + 1)
        );
        assert_eq!(
            s.counter.drain(),
            vec![("f".to_string(), 10 * H, 1), ("f".to_string(), 11 * H, 1)]
        );
    }

    #[test]
    fn debug_queues_everything_with_pt() {
        let s = strategy(ImpressionsMode::Debug);
        assert!(matches!(
            process(&s, imp("a", "on", 1, false), None),
            Decision::Queue {
                previous_time: None
            }
        ));
        assert!(matches!(
            process(&s, imp("a", "on", 2, false), None),
            Decision::Queue {
                previous_time: Some(1)
            }
        ));
        assert!(s.counter.drain().is_empty());
        assert_eq!(s.deduplicated.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn none_and_disabled_only_count() {
        let s = strategy(ImpressionsMode::None);
        for (key, held) in [("a", 1), ("a", 1), ("b", 2)] {
            assert_eq!(
                process(&s, imp(key, "on", 2, false), None),
                Decision::CountedOnly
            );
            assert_eq!(s.unique_keys.held.load(Ordering::Relaxed), held);
        }
        assert_eq!(s.counted_only.load(Ordering::Relaxed), 3);
        assert_eq!(s.counter.drain(), vec![("f".to_string(), 0, 3)]);
        assert_eq!(
            s.unique_keys.drain(),
            vec![("f".to_string(), vec!["a".to_string(), "b".to_string()])]
        );
        let d = strategy(ImpressionsMode::Debug);
        assert_eq!(
            process(&d, imp("a", "on", 1, true), None),
            Decision::CountedOnly
        );
    }

    #[test]
    fn threads_counts_and_keys_are_merged_when_drained() {
        let s = strategy(ImpressionsMode::None);
        std::thread::scope(|scope| {
            for t in 0..3 {
                let s = &s;
                scope.spawn(move || {
                    for n in 0..100 {
                        // Every thread sees keys k0..k49 twice, and its own key once.
                        process(s, imp(&format!("k{}", n % 50), "on", H + n, false), None);
                    }
                    process(s, imp(&format!("own{t}"), "on", 2 * H, false), None);
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
        process(&s, imp("again", "on", 1, false), None);
        assert_eq!(s.unique_keys.held.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn holding_many_unique_keys_asks_for_an_early_flush() {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let s = Strategy::new(ImpressionsMode::None, 1000, Some(tx));
        for n in 0..UNIQUE_KEYS_EARLY_FLUSH - 1 {
            process(&s, imp(&format!("k{n}"), "on", 1, false), None);
        }
        assert!(rx.try_recv().is_err(), "not yet");
        process(&s, imp("last", "on", 1, false), None);
        assert!(rx.try_recv().is_ok());
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
