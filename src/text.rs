//! Small pieces of text that messages share: a count with its noun in the right number, a
//! number with thousands separators, a duration a person reads at a glance, and a parser's
//! message that does not repeat the line the error already names.

use std::fmt;
use std::time::Duration;

/// `n` and the noun that goes with it: `1 item`, `0 items`, `2 items`, `1,000 items` (with
/// thousands separators, as [`thousands`]). Built by [`count`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Count<N> {
    n: N,
    one: &'static str,
    many: &'static str,
}

/// `n` followed by `one` when `n` is 1 and by `many` otherwise.
///
/// `format!("dropping {}", count(n, "item", "items"))` gives `dropping 1 item` or
/// `dropping 3 items`.
pub(crate) fn count<N>(n: N, one: &'static str, many: &'static str) -> Count<N>
where
    N: fmt::Display + Copy + PartialEq + From<u8>,
{
    Count { n, one, many }
}

impl<N> fmt::Display for Count<N>
where
    N: fmt::Display + Copy + PartialEq + From<u8>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let noun = if self.n == N::from(1) {
            self.one
        } else {
            self.many
        };
        write!(f, "{} {noun}", grouped(&self.n.to_string()))
    }
}

/// `n` with a comma between groups of three digits: `1,204`. Built by [`thousands`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Thousands(u64);

/// `n` with thousands separators (see [`Thousands`]).
pub(crate) fn thousands(n: u64) -> Thousands {
    Thousands(n)
}

impl fmt::Display for Thousands {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&grouped(&self.0.to_string()))
    }
}

/// An integer's decimal digits (after an optional `-`) grouped by three with commas.
fn grouped(number: &str) -> String {
    let (sign, digits) = match number.strip_prefix('-') {
        Some(d) => ("-", d),
        None => ("", number),
    };
    let mut out = String::with_capacity(number.len() + digits.len() / 3);
    out.push_str(sign);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A duration as a person reads it, rounded to what matters: `0 ms`, `250 ms`, `3.0 s`,
/// `59.9 s`, `2 min`, `2 min 5 s`, `1 h 30 min`. Built by [`duration`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Readable(Duration);

/// `d` written for a person (see [`Readable`]).
pub(crate) fn duration(d: Duration) -> Readable {
    Readable(d)
}

impl fmt::Display for Readable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.0;
        // Rounded to the nearest millisecond, then to the unit shown.
        let ms = (d.as_nanos() + 500_000) / 1_000_000;
        if ms < 1_000 {
            return write!(f, "{ms} ms");
        }
        let tenths = (ms + 50) / 100;
        if tenths < 600 {
            return write!(f, "{}.{} s", tenths / 10, tenths % 10);
        }
        let secs = (ms + 500) / 1_000;
        if secs < 3_600 {
            let (min, s) = (secs / 60, secs % 60);
            return match s {
                0 => write!(f, "{min} min"),
                s => write!(f, "{min} min {s} s"),
            };
        }
        let mins = (secs + 30) / 60;
        match (mins / 60, mins % 60) {
            (h, 0) => write!(f, "{h} h"),
            (h, m) => write!(f, "{h} h {m} min"),
        }
    }
}

/// A parser's message (serde_json, serde_yaml) for an error reported at `line`: the parser
/// writes `... at line L column C`, and the error names the line already, so that part
/// becomes ` (column C)`. Other positions (a YAML context elsewhere) are kept.
pub(crate) fn without_line(message: String, line: usize) -> String {
    let marker = format!(" at line {line} column ");
    let Some(start) = message.find(&marker) else {
        return message;
    };
    let rest = &message[start + marker.len()..];
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return message;
    }
    format!(
        "{} (column {}){}",
        &message[..start],
        &rest[..digits],
        &rest[digits..]
    )
}

/// Line numbers of a document, counted forward from the last position asked: parts of it
/// (definitions, keys) asked about in document order cost one reading of the document in
/// all, however many there are.
pub(crate) struct Lines<'a> {
    text: &'a str,
    /// A byte offset, the line it is on (1-based) and the offset where that line starts.
    at: usize,
    line: usize,
    line_start: usize,
}

