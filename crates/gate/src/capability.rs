//! The capability layer: compact, structured answers to the questions agents actually ask
//! ("why did #142 fail?", "what was the last good build?", "is anything stuck?"), built from
//! wire-client calls. Console text is sanitized, redacted, bounded and marked untrusted before it
//! leaves this module.

use std::time::Duration;

use jenkins::model::{Build, Job};
use jenkins::tree::{Range, Tree};
use jenkins::{BuildSelector, JenkinsClient, JobPath};
use serde_json::{Value, json};

use crate::gate::GateError;
use crate::sanitize::{Keep, Sanitizer, cut_to_budget, mark_untrusted};

/// The most console text one answer carries (bytes, after sanitizing).
pub const LOG_BUDGET: usize = 24 * 1024;
/// Longest console line kept.
const MAX_LINE: usize = 2048;

pub fn selector(args: &Value) -> Result<BuildSelector, GateError> {
    match args.get("build") {
        None | Some(Value::Null) => Ok(BuildSelector::LastBuild),
        Some(Value::Number(n)) => {
            n.as_u64().map(BuildSelector::Number).ok_or_else(|| GateError::Invalid("build must be a positive number".into()))
        }
        Some(Value::String(s)) => Ok(match s.as_str() {
            "lastBuild" | "last" => BuildSelector::LastBuild,
            "lastCompletedBuild" => BuildSelector::LastCompletedBuild,
            "lastSuccessfulBuild" => BuildSelector::LastSuccessfulBuild,
            "lastStableBuild" => BuildSelector::LastStableBuild,
            "lastFailedBuild" => BuildSelector::LastFailedBuild,
            "lastUnstableBuild" => BuildSelector::LastUnstableBuild,
            "lastUnsuccessfulBuild" => BuildSelector::LastUnsuccessfulBuild,
            other => BuildSelector::Number(other.trim_start_matches('#').parse().map_err(|_| {
                GateError::Invalid(format!(
                    "build '{other}' is neither a number nor one of lastBuild, lastCompletedBuild, lastSuccessfulBuild, lastStableBuild, lastFailedBuild, lastUnstableBuild, lastUnsuccessfulBuild"
                ))
            })?),
        }),
        Some(_) => Err(GateError::Invalid("build must be a number or a permalink name".into())),
    }
}

/// The build number a selector designates.
pub async fn resolve_number(client: &JenkinsClient, job: &JobPath, sel: BuildSelector) -> Result<u64, GateError> {
    Ok(match sel {
        BuildSelector::Number(n) => n,
        other => client.build(job, other).await?.number,
    })
}

/// A job: health, last builds, recent history with a success rate, parameters, queue state.
pub async fn job_summary(client: &JenkinsClient, job: &JobPath) -> Result<Value, GateError> {
    let j: Job = client.job(job).await?;
    if j.is_folder() {
        return Ok(json!({
            "name": j.full_name, "kind": "folder", "description": j.description,
            "items": j.jobs.unwrap_or_default().iter().map(|i| json!({"name": i.name, "color": i.color, "folder": i.is_folder()})).collect::<Vec<_>>(),
        }));
    }
    let tree = Tree::new().nested_range(
        "builds",
        Tree::new().fields(&["number", "result", "duration", "timestamp", "building"]),
        Range::first(10),
    );
    let history = client.job_tree(job, &tree).await?;
    let builds = history.get("builds").and_then(Value::as_array).cloned().unwrap_or_default();
    let finished: Vec<&Value> = builds.iter().filter(|b| b.get("building") == Some(&Value::Bool(false))).collect();
    let ok = finished.iter().filter(|b| b.get("result").and_then(Value::as_str) == Some("SUCCESS")).count();
    let rate =
        if finished.is_empty() { Value::Null } else { json!(((ok * 100) as f64 / finished.len() as f64).round()) };
    let durations: Vec<i64> = finished.iter().filter_map(|b| b.get("duration").and_then(Value::as_i64)).collect();
    let usual =
        if durations.is_empty() { Value::Null } else { json!(durations.iter().sum::<i64>() / durations.len() as i64) };
    let params = j.parameters();
    Ok(json!({
        "name": j.full_name,
        "kind": j.class.rsplit('.').next().unwrap_or(""),
        "description": j.description,
        "color": j.color,
        "buildable": j.buildable,
        "disabled": j.disabled,
        "in_queue": j.in_queue,
        "queue_why": j.queue_item.as_ref().and_then(|q| q.why.clone()),
        "health": j.health_report.iter().map(|h| json!({"score": h.score, "description": h.description})).collect::<Vec<_>>(),
        "last_build": j.last_build.map(|b| b.number),
        "last_successful_build": j.last_successful_build.map(|b| b.number),
        "last_failed_build": j.last_failed_build.map(|b| b.number),
        "last_completed_build": j.last_completed_build.map(|b| b.number),
        "next_build_number": j.next_build_number,
        "recent_builds": builds.iter().map(|b| json!({"number": b["number"], "result": b["result"], "duration_ms": b["duration"], "timestamp": b["timestamp"], "building": b["building"]})).collect::<Vec<_>>(),
        "success_rate_percent_last_10": rate,
        "usual_duration_ms": usual,
        "parameters": params.iter().map(|p| json!({"name": p.name, "type": p.kind, "default": p.default, "choices": p.choices, "description": p.description})).collect::<Vec<_>>(),
    }))
}

