//! From what splitkit decided to what OpenFeature reports: the reason (or the error) from
//! the label, the flag metadata, and the typed value from the treatment.

use std::collections::HashMap;

use open_feature::{
    EvaluationError, EvaluationReason, FlagMetadata, FlagMetadataValue, StructValue, Value,
};
use splitkit::{CONTROL, Label, TreatmentDetails};

use crate::error;

/// The flag metadata field with the label of the evaluation (why the treatment was chosen):
/// the rule's label, `killed`, `no rule matched`...
pub const METADATA_LABEL: &str = "label";

/// The flag metadata field with the flag's change number (the version of its definition).
pub const METADATA_CHANGE_NUMBER: &str = "changeNumber";

/// The flag metadata field with the treatment's configuration, a JSON text, when the flag
/// gives the treatment one (the official providers' `config`).
pub const METADATA_CONFIG: &str = "config";

/// The reason for an evaluation that has a label, or the error it stands for.
///
/// | label | reason or error |
/// |---|---|
/// | a rule's, the rule splitting keys by percentage | `SPLIT` |
/// | a rule's, otherwise | `TARGETING_MATCH` |
/// | `no rule matched`, `not in split`, `prerequisites not met`, a fallback's | `DEFAULT` |
/// | `killed` | `DISABLED` |
/// | `definition not found` | error `FLAG_NOT_FOUND` |
/// | `not ready` | error `PROVIDER_NOT_READY` |
/// | `exception`, `targeting rule type unsupported by sdk` | error `General` |
///
/// A treatment of `control` that no fallback replaced is an error too (`General` with
/// cause `control`): it is splitkit's "no treatment".
pub(crate) fn reason(
    flag: &str,
    label: &Label,
    details: &TreatmentDetails,
) -> Result<EvaluationReason, EvaluationError> {
    let reason = match label {
        Label::Rule(_) if details.percentage_split => EvaluationReason::Split,
        Label::Rule(_) => EvaluationReason::TargetingMatch,
        Label::NoRuleMatched
        | Label::NotInSplit
        | Label::PrerequisitesNotMet
        | Label::Fallback(_) => EvaluationReason::Default,
        Label::Killed => EvaluationReason::Disabled,
        Label::DefinitionNotFound => return Err(error::flag_not_found(flag)),
        Label::NotReady => {
            return Err(error::not_ready(format!(
                "flag {flag}: the splitkit client has no definitions yet (label 'not ready')"
            )));
        }
        Label::Exception | Label::Unsupported => {
            return Err(error::general(
                label.as_str(),
                format!("flag {flag} could not be evaluated (label '{label}')"),
            ));
        }
        _ => EvaluationReason::Unknown,
    };
    if details.treatment == CONTROL {
        return Err(error::general(
            CONTROL,
            format!("flag {flag} answered control, no treatment (label '{label}')"),
        ));
    }
    Ok(reason)
}

/// The flag metadata of an evaluation: its label, the flag's change number and the
/// treatment's configuration, each when there is one.
pub(crate) fn metadata(
    label: &Label,
    change_number: Option<i64>,
    config: Option<String>,
) -> FlagMetadata {
    let mut values = HashMap::with_capacity(3);
    values.insert(
        METADATA_LABEL.to_string(),
        FlagMetadataValue::String(label.as_str().to_string()),
    );
    if let Some(cn) = change_number {
        values.insert(
            METADATA_CHANGE_NUMBER.to_string(),
            FlagMetadataValue::Int(cn),
        );
    }
    if let Some(config) = config {
        values.insert(
            METADATA_CONFIG.to_string(),
            FlagMetadataValue::String(config),
        );
    }
    FlagMetadata { values }
}

/// `on` and `true` are true, `off` and `false` false, in any case, as in the official
/// providers; any other treatment is a `PARSE_ERROR`.
pub(crate) fn boolean(flag: &str, treatment: &str) -> Result<bool, EvaluationError> {
    let is = |word: &str| treatment.eq_ignore_ascii_case(word);
    if is("on") || is("true") {
        Ok(true)
    } else if is("off") || is("false") {
        Ok(false)
    } else {
        Err(error::parse(format!(
            "treatment '{treatment}' of flag {flag} is not a boolean (on, off, true or false)"
        )))
    }
}

/// The treatment read as an integer (surrounding whitespace ignored); else a `PARSE_ERROR`.
pub(crate) fn integer(flag: &str, treatment: &str) -> Result<i64, EvaluationError> {
    treatment.trim().parse().map_err(|_| {
        error::parse(format!(
            "treatment '{treatment}' of flag {flag} is not an integer"
        ))
    })
}

/// The treatment read as a finite number (surrounding whitespace ignored); else a
/// `PARSE_ERROR`.
pub(crate) fn float(flag: &str, treatment: &str) -> Result<f64, EvaluationError> {
    match treatment.trim().parse::<f64>() {
        Ok(n) if n.is_finite() => Ok(n),
        _ => Err(error::parse(format!(
            "treatment '{treatment}' of flag {flag} is not a number"
        ))),
    }
}

