//! Mergeable partial results, the final report and its text rendering.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::AnalysisError;
use super::cuped::{Covariance, CupedEstimate, cuped};
use super::multiple::benjamini_hochberg;
use super::sequential::msprt;
use super::spec::{
    AnalysisSpec, DEFAULT_MIN_SAMPLE_SIZE, DEFAULT_POWER, DEFAULT_SRM_THRESHOLD, Metric, Tier,
};
use super::srm::{self, ExpectedSplit, SampleRatio};
use super::stats::{GroupStats, MetricAccumulator, Welch, minimum_detectable_effect, welch};
use super::text::format_time;

/// A unit of analysis: one flag version or one custom date range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Unit {
    /// One flag version.
    Version {
        /// The version's change number.
        change_number: i64,
        /// Declared start, else the first retained impression over all keys.
        start_ms: i64,
        /// The next version's start capped at the analysis time; the analysis time for the
        /// last version.
        end_ms: i64,
    },
    /// One custom date range, whatever the change numbers in it.
    Range {
        /// First millisecond of the range (inclusive).
        from_ms: i64,
        /// Last millisecond of the range (inclusive); the unit's end.
        to_ms: i64,
    },
}

impl Unit {
    /// The unit's end, from which the post-buffer of its last run is counted.
    pub fn end_ms(&self) -> i64 {
        match *self {
            Unit::Version { end_ms, .. } => end_ms,
            Unit::Range { to_ms, .. } => to_ms,
        }
    }

    /// The unit's change number, for a version.
    pub fn change_number(&self) -> Option<i64> {
        match *self {
            Unit::Version { change_number, .. } => Some(change_number),
            Unit::Range { .. } => None,
        }
    }

    /// Whether both denote the same version or the same range, bounds aside.
    fn same_unit(&self, other: &Unit) -> bool {
        match (self, other) {
            (
                Unit::Version {
                    change_number: a, ..
                },
                Unit::Version {
                    change_number: b, ..
                },
            ) => a == b,
            (a @ Unit::Range { .. }, b @ Unit::Range { .. }) => a == b,
            _ => false,
        }
    }
}

impl fmt::Display for Unit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Unit::Version {
                change_number,
                start_ms,
                end_ms,
            } => write!(
                f,
                "version {change_number}: {} .. {}",
                format_time(start_ms),
                format_time(end_ms)
            ),
            Unit::Range { from_ms, to_ms } => write!(
                f,
                "range {} .. {}",
                format_time(from_ms),
                format_time(to_ms)
            ),
        }
    }
}

/// Counts of what the input held and what was dropped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct InputStats {
    /// Impressions read.
    pub impressions: u64,
    /// Impressions dropped as older than the retention cutoff.
    pub impressions_before_cutoff: u64,
    /// Impressions of flags not in the spec.
    pub impressions_unknown_flag: u64,
    /// Impressions of flags with custom ranges that fall in none of them.
    pub impressions_outside_ranges: u64,
    /// Events read.
    pub events: u64,
    /// Events dropped as older than the retention cutoff.
    pub events_before_cutoff: u64,
    /// Events that counted in at least one group.
    pub events_attributed: u64,
}

