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

/// A treatment with its configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreatmentWithConfig {
    /// The treatment.
    pub treatment: String,
    /// The treatment's configuration (a JSON text), if the flag defines one.
    pub config: Option<String>,
}

/// Everything one client evaluation decided.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct TreatmentDetails {
    /// The treatment.
    pub treatment: String,
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
