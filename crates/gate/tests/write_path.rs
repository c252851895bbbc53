//! The write path on both stores (SQLite and PostgreSQL, for real): a trigger's identity holds
//! across concurrent calls and processes, an accepted trigger is never reported as failed, a
//! trigger Jenkins never received is retried, waits survive a Jenkins restart, and writes left
//! without an outcome by a stopped process are reconciled against Jenkins.

use std::sync::Arc;
use std::time::Duration;

use gate::audit::Phase;
use gate::catalog::Group;
use gate::policy::Level;
use gate::secrets::MasterKey;
use gate::store::{AuditFilter, Store};
use gate::{Admin, CallOptions, Caller, Gate, Limits};
use jenkins_twin::scenario::FaultSpec;
use jenkins_twin::{Twin, TwinServer};
use serde_json::{Value, json};

mod common;
use common::{Dbs, key_file, temp_dir};

const TOKEN: &str = "11cccccccccccccccccccccccccccccccc";

const SCENARIO: &str = r#"
[controller]
quiet_period = 0
[[jobs]]
path = "deploy"
script = "echo deploying"
[[jobs]]
path = "other"
script = "echo other"
[[jobs]]
path = "slow"
quiet_period = 2
script = "echo slow"
[[jobs]]
path = "long"
kind = "pipeline"
script = "node { stage('Wait') { sleep 600 } }"
"#;

/// A SQLite store of its own (for the tests that are about Jenkins, not the store).
fn sqlite() -> String {
    temp_dir("jgw-db").join("jgate.db").display().to_string()
}

struct Fixture {
    twin: Arc<Twin>,
    _server: TwinServer,
    url: String,
    key: std::path::PathBuf,
}

async fn fixture(url: String) -> Fixture {
    let (twin, server) =
        jenkins_twin::start(SCENARIO, &[("admin".into(), "admin".into(), TOKEN.into())]).await.expect("twin");
    let key = key_file();
    let g = open(&url, &key, Limits::default()).await;
    g.add_controller(&Admin::local_cli(), common::twin_controller("prod", &server, TOKEN), false)
        .await
        .expect("controller");
    g.create_agent(&Admin::local_cli(), "bot", "", None).await.expect("agent");
    g.grant(&Admin::local_cli(), "bot", Group::Build, Level::Full, None, None, vec![]).await.expect("grant");
    g.grant(&Admin::local_cli(), "bot", Group::Status, Level::Read, None, None, vec![]).await.expect("grant");
    Fixture { twin, _server: server, url, key }
}

async fn open(url: &str, key: &std::path::Path, limits: Limits) -> Arc<Gate> {
    let store = Store::open(url).await.expect("store");
    let (master, _) = MasterKey::load_or_create("JGATE_TEST_UNSET_MASTER_KEY", key).expect("master key");
    Arc::new(Gate::open(store, master, None).await.expect("gate").with_limits(limits))
}

fn bot() -> Caller {
    Caller {
        agent: "bot".into(),
        key_id: None,
        surface: gate::audit::Surface::Mcp,
        client_addr: None,
        request_id: "t".into(),
    }
}

/// Jenkins restarting: every request answered 503 ("getting ready to work") for `down`.
fn restart(twin: &Arc<Twin>, down: Duration) {
    twin.set_faults(FaultSpec { error_503_rate: 1.0, ..FaultSpec::default() }, Duration::ZERO);
    let twin = twin.clone();
    tokio::spawn(async move {
        tokio::time::sleep(down).await;
        twin.set_faults(FaultSpec::default(), Duration::ZERO);
    });
}

async fn builds_of(g: &Gate, job: &str) -> u64 {
    let v = g.call(&bot(), "prod", "get_job", json!({"job": job})).await.expect("job");
    v["next_build_number"].as_u64().unwrap_or(1) - 1
}

