//! Split's JSON definitions (splitChanges, feature flags, rule-based segments, segmentChanges)
//! as serde types, as the backend or a localhost file sends them.
//!
//! These types only describe the data; nothing here evaluates anything. Every field that the
//! official SDKs tolerate being absent or `null` is optional here too, and unknown extra fields
//! are ignored, so real payloads (with `orgId`, `environment`, ...) load unchanged.

pub(crate) mod changes;
mod flag;
mod segment;

pub use changes::{ChangesSection, SplitChanges};
pub use flag::{
    BetweenMatcherData, BetweenStringMatcherData, Condition, DependencyMatcherData, FeatureFlag,
    KeySelector, MatcherDef, MatcherGroup, Partition, Prerequisite, SegmentNameData,
    UnaryNumericMatcherData, WhitelistMatcherData,
};
pub use segment::{Excluded, ExcludedSegment, RuleBasedSegment, SegmentChanges};
