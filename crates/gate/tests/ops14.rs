//! Issue #14's operations on the twin, through `Gate::call` and, where the operation has a
//! proxied route, through the governed proxy (classify + `Gate::proxy`): allowed, denied without
//! a grant, a hidden job answering like a missing one, secrets redacted, binary artifacts as
//! metadata only, artifact path attacks, rebuild under a parameter constraint, deployments
//! filtered by visibility, and one stage of a 2,000-stage pipeline (1 GiB console) read without its console.

use std::sync::Arc;

use gate::audit::Surface;
use gate::catalog::Group;
use gate::policy::{Level, ParamConstraint, ParamRule};
use gate::proxy::{ProxyBody, ProxyError};
use gate::route::{Route, classify};
use gate::secrets::MasterKey;
use gate::store::Store;
use gate::{Admin, Caller, Gate, GateError};
use jenkins_twin::{Twin, TwinServer};
use serde_json::{Value, json};

mod common;

const TOKEN: &str = "11cccccccccccccccccccccccccccccccc";

fn secret() -> String {
    format!("ghp_{}", "Q7w9Zx".repeat(6))
}

fn scenario() -> String {
    let s = secret();
    format!(
        r#"
[controller]
quiet_period = 0

[[nodes]]
name = "linux-1"
executors = 3
labels = ["linux"]

[[nodes]]
name = "win-1"
labels = ["windows"]
offline = true
offline_reason = "disk full"

[[folders]]
path = "team"
[[folders]]
path = "secret"
[[folders]]
path = "deploy"

[[jobs]]
path = "team/app"
script = "echo app"
[[jobs.parameters]]
name = "ENV"
type = "string"
default = "staging"
[[jobs.builds]]
result = "SUCCESS"
parameters = {{ ENV = "staging" }}
tests = {{ passed = ["a.T.one", "a.T.two"] }}
artifacts = ["dist/empty.txt"]
artifact_files = {{ "reports/summary.txt" = "first line\ntoken {s} here\nlast line\n", "bin/tool" = "MZ\u0000\u0001\u0002", "app.jar" = "PK" }}
changes = [{{ commit = "c1c1c1", author = "Ann", message = "first change" }}]
[[jobs.builds]]
result = "FAILURE"
parameters = {{ ENV = "prod" }}
tests = {{ passed = ["a.T.two"], failed = [{{ name = "a.T.one", error = "boom" }}] }}
changes = [{{ commit = "c2c2c2", author = "Bob", message = "break it" }}]
[[jobs.builds]]
result = "SUCCESS"
parameters = {{ ENV = "staging" }}
tests = {{ passed = ["a.T.one", "a.T.two"] }}
changes = [{{ commit = "c3c3c3", author = "Ann", message = "fix it" }}]
[[jobs.builds]]
result = "FAILURE"
parameters = {{ ENV = "staging" }}
tests = {{ passed = ["a.T.two"], failed = [{{ name = "a.T.one" }}] }}

[[jobs]]
path = "team/pipe"
kind = "pipeline"
script = "echo pipe"
[[jobs.builds]]
result = "FAILURE"
artifact_files = {{ "out/log.txt" = "pipeline artifact\n" }}
[[jobs.builds.stages]]
name = "Build"
log = "compiling\nusing {s} to push"
[[jobs.builds.stages]]
name = "Test"
status = "FAILED"
error = "tests failed"
log = "running tests\nassertion failed in a.T.one"

[[jobs]]
path = "team/long"
label = "linux"
script = "sleep 600"

[[jobs]]
path = "secret/job"
label = "linux"
script = "sleep 600"
[[jobs.builds]]
result = "FAILURE"
artifact_files = {{ "x.txt" = "hidden" }}

[[jobs]]
path = "deploy/prod"
script = "echo deploy"
[[jobs.parameters]]
name = "GIT_COMMIT"
type = "string"
default = ""
[[jobs.builds]]
cause = "upstream:team/app#2"
parameters = {{ GIT_COMMIT = "c2c2c2" }}
[[jobs.builds]]
cause = "upstream:team/app#3"
parameters = {{ GIT_COMMIT = "c3c3c3" }}
[[jobs.builds]]
cause = "upstream:secret/job#1"
parameters = {{ GIT_COMMIT = "ffffff" }}

[[jobs]]
path = "deploy/hidden-prod"
script = "echo deploy"
[[jobs.builds]]
cause = "upstream:team/app#1"
"#
    )
}

