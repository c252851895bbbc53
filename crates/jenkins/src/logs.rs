//! Bounded-memory views of a console log that arrives as a byte stream.
//!
//! A Jenkins console log can be a gigabyte or more, so nothing here ever holds the whole log.
//! Every view consumes a stream of [`Bytes`] chunks (for example `reqwest::Response::bytes_stream()`)
//! whose boundaries may fall anywhere: inside a line, between the `\r` and `\n` of a CRLF, or in the
//! middle of a multi-byte UTF-8 character.
//!
//! | view | memory held | stops reading early |
//! |------|-------------|---------------------|
//! | [`lines`] | one chunk + one line | whenever the caller stops polling |
//! | [`head`] | the `n` lines returned | after line `n` |
//! | [`line_range`] | the lines returned | after line `to` |
//! | [`tail`] | `n` × `max_line_bytes` (a ring buffer) | never (it must see the end) |
//! | [`grep`] | `before` × `max_line_bytes` + the hits returned | once `max_matches` is reached |
//!
//! ## Line rules
//!
//! They match [`str::lines`]: lines end at `\n` or `\r\n`, the terminator is not part of the line,
//! the final terminator is optional (a last line without one is still a line), an empty stream has
//! no lines, and a lone `\r` that is not followed by `\n` is kept as text.
//!
//! Bytes are decoded as UTF-8 lossily: invalid sequences become `U+FFFD`. A line longer than
//! `max_line_bytes` keeps only its first `max_line_bytes` bytes (shortened further, by at most three
//! bytes, so that a character cut in half is dropped rather than turned into `U+FFFD`) and is marked
//! [`Line::truncated`]. A single giant line therefore costs at most `max_line_bytes` of memory.
//!
//! ## Errors
//!
//! An `Err` from the underlying stream is passed through unchanged (any error type works); the async
//! views return it at once.
//!
//! ```no_run
//! # async fn demo(resp: reqwest::Response) -> Result<(), reqwest::Error> {
//! let t = jenkins::logs::tail(resp.bytes_stream(), 100, 4096).await?;
//! println!("{} lines in total; the last one is {:?}", t.total_lines, t.lines.last().map(|l| &l.text));
//! # Ok(())
//! # }
//! ```

use std::borrow::Cow;
use std::collections::VecDeque;
use std::ops::ControlFlow;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use futures_util::stream::{Stream, StreamExt};

/// One line of a log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// 1-based position of the line in the log.
    pub number: u64,
    /// The line without its terminator, decoded lossily (and cut if `truncated`).
    pub text: String,
    /// The line was longer than `max_line_bytes`; `text` holds only its beginning.
    pub truncated: bool,
}

/// The end of a log, as returned by [`tail`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tail {
    /// The last `n` lines (fewer if the log is shorter), oldest first.
    pub lines: Vec<Line>,
    /// How many lines the whole log has.
    pub total_lines: u64,
    /// How many bytes the whole log has.
    pub total_bytes: u64,
}

/// Settings for [`grep`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrepOptions {
    /// Context lines to show before each match (`grep -B`).
    pub before: usize,
    /// Context lines to show after each match (`grep -A`).
    pub after: usize,
    /// Stop after this many matches (`grep -m`); see [`Grep::truncated`].
    pub max_matches: usize,
    /// Longest line kept, in bytes; longer lines are cut (and only the kept part is searched).
    pub max_line_bytes: usize,
}

impl Default for GrepOptions {
    fn default() -> Self {
        GrepOptions { before: 0, after: 0, max_matches: 100, max_line_bytes: 4096 }
    }
}

/// A line in a [`Grep`] result: a match or a context line around one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrepHit {
    /// The line itself.
    pub line: Line,
    /// `true` for a matching line, `false` for a context line.
    pub is_match: bool,
}

/// The result of [`grep`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grep {
    /// Matches and their context in log order, each line at most once (overlapping or touching
    /// context groups are merged). A gap in the line numbers separates two groups, like grep's `--`.
    pub hits: Vec<GrepHit>,
    /// How many of `hits` are matches.
    pub matches: usize,
    /// The search stopped at `max_matches` and part of the log after the last hit was not searched.
    pub truncated: bool,
    /// How many lines were searched.
    pub lines_scanned: u64,
}

// ---------------------------------------------------------------------------------------------
// The splitter: a synchronous, allocation-free core shared by every view.
// ---------------------------------------------------------------------------------------------

