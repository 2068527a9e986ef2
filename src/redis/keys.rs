//! The Redis keys of Split's Synchronizer (go-split-commons `storage/redis/constants.go`),
//! below the key prefix (hash tag and user prefix).

/// Change number of the flags: `SPLITIO.splits.till`.
pub(crate) const FLAGS_TILL: &str = "SPLITIO.splits.till";
/// A flag's JSON: `SPLITIO.split.{name}`.
pub(crate) const FLAG_PREFIX: &str = "SPLITIO.split.";
/// Change number of the rule-based segments.
pub(crate) const RULE_BASED_TILL: &str = "SPLITIO.rbsegments.till";
/// A rule-based segment's JSON: `SPLITIO.rbsegment.{name}`.
pub(crate) const RULE_BASED_PREFIX: &str = "SPLITIO.rbsegment.";
/// The impressions list.
pub(crate) const IMPRESSIONS: &str = "SPLITIO.impressions";
/// The events list.
pub(crate) const EVENTS: &str = "SPLITIO.events";
/// The impression counts hash (field `{flag}::{hour ms}`).
pub(crate) const IMPRESSION_COUNTS: &str = "SPLITIO.impressions.count";
/// The unique keys list.
pub(crate) const UNIQUE_KEYS: &str = "SPLITIO.uniquekeys";
/// Expiry set on a queue key when a push creates it, in seconds (the official SDKs' 1 hour).
pub(crate) const QUEUE_TTL_SECONDS: i64 = 3600;

/// A segment's members (a set): `SPLITIO.segment.{name}`.
pub(crate) fn segment(name: &str) -> String {
    format!("SPLITIO.segment.{name}")
}

/// A segment's change number: `SPLITIO.segment.{name}.till`.
pub(crate) fn segment_till(name: &str) -> String {
    format!("SPLITIO.segment.{name}.till")
}

/// Key names under one prefix.
#[derive(Debug, Clone)]
pub(crate) struct Keys {
    prefix: String,
}

impl Keys {
    /// Keys under `prefix` (empty, or ending in `.`).
    pub(crate) fn new(prefix: String) -> Keys {
        Keys { prefix }
    }

    /// The full key of `name`.
    pub(crate) fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }
}

/// `text` with the glob characters of SCAN MATCH (`* ? [ ] \`) escaped.
pub(crate) fn glob_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_globs() {
        let k = Keys::new("{SPLITIO}app.".into());
        assert_eq!(k.key(FLAGS_TILL), "{SPLITIO}app.SPLITIO.splits.till");
        assert_eq!(
            k.key(&segment_till("eu")),
            "{SPLITIO}app.SPLITIO.segment.eu.till"
        );
        assert_eq!(glob_escape("a*b?[c]\\"), "a\\*b\\?\\[c\\]\\\\");
    }
}
