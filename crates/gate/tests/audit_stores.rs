//! The audit trail surviving its own operations, on both stores (SQLite and PostgreSQL, for
//! real): master-key rotations, the key check value, every column bound to the sealed record, the
//! sealed head (truncation, deletion), the audit file device, administrative changes, and appends
//! whose futures are dropped mid-flight.
//!
//! PostgreSQL comes from JGATE_TEST_POSTGRES (default postgres://postgres@127.0.0.1:5432/test);
//! each test works in a fresh schema (prefix `jga_`, dropped at the end). Under CI an unreachable
//! PostgreSQL fails the tests.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gate::audit::{Phase, Surface, VerifyError};
use gate::audit_device::{self, AuditDevice};
use gate::catalog::Group;
use gate::policy::Level;
use gate::secrets::{MasterKey, SecretsError};
use gate::store::{AuditFilter, Store, StoreError};
use gate::{Admin, Gate, GateError};
use serde_json::json;

mod common;
use common::{Dbs, admin, caller, entry, key_file, load, temp_dir};

async fn open(url: &str, master: MasterKey) -> Gate {
    Gate::open(Store::open(url).await.expect("store"), master, None).await.expect("gate")
}

/// A denied call: one record, no controller needed.
async fn denied(g: &Gate, n: usize) {
    for i in 0..n {
        let r = g.call(&caller("nobody"), "prod", "get_job", json!({"job": format!("j{i}")})).await;
        assert!(matches!(r, Err(GateError::Denied { .. })), "{r:?}");
    }
}

#[tokio::test]
async fn verify_passes_across_master_key_rotations() {
    let dbs = Dbs::new("jga").await;
    for (kind, url) in &dbs.list {
        let kf = key_file();
        let mut g = open(url, load(&kf)).await;
        g.create_agent(&admin(), "bot", "", None).await.expect("agent");
        // A process that opened the store before the rotations keeps appending with its key.
        let stale = open(url, load(&kf)).await;
        denied(&g, 3).await;
        let mut master_b64 = load(&kf).to_base64();
        for round in 0..3 {
            let new = MasterKey::generate();
            let new_b64 = new.to_base64();
            assert_eq!(g.rotate_master_key(&admin(), &new).await.expect("rotate"), 0, "{kind}");
            // This gate is now stale for changes; the rotated store opens only with the new key.
            let err = g.create_agent(&admin(), &format!("late-{round}"), "", None).await.err().map(|e| e.to_string());
            assert!(err.is_some_and(|e| e.contains("reopen")), "{kind}");
            let old = MasterKey::from_base64(gate::gate::expose(&master_b64)).expect("old key");
            assert!(
                matches!(
                    Gate::open(Store::open(url).await.expect("store"), old, None).await,
                    Err(GateError::Secrets(SecretsError::MasterKeyMismatch { .. }))
                ),
                "{kind}: the old key is refused"
            );
            g = open(url, MasterKey::from_base64(gate::gate::expose(&new_b64)).expect("new key")).await;
            denied(&g, 2).await;
            stale.record(entry("stale")).await.expect("a stale process still appends");
            master_b64 = new_b64;
        }
        denied(&g, 4).await;
        let records = g.audit(&AuditFilter::default()).await.expect("audit");
        let n = records.len() as u64;
        assert_eq!(g.verify_audit(&[]).await.expect("verify"), Ok(n), "{kind}");
        let versions: std::collections::BTreeSet<u32> = records.iter().map(|r| r.key_version).collect();
        assert_eq!(versions.into_iter().collect::<Vec<_>>(), [1, 2, 3, 4], "{kind}");
        let rotations: Vec<&str> = records
            .iter()
            .filter(|r| r.entry.operation == "admin.key.rotate" && r.entry.phase == Phase::Outcome)
            .map(|r| r.sentence.as_str())
            .collect();
        assert_eq!(rotations.len(), 3, "{kind}");
        assert!(rotations[2].starts_with("admin (local CLI) rotated the master key (key id "), "{}", rotations[2]);
        assert!(rotations[2].ends_with("; audit key version 4)"), "{}", rotations[2]);
    }
    dbs.cleanup().await;
}

