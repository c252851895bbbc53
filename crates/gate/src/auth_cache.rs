//! What the call path reads on every call — a presented key's verification, an agent's grants and
//! rate limits, the controller names — kept in memory, so that a call by a known key costs no store round trip
//! before its audit record, and nothing at all is written on the way in.
//!
//! # Staleness: at most one second
//!
//! Every entry is used for at most [`FRESH_FOR`] (1 s) after it was read; the first use after that
//! reads it again (one task per entry does; the others wait for its answer). So a revocation, an
//! expiry, a disabled or deleted agent or a changed grant — made by this process, by another replica on the
//! same PostgreSQL or another process on the same SQLite file, even by hand in SQL — takes effect
//! on every process within one second. (A per-entry TTL rather than a "changed since" generation
//! check: no schema change, and it sees edits that bypass jgate too.) Changes this process makes
//! clear its caches at once.
//!
//! When the store cannot answer a refresh, a key that was valid is still accepted: whatever the
//! agent asks next needs the store (every call is audited) and fails with the clear store error,
//! rather than an authentication failure that would send it to ask for a new key. Grants and
//! controller names are never served stale.
//!
//! # Key use
//!
//! A key's last-use time is noted in memory and written by a background task every
//! [`FLUSH_EVERY`], for all keys in one statement ([`Store::record_key_use`]); a failed flush is
//! logged and retried at the next, never fails a call. So that a short-lived process (`jgate call`)
//! records its key's use too, the audit writer also flushes when one is due, after a batch and
//! before answering it, within [`WRITER_FLUSH_BOUND`].

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::policy::Grant;
use crate::store::{CALL_TIMEOUT, Store, StoreError, now_ms, timed_out};

/// How long a cached entry is used before it is read again.
pub const FRESH_FOR: Duration = Duration::from_secs(1);
/// How often last-use times are written.
pub const FLUSH_EVERY: Duration = Duration::from_secs(3);
/// The longest the audit writer spends on a due flush (a slower one is left to the background).
pub const WRITER_FLUSH_BOUND: Duration = Duration::from_millis(250);
/// Past this many entries, expired ones are dropped (unknown keys are never cached).
const MAX_ENTRIES: usize = 10_000;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

struct Slot<V> {
    /// The value and when it was read.
    value: Mutex<Option<(V, Instant)>>,
    /// The last failed load and when it ended: tasks that waited for that load share its answer
    /// instead of each waiting out a store bound of its own.
    failed: Mutex<Option<(StoreError, Instant)>>,
    loading: tokio::sync::Mutex<()>,
}

impl<V: Clone> Slot<V> {
    fn new() -> Slot<V> {
        Slot { value: Mutex::new(None), failed: Mutex::new(None), loading: tokio::sync::Mutex::new(()) }
    }
    fn fresh(&self) -> Option<V> {
        lock(&self.value).as_ref().filter(|(_, at)| at.elapsed() < FRESH_FOR).map(|(v, _)| v.clone())
    }
    fn any(&self) -> Option<V> {
        lock(&self.value).as_ref().map(|(v, _)| v.clone())
    }
}

/// A map of entries, each fresh for [`FRESH_FOR`], loaded once at a time.
pub(crate) struct TtlCache<V> {
    slots: Mutex<HashMap<String, Arc<Slot<V>>>>,
}

impl<V: Clone> TtlCache<V> {
    pub(crate) fn new() -> TtlCache<V> {
        TtlCache { slots: Mutex::new(HashMap::new()) }
    }

