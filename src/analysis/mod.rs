//! Attribution and exclusion: measure experiments offline from recorded impressions and events.
//!
//! Everything here is a pure function of its input: no threads, no I/O beyond the reader you
//! hand to [`read_impressions`] / [`read_events`], no clock (the analysis time is part of the
//! [`AnalysisSpec`]). Use it in a batch job, a notebook-style tool or a test.
//!
//! # Quick start
//!
//! ```
//! use splitkit::analysis::{
//!     analyze, read_events, read_impressions, Aggregation, AnalysisSpecBuilder, FlagSpec,
//!     Metric,
//! };
//! let impressions = r#"[{"f":"new_checkout","i":[{"k":"u1","t":"on","m":1000000,"c":7,"r":"default rule"},{"k":"u2","t":"off","m":1000000,"c":7,"r":"default rule"}]}]"#;
//! let events = r#"{"key":"u1","trafficTypeName":"user","eventTypeId":"checkout","value":20.0,"timestamp":1000500}"#;
//! let spec = AnalysisSpecBuilder::new(2_000_000)
//!     .flag(FlagSpec::new("new_checkout", "user", "off"))
//!     .metric(Metric::new("revenue", "checkout", Aggregation::Sum))
//!     .build()?;
//! let impressions: Vec<_> = read_impressions(impressions.as_bytes()).collect::<Result<_, _>>()?;
//! let events: Vec<_> = read_events(events.as_bytes()).collect::<Result<_, _>>()?;
//! let report = analyze(&spec, &impressions, &events);
//! let unit = &report.flags[0].units[0];
//! let on = unit.group(Some("default rule"), "on").map(|g| g.metrics[0].mean);
//! assert_eq!(on, Some(Some(20.0)));
//! println!("{report}"); // readable text tables
//! # Ok::<(), splitkit::analysis::AnalysisError>(())
//! ```
//!
//! # Streaming, memory and partitioned jobs
//!
//! [`analyze`] is two passes: [`ImpressionPass`] folds every impression into a compact state
//! per (flag, unit, key) (at most two runs and the pairs seen), then [`EventPass`] streams the
//! events, in any order, into per-(group, key, event type) accumulators (count, non-null count,
//! sum). Memory grows with keys, not with impressions or events: about 32–64 bytes per key for
//! the key table, plus 80 bytes per (flag, unit, key) during the impression pass, then
//! 24 bytes per (group, key) and 16 more per event type read by the metrics during the event
//! pass (with a CUPED metric, 8 more per (group, key) and 16 more per event type for the
//! pre-exposure window). Keys, and (group, key) pairs, are limited to 2³² each. [`EventPass::finish`] yields a
//! [`PartialReport`] holding, per group, the sample size, the excluded count and per metric the
//! count, sum and sum of squares of the keys' values: partial reports of disjoint key sets
//! [`merge`](PartialReport::merge). A job partitioned by key runs the impression pass in every
//! partition, merges the partitions' [`ImpressionPass::version_starts`], hands the merged starts
//! to [`ImpressionPass::finish_with`] so every partition cuts versions alike, attributes its
//! events, and merges the partial reports. Every statistic (sample-ratio checks, adjusted
//! p-values, CUPED, sequential tests) is computed by [`PartialReport::report`] from the merged
//! sums, so a partitioned job gets exactly the statistics of a single pass.
//!
//! The partitions can be threads of one process or separate machines: [`VersionStarts`] and
//! [`PartialReport`] are serde types, and a partial report holds sums per group, not keys.
//! `examples/attribution_parallel.rs` runs both: two threads (about twice as fast as one on two
//! free cores), and three "machines" that exchange their version starts and partial reports
//! as JSON, each giving the single-pass report.
//!
//! # The rules, as settled
//!
//! The product documentation is ambiguous in places; this module implements exactly the
//! following reading (it wins over the prose of the product documentation). B is the buffer
//! (15 minutes by default, [`AnalysisSpecBuilder::buffer_ms`]), `first` is a key's first
//! impression in the unit, `t1` the first impression of its second (label, treatment) run, and
//! `end` the end of the unit.
//!
//! 1. **Windows are closed intervals**: both ends are inclusive (an event exactly at
//!    `first - B` or at `end + B` counts).
//! 2. **Unit**: one flag version (change number), or one custom date range. A version starts at
//!    its declared start time ([`FlagSpec::version_start`]), else at its first impression over
//!    all keys; it ends at the next version's start (declared, else first impression), capped
//!    at the analysis time; the last version ends at the analysis time. Versions are ordered by
//!    change number.
//! 3. **Runs**: a key's impressions in the unit, sorted by time (ties keep input order), are cut
//!    into maximal runs of equal **label**. A run's pair is (label, treatment of its first
//!    impression). Switches = runs - 1. A treatment change under the same label is not a
//!    switch: the run keeps its first pair (the later treatment still counts among the pairs
//!    for exclusion counting).
//!    - 0 switches: window `[first - B, end + B]`.
//!    - 1 switch: first pair `[first - B, t1 + B]`; second pair `[t1 - B, end + B]`; the key is
//!      in the sample of both pairs; an event in both windows counts in both groups. The first
//!      pair's later impressions play no role in its window.
//!    - 2 or more switches (a return to the first label is a second switch): the key is
//!      excluded from the unit: in no sample, none of its events count, and it adds 1 to
//!      `excluded` of every distinct (label, treatment) pair among its impressions.
//! 4. **Windows are not clipped to the version**: the pre-buffer may reach before the version
//!    start and the post-buffer past its end; such an event can count in two versions.
//! 5. **Retention**: `cutoff = analysis_time - retention` (90 days by default,
//!    [`AnalysisSpecBuilder::retention_ms`]); every impression and event with time `< cutoff`
//!    is dropped before anything else (so a key's first impression is its first retained one,
//!    and a switch before the cutoff disappears). Data exactly at the cutoff is kept.
//! 6. **Data after the analysis time** is not cut; only the windows bound events.
//! 7. **Traffic type**: an event counts for a flag only if its traffic type equals the flag's
//!    exactly (case-sensitive; `track()` already lower-cases).
//! 8. **Custom range `[from, to]`** ([`FlagSpec::range`]): the flag's impressions with
//!    `from <= time <= to`, whatever their change number, form one unit with `end = to`;
//!    impressions before `from` are ignored (a key's `first` is its first in-range
//!    impression); events are not clipped to the range (buffers may reach outside it).
//!    Retention still applies.
//! 9. **Metrics** per key over the events attributed to the group with the metric's event
//!    type: `count` = number of events; `sum` = sum of non-null values (0 when none);
//!    `average` = mean of the key's non-null values, the key left out when it has none;
//!    `has_event` = 1 or 0. Null values are skipped by sum and average, still counted by count
//!    and has_event. Keys in the sample without events count as 0 for count, sum and
//!    has_event. Group statistics over its keys: n (keys with a value), mean, sample variance
//!    (n - 1; none when n < 2). No de-duplication of identical events.
//! 10. **Impact** of each treatment against the baseline treatment under the same label, per
//!     metric: difference of means, relative difference as a fraction (none when the baseline
//!     mean is 0), Welch's t-test with Welch–Satterthwaite degrees of freedom, two-sided
//!     p-value, confidence interval `diff ± t(1 - alpha/2, df) · se`, significant when
//!     `p < alpha` (alpha 0.05 by default, [`AnalysisSpecBuilder::alpha`]). When a group has
//!     n < 2 or `se = 0`, t, df, p and the interval are none. No impact across labels.
//! 11. **Groups seen only by excluded keys** are reported with sample size 0 and their
//!     excluded count.
//! 12. Labels stripped by `labels_enabled(false)` are all equal, so no switch can be seen;
//!     `control` treatments and special labels (`killed`, `not in split`, ...) are ordinary
//!     pairs.
//!
//! # Statistics beyond the t-test
//!
//! Every [`Impact`] also carries, computed from the merged groups (so partial reports merge
//! before any of this is computed):
//!
//! - **Sample-ratio mismatch.** For each label with an expected split
//!   ([`FlagSpec::expected_split`], [`FlagSpec::version_expected_split`], or the partitions of a
//!   flag definition, [`FlagSpec::expected_splits_from`]), [`UnitReport::sample_ratios`] holds
//!   Pearson's chi-square goodness of fit of the treatments' sample sizes, overall and for
//!   every pair, flagged below [`AnalysisSpecBuilder::srm_threshold`] (0.001, as Harness FME);
//!   [`Impact::sample_ratio_mismatch`] marks the comparisons it compromises.
//! - **Multiple comparisons.** Metrics have a [`Tier`] (key, guardrail, supporting); within
//!   each unit and tier, [`Impact::adjusted_p_value`] is the Benjamini–Hochberg adjusted
//!   p-value and [`Impact::adjusted_confidence_interval`] the interval at the matching level
//!   `1 - alpha · R / m` (see the module `multiple.rs` for the derivation).
//! - **Relative lift.** [`Impact::relative_confidence_interval`]: the delta-method interval of
//!   `mean_t / mean_b - 1` (Deng, Knoblich and Lu 2018).
//! - **Minimum sample and power.** [`Impact::conclusive`] is false while either group has
//!   fewer than [`AnalysisSpecBuilder::min_sample_size`] keys with a value (355, as Harness
//!   FME); [`Impact::minimum_detectable_effect`] is the difference the test would detect with
//!   [`AnalysisSpecBuilder::power`] (80%) at the current sample.
//! - **CUPED** (per metric, [`Metric::cuped`]): [`Impact::cuped`], the estimate adjusted by
//!   the same metric over the pre-exposure window, its interval and the variance reduction
//!   achieved (Deng et al. 2013; see the module `cuped.rs`).
//! - **Sequential testing** (optional, [`AnalysisSpecBuilder::sequential`]):
//!   [`Impact::always_valid_p_value`] and [`Impact::confidence_sequence`] by the
//!   normal-mixture mSPRT (Johari et al. 2017), valid however often the report is looked at.
//!
//! [`Report::to_html`] renders all of it as one self-contained HTML page with a chart per
//! impact; `Display` renders it as text tables.
//!
//! # Where the rules are silent
//!
//! - A missing label and an empty label are the same label ("no label").
//! - Only flags named in the spec are analysed; impressions of other flags are counted in
//!   [`InputStats::impressions_unknown_flag`] and dropped. A flag with custom ranges is analysed
//!   per range only, not also per version; impressions in overlapping ranges count in each.
//! - A version declared in the spec but without retained impressions is still a unit (with no
//!   groups) and still ends the version before it.
//! - An event whose value is not finite (NaN, ±∞) has a null value.
//! - The relative difference and the impact are reported for every non-baseline treatment of a
//!   label that also has the baseline treatment, even when a side has no values (all fields
//!   then none, `significant` false).
//! - In the wire format, a null or missing `c` is change number 0; `b`, `pt` and `properties`
//!   are ignored.

