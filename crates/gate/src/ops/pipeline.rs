//! Pipeline runs and triage: "why did this build fail?" in one bounded answer.

use futures_util::{StreamExt, TryStreamExt};
use jenkins::{BuildSelector, JenkinsClient, JobPath};
use serde_json::{Value, json};

use super::logs::{LogMode, ViewName, compile, console_if_small, log_view_of, view_of_stream};
use super::status::{BuildArgs, changes_of, failing_tests};
use super::{BuildArg, Exec, Need, Op, resolve_number};
use crate::catalog::Operation;
use crate::error::GateError;
use crate::sanitize::{Keep, Sanitizer, cut_to_budget, mark_untrusted};

pub struct GetPipelineRun;

impl Op for GetPipelineRun {
    type Args = BuildArgs;
    const META: Operation = crate::op!("get_pipeline_run", Status, Read, Job, destructive: false, idempotent: true,
        routes: ["GET /{job}/wfapi/runs", "GET /{job}/{build}/wfapi/describe", "GET /{job}/{build}/wfapi/pendingInputActions",
            "GET /{job}/{build}/execution/node/{id}/wfapi/*"],
        cli: "pipeline show", phrase: "read the pipeline stages of",
        "Show a Pipeline run's stages with status and timings, the failing stage's log excerpt, and the input steps it waits for.");

    fn needs(a: &BuildArgs) -> Vec<Need> {
        vec![Need::primary(&Self::META, Some(&a.job))]
    }

    async fn run(cx: &mut Exec<'_>, a: BuildArgs) -> Result<Value, GateError> {
        let path = cx.path(0)?;
        let number = resolve_number(cx.client, &path, BuildArg::selector(a.build.as_ref())?).await?;
        Ok(pipeline_detail(cx.client, &path, number, cx.sanitizer).await?.0)
    }
}

/// The failing step's log as the Pipeline REST API gives it (its last ≤ 10 KiB, unescaped, not
/// yet sanitized), and the node it is of.
struct StepLog {
    node: String,
    text: String,
}

/// The most stages a run's answer lists (the answer says when there are more).
const MAX_STAGES: usize = 200;

/// A Pipeline run: stages with status and timings; the failing stage with its log excerpt (and
/// that log, for triage's views of it).
async fn pipeline_detail(
    client: &JenkinsClient,
    job: &JobPath,
    number: u64,
    sanitizer: &mut Sanitizer,
) -> Result<(Value, Option<StepLog>), GateError> {
    let run = client.pipeline_run(job, number).await?;
    let failing = run.stages.iter().find(|s| matches!(s.status.as_str(), "FAILED" | "UNSTABLE" | "ABORTED"));
    let mut excerpt = Value::Null;
    let mut step_log = None;
    if let Some(stage) = failing {
        let node = client.pipeline_node(job, number, &stage.id).await?;
        // The failing step's own log; a stage without steps (or none marked failed) has its
        // output on the stage node itself. Never a grep of the whole console.
        let step = node
            .stage_flow_nodes
            .unwrap_or_default()
            .into_iter()
            .rev()
            .find(|n| n.status == "FAILED")
            .map_or_else(|| stage.id.clone(), |n| n.id);
        {
            let log = client.pipeline_node_log(job, number, &step).await?;
            let text = unescape_html(&log.text);
            let cleaned: String = text.lines().map(|l| format!("{}\n", sanitizer.clean(l))).collect();
            let (cut, _) = cut_to_budget(&cleaned, 8 * 1024, Keep::Tail);
            excerpt = json!(mark_untrusted(&format!("{job} #{number} stage {}", stage.name), &cut));
            step_log = Some(StepLog { node: step, text });
        }
    }
    // A run waiting for an input step says which: answer_input needs the step's id.
    let pending_inputs = if run.status == "PAUSED_PENDING_INPUT" {
        let all = client.pending_inputs(job, number).await?;
        Value::Array(
            all.as_array()
                .into_iter()
                .flatten()
                .take(20)
                .map(|p| json!({ "id": p.get("id"), "message": p.get("message") }))
                .collect(),
        )
    } else {
        Value::Null
    };
    let mut answer = json!({
        "number": number,
        "status": run.status,
        "pending_inputs": pending_inputs,
        "duration_ms": run.duration_millis,
        "queue_ms": run.queue_duration_millis,
        "stages": run.stages.iter().take(MAX_STAGES).map(|s| json!({
            "name": s.name, "status": s.status, "duration_ms": s.duration_millis,
            "error": s.error.as_ref().map(|e| e.message.clone()),
        })).collect::<Vec<_>>(),
        "stage_count": run.stages.len(),
        "failing_stage": failing.map(|s| s.name.clone()),
        "failing_stage_error": failing.and_then(|s| s.error.as_ref().map(|e| e.message.clone())),
        "failing_stage_log": excerpt,
        "failing_node": step_log.as_ref().map(|l| l.node.clone()),
    });
    // Said, never silent: what a longer run's list leaves out, and how to reach it.
    if run.stages.len() > MAX_STAGES {
        answer["stages_note"] = json!(format!(
            "the first {MAX_STAGES} of {} stages are listed; the failing one is named in failing_stage; \
             get_stage_log reads any stage by name",
            run.stages.len()
        ));
    }
    Ok((answer, step_log))
}

