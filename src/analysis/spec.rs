//! What to measure: flags, metrics and the analysis settings.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::AnalysisError;

/// Default attribution buffer around impressions: 15 minutes.
pub const DEFAULT_BUFFER_MS: i64 = 15 * 60 * 1000;
/// Default retention: 90 days.
pub const DEFAULT_RETENTION_MS: i64 = 90 * 24 * 60 * 60 * 1000;
/// Default significance threshold.
pub const DEFAULT_ALPHA: f64 = 0.05;

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
/// use splitkit::analysis::{Aggregation, Metric};
/// let revenue = Metric::new("revenue", "checkout", Aggregation::Sum);
/// assert_eq!(revenue.event_type(), "checkout");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metric {
    name: String,
    event_type: String,
    aggregation: Aggregation,
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
        }
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
        }
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
    /// strictly between 0 and 1, a flag or metric name is empty or repeated, a flag has an empty
    /// traffic type or baseline, a metric has an empty event type, or a range ends before it
    /// starts.
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
}
