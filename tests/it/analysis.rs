//! The statistics of an analysis report through the public API: sample-ratio checks,
//! multiple-comparison control per tier, relative intervals, minimum sample and MDE, and
//! partial reports merged from key partitions.

use proptest::prelude::*;
use splitkit::analysis::{
    Aggregation, AnalysisSpec, AnalysisSpecBuilder, AttributionEvent, AttributionImpression,
    FlagSpec, ImpressionPass, Metric, PartialReport, Report, Tier, VersionStarts, analyze,
};

const T: i64 = 1_700_000_000_000;
const A: i64 = T + 10 * 86_400_000;
const RULE: &str = "default rule";

fn imp(key: &str, treatment: &str, cn: i64) -> AttributionImpression {
    AttributionImpression {
        key: key.into(),
        flag: "f".into(),
        treatment: treatment.into(),
        label: Some(RULE.into()),
        change_number: cn,
        time_ms: T + 1_000,
    }
}

fn ev(key: &str, event_type: &str, value: f64) -> AttributionEvent {
    AttributionEvent {
        key: key.into(),
        traffic_type: "user".into(),
        event_type: event_type.into(),
        value: Some(value),
        time_ms: T + 2_000,
    }
}

/// A deterministic pseudo-random stream (SplitMix64), so the data is the same on every run.
struct Rng(u64);

impl Rng {
    fn unit(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (z ^ (z >> 31)) as f64 / u64::MAX as f64
    }
}

/// `on` keys then `off` keys; `on` buys more often and spends more.
pub(crate) fn experiment(
    on: usize,
    off: usize,
) -> (Vec<AttributionImpression>, Vec<AttributionEvent>) {
    let mut rng = Rng(7);
    let mut imps = Vec::new();
    let mut events = Vec::new();
    for i in 0..on + off {
        let key = format!("k{i}");
        let treatment = if i < on { "on" } else { "off" };
        imps.push(imp(&key, treatment, 1));
        let p = if i < on { 0.30 } else { 0.20 };
        if rng.unit() < p {
            events.push(ev(&key, "buy", 10.0 + 40.0 * rng.unit()));
        }
        if rng.unit() < 0.5 {
            events.push(ev(&key, "view", 1.0));
        }
    }
    (imps, events)
}

pub(crate) fn spec(flag: FlagSpec) -> AnalysisSpec {
    AnalysisSpecBuilder::new(A)
        .flag(flag)
        .metric(Metric::new("converted", "buy", Aggregation::HasEvent).tier(Tier::Key))
        .metric(
            Metric::new("revenue", "buy", Aggregation::Sum)
                .tier(Tier::Key)
                .cuped(),
        )
        .metric(Metric::new("views", "view", Aggregation::Count).tier(Tier::Guardrail))
        .metric(Metric::new("order", "buy", Aggregation::Average))
        .build()
        .expect("valid spec")
}

pub(crate) fn even() -> FlagSpec {
    FlagSpec::new("f", "user", "off").expected_split(RULE, [("on", 50.0), ("off", 50.0)])
}

#[test]
fn a_skewed_split_is_flagged_in_the_check_the_impacts_and_the_text() {
    // 5,200 / 4,800 against 50/50: chi-square 16, p = 6.3e-5 < 0.001.
    let (imps, events) = experiment(5_200, 4_800);
    let report = analyze(&spec(even()), &imps, &events);
    let unit = &report.flags[0].units[0];
    let check = unit.sample_ratio(Some(RULE)).expect("a check of the rule");
    assert_eq!(check.chi_square, Some(16.0));
    assert!(check.mismatch && check.overall_mismatch);
    assert!(unit.impacts.iter().all(|i| i.sample_ratio_mismatch));
    let text = report.to_string();
    assert!(text.contains("SAMPLE RATIO MISMATCH"), "{text}");
    assert!(text.contains("sample ratio mismatch"), "{text}");

    // The same data against the 52/48 split it was drawn from is fine.
    let fitting =
        FlagSpec::new("f", "user", "off").expected_split(RULE, [("on", 52.0), ("off", 48.0)]);
    let report = analyze(&spec(fitting), &imps, &events);
    let unit = &report.flags[0].units[0];
    let check = unit.sample_ratio(Some(RULE)).expect("a check of the rule");
    assert_eq!(check.chi_square, Some(0.0));
    assert!(!check.mismatch);
    assert!(unit.impacts.iter().all(|i| !i.sample_ratio_mismatch));
    assert!(!report.to_string().contains("MISMATCH"));
}