fn changes_of(b: &Build) -> Vec<Value> {
    let mut sets: Vec<&Value> = Vec::new();
    if let Some(cs) = &b.change_set {
        sets.push(cs);
    }
    if let Some(list) = &b.change_sets {
        sets.extend(list.iter());
    }
    sets.iter()
        .filter_map(|cs| cs.get("items").and_then(Value::as_array))
        .flatten()
        .map(|i| {
            json!({
                "commit": i.get("commitId").or_else(|| i.get("id")),
                "author": i.get("author").and_then(|a| a.get("fullName")),
                "message": i.get("msg").or_else(|| i.get("comment")),
                "paths": i.get("affectedPaths"),
            })
        })
        .collect()
}

async fn failing_tests(
    client: &JenkinsClient,
    job: &JobPath,
    number: u64,
    limit: usize,
) -> Result<Option<Value>, GateError> {
    let Some(report) = client.test_report(job, number).await? else { return Ok(None) };
    let mut failing = Vec::new();
    for suite in report.get("suites").and_then(Value::as_array).into_iter().flatten() {
        for case in suite.get("cases").and_then(Value::as_array).into_iter().flatten() {
            let status = case.get("status").and_then(Value::as_str).unwrap_or("");
            if matches!(status, "FAILED" | "REGRESSION") && failing.len() < limit {
                let name = format!(
                    "{}.{}",
                    case.get("className").and_then(Value::as_str).unwrap_or(""),
                    case.get("name").and_then(Value::as_str).unwrap_or("")
                );
                let error =
                    case.get("errorDetails").and_then(Value::as_str).map(|e| e.chars().take(300).collect::<String>());
                failing.push(json!({"name": name, "error": error}));
            }
        }
    }
    Ok(Some(json!({
        "failed": report.get("failCount"), "passed": report.get("passCount"), "skipped": report.get("skipCount"),
        "failing_tests": failing,
    })))
}

/// A build: result, duration, causes, parameters, changes, tests (with failing names), artifacts.
pub async fn build_detail(client: &JenkinsClient, job: &JobPath, sel: BuildSelector) -> Result<Value, GateError> {
    let b = client.build(job, sel).await?;
    let tests = if b.test_counts().is_some_and(|(f, _, _)| f > 0) {
        failing_tests(client, job, b.number, 20).await?
    } else {
        b.test_counts().map(|(f, s, t)| json!({"failed": f, "skipped": s, "total": t}))
    };
    Ok(json!({
        "number": b.number,
        "result": b.result,
        "building": b.building,
        "duration_ms": b.duration,
        "estimated_duration_ms": b.estimated_duration,
        "started_at_ms": b.timestamp,
        "queue_id": b.queue_id,
        "built_on": b.built_on,
        "causes": b.causes().iter().map(|c| c.short_description.clone()).collect::<Vec<_>>(),
        "parameters": b.parameters().iter().map(|(k, v)| json!({"name": k, "value": v})).collect::<Vec<_>>(),
        "changes": changes_of(&b),
        "tests": tests,
        "artifacts": b.artifacts.iter().map(|a| a.relative_path.clone()).collect::<Vec<_>>(),
    }))
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
    /// New output of a (running) build from a byte cursor (`progressiveText`).
    Follow(u64),
}

