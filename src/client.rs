//! The client: the API application code calls.

use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, bounded, select, tick};
use parking_lot::Mutex;

use crate::builder::ClientBuilder;
use crate::config::{Config, EVENTS_FLUSH_BYTES};
use crate::delivery::{
    Endpoint, HttpConfig, HttpTransport, JsonBatcher, Transport, Worker, WorkerConfig,
};
use crate::engine::attributes::Attributes;
use crate::engine::evaluator::{CONTROL, Names};
use crate::engine::labels::Label;
use crate::error::Error;
use crate::events::{Event, build_event};
use crate::impressions::{ImpressionFields, Recorder, RecorderConfig, SdkMetadata, now_ms};
use crate::localhost;
use crate::metadata::{Metadata, SDK_VERSION};
use crate::properties::Properties;
use crate::remote::{Readiness, SyncConfig, Synchronizer};
use crate::stats::{ClientStats, EventStats};
use crate::storage::{FlagView, Snapshot, Store};
use crate::stripe::{self, Padded, STRIPES};
use crate::validation::{check_flag_name, check_key, sanitize_flag_sets};

/// The key an evaluation is for: a matching key, and optionally a separate bucketing key.
///
/// Matchers look at the matching key; bucketing hashes the bucketing key (which defaults to
/// the matching key). A `&str` converts into a `Key` with no bucketing key.
///
/// # Examples
/// ```
/// use splitkit::Key;
/// let simple: Key<'_> = "user-1".into();
/// let split = Key::new("user-1", "account-9");
/// assert_eq!(split.bucketing_key, Some("account-9"));
/// assert_eq!(simple.matching_key, "user-1");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key<'a> {
    /// The key matchers look at.
    pub matching_key: &'a str,
    /// The key hashed into buckets; `None` uses the matching key.
    pub bucketing_key: Option<&'a str>,
}

impl<'a> Key<'a> {
    /// A key with separate matching and bucketing keys.
    pub fn new(matching_key: &'a str, bucketing_key: &'a str) -> Key<'a> {
        Key {
            matching_key,
            bucketing_key: Some(bucketing_key),
        }
    }
}

impl<'a> From<&'a str> for Key<'a> {
    fn from(k: &'a str) -> Self {
        Key {
            matching_key: k,
            bucketing_key: None,
        }
    }
}

impl<'a> From<&'a String> for Key<'a> {
    fn from(k: &'a String) -> Self {
        Key::from(k.as_str())
    }
}

/// A treatment with its configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreatmentWithConfig {
    /// The treatment.
    pub treatment: String,
    /// The treatment's configuration (a JSON text), if the flag defines one.
    pub config: Option<String>,
}

/// Everything one client evaluation decided.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct TreatmentDetails {
    /// The treatment.
    pub treatment: String,
    /// Why; `None` only when the input was invalid or the client destroyed (then there is no
    /// impression either).
    pub label: Option<Label>,
    /// The treatment's configuration, if any.
    pub config: Option<String>,
    /// The flag's change number, when the flag exists.
    pub change_number: Option<i64>,
    /// Whether this evaluation produces an impression (every evaluation does except invalid
    /// input, a destroyed client and `definition not found`).
    pub impression: bool,
}

/// The splitkit client: evaluates flags for keys. Cheap to clone (`Send + Sync`); every clone
/// shares the same definitions and background work.
///
/// Dropping the last handle runs [`Client::destroy`] with the configured shutdown timeout.
///
/// # Examples
/// ```
/// use splitkit::{Attributes, ClientBuilder};
/// let client = ClientBuilder::new("localhost").split_file("examples/flags.yaml").build()?;
/// let attrs = Attributes::new().with("plan", "enterprise");
/// let treatment = client.get_treatment("ann", "new_checkout", Some(&attrs));
/// assert!(["on", "off"].contains(&treatment.as_str()));
/// client.destroy(std::time::Duration::from_secs(1));
/// assert_eq!(client.get_treatment("ann", "new_checkout", None), "control");
/// # Ok::<(), splitkit::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: Config,
    store: Arc<Store>,
    destroyed: AtomicBool,
    reloader: Mutex<Option<Reloader>>,
    synchronizer: Option<Synchronizer>,
    readiness: Option<Arc<Readiness>>,
    recorder: Arc<Recorder>,
    events: Option<Worker<Event>>,
    event_counts: EventCounters,
    in_flight: InFlightCounter,
}

/// Counts API calls in progress, striped per thread so that evaluating threads do not
/// contend on one cache line; `destroy` waits for it to reach zero.
#[derive(Debug, Default)]
struct InFlightCounter {
    stripes: [Padded<AtomicUsize>; STRIPES],
}

