//! Encoded candidates: substrings of a line that may be a secret in base64 (standard or URL-safe,
//! padded or not), percent-encoding, hex, or JSON/JavaScript string escapes, with their decoded
//! bytes. The sanitizer runs its known-secret and pattern stages on each decoded form and, when
//! one finds something, redacts the whole encoded candidate.
//!
//! The work is bounded: candidate runs are found in one pass per encoding, runs longer than
//! [`MAX_CANDIDATE`] are decoded in overlapping windows, and the caller limits the decode depth.
//! Each decoding is shorter than its input, so the total work stays linear in the line.

use base64::Engine as _;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

/// Longest encoded run decoded in one piece; longer runs are cut into windows of this size.
pub(super) const MAX_CANDIDATE: usize = 16 * 1024;
/// How much consecutive windows overlap, so a secret on a window boundary is still whole in one.
const WINDOW_OVERLAP: usize = 1024;
/// Shortest base64 run worth decoding (12 bytes: shorter than any pattern rule's token).
const MIN_BASE64: usize = 16;
/// Shortest hex run worth decoding (8 bytes).
const MIN_HEX: usize = 16;

/// An encoded substring `start..end` of the searched text and what it decodes to.
pub(super) struct Candidate {
    pub(super) start: usize,
    pub(super) end: usize,
    pub(super) decoded: String,
}

/// Lenient base64: no padding required, non-zero trailing bits accepted (the run may end inside
/// the encoding of a longer blob).
const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_allow_trailing_bits(true)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

fn is_b64(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'-' | b'_')
}

/// Every encoded candidate of `text`.
pub(super) fn candidates(text: &str, out: &mut Vec<Candidate>) {
    let bytes = text.as_bytes();
    base64_candidates(bytes, out);
    hex_candidates(bytes, out);
    escaped_candidates(bytes, out, b'%', percent_decode);
    escaped_candidates(bytes, out, b'\\', unescape_js);
}

/// Splits the run `start..end` into windows of at most [`MAX_CANDIDATE`] bytes, overlapping by
/// [`WINDOW_OVERLAP`], each starting at a multiple of `align` from `start`.
fn windows(start: usize, end: usize, align: usize, mut f: impl FnMut(usize, usize)) {
    let step = (MAX_CANDIDATE - WINDOW_OVERLAP) / align * align;
    let mut from = start;
    loop {
        let to = end.min(from + MAX_CANDIDATE);
        f(from, to);
        if to >= end {
            break;
        }
        from += step;
    }
}

fn base64_candidates(bytes: &[u8], out: &mut Vec<Candidate>) {
    let mut i = 0;
    while i < bytes.len() {
        if !bytes.get(i).is_some_and(|&b| is_b64(b)) {
            i += 1;
            continue;
        }
        let start = i;
        while bytes.get(i).is_some_and(|&b| is_b64(b)) {
            i += 1;
        }
        let end = i;
        let mut padded_end = end;
        while padded_end < end + 2 && bytes.get(padded_end) == Some(&b'=') {
            padded_end += 1;
        }
        i = padded_end;
        let Some(run) = bytes.get(start..end) else { continue };
        // base64 of text mixes cases; an identifier, path or hex digest rarely does. Skipping the
        // rest saves decoding ordinary words.
        let mixed = run.iter().any(u8::is_ascii_uppercase) && run.iter().any(u8::is_ascii_lowercase);
        if run.len() < MIN_BASE64 || !mixed {
            continue;
        }
        windows(start, end, 4, |from, to| {
            let Some(window) = bytes.get(from..to) else { return };
            let normal: Vec<u8> = window
                .iter()
                .map(|&b| match b {
                    b'-' => b'+',
                    b'_' => b'/',
                    b => b,
                })
                .collect();
            let span_end = if to == end { padded_end } else { to };
            // The secret may start 0–3 characters into the run (inside a longer blob, or after
            // word characters that are not part of the encoding).
            for offset in 0..4 {
                let Some(part) = normal.get(offset..) else { break };
                let usable = part.len() - usize::from(part.len() % 4 == 1);
                if let Some(Ok(raw)) = part.get(..usable).map(|p| LENIENT.decode(p)) {
                    out.push(Candidate {
                        start: from,
                        end: span_end,
                        decoded: String::from_utf8_lossy(&raw).into_owned(),
                    });
                }
            }
        });
    }
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn decode_hex_pairs(digits: &[u8]) -> Vec<u8> {
    digits
        .chunks_exact(2)
        .filter_map(|pair| match pair {
            [hi, lo] => Some(hex_value(*hi)? << 4 | hex_value(*lo)?),
            _ => None,
        })
        .collect()
}

fn hex_candidates(bytes: &[u8], out: &mut Vec<Candidate>) {
    let mut i = 0;
    while i < bytes.len() {
        if !bytes.get(i).is_some_and(u8::is_ascii_hexdigit) {
            i += 1;
            continue;
        }
        let start = i;
        while bytes.get(i).is_some_and(u8::is_ascii_hexdigit) {
            i += 1;
        }
        let end = i;
        if end - start < MIN_HEX {
            continue;
        }
        windows(start, end, 2, |from, to| {
            for offset in 0..2 {
                if let Some(digits) = bytes.get(from + offset..to) {
                    let raw = decode_hex_pairs(digits);
                    out.push(Candidate { start: from, end: to, decoded: String::from_utf8_lossy(&raw).into_owned() });
                }
            }
        });
    }
}

/// Characters that may sit in a percent-encoded or escaped token between escapes.
fn is_token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'+' | b'/' | b'=')
}

