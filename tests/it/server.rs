//! A recording HTTP server on 127.0.0.1 for the client tests, and a fake of Split's SDK API
//! that runs on it.
//!
//! [`Server`] listens on an ephemeral loopback port (tiny_http, one background thread),
//! records every request (method, path, query, headers, body, arrival time, the status it was
//! answered with) and answers from a script: per path prefix, one-shot replies first
//! ([`Server::script`]), then a handler ([`Server::route`]), then `200` with an empty body.
//! A [`Reply`] sets status, headers, body, a delay, or holds the answer until a [`Gate`]
//! opens, so tests can play 500, 429 with `Retry-After`, 413, a hanging server or garbage.
//! Everything is bounded: recorded requests, body sizes and every wait. The server stops when
//! dropped.
//!
//! [`SdkBackend`] serves `splitChanges` (spec 1.3, paged until `since == till`) and
//! `segmentChanges/<name>` from definitions that tests push while the client runs.

use std::collections::{BTreeMap, VecDeque};
use std::io::Read;
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use splitkit::ClientBuilder;

/// Most requests recorded; later ones are answered but not kept (counted in `overflow`).
const MAX_RECORDED: usize = 20_000;
/// Largest request body read.
const MAX_BODY: u64 = 16 * 1024 * 1024;
/// Longest a held reply waits for its gate.
const MAX_HOLD: Duration = Duration::from_secs(15);

/// Locks a mutex, ignoring poisoning (a failed assertion elsewhere must not cascade).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// Arrival order, from 0.
    pub index: usize,
    pub method: String,
    /// The path, without the query.
    pub path: String,
    /// The query string, without `?` (empty when none).
    pub query: String,
    pub headers: Vec<(String, String)>,
    /// The body, gunzipped when sent with `Content-Encoding: gzip`.
    pub body: Vec<u8>,
    /// The body as it came on the wire.
    pub raw: Vec<u8>,
    pub at: Instant,
    /// The status it was answered with (0 while the handler decides).
    pub status: u16,
}

impl Recorded {
    /// The first header of that name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON (`Null` when it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// A query parameter.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v)
    }

    /// Whether the answer was 2xx.
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// A gate that held replies wait on; opening it releases them all.
#[derive(Debug, Clone, Default)]
pub struct Gate(Arc<(Mutex<bool>, Condvar)>);

impl Gate {
    /// A closed gate.
    pub fn closed() -> Gate {
        Gate::default()
    }

    /// Opens the gate (idempotent).
    pub fn open(&self) {
        *lock(&self.0.0) = true;
        self.0.1.notify_all();
    }

    /// Waits until the gate is open, at most `bound`.
    pub fn wait(&self, bound: Duration) {
        let deadline = Instant::now() + bound;
        let mut open = lock(&self.0.0);
        while !*open {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            open = self
                .0
                .1
                .wait_timeout(open, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

/// What the server answers.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    delay: Duration,
    gate: Option<Gate>,
}

impl Reply {
    /// `status` with an empty body.
    pub fn status(status: u16) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: Vec::new(),
            delay: Duration::ZERO,
            gate: None,
        }
    }

    /// 200 with an empty body.
    pub fn ok() -> Reply {
        Reply::status(200)
    }

    /// 200 with a JSON body.
    pub fn json(value: &Value) -> Reply {
        Reply::ok()
            .header("Content-Type", "application/json")
            .body(value.to_string())
    }

    /// Sets the body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Reply {
        self.body = body.into();
        self
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// Answers after `delay` (the server keeps accepting meanwhile).
    pub fn delay(mut self, delay: Duration) -> Reply {
        self.delay = delay;
        self
    }

    /// Answers once `gate` opens (or after 15 s at most).
    pub fn held(mut self, gate: &Gate) -> Reply {
        self.gate = Some(gate.clone());
        self
    }
}

type Handler = Box<dyn FnMut(&Recorded) -> Reply + Send>;

#[derive(Default)]
struct Script {
    /// Handlers by path prefix, first match wins.
    routes: Vec<(String, Handler)>,
    /// One-shot replies by path prefix, used before the routes.
    once: Vec<(String, VecDeque<Reply>)>,
}

impl Script {
    fn reply(&mut self, r: &Recorded) -> Reply {
        for (prefix, replies) in &mut self.once {
            if r.path.starts_with(prefix.as_str())
                && let Some(reply) = replies.pop_front()
            {
                return reply;
            }
        }
        for (prefix, handler) in &mut self.routes {
            if r.path.starts_with(prefix.as_str()) {
                return handler(r);
            }
        }
        Reply::ok()
    }
}

#[derive(Default)]
struct Log {
    requests: Vec<Recorded>,
    overflow: usize,
}

#[derive(Default)]
struct Shared {
    log: Mutex<Log>,
    changed: Condvar,
    script: Mutex<Script>,
}

/// The recording server. Stops (and joins its thread) when dropped.
pub struct Server {
    port: u16,
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
    http: Arc<tiny_http::Server>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    /// A server on an ephemeral port of 127.0.0.1.
    pub fn start() -> Server {
        Server::start_on(0)
    }

