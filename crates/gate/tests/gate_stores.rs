//! The gate on both stores (SQLite and PostgreSQL, for real): controllers with sealed tokens,
//! agents and keys, the policy through `Gate::call`, the audit chain (tamper detection,
//! concurrent appenders, fail-closed writes), master-key rotation.
//!
//! PostgreSQL comes from JGATE_TEST_POSTGRES (default postgres://postgres@127.0.0.1:5432/test);
//! each test works in a fresh schema. Under CI an unreachable PostgreSQL fails the tests.

use std::sync::Arc;
use std::time::Duration;

use gate::audit::{Checkpoint, Phase, Surface};
use gate::catalog::Group;
use gate::policy::Level;
use gate::secrets::MasterKey;
use gate::store::{AuditFilter, Store};
use gate::{Admin, Caller, Gate, GateError, NewController};
use jenkins_twin::{Twin, TwinServer};
use secrecy::SecretString;
use serde_json::json;
use sqlx::Connection;

const TOKEN: &str = "11aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

const SCENARIO: &str = r#"
[controller]
quiet_period = 0
[[folders]]
path = "release"
[[jobs]]
path = "release/deploy"
kind = "pipeline"
script = "node { stage('Deploy') { echo \"deploying to ${params.ENV}\" } }"
[[jobs.parameters]]
name = "ENV"
type = "choice"
choices = ["staging", "production"]
[[jobs]]
path = "api-server"
script = "echo building"
[[jobs.builds]]
result = "FAILURE"
log = "compiling\nerror: tests failed"
"#;

async fn twin() -> (Arc<Twin>, TwinServer) {
    jenkins_twin::start(SCENARIO, &[("admin".into(), "admin".into(), TOKEN.into())]).await.expect("twin")
}

fn unique() -> String {
    format!("{}_{}", std::process::id(), gate::store::now_ms() % 1_000_000_000 + rand_suffix())
}

fn rand_suffix() -> i64 {
    use std::sync::atomic::{AtomicI64, Ordering};
    static N: AtomicI64 = AtomicI64::new(0);
    N.fetch_add(1, Ordering::SeqCst) * 7919
}

/// A fresh database URL of each kind.
async fn databases() -> Vec<(&'static str, String)> {
    let dir = std::env::temp_dir().join(format!("jgate-test-{}", unique()));
    let sqlite = dir.join("jgate.db").display().to_string();
    let mut out = vec![("sqlite", sqlite)];
    let pg = std::env::var("JGATE_TEST_POSTGRES").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let schema = format!("jg_{}", unique());
    sqlx::any::install_default_drivers();
    match sqlx::AnyConnection::connect_with(&pg.parse().expect("pg url")).await {
        Ok(mut conn) => {
            // Schemas of earlier test runs (other processes) are dropped; this run's are kept until then.
            let old: Vec<(String,)> = sqlx::query_as(
                "SELECT schema_name::text FROM information_schema.schemata WHERE schema_name LIKE 'jg\\_%'",
            )
            .fetch_all(&mut conn)
            .await
            .unwrap_or_default();
            let mine = format!("jg_{}_", std::process::id());
            for (s,) in old.into_iter().filter(|(s,)| !s.starts_with(&mine)) {
                let _ = sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA IF EXISTS \"{s}\" CASCADE")))
                    .execute(&mut conn)
                    .await;
            }
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
                .execute(&mut conn)
                .await
                .expect("create schema");
            let _ = conn.close().await;
            out.push(("postgres", format!("{pg}?options=-c%20search_path%3D{schema}")));
        }
        Err(e) if std::env::var_os("CI").is_some() => panic!("PostgreSQL at {pg} is unreachable under CI: {e}"),
        Err(e) => eprintln!("SKIPPING PostgreSQL (not under CI): {pg} unreachable: {e}"),
    }
    out
}

fn key_file() -> std::path::PathBuf {
    std::env::temp_dir().join(format!("jgate-key-{}", unique())).join("master.key")
}

async fn gate_on(url: &str, key: &std::path::Path) -> Gate {
    let store = Store::open(url).await.expect("store");
    let (master, _) = MasterKey::load_or_create("JGATE_TEST_UNSET_MASTER_KEY", key).expect("master key");
    Gate::open(store, master, None).await.expect("gate")
}