async fn gate_on(scenario: &str) -> (Arc<Twin>, TwinServer, Arc<Gate>) {
    let (twin, server) =
        jenkins_twin::start(scenario, &[("admin".into(), "admin".into(), TOKEN.into())]).await.expect("twin");
    let dir = common::temp_dir("ops14");
    let store = Store::open(&dir.join("jgate.db").display().to_string()).await.expect("store");
    let (master, _) =
        MasterKey::load_or_create("JGATE_TEST_UNSET_MASTER_KEY", &dir.join("master.key")).expect("master key");
    let gate = Gate::open(store, master, None).await.expect("gate");
    gate.add_controller(&Admin::local_cli(), common::twin_controller("prod", &server, TOKEN), false)
        .await
        .expect("controller");
    (twin, server, Arc::new(gate))
}

async fn setup() -> (Arc<Twin>, TwinServer, Arc<Gate>) {
    let (t, s, g) = gate_on(&scenario()).await;
    // team-bot: status on team/** and deploy/** (not deploy/hidden-prod), nodes read, build full
    // on team/** with ENV only staging. nobody: no grants at all. root-bot: everything.
    let admin = Admin::local_cli();
    g.create_agent(&admin, "team-bot", "", None).await.expect("agent");
    for jobs in ["team/**", "deploy/**"] {
        g.grant(&admin, "team-bot", Group::Status, Level::Read, None, Some(jobs), vec![]).await.expect("grant");
    }
    g.grant(&admin, "team-bot", Group::Status, Level::Off, None, Some("deploy/hidden-prod"), vec![])
        .await
        .expect("carve-out");
    g.grant(&admin, "team-bot", Group::Nodes, Level::Read, None, None, vec![]).await.expect("grant");
    let staging = ParamConstraint { name: "ENV".into(), rule: ParamRule::OneOf(vec!["staging".into()]) };
    g.grant(&admin, "team-bot", Group::Build, Level::Full, None, Some("team/**"), vec![staging]).await.expect("grant");
    g.create_agent(&admin, "nobody", "", None).await.expect("agent");
    g.create_agent(&admin, "root-bot", "", None).await.expect("agent");
    for group in [Group::Status, Group::Build, Group::Config, Group::Jobs, Group::Nodes, Group::System] {
        g.grant(&admin, "root-bot", group, Level::Full, None, None, vec![]).await.expect("grant");
    }
    (t, s, g)
}

fn caller(agent: &str, surface: Surface) -> Caller {
    Caller { agent: agent.into(), key_id: None, surface, client_addr: None, request_id: "ops14".into() }
}

async fn call(g: &Gate, agent: &str, op: &str, args: Value) -> Result<Value, GateError> {
    g.call(&caller(agent, Surface::Mcp), "prod", op, args).await
}

async fn ok(g: &Gate, agent: &str, op: &str, args: Value) -> Value {
    match call(g, agent, op, args.clone()).await {
        Ok(v) => v,
        Err(e) => panic!("{op} {args} as {agent}: {e:?}"),
    }
}

