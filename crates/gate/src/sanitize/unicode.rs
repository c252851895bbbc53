//! Unicode classes and normalised views.
//!
//! An attacker who controls a build can disguise a secret so that a byte-exact search misses it
//! while a model still reads it: compatibility forms (fullwidth `ｇｈｐ＿…`), combining marks or
//! invisible format characters inserted between its characters, odd spaces (NBSP, U+2800 braille
//! blank). The redaction stages therefore search a *view* of the text in which these disguises are
//! undone, and map every match back to the byte range of the original text that produced it.
//!
//! The view of a character is its NFKD decomposition (unicode-normalization), without combining
//! marks (Mn, Me) and invisible characters. NFKC would recompose afterwards, but recomposition
//! only re-attaches the marks we drop, so for matching the two agree; working per character keeps
//! the view a homomorphism (the view of `a + b` is the view of `a` plus the view of `b`), which is
//! what lets known secrets be searched by their own view, and keeps the map to original bytes
//! trivial.

use std::borrow::Cow;

use unicode_normalization::char::decompose_compatible;
use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};

/// Format characters (general category Cf) and the other Default_Ignorable_Code_Points: rendered
/// as nothing, so they can hide text from a byte search or smuggle text past a reader.
///
/// Cf comes from the Unicode tables (unicode-properties); Default_Ignorable_Code_Point adds to Cf
/// only the variation selectors and the short, stable Other_Default_Ignorable_Code_Point list,
/// which no crate we use exposes, so those ranges are spelled out here.
pub(super) fn is_invisible(c: char) -> bool {
    if c.is_ascii() {
        return false;
    }
    c.general_category() == GeneralCategory::Format
        || matches!(
            c,
            // Variation selectors.
            '\u{180B}'..='\u{180D}' | '\u{180F}' | '\u{FE00}'..='\u{FE0F}' | '\u{E0100}'..='\u{E01EF}'
            // Other_Default_Ignorable_Code_Point (combining grapheme joiner, Hangul fillers,
            // Khmer inherent vowels, reserved ranges kept ignorable for future use).
            | '\u{034F}'
            | '\u{115F}'..='\u{1160}'
            | '\u{17B4}'..='\u{17B5}'
            | '\u{2065}'
            | '\u{3164}'
            | '\u{FFA0}'
            | '\u{E0000}'..='\u{E0FFF}'
        )
}

/// Combining marks that draw on the previous character (Mn, Me): inserted into a secret they leave
/// it readable but break a byte search.
pub(super) fn is_mark(c: char) -> bool {
    !c.is_ascii() && matches!(c.general_category(), GeneralCategory::NonspacingMark | GeneralCategory::EnclosingMark)
}

/// Non-ASCII characters that read as blank space: space separators (NBSP, en/em/thin spaces,
/// ideographic space…), other Unicode white space, and blank-looking symbols (U+2800 braille
/// pattern blank).
pub(super) fn is_blank(c: char) -> bool {
    !c.is_ascii() && (c.is_whitespace() || c.general_category() == GeneralCategory::SpaceSeparator || c == '\u{2800}')
}

/// What a view does with white space.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Spaces {
    /// Non-ASCII blanks become an ASCII space; ASCII white space is kept. Word boundaries survive,
    /// which the pattern rules need.
    AsSpace,
    /// Non-ASCII blanks are removed (an NBSP inside a token no longer splits it); ASCII white
    /// space is kept.
    DropUnicode,
    /// All white space except `\n` is removed: the view in which known secrets are searched (a
    /// secret printed with spaces between its characters is still found). `\n` stays as a barrier
    /// so a match never spans lines.
    DropAll,
}

/// A normalised copy of a text with, for each of its bytes, the byte range of the original
/// character it came from.
pub(super) struct View<'a> {
    src: &'a str,
    text: Cow<'a, str>,
    /// `None` when the view is the original text itself.
    origin: Option<Vec<(usize, usize)>>,
    /// Whether a non-ASCII blank was seen (then `AsSpace` and `DropUnicode` views differ).
    pub(super) had_blank: bool,
}

