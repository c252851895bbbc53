//! The trust boundary as types, and the entry points for everything that is not a console log:
//! structured answers ([`Sanitizer::clean_value`]), free text ([`Sanitizer::clean_text`]) and
//! single console lines with a size cap ([`Sanitizer::clean_line`]).
//!
//! Data read from Jenkins is wrapped in [`Untrusted`] as soon as it is read; the only ways to get it
//! out are [`Sanitizer::release`] and [`Sanitizer::release_text`], which sanitize it and return a
//! [`Clean`]. `Untrusted` has no `Display`, `Serialize`, `Deref` or public accessor, so forgetting
//! to sanitize is a compile error rather than a leak.

use std::fmt;

use serde::Serialize;
use serde_json::{Map, Value};

use super::{Sanitizer, mark_untrusted, parse_frame, unicode};

/// Byte cap for each string of a structured answer (cut after redaction, marker included).
pub const MAX_VALUE_STRING_BYTES: usize = 8 * 1024;

/// Nesting depth past which [`Sanitizer::clean_value`] replaces a subtree by a cut marker.
const MAX_VALUE_DEPTH: usize = 256;

/// Byte cap for the body of a framed console excerpt met again inside a structured answer; larger
/// than [`MAX_VALUE_STRING_BYTES`] because log views carry their own, larger budget.
const MAX_FRAMED_BODY_BYTES: usize = 256 * 1024;

/// Data that came from Jenkins and has not been sanitized yet. See the module documentation.
pub struct Untrusted<T>(T);

impl<T> Untrusted<T> {
    /// Marks `value` as read from Jenkins.
    pub fn new(value: T) -> Self {
        Self(value)
    }
}

/// Never shows the value: it may hold a secret or text aimed at a model.
impl<T> fmt::Debug for Untrusted<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Untrusted(..)")
    }
}

/// Data that went through a [`Sanitizer`]: secrets redacted, control and invisible characters
/// removed, fences defused, strings capped. Only this module can make one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Clean<T>(T);

impl<T> Clean<T> {
    /// The sanitized value.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl Clean<Value> {
    /// The value with parts removed by `narrow` (a field selection): a part of a clean value is
    /// clean. Only for taking away; nothing may be added here.
    pub(crate) fn narrowed(self, narrow: impl FnOnce(Value) -> Value) -> Clean<Value> {
        Clean(narrow(self.0))
    }

    /// Adds a number jgate itself computed (a count, never text from Jenkins) to a clean object.
    pub fn with_count(mut self, key: &str, n: u64) -> Clean<Value> {
        if let Value::Object(m) = &mut self.0 {
            m.insert(key.to_string(), Value::from(n));
        }
        self
    }
}

impl<T> AsRef<T> for Clean<T> {
    fn as_ref(&self) -> &T {
        &self.0
    }
}

fn cut_marker(bytes: usize) -> String {
    format!("…[cut {bytes} bytes]")
}

/// Cuts already-redacted text to at most `max` bytes, the `…[cut N bytes]` marker included (unless
/// `max` is smaller than the marker itself), on a character boundary and not inside a
/// `[REDACTED:…]` marker. Returns the text and the number of bytes of `text` left out. A text that
/// fits is returned unchanged, so capping twice is the same as capping once.
fn cap_with_marker(text: &str, max: usize) -> (String, usize) {
    if text.len() <= max {
        return (text.to_owned(), 0);
    }
    let mut end = max.saturating_sub(cut_marker(text.len()).len()).min(text.len());
    while end > 0 && !text.is_char_boundary(end) {
        end -= 1;
    }
    let mut kept = text.get(..end).unwrap_or("");
    if let Some(open) = kept.rfind("[REDACTED:")
        && !kept.get(open..).is_some_and(|m| m.contains(']'))
    {
        kept = kept.get(..open).unwrap_or("");
    }
    let cut = text.len() - kept.len();
    (format!("{kept}{}", cut_marker(cut)), cut)
}

impl Sanitizer {
    /// Cleans one console line, then caps it at `max_bytes` (see [`Sanitizer::clean`]): the whole
    /// line is redacted before it is cut, so a secret at the end of a long line is never shown in
    /// part. The cut falls on a character boundary and is shown as `…[cut N bytes]`; the bytes
    /// cut are added to [`super::Report::truncated_bytes`]. Consecutive lines of one log share
    /// state, as with [`Sanitizer::clean`].
    pub fn clean_line(&mut self, line: &str, max_bytes: usize) -> String {
        let cleaned = self.clean(line);
        let (out, cut) = cap_with_marker(&cleaned, max_bytes);
        if cut > 0 {
            self.note_truncated(cut);
            self.adjust_bytes_out(cleaned.len(), out.len());
        }
        out
    }

