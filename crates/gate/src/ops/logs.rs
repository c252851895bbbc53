//! Console logs: bounded, sanitized views (tail, head, range, grep, follow).
//!
//! Lines are read up to [`READ_LINE`] bytes, sanitized **whole**, and only then cut to
//! [`MAX_LINE`] for display, so a secret near the end of a long line is redacted before any cut
//! (the part beyond the read limit is never shown). A view scans at most [`SCAN_BUDGET`] bytes.
//!
//! A follow with `wait_s` that finds no new output waits for some: it reads the console again
//! from its cursor after a pause that grows while the log stays silent, and the build's events
//! (docs/events.md) end the pause at once — the end of a build is when its last lines arrive.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use jenkins::{JenkinsClient, JobPath};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{BuildArg, Exec, Need, Op, resolve_number};
use crate::catalog::Operation;
use crate::error::GateError;
use crate::sanitize::{Keep, Sanitizer, cut_to_budget, mark_untrusted};

/// The most console text one answer carries (bytes, after sanitizing).
pub const LOG_BUDGET: usize = 24 * 1024;
/// Longest console line shown (cut after redaction).
const MAX_LINE: usize = 2048;
/// Longest console line read and sanitized; anything beyond is never shown.
const READ_LINE: usize = 16 * 1024;
/// The most console bytes one call scans (a tail or grep of a larger log stops there and says so).
pub const SCAN_BUDGET: u64 = 2 << 30;

pub struct GetBuildLog;

/// Arguments of `get_build_log`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LogArgs {
    /// The job's full name, folders separated by '/', e.g. team/api-server.
    pub job: String,
    /// A build number, or lastBuild, lastCompletedBuild, lastSuccessfulBuild, lastStableBuild,
    /// lastFailedBuild, lastUnstableBuild, lastUnsuccessfulBuild. Default: lastBuild.
    pub build: Option<BuildArg>,
    /// tail (default): the last lines; head: the first lines; range: lines from..to; grep: lines
    /// matching pattern with context; follow: a running build's output as it comes (without
    /// cursor: its last lines and the cursor after them; with cursor: what it wrote since).
    pub mode: Option<LogModeName>,
    /// follow: the byte offset to continue from (next_cursor of the previous answer; 0 for the
    /// start of the log). Without it, a follow begins with the log's last lines (as many as
    /// 'lines') and the cursor that continues after them, like tail -f.
    pub cursor: Option<u64>,
    /// How many lines for tail/head, and for the first page of a follow without a cursor (1–2000,
    /// default 100).
    #[schemars(range(min = 1, max = 2000))]
    pub lines: Option<u64>,
    /// range: the first line number (1-based).
    #[schemars(range(min = 1))]
    pub from: Option<u64>,
    /// range: the last line number.
    #[schemars(range(min = 1))]
    pub to: Option<u64>,
    /// grep: a regular expression.
    pub pattern: Option<String>,
    /// grep: lines of context before and after each match (0–50, default 2).
    #[schemars(range(min = 0, max = 50))]
    pub context: Option<u64>,
    /// follow: when the build has written nothing new since cursor, wait up to this many seconds
    /// (1–110) for new output or its end instead of answering at once (woken by the build's
    /// events when the controller sends them). Default: answer at once.
    #[schemars(range(min = 1, max = 110))]
    pub wait_s: Option<u64>,
}

/// The longest a follow waits for new output (under the call path's read deadline, like
/// `wait_for_build`).
pub const MAX_FOLLOW_WAIT_SECS: u64 = super::build::MAX_WAIT_SECS;
/// The first pause of a follow waiting for output; it doubles after each silent read.
const FOLLOW_FIRST_PAUSE: Duration = Duration::from_millis(500);
/// The longest pause between two reads of a silent console.
pub const FOLLOW_MAX_PAUSE: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogModeName {
    Tail,
    Head,
    Range,
    Grep,
    Follow,
}

impl Op for GetBuildLog {
    type Args = LogArgs;
    const META: Operation = crate::op!("get_build_log", Status, Read, Job, destructive: false, idempotent: true,
        routes: ["GET /{job}/{build}/consoleText", "GET /{job}/{build}/logText/progressiveText"],
        cli: "build log", phrase: "read the console log of",
        "Read a build's console log: tail (default), head, a line range, or regex matches with context; bounded in size, secrets redacted.");

    fn needs(a: &LogArgs) -> Vec<Need> {
        vec![Need::primary(&Self::META, Some(&a.job))]
    }