#[tokio::test]
async fn a_wrong_master_key_is_refused_before_anything_is_written() {
    let dbs = Dbs::new("jga").await;
    for (kind, url) in &dbs.list {
        let kf = key_file();
        let g = open(url, load(&kf)).await;
        g.create_agent(&admin(), "bot", "", None).await.expect("agent");
        denied(&g, 2).await;
        let store = Store::open(url).await.expect("store");
        let snapshot = || async {
            (
                store.audit(&AuditFilter::default()).await.expect("audit"),
                store.meta("key_check").await.expect("check"),
                store.meta("audit_head").await.expect("head"),
            )
        };
        let before = snapshot().await;
        assert_eq!(before.0.len(), 4, "{kind}");
        let wrong = MasterKey::generate();
        let wrong_id = wrong.id();
        let err = Gate::open(Store::open(url).await.expect("store"), wrong, None).await.err().map(|e| e.to_string());
        let err = err.unwrap_or_default();
        assert!(
            err.contains(&wrong_id) && err.contains("JGATE_MASTER_KEY") && err.contains("key file"),
            "{kind}: {err}"
        );
        assert_eq!(snapshot().await, before, "{kind}: nothing written");

        // A store from before check values existed (no check value, no stored audit keys): the
        // key is tested against what is there before it is recorded.
        store.execute_raw("DELETE FROM jgate_meta").await.expect("unmark");
        store.execute_raw("DELETE FROM audit_keys").await.expect("unmark");
        let err = Gate::open(Store::open(url).await.expect("store"), MasterKey::generate(), None).await.err();
        assert!(matches!(err, Some(GateError::Secrets(SecretsError::MasterKeyMismatch { .. }))), "{kind}: {err:?}");
        assert_eq!(store.meta("key_check").await.expect("meta"), None, "{kind}: the wrong key was not recorded");
        let g = open(url, load(&kf)).await;
        assert_eq!(g.verify_audit(&[]).await.expect("verify"), Ok(4), "{kind}: version 1 is the derived key");
    }
    dbs.cleanup().await;
}

#[tokio::test]
async fn every_column_is_bound_to_the_sealed_record() {
    let dbs = Dbs::new("jga").await;
    for (kind, url) in &dbs.list {
        let g = open(url, load(&key_file())).await;
        denied(&g, 4).await;
        assert_eq!(g.verify_audit(&[]).await.expect("verify"), Ok(4));
        let edits: [(&str, &str, &str); 9] = [
            ("seq", "seq = seq + 1000 WHERE seq = 2", "seq = seq - 1000 WHERE seq = 1002"),
            ("time_ms", "time_ms = time_ms + 1 WHERE seq = 2", "time_ms = time_ms - 1 WHERE seq = 2"),
            (
                "agent",
                "agent = agent || 'x' WHERE seq = 2",
                "agent = substr(agent, 1, length(agent) - 1) WHERE seq = 2",
            ),
            ("controller", "controller = 'dev' WHERE seq = 2", "controller = 'prod' WHERE seq = 2"),
            ("operation", "operation = 'stop_build' WHERE seq = 2", "operation = 'get_job' WHERE seq = 2"),
            ("phase", "phase = 'read' WHERE seq = 2", "phase = 'denied' WHERE seq = 2"),
            ("allowed", "allowed = 1 - allowed WHERE seq = 2", "allowed = 1 - allowed WHERE seq = 2"),
            (
                "prev_hash",
                "prev_hash = prev_hash || 'x' WHERE seq = 2",
                "prev_hash = substr(prev_hash, 1, 64) WHERE seq = 2",
            ),
            ("hash", "hash = hash || 'x' WHERE seq = 2", "hash = substr(hash, 1, 64) WHERE seq = 2"),
        ];
        for (column, edit, undo) in edits {
            g.store().execute_raw(&format!("UPDATE audit SET {edit}")).await.expect("edit");
            let got = g.verify_audit(&[]).await.expect("verify");
            assert_eq!(got, Err(VerifyError::ColumnEdited { seq: 2, column }), "{kind}: {column}");
            // Filters read the sealed record: the edit neither hides record 2 nor changes it.
            for f in [
                AuditFilter { agent: Some("nobody".into()), ..AuditFilter::default() },
                AuditFilter { allowed: Some(false), ..AuditFilter::default() },
                AuditFilter {
                    operation: Some("get_job".into()),
                    controller: Some("prod".into()),
                    ..AuditFilter::default()
                },
                AuditFilter { since_ms: Some(0), ..AuditFilter::default() },
            ] {
                let got = g.audit(&f).await.expect("filtered");
                assert_eq!(got.iter().map(|r| r.seq).collect::<Vec<_>>(), [1, 2, 3, 4], "{kind}: {column} {f:?}");
            }
            let none = g.audit(&AuditFilter { agent: Some("nobodyx".into()), ..AuditFilter::default() }).await;
            assert!(none.expect("filtered").is_empty(), "{kind}: {column}");
            g.store().execute_raw(&format!("UPDATE audit SET {undo}")).await.expect("undo");
            assert_eq!(g.verify_audit(&[]).await.expect("verify"), Ok(4), "{kind}: {column} restored");
        }
        let limited = g.audit(&AuditFilter { limit: Some(2), after_seq: Some(1), ..AuditFilter::default() }).await;
        assert_eq!(limited.expect("limited").iter().map(|r| r.seq).collect::<Vec<_>>(), [2, 3], "{kind}");
    }
    dbs.cleanup().await;
}

