//! The one path every agent call takes: **begin** → **executor** → **finish**.
//!
//! - [`Gate::begin`]: identity → operation → *all* its targets, each with the access it needs →
//!   policy on the canonical, Java-folded names → rate limits ([`crate::limits`]) → audit
//!   "intent" (writes; fail closed). A denial or a limit's refusal is audited and ends the call.
//! - The executor: a typed operation from [`crate::ops`] (MCP, CLI) — or, later, a raw forward
//!   (the Jenkins-compatible proxy). Executors have no policy or audit code; they act only on the
//!   canonical targets `begin` returned and their answer is untrusted Jenkins data.
//! - [`Gate::finish`]: every string of the answer (and of an error) through the sanitizer, the
//!   answer's size bounded, the outcome audited with the redaction count.
//!
//! The gate owns request ids (random, unique across sessions and processes), caps the calls an
//! agent has in flight, bounds every call by a deadline, and records cancellation as an outcome.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::approvals::Hold;
use crate::audit::{Entry, Phase};
use crate::catalog::{Access, Operation};
use crate::error::GateError;
use crate::gate::{Caller, Gate};
use crate::ops::{self, Exec, Facts, Need, Op, ProgressSink, Runner, TriggerSlots};
use crate::policy::{self, Grant};
use crate::sanitize::{Clean, Sanitizer, Untrusted};
use crate::store::now_ms;
use crate::writes::PendingRow;

/// Limits of the call path (all configurable by the administrator).
#[derive(Debug, Clone)]
pub struct Limits {
    /// Calls one agent may have in flight at once; further calls are refused until one ends.
    pub max_in_flight_per_agent: usize,
    /// The longest a read may take, upstream streams included.
    pub read_deadline: Duration,
    /// The longest a write may take (a trigger that waits for its build's result included).
    pub write_deadline: Duration,
    /// The largest answer (compact JSON bytes) returned; larger answers are refused with advice.
    /// Under 1 MiB with room for the text rendering MCP clients also receive.
    pub max_answer_bytes: usize,
    /// A process that has not heartbeated for this long is taken for stopped: another process
    /// reconciles its writes in flight.
    pub process_stale_after: Duration,
    /// How long a call held for approval waits for the decision before it answers `pending`.
    pub approval_wait: Duration,
    /// How long an approval can be decided, and an approved call sent again, before it expires.
    pub approval_lifetime: Duration,
    /// Where new approval requests are announced (a chat tool's webhook), if anywhere.
    pub approval_webhook: Option<crate::approvals::ApprovalWebhook>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_in_flight_per_agent: 8,
            read_deadline: Duration::from_secs(120),
            write_deadline: Duration::from_secs(3700),
            max_answer_bytes: 320 * 1024,
            process_stale_after: Duration::from_secs(10),
            approval_wait: Duration::from_secs(60),
            approval_lifetime: Duration::from_secs(3600),
            approval_webhook: None,
        }
    }
}

/// The call path's per-process state.
pub struct CallState {
    pub limits: Limits,
    in_flight: std::sync::Mutex<HashMap<String, Arc<Semaphore>>>,
    pub(crate) triggers: TriggerSlots,
    /// This process, for writes in flight (random per open, so a restart is a new process).
    pub(crate) process_id: String,
    pub(crate) heartbeat_started: std::sync::atomic::AtomicBool,
    /// Cancelled when the gate is dropped: stops the heartbeat.
    pub(crate) alive: CancellationToken,
    /// Outcome records that could not be written yet; retried by [`Gate::reconcile`].
    pub(crate) unrecorded: std::sync::Mutex<Vec<Entry>>,
}

impl Default for CallState {
    fn default() -> Self {
        CallState {
            limits: Limits::default(),
            in_flight: Default::default(),
            triggers: Default::default(),
            process_id: format!("proc-{}", hex::encode(rand::random::<[u8; 8]>())),
            heartbeat_started: Default::default(),
            alive: CancellationToken::new(),
            unrecorded: Default::default(),
        }
    }
}

