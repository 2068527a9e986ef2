//! Evaluation and load benchmarks.
//!
//! Workload (from the performance issue): one flag with a WHITELIST condition of 10 keys, a
//! ROLLOUT condition `plan in list ["enterprise","pro"]` and a catch-all 50/50 rollout
//! (murmur3, traffic allocation 100), evaluated for 4096 UUID-like keys whose `plan`
//! attribute varies so that every rule is hit.
//!
//! Groups:
//! - `evaluate/single`: one thread, keys round-robin, through `Store::load()` + `evaluate`
//!   (what a client does) and directly on a `&Snapshot`.
//! - `evaluate/threads`: N threads evaluating against one shared `Arc<Store>`; the reported
//!   time is wall time per evaluation (elapsed / (N * M)), so perfect scaling halves it at 2.
//! - `evaluate/paths`: the same, one rule path at a time; `not_found`; the murmur3 bucket alone.
//! - `evaluate/attributes4`: a typical set of four attributes (a string, a number, another
//!   string, a list of two strings) built beforehand (`prebuilt`), built as `Attributes` per
//!   evaluation (`built`), or lent as borrowed pairs made per evaluation (`borrowed`).
//! - `load/10k_flags`: parse and compile a 10,000-flag splitChanges document (also each half).
//!
//! Run: `cargo bench --bench evaluate -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use serde_json::{Value, json};
use splitkit::bucketing::{HashAlgo, bucket};
use splitkit::definitions::SplitChanges;
use splitkit::{Attributes, Snapshot, Store};
use workload::{PLANS, attrs4, attrs4_borrowed};

#[path = "../tests/support/workload.rs"]
mod workload;

const KEYS: usize = 4096;
const FLAG: &str = "checkout_v2";

struct Workload {
    store: Arc<Store>,
    keys: Vec<String>,
    attrs: Vec<Attributes>,
}

fn workload() -> Workload {
    let keys = workload::uuid_keys(KEYS);
    let whitelist = workload::ten_of(&keys);
    let doc = json!({"ff": {"d": [workload::flag(FLAG, &whitelist, 100, false)], "s": -1, "t": 1}});
    let (snapshot, problems) = Snapshot::from_json(&doc.to_string(), "bench").expect("parses");
    assert!(problems.is_empty(), "{problems:?}");
    let attrs: Vec<Attributes> = (0..KEYS)
        .map(|i| Attributes::new().with("plan", PLANS[i % PLANS.len()]))
        .collect();
    // Sanity: every rule of the flag is hit by the workload.
    let mut labels = std::collections::BTreeMap::new();
    for (k, a) in keys.iter().zip(&attrs) {
        let e = snapshot.evaluate(k, None, FLAG, a);
        *labels
            .entry((e.label.as_str().to_string(), e.treatment.to_string()))
            .or_insert(0usize) += 1;
    }
    for rule in ["whitelisted", "plan rule", "default rule"] {
        assert!(
            labels.keys().any(|(l, _)| l == rule),
            "{rule} not hit: {labels:?}"
        );
    }
    eprintln!("workload: (label, treatment) -> count: {labels:?}");
    Workload {
        store: Arc::new(Store::new(snapshot)),
        keys,
        attrs,
    }
}

fn evaluate_single(c: &mut Criterion) {
    let w = workload();
    let mut g = c.benchmark_group("evaluate/single");
    g.throughput(Throughput::Elements(1));
    let mut i = 0usize;
    g.bench_function("store", |b| {
        b.iter(|| {
            i = (i + 1) % KEYS;
            let snap = w.store.load();
            let e = snap.evaluate(&w.keys[i], None, FLAG, &w.attrs[i]);
            black_box(e.treatment.len() + e.config.map_or(0, str::len))
        })
    });
    let snap = w.store.snapshot();
    let snap: &Snapshot = &snap;
    let mut i = 0usize;
    g.bench_function("snapshot", |b| {
        b.iter(|| {
            i = (i + 1) % KEYS;
            let e = snap.evaluate(&w.keys[i], None, FLAG, &w.attrs[i]);
            black_box(e.treatment.len() + e.config.map_or(0, str::len))
        })
    });
    g.finish();

    // The same evaluation split by the path it takes, and the hash alone, to see where the
    // time goes.
    let mut g = c.benchmark_group("evaluate/paths");
    let paths: [(&str, &str); 3] = [
        ("whitelisted", "whitelist_hit"),
        ("plan rule", "plan_rule_hit"),
        ("default rule", "rollout_50_50"),
    ];
    for (label, name) in paths {
        let picked: Vec<usize> = (0..KEYS)
            .filter(|&i| {
                snap.evaluate(&w.keys[i], None, FLAG, &w.attrs[i])
                    .label
                    .as_str()
                    == label
            })
            .collect();
        let mut j = 0usize;
        g.bench_function(name, |b| {
            b.iter(|| {
                j = (j + 1) % picked.len();
                let i = picked[j];
                let snap = w.store.load();
                black_box(
                    snap.evaluate(&w.keys[i], None, FLAG, &w.attrs[i])
                        .treatment
                        .len(),
                )
            })
        });
    }
    let no_attrs = Attributes::new();
    g.bench_function("not_found", |b| {
        b.iter(|| {
            i = (i + 1) % KEYS;
            let snap = w.store.load();
            black_box(
                snap.evaluate(&w.keys[i], None, "no_such_flag", &no_attrs)
                    .treatment
                    .len(),
            )
        })
    });
    g.bench_function("murmur3_bucket_only", |b| {
        b.iter(|| {
            i = (i + 1) % KEYS;
            black_box(bucket(&w.keys[i], workload::SEED, HashAlgo::Murmur3))
        })
    });
    g.finish();
}