#[tokio::test]
async fn removing_the_last_records_or_all_of_them_is_detected() {
    let dbs = Dbs::new("jga").await;
    for (kind, url) in &dbs.list {
        let kf = key_file();
        let g = open(url, load(&kf)).await;
        denied(&g, 10).await;
        g.store().execute_raw("DELETE FROM audit WHERE seq > 7").await.expect("truncate");
        let err = g.verify_audit(&[]).await.expect("verify");
        assert_eq!(err, Err(VerifyError::HeadAhead { head: 10, last: 7 }), "{kind}");
        assert!(err.unwrap_err().to_string().contains("records were removed from the end"));
        // The next record keeps the removed numbers free: the gap stays visible.
        let r = g.record(entry("bot")).await.expect("append");
        assert_eq!(r.seq, 11, "{kind}");
        assert_eq!(g.verify_audit(&[]).await.expect("v"), Err(VerifyError::Missing { after: 7, next: 11 }), "{kind}");

        g.store().execute_raw("DELETE FROM audit").await.expect("delete all");
        let err = g.verify_audit(&[]).await.expect("verify").unwrap_err();
        assert_eq!(err, VerifyError::HeadAhead { head: 11, last: 0 }, "{kind}");
        assert!(err.to_string().starts_with("the log is empty but its sealed head says 11 records"), "{err}");

        // Deleting the head too: the check value is evidence that the store was set up.
        g.store().execute_raw("DELETE FROM jgate_meta WHERE name = 'audit_head'").await.expect("delete head");
        assert_eq!(g.verify_audit(&[]).await.expect("verify"), Err(VerifyError::HeadMissing), "{kind}");
        // Reopening does not quietly seal a new head over the evidence.
        let reopened = open(url, load(&kf)).await;
        assert_eq!(reopened.verify_audit(&[]).await.expect("verify"), Err(VerifyError::HeadMissing), "{kind}");
        // Appends stop (the evidence is kept) until an administrator reseals.
        assert!(matches!(g.record(entry("bot")).await, Err(StoreError::AuditHead(_))), "{kind}");
        let r = g.call(&caller("nobody"), "prod", "get_job", json!({"job": "x"})).await;
        assert!(matches!(r, Err(GateError::Denied { .. })), "{kind}");
        let head = g.reseal_audit_head(&admin()).await.expect("reseal");
        assert_eq!(head.seq, 0, "{kind}");
        let records = g.audit(&AuditFilter::default()).await.expect("audit");
        assert_eq!(records.len(), 1, "{kind}");
        assert_eq!(
            records[0].sentence,
            "admin (local CLI) resealed the audit head at record 0, accepting the log as it stood"
        );
        assert_eq!(g.verify_audit(&[]).await.expect("verify"), Ok(1), "{kind}");

        // A forged head is refused for appends and reported.
        g.store()
            .execute_raw(
                "UPDATE jgate_meta SET value = REPLACE(value, '\"seq\":1', '\"seq\":0') WHERE name = 'audit_head'",
            )
            .await
            .expect("forge");
        assert_eq!(g.verify_audit(&[]).await.expect("verify"), Err(VerifyError::HeadForged), "{kind}");
        assert!(matches!(g.record(entry("bot")).await, Err(StoreError::AuditHead(_))), "{kind}");
    }
    dbs.cleanup().await;
}

