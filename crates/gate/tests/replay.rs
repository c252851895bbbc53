//! `replay` (issue #14) on the twin, attacks first: only with build AND config full use, nothing
//! sent otherwise; a hidden job answers as a missing one; a freestyle build and an oversized
//! script are refused before anything is sent; the script never reaches the audit; then a
//! replay that runs the new script with the original's parameters (wait start and finish), one
//! held by an approval grant, and one through the governed proxy.

use std::sync::Arc;
use std::time::Duration;

use gate::audit::Surface;
use gate::catalog::Group;
use gate::policy::Level;
use gate::route::{Route, classify};
use gate::secrets::MasterKey;
use gate::store::{AuditFilter, Store};
use gate::{Admin, Caller, Gate, GateError};
use jenkins_twin::{Twin, TwinServer};
use serde_json::{Value, json};

mod common;

const TOKEN: &str = "11cccccccccccccccccccccccccccccccc";

const SCENARIO: &str = r#"
[controller]
quiet_period = 0

[[folders]]
path = "team"
[[folders]]
path = "secret"

[[jobs]]
path = "team/pipe"
kind = "pipeline"
script = "node { echo 'the original script' }"
[[jobs.parameters]]
name = "ENV"
type = "string"
default = "dev"
[[jobs.builds]]
result = "SUCCESS"
parameters = { ENV = "staging" }

[[jobs]]
path = "team/serial"
kind = "pipeline"
concurrent = false
script = "node { echo 'serial' }"
[[jobs.builds]]
result = "SUCCESS"

[[jobs]]
path = "team/free"
script = "echo freestyle"
[[jobs.builds]]
result = "SUCCESS"

[[jobs]]
path = "secret/pipe"
kind = "pipeline"
script = "node { echo 'secret' }"
[[jobs.builds]]
result = "SUCCESS"
"#;

/// The replacement script: a marker that must reach the twin's console and nothing else.
const MARKER: &str = "REPLAY-MARKER-7f3a";

fn script() -> String {
    format!("node {{ echo \"{MARKER} runs with $ENV\" }}")
}

async fn setup() -> (Arc<Twin>, TwinServer, Arc<Gate>) {
    let (twin, server) =
        jenkins_twin::start(SCENARIO, &[("admin".into(), "admin".into(), TOKEN.into())]).await.expect("twin");
    let dir = common::temp_dir("replay");
    let store = Store::open(&dir.join("jgate.db").display().to_string()).await.expect("store");
    let (master, _) =
        MasterKey::load_or_create("JGATE_TEST_UNSET_MASTER_KEY", &dir.join("master.key")).expect("master key");
    let g = Gate::open(store, master, None).await.expect("gate");
    g.add_controller(&Admin::local_cli(), common::twin_controller("prod", &server, TOKEN), false)
        .await
        .expect("controller");
    let admin = Admin::local_cli();
    // replayer: build + config full on team/**; builder: build only; configurer: config only.
    for (agent, groups) in [
        ("replayer", &[Group::Build, Group::Config][..]),
        ("builder", &[Group::Build][..]),
        ("configurer", &[Group::Config][..]),
    ] {
        g.create_agent(&admin, agent, "", None).await.expect("agent");
        g.grant(&admin, agent, Group::Status, Level::Read, None, Some("team/**"), vec![]).await.expect("grant");
        for group in groups {
            g.grant(&admin, agent, *group, Level::Full, None, Some("team/**"), vec![]).await.expect("grant");
        }
    }
    (twin, server, Arc::new(g))
}

fn caller(agent: &str, surface: Surface) -> Caller {
    Caller { agent: agent.into(), key_id: None, surface, client_addr: None, request_id: "replay".into() }
}

async fn call(g: &Gate, agent: &str, op: &str, args: Value) -> Result<Value, GateError> {
    g.call(&caller(agent, Surface::Mcp), "prod", op, args).await
}

fn denied(r: Result<Value, GateError>) -> String {
    match r {
        Err(GateError::Denied { reason }) => reason,
        other => panic!("expected a denial, got {other:?}"),
    }
}

fn replays_sent(twin: &Twin) -> u64 {
    twin.requests_to("/replay/run")
}