#[test]
fn a_threshold_and_a_versions_own_split_are_honoured() {
    let (imps, events) = experiment(5_200, 4_800);
    let loose = AnalysisSpecBuilder::new(A)
        .flag(even())
        .srm_threshold(1e-5)
        .build()
        .expect("valid");
    let unit = &analyze(&loose, &imps, &events).flags[0].units[0];
    assert!(!unit.sample_ratios[0].mismatch, "6.3e-5 is above 1e-5");

    let flag = even().version_expected_split(1, RULE, [("on", 52.0), ("off", 48.0)]);
    let unit = &analyze(&spec(flag), &imps, &events).flags[0].units[0];
    assert_eq!(unit.sample_ratios.len(), 1);
    assert!(
        !unit.sample_ratios[0].mismatch,
        "version 1's own split wins"
    );

    // Splits read from the flag definition: the rule's partitions for its change number.
    let definition: splitkit::definitions::FeatureFlag = serde_json::from_str(
        r#"{"name":"f","changeNumber":1,"conditions":[{"label":"default rule",
            "partitions":[{"treatment":"on","size":50},{"treatment":"off","size":50}]}]}"#,
    )
    .expect("valid definition");
    let flag = FlagSpec::new("f", "user", "off").expected_splits_from(&definition);
    let unit = &analyze(&spec(flag), &imps, &events).flags[0].units[0];
    assert_eq!(unit.sample_ratios[0].chi_square, Some(16.0));
}

#[test]
fn adjustment_is_benjamini_hochberg_within_each_tier() {
    let (imps, events) = experiment(3_000, 3_000);
    let report = analyze(&spec(even()), &imps, &events);
    let unit = &report.flags[0].units[0];
    assert_eq!(unit.impacts.len(), 4);
    let get = |m: &str| unit.impact(Some(RULE), "on", m).expect("impact");
    let (converted, revenue) = (get("converted"), get("revenue"));
    let (views, order) = (get("views"), get("order"));
    assert_eq!(
        [converted.tier, revenue.tier, views.tier, order.tier],
        [Tier::Key, Tier::Key, Tier::Guardrail, Tier::Supporting]
    );
    // Families of one keep their p-value.
    assert_eq!(views.adjusted_p_value, views.p_value);
    assert_eq!(order.adjusted_p_value, order.p_value);
    assert_eq!(
        views.adjusted_confidence_interval,
        views.confidence_interval
    );
    // The key family of two: the smaller p doubles, the larger stays (step-up).
    let (p1, p2) = (converted.p_value.expect("p"), revenue.p_value.expect("p"));
    let (lo, hi) = (p1.min(p2), p1.max(p2));
    let q_lo = (lo * 2.0).min(hi);
    let adj = |i: &splitkit::analysis::Impact| i.adjusted_p_value.expect("adjusted");
    let by_p = |p: f64| {
        if p == p1 {
            adj(converted)
        } else {
            adj(revenue)
        }
    };
    assert!((by_p(lo) - q_lo).abs() < 1e-15 && by_p(hi) == hi);
    // Adjusted intervals are wider, and exclude 0 exactly when adjusted-significant.
    for i in [converted, revenue] {
        let (a, b) = i.confidence_interval.expect("ci");
        let (c, d) = i.adjusted_confidence_interval.expect("adjusted ci");
        assert!(c <= a && b <= d, "{i:?}");
        assert_eq!(c > 0.0 || d < 0.0, i.adjusted_significant, "{i:?}");
        assert!(
            i.adjusted_significant,
            "a 30% vs 20% conversion on 3,000 keys each"
        );
        let (rc, rd) = i.adjusted_relative_confidence_interval.expect("relative");
        let (ra, rb) = i.relative_confidence_interval.expect("relative");
        assert!(rc <= ra && rb <= rd);
        let r = i.relative_difference.expect("relative");
        assert!(ra < r && r < rb);
    }
    assert!(converted.conclusive && views.conclusive);
    let mde = converted.minimum_detectable_effect.expect("mde");
    assert!(mde > 0.0 && mde < converted.difference.expect("diff"));
}

#[test]
fn a_sequential_analysis_has_always_valid_p_values_and_sequences() {
    let (imps, events) = experiment(3_000, 3_000);
    let fixed = analyze(&spec(even()), &imps, &events);
    assert!(
        fixed.flags[0].units[0]
            .impacts
            .iter()
            .all(|i| i.always_valid_p_value.is_none())
    );
    let sequential = AnalysisSpecBuilder::new(A)
        .flag(even())
        .metric(Metric::new("converted", "buy", Aggregation::HasEvent))
        .metric(Metric::new("views", "view", Aggregation::Count))
        .sequential(0.01)
        .build()
        .expect("valid");
    let report = analyze(&sequential, &imps, &events);
    assert_eq!(report.sequential_tau_squared, Some(0.01));
    for i in &report.flags[0].units[0].impacts {
        let p = i.always_valid_p_value.expect("always-valid p");
        let (lo, hi) = i.confidence_sequence.expect("sequence");
        let (a, b) = i.confidence_interval.expect("interval");
        assert!(p >= i.p_value.expect("p"), "the price of peeking: {i:?}");
        assert!(lo < a && b < hi, "{i:?}");
        assert_eq!(lo > 0.0 || hi < 0.0, p < 0.05);
    }
    let converted = report.flags[0].units[0].impact(Some(RULE), "on", "converted");
    assert!(
        converted.and_then(|i| i.always_valid_p_value) < Some(0.05),
        "30% vs 20%"
    );
    assert!(report.to_string().contains("always-valid p"));
}