#[tokio::test]
async fn checkpoints_are_sealed_automatically() {
    let dbs = Dbs::new("jga").await;
    for (kind, url) in &dbs.list {
        let g = open(url, load(&key_file())).await;
        for _ in 0..gate::audit::CHECKPOINT_EVERY + 5 {
            g.record(entry("bot")).await.expect("append");
        }
        let cps = g.store().audit_checkpoints().await.expect("checkpoints");
        assert_eq!(cps.iter().map(|c| c.seq).collect::<Vec<_>>(), [gate::audit::CHECKPOINT_EVERY], "{kind}");
        assert!(g.verify_audit(&[]).await.expect("verify").is_ok(), "{kind}");
        g.store().execute_raw("UPDATE audit_checkpoints SET mac = 'x' || mac").await.expect("forge");
        let seq = gate::audit::CHECKPOINT_EVERY;
        assert_eq!(g.verify_audit(&[]).await.expect("v"), Err(VerifyError::CheckpointForged { seq }), "{kind}");
    }
    dbs.cleanup().await;
}

#[tokio::test]
async fn the_audit_file_survives_a_wiped_database() {
    let dbs = Dbs::new("jga").await;
    for (kind, url) in &dbs.list {
        let kf = key_file();
        let path = temp_dir("file").join("audit.jsonl");
        let device = AuditDevice::open(&path.display().to_string()).expect("device");
        let g = Gate::open(Store::open(url).await.expect("store"), load(&kf), Some(device)).await.expect("gate");
        g.create_agent(&admin(), "bot", "", None).await.expect("agent");
        denied(&g, 3).await;
        let records = g.audit(&AuditFilter::default()).await.expect("audit");
        let text = std::fs::read_to_string(&path).expect("file");
        assert_eq!(text.lines().count(), records.len(), "{kind}: one line per record");
        assert_eq!(audit_device::read_file(&path).expect("read"), records, "{kind}: the same records");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777, 0o600, "{kind}");
        }
        let (n, report) = g.verify_audit_file(&[], &path).await.expect("verify").expect("ok");
        assert_eq!((n, report.file_records, report.missing_from_file), (5, 5, 0), "{kind}");

        // A record deleted from the database is still in the file.
        g.store().execute_raw("DELETE FROM audit WHERE seq = 3").await.expect("delete");
        let got = g.verify_audit_file(&[], &path).await.expect("verify");
        assert_eq!(got, Err(VerifyError::FileRecordMissing { seq: 3 }), "{kind}");

        // A line edited in the file does not verify on its own.
        let edited = path.with_extension("edited");
        std::fs::write(&edited, text.replacen("\"nobody\"", "\"somebody\"", 1)).expect("write");
        let got = g.verify_audit_file(&[], &edited).await.expect("verify");
        assert!(matches!(got, Err(VerifyError::FileRecordForged { .. })), "{kind}: {got:?}");
        let garbage = path.with_extension("garbage");
        std::fs::write(&garbage, "{\"seq\": 1}\n").expect("write");
        let err = g.verify_audit_file(&[], &garbage).await.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("line 1"), "{kind}: {err}");
    }
    // The whole SQLite database wiped: the file still holds the trail, and a fresh store opened
    // with the same master key reports every record as deleted.
    let dir = temp_dir("wiped");
    let (db, path, kf) = (dir.join("jgate.db").display().to_string(), dir.join("audit.jsonl"), key_file());
    let g = Gate::open(
        Store::open(&db).await.expect("store"),
        load(&kf),
        Some(AuditDevice::open(&path.display().to_string()).expect("device")),
    )
    .await
    .expect("gate");
    denied(&g, 3).await;
    g.store().close().await;
    drop(g);
    // The audit writer's thread closes its own connection once it sees the gate gone; that last
    // close checkpoints and deletes the WAL *by name*, so wiping (and recreating) the files
    // before it would let it delete the fresh store's WAL.
    let wal = format!("{db}-wal");
    let closing = Instant::now();
    while Path::new(&wal).exists() && closing.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{db}{suffix}"));
    }
    let fresh = open(&db, load(&kf)).await;
    assert_eq!(fresh.verify_audit(&[]).await.expect("verify"), Ok(0));
    let got = fresh.verify_audit_file(&[], &path).await.expect("verify");
    assert_eq!(got, Err(VerifyError::FileRecordMissing { seq: 1 }));
    assert_eq!(audit_device::read_file(&path).expect("read").len(), 3);
}

