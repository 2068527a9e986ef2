//! Client configuration: every option with its documented default, validated at `build()`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::delivery::WorkerConfig;
use crate::error::Error;
use crate::fallback::{self, FallbackTreatment};
use crate::impressions::{ImpressionListener, ImpressionsMode};
use crate::validation::sanitize_flag_sets;

/// The SDK key that selects localhost mode.
pub const LOCALHOST: &str = "localhost";
/// Default of [`crate::ClientBuilder::shutdown_timeout`]: 5 seconds.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);
/// Shortest accepted [`crate::ClientBuilder::localhost_refresh_rate`]: 10 milliseconds.
pub const MIN_LOCALHOST_REFRESH_RATE: Duration = Duration::from_millis(10);
/// Default localhost flags file, relative to the home directory: `.split`.
pub const DEFAULT_SPLIT_FILE: &str = ".split";
/// Default SDK API base URL.
pub const DEFAULT_SDK_URL: &str = "https://sdk.split.io/api";
/// Default events API base URL (impressions and events).
pub const DEFAULT_EVENTS_URL: &str = "https://events.split.io/api";
/// Default telemetry API base URL (unique keys).
pub const DEFAULT_TELEMETRY_URL: &str = "https://telemetry.split.io/api";
/// Default of [`crate::ClientBuilder::features_refresh_rate`]: 60 s (minimum 5 s).
pub const DEFAULT_FEATURES_REFRESH_RATE: Duration = Duration::from_secs(60);
/// Default of [`crate::ClientBuilder::segments_refresh_rate`]: 60 s (minimum 30 s).
pub const DEFAULT_SEGMENTS_REFRESH_RATE: Duration = Duration::from_secs(60);
/// Default impressions refresh rate in optimized and none modes: 300 s (minimum 60 s).
pub const DEFAULT_IMPRESSIONS_REFRESH_RATE: Duration = Duration::from_secs(300);
/// Default impressions refresh rate in debug mode: 60 s (minimum 1 s).
pub const DEFAULT_IMPRESSIONS_REFRESH_RATE_DEBUG: Duration = Duration::from_secs(60);
/// Default of [`crate::ClientBuilder::impression_counts_refresh_rate`]: 1800 s.
pub const DEFAULT_IMPRESSION_COUNTS_REFRESH_RATE: Duration = Duration::from_secs(1800);
/// Default of [`crate::ClientBuilder::unique_keys_refresh_rate`]: 900 s.
pub const DEFAULT_UNIQUE_KEYS_REFRESH_RATE: Duration = Duration::from_secs(900);
/// In consumer mode (Redis), the default flush interval of impressions, counts, unique keys
/// and events: 1 s (no minimum applies).
pub const DEFAULT_CONSUMER_FLUSH_INTERVAL: Duration = Duration::from_secs(1);
/// Default of [`crate::ClientBuilder::events_push_rate`]: 10 s (minimum 1 s).
pub const DEFAULT_EVENTS_PUSH_RATE: Duration = Duration::from_secs(10);
/// Default queue sizes (impressions and events): 10,000.
pub const DEFAULT_QUEUE_SIZE: usize = 10_000;
/// Default bulk sizes (items per request): 5,000.
pub const DEFAULT_BULK_SIZE: usize = 5_000;
/// Default of [`crate::ClientBuilder::dedupe_cache_size`]: 500,000.
pub const DEFAULT_DEDUPE_CACHE_SIZE: usize = 500_000;
/// Default of [`crate::ClientBuilder::request_timeout`]: 30 s.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Default of [`crate::ClientBuilder::max_response_bytes`]: 128 MiB, counted after
/// decompression. The definitions of a large organisation are tens of megabytes; this leaves
/// room for several times that while bounding what a broken or hostile server can make the
/// SDK hold.
pub const DEFAULT_MAX_RESPONSE_BYTES: u64 = 128 * 1024 * 1024;
/// Default first retry delay ceiling of [`crate::ClientBuilder::sync_backoff`]: 1 second.
pub const DEFAULT_SYNC_BACKOFF_BASE: Duration = Duration::from_secs(1);
/// Default longest retry delay of [`crate::ClientBuilder::sync_backoff`]: 60 seconds.
pub const DEFAULT_SYNC_BACKOFF_CAP: Duration = Duration::from_secs(60);
/// Shortest accepted base of [`crate::ClientBuilder::sync_backoff`] while the minimum rates
/// are enforced: 100 milliseconds.
pub const MIN_SYNC_BACKOFF_BASE: Duration = Duration::from_millis(100);
/// Events also flush when this many bytes are queued: 5 MB.
pub const EVENTS_FLUSH_BYTES: usize = 5 * 1024 * 1024;
/// Default of [`crate::ClientBuilder::auth_url`]: `https://auth.split.io/api`.
pub const DEFAULT_AUTH_URL: &str = "https://auth.split.io/api";
/// Default of [`crate::ClientBuilder::streaming_url`]: `https://streaming.split.io`.
pub const DEFAULT_STREAMING_URL: &str = "https://streaming.split.io";
/// Default of [`crate::ClientBuilder::max_retained_items`]: 30,000 items a queue.
pub const DEFAULT_RETAINED_ITEMS: usize = WorkerConfig::DEFAULT_MAX_RETAINED_ITEMS;
/// Default of [`crate::ClientBuilder::max_retained_bytes`]: 32 MiB a queue.
pub const DEFAULT_RETAINED_BYTES: usize = WorkerConfig::DEFAULT_MAX_RETAINED_BYTES;
/// Default of [`crate::ClientBuilder::spool_max_bytes`]: 256 MiB.
pub const DEFAULT_SPOOL_MAX_BYTES: u64 = 256 * 1024 * 1024;