/// A proxied read: the body as text, or the status the client would see.
async fn proxy_get(g: &Gate, agent: &str, target: &str) -> Result<String, u16> {
    let (path, query) = target.split_once('?').map_or((target, None), |(p, q)| (p, Some(q)));
    let c = match classify("GET", path, query) {
        Route::Op(c) => c,
        other => panic!("GET {target} was not classified: {other:?}"),
    };
    match g.proxy(&caller(agent, Surface::Proxy), "prod", &c).await {
        Ok(answer) => Ok(match answer.body {
            ProxyBody::Json(v, _) => v.to_string(),
            ProxyBody::Text(t) => t,
            ProxyBody::Stream(mut s) => {
                use futures_util::StreamExt;
                let mut out = Vec::new();
                while let Some(chunk) = s.next().await {
                    out.extend_from_slice(&chunk.expect("chunk"));
                }
                String::from_utf8_lossy(&out).into_owned()
            }
        }),
        Err(ProxyError::NotFound) => Err(404),
        Err(ProxyError::Gate(GateError::Denied { .. })) => Err(403),
        Err(ProxyError::Gate(GateError::Failed { status: Some(s), .. })) => Err(s),
        Err(e) => panic!("GET {target}: {e:?}"),
    }
}

fn denied(r: Result<Value, GateError>) -> String {
    match r {
        Err(GateError::Denied { reason }) => reason,
        other => panic!("expected a denial, got {other:?}"),
    }
}

/// The arguments of an operation for a job.
type ArgsFor = fn(&str) -> Value;

/// Every new read: allowed for an agent that may see the job, denied without a grant, and a
/// hidden job answers exactly as a missing one does.
#[tokio::test]
async fn every_new_read_is_allowed_denied_and_hides_what_the_agent_may_not_see() {
    let (_t, _s, g) = setup().await;
    let reads: [(&str, ArgsFor); 6] = [
        ("list_artifacts", |j| json!({"job": j, "build": 1})),
        ("read_artifact", |j| json!({"job": j, "build": 1, "path": "x.txt"})),
        ("get_stage_log", |j| json!({"job": j, "build": 1, "stage": "Build"})),
        ("compare_builds", |j| json!({"job": j})),
        ("find_flaky_tests", |j| json!({"job": j})),
        ("get_deployments", |j| json!({"job": j})),
    ];
    for (op, args) in &reads {
        // No grant at all: denied.
        let why = denied(call(&g, "nobody", op, args("team/app")).await);
        assert!(why.contains("no grant"), "{op}: {why}");
        // A job in a folder the agent may not see, and a name that does not exist there: the
        // same answer, so the hidden job's existence cannot be learned.
        let hidden = denied(call(&g, "team-bot", op, args("secret/job")).await);
        let missing = denied(call(&g, "team-bot", op, args("secret/no-such-job")).await);
        assert_eq!(hidden, missing, "{op}");
    }
    // Allowed: each answers about the job.
    let list = ok(&g, "team-bot", "list_artifacts", json!({"job": "team/app", "build": 1})).await;
    assert_eq!(list["total"], 4, "{list}");
    let paths: Vec<&str> =
        list["artifacts"].as_array().expect("list").iter().filter_map(|a| a["path"].as_str()).collect();
    assert!(paths.contains(&"reports/summary.txt") && paths.contains(&"dist/empty.txt"), "{list}");
    let node = ok(&g, "team-bot", "get_node", json!({"name": "win-1"})).await;
    assert_eq!(node["offline"], true, "{node}");
    assert!(node["offline_cause"].as_str().is_some_and(|c| c.contains("disk full")), "{node}");
    let why = denied(call(&g, "nobody", "get_node", json!({"name": "linux-1"})).await);
    assert!(why.contains("no grant"), "{why}");
}

