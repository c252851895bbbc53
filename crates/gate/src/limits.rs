//! Rate limits and quotas (issue #13, docs/limits.md): per agent, calls per minute and triggers
//! per hour; per grant, calls per hour that the grant decided. Enforced in [`Gate::begin`] after
//! the policy decision, before an approval hold or an intent record; shared by every process on
//! the store (N `jgate serve` replicas on one PostgreSQL hold one budget).
//!
//! # Hot path
//!
//! The limits travel with the agent's grants in the one-second cache ([`crate::auth_cache`]): an
//! agent without limits, calling under grants without `--max-per-hour`, costs no store access and
//! no write here.
//!
//! # Counters
//!
//! Fixed windows (the minute or the hour, aligned to the clock): one row per (limit, window) in
//! `limit_counters`, taken by one conditional upsert (`used + n <= limit`, [`Store::reserve_limit`])
//! on both dialects, so racing processes never take more than the limit together.
//!
//! - Triggers per hour and a grant's calls per hour: exactly 1 per call (those calls already write).
//! - Calls per minute: a process takes its first call of a window alone, then leases
//!   [`lease_size`] at a time (⌈limit/20⌉, at most 50) and spends the lease in memory, so a busy agent costs about 20 store writes per minute per
//!   process. The leases never add up to more than the limit, so the limit holds across replicas
//!   exactly; a refusal can come early by what other processes leased and have not used yet: at
//!   least `limit − (P − 1) × (lease − 1)` calls pass in a window, P being the processes serving
//!   the agent in it. When a lease cannot be had whole, one call is taken alone.
//!
//! A call refused by a later limit gives back what an earlier one took. A window's burst: fixed
//! windows allow up to twice a limit across a window's edge (the end of one, the start of the next).
//! Counters of ended windows are removed in the background by the processes that count, once a
//! minute each. A lease taken under another limit is dropped, so a lowered limit applies at once.
//!
//! A store that cannot answer fails the call with the store-unavailable error (fail closed).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use crate::catalog::Operation;
use crate::error::GateError;
use crate::gate::Gate;
use crate::policy::Grant;
use crate::store::{CALL_TIMEOUT, StoreError, now_ms, timed_out};

pub const MINUTE_MS: i64 = 60_000;
pub const HOUR_MS: i64 = 3_600_000;
/// The largest limit an administrator can set (far above any sensible one; keeps sums in range).
pub const MAX_LIMIT: u32 = 1_000_000;

/// The operations that start a build: what "triggers per hour" counts. The catalog's only
/// build-starting routes are `trigger_build`'s (`POST /{job}/build`, `buildWithParameters`); a
/// test checks every operation's routes against this list.
pub const TRIGGER_OPERATIONS: &[&str] = &["trigger_build", "rebuild", "replay"];

/// Whether `op` starts a build.
pub fn starts_build(op: &Operation) -> bool {
    TRIGGER_OPERATIONS.contains(&op.name)
}

/// An agent's limits (`None`: no limit).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AgentLimits {
    pub calls_per_minute: Option<u32>,
    pub triggers_per_hour: Option<u32>,
}

impl AgentLimits {
    /// No limit at all.
    pub fn is_none(&self) -> bool {
        self.calls_per_minute.is_none() && self.triggers_per_hour.is_none()
    }

    /// "60 calls per minute, 5 triggers per hour", or "no limits".
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(n) = self.calls_per_minute {
            parts.push(format!("{} per minute", count(n, "call")));
        }
        if let Some(n) = self.triggers_per_hour {
            parts.push(format!("{} per hour", count(n, "trigger")));
        }
        if parts.is_empty() { "no limits".into() } else { parts.join(", ") }
    }
}

/// "1 call", "5 calls".
pub fn count(n: u32, noun: &str) -> String {
    if n == 1 { format!("1 {noun}") } else { format!("{n} {noun}s") }
}

/// How many calls per minute a process leases at once for a limit of `limit`.
pub fn lease_size(limit: u32) -> u32 {
    limit.div_ceil(20).clamp(1, 50)
}

