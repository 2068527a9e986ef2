//! Compilation: wire definitions turned, once per update, into the form evaluation reads
//! without parsing or allocating (regexes built, sets hashed, versions parsed, dates truncated).

use std::collections::HashMap;
use std::sync::Arc;

use regex::Regex;

use super::attributes::AttributeKey;
use super::bucket::{HashAlgo, seed_of};
use super::evaluator::{CONTROL, CONTROL_NAME};
use super::labels::Label;
use super::landing::Landing;
use super::pattern;
use super::semver::OwnedSemver;
use super::{FastHasher, FastSet, head16};
use crate::definitions::{Condition, FeatureFlag, MatcherDef, RuleBasedSegment};
use crate::error::Error;
use crate::intern::Name;

/// Above this many entries, a string list is looked up through a hash set. Below, a scan of
/// [`SmallSet`] costs less than hashing the string (a 36-byte UUID key in a 10-key
/// whitelist: ~40 instructions scanned, ~100 hashed and probed).
const SMALL_SET: usize = 16;

/// A list of strings looked up by membership (duplicates removed).
#[derive(Debug)]
pub(crate) enum StrSet {
    Small(SmallSet),
    Large(PackedSet),
    /// More members (or more text) than a [`PackedSet`] indexes: a hash set.
    Huge(FastSet<Box<str>>),
}

/// The members of a small [`StrSet`] with a fingerprint of each, side by side, so that a
/// scan compares one word per member and the text only of a member whose fingerprint
/// matches (about 5 instructions a member: scanning 16 costs less than hashing the string).
#[derive(Debug)]
pub(crate) struct SmallSet {
    /// One bit of 64 for each member's fingerprint ([`bloom_bit`]): a string whose bit is
    /// clear is no member, and most non-members are answered by that one test, without a
    /// scan.
    bloom: u64,
    /// [`fingerprint`] of each member.
    prints: Box<[u64]>,
    members: Box<[Box<str>]>,
}

impl SmallSet {
    #[inline(always)]
    fn contains(&self, s: &str) -> bool {
        let print = fingerprint(s.as_bytes());
        if self.bloom & bloom_bit(print) == 0 {
            return false;
        }
        // A plain search of the fingerprints (a tight loop), then the text of each match.
        let mut from = 0;
        while let Some(i) = self
            .prints
            .get(from..)
            .and_then(|rest| rest.iter().position(|&p| p == print))
        {
            if self.members.get(from + i).is_some_and(|m| **m == *s) {
                return true;
            }
            from += i + 1;
        }
        false
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.members.len()
    }
}

