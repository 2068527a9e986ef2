//! An OpenFeature evaluation context as splitkit reads it: the key, the attributes and the
//! traffic type.

use std::any::Any;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use open_feature::{EvaluationContext, EvaluationContextFieldValue, EvaluationError, Value};
use splitkit::{AttributeValue, Attributes, Key};

use crate::error;

/// The context field that holds the bucketing key, when it differs from the targeting key
/// (Split's `bucketingKey`). It is not passed on as an attribute.
pub const BUCKETING_KEY_FIELD: &str = "bucketingKey";

/// The context field that names the traffic type of a tracked event (Split's
/// `trafficType`, as the official providers read it). It is not passed on as an attribute.
pub const TRAFFIC_TYPE_FIELD: &str = "trafficType";

/// The key of an evaluation: the targeting key, and the bucketing key if the context has one.
///
/// # Errors
/// `TargetingKeyMissing` without a targeting key (or with an empty one); `InvalidContext`
/// when [`BUCKETING_KEY_FIELD`] is not a non-empty string.
pub(crate) fn key(context: &EvaluationContext) -> Result<Key<'_>, EvaluationError> {
    let matching = targeting_key(context)?;
    match context.custom_fields.get(BUCKETING_KEY_FIELD) {
        None => Ok(Key::from(matching)),
        Some(EvaluationContextFieldValue::String(b)) if !b.is_empty() => Ok(Key::new(matching, b)),
        Some(_) => Err(error::invalid_context(format!(
            "the context field {BUCKETING_KEY_FIELD} must be a non-empty string"
        ))),
    }
}

/// The context's targeting key.
///
/// # Errors
/// `TargetingKeyMissing` without a targeting key (or with an empty one).
pub(crate) fn targeting_key(context: &EvaluationContext) -> Result<&str, EvaluationError> {
    match context.targeting_key.as_deref() {
        Some(k) if !k.is_empty() => Ok(k),
        _ => Err(error::targeting_key_missing()),
    }
}

/// The traffic type of a tracked event: [`TRAFFIC_TYPE_FIELD`] of the context when it is a
/// non-blank string, else `default`.
///
/// # Errors
/// `InvalidContext` when the field is there but is not a string.
pub(crate) fn traffic_type<'a>(
    context: &'a EvaluationContext,
    default: &'a str,
) -> Result<&'a str, EvaluationError> {
    match context.custom_fields.get(TRAFFIC_TYPE_FIELD) {
        None => Ok(default),
        Some(EvaluationContextFieldValue::String(t)) if t.trim().is_empty() => Ok(default),
        Some(EvaluationContextFieldValue::String(t)) => Ok(t),
        Some(_) => Err(error::invalid_context(format!(
            "the context field {TRAFFIC_TYPE_FIELD} must be a string"
        ))),
    }
}

/// Set once the first custom field that cannot be an attribute has been warned about.
static WARNED_UNSUPPORTED: AtomicBool = AtomicBool::new(false);

/// The custom fields of an evaluation context as splitkit attributes.
///
/// Strings, integers, floats and booleans keep their type; a date-time becomes a `DATETIME`
/// value in epoch milliseconds (UTC). Structured fields
/// ([`EvaluationContextFieldValue::Struct`]) are read when they hold a list of strings
/// (`Vec<String>` or `Vec<&'static str>`), a splitkit [`AttributeValue`] (any attribute, a
/// list of numbers for instance) or an OpenFeature [`Value`]; any other structure is left
/// out, with a warning the first time. [`BUCKETING_KEY_FIELD`] and [`TRAFFIC_TYPE_FIELD`] are
/// not attributes.
///
/// # Examples
/// ```
/// use open_feature::{EvaluationContext, EvaluationContextFieldValue};
/// use splitkit::AttributeValue;
///
/// let context = EvaluationContext::default()
///     .with_targeting_key("user-42")
///     .with_custom_field("plan", "pro")
///     .with_custom_field("age", 42)
///     .with_custom_field("tags", EvaluationContextFieldValue::new_struct(vec!["beta", "eu"]));
/// let attributes = splitkit_openfeature::attributes(&context);
/// assert_eq!(attributes.get("plan"), Some(&AttributeValue::from("pro")));
/// assert_eq!(attributes.get("age"), Some(&AttributeValue::Int(42)));
/// assert_eq!(attributes.get("tags"), Some(&AttributeValue::from(vec!["beta", "eu"])));
/// ```
pub fn attributes(context: &EvaluationContext) -> Attributes {
    let mut attributes = Attributes::new();
    for (name, value) in &context.custom_fields {
        if name == BUCKETING_KEY_FIELD || name == TRAFFIC_TYPE_FIELD {
            continue;
        }
        match attribute(value) {
            Some(v) => attributes.insert(name.as_str(), v),
            None => {
                if !WARNED_UNSUPPORTED.swap(true, Ordering::Relaxed) {
                    log::warn!(
                        "the context field {name} holds a structure splitkit cannot read as an attribute (it reads lists of strings, splitkit::AttributeValue and open_feature::Value); it is left out (this warning is given once)"
                    );
                } else {
                    log::debug!("the context field {name} is not an attribute; left out");
                }
            }
        }
    }
    attributes
}