#[tokio::test]
async fn artifacts_are_read_with_log_views_secrets_redacted_and_binaries_as_metadata() {
    let (_t, _s, g) = setup().await;
    let text =
        ok(&g, "team-bot", "read_artifact", json!({"job": "team/app", "build": 1, "path": "reports/summary.txt"}))
            .await;
    let shown = text["text"].as_str().expect("text");
    assert!(shown.contains("first line") && shown.contains("last line"), "{text}");
    assert!(!shown.contains(&secret()) && shown.contains("[REDACTED"), "{text}");
    // The same views as logs: grep finds the one line with context 0.
    let grep = ok(
        &g,
        "team-bot",
        "read_artifact",
        json!({"job": "team/app", "build": 1, "path": "reports/summary.txt", "mode": "grep", "pattern": "last", "context": 0}),
    )
    .await;
    assert_eq!(grep["matches"], 1, "{grep}");
    assert!(!grep["text"].as_str().unwrap_or_default().contains("first line"), "{grep}");
    let head = ok(
        &g,
        "team-bot",
        "read_artifact",
        json!({"job": "team/app", "build": 1, "path": "reports/summary.txt", "mode": "head", "lines": 1}),
    )
    .await;
    assert_eq!(head["last_line"], 1, "{head}");
    // Binary by content (NUL bytes) and by extension: metadata only, no bytes.
    for path in ["bin/tool", "app.jar"] {
        let bin = ok(&g, "team-bot", "read_artifact", json!({"job": "team/app", "build": 1, "path": path})).await;
        assert_eq!(bin["binary"], true, "{bin}");
        assert!(bin.get("text").is_none(), "{bin}");
        assert!(!bin.to_string().contains("MZ"), "{bin}");
    }
}

#[tokio::test]
async fn artifact_paths_that_escape_or_are_not_listed_are_refused_before_jenkins_is_asked() {
    let (twin, _s, g) = setup().await;
    let before = twin.requests_to("/artifact/reports/summary.txt");
    for path in [
        "../1/artifact/reports/summary.txt",
        "reports/../reports/summary.txt",
        "/reports/summary.txt",
        "reports\\summary.txt",
        "reports%2Fsummary.txt",
        "reports%2fsummary.txt",
        "%2e%2e/x",
    ] {
        let r = call(&g, "team-bot", "read_artifact", json!({"job": "team/app", "build": 1, "path": path})).await;
        match r {
            Err(GateError::Failed { status: Some(400), message }) => assert!(message.contains("refused"), "{message}"),
            other => panic!("{path}: {other:?}"),
        }
    }
    // A well-formed path Jenkins does not list for this build: not found, and never requested.
    for path in ["reports/other.txt", "x.txt", "REPORTS/summary.txt"] {
        let r = call(&g, "team-bot", "read_artifact", json!({"job": "team/app", "build": 1, "path": path})).await;
        assert!(matches!(r, Err(GateError::Failed { status: Some(404), .. })), "{path}: {r:?}");
    }
    assert_eq!(twin.requests_to("/artifact/reports/other.txt"), 0);
    assert_eq!(twin.requests_to("/artifact/reports/summary.txt"), before);
    // The proxy does not forward artifact bytes at all.
    assert_eq!(classify("GET", "/job/team/job/app/1/artifact/reports/summary.txt", None), Route::Unknown);
}