    /// Cleans one free-text string from Jenkins (an error message, a description…): control
    /// characters and invisible characters removed, every line redacted, fences defused. The
    /// string is cleaned on its own: an escape sequence or private key left open by earlier
    /// [`Sanitizer::clean`] calls does not carry into it, nor out of it.
    pub fn clean_text(&mut self, text: &str) -> String {
        self.clean_string(text, usize::MAX)
    }

    /// Cleans every string of a JSON tree, object keys included, as [`Sanitizer::clean_text`]
    /// does, and caps each at [`MAX_VALUE_STRING_BYTES`]. Numbers, booleans and nulls are kept.
    ///
    /// Running it again on its own output changes nothing and counts nothing: markers are not
    /// redacted again, and a console excerpt framed by [`mark_untrusted`] is recognised, its body
    /// cleaned and framed again (so its fence stays whole and genuine, and a forged fence inside
    /// it is defused like any other).
    pub fn clean_value(&mut self, value: &Value) -> Value {
        self.clean_value_capped(value, MAX_VALUE_STRING_BYTES)
    }

    /// [`Sanitizer::clean_value`] with another cap per string.
    pub fn clean_value_capped(&mut self, value: &Value, max_string_bytes: usize) -> Value {
        self.clean_tree(value, max_string_bytes, 0)
    }

    fn clean_tree(&mut self, value: &Value, max_string_bytes: usize, depth: usize) -> Value {
        if depth > MAX_VALUE_DEPTH && (value.is_array() || value.is_object()) {
            // Deeper than any parsed JSON gets (serde_json stops at 128): cut rather than risk
            // the stack (measuring it would recurse too).
            return Value::String("…[cut: nested too deep]".to_owned());
        }
        match value {
            Value::String(s) => Value::String(self.clean_string(s, max_string_bytes)),
            Value::Array(items) => {
                Value::Array(items.iter().map(|v| self.clean_tree(v, max_string_bytes, depth + 1)).collect())
            }
            Value::Object(fields) => {
                let mut out = Map::with_capacity(fields.len());
                for (key, v) in fields {
                    let mut key = self.clean_string(key, max_string_bytes);
                    // Two keys may clean to the same text (both redacted): keep both values.
                    if out.contains_key(&key) {
                        let base = key.clone();
                        let mut n = 2;
                        while out.contains_key(&key) {
                            key = format!("{base} ({n})");
                            n += 1;
                        }
                    }
                    let v = self.clean_tree(v, max_string_bytes, depth + 1);
                    out.insert(key, v);
                }
                Value::Object(out)
            }
            Value::Null | Value::Bool(_) | Value::Number(_) => value.clone(),
        }
    }

    /// Sanitizes a structured answer read from Jenkins (see [`Sanitizer::clean_value`]).
    pub fn release(&mut self, untrusted: Untrusted<Value>) -> Clean<Value> {
        Clean(self.clean_value(&untrusted.0))
    }

    /// [`Sanitizer::release`] with a per-string cap other than [`MAX_VALUE_STRING_BYTES`] (an
    /// answer whose strings are themselves bounded, such as a log view or a config.xml).
    pub fn release_capped(&mut self, untrusted: Untrusted<Value>, max_string_bytes: usize) -> Clean<Value> {
        Clean(self.clean_value_capped(&untrusted.0, max_string_bytes))
    }

    /// Sanitizes a free-text string read from Jenkins (see [`Sanitizer::clean_text`]).
    pub fn release_text(&mut self, untrusted: Untrusted<String>) -> Clean<String> {
        Clean(self.clean_text(&untrusted.0))
    }

    fn clean_string(&mut self, text: &str, max: usize) -> String {
        let memo = text.len() <= super::MEMO_MAX_BYTES && text.len() <= max;
        if memo && self.known.is_known_clean(text) {
            self.report.bytes_in = self.report.bytes_in.saturating_add(text.len());
            self.report.bytes_out = self.report.bytes_out.saturating_add(text.len());
            return text.to_owned();
        }
        let findings = self.report.findings();
        let out = self.clean_string_uncached(text, max);
        if memo && out == text && self.report.findings() == findings {
            self.known.remember_clean(text);
        }
        out
    }

    fn clean_string_uncached(&mut self, text: &str, max: usize) -> String {
        if let Some((source, body)) = parse_frame(text) {
            let source = self.clean_isolated(source);
            let body = self.clean_isolated(body);
            let (body, cut) = cap_with_marker(&body, MAX_FRAMED_BODY_BYTES.max(max));
            self.note_truncated(cut);
            return mark_untrusted(&source, &body);
        }
        let cleaned = self.clean_isolated(text);
        let defused = unicode::defuse_fences(&cleaned);
        let (out, cut) = cap_with_marker(&defused, max);
        self.note_truncated(cut);
        self.adjust_bytes_out(cleaned.len(), out.len());
        out
    }

