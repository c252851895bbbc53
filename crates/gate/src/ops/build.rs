//! Triggering, stopping and cancelling builds (group `build`).
//!
//! Targets that only Jenkins can name are verified from Jenkins' own answer: a queue item is
//! cancelled only when its `task.url` resolves (under the controller's base URL) to the job the
//! policy allowed; an item whose owner cannot be established is refused.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use jenkins::BuildSelector;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Exec, Facts, Need, Op, owner_from_url, same_item};
use crate::catalog::Operation;
use crate::error::GateError;

/// How long a trigger's idempotency key is remembered.
const IDEMPOTENCY_TTL: Duration = Duration::from_secs(24 * 3600);

/// Per-process trigger state: serialising slots for identical triggers, and idempotency keys.
#[derive(Default)]
pub struct TriggerSlots {
    /// Identical triggers (controller, job, parameters) are serialised: Jenkins would merge a
    /// second one into the first while it waits in the queue, and two callers would believe they
    /// each started a build. Holds the last such trigger's queue item.
    slots: tokio::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<Option<u64>>>>>,
    /// (agent, controller, key) → (when, the trigger it was used for, the first result). Per
    /// process: replicas behind a load balancer should route an agent's retries to one replica.
    idempotency: tokio::sync::Mutex<HashMap<IdempotencyKey, (Instant, String, Value)>>,
}

/// (agent, controller, key).
type IdempotencyKey = (String, String, String);

pub struct TriggerBuild;

/// A parameter value as JSON allows it; sent to Jenkins as text.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum ParamValue {
    Text(String),
    Number(serde_json::Number),
    Flag(bool),
}