fn admin() -> Admin {
    Admin::new("admin", Surface::Cli)
}

fn controller(server: &TwinServer, token: &str) -> NewController {
    NewController {
        name: "prod".into(),
        url: server.url(),
        username: "admin".into(),
        token: SecretString::from(token.to_string()),
        password: false,
        allow_private: vec![format!("127.0.0.1:{}", server.addr().port())],
        ca_pem: None,
        insecure: false,
    }
}

fn caller(agent: &str) -> Caller {
    Caller {
        agent: agent.into(),
        key_id: None,
        surface: Surface::Mcp,
        client_addr: Some("127.0.0.1".into()),
        request_id: "r1".into(),
    }
}

#[tokio::test]
async fn controllers_are_tested_and_tokens_sealed() {
    let (_t, s) = twin().await;
    for (kind, url) in databases().await {
        let kf = key_file();
        let g = gate_on(&url, &kf).await;
        // A failing connection test stores nothing.
        let err = g.add_controller(&admin(), controller(&s, "wrong-token"), false).await;
        assert!(matches!(&err, Err(GateError::ConnectionTest { .. })), "{kind}: {err:?}");
        assert!(g.store().controllers().await.expect("list").is_empty(), "{kind}: nothing stored");
        // Without the allow-list entry the loopback twin is refused, and the error names the flag.
        let mut refused = controller(&s, TOKEN);
        refused.allow_private.clear();
        let err = g.add_controller(&admin(), refused, false).await.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("allow"), "{kind}: {err}");
        let (row, report) = g.add_controller(&admin(), controller(&s, TOKEN), false).await.expect("add");
        assert_eq!(row.jenkins_version.as_deref(), Some("2.541.2"), "{kind}");
        assert_eq!(report.map(|r| r.who_am_i.name), Some("admin".into()));
        assert!(!row.sealed_token.contains(TOKEN), "{kind}: the token is encrypted at rest");
        assert!(row.plugins.iter().any(|p| p.starts_with("pipeline-rest-api@")));
        // Reopened, the token decrypts and the client works.
        let g2 = gate_on(&url, &kf).await;
        assert_eq!(g2.test_controller("prod").await.expect("test").version.as_deref(), Some("2.541.2"), "{kind}");
        // Another master key is refused at open, before anything is written.
        let (other, _) = MasterKey::load_or_create("JGATE_TEST_UNSET_MASTER_KEY", &key_file()).expect("key");
        let err = Gate::open(Store::open(&url).await.expect("store"), other, None).await.err();
        assert!(
            matches!(err, Some(GateError::Secrets(gate::secrets::SecretsError::MasterKeyMismatch { .. }))),
            "{kind}: {err:?}"
        );
        // Rotation re-wraps: the new key works, the old no longer does.
        let new = MasterKey::generate();
        assert_eq!(g2.rotate_master_key(&admin(), &new).await.expect("rotate"), 1);
        let rotated = Gate::open(Store::open(&url).await.expect("store"), new, None).await.expect("reopen");
        assert!(rotated.test_controller("prod").await.is_ok(), "{kind}: new key opens the token");
        let (old, _) = MasterKey::load_or_create("JGATE_TEST_UNSET_MASTER_KEY", &kf).expect("key");
        let err = Gate::open(Store::open(&url).await.expect("store"), old, None).await.err().map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.contains("not this installation's master key")), "{kind}: old key refused");
        // Forced add of a failing controller is stored.
        let mut forced = controller(&s, "wrong");
        forced.name = "forced".into();
        assert!(rotated.add_controller(&admin(), forced, true).await.is_ok(), "{kind}");
    }
}