    /// [`Sanitizer::clean`] on a text that stands alone: the state carried between chunks of a
    /// log is set aside for it and restored afterwards.
    fn clean_isolated(&mut self, text: &str) -> String {
        let normalizer = std::mem::take(&mut self.normalizer);
        let in_private_key = std::mem::take(&mut self.in_private_key);
        let newline_owed = std::mem::take(&mut self.newline_owed);
        let mut out = self.clean(text);
        if self.newline_owed {
            // The text ended inside a private key whose header line ended with a newline.
            out.push('\n');
            self.report.bytes_out = self.report.bytes_out.saturating_add(1);
        }
        self.normalizer = normalizer;
        self.in_private_key = in_private_key;
        self.newline_owed = newline_owed;
        out
    }

    fn adjust_bytes_out(&mut self, before: usize, after: usize) {
        self.report.bytes_out = self.report.bytes_out.saturating_sub(before).saturating_add(after);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cap_counts_the_marker_and_is_idempotent() {
        let text = "é".repeat(100);
        for max in [0, 1, 10, 30, 50, 199, 200, 201] {
            let (once, cut) = cap_with_marker(&text, max);
            if max >= 200 {
                assert_eq!((once.as_str(), cut), (text.as_str(), 0));
                continue;
            }
            assert!(once.ends_with(&format!("…[cut {cut} bytes]")), "{once}");
            if max >= 30 {
                assert!(once.len() <= max, "{max}: {once}");
                assert_eq!(cap_with_marker(&once, max).0, once);
            }
        }
        let (out, _) = cap_with_marker("abc [REDACTED:github-pat] def ghi jkl mno pqr stu", 35);
        assert_eq!(out, "abc …[cut 45 bytes]");
    }

    #[test]
    fn very_deep_values_are_cut_not_recursed_into() {
        let mut deep = Value::from("ghp_R8k2QzR8k2QzR8k2QzR8k2QzR8k2QzR8k2Qz");
        for _ in 0..(MAX_VALUE_DEPTH + 10) {
            deep = Value::Array(vec![deep]);
        }
        let mut s = Sanitizer::new(super::super::KnownSecrets::new());
        let out = s.clean_value(&deep);
        let mut at = &out;
        let mut levels = 0;
        while let Some(inner) = at.as_array().and_then(|a| a.first()) {
            at = inner;
            levels += 1;
        }
        assert_eq!(levels, MAX_VALUE_DEPTH + 1);
        assert_eq!(at, "…[cut: nested too deep]");
    }

    #[test]
    fn remembered_clean_strings_give_the_same_answer_and_counts() {
        // The memo of strings that cleaned to themselves must be invisible: a second sanitizer
        // from the same set (a second call) returns the same value and the same report, and
        // what needed cleaning is cleaned again, never remembered.
        let mut known = super::super::KnownSecrets::new();
        known.add("s3cr3t-jenkins-token");
        let value = serde_json::json!({
            "name": "app",
            "color": "blue",
            "description": "token s3cr3t-jenkins-token here",
            "log": "\u{1b}[31mred\u{1b}[0m",
            "pat": "ghp_R8k2QzR8k2QzR8k2QzR8k2QzR8k2QzR8k2Qz",
            "hidden": "a\u{200b}b",
            "list": ["app", "app", "blue"],
        });
        let mut first = Sanitizer::new(known.clone());
        let once = first.clean_value(&value);
        let mut second = Sanitizer::new(known.clone());
        let twice = second.clean_value(&value);
        assert_eq!(once, twice);
        assert_eq!(first.report(), second.report());
        assert!(known.is_known_clean("app") && known.is_known_clean("description"));
        for dirty in ["token s3cr3t-jenkins-token here", "ghp_R8k2QzR8k2QzR8k2QzR8k2QzR8k2QzR8k2Qz", "a\u{200b}b"] {
            assert!(!known.is_known_clean(dirty), "{dirty:?} was remembered as clean");
        }
        assert_eq!(twice["pat"], "[REDACTED:github-pat]");
        // A string longer than a later caller's cap is not answered from the memo uncut.
        let long = "x".repeat(100);
        let mut third = Sanitizer::new(known.clone());
        let _ = third.clean_value(&Value::from(long.clone()));
        assert!(known.is_known_clean(&long));
        let capped = third.clean_value_capped(&Value::from(long.clone()), 40);
        assert!(capped.as_str().is_some_and(|s| s.len() <= 40), "{capped}");
    }
}
