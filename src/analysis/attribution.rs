//! The two passes of an analysis: impressions fold into compact per-(flag, unit, key) state;
//! events then fold into per-(group, key, event type) accumulators.

use std::borrow::Borrow;
use std::collections::BTreeMap;
use std::hint::black_box;

use serde::{Deserialize, Serialize};

use super::cuped::Covariance;
use super::hash::{FxMap, Interner, KeyTable, hash_key};
use super::input::{AttributionEvent, AttributionImpression};
use super::report::{InputStats, PartialFlag, PartialGroup, PartialReport, PartialUnit, Unit};
use super::spec::{Aggregation, AnalysisSpec};
use super::stats::MetricAccumulator;

/// Label id of "no label" (missing or empty).
const NO_LABEL: u32 = 0;

/// Records are folded in batches of this many. The work is bound by cache misses on per-key
/// state spread over hundreds of megabytes; touching a whole batch's lines in one tight loop
/// lets those misses overlap instead of being paid one after another.
const BATCH: usize = 64;

/// Keys of a batch, copied into one buffer.
#[derive(Debug, Default)]
struct BatchKeys {
    bytes: Vec<u8>,
}

impl BatchKeys {
    fn push(&mut self, key: &str) -> (u32, u32) {
        let start = self.bytes.len() as u32;
        self.bytes.extend_from_slice(key.as_bytes());
        (start, self.bytes.len() as u32)
    }

    fn get(&self, (start, end): (u32, u32)) -> &[u8] {
        self.bytes.get(start as usize..end as usize).unwrap_or(&[])
    }
}

/// First impression times per flag version, observed over all keys. Mergeable (minimum), so a
/// job partitioned by key can agree on version boundaries before attributing events.
///
/// # Examples
///
/// ```
/// use splitkit::analysis::VersionStarts;
/// let mut a = VersionStarts::new();
/// a.observe("f", 2, 500);
/// let mut b = VersionStarts::new();
/// b.observe("f", 2, 300);
/// b.observe("f", 3, 900);
/// a.merge(&b);
/// assert_eq!(a.get("f", 2), Some(300));
/// assert_eq!(a.get("f", 3), Some(900));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionStarts {
    starts: BTreeMap<String, BTreeMap<i64, i64>>,
}

impl VersionStarts {
    /// No observations.
    pub fn new() -> Self {
        VersionStarts::default()
    }

    /// Records an impression of `flag` version `change_number` at `time_ms`.
    pub fn observe(&mut self, flag: &str, change_number: i64, time_ms: i64) {
        let versions = match self.starts.get_mut(flag) {
            Some(v) => v,
            None => self.starts.entry(flag.to_owned()).or_default(),
        };
        versions
            .entry(change_number)
            .and_modify(|t| *t = (*t).min(time_ms))
            .or_insert(time_ms);
    }

    /// The earliest observed impression of `flag` version `change_number`.
    pub fn get(&self, flag: &str, change_number: i64) -> Option<i64> {
        self.starts.get(flag)?.get(&change_number).copied()
    }

    /// Keeps the earliest time of each version seen by either side.
    pub fn merge(&mut self, other: &VersionStarts) {
        for (flag, versions) in &other.starts {
            for (&cn, &t) in versions {
                self.observe(flag, cn, t);
            }
        }
    }

    fn versions(&self, flag: &str) -> impl Iterator<Item = (i64, i64)> + '_ {
        self.starts
            .get(flag)
            .into_iter()
            .flat_map(|v| v.iter().map(|(&cn, &t)| (cn, t)))
    }
}

/// A maximal run of equal label among a key's impressions so far, `[t0, t1]` in time, with the
/// treatment of its first impression.
#[derive(Debug, Clone, Copy, Default)]
struct Run {
    t0: i64,
    t1: i64,
    label: u32,
    treatment: u32,
}

fn pack(label: u32, treatment: u32) -> u64 {
    (u64::from(label) << 32) | u64::from(treatment)
}

fn unpack(pair: u64) -> (u32, u32) {
    ((pair >> 32) as u32, pair as u32)
}

/// One key's impressions in one unit, folded without keeping them: at most two runs (a third
/// run means two switches, final since inserting impressions never lowers the number of runs),
/// and the (label, treatment) pairs that are not the first pair of a current run.
///
/// Impressions arrive in any time order. Sorting is by time with ties in arrival order, so a new
/// impression goes after every earlier-arrived one at the same time.
#[derive(Debug)]
struct KeyUnit {
    runs: [Run; 2],
    /// Number of runs; 0 once the key is excluded (two or more switches).
    len: u8,
    /// Other pairs seen; after exclusion, every distinct pair. Boxed: most keys have none.
    extra: Option<Box<ExtraPairs>>,
}

impl KeyUnit {
    fn new(t: i64, label: u32, treatment: u32) -> Self {
        let run = Run {
            t0: t,
            t1: t,
            label,
            treatment,
        };
        KeyUnit {
            runs: [run, run],
            len: 1,
            extra: None,
        }
    }

    fn add(&mut self, t: i64, label: u32, treatment: u32) {
        let n = usize::from(self.len);
        if n == 0 {
            self.note(pack(label, treatment));
            return;
        }
        let runs = &mut self.runs[..n];
        // Runs starting at or before t come before the new impression.
        let i = runs.iter().take_while(|r| r.t0 <= t).count();
        if i > 0 && runs[i - 1].t1 > t {
            // Inside run i-1: same label keeps it, another label splits it into three runs.
            if runs[i - 1].label != label {
                self.exclude();
            }
        } else if i > 0 && runs[i - 1].label == label {
            runs[i - 1].t1 = t;
        } else if i < n && runs[i].label == label {
            let old = pack(runs[i].label, runs[i].treatment);
            runs[i].t0 = t;
            runs[i].treatment = treatment;
            self.note(old);
        } else if n == 2 {
            self.exclude();
        } else {
            let run = Run {
                t0: t,
                t1: t,
                label,
                treatment,
            };
            if i == 0 {
                self.runs[1] = self.runs[0];
                self.runs[0] = run;
            } else {
                self.runs[1] = run;
            }
            self.len = 2;
        }
        self.note(pack(label, treatment));
    }

    /// Marks the key excluded, keeping the first pairs of its runs among its pairs.
    fn exclude(&mut self) {
        let n = usize::from(self.len);
        self.len = 0;
        for r in 0..n {
            self.note(pack(self.runs[r].label, self.runs[r].treatment));
        }
    }

    /// Remembers a pair seen, unless it is already known.
    fn note(&mut self, pair: u64) {
        let runs = &self.runs[..usize::from(self.len)];
        if runs.iter().any(|r| pack(r.label, r.treatment) == pair) {
            return;
        }
        let extra = &mut self.extra.get_or_insert_with(Default::default).0;
        if !extra.contains(&pair) {
            extra.push(pair);
        }
    }

    /// The distinct pairs of an excluded key.
    fn excluded_pairs(&self) -> &[u64] {
        self.extra.as_deref().map_or(&[], |e| &e.0)
    }
}

/// Pairs beyond the runs' first pairs, kept behind one thin pointer.
#[derive(Debug, Default)]
struct ExtraPairs(Vec<u64>);

/// A key's state in one (flag, unit); a key's nodes form a chain through `next`.
#[derive(Debug)]
struct Node {
    flag: u32,
    unit: u32,
    /// Index of the key's next node in `ImpressionPass::overflow`, or [`NO_NODE`].
    next: u32,
    state: KeyUnit,
}

const NO_NODE: u32 = u32::MAX;

/// Per flag in version mode: its versions seen in retained impressions.
#[derive(Debug, Default)]
struct SeenVersions {
    by_change_number: FxMap<i64, u32>,
    /// (change number, first retained impression) by local unit id.
    versions: Vec<(i64, i64)>,
}

/// First pass: folds impressions into per-(flag, unit, key) assignment state.
///
/// Memory grows with the number of (flag, unit, key) triples, not with impressions. Feed every
/// impression with [`add_impression`](Self::add_impression) (or [`Extend`]), then call
/// [`finish`](Self::finish) to start the event pass.
///
/// # Examples
///
/// ```
/// use splitkit::analysis::{
///     Aggregation, AnalysisSpecBuilder, AttributionEvent, AttributionImpression, FlagSpec,
///     ImpressionPass, Metric,
/// };
/// let spec = AnalysisSpecBuilder::new(10_000_000)
///     .flag(FlagSpec::new("f", "user", "off"))
///     .metric(Metric::new("clicks", "click", Aggregation::Count))
///     .build()?;
/// let mut impressions = ImpressionPass::new(&spec);
/// impressions.add_impression(&AttributionImpression {
///     key: "u1".into(),
///     flag: "f".into(),
///     treatment: "on".into(),
///     label: Some("default rule".into()),
///     change_number: 1,
///     time_ms: 5_000_000,
/// });
/// let mut events = impressions.finish();
/// events.add_event(&AttributionEvent {
///     key: "u1".into(),
///     traffic_type: "user".into(),
///     event_type: "click".into(),
///     value: None,
///     time_ms: 5_000_001,
/// });
/// let report = events.finish().report();
/// let group = &report.flags[0].units[0].groups[0];
/// assert_eq!((group.sample_size, group.metrics[0].mean), (1, Some(1.0)));
/// # Ok::<(), splitkit::analysis::AnalysisError>(())
/// ```
#[derive(Debug)]
pub struct ImpressionPass {
    spec: AnalysisSpec,
    cutoff: i64,
    flag_ids: FxMap<Box<str>, u32>,
    seen: Vec<SeenVersions>,
    keys: KeyTable,
    labels: Interner,
    treatments: Interner,
    /// The first node of key `k` is `nodes[k]`; its other units' nodes are in `overflow`.
    nodes: Vec<Node>,
    overflow: Vec<Node>,
    batch: Vec<PendingFold>,
    batch_keys: BatchKeys,
    stats: InputStats,
}

