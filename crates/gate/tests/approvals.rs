//! Human approval (issue #13) on both stores, PostgreSQL for real: a change under an `--approve`
//! grant is held until an administrator decides; a decision made through one gate releases the
//! call waiting in another (two gates on one database stand for two replicas); an approval
//! releases exactly one call and only the call it was asked for; denials and expiries end the
//! call with the reason; every request, decision and expiry is in the audit chain.

use std::sync::Arc;
use std::time::Duration;

use gate::approvals::ApprovalStatus;
use gate::audit::{Phase, Surface};
use gate::catalog::Group;
use gate::policy::Level;
use gate::secrets::MasterKey;
use gate::store::{AuditFilter, Store};
use gate::{Admin, CallOptions, Caller, Gate, GateError, Limits};
use jenkins_twin::TwinServer;
use serde_json::{Value, json};

mod common;
use common::{Dbs, key_file, temp_dir};

const TOKEN: &str = "11dddddddddddddddddddddddddddddddd";

const SCENARIO: &str = r#"
[controller]
quiet_period = 0
[[folders]]
path = "release"
[[jobs]]
path = "release/deploy"
script = "echo deploying"
[[jobs.parameters]]
name = "ENV"
type = "choice"
choices = ["staging", "production"]
[[jobs]]
path = "release/other"
script = "echo other"
[[jobs]]
path = "free"
script = "echo free"
"#;

struct Fixture {
    _server: TwinServer,
    url: String,
    key: std::path::PathBuf,
}

/// A twin, a controller `prod`, agents `bot` and `bot2` with: build full with approval on
/// release/**, build full (no approval) on `free`, status read everywhere, config full with
/// approval everywhere.
async fn fixture(url: String) -> Fixture {
    let (_twin, server) =
        jenkins_twin::start(SCENARIO, &[("admin".into(), "admin".into(), TOKEN.into())]).await.expect("twin");
    let key = key_file();
    let g = open(&url, &key, Limits::default()).await;
    g.add_controller(&Admin::local_cli(), common::twin_controller("prod", &server, TOKEN), false)
        .await
        .expect("controller");
    let a = Admin::local_cli();
    for agent in ["bot", "bot2"] {
        g.create_agent(&a, agent, "", None).await.expect("agent");
        g.grant_with(&a, agent, Group::Build, Level::Full, None, Some("release/**"), vec![], true)
            .await
            .expect("grant");
        g.grant(&a, agent, Group::Build, Level::Full, None, Some("free"), vec![]).await.expect("grant");
        g.grant(&a, agent, Group::Status, Level::Read, None, None, vec![]).await.expect("grant");
        g.grant_with(&a, agent, Group::Config, Level::Full, None, None, vec![], true).await.expect("grant");
    }
    Fixture { _server: server, url, key }
}

async fn open(url: &str, key: &std::path::Path, limits: Limits) -> Arc<Gate> {
    let store = Store::open(url).await.expect("store");
    let (master, _) = MasterKey::load_or_create("JGATE_TEST_UNSET_MASTER_KEY", key).expect("master key");
    Arc::new(Gate::open(store, master, None).await.expect("gate").with_limits(limits))
}

fn agent(name: &str) -> Caller {
    Caller { agent: name.into(), key_id: None, surface: Surface::Mcp, client_addr: None, request_id: "t".into() }
}

fn ana() -> Admin {
    Admin::new("ana", Surface::Cli)
}

fn quick(wait_ms: u64) -> Limits {
    Limits { approval_wait: Duration::from_millis(wait_ms), ..Limits::default() }
}

async fn builds_of(g: &Gate, job: &str) -> u64 {
    let v = g.call(&agent("bot"), "prod", "get_job", json!({"job": job})).await.expect("job");
    v["next_build_number"].as_u64().unwrap_or(1) - 1
}

fn deploy(env: &str) -> Value {
    json!({"job": "release/deploy", "parameters": {"ENV": env}})
}