#[test]
fn cuped_without_pre_exposure_events_changes_nothing() {
    let (imps, events) = experiment(2_000, 2_000);
    let report = analyze(&spec(even()), &imps, &events);
    let unit = &report.flags[0].units[0];
    let revenue = unit.impact(Some(RULE), "on", "revenue").expect("impact");
    let c = revenue.cuped.as_ref().expect("a CUPED estimate");
    assert_eq!((c.theta, c.n_treatment, c.n_baseline), (0.0, 2_000, 2_000));
    let near = |a: f64, b: f64| (a - b).abs() <= 1e-9 * b.abs().max(1.0);
    assert!(near(c.difference, revenue.difference.expect("diff")));
    let ((a, b), (x, y)) = (
        c.confidence_interval.expect("ci"),
        revenue.confidence_interval.expect("ci"),
    );
    assert!(near(a, x) && near(b, y));
    assert!(c.variance_reduction.expect("reduction").abs() < 1e-9);
    let converted = unit.impact(Some(RULE), "on", "converted").expect("impact");
    assert_eq!(converted.cuped, None, "only metrics with cuped()");
}

#[test]
fn cuped_with_a_predictive_history_narrows_the_interval() {
    // Each key has a habit: views before exposure predict views after; `on` adds 0.3.
    let mut rng = Rng(11);
    let (mut imps, mut events) = (Vec::new(), Vec::new());
    for i in 0..4_000 {
        let key = format!("k{i}");
        let treatment = if i % 2 == 0 { "on" } else { "off" };
        imps.push(imp(&key, treatment, 1));
        let habit = 6.0 * rng.unit();
        let lift = if treatment == "on" { 0.3 } else { 0.0 };
        let pre = (habit + rng.unit()).floor() as usize;
        let post = (habit + lift + rng.unit()).floor() as usize;
        for _ in 0..pre {
            let mut e = ev(&key, "view", 1.0);
            e.time_ms = T + 1_000 - 86_400_000;
            events.push(e);
        }
        // Outside the pre-exposure window (30 days before): ignored.
        let mut old = ev(&key, "view", 1.0);
        old.time_ms = T - 30 * 86_400_000;
        events.push(old);
        for _ in 0..post {
            events.push(ev(&key, "view", 1.0));
        }
    }
    let spec = AnalysisSpecBuilder::new(A)
        .flag(even())
        .metric(Metric::new("views", "view", Aggregation::Count).cuped())
        .build()
        .expect("valid");
    let report = analyze(&spec, &imps, &events);
    let views = &report.flags[0].units[0].impacts[0];
    let c = views.cuped.as_ref().expect("estimate");
    let reduction = c.variance_reduction.expect("reduction");
    assert!(
        reduction > 0.7,
        "habit explains most of the variance: {reduction}"
    );
    assert!(c.theta > 0.8 && c.theta < 1.2, "theta {}", c.theta);
    let (lo, hi) = c.confidence_interval.expect("ci");
    let (a, b) = views.confidence_interval.expect("ci");
    assert!(hi - lo < (b - a) * 0.6, "[{lo}, {hi}] vs [{a}, {b}]");
    assert!(lo < 0.3 && 0.3 < hi, "covers the true lift");
    assert!(report.to_string().contains("CUPED diff"));
    // A shorter window misses the pre-exposure events: nothing to adjust with.
    let short = AnalysisSpecBuilder::new(A)
        .flag(even())
        .metric(Metric::new("views", "view", Aggregation::Count).cuped())
        .cuped_window_ms(3_600_000)
        .build()
        .expect("valid");
    let report = analyze(&short, &imps, &events);
    let c = report.flags[0].units[0].impacts[0]
        .cuped
        .clone()
        .expect("estimate");
    assert_eq!(c.theta, 0.0);
}

#[test]
fn small_samples_are_not_yet_conclusive() {
    let (imps, events) = experiment(354, 400);
    let report = analyze(&spec(even()), &imps, &events);
    let unit = &report.flags[0].units[0];
    assert!(unit.impacts.iter().all(|i| !i.conclusive));
    assert!(report.to_string().contains("not yet conclusive"));
    let lenient = AnalysisSpecBuilder::new(A)
        .flag(even())
        .metric(Metric::new("converted", "buy", Aggregation::HasEvent))
        .min_sample_size(354)
        .build()
        .expect("valid");
    let unit = &analyze(&lenient, &imps, &events).flags[0].units[0];
    assert!(unit.impacts[0].conclusive);
}

