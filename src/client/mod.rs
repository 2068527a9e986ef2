//! The client: the API application code calls.

mod evaluate;

pub use evaluate::ClientWithOptions;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::builder::ClientBuilder;
use crate::config::{Config, EVENTS_FLUSH_BYTES};
use crate::delivery::{
    Endpoint, HttpConfig, HttpTransport, JsonBatcher, Retention, Spool, Transport, Worker,
    WorkerConfig,
};
use crate::error::Error;
use crate::events::{Event, build_event};
use crate::fallback::Fallbacks;
use crate::impressions::{Destination, Recorder, RecorderConfig, SdkMetadata, now_ms};
use crate::localhost;
use crate::metadata::{Metadata, SDK_VERSION};
use crate::periodic::Periodic;
use crate::properties::Properties;
use crate::remote::{Readiness, StreamingUrls, SyncConfig, Synchronizer};
use crate::stats::{ClientStats, EventStats};
use crate::storage::{FlagView, Snapshot, Store};
use crate::stripe::{self, Padded, STRIPES};
use crate::updates::UpdatesHub;

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
    /// The thread that refreshes the definitions: the localhost reloader, or the Redis
    /// reader in consumer mode.
    poller: Mutex<Option<Periodic>>,
    synchronizer: Option<Synchronizer>,
    readiness: Option<Arc<Readiness>>,
    recorder: Arc<Recorder>,
    events: Option<Worker<Event>>,
    event_counts: EventCounters,
    in_flight: InFlightCounter,
    fallbacks: Fallbacks,
    /// The subscribers of [`Client::updates`].
    updates: Arc<UpdatesHub>,
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
                log::warn!(
                    "destroy: {} still in progress at the deadline",
                    crate::text::count(busy, "call", "calls")
                );
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
        if let Some(p) = self.poller.lock().take() {
            ok &= p.stop(left());
        }
        // Signal the synchronizer without waiting: a definitions request in flight must not
        // eat the time that delivering queued impressions and events needs.
        if let Some(s) = &self.synchronizer {
            s.stop(Duration::ZERO);
        }
        // Events and impressions deliver side by side, each with the whole time left.
        if let Some(e) = &self.events {
            e.stop_by(deadline);
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
        let consumer = config.is_consumer() && !given;
        let remote = !config.is_localhost() && !given && !consumer;
        // One connection pool serves every host.
        let transport = if remote || (config.events_url().is_some() && !consumer) {
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
        let updates = Arc::new(UpdatesHub::default());
        store.observe(Arc::clone(&updates));
        let mut poller = None;
        let mut synchronizer = None;
        let mut readiness = None;
        match b.snapshot {
            Some(s) => store.replace(s),
            #[cfg(feature = "redis")]
            None if consumer => {
                if let Some(redis) = &config.redis {
                    let (reader, ready) = crate::redis::start_reader(redis, store.clone())?;
                    poller = Some(reader);
                    readiness = Some(ready);
                }
            }
            None if !remote => {
                let (snapshot, problems) = localhost::snapshot(&config)?;
                for p in &problems {
                    log::warn!("{p}");
                }
                store.replace(snapshot);
                if let Some(period) = config.localhost_refresh_rate() {
                    poller = Some(start_reloader(config.clone(), store.clone(), period)?);
                }
            }
            None => {
                let agent = match &transport {
                    Some(t) => t.agent(),
                    // Remote mode always has a transport; the same agent settings all the same.
                    None => crate::delivery::agent_config().build().new_agent(),
                };
                let mut sync = SyncConfig::new(config.sdk_key.as_str());
                sync.sdk_url = config.sdk_url().to_string();
                sync.features_refresh_rate = config.features_refresh_rate;
                sync.segments_refresh_rate = config.segments_refresh_rate;
                sync.request_timeout = config.request_timeout;
                sync.max_response_bytes = config.max_response_bytes;
                (sync.backoff_base, sync.backoff_cap) = config.sync_backoff;
                sync.flag_sets_filter = config.flag_sets_filter.clone();
                sync.machine_ip = meta.ip.clone();
                sync.machine_name = meta.name.clone();
                sync.enforce_minimums = config.enforce_minimum_rates;
                sync.streaming = config.streaming_enabled.then(|| StreamingUrls {
                    auth: config.auth_url.clone(),
                    streaming: config.streaming_url.clone(),
                });
                let sync = Synchronizer::start(sync, agent, store.clone())?;
                readiness = Some(sync.readiness());
                synchronizer = Some(sync);
            }
        }
        let retention = Retention {
            items: config.max_retained_items,
            bytes: config.max_retained_bytes,
            spool: match &config.spool_directory {
                Some(dir) => Some(Arc::new(Spool::open(
                    dir,
                    config.spool_max_bytes,
                    &config.sdk_key,
                )?)),
                None => None,
            },
        };
        let events_transport: Option<Arc<HttpTransport>> = transport.map(Arc::new);
        let telemetry = match (&events_transport, config.telemetry_url()) {
            (Some(t), Some(url)) => Some(Arc::new(t.with_base_url(url)?)),
            _ => None,
        };
        let destination = match (events_transport, telemetry) {
            (Some(events), Some(telemetry)) => Some(Destination::Http { events, telemetry }),
            _ => None,
        };
        #[cfg(feature = "redis")]
        let destination = match &config.redis {
            Some(redis) if consumer => Some(Destination::Redis(Arc::new(
                crate::redis::RedisTransport::new(redis.clone()),
            ))),
            _ => destination,
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
                retention: retention.clone(),
            },
            destination.clone(),
            config.impression_listeners.clone(),
            metadata.clone(),
        )?;
        let events = match destination {
            None => None,
            Some(destination) => {
                let worker = WorkerConfig::builder("events")
                    .queue_capacity(config.events_queue_size)
                    .flush_interval(config.events_push_rate)
                    .flush_max_items(config.events_bulk_size)
                    .batch_max_items(config.events_bulk_size)
                    .flush_max_bytes(EVENTS_FLUSH_BYTES)
                    .retention(&retention)
                    .shutdown_timeout(config.shutdown_timeout)
                    .build()?;
                Some(match destination {
                    Destination::Http { events, .. } => {
                        let t: Arc<dyn Transport> = events;
                        Worker::start(
                            worker,
                            JsonBatcher::new(Event::estimated_size),
                            t,
                            Endpoint::new("/events/bulk"),
                        )?
                    }
                    #[cfg(feature = "redis")]
                    Destination::Redis(redis) => {
                        let t: Arc<dyn Transport> = redis;
                        Worker::start(
                            worker,
                            crate::redis::EventElements {
                                meta: crate::redis::metadata(&metadata),
                            },
                            t,
                            Endpoint::new(format!(
                                "{}{}",
                                crate::redis::LIST,
                                crate::redis::queues::EVENTS
                            )),
                        )?
                    }
                })
            }
        };
        if let Some(r) = &readiness {
            r.observe(Arc::clone(&updates));
        }
        // Ready already (localhost mode, or definitions loaded before the hub was observed):
        // said once, to every subscriber to come.
        if readiness.as_ref().is_none_or(|r| r.is_ready()) {
            updates.publish(&crate::Update::Ready);
        }
        let fallbacks = Fallbacks::new(
            config.fallback_treatment.as_ref(),
            &config.fallback_treatments,
            config.default_rule_label,
        );
        Ok(Client {
            inner: Arc::new(Inner {
                config,
                store,
                destroyed: AtomicBool::new(false),
                poller: Mutex::new(poller),
                synchronizer,
                readiness,
                recorder,
                events,
                event_counts: EventCounters::default(),
                in_flight: InFlightCounter::default(),
                fallbacks,
                updates,
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

    /// Polls flag definitions and segments now instead of at the next period: from Split's
    /// API (remote mode) or from Redis (consumer mode). In localhost mode with
    /// [`ClientBuilder::localhost_refresh_rate`], looks at the files now.
    pub fn sync_now(&self) {
        if let Some(s) = &self.inner.synchronizer {
            s.sync_now();
        }
        if let Some(p) = self.inner.poller.lock().as_ref() {
            p.wake();
        }
    }

    /// A channel of what happens to the definitions: [`Update::Ready`](crate::Update::Ready)
    /// once the client is ready (at once if it is already), then an
    /// [`Update::Definitions`](crate::Update::Definitions) for every change: which flags
    /// changed (with their change numbers, and whether they were killed) and which segments,
    /// from a poll, a streamed update or kill, or a localhost reload.
    ///
    /// Updates are handed over without waiting: synchronization never waits for a reader. A
    /// subscriber that falls more than
    /// 1,024 updates behind misses the later ones (a warning is logged). Dropping the
    /// receiver ends the subscription.
    ///
    /// # Examples
    /// ```
    /// let client = splitkit::Client::builder("localhost").split_file("examples/flags.json").build()?;
    /// let updates = client.updates();
    /// assert_eq!(updates.try_recv(), Ok(splitkit::Update::Ready));
    /// # Ok::<(), splitkit::Error>(())
    /// ```
    pub fn updates(&self) -> crossbeam_channel::Receiver<crate::Update> {
        self.inner.updates.subscribe()
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
    ///
    /// While an endpoint fails, flush keeps retrying (at most a second apart, or as the
    /// server's `Retry-After` says) until `timeout`; what is still undelivered then stays
    /// queued for the next attempt, never dropped for it, and flush returns false.
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

    /// Stops the client: later evaluations answer `control` (or the fallback), and what is
    /// queued is delivered within `timeout`: impressions, counts, unique keys and events side
    /// by side, retrying while the time lasts, then what the listeners and integrations hold.
    /// Background work is stopped and joined. Idempotent.
    ///
    /// Returns false when something could not be delivered in time (it is written to the
    /// [spool](ClientBuilder::spool_directory) if there is one, else counted as
    /// `dropped_shutdown` in [`Client::stats`]) or background work did not finish.
    pub fn destroy(&self, timeout: Duration) -> bool {
        self.inner.shutdown(timeout)
    }

    /// True after [`Client::destroy`].
    pub fn is_destroyed(&self) -> bool {
        self.inner.destroyed.load(Ordering::Acquire)
    }

    /// A view of the loaded definitions.
    pub fn manager(&self) -> Manager {
        Manager {
            store: self.inner.store.clone(),
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

/// Starts the localhost reload thread: every `period`, reloads the files when their
/// fingerprint changed, keeping the last good definitions when a reload fails. Files
/// modified within the last [`localhost::QUIET`] are looked at again at the next period,
/// and a load the files changed under is discarded, so a half-written file is never loaded.
fn start_reloader(config: Config, store: Arc<Store>, period: Duration) -> Result<Periodic, Error> {
    let mut last = localhost::fingerprint(&config);
    Periodic::start("splitkit-localhost", period, move || {
        if !localhost::settled(&config, localhost::QUIET) {
            return;
        }
        let now = localhost::fingerprint(&config);
        if now == last {
            return;
        }
        let loaded = localhost::snapshot(&config);
        if localhost::fingerprint(&config) != now {
            return;
        }
        last = now;
        match loaded {
            Ok((snapshot, problems)) => {
                for p in &problems {
                    log::warn!("{p}");
                }
                store.replace(snapshot);
                log::info!("reloaded {}", config.split_file().display());
            }
            Err(e) => {
                log::error!("localhost reload failed, keeping the last good definitions: {e}")
            }
        }
    })
}
