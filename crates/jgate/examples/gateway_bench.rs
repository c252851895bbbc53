//! Benchmark: jgate side by side with the same calls made directly to the Jenkins twin, in one
//! run, reporting ratios against the goals of issue #9.
//!
//! ```text
//! cargo xtask bench                                  # everything, 60 s soak, writes docs/benchmarks.md
//! cargo xtask bench --soak-minutes 30                # the full 30-minute soak
//! cargo build --release -p jgate --bin jgate && \
//!   cargo run --release -p jgate --example gateway_bench -- --help
//! ```
//!
//! The twin runs in this process (on its own runtime) so its request counter can be read; `jgate
//! serve` runs as a child process (the release binary next to this example, or `--jgate`) on a
//! temporary data directory set up with the CLI exactly as an administrator would: two
//! controllers (`prod` straight to the twin, `metered` through a byte-counting TCP relay in this
//! process), one agent per simulated client, `status read` grants. Agents speak MCP over
//! streamable HTTP (initialize, notifications/initialized, tools/call) on kept-alive connections;
//! the direct side uses kept-alive HTTP GETs with basic auth. All traffic stays on 127.0.0.1 and
//! every load loop is bounded in count and time.
//!
//! Measured: added latency of a read (`get_job` vs `GET /job/app/api/json`), calls/s at 8, 32
//! and 64 concurrent agents vs the twin's own rate, the tail of a 1 GiB console log (time and
//! bytes fetched from the twin), 20 agents polling one build (upstream requests per interval),
//! and jgate's resident memory over a soak.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use clap::Parser;
use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TWIN_TOKEN: &str = "11bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
/// The job read in the latency, throughput and polling runs, and the build polled.
const JOB: &str = "app";
const BUILD: u64 = 10;
/// The job whose build 1 has the huge console log.
const HUGE: &str = "huge";
const TAIL_LINES: usize = 100;
const POLL_AGENTS: usize = 20;
const POLL_INTERVAL: Duration = Duration::from_millis(100);
const SOAK_AGENTS: usize = 8;
/// A hard cap on calls per client in any timed loop (the time bound normally ends it first).
const MAX_CALLS_PER_CLIENT: u64 = 2_000_000;

#[derive(Parser)]
#[command(about = "jgate vs direct calls to the Jenkins twin, side by side (issue #9)")]
struct Opts {
    /// The jgate binary (default: the release `jgate` next to this example's directory).
    #[arg(long, env = "JGATE_BIN")]
    jgate: Option<PathBuf>,
    /// Write the report (Markdown) to this file as well as to standard output.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Measured iterations of the latency run (each side), after the warm-up.
    #[arg(long, default_value_t = 2000)]
    iterations: usize,
    /// Warm-up iterations of the latency run (each side).
    #[arg(long, default_value_t = 200)]
    warmup: usize,
    /// Seconds of each throughput run (each side, each concurrency).
    #[arg(long, default_value_t = 5)]
    throughput_secs: u64,
    /// Concurrency levels of the throughput runs (agents, each with its own key and session).
    #[arg(long, value_delimiter = ',', default_values_t = [8, 32, 64])]
    concurrency: Vec<usize>,
    /// Size of the huge console log in MiB.
    #[arg(long, default_value_t = 1024)]
    log_mib: u64,
    /// Timed repetitions of each tail (the median is reported).
    #[arg(long, default_value_t = 3)]
    tail_runs: usize,
    /// Seconds of the polling run (each side).
    #[arg(long, default_value_t = 5)]
    poll_secs: u64,
    /// Minutes of the RSS soak (the issue's goal is stated for 30).
    #[arg(long, conflicts_with = "soak_secs")]
    soak_minutes: Option<u64>,
    /// Seconds of the RSS soak (default 60).
    #[arg(long, default_value_t = 60)]
    soak_secs: u64,
}

// ---------------------------------------------------------------------------------------------
// MCP client (the approach of crates/jgate/src/demo.rs: JSON-RPC POSTs, SSE or JSON answers)
// ---------------------------------------------------------------------------------------------

struct Mcp {
    http: reqwest::Client,
    url: String,
    key: String,
    session: Option<String>,
    next_id: u64,
    /// Protocol revision 2026-07-28: no session and no handshake; every request carries the
    /// client's context in `_meta` and the `Mcp-Method` / `Mcp-Name` headers.
    stateless: bool,
}

/// The MCP protocol revisions the latency and throughput runs measure.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Protocol {
    /// 2025-06-18: `initialize`, then a session (what most clients speak today).
    Sessions,
    /// 2026-07-28: stateless (what current SDKs speak first).
    Stateless,
}

impl Protocol {
    const BOTH: [Protocol; 2] = [Protocol::Sessions, Protocol::Stateless];

    fn label(self) -> &'static str {
        match self {
            Protocol::Sessions => "MCP 2025-06-18, sessions",
            Protocol::Stateless => "MCP 2026-07-28, stateless",
        }
    }
}

impl Mcp {
    async fn connect(url: &str, key: &str) -> anyhow::Result<Mcp> {
        Mcp::open(url, key, Protocol::Sessions).await
    }

