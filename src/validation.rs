//! Input validation for the client API (SPLIT_SEMANTICS.md §7): keys, flag names, flag sets.
//!
//! Each check returns the cleaned value or the warning to log; the caller answers `control`
//! when a check fails. Messages name the operation and the problem.

use std::borrow::Cow;

/// Longest accepted key, in characters.
pub const MAX_KEY_LENGTH: usize = 250;

/// Validates one key (`name` is `key`, `matching_key` or `bucketing_key`).
pub(crate) fn check_key(op: &str, name: &str, key: &str) -> Result<(), String> {
    if is_plain_key(key) {
        return Ok(());
    }
    if key.is_empty() {
        return Err(format!(
            "{op}: you passed an empty {name}, {name} must be a non-empty string"
        ));
    }
    // Byte length bounds the character count: only count when it could matter.
    if key.len() > MAX_KEY_LENGTH && key.chars().count() > MAX_KEY_LENGTH {
        return Err(format!(
            "{op}: {name} too long - must be {MAX_KEY_LENGTH} characters or less"
        ));
    }
    Ok(())
}

/// Whether `key` passes [`check_key`] on its byte length alone (1 to [`MAX_KEY_LENGTH`]
/// bytes), without counting its characters: the usual key.
#[inline]
pub(crate) fn is_plain_key(key: &str) -> bool {
    (1..=MAX_KEY_LENGTH).contains(&key.len())
}

/// Validates a flag name: non-empty; surrounding whitespace trimmed with a warning.
#[inline]
pub(crate) fn check_flag_name<'a>(
    op: &str,
    name: &'a str,
    warn: &mut dyn FnMut(String),
) -> Option<&'a str> {
    // The usual name starts and ends with a visible ASCII character: nothing to trim
    // (Unicode whitespace starts and ends with non-ASCII bytes).
    let visible = |b: Option<&u8>| b.is_some_and(|b| b.is_ascii_graphic());
    if visible(name.as_bytes().first()) && visible(name.as_bytes().last()) {
        return Some(name);
    }
    trim_flag_name(op, name, warn)
}

/// [`check_flag_name`] for a name that starts or ends with something else.
#[cold]
fn trim_flag_name<'a>(op: &str, name: &'a str, warn: &mut dyn FnMut(String)) -> Option<&'a str> {
    let trimmed = name.trim();
    if trimmed.is_empty() {
        warn(format!(
            "{op}: you passed an empty flag name, flag name must be a non-empty string"
        ));
        return None;
    }
    if trimmed.len() != name.len() {
        warn(format!(
            "{op}: flag name '{name}' has extra whitespace, trimming"
        ));
    }
    Some(trimmed)
}

/// Sanitizes a flag set name: trimmed and lower-cased (with warnings), then it must match
/// `^[a-z0-9][_a-z0-9]{0,49}$`; `None` when it does not.
pub(crate) fn sanitize_flag_set<'a>(
    op: &str,
    set: &'a str,
    warn: &mut dyn FnMut(String),
) -> Option<Cow<'a, str>> {
    let mut s: Cow<'a, str> = Cow::Borrowed(set);
    if s.trim().len() != s.len() {
        warn(format!(
            "{op}: Flag Set name '{set}' has extra whitespace, trimming"
        ));
        s = Cow::Owned(s.trim().to_string());
    }
    if s.chars().any(|c| c.is_uppercase()) {
        warn(format!(
            "{op}: Flag Set name {set} should be all lowercase - converting string to lowercase"
        ));
        s = Cow::Owned(s.to_lowercase());
    }
    let b = s.as_bytes();
    let valid = !b.is_empty()
        && b.len() <= 50
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && b[1..]
            .iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_');
    if !valid {
        warn(format!(
            "{op}: you passed {set}, Flag Set must adhere to the regular expression ^[a-z0-9][_a-z0-9]{{0,49}}$. This means a Flag Set must start with a letter or number, be in lowercase, alphanumeric and have a max length of 50 characters. {set} was discarded."
        ));
        return None;
    }
    Some(s)
}

/// Sanitizes a list of flag sets: each as [`sanitize_flag_set`], invalid ones dropped,
/// then sorted and de-duplicated.
pub(crate) fn sanitize_flag_sets<S: AsRef<str>>(
    op: &str,
    sets: &[S],
    warn: &mut dyn FnMut(String),
) -> Vec<String> {
    let mut out: Vec<String> = sets
        .iter()
        .filter_map(|s| sanitize_flag_set(op, s.as_ref(), warn).map(Cow::into_owned))
        .collect();
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        assert!(check_key("get_treatment", "key", "a").is_ok());
        assert_eq!(
            check_key("get_treatment", "key", "").unwrap_err(),
            "get_treatment: you passed an empty key, key must be a non-empty string"
        );
        assert!(check_key("t", "key", &"k".repeat(250)).is_ok());
        assert_eq!(
            check_key("get_treatment", "bucketing_key", &"k".repeat(251)).unwrap_err(),
            "get_treatment: bucketing_key too long - must be 250 characters or less"
        );
        // 250 characters of two bytes each are fine.
        assert!(check_key("t", "key", &"é".repeat(250)).is_ok());
    }

    #[test]
    fn flag_names() {
        let mut warnings = Vec::new();
        let mut w = |m: String| warnings.push(m);
        assert_eq!(check_flag_name("op", " f ", &mut w), Some("f"));
        assert_eq!(check_flag_name("op", "  ", &mut w), None);
        assert_eq!(warnings.len(), 2);
        assert!(warnings[0].contains("extra whitespace"));
    }

    #[test]
    fn flag_sets() {
        let mut warnings = Vec::new();
        let mut w = |m: String| warnings.push(m);
        let sets = sanitize_flag_sets(
            "op",
            &[
                " Backend ",
                "front_end",
                "_bad",
                "backend",
                "x".repeat(51).as_str(),
            ],
            &mut w,
        );
        assert_eq!(sets, vec!["backend", "front_end"]);
        assert_eq!(warnings.len(), 4, "{warnings:?}");
    }
}
