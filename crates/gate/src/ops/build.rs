//! Triggering, stopping and cancelling builds (group `build`).
//!
//! Targets that only Jenkins can name are verified from Jenkins' own answer: a queue item is
//! cancelled only when its `task.url` resolves (under the controller's base URL) to the job the
//! policy allowed; an item whose owner cannot be established is refused.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use jenkins::{Pause, Poll};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Exec, Facts, Need, Op, owner_from_url, same_item};
use crate::catalog::Operation;
use crate::error::GateError;
use crate::events::Event;
use crate::writes::KeyState;

/// Per-process state of builds. Identical triggers (controller, job, parameters) are
/// serialised through the store's trigger slots, and idempotency keys live there too (see
/// [`crate::writes`]): Jenkins would merge a second identical trigger into the first while it
/// waits in the queue, and two callers would believe they each started a build.
#[derive(Default)]
pub struct TriggerSlots {
    /// The gate's build event bus, which waits listen to (kept here, with the other per-process
    /// state of builds, so the call path hands it to operations as it is).
    pub events: crate::events::Bus,
}

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
    /// File parameters by name (sent as multipart, as Jenkins' own form sends them). A grant's
    /// constraint on a parameter applies to a file's content as to any value.
    pub files: Option<BTreeMap<String, FileArg>>,
}

/// A file parameter's file.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileArg {
    /// The file's name (Jenkins shows it as the parameter's value).
    pub file_name: String,
    /// The file's content, base64-encoded.
    pub content_base64: String,
}

/// The largest total of file parameters a trigger sends.
pub const MAX_FILE_BYTES: usize = 1024 * 1024;

impl TriggerArgs {
    /// The files, decoded; refused when one is not base64 or all of them are over the limit.
    fn file_parts(&self) -> Result<Vec<jenkins::FilePart>, GateError> {
        use base64::Engine as _;
        let mut out = Vec::new();
        let mut total = 0usize;
        for (name, f) in self.files.iter().flatten() {
            let content = base64::engine::general_purpose::STANDARD
                .decode(f.content_base64.as_bytes())
                .map_err(|e| super::bad_request(format!("file parameter {name}: content_base64 is not base64: {e}")))?;
            total += content.len();
            if total > MAX_FILE_BYTES {
                return Err(super::bad_request(format!(
                    "file parameters are over jgate's limit of {} KiB in all",
                    MAX_FILE_BYTES / 1024
                )));
            }
            if f.file_name.chars().any(char::is_control) || f.file_name.len() > 255 {
                return Err(super::bad_request(format!("file parameter {name}: file_name must be a plain file name")));
            }
            out.push(jenkins::FilePart { name: name.clone(), file_name: f.file_name.clone(), content });
        }
        Ok(out)
    }
}

impl Op for TriggerBuild {
    type Args = TriggerArgs;
    const META: Operation = crate::op!("trigger_build", Build, Write, Job, destructive: false, idempotent: false,
        routes: ["POST /{job}/build", "POST /{job}/buildWithParameters"], cli: "build trigger", phrase: "triggered a build of",
        "Trigger a build, with parameters if the job takes them; returns the queue item and the exact build number.");

    fn needs(a: &TriggerArgs) -> Vec<Need> {
        vec![Need::primary(&Self::META, Some(&a.job))]
    }

