//! Response budgets: every read answers within `max_bytes` (compact JSON), cut structurally.
//!
//! One implementation for every operation, applied by the call path ([`crate::call`]) to the
//! sanitized answer: when it is over the budget, the largest array loses entries from its end, or
//! the largest string is cut with a `…[cut N bytes]` marker (a console excerpt loses whole lines
//! from the end a tail would not show), until it fits; the answer then says what it left out and
//! how to get it in `omitted`. Operations keep their own paging and log bounds: the budget is the
//! outer bound, sized so that common questions are answered in a few KiB.
//!
//! The cut value goes through the sanitizer again (idempotent on clean text: nothing is counted
//! twice, and a cut console excerpt is framed again with its own tag), so the boundary holds.

use serde_json::{Map, Value, json};

use crate::error::GateError;
use crate::sanitize::{Keep, cut_to_budget};

/// The budget when the agent names none: room for every common question's answer (a build, a
/// job, a triage, 100 log lines of usual width, a page of jobs), small enough for a context window.
pub const DEFAULT_MAX_BYTES: usize = 16 * 1024;
/// The largest budget an agent may ask for.
pub const MAX_MAX_BYTES: usize = 64 * 1024;
/// The smallest: below it not even the answer's skeleton and the `omitted` note fit.
pub const MIN_MAX_BYTES: usize = 512;

/// Strings shorter than this are not worth cutting (names, results, URLs).
const MIN_CUT_STRING: usize = 160;
/// The most cuts one answer gets (each is one array or string); an answer still over its budget
/// after them is returned as it is, with the note.
const MAX_CUTS: usize = 64;

/// Reads whose answer is a document an agent edits and writes back (a job's config.xml): never
/// cut, since a cut document written back would break the job; they are whole, or refused by the
/// call path's answer cap with advice.
const WHOLE_DOCUMENTS: &[&str] = &["get_job_config"];

/// Whether an operation takes a budget: every read but [`WHOLE_DOCUMENTS`].
pub fn applies(op: &crate::catalog::Operation) -> bool {
    op.access == crate::catalog::Access::Read && !WHOLE_DOCUMENTS.contains(&op.name)
}

/// The budget of one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    pub max_bytes: usize,
    /// Which end of a console excerpt to keep: the end unless the call asked for the start
    /// (`mode` head, range or grep), as the log view itself does.
    pub keep: Keep,
}

impl Default for Budget {
    fn default() -> Self {
        Budget { max_bytes: DEFAULT_MAX_BYTES, keep: Keep::Tail }
    }
}

/// Takes `max_bytes` out of a read's arguments (before the operation's strict parse, which does
/// not know it) and returns the call's budget.
pub fn take(args: &mut Value) -> Result<Budget, GateError> {
    let Some(m) = args.as_object_mut() else {
        return Ok(Budget::default());
    };
    let keep = match m.get("mode").and_then(Value::as_str) {
        Some("head" | "range" | "grep") => Keep::Head,
        _ => Keep::Tail,
    };
    let max_bytes = match m.remove("max_bytes") {
        None | Some(Value::Null) => DEFAULT_MAX_BYTES,
        Some(v) => match v.as_u64() {
            Some(n) if (MIN_MAX_BYTES as u64..=MAX_MAX_BYTES as u64).contains(&n) => n as usize,
            _ => {
                return Err(GateError::Invalid(format!(
                    "max_bytes must be a whole number from {MIN_MAX_BYTES} to {MAX_MAX_BYTES} (bytes of the answer; default {DEFAULT_MAX_BYTES})"
                )));
            }
        },
    };
    Ok(Budget { max_bytes, keep })
}

/// The `max_bytes` property of every read tool's input schema.
pub fn schema_property() -> Value {
    json!({
        "type": "integer",
        "minimum": MIN_MAX_BYTES,
        "maximum": MAX_MAX_BYTES,
        "description": format!(
            "The most bytes the answer may take (default {DEFAULT_MAX_BYTES}). A larger answer is cut (longest lists \
             from the end, long texts with a marker) and says what it left out in `omitted`."
        ),
    })
}

fn size_of(v: &Value) -> usize {
    json_len(v)
}

/// The length of `v`'s compact JSON, counted as it is written out, without keeping the bytes.
pub fn json_len(v: &Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0 += b.len();
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut c = Count(0);
    match serde_json::to_writer(&mut c, v) {
        Ok(()) => c.0,
        Err(_) => usize::MAX,
    }
}

/// One thing left out.
#[derive(Debug, Clone)]
enum Cut {
    /// Entries dropped from the end of the array at `at`.
    Entries { at: String, kept: usize, of: usize },
    /// Bytes cut from the string at `at`; `console` when it was a console excerpt.
    Text { at: String, cut: usize, console: bool },
}

