//! Closing writes that lost their outcome: a process that stopped mid-write (`kill -9`, a crash,
//! a lost store) leaves an intent record and a row in `pending_writes`. Every open [`Gate`]
//! heartbeats; [`Gate::reconcile`] (run at start and periodically by `jgate serve` and `jgate mcp`)
//! resolves the writes of processes that stopped heartbeating against Jenkins and records their
//! outcome — "after jgate stopped: the build was queued as item 7 and ran as #12" — or says
//! plainly that the outcome is unknown. It also writes outcome records this process could not
//! write when its store was down.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::json;

use crate::audit::{Entry, Phase};
use crate::error::GateError;
use crate::gate::Gate;
use crate::store::now_ms;
use crate::writes::{KeyState, PendingRow};
use jenkins::model::QueueFate;

/// How often a process heartbeats.
const HEARTBEAT: Duration = Duration::from_secs(2);

/// What reconciliation found out about one write.
struct Resolution {
    outcome: String,
    build_number: Option<u64>,
    key: KeyState,
    answer: Option<serde_json::Value>,
}

impl Gate {
    /// Registers this process and keeps its heartbeat going while the gate lives.
    pub(crate) async fn start_heartbeat(&self) {
        if self.calls.heartbeat_started.swap(true, Ordering::SeqCst) {
            return;
        }
        let store = self.store().clone();
        let id = self.calls.process_id.clone();
        if let Err(e) = store.heartbeat(&id).await {
            tracing::warn!(error = %e, "could not register this process");
        }
        let alive = self.calls.alive.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = alive.cancelled() => return,
                    _ = tokio::time::sleep(HEARTBEAT) => {}
                }
                if let Err(e) = store.heartbeat(&id).await {
                    tracing::warn!(error = %e, "could not record this process's heartbeat");
                }
            }
        });
    }

    /// Runs [`Gate::reconcile`] now and then every `every`, until the gate is dropped.
    pub fn maintain(self: &Arc<Self>, every: Duration) {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                let Some(gate) = weak.upgrade() else { return };
                gate.start_heartbeat().await;
                match gate.reconcile().await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(closed = n, "reconciled writes whose outcome was not recorded"),
                    Err(e) => tracing::warn!(error = %e, "reconciliation failed; it runs again shortly"),
                }
                // Approvals nobody decided in time are closed (and audited) even when no call or
                // approver looks at them.
                gate.expire_approvals().await;
                drop(gate);
                tokio::time::sleep(every).await;
            }
        });
    }

    /// Records kept outcome records, then closes the writes of stopped processes. Returns how many
    /// writes were closed.
    pub async fn reconcile(&self) -> Result<usize, GateError> {
        let mut closed = 0;
        let kept: Vec<Entry> = std::mem::take(&mut *self.calls.unrecorded.lock().unwrap_or_else(|p| p.into_inner()));
        let mut still = Vec::new();
        for entry in kept {
            let id = entry.request_id.clone();
            match self.record(entry.clone()).await {
                Ok(_) => {
                    let _ = self.store().delete_pending(&id).await;
                    closed += 1;
                }
                Err(_) => still.push(entry),
            }
        }
        self.calls.unrecorded.lock().unwrap_or_else(|p| p.into_inner()).extend(still);

        let stale = self.calls.limits.process_stale_after.as_millis() as i64;
        for row in self.store().orphaned_writes(stale).await? {
            if row.process_id == self.calls.process_id {
                continue;
            }
            let Some(resolution) = self.resolve(&row).await else { continue };
            // One process closes each write: the first to take it over.
            if !self.store().claim_pending(&row.request_id, &row.process_id, &self.calls.process_id).await? {
                continue;
            }
            let mut entry: Entry = match serde_json::from_str(&row.entry) {
                Ok(e) => e,
                Err(e) => {
                    tracing::error!(error = %e, request = %row.request_id, "a write in flight has an unreadable intent");
                    continue;
                }
            };
            entry.phase = Phase::Outcome;
            entry.time_ms = now_ms();
            entry.duration_ms = Some(now_ms() - row.started_ms);
            entry.outcome = Some(resolution.outcome.clone());
            entry.build_number = resolution.build_number;
            entry.http_status = None;
            self.record(entry).await?;
            let _ = self
                .store()
                .update_key(
                    &row.request_id,
                    resolution.key,
                    row.queue_id,
                    resolution.build_number,
                    resolution.answer.as_ref(),
                    (resolution.answer.is_none()).then_some(resolution.outcome.as_str()),
                )
                .await;
            self.store().delete_pending(&row.request_id).await?;
            closed += 1;
        }
        self.store().forget_processes(stale.max(60_000)).await?;
        Ok(closed)
    }

    /// What became of an orphaned write. `None` when Jenkins cannot be asked right now (the write
    /// is tried again at the next round).
    async fn resolve(&self, row: &PendingRow) -> Option<Resolution> {
        let unknown = |what: &str| Resolution {
            outcome: format!("unknown: jgate stopped before recording how this {what} ended; check it in Jenkins"),
            build_number: None,
            key: KeyState::Unknown,
            answer: None,
        };
        // Writes that start a build record its queue item (and number) as they learn them: a
        // rebuild goes through trigger_build's path, a replay finds its run by its cause.
        if !crate::limits::TRIGGER_OPERATIONS.contains(&row.operation.as_str()) {
            return Some(unknown(&row.operation.replace('_', " ")));
        }
        let Some(queue_id) = row.queue_id else {
            if let Some(n) = row.build_number {
                return Some(started_as(n));
            }
            let outcome = unqueued_outcome(&row.operation, &row.entry);
            return Some(Resolution { outcome, build_number: None, key: KeyState::Unknown, answer: None });
        };
        if let Some(n) = row.build_number {
            return Some(ran(queue_id, n));
        }
        let conn = self.connection_for_call(&row.controller).await.ok()?;
        let job = jenkins::JobPath::parse(row.target.as_deref()?).ok()?;
        let broken = |outcome: String| Resolution { outcome, build_number: None, key: KeyState::Broken, answer: None };
        // Jenkins unreachable now: try again at the next round.
        Some(match conn.client.queue_item_fate(&job, queue_id).await.ok()? {
            QueueFate::Started(b) => ran(queue_id, b.number),
            QueueFate::Cancelled => broken(format!(
                "ok: after jgate stopped: the build queued as item {queue_id} was cancelled before it started"
            )),
            QueueFate::Waiting(_) => broken(format!(
                "ok: after jgate stopped: the build is queued as item {queue_id} and has not started yet — follow it with get_queue"
            )),
            QueueFate::Gone => broken(format!(
                "unknown: the build was queued as item {queue_id}, but Jenkins no longer knows the item and no build of the job came from it"
            )),
        })
    }

    /// Writes in flight for longer than `older_than` (for `jgate audit verify`).
    pub async fn open_writes(&self, older_than: Duration) -> Result<Vec<PendingRow>, GateError> {
        Ok(self.store().writes_in_flight(now_ms() - older_than.as_millis() as i64).await?)
    }
}

