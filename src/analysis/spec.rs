//! What to measure: flags, metrics and the analysis settings.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::AnalysisError;
use super::srm::ExpectedSplit;
use crate::definitions::FeatureFlag;

/// Default attribution buffer around impressions: 15 minutes.
pub const DEFAULT_BUFFER_MS: i64 = 15 * 60 * 1000;
/// Default retention: 90 days.
pub const DEFAULT_RETENTION_MS: i64 = 90 * 24 * 60 * 60 * 1000;
/// Default significance threshold.
pub const DEFAULT_ALPHA: f64 = 0.05;
/// Default p-value below which a sample-ratio test is a mismatch: 0.001, as Harness FME.
pub const DEFAULT_SRM_THRESHOLD: f64 = 0.001;
/// Default minimum sample per treatment below which an impact is not yet conclusive: 355, as
/// Harness FME.
pub const DEFAULT_MIN_SAMPLE_SIZE: u64 = 355;
/// Default power of the minimum detectable effect: 80%.
pub const DEFAULT_POWER: f64 = 0.8;
/// Default pre-exposure window of CUPED covariates: 14 days before a key's first impression.
pub const DEFAULT_CUPED_WINDOW_MS: i64 = 14 * 24 * 60 * 60 * 1000;

/// A metric's tier: multiple-comparison control (Benjamini–Hochberg) applies within each tier
/// of a unit, as Harness FME groups key, guardrail and supporting metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Tier {
    /// The metrics the experiment is meant to move.
    Key,
    /// Metrics that must not get worse.
    Guardrail,
    /// Everything else (the default).
    #[default]
    Supporting,
}

impl Tier {
    /// The tier's name as written in reports: `key`, `guardrail`, `supporting`.
    ///
    /// # Examples
    ///
    /// ```
    /// use splitkit::analysis::Tier;
    /// assert_eq!(Tier::Guardrail.as_str(), "guardrail");
    /// ```
    pub fn as_str(&self) -> &'static str {
        match self {
            Tier::Key => "key",
            Tier::Guardrail => "guardrail",
            Tier::Supporting => "supporting",
        }
    }
}

/// How a metric turns one key's attributed events into one value.
///
/// Null event values are skipped by [`Sum`](Aggregation::Sum) and
/// [`Average`](Aggregation::Average) and still counted by [`Count`](Aggregation::Count) and
/// [`HasEvent`](Aggregation::HasEvent).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Aggregation {
    /// Number of events; 0 for a key without events.
    Count,
    /// Sum of the non-null values; 0 for a key without any.
    Sum,
    /// Mean of the key's non-null values; a key without any is left out of the group.
    Average,
    /// 1 when the key has at least one event, else 0.
    HasEvent,
}

impl Aggregation {
    /// The aggregation's name as written in reports: `count`, `sum`, `average`, `has_event`.
    ///
    /// # Examples
    ///
    /// ```
    /// use splitkit::analysis::Aggregation;
    /// assert_eq!(Aggregation::HasEvent.as_str(), "has_event");
    /// ```
    pub fn as_str(&self) -> &'static str {
        match self {
            Aggregation::Count => "count",
            Aggregation::Sum => "sum",
            Aggregation::Average => "average",
            Aggregation::HasEvent => "has_event",
        }
    }
}

/// A metric defined by the user: an event type and how to aggregate it per key.
///
/// Metrics are applied when the analysis runs, so they can be defined after the events were
/// recorded.
///
/// # Examples
///
/// ```
/// use splitkit::analysis::{Aggregation, Metric, Tier};
/// let revenue = Metric::new("revenue", "checkout", Aggregation::Sum).tier(Tier::Key);
/// assert_eq!(revenue.event_type(), "checkout");
/// assert_eq!(revenue.metric_tier(), Tier::Key);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metric {
    name: String,
    event_type: String,
    aggregation: Aggregation,
    #[serde(default)]
    tier: Tier,
    #[serde(default)]
    cuped: bool,
}

