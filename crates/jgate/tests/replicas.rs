//! Three `jgate serve` replicas on one PostgreSQL database behave as one jgate (issue #13's
//! proof), with agents spread over them round-robin as a load balancer without sticky sessions
//! would: twenty concurrent identical triggers with one idempotency key start one build; identical
//! triggers without a key, one per replica, queue one after another instead of merging; a call
//! held for approval on one replica is released by an approval given in another replica's web
//! console; a build event Jenkins sends to a third replica ends a wait on the first; an MCP
//! session (protocol 2025-06-18) opened on one replica is served by the others, for its agent only;
//! an agent's rate limit is one budget across the three; and the audit chain they all appended to
//! verifies, with no write left open.

mod common;

use std::time::{Duration, Instant};

use common::{Env, Mcp, PgSchema, Relay, Serve, TOKEN, answer_text, succeeded};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_replicas_on_one_postgresql_act_as_one() {
    let Some(pg) = PgSchema::new("jgrep").await else { return };
    let (relay, relay_addr) = Relay::start().await;
    let toml = format!(
        "[controller]\nquiet_period = 0\n\
         [[jobs]]\npath = \"release/build\"\nscript = \"sleep 1\"\n\
         [[jobs]]\npath = \"release/quiet\"\nscript = \"sleep 1\"\nquiet_period = 2\n\
         [[jobs]]\npath = \"release/deploy\"\nscript = \"sleep 6\"\n\
         [[jobs.notifications]]\nurl = \"http://{relay_addr}/hook\"\n"
    );
    let (twin, server) =
        jenkins_twin::start(&toml, &[("admin".into(), "admin".into(), TOKEN.into())]).await.expect("twin");
    let env = Env::new("replicas", Some(pg.url()));
    env.add_twin("prod", &server.url(), server.addr().port());
    let release_bot = env.agent("release-bot");
    env.ok(&["grant", "release-bot", "build", "full"]);
    env.ok(&["grant", "release-bot", "status", "read"]);
    let limited_bot = env.agent("limited-bot");
    env.ok(&["grant", "limited-bot", "status", "read"]);
    env.ok(&["agent", "limits", "limited-bot", "--calls-per-minute", "30"]);
    let deploy_bot = env.agent("deploy-bot");
    env.ok(&["grant", "deploy-bot", "build", "full", "--jobs", "release/**", "--approve"]);
    let password = env.dir.join("ana.pw");
    std::fs::write(&password, "a long console passphrase\n").expect("password file");
    env.ok(&["admin", "create", "ana", "--password-file", password.to_str().expect("path")]);

    let replicas: Vec<Serve> = (0..3).map(|_| env.serve(&[])).collect();
    let bases: Vec<String> = replicas.iter().map(|r| r.base.clone()).collect();

    sessions_travel_between_replicas(&bases, &release_bot, &deploy_bot).await;
    one_key_one_build(&bases, &release_bot, &twin, &server).await;
    identical_triggers_queue_one_after_another(&bases, &release_bot).await;
    approval_on_one_releases_another(&env, &bases, &deploy_bot).await;
    event_on_one_wakes_another(&env, &bases, &release_bot, &relay, &twin).await;
    one_rate_limit_across_replicas(&bases, &limited_bot).await;

    // Everything the three appended is one chain, and no write is left without its outcome.
    let o = env.run(&["audit", "verify"]);
    assert!(o.status.success(), "audit verify:\n{}", common::text(&o));
    let audit = env.ok(&["audit", "--last", "200"]);
    assert!(audit.contains("ana"), "the console approval is in the audit:\n{audit}");

    drop(replicas);
    env.remove();
    pg.cleanup().await;
}