/// A cheap summary of a string (its length, first 16 and last 8 bytes), equal for equal
/// strings: what a [`SmallSet`] scan compares before the text.
#[inline(always)]
fn fingerprint(b: &[u8]) -> u64 {
    let head = head16(b);
    let last = b.last_chunk::<8>().map_or(0, |c| u64::from_le_bytes(*c));
    (head as u64)
        ^ ((head >> 64) as u64).rotate_left(23)
        ^ last.rotate_left(47)
        ^ (b.len() as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// The bit of a [`SmallSet`]'s `bloom` for a fingerprint: its top six bits once mixed (the
/// fingerprint's own bits are raw text, which varies little in its top bits).
#[inline(always)]
fn bloom_bit(print: u64) -> u64 {
    1 << (print.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 58)
}

impl StrSet {
    fn new(items: &[String]) -> StrSet {
        if items.len() > SMALL_SET {
            match PackedSet::new(items) {
                Some(set) if set.len() > SMALL_SET => return StrSet::Large(set),
                Some(_) => {}
                None => return StrSet::hashed(items),
            }
        }
        // Few strings (or many duplicates: at most SMALL_SET distinct ones): a list, scanned.
        // Membership does not depend on the order.
        let mut uniq: Vec<Box<str>> = Vec::with_capacity(items.len().min(SMALL_SET));
        for i in items {
            if !uniq.iter().any(|u| **u == **i) {
                uniq.push(i.as_str().into());
            }
        }
        let prints: Box<[u64]> = uniq.iter().map(|m| fingerprint(m.as_bytes())).collect();
        StrSet::Small(SmallSet {
            bloom: prints.iter().fold(0, |b, &p| b | bloom_bit(p)),
            prints,
            members: uniq.into_boxed_slice(),
        })
    }

    /// A hash set of `items`, for more than a [`PackedSet`] holds.
    fn hashed(items: &[String]) -> StrSet {
        StrSet::Huge(items.iter().map(|i| i.as_str().into()).collect())
    }

    #[inline(always)]
    pub(crate) fn contains(&self, s: &str) -> bool {
        match self {
            StrSet::Small(set) => set.contains(s),
            StrSet::Large(set) => set.contains(s),
            StrSet::Huge(set) => set.contains(s),
        }
    }

    /// Whether `f` holds for every member.
    pub(crate) fn all(&self, mut f: impl FnMut(&str) -> bool) -> bool {
        match self {
            StrSet::Small(set) => set.members.iter().all(|s| f(s)),
            StrSet::Large(set) => set.iter().all(f),
            StrSet::Huge(set) => set.iter().all(|s| f(s)),
        }
    }
}

/// A set of many strings held compactly: their text end to end in one allocation, and an
/// open-addressing table (linear probing, at most half full) of their positions, each slot
/// tagged with 8 bits of its member's hash so that a probe rarely reads a member that does
/// not match. A member costs its bytes plus 12 to 20 bytes, where a hash set of boxed
/// strings costs about 50 more (a box, an allocation of at least 32 bytes, a bucket):
/// whitelists are most of a large document's compiled size.
#[derive(Debug)]
pub(crate) struct PackedSet {
    /// The members, end to end.
    text: Box<str>,
    /// Where each member ends in `text` (it starts where the previous one ends).
    ends: Box<[u32]>,
    /// A power of two of slots: 0 is empty, else the top 8 bits of the member's hash above
    /// its index plus one (24 bits).
    slots: Box<[u32]>,
    hasher: FastHasher,
}

/// Most members of a [`PackedSet`] (indexes take 24 bits of a slot).
const MAX_PACKED: usize = (1 << 24) - 2;

impl PackedSet {
    /// The set of `items` (duplicates kept once); `None` when their text exceeds 4 GiB or
    /// they are more than [`MAX_PACKED`].
    fn new(items: &[String]) -> Option<PackedSet> {
        if items.len() > MAX_PACKED {
            return None;
        }
        let total: usize = items.iter().map(String::len).sum();
        u32::try_from(total).ok()?;
        let capacity = items
            .len()
            .checked_mul(2)?
            .max(2)
            .checked_next_power_of_two()?;
        let mut set = PackedSet {
            text: Box::default(),
            ends: Box::default(),
            slots: vec![0; capacity].into_boxed_slice(),
            hasher: FastHasher::default(),
        };
        let mut text = String::with_capacity(total);
        let mut ends: Vec<u32> = Vec::with_capacity(items.len());
        for item in items {
            let (mut slot, tag) = set.probe_start(item);
            let mut duplicate = false;
            while let Some(&n) = set.slots.get(slot)
                && n != 0
            {
                if n >> 24 == tag {
                    let m = ((n & 0x00FF_FFFF) as usize).wrapping_sub(1);
                    if member_of(&text, &ends, m) == item.as_bytes() {
                        duplicate = true;
                        break;
                    }
                }
                slot = (slot + 1) & (set.slots.len() - 1);
            }
            if duplicate {
                continue;
            }
            text.push_str(item);
            let index = u32::try_from(ends.len()).ok()?;
            ends.push(u32::try_from(text.len()).ok()?);
            if let Some(s) = set.slots.get_mut(slot) {
                *s = (tag << 24) | (index + 1);
            }
        }
        set.text = text.into_boxed_str();
        set.ends = ends.into_boxed_slice();
        Some(set)
    }

    /// The first slot to probe for `s`, and its tag.
    #[inline]
    fn probe_start(&self, s: &str) -> (usize, u32) {
        let hash = std::hash::BuildHasher::hash_one(&self.hasher, s);
        // The table has a power of two of slots: the low bits of the hash pick one, the top
        // 8 bits are the tag.
        (
            (hash as usize) & (self.slots.len() - 1),
            (hash >> 56) as u32,
        )
    }

    /// Number of members.
    fn len(&self) -> usize {
        self.ends.len()
    }

    #[inline]
    fn contains(&self, s: &str) -> bool {
        let mask = self.slots.len() - 1;
        let (mut slot, tag) = self.probe_start(s);
        // At most half the slots are taken, so an empty one ends every probe.
        while let Some(&n) = self.slots.get(slot)
            && n != 0
        {
            if n >> 24 == tag
                && member_of(
                    &self.text,
                    &self.ends,
                    ((n & 0x00FF_FFFF) as usize).wrapping_sub(1),
                ) == s.as_bytes()
            {
                return true;
            }
            slot = (slot + 1) & mask;
        }
        false
    }

    /// The members, in the order first seen.
    fn iter(&self) -> impl Iterator<Item = &str> {
        let mut start = 0;
        self.ends.iter().map(move |&end| {
            let member = self.text.get(start..end as usize).unwrap_or_default();
            start = end as usize;
            member
        })
    }
}

/// The bytes of member `i` of a packed set's `text` and `ends`.
#[inline]
fn member_of<'a>(text: &'a str, ends: &[u32], i: usize) -> &'a [u8] {
    let start = match i.checked_sub(1) {
        Some(p) => ends.get(p).map_or(0, |e| *e as usize),
        None => 0,
    };
    let end = ends.get(i).map_or(0, |e| *e as usize);
    text.as_bytes().get(start..end).unwrap_or_default()
}

/// How a `DATETIME` value is truncated before comparing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Truncate {
    /// `NUMBER`: compared as is.
    None,
    /// Truncated to the UTC day (`EQUAL_TO`).
    Day,
    /// Truncated to the UTC minute (`GREATER_THAN_OR_EQUAL_TO`, `LESS_THAN_OR_EQUAL_TO`, `BETWEEN`).
    Minute,
}

impl Truncate {
    /// Applies the truncation to epoch milliseconds, as JavaScript's `Date` does; `None` when
    /// the value is outside the range of a date.
    pub(crate) fn apply(self, ms: f64) -> Option<f64> {
        let unit = match self {
            Truncate::None => return Some(ms),
            Truncate::Day => 86_400_000.0,
            Truncate::Minute => 60_000.0,
        };
        if !ms.is_finite() || ms.abs() > 8.64e15 {
            return None;
        }
        let t = ms.trunc();
        Some(t - t.rem_euclid(unit))
    }
}

