//! Processes 10 million impressions and 10 million events over 1 million keys once, then
//! prints records per second and peak memory (VmHWM).
//!
//! Run with `cargo run --release --example attribution_scale`. The records are generated on
//! the fly into reused buffers, so the input itself takes no memory. The throughput is given
//! with and without the generation time (measured in a separate dry run).

#[path = "support/workload.rs"]
#[expect(dead_code, reason = "the spec with every statistic is the bench's")]
mod workload;

use std::hint::black_box;
use std::time::{Duration, Instant};

use splitkit::analysis::ImpressionPass;
use workload::Workload;

const KEYS: u64 = 1_000_000;
const IMPRESSIONS: u64 = 10_000_000;
const EVENTS: u64 = 10_000_000;

/// Time to generate the records alone.
fn generation_time() -> Duration {
    let mut workload = Workload::new(KEYS);
    let (mut imp, mut ev) = Workload::buffers();
    let started = Instant::now();
    for _ in 0..IMPRESSIONS {
        workload.next_impression(&mut imp);
        black_box(&imp);
    }
    for _ in 0..EVENTS {
        workload.next_event(&mut ev);
        black_box(&ev);
    }
    started.elapsed()
}

fn peak_memory_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

fn main() {
    let spec = Workload::spec();
    let mut workload = Workload::new(KEYS);
    let (mut imp, mut ev) = Workload::buffers();
    let started = Instant::now();

    let mut pass = ImpressionPass::new(&spec);
    for _ in 0..IMPRESSIONS {
        workload.next_impression(&mut imp);
        pass.add_impression(&imp);
    }
    let impressions_done = started.elapsed();
    let mut pass = pass.finish();
    let finish_done = started.elapsed();
    for _ in 0..EVENTS {
        workload.next_event(&mut ev);
        pass.add_event(&ev);
    }
    let events_done = started.elapsed();
    let report = pass.finish().report();
    let total = started.elapsed();
    let peak = peak_memory_mb();
    let generation = generation_time();

    let records = (IMPRESSIONS + EVENTS) as f64;
    let rate = |d: Duration| records / d.as_secs_f64() / 1e6;
    println!(
        "impression pass {:.2}s, finish {:.2}s, event pass {:.2}s, report {:.2}s",
        impressions_done.as_secs_f64(),
        (finish_done - impressions_done).as_secs_f64(),
        (events_done - finish_done).as_secs_f64(),
        (total - events_done).as_secs_f64()
    );
    println!(
        "{} records over {} keys in {:.2}s: {:.2} M records/s including generation",
        IMPRESSIONS + EVENTS,
        KEYS,
        total.as_secs_f64(),
        rate(total)
    );
    println!(
        "generating the records alone takes {:.2}s: {:.2} M records/s for the analysis",
        generation.as_secs_f64(),
        rate(total.saturating_sub(generation))
    );
    match peak {
        Some(mb) => println!("peak memory (VmHWM): {mb:.0} MB"),
        None => println!("peak memory: /proc/self/status not readable"),
    }
    let first = report.flags[0].units.first();
    println!(
        "attributed events: {}, groups in the first version: {}",
        report.stats.events_attributed,
        first.map_or(0, |u| u.groups.len())
    );
}