    async fn open(url: &str, key: &str, protocol: Protocol) -> anyhow::Result<Mcp> {
        // One client per agent: its own kept-alive connection, like a separate agent process.
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(150))
            .tcp_nodelay(true)
            .pool_max_idle_per_host(4)
            .build()?;
        let stateless = protocol == Protocol::Stateless;
        let mut c = Mcp { http, url: url.to_string(), key: key.to_string(), session: None, next_id: 0, stateless };
        if stateless {
            return Ok(c);
        }
        c.request(
            "initialize",
            json!({"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "jgate-bench", "version": "1"}}),
        )
        .await?;
        let resp = c.post(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"})).send().await?;
        if !resp.status().is_success() {
            bail!("notifications/initialized: HTTP {}", resp.status());
        }
        let _ = resp.bytes().await;
        Ok(c)
    }

    fn post(&self, body: &Value) -> reqwest::RequestBuilder {
        let version = if self.stateless { "2026-07-28" } else { "2025-06-18" };
        let mut r = self
            .http
            .post(&self.url)
            .bearer_auth(&self.key)
            .header("Accept", "application/json, text/event-stream")
            .header("MCP-Protocol-Version", version)
            .json(body);
        if let Some(s) = &self.session {
            r = r.header("Mcp-Session-Id", s);
        }
        r
    }

    /// One request; the response body is read to its end so the connection is reused.
    async fn request(&mut self, method: &str, mut params: Value) -> anyhow::Result<Value> {
        self.next_id += 1;
        let id = self.next_id;
        let name = params.get("name").and_then(Value::as_str).map(str::to_string);
        if self.stateless {
            params["_meta"] = json!({
                "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                "io.modelcontextprotocol/clientCapabilities": {},
                "io.modelcontextprotocol/clientInfo": {"name": "jgate-bench", "version": "1"},
            });
        }
        let mut post = self.post(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}));
        if self.stateless {
            post = post.header("Mcp-Method", method);
            if let Some(name) = name {
                post = post.header("Mcp-Name", name);
            }
        }
        let resp = post.send().await?;
        if let Some(s) = resp.headers().get("mcp-session-id").and_then(|v| v.to_str().ok()) {
            self.session = Some(s.to_string());
        }
        let status = resp.status();
        if !status.is_success() {
            bail!("{method}: HTTP {status}: {}", resp.text().await.unwrap_or_default());
        }
        let json_body = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|t| t.starts_with("application/json"));
        let mut answer = None;
        if json_body {
            answer = Some(resp.json::<Value>().await?);
        } else {
            let mut stream = resp.bytes_stream();
            let mut buf = Vec::new();
            while let Some(chunk) = stream.next().await {
                buf.extend_from_slice(&chunk?);
                while let Some(pos) = buf.iter().position(|&b| b == b'\n') {
                    let line: Vec<u8> = buf.drain(..=pos).collect();
                    let line = String::from_utf8_lossy(&line);
                    let Some(data) = line.trim_end().strip_prefix("data:") else { continue };
                    let Ok(msg) = serde_json::from_str::<Value>(data.trim()) else { continue };
                    if msg.get("id").and_then(Value::as_u64) == Some(id) {
                        answer = Some(msg);
                    }
                }
            }
        }
        let Some(msg) = answer else { bail!("{method}: the stream ended without an answer") };
        if let Some(e) = msg.get("error") {
            bail!("{method}: {}", e["message"]);
        }
        Ok(msg["result"].clone())
    }

    /// Ends the session (HTTP DELETE), as a well-behaved client does.
    async fn close(self) {
        if let Some(s) = &self.session {
            let _ = self.http.delete(&self.url).bearer_auth(&self.key).header("Mcp-Session-Id", s).send().await;
        }
    }

    /// `tools/call`; an answer with isError is an error here.
    async fn call(&mut self, tool: &str, args: Value) -> anyhow::Result<Value> {
        let r = self.request("tools/call", json!({"name": tool, "arguments": args})).await?;
        if r["isError"] == Value::Bool(true) {
            bail!("{tool}: {}", r["content"][0]["text"].as_str().unwrap_or("?"));
        }
        Ok(r)
    }
}

// ---------------------------------------------------------------------------------------------
// Setup: the twin, the metering relay, jgate serve as a child process
// ---------------------------------------------------------------------------------------------

fn scenario(log_bytes: u64) -> String {
    let mut t = String::from("[controller]\nquiet_period = 0\n\n[[jobs]]\npath = \"app\"\n");
    for n in 1..=BUILD {
        let result = if n % 4 == 0 { "FAILURE" } else { "SUCCESS" };
        t += &format!(
            "[[jobs.builds]]\nresult = \"{result}\"\nduration_ms = {}\nlog = \"\"\"\ncompiling\ntesting\n\"\"\"\n",
            50_000 + n * 1000
        );
    }
    t += &format!("\n[[jobs]]\npath = \"{HUGE}\"\n[[jobs.builds]]\nresult = \"SUCCESS\"\nlog_bytes = {log_bytes}\n");
    t
}

/// A TCP relay in front of the twin counting the bytes the twin sends (headers included).
async fn metering_relay(upstream: SocketAddr, from_twin: Arc<AtomicU64>) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((down, _)) = listener.accept().await {
            let counter = from_twin.clone();
            tokio::spawn(async move {
                let Ok(up) = tokio::net::TcpStream::connect(upstream).await else { return };
                let (mut dr, mut dw) = down.into_split();
                let (mut ur, mut uw) = up.into_split();
                let to_twin = async {
                    let _ = tokio::io::copy(&mut dr, &mut uw).await;
                    let _ = uw.shutdown().await;
                };
                let from = async {
                    let mut buf = vec![0u8; 64 * 1024];
                    while let Ok(n) = ur.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                        counter.fetch_add(n as u64, Ordering::Relaxed);
                        if dw.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                    let _ = dw.shutdown().await;
                };
                tokio::join!(to_twin, from);
            });
        }
    });
    Ok(addr)
}

struct Jgate {
    bin: PathBuf,
    data: PathBuf,
    child: Option<Child>,
    mcp_url: String,
}

impl Jgate {
    fn cli(&self, args: &[&str], extra_env: &[(&str, &str)]) -> anyhow::Result<String> {
        let mut cmd = Command::new(&self.bin);
        for (k, _) in std::env::vars_os().filter(|(k, _)| k.to_string_lossy().starts_with("JGATE_")) {
            cmd.env_remove(k);
        }
        cmd.env("JGATE_DATA_DIR", &self.data).args(args).stdin(Stdio::null());
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        let out = cmd.output().with_context(|| format!("cannot run {}", self.bin.display()))?;
        if !out.status.success() {
            bail!(
                "`jgate {}` failed ({}): {}{}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Starts `jgate serve --addr 127.0.0.1:0` and waits (≤ 30 s) for its ready line.
    fn serve(&mut self) -> anyhow::Result<()> {
        let mut cmd = Command::new(&self.bin);
        for (k, _) in std::env::vars_os().filter(|(k, _)| k.to_string_lossy().starts_with("JGATE_")) {
            cmd.env_remove(k);
        }
        let log = std::fs::File::create(self.data.join("serve.stderr"))?;
        let mut child = cmd
            .env("JGATE_DATA_DIR", &self.data)
            // Each simulated agent makes one call at a time; the default in-flight limit applies.
            .args(["serve", "--addr", "127.0.0.1:0"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .context("cannot start `jgate serve`")?;
        let stdout = child.stdout.take().context("no stdout")?;
        self.child = Some(child);
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(rest) = line.split("(MCP endpoint ").nth(1) {
                        self.mcp_url = rest.trim_end_matches(')').to_string();
                        return Ok(());
                    }
                }
                Err(_) => {
                    let err = std::fs::read_to_string(self.data.join("serve.stderr")).unwrap_or_default();
                    bail!("`jgate serve` did not print its ready line within 30 s: {err}");
                }
            }
        }
    }
}

impl Drop for Jgate {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.data);
    }
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

// ---------------------------------------------------------------------------------------------
// Measurements
// ---------------------------------------------------------------------------------------------

fn direct_client() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .timeout(Duration::from_secs(150))
        .tcp_nodelay(true)
        .pool_max_idle_per_host(4)
        .build()?)
}