/// The compiled form of one matcher.
#[derive(Debug)]
pub(crate) enum MatcherKind {
    AllKeys,
    InSegment(Box<str>),
    InRuleBasedSegment(Box<str>),
    Whitelist(StrSet),
    EqualTo(f64, Truncate),
    GreaterOrEqual(f64, Truncate),
    LessOrEqual(f64, Truncate),
    Between(f64, f64, Truncate),
    EqualToSet(StrSet),
    ContainsAnyOfSet(StrSet),
    ContainsAllOfSet(StrSet),
    PartOfSet(StrSet),
    StartsWith(Box<[Box<str>]>),
    EndsWith(Box<[Box<str>]>),
    ContainsString(Box<[Box<str>]>),
    /// `None` when the pattern does not compile (the matcher is then always false).
    MatchesString(Option<Regex>),
    Dependency {
        flag: Box<str>,
        treatments: Box<[Box<str>]>,
    },
    EqualToBoolean(bool),
    /// The semver matchers hold `None` when the rule value is not a version (always false).
    SemverEqual(Option<OwnedSemver>),
    SemverGreaterOrEqual(Option<OwnedSemver>),
    SemverLessOrEqual(Option<OwnedSemver>),
    SemverBetween(Option<(OwnedSemver, OwnedSemver)>),
    /// The versions of the list, compared by normalised text (`None` when the list is empty
    /// or holds something that is not a version).
    SemverInList(Option<Box<[OwnedSemver]>>),
}

/// A compiled matcher: what it looks at, whether it is negated, and what it checks.
#[derive(Debug)]
pub(crate) struct CompiledMatcher {
    /// Attribute to read; `None` reads the matching key.
    pub(crate) attribute: Option<AttributeKey>,
    pub(crate) negate: bool,
    pub(crate) kind: MatcherKind,
}

/// A treatment of a targeting rule, with its configuration resolved.
#[derive(Debug)]
pub(crate) struct CompiledPartition {
    pub(crate) treatment: Arc<str>,
    /// The treatment, interned (`None` when the table of names is full).
    pub(crate) treatment_name: Option<Name>,
    /// The treatment's configuration, if the flag defines one.
    pub(crate) config: Option<Arc<str>>,
}

/// A compiled targeting rule.
#[derive(Debug)]
pub(crate) struct CompiledCondition {
    pub(crate) rollout: bool,
    pub(crate) matchers: Vec<CompiledMatcher>,
    /// The partitions that take at least one bucket, in the definition's order.
    pub(crate) partitions: Vec<CompiledPartition>,
    /// Which of them each bucket lands in.
    pub(crate) landing: Landing,
    /// Whether the partitions give keys different treatments depending on their bucket: a
    /// percentage split such as 50/50, or a share under 100 that leaves some buckets
    /// `control`. A rule whose buckets all land on one treatment (`on` 100, or `on` 50 +
    /// `on` 50) does not split.
    pub(crate) percentage_split: bool,
    pub(crate) label: Label,
    /// The label, interned (`None` when the table of names is full).
    pub(crate) label_name: Option<Name>,
}

/// A prerequisite: the flag name and the treatments that satisfy it.
pub(crate) type CompiledPrerequisite = (Box<str>, Box<[Box<str>]>);

/// A compiled feature flag.
#[derive(Debug)]
pub(crate) struct CompiledFlag {
    pub(crate) name: Arc<str>,
    /// The name, interned (`None` when the table of names is full): what a queued
    /// impression points to.
    pub(crate) interned_name: Option<Name>,
    pub(crate) traffic_type: Arc<str>,
    pub(crate) killed: bool,
    pub(crate) default_treatment: Arc<str>,
    /// The default treatment, interned (`None` when the table of names is full).
    pub(crate) default_treatment_name: Option<Name>,
    pub(crate) change_number: i64,
    pub(crate) algo: HashAlgo,
    pub(crate) traffic_allocation: i64,
    pub(crate) traffic_allocation_seed: i32,
    pub(crate) seed: i32,
    pub(crate) conditions: Vec<CompiledCondition>,
    /// Treatment to configuration, for inspection ([`crate::FlagView`]); evaluation reads
    /// the copies resolved beside each treatment.
    pub(crate) configurations: HashMap<Box<str>, Arc<str>>,
    /// The configuration of the default treatment.
    pub(crate) default_config: Option<Arc<str>>,
    /// The configuration of `control`, given when a rule's partitions do not reach the
    /// bucket.
    pub(crate) control_config: Option<Arc<str>>,
    pub(crate) sets: Vec<String>,
    pub(crate) impressions_disabled: bool,
    pub(crate) prerequisites: Vec<CompiledPrerequisite>,
    /// Treatments named anywhere in the definition (for the manager), in first-seen order.
    pub(crate) treatments: Vec<String>,
    /// Segment names referenced by the flag's matchers.
    pub(crate) segments: Vec<String>,
}

/// A compiled rule-based segment.
#[derive(Debug)]
pub(crate) struct CompiledRuleBasedSegment {
    pub(crate) excluded_keys: FastSet<String>,
    /// `(name, kind)` of excluded segments.
    pub(crate) excluded_segments: Vec<(String, ExcludedKind)>,
    /// The conditions' matcher lists; the key is in the segment when any list matches.
    pub(crate) conditions: Vec<Vec<CompiledMatcher>>,
    pub(crate) segments: Vec<String>,
}

/// The kind of an excluded segment of a rule-based segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ExcludedKind {
    Standard,
    RuleBased,
    Large,
}

/// Why a matcher could not be compiled. `field` is relative to the matcher: the full path is
/// only built for the error message.
struct Unsupported {
    field: String,
    message: String,
}

/// The path of a field of the `j`th matcher of the `i`th condition.
fn matcher_field(i: usize, j: usize, field: &str) -> String {
    format!("conditions[{i}].matcherGroup.matchers[{j}].{field}")
}

fn strings(v: &Option<Vec<String>>) -> &[String] {
    v.as_deref().unwrap_or(&[])
}

fn boxed_list(items: &[String]) -> Box<[Box<str>]> {
    items.iter().map(|s| s.as_str().into()).collect()
}

