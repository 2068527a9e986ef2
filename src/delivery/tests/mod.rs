//! Delivery against a real HTTP server on 127.0.0.1 (tiny_http, in this process).

use std::collections::HashSet;
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::delivery::{
    Batcher, DeliveryStats, EncodeError, Endpoint, HttpConfig, HttpTransport, JsonBatcher, Request,
    Response, Transport, TransportError, Worker, WorkerConfig, WorkerConfigBuilder,
};
use parking_lot::{Condvar, Mutex};

// ---------------------------------------------------------------------------
// Test HTTP server
// ---------------------------------------------------------------------------

/// One request as the server saw it.
#[derive(Debug, Clone)]
struct Recorded {
    index: usize,
    path: String,
    headers: Vec<(String, String)>,
    /// Body as received on the wire.
    raw: Vec<u8>,
    /// Body after undoing `Content-Encoding: gzip`.
    body: Vec<u8>,
    at: Instant,
}

impl Recorded {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Impression keys in an impressions bulk body, in body order.
    fn impression_keys(&self) -> Vec<String> {
        let value: serde_json::Value =
            serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null);
        let mut keys = Vec::new();
        for group in value.as_array().into_iter().flatten() {
            for imp in group["i"].as_array().into_iter().flatten() {
                keys.push(imp["k"].as_str().unwrap_or_default().to_owned());
            }
        }
        keys
    }
}

/// What the server answers.
#[derive(Debug, Clone, Copy)]
struct Reply {
    status: u16,
    retry_after: Option<u64>,
    delay: Duration,
}

impl Reply {
    fn status(status: u16) -> Self {
        Self {
            status,
            retry_after: None,
            delay: Duration::ZERO,
        }
    }

    fn ok() -> Self {
        Self::status(200)
    }

    fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    fn delayed(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

type Responder = Box<dyn FnMut(&Recorded) -> Reply + Send>;

struct TestServer {
    port: u16,
    log: Arc<(Mutex<Vec<Recorded>>, Condvar)>,
    stop: Arc<AtomicBool>,
    server: Arc<tiny_http::Server>,
    thread: Option<JoinHandle<()>>,
}

impl TestServer {
    fn start(respond: impl FnMut(&Recorded) -> Reply + Send + 'static) -> Self {
        Self::start_on(0, respond)
    }

    fn start_on(port: u16, respond: impl FnMut(&Recorded) -> Reply + Send + 'static) -> Self {
        let server =
            Arc::new(tiny_http::Server::http(("127.0.0.1", port)).expect("bind test server"));
        let port = server.server_addr().to_ip().expect("ip listener").port();
        let log = Arc::new((Mutex::new(Vec::new()), Condvar::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (server, log, stop) = (Arc::clone(&server), Arc::clone(&log), Arc::clone(&stop));
            let mut respond: Responder = Box::new(respond);
            thread::spawn(move || serve(&server, &log, &stop, &mut respond))
        };
        Self {
            port,
            log,
            stop,
            server,
            thread: Some(thread),
        }
    }

    fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}/api", self.port)
    }

    fn requests(&self) -> Vec<Recorded> {
        self.log.0.lock().clone()
    }

    /// Waits (bounded) until `pred` holds for the recorded requests.
    fn wait_for(&self, timeout: Duration, pred: impl Fn(&[Recorded]) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        let (lock, cvar) = &*self.log;
        let mut requests = lock.lock();
        while !pred(&requests) {
            if cvar.wait_until(&mut requests, deadline).timed_out() {
                return pred(&requests);
            }
        }
        true
    }

    /// Keys of all impressions in requests answered 2xx, in arrival order.
    fn delivered_keys(&self, ok: impl Fn(&Recorded) -> bool) -> Vec<String> {
        self.requests()
            .iter()
            .filter(|r| ok(r))
            .flat_map(Recorded::impression_keys)
            .collect()
    }
}

fn serve(
    server: &tiny_http::Server,
    log: &(Mutex<Vec<Recorded>>, Condvar),
    stop: &AtomicBool,
    respond: &mut Responder,
) {
    while !stop.load(Ordering::SeqCst) {
        let mut request = match server.recv_timeout(Duration::from_millis(50)) {
            Ok(Some(request)) => request,
            Ok(None) => continue,
            Err(_) => break,
        };
        let mut raw = Vec::new();
        let _ = request.as_reader().read_to_end(&mut raw);
        let headers: Vec<(String, String)> = request
            .headers()
            .iter()
            .map(|h| (h.field.to_string(), h.value.to_string()))
            .collect();
        let gzipped = headers
            .iter()
            .any(|(n, v)| n.eq_ignore_ascii_case("content-encoding") && v == "gzip");
        let body = if gzipped { gunzip(&raw) } else { raw.clone() };
        let (lock, cvar) = log;
        let recorded = {
            let mut requests = lock.lock();
            let recorded = Recorded {
                index: requests.len(),
                path: request.url().to_owned(),
                headers,
                raw,
                body,
                at: Instant::now(),
            };
            requests.push(recorded.clone());
            recorded
        };
        cvar.notify_all();
        let reply = respond(&recorded);
        let mut response = tiny_http::Response::from_string("{}").with_status_code(reply.status);
        if let Some(seconds) = reply.retry_after {
            let header = tiny_http::Header::from_bytes("Retry-After", seconds.to_string())
                .expect("valid header");
            response.add_header(header);
        }
        if reply.delay.is_zero() {
            let _ = request.respond(response);
        } else {
            // Answer late on a side thread so the server keeps accepting.
            thread::spawn(move || {
                thread::sleep(reply.delay);
                let _ = request.respond(response);
            });
        }
    }
}

#[cfg(feature = "gzip")]
fn gunzip(raw: &[u8]) -> Vec<u8> {
    use std::io::Read;
    let mut out = Vec::new();
    let _ = flate2::read::GzDecoder::new(raw).read_to_end(&mut out);
    out
}

#[cfg(not(feature = "gzip"))]
fn gunzip(raw: &[u8]) -> Vec<u8> {
    raw.to_vec()
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.server.unblock();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

// ---------------------------------------------------------------------------
// Log capture
// ---------------------------------------------------------------------------

fn capture_logs() {
    crate::test_logs::install();
}

/// Captured warnings that contain every needle.
fn warnings(needles: &[&str]) -> Vec<String> {
    crate::test_logs::lines("::delivery", needles)
}

// ---------------------------------------------------------------------------
// Impressions: the item type and its batcher
// ---------------------------------------------------------------------------

mod impressions;
use impressions::{Impression, ImpressionsBatcher, imp};

const BULK: &str = "/testImpressions/bulk";

/// Test defaults: no timed flush, quick retries, quiet warnings.
fn config(role: &str) -> WorkerConfigBuilder {
    WorkerConfig::builder(role)
        .flush_interval(Duration::from_secs(3600))
        .backoff_base(Duration::from_millis(10))
        .backoff_cap(Duration::from_millis(50))
        .warn_interval(Duration::from_secs(3600))
        .shutdown_timeout(Duration::from_secs(5))
}

fn transport_for(base_url: &str) -> Arc<dyn Transport> {
    let config = HttpConfig::builder(base_url, "sdk-key-123")
        .sdk_version("rust-test-1.2.3")
        .machine_ip("10.0.0.7")
        .machine_name("web-7")
        .connect_timeout(Duration::from_millis(500))
        .request_timeout(Duration::from_secs(2))
        .build()
        .expect("valid http config");
    Arc::new(HttpTransport::new(config))
}

fn impressions_worker(builder: WorkerConfigBuilder, base_url: &str) -> Worker<Impression> {
    Worker::start(
        builder.build().expect("valid worker config"),
        ImpressionsBatcher,
        transport_for(base_url),
        Endpoint::new(BULK).header("SplitSDKImpressionsMode", "OPTIMIZED"),
    )
    .expect("worker starts")
}

/// Retention of 10 items, the rest to a spool in `dir` (1 MiB, this file's SDK key).
fn spool_retention(dir: &std::path::Path) -> crate::delivery::Retention {
    let spool = crate::delivery::Spool::open(dir, 1 << 20, "sdk-key-123").expect("spool");
    crate::delivery::Retention {
        items: 10,
        bytes: 1 << 20,
        spool: Some(Arc::new(spool)),
    }
}

fn assert_balanced(stats: &DeliveryStats) {
    assert!(stats.is_balanced(), "unbalanced: {stats:?}");
}

fn keys(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i}")).collect()
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

#[test]
fn posts_exact_payload_and_headers() {
    let server = TestServer::start(|_| Reply::ok());
    let worker = impressions_worker(config("it-payload"), &server.base_url());
    assert!(worker.push(imp("f1", "k1")));
    assert!(worker.push(imp("f2", "k2")));
    assert!(worker.push(imp("f1", "k3")));
    assert!(worker.flush(Duration::from_secs(5)));

    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    let r = &requests[0];
    assert_eq!(r.path, "/api/testImpressions/bulk");
    assert_eq!(r.header("Authorization"), Some("Bearer sdk-key-123"));
    assert_eq!(r.header("Content-Type"), Some("application/json"));
    assert_eq!(r.header("SplitSDKVersion"), Some("rust-test-1.2.3"));
    assert_eq!(r.header("SplitSDKMachineIP"), Some("10.0.0.7"));
    assert_eq!(r.header("SplitSDKMachineName"), Some("web-7"));
    assert_eq!(r.header("SplitSDKImpressionsMode"), Some("OPTIMIZED"));
    assert_eq!(r.header("User-Agent"), Some(crate::delivery::USER_AGENT));
    assert_eq!(r.header("Content-Encoding"), None);
    assert_eq!(r.raw, r.body);
    assert_eq!(
        r.text(),
        concat!(
            r#"[{"f":"f1","i":[{"k":"k1","t":"on","m":1000,"c":7,"r":"default rule"},"#,
            r#"{"k":"k3","t":"on","m":1000,"c":7,"r":"default rule"}]},"#,
            r#"{"f":"f2","i":[{"k":"k2","t":"on","m":1000,"c":7,"r":"default rule"}]}]"#
        )
    );

    let stats = worker.stats();
    assert_eq!((stats.recorded, stats.sent, stats.requests), (3, 3, 1));
    assert_eq!(stats.bytes_sent, u64::try_from(r.body.len()).unwrap_or(0));
    assert_eq!(stats.queued_now, 0);
    assert_balanced(&stats);
    assert!(HttpConfig::DEFAULT_SDK_VERSION.starts_with("rust-"));
}

#[cfg(feature = "gzip")]
#[test]
fn gzip_compresses_bodies() {
    let server = TestServer::start(|_| Reply::ok());
    let transport = HttpTransport::new(
        HttpConfig::builder(server.base_url(), "k")
            .gzip(true)
            .build()
            .expect("valid http config"),
    );
    let worker = Worker::start(
        config("it-gzip").build().expect("valid worker config"),
        JsonBatcher::new(|s: &String| s.len() + 3),
        Arc::new(transport),
        Endpoint::new("/events/bulk"),
    )
    .expect("worker starts");
    let event = "x".repeat(2000);
    assert!(worker.push(event.clone()));
    assert!(worker.flush(Duration::from_secs(5)));
    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    let r = &requests[0];
    assert_eq!(r.header("Content-Encoding"), Some("gzip"));
    assert_eq!(&r.raw[..2], &[0x1f, 0x8b]);
    assert!(r.raw.len() < 200, "2 KB of x should compress well");
    assert_eq!(r.text(), format!("[\"{event}\"]"));
}

#[test]
fn flushes_periodically() {
    let server = TestServer::start(|_| Reply::ok());
    let started = Instant::now();
    let worker = impressions_worker(
        config("it-periodic").flush_interval(Duration::from_millis(150)),
        &server.base_url(),
    );
    assert!(worker.push(imp("f", "a")));
    assert!(worker.push(imp("f", "b")));
    // No flush call: the timer alone must deliver.
    assert!(server.wait_for(Duration::from_secs(3), |r| !r.is_empty()));
    let elapsed = server.requests()[0].at - started;
    assert!(elapsed >= Duration::from_millis(100), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(2), "{elapsed:?}");
    assert_eq!(server.delivered_keys(|_| true), ["a", "b"]);
    // A later item goes out with a later tick.
    assert!(worker.push(imp("f", "c")));
    assert!(server.wait_for(Duration::from_secs(3), |r| r.len() == 2));
    // Nothing left to send: the flush only waits for the answer to be counted.
    assert!(worker.flush(Duration::from_secs(3)));
    assert_eq!(server.requests().len(), 2);
    assert_eq!(worker.stats().sent, 3);
}

#[test]
fn flushes_at_item_threshold() {
    let server = TestServer::start(|_| Reply::ok());
    let worker = impressions_worker(config("it-count").flush_max_items(10), &server.base_url());
    for key in keys("k", 9) {
        assert!(worker.push(imp("f", &key)));
    }
    assert!(!server.wait_for(Duration::from_millis(300), |r| !r.is_empty()));
    assert!(worker.push(imp("f", "k9")));
    assert!(server.wait_for(Duration::from_secs(3), |r| !r.is_empty()));
    assert_eq!(server.delivered_keys(|_| true), keys("k", 10));
}

#[test]
fn flushes_at_byte_threshold_and_cuts_batches_by_bytes() {
    let server = TestServer::start(|_| Reply::ok());
    let worker = Worker::start(
        config("it-bytes")
            .flush_max_bytes(1000)
            .batch_max_bytes(300)
            .build()
            .expect("valid worker config"),
        JsonBatcher::new(|_: &u32| 100),
        transport_for(&server.base_url()),
        Endpoint::new("/events/bulk"),
    )
    .expect("worker starts");
    for n in 0..9 {
        assert!(worker.push(n));
    }
    assert!(!server.wait_for(Duration::from_millis(300), |r| !r.is_empty()));
    assert!(worker.push(9));
    // 10 × 100 estimated bytes reach the threshold; batches hold at most 300 bytes.
    assert!(server.wait_for(Duration::from_secs(3), |r| r.len() == 4));
    let bodies: Vec<String> = server.requests().iter().map(Recorded::text).collect();
    assert_eq!(bodies, ["[0,1,2]", "[3,4,5]", "[6,7,8]", "[9]"]);
    assert!(
        server
            .requests()
            .iter()
            .all(|r| r.path == "/api/events/bulk")
    );
}

#[test]
fn batches_respect_item_limit() {
    let server = TestServer::start(|_| Reply::ok());
    let worker = impressions_worker(
        config("it-batch-items").batch_max_items(4),
        &server.base_url(),
    );
    for key in keys("k", 10) {
        assert!(worker.push(imp("f", &key)));
    }
    assert!(worker.flush(Duration::from_secs(5)));
    let sizes: Vec<usize> = server
        .requests()
        .iter()
        .map(|r| r.impression_keys().len())
        .collect();
    assert_eq!(sizes, [4, 4, 2]);
    assert_eq!(server.delivered_keys(|_| true), keys("k", 10));
}

#[test]
fn flush_returns_true_after_delivery_and_false_when_server_hangs() {
    let server = TestServer::start(|r| {
        if r.index == 1 {
            Reply::ok().delayed(Duration::from_millis(1200))
        } else {
            Reply::ok()
        }
    });
    let worker = impressions_worker(config("it-flush"), &server.base_url());
    assert!(worker.push(imp("f", "a")));
    assert!(worker.flush(Duration::from_secs(5)));
    assert_eq!(worker.stats().sent, 1);

    assert!(worker.push(imp("f", "b")));
    let started = Instant::now();
    assert!(!worker.flush(Duration::from_millis(300)));
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(300), "{waited:?}");
    assert!(waited < Duration::from_millis(1000), "{waited:?}");
    assert_eq!(worker.stats().sent, 1);

    // The late answer still arrives within the request timeout.
    assert!(worker.flush(Duration::from_secs(5)));
    let stats = worker.stats();
    assert_eq!(
        (stats.sent, stats.requests, stats.failed_attempts),
        (2, 2, 0)
    );
    assert_balanced(&stats);
}

#[test]
fn connection_refused_then_server_up_loses_nothing() {
    let port = free_port();
    let base_url = format!("http://127.0.0.1:{port}/api");
    let worker = impressions_worker(config("it-refused"), &base_url);
    for key in keys("k", 20) {
        assert!(worker.push(imp("f", &key)));
    }
    assert!(!worker.flush(Duration::from_millis(300)));
    let stats = worker.stats();
    assert!(stats.failed_attempts >= 1, "{stats:?}");
    assert_eq!((stats.sent, stats.queued_now, stats.dropped()), (0, 20, 0));

    let server = TestServer::start_on(port, |_| Reply::ok());
    for key in keys("late", 5) {
        assert!(worker.push(imp("f", &key)));
    }
    assert!(worker.flush(Duration::from_secs(5)));
    let mut expected = keys("k", 20);
    expected.extend(keys("late", 5));
    assert_eq!(server.delivered_keys(|_| true), expected);
    let stats = worker.stats();
    assert_eq!((stats.sent, stats.dropped(), stats.queued_now), (25, 0, 0));
    assert_eq!(stats.requests, stats.failed_attempts + 2);
    assert_balanced(&stats);
}

#[test]
fn server_errors_are_retried_until_recovery() {
    let server = TestServer::start(|r| {
        if r.index < 2 {
            Reply::status(500)
        } else {
            Reply::ok()
        }
    });
    let worker = impressions_worker(config("it-500"), &server.base_url());
    for key in keys("k", 5) {
        assert!(worker.push(imp("f", &key)));
    }
    assert!(worker.flush(Duration::from_secs(5)));
    let requests = server.requests();
    assert_eq!(requests.len(), 3);
    assert!(requests.iter().all(|r| r.body == requests[0].body));
    let stats = worker.stats();
    assert_eq!(
        (stats.sent, stats.requests, stats.failed_attempts),
        (5, 3, 2)
    );
    assert_balanced(&stats);
}

#[test]
fn honours_retry_after() {
    let server = TestServer::start(|r| {
        if r.index == 0 {
            Reply::status(429).retry_after(1)
        } else {
            Reply::ok()
        }
    });
    // Backoff alone would retry within 2 ms.
    let worker = impressions_worker(
        config("it-429")
            .backoff_base(Duration::from_millis(1))
            .backoff_cap(Duration::from_millis(2)),
        &server.base_url(),
    );
    assert!(worker.push(imp("f", "a")));
    assert!(worker.flush(Duration::from_secs(5)));
    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    let gap = requests[1].at - requests[0].at;
    assert!(gap >= Duration::from_millis(950), "retried after {gap:?}");
    assert!(gap < Duration::from_secs(3), "retried after {gap:?}");
    assert_eq!(worker.stats().sent, 1);
}

#[test]
fn splits_batches_on_413_and_drops_single_items() {
    let server = TestServer::start(|r| {
        if r.impression_keys().len() > 3 || r.text().contains("huge") {
            Reply::status(413)
        } else {
            Reply::ok()
        }
    });
    let worker = impressions_worker(config("it-413"), &server.base_url());
    for key in keys("k", 10) {
        assert!(worker.push(imp("f", &key)));
    }
    assert!(worker.flush(Duration::from_secs(5)));
    let sizes: Vec<usize> = server
        .requests()
        .iter()
        .map(|r| r.impression_keys().len())
        .collect();
    assert_eq!(sizes, [10, 5, 2, 3, 5, 2, 3]);
    let ok = |r: &Recorded| r.impression_keys().len() <= 3;
    assert_eq!(server.delivered_keys(ok), keys("k", 10));

    assert!(worker.push(imp("f", "huge")));
    assert!(worker.flush(Duration::from_secs(5)));
    let stats = worker.stats();
    assert_eq!((stats.sent, stats.dropped_rejected), (10, 1));
    assert_eq!((stats.requests, stats.failed_attempts), (8, 4));
    assert_balanced(&stats);
}

#[test]
fn client_errors_are_dropped_counted_and_named() {
    capture_logs();
    let server = TestServer::start(|r| {
        let status = r.path.rsplit('/').next().and_then(|s| s.parse().ok());
        Reply::status(status.unwrap_or(500))
    });
    for status in [400u16, 401, 403, 404] {
        let role = format!("it-status-{status}");
        let path = format!("/status/{status}");
        let worker = Worker::start(
            config(&role).build().expect("valid worker config"),
            ImpressionsBatcher,
            transport_for(&server.base_url()),
            Endpoint::new(path.clone()),
        )
        .expect("worker starts");
        for key in keys("k", 4) {
            assert!(worker.push(imp("f", &key)));
        }
        assert!(worker.flush(Duration::from_secs(5)));
        let stats = worker.stats();
        assert_eq!(
            (
                stats.dropped_rejected,
                stats.sent,
                stats.requests,
                stats.failed_attempts
            ),
            (4, 0, 1, 1),
            "status {status}"
        );
        assert_balanced(&stats);
        let logged = warnings(&[&role, &path, &status.to_string()]);
        assert_eq!(logged.len(), 1, "{logged:?}");
    }
    assert_eq!(server.requests().len(), 4);
}

/// A worker (batches of 5, retaining 10) against `server`, which refuses with a long
/// `Retry-After`: a first batch `a` tried once, then `b` and `c` queued behind it, so
/// one batch is past the retention bound. A flush cannot complete meanwhile.
fn past_the_retention_bound(
    builder: WorkerConfigBuilder,
    server: &TestServer,
) -> Worker<Impression> {
    let worker = impressions_worker(
        builder.flush_max_items(5).batch_max_items(5),
        &server.base_url(),
    );
    for key in keys("a", 5) {
        assert!(worker.push(imp("f", &key)));
    }
    assert!(server.wait_for(Duration::from_secs(3), |r| r.len() == 1));
    for key in keys("b", 5).into_iter().chain(keys("c", 5)) {
        assert!(worker.push(imp("f", &key)));
    }
    assert!(!worker.flush(Duration::from_millis(200)));
    worker
}

#[test]
fn retained_overflow_is_counted_and_shutdown_drops_the_rest() {
    capture_logs();
    let server = TestServer::start(|_| Reply::status(500).retry_after(30));
    let worker = past_the_retention_bound(config("it-retained").max_retained_items(10), &server);
    let stats = worker.stats();
    assert_eq!(stats.dropped_retained_overflow, 5, "{stats:?}");
    assert_eq!((stats.queued_now, stats.requests, stats.sent), (10, 1, 0));
    assert_balanced(&stats);
    assert_eq!(warnings(&["it-retained", "retained"]).len(), 1);

    // Shutdown makes one last attempt (of the oldest retained batch), then gives up: the
    // thread ended in time, but not everything was delivered.
    let started = Instant::now();
    assert!(!worker.shutdown(Duration::from_millis(500)));
    assert!(started.elapsed() < Duration::from_secs(2));
    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[1].impression_keys(), keys("b", 5));
    let stats = worker.stats();
    assert_eq!((stats.dropped_shutdown, stats.queued_now), (10, 0));
    assert_balanced(&stats);
}

