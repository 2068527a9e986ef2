//! One analysis split by key: across threads of one process, and across "machines" that
//! exchange JSON.
//!
//! A key's impressions and events must all land in the same partition (here: a hash of the
//! key). Every partition then runs in two steps, with one exchange between them:
//!
//! 1. the impression pass over its impressions, then publishes its
//!    [`VersionStarts`](splitkit::analysis::VersionStarts) (the first impression of every flag
//!    version it saw); the coordinator merges them (earliest wins) and hands the merged starts
//!    back, so that every partition cuts the versions at the same instants;
//! 2. `finish_with(&merged)`, the event pass over its events, and `finish()`: a
//!    [`PartialReport`](splitkit::analysis::PartialReport) of its keys.
//!
//! The coordinator merges the partial reports (in any order) and calls `report()`: the result
//! is the report of the whole input. Between machines, `VersionStarts` and `PartialReport`
//! travel as JSON (both are serde types); a partial report holds sums per group, not keys, so
//! it stays small whatever the input. Merging refuses partial reports of different specs or
//! cut by different version starts.
//!
//! Run with `cargo run --release --example attribution_parallel`: it times the analysis in one
//! thread and in two, and checks that both, and the JSON round trip, give the same report.
//! Wall-clock speedups need free cores; the example also measures every step's CPU time (on
//! Linux), which other processes on the machine do not inflate, and prints the speedup two
//! free cores would give: one partition's CPU time over the two partitions' critical path
//! (the slower partition of each step).

#[path = "support/workload.rs"]
#[expect(
    dead_code,
    reason = "this example needs the generator, not the bench's spec"
)]
mod workload;

use std::thread;
use std::time::{Duration, Instant};

use splitkit::analysis::{
    AnalysisSpec, AttributionEvent, AttributionImpression, ImpressionPass, PartialReport, Report,
    VersionStarts, analyze,
};
use workload::Workload;

const KEYS: u64 = 100_000;
const RECORDS: u64 = 1_000_000;
/// Runs of each configuration.
const ROUNDS: usize = 7;

/// The partition of a key: FNV-1a of its bytes, so every record of a key goes to one place.
fn partition(key: &str, parts: usize) -> usize {
    let hash = key.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    (hash % parts as u64) as usize
}

/// One partition's input: the records of its keys.
struct Shard<'a> {
    impressions: Vec<&'a AttributionImpression>,
    events: Vec<&'a AttributionEvent>,
}

/// Splits the input by key into `parts` shards, as a partitioned job's input arrives.
fn split_by_key<'a>(
    impressions: &'a [AttributionImpression],
    events: &'a [AttributionEvent],
    parts: usize,
) -> Vec<Shard<'a>> {
    let mut shards: Vec<Shard<'a>> = (0..parts)
        .map(|_| Shard {
            impressions: Vec::new(),
            events: Vec::new(),
        })
        .collect();
    for imp in impressions {
        shards[partition(&imp.key, parts)].impressions.push(imp);
    }
    for event in events {
        shards[partition(&event.key, parts)].events.push(event);
    }
    shards
}

/// The CPU time this thread has used (zero where the clock is not available).
fn thread_cpu() -> Duration {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
        Duration::new(
            t.tv_sec.max(0) as u64,
            t.tv_nsec.clamp(0, 999_999_999) as u32,
        )
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    Duration::ZERO
}

/// Runs `f` and returns its result with the CPU time it took on this thread.
fn cpu_timed<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let start = thread_cpu();
    let out = f();
    (out, thread_cpu().saturating_sub(start))
}

/// Step 1 of a partition: its impressions folded.
fn impression_step(spec: &AnalysisSpec, shard: &Shard<'_>) -> ImpressionPass {
    let mut pass = ImpressionPass::new(spec);
    pass.extend(shard.impressions.iter().copied());
    pass
}

/// Step 2 of a partition: its events attributed with the merged version starts.
fn event_step(pass: ImpressionPass, starts: &VersionStarts, shard: &Shard<'_>) -> PartialReport {
    let mut pass = pass.finish_with(starts);
    pass.extend(shard.events.iter().copied());
    pass.finish()
}

/// The whole analysis, one thread per shard: the partial reports, and the critical path of
/// CPU time (the slowest partition of each step, summed).
fn in_threads(spec: &AnalysisSpec, shards: &[Shard<'_>]) -> (Vec<PartialReport>, Duration) {
    let step1: Vec<(ImpressionPass, Duration)> = thread::scope(|s| {
        let handles: Vec<_> = shards
            .iter()
            .map(|shard| s.spawn(move || cpu_timed(|| impression_step(spec, shard))))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("impression step"))
            .collect()
    });
    let path1 = step1.iter().map(|(_, t)| *t).max().unwrap_or_default();
    let mut starts = VersionStarts::new();
    for (pass, _) in &step1 {
        starts.merge(&pass.version_starts());
    }
    let starts = &starts;
    let step2: Vec<(PartialReport, Duration)> = thread::scope(|s| {
        let handles: Vec<_> = step1
            .into_iter()
            .zip(shards)
            .map(|((pass, _), shard)| {
                s.spawn(move || cpu_timed(|| event_step(pass, starts, shard)))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("event step"))
            .collect()
    });
    let path2 = step2.iter().map(|(_, t)| *t).max().unwrap_or_default();
    (step2.into_iter().map(|(p, _)| p).collect(), path1 + path2)
}

fn merged(partials: Vec<PartialReport>) -> Result<Report, Box<dyn std::error::Error>> {
    let mut partials = partials.into_iter();
    let mut whole = partials.next().ok_or("no partition")?;
    for partial in partials {
        whole.merge(partial)?;
    }
    Ok(whole.report())
}

/// The largest relative difference between the impacts' differences and p-values of two
/// reports (merged sums are equal up to rounding), after checking every sample size is equal.
fn max_difference(a: &Report, b: &Report) -> Result<f64, String> {
    let mut worst = 0.0f64;
    for (fa, fb) in a.flags.iter().zip(&b.flags) {
        for (ua, ub) in fa.units.iter().zip(&fb.units) {
            let sizes = |u: &splitkit::analysis::UnitReport| {
                u.groups
                    .iter()
                    .map(|g| (g.sample_size, g.excluded))
                    .collect::<Vec<_>>()
            };
            if sizes(ua) != sizes(ub) || ua.impacts.len() != ub.impacts.len() {
                return Err(format!("{} differs", ua.unit));
            }
            for (ia, ib) in ua.impacts.iter().zip(&ub.impacts) {
                for (x, y) in [(ia.difference, ib.difference), (ia.p_value, ib.p_value)] {
                    if let (Some(x), Some(y)) = (x, y) {
                        worst = worst.max((x - y).abs() / y.abs().max(1e-12));
                    } else if x.is_some() != y.is_some() {
                        return Err(format!("{} {} differs", ua.unit, ia.metric));
                    }
                }
            }
        }
    }
    Ok(worst)
}

/// `f` timed (wall clock).
fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let start = Instant::now();
    let out = f();
    (out, start.elapsed())
}