fn compile_matcher(
    m: &MatcherDef,
    segments: &mut Vec<String>,
) -> Result<CompiledMatcher, Unsupported> {
    let missing = |field: &str| Unsupported {
        field: field.to_string(),
        message: format!("matcher {} needs {field}, which is missing", m.matcher_type),
    };
    let whitelist = || -> Result<&[String], Unsupported> {
        m.whitelist_matcher_data
            .as_ref()
            .and_then(|w| w.whitelist.as_deref())
            .ok_or_else(|| missing("whitelistMatcherData"))
    };
    let segment_name = || -> Result<&str, Unsupported> {
        m.user_defined_segment_matcher_data
            .as_ref()
            .and_then(|s| s.segment_name.as_deref())
            .ok_or_else(|| missing("userDefinedSegmentMatcherData"))
    };
    let unary = || -> Result<(f64, bool), Unsupported> {
        let d = m
            .unary_numeric_matcher_data
            .as_ref()
            .ok_or_else(|| missing("unaryNumericMatcherData"))?;
        let v = d
            .value
            .as_ref()
            .and_then(serde_json::Number::as_f64)
            .ok_or_else(|| missing("unaryNumericMatcherData.value"))?;
        Ok((v, d.data_type.as_deref() == Some("DATETIME")))
    };
    let string_data = || -> Result<&str, Unsupported> {
        m.string_matcher_data
            .as_deref()
            .ok_or_else(|| missing("stringMatcherData"))
    };
    let kind = match m.matcher_type.as_str() {
        "ALL_KEYS" => MatcherKind::AllKeys,
        "IN_SEGMENT" => {
            let name = segment_name()?;
            segments.push(name.to_string());
            MatcherKind::InSegment(name.into())
        }
        "IN_RULE_BASED_SEGMENT" => MatcherKind::InRuleBasedSegment(segment_name()?.into()),
        "WHITELIST" => MatcherKind::Whitelist(StrSet::new(whitelist()?)),
        "EQUAL_TO" => {
            let (v, dt) = unary()?;
            let t = if dt { Truncate::Day } else { Truncate::None };
            MatcherKind::EqualTo(t.apply(v).unwrap_or(f64::NAN), t)
        }
        "GREATER_THAN_OR_EQUAL_TO" | "LESS_THAN_OR_EQUAL_TO" => {
            let (v, dt) = unary()?;
            let t = if dt { Truncate::Minute } else { Truncate::None };
            let v = t.apply(v).unwrap_or(f64::NAN);
            if m.matcher_type == "GREATER_THAN_OR_EQUAL_TO" {
                MatcherKind::GreaterOrEqual(v, t)
            } else {
                MatcherKind::LessOrEqual(v, t)
            }
        }
        "BETWEEN" => {
            let d = m
                .between_matcher_data
                .as_ref()
                .ok_or_else(|| missing("betweenMatcherData"))?;
            let start = d
                .start
                .as_ref()
                .and_then(serde_json::Number::as_f64)
                .ok_or_else(|| missing("betweenMatcherData.start"))?;
            let end = d
                .end
                .as_ref()
                .and_then(serde_json::Number::as_f64)
                .ok_or_else(|| missing("betweenMatcherData.end"))?;
            let t = if d.data_type.as_deref() == Some("DATETIME") {
                Truncate::Minute
            } else {
                Truncate::None
            };
            MatcherKind::Between(
                t.apply(start).unwrap_or(f64::NAN),
                t.apply(end).unwrap_or(f64::NAN),
                t,
            )
        }
        "EQUAL_TO_SET" => MatcherKind::EqualToSet(StrSet::new(whitelist()?)),
        "CONTAINS_ANY_OF_SET" => MatcherKind::ContainsAnyOfSet(StrSet::new(whitelist()?)),
        "CONTAINS_ALL_OF_SET" => MatcherKind::ContainsAllOfSet(StrSet::new(whitelist()?)),
        "PART_OF_SET" => MatcherKind::PartOfSet(StrSet::new(whitelist()?)),
        "STARTS_WITH" => MatcherKind::StartsWith(boxed_list(whitelist()?)),
        "ENDS_WITH" => MatcherKind::EndsWith(boxed_list(whitelist()?)),
        "CONTAINS_STRING" => MatcherKind::ContainsString(boxed_list(whitelist()?)),
        "MATCHES_STRING" => {
            MatcherKind::MatchesString(Regex::new(&pattern::translate(string_data()?)).ok())
        }
        "IN_SPLIT_TREATMENT" => {
            let d = m
                .dependency_matcher_data
                .as_ref()
                .ok_or_else(|| missing("dependencyMatcherData"))?;
            let flag = d
                .split
                .as_deref()
                .ok_or_else(|| missing("dependencyMatcherData.split"))?;
            MatcherKind::Dependency {
                flag: flag.into(),
                treatments: boxed_list(strings(&d.treatments)),
            }
        }
        "EQUAL_TO_BOOLEAN" => MatcherKind::EqualToBoolean(
            m.boolean_matcher_data
                .ok_or_else(|| missing("booleanMatcherData"))?,
        ),
        "EQUAL_TO_SEMVER" => MatcherKind::SemverEqual(OwnedSemver::parse(string_data()?)),
        "GREATER_THAN_OR_EQUAL_TO_SEMVER" => {
            MatcherKind::SemverGreaterOrEqual(OwnedSemver::parse(string_data()?))
        }
        "LESS_THAN_OR_EQUAL_TO_SEMVER" => {
            MatcherKind::SemverLessOrEqual(OwnedSemver::parse(string_data()?))
        }
        "BETWEEN_SEMVER" => {
            let d = m
                .between_string_matcher_data
                .as_ref()
                .ok_or_else(|| missing("betweenStringMatcherData"))?;
            let bounds = match (d.start.as_deref(), d.end.as_deref()) {
                (Some(s), Some(e)) => OwnedSemver::parse(s).zip(OwnedSemver::parse(e)),
                _ => None,
            };
            MatcherKind::SemverBetween(bounds)
        }
        "IN_LIST_SEMVER" => {
            let list = whitelist()?;
            // Like the JavaScript SDK: an empty list, or any entry that is not a version,
            // disables the matcher.
            let parsed: Option<Vec<OwnedSemver>> = if list.is_empty() {
                None
            } else {
                list.iter().map(|s| OwnedSemver::parse(s)).collect()
            };
            let parsed = parsed.map(|versions| {
                // Duplicates (by normalised text) cannot change the answer.
                let mut unique: Vec<OwnedSemver> = Vec::with_capacity(versions.len());
                for v in versions {
                    if !unique
                        .iter()
                        .any(|u| u.as_semver().eq_normalized(&v.as_semver()))
                    {
                        unique.push(v);
                    }
                }
                unique.into_boxed_slice()
            });
            MatcherKind::SemverInList(parsed)
        }
        other => {
            return Err(Unsupported {
                field: "matcherType".into(),
                message: if other == "IN_LARGE_SEGMENT" {
                    "large segments are not supported by this SDK".into()
                } else {
                    format!("unknown matcher type {other:?}")
                },
            });
        }
    };
    Ok(CompiledMatcher {
        attribute: m
            .key_selector
            .as_ref()
            .and_then(|k| k.attribute.as_deref())
            .map(AttributeKey::new),
        negate: m.negate.unwrap_or(false),
        kind,
    })
}

