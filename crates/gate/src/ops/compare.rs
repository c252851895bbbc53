//! Answers that look at several builds at once: compare two builds, flaky tests, deployments.
//! Every list is bounded; every read uses `tree=`.

use std::collections::{BTreeMap, BTreeSet};

use jenkins::model::Build;
use jenkins::{BuildSelector, JenkinsClient, JobPath};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};

use super::status::changes_of;
use super::{BuildArg, Exec, Need, Op};
use crate::catalog::{Access, Group, Operation, Target};
use crate::error::GateError;

/// The most builds between two compared builds whose changes are read.
const MAX_BETWEEN: u64 = 20;
/// The most entries of each list in an answer.
const MAX_LIST: usize = 50;

pub struct CompareBuilds;

/// Arguments of `compare_builds`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CompareArgs {
    /// The job's full name, folders separated by '/'.
    pub job: String,
    /// The build in question (a number or a permalink). Default: lastFailedBuild.
    pub build: Option<BuildArg>,
    /// The build to compare it with. Default: lastSuccessfulBuild.
    pub against: Option<BuildArg>,
}

impl Op for CompareBuilds {
    type Args = CompareArgs;
    const META: Operation = crate::op!("compare_builds", Status, Read, Job, destructive: false, idempotent: true, grouped: true,
        routes: ["GET /{job}/{build}/api/json", "GET /{job}/{build}/testReport/api/json", "GET /{job}/{build}/wfapi/describe"],
        cli: "build compare", phrase: "read a comparison of two builds of",
        "Compare two builds of a job (default: the last failed against the last successful): parameters that differ, changes between them, newly failing and fixed tests, duration and stage timing deltas.");

    fn needs(a: &CompareArgs) -> Vec<Need> {
        vec![Need::primary(&Self::META, Some(&a.job))]
    }

    async fn run(cx: &mut Exec<'_>, a: CompareArgs) -> Result<Value, GateError> {
        let path = cx.path(0)?;
        let sel_a = match &a.build {
            None => BuildSelector::LastFailedBuild,
            some => BuildArg::selector(some.as_ref())?,
        };
        let sel_b = match &a.against {
            None => BuildSelector::LastSuccessfulBuild,
            some => BuildArg::selector(some.as_ref())?,
        };
        let client = cx.client;
        let x = client.build_facts(&path, sel_a).await?;
        let y = client.build_facts(&path, sel_b).await?;
        compare(client, &path, &x, &y).await
    }
}