/// A validated client configuration. Built by [`crate::ClientBuilder`]; read with the getters.
#[derive(Clone)]
pub struct Config {
    pub(crate) sdk_key: String,
    pub(crate) split_file: PathBuf,
    pub(crate) segment_directory: Option<PathBuf>,
    pub(crate) localhost_refresh_rate: Option<Duration>,
    pub(crate) flag_sets_filter: Vec<String>,
    pub(crate) shutdown_timeout: Duration,
    pub(crate) impressions_mode: ImpressionsMode,
    pub(crate) labels_enabled: bool,
    pub(crate) ip_addresses_enabled: bool,
    pub(crate) machine_ip: Option<String>,
    pub(crate) machine_name: Option<String>,
    pub(crate) impressions_refresh_rate: Duration,
    pub(crate) impression_counts_refresh_rate: Duration,
    pub(crate) unique_keys_refresh_rate: Duration,
    pub(crate) impressions_queue_size: usize,
    pub(crate) impressions_bulk_size: usize,
    pub(crate) dedupe_cache_size: usize,
    pub(crate) events_push_rate: Duration,
    pub(crate) events_queue_size: usize,
    pub(crate) events_bulk_size: usize,
    pub(crate) sdk_url: String,
    pub(crate) events_url: Option<String>,
    pub(crate) telemetry_url: Option<String>,
    pub(crate) features_refresh_rate: Duration,
    pub(crate) segments_refresh_rate: Duration,
    pub(crate) request_timeout: Duration,
    pub(crate) max_response_bytes: u64,
    pub(crate) sync_backoff: (Duration, Duration),
    pub(crate) enforce_minimum_rates: bool,
    pub(crate) streaming_enabled: bool,
    pub(crate) auth_url: String,
    pub(crate) streaming_url: String,
    pub(crate) impression_listeners: Vec<Arc<dyn ImpressionListener>>,
    pub(crate) default_rule_label: bool,
    pub(crate) fallback_treatment: Option<FallbackTreatment>,
    pub(crate) fallback_treatments: Vec<(String, FallbackTreatment)>,
    pub(crate) max_retained_items: usize,
    pub(crate) max_retained_bytes: usize,
    pub(crate) spool_directory: Option<PathBuf>,
    pub(crate) spool_max_bytes: u64,
    #[cfg(feature = "redis")]
    pub(crate) redis: Option<crate::redis::RedisConfig>,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The SDK key is a secret: never printed.
        f.debug_struct("Config")
            .field("localhost", &self.is_localhost())
            .field("split_file", &self.split_file)
            .field("segment_directory", &self.segment_directory)
            .field("impressions_mode", &self.impressions_mode)
            .field("labels_enabled", &self.labels_enabled)
            .field("sdk_url", &self.sdk_url)
            .field("events_url", &self.events_url())
            .finish_non_exhaustive()
    }
}