/// One call in progress; leaving the scope ends it.
struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl InFlightCounter {
    /// Starts a call, or `None` when the client is destroyed. The increment and the check
    /// are both sequentially consistent, so a call either is seen by `wait_idle` or sees
    /// the destroyed flag.
    fn enter<'a>(&'a self, destroyed: &AtomicBool) -> Option<InFlight<'a>> {
        let stripe = &self.stripes[stripe::this_thread()].0;
        stripe.fetch_add(1, Ordering::SeqCst);
        let guard = InFlight(stripe);
        if destroyed.load(Ordering::SeqCst) {
            return None;
        }
        Some(guard)
    }

    /// Waits until no call is in progress, or `deadline`; true when idle.
    fn wait_idle(&self, deadline: Instant) -> bool {
        loop {
            let busy: usize = self
                .stripes
                .iter()
                .map(|s| s.0.load(Ordering::SeqCst))
                .sum();
            if busy == 0 {
                return true;
            }
            if Instant::now() >= deadline {
                log::warn!("destroy: {busy} call(s) still in progress at the deadline");
                return false;
            }
            std::thread::sleep(Duration::from_micros(100));
        }
    }
}

#[derive(Debug, Default)]
struct EventCounters {
    tracked: AtomicU64,
    rejected: AtomicU64,
    local_only: AtomicU64,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.shutdown(self.config.shutdown_timeout);
    }
}

impl Inner {
    /// Calls every listener's `flush` with what is left until `deadline` (a panic inside
    /// counts as a failed flush).
    fn flush_listeners(&self, deadline: Instant) -> bool {
        let mut ok = true;
        for l in &self.config.impression_listeners {
            let left = deadline.saturating_duration_since(Instant::now());
            ok &= catch_unwind(AssertUnwindSafe(|| l.flush(left))).unwrap_or_else(|_| {
                log::error!("an impression listener's flush panicked");
                false
            });
        }
        ok
    }

    /// Stops definition updates, then delivers what is queued, then joins everything, all
    /// within `timeout`. Idempotent.
    fn shutdown(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let left = || deadline.saturating_duration_since(Instant::now());
        self.destroyed.store(true, Ordering::SeqCst);
        // Calls that began before destroy finish recording before the queues close.
        let mut ok = self.in_flight.wait_idle(deadline);
        if let Some(r) = self.reloader.lock().take() {
            ok &= r.stop(left());
        }
        // Signal the synchronizer without waiting: a definitions request in flight must not
        // eat the time that delivering queued impressions and events needs.
        if let Some(s) = &self.synchronizer {
            s.stop(Duration::ZERO);
        }
        ok &= self.recorder.shutdown(left());
        if let Some(e) = &self.events {
            ok &= e.shutdown(left());
        }
        // The listener queue is drained: what the integrations hold goes out too.
        ok &= self.flush_listeners(deadline);
        if let Some(s) = &self.synchronizer {
            ok &= s.stop(left());
        }
        ok
    }
}

