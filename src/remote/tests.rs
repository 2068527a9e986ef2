//! Tests of remote synchronization against a scripted HTTP server on 127.0.0.1.

use std::collections::{HashMap, VecDeque};
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::*;
use crate::engine::attributes::Attributes;
use crate::error::Error;
use crate::storage::Store;

// ---------------------------------------------------------------------------------------------
// Log capture: every warning and error of the crate, to check messages (and that the SDK key
// never appears in them).

fn install_logger() {
    crate::test_logs::install();
}

/// Captured log lines that contain `needle`.
fn logs_with(needle: &str) -> Vec<String> {
    crate::test_logs::lines("", &[needle])
}

/// Every test's SDK key contains this; no log line may.
const SECRET: &str = "S3CRET";

fn key(test: &str) -> String {
    format!("{SECRET}-{test}")
}

fn assert_no_key_logged() {
    assert!(
        logs_with(SECRET).is_empty(),
        "the SDK key was logged: {:?}",
        logs_with(SECRET)
    );
}

// ---------------------------------------------------------------------------------------------
// A scripted fake of the SDK API.

#[derive(Debug, Clone)]
enum Fault {
    Status(u16, Option<&'static str>),
    Body(String),
    /// These bytes, sent as they are with `Content-Encoding: gzip`.
    Gzipped(Arc<Vec<u8>>),
    Hang,
}

/// One change of a segment: (change number, keys added, keys removed).
type SegmentChange = (i64, Vec<String>, Vec<String>);

#[derive(Debug, Default)]
struct Backend {
    /// Flag definitions by change number, in push order.
    flags: Vec<(i64, Value)>,
    rule_based: Vec<(i64, Value)>,
    /// Segment changes: (change number, added, removed).
    segments: HashMap<String, Vec<SegmentChange>>,
    /// Most definitions (or segment changes) per page; 0 for no limit.
    page_size: usize,
    /// One-shot faults for requests whose path starts with the prefix.
    faults: VecDeque<(&'static str, Fault)>,
    /// A fault for every request whose path starts with the prefix, while set.
    sticky: Option<(&'static str, Fault)>,
    gzip: bool,
    /// Change numbers that never converge: every page answers `till = since + 1`.
    diverge: bool,
}

impl Backend {
    fn push_flag(&mut self, def: Value) {
        let cn = def["changeNumber"].as_i64().unwrap_or(0);
        self.flags.push((cn, def));
    }

    fn push_rule_based(&mut self, def: Value) {
        let cn = def["changeNumber"].as_i64().unwrap_or(0);
        self.rule_based.push((cn, def));
    }

    fn push_segment(&mut self, name: &str, cn: i64, added: &[&str], removed: &[&str]) {
        let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect();
        self.segments.entry(name.to_string()).or_default().push((
            cn,
            strings(added),
            strings(removed),
        ));
    }

    fn page(&self, items: &[(i64, Value)], since: i64) -> Value {
        let mut newer: Vec<&(i64, Value)> = items.iter().filter(|(cn, _)| *cn > since).collect();
        newer.sort_by_key(|(cn, _)| *cn);
        if self.page_size > 0 {
            newer.truncate(self.page_size);
        }
        let till = newer.last().map_or(since, |(cn, _)| *cn);
        let d: Vec<Value> = newer.into_iter().map(|(_, v)| v.clone()).collect();
        json!({"d": d, "s": since, "t": till})
    }

    fn respond(&self, path: &str, query: &HashMap<String, String>) -> (u16, String) {
        let num = |k: &str| query.get(k).and_then(|v| v.parse().ok()).unwrap_or(-1);
        if self.diverge {
            let since: i64 = num("since");
            let body = if path == "/api/splitChanges" {
                json!({"ff": {"d": [], "s": since, "t": since + 1},
                       "rbs": {"d": [], "s": num("rbSince"), "t": num("rbSince")}})
            } else {
                json!({"name": "x", "added": [], "removed": [], "since": since, "till": since + 1})
            };
            return (200, body.to_string());
        }
        if path == "/api/splitChanges" {
            let body = json!({
                "ff": self.page(&self.flags, num("since")),
                "rbs": self.page(&self.rule_based, num("rbSince")),
            });
            return (200, body.to_string());
        }
        if let Some(name) = path.strip_prefix("/api/segmentChanges/") {
            let since = num("since");
            let mut changes: Vec<&SegmentChange> = self
                .segments
                .get(name)
                .map(|c| c.iter().filter(|(cn, _, _)| *cn > since).collect())
                .unwrap_or_default();
            changes.sort_by_key(|(cn, _, _)| *cn);
            if self.page_size > 0 {
                changes.truncate(self.page_size);
            }
            let till = changes.last().map_or(since, |(cn, _, _)| *cn);
            let mut added = Vec::new();
            let mut removed = Vec::new();
            for (_, a, r) in changes {
                added.extend(a.iter().cloned());
                removed.extend(r.iter().cloned());
            }
            let body = json!({"name": name, "added": added, "removed": removed,
                              "since": since, "till": till});
            return (200, body.to_string());
        }
        (404, "not found".into())
    }
}

#[derive(Debug, Clone)]
struct Recorded {
    path: String,
    query: String,
    headers: HashMap<String, String>,
}

struct TestServer {
    url: String,
    backend: Arc<Mutex<Backend>>,
    requests: Arc<Mutex<Vec<Recorded>>>,
    shutdown: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl TestServer {
    fn start(backend: Backend) -> TestServer {
        install_logger();
        let server = tiny_http::Server::http("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let addr = server
            .server_addr()
            .to_ip()
            .expect("an IP listening address");
        let backend = Arc::new(Mutex::new(backend));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let shutdown = Arc::new(AtomicBool::new(false));
        let (b, r, s) = (
            Arc::clone(&backend),
            Arc::clone(&requests),
            Arc::clone(&shutdown),
        );
        let thread = std::thread::spawn(move || serve(&server, &b, &r, &s));
        TestServer {
            url: format!("http://{addr}/api"),
            backend,
            requests,
            shutdown,
            thread: Some(thread),
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut Backend) -> R) -> R {
        let mut b = self.backend.lock().expect("backend lock");
        f(&mut b)
    }

    fn requests(&self, path_prefix: &str) -> Vec<Recorded> {
        self.requests
            .lock()
            .expect("requests lock")
            .iter()
            .filter(|r| r.path.starts_with(path_prefix))
            .cloned()
            .collect()
    }

    fn count(&self, path_prefix: &str) -> usize {
        self.requests(path_prefix).len()
    }

    fn stop(mut self) {
        self.shutdown.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            assert!(t.join().is_ok(), "test server thread panicked");
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.shutdown.store(true, Ordering::SeqCst);
    }
}

fn serve(
    server: &tiny_http::Server,
    backend: &Mutex<Backend>,
    requests: &Mutex<Vec<Recorded>>,
    shutdown: &AtomicBool,
) {
    // Requests left unanswered on purpose (a hanging server), dropped at the end.
    let mut parked = Vec::new();
    while !shutdown.load(Ordering::SeqCst) {
        let request = match server.recv_timeout(Duration::from_millis(5)) {
            Ok(Some(r)) => r,
            Ok(None) => continue,
            Err(_) => break,
        };
        let (path, query) = match request.url().split_once('?') {
            Some((p, q)) => (p.to_string(), q.to_string()),
            None => (request.url().to_string(), String::new()),
        };
        let headers = request
            .headers()
            .iter()
            .map(|h| {
                (
                    h.field.as_str().as_str().to_ascii_lowercase(),
                    h.value.to_string(),
                )
            })
            .collect();
        if let Ok(mut r) = requests.lock() {
            r.push(Recorded {
                path: path.clone(),
                query: query.clone(),
                headers,
            });
        }
        let params: HashMap<String, String> = query
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let (fault, answer, gzip) = {
            let Ok(mut b) = backend.lock() else { break };
            let fault = match &b.sticky {
                Some((prefix, f)) if path.starts_with(prefix) => Some(f.clone()),
                _ => match b.faults.front() {
                    Some((prefix, _)) if path.starts_with(prefix) => {
                        b.faults.pop_front().map(|(_, f)| f)
                    }
                    _ => None,
                },
            };
            (fault, b.respond(&path, &params), b.gzip)
        };
        let header = |k: &str, v: &str| {
            tiny_http::Header::from_bytes(k.as_bytes(), v.as_bytes()).expect("valid header")
        };
        let (status, body, retry_after) = match fault {
            Some(Fault::Hang) => {
                parked.push(request);
                continue;
            }
            Some(Fault::Gzipped(bytes)) => {
                let response = tiny_http::Response::from_data(bytes.as_slice())
                    .with_header(header("Content-Type", "application/json"))
                    .with_header(header("Content-Encoding", "gzip"));
                let _ = request.respond(response);
                continue;
            }
            Some(Fault::Status(code, retry_after)) => (code, "failure".to_string(), retry_after),
            Some(Fault::Body(body)) => (200, body, None),
            None => (answer.0, answer.1, None),
        };
        let data = if gzip {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            gz.write_all(body.as_bytes()).expect("gzip");
            gz.finish().expect("gzip")
        } else {
            body.into_bytes()
        };
        let mut response = tiny_http::Response::from_data(data)
            .with_status_code(status)
            .with_header(header("Content-Type", "application/json"));
        if gzip {
            response = response.with_header(header("Content-Encoding", "gzip"));
        }
        if let Some(r) = retry_after {
            response = response.with_header(header("Retry-After", r));
        }
        let _ = request.respond(response);
    }
    drop(parked);
}

// ---------------------------------------------------------------------------------------------
// Definitions.

fn all_keys() -> Value {
    json!({"keySelector": {"trafficType": "user"}, "matcherType": "ALL_KEYS", "negate": false})
}

fn in_segment(kind: &str, name: &str) -> Value {
    json!({"keySelector": {"trafficType": "user"}, "matcherType": kind, "negate": false,
           "userDefinedSegmentMatcherData": {"segmentName": name}})
}

fn flag_with(name: &str, cn: i64, killed: bool, matcher: Value, sets: &[&str]) -> Value {
    json!({"name": name, "trafficTypeName": "user", "killed": killed, "defaultTreatment": "off",
           "changeNumber": cn, "algo": 2, "seed": 7, "trafficAllocation": 100,
           "status": "ACTIVE", "sets": sets,
           "conditions": [{"conditionType": "ROLLOUT",
                           "matcherGroup": {"combiner": "AND", "matchers": [matcher]},
                           "partitions": [{"treatment": "on", "size": 100}],
                           "label": "rule"}]})
}

/// A flag giving `on` to everyone (or `off` when killed).
fn flag(name: &str, cn: i64, killed: bool) -> Value {
    flag_with(name, cn, killed, all_keys(), &[])
}

fn rule_based(name: &str, cn: i64, segment: &str) -> Value {
    json!({"name": name, "changeNumber": cn, "status": "ACTIVE", "trafficTypeName": "user",
           "excluded": {"keys": [], "segments": []},
           "conditions": [{"conditionType": "WHITELIST",
                           "matcherGroup": {"combiner": "AND",
                                            "matchers": [in_segment("IN_SEGMENT", segment)]}}]})
}

fn treatment(store: &Store, key: &str, flag: &str) -> String {
    store
        .load()
        .evaluate(key, None, flag, &Attributes::new())
        .treatment
        .to_string()
}

/// Polls `cond` every millisecond until it holds or `timeout` passes.
fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    cond()
}

/// The SDK's own agent settings, without a proxy from the environment.
fn agent() -> ureq::Agent {
    crate::delivery::agent_config()
        .proxy(None)
        .build()
        .new_agent()
}

fn start(config: SyncConfig) -> (Synchronizer, Arc<Store>) {
    let store = Arc::new(Store::default());
    let sync = Synchronizer::start(config, agent(), Arc::clone(&store)).expect("start");
    (sync, store)
}

const READY: Duration = Duration::from_secs(5);
const STOP: Duration = Duration::from_secs(3);

fn finish(sync: Synchronizer, server: TestServer) {
    assert!(
        sync.stop(STOP),
        "the synchronizer did not stop within {STOP:?}"
    );
    server.stop();
    assert_no_key_logged();
}

// ---------------------------------------------------------------------------------------------
// Tests.

#[test]
fn initial_load_follows_the_since_till_chain_of_flags_rule_based_and_segments() {
    let mut b = Backend {
        page_size: 1,
        ..Backend::default()
    };
    b.push_flag(flag("f1", 1, false));
    b.push_flag(flag("f2", 2, false));
    b.push_flag(flag_with(
        "f3",
        3,
        false,
        in_segment("IN_RULE_BASED_SEGMENT", "r2"),
        &[],
    ));
    b.push_rule_based(rule_based("r1", 10, "other"));
    b.push_rule_based(rule_based("r2", 20, "seg"));
    b.push_segment("seg", 5, &["a", "b"], &[]);
    b.push_segment("seg", 6, &["c"], &["a"]);
    b.push_segment("other", 7, &["x"], &[]);
    let server = TestServer::start(b);
    let mut cfg = SyncConfig::for_tests(&server.url, key("chain"));
    cfg.features_refresh_rate = Duration::from_secs(3600);
    cfg.segments_refresh_rate = Duration::from_secs(3600);
    let (sync, store) = start(cfg);
    sync.readiness().wait(READY).expect("ready");
    assert!(sync.is_ready());

    let snap = store.snapshot();
    assert_eq!(snap.flag_names(), vec!["f1", "f2", "f3"]);
    assert_eq!(snap.change_number(), 3);
    assert_eq!(snap.rule_based_change_number(), 20);
    assert_eq!(snap.segment_change_number("seg"), Some(6));
    assert_eq!(snap.segment_change_number("other"), Some(7));
    assert_eq!(treatment(&store, "c", "f3"), "on");
    assert_eq!(treatment(&store, "a", "f3"), "off");

    let queries: Vec<String> = server
        .requests("/api/splitChanges")
        .into_iter()
        .map(|r| r.query)
        .collect();
    assert_eq!(
        queries,
        vec![
            "s=1.3&since=-1&rbSince=-1",
            "s=1.3&since=1&rbSince=10",
            "s=1.3&since=2&rbSince=20",
            "s=1.3&since=3&rbSince=20",
        ]
    );
    let seg: Vec<String> = server
        .requests("/api/segmentChanges/seg")
        .into_iter()
        .map(|r| r.query)
        .collect();
    assert_eq!(seg, vec!["since=-1", "since=5", "since=6"]);
    finish(sync, server);
}

#[test]
fn a_kill_is_served_on_the_next_poll() {
    let mut b = Backend::default();
    b.push_flag(flag("checkout", 1, false));
    let server = TestServer::start(b);
    let (sync, store) = start(SyncConfig::for_tests(&server.url, key("kill")));
    sync.readiness().wait(READY).expect("ready");
    assert_eq!(treatment(&store, "k", "checkout"), "on");
    server.with(|b| b.push_flag(flag("checkout", 2, true)));
    assert!(wait_until(Duration::from_secs(3), || treatment(
        &store, "k", "checkout"
    ) == "off"));
    assert_eq!(store.load().change_number(), 2);
    finish(sync, server);
}

/// Measures how long a change takes to reach evaluations once the server serves it: bounded by
/// the poll period plus one request. Run with `--nocapture` to see the numbers.
#[test]
fn update_visibility_latency() {
    let period = Duration::from_millis(20);
    let mut b = Backend::default();
    b.push_flag(flag("f", 1, false));
    let server = TestServer::start(b);
    let mut cfg = SyncConfig::for_tests(&server.url, key("latency"));
    cfg.features_refresh_rate = period;
    let (sync, store) = start(cfg);
    sync.readiness().wait(READY).expect("ready");
    let mut latencies = Vec::new();
    for i in 0..15 {
        let killed = i % 2 == 0;
        let expected = if killed { "off" } else { "on" };
        let at = Instant::now();
        server.with(|b| b.push_flag(flag("f", 2 + i, killed)));
        assert!(wait_until(Duration::from_secs(3), || treatment(
            &store, "k", "f"
        ) == expected));
        latencies.push(at.elapsed());
    }
    latencies.sort();
    let max = latencies[latencies.len() - 1];
    let median = latencies[latencies.len() / 2];
    let mean = latencies.iter().sum::<Duration>() / latencies.len() as u32;
    eprintln!(
        "update visibility with a {period:?} poll period: median {median:?}, mean {mean:?}, max {max:?}"
    );
    // One period plus a local request, with a wide margin for a loaded machine.
    assert!(max < period + Duration::from_millis(500), "max {max:?}");
    finish(sync, server);
}

#[test]
fn segments_gain_and_lose_keys() {
    let mut b = Backend::default();
    b.push_flag(flag_with(
        "beta_feature",
        1,
        false,
        in_segment("IN_SEGMENT", "beta"),
        &[],
    ));
    b.push_segment("beta", 1, &["ann"], &[]);
    let server = TestServer::start(b);
    let (sync, store) = start(SyncConfig::for_tests(&server.url, key("segments")));
    sync.readiness().wait(READY).expect("ready");
    assert_eq!(treatment(&store, "ann", "beta_feature"), "on");
    assert_eq!(treatment(&store, "bob", "beta_feature"), "off");
    server.with(|b| b.push_segment("beta", 2, &["bob"], &["ann"]));
    assert!(wait_until(Duration::from_secs(3), || {
        treatment(&store, "bob", "beta_feature") == "on"
    }));
    assert_eq!(treatment(&store, "ann", "beta_feature"), "off");
    assert_eq!(store.load().segment_change_number("beta"), Some(2));
    finish(sync, server);
}

#[test]
fn a_flag_update_fetches_its_new_segment_at_once() {
    let mut b = Backend::default();
    b.push_flag(flag("plain", 1, false));
    let server = TestServer::start(b);
    let mut cfg = SyncConfig::for_tests(&server.url, key("newseg"));
    cfg.segments_refresh_rate = Duration::from_secs(3600);
    let (sync, store) = start(cfg);
    sync.readiness().wait(READY).expect("ready");
    server.with(|b| {
        b.push_segment("late", 4, &["zed"], &[]);
        b.push_flag(flag_with(
            "uses_late",
            2,
            false,
            in_segment("IN_SEGMENT", "late"),
            &[],
        ));
    });
    assert!(wait_until(Duration::from_secs(3), || treatment(
        &store,
        "zed",
        "uses_late"
    ) == "on"));
    finish(sync, server);
}

#[test]
fn an_archived_flag_disappears() {
    let mut b = Backend::default();
    b.push_flag(flag("old", 1, false));
    b.push_flag(flag("kept", 2, false));
    let server = TestServer::start(b);
    let (sync, store) = start(SyncConfig::for_tests(&server.url, key("archived")));
    sync.readiness().wait(READY).expect("ready");
    assert!(store.load().flag("old").is_some());
    let mut archived = flag("old", 3, false);
    archived["status"] = json!("ARCHIVED");
    server.with(|b| b.push_flag(archived));
    assert!(wait_until(Duration::from_secs(3), || store
        .load()
        .flag("old")
        .is_none()));
    assert_eq!(treatment(&store, "k", "old"), "control");
    assert_eq!(store.load().flag_names(), vec!["kept"]);
    finish(sync, server);
}

#[test]
fn server_errors_are_retried_until_recovery() {
    let mut b = Backend::default();
    b.push_flag(flag("f", 1, false));
    for _ in 0..3 {
        b.faults
            .push_back(("/api/splitChanges", Fault::Status(500, None)));
    }
    b.faults
        .push_back(("/api/splitChanges", Fault::Status(429, Some("0"))));
    b.faults
        .push_back(("/api/splitChanges", Fault::Status(503, None)));
    let server = TestServer::start(b);
    let (sync, store) = start(SyncConfig::for_tests(&server.url, key("5xx")));
    sync.readiness()
        .wait(READY)
        .expect("ready after the failures");
    assert_eq!(treatment(&store, "k", "f"), "on");
    assert!(server.count("/api/splitChanges") >= 6);
    let warnings = logs_with(&format!("{}/splitChanges", server.url));
    assert!(
        warnings.iter().any(|w| w.contains("HTTP 500")),
        "{warnings:?}"
    );
    assert!(
        warnings.iter().any(|w| w.contains("HTTP 429")),
        "{warnings:?}"
    );

    // An outage after the first load: the last good definitions stay.
    server.with(|b| b.sticky = Some(("/api/", Fault::Status(502, None))));
    let before = server.count("/api/splitChanges");
    assert!(wait_until(Duration::from_secs(3), || server
        .count("/api/splitChanges")
        >= before + 3));
    assert!(sync.is_ready());
    assert_eq!(treatment(&store, "k", "f"), "on");
    server.with(|b| {
        b.sticky = None;
        b.push_flag(flag("f", 2, true));
    });
    assert!(wait_until(Duration::from_secs(3), || treatment(
        &store, "k", "f"
    ) == "off"));
    finish(sync, server);
}

/// The backoff sets how fast failed requests are retried: requests to a failing server in
/// one second, with a small backoff and with the default one.
#[test]
fn a_small_backoff_retries_faster() {
    let requests_in_a_second = |base: Duration, cap: Duration| {
        let server = TestServer::start(Backend {
            sticky: Some(("/api/splitChanges", Fault::Status(503, None))),
            ..Backend::default()
        });
        let mut cfg = SyncConfig::for_tests(&server.url, key("backoff"));
        cfg.features_refresh_rate = Duration::from_secs(3600);
        (cfg.backoff_base, cfg.backoff_cap) = (base, cap);
        let (sync, _store) = start(cfg);
        std::thread::sleep(Duration::from_secs(1));
        let n = server.count("/api/splitChanges");
        finish(sync, server);
        n
    };
    let ms = Duration::from_millis;
    let fast = requests_in_a_second(ms(2), ms(10));
    let default = requests_in_a_second(DEFAULT_BACKOFF_BASE, DEFAULT_BACKOFF_CAP);
    // Retries within at most 10 ms: well over 20 in a second. The default draws its delays
    // from [0, 1 s], [0, 2 s], [0, 4 s], ...: seven requests in a second take six delays
    // summing under a second, about one chance in 24 million (five: one in 1,500).
    assert!(fast >= 20, "{fast} requests with a 10 ms cap");
    assert!(default <= 6, "{default} requests with the default backoff");
}

#[test]
fn a_hanging_server_is_given_up_and_does_not_block_stop() {
    let mut b = Backend::default();
    b.push_flag(flag("f", 1, false));
    let server = TestServer::start(b);
    let mut cfg = SyncConfig::for_tests(&server.url, key("hang"));
    cfg.request_timeout = Duration::from_millis(150);
    let (sync, store) = start(cfg);
    sync.readiness().wait(READY).expect("ready");
    server.with(|b| {
        b.sticky = Some(("/api/", Fault::Hang));
        b.push_flag(flag("f", 2, true));
    });
    let before = server.count("/api/splitChanges");
    // Two more requests means the first one was given up.
    assert!(wait_until(Duration::from_secs(3), || server
        .count("/api/splitChanges")
        >= before + 2));
    assert_eq!(treatment(&store, "k", "f"), "on");
    assert!(sync.is_ready());
    assert!(
        logs_with(&server.url)
            .iter()
            .any(|l| l.contains("request timeout"))
    );
    let start = Instant::now();
    assert!(sync.stop(Duration::from_secs(1)));
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "{:?}",
        start.elapsed()
    );
    assert!(sync.stop(Duration::from_secs(1)), "stop is idempotent");
    finish(sync, server);
}

#[test]
fn a_hanging_server_at_start_reports_the_timeout() {
    let server = TestServer::start(Backend {
        sticky: Some(("/api/", Fault::Hang)),
        ..Backend::default()
    });
    let mut cfg = SyncConfig::for_tests(&server.url, key("hangstart"));
    cfg.request_timeout = Duration::from_millis(100);
    let (sync, _store) = start(cfg);
    let e = sync
        .readiness()
        .wait(Duration::from_millis(400))
        .unwrap_err()
        .to_string();
    assert!(e.contains("still loading feature flags"), "{e}");
    assert!(e.contains("request timeout"), "{e}");
    assert!(e.contains(&server.url), "{e}");
    finish(sync, server);
}

#[test]
fn garbage_and_partial_pages_are_never_applied() {
    let mut b = Backend::default();
    b.push_flag(flag("f", 1, false));
    let server = TestServer::start(b);
    let (sync, store) = start(SyncConfig::for_tests(&server.url, key("garbage")));
    sync.readiness().wait(READY).expect("ready");
    // A truncated page with a new flag and a kill: nothing of it may be applied.
    let page = json!({"ff": {"d": [flag("f", 2, true), flag("g", 2, false)], "s": 1, "t": 2},
                      "rbs": {"d": [], "s": -1, "t": -1}})
    .to_string();
    let truncated = page[..page.len() - 40].to_string();
    for body in [
        "<html>502 Bad Gateway</html>".to_string(),
        r#"{"ff": {"d": "oops", "s": 1, "t": 2}}"#.to_string(),
        truncated,
    ] {
        server.with(|b| b.sticky = Some(("/api/splitChanges", Fault::Body(body))));
        let before = server.count("/api/splitChanges");
        assert!(wait_until(Duration::from_secs(3), || server
            .count("/api/splitChanges")
            >= before + 3));
        assert_eq!(treatment(&store, "k", "f"), "on");
        assert!(store.load().flag("g").is_none());
        assert_eq!(store.load().change_number(), 1);
    }
    let errors = logs_with(&format!("{}/splitChanges", server.url));
    assert!(
        errors.iter().any(|l| l.contains("malformed response")),
        "{errors:?}"
    );
    server.with(|b| {
        b.sticky = None;
        b.push_flag(flag("f", 2, true));
    });
    assert!(wait_until(Duration::from_secs(3), || treatment(
        &store, "k", "f"
    ) == "off"));
    finish(sync, server);
}

#[test]
fn one_broken_flag_does_not_poison_the_page() {
    let mut b = Backend::default();
    b.push_flag(flag("ok1", 1, false));
    b.push_flag(json!({"name": "bad", "changeNumber": 2, "killed": "yes"}));
    b.push_flag(flag("ok2", 3, false));
    let server = TestServer::start(b);
    let (sync, store) = start(SyncConfig::for_tests(&server.url, key("broken")));
    sync.readiness().wait(READY).expect("ready");
    assert_eq!(store.load().flag_names(), vec!["ok1", "ok2"]);
    assert_eq!(store.load().change_number(), 3);
    let warnings = logs_with("flag 'bad'");
    assert!(
        warnings
            .iter()
            .any(|w| w.starts_with("WARN") && w.contains("\"yes\"") && w.contains(&server.url)),
        "{warnings:?}"
    );
    finish(sync, server);
}

/// A server whose `since` and `till` never converge gets at most `MAX_PAGES_PER_ROUND`
/// requests a poll period, and one warning naming the URL and the change numbers.
#[test]
fn change_numbers_that_never_converge_are_paced() {
    let server = TestServer::start(Backend {
        diverge: true,
        ..Backend::default()
    });
    let mut cfg = SyncConfig::for_tests(&server.url, key("diverge"));
    cfg.features_refresh_rate = Duration::from_secs(3600);
    cfg.segments_refresh_rate = Duration::from_secs(3600);
    let (sync, store) = start(cfg);
    let limit = fetcher::MAX_PAGES_PER_ROUND as usize;
    assert_eq!(limit, 100);
    // The first round is cut at the limit, and nothing more is asked until the next poll.
    assert!(wait_until(READY, || server.count("/api/splitChanges") >= limit));
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(server.count("/api/splitChanges"), limit);
    // What the pages brought is applied: the client serves it, and is ready.
    assert_eq!(store.load().change_number(), limit as i64 - 1);
    sync.readiness().wait(READY).expect("ready");
    let url = format!("{}/splitChanges", server.url);
    let warned = || {
        logs_with(&url)
            .into_iter()
            .filter(|l| l.contains("do not converge"))
            .collect::<Vec<_>>()
    };
    let w = warned();
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(w[0].starts_with("WARN"), "{w:?}");
    assert!(
        w[0].contains(&format!("{url}?s=1.3&since=98&rbSince=-1"))
            && w[0].contains("from since 98 to till 99")
            && w[0].contains("after 100 pages"),
        "{w:?}"
    );
    // A poll runs one more round, and says nothing new.
    sync.sync_now();
    assert!(wait_until(READY, || server.count("/api/splitChanges") >= 2 * limit));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(server.count("/api/splitChanges"), 2 * limit);
    assert_eq!(warned().len(), 1, "{:?}", warned());
    finish(sync, server);
}

#[test]
fn segment_change_numbers_that_never_converge_are_paced() {
    let mut b = Backend::default();
    b.push_flag(flag_with(
        "f",
        1,
        false,
        in_segment("IN_SEGMENT", "loop"),
        &[],
    ));
    let server = TestServer::start(b);
    let mut cfg = SyncConfig::for_tests(&server.url, key("segdiverge"));
    cfg.features_refresh_rate = Duration::from_secs(3600);
    cfg.segments_refresh_rate = Duration::from_secs(3600);
    let (sync, _store) = start(cfg);
    sync.readiness().wait(READY).expect("ready");
    server.with(|b| b.diverge = true);
    let limit = fetcher::MAX_PAGES_PER_ROUND as usize;
    let before = server.count("/api/segmentChanges/loop");
    sync.sync_now();
    assert!(wait_until(READY, || server
        .count("/api/segmentChanges/loop")
        >= before + limit));
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(server.count("/api/segmentChanges/loop"), before + limit);
    let w: Vec<String> = logs_with(&format!("{}/segmentChanges/loop", server.url))
        .into_iter()
        .filter(|l| l.contains("do not converge"))
        .collect();
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].contains("segment loop") && w[0].contains("after 100 pages"),
        "{w:?}"
    );
    finish(sync, server);
}

/// A number no JSON value can hold (`1e400`) skips only the flag, rule-based segment or
/// segment key that holds it; it used to reject the whole page.
#[test]
fn a_number_out_of_range_skips_only_what_holds_it() {
    let ok1 = flag_with("ok1", 1, false, in_segment("IN_SEGMENT", "s"), &[]);
    let ok2 = flag_with(
        "ok2",
        3,
        false,
        in_segment("IN_RULE_BASED_SEGMENT", "r"),
        &[],
    );
    let bad = r#"{"name":"bad","changeNumber":2,"trafficAllocation":1e400}"#;
    let page = format!(
        r#"{{"ff":{{"d":[{ok1},{bad},{ok2}],"s":-1,"t":3}},"rbs":{{"d":[{},{}],"s":-1,"t":7}}}}"#,
        rule_based("r", 7, "s"),
        r#"{"name":"r_bad","changeNumber":6,"excluded":{"keys":[-1E+999]}}"#,
    );
    let segment = r#"{"name":"s","added":["k",1e400,"j"],"removed":[],"since":-1,"till":5}"#;
    let b = Backend {
        faults: VecDeque::from([
            ("/api/splitChanges", Fault::Body(page)),
            ("/api/segmentChanges/s", Fault::Body(segment.to_string())),
        ]),
        ..Backend::default()
    };
    let server = TestServer::start(b);
    let mut cfg = SyncConfig::for_tests(&server.url, key("range"));
    cfg.features_refresh_rate = Duration::from_secs(3600);
    cfg.segments_refresh_rate = Duration::from_secs(3600);
    let (sync, store) = start(cfg);
    sync.readiness().wait(READY).expect("ready");
    assert_eq!(store.load().flag_names(), vec!["ok1", "ok2"]);
    assert_eq!(store.load().change_number(), 3);
    assert_eq!(store.load().rule_based_change_number(), 7);
    assert_eq!(store.load().segment_change_number("s"), Some(5));
    assert_eq!(treatment(&store, "k", "ok1"), "on");
    assert_eq!(treatment(&store, "j", "ok2"), "on");
    assert_eq!(treatment(&store, "x", "ok1"), "off");
    let warned = |needle: &str| {
        logs_with(needle)
            .into_iter()
            .filter(|w| w.starts_with("WARN") && w.contains(&server.url))
            .collect::<Vec<_>>()
    };
    let w = warned("flag 'bad'");
    assert!(
        w.iter().any(|w| w
            .contains("field 'trafficAllocation': number out of range: 1e400 at line 1 column")),
        "{w:?}"
    );
    let w = warned("flag 'r_bad'");
    assert!(
        w.iter()
            .any(|w| w.contains("field 'excluded.keys[0]': number out of range: -1E+999")),
        "{w:?}"
    );
    let w = warned("segment 's': field 'added[1]'");
    assert!(
        w.iter()
            .any(|w| w.contains("1e400 is not a string key")
                && w.contains("/segmentChanges/s?since=-1")),
        "{w:?}"
    );
    finish(sync, server);
}

#[test]
fn a_rejected_sdk_key_fails_readiness_and_stops() {
    let server = TestServer::start(Backend {
        sticky: Some(("/api/", Fault::Status(401, None))),
        ..Backend::default()
    });
    let key = key("unauthorized");
    let (sync, store) = start(SyncConfig::for_tests(&server.url, key.clone()));
    let start = Instant::now();
    let e = sync.readiness().wait(READY).unwrap_err();
    assert!(start.elapsed() < Duration::from_secs(2));
    assert!(matches!(e, Error::NotReady { .. }));
    let msg = e.to_string();
    assert!(
        msg.contains("HTTP 401") && msg.contains("SDK key was rejected"),
        "{msg}"
    );
    assert!(msg.contains(&server.url), "{msg}");
    assert!(!msg.contains(&key) && !msg.contains(SECRET), "{msg}");
    assert!(matches!(
        sync.readiness().state(),
        ReadinessState::Failed(_)
    ));
    // No hammering: the flags thread stopped after the one request.
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(server.count("/api/splitChanges"), 1);
    assert!(store.load().is_empty());
    finish(sync, server);
}

#[test]
fn connection_refused_at_start_names_the_url() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    install_logger();
    let url = format!("http://127.0.0.1:{port}/api");
    let (sync, _store) = start(SyncConfig::for_tests(&url, key("refused")));
    let e = sync
        .readiness()
        .wait(Duration::from_millis(300))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(&format!("cannot reach {url}/splitChanges")),
        "{e}"
    );
    assert!(!e.contains(SECRET), "{e}");
    assert!(sync.stop(STOP));
    assert_no_key_logged();
}

