//! Helpers shared by the gate's integration tests: fresh databases of each kind (PostgreSQL for
//! real, in a schema of the test's own), temporary directories, master keys, callers, entries.
//! Each test file uses a part of them.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use gate::audit::{Entry, Phase, Surface};
use gate::secrets::MasterKey;
use gate::{Admin, Caller};
use serde_json::json;
use sqlx::Connection;

/// Unique across the processes and calls of a test run.
pub fn unique() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!("{}_{}_{}", std::process::id(), gate::store::now_ms() % 1_000_000_000, N.fetch_add(1, Ordering::SeqCst))
}

/// A fresh temporary directory, named after `what`.
pub fn temp_dir(what: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("jgate-{what}-{}", unique()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// One database of each kind; [`Dbs::cleanup`] drops the PostgreSQL schema (only its own: other
/// test processes may be using theirs). Under CI an unreachable PostgreSQL fails the test.
pub struct Dbs {
    pub list: Vec<(&'static str, String)>,
    pg_schema: Option<(String, String)>,
}

impl Dbs {
    /// `prefix` names the test file's schemas (e.g. `jga` for audit_stores).
    pub async fn new(prefix: &str) -> Dbs {
        let sqlite = temp_dir(&format!("{prefix}-db")).join("jgate.db").display().to_string();
        let mut list = vec![("sqlite", sqlite)];
        let pg =
            std::env::var("JGATE_TEST_POSTGRES").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
        let schema = format!("{prefix}_{}", unique());
        sqlx::any::install_default_drivers();
        let mut pg_schema = None;
        match sqlx::AnyConnection::connect_with(&pg.parse().expect("pg url")).await {
            Ok(mut conn) => {
                sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
                    .execute(&mut conn)
                    .await
                    .expect("create schema");
                let _ = conn.close().await;
                list.push(("postgres", format!("{pg}?options=-c%20search_path%3D{schema}")));
                pg_schema = Some((pg, schema));
            }
            Err(e) if std::env::var_os("CI").is_some() => panic!("PostgreSQL at {pg} is unreachable under CI: {e}"),
            Err(e) => eprintln!("SKIPPING PostgreSQL (not under CI): {pg} unreachable: {e}"),
        }
        Dbs { list, pg_schema }
    }

    pub async fn cleanup(self) {
        if let Some((pg, schema)) = self.pg_schema
            && let Ok(mut conn) = sqlx::AnyConnection::connect_with(&pg.parse().expect("pg url")).await
        {
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA IF EXISTS {schema} CASCADE")))
                .execute(&mut conn)
                .await;
            let _ = conn.close().await;
        }
    }
}

pub fn admin() -> Admin {
    Admin::new("admin", Surface::Cli)
}

pub fn key_file() -> PathBuf {
    temp_dir("key").join("master.key")
}

pub fn load(kf: &Path) -> MasterKey {
    MasterKey::load_or_create("JGATE_TEST_UNSET_MASTER_KEY", kf).expect("master key").0
}

pub fn caller(agent: &str) -> Caller {
    Caller { agent: agent.into(), key_id: None, surface: Surface::Mcp, client_addr: None, request_id: "r".into() }
}

/// A read record of `agent`, for appending directly.
pub fn entry(agent: &str) -> Entry {
    Entry {
        time_ms: gate::store::now_ms(),
        request_id: "r".into(),
        agent: agent.into(),
        key_id: None,
        surface: Surface::Mcp,
        client_addr: None,
        controller: "prod".into(),
        operation: "get_job".into(),
        target: Some("team/api".into()),
        args: json!({"job": "team/api"}),
        phase: Phase::Read,
        allowed: true,
        grant: Some(1),
        reason: "allowed by grant 1".into(),
        outcome: Some("ok".into()),
        http_status: None,
        duration_ms: Some(1),
        redactions: 0,
        build_number: None,
    }
}

/// The controller `name` for a running twin: the admin user with `token`, its loopback address
/// allowed.
pub fn twin_controller(name: &str, server: &jenkins_twin::TwinServer, token: &str) -> gate::NewController {
    gate::NewController {
        name: name.into(),
        url: server.url(),
        username: "admin".into(),
        token: secrecy::SecretString::from(token.to_string()),
        password: false,
        allow_private: vec![format!("127.0.0.1:{}", server.addr().port())],
        ca_pem: None,
        insecure: false,
    }
}

/// The admin's API token on the twins of [`gate_on_twin`].
pub const TWIN_TOKEN: &str = "11dddddddddddddddddddddddddddddddd";

/// A twin of `scenario` and a gate (SQLite in a temporary directory named after `what`) with the
/// controller `prod` on it and the agent `bot`, granted status read.
pub async fn gate_on_twin(
    what: &str,
    scenario: &str,
) -> (std::sync::Arc<jenkins_twin::Twin>, jenkins_twin::TwinServer, gate::Gate) {
    let (twin, server) =
        jenkins_twin::start(scenario, &[("admin".into(), "admin".into(), TWIN_TOKEN.into())]).await.expect("twin");
    let dir = temp_dir(what);
    let store = gate::store::Store::open(&dir.join("jgate.db").display().to_string()).await.expect("store");
    let (master, _) =
        MasterKey::load_or_create("JGATE_TEST_UNSET_MASTER_KEY", &dir.join("master.key")).expect("master key");
    let g = gate::Gate::open(store, master, None).await.expect("gate");
    let admin = Admin::local_cli();
    g.add_controller(&admin, twin_controller("prod", &server, TWIN_TOKEN), false).await.expect("controller");
    g.create_agent(&admin, "bot", "", None).await.expect("agent");
    g.grant(&admin, "bot", gate::catalog::Group::Status, gate::policy::Level::Read, None, None, vec![])
        .await
        .expect("grant");
    (twin, server, g)
}
