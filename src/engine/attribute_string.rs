//! The string of an attribute value: inline up to 24 bytes, so that building the attributes
//! of an evaluation (`plan`, `country`, an email...) allocates nothing for most values.

use compact_str::CompactString;

/// The text of an [`AttributeValue::String`](crate::AttributeValue::String).
///
/// Holds up to 24 bytes inline and longer text on the heap. It reads as a `str` (`Deref`,
/// `as_str`, comparisons with `&str` and `String`) and converts from and into `String`.
///
/// # Examples
/// ```
/// use splitkit::{AttributeString, AttributeValue};
/// let v = AttributeValue::from("enterprise");
/// let AttributeValue::String(s) = &v else { unreachable!() };
/// assert_eq!(s, "enterprise");
/// assert!(s.starts_with("enter"));
/// let owned: String = s.clone().into();
/// assert_eq!(AttributeString::from(owned).as_str(), "enterprise");
/// ```
#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AttributeString(CompactString);

impl AttributeString {
    /// The text.
    #[inline(always)]
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

impl From<&str> for AttributeString {
    #[inline]
    fn from(s: &str) -> AttributeString {
        AttributeString(CompactString::new(s))
    }
}

impl From<String> for AttributeString {
    /// Keeps the `String`'s buffer when the text is too long to go inline.
    fn from(s: String) -> AttributeString {
        AttributeString(CompactString::from(s))
    }
}

impl From<&String> for AttributeString {
    fn from(s: &String) -> AttributeString {
        AttributeString::from(s.as_str())
    }
}

impl From<AttributeString> for String {
    fn from(s: AttributeString) -> String {
        s.0.into_string()
    }
}

crate::text::str_like!(AttributeString);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_and_long_text_read_back_whole() {
        for text in [
            "",
            "AR",
            "exactly-twenty-four-byte",
            "a string well past the inline bytes, on the heap",
        ] {
            let s = AttributeString::from(text);
            assert_eq!(s.as_str(), text);
            assert_eq!(s, text);
            assert_eq!(String::from(s.clone()), text);
            assert_eq!(AttributeString::from(text.to_string()), s);
            assert_eq!(format!("{s}"), text);
            assert_eq!(format!("{s:?}"), format!("{text:?}"));
        }
    }
}