impl Drop for CallState {
    fn drop(&mut self) {
        self.alive.cancel();
    }
}

/// What a surface passes along with a call.
#[derive(Default)]
pub struct CallOptions {
    /// Progress of long calls (waiting for a build).
    pub progress: Option<ProgressSink>,
    /// Fires when the client cancels the call or goes away: the call stops, upstream streams
    /// are dropped, and the outcome is audited as cancelled.
    pub cancel: Option<CancellationToken>,
    /// A second such token (MCP: the request's own, and its connection's going away), so that a
    /// surface need not run a task to join them.
    pub also_cancel: Option<CancellationToken>,
}

impl CallOptions {
    /// Resolves when either token fires; never without one.
    pub(crate) async fn cancelled(&self) {
        async fn one(t: Option<&CancellationToken>) {
            match t {
                Some(t) => t.cancelled().await,
                None => std::future::pending().await,
            }
        }
        tokio::select! {
            _ = one(self.cancel.as_ref()) => {}
            _ = one(self.also_cancel.as_ref()) => {}
        }
    }
}

/// A call that `begin` allowed: what `finish` needs.
pub struct Begun {
    entry: Entry,
    /// The write's row in `pending_writes` (writes only).
    pending: bool,
    access: Access,
    started: Instant,
    /// The canonical path of each need (what the executor may act on).
    pub targets: Vec<Option<String>>,
    pub grants: Vec<Grant>,
    /// The last progress value sent while the call waited for approval, if any.
    progress_floor: Option<f64>,
    /// The answer's budget (typed reads; `crate::budget`). None: only `max_answer_bytes`.
    budget: Option<crate::budget::Budget>,
    /// The keys the answer is narrowed to (typed reads; `crate::fields`). None: all.
    fields: Option<crate::fields::Selection>,
    _permit: OwnedSemaphorePermit,
}

impl Begun {
    /// The gate's id of this call (its audit records' `request_id`).
    pub fn request_id(&self) -> String {
        self.entry.request_id.clone()
    }
}

/// What `begin` leads to: the call goes on, or it was held for approval and answers `pending`.
pub(crate) enum Started {
    Go(Box<Begun>),
    Held(Clean<Value>),
}

/// A held call's `pending` answer as an error, for surfaces that cannot answer it as a result
/// (the Jenkins proxy: a Jenkins client would read any success as done). 409: not performed.
fn held_error(answer: &Value) -> GateError {
    let message = answer.get("message").and_then(Value::as_str).unwrap_or("held for approval").to_string();
    GateError::Failed { message, status: Some(409) }
}

/// The policy's answers for all of a call's needs.
struct Decided {
    /// The first need's deciding grant and canonical target (the audit's).
    grant: Option<i64>,
    target: Option<String>,
    targets: Vec<Option<String>>,
    reasons: Vec<String>,
    /// Some need is allowed only with an administrator's approval.
    approval: bool,
}

/// Every need through [`policy::decide`]: the need's group, access and kind of target. The
/// first refusal ends it (with the first need's grant and target so far, and the reason).
fn decide_needs(
    grants: &[Grant],
    agent: &str,
    controller: &str,
    meta: &Operation,
    needs: &[Need],
    params: &[(String, String)],
) -> Result<Decided, (Decided, String)> {
    let mut d = Decided {
        grant: None,
        target: None,
        targets: Vec::with_capacity(needs.len()),
        reasons: Vec::new(),
        approval: false,
    };
    for (i, need) in needs.iter().enumerate() {
        let mut op = meta.clone();
        op.group = need.group;
        op.access = need.access;
        op.target = need.target;
        let decision = policy::decide(
            grants,
            &policy::Request {
                agent,
                controller,
                op: &op,
                job: need.path.as_deref(),
                params: if i == 0 { params } else { &[] },
            },
        );
        if i == 0 {
            d.grant = decision.grant;
            d.target = decision.job.clone();
        }
        let reason = if i == 0 { decision.reason.clone() } else { format!("{}: {}", need.role, decision.reason) };
        if !decision.allowed {
            return Err((d, reason));
        }
        d.approval |= decision.approval;
        d.reasons.push(reason);
        d.targets.push(decision.job);
    }
    Ok(d)
}

