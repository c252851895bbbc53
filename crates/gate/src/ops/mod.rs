//! The operations: every Jenkins operation an agent can ask for, each declared **once** with
//! everything it needs — its catalog entry ([`Op::META`]), its typed arguments ([`Op::Args`], whose
//! JSON Schema is derived from the type), the targets it touches and the access each needs
//! ([`Op::needs`]), and its implementation ([`Op::run`]).
//!
//! [`registry!`] lists the operation types once; the catalog ([`OPERATIONS`]), the dispatcher and
//! the input schemas are generated from that list, so an operation without an implementation, a
//! schema or targets does not compile.
//!
//! Implementations get an [`Exec`]: the controller's wire client and the *canonical* names the
//! policy decided on (never the raw arguments). What they return is untrusted Jenkins data; the
//! call path ([`crate::call`]) passes it through the sanitizer before anyone sees it.

mod artifacts;
mod build;
mod compare;
mod config;
mod jobs;
mod logs;
mod nodes;
mod pipeline;
pub(crate) mod rebuild;
mod status;
mod system;
mod views;

use std::future::Future;

use jenkins::{JenkinsClient, JobPath};
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::catalog::{Access, Group, Operation, Target};
use crate::error::GateError;
use crate::policy::Grant;
use crate::sanitize::Sanitizer;

pub use build::TriggerSlots;
pub use logs::LOG_BUDGET;
pub use rebuild::MAX_REPLAY_SCRIPT_BYTES;
pub use views::check_type_name;

/// One target of a call and the access it needs on it. Most operations have one; `copy_job` has
/// two (read the source's configuration, create the destination).
#[derive(Debug, Clone)]
pub struct Need {
    /// The grant group that must allow it.
    pub group: Group,
    pub access: Access,
    /// What kind of target it is (a job, a folder or the root, the whole controller).
    pub target: Target,
    /// The path as the agent sent it (for jobs and folders).
    pub path: Option<String>,
    /// The argument it came from, for messages ("from", "job").
    pub role: &'static str,
}

impl Need {
    /// That the agent may see `path` (status read): for a target Jenkins would answer about
    /// differently when a job exists there ("already exists"), so that a hidden job's existence
    /// cannot be learned by writing to its name.
    pub fn visible(path: &str, role: &'static str) -> Need {
        Need { group: Group::Status, access: Access::Read, target: Target::Job, path: Some(path.to_string()), role }
    }

    /// The operation's own target, with the operation's group and access.
    pub fn primary(meta: &Operation, path: Option<&str>) -> Need {
        Need {
            group: meta.group,
            access: meta.access,
            target: meta.target,
            path: path.map(str::to_string),
            role: "job",
        }
    }
}

/// Progress of a long call: (done, total, message).
pub type ProgressSink = tokio::sync::mpsc::UnboundedSender<(f64, Option<f64>, String)>;

/// What an implementation works with.
pub struct Exec<'a> {
    /// For writes that keep state across crashes (trigger identities, accepted queue items).
    pub store: &'a crate::store::Store,
    /// The gate's id of this call.
    pub request_id: &'a str,
    pub client: &'a JenkinsClient,
    pub controller: &'a str,
    pub agent: &'a str,
    /// The agent's grants, to filter listings through the same policy as everything else.
    pub grants: &'a [Grant],
    /// The canonical path of each [`Need`], in order (None for controller-wide needs).
    pub targets: Vec<Option<String>>,
    pub progress: Option<&'a ProgressSink>,
    /// For console text: cleaned line by line (whole lines, before any cut) and fenced.
    pub sanitizer: &'a mut Sanitizer,
    pub triggers: &'a TriggerSlots,
}

