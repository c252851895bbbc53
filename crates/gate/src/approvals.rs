//! Human approval of risky changes (issue #13).
//!
//! A grant made with `--approve` allows its changes only once an administrator approves each one
//! ([`crate::policy::Decision::approval`]). The call path holds such a call between the policy
//! decision and the executor ([`Gate::hold`]): a pending approval is stored (so every replica
//! sees it), bound to the exact call — operation, controller, canonical targets, parameters and
//! arguments, hashed with a per-approval salt — and the call waits, polling the store, while the
//! agent gets progress ("waiting for approval apr-…"). Then:
//!
//! - approved: the approval is used up by this one call (one statement, so two identical calls
//!   never both run on one approval), the policy is decided again on the current grants, and the
//!   call goes on to its intent record and the executor;
//! - denied: the call fails with the approver's reason;
//! - still undecided after [`crate::Limits::approval_wait`]: the call answers `pending` with the
//!   approval id. Sending exactly the same call again is how an agent checks: it finds the same
//!   approval (waits again, runs once approved, fails if denied or expired); a different call
//!   never matches it;
//! - undecided after [`crate::Limits::approval_lifetime`]: expired (audited once, by whichever
//!   process notices first); the call that asks next fails saying so, and a later one asks anew.
//!
//! Requests (the held call's records), decisions (`admin.approval.approve` / `.deny`, through the
//! administrative path) and expiries (`admin.approval.expire`) are all in the audit chain.

use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::audit::{self, Entry, Phase, Surface};
use crate::call::CallOptions;
use crate::error::GateError;
use crate::gate::{Admin, Gate};
use crate::sanitize::{Clean, Sanitizer, Untrusted};
use crate::store::now_ms;

/// How often a waiting call reads its approval from the store (a decision made on any replica
/// releases it within this).
pub const POLL: Duration = Duration::from_millis(250);
/// How many approvals one agent may have waiting for a decision; further requests are refused.
pub const MAX_PENDING_PER_AGENT: i64 = 20;
/// How often a waiting call tells the agent it is still waiting.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// Where an approval stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ApprovalStatus {
    /// Waiting for an administrator.
    Pending,
    /// Approved, not yet used by the call.
    Approved,
    Denied,
    /// Nobody decided before it expired (or an approved call was not sent again in time).
    Expired,
    /// Approved and used by one call.
    Used,
}

impl ApprovalStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ApprovalStatus::Pending => "pending",
            ApprovalStatus::Approved => "approved",
            ApprovalStatus::Denied => "denied",
            ApprovalStatus::Expired => "expired",
            ApprovalStatus::Used => "used",
        }
    }

    pub fn parse(s: &str) -> Option<ApprovalStatus> {
        Some(match s {
            "pending" => ApprovalStatus::Pending,
            "approved" => ApprovalStatus::Approved,
            "denied" => ApprovalStatus::Denied,
            "expired" => ApprovalStatus::Expired,
            "used" => ApprovalStatus::Used,
            _ => return None,
        })
    }
}

/// One held call and its decision, as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Approval {
    /// `apr-` and 64 random bits in hex.
    pub id: String,
    pub agent: String,
    pub controller: String,
    pub operation: String,
    /// The canonical target (the first need's), if the operation has one.
    pub target: Option<String>,
    /// The grant that requires the approval.
    pub grant: Option<i64>,
    /// What exactly would run, in plain English: "release-bot's request to trigger a build of
    /// release/deploy on prod with ENV=production".
    pub summary: String,
    /// The call's arguments as sent, secret-looking parameters masked (unlike the audit, a
    /// replay's script is shown whole: the approver must be able to read the code).
    pub args: Value,
    /// The request id of the call that asked first.
    pub request_id: String,
    pub status: ApprovalStatus,
    pub created_ms: i64,
    pub expires_ms: i64,
    pub decided_by: Option<String>,
    pub decided_ms: Option<i64>,
    pub reason: Option<String>,
    /// When a call used the approval, or was told of its denial or expiry.
    pub used_ms: Option<i64>,
    #[serde(skip)]
    pub(crate) salt: String,
    #[serde(skip)]
    pub(crate) call_hash: String,
}

/// The exact call an approval is bound to, in canonical bytes (sorted-key JSON).
pub(crate) struct Binding(Vec<u8>);

