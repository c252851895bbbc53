//! MCP sessions shared by replicas (issue #13): clients on protocol revisions before 2026-07-28
//! open a session with `initialize` and send its id with every request. Behind a load balancer
//! without sticky routing the next request may reach another `jgate serve`; that replica finds
//! the session here, checks that the agent presenting it is the agent that opened it, and lets
//! rmcp restore it from the stored `initialize` parameters. The same lets a session outlive the
//! restart of the replica that opened it.
//!
//! - Only a SHA-256 of a session id is stored: the store does not hold ids a reader could present.
//! - A session is first stored without an agent (rmcp persists it inside the `initialize` request),
//!   then bound to its agent before the client is told its id; an unbound session restores for
//!   nobody, and a bound one is never bound again.
//! - Sessions unused for [`SESSION_LIFETIME`] are pruned; a replica serving a session notes its
//!   use at most every [`TOUCH_EVERY`], so no store write is made per request.

use std::time::Duration;

use sha2::{Digest, Sha256};
use sqlx::Row;

use crate::gate::Gate;
use crate::store::{StoreError, db, now_ms};

/// A session unused for this long is forgotten by every replica.
pub const SESSION_LIFETIME: Duration = Duration::from_secs(24 * 3600);
/// How often a replica serving a session notes its use in the store.
pub const TOUCH_EVERY: Duration = Duration::from_secs(600);

fn id_hash(id: &str) -> String {
    hex::encode(Sha256::digest(id.as_bytes()))
}

/// A session as another replica finds it.
#[derive(Debug, Clone)]
pub struct SharedSession {
    /// The agent that opened it (empty: not bound yet).
    pub agent: String,
    /// What rmcp needs to restore it (its `initialize` parameters, as JSON).
    pub state: String,
}

impl Gate {
    /// Stores a session rmcp has just opened (its state), not yet bound to an agent.
    pub async fn store_session_state(&self, id: &str, state: &str) -> Result<(), StoreError> {
        let now = now_ms();
        sqlx::query(self.store().sql(
            "INSERT INTO mcp_sessions (id_hash, agent, state, created_ms, used_ms) VALUES ($1, '', $2, $3, $3) \
             ON CONFLICT (id_hash) DO UPDATE SET state = excluded.state, used_ms = excluded.used_ms",
        ))
        .bind(id_hash(id))
        .bind(state)
        .bind(now)
        .execute(self.store().pool())
        .await
        .map_err(db("storing an MCP session"))?;
        Ok(())
    }

    /// Binds a stored session to the agent that opened it; a session already bound keeps its agent.
    pub async fn bind_session(&self, id: &str, agent: &str) -> Result<(), StoreError> {
        sqlx::query(self.store().sql("UPDATE mcp_sessions SET agent = $2 WHERE id_hash = $1 AND agent = ''"))
            .bind(id_hash(id))
            .bind(agent)
            .execute(self.store().pool())
            .await
            .map_err(db("binding an MCP session"))?;
        Ok(())
    }

    /// The stored session `id`, if it is still alive.
    pub async fn shared_session(&self, id: &str) -> Result<Option<SharedSession>, StoreError> {
        let oldest = now_ms() - SESSION_LIFETIME.as_millis() as i64;
        let row =
            sqlx::query(self.store().sql("SELECT agent, state FROM mcp_sessions WHERE id_hash = $1 AND used_ms >= $2"))
                .bind(id_hash(id))
                .bind(oldest)
                .fetch_optional(self.store().pool())
                .await
                .map_err(db("reading an MCP session"))?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(SharedSession {
            agent: row.try_get("agent").map_err(db("reading an MCP session"))?,
            state: row.try_get("state").map_err(db("reading an MCP session"))?,
        }))
    }

    /// Notes that session `id` is in use (see [`TOUCH_EVERY`]); `false` when the store no longer
    /// has it (its client ended it on another replica, or it was pruned).
    pub async fn touch_session(&self, id: &str) -> Result<bool, StoreError> {
        let done = sqlx::query(self.store().sql("UPDATE mcp_sessions SET used_ms = $2 WHERE id_hash = $1"))
            .bind(id_hash(id))
            .bind(now_ms())
            .execute(self.store().pool())
            .await
            .map_err(db("noting an MCP session's use"))?;
        Ok(done.rows_affected() > 0)
    }

    /// Forgets session `id` (its client ended it).
    pub async fn delete_session(&self, id: &str) -> Result<(), StoreError> {
        sqlx::query(self.store().sql("DELETE FROM mcp_sessions WHERE id_hash = $1"))
            .bind(id_hash(id))
            .execute(self.store().pool())
            .await
            .map_err(db("deleting an MCP session"))?;
        Ok(())
    }

    /// Forgets the sessions unused for [`SESSION_LIFETIME`]; how many.
    pub async fn prune_sessions(&self) -> Result<u64, StoreError> {
        let oldest = now_ms() - SESSION_LIFETIME.as_millis() as i64;
        let done = sqlx::query(self.store().sql("DELETE FROM mcp_sessions WHERE used_ms < $1"))
            .bind(oldest)
            .execute(self.store().pool())
            .await
            .map_err(db("pruning MCP sessions"))?;
        Ok(done.rows_affected())
    }
}