#[tokio::test]
async fn stage_logs_come_from_the_node_with_views_and_redaction() {
    let (twin, _s, g) = setup().await;
    let before = twin.requests_to("/consoleText");
    let log = ok(&g, "team-bot", "get_stage_log", json!({"job": "team/pipe", "build": 1, "stage": "Build"})).await;
    let text = log["text"].as_str().expect("text");
    assert!(text.contains("compiling"), "{log}");
    assert!(!text.contains("running tests"), "another stage's lines: {log}");
    assert!(!text.contains(&secret()) && text.contains("[REDACTED"), "{log}");
    // By node id, with a view.
    let id = log["node"].as_str().expect("node id").to_string();
    let by_id = ok(
        &g,
        "team-bot",
        "get_stage_log",
        json!({"job": "team/pipe", "build": 1, "node": id, "mode": "grep", "pattern": "compil"}),
    )
    .await;
    assert_eq!(by_id["matches"], 1, "{by_id}");
    let unknown = call(&g, "team-bot", "get_stage_log", json!({"job": "team/pipe", "build": 1, "stage": "Nope"})).await;
    assert!(matches!(unknown, Err(GateError::Failed { status: Some(404), .. })), "{unknown:?}");
    let both = call(&g, "team-bot", "get_stage_log", json!({"job": "team/pipe", "build": 1})).await;
    assert!(matches!(both, Err(GateError::Failed { status: Some(400), .. })), "{both:?}");
    // get_pipeline_run's failing-stage excerpt is that stage's node log.
    let run = ok(&g, "team-bot", "get_pipeline_run", json!({"job": "team/pipe", "build": 1})).await;
    let excerpt = run["failing_stage_log"].as_str().unwrap_or_default();
    assert!(excerpt.contains("assertion failed"), "{run}");
    // triage_build's error lines and tail come from the failing step's log too.
    let t = ok(&g, "team-bot", "triage_build", json!({"job": "team/pipe", "build": 1})).await;
    assert_eq!(t["error_lines_from"], "the failing step's log (Pipeline REST API)", "{t}");
    let errors = t["error_lines"].as_str().unwrap_or_default();
    assert!(errors.contains("assertion failed") && !errors.contains("compiling"), "{t}");
    assert_eq!(twin.requests_to("/consoleText"), before, "no console was read");
    // Through the proxy: the node's log, cleaned as it streams; hidden jobs are 404.
    let proxied =
        proxy_get(&g, "team-bot", &format!("/job/team/job/pipe/1/execution/node/{id}/log")).await.expect("proxied");
    assert!(proxied.contains("compiling") && !proxied.contains(&secret()), "{proxied}");
    assert_eq!(proxy_get(&g, "team-bot", "/job/secret/job/job/1/execution/node/3/log").await, Err(404));
    assert_eq!(proxy_get(&g, "nobody", "/job/team/job/pipe/1/execution/node/3/log").await, Err(404));
    // Artifacts through the proxy (wfapi): listed with their size.
    let arts = proxy_get(&g, "team-bot", "/job/team/job/pipe/1/wfapi/artifacts").await.expect("artifacts");
    assert!(arts.contains("out/log.txt") && arts.contains("\"size\":18"), "{arts}");
    assert_eq!(proxy_get(&g, "team-bot", "/job/secret/job/job/1/wfapi/artifacts").await, Err(404));
}

#[tokio::test]
async fn a_rebuild_sends_the_builds_parameters_only_within_the_grant() {
    let (twin, _s, g) = setup().await;
    let triggers = || twin.requests_to("/buildWithParameters");
    let before = triggers();
    // Build 2 ran with ENV=prod: the grant allows only staging.
    match call(&g, "team-bot", "rebuild", json!({"job": "team/app", "build": 2, "wait": "none"})).await {
        Err(GateError::Failed { status: Some(403), message }) => {
            assert!(message.contains("ENV") && message.contains("#2"), "{message}")
        }
        other => panic!("a rebuild outside the constraint: {other:?}"),
    }
    assert_eq!(triggers(), before, "nothing was sent");
    // Build 1 ran with ENV=staging: queued through trigger_build's path.
    let v = ok(&g, "team-bot", "rebuild", json!({"job": "team/app", "build": 1, "wait": "start"})).await;
    assert_eq!(v["rebuilt_from"], 1, "{v}");
    assert!(v["build"]["number"].as_u64().is_some_and(|n| n >= 5), "{v}");
    assert_eq!(triggers(), before + 1);
    let started = ok(&g, "root-bot", "get_build", json!({"job": "team/app", "build": v["build"]["number"]})).await;
    assert!(started.to_string().contains("staging"), "{started}");
    // No build grant: denied before anything is read.
    let why = denied(call(&g, "nobody", "rebuild", json!({"job": "team/app", "build": 1})).await);
    assert!(why.contains("no grant"), "{why}");
    // Replay needs config full as well (tests/replay.rs has the rest).
    let why = denied(call(&g, "team-bot", "replay", json!({"job": "team/pipe", "build": 1, "script": "x"})).await);
    assert!(why.contains("job"), "{why}");
    let v = ok(&g, "root-bot", "replay", json!({"job": "team/pipe", "build": 1, "script": "node { echo 'x' }"})).await;
    assert_eq!(v["replayed_from"], 1, "{v}");
}

