//! The analysis at scale, with and without every optional statistic: processes `RECORDS`
//! impressions and as many events over `RECORDS / 10` keys (10 M + 10 M over 1 M keys by
//! default), alternating the default spec and the spec with every statistic (SRM, tiers,
//! CUPED, sequential) for a number of rounds, then prints each configuration's median
//! throughput and peak memory, and the cost of the statistics.
//!
//! Run with `cargo run --release --example attribution_scale [-- RECORDS [ROUNDS]]`, e.g.
//! `-- 2000000 7` for 2 M + 2 M records in seven rounds of each configuration. The records
//! are generated on the fly into reused buffers, so the input itself takes no memory; the
//! generation time (measured in a separate dry run) is subtracted from the analysis time.
//! Every run is a fresh process (this example started again with `--run`), so that its peak
//! memory (the resident set's high-water mark, VmHWM) and its allocator start clean.

#[path = "support/workload.rs"]
mod workload;

use std::hint::black_box;
use std::time::{Duration, Instant};

use splitkit::analysis::{AnalysisSpec, ImpressionPass};
use workload::Workload;

/// One run of one configuration.
struct Run {
    seconds: f64,
    peak_mb: Option<f64>,
    attributed: u64,
}

/// Time to generate the records alone.
fn generation_time(records: u64) -> Duration {
    let mut workload = Workload::new(records / 10);
    let (mut imp, mut ev) = Workload::buffers();
    let started = Instant::now();
    for _ in 0..records {
        workload.next_impression(&mut imp);
        black_box(&imp);
    }
    for _ in 0..records {
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

/// The whole analysis of `records` impressions and events under `spec`, in this process.
fn run(spec: &AnalysisSpec, records: u64, generation: Duration) -> Run {
    let mut workload = Workload::new(records / 10);
    let (mut imp, mut ev) = Workload::buffers();
    let started = Instant::now();
    let mut pass = ImpressionPass::new(spec);
    for _ in 0..records {
        workload.next_impression(&mut imp);
        pass.add_impression(&imp);
    }
    let mut pass = pass.finish();
    for _ in 0..records {
        workload.next_event(&mut ev);
        pass.add_event(&ev);
    }
    let report = black_box(pass.finish().report());
    Run {
        seconds: started.elapsed().saturating_sub(generation).as_secs_f64(),
        peak_mb: peak_memory_mb(),
        attributed: report.stats.events_attributed,
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Median analysis seconds and median peak memory of a configuration's runs.
fn medians(runs: &[Run]) -> (f64, Option<f64>) {
    let seconds = median(runs.iter().map(|r| r.seconds).collect());
    let peaks: Option<Vec<f64>> = runs.iter().map(|r| r.peak_mb).collect();
    (seconds, peaks.map(median))
}

/// One run of configuration `which` in a fresh process: this example with `--run`.
fn run_in_child(which: usize, records: u64, generation: Duration) -> Result<Run, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let out = std::process::Command::new(exe)
        .args(["--run", &which.to_string(), &records.to_string()])
        .arg(generation.as_nanos().to_string())
        .output()
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&out.stdout);
    let fields: Vec<&str> = text.split_whitespace().collect();
    match (out.status.success(), fields.as_slice()) {
        (true, [seconds, peak, attributed]) => Ok(Run {
            seconds: seconds.parse().map_err(|_| text.to_string())?,
            peak_mb: peak.parse().ok().filter(|mb: &f64| mb.is_finite()),
            attributed: attributed.parse().map_err(|_| text.to_string())?,
        }),
        _ => Err(format!("child run failed: {text}")),
    }
}

fn configurations() -> [(&'static str, AnalysisSpec); 2] {
    [
        ("default spec", Workload::spec()),
        ("every statistic", Workload::spec_with_statistics()),
    ]
}

fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let number = |i: usize| args.get(i).and_then(|a| a.parse::<u64>().ok());
    if args.first().map(String::as_str) == Some("--run") {
        let spec = number(1)
            .and_then(|i| configurations().into_iter().nth(i as usize))
            .ok_or("--run needs a configuration")?
            .1;
        let generation = Duration::from_nanos(number(3).unwrap_or(0));
        let r = run(&spec, number(2).unwrap_or(0), generation);
        println!(
            "{} {} {}",
            r.seconds,
            r.peak_mb.unwrap_or(f64::NAN),
            r.attributed
        );
        return Ok(());
    }
    let records = number(0).unwrap_or(10_000_000);
    let rounds = number(1).unwrap_or(1).max(1);
    let configurations = configurations();
    let generation = generation_time(records);
    println!(
        "{records} impressions + {records} events over {} keys, {rounds} round(s) of each \
         configuration, alternating; generating the records takes {:.2}s (subtracted)",
        records / 10,
        generation.as_secs_f64()
    );
    let mut runs: Vec<Vec<Run>> = configurations.iter().map(|_| Vec::new()).collect();
    for round in 0..rounds {
        for (which, ((name, _), done)) in configurations.iter().zip(&mut runs).enumerate() {
            let r = run_in_child(which, records, generation)?;
            println!(
                "round {round}: {name}: {:.3}s, peak {:.0} MB, {} events attributed",
                r.seconds,
                r.peak_mb.unwrap_or(f64::NAN),
                r.attributed
            );
            done.push(r);
        }
    }
    let mut base = None;
    for ((name, _), done) in configurations.iter().zip(&runs) {
        let (seconds, peak) = medians(done);
        let rate = 2.0 * records as f64 / seconds / 1e6;
        let cost = base.map_or(String::new(), |b: f64| {
            format!(
                ", {:+.1}% time over the default spec",
                (seconds / b - 1.0) * 100.0
            )
        });
        base.get_or_insert(seconds);
        match peak {
            Some(mb) => println!(
                "{name}: median {seconds:.3}s, {rate:.2} M records/s, peak memory {mb:.0} MB{cost}"
            ),
            None => println!("{name}: median {seconds:.3}s, {rate:.2} M records/s{cost}"),
        }
    }
    Ok(())
}
