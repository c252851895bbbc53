//! Rate limits and quotas (issue #13) on both stores, PostgreSQL for real: an agent's calls per
//! minute and triggers per hour, a grant's calls per hour; two gates on one database stand for
//! two replicas and share one budget; an agent without limits writes no counter; refusals are
//! audited as denied with a plain sentence. The windows' clock is fixed per test (advanced by
//! hand to see a reset), so no test depends on when it runs.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use gate::audit::{Phase, Surface};
use gate::catalog::Group;
use gate::limits::{AgentLimits, MINUTE_MS};
use gate::policy::Level;
use gate::secrets::MasterKey;
use gate::store::{AuditFilter, Store};
use gate::{Admin, Caller, Gate, GateError, Limits};
use jenkins_twin::TwinServer;
use serde_json::json;

mod common;
use common::{Dbs, key_file};

const TOKEN: &str = "11eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee";

const SCENARIO: &str = r#"
[controller]
quiet_period = 0
[[folders]]
path = "release"
[[jobs]]
path = "release/deploy"
script = "echo deploying"
[[jobs]]
path = "free"
script = "echo free"
[[jobs]]
path = "other"
script = "echo other"
"#;

/// The windows' clock of a test: fixed 10 s into an hour (so the minute and the hour windows
/// cannot end mid-test), moved on by hand.
#[derive(Clone)]
struct TestClock(Arc<AtomicI64>);