async fn compare(client: &JenkinsClient, job: &JobPath, x: &Build, y: &Build) -> Result<Value, GateError> {
    // Parameters that differ (a name missing on one side shows as null there).
    let px: BTreeMap<String, Option<Value>> = x.parameters().into_iter().collect();
    let py: BTreeMap<String, Option<Value>> = y.parameters().into_iter().collect();
    let names: BTreeSet<&String> = px.keys().chain(py.keys()).collect();
    let params: Vec<Value> = names
        .into_iter()
        .filter(|n| px.get(*n) != py.get(*n))
        .take(MAX_LIST)
        .map(|n| json!({"name": n, "build": px.get(n).cloned().flatten(), "against": py.get(n).cloned().flatten()}))
        .collect();
    // Changes of the builds after the older one, up to the newer one.
    let (old, new) = if x.number <= y.number { (x.number, y.number) } else { (y.number, x.number) };
    let first = (old + 1).max(new.saturating_sub(MAX_BETWEEN - 1));
    let mut changes = Vec::new();
    for n in first..=new {
        if changes.len() >= MAX_LIST {
            break;
        }
        let b = if n == x.number {
            Some(x.clone())
        } else if n == y.number {
            Some(y.clone())
        } else {
            client.build_facts(job, BuildSelector::Number(n)).await.ok()
        };
        for c in b.as_ref().map(changes_of).unwrap_or_default() {
            changes.push(json!({"build": n, "change": c}));
        }
    }
    changes.truncate(MAX_LIST);
    let changes_cut = new > old + MAX_BETWEEN;
    // Tests: failing in one and passing in the other.
    let tx = client.test_statuses(job, x.number).await?;
    let ty = client.test_statuses(job, y.number).await?;
    let tests = match (&tx, &ty) {
        (Some(tx), Some(ty)) => {
            let failing = |t: &[(String, String)]| -> BTreeSet<String> {
                t.iter().filter(|(_, s)| is_fail(s)).map(|(n, _)| n.clone()).collect()
            };
            let passing = |t: &[(String, String)]| -> BTreeSet<String> {
                t.iter().filter(|(_, s)| is_pass(s)).map(|(n, _)| n.clone()).collect()
            };
            let (fx, fy, px, py) = (failing(tx), failing(ty), passing(tx), passing(ty));
            let newly: Vec<&String> = fx.intersection(&py).collect();
            let fixed: Vec<&String> = px.intersection(&fy).collect();
            json!({
                "failing_in_build_passing_in_against": newly.iter().take(MAX_LIST).collect::<Vec<_>>(),
                "passing_in_build_failing_in_against": fixed.iter().take(MAX_LIST).collect::<Vec<_>>(),
                "counts": {"newly_failing": newly.len(), "fixed": fixed.len()},
            })
        }
        _ => json!({"note": "one of the builds recorded no test results"}),
    };
    let stages = stage_deltas(client, job, x, y).await;
    let side = |b: &Build| json!({"number": b.number, "result": b.result, "duration_ms": b.duration, "timestamp": b.timestamp});
    Ok(json!({
        "job": job.to_string(),
        "build": side(x),
        "against": side(y),
        "duration_delta_ms": x.duration - y.duration,
        "parameters_differ": params,
        "changes_between": changes,
        "changes_note": if changes_cut { json!(format!("only the last {MAX_BETWEEN} builds' changes were read")) } else { Value::Null },
        "tests": tests,
        "stages": stages,
        "untrusted": true,
    }))
}

fn is_fail(status: &str) -> bool {
    matches!(status, "FAILED" | "REGRESSION")
}

fn is_pass(status: &str) -> bool {
    matches!(status, "PASSED" | "FIXED")
}

/// Stage timing deltas from the Pipeline REST API, when both builds have it (else null).
async fn stage_deltas(client: &JenkinsClient, job: &JobPath, x: &Build, y: &Build) -> Value {
    if !x.class.ends_with("WorkflowRun") || !y.class.ends_with("WorkflowRun") {
        return Value::Null;
    }
    let (Ok(rx), Ok(ry)) = (client.pipeline_run(job, x.number).await, client.pipeline_run(job, y.number).await) else {
        return Value::Null;
    };
    let deltas: Vec<Value> = rx
        .stages
        .iter()
        .filter_map(|s| {
            let other = ry.stages.iter().find(|o| o.name == s.name);
            let delta = other.map(|o| s.duration_millis - o.duration_millis);
            let changed = other.map(|o| o.status != s.status).unwrap_or(true);
            // Only what differs: a new stage, a status change, or a timing change over a second.
            (changed || delta.is_some_and(|d| d.abs() >= 1000)).then(|| {
                json!({"stage": s.name, "status": s.status, "against_status": other.map(|o| o.status.clone()),
                       "duration_ms": s.duration_millis, "delta_ms": delta})
            })
        })
        .take(MAX_LIST)
        .collect();
    json!(deltas)
}

/// A test's outcomes, oldest build first: (build number, passed).
type Runs = Vec<(u64, bool)>;

pub struct FindFlakyTests;

/// Arguments of `find_flaky_tests`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FlakyArgs {
    /// The job's full name, folders separated by '/'.
    pub job: String,
    /// How many of the last builds to look at (1–50, default 10).
    #[schemars(range(min = 1, max = 50))]
    pub builds: Option<u64>,
}

impl Op for FindFlakyTests {
    type Args = FlakyArgs;
    const META: Operation = crate::op!("find_flaky_tests", Status, Read, Job, destructive: false, idempotent: true, grouped: true,
        routes: ["GET /{job}/api/json", "GET /{job}/{build}/testReport/api/json"],
        cli: "tests flaky", phrase: "read the flaky tests of",
        "Find tests that flip between pass and fail over a job's last N builds (default 10, max 50), with counts.");

