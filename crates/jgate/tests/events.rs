//! Build events end to end: the twin's Notification plugin posts to a running `jgate serve`
//! (through a relay in this test, since the hook's URL holds a secret made after the twin
//! starts); an agent's trigger-and-wait over MCP ends promptly after the COMPLETED event without
//! polling Jenkins every interval; and the receiver's refusals over HTTP (404 alike for a wrong
//! secret and an unknown controller, 413, 400) are counted where `jgate controller hook --stats`
//! and `/hooks/stats` show them.

mod common;

use std::time::{Duration, Instant};

use common::{Env, Mcp, PgSchema, Relay, TOKEN};
use serde_json::{Value, json};

/// One test at a time: each measures how soon a wait ends after an event.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_twins_events_end_a_trigger_and_wait_without_polling_every_interval() {
    let _one = SERIAL.lock().await;
    events_end_waits("sqlite", None, false).await;
}

/// Two `jgate serve` replicas on one PostgreSQL database: the event Jenkins sends to replica A
/// ends the trigger-and-wait an agent runs on replica B.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_event_received_by_one_replica_ends_a_wait_on_another() {
    let _one = SERIAL.lock().await;
    let Some(pg) = PgSchema::new("jgev").await else { return };
    events_end_waits("postgres", Some(pg.url()), true).await;
    pg.cleanup().await;
}

async fn events_end_waits(kind: &str, db: Option<String>, two_replicas: bool) {
    let (relay, relay_addr) = Relay::start().await;
    let toml = format!(
        "[controller]\nquiet_period = 0\n[[jobs]]\npath = \"release/deploy\"\nscript = \"sleep 8\"\n\
         [[jobs.notifications]]\nurl = \"http://{relay_addr}/hook\"\n"
    );
    let (twin, server) =
        jenkins_twin::start(&toml, &[("admin".into(), "admin".into(), TOKEN.into())]).await.expect("twin");
    let env = Env::new(&format!("events-{kind}"), db);
    env.add_twin("prod", &server.url(), server.addr().port());
    let key = env.agent("release-bot");
    env.ok(&["grant", "release-bot", "build", "full"]);
    env.ok(&["grant", "release-bot", "status", "read"]);

    // Replica A receives the events; the agent talks to replica B (the same one on SQLite).
    let serve = env.serve(&[]);
    let base = serve.base.clone();
    let replica_b = two_replicas.then(|| env.serve(&[]));
    let agent_base = replica_b.as_ref().map_or(base.clone(), |b| b.base.clone());

    // The hook, as an administrator sets it up: the endpoint to configure in Jenkins.
    let hook = env.json(&["controller", "hook", "prod", "--public-url", &base]);
    let endpoint = hook["endpoint_url"].as_str().expect("endpoint").to_string();
    assert!(endpoint.starts_with(&format!("{base}/hooks/jenkins/prod/")), "{endpoint}");
    assert_eq!((hook["format"].as_str(), hook["protocol"].as_str()), (Some("JSON"), Some("HTTP")));
    let secret = endpoint.rsplit('/').next().expect("secret").to_string();
    *relay.target.lock().expect("lock") = Some(endpoint.clone());

    // The agent triggers and waits for the result over MCP.
    let mut mcp = Mcp::new(&agent_base, &key);
    mcp.initialize().await;
    let reads_before = twin.requests_to("/deploy/1/api/json");
    let answer =
        mcp.call("trigger_build", json!({"controller": "prod", "job": "release/deploy", "wait": "finish"})).await;
    let answered = Instant::now();
    let result: Value = serde_json::from_str(
        answer["result"]["content"][0]["text"].as_str().unwrap_or_else(|| panic!("no text in {answer}")),
    )
    .unwrap_or_else(|_| answer["result"]["structuredContent"].clone());
    let text = answer.to_string();
    assert!(text.contains("SUCCESS"), "{kind}: the build's result: {result} / {text}");
    let forwarded = relay.forwarded.lock().expect("lock").clone();
    let phases: Vec<&str> = forwarded.iter().map(|(p, _)| p.as_str()).collect();
    assert!(phases.starts_with(&["QUEUED", "STARTED"]) && phases.contains(&"COMPLETED"), "{phases:?}");
    let completed = forwarded.iter().find(|(p, _)| p == "COMPLETED").map(|(_, t)| *t).expect("completed");
    let after = answered.saturating_duration_since(completed);
    assert!(after < Duration::from_secs(3), "{kind}: answered {after:?} after the COMPLETED event");
    // An 8 s build polled from every 0.5 s, slowing down, would be read 8 times or more; with
    // events: the first read, the COMPLETED wake-up, and a poll or two before the first event
    // when the machine is slow.
    let reads = twin.requests_to("/deploy/1/api/json") - reads_before;
    assert!(reads <= 4, "{kind}: {reads} reads of the build while its events flowed");

    // Refusals over HTTP: a wrong secret and an unknown controller answer alike.
    let http = reqwest::Client::new();
    let hook_url = |c: &str, s: &str| format!("{base}/hooks/jenkins/{c}/{s}");
    let good = json!({"name": "deploy", "url": "job/release/job/deploy/", "build": {"number": 1, "phase": "FINALIZED",
        "status": "SUCCESS", "url": "job/release/job/deploy/1/"}})
    .to_string();
    let mut answers = Vec::new();
    for url in [hook_url("prod", &"0".repeat(64)), hook_url("nope", &secret), hook_url("prod", "")] {
        let r = http.post(&url).body(good.clone()).send().await.expect("post");
        answers.push((r.status().as_u16(), r.text().await.unwrap_or_default()));
    }
    assert!(answers.first().is_some_and(|a| a.0 == 404), "{answers:?}");
    assert_eq!(answers.first(), answers.get(1), "a wrong secret answers like an unknown controller");
    let big = format!("{{\"name\":\"{}\"}}", "x".repeat(70 * 1024));
    let r = http.post(hook_url("prod", &secret)).body(big).send().await.expect("post");
    assert_eq!(r.status().as_u16(), 413);
    let r = http.post(hook_url("prod", &secret)).body("{\"name\": \"\u{1b}[31mevil\"}").send().await.expect("post");
    assert_eq!(r.status().as_u16(), 400);
    assert!(!r.text().await.unwrap_or_default().contains("evil"), "the answer quotes nothing of the payload");
    let r = http.post(hook_url("prod", &secret)).body(good.clone()).send().await.expect("post");
    assert_eq!(r.status().as_u16(), 202, "still accepting");
    let stats: Value = http.get(format!("{base}/hooks/stats")).send().await.expect("stats").json().await.expect("json");
    assert_eq!(stats["refused_too_large"], 1, "{stats}");
    assert_eq!(stats["refused_malformed"], 1, "{stats}");
    let cli = env.json(&["controller", "hook", "prod", "--stats"]);
    assert_eq!(cli["counts"]["too_large"]["count"], 1, "{cli}");
    assert_eq!(cli["counts"]["malformed"]["count"], 1, "{cli}");
    assert_eq!(cli["counts"]["wrong_secret"]["count"], 1, "{cli}");
    assert!(cli["counts"]["accepted"]["count"].as_i64().unwrap_or(0) >= 4, "{cli}");
    // The secret is nowhere in what an administrator reads back.
    assert!(!cli.to_string().contains(&secret));
    let audit = env.ok(&["--json", "audit", "--last", "50"]);
    assert!(!audit.contains(&secret), "the hook secret is not in the audit");
    assert!(audit.contains("admin.controller.hook"), "the hook's creation is audited");
    drop((serve, replica_b));
    env.remove();
}
