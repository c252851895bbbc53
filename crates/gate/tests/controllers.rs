//! The controller life cycle on both stores: `update` (tested before it is stored, audited
//! without the token), changes and removals reaching every running gate within a second (the
//! store's controller generation), and removal refused while grants name the controller.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{Dbs, admin, caller, key_file, load};
use gate::audit::Phase;
use gate::catalog::Group;
use gate::policy::Level;
use gate::store::{AuditFilter, Store};
use gate::{ControllerRemoval, ControllerUpdate, Gate, GateError, NewController};
use jenkins_twin::TwinServer;
use secrecy::SecretString;
use serde_json::json;

const TOKEN_A: &str = "11aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const TOKEN_B: &str = "11bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

async fn twin(job: &str, token: &str) -> TwinServer {
    let scenario = format!("[[jobs]]\npath = \"{job}\"\nscript = \"echo {job}\"\n");
    jenkins_twin::start(&scenario, &[("admin".into(), "adminpass".into(), token.into())]).await.expect("twin").1
}

async fn gate_on(url: &str, key: &Path) -> Gate {
    Gate::open(Store::open(url).await.expect("store"), load(key), None).await.expect("gate")
}

fn prod(server: &TwinServer, token: &str) -> NewController {
    common::twin_controller("prod", server, token)
}

fn move_to(server: &TwinServer, token: Option<&str>) -> ControllerUpdate {
    ControllerUpdate {
        url: Some(server.url()),
        token: token.map(|t| SecretString::from(t.to_string())),
        allow_private: Some(vec![format!("127.0.0.1:{}", server.addr().port())]),
        ..ControllerUpdate::default()
    }
}

