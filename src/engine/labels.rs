//! The labels an evaluation reports: why the treatment was chosen.

use std::fmt;
use std::sync::Arc;

use crate::intern::{Name, static_name};

/// Why an evaluation returned its treatment. [`Label::as_str`] gives the wire string that
/// impressions carry.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Label {
    /// The flag is killed: `killed`.
    Killed,
    /// No targeting rule matched: `no rule matched`.
    NoRuleMatched,
    /// The flag does not exist: `definition not found`.
    DefinitionNotFound,
    /// The evaluation failed (for instance a dependency cycle): `exception`.
    Exception,
    /// The key is outside the flag's traffic allocation: `not in split`.
    NotInSplit,
    /// A prerequisite flag did not have a required treatment: `prerequisites not met`.
    PrerequisitesNotMet,
    /// The client has not loaded definitions yet: `not ready`.
    NotReady,
    /// The flag uses a matcher this SDK does not support:
    /// `targeting rule type unsupported by sdk`.
    Unsupported,
    /// A targeting rule decided; its label, verbatim from the definition (or generated from
    /// its matchers when the definition gives none).
    Rule(Arc<str>),
    /// A fallback treatment replaced `control`
    /// ([`ClientBuilder::fallback_treatment`](crate::ClientBuilder::fallback_treatment)):
    /// `fallback - ` and the label the evaluation had, as the official SDKs write it.
    Fallback(Arc<str>),
}

impl Label {
    /// Every label that is not a rule's (or a fallback's): their wire strings are fixed.
    pub(crate) const STATIC: [Label; 8] = [
        Label::Killed,
        Label::NoRuleMatched,
        Label::DefinitionNotFound,
        Label::Exception,
        Label::NotInSplit,
        Label::PrerequisitesNotMet,
        Label::NotReady,
        Label::Unsupported,
    ];

    /// The wire string of the label.
    ///
    /// # Examples
    /// ```
    /// assert_eq!(splitkit::Label::NotInSplit.as_str(), "not in split");
    /// ```
    pub fn as_str(&self) -> &str {
        match self {
            Label::Killed => "killed",
            Label::NoRuleMatched => "no rule matched",
            Label::DefinitionNotFound => "definition not found",
            Label::Exception => "exception",
            Label::NotInSplit => "not in split",
            Label::PrerequisitesNotMet => "prerequisites not met",
            Label::NotReady => "not ready",
            Label::Unsupported => "targeting rule type unsupported by sdk",
            Label::Rule(s) | Label::Fallback(s) => s,
        }
    }
}

/// What the official SDKs write for [`Label::NoRuleMatched`]: `default rule` (splitkit
/// writes it with [`ClientBuilder::default_rule_label`](crate::ClientBuilder::default_rule_label)).
pub(crate) const DEFAULT_RULE: &str = "default rule";

/// [`DEFAULT_RULE`] as an interned name (a static: it never takes room in the table).
pub(crate) fn default_rule_name() -> Name {
    static_name!("default rule")
}

impl Label {
    /// The text an impression carries: the wire string, but `default rule` for
    /// [`Label::NoRuleMatched`] when `default_rule` is set.
    pub(crate) fn wire_text(&self, default_rule: bool) -> &str {
        match self {
            Label::NoRuleMatched if default_rule => DEFAULT_RULE,
            other => other.as_str(),
        }
    }

    /// The wire string of a label that is not a rule's, interned; `None` for a rule's label
    /// (its interned name is compiled beside the rule).
    pub(crate) fn static_name(&self) -> Option<Name> {
        Some(match self {
            Label::Killed => static_name!("killed"),
            Label::NoRuleMatched => static_name!("no rule matched"),
            Label::DefinitionNotFound => static_name!("definition not found"),
            Label::Exception => static_name!("exception"),
            Label::NotInSplit => static_name!("not in split"),
            Label::PrerequisitesNotMet => static_name!("prerequisites not met"),
            Label::NotReady => static_name!("not ready"),
            Label::Unsupported => static_name!("targeting rule type unsupported by sdk"),
            Label::Rule(_) | Label::Fallback(_) => return None,
        })
    }
}

impl fmt::Display for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl AsRef<str> for Label {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_names_are_the_wire_strings() {
        let json = |s: &str| {
            let mut out = Vec::new();
            crate::impressions::write_json_str(&mut out, s);
            out
        };
        for l in Label::STATIC {
            assert_eq!(l.static_name().map(Name::as_str), Some(l.as_str()));
            assert_eq!(l.static_name().map(Name::json), Some(&json(l.as_str())[..]));
        }
        assert_eq!(Label::Rule("in segment beta".into()).static_name(), None);
        for name in [default_rule_name(), crate::engine::evaluator::CONTROL_NAME] {
            assert_eq!(name.json(), json(name.as_str()));
        }
        assert_eq!(default_rule_name().as_str(), DEFAULT_RULE);
        assert_eq!(
            crate::engine::evaluator::CONTROL_NAME.as_str(),
            crate::CONTROL
        );
    }
}