#[tokio::test]
async fn compare_and_flaky_tests_answer_from_builds_and_test_reports() {
    let (_t, _s, g) = setup().await;
    // Default: the last failed (#4) against the last successful (#3).
    let c = ok(&g, "team-bot", "compare_builds", json!({"job": "team/app"})).await;
    assert_eq!(c["build"]["number"], 4, "{c}");
    assert_eq!(c["against"]["number"], 3, "{c}");
    assert_eq!(c["tests"]["failing_in_build_passing_in_against"], json!(["a.T.one"]), "{c}");
    // #2 against #1: ENV differs, #2's change is listed, a.T.one newly failing.
    let c = ok(&g, "team-bot", "compare_builds", json!({"job": "team/app", "build": 2, "against": 1})).await;
    assert_eq!(c["parameters_differ"], json!([{"name": "ENV", "build": "prod", "against": "staging"}]), "{c}");
    assert!(c["changes_between"].to_string().contains("c2c2c2"), "{c}");
    assert!(!c["changes_between"].to_string().contains("c1c1c1"), "{c}");
    let f = ok(&g, "team-bot", "find_flaky_tests", json!({"job": "team/app"})).await;
    assert_eq!(f["flaky_total"], 1, "{f}");
    assert_eq!(f["flaky"][0]["test"], "a.T.one", "{f}");
    assert_eq!(f["flaky"][0]["flips"], 3, "{f}");
    assert_eq!(f["flaky"][0]["failed"], 2, "{f}");
    let too_many = call(&g, "team-bot", "find_flaky_tests", json!({"job": "team/app", "builds": 51})).await;
    assert!(too_many.is_err(), "{too_many:?}");
}

#[tokio::test]
async fn deployments_judge_their_upstream_and_show_only_what_the_agent_may_see() {
    let (_t, _s, g) = setup().await;
    let d = ok(&g, "team-bot", "get_deployments", json!({"pattern": "deploy/*"})).await;
    let text = d.to_string();
    // deploy/hidden-prod is carved out: not listed, not counted by name.
    assert!(!text.contains("hidden-prod"), "{d}");
    let jobs = d["jobs"].as_array().expect("jobs");
    assert_eq!(jobs.len(), 1, "{d}");
    let deploys = jobs[0]["deploys"].as_array().expect("deploys");
    let by_commit = |c: &str| deploys.iter().find(|x| x["commit"] == c).cloned().unwrap_or_default();
    // From team/app #2, which failed: suspect.
    let bad = by_commit("c2c2c2");
    assert_eq!(bad["upstream"]["job"], "team/app", "{d}");
    assert_eq!(bad["upstream"]["suspect"], true, "{d}");
    // From team/app #3, a success but no longer the last one? #3 is the last success: fine.
    let good = by_commit("c3c3c3");
    assert_eq!(good["upstream"]["suspect"], false, "{d}");
    assert_eq!(good["upstream"]["not_last_success"], false, "{d}");
    // From a job the agent may not see: neither named nor judged.
    let hidden = by_commit("ffffff");
    assert_eq!(hidden["upstream"], json!({"hidden": true}), "{d}");
    assert!(!text.contains("secret/job"), "{d}");
    assert_eq!(jobs[0]["upstreams_not_shown"], 1, "{d}");
    assert!(d["cannot_know"].as_array().is_some_and(|c| !c.is_empty()), "{d}");
    // The carved-out job by name: denied like any job the agent may not see.
    let why = denied(call(&g, "team-bot", "get_deployments", json!({"job": "deploy/hidden-prod"})).await);
    assert!(!why.is_empty());
}

