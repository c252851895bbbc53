//! Helpers shared by the binary's integration tests that run `jgate serve`: a data directory (and
//! optionally a PostgreSQL schema of the test's own) for the CLI, `jgate serve` processes, a
//! minimal MCP client over streamable HTTP, and a relay that forwards the twin's Notification
//! plugin posts to a hook URL made after the twin started. Each test file uses a part of them.
#![allow(dead_code)]

use std::io::BufRead;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::body::Bytes;
use axum::routing::post;
use serde_json::{Value, json};

/// The Jenkins API token of the twin's `admin` user in these tests.
pub const TOKEN: &str = "11eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee";

/// Unique across the processes and calls of a test run.
pub fn unique() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() % 1_000_000_000)
        .unwrap_or(0);
    format!("{}_{ms}_{}", std::process::id(), N.fetch_add(1, Ordering::SeqCst))
}

/// A PostgreSQL schema of the test's own (dropped by [`PgSchema::cleanup`]; only its own: other
/// test processes may use theirs). `None` when PostgreSQL is unreachable outside CI; under CI an
/// unreachable PostgreSQL fails the test.
pub struct PgSchema {
    server: String,
    schema: String,
}

impl PgSchema {
    pub async fn new(prefix: &str) -> Option<PgSchema> {
        use sqlx::Connection;
        let server =
            std::env::var("JGATE_TEST_POSTGRES").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
        let schema = format!("{prefix}_{}", unique());
        sqlx::any::install_default_drivers();
        let mut conn = match sqlx::AnyConnection::connect(&server).await {
            Ok(c) => c,
            Err(e) if std::env::var_os("CI").is_some() => panic!("PostgreSQL at {server} is unreachable under CI: {e}"),
            Err(e) => {
                eprintln!("SKIPPING PostgreSQL (not under CI): {server} unreachable: {e}");
                return None;
            }
        };
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}"))).execute(&mut conn).await.expect("schema");
        let _ = conn.close().await;
        Some(PgSchema { server, schema })
    }

    /// The `--db` / `JGATE_DB` URL of this schema.
    pub fn url(&self) -> String {
        format!("{}?options=-c%20search_path%3D{}", self.server, self.schema)
    }

    pub async fn cleanup(self) {
        use sqlx::Connection;
        if let Ok(mut conn) = sqlx::AnyConnection::connect(&self.server).await {
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA IF EXISTS {} CASCADE", self.schema)))
                .execute(&mut conn)
                .await;
            let _ = conn.close().await;
        }
    }
}

/// What every `jgate` command of a test shares: the data directory (master key, SQLite) and the
/// database (SQLite there, or a PostgreSQL URL).
pub struct Env {
    pub dir: PathBuf,
    pub db: Option<String>,
}

impl Env {
    pub fn new(what: &str, db: Option<String>) -> Env {
        let dir = std::env::temp_dir().join(format!("jgate-{what}-{}", unique()));
        Env { dir, db }
    }

    pub fn command(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_jgate"));
        match &self.db {
            Some(db) => c.env("JGATE_DB", db),
            None => c.env_remove("JGATE_DB"),
        };
        c.env("JGATE_DATA_DIR", &self.dir)
            .env_remove("JGATE_MASTER_KEY")
            .env_remove("JGATE_AUDIT_FILE")
            .env_remove("JGATE_URL")
            .env("TWIN_TOKEN", TOKEN)
            .env("USER", "ops-admin")
            .env("NO_COLOR", "1");
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.command().args(args).stdin(Stdio::null()).output().expect("run jgate")
    }

    /// Runs `jgate args` with `input` on standard input.
    pub fn run_with_stdin(&self, args: &[&str], input: &str) -> Output {
        use std::io::Write;
        let mut child = self
            .command()
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn jgate");
        child.stdin.take().expect("stdin").write_all(input.as_bytes()).expect("write");
        child.wait_with_output().expect("wait")
    }