/// Every audit record, as JSON text.
async fn audit_text(g: &Gate) -> String {
    let records = g.audit(&AuditFilter::default()).await.expect("audit");
    serde_json::to_string(&records).expect("json")
}

/// The console of build `n` of team/pipe, as the twin has it.
async fn console(server: &TwinServer, n: u64) -> String {
    let url = format!("{}/job/team/job/pipe/{n}/consoleText", server.url());
    let c = reqwest::Client::new();
    for _ in 0..200 {
        let r = c.get(&url).basic_auth("admin", Some(TOKEN)).send().await.expect("console");
        if r.status() == 200 {
            let text = r.text().await.expect("text");
            if text.contains("Finished:") {
                return text;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("build #{n} did not finish");
}

#[tokio::test]
async fn replay_needs_build_and_config_full_and_sends_nothing_otherwise() {
    let (twin, _s, g) = setup().await;
    // The controller's connection test read Jenkins already.
    let reads_before = twin.requests_to("/api/json");
    let args = json!({"job": "team/pipe", "build": 1, "script": script()});
    let why = denied(call(&g, "builder", "replay", args.clone()).await);
    assert!(why.contains("config"), "{why}");
    let why = denied(call(&g, "configurer", "replay", args.clone()).await);
    assert!(why.contains("build"), "{why}");
    // A job outside the grants answers exactly as one that does not exist.
    let hidden =
        denied(call(&g, "replayer", "replay", json!({"job": "secret/pipe", "build": 1, "script": script()})).await);
    let missing =
        denied(call(&g, "replayer", "replay", json!({"job": "secret/no-such", "build": 1, "script": script()})).await);
    assert_eq!(hidden, missing);
    assert_eq!(replays_sent(&twin), 0, "a denied replay reaches Jenkins");
    assert_eq!(twin.requests_to("/api/json"), reads_before, "a denied replay reads Jenkins");
}

#[tokio::test]
async fn a_freestyle_build_or_an_oversized_script_is_refused_before_anything_is_sent() {
    let (twin, _s, g) = setup().await;
    let r = call(&g, "replayer", "replay", json!({"job": "team/free", "build": 1, "script": script()})).await;
    let msg = format!("{r:?}");
    assert!(msg.contains("not a Pipeline run") && msg.contains("rebuild"), "{msg}");
    let big = format!("node {{ echo '{}' }}", "x".repeat(gate::ops::MAX_REPLAY_SCRIPT_BYTES));
    let r = call(&g, "replayer", "replay", json!({"job": "team/pipe", "build": 1, "script": big})).await;
    let msg = format!("{r:?}");
    assert!(msg.contains("256 KiB"), "{msg}");
    let r = call(&g, "replayer", "replay", json!({"job": "team/pipe", "build": 1, "script": "  "})).await;
    assert!(format!("{r:?}").contains("empty"), "{r:?}");
    assert_eq!(replays_sent(&twin), 0);
    // A build that does not exist: Jenkins' 404, nothing sent.
    let r = call(&g, "replayer", "replay", json!({"job": "team/pipe", "build": 99, "script": script()})).await;
    assert!(matches!(r, Err(GateError::Failed { status: Some(404), .. })), "{r:?}");
    assert_eq!(replays_sent(&twin), 0);
    // The refused script is not in the audit either.
    assert!(!audit_text(&g).await.contains("xxxxxxxxxx"));
}

#[tokio::test]
async fn a_replay_runs_the_new_script_with_the_original_parameters_and_the_audit_keeps_no_script() {
    let (twin, server, g) = setup().await;
    let v = call(&g, "replayer", "replay", json!({"job": "team/pipe", "build": 1, "script": script()}))
        .await
        .expect("replay");
    assert_eq!(v["replayed_from"], 1, "{v}");
    assert_eq!(v["build"]["number"], 2, "{v}");
    assert_eq!(replays_sent(&twin), 1);
    let log = console(&server, 2).await;
    assert!(log.contains("Replayed #1"), "{log}");
    assert!(log.contains(&format!("{MARKER} runs with staging")), "{log}");
    assert!(!log.contains("the original script"), "{log}");
    // The new build's causes and parameters, as Jenkins reports them.
    let b = call(&g, "replayer", "get_build", json!({"job": "team/pipe", "build": 2})).await.expect("get_build");
    let text = b.to_string();
    assert!(text.contains("Replayed #1") && text.contains("staging"), "{b}");
    // wait=finish: the result of the replayed build.
    let v =
        call(&g, "replayer", "replay", json!({"job": "team/pipe", "build": 1, "script": script(), "wait": "finish"}))
            .await
            .expect("replay");
    assert_eq!(v["build"]["number"], 3, "{v}");
    assert_eq!(v["build"]["result"], "SUCCESS", "{v}");
    // wait=none: accepted, with what was seen of the new run at once.
    let v = call(&g, "replayer", "replay", json!({"job": "team/pipe", "build": 1, "script": script(), "wait": "none"}))
        .await
        .expect("replay");
    assert_eq!(v["accepted"], true, "{v}");
    assert!(v.get("build").is_some() || v.get("queued").is_some() || v.get("note").is_some(), "{v}");
    // The script is nowhere in the audit: its length and a hash prefix are.
    let audit = audit_text(&g).await;
    assert!(!audit.contains(MARKER), "the script reached the audit");
    assert!(audit.contains(&format!("({} bytes, sha256 ", script().len())), "{audit}");
    assert!(audit.contains("replay of #1"), "the outcome names the replayed build");
}

#[tokio::test]
async fn a_replay_under_an_approval_grant_waits_for_the_approval() {
    let (twin, _s, g) = setup().await;
    let admin = Admin::local_cli();
    g.create_agent(&admin, "careful", "", None).await.expect("agent");
    g.grant(&admin, "careful", Group::Status, Level::Read, None, None, vec![]).await.expect("grant");
    g.grant(&admin, "careful", Group::Config, Level::Full, None, Some("team/**"), vec![]).await.expect("grant");
    g.grant_with(&admin, "careful", Group::Build, Level::Full, None, Some("team/**"), vec![], true)
        .await
        .expect("approval grant");
    let held = {
        let g = g.clone();
        tokio::spawn(async move {
            call(&g, "careful", "replay", json!({"job": "team/pipe", "build": 1, "script": script()})).await
        })
    };
    let mut pending = None;
    for _ in 0..200 {
        if let Some(a) = g.approvals(false).await.expect("approvals").into_iter().find(|a| a.agent == "careful") {
            pending = Some(a);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let pending = pending.expect("a pending approval of the replay");
    assert_eq!(pending.operation, "replay");
    // The approver reads the script itself (the audit keeps only its length and hash).
    assert!(pending.args["script"].as_str().is_some_and(|s| s.contains(MARKER)), "{:?}", pending.args);
    let audited = g
        .audit(&gate::store::AuditFilter { operation: Some("replay".into()), ..Default::default() })
        .await
        .expect("audit");
    assert!(!audited.is_empty() && !format!("{audited:?}").contains(MARKER), "the audit never holds the script");
    assert_eq!(replays_sent(&twin), 0, "nothing sent while held");
    g.approve(&admin, &pending.id, Some("ok")).await.expect("approve");
    let v = tokio::time::timeout(Duration::from_secs(30), held).await.expect("released").expect("join");
    let v = v.expect("the approved replay runs");
    assert_eq!(v["replayed_from"], 1, "{v}");
    assert_eq!(replays_sent(&twin), 1);
}

#[tokio::test]
async fn the_proxy_serves_replay_run_through_the_typed_operation() {
    let (twin, server, g) = setup().await;
    let c = match classify("POST", "/job/team/job/pipe/1/replay/run", None) {
        Route::Op(c) => c,
        other => panic!("not classified: {other:?}"),
    };
    assert_eq!(c.op, "replay");
    // Other spellings, and the action's other endpoint (`replay/rebuild` reruns the build, which
    // must not pass for anything weaker than replay's needs): each is replay or refused, never
    // another operation.
    for (method, path) in [
        ("POST", "/job/team/job/pipe/1/replay/run/"),
        ("POST", "/job/team/job/pipe/1/Replay/run"),
        ("POST", "/job/team/job/pipe/1/replay%2Frun"),
        ("POST", "/job/team/job/pipe/1/replay/rebuild"),
        ("POST", "/job/team/job/pipe/1/replay/"),
        ("GET", "/job/team/job/pipe/1/replay/run"),
        ("POST", "/job/team/job/pipe/1/replay/checkScriptCompile"),
    ] {
        if let Route::Op(other) = classify(method, path, None) {
            assert_eq!(other.op, "replay", "{method} {path} classified as {}", other.op);
        }
    }
    // A permalink is refused before anything is sent (the replayed build must be one number).
    let c_last = match classify("POST", "/job/team/job/pipe/lastBuild/replay/run", None) {
        Route::Op(c) => c,
        other => panic!("not classified: {other:?}"),
    };
    let form = vec![("json".to_string(), json!({"mainScript": script()}).to_string())];
    let r = g.proxy_write(&caller("replayer", Surface::Proxy), "prod", &c_last, &form, None, &[]).await;
    assert!(r.is_err());
    assert_eq!(replays_sent(&twin), 0);
    // Build without config full use: denied, nothing sent.
    let r = g.proxy_write(&caller("builder", Surface::Proxy), "prod", &c, &form, None, &[]).await;
    assert!(r.is_err());
    assert_eq!(replays_sent(&twin), 0);
    // A form without mainScript is refused as Jenkins would, before anything is sent.
    let bad = vec![("json".to_string(), "{}".to_string())];
    let r = g.proxy_write(&caller("replayer", Surface::Proxy), "prod", &c, &bad, None, &[]).await;
    assert!(r.is_err());
    assert_eq!(replays_sent(&twin), 0);
    let r = g.proxy_write(&caller("replayer", Surface::Proxy), "prod", &c, &form, None, &[]).await;
    assert!(r.is_ok(), "{:?}", r.err());
    assert_eq!(replays_sent(&twin), 1);
    let log = console(&server, 2).await;
    assert!(log.contains(MARKER), "{log}");
    assert!(!audit_text(&g).await.contains(MARKER), "the proxied script reached the audit");
}

#[tokio::test]
async fn a_replay_is_reported_only_when_it_is_the_one_match_and_honestly_otherwise() {
    let (_twin, _s, g) = setup().await;
    let long = "node { sleep 600 }";
    // The first replay runs (and holds the job: its runs are not concurrent).
    let v = call(&g, "replayer", "replay", json!({"job": "team/serial", "build": 1, "script": long}))
        .await
        .expect("replay");
    assert_eq!(v["build"]["number"], 2, "{v}");
    // The second waits in the queue: the one replay of #1 there, found as a queue item (build
    // #2 is a replay of #1 too, but numbered below the next number read before the POST).
    let v = call(&g, "replayer", "replay", json!({"job": "team/serial", "build": 1, "script": long, "wait": "none"}))
        .await
        .expect("replay");
    assert!(v["queued"]["id"].as_u64().is_some() && v.get("build").is_none(), "{v}");
    // A third: two replays of #1 wait now; which is this one cannot be told, and it says so.
    let v = call(&g, "replayer", "replay", json!({"job": "team/serial", "build": 1, "script": long, "wait": "none"}))
        .await
        .expect("replay");
    assert!(v.get("build").is_none() && v.get("queued").is_none(), "{v}");
    let note = v["note"].as_str().expect("note");
    assert!(note.contains("Replayed #1") && note.contains("cannot tell"), "{note}");
}

#[tokio::test]
async fn a_replay_counts_as_a_trigger_under_the_hourly_limit() {
    let (twin, _s, g) = setup().await;
    let limits = gate::limits::AgentLimits { calls_per_minute: None, triggers_per_hour: Some(1) };
    g.set_agent_limits(&Admin::local_cli(), "replayer", limits).await.expect("limits");
    let args = json!({"job": "team/pipe", "build": 1, "script": script(), "wait": "none"});
    call(&g, "replayer", "replay", args.clone()).await.expect("the first replay");
    let r = call(&g, "replayer", "replay", args).await;
    assert!(matches!(r, Err(GateError::Limited { .. })), "{r:?}");
    assert_eq!(replays_sent(&twin), 1);
}
