//! The agent lifecycle on both stores (SQLite and PostgreSQL, for real) and on the twin: names,
//! disable/enable, delete (with and without grants), key rotation with and without an overlap,
//! key expiry, changes seen by a second gate on the same store within a second, job patterns that
//! could never match, `policy::explain`/`access_matrix` against `policy::decide`, and listings
//! for an agent scoped to one folder.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gate::catalog::{self, Group, Target};
use gate::policy::{self, Grant, Level, Request};
use gate::store::{AgentDeletion, AuditFilter, Store};
use gate::{Gate, GateError};
use jenkins_twin::{Twin, TwinServer};
use serde_json::{Value, json};

mod common;
use common::{Dbs, admin, caller, key_file, load};

const TOKEN: &str = "11cccccccccccccccccccccccccccccccc";

const SCENARIO: &str = r#"
[controller]
quiet_period = 0
[[folders]]
path = "team"
[[folders]]
path = "secret"
[[jobs]]
path = "team/api"
label = "nowhere"
script = "echo api"
[[jobs]]
path = "team/web"
script = "echo web"
[[jobs]]
path = "secret/vault"
label = "nowhere"
script = "echo vault"
[[jobs]]
path = "other"
label = "nowhere"
script = "echo other"
[[queue]]
job = "team/api"
[[queue]]
job = "secret/vault"
[[queue]]
job = "other"
"#;

async fn twin() -> (Arc<Twin>, TwinServer) {
    jenkins_twin::start(SCENARIO, &[("admin".into(), "admin".into(), TOKEN.into())]).await.expect("twin")
}

async fn open(url: &str, kf: &Path) -> Gate {
    Gate::open(Store::open(url).await.expect("store"), load(kf), None).await.expect("gate")
}

async fn add_prod(g: &Gate, server: &TwinServer) {
    g.add_controller(&admin(), common::twin_controller("prod", server, TOKEN), false).await.expect("controller");
}

/// Creates `name` with `grants`; returns its key.
async fn agent(g: &Gate, name: &str, grants: &[(Group, Level, Option<&str>)]) -> String {
    let (_, key) = g.create_agent(&admin(), name, "", None).await.expect("agent");
    for (group, level, jobs) in grants {
        g.grant(&admin(), name, *group, *level, None, *jobs, vec![]).await.expect("grant");
    }
    gate::gate::expose(&key.secret).to_string()
}

fn bad_key(r: Result<(String, String), GateError>) -> String {
    match r {
        Err(GateError::BadKey(why)) => why,
        other => panic!("expected a refused key, got {other:?}"),
    }
}

async fn audit_ops(g: &Gate) -> Vec<Value> {
    g.audit(&AuditFilter::default())
        .await
        .expect("audit")
        .iter()
        .map(|r| serde_json::to_value(&r.entry).expect("json"))
        .collect()
}