impl Config {
    /// True in localhost mode (SDK key `"localhost"`).
    pub fn is_localhost(&self) -> bool {
        self.sdk_key == LOCALHOST
    }

    /// True in consumer mode: definitions come from, and impressions and events go to, the
    /// Redis of `ClientBuilder::redis` (feature `redis`; always false without it).
    pub fn is_consumer(&self) -> bool {
        #[cfg(feature = "redis")]
        return self.redis.is_some();
        #[cfg(not(feature = "redis"))]
        false
    }

    /// The localhost flags file.
    pub fn split_file(&self) -> &Path {
        &self.split_file
    }

    /// The localhost segment directory, if any.
    pub fn segment_directory(&self) -> Option<&Path> {
        self.segment_directory.as_deref()
    }

    /// How often the localhost file is checked for changes; `None` when reloading is off.
    pub fn localhost_refresh_rate(&self) -> Option<Duration> {
        self.localhost_refresh_rate
    }

    /// The flag sets the client is restricted to (sanitized, sorted); empty for no filter.
    pub fn flag_sets_filter(&self) -> &[String] {
        &self.flag_sets_filter
    }

    /// How long dropping the last client handle waits for background work to finish.
    pub fn shutdown_timeout(&self) -> Duration {
        self.shutdown_timeout
    }

    /// The impressions mode.
    pub fn impressions_mode(&self) -> ImpressionsMode {
        self.impressions_mode
    }

    /// Whether impressions carry labels.
    pub fn labels_enabled(&self) -> bool {
        self.labels_enabled
    }

    /// The spool directory, if any ([`crate::ClientBuilder::spool_directory`]).
    pub fn spool_directory(&self) -> Option<&Path> {
        self.spool_directory.as_deref()
    }

    /// Whether impressions say `default rule` for the no-rule-matched case
    /// ([`crate::ClientBuilder::default_rule_label`]).
    pub fn default_rule_label(&self) -> bool {
        self.default_rule_label
    }

    /// How often queued impressions are sent.
    pub fn impressions_refresh_rate(&self) -> Duration {
        self.impressions_refresh_rate
    }

    /// How often tracked events are sent.
    pub fn events_push_rate(&self) -> Duration {
        self.events_push_rate
    }

    /// The SDK API base URL.
    pub fn sdk_url(&self) -> &str {
        &self.sdk_url
    }

    /// Where impressions and events are sent; `None` in localhost mode unless set (then
    /// nothing is sent anywhere).
    pub fn events_url(&self) -> Option<&str> {
        match &self.events_url {
            Some(u) => Some(u),
            None if self.is_localhost() => None,
            None => Some(DEFAULT_EVENTS_URL),
        }
    }

    /// Where unique keys are sent: the telemetry URL if set; otherwise Split's in remote
    /// mode, and in localhost mode the events URL (so that a localhost client only ever
    /// talks to the host it was pointed at), or nowhere without one.
    pub fn telemetry_url(&self) -> Option<&str> {
        match &self.telemetry_url {
            Some(u) => Some(u),
            None if self.is_localhost() => self.events_url.as_deref(),
            None => Some(DEFAULT_TELEMETRY_URL),
        }
    }

    /// How often flag definitions are polled (remote mode).
    pub fn features_refresh_rate(&self) -> Duration {
        self.features_refresh_rate
    }

    /// How often segments are polled (remote mode).
    pub fn segments_refresh_rate(&self) -> Duration {
        self.segments_refresh_rate
    }

    /// The largest answer accepted from the SDK API, in bytes after decompression
    /// ([`crate::ClientBuilder::max_response_bytes`]).
    pub fn max_response_bytes(&self) -> u64 {
        self.max_response_bytes
    }

    /// The base and cap of the retry delays after failed synchronization requests
    /// ([`crate::ClientBuilder::sync_backoff`]).
    pub fn sync_backoff(&self) -> (Duration, Duration) {
        self.sync_backoff
    }
}