fn attribute(value: &EvaluationContextFieldValue) -> Option<AttributeValue> {
    Some(match value {
        EvaluationContextFieldValue::Bool(b) => AttributeValue::Bool(*b),
        EvaluationContextFieldValue::Int(i) => AttributeValue::Int(*i),
        EvaluationContextFieldValue::Float(f) => AttributeValue::Float(*f),
        EvaluationContextFieldValue::String(s) => AttributeValue::String(s.as_str().into()),
        EvaluationContextFieldValue::DateTime(t) => {
            let ms = t.unix_timestamp_nanos().div_euclid(1_000_000);
            AttributeValue::DateTime(i64::try_from(ms).unwrap_or(if ms < 0 {
                i64::MIN
            } else {
                i64::MAX
            }))
        }
        EvaluationContextFieldValue::Struct(any) => return structure(any),
    })
}

fn structure(any: &Arc<dyn Any + Send + Sync>) -> Option<AttributeValue> {
    if let Some(list) = any.downcast_ref::<Vec<String>>() {
        return Some(AttributeValue::List(
            list.iter()
                .map(|s| AttributeValue::String(s.as_str().into()))
                .collect(),
        ));
    }
    if let Some(list) = any.downcast_ref::<Vec<&'static str>>() {
        return Some(AttributeValue::List(
            list.iter().map(|s| AttributeValue::from(*s)).collect(),
        ));
    }
    if let Some(v) = any.downcast_ref::<AttributeValue>() {
        return Some(v.clone());
    }
    any.downcast_ref::<Value>().map(from_value)
}

/// An OpenFeature value as an attribute value (a structure becomes a JSON-like object).
fn from_value(value: &Value) -> AttributeValue {
    match value {
        Value::Bool(b) => AttributeValue::Bool(*b),
        Value::Int(i) => AttributeValue::Int(*i),
        Value::Float(f) => AttributeValue::Float(*f),
        Value::String(s) => AttributeValue::String(s.as_str().into()),
        Value::Array(items) => AttributeValue::List(items.iter().map(from_value).collect()),
        Value::Struct(s) => AttributeValue::Object(
            s.fields
                .iter()
                .map(|(k, v)| (k.clone(), from_value(v)))
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use open_feature::EvaluationErrorCode;

    use super::*;

    #[test]
    fn date_times_are_epoch_milliseconds_rounded_down() {
        let at = |nanos: i128| {
            let t = open_feature::EvaluationContextFieldValue::DateTime(
                time_of(nanos).expect("in range"),
            );
            attribute(&t)
        };
        assert_eq!(
            at(1_700_000_000_123_999_999),
            Some(AttributeValue::DateTime(1_700_000_000_123))
        );
        assert_eq!(at(-1), Some(AttributeValue::DateTime(-1)));
        assert_eq!(at(0), Some(AttributeValue::DateTime(0)));
    }

    fn time_of(nanos: i128) -> Option<time::OffsetDateTime> {
        time::OffsetDateTime::from_unix_timestamp_nanos(nanos).ok()
    }

    #[test]
    fn keys_come_from_the_targeting_key_and_the_bucketing_key_field() {
        let c = EvaluationContext::default().with_targeting_key("u");
        assert_eq!(key(&c).unwrap(), Key::from("u"));
        let c = c.with_custom_field(BUCKETING_KEY_FIELD, "acct");
        assert_eq!(key(&c).unwrap(), Key::new("u", "acct"));
        let bad = EvaluationContext::default()
            .with_targeting_key("u")
            .with_custom_field(BUCKETING_KEY_FIELD, 5);
        assert_eq!(
            key(&bad).unwrap_err().code,
            EvaluationErrorCode::InvalidContext
        );
        let empty = EvaluationContext::default().with_targeting_key("");
        assert_eq!(
            key(&empty).unwrap_err().code,
            EvaluationErrorCode::TargetingKeyMissing
        );
    }
}
