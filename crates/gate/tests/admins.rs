//! Console administrators and sessions on both stores (SQLite and PostgreSQL, for real): accounts,
//! password login, rate limiting per name and per address (shared by two gates on one store, as by
//! two replicas), one-time links (once, expiry), idle expiry and lifetime, logout, password
//! changes ending sessions, agent keys refused, and the audit records of each.

use std::path::Path;

use gate::admins::{LoginError, MAX_FAILURES_PER_ADDRESS, MAX_FAILURES_PER_NAME, SESSION_IDLE_MS};
use gate::audit::{Phase, Surface};
use gate::store::{AuditFilter, Store};
use gate::{Gate, GateError};
use secrecy::{ExposeSecret, SecretString};

mod common;
use common::{Dbs, admin, key_file, load};

async fn open(url: &str, kf: &Path) -> Gate {
    Gate::open(Store::open(url).await.expect("store"), load(kf), None).await.expect("gate")
}

fn pw(s: &str) -> SecretString {
    SecretString::from(s.to_string())
}

const GOOD: &str = "a long correct passphrase";

#[tokio::test]
async fn accounts_logins_sessions_and_links() {
    let dbs = Dbs::new("jgadm").await;
    for (kind, url) in &dbs.list {
        let kf = key_file();
        let g = open(url, &kf).await;
        // A second gate on the same store: another replica.
        let replica = open(url, &kf).await;

        // Accounts: names and passwords checked, duplicates refused; agent keys are no password.
        assert!(matches!(g.create_admin(&admin(), "Alice", &pw(GOOD)).await, Err(GateError::Invalid(_))));
        assert!(matches!(g.create_admin(&admin(), "alice", &pw("short")).await, Err(GateError::Invalid(_))));
        let (_, agent_key) = g.create_agent(&admin(), "bot", "", None).await.expect("agent");
        let as_password = g.create_admin(&admin(), "alice", &agent_key.secret).await;
        assert!(
            matches!(&as_password, Err(GateError::Invalid(m)) if m.contains("agent key")),
            "{kind}: {as_password:?}"
        );
        g.create_admin(&admin(), "alice", &pw(GOOD)).await.expect("create");
        assert!(g.create_admin(&admin(), "alice", &pw(GOOD)).await.is_err(), "{kind}: duplicate");
        assert_eq!(g.admins().await.expect("list").iter().map(|a| a.name.as_str()).collect::<Vec<_>>(), ["alice"]);

        // Password login; the session is valid on the other replica too.
        let s = g.console_login("alice", &pw(GOOD), "10.0.0.1").await.expect("login");
        let token = s.token.expose_secret().to_string();
        assert!(token.starts_with("jgs_"));
        assert_eq!(replica.console_session(&token).await.expect("session").map(|s| s.admin), Some("alice".into()));

        // Wrong password, unknown name and an agent key answer alike.
        for (name, p) in
            [("alice", "a long wrong passphrase"), ("nobody", GOOD), ("alice", agent_key.secret.expose_secret())]
        {
            let r = g.console_login(name, &pw(p), "10.0.0.2").await;
            assert!(matches!(r, Err(LoginError::BadCredentials)), "{kind}: {name}: {r:?}");
        }
        // An agent key is never a session token either.
        assert!(g.console_session(agent_key.secret.expose_secret()).await.expect("lookup").is_none());

        // Rate limit per name, counted across replicas: then even the right password is refused.
        g.create_admin(&admin(), "bob", &pw(GOOD)).await.expect("bob");
        for i in 0..MAX_FAILURES_PER_NAME {
            let gate = if i % 2 == 0 { &g } else { &replica };
            let r = gate.console_login("bob", &pw("a long wrong passphrase"), &format!("10.1.0.{i}")).await;
            assert!(matches!(r, Err(LoginError::BadCredentials)), "{kind}: {r:?}");
        }
        let r = replica.console_login("bob", &pw(GOOD), "10.1.1.1").await;
        assert!(
            matches!(r, Err(LoginError::RateLimited { retry_after_secs }) if retry_after_secs > 0),
            "{kind}: {r:?}"
        );
        // Attempts while locked out are refused without flooding the audit: one record.
        for _ in 0..3 {
            assert!(matches!(g.console_login("bob", &pw(GOOD), "10.1.1.1").await, Err(LoginError::RateLimited { .. })));
        }
        let locked = g.audit(&AuditFilter::default()).await.expect("audit");
        let n = locked.iter().filter(|r| r.entry.agent == "bob" && r.entry.reason.starts_with("too many")).count();
        assert_eq!(n, 1, "{kind}");
        // Other administrators are not locked out by bob's failures.
        assert!(g.console_login("alice", &pw(GOOD), "10.1.1.1").await.is_ok(), "{kind}");

        // Rate limit per address, whatever the names tried.
        for i in 0..MAX_FAILURES_PER_ADDRESS {
            let _ = g.console_login(&format!("guess{i}"), &pw("a long wrong passphrase"), "10.9.9.9").await;
        }
        let r = g.console_login("alice", &pw(GOOD), "10.9.9.9").await;
        assert!(matches!(r, Err(LoginError::RateLimited { .. })), "{kind}: {r:?}");

        // One-time links: used once, on any replica; unknown or malformed ones refused.
        let link = g.console_login_link(&admin(), "alice").await.expect("link");
        assert!(g.console_login_link(&admin(), "nobody").await.is_err());
        let s2 = replica.console_redeem_link(link.expose_secret(), "10.0.0.3").await.expect("redeem");
        assert_eq!(s2.admin, "alice");
        let again = g.console_redeem_link(link.expose_secret(), "10.0.0.3").await;
        assert!(matches!(again, Err(LoginError::BadLink)), "{kind}: {again:?}");
        assert!(matches!(g.console_redeem_link("jgl_nonsense", "10.0.0.3").await, Err(LoginError::BadLink)));
        // An expired link: made, then its expiry moved into the past.
        let old = g.console_login_link(&admin(), "alice").await.expect("link");
        g.store()
            .execute_raw("UPDATE console_login_links SET expires_ms = 1 WHERE used_ms IS NULL")
            .await
            .expect("age");
        assert!(matches!(g.console_redeem_link(old.expose_secret(), "10.0.0.3").await, Err(LoginError::BadLink)));

        // Idle expiry: a session unused for the idle timeout is gone (and stays gone).
        let s3 = g.console_login("alice", &pw(GOOD), "10.0.0.4").await.expect("login");
        let t3 = s3.token.expose_secret().to_string();
        assert!(g.console_session(&t3).await.expect("s").is_some());
        g.age_console_session(&t3, SESSION_IDLE_MS + 1000).await.expect("age");
        assert!(g.console_session(&t3).await.expect("s").is_none(), "{kind}: idle session still valid");
        // Lifetime: however active, a session ends at its expiry.
        let s4 = g.console_login("alice", &pw(GOOD), "10.0.0.4").await.expect("login");
        g.store().execute_raw("UPDATE console_sessions SET expires_ms = 1").await.expect("expire");
        assert!(g.console_session(s4.token.expose_secret()).await.expect("s").is_none());

        // Logout ends the session everywhere.
        let s5 = g.console_login("alice", &pw(GOOD), "10.0.0.5").await.expect("login");
        let t5 = s5.token.expose_secret().to_string();
        replica.console_logout(&t5).await.expect("logout");
        assert!(g.console_session(&t5).await.expect("s").is_none());

        // A new password ends the administrator's sessions; the old password no longer works.
        let s6 = g.console_login("alice", &pw(GOOD), "10.0.0.6").await.expect("login");
        g.set_admin_password(&admin(), "alice", &pw("another long passphrase")).await.expect("passwd");
        assert!(g.console_session(s6.token.expose_secret()).await.expect("s").is_none());
        assert!(g.console_login("alice", &pw(GOOD), "10.0.0.6").await.is_err());
        let s7 = g.console_login("alice", &pw("another long passphrase"), "10.0.0.6").await.expect("login");

        // Deleting an administrator ends their sessions.
        assert!(g.delete_admin(&admin(), "alice").await.expect("delete"));
        assert!(!g.delete_admin(&admin(), "alice").await.expect("delete"));
        assert!(g.console_session(s7.token.expose_secret()).await.expect("s").is_none());

        // A controller's last connection test, kept (and replaced) in the store.
        for ok in [false, true] {
            let check = gate::controller_checks::ControllerCheck {
                ok,
                time_ms: 1,
                summary: format!("test {ok}"),
                fix: None,
                details: vec![],
                version: Some("2.0".into()),
            };
            g.keep_check("prod", &check).await.expect("keep");
        }
        let checks = replica.last_checks().await.expect("checks");
        assert_eq!(checks.get("prod").map(|c| (c.ok, c.summary.as_str())), Some((true, "test true")), "{kind}");

        // Audited: account changes by the CLI, logins (refused ones denied) by the console.
        let records = g.audit(&AuditFilter::default()).await.expect("audit");
        let ops = |op: &str| records.iter().filter(|r| r.entry.operation == op).collect::<Vec<_>>();
        assert!(ops("admin.administrator.create").iter().any(|r| r.entry.phase == Phase::Intent));
        assert!(!ops("admin.administrator.passwd").is_empty());
        assert!(!ops("admin.administrator.delete").is_empty());
        assert!(!ops("admin.console.link").is_empty());
        assert!(!ops("admin.console.logout").is_empty());
        let logins = ops("admin.console.login");
        assert!(logins.iter().all(|r| r.entry.surface == Surface::Web));
        assert!(logins.iter().any(|r| r.entry.allowed && r.entry.agent == "alice"));
        assert!(logins.iter().any(|r| r.entry.phase == Phase::Denied && r.entry.reason.contains("too many")));
        assert!(logins.iter().any(|r| r.entry.phase == Phase::Denied && r.entry.reason.contains("agent key")));
        // The sentences say what happened, and from where.
        let sentences: Vec<&str> = records.iter().map(|r| r.sentence.as_str()).collect();
        for expected in [
            "admin (local CLI) created console administrator alice",
            "alice (web console) logged in to the console with a password from 10.0.0.1",
            "alice (web console) logged in to the console with a one-time link from 10.0.0.3",
            "alice (web console) was refused permission to log in to the console from 10.0.0.2: wrong name or password",
            "alice (web console) logged out of the console",
            "admin (local CLI) made a one-time console login link for alice",
        ] {
            assert!(sentences.contains(&expected), "{kind}: no '{expected}' in {sentences:#?}");
        }
        // No password, hash or token in any record.
        for r in &records {
            let text = serde_json::to_string(&r.entry).expect("json");
            assert!(!text.contains(GOOD) && !text.contains("argon2") && !text.contains(&token), "{kind}: {text}");
        }
        assert_eq!(g.verify_audit(&[]).await.expect("verify").map_err(|e| e.to_string()), Ok(records.len() as u64));
    }
    dbs.cleanup().await;
}
