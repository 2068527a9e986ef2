//! Split regexes (`MATCHES_STRING`) translated into Rust regexes with the Java/JavaScript
//! meaning of the Perl classes.
//!
//! Split's official SDKs compile the rule's pattern with Java's `Pattern.compile(p)` (java-client
//! `RegularExpressionMatcher`) and JavaScript's `new RegExp(p)` (javascript-commons
//! `evaluator/matchers/string.ts`), both without flags. There `\d`, `\w` and their negations are
//! ASCII only, whereas the `regex` crate makes them Unicode-aware: `\d` would match `٣٤٥`
//! (Arabic-Indic digits) and `\w` would match `é`. [`translate`] rewrites those escapes, once, when
//! the matcher is compiled; evaluation runs the compiled regex as before.
//!
//! | written | outside a class | inside `[...]` | matches |
//! |---|---|---|---|
//! | `\d` / `\D` | `[[:digit:]]` / `[[:^digit:]]` | `[:digit:]` / `[:^digit:]` | `[0-9]` / anything else |
//! | `\w` / `\W` | `(?-i:[[:word:]])` / `(?-i:[[:^word:]])` | `[:word:]` / `[:^word:]` | `[0-9A-Za-z_]` / anything else |
//! | `\s` / `\S` | `[[:space:]]` / `[[:^space:]]` | `[:space:]` / `[:^space:]` | `[ \t\n\x0B\f\r]` / anything else |
//! | `\b` / `\B` | `(?-u:\b)` / `(?-u:\B)` | (not allowed in a class) | ASCII word boundary / its negation |
//!
//! The negated ASCII classes stay Unicode-wide (`\D` matches `٣` and `é`), as in Java and
//! JavaScript. Everything else keeps the `regex` crate's meaning: literal non-ASCII characters,
//! `.`, `\p{..}`, `\x7F` / `\x{..}`, `\uFFFF` / `\u{..}` (the crate accepts the Java/JavaScript
//! spelling `\uFFFF` as well), case-insensitive mode, and the crate's own `\b{start}`, `\<`, `\>`.
//!
//! # Where the SDKs disagree
//!
//! - `\s`: Java's `\s` is `[ \t\n\x0B\f\r]`, which is exactly `[[:space:]]`; JavaScript's is
//!   Unicode (its WhiteSpace and LineTerminator: also U+00A0, U+1680, U+2000–U+200A, U+2028,
//!   U+2029, U+202F, U+205F, U+3000, U+FEFF). We follow Java (and Go, whose `\s` is ASCII too), so
//!   `\s` does not match U+00A0 or U+2003.
//! - `\b` / `\B`: JavaScript's boundary is between an ASCII word character and anything else; so
//!   is Java's from JDK 19 (JDK-8282129); JDK 8 to 18 count every Unicode letter or digit as a
//!   word character. We follow JavaScript: `\bfoo\b` matches `éfooé`. (Java also treats a
//!   non-spacing mark after a word character as part of the word; that is not reproduced.)
//!
//! # How
//!
//! The pattern is parsed with `regex_syntax`'s AST parser, the parser `Regex::new` itself runs,
//! with the same default settings. So escapes (`\\d` is a backslash and a `d`), bracketed classes
//! (`[]\d]`, `[^]\d]`, `[\]\d]`, nested classes, `[:alpha:]`, `&&`/`--`/`~~`) and verbose-mode
//! comments are understood exactly as the crate understands them, with no second grammar to keep
//! in step. The replacements are spliced in at the byte spans the parser reports; the rest of the
//! pattern is copied unchanged. A pattern with no backslash is returned as it is without parsing,
//! and a pattern that does not parse is returned as it is, so that `Regex::new` rejects it (the
//! matcher is then always false).
//!
//! # Known residual differences
//!
//! - Under `(?i)`, the `regex` crate folds a bracketed class with Unicode simple case folding,
//!   which adds U+212A KELVIN SIGN and U+017F LATIN SMALL LETTER LONG S to `[a-z]`. A `\w` outside
//!   a class is wrapped in `(?-i:…)` and stays exactly `[0-9A-Za-z_]`; inside a class (`(?i)[\w-]`)
//!   flags cannot be changed, so those two characters also match there.
//! - Each replacement nests one or two levels deeper, so a pattern within two levels of the
//!   crate's nesting limit (250) can become too deep and is then rejected.