/// A fresh request id: 96 random bits, unique across sessions, replicas and restarts.
pub fn new_request_id() -> String {
    format!("req-{}", hex::encode(rand::random::<[u8; 12]>()))
}

/// The tools an agent may see: an operation is listed when its group is granted at the level it
/// needs somewhere. The only copy of this rule.
pub fn visible_operations(grants: &[Grant]) -> Vec<&'static Operation> {
    ops::OPERATIONS.iter().copied().filter(|op| policy::could_allow(grants, op)).collect()
}

impl Gate {
    /// [`Gate::call_with`] without progress or cancellation, returning the clean answer.
    pub async fn call(&self, caller: &Caller, controller: &str, op: &str, args: Value) -> Result<Value, GateError> {
        Ok(self.call_with(caller, Some(controller), op, args, CallOptions::default()).await?.into_inner())
    }

    /// The one path for a typed call: `args` are the operation's JSON arguments (`controller`
    /// may be among them, or given as `controller`; none = the only one configured).
    pub async fn call_with(
        &self,
        caller: &Caller,
        controller: Option<&str>,
        op: &str,
        mut args: Value,
        opts: CallOptions,
    ) -> Result<Clean<Value>, GateError> {
        let from_args = args.as_object_mut().and_then(|m| m.remove("controller"));
        let named = match (&from_args, controller) {
            (Some(Value::String(c)), _) => Some(c.clone()),
            (Some(Value::Null) | None, c) => c.map(str::to_string),
            (Some(_), _) => return Err(GateError::Invalid("controller must be a string (a controller's name)".into())),
        };
        let controller = self.resolve_controller(named.as_deref()).await?;
        let runner = TypedCall { gate: self, caller, controller: &controller, args, opts };
        match ops::dispatch(op, runner).await {
            Some(r) => r,
            None => Err(GateError::Invalid(format!("unknown operation '{op}'; `jgate operations` lists them"))),
        }
    }

    fn permit(&self, agent: &str) -> Option<OwnedSemaphorePermit> {
        let limit = self.calls.limits.max_in_flight_per_agent.max(1);
        let sem = {
            let mut map = self.calls.in_flight.lock().unwrap_or_else(|p| p.into_inner());
            // Forget idle agents so the map stays as small as the set of active agents.
            map.retain(|_, s| s.available_permits() < limit || Arc::strong_count(s) > 1);
            map.entry(agent.to_string()).or_insert_with(|| Arc::new(Semaphore::new(limit))).clone()
        };
        sem.try_acquire_owned().ok()
    }

    pub(crate) fn entry(&self, caller: &Caller, controller: &str, op: &Operation, args: Value) -> Entry {
        Entry {
            time_ms: now_ms(),
            request_id: new_request_id(),
            agent: caller.agent.clone(),
            key_id: caller.key_id.clone(),
            surface: caller.surface,
            client_addr: caller.client_addr.clone(),
            controller: controller.to_string(),
            operation: op.name.to_string(),
            target: None,
            args,
            phase: Phase::Read,
            allowed: false,
            grant: None,
            reason: String::new(),
            outcome: None,
            http_status: None,
            duration_ms: None,
            redactions: 0,
            build_number: None,
        }
    }

    /// Records a refused call and returns the error for it.
    pub(crate) async fn refuse(&self, mut entry: Entry, reason: String, err: GateError) -> GateError {
        entry.phase = Phase::Denied;
        entry.allowed = false;
        entry.reason = reason;
        if let Err(e) = self.record(entry).await {
            tracing::error!(error = %e, "could not audit a refused call");
        }
        err
    }

