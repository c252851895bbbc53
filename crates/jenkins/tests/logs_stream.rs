//! Behaviour of the log views over byte streams cut at arbitrary places.

use std::cell::Cell;
use std::convert::Infallible;
use std::rc::Rc;

use bytes::Bytes;
use futures_util::stream::{self, Stream, StreamExt, TryStreamExt};
use jenkins::logs::{self, GrepOptions, Line};
use regex::Regex;

/// A log exercising the awkward cases: CRLF, empty lines, multi-byte characters (2, 3 and 4 bytes),
/// a lone `\r`, and no newline at the end.
const MIXED: &str = "Started by user admin\r\n\nBuilding in workspace /var/jenkins\n\
    héllo wörld € 😀 ünïcödé\r\n\r\n  [Pipeline] stage\nlone\rcarriage return\n\
    ✓ 42 tests passed\nFinished: SUCCESS";

fn chunked(data: &[u8], size: usize) -> impl Stream<Item = Result<Bytes, Infallible>> + Unpin + use<> {
    let chunks: Vec<_> = data.chunks(size).map(|c| Ok(Bytes::copy_from_slice(c))).collect();
    stream::iter(chunks)
}

/// A stream that counts how many chunks have been pulled from it.
fn counting(
    data: &[u8],
    size: usize,
    pulled: Rc<Cell<usize>>,
) -> impl Stream<Item = Result<Bytes, Infallible>> + Unpin + use<> {
    let chunks: Vec<_> = data.chunks(size).map(Bytes::copy_from_slice).collect();
    stream::iter(chunks.into_iter().map(move |c| {
        pulled.set(pulled.get() + 1);
        Ok(c)
    }))
}

fn expected(text: &str) -> Vec<Line> {
    text.lines().enumerate().map(|(i, l)| Line { number: i as u64 + 1, text: l.to_owned(), truncated: false }).collect()
}

async fn all_lines(data: &[u8], size: usize, max: usize) -> Vec<Line> {
    logs::lines(chunked(data, size), max).try_collect().await.expect("infallible")
}

fn numbered(count: u64) -> String {
    (1..=count).map(|i| format!("line {i}\n")).collect()
}

#[tokio::test]
async fn any_chunking_gives_the_same_lines_as_str_lines() {
    for text in [MIXED, "a\n", "\n", "\n\n", "x", "a\r\nb\r\n", "tail\r", "é", "😀\n😀"] {
        let want = expected(text);
        for size in [1, 2, 3, 7, 64, 4096] {
            assert_eq!(all_lines(text.as_bytes(), size, 1024).await, want, "{text:?} in chunks of {size}");
        }
    }
}

#[tokio::test]
async fn multibyte_character_split_across_chunks() {
    let text = "ab€cd\n";
    // Split right after the first byte of '€' (E2 | 82 AC) and after the second (E2 82 | AC).
    for cut in [3, 4] {
        let (a, b) = text.as_bytes().split_at(cut);
        let s = stream::iter(vec![Ok::<_, Infallible>(Bytes::copy_from_slice(a)), Ok(Bytes::copy_from_slice(b))]);
        let got: Vec<Line> = logs::lines(s, 100).try_collect().await.expect("ok");
        assert_eq!(got, expected("ab€cd"), "cut at {cut}");
    }
}

#[tokio::test]
async fn invalid_utf8_is_replaced() {
    let got = all_lines(b"ok\n\xff\xfebad\n", 1, 100).await;
    assert_eq!(got[1].text, "\u{FFFD}\u{FFFD}bad");
}

#[tokio::test]
async fn empty_stream_has_no_lines() {
    assert!(all_lines(b"", 1, 10).await.is_empty());
    let empty = stream::iter(Vec::<Result<Bytes, Infallible>>::new());
    let t = logs::tail(empty, 5, 10).await.expect("ok");
    assert_eq!((t.lines.len(), t.total_lines, t.total_bytes), (0, 0, 0));
    // Empty chunks are harmless.
    let blanks = stream::iter(vec![Ok::<_, Infallible>(Bytes::new()), Ok(Bytes::from_static(b"a")), Ok(Bytes::new())]);
    let got: Vec<Line> = logs::lines(blanks, 10).try_collect().await.expect("ok");
    assert_eq!(got, expected("a"));
}

#[tokio::test]
async fn overlong_lines_are_cut_and_marked() {
    let long = "x".repeat(10_000);
    let text = format!("short\n{long}\nafter\n{long}");
    for size in [1, 7, 64, 100_000] {
        let got = all_lines(text.as_bytes(), size, 16).await;
        assert_eq!(got.len(), 4);
        assert_eq!(got[0], Line { number: 1, text: "short".into(), truncated: false });
        assert_eq!(got[1], Line { number: 2, text: "x".repeat(16), truncated: true });
        assert_eq!(got[2], Line { number: 3, text: "after".into(), truncated: false });
        assert_eq!(got[3], Line { number: 4, text: "x".repeat(16), truncated: true });
    }
    // Exactly max bytes is not truncated, with or without CRLF; a cut character is dropped whole.
    let got = all_lines(b"0123456789abcdef\r\n0123456789abcde\xe2\x82\xac\n", 3, 16).await;
    assert_eq!(got[0], Line { number: 1, text: "0123456789abcdef".into(), truncated: false });
    assert_eq!(got[1], Line { number: 2, text: "0123456789abcde".into(), truncated: true });
}