/// Calls `get_job` on `g` until `ok` says the answer is the expected one; returns how long that took.
async fn until(g: &Gate, job: &str, ok: impl Fn(&Result<serde_json::Value, GateError>) -> bool) -> Duration {
    let started = Instant::now();
    loop {
        let r = g.call(&caller("bot"), "prod", "get_job", json!({"job": job})).await;
        if ok(&r) {
            return started.elapsed();
        }
        assert!(started.elapsed() < Duration::from_secs(5), "not seen after 5 s: {r:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// B: two gates on one store (two `jgate serve` processes). An update made through one is used
/// by the other within a second; so is a removal. No restart.
#[tokio::test]
async fn updates_and_removals_reach_every_gate_within_a_second() {
    let a = twin("alpha", TOKEN_A).await;
    let b = twin("beta", TOKEN_B).await;
    let dbs = Dbs::new("jgc").await;
    for (kind, url) in &dbs.list {
        let key = key_file();
        let g1 = gate_on(url, &key).await;
        let g2 = gate_on(url, &key).await;
        g1.add_controller(&admin(), prod(&a, TOKEN_A), false).await.expect("add");
        g1.create_agent(&admin(), "bot", "", None).await.expect("agent");
        g1.grant(&admin(), "bot", Group::Status, Level::Read, Some("prod"), None, vec![]).await.expect("grant");

        // g2 serves prod from its cached connection to twin A.
        until(&g2, "alpha", |r| r.is_ok()).await;
        assert!(g2.call(&caller("bot"), "prod", "get_job", json!({"job": "alpha"})).await.is_ok(), "{kind}");

        // The controller moves to twin B with a new token, through g1.
        let (row, report) =
            g1.update_controller(&admin(), "prod", move_to(&b, Some(TOKEN_B)), false).await.expect("update");
        assert_eq!(row.base_url, format!("{}/", b.url()), "{kind}");
        assert!(report.is_some(), "{kind}: tested before it was stored");
        let took = until(&g2, "beta", |r| r.is_ok()).await;
        assert!(took <= Duration::from_millis(1500), "{kind}: g2 used the old connection for {took:?}");
        let old = g2.call(&caller("bot"), "prod", "get_job", json!({"job": "alpha"})).await;
        assert!(old.is_err(), "{kind}: twin A is no longer used: {old:?}");

        // The proxy's controller lookup (cached, not read from the store per request) follows too.
        let proxied = g2.proxy_controller("prod").await.expect("proxy lookup");
        assert_eq!(proxied, Some(format!("{}/", b.url())), "{kind}");

        // Removed through g1 (with its grant): g2 stops serving it within a second.
        let removed = g1.remove_controller_with(&admin(), "prod", true).await.expect("remove");
        assert_eq!(removed, ControllerRemoval::Removed { grants: 1 }, "{kind}");
        let took = until(&g2, "beta", |r| r.is_err()).await;
        assert!(took <= Duration::from_millis(1500), "{kind}: g2 served a removed controller for {took:?}");
        let start = std::time::Instant::now();
        while g2.proxy_controller("prod").await.expect("proxy lookup").is_some() {
            assert!(
                start.elapsed() <= Duration::from_millis(1500),
                "{kind}: the proxy still serves a removed controller"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    dbs.cleanup().await;
}

/// A: an update is tested first and stores nothing if the test fails (unless forced); it is
/// audited with what changed and never the token.
#[tokio::test]
async fn updates_are_tested_first_and_audited_without_the_token() {
    let a = twin("alpha", TOKEN_A).await;
    let b = twin("beta", TOKEN_B).await;
    let dbs = Dbs::new("jgu").await;
    for (kind, url) in &dbs.list {
        let g = gate_on(url, &key_file()).await;
        g.add_controller(&admin(), prod(&a, TOKEN_A), false).await.expect("add");
        let before = g.store().controller("prod").await.expect("read").expect("row");

        // Twin B with twin A's token: 401, nothing stored, and the fix names the update command.
        let err = g.update_controller(&admin(), "prod", move_to(&b, None), false).await.expect_err("refused");
        let text = err.to_string();
        assert!(matches!(err, GateError::ConnectionTest { .. }), "{kind}: {text}");
        assert!(text.contains("jgate controller update") && text.contains("--token-file"), "{kind}: {text}");
        assert_eq!(g.store().controller("prod").await.expect("read").as_ref(), Some(&before), "{kind}: unchanged");

        // Forced: stored anyway.
        let (row, report) = g.update_controller(&admin(), "prod", move_to(&b, None), true).await.expect("forced");
        assert!(report.is_none() && row.base_url.starts_with(&b.url()), "{kind}");
        // Fixed with the right token and a timeout.
        let change = ControllerUpdate {
            token: Some(SecretString::from(TOKEN_B.to_string())),
            timeout_secs: Some(Some(7)),
            ..ControllerUpdate::default()
        };
        let (row, report) = g.update_controller(&admin(), "prod", change, false).await.expect("update");
        assert!(report.is_some(), "{kind}");
        assert_eq!(row.timeout_secs, Some(7), "{kind}");
        assert_eq!(g.test_controller("prod").await.expect("test").who_am_i.name, "admin", "{kind}");

        let records = g
            .audit(&AuditFilter { operation: Some("admin.controller.update".into()), ..AuditFilter::default() })
            .await
            .expect("audit");
        let text = serde_json::to_string(&records).expect("json");
        assert!(!text.contains(TOKEN_A) && !text.contains(TOKEN_B), "{kind}: a token is in the audit");
        let outcomes: Vec<_> = records.iter().filter(|r| r.entry.phase == Phase::Outcome).collect();
        assert_eq!(outcomes.len(), 2, "{kind}: the refused update stored nothing and recorded nothing");
        assert_eq!(outcomes[1].entry.args["changed"]["token"], "replaced", "{kind}");
        assert_eq!(outcomes[1].entry.args["changed"]["timeout_secs"], 7, "{kind}");
        assert!(g.verify_audit(&[]).await.expect("verify").is_ok(), "{kind}");
    }
    dbs.cleanup().await;
}

/// C: removal refuses while grants name the controller; --with-grants removes them (audited), so
/// a later controller of the same name starts with no grants.
#[tokio::test]
async fn removal_refuses_while_grants_name_the_controller() {
    let a = twin("alpha", TOKEN_A).await;
    let dbs = Dbs::new("jgr").await;
    for (kind, url) in &dbs.list {
        let g = gate_on(url, &key_file()).await;
        g.add_controller(&admin(), prod(&a, TOKEN_A), false).await.expect("add");
        g.create_agent(&admin(), "bot", "", None).await.expect("agent");
        let named =
            g.grant(&admin(), "bot", Group::Status, Level::Read, Some("prod"), None, vec![]).await.expect("grant");
        let everywhere = g.grant(&admin(), "bot", Group::Nodes, Level::Read, None, None, vec![]).await.expect("grant");

        let err = g.remove_controller_with(&admin(), "prod", false).await.expect_err("refused");
        let text = err.to_string();
        assert!(text.contains("--with-grants") && text.contains(&format!("#{}", named.id)), "{kind}: {text}");
        assert!(!text.contains(&format!("#{}", everywhere.id)), "{kind}: grants for every controller do not count");
        assert!(g.store().controller("prod").await.expect("read").is_some(), "{kind}: still there");
        // The plain form refuses too.
        assert!(g.remove_controller(&admin(), "prod").await.is_err(), "{kind}");

        assert_eq!(
            g.remove_controller_with(&admin(), "prod", true).await.expect("remove"),
            ControllerRemoval::Removed { grants: 1 },
            "{kind}"
        );
        let left: Vec<i64> = g.grants("bot").await.expect("grants").iter().map(|g| g.id).collect();
        assert_eq!(left, vec![everywhere.id], "{kind}: only the controller's grant went");
        let records = g
            .audit(&AuditFilter { operation: Some("admin.controller.remove".into()), ..AuditFilter::default() })
            .await
            .expect("audit");
        let outcome = records.iter().find(|r| r.entry.phase == Phase::Outcome).expect("outcome");
        assert_eq!(outcome.entry.args["grants"][0]["id"], named.id, "{kind}");
        assert_eq!(outcome.entry.args["grants_removed"], 1, "{kind}");

        // A new controller of the same name: the old grant does not re-attach.
        g.add_controller(&admin(), prod(&a, TOKEN_A), false).await.expect("re-add");
        let denied = g.call(&caller("bot"), "prod", "get_job", json!({"job": "alpha"})).await;
        assert!(matches!(denied, Err(GateError::Denied { .. })), "{kind}: {denied:?}");
        assert_eq!(
            g.remove_controller_with(&admin(), "nope", false).await.expect("missing"),
            ControllerRemoval::Missing,
            "{kind}"
        );
    }
    dbs.cleanup().await;
}
