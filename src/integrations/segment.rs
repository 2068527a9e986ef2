//! Impressions to Segment's HTTP Tracking API, as `track` calls named `get_treatment`.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::{
    ArrayBatcher, DeliveryOptions, Encoded, IntegrationStats, MessageIds, base64, config_error,
    iso8601, should_warn, start_worker,
};
use crate::delivery::{Endpoint, HttpConfig, HttpTransport, Worker};
use crate::engine::attributes::Attributes;
use crate::error::Error;
use crate::impressions::{
    Impression, ImpressionListener, SdkMetadata, now_ms, write_int, write_json_str,
};

/// Segment's API host: `https://api.segment.io`.
pub const DEFAULT_SEGMENT_ENDPOINT: &str = "https://api.segment.io";

/// Largest call Segment accepts: 32 KB (counted as 32,000 bytes of JSON, the stricter
/// reading). Larger calls are dropped before queueing and counted in
/// [`IntegrationStats::dropped_oversized`].
pub const SEGMENT_MAX_CALL_BYTES: usize = 32_000;

/// Largest `/v1/batch` request Segment accepts: 500 KB (counted as 500,000 bytes of JSON).
/// Batches are cut so that no request body is larger.
pub const SEGMENT_MAX_BATCH_BYTES: usize = 500_000;

/// `{"batch":[` + `],"sentAt":"<24 characters>"}`, with room to spare.
const ENVELOPE_BYTES: usize = 64;

/// The library named in each call's `context`.
const LIBRARY: &str = concat!(
    r#""context":{"library":{"name":"splitkit","version":""#,
    env!("CARGO_PKG_VERSION"),
    r#""}}"#
);

/// Settings of a [`SegmentIntegration`].
///
/// # Examples
/// ```
/// use splitkit::integrations::SegmentConfig;
///
/// let config = SegmentConfig {
///     environment_name: Some("production".into()),
///     ..SegmentConfig::new("WRITE_KEY")
/// };
/// assert_eq!(config.endpoint, "https://api.segment.io");
/// ```
#[derive(Clone)]
pub struct SegmentConfig {
    /// The source's write key, sent as the HTTP Basic username (empty password). Required.
    pub write_key: String,
    /// Base URL of the Tracking API; calls go to `<endpoint>/v1/batch`.
    /// Default: [`DEFAULT_SEGMENT_ENDPOINT`].
    pub endpoint: String,
    /// Sent as the `environmentName` property of each `track` call. Default: none (not sent).
    pub environment_name: Option<String>,
    /// Queue, batching, retries and shutdown.
    pub delivery: DeliveryOptions,
}

impl SegmentConfig {
    /// A configuration for `write_key` with every default.
    pub fn new(write_key: impl Into<String>) -> Self {
        SegmentConfig {
            write_key: write_key.into(),
            ..SegmentConfig::default()
        }
    }
}

impl Default for SegmentConfig {
    /// No write key (invalid until one is set), the default endpoint and delivery.
    fn default() -> Self {
        SegmentConfig {
            write_key: String::new(),
            endpoint: DEFAULT_SEGMENT_ENDPOINT.to_owned(),
            environment_name: None,
            delivery: DeliveryOptions::default(),
        }
    }
}

impl fmt::Debug for SegmentConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SegmentConfig")
            .field("write_key", &"<redacted>")
            .field("endpoint", &self.endpoint)
            .field("environment_name", &self.environment_name)
            .field("delivery", &self.delivery)
            .finish()
    }
}

/// Longest environment name accepted, so that every call stays far below the call limit.
const MAX_ENVIRONMENT_NAME: usize = 1024;

/// The Segment queue shared by `track` (impressions) and `identify` (traits) calls.
pub(super) struct SegmentSink {
    worker: Worker<Encoded>,
    ids: MessageIds,
    received: AtomicU64,
    oversized: AtomicU64,
}

