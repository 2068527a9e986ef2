//! Semantic versions as Split's semver matchers read them.
//!
//! Parsing: split at the first `+` (build metadata, must be non-empty when present), then at
//! the first `-` (pre-release identifiers, separated by `.`, none empty); what remains must be
//! exactly three `.`-separated runs of digits. Numeric parts lose their leading zeros. Numbers
//! are compared as digit strings, so there is no overflow.

use std::cmp::Ordering;

/// A parsed semantic version, borrowing from the text it was parsed from (nothing is
/// allocated: evaluation parses attribute values with it).
///
/// Numeric parts are kept without their leading zeros; the pre-release identifiers are kept
/// as written and normalised (leading zeros of numeric identifiers dropped) as they are
/// compared.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Semver<'a> {
    major: &'a str,
    minor: &'a str,
    patch: &'a str,
    /// The pre-release identifiers, `.`-separated, none empty.
    pre: Option<&'a str>,
    /// The build metadata, not empty.
    meta: Option<&'a str>,
}

/// An owned [`Semver`]: a rule value, parsed once when the flag is compiled.
#[derive(Debug, Clone)]
pub(crate) struct OwnedSemver {
    major: Box<str>,
    minor: Box<str>,
    patch: Box<str>,
    pre: Option<Box<str>>,
    meta: Option<Box<str>>,
}

fn strip_zeros(s: &str) -> &str {
    let t = s.trim_start_matches('0');
    if t.is_empty() { "0" } else { t }
}

fn all_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// A pre-release identifier as normalised: numeric ones lose their leading zeros.
fn normalize_id(id: &str) -> &str {
    if all_digits(id) { strip_zeros(id) } else { id }
}

impl<'a> Semver<'a> {
    /// Parses `s`, or `None` when it is not a semantic version.
    pub(crate) fn parse(s: &'a str) -> Option<Semver<'a>> {
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
                if p.split('.').any(str::is_empty) {
                    return None;
                }
                (c, Some(p))
            }
            None => (rest, None),
        };
        let mut parts = core.split('.');
        let (major, minor, patch) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() || ![major, minor, patch].into_iter().all(all_digits) {
            return None;
        }
        Some(Semver {
            major: strip_zeros(major),
            minor: strip_zeros(minor),
            patch: strip_zeros(patch),
            pre,
            meta,
        })
    }

    /// The normalised pre-release identifiers (none for a release).
    fn pre_ids(&self) -> impl Iterator<Item = &'a str> + use<'a> {
        self.pre
            .into_iter()
            .flat_map(|p| p.split('.'))
            .map(normalize_id)
    }

    /// Whether the normalised texts (`M.m.p[-pre][+meta]`, build metadata included) are
    /// equal, compared part by part.
    pub(crate) fn eq_normalized(&self, other: &Semver<'_>) -> bool {
        self.major == other.major
            && self.minor == other.minor
            && self.patch == other.patch
            && self.meta == other.meta
            && self.pre.is_some() == other.pre.is_some()
            && self.pre_ids().eq(other.pre_ids())
    }

    /// Precedence comparison (build metadata ignored).
    pub(crate) fn compare(&self, other: &Semver<'_>) -> Ordering {
        let core = cmp_num(self.major, other.major)
            .then_with(|| cmp_num(self.minor, other.minor))
            .then_with(|| cmp_num(self.patch, other.patch));
        if core != Ordering::Equal {
            return core;
        }
        match (self.pre.is_none(), other.pre.is_none()) {
            (true, true) => return Ordering::Equal,
            (true, false) => return Ordering::Greater,
            (false, true) => return Ordering::Less,
            (false, false) => {}
        }
        let (mut a_ids, mut b_ids) = (self.pre_ids(), other.pre_ids());
        loop {
            let (a, b) = match (a_ids.next(), b_ids.next()) {
                (Some(a), Some(b)) => (a, b),
                // The one with more identifiers is greater.
                (a, b) => return a.is_some().cmp(&b.is_some()),
            };
            let o = if all_digits(a) && all_digits(b) {
                cmp_num(a, b)
            } else {
                a.as_bytes().cmp(b.as_bytes())
            };
            if o != Ordering::Equal {
                return o;
            }
        }
    }

    /// A copy that owns its text.
    pub(crate) fn to_owned(self) -> OwnedSemver {
        OwnedSemver {
            major: self.major.into(),
            minor: self.minor.into(),
            patch: self.patch.into(),
            pre: self.pre.map(Into::into),
            meta: self.meta.map(Into::into),
        }
    }

    /// The normalised text (build metadata included).
    #[cfg(test)]
    pub(crate) fn normalized(&self) -> String {
        let mut s = format!("{}.{}.{}", self.major, self.minor, self.patch);
        if self.pre.is_some() {
            s.push('-');
            s.push_str(&self.pre_ids().collect::<Vec<_>>().join("."));
        }
        if let Some(m) = self.meta {
            s.push('+');
            s.push_str(m);
        }
        s
    }
}

impl OwnedSemver {
    /// Parses `s` into an owned version, or `None` when it is not a semantic version.
    pub(crate) fn parse(s: &str) -> Option<OwnedSemver> {
        Semver::parse(s).map(Semver::to_owned)
    }

    /// The borrowed form, to compare with.
    pub(crate) fn as_semver(&self) -> Semver<'_> {
        Semver {
            major: &self.major,
            minor: &self.minor,
            patch: &self.patch,
            pre: self.pre.as_deref(),
            meta: self.meta.as_deref(),
        }
    }
}

/// Compares digit strings without leading zeros as numbers.
fn cmp_num(a: &str, b: &str) -> Ordering {
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Semver<'_> {
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
        assert_eq!(v("1.0.0-a.01").compare(&v("1.0.0-a.1")), Ordering::Equal);
        assert_eq!(v("1.0.0-01a").compare(&v("1.0.0-1")), Ordering::Less);
        let owned = OwnedSemver::parse("01.2.3-rc.002+b").unwrap();
        assert_eq!(owned.as_semver().normalized(), "1.2.3-rc.2+b");
    }

    #[test]
    fn normalized_equality_is_text_equality() {
        let texts = [
            "1.2.3",
            "01.2.3",
            "1.2.3+b",
            "1.2.3+c",
            "1.2.3-rc.1",
            "1.2.3-rc.01",
            "1.2.3-rc.1+b",
            "1.2.3-rc",
            "1.2.3-rc.1.0",
            "1.2.3-0",
            "1.2.3-00",
            "1.2.3-0a",
            "1.2.3-a-b",
            "1.2.3-a.b",
            "1.2.3+a-b",
            "0.0.0",
            "000.000.000",
        ];
        for a in texts {
            for b in texts {
                let (va, vb) = (v(a), v(b));
                assert_eq!(
                    va.eq_normalized(&vb),
                    va.normalized() == vb.normalized(),
                    "{a} {b}"
                );
            }
        }
    }
}