    /// Every value the trigger carries, files included (a file's content read as text: a value
    /// sent as a file is checked like one sent as a field, so constraints cannot be bypassed).
    fn params(a: &TriggerArgs) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> =
            a.parameters.iter().flatten().map(|(k, v)| (k.clone(), v.text())).collect();
        for (name, f) in a.files.iter().flatten() {
            use base64::Engine as _;
            // Undecodable content is refused by `run`; for the policy it is checked as sent.
            let content = base64::engine::general_purpose::STANDARD
                .decode(f.content_base64.as_bytes())
                .map(|c| String::from_utf8_lossy(&c).into_owned())
                .unwrap_or_else(|_| f.content_base64.clone());
            out.push((name.clone(), content));
        }
        out
    }

    /// Every outcome names the queue item (and the build, as `build_number`).
    fn facts(answer: &Value) -> Facts {
        let queued = queue_of(answer).map(|q| format!("queued as item {q}"));
        let how = if answer.get("merged") == Some(&Value::Bool(true)) {
            Some("merged by Jenkins into an identical build already queued")
        } else if answer.get("replayed") == Some(&Value::Bool(true)) {
            Some("replayed the first result of the same idempotency key; no new build")
        } else {
            None
        };
        let note = match (queued, how) {
            (Some(q), Some(h)) => Some(format!("{q}; {h}")),
            (q, h) => q.or(h.map(str::to_string)),
        };
        Facts { note, ..Facts::build_of(answer) }
    }

    async fn run(cx: &mut Exec<'_>, a: TriggerArgs) -> Result<Value, GateError> {
        let jp = cx.path(0)?;
        let files = a.file_parts()?;
        let params: Vec<(String, String)> = a.parameters.iter().flatten().map(|(k, v)| (k.clone(), v.text())).collect();
        // Identical for Jenkins means identical after Java's name folding.
        let mut sorted = params.clone();
        // Files count by name, file name and size (two triggers differing only in a file's
        // bytes of equal size are serialised, which is harmless).
        sorted.extend(
            files.iter().map(|f| (f.name.clone(), format!("file {} ({} bytes)", f.file_name, f.content.len()))),
        );
        sorted.sort();
        let fingerprint = format!("{}\u{1}{}\u{1}{sorted:?}", cx.controller, java_fold::fold_key(&jp.to_string()));
        let wait = a.wait.unwrap_or(Wait::Start);
        let Some(key) = a.idempotency_key.as_deref() else {
            return trigger(cx, &jp, &params, &files, wait, &fingerprint, false).await;
        };
        if key.is_empty() || key.len() > 200 {
            return Err(GateError::Invalid("idempotency_key must be 1 to 200 bytes long".into()));
        }
        // The trigger's identity is reserved in the store before Jenkins is called: one call per
        // key (in any process or replica) triggers; the others wait for it and get its answer.
        loop {
            let store = cx.store;
            if store.reserve_key(cx.agent, cx.controller, key, &fingerprint, cx.request_id).await? {
                return trigger(cx, &jp, &params, &files, wait, &fingerprint, true).await;
            }
            let Some(row) = store.idempotency_key(cx.agent, cx.controller, key).await? else {
                continue; // expired or removed between the two statements: try again
            };
            if row.fingerprint != fingerprint {
                return Err(GateError::Invalid(format!(
                    "idempotency key '{key}' was already used for another trigger (a different job or parameters); use a new key for a new trigger"
                )));
            }
            match row.state {
                KeyState::Reserved | KeyState::Accepted => {
                    // The first call is still at work: wait for its answer (bounded by the
                    // call's deadline).
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                KeyState::Done => {
                    let mut v: Value =
                        row.answer.as_deref().and_then(|t| serde_json::from_str(t).ok()).unwrap_or_else(|| json!({}));
                    v["replayed"] = json!(true);
                    v["note"] = json!("same idempotency key: this is the first call's build; no new build was started");
                    return Ok(v);
                }
                KeyState::Failed => {
                    // The first call provably started nothing: this one may.
                    if store.retake_key(cx.agent, cx.controller, key, cx.request_id).await? {
                        return trigger(cx, &jp, &params, &files, wait, &fingerprint, true).await;
                    }
                }
                KeyState::Broken => {
                    let why = row.answer.unwrap_or_default();
                    return Err(match row.queue_id {
                        Some(q) => GateError::Accepted {
                            queue_id: q,
                            started: row.build_number,
                            cause: format!("the first call with this idempotency key failed after that: {why}"),
                        },
                        None => {
                            GateError::Invalid(format!("the first call with idempotency key '{key}' failed: {why}"))
                        }
                    });
                }
                KeyState::Unknown => {
                    return Err(GateError::MaybeStarted(format!(
                        "the first call with idempotency key '{key}' was interrupted before Jenkins answered"
                    )));
                }
            }
        }
    }
}