#[tokio::test]
async fn a_node_names_only_the_builds_the_agent_may_see() {
    let (_t, _s, g) = setup().await;
    for job in ["team/long", "secret/job"] {
        ok(&g, "root-bot", "trigger_build", json!({"job": job, "wait": "start"})).await;
    }
    let n = ok(&g, "team-bot", "get_node", json!({"name": "linux-1"})).await;
    assert_eq!(n["busy"], 2, "{n}");
    assert_eq!(n["idle"], 1, "{n}");
    assert_eq!(n["running"].as_array().map(Vec::len), Some(1), "{n}");
    assert_eq!(n["running"][0]["job"], "team/long", "{n}");
    assert_eq!(n["running_hidden"], 1, "{n}");
    assert!(!n.to_string().contains("secret"), "{n}");
    assert!(n["labels"].to_string().contains("\"linux\""), "{n}");
    // The controller itself, by the name an agent would use.
    let builtin = ok(&g, "team-bot", "get_node", json!({"name": "built-in"})).await;
    assert_eq!(builtin["offline"], false, "{builtin}");
    let missing = call(&g, "team-bot", "get_node", json!({"name": "no-such-node"})).await;
    assert!(matches!(missing, Err(GateError::Failed { status: Some(404), .. })), "{missing:?}");
    // Through the proxy: the node's JSON, with the hidden job's build removed.
    let p = proxy_get(&g, "team-bot", "/computer/linux-1/api/json?tree=executors[currentExecutable[url]]").await;
    let p = p.expect("proxied node");
    assert!(p.contains("team/job/long") && !p.contains("secret"), "{p}");
    assert_eq!(proxy_get(&g, "nobody", "/computer/linux-1/api/json").await, Err(403));
    for job in ["team/long", "secret/job"] {
        let _ = call(&g, "root-bot", "stop_build", json!({"job": job, "build": "lastBuild"})).await;
    }
}