    /// Begin: every target through the policy, then the intent (writes; fail closed). A change
    /// that needs approval cannot wait here (no arguments to bind it to, no progress): it is
    /// refused; typed calls hold it ([`crate::approvals`]).
    pub async fn begin(
        &self,
        caller: &Caller,
        controller: &str,
        meta: &'static Operation,
        needs: Vec<Need>,
        params: &[(String, String)],
        audit_args: Value,
    ) -> Result<Begun, GateError> {
        match self
            .begin_held(caller, controller, meta, needs, params, audit_args, None, &CallOptions::default())
            .await?
        {
            Started::Go(begun) => Ok(*begun),
            Started::Held(answer) => Err(held_error(answer.as_ref())),
        }
    }

    /// [`Gate::begin`], holding a change that needs approval: `raw_args` (the call's arguments
    /// as sent, unredacted) bind the approval to this exact call; `opts` carry its progress and
    /// cancellation while it waits.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn begin_held(
        &self,
        caller: &Caller,
        controller: &str,
        meta: &'static Operation,
        needs: Vec<Need>,
        params: &[(String, String)],
        audit_args: Value,
        raw_args: Option<&Value>,
        opts: &CallOptions,
    ) -> Result<Started, GateError> {
        let mut entry = self.entry(caller, controller, meta, audit_args);
        entry.target = needs.first().and_then(|n| n.path.clone());
        // The surface's own id (e.g. a JSON-RPC id, unique only per session) ties logs to the
        // client; the audit uses the gate's unique request id.
        tracing::debug!(request_id = %entry.request_id, surface_request = %caller.request_id,
            agent = %caller.agent, operation = meta.name, "call");
        let Some(permit) = self.permit(&caller.agent) else {
            let why = format!(
                "agent {} already has {} calls in flight (the limit); wait for one to finish",
                caller.agent, self.calls.limits.max_in_flight_per_agent
            );
            return Err(self.refuse(entry, why.clone(), GateError::Busy(why)).await);
        };
        let (mut grants, limits) = self.grants_and_limits_for_call(&caller.agent).await?;
        let decided = match decide_needs(&grants, &caller.agent, controller, meta, &needs, params) {
            Ok(d) => d,
            Err((d, reason)) => {
                entry.grant = d.grant;
                entry.target = d.target.or(entry.target.take());
                return Err(self.refuse(entry, reason.clone(), GateError::Denied { reason }).await);
            }
        };
        entry.grant = decided.grant;
        entry.target = decided.target.clone().or(entry.target.take());
        entry.allowed = true;
        entry.reason = decided.reasons.join("; ");
        // Rate limits and quotas: after the decision (the deciding grant's quota), before a hold
        // or an intent. No store access for an agent without limits (crate::limits).
        let deciding = decided.grant.and_then(|id| grants.iter().find(|g| g.id == id));
        if let Some(refusal) = self.check_limits(&caller.agent, meta, limits, deciding).await? {
            return Err(self.refuse(entry, refusal.reason.clone(), refusal.into_error()).await);
        }
        let mut targets = decided.targets;
        let mut progress_floor = None;
        if decided.approval {
            // Held between the decision and the intent: nothing is in flight while it waits.
            let Some(raw) = raw_args else {
                let reason = format!(
                    "{}; this change needs an administrator's approval, which this surface cannot wait for: use the MCP tool or `jgate call`",
                    entry.reason
                );
                return Err(self.refuse(entry, reason.clone(), GateError::Denied { reason }).await);
            };
            let binding = crate::approvals::Binding::of(meta.name, controller, &targets, params, raw);
            // The approver reads the call as sent (secret-looking values masked): a replay's
            // script whole, though the audit keeps only its length and hash.
            match self.hold(&entry, &binding, &redact_args(raw), opts).await? {
                Hold::Pending(answer) => return Ok(Started::Held(answer)),
                Hold::Released(note, sent) => {
                    progress_floor = sent;
                    // Approval never outlasts the policy: decided again on the grants as they are now.
                    grants = self.grants_for_call(&caller.agent).await?;
                    match decide_needs(&grants, &caller.agent, controller, meta, &needs, params) {
                        Ok(d) => {
                            entry.reason = format!("{}; {note}", d.reasons.join("; "));
                            targets = d.targets;
                        }
                        Err((_, reason)) => {
                            let reason = format!("{reason} (the grant changed after {note})");
                            return Err(self.refuse(entry, reason.clone(), GateError::Denied { reason }).await);
                        }
                    }
                }
            }
        }
        let pending = meta.access == Access::Write;
        if pending {
            let mut intent = entry.clone();
            intent.phase = Phase::Intent;
            // The write is in flight from here until its outcome is recorded: if this process
            // stops, another one closes it (reconciliation). Bookkeeping first, then the intent;
            // fail closed: no intent record, no write.
            self.start_heartbeat().await;
            let row = PendingRow {
                request_id: entry.request_id.clone(),
                process_id: self.calls.process_id.clone(),
                operation: meta.name.to_string(),
                controller: controller.to_string(),
                target: entry.target.clone(),
                queue_id: None,
                build_number: None,
                entry: serde_json::to_string(&intent).unwrap_or_default(),
                started_ms: now_ms(),
            };
            self.store().insert_pending(&row).await.map_err(|e| GateError::AuditUnavailable(e.to_string()))?;
            if let Err(e) = self.record(intent).await {
                let _ = self.store().delete_pending(&row.request_id).await;
                return Err(GateError::AuditUnavailable(e.to_string()));
            }
        }
        Ok(Started::Go(Box::new(Begun {
            entry,
            pending,
            access: meta.access,
            started: Instant::now(),
            targets,
            grants,
            progress_floor,
            budget: None,
            fields: None,
            _permit: permit,
        })))
    }

    /// Finish: sanitize the answer (or the error), bound it, audit the outcome with the facts the
    /// executor reads off the clean answer.
    pub async fn finish(
        &self,
        begun: Begun,
        result: Result<Untrusted<Value>, GateError>,
        facts: impl FnOnce(&Value) -> Facts,
        sanitizer: &mut Sanitizer,
    ) -> Result<Clean<Value>, GateError> {
        let cap = self.calls.limits.max_answer_bytes;
        self.finish_within(begun, result, facts, sanitizer, cap).await
    }

    /// [`Gate::finish`] with another answer size cap (the proxy answers Jenkins clients, which
    /// are not bound by what an MCP client reads).
    pub async fn finish_within(
        &self,
        begun: Begun,
        result: Result<Untrusted<Value>, GateError>,
        facts: impl FnOnce(&Value) -> Facts,
        sanitizer: &mut Sanitizer,
        max_answer_bytes: usize,
    ) -> Result<Clean<Value>, GateError> {
        let Begun { mut entry, pending, access, started, budget, fields, .. } = begun;
        entry.phase = if access == Access::Write { Phase::Outcome } else { Phase::Read };
        entry.time_ms = now_ms();
        entry.duration_ms = Some(started.elapsed().as_millis() as i64);
        // The boundary: nothing from Jenkins leaves without passing the sanitizer.
        let result = result.map(|u| {
            let clean = sanitizer.release_capped(u, max_answer_bytes);
            // Every answer says how many secrets the boundary removed from it.
            let n = u64::from(sanitizer.report().redactions);
            let clean = clean.with_count("redactions", n);
            // The audit's facts come from the whole answer, before a selection or the budget
            // narrows what the agent receives.
            let f = facts(clean.as_ref());
            // A selection only removes parts of the clean answer, before it is measured.
            let clean = match &fields {
                Some(sel) => clean.narrowed(|v| crate::fields::select(v, sel)),
                None => clean,
            };
            // The answer's compact size, measured once for the budget and the cap.
            let size_of = crate::budget::json_len;
            let size = size_of(clean.as_ref());
            // The response budget: cut structurally, then through the boundary again (idempotent
            // on clean text; a cut console excerpt is framed anew).
            match budget {
                Some(b) if size > b.max_bytes => {
                    let (cut, _) = crate::budget::fit(clean.into_inner(), &b);
                    let cut = sanitizer.release_capped(Untrusted::new(cut), max_answer_bytes);
                    let size = size_of(cut.as_ref());
                    (cut, size, f)
                }
                _ => (clean, size, f),
            }
        });
        let result = match result {
            Ok((clean, size, f)) => {
                if size > max_answer_bytes {
                    Err(GateError::Invalid(format!(
                        "the answer would be {} KiB, over jgate's limit of {} KiB per answer; ask for less (a smaller limit or page, a filter, fewer log lines)",
                        size / 1024,
                        max_answer_bytes / 1024
                    )))
                } else {
                    Ok((clean, f))
                }
            }
            Err(e) => Err(e),
        };
        let returned = match result {
            Ok((clean, f)) => {
                entry.outcome = Some(match f.note {
                    Some(note) => format!("ok: {note}"),
                    None => "ok".into(),
                });
                entry.build_number = f.build_number;
                Ok(clean)
            }
            Err(GateError::Cancelled(why)) => {
                entry.outcome = Some(format!("cancelled: {why}"));
                Err(GateError::Cancelled(why))
            }
            Err(e) => {
                let status = e.status();
                if let GateError::Accepted { started, .. } | GateError::ReplayAccepted { started, .. } = &e {
                    entry.build_number = *started;
                }
                // Error texts quote Jenkins (error pages, names, parameter choices): they pass the
                // same boundary as answers before an agent or the audit sees them.
                let message = sanitizer.release_text(Untrusted::new(e.to_string())).into_inner();
                entry.outcome = Some(format!("error: {message}"));
                entry.http_status = status;
                Err(GateError::Failed { message, status })
            }
        };
        entry.redactions = sanitizer.report().redactions;
        let request_id = entry.request_id.clone();
        // A write's outcome is kept if it cannot be recorded; a read's need not be.
        let kept = (access != Access::Read).then(|| entry.clone());
        match self.record(entry).await {
            Ok(_) => {
                if pending && let Err(e) = self.store().delete_pending(&request_id).await {
                    // Harmless: reconciliation finds the outcome already recorded.
                    tracing::warn!(error = %e, "could not close a write in flight after its outcome was recorded");
                }
                returned
            }
            Err(e) if access == Access::Read => {
                // A read that cannot be audited is not returned.
                tracing::error!(error = %e, "could not write the audit record of a read");
                Err(GateError::AuditUnavailable(e.to_string()))
            }
            Err(e) => {
                // The write happened (or was attempted) but its outcome is not on record yet: it
                // is kept and recorded as soon as the store is back; the agent is never told
                // plain success.
                tracing::error!(error = %e, "could not write the outcome audit record; it will be retried");
                if let Some(entry) = kept {
                    self.calls.unrecorded.lock().unwrap_or_else(|p| p.into_inner()).push(entry);
                }
                let done = match &returned {
                    Ok(clean) => match Facts::build_of(clean.as_ref()) {
                        Facts { build_number: Some(n), .. } => format!("it was performed (build #{n})"),
                        _ => "it was performed".to_string(),
                    },
                    Err(err) => format!("it ended with: {err}"),
                };
                Err(GateError::Failed {
                    message: format!(
                        "{done}, but jgate could not record its outcome in the audit log ({e}); the record is kept and written when the store is back — do not retry"
                    ),
                    status: None,
                })
            }
        }
    }

    /// `whoami`: who the agent is to jgate (audited like every call; never touches Jenkins).
    pub async fn whoami(&self, caller: &Caller) -> Result<Value, GateError> {
        let grants = self.grants(&caller.agent).await?;
        let controllers: Vec<Value> = self
            .store()
            .controllers()
            .await?
            .iter()
            .map(|c| json!({"name": c.name, "url": c.base_url, "jenkins_version": c.jenkins_version}))
            .collect();
        let mut entry = self.entry(caller, "", &WHOAMI, json!({}));
        entry.allowed = true;
        entry.reason = "every agent may ask who it is".into();
        entry.outcome = Some("ok".into());
        self.record(entry).await.map_err(|e| GateError::AuditUnavailable(e.to_string()))?;
        Ok(json!({
            "agent": caller.agent,
            "key_id": caller.key_id,
            "controllers": controllers,
            "grants": grants.iter().map(|g| json!({"id": g.id, "controller": g.controller.clone().unwrap_or_else(|| "all".into()), "grant": g.describe()})).collect::<Vec<_>>(),
            "tools": visible_operations(&grants).iter().map(|o| o.name).collect::<Vec<_>>(),
        }))
    }

    /// The operations (tools) an agent may see.
    pub async fn visible_operations(&self, agent: &str) -> Result<Vec<&'static Operation>, GateError> {
        Ok(visible_operations(&self.grants(agent).await?))
    }
}