#[tokio::test]
async fn agents_keys_and_the_policy_path() {
    let (twin, s) = twin().await;
    for (kind, url) in databases().await {
        let g = gate_on(&url, &key_file()).await;
        g.add_controller(&admin(), controller(&s, TOKEN), false).await.expect("add");
        let (_, triage_key) = g.create_agent(&admin(), "triage-bot", "reads everything", None).await.expect("agent");
        let (_, release_key) = g.create_agent(&admin(), "release-bot", "", None).await.expect("agent");
        let secret = gate::gate::expose(&triage_key.secret).to_string();
        assert!(secret.starts_with("jgate_"));
        assert_eq!(g.authenticate(&secret).await.expect("auth").0, "triage-bot", "{kind}");
        assert!(matches!(g.authenticate("jgate_nope").await, Err(GateError::BadKey(_))));
        g.grant(&admin(), "triage-bot", Group::Status, Level::Read, None, None, vec![]).await.expect("grant");
        g.grant(
            &admin(),
            "release-bot",
            Group::Build,
            Level::Full,
            Some("prod"),
            Some("release/**"),
            vec!["ENV=staging".parse().expect("param")],
        )
        .await
        .expect("grant");

        // Allowed read.
        let v = g
            .call(
                &caller("triage-bot"),
                "prod",
                "get_build_log",
                json!({"job": "api-server", "build": "lastFailedBuild"}),
            )
            .await
            .expect("read");
        let text = v["text"].as_str().unwrap_or("");
        assert!(text.contains("error: tests failed"), "{kind}: {v}");
        assert!(
            text.starts_with("<<<UNTRUSTED BUILD OUTPUT from api-server #1"),
            "{kind}: console text is marked untrusted"
        );
        assert_eq!(v["untrusted"], true);
        // Denied write: never reaches Jenkins.
        let before = twin.requests_received();
        let err = g.call(&caller("triage-bot"), "prod", "delete_job", json!({"job": "api-server"})).await;
        assert!(
            matches!(&err, Err(GateError::Denied { reason }) if reason.contains("no grant gives Create, copy, or delete jobs")),
            "{kind}: {err:?}"
        );
        assert_eq!(twin.requests_received(), before, "{kind}: a denied call sends nothing to Jenkins");
        // Parameter constraints.
        let err = g
            .call(
                &caller("release-bot"),
                "prod",
                "trigger_build",
                json!({"job": "release/deploy", "parameters": {"ENV": "production"}}),
            )
            .await;
        assert!(matches!(err, Err(GateError::Denied { .. })), "{kind}");
        let v = g
            .call(
                &caller("release-bot"),
                "prod",
                "trigger_build",
                json!({"job": "release/deploy", "parameters": {"ENV": "staging"}}),
            )
            .await
            .expect("trigger");
        let number = v["build"]["number"].as_u64().expect("exact build number");
        // The same idempotency key never starts a second build.
        let before_builds = twin.requests_received();
        let args = json!({"job": "release/deploy", "parameters": {"ENV": "staging"}, "idempotency_key": "deploy-42"});
        let first = g.call(&caller("release-bot"), "prod", "trigger_build", args.clone()).await.expect("first");
        let again = g.call(&caller("release-bot"), "prod", "trigger_build", args).await.expect("retry");
        assert_eq!(first["build"]["number"], again["build"]["number"], "{kind}");
        assert_eq!(again["replayed"], true, "{kind}");
        assert!(twin.requests_received() > before_builds);
        let builds =
            g.call(&caller("triage-bot"), "prod", "get_job", json!({"job": "release/deploy"})).await.expect("job");
        assert_eq!(builds["last_build"], first["build"]["number"], "{kind}: no second build");
        // Flat, filtered listing.
        let failing =
            g.call(&caller("triage-bot"), "prod", "list_jobs", json!({"status": "failing"})).await.expect("list");
        assert_eq!(
            failing["jobs"].as_array().map(|a| a.iter().map(|j| j["name"].clone()).collect::<Vec<_>>()),
            Some(vec![json!("api-server")]),
            "{kind}: {failing}"
        );
        // Spellings do not escape scopes.
        for spelled in ["job/release/job/deploy", "/release//deploy/", "RELEASE/deploy"] {
            let r = g
                .call(
                    &caller("release-bot"),
                    "prod",
                    "trigger_build",
                    json!({"job": spelled, "parameters": {"ENV": "production"}}),
                )
                .await;
            assert!(matches!(r, Err(GateError::Denied { .. })), "{kind}: {spelled}");
        }
        let r = g
            .call(
                &caller("release-bot"),
                "prod",
                "trigger_build",
                json!({"job": "release/../api-server", "parameters": {"ENV": "staging"}}),
            )
            .await;
        assert!(matches!(r, Err(GateError::Denied { .. })), "{kind}: dot segments are refused");

        // The audit trail reads as English and verifies.
        let records = g.audit(&AuditFilter::default()).await.expect("audit");
        let sentences: Vec<&str> = records.iter().map(|r| r.sentence.as_str()).collect();
        assert!(
            sentences.iter().any(|s| s.starts_with(
                "triage-bot was denied deleting job api-server on prod: no grant gives Create, copy, or delete jobs"
            )),
            "{kind}: {sentences:#?}"
        );
        assert!(
            sentences
                .iter()
                .any(|s| s.contains(&format!("triggered build #{number} of release/deploy on prod with ENV=staging"))),
            "{kind}: {sentences:#?}"
        );
        let trigger_records: Vec<_> =
            records.iter().filter(|r| r.entry.operation == "trigger_build" && r.entry.allowed).collect();
        assert_eq!(
            trigger_records.iter().map(|r| r.entry.phase).collect::<Vec<_>>(),
            // Two triggers, then the replayed retry: each a write call with its intent and outcome.
            [Phase::Intent, Phase::Outcome, Phase::Intent, Phase::Outcome, Phase::Intent, Phase::Outcome],
            "{kind}"
        );
        assert!(
            trigger_records.last().and_then(|r| r.entry.outcome.as_deref()).is_some_and(|o| o.contains("replayed")),
            "{kind}: the retry's outcome says it was replayed"
        );
        assert_eq!(g.verify_audit(&[]).await.expect("verify"), Ok(records.len() as u64), "{kind}");
        // Filters.
        let denied = g
            .audit(&AuditFilter { allowed: Some(false), agent: Some("release-bot".into()), ..AuditFilter::default() })
            .await
            .expect("f");
        assert!(
            denied.iter().all(|r| !r.entry.allowed && r.entry.agent == "release-bot") && denied.len() >= 4,
            "{kind}"
        );

        // Revocation and expiry.
        g.revoke(&admin(), "release-bot", None).await.expect("revoke");
        let rel = gate::gate::expose(&release_key.secret).to_string();
        let err = g.authenticate(&rel).await.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("revoked"), "{kind}: {err}");
        let expired = g.new_key(&admin(), "triage-bot", Some(gate::store::now_ms() - 1)).await.expect("key");
        let err =
            g.authenticate(gate::gate::expose(&expired.secret)).await.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("expired"), "{kind}: {err}");
    }
}

