//! Build events and waits (issue 13, docs/events.md), against the twin: waits wake on a build's
//! events (across processes on PostgreSQL: two gates on one database stand for two replicas),
//! many waiters on one build share one poll of Jenkins, and the hook receiver refuses what it
//! must — wrong secrets, unknown controllers, oversized and malformed payloads — counting each and
//! disturbing nothing else.

use std::sync::Arc;
use std::time::{Duration, Instant};

use gate::catalog::Group;
use gate::events::{HookOutcome, MAX_PAYLOAD};
use gate::policy::Level;
use gate::secrets::MasterKey;
use gate::store::{AuditFilter, Store};
use gate::{Admin, Caller, Gate, Limits};
use jenkins_twin::{Twin, TwinServer};
use serde_json::{Value, json};

mod common;
use common::{Dbs, key_file};

const TOKEN: &str = "11dddddddddddddddddddddddddddddddd";

const SCENARIO: &str = r#"
[controller]
quiet_period = 0
[[jobs]]
path = "long"
script = "sleep 600"
[[jobs]]
path = "twenty"
script = "sleep 20"
"#;

struct Fixture {
    twin: Arc<Twin>,
    server: TwinServer,
    key: std::path::PathBuf,
}

async fn open(url: &str, key: &std::path::Path) -> Arc<Gate> {
    let store = Store::open(url).await.expect("store");
    let (master, _) = MasterKey::load_or_create("JGATE_TEST_UNSET_MASTER_KEY", key).expect("master key");
    let limits = Limits { max_in_flight_per_agent: 64, ..Limits::default() };
    Arc::new(Gate::open(store, master, None).await.expect("gate").with_limits(limits))
}

async fn fixture(url: &str, agents: &[&str]) -> (Fixture, Arc<Gate>) {
    let (twin, server) =
        jenkins_twin::start(SCENARIO, &[("admin".into(), "admin".into(), TOKEN.into())]).await.expect("twin");
    let key = key_file();
    let g = open(url, &key).await;
    g.add_controller(&Admin::local_cli(), common::twin_controller("prod", &server, TOKEN), false)
        .await
        .expect("controller");
    for a in agents {
        g.create_agent(&Admin::local_cli(), a, "", None).await.expect("agent");
        g.grant(&Admin::local_cli(), a, Group::Status, Level::Read, None, None, vec![]).await.expect("grant");
        g.grant(&Admin::local_cli(), a, Group::Build, Level::Full, None, None, vec![]).await.expect("grant");
    }
    (Fixture { twin, server, key }, g)
}

fn agent(name: &str) -> Caller {
    Caller {
        agent: name.into(),
        key_id: None,
        surface: gate::audit::Surface::Mcp,
        client_addr: None,
        request_id: "t".into(),
    }
}

/// A Notification plugin payload as Jenkins sends it (jenkins-wire.md §13.1).
fn payload(base: &str, job_url: &str, number: u64, queue_id: u64, phase: &str, status: Option<&str>) -> Vec<u8> {
    let mut build = json!({"full_url": format!("{base}/{job_url}{number}/"), "number": number, "queue_id": queue_id,
        "timestamp": 1, "duration": 0, "phase": phase, "url": format!("{job_url}{number}/"),
        "scm": {"changes": [], "culprits": []}, "log": "", "artifacts": {}});
    if let Some(s) = status {
        build["status"] = json!(s);
    }
    json!({"name": "x", "url": job_url, "build": build}).to_string().into_bytes()
}

async fn start_build(g: &Gate, job: &str) -> (u64, u64) {
    let v =
        g.call(&agent("bot"), "prod", "trigger_build", json!({"job": job, "wait": "start"})).await.expect("trigger");
    (v["build"]["number"].as_u64().expect("number"), v["queue_id"].as_u64().expect("queue id"))
}

