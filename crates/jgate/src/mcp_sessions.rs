//! MCP sessions over HTTP as jgate tracks them beside rmcp: which agent opened each session, the
//! JSON-RPC ids in flight on it, and when it was last used.
//!
//! rmcp's session manager ends an idle session's worker after its keep-alive but keeps the
//! session's entry (only a DELETE removes it), and most clients never send a DELETE. Left alone,
//! both maps grow by one entry per session for as long as the process runs. Sessions idle for
//! longer than rmcp's keep-alive (plus a margin) with nothing in flight are closed here, in
//! rmcp's manager too, whenever a new session is opened (at most once a minute): memory follows
//! the sessions in use, not every session ever opened.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rmcp::transport::streamable_http_server::session::SessionManager;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;

/// How often stale sessions are looked for (on a session's creation).
const PRUNE_EVERY: Duration = Duration::from_secs(60);
/// Added to rmcp's keep-alive: a session idle this much longer is certainly over.
const MARGIN: Duration = Duration::from_secs(60);

struct Session {
    agent: String,
    last_seen: Instant,
    /// When its use was last noted in the store (shared with other replicas).
    noted: Instant,
    /// JSON-RPC ids of the requests in flight (their answers not yet sent in full).
    in_flight: HashSet<String>,
}

struct Inner {
    sessions: HashMap<String, Session>,
    last_prune: Instant,
}

/// The sessions of one `jgate serve`, and rmcp's manager they live in.
pub struct McpSessions {
    manager: Arc<LocalSessionManager>,
    idle: Duration,
    inner: Mutex<Inner>,
}

/// A request id claimed on a session; released (and the session's use noted) when dropped, i.e.
/// when the request's answer has been sent or abandoned.
pub struct IdClaim {
    sessions: Arc<McpSessions>,
    session: String,
    id: String,
}

impl Drop for IdClaim {
    fn drop(&mut self) {
        let mut inner = self.sessions.lock();
        if let Some(s) = inner.sessions.get_mut(&self.session) {
            s.in_flight.remove(&self.id);
            s.last_seen = Instant::now();
        }
    }
}

/// Why a request id could not be claimed.
#[derive(Debug, PartialEq, Eq)]
pub enum ClaimRefused {
    /// The same id is in flight on the session.
    Duplicate,
    /// The session is not (or no longer) known.
    NoSession,
}

