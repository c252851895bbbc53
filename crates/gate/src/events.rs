//! Build events from the Jenkins Notification plugin (docs/events.md): the receiver's checks,
//! the events table and the bus that wakes waits.
//!
//! An event is a **wake-up hint, never a result**: a wait woken by one still reads the build from
//! Jenkins (through the policy and the sanitizer like every read) before it answers. So a forged
//! or replayed event can at most make a wait poll early. The job an event names is derived from
//! the payload's build URL resolved under the controller's registered base URL (relative URLs
//! only, no dot segments), checked against the job URL and the build number of the same payload;
//! the payload's display strings (`name`, SCM, parameters, log, artifacts) are never kept.
//!
//! Delivery: every accepted event is stored (table `events`, kept [`KEEP_EVENTS`]) and broadcast
//! in this process; on PostgreSQL also announced with `NOTIFY` on [`CHANNEL`], so every replica
//! listening ([`Gate::listen_events`]) reads it by id. A replica that reconnects reads everything
//! after the last id it saw, so an event is not lost while it was away.

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::sync::broadcast;

use crate::error::GateError;
use crate::gate::{Admin, Gate};
use crate::store::{EventRow, HookCount, StoreError, now_ms};

/// The PostgreSQL notification channel of events.
pub const CHANNEL: &str = "jgate_events";
/// The largest payload the receiver reads (the plugin's payload is a few KiB; `log` lines and
/// long change lists stay far below this).
pub const MAX_PAYLOAD: usize = 64 * 1024;
/// How long events are kept in the store: long enough for a replica's catch-up after an outage.
pub const KEEP_EVENTS: Duration = Duration::from_secs(24 * 3600);
/// The counter name for requests naming no controller with a hook secret.
pub const NO_CONTROLLER: &str = "*";

/// The build phases the plugin sends (`FINISHED` is what very old versions called FINALIZED).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Queued,
    Started,
    Completed,
    Finalized,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Queued => "QUEUED",
            Phase::Started => "STARTED",
            Phase::Completed => "COMPLETED",
            Phase::Finalized => "FINALIZED",
        }
    }

    fn parse(s: &str) -> Option<Phase> {
        Some(match s {
            "QUEUED" => Phase::Queued,
            "STARTED" => Phase::Started,
            "COMPLETED" => Phase::Completed,
            "FINALIZED" | "FINISHED" => Phase::Finalized,
            _ => return None,
        })
    }
}

/// Jenkins' build results: a status outside this set is a malformed payload, so the stored
/// status is never free text.
const RESULTS: &[&str] = &["SUCCESS", "UNSTABLE", "FAILURE", "NOT_BUILT", "ABORTED"];

/// An accepted event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub id: i64,
    pub controller: String,
    /// The job's canonical full name, derived from the build URL (see the module doc).
    pub job: String,
    pub number: u64,
    pub queue_id: Option<u64>,
    pub phase: Phase,
    /// One of Jenkins' results, when the payload had one.
    pub status: Option<&'static str>,
    /// When jgate received it.
    pub time_ms: i64,
}

impl Event {
    fn row(&self) -> EventRow {
        EventRow {
            id: self.id,
            controller: self.controller.clone(),
            job: self.job.clone(),
            number: i64::try_from(self.number).unwrap_or(i64::MAX),
            queue_id: self.queue_id.and_then(|q| i64::try_from(q).ok()),
            phase: self.phase.as_str().to_string(),
            status: self.status.map(str::to_string),
            time_ms: self.time_ms,
        }
    }

    fn from_row(r: EventRow) -> Option<Event> {
        Some(Event {
            id: r.id,
            controller: r.controller,
            job: r.job,
            number: u64::try_from(r.number).ok()?,
            queue_id: r.queue_id.and_then(|q| u64::try_from(q).ok()),
            phase: Phase::parse(&r.phase)?,
            status: r.status.as_deref().and_then(|s| RESULTS.iter().copied().find(|k| *k == s)),
            time_ms: r.time_ms,
        })
    }

    /// Whether this event is about build `number` of `job` on `controller`.
    pub fn is_build(&self, controller: &str, job: &str, number: u64) -> bool {
        self.controller == controller && self.number == number && crate::ops::same_item(&self.job, job)
    }