/// Triggers `job` (need 0 of the calling operation) with `parameters`, through everything
/// `trigger_build` does: idempotency key, serialised identical triggers, wait modes, recorded
/// queue item. For operations that trigger on the agent's behalf (`rebuild`).
pub(crate) async fn trigger_as_build(
    cx: &mut Exec<'_>,
    job: String,
    parameters: BTreeMap<String, String>,
    wait: Option<Wait>,
    idempotency_key: Option<String>,
) -> Result<Value, GateError> {
    let parameters = (!parameters.is_empty())
        .then(|| parameters.into_iter().map(|(k, v)| (k, ParamValue::Text(v))).collect::<BTreeMap<_, _>>());
    let args = TriggerArgs { job, parameters, wait, idempotency_key, files: None };
    <TriggerBuild as Op>::run(cx, args).await
}

/// How a failed trigger request is to be read: did Jenkins provably not receive it (and may it
/// be sent again), did it receive and refuse it, or is its fate unknown?
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Received {
    /// Never reached Jenkins (connection refused, connect timeout, name lookup) or refused with
    /// 503 (starting up, quiet-down, a proxy's "unavailable"): safe to send again.
    NoRetryable,
    /// Jenkins answered and did not schedule anything (4xx, no queue item).
    NoFinal,
    /// The request may have been processed (the connection broke after sending, a timeout
    /// waiting for the answer, a 5xx other than 503, a 502/504 from a proxy).
    Maybe,
}

pub(crate) fn received(e: &jenkins::Error) -> Received {
    use jenkins::Error as E;
    match e {
        E::Connect { detail, .. } if detail.to_ascii_lowercase().contains("connection refused") => {
            Received::NoRetryable
        }
        E::Timeout { during, .. } if *during == "connecting" => Received::NoRetryable,
        E::Unavailable { .. } => Received::NoRetryable,
        E::Dns { .. } | E::Refused(_) | E::InvalidUrl { .. } | E::InvalidJobPath { .. } | E::Tls { .. } => {
            Received::NoFinal
        }
        E::Unauthorized { .. }
        | E::Forbidden { .. }
        | E::Crumb
        | E::NotFound { .. }
        | E::BadRequest { .. }
        | E::Conflict { .. }
        | E::PluginMissing { .. }
        | E::Protocol { .. } => Received::NoFinal,
        _ => Received::Maybe,
    }
}

/// Attempts of a trigger that Jenkins provably did not receive.
const TRIGGER_ATTEMPTS: u32 = 4;
/// How often a trigger waiting for an identical one looks again (its slot, then its queue item).
const SLOT_RETRY: Duration = Duration::from_millis(200);

async fn trigger(
    cx: &mut Exec<'_>,
    jp: &jenkins::JobPath,
    params: &[(String, String)],
    files: &[jenkins::FilePart],
    wait: Wait,
    fingerprint: &str,
    keyed: bool,
) -> Result<Value, GateError> {
    let result = trigger_and_wait(cx, jp, params, files, wait, fingerprint).await;
    if keyed {
        let (state, queue_id, build, answer, error) = match &result {
            Ok(v) => (KeyState::Done, queue_of(v), build_of(v), Some(v), None),
            Err(GateError::Accepted { queue_id, started, .. }) => {
                (KeyState::Broken, Some(*queue_id), *started, None, Some(result_text(&result)))
            }
            Err(GateError::MaybeStarted(_)) => (KeyState::Unknown, None, None, None, Some(result_text(&result))),
            Err(_) => (KeyState::Failed, None, None, None, Some(result_text(&result))),
        };
        if let Err(e) = cx.store.update_key(cx.request_id, state, queue_id, build, answer, error.as_deref()).await {
            tracing::error!(error = %e, "could not record a trigger's result under its idempotency key");
        }
    }
    result
}