impl<'a> Lines<'a> {
    pub(crate) fn new(text: &'a str) -> Lines<'a> {
        Lines {
            text,
            at: 0,
            line: 1,
            line_start: 0,
        }
    }

    /// Line and column in the document of the position `(line, column)` (as serde_json
    /// counts them: 1-based, a column in bytes) of the definition text `part`, a slice of the
    /// document.
    pub(crate) fn position_in(&mut self, part: &str, line: usize, column: usize) -> (usize, usize) {
        let offset = (part.as_ptr() as usize)
            .saturating_sub(self.text.as_ptr() as usize)
            .min(self.text.len());
        if offset < self.at {
            *self = Lines::new(self.text);
        }
        let bytes = &self.text.as_bytes()[self.at..offset];
        for (i, b) in bytes.iter().enumerate() {
            if *b == b'\n' {
                self.line += 1;
                self.line_start = self.at + i + 1;
            }
        }
        self.at = offset;
        if line <= 1 {
            (self.line, offset - self.line_start + column)
        } else {
            (self.line + line - 1, column)
        }
    }
}

/// The traits of a type that reads as a `str` through its `as_str()`: `Deref<Target = str>`,
/// `AsRef<str>`, `Borrow<str>`, comparisons both ways with `str`, `&str` and `String`, and
/// `Debug` and `Display` as the text.
macro_rules! str_like {
    ($t:ty) => {
        impl std::ops::Deref for $t {
            type Target = str;

            #[inline(always)]
            fn deref(&self) -> &str {
                self.as_str()
            }
        }

        impl AsRef<str> for $t {
            fn as_ref(&self) -> &str {
                self.as_str()
            }
        }

        impl std::borrow::Borrow<str> for $t {
            fn borrow(&self) -> &str {
                self.as_str()
            }
        }

        impl PartialEq<str> for $t {
            fn eq(&self, other: &str) -> bool {
                self.as_str() == other
            }
        }

        impl PartialEq<&str> for $t {
            fn eq(&self, other: &&str) -> bool {
                self.as_str() == *other
            }
        }

        impl PartialEq<String> for $t {
            fn eq(&self, other: &String) -> bool {
                self.as_str() == other
            }
        }

        impl PartialEq<$t> for str {
            fn eq(&self, other: &$t) -> bool {
                self == other.as_str()
            }
        }

        impl PartialEq<$t> for &str {
            fn eq(&self, other: &$t) -> bool {
                *self == other.as_str()
            }
        }

        impl PartialEq<$t> for String {
            fn eq(&self, other: &$t) -> bool {
                self.as_str() == other.as_str()
            }
        }

        impl std::fmt::Debug for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                std::fmt::Debug::fmt(self.as_str(), f)
            }
        }

        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.pad(self.as_str())
            }
        }
    };
}
pub(crate) use str_like;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nouns_agree_with_the_count() {
        assert_eq!(count(0u64, "item", "items").to_string(), "0 items");
        assert_eq!(count(1u64, "item", "items").to_string(), "1 item");
        assert_eq!(count(2usize, "item", "items").to_string(), "2 items");
        assert_eq!(
            count(1u32, "failed attempt", "failed attempts").to_string(),
            "1 failed attempt"
        );
        assert_eq!(count(1i64, "entry", "entries").to_string(), "1 entry");
        assert_eq!(count(7i64, "entry", "entries").to_string(), "7 entries");
        assert_eq!(
            count(10_000usize, "item", "items").to_string(),
            "10,000 items"
        );
        assert_eq!(
            count(-1_500i64, "unit", "units").to_string(),
            "-1,500 units"
        );
    }

    #[test]
    fn thousands_are_separated() {
        let cases = [
            (0, "0"),
            (999, "999"),
            (1_000, "1,000"),
            (1_204, "1,204"),
            (123_456, "123,456"),
            (1_234_567, "1,234,567"),
            (u64::MAX, "18,446,744,073,709,551,615"),
        ];
        for (n, text) in cases {
            assert_eq!(thousands(n).to_string(), text);
        }
        assert_eq!(format!("{:>7}", thousands(1_000)), "  1,000");
    }

    #[test]
    fn durations_read_at_a_glance() {
        let cases = [
            (Duration::ZERO, "0 ms"),
            (Duration::from_nanos(819), "0 ms"),
            (Duration::from_micros(700_182), "700 ms"),
            (Duration::from_micros(999_400), "999 ms"),
            (Duration::from_micros(999_600), "1.0 s"),
            (Duration::from_micros(3_000_100), "3.0 s"),
            (Duration::from_millis(3_960), "4.0 s"),
            (Duration::from_millis(59_940), "59.9 s"),
            (Duration::from_millis(59_960), "1 min"),
            (Duration::from_secs(60), "1 min"),
            (Duration::from_secs(125), "2 min 5 s"),
            (Duration::from_secs(3_600), "1 h"),
            (Duration::from_secs(5_400), "1 h 30 min"),
            (Duration::from_secs(365 * 24 * 3_600), "8760 h"),
            (Duration::MAX, "5124095576030431 h"),
        ];
        for (d, text) in cases {
            assert_eq!(duration(d).to_string(), text, "{d:?}");
        }
    }

    #[test]
    fn parser_messages_do_not_repeat_the_line() {
        assert_eq!(
            without_line("EOF while parsing a value at line 1 column 0".into(), 1),
            "EOF while parsing a value (column 0)"
        );
        assert_eq!(
            without_line(
                "did not find expected key at line 3 column 5, while parsing a block mapping at line 1 column 1".into(),
                3
            ),
            "did not find expected key (column 5), while parsing a block mapping at line 1 column 1"
        );
        assert_eq!(
            without_line("expected value at line 2 column 1".into(), 7),
            "expected value at line 2 column 1",
            "another line is kept"
        );
        assert_eq!(without_line("no position".into(), 1), "no position");
    }
}
