//! The immutable snapshot of everything evaluation reads: flags, segments and rule-based
//! segments, compiled. Updates build a new snapshot; readers never see half an update.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::definitions::changes::{DefinitionSink, read_definitions};
use crate::definitions::{FeatureFlag, RuleBasedSegment, SegmentChanges, SplitChanges};
use crate::engine::compile::{
    CompiledFlag, CompiledRuleBasedSegment, compile_flag, compile_rule_based_segment,
};
use crate::engine::{FastMap, FastSet};
use crate::error::Error;

/// A segment's members and version.
#[derive(Debug, Default)]
pub(crate) struct Segment {
    pub(crate) keys: FastSet<String>,
    pub(crate) change_number: i64,
}

/// An immutable, compiled set of definitions: the input of evaluation.
///
/// A snapshot is never modified: the `with_*`/`apply_*` methods return a new one that shares
/// everything unchanged with the old one, so an update costs little and can be swapped in
/// atomically (see [`crate::Store`]). Evaluation through [`Snapshot::evaluate`] is pure: no
/// I/O, no locks, no allocation.
///
/// # Examples
/// ```
/// use splitkit::{Attributes, Snapshot};
/// let doc = r#"{"ff":{"d":[{"name":"new_checkout","trafficTypeName":"user","defaultTreatment":"off",
///   "changeNumber":7,"algo":2,"seed":11,"conditions":[{"conditionType":"ROLLOUT",
///   "matcherGroup":{"combiner":"AND","matchers":[{"matcherType":"ALL_KEYS"}]},
///   "partitions":[{"treatment":"on","size":100}],"label":"everyone"}]}],"s":-1,"t":7}}"#;
/// let (snapshot, problems) = Snapshot::from_json(doc, "inline")?;
/// assert!(problems.is_empty());
/// let e = snapshot.evaluate("user-1", None, "new_checkout", &Attributes::new());
/// assert_eq!(e.treatment, "on");
/// assert_eq!(e.label.as_str(), "everyone");
/// assert_eq!(e.change_number, Some(7));
/// # Ok::<(), splitkit::Error>(())
/// ```
#[derive(Debug, Default, Clone)]
pub struct Snapshot {
    pub(crate) flags: FastMap<String, Arc<CompiledFlag>>,
    pub(crate) rule_based: FastMap<String, Arc<CompiledRuleBasedSegment>>,
    pub(crate) segments: FastMap<String, Arc<Segment>>,
    pub(crate) flags_till: i64,
    pub(crate) rule_based_till: i64,
    /// Flag set name to the flags in it, sorted.
    pub(crate) sets: BTreeMap<String, Vec<Arc<str>>>,
}

/// A snapshot being built from definitions given one at a time: what applying a page does.
struct Update {
    next: Snapshot,
    /// Compilation problems, in the order of the definitions.
    problems: Vec<Error>,
}

impl Update {
    fn new(base: Snapshot) -> Update {
        Update {
            next: base,
            problems: Vec::new(),
        }
    }

    /// Adds or replaces an `ACTIVE` flag, removes an `ARCHIVED` one.
    fn add_flag(&mut self, f: &FeatureFlag) {
        if f.status.as_deref() == Some("ARCHIVED") {
            self.next.flags.remove(&f.name);
            return;
        }
        let (compiled, p) = compile_flag(f);
        self.problems.extend(p);
        self.next.flags.insert(f.name.clone(), Arc::new(compiled));
    }

    /// Adds or replaces an `ACTIVE` rule-based segment, removes an `ARCHIVED` one.
    fn add_rule_based_segment(&mut self, r: &RuleBasedSegment) {
        if r.status.as_deref() == Some("ARCHIVED") {
            self.next.rule_based.remove(&r.name);
            return;
        }
        let (compiled, p) = compile_rule_based_segment(r);
        self.problems.extend(p);
        self.next
            .rule_based
            .insert(r.name.clone(), Arc::new(compiled));
    }

    /// The snapshot, with its change numbers advanced to the page's.
    fn finish(mut self, flags_till: i64, rule_based_till: i64) -> (Snapshot, Vec<Error>) {
        self.next.flags_till = self.next.flags_till.max(flags_till);
        self.next.rule_based_till = self.next.rule_based_till.max(rule_based_till);
        self.next.reindex_sets();
        (self.next, self.problems)
    }
}

impl DefinitionSink for Update {
    fn flag(&mut self, flag: FeatureFlag) {
        self.add_flag(&flag);
    }

    fn rule_based_segment(&mut self, segment: RuleBasedSegment) {
        self.add_rule_based_segment(&segment);
    }
}