fn result_text(r: &Result<Value, GateError>) -> String {
    match r {
        Ok(_) => String::new(),
        Err(e) => e.to_string(),
    }
}

fn queue_of(v: &Value) -> Option<u64> {
    v.get("queue_id").and_then(Value::as_u64)
}

fn build_of(v: &Value) -> Option<u64> {
    v.get("build").and_then(|b| b.get("number")).and_then(Value::as_u64)
}

async fn trigger_and_wait(
    cx: &mut Exec<'_>,
    jp: &jenkins::JobPath,
    params: &[(String, String)],
    files: &[jenkins::FilePart],
    wait: Wait,
    fingerprint: &str,
) -> Result<Value, GateError> {
    let client = cx.client;
    // The job's definition (to check the parameters) is a read: through a restart it is retried
    // like the trigger itself.
    let mut attempt = 0;
    let job_info = loop {
        attempt += 1;
        match client.job(jp).await {
            Ok(j) => break j,
            Err(e) if e.is_transient() && attempt < TRIGGER_ATTEMPTS => {
                tokio::time::sleep(Duration::from_millis(500 * u64::from(attempt))).await;
            }
            Err(e) => return Err(GateError::not_started(&e)),
        }
    };
    // Parameters Jenkins would refuse (none taken, an unknown choice) are refused here, as a
    // malformed request (400), before anything is sent.
    validate_parameters(&job_info, params)
        .map_err(|e| GateError::NotStarted { message: e.to_string(), status: Some(400) })?;
    // Identical triggers queue one after another, in every process and replica on the store:
    // each takes the trigger's slot and waits until the previous one's queue item has left the
    // queue, so Jenkins never merges them into one build.
    let deadline = Instant::now() + Duration::from_secs(600);
    let previous = loop {
        if let Some(previous) = cx.store.take_trigger_slot(fingerprint, cx.request_id).await? {
            break previous;
        }
        if Instant::now() >= deadline {
            return Err(GateError::NotStarted {
                message: "an identical trigger (same job and parameters) has been waiting in the queue for 10 \
                          minutes; try again when it has left the queue"
                    .into(),
                status: None,
            });
        }
        tokio::time::sleep(SLOT_RETRY).await;
    };
    // Subscribed before the trigger is sent, so no event of its build can pass unseen.
    let watch = Arc::new(BuildWatch::new(cx.controller, jp));
    let mut events = EventPause::new(&cx.triggers.events, watch.clone());
    let sent = async {
        if let Some(prev) = previous {
            while Instant::now() < deadline {
                match client.queue_item(prev).await {
                    Ok(item) if !item.is_left() => tokio::time::sleep(SLOT_RETRY).await,
                    _ => break,
                }
            }
        }
        let mut attempt = 0;
        loop {
            attempt += 1;
            match client.trigger_with_files(jp, params, files).await {
                Ok(accepted) => return Ok(accepted),
                Err(e) => match received(&e) {
                    Received::NoRetryable if attempt < TRIGGER_ATTEMPTS => {
                        cx.report(0.0, None, format!("Jenkins did not take the trigger ({e}); trying again"));
                        tokio::time::sleep(Duration::from_millis(500 * u64::from(attempt))).await;
                    }
                    Received::NoRetryable | Received::NoFinal => return Err(GateError::not_started(&e)),
                    Received::Maybe => return Err(GateError::MaybeStarted(e.to_string())),
                },
            }
        }
    }
    .await;
    // Released with the new queue item; a slot left held (the store failed here, or this call
    // was dropped) is free again once this write is closed.
    let made = sent.as_ref().ok().map(|(queue_id, _)| *queue_id);
    if let Err(e) = cx.store.release_trigger_slot(fingerprint, cx.request_id, made).await {
        tracing::warn!(error = %e, "could not release a trigger slot");
    }
    let (queue_id, merged) = sent?;
    // Accepted: recorded before anything else can fail. From here every answer carries the
    // queue item (and the build once known).
    let accepted = |cause: String, started: Option<u64>| GateError::Accepted { queue_id, started, cause };
    if let Err(e) = cx.store.update_pending(cx.request_id, Some(queue_id), None).await {
        return Err(accepted(format!("jgate could not record that in its store ({e})"), None));
    }
    let _ = cx.store.update_key(cx.request_id, KeyState::Accepted, Some(queue_id), None, None, None).await;
    cx.report(1.0, None, format!("queued as item {queue_id}"));
    if wait == Wait::None && !merged {
        return Ok(json!({ "queue_id": queue_id }));
    }
    // The wire client's wait rides out Jenkins restarts and dropped connections; a build event of
    // this queue item wakes it at once.
    watch.queue_id.store(queue_id, Ordering::Relaxed);
    let number = client
        .wait_for_build_with(
            jp,
            queue_id,
            Duration::from_secs(600),
            Duration::from_millis(250),
            WAIT_COALESCE,
            &mut events,
        )
        .await
        .map_err(|e| accepted(format!("waiting for it to start failed: {e}"), None))?
        .number;
    let _ = cx.store.update_pending(cx.request_id, None, Some(number)).await;
    if merged {
        // Another client queued the same build first; Jenkins merged this trigger into it.
        return Ok(json!({ "queue_id": queue_id, "merged": true, "build": { "number": number },
            "note": "Jenkins merged this trigger into an identical build already waiting in the queue; no separate build was started" }));
    }
    cx.report(2.0, None, format!("build #{number} started"));
    if wait == Wait::Start {
        return Ok(json!({ "queue_id": queue_id, "build": { "number": number } }));
    }
    watch.number.store(number, Ordering::Relaxed);
    let finished = follow(cx, jp, number, &mut events, Duration::from_secs(3600), 2.0)
        .await
        .map_err(|e| accepted(format!("waiting for its result failed: {e}"), Some(number)))?;
    match finished {
        Some(info) => Ok(
            json!({ "queue_id": queue_id, "build": { "number": number, "result": info.result, "duration_ms": info.duration } }),
        ),
        None => Err(accepted("it is still running after an hour; follow it with get_build".into(), Some(number))),
    }
}

