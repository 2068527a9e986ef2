//! Delivery benchmarks: producer-side `push` cost, and end-to-end flush throughput
//! of JSON-encoded impressions to a loopback HTTP server.

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use splitkit::sync::{
    Endpoint, HttpConfig, HttpTransport, Request, Response, Transport, TransportError, Worker,
    WorkerConfig,
};

#[path = "../tests/support/impressions.rs"]
mod impressions;
use impressions::{Impression, ImpressionsBatcher, imp};

/// Items pushed between two (untimed) flushes; also the queue capacity.
const CHUNK: u64 = 65_536;

/// Items per flush-throughput iteration.
const FLUSH_ITEMS: u64 = 100_000;

fn make_items(n: u64, offset: u64) -> Vec<Impression> {
    (0..n)
        .map(|i| {
            let i = i + offset;
            imp(&format!("flag-{}", i % 20), &format!("user-{i:06}"))
        })
        .collect()
}

/// Accepts every request without any I/O.
#[derive(Debug)]
struct Discard;

impl Transport for Discard {
    fn post(&self, request: &Request<'_>) -> Result<Response, TransportError> {
        black_box(request.body.len());
        Ok(Response::new(200))
    }
}

fn worker_config(role: &str, capacity: u64) -> WorkerConfig {
    WorkerConfig::builder(role)
        .queue_capacity(usize::try_from(capacity).unwrap_or(usize::MAX))
        .flush_interval(Duration::from_secs(3600))
        .build()
        .expect("valid worker config")
}

fn discard_worker(role: &str) -> Worker<Impression> {
    Worker::start(
        worker_config(role, CHUNK),
        ImpressionsBatcher,
        Arc::new(Discard),
        Endpoint::new("/testImpressions/bulk"),
    )
    .expect("worker starts")
}

/// Times only the pushes of `iters` items by `threads` producers; items are built and
/// the queue is emptied outside the timed sections.
fn timed_pushes(worker: &Worker<Impression>, iters: u64, threads: u64) -> Duration {
    let mut total = Duration::ZERO;
    let mut done = 0;
    while done < iters {
        let n = (iters - done).min(CHUNK);
        let per_thread = n.div_ceil(threads);
        let batches: Vec<Vec<Impression>> = (0..threads)
            .map(|t| make_items(per_thread.min(n - (t * per_thread).min(n)), t * per_thread))
            .collect();
        let start = Instant::now();
        if threads == 1 {
            for batch in batches {
                for item in batch {
                    black_box(worker.push(item));
                }
            }
        } else {
            thread::scope(|s| {
                for batch in batches {
                    let handle = worker.handle();
                    s.spawn(move || {
                        for item in batch {
                            black_box(handle.push(item));
                        }
                    });
                }
            });
        }
        total += start.elapsed();
        assert!(worker.flush(Duration::from_secs(30)));
        done += n;
    }
    total
}

fn bench_push(c: &mut Criterion) {
    let mut group = c.benchmark_group("push");
    group.throughput(Throughput::Elements(1));
    let worker = discard_worker("bench-push");
    group.bench_function("1_thread", |b| {
        b.iter_custom(|iters| timed_pushes(&worker, iters, 1));
    });
    group.bench_function("2_threads", |b| {
        b.iter_custom(|iters| timed_pushes(&worker, iters, 2));
    });
    let stats = worker.stats();
    assert_eq!(stats.dropped(), 0, "{stats:?}");
    assert!(worker.shutdown(Duration::from_secs(10)));

    // Queue full: the listener blocks until the bench is over, so every push drops.
    let (release_tx, release_rx) = crossbeam_channel::bounded::<()>(0);
    let full = Worker::listener(
        WorkerConfig::builder("bench-full")
            .queue_capacity(1)
            .build()
            .expect("valid worker config"),
        move |_: &Impression| {
            let _ = release_rx.recv();
        },
    )
    .expect("listener starts");
    group.bench_function("queue_full_drop", |b| {
        b.iter_custom(|iters| {
            let items = make_items(iters, 0);
            let start = Instant::now();
            for item in items {
                black_box(full.push(item));
            }
            start.elapsed()
        });
    });
    drop(release_tx);
    assert!(full.shutdown(Duration::from_secs(10)));
    group.finish();
}

/// A minimal loopback server: reads every body, answers 200.
struct Sink {
    server: Arc<tiny_http::Server>,
    bytes: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl Sink {
    fn start() -> Self {
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").expect("bind"));
        let bytes = Arc::new(AtomicU64::new(0));
        let thread = {
            let (server, bytes) = (Arc::clone(&server), Arc::clone(&bytes));
            thread::spawn(move || {
                let mut body = Vec::new();
                for mut request in server.incoming_requests() {
                    body.clear();
                    let _ = std::io::Read::read_to_end(request.as_reader(), &mut body);
                    bytes.fetch_add(body.len() as u64, Ordering::Relaxed);
                    let _ = request.respond(tiny_http::Response::empty(200));
                }
            })
        };
        Self {
            server,
            bytes,
            thread: Some(thread),
        }
    }

    fn base_url(&self) -> String {
        let port = self.server.server_addr().to_ip().expect("ip").port();
        format!("http://127.0.0.1:{port}/api")
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn bench_flush(c: &mut Criterion) {
    let sink = Sink::start();
    let transport = HttpTransport::new(
        HttpConfig::builder(sink.base_url(), "bench-key")
            .build()
            .expect("valid http config"),
    );
    let worker = Worker::start(
        worker_config("bench-flush", FLUSH_ITEMS),
        ImpressionsBatcher,
        Arc::new(transport),
        Endpoint::new("/testImpressions/bulk").header("SplitSDKImpressionsMode", "OPTIMIZED"),
    )
    .expect("worker starts");
    let mut group = c.benchmark_group("flush");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(8));
    group.throughput(Throughput::Elements(FLUSH_ITEMS));
    group.bench_function("impressions_100k_to_loopback", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for i in 0..iters {
                // Built before the clock starts, on this thread: nothing else runs
                // while the delivery is timed.
                let items = make_items(FLUSH_ITEMS, i * FLUSH_ITEMS);
                let start = Instant::now();
                for item in items {
                    worker.push(item);
                }
                assert!(worker.flush(Duration::from_secs(60)));
                total += start.elapsed();
            }
            total
        });
    });
    group.finish();

    let stats = worker.stats();
    assert!(worker.shutdown(Duration::from_secs(10)));
    assert_eq!(stats.dropped(), 0, "{stats:?}");
    let bytes = sink.bytes.load(Ordering::Relaxed);
    eprintln!(
        "flush: {} items in {} requests, {} body bytes ({:.1} bytes/item); \
         size_of::<Impression>() = {} bytes",
        stats.sent,
        stats.requests,
        bytes,
        bytes as f64 / stats.sent.max(1) as f64,
        std::mem::size_of::<Impression>()
    );
}

criterion_group!(benches, bench_push, bench_flush);
criterion_main!(benches);
