use std::collections::HashMap;

use serde::{Deserialize, Serialize};

/// A feature flag definition (Split's `Split` object), as found in a splitChanges document.
///
/// Absent or `null` fields take the defaults the official SDKs apply when the flag is
/// compiled (see [`crate::Snapshot`]); unknown fields are ignored.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FeatureFlag {
    /// Flag name, the key it is evaluated by.
    pub name: String,
    /// Traffic type of the flag (`user`, `account`, ...).
    #[serde(default)]
    pub traffic_type_name: Option<String>,
    /// Kill switch: when true every evaluation returns the default treatment.
    #[serde(default)]
    pub killed: Option<bool>,
    /// Treatment returned when killed, when no rule matches, and when not in split.
    #[serde(default)]
    pub default_treatment: Option<String>,
    /// Version of the definition, copied into impressions.
    #[serde(default)]
    pub change_number: Option<i64>,
    /// Hash algorithm: `2` is murmur3, anything else the legacy hash.
    #[serde(default)]
    pub algo: Option<i64>,
    /// Percentage (0..=100) of bucketing keys that enter the ROLLOUT conditions.
    #[serde(default)]
    pub traffic_allocation: Option<i64>,
    /// Seed of the traffic allocation bucket.
    #[serde(default)]
    pub traffic_allocation_seed: Option<i64>,
    /// Seed of the treatment bucket.
    #[serde(default)]
    pub seed: Option<i64>,
    /// `ACTIVE` or `ARCHIVED`.
    #[serde(default)]
    pub status: Option<String>,
    /// Targeting rules, evaluated in order.
    #[serde(default)]
    pub conditions: Option<Vec<Condition>>,
    /// Treatment name to configuration (a JSON text), returned with the treatment.
    #[serde(default)]
    pub configurations: Option<HashMap<String, serde_json::Value>>,
    /// Flag sets this flag belongs to.
    #[serde(default)]
    pub sets: Option<Vec<String>>,
    /// When true, impressions of this flag are only counted, never sent one by one.
    #[serde(default)]
    pub impressions_disabled: Option<bool>,
    /// Flags (and treatments) that must hold before this flag's rules are evaluated.
    #[serde(default)]
    pub prerequisites: Option<Vec<Prerequisite>>,
}

/// A prerequisite: flag `n` must evaluate to one of the treatments `ts`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Prerequisite {
    /// Name of the prerequisite flag.
    #[serde(default)]
    pub n: String,
    /// Treatments of that flag that satisfy the prerequisite.
    #[serde(default)]
    pub ts: Option<Vec<String>>,
}

/// A targeting rule: matchers combined with AND, then partitions of treatments.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// `WHITELIST` or `ROLLOUT`; anything else (or absent) is handled as `WHITELIST`.
    #[serde(default)]
    pub condition_type: Option<String>,
    /// The matchers of the rule.
    #[serde(default)]
    pub matcher_group: Option<MatcherGroup>,
    /// Treatments and their sizes (percentages), walked in order.
    #[serde(default)]
    pub partitions: Option<Vec<Partition>>,
    /// The label impressions carry when this rule decides.
    #[serde(default)]
    pub label: Option<String>,
}

/// A group of matchers and how they are combined.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MatcherGroup {
    /// Only `AND` is defined.
    #[serde(default)]
    pub combiner: Option<String>,
    /// The matchers.
    #[serde(default)]
    pub matchers: Option<Vec<MatcherDef>>,
}

/// One treatment with its share of the buckets.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Partition {
    /// Treatment name.
    #[serde(default)]
    pub treatment: String,
    /// Share, in percent.
    #[serde(default)]
    pub size: i64,
}