/// Follows build `number` until it finishes (its final JSON) or `limit` passes (`None`),
/// reporting progress from `tick`. Polls coalesced with every other waiter on the build; wakes
/// on the build's events, and once they are seen to flow, relies on them and polls only as a
/// fallback ([`EVENT_FALLBACK_POLL`]). Transient failures (a restart) do not end the wait.
pub(crate) async fn follow(
    cx: &mut Exec<'_>,
    jp: &jenkins::JobPath,
    number: u64,
    events: &mut EventPause,
    limit: Duration,
    mut tick: f64,
) -> Result<Option<jenkins::model::Build>, jenkins::Error> {
    let client = cx.client;
    let started = Instant::now();
    let mut pause = Duration::from_millis(500);
    let mut read = Poll { within: WAIT_COALESCE, not_before: None };
    events.for_end = true;
    loop {
        let info = match client.build_polled(jp, number, read).await {
            Ok(info) => info,
            // Jenkins restarting or a dropped connection: the build is still there; keep waiting.
            Err(e) if e.is_transient() && started.elapsed() < limit => {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(5));
                continue;
            }
            Err(e) => return Err(e),
        };
        if !info.building {
            cx.report(
                tick + 1.0,
                Some(tick + 1.0),
                format!("build #{number} finished: {}", info.result.clone().unwrap_or_default()),
            );
            return Ok(Some(info));
        }
        let left = limit.saturating_sub(started.elapsed());
        if left.is_zero() {
            return Ok(None);
        }
        tick += 1.0;
        let est = if info.estimated_duration > 0 {
            format!(" (usually takes {} s)", info.estimated_duration / 1000)
        } else {
            String::new()
        };
        cx.report(tick, None, format!("build #{number} running for {} s{est}", started.elapsed().as_secs()));
        // Poll less often the longer the build runs, never slower than every 5 s; a build Jenkins
        // expects to run much longer is polled at the slowest pace at once. When the build's
        // events arrive, its end will too: polling is only the fallback for a lost one.
        let expected_left = Duration::from_millis(u64::try_from(info.estimated_duration).unwrap_or(0))
            .saturating_sub(started.elapsed());
        let next = if events.seen {
            EVENT_FALLBACK_POLL
        } else if expected_left > Duration::from_secs(20) {
            Duration::from_secs(5)
        } else {
            pause
        };
        read.not_before = events.pause(next.min(left)).await;
        pause = (pause + Duration::from_millis(250)).min(Duration::from_secs(5));
    }
}