/// Polls `check` until it holds; returns how long that took, or fails after `limit`.
async fn within<F, Fut>(limit: Duration, what: &str, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if check().await {
            return start.elapsed();
        }
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_are_disabled_enabled_and_deleted() {
    let (_t, server) = twin().await;
    let dbs = Dbs::new("jgl").await;
    for (kind, url) in &dbs.list {
        let g = open(url, &key_file()).await;
        add_prod(&g, &server).await;
        let key = agent(&g, "bot", &[(Group::Status, Level::Read, None)]).await;
        let job = json!({"job": "team/api"});
        g.authenticate(&key).await.expect("valid key");
        g.call(&caller("bot"), "prod", "get_job", job.clone()).await.expect("allowed");

        assert!(g.disable_agent(&admin(), "bot").await.expect("disable"), "{kind}");
        assert!(!g.disable_agent(&admin(), "bot").await.expect("again"), "{kind}: already disabled");
        let why = bad_key(g.authenticate(&key).await);
        assert!(why.contains("agent bot is disabled") && why.contains("jgate agent enable bot"), "{kind}: {why}");
        // The call path refuses too (a session opened before the agent was disabled).
        match g.call(&caller("bot"), "prod", "get_job", job.clone()).await {
            Err(GateError::BadKey(why)) => assert!(why.contains("disabled"), "{kind}: {why}"),
            other => panic!("{kind}: a disabled agent's call must be refused: {other:?}"),
        }
        assert_eq!(g.grants("bot").await.expect("grants").len(), 1, "{kind}: grants are kept");
        let listed = g.agents().await.expect("agents");
        assert!(listed.iter().any(|(a, _)| a.name == "bot" && a.disabled_ms.is_some()), "{kind}");

        assert!(g.enable_agent(&admin(), "bot").await.expect("enable"), "{kind}");
        assert!(!g.enable_agent(&admin(), "bot").await.expect("again"), "{kind}: not disabled");
        g.authenticate(&key).await.expect("enabled again");
        g.call(&caller("bot"), "prod", "get_job", job.clone()).await.expect("allowed again");

        // Refused while it has grants: nothing changes, nothing is recorded.
        let before = audit_ops(&g).await.len();
        match g.delete_agent(&admin(), "bot", false).await {
            Err(GateError::Invalid(why)) => {
                assert!(why.contains("1 grant(s)") && why.contains("--with-grants"), "{kind}: {why}")
            }
            other => panic!("{kind}: delete with grants must be refused: {other:?}"),
        }
        assert_eq!(audit_ops(&g).await.len(), before, "{kind}");
        g.authenticate(&key).await.expect("still there");

        let key_id = g.agents().await.expect("agents")[0].1[0].key_id.clone();
        match g.delete_agent(&admin(), "bot", true).await.expect("delete") {
            AgentDeletion::Deleted { keys_revoked, grants_removed } => {
                assert_eq!(keys_revoked, std::slice::from_ref(&key_id), "{kind}");
                assert_eq!(grants_removed.len(), 1, "{kind}");
            }
            other => panic!("{kind}: {other:?}"),
        }
        assert!(g.store().agent("bot").await.expect("read").is_none(), "{kind}");
        assert!(g.store().grants_of("bot").await.expect("grants").is_empty(), "{kind}");
        bad_key(g.authenticate(&key).await);
        assert!(g.call(&caller("bot"), "prod", "get_job", job.clone()).await.is_err(), "{kind}");
        // The name can be used again; the old key stays refused.
        g.create_agent(&admin(), "bot", "", None).await.expect("recreate");
        bad_key(g.authenticate(&key).await);

        let records = audit_ops(&g).await;
        let find = |op: &str| records.iter().filter(|e| e["operation"] == op).cloned().collect::<Vec<_>>();
        assert_eq!(find("admin.agent.disable").len(), 2, "{kind}: intent and outcome");
        assert_eq!(find("admin.agent.enable").len(), 2, "{kind}");
        let deleted = find("admin.agent.delete");
        assert_eq!(deleted.len(), 2, "{kind}");
        let outcome = &deleted[1];
        assert_eq!(outcome["args"]["with_grants"], true, "{kind}");
        assert!(outcome["args"]["grants"][0]["grant"].as_str().is_some_and(|g| g.contains("read on all jobs")));
        assert_eq!(outcome["args"]["keys_revoked"][0], key_id.as_str(), "{kind}");
        let all = serde_json::to_string(&records).expect("json");
        assert!(!all.contains(&key), "{kind}: no agent key in the audit");
        assert!(g.verify_audit(&[]).await.expect("verify").is_ok(), "{kind}");
    }
    dbs.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_names_follow_one_rule() {
    let dbs = Dbs::new("jgn").await;
    for (kind, url) in &dbs.list {
        let g = open(url, &key_file()).await;
        for bad in ["Triage-Bot", "triage bot", "-bot", ".bot", "bot/x", "bot\u{202e}x", &"b".repeat(64)] {
            match g.create_agent(&admin(), bad, "", None).await {
                Err(GateError::Invalid(why)) => {
                    assert!(why.contains("[a-z0-9][a-z0-9._-]{0,62}") && why.contains("e.g. triage-bot"), "{why}");
                }
                other => panic!("{kind}: '{bad}' must be refused: {other:?}"),
            }
        }
        assert!(audit_ops(&g).await.is_empty(), "{kind}: a refused name records nothing");
        for ok in ["triage-bot", "release.bot_2", "0", &"b".repeat(63)] {
            g.create_agent(&admin(), ok, "", None).await.expect(ok);
        }
    }
    dbs.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_key_replaces_the_old_one_after_the_overlap() {
    let dbs = Dbs::new("jgr").await;
    for (kind, url) in &dbs.list {
        let g = open(url, &key_file()).await;
        let k1 = agent(&g, "bot", &[]).await;
        let k1_id = gate::keys::key_id(&k1);

        // No overlap: the old key is revoked at once.
        let r = g.rotate_agent_key(&admin(), "bot", None, 0, None).await.expect("rotate");
        assert_eq!(r.retired, std::slice::from_ref(&k1_id), "{kind}");
        let k2 = gate::gate::expose(&r.key.secret).to_string();
        assert!(bad_key(g.authenticate(&k1).await).contains("was revoked"), "{kind}");
        g.authenticate(&k2).await.expect("new key");

        // With an overlap both work until it ends, then only the new one.
        let r = g.rotate_agent_key(&admin(), "bot", None, 1500, None).await.expect("rotate");
        let k3 = gate::gate::expose(&r.key.secret).to_string();
        assert_eq!(r.retired, [gate::keys::key_id(&k2)], "{kind}");
        g.authenticate(&k2).await.expect("old key during the overlap");
        g.authenticate(&k3).await.expect("new key");
        let keys = &g.agents().await.expect("agents")[0].1;
        let now = gate::store::now_ms();
        assert_eq!(keys.iter().filter(|k| k.active_at(now)).count(), 2, "{kind}");
        let wait = (r.revoke_at_ms - gate::store::now_ms()).max(0) as u64 + 100;
        tokio::time::sleep(Duration::from_millis(wait)).await;
        assert!(bad_key(g.authenticate(&k2).await).contains("was revoked"), "{kind}: the overlap ended");
        g.authenticate(&k3).await.expect("new key after the overlap");

        // Rotating a key the agent does not have stores and records nothing.
        let count = g.agents().await.expect("agents")[0].1.len();
        let recorded = audit_ops(&g).await.len();
        match g.rotate_agent_key(&admin(), "bot", Some("000000000000"), 0, None).await {
            Err(GateError::Invalid(why)) => assert!(why.contains("no valid key with id 000000000000"), "{why}"),
            other => panic!("{kind}: {other:?}"),
        }
        assert_eq!(g.agents().await.expect("agents")[0].1.len(), count, "{kind}: no key stored");
        assert_eq!(audit_ops(&g).await.len(), recorded, "{kind}: nothing recorded");
        assert!(g.rotate_agent_key(&admin(), "bot", None, 31 * 86_400_000, None).await.is_err(), "{kind}");

        // A revocation scheduled by a rotation is brought forward by `agent revoke`.
        let r = g.rotate_agent_key(&admin(), "bot", None, 3_600_000, None).await.expect("rotate");
        let k4 = gate::gate::expose(&r.key.secret).to_string();
        g.authenticate(&k3).await.expect("overlap of an hour");
        assert_eq!(g.revoke(&admin(), "bot", None).await.expect("revoke"), 2, "{kind}: k3 and k4");
        bad_key(g.authenticate(&k3).await);
        bad_key(g.authenticate(&k4).await);

        let records = audit_ops(&g).await;
        let rotations: Vec<&Value> =
            records.iter().filter(|e| e["operation"] == "admin.agent.key.rotate" && e["phase"] == "outcome").collect();
        assert_eq!(rotations.len(), 3, "{kind}");
        assert_eq!(rotations[0]["args"]["retired"][0], k1_id.as_str(), "{kind}");
        assert_eq!(rotations[1]["args"]["overlap_ms"], 1500, "{kind}");
        let all = serde_json::to_string(&records).expect("json");
        for k in [&k1, &k2, &k3, &k4] {
            assert!(!all.contains(k.as_str()), "{kind}: no agent key in the audit");
        }
        assert!(g.verify_audit(&[]).await.expect("verify").is_ok(), "{kind}");
    }
    dbs.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_keys_are_refused_with_a_clear_message() {
    let dbs = Dbs::new("jge").await;
    for (kind, url) in &dbs.list {
        let g = open(url, &key_file()).await;
        let expires = gate::store::now_ms() + 700;
        let (_, key) = g.create_agent(&admin(), "bot", "", Some(expires)).await.expect("agent");
        let key = gate::gate::expose(&key.secret).to_string();
        g.authenticate(&key).await.expect("not yet expired");
        let stored = &g.agents().await.expect("agents")[0].1[0];
        assert_eq!(stored.expires_ms, Some(expires), "{kind}: the expiry is stored");
        tokio::time::sleep(Duration::from_millis(800)).await;
        // Refused at once, although the verification is cached.
        let why = bad_key(g.authenticate(&key).await);
        assert!(
            why.contains("expired at ") && why.contains('Z') && why.contains("jgate agent key rotate bot"),
            "{kind}: {why}"
        );
        // A rotation gives a working key (an expired key has nothing left to retire).
        let r = g.rotate_agent_key(&admin(), "bot", None, 0, Some(gate::store::now_ms() + 90 * 86_400_000)).await;
        let r = r.expect("rotate");
        assert!(r.retired.is_empty(), "{kind}");
        g.authenticate(gate::gate::expose(&r.key.secret)).await.expect("new key");
        assert!(g.rotate_agent_key(&admin(), "bot", None, 0, Some(1)).await.is_err(), "{kind}: expiry in the past");
    }
    dbs.cleanup().await;
}

/// Two gates on one store (two processes, or two replicas): a change made through one is in force
/// in the other within a second (the caches' bound), for keys and for the call path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_gate_on_the_store_sees_changes_within_a_second() {
    let (_t, server) = twin().await;
    let dbs = Dbs::new("jg2").await;
    let limit = Duration::from_millis(1600);
    for (kind, url) in &dbs.list {
        let kf = key_file();
        let one = open(url, &kf).await;
        add_prod(&one, &server).await;
        let key = agent(&one, "bot", &[(Group::Status, Level::Read, None)]).await;
        let two = open(url, &kf).await;
        let job = json!({"job": "team/api"});
        // Warm the second gate's caches.
        two.authenticate(&key).await.expect("valid");
        two.call(&caller("bot"), "prod", "get_job", job.clone()).await.expect("allowed");

        one.disable_agent(&admin(), "bot").await.expect("disable");
        within(limit, "the disabled key is refused", || async {
            matches!(two.authenticate(&key).await, Err(GateError::BadKey(w)) if w.contains("disabled"))
        })
        .await;
        within(limit, "the disabled agent's call is refused", || async {
            matches!(two.call(&caller("bot"), "prod", "get_job", job.clone()).await, Err(GateError::BadKey(_)))
        })
        .await;
        one.enable_agent(&admin(), "bot").await.expect("enable");
        within(limit, "the enabled agent is accepted", || async { two.authenticate(&key).await.is_ok() }).await;

        let r = one.rotate_agent_key(&admin(), "bot", None, 0, None).await.expect("rotate");
        let new = gate::gate::expose(&r.key.secret).to_string();
        within(limit, "the rotated key is refused", || async {
            matches!(two.authenticate(&key).await, Err(GateError::BadKey(w)) if w.contains("revoked"))
        })
        .await;
        two.authenticate(&new).await.expect("the new key");

        one.delete_agent(&admin(), "bot", true).await.expect("delete");
        within(limit, "the deleted agent's key is refused", || async { two.authenticate(&new).await.is_err() }).await;
        within(limit, "the deleted agent's call is refused", || async {
            two.call(&caller("bot"), "prod", "get_job", job.clone()).await.is_err()
        })
        .await;
        eprintln!("{kind}: changes seen by the second gate within {limit:?}");
    }
    dbs.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_patterns_that_could_never_match_are_refused_with_the_right_form() {
    let dbs = Dbs::new("jgp").await;
    for (kind, url) in &dbs.list {
        let g = open(url, &key_file()).await;
        agent(&g, "bot", &[]).await;
        let before = audit_ops(&g).await.len();
        for (bad, right) in [
            ("/team/**", "write 'team/**'"),
            ("job/team/job/api", "write 'team/api'"),
            ("/job/team/job/*/", "write 'team/*'"),
            ("JOB/team", "write 'team'"),
            ("team//api", "write 'team/api'"),
            ("team/", "write 'team'"),
        ] {
            match g.grant(&admin(), "bot", Group::Status, Level::Read, None, Some(bad), vec![]).await {
                Err(GateError::Invalid(why)) => assert!(why.contains(right), "{kind}: {bad}: {why}"),
                other => panic!("{kind}: {bad} must be refused: {other:?}"),
            }
        }
        assert!(g.grants("bot").await.expect("grants").is_empty(), "{kind}");
        assert_eq!(audit_ops(&g).await.len(), before, "{kind}: nothing recorded");
        for ok in ["team/**", "team/api", "**/api-*", "release/prod-[a-m]*"] {
            g.grant(&admin(), "bot", Group::Status, Level::Read, None, Some(ok), vec![]).await.expect(ok);
        }
    }
    dbs.cleanup().await;
}

/// An agent scoped to one folder sees only that folder's jobs in listings, and is never allowed
/// the controller-wide queue (so `could_allow`, which MCP's tools/list uses, hides it); with a
/// grant on all jobs and an `off` carve-out, the queue shows only what it may see.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listings_for_an_agent_scoped_to_one_folder() {
    let (_t, server) = twin().await;
    let dir = common::temp_dir("jgl-list");
    let g = open(&dir.join("jgate.db").display().to_string(), &dir.join("master.key")).await;
    add_prod(&g, &server).await;
    agent(&g, "team-bot", &[(Group::Status, Level::Read, Some("team/**"))]).await;
    let root = g.call(&caller("team-bot"), "prod", "list_jobs", json!({})).await.expect("list");
    let names: Vec<&str> = root["jobs"].as_array().expect("jobs").iter().filter_map(|j| j["name"].as_str()).collect();
    assert_eq!(names, ["team"], "{root}");
    let listed = g.call(&caller("team-bot"), "prod", "list_jobs", json!({"folder": "team"})).await.expect("list");
    let text = listed.to_string();
    assert!(text.contains("team/api") && text.contains("team/web"), "{text}");
    let hidden = g.call(&caller("team-bot"), "prod", "list_jobs", json!({"folder": "secret"})).await;
    assert!(hidden.as_ref().map_or(true, |v| !v.to_string().contains("vault")), "{hidden:?}");
    match g.call(&caller("team-bot"), "prod", "get_queue", json!({})).await {
        Err(GateError::Denied { reason }) => assert!(reason.contains("needs a grant on all jobs"), "{reason}"),
        other => panic!("a folder-scoped agent cannot read the whole queue: {other:?}"),
    }
    let grants = g.grants("team-bot").await.expect("grants");
    let op = |n: &str| catalog::operation(n).expect("operation");
    assert!(!policy::could_allow(&grants, op("get_queue")));
    assert!(!policy::could_allow(&grants, op("list_views")));
    assert!(!policy::could_allow(&grants, op("trigger_build")), "no build grant at all");
    assert!(policy::could_allow(&grants, op("list_jobs")));
    assert!(policy::could_allow(&grants, op("get_build_log")));

    agent(&g, "most-bot", &[(Group::Status, Level::Read, None), (Group::Status, Level::Off, Some("secret/**"))]).await;
    let queue = g.call(&caller("most-bot"), "prod", "get_queue", json!({})).await.expect("queue");
    let jobs: Vec<&str> = queue["items"].as_array().expect("items").iter().filter_map(|i| i["job"].as_str()).collect();
    assert!(jobs.contains(&"team/api") && jobs.contains(&"other"), "{queue}");
    assert!(!jobs.contains(&"secret/vault"), "the carved-out job's queue item is hidden: {queue}");
}

// ---------------------------------------------------------------------------------------------
// explain and the access matrix against decide

fn grant(id: i64, controller: Option<&str>, group: Group, level: Level, jobs: Option<&str>) -> Grant {
    Grant {
        id,
        agent: "bot".into(),
        controller: controller.map(str::to_string),
        group,
        level,
        jobs: jobs.map(str::to_string),
        params: Vec::new(),
        approve: false,
        max_per_hour: None,
    }
}

/// Grant sets: a few written by hand, and many drawn from pools by a fixed pseudo-random sequence.
fn grant_sets() -> Vec<Vec<Grant>> {
    use Level::*;
    let mut sets = vec![
        vec![
            grant(1, None, Group::Status, Read, None),
            grant(2, None, Group::Status, Off, Some("team/secret*")),
            grant(3, Some("prod"), Group::Build, Full, Some("release/**")),
            grant(4, Some("prod"), Group::Build, Off, Some("release/prod-*")),
        ],
        vec![
            grant(5, None, Group::Status, Full, Some("team/**")),
            grant(6, Some("prod"), Group::Status, Read, None),
            grant(7, None, Group::Status, Off, Some("team/api")),
        ],
        vec![grant(8, None, Group::Config, Read, Some("team/*")), grant(9, None, Group::Config, Full, Some("team/*"))],
    ];
    let patterns = [
        None,
        Some("team/**"),
        Some("team/*"),
        Some("team/api"),
        Some("team/secret*"),
        Some("release/**"),
        Some("release/prod-*"),
        Some("**"),
        Some("*/api"),
        Some("team/[a-m]*"),
    ];
    let controllers = [None, Some("prod"), Some("staging")];
    let levels = [Off, Read, Full];
    let groups = [Group::Status, Group::Build, Group::Nodes];
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = |n: usize| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x % n as u64) as usize
    };
    for s in 0..150 {
        let count = 1 + next(6);
        sets.push(
            (0..count)
                .map(|i| {
                    grant(
                        (s * 10 + i) as i64 + 100,
                        controllers[next(controllers.len())],
                        groups[next(groups.len())],
                        levels[next(levels.len())],
                        patterns[next(patterns.len())],
                    )
                })
                .collect(),
        );
    }
    sets
}

const JOBS: &[&str] = &[
    "team/api",
    "TEAM/API",
    "/job/team/job/api/",
    "team/secret-x",
    "team/web",
    "team",
    "release/prod-eu",
    "release/dev",
    "other",
    "deep/a/b/api",
];

#[test]
fn explain_agrees_with_decide() {
    let controllers = ["prod", "staging"];
    let mut checked = 0;
    for grants in grant_sets() {
        for op in catalog::OPERATIONS.iter().copied() {
            for controller in controllers {
                let jobs: Vec<Option<&str>> = match op.target {
                    Target::Controller => vec![None],
                    Target::Folder => std::iter::once(None).chain(JOBS.iter().copied().map(Some)).collect(),
                    Target::Job => JOBS.iter().copied().map(Some).collect(),
                };
                for job in jobs {
                    let req = Request { agent: "bot", controller, op, job, params: &[] };
                    let decided = policy::decide(&grants, &req);
                    let e = policy::explain(&grants, &req);
                    assert_eq!(e.decision, decided, "{op:?} {job:?} {grants:?}");
                    let deciders: Vec<i64> = e.considered.iter().filter(|c| c.decides).map(|c| c.grant.id).collect();
                    assert_eq!(deciders, decided.grant.into_iter().collect::<Vec<_>>(), "{op:?} {job:?}");
                    // Every grant of the group that applies here is weighed, and no other.
                    let applicable = grants
                        .iter()
                        .filter(|g| g.group == op.group && g.controller.as_deref().is_none_or(|c| c == controller))
                        .count();
                    assert_eq!(e.considered.len(), applicable, "{op:?} {job:?}");
                    // Most specific first: for a job, the first grant that covers it decides.
                    if op.target == Target::Job
                        && let Some(first) = e.considered.iter().find(|c| c.covers)
                    {
                        assert_eq!(Some(first.grant.id), decided.grant, "{op:?} {job:?} {:#?}", e.considered);
                    }
                    for c in &e.considered {
                        assert!(!c.why.is_empty());
                    }
                    checked += 1;
                }
            }
        }
    }
    assert!(checked > 10_000, "{checked}");
}

#[test]
fn the_access_matrix_agrees_with_decide() {
    let controllers: Vec<String> = vec!["prod".into(), "staging".into()];
    for grants in grant_sets() {
        let cells = policy::access_matrix(&grants, "bot", &controllers);
        assert_eq!(cells.len(), Group::ALL.len() * controllers.len());
        for cell in &cells {
            let req = |op: &'static catalog::Operation, job: Option<&'static str>| Request {
                agent: "bot",
                controller: cell.controller.as_str(),
                op,
                job,
                params: &[],
            };
            for op in catalog::in_group(cell.group) {
                let needed = Level::required_for(op.access);
                // Controller-wide operations follow the grants on all jobs.
                if op.target == Target::Controller {
                    let d = policy::decide(&grants, &req(op, None));
                    assert_eq!(d.allowed, cell.all_jobs >= needed, "{} {cell:?}", op.name);
                }
                if op.target != Target::Job || op.name == "trigger_build" {
                    continue;
                }
                for job in JOBS {
                    let d = policy::decide(&grants, &req(op, Some(job)));
                    let path = policy::normalize_job_path(job).expect("path");
                    // A job no listed pattern covers gets the level on all jobs; one a listed
                    // pattern covers gets the level of the first (most specific) such pattern.
                    let level = cell
                        .patterns
                        .iter()
                        .find(|p| policy::glob_match(&p.jobs, &path))
                        .map_or(cell.all_jobs, |p| p.level);
                    assert_eq!(d.allowed, level >= needed, "{} {job} {cell:#?} {grants:#?}", op.name);
                    if d.allowed {
                        assert!(cell.best >= needed);
                    }
                }
            }
        }
        for op in catalog::OPERATIONS.iter().copied() {
            // could_allow false: denied whatever is asked.
            if policy::could_allow(&grants, op) {
                continue;
            }
            for c in &controllers {
                let jobs: Vec<Option<&str>> = std::iter::once(None).chain(JOBS.iter().copied().map(Some)).collect();
                for job in jobs {
                    let d = policy::decide(&grants, &Request { agent: "bot", controller: c, op, job, params: &[] });
                    assert!(!d.allowed, "{} {job:?}: could_allow said no", op.name);
                }
            }
        }
    }
}

#[test]
fn explain_job_names_the_deciding_grant_and_why() {
    use Level::*;
    let grants = vec![
        grant(1, None, Group::Status, Full, None),
        grant(2, None, Group::Status, Read, Some("team/**")),
        grant(3, Some("prod"), Group::Status, Off, Some("team/secret*")),
    ];
    let all = policy::explain_job(&grants, "bot", "prod", "team/secret-x");
    let status = all.iter().find(|j| j.group == Group::Status).expect("status");
    let read = status.read.as_ref().expect("read");
    assert!(!read.decision.allowed);
    assert_eq!(read.decision.grant, Some(3));
    let why: Vec<(i64, &str)> = read.considered.iter().map(|c| (c.grant.id, c.why.as_str())).collect();
    assert_eq!(why[0].0, 3);
    assert!(why[0].1.starts_with("decides") && why[0].1.contains("turns this off"), "{why:?}");
    assert!(why[1].1.contains("grant 3 is more specific: a grant for this controller beats"), "{why:?}");
    assert!(why[2].1.contains("a pattern beats all jobs") || why[2].1.contains("more specific"), "{why:?}");
    let build = all.iter().find(|j| j.group == Group::Build).expect("build");
    assert!(build.read.is_none(), "the build group has no reads");
    assert!(build.write.as_ref().is_some_and(|e| !e.decision.allowed && e.considered.is_empty()));
    // On another controller grant 3 does not apply: grant 2 decides.
    let staging = policy::explain_job(&grants, "bot", "staging", "team/secret-x");
    let s = staging[0].read.as_ref().expect("read");
    assert_eq!(s.decision.grant, Some(2));
    assert!(s.decision.allowed);
    let cells = policy::access_matrix(&grants, "bot", &["prod".to_string()]);
    assert_eq!(cells[0].summary(), "Full — team/secret* off, team/** read, other jobs full use");
}