/// Concurrent records are committed in batches (group commit) and reach the audit file batch by
/// batch with one fsync each: every record once, in chain order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_records_reach_the_audit_file_in_chain_order() {
    let dbs = Dbs::new("jga").await;
    for (kind, url) in &dbs.list {
        let path = temp_dir("batch").join("audit.jsonl");
        let device = AuditDevice::open(&path.display().to_string()).expect("device");
        let g = Arc::new(
            Gate::open(Store::open(url).await.expect("store"), load(&key_file()), Some(device)).await.expect("gate"),
        );
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..64 {
            let g = g.clone();
            tasks.spawn(async move { g.record(entry("bot")).await.map(|r| r.seq) });
        }
        let mut seqs = Vec::new();
        while let Some(r) = tasks.join_next().await {
            seqs.push(r.expect("task").expect("record"));
        }
        assert!(g.audit_batches() < 64, "{kind}: records were committed in batches ({} batches)", g.audit_batches());
        let in_file: Vec<i64> = audit_device::read_file(&path).expect("read").iter().map(|r| r.seq).collect();
        seqs.sort_unstable();
        assert_eq!(in_file, seqs, "{kind}: every record once, in chain order");
        let (n, report) = g.verify_audit_file(&[], &path).await.expect("verify").expect("ok");
        assert_eq!((n, report.file_records, report.missing_from_file), (64, 64, 0), "{kind}");
    }
    dbs.cleanup().await;
}

/// Listing reads the log page by page: all of it in order, or the newest matches first, the
/// same across page boundaries; the filter applies to the sealed record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listings_page_through_a_long_log() {
    let dbs = Dbs::new("jga").await;
    let total = gate::store::AUDIT_PAGE as usize + 300;
    for (kind, url) in &dbs.list {
        let g =
            Arc::new(Gate::open(Store::open(url).await.expect("store"), load(&key_file()), None).await.expect("gate"));
        let mut tasks = tokio::task::JoinSet::new();
        for t in 0..32 {
            let g = g.clone();
            tasks.spawn(async move {
                for i in (t..total).step_by(32) {
                    // Every tenth record is another agent's.
                    let agent = if i % 10 == 0 { "rare" } else { "bot" };
                    g.record(entry(agent)).await.expect("record");
                }
            });
        }
        while let Some(r) = tasks.join_next().await {
            r.expect("task");
        }
        let all = g.audit(&AuditFilter::default()).await.expect("audit");
        assert_eq!(all.len(), total, "{kind}");
        assert!(all.windows(2).all(|w| w[0].seq + 1 == w[1].seq), "{kind}: in order, none missing");
        let rare = AuditFilter { agent: Some("rare".into()), ..AuditFilter::default() };
        let rare_all = g.audit(&rare).await.expect("audit");
        assert_eq!(rare_all.len(), total.div_ceil(10), "{kind}");
        let five = AuditFilter { limit: Some(5), after_seq: Some(10), ..AuditFilter::default() };
        let limited: Vec<i64> = g.audit(&five).await.expect("audit").iter().map(|r| r.seq).collect();
        assert_eq!(limited, vec![11, 12, 13, 14, 15], "{kind}");

        // Newest first, across the page boundary, with a cursor for the next page.
        let newest = g.audit_newest(&AuditFilter { limit: Some(150), ..rare.clone() }, None).await.expect("newest");
        let expected: Vec<i64> = rare_all.iter().rev().take(150).map(|r| r.seq).collect();
        assert_eq!(newest.iter().map(|r| r.seq).collect::<Vec<_>>(), expected, "{kind}");
        let before = newest.last().map(|r| r.seq);
        let next = g.audit_newest(&AuditFilter { limit: Some(150), ..rare.clone() }, before).await.expect("newest");
        let expected: Vec<i64> = rare_all.iter().rev().skip(150).take(150).map(|r| r.seq).collect();
        assert_eq!(next.iter().map(|r| r.seq).collect::<Vec<_>>(), expected, "{kind}");
        // Nothing newer than the newest: a future `since` finds nothing (and stops early).
        let future = AuditFilter { since_ms: Some(gate::store::now_ms() + 3_600_000), ..AuditFilter::default() };
        assert!(g.audit_newest(&future, None).await.expect("newest").is_empty(), "{kind}");

        // An edited agent column neither hides a record from the filter nor adds one to it.
        let victim = rare_all[3].seq;
        g.store().execute_raw(&format!("UPDATE audit SET agent = 'bot' WHERE seq = {victim}")).await.expect("edit");
        let again = g.audit_newest(&AuditFilter { limit: Some(10_000), ..rare.clone() }, None).await.expect("newest");
        assert!(again.iter().any(|r| r.seq == victim), "{kind}: the sealed record still matches");
        assert_eq!(again.len(), rare_all.len(), "{kind}");
        g.store().execute_raw(&format!("UPDATE audit SET agent = 'rare' WHERE seq = {victim}")).await.expect("undo");

        // Verification reads the log page by page too: it all verifies, and a gap in the second
        // page is found there.
        assert_eq!(g.verify_audit(&[]).await.expect("verify"), Ok(total as u64), "{kind}");
        let gap = gate::store::AUDIT_PAGE + 100;
        g.store().execute_raw(&format!("DELETE FROM audit WHERE seq = {gap}")).await.expect("delete");
        let got = g.verify_audit(&[]).await.expect("verify");
        assert_eq!(got, Err(VerifyError::Missing { after: gap - 1, next: gap + 1 }), "{kind}");
    }
    dbs.cleanup().await;
}