/// An impression waiting in the batch; its key is resolved when the batch is flushed.
#[derive(Debug, Clone, Copy)]
struct PendingFold {
    key: (u32, u32),
    hash: u64,
    id: u32,
    flag: u32,
    unit: u32,
    label: u32,
    treatment: u32,
    t: i64,
}

impl ImpressionPass {
    /// An empty pass for `spec`.
    pub fn new(spec: &AnalysisSpec) -> Self {
        let flag_ids = spec
            .flags()
            .iter()
            .enumerate()
            .map(|(i, f)| (f.name().into(), i as u32))
            .collect();
        let mut labels = Interner::default();
        labels.intern(""); // NO_LABEL
        ImpressionPass {
            spec: spec.clone(),
            cutoff: spec.cutoff_ms(),
            flag_ids,
            seen: spec
                .flags()
                .iter()
                .map(|_| SeenVersions::default())
                .collect(),
            keys: KeyTable::default(),
            labels,
            treatments: Interner::default(),
            nodes: Vec::new(),
            overflow: Vec::new(),
            batch: Vec::with_capacity(BATCH),
            batch_keys: BatchKeys::default(),
            stats: InputStats::default(),
        }
    }

    /// Folds one impression in. Impressions before the retention cutoff, of flags not in the
    /// spec, or (for flags with custom ranges) outside every range are counted and dropped.
    pub fn add_impression(&mut self, imp: &AttributionImpression) {
        self.stats.impressions += 1;
        let t = imp.time_ms;
        if t < self.cutoff {
            self.stats.impressions_before_cutoff += 1;
            return;
        }
        let Some(&flag) = self.flag_ids.get(imp.flag.as_str()) else {
            self.stats.impressions_unknown_flag += 1;
            return;
        };
        let label = self.labels.intern(imp.label.as_deref().unwrap_or(""));
        let treatment = self.treatments.intern(&imp.treatment);
        let ranges = self.spec.flags()[flag as usize].ranges();
        if ranges.is_empty() {
            let seen = &mut self.seen[flag as usize];
            let cn = imp.change_number;
            let unit = match seen.by_change_number.get(&cn) {
                Some(&unit) => {
                    let first = &mut seen.versions[unit as usize].1;
                    *first = (*first).min(t);
                    unit
                }
                None => {
                    let unit = seen.versions.len() as u32;
                    seen.by_change_number.insert(cn, unit);
                    seen.versions.push((cn, t));
                    unit
                }
            };
            let key = self.batch_keys.push(&imp.key);
            self.batch.push(PendingFold {
                key,
                hash: 0,
                id: 0,
                flag,
                unit,
                label,
                treatment,
                t,
            });
        } else {
            let mut key = None;
            for (unit, range) in ranges.iter().enumerate() {
                if range.contains(t) {
                    let key = *key.get_or_insert_with(|| self.batch_keys.push(&imp.key));
                    self.batch.push(PendingFold {
                        key,
                        hash: 0,
                        id: 0,
                        flag,
                        unit: unit as u32,
                        label,
                        treatment,
                        t,
                    });
                }
            }
            if key.is_none() {
                self.stats.impressions_outside_ranges += 1;
            }
        }
        if self.batch.len() >= BATCH {
            self.flush();
        }
    }

    /// Folds the batched impressions, in their input order.
    fn flush(&mut self) {
        let mut batch = std::mem::take(&mut self.batch);
        // Touch the key table entries, then the keys' nodes, then their chained nodes: each
        // loop's loads are independent, so their cache misses overlap.
        let mut touched = 0u32;
        for p in &mut batch {
            p.hash = hash_key(self.batch_keys.get(p.key));
            touched ^= self.keys.touch(p.hash);
        }
        for p in &mut batch {
            p.id = self.keys.intern(self.batch_keys.get(p.key), p.hash);
            touched ^= self.nodes.get(p.id as usize).map_or(0, |n| n.next);
        }
        for p in &batch {
            let next = self.nodes.get(p.id as usize).map_or(NO_NODE, |n| n.next);
            touched ^= self.overflow.get(next as usize).map_or(0, |n| n.unit);
        }
        black_box(touched);
        for p in &batch {
            self.fold(p.id, p.flag, p.unit, p.t, p.label, p.treatment);
        }
        batch.clear();
        self.batch = batch;
        self.batch_keys.bytes.clear();
    }

    /// Adds an impression to the state of (key, flag, unit), creating it when new.
    fn fold(&mut self, key: u32, flag: u32, unit: u32, t: i64, label: u32, treatment: u32) {
        let new = |next| Node {
            flag,
            unit,
            next,
            state: KeyUnit::new(t, label, treatment),
        };
        let Some(first) = self.nodes.get_mut(key as usize) else {
            // A key gets its id and its first node together.
            self.nodes.push(new(NO_NODE));
            return;
        };
        if first.flag == flag && first.unit == unit {
            first.state.add(t, label, treatment);
            return;
        }
        let mut next = first.next;
        while let Some(node) = self.overflow.get_mut(next as usize) {
            if node.flag == flag && node.unit == unit {
                node.state.add(t, label, treatment);
                return;
            }
            next = node.next;
        }
        // Not found: chain a new node right after the first.
        let index = self.overflow.len() as u32;
        let first_next = std::mem::replace(&mut self.nodes[key as usize].next, index);
        self.overflow.push(new(first_next));
    }

    /// The first retained impression of each version seen so far. In a job partitioned by key,
    /// merge these over all partitions and pass the result to
    /// [`finish_with`](Self::finish_with), so that every partition cuts versions alike.
    pub fn version_starts(&self) -> VersionStarts {
        let mut starts = VersionStarts::new();
        for (flag, seen) in self.spec.flags().iter().zip(&self.seen) {
            for &(cn, t) in &seen.versions {
                starts.observe(flag.name(), cn, t);
            }
        }
        starts
    }

    /// Ends the impression pass using the versions this pass saw.
    pub fn finish(self) -> EventPass {
        self.finish_with(&VersionStarts::new())
    }

    /// Ends the impression pass with version boundaries taken from `starts` merged with this
    /// pass' own observations (declared start times still win).
    pub fn finish_with(mut self, starts: &VersionStarts) -> EventPass {
        self.flush();
        let mut observed = self.version_starts();
        observed.merge(starts);
        let layouts: Vec<FlagLayout> = self
            .spec
            .flags()
            .iter()
            .zip(&self.seen)
            .map(|(flag, seen)| FlagLayout::new(&self.spec, flag, seen, &observed))
            .collect();
        let mut traffic_types = Interner::default();
        let flag_tt: Vec<u32> = self
            .spec
            .flags()
            .iter()
            .map(|f| traffic_types.intern(f.traffic_type()))
            .collect();

        // Slots in key order, the key's nodes first then chained; each key's last slot is
        // marked, and the key table then maps keys to their first slot.
        let mut key_slots = Vec::with_capacity(self.nodes.len());
        let mut slots: Vec<Slot> = Vec::with_capacity(self.nodes.len() + self.overflow.len());
        let mut groups = Groups::default();
        let b = self.spec.buffer_ms();
        let cuped = self.spec.metrics().iter().any(|m| m.uses_cuped());
        // Per slot, its key's first impression in the unit: the end of its CUPED window.
        let mut pre_first: Vec<i64> = Vec::new();
        for first in &self.nodes {
            let start = slots.len();
            let mut node = Some(first);
            while let Some(n) = node {
                let layout = &layouts[n.flag as usize];
                let unit = layout.local_unit[n.unit as usize];
                let end = layout.local_end[n.unit as usize];
                let traffic_type = flag_tt[n.flag as usize];
                let st = &n.state;
                let key_first = st.runs[0].t0;
                let mut place = |pair: u64, lo: i64, hi: i64| {
                    let group = groups.id(n.flag, unit, pair);
                    groups.info[group as usize].sample_size += 1;
                    slots.push(Slot::new(lo, hi, group, traffic_type));
                    if cuped {
                        pre_first.push(key_first);
                    }
                };
                let [first_run, second_run] = st.runs;
                let first_pair = pack(first_run.label, first_run.treatment);
                match st.len {
                    0 => {
                        for &pair in st.excluded_pairs() {
                            groups.get(n.flag, unit, pair).excluded += 1;
                        }
                    }
                    1 => place(
                        first_pair,
                        first_run.t0.saturating_sub(b),
                        end.saturating_add(b),
                    ),
                    _ => {
                        let t1 = second_run.t0;
                        place(
                            first_pair,
                            first_run.t0.saturating_sub(b),
                            t1.saturating_add(b),
                        );
                        let second_pair = pack(second_run.label, second_run.treatment);
                        place(second_pair, t1.saturating_sub(b), end.saturating_add(b));
                    }
                }
                node = self.overflow.get(n.next as usize);
            }
            match slots.get_mut(start..) {
                Some([.., last]) => {
                    last.mark_last();
                    key_slots.push(u32::try_from(start).unwrap_or(NO_SLOTS));
                }
                _ => key_slots.push(NO_SLOTS),
            }
        }
        drop(self.nodes);
        drop(self.overflow);
        let mut keys = self.keys;
        keys.remap(|id| key_slots.get(id as usize).copied().unwrap_or(NO_SLOTS));
        drop(key_slots);

        // Metrics of the same event type share one accumulator per slot.
        let mut event_types = Interner::default();
        let metric_event = self
            .spec
            .metrics()
            .iter()
            .map(|m| event_types.intern(m.event_type()))
            .collect();
        // With CUPED, a slot's pre-exposure accumulators follow its own, on the same cache line.
        let stride = event_types.len() * if cuped { 2 } else { 1 };
        let accumulators = vec![KeyAccumulator::default(); slots.len() * stride];
        EventPass {
            pre_first,
            stride,
            // A window that is not positive holds nothing.
            cuped_window: u64::try_from(self.spec.cuped_window_ms()).unwrap_or(0),
            cutoff: self.cutoff,
            keys,
            slots,
            batch: Vec::with_capacity(BATCH),
            batch_keys: BatchKeys::default(),
            accumulators,
            event_types,
            metric_event,
            traffic_types,
            groups,
            layouts,
            labels: self.labels,
            treatments: self.treatments,
            stats: self.stats,
            spec: self.spec,
        }
    }
}