impl Binding {
    /// Operation, controller, the canonical targets the policy decided on, the trigger
    /// parameters (sorted by name) and the call's own arguments (unredacted: two calls that
    /// differ only in a secret parameter are different calls).
    pub(crate) fn of(
        operation: &str,
        controller: &str,
        targets: &[Option<String>],
        params: &[(String, String)],
        args: &Value,
    ) -> Binding {
        let mut params: Vec<&(String, String)> = params.iter().collect();
        params.sort();
        let v = json!({
            "operation": operation,
            "controller": controller,
            "targets": targets,
            "params": params,
            "args": sorted(args),
        });
        Binding(serde_json::to_vec(&sorted(&v)).unwrap_or_default())
    }

    /// SHA-256 over the salt and the call. Salted per approval so the stored hash says nothing
    /// about a secret parameter's value.
    fn hash(&self, salt: &str) -> String {
        let mut h = Sha256::new();
        h.update(salt.as_bytes());
        h.update([0u8]);
        h.update(&self.0);
        hex::encode(h.finalize())
    }

    fn matches(&self, a: &Approval) -> bool {
        let mine = self.hash(&a.salt);
        // Constant time is not needed for secrecy here, but costs nothing.
        mine.len() == a.call_hash.len()
            && mine.bytes().zip(a.call_hash.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

/// `v` with every object's keys in sorted order (serde_json here keeps insertion order).
fn sorted(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            Value::Object(keys.into_iter().map(|k| (k.clone(), sorted(&m[k]))).collect::<Map<_, _>>())
        }
        Value::Array(a) => Value::Array(a.iter().map(sorted).collect()),
        other => other.clone(),
    }
}

/// How a hold ended, when the call may go on or answer.
pub(crate) enum Hold {
    /// Approved and used by this call: the note joins its intent record's reason; the last
    /// progress value sent while waiting (the operation's own progress must go on above it).
    Released(String, Option<f64>),
    /// Not decided within the wait: the `pending` answer.
    Pending(Clean<Value>),
}

impl Gate {
    /// Holds a call that needs approval: finds the approval this exact call already has (a call
    /// sent again) or asks for a new one, and waits for the decision. `entry` is the call's
    /// allowed entry (reason, target and grant set). Every way this ends is audited under the
    /// call's request id: the hold itself as an intent, and an outcome unless the call goes on.
    pub(crate) async fn hold(
        &self,
        entry: &Entry,
        binding: &Binding,
        review_args: &Value,
        opts: &CallOptions,
    ) -> Result<Hold, GateError> {
        let lifetime = self.calls.limits.approval_lifetime;
        self.expire_approvals().await;
        let now = now_ms();
        let candidates = bounded(
            "reading approvals",
            self.store().approvals_open_for(&entry.agent, &entry.controller, &entry.operation),
        )
        .await?;
        let found = candidates.into_iter().find(|a| binding.matches(a));
        let (approval, asked) = match found {
            Some(a) => (a, false),
            None => {
                // An agent cannot flood the approvers: a bounded number of its requests wait.
                let waiting = bounded("counting approvals", self.store().pending_approvals_of(&entry.agent)).await?;
                if waiting >= MAX_PENDING_PER_AGENT {
                    let why = format!(
                        "{} of your calls already wait for approval (the limit); wait for an administrator to decide them",
                        waiting
                    );
                    let mut refused = entry.clone();
                    refused.allowed = false;
                    return Err(self.refuse(refused, why.clone(), GateError::Busy(why)).await);
                }
                let salt = hex::encode(rand::random::<[u8; 16]>());
                let a = Approval {
                    id: format!("apr-{}", hex::encode(rand::random::<[u8; 8]>())),
                    agent: entry.agent.clone(),
                    controller: entry.controller.clone(),
                    operation: entry.operation.clone(),
                    target: entry.target.clone(),
                    grant: entry.grant,
                    summary: audit::request_phrase(entry),
                    args: review_args.clone(),
                    request_id: entry.request_id.clone(),
                    status: ApprovalStatus::Pending,
                    created_ms: now,
                    expires_ms: now.saturating_add(i64::try_from(lifetime.as_millis()).unwrap_or(i64::MAX)),
                    decided_by: None,
                    decided_ms: None,
                    reason: None,
                    used_ms: None,
                    call_hash: binding.hash(&salt),
                    salt,
                };
                (a, true)
            }
        };
        let id = approval.id.clone();
        // The request, on record before anything waits on it (fail closed).
        let mut held = entry.clone();
        held.phase = Phase::Intent;
        held.reason = if asked {
            format!("{}; held for approval {id}", entry.reason)
        } else {
            format!("{}; held for approval {id} (asked for earlier)", entry.reason)
        };
        self.record(held).await.map_err(|e| GateError::AuditUnavailable(e.to_string()))?;
        if asked {
            if let Err(e) = bounded("storing an approval", self.store().insert_approval(&approval)).await {
                let err = GateError::from(e);
                return Err(self.held_outcome(entry, format!("error: {err}"), err).await);
            }
            self.announce(&approval);
        }
        let mut current = approval;
        let wait = self.calls.limits.approval_wait;
        let started = Instant::now();
        let mut last_progress: Option<Instant> = None;
        let mut progress_sent: Option<f64> = None;
        loop {
            match bounded("reading an approval", self.store().approval(&id)).await {
                Ok(Some(a)) => current = a,
                Ok(None) => {
                    let why = format!("approval {id} is no longer in the store; send the call again to ask anew");
                    return Err(self.held_outcome(entry, format!("error: {why}"), GateError::Invalid(why)).await);
                }
                // A store that does not answer for a moment: the call keeps waiting (and answers
                // `pending` when the wait is over).
                Err(e) => {
                    tracing::warn!(error = %e, approval = %id, "could not read an approval while a call waits for it")
                }
            }
            match current.status {
                ApprovalStatus::Approved if current.expires_ms > now_ms() => {
                    let used = match bounded("using an approval", self.store().use_approval(&id, now_ms())).await {
                        Ok(used) => used,
                        Err(e) => {
                            let err = GateError::from(e);
                            return Err(self.held_outcome(entry, format!("error: {err}"), err).await);
                        }
                    };
                    if used {
                        let by = current.decided_by.as_deref().unwrap_or("an administrator");
                        let reason = current.reason.as_deref().map(|r| format!(", reason: {r}")).unwrap_or_default();
                        let note = format!("approved by {by} (approval {id}{reason})");
                        return Ok(Hold::Released(note, progress_sent));
                    }
                    let why = format!(
                        "approval {id} was used by another identical call; an approval releases one call. Send the call again to ask for a new approval"
                    );
                    return Err(self.held_outcome(entry, format!("error: {why}"), GateError::Invalid(why)).await);
                }
                ApprovalStatus::Denied => {
                    let _ = self.store().close_approval(&id, now_ms()).await;
                    let by = current.decided_by.as_deref().unwrap_or("an administrator");
                    let reason = current.reason.as_deref().unwrap_or("no reason given");
                    let why = format!("{by} denied approval {id}: {reason}");
                    let err = GateError::Denied { reason: format!("{why}. Do not send it again unchanged") };
                    return Err(self.held_outcome(entry, format!("error: {why}"), err).await);
                }
                ApprovalStatus::Used => {
                    let why = format!(
                        "approval {id} was used by another identical call; an approval releases one call. Send the call again to ask for a new approval"
                    );
                    return Err(self.held_outcome(entry, format!("error: {why}"), GateError::Invalid(why)).await);
                }
                ApprovalStatus::Expired | ApprovalStatus::Pending | ApprovalStatus::Approved
                    if current.status == ApprovalStatus::Expired || current.expires_ms <= now_ms() =>
                {
                    self.expire_approvals().await;
                    let _ = self.store().close_approval(&id, now_ms()).await;
                    let last = match lifetime.as_secs() {
                        s if s >= 120 => format!("{} min", s / 60),
                        s => format!("{s} s"),
                    };
                    let why = format!(
                        "approval {id} expired without being used (approvals last {last}); nothing was done. Send the call again to ask anew"
                    );
                    return Err(self.held_outcome(entry, format!("error: {why}"), GateError::Invalid(why)).await);
                }
                _ => {}
            }
            if started.elapsed() >= wait {
                let answer = pending_answer(&current);
                let note = format!("held: approval {id}, not decided within {} s", wait.as_secs());
                self.record_outcome(entry, note).await?;
                return Ok(Hold::Pending(answer));
            }
            if last_progress.is_none_or(|t| t.elapsed() >= PROGRESS_EVERY)
                && let Some(p) = &opts.progress
            {
                let waited = started.elapsed().as_secs() as f64;
                progress_sent = Some(waited);
                let _ = p.send((
                    waited,
                    Some(wait.as_secs() as f64),
                    format!("waiting for approval {id} (an administrator runs `jgate approve {id}`)"),
                ));
                last_progress = Some(Instant::now());
            }
            let cancelled = opts.cancelled();
            tokio::select! {
                _ = tokio::time::sleep(POLL) => {}
                _ = cancelled => {
                    let why = "the client cancelled the call or went away while it waited for approval".to_string();
                    let err = GateError::Cancelled(why.clone());
                    return Err(self.held_outcome(entry, format!("cancelled: {why} (approval {id} stays pending)"), err).await);
                }
            }
        }
    }

