//! Pipeline Stage View REST API (`wfapi`, pipeline-stage-view-plugin `rest-api`; jenkins-wire.md
//! §12). Jackson JSON: no `_class`, field declaration order, nulls omitted.

use serde_json::{Map, Value, json};

use crate::model::{Build, BuildResult, FlowNode, Item, State};

/// Runs listed by `wfapi/runs` (JobExt.MAX_RUNS_PER_JOB_DEFAULT).
pub const MAX_RUNS: usize = 10;
/// `FlowNodeLogExt.maxReturnChars`.
const MAX_LOG_CHARS: u64 = 10 * 1024;

fn link(href: String) -> Value {
    json!({ "href": href })
}

/// Root-relative URL of an item (`/job/a/job/b/`), as `ModelUtil.getFullItemUrl` gives it.
pub fn job_href(st: &State, job: usize) -> String {
    format!("/{}", st.item_path(job))
}

pub fn run_status(b: &Build) -> &'static str {
    if b.building {
        if b.pending_input.is_some() { "PAUSED_PENDING_INPUT" } else { "IN_PROGRESS" }
    } else {
        match b.result {
            Some(BuildResult::Success) => "SUCCESS",
            Some(BuildResult::Unstable) => "UNSTABLE",
            Some(BuildResult::Failure) => "FAILED",
            Some(BuildResult::Aborted) => "ABORTED",
            Some(BuildResult::NotBuilt) | None => "NOT_EXECUTED",
        }
    }
}

fn node_json(href_base: &str, n: &FlowNode, nodes: &[FlowNode], full: bool, now: i64) -> Value {
    let mut links = Map::new();
    links.insert("self".into(), link(format!("{href_base}execution/node/{}/wfapi/describe", n.id)));
    if !n.is_stage {
        links.insert("log".into(), link(format!("{href_base}execution/node/{}/wfapi/log", n.id)));
        links.insert("console".into(), link(format!("{href_base}execution/node/{}/log", n.id)));
    }
    let mut o = Map::new();
    o.insert("_links".into(), Value::Object(links));
    o.insert("id".into(), json!(n.id.to_string()));
    o.insert("name".into(), json!(n.name));
    o.insert("execNode".into(), json!(""));
    o.insert("status".into(), json!(n.status));
    if let Some((message, ty)) = &n.error {
        o.insert("error".into(), json!({ "message": message, "type": ty }));
    }
    if !n.is_stage && !n.description.is_empty() {
        o.insert("parameterDescription".into(), json!(n.description));
    }
    o.insert("startTimeMillis".into(), json!(n.start_ms));
    let duration =
        if n.status == "IN_PROGRESS" || n.status == "PAUSED_PENDING_INPUT" { now - n.start_ms } else { n.duration_ms };
    o.insert("durationMillis".into(), json!(duration.max(0)));
    o.insert("pauseDurationMillis".into(), json!(n.pause_ms));
    if n.is_stage && full {
        let children: Vec<Value> = nodes
            .iter()
            .filter(|c| c.parent == Some(n.id) && !c.is_stage)
            .take(100)
            .map(|c| node_json(href_base, c, nodes, false, now))
            .collect();
        o.insert("stageFlowNodes".into(), Value::Array(children));
    }
    if !n.is_stage {
        o.insert("parentNodes".into(), json!(n.parent.map(|p| vec![p.to_string()]).unwrap_or_default()));
    }
    Value::Object(o)
}

/// A RunExt: `_links, id, name, status, startTimeMillis, endTimeMillis, durationMillis,
/// queueDurationMillis, pauseDurationMillis, stages`.
pub fn run(st: &State, job: usize, b: &Build, full_stages: bool, now: i64) -> Value {
    let href = format!("{}{}/", job_href(st, job), b.number);
    let mut links = Map::new();
    links.insert("self".into(), link(format!("{href}wfapi/describe")));
    if !b.changes.is_empty() {
        links.insert("changesets".into(), link(format!("{href}wfapi/changesets")));
    }
    if b.pending_input.is_some() {
        links.insert("pendingInputActions".into(), link(format!("{href}wfapi/pendingInputActions")));
        links.insert("nextPendingInputAction".into(), link(format!("{href}wfapi/nextPendingInputAction")));
    }
    if !b.artifacts.is_empty() {
        links.insert("artifacts".into(), link(format!("{href}wfapi/artifacts")));
    }
    let end = if b.building { now } else { b.start_ms + b.duration_ms };
    let pause: i64 = b.flow_nodes.iter().filter(|n| n.is_stage && n.parent.is_none()).map(|n| n.pause_ms).sum();
    let stages: Vec<Value> = b
        .flow_nodes
        .iter()
        .filter(|n| n.is_stage && n.parent.is_none())
        .map(|n| node_json(&href, n, &b.flow_nodes, full_stages, now))
        .collect();
    let mut o = Map::new();
    o.insert("_links".into(), Value::Object(links));
    o.insert("id".into(), json!(b.number.to_string()));
    o.insert("name".into(), json!(format!("#{}", b.number)));
    o.insert("status".into(), json!(run_status(b)));
    o.insert("startTimeMillis".into(), json!(b.start_ms));
    o.insert("endTimeMillis".into(), json!(end));
    o.insert("durationMillis".into(), json!((end - b.start_ms).max(0)));
    o.insert("queueDurationMillis".into(), json!(b.queue_ms));
    o.insert("pauseDurationMillis".into(), json!(pause));
    o.insert("stages".into(), Value::Array(stages));
    Value::Object(o)
}

