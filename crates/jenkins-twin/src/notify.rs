//! Notification plugin: POSTs the plugin's JSON payload (jenkins-wire.md §13.1) to each endpoint
//! of a job's `HudsonNotificationProperty` for the phases QUEUED, STARTED, COMPLETED, FINALIZED.

use std::time::Duration;

use serde_json::{Map, Value, json};

use crate::Twin;
use crate::model::{BuildResult, ItemId, TestStatus};

/// Whether an endpoint's `event` filter wants this phase.
fn wants(event: &str, phase: &str, result: Option<BuildResult>) -> bool {
    match event.to_ascii_lowercase().as_str() {
        "" | "all" => true,
        "failed" => phase == "FINALIZED" && result == Some(BuildResult::Failure),
        "manual" => false,
        e => e.eq_ignore_ascii_case(phase),
    }
}

/// Builds the payload for one phase; `None` if the build is gone.
/// An endpoint to post to: URL, format, timeout in ms.
type Target = (String, String, u64);

pub fn payload(twin: &Twin, job: ItemId, number: u64, phase: &str) -> Option<(Value, Vec<Target>)> {
    let st = twin.state.lock().ok()?;
    let item = st.item(job)?;
    let b = item.builds.get(&number)?;
    let endpoints: Vec<Target> = item
        .config
        .notification_endpoints
        .iter()
        .filter(|e| wants(&e.event, phase, b.result))
        .map(|e| (e.url.clone(), e.format.clone(), e.timeout_ms))
        .collect();
    if endpoints.is_empty() {
        return None;
    }
    let job_url = st.item_path(job);
    let build_url = format!("{job_url}{number}/");
    let root = twin.root_url(&st);
    let mut build = Map::new();
    build.insert("full_url".into(), json!(format!("{root}{build_url}")));
    build.insert("number".into(), json!(number));
    build.insert("queue_id".into(), json!(b.queue_id));
    let timestamp = match phase {
        "QUEUED" => b.start_ms - b.queue_ms,
        "STARTED" => b.start_ms,
        "COMPLETED" => b.start_ms + b.duration_ms,
        _ => twin.clock.now_ms(),
    };
    build.insert("timestamp".into(), json!(timestamp));
    build.insert("duration".into(), json!(if b.building { 0 } else { b.duration_ms }));
    build.insert("phase".into(), json!(phase));
    if let (Some(r), false) = (b.result, b.building) {
        build.insert("status".into(), json!(r.as_str()));
    }
    build.insert("url".into(), json!(build_url));
    let mut scm = Map::new();
    if let Some(c) = b.changes.last() {
        scm.insert("url".into(), json!("https://git.example.com/repo.git"));
        scm.insert("branch".into(), json!("origin/main"));
        scm.insert("commit".into(), json!(c.commit_id));
    }
    let changes: Vec<Value> = b.changes.iter().flat_map(|c| c.paths.iter().map(|(_, f)| json!(f))).collect();
    let mut culprits: Vec<String> = b.changes.iter().map(|c| c.author.clone()).collect();
    culprits.dedup();
    scm.insert("changes".into(), json!(changes));
    scm.insert("culprits".into(), json!(culprits));
    build.insert("scm".into(), Value::Object(scm));
    if !b.params.is_empty() {
        let params: Map<String, Value> = b
            .params
            .iter()
            .filter(|p| p.kind != crate::config_xml::ParamKind::Password)
            .map(|p| (p.name.clone(), json!(p.value)))
            .collect();
        build.insert("parameters".into(), Value::Object(params));
    }
    build.insert("log".into(), json!(""));
    if let Some(tests) = &b.tests {
        let failed: Vec<Value> = tests
            .iter()
            .filter(|t| t.status == TestStatus::Failed)
            .map(|t| json!(format!("{}.{}", t.class_name, t.name)))
            .collect();
        let count = |s: TestStatus| tests.iter().filter(|t| t.status == s).count();
        build.insert(
            "test_summary".into(),
            json!({"total": tests.len(), "failed": count(TestStatus::Failed), "passed": count(TestStatus::Passed),
                   "skipped": count(TestStatus::Skipped), "failed_tests": failed}),
        );
    }
    let artifacts: Map<String, Value> =
        b.artifacts.iter().map(|a| (a.clone(), json!({"archive": format!("{root}{build_url}artifact/{a}")}))).collect();
    build.insert("artifacts".into(), Value::Object(artifacts));
    let body = json!({
        "name": item.name,
        "url": job_url,
        "build": Value::Object(build),
    });
    Some((body, endpoints))
}

/// Sends one phase to every interested endpoint. Failures are logged and ignored, as the plugin
/// does with its default of zero retries.
pub async fn send(twin: &Twin, job: ItemId, number: u64, phase: &str) {
    let Some((body, endpoints)) = payload(twin, job, number, phase) else { return };
    for (url, _format, timeout_ms) in endpoints {
        let req = twin
            .http
            .post(&url)
            .header("Content-Type", "application/json;charset=UTF-8")
            .timeout(Duration::from_millis(timeout_ms.clamp(100, 30_000)))
            .body(body.to_string());
        if let Err(e) = req.send().await {
            tracing::warn!(%url, phase, error = %e, "notification endpoint failed");
        }
    }
}
