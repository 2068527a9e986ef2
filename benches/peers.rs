//! splitkit's engine beside two other Rust evaluation engines on the same workload, in the
//! same run: Unleash's `unleash-yggdrasil` and LaunchDarkly's
//! `launchdarkly-server-sdk-evaluation` (see `benches/support/peers.rs` for how the flag is
//! written for each and how they are called).
//!
//! Two comparisons: `peers` with the attributes and contexts built beforehand, and
//! `peers_per_call` with them built for each call from the key and plan, as an application
//! serving a request does (splitkit's lent as borrowed pairs, the peers' contexts built the
//! way their APIs ask).
//!
//! Run: `cargo bench --bench peers -- --warm-up-time 1 --measurement-time 3`. After
//! criterion's figures it prints the paired comparisons: bursts of the three engines and of
//! the unavoidable work (`benches/support/floor.rs`) taken in turn, their medians, the
//! peers' time as a multiple of splitkit's, and each engine's as a multiple of the floor's.
//! The instruction counts of the same are `benches/instr.sh unavoidable engine unleash
//! launchdarkly engine_per_call unleash_per_call launchdarkly_per_call`.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use splitkit::{Attributes, Snapshot};

#[path = "../tests/support/workload.rs"]
mod workload;

#[path = "support/peers.rs"]
mod peers;

#[path = "support/interleaved.rs"]
mod interleaved;

#[path = "support/floor.rs"]
mod floor;

const KEYS: usize = 4096;
const FLAG: &str = "checkout_v2";

