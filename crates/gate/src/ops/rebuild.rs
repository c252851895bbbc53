//! Rebuild (trigger a job again with a build's parameters) and replay (a Pipeline build run
//! again with a modified script; group `build`).
//!
//! A rebuild goes through `trigger_build`'s own path (build.rs); the parameters it sends are
//! read from Jenkins, so the grant's parameter constraints are checked on them here, after they
//! are read and before anything is sent, with the same rule `trigger_build`'s are checked with.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use jenkins::tree::Tree;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};

use super::build::{BuildWatch, EventPause, Received, TriggerBuild, Wait, follow, received, trigger_as_build};
use super::{BuildArg, Exec, Facts, Need, Op, owner_from_url, same_item};
use crate::catalog::{Access, Group, Operation, Target};
use crate::error::GateError;

pub struct Rebuild;

/// Arguments of `rebuild`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RebuildArgs {
    /// The job's full name, folders separated by '/'.
    pub job: String,
    /// The build whose parameters are used: a number or a permalink. Default: lastBuild.
    pub build: Option<BuildArg>,
    /// none: return the queue item; start (default): wait until the exact build number is known;
    /// finish: wait for the result.
    pub wait: Option<Wait>,
    /// Optional: a retried call with the same key returns the first call's build instead of
    /// starting another.
    pub idempotency_key: Option<String>,
}

impl Op for Rebuild {
    type Args = RebuildArgs;
    const META: Operation = crate::op!("rebuild", Build, Write, Job, destructive: false, idempotent: false,
        routes: ["GET /{job}/{build}/api/json?tree=actions[parameters[...]]", "POST /{job}/buildWithParameters", "POST /{job}/build"],
        cli: "build rebuild", phrase: "triggered a rebuild of",
        "Trigger a job again with the parameters of one of its builds (default: the last); the grant's parameter constraints apply to them.");

    fn needs(a: &RebuildArgs) -> Vec<Need> {
        vec![Need::primary(&Self::META, Some(&a.job))]
    }

    fn facts(answer: &Value) -> Facts {
        <TriggerBuild as Op>::facts(answer)
    }

    async fn run(cx: &mut Exec<'_>, a: RebuildArgs) -> Result<Value, GateError> {
        let path = cx.path(0)?;
        let b = cx.client.build(&path, BuildArg::selector(a.build.as_ref())?).await?;
        let mut params = BTreeMap::new();
        for (name, value) in b.parameters() {
            let text = match value {
                Some(Value::String(s)) => s,
                Some(Value::Bool(x)) => x.to_string(),
                Some(Value::Number(n)) => n.to_string(),
                // Password and file parameters are not given back by Jenkins: a rebuild would
                // silently send the job's defaults instead.
                _ => {
                    return Err(super::bad_request(format!(
                        "parameter {name} of build #{} cannot be read back from Jenkins (a password or file parameter); use trigger_build with explicit values",
                        b.number
                    )));
                }
            };
            params.insert(name, text);
        }
        // The grant's constraints on parameters, checked on the values read from Jenkins exactly
        // as a trigger_build with them would be.
        let pairs: Vec<(String, String)> = params.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        let job = path.to_string();
        let decision = crate::policy::decide(
            cx.grants,
            &crate::policy::Request {
                agent: cx.agent,
                controller: cx.controller,
                op: &<TriggerBuild as Op>::META,
                job: Some(&job),
                params: &pairs,
            },
        );
        if !decision.allowed {
            // Refused as the policy refuses (403), after the read that found the values.
            return Err(GateError::Failed {
                message: format!("denied: the parameters of build #{} are not allowed: {}", b.number, decision.reason),
                status: Some(403),
            });
        }
        let mut v = trigger_as_build(cx, job, params, a.wait, a.idempotency_key).await?;
        if let Value::Object(m) = &mut v {
            m.insert("rebuilt_from".into(), serde_json::json!(b.number));
            m.insert("parameters".into(), serde_json::json!(pairs.iter().map(|(k, _)| k).collect::<Vec<_>>()));
        }
        Ok(v)
    }
}

pub struct Replay;

/// Arguments of `replay`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplayArgs {
    /// The Pipeline job's full name, folders separated by '/'.
    pub job: String,
    /// The number of the Pipeline build to replay (its parameters are reused).
    pub build: u64,
    /// The replacement Pipeline script (the whole main script, at most 256 KiB). Scripts the run
    /// loaded with `load` keep their originals.
    pub script: String,
    /// none: answer once Jenkins accepted the replay (with the new run if already visible);
    /// start (default): wait until the replayed build's number is known; finish: wait for its
    /// result.
    pub wait: Option<Wait>,
}

