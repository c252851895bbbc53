//! Console logs. A log is a list of chunks: literal text, or content generated on demand
//! (`seq N`, filler lines for huge-log tests), so a 1 GiB log costs a few bytes of memory and any
//! byte offset can be reached without producing what comes before it.

use std::sync::{Arc, RwLock};

use bytes::Bytes;

/// Width in bytes of one generated filler line, newline included.
pub const FILLER_LINE_BYTES: u64 = 64;

#[derive(Debug, Clone)]
enum Chunk {
    Text(Bytes),
    /// The numbers `1..=n`, one per line.
    Seq {
        n: u64,
        len: u64,
    },
    /// `lines` filler lines of [`FILLER_LINE_BYTES`] bytes each; line `i` names its own number.
    Filler {
        lines: u64,
        first: u64,
    },
}

impl Chunk {
    fn len(&self) -> u64 {
        match self {
            Chunk::Text(b) => b.len() as u64,
            Chunk::Seq { len, .. } => *len,
            Chunk::Filler { lines, .. } => lines * FILLER_LINE_BYTES,
        }
    }

    /// Appends up to `max` bytes starting at `offset` (relative to this chunk).
    fn read(&self, offset: u64, max: usize, out: &mut Vec<u8>) {
        match self {
            Chunk::Text(b) => {
                let start = offset.min(b.len() as u64) as usize;
                let end = (start + max).min(b.len());
                out.extend_from_slice(&b[start..end]);
            }
            Chunk::Seq { n, .. } => {
                let limit = out.len() + max;
                let (mut k, mut skip) = seq_position(offset);
                while out.len() < limit && k <= *n {
                    let line = format!("{k}\n");
                    let bytes = &line.as_bytes()[skip..];
                    let take = bytes.len().min(limit - out.len());
                    out.extend_from_slice(&bytes[..take]);
                    skip = 0;
                    k += 1;
                }
            }
            Chunk::Filler { lines, first } => {
                let limit = out.len() + max;
                let mut i = offset / FILLER_LINE_BYTES;
                let mut skip = (offset % FILLER_LINE_BYTES) as usize;
                while out.len() < limit && i < *lines {
                    let line = filler_line(first + i);
                    let bytes = &line.as_bytes()[skip..];
                    let take = bytes.len().min(limit - out.len());
                    out.extend_from_slice(&bytes[..take]);
                    skip = 0;
                    i += 1;
                }
            }
        }
    }
}

/// Bytes taken by the lines `1..=n` of `seq n`.
fn seq_len(n: u64) -> u64 {
    let mut total = 0;
    let mut lo = 1u64;
    let mut digits = 1u64;
    while lo <= n {
        let hi = lo.saturating_mul(10).saturating_sub(1).min(n);
        total += (hi - lo + 1) * (digits + 1);
        lo = lo.saturating_mul(10);
        digits += 1;
    }
    total
}

/// The number whose line contains byte `offset` of a `seq` output, and the offset inside it.
fn seq_position(offset: u64) -> (u64, usize) {
    let mut lo = 1u64;
    let mut digits = 1u64;
    let mut base = 0u64;
    loop {
        let count = lo.saturating_mul(9);
        let span = count.saturating_mul(digits + 1);
        if offset < base + span {
            let rel = offset - base;
            return (lo + rel / (digits + 1), (rel % (digits + 1)) as usize);
        }
        base += span;
        lo = lo.saturating_mul(10);
        digits += 1;
    }
}

/// One generated filler line: fixed width, self-describing, with an occasional marker so that
/// grep tests have something to find.
pub fn filler_line(i: u64) -> String {
    let text = if i % 100_000 == 99_999 {
        format!("{i:>12} WARN generated log line (marker)")
    } else {
        format!("{i:>12} INFO generated log line")
    };
    let width = FILLER_LINE_BYTES as usize - 1;
    format!("{text:<width$}\n")
}

#[derive(Debug, Default)]
struct LogData {
    chunks: Vec<(u64, Chunk)>,
    len: u64,
    complete: bool,
}