    /// Whether this event is about the build made from queue item `queue_id` of `job`.
    pub fn is_queue_item(&self, controller: &str, job: &str, queue_id: u64) -> bool {
        self.controller == controller && self.queue_id == Some(queue_id) && crate::ops::same_item(&self.job, job)
    }
}

/// Why a payload was refused (400). The texts quote nothing from the payload.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    #[error("the body is not the Notification plugin's JSON ({0}); configure the endpoint with format JSON")]
    NotJson(String),
    #[error("build.phase is not one of QUEUED, STARTED, COMPLETED, FINALIZED")]
    Phase,
    #[error("build.status is not a Jenkins build result")]
    Status,
    #[error("build.url is not a relative URL of a build of a job (job/NAME/.../NUMBER/) matching url and build.number")]
    BuildUrl,
}

#[derive(Deserialize)]
struct Payload {
    url: String,
    build: BuildPayload,
}

#[derive(Deserialize)]
struct BuildPayload {
    number: u64,
    queue_id: Option<u64>,
    phase: String,
    status: Option<String>,
    url: String,
}

/// A relative URL path as the plugin sends it (`job/a/job/b/7/`): no scheme, host, query,
/// leading slash, backslash, empty or dot segment, so resolving it under the base URL cannot
/// leave the base or be normalised into another job.
fn plain_relative(u: &str) -> Option<Vec<&str>> {
    if u.is_empty() || u.starts_with('/') || u.contains(['\\', '?', '#', ':']) || u.chars().any(char::is_control) {
        return None;
    }
    let segs: Vec<&str> = u.strip_suffix('/').unwrap_or(u).split('/').collect();
    // Encoded dots and slashes too: Jenkins never sends them (a branch's slash is `%252F`), and
    // decoded they would be another path.
    let odd = |s: &str| {
        let l = s.to_ascii_lowercase();
        l.contains("%2e") || l.contains("%2f") || l.contains("%5c")
    };
    if segs.iter().any(|s| s.is_empty() || *s == "." || *s == ".." || odd(s)) {
        return None;
    }
    Some(segs)
}

/// Validates a payload and derives its event (id 0, not stored) for `controller` at `base`.
pub fn parse_payload(controller: &str, base: &url::Url, body: &[u8]) -> Result<Event, PayloadError> {
    let p: Payload = serde_json::from_slice(body).map_err(|e| {
        // serde's message names a field or a position, never the payload's text.
        PayloadError::NotJson(e.classify_name())
    })?;
    let phase = Phase::parse(&p.build.phase).ok_or(PayloadError::Phase)?;
    let status = match p.build.status.as_deref() {
        None => None,
        Some(s) => Some(RESULTS.iter().copied().find(|k| *k == s).ok_or(PayloadError::Status)?),
    };
    let segs = plain_relative(&p.build.url).ok_or(PayloadError::BuildUrl)?;
    let (number, job_segs) = segs.split_last().ok_or(PayloadError::BuildUrl)?;
    if number.parse::<u64>().ok() != Some(p.build.number) || p.build.number == 0 {
        return Err(PayloadError::BuildUrl);
    }
    // The job URL of the same payload must be the build URL's prefix.
    let job_url = format!("{}/", job_segs.join("/"));
    if p.url.strip_suffix('/').unwrap_or(&p.url) != job_url.trim_end_matches('/') {
        return Err(PayloadError::BuildUrl);
    }
    let full = base.join(&job_url).map_err(|_| PayloadError::BuildUrl)?;
    let job = crate::ops::owner_from_url(base, full.as_str()).ok_or(PayloadError::BuildUrl)?;
    Ok(Event {
        id: 0,
        controller: controller.to_string(),
        job,
        number: p.build.number,
        queue_id: p.build.queue_id.filter(|q| *q > 0),
        phase,
        status,
        time_ms: now_ms(),
    })
}

trait Classify {
    fn classify_name(&self) -> String;
}

impl Classify for serde_json::Error {
    /// The kind of failure and where, without serde's quotes of the input.
    fn classify_name(&self) -> String {
        let kind = match self.classify() {
            serde_json::error::Category::Io => "unreadable",
            serde_json::error::Category::Syntax => "not JSON",
            serde_json::error::Category::Data => "a field is missing or of the wrong type",
            serde_json::error::Category::Eof => "cut short",
        };
        format!("{kind} at line {} column {}", self.line(), self.column())
    }
}

