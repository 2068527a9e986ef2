//! Properties: the name-value pairs an event (`track`) or an impression carries.

use serde_json::{Map, Number, Value};

use crate::events::{MAX_PROPERTIES, MAX_PROPERTIES_SIZE};

/// Properties of an event or an impression: names mapped to strings, numbers, booleans or
/// null, the value types Split accepts.
///
/// Build them with [`Properties::with`]; a JSON object converts too (`From<serde_json::Map>`),
/// in which case arrays and objects inside are replaced by null with a warning when used, as
/// the official SDKs do. They are kept, and sent, sorted by name.
///
/// # Examples
/// ```
/// use splitkit::Properties;
/// let p = Properties::new()
///     .with("plan", "pro")
///     .with("items", 3)
///     .with("price", 9.5)
///     .with("gift", false)
///     .with("coupon", None::<&str>);
/// assert_eq!(p.len(), 5);
/// assert_eq!(p.to_json(), r#"{"coupon":null,"gift":false,"items":3,"plan":"pro","price":9.5}"#);
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Properties {
    map: Map<String, Value>,
}

/// One property value: a string, a number, a boolean or null.
#[derive(Debug, Clone, PartialEq)]
pub struct PropertyValue(Value);

impl Properties {
    /// No properties.
    pub fn new() -> Properties {
        Properties::default()
    }

    /// These properties and `name` set to `value` (replacing an earlier value of `name`).
    #[must_use]
    pub fn with(mut self, name: impl Into<String>, value: impl Into<PropertyValue>) -> Properties {
        self.insert(name, value);
        self
    }

    /// Sets `name` to `value`, replacing an earlier value of `name`.
    pub fn insert(&mut self, name: impl Into<String>, value: impl Into<PropertyValue>) {
        self.map.insert(name.into(), value.into().0);
    }

    /// How many properties there are.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The properties as one JSON object, the form they take on the wire.
    pub fn to_json(&self) -> String {
        Value::Object(self.map.clone()).to_string()
    }

    /// The JSON object behind the properties.
    pub(crate) fn as_map(&self) -> &Map<String, Value> {
        &self.map
    }
}

/// Properties checked by the official SDKs' rules: arrays and objects become null (with a
/// warning), more than [`MAX_PROPERTIES`] warn. `Err` holds the size the properties
/// estimate to when it passes [`MAX_PROPERTIES_SIZE`] (names and string values, plus 1 KB).
pub(crate) fn checked(
    op: &str,
    props: &Properties,
    warn: &mut dyn FnMut(String),
) -> Result<Map<String, Value>, usize> {
    let props = props.as_map();
    if props.len() > MAX_PROPERTIES {
        warn(format!(
            "{op}: Event has more than {MAX_PROPERTIES} properties. Some of them will be trimmed when processed"
        ));
    }
    let mut size = 1024usize;
    let mut clean = Map::with_capacity(props.len());
    for (name, v) in props {
        let v = match v {
            Value::Array(_) | Value::Object(_) => {
                warn(format!(
                    "{op}: Property {name} is of invalid type. Setting value to null"
                ));
                Value::Null
            }
            other => other.clone(),
        };
        size += name.len();
        if let Value::String(s) = &v {
            size += s.len();
        }
        if size > MAX_PROPERTIES_SIZE {
            return Err(size);
        }
        clean.insert(name.clone(), v);
    }
    Ok(clean)
}

/// Options of one evaluation, for [`Client::with_options`](crate::Client::with_options).
///
/// # Examples
/// ```
/// use splitkit::{EvaluationOptions, Properties};
/// let options = EvaluationOptions::new().properties(Properties::new().with("page", "cart"));
/// assert!(options.properties.is_some());
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct EvaluationOptions {
    /// Properties the impressions of the evaluation carry (as the JSON text of the wire's
    /// `properties` field, and in listeners, the webhook and Segment). An impression with
    /// properties is always sent, never deduplicated, in optimized and debug mode, as the
    /// official SDKs do. They follow the rules of event properties: strings, numbers,
    /// booleans and null, at most 32 KB; beyond that they are dropped with an error logged
    /// (the evaluation goes on).
    pub properties: Option<Properties>,
}

