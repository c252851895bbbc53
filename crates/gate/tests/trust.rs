//! Trust on the call path, on the twin: the policy decides on what Jenkins resolves, targets that
//! only Jenkins can name are verified from its answer, listings are filtered, every answer and
//! error passes the untrusted-text boundary, and calls are bounded. One test per behaviour.

use std::sync::Arc;
use std::time::Duration;

use gate::audit::Phase;
use gate::catalog::Group;
use gate::policy::Level;
use gate::secrets::MasterKey;
use gate::store::{AuditFilter, Store};
use gate::{Admin, CallOptions, Caller, Gate, GateError, Limits};
use jenkins_twin::{Twin, TwinServer};
use serde_json::{Value, json};

mod common;

const TOKEN: &str = "11bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
const GHP: &str = "ghp_ABCDEFGHIJKLMNOPQRSTUVWXYZabcdef0123";

fn scenario() -> String {
    // A console line long enough that a cut at the display limit would fall inside a secret at its end.
    let long = "x".repeat(2030);
    let mut s = format!(
        r#"
[controller]
quiet_period = 0
[[folders]]
path = "release"
[[folders]]
path = "sandbox"
[[folders]]
path = "team"
[[jobs]]
path = "release/deploy"
label = "nowhere"
script = "echo deploying"
[[jobs.parameters]]
name = "ENV"
type = "choice"
choices = ["staging", "production", "leak-{TOKEN}"]
[[jobs]]
path = "sandbox/play"
label = "nowhere"
script = "echo playing"
[[jobs]]
path = "team/open"
script = "echo open"
[[jobs]]
path = "team/secret"
script = "echo secret"
[[jobs]]
path = "noisy"
description = "token {TOKEN} and \u001b]0;owned\u0007 title and {GHP}"
script = "echo noisy"
[[jobs.builds]]
result = "FAILURE"
log = "compiling\nexport GH={GHP}\nerror: failed"
[[jobs.builds.changes]]
commit = "abc123"
author = "mallory"
message = "fix: use {GHP} \u001b[2J\u202e for the cache"
paths = ["src/{GHP}.txt"]
[jobs.builds.tests]
passed = ["a.OkTest.ok"]
[[jobs.builds.tests.failed]]
name = "a.LeakTest.leaks"
error = "expected {TOKEN} but was \u001b[31m{GHP}"
[[jobs]]
path = "noisy-pipe"
kind = "pipeline"
script = "node {{ stage('Build') {{ echo 'x' }} }}"
[[jobs.builds]]
result = "FAILURE"
log = "start\n{LONG}{GHP}\nend"
[[jobs.builds.stages]]
name = "Deploy {GHP}"
status = "FAILED"
error = "token {TOKEN} rejected \u0007"
log = "deploying with {GHP}"
[[jobs]]
path = "flaky"
script = "echo flaky"
[[jobs.builds]]
result = "FAILURE"
log = "step 1\nerror: it broke\nstep 2"
[[jobs.builds]]
result = "SUCCESS"
log = "all good"
[[jobs]]
path = "huge"
script = "echo huge"
[[jobs.builds]]
result = "SUCCESS"
log_bytes = 8388608
[[jobs]]
path = "steady"
script = "echo steady"
[[jobs.builds]]
result = "SUCCESS"
log = "fine"
[[queue]]
job = "release/deploy"
[[queue]]
job = "sandbox/play"
"#,
        LONG = long
    );
    for i in 0..250 {
        s.push_str(&format!("[[jobs]]\npath = \"many/j{i:03}\"\nscript = \"echo {i}\"\n"));
    }
    s.push_str("[[folders]]\npath = \"many\"\n");
    s
}