/// A complete line as bytes, borrowed from the current chunk or from the splitter's carry buffer.
#[derive(Debug)]
struct RawLine<'a> {
    number: u64,
    bytes: &'a [u8],
    truncated: bool,
}

impl RawLine<'_> {
    fn text(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(self.bytes)
    }

    fn to_line(&self) -> Line {
        Line { number: self.number, text: self.text().into_owned(), truncated: self.truncated }
    }
}

/// Cuts lines out of chunks, carrying a partial line (at most `max` bytes of it) between chunks.
#[derive(Debug)]
struct Splitter {
    max: usize,
    /// The kept beginning of the current partial line (valid while `pending_len > 0`).
    carry: Vec<u8>,
    /// Bytes of the current partial line seen so far, kept or not.
    pending_len: u64,
    /// The last byte of the current partial line (to recognize a CRLF split across chunks).
    last_byte: u8,
    /// Number of the next line to be completed.
    next_number: u64,
}

impl Splitter {
    fn new(max: usize) -> Self {
        Splitter { max, carry: Vec::new(), pending_len: 0, last_byte: 0, next_number: 1 }
    }

    /// Lines completed so far.
    fn lines_done(&self) -> u64 {
        self.next_number - 1
    }

    /// Appends a piece of the current line, keeping at most `max` bytes of it.
    fn absorb(&mut self, piece: &[u8]) {
        let Some(&last) = piece.last() else { return };
        if self.pending_len == 0 {
            self.carry.clear();
        }
        let room = self.max.saturating_sub(self.carry.len());
        self.carry.extend_from_slice(&piece[..piece.len().min(room)]);
        self.pending_len += piece.len() as u64;
        self.last_byte = last;
    }

    /// The next complete line in `chunk[*pos..]`, advancing `pos` past it. When the rest holds no
    /// line end it is absorbed as the start of a line, `pos` moves to the end and `None` is returned.
    fn next_line<'a>(&'a mut self, chunk: &'a [u8], pos: &mut usize) -> Option<RawLine<'a>> {
        let rest = chunk.get(*pos..).unwrap_or_default();
        let Some(nl) = find_newline(rest) else {
            self.absorb(rest);
            *pos = chunk.len();
            return None;
        };
        *pos += nl + 1;
        let number = self.next_number;
        self.next_number += 1;
        let segment = &rest[..nl];
        if self.pending_len == 0 {
            // The whole line is in this chunk: borrow it.
            let content = segment.strip_suffix(b"\r").unwrap_or(segment);
            let (bytes, truncated) = cut_to(self.max, content, content.len() as u64);
            return Some(RawLine { number, bytes, truncated });
        }
        self.absorb(segment);
        let content_len = self.pending_len - u64::from(self.last_byte == b'\r');
        self.pending_len = 0;
        let (bytes, truncated) = cut_to(self.max, &self.carry, content_len);
        Some(RawLine { number, bytes, truncated })
    }

    /// The last line, if the stream ended without a terminator after it.
    fn finish(&mut self) -> Option<RawLine<'_>> {
        if self.pending_len == 0 {
            return None;
        }
        let number = self.next_number;
        self.next_number += 1;
        let len = self.pending_len;
        self.pending_len = 0;
        let (bytes, truncated) = cut_to(self.max, &self.carry, len);
        Some(RawLine { number, bytes, truncated })
    }
}

/// Given the kept bytes of a line whose content is `content_len` bytes long, returns what to show
/// (at most `max` bytes, never ending in half a character when cut) and whether it was cut.
fn cut_to(max: usize, kept: &[u8], content_len: u64) -> (&[u8], bool) {
    if content_len <= max as u64 {
        // `kept` may still hold the `\r` of a CRLF; `content_len` excludes it.
        let len = usize::try_from(content_len).unwrap_or(kept.len()).min(kept.len());
        return (&kept[..len], false);
    }
    let kept = &kept[..max.min(kept.len())];
    (drop_partial_char(kept), true)
}

/// Drops an incomplete UTF-8 sequence at the very end of `b` (a character cut by truncation).
fn drop_partial_char(b: &[u8]) -> &[u8] {
    // Walk back over at most three continuation bytes to the start of the last character.
    let mut start = b.len();
    for _ in 0..4 {
        if start == 0 {
            return b;
        }
        start -= 1;
        if b[start] & 0xC0 != 0x80 {
            break;
        }
    }
    let lead = b[start];
    let need = match lead {
        0xC0..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xF7 => 4,
        _ => return b, // ASCII, or not UTF-8 anyway: leave it to the lossy decoder
    };
    if b.len() - start < need { &b[..start] } else { b }
}