impl Client {
    /// Starts a client from a builder (see [`ClientBuilder::build`]).
    pub(crate) fn start(b: ClientBuilder) -> Result<Client, Error> {
        let given = b.snapshot.is_some();
        let config = b.options.validate(&b.sdk_key, given)?;
        let meta = Metadata::detect(
            config.ip_addresses_enabled,
            config.machine_ip.clone(),
            config.machine_name.clone(),
        );
        let metadata = SdkMetadata {
            sdk_version: SDK_VERSION,
            machine_ip: meta.ip.clone(),
            machine_name: meta.name.clone(),
        };
        let remote = !config.is_localhost() && !given;
        // One connection pool serves every host.
        let transport = if remote || config.events_url().is_some() {
            let base = config.events_url().unwrap_or(config.sdk_url()).to_string();
            let mut http = HttpConfig::builder(base.as_str(), config.sdk_key.as_str())
                .sdk_version(SDK_VERSION)
                .request_timeout(config.request_timeout)
                .connect_timeout(config.request_timeout.min(Duration::from_secs(10)));
            if let Some(ip) = &meta.ip {
                http = http.machine_ip(ip.as_str());
            }
            if let Some(name) = &meta.name {
                http = http.machine_name(name.as_str());
            }
            Some(HttpTransport::new(http.build()?))
        } else {
            None
        };
        let store = Arc::new(Store::new(Snapshot::new()));
        let mut reloader = None;
        let mut synchronizer = None;
        match b.snapshot {
            Some(s) => store.replace(s),
            None if !remote => {
                let (snapshot, problems) = localhost::snapshot(&config)?;
                for p in &problems {
                    log::warn!("{p}");
                }
                store.replace(snapshot);
                if let Some(period) = config.localhost_refresh_rate() {
                    reloader = Some(Reloader::start(config.clone(), store.clone(), period)?);
                }
            }
            None => {
                let agent = match &transport {
                    Some(t) => t.agent(),
                    None => ureq::Agent::new_with_defaults(),
                };
                let mut sync = SyncConfig::new(config.sdk_key.as_str());
                sync.sdk_url = config.sdk_url().to_string();
                sync.features_refresh_rate = config.features_refresh_rate;
                sync.segments_refresh_rate = config.segments_refresh_rate;
                sync.request_timeout = config.request_timeout;
                sync.flag_sets_filter = config.flag_sets_filter.clone();
                sync.machine_ip = meta.ip.clone();
                sync.machine_name = meta.name.clone();
                sync.enforce_minimums = config.enforce_minimum_rates;
                synchronizer = Some(Synchronizer::start(sync, agent, store.clone())?);
            }
        }
        let events_transport: Option<Arc<HttpTransport>> = transport.map(Arc::new);
        let telemetry = match (&events_transport, config.telemetry_url()) {
            (Some(t), Some(url)) => Some(Arc::new(t.with_base_url(url)?)),
            _ => None,
        };
        let recorder = Recorder::start(
            &RecorderConfig {
                mode: config.impressions_mode,
                labels_enabled: config.labels_enabled,
                dedupe_cache_size: config.dedupe_cache_size,
                queue_size: config.impressions_queue_size,
                bulk_size: config.impressions_bulk_size,
                refresh_rate: config.impressions_refresh_rate,
                counts_refresh_rate: config.impression_counts_refresh_rate,
                unique_keys_refresh_rate: config.unique_keys_refresh_rate,
                shutdown_timeout: config.shutdown_timeout,
            },
            events_transport.clone().zip(telemetry),
            config.impression_listeners.clone(),
            metadata,
        )?;
        let events = match &events_transport {
            None => None,
            Some(t) => {
                let t: Arc<dyn Transport> = t.clone();
                let worker = WorkerConfig::builder("events")
                    .queue_capacity(config.events_queue_size)
                    .flush_interval(config.events_push_rate)
                    .flush_max_items(config.events_bulk_size)
                    .batch_max_items(config.events_bulk_size)
                    .flush_max_bytes(EVENTS_FLUSH_BYTES)
                    .max_retained_items(config.events_queue_size.max(config.events_bulk_size) * 3)
                    .shutdown_timeout(config.shutdown_timeout)
                    .build()?;
                Some(Worker::start(
                    worker,
                    JsonBatcher::new(Event::estimated_size),
                    t,
                    Endpoint::new("/events/bulk"),
                )?)
            }
        };
        let readiness = synchronizer.as_ref().map(Synchronizer::readiness);
        Ok(Client {
            inner: Arc::new(Inner {
                config,
                store,
                destroyed: AtomicBool::new(false),
                reloader: Mutex::new(reloader),
                synchronizer,
                readiness,
                recorder,
                events,
                event_counts: EventCounters::default(),
                in_flight: InFlightCounter::default(),
            }),
        })
    }

    /// A builder; same as [`ClientBuilder::new`].
    pub fn builder(sdk_key: impl Into<String>) -> ClientBuilder {
        ClientBuilder::new(sdk_key)
    }

    /// The configuration in use.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// Waits until the client has definitions to evaluate with: flags and the segments they
    /// use. Until then evaluations answer `control` with label `not ready`.
    ///
    /// In localhost mode the definitions are loaded by [`ClientBuilder::build`], so this
    /// returns at once.
    ///
    /// # Errors
    /// [`Error::NotReady`] saying why (the API is unreachable, the SDK key was rejected, or
    /// still loading when `timeout` passed); [`Error::Destroyed`] after [`Client::destroy`].
    pub fn block_until_ready(&self, timeout: Duration) -> Result<(), Error> {
        if self.inner.destroyed.load(Ordering::Acquire) {
            return Err(Error::Destroyed);
        }
        match &self.inner.readiness {
            Some(r) => r.wait(timeout),
            None => Ok(()),
        }
    }

    /// Polls flag definitions and segments now instead of at the next period (remote mode;
    /// no effect in localhost mode, where [`ClientBuilder::localhost_refresh_rate`] reloads).
    pub fn sync_now(&self) {
        if let Some(s) = &self.inner.synchronizer {
            s.sync_now();
        }
    }

