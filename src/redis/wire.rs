//! The elements the Synchronizer reads from Redis, as the official SDKs write them:
//!
//! - `SPLITIO.impressions`: `{"m":{"s","i","n"},"i":{"k","b","f","t","r","c","m","pt","properties"}}`
//! - `SPLITIO.events`: `{"m":{"s","i","n"},"e":{"key","trafficTypeName","eventTypeId","value","timestamp","properties"}}`
//! - `SPLITIO.impressions.count`: HINCRBY of field `{flag}::{hour ms}`
//! - `SPLITIO.uniquekeys`: `{"f","ks"}`
//!
//! A request body holds one element a line (JSON never holds a raw newline); for the counts
//! hash each line is `["{flag}::{hour}",count]`. [`super::RedisTransport`] pushes them.

use std::sync::Arc;

use crate::delivery::{Batcher, EncodeError};
use crate::events::Event;
use crate::impressions::{Count, FlagKeys, SdkMetadata, write_int, write_json_str};

/// What an element's `m` says when IP reporting is off or the value is unknown (as both
/// official SDKs write).
const NOT_AVAILABLE: &str = "NA";

/// The `m` object of every element: `{"s":"rust-<version>","i":<ip>,"n":<hostname>}`.
pub(crate) fn metadata(m: &SdkMetadata) -> Arc<[u8]> {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(b"{\"s\":");
    write_json_str(&mut out, m.sdk_version);
    out.extend_from_slice(b",\"i\":");
    write_json_str(&mut out, m.machine_ip.as_deref().unwrap_or(NOT_AVAILABLE));
    out.extend_from_slice(b",\"n\":");
    write_json_str(&mut out, m.machine_name.as_deref().unwrap_or(NOT_AVAILABLE));
    out.push(b'}');
    out.into()
}

/// Writes an impression element: `{"m":<meta>,"i":{"f":<flag>,…}}`, where `…` are the
/// fields of the impression as `write_wire` writes them for `testImpressions/bulk`.
pub(crate) fn write_impression(
    out: &mut Vec<u8>,
    meta: &[u8],
    flag: &str,
    write_wire: impl FnOnce(&mut Vec<u8>),
) {
    out.extend_from_slice(b"{\"m\":");
    out.extend_from_slice(meta);
    out.extend_from_slice(b",\"i\":{\"f\":");
    write_json_str(out, flag);
    let start = out.len();
    write_wire(out);
    // The wire object's opening brace becomes the comma after "f".
    if let Some(b) = out.get_mut(start) {
        *b = b',';
    }
    out.push(b'}');
}

/// Events as `SPLITIO.events` elements.
pub(crate) struct EventElements {
    pub(crate) meta: Arc<[u8]>,
}

impl Batcher<Event> for EventElements {
    fn estimate_size(&self, e: &Event) -> usize {
        e.estimated_size() + self.meta.len() + 12
    }

    fn encode(&self, items: &[Event], out: &mut Vec<u8>) -> Result<(), EncodeError> {
        for (n, e) in items.iter().enumerate() {
            if n > 0 {
                out.push(b'\n');
            }
            out.extend_from_slice(b"{\"m\":");
            out.extend_from_slice(&self.meta);
            out.extend_from_slice(b",\"e\":");
            serde_json::to_writer(&mut *out, e).map_err(EncodeError::new)?;
            out.push(b'}');
        }
        Ok(())
    }
}

/// Impression counts as `["{flag}::{hour}",count]` lines, for HINCRBY.
pub(crate) struct CountElements;

impl Batcher<Count> for CountElements {
    fn estimate_size(&self, c: &Count) -> usize {
        32 + c.flag.len()
    }

    fn encode(&self, items: &[Count], out: &mut Vec<u8>) -> Result<(), EncodeError> {
        for (n, c) in items.iter().enumerate() {
            if n > 0 {
                out.push(b'\n');
            }
            out.push(b'[');
            write_json_str(out, &format!("{}::{}", c.flag, c.hour));
            out.push(b',');
            write_int(out, i64::try_from(c.count).unwrap_or(i64::MAX));
            out.push(b']');
        }
        Ok(())
    }
}

/// Unique keys as `SPLITIO.uniquekeys` elements, `{"f":<flag>,"ks":[…]}`.
pub(crate) struct UniqueKeyElements;

impl Batcher<FlagKeys> for UniqueKeyElements {
    fn estimate_size(&self, k: &FlagKeys) -> usize {
        16 + k.flag.len() + k.keys.iter().map(|k| k.len() + 3).sum::<usize>()
    }

    fn encode(&self, items: &[FlagKeys], out: &mut Vec<u8>) -> Result<(), EncodeError> {
        for (n, k) in items.iter().enumerate() {
            if n > 0 {
                out.push(b'\n');
            }
            k.write_json(out);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_impression_element_has_the_flag_inside() {
        let meta = metadata(&SdkMetadata {
            sdk_version: "rust-1.0.0",
            machine_ip: None,
            machine_name: Some("box".into()),
        });
        let mut out = Vec::new();
        write_impression(&mut out, &meta, "f", |o| {
            o.extend_from_slice(br#"{"k":"ann","t":"on","m":5,"c":7}"#)
        });
        let v: serde_json::Value = serde_json::from_slice(&out).expect("JSON");
        assert_eq!(
            v,
            serde_json::json!({"m":{"s":"rust-1.0.0","i":"NA","n":"box"},
                "i":{"f":"f","k":"ann","t":"on","m":5,"c":7}})
        );
    }

    #[test]
    fn counts_and_unique_keys_are_one_element_a_line() {
        let mut out = Vec::new();
        let counts = [
            Count {
                flag: "a".into(),
                hour: 3_600_000,
                count: 2,
            },
            Count {
                flag: "b\n".into(),
                hour: 0,
                count: 1,
            },
        ];
        CountElements.encode(&counts, &mut out).expect("encodes");
        assert_eq!(out, b"[\"a::3600000\",2]\n[\"b\\n::0\",1]");
        out.clear();
        let keys = [FlagKeys {
            flag: "a".into(),
            keys: vec!["k1".into(), "k2".into()],
        }];
        UniqueKeyElements.encode(&keys, &mut out).expect("encodes");
        assert_eq!(out, br#"{"f":"a","ks":["k1","k2"]}"#);
    }
}