/// The largest replacement script `replay` sends (a Jenkinsfile is rarely over a few dozen KiB).
pub const MAX_REPLAY_SCRIPT_BYTES: usize = 256 * 1024;

/// How long a replay's new run is looked for in the queue and the builds before the answer says
/// how to find it instead.
const FIND_LIMIT: Duration = Duration::from_secs(120);

/// Replay (workflow-cps' `ReplayAction`, `POST <build>/replay/run`; docs/twin.md).
///
/// Jenkins' answer is a redirect to the job: it names no queue item. The new run is found from
/// Jenkins' own data: a queue item of the job, or a build numbered at least the
/// `nextBuildNumber` read before the POST, whose causes hold the ReplayCause of this build; only
/// a unique match is reported as the replayed build. The POST is sent once and never retried:
/// after Jenkins accepted it, every error says so ("do not replay again blindly").
///
/// No `idempotency_key`: the store's key records resolve a retried key to the queue item its
/// first call created, and a replay's answer names none; a key could not be resolved as
/// faithfully as a trigger's, so none is offered rather than one that half works.
///
/// The script never reaches the audit (its length and a SHA-256 prefix do: `SUMMARIZED`), a
/// log, or an error; an approval request shows it whole, for the approver to read.
impl Op for Replay {
    type Args = ReplayArgs;
    const META: Operation = crate::op!("replay", Build, Write, Job, destructive: false, idempotent: false,
        routes: ["GET /{job}/api/json?tree=nextBuildNumber", "GET /{job}/{build}/api/json", "POST /{job}/{build}/replay/run"],
        cli: "pipeline replay", phrase: "triggered a replay of",
        "Replay a Pipeline build with a modified main script (Jenkins' Replay): a new run of the job with the build's parameters and the given script (at most 256 KiB). Needs build and config full use on the job. Returns the replayed build when it can be identified (wait: none, start, finish). Takes no idempotency_key (Jenkins names no queue item for a replay): never resend one that failed after Jenkins accepted it.");
    const SUMMARIZED: &'static [&'static str] = &["script"];

    /// Replay runs modified Pipeline code: it needs config full use as well as build full use.
    fn needs(a: &ReplayArgs) -> Vec<Need> {
        vec![
            Need::primary(&Self::META, Some(&a.job)),
            Need {
                group: Group::Config,
                access: Access::Write,
                target: Target::Job,
                path: Some(a.job.clone()),
                role: "job",
            },
        ]
    }

    fn facts(answer: &Value) -> Facts {
        let from = answer.get("replayed_from").and_then(Value::as_u64);
        let mut facts = Facts::build_of(answer);
        let found = match (facts.build_number, answer.get("queued").and_then(|q| q.get("id")).and_then(Value::as_u64)) {
            (Some(_), _) => None,
            (None, Some(q)) => Some(format!("; queued as item {q}")),
            (None, None) => Some("; the new run was not identified".to_string()),
        };
        facts.note = from.map(|n| format!("replay of #{n}{}", found.unwrap_or_default()));
        facts
    }

    async fn run(cx: &mut Exec<'_>, a: ReplayArgs) -> Result<Value, GateError> {
        let jp = cx.path(0)?;
        let original = a.build;
        if original == 0 {
            return Err(GateError::Invalid("build must be a build number (1 or more)".into()));
        }
        if a.script.len() > MAX_REPLAY_SCRIPT_BYTES {
            return Err(GateError::Invalid(format!(
                "the script is {} bytes; replay sends at most {} KiB: shorten it (move shared code to a library) or change the Jenkinsfile and use rebuild",
                a.script.len(),
                MAX_REPLAY_SCRIPT_BYTES / 1024
            )));
        }
        if a.script.trim().is_empty() {
            return Err(GateError::Invalid("the script is empty: send the whole replacement Pipeline script".into()));
        }
        let wait = a.wait.unwrap_or(Wait::Start);
        // Before anything is sent: the job's next number (the new run is numbered at least
        // that) and the build, which must be a Pipeline run.
        let job = cx.client.job_tree(&jp, &Tree::new().fields(&["_class", "nextBuildNumber"])).await?;
        // Without it an older replay of the same build could pass for the new one: refused.
        let Some(next_before) = job.get("nextBuildNumber").and_then(Value::as_u64) else {
            return Err(GateError::NotStarted {
                message: format!(
                    "Jenkins did not report the next build number of {jp}, which replay needs to tell the new run from older replays; check that {jp} is a Pipeline job"
                ),
                status: None,
            });
        };
        let b = cx.client.build(&jp, jenkins::BuildSelector::Number(original)).await?;
        if b.class != PIPELINE_RUN {
            return Err(GateError::NotStarted {
                message: format!(
                    "build #{original} of {jp} is not a Pipeline run ({}): only Pipeline builds can be replayed; use rebuild to run it again",
                    if b.class.is_empty() { "no class named" } else { b.class.as_str() }
                ),
                status: Some(400),
            });
        }
        cx.report(0.0, None, format!("replaying #{original} ({} bytes of script)", a.script.len()));
        // Subscribed before the POST, so no event of the new run passes unseen.
        let watch = Arc::new(BuildWatch::new(cx.controller, &jp));
        let mut events = EventPause::new(&cx.triggers.events, watch.clone());
        // Sent once: a replay is not idempotent, and its answer carries nothing to recognise a
        // duplicate by.
        if let Err(e) = cx.client.replay(&jp, original, &a.script).await {
            return Err(match (received(&e), &e) {
                (_, jenkins::Error::Protocol { .. }) | (Received::Maybe, _) => GateError::MaybeStarted(format!(
                    "the replay of #{original} was sent and its answer is unclear ({e}); look for a build whose cause is \"Replayed #{original}\" before replaying again"
                )),
                (Received::NoRetryable | Received::NoFinal, _) => GateError::not_started(&e),
            });
        }
        let accepted = |cause: String, started: Option<u64>| GateError::ReplayAccepted { original, started, cause };
        cx.report(1.0, None, format!("Jenkins accepted the replay of #{original}"));
        let deadline = Instant::now() + if wait == Wait::None { Duration::ZERO } else { FIND_LIMIT };
        let found = find_replayed(cx, &jp, original, next_before, deadline)
            .await
            .map_err(|e| accepted(format!("looking for the new run failed: {e}"), None))?;
        let mut answer = json!({ "replayed_from": original, "accepted": true });
        let number = match found {
            Found::Build(n) => n,
            Found::Queued(q) => {
                let _ = cx.store.update_pending(cx.request_id, Some(q), None).await;
                answer["queued"] = json!({ "id": q });
                if wait == Wait::None {
                    return Ok(answer);
                }
                // From the queue item on, the mapping to the build is Jenkins' own (exact).
                watch.queue_id.store(q, Ordering::Relaxed);
                cx.client
                    .wait_for_build_with(
                        &jp,
                        q,
                        Duration::from_secs(600),
                        Duration::from_millis(250),
                        super::build::WAIT_COALESCE,
                        &mut events,
                    )
                    .await
                    .map_err(|e| accepted(format!("waiting for queue item {q} to start failed: {e}"), None))?
                    .number
            }
            Found::Ambiguous(n) => {
                answer["note"] = json!(format!(
                    "Jenkins accepted the replay, but {n} new runs of {jp} are replays of #{original} (another replay of it waits in the queue or was requested at the same time), so jgate cannot tell which is this one: list the job's builds (get_job) and look for the cause \"Replayed #{original}\""
                ));
                return Ok(answer);
            }
            Found::Nothing => {
                answer["note"] = json!(format!(
                    "Jenkins accepted the replay; its new run was not visible yet (Jenkins names no queue item for a replay): list the job's builds (get_job) and look for the cause \"Replayed #{original}\", numbered {next_before} or more"
                ));
                return Ok(answer);
            }
        };
        let _ = cx.store.update_pending(cx.request_id, None, Some(number)).await;
        answer["build"] = json!({ "number": number });
        cx.report(2.0, None, format!("replayed as build #{number}"));
        if wait != Wait::Finish {
            return Ok(answer);
        }
        watch.number.store(number, Ordering::Relaxed);
        let finished = follow(cx, &jp, number, &mut events, Duration::from_secs(3600), 2.0)
            .await
            .map_err(|e| accepted(format!("waiting for its result failed: {e}"), Some(number)))?;
        match finished {
            Some(info) => {
                answer["build"] = json!({ "number": number, "result": info.result, "duration_ms": info.duration });
                Ok(answer)
            }
            None => {
                Err(accepted("it is still running after an hour; follow it with wait_for_build".into(), Some(number)))
            }
        }
    }
}