    /// The outcome record of a held call that does not go on; returns `err` (or the audit
    /// failure).
    async fn held_outcome(&self, entry: &Entry, outcome: String, err: GateError) -> GateError {
        match self.record_outcome(entry, outcome).await {
            Ok(()) => err,
            Err(e) => e,
        }
    }

    async fn record_outcome(&self, entry: &Entry, outcome: String) -> Result<(), GateError> {
        let mut e = entry.clone();
        e.phase = Phase::Outcome;
        e.time_ms = now_ms();
        e.outcome = Some(outcome);
        self.record(e).await.map(|_| ()).map_err(|e| GateError::AuditUnavailable(e.to_string()))
    }

    /// Marks every approval past its time as expired and audits each (once: the statement that
    /// changes it returns it to one process only). Failures are logged: expiry is also checked
    /// where an approval is used.
    pub async fn expire_approvals(&self) {
        let expired = match self.store().expire_approvals(now_ms()).await {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(error = %e, "could not expire approvals");
                return;
            }
        };
        for a in expired {
            let mut entry = Self::admin_entry(
                &Admin::new("jgate", Surface::Cli),
                "admin.approval.expire",
                Some(&a.agent),
                Some(&a.controller),
                json!({"approval": a.id, "request": a.summary, "operation": a.operation, "job": a.target}),
            );
            entry.phase = Phase::Outcome;
            entry.outcome = Some("ok".into());
            if let Err(e) = self.record(entry).await {
                tracing::error!(error = %e, approval = %a.id, "an approval expired, but its expiry could not be audited");
            }
        }
    }