impl ParamValue {
    fn text(&self) -> String {
        match self {
            ParamValue::Text(s) => s.clone(),
            ParamValue::Number(n) => n.to_string(),
            ParamValue::Flag(b) => b.to_string(),
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Wait {
    None,
    Start,
    Finish,
}

/// Arguments of `trigger_build`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TriggerArgs {
    /// The job's full name, folders separated by '/', e.g. release/deploy.
    pub job: String,
    /// Build parameters by name (only for parameterized jobs).
    pub parameters: Option<BTreeMap<String, ParamValue>>,
    /// none: return the queue item; start (default): wait until the exact build number is known;
    /// finish: wait for the result (progress is reported).
    pub wait: Option<Wait>,
    /// Optional: a retried call with the same key returns the first call's build instead of
    /// starting another.
    pub idempotency_key: Option<String>,
}

impl Op for TriggerBuild {
    type Args = TriggerArgs;
    const META: Operation = crate::op!("trigger_build", Build, Write, Job, destructive: false, idempotent: false,
        routes: ["POST /{job}/build", "POST /{job}/buildWithParameters"], cli: "build trigger", phrase: "triggered a build of",
        "Trigger a build, with parameters if the job takes them; returns the queue item and the exact build number.");

    fn needs(a: &TriggerArgs) -> Vec<Need> {
        vec![Need::primary(&Self::META, Some(&a.job))]
    }

    fn params(a: &TriggerArgs) -> Vec<(String, String)> {
        a.parameters.iter().flatten().map(|(k, v)| (k.clone(), v.text())).collect()
    }

    fn facts(answer: &Value) -> Facts {
        let note = if answer.get("merged") == Some(&Value::Bool(true)) {
            Some("merged by Jenkins into an identical build already queued")
        } else if answer.get("replayed") == Some(&Value::Bool(true)) {
            Some("replayed the first result of the same idempotency key; no new build")
        } else {
            None
        };
        Facts { note, ..Facts::build_of(answer) }
    }

    async fn run(cx: &mut Exec<'_>, a: TriggerArgs) -> Result<Value, GateError> {
        let jp = cx.path(0)?;
        let params = Self::params(&a);
        // Identical for Jenkins means identical after Java's name folding.
        let fingerprint = format!("{}\u{1}{params:?}", java_fold::fold_key(&jp.to_string()));
        let idem = a.idempotency_key.as_ref().map(|k| (cx.agent.to_string(), cx.controller.to_string(), k.clone()));
        if let Some(k) = &idem {
            let mut cache = cx.triggers.idempotency.lock().await;
            cache.retain(|_, (at, _, _)| at.elapsed() < IDEMPOTENCY_TTL);
            if let Some((_, used_for, first)) = cache.get(k) {
                if *used_for != fingerprint {
                    return Err(GateError::Invalid(format!(
                        "idempotency key '{}' was already used for another trigger (a different job or parameters); use a new key for a new trigger",
                        k.2
                    )));
                }
                let mut v = first.clone();
                v["replayed"] = json!(true);
                v["note"] = json!("same idempotency key: this is the first call's build; no new build was started");
                return Ok(v);
            }
        }
        let result = trigger(cx, &jp, &params, a.wait.unwrap_or(Wait::Start), &fingerprint).await?;
        if let Some(k) = idem {
            cx.triggers.idempotency.lock().await.insert(k, (Instant::now(), fingerprint, result.clone()));
        }
        Ok(result)
    }
}

async fn trigger(
    cx: &mut Exec<'_>,
    jp: &jenkins::JobPath,
    params: &[(String, String)],
    wait: Wait,
    fingerprint: &str,
) -> Result<Value, GateError> {
    let client = cx.client;
    let job_info = client.job(jp).await?;
    validate_parameters(&job_info, params)?;
    // Identical triggers queue one after another: each waits until the previous one's queue
    // item has left the queue, so Jenkins never merges them into one build.
    let slot_key = format!("{}\u{1}{fingerprint}", cx.controller);
    let slot = cx.triggers.slots.lock().await.entry(slot_key).or_default().clone();
    let mut guard = slot.lock().await;
    if let Some(prev) = *guard {
        let deadline = Instant::now() + Duration::from_secs(600);
        while Instant::now() < deadline {
            match client.queue_item(prev).await {
                Ok(item) if !item.is_left() => tokio::time::sleep(Duration::from_millis(200)).await,
                _ => break,
            }
        }
    }
    let (queue_id, merged) = client.trigger_detailed(jp, params).await?;
    *guard = Some(queue_id);
    drop(guard);
    if merged {
        // Another client queued the same build first; Jenkins merged this trigger into it.
        let b = client.wait_for_build(jp, queue_id, Duration::from_secs(600), Duration::from_millis(500)).await?;
        return Ok(json!({ "queue_id": queue_id, "merged": true, "build": { "number": b.number },
            "note": "Jenkins merged this trigger into an identical build already waiting in the queue; no separate build was started" }));
    }
    cx.report(1.0, None, format!("queued as item {queue_id}"));
    if wait == Wait::None {
        return Ok(json!({ "queue_id": queue_id }));
    }
    let b = client.wait_for_build(jp, queue_id, Duration::from_secs(600), Duration::from_millis(500)).await?;
    cx.report(2.0, None, format!("build #{} started", b.number));
    if wait == Wait::Start {
        return Ok(json!({ "queue_id": queue_id, "build": { "number": b.number } }));
    }
    let started = Instant::now();
    let mut tick = 2.0;
    loop {
        let info = client.build(jp, BuildSelector::Number(b.number)).await?;
        if !info.building {
            cx.report(
                tick + 1.0,
                Some(tick + 1.0),
                format!("build #{} finished: {}", b.number, info.result.clone().unwrap_or_default()),
            );
            return Ok(
                json!({ "queue_id": queue_id, "build": { "number": b.number, "result": info.result, "duration_ms": info.duration } }),
            );
        }
        if started.elapsed() > Duration::from_secs(3600) {
            return Err(GateError::Invalid(format!(
                "build #{} is still running after an hour; follow it with get_build",
                b.number
            )));
        }
        tick += 1.0;
        let est = if info.estimated_duration > 0 {
            format!(" (usually takes {} s)", info.estimated_duration / 1000)
        } else {
            String::new()
        };
        cx.report(tick, None, format!("build #{} running for {} s{est}", b.number, started.elapsed().as_secs()));
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Checks trigger parameters against the job's definitions before Jenkins sees them.
fn validate_parameters(job: &jenkins::model::Job, params: &[(String, String)]) -> Result<(), GateError> {
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

pub struct StopBuild;

/// Arguments of `stop_build`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StopArgs {
    /// The job's full name, folders separated by '/'.
    pub job: String,
    /// The number of the running build to stop.
    pub build: u64,
}

impl Op for StopBuild {
    type Args = StopArgs;
    const META: Operation = crate::op!("stop_build", Build, Write, Job, destructive: true, idempotent: true,
        routes: ["POST /{job}/{build}/stop", "POST /{job}/{build}/term", "POST /{job}/{build}/kill"], cli: "build stop",
        phrase: "stopped a build of", "Stop (abort) a running build.");

    fn needs(a: &StopArgs) -> Vec<Need> {
        vec![Need::primary(&Self::META, Some(&a.job))]
    }

    async fn run(cx: &mut Exec<'_>, a: StopArgs) -> Result<Value, GateError> {
        // The build is addressed under the canonical job: Jenkins cannot resolve it elsewhere.
        cx.client.stop_build(&cx.path(0)?, a.build).await?;
        Ok(json!({ "stopped": a.build, "build": { "number": a.build } }))
    }
}

pub struct CancelQueueItem;

/// Arguments of `cancel_queue_item`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelArgs {
    /// The job the queued build belongs to (its full name).
    pub job: String,
    /// The queue item id (from trigger_build or get_queue).
    pub queue_id: u64,
}

impl Op for CancelQueueItem {
    type Args = CancelArgs;
    const META: Operation = crate::op!("cancel_queue_item", Build, Write, Job, destructive: true, idempotent: true,
        routes: ["POST /queue/cancelItem?id={id}"], cli: "queue cancel", phrase: "cancelled a queued build of",
        "Cancel a build of a job that is still waiting in the queue.");

    fn needs(a: &CancelArgs) -> Vec<Need> {
        vec![Need::primary(&Self::META, Some(&a.job))]
    }

    async fn run(cx: &mut Exec<'_>, a: CancelArgs) -> Result<Value, GateError> {
        let job = cx.path(0)?.to_string();
        let id = a.queue_id;
        // One answer for "no such item", "someone else's item" and "owner unknown": the agent
        // learns nothing about items it may not touch.
        let not_yours = || GateError::Invalid(format!("queue item {id} is not a queued build of {job}"));
        let item = match cx.client.queue_item(id).await {
            Ok(item) => item,
            Err(jenkins::Error::NotFound { .. }) => return Err(not_yours()),
            Err(e) => return Err(e.into()),
        };
        let base = cx.client.base_url().as_url().clone();
        let owner = item.task.as_ref().and_then(|t| owner_from_url(&base, &t.url));
        match owner {
            Some(o) if same_item(&o, &job) => {}
            _ => return Err(not_yours()),
        }
        if item.is_left() {
            return Err(GateError::Invalid(format!(
                "queue item {id} already left the queue (it was cancelled or became a build); stop the build with stop_build instead"
            )));
        }
        cx.client.cancel_queue_item(id).await?;
        Ok(json!({ "cancelled": id }))
    }
}
