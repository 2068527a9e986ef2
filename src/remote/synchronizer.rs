//! The background synchronizer: two named threads, one polling flags (and rule-based
//! segments), one polling the segments they use, both writing whole snapshots into the
//! [`Store`].

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TryRecvError, bounded, select};
use parking_lot::Mutex;

use crate::error::Error;
use crate::storage::Store;
use crate::text::{count, duration};
use crate::validation::sanitize_flag_sets;

use super::api::{FetchError, SdkApi};
use super::config::SyncConfig;
use super::fetcher::{SegmentFetcher, SplitFetcher, SplitRound};
use super::push::{PUSH_THREAD, Push, StreamState};
use super::readiness::Readiness;
use super::wake::{FlagsWanted, SegmentsWanted, Wake};
use crate::backoff::Backoff;

/// Name of the thread that polls `splitChanges`.
pub(crate) const FLAGS_THREAD: &str = "splitkit-flags-sync";
/// Name of the thread that polls `segmentChanges`.
pub(crate) const SEGMENTS_THREAD: &str = "splitkit-segments-sync";

/// Fetches after a notification that do not reach its change number are repeated this many
/// times (waits doubling from [`SyncConfig::notification_retry`]), then made once more past
/// the CDN (`till=`).
const NOTIFICATION_RETRIES: u32 = 5;

/// How long the polling threads wait while streaming is up: until a notification or a
/// change of the stream's state wakes them.
const WHILE_STREAMING: Duration = Duration::from_secs(3600);

/// A running worker thread.
#[derive(Debug)]
struct Worker {
    name: &'static str,
    handle: JoinHandle<()>,
    /// Disconnected when the thread has finished (normally or by panic).
    done: Receiver<()>,
}

/// Keeps a [`Store`] in sync with the SDK API in the background.
///
/// Started by [`Synchronizer::start`]; stopped by [`Synchronizer::stop`] (idempotent) or, without
/// waiting, when dropped.
#[derive(Debug)]
pub(crate) struct Synchronizer {
    readiness: Arc<Readiness>,
    /// Dropping the sender stops every worker.
    stop: Mutex<Option<Sender<()>>>,
    flags_wake: Arc<Wake<FlagsWanted>>,
    segments_wake: Arc<Wake<SegmentsWanted>>,
    workers: Mutex<Vec<Worker>>,
}