    /// A server on `port` of 127.0.0.1 (0: ephemeral).
    pub fn start_on(port: u16) -> Server {
        let listener = TcpListener::bind(("127.0.0.1", port))
            .unwrap_or_else(|e| panic!("bind 127.0.0.1:{port}: {e}"));
        // Accepted connections inherit TCP_NODELAY, as a real server's have it.
        let listener = socket2::Socket::from(listener);
        listener.set_tcp_nodelay(true).expect("TCP_NODELAY");
        let http = Arc::new(
            tiny_http::Server::from_listener(std::net::TcpListener::from(listener), None)
                .unwrap_or_else(|e| panic!("serve 127.0.0.1:{port}: {e}")),
        );
        let port = http
            .server_addr()
            .to_ip()
            .map(|a| a.port())
            .expect("an IP listener");
        let shared = Arc::new(Shared::default());
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (http, shared, stop) = (Arc::clone(&http), Arc::clone(&shared), Arc::clone(&stop));
            thread::Builder::new()
                .name(format!("test-server-{port}"))
                .spawn(move || serve(&http, &shared, &stop))
                .expect("spawn the test server")
        };
        Server {
            port,
            shared,
            stop,
            http,
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:<port><base>`, e.g. `url("/events")`.
    pub fn url(&self, base: &str) -> String {
        format!("http://127.0.0.1:{}{base}", self.port)
    }

    /// Answers requests whose path starts with `prefix` with `handler` (first route added
    /// wins). The handler runs on the server thread with the script locked: it must not call
    /// back into the server.
    pub fn route(&self, prefix: &str, handler: impl FnMut(&Recorded) -> Reply + Send + 'static) {
        lock(&self.shared.script)
            .routes
            .push((prefix.to_string(), Box::new(handler)));
    }

    /// Answers the next requests under `prefix` with `replies`, in order, before any route.
    pub fn script(&self, prefix: &str, replies: impl IntoIterator<Item = Reply>) {
        let mut script = lock(&self.shared.script);
        let replies: VecDeque<Reply> = replies.into_iter().collect();
        match script.once.iter_mut().find(|(p, _)| p == prefix) {
            Some((_, queue)) => queue.extend(replies),
            None => script.once.push((prefix.to_string(), replies)),
        }
    }

    /// Every request recorded so far.
    pub fn requests(&self) -> Vec<Recorded> {
        let log = lock(&self.shared.log);
        assert_eq!(log.overflow, 0, "the test server stopped recording");
        log.requests.clone()
    }

    /// Requests whose path starts with `prefix`.
    pub fn requests_to(&self, prefix: &str) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.path.starts_with(prefix))
            .collect()
    }

    /// Waits (at most `timeout`) until `pred` holds for the recorded requests.
    pub fn wait_for(&self, timeout: Duration, pred: impl Fn(&[Recorded]) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        let mut log = lock(&self.shared.log);
        loop {
            if pred(&log.requests) {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            log = self
                .shared
                .changed
                .wait_timeout(log, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Waits until `n` requests under `prefix` have been recorded; panics after `timeout`.
    pub fn expect_requests(&self, prefix: &str, n: usize, timeout: Duration) -> Vec<Recorded> {
        let done = self.wait_for(timeout, |rs| {
            rs.iter().filter(|r| r.path.starts_with(prefix)).count() >= n
        });
        let got = self.requests_to(prefix);
        assert!(
            done,
            "expected {n} requests to {prefix} within {timeout:?}, got {}: {:?}",
            got.len(),
            got.iter()
                .map(|r| format!("{} {}?{} -> {}", r.method, r.path, r.query, r.status))
                .collect::<Vec<_>>()
        );
        got
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.http.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(http: &tiny_http::Server, shared: &Shared, stop: &AtomicBool) {
    while !stop.load(Ordering::SeqCst) {
        let mut request = match http.recv_timeout(Duration::from_millis(20)) {
            Ok(Some(r)) => r,
            Ok(None) => continue,
            Err(_) => break,
        };
        let mut raw = Vec::new();
        let _ = request.as_reader().take(MAX_BODY).read_to_end(&mut raw);
        let headers: Vec<(String, String)> = request
            .headers()
            .iter()
            .map(|h| (h.field.to_string(), h.value.to_string()))
            .collect();
        let gzipped = headers
            .iter()
            .any(|(n, v)| n.eq_ignore_ascii_case("content-encoding") && v.trim() == "gzip");
        let body = if gzipped { gunzip(&raw) } else { raw.clone() };
        let (path, query) = match request.url().split_once('?') {
            Some((p, q)) => (p.to_string(), q.to_string()),
            None => (request.url().to_string(), String::new()),
        };
        let mut recorded = Recorded {
            index: 0,
            method: request.method().as_str().to_string(),
            path,
            query,
            headers,
            body,
            raw,
            at: Instant::now(),
            status: 0,
        };
        let reply = lock(&shared.script).reply(&recorded);
        recorded.status = reply.status;
        {
            let mut log = lock(&shared.log);
            recorded.index = log.requests.len() + log.overflow;
            if log.requests.len() < MAX_RECORDED {
                log.requests.push(recorded);
            } else {
                log.overflow += 1;
            }
        }
        shared.changed.notify_all();
        let mut response =
            tiny_http::Response::from_data(reply.body).with_status_code(reply.status);
        for (name, value) in &reply.headers {
            if let Ok(h) = tiny_http::Header::from_bytes(name.as_bytes(), value.as_bytes()) {
                response.add_header(h);
            }
        }
        if reply.delay.is_zero() && reply.gate.is_none() {
            let _ = request.respond(response);
        } else {
            // Answer late from a side thread so the server keeps accepting.
            let (delay, gate) = (reply.delay, reply.gate);
            thread::spawn(move || {
                if let Some(g) = gate {
                    g.wait(MAX_HOLD);
                }
                thread::sleep(delay);
                let _ = request.respond(response);
            });
        }
    }
}

fn gunzip(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let _ = flate2::read::GzDecoder::new(raw)
        .take(MAX_BODY)
        .read_to_end(&mut out);
    out
}

/// A loopback port nobody listens on, for the rest of the test run: connections are
/// refused. A socket stays bound to it without listening, so that no other test's server
/// is given the port meanwhile (a port that was merely free can be the next one handed
/// out, and a client posting to a "dead" port then reached a server holding its requests).
pub fn dead_port() -> u16 {
    let socket = unlistened(0).expect("a free port");
    let port = socket
        .local_addr()
        .ok()
        .and_then(|a| a.as_socket())
        .expect("a bound address")
        .port();
    static HELD: Mutex<Vec<socket2::Socket>> = Mutex::new(Vec::new());
    HELD.lock().unwrap_or_else(|e| e.into_inner()).push(socket);
    port
}

/// A TCP socket bound to `127.0.0.1:port` (0: a free port) that does not listen: it keeps
/// the port from others, and connections to it are refused.
pub fn unlistened(port: u16) -> std::io::Result<socket2::Socket> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    // A port just left by a server may still have connections in TIME_WAIT.
    socket.set_reuse_address(true)?;
    socket.bind(&std::net::SocketAddr::from(([127, 0, 0, 1], port)).into())?;
    Ok(socket)
}

/// Polls `f` every 2 ms until it returns true, at most `timeout`.
pub fn eventually(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(2));
    }
}

/// `examples/<file>`.
pub fn examples(file: &str) -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(file)
}

/// A localhost client on `examples/flags.json` (and its segments) that sends impressions and
/// events to `server` (`/events`) and unique keys to `/telemetry`. Periodic sends are far
/// off, so only `flush`, thresholds and shutdown send anything during a test.
pub fn localhost(server: &Server) -> ClientBuilder {
    ClientBuilder::new("localhost")
        .split_file(examples("flags.json"))
        .segment_directory(examples("segments"))
        .events_url(server.url("/events"))
        .telemetry_url(server.url("/telemetry"))
        .events_push_rate(Duration::from_secs(60))
        .request_timeout(Duration::from_secs(5))
        .shutdown_timeout(Duration::from_secs(5))
}

/// A remote client (SDK key `key`) with every URL on `server`: the SDK API under `/sdk`,
/// events under `/events`, telemetry under `/telemetry`, polling only (the streaming tests
/// build their own). Nothing else is ever contacted.
pub fn remote(server: &Server, key: &str) -> ClientBuilder {
    ClientBuilder::new(key)
        .streaming_enabled(false)
        .sdk_url(server.url("/sdk"))
        .events_url(server.url("/events"))
        .telemetry_url(server.url("/telemetry"))
        .enforce_minimum_rates(false)
        .events_push_rate(Duration::from_secs(60))
        .request_timeout(Duration::from_secs(5))
        .shutdown_timeout(Duration::from_secs(5))
}

// ---------------------------------------------------------------------------------------------
// A fake of the SDK API.

/// One change of a segment: (change number, keys added, keys removed).
type SegmentChange = (i64, Vec<String>, Vec<String>);

#[derive(Debug, Default)]
struct Backend {
    /// Latest definition of each flag, with its change number.
    flags: BTreeMap<String, (i64, Value)>,
    segments: BTreeMap<String, Vec<SegmentChange>>,
    /// Most flags (or segment changes) per page; 0: no limit.
    page_size: usize,
    /// A CDN that keeps serving nothing new unless asked past it (`till=`).
    stale_cache: bool,
}

/// Flag definitions and segments served as Split's SDK API does, changed while clients run.
#[derive(Debug, Clone, Default)]
pub struct SdkBackend(Arc<Mutex<Backend>>);

impl SdkBackend {
    pub fn new() -> SdkBackend {
        SdkBackend::default()
    }

    /// Serves `splitChanges` and `segmentChanges` under `base` (e.g. `/sdk`) of `server`.
    pub fn install(&self, server: &Server, base: &str) {
        let b = self.clone();
        server.route(&format!("{base}/splitChanges"), move |r| b.split_changes(r));
        let b = self.clone();
        let prefix = format!("{base}/segmentChanges/");
        server.route(&prefix.clone(), move |r| {
            let name = r.path.strip_prefix(&prefix).unwrap_or_default().to_string();
            b.segment_changes(&name, r)
        });
    }

    /// At most `n` flags (or segment changes) per page.
    pub fn page_size(&self, n: usize) {
        lock(&self.0).page_size = n;
    }

    /// With `on`, requests without `till=` get nothing newer than they ask from (a CDN's
    /// stale cache); with `till=`, the real answer.
    pub fn stale_cache(&self, on: bool) {
        lock(&self.0).stale_cache = on;
    }

    /// Adds or replaces a flag (its `changeNumber` must grow with each version).
    pub fn push_flag(&self, def: Value) {
        let name = def["name"].as_str().expect("a flag name").to_string();
        let cn = def["changeNumber"].as_i64().expect("a change number");
        lock(&self.0).flags.insert(name, (cn, def));
    }

    /// Adds a change of segment `name`.
    pub fn push_segment(&self, name: &str, cn: i64, added: &[&str], removed: &[&str]) {
        let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect();
        lock(&self.0)
            .segments
            .entry(name.to_string())
            .or_default()
            .push((cn, strings(added), strings(removed)));
    }

    fn split_changes(&self, r: &Recorded) -> Reply {
        let num = |k: &str| r.param(k).and_then(|v| v.parse::<i64>().ok());
        let (Some(since), Some(rb_since)) = (num("since"), num("rbSince")) else {
            return Reply::status(400).body("since and rbSince are required");
        };
        let b = lock(&self.0);
        if b.stale_cache && r.param("till").is_none() {
            return Reply::json(&json!({
                "ff": {"d": [], "s": since, "t": since},
                "rbs": {"d": [], "s": rb_since, "t": rb_since},
            }));
        }
        let mut newer: Vec<&(i64, Value)> =
            b.flags.values().filter(|(cn, _)| *cn > since).collect();
        newer.sort_by_key(|(cn, _)| *cn);
        if b.page_size > 0 {
            newer.truncate(b.page_size);
        }
        let till = newer.last().map_or(since, |(cn, _)| *cn);
        let d: Vec<&Value> = newer.iter().map(|(_, v)| v).collect();
        Reply::json(&json!({
            "ff": {"d": d, "s": since, "t": till},
            "rbs": {"d": [], "s": rb_since, "t": rb_since},
        }))
    }

    fn segment_changes(&self, name: &str, r: &Recorded) -> Reply {
        let Some(since) = r.param("since").and_then(|v| v.parse::<i64>().ok()) else {
            return Reply::status(400).body("since is required");
        };
        let b = lock(&self.0);
        let mut changes: Vec<&SegmentChange> = b
            .segments
            .get(name)
            .map(|c| c.iter().filter(|(cn, _, _)| *cn > since).collect())
            .unwrap_or_default();
        changes.sort_by_key(|(cn, _, _)| *cn);
        if b.page_size > 0 {
            changes.truncate(b.page_size);
        }
        let till = changes.last().map_or(since, |(cn, _, _)| *cn);
        let mut added: Vec<&String> = Vec::new();
        let mut removed: Vec<&String> = Vec::new();
        for (_, a, rm) in changes {
            added.extend(a);
            removed.extend(rm);
        }
        Reply::json(&json!({"name": name, "added": added, "removed": removed,
                            "since": since, "till": till}))
    }
}

/// An SDK API on `server` (under `/sdk`) with flag `f` (`on` for key `a`, else `off`) whose
/// first `splitChanges` answer waits for the gate returned: a remote client stays not ready
/// until the gate opens.
pub fn not_ready_until_opened(server: &Server) -> Gate {
    let gate = Gate::closed();
    server.script("/sdk/splitChanges", [Reply::ok().held(&gate)]);
    let backend = SdkBackend::new();
    backend.push_flag(flag("f", 10, &["a"], None, "off"));
    backend.install(server, "/sdk");
    gate
}

/// A flag definition: `on` for the keys of `whitelist`, then for segment `segment` (if any),
/// then everyone gets `rest`; default treatment `off`.
pub fn flag(name: &str, cn: i64, whitelist: &[&str], segment: Option<&str>, rest: &str) -> Value {
    let mut conditions = vec![json!({
        "conditionType": "WHITELIST",
        "matcherGroup": {"combiner": "AND", "matchers": [
            {"keySelector": null, "matcherType": "WHITELIST", "negate": false,
             "whitelistMatcherData": {"whitelist": whitelist}}]},
        "partitions": [{"treatment": "on", "size": 100}],
        "label": "whitelisted"
    })];
    if let Some(s) = segment {
        conditions.push(json!({
            "conditionType": "ROLLOUT",
            "matcherGroup": {"combiner": "AND", "matchers": [
                {"keySelector": {"trafficType": "user", "attribute": null},
                 "matcherType": "IN_SEGMENT", "negate": false,
                 "userDefinedSegmentMatcherData": {"segmentName": s}}]},
            "partitions": [{"treatment": "on", "size": 100}],
            "label": format!("in segment {s}")
        }));
    }
    conditions.push(json!({
        "conditionType": "ROLLOUT",
        "matcherGroup": {"combiner": "AND", "matchers": [
            {"keySelector": {"trafficType": "user", "attribute": null},
             "matcherType": "ALL_KEYS", "negate": false}]},
        "partitions": [{"treatment": rest, "size": 100}],
        "label": "default rule"
    }));
    json!({
        "name": name, "trafficTypeName": "user", "killed": false, "defaultTreatment": "off",
        "changeNumber": cn, "algo": 2, "trafficAllocation": 100, "trafficAllocationSeed": 1,
        "seed": 7, "status": "ACTIVE", "conditions": conditions
    })
}

/// `(flag, item)` of every impression in the 2xx-answered `testImpressions/bulk` requests to
/// `bulk`, in wire order.
pub fn delivered_impressions(server: &Server, bulk: &str) -> Vec<(String, Value)> {
    server
        .requests_to(bulk)
        .iter()
        .filter(|r| r.ok())
        .flat_map(bulk_items)
        .collect()
}

/// `(flag, item)` of every impression of one `testImpressions/bulk` body.
pub fn bulk_items(r: &Recorded) -> Vec<(String, Value)> {
    let body = r.json();
    let groups = body
        .as_array()
        .unwrap_or_else(|| panic!("not a bulk body: {body}"));
    let mut out = Vec::new();
    for g in groups {
        let f = g["f"].as_str().expect("f").to_string();
        for i in g["i"].as_array().expect("i") {
            out.push((f.clone(), i.clone()));
        }
    }
    out
}