use std::borrow::Cow;
use std::convert::Infallible;
use std::ops::Range;

use regex_syntax::ast::parse::Parser;
use regex_syntax::ast::{
    self, AssertionKind, Ast, ClassPerl, ClassPerlKind, ClassSetItem, Visitor,
};

/// `pattern` with `\d \D \w \W \s \S \b \B` replaced by their ASCII forms (see the module docs);
/// borrowed when nothing changes, including when the pattern does not parse.
pub(crate) fn translate(pattern: &str) -> Cow<'_, str> {
    // Every construct rewritten here starts with a backslash.
    if !pattern.contains('\\') {
        return Cow::Borrowed(pattern);
    }
    let Ok(ast) = Parser::new().parse(pattern) else {
        return Cow::Borrowed(pattern);
    };
    let Ok(edits) = ast::visit(&ast, Edits::default());
    if edits.is_empty() {
        return Cow::Borrowed(pattern);
    }
    splice(pattern, &edits).map_or(Cow::Borrowed(pattern), Cow::Owned)
}

/// `pattern` with each span replaced; `None` if a span is not on character boundaries, which the
/// parser never reports.
fn splice(pattern: &str, edits: &[(Range<usize>, &str)]) -> Option<String> {
    let extra: usize = edits.iter().map(|(_, with)| with.len()).sum();
    let mut out = String::with_capacity(pattern.len() + extra);
    let mut at = 0;
    for (span, with) in edits {
        out.push_str(pattern.get(at..span.start)?);
        out.push_str(with);
        at = span.end;
    }
    out.push_str(pattern.get(at..)?);
    Some(out)
}

/// The replacement of a Perl class outside a bracketed class (a class of its own) or inside one
/// (an ASCII class item).
fn perl_class(class: &ClassPerl, in_brackets: bool) -> &'static str {
    use ClassPerlKind::{Digit, Space, Word};
    match (&class.kind, class.negated, in_brackets) {
        (Digit, false, false) => "[[:digit:]]",
        (Digit, true, false) => "[[:^digit:]]",
        (Word, false, false) => "(?-i:[[:word:]])",
        (Word, true, false) => "(?-i:[[:^word:]])",
        (Space, false, false) => "[[:space:]]",
        (Space, true, false) => "[[:^space:]]",
        (Digit, false, true) => "[:digit:]",
        (Digit, true, true) => "[:^digit:]",
        (Word, false, true) => "[:word:]",
        (Word, true, true) => "[:^word:]",
        (Space, false, true) => "[:space:]",
        (Space, true, true) => "[:^space:]",
    }
}

