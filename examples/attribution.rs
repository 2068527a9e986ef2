//! Measures a small, deterministic, made-up experiment and prints the report.
//!
//! 3,000 users see the flag `new_checkout` over two weeks and two versions. Most are served by
//! the default rule (50/50 `on`/`off`); beta testers get `on` through a segment rule. Some users
//! join the beta mid-experiment (one switch), a few join and leave again (excluded). Users on
//! `on` convert a little more often. The data is written in Split's wire formats (JSON lines),
//! read back with the module's readers and analysed: the text report goes to stdout, and the
//! HTML report (one self-contained page) to the path given as the first argument, by default
//! `attribution-report.html` in the system's temporary directory.
//!
//! Run with `cargo run --example attribution [-- report.html]`.

#[path = "support/workload.rs"]
#[expect(dead_code, reason = "this example only needs the PRNG")]
mod workload;

use std::fmt::Write as _;

use serde_json::json;
use splitkit::analysis::{
    Aggregation, AnalysisSpecBuilder, FlagSpec, ImpressionPass, Metric, Tier, read_events,
    read_impressions,
};
use workload::Rng;

const MINUTE: i64 = 60_000;
const DAY: i64 = 24 * 60 * MINUTE;
/// 2024-03-01 00:00:00Z.
const START: i64 = 1_709_251_200_000;
const V1: i64 = START;
const V2: i64 = START + 7 * DAY;
const ANALYSIS_TIME: i64 = START + 14 * DAY;
const USERS: u64 = 3_000;
const FLAG: &str = "new_checkout";
const DEFAULT_RULE: &str = "default rule";
const BETA_RULE: &str = "in segment beta_testers";

/// One impression in the testImpressions/bulk format, one flag group per line.
fn impression_line(key: &str, treatment: &str, label: &str, cn: i64, t: i64) -> String {
    json!([{ "f": FLAG, "i": [{ "k": key, "t": treatment, "m": t, "c": cn, "r": label }] }])
        .to_string()
}

/// One event in the events/bulk format.
fn event_line(key: &str, event_type: &str, value: Option<f64>, t: i64) -> String {
    json!({
        "key": key,
        "trafficTypeName": "user",
        "eventTypeId": event_type,
        "value": value,
        "timestamp": t,
        "properties": null,
    })
    .to_string()
}

/// Writes the experiment as two JSON-lines documents: impressions and events.
fn generate() -> (String, String) {
    let mut rng = Rng(20_240_301);
    let mut impressions = String::new();
    let mut events = String::new();
    for user in 0..USERS {
        let key = format!("user-{user:05}");
        let default_treatment = if rng.unit() < 0.5 { "on" } else { "off" };
        let beta_from_start = rng.unit() < 0.10;
        // 6% join the beta mid-version (one switch); a third of them leave again (excluded).
        let joins = !beta_from_start && rng.unit() < 0.06;
        let leaves = joins && rng.unit() < 0.33;
        for (cn, from, to) in [(V1, V1, V2), (V2, V2, ANALYSIS_TIME)] {
            let first = rng.between(from, from + 2 * DAY);
            let join_at = rng.between(first + DAY, to - DAY);
            let leave_at = join_at + 12 * 60 * MINUTE;
            let mut sessions: Vec<i64> = (0..4).map(|_| rng.between(first, to)).collect();
            sessions.push(first);
            sessions.sort_unstable();
            let mut served_on = false;
            for &t in &sessions {
                let in_beta =
                    beta_from_start || (joins && t >= join_at && !(leaves && t >= leave_at));
                let (label, treatment) = if in_beta {
                    (BETA_RULE, "on")
                } else {
                    (DEFAULT_RULE, default_treatment)
                };
                served_on |= treatment == "on";
                writeln!(
                    impressions,
                    "{}",
                    impression_line(&key, treatment, label, cn, t)
                )
                .ok();
            }
            if joins {
                writeln!(
                    impressions,
                    "{}",
                    impression_line(&key, "on", BETA_RULE, cn, join_at)
                )
                .ok();
                if leaves {
                    let line = impression_line(&key, default_treatment, DEFAULT_RULE, cn, leave_at);
                    writeln!(impressions, "{line}").ok();
                }
            }
            // Behaviour: page views for everyone, checkouts a bit more likely on `on`.
            for _ in 0..rng.between(1, 12) {
                let t = rng.between(first, to);
                writeln!(events, "{}", event_line(&key, "page_view", None, t)).ok();
            }
            let conversion = if served_on { 0.14 } else { 0.10 };
            if rng.unit() < conversion {
                for _ in 0..rng.between(1, 3) {
                    let t = rng.between(first, to + 10 * MINUTE);
                    // 5% of checkouts were tracked without a value.
                    let value = (rng.unit() >= 0.05).then(|| (20.0 + rng.unit() * 60.0).round());
                    writeln!(events, "{}", event_line(&key, "checkout", value, t)).ok();
                }
            }
        }
    }
    (impressions, events)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (impressions, events) = generate();
    let flag = FlagSpec::new(FLAG, "user", "off")
        .expected_split(DEFAULT_RULE, [("on", 50.0), ("off", 50.0)])
        .expected_split(BETA_RULE, [("on", 100.0)]);
    let spec = AnalysisSpecBuilder::new(ANALYSIS_TIME)
        .flag(flag)
        .metric(Metric::new("converted", "checkout", Aggregation::HasEvent).tier(Tier::Key))
        .metric(Metric::new("revenue", "checkout", Aggregation::Sum).tier(Tier::Key))
        .metric(Metric::new("page_views", "page_view", Aggregation::Count).tier(Tier::Guardrail))
        .metric(Metric::new("checkouts", "checkout", Aggregation::Count))
        .metric(Metric::new("order_value", "checkout", Aggregation::Average))
        .build()?;

    let mut pass = ImpressionPass::new(&spec);
    for impression in read_impressions(impressions.as_bytes()) {
        pass.add_impression(&impression?);
    }
    let mut pass = pass.finish();
    for event in read_events(events.as_bytes()) {
        pass.add_event(&event?);
    }
    let report = pass.finish().report();
    print!("{report}");
    let path = std::env::args_os().nth(1).map_or_else(
        || std::env::temp_dir().join("attribution-report.html"),
        Into::into,
    );
    std::fs::write(&path, report.to_html())?;
    eprintln!("HTML report written to {}", path.display());
    Ok(())
}
