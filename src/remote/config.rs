//! Configuration of remote synchronization: every option with its documented default and
//! minimum, checked by [`SyncConfig::validate`].

use std::fmt;
use std::time::Duration;

use crate::error::Error;
use crate::validation::sanitize_flag_sets;

pub(crate) use crate::config::{
    DEFAULT_FEATURES_REFRESH_RATE, DEFAULT_MAX_RESPONSE_BYTES, DEFAULT_REQUEST_TIMEOUT,
    DEFAULT_SDK_URL, DEFAULT_SEGMENTS_REFRESH_RATE,
    DEFAULT_SYNC_BACKOFF_BASE as DEFAULT_BACKOFF_BASE,
    DEFAULT_SYNC_BACKOFF_CAP as DEFAULT_BACKOFF_CAP,
};

/// Shortest accepted period between two polls of `splitChanges`: 5 seconds.
pub(crate) const MIN_FEATURES_REFRESH_RATE: Duration = Duration::from_secs(5);
/// Shortest accepted period between two polls of every segment: 30 seconds.
pub(crate) const MIN_SEGMENTS_REFRESH_RATE: Duration = Duration::from_secs(30);

/// Options of the remote synchronizer.
///
/// Build one with [`SyncConfig::new`] (every default) and set the fields; [`SyncConfig::validate`]
/// says which option is wrong, if any. `Debug` never shows the SDK key.
#[derive(Clone)]
pub(crate) struct SyncConfig {
    /// The server-side SDK key, sent as `Authorization: Bearer <key>`. Never logged.
    pub(crate) sdk_key: String,
    /// Base URL of the SDK API (`splitChanges` and `segmentChanges` live under it).
    pub(crate) sdk_url: String,
    /// Period between two polls of `splitChanges`.
    pub(crate) features_refresh_rate: Duration,
    /// Period between two polls of every referenced segment.
    pub(crate) segments_refresh_rate: Duration,
    /// Limit of one HTTP request, end to end (connect, headers and body).
    pub(crate) request_timeout: Duration,
    /// Largest response body accepted, counted after decompression.
    pub(crate) max_response_bytes: u64,
    /// Ceiling of the first retry delay after a transient failure; doubles with each failure.
    pub(crate) backoff_base: Duration,
    /// Largest retry delay after transient failures.
    pub(crate) backoff_cap: Duration,
    /// Flag sets to restrict the definitions to; empty for every flag. Sanitized at start.
    pub(crate) flag_sets_filter: Vec<String>,
    /// Sent as `SplitSDKMachineIP` when set (and not `NA`/`unknown`).
    pub(crate) machine_ip: Option<String>,
    /// Sent as `SplitSDKMachineName` when set (and not `NA`/`unknown`).
    pub(crate) machine_name: Option<String>,
    /// False only in configurations built by [`SyncConfig::for_tests`].
    pub(crate) enforce_minimums: bool,
    /// Streaming: the auth and streaming base URLs; `None` polls only.
    pub(crate) streaming: Option<StreamingUrls>,
    /// How long the stream may stay silent before it is taken for dead (the official SDKs:
    /// 70 s; the service sends a heartbeat well within it).
    pub(crate) keepalive: Duration,
    /// First wait before a fetch after a notification is repeated because it did not reach
    /// the notification's change number (doubling, then once past the CDN).
    pub(crate) notification_retry: Duration,
}

/// Where streaming authenticates and connects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StreamingUrls {
    /// Base of `GET {auth}/v2/auth?s=1.3`.
    pub(crate) auth: String,
    /// Base of `GET {streaming}/sse?...`.
    pub(crate) streaming: String,
}

impl fmt::Debug for SyncConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SyncConfig")
            .field("sdk_key", &"<redacted>")
            .field("sdk_url", &self.sdk_url)
            .field("features_refresh_rate", &self.features_refresh_rate)
            .field("segments_refresh_rate", &self.segments_refresh_rate)
            .field("request_timeout", &self.request_timeout)
            .field("max_response_bytes", &self.max_response_bytes)
            .field("backoff_base", &self.backoff_base)
            .field("backoff_cap", &self.backoff_cap)
            .field("flag_sets_filter", &self.flag_sets_filter)
            .field("machine_ip", &self.machine_ip)
            .field("machine_name", &self.machine_name)
            .finish()
    }
}