    /// True once definitions are loaded (always, in localhost mode).
    pub fn is_ready(&self) -> bool {
        self.inner.readiness.as_ref().is_none_or(|r| r.is_ready())
    }

    /// Delivers everything recorded before the call, within the one `timeout`: impressions,
    /// counts, unique keys and events; then the impression listeners' queue, so that every
    /// listener has seen every impression; then each listener's own
    /// [`flush`](crate::ImpressionListener::flush), which delivers what an integration
    /// queued. Returns true when all of it was resolved (delivered, or dropped and counted)
    /// in time.
    pub fn flush(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let left = || deadline.saturating_duration_since(Instant::now());
        let mut ok = self.inner.recorder.flush(timeout);
        if let Some(e) = &self.inner.events {
            ok &= e.flush(left());
        }
        ok & self.inner.flush_listeners(deadline)
    }

    /// Exact counters of impressions and events.
    pub fn stats(&self) -> ClientStats {
        let c = &self.inner.event_counts;
        ClientStats {
            impressions: self.inner.recorder.stats(),
            events: EventStats {
                tracked: c.tracked.load(Ordering::Relaxed),
                rejected: c.rejected.load(Ordering::Relaxed),
                local_only: c.local_only.load(Ordering::Relaxed),
                queue: self
                    .inner
                    .events
                    .as_ref()
                    .map(Worker::stats)
                    .unwrap_or_default(),
            },
        }
    }

    /// What the SDK reports about itself (version, machine IP and name).
    pub fn metadata(&self) -> &SdkMetadata {
        self.inner.recorder.metadata()
    }

    /// Records an event: `key` (of `traffic_type`) did `event_type`, now.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] naming the broken rule (key, traffic type, event type, value,
    /// properties size); the event is not queued. [`Error::Destroyed`] after destroy.
    ///
    /// # Examples
    /// ```
    /// let client = splitkit::Client::builder("localhost").split_file("examples/flags.yaml").build()?;
    /// let props = splitkit::Properties::new().with("plan", "pro").with("items", 3);
    /// client.track("ann", "user", "checkout", Some(42.5), Some(&props))?;
    /// assert!(client.track("ann", "user", "bad event!", None, None).is_err());
    /// # Ok::<(), splitkit::Error>(())
    /// ```
    pub fn track(
        &self,
        key: &str,
        traffic_type: &str,
        event_type: &str,
        value: Option<f64>,
        properties: Option<&Properties>,
    ) -> Result<(), Error> {
        self.track_at(key, traffic_type, event_type, value, properties, now_ms())
    }

    /// [`Client::track`] for an event that happened earlier, at `timestamp` (epoch
    /// milliseconds), for events sent late or in batch.
    ///
    /// # Errors
    /// As [`Client::track`].
    pub fn track_at(
        &self,
        key: &str,
        traffic_type: &str,
        event_type: &str,
        value: Option<f64>,
        properties: Option<&Properties>,
        timestamp: i64,
    ) -> Result<(), Error> {
        let counts = &self.inner.event_counts;
        let Some(_in_flight) = self.inner.in_flight.enter(&self.inner.destroyed) else {
            counts.rejected.fetch_add(1, Ordering::Relaxed);
            log::warn!("track: client has already been destroyed - no calls possible");
            return Err(Error::Destroyed);
        };
        let built = build_event(
            key,
            traffic_type,
            event_type,
            value,
            properties,
            timestamp,
            &mut |w| log::warn!("{w}"),
        );
        let event = match built {
            Ok(e) => e,
            Err(e) => {
                counts.rejected.fetch_add(1, Ordering::Relaxed);
                log::warn!("{e}");
                return Err(e);
            }
        };
        if !self.inner.config.is_localhost()
            && self.is_ready()
            && !self
                .inner
                .store
                .load()
                .has_traffic_type(&event.traffic_type)
        {
            log::warn!(
                "track: traffic type {} does not have any corresponding feature flags in this environment, make sure you're tracking your events to a valid traffic type defined in the Split user interface",
                event.traffic_type
            );
        }
        match &self.inner.events {
            Some(w) => {
                // A full queue drops the event and counts it in the queue's stats; a queue
                // closed by a concurrent destroy refuses it, and so does this call.
                if !w.push(event) && w.handle().is_closed() {
                    counts.rejected.fetch_add(1, Ordering::Relaxed);
                    return Err(Error::Destroyed);
                }
            }
            None => {
                counts.local_only.fetch_add(1, Ordering::Relaxed);
            }
        }
        counts.tracked.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Stops the client: later evaluations answer `control`, background work is stopped and
    /// joined within `timeout`. Idempotent. Returns false when background work did not
    /// finish in time.
    pub fn destroy(&self, timeout: Duration) -> bool {
        self.inner.shutdown(timeout)
    }

    /// True after [`Client::destroy`].
    pub fn is_destroyed(&self) -> bool {
        self.inner.destroyed.load(Ordering::Acquire)
    }

    /// The treatment of `flag` for `key`.
    ///
    /// Invalid input, a destroyed client, an unknown flag or an internal failure give
    /// `"control"` (with a logged warning naming the problem); this never panics.
    pub fn get_treatment<'k>(
        &self,
        key: impl Into<Key<'k>>,
        flag: &str,
        attributes: Option<&Attributes>,
    ) -> String {
        self.evaluate_op("get_treatment", key.into(), flag, attributes, |o| {
            o.treatment.to_string()
        })
    }