impl Metric {
    /// A metric named `name` over events of type `event_type`.
    pub fn new(
        name: impl Into<String>,
        event_type: impl Into<String>,
        aggregation: Aggregation,
    ) -> Self {
        Metric {
            name: name.into(),
            event_type: event_type.into(),
            aggregation,
            tier: Tier::default(),
            cuped: false,
        }
    }

    /// Adds a CUPED estimate to the metric's impacts: the same metric over the key's events
    /// of the pre-exposure window
    /// ([`AnalysisSpecBuilder::cuped_window_ms`], 14 days before its first impression) is the
    /// covariate (default: no CUPED).
    pub fn cuped(mut self) -> Self {
        self.cuped = true;
        self
    }

    /// Whether [`cuped`](Self::cuped) was set.
    pub fn uses_cuped(&self) -> bool {
        self.cuped
    }

    /// The metric's tier (default [`Tier::Supporting`]).
    pub fn tier(mut self, tier: Tier) -> Self {
        self.tier = tier;
        self
    }

    /// The tier set with [`tier`](Self::tier).
    pub fn metric_tier(&self) -> Tier {
        self.tier
    }

    /// The metric's name, as shown in reports.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The event type (`eventTypeId`) the metric reads.
    pub fn event_type(&self) -> &str {
        &self.event_type
    }

    /// How events are aggregated per key.
    pub fn aggregation(&self) -> Aggregation {
        self.aggregation
    }
}

/// A closed time range `[from_ms, to_ms]` in epoch milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DateRange {
    /// First millisecond of the range (inclusive).
    pub from_ms: i64,
    /// Last millisecond of the range (inclusive).
    pub to_ms: i64,
}

impl DateRange {
    /// The range `[from_ms, to_ms]`.
    pub fn new(from_ms: i64, to_ms: i64) -> Self {
        DateRange { from_ms, to_ms }
    }

    /// Whether `time_ms` lies in the range, both ends included.
    pub fn contains(&self, time_ms: i64) -> bool {
        self.from_ms <= time_ms && time_ms <= self.to_ms
    }
}

/// What the analysis needs to know about one flag.
///
/// By default the flag is analysed per version (change number). Declared start times override
/// the first-impression start of a version. When custom ranges are given, the flag is analysed
/// per range instead of per version.
///
/// # Examples
///
/// ```
/// use splitkit::analysis::FlagSpec;
/// let flag = FlagSpec::new("new_checkout", "user", "off")
///     .version_start(1_700_000_000_000, 1_700_000_000_000)
///     .range(1_700_000_000_000, 1_700_600_000_000);
/// assert_eq!(flag.baseline(), "off");
/// assert_eq!(flag.ranges().len(), 1);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct FlagSpec {
    name: String,
    traffic_type: String,
    baseline: String,
    version_starts: BTreeMap<i64, i64>,
    ranges: Vec<DateRange>,
    expected_splits: Vec<ExpectedSplit>,
}

impl FlagSpec {
    /// Flag `name` of traffic type `traffic_type`; impacts are measured against the treatment
    /// `baseline`. No declared starts and no custom ranges by default.
    pub fn new(
        name: impl Into<String>,
        traffic_type: impl Into<String>,
        baseline: impl Into<String>,
    ) -> Self {
        FlagSpec {
            name: name.into(),
            traffic_type: traffic_type.into(),
            baseline: baseline.into(),
            version_starts: BTreeMap::new(),
            ranges: Vec::new(),
            expected_splits: Vec::new(),
        }
    }

    /// Declares the split the rule `label` assigns in every unit, as treatment weights (the
    /// partition percentages, or any positive numbers in the same ratio), for the
    /// sample-ratio check. An empty label is no label. A split declared for a version with
    /// [`version_expected_split`](Self::version_expected_split) wins over this one. Declaring
    /// a label again replaces its split. Default: no split, no check.
    ///
    /// # Examples
    ///
    /// ```
    /// use splitkit::analysis::FlagSpec;
    /// let flag = FlagSpec::new("f", "user", "off")
    ///     .expected_split("default rule", [("on", 50.0), ("off", 50.0)]);
    /// assert_eq!(flag.name(), "f");
    /// ```
    pub fn expected_split<T: Into<String>>(
        self,
        label: &str,
        weights: impl IntoIterator<Item = (T, f64)>,
    ) -> Self {
        self.add_split(ExpectedSplit::new(
            None,
            label,
            weights.into_iter().map(|(t, w)| (t.into(), w)),
        ))
    }