/// Waits (up to 10 s) until `job` has at least `n` builds; how many it has then.
async fn wait_for_builds(g: &Gate, job: &str, n: u64) -> u64 {
    let mut started = 0;
    for _ in 0..100 {
        started = builds_of(g, job).await;
        if started >= n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    started
}

/// A process that "dies" mid-write: `dying` makes the call (waiting for its build's result), and
/// once `survivor` sees `builds` builds of `job` and a moment has passed, the call is dropped and
/// the process with it. Returns the builds `survivor` saw.
async fn die_during(dying: Arc<Gate>, survivor: &Gate, op: &'static str, args: Value, job: &str, builds: u64) -> u64 {
    let d = dying.clone();
    let call = tokio::spawn(async move { d.call_with(&bot(), Some("prod"), op, args, CallOptions::default()).await });
    let started = wait_for_builds(survivor, job, builds).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    call.abort();
    let _ = call.await;
    drop(dying);
    started
}

/// Runs reconciliation (up to 10 s) until it closes something; how many writes it closed.
async fn reconcile_until_closed(g: &Gate) -> usize {
    let mut closed = 0;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        closed += g.reconcile().await.expect("reconcile");
        if closed > 0 {
            break;
        }
    }
    closed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_idempotency_key_starts_one_build_across_calls_and_processes() {
    let dbs = Dbs::new("jgw").await;
    for (kind, url) in dbs.list.clone() {
        let f = fixture(url).await;
        // Two processes on one store (replicas), ten concurrent calls with one key.
        let a = open(&f.url, &f.key, Limits::default()).await;
        let b = open(&f.url, &f.key, Limits { max_in_flight_per_agent: 20, ..Limits::default() }).await;
        let before = builds_of(&a, "deploy").await;
        let mut calls = Vec::new();
        for i in 0..10 {
            let g = if i % 2 == 0 { a.clone() } else { b.clone() };
            calls.push(tokio::spawn(async move {
                g.call(&bot(), "prod", "trigger_build", json!({"job": "deploy", "idempotency_key": "k-1"})).await
            }));
        }
        let mut numbers = Vec::new();
        for c in calls {
            let v = c.await.expect("join").expect("trigger");
            numbers.push(v["build"]["number"].as_u64().expect("build number"));
        }
        numbers.dedup();
        assert_eq!(numbers.len(), 1, "{kind}: one build for one key: {numbers:?}");
        assert_eq!(builds_of(&a, "deploy").await, before + 1, "{kind}: exactly one build started");
        // A restart (a new process) remembers the key.
        let c = open(&f.url, &f.key, Limits::default()).await;
        let again = c
            .call(&bot(), "prod", "trigger_build", json!({"job": "deploy", "idempotency_key": "k-1"}))
            .await
            .expect("replay");
        assert_eq!(again["replayed"], true, "{kind}");
        assert_eq!(again["build"]["number"].as_u64(), numbers.first().copied(), "{kind}");
        // The same key for another trigger is an error, not the first job's build.
        let err = c
            .call(&bot(), "prod", "trigger_build", json!({"job": "other", "idempotency_key": "k-1"}))
            .await
            .expect_err("other job");
        assert!(err.to_string().contains("already used for another trigger"), "{kind}: {err}");
        assert_eq!(builds_of(&a, "deploy").await, before + 1, "{kind}");
        drop(f.twin);
    }
    dbs.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trigger_jenkins_never_received_is_retried_and_waits_survive_a_restart() {
    let url = sqlite();
    let f = fixture(url).await;
    let g = open(&f.url, &f.key, Limits::default()).await;
    // Jenkins is "starting up" (503 to everything) for 1.5 s: the trigger is refused, so it is
    // provably not scheduled and safe to send again.
    restart(&f.twin, Duration::from_millis(1500));
    let v = g.call(&bot(), "prod", "trigger_build", json!({"job": "deploy"})).await.expect("retried trigger");
    assert!(v["build"]["number"].as_u64().is_some(), "{v}");
    // A restart while the trigger waits for its build (quiet period 2 s): the wait goes on.
    let g2 = g.clone();
    let call = tokio::spawn(async move { g2.call(&bot(), "prod", "trigger_build", json!({"job": "slow"})).await });
    tokio::time::sleep(Duration::from_millis(400)).await;
    restart(&f.twin, Duration::from_millis(2500));
    let v = call.await.expect("join").expect("the wait survives the restart");
    assert!(v["build"]["number"].as_u64().is_some(), "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_after_acceptance_names_the_queue_item_and_says_not_to_retry() {
    let url = sqlite();
    let f = fixture(url).await;
    let g = open(&f.url, &f.key, Limits::default()).await;
    let g2 = g.clone();
    let call = tokio::spawn(async move { g2.call(&bot(), "prod", "trigger_build", json!({"job": "slow"})).await });
    tokio::time::sleep(Duration::from_millis(400)).await;
    // Jenkins now fails every request with 500: not a restart, a broken controller.
    f.twin.set_faults(FaultSpec { error_500_rate: 1.0, ..FaultSpec::default() }, Duration::ZERO);
    let err = call.await.expect("join").expect_err("the wait fails");
    let text = err.to_string();
    assert!(text.contains("the build was queued as item") && text.contains("do not retry"), "{text}");
    f.twin.set_faults(FaultSpec::default(), Duration::ZERO);
    let records = g
        .audit(&AuditFilter { operation: Some("trigger_build".into()), ..AuditFilter::default() })
        .await
        .expect("audit");
    let outcome = records.iter().rev().find(|r| r.entry.phase == Phase::Outcome).expect("outcome");
    assert!(outcome.entry.outcome.as_deref().is_some_and(|o| o.contains("queued as item")), "{outcome:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writes_left_by_a_stopped_process_are_reconciled_against_jenkins() {
    let dbs = Dbs::new("jgw").await;
    for (kind, url) in dbs.list.clone() {
        let f = fixture(url).await;
        let fast = Limits { process_stale_after: Duration::from_millis(500), ..Limits::default() };
        let dying = open(&f.url, &f.key, fast.clone()).await;
        let survivor = open(&f.url, &f.key, fast.clone()).await;
        // A trigger that waits for its build's result (ten minutes): the process "dies" after
        // Jenkins accepted it and the build started.
        let args = json!({"job": "long", "wait": "finish", "idempotency_key": "long-1"});
        let started = die_during(dying, &survivor, "trigger_build", args, "long", 1).await;
        assert!(started > 0, "{kind}: the build started");
        assert!(!survivor.open_writes(Duration::ZERO).await.expect("open").is_empty(), "{kind}: an open write");
        // After the dead process's heartbeat is stale, reconciliation closes its write from
        // Jenkins' answer.
        assert_eq!(reconcile_until_closed(&survivor).await, 1, "{kind}");
        assert!(survivor.open_writes(Duration::ZERO).await.expect("open").is_empty(), "{kind}: nothing left open");
        let records = survivor
            .audit(&AuditFilter { operation: Some("trigger_build".into()), ..AuditFilter::default() })
            .await
            .expect("a");
        let outcome = records.iter().rev().find(|r| r.entry.phase == Phase::Outcome).expect("outcome");
        let text = outcome.entry.outcome.clone().unwrap_or_default();
        assert!(text.contains(&format!("ran as #{started}")), "{kind}: {text}");
        assert_eq!(outcome.entry.build_number, Some(started), "{kind}");
        assert!(survivor.verify_audit(&[]).await.expect("verify").is_ok(), "{kind}");
        // The key now answers with the reconciled build.
        let again = survivor
            .call(
                &bot(),
                "prod",
                "trigger_build",
                json!({"job": "long", "wait": "finish", "idempotency_key": "long-1"}),
            )
            .await
            .expect("replay");
        assert_eq!(again["build"]["number"].as_u64(), Some(started), "{kind}: {again}");
    }
    dbs.cleanup().await;
}

/// A rebuild is a trigger (trigger_build's path): left without an outcome by a stopped process,
/// it is reconciled from its queue item like one, not closed as "unknown".
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rebuild_left_by_a_stopped_process_is_reconciled_like_a_trigger() {
    let f = fixture(sqlite()).await;
    let fast = Limits { process_stale_after: Duration::from_millis(500), ..Limits::default() };
    let survivor = open(&f.url, &f.key, fast.clone()).await;
    survivor.call(&bot(), "prod", "trigger_build", json!({"job": "long", "wait": "start"})).await.expect("build 1");
    survivor.call(&bot(), "prod", "stop_build", json!({"job": "long", "build": 1})).await.expect("stop build 1");
    let dying = open(&f.url, &f.key, fast.clone()).await;
    let args = json!({"job": "long", "build": 1, "wait": "finish"});
    assert_eq!(die_during(dying, &survivor, "rebuild", args, "long", 2).await, 2, "the rebuild started");
    assert_eq!(reconcile_until_closed(&survivor).await, 1);
    let records =
        survivor.audit(&AuditFilter { operation: Some("rebuild".into()), ..AuditFilter::default() }).await.expect("a");
    let outcome = records.iter().rev().find(|r| r.entry.phase == Phase::Outcome).expect("outcome");
    let text = outcome.entry.outcome.clone().unwrap_or_default();
    assert!(text.contains("ran as #2"), "{text}");
    assert_eq!(outcome.entry.build_number, Some(2));
    assert!(survivor.verify_audit(&[]).await.expect("verify").is_ok());
    let _ = survivor.call(&bot(), "prod", "stop_build", json!({"job": "long", "build": 2})).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_or_huge_idempotency_keys_are_refused_before_anything_starts() {
    let url = sqlite();
    let f = fixture(url).await;
    let g = open(&f.url, &f.key, Limits::default()).await;
    let before = builds_of(&g, "deploy").await;
    for key in [String::new(), "k".repeat(201), "k".repeat(1 << 20)] {
        let err = g
            .call(&bot(), "prod", "trigger_build", json!({"job": "deploy", "idempotency_key": key}))
            .await
            .expect_err("refused");
        assert!(err.to_string().contains("idempotency_key must be 1 to 200 bytes"), "{err}");
    }
    assert_eq!(builds_of(&g, "deploy").await, before, "no build started");
}

/// `trigger_build wait=finish` without build events backs off while the build runs: a build of
/// about 8 s is read far fewer times than a poll every 500 ms would (16).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wait_without_events_backs_off_its_polling() {
    let scenario = "[controller]\nquiet_period = 0\n[[jobs]]\npath = \"eight\"\nscript = \"sleep 8\\necho done\"\n";
    let (twin, server) =
        jenkins_twin::start(scenario, &[("admin".into(), "admin".into(), TOKEN.into())]).await.expect("twin");
    let key = key_file();
    let g = open(&sqlite(), &key, Limits::default()).await;
    g.add_controller(&Admin::local_cli(), common::twin_controller("prod", &server, TOKEN), false)
        .await
        .expect("controller");
    g.create_agent(&Admin::local_cli(), "bot", "", None).await.expect("agent");
    g.grant(&Admin::local_cli(), "bot", Group::Build, Level::Full, None, None, vec![]).await.expect("grant");
    let started = std::time::Instant::now();
    let v = g.call(&bot(), "prod", "trigger_build", json!({"job": "eight", "wait": "finish"})).await.expect("trigger");
    let took = started.elapsed();
    assert_eq!(v["build"]["result"], "SUCCESS", "{v}");
    let number = v["build"]["number"].as_u64().expect("number");
    assert!(took >= Duration::from_secs(7), "the build ran about 8 s ({took:?})");
    let reads = twin.requests_to(&format!("/job/eight/{number}/api/json"));
    assert!(reads >= 3, "the wait did poll the build ({reads} reads)");
    assert!(reads <= 10, "{reads} reads of the build in {took:?}: the polling did not back off");
}