    /// The entry of `key`: cached if fresh, else from `load` (`None`: there is none, and that is
    /// not cached). With `stale_if_unavailable`, an expired entry answers when the store cannot.
    pub(crate) async fn get<F, Fut>(
        &self,
        key: &str,
        stale_if_unavailable: bool,
        load: F,
    ) -> Result<Option<V>, StoreError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<V>, StoreError>>,
    {
        let slot = {
            let mut slots = lock(&self.slots);
            if !slots.contains_key(key) && slots.len() >= MAX_ENTRIES {
                slots.retain(|_, s| s.fresh().is_some());
            }
            slots.entry(key.to_string()).or_insert_with(|| Arc::new(Slot::new())).clone()
        };
        if let Some(v) = slot.fresh() {
            return Ok(Some(v));
        }
        let arrived = Instant::now();
        let _loading = slot.loading.lock().await;
        if let Some(v) = slot.fresh() {
            return Ok(Some(v));
        }
        let shared = lock(&slot.failed).as_ref().filter(|(_, at)| *at >= arrived).map(|(e, _)| e.clone());
        let loaded = match shared {
            Some(e) => Err(e),
            None => tokio::time::timeout(CALL_TIMEOUT, load())
                .await
                .unwrap_or_else(|_| Err(timed_out("reading keys and grants", CALL_TIMEOUT))),
        };
        match loaded {
            Ok(Some(v)) => {
                *lock(&slot.value) = Some((v.clone(), Instant::now()));
                Ok(Some(v))
            }
            Ok(None) => {
                let mut slots = lock(&self.slots);
                if slots.get(key).is_some_and(|s| Arc::ptr_eq(s, &slot)) {
                    slots.remove(key);
                }
                Ok(None)
            }
            Err(e) => {
                *lock(&slot.failed) = Some((e.clone(), Instant::now()));
                match slot.any() {
                    Some(v) if stale_if_unavailable && matches!(e, StoreError::Unavailable { .. }) => {
                        tracing::warn!(error = %e, "the store cannot confirm a cached agent key; accepting it as last read");
                        Ok(Some(v))
                    }
                    _ => Err(e),
                }
            }
        }
    }

    /// Forgets every entry (after a change this process made).
    pub(crate) fn clear(&self) {
        lock(&self.slots).clear();
    }
}

/// A stored key as authentication needs it.
#[derive(Clone)]
pub(crate) struct KeyEntry {
    pub(crate) key_row: i64,
    pub(crate) key_id: String,
    pub(crate) agent: String,
    pub(crate) stored_hash: String,
    pub(crate) expires_ms: Option<i64>,
    /// When the key is (or will be, after a rotation's overlap) revoked.
    pub(crate) revoked_ms: Option<i64>,
    /// Whether the key's agent is disabled (read with the key, so it is as fresh).
    pub(crate) agent_disabled: bool,
    /// A `jgate exec` token: valid only through the Jenkins proxy.
    pub(crate) proxy_only: bool,
}

/// An agent's grants (`exists`: whether the agent does).
#[derive(Clone)]
pub(crate) struct AgentGrants {
    pub(crate) exists: bool,
    /// Whether the agent is disabled: its calls are refused whatever its grants.
    pub(crate) disabled: bool,
    pub(crate) grants: Arc<Vec<Grant>>,
    /// The agent's rate limits, read with it (so an agent without limits costs nothing more).
    pub(crate) limits: crate::limits::AgentLimits,
}

/// Last-use times not yet written: key row id → time (ms).
#[derive(Default)]
pub(crate) struct KeyUse {
    pending: Mutex<HashMap<i64, i64>>,
    last_flush: Mutex<Option<Instant>>,
}

impl KeyUse {
    pub(crate) fn note(&self, key_row: i64) {
        lock(&self.pending).insert(key_row, now_ms());
    }

    /// Whether times are pending and no flush ran in the last [`FLUSH_EVERY`].
    pub(crate) fn due(&self) -> bool {
        !lock(&self.pending).is_empty() && lock(&self.last_flush).is_none_or(|t| t.elapsed() >= FLUSH_EVERY)
    }

    /// Writes the pending times in one statement within `bound`; on failure they stay pending for
    /// the next.
    pub(crate) async fn flush(&self, store: &Store, bound: Duration) -> Result<usize, StoreError> {
        let uses: Vec<(i64, i64)> = lock(&self.pending).drain().collect();
        if uses.is_empty() {
            return Ok(0);
        }
        *lock(&self.last_flush) = Some(Instant::now());
        let written = tokio::time::timeout(bound, store.record_key_use(&uses))
            .await
            .unwrap_or_else(|_| Err(timed_out("recording key use", bound)));
        if let Err(e) = written {
            let mut pending = lock(&self.pending);
            for (id, at) in uses {
                // A use noted meanwhile is later.
                pending.entry(id).or_insert(at);
            }
            return Err(e);
        }
        Ok(uses.len())
    }
}

/// Flushes `uses` every [`FLUSH_EVERY`] until `stop`, then once more.
pub(crate) fn start_flusher(store: Store, uses: Arc<KeyUse>, stop: CancellationToken) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(FLUSH_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let last = tokio::select! {
                _ = stop.cancelled() => true,
                _ = tick.tick() => false,
            };
            if let Err(e) = uses.flush(&store, CALL_TIMEOUT).await {
                tracing::warn!(error = %e, "could not record when agent keys were last used (retried later)");
            }
            if last {
                return;
            }
        }
    });
}