    /// Declares the split of rule `label` in version `change_number` only; see
    /// [`expected_split`](Self::expected_split).
    pub fn version_expected_split<T: Into<String>>(
        self,
        change_number: i64,
        label: &str,
        weights: impl IntoIterator<Item = (T, f64)>,
    ) -> Self {
        self.add_split(ExpectedSplit::new(
            Some(change_number),
            label,
            weights.into_iter().map(|(t, w)| (t.into(), w)),
        ))
    }

    /// Declares the split of every labelled rule with partitions in a flag definition, for the
    /// definition's version (for every unit when it has no change number).
    pub fn expected_splits_from(self, definition: &FeatureFlag) -> Self {
        ExpectedSplit::from_definition(definition)
            .into_iter()
            .fold(self, FlagSpec::add_split)
    }

    fn add_split(mut self, split: ExpectedSplit) -> Self {
        self.expected_splits
            .retain(|s| (s.change_number, &s.label) != (split.change_number, &split.label));
        self.expected_splits.push(split);
        self
    }

    pub(crate) fn splits(&self) -> &[ExpectedSplit] {
        &self.expected_splits
    }

    /// Declares that version `change_number` started at `start_ms` (default: its first retained
    /// impression over all keys). A version declared here bounds the previous version even when
    /// it has no impressions.
    pub fn version_start(mut self, change_number: i64, start_ms: i64) -> Self {
        self.version_starts.insert(change_number, start_ms);
        self
    }

    /// Adds the custom range `[from_ms, to_ms]` as a unit. Once a flag has ranges it is analysed
    /// per range, not per version (default: no ranges).
    pub fn range(mut self, from_ms: i64, to_ms: i64) -> Self {
        self.ranges.push(DateRange::new(from_ms, to_ms));
        self
    }

    /// The flag's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The flag's traffic type; events of another traffic type never count for it.
    pub fn traffic_type(&self) -> &str {
        &self.traffic_type
    }

    /// The baseline treatment impacts are measured against.
    pub fn baseline(&self) -> &str {
        &self.baseline
    }

    /// Declared version start times, by change number.
    pub fn version_starts(&self) -> &BTreeMap<i64, i64> {
        &self.version_starts
    }

    /// The custom ranges; empty when the flag is analysed per version.
    pub fn ranges(&self) -> &[DateRange] {
        &self.ranges
    }
}

/// A validated description of one analysis: its time, settings, flags and metrics.
///
/// Built with [`AnalysisSpecBuilder`].
///
/// # Examples
///
/// ```
/// use splitkit::analysis::{Aggregation, AnalysisSpecBuilder, FlagSpec, Metric};
/// let spec = AnalysisSpecBuilder::new(1_700_000_000_000)
///     .flag(FlagSpec::new("new_checkout", "user", "off"))
///     .metric(Metric::new("purchases", "checkout", Aggregation::Count))
///     .build()?;
/// assert_eq!(spec.buffer_ms(), 15 * 60 * 1000);
/// # Ok::<(), splitkit::analysis::AnalysisError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct AnalysisSpec {
    analysis_time_ms: i64,
    buffer_ms: i64,
    retention_ms: i64,
    alpha: f64,
    srm_threshold: f64,
    min_sample_size: u64,
    power: f64,
    sequential: Option<f64>,
    cuped_window_ms: i64,
    flags: Vec<FlagSpec>,
    metrics: Vec<Metric>,
}

impl AnalysisSpec {
    /// The analysis time: the end of the last version, the reference of the retention cutoff.
    pub fn analysis_time_ms(&self) -> i64 {
        self.analysis_time_ms
    }