fn evaluate_attributes(c: &mut Criterion) {
    let w = workload();
    let snap = w.store.snapshot();
    let snap: &Snapshot = &snap;
    let prebuilt: Vec<Attributes> = (0..KEYS).map(attrs4).collect();
    let mut g = c.benchmark_group("evaluate/attributes4");
    g.throughput(Throughput::Elements(1));
    let mut i = 0usize;
    g.bench_function("prebuilt", |b| {
        b.iter(|| {
            i = (i + 1) % KEYS;
            black_box(
                snap.evaluate(&w.keys[i], None, FLAG, &prebuilt[i])
                    .treatment
                    .len(),
            )
        })
    });
    g.bench_function("built", |b| {
        b.iter(|| {
            i = (i + 1) % KEYS;
            let attrs = attrs4(i);
            black_box(
                snap.evaluate(&w.keys[i], None, FLAG, &attrs)
                    .treatment
                    .len(),
            )
        })
    });
    g.bench_function("borrowed", |b| {
        b.iter(|| {
            i = (i + 1) % KEYS;
            let attrs = attrs4_borrowed(i);
            black_box(
                snap.evaluate(&w.keys[i], None, FLAG, &attrs)
                    .treatment
                    .len(),
            )
        })
    });
    g.finish();
}

/// What each thread of `evaluate/threads` does per iteration.
#[derive(Clone, Copy)]
enum Mode {
    /// `store.load()` then `evaluate`, as a client does.
    Store,
    /// `evaluate` on a snapshot the thread took once (no per-evaluation `load`).
    Snapshot,
    /// Only the murmur3 bucket of the key: no shared state at all.
    BucketOnly,
}

/// `threads` threads, each doing `per_thread` iterations of `mode` on the shared store;
/// returns the wall time from the common start to the last thread's end.
fn run_threads(w: &Workload, threads: usize, per_thread: u64, mode: Mode) -> Duration {
    let barrier = Arc::new(Barrier::new(threads + 1));
    let keys = Arc::new(w.keys.clone());
    let attrs = Arc::new(w.attrs.clone());
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let store = Arc::clone(&w.store);
            let barrier = Arc::clone(&barrier);
            let keys = Arc::clone(&keys);
            let attrs = Arc::clone(&attrs);
            std::thread::spawn(move || {
                let mut i = t * KEYS / 2;
                let mut acc = 0usize;
                let snapshot = store.snapshot();
                barrier.wait();
                for _ in 0..per_thread {
                    i = (i + 1) % KEYS;
                    acc += match mode {
                        Mode::BucketOnly => {
                            usize::from(bucket(&keys[i], workload::SEED, HashAlgo::Murmur3))
                        }
                        Mode::Snapshot => snapshot
                            .evaluate(&keys[i], None, FLAG, &attrs[i])
                            .treatment
                            .len(),
                        Mode::Store => store
                            .load()
                            .evaluate(&keys[i], None, FLAG, &attrs[i])
                            .treatment
                            .len(),
                    };
                }
                black_box(acc);
            })
        })
        .collect();
    barrier.wait();
    let start = Instant::now();
    for h in handles {
        h.join().expect("bench thread");
    }
    start.elapsed()
}