impl Synchronizer {
    /// Validates `config` and starts the threads [`FLAGS_THREAD`] and [`SEGMENTS_THREAD`]: an
    /// initial load of every flag page, then of the segments the flags use, then polling at
    /// the configured rates. Requests go through `agent` (its own settings apply, but the
    /// request timeout and status handling are set per request).
    ///
    /// # Errors
    /// [`Error::Config`] naming an invalid option; [`Error::Io`] when a thread cannot be
    /// started.
    pub(crate) fn start(
        config: SyncConfig,
        agent: ureq::Agent,
        store: Arc<Store>,
    ) -> Result<Synchronizer, Error> {
        config.validate()?;
        let sets = sanitize_flag_sets("flag_sets_filter", &config.flag_sets_filter, &mut |w| {
            log::warn!("{w}")
        });
        let api = Arc::new(SdkApi::new(&config, agent));
        let readiness = Arc::new(Readiness::new());
        let (stop_tx, stop_rx) = bounded::<()>(0);
        let flags_wake = Arc::new(Wake::new());
        let segments_wake = Arc::new(Wake::new());
        let streaming = Arc::new(StreamState::default());
        log::info!(
            "synchronizing definitions from {} every {} (segments every {})",
            api.base_url(),
            duration(config.features_refresh_rate),
            duration(config.segments_refresh_rate)
        );

        let push = config.streaming.clone().map(|urls| Push {
            api: Arc::clone(&api),
            urls,
            store: Arc::clone(&store),
            sets: sets.clone(),
            state: Arc::clone(&streaming),
            flags_wake: Arc::clone(&flags_wake),
            segments_wake: Arc::clone(&segments_wake),
            stop: stop_rx.clone(),
            keepalive: config.keepalive,
        });
        let flags = FlagsWorker {
            fetcher: SplitFetcher::new(Arc::clone(&api), Arc::clone(&store), sets),
            store: Arc::clone(&store),
            readiness: Arc::clone(&readiness),
            rate: config.features_refresh_rate,
            backoff: Backoff::new(config.backoff_base, config.backoff_cap),
            retry: config.notification_retry,
            streaming: Arc::clone(&streaming),
            stop: stop_rx.clone(),
            wake: Arc::clone(&flags_wake),
            segments_wake: Arc::clone(&segments_wake),
        };
        let segments = SegmentsWorker {
            fetcher: SegmentFetcher::new(Arc::clone(&api), Arc::clone(&store)),
            store,
            readiness: Arc::clone(&readiness),
            rate: config.segments_refresh_rate,
            backoff: Backoff::new(config.backoff_base, config.backoff_cap),
            retry: config.notification_retry,
            streaming,
            stop: stop_rx,
            wake: Arc::clone(&segments_wake),
        };
        let flags = spawn(FLAGS_THREAD, move || flags.run())?;
        // If a later thread cannot start, dropping `stop_tx` on return stops the others.
        let segments = spawn(SEGMENTS_THREAD, move || segments.run())?;
        let mut workers = vec![flags, segments];
        if let Some(push) = push {
            workers.push(spawn(PUSH_THREAD, move || push.run())?);
        }
        Ok(Synchronizer {
            readiness,
            stop: Mutex::new(Some(stop_tx)),
            flags_wake,
            segments_wake,
            workers: Mutex::new(workers),
        })
    }

    /// The readiness, shared with the threads.
    pub(crate) fn readiness(&self) -> Arc<Readiness> {
        Arc::clone(&self.readiness)
    }

    /// True once flags and their segments have been loaded.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn is_ready(&self) -> bool {
        self.readiness.is_ready()
    }

    /// Polls flags and every segment now instead of waiting for the next period (also cuts
    /// a retry delay short). Does nothing after [`Synchronizer::stop`].
    pub(crate) fn sync_now(&self) {
        self.flags_wake.poll();
        self.segments_wake.all();
    }

    /// Stops the threads and waits for them, for at most `timeout` in all.
    ///
    /// Returns true when every thread has finished (their results are logged). A thread inside
    /// a request finishes when the request does, within the request timeout; if that is later
    /// than `timeout`, this returns false, logs a warning, and a later call waits again.
    /// Idempotent.
    ///
    /// A zero `timeout` only signals the threads (the client does so first when it shuts
    /// down, so that a request in flight does not eat the time the delivery of queued
    /// impressions needs, and waits later): a thread still running then is expected, not
    /// worth a warning.
    pub(crate) fn stop(&self, timeout: Duration) -> bool {
        let start = Instant::now();
        drop(self.stop.lock().take());
        let mut workers = self.workers.lock();
        let mut still_running = Vec::new();
        for w in workers.drain(..) {
            let left = timeout.saturating_sub(start.elapsed());
            match w.done.recv_timeout(left) {
                Err(RecvTimeoutError::Timeout) => {
                    if timeout.is_zero() {
                        log::debug!("{} signalled to stop", w.name);
                    } else {
                        log::warn!("{} did not stop within {}", w.name, duration(timeout));
                    }
                    still_running.push(w);
                }
                Ok(()) | Err(RecvTimeoutError::Disconnected) => match w.handle.join() {
                    Ok(()) => log::debug!("{} stopped", w.name),
                    Err(panic) => {
                        let message = panic
                            .downcast_ref::<&str>()
                            .map(|s| s.to_string())
                            .or_else(|| panic.downcast_ref::<String>().cloned())
                            .unwrap_or_else(|| "unknown panic".into());
                        log::error!("{} panicked: {message}", w.name);
                    }
                },
            }
        }
        *workers = still_running;
        workers.is_empty()
    }
}

