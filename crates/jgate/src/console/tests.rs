//! HTTP-level tests of the console through the real application of `jgate serve` on a loopback
//! port: login (password, wrong password, rate limit, one-time link), sessions (idle expiry,
//! logout), CSRF and Origin refusals, agent keys refused, the security headers, and each page
//! group against the twin (connect with a wrong token → the 401 diagnosis; the matrix; the
//! audit's live stream).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use gate::audit::Surface;
use gate::secrets::MasterKey;
use gate::store::Store;
use gate::{Admin, Gate};
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, LOCATION, SET_COOKIE};
use secrecy::{ExposeSecret, SecretString};

const PASSWORD: &str = "a long console passphrase";
const TOKEN: &str = "11dddddddddddddddddddddddddddddddd";
const SCENARIO: &str = r#"
[controller]
quiet_period = 0
[[folders]]
path = "release"
[[jobs]]
path = "release/deploy"
script = "echo deploying"
[[jobs]]
path = "secret-job"
script = "echo secret"
"#;

struct Env {
    gate: Arc<Gate>,
    base: String,
    _dir: std::path::PathBuf,
}

async fn env() -> Env {
    let dir = std::env::temp_dir().join(format!(
        "jgate-console-test-{}-{}",
        std::process::id(),
        gate::store::now_ms() % 1_000_000_000 + fastrand()
    ));
    std::fs::create_dir_all(&dir).expect("dir");
    let store = Store::open(&dir.join("jgate.db").display().to_string()).await.expect("store");
    let gate = Arc::new(Gate::open(store, MasterKey::generate(), None).await.expect("gate"));
    gate.create_admin(&Admin::new("root", Surface::Cli), "alice", &SecretString::from(PASSWORD.to_string()))
        .await
        .expect("admin");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let local = listener.local_addr().expect("addr");
    let app = crate::serve::app(gate.clone(), local, &[], &[]);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await;
    });
    Env { gate, base: format!("http://{local}"), _dir: dir }
}

fn fastrand() -> i64 {
    use std::sync::atomic::{AtomicI64, Ordering};
    static N: AtomicI64 = AtomicI64::new(0);
    N.fetch_add(1, Ordering::SeqCst)
}

/// A browser: keeps cookies, follows no redirect (the tests look at them).
fn browser() -> reqwest::Client {
    reqwest::Client::builder().cookie_store(true).redirect(reqwest::redirect::Policy::none()).build().expect("client")
}

fn location(h: &HeaderMap) -> String {
    h.get(LOCATION).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string()
}

/// The value of `name="NAME" value="..."` in a page.
fn field(html: &str, name: &str) -> String {
    let at = html.find(&format!("name=\"{name}\" value=\"")).unwrap_or_else(|| panic!("no field {name} in {html}"));
    let rest = &html[at + name.len() + 15..];
    rest[..rest.find('"').expect("end")].to_string()
}

impl Env {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Logs in with the form; returns the response.
    async fn login(&self, b: &reqwest::Client, name: &str, password: &str) -> reqwest::Response {
        let page = b.get(self.url("/console/login")).send().await.expect("login page").text().await.expect("text");
        let nonce = field(&page, "nonce");
        b.post(self.url("/console/login"))
            .form(&[("nonce", nonce.as_str()), ("name", name), ("password", password)])
            .send()
            .await
            .expect("login")
    }

    /// A logged-in browser and its CSRF token.
    async fn logged_in(&self) -> (reqwest::Client, String) {
        let b = browser();
        let r = self.login(&b, "alice", PASSWORD).await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        let page = b.get(self.url("/console/agents")).send().await.expect("page").text().await.expect("text");
        let csrf = field(&page, "csrf");
        (b, csrf)
    }
}