pub struct WaitForBuild;

/// Arguments of `wait_for_build`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WaitArgs {
    /// The job's full name, folders separated by '/'.
    pub job: String,
    /// The build number (from trigger_build or get_job).
    pub build: u64,
    /// How long to wait at most, in seconds (1 to 110; default 60). A build still running then is
    /// answered with finished: false: call again.
    pub timeout_s: Option<u64>,
}

/// The longest one `wait_for_build` call waits (under the call path's read deadline).
pub const MAX_WAIT_SECS: u64 = 110;

impl Op for WaitForBuild {
    type Args = WaitArgs;
    const META: Operation = crate::op!("wait_for_build", Status, Read, Job, destructive: false, idempotent: true,
        routes: [], cli: "build wait", phrase: "read the outcome of a build of",
        "Wait until a running build finishes (up to timeout_s, reporting progress); returns its result. Woken by the controller's build events when it sends them; many agents waiting on one build share one poll of Jenkins.");

    fn needs(a: &WaitArgs) -> Vec<Need> {
        vec![Need::primary(&Self::META, Some(&a.job))]
    }

    fn facts(answer: &Value) -> Facts {
        Facts::build_of(answer)
    }

    async fn run(cx: &mut Exec<'_>, a: WaitArgs) -> Result<Value, GateError> {
        let jp = cx.path(0)?;
        let secs = a.timeout_s.unwrap_or(60);
        if !(1..=MAX_WAIT_SECS).contains(&secs) || a.build == 0 {
            return Err(GateError::Invalid(format!(
                "timeout_s must be 1 to {MAX_WAIT_SECS} and build a build number (1 or more)"
            )));
        }
        let watch = Arc::new(BuildWatch::new(cx.controller, &jp));
        watch.number.store(a.build, Ordering::Relaxed);
        let mut events = EventPause::new(&cx.triggers.events, watch);
        let finished = follow(cx, &jp, a.build, &mut events, Duration::from_secs(secs), 0.0).await?;
        Ok(match finished {
            Some(info) => json!({ "finished": true,
                "build": { "number": a.build, "result": info.result, "duration_ms": info.duration } }),
            None => json!({ "finished": false, "build": { "number": a.build, "building": true },
                "note": format!("still running after {secs} s; call wait_for_build again") }),
        })
    }
}

/// How often a wait that receives its build's events still polls (a lost event costs at most this).
pub const EVENT_FALLBACK_POLL: Duration = Duration::from_secs(15);

/// What a wait listens for: the events of one build, known by its queue item and then its number
/// (0: not known yet).
pub(crate) struct BuildWatch {
    controller: String,
    job: String,
    pub(crate) queue_id: AtomicU64,
    pub(crate) number: AtomicU64,
}

impl BuildWatch {
    pub(crate) fn new(controller: &str, jp: &jenkins::JobPath) -> Self {
        BuildWatch {
            controller: controller.to_string(),
            job: jp.to_string(),
            queue_id: AtomicU64::new(0),
            number: AtomicU64::new(0),
        }
    }

    fn wants(&self, e: &Event) -> bool {
        let (q, n) = (self.queue_id.load(Ordering::Relaxed), self.number.load(Ordering::Relaxed));
        if e.controller != self.controller || !crate::ops::same_item(&e.job, &self.job) {
            return false;
        }
        (n != 0 && e.number == n) || (q != 0 && e.queue_id == Some(q))
    }
}

