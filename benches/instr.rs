//! Instructions per operation, counted by callgrind: the repeatable numbers behind the
//! performance goals (wall-clock timings move with the load of a shared machine; instruction
//! counts do not).
//!
//! Run: `benches/instr.sh` (all scenarios) or `benches/instr.sh engine client_debug`. The
//! script builds this bench, runs each scenario under `valgrind --tool=callgrind` for `N` and
//! `2N` operations and prints `(I(2N) - I(N)) / N`, the instructions of one operation on the
//! calling thread with setup, warm-up and exit cancelled out. By hand:
//! `target/release/deps/instr-* <scenario> <operations>`.
//!
//! Scenarios (the workload of `benches/evaluate.rs`: a flag with 10 whitelisted keys, a
//! `plan in [enterprise, pro]` rule and a 50/50 rollout, 4096 UUID keys):
//! - `unavoidable`: the work no engine can skip (`benches/support/floor.rs`): the flag
//!   looked up by name, the key in a 10-key hash set, the plan in a 2-item list, murmur3 of
//!   the key.
//! - `engine`: `Snapshot::evaluate` with attributes built beforehand (one `plan`).
//! - `engine_attrs4`: the same with a typical set of four attributes built beforehand...
//! - `engine_attrs4_built`: ...and built in the loop, per evaluation.
//! - `engine_attrs4_borrowed`: ...and given as borrowed pairs built in the loop
//!   (`&[("plan", plan.into()), ...]`), the list borrowed from where the caller holds it.
//! - `client_debug`, `client_optimized`, `client_none`: `Client::get_treatment` (the
//!   caller's thread only; delivery runs on its own threads, to a loopback server).
//! - `unleash`, `launchdarkly`: the same workload on the peers' engines
//!   (`benches/support/peers.rs`).
//! - `engine_per_call`, `unleash_per_call`, `launchdarkly_per_call`: the three engines with
//!   the attributes or context built for each call from the key and plan, as an application
//!   serving a request does (splitkit's lent as borrowed pairs).

use std::hint::black_box;

use splitkit::{Attributes, Client, ImpressionsMode, Snapshot};
use workload::{PLANS, attrs4, attrs4_borrowed};

#[path = "../tests/support/workload.rs"]
mod workload;

#[path = "../tests/support/sink.rs"]
mod sink;

#[path = "support/peers.rs"]
mod peers;

#[path = "support/floor.rs"]
mod floor;

const KEYS: usize = 4096;
const FLAG: &str = "checkout_v2";

