//! Fallback treatments: what a client answers instead of `control`, globally or per flag.
//!
//! As in Split's official SDKs: wherever an evaluation would answer `control` (invalid input,
//! a destroyed or not yet ready client, an unknown flag, an exception, a definition whose
//! treatment is `control`), the fallback of the flag, or else the global one, answers
//! instead, with its configuration. The impression, where there is one, carries the fallback
//! treatment and the label `fallback - <the label the evaluation had>`.

use std::borrow::Cow;
use std::sync::Arc;

use crate::engine::FastMap;
use crate::engine::labels::Label;
use crate::error::Error;
use crate::intern::{Name, intern};

/// A treatment to answer instead of `control`, with an optional configuration (a JSON
/// text, as in flag definitions).
///
/// # Examples
/// ```
/// use splitkit::FallbackTreatment;
/// let off = FallbackTreatment::new("off").with_config(r#"{"color": "grey"}"#);
/// assert_eq!((off.treatment(), off.config()), ("off", Some(r#"{"color": "grey"}"#)));
/// let plain: FallbackTreatment = "off".into();
/// assert_eq!(plain.config(), None);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FallbackTreatment {
    treatment: String,
    config: Option<String>,
}

impl FallbackTreatment {
    /// The treatment `treatment`, without a configuration.
    pub fn new(treatment: impl Into<String>) -> FallbackTreatment {
        FallbackTreatment {
            treatment: treatment.into(),
            config: None,
        }
    }

    /// This treatment with the configuration `config`.
    #[must_use]
    pub fn with_config(mut self, config: impl Into<String>) -> FallbackTreatment {
        self.config = Some(config.into());
        self
    }

    /// The treatment.
    pub fn treatment(&self) -> &str {
        &self.treatment
    }

    /// The configuration, if any.
    pub fn config(&self) -> Option<&str> {
        self.config.as_deref()
    }
}

impl From<&str> for FallbackTreatment {
    fn from(t: &str) -> Self {
        FallbackTreatment::new(t)
    }
}

impl From<String> for FallbackTreatment {
    fn from(t: String) -> Self {
        FallbackTreatment::new(t)
    }
}

/// The official SDKs' rule for a fallback treatment: at most 100 characters matching
/// `^[0-9]+[.a-zA-Z0-9_-]*$|^[a-zA-Z]+[a-zA-Z0-9_-]*$`.
fn valid_treatment(t: &str) -> bool {
    let b = t.as_bytes();
    let tail = |rest: &[u8], dot: bool| {
        rest.iter()
            .all(|&c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-' || (dot && c == b'.'))
    };
    if b.is_empty() || b.len() > 100 {
        return false;
    }
    let digits = b.iter().take_while(|c| c.is_ascii_digit()).count();
    if digits > 0 {
        return tail(&b[digits..], true);
    }
    let letters = b.iter().take_while(|c| c.is_ascii_alphabetic()).count();
    letters > 0 && tail(&b[letters..], false)
}

/// Checks a fallback as given to the builder; the error names the option, the flag and what
/// is wrong.
pub(crate) fn check(
    option: &'static str,
    flag: Option<&str>,
    fallback: &FallbackTreatment,
) -> Result<(), Error> {
    let whose = flag.map(|f| format!("flag '{f}': ")).unwrap_or_default();
    if let Some(f) = flag
        && (f.is_empty() || f.chars().count() > 100 || f.contains(char::is_whitespace))
    {
        return Err(Error::Config {
            option,
            message: format!("{whose}a flag name must be 1 to 100 characters without spaces"),
        });
    }
    if !valid_treatment(&fallback.treatment) {
        return Err(Error::Config {
            option,
            message: format!(
                "{whose}treatment {:?} is not a valid treatment (at most 100 characters: letters, digits, '_' and '-', or digits first and then also '.')",
                fallback.treatment
            ),
        });
    }
    Ok(())
}

/// One fallback, ready for the evaluation path.
#[derive(Debug)]
pub(crate) struct Compiled {
    pub(crate) treatment: Box<str>,
    pub(crate) config: Option<Box<str>>,
    /// The treatment interned, for the queued impression.
    pub(crate) name: Option<Name>,
}

impl Compiled {
    fn new(f: &FallbackTreatment) -> Compiled {
        Compiled {
            treatment: f.treatment.as_str().into(),
            config: f.config.as_deref().map(Into::into),
            name: intern(&f.treatment),
        }
    }
}

/// The fallback labels of the labels that are not a rule's, with their interned names.
#[derive(Debug)]
struct FallbackLabel {
    of: Label,
    label: Label,
    name: Option<Name>,
}

/// A client's fallbacks. With none configured, the evaluation path pays one branch.
#[derive(Debug, Default)]
pub(crate) struct Fallbacks {
    global: Option<Compiled>,
    by_flag: FastMap<Box<str>, Compiled>,
    labels: Vec<FallbackLabel>,
    /// Whether the label `no rule matched` reads `default rule` on impressions
    /// ([`crate::ClientBuilder::default_rule_label`]).
    default_rule: bool,
}

impl Fallbacks {
    /// The fallbacks given to the builder (already checked); `default_rule` as
    /// [`crate::ClientBuilder::default_rule_label`].
    pub(crate) fn new(
        global: Option<&FallbackTreatment>,
        by_flag: &[(String, FallbackTreatment)],
        default_rule: bool,
    ) -> Fallbacks {
        let any = global.is_some() || !by_flag.is_empty();
        let labels = Label::STATIC
            .into_iter()
            .filter(|_| any)
            .map(|of| {
                let text = fallback_text(of.wire_text(default_rule));
                FallbackLabel {
                    name: intern(&text),
                    label: Label::Fallback(text.into()),
                    of,
                }
            })
            .collect();
        Fallbacks {
            global: global.map(Compiled::new),
            by_flag: by_flag
                .iter()
                .map(|(flag, f)| (flag.as_str().into(), Compiled::new(f)))
                .collect(),
            labels,
            default_rule,
        }
    }

    /// True when no fallback is configured.
    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.global.is_none() && self.by_flag.is_empty()
    }

    /// The fallback of `flag`: its own, or else the global one.
    pub(crate) fn for_flag(&self, flag: &str) -> Option<&Compiled> {
        self.by_flag.get(flag).or(self.global.as_ref())
    }

    /// The label of a fallback that replaced an evaluation labelled `of`, with its interned
    /// name: borrowed for the labels that are not a rule's, built for a rule's.
    pub(crate) fn label(&self, of: &Label) -> (Cow<'_, Label>, Option<Name>) {
        match self.labels.iter().find(|l| l.of == *of) {
            Some(l) => (Cow::Borrowed(&l.label), l.name),
            None => {
                let text: Arc<str> = fallback_text(of.wire_text(self.default_rule)).into();
                (Cow::Owned(Label::Fallback(text)), None)
            }
        }
    }
}