/// Runs of token characters and escapes introduced by `lead` (`%` or `\`) that contain at least
/// one escape, decoded by `decode`.
fn escaped_candidates(bytes: &[u8], out: &mut Vec<Candidate>, lead: u8, decode: fn(&[u8]) -> Vec<u8>) {
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes.get(i).copied().unwrap_or(0);
        if !is_token_char(b) && b != lead {
            i += 1;
            continue;
        }
        let start = i;
        let mut escapes = 0usize;
        while let Some(&b) = bytes.get(i) {
            if b == lead {
                escapes += 1;
                // Take the escape's payload (up to `\u{10FFFF}`) so the run does not stop inside it.
                i += 1;
                if lead == b'\\' && bytes.get(i) == Some(&b'u') && bytes.get(i + 1) == Some(&b'{') {
                    i += 2;
                    while bytes.get(i).is_some_and(|&b| b.is_ascii_hexdigit() || b == b'}') {
                        i += 1;
                    }
                }
            } else if is_token_char(b) {
                i += 1;
            } else {
                break;
            }
        }
        let end = i;
        if escapes == 0 || end - start < 6 {
            continue;
        }
        windows(start, end, 1, |from, to| {
            if let Some(run) = bytes.get(from..to) {
                out.push(Candidate {
                    start: from,
                    end: to,
                    decoded: String::from_utf8_lossy(&decode(run)).into_owned(),
                });
            }
        });
    }
}

fn percent_decode(run: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(run.len());
    let mut i = 0;
    while let Some(&b) = run.get(i) {
        if b == b'%'
            && let (Some(hi), Some(lo)) =
                (run.get(i + 1).and_then(|&h| hex_value(h)), run.get(i + 2).and_then(|&l| hex_value(l)))
        {
            out.push(hi << 4 | lo);
            i += 3;
            continue;
        }
        out.push(b);
        i += 1;
    }
    out
}

fn hex_number(digits: &[u8]) -> Option<u32> {
    if digits.is_empty() || digits.len() > 8 {
        return None;
    }
    digits.iter().try_fold(0u32, |acc, &d| Some(acc << 4 | u32::from(hex_value(d)?)))
}

/// Decodes `\uXXXX` (with surrogate pairs), `\u{X…}`, `\xNN` and the one-character escapes of
/// JSON and JavaScript; anything else is kept as written.
fn unescape_js(run: &[u8]) -> Vec<u8> {
    let mut out = String::with_capacity(run.len());
    let mut i = 0;
    let mut pending_high: Option<u32> = None;
    while let Some(&b) = run.get(i) {
        if b != b'\\' {
            out.push(char::from(b));
            i += 1;
            continue;
        }
        let (code, len) = match run.get(i + 1) {
            Some(b'u') if run.get(i + 2) == Some(&b'{') => {
                let close = run.get(i + 3..).and_then(|r| r.iter().position(|&c| c == b'}'));
                match close.and_then(|c| Some((hex_number(run.get(i + 3..i + 3 + c)?)?, c + 4))) {
                    Some(found) => (Some(found.0), found.1),
                    None => (None, 1),
                }
            }
            Some(b'u') => (run.get(i + 2..i + 6).and_then(hex_number), 6),
            Some(b'x') => (run.get(i + 2..i + 4).and_then(hex_number), 4),
            Some(&e @ (b'n' | b't' | b'r' | b'/' | b'\\' | b'"' | b'\'')) => {
                let c = match e {
                    b'n' => '\n',
                    b't' => '\t',
                    b'r' => '\r',
                    other => char::from(other),
                };
                (Some(u32::from(c)), 2)
            }
            _ => (None, 1),
        };
        let Some(code) = code else {
            out.push('\\');
            i += 1;
            continue;
        };
        i += len;
        if (0xD800..0xDC00).contains(&code) {
            pending_high = Some(code);
            continue;
        }
        let code = match (pending_high.take(), code) {
            (Some(high), low @ 0xDC00..=0xDFFF) => 0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00),
            (_, code) => code,
        };
        out.push(char::from_u32(code).unwrap_or(char::REPLACEMENT_CHARACTER));
    }
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decoded(text: &str) -> Vec<String> {
        let mut out = Vec::new();
        candidates(text, &mut out);
        out.into_iter().map(|c| c.decoded).collect()
    }

    #[test]
    fn decodes_each_encoding() {
        assert!(decoded("x aGVsbG8gd29ybGQgaGVsbG8= y").iter().any(|d| d == "hello world hello"));
        assert!(decoded("68656c6c6f20776f726c64").iter().any(|d| d == "hello world"));
        assert!(decoded("%68%65%6C%6C%6F%5F").iter().any(|d| d == "hello_"));
        assert!(decoded(r"\u0068\x65llo\u{1F600}\uD83D\uDE00").iter().any(|d| d == "hello\u{1F600}\u{1F600}"));
    }

    #[test]
    fn malformed_escapes_do_not_panic() {
        for text in ["\\", "\\u", "\\u{", "\\u{110000}", "\\uD800", "%", "%g0", "\\x4", "abc\\u{12345678901}"] {
            let _ = decoded(&format!("aaaaaa{text}"));
        }
    }

    #[test]
    fn long_runs_are_decoded_in_overlapping_windows() {
        let run = "Ab".repeat(MAX_CANDIDATE);
        let mut out = Vec::new();
        candidates(&run, &mut out);
        assert!(out.iter().all(|c| c.end - c.start <= MAX_CANDIDATE));
        assert!(out.iter().any(|c| c.end == run.len()));
    }
}