impl InputStats {
    fn merge(&mut self, other: &InputStats) {
        self.impressions += other.impressions;
        self.impressions_before_cutoff += other.impressions_before_cutoff;
        self.impressions_unknown_flag += other.impressions_unknown_flag;
        self.impressions_outside_ranges += other.impressions_outside_ranges;
        self.events += other.events;
        self.events_before_cutoff += other.events_before_cutoff;
        self.events_attributed += other.events_attributed;
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct PartialFlag {
    pub(crate) flag: String,
    pub(crate) traffic_type: String,
    pub(crate) baseline: String,
    pub(crate) units: Vec<PartialUnit>,
    #[serde(default)]
    pub(crate) expected_splits: Vec<ExpectedSplit>,
}

/// The settings of the statistics computed from merged partial reports.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
struct Settings {
    srm_threshold: f64,
    min_sample_size: u64,
    power: f64,
    #[serde(default)]
    sequential: Option<f64>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            srm_threshold: DEFAULT_SRM_THRESHOLD,
            min_sample_size: DEFAULT_MIN_SAMPLE_SIZE,
            power: DEFAULT_POWER,
            sequential: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct PartialUnit {
    pub(crate) unit: Unit,
    pub(crate) groups: Vec<PartialGroup>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct PartialGroup {
    pub(crate) label: Option<String>,
    pub(crate) treatment: String,
    pub(crate) sample_size: u64,
    pub(crate) excluded: u64,
    pub(crate) metrics: Vec<MetricAccumulator>,
    /// Per metric, the joint moments of value and pre-exposure value; empty when no metric
    /// uses CUPED.
    #[serde(default)]
    pub(crate) cuped: Vec<Covariance>,
}

/// The mergeable result of analysing some keys: per group its sample size, excluded count and,
/// per metric, the count, sum and sum of squares of the keys' values.
///
/// A job partitioned by key (every impression and event of a key in the same partition)
/// analyses each partition with the same spec and the same merged [`VersionStarts`], merges the
/// partial reports with [`merge`](Self::merge), and renders the result with
/// [`report`](Self::report). Partial reports serialize with serde to move between workers.
///
/// [`VersionStarts`]: super::VersionStarts
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartialReport {
    analysis_time_ms: i64,
    alpha: f64,
    metrics: Vec<Metric>,
    flags: Vec<PartialFlag>,
    stats: InputStats,
    #[serde(default)]
    settings: Settings,
}

impl PartialReport {
    pub(crate) fn new(spec: &AnalysisSpec, flags: Vec<PartialFlag>, stats: InputStats) -> Self {
        PartialReport {
            analysis_time_ms: spec.analysis_time_ms(),
            alpha: spec.alpha(),
            metrics: spec.metrics().to_vec(),
            flags,
            stats,
            settings: Settings {
                srm_threshold: spec.srm_threshold(),
                min_sample_size: spec.min_sample_size(),
                power: spec.power(),
                sequential: spec.sequential(),
            },
        }
    }

    /// Adds the keys analysed in `other` (a disjoint set of keys) to this one.
    ///
    /// # Errors
    ///
    /// [`AnalysisError::Merge`], leaving `self` unchanged, when the two come from different
    /// specs (analysis time, alpha, SRM threshold, minimum sample, power, metrics, flags or
    /// expected splits differ) or cut a version differently
    /// (partitions that were not given the same merged version starts).
    ///
    /// # Examples
    ///
    /// ```
    /// use splitkit::analysis::{analyze, AnalysisSpecBuilder, AttributionImpression, FlagSpec};
    /// let spec = AnalysisSpecBuilder::new(1_000)
    ///     .flag(FlagSpec::new("f", "user", "off"))
    ///     .build()?;
    /// let imp = |key: &str| AttributionImpression {
    ///     key: key.into(),
    ///     flag: "f".into(),
    ///     treatment: "on".into(),
    ///     label: None,
    ///     change_number: 1,
    ///     time_ms: 500,
    /// };
    /// let part = |key: &str| {
    ///     let mut pass = splitkit::analysis::ImpressionPass::new(&spec);
    ///     pass.add_impression(&imp(key));
    ///     pass.finish().finish()
    /// };
    /// let mut a = part("u1");
    /// a.merge(part("u2"))?;
    /// assert_eq!(a.report().flags[0].units[0].groups[0].sample_size, 2);
    /// # Ok::<(), splitkit::analysis::AnalysisError>(())
    /// ```
    pub fn merge(&mut self, other: PartialReport) -> Result<(), AnalysisError> {
        let fail = |what: &str| Err(AnalysisError::Merge(what.to_owned()));
        if self.analysis_time_ms != other.analysis_time_ms
            || self.alpha != other.alpha
            || self.metrics != other.metrics
            || self.settings != other.settings
        {
            return fail("the analysis time, alpha, metrics or statistics settings differ");
        }
        let same_flags = self.flags.len() == other.flags.len()
            && self.flags.iter().zip(&other.flags).all(|(a, b)| {
                (&a.flag, &a.traffic_type, &a.baseline, &a.expected_splits)
                    == (&b.flag, &b.traffic_type, &b.baseline, &b.expected_splits)
            });
        if !same_flags {
            return fail("the flags differ");
        }
        let mut merged = self.flags.clone();
        for (mine, theirs) in merged.iter_mut().zip(other.flags) {
            for unit in theirs.units {
                match mine.units.iter_mut().find(|u| u.unit.same_unit(&unit.unit)) {
                    Some(u) if u.unit != unit.unit => {
                        return fail(&format!(
                            "flag `{}` {} is cut differently ({}); pass every partition the \
                             same merged VersionStarts",
                            mine.flag, u.unit, unit.unit
                        ));
                    }
                    Some(u) => merge_groups(&mut u.groups, unit.groups),
                    None => {
                        let at = mine.units.partition_point(|u| {
                            u.unit.change_number() < unit.unit.change_number()
                        });
                        mine.units.insert(at, unit);
                    }
                }
            }
            if !versions_chain(&mine.units, self.analysis_time_ms) {
                return fail(&format!(
                    "flag `{}` has versions cut by different starts; pass every partition the \
                     same merged VersionStarts",
                    mine.flag
                ));
            }
        }
        self.flags = merged;
        self.stats.merge(&other.stats);
        Ok(())
    }

    /// Computes group statistics, sample-ratio checks and impacts.
    pub fn report(&self) -> Report {
        let ctx = Ctx {
            alpha: self.alpha,
            settings: self.settings,
            metrics: &self.metrics,
        };
        Report {
            analysis_time_ms: self.analysis_time_ms,
            alpha: self.alpha,
            srm_threshold: self.settings.srm_threshold,
            min_sample_size: self.settings.min_sample_size,
            power: self.settings.power,
            sequential_tau_squared: self.settings.sequential,
            metrics: self.metrics.clone(),
            stats: self.stats,
            flags: self
                .flags
                .iter()
                .map(|f| FlagReport {
                    flag: f.flag.clone(),
                    traffic_type: f.traffic_type.clone(),
                    baseline: f.baseline.clone(),
                    units: f.units.iter().map(|u| unit_report(u, f, &ctx)).collect(),
                })
                .collect(),
        }
    }
}

/// Whether consecutive versions end where the next starts (capped at the analysis time).
fn versions_chain(units: &[PartialUnit], now: i64) -> bool {
    let versions: Vec<(i64, i64)> = units
        .iter()
        .filter_map(|u| match u.unit {
            Unit::Version {
                start_ms, end_ms, ..
            } => Some((start_ms, end_ms)),
            Unit::Range { .. } => None,
        })
        .collect();
    versions
        .iter()
        .enumerate()
        .all(|(i, &(_, end))| end == versions.get(i + 1).map_or(now, |&(next, _)| next.min(now)))
}

fn merge_groups(mine: &mut Vec<PartialGroup>, theirs: Vec<PartialGroup>) {
    for group in theirs {
        let key = (&group.label, &group.treatment);
        match mine.binary_search_by(|g| (&g.label, &g.treatment).cmp(&key)) {
            Ok(i) => {
                let g = &mut mine[i];
                g.sample_size += group.sample_size;
                g.excluded += group.excluded;
                for (a, b) in g.metrics.iter_mut().zip(&group.metrics) {
                    a.merge(b);
                }
                for (a, b) in g.cuped.iter_mut().zip(&group.cuped) {
                    a.merge(b);
                }
            }
            Err(i) => mine.insert(i, group),
        }
    }
}

/// What every unit's statistics need besides the unit.
struct Ctx<'a> {
    alpha: f64,
    settings: Settings,
    metrics: &'a [Metric],
}

fn unit_report(unit: &PartialUnit, flag: &PartialFlag, ctx: &Ctx<'_>) -> UnitReport {
    let baseline = flag.baseline.as_str();
    let groups: Vec<GroupReport> = unit
        .groups
        .iter()
        .map(|g| GroupReport {
            label: g.label.clone(),
            treatment: g.treatment.clone(),
            sample_size: g.sample_size,
            excluded: g.excluded,
            metrics: ctx
                .metrics
                .iter()
                .zip(&g.metrics)
                .map(|(m, acc)| acc.stats(m.name()))
                .collect(),
        })
        .collect();
    let sample_ratios = sample_ratios(unit, &flag.expected_splits, ctx.settings.srm_threshold);
    let mut impacts = Vec::new();
    let mut tests = Vec::new();
    for (gi, g) in groups.iter().enumerate() {
        if g.treatment == baseline {
            continue;
        }
        let Some(bi) = groups
            .iter()
            .position(|b| b.label == g.label && b.treatment == baseline)
        else {
            continue;
        };
        let base = &groups[bi];
        let covariances = |m: usize| {
            let t = unit.groups.get(gi)?.cuped.get(m)?;
            Some((t, unit.groups.get(bi)?.cuped.get(m)?))
        };
        let mismatch = sample_ratios
            .iter()
            .any(|s| s.label == g.label && s.flags(&g.treatment, baseline));
        let rows = g.metrics.iter().zip(&base.metrics).zip(ctx.metrics);
        for (m, ((gs, bs), metric)) in rows.enumerate() {
            let w = welch(gs, bs, ctx.alpha);
            let tier = metric.metric_tier();
            let mut row = impact(g, baseline, gs, bs, tier, &w, ctx, mismatch);
            if metric.uses_cuped() {
                row.cuped = covariances(m).and_then(|(t, b)| cuped(t, b, ctx.alpha));
            }
            impacts.push(row);
            tests.push(w);
        }
    }
    for tier in [Tier::Key, Tier::Guardrail, Tier::Supporting] {
        let family: Vec<usize> = (0..impacts.len())
            .filter(|&i| impacts[i].tier == tier)
            .collect();
        let p: Vec<Option<f64>> = family.iter().map(|&i| impacts[i].p_value).collect();
        let (adjusted, interval_alpha) = benjamini_hochberg(&p, ctx.alpha);
        for (&i, q) in family.iter().zip(adjusted) {
            let (row, w) = (&mut impacts[i], &tests[i]);
            row.adjusted_p_value = q;
            row.adjusted_significant = q.is_some_and(|q| q < ctx.alpha);
            row.adjusted_confidence_interval = w.interval(interval_alpha);
            row.adjusted_relative_confidence_interval = w.relative_interval(interval_alpha);
        }
    }
    UnitReport {
        unit: unit.unit,
        groups,
        impacts,
        sample_ratios,
    }
}

/// The checks of every label with an expected split: the version's own split of the label,
/// else the split declared for every unit.
fn sample_ratios(unit: &PartialUnit, splits: &[ExpectedSplit], threshold: f64) -> Vec<SampleRatio> {
    let cn = unit.unit.change_number();
    let mut labels: Vec<&Option<String>> = splits.iter().map(|s| &s.label).collect();
    labels.sort();
    labels.dedup();
    labels
        .into_iter()
        .filter_map(|label| {
            let mine = |s: &&ExpectedSplit| &s.label == label;
            let split = splits
                .iter()
                .filter(mine)
                .find(|s| cn.is_some() && s.change_number == cn)
                .or_else(|| {
                    splits
                        .iter()
                        .filter(mine)
                        .find(|s| s.change_number.is_none())
                })?;
            let observed = unit
                .groups
                .iter()
                .filter(|g| &g.label == label)
                .map(|g| (g.treatment.as_str(), g.sample_size));
            Some(srm::check(split, observed, threshold))
        })
        .collect()
}

#[expect(
    clippy::too_many_arguments,
    reason = "one row from its parts, called once"
)]
fn impact(
    group: &GroupReport,
    baseline: &str,
    gs: &GroupStats,
    bs: &GroupStats,
    tier: Tier,
    w: &Welch,
    ctx: &Ctx<'_>,
    sample_ratio_mismatch: bool,
) -> Impact {
    let mde =
        w.se.and_then(|se| minimum_detectable_effect(se, ctx.alpha, ctx.settings.power));
    let base_mean = bs.mean.filter(|m| *m != 0.0);
    // τ² on the difference's scale: the standardized τ² times the mean per-key variance.
    let sequential = ctx.settings.sequential.and_then(|tau2| {
        let per_key = (gs.variance? + bs.variance?) / 2.0;
        msprt(w.difference?, w.se?, tau2 * per_key, ctx.alpha)
    });
    Impact {
        label: group.label.clone(),
        treatment: group.treatment.clone(),
        baseline: baseline.to_owned(),
        metric: gs.metric.clone(),
        tier,
        difference: w.difference,
        relative_difference: w.relative_difference,
        t: w.t,
        df: w.df,
        p_value: w.p_value,
        confidence_interval: w.ci,
        relative_confidence_interval: w.relative_interval(ctx.alpha),
        significant: w.p_value.is_some_and(|p| p < ctx.alpha),
        adjusted_p_value: None,
        adjusted_confidence_interval: None,
        adjusted_relative_confidence_interval: None,
        adjusted_significant: false,
        conclusive: gs.n.min(bs.n) >= ctx.settings.min_sample_size,
        minimum_detectable_effect: mde,
        relative_minimum_detectable_effect: mde.zip(base_mean).map(|(d, m)| d / m.abs()),
        sample_ratio_mismatch,
        always_valid_p_value: sequential.map(|(p, _)| p),
        confidence_sequence: sequential.map(|(_, cs)| cs),
        cuped: None,
    }
}

/// The result of an analysis: per flag, unit, label and treatment, the sample, the excluded
/// keys and the metric statistics, plus impacts against each flag's baseline.
///
/// `Display` renders it as readable text tables.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Report {
    /// The analysis time.
    pub analysis_time_ms: i64,
    /// The significance threshold.
    pub alpha: f64,
    /// The p-value below which a sample-ratio test is a mismatch.
    #[serde(default = "default_srm_threshold")]
    pub srm_threshold: f64,
    /// The sample per treatment below which an impact is not yet conclusive.
    #[serde(default = "default_min_sample_size")]
    pub min_sample_size: u64,
    /// The power of the minimum detectable effects.
    #[serde(default = "default_power")]
    pub power: f64,
    /// The sequential test's mixing variance τ² (standardized effects); `None` when the
    /// analysis has no sequential test.
    #[serde(default)]
    pub sequential_tau_squared: Option<f64>,
    /// The metrics, in the order of every `metrics` list below.
    pub metrics: Vec<Metric>,
    /// One entry per flag of the spec, in spec order.
    pub flags: Vec<FlagReport>,
    /// What the input held and what was dropped.
    pub stats: InputStats,
}