fn unescape_html(s: &str) -> String {
    s.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", "\"").replace("&#39;", "'").replace("&amp;", "&")
}

/// Lines that usually mark where a build went wrong.
const ERROR_PATTERN: &str =
    r"(?i)(\berror\b|\bfailed\b|\bfailure\b|exception|\bfatal\b|traceback|exit code [1-9]|marked build as failure)";

pub struct TriageBuild;

impl Op for TriageBuild {
    type Args = BuildArgs;
    const META: Operation = crate::op!("triage_build", Status, Read, Job, destructive: false, idempotent: true,
        routes: ["GET /{job}/{build}/api/json", "GET /{job}/{build}/consoleText", "GET /{job}/{build}/testReport/api/json", "GET /{job}/{build}/wfapi/describe"],
        cli: "build triage", phrase: "triaged a build of",
        "Explain why a build failed, in one bounded answer: the failing stage, the error lines of the log, failing tests, changes since the last success, and whether the previous build failed the same way. Default build: the last failed one.");

    fn needs(a: &BuildArgs) -> Vec<Need> {
        vec![Need::primary(&Self::META, Some(&a.job))]
    }

    async fn run(cx: &mut Exec<'_>, a: BuildArgs) -> Result<Value, GateError> {
        let path = cx.path(0)?;
        let sel = match &a.build {
            // The build to explain is the last one that failed; a job that never failed has its
            // last completed build explained instead (the verdict says it succeeded).
            None => match cx.client.build(&path, BuildSelector::LastFailedBuild).await {
                Ok(_) => BuildSelector::LastFailedBuild,
                Err(jenkins::Error::NotFound { .. }) => BuildSelector::LastCompletedBuild,
                Err(e) => return Err(e.into()),
            },
            some => BuildArg::selector(some.as_ref())?,
        };
        triage(cx.client, &path, sel, cx.sanitizer).await
    }
}

/// Consoles up to this size are read once for triage's two views; larger ones are streamed twice
/// (memory stays bounded whatever the log's size).
const TRIAGE_READ_ONCE_BYTES: usize = 16 * 1024 * 1024;
/// Triage's log excerpt, sized so that an explanation fits in about 2 KB (issue #14): the error
/// lines with a little context, and the last lines; `get_build_log` reads more on request.
const TRIAGE_CONTEXT: usize = 2;
const TRIAGE_MATCHES: usize = 5;
const TRIAGE_TAIL: usize = 15;