    fn needs(a: &FlakyArgs) -> Vec<Need> {
        vec![Need::primary(&Self::META, Some(&a.job))]
    }

    async fn run(cx: &mut Exec<'_>, a: FlakyArgs) -> Result<Value, GateError> {
        let path = cx.path(0)?;
        let n = a.builds.unwrap_or(10);
        if !(1..=50).contains(&n) {
            return Err(super::bad_request("builds must be 1 to 50"));
        }
        let tree = jenkins::tree::Tree::new().nested_range(
            "builds",
            jenkins::tree::Tree::new().fields(&["number", "building"]),
            jenkins::tree::Range::first(n as usize),
        );
        let job = cx.client.job_tree(&path, &tree).await?;
        let mut numbers: Vec<u64> = job
            .get("builds")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|b| b.get("building") != Some(&Value::Bool(true)))
            .filter_map(|b| b.get("number").and_then(Value::as_u64))
            .take(n as usize)
            .collect();
        numbers.sort_unstable();
        // Per test: its outcome in each build, oldest first (skipped and absent runs do not count).
        let mut history: BTreeMap<String, Vec<(u64, bool)>> = BTreeMap::new();
        let mut with_tests = 0;
        for (i, number) in numbers.iter().enumerate() {
            cx.report(i as f64, Some(numbers.len() as f64), format!("reading the tests of build #{number}"));
            let Some(cases) = cx.client.test_statuses(&path, *number).await? else { continue };
            with_tests += 1;
            for (name, status) in cases {
                let ok = if is_pass(&status) {
                    true
                } else if is_fail(&status) {
                    false
                } else {
                    continue;
                };
                history.entry(name).or_default().push((*number, ok));
            }
        }
        let mut flaky: Vec<Value> = Vec::new();
        let mut scored: Vec<(usize, &String, &Runs)> = history
            .iter()
            .filter_map(|(name, runs)| {
                let flips = runs.windows(2).filter(|w| w[0].1 != w[1].1).count();
                (flips > 0).then_some((flips, name, runs))
            })
            .collect();
        scored.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(b.1)));
        let total = scored.len();
        for (flips, name, runs) in scored.into_iter().take(30) {
            let failed: Vec<u64> = runs.iter().filter(|r| !r.1).map(|r| r.0).collect();
            flaky.push(json!({
                "test": name,
                "flips": flips,
                "passed": runs.len() - failed.len(),
                "failed": failed.len(),
                "failed_in": failed.iter().rev().take(10).collect::<Vec<_>>(),
            }));
        }
        Ok(json!({
            "job": path.to_string(),
            "builds_examined": numbers,
            "builds_with_tests": with_tests,
            "flaky": flaky,
            "flaky_total": total,
            "summary": format!("{total} test(s) flipped between pass and fail over {} build(s) of {path}{}", numbers.len(), if total > 30 { "; the 30 that flipped most are listed" } else { "" }),
        }))
    }
}

pub struct GetDeployments;

/// Arguments of `get_deployments`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeploymentsArgs {
    /// A deploy job's full name (give this or pattern).
    pub job: Option<String>,
    /// A pattern of deploy jobs' full names: '*' matches within one name, '**' across folders,
    /// e.g. deploy/* or **/deploy-*. Only jobs you may see are looked at.
    pub pattern: Option<String>,
    /// How many of each job's last builds to show (1–20, default 5).
    #[schemars(range(min = 1, max = 20))]
    pub limit: Option<u64>,
}

/// The most deploy jobs one answer looks at.
const MAX_DEPLOY_JOBS: usize = 20;

/// What Jenkins' own data cannot say about a deployment.
const CANNOT_KNOW: [&str; 4] = [
    "whether a deploy build actually changed the target environment (Jenkins records the build's result, not the environment's state)",
    "whether what runs in production now is still what the last deploy put there (manual changes, rollbacks outside Jenkins)",
    "which commit was deployed when the deploy build records neither changes nor a commit parameter",
    "whether a build was marked bad outside Jenkins (an incident, a revert) unless a later build of it failed",
];