impl SegmentSink {
    /// Validates `config` and starts the worker (thread `splitkit-<role>`).
    pub(super) fn start(config: &SegmentConfig, role: &str) -> Result<SegmentSink, Error> {
        if config.write_key.is_empty() {
            return Err(Error::Config {
                option: "SegmentConfig::write_key",
                message: "must not be empty".into(),
            });
        }
        if let Some(name) = &config.environment_name
            && name.len() > MAX_ENVIRONMENT_NAME
        {
            return Err(Error::Config {
                option: "SegmentConfig::environment_name",
                message: format!(
                    "must be at most {MAX_ENVIRONMENT_NAME} bytes, got {}",
                    name.len()
                ),
            });
        }
        let credentials = base64(format!("{}:", config.write_key).as_bytes());
        let http = config
            .delivery
            .http(HttpConfig::builder(config.endpoint.as_str(), ""))
            .authorization(format!("Basic {credentials}"))
            .sdk_headers(false)
            .build()
            .map_err(|e| config_error("SegmentConfig::endpoint", e))?;
        let worker = start_worker(
            config.delivery.worker_config(
                role,
                SEGMENT_MAX_BATCH_BYTES - ENVELOPE_BYTES,
                SEGMENT_MAX_CALL_BYTES,
                "SegmentConfig::delivery",
            )?,
            ArrayBatcher {
                open: br#"{"batch":["#,
                close: close_batch,
            },
            HttpTransport::new(http),
            Endpoint::new("/v1/batch"),
        )?;
        Ok(SegmentSink {
            worker,
            ids: MessageIds::new(),
            received: AtomicU64::new(0),
            oversized: AtomicU64::new(0),
        })
    }

    /// Queues one encoded call, unless it is over the call limit. Never blocks.
    fn push(&self, call: Vec<u8>, kind: &str, user_id: &str) -> bool {
        self.received.fetch_add(1, Ordering::Relaxed);
        if call.len() > SEGMENT_MAX_CALL_BYTES {
            let n = self.oversized.fetch_add(1, Ordering::Relaxed) + 1;
            if should_warn(n) {
                log::warn!(
                    "segment: dropping a {kind} call for user {:?} of {} bytes, over Segment's limit of {SEGMENT_MAX_CALL_BYTES} ({n} dropped so far)",
                    truncated(user_id),
                    call.len()
                );
            }
            return false;
        }
        self.worker.push(call.into_boxed_slice())
    }

    /// Queues a `track` call for `impression`.
    fn track(&self, impression: &Impression, environment_name: Option<&str>) -> bool {
        let call = encode_track(impression, environment_name, &self.ids.next());
        self.push(call, "track", impression.key())
    }

    /// Queues an `identify` call setting `traits` on `user_id`.
    pub(super) fn identify(&self, user_id: &str, traits: &[(&str, &str)], time: i64) -> bool {
        let call = encode_identify(user_id, traits, time, &self.ids.next());
        self.push(call, "identify", user_id)
    }

    pub(super) fn flush(&self, timeout: Duration) -> bool {
        self.worker.flush(timeout)
    }

    pub(super) fn shutdown(&self, timeout: Duration) -> bool {
        self.worker.shutdown(timeout)
    }

    pub(super) fn stats(&self) -> IntegrationStats {
        // The worker's counters last: a call counted in `received` reaches them after.
        let oversized = self.oversized.load(Ordering::Relaxed);
        let received = self.received.load(Ordering::Relaxed);
        IntegrationStats {
            received,
            dropped_oversized: oversized,
            delivery: self.worker.stats(),
        }
    }
}