#[test]
fn beyond_the_retention_bound_and_at_the_deadline_batches_go_to_the_spool() {
    let dir = tempfile::tempdir().expect("tempdir");
    let retention = spool_retention(dir.path());
    let down = TestServer::start(|_| Reply::status(500).retry_after(30));
    let worker = past_the_retention_bound(config("it-spool").retention(&retention), &down);
    let stats = worker.stats();
    assert_eq!(
        (stats.spooled, stats.dropped_retained_overflow),
        (5, 0),
        "{stats:?}"
    );
    assert_balanced(&stats);
    assert!(
        !worker.shutdown(Duration::from_millis(400)),
        "not delivered, spooled"
    );
    let stats = worker.stats();
    assert_eq!(
        (stats.spooled, stats.dropped(), stats.queued_now),
        (15, 0, 0),
        "{stats:?}"
    );
    assert_balanced(&stats);

    // The next worker on the spool delivers it, oldest first, before anything new.
    let up = TestServer::start(|_| Reply::ok());
    let next = impressions_worker(config("it-spool-2").retention(&retention), &up.base_url());
    assert!(next.push(imp("f", "new")));
    assert!(next.flush(Duration::from_secs(5)));
    let mut expected = keys("a", 5);
    expected.extend(keys("b", 5));
    expected.extend(keys("c", 5));
    expected.push("new".into());
    assert_eq!(up.delivered_keys(|_| true), expected);
    let headers: Vec<Option<String>> = up
        .requests()
        .iter()
        .map(|r| r.header("SplitSDKImpressionsMode").map(str::to_string))
        .collect();
    assert!(
        headers.iter().all(|h| h.as_deref() == Some("OPTIMIZED")),
        "{headers:?}"
    );
    let stats = next.stats();
    assert_eq!(
        (stats.recovered, stats.sent, stats.recorded),
        (15, 16, 1),
        "{stats:?}"
    );
    assert_balanced(&stats);
    assert!(next.shutdown(Duration::from_secs(2)));
}