/// The class of a Pipeline run; only such a run has the replay action.
const PIPELINE_RUN: &str = "org.jenkinsci.plugins.workflow.job.WorkflowRun";

/// What was found of a replay's new run.
#[derive(Debug, PartialEq, Eq)]
enum Found {
    Build(u64),
    Queued(u64),
    /// More than one candidate: another replay of the same build at the same time.
    Ambiguous(usize),
    Nothing,
}

/// What one look at the queue (`queued`: item ids) and then the builds (`started`: number and
/// queueId, numbered from before the replay) found of replays of the same build. A run that
/// started between the two reads is in both: one run, as its build.
fn pick(mut queued: Vec<u64>, started: &[(u64, Option<u64>)]) -> Found {
    queued.retain(|id| !started.iter().any(|(_, q)| *q == Some(*id)));
    match (queued.as_slice(), started) {
        ([q], []) => Found::Queued(*q),
        ([], [(n, _)]) => Found::Build(*n),
        ([], []) => Found::Nothing,
        _ => Found::Ambiguous(queued.len() + started.len()),
    }
}

/// Whether Jenkins' `causes` (a `CauseAction`'s, read with `tree=`) include the ReplayCause of
/// build `original`. Its text ("Replayed #N") is localised; the number after '#' is not.
fn replays(causes: Option<&Value>, original: u64) -> bool {
    causes.and_then(Value::as_array).into_iter().flatten().any(|c| {
        let class = c.get("_class").and_then(Value::as_str).unwrap_or_default();
        let text = c.get("shortDescription").and_then(Value::as_str).unwrap_or_default();
        class.ends_with(".ReplayCause")
            && text.rsplit_once('#').is_some_and(|(_, n)| n.trim().parse::<u64>().ok() == Some(original))
    })
}