/// `wfapi/runs[?since=#N][&fullStages=true]`: newest first, at most ten.
pub fn runs(st: &State, job: usize, item: &Item, since: Option<&str>, full: bool, now: i64) -> Value {
    let mut out = Vec::new();
    for b in item.builds.values().rev().take(MAX_RUNS) {
        out.push(run(st, job, b, full, now));
        if since.is_some_and(|s| s == format!("#{}", b.number)) {
            break;
        }
    }
    Value::Array(out)
}

/// `/job/X/wfapi/describe`.
pub fn job_describe(st: &State, job: usize, item: &Item) -> Value {
    let href = job_href(st, job);
    json!({
        "_links": { "self": { "href": format!("{href}wfapi/describe") }, "runs": { "href": format!("{href}wfapi/runs") } },
        "name": item.name,
        "runCount": item.builds.len().min(MAX_RUNS),
    })
}

/// `/execution/node/ID/wfapi/describe`.
pub fn node_describe(st: &State, job: usize, b: &Build, id: u64, now: i64) -> Option<Value> {
    let n = b.flow_nodes.iter().find(|n| n.id == id)?;
    let href = format!("{}{}/", job_href(st, job), b.number);
    Some(node_json(&href, n, &b.flow_nodes, true, now))
}

/// `/execution/node/ID/wfapi/log`: the HTML-escaped last ≤ 10 KiB of the node's output.
pub fn node_log(st: &State, job: usize, b: &Build, id: u64) -> Option<Value> {
    let n = b.flow_nodes.iter().find(|n| n.id == id)?;
    let end = n.log_end.unwrap_or_else(|| b.log.len());
    let len = end.saturating_sub(n.log_start);
    let start = end.saturating_sub(MAX_LOG_CHARS).max(n.log_start);
    let bytes = b.log.read_at(start, (end - start) as usize);
    let mut text = String::new();
    crate::export::xml_escape(&mut text, &String::from_utf8_lossy(&bytes));
    let text = text.replace("&apos;", "&#39;");
    Some(json!({
        "nodeId": n.id.to_string(),
        "nodeStatus": n.status,
        "length": len,
        "hasMore": len > MAX_LOG_CHARS,
        "text": text,
        "consoleUrl": format!("{}{}/execution/node/{}/log", job_href(st, job), b.number, n.id),
    }))
}

/// `wfapi/pendingInputActions`.
pub fn pending_inputs(st: &State, job: usize, b: &Build) -> Value {
    let base = format!("{}{}/input/", job_href(st, job), b.number);
    match &b.pending_input {
        None => json!([]),
        Some(i) => json!([{
            "id": i.id,
            "proceedText": i.ok,
            "message": i.message,
            "inputs": [],
            "proceedUrl": format!("{base}{}/proceedEmpty", i.id),
            "abortUrl": format!("{base}{}/abort", i.id),
            "redirectApprovalUrl": base,
        }]),
    }
}

/// `wfapi/artifacts`.
pub fn artifacts(st: &State, job: usize, b: &Build) -> Value {
    let base = format!("{}{}/artifact/", job_href(st, job), b.number);
    Value::Array(
        b.artifacts
            .iter()
            .enumerate()
            .map(|(i, a)| {
                json!({"id": format!("n{}", i + 1), "name": a.rsplit('/').next().unwrap_or(a), "path": a, "url": format!("{base}{a}"), "size": b.artifact_content.get(a).map_or(0, Vec::len)})
            })
            .collect(),
    )
}

/// `wfapi/changesets`.
pub fn changesets(b: &Build) -> Value {
    if b.changes.is_empty() {
        return json!([]);
    }
    let commits: Vec<Value> = b
        .changes
        .iter()
        .map(|c| {
            json!({"commitId": c.commit_id, "commitUrl": null, "message": c.message, "authorJenkinsId": c.author.to_lowercase(),
                   "timestamp": c.timestamp_ms, "consoleUrl": null})
        })
        .collect();
    json!([{ "kind": "git", "commitCount": commits.len(), "commits": commits }])
}
