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
//! - `resolve/get_treatment` and `resolve/openfeature_bool`: criterion, side by side; with
//!   `resolve/provider_alone` (the provider's `resolve_bool_value` called directly: what the
//!   provider adds) and `resolve/sdk_constant_provider` (the SDK's client over a provider
//!   that answers a constant: what the SDK costs by itself).
//! - then (with `--bench` only) an interleaved run: rounds running every path in turn,
//!   printing the median ns/op of each and its ratio to `get_treatment`.
//!
//! Run: `cargo bench -p splitkit-openfeature --bench resolve -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use open_feature::provider::{FeatureProvider, ProviderMetadata, ResolutionDetails};
use open_feature::{EvaluationContext, OpenFeature};
use open_feature::{EvaluationResult, StructValue};
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
    /// A second provider on the same client, called directly.
    provider: SplitProvider,
    /// An SDK client over [`Constant`].
    constant: open_feature::Client,
    _constant_api: OpenFeature,
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
    let mut constant_api = OpenFeature::default();
    runtime.block_on(constant_api.set_provider(Constant(ProviderMetadata::new("constant"))));
    let constant = constant_api.create_client();
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
        client: client.clone(),
        features,
        _api: api,
        provider: SplitProvider::new(client.clone()),
        constant,
        _constant_api: constant_api,
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

/// A provider answering `true` for every flag, with no variant, reason or metadata.
struct Constant(ProviderMetadata);

#[open_feature::async_trait]
impl FeatureProvider for Constant {
    fn metadata(&self) -> &ProviderMetadata {
        &self.0
    }
    async fn resolve_bool_value(
        &self,
        _: &str,
        _: &EvaluationContext,
    ) -> EvaluationResult<ResolutionDetails<bool>> {
        Ok(ResolutionDetails::new(true))
    }
    async fn resolve_int_value(
        &self,
        _: &str,
        _: &EvaluationContext,
    ) -> EvaluationResult<ResolutionDetails<i64>> {
        Ok(ResolutionDetails::new(0))
    }
    async fn resolve_float_value(
        &self,
        _: &str,
        _: &EvaluationContext,
    ) -> EvaluationResult<ResolutionDetails<f64>> {
        Ok(ResolutionDetails::new(0.0))
    }
    async fn resolve_string_value(
        &self,
        _: &str,
        _: &EvaluationContext,
    ) -> EvaluationResult<ResolutionDetails<String>> {
        Ok(ResolutionDetails::new(String::new()))
    }
    async fn resolve_struct_value(
        &self,
        _: &str,
        _: &EvaluationContext,
    ) -> EvaluationResult<ResolutionDetails<StructValue>> {
        Ok(ResolutionDetails::new(StructValue::default()))
    }
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

/// The provider alone: `resolve_bool_value` through the trait, without the SDK's client.
fn provider(s: &Setup, iters: u64) -> Duration {
    s.runtime.block_on(async {
        let start = Instant::now();
        for i in 0..iters as usize {
            let context = &s.contexts[i % KEYS];
            black_box(s.provider.resolve_bool_value(FLAG, context).await).ok();
        }
        start.elapsed()
    })
}

/// The SDK alone: its client over a provider that answers a constant without looking at
/// anything (the floor any provider pays).
fn sdk_floor(s: &Setup, iters: u64) -> Duration {
    s.runtime.block_on(async {
        let start = Instant::now();
        for i in 0..iters as usize {
            let context = &s.contexts[i % KEYS];
            black_box(s.constant.get_bool_value(FLAG, Some(context), None).await).ok();
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
    g.bench_function("provider_alone", |b| b.iter_custom(|n| provider(&s, n)));
    g.bench_function("sdk_constant_provider", |b| {
        b.iter_custom(|n| sdk_floor(&s, n))
    });
    g.finish();
}

/// Rounds running every path in turn (the order rotating from round to round), so that all
/// see the same machine state; prints the median ns/op of each and its ratio to
/// `get_treatment`.
fn interleaved(_: &mut Criterion) {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    const ROUNDS: usize = 40;
    const PER_ROUND: u64 = 20_000;
    type Path = fn(&Setup, u64) -> Duration;
    let paths: [(&str, Path); 4] = [
        ("get_treatment", get_treatment),
        ("OpenFeature bool", openfeature),
        ("provider alone", provider),
        ("SDK, constant provider", sdk_floor),
    ];
    let s = setup();
    let mut times: Vec<Vec<f64>> = vec![Vec::with_capacity(ROUNDS); paths.len()];
    for round in 0..ROUNDS {
        for k in 0..paths.len() {
            let p = (round + k) % paths.len();
            let d = (paths[p].1)(&s, PER_ROUND);
            times[p].push(d.as_nanos() as f64 / PER_ROUND as f64);
        }
    }
    let medians: Vec<f64> = times
        .iter_mut()
        .map(|v| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        })
        .collect();
    println!("interleaved, {ROUNDS} rounds of {PER_ROUND} per path (median):");
    for ((name, _), m) in paths.iter().zip(&medians) {
        println!(
            "  {name:<24} {m:>8.1} ns/op  {:>5.2}x get_treatment",
            m / medians[0]
        );
    }
}

criterion_group!(benches, side_by_side, interleaved);
criterion_main!(benches);