/// The in-process side of the bus: a broadcast of accepted events, each delivered once however
/// it arrived (received here, or announced by another replica).
#[derive(Clone)]
pub struct Bus {
    inner: Arc<BusInner>,
}

struct BusInner {
    tx: broadcast::Sender<Arc<Event>>,
    /// Ids delivered lately (an event stored here is also announced back by PostgreSQL).
    delivered: Mutex<(HashSet<i64>, VecDeque<i64>)>,
    /// When old events were last pruned (ms).
    pruned_ms: AtomicI64,
}

const DELIVERED_MEMORY: usize = 4096;

impl Default for Bus {
    fn default() -> Self {
        let (tx, _) = broadcast::channel(1024);
        Bus {
            inner: Arc::new(BusInner {
                tx,
                delivered: Mutex::new((HashSet::new(), VecDeque::new())),
                pruned_ms: AtomicI64::new(0),
            }),
        }
    }
}

impl Bus {
    /// Events from now on. Subscribe *before* reading the state an event would change, so an
    /// event between the read and the wait is not missed.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.inner.tx.subscribe()
    }

    /// Delivers an event to this process's subscribers unless it was delivered already.
    pub fn deliver(&self, e: Event) {
        {
            let mut d = self.inner.delivered.lock().unwrap_or_else(|p| p.into_inner());
            if !d.0.insert(e.id) {
                return;
            }
            d.1.push_back(e.id);
            if d.1.len() > DELIVERED_MEMORY
                && let Some(old) = d.1.pop_front()
            {
                d.0.remove(&old);
            }
        }
        // No subscriber is not an error: nobody is waiting.
        let _ = self.inner.tx.send(Arc::new(e));
    }
}

/// Why [`pause_or_event`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Woke {
    /// An event the waiter wants.
    Event,
    /// The receiver fell behind and events were lost: the waiter should look now.
    Missed,
    /// The pause ran out.
    Time,
}

/// Sleeps `pause`, or less: returns as soon as an event `wanted` arrives.
pub async fn pause_or_event(
    rx: &mut broadcast::Receiver<Arc<Event>>,
    pause: Duration,
    wanted: impl Fn(&Event) -> bool,
) -> Woke {
    let wait = async {
        loop {
            match rx.recv().await {
                Ok(e) if wanted(&e) => return Woke::Event,
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(_)) => return Woke::Missed,
                Err(broadcast::error::RecvError::Closed) => std::future::pending::<()>().await,
            }
        }
    };
    tokio::time::timeout(pause, wait).await.unwrap_or(Woke::Time)
}

/// A hook secret as shown once: 256 random bits, hex (safe in a URL path).
fn new_secret() -> String {
    use rand::RngCore;
    let mut b = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut b);
    hex::encode(b)
}

fn secret_hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// What the receiver answers.
#[derive(Debug)]
pub enum HookOutcome {
    Accepted(Event),
    /// Unknown controller, no hook secret, or a wrong one: one answer for all (404).
    NotFound,
    /// Over [`MAX_PAYLOAD`] (413).
    TooLarge,
    /// Not a payload of the plugin (400).
    Malformed(PayloadError),
    /// The store could not take it (503); the sender may retry.
    Unavailable(String),
}

/// A controller's hook, as `jgate controller hook NAME --stats` shows it.
#[derive(Debug, Clone)]
pub struct HookStats {
    pub configured_ms: Option<i64>,
    pub counts: Vec<HookCount>,
    /// Requests that named no controller with a hook (all controllers together).
    pub unknown: Vec<HookCount>,
}

impl Gate {
    /// The in-process event bus.
    pub fn events(&self) -> &Bus {
        &self.calls.triggers.events
    }

    /// Whether `agent` may now call read operation `op` on `job` of `controller`: the decision
    /// the call path would make, on the grants as they are now (at most a second old). Not
    /// audited and not a call: for filtering what is announced to an agent (MCP resource
    /// notifications), never for answering with data. A disabled or removed agent may not.
    pub async fn may_read_job(&self, agent: &str, controller: &str, op: &str, job: &str) -> Result<bool, GateError> {
        let Some(meta) = crate::catalog::operation(op).filter(|m| m.access == crate::catalog::Access::Read) else {
            return Ok(false);
        };
        let grants = match self.grants_for_call(agent).await {
            Ok(g) => g,
            Err(GateError::BadKey(_)) => return Ok(false),
            Err(GateError::Store(StoreError::Missing { .. })) => return Ok(false),
            Err(e) => return Err(e),
        };
        let req = crate::policy::Request { agent, controller, op: meta, job: Some(job), params: &[] };
        Ok(crate::policy::decide(&grants, &req).allowed)
    }