/// A read-only view of one loaded flag, for inspection (the manager API).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct FlagView {
    /// Flag name.
    pub name: String,
    /// Traffic type.
    pub traffic_type: String,
    /// Kill switch.
    pub killed: bool,
    /// Every treatment the definition names (partitions and default), in first-seen order.
    pub treatments: Vec<String>,
    /// Version of the definition.
    pub change_number: i64,
    /// Treatment to configuration (JSON text).
    pub configs: BTreeMap<String, String>,
    /// Default treatment.
    pub default_treatment: String,
    /// Flag sets.
    pub sets: Vec<String>,
    /// Whether impressions of this flag are only counted.
    pub impressions_disabled: bool,
    /// Names of the prerequisite flags.
    pub prerequisites: Vec<String>,
}

impl Snapshot {
    /// An empty snapshot: every flag is `definition not found`.
    pub fn new() -> Snapshot {
        Snapshot {
            flags_till: -1,
            rule_based_till: -1,
            ..Snapshot::default()
        }
    }

    /// Parses and compiles a splitChanges document (either form) into a new snapshot.
    ///
    /// Broken definitions are skipped and returned as problems, each naming the flag and the
    /// field; the rest loads.
    ///
    /// Each definition is compiled as soon as it is read and its parsed form dropped, so
    /// loading never holds the whole document in parsed form (as
    /// [`SplitChanges::parse`] followed by [`Snapshot::apply_changes`] does): the peak memory
    /// is about the text plus the compiled snapshot.
    ///
    /// # Errors
    /// [`Error::Parse`] when `text` is not a splitChanges document at all.
    pub fn from_json(text: &str, origin: &str) -> Result<(Snapshot, Vec<Error>), Error> {
        let mut problems = Vec::new();
        let mut update = Update::new(Snapshot::new());
        let numbers = read_definitions(text, origin, &mut problems, &mut update)?;
        let (snapshot, more) = update.finish(numbers.flags.1, numbers.rule_based.1);
        problems.extend(more);
        Ok((snapshot, problems))
    }

    /// A new snapshot with a splitChanges page applied: `ACTIVE` definitions are added or
    /// replaced, `ARCHIVED` ones removed, change numbers advanced. Segments are kept.
    pub fn apply_changes(&self, changes: &SplitChanges) -> (Snapshot, Vec<Error>) {
        let mut update = Update::new(self.clone());
        update.next.flags.reserve(changes.flags.d.len());
        for f in &changes.flags.d {
            update.add_flag(f);
        }
        for r in &changes.rule_based_segments.d {
            update.add_rule_based_segment(r);
        }
        update.finish(changes.flags.t, changes.rule_based_segments.t)
    }

    /// A new snapshot with flag `name` killed (every key gets `default_treatment`) at
    /// `change_number`; `None` when there is no such flag or it is as new already.
    pub(crate) fn kill(
        &self,
        name: &str,
        default_treatment: &str,
        change_number: i64,
    ) -> Option<Snapshot> {
        let flag = self.flags.get(name)?;
        if flag.change_number >= change_number {
            return None;
        }
        let mut next = self.clone();
        next.flags.insert(
            name.to_string(),
            Arc::new(flag.killed(default_treatment, change_number)),
        );
        Some(next)
    }

    /// A new snapshot with the flags and rule-based segments of `changes` only (segments
    /// kept): what a reloaded localhost file does.
    pub fn replace_definitions(&self, changes: &SplitChanges) -> (Snapshot, Vec<Error>) {
        let base = Snapshot {
            segments: self.segments.clone(),
            ..Snapshot::new()
        };
        base.apply_changes(changes)
    }

    /// A new snapshot with a segmentChanges page applied to its segment.
    pub fn apply_segment_changes(&self, changes: &SegmentChanges) -> Snapshot {
        let mut next = self.clone();
        let mut keys = next
            .segments
            .get(&changes.name)
            .map(|s| s.keys.clone())
            .unwrap_or_default();
        for k in &changes.removed {
            keys.remove(k);
        }
        keys.extend(changes.added.iter().cloned());
        let change_number = changes.till.max(
            next.segments
                .get(&changes.name)
                .map_or(-1, |s| s.change_number),
        );
        next.segments.insert(
            changes.name.clone(),
            Arc::new(Segment {
                keys,
                change_number,
            }),
        );
        next
    }