    /// Runs `jgate args`, which must succeed; its standard output.
    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(o.status.success(), "jgate {args:?}:\n{}", text(&o));
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// `jgate --json args`, parsed.
    pub fn json(&self, args: &[&str]) -> Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let out = self.ok(&all);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("jgate {args:?} printed no JSON ({e}): {out}"))
    }

    /// Adds the twin at `url` as controller `name` (its address allowed as private).
    pub fn add_twin(&self, name: &str, url: &str, port: u16) {
        let allow = format!("127.0.0.1:{port}");
        self.ok(&[
            "controller",
            "add",
            name,
            "--url",
            url,
            "--username",
            "admin",
            "--token-env",
            "TWIN_TOKEN",
            "--allow-private",
            &allow,
        ]);
    }

    /// Creates an agent; its key.
    pub fn agent(&self, name: &str) -> String {
        self.json(&["agent", "create", name])["key"].as_str().expect("key").to_string()
    }

    /// Starts `jgate serve` on a free loopback port with `extra` arguments.
    pub fn serve(&self, extra: &[&str]) -> Serve {
        let mut child = self
            .command()
            .args(["serve", "--addr", "127.0.0.1:0"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("jgate serve");
        let mut first = String::new();
        std::io::BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut first).expect("ready line");
        let base = first.split_whitespace().find(|w| w.starts_with("http://")).expect("address").to_string();
        Serve { child, base }
    }

    pub fn remove(&self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// A running `jgate serve`, killed when dropped.
pub struct Serve {
    pub child: Child,
    /// `http://127.0.0.1:PORT`
    pub base: String,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where the relay forwards, and when it forwarded each phase.
#[derive(Default)]
pub struct Relay {
    pub target: Mutex<Option<String>>,
    pub forwarded: Mutex<Vec<(String, Instant)>>,
}

impl Relay {
    /// Starts the relay on a free port: the twin posts to `http://ADDR/hook`.
    pub async fn start() -> (Arc<Relay>, std::net::SocketAddr) {
        let relay = Arc::new(Relay::default());
        let http = reqwest::Client::new();
        let shared = relay.clone();
        let app = axum::Router::new().route(
            "/hook",
            post(move |body: Bytes| {
                let (relay, http) = (shared.clone(), http.clone());
                async move {
                    let target = relay.target.lock().expect("lock").clone();
                    if let Some(t) = target {
                        let phase = serde_json::from_slice::<Value>(&body)
                            .ok()
                            .and_then(|v| v["build"]["phase"].as_str().map(str::to_string))
                            .unwrap_or_default();
                        let sent = Instant::now();
                        let r = http.post(t).header("Content-Type", "application/json").body(body).send().await;
                        assert_eq!(
                            r.map(|r| r.status().as_u16()).ok(),
                            Some(202),
                            "the hook accepts the twin's {phase}"
                        );
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
        (relay, addr)
    }

    /// When the relay forwarded the first event of `phase`.
    pub fn when(&self, phase: &str) -> Option<Instant> {
        self.forwarded.lock().expect("lock").iter().find(|(p, _)| p == phase).map(|(_, t)| *t)
    }

    pub fn phases(&self) -> Vec<String> {
        self.forwarded.lock().expect("lock").iter().map(|(p, _)| p.clone()).collect()
    }
}

/// A minimal MCP client over streamable HTTP for protocol revision 2025-06-18 (a session made by
/// `initialize`): one request, its answer from the SSE stream.
pub struct Mcp {
    pub http: reqwest::Client,
    pub url: String,
    pub key: String,
    pub session: Option<String>,
    next_id: u64,
}

impl Mcp {
    /// A client of `base` (a `jgate serve`) with the agent key `key`; not yet initialized.
    pub fn new(base: &str, key: &str) -> Mcp {
        Mcp { http: reqwest::Client::new(), url: format!("{base}/mcp"), key: key.into(), session: None, next_id: 1 }
    }

    /// Sends one message; the HTTP status and, for a request, its answer.
    pub async fn post(&mut self, body: Value) -> (u16, Option<Value>) {
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
        let status = resp.status().as_u16();
        let Some(id) = body.get("id").cloned() else {
            return (status, None);
        };
        let text = resp.text().await.unwrap_or_default();
        let answer = serde_json::from_str::<Value>(&text).ok().filter(|m| m.get("id") == Some(&id)).or_else(|| {
            text.lines()
                .filter_map(|l| l.strip_prefix("data:"))
                .filter_map(|d| serde_json::from_str::<Value>(d.trim()).ok())
                .find(|m| m.get("id") == Some(&id))
        });
        (status, answer)
    }

    /// Sends a request (its id chosen here); the answer, which must arrive.
    pub async fn request(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let (status, answer) = self.post(json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})).await;
        assert!((200..300).contains(&status), "{method}: HTTP {status}");
        answer.unwrap_or_else(|| panic!("{method}: no answer"))
    }

    /// `initialize` and `notifications/initialized`: a session.
    pub async fn initialize(&mut self) {
        let a = self
            .request(
                "initialize",
                json!({"protocolVersion": "2025-06-18", "capabilities": {},
                    "clientInfo": {"name": "jgate-test", "version": "1"}}),
            )
            .await;
        assert!(a.get("result").is_some(), "initialize: {a}");
        let (status, _) = self.post(json!({"jsonrpc": "2.0", "method": "notifications/initialized"})).await;
        assert!((200..300).contains(&status), "initialized: HTTP {status}");
    }

    /// Calls a tool; its whole JSON-RPC answer.
    pub async fn call(&mut self, tool: &str, arguments: Value) -> Value {
        self.request("tools/call", json!({"name": tool, "arguments": arguments})).await
    }
}

/// A tool answer's text content (or the JSON-RPC error's message).
pub fn answer_text(answer: &Value) -> String {
    answer["result"]["content"][0]["text"]
        .as_str()
        .map(str::to_string)
        .or_else(|| answer["error"]["message"].as_str().map(str::to_string))
        .unwrap_or_else(|| answer.to_string())
}

/// Whether a tool answer is a success.
pub fn succeeded(answer: &Value) -> bool {
    answer.get("result").is_some() && answer["result"]["isError"] != json!(true)
}