/// Where a cut can be made: an array of two or more entries, or a long string.
struct Candidate {
    path: Vec<PathSeg>,
    bytes: usize,
}

#[derive(Debug, Clone)]
enum PathSeg {
    Key(String),
    Index(usize),
}

fn pointer(path: &[PathSeg]) -> String {
    let mut s = String::new();
    for seg in path {
        s.push('/');
        match seg {
            PathSeg::Key(k) => s.push_str(&k.replace('~', "~0").replace('/', "~1")),
            PathSeg::Index(i) => s.push_str(&i.to_string()),
        }
    }
    if s.is_empty() { "/".into() } else { s }
}

/// The largest place to cut, by serialized size (the `omitted` note itself excluded).
fn largest(v: &Value, path: &mut Vec<PathSeg>, best: &mut Option<Candidate>) -> usize {
    match v {
        Value::Array(items) => {
            let mut total = 2 + items.len().saturating_sub(1);
            for (i, item) in items.iter().enumerate() {
                path.push(PathSeg::Index(i));
                total += largest(item, path, best);
                path.pop();
            }
            if items.len() >= 2 && best.as_ref().is_none_or(|b| total > b.bytes) {
                *best = Some(Candidate { path: path.clone(), bytes: total });
            }
            total
        }
        Value::Object(m) => {
            let mut total = 2 + m.len().saturating_sub(1);
            for (k, item) in m {
                total += size_of(&Value::String(k.clone())) + 1;
                if path.is_empty() && k == "omitted" {
                    total += size_of(item);
                    continue;
                }
                path.push(PathSeg::Key(k.clone()));
                total += largest(item, path, best);
                path.pop();
            }
            total
        }
        Value::String(s) => {
            let bytes = size_of(v);
            if s.len() >= MIN_CUT_STRING && best.as_ref().is_none_or(|b| bytes > b.bytes) {
                *best = Some(Candidate { path: path.clone(), bytes });
            }
            bytes
        }
        other => size_of(other),
    }
}

fn at_mut<'a>(v: &'a mut Value, path: &[PathSeg]) -> Option<&'a mut Value> {
    let mut cur = v;
    for seg in path {
        cur = match (seg, cur) {
            (PathSeg::Key(k), Value::Object(m)) => m.get_mut(k)?,
            (PathSeg::Index(i), Value::Array(a)) => a.get_mut(*i)?,
            _ => return None,
        };
    }
    Some(cur)
}

/// A console excerpt framed by the sanitizer: (opening line, body, closing line). Recognised by
/// the fence's fixed words; a frame cut as plain text would still be safe (the sanitizer defuses
/// a fence it does not recognise), only less readable.
fn split_frame(s: &str) -> Option<(&str, &str, &str)> {
    let (open, rest) = s.split_once('\n')?;
    let (body, close) = rest.rsplit_once('\n').unwrap_or(("", rest));
    (open.starts_with("<<<UNTRUSTED BUILD OUTPUT") && close.starts_with("<<<END UNTRUSTED BUILD OUTPUT"))
        .then_some((open, body, close))
}

/// Cuts `s` by at least `excess` bytes; returns the new text and the bytes cut.
fn cut_string(s: &str, excess: usize, keep: Keep) -> (String, usize, bool) {
    if let Some((open, body, close)) = split_frame(s) {
        // At least the line a view is about (the last of a tail, the first of a head) stays, even
        // over the budget: a fenced excerpt with no line in it answers nothing.
        let edge = match keep {
            Keep::Tail => body.trim_end_matches('\n').rsplit('\n').next().map_or(0, |l| l.len() + 1),
            Keep::Head => body.split('\n').next().map_or(0, |l| l.len() + 1),
        };
        let target = body.len().saturating_sub(excess + 24).max(edge);
        let (kept, cut) = cut_to_budget(body, target, keep);
        if cut == 0 {
            return (s.to_owned(), 0, true);
        }
        let marker = format!("…[cut {cut} bytes]");
        let body = match keep {
            Keep::Tail => format!("{marker}\n{kept}"),
            Keep::Head => format!("{kept}{}{marker}", if kept.is_empty() || kept.ends_with('\n') { "" } else { "\n" }),
        };
        return (format!("{open}\n{body}\n{close}"), cut, true);
    }
    let target = s.len().saturating_sub(excess + 24).max(MIN_CUT_STRING / 2);
    let mut end = target.min(s.len());
    while end > 0 && !s.is_char_boundary(end) {
        end -= 1;
    }
    let mut kept = s.get(..end).unwrap_or("");
    // Never leave half a redaction marker.
    if let Some(open) = kept.rfind("[REDACTED:")
        && !kept.get(open..).is_some_and(|m| m.contains(']'))
    {
        kept = kept.get(..open).unwrap_or("");
    }
    let cut = s.len() - kept.len();
    (format!("{kept}…[cut {cut} bytes]"), cut, false)
}