/// Position of the first `\n`, scanning 32 bytes at a time (the inner test vectorizes).
fn find_newline(hay: &[u8]) -> Option<usize> {
    const BLOCK: usize = 32;
    let mut chunks = hay.chunks_exact(BLOCK);
    let mut base = 0;
    for block in &mut chunks {
        if block.iter().fold(false, |seen, &b| seen | (b == b'\n')) {
            return block.iter().position(|&b| b == b'\n').map(|i| base + i);
        }
        base += BLOCK;
    }
    chunks.remainder().iter().position(|&b| b == b'\n').map(|i| base + i)
}

/// What [`scan`] saw.
struct Scanned {
    lines: u64,
    bytes: u64,
}

/// Feeds every line of `stream` to `visit` until the stream ends or `visit` breaks; in the latter
/// case no further chunk is pulled.
async fn scan<S, E, F>(mut stream: S, max_line_bytes: usize, mut visit: F) -> Result<Scanned, E>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    F: FnMut(RawLine<'_>) -> ControlFlow<()>,
{
    let mut sp = Splitter::new(max_line_bytes);
    let mut bytes = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        bytes += chunk.len() as u64;
        let mut pos = 0;
        while let Some(line) = sp.next_line(&chunk, &mut pos) {
            if visit(line).is_break() {
                return Ok(Scanned { lines: sp.lines_done(), bytes });
            }
        }
    }
    if let Some(line) = sp.finish() {
        let _ = visit(line);
    }
    Ok(Scanned { lines: sp.lines_done(), bytes })
}

/// The last `cap` lines seen, as raw bytes in recycled buffers (so memory stays at
/// `cap` × `max_line_bytes` however long the log is, and nothing is decoded until the end).
struct Ring {
    cap: usize,
    slots: VecDeque<(u64, Vec<u8>, bool)>,
}

impl Ring {
    fn new(cap: usize) -> Self {
        Ring { cap, slots: VecDeque::new() }
    }

    fn push(&mut self, line: &RawLine<'_>) {
        if self.cap == 0 {
            return;
        }
        let mut buf = if self.slots.len() == self.cap {
            self.slots.pop_front().map(|(_, b, _)| b).unwrap_or_default()
        } else {
            Vec::new()
        };
        buf.clear();
        buf.reserve_exact(line.bytes.len());
        buf.extend_from_slice(line.bytes);
        self.slots.push_back((line.number, buf, line.truncated));
    }

    /// Decodes and removes every held line, oldest first.
    fn drain(&mut self) -> impl Iterator<Item = Line> + '_ {
        self.slots.drain(..).map(|(number, bytes, truncated)| RawLine { number, bytes: &bytes, truncated }.to_line())
    }
}

// ---------------------------------------------------------------------------------------------
// Public views
// ---------------------------------------------------------------------------------------------

/// Splits a byte stream into [`Line`]s.
///
/// Holds one chunk and at most `max_line_bytes` of a partial line at a time. Lines are produced as
/// soon as their terminator arrives; the next chunk is pulled only when the current one is used up,
/// so dropping the returned stream stops the download. Errors from `stream` are passed through
/// unchanged; polling again after one continues with whatever `stream` yields next.
///
/// ```no_run
/// # async fn demo(resp: reqwest::Response) -> Result<(), reqwest::Error> {
/// use futures_util::StreamExt;
/// let mut lines = jenkins::logs::lines(resp.bytes_stream(), 4096);
/// while let Some(line) = lines.next().await {
///     let line = line?;
///     if line.text.starts_with("Finished:") {
///         println!("{}: {}", line.number, line.text);
///     }
/// }
/// # Ok(())
/// # }
/// ```
pub fn lines<S, E>(stream: S, max_line_bytes: usize) -> Lines<S>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
{
    Lines { inner: Some(stream), chunk: Bytes::new(), pos: 0, splitter: Splitter::new(max_line_bytes) }
}

/// The stream returned by [`lines`].
#[derive(Debug)]
pub struct Lines<S> {
    /// `None` once the byte stream has ended.
    inner: Option<S>,
    chunk: Bytes,
    pos: usize,
    splitter: Splitter,
}

