//! [`ClientBuilder`]: every option of the client, with its default.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::client::Client;
use crate::config::Options;
use crate::error::Error;
use crate::fallback::FallbackTreatment;
use crate::impressions::{ImpressionListener, ImpressionsMode};
use crate::storage::Snapshot;

/// Builds a [`Client`]: an SDK key plus options, each with a documented default, validated by
/// [`ClientBuilder::build`].
///
/// The SDK key `"localhost"` selects localhost mode (definitions from a file, nothing sent
/// anywhere unless [`ClientBuilder::events_url`] is set); any other key synchronizes
/// definitions from Split's API (or [`ClientBuilder::sdk_url`]) and sends impressions and
/// events to [`ClientBuilder::events_url`].
///
/// # Examples
/// ```
/// let client = splitkit::ClientBuilder::new("localhost")
///     .split_file("examples/flags.yaml")
///     .build()?;
/// client.block_until_ready(std::time::Duration::from_secs(1))?;
/// # Ok::<(), splitkit::Error>(())
/// ```
#[derive(Clone)]
pub struct ClientBuilder {
    pub(crate) sdk_key: String,
    pub(crate) options: Options,
    pub(crate) snapshot: Option<Snapshot>,
}

impl std::fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("localhost", &(self.sdk_key == crate::LOCALHOST))
            .finish_non_exhaustive()
    }
}

impl ClientBuilder {
    /// A builder for `sdk_key`.
    pub fn new(sdk_key: impl Into<String>) -> ClientBuilder {
        ClientBuilder {
            sdk_key: sdk_key.into(),
            options: Options::default(),
            snapshot: None,
        }
    }

