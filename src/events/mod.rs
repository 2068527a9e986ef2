//! Events: what `track` records, validated by the rules of SPLIT_SEMANTICS.md §7.3.

use serde::Serialize;
use serde_json::{Map, Value};

use crate::error::Error;
use crate::properties::{Properties, checked};
use crate::validation::check_key;

/// Largest accepted size estimate of an event's properties, in bytes.
pub const MAX_PROPERTIES_SIZE: usize = 32 * 1024;
/// Above this many properties, `track` warns (the backend trims them).
pub const MAX_PROPERTIES: usize = 300;

/// One tracked event, in the wire format of `POST /events/bulk`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Event {
    /// The key that did something.
    pub key: String,
    /// Traffic type of the key (lower case).
    #[serde(rename = "trafficTypeName")]
    pub traffic_type: String,
    /// Event type.
    #[serde(rename = "eventTypeId")]
    pub event_type: String,
    /// Numeric value, if any.
    pub value: Option<f64>,
    /// When it happened, epoch milliseconds.
    pub timestamp: i64,
    /// Properties (strings, numbers, booleans and nulls only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub properties: Option<Map<String, Value>>,
}

impl Event {
    /// Estimated size on the wire, in bytes (drives batching thresholds).
    pub(crate) fn estimated_size(&self) -> usize {
        let props: usize = self.properties.as_ref().map_or(0, |p| {
            p.iter()
                .map(|(k, v)| {
                    k.len()
                        + 4
                        + match v {
                            Value::String(s) => s.len() + 2,
                            _ => 8,
                        }
                })
                .sum()
        });
        96 + self.key.len() + self.traffic_type.len() + self.event_type.len() + props
    }
}

/// `^[a-zA-Z0-9][-_.:a-zA-Z0-9]{0,79}$`
fn valid_event_type(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 80
        && b[0].is_ascii_alphanumeric()
        && b[1..]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.' | b':'))
}

/// Validates and normalises the arguments of `track`. Warnings (lower-cased traffic type,
/// properties replaced by null, too many properties) go to `warn`; a broken rule is an
/// [`Error::InvalidInput`] naming it, and the event is not queued.
pub(crate) fn build_event(
    key: &str,
    traffic_type: &str,
    event_type: &str,
    value: Option<f64>,
    properties: Option<&Properties>,
    timestamp: i64,
    warn: &mut dyn FnMut(String),
) -> Result<Event, Error> {
    const OP: &str = "track";
    check_key(OP, "key", key).map_err(Error::InvalidInput)?;
    if traffic_type.is_empty() {
        return Err(Error::InvalidInput(format!(
            "{OP}: you passed an empty traffic_type_name, traffic_type_name must be a non-empty string"
        )));
    }
    let traffic_type = if traffic_type.chars().any(char::is_uppercase) {
        warn(format!(
            "{OP}: traffic type should be all lowercase - converting string to lowercase"
        ));
        traffic_type.to_lowercase()
    } else {
        traffic_type.to_string()
    };
    if event_type.is_empty() {
        return Err(Error::InvalidInput(format!(
            "{OP}: you passed an empty event_type, event_type must be a non-empty String"
        )));
    }
    if !valid_event_type(event_type) {
        return Err(Error::InvalidInput(format!(
            "{OP}: you passed {event_type}, event name must adhere to the regular expression ^[a-zA-Z0-9][-_.:a-zA-Z0-9]{{0,79}}$. This means an event name must be alphanumeric, cannot be more than 80 characters long, and can only include a dash, underscore, period, or colon as separators of alphanumeric characters."
        )));
    }
    if let Some(v) = value
        && !v.is_finite()
    {
        return Err(Error::InvalidInput(format!(
            "{OP}: value must be a finite number, got {v}"
        )));
    }
    let properties = match properties {
        None => None,
        Some(props) => Some(checked(OP, props, warn).map_err(|size| {
            Error::InvalidInput(format!(
                "{OP}: The maximum size allowed for the properties is {MAX_PROPERTIES_SIZE} bytes. Current one is {size} bytes. Event not queued"
            ))
        })?),
    };
    Ok(Event {
        key: key.to_string(),
        traffic_type,
        event_type: event_type.to_string(),
        value,
        timestamp,
        properties,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ok(tt: &str, et: &str, props: Option<Value>) -> (Result<Event, Error>, Vec<String>) {
        let mut w = Vec::new();
        let props = props
            .and_then(|p| p.as_object().cloned())
            .map(Properties::from);
        let r = build_event("k", tt, et, Some(1.5), props.as_ref(), 7, &mut |m| {
            w.push(m)
        });
        (r, w)
    }

    #[test]
    fn rules() {
        let (e, w) = ok("User", "page.view:x-y_z", None);
        let e = e.unwrap();
        assert_eq!(e.traffic_type, "user");
        assert_eq!(w.len(), 1);
        assert!(ok("user", "-bad", None).0.is_err());
        assert!(ok("user", &"a".repeat(81), None).0.is_err());
        assert!(ok("user", &"a".repeat(80), None).0.is_ok());
        assert!(
            ok("", "e", None)
                .0
                .unwrap_err()
                .to_string()
                .contains("traffic_type_name")
        );
        let (e, w) = ok(
            "user",
            "e",
            Some(json!({"a": 1, "b": [1], "c": "s", "d": null, "e": true})),
        );
        let p = e.unwrap().properties.unwrap();
        assert_eq!(p["b"], Value::Null);
        assert_eq!(p["a"], json!(1));
        assert_eq!(w.len(), 1);
        let big = json!({"a": "x".repeat(32 * 1024)});
        let err = ok("user", "e", Some(big)).0.unwrap_err().to_string();
        assert!(
            err.contains("32768 bytes") && err.contains("Event not queued"),
            "{err}"
        );
        let mut w = Vec::new();
        let r = build_event("k", "user", "e", Some(f64::NAN), None, 1, &mut |m| {
            w.push(m)
        });
        assert!(
            r.unwrap_err()
                .to_string()
                .contains("value must be a finite number")
        );
        let r = build_event("", "user", "e", None, None, 1, &mut |m| w.push(m));
        assert_eq!(
            r.unwrap_err().to_string(),
            "track: you passed an empty key, key must be a non-empty string"
        );
    }

    #[test]
    fn wire_form() {
        let e = build_event("k", "user", "e", None, None, 7, &mut |_| {}).unwrap();
        assert_eq!(
            serde_json::to_value(&e).unwrap(),
            json!({"key":"k","trafficTypeName":"user","eventTypeId":"e","value":null,"timestamp":7})
        );
    }
}