    /// The treatment of `flag` for `key`, with its configuration.
    pub fn get_treatment_with_config<'k>(
        &self,
        key: impl Into<Key<'k>>,
        flag: &str,
        attributes: Option<&Attributes>,
    ) -> TreatmentWithConfig {
        self.evaluate_op(
            "get_treatment_with_config",
            key.into(),
            flag,
            attributes,
            |o| o.with_config(),
        )
    }

    /// Everything the evaluation decided: treatment, label, configuration, change number and
    /// whether an impression is produced.
    ///
    /// # Examples
    /// ```
    /// let client = splitkit::Client::builder("localhost").split_file("examples/flags.yaml").build()?;
    /// let d = client.evaluate("ann", "nonexistent_flag", None);
    /// assert_eq!(d.treatment, "control");
    /// assert_eq!(d.label.map(|l| l.to_string()).as_deref(), Some("definition not found"));
    /// assert!(!d.impression);
    /// # Ok::<(), splitkit::Error>(())
    /// ```
    pub fn evaluate<'k>(
        &self,
        key: impl Into<Key<'k>>,
        flag: &str,
        attributes: Option<&Attributes>,
    ) -> TreatmentDetails {
        self.evaluate_op("evaluate", key.into(), flag, attributes, |o| o.details())
    }

    /// Treatments of several flags for `key`: flag name to treatment. Invalid and duplicate
    /// names are dropped (with a warning).
    pub fn get_treatments<'k, S: AsRef<str>>(
        &self,
        key: impl Into<Key<'k>>,
        flags: &[S],
        attributes: Option<&Attributes>,
    ) -> HashMap<String, String> {
        self.evaluate_many("get_treatments", key.into(), flags, attributes, |o| {
            o.treatment.to_string()
        })
        .into_iter()
        .collect()
    }

    /// [`Client::get_treatments`] with configurations.
    pub fn get_treatments_with_config<'k, S: AsRef<str>>(
        &self,
        key: impl Into<Key<'k>>,
        flags: &[S],
        attributes: Option<&Attributes>,
    ) -> HashMap<String, TreatmentWithConfig> {
        self.evaluate_many(
            "get_treatments_with_config",
            key.into(),
            flags,
            attributes,
            |o| o.with_config(),
        )
        .into_iter()
        .collect()
    }

    /// Treatments of every flag in a flag set.
    pub fn get_treatments_by_flag_set<'k>(
        &self,
        key: impl Into<Key<'k>>,
        flag_set: &str,
        attributes: Option<&Attributes>,
    ) -> HashMap<String, String> {
        self.by_flag_sets(
            "get_treatments_by_flag_set",
            key.into(),
            &[flag_set],
            attributes,
            |o| o.treatment.to_string(),
        )
        .into_iter()
        .collect()
    }

    /// Treatments of every flag in any of the flag sets.
    pub fn get_treatments_by_flag_sets<'k, S: AsRef<str>>(
        &self,
        key: impl Into<Key<'k>>,
        flag_sets: &[S],
        attributes: Option<&Attributes>,
    ) -> HashMap<String, String> {
        self.by_flag_sets(
            "get_treatments_by_flag_sets",
            key.into(),
            flag_sets,
            attributes,
            |o| o.treatment.to_string(),
        )
        .into_iter()
        .collect()
    }

    /// [`Client::get_treatments_by_flag_set`] with configurations.
    pub fn get_treatments_with_config_by_flag_set<'k>(
        &self,
        key: impl Into<Key<'k>>,
        flag_set: &str,
        attributes: Option<&Attributes>,
    ) -> HashMap<String, TreatmentWithConfig> {
        self.by_flag_sets(
            "get_treatments_with_config_by_flag_set",
            key.into(),
            &[flag_set],
            attributes,
            |o| o.with_config(),
        )
        .into_iter()
        .collect()
    }

    /// [`Client::get_treatments_by_flag_sets`] with configurations.
    pub fn get_treatments_with_config_by_flag_sets<'k, S: AsRef<str>>(
        &self,
        key: impl Into<Key<'k>>,
        flag_sets: &[S],
        attributes: Option<&Attributes>,
    ) -> HashMap<String, TreatmentWithConfig> {
        self.by_flag_sets(
            "get_treatments_with_config_by_flag_sets",
            key.into(),
            flag_sets,
            attributes,
            |o| o.with_config(),
        )
        .into_iter()
        .collect()
    }

    /// A view of the loaded definitions.
    pub fn manager(&self) -> Manager {
        Manager {
            store: self.inner.store.clone(),
        }
    }

    /// Checks the client and the key; `Err` holds the warning to log.
    fn check_call(&self, op: &str, key: &Key<'_>) -> Result<InFlight<'_>, String> {
        let Some(guard) = self.inner.in_flight.enter(&self.inner.destroyed) else {
            return Err(format!(
                "{op}: client has already been destroyed - no calls possible"
            ));
        };
        let name = if key.bucketing_key.is_some() {
            "matching_key"
        } else {
            "key"
        };
        check_key(op, name, key.matching_key)?;
        if let Some(b) = key.bucketing_key {
            check_key(op, "bucketing_key", b)?;
        }
        Ok(guard)
    }

    /// One evaluation through the API: validation, readiness, the engine (guarded against
    /// panics), the impression, then `shape` builds the caller's result from the borrowed
    /// outcome (so nothing is copied that the caller does not need).
    fn evaluate_op<R>(
        &self,
        op: &str,
        key: Key<'_>,
        flag: &str,
        attributes: Option<&Attributes>,
        shape: impl FnOnce(&Outcome<'_>) -> R,
    ) -> R {
        let _in_flight = match self.check_call(op, &key) {
            Ok(g) => g,
            Err(w) => {
                log::warn!("{w}");
                return shape(&Outcome::INVALID);
            }
        };
        let Some(flag) = check_flag_name(op, flag, &mut |w| log::warn!("{w}")) else {
            return shape(&Outcome::INVALID);
        };
        let shared = self.listener_attributes(attributes);
        if !self.is_ready() {
            let o = self.not_ready(op, key, flag, shared.as_ref());
            return shape(&o);
        }
        let snapshot = self.inner.store.load();
        let o = evaluate_guarded(op, &snapshot, key, flag, attributes, Snapshot::evaluate_key);
        self.record(key, flag, &o, shared.as_ref(), now_ms());
        shape(&o)
    }

    /// Attributes shared with the listeners (only when there are some).
    fn listener_attributes(&self, attributes: Option<&Attributes>) -> Option<Arc<Attributes>> {
        if self.inner.config.impression_listeners.is_empty() {
            None
        } else {
            attributes.map(|a| Arc::new(a.clone()))
        }
    }

    fn not_ready(
        &self,
        op: &str,
        key: Key<'_>,
        flag: &str,
        attributes: Option<&Arc<Attributes>>,
    ) -> Outcome<'static> {
        log::warn!(
            "{op}: the SDK is not ready, results may be incorrect for feature flag {flag}. Make sure to wait for SDK readiness before using this method"
        );
        let o = Outcome::control(&NOT_READY, None);
        self.record(key, flag, &o, attributes, now_ms());
        o
    }

    /// Records the impression of an evaluation, when it produces one.
    fn record(
        &self,
        key: Key<'_>,
        flag: &str,
        o: &Outcome<'_>,
        attributes: Option<&Arc<Attributes>>,
        now: i64,
    ) {
        if !o.impression {
            return;
        }
        self.inner.recorder.record(
            ImpressionFields {
                key: key.matching_key,
                bucketing_key: key.bucketing_key,
                flag,
                treatment: o.treatment,
                label: o.label.map(Label::as_str),
                change_number: o.change_number,
                time: now,
                disabled: o.disabled,
            },
            o.names,
            attributes,
            now,
        );
    }

    fn evaluate_many<S: AsRef<str>, R>(
        &self,
        op: &str,
        key: Key<'_>,
        flags: &[S],
        attributes: Option<&Attributes>,
        shape: impl Fn(&Outcome<'_>) -> R,
    ) -> Vec<(String, R)> {
        if flags.is_empty() {
            log::warn!("{op}: flag names must be a non-empty array");
            return Vec::new();
        }
        let mut names: Vec<&str> = Vec::with_capacity(flags.len());
        for f in flags {
            if let Some(n) = check_flag_name(op, f.as_ref(), &mut |w| log::warn!("{w}"))
                && !names.contains(&n)
            {
                names.push(n);
            }
        }
        let _in_flight = match self.check_call(op, &key) {
            Ok(g) => g,
            Err(w) => {
                log::warn!("{w}");
                return names
                    .into_iter()
                    .map(|n| (n.to_string(), shape(&Outcome::INVALID)))
                    .collect();
            }
        };
        let shared = self.listener_attributes(attributes);
        if !self.is_ready() {
            return names
                .into_iter()
                .map(|n| {
                    let o = self.not_ready(op, key, n, shared.as_ref());
                    (n.to_string(), shape(&o))
                })
                .collect();
        }
        let snapshot = self.inner.store.load();
        let now = now_ms();
        names
            .into_iter()
            .map(|n| {
                let o = evaluate_guarded(op, &snapshot, key, n, attributes, Snapshot::evaluate_key);
                self.record(key, n, &o, shared.as_ref(), now);
                (n.to_string(), shape(&o))
            })
            .collect()
    }

    fn by_flag_sets<S: AsRef<str>, R>(
        &self,
        op: &str,
        key: Key<'_>,
        sets: &[S],
        attributes: Option<&Attributes>,
        shape: impl Fn(&Outcome<'_>) -> R,
    ) -> Vec<(String, R)> {
        let mut sets = sanitize_flag_sets(op, sets, &mut |w| log::warn!("{w}"));
        let filter = self.inner.config.flag_sets_filter();
        if !filter.is_empty() {
            sets.retain(|s| {
                let ok = filter.contains(s);
                if !ok {
                    log::warn!("{op}: you passed Flag Set {s} which is not part of the configured FlagSetsFilter, ignoring Flag Set.");
                }
                ok
            });
        }
        let flags: Vec<String> = {
            let snapshot = self.inner.store.load();
            let mut names: Vec<String> = sets
                .iter()
                .flat_map(|s| snapshot.flags_in_set(s).iter().map(|n| n.to_string()))
                .collect();
            names.sort();
            names.dedup();
            names
        };
        if flags.is_empty() {
            return Vec::new();
        }
        self.evaluate_many(op, key, &flags, attributes, shape)
    }
}

static NOT_READY: Label = Label::NotReady;
static EXCEPTION: Label = Label::Exception;

/// What one evaluation decided, borrowing from the snapshot.
#[derive(Debug, Clone, Copy)]
struct Outcome<'a> {
    treatment: &'a str,
    /// `None` for invalid input or a destroyed client.
    label: Option<&'a Label>,
    config: Option<&'a str>,
    change_number: Option<i64>,
    impression: bool,
    /// The flag has `impressionsDisabled`.
    disabled: bool,
    /// The interned names of the flag, treatment and label, where the engine has them.
    names: Names,
}

impl<'a> Outcome<'a> {
    /// Invalid input or a destroyed client: `control`, no label, no impression.
    const INVALID: Outcome<'static> = Outcome {
        treatment: CONTROL,
        label: None,
        config: None,
        change_number: None,
        impression: false,
        disabled: false,
        names: Names {
            flag: None,
            treatment: None,
            label: None,
        },
    };

    /// `control` with a label, producing an impression.
    fn control(label: &'a Label, change_number: Option<i64>) -> Outcome<'a> {
        Outcome {
            label: Some(label),
            change_number,
            impression: true,
            ..Outcome::INVALID
        }
    }

    fn with_config(&self) -> TreatmentWithConfig {
        TreatmentWithConfig {
            treatment: self.treatment.to_string(),
            config: self.config.map(str::to_string),
        }
    }

    fn details(&self) -> TreatmentDetails {
        TreatmentDetails {
            treatment: self.treatment.to_string(),
            label: self.label.cloned(),
            config: self.config.map(str::to_string),
            change_number: self.change_number,
            impression: self.impression,
        }
    }
}

impl Snapshot {
    fn evaluate_key<'s>(
        &'s self,
        key: Key<'_>,
        flag: &str,
        attributes: &Attributes,
    ) -> crate::Evaluation<'s> {
        self.evaluate(key.matching_key, key.bucketing_key, flag, attributes)
    }
}