/// One bounded answer to "why did this build fail?".
async fn triage(
    client: &JenkinsClient,
    job: &JobPath,
    sel: BuildSelector,
    sanitizer: &mut Sanitizer,
) -> Result<Value, GateError> {
    let b = client.build(job, sel).await?;
    let number = b.number;
    let is_pipeline = b.class.ends_with("WorkflowRun");
    let (pipeline, step_log) = if is_pipeline {
        match pipeline_detail(client, job, number, sanitizer).await {
            Ok((v, log)) => (Some(v), log),
            Err(GateError::Jenkins(e)) if matches!(*e, jenkins::Error::PluginMissing { .. }) => (None, None),
            Err(e) => return Err(e),
        }
    } else {
        (None, None)
    };
    // A build that succeeded has nothing to explain in its log. A Pipeline whose failing step is
    // known (wfapi) is explained from that step's log, never a grep of the whole console; any
    // other failed build's console is read once (when it is not huge) for the error lines and the
    // tail.
    let grep = LogMode::Grep { pattern: compile(ERROR_PATTERN)?, context: TRIAGE_CONTEXT, max_matches: TRIAGE_MATCHES };
    let (errors, tail) = if b.result.as_deref() == Some("SUCCESS") {
        (json!({}), json!({}))
    } else if let Some(step) = &step_log {
        let source = format!("{job} #{number} node {}", step.node);
        let once = || futures_util::stream::iter([Ok(bytes::Bytes::from(step.text.clone()))]).boxed();
        let errors = view_of_stream(once(), &grep, sanitizer, &source, "the failing step's log of").await?;
        let tail = view_of_stream(once(), &LogMode::Tail(TRIAGE_TAIL), sanitizer, &source, "the failing step's log of")
            .await?;
        (errors, tail)
    } else {
        let read = console_if_small(client, job, number, TRIAGE_READ_ONCE_BYTES).await?;
        let errors = log_view_of(client, job, number, &grep, sanitizer, read.as_ref()).await?;
        let tail = log_view_of(client, job, number, &LogMode::Tail(TRIAGE_TAIL), sanitizer, read.as_ref()).await?;
        (errors, tail)
    };
    // When the error lines already run to the log's last line, the tail would repeat them: it is
    // left out (`log_tail_in_error_lines`), which keeps a typical triage under ~2 KB.
    let tail_in_errors =
        errors.get("last_line").and_then(Value::as_u64).is_some() && errors.get("last_line") == tail.get("last_line");
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
        let same_stage = match (&pipeline, is_pipeline) {
            (Some(p), true) => match pipeline_detail(client, job, number - 1, sanitizer).await {
                Ok((pp, _)) => Some(pp.get("failing_stage") == p.get("failing_stage") && !p["failing_stage"].is_null()),
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
        "error_lines_from": if step_log.is_some() { "the failing step's log (Pipeline REST API)" } else { "the console" },
        "error_matches": errors.get("matches"),
        "log_tail": if tail_in_errors { Value::Null } else { tail.get("text").cloned().unwrap_or(Value::Null) },
        "log_tail_in_error_lines": tail_in_errors,
        "tests": tests,
        "last_successful_build": if last_ok > 0 { json!(last_ok) } else { Value::Null },
        "changes_since_last_success": changes,
        "previous_build": previous,
        "untrusted": true,
    }))
}

pub struct GetStageLog;

/// Arguments of `get_stage_log`.
#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StageLogArgs {
    /// The Pipeline job's full name, folders separated by '/'.
    pub job: String,
    /// A build number or a permalink. Default: lastBuild.
    pub build: Option<BuildArg>,
    /// The stage's name as get_pipeline_run shows it (give this or node).
    pub stage: Option<String>,
    /// A flow node id (a stage or a step, as the Pipeline REST API numbers them).
    pub node: Option<String>,
    /// tail (default): the last lines; head: the first lines; range: lines from..to; grep: lines
    /// matching pattern with context.
    pub mode: Option<ViewName>,
    /// How many lines for tail/head (1–2000, default 100).
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
}

/// The most step logs one stage's log is read from (wfapi lists at most 100 steps per stage).
const MAX_STEPS: usize = 100;

impl Op for GetStageLog {
    type Args = StageLogArgs;
    const META: Operation = crate::op!("get_stage_log", Status, Read, Job, destructive: false, idempotent: true, grouped: true,
        routes: ["GET /{job}/{build}/execution/node/{id}/log", "GET /{job}/{build}/wfapi/describe", "GET /{job}/{build}/execution/node/{id}/wfapi/*"],
        cli: "pipeline stage-log", phrase: "read a stage log of",
        "Read the log of one Pipeline stage or step (by stage name or node id) with the log views (tail, head, range, grep); bounded, secrets redacted, without reading the whole console.");

    fn needs(a: &StageLogArgs) -> Vec<Need> {
        vec![Need::primary(&Self::META, Some(&a.job))]
    }