    /// Makes the hook secret of `controller` (or replaces it with `rotate`: the old one stops
    /// working at once). The secret is returned once and kept only as its SHA-256. Audited as
    /// `admin.controller.hook`.
    pub async fn create_hook(&self, admin: &Admin, controller: &str, rotate: bool) -> Result<String, GateError> {
        if self.store().controller(controller).await?.is_none() {
            return Err(GateError::Invalid(format!("no controller named '{controller}'; see `jgate controller list`")));
        }
        let existing = self.store().hook_secret(controller).await?;
        if existing.is_some() && !rotate {
            return Err(GateError::Invalid(format!(
                "controller {controller} already has a hook secret (it is shown only once); \
                 make a new one with `jgate controller hook {controller} --rotate` (the old one stops working)"
            )));
        }
        let entry = Self::admin_entry(
            admin,
            "admin.controller.hook",
            Some(controller),
            Some(controller),
            json!({"rotate": existing.is_some()}),
        );
        self.admin_intent(&entry).await?;
        let secret = new_secret();
        let result = self.store().put_hook_secret(controller, &secret_hash(&secret)).await.map_err(GateError::from);
        self.admin_outcome(entry, &result, json!({})).await;
        result?;
        Ok(secret)
    }

    /// The hook's state and counters of `controller`.
    pub async fn hook_stats(&self, controller: &str) -> Result<HookStats, GateError> {
        Ok(HookStats {
            configured_ms: self.store().hook_secret(controller).await?.map(|(_, at)| at),
            counts: self.store().hook_counts(controller).await?,
            unknown: self.store().hook_counts(NO_CONTROLLER).await?,
        })
    }

    async fn count_hook(&self, controller: &str, kind: &str) {
        if let Err(e) = self.store().count_hook(controller, kind).await {
            tracing::warn!(error = %e, kind, "could not count a hook request");
        }
    }

    /// The receiver: `body` posted to the hook of `controller` with `secret` (`None` when the body
    /// was over [`MAX_PAYLOAD`]). Never fails: every refusal is an outcome, counted.
    pub async fn receive_hook(&self, controller: &str, secret: &str, body: Option<&[u8]>) -> HookOutcome {
        let stored = match self.store().hook_secret(controller).await {
            Ok(s) => s,
            Err(e) => return HookOutcome::Unavailable(e.to_string()),
        };
        let Some((hash, _)) = stored else {
            self.count_hook(NO_CONTROLLER, "unknown_or_unconfigured").await;
            return HookOutcome::NotFound;
        };
        let presented = secret_hash(secret);
        if !bool::from(subtle::ConstantTimeEq::ct_eq(presented.as_bytes(), hash.as_bytes())) {
            self.count_hook(controller, "wrong_secret").await;
            return HookOutcome::NotFound;
        }
        let Some(body) = body.filter(|b| b.len() <= MAX_PAYLOAD) else {
            self.count_hook(controller, "too_large").await;
            return HookOutcome::TooLarge;
        };
        let base = match self.store().controller(controller).await {
            Ok(Some(row)) => match jenkins::BaseUrl::parse(&row.base_url) {
                Ok(b) => b,
                Err(e) => return HookOutcome::Unavailable(e.to_string()),
            },
            // Removed meanwhile (its secret goes with it).
            Ok(None) => return HookOutcome::NotFound,
            Err(e) => return HookOutcome::Unavailable(e.to_string()),
        };
        let mut event = match parse_payload(controller, base.as_url(), body) {
            Ok(e) => e,
            Err(e) => {
                self.count_hook(controller, "malformed").await;
                return HookOutcome::Malformed(e);
            }
        };
        match self.store_event(&mut event).await {
            Ok(()) => {
                self.count_hook(controller, "accepted").await;
                HookOutcome::Accepted(event)
            }
            Err(e) => HookOutcome::Unavailable(e.to_string()),
        }
    }