/// The options as given to the builder, before validation.
#[derive(Clone, Default)]
pub(crate) struct Options {
    pub(crate) split_file: Option<PathBuf>,
    pub(crate) segment_directory: Option<PathBuf>,
    pub(crate) localhost_refresh_rate: Option<Duration>,
    pub(crate) flag_sets_filter: Option<Vec<String>>,
    pub(crate) shutdown_timeout: Option<Duration>,
    pub(crate) impressions_mode: Option<ImpressionsMode>,
    pub(crate) labels_enabled: Option<bool>,
    pub(crate) ip_addresses_enabled: Option<bool>,
    pub(crate) machine_ip: Option<String>,
    pub(crate) machine_name: Option<String>,
    pub(crate) impressions_refresh_rate: Option<Duration>,
    pub(crate) impression_counts_refresh_rate: Option<Duration>,
    pub(crate) unique_keys_refresh_rate: Option<Duration>,
    pub(crate) impressions_queue_size: Option<usize>,
    pub(crate) impressions_bulk_size: Option<usize>,
    pub(crate) dedupe_cache_size: Option<usize>,
    pub(crate) events_push_rate: Option<Duration>,
    pub(crate) events_queue_size: Option<usize>,
    pub(crate) events_bulk_size: Option<usize>,
    pub(crate) sdk_url: Option<String>,
    pub(crate) events_url: Option<String>,
    pub(crate) telemetry_url: Option<String>,
    pub(crate) features_refresh_rate: Option<Duration>,
    pub(crate) segments_refresh_rate: Option<Duration>,
    pub(crate) request_timeout: Option<Duration>,
    pub(crate) max_response_bytes: Option<u64>,
    pub(crate) sync_backoff: Option<(Duration, Duration)>,
    pub(crate) enforce_minimum_rates: Option<bool>,
    pub(crate) streaming_enabled: Option<bool>,
    pub(crate) auth_url: Option<String>,
    pub(crate) streaming_url: Option<String>,
    pub(crate) impression_listeners: Vec<Arc<dyn ImpressionListener>>,
    pub(crate) default_rule_label: Option<bool>,
    pub(crate) fallback_treatment: Option<FallbackTreatment>,
    pub(crate) fallback_treatments: Vec<(String, FallbackTreatment)>,
    pub(crate) max_retained_items: Option<usize>,
    pub(crate) max_retained_bytes: Option<usize>,
    pub(crate) spool_directory: Option<PathBuf>,
    pub(crate) spool_max_bytes: Option<u64>,
    #[cfg(feature = "redis")]
    pub(crate) redis: Option<crate::redis::RedisConfig>,
}

fn rate(
    option: &'static str,
    value: Option<Duration>,
    default: Duration,
    min: Duration,
    enforce: bool,
) -> Result<Duration, Error> {
    let v = value.unwrap_or(default);
    if v.is_zero() {
        return Err(Error::Config {
            option,
            message: "must be greater than zero".into(),
        });
    }
    if enforce && v < min {
        return Err(Error::Config {
            option,
            message: format!("must be at least {min:?}, got {v:?}"),
        });
    }
    Ok(v)
}

/// A count or a byte size: `value` or `default`, at least 1.
fn size<T: Copy + PartialEq + From<u8>>(
    option: &'static str,
    value: Option<T>,
    default: T,
) -> Result<T, Error> {
    let n = value.unwrap_or(default);
    if n == T::from(0) {
        return Err(Error::Config {
            option,
            message: "must be at least 1".into(),
        });
    }
    Ok(n)
}

/// The sync backoff's `(base, cap)`: `cap >= base > 0`, and `base` at least
/// [`MIN_SYNC_BACKOFF_BASE`] when minimums are enforced.
fn sync_backoff(
    value: Option<(Duration, Duration)>,
    enforce: bool,
) -> Result<(Duration, Duration), Error> {
    let (base, cap) = value.unwrap_or((DEFAULT_SYNC_BACKOFF_BASE, DEFAULT_SYNC_BACKOFF_CAP));
    let err = |message: String| {
        Err(Error::Config {
            option: "sync_backoff",
            message,
        })
    };
    if base.is_zero() {
        return err("the base must be greater than zero".into());
    }
    if enforce && base < MIN_SYNC_BACKOFF_BASE {
        return err(format!(
            "the base must be at least {MIN_SYNC_BACKOFF_BASE:?} (unless enforce_minimum_rates is \
             off), got {base:?}"
        ));
    }
    if cap < base {
        return err(format!(
            "the cap must be at least the base ({base:?}), got {cap:?}"
        ));
    }
    Ok((base, cap))
}