impl SyncConfig {
    /// A configuration with every default, for `sdk_key`.
    pub(crate) fn new(sdk_key: impl Into<String>) -> SyncConfig {
        SyncConfig {
            sdk_key: sdk_key.into(),
            sdk_url: DEFAULT_SDK_URL.to_string(),
            features_refresh_rate: DEFAULT_FEATURES_REFRESH_RATE,
            segments_refresh_rate: DEFAULT_SEGMENTS_REFRESH_RATE,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            backoff_base: DEFAULT_BACKOFF_BASE,
            backoff_cap: DEFAULT_BACKOFF_CAP,
            flag_sets_filter: Vec::new(),
            machine_ip: None,
            machine_name: None,
            enforce_minimums: true,
            streaming: None,
            keepalive: Duration::from_secs(70),
            notification_retry: Duration::from_millis(100),
        }
    }

    /// A configuration for tests against a local server: refresh rates of 50 ms, a request
    /// timeout of 2 s, backoff from 5 ms to 50 ms, and the refresh-rate minimums not enforced
    /// (so tests may lower the rates further).
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn for_tests(sdk_url: impl Into<String>, sdk_key: impl Into<String>) -> SyncConfig {
        SyncConfig {
            sdk_url: sdk_url.into(),
            features_refresh_rate: Duration::from_millis(50),
            segments_refresh_rate: Duration::from_millis(50),
            request_timeout: Duration::from_secs(2),
            backoff_base: Duration::from_millis(5),
            backoff_cap: Duration::from_millis(50),
            enforce_minimums: false,
            notification_retry: Duration::from_millis(5),
            ..SyncConfig::new(sdk_key)
        }
    }

    /// The SDK URL without trailing slashes.
    pub(crate) fn base_url(&self) -> &str {
        self.sdk_url.trim().trim_end_matches('/')
    }

    /// Checks every option.
    ///
    /// # Errors
    /// [`Error::Config`] naming the first option whose value cannot be used. The message never
    /// contains the SDK key.
    pub(crate) fn validate(&self) -> Result<(), Error> {
        let err = |option: &'static str, message: String| Err(Error::Config { option, message });
        let key = self.sdk_key.trim();
        if key.is_empty() {
            return err("sdk_key", "must be a non-empty string".into());
        }
        if !key.bytes().all(|b| b.is_ascii_graphic()) {
            return err(
                "sdk_key",
                "must be printable ASCII without spaces (the key is not shown here)".into(),
            );
        }
        self.validate_url()?;
        if self.enforce_minimums {
            if self.features_refresh_rate < MIN_FEATURES_REFRESH_RATE {
                return err(
                    "features_refresh_rate",
                    format!(
                        "must be at least {MIN_FEATURES_REFRESH_RATE:?}, got {:?}",
                        self.features_refresh_rate
                    ),
                );
            }
            if self.segments_refresh_rate < MIN_SEGMENTS_REFRESH_RATE {
                return err(
                    "segments_refresh_rate",
                    format!(
                        "must be at least {MIN_SEGMENTS_REFRESH_RATE:?}, got {:?}",
                        self.segments_refresh_rate
                    ),
                );
            }
        } else {
            if self.features_refresh_rate.is_zero() {
                return err("features_refresh_rate", "must not be zero".into());
            }
            if self.segments_refresh_rate.is_zero() {
                return err("segments_refresh_rate", "must not be zero".into());
            }
        }
        if self.request_timeout.is_zero() {
            return err("request_timeout", "must not be zero".into());
        }
        if self.max_response_bytes == 0 {
            return err("max_response_bytes", "must be at least 1".into());
        }
        if self.backoff_base.is_zero() {
            return err("backoff_base", "must not be zero".into());
        }
        if self.backoff_cap < self.backoff_base {
            return err(
                "backoff_cap",
                format!(
                    "must be at least backoff_base ({:?}), got {:?}",
                    self.backoff_base, self.backoff_cap
                ),
            );
        }
        if !self.flag_sets_filter.is_empty()
            && sanitize_flag_sets("flag_sets_filter", &self.flag_sets_filter, &mut |_| {})
                .is_empty()
        {
            return err(
                "flag_sets_filter",
                format!("no valid flag set name in {:?}", self.flag_sets_filter),
            );
        }
        for (option, value) in [
            ("machine_ip", &self.machine_ip),
            ("machine_name", &self.machine_name),
        ] {
            if let Some(v) = value
                && !v.bytes().all(|b| b == b' ' || b.is_ascii_graphic())
            {
                return err(
                    option,
                    format!("must be printable ASCII (it is sent as an HTTP header), got {v:?}"),
                );
            }
        }
        Ok(())
    }

