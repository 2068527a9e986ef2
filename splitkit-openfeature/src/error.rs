//! The OpenFeature errors the provider answers, one constructor per cause.

use open_feature::{EvaluationError, EvaluationErrorCode};

fn error(code: EvaluationErrorCode, message: String) -> EvaluationError {
    EvaluationError {
        code,
        message: Some(message),
    }
}

pub(crate) fn targeting_key_missing() -> EvaluationError {
    error(
        EvaluationErrorCode::TargetingKeyMissing,
        "the Split provider needs a targeting key (the key flags are evaluated for)".into(),
    )
}

pub(crate) fn invalid_context(message: String) -> EvaluationError {
    error(EvaluationErrorCode::InvalidContext, message)
}

pub(crate) fn flag_not_found(flag: &str) -> EvaluationError {
    error(
        EvaluationErrorCode::FlagNotFound,
        format!("no definition of flag {flag} is loaded (label 'definition not found')"),
    )
}

pub(crate) fn not_ready(message: String) -> EvaluationError {
    error(EvaluationErrorCode::ProviderNotReady, message)
}

pub(crate) fn parse(message: String) -> EvaluationError {
    error(EvaluationErrorCode::ParseError, message)
}

pub(crate) fn type_mismatch(message: String) -> EvaluationError {
    error(EvaluationErrorCode::TypeMismatch, message)
}

/// A failure with no code of its own; `cause` is the short form the code carries (the
/// label, for evaluations), `message` the long one.
pub(crate) fn general(cause: &str, message: String) -> EvaluationError {
    error(EvaluationErrorCode::General(cause.to_string()), message)
}
