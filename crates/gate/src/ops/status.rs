//! Reading jobs, builds, test reports, the queue and views (group `status`).

use jenkins::model::{Build, Job};
use jenkins::tree::{Range, Tree};
use jenkins::{BuildSelector, JenkinsClient, JobPath};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{BuildArg, Exec, Need, Op, owner_from_url, resolve_number};
use crate::catalog::Operation;
use crate::error::GateError;

/// The most entries one `list_jobs` page holds.
pub const MAX_PAGE: usize = 500;
/// Entries per page when the agent does not say.
pub const DEFAULT_PAGE: usize = 100;

pub struct ListJobs;

/// Arguments of `list_jobs`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListJobsArgs {
    /// A folder's full name; omit for the root.
    pub folder: Option<String>,
    /// How many folder levels to list (1–10, default 1). Folders deeper than this are listed
    /// with `expanded: false`: list them with `folder` (or a larger depth) to see inside.
    #[schemars(range(min = 1, max = 10))]
    pub depth: Option<u64>,
    /// Only jobs whose full name contains this text (case-insensitive); searches all levels.
    pub filter: Option<String>,
    /// Only jobs in this state: failing, unstable, passing, building, disabled, never_built,
    /// aborted; searches all levels.
    pub status: Option<JobStatus>,
    /// Paging: skip this many entries (the previous page's `next_offset`).
    pub offset: Option<u64>,
    /// Paging: at most this many entries (1–500, default 100).
    #[schemars(range(min = 1, max = 500))]
    pub limit: Option<u64>,
}

#[derive(Debug, Clone, Copy, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    Failing,
    Unstable,
    Passing,
    Building,
    Disabled,
    NeverBuilt,
    Aborted,
}

impl JobStatus {
    fn matches(self, color: &str) -> bool {
        let base = color.trim_end_matches("_anime");
        match self {
            JobStatus::Failing => base == "red",
            JobStatus::Unstable => base == "yellow",
            JobStatus::Passing => base == "blue",
            JobStatus::Building => color.ends_with("_anime"),
            JobStatus::Disabled => base == "disabled",
            JobStatus::NeverBuilt => base == "notbuilt",
            JobStatus::Aborted => base == "aborted",
        }
    }
}

impl Op for ListJobs {
    type Args = ListJobsArgs;
    const META: Operation = crate::op!("list_jobs", Status, Read, Folder, destructive: false, idempotent: true,
        routes: ["GET /api/json?tree=jobs[...]", "GET /{folder}/api/json?tree=jobs[...]"],
        cli: "jobs list", phrase: "listed the jobs in",
        "List jobs and folders at the root or in a folder as one flat, paged list (full name, kind, status color); filter by name or status to search all levels.");

    fn needs(a: &ListJobsArgs) -> Vec<Need> {
        vec![Need::primary(&Self::META, a.folder.as_deref())]
    }

    async fn run(cx: &mut Exec<'_>, a: ListJobsArgs) -> Result<Value, GateError> {
        let folder = cx.folder()?;
        let searching = a.filter.is_some() || a.status.is_some();
        let depth = if searching { 10 } else { a.depth.unwrap_or(1).clamp(1, 10) as usize };
        // One tree= request lists the whole hierarchy (no request per job). A folder that does not
        // exist answers like one the agent may not see: empty.
        let items = match cx.client.list_items(folder.as_ref(), depth).await {
            Ok(items) => items,
            Err(jenkins::Error::NotFound { .. }) => Vec::new(),
            Err(e) => return Err(e.into()),
        };
        let mut entries = Vec::new();
        flatten(cx, &items, folder.as_ref().map(ToString::to_string).as_deref(), 1, depth, &mut entries);
        let filter = a.filter.as_deref().map(java_fold::fold_key);
        let matching: Vec<Value> = entries
            .into_iter()
            .filter(|e| {
                if !searching {
                    return true;
                }
                let is_job = e["kind"] != "folder";
                let name = java_fold::fold_key(e["name"].as_str().unwrap_or(""));
                let color = e["color"].as_str().unwrap_or("");
                is_job
                    && filter.as_deref().is_none_or(|f| name.contains(f))
                    && a.status.is_none_or(|s| s.matches(color))
            })
            .collect();
        let offset = a.offset.unwrap_or(0) as usize;
        let limit = a.limit.unwrap_or(DEFAULT_PAGE as u64).clamp(1, MAX_PAGE as u64) as usize;
        let total = matching.len();
        let page: Vec<Value> = matching.into_iter().skip(offset).take(limit).collect();
        let next = (offset + page.len() < total).then_some(offset + page.len());
        Ok(json!({ "jobs": page, "total": total, "offset": offset, "next_offset": next }))
    }
}