/// The causes of every `CauseAction` among `actions`.
fn action_causes(v: &Value) -> impl Iterator<Item = &Value> {
    v.get("actions").and_then(Value::as_array).into_iter().flatten().filter_map(|a| a.get("causes"))
}

/// Looks for the replay's new run until `deadline` (at least once): the queue while it waits,
/// the builds numbered from `next_before` once it started.
async fn find_replayed(
    cx: &Exec<'_>,
    jp: &jenkins::JobPath,
    original: u64,
    next_before: u64,
    deadline: Instant,
) -> Result<Found, jenkins::Error> {
    let causes = || Tree::new().nested("causes", Tree::new().fields(&["_class", "shortDescription"]));
    let builds_tree = Tree::new().nested_range(
        "builds",
        Tree::new().fields(&["number", "queueId"]).nested("actions", causes()),
        jenkins::tree::Range::first(50),
    );
    let queue_tree = Tree::new()
        .nested("items", Tree::new().nested("actions", causes()).field("id").nested("task", Tree::new().field("url")));
    let base = cx.client.base_url().as_url().clone();
    let job = jp.to_string();
    let mut pause = Duration::from_millis(100);
    loop {
        // The queue first, then the builds: an item that starts between the two reads is in both,
        // and is one run (its build's queueId is the item's id).
        let q = cx.client.queue_tree(&queue_tree).await?;
        let queued: Vec<u64> = q
            .get("items")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|i| {
                i.pointer("/task/url")
                    .and_then(Value::as_str)
                    .and_then(|u| owner_from_url(&base, u))
                    .is_some_and(|o| same_item(&o, &job))
            })
            .filter(|i| action_causes(i).any(|c| replays(Some(c), original)))
            .filter_map(|i| i.get("id").and_then(Value::as_u64))
            .collect();
        let builds = cx.client.job_tree(jp, &builds_tree).await?;
        let started: Vec<(u64, Option<u64>)> = builds
            .get("builds")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|b| action_causes(b).any(|c| replays(Some(c), original)))
            .filter_map(|b| Some((b.get("number").and_then(Value::as_u64)?, b.get("queueId").and_then(Value::as_u64))))
            .filter(|(n, _)| *n >= next_before)
            .collect();
        match pick(queued, &started) {
            Found::Nothing => {}
            found => return Ok(found),
        }
        if Instant::now() >= deadline {
            return Ok(Found::Nothing);
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(2));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replay_that_starts_between_the_queue_and_the_builds_is_one_run() {
        // Seen in the queue as item 7, then among the builds as #5 from item 7: the build.
        assert_eq!(pick(vec![7], &[(5, Some(7))]), Found::Build(5));
        assert_eq!(pick(vec![7], &[]), Found::Queued(7));
        assert_eq!(pick(vec![], &[(5, Some(7))]), Found::Build(5));
        assert_eq!(pick(vec![], &[]), Found::Nothing);
        // Two replays of the same build at once: which is this one cannot be told.
        assert_eq!(pick(vec![8], &[(5, Some(7))]), Found::Ambiguous(2));
        assert_eq!(pick(vec![], &[(5, Some(7)), (6, Some(8))]), Found::Ambiguous(2));
        // A build whose queueId is not reported is not taken for a queued item.
        assert_eq!(pick(vec![7], &[(5, None)]), Found::Ambiguous(2));
    }
}