    async fn run(cx: &mut Exec<'_>, a: LogArgs) -> Result<Value, GateError> {
        let path = cx.path(0)?;
        let mode = LogMode::from_args(&a)?;
        match (&mode, a.wait_s) {
            (LogMode::Follow { .. }, Some(secs)) if !(1..=MAX_FOLLOW_WAIT_SECS).contains(&secs) => {
                return Err(GateError::Invalid(format!("wait_s must be 1 to {MAX_FOLLOW_WAIT_SECS} (seconds)")));
            }
            (LogMode::Follow { .. }, _) | (_, None) => {}
            (_, Some(_)) => {
                return Err(GateError::Invalid(
                    "wait_s applies to mode follow only; leave it out for other modes".into(),
                ));
            }
        }
        let number = resolve_number(cx.client, &path, BuildArg::selector(a.build.as_ref())?).await?;
        if let (LogMode::Follow { cursor, lines }, Some(secs)) = (&mode, a.wait_s) {
            let cursor = match cursor {
                Some(c) => *c,
                None => {
                    let first = cx.client.tail_to_follow(&path, number, *lines, READ_LINE, SCAN_BUDGET).await?;
                    // Something to show, or nothing more to come: the first page is the answer.
                    if !first.lines.is_empty() || !first.more {
                        return Ok(first_page_answer(&path, number, &first, cx.sanitizer));
                    }
                    first.log_size.unwrap_or(0)
                }
            };
            let chunk = follow_until_output(cx, &path, number, cursor, secs).await?;
            return Ok(follow_answer(&path, number, &chunk, cx.sanitizer));
        }
        log_view(cx.client, &path, number, &mode, cx.sanitizer).await
    }
}

/// Reads the console from `cursor` until it has new output, the build has ended, or `secs`
/// pass, reporting progress while it waits. Subscribed to the build's events before the first
/// read, so an end between the read and the pause is not missed; an event (or lost events) ends
/// the pause at once, and the read after it is a new one. The pause doubles from
/// [`FOLLOW_FIRST_PAUSE`] to [`FOLLOW_MAX_PAUSE`] while the log stays silent (output comes without
/// events; its end comes with one); identical reads in flight are one request.
async fn follow_until_output(
    cx: &mut Exec<'_>,
    job: &JobPath,
    number: u64,
    cursor: u64,
    secs: u64,
) -> Result<jenkins::LogChunk, GateError> {
    let mut rx = cx.triggers.events.subscribe();
    let (controller, name) = (cx.controller.to_string(), job.to_string());
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut pause = FOLLOW_FIRST_PAUSE;
    let mut tick = 0.0;
    loop {
        let chunk = cx.client.progressive_text(job, number, cursor, LOG_BUDGET).await?;
        let left = deadline.saturating_duration_since(Instant::now());
        if !chunk.text.is_empty() || !chunk.more || left.is_zero() {
            return Ok(chunk);
        }
        tick += 1.0;
        cx.report(tick, None, format!("no new output of build #{number} yet; waiting up to {} s more", left.as_secs()));
        let woke =
            crate::events::pause_or_event(&mut rx, pause.min(left), |e| e.is_build(&controller, &name, number)).await;
        if woke == crate::events::Woke::Time {
            pause = (pause * 2).min(FOLLOW_MAX_PAUSE);
        }
    }
}

/// The answer of a follow: the chunk's lines, each sanitized whole, fenced as untrusted.
fn follow_answer(job: &JobPath, number: u64, chunk: &jenkins::LogChunk, sanitizer: &mut Sanitizer) -> Value {
    let source = format!("{job} #{number}");
    let text = String::from_utf8_lossy(&chunk.text);
    let cleaned: String = text.lines().map(|l| format!("{}\n", clean_line(sanitizer, l, false))).collect();
    let report = sanitizer.report().clone();
    json!({
        "job": job.to_string(),
        "number": number,
        "summary": format!("{} new byte(s) of the console of {source}{}", chunk.text.len(), if chunk.more { "; the build is still writing: call again with next_cursor" } else { "; the log is complete" }),
        "text": mark_untrusted(&source, &cleaned),
        "next_cursor": chunk.next_start,
        "more": chunk.more,
        "redactions": report.redactions,
        "untrusted": true,
    })
}