/// Depth-first, each entry filtered through the policy. A folder the agent may not see is still
/// walked: a grant can reach below it (its visible children are listed, the folder is not).
fn flatten(
    cx: &Exec<'_>,
    items: &[jenkins::model::ItemRef],
    parent: Option<&str>,
    level: usize,
    depth: usize,
    out: &mut Vec<Value>,
) {
    for i in items {
        let name = match parent {
            Some(p) => format!("{p}/{}", i.name),
            None => i.name.clone(),
        };
        let folder = i.is_folder();
        if cx.may_see(&name) {
            let mut e = json!({ "name": name, "kind": if folder { "folder".to_string() } else { kind_of(&i.class) } });
            if let Some(c) = &i.color {
                e["color"] = json!(c);
            }
            if folder {
                let expanded = level < depth;
                e["expanded"] = json!(expanded);
                if !expanded {
                    // A folder listed without its contents reads as empty: say how to see inside.
                    e["hint"] = json!(format!(
                        "not expanded at this depth: call list_jobs with folder={} (or a larger depth) to list it",
                        json!(name)
                    ));
                }
            }
            out.push(e);
        }
        if folder && let Some(children) = &i.jobs {
            flatten(cx, children, Some(&name), level + 1, depth, out);
        }
    }
}

fn kind_of(class: &str) -> String {
    class.rsplit(['.', '$']).next().unwrap_or("").to_string()
}

pub struct GetJob;

/// Arguments of operations that name a job only.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JobArgs {
    /// The job's full name, folders separated by '/', e.g. team/api-server, or shop/feature%2Fx
    /// for a multibranch branch.
    pub job: String,
}

impl Op for GetJob {
    type Args = JobArgs;
    const META: Operation = crate::op!("get_job", Status, Read, Job, destructive: false, idempotent: true,
        routes: ["GET /{job}/api/json", "GET /{folder}/view/{view}/api/json", "GET /{folder}/view/{view}/config.xml"], cli: "job show", phrase: "read job",
        "Show a job: health, last builds (last success / failure), recent history, parameter definitions, queue state. For a folder: the items in it that you may see.");

    fn needs(a: &JobArgs) -> Vec<Need> {
        vec![Need::primary(&Self::META, Some(&a.job))]
    }

    async fn run(cx: &mut Exec<'_>, _a: JobArgs) -> Result<Value, GateError> {
        let path = cx.path(0)?;
        job_summary(cx, &path).await
    }
}

/// Everything a job summary shows, in one `tree=` request (the job, its last builds' numbers,
/// its parameters, the 10 newest builds; a folder's children).
fn summary_tree() -> Tree {
    let number = || Tree::new().field("number");
    let mut t = Tree::new()
        .fields(&["_class", "fullName", "description", "color", "buildable", "disabled", "inQueue", "nextBuildNumber"])
        .nested("queueItem", Tree::new().field("why"))
        .nested("healthReport", Tree::new().fields(&["score", "description"]))
        .nested(
            "property",
            Tree::new().nested(
                "parameterDefinitions",
                Tree::new()
                    .fields(&["name", "type", "choices", "description"])
                    .nested("defaultParameterValue", Tree::new().field("value")),
            ),
        )
        .nested("jobs", Tree::new().fields(&["_class", "name", "url", "color"]))
        .nested_range(
            "builds",
            Tree::new().fields(&["number", "result", "duration", "timestamp", "building"]),
            Range::first(10),
        );
    for permalink in ["lastBuild", "lastSuccessfulBuild", "lastFailedBuild", "lastCompletedBuild"] {
        t = t.nested(permalink, number());
    }
    t
}

/// One of the job's recent builds as Jenkins sent it (a member it left out is null).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RecentBuild {
    number: Value,
    result: Value,
    duration: Value,
    timestamp: Value,
    building: Value,
}