/// The structure of an evaluation: the treatment's configuration when it has one, else the
/// treatment itself read as JSON (as the official providers read it). Text that is not JSON
/// is a `PARSE_ERROR`; JSON that is not an object a `TYPE_MISMATCH`.
pub(crate) fn structure(
    flag: &str,
    treatment: &str,
    config: Option<&str>,
) -> Result<StructValue, EvaluationError> {
    let (text, what) = match config {
        Some(c) => (c, "the configuration of treatment"),
        None => (treatment, "treatment"),
    };
    let json: serde_json::Value = serde_json::from_str(text).map_err(|e| {
        error::parse(format!(
            "{what} '{treatment}' of flag {flag} is not JSON: {e}"
        ))
    })?;
    match json {
        serde_json::Value::Object(fields) => Ok(object(fields)),
        other => Err(error::type_mismatch(format!(
            "{what} '{treatment}' of flag {flag} is JSON but not an object: {other}"
        ))),
    }
}

/// A JSON object as an OpenFeature structure. OpenFeature values have no null: null fields
/// and null items of arrays are left out.
fn object(fields: serde_json::Map<String, serde_json::Value>) -> StructValue {
    StructValue {
        fields: fields
            .into_iter()
            .filter_map(|(k, v)| value(v).map(|v| (k, v)))
            .collect(),
    }
}

fn value(json: serde_json::Value) -> Option<Value> {
    use serde_json::Value as J;
    Some(match json {
        J::Null => return None,
        J::Bool(b) => Value::Bool(b),
        J::Number(n) => match n.as_i64() {
            Some(i) => Value::Int(i),
            None => Value::Float(n.as_f64()?),
        },
        J::String(s) => Value::String(s),
        J::Array(items) => Value::Array(items.into_iter().filter_map(value).collect()),
        J::Object(fields) => Value::Struct(object(fields)),
    })
}

#[cfg(test)]
mod tests {
    use open_feature::EvaluationErrorCode;

    use super::*;

    #[test]
    fn booleans_read_on_off_true_false_in_any_case() {
        for t in ["on", "ON", "True", "true"] {
            assert_eq!(boolean("f", t), Ok(true), "{t}");
        }
        for t in ["off", "Off", "FALSE", "false"] {
            assert_eq!(boolean("f", t), Ok(false), "{t}");
        }
        for t in ["yes", "1", "", " on"] {
            assert_eq!(
                boolean("f", t).unwrap_err().code,
                EvaluationErrorCode::ParseError
            );
        }
    }

    #[test]
    fn numbers_are_parsed_from_the_treatment() {
        assert_eq!(integer("f", "42"), Ok(42));
        assert_eq!(integer("f", " -7 "), Ok(-7));
        for t in ["4.5", "x", "", "9223372036854775808"] {
            assert_eq!(
                integer("f", t).unwrap_err().code,
                EvaluationErrorCode::ParseError,
                "{t}"
            );
        }
        assert_eq!(float("f", "0.25"), Ok(0.25));
        assert_eq!(float("f", "3"), Ok(3.0));
        assert_eq!(float("f", "1e3"), Ok(1000.0));
        for t in ["NaN", "inf", "x", ""] {
            assert_eq!(
                float("f", t).unwrap_err().code,
                EvaluationErrorCode::ParseError,
                "{t}"
            );
        }
    }

    #[test]
    fn structures_come_from_the_config_or_the_treatment() {
        let s = structure("f", "on", Some(r#"{"a":1,"b":[1,"x",null],"c":{"d":true},"n":null,"big":18446744073709551615,"r":0.5}"#)).unwrap();
        assert_eq!(s.fields["a"], Value::Int(1));
        assert_eq!(
            s.fields["b"],
            Value::Array(vec![Value::Int(1), Value::String("x".into())])
        );
        assert_eq!(
            s.fields["c"],
            Value::Struct(StructValue::default().with_field("d", true))
        );
        assert!(!s.fields.contains_key("n"));
        assert_eq!(s.fields["big"], Value::Float(18446744073709551615.0));
        assert_eq!(s.fields["r"], Value::Float(0.5));
        let t = structure("f", r#"{"x":"y"}"#, None).unwrap();
        assert_eq!(t.fields["x"], Value::String("y".into()));
        let code = |t: &str, c: Option<&str>| structure("f", t, c).unwrap_err().code;
        assert_eq!(code("on", None), EvaluationErrorCode::ParseError);
        assert_eq!(code("on", Some("{nope")), EvaluationErrorCode::ParseError);
        assert_eq!(code("5", None), EvaluationErrorCode::TypeMismatch);
        assert_eq!(code("on", Some("[1]")), EvaluationErrorCode::TypeMismatch);
    }
}