/// Compiles the matchers of the `i`th condition; an error names the field by its full path.
fn compile_matchers(
    c: &Condition,
    i: usize,
    segments: &mut Vec<String>,
) -> Result<Vec<CompiledMatcher>, Unsupported> {
    let matchers = c
        .matcher_group
        .as_ref()
        .and_then(|g| g.matchers.as_deref())
        .unwrap_or(&[]);
    matchers
        .iter()
        .enumerate()
        .map(|(j, m)| {
            compile_matcher(m, segments).map_err(|u| Unsupported {
                field: matcher_field(i, j, &u.field),
                message: u.message,
            })
        })
        .collect()
}

fn json_list(items: &[String]) -> String {
    serde_json::to_string(items).unwrap_or_default()
}

/// A readable label for a condition that has none, in the style of the product's labels:
/// `in segment employees`, `user.location in list ["california"]`, joined with `and`.
pub(crate) fn generated_label(c: &Condition) -> String {
    let matchers = c
        .matcher_group
        .as_ref()
        .and_then(|g| g.matchers.as_deref())
        .unwrap_or(&[]);
    if matchers.is_empty() {
        return "default rule".into();
    }
    let parts: Vec<String> = matchers.iter().map(describe_matcher).collect();
    parts.join(" and ")
}

fn describe_matcher(m: &MatcherDef) -> String {
    let tt = m
        .key_selector
        .as_ref()
        .and_then(|k| k.traffic_type.as_deref())
        .unwrap_or("user");
    let subject = match m.key_selector.as_ref().and_then(|k| k.attribute.as_deref()) {
        Some(a) => format!("{tt}.{a}"),
        None => tt.to_string(),
    };
    let not = if m.negate.unwrap_or(false) {
        "not "
    } else {
        ""
    };
    let list = || {
        json_list(
            m.whitelist_matcher_data
                .as_ref()
                .and_then(|w| w.whitelist.as_deref())
                .unwrap_or(&[]),
        )
    };
    let num =
        |n: &Option<serde_json::Number>| n.as_ref().map(ToString::to_string).unwrap_or_default();
    let unary = || {
        m.unary_numeric_matcher_data
            .as_ref()
            .map(|d| num(&d.value))
            .unwrap_or_default()
    };
    let string = || format!("{:?}", m.string_matcher_data.as_deref().unwrap_or(""));
    let segment = || {
        m.user_defined_segment_matcher_data
            .as_ref()
            .and_then(|s| s.segment_name.clone())
            .unwrap_or_default()
    };
    match m.matcher_type.as_str() {
        "ALL_KEYS" => format!("{not}default rule"),
        "IN_SEGMENT" => format!("{not}in segment {}", segment()),
        "IN_RULE_BASED_SEGMENT" => format!("{not}in rule based segment {}", segment()),
        "WHITELIST"
            if m.key_selector
                .as_ref()
                .and_then(|k| k.attribute.as_ref())
                .is_none() =>
        {
            if not.is_empty() {
                format!("{subject} not whitelisted")
            } else {
                "whitelisted".into()
            }
        }
        "WHITELIST" => format!("{subject} {not}in list {}", list()),
        "EQUAL_TO" => format!("{subject} {not}is equal to {}", unary()),
        "GREATER_THAN_OR_EQUAL_TO" => {
            format!("{subject} {not}is greater than or equal to {}", unary())
        }
        "LESS_THAN_OR_EQUAL_TO" => format!("{subject} {not}is less than or equal to {}", unary()),
        "BETWEEN" => {
            let (s, e) = m
                .between_matcher_data
                .as_ref()
                .map(|d| (num(&d.start), num(&d.end)))
                .unwrap_or_default();
            format!("{subject} {not}is between {s} and {e}")
        }
        "EQUAL_TO_SET" => format!("{subject} {not}is equal to set {}", list()),
        "CONTAINS_ANY_OF_SET" => format!("{subject} {not}contains any of {}", list()),
        "CONTAINS_ALL_OF_SET" => format!("{subject} {not}contains all of {}", list()),
        "PART_OF_SET" => format!("{subject} {not}is part of {}", list()),
        "STARTS_WITH" => format!("{subject} {not}starts with {}", list()),
        "ENDS_WITH" => format!("{subject} {not}ends with {}", list()),
        "CONTAINS_STRING" => format!("{subject} {not}contains {}", list()),
        "MATCHES_STRING" => format!("{subject} {not}matches {}", string()),
        "IN_SPLIT_TREATMENT" => {
            let (f, ts) = m
                .dependency_matcher_data
                .as_ref()
                .map(|d| {
                    (
                        d.split.clone().unwrap_or_default(),
                        json_list(strings(&d.treatments)),
                    )
                })
                .unwrap_or_default();
            format!("{not}in split {f} treatment {ts}")
        }
        "EQUAL_TO_BOOLEAN" => format!(
            "{subject} {not}is {}",
            m.boolean_matcher_data.unwrap_or_default()
        ),
        "EQUAL_TO_SEMVER" => format!("{subject} {not}is equal to semver {}", string()),
        "GREATER_THAN_OR_EQUAL_TO_SEMVER" => {
            format!(
                "{subject} {not}is greater than or equal to semver {}",
                string()
            )
        }
        "LESS_THAN_OR_EQUAL_TO_SEMVER" => {
            format!(
                "{subject} {not}is less than or equal to semver {}",
                string()
            )
        }
        "BETWEEN_SEMVER" => {
            let (s, e) = m
                .between_string_matcher_data
                .as_ref()
                .map(|d| {
                    (
                        d.start.clone().unwrap_or_default(),
                        d.end.clone().unwrap_or_default(),
                    )
                })
                .unwrap_or_default();
            format!("{subject} {not}is between semver {s:?} and {e:?}")
        }
        "IN_LIST_SEMVER" => format!("{subject} {not}in list semver {}", list()),
        other => format!("{subject} {not}{}", other.to_lowercase().replace('_', " ")),
    }
}

