//! Build events vs polling (issue 13): agents waiting on builds, measured with the twin's
//! Notification plugin posting to jgate's receiver and without it.
//!
//! - upstream requests per second while 20 agents each wait for their own 15 s build
//!   (`trigger_build` with `wait: finish`), with and without events, and how long after the
//!   build's end each answer came;
//! - 50 agents waiting on one build (`wait_for_build`) without events: upstream reads per second;
//! - trigger → build number (`trigger_build`, `wait: start`, a job with a 1 s quiet period) with
//!   and without events, next to the twin's own queue delay as a client polling the queue item
//!   every 5 ms sees it.
//!
//! Everything runs in this process (the twin, a Gate on SQLite in a temporary directory, the
//! receiver calling `Gate::receive_hook` as `jgate serve`'s does). `--out PATH` writes the report
//! as Markdown (`cargo xtask bench` writes docs/events-bench.md); it is printed either way.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::routing::post;
use gate::catalog::Group;
use gate::policy::Level;
use gate::secrets::MasterKey;
use gate::store::Store;
use gate::{Admin, Caller, Gate, Limits, NewController};
use secrecy::SecretString;
use serde_json::json;

const TOKEN: &str = "11ffffffffffffffffffffffffffffffff";
const WAITERS: usize = 20;
const BUILD_SECS: u64 = 15;
const SHARED_WAITERS: usize = 50;
const TRIGGERS: usize = 20;

/// Whether the receiver passes events on (off: the plugin posts, jgate ignores them).
#[derive(Clone)]
struct Receiver {
    gate: Arc<Gate>,
    on: Arc<Mutex<bool>>,
    completed: Arc<Mutex<Vec<(String, Instant)>>>,
}

async fn receive(State(r): State<Receiver>, Path((c, s)): Path<(String, String)>, body: Bytes) -> &'static str {
    let on = r.on.lock().map(|g| *g).unwrap_or(false);
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&body)
        && v["build"]["phase"] == "COMPLETED"
        && let Some(u) = v["url"].as_str()
        && let Ok(mut list) = r.completed.lock()
    {
        list.push((u.to_string(), Instant::now()));
    }
    if on {
        let _ = r.gate.receive_hook(&c, &s, Some(&body)).await;
    }
    "ok"
}