/// The `omitted` note: what was left out and how to get it.
fn note(cuts: &[Cut], budget: &Budget, next_offset: Option<u64>, over: bool) -> Value {
    let left_out: Vec<Value> = cuts
        .iter()
        .map(|c| match c {
            Cut::Entries { at, kept, of } => json!({"at": at, "kept": kept, "of": of}),
            Cut::Text { at, cut, .. } => json!({"at": at, "cut_bytes": cut}),
        })
        .collect();
    let mut how = Vec::new();
    if let Some(n) = next_offset {
        how.push(format!("the next entries: call again with offset={n}"));
    }
    if cuts.iter().any(|c| matches!(c, Cut::Text { console: true, .. })) {
        how.push("a narrower view of the log: mode range with from/to, mode grep, or fewer lines".to_string());
    } else if next_offset.is_none() && cuts.iter().any(|c| matches!(c, Cut::Entries { .. })) {
        how.push("a narrower call (a filter, a smaller limit, one build or stage)".to_string());
    }
    if budget.max_bytes < MAX_MAX_BYTES {
        how.push(format!("more at once: max_bytes up to {MAX_MAX_BYTES} (this answer had {})", budget.max_bytes));
    }
    let mut m = Map::new();
    m.insert("max_bytes".into(), json!(budget.max_bytes));
    m.insert("left_out".into(), Value::Array(left_out));
    m.insert("how".into(), Value::String(how.join("; ")));
    if over {
        m.insert("note".into(), json!("this answer could not be cut further and is over max_bytes"));
    }
    Value::Object(m)
}