    /// The attribution buffer B around impressions.
    pub fn buffer_ms(&self) -> i64 {
        self.buffer_ms
    }

    /// How far back data is kept.
    pub fn retention_ms(&self) -> i64 {
        self.retention_ms
    }

    /// `analysis_time - retention`: data strictly before it is dropped.
    pub fn cutoff_ms(&self) -> i64 {
        self.analysis_time_ms.saturating_sub(self.retention_ms)
    }

    /// The significance threshold.
    pub fn alpha(&self) -> f64 {
        self.alpha
    }

    /// The p-value below which a sample-ratio test is a mismatch.
    pub fn srm_threshold(&self) -> f64 {
        self.srm_threshold
    }

    /// The sample per treatment below which an impact is not yet conclusive.
    pub fn min_sample_size(&self) -> u64 {
        self.min_sample_size
    }

    /// The power of the reported minimum detectable effects.
    pub fn power(&self) -> f64 {
        self.power
    }

    /// The mixing variance τ² of the sequential test (standardized effects), when enabled.
    pub fn sequential(&self) -> Option<f64> {
        self.sequential
    }

    /// The length of the pre-exposure window of CUPED covariates.
    pub fn cuped_window_ms(&self) -> i64 {
        self.cuped_window_ms
    }

    /// The flags to analyse; impressions of other flags are ignored.
    pub fn flags(&self) -> &[FlagSpec] {
        &self.flags
    }

    /// The metrics to compute.
    pub fn metrics(&self) -> &[Metric] {
        &self.metrics
    }
}

/// Builds an [`AnalysisSpec`]; every setter takes and returns the builder by value.
#[derive(Debug, Clone)]
pub struct AnalysisSpecBuilder {
    spec: AnalysisSpec,
}

impl AnalysisSpecBuilder {
    /// A spec for an analysis run at `analysis_time_ms`, with the default buffer, retention and
    /// alpha, and no flags or metrics yet.
    pub fn new(analysis_time_ms: i64) -> Self {
        AnalysisSpecBuilder {
            spec: AnalysisSpec {
                analysis_time_ms,
                buffer_ms: DEFAULT_BUFFER_MS,
                retention_ms: DEFAULT_RETENTION_MS,
                alpha: DEFAULT_ALPHA,
                srm_threshold: DEFAULT_SRM_THRESHOLD,
                min_sample_size: DEFAULT_MIN_SAMPLE_SIZE,
                power: DEFAULT_POWER,
                sequential: None,
                cuped_window_ms: DEFAULT_CUPED_WINDOW_MS,
                flags: Vec::new(),
                metrics: Vec::new(),
            },
        }
    }

    /// The attribution buffer (default [`DEFAULT_BUFFER_MS`], 15 minutes).
    pub fn buffer_ms(mut self, buffer_ms: i64) -> Self {
        self.spec.buffer_ms = buffer_ms;
        self
    }

    /// The retention (default [`DEFAULT_RETENTION_MS`], 90 days).
    pub fn retention_ms(mut self, retention_ms: i64) -> Self {
        self.spec.retention_ms = retention_ms;
        self
    }

    /// The significance threshold (default [`DEFAULT_ALPHA`], 0.05).
    pub fn alpha(mut self, alpha: f64) -> Self {
        self.spec.alpha = alpha;
        self
    }

    /// The p-value below which a sample-ratio test is a mismatch (default
    /// [`DEFAULT_SRM_THRESHOLD`], 0.001).
    pub fn srm_threshold(mut self, threshold: f64) -> Self {
        self.spec.srm_threshold = threshold;
        self
    }

    /// The sample per treatment (keys with a value of the metric, in both groups) below which
    /// an impact is marked not yet conclusive (default [`DEFAULT_MIN_SAMPLE_SIZE`], 355).
    pub fn min_sample_size(mut self, keys: u64) -> Self {
        self.spec.min_sample_size = keys;
        self
    }

