//! Integrations (Segment, outgoing webhook, last-seen traits) driven through a real localhost
//! client, against loopback HTTP servers (tiny_http on 127.0.0.1, in this process) standing
//! in for Segment and the webhook receiver.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use splitkit::integrations::{
    DeliveryOptions, SegmentConfig, SegmentIntegration, TraitsListener, WebhookConfig,
    WebhookIntegration,
};
use splitkit::limits::{SEGMENT_MAX_BATCH_BYTES, SEGMENT_MAX_CALL_BYTES};
use splitkit::{Attributes, Client, Impression, ImpressionListener, Key, SdkMetadata};

use crate::common::{CLOCK_TICK_MS, Collect, now_ms};
use crate::server::{Recorded, Reply, Server};

const WAIT: Duration = Duration::from_secs(5);
const FLAGS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/flags.json");
/// `base64("writekey:")`.
const BASIC: &str = "Basic d3JpdGVrZXk6";

// ---------------------------------------------------------------------------
// Loopback receiver
// ---------------------------------------------------------------------------

/// One request as the receiver saw it: the shared test server's record.
type Received = Recorded;

/// Reading Segment batches out of a recorded request.
trait SegmentBatch {
    /// The calls of a Segment batch.
    fn calls(&self) -> Vec<Value>;
    fn message_ids(&self) -> Vec<String>;
}

impl SegmentBatch for Received {
    fn calls(&self) -> Vec<Value> {
        self.json()["batch"].as_array().cloned().unwrap_or_default()
    }

    fn message_ids(&self) -> Vec<String> {
        self.calls()
            .iter()
            .map(|c| c["messageId"].as_str().unwrap_or_default().to_owned())
            .collect()
    }
}

/// The shared loopback server, answering `status(n)` to the `n`th request (from 0).
struct Loopback {
    base: String,
    server: Server,
}

impl Loopback {
    fn start(mut status: impl FnMut(usize) -> u16 + Send + 'static) -> Loopback {
        let server = Server::start();
        let mut n = 0;
        server.route("/", move |_| {
            let code = status(n);
            n += 1;
            Reply::status(code)
        });
        Loopback {
            base: server.url(""),
            server,
        }
    }

    fn ok() -> Loopback {
        Loopback::start(|_| 200)
    }

    fn requests(&self) -> Vec<Received> {
        self.server.requests()
    }