fn fallback_text(of: &str) -> String {
    format!("fallback - {of}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn treatments_follow_the_official_pattern() {
        for ok in ["on", "off", "v2", "a_b-c", "1", "1.5", "2.0-beta_x", "A"] {
            assert!(valid_treatment(ok), "{ok}");
        }
        for bad in [
            "",
            "has space",
            "a.b",
            "-x",
            "_x",
            ".5",
            "é",
            &"x".repeat(101),
        ] {
            assert!(!valid_treatment(bad), "{bad}");
        }
        assert!(valid_treatment(&"x".repeat(100)));
    }

    #[test]
    fn bad_fallbacks_name_the_flag_and_the_problem() {
        let e = check("fallback_treatment_for", Some("my flag"), &"on".into()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid configuration: fallback_treatment_for: flag 'my flag': a flag name must be 1 to 100 characters without spaces"
        );
        let e = check("fallback_treatment", None, &"not ok".into()).unwrap_err();
        assert!(
            e.to_string()
                .contains("treatment \"not ok\" is not a valid treatment"),
            "{e}"
        );
        assert!(check("fallback_treatment_for", Some("f"), &"on".into()).is_ok());
    }

    #[test]
    fn the_flag_fallback_wins_over_the_global_one() {
        let f = Fallbacks::new(
            Some(&"global".into()),
            &[("f".into(), FallbackTreatment::new("mine").with_config("{}"))],
            false,
        );
        let mine = f.for_flag("f").unwrap();
        assert_eq!(
            (&*mine.treatment, mine.config.as_deref()),
            ("mine", Some("{}"))
        );
        assert_eq!(&*f.for_flag("other").unwrap().treatment, "global");
        assert!(Fallbacks::new(None, &[], false).for_flag("f").is_none());
        assert!(Fallbacks::default().is_empty());
    }

    #[test]
    fn labels_are_prefixed_as_the_official_sdks_do() {
        let f = Fallbacks::new(Some(&"on".into()), &[], true);
        let (l, name) = f.label(&Label::NotReady);
        assert_eq!(
            (l.as_str(), name.map(Name::as_str)),
            ("fallback - not ready", Some("fallback - not ready"))
        );
        assert!(matches!(l, Cow::Borrowed(_)));
        assert_eq!(
            f.label(&Label::NoRuleMatched).0.as_str(),
            "fallback - default rule"
        );
        let (l, name) = f.label(&Label::Rule("in segment beta".into()));
        assert_eq!((l.as_str(), name), ("fallback - in segment beta", None));
    }
}