#[test]
fn gzip_responses_are_accepted() {
    let mut b = Backend {
        gzip: true,
        ..Backend::default()
    };
    b.push_flag(flag_with("z", 1, false, in_segment("IN_SEGMENT", "s"), &[]));
    b.push_segment("s", 1, &["k"], &[]);
    let server = TestServer::start(b);
    let (sync, store) = start(SyncConfig::for_tests(&server.url, key("gzip")));
    sync.readiness().wait(READY).expect("ready");
    assert_eq!(treatment(&store, "k", "z"), "on");
    assert_eq!(treatment(&store, "j", "z"), "off");
    finish(sync, server);
}

/// `n` gzip members of 1 MiB of spaces each: `n` MiB once decompressed, about `n` KiB sent.
fn gzip_bomb(n: usize) -> Arc<Vec<u8>> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&vec![b' '; 1 << 20]).expect("gzip");
    Arc::new(gz.finish().expect("gzip").repeat(n))
}

#[test]
fn a_gzip_answer_larger_than_max_response_bytes_is_refused() {
    let mut b = Backend::default();
    b.push_flag(flag("f", 1, false));
    b.sticky = Some(("/api/splitChanges", Fault::Gzipped(gzip_bomb(8))));
    let server = TestServer::start(b);
    let mut cfg = SyncConfig::for_tests(&server.url, key("bomb"));
    cfg.max_response_bytes = 1 << 20;
    let (sync, store) = start(cfg);
    // Refused at once, not retried with backoff: the readiness says why.
    let e = sync.readiness().wait(READY).unwrap_err().to_string();
    assert!(e.contains("synchronization failed"), "{e}");
    assert!(
        e.contains(&format!(
            "the answer of {}/splitChanges?s=1.3&since=-1&rbSince=-1 is larger than 1,048,576 bytes",
            server.url
        )),
        "{e}"
    );
    assert!(e.contains("max_response_bytes"), "{e}");
    assert!(store.load().is_empty());
    assert!(
        logs_with("max_response_bytes")
            .iter()
            .any(|l| l.starts_with("ERROR") && l.contains(&server.url)),
        "{:?}",
        logs_with("max_response_bytes")
    );
    // A body within the limit loads on the next poll.
    server.with(|b| b.sticky = None);
    assert!(
        wait_until(READY, || sync.is_ready()),
        "ready once the answer fits"
    );
    assert_eq!(treatment(&store, "k", "f"), "on");
    finish(sync, server);
}

