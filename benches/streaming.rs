//! Push-to-visible latency on loopback: from the backend writing a notification to a caller
//! seeing the changed treatment, for a kill, an inline update, an update that is fetched and
//! a segment update; and how long a dropped stream takes to come back. Criterion reports the
//! time per change (the latency); the percentiles of every sample are printed at the end.

use std::hint::black_box;
use std::time::{Duration, Instant};

use base64::Engine;
use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::json;
use splitkit::{Client, ClientBuilder};

#[path = "../tests/it/server.rs"]
#[expect(dead_code, reason = "shared with tests/it, which uses all of it")]
mod server;
#[path = "../tests/support/sse.rs"]
mod sse;

use server::{Reply, SdkBackend, Server, flag};
use sse::{SEGMENTS, SPLITS, SseServer, token};

struct Backend {
    server: Server,
    sdk: SdkBackend,
    sse: SseServer,
    client: Client,
    /// The flags' change number the backend is at.
    cn: i64,
    segment_cn: i64,
    /// Whether `b` is whitelisted now, and whether `s` is in segment `beta`.
    b_on: bool,
    s_in: bool,
}

impl Backend {
    fn start() -> Backend {
        let server = Server::start();
        let sdk = SdkBackend::new();
        sdk.push_flag(flag("f", 10, &["a"], Some("beta"), "off"));
        sdk.push_segment("beta", 1, &[], &[]);
        sdk.install(&server, "/sdk");
        server.route("/auth/v2/auth", |_| {
            Reply::json(&json!({"pushEnabled": true, "token": token(3600)}))
        });
        let sse = SseServer::start();
        let client = ClientBuilder::new("bench-stream-key")
            .sdk_url(server.url("/sdk"))
            .events_url(server.url("/events"))
            .telemetry_url(server.url("/telemetry"))
            .auth_url(server.url("/auth"))
            .streaming_url(sse.url())
            .build()
            .expect("client");
        client
            .block_until_ready(Duration::from_secs(10))
            .expect("ready");
        assert!(sse.wait_connections(1, Duration::from_secs(10)));
        Backend {
            server,
            sdk,
            sse,
            client,
            cn: 10,
            segment_cn: 1,
            b_on: false,
            s_in: false,
        }
    }