impl LogMode {
    pub fn from_args(args: &Value) -> Result<LogMode, GateError> {
        let n = |k: &str, d: u64| args.get(k).and_then(Value::as_u64).unwrap_or(d);
        let lines = n("lines", 100).clamp(1, 2000) as usize;
        Ok(match args.get("mode").and_then(Value::as_str).unwrap_or("tail") {
            "tail" => LogMode::Tail(lines),
            "head" => LogMode::Head(lines),
            "range" => {
                let from = n("from", 1).max(1);
                let to = n("to", from + 99).max(from);
                LogMode::Range(from, to.min(from + 1999))
            }
            "grep" => {
                let p = args
                    .get("pattern")
                    .and_then(Value::as_str)
                    .ok_or_else(|| GateError::Invalid("mode grep needs 'pattern' (a regular expression)".into()))?;
                let pattern = regex::RegexBuilder::new(p)
                    .size_limit(1 << 20)
                    .build()
                    .map_err(|e| GateError::Invalid(format!("pattern is not a valid regular expression: {e}")))?;
                LogMode::Grep { pattern, context: n("context", 2).min(50) as usize, max_matches: 50 }
            }
            "follow" => LogMode::Follow(n("cursor", 0)),
            other => {
                return Err(GateError::Invalid(format!(
                    "mode must be tail, head, range, grep or follow, not '{other}'"
                )));
            }
        })
    }
}

/// The lines a log view selected, before sanitizing.
#[derive(Default)]
struct View {
    lines: Vec<(u64, String)>,
    total: Option<u64>,
    next_cursor: Option<u64>,
    matches: Option<usize>,
    truncated_search: bool,
}