#[tokio::test]
async fn head_stops_pulling_once_it_has_enough() {
    let text = numbered(10_000);
    let pulled = Rc::new(Cell::new(0));
    let got = logs::head(counting(text.as_bytes(), 64, pulled.clone()), 3, 100).await.expect("ok");
    assert_eq!(got, expected("line 1\nline 2\nline 3"));
    assert_eq!(pulled.get(), 1, "the first 64-byte chunk holds three lines");

    let pulled = Rc::new(Cell::new(0));
    assert!(logs::head(counting(text.as_bytes(), 64, pulled.clone()), 0, 100).await.expect("ok").is_empty());
    assert_eq!(pulled.get(), 0);

    // Fewer lines than asked for: everything, including a last line without newline.
    let got = logs::head(chunked(b"a\nb", 1), 10, 100).await.expect("ok");
    assert_eq!(got, expected("a\nb"));
}

#[tokio::test]
async fn line_range_is_inclusive_and_stops_after_to() {
    let text = numbered(10_000);
    let pulled = Rc::new(Cell::new(0));
    let got = logs::line_range(counting(text.as_bytes(), 64, pulled.clone()), 5, 7, 100).await.expect("ok");
    assert_eq!(
        got.iter().map(|l| (l.number, l.text.as_str())).collect::<Vec<_>>(),
        [(5, "line 5"), (6, "line 6"), (7, "line 7")]
    );
    assert!(pulled.get() <= 2, "pulled {} chunks", pulled.get());

    assert!(logs::line_range(chunked(text.as_bytes(), 64), 8, 7, 100).await.expect("ok").is_empty());
    let got = logs::line_range(chunked(text.as_bytes(), 64), 0, 1, 100).await.expect("ok");
    assert_eq!(got, expected("line 1"));
    let got = logs::line_range(chunked(text.as_bytes(), 64), 9_999, 20_000, 100).await.expect("ok");
    assert_eq!(got.iter().map(|l| l.number).collect::<Vec<_>>(), [9_999, 10_000]);
}

#[tokio::test]
async fn tail_keeps_the_last_lines_and_counts_everything() {
    let text = numbered(1000);
    for size in [1, 3, 64] {
        let t = logs::tail(chunked(text.as_bytes(), size), 3, 100).await.expect("ok");
        assert_eq!(t.total_lines, 1000);
        assert_eq!(t.total_bytes, text.len() as u64);
        assert_eq!(
            t.lines.iter().map(|l| (l.number, l.text.as_str())).collect::<Vec<_>>(),
            [(998, "line 998"), (999, "line 999"), (1000, "line 1000")]
        );
    }
    // Fewer lines than n.
    let t = logs::tail(chunked(MIXED.as_bytes(), 7), 100, 1024).await.expect("ok");
    assert_eq!(t.lines, expected(MIXED));
    assert_eq!(t.total_lines, MIXED.lines().count() as u64);
    // n = 0 only counts.
    let t = logs::tail(chunked(text.as_bytes(), 64), 0, 100).await.expect("ok");
    assert!(t.lines.is_empty());
    assert_eq!(t.total_lines, 1000);
}

#[derive(Debug, PartialEq)]
struct Boom;

impl std::fmt::Display for Boom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection reset")
    }
}

impl std::error::Error for Boom {}

#[tokio::test]
async fn stream_errors_are_propagated() {
    let failing =
        || stream::iter(vec![Ok(Bytes::from_static(b"one\ntw")), Err(Boom), Ok(Bytes::from_static(b"o\nthree\n"))]);
    assert_eq!(logs::tail(failing(), 10, 100).await, Err(Boom));
    assert_eq!(logs::grep(failing(), &Regex::new("x").expect("re"), &GrepOptions::default()).await, Err(Boom));
    // head succeeds when it has its lines before the error arrives.
    assert_eq!(logs::head(failing(), 1, 100).await.expect("ok"), expected("one"));
    // The line stream passes the error through in sequence and may be polled on.
    let items: Vec<Result<Line, Boom>> = logs::lines(failing(), 100).collect().await;
    assert_eq!(items.len(), 4);
    assert_eq!(items[0].as_ref().map(|l| l.text.as_str()), Ok("one"));
    assert_eq!(items[1], Err(Boom));
    assert_eq!(items[2].as_ref().map(|l| l.text.as_str()), Ok("two"));
}

fn summary(g: &logs::Grep) -> Vec<(u64, bool)> {
    g.hits.iter().map(|h| (h.line.number, h.is_match)).collect()
}

