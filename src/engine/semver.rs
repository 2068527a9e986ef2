//! Semantic versions as Split's semver matchers read them.
//!
//! Parsing: split at the first `+` (build metadata, must be non-empty when present), then at
//! the first `-` (pre-release identifiers, separated by `.`, none empty); what remains must be
//! exactly three `.`-separated runs of digits. Numeric parts lose their leading zeros. Numbers
//! are compared as digit strings, so there is no overflow.

use std::cmp::Ordering;

/// A parsed semantic version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Semver {
    major: String,
    minor: String,
    patch: String,
    pre: Vec<String>,
    /// The normalised text, build metadata included: `M.m.p[-pre][+meta]`.
    normalized: String,
}

fn strip_zeros(s: &str) -> String {
    let t = s.trim_start_matches('0');
    if t.is_empty() { "0".into() } else { t.into() }
}

fn all_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

impl Semver {
    /// Parses `s`, or `None` when it is not a semantic version.
    pub(crate) fn parse(s: &str) -> Option<Semver> {
        let (rest, meta) = match s.split_once('+') {
            Some((r, m)) => {
                if m.is_empty() {
                    return None;
                }
                (r, Some(m))
            }
            None => (s, None),
        };
        let (core, pre) = match rest.split_once('-') {
            Some((c, p)) => {
                let ids: Vec<&str> = p.split('.').collect();
                if ids.iter().any(|i| i.is_empty()) {
                    return None;
                }
                (c, ids)
            }
            None => (rest, Vec::new()),
        };
        let parts: Vec<&str> = core.split('.').collect();
        if parts.len() != 3 || !parts.iter().all(|p| all_digits(p)) {
            return None;
        }
        let pre: Vec<String> = pre
            .into_iter()
            .map(|id| {
                if all_digits(id) {
                    strip_zeros(id)
                } else {
                    id.to_string()
                }
            })
            .collect();
        let (major, minor, patch) = (
            strip_zeros(parts[0]),
            strip_zeros(parts[1]),
            strip_zeros(parts[2]),
        );
        let mut normalized = format!("{major}.{minor}.{patch}");
        if !pre.is_empty() {
            normalized.push('-');
            normalized.push_str(&pre.join("."));
        }
        if let Some(m) = meta {
            normalized.push('+');
            normalized.push_str(m);
        }
        Some(Semver {
            major,
            minor,
            patch,
            pre,
            normalized,
        })
    }

    /// The normalised text (build metadata included).
    pub(crate) fn normalized(&self) -> &str {
        &self.normalized
    }

    /// Precedence comparison (build metadata ignored, except that equal normalised texts
    /// are equal).
    pub(crate) fn compare(&self, other: &Semver) -> Ordering {
        if self.normalized == other.normalized {
            return Ordering::Equal;
        }
        let core = cmp_num(&self.major, &other.major)
            .then_with(|| cmp_num(&self.minor, &other.minor))
            .then_with(|| cmp_num(&self.patch, &other.patch));
        if core != Ordering::Equal {
            return core;
        }
        match (self.pre.is_empty(), other.pre.is_empty()) {
            (true, true) => return Ordering::Equal,
            (true, false) => return Ordering::Greater,
            (false, true) => return Ordering::Less,
            (false, false) => {}
        }
        for (a, b) in self.pre.iter().zip(other.pre.iter()) {
            let o = if all_digits(a) && all_digits(b) {
                cmp_num(a, b)
            } else {
                a.as_bytes().cmp(b.as_bytes())
            };
            if o != Ordering::Equal {
                return o;
            }
        }
        self.pre.len().cmp(&other.pre.len())
    }
}

/// Compares digit strings without leading zeros as numbers.
fn cmp_num(a: &str, b: &str) -> Ordering {
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Semver {
        Semver::parse(s).unwrap()
    }

    #[test]
    fn parse_and_normalise() {
        assert_eq!(v("00.01.002-0003.00004").normalized(), "0.1.2-3.4");
        assert_eq!(v("1.0.0-0000z").normalized(), "1.0.0-0000z");
        assert_eq!(v("1.22.9+build").normalized(), "1.22.9+build");
        for bad in [
            "1.2",
            "1.2.3.4",
            "1.2.3-",
            "1.2.3+",
            "a.b.c",
            "1.2.3-a..b",
            "",
        ] {
            assert!(Semver::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn precedence() {
        assert_eq!(v("1.22.9").compare(&v("1.22.9+build")), Ordering::Equal);
        assert_eq!(v("1.22.9-rc.0").compare(&v("1.22.9")), Ordering::Less);
        assert_eq!(
            v("1.0.0-alpha.1").compare(&v("1.0.0-alpha")),
            Ordering::Greater
        );
        assert_eq!(v("1.0.0-2").compare(&v("1.0.0-10")), Ordering::Less);
        assert_eq!(
            v("99999999999999999999999.0.0").compare(&v("1.0.0")),
            Ordering::Greater
        );
    }
}