    /// The power of the minimum detectable effects in the report (default
    /// [`DEFAULT_POWER`], 0.8).
    pub fn power(mut self, power: f64) -> Self {
        self.spec.power = power;
        self
    }

    /// Adds sequential testing to every impact: an always-valid p-value and confidence
    /// sequence by the normal-mixture mSPRT (Johari et al. 2017, "Peeking at A/B tests"),
    /// with mixing variance `tau_squared` on the scale of standardized effects (difference
    /// over the per-key standard deviation; 0.01 suits effects of about a tenth of a standard
    /// deviation). See the module `sequential.rs` for the formulas. Default: off.
    pub fn sequential(mut self, tau_squared: f64) -> Self {
        self.spec.sequential = Some(tau_squared);
        self
    }

    /// The pre-exposure window of the CUPED covariates: a key's events in
    /// `[first - window, first)`, `first` its first impression in the unit (default
    /// [`DEFAULT_CUPED_WINDOW_MS`], 14 days). Used by metrics with [`Metric::cuped`].
    pub fn cuped_window_ms(mut self, window_ms: i64) -> Self {
        self.spec.cuped_window_ms = window_ms;
        self
    }

    /// Adds a flag to analyse (default: none).
    pub fn flag(mut self, flag: FlagSpec) -> Self {
        self.spec.flags.push(flag);
        self
    }

    /// Adds a metric to compute (default: none; groups then carry only sample sizes).
    pub fn metric(mut self, metric: Metric) -> Self {
        self.spec.metrics.push(metric);
        self
    }