/// `whoami` is not a Jenkins operation: it has no group and is always allowed. This entry only
/// names it in the audit.
pub static WHOAMI: Operation = crate::op!("whoami", Status, Read, Controller, destructive: false, idempotent: true,
    routes: [], cli: "whoami", phrase: "asked who it is on",
    "Show who you are to jgate: your agent name, the controllers, and your grants (what you may do where).");

/// Runs one typed operation through begin → executor → finish.
struct TypedCall<'a> {
    gate: &'a Gate,
    caller: &'a Caller,
    controller: &'a str,
    args: Value,
    opts: CallOptions,
}

impl Runner for TypedCall<'_> {
    type Output = Result<Clean<Value>, GateError>;

    async fn run<T: Op>(self) -> Result<Clean<Value>, GateError> {
        let TypedCall { gate, caller, controller, args, opts } = self;
        let audit_args = summarize_args(redact_args(&args), T::SUMMARIZED);
        let meta = &T::META;
        // The call as sent: what an approval is bound to (only changes are ever held).
        let raw_args = (meta.access == Access::Write).then(|| args.clone());
        // Reads take `max_bytes` (the response budget), which the operation's arguments do not know.
        let mut args = args;
        // And `fields` (the keys the answer is narrowed to), likewise.
        let (budget, fields) = if crate::budget::applies(meta) {
            match crate::budget::take(&mut args).and_then(|b| Ok((Some(b), crate::fields::take(&mut args)?))) {
                Ok(taken) => taken,
                Err(e) => {
                    let entry = gate.entry(caller, controller, meta, audit_args);
                    return Err(gate.refuse(entry, e.to_string(), e).await);
                }
            }
        } else {
            (None, None)
        };
        let typed: T::Args = match serde_json::from_value(args) {
            Ok(a) => a,
            Err(e) => {
                let why = format!("the arguments of {} are not valid: {e}", meta.name);
                let entry = gate.entry(caller, controller, meta, audit_args);
                return Err(gate.refuse(entry, why.clone(), GateError::Invalid(why)).await);
            }
        };
        let needs = T::needs(&typed);
        let params = T::params(&typed);
        let begun = match gate
            .begin_held(caller, controller, meta, needs, &params, audit_args, raw_args.as_ref(), &opts)
            .await?
        {
            Started::Go(begun) => Begun { budget, fields, ..*begun },
            Started::Held(answer) if caller.surface == crate::audit::Surface::Proxy => {
                return Err(held_error(answer.as_ref()));
            }
            Started::Held(answer) => return Ok(answer),
        };
        let conn = match gate.connection_for_call(controller).await {
            Ok(c) => c,
            Err(e) => {
                let mut s = Sanitizer::new(Default::default());
                return gate.finish(begun, Err(e), T::facts, &mut s).await;
            }
        };
        let mut sanitizer = Sanitizer::new(conn.known.as_ref().clone());
        let deadline = if meta.access == Access::Write {
            gate.calls.limits.write_deadline
        } else {
            gate.calls.limits.read_deadline
        };
        let request_id = begun.request_id();
        // After a wait for approval, the operation's progress is shifted above what the wait
        // reported: MCP progress must keep increasing within one call.
        let progress = match (begun.progress_floor, opts.progress.clone()) {
            (Some(floor), Some(sink)) => {
                let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(f64, Option<f64>, String)>();
                let shift = floor + 1.0;
                tokio::spawn(async move {
                    while let Some((done, total, message)) = rx.recv().await {
                        let _ = sink.send((done + shift, total.map(|t| t + shift), message));
                    }
                });
                Some(tx)
            }
            (_, p) => p,
        };
        let result = {
            let mut cx = Exec {
                store: gate.store(),
                request_id: &request_id,
                client: &conn.client,
                controller,
                agent: &caller.agent,
                grants: &begun.grants,
                targets: begun.targets.clone(),
                progress: progress.as_ref(),
                sanitizer: &mut sanitizer,
                triggers: &gate.calls.triggers,
            };
            let cancelled = opts.cancelled();
            // Dropping the operation's future drops its upstream requests and streams.
            tokio::select! {
                r = T::run(&mut cx, typed) => r,
                _ = cancelled => Err(GateError::Cancelled("the client cancelled the call or went away".into())),
                _ = tokio::time::sleep(deadline) => Err(GateError::Invalid(format!(
                    "{} did not finish within {} s (jgate's deadline for one call); narrow the request",
                    meta.name, deadline.as_secs()
                ))),
            }
        };
        // What the operation returns is Jenkins data: untrusted until finish releases it.
        gate.finish(begun, result.map(Untrusted::new), T::facts, &mut sanitizer).await
    }
}

