//! Deterministic synthetic workload shared by the attribution examples and benchmark: a tiny
//! PRNG and a generator of impressions and events for one flag over two weeks.

use std::fmt::Write as _;

use splitkit::analysis::{
    Aggregation, AnalysisSpec, AnalysisSpecBuilder, AttributionEvent, AttributionImpression,
    FlagSpec, Metric, Tier,
};

/// SplitMix64: a tiny deterministic PRNG.
pub struct Rng(pub u64);

impl Rng {
    /// The next 64 random bits.
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `[lo, hi)`.
    pub fn between(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next() % (hi - lo) as u64) as i64
    }
}

const HOUR: i64 = 3_600_000;
/// 2024-03-01 00:00:00Z.
const START: i64 = 1_709_251_200_000;
const FLAG: &str = "checkout_flow";

/// The synthetic workload: which keys, and the records' shape.
pub struct Workload {
    rng: Rng,
    keys: u64,
}

impl Workload {
    /// A workload over `keys` keys.
    pub fn new(keys: u64) -> Self {
        Workload { rng: Rng(7), keys }
    }

    /// The spec that measures this workload: one flag, four metrics on two event types.
    pub fn spec() -> AnalysisSpec {
        AnalysisSpecBuilder::new(START + 14 * 24 * HOUR)
            .flag(FlagSpec::new(FLAG, "user", "off"))
            .metric(Metric::new("views", "page_view", Aggregation::Count))
            .metric(Metric::new("revenue", "checkout", Aggregation::Sum))
            .metric(Metric::new("order_value", "checkout", Aggregation::Average))
            .metric(Metric::new("converted", "checkout", Aggregation::HasEvent))
            .build()
            .expect("valid spec")
    }

    /// [`spec`](Self::spec) with every optional statistic: the rules' expected splits,
    /// metric tiers, CUPED on the page views and sequential testing.
    pub fn spec_with_statistics() -> AnalysisSpec {
        let flag = FlagSpec::new(FLAG, "user", "off")
            .expected_split("default rule", [("on", 50.0), ("off", 50.0)])
            .expected_split("in segment beta", [("on", 100.0)]);
        AnalysisSpecBuilder::new(START + 14 * 24 * HOUR)
            .flag(flag)
            .metric(Metric::new("views", "page_view", Aggregation::Count).cuped())
            .metric(Metric::new("revenue", "checkout", Aggregation::Sum).tier(Tier::Key))
            .metric(Metric::new("order_value", "checkout", Aggregation::Average))
            .metric(Metric::new("converted", "checkout", Aggregation::HasEvent).tier(Tier::Key))
            .sequential(0.01)
            .build()
            .expect("valid spec")
    }

    /// Buffers to fill with [`next_impression`](Self::next_impression) and
    /// [`next_event`](Self::next_event).
    pub fn buffers() -> (AttributionImpression, AttributionEvent) {
        let imp = AttributionImpression {
            flag: FLAG.into(),
            ..Default::default()
        };
        let ev = AttributionEvent {
            traffic_type: "user".into(),
            ..Default::default()
        };
        (imp, ev)
    }

    /// Fills `imp` with the next impression, reusing its buffers: random key and time over 14
    /// days, version 1 then 2 after a week; 2% of keys move to a segment rule on some days
    /// (one or more switches).
    pub fn next_impression(&mut self, imp: &mut AttributionImpression) {
        let r = self.rng.next();
        let key = r % self.keys;
        imp.key.clear();
        write!(imp.key, "user-{key}").ok();
        let hour = ((r >> 20) % (14 * 24)) as i64;
        let in_segment = key.is_multiple_of(50) && (hour / 24) % 3 == 1;
        let label = imp.label.get_or_insert_with(String::new);
        label.clear();
        label.push_str(if in_segment {
            "in segment beta"
        } else {
            "default rule"
        });
        imp.treatment.clear();
        imp.treatment
            .push_str(if in_segment || key.is_multiple_of(2) {
                "on"
            } else {
                "off"
            });
        imp.change_number = if hour < 7 * 24 { 1 } else { 2 };
        imp.time_ms = START + hour * HOUR + self.rng.between(0, HOUR);
    }

    /// Fills `ev` with the next event, reusing its buffers: random key and time, 10% checkouts
    /// with a value, else page views.
    pub fn next_event(&mut self, ev: &mut AttributionEvent) {
        let r = self.rng.next();
        let key = r % self.keys;
        ev.key.clear();
        write!(ev.key, "user-{key}").ok();
        let checkout = self.rng.unit() < 0.1;
        ev.event_type.clear();
        ev.event_type
            .push_str(if checkout { "checkout" } else { "page_view" });
        ev.value = checkout.then_some(((r >> 24) % 100) as f64);
        ev.time_ms = START + self.rng.between(0, 14 * 24 * HOUR);
    }
}