    /// Approvals, newest first: the pending ones, or with `all` every one of the last 500.
    pub async fn approvals(&self, all: bool) -> Result<Vec<Approval>, GateError> {
        self.expire_approvals().await;
        Ok(self.store().list_approvals(all).await?)
    }

    /// One approval by id.
    pub async fn approval(&self, id: &str) -> Result<Option<Approval>, GateError> {
        self.expire_approvals().await;
        Ok(self.store().approval(id).await?)
    }

    /// Approves a pending approval: the call waiting on it (on any replica) goes on, or the same
    /// call sent again does. Audited as `admin.approval.approve`.
    pub async fn approve(&self, admin: &Admin, id: &str, reason: Option<&str>) -> Result<Approval, GateError> {
        self.decide_approval(admin, id, true, reason).await
    }

    /// Denies a pending approval with a reason the agent is told. Audited as `admin.approval.deny`.
    pub async fn deny(&self, admin: &Admin, id: &str, reason: &str) -> Result<Approval, GateError> {
        if reason.trim().is_empty() {
            return Err(GateError::Invalid("a denial needs a reason (--reason): the agent is told it".into()));
        }
        self.decide_approval(admin, id, false, Some(reason)).await
    }

    async fn decide_approval(
        &self,
        admin: &Admin,
        id: &str,
        approve: bool,
        reason: Option<&str>,
    ) -> Result<Approval, GateError> {
        self.expire_approvals().await;
        let reason = reason.map(str::trim).filter(|r| !r.is_empty());
        let Some(a) = self.store().approval(id).await? else {
            return Err(crate::store::StoreError::Missing {
                what: "approval",
                name: id.to_string(),
                hint: "`jgate approvals --all` lists them".into(),
            }
            .into());
        };
        if a.status != ApprovalStatus::Pending {
            let by = a.decided_by.as_deref().map(|b| format!(" by {b}")).unwrap_or_default();
            return Err(GateError::Invalid(format!(
                "approval {id} is {}{by}, not pending: only a pending approval can be decided (the agent asks anew by sending the call again)",
                a.status.as_str()
            )));
        }
        let op = if approve { "admin.approval.approve" } else { "admin.approval.deny" };
        let entry = Self::admin_entry(
            admin,
            op,
            Some(&a.agent),
            Some(&a.controller),
            json!({"approval": a.id, "request": a.summary, "operation": a.operation, "job": a.target, "reason": reason}),
        );
        self.admin_intent(&entry).await?;
        let result = match self.store().decide_approval(id, approve, &admin.name, reason, now_ms()).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(GateError::Invalid(format!(
                "approval {id} was decided or expired meanwhile: `jgate approvals --all` shows it"
            ))),
            Err(e) => Err(GateError::from(e)),
        };
        self.admin_outcome(entry, &result, json!({})).await;
        result?;
        self.store().approval(id).await?.ok_or_else(|| GateError::Invalid(format!("approval {id} vanished")))
    }
}