impl Exec<'_> {
    /// The canonical path of need `i` as the policy decided it.
    pub fn path(&self, i: usize) -> Result<JobPath, GateError> {
        let p = self
            .targets
            .get(i)
            .and_then(Option::as_deref)
            .ok_or_else(|| GateError::Invalid("this operation needs a job".into()))?;
        Ok(JobPath::parse(p)?)
    }

    /// The canonical folder of need 0, if one was named.
    pub fn folder(&self) -> Result<Option<JobPath>, GateError> {
        self.targets.first().and_then(Option::as_deref).map(|p| Ok(JobPath::parse(p)?)).transpose()
    }

    /// Whether the agent may see `job` (a full name): the filter for every listing.
    pub fn may_see(&self, job: &str) -> bool {
        crate::policy::may_see(self.grants, self.agent, self.controller, job)
    }

    /// Reports progress to the client. Progress leaves jgate before the answer does, so its text
    /// (which may quote Jenkins, e.g. a build's result) passes the sanitizer here.
    pub fn report(&mut self, done: f64, total: Option<f64>, message: String) {
        if let Some(p) = self.progress {
            let clean = self.sanitizer.release_text(crate::sanitize::Untrusted::new(message)).into_inner();
            let _ = p.send((done, total, clean));
        }
    }
}

/// One operation, declared once.
pub trait Op: 'static {
    /// The arguments, as the agent sends them (without `controller`, which every call takes).
    type Args: DeserializeOwned + JsonSchema + Send + Sync;
    /// The catalog entry.
    const META: Operation;
    /// The targets and the access each needs, from the arguments as sent.
    fn needs(args: &Self::Args) -> Vec<Need>;
    /// Top-level argument fields the audit records only as their length and a SHA-256 prefix,
    /// never as text: code an agent sends (`replay`'s script). An approval request shows them
    /// whole: the approver decides on them.
    const SUMMARIZED: &'static [&'static str] = &[];
    /// Build parameters the policy's constraints check (only triggers have any).
    fn params(_args: &Self::Args) -> Vec<(String, String)> {
        Vec::new()
    }
    /// Performs the operation on the canonical targets. The answer is untrusted Jenkins data.
    fn run(cx: &mut Exec<'_>, args: Self::Args) -> impl Future<Output = Result<Value, GateError>> + Send;
    /// What the audit record says beyond "ok", read off the sanitized answer: by default the
    /// build concerned (`build.number`, else `number`).
    fn facts(answer: &Value) -> Facts {
        Facts::build_of(answer)
    }
}

/// Facts an operation adds to its outcome record.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Facts {
    /// The build concerned, e.g. the build a trigger created.
    pub build_number: Option<u64>,
    /// A qualifier of a successful outcome ("ok: <note>").
    pub note: Option<String>,
}

impl Facts {
    pub fn build_of(answer: &Value) -> Facts {
        let build_number = answer
            .get("build")
            .and_then(|b| b.get("number"))
            .and_then(Value::as_u64)
            .or_else(|| answer.get("number").and_then(Value::as_u64));
        Facts { build_number, note: None }
    }
}

