use serde::{Deserialize, Serialize};

use super::flag::Condition;

/// A segmentChanges document: keys added to and removed from a segment since a change number.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SegmentChanges {
    /// Segment name.
    #[serde(default)]
    pub name: String,
    /// Keys added.
    #[serde(default)]
    pub added: Vec<String>,
    /// Keys removed.
    #[serde(default)]
    pub removed: Vec<String>,
    /// Change number the change starts from.
    #[serde(default)]
    pub since: i64,
    /// Change number the change brings the segment to.
    #[serde(default)]
    pub till: i64,
}

/// A rule-based segment (spec 1.3): keys matched by conditions, minus exclusions.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RuleBasedSegment {
    /// Name, referenced by `IN_RULE_BASED_SEGMENT` matchers.
    pub name: String,
    /// Version.
    #[serde(default)]
    pub change_number: Option<i64>,
    /// `ACTIVE` or `ARCHIVED`.
    #[serde(default)]
    pub status: Option<String>,
    /// Traffic type.
    #[serde(default)]
    pub traffic_type_name: Option<String>,
    /// Keys and segments excluded before the conditions are looked at.
    #[serde(default)]
    pub excluded: Option<Excluded>,
    /// Conditions; a key is in the segment when any of them matches.
    #[serde(default)]
    pub conditions: Option<Vec<Condition>>,
}

/// The exclusions of a rule-based segment.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Excluded {
    /// Excluded keys.
    #[serde(default)]
    pub keys: Option<Vec<String>>,
    /// Excluded segments.
    #[serde(default)]
    pub segments: Option<Vec<ExcludedSegment>>,
}

/// An excluded segment: `type` is `standard`, `rule-based` or `large`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ExcludedSegment {
    /// Segment name.
    #[serde(default)]
    pub name: String,
    /// Segment type; unknown types are handled as `standard`.
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
}

impl SegmentChanges {
    /// Reads every `*.json` file of `dir` as a segmentChanges document, sorted by file name.
    /// A file without a `name` takes its file stem as the segment name.
    ///
    /// # Errors
    /// [`crate::Error::Io`] or [`crate::Error::Parse`] naming the directory or file.
    pub fn load_dir(dir: &std::path::Path) -> crate::Result<Vec<SegmentChanges>> {
        crate::localhost::load_segments(dir)
    }
}