#[test]
fn reports_without_the_new_fields_still_read() {
    let (imps, events) = experiment(50, 50);
    let report = analyze(&spec(even()), &imps, &events);
    let mut json: serde_json::Value = serde_json::to_value(&report).expect("serialize");
    let new_impact_fields = [
        "tier",
        "relative_confidence_interval",
        "adjusted_p_value",
        "adjusted_confidence_interval",
        "adjusted_relative_confidence_interval",
        "adjusted_significant",
        "conclusive",
        "minimum_detectable_effect",
        "relative_minimum_detectable_effect",
        "sample_ratio_mismatch",
        "always_valid_p_value",
        "confidence_sequence",
        "cuped",
    ];
    for key in [
        "srm_threshold",
        "min_sample_size",
        "power",
        "sequential_tau_squared",
    ] {
        json.as_object_mut()
            .and_then(|o| o.remove(key))
            .expect("field");
    }
    for unit in json["flags"][0]["units"].as_array_mut().expect("units") {
        unit.as_object_mut()
            .and_then(|o| o.remove("sample_ratios"))
            .expect("field");
        for i in unit["impacts"].as_array_mut().expect("impacts") {
            for key in new_impact_fields {
                i.as_object_mut()
                    .and_then(|o| o.remove(key))
                    .expect("field");
            }
        }
    }
    let old: Report = serde_json::from_value(json).expect("an older report reads");
    assert_eq!(old.srm_threshold, 0.001);
    assert_eq!(
        old.flags[0].units[0].impacts[0].p_value,
        report.flags[0].units[0].impacts[0].p_value
    );
}

fn partial(
    spec: &AnalysisSpec,
    imps: &[AttributionImpression],
    events: &[AttributionEvent],
    starts: &VersionStarts,
) -> PartialReport {
    let mut pass = ImpressionPass::new(spec);
    pass.extend(imps);
    let mut pass = pass.finish_with(starts);
    pass.extend(events);
    pass.finish()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Any partition of the keys in two merges to the whole: groups, checks and adjusted
    /// statistics alike.
    #[test]
    fn merged_key_halves_equal_the_whole(on in 5usize..60, off in 5usize..60, mask in any::<u64>()) {
        let (imps, events) = experiment(on, off);
        let spec = spec(even());
        let side = |key: &str| key[1..].parse::<u32>().map_or(0, |n| (mask >> (n % 64)) & 1);
        let half = |s: u64| {
            let i: Vec<_> = imps.iter().filter(|x| side(&x.key) == s).cloned().collect();
            let e: Vec<_> = events.iter().filter(|x| side(&x.key) == s).cloned().collect();
            (i, e)
        };
        let ((ia, ea), (ib, eb)) = (half(0), half(1));
        let mut starts = VersionStarts::new();
        for part in [&ia, &ib] {
            let mut pass = ImpressionPass::new(&spec);
            pass.extend(part);
            starts.merge(&pass.version_starts());
        }
        let mut merged = partial(&spec, &ia, &ea, &starts);
        merged.merge(partial(&spec, &ib, &eb, &starts)).expect("same spec");
        let whole = analyze(&spec, &imps, &events);
        let merged = merged.report();
        prop_assert_eq!(merged.stats, whole.stats);
        let (m, w) = (&merged.flags[0].units[0], &whole.flags[0].units[0]);
        prop_assert_eq!(&m.sample_ratios, &w.sample_ratios);
        prop_assert_eq!(m.impacts.len(), w.impacts.len());
        for (a, b) in m.impacts.iter().zip(&w.impacts) {
            prop_assert_eq!(a.adjusted_significant, b.adjusted_significant);
            prop_assert_eq!(a.conclusive, b.conclusive);
            prop_assert_eq!(a.sample_ratio_mismatch, b.sample_ratio_mismatch);
            let near = |x: Option<f64>, y: Option<f64>| match (x, y) {
                (Some(x), Some(y)) => (x - y).abs() <= 1e-9 * y.abs().max(1.0),
                (x, y) => x == y,
            };
            prop_assert!(near(a.adjusted_p_value, b.adjusted_p_value), "{:?} {:?}", a, b);
            prop_assert!(near(a.difference, b.difference));
            let cuped = |i: &splitkit::analysis::Impact| i.cuped.as_ref().map(|c| (c.difference, c.n_treatment));
            match (cuped(a), cuped(b)) {
                (Some((x, n)), Some((y, k))) => prop_assert!(n == k && near(Some(x), Some(y))),
                (x, y) => prop_assert_eq!(x, y),
            }
        }
    }
}