/// The JSON Schema of an operation's arguments, derived from its type, plus `controller`.
pub fn schema_of<T: JsonSchema>() -> Map<String, Value> {
    let settings = schemars::generate::SchemaSettings::draft2020_12().with(|s| {
        s.meta_schema = None;
        // Clients and models read flat schemas best: no $ref/$defs.
        s.inline_subschemas = true;
    });
    let schema = settings.into_generator().into_root_schema_for::<T>();
    let mut value = schema.to_value();
    drop_null_types(&mut value);
    let mut m = match value {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    m.remove("title");
    m.remove("description");
    m.insert("type".into(), Value::String("object".into()));
    let props = m.entry("properties").or_insert_with(|| Value::Object(Map::new()));
    if let Value::Object(p) = props {
        p.insert(
            "controller".into(),
            serde_json::json!({"type": "string", "description": "The Jenkins controller (as named in jgate). Optional when only one is configured."}),
        );
    }
    m.insert("additionalProperties".into(), Value::Bool(false));
    m
}

/// Reads also take `max_bytes`, the response budget (taken out by the call path before the
/// arguments are parsed: [`crate::budget`]).
fn with_budget(mut m: Map<String, Value>, op: &Operation) -> Map<String, Value> {
    if crate::budget::applies(op)
        && let Some(Value::Object(p)) = m.get_mut("properties")
    {
        p.insert("max_bytes".into(), crate::budget::schema_property());
        p.insert("fields".into(), crate::fields::schema_property());
    }
    m
}

/// Optional arguments are simply absent: `null` alternatives are removed from the schema; and
/// descriptions become one line.
fn drop_null_types(v: &mut Value) {
    match v {
        Value::Object(m) => {
            if let Some(Value::Array(types)) = m.get_mut("type") {
                types.retain(|t| t != "null");
                if types.len() == 1
                    && let Some(t) = types.pop()
                {
                    m.insert("type".into(), t);
                }
            }
            if let Some(Value::Array(values)) = m.get_mut("enum") {
                values.retain(|v| !v.is_null());
            }
            for key in ["anyOf", "oneOf"] {
                if let Some(Value::Array(alts)) = m.get_mut(key) {
                    alts.retain(|a| a.get("type") != Some(&Value::String("null".into())));
                    if alts.len() == 1
                        && let Some(Value::Object(only)) = alts.pop()
                    {
                        m.remove(key);
                        for (k, x) in only {
                            m.entry(k).or_insert(x);
                        }
                    }
                }
            }
            // Doc comments wrap lines; a description is one paragraph.
            if let Some(Value::String(d)) = m.get_mut("description") {
                *d = d.split_whitespace().collect::<Vec<_>>().join(" ");
            }
            m.values_mut().for_each(drop_null_types);
        }
        Value::Array(a) => a.iter_mut().for_each(drop_null_types),
        _ => {}
    }
}

/// How a call reaches its implementation: the call path hands each operation type to this.
pub trait Runner {
    type Output;
    fn run<T: Op>(self) -> impl Future<Output = Self::Output> + Send;
}

macro_rules! registry {
    ($($ty:ty),* $(,)?) => {
        /// Every operation, in display order (generated from the registry).
        pub static OPERATIONS: &[&Operation] = &[$(&<$ty as Op>::META),*];

        /// Runs `runner` with the operation type named `name`.
        pub async fn dispatch<R: Runner + Send>(name: &str, runner: R) -> Option<R::Output> {
            $(if name == <$ty as Op>::META.name {
                return Some(runner.run::<$ty>().await);
            })*
            None
        }

        /// The input schema of the operation named `name`.
        pub fn input_schema(name: &str) -> Option<Map<String, Value>> {
            $(if name == <$ty as Op>::META.name {
                return Some(with_budget(schema_of::<<$ty as Op>::Args>(), &<$ty as Op>::META));
            })*
            None
        }
    };
}

registry!(
    status::ListJobs,
    status::GetJob,
    status::GetBuild,
    logs::GetBuildLog,
    status::GetTestReport,
    pipeline::GetPipelineRun,
    pipeline::TriageBuild,
    build::WaitForBuild,
    status::GetQueue,
    status::ListViews,
    build::TriggerBuild,
    build::StopBuild,
    build::CancelQueueItem,
    build::WipeWorkspace,
    pipeline::AnswerInput,
    config::GetJobConfig,
    config::UpdateJobConfig,
    config::EnableJob,
    config::DisableJob,
    jobs::CreateJob,
    jobs::CopyJob,
    jobs::DeleteJob,
    jobs::RenameJob,
    jobs::DeleteBuild,
    config::SetDescription,
    config::SetNextBuildNumber,
    views::ManageView,
    system::ListNodes,
    system::GetSystemInfo,
    artifacts::ListArtifacts,
    artifacts::ReadArtifact,
    pipeline::GetStageLog,
    nodes::GetNode,
    rebuild::Rebuild,
    rebuild::Replay,
    compare::CompareBuilds,
    compare::FindFlakyTests,
    compare::GetDeployments,
);

/// A build: a number, or a permalink name.
#[derive(Debug, Clone, serde::Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum BuildArg {
    Number(u64),
    /// lastBuild, lastCompletedBuild, lastSuccessfulBuild, lastStableBuild, lastFailedBuild,
    /// lastUnstableBuild, lastUnsuccessfulBuild, or a number as text ("#12", "12").
    Name(String),
}