/// Two processes appending in turn: each one's remembered link goes stale whenever the other
/// appended, and the chain stays one chain (no gap, no fork, every record verifies).
#[tokio::test]
async fn two_processes_appending_in_turn_keep_one_chain() {
    let dbs = Dbs::new("jga").await;
    for (kind, url) in &dbs.list {
        let kf = key_file();
        let a = Gate::open(Store::open(url).await.expect("store"), load(&kf), None).await.expect("gate a");
        let b = Gate::open(Store::open(url).await.expect("store"), load(&kf), None).await.expect("gate b");
        let mut seqs = Vec::new();
        for i in 0..30 {
            // Runs of one, two and three appends by the same process.
            let g = if (i / 3) % 2 == 0 || i % 5 == 0 { &a } else { &b };
            seqs.push(g.record(entry("bot")).await.expect("record").seq);
        }
        assert_eq!(seqs, (1..=30).collect::<Vec<i64>>(), "{kind}: one numbering");
        assert_eq!(a.verify_audit(&[]).await.expect("verify"), Ok(30), "{kind}");
        // A head resealed by the other process is read again, not assumed.
        b.reseal_audit_head(&admin()).await.expect("reseal");
        let next = a.record(entry("bot")).await.expect("record").seq;
        let all = a.audit(&AuditFilter::default()).await.expect("audit");
        assert_eq!(all.last().map(|r| r.seq), Some(next), "{kind}");
        assert_eq!(b.verify_audit(&[]).await.expect("verify"), Ok(all.len() as u64), "{kind}");
    }
    dbs.cleanup().await;
}

#[tokio::test]
async fn nothing_proceeds_when_the_audit_file_cannot_take_the_record() {
    if !Path::new("/dev/full").exists() {
        eprintln!("SKIPPING: no /dev/full to simulate a full disk");
        return;
    }
    let dbs = Dbs::new("jga").await;
    for (kind, url) in &dbs.list {
        let device = AuditDevice::open("/dev/full").expect("device");
        let g =
            Gate::open(Store::open(url).await.expect("store"), load(&key_file()), Some(device)).await.expect("gate");
        let err = g.record(entry("bot")).await;
        assert!(matches!(err, Err(StoreError::AuditDevice { .. })), "{kind}: {err:?}");
        // An administrative change is refused and not made.
        let err = g.create_agent(&admin(), "bot", "", None).await;
        assert!(matches!(err, Err(GateError::AuditUnavailable(_))), "{kind}: {err:?}");
        assert!(g.store().agent("bot").await.expect("agent").is_none(), "{kind}: the agent was not created");
    }
    dbs.cleanup().await;
}