/// A bounded, sanitized view of a build's console.
pub async fn log_view(
    client: &JenkinsClient,
    job: &JobPath,
    number: u64,
    mode: &LogMode,
    sanitizer: &mut Sanitizer,
) -> Result<Value, GateError> {
    if let LogMode::Follow(cursor) = mode {
        let chunk = client.progressive_text(job, number, *cursor, LOG_BUDGET).await?;
        let text = String::from_utf8_lossy(&chunk.text);
        let cleaned: String = text.lines().map(|l| format!("{}\n", sanitizer.clean(l))).collect();
        let report = sanitizer.report().clone();
        let source = format!("{job} #{number}");
        return Ok(json!({
            "job": job.to_string(),
            "number": number,
            "summary": format!("{} new byte(s) of the console of {source}{}", chunk.text.len(), if chunk.more { "; the build is still writing: call again with next_cursor" } else { "; the log is complete" }),
            "text": mark_untrusted(&source, &cleaned),
            "next_cursor": chunk.next_start,
            "more": chunk.more,
            "redactions": report.redactions,
            "untrusted": true,
        }));
    }
    let stream = client.console_stream(job, number).await?;
    let View { lines, total, next_cursor, matches, truncated_search } = match mode {
        LogMode::Tail(n) => {
            let t = jenkins::logs::tail(stream, *n, MAX_LINE).await?;
            View {
                lines: t.lines.into_iter().map(|l| (l.number, l.text)).collect(),
                total: Some(t.total_lines),
                ..View::default()
            }
        }
        LogMode::Head(n) => {
            let h = jenkins::logs::head(stream, *n, MAX_LINE).await?;
            let next = h.last().map(|l| l.number + 1);
            View { lines: h.into_iter().map(|l| (l.number, l.text)).collect(), next_cursor: next, ..View::default() }
        }
        LogMode::Range(from, to) => {
            let r = jenkins::logs::line_range(stream, *from, *to, MAX_LINE).await?;
            let next = r.last().filter(|l| l.number == *to).map(|l| l.number + 1);
            View { lines: r.into_iter().map(|l| (l.number, l.text)).collect(), next_cursor: next, ..View::default() }
        }
        LogMode::Follow(_) => View::default(),
        LogMode::Grep { pattern, context, max_matches } => {
            let opts = jenkins::logs::GrepOptions {
                before: *context,
                after: *context,
                max_matches: *max_matches,
                max_line_bytes: MAX_LINE,
            };
            let g = jenkins::logs::grep(stream, pattern, &opts).await?;
            let lines = g
                .hits
                .into_iter()
                .map(|h| (h.line.number, format!("{}{}", if h.is_match { "» " } else { "  " }, h.line.text)))
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
    let mut text = String::new();
    let mut last_number = 0;
    for (n, l) in &lines {
        if last_number != 0 && *n > last_number + 1 {
            text.push_str("--\n");
        }
        last_number = *n;
        text.push_str(&format!("{n:>6}  {}\n", sanitizer.clean(l)));
    }
    let keep = if matches!(mode, LogMode::Tail(_)) { Keep::Tail } else { Keep::Head };
    let (text, cut) = cut_to_budget(&text, LOG_BUDGET, keep);
    let report = sanitizer.report().clone();
    let source = format!("{job} #{number}");
    let summary = format!(
        "{} line(s) of the console of {source}{}{}{}",
        lines.len(),
        total.map(|t| format!(" (the log has {t} lines)")).unwrap_or_default(),
        if report.redactions > 0 { format!("; {} secret(s) redacted", report.redactions) } else { String::new() },
        if cut > 0 { format!("; {cut} bytes cut to stay within {LOG_BUDGET} bytes") } else { String::new() },
    );
    Ok(json!({
        "job": job.to_string(),
        "number": number,
        "summary": summary,
        "text": mark_untrusted(&source, &text),
        "first_line": lines.first().map(|l| l.0),
        "last_line": lines.last().map(|l| l.0),
        "total_lines": total,
        "next_cursor": next_cursor,
        "matches": matches,
        "search_truncated": truncated_search,
        "cut_bytes": cut,
        "redactions": report.redactions,
        "redactions_by_rule": report.by_rule,
        "untrusted": true,
    }))
}

/// A Pipeline run: stages with status and timings; the failing stage with its log excerpt.
pub async fn pipeline_detail(
    client: &JenkinsClient,
    job: &JobPath,
    number: u64,
    sanitizer: &mut Sanitizer,
) -> Result<Value, GateError> {
    let run = client.pipeline_run(job, number).await?;
    let failing = run.stages.iter().find(|s| matches!(s.status.as_str(), "FAILED" | "UNSTABLE" | "ABORTED"));
    let mut excerpt = Value::Null;
    if let Some(stage) = failing {
        let node = client.pipeline_node(job, number, &stage.id).await?;
        let step =
            node.stage_flow_nodes.unwrap_or_default().into_iter().rev().find(|n| n.status == "FAILED").map(|n| n.id);
        if let Some(step) = step {
            let log = client.pipeline_node_log(job, number, &step).await?;
            let text = unescape_html(&log.text);
            let cleaned: String = text.lines().map(|l| format!("{}\n", sanitizer.clean(l))).collect();
            let (cut, _) = cut_to_budget(&cleaned, 8 * 1024, Keep::Tail);
            excerpt = json!(mark_untrusted(&format!("{job} #{number} stage {}", stage.name), &cut));
        }
    }
    Ok(json!({
        "number": number,
        "status": run.status,
        "duration_ms": run.duration_millis,
        "queue_ms": run.queue_duration_millis,
        "stages": run.stages.iter().map(|s| json!({
            "name": s.name, "status": s.status, "duration_ms": s.duration_millis,
            "error": s.error.as_ref().map(|e| e.message.clone()),
        })).collect::<Vec<_>>(),
        "failing_stage": failing.map(|s| s.name.clone()),
        "failing_stage_error": failing.and_then(|s| s.error.as_ref().map(|e| e.message.clone())),
        "failing_stage_log": excerpt,
    }))
}

fn unescape_html(s: &str) -> String {
    s.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", "\"").replace("&#39;", "'").replace("&amp;", "&")
}

/// Lines that usually mark where a build went wrong.
const ERROR_PATTERN: &str =
    r"(?i)(\berror\b|\bfailed\b|\bfailure\b|exception|\bfatal\b|traceback|exit code [1-9]|marked build as failure)";

/// One bounded answer to "why did this build fail?".
pub async fn triage(
    client: &JenkinsClient,
    job: &JobPath,
    sel: BuildSelector,
    sanitizer: &mut Sanitizer,
) -> Result<Value, GateError> {
    let b = client.build(job, sel).await?;
    let number = b.number;
    let is_pipeline = b.class.ends_with("WorkflowRun");
    let pipeline = if is_pipeline {
        match pipeline_detail(client, job, number, sanitizer).await {
            Ok(v) => Some(v),
            Err(GateError::Jenkins(e)) if matches!(*e, jenkins::Error::PluginMissing { .. }) => None,
            Err(e) => return Err(e),
        }
    } else {
        None
    };
    let pattern = regex::Regex::new(ERROR_PATTERN).map_err(|e| GateError::Invalid(e.to_string()))?;
    let grep = LogMode::Grep { pattern, context: 3, max_matches: 8 };
    let errors = log_view(client, job, number, &grep, sanitizer).await?;
    let tail = log_view(client, job, number, &LogMode::Tail(30), sanitizer).await?;
    let tests = failing_tests(client, job, number, 20).await?;
    // Changes since the last success: the change sets of every build after it, up to this one.
    let last_ok = client.job(job).await?.last_successful_build.map(|r| r.number).unwrap_or(0);
    let mut changes = Vec::new();
    let mut previous = Value::Null;
    let first = if last_ok < number { last_ok + 1 } else { number };
    for n in first.max(number.saturating_sub(20))..=number {
        if let Ok(pb) = client.build(job, BuildSelector::Number(n)).await {
            for c in changes_of(&pb) {
                changes.push(json!({"build": n, "change": c}));
            }
        }
    }
    if number > 1
        && let Ok(prev) = client.build(job, BuildSelector::Number(number - 1)).await
    {
        {
            let same_stage = match (&pipeline, is_pipeline) {
                (Some(p), true) => match pipeline_detail(client, job, number - 1, sanitizer).await {
                    Ok(pp) => Some(pp.get("failing_stage") == p.get("failing_stage") && !p["failing_stage"].is_null()),
                    Err(_) => None,
                },
                _ => None,
            };
            previous = json!({
                "number": prev.number,
                "result": prev.result,
                "failed_the_same_way": prev.result == b.result && prev.result.as_deref() != Some("SUCCESS") && same_stage.unwrap_or(true),
            });
        }
    }
    let verdict = match b.result.as_deref() {
        Some("SUCCESS") => format!("{job} #{number} succeeded; nothing to triage"),
        None => format!("{job} #{number} is still running"),
        Some(r) => {
            let stage = pipeline.as_ref().and_then(|p| p.get("failing_stage")).and_then(Value::as_str);
            let failed_tests = tests.as_ref().and_then(|t| t.get("failed")).and_then(Value::as_u64).unwrap_or(0);
            let mut s = format!("{job} #{number} {r}");
            if let Some(st) = stage {
                s.push_str(&format!(" in stage '{st}'"));
            }
            if failed_tests > 0 {
                s.push_str(&format!("; {failed_tests} test(s) failing"));
            }
            if last_ok > 0 {
                s.push_str(&format!("; last success was #{last_ok}"));
            }
            s
        }
    };
    Ok(json!({
        "job": job.to_string(),
        "number": number,
        "result": b.result,
        "verdict": verdict,
        "pipeline": pipeline,
        "error_lines": errors.get("text"),
        "error_matches": errors.get("matches"),
        "log_tail": tail.get("text"),
        "tests": tests,
        "last_successful_build": if last_ok > 0 { json!(last_ok) } else { Value::Null },
        "changes_since_last_success": changes,
        "previous_build": previous,
        "redactions": sanitizer.report().redactions,
        "untrusted": true,
    }))
}

/// Checks trigger parameters against the job's definitions before Jenkins sees them.
pub fn validate_parameters(job: &Job, params: &[(String, String)]) -> Result<(), GateError> {
    let defs = job.parameters();
    if defs.is_empty() && !params.is_empty() {
        return Err(GateError::Invalid(format!(
            "{} takes no parameters; trigger it without parameters",
            job.full_name
        )));
    }
    for (name, value) in params {
        let Some(def) = defs.iter().find(|d| d.name == *name) else {
            let names: Vec<&str> = defs.iter().map(|d| d.name.as_str()).collect();
            return Err(GateError::Invalid(format!(
                "{} has no parameter '{name}'; its parameters are: {}",
                job.full_name,
                names.join(", ")
            )));
        };
        if def.kind.starts_with("Choice") && !def.choices.is_empty() && !def.choices.contains(value) {
            return Err(GateError::Invalid(format!(
                "parameter {name} must be one of {}; '{value}' is not",
                def.choices.join(", ")
            )));
        }
        if def.kind.starts_with("Boolean") && !matches!(value.as_str(), "true" | "false") {
            return Err(GateError::Invalid(format!("parameter {name} is a boolean: use true or false, not '{value}'")));
        }
    }
    Ok(())
}

/// The queue, with why each item waits and which look stuck.
pub async fn queue_view(
    client: &JenkinsClient,
    visible: impl Fn(&str) -> bool,
    stuck_factor: f64,
) -> Result<Value, GateError> {
    let items = client.queue().await?;
    let now = crate::store::now_ms();
    let mut out = Vec::new();
    for q in items {
        let url = q.task.as_ref().map(|t| t.url.clone()).unwrap_or_default();
        let full = job_from_url(&url).unwrap_or_else(|| q.task.as_ref().map(|t| t.name.clone()).unwrap_or_default());
        if !visible(&full) {
            continue;
        }
        let waited = (now - q.in_queue_since).max(0);
        let usual = match JobPath::parse(&full) {
            Ok(jp) => client
                .job_tree(&jp, &Tree::new().nested("lastSuccessfulBuild", Tree::new().field("duration")))
                .await
                .ok()
                .and_then(|v| v.get("lastSuccessfulBuild").and_then(|b| b.get("duration")).and_then(Value::as_i64)),
            Err(_) => None,
        };
        let why = q.why.clone().unwrap_or_default();
        let offline = why.contains("offline") || why.contains("no nodes with the label");
        let too_long = usual.is_some_and(|u| u > 0 && waited as f64 > stuck_factor * u as f64);
        let stuck = q.stuck || offline || too_long;
        let reason = if q.stuck || offline {
            Some(format!("Jenkins cannot place it: {why}"))
        } else if too_long {
            Some(format!(
                "waiting {} s, more than {stuck_factor}× the job's usual {} s",
                waited / 1000,
                usual.unwrap_or(0) / 1000
            ))
        } else {
            None
        };
        out.push(json!({"id": q.id, "job": full, "why": q.why, "waiting_ms": waited, "stuck": stuck, "stuck_reason": reason}));
    }
    let stuck = out.iter().filter(|i| i["stuck"] == Value::Bool(true)).count();
    Ok(json!({ "items": out, "stuck": stuck }))
}

/// `http://host/job/a/job/b/` → `a/b` (the queue's task has only the short name).
fn job_from_url(url: &str) -> Option<String> {
    let path = url.split_once("://").map_or(url, |(_, rest)| rest.split_once('/').map_or("", |(_, p)| p));
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let start = segs.iter().position(|s| *s == "job")?;
    let names: Vec<String> = segs[start..]
        .chunks(2)
        .filter(|c| c.len() == 2 && c[0] == "job")
        .map(|c| crate::policy::percent_decode(c[1]).unwrap_or_else(|_| c[1].to_string()))
        .collect();
    (!names.is_empty()).then(|| names.join("/"))
}

/// Waits are bounded: the longest a trigger waits for its build to start.
pub const START_TIMEOUT: Duration = Duration::from_secs(600);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_task_urls_to_full_names() {
        assert_eq!(job_from_url("http://ci:8080/job/team/job/api/").as_deref(), Some("team/api"));
        assert_eq!(job_from_url("http://ci/jenkins/job/shop/job/feature%252Fx/").as_deref(), Some("shop/feature%2Fx"));
        assert_eq!(job_from_url("http://ci/"), None);
    }
}