#[test]
fn what_an_outage_spooled_is_delivered_once_the_endpoint_answers_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let retention = spool_retention(dir.path());
    let up = Arc::new(AtomicBool::new(false));
    let accepted = Arc::new(Mutex::new(HashSet::new()));
    let server = {
        let (up, accepted) = (Arc::clone(&up), Arc::clone(&accepted));
        TestServer::start(move |r| {
            if up.load(Ordering::SeqCst) {
                accepted.lock().insert(r.index);
                Reply::ok()
            } else {
                Reply::status(503)
            }
        })
    };
    let worker = impressions_worker(
        config("it-respool")
            .flush_max_items(5)
            .batch_max_items(5)
            .retention(&retention),
        &server.base_url(),
    );
    for key in keys("k", 25) {
        assert!(worker.push(imp("f", &key)));
    }
    assert!(!worker.flush(Duration::from_millis(300)));
    // Beyond the retention bound, batches go to the spool (a file written and synced each:
    // on a busy machine, that can take longer than the flush waited).
    let deadline = Instant::now() + Duration::from_secs(10);
    while worker.stats().spooled < 15 && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(worker.stats().spooled, 15, "{:?}", worker.stats());
    up.store(true, Ordering::SeqCst);
    assert!(worker.flush(Duration::from_secs(5)));
    let mut sorted = server.delivered_keys(|r| accepted.lock().contains(&r.index));
    sorted.sort();
    let mut want = keys("k", 25);
    want.sort();
    assert_eq!(sorted, want, "every item once, without a restart");
    let stats = worker.stats();
    assert_eq!(
        (stats.spooled, stats.recovered, stats.sent, stats.dropped()),
        (15, 15, 25, 0),
        "{stats:?}"
    );
    assert_balanced(&stats);
    assert!(worker.shutdown(Duration::from_secs(2)));
    assert_eq!(
        std::fs::read_dir(dir.path()).expect("dir").count(),
        0,
        "files removed"
    );
}