/// "40 s", "23 min": how long until `ms` have passed, rounded up.
pub fn wait_words(ms: i64) -> String {
    let ms = ms.max(1);
    if ms < MINUTE_MS { format!("{} s", ceil_div(ms, 1000)) } else { format!("{} min", ceil_div(ms, MINUTE_MS)) }
}

/// The clock windows are read from (tests fix it so a window never ends mid-test).
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// One process's state: the calls-per-minute leases not spent yet, the last prune.
pub(crate) struct LimitState {
    /// agent → what this process leased and has not used yet.
    leases: Mutex<HashMap<String, Lease>>,
    last_prune: Mutex<i64>,
    clock: Clock,
}

impl Default for LimitState {
    fn default() -> Self {
        LimitState { leases: Mutex::default(), last_prune: Mutex::new(0), clock: Arc::new(now_ms) }
    }
}

/// Calls per minute leased by this process: `left` of the window starting at `start`, under the
/// limit `limit` (a lease taken under another limit is dropped, so lowering a limit takes effect).
struct Lease {
    start: i64,
    limit: u32,
    left: u32,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A call refused by a limit: the audit's sentence, the fix, and when to try again.
#[derive(Debug, Clone)]
pub struct Refusal {
    pub reason: String,
    pub fix: String,
    pub retry_after_secs: u64,
}

impl Refusal {
    pub fn into_error(self) -> GateError {
        GateError::Limited { message: self.reason, fix: self.fix, retry_after_secs: self.retry_after_secs }
    }
}

/// What a check took so far, to give back if a later limit refuses the call.
enum Taken {
    /// One call of this process's lease for `agent` in the window starting at `start`.
    Lease { agent: String, start: i64 },
    /// One unit of a stored counter.
    Counter { scope: String, start: i64 },
}

fn window(now: i64, len: i64) -> (i64, i64) {
    let start = now - now.rem_euclid(len);
    (start, start + len)
}

fn store_err(e: StoreError) -> GateError {
    match e {
        e @ StoreError::Unavailable { .. } => GateError::AuditUnavailable(e.to_string()),
        e => GateError::Store(e),
    }
}

impl Gate {
    /// Uses `clock` for the limits' windows (tests).
    #[doc(hidden)]
    pub fn with_limit_clock(mut self, clock: Clock) -> Gate {
        self.limit_state.clock = clock;
        self
    }

    fn limit_now(&self) -> i64 {
        (self.limit_state.clock)()
    }

    /// Counts a call against the agent's limits and the deciding grant's; `Ok(Some(_))`: refused
    /// (nothing is kept counted). No store access when none applies.
    pub(crate) async fn check_limits(
        &self,
        agent: &str,
        op: &Operation,
        limits: AgentLimits,
        grant: Option<&Grant>,
    ) -> Result<Option<Refusal>, GateError> {
        let grant_cap = grant.and_then(|g| g.max_per_hour.map(|n| (g, n)));
        let triggers = limits.triggers_per_hour.filter(|_| starts_build(op));
        if limits.calls_per_minute.is_none() && grant_cap.is_none() && triggers.is_none() {
            return Ok(None);
        }
        let now = self.limit_now();
        let mut taken = Vec::new();
        let refusal = self.take_limits(agent, now, limits.calls_per_minute, grant_cap, triggers, &mut taken).await;
        let give_back = !matches!(refusal, Ok(None));
        if give_back {
            for t in taken {
                self.give_back(t).await;
            }
        }
        self.prune_limits(now);
        refusal
    }