    /// Time until `key` gets `want` (spinning on `get_treatment`, as a hot caller would).
    fn until(&self, key: &str, want: &str, started: Instant) -> Duration {
        while self.client.get_treatment(key, "f", None) != want {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "{key} never got {want}: {:?}",
                self.client.evaluate(key, "f", None)
            );
            // A caller evaluating in a loop, leaving the core now and then (on two cores a
            // pure spin starves the threads that deliver the change).
            std::thread::yield_now();
        }
        started.elapsed()
    }

    /// A kill or an unkill of `f` (alternating): the kill is applied from the notification,
    /// the unkill is fetched.
    fn kill_then_revive(&mut self) -> (Duration, Duration) {
        self.cn += 1;
        let mut killed = flag("f", self.cn, &["a"], Some("beta"), "off");
        killed["killed"] = json!(true);
        self.sdk.push_flag(killed);
        let started = Instant::now();
        self.sse.notify(SPLITS, &json!({"type": "SPLIT_KILL", "changeNumber": self.cn, "splitName": "f", "defaultTreatment": "off"}));
        let kill = self.until("a", "off", started);
        // Wait for the fetch that follows the kill, so that the next step starts clean.
        let cn = self.cn;
        assert!(
            server::eventually(Duration::from_secs(10), || self
                .client
                .manager()
                .flag("f")
                .is_some_and(|v| v.change_number >= cn)),
            "the fetch after the kill of change number {cn} never landed"
        );
        self.cn += 1;
        self.sdk
            .push_flag(flag("f", self.cn, &["a"], Some("beta"), "off"));
        let started = Instant::now();
        self.sse.notify(
            SPLITS,
            &json!({"type": "SPLIT_UPDATE", "changeNumber": self.cn}),
        );
        let fetched = self.until("a", "on", started);
        (kill, fetched)
    }

    /// An inline update: `b` on, then off again (each call turns it over).
    fn inline(&mut self) -> Duration {
        self.b_on = !self.b_on;
        let on = self.b_on;
        let previous = self.cn;
        self.cn += 1;
        let keys: &[&str] = if on { &["a", "b"] } else { &["a"] };
        let def = flag("f", self.cn, keys, Some("beta"), "off");
        self.sdk.push_flag(def.clone());
        let d = base64::engine::general_purpose::STANDARD.encode(def.to_string());
        let started = Instant::now();
        self.sse.notify(SPLITS, &json!({"type": "SPLIT_UPDATE", "changeNumber": self.cn, "pcn": previous, "c": 0, "d": d}));
        self.until("b", if on { "on" } else { "off" }, started)
    }

    /// Key `s` joins or leaves segment `beta` (each call turns it over).
    fn segment(&mut self) -> Duration {
        self.s_in = !self.s_in;
        let join = self.s_in;
        self.segment_cn += 1;
        if join {
            self.sdk.push_segment("beta", self.segment_cn, &["s"], &[]);
        } else {
            self.sdk.push_segment("beta", self.segment_cn, &[], &["s"]);
        }
        let started = Instant::now();
        self.sse.notify(SEGMENTS, &json!({"type": "SEGMENT_UPDATE", "changeNumber": self.segment_cn, "segmentName": "beta"}));
        self.until("s", if join { "on" } else { "off" }, started)
    }

    /// A dropped stream until the next connection.
    fn reconnect(&self) -> Duration {
        let n = self.sse.requests().len();
        let started = Instant::now();
        self.sse.drop_connection();
        assert!(self.sse.wait_connections(n + 1, Duration::from_secs(10)));
        started.elapsed()
    }
}

fn percentiles(name: &str, samples: &mut [Duration]) {
    if samples.is_empty() {
        return;
    }
    samples.sort();
    let at = |p: f64| samples[((samples.len() - 1) as f64 * p).round() as usize];
    eprintln!(
        "{name}: {} samples, median {:?}, p99 {:?}, max {:?}",
        samples.len(),
        at(0.5),
        at(0.99),
        samples[samples.len() - 1]
    );
}

/// `iters` changes made by `step`, each latency kept in `samples`; their total.
fn timed(iters: u64, samples: &mut Vec<Duration>, mut step: impl FnMut() -> Duration) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let d = step();
        samples.push(d);
        total += d;
    }
    total
}

fn bench_push(c: &mut Criterion) {
    let mut b = Backend::start();
    let (mut kills, mut fetches, mut inlines, mut segments, mut reconnects) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut g = c.benchmark_group("push_to_visible");
    g.sample_size(20);
    g.measurement_time(Duration::from_secs(5));
    g.bench_function("kill_then_fetched_update", |bn| {
        bn.iter_custom(|iters| {
            timed(iters, &mut kills, || {
                let (kill, fetched) = b.kill_then_revive();
                fetches.push(fetched);
                kill
            })
        })
    });
    g.bench_function("inline_update", |bn| {
        bn.iter_custom(|iters| timed(iters, &mut inlines, || b.inline()))
    });
    g.bench_function("segment_update", |bn| {
        bn.iter_custom(|iters| timed(iters, &mut segments, || b.segment()))
    });
    g.finish();
    for _ in 0..20 {
        reconnects.push(b.reconnect());
        std::thread::sleep(Duration::from_millis(300));
    }
    percentiles("kill", &mut kills);
    percentiles("update, fetched", &mut fetches);
    percentiles("update, inline", &mut inlines);
    percentiles("segment update", &mut segments);
    percentiles("dropped stream, reconnected", &mut reconnects);
    black_box(&b.server);
    b.client.destroy(Duration::from_secs(5));
}

criterion_group!(benches, bench_push);
criterion_main!(benches);
