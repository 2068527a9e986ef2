//! Last-seen-treatment traits: per key, the last treatment seen of each flag.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;

use super::IntegrationStats;
use super::segment::{SegmentConfig, SegmentSink};
use crate::engine::attributes::Attributes;
use crate::error::Error;
use crate::impressions::{Impression, ImpressionListener, SdkMetadata};

/// The last treatment a key saw of one flag, and when.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LastSeen {
    /// The treatment.
    pub treatment: String,
    /// The impression's time, epoch milliseconds.
    pub time: i64,
}

/// Counters of a [`TraitsListener`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TraitsStats {
    /// Impressions seen.
    pub impressions: u64,
    /// Keys held now (at most the capacity).
    pub keys: usize,
    /// Keys evicted, least recently seen first, to stay within the capacity.
    pub evicted: u64,
    /// The `identify` calls' delivery, when pushing to Segment.
    pub identify: Option<IntegrationStats>,
}

/// Builds per-key traits from impressions: the trait is named after the flag and its value is
/// the last treatment the key saw.
///
/// Memory is bounded: at most `capacity` keys are held, and when a new key would pass it the
/// key seen least recently is forgotten (LRU; reading traits does not count as seeing).
/// Each key holds one entry per flag it saw, so at most as many as there are flags.
///
/// "Last" is by impression time: an impression older than the one held for the same key and
/// flag (possible when evaluations on several threads race) does not replace it. Every
/// impression counts, `control` ones (e.g. before the client was ready) included.
///
/// With a [`SegmentConfig`], each change (a flag seen for the first time by a key, or a
/// treatment different from the one held) is pushed to Segment as an `identify` call with
/// `userId` = the key and one trait, named after the flag, set to the new treatment (Segment
/// merges traits, so the others stay). The calls go through a worker of the listener's own
/// (thread `splitkit-segment-identify`) with the delivery rules of
/// [`SegmentIntegration`](crate::integrations::SegmentIntegration).
///
/// # Examples
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use splitkit::Client;
/// use splitkit::integrations::TraitsListener;
///
/// let traits = Arc::new(TraitsListener::new(2, None)?);
/// let client = Client::builder("localhost")
///     .split_file("examples/flags.json")
///     .impression_listener(traits.clone())
///     .build()?;
/// for user in ["qa_alice", "qa_bob", "carol"] {
///     client.get_treatment(user, "new_checkout", None);
/// }
/// client.flush(Duration::from_secs(5));
/// assert!(traits.traits("qa_alice").is_empty()); // evicted: capacity 2
/// assert_eq!(traits.traits("qa_bob")["new_checkout"], "on");
/// assert_eq!(traits.stats().evicted, 1);
/// # Ok::<(), splitkit::Error>(())
/// ```
pub struct TraitsListener {
    state: Mutex<Lru>,
    segment: Option<SegmentSink>,
    impressions: AtomicU64,
}

impl fmt::Debug for TraitsListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TraitsListener")
            .field("capacity", &self.capacity())
            .field("keys", &self.len())
            .field("identify", &self.segment.is_some())
            .finish_non_exhaustive()
    }
}

/// Keys with their traits, and their order of last sight.
struct Lru {
    capacity: usize,
    /// Stamp of the latest sighting.
    clock: u64,
    keys: HashMap<Arc<str>, Entry>,
    /// Stamp of each key's last sighting → key; the first entry is the least recent.
    order: BTreeMap<u64, Arc<str>>,
    evicted: u64,
}

struct Entry {
    stamp: u64,
    flags: BTreeMap<String, LastSeen>,
}

impl Lru {
    /// Records that `key` saw `treatment` of `flag` at `time`; true when the trait changed.
    fn see(&mut self, key: &str, flag: &str, treatment: &str, time: i64) -> bool {
        self.clock += 1;
        let stamp = self.clock;
        let held = match self.keys.get_key_value(key) {
            Some((held, entry)) => {
                self.order.remove(&entry.stamp);
                Arc::clone(held)
            }
            None => {
                if self.keys.len() >= self.capacity {
                    self.evict_one();
                }
                let held: Arc<str> = Arc::from(key);
                self.keys.insert(
                    Arc::clone(&held),
                    Entry {
                        stamp,
                        flags: BTreeMap::new(),
                    },
                );
                held
            }
        };
        self.order.insert(stamp, held);
        let Some(entry) = self.keys.get_mut(key) else {
            return false;
        };
        entry.stamp = stamp;
        match entry.flags.get_mut(flag) {
            Some(seen) if time < seen.time => false,
            Some(seen) => {
                seen.time = time;
                if seen.treatment == treatment {
                    false
                } else {
                    treatment.clone_into(&mut seen.treatment);
                    true
                }
            }
            None => {
                entry.flags.insert(
                    flag.to_owned(),
                    LastSeen {
                        treatment: treatment.to_owned(),
                        time,
                    },
                );
                true
            }
        }
    }

    fn evict_one(&mut self) {
        if let Some((_, key)) = self.order.pop_first() {
            self.keys.remove(&key);
            self.evicted += 1;
        }
    }
}

