//! Rebuild (trigger a job again with a build's parameters) and replay (group `build`).
//!
//! A rebuild goes through `trigger_build`'s own path (build.rs); the parameters it sends are
//! read from Jenkins, so the grant's parameter constraints are checked on them here, after they
//! are read and before anything is sent, with the same rule `trigger_build`'s are checked with.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;

use super::build::{TriggerBuild, Wait, trigger_as_build};
use super::{BuildArg, Exec, Facts, Need, Op};
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
    /// The Pipeline job's full name.
    pub job: String,
    /// The build to replay.
    pub build: u64,
    /// The modified Pipeline script.
    pub script: String,
}

/// Why jgate does not replay: it sends only requests whose shape its wire reference documents.
pub const REPLAY_UNSUPPORTED: &str = "not supported by jgate: the replay form (the Pipeline's \
     replay action) is not documented in jgate's Jenkins wire reference, and jgate does not guess \
     the shape of a request that runs modified Pipeline code; update the Jenkinsfile (or the job's \
     config with update_job_config) and trigger_build instead";

impl Op for Replay {
    type Args = ReplayArgs;
    const META: Operation = crate::op!("replay", Build, Write, Job, destructive: false, idempotent: false,
        routes: [], cli: "pipeline replay", phrase: "triggered a replay of",
        "Replay a Pipeline build with modified code: not supported by jgate (the request is not documented); it answers why.");

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

    async fn run(_: &mut Exec<'_>, a: ReplayArgs) -> Result<Value, GateError> {
        Err(super::bad_request(format!(
            "replay of {} #{} ({} bytes of script, not sent): {REPLAY_UNSUPPORTED}",
            a.job,
            a.build,
            a.script.len()
        )))
    }
}