/// The first page of a follow without a cursor: the log's last lines, sanitized whole and fenced
/// as untrusted, with the cursor that continues after them.
fn first_page_answer(job: &JobPath, number: u64, end: &jenkins::EndTail, sanitizer: &mut Sanitizer) -> Value {
    let source = format!("{job} #{number}");
    let text: String = end.lines.iter().map(|l| format!("{}\n", clean_line(sanitizer, &l.text, l.truncated))).collect();
    let (text, cut) = cut_to_budget(&text, LOG_BUDGET, Keep::Tail);
    let report = sanitizer.report().clone();
    json!({
        "job": job.to_string(),
        "number": number,
        "summary": format!(
            "the last {} line(s) of the console of {source}{}{}{}{}",
            end.lines.len(),
            end.total_lines.map(|t| format!(" (of {t})")).unwrap_or_default(),
            cut_note(cut),
            if end.scan_stopped { scan_stop_note(", and next_cursor continues after the log's end") } else { String::new() },
            if end.more { "; the build is still writing: call again with next_cursor" } else { "; the log is complete" },
        ),
        "text": mark_untrusted(&source, &text),
        "first_line": end.lines.first().and_then(|l| l.number),
        "last_line": end.lines.last().and_then(|l| l.number),
        "total_lines": end.total_lines,
        "next_cursor": end.log_size,
        "more": end.more,
        "cut_bytes": cut,
        "scan_stopped_at_limit": end.scan_stopped,
        "redactions": report.redactions,
        "untrusted": true,
    })
}

/// The summary's note of an answer cut by `cut` bytes to [`LOG_BUDGET`] (empty when not cut).
fn cut_note(cut: usize) -> String {
    if cut > 0 { format!("; {cut} bytes cut to stay within {LOG_BUDGET} bytes") } else { String::new() }
}

/// The summary's note of a read stopped at [`SCAN_BUDGET`], ending with `then` (what to do).
fn scan_stop_note(then: &str) -> String {
    format!(
        "; jgate stopped reading after {} MiB (its limit per call): these are not the last lines{then}",
        SCAN_BUDGET >> 20
    )
}

/// Which part of a log to show.
#[derive(Debug, Clone)]
pub enum LogMode {
    Tail(usize),
    Head(usize),
    Range(u64, u64),
    Grep {
        pattern: regex::Regex,
        context: usize,
        max_matches: usize,
    },
    /// New output of a (running) build from a byte cursor (`progressiveText`); without one, the
    /// log's last `lines` lines and the cursor after them.
    Follow {
        cursor: Option<u64>,
        lines: usize,
    },
}

/// The view arguments of texts other than a build's console (stage logs, artifacts): the same
/// views as `get_build_log` except follow.
#[derive(Debug, Clone, Copy, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ViewName {
    Tail,
    Head,
    Range,
    Grep,
}

impl LogMode {
    /// The mode of a text view (no follow): the same defaults and caps as `get_build_log`.
    pub(super) fn from_view(
        mode: Option<ViewName>,
        lines: Option<u64>,
        from: Option<u64>,
        to: Option<u64>,
        pattern: Option<&str>,
        context: Option<u64>,
    ) -> Result<LogMode, GateError> {
        let name = match mode.unwrap_or(ViewName::Tail) {
            ViewName::Tail => LogModeName::Tail,
            ViewName::Head => LogModeName::Head,
            ViewName::Range => LogModeName::Range,
            ViewName::Grep => LogModeName::Grep,
        };
        Self::of(name, lines, from, to, pattern, context, None)
    }

    fn from_args(a: &LogArgs) -> Result<LogMode, GateError> {
        Self::of(a.mode.unwrap_or(LogModeName::Tail), a.lines, a.from, a.to, a.pattern.as_deref(), a.context, a.cursor)
    }

    fn of(
        name: LogModeName,
        lines: Option<u64>,
        from: Option<u64>,
        to: Option<u64>,
        pattern: Option<&str>,
        context: Option<u64>,
        cursor: Option<u64>,
    ) -> Result<LogMode, GateError> {
        let lines = lines.unwrap_or(100).clamp(1, 2000) as usize;
        Ok(match name {
            LogModeName::Tail => LogMode::Tail(lines),
            LogModeName::Head => LogMode::Head(lines),
            LogModeName::Range => {
                let from = from.unwrap_or(1).max(1);
                let to = to.unwrap_or(from + 99).max(from);
                LogMode::Range(from, to.min(from + 1999))
            }
            LogModeName::Grep => {
                let p = pattern
                    .ok_or_else(|| GateError::Invalid("mode grep needs 'pattern' (a regular expression)".into()))?;
                LogMode::Grep { pattern: compile(p)?, context: context.unwrap_or(2).min(50) as usize, max_matches: 50 }
            }
            LogModeName::Follow => LogMode::Follow { cursor, lines },
        })
    }
}

