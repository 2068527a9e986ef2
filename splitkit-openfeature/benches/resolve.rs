//! A bool resolution through the OpenFeature client against `Client::get_treatment`, on the
//! same client, flag, keys and attributes.
//!
//! Workload: `new_checkout` of `examples/flags.json` (localhost mode, no events URL), 1024
//! keys round-robin, each with a `plan` attribute; most keys fall through to the 50/50
//! rollout. Both paths record impressions (optimized mode). The OpenFeature path includes
//! everything a call costs in the SDK (context merging, hooks machinery, the provider's
//! conversion of the context into attributes, the reason and flag metadata), awaited inside
//! a running current-thread tokio runtime as an async application would.
//!
//! Groups:
//! - `resolve/get_treatment` and `resolve/openfeature_bool`: criterion, side by side.
//! - then (with `--bench` only) an interleaved run: rounds alternating the two paths (in
//!   either order), printing the median ns/op of each and their ratio.
//!
//! Run: `cargo bench -p splitkit-openfeature --bench resolve -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use open_feature::{EvaluationContext, OpenFeature};
use splitkit::{Attributes, Client};
use splitkit_openfeature::SplitProvider;

const FLAG: &str = "new_checkout";
const KEYS: usize = 1024;
const PLANS: [&str; 4] = ["free", "team", "free", "enterprise"];

struct Setup {
    runtime: tokio::runtime::Runtime,
    client: Client,
    features: open_feature::Client,
    _api: OpenFeature,
    keys: Vec<String>,
    attributes: Vec<Attributes>,
    contexts: Vec<EvaluationContext>,
}

fn setup() -> Setup {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
    let client = Client::builder("localhost")
        .split_file(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../examples/flags.json"
        ))
        .build()
        .expect("a client");
    let mut api = OpenFeature::default();
    runtime.block_on(api.set_provider(SplitProvider::new(client.clone())));
    let features = api.create_client();
    let keys: Vec<String> = (0..KEYS).map(|i| format!("user-{i:04}")).collect();
    let attributes = (0..KEYS)
        .map(|i| Attributes::new().with("plan", PLANS[i % PLANS.len()]))
        .collect();
    let contexts = keys
        .iter()
        .enumerate()
        .map(|(i, k)| {
            EvaluationContext::default()
                .with_targeting_key(k.as_str())
                .with_custom_field("plan", PLANS[i % PLANS.len()])
        })
        .collect();
    let s = Setup {
        runtime,
        client,
        features,
        _api: api,
        keys,
        attributes,
        contexts,
    };
    // Both paths answer the same.
    for i in 0..KEYS {
        let t = s
            .client
            .get_treatment(&s.keys[i], FLAG, Some(&s.attributes[i]));
        let b = s
            .runtime
            .block_on(s.features.get_bool_value(FLAG, Some(&s.contexts[i]), None))
            .expect("a boolean");
        assert_eq!(b, t == "on", "{}", s.keys[i]);
    }
    s
}

fn get_treatment(s: &Setup, iters: u64) -> Duration {
    let start = Instant::now();
    for i in 0..iters as usize {
        let j = i % KEYS;
        black_box(
            s.client
                .get_treatment(&s.keys[j], FLAG, Some(&s.attributes[j])),
        );
    }
    start.elapsed()
}

fn openfeature(s: &Setup, iters: u64) -> Duration {
    s.runtime.block_on(async {
        let start = Instant::now();
        for i in 0..iters as usize {
            let context = &s.contexts[i % KEYS];
            black_box(s.features.get_bool_value(FLAG, Some(context), None).await).ok();
        }
        start.elapsed()
    })
}

fn side_by_side(c: &mut Criterion) {
    let s = setup();
    let mut g = c.benchmark_group("resolve");
    g.bench_function("get_treatment", |b| b.iter_custom(|n| get_treatment(&s, n)));
    g.bench_function("openfeature_bool", |b| {
        b.iter_custom(|n| openfeature(&s, n))
    });
    g.finish();
}

/// Rounds alternating the two paths, so that both see the same machine state.
fn interleaved(_: &mut Criterion) {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    const ROUNDS: usize = 40;
    const PER_ROUND: u64 = 20_000;
    let s = setup();
    let per_op = |d: Duration| d.as_nanos() as f64 / PER_ROUND as f64;
    let (mut direct, mut of) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        if round % 2 == 0 {
            direct.push(per_op(get_treatment(&s, PER_ROUND)));
            of.push(per_op(openfeature(&s, PER_ROUND)));
        } else {
            of.push(per_op(openfeature(&s, PER_ROUND)));
            direct.push(per_op(get_treatment(&s, PER_ROUND)));
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (d, o) = (median(&mut direct), median(&mut of));
    println!(
        "interleaved ({ROUNDS} rounds of {PER_ROUND}): get_treatment {d:.1} ns/op, OpenFeature bool {o:.1} ns/op, ratio {:.2}",
        o / d
    );
}

criterion_group!(benches, side_by_side, interleaved);
criterion_main!(benches);