#[test]
fn queue_full_drops_are_counted_warned_once_and_trigger_a_flush() {
    capture_logs();
    let server = TestServer::start(|r| {
        if r.index == 0 {
            Reply::ok().delayed(Duration::from_millis(600))
        } else {
            Reply::ok()
        }
    });
    let worker = impressions_worker(config("it-full").queue_capacity(10), &server.base_url());
    assert!(worker.push(imp("f", "first")));
    // Sends the first item; the server holds the worker for 600 ms.
    assert!(!worker.flush(Duration::from_millis(10)));
    assert!(server.wait_for(Duration::from_secs(3), |r| r.len() == 1));

    let accepted = (0..100)
        .filter(|n| worker.push(imp("f", &format!("k{n}"))))
        .count();
    assert_eq!(accepted, 10);
    let stats = worker.stats();
    assert_eq!((stats.recorded, stats.dropped_queue_full), (101, 90));
    assert_eq!(warnings(&["it-full", "queue full"]).len(), 1);

    // No flush call, no timer (1 h): the full queue's flush request delivers them.
    assert!(server.wait_for(Duration::from_secs(3), |r| r.len() == 2));
    assert_eq!(server.requests()[1].impression_keys(), keys("k", 10));
    assert!(worker.flush(Duration::from_secs(5)));
    let stats = worker.stats();
    assert_eq!((stats.sent, stats.dropped()), (11, 90));
    assert_balanced(&stats);
}