fn evaluate_threads(c: &mut Criterion) {
    let w = workload();
    let mut g = c.benchmark_group("evaluate/threads");
    // One "element" is one evaluation: the throughput line is the aggregate rate.
    g.throughput(Throughput::Elements(1));
    // `snapshot/N` leaves out the per-evaluation `Store::load`; `bucket_only/N` is a control:
    // pure computation with no shared state, showing how much parallelism the machine
    // actually offers while the benchmark runs.
    for (name, mode) in [
        ("", Mode::Store),
        ("snapshot/", Mode::Snapshot),
        ("bucket_only/", Mode::BucketOnly),
    ] {
        for threads in [1usize, 2] {
            g.bench_function(format!("{name}{threads}"), |b| {
                b.iter_custom(|iters| {
                    // Every thread does `iters` evaluations; criterion divides by `iters`, so
                    // dividing by the thread count gives wall time per evaluation.
                    let elapsed = run_threads(&w, threads, iters.max(1), mode);
                    elapsed / threads as u32
                })
            });
        }
    }
    g.finish();
}

/// A realistic 10,000-flag document: whitelists, segments, rule-based segments, numbers,
/// sets, semver, regexes, dependencies, prerequisites, configurations, flag sets.
fn big_document(n: usize) -> String {
    let sel = |attr: Option<&str>| json!({"trafficType": "user", "attribute": attr});
    let matcher = |i: usize, kind: usize| -> Value {
        match kind % 10 {
            0 => json!({"keySelector": sel(None), "matcherType": "IN_SEGMENT", "negate": false,
                        "userDefinedSegmentMatcherData": {"segmentName": format!("segment_{}", i % 50)}}),
            1 => json!({"keySelector": sel(Some("age")), "matcherType": "GREATER_THAN_OR_EQUAL_TO",
                        "negate": false,
                        "unaryNumericMatcherData": {"dataType": "NUMBER", "value": 18 + i % 50}}),
            2 => json!({"keySelector": sel(Some("app_version")),
                        "matcherType": "GREATER_THAN_OR_EQUAL_TO_SEMVER", "negate": false,
                        "stringMatcherData": format!("{}.{}.0", 1 + i % 3, i % 20)}),
            3 => json!({"keySelector": sel(Some("email")), "matcherType": "MATCHES_STRING",
                        "negate": false,
                        "stringMatcherData": format!("^[a-z0-9._%+-]+@(corp{}|example)\\.com$", i % 100)}),
            4 => json!({"keySelector": sel(Some("tags")), "matcherType": "CONTAINS_ANY_OF_SET",
                        "negate": false,
                        "whitelistMatcherData": {"whitelist": ["beta", "early", format!("cohort_{}", i % 30)]}}),
            5 => json!({"keySelector": sel(Some("country")), "matcherType": "WHITELIST",
                        "negate": i.is_multiple_of(2),
                        "whitelistMatcherData": {"whitelist": ["US", "CA", "GB", "DE", "FR", "AR", "BR", "JP", "AU", "ES", "IT", "MX"]}}),
            6 => json!({"keySelector": sel(Some("app_version")), "matcherType": "BETWEEN_SEMVER",
                        "negate": false,
                        "betweenStringMatcherData": {"start": "1.0.0", "end": format!("2.{}.0-rc.1", i % 9)}}),
            7 => json!({"keySelector": sel(None), "matcherType": "IN_RULE_BASED_SEGMENT",
                        "negate": false,
                        "userDefinedSegmentMatcherData": {"segmentName": format!("rbs_{}", i % 100)}}),
            8 => {
                json!({"keySelector": sel(Some("signup")), "matcherType": "BETWEEN", "negate": false,
                        "betweenMatcherData": {"dataType": "DATETIME",
                                               "start": 1_600_000_000_000_i64 + (i as i64) * 60_000,
                                               "end": 1_800_000_000_000_i64}})
            }
            _ => {
                if i > 0 {
                    json!({"keySelector": sel(None), "matcherType": "IN_SPLIT_TREATMENT", "negate": false,
                           "dependencyMatcherData": {"split": format!("flag_{:05}", i - 1), "treatments": ["on"]}})
                } else {
                    json!({"keySelector": sel(Some("email")), "matcherType": "ENDS_WITH", "negate": false,
                           "whitelistMatcherData": {"whitelist": ["@example.com"]}})
                }
            }
        }
    };
    let mut flags = Vec::with_capacity(n);
    for i in 0..n {
        let mut conditions = Vec::new();
        if i.is_multiple_of(3) {
            let keys: Vec<String> = (0..(5 + i % 20))
                .map(|k| format!("user_{}_{k}", i % 997))
                .collect();
            conditions.push(json!({"conditionType": "WHITELIST",
                "matcherGroup": {"combiner": "AND", "matchers": [{
                    "keySelector": null, "matcherType": "WHITELIST", "negate": false,
                    "whitelistMatcherData": {"whitelist": keys}}]},
                "partitions": [{"treatment": "on", "size": 100}], "label": "whitelisted"}));
        }
        for r in 0..(1 + i % 3) {
            let kind = i * 7 + r * 3;
            let mut matchers = vec![matcher(i, kind)];
            if r == 1 {
                matchers.push(matcher(i, kind + 1));
            }
            conditions.push(json!({"conditionType": "ROLLOUT",
                "matcherGroup": {"combiner": "AND", "matchers": matchers},
                "partitions": [{"treatment": "on", "size": 100}, {"treatment": "off", "size": 0}],
                "label": format!("rule {r}")}));
        }
        conditions.push(json!({"conditionType": "ROLLOUT",
            "matcherGroup": {"combiner": "AND", "matchers": [{
                "keySelector": sel(None), "matcherType": "ALL_KEYS", "negate": false}]},
            "partitions": [{"treatment": "on", "size": 10 * (i % 11)},
                           {"treatment": "off", "size": 100 - 10 * (i % 11)}],
            "label": "default rule"}));
        let mut flag = json!({
            "orgId": "aaaabbbb-cccc", "environment": "eeeeffff-0000",
            "trafficTypeId": "tt-1", "trafficTypeName": "user",
            "name": format!("flag_{i:05}"), "killed": i.is_multiple_of(97), "defaultTreatment": "off",
            "changeNumber": 1_700_000_000_000_i64 + i as i64, "algo": 2,
            "trafficAllocation": if i.is_multiple_of(5) { 80 } else { 100 },
            "trafficAllocationSeed": (i as i64 * 7919) % 2_147_483_647 - 1_000_000_000,
            "seed": (i as i64 * 104_729) % 2_147_483_647 - 1_000_000_000,
            "status": "ACTIVE", "sets": [format!("set_{}", i % 40)],
            "impressionsDisabled": false,
            "configurations": {"on": format!("{{\"variant\":{i},\"color\":\"blue\"}}"),
                               "off": "{\"color\":\"grey\"}"},
            "conditions": conditions,
        });
        if i % 50 == 1 {
            flag["prerequisites"] = json!([{"n": format!("flag_{:05}", i - 1), "ts": ["on"]}]);
        }
        flags.push(flag);
    }
    let rbs: Vec<Value> = (0..100)
        .map(|r| {
            json!({"name": format!("rbs_{r}"), "trafficTypeName": "user",
                   "changeNumber": 5, "status": "ACTIVE",
                   "excluded": {"keys": [format!("excluded_{r}")],
                                "segments": [{"name": format!("segment_{}", r % 50), "type": "standard"}]},
                   "conditions": [{"conditionType": "WHITELIST", "matcherGroup": {"combiner": "AND",
                       "matchers": [matcher(r, 5), matcher(r, 2)]}}]})
        })
        .collect();
    json!({"ff": {"d": flags, "s": -1, "t": 1_700_000_010_000_i64},
           "rbs": {"d": rbs, "s": -1, "t": 5}})
    .to_string()
}

