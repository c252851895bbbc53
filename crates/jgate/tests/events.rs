//! Build events end to end: the twin's Notification plugin posts to a running `jgate serve`
//! (through a relay in this test, since the hook's URL holds a secret made after the twin
//! starts); an agent's trigger-and-wait over MCP ends promptly after the COMPLETED event without
//! polling Jenkins every interval; and the receiver's refusals over HTTP (404 alike for a wrong
//! secret and an unknown controller, 413, 400) are counted where `jgate controller hook --stats`
//! and `/hooks/stats` show them.

use std::io::BufRead;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::routing::post;
use serde_json::{Value, json};

const TOKEN: &str = "11eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee";

/// The database of a test run: SQLite in the data directory, or a PostgreSQL schema.
static DB: Mutex<Option<String>> = Mutex::new(None);

fn jgate(dir: &std::path::Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_jgate"));
    match DB.lock().ok().and_then(|d| d.clone()) {
        Some(db) => c.env("JGATE_DB", db),
        None => c.env_remove("JGATE_DB"),
    };
    c.env("JGATE_DATA_DIR", dir)
        .env_remove("JGATE_MASTER_KEY")
        .env_remove("JGATE_AUDIT_FILE")
        .env_remove("JGATE_URL")
        .env("USER", "ops-admin")
        .env("NO_COLOR", "1");
    c
}