impl TestClock {
    fn new() -> TestClock {
        let now = gate::store::now_ms();
        TestClock(Arc::new(AtomicI64::new(now - now % 3_600_000 + 10_000)))
    }
    fn advance(&self, ms: i64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
    fn clock(&self) -> gate::limits::Clock {
        let t = self.0.clone();
        Arc::new(move || t.load(Ordering::SeqCst))
    }
}

struct Fixture {
    _server: TwinServer,
    url: String,
    key: std::path::PathBuf,
    clock: TestClock,
}

/// A twin, a controller `prod`, agents `bot` and `bot2`, each with: status read everywhere,
/// build full on `free` and on `other` (separate grants, no limits).
async fn fixture(url: String) -> Fixture {
    let (_twin, server) =
        jenkins_twin::start(SCENARIO, &[("admin".into(), "admin".into(), TOKEN.into())]).await.expect("twin");
    let key = key_file();
    let clock = TestClock::new();
    let g = open(&url, &key, &clock).await;
    let a = Admin::local_cli();
    g.add_controller(&a, common::twin_controller("prod", &server, TOKEN), false).await.expect("controller");
    for agent in ["bot", "bot2"] {
        g.create_agent(&a, agent, "", None).await.expect("agent");
        g.grant(&a, agent, Group::Status, Level::Read, None, None, vec![]).await.expect("grant");
        g.grant(&a, agent, Group::Build, Level::Full, None, Some("free"), vec![]).await.expect("grant");
        g.grant(&a, agent, Group::Build, Level::Full, None, Some("other"), vec![]).await.expect("grant");
    }
    Fixture { _server: server, url, key, clock }
}

async fn open(url: &str, key: &std::path::Path, clock: &TestClock) -> Arc<Gate> {
    let store = Store::open(url).await.expect("store");
    let (master, _) = MasterKey::load_or_create("JGATE_TEST_UNSET_MASTER_KEY", key).expect("master key");
    let limits = Limits { max_in_flight_per_agent: 64, ..Limits::default() };
    Arc::new(Gate::open(store, master, None).await.expect("gate").with_limits(limits).with_limit_clock(clock.clock()))
}

fn agent(name: &str) -> Caller {
    Caller { agent: name.into(), key_id: None, surface: Surface::Mcp, client_addr: None, request_id: "t".into() }
}

fn ana() -> Admin {
    Admin::new("ana", Surface::Cli)
}

fn calls(n: u32) -> AgentLimits {
    AgentLimits { calls_per_minute: Some(n), triggers_per_hour: None }
}

async fn read(g: &Gate, who: &str) -> Result<serde_json::Value, GateError> {
    g.call(&agent(who), "prod", "get_job", json!({"job": "free"})).await
}

async fn trigger(g: &Gate, who: &str, job: &str) -> Result<serde_json::Value, GateError> {
    g.call(&agent(who), "prod", "trigger_build", json!({"job": job})).await
}

/// How many of `n` reads by `who` pass before the first refusal, and that refusal.
async fn reads_until_refused(g: &Gate, who: &str, n: usize) -> (usize, Option<GateError>) {
    for i in 0..n {
        match read(g, who).await {
            Ok(_) => {}
            Err(e @ GateError::Limited { .. }) => return (i, Some(e)),
            Err(e) => panic!("read {i} of {who} failed: {e}"),
        }
    }
    (n, None)
}

async fn last_record_of(g: &Gate, who: &str) -> gate::audit::Record {
    let f = AuditFilter { agent: Some(who.into()), ..AuditFilter::default() };
    g.store().audit(&f).await.expect("audit").pop().expect("a record")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn calls_per_minute_refuse_past_the_limit_until_the_window_resets_or_the_limit_is_cleared() {
    let dbs = Dbs::new("jglim").await;
    for (kind, url) in dbs.list.clone() {
        let f = fixture(url).await;
        let g = open(&f.url, &f.key, &f.clock).await;
        // 45 a minute: this process leases 3 at a time, and spends every lease before a refusal.
        assert!(g.set_agent_limits(&ana(), "bot", calls(45)).await.expect("limits"), "{kind}");
        assert!(!g.set_agent_limits(&ana(), "bot", calls(45)).await.expect("same limits"), "{kind}: no change");
        assert_eq!(g.agent_limits("bot").await.expect("limits"), calls(45), "{kind}");

        let (passed, refusal) = reads_until_refused(&g, "bot", 60).await;
        assert_eq!(passed, 45, "{kind}");
        let Some(GateError::Limited { message, fix, retry_after_secs }) = refusal else { panic!("{kind}: no refusal") };
        assert_eq!(
            message, "refused: bot's limit of 45 calls per minute is reached; the next is allowed in 50 s",
            "{kind}"
        );
        assert!(fix.contains("jgate agent limits bot --calls-per-minute"), "{kind}: {fix}");
        assert_eq!(retry_after_secs, 50, "{kind}");

        // Audited as denied, with the sentence.
        let r = last_record_of(&g, "bot").await;
        assert_eq!((r.entry.phase, r.entry.allowed), (Phase::Denied, false), "{kind}");
        assert_eq!(
            r.sentence,
            "bot was denied reading job free on prod: refused: bot's limit of 45 calls per minute is reached; the next is allowed in 50 s",
            "{kind}"
        );

        // Another agent is not affected.
        let (passed, refusal) = reads_until_refused(&g, "bot2", 60).await;
        assert_eq!((passed, refusal.is_none()), (60, true), "{kind}");

        // The next minute: allowed again.
        f.clock.advance(MINUTE_MS);
        assert!(read(&g, "bot").await.is_ok(), "{kind}");
        let (passed, _) = reads_until_refused(&g, "bot", 60).await;
        assert_eq!(passed, 44, "{kind}: 45 in the new minute, one used above");

        // Cleared: no limit at all.
        assert!(g.set_agent_limits(&ana(), "bot", AgentLimits::default()).await.expect("clear"), "{kind}");
        let (passed, refusal) = reads_until_refused(&g, "bot", 60).await;
        assert_eq!((passed, refusal.is_none()), (60, true), "{kind}");

        let sentences: Vec<String> =
            g.store().audit(&AuditFilter::default()).await.expect("audit").into_iter().map(|r| r.sentence).collect();
        assert!(
            sentences.contains(
                &"ana (local CLI) set the rate limits of agent bot to 45 calls per minute (before: no limits)".into()
            ),
            "{kind}"
        );
        assert!(
            sentences.contains(
                &"ana (local CLI) set the rate limits of agent bot to no limits (before: 45 calls per minute)".into()
            ),
            "{kind}"
        );
        // A lowered limit applies at once, whatever this process leased under the old one.
        g.set_agent_limits(&ana(), "bot", calls(1000)).await.expect("limits");
        read(&g, "bot").await.expect("takes 1");
        read(&g, "bot").await.expect("leases 50");
        g.set_agent_limits(&ana(), "bot", calls(3)).await.expect("limits");
        assert!(matches!(read(&g, "bot").await, Err(GateError::Limited { .. })), "{kind}");
        // Nothing is ever allowed at 0: that is what disabling is for.
        assert!(matches!(g.set_agent_limits(&ana(), "bot", calls(0)).await, Err(GateError::Invalid(_))), "{kind}");
    }
    dbs.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_share_one_calls_per_minute_budget() {
    let dbs = Dbs::new("jglim").await;
    for (kind, url) in dbs.list.clone() {
        let f = fixture(url).await;
        let a = open(&f.url, &f.key, &f.clock).await;
        let b = open(&f.url, &f.key, &f.clock).await;
        // 40 a minute: leases of 2. The limit set through A reaches B through the store (within
        // its one-second cache; B has not read bot yet).
        a.set_agent_limits(&ana(), "bot", calls(40)).await.expect("limits");
        let mut allowed = 0;
        for i in 0..100 {
            let g = if i % 2 == 0 { &a } else { &b };
            match read(g, "bot").await {
                Ok(_) => allowed += 1,
                Err(GateError::Limited { .. }) => {}
                Err(e) => panic!("{kind}: {e}"),
            }
        }
        // Never more than the limit; a refusal may come early by what the other process leased
        // and did not use: at least 40 − (2 − 1) × (2 − 1).
        assert!((39..=40).contains(&allowed), "{kind}: {allowed} allowed");
        let used = a.limits_used("bot").await.expect("used").0;
        assert!(used <= 40, "{kind}: {used} leased");
    }
    dbs.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn short_lived_processes_use_the_whole_budget() {
    let dbs = Dbs::new("jglim").await;
    for (kind, url) in dbs.list.clone() {
        let f = fixture(url).await;
        // 21 a minute: leases of 2, but a process making one call (`jgate call`) takes one.
        open(&f.url, &f.key, &f.clock).await.set_agent_limits(&ana(), "bot", calls(21)).await.expect("limits");
        for i in 0..21 {
            let g = open(&f.url, &f.key, &f.clock).await;
            read(&g, "bot").await.unwrap_or_else(|e| panic!("{kind}: call {i}: {e}"));
        }
        let g = open(&f.url, &f.key, &f.clock).await;
        assert!(matches!(read(&g, "bot").await, Err(GateError::Limited { .. })), "{kind}");
    }
    dbs.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_triggers_on_two_replicas_never_pass_the_hourly_limit() {
    let dbs = Dbs::new("jglim").await;
    for (kind, url) in dbs.list.clone() {
        let f = fixture(url).await;
        let a = open(&f.url, &f.key, &f.clock).await;
        let b = open(&f.url, &f.key, &f.clock).await;
        a.set_agent_limits(&ana(), "bot", AgentLimits { calls_per_minute: None, triggers_per_hour: Some(3) })
            .await
            .expect("limits");
        let mut tasks = Vec::new();
        for i in 0..12 {
            let g = if i % 2 == 0 { a.clone() } else { b.clone() };
            let job = if i % 3 == 0 { "other" } else { "free" };
            tasks.push(tokio::spawn(async move { trigger(&g, "bot", job).await }));
        }
        let (mut limited, mut passed) = (0, 0);
        for t in tasks {
            match t.await.expect("join") {
                Err(GateError::Limited { message, .. }) => {
                    assert!(message.starts_with("refused: bot's limit of 3 triggers per hour is reached"), "{message}");
                    limited += 1;
                }
                Ok(_) => passed += 1,
                Err(e) => panic!("{kind}: a trigger failed otherwise: {e}"),
            }
        }
        assert_eq!((passed, limited), (3, 9), "{kind}");
        // Reads are not triggers; another agent's triggers are its own.
        assert!(read(&a, "bot").await.is_ok(), "{kind}");
        assert!(trigger(&b, "bot2", "free").await.is_ok(), "{kind}");
        // The next hour: allowed again.
        f.clock.advance(3_600_000);
        assert!(trigger(&a, "bot", "free").await.is_ok(), "{kind}");
    }
    dbs.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_grants_hourly_limit_counts_only_the_calls_it_decided() {
    let dbs = Dbs::new("jglim").await;
    for (kind, url) in dbs.list.clone() {
        let f = fixture(url).await;
        let g = open(&f.url, &f.key, &f.clock).await;
        let capped = g
            .grant_limited(&ana(), "bot", Group::Build, Level::Full, None, Some("release/**"), vec![], false, Some(2))
            .await
            .expect("grant");
        assert_eq!(capped.max_per_hour, Some(2));
        assert!(capped.describe().contains("at most 2 calls per hour"), "{}", capped.describe());
        for _ in 0..2 {
            trigger(&g, "bot", "release/deploy").await.expect("within the grant's limit");
        }
        let err = trigger(&g, "bot", "release/deploy").await.expect_err("over the grant's limit");
        let GateError::Limited { message, fix, .. } = err else { panic!("{kind}: {err}") };
        assert!(
            message.starts_with(&format!("refused: grant {} (Trigger a build: full use on release/**", capped.id)),
            "{kind}: {message}"
        );
        assert!(
            message.contains("allows 2 calls per hour and they are used; the next is allowed in 60 min"),
            "{message}"
        );
        assert!(fix.contains("--max-per-hour N"), "{fix}");
        let r = last_record_of(&g, "bot").await;
        assert_eq!((r.entry.phase, r.entry.grant), (Phase::Denied, Some(capped.id)), "{kind}");
        // Calls decided by other grants do not count: triggers of `free`, reads of the job.
        for _ in 0..3 {
            trigger(&g, "bot", "free").await.expect("another grant's trigger");
            g.call(&agent("bot"), "prod", "get_job", json!({"job": "release/deploy"})).await.expect("a read");
        }
        // Another agent's grant on the same jobs is its own.
        g.grant_limited(&ana(), "bot2", Group::Build, Level::Full, None, Some("release/**"), vec![], false, Some(2))
            .await
            .expect("grant");
        trigger(&g, "bot2", "release/deploy").await.expect("bot2's own grant");
        // An off grant cannot have a cap, and a cap of 0 is refused.
        let a = ana();
        let off = g.grant_limited(&a, "bot", Group::Build, Level::Off, None, Some("x"), vec![], false, Some(2));
        assert!(matches!(off.await, Err(GateError::Invalid(_))), "{kind}");
        let zero = g.grant_limited(&a, "bot", Group::Build, Level::Full, None, Some("x"), vec![], false, Some(0));
        assert!(matches!(zero.await, Err(GateError::Invalid(_))), "{kind}");
    }
    dbs.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_agent_without_limits_writes_no_counter() {
    let dbs = Dbs::new("jglim").await;
    for (kind, url) in dbs.list.clone() {
        let f = fixture(url).await;
        let g = open(&f.url, &f.key, &f.clock).await;
        let store = g.store().clone();
        for _ in 0..30 {
            read(&g, "bot").await.expect("read");
        }
        trigger(&g, "bot", "free").await.expect("trigger");
        assert_eq!(store.limit_counter_rows().await.expect("rows"), 0, "{kind}");
        // The same burst with a limit does write counters (so the check above can fail).
        g.set_agent_limits(&ana(), "bot", AgentLimits { calls_per_minute: Some(1000), triggers_per_hour: Some(10) })
            .await
            .expect("limits");
        for _ in 0..30 {
            read(&g, "bot").await.expect("read");
        }
        trigger(&g, "bot", "free").await.expect("trigger");
        assert_eq!(store.limit_counter_rows().await.expect("rows"), 2, "{kind}: one per limit and window");
        assert_eq!(
            g.limits_used("bot").await.expect("used"),
            (51, 1),
            "{kind}: the first call alone, then one lease of 50 for 29 reads and the trigger; one trigger"
        );
        // Windows that ended are pruned by the next process that counts (in the background).
        f.clock.advance(3_600_000);
        read(&g, "bot").await.expect("read");
        let mut rows = 0;
        for _ in 0..100 {
            rows = store.limit_counter_rows().await.expect("rows");
            if rows == 1 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert_eq!(rows, 1, "{kind}: only this minute's");
    }
    dbs.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_store_that_cannot_count_fails_the_call_closed() {
    let dbs = Dbs::new("jglim").await;
    for (kind, url) in dbs.list.clone() {
        let f = fixture(url).await;
        let g = open(&f.url, &f.key, &f.clock).await;
        g.set_agent_limits(&ana(), "bot", calls(5)).await.expect("limits");
        read(&g, "bot").await.expect("read");
        g.store().close().await;
        match read(&g, "bot").await {
            Err(e @ GateError::AuditUnavailable(_)) => {
                assert!(e.to_string().contains("store is unavailable"), "{kind}: {e}")
            }
            other => panic!("{kind}: {other:?}"),
        }
    }
    dbs.cleanup().await;
}
