//! The evaluation algorithm: a flag, a key and attributes to a treatment and a label.

use std::cell::{Cell, RefCell};
use std::cmp::Ordering;

use super::attribute_ref::{AttributesRef, Lookup, Source};
#[cfg(test)]
use super::attributes::Attributes;
use super::bucket::bucket;
use super::coerce::{Items, Text, View, set_item, set_items, to_bool, to_number, to_str};
use super::compile::{CompiledFlag, CompiledMatcher, ExcludedKind, MatcherKind, StrSet, Truncate};
use super::labels::Label;
use super::semver::Semver;
use crate::intern::{Name, static_name};
use crate::storage::Snapshot;

/// The treatment returned when no real treatment can be given.
pub const CONTROL: &str = "control";

/// [`CONTROL`], interned.
pub(crate) static CONTROL_NAME: Name = static_name!("control");

/// How deep flag dependencies (`IN_SPLIT_TREATMENT`, prerequisites, nested rule-based
/// segments) may go before the evaluation is abandoned with label `exception`.
pub const MAX_DEPTH: usize = 32;

static KILLED: Label = Label::Killed;
static NO_RULE_MATCHED: Label = Label::NoRuleMatched;
static DEFINITION_NOT_FOUND: Label = Label::DefinitionNotFound;
static EXCEPTION: Label = Label::Exception;
static NOT_IN_SPLIT: Label = Label::NotInSplit;
static PREREQUISITES_NOT_MET: Label = Label::PrerequisitesNotMet;

/// The result of one evaluation, borrowing from the [`Snapshot`] it was computed on.
///
/// Use [`Evaluation::to_owned`] to keep it beyond the snapshot's lifetime.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Evaluation<'a> {
    /// The treatment.
    pub treatment: &'a str,
    /// Why this treatment.
    pub label: &'a Label,
    /// The treatment's configuration (a JSON text), if the flag defines one.
    pub config: Option<&'a str>,
    /// The flag's change number; `None` when the flag was not found.
    pub change_number: Option<i64>,
    /// The flag's traffic type; `None` when the flag was not found.
    pub traffic_type: Option<&'a str>,
    /// Whether the flag's impressions are only counted (`impressionsDisabled`).
    pub impressions_disabled: bool,
    /// Whether the targeting rule that decided shares keys out among treatments by bucket
    /// (a percentage split such as 50/50, where the key's hash chose the treatment), rather
    /// than giving every key it matches the same treatment. False for every label that is
    /// not a rule's (`killed`, `no rule matched`, `not in split`...). OpenFeature's `SPLIT`
    /// reason is this.
    pub percentage_split: bool,
    /// The flag, treatment and label as interned names, for the impression.
    pub(crate) names: Names,
}

/// The interned names of an evaluation's flag, treatment and label, where they were
/// interned: a queued impression points to them instead of copying their bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Names {
    pub(crate) flag: Option<Name>,
    pub(crate) treatment: Option<Name>,
    pub(crate) label: Option<Name>,
}

/// An owned [`Evaluation`].
#[derive(Debug, Clone, PartialEq)]
pub struct EvaluationResult {
    /// The treatment.
    pub treatment: String,
    /// Why this treatment.
    pub label: Label,
    /// The treatment's configuration (a JSON text), if any.
    pub config: Option<String>,
    /// The flag's change number; `None` when the flag was not found.
    pub change_number: Option<i64>,
    /// The flag's traffic type; `None` when the flag was not found.
    pub traffic_type: Option<String>,
    /// Whether the flag's impressions are only counted.
    pub impressions_disabled: bool,
    /// Whether the deciding rule split keys by bucket ([`Evaluation::percentage_split`]).
    pub percentage_split: bool,
}

impl Evaluation<'_> {
    /// Copies the evaluation out of the snapshot.
    pub fn to_owned(&self) -> EvaluationResult {
        EvaluationResult {
            treatment: self.treatment.to_string(),
            label: self.label.clone(),
            config: self.config.map(str::to_string),
            change_number: self.change_number,
            traffic_type: self.traffic_type.map(str::to_string),
            impressions_disabled: self.impressions_disabled,
            percentage_split: self.percentage_split,
        }
    }

    fn control(label: &'static Label) -> Evaluation<'static> {
        Evaluation {
            treatment: CONTROL,
            label,
            config: None,
            change_number: None,
            traffic_type: None,
            impressions_disabled: false,
            percentage_split: false,
            names: Names {
                flag: None,
                treatment: Some(CONTROL_NAME),
                label: label.static_name(),
            },
        }
    }
}