/// A job: health, last builds, recent history with a success rate, parameters, queue state.
async fn job_summary(cx: &Exec<'_>, job: &JobPath) -> Result<Value, GateError> {
    static SUMMARY: std::sync::LazyLock<Tree> = std::sync::LazyLock::new(summary_tree);
    // Read in one pass from Jenkins' bytes, each recent build with the members the tree names.
    let j: Job<RecentBuild> = cx.client.job_tree_as(job, &SUMMARY).await?;
    if j.is_folder() {
        // The children pass the same policy as list_jobs: an `off` carve-out hides them here too.
        let items: Vec<Value> = j
            .jobs
            .unwrap_or_default()
            .iter()
            .filter(|i| cx.may_see(&format!("{job}/{}", i.name)))
            .map(|i| json!({"name": format!("{job}/{}", i.name), "color": i.color, "folder": i.is_folder()}))
            .collect();
        return Ok(json!({ "name": job.to_string(), "kind": "folder", "description": j.description, "items": items }));
    }
    let builds = &j.builds;
    let finished: Vec<&RecentBuild> = builds.iter().filter(|b| b.building == Value::Bool(false)).collect();
    let ok = finished.iter().filter(|b| b.result.as_str() == Some("SUCCESS")).count();
    let rate =
        if finished.is_empty() { Value::Null } else { json!(((ok * 100) as f64 / finished.len() as f64).round()) };
    let durations: Vec<i64> = finished.iter().filter_map(|b| b.duration.as_i64()).collect();
    let usual =
        if durations.is_empty() { Value::Null } else { json!(durations.iter().sum::<i64>() / durations.len() as i64) };
    let params = j.parameters();
    Ok(json!({
        "name": job.to_string(),
        "kind": kind_of(&j.class),
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
        "recent_builds": builds.iter().map(|b| json!({"number": b.number, "result": b.result, "duration_ms": b.duration, "timestamp": b.timestamp, "building": b.building})).collect::<Vec<_>>(),
        "success_rate_percent_last_10": rate,
        "usual_duration_ms": usual,
        "parameters": params.iter().map(|p| json!({"name": p.name, "type": p.kind, "default": p.default, "choices": p.choices, "description": p.description})).collect::<Vec<_>>(),
    }))
}

pub struct GetBuild;

/// Arguments of operations that name a job and a build.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BuildArgs {
    /// The job's full name, folders separated by '/', e.g. team/api-server.
    pub job: String,
    /// A build number, or lastBuild, lastCompletedBuild, lastSuccessfulBuild, lastStableBuild,
    /// lastFailedBuild, lastUnstableBuild, lastUnsuccessfulBuild. Default: lastBuild.
    pub build: Option<BuildArg>,
}

impl Op for GetBuild {
    type Args = BuildArgs;
    const META: Operation = crate::op!("get_build", Status, Read, Job, destructive: false, idempotent: true,
        routes: ["GET /{job}/{build}/api/json", "GET /{job}/{build}/injectedEnvVars/api/json"], cli: "build show", phrase: "read a build of",
        "Show one build (a number or lastBuild, lastSuccessfulBuild, lastFailedBuild, ...): result, duration, causes, parameters, changes, test summary.");

    fn needs(a: &BuildArgs) -> Vec<Need> {
        vec![Need::primary(&Self::META, Some(&a.job))]
    }

    async fn run(cx: &mut Exec<'_>, a: BuildArgs) -> Result<Value, GateError> {
        let path = cx.path(0)?;
        build_detail(cx.client, &path, BuildArg::selector(a.build.as_ref())?).await
    }
}

pub(super) fn changes_of(b: &Build) -> Vec<Value> {
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
        .take(50)
        .map(|i| {
            json!({
                "commit": i.get("commitId").or_else(|| i.get("id")),
                "author": i.get("author").and_then(|a| a.get("fullName")),
                "message": i.get("msg").or_else(|| i.get("comment")),
                "paths": i.get("affectedPaths").and_then(Value::as_array).map(|p| p.iter().take(20).cloned().collect::<Vec<_>>()),
            })
        })
        .collect()
}

/// Counts and the first `limit` failing tests with their (shortened) errors.
pub(super) async fn failing_tests(
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
async fn build_detail(client: &JenkinsClient, job: &JobPath, sel: BuildSelector) -> Result<Value, GateError> {
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
        "artifacts": b.artifacts.iter().take(200).map(|a| a.relative_path.clone()).collect::<Vec<_>>(),
        "artifact_count": b.artifacts.len(),
    }))
}