const SCENARIOS: &[&str] = &[
    "unavoidable",
    "engine",
    "engine_attrs4",
    "engine_attrs4_built",
    "engine_attrs4_borrowed",
    "client_debug",
    "client_optimized",
    "client_none",
    "unleash",
    "launchdarkly",
    "engine_per_call",
    "unleash_per_call",
    "launchdarkly_per_call",
];

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (scenario, n) = match args.as_slice() {
        [s, n] if SCENARIOS.contains(&s.as_str()) => match n.parse::<usize>() {
            Ok(n) => (s.as_str(), n),
            Err(_) => return usage(),
        },
        [l] if l == "--list" => {
            for s in SCENARIOS {
                println!("{s}");
            }
            return;
        }
        // `cargo bench` runs every bench with `--bench`: nothing to do here.
        _ => return usage(),
    };
    let keys = workload::uuid_keys(KEYS);
    let whitelist = workload::ten_of(&keys);
    let plans: Vec<&str> = (0..KEYS).map(|i| PLANS[i % PLANS.len()]).collect();
    let doc = serde_json::json!({"ff": {"d": [workload::flag(FLAG, &whitelist, 100, false)],
                                        "s": -1, "t": 1}});
    let (snapshot, problems) = Snapshot::from_json(&doc.to_string(), "instr").expect("parses");
    assert!(problems.is_empty(), "{problems:?}");
    let mut acc = 0usize;
    match scenario {
        "unavoidable" => {
            let floor = floor::Floor::new(FLAG, &whitelist);
            for j in 0..n {
                let i = j % KEYS;
                acc += floor.evaluate(
                    black_box(FLAG),
                    black_box(keys[i].as_str()),
                    black_box(plans[i]),
                );
            }
        }
        "engine" | "engine_attrs4" => {
            let attrs: Vec<Attributes> = if scenario == "engine" {
                plans
                    .iter()
                    .map(|p| Attributes::new().with("plan", *p))
                    .collect()
            } else {
                (0..KEYS).map(attrs4).collect()
            };
            for j in 0..n {
                let i = j % KEYS;
                acc += snapshot
                    .evaluate(&keys[i], None, FLAG, &attrs[i])
                    .treatment
                    .len();
            }
        }
        "engine_attrs4_built" => {
            for j in 0..n {
                let i = j % KEYS;
                let attrs = attrs4(i);
                acc += snapshot
                    .evaluate(&keys[i], None, FLAG, &attrs)
                    .treatment
                    .len();
            }
        }
        "engine_attrs4_borrowed" => {
            for j in 0..n {
                let i = j % KEYS;
                let attrs = attrs4_borrowed(i);
                acc += snapshot
                    .evaluate(&keys[i], None, FLAG, &attrs)
                    .treatment
                    .len();
            }
        }
        "client_debug" | "client_optimized" | "client_none" => {
            let mode = match scenario {
                "client_debug" => ImpressionsMode::Debug,
                "client_optimized" => ImpressionsMode::Optimized,
                _ => ImpressionsMode::None,
            };
            let sink = sink::Sink::start();
            let client = Client::builder("localhost")
                .snapshot(snapshot)
                .events_url(sink.url())
                .impressions_mode(mode)
                .impressions_queue_size(2 * n + 1)
                .impressions_bulk_size(5_000)
                .build()
                .expect("client");
            let attrs: Vec<Attributes> = plans
                .iter()
                .map(|p| Attributes::new().with("plan", *p))
                .collect();
            for j in 0..n {
                let i = j % KEYS;
                acc += client
                    .get_treatment(keys[i].as_str(), FLAG, Some(&attrs[i]))
                    .len();
            }
            // Destroyed on a thread of its own: the last counts and unique keys are drained
            // by the destroying thread, and they are not the calls' work.
            std::thread::spawn(move || client.destroy(std::time::Duration::from_secs(30)))
                .join()
                .expect("destroyed");
        }
        "unleash" => {
            let u = peers::Unleash::new(FLAG, &whitelist, &keys, &plans);
            for j in 0..n {
                acc += usize::from(u.evaluate(FLAG, j % KEYS));
            }
        }
        "launchdarkly" => {
            let l = peers::LaunchDarkly::new(FLAG, &whitelist, &keys, &plans);
            for j in 0..n {
                acc += l.evaluate(FLAG, j % KEYS).map_or(0, str::len);
            }
        }
        "engine_per_call" => {
            for j in 0..n {
                let i = j % KEYS;
                let attrs = [("plan", plans[i].into())];
                acc += snapshot
                    .evaluate(&keys[i], None, FLAG, &attrs)
                    .treatment
                    .len();
            }
        }
        "unleash_per_call" => {
            let u = peers::Unleash::new(FLAG, &whitelist, &keys, &plans);
            for j in 0..n {
                let i = j % KEYS;
                acc += usize::from(u.evaluate_per_call(FLAG, &keys[i], plans[i]));
            }
        }
        "launchdarkly_per_call" => {
            let l = peers::LaunchDarkly::new(FLAG, &whitelist, &keys, &plans);
            for j in 0..n {
                let i = j % KEYS;
                acc += usize::from(l.evaluate_per_call(FLAG, &keys[i], plans[i]));
            }
        }
        _ => return usage(),
    }
    black_box(acc);
}

fn usage() {
    eprintln!(
        "usage: instr <scenario> <operations> | instr --list\nscenarios: {}",
        SCENARIOS.join(" ")
    );
}