impl Op for GetDeployments {
    type Args = DeploymentsArgs;
    const META: Operation = crate::op!("get_deployments", Status, Read, Folder, destructive: false, idempotent: true, grouped: true,
        routes: ["GET /api/json?tree=jobs[...]", "GET /{job}/api/json", "GET /{job}/{build}/api/json"],
        cli: "deployments", phrase: "read the deployments of",
        "Did a bad build deploy? The last builds of a deploy job (or of jobs matching a pattern): upstream build, parameters, commit, and whether the upstream build failed or is not its job's last success; says what Jenkins cannot know.");

    fn needs(a: &DeploymentsArgs) -> Vec<Need> {
        match (&a.job, &a.pattern) {
            (Some(job), _) => vec![Need::visible(job, "job")],
            // A pattern is a listing: allowed with any status read grant, filtered by it.
            _ => vec![Need {
                group: Group::Status,
                access: Access::Read,
                target: Target::Folder,
                path: None,
                role: "folder",
            }],
        }
    }

    async fn run(cx: &mut Exec<'_>, a: DeploymentsArgs) -> Result<Value, GateError> {
        let limit = a.limit.unwrap_or(5);
        if !(1..=20).contains(&limit) {
            return Err(super::bad_request("limit must be 1 to 20"));
        }
        let jobs: Vec<String> = match (&a.job, &a.pattern) {
            (Some(_), None) => vec![cx.path(0)?.to_string()],
            (None, Some(p)) => {
                let re = glob_regex(p)?;
                let mut found = Vec::new();
                collect_jobs(cx.client, &re, &mut found).await?;
                found.retain(|j| cx.may_see(j));
                found.truncate(MAX_DEPLOY_JOBS);
                found
            }
            _ => return Err(super::bad_request("give exactly one of 'job' or 'pattern'")),
        };
        let mut out = Vec::new();
        for job in &jobs {
            let path = JobPath::parse(job)?;
            out.push(deploys_of(cx, &path, limit).await?);
        }
        let flagged = out
            .iter()
            .flat_map(|j| j.get("deploys").and_then(Value::as_array).cloned().unwrap_or_default())
            .filter(|d| d.pointer("/upstream/suspect") == Some(&Value::Bool(true)))
            .count();
        Ok(json!({
            "jobs": out,
            "summary": format!("{} deploy job(s); {flagged} deploy(s) came from an upstream build that failed or is not its job's last success", jobs.len()),
            "cannot_know": CANNOT_KNOW,
            "untrusted": true,
        }))
    }
}

/// The last `limit` builds of one deploy job, each with its upstream build judged.
async fn deploys_of(cx: &mut Exec<'_>, job: &JobPath, limit: u64) -> Result<Value, GateError> {
    let tree = jenkins::tree::Tree::new().nested_range(
        "builds",
        jenkins::tree::Tree::new().field("number"),
        jenkins::tree::Range::first(limit as usize),
    );
    let info = cx.client.job_tree(job, &tree).await?;
    let numbers: Vec<u64> = info
        .get("builds")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|b| b.get("number").and_then(Value::as_u64))
        .take(limit as usize)
        .collect();
    let mut deploys = Vec::new();
    let mut hidden_upstreams = 0;
    for n in numbers {
        let b = cx.client.build_facts(job, BuildSelector::Number(n)).await?;
        let params = b.parameters();
        let commit =
            changes_of(&b).first().and_then(|c| c.get("commit").cloned()).filter(|c| !c.is_null()).or_else(|| {
                params
                    .iter()
                    .find(|(k, _)| {
                        let k = k.to_ascii_uppercase();
                        ["COMMIT", "SHA", "REVISION", "GIT_COMMIT", "GIT_SHA"].iter().any(|w| k.contains(w))
                    })
                    .and_then(|(_, v)| v.clone())
            });
        let upstream = upstream_of(&b);
        let upstream = match upstream {
            None => Value::Null,
            // Counted, not named: the agent may not see the upstream job.
            Some((project, _)) if !cx.may_see(&project) => {
                hidden_upstreams += 1;
                json!({"hidden": true})
            }
            Some((project, number)) => judge_upstream(cx.client, &project, number).await,
        };
        deploys.push(json!({
            "number": b.number,
            "result": b.result,
            "timestamp": b.timestamp,
            "parameters": params.iter().take(30).map(|(k, v)| json!({"name": k, "value": v})).collect::<Vec<_>>(),
            "commit": commit,
            "upstream": upstream,
        }));
    }
    Ok(json!({
        "job": job.to_string(),
        "deploys": deploys,
        "upstreams_not_shown": hidden_upstreams,
    }))
}