impl BuildArg {
    pub fn selector(this: Option<&BuildArg>) -> Result<jenkins::BuildSelector, GateError> {
        use jenkins::BuildSelector as S;
        Ok(match this {
            None => S::LastBuild,
            Some(BuildArg::Number(n)) => S::Number(*n),
            Some(BuildArg::Name(s)) => match s.as_str() {
                "lastBuild" | "last" => S::LastBuild,
                "lastCompletedBuild" => S::LastCompletedBuild,
                "lastSuccessfulBuild" => S::LastSuccessfulBuild,
                "lastStableBuild" => S::LastStableBuild,
                "lastFailedBuild" => S::LastFailedBuild,
                "lastUnstableBuild" => S::LastUnstableBuild,
                "lastUnsuccessfulBuild" => S::LastUnsuccessfulBuild,
                other => S::Number(other.trim_start_matches('#').parse().map_err(|_| {
                    GateError::Invalid(format!(
                        "build '{other}' is neither a number nor one of lastBuild, lastCompletedBuild, lastSuccessfulBuild, lastStableBuild, lastFailedBuild, lastUnstableBuild, lastUnsuccessfulBuild"
                    ))
                })?),
            },
        })
    }
}

/// A request Jenkins would refuse as malformed (400), refused before it is sent: the status
/// survives the call path (the proxy answers with it), unlike an [`GateError::Invalid`] from `run`.
pub(crate) fn bad_request(message: impl Into<String>) -> GateError {
    GateError::Failed { message: message.into(), status: Some(400) }
}

/// The build number a selector designates.
pub async fn resolve_number(
    client: &JenkinsClient,
    job: &JobPath,
    sel: jenkins::BuildSelector,
) -> Result<u64, GateError> {
    Ok(match sel {
        jenkins::BuildSelector::Number(n) => n,
        other => client.build(job, other).await?.number,
    })
}

/// The job a Jenkins URL designates (a queue item's `task.url`), relative to the controller's own
/// base URL: `http://ci/jenkins/job/a/job/b/` under `http://ci/jenkins/` → `a/b`. `None` when the
/// URL is not under the base, or does not name a job — callers then refuse, never guess.
pub fn owner_from_url(base: &url::Url, task_url: &str) -> Option<String> {
    let u = url::Url::parse(task_url).ok()?;
    let base_path = base.path().trim_end_matches('/');
    let rest = u.path().strip_prefix(base_path)?;
    let rest = rest.strip_prefix('/')?;
    let segs: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    if segs.is_empty() || !segs.len().is_multiple_of(2) {
        return None;
    }
    let mut names = Vec::new();
    for pair in segs.chunks(2) {
        if pair.first() != Some(&"job") {
            return None;
        }
        names.push(crate::policy::percent_decode(pair.get(1)?).ok()?);
    }
    crate::policy::normalize_job_path(&names.join("/")).ok()
}

/// Whether two canonical job names designate the same Jenkins item (Jenkins folds names with
/// Java's case-insensitive order).
pub fn same_item(a: &str, b: &str) -> bool {
    let key = |s: &str| -> Option<Vec<String>> {
        let n = crate::policy::normalize_job_path(s).ok()?;
        Some(n.split('/').map(java_fold::fold_key).collect())
    };
    matches!((key(a), key(b)), (Some(x), Some(y)) if x == y)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_task_urls_name_their_owner_only_under_the_base() {
        let base = url::Url::parse("http://ci:8080/jenkins/").expect("url");
        assert_eq!(owner_from_url(&base, "http://ci:8080/jenkins/job/team/job/api/").as_deref(), Some("team/api"));
        assert_eq!(
            owner_from_url(&base, "http://ci:8080/jenkins/job/shop/job/feature%252Fx/").as_deref(),
            Some("shop/feature%2Fx")
        );
        // Not under the base path, not a job URL, or a context path that itself says "job".
        assert_eq!(owner_from_url(&base, "http://ci:8080/other/job/x/"), None);
        assert_eq!(owner_from_url(&base, "http://ci:8080/jenkins/"), None);
        assert_eq!(owner_from_url(&base, "http://ci:8080/jenkins/view/all/job/x/"), None);
        let job_ctx = url::Url::parse("http://ci/job/").expect("url");
        assert_eq!(owner_from_url(&job_ctx, "http://ci/job/job/x/").as_deref(), Some("x"));
    }

    #[test]
    fn every_operation_has_a_schema_and_unique_name() {
        let mut names: Vec<&str> = OPERATIONS.iter().map(|o| o.name).collect();
        for n in &names {
            let s = input_schema(n).expect("schema");
            assert_eq!(s.get("type"), Some(&Value::String("object".into())), "{n}");
        }
        names.sort();
        let len = names.len();
        names.dedup();
        assert_eq!(len, names.len());
    }
}