#[test]
fn shutdown_is_idempotent_and_delivers_everything() {
    let server = TestServer::start(|_| Reply::ok());
    let worker = impressions_worker(
        config("it-shutdown").batch_max_items(30),
        &server.base_url(),
    );
    for key in keys("k", 100) {
        assert!(worker.push(imp("f", &key)));
    }
    // Two concurrent shutdowns: both see the worker stopped.
    thread::scope(|s| {
        let a = s.spawn(|| worker.shutdown(Duration::from_secs(5)));
        let b = s.spawn(|| worker.shutdown(Duration::from_secs(5)));
        assert!(a.join().unwrap_or(false));
        assert!(b.join().unwrap_or(false));
    });
    assert_eq!(server.delivered_keys(|_| true), keys("k", 100));

    let started = Instant::now();
    assert!(worker.shutdown(Duration::from_secs(1)));
    assert!(started.elapsed() < Duration::from_millis(100));
    let handle = worker.handle();
    assert!(handle.is_closed());
    assert!(!handle.push(imp("f", "late")));
    assert!(handle.flush(Duration::from_millis(100)));
    let stats = worker.stats();
    assert_eq!(
        (stats.sent, stats.rejected_after_shutdown, stats.recorded),
        (100, 1, 100)
    );
    assert_eq!(stats.queued_now, 0);
    assert_balanced(&stats);
}

#[test]
fn shutdown_deadline_bounds_a_hanging_server() {
    let server = TestServer::start(|_| Reply::ok().delayed(Duration::from_secs(3)));
    let worker = impressions_worker(config("it-hang"), &server.base_url());
    for key in keys("k", 5) {
        assert!(worker.push(imp("f", &key)));
    }
    let started = Instant::now();
    assert!(
        !worker.shutdown(Duration::from_millis(500)),
        "nothing delivered"
    );
    let took = started.elapsed();
    assert!(took < Duration::from_millis(900), "{took:?}");
    let stats = worker.stats();
    assert_eq!(
        (stats.dropped_shutdown, stats.sent, stats.queued_now),
        (5, 0, 0)
    );
    assert_balanced(&stats);
    assert_eq!(server.requests().len(), 1);
}

#[test]
fn dropping_the_last_owner_delivers_everything() {
    let server = TestServer::start(|_| Reply::ok());
    let worker = impressions_worker(config("it-drop"), &server.base_url());
    let handle = worker.handle();
    let producer = {
        let handle = handle.clone();
        thread::spawn(move || {
            for key in keys("t", 25) {
                assert!(handle.push(imp("f", &key)));
            }
        })
    };
    for key in keys("m", 25) {
        assert!(worker.push(imp("f", &key)));
    }
    producer.join().expect("producer thread");
    drop(worker);
    // A handle keeps the worker alive.
    assert!(handle.push(imp("f", "after-owner")));
    assert!(!handle.is_closed());
    drop(handle);
    // Dropping the last handle shut the worker down and delivered everything.
    let delivered: HashSet<String> = server.delivered_keys(|_| true).into_iter().collect();
    assert_eq!(delivered.len(), 51);
    assert!(delivered.contains("after-owner"));
    assert!(
        keys("t", 25)
            .iter()
            .chain(&keys("m", 25))
            .all(|k| delivered.contains(k))
    );
}

/// 4 producers push concurrently; totals are exact and the counters balance.
#[test]
fn concurrent_producers_exact_totals_and_invariant() {
    const THREADS: usize = 4;
    const PER_THREAD: usize = 5_000;
    let server = TestServer::start(|_| Reply::ok());
    let worker = impressions_worker(
        config("it-concurrent")
            .queue_capacity(THREADS * PER_THREAD)
            .flush_max_items(500)
            .batch_max_items(500),
        &server.base_url(),
    );
    let done = AtomicBool::new(false);
    let snapshots = AtomicU64::new(0);
    thread::scope(|s| {
        let monitor = s.spawn(|| {
            // Mid-flight: never over-counted, never more than was pushed.
            while !done.load(Ordering::SeqCst) {
                let stats = worker.stats();
                assert!(stats.is_consistent(), "{stats:?}");
                assert!(stats.recorded <= u64::try_from(THREADS * PER_THREAD).unwrap_or(0));
                snapshots.fetch_add(1, Ordering::Relaxed);
                thread::yield_now();
            }
        });
        let producers: Vec<_> = (0..THREADS)
            .map(|t| {
                let handle = worker.handle();
                s.spawn(move || {
                    for i in 0..PER_THREAD {
                        assert!(handle.push(imp(&format!("t{t}"), &format!("{t}-{i}"))));
                    }
                })
            })
            .collect();
        for p in producers {
            p.join().expect("producer");
        }
        assert!(worker.flush(Duration::from_secs(10)));
        done.store(true, Ordering::SeqCst);
        monitor.join().expect("monitor");
    });
    assert!(snapshots.load(Ordering::Relaxed) > 0);

    let stats = worker.stats();
    let total = u64::try_from(THREADS * PER_THREAD).unwrap_or(0);
    assert_eq!(
        (
            stats.recorded,
            stats.sent,
            stats.queued_now,
            stats.dropped()
        ),
        (total, total, 0, 0)
    );
    assert_balanced(&stats);

    // Every item exactly once, and each producer's items in push order.
    let delivered = server.delivered_keys(|_| true);
    assert_eq!(delivered.len(), THREADS * PER_THREAD);
    let unique: HashSet<&String> = delivered.iter().collect();
    assert_eq!(unique.len(), delivered.len());
    let mut next = [0usize; THREADS];
    for key in &delivered {
        let (t, i) = key.split_once('-').expect("t-i key");
        let (t, i): (usize, usize) = (t.parse().expect("t"), i.parse().expect("i"));
        assert_eq!(i, next[t], "thread {t} out of order");
        next[t] += 1;
    }
}