/// The configurations of a flag: treatment to JSON text (`null` means none; a JSON value
/// that is not a string is taken as its text).
fn configurations(f: &FeatureFlag) -> HashMap<Box<str>, Arc<str>> {
    f.configurations
        .as_ref()
        .map(|m| {
            m.iter()
                .filter_map(|(t, v)| {
                    let text: Arc<str> = match v {
                        serde_json::Value::Null => return None,
                        serde_json::Value::String(s) => s.as_str().into(),
                        other => other.to_string().into(),
                    };
                    Some((Box::<str>::from(t.as_str()), text))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Compiles a flag. Problems that leave the flag loadable (an unsupported matcher, which makes
/// the flag answer `control`) are returned beside it, each naming the flag and the field.
pub(crate) fn compile_flag(f: &FeatureFlag) -> (CompiledFlag, Vec<Error>) {
    let mut problems = Vec::new();
    let mut segments = Vec::new();
    let mut conditions = Vec::new();
    let mut treatments: Vec<String> = Vec::new();
    let mut note = |t: &str| {
        if !treatments.iter().any(|x| x == t) {
            treatments.push(t.to_string());
        }
    };
    let configurations = configurations(f);
    let config_of = |t: &str| configurations.get(t).cloned();
    // One `Arc` per distinct treatment name of the flag.
    let mut names: Vec<Arc<str>> = Vec::new();
    let mut intern = |t: &str| -> Arc<str> {
        match names.iter().find(|n| &***n == t) {
            Some(n) => Arc::clone(n),
            None => {
                let n: Arc<str> = t.into();
                names.push(Arc::clone(&n));
                n
            }
        }
    };
    let default_treatment = intern(f.default_treatment.as_deref().unwrap_or("control"));
    let mut unsupported = false;
    for (i, c) in f.conditions.as_deref().unwrap_or(&[]).iter().enumerate() {
        let matchers = match compile_matchers(c, i, &mut segments) {
            Ok(m) => m,
            Err(u) => {
                problems.push(Error::InvalidDefinition {
                    flag: f.name.clone(),
                    field: u.field,
                    message: format!(
                        "{}; the flag answers \"control\" with label \"{}\"",
                        u.message,
                        Label::Unsupported
                    ),
                });
                unsupported = true;
                break;
            }
        };
        let parts = c.partitions.as_deref().unwrap_or(&[]);
        for (j, p) in parts.iter().enumerate() {
            if !(0..=100).contains(&p.size) {
                problems.push(Error::InvalidDefinition {
                    flag: f.name.clone(),
                    field: format!("conditions[{i}].partitions[{j}].size"),
                    message: format!("must be between 0 and 100, got {}", p.size),
                });
            }
            note(&p.treatment);
        }
        let (landing, taking) = Landing::new(parts.iter().map(|p| p.size));
        let partitions: Vec<CompiledPartition> = taking
            .iter()
            .filter_map(|&j| parts.get(j))
            .map(|p| CompiledPartition {
                treatment: intern(&p.treatment),
                treatment_name: crate::intern::intern(&p.treatment),
                config: config_of(&p.treatment),
            })
            .collect();
        let percentage_split = landing.splits(|i| {
            i.and_then(|i| partitions.get(i))
                .map_or(CONTROL, |p| &p.treatment)
        });
        let label: Arc<str> = match &c.label {
            Some(l) => l.as_str().into(),
            None => generated_label(c).into(),
        };
        conditions.push(CompiledCondition {
            rollout: c.condition_type.as_deref() == Some("ROLLOUT"),
            matchers,
            partitions,
            landing,
            percentage_split,
            label_name: crate::intern::intern(&label),
            label: Label::Rule(label),
        });
    }
    if unsupported {
        // §2.6: one WHITELIST-type ALL_KEYS condition answering control.
        conditions = vec![CompiledCondition {
            rollout: false,
            matchers: vec![CompiledMatcher {
                attribute: None,
                negate: false,
                kind: MatcherKind::AllKeys,
            }],
            partitions: vec![CompiledPartition {
                treatment: Arc::from("control"),
                treatment_name: Some(CONTROL_NAME),
                config: config_of("control"),
            }],
            landing: Landing::new([100]).0,
            percentage_split: false,
            label: Label::Unsupported,
            label_name: Label::Unsupported.static_name(),
        }];
        segments.clear();
        note("control");
    }
    note(&default_treatment);
    let traffic_allocation = match f.traffic_allocation {
        Some(ta) if (0..=100).contains(&ta) => ta,
        Some(ta) => {
            problems.push(Error::InvalidDefinition {
                flag: f.name.clone(),
                field: "trafficAllocation".into(),
                message: format!("must be between 0 and 100, got {ta}; using 100"),
            });
            100
        }
        None => 100,
    };
    let prerequisites = f
        .prerequisites
        .as_deref()
        .unwrap_or(&[])
        .iter()
        .map(|p| (Box::<str>::from(p.n.as_str()), boxed_list(strings(&p.ts))))
        .collect();
    segments.sort();
    segments.dedup();
    let default_config = config_of(&default_treatment);
    let control_config = config_of("control");
    let flag = CompiledFlag {
        name: f.name.as_str().into(),
        interned_name: crate::intern::intern(&f.name),
        default_treatment_name: crate::intern::intern(&default_treatment),
        traffic_type: f.traffic_type_name.as_deref().unwrap_or("user").into(),
        killed: f.killed.unwrap_or(false),
        default_treatment,
        change_number: f.change_number.unwrap_or(0),
        algo: HashAlgo::from_field(f.algo),
        traffic_allocation,
        traffic_allocation_seed: seed_of(f.traffic_allocation_seed),
        seed: seed_of(f.seed),
        conditions,
        default_config,
        control_config,
        configurations,
        sets: f.sets.clone().unwrap_or_default(),
        impressions_disabled: f.impressions_disabled.unwrap_or(false),
        prerequisites,
        treatments,
        segments,
    };
    (flag, problems)
}

impl CompiledFlag {
    /// This flag killed locally (a streamed kill, before the definition is fetched): every
    /// key gets `default_treatment`, at version `change_number`. Its rules are not needed
    /// any more (a killed flag never reaches them) and are left out.
    pub(crate) fn killed(&self, default_treatment: &str, change_number: i64) -> CompiledFlag {
        let default_config = self.configurations.get(default_treatment).cloned();
        CompiledFlag {
            name: Arc::clone(&self.name),
            interned_name: self.interned_name,
            traffic_type: Arc::clone(&self.traffic_type),
            killed: true,
            default_treatment: default_treatment.into(),
            default_treatment_name: crate::intern::intern(default_treatment),
            change_number,
            algo: self.algo,
            traffic_allocation: self.traffic_allocation,
            traffic_allocation_seed: self.traffic_allocation_seed,
            seed: self.seed,
            conditions: Vec::new(),
            configurations: self.configurations.clone(),
            default_config,
            control_config: self.control_config.clone(),
            sets: self.sets.clone(),
            impressions_disabled: self.impressions_disabled,
            prerequisites: Vec::new(),
            treatments: self.treatments.clone(),
            segments: self.segments.clone(),
        }
    }
}

/// Compiles a rule-based segment. A condition with an unsupported matcher makes the segment's
/// conditions one that matches every key (what the official SDKs do), reported as a problem.
pub(crate) fn compile_rule_based_segment(
    r: &RuleBasedSegment,
) -> (CompiledRuleBasedSegment, Vec<Error>) {
    let mut problems = Vec::new();
    let mut segments = Vec::new();
    let mut conditions = Vec::new();
    for (i, c) in r.conditions.as_deref().unwrap_or(&[]).iter().enumerate() {
        match compile_matchers(c, i, &mut segments) {
            Ok(m) => conditions.push(m),
            Err(u) => {
                problems.push(Error::InvalidDefinition {
                    flag: r.name.clone(),
                    field: u.field,
                    message: format!(
                        "{}; the rule-based segment now matches every key not excluded",
                        u.message
                    ),
                });
                conditions = vec![vec![CompiledMatcher {
                    attribute: None,
                    negate: false,
                    kind: MatcherKind::AllKeys,
                }]];
                break;
            }
        }
    }
    let excluded = r.excluded.as_ref();
    let excluded_segments: Vec<(String, ExcludedKind)> = excluded
        .and_then(|e| e.segments.as_deref())
        .unwrap_or(&[])
        .iter()
        .map(|s| {
            let kind = match s.kind.as_deref() {
                Some("rule-based") => ExcludedKind::RuleBased,
                Some("large") => ExcludedKind::Large,
                _ => ExcludedKind::Standard,
            };
            (s.name.clone(), kind)
        })
        .collect();
    segments.extend(
        excluded_segments
            .iter()
            .filter(|(_, k)| *k == ExcludedKind::Standard)
            .map(|(n, _)| n.clone()),
    );
    segments.sort();
    segments.dedup();
    (
        CompiledRuleBasedSegment {
            excluded_keys: excluded
                .and_then(|e| e.keys.as_deref())
                .unwrap_or(&[])
                .iter()
                .cloned()
                .collect(),
            excluded_segments,
            conditions,
            segments,
        },
        problems,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cond(json: serde_json::Value) -> Condition {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn generated_labels() {
        let c = cond(
            serde_json::json!({"matcherGroup":{"combiner":"AND","matchers":[
            {"matcherType":"IN_SEGMENT","userDefinedSegmentMatcherData":{"segmentName":"employees"}}]}}),
        );
        assert_eq!(generated_label(&c), "in segment employees");
        let c = cond(
            serde_json::json!({"matcherGroup":{"combiner":"AND","matchers":[
            {"keySelector":{"trafficType":"user","attribute":"location"},"matcherType":"WHITELIST",
             "whitelistMatcherData":{"whitelist":["california"]}}]}}),
        );
        assert_eq!(
            generated_label(&c),
            "user.location in list [\"california\"]"
        );
    }

    #[test]
    fn truncation() {
        assert_eq!(Truncate::Day.apply(86_400_000.0 + 5.0), Some(86_400_000.0));
        assert_eq!(Truncate::Minute.apply(-1.0), Some(-60_000.0));
        assert_eq!(Truncate::Minute.apply(9e15), None);
    }

    #[test]
    fn unsupported_matcher_is_reported_with_flag_and_field() {
        let f: FeatureFlag = serde_json::from_value(serde_json::json!({
            "name": "f", "conditions": [{"conditionType":"ROLLOUT","matcherGroup":{"matchers":[
                {"matcherType":"NEW_THING"}]},"partitions":[{"treatment":"on","size":100}]}]}))
        .unwrap();
        let (c, problems) = compile_flag(&f);
        assert_eq!(c.conditions.len(), 1);
        assert_eq!(c.conditions[0].label, Label::Unsupported);
        let msg = problems[0].to_string();
        assert!(msg.contains("flag 'f'"), "{msg}");
        assert!(
            msg.contains("conditions[0].matcherGroup.matchers[0].matcherType"),
            "{msg}"
        );
        assert!(msg.contains("NEW_THING"), "{msg}");
    }

    #[test]
    fn large_string_sets_are_packed_and_exact() {
        let items: Vec<String> = (0..1000)
            .map(|i| format!("user_{i}"))
            .chain([
                "".into(),
                "é ü 日本".into(),
                "user_7".into(),
                "user_7".into(),
            ])
            .collect();
        let StrSet::Large(set) = StrSet::new(&items) else {
            panic!("a list of 1,004 strings is packed");
        };
        assert_eq!(set.len(), 1002, "duplicates kept once");
        assert!(set.slots.len() >= 2 * set.len() && set.slots.len().is_power_of_two());
        assert_eq!(&*set.text, items[..1002].concat());
        for i in &items {
            assert!(set.contains(i), "{i:?}");
        }
        for absent in [
            "user_1000",
            "user_",
            "user_10000",
            "USER_1",
            "user_1 ",
            "日本",
        ] {
            assert!(!set.contains(absent), "{absent:?}");
        }
        let members: Vec<&str> = set.iter().collect();
        assert_eq!(
            members,
            items[..1002].iter().map(String::as_str).collect::<Vec<_>>()
        );
        // Many duplicates of few strings: a list.
        let few: Vec<String> = (0..100).map(|i| format!("k{}", i % 3)).collect();
        assert!(matches!(StrSet::new(&few), StrSet::Small(s) if s.len() == 3));
    }

    proptest::proptest! {
        /// Small sets of long strings (keys, emails): the bloom bits and the fingerprints
        /// of their first 16 and last 8 bytes.
        #[test]
        fn small_sets_of_long_strings_answer_as_a_hash_set(
            items in proptest::collection::vec("[0-9a-f-]{0,40}", 0..=16),
            queries in proptest::collection::vec("[0-9a-f-]{0,40}", 0..30),
        ) {
            let oracle: std::collections::HashSet<&str> =
                items.iter().map(String::as_str).collect();
            let set = StrSet::new(&items);
            proptest::prop_assert!(matches!(set, StrSet::Small(_)));
            for q in queries.iter().chain(&items) {
                proptest::prop_assert_eq!(set.contains(q), oracle.contains(q.as_str()), "{}", q);
                // The same text one byte shorter or longer is another string.
                let longer = format!("{q}0");
                proptest::prop_assert_eq!(set.contains(&longer), oracle.contains(longer.as_str()));
                if let Some(shorter) = q.get(..q.len().saturating_sub(1)) {
                    proptest::prop_assert_eq!(set.contains(shorter), oracle.contains(shorter));
                }
            }
        }

        #[test]
        fn string_sets_answer_as_a_hash_set(
            items in proptest::collection::vec("[a-c]{0,3}", 0..60),
            queries in proptest::collection::vec("[a-c]{0,3}", 0..30),
        ) {
            let oracle: std::collections::HashSet<&str> =
                items.iter().map(String::as_str).collect();
            // Every form: the one `new` picks, and the hash set of sets too large to pack.
            for set in [StrSet::new(&items), StrSet::hashed(&items)] {
                for q in queries.iter().chain(&items) {
                    proptest::prop_assert_eq!(set.contains(q), oracle.contains(q.as_str()), "{}", q);
                }
                let mut seen = Vec::new();
                set.all(|m| {
                    seen.push(m.to_string());
                    true
                });
                proptest::prop_assert_eq!(seen.len(), oracle.len());
                for m in &seen {
                    proptest::prop_assert!(oracle.contains(m.as_str()));
                }
            }
        }
    }
}