#[test]
fn a_plain_answer_larger_than_max_response_bytes_is_refused() {
    let mut b = Backend::default();
    b.push_flag(flag("f", 1, false));
    b.push_segment("s", 1, &["k"], &[]);
    let server = TestServer::start(b);
    let mut cfg = SyncConfig::for_tests(&server.url, key("plainbig"));
    // The flags page is about 400 bytes.
    cfg.max_response_bytes = 100;
    let (sync, _store) = start(cfg);
    let e = sync.readiness().wait(READY).unwrap_err().to_string();
    assert!(e.contains("is larger than 100 bytes"), "{e}");
    finish(sync, server);
}

#[test]
fn the_flag_sets_filter_is_sent_and_applied() {
    let mut b = Backend::default();
    b.push_flag(flag_with("a", 1, false, all_keys(), &["backend"]));
    b.push_flag(flag_with("b", 2, false, all_keys(), &["other"]));
    b.push_flag(flag_with("c", 3, false, all_keys(), &[]));
    b.push_flag(flag_with("d", 4, false, all_keys(), &["x", "front"]));
    let server = TestServer::start(b);
    let mut cfg = SyncConfig::for_tests(&server.url, key("sets"));
    cfg.flag_sets_filter = vec!["front".into(), " Backend ".into(), "bad set!".into()];
    let (sync, store) = start(cfg);
    sync.readiness().wait(READY).expect("ready");
    assert_eq!(store.load().flag_names(), vec!["a", "d"]);
    assert_eq!(
        server.requests("/api/splitChanges")[0].query,
        "s=1.3&since=-1&rbSince=-1&sets=backend,front"
    );
    // A flag that leaves the filtered sets is removed.
    server.with(|b| b.push_flag(flag_with("a", 5, false, all_keys(), &["other"])));
    assert!(wait_until(Duration::from_secs(3), || store
        .load()
        .flag("a")
        .is_none()));
    assert_eq!(store.load().flag_names(), vec!["d"]);
    finish(sync, server);
}