#[tokio::test]
async fn grep_merges_overlapping_context() {
    // Lines 1..=30; matches on 5, 7 and 20.
    let text: String =
        (1..=30).map(|i| if [5, 7, 20].contains(&i) { format!("{i} ERROR\n") } else { format!("{i} ok\n") }).collect();
    let re = Regex::new(r"ERROR$").expect("re");
    let opts = GrepOptions { before: 2, after: 1, max_matches: 10, max_line_bytes: 100 };
    for size in [1, 7, 64] {
        let g = logs::grep(chunked(text.as_bytes(), size), &re, &opts).await.expect("ok");
        assert_eq!(
            summary(&g),
            [
                (3, false),
                (4, false),
                (5, true),
                (6, false),
                (7, true),
                (8, false),
                (18, false),
                (19, false),
                (20, true),
                (21, false)
            ]
        );
        assert_eq!(g.matches, 3);
        assert!(!g.truncated);
        assert_eq!(g.lines_scanned, 30);
        assert_eq!(g.hits[2].line.text, "5 ERROR");
    }
    // Context at the very start and end of the log is clipped, not padded.
    let opts = GrepOptions { before: 5, after: 5, max_matches: 10, max_line_bytes: 100 };
    let g = logs::grep(chunked(b"ERROR\nb\nERROR", 2), &re, &opts).await.expect("ok");
    assert_eq!(summary(&g), [(1, true), (2, false), (3, true)]);
}

#[tokio::test]
async fn grep_stops_at_max_matches() {
    let text: String =
        (1..=10_000).map(|i| if i % 10 == 0 { format!("{i} FAIL\n") } else { format!("{i}\n") }).collect();
    let re = Regex::new("FAIL").expect("re");
    let opts = GrepOptions { before: 1, after: 2, max_matches: 3, max_line_bytes: 100 };
    let pulled = Rc::new(Cell::new(0));
    let g = logs::grep(counting(text.as_bytes(), 64, pulled.clone()), &re, &opts).await.expect("ok");
    assert_eq!(
        summary(&g),
        [
            (9, false),
            (10, true),
            (11, false),
            (12, false),
            (19, false),
            (20, true),
            (21, false),
            (22, false),
            (29, false),
            (30, true),
            (31, false),
            (32, false)
        ]
    );
    assert_eq!(g.matches, 3);
    assert!(g.truncated);
    assert_eq!(g.lines_scanned, 32);
    assert!(pulled.get() < 5, "stopped reading early, pulled {} chunks", pulled.get());

    // A further match inside the trailing context ends the search before it.
    let g = logs::grep(chunked(b"FAIL\nx\nFAIL\ny\n", 3), &re, &GrepOptions { max_matches: 1, ..opts.clone() })
        .await
        .expect("ok");
    assert_eq!(summary(&g), [(1, true), (2, false)]);
    assert!(g.truncated);

    // Exactly max_matches matches and then the end: nothing was left unsearched.
    let g = logs::grep(chunked(b"a\nFAIL\nb\n", 3), &re, &GrepOptions { max_matches: 1, ..opts.clone() })
        .await
        .expect("ok");
    assert_eq!(summary(&g), [(1, false), (2, true), (3, false)]);
    assert!(!g.truncated);
}

/// Numbered lines of varying length, generated on the fly and handed out in 64 KiB chunks, so the
/// whole text never exists in memory.
struct Synthetic {
    next_line: u64,
    bytes_left: u64,
    pending: Vec<u8>,
}

impl Iterator for Synthetic {
    type Item = Result<Bytes, Infallible>;

    fn next(&mut self) -> Option<Self::Item> {
        const CHUNK: usize = 64 * 1024;
        while self.pending.len() < CHUNK && self.bytes_left > 0 {
            let n = self.next_line;
            let line = format!("{n:>10} [INFO] step output {}\n", "·".repeat((n % 40) as usize));
            self.bytes_left = self.bytes_left.saturating_sub(line.len() as u64);
            self.pending.extend_from_slice(line.as_bytes());
            self.next_line += 1;
        }
        if self.pending.is_empty() {
            return None;
        }
        let take = self.pending.len().min(CHUNK);
        let rest = self.pending.split_off(take);
        Some(Ok(Bytes::from(std::mem::replace(&mut self.pending, rest))))
    }
}

#[tokio::test]
async fn tail_of_a_200_mb_stream_generated_lazily() {
    let source = Synthetic { next_line: 1, bytes_left: 200 * 1024 * 1024, pending: Vec::new() };
    let t = logs::tail(stream::iter(source), 5, 256).await.expect("ok");
    let last = t.total_lines;
    assert!(last > 1_000_000, "{last} lines");
    assert!(t.total_bytes >= 200 * 1024 * 1024);
    assert_eq!(t.lines.iter().map(|l| l.number).collect::<Vec<_>>(), (last - 4..=last).collect::<Vec<_>>());
    for l in &t.lines {
        let shown: u64 = l.text.split_whitespace().next().and_then(|n| n.parse().ok()).expect("numbered");
        assert_eq!(shown, l.number, "{l:?}");
        assert!(!l.truncated);
    }
}
