//! Records per second of the attribution analysis on a scaled-down workload (20,000 keys,
//! 200,000 impressions, 200,000 events), with and without every optional statistic, the
//! statistics alone (`PartialReport::report`), and the JSON-lines readers.
//!
//! Run with `cargo bench --bench attribution`. The full-size comparison (10 M + 10 M records
//! over 1 M keys, the default spec and every statistic in alternating runs, with median
//! throughput and peak memory) is `cargo run --release --example attribution_scale`.

#[path = "../examples/support/workload.rs"]
mod workload;

use std::fmt::Write as _;
use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use splitkit::analysis::{
    AttributionEvent, AttributionImpression, ImpressionPass, analyze, read_events, read_impressions,
};
use workload::Workload;

const KEYS: u64 = 20_000;
const RECORDS: u64 = 200_000;

fn records() -> (Vec<AttributionImpression>, Vec<AttributionEvent>) {
    let mut workload = Workload::new(KEYS);
    let (mut imp, mut ev) = Workload::buffers();
    let impressions = (0..RECORDS)
        .map(|_| {
            workload.next_impression(&mut imp);
            imp.clone()
        })
        .collect();
    let events = (0..RECORDS)
        .map(|_| {
            workload.next_event(&mut ev);
            ev.clone()
        })
        .collect();
    (impressions, events)
}

fn as_json_lines(
    impressions: &[AttributionImpression],
    events: &[AttributionEvent],
) -> (String, String) {
    let mut imp_lines = String::new();
    for i in impressions {
        let line = serde_json::json!({"f": i.flag, "i": [{
            "k": i.key, "t": i.treatment, "m": i.time_ms, "c": i.change_number, "r": i.label
        }]});
        writeln!(imp_lines, "{line}").ok();
    }
    let mut event_lines = String::new();
    for e in events {
        let line = serde_json::json!({
            "key": e.key, "trafficTypeName": e.traffic_type, "eventTypeId": e.event_type,
            "value": e.value, "timestamp": e.time_ms, "properties": null
        });
        writeln!(event_lines, "{line}").ok();
    }
    (imp_lines, event_lines)
}

fn bench(c: &mut Criterion) {
    let spec = Workload::spec();
    let (impressions, events) = records();
    let mut group = c.benchmark_group("attribution");
    group.sample_size(10);
    group.throughput(Throughput::Elements(2 * RECORDS));
    group.bench_function("analyze 200k impressions + 200k events, 20k keys", |b| {
        b.iter(|| analyze(&spec, black_box(&impressions), black_box(&events)))
    });
    let full = Workload::spec_with_statistics();
    group.bench_function(
        "analyze with SRM, tiers, CUPED and sequential, 200k + 200k, 20k keys",
        |b| b.iter(|| analyze(&full, black_box(&impressions), black_box(&events))),
    );
    let partial = {
        let mut pass = ImpressionPass::new(&full);
        pass.extend(&impressions);
        let mut pass = pass.finish();
        pass.extend(&events);
        pass.finish()
    };
    group.throughput(Throughput::Elements(1));
    group.bench_function("report: every statistic of a partial report", |b| {
        b.iter(|| black_box(&partial).report())
    });
    let (imp_lines, event_lines) = as_json_lines(&impressions, &events);
    group.throughput(Throughput::Elements(RECORDS));
    group.bench_function("read_impressions 200k lines", |b| {
        b.iter(|| read_impressions(black_box(imp_lines.as_bytes())).count())
    });
    group.bench_function("read_events 200k lines", |b| {
        b.iter(|| read_events(black_box(event_lines.as_bytes())).count())
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