/// Waits until `g` lists a pending approval of `agent`, and returns it.
async fn pending_of(g: &Gate, agent: &str) -> gate::approvals::Approval {
    for _ in 0..200 {
        if let Some(a) = g.approvals(false).await.expect("approvals").into_iter().find(|a| a.agent == agent) {
            return a;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no pending approval of {agent} appeared");
}

async fn sentences(g: &Gate) -> Vec<String> {
    g.store().audit(&AuditFilter::default()).await.expect("audit").into_iter().map(|r| r.sentence).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_approval_on_one_replica_releases_the_call_waiting_on_another() {
    let dbs = Dbs::new("jgapr").await;
    for (kind, url) in dbs.list.clone() {
        let f = fixture(url).await;
        let a = open(&f.url, &f.key, Limits::default()).await;
        let b = open(&f.url, &f.key, Limits::default()).await;
        let before = builds_of(&a, "release/deploy").await;
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let waiting = {
            let b = b.clone();
            tokio::spawn(async move {
                let opts = CallOptions { progress: Some(tx), ..CallOptions::default() };
                b.call_with(&agent("bot"), Some("prod"), "trigger_build", deploy("production"), opts).await
            })
        };
        let pending = pending_of(&a, "bot").await;
        assert_eq!(pending.status, ApprovalStatus::Pending);
        assert_eq!(pending.operation, "trigger_build");
        assert_eq!(pending.target.as_deref(), Some("release/deploy"));
        assert_eq!(
            pending.summary, "bot's request to trigger a build of release/deploy on prod with ENV=production",
            "{kind}"
        );
        // Nothing ran while it is held.
        assert_eq!(builds_of(&a, "release/deploy").await, before, "{kind}");
        let (_, _, message) = rx.recv().await.expect("progress while waiting");
        assert!(message.contains(&format!("waiting for approval {}", pending.id)), "{kind}: {message}");

        let decided = a.approve(&ana(), &pending.id, Some("change 42")).await.expect("approve");
        assert_eq!(decided.status, ApprovalStatus::Approved);
        let result = tokio::time::timeout(Duration::from_secs(20), waiting).await.expect("released").expect("join");
        let v = result.expect("the approved trigger runs").into_inner();
        assert!(v["build"]["number"].as_u64().is_some(), "{kind}: {v}");
        assert_eq!(builds_of(&a, "release/deploy").await, before + 1, "{kind}");
        // The trigger's own progress follows the wait's, still increasing (MCP requires it).
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut values = vec![0.0];
        while let Ok((done, _, message)) = rx.try_recv() {
            assert!(done > *values.last().unwrap_or(&-1.0), "{kind}: progress went back at {message}: {values:?}");
            values.push(done);
        }
        assert!(values.len() > 1, "{kind}: no progress from the trigger after the approval");
        // Used up: it cannot be approved again or release another call.
        let again = a.approval(&pending.id).await.expect("read").expect("exists");
        assert_eq!(again.status, ApprovalStatus::Used, "{kind}");
        assert!(a.approve(&ana(), &pending.id, None).await.is_err(), "{kind}");

        let all = sentences(&a).await;
        let approved = format!(
            "ana (local CLI) approved bot's request to trigger a build of release/deploy on prod with ENV=production (approval {}; reason: change 42)",
            pending.id
        );
        assert!(all.contains(&approved), "{kind}: {all:#?}");
        assert!(
            all.iter()
                .any(|s| s.starts_with("bot asked to trigger a build of release/deploy on prod with ENV=production")
                    && s.contains(&format!("held for approval {}", pending.id))),
            "{kind}: {all:#?}"
        );
        assert!(
            all.iter().any(|s| s.starts_with("bot triggered build #")
                && s.contains(&format!("approved by ana (approval {}, reason: change 42)", pending.id))),
            "{kind}: {all:#?}"
        );
        a.verify_audit(&[]).await.expect("store").expect("chain verifies");
    }
    dbs.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_call_not_decided_in_time_answers_pending_and_runs_when_sent_again_after_approval() {
    let dbs = Dbs::new("jgapp").await;
    for (kind, url) in dbs.list.clone() {
        let f = fixture(url).await;
        let g = open(&f.url, &f.key, quick(300)).await;
        let before = builds_of(&g, "release/deploy").await;
        let v = g.call(&agent("bot"), "prod", "trigger_build", deploy("production")).await.expect("pending answer");
        assert_eq!(v["status"], "pending", "{kind}: {v}");
        let id = v["approval_id"].as_str().expect("approval id").to_string();
        assert!(v["message"].as_str().unwrap_or("").contains("send exactly the same call again"), "{v}");
        // Sent again before a decision: the same approval, still pending (not a second request).
        let v2 = g.call(&agent("bot"), "prod", "trigger_build", deploy("production")).await.expect("pending");
        assert_eq!(v2["approval_id"], id.as_str(), "{kind}");
        assert_eq!(g.approvals(false).await.expect("list").len(), 1, "{kind}");
        g.approve(&ana(), &id, None).await.expect("approve");
        let v3 = g.call(&agent("bot"), "prod", "trigger_build", deploy("production")).await.expect("runs");
        assert!(v3["build"]["number"].as_u64().is_some(), "{kind}: {v3}");
        assert_eq!(builds_of(&g, "release/deploy").await, before + 1);
        // One approval, one call: the next identical call asks anew.
        let v4 = g.call(&agent("bot"), "prod", "trigger_build", deploy("production")).await.expect("pending");
        assert_eq!(v4["status"], "pending", "{kind}");
        assert_ne!(v4["approval_id"], id.as_str(), "{kind}");
        assert_eq!(builds_of(&g, "release/deploy").await, before + 1, "{kind}");
        let all = sentences(&g).await;
        assert!(
            all.iter().any(|s| s.contains("not done yet, it waits for an administrator's approval")),
            "{kind}: {all:#?}"
        );
    }
    dbs.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_approval_authorises_only_the_call_it_was_asked_for() {
    let dbs = Dbs::new("jgapb").await;
    let (_, url) = dbs.list[0].clone();
    let f = fixture(url).await;
    let g = open(&f.url, &f.key, quick(200)).await;
    let first = g.call(&agent("bot"), "prod", "trigger_build", deploy("production")).await.expect("pending");
    let id = first["approval_id"].as_str().expect("id").to_string();
    g.approve(&ana(), &id, None).await.expect("approve");
    let before = builds_of(&g, "release/deploy").await;
    // Other parameters, another job, another operation on the same job, another agent, an
    // extra argument: each is another call, held on its own approval.
    let others: Vec<(Caller, &str, Value)> = vec![
        (agent("bot"), "trigger_build", deploy("staging")),
        (agent("bot"), "trigger_build", json!({"job": "release/other", "parameters": {"ENV": "production"}})),
        (agent("bot"), "wipe_workspace", json!({"job": "release/deploy"})),
        (agent("bot2"), "trigger_build", deploy("production")),
        (
            agent("bot"),
            "trigger_build",
            json!({"job": "release/deploy", "parameters": {"ENV": "production"}, "wait": "none"}),
        ),
    ];
    for (caller, op, args) in others {
        let v = g.call(&caller, "prod", op, args.clone()).await.expect("held");
        assert_eq!(v["status"], "pending", "{op} {args}: {v}");
        assert_ne!(v["approval_id"], id.as_str(), "{op} {args}");
    }
    assert_eq!(builds_of(&g, "release/deploy").await, before);
    // The approved call itself still runs (once).
    let v = g.call(&agent("bot"), "prod", "trigger_build", deploy("production")).await.expect("runs");
    assert!(v["build"]["number"].as_u64().is_some(), "{v}");
    assert_eq!(builds_of(&g, "release/deploy").await, before + 1);
    // Through the Jenkins proxy a held change cannot answer `pending` as a success: 409.
    let proxy = Caller { surface: Surface::Proxy, ..agent("bot") };
    let err = g.call(&proxy, "prod", "trigger_build", deploy("staging")).await.expect_err("held");
    assert_eq!(err.status(), Some(409), "{err:?}");
    assert!(err.to_string().contains("send exactly the same call again"), "{err}");
    assert_eq!(builds_of(&g, "release/deploy").await, before + 1);
    // A change under a grant without approval, and reads under an approving grant, are not held.
    let v = g.call(&agent("bot"), "prod", "trigger_build", json!({"job": "free"})).await.expect("free");
    assert!(v["build"]["number"].as_u64().is_some(), "{v}");
    let cfg = g.call(&agent("bot"), "prod", "get_job_config", json!({"job": "free"})).await.expect("read");
    assert!(cfg.get("status").is_none_or(|s| s != "pending"), "{cfg}");
    dbs.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_denied_call_fails_with_the_reason() {
    let dbs = Dbs::new("jgapd").await;
    for (kind, url) in dbs.list.clone() {
        let f = fixture(url).await;
        let g = open(&f.url, &f.key, Limits::default()).await;
        let before = builds_of(&g, "release/deploy").await;
        let waiting = {
            let g = g.clone();
            tokio::spawn(async move { g.call(&agent("bot"), "prod", "trigger_build", deploy("production")).await })
        };
        let pending = pending_of(&g, "bot").await;
        let err = g.deny(&ana(), &pending.id, "  ").await.expect_err("a denial needs a reason");
        assert!(err.to_string().contains("needs a reason"), "{err}");
        g.deny(&ana(), &pending.id, "freeze until Monday").await.expect("deny");
        let err = waiting.await.expect("join").expect_err("denied");
        assert!(matches!(err, GateError::Denied { .. }), "{kind}: {err:?}");
        assert!(
            err.to_string().contains("ana denied approval") && err.to_string().contains("freeze until Monday"),
            "{err}"
        );
        assert_eq!(builds_of(&g, "release/deploy").await, before, "{kind}");
        assert!(g.approve(&ana(), &pending.id, None).await.is_err(), "a denied approval cannot be approved");
        let all = sentences(&g).await;
        let denied = format!(
            "ana (local CLI) denied bot's request to trigger a build of release/deploy on prod with ENV=production (approval {}; reason: freeze until Monday)",
            pending.id
        );
        assert!(all.contains(&denied), "{kind}: {all:#?}");
        assert!(all.iter().any(|s| s.contains("but it failed: ana denied approval")), "{kind}: {all:#?}");
    }
    dbs.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn approvals_expire_and_the_call_says_so() {
    let dbs = Dbs::new("jgape").await;
    for (kind, url) in dbs.list.clone() {
        let f = fixture(url).await;
        let limits = Limits {
            approval_wait: Duration::from_millis(200),
            approval_lifetime: Duration::from_millis(1200),
            ..Limits::default()
        };
        let g = open(&f.url, &f.key, limits).await;
        let v = g.call(&agent("bot"), "prod", "trigger_build", deploy("production")).await.expect("pending");
        let id = v["approval_id"].as_str().expect("id").to_string();
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert!(g.approvals(false).await.expect("list").is_empty(), "{kind}");
        let err = g.approve(&ana(), &id, None).await.expect_err("expired");
        assert!(err.to_string().contains("expired"), "{kind}: {err}");
        let err = g.call(&agent("bot"), "prod", "trigger_build", deploy("production")).await.expect_err("expired");
        assert!(err.to_string().contains(&format!("approval {id} expired")), "{kind}: {err}");
        // Told once: the next identical call asks anew.
        let v = g.call(&agent("bot"), "prod", "trigger_build", deploy("production")).await.expect("pending");
        assert_ne!(v["approval_id"], id.as_str(), "{kind}");
        let all = sentences(&g).await;
        let expired = format!(
            "bot's request to trigger a build of release/deploy on prod with ENV=production expired without a decision (approval {id})"
        );
        assert_eq!(all.iter().filter(|s| **s == expired).count(), 1, "{kind}: {all:#?}");
        g.verify_audit(&[]).await.expect("store").expect("chain verifies");
    }
    dbs.cleanup().await;
}

/// An approval nobody looks at expires by itself: the maintenance loop `jgate serve` runs closes
/// it and writes its record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unattended_approval_expires_by_itself() {
    let dbs = Dbs::new("jgapm").await;
    for (kind, url) in dbs.list.clone() {
        let f = fixture(url).await;
        let limits = Limits {
            approval_wait: Duration::from_millis(200),
            approval_lifetime: Duration::from_millis(800),
            ..Limits::default()
        };
        let g = open(&f.url, &f.key, limits).await;
        let v = g.call(&agent("bot"), "prod", "trigger_build", deploy("production")).await.expect("pending");
        let id = v["approval_id"].as_str().expect("id").to_string();
        g.maintain(Duration::from_millis(300));
        let expired = format!(
            "bot's request to trigger a build of release/deploy on prod with ENV=production expired without a decision (approval {id})"
        );
        let start = std::time::Instant::now();
        while !sentences(&g).await.contains(&expired) {
            assert!(start.elapsed() < Duration::from_secs(10), "{kind}: never expired");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    dbs.cleanup().await;
}

#[tokio::test]
async fn approval_is_for_full_grants_only() {
    let url = temp_dir("jgapg").join("jgate.db").display().to_string();
    let g = open(&url, &key_file(), Limits::default()).await;
    g.create_agent(&Admin::local_cli(), "bot", "", None).await.expect("agent");
    let err = g
        .grant_with(&Admin::local_cli(), "bot", Group::Build, Level::Read, None, None, vec![], true)
        .await
        .expect_err("read with approval");
    assert!(err.to_string().contains("use it with level full"), "{err}");
    let gr = g
        .grant_with(&Admin::local_cli(), "bot", Group::Build, Level::Full, None, Some("release/**"), vec![], true)
        .await
        .expect("grant");
    let stored = g.grants("bot").await.expect("grants");
    assert_eq!(stored, vec![gr.clone()]);
    assert!(stored[0].approve);
    assert_eq!(gr.describe(), "Trigger a build: full use, with approval, on release/**");
    let phases: Vec<Phase> =
        g.store().audit(&AuditFilter::default()).await.expect("audit").into_iter().map(|r| r.entry.phase).collect();
    assert!(phases.contains(&Phase::Outcome));
}

/// A one-request-at-a-time HTTP receiver on 127.0.0.1: each request's body is sent on.
async fn receiver() -> (u16, tokio::sync::mpsc::UnboundedReceiver<(String, Value)>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            let (head, body) = loop {
                let n = s.read(&mut chunk).await.unwrap_or(0);
                if n == 0 {
                    break (String::new(), Vec::new());
                }
                buf.extend_from_slice(&chunk[..n]);
                if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&buf[..i]).to_string();
                    let len: usize = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_string())
                        })
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0);
                    let mut body = buf[i + 4..].to_vec();
                    while body.len() < len {
                        let n = s.read(&mut chunk).await.unwrap_or(0);
                        if n == 0 {
                            break;
                        }
                        body.extend_from_slice(&chunk[..n]);
                    }
                    break (head, body);
                }
            };
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").await;
            let line = head.lines().next().unwrap_or_default().to_string();
            let _ = tx.send((line, serde_json::from_slice(&body).unwrap_or(Value::Null)));
        }
    });
    (port, rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn new_requests_are_announced_through_the_webhook_which_never_blocks_the_call() {
    use gate::approvals::{ApprovalWebhook, WebhookFormat};
    let dbs = Dbs::new("jgapw").await;
    let (_, url) = dbs.list[0].clone();
    let f = fixture(url).await;
    let (port, mut rx) = receiver().await;
    let allow = vec![format!("127.0.0.1:{port}").parse().expect("allow entry")];
    let secret_path = "/services/T000/B000/s3cretPath";
    let hook_url = format!("http://127.0.0.1:{port}{secret_path}");
    // Private without an allow entry, credentials in the URL, metadata: refused, and the
    // refusal never shows the URL's path (a chat webhook's secret).
    for (bad, allow) in [
        (hook_url.clone(), vec![]),
        (format!("http://u:p@127.0.0.1:{port}{secret_path}"), allow.clone()),
        (format!("http://169.254.169.254{secret_path}"), vec!["169.254.169.254".parse().expect("entry")]),
    ] {
        let err = ApprovalWebhook::new(&bad, WebhookFormat::Json, allow).expect_err("refused");
        assert!(!err.to_string().contains("s3cretPath"), "{err}");
    }
    let hook = ApprovalWebhook::new(&hook_url, WebhookFormat::Json, allow.clone()).expect("hook");
    assert!(!format!("{hook:?}").contains("s3cret"));
    let limits = Limits { approval_webhook: Some(hook), ..quick(300) };
    let g = open(&f.url, &f.key, limits).await;
    let v = g.call(&agent("bot"), "prod", "trigger_build", deploy("production")).await.expect("pending");
    let id = v["approval_id"].as_str().expect("id");
    let (line, body) = tokio::time::timeout(Duration::from_secs(10), rx.recv()).await.expect("posted").expect("body");
    assert_eq!(line, format!("POST {secret_path} HTTP/1.1"));
    assert_eq!(body["event"], "approval.requested");
    assert_eq!(body["approval"]["id"], id);
    assert_eq!(
        body["approval"]["summary"],
        "bot's request to trigger a build of release/deploy on prod with ENV=production"
    );
    assert!(body["text"].as_str().unwrap_or("").contains(&format!("jgate approve {id}")), "{body}");
    // Sent again: the same request, not announced twice.
    g.call(&agent("bot"), "prod", "trigger_build", deploy("production")).await.expect("pending");

    // Slack's format, with what Slack would read as markup escaped.
    let slack = ApprovalWebhook::new(&hook_url, WebhookFormat::Slack, allow.clone()).expect("hook");
    let g = open(&f.url, &f.key, Limits { approval_webhook: Some(slack), ..quick(300) }).await;
    g.call(
        &agent("bot"),
        "prod",
        "trigger_build",
        json!({"job": "release/other", "parameters": {"ENV": "<!channel>"}}),
    )
    .await
    .expect("pending");
    let (_, body) = tokio::time::timeout(Duration::from_secs(10), rx.recv()).await.expect("posted").expect("body");
    let text = body["text"].as_str().unwrap_or("");
    assert!(text.contains("release/other") && text.contains("&lt;!channel&gt;") && !text.contains("<!"), "{body}");
    assert_eq!(body["blocks"][0]["text"]["text"], text);
    assert!(rx.try_recv().is_err(), "a request sent again was announced twice");

    // A webhook that cannot be reached: the call answers as before, at once.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let dead = ApprovalWebhook::new(
        &format!("http://127.0.0.1:{closed}/hook"),
        WebhookFormat::Json,
        vec![format!("127.0.0.1:{closed}").parse().expect("entry")],
    )
    .expect("hook");
    let g = open(&f.url, &f.key, Limits { approval_webhook: Some(dead), ..quick(300) }).await;
    let v = g.call(&agent("bot2"), "prod", "trigger_build", deploy("staging")).await.expect("pending");
    assert_eq!(v["status"], "pending");
    dbs.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_agent_cannot_flood_the_approvers() {
    let url = temp_dir("jgapf").join("jgate.db").display().to_string();
    let f = fixture(url).await;
    let g = open(&f.url, &f.key, quick(20)).await;
    for i in 0..gate::approvals::MAX_PENDING_PER_AGENT {
        let v = g.call(&agent("bot"), "prod", "trigger_build", deploy(&format!("v{i}"))).await.expect("pending");
        assert_eq!(v["status"], "pending");
    }
    let err = g.call(&agent("bot"), "prod", "trigger_build", deploy("one-more")).await.expect_err("limit");
    assert!(matches!(err, GateError::Busy(_)), "{err:?}");
    // A call already asked for still finds its approval; another agent is not affected.
    let v = g.call(&agent("bot"), "prod", "trigger_build", deploy("v0")).await.expect("pending");
    assert_eq!(v["status"], "pending");
    let v = g.call(&agent("bot2"), "prod", "trigger_build", deploy("v0")).await.expect("pending");
    assert_eq!(v["status"], "pending");
}