/// A `track` call named `get_treatment` for `impression`.
fn encode_track(
    impression: &Impression,
    environment_name: Option<&str>,
    message_id: &str,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(400 + impression.key().len() * 2);
    out.extend_from_slice(br#"{"type":"track","event":"get_treatment","userId":"#);
    write_json_str(&mut out, impression.key());
    header_fields(&mut out, message_id, impression.time());
    out.extend_from_slice(br#","properties":{"split":"#);
    write_json_str(&mut out, impression.flag());
    out.extend_from_slice(br#","treatment":"#);
    write_json_str(&mut out, impression.treatment());
    if let Some(label) = impression.label() {
        out.extend_from_slice(br#","label":"#);
        write_json_str(&mut out, label);
    }
    if let Some(change_number) = impression.change_number() {
        out.extend_from_slice(br#","changeNumber":"#);
        write_int(&mut out, change_number);
    }
    if let Some(name) = environment_name {
        out.extend_from_slice(br#","environmentName":"#);
        write_json_str(&mut out, name);
    }
    out.extend_from_slice(br#","bucketingKey":"#);
    write_json_str(
        &mut out,
        impression.bucketing_key().unwrap_or(impression.key()),
    );
    if let Some(properties) = impression.properties() {
        // A JSON object's text, checked and written by splitkit: embedded as the object.
        out.extend_from_slice(br#","impressionProperties":"#);
        out.extend_from_slice(properties.as_bytes());
    }
    out.extend_from_slice(b"},");
    out.extend_from_slice(LIBRARY.as_bytes());
    out.push(b'}');
    out
}

/// An `identify` call setting `traits` on `user_id`.
fn encode_identify(user_id: &str, traits: &[(&str, &str)], time: i64, message_id: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(
        256 + user_id.len()
            + traits
                .iter()
                .map(|(k, v)| k.len() + v.len() + 6)
                .sum::<usize>(),
    );
    out.extend_from_slice(br#"{"type":"identify","userId":"#);
    write_json_str(&mut out, user_id);
    header_fields(&mut out, message_id, time);
    out.extend_from_slice(br#","traits":{"#);
    for (n, (name, value)) in traits.iter().enumerate() {
        if n > 0 {
            out.push(b',');
        }
        write_json_str(&mut out, name);
        out.push(b':');
        write_json_str(&mut out, value);
    }
    out.extend_from_slice(b"},");
    out.extend_from_slice(LIBRARY.as_bytes());
    out.push(b'}');
    out
}

/// `,"messageId":…,"timestamp":…`.
fn header_fields(out: &mut Vec<u8>, message_id: &str, time: i64) {
    out.extend_from_slice(br#","messageId":"#);
    write_json_str(out, message_id);
    out.extend_from_slice(br#","timestamp":""#);
    out.extend_from_slice(iso8601(time).as_bytes());
    out.push(b'"');
}

/// Ends a batch with the time of this attempt (`sentAt`, which Segment uses to correct
/// client clock skew).
fn close_batch(out: &mut Vec<u8>) {
    out.extend_from_slice(br#"],"sentAt":""#);
    out.extend_from_slice(iso8601(now_ms()).as_bytes());
    out.extend_from_slice(b"\"}");
}

/// At most 64 characters of `s`, for log lines.
fn truncated(s: &str) -> &str {
    s.char_indices().nth(64).map_or(s, |(i, _)| &s[..i])
}

/// Sends every impression to Segment as a `track` call named `get_treatment`.
///
/// Each call has `userId` = the matching key, the impression time as `timestamp`
/// (ISO-8601), a unique `messageId`, and the properties `split`, `treatment`, `label` (absent
/// when labels are disabled), `changeNumber` (absent when unknown), `environmentName` (when
/// configured), `bucketingKey` (the bucketing key, or the matching key when none was
/// given: the key that was hashed) and `impressionProperties` (the evaluation's
/// [impression properties](crate::EvaluationOptions::properties) as an object, when given).
///
/// Calls are batched to `<endpoint>/v1/batch` as `{"batch":[…],"sentAt":…}` with the write
/// key as HTTP Basic username and an empty password, on a worker thread of the integration's
/// own. Requests stay within [`SEGMENT_MAX_BATCH_BYTES`]; a call larger than
/// [`SEGMENT_MAX_CALL_BYTES`] is dropped and counted, never truncated (a truncated call
/// would misreport the impression).
///
/// The `messageId` is generated once per call and is part of the queued call, so a batch
/// that is retried resends the same ids and Segment's deduplication keeps a retry from
/// counting twice.
///
/// See the [module documentation](crate::integrations) for flushing and shutdown.
///
/// # Examples
/// ```no_run
/// use std::sync::Arc;
/// use std::time::Duration;
/// use splitkit::Client;
/// use splitkit::integrations::{SegmentConfig, SegmentIntegration};
///
/// let segment = Arc::new(SegmentIntegration::new(SegmentConfig {
///     environment_name: Some("production".into()),
///     ..SegmentConfig::new("WRITE_KEY")
/// })?);
/// let client = Client::builder("localhost")
///     .split_file("examples/flags.json")
///     .impression_listener(segment.clone())
///     .build()?;
/// client.get_treatment("qa_alice", "new_checkout", None);
/// // The listener has queued the call, and the call is delivered to Segment.
/// client.flush(Duration::from_secs(5));
/// # Ok::<(), splitkit::Error>(())
/// ```
pub struct SegmentIntegration {
    sink: SegmentSink,
    environment_name: Option<String>,
}

impl fmt::Debug for SegmentIntegration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SegmentIntegration")
            .field("environment_name", &self.environment_name)
            .finish_non_exhaustive()
    }
}

impl SegmentIntegration {
    /// Validates `config` and starts the worker (thread `splitkit-segment`).
    ///
    /// # Errors
    /// [`Error::Config`] naming the field when the write key is empty, the endpoint is not an
    /// absolute `http`/`https` URL, the environment name is longer than 1024 bytes or a
    /// delivery option is out of range; [`Error::Io`] when the thread cannot be started.
    ///
    /// # Examples
    /// ```
    /// use splitkit::Error;
    /// use splitkit::integrations::{SegmentConfig, SegmentIntegration};
    ///
    /// let err = SegmentIntegration::new(SegmentConfig::new("")).unwrap_err();
    /// assert!(matches!(err, Error::Config { option: "SegmentConfig::write_key", .. }));
    /// ```
    pub fn new(config: SegmentConfig) -> Result<SegmentIntegration, Error> {
        let sink = SegmentSink::start(&config, "segment")?;
        Ok(SegmentIntegration {
            sink,
            environment_name: config.environment_name,
        })
    }

    /// Queues an `identify` call that sets `traits` (name, value) on `user_id`, timestamped
    /// `time` (epoch milliseconds). Never blocks; returns false when the call was dropped
    /// (queue full, over the call limit, or shut down), which is counted.
    ///
    /// # Examples
    /// ```no_run
    /// # let segment = splitkit::integrations::SegmentIntegration::new(splitkit::integrations::SegmentConfig::new("KEY"))?;
    /// segment.identify("user-1", &[("new_checkout", "on")], 1_700_000_000_000);
    /// # Ok::<(), splitkit::Error>(())
    /// ```
    pub fn identify(&self, user_id: &str, traits: &[(&str, &str)], time: i64) -> bool {
        self.sink.identify(user_id, traits, time)
    }

    /// Waits until every call queued before this one is delivered or dropped and counted;
    /// false if that took longer than `timeout`. Does not wait for the client's listener
    /// queue: call [`Client::flush`](crate::Client::flush) first to have every impression
    /// recorded so far reach this integration.
    pub fn flush(&self, timeout: Duration) -> bool {
        self.sink.flush(timeout)
    }

    /// Stops accepting calls, delivers what is queued and stops the worker within
    /// `timeout`; true when it stopped in time. Idempotent. Dropping the integration does
    /// the same with [`DeliveryOptions::shutdown_timeout`].
    pub fn shutdown(&self, timeout: Duration) -> bool {
        self.sink.shutdown(timeout)
    }

    /// The delivery counters.
    pub fn stats(&self) -> IntegrationStats {
        self.sink.stats()
    }
}

impl ImpressionListener for SegmentIntegration {
    fn on_impression(&self, impression: &Impression, _: Option<&Attributes>, _: &SdkMetadata) {
        self.sink
            .track(impression, self.environment_name.as_deref());
    }

    fn flush(&self, timeout: Duration) -> bool {
        SegmentIntegration::flush(self, timeout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::impressions::ImpressionFields;

    fn config() -> SegmentConfig {
        SegmentConfig {
            endpoint: "http://127.0.0.1:9".into(),
            ..SegmentConfig::new("wk")
        }
    }

    fn json(bytes: &[u8]) -> serde_json::Value {
        serde_json::from_slice(bytes)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(bytes)))
    }

    #[test]
    fn track_call_has_every_field() {
        let i = Impression::new(ImpressionFields {
            key: "k\"1",
            bucketing_key: Some("acct"),
            flag: "f",
            treatment: "on",
            label: Some("rule"),
            change_number: Some(7),
            time: 1_700_000_000_123,
            disabled: false,
            properties: None,
        });
        assert_eq!(
            json(&encode_track(&i, Some("prod"), "id-1")),
            serde_json::json!({
                "type": "track", "event": "get_treatment", "userId": "k\"1", "messageId": "id-1",
                "timestamp": "2023-11-14T22:13:20.123Z",
                "properties": {"split": "f", "treatment": "on", "label": "rule", "changeNumber": 7,
                               "environmentName": "prod", "bucketingKey": "acct"},
                "context": {"library": {"name": "splitkit", "version": env!("CARGO_PKG_VERSION")}}
            })
        );
        let bare = Impression::new(ImpressionFields {
            key: "k",
            bucketing_key: None,
            flag: "f",
            treatment: "off",
            label: None,
            change_number: None,
            time: 0,
            disabled: false,
            properties: None,
        });
        let v = json(&encode_track(&bare, None, "id-2"));
        assert_eq!(
            v["properties"],
            serde_json::json!({"split": "f", "treatment": "off", "bucketingKey": "k"})
        );
        let with = Impression::new(ImpressionFields {
            properties: Some(r#"{"page":"cart","n":2}"#),
            ..fields_of(&bare)
        });
        let v = json(&encode_track(&with, None, "id-3"));
        assert_eq!(
            v["properties"]["impressionProperties"],
            serde_json::json!({"page": "cart", "n": 2})
        );
    }

    fn fields_of(i: &Impression) -> ImpressionFields<'_> {
        ImpressionFields {
            key: i.key(),
            bucketing_key: i.bucketing_key(),
            flag: i.flag(),
            treatment: i.treatment(),
            label: i.label(),
            change_number: i.change_number(),
            time: i.time(),
            disabled: i.impressions_disabled(),
            properties: i.properties(),
        }
    }

    #[test]
    fn identify_call_names_traits_after_flags() {
        let v = json(&encode_identify(
            "u",
            &[("f1", "on"), ("f\n2", "off")],
            0,
            "id",
        ));
        assert_eq!(v["type"], "identify");
        assert_eq!(v["userId"], "u");
        assert_eq!(v["timestamp"], "1970-01-01T00:00:00.000Z");
        assert_eq!(v["traits"], serde_json::json!({"f1": "on", "f\n2": "off"}));
    }

    #[test]
    fn config_is_validated_and_redacted() {
        assert!(matches!(
            SegmentSink::start(
                &SegmentConfig {
                    endpoint: "api.segment.io".into(),
                    ..config()
                },
                "x"
            ),
            Err(Error::Config {
                option: "SegmentConfig::endpoint",
                ..
            })
        ));
        assert!(matches!(
            SegmentSink::start(
                &SegmentConfig {
                    environment_name: Some("e".repeat(2000)),
                    ..config()
                },
                "x"
            ),
            Err(Error::Config {
                option: "SegmentConfig::environment_name",
                ..
            })
        ));
        let mut bad_delivery = config();
        bad_delivery.delivery.queue_capacity = 0;
        assert!(matches!(
            SegmentSink::start(&bad_delivery, "x"),
            Err(Error::Config {
                option: "SegmentConfig::delivery",
                ..
            })
        ));
        assert!(!format!("{:?}", SegmentConfig::new("secret-wk")).contains("secret-wk"));
    }

    #[test]
    fn truncation_for_logs_respects_char_boundaries() {
        let long = "é".repeat(100);
        assert_eq!(truncated(&long).chars().count(), 64);
        assert_eq!(truncated("short"), "short");
    }
}