    /// Waits up to `WAIT` for `n` calls in total (Segment batches or webhook arrays).
    fn wait_for_calls(&self, n: usize, calls: fn(&Received) -> usize) -> Vec<Received> {
        let deadline = Instant::now() + WAIT;
        loop {
            let requests = self.requests();
            if requests.iter().map(calls).sum::<usize>() >= n || Instant::now() > deadline {
                return requests;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }
}

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// Short retry waits, so that retries happen within the test.
fn fast() -> DeliveryOptions {
    DeliveryOptions {
        backoff_base: Duration::from_millis(10),
        backoff_cap: Duration::from_millis(40),
        request_timeout: Duration::from_secs(5),
        ..DeliveryOptions::default()
    }
}

fn segment_config(server: &Loopback) -> SegmentConfig {
    SegmentConfig {
        endpoint: server.base.clone(),
        delivery: fast(),
        ..SegmentConfig::new("writekey")
    }
}

fn client_on(flags: &str, labels: bool, listeners: Vec<Arc<dyn ImpressionListener>>) -> Client {
    let mut builder = Client::builder("localhost")
        .split_file(flags)
        .machine_ip("10.0.0.1")
        .machine_name("web-1")
        .labels_enabled(labels);
    for l in listeners {
        builder = builder.impression_listener(l);
    }
    builder.build().expect("client builds")
}

fn client(listeners: Vec<Arc<dyn ImpressionListener>>) -> Client {
    client_on(FLAGS, true, listeners)
}

/// Three evaluations with known results for two of them.
fn evaluate_three(client: &Client) {
    assert_eq!(client.get_treatment("qa_alice", "new_checkout", None), "on");
    client.get_treatment(Key::new("henry", "account-42"), "new_checkout", None);
    assert_eq!(
        client.get_treatment("carol", "legacy_banner", None),
        "hidden"
    );
}

/// Parses `YYYY-MM-DDTHH:MM:SS.mmmZ` to epoch milliseconds (days_from_civil).
fn parse_iso8601(s: &str) -> i64 {
    assert_eq!(s.len(), 24, "{s}");
    assert!(s.ends_with('Z') && &s[10..11] == "T", "{s}");
    let n = |r: std::ops::Range<usize>| s[r].parse::<i64>().expect("digits");
    let (y, m, d) = (n(0..4), n(5..7), n(8..10));
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    days * 86_400_000 + n(11..13) * 3_600_000 + n(14..16) * 60_000 + n(17..19) * 1000 + n(20..23)
}

#[test]
fn iso8601_parser_of_these_tests_is_right() {
    assert_eq!(parse_iso8601("1970-01-01T00:00:00.000Z"), 0);
    assert_eq!(parse_iso8601("2023-11-14T22:13:20.123Z"), 1_700_000_000_123);
    assert_eq!(parse_iso8601("2000-02-29T23:59:59.999Z"), 951_868_799_999);
}

fn is_uuid(id: &str) -> bool {
    id.len() == 36
        && id.char_indices().all(|(i, c)| {
            if matches!(i, 8 | 13 | 18 | 23) {
                c == '-'
            } else {
                c.is_ascii_hexdigit() && !c.is_ascii_uppercase()
            }
        })
}

/// The `track` call expected for `i`, with the message id it was given and its timestamp
/// (checked separately against the impression's time).
fn expected_track(
    i: &Impression,
    message_id: &str,
    timestamp: &str,
    environment: Option<&str>,
) -> Value {
    let mut properties = json!({
        "split": i.flag(),
        "treatment": i.treatment(),
        "bucketingKey": i.bucketing_key().unwrap_or(i.key()),
    });
    if let Some(l) = i.label() {
        properties["label"] = json!(l);
    }
    if let Some(c) = i.change_number() {
        properties["changeNumber"] = json!(c);
    }
    if let Some(e) = environment {
        properties["environmentName"] = json!(e);
    }
    json!({
        "type": "track",
        "event": "get_treatment",
        "userId": i.key(),
        "messageId": message_id,
        "timestamp": timestamp,
        "properties": properties,
        "context": {"library": {"name": "splitkit", "version": env!("CARGO_PKG_VERSION")}},
    })
}

// ---------------------------------------------------------------------------
// Segment
// ---------------------------------------------------------------------------

#[test]
fn segment_sends_track_calls_with_exact_payload_and_basic_auth() {
    let server = Loopback::ok();
    let segment = Arc::new(
        SegmentIntegration::new(SegmentConfig {
            environment_name: Some("production".into()),
            ..segment_config(&server)
        })
        .expect("valid config"),
    );
    let seen = Arc::new(Collect::default());
    let client = client(vec![segment.clone(), seen.clone()]);
    let before = now_ms();
    evaluate_three(&client);
    assert!(client.flush(WAIT), "listener queue drained");
    assert!(segment.flush(WAIT), "segment queue delivered");

    let requests = server.requests();
    assert_eq!(requests.len(), 1, "one batch");
    let r = &requests[0];
    assert_eq!(r.path, "/v1/batch");
    assert_eq!(r.header("Authorization"), Some(BASIC));
    assert_eq!(r.header("Content-Type"), Some("application/json"));
    assert_eq!(r.header("Content-Encoding"), None);
    assert_eq!(
        r.header("SplitSDKVersion"),
        None,
        "no Split headers to Segment"
    );
    let body = r.json();
    let sent_at = parse_iso8601(body["sentAt"].as_str().expect("sentAt"));
    assert!(sent_at >= before - 1000, "sentAt {sent_at} before {before}");
    assert_eq!(
        body.as_object().map(|o| o.len()),
        Some(2),
        "batch and sentAt only"
    );

    let impressions = seen.take();
    let calls = r.calls();
    assert_eq!(calls.len(), 3);
    assert_eq!(impressions.len(), 3);
    for (call, i) in calls.iter().zip(&impressions) {
        let id = call["messageId"].as_str().expect("messageId");
        assert!(is_uuid(id), "{id}");
        let timestamp = call["timestamp"].as_str().expect("timestamp");
        assert_eq!(parse_iso8601(timestamp), i.time(), "{timestamp}");
        assert_eq!(call, &expected_track(i, id, timestamp, Some("production")));
        assert!(
            i.time() >= before - CLOCK_TICK_MS,
            "{} before {before}",
            i.time()
        );
    }
    // Known values, spelled out.
    assert_eq!(calls[0]["userId"], "qa_alice");
    assert_eq!(
        calls[0]["properties"],
        json!({"split": "new_checkout", "treatment": "on", "label": "whitelisted",
               "changeNumber": 1_700_000_000_000i64, "environmentName": "production",
               "bucketingKey": "qa_alice"})
    );
    assert_eq!(calls[1]["userId"], "henry");
    assert_eq!(calls[1]["properties"]["bucketingKey"], "account-42");
    assert_eq!(
        calls[2]["properties"],
        json!({"split": "legacy_banner", "treatment": "hidden", "label": "killed",
               "changeNumber": 1_700_000_000_002i64, "environmentName": "production",
               "bucketingKey": "carol"})
    );
    let ids: HashSet<String> = r.message_ids().into_iter().collect();
    assert_eq!(ids.len(), 3, "unique message ids");

    let stats = segment.stats();
    assert_eq!((stats.received, stats.delivery.sent), (3, 3));
    assert!(stats.is_balanced(), "{stats:?}");
    client.destroy(WAIT);
}

#[test]
fn labels_disabled_leave_no_label_in_segment_or_webhook() {
    let segment_server = Loopback::ok();
    let hook_server = Loopback::ok();
    let segment = Arc::new(SegmentIntegration::new(segment_config(&segment_server)).expect("ok"));
    let webhook = Arc::new(
        WebhookIntegration::new(WebhookConfig {
            delivery: fast(),
            ..WebhookConfig::new(format!("{}/hook", hook_server.base))
        })
        .expect("ok"),
    );
    let client = client_on(FLAGS, false, vec![segment.clone(), webhook.clone()]);
    evaluate_three(&client);
    assert!(client.flush(WAIT));
    assert!(segment.flush(WAIT) && webhook.flush(WAIT));

    let calls = segment_server.requests()[0].calls();
    assert_eq!(calls.len(), 3);
    for call in &calls {
        let properties = call["properties"].as_object().expect("properties");
        assert!(!properties.contains_key("label"), "{call}");
        assert!(!properties.contains_key("environmentName"), "{call}");
    }
    let objects = hook_server.requests()[0].json();
    for object in objects.as_array().expect("array") {
        assert_eq!(object["label"], Value::Null, "{object}");
    }
    client.destroy(WAIT);
}

/// Integrations that send only when asked: a timed send an hour away.
fn on_demand(
    segment_server: &Loopback,
    hook_server: &Loopback,
) -> (SegmentIntegration, WebhookIntegration) {
    let delivery = DeliveryOptions {
        flush_interval: Duration::from_secs(3600),
        ..fast()
    };
    let segment = SegmentIntegration::new(SegmentConfig {
        delivery: delivery.clone(),
        ..segment_config(segment_server)
    })
    .expect("ok");
    let webhook = WebhookIntegration::new(WebhookConfig {
        delivery,
        ..WebhookConfig::new(format!("{}/hook", hook_server.base))
    })
    .expect("ok");
    (segment, webhook)
}

/// Segment calls and webhook objects the servers have received so far.
fn received(segment_server: &Loopback, hook_server: &Loopback) -> (usize, usize) {
    let calls = segment_server
        .requests()
        .iter()
        .map(|r| r.calls().len())
        .sum();
    let objects = hook_server
        .requests()
        .iter()
        .map(|r| r.json().as_array().map_or(0, Vec::len))
        .sum();
    (calls, objects)
}

#[test]
fn one_client_flush_delivers_what_the_integrations_queued() {
    let (segment_server, hook_server) = (Loopback::ok(), Loopback::ok());
    let (segment, webhook) = on_demand(&segment_server, &hook_server);
    let (segment, webhook) = (Arc::new(segment), Arc::new(webhook));
    let client = client(vec![segment.clone(), webhook.clone()]);
    evaluate_three(&client);
    assert!(
        client.flush(WAIT),
        "one call flushes the client and its integrations"
    );
    // Already delivered when flush returns: no integration flush, no waiting.
    assert_eq!(received(&segment_server, &hook_server), (3, 3));
    assert_eq!(segment.stats().delivery.sent, 3);
    assert_eq!(webhook.stats().delivery.sent, 3);
    client.destroy(WAIT);
}

#[test]
fn destroy_delivers_what_the_integrations_queued_with_no_handle_kept() {
    let (segment_server, hook_server) = (Loopback::ok(), Loopback::ok());
    let (segment, webhook) = on_demand(&segment_server, &hook_server);
    // The client holds the only handles.
    let client = client(vec![Arc::new(segment), Arc::new(webhook)]);
    evaluate_three(&client);
    assert!(client.destroy(WAIT));
    assert_eq!(received(&segment_server, &hook_server), (3, 3));
}

/// A listener whose flush reports what it was given and whether the impressions came first.
#[derive(Default)]
struct FlushProbe {
    seen: Mutex<usize>,
    flushes: Mutex<Vec<(usize, Duration)>>,
}

impl ImpressionListener for FlushProbe {
    fn on_impression(&self, _: &Impression, _: Option<&Attributes>, _: &SdkMetadata) {
        *self.seen.lock().expect("seen") += 1;
    }

    fn flush(&self, timeout: Duration) -> bool {
        let seen = *self.seen.lock().expect("seen");
        self.flushes.lock().expect("flushes").push((seen, timeout));
        true
    }
}

#[test]
fn listener_flush_runs_after_every_impression_within_the_one_deadline() {
    let probe = Arc::new(FlushProbe::default());
    let client = client(vec![probe.clone()]);
    evaluate_three(&client);
    let timeout = Duration::from_secs(3);
    assert!(client.flush(timeout));
    assert!(client.destroy(timeout));
    let flushes = probe.flushes.lock().expect("flushes").clone();
    assert_eq!(
        flushes.len(),
        2,
        "one flush call per client flush and per destroy"
    );
    for (seen, left) in flushes {
        assert_eq!(
            seen, 3,
            "every impression reached on_impression before flush"
        );
        assert!(left <= timeout && left > Duration::ZERO, "{left:?}");
    }
}

/// Flags whose rule labels make big calls: `wide` (~12 KB) and `too_wide` (~40 KB, over
/// Segment's 32 KB limit per call).
fn wide_flags() -> tempfile::NamedTempFile {
    let flag = |name: &str, label: String| {
        json!({
            "name": name, "trafficTypeName": "user", "killed": false,
            "defaultTreatment": "off", "changeNumber": 5, "algo": 2,
            "trafficAllocation": 100, "seed": 7, "status": "ACTIVE",
            "conditions": [{
                "conditionType": "ROLLOUT",
                "matcherGroup": {"combiner": "AND", "matchers": [
                    {"keySelector": null, "matcherType": "ALL_KEYS", "negate": false}]},
                "partitions": [{"treatment": "on", "size": 100}],
                "label": label,
            }],
        })
    };
    let doc = json!({
        "ff": {"d": [flag("wide", "w".repeat(12_000)), flag("too_wide", "x".repeat(40_000))],
               "s": -1, "t": 5},
        "rbs": {"d": [], "s": -1, "t": -1},
    });
    let file = tempfile::Builder::new()
        .suffix(".json")
        .tempfile()
        .expect("temp file");
    std::fs::write(file.path(), doc.to_string()).expect("write flags");
    file
}

#[test]
fn segment_batches_stay_within_500_kb_and_oversized_calls_are_dropped_and_counted() {
    let flags = wide_flags();
    let server = Loopback::ok();
    let segment = Arc::new(SegmentIntegration::new(segment_config(&server)).expect("ok"));
    let flags_path = flags.path().to_str().expect("utf-8 path").to_owned();
    let client = client_on(&flags_path, true, vec![segment.clone()]);
    for n in 0..100 {
        assert_eq!(
            client.get_treatment(format!("user-{n}").as_str(), "wide", None),
            "on"
        );
    }
    assert_eq!(client.get_treatment("user-x", "too_wide", None), "on");
    assert!(client.flush(WAIT));
    assert!(segment.flush(WAIT));

    let requests = server.requests();
    assert!(
        requests.len() >= 3,
        "{} requests for ~1.2 MB",
        requests.len()
    );
    let mut ids = HashSet::new();
    let mut users = Vec::new();
    for (n, r) in requests.iter().enumerate() {
        assert!(
            r.raw.len() <= SEGMENT_MAX_BATCH_BYTES,
            "request {n}: {} bytes",
            r.raw.len()
        );
        if n + 1 < requests.len() {
            // Sent once within one call of the limit: nearly full.
            assert!(
                r.raw.len() > SEGMENT_MAX_BATCH_BYTES - SEGMENT_MAX_CALL_BYTES - 100,
                "request {n} not packed: {} bytes",
                r.raw.len()
            );
        }
        for call in r.calls() {
            assert!(call.to_string().len() <= SEGMENT_MAX_CALL_BYTES);
            assert!(ids.insert(call["messageId"].as_str().unwrap_or("").to_owned()));
            users.push(call["userId"].as_str().unwrap_or("").to_owned());
        }
    }
    let expected: Vec<String> = (0..100).map(|n| format!("user-{n}")).collect();
    assert_eq!(
        users, expected,
        "every call once, in order; the oversized one never"
    );

    let stats = segment.stats();
    assert_eq!(stats.received, 101);
    assert_eq!(stats.dropped_oversized, 1);
    assert_eq!(stats.delivery.sent, 100);
    assert!(stats.is_balanced(), "{stats:?}");
    client.destroy(WAIT);
}

#[test]
fn segment_retry_after_500_resends_the_same_message_ids_and_loses_nothing() {
    let server = Loopback::start(|n| if n == 0 { 500 } else { 200 });
    let segment = Arc::new(SegmentIntegration::new(segment_config(&server)).expect("ok"));
    let client = client(vec![segment.clone()]);
    for n in 0..5 {
        client.get_treatment(format!("u{n}").as_str(), "new_checkout", None);
    }
    assert!(client.flush(WAIT));
    assert!(segment.flush(WAIT), "delivered after the retry");

    let requests = server.requests();
    assert_eq!(requests.len(), 2, "one failure, one retry");
    let (failed, retried) = (requests[0].message_ids(), requests[1].message_ids());
    assert_eq!(failed.len(), 5);
    assert_eq!(failed, retried, "a retried batch reuses its message ids");
    assert_eq!(
        requests[0].calls(),
        requests[1].calls(),
        "same calls resent"
    );
    let delivered: HashSet<&String> = retried.iter().collect();
    assert_eq!(delivered.len(), 5, "no duplicate message ids delivered");

    let stats = segment.stats();
    assert_eq!(stats.delivery.sent, 5);
    assert_eq!(stats.delivery.failed_attempts, 1);
    assert_eq!(stats.delivery.requests, 2);
    assert_eq!(stats.delivery.dropped(), 0);
    assert!(stats.is_balanced(), "{stats:?}");
    client.destroy(WAIT);
}

#[test]
fn segment_drop_delivers_what_is_queued() {
    let server = Loopback::ok();
    let segment = Arc::new(
        SegmentIntegration::new(SegmentConfig {
            delivery: DeliveryOptions {
                flush_interval: Duration::from_secs(3600),
                ..fast()
            },
            ..segment_config(&server)
        })
        .expect("ok"),
    );
    // Impressions from a client, handed to an integration that no client flushes.
    let seen = Arc::new(Collect::default());
    let client = client(vec![seen.clone()]);
    for n in 0..20 {
        client.get_treatment(format!("u{n}").as_str(), "new_checkout", None);
    }
    assert!(client.destroy(WAIT));
    let metadata = client.metadata().clone();
    for i in seen.take() {
        segment.on_impression(&i, None, &metadata);
    }
    assert!(server.requests().is_empty(), "nothing sent before shutdown");
    assert_eq!(Arc::strong_count(&segment), 1);
    drop(segment); // shuts the worker down, delivering its queue
    let calls: usize = server.requests().iter().map(|r| r.calls().len()).sum();
    assert_eq!(calls, 20);
}

#[test]
fn segment_config_is_validated() {
    let cases = [
        (SegmentConfig::new(""), "SegmentConfig::write_key"),
        (
            SegmentConfig {
                endpoint: "api.segment.io".into(),
                ..SegmentConfig::new("k")
            },
            "SegmentConfig::endpoint",
        ),
        (
            SegmentConfig {
                endpoint: "http://127.0.0.1:9".into(),
                delivery: DeliveryOptions {
                    queue_capacity: 0,
                    ..DeliveryOptions::default()
                },
                ..SegmentConfig::new("k")
            },
            "SegmentConfig::delivery",
        ),
    ];
    for (config, option) in cases {
        match SegmentIntegration::new(config) {
            Err(splitkit::Error::Config { option: o, .. }) => assert_eq!(o, option),
            other => panic!("expected an error naming {option}, got {other:?}"),
        }
    }
    assert_eq!(SegmentConfig::new("k").endpoint, "https://api.segment.io");
}

// ---------------------------------------------------------------------------
// Webhook
// ---------------------------------------------------------------------------

#[test]
fn webhook_posts_gzipped_arrays_in_splits_schema() {
    let server = Loopback::ok();
    let webhook = Arc::new(
        WebhookIntegration::new(WebhookConfig {
            environment_id: Some("env-1".into()),
            environment_name: Some("production".into()),
            headers: vec![("X-Hook-Token".into(), "s3cret".into())],
            delivery: fast(),
            ..WebhookConfig::new(format!("{}/hooks/split?source=splitkit", server.base))
        })
        .expect("valid config"),
    );
    let seen = Arc::new(Collect::default());
    let client = client(vec![webhook.clone(), seen.clone()]);
    evaluate_three(&client);
    assert!(client.flush(WAIT));
    assert!(webhook.flush(WAIT));

    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    let r = &requests[0];
    assert_eq!(
        format!("{}?{}", r.path, r.query),
        "/hooks/split?source=splitkit",
        "URL used as given"
    );
    assert_eq!(r.header("X-Hook-Token"), Some("s3cret"));
    assert_eq!(r.header("Authorization"), None);
    assert_eq!(r.header("Content-Type"), Some("application/json"));
    if cfg!(feature = "gzip") {
        assert_eq!(r.header("Content-Encoding"), Some("gzip"));
        assert_eq!(&r.raw[..2], &[0x1f, 0x8b], "gzip magic");
    }
    let expected: Vec<Value> = seen
        .take()
        .iter()
        .map(|i| {
            json!({
                "key": i.key(),
                "split": i.flag(),
                "environmentId": "env-1",
                "environmentName": "production",
                "treatment": i.treatment(),
                "time": i.time(),
                "bucketingKey": i.bucketing_key().unwrap_or(i.key()),
                "label": i.label(),
                "machineName": "web-1",
                "machineIp": "10.0.0.1",
                "splitVersionNumber": i.change_number(),
                "sdk": "rust",
                "sdkVersion": env!("CARGO_PKG_VERSION"),
            })
        })
        .collect();
    assert_eq!(expected.len(), 3);
    assert_eq!(r.json(), Value::Array(expected));
    let first = &r.json()[0];
    assert_eq!(
        (&first["key"], &first["label"], &first["splitVersionNumber"]),
        (
            &json!("qa_alice"),
            &json!("whitelisted"),
            &json!(1_700_000_000_000i64)
        )
    );
    assert_eq!(r.json()[1]["bucketingKey"], "account-42");
    let stats = webhook.stats();
    assert_eq!((stats.received, stats.delivery.sent), (3, 3));
    assert!(stats.is_balanced());
    client.destroy(WAIT);
}

#[test]
fn webhook_without_gzip_sends_plain_json() {
    let server = Loopback::ok();
    let webhook = Arc::new(
        WebhookIntegration::new(WebhookConfig {
            gzip: false,
            delivery: fast(),
            ..WebhookConfig::new(format!("{}/", server.base))
        })
        .expect("ok"),
    );
    let client = client(vec![webhook.clone()]);
    evaluate_three(&client);
    assert!(client.flush(WAIT) && webhook.flush(WAIT));
    let r = &server.requests()[0];
    assert_eq!(r.path, "/");
    assert_eq!(r.header("Content-Encoding"), None);
    assert_eq!(r.raw, r.body);
    let objects = r.json();
    assert_eq!(objects.as_array().map(Vec::len), Some(3));
    assert_eq!(objects[0]["environmentId"], Value::Null);
    client.destroy(WAIT);
}

#[test]
fn webhook_retries_until_accepted_and_drop_delivers() {
    let server = Loopback::start(|n| if n == 0 { 503 } else { 200 });
    let webhook = Arc::new(
        WebhookIntegration::new(WebhookConfig {
            delivery: DeliveryOptions {
                flush_interval: Duration::from_secs(3600),
                ..fast()
            },
            ..WebhookConfig::new(format!("{}/hook", server.base))
        })
        .expect("ok"),
    );
    let client = client(vec![webhook.clone()]);
    for n in 0..4 {
        client.get_treatment(format!("u{n}").as_str(), "new_checkout", None);
    }
    assert!(client.flush(WAIT));
    assert!(webhook.flush(WAIT));
    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[0].body, requests[1].body, "the same batch resent");
    assert_eq!(webhook.stats().delivery.sent, 4);

    // Queued, then the only handle goes away with the client: delivered on shutdown.
    for n in 4..10 {
        client.get_treatment(format!("u{n}").as_str(), "new_checkout", None);
    }
    drop(webhook);
    drop(client);
    let count = |r: &Received| r.json().as_array().map_or(0, Vec::len);
    let requests = server.wait_for_calls(10, count);
    let keys: Vec<Value> = requests[1..]
        .iter()
        .flat_map(|r| r.json().as_array().cloned().unwrap_or_default())
        .map(|o| o["key"].clone())
        .collect();
    let expected: Vec<Value> = (0..10).map(|n| json!(format!("u{n}"))).collect();
    assert_eq!(keys, expected);
}

#[test]
fn webhook_config_is_validated() {
    for (config, option) in [
        (
            WebhookConfig::new("hooks.example.com/x"),
            "WebhookConfig::url",
        ),
        (WebhookConfig::default(), "WebhookConfig::url"),
        (
            WebhookConfig {
                headers: vec![("Content-Encoding".into(), "br".into())],
                ..WebhookConfig::new("http://127.0.0.1:9/x")
            },
            "WebhookConfig::headers",
        ),
    ] {
        match WebhookIntegration::new(config) {
            Err(splitkit::Error::Config { option: o, .. }) => assert_eq!(o, option),
            other => panic!("expected an error naming {option}, got {other:?}"),
        }
    }
}

// ---------------------------------------------------------------------------
// Last-seen traits
// ---------------------------------------------------------------------------

#[test]
fn traits_hold_the_last_treatment_per_flag_and_identify_changes() {
    let server = Loopback::ok();
    let traits =
        Arc::new(TraitsListener::new(100, Some(segment_config(&server))).expect("valid config"));
    let seen = Arc::new(Collect::default());
    let client = client(vec![traits.clone(), seen.clone()]);
    client.get_treatment("qa_alice", "new_checkout", None);
    client.get_treatment("qa_alice", "new_checkout", None); // unchanged: no identify
    client.get_treatment("qa_alice", "legacy_banner", None);
    client.get_treatment("qa_bob", "new_checkout", None);
    assert!(client.flush(WAIT));
    assert!(traits.flush(WAIT));

    assert_eq!(
        traits.traits("qa_alice"),
        BTreeMap::from([
            ("legacy_banner".to_string(), "hidden".to_string()),
            ("new_checkout".to_string(), "on".to_string()),
        ])
    );
    assert_eq!(traits.traits("qa_bob")["new_checkout"], "on");
    assert!(traits.traits("nobody").is_empty());
    let impressions = seen.take();
    let last = traits.last_seen("qa_alice");
    assert_eq!(last["new_checkout"].time, impressions[1].time());
    assert_eq!(last["legacy_banner"].time, impressions[2].time());

    let requests = server.requests();
    assert!(
        requests
            .iter()
            .all(|r| r.header("Authorization") == Some(BASIC))
    );
    let calls: Vec<Value> = requests.iter().flat_map(Received::calls).collect();
    let summary: Vec<(Value, Value)> = calls
        .iter()
        .map(|c| (c["userId"].clone(), c["traits"].clone()))
        .collect();
    assert_eq!(
        summary,
        vec![
            (json!("qa_alice"), json!({"new_checkout": "on"})),
            (json!("qa_alice"), json!({"legacy_banner": "hidden"})),
            (json!("qa_bob"), json!({"new_checkout": "on"})),
        ]
    );
    for (call, i) in calls
        .iter()
        .zip([&impressions[0], &impressions[2], &impressions[3]])
    {
        assert_eq!(call["type"], "identify");
        assert_eq!(
            parse_iso8601(call["timestamp"].as_str().unwrap_or("")),
            i.time()
        );
        assert!(is_uuid(call["messageId"].as_str().unwrap_or("")));
    }
    let stats = traits.stats();
    assert_eq!((stats.impressions, stats.keys, stats.evicted), (4, 2, 0));
    let identify = stats.identify.expect("pushing to Segment");
    assert_eq!(identify.delivery.sent, 3);
    assert!(identify.is_balanced());
    client.destroy(WAIT);
}

#[test]
fn traits_memory_is_bounded_least_recently_seen_keys_evicted() {
    let traits = Arc::new(TraitsListener::new(3, None).expect("ok"));
    let client = client(vec![traits.clone()]);
    for user in ["u0", "u1", "u2"] {
        client.get_treatment(user, "new_checkout", None);
    }
    client.get_treatment("u0", "legacy_banner", None); // u0 seen again: most recent
    client.get_treatment("u3", "new_checkout", None); // evicts u1, the least recent
    assert!(client.flush(WAIT));
    assert_eq!(traits.keys(), vec!["u3", "u0", "u2"]);
    assert!(traits.traits("u1").is_empty());
    assert_eq!(traits.traits("u0").len(), 2);

    for n in 0..200 {
        client.get_treatment(format!("k{n}").as_str(), "new_checkout", None);
    }
    assert!(client.flush(WAIT));
    assert_eq!(traits.len(), 3);
    assert_eq!(traits.keys(), vec!["k199", "k198", "k197"]);
    let stats = traits.stats();
    assert_eq!(
        (stats.keys, stats.evicted, stats.impressions),
        (3, 201, 205)
    );
    assert!(stats.identify.is_none());
    assert!(traits.flush(WAIT), "nothing to deliver without Segment");
    client.destroy(WAIT);
}