/// With a small queue some pushes are dropped; the counters still balance exactly.
#[test]
fn concurrent_producers_with_drops_still_balance() {
    let server = TestServer::start(|_| Reply::ok());
    let worker = impressions_worker(
        config("it-pressure")
            .queue_capacity(16)
            .flush_max_items(200),
        &server.base_url(),
    );
    let accepted = AtomicU64::new(0);
    thread::scope(|s| {
        for t in 0..4 {
            let handle = worker.handle();
            let accepted = &accepted;
            s.spawn(move || {
                for i in 0..5_000 {
                    if handle.push(imp("f", &format!("{t}-{i}"))) {
                        accepted.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
    });
    assert!(worker.flush(Duration::from_secs(10)));
    let stats = worker.stats();
    let accepted = accepted.load(Ordering::Relaxed);
    assert_eq!(stats.recorded, 20_000);
    assert_eq!(stats.sent, accepted);
    assert_eq!(stats.dropped_queue_full, 20_000 - accepted);
    assert_balanced(&stats);
    let delivered = server.delivered_keys(|_| true);
    assert_eq!(u64::try_from(delivered.len()).unwrap_or(0), accepted);
}

/// Shutdown while producers are pushing: every accepted item is delivered and every
/// recorded one is accounted for.
#[test]
fn shutdown_racing_with_producers_accounts_for_everything() {
    let server = TestServer::start(|_| Reply::ok());
    let worker = impressions_worker(
        config("it-race").queue_capacity(1024).flush_max_items(256),
        &server.base_url(),
    );
    let accepted = AtomicU64::new(0);
    let refused = AtomicU64::new(0);
    thread::scope(|s| {
        for t in 0..3 {
            let handle = worker.handle();
            let (accepted, refused) = (&accepted, &refused);
            s.spawn(move || {
                for i in 0..50_000 {
                    if handle.push(imp("f", &format!("{t}-{i}"))) {
                        accepted.fetch_add(1, Ordering::Relaxed);
                    } else {
                        refused.fetch_add(1, Ordering::Relaxed);
                        if handle.is_closed() {
                            break;
                        }
                    }
                }
            });
        }
        thread::sleep(Duration::from_millis(30));
        assert!(worker.shutdown(Duration::from_secs(10)));
    });
    let stats = worker.stats();
    let accepted = accepted.load(Ordering::Relaxed);
    assert!(accepted > 0);
    assert_eq!(stats.sent, accepted, "{stats:?}");
    assert_eq!(stats.queued_now, 0);
    assert_eq!(
        stats.recorded,
        accepted + stats.dropped_queue_full + stats.dropped_shutdown
    );
    assert_eq!(
        refused.load(Ordering::Relaxed),
        stats.dropped_queue_full + stats.dropped_shutdown + stats.rejected_after_shutdown
    );
    assert_balanced(&stats);
    let delivered = server.delivered_keys(|_| true);
    assert_eq!(u64::try_from(delivered.len()).unwrap_or(0), accepted);
}

#[test]
fn panicking_slow_listener_never_blocks_producers() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let listener = {
        let seen = Arc::clone(&seen);
        Worker::listener(
            config("it-listener")
                .queue_capacity(8)
                .build()
                .expect("valid config"),
            move |n: &u32| {
                thread::sleep(Duration::from_millis(2));
                assert!(!n.is_multiple_of(3), "listener rejects multiples of 3");
                seen.lock().push(*n);
            },
        )
        .expect("listener starts")
    };
    let started = Instant::now();
    let accepted: Vec<u32> = (0..200).filter(|n| listener.push(*n)).collect();
    let push_time = started.elapsed();
    // 200 items at 2 ms each would take 400 ms if producers waited for the listener.
    assert!(push_time < Duration::from_millis(100), "{push_time:?}");
    assert!(accepted.len() < 200);
    assert!(listener.flush(Duration::from_secs(5)));

    // Keeps working after panics.
    let more: Vec<u32> = (1000..1006).filter(|n| listener.push(*n)).collect();
    assert_eq!(more.len(), 6);
    assert!(listener.flush(Duration::from_secs(5)));

    let all: Vec<u32> = accepted.iter().chain(&more).copied().collect();
    let expected: Vec<u32> = all
        .iter()
        .copied()
        .filter(|n| !n.is_multiple_of(3))
        .collect();
    let panics = u64::try_from(all.len() - expected.len()).unwrap_or(0);
    assert_eq!(*seen.lock(), expected);
    let stats = listener.stats();
    assert_eq!(stats.listener_panics, panics);
    assert_eq!(stats.dropped_rejected, panics);
    assert_eq!(stats.sent, u64::try_from(expected.len()).unwrap_or(0));
    assert_eq!(
        stats.dropped_queue_full,
        206 - u64::try_from(all.len()).unwrap_or(0)
    );
    assert_balanced(&stats);
    assert!(listener.shutdown(Duration::from_secs(1)));
}

/// What the transport double saw of one request.
#[derive(Debug, PartialEq)]
struct Seen {
    path: String,
    body: String,
    headers: Vec<(String, String)>,
    deadline: Option<Instant>,
}

/// A transport double: answers from a script and records requests.
#[derive(Debug)]
struct ScriptedTransport {
    answers: Mutex<Vec<Result<Response, TransportError>>>,
    seen: Mutex<Vec<Seen>>,
}

impl ScriptedTransport {
    fn new(answers: Vec<Result<Response, TransportError>>) -> Arc<Self> {
        Arc::new(Self {
            answers: Mutex::new(answers),
            seen: Mutex::new(Vec::new()),
        })
    }
}

impl Transport for ScriptedTransport {
    fn post(&self, request: &Request<'_>) -> Result<Response, TransportError> {
        self.seen.lock().push(Seen {
            path: request.path.to_owned(),
            body: String::from_utf8_lossy(request.body).into_owned(),
            headers: request.headers.to_vec(),
            deadline: request.deadline,
        });
        let mut answers = self.answers.lock();
        if answers.is_empty() {
            Ok(Response::new(200))
        } else {
            answers.remove(0)
        }
    }
}

#[test]
fn transient_failures_are_retried_until_delivered_however_many() {
    capture_logs();
    // Three kinds of transient failure, eight in a row (more than any attempt budget).
    let mut answers = vec![
        Err(TransportError::Connect("refused".into())),
        Err(TransportError::Timeout("slow".into())),
    ];
    answers.extend((0..6).map(|_| Ok(Response::new(503))));
    let transport = ScriptedTransport::new(answers);
    let worker = Worker::start(
        config("it-retry-on")
            .backoff_base(Duration::from_millis(1))
            .backoff_cap(Duration::from_millis(5))
            .build()
            .expect("valid config"),
        JsonBatcher::new(|_: &u32| 8),
        Arc::clone(&transport) as Arc<dyn Transport>,
        Endpoint::new("/events/bulk").header("X-Extra", "1"),
    )
    .expect("worker starts");
    assert!(worker.push(1));
    assert!(worker.push(2));
    assert!(worker.flush(Duration::from_secs(5)));
    let stats = worker.stats();
    assert_eq!(
        (
            stats.sent,
            stats.dropped(),
            stats.requests,
            stats.failed_attempts
        ),
        (2, 0, 9, 8)
    );
    assert_balanced(&stats);
    let seen = transport.seen.lock();
    assert!(
        seen.iter().all(|s| s.body == "[1,2]"),
        "one batch, in order: {seen:?}"
    );
    assert!(
        seen.iter()
            .all(|s| s.headers == [("X-Extra".to_owned(), "1".to_owned())]),
        "{seen:?}"
    );
    assert!(
        warnings(&["it-retry-on"]).is_empty(),
        "transient failures are not warnings"
    );
}

/// After a retry ends in a non-retryable answer, items wait for the next flush
/// trigger again instead of being sent one by one.
#[test]
fn flush_triggers_return_to_normal_after_a_failure_streak() {
    let transport = ScriptedTransport::new(vec![Ok(Response::new(500)), Ok(Response::new(400))]);
    let worker = Worker::start(
        config("it-streak").build().expect("valid config"),
        JsonBatcher::new(|_: &u32| 8),
        Arc::clone(&transport) as Arc<dyn Transport>,
        Endpoint::new("/events/bulk"),
    )
    .expect("worker starts");
    assert!(worker.push(1));
    assert!(worker.flush(Duration::from_secs(5)));
    assert_eq!(worker.stats().dropped_rejected, 1);
    assert!(worker.push(2));
    assert!(worker.push(3));
    thread::sleep(Duration::from_millis(300));
    // No threshold reached, no tick: nothing may have been sent.
    assert_eq!(transport.seen.lock().len(), 2);
    assert!(worker.flush(Duration::from_secs(5)));
    let bodies: Vec<String> = transport
        .seen
        .lock()
        .iter()
        .map(|s| s.body.clone())
        .collect();
    assert_eq!(bodies, ["[1]", "[1]", "[2,3]"]);
    assert_balanced(&worker.stats());
}

#[test]
fn invalid_requests_are_not_retried() {
    let transport = ScriptedTransport::new(vec![Err(TransportError::Invalid("bad header".into()))]);
    let worker = Worker::start(
        config("it-invalid").build().expect("valid config"),
        JsonBatcher::new(|_: &u32| 8),
        transport,
        Endpoint::new("/events/bulk"),
    )
    .expect("worker starts");
    assert!(worker.push(1));
    assert!(worker.flush(Duration::from_secs(5)));
    let stats = worker.stats();
    assert_eq!((stats.dropped_rejected, stats.requests), (1, 1));
    assert_balanced(&stats);
}

#[test]
fn panicking_encoder_drops_the_batch_only() {
    struct Fragile;
    impl Batcher<u32> for Fragile {
        fn estimate_size(&self, _: &u32) -> usize {
            4
        }
        fn encode(&self, items: &[u32], out: &mut Vec<u8>) -> Result<(), EncodeError> {
            assert!(!items.contains(&13), "unlucky");
            serde_json::to_writer(out, items).map_err(EncodeError::new)
        }
    }
    let transport = ScriptedTransport::new(Vec::new());
    let worker = Worker::start(
        config("it-fragile").build().expect("valid config"),
        Fragile,
        Arc::clone(&transport) as Arc<dyn Transport>,
        Endpoint::new("/x"),
    )
    .expect("worker starts");
    assert!(worker.push(13));
    assert!(worker.flush(Duration::from_secs(5)));
    assert!(worker.push(14));
    assert!(worker.flush(Duration::from_secs(5)));
    let stats = worker.stats();
    assert_eq!(
        (stats.dropped_rejected, stats.sent, stats.requests),
        (1, 1, 1)
    );
    assert_balanced(&stats);
}