#[test]
fn every_request_carries_the_sdk_headers() {
    let mut b = Backend::default();
    b.push_flag(flag_with("f", 1, false, in_segment("IN_SEGMENT", "s"), &[]));
    let server = TestServer::start(b);
    let key = key("headers");
    let mut cfg = SyncConfig::for_tests(&server.url, key.clone());
    cfg.machine_ip = Some("10.1.2.3".into());
    cfg.machine_name = Some("NA".into());
    let (sync, _store) = start(cfg);
    sync.readiness().wait(READY).expect("ready");
    let requests = server.requests("/api/");
    assert!(requests.iter().any(|r| r.path == "/api/segmentChanges/s"));
    for r in &requests {
        let h = |name: &str| r.headers.get(name).map(String::as_str);
        assert_eq!(h("authorization"), Some(format!("Bearer {key}").as_str()));
        assert_eq!(
            h("splitsdkversion"),
            Some(concat!("rust-", env!("CARGO_PKG_VERSION")))
        );
        assert!(h("accept-encoding").is_some_and(|v| v.contains("gzip")));
        assert_eq!(h("cache-control"), Some("no-cache"));
        assert_eq!(h("splitsdkmachineip"), Some("10.1.2.3"));
        assert_eq!(h("splitsdkmachinename"), None, "NA is not sent");
        assert_eq!(
            h("user-agent"),
            Some(concat!("splitkit/", env!("CARGO_PKG_VERSION")))
        );
        assert_eq!(h("user-agent"), Some(crate::delivery::USER_AGENT));
    }
    finish(sync, server);
}