/// The median of some durations.
fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times.get(times.len() / 2).copied().unwrap_or_default()
}

/// Runs the analysis of `whole` (one shard) and of `halves` (two) alternately, `rounds` times
/// each, so that both see the same machine: the medians of their wall times and CPU critical
/// paths, and the two threads' last partial reports.
fn alternating(
    spec: &AnalysisSpec,
    whole: &[Shard<'_>],
    halves: &[Shard<'_>],
    rounds: usize,
) -> (Vec<PartialReport>, [Duration; 4]) {
    let (mut wall1, mut cpu1, mut wall2, mut cpu2) = (vec![], vec![], vec![], vec![]);
    let mut two = Vec::new();
    for _ in 0..rounds {
        let ((_, cpu), wall) = timed(|| in_threads(spec, whole));
        wall1.push(wall);
        cpu1.push(cpu);
        let ((partials, cpu), wall) = timed(|| in_threads(spec, halves));
        wall2.push(wall);
        cpu2.push(cpu);
        two = partials;
    }
    (two, [wall1, cpu1, wall2, cpu2].map(median))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let spec = Workload::spec();
    let mut workload = Workload::new(KEYS);
    let (mut imp, mut ev) = Workload::buffers();
    let impressions: Vec<AttributionImpression> = (0..RECORDS)
        .map(|_| {
            workload.next_impression(&mut imp);
            imp.clone()
        })
        .collect();
    let events: Vec<AttributionEvent> = (0..RECORDS)
        .map(|_| {
            workload.next_event(&mut ev);
            ev.clone()
        })
        .collect();
    let one = analyze(&spec, &impressions, &events);

    let whole = split_by_key(&impressions, &events, 1);
    let (halves, split) = timed(|| split_by_key(&impressions, &events, 2));
    let (two, [t1, cpu1, t2, cpu2]) = alternating(&spec, &whole, &halves, ROUNDS);
    let cores = thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "{RECORDS} impressions + {RECORDS} events over {KEYS} keys (split by key in {:.0} ms): \
         one thread {:.0} ms, two threads {:.0} ms, speedup {:.2}x (medians of {ROUNDS} alternating runs; {cores} cores)",
        ms(split),
        ms(t1),
        ms(t2),
        t1.as_secs_f64() / t2.as_secs_f64()
    );
    if cpu2 > Duration::ZERO {
        println!(
            "CPU time: one partition {:.0} ms, two partitions' critical path {:.0} ms: {:.2}x \
             on two free cores",
            ms(cpu1),
            ms(cpu2),
            cpu1.as_secs_f64() / cpu2.as_secs_f64()
        );
    }
    let worst = max_difference(&merged(two)?, &one)?;
    println!("two threads vs one pass: largest relative difference {worst:.1e}");
    if worst > 1e-9 {
        return Err(format!("the threads' report differs by {worst:e}").into());
    }

    // Separate machines: each ships its version starts, gets the merged ones back, ships its
    // partial report; all as JSON.
    let shards = split_by_key(&impressions, &events, 3);
    let passes: Vec<ImpressionPass> = shards
        .iter()
        .map(|shard| impression_step(&spec, shard))
        .collect();
    let mut starts = VersionStarts::new();
    for pass in &passes {
        let wire = serde_json::to_string(&pass.version_starts())?;
        starts.merge(&serde_json::from_str(&wire)?);
    }
    let wire_starts = serde_json::to_string(&starts)?;
    let mut shipped = Vec::new();
    for (pass, shard) in passes.into_iter().zip(&shards) {
        let starts: VersionStarts = serde_json::from_str(&wire_starts)?;
        shipped.push(serde_json::to_string(&event_step(pass, &starts, shard))?);
    }
    let bytes: usize = shipped.iter().map(String::len).sum();
    let partials = shipped
        .iter()
        .map(|json| serde_json::from_str::<PartialReport>(json))
        .collect::<Result<Vec<_>, _>>()?;
    let worst = max_difference(&merged(partials)?, &one)?;
    println!(
        "three machines over JSON ({bytes} bytes of partial reports): largest relative \
         difference {worst:.1e}"
    );
    if worst > 1e-9 {
        return Err(format!("the machines' report differs by {worst:e}").into());
    }
    Ok(())
}