fn caller(agent: &str) -> Caller {
    Caller {
        agent: agent.into(),
        key_id: None,
        surface: gate::audit::Surface::Mcp,
        client_addr: None,
        request_id: "b".into(),
    }
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v.get(i).copied().unwrap_or(f64::NAN)
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let out = std::env::args().skip_while(|a| a != "--out").nth(1);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let hook_addr = listener.local_addr()?;
    let dir = std::env::temp_dir().join(format!("jgate-events-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    // The hook URL's secret is known only after the controller exists: the twin posts to a
    // fixed path and the receiver adds the secret.
    let mut toml = String::from("[controller]\nquiet_period = 0\nexecutors = 64\n");
    let notify = format!("[[jobs.notifications]]\nurl = \"http://{hook_addr}/in\"\n");
    for i in 0..WAITERS {
        toml += &format!("[[jobs]]\npath = \"w{i}\"\nscript = \"sleep {BUILD_SECS}\"\n{notify}");
    }
    toml += &format!(
        "[[jobs]]\npath = \"shared\"\nscript = \"sleep 20\"\n[[jobs]]\npath = \"q\"\nquiet_period = 1\nscript = \"echo hi\"\n{notify}"
    );
    let (twin, server) = jenkins_twin::start(&toml, &[("admin".into(), "admin".into(), TOKEN.into())]).await?;
    let store = Store::open(&dir.join("jgate.db").display().to_string()).await?;
    let (master, _) = MasterKey::load_or_create("JGATE_BENCH_UNSET", &dir.join("master.key"))?;
    let limits = Limits { max_in_flight_per_agent: 64, ..Limits::default() };
    let g = Arc::new(Gate::open(store, master, None).await?.with_limits(limits));
    let admin = Admin::local_cli();
    g.add_controller(
        &admin,
        NewController {
            name: "prod".into(),
            url: server.url(),
            username: "admin".into(),
            token: SecretString::from(TOKEN.to_string()),
            password: false,
            allow_private: vec![format!("127.0.0.1:{}", server.addr().port())],
            ca_pem: None,
            insecure: false,
        },
        false,
    )
    .await?;
    let agents: Vec<String> = (0..SHARED_WAITERS).map(|i| format!("agent-{i}")).collect();
    for a in &agents {
        g.create_agent(&admin, a, "", None).await?;
        g.grant(&admin, a, Group::Status, Level::Read, None, None, vec![]).await?;
        g.grant(&admin, a, Group::Build, Level::Full, None, None, vec![]).await?;
    }
    let secret = g.create_hook(&admin, "prod", false).await?;
    let recv = Receiver { gate: g.clone(), on: Arc::new(Mutex::new(false)), completed: Arc::default() };
    let app = axum::Router::new()
        .route(
            "/in",
            post({
                let secret = secret.clone();
                move |st: State<Receiver>, body: Bytes| async move {
                    receive(st, Path(("prod".to_string(), secret)), body).await
                }
            }),
        )
        .with_state(recv.clone());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });

    let mut rows: Vec<String> = Vec::new();
    // 1. 20 agents, each waiting for its own build.
    for events in [false, true] {
        *recv.on.lock().map_err(|_| anyhow::anyhow!("lock"))? = events;
        recv.completed.lock().map_err(|_| anyhow::anyhow!("lock"))?.clear();
        let before = twin.requests_received();
        let started = Instant::now();
        let mut calls = Vec::new();
        for (i, a) in agents.iter().take(WAITERS).enumerate() {
            let (g, a) = (g.clone(), a.clone());
            calls.push(tokio::spawn(async move {
                let r = g
                    .call(&caller(&a), "prod", "trigger_build", json!({"job": format!("w{i}"), "wait": "finish"}))
                    .await;
                (i, r.is_ok(), Instant::now())
            }));
        }
        let mut after_end = Vec::new();
        let mut errors = 0;
        for c in calls {
            let (i, ok, at) = c.await?;
            errors += usize::from(!ok);
            let done = recv
                .completed
                .lock()
                .map_err(|_| anyhow::anyhow!("lock"))?
                .iter()
                .find(|(u, _)| u == &format!("job/w{i}/"))
                .map(|(_, t)| *t);
            if let Some(t) = done {
                after_end.push(at.saturating_duration_since(t).as_secs_f64() * 1000.0);
            }
        }
        let secs = started.elapsed().as_secs_f64();
        let reqs = twin.requests_received() - before;
        rows.push(format!(
            "| {WAITERS} agents, each `trigger_build` (wait: finish) of its own {BUILD_SECS} s build, {} | {:.1} req/s ({reqs} in {secs:.1} s) | answer after the build's end: p50 {:.0} ms, max {:.0} ms; {errors} error(s) |",
            if events { "**with events**" } else { "without events (polling)" },
            reqs as f64 / secs,
            pct(&mut after_end.clone(), 0.5),
            pct(&mut after_end, 1.0),
        ));
    }
    // 2. 50 agents waiting on one build, no events for it (coalesced polling).
    *recv.on.lock().map_err(|_| anyhow::anyhow!("lock"))? = false;
    let v = g.call(&caller("agent-0"), "prod", "trigger_build", json!({"job": "shared", "wait": "start"})).await?;
    let number = v["build"]["number"].as_u64().unwrap_or(1);
    let resource = format!("/shared/{number}/api/json");
    let before = twin.requests_to(&resource);
    let started = Instant::now();
    let mut calls = Vec::new();
    for a in &agents {
        let (g, a) = (g.clone(), a.clone());
        calls.push(tokio::spawn(async move {
            g.call(&caller(&a), "prod", "wait_for_build", json!({"job": "shared", "build": number, "timeout_s": 60}))
                .await
                .is_ok()
        }));
    }
    let mut errors = 0;
    for c in calls {
        errors += usize::from(!c.await?);
    }
    let secs = started.elapsed().as_secs_f64();
    let reads = twin.requests_to(&resource) - before;
    rows.push(format!(
        "| {SHARED_WAITERS} agents `wait_for_build` on one 20 s build, without events | {:.2} reads/s of the build ({reads} in {secs:.1} s) | coalesced: at most one per second; {errors} error(s) |",
        reads as f64 / secs
    ));
    // 3. Trigger → build number.
    let http = reqwest::Client::new();
    let mut twin_own = Vec::new();
    for _ in 0..TRIGGERS {
        let t = Instant::now();
        let r = http.post(format!("{}/job/q/build", server.url())).basic_auth("admin", Some(TOKEN)).send().await?;
        let loc = r.headers().get("location").and_then(|l| l.to_str().ok()).unwrap_or_default().to_string();
        let item = format!("{}api/json", loc);
        loop {
            let v: serde_json::Value =
                http.get(&item).basic_auth("admin", Some(TOKEN)).send().await?.json().await.unwrap_or_default();
            if v["executable"]["number"].as_u64().is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        twin_own.push(t.elapsed().as_secs_f64() * 1000.0);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    rows.push(format!(
        "| The twin's own queue delay, 1 s quiet period (POST build, then the queue item polled every 5 ms) | p50 {:.0} ms | p90 {:.0} ms |",
        pct(&mut twin_own.clone(), 0.5),
        pct(&mut twin_own, 0.9)
    ));
    for events in [false, true] {
        *recv.on.lock().map_err(|_| anyhow::anyhow!("lock"))? = events;
        let mut lat = Vec::new();
        for _ in 0..TRIGGERS {
            let t = Instant::now();
            g.call(&caller("agent-1"), "prod", "trigger_build", json!({"job": "q", "wait": "start"})).await?;
            lat.push(t.elapsed().as_secs_f64() * 1000.0);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        rows.push(format!(
            "| `trigger_build` (wait: start) → build number, {} | p50 {:.0} ms | p90 {:.0} ms |",
            if events { "**with events**" } else { "without events" },
            pct(&mut lat.clone(), 0.5),
            pct(&mut lat, 0.9)
        ));
    }
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let report = format!(
        "# Build events: benchmark\n\n`cargo run --release -p jgate --example events_bench` (crates/jgate/examples/events_bench.rs), \
         {cpus} CPU(s). The twin, a Gate on SQLite and the Notification receiver in one process; \
         docs/events.md says what is measured and why.\n\n| Measurement | Result | Detail |\n|---|---|---|\n{}\n",
        rows.join("\n")
    );
    print!("{report}");
    if let Some(p) = out {
        std::fs::write(&p, &report)?;
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