impl Drop for Synchronizer {
    /// Signals the threads to stop without waiting for them.
    fn drop(&mut self) {
        drop(self.stop.lock().take());
    }
}

fn spawn(name: &'static str, f: impl FnOnce() + Send + 'static) -> Result<Worker, Error> {
    let (done_tx, done) = bounded::<()>(0);
    let handle = std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            let _done = done_tx;
            f();
        })
        .map_err(|source| Error::Io {
            path: PathBuf::from(format!("<thread {name}>")),
            source,
        })?;
    Ok(Worker { name, handle, done })
}

/// `now + d`, or a year from now when that overflows.
fn later(d: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(d)
        .or_else(|| now.checked_add(Duration::from_secs(365 * 24 * 3600)))
        .unwrap_or(now)
}

/// Logs a recovery after failures and resets the backoff.
fn on_success(what: &str, backoff: &mut Backoff) {
    if backoff.attempts() > 0 {
        log::info!(
            "{what}: synchronization recovered after {}",
            count(backoff.attempts(), "failed attempt", "failed attempts")
        );
    }
    backoff.reset();
}

/// True when the synchronizer has been stopped (or dropped).
pub(super) fn stopped(stop: &Receiver<()>) -> bool {
    !matches!(stop.try_recv(), Err(TryRecvError::Empty))
}

/// Logs a failure, records it in the readiness, and says when to try again (`None`: stop).
fn on_failure(
    what: &str,
    e: &FetchError,
    readiness: &Readiness,
    backoff: &mut Backoff,
    rate: Duration,
) -> Option<Duration> {
    if e.is_fatal() {
        log::error!("{what}: {e}; synchronization stopped, the last good definitions stay");
        readiness.set_failed(e.to_string(), true);
        return None;
    }
    if e.is_transient() {
        let delay = backoff.next_delay(e.retry_after());
        log::warn!(
            "{what}: {e}; serving the last good definitions, retry {} in {}",
            backoff.attempts(),
            duration(delay)
        );
        readiness.record_error(e.to_string());
        Some(delay)
    } else {
        log::error!(
            "{what}: {e}; serving the last good definitions, next try in {}",
            duration(rate)
        );
        readiness.set_failed(e.to_string(), false);
        backoff.reset();
        Some(rate)
    }
}