    /// A new snapshot where segment `name` has exactly `keys`.
    pub fn with_segment<I, S>(&self, name: &str, keys: I) -> Snapshot
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut next = self.clone();
        next.segments.insert(
            name.to_string(),
            Arc::new(Segment {
                keys: keys.into_iter().map(Into::into).collect(),
                change_number: -1,
            }),
        );
        next
    }

    /// A new snapshot where segment `name` has exactly `keys`, at `change_number`.
    #[cfg(feature = "redis")]
    pub(crate) fn with_segment_at(
        &self,
        name: &str,
        keys: FastSet<String>,
        change_number: i64,
    ) -> Snapshot {
        let mut next = self.clone();
        next.segments.insert(
            name.to_string(),
            Arc::new(Segment {
                keys,
                change_number,
            }),
        );
        next
    }

    fn reindex_sets(&mut self) {
        let mut sets: BTreeMap<String, Vec<Arc<str>>> = BTreeMap::new();
        for f in self.flags.values() {
            for s in &f.sets {
                sets.entry(s.clone()).or_default().push(f.name.clone());
            }
        }
        for v in sets.values_mut() {
            v.sort();
        }
        self.sets = sets;
    }

    /// Names of the loaded flags, sorted.
    pub fn flag_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.flags.keys().cloned().collect();
        names.sort();
        names
    }

    /// A view of one flag, or `None` when it is not loaded.
    pub fn flag(&self, name: &str) -> Option<FlagView> {
        let f = self.flags.get(name)?;
        Some(FlagView {
            name: f.name.to_string(),
            traffic_type: f.traffic_type.to_string(),
            killed: f.killed,
            treatments: f.treatments.clone(),
            change_number: f.change_number,
            configs: f
                .configurations
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            default_treatment: f.default_treatment.to_string(),
            sets: f.sets.clone(),
            impressions_disabled: f.impressions_disabled,
            prerequisites: f.prerequisites.iter().map(|(n, _)| n.to_string()).collect(),
        })
    }

    /// Views of every loaded flag, sorted by name.
    pub fn flags(&self) -> Vec<FlagView> {
        self.flag_names()
            .iter()
            .filter_map(|n| self.flag(n))
            .collect()
    }

    /// Number of loaded flags.
    pub fn len(&self) -> usize {
        self.flags.len()
    }

    /// True when no flag is loaded.
    pub fn is_empty(&self) -> bool {
        self.flags.is_empty()
    }

    /// Names of the flags in a flag set, sorted (empty for an unknown set).
    pub fn flags_in_set(&self, set: &str) -> &[Arc<str>] {
        self.sets.get(set).map(Vec::as_slice).unwrap_or(&[])
    }

    /// True when some loaded flag has this traffic type.
    pub fn has_traffic_type(&self, traffic_type: &str) -> bool {
        self.flags
            .values()
            .any(|f| &*f.traffic_type == traffic_type)
    }

    /// The flags' change number (`-1` before anything was loaded).
    pub fn change_number(&self) -> i64 {
        self.flags_till
    }

    /// The rule-based segments' change number (`-1` before anything was loaded).
    pub fn rule_based_change_number(&self) -> i64 {
        self.rule_based_till
    }

    /// A segment's change number, or `None` when it has not been loaded.
    pub fn segment_change_number(&self, name: &str) -> Option<i64> {
        self.segments.get(name).map(|s| s.change_number)
    }

    /// Names of the standard segments that loaded flags and rule-based segments use, sorted.
    pub fn referenced_segments(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .flags
            .values()
            .flat_map(|f| f.segments.iter().cloned())
            .chain(
                self.rule_based
                    .values()
                    .flat_map(|r| r.segments.iter().cloned()),
            )
            .collect();
        names.sort();
        names.dedup();
        names
    }

    /// Whether segment `name` contains `key` (false for an unknown segment).
    #[inline]
    pub(crate) fn in_segment(&self, name: &str, key: &str) -> bool {
        self.segments
            .get(name)
            .is_some_and(|s| s.keys.contains(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_local_kill_answers_the_new_default_for_every_key() {
        let (s, _) = Snapshot::from_json(
            r#"{"ff":{"d":[{"name":"f","changeNumber":5,"defaultTreatment":"off","configurations":{"safe":"{}"},
              "conditions":[{"conditionType":"ROLLOUT","matcherGroup":{"combiner":"AND","matchers":[{"matcherType":"ALL_KEYS"}]},
              "partitions":[{"treatment":"on","size":100}],"label":"all"}]}],"s":-1,"t":5}}"#,
            "t",
        )
        .unwrap();
        let a = crate::Attributes::new();
        assert_eq!(s.evaluate("k", None, "f", &a).treatment, "on");
        assert!(s.kill("f", "safe", 5).is_none(), "not newer");
        assert!(s.kill("nope", "safe", 9).is_none(), "no such flag");
        let k = s.kill("f", "safe", 6).unwrap();
        let e = k.evaluate("k", None, "f", &a);
        assert_eq!(
            (e.treatment, e.label.as_str(), e.config, e.change_number),
            ("safe", "killed", Some("{}"), Some(6))
        );
        assert!(
            k.flag("f")
                .is_some_and(|v| v.killed && v.default_treatment == "safe")
        );
    }
}
