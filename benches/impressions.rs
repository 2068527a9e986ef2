//! Impression recording through the client: what it adds to an evaluation (sustained, and
//! in bursts that leave the cores to the caller), how it scales with threads, and how fast
//! queued impressions are flushed to a loopback server.

use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use splitkit::{Attributes, Client, ImpressionsMode, Snapshot};

#[path = "../tests/support/sink.rs"]
mod sink;
use sink::Sink;

#[path = "support/interleaved.rs"]
mod interleaved;

const DOC: &str = r#"{"ff":{"d":[{"name":"checkout","trafficTypeName":"user","defaultTreatment":"off",
 "changeNumber":5,"algo":2,"seed":7,"trafficAllocation":100,"status":"ACTIVE","conditions":[
 {"conditionType":"ROLLOUT","matcherGroup":{"combiner":"AND","matchers":[
   {"keySelector":{"trafficType":"user","attribute":"plan"},"matcherType":"WHITELIST","negate":false,
    "whitelistMatcherData":{"whitelist":["enterprise","pro"]}}]},
  "partitions":[{"treatment":"on","size":100}],"label":"plan"},
 {"conditionType":"ROLLOUT","matcherGroup":{"combiner":"AND","matchers":[{"matcherType":"ALL_KEYS"}]},
  "partitions":[{"treatment":"on","size":50},{"treatment":"off","size":50}],"label":"default rule"}]}],
 "s":-1,"t":5}}"#;

fn keys(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            format!(
                "{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}",
                i * 2_654_435_761usize % 0xffff_ffff,
                i % 0xffff,
                i % 0xfff,
                (i * 7) % 0xfff,
                i * 31
            )
        })
        .collect()
}

/// The impressions queue of the benches: room for a round of the threads bench, and past
/// the 8 MiB queued impressions allocated up front (allocated as impressions wait).
const QUEUE: usize = 200_000;

/// A queue allocated up front (the default queue size is, too).
const EAGER_QUEUE: usize = 50_000;

fn client(sink: &Sink, mode: ImpressionsMode) -> Client {
    delivering_to(Some(sink), mode)
}

/// A localhost client; without a sink (no events URL and no listener) impressions are
/// counted and go nowhere: the client's evaluation without recording.
fn delivering_to(sink: Option<&Sink>, mode: ImpressionsMode) -> Client {
    queueing(sink, mode, QUEUE)
}

fn queueing(sink: Option<&Sink>, mode: ImpressionsMode, queue: usize) -> Client {
    let (snapshot, _) = Snapshot::from_json(DOC, "bench").expect("doc");
    let mut builder = Client::builder("localhost").snapshot(snapshot);
    if let Some(sink) = sink {
        builder = builder.events_url(sink.url());
    }
    builder
        .impressions_mode(mode)
        .impressions_queue_size(queue)
        .impressions_bulk_size(5_000)
        .build()
        .expect("client")
}