fn default_srm_threshold() -> f64 {
    DEFAULT_SRM_THRESHOLD
}

fn default_min_sample_size() -> u64 {
    DEFAULT_MIN_SAMPLE_SIZE
}

fn default_power() -> f64 {
    DEFAULT_POWER
}

impl Report {
    /// The report of flag `name`.
    pub fn flag(&self, name: &str) -> Option<&FlagReport> {
        self.flags.iter().find(|f| f.flag == name)
    }
}

/// One flag's units.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct FlagReport {
    /// The flag's name.
    pub flag: String,
    /// The flag's traffic type.
    pub traffic_type: String,
    /// The baseline treatment.
    pub baseline: String,
    /// Versions by change number, or the custom ranges in spec order.
    pub units: Vec<UnitReport>,
}

impl FlagReport {
    /// The unit of version `change_number`.
    pub fn version(&self, change_number: i64) -> Option<&UnitReport> {
        self.units
            .iter()
            .find(|u| u.unit.change_number() == Some(change_number))
    }
}

/// One unit's groups and impacts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct UnitReport {
    /// The unit and its bounds.
    pub unit: Unit,
    /// Groups sorted by label (no label first), then treatment.
    pub groups: Vec<GroupReport>,
    /// Each non-baseline treatment against the baseline under the same label, per metric.
    pub impacts: Vec<Impact>,
    /// The sample-ratio check of every label with an expected split, by label.
    #[serde(default)]
    pub sample_ratios: Vec<SampleRatio>,
}