/// The answer of a call still waiting when the wait ends: not an error, and not to be retried
/// with other arguments.
fn pending_answer(a: &Approval) -> Clean<Value> {
    let v = json!({
        "status": "pending",
        "approval_id": a.id,
        "expires_ms": a.expires_ms,
        "message": format!(
            "Not done yet: this call waits for an administrator's approval ({}). Nothing has been performed. \
             To get its result, send exactly the same call again later: it waits for the decision again, \
             runs once approved, and fails if it was denied or has expired. A call with any other \
             arguments needs its own approval.",
            a.id
        ),
    });
    // Built from the agent's own arguments, not Jenkins data; released through the boundary
    // all the same (the only way to make a Clean).
    Sanitizer::new(Default::default()).release(Untrusted::new(v))
}

/// A store call of the call path, bounded like the others ([`crate::store::CALL_TIMEOUT`]).
async fn bounded<T>(
    doing: &str,
    fut: impl std::future::Future<Output = Result<T, crate::store::StoreError>>,
) -> Result<T, crate::store::StoreError> {
    tokio::time::timeout(crate::store::CALL_TIMEOUT, fut)
        .await
        .unwrap_or_else(|_| Err(crate::store::timed_out(doing, crate::store::CALL_TIMEOUT)))
}

// ---------------------------------------------------------------------------------------------
// Announcing requests to a chat tool

/// The shape of the webhook's POST body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookFormat {
    /// `{"event": "approval.requested", "approval": {...}, "text": "..."}`.
    Json,
    /// A Slack incoming-webhook message (`text` and `blocks`; Mattermost and others read it too).
    Slack,
}

impl std::str::FromStr for WebhookFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "json" => Ok(WebhookFormat::Json),
            "slack" => Ok(WebhookFormat::Slack),
            other => Err(format!("unknown webhook format '{other}': use json or slack")),
        }
    }
}

/// Where new approval requests are announced. The URL is a secret (a chat webhook's URL is its
/// credential): it is shown by no `Debug`, error or log.
#[derive(Clone)]
pub struct ApprovalWebhook {
    url: reqwest::Url,
    format: WebhookFormat,
    http: reqwest::Client,
}

impl std::fmt::Debug for ApprovalWebhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApprovalWebhook").field("format", &self.format).field("url", &"<hidden>").finish()
    }
}

/// How long one announcement may take.
const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(5);

impl ApprovalWebhook {
    /// Checks `url` with the same egress guard as controllers (http/https, no credentials in it,
    /// no metadata or link-local address ever, private addresses only through `allow`), and
    /// builds a client that connects only to checked addresses and follows no redirect.
    pub fn new(
        url: &str,
        format: WebhookFormat,
        allow: Vec<jenkins::ssrf::AllowEntry>,
    ) -> Result<ApprovalWebhook, GateError> {
        use jenkins::ssrf::{EgressPolicy, GuardedResolver, SystemLookup};
        let policy = std::sync::Arc::new(EgressPolicy::new(allow));
        // The refusal names the origin, never the path (where a chat webhook keeps its secret).
        let url = policy.check_url_str(url).map_err(|r| {
            GateError::Invalid(format!(
                "the approval webhook URL is refused: {r}. Fix: a public http(s) URL, or allow a private address with --approval-webhook-allow-private HOST:PORT"
            ))
        })?;
        let port = url.port_or_known_default().unwrap_or(443);
        let tls = jenkins::tls::client_config(&jenkins::tls::Trust { system_ca: true, ..Default::default() })
            .map_err(|e| GateError::Invalid(format!("the approval webhook's TLS settings: {e}")))?;
        let http = reqwest::Client::builder()
            .dns_resolver(std::sync::Arc::new(
                GuardedResolver::new(policy, std::sync::Arc::new(SystemLookup)).with_port(port),
            ))
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(WEBHOOK_TIMEOUT)
            .user_agent(concat!("jgate/", env!("CARGO_PKG_VERSION")))
            .use_preconfigured_tls(tls)
            .build()
            .map_err(|e| GateError::Invalid(format!("cannot set up the approval webhook's HTTP client: {e}")))?;
        Ok(ApprovalWebhook { url, format, http })
    }