/// Argument values kept in the audit: parameters whose names look secret are masked.
pub(crate) fn redact_args(args: &Value) -> Value {
    fn walk(v: &Value, key: Option<&str>) -> Value {
        match v {
            Value::Object(m) => Value::Object(m.iter().map(|(k, v)| (k.clone(), walk(v, Some(k)))).collect()),
            Value::Array(a) => Value::Array(a.iter().map(|v| walk(v, key)).collect()),
            Value::String(_) if key.is_some_and(looks_secret) => Value::String("****".into()),
            other => other.clone(),
        }
    }
    walk(args, None)
}

/// `fields` of the arguments replaced by their length and a SHA-256 prefix: enough to tell two
/// calls apart in the audit without keeping what they carried.
pub(crate) fn summarize_args(mut args: Value, fields: &[&str]) -> Value {
    use sha2::Digest as _;
    if let Value::Object(m) = &mut args {
        for f in fields {
            if let Some(v) = m.get_mut(*f) {
                let text = match &*v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                let digest = hex::encode(sha2::Sha256::digest(text.as_bytes()));
                *v = Value::String(format!("({} bytes, sha256 {}…)", text.len(), &digest[..16]));
            }
        }
    }
    args
}

fn looks_secret(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    ["pass", "pwd", "secret", "token", "apikey", "api_key", "credential", "private_key", "auth"]
        .iter()
        .any(|s| n.contains(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_looking_parameters_are_masked_in_the_audit() {
        for name in ["DB_PASS", "PWD", "github_token", "AUTH_HEADER", "Password"] {
            assert!(looks_secret(name), "{name}");
        }
        assert!(!looks_secret("ENV") && !looks_secret("BRANCH"));
        let masked = redact_args(&json!({"job": "x", "parameters": {"DB_PASS": "hunter2", "ENV": "dev"}}));
        assert_eq!(masked["parameters"]["DB_PASS"], "****");
        assert_eq!(masked["parameters"]["ENV"], "dev");
    }

    #[test]
    fn summarized_fields_keep_only_length_and_hash() {
        let v = summarize_args(json!({"job": "x", "script": "echo secret-code"}), &["script"]);
        let s = v["script"].as_str().expect("text");
        assert!(s.starts_with("(16 bytes, sha256 ") && !s.contains("secret-code"), "{s}");
        assert_eq!(v["job"], "x");
    }

    #[test]
    fn request_ids_do_not_repeat() {
        let ids: std::collections::HashSet<String> = (0..1000).map(|_| new_request_id()).collect();
        assert_eq!(ids.len(), 1000);
    }
}