fn url(option: &'static str, value: Option<String>) -> Result<Option<String>, Error> {
    match value {
        None => Ok(None),
        Some(u) => {
            let t = u.trim().trim_end_matches('/').to_string();
            if !(t.starts_with("http://") || t.starts_with("https://")) || t.len() < 10 {
                return Err(Error::Config {
                    option,
                    message: format!("must be an absolute http or https URL, got {u:?}"),
                });
            }
            Ok(Some(t))
        }
    }
}

impl Options {
    pub(crate) fn validate(self, sdk_key: &str, has_snapshot: bool) -> Result<Config, Error> {
        let sdk_key = sdk_key.trim();
        if sdk_key.is_empty() {
            return Err(Error::Config {
                option: "sdk_key",
                message: "must be a non-empty string (use \"localhost\" for localhost mode)".into(),
            });
        }
        let localhost = sdk_key == LOCALHOST || has_snapshot;
        if let Some(rate) = self.localhost_refresh_rate
            && rate < MIN_LOCALHOST_REFRESH_RATE
        {
            return Err(Error::Config {
                option: "localhost_refresh_rate",
                message: format!("must be at least {MIN_LOCALHOST_REFRESH_RATE:?}, got {rate:?}"),
            });
        }
        let split_file = match self.split_file {
            Some(p) => p,
            None if has_snapshot || !localhost => PathBuf::new(),
            None => match std::env::var_os("HOME") {
                Some(home) => PathBuf::from(home).join(DEFAULT_SPLIT_FILE),
                None => {
                    return Err(Error::Config {
                        option: "split_file",
                        message: "not set, and there is no HOME directory for the default ~/.split"
                            .into(),
                    });
                }
            },
        };
        let flag_sets_filter = match self.flag_sets_filter {
            None => Vec::new(),
            Some(sets) => {
                let cleaned =
                    sanitize_flag_sets("flag_sets_filter", &sets, &mut |w| log::warn!("{w}"));
                if cleaned.is_empty() && !sets.is_empty() {
                    return Err(Error::Config {
                        option: "flag_sets_filter",
                        message: format!("no valid flag set name in {sets:?}"),
                    });
                }
                cleaned
            }
        };
        let enforce = self.enforce_minimum_rates.unwrap_or(true);
        let mode = self.impressions_mode.unwrap_or_default();
        let (imp_default, imp_min) = match mode {
            ImpressionsMode::Debug => (
                DEFAULT_IMPRESSIONS_REFRESH_RATE_DEBUG,
                Duration::from_secs(1),
            ),
            _ => (DEFAULT_IMPRESSIONS_REFRESH_RATE, Duration::from_secs(60)),
        };
        // Consumer mode writes to Redis, not to Split's API: its queues flush every second
        // by default (what is recorded reaches the Synchronizer quickly, and little waits in
        // memory), and the API's minimum rates do not apply.
        #[cfg(feature = "redis")]
        let consumer = self.redis.is_some();
        #[cfg(not(feature = "redis"))]
        let consumer = false;
        let (imp_default, counts_default, unique_keys_default, events_default, enforce_delivery) =
            if consumer {
                (
                    DEFAULT_CONSUMER_FLUSH_INTERVAL,
                    DEFAULT_CONSUMER_FLUSH_INTERVAL,
                    DEFAULT_CONSUMER_FLUSH_INTERVAL,
                    DEFAULT_CONSUMER_FLUSH_INTERVAL,
                    false,
                )
            } else {
                (
                    imp_default,
                    DEFAULT_IMPRESSION_COUNTS_REFRESH_RATE,
                    DEFAULT_UNIQUE_KEYS_REFRESH_RATE,
                    DEFAULT_EVENTS_PUSH_RATE,
                    enforce,
                )
            };
        let sdk_url = url("sdk_url", self.sdk_url)?.unwrap_or_else(|| DEFAULT_SDK_URL.into());
        if let Some(f) = &self.fallback_treatment {
            fallback::check("fallback_treatment", None, f)?;
        }
        for (flag, f) in &self.fallback_treatments {
            fallback::check("fallback_treatment_for", Some(flag), f)?;
        }
        Ok(Config {
            sdk_key: sdk_key.to_string(),
            split_file,
            segment_directory: self.segment_directory,
            localhost_refresh_rate: self.localhost_refresh_rate,
            flag_sets_filter,
            shutdown_timeout: self.shutdown_timeout.unwrap_or(DEFAULT_SHUTDOWN_TIMEOUT),
            impressions_mode: mode,
            labels_enabled: self.labels_enabled.unwrap_or(true),
            ip_addresses_enabled: self.ip_addresses_enabled.unwrap_or(true),
            machine_ip: self.machine_ip,
            machine_name: self.machine_name,
            impressions_refresh_rate: rate(
                "impressions_refresh_rate",
                self.impressions_refresh_rate,
                imp_default,
                imp_min,
                enforce_delivery,
            )?,
            impression_counts_refresh_rate: rate(
                "impression_counts_refresh_rate",
                self.impression_counts_refresh_rate,
                counts_default,
                Duration::from_secs(60),
                enforce_delivery,
            )?,
            unique_keys_refresh_rate: rate(
                "unique_keys_refresh_rate",
                self.unique_keys_refresh_rate,
                unique_keys_default,
                Duration::from_secs(60),
                enforce_delivery,
            )?,
            impressions_queue_size: size(
                "impressions_queue_size",
                self.impressions_queue_size,
                DEFAULT_QUEUE_SIZE,
            )?,
            impressions_bulk_size: size(
                "impressions_bulk_size",
                self.impressions_bulk_size,
                DEFAULT_BULK_SIZE,
            )?,
            dedupe_cache_size: size(
                "dedupe_cache_size",
                self.dedupe_cache_size,
                DEFAULT_DEDUPE_CACHE_SIZE,
            )?,
            events_push_rate: rate(
                "events_push_rate",
                self.events_push_rate,
                events_default,
                Duration::from_secs(1),
                enforce_delivery,
            )?,
            events_queue_size: size(
                "events_queue_size",
                self.events_queue_size,
                DEFAULT_QUEUE_SIZE,
            )?,
            events_bulk_size: size("events_bulk_size", self.events_bulk_size, DEFAULT_BULK_SIZE)?,
            sdk_url,
            events_url: url("events_url", self.events_url)?,
            telemetry_url: url("telemetry_url", self.telemetry_url)?,
            features_refresh_rate: rate(
                "features_refresh_rate",
                self.features_refresh_rate,
                DEFAULT_FEATURES_REFRESH_RATE,
                Duration::from_secs(5),
                enforce,
            )?,
            segments_refresh_rate: rate(
                "segments_refresh_rate",
                self.segments_refresh_rate,
                DEFAULT_SEGMENTS_REFRESH_RATE,
                Duration::from_secs(30),
                enforce,
            )?,
            request_timeout: rate(
                "request_timeout",
                self.request_timeout,
                DEFAULT_REQUEST_TIMEOUT,
                Duration::from_millis(1),
                enforce,
            )?,
            max_response_bytes: size(
                "max_response_bytes",
                self.max_response_bytes,
                DEFAULT_MAX_RESPONSE_BYTES,
            )?,
            sync_backoff: sync_backoff(self.sync_backoff, enforce)?,
            enforce_minimum_rates: enforce,
            streaming_enabled: self.streaming_enabled.unwrap_or(true),
            auth_url: url("auth_url", self.auth_url)?.unwrap_or_else(|| DEFAULT_AUTH_URL.into()),
            streaming_url: url("streaming_url", self.streaming_url)?
                .unwrap_or_else(|| DEFAULT_STREAMING_URL.into()),
            impression_listeners: self.impression_listeners,
            default_rule_label: self.default_rule_label.unwrap_or(false),
            fallback_treatment: self.fallback_treatment,
            fallback_treatments: self.fallback_treatments,
            max_retained_items: size(
                "max_retained_items",
                self.max_retained_items,
                DEFAULT_RETAINED_ITEMS,
            )?,
            max_retained_bytes: size(
                "max_retained_bytes",
                self.max_retained_bytes,
                DEFAULT_RETAINED_BYTES,
            )?,
            spool_directory: self.spool_directory,
            spool_max_bytes: size(
                "spool_max_bytes",
                self.spool_max_bytes,
                DEFAULT_SPOOL_MAX_BYTES,
            )?,
            #[cfg(feature = "redis")]
            redis: match self.redis {
                Some(r) => {
                    r.validate()?;
                    Some(r)
                }
                None => None,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(sdk_key: &str, events: Option<&str>, telemetry: Option<&str>) -> Config {
        let options = Options {
            events_url: events.map(str::to_string),
            telemetry_url: telemetry.map(str::to_string),
            ..Options::default()
        };
        match options.validate(sdk_key, true) {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn max_response_bytes_has_a_default_and_is_at_least_one() {
        assert_eq!(
            config("key", None, None).max_response_bytes(),
            128 * 1024 * 1024
        );
        let set = |n| {
            Options {
                max_response_bytes: Some(n),
                ..Options::default()
            }
            .validate("key", false)
        };
        assert_eq!(set(1).map(|c| c.max_response_bytes()).ok(), Some(1));
        match set(0) {
            Err(Error::Config { option, message }) => {
                assert_eq!(option, "max_response_bytes");
                assert_eq!(message, "must be at least 1");
            }
            other => panic!("expected a configuration error, got {other:?}"),
        }
    }

    #[test]
    fn sync_backoff_has_defaults_and_is_checked() {
        let c = config("key", None, None);
        assert_eq!(
            c.sync_backoff(),
            (Duration::from_secs(1), Duration::from_secs(60))
        );
        let set = |base: u64, cap: u64, enforce: bool| {
            Options {
                sync_backoff: Some((Duration::from_millis(base), Duration::from_millis(cap))),
                enforce_minimum_rates: Some(enforce),
                ..Options::default()
            }
            .validate("key", false)
        };
        let ms = Duration::from_millis;
        assert_eq!(
            set(250, 5_000, true).map(|c| c.sync_backoff()).ok(),
            Some((ms(250), ms(5_000)))
        );
        assert_eq!(
            set(100, 100, true).map(|c| c.sync_backoff()).ok(),
            Some((ms(100), ms(100)))
        );
        assert_eq!(
            set(5, 20, false).map(|c| c.sync_backoff()).ok(),
            Some((ms(5), ms(20)))
        );
        for (base, cap, enforce, message) in [
            (0, 10, false, "the base must be greater than zero"),
            (
                99,
                1_000,
                true,
                "the base must be at least 100ms (unless enforce_minimum_rates is off), got 99ms",
            ),
            (
                2_000,
                1_000,
                true,
                "the cap must be at least the base (2s), got 1s",
            ),
        ] {
            match set(base, cap, enforce) {
                Err(Error::Config { option, message: m }) => {
                    assert_eq!((option, m.as_str()), ("sync_backoff", message));
                }
                other => panic!("expected a configuration error, got {other:?}"),
            }
        }
    }

    #[test]
    fn unique_keys_go_where_the_client_was_pointed() {
        let local = "http://127.0.0.1:1/api";
        let cases = [
            (LOCALHOST, None, None, None),
            (LOCALHOST, Some(local), None, Some(local)),
            (
                LOCALHOST,
                Some(local),
                Some("http://127.0.0.1:2/t"),
                Some("http://127.0.0.1:2/t"),
            ),
            ("key", None, None, Some(DEFAULT_TELEMETRY_URL)),
            ("key", Some(local), None, Some(DEFAULT_TELEMETRY_URL)),
        ];
        for (key, events, telemetry, want) in cases {
            let c = config(key, events, telemetry);
            assert_eq!(c.telemetry_url(), want, "{key} {events:?} {telemetry:?}");
        }
    }
}