impl TraitsListener {
    /// A listener that holds the traits of at most `capacity` keys, and pushes changes to
    /// Segment as `identify` calls when `segment` is given.
    ///
    /// # Errors
    /// [`Error::Config`] when `capacity` is zero or the Segment configuration is invalid (see
    /// [`SegmentIntegration::new`](crate::integrations::SegmentIntegration::new)); [`Error::Io`] when the
    /// Segment worker thread cannot be started.
    ///
    /// # Examples
    /// ```
    /// use splitkit::Error;
    /// use splitkit::integrations::TraitsListener;
    ///
    /// assert!(TraitsListener::new(100_000, None).is_ok());
    /// assert!(matches!(TraitsListener::new(0, None), Err(Error::Config { .. })));
    /// ```
    pub fn new(capacity: usize, segment: Option<SegmentConfig>) -> Result<TraitsListener, Error> {
        if capacity == 0 {
            return Err(Error::Config {
                option: "TraitsListener::capacity",
                message: "must be at least 1".into(),
            });
        }
        let segment = match segment {
            Some(config) => Some(SegmentSink::start(&config, "segment-identify")?),
            None => None,
        };
        Ok(TraitsListener {
            state: Mutex::new(Lru {
                capacity,
                clock: 0,
                keys: HashMap::new(),
                order: BTreeMap::new(),
                evicted: 0,
            }),
            segment,
            impressions: AtomicU64::new(0),
        })
    }

    /// The traits of `key`: flag name → the last treatment it saw. Empty for a key never seen
    /// or evicted.
    pub fn traits(&self, key: &str) -> BTreeMap<String, String> {
        let state = self.state.lock();
        state.keys.get(key).map_or_else(BTreeMap::new, |e| {
            e.flags
                .iter()
                .map(|(flag, seen)| (flag.clone(), seen.treatment.clone()))
                .collect()
        })
    }

    /// Like [`traits`](TraitsListener::traits), with the time each treatment was last seen.
    pub fn last_seen(&self, key: &str) -> BTreeMap<String, LastSeen> {
        let state = self.state.lock();
        state
            .keys
            .get(key)
            .map_or_else(BTreeMap::new, |e| e.flags.clone())
    }

    /// The keys held, most recently seen first.
    pub fn keys(&self) -> Vec<String> {
        let state = self.state.lock();
        state.order.values().rev().map(|k| k.to_string()).collect()
    }

    /// Number of keys held.
    pub fn len(&self) -> usize {
        self.state.lock().keys.len()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The most keys held.
    pub fn capacity(&self) -> usize {
        self.state.lock().capacity
    }

    /// Delivers the `identify` calls queued before this call (true at once without Segment);
    /// false if that took longer than `timeout`. Call [`Client::flush`](crate::Client::flush)
    /// first to have every impression recorded so far reach this listener.
    pub fn flush(&self, timeout: Duration) -> bool {
        self.segment.as_ref().is_none_or(|s| s.flush(timeout))
    }

    /// Stops the Segment worker after delivering what is queued (true at once without
    /// Segment). Dropping the listener does the same with the delivery's shutdown timeout.
    pub fn shutdown(&self, timeout: Duration) -> bool {
        self.segment.as_ref().is_none_or(|s| s.shutdown(timeout))
    }

    /// The counters.
    pub fn stats(&self) -> TraitsStats {
        let (keys, evicted) = {
            let state = self.state.lock();
            (state.keys.len(), state.evicted)
        };
        TraitsStats {
            impressions: self.impressions.load(Ordering::Relaxed),
            keys,
            evicted,
            identify: self.segment.as_ref().map(SegmentSink::stats),
        }
    }
}

impl ImpressionListener for TraitsListener {
    fn on_impression(&self, impression: &Impression, _: Option<&Attributes>, _: &SdkMetadata) {
        self.impressions.fetch_add(1, Ordering::Relaxed);
        let changed = self.state.lock().see(
            impression.key(),
            impression.flag(),
            impression.treatment(),
            impression.time(),
        );
        if changed && let Some(segment) = &self.segment {
            segment.identify(
                impression.key(),
                &[(impression.flag(), impression.treatment())],
                impression.time(),
            );
        }
    }

    fn flush(&self, timeout: Duration) -> bool {
        TraitsListener::flush(self, timeout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lru(capacity: usize) -> Lru {
        Lru {
            capacity,
            clock: 0,
            keys: HashMap::new(),
            order: BTreeMap::new(),
            evicted: 0,
        }
    }

    #[test]
    fn changes_are_reported_and_older_sightings_ignored() {
        let mut l = lru(10);
        assert!(l.see("k", "f", "on", 10));
        assert!(!l.see("k", "f", "on", 11));
        assert!(l.see("k", "f", "off", 12));
        assert!(
            !l.see("k", "f", "on", 5),
            "older impression replaced a newer one"
        );
        assert_eq!(l.keys["k"].flags["f"].treatment, "off");
        assert_eq!(l.keys["k"].flags["f"].time, 12);
        assert!(l.see("k", "g", "on", 1));
    }

    #[test]
    fn least_recently_seen_key_is_evicted() {
        let mut l = lru(2);
        l.see("a", "f", "on", 1);
        l.see("b", "f", "on", 1);
        l.see("a", "g", "on", 2); // a is now the most recent
        l.see("c", "f", "on", 3);
        assert!(l.keys.contains_key("a"));
        assert!(!l.keys.contains_key("b"));
        assert!(l.keys.contains_key("c"));
        assert_eq!((l.keys.len(), l.order.len(), l.evicted), (2, 2, 1));
        for n in 0..1000 {
            l.see(&format!("k{n}"), "f", "on", 4);
        }
        assert_eq!((l.keys.len(), l.order.len(), l.evicted), (2, 2, 1001));
    }
}
