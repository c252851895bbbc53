//! The store off the call path, on both stores (SQLite and PostgreSQL, for real): cached key
//! verification and grants that still see a revocation on another replica within a second,
//! authentication that writes nothing, last-use times flushed in the background, group commit of
//! concurrent audit appends (dropped callers included), and a store that cannot answer failing
//! calls promptly with one clear message.
//!
//! PostgreSQL comes from JGATE_TEST_POSTGRES (default postgres://postgres@127.0.0.1:5432/test);
//! each test works in a fresh schema (prefix `jgh_`, dropped at the end). Under CI an unreachable
//! PostgreSQL fails the tests.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gate::catalog::Group;
use gate::policy::Level;
use gate::store::{AuditFilter, Store, StoreError};
use gate::{Gate, GateError};
use serde_json::json;
use sqlx::Connection;

mod common;
use common::{Dbs, admin, caller, entry, key_file, load};

async fn open(url: &str, kf: &Path) -> Gate {
    Gate::open(Store::open(url).await.expect("store"), load(kf), None).await.expect("gate")
}

/// A raw connection to the same database (another program, as far as jgate can tell).
async fn raw(kind: &str, url: &str) -> sqlx::AnyConnection {
    let url = if kind == "sqlite" { format!("sqlite://{url}") } else { url.to_string() };
    sqlx::AnyConnection::connect(&url).await.expect("raw connection")
}

/// Holds the write lock of the store from another connection: SQLite's (readers go on, in WAL),
/// or on PostgreSQL the audit append lock and a lock on the key table that blocks its writers.
async fn hold_write_lock(kind: &str, conn: &mut sqlx::AnyConnection) {
    let statements: &[&str] = if kind == "sqlite" {
        &["BEGIN EXCLUSIVE"]
    } else {
        &["BEGIN", "SELECT pg_advisory_xact_lock(7632345547474177)", "LOCK TABLE agent_keys IN EXCLUSIVE MODE"]
    };
    for s in statements {
        sqlx::query(*s).execute(&mut *conn).await.expect("lock");
    }
}

async fn release(conn: &mut sqlx::AnyConnection) {
    sqlx::query("ROLLBACK").execute(&mut *conn).await.expect("release");
}