mod attribution;
mod cuped;
mod hash;
mod html;
mod input;
mod multiple;
mod report;
mod sequential;
pub(crate) mod spec;
mod srm;
mod stats;
mod text;

use std::borrow::Borrow;

pub use attribution::{EventPass, ImpressionPass, VersionStarts};
pub use cuped::CupedEstimate;
pub use input::{
    AttributionEvent, AttributionImpression, EventReader, ImpressionReader, read_events,
    read_impressions,
};
pub use report::{
    FlagReport, GroupReport, Impact, InputStats, PartialReport, Report, Unit, UnitReport,
};
pub use spec::{Aggregation, AnalysisSpec, AnalysisSpecBuilder, DateRange, FlagSpec, Metric, Tier};
pub use srm::{PairwiseRatio, SampleRatio, SampleRatioCell};
pub use stats::GroupStats;

/// What can go wrong in an analysis: bad input lines, a bad spec, or partial reports that do
/// not fit together. The analysis itself never fails.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AnalysisError {
    /// A line of JSON input that does not parse.
    #[error("line {line}: {}{message}", field_prefix(.field))]
    Parse {
        /// 1-based line number.
        line: u64,
        /// Path of the offending field (e.g. `[0].i[3].m`); `None` for invalid JSON.
        field: Option<String>,
        /// What is wrong.
        message: String,
    },
    /// Reading the input failed; reading stops there.
    #[error("line {line}: read failed")]
    Read {
        /// 1-based number of the line being read.
        line: u64,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The spec is inconsistent (see [`AnalysisSpecBuilder::build`]).
    #[error("invalid analysis spec: {0}")]
    InvalidSpec(String),
    /// Two partial reports cannot be merged (see [`PartialReport::merge`]).
    #[error("cannot merge partial reports: {0}")]
    Merge(String),
}