/// The engine as the client calls it (swappable in tests).
type EvalFn = for<'s> fn(&'s Snapshot, Key<'_>, &str, &Attributes) -> crate::Evaluation<'s>;

/// Runs one evaluation at the API boundary: a panic inside becomes `control` with label
/// `exception` (and an impression), an unknown flag a warning and no impression.
fn evaluate_guarded<'s>(
    op: &str,
    snapshot: &'s Snapshot,
    key: Key<'_>,
    flag: &str,
    attributes: Option<&Attributes>,
    eval: EvalFn,
) -> Outcome<'s> {
    static NO_ATTRIBUTES: std::sync::LazyLock<Attributes> =
        std::sync::LazyLock::new(Attributes::new);
    let attributes = attributes.unwrap_or(&NO_ATTRIBUTES);
    match catch_unwind(AssertUnwindSafe(|| eval(snapshot, key, flag, attributes))) {
        Ok(e) => {
            let impression = *e.label != Label::DefinitionNotFound;
            if !impression {
                log::warn!(
                    "{op}: you passed {flag} that does not exist in this environment, please double check what feature flags exist in the Split user interface."
                );
            } else if *e.label == Label::Exception {
                log::warn!(
                    "{op}: evaluation of {flag} failed (dependency chain deeper than {} or cyclic); returning control",
                    crate::limits::MAX_DEPTH
                );
            }
            Outcome {
                treatment: e.treatment,
                label: Some(e.label),
                config: e.config,
                change_number: e.change_number,
                impression,
                disabled: e.impressions_disabled,
                names: e.names,
            }
        }
        Err(_) => {
            log::error!("{op}: evaluation of {flag} panicked; returning control");
            let change_number = snapshot.flags.get(flag).map(|f| f.change_number);
            Outcome::control(&EXCEPTION, change_number)
        }
    }
}