/// A bounded regular expression (the regex crate runs in linear time; this caps its size).
pub(super) fn compile(p: &str) -> Result<regex::Regex, GateError> {
    regex::RegexBuilder::new(p)
        .size_limit(1 << 20)
        .build()
        .map_err(|e| GateError::Invalid(format!("pattern is not a valid regular expression: {e}")))
}

/// Sanitizes one line whole, then cuts it for display.
fn clean_line(sanitizer: &mut Sanitizer, line: &str, truncated: bool) -> String {
    let mut shown = sanitizer.clean_line(line, MAX_LINE);
    if truncated && !shown.ends_with(" bytes]") {
        shown.push_str(" …[line cut]");
    }
    shown
}

/// The lines a log view selected, before sanitizing: (number, text, cut) each, the number
/// `None` when only the end of a log of unknown line count was read.
#[derive(Default)]
struct View {
    lines: Vec<(Option<u64>, String, bool)>,
    total: Option<u64>,
    next_cursor: Option<u64>,
    matches: Option<usize>,
    truncated_search: bool,
    /// Reading stopped at [`SCAN_BUDGET`].
    scan_cut: bool,
}

/// A bounded, sanitized view of a build's console.
pub(super) async fn log_view(
    client: &JenkinsClient,
    job: &JobPath,
    number: u64,
    mode: &LogMode,
    sanitizer: &mut Sanitizer,
) -> Result<Value, GateError> {
    log_view_of(client, job, number, mode, sanitizer, None).await
}

/// The whole console of a finished build when it is at most `cap` bytes (`None` when larger): for
/// answers that look at one console several ways (triage), so it is fetched once.
pub(super) async fn console_if_small(
    client: &JenkinsClient,
    job: &JobPath,
    number: u64,
    cap: usize,
) -> Result<Option<Bytes>, GateError> {
    let mut stream = client.console_stream(job, number).await?;
    let mut body = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        if body.len() + chunk.len() > cap {
            return Ok(None);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Some(Bytes::from(body)))
}

/// [`log_view`] over a console already read (`Some`), or streamed from Jenkins (`None`).
pub(super) async fn log_view_of(
    client: &JenkinsClient,
    job: &JobPath,
    number: u64,
    mode: &LogMode,
    sanitizer: &mut Sanitizer,
    read: Option<&Bytes>,
) -> Result<Value, GateError> {
    let source = format!("{job} #{number}");
    match mode {
        LogMode::Follow { cursor: Some(cursor), .. } => {
            let chunk = client.progressive_text(job, number, *cursor, LOG_BUDGET).await?;
            return Ok(follow_answer(job, number, &chunk, sanitizer));
        }
        LogMode::Follow { cursor: None, lines } => {
            let first = client.tail_to_follow(job, number, *lines, READ_LINE, SCAN_BUDGET).await?;
            return Ok(first_page_answer(job, number, &first, sanitizer));
        }
        _ => {}
    }
    let what = "the console of";
    let mut v = match (mode, read) {
        // A tail reads only the end of a log whose size the client knows (jenkins-wire.md §10.6).
        (LogMode::Tail(n), None) => {
            let t = client.tail_from_end(job, number, *n, READ_LINE, None, SCAN_BUDGET).await?;
            let view = View {
                lines: t.lines.into_iter().map(|l| (l.number, l.text, l.truncated)).collect(),
                total: t.total_lines,
                scan_cut: t.scan_stopped,
                ..View::default()
            };
            render(view, mode, sanitizer, &source, what)
        }
        _ => {
            let console: futures_util::stream::BoxStream<'static, Result<Bytes, jenkins::Error>> = match read {
                Some(body) => futures_util::stream::iter([Ok(body.clone())]).boxed(),
                None => client.console_stream(job, number).await?.boxed(),
            };
            view_of_stream(console, mode, sanitizer, &source, what).await?
        }
    };
    if let Value::Object(m) = &mut v {
        m.insert("job".into(), json!(job.to_string()));
        m.insert("number".into(), json!(number));
    }
    Ok(v)
}