    fn validate_url(&self) -> Result<(), Error> {
        let url = self.base_url();
        let invalid = |why: &str| {
            Err(Error::Config {
                option: "sdk_url",
                message: format!("{why}, got {url:?}"),
            })
        };
        let Some(rest) = url
            .strip_prefix("https://")
            .or_else(|| url.strip_prefix("http://"))
        else {
            return invalid("must start with http:// or https://");
        };
        if rest.is_empty() || rest.starts_with('/') {
            return invalid("must name a host");
        }
        if url.contains(['?', '#']) {
            return invalid("must not have a query or fragment");
        }
        if ureq::http::Uri::try_from(url).is_err() {
            return invalid("is not a valid URL");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn option_of(r: Result<(), Error>) -> &'static str {
        match r {
            Err(Error::Config { option, .. }) => option,
            other => panic!("expected a configuration error, got {other:?}"),
        }
    }

    #[test]
    fn defaults_are_valid() {
        let c = SyncConfig::new("key123");
        assert!(c.validate().is_ok());
        assert_eq!(c.sdk_url, "https://sdk.split.io/api");
        assert_eq!(c.features_refresh_rate, Duration::from_secs(60));
        assert_eq!(c.segments_refresh_rate, Duration::from_secs(60));
        assert_eq!(c.max_response_bytes, 128 * 1024 * 1024);
        assert_eq!(c.request_timeout, Duration::from_secs(30));
        assert_eq!(
            (c.backoff_base, c.backoff_cap),
            (Duration::from_secs(1), Duration::from_secs(60))
        );
    }

    #[test]
    fn minimums_are_enforced_and_named() {
        let mut c = SyncConfig::new("key123");
        c.features_refresh_rate = Duration::from_secs(4);
        assert_eq!(option_of(c.validate()), "features_refresh_rate");
        c.features_refresh_rate = MIN_FEATURES_REFRESH_RATE;
        c.segments_refresh_rate = Duration::from_secs(29);
        assert_eq!(option_of(c.validate()), "segments_refresh_rate");
        let mut t = SyncConfig::for_tests("http://127.0.0.1:1/api", "key123");
        assert!(t.validate().is_ok());
        t.segments_refresh_rate = Duration::ZERO;
        assert_eq!(option_of(t.validate()), "segments_refresh_rate");
    }

    #[test]
    fn bad_values_are_named_without_the_key() {
        let mut c = SyncConfig::new("");
        assert_eq!(option_of(c.validate()), "sdk_key");
        c.sdk_key = "sec ret".into();
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("sdk_key") && !e.contains("sec ret"), "{e}");
        c.sdk_key = "k".into();
        for url in [
            "sdk.split.io/api",
            "http://",
            "https:///api",
            "http://h/api?x=1",
        ] {
            c.sdk_url = url.into();
            assert_eq!(option_of(c.validate()), "sdk_url", "{url}");
        }
        c.sdk_url = "http://localhost:8080/api/".into();
        assert!(c.validate().is_ok());
        assert_eq!(c.base_url(), "http://localhost:8080/api");
        c.request_timeout = Duration::ZERO;
        assert_eq!(option_of(c.validate()), "request_timeout");
        c.request_timeout = Duration::from_secs(1);
        c.max_response_bytes = 0;
        assert_eq!(option_of(c.validate()), "max_response_bytes");
        c.max_response_bytes = 1;
        c.backoff_cap = Duration::from_millis(1);
        assert_eq!(option_of(c.validate()), "backoff_cap");
        c.backoff_cap = DEFAULT_BACKOFF_CAP;
        c.flag_sets_filter = vec!["Bad Set!".into()];
        assert_eq!(option_of(c.validate()), "flag_sets_filter");
        c.flag_sets_filter = vec!["Good".into()];
        c.machine_name = Some("host\nname".into());
        assert_eq!(option_of(c.validate()), "machine_name");
        assert!(!format!("{c:?}").contains("\"k\""));
    }
}
