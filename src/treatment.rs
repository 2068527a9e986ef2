//! What an evaluation is asked for (the key) and what it answers (treatments, configurations,
//! details).

use serde::de::DeserializeOwned;

use crate::engine::labels::Label;
use crate::error::Error;

/// The key an evaluation is for: a matching key, and optionally a separate bucketing key.
///
/// Matchers look at the matching key; bucketing hashes the bucketing key (which defaults to
/// the matching key). A `&str` converts into a `Key` with no bucketing key.
///
/// # Examples
/// ```
/// use splitkit::Key;
/// let simple: Key<'_> = "user-1".into();
/// let split = Key::new("user-1", "account-9");
/// assert_eq!(split.bucketing_key, Some("account-9"));
/// assert_eq!(simple.matching_key, "user-1");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key<'a> {
    /// The key matchers look at.
    pub matching_key: &'a str,
    /// The key hashed into buckets; `None` uses the matching key.
    pub bucketing_key: Option<&'a str>,
}

impl<'a> Key<'a> {
    /// A key with separate matching and bucketing keys.
    pub fn new(matching_key: &'a str, bucketing_key: &'a str) -> Key<'a> {
        Key {
            matching_key,
            bucketing_key: Some(bucketing_key),
        }
    }
}

impl<'a> From<&'a str> for Key<'a> {
    fn from(k: &'a str) -> Self {
        Key {
            matching_key: k,
            bucketing_key: None,
        }
    }
}

impl<'a> From<&'a String> for Key<'a> {
    fn from(k: &'a String) -> Self {
        Key::from(k.as_str())
    }
}

/// A treatment, as the evaluation methods return it: read it as a `str`.
///
/// The treatments of loaded definitions are kept once for the life of the process, so
/// returning one copies a pointer instead of allocating a `String` (past 64 MiB of distinct
/// flag, treatment and label names, a new treatment is carried as a copy). It compares with
/// `&str` and `String`, derefs to `str`, displays as its text and converts into a `String`.
///
/// # Examples
/// ```
/// let client = splitkit::Client::builder("localhost").split_file("examples/flags.json").build()?;
/// let treatment = client.get_treatment("qa_alice", "new_checkout", None);
/// assert_eq!(treatment, "on");
/// match treatment.as_str() {
///     "on" => println!("new checkout"),
///     _ => println!("old checkout"),
/// }
/// let owned: String = treatment.into();
/// # Ok::<(), splitkit::Error>(())
/// ```
#[derive(Clone)]
pub struct Treatment(TreatmentText);

#[derive(Clone)]
enum TreatmentText {
    /// Interned, or a string the program holds.
    Static(&'static str),
    Owned(Box<str>),
}

impl Treatment {
    /// A treatment kept for the life of the process.
    #[inline]
    pub(crate) fn from_static(s: &'static str) -> Treatment {
        Treatment(TreatmentText::Static(s))
    }

    /// The text.
    #[inline]
    pub fn as_str(&self) -> &str {
        match &self.0 {
            TreatmentText::Static(s) => s,
            TreatmentText::Owned(s) => s,
        }
    }