/// One matcher definition, with the data fields of every matcher type (all but one are null).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MatcherDef {
    /// What the matcher looks at: the key, or an attribute.
    #[serde(default)]
    pub key_selector: Option<KeySelector>,
    /// Matcher type, e.g. `IN_SEGMENT`, `WHITELIST`, `EQUAL_TO_SEMVER`.
    #[serde(default)]
    pub matcher_type: String,
    /// Negates the result.
    #[serde(default)]
    pub negate: Option<bool>,
    /// Segment name for `IN_SEGMENT` and `IN_RULE_BASED_SEGMENT`.
    #[serde(default)]
    pub user_defined_segment_matcher_data: Option<SegmentNameData>,
    /// Large segment name for `IN_LARGE_SEGMENT`.
    #[serde(default)]
    pub user_defined_large_segment_matcher_data: Option<serde_json::Value>,
    /// List of strings for whitelist, set, string and `IN_LIST_SEMVER` matchers.
    #[serde(default)]
    pub whitelist_matcher_data: Option<WhitelistMatcherData>,
    /// Data of `EQUAL_TO`, `GREATER_THAN_OR_EQUAL_TO` and `LESS_THAN_OR_EQUAL_TO`.
    #[serde(default)]
    pub unary_numeric_matcher_data: Option<UnaryNumericMatcherData>,
    /// Data of `BETWEEN`.
    #[serde(default)]
    pub between_matcher_data: Option<BetweenMatcherData>,
    /// Data of `BETWEEN_SEMVER`.
    #[serde(default)]
    pub between_string_matcher_data: Option<BetweenStringMatcherData>,
    /// Data of `IN_SPLIT_TREATMENT`.
    #[serde(default)]
    pub dependency_matcher_data: Option<DependencyMatcherData>,
    /// Data of `EQUAL_TO_BOOLEAN`.
    #[serde(default)]
    pub boolean_matcher_data: Option<bool>,
    /// Data of `MATCHES_STRING` and the unary semver matchers.
    #[serde(default)]
    pub string_matcher_data: Option<String>,
}

/// Selects the value a matcher looks at.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeySelector {
    /// Traffic type (informational).
    #[serde(default)]
    pub traffic_type: Option<String>,
    /// Attribute name; absent or null means the matching key.
    #[serde(default)]
    pub attribute: Option<String>,
}

/// `{"segmentName": ...}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SegmentNameData {
    /// The segment (or rule-based segment) name.
    #[serde(default)]
    pub segment_name: Option<String>,
}

/// `{"whitelist": [...]}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WhitelistMatcherData {
    /// The strings.
    #[serde(default)]
    pub whitelist: Option<Vec<String>>,
}

/// `{"dataType": "NUMBER"|"DATETIME", "value": n}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UnaryNumericMatcherData {
    /// `NUMBER` or `DATETIME` (epoch milliseconds).
    #[serde(default)]
    pub data_type: Option<String>,
    /// The number.
    #[serde(default)]
    pub value: Option<serde_json::Number>,
}

/// `{"dataType", "start", "end"}`, both ends inclusive.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BetweenMatcherData {
    /// `NUMBER` or `DATETIME` (epoch milliseconds).
    #[serde(default)]
    pub data_type: Option<String>,
    /// Lower bound.
    #[serde(default)]
    pub start: Option<serde_json::Number>,
    /// Upper bound.
    #[serde(default)]
    pub end: Option<serde_json::Number>,
}

/// `{"start": "1.0.0", "end": "2.0.0"}` for `BETWEEN_SEMVER`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BetweenStringMatcherData {
    /// Lower bound (a semantic version).
    #[serde(default)]
    pub start: Option<String>,
    /// Upper bound (a semantic version).
    #[serde(default)]
    pub end: Option<String>,
}

/// `{"split": name, "treatments": [...]}` for `IN_SPLIT_TREATMENT`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DependencyMatcherData {
    /// The flag evaluated.
    #[serde(default)]
    pub split: Option<String>,
    /// Treatments of that flag that make the matcher true.
    #[serde(default)]
    pub treatments: Option<Vec<String>>,
}