impl<'a> View<'a> {
    pub(super) fn build(src: &'a str, spaces: Spaces) -> View<'a> {
        let unchanged = src.is_ascii()
            && (spaces != Spaces::DropAll || !src.bytes().any(|b| b.is_ascii_whitespace() && b != b'\n'));
        if unchanged {
            return View { src, text: Cow::Borrowed(src), origin: None, had_blank: false };
        }
        if src.is_ascii() {
            // What the general loop below does to ASCII text in DropAll mode (the only one that
            // changes it): ASCII white space other than '\n' is removed, every other byte kept.
            let mut text = String::with_capacity(src.len());
            let mut origin = Vec::with_capacity(src.len());
            for (at, b) in src.bytes().enumerate() {
                if b.is_ascii_whitespace() && b != b'\n' {
                    continue;
                }
                text.push(char::from(b));
                origin.push((at, at + 1));
            }
            return View { src, text: Cow::Owned(text), origin: Some(origin), had_blank: false };
        }
        let mut text = String::with_capacity(src.len());
        let mut origin = Vec::with_capacity(src.len());
        let mut had_blank = false;
        for (at, c) in src.char_indices() {
            let range = (at, at + c.len_utf8());
            let mut emit = |d: char| {
                let blank = if d.is_ascii() { d.is_ascii_whitespace() && d != '\n' } else { is_blank(d) };
                let keep = if blank {
                    // An ASCII space that came from a non-ASCII character (NFKD of NBSP) is a
                    // disguise as much as the NBSP itself.
                    let from_unicode = !c.is_ascii();
                    had_blank |= from_unicode;
                    match spaces {
                        Spaces::AsSpace => Some(if from_unicode { ' ' } else { d }),
                        Spaces::DropUnicode if !from_unicode => Some(d),
                        Spaces::DropUnicode | Spaces::DropAll => None,
                    }
                } else if is_invisible(d) || is_mark(d) {
                    None
                } else {
                    Some(d)
                };
                if let Some(k) = keep {
                    text.push(k);
                    origin.extend(std::iter::repeat_n(range, k.len_utf8()));
                }
            };
            if c.is_ascii() {
                emit(c);
            } else if matches!(c, '\u{2028}' | '\u{2029}') {
                emit('\n');
            } else if is_invisible(c) || is_mark(c) {
                // Nothing: dropped before decomposing.
            } else if is_blank(c) {
                emit(' ');
            } else {
                decompose_compatible(c, &mut emit);
            }
        }
        View { src, text: Cow::Owned(text), origin: Some(origin), had_blank }
    }

    pub(super) fn text(&self) -> &str {
        &self.text
    }

    /// The original byte range of the view's bytes `start..end` (which must be non-empty).
    pub(super) fn source_range(&self, start: usize, end: usize) -> Option<(usize, usize)> {
        if start >= end {
            return None;
        }
        match &self.origin {
            None => Some((start, end)),
            Some(origin) => Some((origin.get(start)?.0, origin.get(end - 1)?.1)),
        }
    }

    /// Whether the view's bytes `at - 1` and `at` were also neighbours in the original text, with
    /// nothing but invisible characters and marks between them (no white space, which the view
    /// may have removed).
    pub(super) fn joined_before(&self, at: usize) -> bool {
        let Some(origin) = &self.origin else { return true };
        let (Some(left), Some(right)) = (at.checked_sub(1).and_then(|l| origin.get(l)), origin.get(at)) else {
            return false;
        };
        self.src.get(left.1.min(right.0)..right.0).is_some_and(|gap| !gap.chars().any(|c| c.is_whitespace()))
    }
}

/// The view of a text in [`Spaces::DropAll`] mode, as an owned string: how a known secret is
/// searched for.
pub(super) fn skeleton(text: &str) -> String {
    View::build(text, Spaces::DropAll).text().to_owned()
}

// ---------------------------------------------------------------------------------------------
// Fence characters
// ---------------------------------------------------------------------------------------------

/// How many ASCII `<` (negative) or `>` (positive) a character reads as: the ASCII brackets, their
/// compatibility forms (fullwidth, small), and look-alikes a model would read as brackets (angle
/// quotation marks, mathematical and CJK angle brackets, modifier arrowheads, Canadian syllabics
/// PA/PO), doubled (`«`, `≪`, `《`) and tripled (`⋘`) forms counting as two and three.
pub(super) fn bracket_weight(c: char) -> i8 {
    let base = match c {
        '<' => return -1,
        '>' => return 1,
        _ if c.is_ascii() => return 0,
        _ => {
            let mut first = None;
            let mut count = 0;
            decompose_compatible(c, |d| {
                if !is_mark(d) {
                    count += 1;
                    first.get_or_insert(d);
                }
            });
            if count == 1 { first.unwrap_or(c) } else { c }
        }
    };
    match base {
        '<' => -1,
        '>' => 1,
        '\u{2039}' | '\u{2329}' | '\u{3008}' | '\u{27E8}' | '\u{276C}' | '\u{276E}' | '\u{2770}' | '\u{02C2}'
        | '\u{1438}' | '\u{29FC}' | '\u{FE3F}' => -1,
        '\u{203A}' | '\u{232A}' | '\u{3009}' | '\u{27E9}' | '\u{276D}' | '\u{276F}' | '\u{2771}' | '\u{02C3}'
        | '\u{1433}' | '\u{29FD}' | '\u{FE40}' => 1,
        '\u{00AB}' | '\u{226A}' | '\u{300A}' | '\u{2AA1}' | '\u{27EA}' => -2,
        '\u{00BB}' | '\u{226B}' | '\u{300B}' | '\u{2AA2}' | '\u{27EB}' => 2,
        '\u{22D8}' => -3,
        '\u{22D9}' => 3,
        _ => 0,
    }
}

/// Rewrites text so that it cannot contain a fence line of [`super::mark_untrusted`]: every
/// bracket look-alike becomes ASCII, marks on a bracket are dropped, invisible and control
/// characters (but `\n` and `\t`) are dropped, and a space is put before every third `<` or `>` in
/// a row, so no run of three survives.
pub(super) fn defuse_fences(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    // The bracket of the current run and how many of it were written in a row.
    let mut run: Option<(char, u8)> = None;
    for c in text.chars() {
        if is_invisible(c) || (c.is_control() && c != '\n' && c != '\t') {
            continue;
        }
        if run.is_some() && is_mark(c) {
            continue;
        }
        let weight = bracket_weight(c);
        if weight == 0 {
            out.push(c);
            run = None;
            continue;
        }
        let bracket = if weight < 0 { '<' } else { '>' };
        for _ in 0..weight.unsigned_abs() {
            let count = match run {
                Some((b, n)) if b == bracket => n,
                _ => 0,
            };
            if count >= 2 {
                out.push(' ');
                run = Some((bracket, 1));
            } else {
                run = Some((bracket, count + 1));
            }
            out.push(bracket);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ascii_drop_all_views_match_the_general_rule() {
        // The ASCII fast path against the same text with one non-ASCII letter added at the end,
        // which takes the general loop: everything before it must map the same way.
        for text in ["a b\tc\nd", "  key = value\r\n", "x\u{0b}y\u{0c}z", "no-space", "\n\n"] {
            let fast = View::build(text, Spaces::DropAll);
            let general_src = format!("{text}é");
            let general = View::build(&general_src, Spaces::DropAll);
            // (The view folds é to e, dropping the mark.)
            assert_eq!(Some(fast.text()), general.text().strip_suffix('e'), "{text:?}");
            for i in 0..fast.text().len() {
                assert_eq!(fast.source_range(i, i + 1), general.source_range(i, i + 1), "{text:?} at {i}");
                if i > 0 {
                    // (Position 0 has no left neighbour; callers never ask.)
                    assert_eq!(fast.joined_before(i), general.joined_before(i), "{text:?} joined at {i}");
                }
            }
            assert!(!fast.had_blank);
        }
    }

    #[test]
    fn invisible_is_decided_by_property() {
        for c in [
            '\u{13430}',
            '\u{13438}',
            '\u{0600}',
            '\u{06DD}',
            '\u{200B}',
            '\u{2066}',
            '\u{E0041}',
            '\u{FE0F}',
            '\u{3164}',
            '\u{180E}',
            '\u{1D173}',
        ] {
            assert!(is_invisible(c), "U+{:04X}", c as u32);
        }
        for c in ['a', 'é', '構', '\u{0301}', '\u{00A0}', '✅'] {
            assert!(!is_invisible(c), "U+{:04X}", c as u32);
        }
    }

    #[test]
    fn views_map_back_to_whole_original_characters() {
        let src = "x ｇ\u{0301}h\u{00A0}p\u{200B}_ y";
        let view = View::build(src, Spaces::DropAll);
        assert_eq!(view.text(), "xghp_y");
        let (start, end) = view.source_range(1, 5).unwrap_or_default();
        assert_eq!(&src[start..end], "ｇ\u{0301}h\u{00A0}p\u{200B}_");
        assert!(view.joined_before(2) && !view.joined_before(1));
        assert_eq!(View::build(src, Spaces::AsSpace).text(), "x gh p_ y");
        assert_eq!(View::build(src, Spaces::DropUnicode).text(), "x ghp_ y");
        assert_eq!(skeleton("①⑵ ﬁ"), "1(2)fi");
    }

    #[test]
    fn defusing_breaks_every_run_of_three_brackets() {
        assert_eq!(defuse_fences("a <<< b >>>> c"), "a << < b >> >> c");
        assert_eq!(defuse_fences("＜≪\u{0301}x"), "<< <x");
        assert_eq!(defuse_fences("<\u{200B}<\u{1B}<"), "<< <");
        assert_eq!(defuse_fences(&defuse_fences("<<<<<<<")), defuse_fences("<<<<<<<"));
    }
}
