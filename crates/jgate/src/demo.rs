//! `jgate demo`: the whole story on embedded defaults. Starts the Jenkins twin (demo scenario)
//! and jgate on SQLite in a temporary directory, connects the controller, creates two agents,
//! then plays a short session through the real MCP HTTP endpoint: list jobs, triage the failing
//! build (a leaked token in its log is redacted), trigger a release build and wait for it, a
//! denied call, the audit trail in plain English, and the chain verified.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use gate::catalog::Group;
use gate::policy::Level;
use gate::secrets::MasterKey;
use gate::store::{AuditFilter, Store};
use gate::{Gate, NewController};
use secrecy::SecretString;
use serde_json::{Value, json};

#[derive(Args)]
pub struct DemoArgs {
    /// Keep everything running afterwards and print the MCP URL, the agent keys and client configs.
    #[arg(long)]
    serve: bool,
    /// Address of jgate's MCP server (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    addr: SocketAddr,
}

const TWIN_TOKEN: &str = "11aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

/// A minimal MCP client over streamable HTTP (JSON-RPC POSTs, SSE answers) — enough for the
/// scripted session, and a faithful picture of what an agent's client does.
struct McpClient {
    http: reqwest::Client,
    url: String,
    key: String,
    session: Option<String>,
    next_id: u64,
}

impl McpClient {
    async fn connect(url: &str, key: &str) -> anyhow::Result<McpClient> {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(120)).build()?;
        let mut c = McpClient { http, url: url.to_string(), key: key.to_string(), session: None, next_id: 0 };
        c.request("initialize", json!({"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "jgate-demo", "version": env!("CARGO_PKG_VERSION")}}), |_| {}).await?;
        c.notify("notifications/initialized").await?;
        Ok(c)
    }

    fn post(&self, body: &Value) -> reqwest::RequestBuilder {
        let mut r = self
            .http
            .post(&self.url)
            .bearer_auth(&self.key)
            .header("Accept", "application/json, text/event-stream")
            .header("MCP-Protocol-Version", "2025-06-18")
            .json(body);
        if let Some(s) = &self.session {
            r = r.header("Mcp-Session-Id", s);
        }
        r
    }

    async fn notify(&mut self, method: &str) -> anyhow::Result<()> {
        let resp = self.post(&json!({"jsonrpc": "2.0", "method": method})).send().await?;
        if !resp.status().is_success() {
            bail!("{method}: HTTP {}", resp.status());
        }
        Ok(())
    }

    /// Sends a request; `on_progress` sees progress notifications; returns the result.
    async fn request(
        &mut self,
        method: &str,
        params: Value,
        mut on_progress: impl FnMut(&Value),
    ) -> anyhow::Result<Value> {
        self.next_id += 1;
        let id = self.next_id;
        let resp = self.post(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})).send().await?;
        if let Some(s) = resp.headers().get("mcp-session-id").and_then(|v| v.to_str().ok()) {
            self.session = Some(s.to_string());
        }
        let status = resp.status();
        if !status.is_success() {
            bail!("{method}: HTTP {status}: {}", resp.text().await.unwrap_or_default());
        }
        let mut stream = resp.bytes_stream();
        let mut buf = String::new();
        use futures_util::StreamExt;
        while let Some(chunk) = stream.next().await {
            buf.push_str(&String::from_utf8_lossy(&chunk?));
            while let Some(pos) = buf.find('\n') {
                let line: String = buf.drain(..=pos).collect();
                let Some(data) = line.trim_end().strip_prefix("data:") else { continue };
                let Ok(msg) = serde_json::from_str::<Value>(data.trim()) else { continue };
                if msg.get("method").and_then(Value::as_str) == Some("notifications/progress") {
                    on_progress(&msg["params"]);
                } else if msg.get("id").and_then(Value::as_u64) == Some(id) {
                    if let Some(e) = msg.get("error") {
                        bail!("{method}: {}", e["message"]);
                    }
                    return Ok(msg["result"].clone());
                }
            }
        }
        bail!("{method}: the stream ended without an answer")
    }

    async fn call(&mut self, tool: &str, args: Value, on_progress: impl FnMut(&Value)) -> anyhow::Result<Value> {
        self.request(
            "tools/call",
            json!({"name": tool, "arguments": args, "_meta": {"progressToken": format!("demo-{tool}")}}),
            on_progress,
        )
        .await
    }
}

fn heading(n: u32, text: &str) {
    println!("\n\x1b[1m{n}. {text}\x1b[0m");
}

fn plain_heading(n: u32, text: &str) {
    println!("\n{n}. {text}");
}

pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let color = crate::term::color(crate::term::Stream::Stdout);
    let head = |n: u32, t: &str| if color { heading(n, t) } else { plain_heading(n, t) };

    // The twin: a realistic Jenkins with folders, pipelines, a failing build and an offline node.
    let sc = crate::twin_cmd::load_scenario(Some("demo"))?;
    let twin = jenkins_twin::Twin::new(&sc, &[("admin".into(), "admin".into(), TWIN_TOKEN.into())])?;
    let twin_server = twin.serve("127.0.0.1:0".parse()?).await.context("cannot start the twin")?;

    // jgate on SQLite in a temporary directory.
    let dir = std::env::temp_dir().join(format!("jgate-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let store = Store::open(&dir.join("jgate.db").display().to_string()).await?;
    let (master, _) = MasterKey::load_or_create("JGATE_DEMO_UNSET", &dir.join("master.key"))?;
    let gate = Arc::new(Gate::open(store, master, None).await?);
    let admin = gate::Admin::new("demo", gate::audit::Surface::Cli);
    println!("jgate demo — a Jenkins twin at {} and jgate (SQLite in {})", twin_server.url(), dir.display());
    println!(
        "The twin listens on 127.0.0.1, which jgate refuses by default (SSRF protection); it is reached through the private-access allow-list entry 127.0.0.1:{}.",
        twin_server.addr().port()
    );
    gate.add_controller(
        &admin,
        NewController {
            name: "prod".into(),
            url: twin_server.url(),
            username: "admin".into(),
            token: SecretString::from(TWIN_TOKEN.to_string()),
            password: false,
            allow_private: vec![format!("127.0.0.1:{}", twin_server.addr().port())],
            ca_pem: None,
            insecure: false,
        },
        false,
    )
    .await?;
    let (_, triage_key) = gate.create_agent(&admin, "triage-bot", "reads everything", None).await?;
    let (_, release_key) = gate.create_agent(&admin, "release-bot", "deploys releases to staging", None).await?;
    gate.grant(&admin, "triage-bot", Group::Status, Level::Read, None, None, vec![]).await?;
    gate.grant(&admin, "release-bot", Group::Status, Level::Read, None, Some("release/**"), vec![]).await?;
    gate.grant(
        &admin,
        "release-bot",
        Group::Build,
        Level::Full,
        Some("prod"),
        Some("release/**"),
        vec!["ENV=staging".parse()?],
    )
    .await?;
    let triage_key = gate::gate::expose(&triage_key.secret).to_string();
    let release_key = gate::gate::expose(&release_key.secret).to_string();
    println!("Agents: triage-bot (read everywhere), release-bot (trigger release/** with ENV ∈ {{staging}}).");

    // jgate's MCP server, in this process.
    let listener = tokio::net::TcpListener::bind(args.addr).await?;
    let local = listener.local_addr()?;
    let app = crate::serve::app(gate.clone(), local, &[], &[]);
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await;
    });
    let mcp_url = format!("http://{local}/mcp");
    println!("MCP endpoint: {mcp_url}");

    let mut triage = McpClient::connect(&mcp_url, &triage_key).await?;
    let mut release = McpClient::connect(&mcp_url, &release_key).await?;

    head(1, "triage-bot lists the jobs (tools/call list_jobs)");
    let r = triage.call("list_jobs", json!({"depth": 3}), |_| {}).await?;
    print_jobs(&r["structuredContent"]["jobs"]);

    head(2, "triage-bot asks why team-api/api-server last failed (triage_build)");
    let r = triage.call("triage_build", json!({"job": "team-api/api-server"}), |_| {}).await?;
    if r["isError"] == Value::Bool(true) {
        bail!("triage_build failed: {}", r["content"][0]["text"].as_str().unwrap_or("?"));
    }
    let t = &r["structuredContent"];
    println!("   {}", t["verdict"].as_str().unwrap_or("?"));
    if let Some(tests) = t["tests"]["failing_tests"].as_array() {
        for ft in tests {
            println!("   failing test: {} — {}", ft["name"].as_str().unwrap_or(""), ft["error"].as_str().unwrap_or(""));
        }
    }
    for c in t["changes_since_last_success"].as_array().into_iter().flatten() {
        println!(
            "   change in #{}: {} ({})",
            c["build"],
            c["change"]["message"].as_str().unwrap_or(""),
            c["change"]["author"].as_str().unwrap_or("")
        );
    }
    println!("   error lines from the log (marked untrusted; {} secret(s) redacted):", t["redactions"]);
    for line in t["error_lines"]
        .as_str()
        .unwrap_or("")
        .lines()
        .filter(|l| l.contains("REDACTED") || l.contains("FAILED") || l.contains("AssertionError"))
        .take(4)
    {
        println!("   {line}");
    }

    head(3, "release-bot triggers release/deploy-production with ENV=staging and waits (trigger_build, wait=finish)");
    let mut last_len = 0;
    let tty = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let r = release
        .call(
            "trigger_build",
            json!({"job": "release/deploy-production", "parameters": {"ENV": "staging"}, "wait": "finish"}),
            |p| {
                let msg = p["message"].as_str().unwrap_or("");
                if tty {
                    let bar = "#".repeat((p["progress"].as_f64().unwrap_or(0.0) as usize).min(30));
                    let line = format!("\r   [{bar:<30}] {msg:<60}");
                    last_len = line.len();
                    print!("{line}");
                    let _ = std::io::stdout().flush();
                } else if !msg.contains("running for") {
                    println!("   progress: {msg}");
                }
            },
        )
        .await?;
    if last_len > 0 {
        println!();
    }
    if r["isError"] == Value::Bool(true) {
        bail!("trigger_build failed: {}", r["content"][0]["text"].as_str().unwrap_or("?"));
    }
    let b = &r["structuredContent"]["build"];
    println!("   build #{} of release/deploy-production: {}", b["number"], b["result"].as_str().unwrap_or("?"));

    head(4, "release-bot tries to deploy to production, and triage-bot tries to delete a job");
    for (client, tool, args) in [
        (
            &mut release,
            "trigger_build",
            json!({"job": "release/deploy-production", "parameters": {"ENV": "production"}}),
        ),
        (&mut triage, "delete_job", json!({"job": "team-api/api-server"})),
    ] {
        let r = client.call(tool, args, |_| {}).await?;
        println!("   {tool}: isError={} — {}", r["isError"], r["content"][0]["text"].as_str().unwrap_or(""));
    }

    head(5, "The audit trail (jgate audit), in plain English");
    for rec in gate.audit(&AuditFilter::default()).await? {
        let mark = if rec.entry.allowed { "  " } else { "✗ " };
        println!("   #{:<3} {mark}{}", rec.seq, rec.sentence);
    }
    match gate.verify_audit(&[]).await? {
        Ok(n) => println!(
            "   audit chain verified: {n} records, HMAC-chained (edits, deletions and reorderings would be detected)"
        ),
        Err(e) => bail!("the audit chain does not verify: {e}"),
    }

    if args.serve {
        println!("\nEverything keeps running. MCP endpoint: {mcp_url}");
        println!("  triage-bot key:  {triage_key}");
        println!("  release-bot key: {release_key}");
        print_client_configs(&mcp_url, &triage_key, &dir);
        let link = console_link(&gate, &admin, local).await?;
        println!("\nThe web console (administrator demo-admin; the link works once, for 10 minutes):");
        println!("  {link}");
        println!(
            "  another link: jgate console login --admin demo-admin --url http://{local} (with JGATE_DATA_DIR={})",
            dir.display()
        );
        println!("Ctrl-C stops it.");
        let _ = tokio::signal::ctrl_c().await;
    } else {
        println!("\nDone. `jgate demo --serve` keeps it running and prints ready-to-paste client configs.");
    }
    server.abort();
    drop(twin_server);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// The flat, paged listing, indented by folder depth.