    /// Whether this is [`CONTROL`](crate::CONTROL): no treatment could be given.
    pub fn is_control(&self) -> bool {
        self.as_str() == crate::CONTROL
    }
}

impl From<&str> for Treatment {
    fn from(s: &str) -> Treatment {
        Treatment(TreatmentText::Owned(s.into()))
    }
}

impl From<String> for Treatment {
    fn from(s: String) -> Treatment {
        Treatment(TreatmentText::Owned(s.into_boxed_str()))
    }
}

impl From<Treatment> for String {
    fn from(t: Treatment) -> String {
        match t.0 {
            TreatmentText::Static(s) => s.to_string(),
            TreatmentText::Owned(s) => s.into_string(),
        }
    }
}

impl PartialEq for Treatment {
    fn eq(&self, other: &Treatment) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Treatment {}

impl PartialOrd for Treatment {
    fn partial_cmp(&self, other: &Treatment) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Treatment {
    fn cmp(&self, other: &Treatment) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl std::hash::Hash for Treatment {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

crate::text::str_like!(Treatment);

impl serde::Serialize for Treatment {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// A treatment with its configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreatmentWithConfig {
    /// The treatment.
    pub treatment: Treatment,
    /// The treatment's configuration (a JSON text), if the flag defines one.
    pub config: Option<String>,
}

/// Everything one client evaluation decided.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct TreatmentDetails {
    /// The treatment.
    pub treatment: Treatment,
    /// Why; `None` only when the input was invalid or the client destroyed (then there is no
    /// impression either).
    pub label: Option<Label>,
    /// The treatment's configuration, if any.
    pub config: Option<String>,
    /// The flag's change number, when the flag exists.
    pub change_number: Option<i64>,
    /// Whether this evaluation produces an impression (every evaluation does except invalid
    /// input, a destroyed client and `definition not found`).
    pub impression: bool,
    /// Whether the targeting rule that decided shares keys out among treatments by bucket:
    /// a percentage split (50/50, or shares under 100 that leave some keys `control`), where
    /// the key's hash chose the treatment. False when the rule gives every key it matches
    /// the same treatment, for labels that are not a rule's (`killed`, `no rule matched`,
    /// `not in split`, `not ready`...) and for a fallback treatment. What OpenFeature calls
    /// the `SPLIT` reason.
    ///
    /// # Examples
    /// ```
    /// let client = splitkit::Client::builder("localhost").split_file("examples/flags.json").build()?;
    /// // qa_alice is whitelisted: every whitelisted key gets "on".
    /// assert!(!client.evaluate("qa_alice", "new_checkout", None).percentage_split);
    /// // carol falls through to the 50/50 rollout.
    /// let d = client.evaluate("carol", "new_checkout", None);
    /// assert_eq!(d.label.map(|l| l.to_string()).as_deref(), Some("default rule"));
    /// assert!(d.percentage_split);
    /// # Ok::<(), splitkit::Error>(())
    /// ```
    pub percentage_split: bool,
}

/// The configuration text parsed as JSON into `T` (`None` without a configuration).
fn parse_config<T: DeserializeOwned>(config: Option<&str>) -> Result<Option<T>, Error> {
    config
        .map(|text| {
            serde_json::from_str(text).map_err(|e| Error::Parse {
                origin: "the treatment's configuration".into(),
                line: Some(e.line()),
                message: e.to_string(),
            })
        })
        .transpose()
}

impl TreatmentWithConfig {
    /// The configuration parsed as JSON (`None` when the treatment has none).
    ///
    /// # Errors
    /// [`Error::Parse`] when the configuration is not JSON.
    ///
    /// # Examples
    /// ```
    /// let client = splitkit::Client::builder("localhost").split_file("examples/flags.json").build()?;
    /// let t = client.get_treatment_with_config("qa_alice", "new_checkout", None);
    /// let config = t.config_value()?.expect("the 'on' treatment has a configuration");
    /// assert_eq!(config["button_color"], "green");
    /// # Ok::<(), splitkit::Error>(())
    /// ```
    pub fn config_value(&self) -> Result<Option<serde_json::Value>, Error> {
        parse_config(self.config.as_deref())
    }

    /// The configuration deserialized into `T` (`None` when the treatment has none).
    ///
    /// # Errors
    /// [`Error::Parse`] naming the field when the configuration is not JSON or does not
    /// fit `T`.
    ///
    /// # Examples
    /// ```
    /// #[derive(serde::Deserialize)]
    /// struct Checkout { button_color: String, steps: u32 }
    ///
    /// let client = splitkit::Client::builder("localhost").split_file("examples/flags.json").build()?;
    /// let t = client.get_treatment_with_config("qa_alice", "new_checkout", None);
    /// let checkout: Checkout = t.parse_config()?.expect("a configuration");
    /// assert_eq!((checkout.button_color.as_str(), checkout.steps), ("green", 1));
    /// # Ok::<(), splitkit::Error>(())
    /// ```
    pub fn parse_config<T: DeserializeOwned>(&self) -> Result<Option<T>, Error> {
        parse_config(self.config.as_deref())
    }
}

impl TreatmentDetails {
    /// The configuration parsed as JSON (`None` when the treatment has none).
    ///
    /// # Errors
    /// [`Error::Parse`] when the configuration is not JSON.
    pub fn config_value(&self) -> Result<Option<serde_json::Value>, Error> {
        parse_config(self.config.as_deref())
    }

    /// The configuration deserialized into `T` (`None` when the treatment has none).
    ///
    /// # Errors
    /// [`Error::Parse`] naming the field when the configuration is not JSON or does not
    /// fit `T`.
    pub fn parse_config<T: DeserializeOwned>(&self) -> Result<Option<T>, Error> {
        parse_config(self.config.as_deref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize, PartialEq)]
    struct Banner {
        color: String,
        size: Option<u32>,
    }

    fn with(config: Option<&str>) -> TreatmentWithConfig {
        TreatmentWithConfig {
            treatment: "on".into(),
            config: config.map(str::to_string),
        }
    }

    #[test]
    fn a_treatment_reads_and_compares_as_its_text() {
        let interned = Treatment::from_static("on");
        let copied = Treatment::from(String::from("on"));
        for t in [&interned, &copied] {
            assert_eq!(*t, "on");
            assert_eq!("on", *t);
            assert_eq!(*t, String::from("on"));
            assert_eq!(t.len(), 2);
            assert!(!t.is_control());
            assert_eq!(format!("[{t:>4}] {t:?}"), "[  on] \"on\"");
            assert_eq!(serde_json::to_string(t).unwrap(), "\"on\"");
            assert_eq!(String::from(t.clone()), "on");
        }
        assert_eq!(interned, copied);
        assert_ne!(interned, Treatment::from("off"));
        assert!(Treatment::from_static(crate::CONTROL).is_control());
        let set: std::collections::HashSet<Treatment> = [interned, copied].into();
        assert!(set.contains("on"));
    }

    #[test]
    fn configs_parse_into_values_and_types() {
        let t = with(Some(r#"{"color":"red","size":3}"#));
        assert_eq!(t.config_value().unwrap().unwrap()["size"], 3);
        assert_eq!(
            t.parse_config::<Banner>().unwrap(),
            Some(Banner {
                color: "red".into(),
                size: Some(3)
            })
        );
        assert_eq!(with(None).parse_config::<Banner>().unwrap(), None);
        assert_eq!(with(None).config_value().unwrap(), None);
    }

    #[test]
    fn a_config_that_does_not_fit_names_the_problem() {
        let e = with(Some(r#"{"size":3}"#))
            .parse_config::<Banner>()
            .unwrap_err();
        assert!(e.to_string().contains("missing field `color`"), "{e}");
        let e = with(Some("{\n  \"color\": 5\n}"))
            .parse_config::<Banner>()
            .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("cannot parse the treatment's configuration at line 2:"),
            "{e}"
        );
        assert!(with(Some("not json")).config_value().is_err());
    }
}