/// After a notification's first fetch: until `reached`, waits (`wait`, doubling) and fetches
/// again, [`NOTIFICATION_RETRIES`] times, then once more with `bypass` set (past the CDN).
/// `fetch` answers false when it was interrupted. False when stopped or interrupted.
fn chase(
    stop: &Receiver<()>,
    mut wait: Duration,
    reached: impl Fn() -> bool,
    mut fetch: impl FnMut(bool) -> Result<bool, FetchError>,
) -> Result<bool, FetchError> {
    for attempt in 0..=NOTIFICATION_RETRIES {
        if reached() {
            return Ok(true);
        }
        let bypass = attempt == NOTIFICATION_RETRIES;
        if !bypass && pause(stop, wait) {
            return Ok(false);
        }
        wait = wait.saturating_mul(2);
        if !fetch(bypass)? {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Sleeps `d`, or less when stopped; true when stopped.
pub(super) fn pause(stop: &Receiver<()>, d: Duration) -> bool {
    !matches!(stop.recv_timeout(d), Err(RecvTimeoutError::Timeout))
}

/// The flags thread.
struct FlagsWorker {
    fetcher: SplitFetcher,
    store: Arc<Store>,
    readiness: Arc<Readiness>,
    rate: Duration,
    backoff: Backoff,
    /// First wait before repeating a fetch that did not reach a notification's version.
    retry: Duration,
    streaming: Arc<StreamState>,
    stop: Receiver<()>,
    wake: Arc<Wake<FlagsWanted>>,
    segments_wake: Arc<Wake<SegmentsWanted>>,
}

impl FlagsWorker {
    fn run(mut self) {
        let mut delay = Duration::ZERO;
        let mut failing = false;
        loop {
            // While streaming is up, polling stops: notifications (and the stream's state
            // changes) wake the thread. A failing fetch is retried all the same.
            let wait = if self.streaming.is_up() && !failing && self.readiness.flags_loaded() {
                WHILE_STREAMING
            } else {
                delay
            };
            let target = select! {
                recv(self.stop) -> _ => break,
                recv(self.wake.signal()) -> _ => self.wake.take(),
                default(wait) => FlagsWanted { poll: true, ..FlagsWanted::default() },
            };
            if stopped(&self.stop) {
                break;
            }
            match self.fetch(target) {
                Ok(round) if round.interrupted => break,
                Ok(round) => {
                    failing = false;
                    on_success("flags", &mut self.backoff);
                    self.readiness.clear_error();
                    let first = !self.readiness.flags_loaded();
                    if first {
                        let snapshot = self.store.load();
                        log::info!(
                            "loaded {} (change number {}, rule-based {})",
                            count(snapshot.len(), "flag", "flags"),
                            snapshot.change_number(),
                            snapshot.rule_based_change_number()
                        );
                        self.readiness.set_flags_loaded();
                        if snapshot.referenced_segments().is_empty() {
                            self.readiness.set_ready();
                        }
                    }
                    if first || round.changed {
                        self.segments_wake.missing();
                    }
                    delay = self.rate;
                }
                Err(e) => {
                    failing = true;
                    match on_failure("flags", &e, &self.readiness, &mut self.backoff, self.rate) {
                        Some(d) => delay = d,
                        None => break,
                    }
                }
            }
        }
    }

    /// One round of fetches; for a notification, repeated until its change numbers are
    /// reached (waits doubling from `retry`), then once more past the CDN.
    fn fetch(&self, wanted: FlagsWanted) -> Result<SplitRound, FetchError> {
        let stop = &self.stop;
        let mut round = self.fetcher.fetch_until(&|| stopped(stop), None)?;
        let FlagsWanted {
            flags, rule_based, ..
        } = wanted;
        if round.interrupted || (flags.is_none() && rule_based.is_none()) {
            return Ok(round);
        }
        let reached = || {
            let s = self.store.load();
            flags.is_none_or(|cn| s.change_number() >= cn)
                && rule_based.is_none_or(|cn| s.rule_based_change_number() >= cn)
        };
        let going = chase(stop, self.retry, reached, |bypass| {
            let till = if bypass { flags.or(rule_based) } else { None };
            round = round.and(self.fetcher.fetch_until(&|| stopped(stop), till)?);
            Ok(!round.interrupted)
        })?;
        if !going {
            round.interrupted = true;
        } else if !reached() {
            log::debug!(
                "flags: change number {flags:?} (rule-based {rule_based:?}) not reached, even past the CDN; the next poll or notification goes on"
            );
        }
        Ok(round)
    }
}

/// The segments thread.
struct SegmentsWorker {
    fetcher: SegmentFetcher,
    store: Arc<Store>,
    readiness: Arc<Readiness>,
    rate: Duration,
    backoff: Backoff,
    /// First wait before repeating a fetch that did not reach a notification's version.
    retry: Duration,
    streaming: Arc<StreamState>,
    stop: Receiver<()>,
    wake: Arc<Wake<SegmentsWanted>>,
}

impl SegmentsWorker {
    fn run(mut self) {
        let mut next_full = later(self.rate);
        // Segments whose last fetch failed, retried with backoff.
        let mut retry: BTreeSet<String> = BTreeSet::new();
        let mut retry_delay = Duration::ZERO;
        loop {
            let delay = if !retry.is_empty() {
                retry_delay
            } else if self.streaming.is_up() && self.readiness.is_ready() {
                WHILE_STREAMING
            } else {
                next_full.saturating_duration_since(Instant::now())
            };
            // Asked (`Some`), or the period or a retry delay is over (`None`).
            let wanted = select! {
                recv(self.stop) -> _ => break,
                recv(self.wake.signal()) -> _ => Some(self.wake.take()),
                default(delay) => None,
            };
            if stopped(&self.stop) {
                break;
            }
            let full = match &wanted {
                Some(w) => w.all,
                None => Instant::now() >= next_full,
            };
            if full {
                next_full = later(self.rate);
            }
            // Each segment to fetch, with the change number a notification asked for.
            let mut names: BTreeMap<String, Option<i64>> = BTreeMap::new();
            let until = match wanted {
                Some(w) if w.is_empty() => continue,
                // Only notifications: the failing segments keep their retry delay.
                Some(w) if !w.all && !w.missing => w.until,
                other => {
                    let snapshot = self.store.load();
                    let referenced = snapshot.referenced_segments();
                    // A segment the flags no longer use is not retried.
                    retry.retain(|n| referenced.binary_search(n).is_ok());
                    names.extend(
                        referenced
                            .into_iter()
                            .filter(|n| {
                                full || retry.contains(n)
                                    || snapshot.segment_change_number(n).is_none()
                            })
                            .map(|n| (n, None)),
                    );
                    other.map(|w| w.until).unwrap_or_default()
                }
            };
            names.extend(until.into_iter().map(|(n, cn)| (n, Some(cn))));
            let mut last_error = None;
            for (name, target) in names {
                match self.fetch(&name, target) {
                    Ok(true) => {
                        retry.remove(&name);
                    }
                    Ok(false) => return,
                    Err(e) if e.is_fatal() => {
                        let _ = on_failure(
                            "segments",
                            &e,
                            &self.readiness,
                            &mut self.backoff,
                            self.rate,
                        );
                        return;
                    }
                    Err(e) => {
                        retry.insert(name);
                        last_error = Some(e);
                    }
                }
            }
            match last_error {
                Some(e) => {
                    retry_delay = on_failure(
                        "segments",
                        &e,
                        &self.readiness,
                        &mut self.backoff,
                        self.rate,
                    )
                    .unwrap_or(self.rate);
                }
                None if retry.is_empty() => on_success("segments", &mut self.backoff),
                None => {}
            }
            self.update_readiness(&retry);
        }
    }

    /// Fetches segment `name`; with a notification's change number, repeated until it is
    /// reached, then once more past the CDN. False when stopped.
    fn fetch(&self, name: &str, target: Option<i64>) -> Result<bool, FetchError> {
        let stop = &self.stop;
        if self
            .fetcher
            .fetch_until(name, &|| stopped(stop), None)?
            .is_none()
        {
            return Ok(false);
        }
        let Some(cn) = target else {
            return Ok(true);
        };
        let reached = || {
            self.store
                .load()
                .segment_change_number(name)
                .is_some_and(|c| c >= cn)
        };
        chase(stop, self.retry, reached, |bypass| {
            let till = bypass.then_some(cn);
            Ok(self
                .fetcher
                .fetch_until(name, &|| stopped(stop), till)?
                .is_some())
        })
    }

    /// Ready once the flags are loaded and every segment they use is loaded without error.
    fn update_readiness(&self, failing: &BTreeSet<String>) {
        if self.readiness.is_ready() || !self.readiness.flags_loaded() {
            return;
        }
        let snapshot = self.store.load();
        let pending: Vec<String> = snapshot
            .referenced_segments()
            .into_iter()
            .filter(|n| failing.contains(n) || snapshot.segment_change_number(n).is_none())
            .collect();
        if pending.is_empty() {
            log::info!(
                "loaded {}; definitions are ready",
                count(snapshot.referenced_segments().len(), "segment", "segments")
            );
            self.readiness.set_ready();
        } else {
            self.readiness.set_pending_segments(pending);
        }
    }
}