fn print_jobs(jobs: &Value) {
    for j in jobs.as_array().into_iter().flatten() {
        let name = j["name"].as_str().unwrap_or("?");
        let color = j["color"].as_str().map(|c| format!(" ({c})")).unwrap_or_default();
        println!("{}{name}{color}", "   ".repeat(name.matches('/').count() + 1));
    }
}

fn print_client_configs(url: &str, key: &str, dir: &std::path::Path) {
    let bearer = format!("Bearer {key}");
    println!("\nClaude Code:\n  claude mcp add --transport http jgate {url} --header \"Authorization: {bearer}\"");
    println!(
        "Cursor (~/.cursor/mcp.json):\n  {}",
        json!({"mcpServers": {"jgate": {"url": url, "headers": {"Authorization": bearer}}}})
    );
    println!(
        "VS Code (.vscode/mcp.json):\n  {}",
        json!({"servers": {"jgate": {"type": "http", "url": url, "headers": {"Authorization": bearer}}}})
    );
    // Claude Desktop's config file takes stdio servers only. The stdio server must open the demo's
    // own store, so the data directory travels with it.
    let exe = std::env::current_exe().map(|p| p.display().to_string()).unwrap_or_else(|_| "jgate".into());
    println!(
        "Claude Desktop (claude_desktop_config.json, stdio) or any client that starts the server itself:\n  {}",
        json!({"mcpServers": {"jgate": {"command": exe, "args": ["mcp"],
            "env": {"JGATE_AGENT_KEY": key, "JGATE_DATA_DIR": dir.display().to_string()}}}})
    );
    println!("(These work while the demo runs: its data directory is removed when it stops.)");
}

/// An administrator for the demo's console, with a random password nobody needs (the one-time
/// link logs in), and its first login link.
async fn console_link(gate: &gate::Gate, admin: &gate::Admin, local: SocketAddr) -> anyhow::Result<String> {
    use rand::Rng;
    let password: String =
        rand::thread_rng().sample_iter(&rand::distributions::Alphanumeric).take(32).map(char::from).collect();
    gate.create_admin(admin, "demo-admin", &secrecy::SecretString::from(password)).await?;
    let token = gate.console_login_link(admin, "demo-admin").await?;
    Ok(format!("http://{local}/console/link?token={}", gate::gate::expose(&token)))
}