/// The upstream build a build was started by (`Cause$UpstreamCause`), as (full name, number).
fn upstream_of(b: &Build) -> Option<(String, u64)> {
    b.actions.iter().filter_map(|a| a.get("causes").and_then(Value::as_array)).flatten().find_map(|c| {
        let project = c.get("upstreamProject").and_then(Value::as_str)?;
        let number = c.get("upstreamBuild").and_then(Value::as_u64)?;
        Some((project.to_string(), number))
    })
}

/// The upstream build's result and whether it is (still) its job's last success.
async fn judge_upstream(client: &JenkinsClient, project: &str, number: u64) -> Value {
    let Ok(path) = JobPath::parse(project) else {
        return json!({"job": project, "number": number, "note": "not a job name jgate can read"});
    };
    let result = match client.build(&path, BuildSelector::Number(number)).await {
        Ok(b) => b.result,
        Err(jenkins::Error::NotFound { .. }) => {
            return json!({"job": project, "number": number, "note": "the upstream build no longer exists", "suspect": true});
        }
        Err(_) => return json!({"job": project, "number": number, "note": "the upstream build could not be read"}),
    };
    let tree = jenkins::tree::Tree::new().nested("lastSuccessfulBuild", jenkins::tree::Tree::new().field("number"));
    let last_ok = client
        .job_tree(&path, &tree)
        .await
        .ok()
        .and_then(|v| v.pointer("/lastSuccessfulBuild/number").and_then(Value::as_u64));
    let failed = result.as_deref().is_some_and(|r| r != "SUCCESS");
    let superseded = last_ok.is_some_and(|l| l != number);
    json!({
        "job": project,
        "number": number,
        "result": result,
        "last_successful_of_job": last_ok,
        "failed": failed,
        "not_last_success": superseded,
        "suspect": failed,
    })
}

/// A job-name glob as a regular expression: `**` any run of characters, `*` within one name.
fn glob_regex(p: &str) -> Result<regex::Regex, GateError> {
    if p.is_empty() || p.len() > 200 {
        return Err(super::bad_request("pattern must be 1 to 200 characters"));
    }
    let mut re = String::from("(?i)^");
    let mut chars = p.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '*' {
            if chars.peek() == Some(&'*') {
                chars.next();
                re.push_str(".*");
            } else {
                re.push_str("[^/]*");
            }
        } else {
            re.push_str(&regex::escape(&c.to_string()));
        }
    }
    re.push('$');
    super::logs::compile(&re)
}

/// Every job (not folder) whose full name matches, down to 6 folder levels (one request), at
/// most a bounded number.
async fn collect_jobs(client: &JenkinsClient, re: &regex::Regex, out: &mut Vec<String>) -> Result<(), GateError> {
    let items = client.list_items(None, 6).await?;
    let mut stack: Vec<(String, jenkins::model::ItemRef)> = items.into_iter().map(|i| (String::new(), i)).collect();
    let mut seen = 0usize;
    while let Some((prefix, item)) = stack.pop() {
        seen += 1;
        if seen > 20_000 || out.len() >= 1000 {
            break;
        }
        let full = item.full_name.clone().unwrap_or_else(|| format!("{prefix}{}", item.name));
        if let Some(children) = item.jobs.clone() {
            stack.extend(children.into_iter().map(|c| (format!("{full}/"), c)));
            continue;
        }
        if item.is_folder() {
            continue;
        }
        if re.is_match(&full) {
            out.push(full);
        }
    }
    out.sort();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_within_and_across_folders() {
        let one = glob_regex("deploy/*").expect("glob");
        assert!(one.is_match("deploy/prod"));
        assert!(!one.is_match("deploy/eu/prod"));
        let any = glob_regex("**/deploy-*").expect("glob");
        assert!(any.is_match("team/x/deploy-prod"));
        assert!(!any.is_match("team/build"));
    }
}