/// How long a wait's read of a running build or queue item is shared with every other waiter on
/// it: at most one upstream request per resource per second, however many agents wait.
pub const WAIT_COALESCE: Duration = Duration::from_secs(1);

/// A wait's pause that ends early on an event of the build it watches (events are hints: the
/// wait then reads Jenkins, a read begun after the event).
pub(crate) struct EventPause {
    rx: tokio::sync::broadcast::Receiver<Arc<Event>>,
    watch: Arc<BuildWatch>,
    /// An event of the build arrived: the controller sends them for this job.
    seen: bool,
    /// When the last pause ended (ms; the wait's read began then): events received before it
    /// are already reflected in that read.
    read_ms: i64,
    /// Waiting for the build's end: only COMPLETED and FINALIZED wake the wait (QUEUED and
    /// STARTED, which may arrive late, tell only that events flow).
    for_end: bool,
}

impl EventPause {
    /// Subscribes now, before the wait's first read, so no event is missed between the two.
    pub(crate) fn new(bus: &crate::events::Bus, watch: Arc<BuildWatch>) -> Self {
        EventPause { rx: bus.subscribe(), watch, seen: false, read_ms: 0, for_end: false }
    }

    /// Whether an event of the build calls for a read now.
    fn wakes(&self, e: &Event) -> bool {
        !self.for_end || matches!(e.phase, crate::events::Phase::Completed | crate::events::Phase::Finalized)
    }

    /// Takes the events waiting in the receiver: whether one calls for a new read (an event of
    /// the build newer than the last read, or lost events).
    fn drain(&mut self) -> bool {
        use tokio::sync::broadcast::error::TryRecvError;
        let mut news = false;
        loop {
            match self.rx.try_recv() {
                Ok(e) if self.watch.wants(&e) => {
                    self.seen = true;
                    news |= e.time_ms >= self.read_ms && self.wakes(&e);
                }
                Ok(_) => {}
                Err(TryRecvError::Lagged(_)) => news = true,
                Err(TryRecvError::Empty | TryRecvError::Closed) => return news,
            }
        }
    }
}

impl Pause for EventPause {
    fn pause(&mut self, d: Duration) -> futures_util::future::BoxFuture<'_, Option<std::time::Instant>> {
        Box::pin(async move {
            // A burst (QUEUED and STARTED come together) or events the last read already saw
            // make one read, not one each.
            let woke = if self.drain() {
                true
            } else {
                let (watch, for_end) = (self.watch.clone(), self.for_end);
                let flowing = std::sync::atomic::AtomicBool::new(false);
                let woke = crate::events::pause_or_event(&mut self.rx, d, |e| {
                    if !watch.wants(e) {
                        return false;
                    }
                    flowing.store(true, Ordering::Relaxed);
                    !for_end || matches!(e.phase, crate::events::Phase::Completed | crate::events::Phase::Finalized)
                })
                .await;
                self.seen |= flowing.load(Ordering::Relaxed);
                match woke {
                    crate::events::Woke::Event => {
                        self.seen = true;
                        self.drain();
                        true
                    }
                    crate::events::Woke::Missed => true,
                    crate::events::Woke::Time => false,
                }
            };
            self.read_ms = crate::store::now_ms();
            woke.then(std::time::Instant::now)
        })
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

pub struct WipeWorkspace;

impl Op for WipeWorkspace {
    type Args = super::status::JobArgs;
    const META: Operation = crate::op!("wipe_workspace", Build, Write, Job, destructive: true, idempotent: true,
        routes: ["POST /{job}/doWipeOutWorkspace"], cli: "build wipe-workspace", phrase: "wiped the workspace of",
        "Delete a job's workspace on the agents, so the next build starts from a clean checkout.");

    fn needs(a: &super::status::JobArgs) -> Vec<Need> {
        vec![Need::primary(&Self::META, Some(&a.job))]
    }

    async fn run(cx: &mut Exec<'_>, _a: super::status::JobArgs) -> Result<Value, GateError> {
        cx.client.wipe_workspace(&cx.path(0)?).await?;
        Ok(json!({ "wiped": true }))
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