#[tokio::test]
async fn login_sessions_and_headers() {
    let e = env().await;
    let b = browser();
    // No session: every page sends to the login page.
    for path in ["/console/controllers", "/console/agents", "/console/audit", "/console/connect", "/console/agents/x"] {
        let r = b.get(e.url(path)).send().await.expect("get");
        assert_eq!(r.status(), StatusCode::SEE_OTHER, "{path}");
        assert!(location(r.headers()).starts_with("/console/login"), "{path}");
    }
    // The console's root: on to the controllers (then the login page).
    for root in ["/console", "/console/"] {
        let r = b.get(e.url(root)).send().await.expect("root");
        assert_eq!(r.status(), StatusCode::SEE_OTHER, "{root}");
    }
    // The login page: headers of every page.
    let r = b.get(e.url("/console/login")).send().await.expect("login page");
    let csp = r.headers().get("content-security-policy").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    assert!(
        csp.contains("frame-ancestors 'none'") && csp.contains("script-src 'self'") && !csp.contains("unsafe-inline")
    );
    assert_eq!(r.headers().get("cache-control").and_then(|v| v.to_str().ok()), Some("no-store"));
    assert_eq!(r.headers().get("x-frame-options").and_then(|v| v.to_str().ok()), Some("DENY"));

    // Wrong password: refused in place, no session.
    let r = e.login(&b, "alice", "a long wrong passphrase").await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(
        r.headers().get_all(SET_COOKIE).iter().all(|c| !c.to_str().unwrap_or("").starts_with("jgate_session=jgs_"))
    );
    let text = r.text().await.expect("text");
    assert!(text.contains("wrong administrator name or password"), "{text}");

    // Right password: the session cookie is HttpOnly and SameSite=Strict.
    let r = e.login(&b, "alice", PASSWORD).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let cookie = r
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|c| c.to_str().ok())
        .find(|c| c.starts_with("jgate_session="))
        .expect("session cookie")
        .to_string();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict") && cookie.contains("Path=/console"));
    assert!(!cookie.contains("Secure"), "plain HTTP: no Secure flag");
    let page = b.get(e.url("/console/controllers")).send().await.expect("page");
    assert_eq!(page.status(), StatusCode::OK);
    assert!(page.text().await.expect("text").contains("alice"));

    // Behind a TLS-terminating proxy the cookie is Secure.
    let b2 = browser();
    let page = b2.get(e.url("/console/login")).header("x-forwarded-proto", "https").send().await.expect("p");
    let pre = page.headers().get(SET_COOKIE).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    assert!(pre.contains("; Secure"), "{pre}");

    // Logout ends the session (the old cookie no longer works).
    let token = cookie.split(';').next().unwrap_or_default().trim_start_matches("jgate_session=").to_string();
    let html = b.get(e.url("/console/agents")).send().await.expect("page").text().await.expect("text");
    let csrf = field(&html, "csrf");
    let r = b.post(e.url("/console/logout")).form(&[("csrf", csrf.as_str())]).send().await.expect("logout");
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert!(e.gate.console_session(&token).await.expect("lookup").is_none());
    let r = browser()
        .get(e.url("/console/controllers"))
        .header("cookie", format!("jgate_session={token}"))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn idle_sessions_expire_and_links_work_once() {
    let e = env().await;
    let b = browser();
    assert_eq!(e.login(&b, "alice", PASSWORD).await.status(), StatusCode::SEE_OTHER);
    // Find the session token through the store's view: age every session of alice.
    e.gate
        .store()
        .execute_raw(&format!(
            "UPDATE console_sessions SET last_seen_ms = last_seen_ms - {}",
            gate::admins::SESSION_IDLE_MS + 1000
        ))
        .await
        .expect("age");
    let r = b.get(e.url("/console/controllers")).send().await.expect("get");
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(r.headers()), "/console/login?expired=1&next=%2Fconsole%2Fcontrollers");

    // A one-time link: its page does not use it; its form does, once.
    let token = e.gate.console_login_link(&Admin::new("root", Surface::Cli), "alice").await.expect("link");
    let b = browser();
    let page = b
        .get(e.url(&format!("/console/link?token={}", token.expose_secret())))
        .send()
        .await
        .expect("link page")
        .text()
        .await
        .expect("text");
    let nonce = field(&page, "nonce");
    let post = |b: reqwest::Client, nonce: String| {
        let url = e.url("/console/link");
        let token = token.expose_secret().to_string();
        async move { b.post(url).form(&[("nonce", nonce), ("token", token)]).send().await.expect("post") }
    };
    let r = post(b.clone(), nonce.clone()).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(b.get(e.url("/console/agents")).send().await.expect("get").status(), StatusCode::OK);
    // Used: a second browser cannot use it again.
    let b2 = browser();
    let page = b2.get(e.url("/console/link?token=x")).send().await.expect("p").text().await.expect("t");
    let r = post(b2.clone(), field(&page, "nonce")).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(r.text().await.expect("text").contains("already used"));
}