async fn direct_get(http: &reqwest::Client, url: &str) -> anyhow::Result<usize> {
    let resp = http.get(url).basic_auth("admin", Some(TWIN_TOKEN)).send().await?;
    let status = resp.status();
    let body = resp.bytes().await?;
    if !status.is_success() {
        bail!("GET {url}: HTTP {status}");
    }
    Ok(body.len())
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

struct Latency {
    direct_p50: f64,
    direct_p99: f64,
    jgate_p50: f64,
    jgate_p99: f64,
    upstream_per_call: f64,
    n: usize,
}

/// Alternating direct GET and MCP get_job calls, one at a time, so both see the same conditions.
async fn latency(ctx: &Ctx, key: &str, warmup: usize, n: usize, protocol: Protocol) -> anyhow::Result<Latency> {
    let http = direct_client()?;
    let url = format!("{}/job/{JOB}/api/json", ctx.twin_url);
    let mut mcp = Mcp::open(&ctx.mcp_url, key, protocol).await?;
    let args = json!({"job": JOB, "controller": "prod"});
    for _ in 0..warmup {
        direct_get(&http, &url).await?;
        mcp.call("get_job", args.clone()).await?;
    }
    let (mut d, mut j) = (Vec::with_capacity(n), Vec::with_capacity(n));
    let before = ctx.twin.requests_received();
    for _ in 0..n {
        let t = Instant::now();
        direct_get(&http, &url).await?;
        d.push(t.elapsed().as_secs_f64() * 1e3);
        let t = Instant::now();
        mcp.call("get_job", args.clone()).await?;
        j.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let upstream = ctx.twin.requests_received() - before;
    mcp.close().await;
    d.sort_by(f64::total_cmp);
    j.sort_by(f64::total_cmp);
    Ok(Latency {
        direct_p50: percentile(&d, 50.0),
        direct_p99: percentile(&d, 99.0),
        jgate_p50: percentile(&j, 50.0),
        jgate_p99: percentile(&j, 99.0),
        upstream_per_call: upstream.saturating_sub(n as u64) as f64 / n as f64,
        n,
    })
}

/// Alternating direct GETs and the same GET through jgate's Jenkins proxy (`/jenkins/prod/`,
/// Basic auth with an agent's name and key), one at a time.
async fn proxy_latency(ctx: &Ctx, agent: &str, key: &str, warmup: usize, n: usize) -> anyhow::Result<Latency> {
    let http = direct_client()?;
    let direct = format!("{}/job/{JOB}/api/json", ctx.twin_url);
    let proxied = format!("{}/jenkins/prod/job/{JOB}/api/json", ctx.mcp_url.trim_end_matches("/mcp"));
    let get = |url: String, user: String, pass: String| {
        let http = http.clone();
        async move {
            let r = http.get(&url).basic_auth(user, Some(pass)).send().await?.error_for_status()?;
            anyhow::Ok(r.bytes().await?.len())
        }
    };
    for _ in 0..warmup {
        get(direct.clone(), "admin".to_string(), TWIN_TOKEN.to_string()).await?;
        get(proxied.clone(), agent.to_string(), key.to_string()).await?;
    }
    let (mut d, mut j) = (Vec::with_capacity(n), Vec::with_capacity(n));
    let before = ctx.twin.requests_received();
    for _ in 0..n {
        let t = Instant::now();
        get(direct.clone(), "admin".to_string(), TWIN_TOKEN.to_string()).await?;
        d.push(t.elapsed().as_secs_f64() * 1e3);
        let t = Instant::now();
        get(proxied.clone(), agent.to_string(), key.to_string()).await?;
        j.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let upstream = ctx.twin.requests_received() - before;
    d.sort_by(f64::total_cmp);
    j.sort_by(f64::total_cmp);
    Ok(Latency {
        direct_p50: percentile(&d, 50.0),
        direct_p99: percentile(&d, 99.0),
        jgate_p50: percentile(&j, 50.0),
        jgate_p99: percentile(&j, 99.0),
        upstream_per_call: upstream.saturating_sub(n as u64) as f64 / n as f64,
        n,
    })
}

/// The huge console streamed through the proxy (#11): time, bytes, and jgate's RSS before and at
/// its highest while streaming.
struct ProxyStream {
    ms: f64,
    bytes: u64,
    rss_before_kib: u64,
    rss_max_kib: u64,
}

async fn proxy_stream(ctx: &Ctx, agent: &str, key: &str, pid: u32) -> anyhow::Result<ProxyStream> {
    let http = direct_client()?;
    let url = format!("{}/jenkins/prod/job/{HUGE}/1/consoleText", ctx.mcp_url.trim_end_matches("/mcp"));
    let rss_before_kib = rss_kib(pid).unwrap_or(0);
    let max = Arc::new(AtomicU64::new(rss_before_kib));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let (max, stop) = (max.clone(), stop.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                if let Some(k) = rss_kib(pid) {
                    max.fetch_max(k, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    let t = Instant::now();
    let resp = http.get(&url).basic_auth(agent, Some(key)).send().await?.error_for_status()?;
    let mut stream = resp.bytes_stream();
    let mut bytes = 0u64;
    while let Some(chunk) = stream.next().await {
        bytes += chunk?.len() as u64;
    }
    let ms = t.elapsed().as_secs_f64() * 1e3;
    stop.store(true, Ordering::Relaxed);
    let _ = sampler.await;
    Ok(ProxyStream { ms, bytes, rss_before_kib, rss_max_kib: max.load(Ordering::Relaxed) })
}

/// Clients that hang up mid-call (issue #16): `HANGUPS` agents start a slow read (the tail of
/// the huge log) and drop their connection after a moment; then the calls that follow must all
/// succeed, as fast as before.
struct Hangup {
    clients: usize,
    after_p50: f64,
    after_p99: f64,
    after_errors: u64,
    after_calls: usize,
}

const HANGUPS: usize = 16;

async fn hangups(ctx: &Ctx, keys: &[String]) -> anyhow::Result<Hangup> {
    let mut tasks = Vec::new();
    for (i, key) in keys.iter().cycle().take(HANGUPS).enumerate() {
        let (url, key) = (ctx.mcp_url.clone(), key.clone());
        tasks.push(tokio::spawn(async move {
            let Ok(mut mcp) = Mcp::connect(&url, &key).await else { return };
            let call = mcp.call("get_build_log", json!({"job": HUGE, "build": 1, "controller": "prod"}));
            // Hang up at different moments of the call (the future and its connection are dropped).
            let _ = tokio::time::timeout(Duration::from_millis(20 + 15 * i as u64), call).await;
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let mut mcp = Mcp::connect(&ctx.mcp_url, &keys[0]).await?;
    let args = json!({"job": JOB, "controller": "prod"});
    let (mut times, mut errors) = (Vec::new(), 0u64);
    let n = 200;
    for _ in 0..n {
        let t = Instant::now();
        match tokio::time::timeout(Duration::from_secs(30), mcp.call("get_job", args.clone())).await {
            Ok(Ok(_)) => times.push(t.elapsed().as_secs_f64() * 1e3),
            _ => errors += 1,
        }
    }
    mcp.close().await;
    times.sort_by(f64::total_cmp);
    Ok(Hangup {
        clients: HANGUPS,
        after_p50: percentile(&times, 50.0),
        after_p99: percentile(&times, 99.0),
        after_errors: errors,
        after_calls: n,
    })
}

struct Rate {
    calls: u64,
    errors: u64,
    secs: f64,
    upstream: u64,
    first_error: Option<String>,
}

impl Rate {
    fn per_sec(&self) -> f64 {
        self.calls as f64 / self.secs
    }
}

/// Each task runs `one` in a loop until the deadline (or the per-client cap); the clients are
/// handed back.
async fn timed_loop<C, F, Fut>(ctx: &Ctx, clients: Vec<C>, secs: u64, one: F) -> (Rate, Vec<C>)
where
    C: Send + 'static,
    F: Fn(C) -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = (C, anyhow::Result<()>)> + Send,
{
    let before = ctx.twin.requests_received();
    let started = Instant::now();
    let deadline = started + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for c in clients {
        let one = one.clone();
        tasks.push(tokio::spawn(async move {
            let (mut ok, mut err, mut first) = (0u64, 0u64, None);
            let mut c = c;
            for _ in 0..MAX_CALLS_PER_CLIENT {
                if Instant::now() >= deadline {
                    break;
                }
                let (back, r) = one(c).await;
                c = back;
                match r {
                    Ok(()) => ok += 1,
                    Err(e) => {
                        err += 1;
                        first.get_or_insert_with(|| format!("{e:#}"));
                    }
                }
            }
            (c, ok, err, first)
        }));
    }
    let mut rate = Rate { calls: 0, errors: 0, secs: 0.0, upstream: 0, first_error: None };
    let mut back = Vec::new();
    for t in tasks {
        if let Ok((c, ok, err, first)) = t.await {
            back.push(c);
            rate.calls += ok;
            rate.errors += err;
            if rate.first_error.is_none() {
                rate.first_error = first;
            }
        }
    }
    rate.secs = started.elapsed().as_secs_f64();
    rate.upstream = ctx.twin.requests_received() - before;
    (rate, back)
}

async fn direct_rate(ctx: &Ctx, conc: usize, secs: u64) -> anyhow::Result<Rate> {
    let url = Arc::new(format!("{}/job/{JOB}/api/json", ctx.twin_url));
    let mut clients = Vec::new();
    for _ in 0..conc {
        let http = direct_client()?;
        direct_get(&http, &url).await?;
        clients.push(http);
    }
    let (rate, _) = timed_loop(ctx, clients, secs, move |http: reqwest::Client| {
        let url = url.clone();
        async move {
            let r = direct_get(&http, &url).await.map(|_| ());
            (http, r)
        }
    })
    .await;
    Ok(rate)
}

async fn sessions(ctx: &Ctx, keys: &[String], protocol: Protocol) -> anyhow::Result<Vec<Mcp>> {
    let mut out = Vec::new();
    for key in keys {
        let mut m = Mcp::open(&ctx.mcp_url, key, protocol).await?;
        m.call("get_job", json!({"job": JOB, "controller": "prod"})).await?;
        out.push(m);
    }
    Ok(out)
}

async fn jgate_rate(ctx: &Ctx, keys: &[String], secs: u64, protocol: Protocol) -> anyhow::Result<Rate> {
    let clients = sessions(ctx, keys, protocol).await?;
    let (rate, clients) = timed_loop(ctx, clients, secs, |mut m: Mcp| async move {
        let r = m.call("get_job", json!({"job": JOB, "controller": "prod"})).await.map(|_| ());
        (m, r)
    })
    .await;
    close_all(clients).await;
    Ok(rate)
}

async fn close_all(clients: Vec<Mcp>) {
    for m in clients {
        m.close().await;
    }
}

struct Tail {
    direct_ms: f64,
    direct_bytes: u64,
    /// The first tail of the log through jgate (it has not seen the log).
    cold_ms: f64,
    cold_bytes: u64,
    /// The median of the tails after it (jgate knows the log's size and line count).
    repeat_ms: f64,
    repeat_bytes: u64,
    last_line: String,
}

async fn tail(ctx: &Ctx, key: &str, runs: usize, log_bytes: u64) -> anyhow::Result<Tail> {
    let runs = runs.max(1);
    let http = direct_client()?;
    let url = format!("{}/job/{HUGE}/1/consoleText", ctx.twin_url);
    let (mut dt, mut jt) = (Vec::new(), Vec::new());
    let mut direct_bytes = 0;
    let mut last_line = String::new();
    for _ in 0..runs {
        // `curl | tail -n 100`: stream the whole log, keep the last lines.
        let t = Instant::now();
        let resp = http.get(&url).basic_auth("admin", Some(TWIN_TOKEN)).send().await?.error_for_status()?;
        let mut stream = resp.bytes_stream();
        let mut keep: Vec<u8> = Vec::with_capacity(8 << 20);
        let mut bytes = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk?;
            bytes += chunk.len() as u64;
            keep.extend_from_slice(&chunk);
            if keep.len() > 4 << 20 {
                keep_last_lines(&mut keep, TAIL_LINES);
            }
        }
        keep_last_lines(&mut keep, TAIL_LINES);
        dt.push(t.elapsed().as_secs_f64() * 1e3);
        direct_bytes = bytes;
        last_line = String::from_utf8_lossy(&keep).lines().last().unwrap_or_default().to_string();
    }
    if direct_bytes < log_bytes || !last_line.starts_with("Finished:") {
        bail!("the direct tail read {direct_bytes} bytes and ended with {last_line:?}");
    }
    let mut mcp = Mcp::connect(&ctx.mcp_url, key).await?;
    let args = |controller: &str| json!({"job": HUGE, "build": 1, "mode": "tail", "lines": TAIL_LINES, "controller": controller});
    let mut call = async |controller: &str| -> anyhow::Result<(f64, Value)> {
        let t = Instant::now();
        let r = mcp.call("get_build_log", args(controller)).await?;
        let ms = t.elapsed().as_secs_f64() * 1e3;
        let text = r["structuredContent"]["text"].as_str().unwrap_or("");
        if !text.contains("Finished: SUCCESS") {
            bail!("jgate's tail does not end with the last line: {}", &text[text.len().saturating_sub(300)..]);
        }
        Ok((ms, r["structuredContent"].clone()))
    };
    // Times through controller `tail` (straight to the twin, used by nothing else, so its first
    // tail is cold); bytes through `metered` (the relay), cold then repeated.
    let (cold_ms, cold) = call("tail").await?;
    let mut repeat = Value::Null;
    for _ in 0..runs {
        let (ms, r) = call("tail").await?;
        jt.push(ms);
        repeat = r;
    }
    for key in ["text", "first_line", "last_line", "total_lines"] {
        if repeat[key] != cold[key] {
            bail!("a repeated tail answered {key} {} where the first said {}", repeat[key], cold[key]);
        }
    }
    let mut bytes = Vec::new();
    for _ in 0..2 {
        let before = ctx.metered.load(Ordering::Relaxed);
        call("metered").await?;
        // Let the relay count what is still in flight (the connection stays open).
        tokio::time::sleep(Duration::from_millis(200)).await;
        bytes.push(ctx.metered.load(Ordering::Relaxed) - before);
    }
    let (cold_bytes, repeat_bytes) = (bytes[0], bytes[1]);
    mcp.close().await;
    dt.sort_by(f64::total_cmp);
    jt.sort_by(f64::total_cmp);
    Ok(Tail {
        direct_ms: dt[dt.len() / 2],
        direct_bytes,
        cold_ms,
        cold_bytes,
        repeat_ms: jt[jt.len() / 2],
        repeat_bytes,
        last_line,
    })
}

/// Drops everything before the last `n` lines of `buf` (a final newline ends the last line).
fn keep_last_lines(buf: &mut Vec<u8>, n: usize) {
    let end = if buf.last() == Some(&b'\n') { buf.len() - 1 } else { buf.len() };
    let mut seen = 0;
    for i in (0..end).rev() {
        if buf[i] == b'\n' {
            seen += 1;
            if seen == n {
                buf.drain(..=i);
                return;
            }
        }
    }
}

struct Poll {
    intervals: u64,
    direct_upstream: u64,
    direct_calls: u64,
    jgate_upstream: u64,
    jgate_calls: u64,
    errors: u64,
}

/// `n` pollers, evenly staggered over the interval, each calling once per interval.
async fn poll_run<C, F, Fut>(clients: Vec<C>, ticks: u64, one: F) -> (u64, u64, Vec<C>)
where
    C: Send + 'static,
    F: Fn(C) -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = (C, anyhow::Result<()>)> + Send,
{
    let n = clients.len().max(1) as u32;
    let mut tasks = Vec::new();
    for (i, c) in clients.into_iter().enumerate() {
        let one = one.clone();
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep(POLL_INTERVAL * i as u32 / n).await;
            let mut every = tokio::time::interval(POLL_INTERVAL);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let (mut ok, mut err) = (0, 0);
            let mut c = c;
            for _ in 0..ticks {
                every.tick().await;
                let (back, r) = one(c).await;
                c = back;
                if r.is_ok() { ok += 1 } else { err += 1 }
            }
            (c, ok, err)
        }));
    }
    let (mut ok, mut err, mut back) = (0, 0, Vec::new());
    for t in tasks {
        if let Ok((c, o, e)) = t.await {
            back.push(c);
            ok += o;
            err += e;
        }
    }
    (ok, err, back)
}

async fn polling(ctx: &Ctx, keys: &[String], secs: u64) -> anyhow::Result<Poll> {
    let ticks = (secs * 1000 / POLL_INTERVAL.as_millis() as u64).max(1);
    let url = Arc::new(format!("{}/job/{JOB}/{BUILD}/api/json", ctx.twin_url));
    let mut direct = Vec::new();
    for _ in 0..POLL_AGENTS {
        let http = direct_client()?;
        direct_get(&http, &url).await?;
        direct.push(http);
    }
    let before = ctx.twin.requests_received();
    let (direct_calls, derr, _) = poll_run(direct, ticks, move |http: reqwest::Client| {
        let url = url.clone();
        async move {
            let r = direct_get(&http, &url).await.map(|_| ());
            (http, r)
        }
    })
    .await;
    let direct_upstream = ctx.twin.requests_received() - before;
    let clients = sessions(ctx, &keys[..POLL_AGENTS], Protocol::Sessions).await?;
    let before = ctx.twin.requests_received();
    let (jgate_calls, jerr, clients) = poll_run(clients, ticks, |mut m: Mcp| async move {
        let r = m.call("get_build", json!({"job": JOB, "build": BUILD, "controller": "prod"})).await.map(|_| ());
        (m, r)
    })
    .await;
    let jgate_upstream = ctx.twin.requests_received() - before;
    close_all(clients).await;
    Ok(Poll { intervals: ticks, direct_upstream, direct_calls, jgate_upstream, jgate_calls, errors: derr + jerr })
}

struct Soak {
    secs: u64,
    idle_kib: u64,
    start_kib: u64,
    end_kib: u64,
    max_kib: u64,
    min_kib: u64,
    rate: Rate,
}

/// SOAK_AGENTS agents calling a mix of reads back to back; jgate's VmRSS sampled every second.
async fn soak(ctx: &Ctx, keys: &[String], pid: u32, secs: u64) -> anyhow::Result<Soak> {
    let idle_kib = rss_kib(pid).context("cannot read jgate's VmRSS")?;
    let clients = sessions(ctx, &keys[..SOAK_AGENTS], Protocol::Sessions).await?;
    let samples = Arc::new(std::sync::Mutex::new(Vec::<(f64, u64)>::new()));
    let sampler = {
        let samples = samples.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let mut every = tokio::time::interval(Duration::from_secs(1));
            for _ in 0..=secs {
                every.tick().await;
                if let Some(kib) = rss_kib(pid) {
                    samples.lock().unwrap_or_else(|p| p.into_inner()).push((started.elapsed().as_secs_f64(), kib));
                }
            }
        })
    };
    let calls = [
        ("get_job", json!({"job": JOB, "controller": "prod"})),
        ("get_build", json!({"job": JOB, "build": BUILD, "controller": "prod"})),
        ("get_build_log", json!({"job": JOB, "build": BUILD, "mode": "tail", "lines": 100, "controller": "prod"})),
        ("list_jobs", json!({"controller": "prod"})),
    ];
    let calls = Arc::new(calls);
    let clients: Vec<(Mcp, usize)> = clients.into_iter().enumerate().map(|(i, m)| (m, i)).collect();
    let (rate, clients) = timed_loop(ctx, clients, secs, move |(mut m, i): (Mcp, usize)| {
        let calls = calls.clone();
        async move {
            let (tool, args) = &calls[i % calls.len()];
            let r = m.call(tool, args.clone()).await.map(|_| ());
            ((m, i + 1), r)
        }
    })
    .await;
    close_all(clients.into_iter().map(|(m, _)| m).collect()).await;
    let _ = sampler.await;
    let samples = samples.lock().unwrap_or_else(|p| p.into_inner()).clone();
    // "Start" is taken once the load has warmed jgate up: after 10% of the soak, at most 10 s.
    let warm = (secs as f64 * 0.1).min(10.0);
    let steady: Vec<u64> = samples.iter().filter(|(t, _)| *t >= warm).map(|(_, k)| *k).collect();
    let Some(&start_kib) = steady.first() else { bail!("no RSS samples") };
    Ok(Soak {
        secs,
        idle_kib,
        start_kib,
        end_kib: *steady.last().unwrap_or(&start_kib),
        max_kib: steady.iter().copied().max().unwrap_or(start_kib),
        min_kib: steady.iter().copied().min().unwrap_or(start_kib),
        rate,
    })
}

struct Ctx {
    twin: Arc<jenkins_twin::Twin>,
    twin_url: String,
    mcp_url: String,
    metered: Arc<AtomicU64>,
}

// ---------------------------------------------------------------------------------------------
// Report
// ---------------------------------------------------------------------------------------------

fn read_first(path: &str, key: &str) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let line = text.lines().find(|l| l.starts_with(key))?;
    Some(line.split_once(':')?.1.trim().to_string())
}

fn machine() -> String {
    let nproc = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let cpu = read_first("/proc/cpuinfo", "model name").unwrap_or_else(|| "unknown CPU".into());
    let mem = read_first("/proc/meminfo", "MemTotal")
        .and_then(|m| m.split_whitespace().next()?.parse::<u64>().ok())
        .map(|kib| format!("{:.1} GiB", kib as f64 / (1024.0 * 1024.0)))
        .unwrap_or_else(|| "unknown".into());
    format!("{nproc} CPU(s) (nproc), {cpu}, {mem} RAM, {}", std::env::consts::ARCH)
}

/// UTC date and time from the system clock (civil-from-days, no calendar crate needed).
fn utc_now() -> String {
    let secs = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02} UTC", rem / 3600, rem % 3600 / 60)
}

fn git(args: &[&str]) -> Option<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out = Command::new("git").current_dir(root).args(args).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn commit() -> String {
    let head = git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".into());
    let dirty = git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
    if dirty { format!("{head} (with uncommitted changes)") } else { head }
}

fn met(ok: bool) -> &'static str {
    if ok { "met" } else { "**not met**" }
}

fn mib(bytes: u64) -> String {
    if bytes >= 1 << 20 { format!("{:.1} MiB", bytes as f64 / (1u64 << 20) as f64) } else { format!("{bytes} B") }
}

/// (agents, direct, jgate per protocol revision in [`Protocol::BOTH`]'s order)
type Rates = (usize, Rate, Vec<(Protocol, Rate)>);

struct Results {
    /// One per protocol revision, in [`Protocol::BOTH`]'s order.
    latency: Vec<(Protocol, Latency)>,
    proxy: Latency,
    proxy_stream: ProxyStream,
    hangup: Hangup,
    rates: Vec<Rates>,
    tail: Tail,
    log_bytes: u64,
    poll: Poll,
    soak: Soak,
}

fn report(r: &Results, o: &Opts, soak_secs: u64) -> String {
    let mut s = String::new();
    s += "# Benchmarks\n\n";
    s += "jgate side by side with the same calls made directly to the Jenkins twin, measured in one run by\n";
    s += "`cargo xtask bench` (crates/jgate/examples/gateway_bench.rs; the goals are issue #9's). The numbers\n";
    s += "are from one machine on one day: rerun to compare. The twin runs in the benchmark process, `jgate\n";
    s += "serve` (release build, SQLite in a temporary directory) as a child process; all traffic is on\n";
    s += "127.0.0.1, and the load generator, the twin and jgate share the same cores.\n\n";
    s += &format!("- **Date:** {}\n", utc_now());
    s += &format!("- **Commit:** {}\n", commit());
    s += &format!("- **Machine:** {}\n", machine());
    s += &format!(
        "- **Parameters:** {} latency iterations after {} warm-up; throughput runs of {} s; {} MiB log, median of {} tail(s); polling for {} s; soak {} s\n\n",
        o.iterations,
        o.warmup,
        o.throughput_secs,
        o.log_mib,
        o.tail_runs.max(1),
        o.poll_secs,
        soak_secs
    );

    s += "| Measurement | jgate | direct to the twin | jgate vs direct | Goal | Result |\n";
    s += "|---|---|---|---|---|---|\n";
    for (p, l) in &r.latency {
        let added50 = l.jgate_p50 - l.direct_p50;
        let added99 = l.jgate_p99 - l.direct_p99;
        s += &format!(
            "| Read latency p50 (`get_job` over {} vs `GET /job/{JOB}/api/json`) | {:.3} ms | {:.3} ms | +{added50:.3} ms | added ≤ 0.5 ms | {} |\n",
            p.label(),
            l.jgate_p50,
            l.direct_p50,
            met(added50 <= 0.5)
        );
        s += &format!(
            "| Read latency p99 (same calls) | {:.3} ms | {:.3} ms | +{added99:.3} ms | added ≤ 2 ms | {} |\n",
            l.jgate_p99,
            l.direct_p99,
            met(added99 <= 2.0)
        );
    }
    let l = &r.latency[0].1;
    let x = &r.proxy;
    let proxy50 = x.jgate_p50 - x.direct_p50;
    s += &format!(
        "| Proxy read latency p50 (`GET /jenkins/prod/job/{JOB}/api/json` vs the same GET direct) | {:.3} ms | {:.3} ms | +{proxy50:.3} ms | added ≤ 1 ms (#11) | {} |\n",
        x.jgate_p50,
        x.direct_p50,
        met(proxy50 <= 1.0)
    );
    s += &format!(
        "| Proxy read latency p99 (same calls) | {:.3} ms | {:.3} ms | +{:.3} ms | — | — |\n",
        x.jgate_p99,
        x.direct_p99,
        x.jgate_p99 - x.direct_p99
    );
    let ps = &r.proxy_stream;
    let grew_mib = ps.rss_max_kib.saturating_sub(ps.rss_before_kib) as f64 / 1024.0;
    s += &format!(
        "| Proxy: a {} console streamed through `/jenkins/prod/` (cleaned): time / jgate RSS before → max | {:.0} ms / {:.1} → {:.1} MiB | — | +{grew_mib:.1} MiB for {} | memory independent of log size (#11) | {} |\n",
        mib(r.log_bytes),
        ps.ms,
        ps.rss_before_kib as f64 / 1024.0,
        ps.rss_max_kib as f64 / 1024.0,
        mib(ps.bytes),
        met(grew_mib <= 64.0 && ps.bytes >= r.log_bytes)
    );
    let h = &r.hangup;
    s += &format!(
        "| After {} clients hang up mid-call: the next {} `get_job` calls, p50 / p99 | {:.3} / {:.3} ms | — | {} error(s) | all succeed, no slower than before (#16) | {} |\n",
        h.clients,
        h.after_calls,
        h.after_p50,
        h.after_p99,
        h.after_errors,
        met(h.after_errors == 0 && h.after_p50 <= l.jgate_p50 * 2.0 + 1.0)
    );
    for (c, d, js) in &r.rates {
        for (p, j) in js {
            let ratio = j.per_sec() / d.per_sec();
            s += &format!(
                "| Throughput, {c} concurrent agents (`get_job`, {}) | {:.0} calls/s | {:.0} req/s | {:.1}% | ≥ 5,000 calls/s and ≥ 25% of the twin | {} |\n",
                p.label(),
                j.per_sec(),
                d.per_sec(),
                ratio * 100.0,
                met(j.per_sec() >= 5000.0 && ratio >= 0.25 && j.errors == 0)
            );
        }
    }
    let t = &r.tail;
    let log = mib(r.log_bytes);
    // (which tail, its time, its bytes, and the decimals of the time and of the two ratios)
    let rows = [
        (
            format!("last {TAIL_LINES} lines, first time (cold)"),
            "first time (cold)",
            t.cold_ms,
            t.cold_bytes,
            [0, 2, 2],
        ),
        ("repeated".to_string(), "repeated", t.repeat_ms, t.repeat_bytes, [1, 4, 6]),
    ];
    for (timed, fetched, ms, bytes, [ms_digits, time_digits, bytes_digits]) in rows {
        s += &format!(
            "| Tail of a {log} console log, {timed}: time | {ms:.ms_digits$} ms | {:.0} ms (`curl \\| tail`) | {:.time_digits$}× | ≤ 50 ms | {} |\n",
            t.direct_ms,
            ms / t.direct_ms,
            met(ms <= 50.0),
        );
        s += &format!(
            "| Tail of a {log} console log, {fetched}: bytes fetched from the twin | {} | {} | {:.bytes_digits$}× | ≤ 1 MiB | {} |\n",
            mib(bytes),
            mib(t.direct_bytes),
            bytes as f64 / t.direct_bytes as f64,
            met(bytes <= 1 << 20)
        );
    }
    let p = &r.poll;
    let jper = p.jgate_upstream as f64 / p.intervals as f64;
    let dper = p.direct_upstream as f64 / p.intervals as f64;
    s += &format!(
        "| {POLL_AGENTS} agents polling one build every {} ms (`get_build`): upstream requests per interval | {jper:.1} | {dper:.1} | {:.2}× | ≤ 1 per resource per interval | {} |\n",
        POLL_INTERVAL.as_millis(),
        jper / dper,
        met(jper <= 1.0 && p.errors == 0)
    );
    let k = &r.soak;
    let (end_ratio, max_ratio, min_ratio) = (
        k.end_kib as f64 / k.start_kib as f64,
        k.max_kib as f64 / k.start_kib as f64,
        k.min_kib as f64 / k.start_kib as f64,
    );
    let flat = max_ratio <= 1.10 && min_ratio >= 0.90 && k.rate.errors == 0;
    let soak_note = if k.secs >= 30 * 60 {
        met(flat).to_string()
    } else if flat {
        format!("met over {} s (the goal is 30 min: `--soak-minutes 30`)", k.secs)
    } else {
        format!("**not met** over {} s", k.secs)
    };
    s += &format!(
        "| jgate RSS over a {} s soak ({SOAK_AGENTS} agents, mixed reads): start / end / max | {:.1} / {:.1} / {:.1} MiB | — | end {:.2}×, max {:.2}× start | flat ±10% over 30 min | {soak_note} |\n\n",
        k.secs,
        k.start_kib as f64 / 1024.0,
        k.end_kib as f64 / 1024.0,
        k.max_kib as f64 / 1024.0,
        end_ratio,
        max_ratio
    );

    s += "Details:\n\n";
    s += &format!(
        "- Latency: {} alternating pairs on one kept-alive connection each side, one call at a time, for each MCP revision. A `get_job` through jgate made {:.2} upstream request(s) per call; every call is authenticated, checked by the policy, audited (SQLite) and sanitized.\n- MCP revisions: 2025-06-18 clients `initialize` once and send their session id with every call (rmcp runs each session as a task of its own); 2026-07-28 clients have no session or handshake: each call carries the client's context in `_meta` and the `Mcp-Method` / `Mcp-Name` headers and stands alone. On both, a plain tool call is answered by jgate itself as JSON, beside rmcp (crates/jgate/src/mcp_direct.rs). Current SDKs (Python `mcp` 2.x, rmcp 3) speak 2026-07-28 first.\n",
        l.n, l.upstream_per_call
    );
    for (c, d, js) in &r.rates {
        let jgate: Vec<String> = js
            .iter()
            .map(|(p, j)| {
                format!(
                    "{}: {} calls in {:.1} s ({} errors{}), {:.2} upstream requests per call",
                    p.label(),
                    j.calls,
                    j.secs,
                    j.errors,
                    j.first_error.as_deref().map(|e| format!(", first: {e}")).unwrap_or_default(),
                    j.upstream as f64 / j.calls.max(1) as f64
                )
            })
            .collect();
        s += &format!(
            "- Throughput at {c}: jgate {}; direct {} requests in {:.1} s ({} errors).\n",
            jgate.join("; "),
            d.calls,
            d.secs,
            d.errors
        );
    }
    s += &format!(
        "- Tail: the direct side streams `consoleText` and keeps the last {TAIL_LINES} lines (last line {:?}). jgate's times are through controller `tail` (straight to the twin, used by nothing else): its first tail is cold, the repeated row is the median of the ones after; the bytes are counted by a TCP relay in front of the twin (controller `metered`, response headers included), first tail then one more. A cold tail cannot read only the end: Jenkins offers no cheap way to learn a log's size (a `progressiveText` start past the end restarts from 0, and `X-Text-Size` comes with the body; jenkins-wire.md §10.6), so it streams the log and then learns its size and line count with one request whose headers alone are read; every later tail of that finished log reads only its end (`progressiveText?start=` a few KiB before the end) and answers the same numbered lines. The bench checks that the repeated answer equals the first.\n",
        t.last_line
    );
    s += &format!(
        "- Proxy: {} alternating pairs on kept-alive connections; the proxied GET made {:.2} upstream request(s) per call and is authenticated, classified, checked, filtered, sanitized and audited like an MCP call.\n",
        x.n, x.upstream_per_call
    );
    s += &format!(
        "- Hang-ups: {} MCP clients each start a tail of the {} log and drop the connection 20 to {} ms in; then one client makes {} calls in a row.\n",
        h.clients,
        mib(r.log_bytes),
        20 + 15 * (h.clients - 1),
        h.after_calls
    );
    s += &format!(
        "- Polling: {} intervals; jgate answered {} calls, the direct pollers {}; {} error(s). The pollers are staggered evenly over the interval.\n",
        p.intervals, p.jgate_calls, p.direct_calls, p.errors
    );
    s += &format!(
        "- Soak: {} calls ({:.0}/s, {} errors{}) of get_job, get_build, get_build_log (tail) and list_jobs; RSS idle before the soak {:.1} MiB; \"start\" is the first sample after {:.0} s of load; min {:.1} MiB.\n",
        k.rate.calls,
        k.rate.per_sec(),
        k.rate.errors,
        k.rate.first_error.as_deref().map(|e| format!(", first: {e}")).unwrap_or_default(),
        k.idle_kib as f64 / 1024.0,
        (k.secs as f64 * 0.1).min(10.0),
        k.min_kib as f64 / 1024.0
    );
    s += "- `cargo xtask bench` also runs crates/jenkins/examples/tail_bench.rs and list_bench.rs (the wire\n  client alone), crates/gate/examples/clean_bench.rs (the sanitizer's MB/s on build-log text) and\n  audit_bench.rs (one audit append's time, alone and under group commit);\n  their output is printed, not recorded here.\n";
    s
}

// ---------------------------------------------------------------------------------------------

fn default_jgate() -> anyhow::Result<PathBuf> {
    // target/release/examples/gateway_bench → target/release/jgate
    let exe = std::env::current_exe()?;
    let dir = exe.parent().and_then(Path::parent).context("cannot locate the target directory")?;
    Ok(dir.join(format!("jgate{}", std::env::consts::EXE_SUFFIX)))
}

fn main() -> anyhow::Result<()> {
    let o = Opts::parse();
    let soak_secs = o.soak_minutes.map(|m| m * 60).unwrap_or(o.soak_secs).max(1);
    let bin = match &o.jgate {
        Some(b) => b.clone(),
        None => default_jgate()?,
    };
    if !bin.is_file() {
        bail!(
            "{} not found: build it with `cargo build --release -p jgate --bin jgate`, or pass --jgate",
            bin.display()
        );
    }
    let log_bytes = o.log_mib << 20;

    // The twin (and the metering relay) on their own runtime, apart from the load generators.
    let twin_rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let admins = [("admin".to_string(), "admin".to_string(), TWIN_TOKEN.to_string())];
    let (twin, server) = twin_rt.block_on(jenkins_twin::start(&scenario(log_bytes), &admins))?;
    let metered = Arc::new(AtomicU64::new(0));
    let relay = twin_rt.block_on(metering_relay(server.addr(), metered.clone()))?;
    let twin_url = server.url();
    eprintln!("bench: twin at {twin_url}, metering relay at {relay}");

    let data = std::env::temp_dir().join(format!("jgate-bench-{}", std::process::id()));
    std::fs::create_dir_all(&data)?;
    let mut jg = Jgate { bin, data, child: None, mcp_url: String::new() };
    let token_env = [("BENCH_TWIN_TOKEN", TWIN_TOKEN)];
    for (name, addr) in [("prod", server.addr()), ("metered", relay), ("tail", server.addr())] {
        let url = format!("http://{addr}");
        let allow = format!("127.0.0.1:{}", addr.port());
        jg.cli(
            &[
                "controller",
                "add",
                name,
                "--url",
                &url,
                "--username",
                "admin",
                "--token-env",
                "BENCH_TWIN_TOKEN",
                "--allow-private",
                &allow,
            ],
            &token_env,
        )?;
    }
    let agents = o.concurrency.iter().copied().chain([POLL_AGENTS, SOAK_AGENTS, 1]).max().unwrap_or(1);
    eprintln!("bench: creating {agents} agents with the CLI");
    let mut keys = Vec::new();
    for i in 0..agents {
        let name = format!("agent-{i:02}");
        let created: Value = serde_json::from_str(&jg.cli(&["--json", "agent", "create", &name], &[])?)?;
        keys.push(created["key"].as_str().context("no key in `agent create --json`")?.to_string());
        jg.cli(&["grant", &name, "status", "read"], &[])?;
    }
    jg.serve()?;
    let pid = jg.pid().context("no child")?;
    eprintln!("bench: jgate serve (pid {pid}) at {}", jg.mcp_url);
    let ctx = Ctx { twin, twin_url, mcp_url: jg.mcp_url.clone(), metered };

    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let results = rt.block_on(async {
        eprintln!("bench: latency ({} + {} warm-up iterations each side)", o.iterations, o.warmup);
        let mut latencies = Vec::new();
        for p in Protocol::BOTH {
            latencies.push((p, latency(&ctx, &keys[0], o.warmup, o.iterations.max(1), p).await?));
        }
        let latency = latencies;
        eprintln!("bench: proxy latency ({} + {} warm-up iterations each side)", o.iterations, o.warmup);
        let proxy = proxy_latency(&ctx, "agent-00", &keys[0], o.warmup, o.iterations.max(1)).await?;
        eprintln!("bench: a {} MiB console through the proxy", o.log_mib);
        let proxy_stream = proxy_stream(&ctx, "agent-00", &keys[0], pid).await?;
        eprintln!("bench: {HANGUPS} clients hanging up mid-call, then calls");
        let hangup = hangups(&ctx, &keys).await?;
        let mut rates = Vec::new();
        for &c in &o.concurrency {
            eprintln!("bench: throughput at {c} concurrent clients ({} s each side)", o.throughput_secs);
            let d = direct_rate(&ctx, c, o.throughput_secs).await?;
            let mut j = Vec::new();
            for p in Protocol::BOTH {
                j.push((p, jgate_rate(&ctx, &keys[..c], o.throughput_secs, p).await?));
            }
            rates.push((c, d, j));
        }
        eprintln!("bench: tail of a {} MiB console log", o.log_mib);
        let tail = tail(&ctx, &keys[0], o.tail_runs, log_bytes).await?;
        eprintln!("bench: {POLL_AGENTS} pollers for {} s each side", o.poll_secs);
        let poll = polling(&ctx, &keys, o.poll_secs).await?;
        eprintln!("bench: RSS soak for {soak_secs} s");
        let soak = soak(&ctx, &keys, pid, soak_secs).await?;
        anyhow::Ok(Results { latency, proxy, proxy_stream, hangup, rates, tail, log_bytes, poll, soak })
    })?;
    drop(jg);
    drop(server);

    let text = report(&results, &o, soak_secs);
    println!("{text}");
    if let Some(out) = &o.out {
        std::fs::write(out, &text).with_context(|| format!("cannot write {}", out.display()))?;
        eprintln!("bench: wrote {}", out.display());
    }
    Ok(())
}