/// The outcome of a build-starting write that recorded neither a queue item nor a run: whether
/// anything started is unknown, and the outcome says where to look. `entry` is the write's
/// intent record (JSON), whose arguments name a replay's original build.
fn unqueued_outcome(operation: &str, entry: &str) -> String {
    if operation == "replay" {
        // Jenkins names no queue item for a replay: its run is known by its cause.
        let original = serde_json::from_str::<Entry>(entry)
            .ok()
            .and_then(|e| e.args.get("build").and_then(serde_json::Value::as_u64));
        format!(
            "unknown: jgate stopped before it identified the replay's new run; look for a build whose cause is \"Replayed #{}\" before replaying again",
            original.map_or_else(|| "N".to_string(), |n| n.to_string())
        )
    } else {
        "unknown: jgate stopped before Jenkins answered the trigger; a build may or may not have been queued — check get_job or get_queue".into()
    }
}

/// A run whose number was recorded, without a queue item (a replay found among the builds).
fn started_as(number: u64) -> Resolution {
    Resolution {
        outcome: format!("ok: after jgate stopped: the new run had started as #{number}"),
        build_number: Some(number),
        key: KeyState::Done,
        answer: Some(json!({ "build": { "number": number }, "reconciled": true })),
    }
}

fn ran(queue_id: u64, number: u64) -> Resolution {
    Resolution {
        outcome: format!("ok: after jgate stopped: the build was queued as item {queue_id} and ran as #{number}"),
        build_number: Some(number),
        key: KeyState::Done,
        answer: Some(json!({ "queue_id": queue_id, "build": { "number": number }, "reconciled": true })),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::audit::{Phase, Surface};
    use crate::ops::Op as _;

    /// A replay's intent as the call path records it (script summarized, secrets masked).
    fn replay_intent(build: u64) -> String {
        let args = json!({"job": "pipe", "build": build, "script": "node { echo 'x' }"});
        let recorded =
            crate::call::summarize_args(crate::call::redact_args(&args), crate::ops::rebuild::Replay::SUMMARIZED);
        let entry = Entry {
            time_ms: 1_700_000_000_000,
            request_id: "req-1".into(),
            agent: "release-bot".into(),
            key_id: None,
            surface: Surface::Mcp,
            client_addr: None,
            controller: "prod".into(),
            operation: "replay".into(),
            target: Some("pipe".into()),
            args: recorded,
            phase: Phase::Intent,
            allowed: true,
            grant: Some(1),
            reason: "allowed".into(),
            outcome: None,
            http_status: None,
            duration_ms: None,
            redactions: 0,
            build_number: None,
        };
        serde_json::to_string(&entry).expect("entry")
    }

    #[test]
    fn an_unidentified_replay_names_the_cause_to_look_for() {
        let text = unqueued_outcome("replay", &replay_intent(7));
        assert!(text.starts_with("unknown: ") && text.contains("\"Replayed #7\""), "{text}");
        // An unreadable intent still says what to look for.
        assert!(unqueued_outcome("replay", "{").contains("\"Replayed #N\""));
        let trigger = unqueued_outcome("trigger_build", &replay_intent(7));
        assert!(trigger.starts_with("unknown: ") && trigger.contains("may or may not have been queued"), "{trigger}");
    }
}