impl EvaluationOptions {
    /// No options.
    pub fn new() -> EvaluationOptions {
        EvaluationOptions::default()
    }

    /// These options with impression properties.
    #[must_use]
    pub fn properties(mut self, properties: Properties) -> EvaluationOptions {
        self.properties = Some(properties);
        self
    }

    /// The impression properties as the wire carries them (checked; `None` when there are
    /// none, they are empty, or they are too large, which logs an error).
    pub(crate) fn impression_properties(&self, op: &str) -> Option<String> {
        let props = self.properties.as_ref().filter(|p| !p.is_empty())?;
        match checked(op, props, &mut |w| log::warn!("{w}")) {
            Ok(clean) => Some(Value::Object(clean).to_string()),
            Err(size) => {
                log::error!(
                    "{op}: The maximum size allowed for the properties is {MAX_PROPERTIES_SIZE} bytes. Current one is {size} bytes. Properties discarded"
                );
                None
            }
        }
    }
}

impl From<Map<String, Value>> for Properties {
    fn from(map: Map<String, Value>) -> Properties {
        Properties { map }
    }
}

impl From<&str> for PropertyValue {
    fn from(s: &str) -> Self {
        PropertyValue(Value::String(s.to_string()))
    }
}

impl From<String> for PropertyValue {
    fn from(s: String) -> Self {
        PropertyValue(Value::String(s))
    }
}

impl From<&String> for PropertyValue {
    fn from(s: &String) -> Self {
        PropertyValue(Value::String(s.clone()))
    }
}

impl From<bool> for PropertyValue {
    fn from(b: bool) -> Self {
        PropertyValue(Value::Bool(b))
    }
}

impl From<f64> for PropertyValue {
    /// A number; NaN and infinities, which JSON cannot hold, become null.
    fn from(n: f64) -> Self {
        PropertyValue(Number::from_f64(n).map_or(Value::Null, Value::Number))
    }
}

impl From<f32> for PropertyValue {
    fn from(n: f32) -> Self {
        PropertyValue::from(f64::from(n))
    }
}

macro_rules! integer_values {
    ($($t:ty),*) => {$(
        impl From<$t> for PropertyValue {
            fn from(n: $t) -> Self {
                PropertyValue(Value::Number(Number::from(n)))
            }
        }
    )*};
}
integer_values!(i8, i16, i32, i64, u8, u16, u32, u64, isize, usize);

impl<T: Into<PropertyValue>> From<Option<T>> for PropertyValue {
    /// The value, or null for `None`.
    fn from(v: Option<T>) -> Self {
        v.map_or(PropertyValue(Value::Null), Into::into)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_keep_their_json_types() {
        let p = Properties::new()
            .with("s", String::from("x"))
            .with("i", -3i64)
            .with("u", 7u8)
            .with("f", 0.25f32)
            .with("nan", f64::NAN)
            .with("b", true)
            .with("n", None::<i32>)
            .with("some", Some("y"));
        assert_eq!(
            p.to_json(),
            r#"{"b":true,"f":0.25,"i":-3,"n":null,"nan":null,"s":"x","some":"y","u":7}"#
        );
    }

    #[test]
    fn a_name_set_twice_keeps_the_last_value() {
        let mut p = Properties::new().with("a", 1).with("b", 2);
        p.insert("a", "again");
        assert_eq!(p.to_json(), r#"{"a":"again","b":2}"#);
        assert_eq!(p.len(), 2);
        assert!(!p.is_empty() && Properties::new().is_empty());
    }

    #[test]
    fn a_json_object_converts() {
        let v = serde_json::json!({"plan": "pro", "tags": ["a"]});
        let p = Properties::from(v.as_object().cloned().unwrap_or_default());
        assert_eq!(p.len(), 2);
        assert_eq!(p.as_map()["plan"], "pro");
    }
}
