//! MCP sessions over HTTP as jgate tracks them beside rmcp: which agent opened each session, the
//! JSON-RPC ids in flight on it (and the streams open on it), and when it was last used.
//!
//! Sessions end here, not by rmcp's own keep-alive: tool calls answered directly
//! (`mcp_direct.rs`) never reach rmcp's session worker, which would otherwise take a session in
//! steady use for idle. Most clients never send a DELETE. Sessions unused for [`IDLE`] with no
//! request in flight and no stream open are closed here and in rmcp's manager whenever a new
//! session is opened (at most once a minute): memory follows the sessions in use, not every
//! session ever opened.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rmcp::transport::streamable_http_server::session::SessionManager;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use tokio_util::sync::CancellationToken;

/// How often stale sessions are looked for (on a session's creation).
const PRUNE_EVERY: Duration = Duration::from_secs(60);
/// How long a session may go unused (no request, nothing in flight, no stream open) before it
/// ends. rmcp's own idle end is turned off (`serve.rs`): it cannot see direct calls.
pub const IDLE: Duration = Duration::from_secs(300);

struct Session {
    agent: String,
    last_seen: Instant,
    /// When its use was last noted in the store (shared with other replicas).
    noted: Instant,
    /// JSON-RPC ids of the requests in flight (their answers not yet sent in full), each with
    /// the token that cancels it when jgate answers it itself (`mcp_direct.rs`): a
    /// `notifications/cancelled` naming it, or the session's end.
    in_flight: HashMap<String, CancellationToken>,
}

struct Inner {
    sessions: HashMap<String, Session>,
    last_prune: Instant,
    /// Numbers the streams held open (their keys cannot be a JSON-RPC id's: those are JSON).
    streams: u64,
}

/// The sessions of one `jgate serve`, and rmcp's manager they live in.
pub struct McpSessions {
    manager: Arc<LocalSessionManager>,
    inner: Mutex<Inner>,
}

/// A request id claimed on a session; released (and the session's use noted) when dropped, i.e.
/// when the request's answer has been sent or abandoned.
pub struct IdClaim {
    sessions: Arc<McpSessions>,
    session: String,
    id: String,
    cancel: CancellationToken,
}

impl IdClaim {
    /// Fires when the client cancels this request or its session ends.
    pub fn cancel_token(&self) -> CancellationToken {
        self.cancel.clone()
    }
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
        Arc::new(McpSessions {
            manager,
            inner: Mutex::new(Inner { sessions: HashMap::new(), last_prune: Instant::now(), streams: 0 }),
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
                Session { agent: agent.to_string(), last_seen: now, noted: now, in_flight: HashMap::new() },
            );
            if now.duration_since(inner.last_prune) < PRUNE_EVERY {
                return false;
            }
            inner.last_prune = now;
            take_stale(&mut inner, now, IDLE)
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

    /// Forgets a session its client deleted; the requests in flight on it are cancelled.
    pub fn forget(&self, id: &str) {
        if let Some(s) = self.lock().sessions.remove(id) {
            s.in_flight.values().for_each(CancellationToken::cancel);
        }
    }

    /// Cancels a request in flight on a session (its client sent `notifications/cancelled`).
    pub fn cancel_request(&self, session: &str, id: &str) {
        if let Some(token) = self.lock().sessions.get(session).and_then(|s| s.in_flight.get(id)) {
            token.cancel();
        }
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
        if s.in_flight.contains_key(id) {
            return Err(ClaimRefused::Duplicate);
        }
        Ok(self.hold(s, session, id.to_string()))
    }

    /// Puts `key` in flight on session `s` (named `session`) until the claim is dropped.
    fn hold(self: &Arc<Self>, s: &mut Session, session: &str, key: String) -> IdClaim {
        let cancel = CancellationToken::new();
        s.in_flight.insert(key.clone(), cancel.clone());
        IdClaim { sessions: self.clone(), session: session.to_string(), id: key, cancel }
    }

    /// Holds a session in use while a stream of it (GET) is open; None for an unknown session
    /// (rmcp answers that request).
    pub fn stream_claim(self: &Arc<Self>, session: &str) -> Option<IdClaim> {
        let mut inner = self.lock();
        inner.streams += 1;
        let id = format!("stream {}", inner.streams);
        let s = inner.sessions.get_mut(session)?;
        s.last_seen = Instant::now();
        Some(self.hold(s, session, id))
    }

    /// How many sessions are tracked.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().sessions.len()
    }

    /// Closes the sessions idle for longer than [`IDLE`], as of `now`; returns how many.
    #[cfg(test)]
    async fn prune(&self, now: Instant) -> usize {
        let stale = take_stale(&mut self.lock(), now, IDLE);
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

/// Removes and returns the sessions with nothing in flight or open, unused for longer than `idle`.
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
        let limit = IDLE;
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
    async fn an_open_stream_keeps_its_session_and_requests_are_cancelled_by_id_or_session_end() {
        let manager = Arc::new(LocalSessionManager::default());
        let sessions = McpSessions::new(manager.clone());
        let (listening, other) = (open(&manager).await, open(&manager).await);
        sessions.bind(&listening, "bot").await;
        sessions.bind(&other, "bot").await;
        let stream = sessions.stream_claim(&listening).expect("stream");
        assert!(sessions.stream_claim("no-such-session").is_none());
        // A session whose client only listens is in use as long as its stream is open.
        assert_eq!(sessions.prune(Instant::now() + IDLE + Duration::from_secs(1)).await, 1);
        assert_eq!(sessions.owner(&listening).as_deref(), Some("bot"));
        assert_eq!(sessions.owner(&other), None);

        // notifications/cancelled reaches only the request it names.
        let (a, b) = (sessions.claim(&listening, "1").expect("1"), sessions.claim(&listening, "\"1\"").expect("'1'"));
        sessions.cancel_request(&listening, "\"1\"");
        sessions.cancel_request("no-such-session", "1");
        assert!(!a.cancel_token().is_cancelled() && b.cancel_token().is_cancelled());
        assert!(!stream.cancel_token().is_cancelled());
        // The session's end cancels everything in flight on it.
        sessions.forget(&listening);
        assert!(a.cancel_token().is_cancelled() && stream.cancel_token().is_cancelled());
    }

    #[tokio::test]
    async fn opening_sessions_prunes_at_most_once_a_minute() {
        let manager = Arc::new(LocalSessionManager::default());
        let sessions = McpSessions::new(manager.clone());
        let t0 = Instant::now();
        let idle = IDLE;
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