fn peers(c: &mut Criterion) {
    let keys = workload::uuid_keys(KEYS);
    let whitelist = workload::ten_of(&keys);
    let plans: Vec<&str> = (0..KEYS)
        .map(|i| workload::PLANS[i % workload::PLANS.len()])
        .collect();
    let doc = serde_json::json!({"ff": {"d": [workload::flag(FLAG, &whitelist, 100, false)],
                                        "s": -1, "t": 1}});
    let (snapshot, problems) = Snapshot::from_json(&doc.to_string(), "peers").expect("parses");
    assert!(problems.is_empty(), "{problems:?}");
    let attrs: Vec<Attributes> = plans
        .iter()
        .map(|p| Attributes::new().with("plan", *p))
        .collect();
    let unleash = peers::Unleash::new(FLAG, &whitelist, &keys, &plans);
    let launchdarkly = peers::LaunchDarkly::new(FLAG, &whitelist, &keys, &plans);
    let floor = floor::Floor::new(FLAG, &whitelist);

    // The three engines agree on which keys the rules select: the whitelisted keys and the
    // enterprise and pro plans are on everywhere, and about half of the rest (each engine
    // hashes the key its own way).
    let on = |f: &dyn Fn(usize) -> bool| (0..KEYS).filter(|&i| f(i)).count();
    let ours = on(&|i| snapshot.evaluate(&keys[i], None, FLAG, &attrs[i]).treatment == "on");
    let theirs = [
        on(&|i| unleash.evaluate(FLAG, i)),
        on(&|i| launchdarkly.evaluate(FLAG, i) == Some("on")),
    ];
    for n in [ours, theirs[0], theirs[1]] {
        assert!(
            (2 * KEYS / 3..5 * KEYS / 6).contains(&n),
            "{ours} {theirs:?}"
        );
    }
    for (i, key) in keys.iter().enumerate() {
        if whitelist.contains(&key.as_str()) || i % 4 < 2 {
            assert!(unleash.evaluate(FLAG, i) && launchdarkly.evaluate(FLAG, i) == Some("on"));
        }
        // Built per call, the same answers.
        let lent = [("plan", plans[i].into())];
        assert_eq!(
            snapshot.evaluate(key, None, FLAG, &lent).treatment,
            snapshot.evaluate(key, None, FLAG, &attrs[i]).treatment
        );
        assert_eq!(
            unleash.evaluate_per_call(FLAG, key, plans[i]),
            unleash.evaluate(FLAG, i)
        );
        assert_eq!(
            launchdarkly.evaluate_per_call(FLAG, key, plans[i]),
            launchdarkly.evaluate(FLAG, i) == Some("on")
        );
    }

    let mut g = c.benchmark_group("peers");
    g.throughput(Throughput::Elements(1));
    let mut i = 0usize;
    g.bench_function("splitkit", |b| {
        b.iter(|| {
            i = (i + 1) % KEYS;
            black_box(
                snapshot
                    .evaluate(&keys[i], None, FLAG, &attrs[i])
                    .treatment
                    .len(),
            )
        })
    });
    g.bench_function("unleash_yggdrasil", |b| {
        b.iter(|| {
            i = (i + 1) % KEYS;
            black_box(unleash.evaluate(FLAG, i))
        })
    });
    g.bench_function("launchdarkly", |b| {
        b.iter(|| {
            i = (i + 1) % KEYS;
            black_box(launchdarkly.evaluate(FLAG, i).map_or(0, str::len))
        })
    });
    g.finish();
    let mut g = c.benchmark_group("peers_per_call");
    g.throughput(Throughput::Elements(1));
    g.bench_function("splitkit", |b| {
        b.iter(|| {
            i = (i + 1) % KEYS;
            let attrs = [("plan", plans[i].into())];
            black_box(
                snapshot
                    .evaluate(&keys[i], None, FLAG, &attrs)
                    .treatment
                    .len(),
            )
        })
    });
    g.bench_function("unleash_yggdrasil", |b| {
        b.iter(|| {
            i = (i + 1) % KEYS;
            black_box(unleash.evaluate_per_call(FLAG, &keys[i], plans[i]))
        })
    });
    g.bench_function("launchdarkly", |b| {
        b.iter(|| {
            i = (i + 1) % KEYS;
            black_box(launchdarkly.evaluate_per_call(FLAG, &keys[i], plans[i]))
        })
    });
    g.finish();
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    const BURST: usize = 4_096;
    const ROUNDS: usize = 301;
    let names = [
        "splitkit",
        "unleash_yggdrasil",
        "launchdarkly",
        "unavoidable work",
    ];
    for (contexts, per_call) in [("built beforehand", false), ("built per call", true)] {
        let stats = interleaved::bursts(
            names.len(),
            ROUNDS,
            BURST,
            |v, i| {
                let i = i % KEYS;
                match (v, per_call) {
                    (0, false) => {
                        black_box(snapshot.evaluate(&keys[i], None, FLAG, &attrs[i]).treatment);
                    }
                    (0, true) => {
                        let attrs = [("plan", plans[i].into())];
                        black_box(snapshot.evaluate(&keys[i], None, FLAG, &attrs).treatment);
                    }
                    (1, false) => {
                        black_box(unleash.evaluate(FLAG, i));
                    }
                    (1, true) => {
                        black_box(unleash.evaluate_per_call(FLAG, &keys[i], plans[i]));
                    }
                    (2, false) => {
                        black_box(launchdarkly.evaluate(FLAG, i));
                    }
                    (2, true) => {
                        black_box(launchdarkly.evaluate_per_call(FLAG, &keys[i], plans[i]));
                    }
                    // Nothing to build: the floor is the same either way.
                    _ => {
                        black_box(floor.evaluate(black_box(FLAG), &keys[i], plans[i]));
                    }
                }
            },
            |_| {},
        );
        report(
            &format!("{contexts}: interleaved bursts of {BURST} ({ROUNDS} per engine)"),
            &names,
            &stats,
        );
    }
}

/// Prints the bursts' figures, each peer's time as a multiple of splitkit's, and each
/// engine's as a multiple of the unavoidable work's (the last variant): a peer at `m` times
/// the floor can be beaten `r` times only by an engine at `m / r` times it.
fn report(title: &str, names: &[&str], stats: &[interleaved::Stat]) {
    interleaved::print(title, names, stats);
    let ratio = |name: &str, a: &interleaved::Stat, b: &interleaved::Stat, of: &str| {
        eprintln!(
            "  {name} / {of}: {:.1}x median, {:.1}x fastest tenth",
            a.median / b.median,
            a.fastest_tenth / b.fastest_tenth
        );
    };
    let (floor, engines) = stats.split_last().expect("variants");
    for (name, s) in names.iter().zip(engines).skip(1) {
        ratio(name, s, &stats[0], names[0]);
    }
    for (name, s) in names.iter().zip(engines) {
        ratio(name, s, floor, "unavoidable work");
    }
}

criterion_group!(benches, peers);
criterion_main!(benches);