impl UnitReport {
    /// The group of `(label, treatment)`.
    pub fn group(&self, label: Option<&str>, treatment: &str) -> Option<&GroupReport> {
        self.groups
            .iter()
            .find(|g| g.label.as_deref() == label && g.treatment == treatment)
    }

    /// The sample-ratio check of `label`.
    pub fn sample_ratio(&self, label: Option<&str>) -> Option<&SampleRatio> {
        self.sample_ratios
            .iter()
            .find(|s| s.label.as_deref() == label)
    }

    /// The impact of `treatment` under `label` on `metric`.
    pub fn impact(&self, label: Option<&str>, treatment: &str, metric: &str) -> Option<&Impact> {
        self.impacts
            .iter()
            .find(|i| i.label.as_deref() == label && i.treatment == treatment && i.metric == metric)
    }
}

/// One (label, treatment) group of a unit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct GroupReport {
    /// The label; `None` when labels were disabled.
    pub label: Option<String>,
    /// The treatment.
    pub treatment: String,
    /// Keys in the sample (0 for a group seen only by excluded keys).
    pub sample_size: u64,
    /// Keys excluded for switching two or more times that had this pair among their
    /// impressions.
    pub excluded: u64,
    /// Per metric, in the report's metric order.
    pub metrics: Vec<GroupStats>,
}

