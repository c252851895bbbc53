//! Writes in flight, trigger identities and live processes, in the store (SQLite or PostgreSQL
//! alike), so that a write's outcome survives a crash and an idempotency key holds across
//! concurrent calls, restarts and replicas.
//!
//! - `pending_writes`: one row per agent write from its intent record to its outcome record. A
//!   trigger's queue item is written here the moment Jenkins accepts it. Rows left by a process
//!   that stopped heartbeating are reconciled by another process ([`crate::call`]).
//! - `idempotency_keys`: a trigger's identity (agent, controller, key), reserved *before* Jenkins
//!   is called, with the job and parameters it belongs to ([`KeyState`]). Keys expire after
//!   [`KEY_TTL_MS`].
//! - `jgate_processes`: each open [`crate::Gate`] heartbeats every few seconds.
//! - `trigger_slots`: identical triggers serialised across processes and replicas (see
//!   [`Store::take_trigger_slot`]).

use serde_json::Value;
use sqlx::Row;

use crate::store::{Store, StoreError, db, now_ms};

/// How long an idempotency key is remembered (24 hours).
pub const KEY_TTL_MS: i64 = 24 * 3600 * 1000;

/// Where a reserved trigger stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyState {
    /// A call holds the key and has not heard from Jenkins yet.
    Reserved,
    /// Jenkins accepted the trigger (a queue item exists); the call is still waiting.
    Accepted,
    /// Finished: `answer` is the first call's answer.
    Done,
    /// Jenkins provably did not schedule anything: the key may be used again.
    Failed,
    /// Jenkins queued the build but the call failed afterwards: `answer` says what happened.
    Broken,
    /// The call was interrupted before Jenkins answered: a build may or may not exist.
    Unknown,
}

impl KeyState {
    fn as_str(self) -> &'static str {
        match self {
            KeyState::Reserved => "reserved",
            KeyState::Accepted => "accepted",
            KeyState::Done => "done",
            KeyState::Failed => "failed",
            KeyState::Broken => "broken",
            KeyState::Unknown => "unknown",
        }
    }

    fn parse(s: &str) -> KeyState {
        match s {
            "reserved" => KeyState::Reserved,
            "accepted" => KeyState::Accepted,
            "done" => KeyState::Done,
            "failed" => KeyState::Failed,
            "broken" => KeyState::Broken,
            _ => KeyState::Unknown,
        }
    }
}

/// An idempotency key's row.
#[derive(Debug, Clone)]
pub struct KeyRow {
    pub fingerprint: String,
    pub request_id: String,
    pub state: KeyState,
    pub queue_id: Option<u64>,
    pub build_number: Option<u64>,
    pub answer: Option<String>,
    pub created_ms: i64,
}

/// A write between intent and outcome.
#[derive(Debug, Clone)]
pub struct PendingRow {
    pub request_id: String,
    pub process_id: String,
    pub operation: String,
    pub controller: String,
    pub target: Option<String>,
    pub queue_id: Option<u64>,
    pub build_number: Option<u64>,
    /// The intent's audit entry, as JSON.
    pub entry: String,
    pub started_ms: i64,
}

/// A trigger slot's holder whose process has not heartbeated for this long holds nothing.
const SLOT_HOLDER_STALE_MS: i64 = 30_000;
/// Free trigger slots unused for this long are deleted.
const SLOT_TTL_MS: i64 = 24 * 3600 * 1000;

fn slot_key(fingerprint: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(fingerprint.as_bytes()))
}

fn opt_u64(v: Option<i64>) -> Option<u64> {
    v.and_then(|n| u64::try_from(n).ok())
}

fn opt_i64(v: Option<u64>) -> Option<i64> {
    v.and_then(|n| i64::try_from(n).ok())
}

impl Store {
    // ------------------------------------------------------------------------------------------
    // processes

    /// Records that `process_id` is alive now.
    pub async fn heartbeat(&self, process_id: &str) -> Result<(), StoreError> {
        let now = now_ms();
        let updated = sqlx::query(self.sql("UPDATE jgate_processes SET heartbeat_ms = $1 WHERE process_id = $2"))
            .bind(now)
            .bind(process_id)
            .execute(self.pool())
            .await
            .map_err(db("recording the process heartbeat"))?;
        if updated.rows_affected() == 0 {
            sqlx::query(self.sql("INSERT INTO jgate_processes (process_id, heartbeat_ms) VALUES ($1, $2)"))
                .bind(process_id)
                .bind(now)
                .execute(self.pool())
                .await
                .map_err(db("registering the process"))?;
        }
        Ok(())
    }