/// A bounded, sanitized view (tail, head, range or grep) of any text stream from Jenkins: a
/// console, a flow node's log, a text artifact. `source` names it in the untrusted fence,
/// `what` in the summary ("the console of"). Memory stays bounded whatever the stream's size;
/// at most [`SCAN_BUDGET`] bytes are read.
pub(super) async fn view_of_stream(
    console: futures_util::stream::BoxStream<'static, Result<Bytes, jenkins::Error>>,
    mode: &LogMode,
    sanitizer: &mut Sanitizer,
    source: &str,
    what: &str,
) -> Result<Value, GateError> {
    if let LogMode::Follow { .. } = mode {
        return Err(GateError::Invalid(format!("mode follow applies to build consoles only, not to {what} {source}")));
    }
    let (stream, budget_hit) = jenkins::logs::scan_limited(console, SCAN_BUDGET);
    let to_lines =
        |ls: Vec<jenkins::logs::Line>| ls.into_iter().map(|l| (Some(l.number), l.text, l.truncated)).collect();
    let view = match mode {
        LogMode::Tail(n) => {
            let t = jenkins::logs::tail(stream, *n, READ_LINE).await?;
            View { lines: to_lines(t.lines), total: Some(t.total_lines), ..View::default() }
        }
        LogMode::Head(n) => {
            let h = jenkins::logs::head(stream, *n, READ_LINE).await?;
            let next = h.last().map(|l| l.number + 1);
            View { lines: to_lines(h), next_cursor: next, ..View::default() }
        }
        LogMode::Range(from, to) => {
            let r = jenkins::logs::line_range(stream, *from, *to, READ_LINE).await?;
            let next = r.last().filter(|l| l.number == *to).map(|l| l.number + 1);
            View { lines: to_lines(r), next_cursor: next, ..View::default() }
        }
        LogMode::Follow { .. } => View::default(),
        LogMode::Grep { pattern, context, max_matches } => {
            let opts = jenkins::logs::GrepOptions {
                before: *context,
                after: *context,
                max_matches: *max_matches,
                max_line_bytes: READ_LINE,
            };
            let g = jenkins::logs::grep(stream, pattern, &opts).await?;
            let lines = g
                .hits
                .into_iter()
                .map(|h| {
                    (
                        Some(h.line.number),
                        format!("{}{}", if h.is_match { "» " } else { "  " }, h.line.text),
                        h.line.truncated,
                    )
                })
                .collect();
            View {
                lines,
                total: Some(g.lines_scanned),
                matches: Some(g.matches),
                truncated_search: g.truncated,
                ..View::default()
            }
        }
    };
    Ok(render(View { scan_cut: budget_hit.load(Ordering::Relaxed), ..view }, mode, sanitizer, source, what))
}

/// The answer of a view: its lines sanitized whole, numbered, cut to [`LOG_BUDGET`], fenced as
/// untrusted, with a summary that says what was shown and what was not.
fn render(view: View, mode: &LogMode, sanitizer: &mut Sanitizer, source: &str, what: &str) -> Value {
    let View { lines, total, next_cursor, matches, truncated_search, scan_cut } = view;
    let mut text = String::new();
    let mut last_number = 0;
    for (n, l, truncated) in &lines {
        let shown = clean_line(sanitizer, l, *truncated);
        match n {
            Some(n) => {
                if last_number != 0 && *n > last_number + 1 {
                    text.push_str("--\n");
                }
                last_number = *n;
                text.push_str(&format!("{n:>6}  {shown}\n"));
            }
            None => text.push_str(&format!("{:>6}  {shown}\n", "")),
        }
    }
    let unnumbered = lines.first().is_some_and(|l| l.0.is_none());
    let keep = if matches!(mode, LogMode::Tail(_)) { Keep::Tail } else { Keep::Head };
    let (text, cut) = cut_to_budget(&text, LOG_BUDGET, keep);
    let report = sanitizer.report().clone();
    let summary = format!(
        "{} line(s) of {what} {source}{}{}{}{}",
        lines.len(),
        match total {
            Some(t) => format!(" (the log has {}{t} lines)", if scan_cut { "more than " } else { "" }),
            None if unnumbered =>
                " (its last lines; only the end of the log was read, so its line count is not known)".into(),
            None => String::new(),
        },
        if report.redactions > 0 { format!("; {} secret(s) redacted", report.redactions) } else { String::new() },
        cut_note(cut),
        if scan_cut { scan_stop_note(" — page with mode follow and a cursor") } else { String::new() },
    );
    json!({
        "summary": summary,
        "text": mark_untrusted(source, &text),
        "first_line": lines.first().and_then(|l| l.0),
        "last_line": lines.last().and_then(|l| l.0),
        "total_lines": total,
        "next_cursor": next_cursor,
        "matches": matches,
        "search_truncated": truncated_search || scan_cut,
        "scan_stopped_at_limit": scan_cut,
        "cut_bytes": cut,
        "redactions": report.redactions,
        "redactions_by_rule": report.by_rule,
        "untrusted": true,
    })
}