fn accepted(o: HookOutcome) {
    assert!(matches!(o, HookOutcome::Accepted(_)), "{o:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_build_event_wakes_a_wait_in_this_process_and_in_another_replica() {
    let dbs = Dbs::new("jge").await;
    for (kind, url) in dbs.list.clone() {
        let (f, a) = fixture(&url, &["bot"]).await;
        // On PostgreSQL a second gate on the same database stands for another replica: it
        // receives the events through LISTEN/NOTIFY. On SQLite, one process does both.
        let b = if kind == "postgres" {
            let b = open(&url, &f.key).await;
            b.listen_events(&url);
            b
        } else {
            a.clone()
        };
        // Let the listener connect before the events are sent (it would catch up anyway).
        tokio::time::sleep(Duration::from_millis(500)).await;
        let secret = a.create_hook(&Admin::local_cli(), "prod", false).await.expect("hook");
        let (number, queue_id) = start_build(&a, "long").await;
        let resource = format!("/long/{number}/api/json");
        let polls_before = f.twin.requests_to(&resource);
        let b2 = b.clone();
        let waiter = tokio::spawn(async move {
            b2.call(&agent("bot"), "prod", "wait_for_build", json!({"job": "long", "build": number, "timeout_s": 60}))
                .await
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        // STARTED: the waiter learns the controller sends events for the build and relies on
        // them, polling only every 15 s as a fallback.
        let base = f.server.url();
        accepted(
            a.receive_hook("prod", &secret, Some(&payload(&base, "job/long/", number, queue_id, "STARTED", None)))
                .await,
        );
        tokio::time::sleep(Duration::from_millis(6000)).await;
        a.call(&agent("bot"), "prod", "stop_build", json!({"job": "long", "build": number})).await.expect("stop");
        // The twin aborts the build within a moment; then Jenkins sends COMPLETED.
        tokio::time::sleep(Duration::from_millis(700)).await;
        let sent = Instant::now();
        let body = payload(&base, "job/long/", number, queue_id, "COMPLETED", Some("ABORTED"));
        accepted(a.receive_hook("prod", &secret, Some(&body)).await);
        let v = tokio::time::timeout(Duration::from_secs(10), waiter)
            .await
            .expect("the wait ends long before its 15 s fallback poll")
            .expect("join")
            .expect("wait_for_build");
        let took = sent.elapsed();
        assert_eq!(v["finished"], true, "{kind}: {v}");
        assert_eq!(v["build"]["result"], "ABORTED", "{kind}: {v}");
        assert!(took < Duration::from_secs(5), "{kind}: woken by the event, not by the fallback poll ({took:?})");
        // Polling alone would have read the build 7 times or more in these 7 s; with events: the
        // first read, one after COMPLETED, and a poll before STARTED arrives on a slow machine.
        let polls = f.twin.requests_to(&resource) - polls_before;
        assert!(polls <= 4, "{kind}: the wait did not poll while it relied on events ({polls} reads)");
        drop(f.twin);
    }
    dbs.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_agents_waiting_on_one_build_share_one_poll_per_interval() {
    let dir = common::temp_dir("jge-db");
    let url = dir.join("jgate.db").display().to_string();
    let names: Vec<String> = (0..50).map(|i| format!("agent-{i}")).collect();
    let mut all: Vec<&str> = names.iter().map(String::as_str).collect();
    all.push("bot");
    let (f, g) = fixture(&url, &all).await;
    let (number, _) = start_build(&g, "twenty").await;
    let resource = format!("/twenty/{number}/api/json");
    let before = f.twin.requests_to(&resource);
    let queue_before = f.twin.requests_to("/api/json") - f.twin.requests_to(&resource);
    let started = Instant::now();
    let mut waits = Vec::new();
    for name in &names {
        let (g, name) = (g.clone(), name.clone());
        waits.push(tokio::spawn(async move {
            g.call(&agent(&name), "prod", "wait_for_build", json!({"job": "twenty", "build": number, "timeout_s": 60}))
                .await
        }));
    }
    for w in waits {
        let v = w.await.expect("join").expect("wait");
        assert_eq!(v["finished"], true, "{v}");
        assert_eq!(v["build"]["result"], "SUCCESS", "{v}");
    }
    let secs = started.elapsed().as_secs_f64();
    let polls = f.twin.requests_to(&resource) - before;
    // One read per second (the coalescing interval) however many wait, plus the final one.
    assert!(
        (polls as f64) <= secs.ceil() + 2.0,
        "50 waiters over {secs:.1} s made {polls} upstream reads of the build; at most one per second expected"
    );
    assert!(polls >= 3, "the waiters did poll ({polls})");
    // Nothing else was read per waiter either.
    let others = f.twin.requests_to("/api/json") - f.twin.requests_to(&resource) - queue_before;
    assert!(others <= 2, "{others} other reads");
    // Each agent's call went through the policy and the audit.
    let records = g
        .audit(&AuditFilter { operation: Some("wait_for_build".into()), ..AuditFilter::default() })
        .await
        .expect("audit");
    let agents: std::collections::BTreeSet<&str> = records.iter().map(|r| r.entry.agent.as_str()).collect();
    assert_eq!(agents.len(), 50, "every waiter's call is audited");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hook_refuses_wrong_secrets_and_bad_payloads_counts_them_and_nothing_else_changes() {
    let dir = common::temp_dir("jge-db");
    let url = dir.join("jgate.db").display().to_string();
    let (f, g) = fixture(&url, &["bot"]).await;
    let base = f.server.url();
    let good = payload(&base, "job/long/", 1, 1, "STARTED", None);
    // No hook yet: as unknown as a controller that does not exist.
    assert!(matches!(g.receive_hook("prod", "anything", Some(&good)).await, HookOutcome::NotFound));
    let secret = g.create_hook(&Admin::local_cli(), "prod", false).await.expect("hook");
    assert_eq!(secret.len(), 64, "256 bits, hex");
    // A second one without --rotate is refused: the first is not silently replaced.
    let again = g.create_hook(&Admin::local_cli(), "prod", false).await.expect_err("exists");
    assert!(again.to_string().contains("--rotate"), "{again}");
    let mut rx = g.events().subscribe();
    // Wrong secrets (another secret, a prefix, one character off, empty) and unknown controllers.
    let mut off = secret.clone().into_bytes();
    off[0] = if off[0] == b'0' { b'1' } else { b'0' };
    let off = String::from_utf8(off).expect("hex");
    for (c, s) in [
        ("prod", "0".repeat(64)),
        ("prod", secret[..32].to_string()),
        ("prod", off),
        ("prod", String::new()),
        ("nope", secret.clone()),
        ("PROD", secret.clone()),
    ] {
        assert!(matches!(g.receive_hook(c, &s, Some(&good)).await, HookOutcome::NotFound), "{c}");
    }
    // Oversized (the HTTP layer passes None once it read past the limit; a body over it here).
    assert!(matches!(g.receive_hook("prod", &secret, None).await, HookOutcome::TooLarge));
    assert!(matches!(g.receive_hook("prod", &secret, Some(&vec![b' '; MAX_PAYLOAD + 1])).await, HookOutcome::TooLarge));
    // Malformed: not JSON, cut short, wrong types, unknown phase, a build of another base, a
    // path that would normalise into another job.
    let bad: Vec<Vec<u8>> = vec![
        b"not json".to_vec(),
        good[..good.len() / 2].to_vec(),
        br#"{"name":"x","url":"job/long/","build":{"number":"1","phase":"STARTED","url":"job/long/1/"}}"#.to_vec(),
        payload(&base, "job/long/", 1, 1, "EXPLODED", None),
        payload(&base, "job/long/", 1, 1, "COMPLETED", Some("GREAT")),
        payload(&base, "http://evil.example/job/long/", 1, 1, "STARTED", None),
        payload(&base, "job/x/job/../job/long/", 1, 1, "STARTED", None),
        br#"[1,2,3]"#.to_vec(),
        vec![0xff, 0xfe, 0x00],
    ];
    for b in &bad {
        assert!(matches!(g.receive_hook("prod", &secret, Some(b)).await, HookOutcome::Malformed(_)));
    }
    assert!(rx.try_recv().is_err(), "nothing refused reached the bus");
    // Still working, and each refusal counted.
    accepted(g.receive_hook("prod", &secret, Some(&good)).await);
    assert_eq!(rx.try_recv().expect("event").job, "long");
    let stats = g.hook_stats("prod").await.expect("stats");
    let count = |k: &str| stats.counts.iter().find(|c| c.kind == k).map_or(0, |c| c.count);
    assert_eq!(
        (count("accepted"), count("wrong_secret"), count("too_large"), count("malformed")),
        (1, 4, 2, bad.len() as i64)
    );
    assert_eq!(stats.unknown.iter().map(|c| c.count).sum::<i64>(), 3, "no hook, unknown name, other case");
    // Rotation: the old secret stops working at once.
    let rotated = g.create_hook(&Admin::local_cli(), "prod", true).await.expect("rotate");
    assert!(matches!(g.receive_hook("prod", &secret, Some(&good)).await, HookOutcome::NotFound));
    accepted(g.receive_hook("prod", &rotated, Some(&good)).await);
    // The secrets appear nowhere in the audit; the changes are audited; the chain verifies.
    let records = g.audit(&AuditFilter::default()).await.expect("audit");
    let text =
        serde_json::to_string(&records.iter().map(|r| r.entry.args.clone()).collect::<Vec<Value>>()).expect("json");
    assert!(!text.contains(&secret) && !text.contains(&rotated), "a hook secret in the audit");
    let hooks = records.iter().filter(|r| r.entry.operation == "admin.controller.hook").count();
    assert_eq!(hooks, 4, "two changes, intent and outcome each");
    assert!(g.verify_audit(&[]).await.expect("verify").is_ok());
    // The controller still answers agents as before.
    g.call(&agent("bot"), "prod", "get_job", json!({"job": "long"})).await.expect("unaffected");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_log_follow_waiting_for_output_is_woken_by_the_builds_event() {
    let dir = common::temp_dir("jge-db");
    let url = dir.join("jgate.db").display().to_string();
    let (f, g) = fixture(&url, &["bot"]).await;
    let secret = g.create_hook(&Admin::local_cli(), "prod", false).await.expect("hook");
    let (number, queue_id) = start_build(&g, "long").await;
    // Where the console ends now (the build then sleeps without a word).
    let now = g
        .call(&agent("bot"), "prod", "get_build_log", json!({"job": "long", "build": number, "mode": "follow"}))
        .await
        .expect("follow");
    let cursor = now["next_cursor"].as_u64().expect("cursor");
    assert_eq!(now["more"], true, "{now}");
    // wait_s only with follow.
    let refused = g
        .call(&agent("bot"), "prod", "get_build_log", json!({"job": "long", "build": number, "wait_s": 5}))
        .await
        .expect_err("wait_s without follow");
    assert!(refused.to_string().contains("follow"), "{refused}");
    let resource = format!("/long/{number}/logText/progressiveText");
    let reads_before = f.twin.requests_to(&resource);
    let g2 = g.clone();
    let follower = tokio::spawn(async move {
        g2.call(
            &agent("bot"),
            "prod",
            "get_build_log",
            json!({"job": "long", "build": number, "mode": "follow", "cursor": cursor, "wait_s": 60}),
        )
        .await
    });
    // A silent console: the follow reads it again after 0.5, 1, 2 and 4 s, then pauses 5 s.
    tokio::time::sleep(Duration::from_millis(8000)).await;
    assert!(!follower.is_finished(), "nothing new was written: the follow still waits");
    let silent_reads = f.twin.requests_to(&resource) - reads_before;
    assert!(silent_reads <= 6, "a silent console is read less and less often ({silent_reads} reads in 8 s)");
    g.call(&agent("bot"), "prod", "stop_build", json!({"job": "long", "build": number})).await.expect("stop");
    // The twin aborts the build within a moment and writes its last lines; Jenkins sends COMPLETED.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let sent = Instant::now();
    let body = payload(&f.server.url(), "job/long/", number, queue_id, "COMPLETED", Some("ABORTED"));
    accepted(g.receive_hook("prod", &secret, Some(&body)).await);
    let v = tokio::time::timeout(Duration::from_secs(10), follower)
        .await
        .expect("the follow answers")
        .expect("join")
        .expect("follow with wait_s");
    let took = sent.elapsed();
    assert!(took < Duration::from_millis(2500), "woken by the event, not by its next read ({took:?})");
    assert_eq!(v["more"], false, "the log is complete: {v}");
    assert!(v["text"].as_str().is_some_and(|t| t.contains("ABORTED")), "the last lines: {v}");
    assert!(v["next_cursor"].as_u64().is_some_and(|n| n > cursor), "{v}");
}