#[tokio::test]
async fn tampering_is_detected() {
    let (_t, s) = twin().await;
    for (kind, url) in databases().await {
        let kf = key_file();
        let g = gate_on(&url, &kf).await;
        g.add_controller(&admin(), controller(&s, TOKEN), false).await.expect("add");
        g.create_agent(&admin(), "bot", "", None).await.expect("agent");
        g.grant(&admin(), "bot", Group::Status, Level::Read, None, None, vec![]).await.expect("grant");
        // Six administrative records (intent and outcome of three changes), then six reads.
        for _ in 0..6 {
            g.call(&caller("bot"), "prod", "get_job", json!({"job": "api-server"})).await.expect("read");
        }
        let cp: Checkpoint = g.checkpoint().await.expect("cp").expect("some");
        assert_eq!(cp.seq, 12);
        assert_eq!(g.verify_audit(std::slice::from_ref(&cp)).await.expect("verify"), Ok(12));
        let bad = |r: Result<u64, gate::audit::VerifyError>| r.err().map(|e| e.to_string()).unwrap_or_default();
        // Edit record 9.
        g.store()
            .execute_raw("UPDATE audit SET record = REPLACE(record, 'api-server', 'api-servex') WHERE seq = 9")
            .await
            .expect("edit");
        let msg = bad(g.verify_audit(&[]).await.expect("v"));
        assert!(msg.contains('9') && msg.contains("edited"), "{kind}: {msg}");
        g.store()
            .execute_raw("UPDATE audit SET record = REPLACE(record, 'api-servex', 'api-server') WHERE seq = 9")
            .await
            .expect("undo");
        assert!(g.verify_audit(&[]).await.expect("v").is_ok(), "{kind}: restored");
        // Delete record 10.
        g.store().execute_raw("DELETE FROM audit WHERE seq = 10").await.expect("delete");
        let msg = bad(g.verify_audit(&[]).await.expect("v"));
        assert!(msg.contains("missing") || msg.contains("deleted"), "{kind}: {msg}");
        // Truncating the tail is caught by the sealed head, without an exported checkpoint.
        g.store().execute_raw("DELETE FROM audit WHERE seq >= 10").await.expect("truncate");
        let msg = bad(g.verify_audit(&[]).await.expect("v"));
        assert!(msg.contains("ends at 9") && msg.contains("12"), "{kind}: {msg}");
        let msg = bad(g.verify_audit(&[cp]).await.expect("v"));
        assert!(msg.contains("12"), "{kind}: {msg}");
        // Reordering: swap the bodies of records 1 and 2.
        g.store().execute_raw("UPDATE audit SET seq = -1 WHERE seq = 1").await.expect("swap");
        g.store().execute_raw("UPDATE audit SET seq = 1 WHERE seq = 2").await.expect("swap");
        g.store().execute_raw("UPDATE audit SET seq = 2 WHERE seq = -1").await.expect("swap");
        assert!(g.verify_audit(&[]).await.expect("v").is_err(), "{kind}: reordering detected");
        // A different key cannot even open the store (the HMAC keys live wrapped under the master key).
        let (other, _) = MasterKey::load_or_create("JGATE_TEST_UNSET_MASTER_KEY", &key_file()).expect("key");
        assert!(Gate::open(Store::open(&url).await.expect("store"), other, None).await.is_err(), "{kind}");
    }
}