/// A build's console log, shared between the executor that writes it and readers.
#[derive(Debug, Clone, Default)]
pub struct Log(Arc<RwLock<LogData>>);

impl Log {
    pub fn new() -> Self {
        Log::default()
    }

    fn push(&self, chunk: Chunk) {
        let Ok(mut d) = self.0.write() else { return };
        let start = d.len;
        d.len += chunk.len();
        // Merge adjacent text so per-line appends do not grow the chunk list.
        if let (Chunk::Text(new), Some((_, Chunk::Text(last)))) = (&chunk, d.chunks.last_mut())
            && last.len() < 64 * 1024
        {
            let mut merged = Vec::with_capacity(last.len() + new.len());
            merged.extend_from_slice(last);
            merged.extend_from_slice(new);
            *last = Bytes::from(merged);
            return;
        }
        d.chunks.push((start, chunk));
    }

    /// Appends one line (a newline is added).
    pub fn line(&self, text: &str) {
        let mut s = String::with_capacity(text.len() + 1);
        s.push_str(text);
        s.push('\n');
        self.push(Chunk::Text(Bytes::from(s)));
    }

    /// Appends the output of `seq n`.
    pub fn seq(&self, n: u64) {
        if n > 0 {
            self.push(Chunk::Seq { n, len: seq_len(n) });
        }
    }

    /// Appends at least `bytes` bytes of filler lines.
    pub fn filler(&self, bytes: u64) {
        let lines = bytes.div_ceil(FILLER_LINE_BYTES);
        if lines > 0 {
            self.push(Chunk::Filler { lines, first: 0 });
        }
    }

    /// Marks the log as complete (the build finished writing).
    pub fn finish(&self) {
        if let Ok(mut d) = self.0.write() {
            d.complete = true;
        }
    }

    pub fn len(&self) -> u64 {
        self.0.read().map(|d| d.len).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn is_complete(&self) -> bool {
        self.0.read().map(|d| d.complete).unwrap_or(true)
    }

    /// Reads up to `max` bytes from `offset`.
    pub fn read_at(&self, offset: u64, max: usize) -> Vec<u8> {
        let mut out = Vec::new();
        let Ok(d) = self.0.read() else { return out };
        let idx = d.chunks.partition_point(|(start, c)| start + c.len() <= offset);
        let mut pos = offset;
        for (start, chunk) in &d.chunks[idx..] {
            if out.len() >= max {
                break;
            }
            let want = max - out.len();
            chunk.read(pos - start, want, &mut out);
            pos = start + chunk.len();
        }
        out
    }

    /// The whole log as a string (small logs only: tests and wfapi excerpts).
    pub fn to_string_lossy(&self, max: usize) -> String {
        String::from_utf8_lossy(&self.read_at(0, max)).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seq_offsets_are_exact() {
        let expect: String = (1..=1234).map(|k| format!("{k}\n")).collect();
        assert_eq!(seq_len(1234), expect.len() as u64);
        let log = Log::new();
        log.line("head");
        log.seq(1234);
        log.line("tail");
        let full = format!("head\n{expect}tail\n");
        assert_eq!(log.len(), full.len() as u64);
        for off in [0usize, 3, 5, 6, 100, 1000, 4000, full.len() - 3] {
            let got = log.read_at(off as u64, 50);
            let end = (off + 50).min(full.len());
            assert_eq!(String::from_utf8_lossy(&got), &full[off..end], "offset {off}");
        }
    }

    #[test]
    fn gigabyte_filler_costs_nothing_and_seeks() {
        let log = Log::new();
        log.filler(1 << 30);
        assert!(log.len() >= 1 << 30);
        let tail = log.read_at(log.len() - FILLER_LINE_BYTES, 1000);
        assert_eq!(tail.len() as u64, FILLER_LINE_BYTES);
        assert!(String::from_utf8_lossy(&tail).contains("16777215 INFO"));
        let mid = log.read_at(FILLER_LINE_BYTES * 99_999, FILLER_LINE_BYTES as usize);
        assert!(String::from_utf8_lossy(&mid).contains("marker"));
    }
}