/// A session opened on replica A is used on B and C (restored from the store), by its agent only;
/// ended through B, it is unknown to B and C at once.
async fn sessions_travel_between_replicas(bases: &[String], key: &str, other_key: &str) {
    let mut mcp = Mcp::new(&bases[0], key);
    mcp.initialize().await;
    let session = mcp.session.clone().expect("a session id");
    for base in &bases[1..] {
        mcp.url = format!("{base}/mcp");
        let tools = mcp.request("tools/list", json!({})).await;
        assert!(tools["result"]["tools"].as_array().is_some_and(|t| !t.is_empty()), "tools/list on {base}: {tools}");
        let me = mcp.call("whoami", json!({})).await;
        assert!(succeeded(&me) && answer_text(&me).contains("release-bot"), "whoami on {base}: {me}");
    }
    assert_eq!(mcp.session.as_deref(), Some(session.as_str()), "one session throughout");
    // Another agent presenting the session gets what an unknown session gets, on every replica.
    for base in bases {
        let mut other = Mcp::new(base, other_key);
        other.session = Some(session.clone());
        let (status, _) = other.post(json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"})).await;
        assert_eq!(status, 404, "another agent's use of the session on {base}");
        let (status, _) = other.post(json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"})).await;
        assert_eq!(status, 404, "still another agent's on {base}");
    }
    let mut made_up = Mcp::new(&bases[1], key);
    made_up.session = Some("0123456789abcdef0123456789abcdef".into());
    assert_eq!(made_up.post(json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"})).await.0, 404);

    // A second session, opened on A and ended through B.
    let mut ended = Mcp::new(&bases[0], key);
    ended.initialize().await;
    let id = ended.session.clone().expect("a session id");
    let r = reqwest::Client::new()
        .delete(format!("{}/mcp", bases[1]))
        .bearer_auth(key)
        .header("Mcp-Session-Id", &id)
        .header("MCP-Protocol-Version", "2025-06-18")
        .send()
        .await
        .expect("delete");
    assert!(r.status().is_success(), "DELETE through B: {}", r.status());
    for base in &bases[1..] {
        ended.url = format!("{base}/mcp");
        let (status, _) = ended.post(json!({"jsonrpc": "2.0", "id": 9, "method": "tools/list"})).await;
        assert_eq!(status, 404, "the ended session on {base}");
    }
}

/// limited-bot may make 30 calls a minute; 45 calls spread round-robin over the three replicas:
/// at most 30 pass, and no fewer than docs/limits.md's bound for three processes leasing two at
/// a time (30 - 2 × 1 = 28); the others are refused naming the limit.
async fn one_rate_limit_across_replicas(bases: &[String], key: &str) {
    // The windows are minutes of the clock: start early in one, so all 45 calls fall in it.
    let second =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() % 60).unwrap_or(0);
    if second > 45 {
        tokio::time::sleep(Duration::from_secs(61 - second)).await;
    }
    let mut clients = Vec::new();
    for base in bases {
        let mut mcp = Mcp::new(base, key);
        mcp.initialize().await;
        clients.push(mcp);
    }
    let (mut passed, mut refused) = (0, Vec::new());
    for i in 0..45 {
        let mcp = &mut clients[i % 3];
        let answer = mcp.call("get_job", json!({"controller": "prod", "job": "release/build"})).await;
        if succeeded(&answer) {
            passed += 1;
        } else {
            refused.push(answer_text(&answer));
        }
    }
    assert!((28..=30).contains(&passed), "{passed} of 45 calls passed a limit of 30 per minute: {refused:?}");
    assert!(
        refused.iter().all(|r| r.contains("limit of 30 calls per minute")),
        "every refusal names the limit: {refused:?}"
    );
}

/// Twenty agents' clients, spread round-robin over the replicas, send the same trigger with one
/// idempotency key at once: one build starts and every answer names it.
async fn one_key_one_build(bases: &[String], key: &str, twin: &jenkins_twin::Twin, server: &jenkins_twin::TwinServer) {
    let before = twin.requests_to("/job/release/job/build/build");
    let calls = (0..20).map(|i| {
        let mut mcp = Mcp::new(&bases[i % bases.len()], key);
        tokio::spawn(async move {
            mcp.initialize().await;
            mcp.call(
                "trigger_build",
                json!({"controller": "prod", "job": "release/build", "idempotency_key": "nightly-2026-12-01",
                    "wait": "start"}),
            )
            .await
        })
    });
    let mut numbers = Vec::new();
    for call in calls.collect::<Vec<_>>() {
        let answer = call.await.expect("task");
        assert!(succeeded(&answer), "{}", answer_text(&answer));
        let result: Value = serde_json::from_str(&answer_text(&answer)).expect("JSON answer");
        numbers.push((result["queue_id"].as_u64(), result["build"]["number"].as_u64()));
    }
    let first = numbers[0];
    assert!(first.0.is_some() && first.1.is_some(), "{numbers:?}");
    assert!(numbers.iter().all(|n| *n == first), "every answer names the one build: {numbers:?}");
    assert_eq!(twin.requests_to("/job/release/job/build/build") - before, 1, "Jenkins was asked once");
    let job: Value = reqwest::Client::new()
        .get(format!("{}/job/release/job/build/api/json?tree=builds[number]", server.url()))
        .basic_auth("admin", Some(TOKEN))
        .send()
        .await
        .expect("twin")
        .json()
        .await
        .expect("json");
    assert_eq!(job["builds"].as_array().map(Vec::len), Some(1), "one build: {job}");
}

/// Three identical triggers (no idempotency key: three builds wanted) of a job with a quiet period,
/// one on each replica at once: Jenkins would merge the later ones into the first while it waits
/// in the queue, so each replica waits for the previous one's queue item to leave it — three
/// builds, none merged.
async fn identical_triggers_queue_one_after_another(bases: &[String], key: &str) {
    let calls = bases.iter().map(|base| {
        let mut mcp = Mcp::new(base, key);
        tokio::spawn(async move {
            mcp.initialize().await;
            mcp.call("trigger_build", json!({"controller": "prod", "job": "release/quiet", "wait": "start"})).await
        })
    });
    let mut numbers = Vec::new();
    for call in calls.collect::<Vec<_>>() {
        let answer = call.await.expect("task");
        assert!(succeeded(&answer), "{}", answer_text(&answer));
        let result: Value = serde_json::from_str(&answer_text(&answer)).expect("JSON answer");
        assert!(result.get("merged").is_none(), "no trigger merged into another: {result}");
        numbers.push(result["build"]["number"].as_u64().expect("a build number"));
    }
    numbers.sort_unstable();
    assert_eq!(numbers, [1, 2, 3], "three builds");
}

/// deploy-bot's trigger (under a grant made with --approve) is held on replica B; ana approves it
/// in replica A's web console; B's call goes on and answers with the queue item.
async fn approval_on_one_releases_another(env: &Env, bases: &[String], key: &str) {
    let (a, b) = (bases[0].clone(), bases[1].clone());
    let mut held = Mcp::new(&b, key);
    held.initialize().await;
    let call = tokio::spawn(async move {
        held.call("trigger_build", json!({"controller": "prod", "job": "release/build", "wait": "none"})).await
    });

    let printed = env.ok(&["console", "login", "--admin", "ana", "--url", &a]);
    let link = printed.split_whitespace().find(|w| w.starts_with("http")).expect("a link").to_string();
    let http = reqwest::Client::builder().cookie_store(true).build().expect("client");
    let page = http.get(&link).send().await.expect("link page").text().await.expect("page");
    let token = link.split("token=").nth(1).expect("token in link").to_string();
    let r = http
        .post(format!("{a}/console/link"))
        .header("Origin", &a)
        .form(&[("nonce", hidden(&page, "nonce")), ("token", token)])
        .send()
        .await
        .expect("redeem link");
    assert!(r.status().is_success(), "login through A with {link}: {}", r.status());

    // The held call shows up in A's inbox (it was stored by B).
    let started = Instant::now();
    let (page, id) = loop {
        let page = http.get(format!("{a}/console/approvals")).send().await.expect("inbox").text().await.expect("page");
        if page.contains("name=\"id\" value=\"") {
            let id = hidden(&page, "id");
            break (page, id);
        }
        assert!(started.elapsed() < Duration::from_secs(20), "no pending approval in A's inbox:\n{page}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(!call.is_finished(), "the call waits for the decision");
    let r = http
        .post(format!("{a}/console/approvals"))
        .header("Origin", &a)
        .form(&[
            ("csrf", hidden(&page, "csrf")),
            ("id", id.clone()),
            ("action", "approve".into()),
            ("reason", "release window".into()),
        ])
        .send()
        .await
        .expect("approve");
    assert!(r.status().is_success(), "approve on A: {}", r.status());

    let answer = tokio::time::timeout(Duration::from_secs(20), call).await.expect("released").expect("task");
    assert!(succeeded(&answer), "B's call after A's approval: {}", answer_text(&answer));
    let result: Value = serde_json::from_str(&answer_text(&answer)).expect("JSON answer");
    assert!(result["queue_id"].as_u64().is_some(), "{result}");
    let list = env.json(&["approvals", "--all"]);
    let decided = list.as_array().into_iter().flatten().find(|x| x["id"] == json!(id)).cloned().unwrap_or_default();
    assert_eq!(decided["status"], "used", "{list}");
}

/// The value of the first hidden form field `name` on a page.
fn hidden(page: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = page.find(&marker).unwrap_or_else(|| panic!("no {name} field in:\n{page}")) + marker.len();
    page[start..].split('"').next().unwrap_or_default().to_string()
}

/// Jenkins sends its build events to replica C; release-bot's trigger-and-wait on replica A ends
/// promptly after the COMPLETED event, without reading the build every interval.
async fn event_on_one_wakes_another(env: &Env, bases: &[String], key: &str, relay: &Relay, twin: &jenkins_twin::Twin) {
    let hook = env.json(&["controller", "hook", "prod", "--public-url", &bases[2]]);
    let endpoint = hook["endpoint_url"].as_str().expect("endpoint").to_string();
    assert!(endpoint.starts_with(&format!("{}/hooks/jenkins/prod/", bases[2])), "{endpoint}");
    *relay.target.lock().expect("lock") = Some(endpoint);

    let mut mcp = Mcp::new(&bases[0], key);
    mcp.initialize().await;
    let reads_before = twin.requests_to("/deploy/1/api/json");
    let answer =
        mcp.call("trigger_build", json!({"controller": "prod", "job": "release/deploy", "wait": "finish"})).await;
    let answered = Instant::now();
    assert!(succeeded(&answer) && answer_text(&answer).contains("SUCCESS"), "{}", answer_text(&answer));
    let phases = relay.phases();
    assert!(phases.iter().any(|p| p == "COMPLETED"), "{phases:?}");
    let completed = relay.when("COMPLETED").expect("completed");
    let after = answered.saturating_duration_since(completed);
    assert!(after < Duration::from_secs(3), "answered {after:?} after the COMPLETED event reached replica C");
    let reads = twin.requests_to("/deploy/1/api/json") - reads_before;
    assert!(reads <= 4, "{reads} reads of a 6 s build while its events flowed");
}