impl<T: Borrow<AttributionImpression>> Extend<T> for ImpressionPass {
    fn extend<I: IntoIterator<Item = T>>(&mut self, iter: I) {
        for imp in iter {
            self.add_impression(imp.borrow());
        }
    }
}

/// A flag's units and how its local unit ids map onto them.
#[derive(Debug)]
struct FlagLayout {
    units: Vec<Unit>,
    local_unit: Vec<u32>,
    local_end: Vec<i64>,
}

impl FlagLayout {
    fn new(
        spec: &AnalysisSpec,
        flag: &super::spec::FlagSpec,
        seen: &SeenVersions,
        observed: &VersionStarts,
    ) -> Self {
        if !flag.ranges().is_empty() {
            let units: Vec<Unit> = flag
                .ranges()
                .iter()
                .map(|r| Unit::Range {
                    from_ms: r.from_ms,
                    to_ms: r.to_ms,
                })
                .collect();
            return FlagLayout {
                local_unit: (0..units.len() as u32).collect(),
                local_end: flag.ranges().iter().map(|r| r.to_ms).collect(),
                units,
            };
        }
        // Declared starts win over observed first impressions.
        let mut starts: BTreeMap<i64, i64> = observed.versions(flag.name()).collect();
        starts.extend(flag.version_starts().iter().map(|(&cn, &t)| (cn, t)));
        let starts: Vec<(i64, i64)> = starts.into_iter().collect();
        let now = spec.analysis_time_ms();
        let units: Vec<Unit> = starts
            .iter()
            .enumerate()
            .map(|(i, &(change_number, start_ms))| Unit::Version {
                change_number,
                start_ms,
                end_ms: starts.get(i + 1).map_or(now, |&(_, next)| next.min(now)),
            })
            .collect();
        let mut local_unit = Vec::with_capacity(seen.versions.len());
        let mut local_end = Vec::with_capacity(seen.versions.len());
        for &(cn, _) in &seen.versions {
            // Every seen version is among the starts, as `observed` includes this pass.
            let index = starts.partition_point(|&(c, _)| c < cn);
            local_unit.push(index as u32);
            local_end.push(units.get(index).map_or(now, Unit::end_ms));
        }
        FlagLayout {
            units,
            local_unit,
            local_end,
        }
    }
}

/// An event waiting in the batch; its key is resolved when the batch is flushed.
#[derive(Debug, Clone, Copy)]
struct PendingEvent {
    key: (u32, u32),
    hash: u64,
    first_slot: u32,
    event_type: u32,
    traffic_type: u32,
    value: Option<f64>,
    t: i64,
}

/// Key table value of a key without slots (excluded everywhere).
const NO_SLOTS: u32 = u32::MAX;

/// One key's membership in one group, with its attribution window `[lo, hi]`. A key's slots
/// are consecutive; the last one is marked.
#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    lo: i64,
    hi: i64,
    group: u32,
    /// The flag's traffic type id, shifted left once; the low bit marks the key's last slot.
    traffic_type_last: u32,
}

impl Slot {
    fn new(lo: i64, hi: i64, group: u32, traffic_type: u32) -> Self {
        Slot {
            lo,
            hi,
            group,
            traffic_type_last: traffic_type << 1,
        }
    }

    fn mark_last(&mut self) {
        self.traffic_type_last |= 1;
    }

    #[inline]
    fn is_last(&self) -> bool {
        self.traffic_type_last & 1 == 1
    }

    #[inline]
    fn traffic_type(&self) -> u32 {
        self.traffic_type_last >> 1
    }
}

/// One key's events of one event type in one group.
#[derive(Debug, Clone, Copy, Default)]
struct KeyAccumulator {
    count: u32,
    values: u32,
    sum: f64,
}

impl KeyAccumulator {
    #[inline]
    fn add(&mut self, value: Option<f64>) {
        self.count = self.count.saturating_add(1);
        if let Some(v) = value {
            self.values = self.values.saturating_add(1);
            self.sum += v;
        }
    }