#[tokio::test]
async fn rate_limit_csrf_and_agent_keys() {
    let e = env().await;
    let b = browser();
    for _ in 0..gate::admins::MAX_FAILURES_PER_NAME {
        assert_eq!(e.login(&b, "alice", "a long wrong passphrase").await.status(), StatusCode::UNAUTHORIZED);
    }
    // Locked for now, even with the right password.
    let r = e.login(&b, "alice", PASSWORD).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(r.text().await.expect("text").contains("too many failed logins"));
    e.gate.store().execute_raw("DELETE FROM console_login_failures").await.expect("reset");

    // The login form without its double-submit token is refused.
    let r = browser()
        .post(e.url("/console/login"))
        .form(&[("name", "alice"), ("password", PASSWORD)])
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), StatusCode::FORBIDDEN);

    let (b, csrf) = e.logged_in().await;
    // A form without the CSRF token, or with another's, changes nothing.
    for form in [vec![("name", "bot1")], vec![("name", "bot1"), ("csrf", "0000")]] {
        let r = b.post(e.url("/console/agents")).form(&form).send().await.expect("post");
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        assert!(r.text().await.expect("text").contains("Nothing was changed"));
    }
    // The right token from another site's page: refused too.
    let r = b
        .post(e.url("/console/agents"))
        .header("origin", "http://evil.example")
        .form(&[("name", "bot1"), ("csrf", csrf.as_str())])
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // A browser names "null" as the Origin of a cross-site POST under the console's referrer policy.
    let r = b
        .post(e.url("/console/agents"))
        .header("origin", "null")
        .form(&[("name", "bot1"), ("csrf", csrf.as_str())])
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(e.gate.store().agent("bot1").await.expect("agent").is_none());

    // With the token: created, the key shown once with the MCP configurations.
    let r =
        b.post(e.url("/console/agents")).form(&[("name", "bot1"), ("csrf", csrf.as_str())]).send().await.expect("post");
    assert_eq!(r.status(), StatusCode::OK);
    let html = r.text().await.expect("text");
    let at = html.find("id=\"agent-key\">").expect("key shown") + 15;
    let key = html[at..at + gate::keys::KEY_LEN].to_string();
    assert!(key.starts_with("jgate_"));
    assert!(html.contains("/mcp") && html.contains("jgate exec") && html.contains("mcpServers"));

    // The agent's key opens no console: not as a bearer, not as the cookie, not as a password.
    let plain = browser();
    let r = plain.get(e.url("/console/agents")).bearer_auth(&key).send().await.expect("get");
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let r =
        plain.get(e.url("/console/agents")).header("cookie", format!("jgate_session={key}")).send().await.expect("get");
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(e.login(&plain, "alice", &key).await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(e.login(&plain, "bot1", &key).await.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn controllers_matrix_and_live_audit() {
    let (_twin, server) =
        jenkins_twin::start(SCENARIO, &[("admin".into(), "admin".into(), TOKEN.into())]).await.expect("twin");
    let e = env().await;
    let (b, csrf) = e.logged_in().await;
    let allow = format!("127.0.0.1:{}", server.addr().port());
    let connect = |token: &'static str, action: &'static str| {
        let form = vec![
            ("csrf", csrf.clone()),
            ("name", "prod".to_string()),
            ("url", server.url()),
            ("username", "admin".to_string()),
            ("token", token.to_string()),
            ("allow_private", allow.clone()),
            ("action", action.to_string()),
        ];
        b.post(e.url("/console/controllers")).form(&form).send()
    };
    // Test with a wrong token: the 401 diagnosis, in place; nothing stored; the token not echoed.
    let r = connect("11eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee", "test").await.expect("test");
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let html = r.text().await.expect("text");
    assert!(html.contains("Connection test failed") && html.contains("HTTP 401") && html.contains("Fix:"), "{html}");
    assert!(!html.contains("11eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee"));
    // In the console's words: the form's field, not the CLI's command.
    assert!(html.contains("the API token field on this page") && !html.contains("jgate controller update"), "{html}");
    assert!(e.gate.store().controllers().await.expect("list").is_empty());
    // Save with the wrong token: refused the same way.
    assert_eq!(
        connect("11eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee", "save").await.expect("save").status(),
        StatusCode::UNPROCESSABLE_ENTITY
    );
    // The right token: Test passes, Save stores.
    let r = connect(TOKEN, "test").await.expect("test");
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.text().await.expect("text").contains("Connection test passed"));
    let r = connect(TOKEN, "save").await.expect("save");
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let list = b.get(e.url("/console/controllers")).send().await.expect("list").text().await.expect("text");
    assert!(list.contains("prod") && list.contains("passed") && !list.contains(TOKEN));
    // The controller's page, and its test.
    let page = b.get(e.url("/console/controllers/prod")).send().await.expect("page");
    assert_eq!(page.status(), StatusCode::OK);
    let r = b
        .post(e.url("/console/controllers/prod"))
        .form(&[("csrf", csrf.as_str()), ("action", "test")])
        .send()
        .await
        .expect("t");
    assert_eq!(r.status(), StatusCode::OK);

    // An agent: all Off at first; Read on status; Full use on build for release/** with ENV=staging.
    let r = b
        .post(e.url("/console/agents"))
        .form(&[("name", "rel-bot"), ("csrf", csrf.as_str())])
        .send()
        .await
        .expect("post");
    let html = r.text().await.expect("text");
    let at = html.find("id=\"agent-key\">").expect("key") + 15;
    let key = html[at..at + gate::keys::KEY_LEN].to_string();
    let page = b.get(e.url("/console/agents/rel-bot")).send().await.expect("page").text().await.expect("text");
    assert!(page.contains("Deny by default") && page.contains("Read job and build status"));
    let post = |form: Vec<(&'static str, &'static str)>| {
        let mut form: Vec<(String, String)> = form.into_iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        form.push(("csrf".into(), csrf.clone()));
        b.post(e.url("/console/agents/rel-bot")).form(&form).send()
    };
    let r = post(vec![("action", "set"), ("group", "status"), ("controller", "prod"), ("level", "read")])
        .await
        .expect("set");
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let r = post(vec![
        ("action", "grant"),
        ("group", "build"),
        ("level", "full"),
        ("controller", "prod"),
        ("jobs", "release/**"),
        ("params", "ENV=staging"),
    ])
    .await
    .expect("grant");
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    // A bad pattern is refused in place.
    let r =
        post(vec![("action", "grant"), ("group", "build"), ("level", "full"), ("jobs", "/release")]).await.expect("g");
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let grants = e.gate.grants("rel-bot").await.expect("grants");
    assert_eq!(grants.len(), 2);
    assert!(grants.iter().all(|g| !g.approve), "no approval unless chosen");
    // "Full use, with approval" on some jobs: the grant holds each change for an approver.
    let r = post(vec![("action", "grant"), ("group", "jobs"), ("level", "full-approval"), ("jobs", "release/**")])
        .await
        .expect("grant");
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let grants = e.gate.grants("rel-bot").await.expect("grants");
    let held = grants.iter().find(|g| g.group == gate::catalog::Group::Jobs).expect("the jobs grant");
    assert!(held.approve && held.level == gate::policy::Level::Full, "{held:?}");
    e.gate.remove_grant(&gate::Admin::local_cli(), held.id).await.expect("remove");
    // Rate limits, set from the page (an empty field is no limit; a bad number is refused in place).
    let r =
        post(vec![("action", "limits"), ("calls_per_minute", "120"), ("triggers_per_hour", "")]).await.expect("limits");
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let limits = e.gate.agent_limits("rel-bot").await.expect("limits");
    assert_eq!((limits.calls_per_minute, limits.triggers_per_hour), (Some(120), None));
    let page = b.get(e.url("/console/agents/rel-bot")).send().await.expect("page").text().await.expect("text");
    assert!(page.contains("Now: 120 calls per minute.") && page.contains("value=\"120\""), "the page shows them");
    let r = post(vec![("action", "limits"), ("calls_per_minute", "lots"), ("triggers_per_hour", "0")])
        .await
        .expect("limits");
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.text().await.expect("text").contains("Calls per minute must be a whole number"));
    let r = post(vec![("action", "limits"), ("calls_per_minute", ""), ("triggers_per_hour", "")]).await.expect("l");
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert!(e.gate.agent_limits("rel-bot").await.expect("limits").is_none(), "cleared");
    // The matrix cell's select offers it too, and shows it selected afterwards.
    let r = post(vec![("action", "set"), ("group", "config"), ("controller", "prod"), ("level", "full-approval")])
        .await
        .expect("set");
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let grants = e.gate.grants("rel-bot").await.expect("grants");
    let held = grants.iter().find(|g| g.group == gate::catalog::Group::Config).expect("the config grant");
    assert!(held.approve && held.level == gate::policy::Level::Full && held.jobs.is_none(), "{held:?}");
    let page = b.get(e.url("/console/agents/rel-bot")).send().await.expect("page").text().await.expect("text");
    assert!(page.contains("value=\"full-approval\" selected"), "the cell shows the approval level");
    e.gate.remove_grant(&gate::Admin::local_cli(), held.id).await.expect("remove");
    let page = b
        .get(e.url("/console/agents/rel-bot?job=release/deploy&controller=prod"))
        .send()
        .await
        .expect("page")
        .text()
        .await
        .expect("text");
    // (minijinja writes '/' as &#x2f;.)
    assert!(page.contains("release&#x2f;**: full use") && page.contains("ENV ∈ {staging}"), "{page}");
    assert!(page.contains("→ grant"), "the explainer names the deciding grant");

    // The audit page, then agent calls appear on its live stream (a read and a denial).
    let audit = b.get(e.url("/console/audit")).send().await.expect("audit").text().await.expect("text");
    assert!(audit.contains("The audit chain verifies"));
    let after = e.gate.audit(&Default::default()).await.expect("audit").last().map_or(0, |r| r.seq);
    let mut stream = b.get(e.url(&format!("/console/audit/events?after={after}"))).send().await.expect("sse");
    assert_eq!(stream.status(), StatusCode::OK);
    let (agent, key_id) = e.gate.authenticate(&key).await.expect("auth");
    let caller =
        gate::Caller { agent, key_id: Some(key_id), surface: Surface::Mcp, client_addr: None, request_id: "t".into() };
    e.gate.call(&caller, "prod", "get_job", serde_json::json!({"job": "release/deploy"})).await.expect("read");
    assert!(e.gate.call(&caller, "prod", "trigger_build", serde_json::json!({"job": "secret-job"})).await.is_err());
    let mut seen = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !(seen.contains("was denied") && seen.contains("release/deploy")) && tokio::time::Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_secs(5), stream.chunk()).await {
            Ok(Ok(Some(c))) => seen.push_str(&String::from_utf8_lossy(&c)),
            _ => break,
        }
    }
    assert!(
        seen.contains("event: record") && seen.contains("was denied") && seen.contains("\"denied\":true"),
        "{seen}"
    );
    // Filters and the export.
    let denied = b.get(e.url("/console/audit?outcome=denied")).send().await.expect("a").text().await.expect("t");
    assert!(denied.contains("was denied") && !denied.contains("rel-bot read"));
    let export = b.get(e.url("/console/audit/export?agent=rel-bot")).send().await.expect("export");
    assert_eq!(export.headers().get("content-type").and_then(|v| v.to_str().ok()), Some("application/x-ndjson"));
    let lines = export.text().await.expect("text");
    assert!(lines.lines().count() >= 2 && lines.lines().all(|l| serde_json::from_str::<serde_json::Value>(l).is_ok()));
    // Connect an agent.
    let connect_page =
        b.get(e.url("/console/connect")).send().await.expect("c").text().await.expect("t").replace("&#x2f;", "/");
    assert!(connect_page.contains("/jenkins/prod/") && connect_page.contains("/mcp"));

    // Update: only what is filled in changes, after a test.
    let r = b
        .post(e.url("/console/controllers/prod"))
        .form(&[("csrf", csrf.as_str()), ("action", "update"), ("timeout", "45")])
        .send()
        .await
        .expect("update");
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let row = e.gate.store().controller("prod").await.expect("row").expect("prod");
    assert_eq!((row.timeout_secs, row.allow_private.clone()), (Some(45), vec![allow.clone()]));
    // A wrong new token is refused with the diagnosis, and the stored one keeps working.
    let r = b
        .post(e.url("/console/controllers/prod"))
        .form(&[("csrf", csrf.as_str()), ("action", "update"), ("token", "11ffffffffffffffffffffffffffffffff")])
        .send()
        .await
        .expect("rotate");
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let html = r.text().await.expect("text");
    assert!(html.contains("HTTP 401") && !html.contains("11ffffffffffffffffffffffffffffffff"));
    e.gate.call(&caller, "prod", "get_job", serde_json::json!({"job": "release/deploy"})).await.expect("still works");

    // The agent's life cycle: disable (its key refused), enable, rotate (the old key refused), delete.
    let act = |action: &'static str, extra: Option<(&'static str, &'static str)>| {
        let mut form = vec![("csrf", csrf.clone()), ("action", action.to_string())];
        if let Some((k, v)) = extra {
            form.push((k, v.to_string()));
        }
        b.post(e.url("/console/agents/rel-bot")).form(&form).send()
    };
    assert_eq!(act("disable", None).await.expect("disable").status(), StatusCode::SEE_OTHER);
    e.gate.flush_key_use().await.expect("flush");
    let refused = async {
        for _ in 0..40 {
            if e.gate.authenticate(&key).await.is_err() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    };
    assert!(refused.await, "a disabled agent's key still authenticates");
    assert_eq!(act("enable", None).await.expect("enable").status(), StatusCode::SEE_OTHER);
    let r = act("rotate", None).await.expect("rotate");
    assert_eq!(r.status(), StatusCode::OK);
    let html = r.text().await.expect("text");
    let at = html.find("id=\"agent-key\">").expect("new key") + 15;
    let new_key = html[at..at + gate::keys::KEY_LEN].to_string();
    assert_ne!(new_key, key);
    let old_refused = async {
        for _ in 0..40 {
            if e.gate.authenticate(&key).await.is_err() && e.gate.authenticate(&new_key).await.is_ok() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    };
    assert!(old_refused.await, "after the rotation the old key must be refused and the new one accepted");
    let r = act("delete", None).await.expect("delete");
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.text().await.expect("text").contains("also remove its grants"));
    assert!(e.gate.store().agent("rel-bot").await.expect("agent").is_some());

    // Removing the controller is refused while grants name it, unless they go too.
    let r = b
        .post(e.url("/console/controllers/prod"))
        .form(&[("csrf", csrf.as_str()), ("action", "remove")])
        .send()
        .await
        .expect("r");
    assert_eq!(r.status(), StatusCode::CONFLICT);
    assert!(r.text().await.expect("text").contains("also remove its grants"));
    let r = b
        .post(e.url("/console/controllers/prod"))
        .form(&[("csrf", csrf.as_str()), ("action", "remove"), ("with_grants", "on")])
        .send()
        .await
        .expect("r");
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert!(e.gate.store().controllers().await.expect("list").is_empty());
    // Every change was made as alice on the web console.
    let records = e.gate.audit(&Default::default()).await.expect("audit");
    assert!(
        records
            .iter()
            .any(|r| r.entry.operation == "admin.grant" && r.entry.agent == "alice" && r.entry.surface == Surface::Web)
    );
    assert!(records.iter().any(|r| r.entry.operation == "admin.controller.remove" && r.entry.agent == "alice"));
    // The agent goes with its grants when asked.
    let r = act("delete", Some(("with_grants", "on"))).await.expect("delete");
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert!(e.gate.store().agent("rel-bot").await.expect("agent").is_none());
}