#[tokio::test]
async fn writes_fail_closed_without_audit() {
    let (twin, s) = twin().await;
    for (kind, url) in databases().await {
        let g = gate_on(&url, &key_file()).await;
        g.add_controller(&admin(), controller(&s, TOKEN), false).await.expect("add");
        g.create_agent(&admin(), "bot", "", None).await.expect("agent");
        g.grant(&admin(), "bot", Group::Build, Level::Full, None, None, vec![]).await.expect("grant");
        g.store().execute_raw("ALTER TABLE audit RENAME TO audit_gone").await.expect("break the audit table");
        let before = twin.requests_received();
        let err = g.call(&caller("bot"), "prod", "trigger_build", json!({"job": "api-server"})).await;
        assert!(matches!(err, Err(GateError::AuditUnavailable(_))), "{kind}: {err:?}");
        assert_eq!(twin.requests_received(), before, "{kind}: the write was not performed");
        g.store().execute_raw("ALTER TABLE audit_gone RENAME TO audit").await.expect("restore");
    }
}

#[tokio::test]
async fn two_writers_never_fork_the_chain() {
    for (kind, url) in databases().await {
        let kf = key_file();
        // Two independent stores (separate pools, as two jgate processes would have).
        let a = Arc::new(gate_on(&url, &kf).await);
        let b = Arc::new(gate_on(&url, &kf).await);
        a.create_agent(&admin(), "bot", "", None).await.expect("agent");
        let mut tasks = Vec::new();
        for (n, g) in [(0, a.clone()), (1, b.clone())] {
            tasks.push(tokio::spawn(async move {
                for i in 0..25 {
                    // Denied calls still append (and need no controller).
                    let _ = g.call(&caller("bot"), "prod", "get_job", json!({"job": format!("j{n}-{i}")})).await;
                }
            }));
        }
        for t in tasks {
            tokio::time::timeout(Duration::from_secs(60), t).await.expect("in time").expect("task");
        }
        let records = a.audit(&AuditFilter::default()).await.expect("audit");
        // 50 calls and the intent and outcome of creating the agent.
        assert_eq!(records.len(), 52, "{kind}");
        assert!(records.iter().enumerate().all(|(i, r)| r.seq == i as i64 + 1), "{kind}: dense sequence");
        assert_eq!(b.verify_audit(&[]).await.expect("verify"), Ok(52), "{kind}: one unforked chain");
    }
}