async fn setup(limits: Limits) -> (Arc<Twin>, TwinServer, Arc<Gate>) {
    let (twin, server) =
        jenkins_twin::start(&scenario(), &[("admin".into(), "admin".into(), TOKEN.into())]).await.expect("twin");
    let dir = common::temp_dir("trust");
    let store = Store::open(&dir.join("jgate.db").display().to_string()).await.expect("store");
    let (master, _) =
        MasterKey::load_or_create("JGATE_TEST_UNSET_MASTER_KEY", &dir.join("master.key")).expect("master key");
    let gate = Gate::open(store, master, None).await.expect("gate").with_limits(limits);
    gate.add_controller(&admin(), common::twin_controller("prod", &server, TOKEN), false).await.expect("controller");
    (twin, server, Arc::new(gate))
}

fn admin() -> Admin {
    Admin::local_cli()
}

fn caller(agent: &str) -> Caller {
    Caller {
        agent: agent.into(),
        key_id: None,
        surface: gate::audit::Surface::Mcp,
        client_addr: None,
        request_id: "surface-id".into(),
    }
}

async fn agent(g: &Gate, name: &str, grants: &[(Group, Level, Option<&str>)]) {
    g.create_agent(&admin(), name, "", None).await.expect("agent");
    for (group, level, jobs) in grants {
        g.grant(&admin(), name, *group, *level, None, *jobs, vec![]).await.expect("grant");
    }
}