#[test]
fn every_template_parses() {
    let env = super::templates();
    for name in [
        "layout.html",
        "login.html",
        "link.html",
        "error.html",
        "_check.html",
        "controllers.html",
        "controller.html",
        "agents.html",
        "agent.html",
        "agent_key.html",
        "audit.html",
        "connect.html",
    ] {
        assert!(env.get_template(name).is_ok(), "{name} does not parse");
    }
}

/// After logging in, the console returns to the page that asked for it — only ever a console
/// page of this site.
#[tokio::test]
async fn a_login_returns_to_the_page_that_asked_for_it() {
    let e = env().await;
    let b = browser();
    let r = b.get(e.url("/console/audit?agent=bot")).send().await.expect("get");
    assert_eq!(location(r.headers()), "/console/login?next=%2Fconsole%2Faudit%3Fagent%3Dbot");
    // A client's own page header is not believed.
    let r = b.get(e.url("/console/agents")).header("x-jgate-console-page", "https://evil.example/").send().await;
    assert_eq!(location(r.expect("get").headers()), "/console/login?next=%2Fconsole%2Fagents");

    let login_with = |next: &'static str| {
        let b = browser();
        let e = &e;
        async move {
            let page = b.get(e.url("/console/login")).send().await.expect("page").text().await.expect("text");
            let nonce = field(&page, "nonce");
            let r = b
                .post(e.url("/console/login"))
                .form(&[("nonce", nonce.as_str()), ("name", "alice"), ("password", PASSWORD), ("next", next)])
                .send()
                .await
                .expect("login");
            assert_eq!(r.status(), StatusCode::SEE_OTHER, "{next}");
            location(r.headers())
        }
    };
    assert_eq!(login_with("/console/audit?agent=bot").await, "/console/audit?agent=bot");
    for elsewhere in [
        "https://evil.example/",
        "//evil.example/console/",
        "/console//evil",
        "/console/\\evil",
        "/console/logout",
        "/elsewhere",
    ] {
        assert_eq!(login_with(elsewhere).await, "/console/controllers", "{elsewhere}");
    }
    // The login page carries the page on in its form.
    let page =
        b.get(e.url("/console/login?next=%2Fconsole%2Fagents")).send().await.expect("page").text().await.expect("t");
    assert!(page.contains(r#"name="next""#), "{page}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_approvals_inbox_approves_and_denies_held_calls() {
    use gate::catalog::Group;
    use gate::policy::Level;
    let (_twin, server) =
        jenkins_twin::start(SCENARIO, &[("admin".into(), "admin".into(), TOKEN.into())]).await.expect("twin");
    let e = env().await;
    let root = Admin::new("root", Surface::Cli);
    e.gate
        .add_controller(
            &root,
            gate::NewController {
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
        .await
        .expect("controller");
    e.gate.create_agent(&root, "rb", "", None).await.expect("agent");
    e.gate
        .grant_with(&root, "rb", Group::Build, Level::Full, None, Some("release/**"), vec![], true)
        .await
        .expect("grant");
    let caller = gate::Caller {
        agent: "rb".into(),
        key_id: None,
        surface: Surface::Mcp,
        client_addr: None,
        request_id: "t".into(),
    };
    let held = |job: &'static str| {
        let (g, c) = (e.gate.clone(), caller.clone());
        tokio::spawn(async move { g.call(&c, "prod", "trigger_build", serde_json::json!({"job": job})).await })
    };
    let first = held("release/deploy");
    let (b, csrf) = e.logged_in().await;
    let mut id = String::new();
    for _ in 0..100 {
        if let Some(a) = e.gate.approvals(false).await.expect("list").first() {
            id = a.id.clone();
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!id.is_empty(), "no pending approval");
    let page = b.get(e.url("/console/approvals")).send().await.expect("page").text().await.expect("text");
    // Autoescaped: ' and / as entities.
    assert!(page.contains("rb&#x27;s request to trigger a build of release&#x2f;deploy on prod"), "{page}");
    assert!(page.contains(&id) && page.contains("Approve") && page.contains("Deny"));
    // Without the CSRF token: refused, nothing decided.
    let r = b
        .post(e.url("/console/approvals"))
        .form(&[("id", id.as_str()), ("action", "approve")])
        .send()
        .await
        .expect("post");
    assert_ne!(r.status(), StatusCode::SEE_OTHER);
    // Deny needs a reason; approve releases the call.
    let r = b
        .post(e.url("/console/approvals"))
        .form(&[("csrf", csrf.as_str()), ("id", id.as_str()), ("action", "deny"), ("reason", "")])
        .send()
        .await
        .expect("deny");
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.text().await.expect("text").contains("needs a reason"));
    let r = b
        .post(e.url("/console/approvals"))
        .form(&[("csrf", csrf.as_str()), ("id", id.as_str()), ("action", "approve"), ("reason", "looks fine")])
        .send()
        .await
        .expect("approve");
    assert_eq!(r.status(), StatusCode::SEE_OTHER, "{}", r.text().await.unwrap_or_default());
    let v = tokio::time::timeout(Duration::from_secs(20), first).await.expect("released").expect("join").expect("ran");
    assert!(v["build"]["number"].as_u64().is_some(), "{v}");
    // A second held call, denied from the inbox.
    let second = held("release/deploy");
    let mut id2 = String::new();
    for _ in 0..100 {
        if let Some(a) = e.gate.approvals(false).await.expect("list").first() {
            id2 = a.id.clone();
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let r = b
        .post(e.url("/console/approvals"))
        .form(&[("csrf", csrf.as_str()), ("id", id2.as_str()), ("action", "deny"), ("reason", "not today")])
        .send()
        .await
        .expect("deny");
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let err = second.await.expect("join").expect_err("denied");
    assert!(err.to_string().contains("alice denied approval") && err.to_string().contains("not today"), "{err}");
    let sentences: Vec<String> = e
        .gate
        .store()
        .audit(&gate::store::AuditFilter::default())
        .await
        .expect("audit")
        .into_iter()
        .map(|r| r.sentence)
        .collect();
    assert!(
        sentences
            .iter()
            .any(|s| s.starts_with("alice (web console) approved rb's request to trigger a build of release/deploy")),
        "{sentences:#?}"
    );
    let all = b.get(e.url("/console/approvals?all=1")).send().await.expect("page").text().await.expect("text");
    assert!(all.contains("used") && all.contains("not today"), "{all}");
}