#[test]
fn sync_now_polls_at_once_and_stop_ends_the_polling() {
    let mut b = Backend::default();
    b.push_flag(flag("f", 1, false));
    let server = TestServer::start(b);
    let mut cfg = SyncConfig::for_tests(&server.url, key("syncnow"));
    cfg.features_refresh_rate = Duration::from_secs(3600);
    cfg.segments_refresh_rate = Duration::from_secs(3600);
    let (sync, store) = start(cfg);
    sync.readiness().wait(READY).expect("ready");
    server.with(|b| b.push_flag(flag("f", 2, true)));
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(treatment(&store, "k", "f"), "on", "no poll before an hour");
    sync.sync_now();
    assert!(wait_until(Duration::from_secs(3), || treatment(
        &store, "k", "f"
    ) == "off"));
    assert!(sync.stop(STOP));
    let after = server.count("/api/");
    sync.sync_now();
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(server.count("/api/"), after, "no request after stop");
    finish(sync, server);
}

#[test]
fn start_rejects_an_invalid_configuration() {
    let mut cfg = SyncConfig::new(key("config"));
    cfg.features_refresh_rate = Duration::from_secs(1);
    let e = Synchronizer::start(cfg, agent(), Arc::new(Store::default())).unwrap_err();
    assert!(e.to_string().contains("features_refresh_rate"), "{e}");
}

#[test]
fn huge_periods_do_not_overflow() {
    let mut b = Backend::default();
    b.push_flag(flag("f", 1, false));
    let server = TestServer::start(b);
    let mut cfg = SyncConfig::for_tests(&server.url, key("huge"));
    cfg.features_refresh_rate = Duration::MAX;
    cfg.segments_refresh_rate = Duration::MAX;
    cfg.backoff_cap = Duration::MAX;
    let (sync, store) = start(cfg);
    sync.readiness().wait(READY).expect("ready");
    assert_eq!(treatment(&store, "k", "f"), "on");
    finish(sync, server);
}