fn bench(c: &mut Criterion) {
    let sink = Sink::start();
    let keys = keys(4096);
    let attrs = Attributes::new().with("plan", "free");
    let (snapshot, _) = Snapshot::from_json(DOC, "bench").expect("doc");

    let mut g = c.benchmark_group("impressions");
    let mut i = 0usize;
    // Evaluation alone: the engine on the compiled snapshot.
    g.bench_function("engine_only", |b| {
        b.iter(|| {
            i = (i + 1) % keys.len();
            std::hint::black_box(
                snapshot
                    .evaluate(&keys[i], None, "checkout", &attrs)
                    .treatment
                    .len(),
            )
        })
    });
    // Evaluation alone with the String that `get_treatment` hands back.
    g.bench_function("engine_with_returned_string", |b| {
        b.iter(|| {
            i = (i + 1) % keys.len();
            std::hint::black_box(
                snapshot
                    .evaluate(&keys[i], None, "checkout", &attrs)
                    .treatment
                    .to_string(),
            )
        })
    });
    for (name, mode) in [
        ("client_debug", ImpressionsMode::Debug),
        ("client_optimized", ImpressionsMode::Optimized),
    ] {
        // Sustained: the delivery worker and the loopback server run during the
        // measurement, on the same two cores; past the queue's capacity impressions are
        // dropped (and counted).
        let cl = client(&sink, mode);
        let mut i = 0usize;
        g.bench_function(name, |b| {
            b.iter(|| {
                i = (i + 1) % keys.len();
                std::hint::black_box(cl.get_treatment(keys[i].as_str(), "checkout", Some(&attrs)))
            })
        });
        cl.destroy(Duration::from_secs(10));
    }
    // What the caller pays: bursts of BURST evaluations (below the worker's wake-up
    // threshold, and far shorter than the 100 ms within which it takes what waits) timed,
    // each followed by an untimed flush, so that delivery does not compete for the cores and
    // nothing is dropped. The first call of a burst wakes the worker (to take what waits
    // 100 ms later): that wake-up is in the time.
    const BURST: u64 = 2_000;
    for (name, mode, sink) in [
        // The baseline: the same call where the impression is built nowhere (it is only
        // counted in `local_only`).
        ("client_not_recording_bursts", ImpressionsMode::Debug, None),
        ("client_debug_bursts", ImpressionsMode::Debug, Some(&sink)),
        (
            "client_optimized_bursts",
            ImpressionsMode::Optimized,
            Some(&sink),
        ),
        ("client_none_bursts", ImpressionsMode::None, Some(&sink)),
    ] {
        let cl = delivering_to(sink, mode);
        let mut i = 0usize;
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut timed = Duration::ZERO;
                let mut left = iters;
                while left > 0 {
                    let n = left.min(BURST);
                    let start = Instant::now();
                    for _ in 0..n {
                        i = (i + 1) % keys.len();
                        std::hint::black_box(cl.get_treatment(
                            keys[i].as_str(),
                            "checkout",
                            Some(&attrs),
                        ));
                    }
                    timed += start.elapsed();
                    assert!(cl.flush(Duration::from_secs(30)));
                    left -= n;
                }
                timed
            })
        });
        let s = cl.stats().impressions;
        assert_eq!(s.queue.dropped(), 0, "{name}: {s:?}");
        cl.destroy(Duration::from_secs(10));
    }
    // Client throughput with 1 and 2 application threads, every impression delivered: each
    // round, every thread makes ROUND calls, then the flush waits until the worker has
    // serialised and posted them all, so the worker's and the loopback server's work is in
    // the time (they share the same two cores). The time is per call over all threads: the
    // speedup of two threads is the ratio of the two lines.
    const ROUND: u64 = 50_000;
    for threads in [1u32, 2] {
        let cl = delivering_to(Some(&sink), ImpressionsMode::Debug);
        g.bench_function(format!("client_debug_delivered_threads/{threads}"), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                let mut left = iters;
                while left > 0 {
                    let n = left.min(ROUND) as usize;
                    let start = Instant::now();
                    std::thread::scope(|s| {
                        for t in 0..threads as usize {
                            let cl = &cl;
                            let keys = &keys;
                            let attrs = &attrs;
                            s.spawn(move || {
                                for j in 0..n {
                                    let k = &keys[(j * 7 + t * 13) % keys.len()];
                                    std::hint::black_box(cl.get_treatment(
                                        k.as_str(),
                                        "checkout",
                                        Some(attrs),
                                    ));
                                }
                            });
                        }
                    });
                    assert!(cl.flush(Duration::from_secs(60)));
                    total += start.elapsed();
                    left -= n as u64;
                }
                total / threads
            })
        });
        let s = cl.stats().impressions;
        assert_eq!(s.queue.dropped(), 0, "{threads} threads: {s:?}");
        cl.destroy(Duration::from_secs(10));
    }
    {
        let cl = client(&sink, ImpressionsMode::Debug);
        let props = serde_json::json!({"plan": "pro", "items": 3, "coupon": null, "gift": false});
        let props = splitkit::Properties::from(props.as_object().cloned().unwrap_or_default());
        let mut i = 0usize;
        g.bench_function("track_with_properties", |b| {
            b.iter(|| {
                i = (i + 1) % keys.len();
                std::hint::black_box(cl.track(
                    &keys[i],
                    "user",
                    "checkout",
                    Some(12.5),
                    Some(&props),
                ))
            })
        });
        cl.destroy(Duration::from_secs(10));
    }
    g.finish();

    let mut g = c.benchmark_group("flush");
    g.sample_size(10);
    g.throughput(criterion::Throughput::Elements(100_000));
    // End to end: from the first evaluation to the last impression acknowledged by the
    // server (the worker sends batches while the evaluations go on), so the rate includes
    // evaluating, recording, encoding and the HTTP round trips.
    g.bench_function("evaluate_and_deliver_100k_debug_impressions", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let cl = client(&sink, ImpressionsMode::Debug);
                let start = Instant::now();
                for n in 0..100_000 {
                    cl.get_treatment(keys[n % keys.len()].as_str(), "checkout", Some(&attrs));
                }
                assert!(cl.flush(Duration::from_secs(30)));
                total += start.elapsed();
                assert_eq!(cl.stats().impressions.queue.sent, 100_000);
                cl.destroy(Duration::from_secs(10));
            }
            total
        })
    });
    g.finish();
    if !std::env::args().any(|a| a == "--list") {
        interleaved(&sink, &keys, &attrs);
    }
    eprintln!(
        "memory per queued impression: {} bytes plus the queue's 16 a slot, keys included \
         up to {} bytes (beyond: a {}-byte Impression on the heap); a listener's copy: {} \
         bytes, strings included up to {} bytes",
        splitkit::limits::QUEUED_IMPRESSION_BYTES,
        splitkit::limits::QUEUED_KEY_BYTES,
        std::mem::size_of::<splitkit::Impression>(),
        std::mem::size_of::<splitkit::Impression>(),
        splitkit::Impression::INLINE_BYTES
    );
}