#[tokio::test]
async fn administrative_changes_read_as_sentences() {
    let dbs = Dbs::new("jga").await;
    for (kind, url) in &dbs.list {
        let g = open(url, load(&key_file())).await;
        let alice = Admin::new("alice", Surface::Cli);
        let (_, key) = g.create_agent(&alice, "release-bot", "deploys", None).await.expect("agent");
        let grant = g
            .grant(&alice, "release-bot", Group::Build, Level::Full, None, Some("release/**"), vec![])
            .await
            .expect("grant");
        let extra = g.new_key(&alice, "release-bot", None).await.expect("key");
        assert_eq!(g.revoke(&alice, "release-bot", Some(&extra.key_id)).await.expect("revoke"), 1);
        assert!(g.remove_grant(&alice, grant.id).await.expect("ungrant"));
        assert!(!g.remove_grant(&alice, 9999).await.expect("ungrant"), "nothing to remove");
        assert!(!g.remove_controller(&alice, "nope").await.expect("remove"), "nothing to remove");
        // A change that fails is recorded as failed, not as done.
        g.store().execute_raw("ALTER TABLE grants RENAME TO grants_gone").await.expect("break");
        let err = g.grant(&alice, "release-bot", Group::Status, Level::Read, None, None, vec![]).await;
        assert!(err.is_err(), "{kind}");
        g.store().execute_raw("ALTER TABLE grants_gone RENAME TO grants").await.expect("restore");

        let records = g.audit(&AuditFilter { agent: Some("alice".into()), ..AuditFilter::default() }).await.expect("a");
        let outcomes: Vec<&str> =
            records.iter().filter(|r| r.entry.phase == Phase::Outcome).map(|r| r.sentence.as_str()).collect();
        let want = [
            format!("alice (local CLI) created agent release-bot with key {}", key.key_id),
            format!(
                "alice (local CLI) granted release-bot Trigger a build: full use on release/** (grant {})",
                grant.id
            ),
            format!("alice (local CLI) issued key {} to agent release-bot", extra.key_id),
            format!("alice (local CLI) revoked key {} of agent release-bot", extra.key_id),
            format!(
                "alice (local CLI) removed grant {} (Trigger a build: full use on release/**) from release-bot",
                grant.id
            ),
        ];
        assert_eq!(&outcomes[..5], want.iter().map(String::as_str).collect::<Vec<_>>(), "{kind}");
        assert_eq!(outcomes.len(), 6, "{kind}: {outcomes:#?}");
        assert!(
            outcomes[5].starts_with(
                "alice (local CLI) tried to grant release-bot Read job and build status: read on all jobs, but it failed: "
            ),
            "{kind}: {}",
            outcomes[5]
        );
        assert!(records.iter().all(|r| r.entry.surface == Surface::Cli && r.entry.operation.starts_with("admin.")));
        assert!(!records.iter().any(|r| r.sentence.contains(gate::gate::expose(&key.secret))), "no key material");
        assert!(g.verify_audit(&[]).await.expect("verify").is_ok(), "{kind}");
    }
    dbs.cleanup().await;
}

/// Appends whose futures are dropped at any point (timeouts of a few microseconds, `select!`
/// losing to another branch) never leave a transaction open: the next append goes through at
/// once and the chain verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dropped_appends_never_leave_the_store_locked() {
    let dbs = Dbs::new("jga").await;
    for (kind, url) in &dbs.list {
        let kf = key_file();
        let g = Arc::new(open(url, load(&kf)).await);
        let mut tasks = Vec::new();
        for t in 0..16u64 {
            let g = g.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..12u64 {
                    let wait = Duration::from_micros((t * 37 + i * 101) % 900);
                    if i % 2 == 0 {
                        let _ = tokio::time::timeout(wait, g.record(entry("bot"))).await;
                    } else {
                        tokio::select! {
                            _ = g.record(entry("bot")) => {}
                            _ = tokio::time::sleep(wait) => {}
                        }
                    }
                }
            }));
        }
        for t in tasks {
            tokio::time::timeout(Duration::from_secs(120), t).await.expect("in time").expect("task");
        }
        // Every connection of the pool must be free of a leftover transaction: as many
        // appends as connections in a row, each quickly.
        for _ in 0..10 {
            let r = tokio::time::timeout(Duration::from_secs(5), g.record(entry("bot"))).await;
            assert!(matches!(r, Ok(Ok(_))), "{kind}: the store is still locked: {r:?}");
        }
        // Another process (another pool) is not blocked either.
        let other = open(url, load(&kf)).await;
        let r = tokio::time::timeout(Duration::from_secs(5), other.record(entry("other"))).await;
        assert!(matches!(r, Ok(Ok(_))), "{kind}: {r:?}");
        let records = g.audit(&AuditFilter::default()).await.expect("audit");
        assert!(records.len() >= 10, "{kind}");
        assert_eq!(g.verify_audit(&[]).await.expect("verify"), Ok(records.len() as u64), "{kind}");
    }
    dbs.cleanup().await;
}