    /// The key's metric value; `None` leaves the key out of the group's statistics.
    fn value(&self, aggregation: Aggregation) -> Option<f64> {
        match aggregation {
            Aggregation::Count => Some(f64::from(self.count)),
            Aggregation::Sum => Some(self.sum),
            Aggregation::Average => (self.values > 0).then(|| self.sum / f64::from(self.values)),
            Aggregation::HasEvent => Some(if self.count > 0 { 1.0 } else { 0.0 }),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct GroupInfo {
    flag: u32,
    unit: u32,
    pair: u64,
    sample_size: u64,
    excluded: u64,
}

/// Groups by (flag, unit, label, treatment).
#[derive(Debug, Default)]
struct Groups {
    ids: FxMap<(u32, u32, u64), u32>,
    info: Vec<GroupInfo>,
}

impl Groups {
    fn id(&mut self, flag: u32, unit: u32, pair: u64) -> u32 {
        let next = self.info.len() as u32;
        let id = *self.ids.entry((flag, unit, pair)).or_insert(next);
        if id == next {
            self.info.push(GroupInfo {
                flag,
                unit,
                pair,
                sample_size: 0,
                excluded: 0,
            });
        }
        id
    }

    fn get(&mut self, flag: u32, unit: u32, pair: u64) -> &mut GroupInfo {
        let id = self.id(flag, unit, pair);
        &mut self.info[id as usize]
    }
}

/// Second pass: attributes events to the groups whose windows contain them.
///
/// Created by [`ImpressionPass::finish`]. Feed every event with
/// [`add_event`](Self::add_event) (or [`Extend`]), in any order, then call
/// [`finish`](Self::finish).
#[derive(Debug)]
pub struct EventPass {
    spec: AnalysisSpec,
    cutoff: i64,
    /// User key to the index of its first slot.
    keys: KeyTable,
    slots: Vec<Slot>,
    batch: Vec<PendingEvent>,
    batch_keys: BatchKeys,
    /// `accumulators[slot * stride + event type]`; with CUPED, the slot's pre-exposure events
    /// follow at `slot * stride + event types + event type`.
    accumulators: Vec<KeyAccumulator>,
    /// Per slot, its key's first impression in the unit; empty when no metric uses CUPED.
    pre_first: Vec<i64>,
    /// Accumulators per slot: the number of event types, twice that with CUPED.
    stride: usize,
    /// The CUPED window's length in milliseconds.
    cuped_window: u64,
    /// The metrics' distinct event types.
    event_types: Interner,
    /// Index of each metric's event type.
    metric_event: Vec<u32>,
    traffic_types: Interner,
    groups: Groups,
    layouts: Vec<FlagLayout>,
    labels: Interner,
    treatments: Interner,
    stats: InputStats,
}

impl EventPass {
    /// Attributes one event. Events before the retention cutoff are counted and dropped; events
    /// of a type no metric reads, of a traffic type no flag has, or of a key without
    /// impressions count nowhere.
    pub fn add_event(&mut self, event: &AttributionEvent) {
        self.stats.events += 1;
        let t = event.time_ms;
        if t < self.cutoff {
            self.stats.events_before_cutoff += 1;
            return;
        }
        let Some(event_type) = self.event_types.get(&event.event_type) else {
            return;
        };
        let Some(traffic_type) = self.traffic_types.get(&event.traffic_type) else {
            return;
        };
        let key = self.batch_keys.push(&event.key);
        self.batch.push(PendingEvent {
            key,
            hash: 0,
            first_slot: NO_SLOTS,
            event_type,
            traffic_type,
            value: event.value.filter(|v| v.is_finite()),
            t,
        });
        if self.batch.len() >= BATCH {
            self.flush();
        }
    }

    /// Attributes the batched events.
    fn flush(&mut self) {
        // Two copies of the attribution, so that analyses without CUPED run the loops they
        // ran before CUPED existed.
        if self.pre_first.is_empty() {
            self.attribute_batch::<false>();
        } else {
            self.attribute_batch::<true>();
        }
        self.batch.clear();
        self.batch_keys.bytes.clear();
    }

    /// Attributes every batched event to the windows of its key's slots, and with `CUPED` to
    /// their pre-exposure windows too.
    fn attribute_batch<const CUPED: bool>(&mut self) {
        let stride = self.stride;
        // Touch the key table entries, then the keys' first slots and accumulators (and their
        // CUPED window ends): each loop's loads are independent, so their cache misses overlap.
        let mut touched = 0u32;
        for p in &mut self.batch {
            p.hash = hash_key(self.batch_keys.get(p.key));
            touched ^= self.keys.touch(p.hash);
        }
        for p in &mut self.batch {
            p.first_slot = self
                .keys
                .get(self.batch_keys.get(p.key), p.hash)
                .unwrap_or(NO_SLOTS);
            let s = p.first_slot as usize;
            touched ^= self.slots.get(s).map_or(0, |slot| slot.group);
            let acc = s.wrapping_mul(stride).wrapping_add(p.event_type as usize);
            touched ^= self.accumulators.get(acc).map_or(0, |a| a.count);
            if CUPED {
                touched ^= self.pre_first.get(s).map_or(0, |&t| t as u32);
            }
        }
        black_box(touched);
        let width = self.event_types.len();
        for p in &self.batch {
            let mut attributed = false;
            let mut s = p.first_slot as usize;
            while let Some(slot) = self.slots.get(s) {
                let same_type = slot.traffic_type() == p.traffic_type;
                let acc = s * stride + p.event_type as usize;
                if same_type && slot.lo <= p.t && p.t <= slot.hi {
                    attributed = true;
                    if let Some(acc) = self.accumulators.get_mut(acc) {
                        acc.add(p.value);
                    }
                }
                // In the pre-exposure window `[first - window, first)`; `abs_diff` cannot
                // overflow, unlike `first - p.t`.
                if CUPED
                    && same_type
                    && let Some(&first) = self.pre_first.get(s)
                    && p.t < first
                    && first.abs_diff(p.t) <= self.cuped_window
                    && let Some(acc) = self.accumulators.get_mut(acc + width)
                {
                    acc.add(p.value);
                }
                if slot.is_last() {
                    break;
                }
                s += 1;
            }
            if attributed {
                self.stats.events_attributed += 1;
            }
        }
    }

    /// Folds every slot's per-key metric values into its group's accumulators, and with
    /// `CUPED` the pairs of a CUPED metric's value and pre-exposure value into its group's
    /// covariances. Both are laid out `[group * metrics + metric]`.
    fn fold_keys<const CUPED: bool>(
        &self,
        group_acc: &mut [MetricAccumulator],
        group_cov: &mut [Covariance],
    ) {
        let metrics = self.spec.metrics();
        let events = self.event_types.len();
        if self.stride == 0 {
            return;
        }
        for (slot, accs) in self
            .slots
            .iter()
            .zip(self.accumulators.chunks_exact(self.stride))
        {
            let g = slot.group as usize * metrics.len();
            for (m, (metric, &e)) in metrics.iter().zip(&self.metric_event).enumerate() {
                let value =
                    |at: usize| accs.get(at).and_then(|acc| acc.value(metric.aggregation()));
                let x = value(e as usize);
                if let Some(x) = x
                    && let Some(group) = group_acc.get_mut(g + m)
                {
                    group.push(x);
                }
                if CUPED
                    && metric.uses_cuped()
                    && let (Some(x), Some(y)) = (x, value(events + e as usize))
                    && let Some(cov) = group_cov.get_mut(g + m)
                {
                    cov.push(x, y);
                }
            }
        }
    }

    /// Ends the analysis of this input: per-key metric values are folded into group
    /// statistics. The result can be merged with other partitions' or turned into a report.
    pub fn finish(mut self) -> PartialReport {
        self.flush();
        let metrics = self.spec.metrics();
        let width = metrics.len();
        let mut group_acc = vec![MetricAccumulator::default(); self.groups.info.len() * width];
        let cuped_width = if self.pre_first.is_empty() { 0 } else { width };
        let mut group_cov = vec![Covariance::default(); self.groups.info.len() * cuped_width];
        // As in the event pass, a copy without CUPED runs the loop from before CUPED.
        if cuped_width == 0 {
            self.fold_keys::<false>(&mut group_acc, &mut group_cov);
        } else {
            self.fold_keys::<true>(&mut group_acc, &mut group_cov);
        }
        let mut flags: Vec<PartialFlag> = self
            .spec
            .flags()
            .iter()
            .zip(&self.layouts)
            .map(|(flag, layout)| PartialFlag {
                flag: flag.name().to_owned(),
                traffic_type: flag.traffic_type().to_owned(),
                baseline: flag.baseline().to_owned(),
                units: layout
                    .units
                    .iter()
                    .map(|&unit| PartialUnit {
                        unit,
                        groups: Vec::new(),
                    })
                    .collect(),
                expected_splits: flag.splits().to_vec(),
            })
            .collect();
        for (g, info) in self.groups.info.iter().enumerate() {
            let (label, treatment) = unpack(info.pair);
            let group = PartialGroup {
                label: (label != NO_LABEL).then(|| self.labels.name(label).to_owned()),
                treatment: self.treatments.name(treatment).to_owned(),
                sample_size: info.sample_size,
                excluded: info.excluded,
                metrics: group_acc[g * width..(g + 1) * width].to_vec(),
                cuped: group_cov
                    .get(g * cuped_width..(g + 1) * cuped_width)
                    .map_or_else(Vec::new, <[Covariance]>::to_vec),
            };
            if let Some(unit) = flags
                .get_mut(info.flag as usize)
                .and_then(|f| f.units.get_mut(info.unit as usize))
            {
                unit.groups.push(group);
            }
        }
        for unit in flags.iter_mut().flat_map(|f| f.units.iter_mut()) {
            unit.groups
                .sort_by(|a, b| (&a.label, &a.treatment).cmp(&(&b.label, &b.treatment)));
        }
        PartialReport::new(&self.spec, flags, self.stats)
    }
}

impl<T: Borrow<AttributionEvent>> Extend<T> for EventPass {
    fn extend<I: IntoIterator<Item = T>>(&mut self, iter: I) {
        for event in iter {
            self.add_event(event.borrow());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::spec::{AnalysisSpecBuilder, FlagSpec, Metric};
    use super::super::{AnalysisError, FlagReport, GroupReport, Report, analyze};
    use super::*;
    use std::collections::BTreeSet;

    const MIN: i64 = 60_000;
    const HOUR: i64 = 60 * MIN;
    const B: i64 = 15 * MIN;
    /// Start of the test timelines.
    const T: i64 = 1_700_000_000_000;
    /// Analysis time: ten days later.
    const A: i64 = T + 240 * HOUR;

    fn builder() -> AnalysisSpecBuilder {
        AnalysisSpecBuilder::new(A)
            .metric(Metric::new("clicks", "click", Aggregation::Count))
            .metric(Metric::new("revenue", "buy", Aggregation::Sum))
            .metric(Metric::new("basket", "buy", Aggregation::Average))
            .metric(Metric::new("bought", "buy", Aggregation::HasEvent))
    }

    fn spec_with(flag: FlagSpec) -> AnalysisSpec {
        builder().flag(flag).build().expect("valid spec")
    }

    fn spec() -> AnalysisSpec {
        spec_with(FlagSpec::new("f", "user", "off"))
    }

    fn imp(key: &str, label: &str, treatment: &str, cn: i64, t: i64) -> AttributionImpression {
        AttributionImpression {
            key: key.into(),
            flag: "f".into(),
            treatment: treatment.into(),
            label: Some(label.into()),
            change_number: cn,
            time_ms: t,
        }
    }

    fn ev(key: &str, event_type: &str, value: Option<f64>, t: i64) -> AttributionEvent {
        AttributionEvent {
            key: key.into(),
            traffic_type: "user".into(),
            event_type: event_type.into(),
            value,
            time_ms: t,
        }
    }

    fn clicks(key: &str, times: &[i64]) -> Vec<AttributionEvent> {
        times.iter().map(|&t| ev(key, "click", None, t)).collect()
    }

    fn group<'r>(r: &'r Report, unit: usize, label: &str, treatment: &str) -> &'r GroupReport {
        let label = (!label.is_empty()).then_some(label);
        r.flags[0].units[unit]
            .group(label, treatment)
            .unwrap_or_else(|| panic!("no group {label:?}/{treatment} in unit {unit}:\n{r}"))
    }

    /// Total of a metric over a group (mean × n).
    fn total(g: &GroupReport, metric: &str) -> f64 {
        let m = g.metric(metric).expect("metric");
        m.mean.unwrap_or(0.0) * m.n as f64
    }

    fn sample_excluded(g: &GroupReport) -> (u64, u64) {
        (g.sample_size, g.excluded)
    }

    #[test]
    fn zero_switches_window_is_closed_on_both_ends() {
        let imps = [
            imp("a", "r1", "on", 1, T),
            imp("a", "r1", "on", 1, T + HOUR),
        ];
        let events = clicks("a", &[T - B - 1, T - B, T, A, A + B, A + B + 1]);
        let r = analyze(&spec(), &imps, &events);
        let g = group(&r, 0, "r1", "on");
        assert_eq!(sample_excluded(g), (1, 0));
        assert_eq!(total(g, "clicks"), 4.0);
        assert_eq!(r.stats.events_attributed, 4);
        assert_eq!(
            r.flags[0].units[0].unit,
            Unit::Version {
                change_number: 1,
                start_ms: T,
                end_ms: A
            }
        );
    }

    #[test]
    fn treatment_change_under_same_label_is_not_a_switch() {
        let imps = [
            imp("a", "r1", "on", 1, T),
            imp("a", "r1", "off", 1, T + HOUR),
        ];
        let r = analyze(&spec(), &imps, clicks("a", &[T - B, A + B]));
        let unit = &r.flags[0].units[0];
        assert_eq!(unit.groups.len(), 1, "the later treatment makes no group");
        let g = group(&r, 0, "r1", "on");
        assert_eq!(sample_excluded(g), (1, 0));
        assert_eq!(total(g, "clicks"), 2.0);
    }

    #[test]
    fn one_switch_splits_windows_and_counts_overlap_in_both() {
        let t1 = T + HOUR;
        let imps = [
            imp("a", "r1", "on", 1, T),
            // A later impression of the first run: no role in the first window.
            imp("a", "r1", "on", 1, T + 30 * MIN),
            imp("a", "r2", "off", 1, t1),
        ];
        let events = clicks(
            "a",
            &[
                T - B,
                t1 - B - 1,
                t1 - B,
                t1 + B,
                t1 + B + 1,
                A + B,
                A + B + 1,
            ],
        );
        let r = analyze(&spec(), &imps, &events);
        let first = group(&r, 0, "r1", "on");
        let second = group(&r, 0, "r2", "off");
        assert_eq!(sample_excluded(first), (1, 0));
        assert_eq!(sample_excluded(second), (1, 0));
        // first: [T - B, t1 + B]; second: [t1 - B, A + B].
        assert_eq!(total(first, "clicks"), 4.0);
        assert_eq!(total(second, "clicks"), 4.0);
        assert_eq!(r.stats.events_attributed, 6);
    }

    #[test]
    fn return_to_first_label_is_two_switches() {
        let imps = [
            imp("a", "r1", "on", 1, T),
            imp("a", "r2", "off", 1, T + HOUR),
            imp("a", "r1", "on", 1, T + 2 * HOUR),
            imp("b", "r1", "on", 1, T),
        ];
        let events = [clicks("a", &[T, T + HOUR]), clicks("b", &[T + MIN])].concat();
        let r = analyze(&spec(), &imps, &events);
        let r1 = group(&r, 0, "r1", "on");
        assert_eq!(sample_excluded(r1), (1, 1));
        assert_eq!(total(r1, "clicks"), 1.0, "only b's click");
        // Seen only by the excluded key: reported with sample 0.
        let r2 = group(&r, 0, "r2", "off");
        assert_eq!(sample_excluded(r2), (0, 1));
        assert_eq!(r2.metrics[0].n, 0);
        assert_eq!(r2.metrics[0].mean, None);
        assert_eq!(r.stats.events_attributed, 1);
    }

    #[test]
    fn exclusion_counts_each_distinct_pair_once() {
        let imps = [
            imp("a", "r1", "on", 1, T),
            imp("a", "r1", "on", 1, T + 1),
            imp("a", "r1", "off", 1, T + 2),
            imp("a", "r2", "on", 1, T + 3),
            imp("a", "r3", "off", 1, T + 4),
            imp("a", "r3", "off", 1, T + 5),
        ];
        let r = analyze(&spec(), &imps, clicks("a", &[T]));
        let unit = &r.flags[0].units[0];
        let got: Vec<(Option<&str>, &str, u64, u64)> = unit
            .groups
            .iter()
            .map(|g| {
                (
                    g.label.as_deref(),
                    g.treatment.as_str(),
                    g.sample_size,
                    g.excluded,
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                (Some("r1"), "off", 0, 1),
                (Some("r1"), "on", 0, 1),
                (Some("r2"), "on", 0, 1),
                (Some("r3"), "off", 0, 1),
            ]
        );
    }

    #[test]
    fn out_of_order_impressions_give_the_same_runs() {
        let t1 = T + HOUR;
        let ordered = vec![
            imp("a", "r1", "off", 1, T),
            imp("a", "r1", "on", 1, T + 10 * MIN),
            imp("a", "r2", "on", 1, t1),
            imp("a", "r2", "off", 1, t1 + 10 * MIN),
        ];
        let events = clicks("a", &[T - B, t1 - B, t1 + B, A + B]);
        let expected = analyze(&spec(), &ordered, &events);
        for order in [[3, 2, 1, 0], [2, 0, 3, 1], [1, 3, 0, 2]] {
            let shuffled: Vec<_> = order.iter().map(|&i| ordered[i].clone()).collect();
            let r = analyze(&spec(), &shuffled, &events);
            assert_eq!(r, expected, "order {order:?}");
        }
        // The run pairs are the treatments of the first impressions by time.
        assert_eq!(total(group(&expected, 0, "r1", "off"), "clicks"), 3.0);
        assert_eq!(total(group(&expected, 0, "r2", "on"), "clicks"), 3.0);
    }

    #[test]
    fn late_impression_inside_a_run_splits_it() {
        let imps = [
            imp("a", "r1", "on", 1, T),
            imp("a", "r1", "on", 1, T + 2 * HOUR),
            imp("a", "r2", "on", 1, T + HOUR),
        ];
        let r = analyze(&spec(), &imps, clicks("a", &[T]));
        assert_eq!(sample_excluded(group(&r, 0, "r1", "on")), (0, 1));
        assert_eq!(sample_excluded(group(&r, 0, "r2", "on")), (0, 1));
    }

    #[test]
    fn ties_keep_input_order() {
        // Same time, r2 given first: r2 is the first run, r1 the second.
        let imps = [imp("a", "r2", "off", 1, T), imp("a", "r1", "on", 1, T)];
        let r = analyze(&spec(), &imps, clicks("a", &[T + B, T + B + 1]));
        let first = group(&r, 0, "r2", "off");
        let second = group(&r, 0, "r1", "on");
        assert_eq!(
            total(first, "clicks"),
            1.0,
            "first window ends at t1 + B = T + B"
        );
        assert_eq!(total(second, "clicks"), 2.0);

        // A third impression at the same time goes after both: r2, r1, r2.
        let imps = [
            imp("a", "r2", "off", 1, T),
            imp("a", "r1", "on", 1, T),
            imp("a", "r2", "off", 1, T),
        ];
        let r = analyze(&spec(), &imps, clicks("a", &[T]));
        assert_eq!(sample_excluded(group(&r, 0, "r2", "off")), (0, 1));
        // Same time, same label, later treatment: the run keeps the first one given.
        let imps = [imp("a", "r1", "on", 1, T), imp("a", "r1", "off", 1, T)];
        let r = analyze(&spec(), &imps, clicks("a", &[T]));
        assert_eq!(sample_excluded(group(&r, 0, "r1", "on")), (1, 0));
    }

    #[test]
    fn late_and_out_of_order_events_count() {
        let imps = [imp("a", "r1", "on", 1, T)];
        // After the analysis time but inside end + B; listed in no particular order.
        let events = [
            ev("a", "buy", Some(5.0), A + 5 * MIN),
            ev("a", "buy", Some(1.0), T - 1),
            ev("a", "buy", Some(100.0), A + B + 1),
            ev("a", "buy", Some(2.0), T + HOUR),
        ];
        let r = analyze(&spec(), &imps, &events);
        let g = group(&r, 0, "r1", "on");
        assert_eq!(total(g, "revenue"), 8.0);
        let mut reversed = events.to_vec();
        reversed.reverse();
        assert_eq!(analyze(&spec(), &imps, &reversed), r);
    }

    #[test]
    fn versions_are_cut_by_first_impressions_and_events_can_count_in_two() {
        let v2 = T + 2 * HOUR;
        let imps = [
            imp("a", "r1", "on", 1, T),
            imp("b", "r1", "on", 2, v2),
            imp("c", "r1", "on", 1, T + 10 * MIN),
            imp("c", "r1", "on", 2, v2 + 5 * MIN),
        ];
        let events = [
            clicks("a", &[v2 + B, v2 + B + 1]),
            clicks("b", &[v2 - B, v2 - B - 1]),
            clicks("c", &[v2]),
        ]
        .concat();
        let r = analyze(&spec(), &imps, &events);
        let units: Vec<Unit> = r.flags[0].units.iter().map(|u| u.unit).collect();
        assert_eq!(
            units,
            vec![
                Unit::Version {
                    change_number: 1,
                    start_ms: T,
                    end_ms: v2
                },
                Unit::Version {
                    change_number: 2,
                    start_ms: v2,
                    end_ms: A
                },
            ]
        );
        let v1 = group(&r, 0, "r1", "on");
        let v2g = group(&r, 1, "r1", "on");
        assert_eq!(sample_excluded(v1), (2, 0));
        assert_eq!(sample_excluded(v2g), (2, 0));
        // v1: a [T - B, v2 + B] gets 1; c [T + 10m - B, v2 + B] gets its click at v2.
        assert_eq!(total(v1, "clicks"), 2.0);
        // v2: b [v2 - B, A + B] gets 1; c [v2 + 5m - B, A + B] gets the same click at v2.
        assert_eq!(total(v2g, "clicks"), 2.0);
    }

    #[test]
    fn declared_starts_win_and_bound_the_previous_version() {
        let declared_v2 = T + HOUR;
        let declared_v3 = T + 3 * HOUR;
        let flag = FlagSpec::new("f", "user", "off")
            .version_start(2, declared_v2)
            .version_start(3, declared_v3);
        let imps = [
            imp("a", "r1", "on", 1, T),
            imp("b", "r1", "on", 2, T + 2 * HOUR),
        ];
        let events = [
            clicks("a", &[declared_v2 + B, declared_v2 + B + 1]),
            clicks("b", &[declared_v3 + B, declared_v3 + B + 1]),
        ]
        .concat();
        let r = analyze(&spec_with(flag), &imps, &events);
        let units: Vec<Unit> = r.flags[0].units.iter().map(|u| u.unit).collect();
        assert_eq!(
            units,
            vec![
                Unit::Version {
                    change_number: 1,
                    start_ms: T,
                    end_ms: declared_v2
                },
                Unit::Version {
                    change_number: 2,
                    start_ms: declared_v2,
                    end_ms: declared_v3
                },
                Unit::Version {
                    change_number: 3,
                    start_ms: declared_v3,
                    end_ms: A
                },
            ]
        );
        assert_eq!(total(group(&r, 0, "r1", "on"), "clicks"), 1.0);
        assert_eq!(total(group(&r, 1, "r1", "on"), "clicks"), 1.0);
        assert!(r.flags[0].units[2].groups.is_empty());
    }

    #[test]
    fn version_end_is_capped_at_the_analysis_time() {
        let flag = FlagSpec::new("f", "user", "off").version_start(2, A + HOUR);
        let r = analyze(
            &spec_with(flag),
            [imp("a", "r1", "on", 1, T)],
            clicks("a", &[A + B]),
        );
        assert_eq!(r.flags[0].units[0].unit.end_ms(), A);
        assert_eq!(total(group(&r, 0, "r1", "on"), "clicks"), 1.0);
    }

    #[test]
    fn custom_range_ignores_change_numbers_and_outside_impressions() {
        let (from, to) = (T + HOUR, T + 3 * HOUR);
        let flag = FlagSpec::new("f", "user", "off").range(from, to);
        let first = T + 90 * MIN;
        let t1 = T + 2 * HOUR;
        let imps = [
            imp("a", "r2", "off", 1, T),     // before the range: ignored
            imp("a", "r1", "on", 2, first),  // first in range
            imp("a", "r2", "off", 3, t1),    // one switch, another change number
            imp("a", "r1", "on", 3, to + 1), // after the range: ignored
        ];
        let events = clicks("a", &[first - B, first - B - 1, to + B, to + B + 1]);
        let r = analyze(&spec_with(flag), &imps, &events);
        let units = &r.flags[0].units;
        assert_eq!(units.len(), 1);
        assert_eq!(
            units[0].unit,
            Unit::Range {
                from_ms: from,
                to_ms: to
            }
        );
        assert_eq!(total(group(&r, 0, "r1", "on"), "clicks"), 1.0);
        assert_eq!(total(group(&r, 0, "r2", "off"), "clicks"), 1.0);
        assert_eq!(r.stats.impressions_outside_ranges, 2);
    }

    #[test]
    fn overlapping_ranges_count_in_each() {
        let flag = FlagSpec::new("f", "user", "off")
            .range(T, T + HOUR)
            .range(T + 30 * MIN, T + 2 * HOUR);
        let r = analyze(
            &spec_with(flag),
            [imp("a", "r1", "on", 1, T + 45 * MIN)],
            clicks("a", &[T + 50 * MIN]),
        );
        assert_eq!(total(group(&r, 0, "r1", "on"), "clicks"), 1.0);
        assert_eq!(total(group(&r, 1, "r1", "on"), "clicks"), 1.0);
    }

    #[test]
    fn retention_drops_data_before_the_cutoff_and_keeps_it_at_the_cutoff() {
        let retention = 48 * HOUR;
        let spec = builder()
            .flag(FlagSpec::new("f", "user", "off"))
            .retention_ms(retention)
            .build()
            .expect("valid");
        let cutoff = A - retention;
        let imps = [
            imp("a", "r1", "on", 1, cutoff - 1), // dropped: the switch disappears
            imp("a", "r2", "off", 1, cutoff),
            imp("b", "r1", "on", 1, cutoff - 1), // dropped: b has no impressions
        ];
        let events = [
            clicks("a", &[cutoff - 1, cutoff]),
            clicks("b", &[cutoff + 1]),
        ]
        .concat();
        let r = analyze(&spec, &imps, &events);
        let unit = &r.flags[0].units[0];
        assert_eq!(unit.groups.len(), 1);
        assert_eq!(unit.unit.change_number(), Some(1));
        assert!(matches!(unit.unit, Unit::Version { start_ms, .. } if start_ms == cutoff));
        let g = group(&r, 0, "r2", "off");
        assert_eq!(sample_excluded(g), (1, 0));
        assert_eq!(total(g, "clicks"), 1.0);
        assert_eq!(r.stats.impressions_before_cutoff, 2);
        assert_eq!(r.stats.events_before_cutoff, 1);
    }

    #[test]
    fn traffic_type_must_match_exactly() {
        let spec = builder()
            .flag(FlagSpec::new("f", "user", "off"))
            .flag(FlagSpec::new("g", "account", "off"))
            .build()
            .expect("valid");
        let mut g_imp = imp("a", "r1", "on", 1, T);
        g_imp.flag = "g".into();
        let imps = [imp("a", "r1", "on", 1, T), g_imp];
        let mut upper = ev("a", "click", None, T);
        upper.traffic_type = "User".into();
        let mut account = ev("a", "click", None, T);
        account.traffic_type = "account".into();
        let events = [ev("a", "click", None, T), upper, account.clone(), account];
        let r = analyze(&spec, &imps, &events);
        let f = r.flag("f").expect("f");
        let g = r.flag("g").expect("g");
        let clicks_of = |fr: &FlagReport| {
            total(
                fr.units[0].group(Some("r1"), "on").expect("group"),
                "clicks",
            )
        };
        assert_eq!(clicks_of(f), 1.0);
        assert_eq!(clicks_of(g), 2.0);
        assert_eq!(r.stats.events_attributed, 3);
    }

    #[test]
    fn null_values_in_sum_and_average() {
        let imps = [
            imp("a", "r1", "on", 1, T),
            imp("b", "r1", "on", 1, T),
            imp("c", "r1", "on", 1, T),
        ];
        let events = [
            ev("a", "buy", Some(10.0), T),
            ev("a", "buy", None, T),
            ev("a", "buy", Some(5.0), T),
            ev("b", "buy", None, T),
            ev("b", "buy", Some(f64::NAN), T),
            // c has no events.
        ];
        let r = analyze(&spec(), &imps, &events);
        let g = group(&r, 0, "r1", "on");
        let stat = |name: &str| {
            let m = g.metric(name).expect("metric");
            (m.n, m.mean, m.variance)
        };
        // revenue per key: a 15, b 0, c 0.
        assert_eq!(stat("revenue"), (3, Some(5.0), Some(75.0)));
        // basket: a 7.5; b (only null values) and c (no events) are left out.
        assert_eq!(stat("basket"), (1, Some(7.5), None));
        // bought: a 1, b 1 (null values still count), c 0.
        let (n, mean, variance) = stat("bought");
        assert_eq!((n, mean), (3, Some(2.0 / 3.0)));
        assert!((variance.unwrap_or(0.0) - 1.0 / 3.0).abs() < 1e-15);
        // clicks: no click events at all, every key counts as 0.
        assert_eq!(stat("clicks"), (3, Some(0.0), Some(0.0)));
    }

    #[test]
    fn identical_events_are_not_deduplicated() {
        let r = analyze(
            &spec(),
            [imp("a", "r1", "on", 1, T)],
            clicks("a", &[T, T, T]),
        );
        assert_eq!(total(group(&r, 0, "r1", "on"), "clicks"), 3.0);
    }

    #[test]
    fn labels_disabled_never_switch() {
        let mut none = imp("a", "", "on", 1, T);
        none.label = None;
        let empty = imp("a", "", "off", 1, T + HOUR);
        let mut none2 = imp("a", "", "on", 1, T + 2 * HOUR);
        none2.label = None;
        let r = analyze(&spec(), [none, empty, none2], clicks("a", &[A + B]));
        let unit = &r.flags[0].units[0];
        assert_eq!(unit.groups.len(), 1);
        let g = unit.group(None, "on").expect("group without label");
        assert_eq!(sample_excluded(g), (1, 0));
        assert_eq!(total(g, "clicks"), 1.0);
    }

    #[test]
    fn special_labels_and_control_are_ordinary_pairs() {
        let imps = [
            imp("a", "killed", "control", 1, T),
            imp("a", "default rule", "on", 1, T + HOUR),
        ];
        let r = analyze(&spec(), &imps, clicks("a", &[T]));
        assert_eq!(total(group(&r, 0, "killed", "control"), "clicks"), 1.0);
        assert_eq!(sample_excluded(group(&r, 0, "default rule", "on")), (1, 0));
    }

    #[test]
    fn unknown_flags_and_event_types_are_ignored() {
        let mut other = imp("a", "r1", "on", 1, T);
        other.flag = "other".into();
        let r = analyze(
            &spec(),
            [other, imp("b", "r1", "on", 1, T)],
            [ev("a", "click", None, T), ev("b", "view", None, T)],
        );
        assert_eq!(r.stats.impressions_unknown_flag, 1);
        assert_eq!(r.stats.events, 2);
        assert_eq!(r.stats.events_attributed, 0);
        assert_eq!(sample_excluded(group(&r, 0, "r1", "on")), (1, 0));
    }

    #[test]
    fn impact_matches_hand_computation_and_stays_within_labels() {
        // Treatment revenue {3, 4, 5, 8}, baseline {1, 2, 2, 3, 2}: see stats.rs for the numbers.
        let mut imps = Vec::new();
        let mut events = Vec::new();
        for (i, v) in [3.0, 4.0, 5.0, 8.0].into_iter().enumerate() {
            let key = format!("t{i}");
            imps.push(imp(&key, "r1", "on", 1, T));
            events.push(ev(&key, "buy", Some(v), T));
        }
        for (i, v) in [1.0, 2.0, 2.0, 3.0, 2.0].into_iter().enumerate() {
            let key = format!("b{i}");
            imps.push(imp(&key, "r1", "off", 1, T));
            events.push(ev(&key, "buy", Some(v), T));
        }
        // Under another label only "on": no baseline, no impact.
        imps.push(imp("x", "r2", "on", 1, T));
        let r = analyze(&spec(), &imps, &events);
        let unit = &r.flags[0].units[0];
        let i = unit.impact(Some("r1"), "on", "revenue").expect("impact");
        assert_eq!(i.difference, Some(3.0));
        assert_eq!(i.relative_difference, Some(1.5));
        assert!((i.df.unwrap_or(0.0) - 3.516947432514715).abs() < 1e-9);
        assert!((i.p_value.unwrap_or(0.0) - 0.06418179811500624).abs() < 1e-6);
        assert!(!i.significant);
        assert!(unit.impact(Some("r2"), "on", "revenue").is_none());
        // One row per metric for the single non-baseline group that has a baseline.
        assert_eq!(unit.impacts.len(), 4);
        let clicks = unit.impact(Some("r1"), "on", "clicks").expect("impact");
        assert_eq!(clicks.difference, Some(0.0));
        assert_eq!(clicks.relative_difference, None, "baseline mean 0");
        assert_eq!((clicks.t, clicks.p_value), (None, None), "se = 0");
    }

    /// A small mixed timeline: switches, exclusions, two versions, several metrics.
    fn mixed() -> (Vec<AttributionImpression>, Vec<AttributionEvent>) {
        let mut imps = Vec::new();
        let mut events = Vec::new();
        for k in 0..40 {
            let key = format!("k{k}");
            let t = T + k * MIN;
            let treatment = if k % 3 == 0 { "off" } else { "on" };
            let cn = if k < 25 { 1 } else { 2 };
            imps.push(imp(&key, "r1", treatment, cn, t + 10 * HOUR * (cn - 1)));
            if k % 5 == 0 {
                imps.push(imp(&key, "r2", treatment, cn, t + HOUR));
            }
            if k % 7 == 0 {
                imps.push(imp(&key, "r1", "off", cn, t + 2 * HOUR));
            }
            for e in 0..(k % 4) {
                let when = t + e * 20 * MIN;
                events.push(ev(
                    &key,
                    "buy",
                    (e % 2 == 0).then_some(k as f64 + 0.5),
                    when,
                ));
                events.push(ev(&key, "click", None, when + 11 * HOUR));
            }
        }
        (imps, events)
    }

    fn partial(
        imps: &[AttributionImpression],
        events: &[AttributionEvent],
        starts: &VersionStarts,
    ) -> PartialReport {
        let mut pass = ImpressionPass::new(&spec());
        pass.extend(imps);
        let mut events_pass = pass.finish_with(starts);
        events_pass.extend(events);
        events_pass.finish()
    }

    #[test]
    fn merging_key_halves_equals_the_whole() {
        let (imps, events) = mixed();
        let whole = partial(&imps, &events, &VersionStarts::new());
        let half = |i: usize, key: &str| key[1..].parse::<usize>().map(|n| n % 2) == Ok(i);
        let split = |i: usize| {
            let imps: Vec<_> = imps.iter().filter(|x| half(i, &x.key)).cloned().collect();
            let events: Vec<_> = events.iter().filter(|x| half(i, &x.key)).cloned().collect();
            (imps, events)
        };
        let (ia, ea) = split(0);
        let (ib, eb) = split(1);
        // Agree on version starts first, as a partitioned job would.
        let mut starts = {
            let mut p = ImpressionPass::new(&spec());
            p.extend(&ia);
            p.version_starts()
        };
        let mut other = ImpressionPass::new(&spec());
        other.extend(&ib);
        starts.merge(&other.version_starts());

        let mut merged = partial(&ia, &ea, &starts);
        merged.merge(partial(&ib, &eb, &starts)).expect("same spec");
        assert_eq!(merged, whole);
        assert_eq!(merged.report(), whole.report());

        // Merging the other way round gives the same.
        let mut merged_rev = partial(&ib, &eb, &starts);
        merged_rev
            .merge(partial(&ia, &ea, &starts))
            .expect("same spec");
        assert_eq!(merged_rev, whole);

        // Serialized partials merge the same.
        let json = serde_json::to_string(&partial(&ib, &eb, &starts)).expect("serialize");
        let back: PartialReport = serde_json::from_str(&json).expect("deserialize");
        let mut merged_json = partial(&ia, &ea, &starts);
        merged_json.merge(back).expect("same spec");
        assert_eq!(merged_json, whole);
    }

    #[test]
    fn merging_partitions_cut_differently_fails_and_leaves_self_unchanged() {
        // Partition A only sees version 1, partition B only version 2.
        let a = [imp("a", "r1", "on", 1, T)];
        let b = [imp("b", "r1", "on", 2, T + HOUR)];
        let mut pa = partial(&a, &[], &VersionStarts::new());
        let before = pa.clone();
        let err = pa
            .merge(partial(&b, &[], &VersionStarts::new()))
            .expect_err("cut differently");
        assert!(matches!(err, AnalysisError::Merge(_)), "{err}");
        assert_eq!(pa, before);

        let other_spec = builder()
            .flag(FlagSpec::new("f", "user", "off"))
            .alpha(0.1)
            .build()
            .expect("valid");
        let mut pass = ImpressionPass::new(&other_spec);
        pass.extend(&b);
        let err = pa.merge(pass.finish().finish()).expect_err("other spec");
        assert!(matches!(err, AnalysisError::Merge(_)));
    }

    #[test]
    fn key_unit_state_stays_small() {
        assert!(std::mem::size_of::<KeyUnit>() <= 64);
        assert!(std::mem::size_of::<Node>() <= 80);
        assert!(std::mem::size_of::<Slot>() <= 24);
        assert!(std::mem::size_of::<KeyAccumulator>() <= 16);
    }

    #[test]
    fn report_renders_as_text_tables() {
        let (imps, events) = mixed();
        let r = analyze(&spec(), &imps, &events);
        let text = r.to_string();
        assert!(
            text.contains("== flag f (traffic type user, baseline off)"),
            "{text}"
        );
        assert!(
            text.contains("-- version 1: 2023-11-14 22:13:20Z"),
            "{text}"
        );
        assert!(
            text.contains("label  treatment  sample  excluded  metric"),
            "{text}"
        );
        assert!(text.contains("95% CI"), "{text}");
        for line in text.lines() {
            assert_eq!(line, line.trim_end());
        }
    }

    /// A direct reading of the rules: sort each key's impressions, cut runs, build windows,
    /// scan all events. Returns, per (unit index, label, treatment): sample, excluded, and per
    /// metric (n, sum of values).
    type RefGroups = BTreeMap<(usize, Option<String>, String), (u64, u64, Vec<(u64, f64)>)>;

    fn reference(
        spec: &AnalysisSpec,
        imps: &[AttributionImpression],
        events: &[AttributionEvent],
    ) -> RefGroups {
        let flag = &spec.flags()[0];
        let cutoff = spec.cutoff_ms();
        let now = spec.analysis_time_ms();
        let b = spec.buffer_ms();
        let imps: Vec<&AttributionImpression> = imps
            .iter()
            .filter(|i| i.time_ms >= cutoff && i.flag == flag.name())
            .collect();
        let events: Vec<&AttributionEvent> =
            events.iter().filter(|e| e.time_ms >= cutoff).collect();
        // Units: (selector, end).
        type Selector = Box<dyn Fn(&AttributionImpression) -> bool>;
        let mut units: Vec<(Selector, i64)> = Vec::new();
        if flag.ranges().is_empty() {
            let mut starts: BTreeMap<i64, i64> = BTreeMap::new();
            for i in &imps {
                let e = starts.entry(i.change_number).or_insert(i.time_ms);
                *e = (*e).min(i.time_ms);
            }
            starts.extend(flag.version_starts().iter().map(|(&c, &t)| (c, t)));
            let list: Vec<(i64, i64)> = starts.into_iter().collect();
            for (n, &(cn, _)) in list.iter().enumerate() {
                let end = list.get(n + 1).map_or(now, |&(_, next)| next.min(now));
                units.push((Box::new(move |i| i.change_number == cn), end));
            }
        } else {
            for r in flag.ranges().to_vec() {
                units.push((Box::new(move |i| r.contains(i.time_ms)), r.to_ms));
            }
        }
        let norm = |l: &Option<String>| l.clone().filter(|l| !l.is_empty());
        let mut out = RefGroups::new();
        for (u, (select, end)) in units.iter().enumerate() {
            let mut by_key: BTreeMap<&str, Vec<&AttributionImpression>> = BTreeMap::new();
            for i in imps.iter().filter(|i| select(i)) {
                by_key.entry(i.key.as_str()).or_default().push(i);
            }
            for (key, mut list) in by_key {
                list.sort_by_key(|i| i.time_ms); // stable: ties keep input order
                let mut runs: Vec<(Option<String>, String, i64)> = Vec::new();
                for i in &list {
                    if runs.last().map(|r| &r.0) != Some(&norm(&i.label)) {
                        runs.push((norm(&i.label), i.treatment.clone(), i.time_ms));
                    }
                }
                let mut windows = Vec::new();
                match runs.as_slice() {
                    [(l, t, first)] => windows.push((l.clone(), t.clone(), first - b, end + b)),
                    [(l0, t0, first), (l1, t1, s)] => {
                        windows.push((l0.clone(), t0.clone(), first - b, s + b));
                        windows.push((l1.clone(), t1.clone(), s - b, end + b));
                    }
                    _ => {
                        let pairs: BTreeSet<(Option<String>, String)> = list
                            .iter()
                            .map(|i| (norm(&i.label), i.treatment.clone()))
                            .collect();
                        for (l, t) in pairs {
                            let g = out
                                .entry((u, l, t))
                                .or_insert_with(|| (0, 0, vec![(0, 0.0); spec.metrics().len()]));
                            g.1 += 1;
                        }
                    }
                }
                for (l, t, lo, hi) in windows {
                    let g = out
                        .entry((u, l, t))
                        .or_insert_with(|| (0, 0, vec![(0, 0.0); spec.metrics().len()]));
                    g.0 += 1;
                    for (m, metric) in spec.metrics().iter().enumerate() {
                        let mine: Vec<&&AttributionEvent> = events
                            .iter()
                            .filter(|e| {
                                e.key == key
                                    && e.traffic_type == flag.traffic_type()
                                    && e.event_type == metric.event_type()
                                    && lo <= e.time_ms
                                    && e.time_ms <= hi
                            })
                            .collect();
                        let values: Vec<f64> = mine.iter().filter_map(|e| e.value).collect();
                        let value = match metric.aggregation() {
                            Aggregation::Count => Some(mine.len() as f64),
                            Aggregation::Sum => Some(values.iter().sum()),
                            Aggregation::Average => (!values.is_empty())
                                .then(|| values.iter().sum::<f64>() / values.len() as f64),
                            Aggregation::HasEvent => Some(f64::from(u8::from(!mine.is_empty()))),
                        };
                        if let Some(v) = value {
                            g.2[m].0 += 1;
                            g.2[m].1 += v;
                        }
                    }
                }
            }
        }
        out
    }

    fn flatten(report: &Report) -> RefGroups {
        let mut out = RefGroups::new();
        for (u, unit) in report.flags[0].units.iter().enumerate() {
            for g in &unit.groups {
                let metrics = g
                    .metrics
                    .iter()
                    .map(|m| (m.n, m.mean.unwrap_or(0.0) * m.n as f64))
                    .collect();
                out.insert(
                    (u, g.label.clone(), g.treatment.clone()),
                    (g.sample_size, g.excluded, metrics),
                );
            }
        }
        out
    }

    fn same(a: &RefGroups, b: &RefGroups) -> bool {
        a.len() == b.len()
            && a.iter().zip(b).all(|((ka, va), (kb, vb))| {
                ka == kb
                    && (va.0, va.1) == (vb.0, vb.1)
                    && va
                        .2
                        .iter()
                        .zip(&vb.2)
                        .all(|(x, y)| x.0 == y.0 && (x.1 - y.1).abs() <= 1e-9 * x.1.abs().max(1.0))
            })
    }

    mod against_reference {
        use super::*;
        use proptest::prelude::*;

        fn arb_impression() -> impl Strategy<Value = AttributionImpression> {
            (0..6u8, 0..3u8, 0..2u8, 1..3i64, 0..24i64).prop_map(|(k, l, t, cn, slot)| {
                AttributionImpression {
                    key: format!("k{k}"),
                    flag: "f".into(),
                    treatment: ["on", "off"][t as usize].into(),
                    label: [None, Some("r1".to_owned()), Some("r2".to_owned())][l as usize].clone(),
                    change_number: cn,
                    time_ms: T + slot * 5 * MIN,
                }
            })
        }

        fn arb_event() -> impl Strategy<Value = AttributionEvent> {
            (0..7u8, 0..5u8, proptest::option::of(0..10u8), -8..40i64).prop_map(
                |(k, kind, value, slot)| AttributionEvent {
                    key: format!("k{k}"),
                    traffic_type: if kind == 4 { "account" } else { "user" }.into(),
                    event_type: if kind % 2 == 0 { "click" } else { "buy" }.into(),
                    value: value.map(f64::from),
                    time_ms: T + slot * 5 * MIN,
                },
            )
        }

        proptest! {
            #[test]
            fn passes_match_the_direct_reading(
                imps in proptest::collection::vec(arb_impression(), 0..160),
                events in proptest::collection::vec(arb_event(), 0..160),
                declared in proptest::option::of(0..30i64),
                range in proptest::option::of((0..10i64, 10..30i64)),
                retention_slot in proptest::option::of(0..10i64),
            ) {
                // The analysis time sits right after the timeline so windows end near it.
                let now = T + 30 * 5 * MIN;
                let mut flag = FlagSpec::new("f", "user", "off");
                if let Some(slot) = declared {
                    flag = flag.version_start(2, T + slot * 5 * MIN);
                }
                if let Some((from, to)) = range {
                    flag = flag.range(T + from * 5 * MIN, T + to * 5 * MIN);
                }
                let mut b = AnalysisSpecBuilder::new(now)
                    .flag(flag)
                    .metric(Metric::new("clicks", "click", Aggregation::Count))
                    .metric(Metric::new("revenue", "buy", Aggregation::Sum))
                    .metric(Metric::new("basket", "buy", Aggregation::Average))
                    .metric(Metric::new("bought", "buy", Aggregation::HasEvent));
                if let Some(slot) = retention_slot {
                    b = b.retention_ms(now - (T + slot * 5 * MIN));
                }
                let spec = b.build().expect("valid");
                let expected = reference(&spec, &imps, &events);
                let got = flatten(&analyze(&spec, &imps, &events));
                prop_assert!(same(&got, &expected), "got {got:?}\nexpected {expected:?}");
            }
        }
    }
}