async fn queue_ids(g: &Gate) -> Vec<(u64, String)> {
    let admin = "queue-reader";
    if g.grants(admin).await.is_err() {
        agent(g, admin, &[(Group::Status, Level::Read, None)]).await;
    }
    let v = g.call(&caller(admin), "prod", "get_queue", json!({})).await.expect("queue");
    v["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| (i["id"].as_u64().expect("id"), i["job"].as_str().expect("job").to_string()))
        .collect()
}

fn text(v: &Value) -> String {
    v.to_string()
}

#[tokio::test]
async fn cancelling_a_queued_build_needs_rights_on_the_job_that_owns_it() {
    let (_t, _s, g) = setup(Limits::default()).await;
    agent(&g, "sandbox-bot", &[(Group::Build, Level::Full, Some("sandbox/**"))]).await;
    let items = queue_ids(&g).await;
    let (release_item, _) = items.iter().find(|(_, j)| j == "release/deploy").cloned().expect("release item");
    let (sandbox_item, _) = items.iter().find(|(_, j)| j == "sandbox/play").cloned().expect("sandbox item");
    // Naming its own job with someone else's queue item: refused from Jenkins' answer, and the
    // answer is the same as for an item that does not exist.
    let foreign = g
        .call(
            &caller("sandbox-bot"),
            "prod",
            "cancel_queue_item",
            json!({"job": "sandbox/play", "queue_id": release_item}),
        )
        .await
        .expect_err("foreign item");
    let missing = g
        .call(&caller("sandbox-bot"), "prod", "cancel_queue_item", json!({"job": "sandbox/play", "queue_id": 999_999}))
        .await
        .expect_err("missing item");
    assert!(foreign.to_string().contains("is not a queued build of sandbox/play"), "{foreign}");
    assert_eq!(foreign.to_string().replace(&release_item.to_string(), "N"), missing.to_string().replace("999999", "N"));
    // Naming the owner is denied by the policy.
    let denied = g
        .call(
            &caller("sandbox-bot"),
            "prod",
            "cancel_queue_item",
            json!({"job": "release/deploy", "queue_id": release_item}),
        )
        .await;
    assert!(matches!(denied, Err(GateError::Denied { .. })), "{denied:?}");
    assert!(queue_ids(&g).await.iter().any(|(id, _)| *id == release_item), "the release build is still queued");
    // Its own item it may cancel.
    g.call(
        &caller("sandbox-bot"),
        "prod",
        "cancel_queue_item",
        json!({"job": "SANDBOX/play", "queue_id": sandbox_item}),
    )
    .await
    .expect("own item");
    assert!(!queue_ids(&g).await.iter().any(|(id, _)| *id == sandbox_item));
    // The audit names the verified job, and the refused attempt reads as failed.
    let records =
        g.audit(&AuditFilter { agent: Some("sandbox-bot".into()), ..AuditFilter::default() }).await.expect("audit");
    let outcomes: Vec<&str> =
        records.iter().filter(|r| r.entry.phase == Phase::Outcome).filter_map(|r| r.entry.outcome.as_deref()).collect();
    assert!(outcomes.iter().filter(|o| o.starts_with("error:")).count() >= 2, "{outcomes:?}");
}

#[tokio::test]
async fn copying_a_job_needs_config_read_on_the_canonical_source() {
    let (_t, _s, g) = setup(Limits::default()).await;
    agent(&g, "copier", &[(Group::Jobs, Level::Full, Some("sandbox/**")), (Group::Status, Level::Read, None)]).await;
    // Visible is not enough: the copy would reveal the source's whole configuration.
    for from in ["release/deploy", "/job/release/job/deploy/", "RELEASE/Deploy"] {
        let r = g.call(&caller("copier"), "prod", "copy_job", json!({"job": "sandbox/stolen", "from": from})).await;
        match r {
            Err(GateError::Denied { reason }) => assert!(reason.starts_with("from:"), "{reason}"),
            other => panic!("copy from {from} must be denied: {other:?}"),
        }
    }
    g.grant(&admin(), "copier", Group::Config, Level::Read, None, Some("team/**"), vec![]).await.expect("grant");
    // The source is sent in its canonical spelling.
    let v = g
        .call(&caller("copier"), "prod", "copy_job", json!({"job": "sandbox/copy", "from": "/job/team/job/open/"}))
        .await
        .expect("copy");
    assert_eq!(v["from"], "team/open");
    let copy = g.call(&caller("copier"), "prod", "get_job", json!({"job": "sandbox/copy"})).await.expect("the copy");
    assert_eq!(copy["name"], "sandbox/copy");
}

#[tokio::test]
async fn a_folder_lists_only_the_children_the_agent_may_see() {
    let (_t, _s, g) = setup(Limits::default()).await;
    agent(&g, "reader", &[(Group::Status, Level::Read, None)]).await;
    g.grant(&admin(), "reader", Group::Status, Level::Off, None, Some("team/secret"), vec![]).await.expect("off");
    let folder = g.call(&caller("reader"), "prod", "get_job", json!({"job": "team"})).await.expect("folder");
    let names: Vec<&str> =
        folder["items"].as_array().expect("items").iter().filter_map(|i| i["name"].as_str()).collect();
    assert_eq!(names, ["team/open"]);
    let listed = g.call(&caller("reader"), "prod", "list_jobs", json!({"folder": "team"})).await.expect("list");
    assert!(!text(&listed).contains("secret"), "{listed}");
    // A hidden folder and a missing one answer identically, for listing and for reading.
    agent(&g, "team-reader", &[(Group::Status, Level::Read, Some("team/**"))]).await;
    for op in ["list_jobs", "get_job"] {
        let key = if op == "list_jobs" { "folder" } else { "job" };
        let hidden = g.call(&caller("team-reader"), "prod", op, json!({key: "release"})).await;
        let missing = g.call(&caller("team-reader"), "prod", op, json!({key: "no-such-folder"})).await;
        assert_eq!(
            format!("{hidden:?}").replace("release", "X"),
            format!("{missing:?}").replace("no-such-folder", "X"),
            "{op}"
        );
    }
}

#[tokio::test]
async fn job_listings_are_always_paged() {
    let (_t, _s, g) = setup(Limits::default()).await;
    agent(&g, "reader", &[(Group::Status, Level::Read, None)]).await;
    let first = g.call(&caller("reader"), "prod", "list_jobs", json!({"folder": "many"})).await.expect("list");
    assert_eq!(first["jobs"].as_array().map(Vec::len), Some(100));
    assert_eq!(first["total"], 250);
    assert_eq!(first["next_offset"], 100);
    let last = g
        .call(&caller("reader"), "prod", "list_jobs", json!({"folder": "many", "offset": 200, "limit": 500}))
        .await
        .expect("list");
    assert_eq!(last["jobs"].as_array().map(Vec::len), Some(50));
    assert_eq!(last["next_offset"], Value::Null);
    // Folders not expanded at this depth say so.
    let root = g.call(&caller("reader"), "prod", "list_jobs", json!({})).await.expect("root");
    let many = root["jobs"].as_array().expect("jobs").iter().find(|j| j["name"] == "many").cloned().expect("many");
    assert_eq!(many["expanded"], false);
    // ... in the answer itself, with the call that lists it.
    let hint = many["hint"].as_str().unwrap_or_default();
    assert!(hint.contains("not expanded") && hint.contains(r#"list_jobs with folder="many""#), "{many}");
    let inside = g.call(&caller("reader"), "prod", "list_jobs", json!({"folder": "many"})).await.expect("many");
    assert_eq!(inside["total"], 250, "the hint's call lists the folder");
    // An expanded folder has no hint.
    let deeper =
        g.call(&caller("reader"), "prod", "list_jobs", json!({"depth": 2, "limit": 500})).await.expect("depth 2");
    let many = deeper["jobs"].as_array().expect("jobs").iter().find(|j| j["name"] == "many").cloned().expect("many");
    assert_eq!(many["expanded"], true, "{many}");
    assert!(many.get("hint").is_none(), "{many}");
}

#[tokio::test]
async fn answers_over_the_size_cap_are_refused_with_advice() {
    let limits = Limits { max_answer_bytes: 4 * 1024, ..Limits::default() };
    let (_t, _s, g) = setup(limits).await;
    agent(&g, "reader", &[(Group::Status, Level::Read, None)]).await;
    let err = g
        .call(&caller("reader"), "prod", "list_jobs", json!({"folder": "many", "limit": 500}))
        .await
        .expect_err("too large");
    assert!(err.to_string().contains("over jgate's limit"), "{err}");
}

#[tokio::test]
async fn every_string_from_jenkins_passes_the_sanitizer() {
    let (_t, _s, g) = setup(Limits::default()).await;
    agent(&g, "reader", &[(Group::Status, Level::Read, None), (Group::Build, Level::Full, None)]).await;
    for (op, args) in [
        ("get_job", json!({"job": "noisy"})),
        ("get_build", json!({"job": "noisy", "build": 1})),
        ("triage_build", json!({"job": "noisy", "build": 1})),
        ("get_build_log", json!({"job": "noisy", "build": 1})),
        ("get_job", json!({"job": "release/deploy"})),
        ("get_test_report", json!({"job": "noisy", "build": 1})),
        ("get_build_log", json!({"job": "noisy-pipe", "build": 1})),
        ("get_build_log", json!({"job": "noisy-pipe", "build": 1, "mode": "grep", "pattern": "x+"})),
        ("get_pipeline_run", json!({"job": "noisy-pipe", "build": 1})),
        ("triage_build", json!({"job": "noisy-pipe", "build": 1})),
    ] {
        let v = g.call(&caller("reader"), "prod", op, args).await.expect(op);
        let t = text(&v);
        assert!(!t.contains(TOKEN) && !t.contains(GHP), "{op} leaked a secret: {t}");
        // Not even the start of one: a cut must never fall inside a secret.
        assert!(!t.contains(&GHP[..12]), "{op} leaked part of a secret: {t}");
        assert!(
            !t.contains('\u{1b}') && !t.contains('\u{7}') && !t.contains('\u{202e}'),
            "{op} passed an escape sequence or bidi control: {t}"
        );
    }
    // An error that quotes Jenkins (the job's parameter choices) is sanitized for the agent and
    // for the audit alike.
    let err = g
        .call(
            &caller("reader"),
            "prod",
            "trigger_build",
            json!({"job": "release/deploy", "parameters": {"ENV": "nope"}}),
        )
        .await
        .expect_err("bad choice");
    assert!(err.to_string().contains("must be one of") && !err.to_string().contains(TOKEN), "{err}");
    let records = g.audit(&AuditFilter::default()).await.expect("audit");
    let all = serde_json::to_string(&records).expect("json");
    assert!(!all.contains(TOKEN) && !all.contains(GHP), "the audit holds a secret");
    // The sanitizer's count reaches the audit record.
    assert!(records.iter().any(|r| r.entry.operation == "get_job" && r.entry.redactions > 0), "redactions counted");
}

#[tokio::test]
async fn whoami_is_audited_and_request_ids_are_unique() {
    let (_t, _s, g) = setup(Limits::default()).await;
    agent(&g, "reader", &[(Group::Status, Level::Read, None)]).await;
    g.whoami(&caller("reader")).await.expect("whoami");
    g.call(&caller("reader"), "prod", "get_job", json!({"job": "team/open"})).await.expect("job");
    g.call(&caller("reader"), "prod", "get_job", json!({"job": "team/open"})).await.expect("job");
    let records =
        g.audit(&AuditFilter { agent: Some("reader".into()), ..AuditFilter::default() }).await.expect("audit");
    assert!(records.iter().any(|r| r.entry.operation == "whoami"), "whoami audited");
    let mut ids: Vec<&str> = records.iter().map(|r| r.entry.request_id.as_str()).collect();
    let n = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), n, "the surface's own id is not reused as the audit's request id");
}

#[tokio::test]
async fn calls_in_flight_per_agent_are_capped() {
    let limits = Limits { max_in_flight_per_agent: 1, ..Limits::default() };
    let (_t, _s, g) = setup(limits).await;
    agent(&g, "builder", &[(Group::Build, Level::Full, Some("release/**"))]).await;
    // A trigger that waits for a build that never starts (no node has its label) holds the slot.
    let slow = {
        let g = g.clone();
        let cancel = tokio_util::sync::CancellationToken::new();
        let c2 = cancel.clone();
        let h = tokio::spawn(async move {
            g.call_with(
                &caller("builder"),
                Some("prod"),
                "trigger_build",
                json!({"job": "release/deploy", "parameters": {"ENV": "staging"}, "wait": "start"}),
                // The second token (MCP: the connection going away) ends the call as the first does.
                CallOptions {
                    progress: None,
                    cancel: Some(tokio_util::sync::CancellationToken::new()),
                    also_cancel: Some(c2),
                },
            )
            .await
        });
        (h, cancel)
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let busy = g
        .call(
            &caller("builder"),
            "prod",
            "trigger_build",
            json!({"job": "release/deploy", "parameters": {"ENV": "staging"}}),
        )
        .await;
    assert!(matches!(busy, Err(GateError::Busy(_))), "{busy:?}");
    // Cancelling the waiting call ends it and records the cancellation as its outcome.
    slow.1.cancel();
    let ended = tokio::time::timeout(Duration::from_secs(5), slow.0).await.expect("ends promptly").expect("join");
    assert!(matches!(ended, Err(GateError::Cancelled(_))), "{ended:?}");
    let records =
        g.audit(&AuditFilter { agent: Some("builder".into()), ..AuditFilter::default() }).await.expect("audit");
    assert!(records.iter().any(|r| r.entry.phase == Phase::Denied && r.entry.reason.contains("calls in flight")));
    assert!(
        records.iter().any(|r| r.entry.outcome.as_deref().is_some_and(|o| o.starts_with("cancelled:"))),
        "cancellation is an outcome"
    );
}

#[tokio::test]
async fn arguments_are_typed_and_unknown_ones_refused() {
    let (_t, _s, g) = setup(Limits::default()).await;
    agent(&g, "reader", &[(Group::Status, Level::Read, None)]).await;
    let err =
        g.call(&caller("reader"), "prod", "get_job", json!({"job": "team/open", "jobb": 1})).await.expect_err("typo");
    assert!(err.to_string().contains("jobb"), "{err}");
    let err = g.call(&caller("reader"), "prod", "no_such_op", json!({})).await.expect_err("unknown op");
    assert!(err.to_string().contains("unknown operation"), "{err}");
}

#[tokio::test]
async fn carve_outs_hold_against_every_spelling_jenkins_folds_together() {
    let (_t, _s, g) = setup(Limits::default()).await;
    agent(&g, "reader", &[(Group::Status, Level::Read, None), (Group::Config, Level::Read, None)]).await;
    g.grant(&admin(), "reader", Group::Status, Level::Off, None, Some("team/secret"), vec![]).await.expect("off");
    g.grant(&admin(), "reader", Group::Config, Level::Off, None, Some("team/secret"), vec![]).await.expect("off");
    // The twin resolves each of these to team/secret, as Jenkins (Java's case-insensitive order) does.
    for spelling in ["team/ſecret", "TEAM/SECRET", "Team/ſECRET", "team/secret/", "job/team/job/%C5%BFecret"] {
        for op in ["get_job", "get_job_config", "get_build"] {
            let r = g.call(&caller("reader"), "prod", op, json!({"job": spelling})).await;
            assert!(matches!(r, Err(GateError::Denied { .. })), "{op} {spelling}: {r:?}");
        }
    }
    // The copy source is folded the same way.
    g.grant(&admin(), "reader", Group::Jobs, Level::Full, None, Some("team/copies/**"), vec![]).await.expect("jobs");
    let r = g.call(&caller("reader"), "prod", "copy_job", json!({"job": "team/copies/x", "from": "team/ſecret"})).await;
    assert!(matches!(r, Err(GateError::Denied { .. })), "{r:?}");
}

fn proxy_caller(agent: &str) -> Caller {
    Caller { surface: gate::audit::Surface::Proxy, ..caller(agent) }
}

/// What the proxy answers a raw request with: the body as text, or why not.
async fn proxied(g: &Gate, agent: &str, method: &str, target: &str) -> Result<String, String> {
    let (path, query) = target.split_once('?').map_or((target, None), |(p, q)| (p, Some(q)));
    let c = match gate::route::classify(method, path, query) {
        gate::route::Route::Op(c) => c,
        other => return Err(format!("refused: {other:?}")),
    };
    match g.proxy(&proxy_caller(agent), "prod", &c).await {
        Ok(answer) => Ok(match answer.body {
            gate::proxy::ProxyBody::Json(v, _) => v.to_string(),
            gate::proxy::ProxyBody::Text(t) => t,
            gate::proxy::ProxyBody::Stream(mut s) => {
                use futures_util::StreamExt;
                let mut out = Vec::new();
                while let Some(chunk) = s.next().await {
                    out.extend_from_slice(&chunk.map_err(|e| e.to_string())?);
                }
                String::from_utf8_lossy(&out).into_owned()
            }
        }),
        Err(gate::proxy::ProxyError::NotFound) => Err("not found".into()),
        Err(gate::proxy::ProxyError::Gate(e)) => Err(e.to_string()),
    }
}

/// The spelling table of the carve-out test, replayed as raw Jenkins requests through the proxy:
/// every URL Jenkins would resolve to the carved-out job answers like a missing one, listings
/// leave it out, and no answer carries the controller's token or a secret from Jenkins.
#[tokio::test]
async fn the_proxy_holds_the_same_carve_outs_and_never_answers_with_a_secret() {
    let (_t, _s, g) = setup(Limits::default()).await;
    agent(&g, "reader", &[(Group::Status, Level::Read, None), (Group::Config, Level::Read, None)]).await;
    g.grant(&admin(), "reader", Group::Status, Level::Off, None, Some("team/secret"), vec![]).await.expect("off");
    g.grant(&admin(), "reader", Group::Config, Level::Off, None, Some("team/secret"), vec![]).await.expect("off");
    assert!(proxied(&g, "reader", "GET", "/job/team/job/open/api/json").await.is_ok(), "the open job is served");
    for target in [
        "/job/team/job/secret/api/json",
        "/job/team/job/%C5%BFecret/api/json",
        "/job/TEAM/job/SECRET/api/json",
        "/job/Team/job/%C5%BFECRET/api/python",
        "/job/team/job/secret/config.xml",
        "/job/team/job/secret/lastBuild/api/json",
        "/job/team/job/secret/1/consoleText",
        "/job/team/job/secret/1/logText/progressiveText?start=0",
    ] {
        let r = proxied(&g, "reader", "GET", target).await;
        assert_eq!(r, Err("not found".to_string()), "{target}");
    }
    for target in ["/api/json?tree=jobs[name,jobs[name]]", "/job/team/api/json", "/api/json?depth=2"] {
        let body = proxied(&g, "reader", "GET", target).await.expect(target);
        // (Redaction markers say "known-secret": look for the job's own name and URL.)
        let hidden = body.contains("job/secret") || body.contains("\"secret\"") || body.contains("team/secret");
        assert!(body.contains("open") && !hidden, "{target}: {body}");
    }
    for target in [
        "/job/noisy/api/json?depth=1",
        "/job/noisy/1/api/json",
        "/job/noisy/1/consoleText",
        "/job/noisy/1/testReport/api/json",
        "/job/release/job/deploy/api/json?depth=2",
        "/queue/api/json",
    ] {
        let body = proxied(&g, "reader", "GET", target).await.expect(target);
        assert!(!body.contains(TOKEN) && !body.contains(GHP), "{target} leaked: {body}");
    }
}

/// triage_build explains the last failed build by default, reads a failed build's console once
/// for both its error lines and its tail, and does not read the console of a build that succeeded.
#[tokio::test]
async fn triage_reads_the_last_failed_build_and_its_console_once() {
    let (t, _s, g) = setup(Limits::default()).await;
    agent(&g, "reader", &[(Group::Status, Level::Read, None)]).await;
    let v = g.call(&caller("reader"), "prod", "triage_build", json!({"job": "flaky"})).await.expect("triage");
    assert_eq!(v["number"], 1, "the last failed build, not the later success: {v}");
    assert!(text(&v["error_lines"]).contains("it broke"), "{v}");
    assert_eq!(t.requests_to("/job/flaky/1/consoleText"), 1, "one read of the console for both views");
    let v =
        g.call(&caller("reader"), "prod", "triage_build", json!({"job": "flaky", "build": 2})).await.expect("triage");
    assert!(v["verdict"].as_str().is_some_and(|s| s.contains("succeeded")), "{v}");
    assert_eq!(t.requests_to("/job/flaky/2/consoleText"), 0, "a build that succeeded has no log to read");
    // A job that never failed: its last completed build is explained.
    let v = g.call(&caller("reader"), "prod", "triage_build", json!({"job": "steady"})).await.expect("triage");
    assert_eq!(v["number"], 1, "{v}");
    assert!(v["verdict"].as_str().is_some_and(|s| s.contains("succeeded")), "{v}");
}

/// A console larger than anything the proxy would buffer streams through it whole, cleaned.
#[tokio::test]
async fn the_proxy_streams_a_large_console_in_bounded_memory() {
    use futures_util::StreamExt;
    let (_t, _s, g) = setup(Limits::default()).await;
    agent(&g, "reader", &[(Group::Status, Level::Read, None)]).await;
    let c = match gate::route::classify("GET", "/job/huge/1/consoleText", None) {
        gate::route::Route::Op(c) => c,
        other => panic!("{other:?}"),
    };
    let answer = g.proxy(&proxy_caller("reader"), "prod", &c).await.expect("proxied");
    let gate::proxy::ProxyBody::Stream(mut stream) = answer.body else { panic!("a console is streamed") };
    let (mut bytes, mut largest, mut tail) = (0usize, 0usize, Vec::new());
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.expect("chunk");
        bytes += chunk.len();
        largest = largest.max(chunk.len());
        tail.extend_from_slice(&chunk);
        if tail.len() > 4096 {
            tail.drain(..tail.len() - 4096);
        }
    }
    assert!(bytes >= 8 << 20, "the whole log came through: {bytes} bytes");
    assert!(largest <= 2 << 20, "chunks stay small (no whole-log buffer): {largest}");
    assert!(String::from_utf8_lossy(&tail).contains("Finished: SUCCESS"));
}