    async fn run(cx: &mut Exec<'_>, a: StageLogArgs) -> Result<Value, GateError> {
        let mode = LogMode::from_view(a.mode, a.lines, a.from, a.to, a.pattern.as_deref(), a.context)?;
        let path = cx.path(0)?;
        let number = resolve_number(cx.client, &path, BuildArg::selector(a.build.as_ref())?).await?;
        let (id, label) = match (&a.node, &a.stage) {
            (Some(id), None) => {
                check_node_id(id)?;
                (id.clone(), format!("node {id}"))
            }
            (None, Some(name)) => {
                let run = cx.client.pipeline_run(&path, number).await?;
                let Some(stage) = run.stages.iter().find(|s| &s.name == name) else {
                    let names: Vec<&str> = run.stages.iter().take(20).map(|s| s.name.as_str()).collect();
                    return Err(GateError::Failed {
                        message: format!(
                            "build #{number} of {path} has no stage named '{name}'; its stages include: {}",
                            names.join(", ")
                        ),
                        status: Some(404),
                    });
                };
                (stage.id.clone(), format!("stage {name}"))
            }
            _ => {
                return Err(super::bad_request(
                    "give exactly one of 'stage' (a stage name) or 'node' (a flow node id)",
                ));
            }
        };
        let node = cx.client.pipeline_node(&path, number, &id).await?;
        // A stage's output is in its steps' logs (in order); a step, or a stage without steps,
        // has its own. Each log is streamed in turn: memory stays bounded.
        let mut ids: Vec<String> =
            node.stage_flow_nodes.unwrap_or_default().into_iter().map(|n| n.id).take(MAX_STEPS).collect();
        if ids.is_empty() {
            ids.push(id.clone());
        }
        let steps = ids.len();
        let client = cx.client.clone();
        let job = path.clone();
        let logs = futures_util::stream::iter(ids)
            .then(move |nid| {
                let (client, job) = (client.clone(), job.clone());
                async move { client.node_log_stream(&job, number, &nid).await }
            })
            .try_flatten()
            .boxed();
        let source = format!("{path} #{number} {label}");
        let mut v = view_of_stream(logs, &mode, cx.sanitizer, &source, "the log of").await?;
        if let Value::Object(m) = &mut v {
            m.insert("job".into(), json!(path.to_string()));
            m.insert("number".into(), json!(number));
            m.insert("node".into(), json!(id));
            m.insert("node_status".into(), json!(node.status));
            m.insert("steps_read".into(), json!(steps));
        }
        Ok(v)
    }
}

/// A flow node id is one URL segment of letters, digits, '-' or '_' (Jenkins numbers them).
fn check_node_id(id: &str) -> Result<(), GateError> {
    if !id.is_empty() && id.len() <= 64 && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        Ok(())
    } else {
        Err(super::bad_request("node must be a flow node id: 1 to 64 letters, digits, '-' or '_'"))
    }
}

pub struct AnswerInput;

#[derive(Debug, Clone, Copy, serde::Deserialize, schemars::JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum InputAction {
    Proceed,
    Abort,
}

/// Arguments of `answer_input`.
#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InputArgs {
    /// The Pipeline job's full name, folders separated by '/'.
    pub job: String,
    /// The number of the waiting build.
    pub build: u64,
    /// The input step's id (get_pipeline_run lists the pending ones).
    pub input_id: String,
    /// proceed (the step's OK button) or abort.
    pub action: InputAction,
    /// Values for the step's parameters, when it asks for any (proceed only).
    pub parameters: Option<std::collections::BTreeMap<String, String>>,
}

impl Op for AnswerInput {
    type Args = InputArgs;
    const META: Operation = crate::op!("answer_input", Build, Write, Job, destructive: false, idempotent: false,
        routes: ["POST /{job}/{build}/input/{input}/proceedEmpty", "POST /{job}/{build}/input/{input}/proceed",
            "POST /{job}/{build}/input/{input}/abort"],
        cli: "pipeline answer", phrase: "answered an input step of",
        "Answer a Pipeline run waiting at an input step: proceed (with the step's parameters, if any) or abort.");

    fn needs(a: &InputArgs) -> Vec<Need> {
        vec![Need::primary(&Self::META, Some(&a.job))]
    }

    fn facts(answer: &Value) -> super::Facts {
        let note = answer
            .get("action")
            .and_then(Value::as_str)
            .map(|a| format!("{a}, input step {}", answer.get("input_id").and_then(Value::as_str).unwrap_or("?")));
        super::Facts { note, ..super::Facts::build_of(answer) }
    }

    async fn run(cx: &mut Exec<'_>, a: InputArgs) -> Result<Value, GateError> {
        check_input_id(&a.input_id)?;
        let proceed = a.action == InputAction::Proceed;
        let params: Vec<(String, String)> = a.parameters.unwrap_or_default().into_iter().collect();
        if !proceed && !params.is_empty() {
            return Err(super::bad_request("parameters go with proceed; abort takes none"));
        }
        cx.client.answer_input(&cx.path(0)?, a.build, &a.input_id, proceed, &params).await?;
        let action = if proceed { "proceeded" } else { "aborted" };
        Ok(json!({ "action": action, "input_id": a.input_id, "number": a.build }))
    }
}

/// An input step's id is one URL segment (Jenkins capitalises the step's `id`).
pub(crate) fn check_input_id(id: &str) -> Result<(), GateError> {
    let ok = !id.is_empty()
        && id.len() <= 200
        && id != "."
        && id != ".."
        && !id.chars().any(|c| c == '/' || c == '\\' || c.is_control());
    if ok {
        Ok(())
    } else {
        Err(super::bad_request("input_id must be the step's id: 1 to 200 characters, no '/', '\\' or controls"))
    }
}