    /// The POST body announcing `a`.
    pub fn payload(&self, a: &Approval) -> Value {
        let text = format!(
            "jgate: {} waits for approval {} (it expires {}). Approve: `jgate approve {} --reason ...`  Deny: `jgate deny {} --reason ...`",
            a.summary,
            a.id,
            expires_text(a.expires_ms),
            a.id,
            a.id
        );
        match self.format {
            WebhookFormat::Json => json!({
                "event": "approval.requested",
                "approval": {
                    "id": a.id, "agent": a.agent, "controller": a.controller, "operation": a.operation,
                    "target": a.target, "summary": a.summary, "args": webhook_args(&a.args),
                    "created_ms": a.created_ms, "expires_ms": a.expires_ms,
                },
                "text": text,
            }),
            WebhookFormat::Slack => {
                // Slack reads <...> as links and mentions (<!channel>): escaped as its docs say.
                let text = slack_escape(&text);
                json!({
                    "text": text,
                    "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text}}],
                })
            }
        }
    }

    /// POSTs the announcement; the answer's status, or why it failed (never the URL).
    pub async fn post(&self, a: &Approval) -> Result<u16, String> {
        let r = self
            .http
            .post(self.url.clone())
            .json(&self.payload(a))
            .send()
            .await
            .map_err(|e| describe_send_error(&e))?;
        let status = r.status().as_u16();
        if r.status().is_success() { Ok(status) } else { Err(format!("it answered HTTP {status}")) }
    }
}

/// A send error without the URL reqwest puts in its message.
fn describe_send_error(e: &reqwest::Error) -> String {
    if let Some(r) = jenkins::ssrf::find_refusal(e) {
        return format!("refused by the egress guard: {r}");
    }
    let what = if e.is_timeout() {
        "it did not answer in time"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "the request failed"
    };
    what.to_string()
}

fn slack_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

fn expires_text(ms: i64) -> String {
    format!("in {} min", (ms - now_ms()).max(0) / 60_000)
}

impl Gate {
    /// Announces a new approval request through the webhook, if one is set, without waiting:
    /// a failure is logged and changes nothing.
    fn announce(&self, a: &Approval) {
        let Some(hook) = self.calls.limits.approval_webhook.clone() else {
            return;
        };
        let a = a.clone();
        tokio::spawn(async move {
            match hook.post(&a).await {
                Ok(_) => tracing::debug!(approval = %a.id, "approval announced"),
                Err(why) => tracing::warn!(approval = %a.id, "the approval webhook failed: {why}"),
            }
        });
    }
}

/// Long strings of an approval's arguments (a replay's script) are cut in a webhook message:
/// the approver reads them whole where the decision is made.
const WEBHOOK_ARG_BYTES: usize = 2048;

fn webhook_args(v: &Value) -> Value {
    match v {
        Value::String(s) if s.len() > WEBHOOK_ARG_BYTES => {
            let mut end = WEBHOOK_ARG_BYTES;
            while !s.is_char_boundary(end) {
                end -= 1;
            }
            Value::String(format!(
                "{}…[{} more bytes: `jgate approvals` or the console's Approvals page shows it whole]",
                &s[..end],
                s.len() - end
            ))
        }
        Value::Array(a) => Value::Array(a.iter().map(webhook_args).collect()),
        Value::Object(m) => Value::Object(m.iter().map(|(k, v)| (k.clone(), webhook_args(v))).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_webhook_cuts_long_arguments_and_says_where_to_read_them() {
        let script = "é".repeat(3000); // 6,000 bytes, cut on a character boundary
        let v = webhook_args(&json!({"job": "a", "script": script, "list": ["x".repeat(5000)]}));
        let cut = v["script"].as_str().expect("string");
        assert!(cut.len() < 2200 && cut.contains("more bytes: `jgate approvals`"), "{cut}");
        assert!(v["list"][0].as_str().is_some_and(|s| s.contains("more bytes")), "{v}");
        assert_eq!(v["job"], "a");
    }
}