    async fn take_limits(
        &self,
        agent: &str,
        now: i64,
        calls: Option<u32>,
        grant_cap: Option<(&Grant, u32)>,
        triggers: Option<u32>,
        taken: &mut Vec<Taken>,
    ) -> Result<Option<Refusal>, GateError> {
        if let Some(limit) = calls {
            let (start, end) = window(now, MINUTE_MS);
            if !self.take_call(agent, start, end, limit).await? {
                return Ok(Some(Refusal {
                    reason: format!(
                        "refused: {agent}'s limit of {} per minute is reached; the next is allowed in {}",
                        count(limit, "call"),
                        wait_words(end - now)
                    ),
                    fix: format!(
                        "wait {}, or ask an administrator to raise the limit (`jgate agent limits {agent} --calls-per-minute N`)",
                        wait_words(end - now)
                    ),
                    retry_after_secs: retry_after(end - now),
                }));
            }
            taken.push(Taken::Lease { agent: agent.to_string(), start });
        }
        if let Some((g, limit)) = grant_cap {
            let (start, end) = window(now, HOUR_MS);
            let scope = format!("grant:{}", g.id);
            if !self.take_one(&scope, start, end, limit).await? {
                let again = format!(
                    "jgate grant {agent} {} {}{}{} --max-per-hour N",
                    g.group.as_str(),
                    g.level.as_str(),
                    g.controller.as_ref().map(|c| format!(" --controller {c}")).unwrap_or_default(),
                    g.jobs.as_ref().map(|j| format!(" --jobs '{j}'")).unwrap_or_default(),
                );
                return Ok(Some(Refusal {
                    reason: format!(
                        "refused: grant {} ({}) allows {} per hour and they are used; the next is allowed in {}",
                        g.id,
                        g.describe(),
                        count(limit, "call"),
                        wait_words(end - now)
                    ),
                    fix: format!(
                        "wait {}, or ask an administrator to raise the grant's limit (`jgate ungrant {}`, then `{again}`)",
                        wait_words(end - now),
                        g.id
                    ),
                    retry_after_secs: retry_after(end - now),
                }));
            }
            taken.push(Taken::Counter { scope, start });
        }
        if let Some(limit) = triggers {
            let (start, end) = window(now, HOUR_MS);
            let scope = format!("triggers:{agent}");
            if !self.take_one(&scope, start, end, limit).await? {
                return Ok(Some(Refusal {
                    reason: format!(
                        "refused: {agent}'s limit of {} per hour is reached; the next is allowed in {}",
                        count(limit, "trigger"),
                        wait_words(end - now)
                    ),
                    fix: format!(
                        "wait {}, or ask an administrator to raise the limit (`jgate agent limits {agent} --triggers-per-hour N`)",
                        wait_words(end - now)
                    ),
                    retry_after_secs: retry_after(end - now),
                }));
            }
            taken.push(Taken::Counter { scope, start });
        }
        Ok(None)
    }

    /// One call of the agent's calls per minute: from this process's lease, else a new lease
    /// from the store (whole, or one call alone when a whole one is not left).
    async fn take_call(&self, agent: &str, start: i64, end: i64, limit: u32) -> Result<bool, GateError> {
        let warm = {
            let mut leases = lock(&self.limit_state.leases);
            match leases.get_mut(agent) {
                Some(l) if l.start == start && l.limit == limit && l.left > 0 => {
                    l.left -= 1;
                    return Ok(true);
                }
                Some(l) => l.start == start && l.limit == limit,
                None => false,
            }
        };
        let scope = format!("calls:{agent}");
        // The first call of a window in this process takes one: a short-lived process (`jgate
        // call`) never holds a lease it cannot use; a second call in the window leases.
        let size = if warm { lease_size(limit).min(limit) } else { 1 };
        let mut got = 0;
        for n in [size, 1] {
            if self.reserve(&scope, start, end, n, limit).await? {
                got = n;
                break;
            }
            if n == 1 {
                break;
            }
        }
        if got == 0 {
            return Ok(false);
        }
        let mut leases = lock(&self.limit_state.leases);
        // Leases of ended windows are worthless: forget them.
        leases.retain(|_, l| l.start >= start);
        let lease = leases.entry(agent.to_string()).or_insert(Lease { start, limit, left: 0 });
        if lease.start != start || lease.limit != limit {
            *lease = Lease { start, limit, left: 0 };
        }
        lease.left += got - 1;
        Ok(true)
    }

    async fn take_one(&self, scope: &str, start: i64, end: i64, limit: u32) -> Result<bool, GateError> {
        self.reserve(scope, start, end, 1, limit).await
    }