    /// Forgets processes silent for longer than `stale_ms` (their writes are reconciled first).
    pub async fn forget_processes(&self, stale_ms: i64) -> Result<(), StoreError> {
        sqlx::query(self.sql(
            "DELETE FROM jgate_processes WHERE heartbeat_ms < $1 \
             AND process_id NOT IN (SELECT process_id FROM pending_writes)",
        ))
        .bind(now_ms() - stale_ms)
        .execute(self.pool())
        .await
        .map_err(db("forgetting stopped processes"))?;
        Ok(())
    }

    // ------------------------------------------------------------------------------------------
    // pending writes

    /// Records a write in flight (after its intent record, before Jenkins is called).
    pub async fn insert_pending(&self, row: &PendingRow) -> Result<(), StoreError> {
        let now = now_ms();
        sqlx::query(self.sql(
            "INSERT INTO pending_writes (request_id, process_id, operation, controller, target, queue_id, build_number, entry, started_ms, updated_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        ))
        .bind(&row.request_id)
        .bind(&row.process_id)
        .bind(&row.operation)
        .bind(&row.controller)
        .bind(&row.target)
        .bind(opt_i64(row.queue_id))
        .bind(opt_i64(row.build_number))
        .bind(&row.entry)
        .bind(row.started_ms)
        .bind(now)
        .execute(self.pool())
        .await
        .map_err(db("recording a write in flight"))?;
        Ok(())
    }

    /// Records what Jenkins said about a write in flight (its queue item, then its build).
    pub async fn update_pending(
        &self,
        request_id: &str,
        queue_id: Option<u64>,
        build_number: Option<u64>,
    ) -> Result<(), StoreError> {
        sqlx::query(self.sql(
            "UPDATE pending_writes SET queue_id = COALESCE($1, queue_id), build_number = COALESCE($2, build_number), updated_ms = $3 \
             WHERE request_id = $4",
        ))
        .bind(opt_i64(queue_id))
        .bind(opt_i64(build_number))
        .bind(now_ms())
        .bind(request_id)
        .execute(self.pool())
        .await
        .map_err(db("recording what Jenkins answered"))?;
        Ok(())
    }

    /// The write's outcome is recorded: it is no longer in flight.
    pub async fn delete_pending(&self, request_id: &str) -> Result<(), StoreError> {
        sqlx::query(self.sql("DELETE FROM pending_writes WHERE request_id = $1"))
            .bind(request_id)
            .execute(self.pool())
            .await
            .map_err(db("closing a write in flight"))?;
        Ok(())
    }

    fn pending_of(r: &sqlx::any::AnyRow) -> Result<PendingRow, StoreError> {
        let get = "reading a write in flight";
        Ok(PendingRow {
            request_id: r.try_get("request_id").map_err(db(get))?,
            process_id: r.try_get("process_id").map_err(db(get))?,
            operation: r.try_get("operation").map_err(db(get))?,
            controller: r.try_get("controller").map_err(db(get))?,
            target: r.try_get("target").map_err(db(get))?,
            queue_id: opt_u64(r.try_get("queue_id").map_err(db(get))?),
            build_number: opt_u64(r.try_get("build_number").map_err(db(get))?),
            entry: r.try_get("entry").map_err(db(get))?,
            started_ms: r.try_get("started_ms").map_err(db(get))?,
        })
    }

    /// Writes whose process has not heartbeated for `stale_ms` (or never registered).
    pub async fn orphaned_writes(&self, stale_ms: i64) -> Result<Vec<PendingRow>, StoreError> {
        let rows = sqlx::query(self.sql(
            "SELECT w.* FROM pending_writes w LEFT JOIN jgate_processes p ON p.process_id = w.process_id \
             WHERE p.heartbeat_ms IS NULL OR p.heartbeat_ms < $1 ORDER BY w.started_ms",
        ))
        .bind(now_ms() - stale_ms)
        .fetch_all(self.pool())
        .await
        .map_err(db("reading writes in flight"))?;
        rows.iter().map(Self::pending_of).collect()
    }

    /// Every write in flight started before `before_ms`.
    pub async fn writes_in_flight(&self, before_ms: i64) -> Result<Vec<PendingRow>, StoreError> {
        let rows = sqlx::query(self.sql("SELECT * FROM pending_writes WHERE started_ms < $1 ORDER BY started_ms"))
            .bind(before_ms)
            .fetch_all(self.pool())
            .await
            .map_err(db("reading writes in flight"))?;
        rows.iter().map(Self::pending_of).collect()
    }

    /// Takes an orphaned write over for `process_id`, so that one process reconciles it. False
    /// when another process took it first.
    pub async fn claim_pending(&self, request_id: &str, from: &str, to: &str) -> Result<bool, StoreError> {
        let r = sqlx::query(self.sql(
            "UPDATE pending_writes SET process_id = $1, updated_ms = $2 WHERE request_id = $3 AND process_id = $4",
        ))
        .bind(to)
        .bind(now_ms())
        .bind(request_id)
        .bind(from)
        .execute(self.pool())
        .await
        .map_err(db("taking over a write in flight"))?;
        Ok(r.rows_affected() == 1)
    }

    // ------------------------------------------------------------------------------------------
    // idempotency keys

    fn key_of(r: &sqlx::any::AnyRow) -> Result<KeyRow, StoreError> {
        let get = "reading an idempotency key";
        let state: String = r.try_get("state").map_err(db(get))?;
        Ok(KeyRow {
            fingerprint: r.try_get("fingerprint").map_err(db(get))?,
            request_id: r.try_get("request_id").map_err(db(get))?,
            state: KeyState::parse(&state),
            queue_id: opt_u64(r.try_get("queue_id").map_err(db(get))?),
            build_number: opt_u64(r.try_get("build_number").map_err(db(get))?),
            answer: r.try_get("answer").map_err(db(get))?,
            created_ms: r.try_get("created_ms").map_err(db(get))?,
        })
    }

    /// The key's row, if it is reserved.
    pub async fn idempotency_key(
        &self,
        agent: &str,
        controller: &str,
        key: &str,
    ) -> Result<Option<KeyRow>, StoreError> {
        let row = sqlx::query(
            self.sql("SELECT * FROM idempotency_keys WHERE agent = $1 AND controller = $2 AND idem_key = $3"),
        )
        .bind(agent)
        .bind(controller)
        .bind(key)
        .fetch_optional(self.pool())
        .await
        .map_err(db("reading an idempotency key"))?;
        row.as_ref().map(Self::key_of).transpose()
    }

    /// Reserves the key for `request_id`. False when it is already reserved (by anyone): the
    /// primary key decides, so two calls — in one process or in two replicas — cannot both win.
    /// An expired key is removed first.
    pub async fn reserve_key(
        &self,
        agent: &str,
        controller: &str,
        key: &str,
        fingerprint: &str,
        request_id: &str,
    ) -> Result<bool, StoreError> {
        let now = now_ms();
        sqlx::query(self.sql(
            "DELETE FROM idempotency_keys WHERE agent = $1 AND controller = $2 AND idem_key = $3 AND created_ms < $4",
        ))
        .bind(agent)
        .bind(controller)
        .bind(key)
        .bind(now - KEY_TTL_MS)
        .execute(self.pool())
        .await
        .map_err(db("expiring an idempotency key"))?;
        let inserted = sqlx::query(self.sql(
            "INSERT INTO idempotency_keys (agent, controller, idem_key, fingerprint, request_id, state, created_ms, updated_ms) \
             VALUES ($1, $2, $3, $4, $5, 'reserved', $6, $6) ON CONFLICT DO NOTHING",
        ))
        .bind(agent)
        .bind(controller)
        .bind(key)
        .bind(fingerprint)
        .bind(request_id)
        .bind(now)
        .execute(self.pool())
        .await
        .map_err(db("reserving an idempotency key"))?;
        Ok(inserted.rows_affected() == 1)
    }

    /// Takes over a key whose first trigger provably started nothing (state `failed`).
    pub async fn retake_key(
        &self,
        agent: &str,
        controller: &str,
        key: &str,
        request_id: &str,
    ) -> Result<bool, StoreError> {
        let r = sqlx::query(self.sql(
            "UPDATE idempotency_keys SET request_id = $1, state = 'reserved', answer = NULL, updated_ms = $2 \
             WHERE agent = $3 AND controller = $4 AND idem_key = $5 AND state = 'failed'",
        ))
        .bind(request_id)
        .bind(now_ms())
        .bind(agent)
        .bind(controller)
        .bind(key)
        .execute(self.pool())
        .await
        .map_err(db("taking over an idempotency key"))?;
        Ok(r.rows_affected() == 1)
    }

    /// Moves the key held by `request_id` on.
    pub async fn update_key(
        &self,
        request_id: &str,
        state: KeyState,
        queue_id: Option<u64>,
        build_number: Option<u64>,
        answer: Option<&Value>,
        error: Option<&str>,
    ) -> Result<(), StoreError> {
        let answer = match (answer, error) {
            (Some(v), _) => Some(v.to_string()),
            (None, Some(e)) => Some(e.to_string()),
            (None, None) => None,
        };
        sqlx::query(self.sql(
            "UPDATE idempotency_keys SET state = $1, queue_id = COALESCE($2, queue_id), build_number = COALESCE($3, build_number), \
             answer = COALESCE($4, answer), updated_ms = $5 WHERE request_id = $6",
        ))
        .bind(state.as_str())
        .bind(opt_i64(queue_id))
        .bind(opt_i64(build_number))
        .bind(answer)
        .bind(now_ms())
        .bind(request_id)
        .execute(self.pool())
        .await
        .map_err(db("recording a trigger's progress"))?;
        Ok(())
    }
}

impl Store {
    /// Takes the slot of identical triggers `fingerprint` for the write `holder` (its request
    /// id) if it is free: never taken, released, or held by a write that is no longer open or
    /// whose process stopped heartbeating. `Some(previous queue item)` when taken; `None` when
    /// another write holds it (try again shortly).
    pub async fn take_trigger_slot(&self, fingerprint: &str, holder: &str) -> Result<Option<Option<u64>>, StoreError> {
        let key = slot_key(fingerprint);
        let now = now_ms();
        let doing = "taking a trigger slot";
        let inserted = sqlx::query(self.sql(
            "INSERT INTO trigger_slots (fingerprint, holder, queue_id, taken_ms) VALUES ($1, $2, NULL, $3) \
             ON CONFLICT (fingerprint) DO NOTHING",
        ))
        .bind(&key)
        .bind(holder)
        .bind(now)
        .execute(self.pool())
        .await
        .map_err(db(doing))?;
        if inserted.rows_affected() == 1 {
            return Ok(Some(None));
        }
        let Some(row) = sqlx::query(self.sql("SELECT holder, queue_id FROM trigger_slots WHERE fingerprint = $1"))
            .bind(&key)
            .fetch_optional(self.pool())
            .await
            .map_err(db(doing))?
        else {
            return Ok(None);
        };
        let seen: String = row.try_get("holder").map_err(db(doing))?;
        let previous = opt_u64(row.try_get("queue_id").map_err(db(doing))?);
        if !seen.is_empty() {
            let live = sqlx::query(self.sql(
                "SELECT w.request_id FROM pending_writes w JOIN jgate_processes p ON p.process_id = w.process_id \
                 WHERE w.request_id = $1 AND p.heartbeat_ms >= $2",
            ))
            .bind(&seen)
            .bind(now - SLOT_HOLDER_STALE_MS)
            .fetch_optional(self.pool())
            .await
            .map_err(db(doing))?;
            if live.is_some() {
                return Ok(None);
            }
        }
        // Taken only if nobody took it since it was read.
        let taken = sqlx::query(
            self.sql("UPDATE trigger_slots SET holder = $1, taken_ms = $2 WHERE fingerprint = $3 AND holder = $4"),
        )
        .bind(holder)
        .bind(now)
        .bind(&key)
        .bind(&seen)
        .execute(self.pool())
        .await
        .map_err(db(doing))?;
        Ok((taken.rows_affected() == 1).then_some(previous))
    }

    /// Releases the slot `holder` took, with the queue item its trigger made (if Jenkins took it;
    /// otherwise the previous one stays), and deletes free slots unused for a day.
    pub async fn release_trigger_slot(
        &self,
        fingerprint: &str,
        holder: &str,
        queue_id: Option<u64>,
    ) -> Result<(), StoreError> {
        let now = now_ms();
        let doing = "releasing a trigger slot";
        sqlx::query(self.sql(
            "UPDATE trigger_slots SET holder = '', queue_id = COALESCE($1, queue_id), taken_ms = $2 \
             WHERE fingerprint = $3 AND holder = $4",
        ))
        .bind(opt_i64(queue_id))
        .bind(now)
        .bind(slot_key(fingerprint))
        .bind(holder)
        .execute(self.pool())
        .await
        .map_err(db(doing))?;
        sqlx::query(self.sql("DELETE FROM trigger_slots WHERE holder = '' AND taken_ms < $1"))
            .bind(now - SLOT_TTL_MS)
            .execute(self.pool())
            .await
            .map_err(db(doing))?;
        Ok(())
    }
}