impl<S, E> Stream for Lines<S>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
{
    type Item = Result<Line, E>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if let Some(line) = this.splitter.next_line(&this.chunk, &mut this.pos) {
                return Poll::Ready(Some(Ok(line.to_line())));
            }
            let Some(inner) = this.inner.as_mut() else { return Poll::Ready(None) };
            match ready!(Pin::new(inner).poll_next(cx)) {
                Some(Ok(chunk)) => {
                    this.chunk = chunk;
                    this.pos = 0;
                }
                Some(Err(e)) => return Poll::Ready(Some(Err(e))),
                None => {
                    this.inner = None;
                    this.chunk = Bytes::new();
                    this.pos = 0;
                    return Poll::Ready(this.splitter.finish().map(|l| Ok(l.to_line())));
                }
            }
        }
    }
}

/// `stream`, ended after the chunk that reaches `max_bytes` bytes (a bound on what one read
/// scans, whatever the log's size); the flag says whether it was ended there.
pub fn scan_limited<S, E>(
    stream: S,
    max_bytes: u64,
) -> (impl Stream<Item = Result<Bytes, E>> + Unpin, std::sync::Arc<std::sync::atomic::AtomicBool>)
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
{
    let stopped = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = stopped.clone();
    let limited = stream.scan(0u64, move |seen, item| {
        if *seen >= max_bytes {
            flag.store(true, std::sync::atomic::Ordering::Relaxed);
            return futures_util::future::ready(None);
        }
        if let Ok(b) = &item {
            *seen += b.len() as u64;
        }
        futures_util::future::ready(Some(item))
    });
    (Box::pin(limited), stopped)
}

/// Drops every byte up to and including the first `\n`: a read that starts at a byte offset
/// inside a log (a `progressiveText?start=`) usually begins in the middle of a line, and that
/// piece is not a line of its own. A stream without any `\n` yields nothing.
pub fn skip_partial_line<S, E>(stream: S) -> impl Stream<Item = Result<Bytes, E>> + Unpin
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
{
    stream.scan(false, |found, item| {
        let out = match item {
            Ok(chunk) if !*found => match chunk.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    *found = true;
                    Ok(chunk.slice(i + 1..))
                }
                None => Ok(Bytes::new()),
            },
            other => other,
        };
        futures_util::future::ready(Some(out))
    })
}

/// The first `n` lines (fewer if the log is shorter).
///
/// Stops pulling chunks as soon as line `n` is complete, so the caller can drop the response
/// without downloading the rest; `n == 0` reads nothing.
pub async fn head<S, E>(stream: S, n: usize, max_line_bytes: usize) -> Result<Vec<Line>, E>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
{
    let mut out = Vec::new();
    if n == 0 {
        return Ok(out);
    }
    scan(stream, max_line_bytes, |line| {
        out.push(line.to_line());
        if out.len() >= n { ControlFlow::Break(()) } else { ControlFlow::Continue(()) }
    })
    .await?;
    Ok(out)
}

/// The last `n` lines, the total line count and the total byte count.
///
/// Reads the whole stream (the end is only known at the end) but holds at most `n` lines of at most
/// `max_line_bytes` each, in reused buffers, and decodes only the lines it returns. `n == 0` just
/// counts.
pub async fn tail<S, E>(stream: S, n: usize, max_line_bytes: usize) -> Result<Tail, E>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
{
    let mut ring = Ring::new(n);
    let seen = scan(stream, max_line_bytes, |line| {
        ring.push(&line);
        ControlFlow::Continue(())
    })
    .await?;
    Ok(Tail { lines: ring.drain().collect(), total_lines: seen.lines, total_bytes: seen.bytes })
}

/// Lines `from..=to` (1-based, inclusive; fewer if the log is shorter).
///
/// Lines before `from` are counted but not decoded; reading stops once line `to` is complete.
/// `from == 0` is treated as 1, and an empty range (`from > to`) reads nothing.
pub async fn line_range<S, E>(stream: S, from: u64, to: u64, max_line_bytes: usize) -> Result<Vec<Line>, E>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
{
    let from = from.max(1);
    let mut out = Vec::new();
    if from > to {
        return Ok(out);
    }
    scan(stream, max_line_bytes, |line| {
        if line.number >= from {
            out.push(line.to_line());
        }
        if line.number >= to { ControlFlow::Break(()) } else { ControlFlow::Continue(()) }
    })
    .await?;
    Ok(out)
}