fn field_prefix(field: &Option<String>) -> String {
    field
        .as_ref()
        .map(|f| format!("field `{f}`: "))
        .unwrap_or_default()
}

/// Runs a whole analysis in one process: every impression, then every event, each consumed
/// once as it streams by.
///
/// Accepts owned items or references (`&Vec<AttributionImpression>`, an iterator of owned
/// items, ...). For input that comes with parse errors, or for partitioned jobs, drive
/// [`ImpressionPass`] and [`EventPass`] yourself.
///
/// # Examples
///
/// ```
/// use splitkit::analysis::{
///     analyze, Aggregation, AnalysisSpecBuilder, AttributionEvent, AttributionImpression,
///     FlagSpec, Metric,
/// };
/// let spec = AnalysisSpecBuilder::new(100_000_000)
///     .flag(FlagSpec::new("f", "user", "off"))
///     .metric(Metric::new("converted", "buy", Aggregation::HasEvent))
///     .build()?;
/// let imp = |key: &str, treatment: &str| AttributionImpression {
///     key: key.into(),
///     flag: "f".into(),
///     treatment: treatment.into(),
///     label: Some("default rule".into()),
///     change_number: 1,
///     time_ms: 50_000_000,
/// };
/// let buy = AttributionEvent {
///     key: "a".into(),
///     traffic_type: "user".into(),
///     event_type: "buy".into(),
///     value: None,
///     time_ms: 50_000_001,
/// };
/// let report = analyze(&spec, [imp("a", "on"), imp("b", "on"), imp("c", "off")], [buy]);
/// let on = report.flags[0].units[0].group(Some("default rule"), "on");
/// assert_eq!(on.and_then(|g| g.metrics[0].mean), Some(0.5));
/// # Ok::<(), splitkit::analysis::AnalysisError>(())
/// ```
pub fn analyze<I, E>(spec: &AnalysisSpec, impressions: I, events: E) -> Report
where
    I: IntoIterator,
    I::Item: Borrow<AttributionImpression>,
    E: IntoIterator,
    E::Item: Borrow<AttributionEvent>,
{
    let mut pass = ImpressionPass::new(spec);
    pass.extend(impressions);
    let mut events_pass = pass.finish();
    events_pass.extend(events);
    events_pass.finish().report()
}