    /// Stores an event, announces it to the other replicas and delivers it here.
    async fn store_event(&self, event: &mut Event) -> Result<(), StoreError> {
        event.id = self.store().insert_event(&event.row()).await?;
        if let Err(e) = self.store().notify_event(CHANNEL, event.id).await {
            // Stored: the other replicas see it at their next catch-up.
            tracing::warn!(error = %e, "could not announce a build event");
        }
        self.events().deliver(event.clone());
        self.prune_events_now_and_then().await;
        Ok(())
    }

    /// Removes events older than [`KEEP_EVENTS`], at most every ten minutes per process.
    async fn prune_events_now_and_then(&self) {
        let now = now_ms();
        let last = self.events().inner.pruned_ms.load(Ordering::Relaxed);
        if now - last < 600_000
            || self.events().inner.pruned_ms.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_err()
        {
            return;
        }
        let keep_ms = i64::try_from(KEEP_EVENTS.as_millis()).unwrap_or(i64::MAX);
        if let Err(e) = self.store().prune_events(now - keep_ms).await {
            tracing::warn!(error = %e, "could not prune old build events");
        }
    }

    /// On PostgreSQL: listens for events announced by every replica (a dedicated connection to
    /// `database_url`) and delivers them here; after each (re)connection, reads every event after
    /// the last one seen. Stops when the gate is dropped. Nothing to do on SQLite (one process
    /// receives and waits).
    pub fn listen_events(&self, database_url: &str) {
        if self.store().dialect() != crate::store::Dialect::Postgres {
            return;
        }
        let store = self.store().clone();
        let bus = self.events().clone();
        let alive = self.calls.alive.clone();
        let url = database_url.to_string();
        tokio::spawn(async move {
            tokio::select! {
                _ = alive.cancelled() => {}
                _ = listen(store, bus, url) => {}
            }
        });
    }
}

/// Events announced before this far back of the newest seen are read again at each notification:
/// ids are given at insert but committed in any order by concurrent replicas.
const REREAD_WINDOW: i64 = 64;

async fn listen(store: crate::store::Store, bus: Bus, url: String) {
    // Unreadable now: from the start (pruned to a day), delivered once each anyway.
    let mut cursor: i64 = store.last_event_id().await.unwrap_or_default();
    let mut backoff = Duration::from_millis(200);
    loop {
        let mut listener = match sqlx::postgres::PgListener::connect(&url).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %crate::store::redact_url(&e.to_string()), "cannot listen for build events; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
                continue;
            }
        };
        if let Err(e) = listener.listen(CHANNEL).await {
            tracing::warn!(error = %e, "cannot listen for build events; retrying");
            tokio::time::sleep(backoff).await;
            continue;
        }
        backoff = Duration::from_millis(200);
        // Catch up with what was announced while this replica was not listening.
        cursor = catch_up(&store, &bus, cursor).await;
        loop {
            match listener.try_recv().await {
                Ok(Some(_)) => cursor = catch_up(&store, &bus, cursor).await,
                // The connection was lost: reconnect, then catch up.
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "lost the build event listener; reconnecting");
                    break;
                }
            }
        }
    }
}