/// What decided an evaluation of a flag.
#[derive(Clone, Copy)]
enum Decision<'a> {
    /// The default treatment, for this reason (killed, no rule matched...).
    Default(&'static Label),
    /// A rule matched; its partition for the key's bucket (`None`: the partitions do not
    /// reach the bucket, which gives `control` with the rule's label).
    Rule(
        &'a super::compile::CompiledCondition,
        Option<&'a super::compile::CompiledPartition>,
    ),
}

impl<'a> Decision<'a> {
    /// The treatment decided for `f`.
    #[inline]
    fn treatment(self, f: &'a CompiledFlag) -> &'a str {
        match self {
            Decision::Default(_) => &f.default_treatment,
            Decision::Rule(_, Some(p)) => &p.treatment,
            Decision::Rule(_, None) => CONTROL,
        }
    }

    /// The evaluation of `f` this decides. Configurations were resolved beside each
    /// treatment when the flag was compiled.
    #[inline]
    fn evaluation(self, f: &'a CompiledFlag) -> Evaluation<'a> {
        let (treatment, treatment_name, config, label, label_name, percentage_split) = match self {
            Decision::Default(label) => (
                &*f.default_treatment,
                f.default_treatment_name,
                &f.default_config,
                label,
                label.static_name(),
                false,
            ),
            Decision::Rule(c, Some(p)) => (
                &*p.treatment,
                p.treatment_name,
                &p.config,
                &c.label,
                c.label_name,
                c.percentage_split,
            ),
            Decision::Rule(c, None) => (
                CONTROL,
                Some(CONTROL_NAME),
                &f.control_config,
                &c.label,
                c.label_name,
                c.percentage_split,
            ),
        };
        Evaluation {
            treatment,
            label,
            config: config.as_deref(),
            change_number: Some(f.change_number),
            traffic_type: Some(&f.traffic_type),
            impressions_disabled: f.impressions_disabled,
            percentage_split,
            names: Names {
                flag: f.interned_name,
                treatment: treatment_name,
                label: label_name,
            },
        }
    }
}

/// The dependency chain went deeper than [`MAX_DEPTH`] (a cycle, most likely).
#[derive(Debug)]
struct TooDeep;

/// How many dependency results one evaluation remembers.
const MEMO_SLOTS: usize = 16;

/// A flag a dependency (`IN_SPLIT_TREATMENT` or a prerequisite) evaluated, with its
/// treatment and how many levels below its own depth its evaluation went.
#[derive(Clone, Copy)]
struct MemoEntry<'s> {
    flag: &'s CompiledFlag,
    treatment: &'s str,
    height: usize,
}

/// The dependencies evaluated so far in one evaluation (the most recent [`MEMO_SLOTS`]), so
/// that a flag reached again by another path is not evaluated again: without it, a chain of
/// flags each depending twice on the next costs 2^n evaluations. Within one evaluation a
/// flag always gives the same treatment (same key, attributes and snapshot); only whether
/// [`MAX_DEPTH`] is exceeded depends on where it is reached, which `height` answers.
struct Memo<'s> {
    entries: [Option<MemoEntry<'s>>; MEMO_SLOTS],
    /// The slot the next entry goes to (the oldest is replaced).
    next: usize,
}

struct Ctx<'k, 's, A> {
    key: &'k str,
    bucketing_key: &'k str,
    /// Generic, so that each kind of attributes has its own copy of the evaluation, without
    /// a branch on the kind at each lookup.
    attributes: A,
    /// The deepest depth checked against [`MAX_DEPTH`] so far (in the current dependency).
    deepest: Cell<usize>,
    /// Created on the first dependency, so that evaluations without any pay nothing for it.
    memo: RefCell<Option<Memo<'s>>>,
    /// False only in tests, to compare with and without the memo.
    use_memo: bool,
    /// Flags evaluated (tests only).
    #[cfg(test)]
    evaluations: Cell<usize>,
}

impl<'k, 's, A: Lookup<'k>> Ctx<'k, 's, A> {
    fn new(key: &'k str, bucketing_key: Option<&'k str>, attributes: A) -> Self {
        Ctx {
            key,
            bucketing_key: bucketing_key.unwrap_or(key),
            attributes,
            deepest: Cell::new(0),
            memo: RefCell::new(None),
            use_memo: true,
            #[cfg(test)]
            evaluations: Cell::new(0),
        }
    }