    /// Localhost flags file: `.json` (splitChanges), `.yaml`/`.yml`, or the legacy
    /// `flag treatment` lines. Default: `~/.split`.
    pub fn split_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.options.split_file = Some(path.into());
        self
    }

    /// Directory of segmentChanges JSON files for localhost mode. Default: none (every segment
    /// is empty).
    pub fn segment_directory(mut self, path: impl Into<PathBuf>) -> Self {
        self.options.segment_directory = Some(path.into());
        self
    }

    /// Checks the localhost file (and segment directory) for changes at this period and
    /// reloads them; a bad edit keeps the last good definitions and logs the error. Files
    /// modified within the last 50 ms are read at a later check, so a file that is being
    /// written (truncated, then filled) is not loaded half-written. Default: off.
    /// Minimum: 10 ms.
    pub fn localhost_refresh_rate(mut self, period: Duration) -> Self {
        self.options.localhost_refresh_rate = Some(period);
        self
    }

    /// Restricts the client to flags in these flag sets (names are trimmed and lower-cased;
    /// invalid names are dropped with a warning). Default: no filter.
    pub fn flag_sets_filter<S: AsRef<str>>(mut self, sets: &[S]) -> Self {
        self.options.flag_sets_filter = Some(sets.iter().map(|s| s.as_ref().to_string()).collect());
        self
    }

    /// Evaluates with these compiled definitions, exactly as given, instead of reading
    /// `split_file` or synchronizing (both are then ignored). Useful in tests and for
    /// definitions from a source of your own. Default: none.
    ///
    /// # Examples
    /// ```
    /// let (snapshot, _) = splitkit::Snapshot::from_json(
    ///     r#"{"splits":[{"name":"f","defaultTreatment":"off"}],"since":-1,"till":1}"#, "inline")?;
    /// let client = splitkit::Client::builder("localhost").snapshot(snapshot).build()?;
    /// assert_eq!(client.get_treatment("k", "f", None), "off");
    /// # Ok::<(), splitkit::Error>(())
    /// ```
    pub fn snapshot(mut self, snapshot: Snapshot) -> Self {
        self.snapshot = Some(snapshot);
        self
    }

    /// How long [`Client::destroy`] waits when the last handle is dropped. Default: 5 s.
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.options.shutdown_timeout = Some(timeout);
        self
    }

    /// How impressions are reported. Default: [`ImpressionsMode::Optimized`].
    pub fn impressions_mode(mut self, mode: ImpressionsMode) -> Self {
        self.options.impressions_mode = Some(mode);
        self
    }

    /// Whether impressions carry the label of the rule that decided. With `false` no label
    /// leaves the evaluation call: not in the queue, a listener, the wire or the dedupe key.
    /// Default: true.
    pub fn labels_enabled(mut self, enabled: bool) -> Self {
        self.options.labels_enabled = Some(enabled);
        self
    }

    /// Report the "no rule matched" case on impressions with the label the official SDKs
    /// send, `default rule`, instead of `no rule matched`. Default: false.
    ///
    /// Turn it on when keys are evaluated both by services on an official SDK and by
    /// services on splitkit: Split's backend groups users by label, so a key that alternates
    /// between the two labels switches rules on every call and, after two switches, is
    /// excluded from the experiment. [`TreatmentDetails::label`](crate::TreatmentDetails)
    /// stays [`Label::NoRuleMatched`](crate::Label::NoRuleMatched): the option changes what
    /// impressions (the wire, listeners, integrations) carry.
    pub fn default_rule_label(mut self, enabled: bool) -> Self {
        self.options.default_rule_label = Some(enabled);
        self
    }

    /// The treatment to answer instead of `control` for every flag without a fallback of its
    /// own ([`fallback_treatment_for`](ClientBuilder::fallback_treatment_for)): wherever an
    /// evaluation would answer `control` (invalid input, a client destroyed or not ready yet,
    /// an unknown flag, an exception), this treatment and its configuration answer instead,
    /// and the impression, where there is one, carries the label `fallback - <the label the
    /// evaluation had>`, as in Split's official SDKs. Default: none (`control`).
    ///
    /// # Examples
    /// ```
    /// use splitkit::{Client, FallbackTreatment};
    /// let client = Client::builder("localhost")
    ///     .split_file("examples/flags.json")
    ///     .fallback_treatment("off")
    ///     .fallback_treatment_for("beta_banner", FallbackTreatment::new("hidden").with_config("{}"))
    ///     .build()?;
    /// assert_eq!(client.get_treatment("ann", "no_such_flag", None), "off");
    /// let d = client.evaluate("ann", "beta_banner", None);
    /// assert_eq!((d.treatment.as_str(), d.config.as_deref()), ("hidden", Some("{}")));
    /// assert_eq!(d.label.map(|l| l.to_string()).as_deref(), Some("fallback - definition not found"));
    /// # Ok::<(), splitkit::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`build`](ClientBuilder::build) refuses a treatment that the official SDKs would
    /// discard: more than 100 characters, or not letters, digits, `_` and `-` (or digits
    /// first, then also `.`).
    pub fn fallback_treatment(mut self, fallback: impl Into<FallbackTreatment>) -> Self {
        self.options.fallback_treatment = Some(fallback.into());
        self
    }

    /// The treatment to answer instead of `control` for `flag` (see
    /// [`fallback_treatment`](ClientBuilder::fallback_treatment)); it wins over the global
    /// one. Setting a flag twice keeps the last.
    ///
    /// # Errors
    /// [`build`](ClientBuilder::build) refuses a flag name longer than 100 characters or with
    /// spaces, and a treatment as [`fallback_treatment`](ClientBuilder::fallback_treatment)
    /// does.
    pub fn fallback_treatment_for(
        mut self,
        flag: impl Into<String>,
        fallback: impl Into<FallbackTreatment>,
    ) -> Self {
        let flag = flag.into();
        self.options.fallback_treatments.retain(|(f, _)| *f != flag);
        self.options
            .fallback_treatments
            .push((flag, fallback.into()));
        self
    }

    /// Whether the machine's IP and name are detected and sent. Default: true.
    pub fn ip_addresses_enabled(mut self, enabled: bool) -> Self {
        self.options.ip_addresses_enabled = Some(enabled);
        self
    }

    /// The machine IP to report instead of the detected one. Default: detected.
    pub fn machine_ip(mut self, ip: impl Into<String>) -> Self {
        self.options.machine_ip = Some(ip.into());
        self
    }

    /// The machine name to report instead of the host name. Default: detected.
    pub fn machine_name(mut self, name: impl Into<String>) -> Self {
        self.options.machine_name = Some(name.into());
        self
    }

    /// How often queued impressions are sent. Default: 300 s (60 s in debug mode); minimum
    /// 60 s (1 s in debug mode). Impressions are also sent when the queue holds
    /// [`ClientBuilder::impressions_bulk_size`] of them, on [`Client::flush`] and at shutdown.
    /// In consumer mode (Redis): default 1 s, no minimum.
    pub fn impressions_refresh_rate(mut self, period: Duration) -> Self {
        self.options.impressions_refresh_rate = Some(period);
        self
    }

    /// How often impression counts are sent. Default: 1800 s; minimum 60 s. In consumer
    /// mode (Redis): default 1 s, no minimum.
    pub fn impression_counts_refresh_rate(mut self, period: Duration) -> Self {
        self.options.impression_counts_refresh_rate = Some(period);
        self
    }

    /// How often unique keys (`none` mode) are sent. Default: 900 s; minimum 60 s. In
    /// consumer mode (Redis): default 1 s, no minimum.
    pub fn unique_keys_refresh_rate(mut self, period: Duration) -> Self {
        self.options.unique_keys_refresh_rate = Some(period);
        self
    }

    /// Impressions the queue holds; beyond it they are dropped and counted. Default: 10,000.
    ///
    /// A slot takes 112 bytes, and an impression waiting in it nothing more when its keys
    /// fit in 45 bytes together (longer keys and impression properties add an allocation of
    /// their own). A queue of up to 74,898 slots (8 MiB; 1.1 MB at the default) is allocated
    /// when the client is built, for the fastest recording; a larger one costs nothing up
    /// front, and allocates its slots as impressions wait in it, 31 at a time, freeing them
    /// as the worker takes them (10 to 20 ns more a recorded impression on a 2-core VM).
    /// Optimized mode's dedupe cache adds about 22 bytes for each impression it remembers,
    /// up to [`dedupe_cache_size`](Self::dedupe_cache_size).
    pub fn impressions_queue_size(mut self, size: usize) -> Self {
        self.options.impressions_queue_size = Some(size);
        self
    }

    /// Impressions per request, and the queue length that triggers a send. Default: 5,000.
    pub fn impressions_bulk_size(mut self, size: usize) -> Self {
        self.options.impressions_bulk_size = Some(size);
        self
    }

    /// Entries of the optimized mode's dedupe cache. Default: 500,000.
    pub fn dedupe_cache_size(mut self, size: usize) -> Self {
        self.options.dedupe_cache_size = Some(size);
        self
    }

    /// Adds a listener that receives every impression, on a thread of its own (each listener
    /// added gets its own). Default: none.
    pub fn impression_listener(mut self, listener: Arc<dyn ImpressionListener>) -> Self {
        self.options.impression_listeners.push(listener);
        self
    }

    /// How often tracked events are sent. Default: 10 s; minimum 1 s. Events are also sent
    /// when the queue holds [`ClientBuilder::events_bulk_size`] of them or 5 MB. In consumer
    /// mode (Redis): default 1 s, no minimum.
    pub fn events_push_rate(mut self, period: Duration) -> Self {
        self.options.events_push_rate = Some(period);
        self
    }

    /// Events the queue holds; beyond it they are dropped and counted. Default: 10,000.
    pub fn events_queue_size(mut self, size: usize) -> Self {
        self.options.events_queue_size = Some(size);
        self
    }

    /// Events per request. Default: 5,000.
    pub fn events_bulk_size(mut self, size: usize) -> Self {
        self.options.events_bulk_size = Some(size);
        self
    }

    /// Base URL of the SDK API (definitions). Default: `https://sdk.split.io/api`.
    pub fn sdk_url(mut self, url: impl Into<String>) -> Self {
        self.options.sdk_url = Some(url.into());
        self
    }

    /// Base URL where impressions, counts and events are posted. Default:
    /// `https://events.split.io/api`, except in localhost mode, where nothing is sent unless
    /// this is set.
    pub fn events_url(mut self, url: impl Into<String>) -> Self {
        self.options.events_url = Some(url.into());
        self
    }

    /// Base URL where unique keys are posted. Default: `https://telemetry.split.io/api`;
    /// in localhost mode the events URL (nothing is sent without one).
    pub fn telemetry_url(mut self, url: impl Into<String>) -> Self {
        self.options.telemetry_url = Some(url.into());
        self
    }

    /// Items each delivery queue (impressions, events, counts, unique keys) keeps while its
    /// endpoint fails: a failed batch is retried until it is delivered, for as long as what
    /// waits fits in this bound and in [`max_retained_bytes`](Self::max_retained_bytes);
    /// beyond it the oldest batches go to the [spool](Self::spool_directory), or are
    /// dropped and counted (`dropped_retained_overflow`). Never below the bulk size.
    /// Default: 30,000.
    pub fn max_retained_items(mut self, items: usize) -> Self {
        self.options.max_retained_items = Some(items);
        self
    }

    /// Estimated encoded bytes each delivery queue keeps while its endpoint fails (see
    /// [`max_retained_items`](Self::max_retained_items)). Default: 32 MiB.
    pub fn max_retained_bytes(mut self, bytes: usize) -> Self {
        self.options.max_retained_bytes = Some(bytes);
        self
    }

    /// A directory where impressions, counts, unique keys and events go, in Split's wire
    /// format, instead of being dropped: what passes the retention bound while an endpoint
    /// fails, and what is still undelivered at the shutdown deadline. A client started on
    /// the same directory (with the same SDK key) delivers what it finds there first.
    ///
    /// Files are written crash-safe (write, fsync, rename); each is locked while a client
    /// delivers it, so two processes sharing the directory never send the same file twice;
    /// a damaged or truncated file is set aside (renamed `*.damaged`) with a warning naming
    /// it. [`Client::stats`](crate::Client::stats) counts what was `spooled` and
    /// `recovered`. Use one directory per SDK key. Default: none (what does not fit is
    /// dropped and counted).
    pub fn spool_directory(mut self, dir: impl Into<PathBuf>) -> Self {
        self.options.spool_directory = Some(dir.into());
        self
    }

    /// The most bytes the spool directory may hold; beyond it batches are dropped and
    /// counted as without a spool. Default: 256 MiB.
    pub fn spool_max_bytes(mut self, bytes: u64) -> Self {
        self.options.spool_max_bytes = Some(bytes);
        self
    }

    /// How often flag definitions are polled. Default: 60 s; minimum 5 s.
    pub fn features_refresh_rate(mut self, period: Duration) -> Self {
        self.options.features_refresh_rate = Some(period);
        self
    }

    /// How often segments are polled. Default: 60 s; minimum 30 s.
    pub fn segments_refresh_rate(mut self, period: Duration) -> Self {
        self.options.segments_refresh_rate = Some(period);
        self
    }

    /// Timeout of each HTTP request. Default: 30 s.
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.options.request_timeout = Some(timeout);
        self
    }

    /// The largest answer the SDK API may send (`splitChanges`, `segmentChanges`), in bytes,
    /// counted after decompression. Reading stops there: a larger answer is refused without
    /// being held (nothing of it is applied, the last good definitions stay), logged as an
    /// error and reported by [`Client::block_until_ready`] naming the URL and the limit, and
    /// asked again at the next poll. A compressed answer that would expand further never
    /// costs more memory than this. Default: 128 MiB
    /// ([`defaults::MAX_RESPONSE_BYTES`](crate::defaults::MAX_RESPONSE_BYTES)); at least 1.
    pub fn max_response_bytes(mut self, bytes: u64) -> Self {
        self.options.max_response_bytes = Some(bytes);
        self
    }

    /// The retry delays of synchronization after a failed request (network, timeout, 5xx,
    /// 408, 429, a malformed answer): the first retry comes within `base`, each further one
    /// within twice the previous bound, never beyond `cap` (full jitter: a random delay up
    /// to the bound, so that many clients do not retry at once); a server's `Retry-After`
    /// replaces the delay (up to an hour). Flags and segments back off separately; a
    /// success starts over.
    /// The last good definitions are served meanwhile.
    ///
    /// Default: 1 s and 60 s ([`defaults::SYNC_BACKOFF_BASE`](crate::defaults::SYNC_BACKOFF_BASE),
    /// [`defaults::SYNC_BACKOFF_CAP`](crate::defaults::SYNC_BACKOFF_CAP)). `cap` must be at
    /// least `base`, and `base` more than zero, at least 100 ms unless
    /// [`enforce_minimum_rates`](Self::enforce_minimum_rates) is off.
    pub fn sync_backoff(mut self, base: Duration, cap: Duration) -> Self {
        self.options.sync_backoff = Some((base, cap));
        self
    }

    /// Whether the minimum refresh rates are enforced. Turn off only for tests against a
    /// local server or a proxy you run. Default: true.
    pub fn enforce_minimum_rates(mut self, enforce: bool) -> Self {
        self.options.enforce_minimum_rates = Some(enforce);
        self
    }

    /// Whether remote mode streams changes (Split's push protocol: a kill or an update is
    /// seen within milliseconds), polling only while the stream is down or paused. With
    /// `false`, definitions are polled at the refresh rates. Default: true.
    pub fn streaming_enabled(mut self, enabled: bool) -> Self {
        self.options.streaming_enabled = Some(enabled);
        self
    }

    /// Base URL of the streaming authentication service. Default:
    /// `https://auth.split.io/api`.
    pub fn auth_url(mut self, url: impl Into<String>) -> Self {
        self.options.auth_url = Some(url.into());
        self
    }

    /// Base URL of the streaming service (server-sent events). Default:
    /// `https://streaming.split.io`.
    pub fn streaming_url(mut self, url: impl Into<String>) -> Self {
        self.options.streaming_url = Some(url.into());
        self
    }

    /// Consumer mode: read the definitions from the Redis that Split's Synchronizer keeps
    /// and write impressions, impression counts, unique keys and events there, in the
    /// Synchronizer's layout, instead of talking to Split's API. The SDK key is then only a
    /// name (it is not sent anywhere). Evaluation reads an in-memory snapshot, refreshed
    /// every [`RedisConfig::refresh_rate`](crate::RedisConfig::refresh_rate); writes are
    /// pipelined by the background workers, with the retention, spool and accounting of
    /// HTTP delivery. Needs the `redis` feature.
    ///
    /// # Examples
    /// ```no_run
    /// let client = splitkit::Client::builder("consumer")
    ///     .redis(splitkit::RedisConfig::url("redis://127.0.0.1:6379/0").prefix("checkout"))
    ///     .build()?;
    /// client.block_until_ready(std::time::Duration::from_secs(5))?;
    /// # Ok::<(), splitkit::Error>(())
    /// ```
    #[cfg(feature = "redis")]
    pub fn redis(mut self, config: crate::redis::RedisConfig) -> Self {
        self.options.redis = Some(config);
        self
    }

    /// Validates the options, loads (or starts loading) the definitions and starts the
    /// background work.
    ///
    /// # Errors
    /// [`Error::Config`] naming the option when a value is invalid; [`Error::Io`] or
    /// [`Error::Parse`] naming the file (and line or field) when the localhost file or a
    /// segment file cannot be read or parsed.
    pub fn build(self) -> Result<Client, Error> {
        Client::start(self)
    }
}