/// A read-only view of the client's loaded definitions.
///
/// # Examples
/// ```
/// let client = splitkit::Client::builder("localhost").split_file("examples/flags.yaml").build()?;
/// let names = client.manager().flag_names();
/// assert!(names.contains(&"new_checkout".to_string()));
/// # Ok::<(), splitkit::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Manager {
    store: Arc<Store>,
}

impl Manager {
    /// Names of the loaded flags, sorted.
    pub fn flag_names(&self) -> Vec<String> {
        self.store.load().flag_names()
    }

    /// A view of one flag.
    pub fn flag(&self, name: &str) -> Option<FlagView> {
        self.store.load().flag(name)
    }

    /// Views of all flags, sorted by name.
    pub fn flags(&self) -> Vec<FlagView> {
        self.store.load().flags()
    }
}

/// The localhost reload thread.
#[derive(Debug)]
struct Reloader {
    stop: Sender<()>,
    done: Receiver<()>,
    handle: JoinHandle<()>,
}

impl Reloader {
    fn start(config: Config, store: Arc<Store>, period: Duration) -> Result<Reloader, Error> {
        let (stop, stop_rx) = bounded::<()>(1);
        let (done_tx, done) = bounded::<()>(1);
        let mut last = localhost::fingerprint(&config);
        let handle = std::thread::Builder::new()
            .name("splitkit-localhost".into())
            .spawn(move || {
                let ticker = tick(period);
                loop {
                    select! {
                        recv(stop_rx) -> _ => break,
                        recv(ticker) -> _ => {
                            let now = localhost::fingerprint(&config);
                            if now == last {
                                continue;
                            }
                            last = now;
                            match localhost::snapshot(&config) {
                                Ok((snapshot, problems)) => {
                                    for p in &problems {
                                        log::warn!("{p}");
                                    }
                                    store.replace(snapshot);
                                    log::info!("reloaded {}", config.split_file().display());
                                }
                                Err(e) => log::error!("localhost reload failed, keeping the last good definitions: {e}"),
                            }
                        }
                    }
                }
                let _ = done_tx.send(());
            })
            .map_err(|source| Error::Io {
                path: PathBuf::from("<thread splitkit-localhost>"),
                source,
            })?;
        Ok(Reloader { stop, done, handle })
    }

    fn stop(self, timeout: Duration) -> bool {
        let _ = self.stop.try_send(());
        if self.done.recv_timeout(timeout).is_err() {
            log::warn!("splitkit-localhost did not stop within {timeout:?}");
            return false;
        }
        if self.handle.join().is_err() {
            log::error!("splitkit-localhost panicked");
            return false;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_inside_evaluation_answers_control_with_exception() {
        fn boom<'s>(_: &'s Snapshot, _: Key<'_>, _: &str, _: &Attributes) -> crate::Evaluation<'s> {
            panic!("injected")
        }
        let snapshot = Snapshot::new();
        let o = evaluate_guarded("t", &snapshot, "k".into(), "f", None, boom);
        assert_eq!(o.treatment, "control");
        assert_eq!(o.label, Some(&Label::Exception));
        assert!(o.impression);
    }
}