fn ok(dir: &std::path::Path, args: &[&str]) -> String {
    let o = jgate(dir).args(args).env("TWIN_TOKEN", TOKEN).output().expect("run jgate");
    assert!(
        o.status.success(),
        "jgate {args:?}:\n{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Where the relay forwards, and when it forwarded each phase.
#[derive(Default)]
struct Relay {
    target: Mutex<Option<String>>,
    forwarded: Mutex<Vec<(String, Instant)>>,
}

async fn start_relay(relay: Arc<Relay>) -> std::net::SocketAddr {
    let http = reqwest::Client::new();
    let app = axum::Router::new().route(
        "/hook",
        post(move |body: Bytes| {
            let (relay, http) = (relay.clone(), http.clone());
            async move {
                let target = relay.target.lock().expect("lock").clone();
                if let Some(t) = target {
                    let phase = serde_json::from_slice::<Value>(&body)
                        .ok()
                        .and_then(|v| v["build"]["phase"].as_str().map(str::to_string))
                        .unwrap_or_default();
                    let sent = Instant::now();
                    let r = http.post(t).header("Content-Type", "application/json").body(body).send().await;
                    assert_eq!(r.map(|r| r.status().as_u16()).ok(), Some(202), "the hook accepts the twin's {phase}");
                    relay.forwarded.lock().expect("lock").push((phase, sent));
                }
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    addr
}

/// A minimal MCP client over streamable HTTP: one request, its answer from the SSE stream.
struct Mcp {
    http: reqwest::Client,
    url: String,
    key: String,
    session: Option<String>,
}

impl Mcp {
    async fn send(&mut self, body: Value) -> Option<Value> {
        let mut r = self
            .http
            .post(&self.url)
            .bearer_auth(&self.key)
            .header("Accept", "application/json, text/event-stream")
            .header("MCP-Protocol-Version", "2025-06-18")
            .json(&body);
        if let Some(s) = &self.session {
            r = r.header("Mcp-Session-Id", s);
        }
        let resp = r.send().await.expect("mcp request");
        if let Some(s) = resp.headers().get("mcp-session-id").and_then(|v| v.to_str().ok()) {
            self.session = Some(s.to_string());
        }
        assert!(resp.status().is_success(), "{}", resp.status());
        let id = body.get("id").cloned()?;
        let text = resp.text().await.expect("body");
        text.lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .filter_map(|d| serde_json::from_str::<Value>(d.trim()).ok())
            .find(|m| m.get("id") == Some(&id))
    }
}

fn start_serve(dir: &std::path::Path) -> (std::process::Child, String) {
    let mut serve = jgate(dir)
        .args(["serve", "--addr", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("jgate serve");
    let mut first = String::new();
    std::io::BufReader::new(serve.stdout.take().expect("stdout")).read_line(&mut first).expect("ready line");
    let base = first.split_whitespace().find(|w| w.starts_with("http://")).expect("address").to_string();
    (serve, base)
}

/// The tests run one after another: they share [`DB`].
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_twins_events_end_a_trigger_and_wait_without_polling_every_interval() {
    let _one = SERIAL.lock().await;
    *DB.lock().expect("lock") = None;
    events_end_waits("sqlite", false).await;
}

/// Two `jgate serve` replicas on one PostgreSQL database: the event Jenkins sends to replica A
/// ends the trigger-and-wait an agent runs on replica B.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_event_received_by_one_replica_ends_a_wait_on_another() {
    let _one = SERIAL.lock().await;
    let pg = std::env::var("JGATE_TEST_POSTGRES").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let schema = format!(
        "jgev_{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() % 1_000_000_000)
            .unwrap_or(0)
    );
    sqlx::any::install_default_drivers();
    use sqlx::Connection;
    let mut conn = match sqlx::AnyConnection::connect(&pg).await {
        Ok(c) => c,
        Err(e) if std::env::var_os("CI").is_some() => panic!("PostgreSQL at {pg} is unreachable under CI: {e}"),
        Err(e) => {
            eprintln!("SKIPPING PostgreSQL (not under CI): {pg} unreachable: {e}");
            return;
        }
    };
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}"))).execute(&mut conn).await.expect("schema");
    *DB.lock().expect("lock") = Some(format!("{pg}?options=-c%20search_path%3D{schema}"));
    events_end_waits("postgres", true).await;
    *DB.lock().expect("lock") = None;
    let _ =
        sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))).execute(&mut conn).await;
}

async fn events_end_waits(kind: &str, two_replicas: bool) {
    let relay = Arc::new(Relay::default());
    let relay_addr = start_relay(relay.clone()).await;
    let toml = format!(
        "[controller]\nquiet_period = 0\n[[jobs]]\npath = \"release/deploy\"\nscript = \"sleep 8\"\n\
         [[jobs.notifications]]\nurl = \"http://{relay_addr}/hook\"\n"
    );
    let (twin, server) =
        jenkins_twin::start(&toml, &[("admin".into(), "admin".into(), TOKEN.into())]).await.expect("twin");
    let dir = std::env::temp_dir().join(format!("jgate-events-{kind}-{}", std::process::id()));
    let allow = format!("127.0.0.1:{}", server.addr().port());
    ok(
        &dir,
        &[
            "controller",
            "add",
            "prod",
            "--url",
            &server.url(),
            "--username",
            "admin",
            "--token-env",
            "TWIN_TOKEN",
            "--allow-private",
            &allow,
        ],
    );
    let created: Value = serde_json::from_str(&ok(&dir, &["--json", "agent", "create", "release-bot"])).expect("json");
    let key = created["key"].as_str().expect("key").to_string();
    ok(&dir, &["grant", "release-bot", "build", "full"]);
    ok(&dir, &["grant", "release-bot", "status", "read"]);

    // Replica A receives the events; the agent talks to replica B (the same one on SQLite).
    let (mut serve, base) = start_serve(&dir);
    let mut replica_b = two_replicas.then(|| start_serve(&dir));
    let agent_base = replica_b.as_ref().map_or(base.clone(), |(_, b)| b.clone());

    // The hook, as an administrator sets it up: the endpoint to configure in Jenkins.
    let hook: Value = serde_json::from_str(&ok(&dir, &["--json", "controller", "hook", "prod", "--public-url", &base]))
        .expect("json");
    let endpoint = hook["endpoint_url"].as_str().expect("endpoint").to_string();
    assert!(endpoint.starts_with(&format!("{base}/hooks/jenkins/prod/")), "{endpoint}");
    assert_eq!((hook["format"].as_str(), hook["protocol"].as_str()), (Some("JSON"), Some("HTTP")));
    let secret = endpoint.rsplit('/').next().expect("secret").to_string();
    *relay.target.lock().expect("lock") = Some(endpoint.clone());

    // The agent triggers and waits for the result over MCP.
    let mut mcp = Mcp { http: reqwest::Client::new(), url: format!("{agent_base}/mcp"), key, session: None };
    mcp.send(json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-06-18",
        "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}))
        .await
        .expect("initialize");
    mcp.send(json!({"jsonrpc": "2.0", "method": "notifications/initialized"})).await;
    let reads_before = twin.requests_to("/deploy/1/api/json");
    let answer = mcp
        .send(json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "trigger_build",
            "arguments": {"controller": "prod", "job": "release/deploy", "wait": "finish"}}}))
        .await
        .expect("answer");
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
    let cli: Value =
        serde_json::from_str(&ok(&dir, &["--json", "controller", "hook", "prod", "--stats"])).expect("stats json");
    assert_eq!(cli["counts"]["too_large"]["count"], 1, "{cli}");
    assert_eq!(cli["counts"]["malformed"]["count"], 1, "{cli}");
    assert_eq!(cli["counts"]["wrong_secret"]["count"], 1, "{cli}");
    assert!(cli["counts"]["accepted"]["count"].as_i64().unwrap_or(0) >= 4, "{cli}");
    // The secret is nowhere in what an administrator reads back.
    assert!(!cli.to_string().contains(&secret));
    let audit = ok(&dir, &["--json", "audit", "--last", "50"]);
    assert!(!audit.contains(&secret), "the hook secret is not in the audit");
    assert!(audit.contains("admin.controller.hook"), "the hook's creation is audited");
    let _ = serve.kill();
    let _ = serve.wait();
    if let Some((mut b, _)) = replica_b.take() {
        let _ = b.kill();
        let _ = b.wait();
    }
}