    async fn reserve(&self, scope: &str, start: i64, end: i64, n: u32, limit: u32) -> Result<bool, GateError> {
        let store = self.store();
        tokio::time::timeout(CALL_TIMEOUT, store.reserve_limit(scope, start, end, i64::from(n), i64::from(limit)))
            .await
            .unwrap_or_else(|_| Err(timed_out("counting a call against a limit", CALL_TIMEOUT)))
            .map_err(store_err)
    }

    async fn give_back(&self, t: Taken) {
        match t {
            Taken::Lease { agent, start } => {
                let mut leases = lock(&self.limit_state.leases);
                if let Some(l) = leases.get_mut(&agent)
                    && l.start == start
                {
                    l.left += 1;
                }
            }
            Taken::Counter { scope, start } => {
                let back = tokio::time::timeout(CALL_TIMEOUT, self.store().release_limit(&scope, start, 1)).await;
                if !matches!(back, Ok(Ok(()))) {
                    // Harmless for safety: the counter stays one higher until its window ends.
                    tracing::warn!(scope = %scope, "could not give back a call counted against a limit");
                }
            }
        }
    }

    /// Removes counters of ended windows, at most once a minute per process (only processes
    /// that count get here), in the background: no call waits for it.
    fn prune_limits(&self, now: i64) {
        {
            let mut last = lock(&self.limit_state.last_prune);
            if now - *last < MINUTE_MS && now >= *last {
                return;
            }
            *last = now;
        }
        let store = self.store().clone();
        tokio::spawn(async move {
            if let Ok(Err(e)) = tokio::time::timeout(CALL_TIMEOUT, store.prune_limit_counters(now)).await {
                tracing::warn!(error = %e, "could not remove old limit counters (tried again in a minute)");
            }
        });
    }

    /// How much of each of the agent's limits is used in the current windows (`jgate agent limits`).
    pub async fn limits_used(&self, agent: &str) -> Result<(i64, i64), GateError> {
        let now = self.limit_now();
        let calls = self.store().limit_used(&format!("calls:{agent}"), window(now, MINUTE_MS).0).await?;
        let triggers = self.store().limit_used(&format!("triggers:{agent}"), window(now, HOUR_MS).0).await?;
        Ok((calls, triggers))
    }
}

fn retry_after(ms: i64) -> u64 {
    u64::try_from(ceil_div(ms.max(1), 1000)).unwrap_or(1)
}

/// `a / b` rounded up, for positive `a` and `b` (`i64::div_ceil` is not stable).
fn ceil_div(a: i64, b: i64) -> i64 {
    (a + b - 1) / b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_operation_that_starts_a_build_counts_as_a_trigger() {
        for op in crate::ops::OPERATIONS.iter() {
            let builds = op
                .routes
                .iter()
                .any(|r| r.ends_with("/build") || r.contains("/buildWithParameters") || r.ends_with("/replay/run"));
            assert_eq!(starts_build(op), builds, "{}", op.name);
        }
        assert!(TRIGGER_OPERATIONS.iter().all(|n| crate::catalog::operation(n).is_some()));
    }

    #[test]
    fn leases_are_a_twentieth_of_the_limit_between_one_and_fifty() {
        assert_eq!(lease_size(1), 1);
        assert_eq!(lease_size(20), 1);
        assert_eq!(lease_size(21), 2);
        assert_eq!(lease_size(600), 30);
        assert_eq!(lease_size(100_000), 50);
    }

    #[test]
    fn windows_align_to_the_clock_and_waits_round_up() {
        assert_eq!(window(125_000, MINUTE_MS), (120_000, 180_000));
        assert_eq!(window(HOUR_MS + 5, HOUR_MS), (HOUR_MS, 2 * HOUR_MS));
        assert_eq!(wait_words(40_001), "41 s");
        assert_eq!(wait_words(23 * MINUTE_MS - 5), "23 min");
        assert_eq!(retry_after(1), 1);
        assert_eq!(retry_after(59_001), 60);
    }
}