fn load(c: &mut Criterion) {
    let text = big_document(10_000);
    let (snapshot, problems) = Snapshot::from_json(&text, "bench").expect("parses");
    assert!(
        problems.is_empty(),
        "{:?}",
        &problems[..problems.len().min(3)]
    );
    assert_eq!(snapshot.len(), 10_000);
    eprintln!("load: document of {} bytes", text.len());
    let mut g = c.benchmark_group("load");
    g.sample_size(10);
    g.bench_function("10k_flags", |b| {
        b.iter(|| {
            let (s, p) = Snapshot::from_json(black_box(&text), "bench").expect("parses");
            black_box((s.len(), p.len()))
        })
    });
    // Baseline: the JSON text to a `serde_json::Value`, nothing else.
    g.bench_function("10k_flags/json_value_only", |b| {
        b.iter(|| {
            let v: Value = serde_json::from_str(black_box(&text)).expect("json");
            black_box(v.is_object())
        })
    });
    // The two halves of `from_json`: JSON to typed definitions, and compiling them.
    g.bench_function("10k_flags/parse_only", |b| {
        b.iter(|| {
            let (doc, p) = SplitChanges::parse(black_box(&text), "bench").expect("parses");
            black_box((doc.flags.d.len(), p.len()))
        })
    });
    let (doc, _) = SplitChanges::parse(&text, "bench").expect("parses");
    g.bench_function("10k_flags/compile_only", |b| {
        b.iter(|| {
            let (s, p) = Snapshot::new().apply_changes(black_box(&doc));
            black_box((s.len(), p.len()))
        })
    });
    g.finish();
}

criterion_group!(
    benches,
    evaluate_single,
    evaluate_attributes,
    evaluate_threads,
    load
);
criterion_main!(benches);
