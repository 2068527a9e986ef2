//! The evaluation algorithm: a flag, a key and attributes to a treatment and a label.

use std::cmp::Ordering;

use super::attributes::{
    AttributeValue, Attributes, Text, set_item, set_items, to_bool, to_number, to_str,
};
use super::bucket::bucket;
use super::compile::{CompiledFlag, CompiledMatcher, ExcludedKind, MatcherKind, StrSet, Truncate};
use super::labels::Label;
use super::semver::Semver;
use crate::storage::Snapshot;

/// The treatment returned when no real treatment can be given.
pub const CONTROL: &str = "control";

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
        }
    }
}

/// The dependency chain went deeper than [`MAX_DEPTH`] (a cycle, most likely).
#[derive(Debug)]
struct TooDeep;

struct Ctx<'k> {
    key: &'k str,
    bucketing_key: &'k str,
    attributes: &'k Attributes,
}

impl Snapshot {
    /// Evaluates `flag` for a key.
    ///
    /// `bucketing_key` defaults to `key`. This is the pure engine: no impression is recorded,
    /// nothing is logged, nothing is allocated. A missing flag gives `control` with label
    /// `definition not found`; a dependency cycle gives `control` with label `exception`.
    pub fn evaluate<'a>(
        &'a self,
        key: &str,
        bucketing_key: Option<&str>,
        flag: &str,
        attributes: &Attributes,
    ) -> Evaluation<'a> {
        let ctx = Ctx {
            key,
            bucketing_key: bucketing_key.unwrap_or(key),
            attributes,
        };
        match self.flags.get(flag) {
            None => Evaluation::control(&DEFINITION_NOT_FOUND),
            Some(f) => match self.eval_flag(f, &ctx, 0) {
                Ok(e) => e,
                Err(TooDeep) => Evaluation {
                    change_number: Some(f.change_number),
                    traffic_type: Some(&f.traffic_type),
                    impressions_disabled: f.impressions_disabled,
                    ..Evaluation::control(&EXCEPTION)
                },
            },
        }
    }

    fn eval_by_name<'a>(
        &'a self,
        flag: &str,
        ctx: &Ctx<'_>,
        depth: usize,
    ) -> Result<&'a str, TooDeep> {
        match self.flags.get(flag) {
            None => Ok(CONTROL),
            Some(f) => Ok(self.eval_flag(f, ctx, depth)?.treatment),
        }
    }

    fn eval_flag<'a>(
        &'a self,
        f: &'a CompiledFlag,
        ctx: &Ctx<'_>,
        depth: usize,
    ) -> Result<Evaluation<'a>, TooDeep> {
        if depth > MAX_DEPTH {
            return Err(TooDeep);
        }
        // Configurations are resolved beside each treatment when the flag is compiled.
        let result = |treatment: &'a str, config: &'a Option<_>, label: &'a Label| Evaluation {
            treatment,
            label,
            config: config.as_deref(),
            change_number: Some(f.change_number),
            traffic_type: Some(&f.traffic_type),
            impressions_disabled: f.impressions_disabled,
        };
        let default = |label: &'a Label| result(&f.default_treatment, &f.default_config, label);
        if f.killed {
            return Ok(default(&KILLED));
        }
        for (name, treatments) in &f.prerequisites {
            let t = self.eval_by_name(name, ctx, depth + 1)?;
            if !treatments.iter().any(|x| &**x == t) {
                return Ok(default(&PREREQUISITES_NOT_MET));
            }
        }
        let mut in_rollout = false;
        for c in &f.conditions {
            if c.rollout && !in_rollout {
                if f.traffic_allocation < 100
                    && i64::from(bucket(ctx.bucketing_key, f.traffic_allocation_seed, f.algo))
                        > f.traffic_allocation
                {
                    return Ok(default(&NOT_IN_SPLIT));
                }
                in_rollout = true;
            }
            if !self.all_match(&c.matchers, ctx, depth)? {
                continue;
            }
            let partition = match c.partitions.as_slice() {
                [p] if p.cumulative == 100 => Some(p),
                parts => {
                    let b = i64::from(bucket(ctx.bucketing_key, f.seed, f.algo));
                    parts.iter().find(|p| b <= p.cumulative)
                }
            };
            return Ok(match partition {
                Some(p) => result(&p.treatment, &p.config, &c.label),
                // Partitions that do not reach the bucket: control with the rule's label.
                None => result(CONTROL, &f.control_config, &c.label),
            });
        }
        Ok(default(&NO_RULE_MATCHED))
    }

    fn all_match(
        &self,
        matchers: &[CompiledMatcher],
        ctx: &Ctx<'_>,
        depth: usize,
    ) -> Result<bool, TooDeep> {
        for m in matchers {
            if !self.matches(m, ctx, depth)? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    fn matches(&self, m: &CompiledMatcher, ctx: &Ctx<'_>, depth: usize) -> Result<bool, TooDeep> {
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
            (_, Some(attr)) => match ctx.attributes.get(attr) {
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

    fn in_rule_based_segment(
        &self,
        name: &str,
        ctx: &Ctx<'_>,
        depth: usize,
    ) -> Result<bool, TooDeep> {
        if depth > MAX_DEPTH {
            return Err(TooDeep);
        }
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
    Attr(&'a AttributeValue),
}

impl<'a> Input<'a> {
    fn string(&self) -> Option<Text<'a>> {
        match *self {
            Input::Key("") => None,
            Input::Key(k) => Some(Text::Borrowed(k)),
            Input::Attr(v) => to_str(v),
        }
    }

    fn number(&self, t: Truncate) -> Option<f64> {
        let n = match self {
            Input::Key(k) => {
                let n = super::attributes::js_string_to_number(k);
                if n.is_nan() {
                    return None;
                }
                n
            }
            Input::Attr(v) => to_number(v)?,
        };
        t.apply(n)
    }

    /// The items of a set (the strings are [`set_item`] of each).
    fn set(&self) -> Option<&'a [AttributeValue]> {
        match self {
            Input::Key(_) => None,
            Input::Attr(v) => set_items(v),
        }
    }

    fn boolean(&self) -> Option<bool> {
        match self {
            Input::Key(k) if k.eq_ignore_ascii_case("true") => Some(true),
            Input::Key(k) if k.eq_ignore_ascii_case("false") => Some(false),
            Input::Key(_) => None,
            Input::Attr(v) => to_bool(v),
        }
    }
}

/// Whether some item of a set reads as `s`.
fn set_has(items: &[AttributeValue], s: &str) -> bool {
    items.iter().any(|i| *set_item(i) == *s)
}

/// Whether every item of a set is in `rule`.
fn set_within(items: &[AttributeValue], rule: &StrSet) -> bool {
    items.iter().all(|i| rule.contains(&set_item(i)))
}

/// The matcher's result before negation; `None` when the value cannot be read as the type
/// the matcher needs (which counts as no match).
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