/// Collects, in pattern order, the byte spans to replace and their replacements.
#[derive(Debug, Default)]
struct Edits(Vec<(Range<usize>, &'static str)>);

impl Edits {
    fn push(&mut self, span: &ast::Span, with: &'static str) {
        self.0.push((span.start.offset..span.end.offset, with));
    }
}

impl Visitor for Edits {
    type Output = Vec<(Range<usize>, &'static str)>;
    type Err = Infallible;

    fn finish(self) -> Result<Self::Output, Infallible> {
        Ok(self.0)
    }

    fn visit_pre(&mut self, ast: &Ast) -> Result<(), Infallible> {
        match ast {
            Ast::ClassPerl(class) => self.push(&class.span, perl_class(class, false)),
            Ast::Assertion(a) if a.kind == AssertionKind::WordBoundary => {
                self.push(&a.span, r"(?-u:\b)");
            }
            Ast::Assertion(a) if a.kind == AssertionKind::NotWordBoundary => {
                self.push(&a.span, r"(?-u:\B)");
            }
            _ => {}
        }
        Ok(())
    }

    fn visit_class_set_item_pre(&mut self, item: &ClassSetItem) -> Result<(), Infallible> {
        if let ClassSetItem::Perl(class) = item {
            self.push(&class.span, perl_class(class, true));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use regex::Regex;

    use super::*;

    fn re(pattern: &str) -> Regex {
        Regex::new(&translate(pattern)).expect("compiles")
    }

    #[test]
    fn translation_table() {
        for (from, to) in [
            (r"\d", "[[:digit:]]"),
            (r"\D", "[[:^digit:]]"),
            (r"\w", "(?-i:[[:word:]])"),
            (r"\W", "(?-i:[[:^word:]])"),
            (r"\s", "[[:space:]]"),
            (r"\S", "[[:^space:]]"),
            (r"\b", r"(?-u:\b)"),
            (r"\B", r"(?-u:\B)"),
            (r"[\d]", "[[:digit:]]"),
            (r"[\D]", "[[:^digit:]]"),
            (r"[\w]", "[[:word:]]"),
            (r"[\W]", "[[:^word:]]"),
            (r"[\s]", "[[:space:]]"),
            (r"[\S]", "[[:^space:]]"),
        ] {
            assert_eq!(translate(from), to, "{from}");
            assert!(Regex::new(to).is_ok(), "{to}");
        }
    }

    #[test]
    fn translation_in_context() {
        for (from, to) in [
            (r"^\d+$", "^[[:digit:]]+$"),
            (r"a\d{2,3}?|\s*b", "a[[:digit:]]{2,3}?|[[:space:]]*b"),
            (r"perl\B", r"perl(?-u:\B)"),
            (r"(?P<n>\w)x", "(?P<n>(?-i:[[:word:]]))x"),
            (r"é\dé", "é[[:digit:]]é"),
        ] {
            assert_eq!(translate(from), to, "{from}");
        }
    }

    #[test]
    fn escaped_backslashes_are_literal() {
        assert_eq!(translate(r"\\d"), r"\\d");
        assert_eq!(translate(r"\\\d"), r"\\[[:digit:]]");
        assert_eq!(translate(r"[\\d]"), r"[\\d]");
        assert_eq!(translate(r"\\b\\w"), r"\\b\\w");
        assert!(re(r"\\d").is_match(r"a\d"));
        assert!(!re(r"\\d").is_match("5"));
    }

    #[test]
    fn bracketed_classes() {
        for (from, to) in [
            (r"[^\d]", "[^[:digit:]]"),
            (r"[a-z\d_]", "[a-z[:digit:]_]"),
            (r"[]\d]", "[][:digit:]]"),
            (r"[^]\d]", "[^][:digit:]]"),
            (r"[\]\d]", r"[\][:digit:]]"),
            (r"[a[\d]]\d", "[a[[:digit:]]][[:digit:]]"),
            (r"[[:alpha:]\s]", "[[:alpha:][:space:]]"),
            (r"[\w&&[^\d]]", "[[:word:]&&[^[:digit:]]]"),
            (r"[\W--\S]", "[[:^word:]--[:^space:]]"),
            (r"[^\W]", "[^[:^word:]]"),
        ] {
            assert_eq!(translate(from), to, "{from}");
            assert!(Regex::new(&translate(from)).is_ok(), "{from}");
        }
        assert!(re(r"[^\d]").is_match("٣"));
        assert!(!re(r"^[^\d]$").is_match("3"));
        assert!(re(r"^[]\d]+$").is_match("]3]"));
        assert!(!re(r"[\d]").is_match("٣"));
        assert!(!re(r"[\w]").is_match("é"));
        assert!(re(r"[^\w]").is_match("é"));
        assert!(re(r"^[^\W]+$").is_match("abc_1"));
        assert!(!re(r"[^\W]").is_match("é"));
        assert!(re(r"^[\w&&[^\d]]+$").is_match("ab_"));
        assert!(!re(r"[\w&&[^\d]]").is_match("3"));
    }

    #[test]
    fn other_escapes_are_unchanged() {
        for p in [
            r"\p{Greek}\pL\P{N}",
            r"\x7F\x{e9}\u00e9\u{1F600}",
            r"\.\/\-\^\$\*\+\?\(\)\[\]\{\}\|\\",
            r"\A\z^$",
            r"\b{start}\b{end}\<\>\b{start-half}\b{end-half}",
            r"\t\n\r\f\v\a",
            r"[\p{Greek}\x41-\x5A\.]",
        ] {
            assert_eq!(translate(p), p);
            assert!(matches!(translate(p), Cow::Borrowed(_)), "{p}");
        }
        assert!(re(r"\u00e9").is_match("é"));
        assert!(re(r"\p{Greek}").is_match("λ"));
    }

    #[test]
    fn verbose_mode_comments_are_left_alone() {
        let p = "(?x) a # not a class: [ \\d\n \\d";
        assert_eq!(translate(p), "(?x) a # not a class: [ \\d\n [[:digit:]]");
        assert!(re(p).is_match("a7"));
        assert!(!re(p).is_match("a٣"));
    }

    #[test]
    fn without_backslash_or_invalid_the_pattern_is_returned_as_is() {
        for p in [
            "",
            "abc",
            "^[a-z]+$",
            "(",
            r"(\d",
            r"[\d",
            r"\",
            r"a{2,1}\w",
            r"[\b]",
        ] {
            assert!(matches!(translate(p), Cow::Borrowed(q) if q == p), "{p}");
        }
        for p in [
            "(",
            r"(\d",
            r"[\d",
            r"\",
            r"a{2,1}\w",
            r"[\b]",
            r"\h",
            r"\Q\E",
            r"(\w)\1",
        ] {
            assert!(Regex::new(&translate(p)).is_err(), "{p}");
        }
    }

    #[test]
    fn digits_are_ascii() {
        assert!(re(r"\d").is_match("345"));
        assert!(!re(r"\d").is_match("٣٤٥"));
        assert!(!re(r"\d").is_match("３")); // fullwidth digit three
        assert!(re(r"^\D+$").is_match("٣٤٥"));
        assert!(!re(r"\D").is_match("345"));
    }

    #[test]
    fn word_characters_are_ascii() {
        assert!(!re(r"\w").is_match("é"));
        assert!(!re(r"^\w+$").is_match("héllo"));
        assert!(re(r"^\w+$").is_match("hello_W0rld"));
        assert!(re(r"\W").is_match("é"));
        assert!(!re(r"\W").is_match("a_9"));
    }

    #[test]
    fn case_insensitive_word_stays_ascii_outside_classes() {
        for c in ["\u{212A}", "\u{17F}"] {
            assert!(!re(r"(?i)\w").is_match(c), "{c:?}");
            assert!(re(r"(?i)\W").is_match(c), "{c:?}");
        }
        assert!(re(r"(?i)^\w+$").is_match("AbC"));
        // Case-insensitive literals keep the regex crate's Unicode folding.
        assert!(re(r"(?i)é\w").is_match("Éa"));
    }

    #[test]
    fn spaces_are_java_ascii() {
        for c in [" ", "\t", "\n", "\u{B}", "\u{C}", "\r"] {
            assert!(re(r"\s").is_match(c), "{c:?}");
            assert!(!re(r"\S").is_match(c), "{c:?}");
        }
        for c in ["\u{A0}", "\u{2003}", "\u{85}", "\u{3000}", "\u{2028}"] {
            assert!(!re(r"\s").is_match(c), "{c:?}");
            assert!(re(r"\S").is_match(c), "{c:?}");
        }
        assert!(!re(r"100\s*mk").is_match("100\u{A0}mk"));
    }

    #[test]
    fn word_boundaries_are_ascii() {
        assert!(re(r"\bfoo\b").is_match("éfooé"));
        assert!(re(r"\bfoo\b").is_match("a foo."));
        assert!(!re(r"\bfoo\b").is_match("afoo"));
        assert!(!re(r"\bfoo\b").is_match("foo_"));
        assert!(!re(r"perl\B").is_match("perlé"));
        assert!(re(r"perl\B").is_match("perlert"));
        assert!(re(r"é\Bé").is_match("éé"));
        assert!(re(r"^\B$").is_match(""));
    }

    #[test]
    fn other_constructs_keep_unicode() {
        assert!(re(r"^a.c$").is_match("aéc"));
        assert!(re(r"^é+\d$").is_match("éé1"));
        assert!(re(r"(?i)^straße$").is_match("STRAßE"));
        assert!(re(r"\pL").is_match("é"));
        assert!(re(r"\p{Nd}").is_match("٣"));
    }
}
