//! Delivery benchmarks through the public API: what `track` costs the calling thread (one
//! and two producers), end-to-end delivery of events to a loopback HTTP server, and the disk
//! spool's write throughput while the events host is down (with the memory a retained
//! impression holds). (Impressions have their own groups in `benches/impressions.rs`.)

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use splitkit::{Client, Properties};

#[path = "../tests/it/server.rs"]
#[expect(dead_code, reason = "shared with tests/it, which uses all of it")]
mod server;
#[path = "../tests/support/sink.rs"]
mod sink;
use server::dead_port;
use sink::Sink;

/// Events tracked per end-to-end iteration.
const FLUSH_EVENTS: u64 = 100_000;

/// A localhost client delivering events to `sink`, with a queue that holds a whole
/// iteration (so nothing is dropped while the timed loop outruns the worker).
fn client(sink: &Sink) -> Client {
    Client::builder("localhost")
        .split_file("examples/flags.json")
        .events_url(sink.url())
        .events_queue_size(usize::try_from(FLUSH_EVENTS).unwrap_or(usize::MAX))
        .build()
        .expect("client starts")
}

fn keys(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("user-{i:06}")).collect()
}

/// Times `iters` calls of `track` spread over `threads` producers, then delivers them
/// (untimed), so that the queue never fills.
fn timed_tracks(cl: &Client, keys: &[String], iters: u64, threads: u64) -> Duration {
    let mut total = Duration::ZERO;
    let mut done = 0;
    while done < iters {
        let n = (iters - done).min(FLUSH_EVENTS / 2);
        let per_thread = n.div_ceil(threads);
        let start = Instant::now();
        std::thread::scope(|s| {
            for t in 0..threads {
                s.spawn(move || {
                    for i in 0..per_thread {
                        let key =
                            &keys[usize::try_from(t * per_thread + i).unwrap_or(0) % keys.len()];
                        black_box(cl.track(key, "user", "checkout", Some(1.0), None).is_ok());
                    }
                });
            }
        });
        total += start.elapsed();
        assert!(cl.flush(Duration::from_secs(60)));
        done += n;
    }
    total
}

fn bench_track(c: &mut Criterion) {
    let sink = Sink::start();
    let cl = client(&sink);
    let keys = keys(4096);
    let mut g = c.benchmark_group("track");
    g.throughput(Throughput::Elements(1));
    g.bench_function("1_thread", |b| {
        b.iter_custom(|iters| timed_tracks(&cl, &keys, iters, 1));
    });
    g.bench_function("2_threads", |b| {
        b.iter_custom(|iters| timed_tracks(&cl, &keys, iters, 2));
    });
    g.finish();
    let stats = cl.stats().events;
    assert!(cl.destroy(Duration::from_secs(10)));
    assert_eq!(stats.queue.dropped(), 0, "{stats:?}");
}

fn bench_flush(c: &mut Criterion) {
    let sink = Sink::start();
    let keys = keys(4096);
    let props = Properties::new().with("plan", "pro").with("items", 3);
    let mut g = c.benchmark_group("flush");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(8));
    g.throughput(Throughput::Elements(FLUSH_EVENTS));
    // End to end: from the first `track` to the last batch acknowledged by the server.
    g.bench_function("track_and_deliver_100k_events", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let cl = client(&sink);
                let start = Instant::now();
                for n in 0..FLUSH_EVENTS {
                    let key = &keys[usize::try_from(n).unwrap_or(0) % keys.len()];
                    black_box(
                        cl.track(key, "user", "checkout", None, Some(&props))
                            .is_ok(),
                    );
                }
                assert!(cl.flush(Duration::from_secs(60)));
                total += start.elapsed();
                let stats = cl.stats().events;
                assert_eq!(stats.queue.sent, FLUSH_EVENTS, "{stats:?}");
                cl.destroy(Duration::from_secs(10));
            }
            total
        });
    });
    g.finish();
}

/// Impressions evaluated per spool iteration.
const SPOOL_IMPRESSIONS: u64 = 100_000;

fn bench_spool(c: &mut Criterion) {
    let keys = keys(4096);
    let port = dead_port();
    let mut g = c.benchmark_group("spool");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(10));
    g.throughput(Throughput::Elements(SPOOL_IMPRESSIONS));
    // The events host is down: beyond one retained batch everything goes to the spool, as
    // the impressions are made; the clock stops when the last one is on disk (destroy).
    g.bench_function("evaluate_and_spool_100k_debug_impressions", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let dir = tempfile::tempdir().expect("tempdir");
                let cl = Client::builder("localhost")
                    .split_file("examples/flags.json")
                    .events_url(format!("http://127.0.0.1:{port}/api"))
                    .impressions_mode(splitkit::ImpressionsMode::Debug)
                    .impressions_queue_size(
                        usize::try_from(SPOOL_IMPRESSIONS).unwrap_or(usize::MAX),
                    )
                    .max_retained_items(5_000)
                    .spool_directory(dir.path())
                    .build()
                    .expect("client starts");
                let start = Instant::now();
                for n in 0..SPOOL_IMPRESSIONS {
                    let key = &keys[usize::try_from(n).unwrap_or(0) % keys.len()];
                    black_box(cl.get_treatment(key.as_str(), "new_checkout", None));
                }
                cl.destroy(Duration::from_millis(500));
                total += start.elapsed();
                let s = cl.stats().impressions.queue;
                assert_eq!((s.spooled, s.dropped()), (SPOOL_IMPRESSIONS, 0), "{s}");
            }
            total
        });
    });
    g.finish();
    eprintln!(
        "memory held per retained impression: {} bytes (keys inline up to {} bytes; a \
         longer key adds one heap impression)",
        splitkit::limits::QUEUED_IMPRESSION_BYTES,
        splitkit::limits::QUEUED_KEY_BYTES
    );
}

criterion_group!(benches, bench_track, bench_flush, bench_spool);
criterion_main!(benches);