    /// Checks and returns the spec.
    ///
    /// # Errors
    ///
    /// [`AnalysisError::InvalidSpec`] when the buffer or retention is negative, alpha is not
    /// strictly between 0 and 1, the SRM threshold or the power is not strictly between 0 and 1,
    /// the sequential tau_squared is not positive and finite, the CUPED window is not positive, a flag or metric name is empty
    /// or repeated, a flag has an empty traffic type or baseline,
    /// a metric has an empty event type, a range ends before it starts, or an expected split
    /// has a negative or non-finite weight, no positive weight, or a treatment twice.
    pub fn build(self) -> Result<AnalysisSpec, AnalysisError> {
        let spec = self.spec;
        let invalid = |what: String| Err(AnalysisError::InvalidSpec(what));
        if spec.buffer_ms < 0 {
            return invalid(format!("buffer_ms is negative ({})", spec.buffer_ms));
        }
        if spec.retention_ms < 0 {
            return invalid(format!("retention_ms is negative ({})", spec.retention_ms));
        }
        if !(spec.alpha > 0.0 && spec.alpha < 1.0) {
            return invalid(format!("alpha must be in (0, 1), got {}", spec.alpha));
        }
        if !(spec.srm_threshold > 0.0 && spec.srm_threshold < 1.0) {
            return invalid(format!(
                "srm_threshold must be in (0, 1), got {}",
                spec.srm_threshold
            ));
        }
        if !(spec.power > 0.0 && spec.power < 1.0) {
            return invalid(format!("power must be in (0, 1), got {}", spec.power));
        }
        if spec.cuped_window_ms <= 0 {
            return invalid(format!(
                "cuped_window_ms must be positive ({})",
                spec.cuped_window_ms
            ));
        }
        if let Some(tau2) = spec.sequential.filter(|t| !(t.is_finite() && *t > 0.0)) {
            return invalid(format!(
                "the sequential tau_squared must be positive and finite, got {tau2}"
            ));
        }
        let mut names = BTreeSet::new();
        for flag in &spec.flags {
            if flag.name.is_empty() {
                return invalid("a flag has an empty name".into());
            }
            if !names.insert(flag.name.as_str()) {
                return invalid(format!("flag `{}` is given twice", flag.name));
            }
            if flag.traffic_type.is_empty() {
                return invalid(format!("flag `{}` has an empty traffic type", flag.name));
            }
            if flag.baseline.is_empty() {
                return invalid(format!("flag `{}` has an empty baseline", flag.name));
            }
            if let Some(r) = flag.ranges.iter().find(|r| r.from_ms > r.to_ms) {
                return invalid(format!(
                    "flag `{}` has a range ending before it starts ({} > {})",
                    flag.name, r.from_ms, r.to_ms
                ));
            }
            for split in &flag.expected_splits {
                split.validate(&flag.name)?;
            }
        }
        let mut names = BTreeSet::new();
        for metric in &spec.metrics {
            if metric.name.is_empty() {
                return invalid("a metric has an empty name".into());
            }
            if !names.insert(metric.name.as_str()) {
                return invalid(format!("metric `{}` is given twice", metric.name));
            }
            if metric.event_type.is_empty() {
                return invalid(format!("metric `{}` has an empty event type", metric.name));
            }
        }
        Ok(spec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> AnalysisSpecBuilder {
        AnalysisSpecBuilder::new(1_000)
            .flag(FlagSpec::new("f", "user", "off"))
            .metric(Metric::new("m", "e", Aggregation::Count))
    }

    #[test]
    fn defaults() {
        let spec = base().build().expect("valid");
        assert_eq!(spec.buffer_ms(), 900_000);
        assert_eq!(spec.retention_ms(), 7_776_000_000);
        assert_eq!(spec.alpha(), 0.05);
        assert_eq!(spec.srm_threshold(), 0.001);
        assert_eq!(spec.min_sample_size(), 355);
        assert_eq!(spec.power(), 0.8);
        assert_eq!(spec.metrics()[0].metric_tier(), Tier::Supporting);
        assert_eq!(spec.cutoff_ms(), 1_000 - 7_776_000_000);
    }

    #[test]
    fn cutoff_saturates() {
        let spec = AnalysisSpecBuilder::new(i64::MIN + 5)
            .retention_ms(i64::MAX)
            .build()
            .expect("valid");
        assert_eq!(spec.cutoff_ms(), i64::MIN);
    }

    #[test]
    fn rejects_bad_settings() {
        let bad = [
            base().buffer_ms(-1),
            base().retention_ms(-1),
            base().alpha(0.0),
            base().alpha(1.0),
            base().alpha(f64::NAN),
            base().srm_threshold(0.0),
            base().srm_threshold(1.5),
            base().power(1.0),
            base().power(f64::NAN),
            base().sequential(0.0),
            base().cuped_window_ms(0),
            base().sequential(f64::INFINITY),
            base().flag(FlagSpec::new("g", "user", "off").expected_split("r", [("on", -1.0)])),
            base().flag(FlagSpec::new("f", "user", "off")),
            base().flag(FlagSpec::new("", "user", "off")),
            base().flag(FlagSpec::new("g", "", "off")),
            base().flag(FlagSpec::new("g", "user", "")),
            base().flag(FlagSpec::new("g", "user", "off").range(10, 9)),
            base().metric(Metric::new("m", "e2", Aggregation::Sum)),
            base().metric(Metric::new("", "e2", Aggregation::Sum)),
            base().metric(Metric::new("m2", "", Aggregation::Sum)),
        ];
        for builder in bad {
            let err = builder.build().expect_err("must be rejected");
            assert!(matches!(err, AnalysisError::InvalidSpec(_)), "{err}");
        }
    }

    #[test]
    fn range_contains_both_ends() {
        let r = DateRange::new(10, 20);
        assert!(r.contains(10) && r.contains(20) && !r.contains(9) && !r.contains(21));
    }

    #[test]
    fn a_label_declared_again_replaces_its_split() {
        let flag = FlagSpec::new("f", "user", "off")
            .expected_split("r", [("on", 1.0), ("off", 1.0)])
            .version_expected_split(3, "r", [("on", 1.0)])
            .expected_split("r", [("on", 9.0), ("off", 1.0)]);
        assert_eq!(flag.splits().len(), 2);
        assert_eq!(flag.splits()[1].weights[0], ("on".into(), 9.0));
    }
}