/// Delivers the stored events after `cursor - REREAD_WINDOW`; the new cursor.
async fn catch_up(store: &crate::store::Store, bus: &Bus, cursor: i64) -> i64 {
    let mut from = (cursor - REREAD_WINDOW).max(0);
    let mut newest = cursor;
    loop {
        let rows = match store.events_after(from, 500).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "could not read build events");
                return newest;
            }
        };
        let more = rows.len() == 500;
        for r in rows {
            from = r.id;
            newest = newest.max(r.id);
            if let Some(e) = Event::from_row(r) {
                bus.deliver(e);
            }
        }
        if !more {
            return newest;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> url::Url {
        url::Url::parse("http://ci.example:8080/jenkins/").expect("url")
    }

    fn body(url: &str, build_url: &str, number: u64, phase: &str, status: Option<&str>) -> Vec<u8> {
        let mut b = json!({"full_url": format!("http://ci.example:8080/jenkins/{build_url}"), "number": number,
            "queue_id": 17, "phase": phase, "url": build_url, "scm": {}, "log": "", "artifacts": {}});
        if let Some(s) = status {
            b["status"] = json!(s);
        }
        json!({"name": "deploy", "url": url, "build": b}).to_string().into_bytes()
    }

    #[test]
    fn a_payload_names_its_job_by_the_build_url_under_the_base() {
        let e = parse_payload(
            "prod",
            &base(),
            &body("job/release/job/deploy/", "job/release/job/deploy/12/", 12, "COMPLETED", Some("SUCCESS")),
        )
        .expect("valid");
        assert_eq!(
            (e.job.as_str(), e.number, e.phase, e.status),
            ("release/deploy", 12, Phase::Completed, Some("SUCCESS"))
        );
        assert_eq!(e.queue_id, Some(17));
        let e = parse_payload(
            "prod",
            &base(),
            &body("job/shop/job/feature%252Fx/", "job/shop/job/feature%252Fx/3/", 3, "STARTED", None),
        )
        .expect("branch");
        assert_eq!(e.job, "shop/feature%2Fx");
    }

    #[test]
    fn build_urls_that_could_name_another_job_are_refused() {
        for (url, build_url, number) in [
            ("job/a/", "job/a/13/", 12),                           // number mismatch
            ("job/b/", "job/a/12/", 12),                           // job url mismatch
            ("job/a/job/../job/b/", "job/a/job/../job/b/12/", 12), // dot segments
            ("job/a/%2e%2e/job/b/", "job/a/%2e%2e/job/b/12/", 12), // encoded dot segments
            ("/job/a/", "/job/a/12/", 12),                         // root-relative
            ("http://evil/job/a/", "http://evil/job/a/12/", 12),   // absolute
            ("//evil/job/a/", "//evil/job/a/12/", 12),             // scheme-relative
            ("job/a//", "job/a//12/", 12),                         // empty segment
            ("job/a/", "job/a/12/?x", 12),                         // query
            ("view/v/job/a/", "view/v/job/a/12/", 12),             // not a job path
            ("job/a/", "job/a/0/", 0),                             // no build 0
            ("job\\a/", "job\\a/12/", 12),                         // backslash
            ("job/a%2Fb/", "job/a%2Fb/12/", 12),                   // encoded slash (would decode to a/b)
            ("job/a%2fb/", "job/a%2fb/12/", 12),                   // in lower case
            ("job/a%5Cb/", "job/a%5Cb/12/", 12),                   // encoded backslash
        ] {
            let r = parse_payload("prod", &base(), &body(url, build_url, number, "STARTED", None));
            assert_eq!(r.err(), Some(PayloadError::BuildUrl), "{build_url}");
        }
    }

    #[test]
    fn malformed_payloads_are_refused_without_quoting_them() {
        let r = parse_payload("prod", &base(), b"{\"name\": \"\\u001b[31mx\"");
        let msg = r.expect_err("cut").to_string();
        assert!(!msg.contains("31m"), "{msg}");
        assert_eq!(
            parse_payload("prod", &base(), &body("job/a/", "job/a/1/", 1, "EXPLODED", None)).err(),
            Some(PayloadError::Phase)
        );
        assert_eq!(
            parse_payload("prod", &base(), &body("job/a/", "job/a/1/", 1, "COMPLETED", Some("<script>"))).err(),
            Some(PayloadError::Status)
        );
        let r = parse_payload("prod", &base(), br#"{"name":"x","url":"job/a/","build":{"number":"1"}}"#);
        assert!(matches!(r, Err(PayloadError::NotJson(_))));
    }

    #[test]
    fn an_event_is_delivered_once_however_it_arrives() {
        let bus = Bus::default();
        let mut rx = bus.subscribe();
        let e =
            parse_payload("prod", &base(), &body("job/a/", "job/a/1/", 1, "COMPLETED", Some("SUCCESS"))).expect("ok");
        let e = Event { id: 7, ..e };
        bus.deliver(e.clone());
        bus.deliver(e.clone());
        assert_eq!(rx.try_recv().expect("first").id, 7);
        assert!(rx.try_recv().is_err(), "a second delivery of the same id");
        assert!(e.is_build("prod", "A", 1), "names fold as Jenkins folds them");
        assert!(!e.is_build("prod", "a", 2) && !e.is_build("test", "a", 1));
    }
}