impl GroupReport {
    /// The statistics of metric `name`.
    pub fn metric(&self, name: &str) -> Option<&GroupStats> {
        self.metrics.iter().find(|m| m.metric == name)
    }
}

/// The impact of one treatment against the baseline under the same label, on one metric.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Impact {
    /// The label both groups share.
    pub label: Option<String>,
    /// The treatment compared.
    pub treatment: String,
    /// The baseline treatment.
    pub baseline: String,
    /// The metric's name.
    pub metric: String,
    /// The metric's tier: the family of the multiple-comparison adjustment.
    #[serde(default)]
    pub tier: Tier,
    /// `mean(treatment) - mean(baseline)`; `None` when either group has no value.
    pub difference: Option<f64>,
    /// The difference as a fraction of the baseline mean; `None` when that mean is 0.
    pub relative_difference: Option<f64>,
    /// Welch's t; `None` when a group has `n < 2` or the standard error is 0.
    pub t: Option<f64>,
    /// Welch–Satterthwaite degrees of freedom; `None` as `t`.
    pub df: Option<f64>,
    /// Two-sided p-value; `None` as `t`.
    pub p_value: Option<f64>,
    /// `diff ± t(1 - alpha/2, df) · se`; `None` as `t`.
    pub confidence_interval: Option<(f64, f64)>,
    /// The `1 - alpha` interval of `relative_difference` by the delta method; `None` as `t`
    /// and when the baseline mean is 0.
    #[serde(default)]
    pub relative_confidence_interval: Option<(f64, f64)>,
    /// `p_value < alpha`, before any multiple-comparison adjustment.
    pub significant: bool,
    /// Benjamini–Hochberg adjusted p-value within the unit and tier; `None` as `t`.
    #[serde(default)]
    pub adjusted_p_value: Option<f64>,
    /// The interval of the difference at the adjusted level `1 - alpha · R / m` (R
    /// significant of m tests in the family, R at least 1); it excludes 0 exactly when
    /// `adjusted_significant`.
    #[serde(default)]
    pub adjusted_confidence_interval: Option<(f64, f64)>,
    /// The interval of the relative difference at the adjusted level.
    #[serde(default)]
    pub adjusted_relative_confidence_interval: Option<(f64, f64)>,
    /// `adjusted_p_value < alpha`.
    #[serde(default)]
    pub adjusted_significant: bool,
    /// Both groups have at least the minimum sample (keys with a value of the metric); an
    /// inconclusive impact should not be acted on yet, whatever its p-value.
    #[serde(default)]
    pub conclusive: bool,
    /// The smallest difference the test detects with the report's power at the current
    /// sample, `(z(1 - alpha/2) + z(power)) · se`; `None` as `t`.
    #[serde(default)]
    pub minimum_detectable_effect: Option<f64>,
    /// `minimum_detectable_effect` as a fraction of the baseline mean; `None` also when that
    /// mean is 0.
    #[serde(default)]
    pub relative_minimum_detectable_effect: Option<f64>,
    /// The sample-ratio check of the label flags this comparison (see
    /// [`SampleRatio::flags`]): the groups may not be comparable.
    #[serde(default)]
    pub sample_ratio_mismatch: bool,
    /// The always-valid p-value of the sequential test (mSPRT), valid at any look; `None`
    /// without a sequential test and as `t`.
    #[serde(default)]
    pub always_valid_p_value: Option<f64>,
    /// The `1 - alpha` confidence sequence of the difference: it covers the true difference
    /// at every look at once with probability `1 - alpha`; `None` as `always_valid_p_value`.
    #[serde(default)]
    pub confidence_sequence: Option<(f64, f64)>,
    /// The CUPED-adjusted comparison, for a metric with [`Metric::cuped`]; `None` otherwise
    /// and when a side has no key with a pre-exposure value.
    #[serde(default)]
    pub cuped: Option<CupedEstimate>,
}