/// Fits an answer (already sanitized) into its budget. Returns it unchanged when it fits, and
/// whether anything was cut.
pub fn fit(mut v: Value, budget: &Budget) -> (Value, bool) {
    if size_of(&v) <= budget.max_bytes || !v.is_object() {
        return (v, false);
    }
    let offset = v.get("offset").and_then(Value::as_u64);
    let mut cuts: Vec<Cut> = Vec::new();
    let mut next_offset = None;
    let mut over = false;
    loop {
        let with_note = |cuts: &[Cut], next_offset, over| note(cuts, budget, next_offset, over);
        let total = size_of(&v) + size_of(&with_note(&cuts, next_offset, over)) + "\"omitted\":,".len();
        if total <= budget.max_bytes {
            break;
        }
        if cuts.len() >= MAX_CUTS {
            over = true;
            break;
        }
        let mut best = None;
        largest(&v, &mut Vec::new(), &mut best);
        let Some(Candidate { path, .. }) = best else {
            over = true;
            break;
        };
        let excess = total - budget.max_bytes;
        let at = pointer(&path);
        let Some(target) = at_mut(&mut v, &path) else {
            over = true;
            break;
        };
        match target {
            Value::Array(items) => {
                let of = items.len();
                let mut removed = 0;
                while items.len() > 1 && removed < excess {
                    removed += items.pop().map(|x| size_of(&x) + 1).unwrap_or(0);
                }
                let kept = items.len();
                // A page of a paged listing: the next page starts after what was kept.
                if path.len() == 1
                    && let Some(o) = offset
                {
                    next_offset = Some(o + kept as u64);
                }
                match cuts.iter_mut().find(|c| matches!(c, Cut::Entries { at: a, .. } if *a == at)) {
                    Some(Cut::Entries { kept: k, .. }) => *k = kept,
                    _ => cuts.push(Cut::Entries { at, kept, of }),
                }
            }
            Value::String(s) => {
                let (text, cut, console) = cut_string(s, excess, budget.keep);
                if text.len() >= s.len() {
                    over = true;
                    break;
                }
                *s = text;
                match cuts.iter_mut().find(|c| matches!(c, Cut::Text { at: a, .. } if *a == at)) {
                    Some(Cut::Text { cut: c, .. }) => *c += cut,
                    _ => cuts.push(Cut::Text { at, cut, console }),
                }
            }
            _ => {
                over = true;
                break;
            }
        }
    }
    if let (Some(n), Some(m)) = (next_offset, v.as_object_mut()) {
        m.insert("next_offset".into(), json!(n));
    }
    let n = note(&cuts, budget, next_offset, over);
    if let Some(m) = v.as_object_mut() {
        m.insert("omitted".into(), n);
    }
    (v, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_read_but_a_document_written_back_takes_a_budget() {
        let op = |n| crate::catalog::operation(n).expect("operation");
        assert!(applies(op("get_job")) && applies(op("get_build_log")));
        assert!(!applies(op("get_job_config")), "a cut config.xml written back would break the job");
        assert!(!applies(op("trigger_build")), "writes take none");
    }

    fn budget(n: usize) -> Budget {
        Budget { max_bytes: n, keep: Keep::Tail }
    }

    #[test]
    fn the_argument_is_taken_out_and_checked() {
        let mut a = json!({"job": "x", "max_bytes": 2048});
        assert_eq!(take(&mut a).expect("ok").max_bytes, 2048);
        assert_eq!(a, json!({"job": "x"}), "the operation's strict parse never sees it");
        let mut a = json!({"job": "x"});
        assert_eq!(take(&mut a).expect("ok").max_bytes, DEFAULT_MAX_BYTES);
        for bad in [json!(100), json!(1_000_000), json!("4096"), json!(-1), json!(1.5)] {
            let err = take(&mut json!({"max_bytes": bad})).expect_err("refused");
            assert!(err.to_string().contains("512 to 65536"), "{err}");
        }
        let mut a = json!({"mode": "head", "max_bytes": 1024});
        assert_eq!(take(&mut a).expect("ok").keep, Keep::Head);
    }

    #[test]
    fn an_answer_that_fits_is_unchanged() {
        let v = json!({"name": "x", "jobs": [1, 2, 3]});
        assert_eq!(fit(v.clone(), &budget(512)), (v, false));
    }

    #[test]
    fn the_longest_list_loses_entries_from_its_end_and_paging_goes_on() {
        let jobs: Vec<Value> = (0..200).map(|i| json!({"name": format!("job-{i:03}"), "color": "blue"})).collect();
        let v = json!({"jobs": jobs, "total": 200, "offset": 100, "next_offset": 300});
        let (out, cut) = fit(v, &budget(2048));
        assert!(cut);
        assert!(size_of(&out) <= 2048, "{}", size_of(&out));
        assert_eq!(json_len(&out), serde_json::to_vec(&out).map(|b| b.len()).unwrap_or_default());
        let kept = out["jobs"].as_array().expect("jobs").len();
        assert!(kept > 10 && kept < 200, "{kept}");
        assert_eq!(out["jobs"][0]["name"], "job-000", "the start is kept");
        assert_eq!(out["total"], 200);
        assert_eq!(out["next_offset"], 100 + kept as u64, "the next page starts after what was kept");
        assert_eq!(out["omitted"]["left_out"][0], json!({"at": "/jobs", "kept": kept, "of": 200}));
        let how = out["omitted"]["how"].as_str().expect("how");
        assert!(how.contains(&format!("offset={}", 100 + kept)) && how.contains("max_bytes up to 65536"), "{how}");
    }

    #[test]
    fn a_console_excerpt_keeps_its_end_in_whole_lines_and_its_fence() {
        let body: String = (1..=500).map(|n| format!("{n:>6}  line number {n} of the build\n")).collect();
        let text = crate::sanitize::mark_untrusted("job #1", &body);
        let v = json!({"summary": "500 lines", "text": text, "last_line": 500});
        let (out, _) = fit(v, &budget(4096));
        assert!(size_of(&out) <= 4096, "{}", size_of(&out));
        let t = out["text"].as_str().expect("text");
        assert!(t.starts_with("<<<UNTRUSTED BUILD OUTPUT") && t.contains("<<<END UNTRUSTED BUILD OUTPUT"), "{t}");
        assert!(t.contains("line number 500 of the build\n<<<END"), "the last line is kept: {t}");
        assert!(!t.contains("line number 1 of"), "{t}");
        assert!(t.contains("…[cut "), "{t}");
        let how = out["omitted"]["how"].as_str().expect("how");
        assert!(how.contains("mode range"), "{how}");
        // Even a budget too small for any of it keeps the last line (and says it is over).
        let v = json!({"summary": "x".repeat(100), "text": crate::sanitize::mark_untrusted("job #1", &body)});
        let (out, _) = fit(v, &budget(512));
        let t = out["text"].as_str().expect("text");
        assert!(t.contains("line number 500 of the build\n<<<END"), "{t}");
        assert!(out["omitted"]["note"].is_string(), "{out}");
        // Head views keep their start.
        let v = json!({"text": crate::sanitize::mark_untrusted("job #1", &body)});
        let (out, _) = fit(v, &Budget { max_bytes: 4096, keep: Keep::Head });
        let t = out["text"].as_str().expect("text");
        assert!(t.contains("line number 1 of") && !t.contains("line number 500 "), "{t}");
    }

    #[test]
    fn a_long_plain_string_is_cut_with_a_marker_not_inside_a_redaction() {
        let s = format!("{}[REDACTED:github-token]{}", "a".repeat(1000), "b".repeat(3000));
        let (out, _) = fit(json!({"description": s}), &budget(1010 + 200));
        let d = out["description"].as_str().expect("d");
        assert!(d.contains("…[cut ") && !d.contains("[REDACTED:gith…"), "{d}");
        assert!(size_of(&out) <= 1210, "{}", size_of(&out));
    }
}
