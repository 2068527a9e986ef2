//! Mergeable partial results, the final report and its text rendering.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::AnalysisError;
use super::spec::{AnalysisSpec, Metric};
use super::stats::{GroupStats, MetricAccumulator, welch};

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
}

impl PartialReport {
    pub(crate) fn new(spec: &AnalysisSpec, flags: Vec<PartialFlag>, stats: InputStats) -> Self {
        PartialReport {
            analysis_time_ms: spec.analysis_time_ms(),
            alpha: spec.alpha(),
            metrics: spec.metrics().to_vec(),
            flags,
            stats,
        }
    }

    /// Adds the keys analysed in `other` (a disjoint set of keys) to this one.
    ///
    /// # Errors
    ///
    /// [`AnalysisError::Merge`], leaving `self` unchanged, when the two come from different
    /// specs (analysis time, alpha, metrics or flags differ) or cut a version differently
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
        {
            return fail("the analysis time, alpha or metrics differ");
        }
        let same_flags = self.flags.len() == other.flags.len()
            && self.flags.iter().zip(&other.flags).all(|(a, b)| {
                (&a.flag, &a.traffic_type, &a.baseline) == (&b.flag, &b.traffic_type, &b.baseline)
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

    /// Computes group statistics and impacts.
    pub fn report(&self) -> Report {
        Report {
            analysis_time_ms: self.analysis_time_ms,
            alpha: self.alpha,
            metrics: self.metrics.clone(),
            stats: self.stats,
            flags: self
                .flags
                .iter()
                .map(|f| FlagReport {
                    flag: f.flag.clone(),
                    traffic_type: f.traffic_type.clone(),
                    baseline: f.baseline.clone(),
                    units: f
                        .units
                        .iter()
                        .map(|u| unit_report(u, &f.baseline, &self.metrics, self.alpha))
                        .collect(),
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
            }
            Err(i) => mine.insert(i, group),
        }
    }
}

fn unit_report(unit: &PartialUnit, baseline: &str, metrics: &[Metric], alpha: f64) -> UnitReport {
    let groups: Vec<GroupReport> = unit
        .groups
        .iter()
        .map(|g| GroupReport {
            label: g.label.clone(),
            treatment: g.treatment.clone(),
            sample_size: g.sample_size,
            excluded: g.excluded,
            metrics: metrics
                .iter()
                .zip(&g.metrics)
                .map(|(m, acc)| acc.stats(m.name()))
                .collect(),
        })
        .collect();
    let mut impacts = Vec::new();
    for g in groups.iter().filter(|g| g.treatment != baseline) {
        let Some(base) = groups
            .iter()
            .find(|b| b.label == g.label && b.treatment == baseline)
        else {
            continue;
        };
        for (gs, bs) in g.metrics.iter().zip(&base.metrics) {
            let w = welch(gs, bs, alpha);
            impacts.push(Impact {
                label: g.label.clone(),
                treatment: g.treatment.clone(),
                baseline: baseline.to_owned(),
                metric: gs.metric.clone(),
                difference: w.difference,
                relative_difference: w.relative_difference,
                t: w.t,
                df: w.df,
                p_value: w.p_value,
                confidence_interval: w.ci,
                significant: w.p_value.is_some_and(|p| p < alpha),
            });
        }
    }
    UnitReport {
        unit: unit.unit,
        groups,
        impacts,
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
    /// The metrics, in the order of every `metrics` list below.
    pub metrics: Vec<Metric>,
    /// One entry per flag of the spec, in spec order.
    pub flags: Vec<FlagReport>,
    /// What the input held and what was dropped.
    pub stats: InputStats,
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
}

impl UnitReport {
    /// The group of `(label, treatment)`.
    pub fn group(&self, label: Option<&str>, treatment: &str) -> Option<&GroupReport> {
        self.groups
            .iter()
            .find(|g| g.label.as_deref() == label && g.treatment == treatment)
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
    /// `p_value < alpha`.
    pub significant: bool,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.stats;
        writeln!(
            f,
            "Attribution report at {} (alpha {})",
            format_time(self.analysis_time_ms),
            self.alpha
        )?;
        writeln!(
            f,
            "impressions: {} read, {} before cutoff, {} unknown flag, {} outside ranges",
            s.impressions,
            s.impressions_before_cutoff,
            s.impressions_unknown_flag,
            s.impressions_outside_ranges
        )?;
        writeln!(
            f,
            "events: {} read, {} before cutoff, {} attributed",
            s.events, s.events_before_cutoff, s.events_attributed
        )?;
        if !self.metrics.is_empty() {
            let list: Vec<String> = self
                .metrics
                .iter()
                .map(|m| {
                    format!(
                        "{} = {}({})",
                        m.name(),
                        m.aggregation().as_str(),
                        m.event_type()
                    )
                })
                .collect();
            writeln!(f, "metrics: {}", list.join(", "))?;
        }
        for flag in &self.flags {
            writeln!(
                f,
                "\n== flag {} (traffic type {}, baseline {})",
                flag.flag, flag.traffic_type, flag.baseline
            )?;
            if flag.units.is_empty() {
                writeln!(f, "no impressions")?;
            }
            for unit in &flag.units {
                writeln!(f, "\n-- {}", unit.unit)?;
                write_unit(f, unit, self.alpha)?;
            }
        }
        Ok(())
    }
}

fn write_unit(f: &mut fmt::Formatter<'_>, unit: &UnitReport, alpha: f64) -> fmt::Result {
    if unit.groups.is_empty() {
        return writeln!(f, "no groups");
    }
    let mut groups = Table::new(&[
        ("label", false),
        ("treatment", false),
        ("sample", true),
        ("excluded", true),
        ("metric", false),
        ("n", true),
        ("mean", true),
        ("variance", true),
    ]);
    for g in &unit.groups {
        let head = [
            label_text(&g.label),
            g.treatment.clone(),
            g.sample_size.to_string(),
            g.excluded.to_string(),
        ];
        if g.metrics.is_empty() {
            groups.row(head.clone().into_iter().chain([
                "-".into(),
                "".into(),
                "".into(),
                "".into(),
            ]));
        }
        for (i, m) in g.metrics.iter().enumerate() {
            let lead = if i == 0 {
                head.clone()
            } else {
                Default::default()
            };
            groups.row(lead.into_iter().chain([
                m.metric.clone(),
                m.n.to_string(),
                number(m.mean),
                number(m.variance),
            ]));
        }
    }
    groups.write(f)?;
    if unit.impacts.is_empty() {
        return Ok(());
    }
    writeln!(f)?;
    let confidence = format!("{}% CI", trim_float((1.0 - alpha) * 100.0));
    let mut impacts = Table::new(&[
        ("label", false),
        ("treatment", false),
        ("vs", false),
        ("metric", false),
        ("diff", true),
        ("relative", true),
        ("t", true),
        ("df", true),
        ("p", true),
        (confidence.as_str(), false),
        ("significant", false),
    ]);
    for i in &unit.impacts {
        impacts.row([
            label_text(&i.label),
            i.treatment.clone(),
            i.baseline.clone(),
            i.metric.clone(),
            number(i.difference),
            i.relative_difference
                .map_or("-".into(), |r| format!("{:+.2}%", r * 100.0)),
            number(i.t),
            i.df.map_or("-".into(), |d| format!("{d:.1}")),
            i.p_value.map_or("-".into(), p_value_text),
            i.confidence_interval.map_or("-".into(), |(lo, hi)| {
                format!("[{}, {}]", number(Some(lo)), number(Some(hi)))
            }),
            (if i.significant { "yes" } else { "no" }).into(),
        ]);
    }
    impacts.write(f)
}

fn label_text(label: &Option<String>) -> String {
    label.clone().unwrap_or_else(|| "(no label)".into())
}

fn number(x: Option<f64>) -> String {
    match x {
        None => "-".into(),
        Some(0.0) => "0".into(),
        Some(v) if v.abs() >= 1e6 || v.abs() < 1e-3 => format!("{v:.3e}"),
        Some(v) => format!("{v:.4}"),
    }
}

fn p_value_text(p: f64) -> String {
    if p < 1e-4 {
        "<0.0001".into()
    } else {
        format!("{p:.4}")
    }
}

fn trim_float(x: f64) -> String {
    let s = format!("{x:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// A plain text table: columns padded to their widest cell, numbers aligned right.
struct Table {
    headers: Vec<(String, bool)>,
    rows: Vec<Vec<String>>,
}

impl Table {
    fn new(headers: &[(&str, bool)]) -> Self {
        Table {
            headers: headers.iter().map(|&(h, r)| (h.to_owned(), r)).collect(),
            rows: Vec::new(),
        }
    }

    fn row(&mut self, cells: impl IntoIterator<Item = String>) {
        self.rows.push(cells.into_iter().collect());
    }

    fn write(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let widths: Vec<usize> = self
            .headers
            .iter()
            .enumerate()
            .map(|(c, (h, _))| {
                self.rows
                    .iter()
                    .filter_map(|r| r.get(c))
                    .map(|s| s.chars().count())
                    .chain([h.chars().count()])
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let header: Vec<String> = self.headers.iter().map(|(h, _)| h.clone()).collect();
        for row in std::iter::once(&header).chain(&self.rows) {
            let mut line = String::new();
            for (c, ((_, right), width)) in self.headers.iter().zip(&widths).enumerate() {
                let cell = row.get(c).map_or("", String::as_str);
                if c > 0 {
                    line.push_str("  ");
                }
                if *right {
                    line.push_str(&format!("{cell:>width$}"));
                } else {
                    line.push_str(&format!("{cell:<width$}"));
                }
            }
            writeln!(f, "{}", line.trim_end())?;
        }
        Ok(())
    }
}

/// Epoch milliseconds as `YYYY-MM-DD HH:MM:SS[.mmm]Z` (proleptic Gregorian, UTC).
fn format_time(ms: i64) -> String {
    let c = crate::time::Civil::from_epoch_ms(ms);
    let (year, month, day, h, m, s) = (c.year, c.month, c.day, c.hour, c.minute, c.second);
    if c.milli == 0 {
        format!("{year:04}-{month:02}-{day:02} {h:02}:{m:02}:{s:02}Z")
    } else {
        format!(
            "{year:04}-{month:02}-{day:02} {h:02}:{m:02}:{s:02}.{:03}Z",
            c.milli
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_times() {
        assert_eq!(format_time(0), "1970-01-01 00:00:00Z");
        assert_eq!(format_time(1_700_000_000_000), "2023-11-14 22:13:20Z");
        assert_eq!(format_time(951_782_400_001), "2000-02-29 00:00:00.001Z");
        assert_eq!(format_time(-1), "1969-12-31 23:59:59.999Z");
        // Extreme values do not panic.
        let _ = format_time(i64::MIN);
        let _ = format_time(i64::MAX);
    }

    #[test]
    fn formats_numbers() {
        assert_eq!(number(None), "-");
        assert_eq!(number(Some(0.0)), "0");
        assert_eq!(number(Some(1.23456)), "1.2346");
        assert_eq!(number(Some(1e-5)), "1.000e-5");
        assert_eq!(number(Some(2.5e7)), "2.500e7");
        assert_eq!(p_value_text(0.00001), "<0.0001");
        assert_eq!(trim_float(95.0), "95");
        assert_eq!(trim_float(99.5), "99.5");
    }
}