/// A 2,000-stage pipeline whose console is over 1 GiB: one stage's log is read from its node
/// alone (the console is never requested), in one answer within the log budget; what jgate reads
/// is bounded by the stage, not the console (a few KiB here, whatever the console's size).
#[tokio::test]
async fn one_stage_of_a_huge_pipeline_is_read_without_its_console() {
    let mut s = String::from(
        "[controller]\nquiet_period = 0\n[[jobs]]\npath = \"big\"\nkind = \"pipeline\"\nscript = \"echo big\"\n[[jobs.builds]]\nresult = \"FAILURE\"\nlog_bytes = 1073741824\n",
    );
    for i in 0..2000 {
        s.push_str(&format!("[[jobs.builds.stages]]\nname = \"stage-{i}\"\nduration_ms = 1000\nlog = \"output of stage {i}\\nline two of {i}\"\n"));
        if i == 1999 {
            s.push_str("status = \"FAILED\"\nerror = \"deploy refused: quota exceeded\"\n");
        }
    }
    let (twin, _server, g) = gate_on(&s).await;
    let admin = Admin::local_cli();
    g.create_agent(&admin, "bot", "", None).await.expect("agent");
    g.grant(&admin, "bot", Group::Status, Level::Read, None, None, vec![]).await.expect("grant");
    let sent_before = twin.log_bytes_sent();
    let log = ok(&g, "bot", "get_stage_log", json!({"job": "big", "build": 1, "stage": "stage-1500"})).await;
    let sent = twin.log_bytes_sent() - sent_before;
    // The stage's own lines (about 100 bytes) were read, not the 1 GiB console.
    assert!(sent > 0 && sent < 4096, "log bytes read from the twin for one stage: {sent}");
    let text = log["text"].as_str().expect("text");
    assert!(text.contains("output of stage 1500") && text.contains("line two of 1500"), "{log}");
    assert!(!text.contains("stage 1499") && !text.contains("stage 1501"), "{log}");
    assert!(text.len() < 4096, "one stage's few lines, not the console: {} bytes", text.len());
    assert_eq!(twin.requests_to("/consoleText"), 0, "the 1 GiB console was never requested");
    assert_eq!(twin.requests_to("/logText/progressiveText"), 0);
    // Exactly one node log was read: the stage's own.
    assert_eq!(twin.requests_to("/log"), 1, "one node log request");
    // Why did it fail: explained from the failing step's own log, still without the console, and
    // the 2,000 stages come back within the answer budget.
    let sent_before = twin.log_bytes_sent();
    let t = ok(&g, "bot", "triage_build", json!({"job": "big", "build": 1})).await;
    assert!(t["verdict"].as_str().is_some_and(|v| v.contains("stage-1999")), "{}", t["verdict"]);
    assert!(t["error_lines_from"].as_str().is_some_and(|f| f.contains("failing step")), "{}", t["error_lines_from"]);
    assert!(t["error_lines"].as_str().is_some_and(|e| e.contains("quota exceeded")), "{}", t["error_lines"]);
    assert!(
        twin.log_bytes_sent() - sent_before < 64 * 1024,
        "triage read {} log bytes",
        twin.log_bytes_sent() - sent_before
    );
    assert_eq!(twin.requests_to("/consoleText") + twin.requests_to("/logText/progressiveText"), 0);
    assert!(t.to_string().len() <= gate::budget::DEFAULT_MAX_BYTES, "triage answer: {} bytes", t.to_string().len());
    let run = ok(&g, "bot", "get_pipeline_run", json!({"job": "big", "build": 1})).await;
    assert!(run.to_string().len() <= gate::budget::DEFAULT_MAX_BYTES, "pipeline run: {} bytes", run.to_string().len());
    assert_eq!(run["stage_count"], 2000, "{}", run["stage_count"]);
    // What the answer leaves out is said: by the stage list's own cap or by the budget.
    let said =
        run["stages_note"].as_str().is_some_and(|n| n.contains("of 2000 stages")) || run.get("omitted").is_some();
    assert!(said, "2,000 stages do not fit one answer: it says what it left out");
    assert_eq!(run["failing_stage"], "stage-1999", "the failing stage is named wherever it is");
}

/// A rebuild is a trigger: under an `--approve` grant it is held until a person approves it, and
/// nothing is sent to Jenkins before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_under_an_approval_grant_waits_for_the_approval() {
    let (twin, _s, g) = gate_on(&scenario()).await;
    let admin = Admin::local_cli();
    g.create_agent(&admin, "careful", "", None).await.expect("agent");
    g.grant(&admin, "careful", Group::Status, Level::Read, None, None, vec![]).await.expect("grant");
    g.grant_with(&admin, "careful", Group::Build, Level::Full, None, Some("team/**"), vec![], true)
        .await
        .expect("approval grant");
    let before = twin.requests_to("/buildWithParameters");
    let held = {
        let g = g.clone();
        tokio::spawn(async move { call(&g, "careful", "rebuild", json!({"job": "team/app", "build": 1})).await })
    };
    let mut pending = None;
    for _ in 0..200 {
        if let Some(a) = g.approvals(false).await.expect("approvals").into_iter().find(|a| a.agent == "careful") {
            pending = Some(a);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let pending = pending.expect("a pending approval of the rebuild");
    assert_eq!(pending.operation, "rebuild");
    assert_eq!(twin.requests_to("/buildWithParameters"), before, "nothing sent while held");
    g.approve(&admin, &pending.id, Some("ok")).await.expect("approve");
    let v = tokio::time::timeout(std::time::Duration::from_secs(30), held).await.expect("released").expect("join");
    let v = v.expect("the approved rebuild runs");
    assert_eq!(v["rebuilt_from"], 1, "{v}");
    assert_eq!(twin.requests_to("/buildWithParameters"), before + 1);
}