pub struct GetTestReport;

impl Op for GetTestReport {
    type Args = BuildArgs;
    const META: Operation = crate::op!("get_test_report", Status, Read, Job, destructive: false, idempotent: true,
        routes: ["GET /{job}/{build}/testReport/api/json"], cli: "build tests", phrase: "read the test report of",
        "Show a build's test results: counts and the failing tests with their errors.");

    fn needs(a: &BuildArgs) -> Vec<Need> {
        vec![Need::primary(&Self::META, Some(&a.job))]
    }

    async fn run(cx: &mut Exec<'_>, a: BuildArgs) -> Result<Value, GateError> {
        let path = cx.path(0)?;
        let number = resolve_number(cx.client, &path, BuildArg::selector(a.build.as_ref())?).await?;
        Ok(json!({ "number": number, "report": failing_tests(cx.client, &path, number, 100).await? }))
    }
}

pub struct GetQueue;

/// Arguments of `get_queue`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct QueueArgs {
    /// An item counts as stuck when it waited this many times the job's usual duration (default 3).
    pub stuck_factor: Option<f64>,
}

impl Op for GetQueue {
    type Args = QueueArgs;
    const META: Operation = crate::op!("get_queue", Status, Read, Controller, destructive: false, idempotent: true, grouped: true,
        routes: ["GET /queue/api/json", "GET /queue/item/{id}/api/json"], cli: "queue list", phrase: "read the build queue of",
        "List queued builds and why each waits.");

    fn needs(_: &QueueArgs) -> Vec<Need> {
        vec![Need::primary(&Self::META, None)]
    }

    async fn run(cx: &mut Exec<'_>, a: QueueArgs) -> Result<Value, GateError> {
        let factor = a.stuck_factor.unwrap_or(3.0).max(1.0);
        let items = cx.client.queue().await?;
        let now = crate::store::now_ms();
        let base = cx.client.base_url().as_url().clone();
        let mut out = Vec::new();
        for q in items.into_iter().take(1000) {
            // The owner is known only from Jenkins' answer (`task.url`); an item whose owner
            // cannot be established is not shown.
            let Some(full) = q.task.as_ref().and_then(|t| owner_from_url(&base, &t.url)) else { continue };
            if !cx.may_see(&full) {
                continue;
            }
            let waited = (now - q.in_queue_since).max(0);
            let usual = match JobPath::parse(&full) {
                Ok(jp) => cx
                    .client
                    .job_tree(&jp, &Tree::new().nested("lastSuccessfulBuild", Tree::new().field("duration")))
                    .await
                    .ok()
                    .and_then(|v| v.get("lastSuccessfulBuild").and_then(|b| b.get("duration")).and_then(Value::as_i64)),
                Err(_) => None,
            };
            let why = q.why.clone().unwrap_or_default();
            let offline = why.contains("offline") || why.contains("no nodes with the label");
            let too_long = usual.is_some_and(|u| u > 0 && waited as f64 > factor * u as f64);
            let stuck = q.stuck || offline || too_long;
            let reason = if q.stuck || offline {
                Some(format!("Jenkins cannot place it: {why}"))
            } else if too_long {
                Some(format!(
                    "waiting {} s, more than {factor}× the job's usual {} s",
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
}

pub struct ListViews;

/// No arguments.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NoArgs {}

impl Op for ListViews {
    type Args = NoArgs;
    const META: Operation = crate::op!("list_views", Status, Read, Controller, destructive: false, idempotent: true, grouped: true,
        routes: ["GET /api/json?tree=views[...]", "GET /view/{view}/api/json", "GET /view/{view}/config.xml"], cli: "views list", phrase: "listed the views of",
        "List the views' names.");

    fn needs(_: &NoArgs) -> Vec<Need> {
        vec![Need::primary(&Self::META, None)]
    }

    async fn run(cx: &mut Exec<'_>, _: NoArgs) -> Result<Value, GateError> {
        let views = cx.client.views().await?;
        Ok(json!({ "views": views.iter().take(1000).map(|v| v.name.clone()).collect::<Vec<_>>() }))
    }
}