impl McpSessions {
    pub fn new(manager: Arc<LocalSessionManager>) -> Arc<McpSessions> {
        // rmcp ends a session's worker after this long without an event (5 min by default).
        let idle = manager.session_config.keep_alive.unwrap_or(Duration::from_secs(300)) + MARGIN;
        Arc::new(McpSessions {
            manager,
            idle,
            inner: Mutex::new(Inner { sessions: HashMap::new(), last_prune: Instant::now() }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The agent that opened the session (None: unknown or closed). Notes the session's use.
    pub fn owner(&self, id: &str) -> Option<String> {
        let mut inner = self.lock();
        let s = inner.sessions.get_mut(id)?;
        s.last_seen = Instant::now();
        Some(s.agent.clone())
    }

    /// Binds a session rmcp just opened (or restored from the store) to its agent, and closes
    /// stale sessions if it is time; whether it was time.
    pub async fn bind(&self, id: &str, agent: &str) -> bool {
        self.bind_at(id, agent, Instant::now()).await
    }

    async fn bind_at(&self, id: &str, agent: &str, now: Instant) -> bool {
        let stale = {
            let mut inner = self.lock();
            inner.sessions.insert(
                id.to_string(),
                Session { agent: agent.to_string(), last_seen: now, noted: now, in_flight: HashSet::new() },
            );
            if now.duration_since(inner.last_prune) < PRUNE_EVERY {
                return false;
            }
            inner.last_prune = now;
            take_stale(&mut inner, now, self.idle)
        };
        self.close(stale).await;
        true
    }

    /// Whether the session's use should be noted in the store now (at most every `every`).
    pub fn note_due(&self, id: &str, every: Duration) -> bool {
        let mut inner = self.lock();
        let Some(s) = inner.sessions.get_mut(id) else { return false };
        let now = Instant::now();
        if now.duration_since(s.noted) < every {
            return false;
        }
        s.noted = now;
        true
    }

    /// Forgets a session its client deleted.
    pub fn forget(&self, id: &str) {
        self.lock().sessions.remove(id);
    }

    /// Ends a session its client deleted through another replica: here and in rmcp's manager.
    pub async fn end(&self, id: &str) {
        self.forget(id);
        self.close(vec![id.to_string()]).await;
    }

    /// Claims a request id on a session for as long as the request is in flight.
    pub fn claim(self: &Arc<Self>, session: &str, id: &str) -> Result<IdClaim, ClaimRefused> {
        let mut inner = self.lock();
        let s = inner.sessions.get_mut(session).ok_or(ClaimRefused::NoSession)?;
        s.last_seen = Instant::now();
        if !s.in_flight.insert(id.to_string()) {
            return Err(ClaimRefused::Duplicate);
        }
        Ok(IdClaim { sessions: self.clone(), session: session.to_string(), id: id.to_string() })
    }

    /// How many sessions are tracked.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().sessions.len()
    }

    /// Closes the sessions idle for longer than rmcp keeps them, as of `now`; returns how many.
    #[cfg(test)]
    async fn prune(&self, now: Instant) -> usize {
        let stale = take_stale(&mut self.lock(), now, self.idle);
        let n = stale.len();
        self.close(stale).await;
        n
    }

    async fn close(&self, stale: Vec<String>) {
        for id in stale {
            // The worker has already quit; this drops rmcp's entry for it. An error means the
            // entry is gone already, which is the aim.
            let _ = self.manager.close_session(&id.into()).await;
        }
    }
}

/// Removes and returns the sessions with nothing in flight, unused for longer than `idle`.
fn take_stale(inner: &mut Inner, now: Instant, idle: Duration) -> Vec<String> {
    let stale: Vec<String> = inner
        .sessions
        .iter()
        .filter(|(_, s)| s.in_flight.is_empty() && now.saturating_duration_since(s.last_seen) > idle)
        .map(|(id, _)| id.clone())
        .collect();
    for id in &stale {
        inner.sessions.remove(id);
    }
    stale
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn open(manager: &LocalSessionManager) -> String {
        let (id, _transport) = manager.create_session().await.expect("session");
        id.to_string()
    }

    #[tokio::test]
    async fn idle_sessions_are_closed_in_rmcp_too_and_busy_ones_kept() {
        let manager = Arc::new(LocalSessionManager::default());
        let sessions = McpSessions::new(manager.clone());
        let (idle, busy, fresh) = (open(&manager).await, open(&manager).await, open(&manager).await);
        for id in [&idle, &busy, &fresh] {
            sessions.bind(id, "bot").await;
        }
        let claim = sessions.claim(&busy, "7").expect("claim");
        assert_eq!(sessions.claim(&busy, "7").err(), Some(ClaimRefused::Duplicate));

        // Just under the limit: nothing goes.
        let limit = sessions.idle;
        assert_eq!(sessions.prune(Instant::now() + limit - Duration::from_secs(5)).await, 0);
        // Past it: the two without a request in flight go, in rmcp's manager as well.
        assert_eq!(sessions.prune(Instant::now() + limit + Duration::from_secs(1)).await, 2);
        assert_eq!(sessions.owner(&idle), None);
        assert_eq!(sessions.owner(&fresh), None);
        assert_eq!(sessions.owner(&busy).as_deref(), Some("bot"));
        let left: Vec<String> = manager.sessions.read().await.keys().map(|k| k.to_string()).collect();
        assert_eq!(left, vec![busy.clone()]);

        // The finished request counts as use: the session lives on from then.
        drop(claim);
        assert_eq!(sessions.claim(&idle, "1").err(), Some(ClaimRefused::NoSession));
        assert_eq!(sessions.prune(Instant::now() + limit - Duration::from_secs(5)).await, 0);
        assert_eq!(sessions.len(), 1);
    }

    #[tokio::test]
    async fn opening_sessions_prunes_at_most_once_a_minute() {
        let manager = Arc::new(LocalSessionManager::default());
        let sessions = McpSessions::new(manager.clone());
        let t0 = Instant::now();
        let idle = sessions.idle;
        let old = open(&manager).await;
        sessions.bind_at(&old, "bot", t0).await;
        sessions.lock().last_prune = t0 + idle + Duration::from_secs(30);
        // Within a minute of the last prune: the stale session stays for now.
        let soon = open(&manager).await;
        sessions.bind_at(&soon, "bot", t0 + idle + Duration::from_secs(60)).await;
        assert_eq!(sessions.len(), 2, "no prune within a minute of the last");
        // After the minute: the stale one is closed, the recent one kept.
        let new = open(&manager).await;
        sessions.bind_at(&new, "bot", t0 + idle + Duration::from_secs(100)).await;
        assert_eq!(sessions.owner(&old), None, "the stale session was pruned when a new one opened");
        assert_eq!(sessions.owner(&soon).as_deref(), Some("bot"));
        assert_eq!(manager.sessions.read().await.len(), 2);
        assert_eq!(sessions.len(), 2);
    }
}