/// The cost of recording as a paired comparison: bursts of the engine alone, the client not
/// recording, and the client recording in debug and optimized mode, taken in turn (so that
/// every variant sees the same machine state: on a shared VM the speed drifts by 40% from
/// one second to the next, more than the differences measured), each followed by an
/// untimed flush. Prints the median and the fastest tenth of the bursts per variant, and
/// the ratios.
fn interleaved(sink: &Sink, keys: &[String], attrs: &Attributes) {
    const BURST: usize = 2_000;
    const ROUNDS: usize = 300;
    let (snapshot, _) = Snapshot::from_json(DOC, "bench").expect("doc");
    let clients = [
        delivering_to(None, ImpressionsMode::Debug),
        delivering_to(Some(sink), ImpressionsMode::Debug),
        delivering_to(Some(sink), ImpressionsMode::Optimized),
        queueing(Some(sink), ImpressionsMode::Debug, EAGER_QUEUE),
    ];
    let names = [
        "engine",
        "client, not recording",
        "client, debug",
        "client, optimized",
        "client, debug, array queue",
    ];
    let stats = interleaved::bursts(
        names.len(),
        ROUNDS,
        BURST,
        |v, i| {
            let k = keys[i % keys.len()].as_str();
            match v {
                0 => {
                    std::hint::black_box(snapshot.evaluate(k, None, "checkout", attrs).treatment);
                }
                _ => {
                    std::hint::black_box(clients[v - 1].get_treatment(k, "checkout", Some(attrs)));
                }
            }
        },
        |v| {
            if v > 0 {
                assert!(clients[v - 1].flush(Duration::from_secs(30)));
            }
        },
    );
    interleaved::print(
        &format!("interleaved bursts of {BURST} ({ROUNDS} per variant)"),
        &names,
        &stats,
    );
    for (v, name) in names.iter().enumerate().skip(2) {
        eprintln!(
            "  {name} vs client not recording: {:.2}x / {:.2}x; vs engine: {:.2}x / {:.2}x",
            stats[v].median / stats[1].median,
            stats[v].fastest_tenth / stats[1].fastest_tenth,
            stats[v].median / stats[0].median,
            stats[v].fastest_tenth / stats[0].fastest_tenth,
        );
    }
    for c in &clients {
        assert_eq!(c.stats().impressions.queue.dropped(), 0);
        c.destroy(Duration::from_secs(10));
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