#[tokio::test]
async fn a_revoked_key_stops_working_within_a_second_on_another_replica() {
    let dbs = Dbs::new("jgh").await;
    for (kind, url) in &dbs.list {
        let kf = key_file();
        let a = open(url, &kf).await;
        let b = open(url, &kf).await;
        let (_, key) = a.create_agent(&admin(), "bot", "", None).await.expect("agent");
        let secret = gate::gate::expose(&key.secret).to_string();
        assert_eq!(b.authenticate(&secret).await.expect("auth").0, "bot", "{kind}");
        assert!(a.authenticate(&secret).await.is_ok(), "{kind}");
        assert!(b.grants("bot").await.expect("grants").is_empty(), "{kind}");

        a.grant(&admin(), "bot", Group::Status, Level::Read, None, None, vec![]).await.expect("grant");
        a.revoke(&admin(), "bot", None).await.expect("revoke");
        // The replica that made the change sees it at once.
        let err = a.authenticate(&secret).await.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("revoked"), "{kind}: {err}");
        assert_eq!(a.grants("bot").await.expect("grants").len(), 1, "{kind}");
        // The other within a second.
        let start = Instant::now();
        loop {
            match b.authenticate(&secret).await {
                Err(GateError::BadKey(why)) => {
                    assert!(why.contains("revoked"), "{kind}: {why}");
                    break;
                }
                Ok(_) => assert!(start.elapsed() < Duration::from_millis(1500), "{kind}: still accepted"),
                Err(e) => panic!("{kind}: {e}"),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Grants are cached apart from keys (each entry at most a second old, counted from its
        // own load), so the grant made before the revocation is seen within the same second,
        // not necessarily at the same instant.
        while b.grants("bot").await.expect("grants").is_empty() {
            assert!(start.elapsed() < Duration::from_millis(1500), "{kind}: the new grant is not seen");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(start.elapsed() < Duration::from_millis(1500), "{kind}: {:?}", start.elapsed());
    }
    dbs.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authentication_writes_nothing_and_key_use_is_flushed() {
    let dbs = Dbs::new("jgh").await;
    for (kind, url) in &dbs.list {
        let kf = key_file();
        let g = open(url, &kf).await;
        let (agent, key) = g.create_agent(&admin(), "bot", "", None).await.expect("agent");
        let secret = gate::gate::expose(&key.secret).to_string();
        let before = gate::store::now_ms();
        g.authenticate(&secret).await.expect("auth");

        // Another program holds the write lock: authentication (a cache hit, then a refresh that
        // only reads) goes on undisturbed.
        let mut other = raw(kind, url).await;
        hold_write_lock(kind, &mut other).await;
        for _ in 0..2 {
            for _ in 0..20 {
                let r = tokio::time::timeout(Duration::from_millis(900), g.authenticate(&secret)).await;
                assert!(matches!(r, Ok(Ok(_))), "{kind}: {r:?}");
            }
            tokio::time::sleep(Duration::from_millis(1100)).await;
        }
        release(&mut other).await;
        let _ = other.close().await;

        // Last use is written in the background (every few seconds) or on demand.
        let last_used = || async {
            let keys = g.store().keys_of(agent.id).await.expect("keys");
            keys.first().and_then(|k| k.last_used_ms).unwrap_or(0)
        };
        let start = Instant::now();
        while last_used().await < before {
            assert!(start.elapsed() < Duration::from_secs(10), "{kind}: the background flush never came");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let later = gate::store::now_ms();
        g.authenticate(&secret).await.expect("auth");
        assert!(g.flush_key_use().await.expect("flush") >= 1, "{kind}");
        assert!(last_used().await >= later, "{kind}");
        assert_eq!(g.flush_key_use().await.expect("flush"), 0, "{kind}: nothing pending");

        // A one-shot process (`jgate call`): open, authenticate, one audited call, exit. Its
        // key's use is written before the call is answered.
        let one_shot = open(url, &kf).await;
        let (agent2, key2) = one_shot.create_agent(&admin(), "cli-bot", "", None).await.expect("agent");
        one_shot.authenticate(gate::gate::expose(&key2.secret)).await.expect("auth");
        one_shot.record(entry("cli-bot")).await.expect("record");
        drop(one_shot);
        let keys = g.store().keys_of(agent2.id).await.expect("keys");
        assert!(keys.first().and_then(|k| k.last_used_ms).is_some(), "{kind}: the one-shot key use was written");
    }
    dbs.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_records_share_transactions_and_one_chain() {
    let dbs = Dbs::new("jgh").await;
    for (kind, url) in &dbs.list {
        let g = Arc::new(open(url, &key_file()).await);
        let n = 300;
        let batches_before = g.audit_batches();
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..n {
            let g = g.clone();
            tasks.spawn(async move { g.record(entry(&format!("bot-{i}"))).await });
        }
        let mut seqs = Vec::new();
        while let Some(r) = tasks.join_next().await {
            let record = r.expect("task").expect("record");
            seqs.push(record.seq);
        }
        seqs.sort_unstable();
        assert_eq!(seqs, (1..=n as i64).collect::<Vec<_>>(), "{kind}: each caller got its own record");
        let batches = g.audit_batches() - batches_before;
        assert!(batches < n as u64, "{kind}: {batches} transactions for {n} records");
        let records = g.audit(&AuditFilter::default()).await.expect("audit");
        assert_eq!(records.len(), n, "{kind}");
        assert_eq!(g.verify_audit(&[]).await.expect("verify"), Ok(n as u64), "{kind}: one verified chain");
        let cps = g.store().audit_checkpoints().await.expect("checkpoints");
        assert_eq!(cps.iter().map(|c| c.seq).collect::<Vec<_>>(), [100, 200, 300], "{kind}: checkpoints in batches");
    }
    dbs.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dropping_half_of_the_concurrent_records_loses_nobody_elses() {
    let dbs = Dbs::new("jgh").await;
    for (kind, url) in &dbs.list {
        let kf = key_file();
        let g = Arc::new(open(url, &kf).await);
        let mut kept = Vec::new();
        let mut dropped = Vec::new();
        for i in 0..200u64 {
            let g = g.clone();
            let task = tokio::spawn(async move { g.record(entry("bot")).await });
            if i % 2 == 0 { kept.push(task) } else { dropped.push(task) }
        }
        tokio::time::sleep(Duration::from_micros(300)).await;
        for t in &dropped {
            t.abort();
        }
        for t in kept {
            let r = tokio::time::timeout(Duration::from_secs(30), t).await.expect("in time").expect("task");
            assert!(r.is_ok(), "{kind}: {r:?}");
        }
        // Nothing is left locked: this process and another append at once.
        for _ in 0..10 {
            let r = tokio::time::timeout(Duration::from_secs(5), g.record(entry("bot"))).await;
            assert!(matches!(r, Ok(Ok(_))), "{kind}: {r:?}");
        }
        let other = open(url, &kf).await;
        let r = tokio::time::timeout(Duration::from_secs(5), other.record(entry("other"))).await;
        assert!(matches!(r, Ok(Ok(_))), "{kind}: {r:?}");
        let records = g.audit(&AuditFilter::default()).await.expect("audit");
        assert!((111..=211).contains(&records.len()), "{kind}: {}", records.len());
        assert_eq!(g.verify_audit(&[]).await.expect("verify"), Ok(records.len() as u64), "{kind}");
    }
    dbs.cleanup().await;
}

/// A record appended in the caller's thread (SQLite, nothing queued) must never wait there for
/// the database's lock: on a one-thread runtime, a lock held by another program must not stop
/// the runtime (the record waits in the writer's thread instead, and is written once the lock is
/// free).
#[tokio::test]
async fn a_record_never_holds_the_runtime_while_the_database_is_locked() {
    let dir = common::temp_dir("inline-lock");
    let db = dir.join("jgate.db").display().to_string();
    let g = Arc::new(open(&db, &key_file()).await);
    g.record(entry("bot")).await.expect("a record with the lock free");
    let mut other = raw("sqlite", &db).await;
    hold_write_lock("sqlite", &mut other).await;
    let waiting = {
        let g = g.clone();
        tokio::spawn(async move { g.record(entry("bot")).await })
    };
    // The record starts as soon as this task yields; a runtime thread stuck in SQLite's lock
    // wait (5 s) would make this sleep that late.
    let start = Instant::now();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let late = start.elapsed();
    assert!(late < Duration::from_secs(2), "the runtime was held for {late:?}");
    assert!(!waiting.is_finished(), "the record waited for the lock");
    release(&mut other).await;
    let record = tokio::time::timeout(Duration::from_secs(10), waiting).await.expect("in time").expect("task");
    assert_eq!(record.expect("written after the lock was released").seq, 2);
    assert_eq!(g.verify_audit(&[]).await.expect("verify"), Ok(2));
}

/// Records appended one at a time (each in its caller's thread) keep the WAL checkpointed by the
/// writer's thread: it stays near SQLite's usual size instead of growing with every record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_appended_one_at_a_time_keep_the_wal_small() {
    let dir = common::temp_dir("inline-wal");
    let db = dir.join("jgate.db").display().to_string();
    let g = open(&db, &key_file()).await;
    let n = 3000;
    let batches_before = g.audit_batches();
    for _ in 0..n {
        g.record(entry("bot")).await.expect("record");
    }
    assert_eq!(g.audit_batches() - batches_before, n, "one transaction per record");
    // Without checkpoints every commit adds its pages to the WAL: tens of MiB for 3,000 records.
    let wal = std::fs::metadata(format!("{db}-wal")).map(|m| m.len()).unwrap_or(0);
    assert!(wal < 8 << 20, "the WAL grew to {} KiB", wal / 1024);
    assert_eq!(g.verify_audit(&[]).await.expect("verify"), Ok(n));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_cannot_answer_fails_calls_promptly_and_clearly() {
    let dbs = Dbs::new("jgh").await;
    for (kind, url) in &dbs.list {
        let kf = key_file();
        let g = open(url, &kf).await;
        let (_, key) = g.create_agent(&admin(), "bot", "", None).await.expect("agent");
        g.grant(&admin(), "bot", Group::Status, Level::Read, None, None, vec![]).await.expect("grant");
        let secret = gate::gate::expose(&key.secret).to_string();
        g.authenticate(&secret).await.expect("auth");
        let bot = caller("bot");
        let call = || g.call(&bot, "prod", "get_job", json!({"job": "api"}));

        // Locked by another program: the audit record waits a bounded time, then the call fails.
        let mut other = raw(kind, url).await;
        hold_write_lock(kind, &mut other).await;
        let start = Instant::now();
        let err = call().await.err().map(|e| e.to_string()).unwrap_or_default();
        let took = start.elapsed();
        release(&mut other).await;
        let _ = other.close().await;
        assert!(took < Duration::from_secs(10), "{kind}: took {took:?}");
        assert!(
            err.contains("the audit log cannot be written") && err.contains("jgate's store is unavailable"),
            "{kind}: {err}"
        );
        // Released: calls go through again and the chain is intact.
        let err = call().await.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("prod"), "{kind}: the call ran (no such controller): {err}");
        assert!(g.verify_audit(&[]).await.expect("verify").is_ok(), "{kind}");

        // Down: the already-authenticated agent is still recognised (past the cache's second),
        // and its call fails at once with the store's message, not as an authentication failure.
        g.store().close().await;
        tokio::time::sleep(Duration::from_millis(1100)).await;
        assert_eq!(g.authenticate(&secret).await.expect("cached key").0, "bot", "{kind}");
        let start = Instant::now();
        let err = call().await;
        assert!(start.elapsed() < Duration::from_secs(10), "{kind}");
        let msg = err.as_ref().err().map(ToString::to_string).unwrap_or_default();
        assert!(matches!(err, Err(GateError::AuditUnavailable(_))), "{kind}: {err:?}");
        assert!(msg.contains("jgate's store is unavailable") && msg.contains("Fix:"), "{kind}: {msg}");
        let err = g.record(entry("bot")).await;
        assert!(matches!(err, Err(StoreError::Unavailable { .. })), "{kind}: {err:?}");
        // A key it has not seen cannot be checked: the store's error, not "invalid key".
        let (_, fresh) = {
            let g2 = open(url, &kf).await;
            g2.create_agent(&admin(), "bot2", "", None).await.expect("agent")
        };
        let err = g.authenticate(gate::gate::expose(&fresh.secret)).await;
        assert!(matches!(err, Err(GateError::Store(StoreError::Unavailable { .. }))), "{kind}: {err:?}");
        let err = g.grants("bot").await.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("jgate's store is unavailable"), "{kind}: {err}");
    }
    dbs.cleanup().await;
}

#[tokio::test]
async fn an_unreachable_postgresql_is_reported_within_seconds() {
    let start = Instant::now();
    let err = Store::open("postgres://postgres@127.0.0.1:1/test").await.err().map(|e| e.to_string());
    assert!(start.elapsed() < Duration::from_secs(10), "took {:?}", start.elapsed());
    let err = err.unwrap_or_default();
    assert!(err.contains("cannot open the database") && err.contains("Fix:"), "{err}");
}

/// Not a check: the cost of an audit append and of authentication, sequential and concurrent
/// (`cargo test -p gate --release --test hot_path -- --ignored --nocapture`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn measure_the_hot_path() {
    let dbs = Dbs::new("jgh").await;
    for (kind, url) in &dbs.list {
        let g = Arc::new(open(url, &key_file()).await);
        let (_, key) = g.create_agent(&admin(), "bot", "", None).await.expect("agent");
        let secret = gate::gate::expose(&key.secret).to_string();
        let mut times = Vec::new();
        for _ in 0..500 {
            let t = Instant::now();
            g.authenticate(&secret).await.expect("auth");
            g.record(entry("bot")).await.expect("record");
            times.push(t.elapsed());
        }
        times.sort();
        let p50 = times[times.len() / 2];
        let n = 5000;
        let start = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..64 {
            let (g, secret) = (g.clone(), secret.clone());
            tasks.spawn(async move {
                for _ in 0..n / 64 {
                    g.authenticate(&secret).await.expect("auth");
                    g.record(entry("bot")).await.expect("record");
                }
            });
        }
        while tasks.join_next().await.is_some() {}
        let rate = (n / 64 * 64) as f64 / start.elapsed().as_secs_f64();
        eprintln!("{kind}: authenticate + record p50 {p50:?} sequential; {rate:.0}/s with 64 concurrent callers");
    }
    dbs.cleanup().await;
}

/// Not a check: where a read's time goes in process, on SQLite — the same GET straight to the
/// twin, the whole call path (`get_job`: policy, wire client, sanitizer, audit), one audit
/// append, one store round trip
/// (`cargo test -p gate --release --test hot_path -- --ignored --nocapture measure_the_call_path`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn measure_the_call_path() {
    const TOKEN: &str = "11aa22bb33cc44dd55ee66ff77aa88bb99";
    let scenario = "[controller]\nquiet_period = 0\n[[jobs]]\npath = \"app\"\nscript = \"echo hi\"\n";
    let (_twin, server) =
        jenkins_twin::start(scenario, &[("admin".into(), "admin".into(), TOKEN.into())]).await.expect("twin");
    let dir = common::temp_dir("measure");
    let g = open(&dir.join("jgate.db").display().to_string(), &key_file()).await;
    let controller = common::twin_controller("prod", &server, TOKEN);
    g.add_controller(&admin(), controller, false).await.expect("controller");
    g.create_agent(&admin(), "bot", "", None).await.expect("agent");
    g.grant(&admin(), "bot", Group::Status, Level::Read, None, None, vec![]).await.expect("grant");
    let http = reqwest::Client::new();
    let url = format!("{}/job/app/api/json", server.url().trim_end_matches('/'));
    let p50 = |mut v: Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    let (mut direct, mut call, mut record, mut trip) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for i in 0..3300 {
        let t = Instant::now();
        let r = http.get(&url).basic_auth("admin", Some(TOKEN)).send().await.expect("get");
        let _ = r.bytes().await;
        let d = t.elapsed();
        let t = Instant::now();
        let r = g.call_with(&caller("bot"), Some("prod"), "get_job", json!({"job": "app"}), Default::default()).await;
        assert!(r.is_ok(), "{:?}", r.err());
        let c = t.elapsed();
        let t = Instant::now();
        g.record(entry("bot")).await.expect("record");
        let e = t.elapsed();
        let t = Instant::now();
        g.store().execute_raw("UPDATE jgate_meta SET value = value WHERE name = 'none'").await.expect("trip");
        let s = t.elapsed();
        if i >= 300 {
            direct.push(d);
            call.push(c);
            record.push(e);
            trip.push(s);
        }
    }
    eprintln!(
        "p50: GET to the twin {:?}; call path (get_job) {:?}; audit append {:?}; store round trip {:?}",
        p50(direct),
        p50(call),
        p50(record),
        p50(trip)
    );
}