/// Searches each line for `re`, with context lines around the matches, like
/// `grep -n -B before -A after -m max_matches`.
///
/// Matching is per line on the (possibly truncated) decoded text, so `^` and `$` anchor at line
/// boundaries. Once `max_matches` matches are found the search keeps reading only for the last
/// match's trailing context; it then stops at the next line (or at a further match inside that
/// context, which is not included) and sets [`Grep::truncated`]. If the log ends first,
/// `truncated` stays `false`: every match was found. `max_matches == 0` finds nothing and reports
/// `truncated` unless the log is empty.
///
/// Memory: `before` lines of at most `max_line_bytes` each, held as raw bytes, plus the result
/// (at most `max_matches` × (1 + `before` + `after`) lines).
pub async fn grep<S, E>(stream: S, re: &regex::Regex, opts: &GrepOptions) -> Result<Grep, E>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
{
    let mut out = Grep { hits: Vec::new(), matches: 0, truncated: false, lines_scanned: 0 };
    let mut ring = Ring::new(opts.before);
    let mut after_left = 0usize;
    scan(stream, opts.max_line_bytes, |line| {
        let limit_reached = out.matches >= opts.max_matches;
        if limit_reached && after_left == 0 {
            out.truncated = true;
            return ControlFlow::Break(());
        }
        out.lines_scanned += 1;
        let text = line.text();
        if re.is_match(&text) {
            if limit_reached {
                out.truncated = true;
                return ControlFlow::Break(());
            }
            out.hits.extend(ring.drain().map(|l| GrepHit { line: l, is_match: false }));
            let line = Line { number: line.number, text: text.into_owned(), truncated: line.truncated };
            out.hits.push(GrepHit { line, is_match: true });
            out.matches += 1;
            after_left = opts.after;
        } else if after_left > 0 {
            let line = Line { number: line.number, text: text.into_owned(), truncated: line.truncated };
            out.hits.push(GrepHit { line, is_match: false });
            after_left -= 1;
        } else {
            ring.push(&line);
        }
        ControlFlow::Continue(())
    })
    .await?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split_all(chunks: &[&[u8]], max: usize) -> Vec<(u64, Vec<u8>, bool)> {
        let mut sp = Splitter::new(max);
        let mut out = Vec::new();
        for c in chunks {
            let mut pos = 0;
            while let Some(l) = sp.next_line(c, &mut pos) {
                out.push((l.number, l.bytes.to_vec(), l.truncated));
            }
        }
        if let Some(l) = sp.finish() {
            out.push((l.number, l.bytes.to_vec(), l.truncated));
        }
        out
    }

    #[test]
    fn find_newline_agrees_with_position() {
        let mut hay = vec![b'a'; 200];
        assert_eq!(find_newline(&hay), None);
        for at in [0, 1, 31, 32, 33, 63, 64, 100, 199] {
            hay[at] = b'\n';
            assert_eq!(find_newline(&hay), hay.iter().position(|&b| b == b'\n'), "at {at}");
            hay[at] = b'a';
        }
    }

    #[test]
    fn crlf_split_between_chunks() {
        let got = split_all(&[b"ab\r", b"\ncd\r", b"\n"], 10);
        assert_eq!(got, vec![(1, b"ab".to_vec(), false), (2, b"cd".to_vec(), false)]);
    }

    #[test]
    fn cr_at_the_cut_does_not_count_as_content() {
        // Content is exactly max bytes; the `\r` falls beyond the kept part.
        let got = split_all(&[b"abc", b"\r", b"\n"], 3);
        assert_eq!(got, vec![(1, b"abc".to_vec(), false)]);
        let got = split_all(&[b"abc\r\n"], 3);
        assert_eq!(got, vec![(1, b"abc".to_vec(), false)]);
        let got = split_all(&[b"abcd", b"\r\n"], 3);
        assert_eq!(got, vec![(1, b"abc".to_vec(), true)]);
    }

    #[test]
    fn cut_never_leaves_half_a_character() {
        // "aé€😀" = 61 C3A9 E282AC F09F9880
        let s = "aé€😀".as_bytes();
        for max in 0..s.len() {
            let (kept, truncated) = cut_to(max, s, s.len() as u64);
            assert!(truncated);
            assert!(std::str::from_utf8(kept).is_ok(), "max {max}: {kept:?}");
            assert!(kept.len() <= max && kept.len() + 3 >= max, "max {max}");
        }
        // Bytes that are not UTF-8 at all are left for the lossy decoder.
        assert_eq!(drop_partial_char(b"ab\xff"), b"ab\xff");
        assert_eq!(drop_partial_char(b"\x80\x80\x80\x80"), b"\x80\x80\x80\x80");
    }

    #[test]
    fn carry_is_reset_between_lines() {
        let got = split_all(&[b"long", b"er\nx", b"\n"], 100);
        assert_eq!(got, vec![(1, b"longer".to_vec(), false), (2, b"x".to_vec(), false)]);
    }
}
