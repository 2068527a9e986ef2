//! An impression-like item and the batcher that groups it by flag, as Split's
//! `testImpressions/bulk` expects. Shared by the integration tests and the benches.

use std::collections::HashMap;

use crate::delivery::{Batcher, EncodeError};
use serde::Serialize;

/// One flag evaluation, in the wire shape of an impression (the flag is sent once
/// per group, not per item).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Impression {
    #[serde(skip)]
    pub(crate) feature: String,
    #[serde(rename = "k")]
    pub(crate) key: String,
    #[serde(rename = "t")]
    pub(crate) treatment: String,
    #[serde(rename = "m")]
    pub(crate) time: u64,
    #[serde(rename = "c")]
    pub(crate) change_number: i64,
    #[serde(rename = "r")]
    pub(crate) label: String,
}

/// An impression of `feature` for `key`, with fixed treatment, time, change number and label.
pub(crate) fn imp(feature: &str, key: &str) -> Impression {
    Impression {
        feature: feature.to_owned(),
        key: key.to_owned(),
        treatment: "on".to_owned(),
        time: 1_000,
        change_number: 7,
        label: "default rule".to_owned(),
    }
}

/// Groups impressions by flag: `[{"f": flag, "i": [...]}]`, flags in first-seen order.
pub(crate) struct ImpressionsBatcher;

impl Batcher<Impression> for ImpressionsBatcher {
    fn estimate_size(&self, i: &Impression) -> usize {
        48 + i.key.len() + i.treatment.len() + i.label.len()
    }

    fn encode(&self, items: &[Impression], out: &mut Vec<u8>) -> Result<(), EncodeError> {
        #[derive(Serialize)]
        struct Group<'a> {
            f: &'a str,
            i: Vec<&'a Impression>,
        }
        let mut index: HashMap<&str, usize> = HashMap::new();
        let mut groups: Vec<Group<'_>> = Vec::new();
        for item in items {
            let slot = *index.entry(item.feature.as_str()).or_insert_with(|| {
                groups.push(Group {
                    f: &item.feature,
                    i: Vec::new(),
                });
                groups.len() - 1
            });
            groups[slot].i.push(item);
        }
        serde_json::to_writer(out, &groups).map_err(EncodeError::new)
    }
}