    /// Checks `depth` against [`MAX_DEPTH`] and notes it.
    fn enter(&self, depth: usize) -> Result<(), TooDeep> {
        if depth > MAX_DEPTH {
            return Err(TooDeep);
        }
        if depth > self.deepest.get() {
            self.deepest.set(depth);
        }
        Ok(())
    }

    fn recall(&self, flag: &CompiledFlag) -> Option<MemoEntry<'s>> {
        let memo = self.memo.borrow();
        let entries = &memo.as_ref()?.entries;
        entries
            .iter()
            .flatten()
            .find(|e| std::ptr::eq(e.flag, flag))
            .copied()
    }

    fn remember(&self, entry: MemoEntry<'s>) {
        if !self.use_memo {
            return;
        }
        let mut memo = self.memo.borrow_mut();
        let memo = memo.get_or_insert_with(|| Memo {
            entries: [None; MEMO_SLOTS],
            next: 0,
        });
        if let Some(slot) = memo.entries.get_mut(memo.next) {
            *slot = Some(entry);
        }
        memo.next = (memo.next + 1) % MEMO_SLOTS;
    }
}

impl Snapshot {
    /// Evaluates `flag` for a key.
    ///
    /// `bucketing_key` defaults to `key`. This is the pure engine: no impression is recorded,
    /// nothing is logged, nothing is allocated. A missing flag gives `control` with label
    /// `definition not found`; a dependency cycle gives `control` with label `exception`.
    ///
    /// `attributes` is `None`, an [`Attributes`](crate::Attributes) (`&attributes` or
    /// `Some(&attributes)`) or borrowed pairs such as `&[("plan", "pro".into())]`: see
    /// [`AttributesRef`].
    #[inline(always)]
    pub fn evaluate<'a, 'k>(
        &'a self,
        key: &str,
        bucketing_key: Option<&str>,
        flag: &str,
        attributes: impl Into<AttributesRef<'k>>,
    ) -> Evaluation<'a> {
        self.evaluate_ref(key, bucketing_key, flag, attributes.into())
    }

    /// [`Snapshot::evaluate`], its attributes converted: the evaluation of their kind.
    #[inline(always)]
    pub(crate) fn evaluate_ref<'a>(
        &'a self,
        key: &str,
        bucketing_key: Option<&str>,
        flag: &str,
        attributes: AttributesRef<'_>,
    ) -> Evaluation<'a> {
        match attributes.source {
            Source::Owned(a) => self.evaluate_in(&Ctx::new(key, bucketing_key, a), flag),
            Source::Borrowed(pairs) => self.evaluate_in(&Ctx::new(key, bucketing_key, pairs), flag),
        }
    }

    /// One evaluation, for one kind of attributes. A call of its own, not in line: with both
    /// kinds in line in [`Snapshot::evaluate_ref`], an evaluation cost 513 instructions; as
    /// a call, 492 (callgrind, `benches/instr.sh engine`).
    #[inline(never)]
    fn evaluate_in<'a, 'k, A: Lookup<'k>>(
        &'a self,
        ctx: &Ctx<'k, 'a, A>,
        flag: &str,
    ) -> Evaluation<'a> {
        match self.flags.get(flag) {
            None => Evaluation::control(&DEFINITION_NOT_FOUND),
            Some(f) => match self.eval_flag(f, ctx, 0) {
                Ok(d) => d.evaluation(f),
                Err(TooDeep) => {
                    let control = Evaluation::control(&EXCEPTION);
                    Evaluation {
                        change_number: Some(f.change_number),
                        traffic_type: Some(&f.traffic_type),
                        impressions_disabled: f.impressions_disabled,
                        names: Names {
                            flag: f.interned_name,
                            ..control.names
                        },
                        ..control
                    }
                }
            },
        }
    }

    /// The treatment of a flag a dependency names, evaluated at `depth`.
    fn eval_by_name<'a, 'k, A: Lookup<'k>>(
        &'a self,
        flag: &str,
        ctx: &Ctx<'k, 'a, A>,
        depth: usize,
    ) -> Result<&'a str, TooDeep> {
        let Some(f) = self.flags.get(flag) else {
            return Ok(CONTROL);
        };
        if let Some(seen) = ctx.recall(f) {
            // Evaluating it again would go the same way, down to `height` levels below
            // `depth`, and fail there if that is too deep.
            ctx.enter(depth + seen.height)?;
            return Ok(seen.treatment);
        }
        let outer = ctx.deepest.replace(depth);
        let treatment = self.eval_flag(f, ctx, depth)?.treatment(f);
        let deepest = ctx.deepest.get();
        ctx.deepest.set(outer.max(deepest));
        ctx.remember(MemoEntry {
            flag: f,
            treatment,
            height: deepest - depth,
        });
        Ok(treatment)
    }

    /// What decides `f` for the context: a rule (and the partition its bucket fell in) or
    /// the default treatment with a label. Small, so that a dependency, which needs only the
    /// treatment, builds no [`Evaluation`]. Always in line: as a call of its own, its result
    /// went through memory and its registers were saved and restored, 67 instructions of an
    /// evaluation's 565 (callgrind, `benches/instr.sh engine`).
    #[inline(always)]
    fn eval_flag<'a, 'k, A: Lookup<'k>>(
        &'a self,
        f: &'a CompiledFlag,
        ctx: &Ctx<'k, 'a, A>,
        depth: usize,
    ) -> Result<Decision<'a>, TooDeep> {
        ctx.enter(depth)?;
        #[cfg(test)]
        ctx.evaluations.set(ctx.evaluations.get() + 1);
        if f.killed {
            return Ok(Decision::Default(&KILLED));
        }
        for (name, treatments) in &f.prerequisites {
            let t = self.eval_by_name(name, ctx, depth + 1)?;
            if !treatments.iter().any(|x| &**x == t) {
                return Ok(Decision::Default(&PREREQUISITES_NOT_MET));
            }
        }
        let mut in_rollout = false;
        for c in &f.conditions {
            if c.rollout && !in_rollout {
                if f.traffic_allocation < 100
                    && i64::from(bucket(ctx.bucketing_key, f.traffic_allocation_seed, f.algo))
                        > f.traffic_allocation
                {
                    return Ok(Decision::Default(&NOT_IN_SPLIT));
                }
                in_rollout = true;
            }
            if !self.all_match(&c.matchers, ctx, depth)? {
                continue;
            }
            // The key is hashed only when the bucket decides.
            let landed = match c.landing.every() {
                Some(every) => every,
                None => c.landing.at(bucket(ctx.bucketing_key, f.seed, f.algo)),
            };
            let partition = landed.and_then(|i| c.partitions.get(i));
            return Ok(Decision::Rule(c, partition));
        }
        Ok(Decision::Default(&NO_RULE_MATCHED))
    }

    #[inline(always)]
    fn all_match<'a, 'k, A: Lookup<'k>>(
        &'a self,
        matchers: &[CompiledMatcher],
        ctx: &Ctx<'k, 'a, A>,
        depth: usize,
    ) -> Result<bool, TooDeep> {
        for m in matchers {
            if !self.matches(m, ctx, depth)? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Whether `m` matches. The most common matchers (a list of keys or of strings, all
    /// keys) read the key or a string attribute directly; the rest, and attributes of other
    /// types, go through [`Snapshot::matches_any`].
    #[inline(always)]
    fn matches<'a, 'k, A: Lookup<'k>>(
        &'a self,
        m: &CompiledMatcher,
        ctx: &Ctx<'k, 'a, A>,
        depth: usize,
    ) -> Result<bool, TooDeep> {
        let hit = match (&m.kind, &m.attribute) {
            (MatcherKind::AllKeys, None) => !ctx.key.is_empty(),
            (MatcherKind::Whitelist(set), None) => !ctx.key.is_empty() && set.contains(ctx.key),
            (MatcherKind::Whitelist(set), Some(attr)) => match ctx.attributes.get_key(attr) {
                Some(View::Str(s)) => !s.is_empty() && set.contains(s),
                // A missing attribute matches nothing (negated: everything).
                None => false,
                Some(_) => return self.matches_any(m, ctx, depth),
            },
            _ => return self.matches_any(m, ctx, depth),
        };
        Ok(hit != m.negate)
    }

    /// Whether `m` matches, for any matcher and any input.
    fn matches_any<'a, 'k, A: Lookup<'k>>(
        &'a self,
        m: &CompiledMatcher,
        ctx: &Ctx<'k, 'a, A>,
        depth: usize,
    ) -> Result<bool, TooDeep> {
        let raw = match (&m.kind, &m.attribute) {
            // These look at the key (and the whole context) whatever the selector says.
            (MatcherKind::Dependency { flag, treatments }, _) => {
                let t = self.eval_by_name(flag, ctx, depth + 1)?;
                return Ok(treatments.iter().any(|x| &**x == t) != m.negate);
            }
            (MatcherKind::InRuleBasedSegment(name), _) => {
                return Ok(self.in_rule_based_segment(name, ctx, depth + 1)? != m.negate);
            }
            (_, None) => Input::Key(ctx.key),
            (_, Some(attr)) => match ctx.attributes.get_key(attr) {
                Some(v) => Input::Attr(v),
                None => return Ok(m.negate),
            },
        };
        let result = match &m.kind {
            MatcherKind::InSegment(name) => raw
                .string()
                .is_some_and(|value| self.in_segment(name, &value)),
            kind => matcher_result(kind, raw).unwrap_or(false),
        };
        Ok(result != m.negate)
    }

    fn in_rule_based_segment<'a, 'k, A: Lookup<'k>>(
        &'a self,
        name: &str,
        ctx: &Ctx<'k, 'a, A>,
        depth: usize,
    ) -> Result<bool, TooDeep> {
        ctx.enter(depth)?;
        let Some(r) = self.rule_based.get(name) else {
            return Ok(false);
        };
        if r.excluded_keys.contains(ctx.key) {
            return Ok(false);
        }
        for (seg, kind) in &r.excluded_segments {
            let excluded = match kind {
                ExcludedKind::Standard => self.in_segment(seg, ctx.key),
                ExcludedKind::RuleBased => self.in_rule_based_segment(seg, ctx, depth + 1)?,
                ExcludedKind::Large => false,
            };
            if excluded {
                return Ok(false);
            }
        }
        for matchers in &r.conditions {
            if self.all_match(matchers, ctx, depth)? {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

/// The value a matcher looks at, before coercion.
enum Input<'a> {
    Key(&'a str),
    Attr(View<'a>),
}

impl<'a> Input<'a> {
    #[inline(always)]
    fn string(&self) -> Option<Text<'a>> {
        match *self {
            Input::Key(k) => (!k.is_empty()).then_some(Text::Borrowed(k)),
            // The common case, without the other coercions.
            Input::Attr(View::Str(s)) => (!s.is_empty()).then_some(Text::Borrowed(s)),
            Input::Attr(v) => to_str(v),
        }
    }

    fn number(&self, t: Truncate) -> Option<f64> {
        let n = match self {
            Input::Key(k) => {
                let n = super::coerce::js_string_to_number(k);
                if n.is_nan() {
                    return None;
                }
                n
            }
            Input::Attr(v) => to_number(*v)?,
        };
        t.apply(n)
    }

    /// The items of a set (the strings are [`set_item`] of each).
    fn set(&self) -> Option<Items<'a>> {
        match self {
            Input::Key(_) => None,
            Input::Attr(v) => set_items(*v),
        }
    }

    fn boolean(&self) -> Option<bool> {
        match self {
            Input::Key(k) if k.eq_ignore_ascii_case("true") => Some(true),
            Input::Key(k) if k.eq_ignore_ascii_case("false") => Some(false),
            Input::Key(_) => None,
            Input::Attr(v) => to_bool(*v),
        }
    }
}

/// Whether some item of a set reads as `s`.
fn set_has(items: Items<'_>, s: &str) -> bool {
    items.iter().any(|i| *set_item(i) == *s)
}

/// Whether every item of a set is in `rule`.
fn set_within(items: Items<'_>, rule: &StrSet) -> bool {
    items.iter().all(|i| rule.contains(&set_item(i)))
}

/// The matcher's result before negation; `None` when the value cannot be read as the type
/// the matcher needs (which counts as no match).
#[inline]
fn matcher_result(kind: &MatcherKind, input: Input<'_>) -> Option<bool> {
    Some(match kind {
        MatcherKind::AllKeys => {
            input.string()?;
            true
        }
        MatcherKind::Whitelist(set) => set.contains(&input.string()?),
        MatcherKind::EqualTo(v, t) => input.number(*t)? == *v,
        MatcherKind::GreaterOrEqual(v, t) => input.number(*t)? >= *v,
        MatcherKind::LessOrEqual(v, t) => input.number(*t)? <= *v,
        MatcherKind::Between(s, e, t) => {
            let n = input.number(*t)?;
            *s <= n && n <= *e
        }
        // The attribute's distinct items and the rule's are the same set.
        MatcherKind::EqualToSet(rule) => {
            let items = input.set()?;
            set_within(items, rule) && rule.all(|r| set_has(items, r))
        }
        MatcherKind::ContainsAnyOfSet(rule) => {
            input.set()?.iter().any(|i| rule.contains(&set_item(i)))
        }
        MatcherKind::ContainsAllOfSet(rule) => {
            let items = input.set()?;
            rule.all(|r| set_has(items, r))
        }
        MatcherKind::PartOfSet(rule) => set_within(input.set()?, rule),
        MatcherKind::StartsWith(list) => {
            let s = input.string()?;
            list.iter().any(|p| s.starts_with(&**p))
        }
        MatcherKind::EndsWith(list) => {
            let s = input.string()?;
            list.iter().any(|p| s.ends_with(&**p))
        }
        MatcherKind::ContainsString(list) => {
            let s = input.string()?;
            list.iter().any(|p| s.contains(&**p))
        }
        MatcherKind::MatchesString(re) => re.as_ref()?.is_match(&input.string()?),
        MatcherKind::EqualToBoolean(b) => input.boolean()? == *b,
        MatcherKind::SemverEqual(rule) => {
            let rule = rule.as_ref()?.as_semver();
            let text = input.string()?;
            rule.eq_normalized(&Semver::parse(&text)?)
        }
        MatcherKind::SemverGreaterOrEqual(rule) => {
            let text = input.string()?;
            let v = Semver::parse(&text)?;
            v.compare(&rule.as_ref()?.as_semver()) != Ordering::Less
        }
        MatcherKind::SemverLessOrEqual(rule) => {
            let text = input.string()?;
            let v = Semver::parse(&text)?;
            v.compare(&rule.as_ref()?.as_semver()) != Ordering::Greater
        }
        MatcherKind::SemverBetween(bounds) => {
            let (start, end) = bounds.as_ref()?;
            let text = input.string()?;
            let v = Semver::parse(&text)?;
            start.as_semver().compare(&v) != Ordering::Greater
                && end.as_semver().compare(&v) != Ordering::Less
        }
        MatcherKind::SemverInList(list) => {
            let list = list.as_ref()?;
            let text = input.string()?;
            let v = Semver::parse(&text)?;
            list.iter().any(|r| r.as_semver().eq_normalized(&v))
        }
        // Resolved against the snapshot by the caller.
        MatcherKind::InSegment(_)
        | MatcherKind::Dependency { .. }
        | MatcherKind::InRuleBasedSegment(_) => return None,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    /// The evaluation with and without the memo, and how many flags each evaluated.
    fn both<'a>(
        s: &'a Snapshot,
        key: &str,
        flag: &str,
    ) -> ((Evaluation<'a>, usize), (Evaluation<'a>, usize)) {
        let attrs = Attributes::new();
        let cached = Ctx::new(key, None, &attrs);
        let e = s.evaluate_in(&cached, flag);
        let mut uncached = Ctx::new(key, None, &attrs);
        uncached.use_memo = false;
        let u = s.evaluate_in(&uncached, flag);
        (
            (e, cached.evaluations.get()),
            (u, uncached.evaluations.get()),
        )
    }

    fn dependency(flag: String, treatments: &[&str], negate: bool) -> Value {
        json!({"matcherType": "IN_SPLIT_TREATMENT", "negate": negate,
               "dependencyMatcherData": {"split": flag, "treatments": treatments}})
    }

    fn condition(matchers: Vec<Value>, partitions: Value, label: String) -> Value {
        json!({"conditionType": "ROLLOUT", "matcherGroup": {"combiner": "AND", "matchers": matchers},
               "partitions": partitions, "label": label})
    }

    fn snapshot(flags: Vec<Value>) -> Snapshot {
        let doc = json!({"ff": {"d": flags}}).to_string();
        let (s, problems) = Snapshot::from_json(&doc, "test").unwrap();
        assert!(problems.is_empty(), "{problems:?}");
        s
    }

    /// n flags, each with two conditions on the next (the first never true): 2^n evaluations
    /// without the memo.
    fn chain(n: usize) -> Snapshot {
        let mut flags = Vec::new();
        for i in 0..n {
            let next = format!("f{}", i + 1);
            flags.push(
                json!({"name": format!("f{i}"), "defaultTreatment": "off", "algo": 2,
                "configurations": {"on": format!("{{\"level\":{i}}}")},
                "conditions": [
                    condition(vec![dependency(next.clone(), &["nope"], false)],
                              json!([{"treatment": "x", "size": 100}]), "first".into()),
                    condition(vec![dependency(next, &["on"], false)],
                              json!([{"treatment": "on", "size": 100}]), "second".into()),
                ]}),
            );
        }
        flags.push(json!({"name": format!("f{n}"), "defaultTreatment": "off",
            "conditions": [condition(vec![json!({"matcherType": "ALL_KEYS"})],
                                     json!([{"treatment": "on", "size": 100}]), "all".into())]}));
        snapshot(flags)
    }

    #[test]
    fn a_flag_reached_twice_is_evaluated_once() {
        let s = chain(12);
        let ((e, n), (u, m)) = both(&s, "k", "f0");
        assert_eq!(e, u);
        assert_eq!(
            (e.treatment, e.label.as_str(), e.config),
            ("on", "second", Some("{\"level\":0}"))
        );
        assert_eq!(n, 13);
        assert_eq!(m, (1 << 13) - 1);

        // 2^30 evaluations without the memo.
        let s = chain(30);
        let attrs = Attributes::new();
        let ctx = Ctx::new("k", None, &attrs);
        assert_eq!(s.evaluate_in(&ctx, "f0").treatment, "on");
        assert_eq!(ctx.evaluations.get(), 31);
        // Deeper than MAX_DEPTH: the exception, as without the memo.
        let s = chain(MAX_DEPTH + 1);
        assert_eq!(s.evaluate("k", None, "f0", &attrs).label, &Label::Exception);
        assert_eq!(s.evaluate("k", None, "f1", &attrs).treatment, "on");
    }

    #[test]
    fn a_rule_that_splits_keys_by_bucket_says_so() {
        let rule = |label: &str, partitions: Value| {
            condition(
                vec![json!({"matcherType": "WHITELIST",
                            "whitelistMatcherData": {"whitelist": [label]}})],
                partitions,
                label.into(),
            )
        };
        let s = snapshot(vec![
            json!({"name": "f", "defaultTreatment": "off", "algo": 2, "seed": 7, "conditions": [
                rule("fifty", json!([{"treatment": "on", "size": 50}, {"treatment": "off", "size": 50}])),
                rule("all_on", json!([{"treatment": "on", "size": 100}, {"treatment": "off", "size": 0}])),
                rule("same_twice", json!([{"treatment": "on", "size": 50}, {"treatment": "on", "size": 50}])),
                rule("zero_first", json!([{"treatment": "off", "size": 0}, {"treatment": "on", "size": 100}])),
                rule("gap", json!([{"treatment": "on", "size": 60}])),
                rule("one", json!([{"treatment": "on", "size": 100}])),
            ]}),
            json!({"name": "k", "killed": true, "defaultTreatment": "off", "conditions": [
                rule("fifty", json!([{"treatment": "on", "size": 50}, {"treatment": "off", "size": 50}])),
            ]}),
        ]);
        let attrs = Attributes::new();
        let split = |key: &str, flag: &str| {
            let e = s.evaluate(key, None, flag, &attrs);
            assert_eq!(e.label.as_str(), if flag == "k" { "killed" } else { key });
            assert_eq!(e.to_owned().percentage_split, e.percentage_split);
            e.percentage_split
        };
        assert!(split("fifty", "f"));
        assert!(!split("all_on", "f"));
        assert!(!split("same_twice", "f"));
        assert!(!split("one", "f"));
        // A partition of size 0 takes no bucket...
        assert!(!split("zero_first", "f"));
        // ...and a share under 100 leaves some keys `control`: a split.
        assert!(split("gap", "f"));
        assert!(!split("fifty", "k"));
        // No rule matched: the default treatment, no split.
        let e = s.evaluate("nobody", None, "f", &attrs);
        assert_eq!(
            (e.label, e.percentage_split),
            (&Label::NoRuleMatched, false)
        );
        assert!(!s.evaluate("x", None, "missing", &attrs).percentage_split);
    }

    /// Random dependency graphs: a straight chain down to near `MAX_DEPTH`, then a region
    /// where flags depend on one or both of the next two (and, rarely, on earlier ones), with
    /// prerequisites and key-dependent partitions, so that the same flag is reached at
    /// different depths, on both sides of the limit. The memo changes nothing but the work.
    #[test]
    fn the_memo_changes_no_result() {
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut rand = move |n: u64| {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            state.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
        };
        const CHAIN: usize = 24;
        const REGION: usize = 12;
        let mut exceptions = 0;
        for _ in 0..150 {
            let mut flags = Vec::new();
            for i in 0..CHAIN + REGION {
                let name = format!("f{i}");
                let mut conditions = Vec::new();
                if i < CHAIN {
                    let to = format!("f{}", i + 1 + usize::from(rand(4) == 0));
                    conditions.push(condition(
                        vec![dependency(to, &["on", "off"], false)],
                        json!([{"treatment": "on", "size": 100}]),
                        "chain".into(),
                    ));
                } else {
                    for c in 0..(1 + rand(3)) {
                        let matchers: Vec<Value> = (0..(1 + rand(2)))
                            .map(|_| {
                                let to = if rand(10) == 0 {
                                    rand(CHAIN as u64 + REGION as u64) as usize
                                } else {
                                    i + 1 + rand(2) as usize
                                };
                                let ts: &[&str] = match rand(3) {
                                    0 => &["on"],
                                    1 => &["off", "control"],
                                    _ => &["on", "off"],
                                };
                                dependency(format!("f{to}"), ts, rand(3) == 0)
                            })
                            .collect();
                        let on = 10 * rand(11);
                        conditions.push(condition(
                            matchers,
                            json!([{"treatment": "on", "size": on},
                                   {"treatment": "off", "size": 100 - on}]),
                            format!("rule {c}"),
                        ));
                    }
                }
                let mut flag = json!({"name": name, "defaultTreatment": "off", "algo": 2,
                    "seed": rand(1000), "conditions": conditions,
                    "configurations": {"on": "{}", "control": "{\"c\":1}"}});
                if i >= CHAIN && rand(4) == 0 {
                    let to = format!("f{}", i + 1 + rand(3) as usize);
                    flag["prerequisites"] = json!([{"n": to, "ts": ["on"]}]);
                }
                flags.push(flag);
            }
            let s = snapshot(flags);
            for key in ["a", "b", "c"] {
                for start in [0, 3, 8, CHAIN - 2, CHAIN + 2] {
                    let flag = format!("f{start}");
                    let ((e, n), (u, m)) = both(&s, key, &flag);
                    assert_eq!(e, u, "{flag} {key}");
                    assert!(n <= m, "{n} > {m}");
                    exceptions += usize::from(e.label == &Label::Exception);
                }
            }
        }
        // Both sides of the limit were seen.
        assert!(exceptions > 0 && exceptions < 150 * 15, "{exceptions}");
    }
}
