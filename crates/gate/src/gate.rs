//! The gate: the one path every agent call takes, and the administrator's operations.
//!
//! agent → surface → [`Gate::authenticate`] → [`Gate::call`]: resolve the catalog operation and
//! its target → policy decision → audit "intent" (writes; fail closed) → execute through the wire
//! client → audit "outcome" → response. Surfaces (MCP, proxy, CLI, web) call `call`; none has
//! policy or audit code of its own.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jenkins::ssrf::AllowEntry;
use jenkins::{BuildSelector, ConnectionReport, Credentials, JenkinsClient, JobPath, TlsOptions};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

use crate::audit::{self, Checkpoint, Entry, Phase, Record, Surface};
use crate::catalog::{self, Access, Group, Operation, Target};
use crate::keys;
use crate::policy::{self, Grant, Level, ParamConstraint};
use crate::secrets::{self, MasterKey, Sealed};
use crate::store::{AgentRow, AuditFilter, ControllerRow, KeyRow, Store, StoreError, now_ms};

/// Errors of the gate, in words an administrator or an agent can act on.
#[derive(Debug, thiserror::Error)]
pub enum GateError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Jenkins(Box<jenkins::Error>),
    #[error(
        "the connection test of controller '{name}' failed, so nothing was stored: {error}\n(use --force to store it anyway)"
    )]
    ConnectionTest { name: String, error: Box<jenkins::Error> },
    #[error(transparent)]
    Secrets(#[from] secrets::SecretsError),
    #[error("{0}")]
    Invalid(String),
    #[error("the agent key is not valid: {0}")]
    BadKey(String),
    #[error("denied: {reason}")]
    Denied { reason: String },
    #[error("the audit log cannot be written ({0}); the call was not performed. Fix: check the database, then retry")]
    AuditUnavailable(String),
}

impl From<jenkins::Error> for GateError {
    fn from(e: jenkins::Error) -> Self {
        GateError::Jenkins(Box::new(e))
    }
}

/// Who is calling: an authenticated agent.
#[derive(Debug, Clone)]
pub struct Caller {
    pub agent: String,
    pub key_id: Option<String>,
    pub surface: Surface,
    pub client_addr: Option<String>,
    pub request_id: String,
}

/// A controller to add.
pub struct NewController {
    pub name: String,
    pub url: String,
    pub username: String,
    pub token: SecretString,
    pub password: bool,
    pub allow_private: Vec<String>,
    pub ca_pem: Option<String>,
    pub insecure: bool,
}

/// A controller's cached wire client and known secrets.
#[derive(Clone)]
struct Connection {
    client: Arc<JenkinsClient>,
    known: Arc<crate::sanitize::KnownSecrets>,
}

/// Progress of a long call: (done, total, message).
pub type ProgressSink = tokio::sync::mpsc::UnboundedSender<(f64, Option<f64>, String)>;

/// (agent, controller, key).
type IdempotencyKey = (String, String, String);

/// How long a trigger's idempotency key is remembered.
const IDEMPOTENCY_TTL: Duration = Duration::from_secs(24 * 3600);

/// The gate over one store and master key.
pub struct Gate {
    store: Store,
    master: MasterKey,
    hmac_key: [u8; 32],
    connections: tokio::sync::Mutex<HashMap<String, Connection>>,
    /// (agent, controller, key) → the first trigger's result. Per process: replicas behind a
    /// load balancer should route an agent's retries to the same replica (documented).
    idempotency: tokio::sync::Mutex<HashMap<IdempotencyKey, (Instant, Value)>>,
    /// Identical triggers (controller, job, parameters) are serialised: Jenkins would merge a
    /// second one into the first while it waits in the queue, and two callers would believe they
    /// each started a build. Holds the last such trigger's queue item.
    triggers: TriggerSlots,
}

/// One slot per identical trigger (controller, job, parameters), holding its last queue item.
type TriggerSlots = tokio::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<Option<u64>>>>>;

fn token_aad(controller: &str) -> String {
    format!("jgate:controller:{controller}:token")
}

impl Gate {
    pub fn new(store: Store, master: MasterKey) -> Gate {
        let hmac_key = master.audit_hmac_key();
        Gate {
            store,
            master,
            hmac_key,
            connections: tokio::sync::Mutex::new(HashMap::new()),
            idempotency: tokio::sync::Mutex::new(HashMap::new()),
            triggers: tokio::sync::Mutex::new(HashMap::new()),
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    // -----------------------------------------------------------------------------------------
    // controllers

    fn build_client(
        url: &str,
        username: &str,
        token: SecretString,
        password: bool,
        allow: &[String],
        ca_pem: Option<&str>,
        insecure: bool,
    ) -> Result<JenkinsClient, GateError> {
        let creds =
            if password { Credentials::password(username, token) } else { Credentials::api_token(username, token) };
        let mut b = JenkinsClient::builder(url).credentials(creds).tls(TlsOptions {
            ca_bundle_pem: ca_pem.map(|p| p.as_bytes().to_vec()),
            danger_accept_invalid_certs: insecure,
        });
        for a in allow {
            let entry: AllowEntry = a.parse().map_err(|e| GateError::Invalid(format!("--allow-private {a}: {e}")))?;
            b = b.allow_private(entry);
        }
        Ok(b.build()?)
    }

    /// Adds a controller after a successful connection test (or unconditionally with `force`).
    /// The token is sealed (envelope encryption bound to the controller's name).
    pub async fn add_controller(
        &self,
        c: NewController,
        force: bool,
    ) -> Result<(ControllerRow, Option<ConnectionReport>), GateError> {
        if c.name.trim().is_empty() || c.name.contains(char::is_whitespace) {
            return Err(GateError::Invalid(format!(
                "controller name '{}' must be one word (e.g. prod, ci-eu)",
                c.name
            )));
        }
        if self.store.controller(&c.name).await?.is_some() {
            return Err(StoreError::Duplicate { what: "controller", name: c.name.clone() }.into());
        }
        let client = Self::build_client(
            &c.url,
            &c.username,
            c.token.clone(),
            c.password,
            &c.allow_private,
            c.ca_pem.as_deref(),
            c.insecure,
        )?;
        let report = match client.test_connection().await {
            Ok(r) => Some(r),
            Err(error) if !force => {
                return Err(GateError::ConnectionTest { name: c.name.clone(), error: Box::new(error) });
            }
            Err(error) => {
                tracing::warn!(controller = %c.name, %error, "storing a controller whose connection test failed (forced)");
                None
            }
        };
        let sealed = secrets::seal(&self.master, &c.token, &token_aad(&c.name))?;
        let row = ControllerRow {
            id: 0,
            name: c.name.clone(),
            base_url: client.base_url().to_string(),
            username: c.username.clone(),
            secret_kind: if c.password { "password".into() } else { "token".into() },
            sealed_token: serde_json::to_string(&sealed).map_err(|e| GateError::Invalid(e.to_string()))?,
            tls_ca_pem: c.ca_pem.clone(),
            tls_insecure: c.insecure,
            allow_private: c.allow_private.clone(),
            jenkins_version: report.as_ref().and_then(|r| r.version.clone()),
            plugins: report
                .as_ref()
                .map(|r| r.capabilities.plugins.iter().map(|p| format!("{}@{}", p.short_name, p.version)).collect())
                .unwrap_or_default(),
            created_ms: now_ms(),
        };
        let id = self.store.insert_controller(&row).await?;
        Ok((ControllerRow { id, ..row }, report))
    }

    /// A stored controller's wire client and the secrets its answers must never echo, built
    /// once (one store read and one decryption) and cached.
    async fn connection(&self, name: &str) -> Result<Connection, GateError> {
        let mut cache = self.connections.lock().await;
        if let Some(c) = cache.get(name) {
            return Ok(c.clone());
        }
        let row = self.store.controller(name).await?.ok_or_else(|| StoreError::Missing {
            what: "controller",
            name: name.to_string(),
            hint: "`jgate controller list` shows the controllers".into(),
        })?;
        let sealed: Sealed = serde_json::from_str(&row.sealed_token).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let token = secrets::open(&self.master, &sealed, &token_aad(name))?;
        let mut known = crate::sanitize::KnownSecrets::new();
        known.add(token.expose_secret());
        known.add_basic_auth(&row.username, token.expose_secret());
        let client = Arc::new(Self::build_client(
            &row.base_url,
            &row.username,
            token,
            row.secret_kind == "password",
            &row.allow_private,
            row.tls_ca_pem.as_deref(),
            row.tls_insecure,
        )?);
        let conn = Connection { client, known: Arc::new(known) };
        cache.insert(name.to_string(), conn.clone());
        Ok(conn)
    }

    /// The wire client of a stored controller (cached).
    pub async fn client(&self, name: &str) -> Result<Arc<JenkinsClient>, GateError> {
        Ok(self.connection(name).await?.client)
    }

    /// A sanitizer that knows this controller's own token (redacted in every encoding).
    pub async fn sanitizer(&self, controller: &str) -> Result<crate::sanitize::Sanitizer, GateError> {
        Ok(crate::sanitize::Sanitizer::new(self.connection(controller).await?.known.as_ref().clone()))
    }

    /// The controller a call addresses: the one named, or the only one configured.
    pub async fn resolve_controller(&self, named: Option<&str>) -> Result<String, GateError> {
        if let Some(c) = named {
            return Ok(c.to_string());
        }
        let mut names: Vec<String> = self.store.controllers().await?.into_iter().map(|c| c.name).collect();
        match names.len() {
            1 => Ok(names.remove(0)),
            0 => Err(GateError::Invalid(
                "jgate has no Jenkins controller configured; ask the administrator to add one".into(),
            )),
            _ => Err(GateError::Invalid(format!(
                "several controllers are configured: pass controller, one of {}",
                names.join(", ")
            ))),
        }
    }

    /// Runs the connection test again and records the version and plugins it found.
    pub async fn test_controller(&self, name: &str) -> Result<ConnectionReport, GateError> {
        let client = self.client(name).await?;
        let report = client.test_connection().await?;
        let plugins: Vec<String> =
            report.capabilities.plugins.iter().map(|p| format!("{}@{}", p.short_name, p.version)).collect();
        self.store.update_controller_facts(name, report.version.as_deref(), &plugins).await?;
        Ok(report)
    }

    /// Re-wraps every controller token's data key with `new` (the master-key rotation).
    pub async fn rotate_master_key(&self, new: &MasterKey) -> Result<usize, GateError> {
        let mut n = 0;
        for row in self.store.controllers().await? {
            let sealed: Sealed =
                serde_json::from_str(&row.sealed_token).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            let rewrapped = secrets::rewrap(&self.master, new, &sealed, &token_aad(&row.name))?;
            let json = serde_json::to_string(&rewrapped).map_err(|e| GateError::Invalid(e.to_string()))?;
            self.store.update_controller_seal(&row.name, &json).await?;
            n += 1;
        }
        Ok(n)
    }

    // -----------------------------------------------------------------------------------------
    // agents and grants

    /// Creates an agent and its first key. The key is returned once; only its hash is stored.
    pub async fn create_agent(
        &self,
        name: &str,
        description: &str,
        expires_ms: Option<i64>,
    ) -> Result<(AgentRow, keys::NewKey), GateError> {
        if name.trim().is_empty() || name.contains(char::is_whitespace) {
            return Err(GateError::Invalid(format!("agent name '{name}' must be one word (e.g. triage-bot)")));
        }
        let id = self.store.insert_agent(name, description).await?;
        let key = keys::generate();
        self.store.insert_key(id, &key.key_id, &key.hash, expires_ms).await?;
        let agent = self.store.agent(name).await?.ok_or_else(|| StoreError::Corrupt("agent vanished".into()))?;
        Ok((agent, key))
    }

    /// Adds a key to an existing agent.
    pub async fn new_key(&self, agent: &str, expires_ms: Option<i64>) -> Result<keys::NewKey, GateError> {
        let row = self.agent_row(agent).await?;
        let key = keys::generate();
        self.store.insert_key(row.id, &key.key_id, &key.hash, expires_ms).await?;
        Ok(key)
    }

    async fn agent_row(&self, agent: &str) -> Result<AgentRow, GateError> {
        Ok(self.store.agent(agent).await?.ok_or_else(|| StoreError::Missing {
            what: "agent",
            name: agent.to_string(),
            hint: "`jgate agent list` shows the agents".into(),
        })?)
    }

    pub async fn agents(&self) -> Result<Vec<(AgentRow, Vec<KeyRow>)>, GateError> {
        let mut out = Vec::new();
        for a in self.store.agents().await? {
            let keys = self.store.keys_of(a.id).await?;
            out.push((a, keys));
        }
        Ok(out)
    }

    pub async fn revoke(&self, agent: &str, key_id: Option<&str>) -> Result<u64, GateError> {
        let row = self.agent_row(agent).await?;
        Ok(self.store.revoke_keys(row.id, key_id).await?)
    }

    /// Grants `agent` a level on a group, optionally limited to a controller, a job pattern and
    /// parameter constraints.
    pub async fn grant(
        &self,
        agent: &str,
        group: Group,
        level: Level,
        controller: Option<&str>,
        jobs: Option<&str>,
        params: Vec<ParamConstraint>,
    ) -> Result<Grant, GateError> {
        let row = self.agent_row(agent).await?;
        if let Some(c) = controller
            && self.store.controller(c).await?.is_none()
        {
            {
                return Err(StoreError::Missing {
                    what: "controller",
                    name: c.to_string(),
                    hint: "`jgate controller list` shows the controllers".into(),
                }
                .into());
            }
        }
        if !params.is_empty() && group != Group::Build {
            return Err(GateError::Invalid(
                "--param constraints apply to triggers: use them with the build group".into(),
            ));
        }
        if let Some(j) = jobs {
            policy::normalize_job_pattern(j).map_err(|e| GateError::Invalid(format!("--jobs {j}: {e}")))?;
        }
        let jobs = jobs.map(str::to_string);
        let mut g = Grant {
            id: 0,
            agent: agent.to_string(),
            controller: controller.map(str::to_string),
            group,
            level,
            jobs,
            params,
        };
        g.id = self.store.insert_grant(row.id, &g).await?;
        Ok(g)
    }

    pub async fn grants(&self, agent: &str) -> Result<Vec<Grant>, GateError> {
        self.agent_row(agent).await?;
        Ok(self.store.grants_of(agent).await?)
    }

    // -----------------------------------------------------------------------------------------
    // the agent path

    /// Checks a presented agent key: format, existence, revocation, expiry.
    pub async fn authenticate(&self, presented: &str) -> Result<(String, String), GateError> {
        keys::check_format(presented).map_err(|e| GateError::BadKey(e.to_string()))?;
        let hash = keys::hash(presented);
        let Some((agent, key, stored)) = self.store.find_key(&hash).await? else {
            return Err(GateError::BadKey(
                "no agent has this key (it may have been deleted); ask the administrator for a key".into(),
            ));
        };
        if !keys::verify(presented, &stored) {
            return Err(GateError::BadKey("no agent has this key".into()));
        }
        if key.revoked_ms.is_some() {
            return Err(GateError::BadKey(format!(
                "key {} of agent {} was revoked; ask the administrator for a new key",
                key.key_id, agent.name
            )));
        }
        if key.expires_ms.is_some_and(|e| e <= now_ms()) {
            return Err(GateError::BadKey(format!(
                "key {} of agent {} has expired; ask the administrator for a new key",
                key.key_id, agent.name
            )));
        }
        self.store.touch_key(key.id).await?;
        Ok((agent.name, key.key_id))
    }

    fn entry(&self, caller: &Caller, controller: &str, op: &Operation, target: Option<String>, args: &Value) -> Entry {
        Entry {
            time_ms: now_ms(),
            request_id: caller.request_id.clone(),
            agent: caller.agent.clone(),
            key_id: caller.key_id.clone(),
            surface: caller.surface,
            client_addr: caller.client_addr.clone(),
            controller: controller.to_string(),
            operation: op.name.to_string(),
            target,
            args: redact_args(args),
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

    /// The one path: policy → audit → execute → audit. `args` is the operation's JSON arguments
    /// (`job`, `build`, `parameters`, ...).
    pub async fn call(
        &self,
        caller: &Caller,
        controller: &str,
        op_name: &str,
        args: Value,
    ) -> Result<Value, GateError> {
        self.call_with_progress(caller, controller, op_name, args, None).await
    }

    /// [`Gate::call`], reporting progress of long operations (waiting for a build) to `progress`.
    pub async fn call_with_progress(
        &self,
        caller: &Caller,
        controller: &str,
        op_name: &str,
        args: Value,
        progress: Option<ProgressSink>,
    ) -> Result<Value, GateError> {
        let op =
            catalog::operation(op_name).ok_or_else(|| GateError::Invalid(format!("unknown operation '{op_name}'")))?;
        let job_arg = match op.target {
            Target::Job => Some(
                args.get("job")
                    .and_then(Value::as_str)
                    .ok_or_else(|| {
                        GateError::Invalid(format!(
                            "{op_name} needs a 'job' argument (the job's full name, e.g. team/api)"
                        ))
                    })?
                    .to_string(),
            ),
            Target::Folder => args.get("folder").and_then(Value::as_str).map(str::to_string),
            Target::Controller => None,
        };
        let params = trigger_params(&args);
        let grants = self.store.grants_of(&caller.agent).await?;
        let decision = policy::decide(
            &grants,
            &policy::Request { agent: &caller.agent, controller, op, job: job_arg.as_deref(), params: &params },
        );
        let target = decision.job.clone().or(job_arg.clone());
        let mut entry = self.entry(caller, controller, op, target.clone(), &args);
        entry.allowed = decision.allowed;
        entry.grant = decision.grant;
        entry.reason = decision.reason.clone();
        if !decision.allowed {
            entry.phase = Phase::Denied;
            if let Err(e) = self.record(entry).await {
                tracing::error!(error = %e, "could not audit a denied call");
            }
            return Err(GateError::Denied { reason: decision.reason });
        }
        let idem_key = if op.name == "trigger_build" {
            args.get("idempotency_key")
                .and_then(Value::as_str)
                .map(|k| (caller.agent.clone(), controller.to_string(), k.to_string()))
        } else {
            None
        };
        if let Some(k) = &idem_key {
            let mut cache = self.idempotency.lock().await;
            cache.retain(|_, (at, _)| at.elapsed() < IDEMPOTENCY_TTL);
            if let Some((_, first)) = cache.get(k) {
                let mut v = first.clone();
                if let Value::Object(m) = &mut v {
                    m.insert("replayed".into(), Value::Bool(true));
                }
                // Still audited as a read of the first result; no second build is started.
                entry.phase = Phase::Read;
                entry.outcome = Some("replayed: same idempotency key, no new build".into());
                self.record(entry)
                    .await
                    .map_err(|e| GateError::AuditUnavailable(e.to_string()))?;
                return Ok(v);
            }
        }
        if op.access == Access::Write {
            let mut intent = entry.clone();
            intent.phase = Phase::Intent;
            // Fail closed: no intent record, no write.
            self.record(intent)
                .await
                .map_err(|e| GateError::AuditUnavailable(e.to_string()))?;
        }
        let started = Instant::now();
        let result = match self.connection(controller).await {
            Ok(conn) => {
                let mut sanitizer = crate::sanitize::Sanitizer::new(conn.known.as_ref().clone());
                execute(
                    &conn.client,
                    op,
                    target.as_deref(),
                    &args,
                    &params,
                    &grants,
                    &caller.agent,
                    controller,
                    progress.as_ref(),
                    &mut sanitizer,
                    &self.triggers,
                )
                .await
            }
            Err(e) => Err(e),
        };
        entry.phase = if op.access == Access::Write { Phase::Outcome } else { Phase::Read };
        entry.time_ms = now_ms();
        entry.duration_ms = Some(started.elapsed().as_millis() as i64);
        match &result {
            Ok(v) => {
                entry.outcome = Some(if v.get("merged") == Some(&Value::Bool(true)) {
                    "ok: merged by Jenkins into an identical build already queued".into()
                } else {
                    "ok".into()
                });
                entry.build_number = v
                    .get("build")
                    .and_then(|b| b.get("number"))
                    .and_then(Value::as_u64)
                    .or_else(|| v.get("number").and_then(Value::as_u64));
            }
            Err(e) => {
                entry.outcome = Some(format!("error: {e}"));
                entry.http_status = match e {
                    GateError::Jenkins(j) => j.status(),
                    _ => None,
                };
            }
        }
        if let (Some(k), Ok(v)) = (&idem_key, &result) {
            self.idempotency.lock().await.insert(k.clone(), (Instant::now(), v.clone()));
        }
        let appended = self.record(entry).await;
        if let Err(e) = appended {
            tracing::error!(error = %e, "could not write the outcome audit record");
            if op.access == Access::Read {
                // A read that cannot be audited is not returned.
                return Err(GateError::AuditUnavailable(e.to_string()));
            }
        }
        result
    }

    // -----------------------------------------------------------------------------------------
    // audit

    /// Appends one record to the audit chain: the one seam every audited path writes through.
    pub async fn record(&self, entry: Entry) -> Result<Record, StoreError> {
        self.store.append_audit(&self.hmac_key, entry).await
    }

    pub async fn audit(&self, filter: &AuditFilter) -> Result<Vec<Record>, GateError> {
        Ok(self.store.audit(filter).await?)
    }

    /// Verifies the whole chain (and exported checkpoints). Returns how many records were checked.
    pub async fn verify_audit(&self, checkpoints: &[Checkpoint]) -> Result<Result<u64, audit::VerifyError>, GateError> {
        let all = self.store.audit(&AuditFilter::default()).await?;
        Ok(audit::verify(&self.hmac_key, all.iter(), None, checkpoints))
    }

    /// The current head of the chain, to export and keep elsewhere (detects truncation later).
    pub async fn checkpoint(&self) -> Result<Option<Checkpoint>, GateError> {
        let all = self.store.audit(&AuditFilter::default()).await?;
        Ok(all.last().map(|r| Checkpoint { seq: r.seq, hash: r.hash.clone() }))
    }
}

/// Trigger parameters from `args.parameters` (an object of name → value).
fn trigger_params(args: &Value) -> Vec<(String, String)> {
    args.get("parameters")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        match v {
                            Value::String(s) => s.clone(),
                            other => other.to_string(),
                        },
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Argument values kept in the audit: parameters whose names look secret are masked.
fn redact_args(args: &Value) -> Value {
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

fn looks_secret(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    ["pass", "pwd", "secret", "token", "apikey", "api_key", "credential", "private_key", "auth"]
        .iter()
        .any(|s| n.contains(s))
}

/// Jenkins stores secrets in config.xml encrypted with the controller's key, as `{AQAAAB...}`.
fn redact_encrypted_blobs(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(i) = rest.find("{AQAAAB") {
        let after = &rest[i..];
        match after.find('}') {
            Some(end) if end > 20 && after[1..end].chars().all(|c| c.is_ascii_alphanumeric() || "+/=".contains(c)) => {
                out.push_str(&rest[..i]);
                out.push_str("[REDACTED:jenkins-encrypted-secret]");
                rest = &after[end + 1..];
            }
            _ => {
                out.push_str(&rest[..i + 1]);
                rest = &rest[i + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Executes an allowed operation. (The richer answers — triage, log views with sanitizing —
/// live in the capability layer; this is the direct mapping onto the wire client.)
#[allow(clippy::too_many_arguments)]
async fn execute(
    client: &JenkinsClient,
    op: &Operation,
    job: Option<&str>,
    args: &Value,
    params: &[(String, String)],
    grants: &[Grant],
    agent: &str,
    controller: &str,
    progress: Option<&ProgressSink>,
    sanitizer: &mut crate::sanitize::Sanitizer,
    triggers: &TriggerSlots,
) -> Result<Value, GateError> {
    let job_path = || -> Result<JobPath, GateError> { Ok(JobPath::parse(job.unwrap_or_default())?) };
    Ok(match op.name {
        "list_jobs" => {
            let folder = args.get("folder").and_then(Value::as_str).map(JobPath::parse).transpose()?;
            let filter = args.get("filter").and_then(Value::as_str).map(str::to_lowercase);
            let status = args.get("status").and_then(Value::as_str).map(str::to_string);
            let flat = filter.is_some() || status.is_some();
            // One tree= request lists the whole hierarchy (no request per job).
            let depth =
                if flat { 10 } else { args.get("depth").and_then(Value::as_u64).unwrap_or(1).clamp(1, 10) as usize };
            let items = client.list_items(folder.as_ref(), depth).await?;
            let mut visible = Vec::new();
            collect_visible(&items, grants, agent, controller, &mut visible);
            if !flat {
                return Ok(json!({ "jobs": visible }));
            }
            let mut leaves = Vec::new();
            flatten_jobs(&visible, &mut leaves);
            let wanted = |j: &Value| {
                let name = j["name"].as_str().unwrap_or("").to_lowercase();
                let color = j["color"].as_str().unwrap_or("");
                filter.as_ref().is_none_or(|f| name.contains(f.as_str()))
                    && status.as_deref().is_none_or(|s| status_matches(s, color))
            };
            let matching: Vec<Value> = leaves.into_iter().filter(|j| wanted(j)).collect();
            let offset = args.get("offset").and_then(Value::as_u64).unwrap_or(0) as usize;
            let limit = args.get("limit").and_then(Value::as_u64).unwrap_or(100).clamp(1, 1000) as usize;
            let page: Vec<Value> = matching.iter().skip(offset).take(limit).cloned().collect();
            let next = (offset + page.len() < matching.len()).then_some(offset + page.len());
            json!({ "jobs": page, "total": matching.len(), "offset": offset, "next_offset": next })
        }
        "get_job" => crate::capability::job_summary(client, &job_path()?).await?,
        "get_build" => {
            crate::capability::build_detail(client, &job_path()?, crate::capability::selector(args)?).await?
        }
        "get_build_log" => {
            let jp = job_path()?;
            let number = crate::capability::resolve_number(client, &jp, crate::capability::selector(args)?).await?;
            let mode = crate::capability::LogMode::from_args(args)?;
            crate::capability::log_view(client, &jp, number, &mode, sanitizer).await?
        }
        "get_test_report" => {
            let jp = job_path()?;
            let number = crate::capability::resolve_number(client, &jp, crate::capability::selector(args)?).await?;
            json!({ "number": number, "report": client.test_report(&jp, number).await? })
        }
        "get_pipeline_run" => {
            let jp = job_path()?;
            let number = crate::capability::resolve_number(client, &jp, crate::capability::selector(args)?).await?;
            crate::capability::pipeline_detail(client, &jp, number, sanitizer).await?
        }
        "triage_build" => {
            let jp = job_path()?;
            let sel = match args.get("build") {
                None | Some(Value::Null) => BuildSelector::LastCompletedBuild,
                _ => crate::capability::selector(args)?,
            };
            crate::capability::triage(client, &jp, sel, sanitizer).await?
        }
        "get_queue" => {
            let factor = args.get("stuck_factor").and_then(Value::as_f64).unwrap_or(3.0).max(1.0);
            crate::capability::queue_view(client, |job| policy::may_see(grants, agent, controller, job), factor).await?
        }
        "list_views" => json!({ "views": client.views().await?.iter().map(|v| v.name.clone()).collect::<Vec<_>>() }),
        "trigger_build" => {
            let jp = job_path()?;
            let wait = args.get("wait").and_then(Value::as_str).unwrap_or("start");
            if !matches!(wait, "none" | "start" | "finish") {
                return Err(GateError::Invalid(format!("wait must be none, start or finish, not '{wait}'")));
            }
            let job_info = client.job(&jp).await?;
            crate::capability::validate_parameters(&job_info, params)?;
            // Identical triggers queue one after another: each waits until the previous one's queue
            // item has left the queue, so Jenkins never merges them into one build.
            let slot_key = format!("{controller}\u{1}{}\u{1}{:?}", jp.to_string().to_lowercase(), {
                let mut p = params.to_vec();
                p.sort();
                p
            });
            let slot = triggers.lock().await.entry(slot_key).or_default().clone();
            let mut guard = slot.lock().await;
            if let Some(prev) = *guard {
                let deadline = Instant::now() + Duration::from_secs(600);
                while Instant::now() < deadline {
                    match client.queue_item(prev).await {
                        Ok(item) if !item.is_left() => tokio::time::sleep(Duration::from_millis(200)).await,
                        _ => break,
                    }
                }
            }
            let (queue_id, merged) = client.trigger_detailed(&jp, params).await?;
            *guard = Some(queue_id);
            drop(guard);
            if merged {
                // Another client queued the same build first; Jenkins merged this trigger into it.
                let b =
                    client.wait_for_build(&jp, queue_id, Duration::from_secs(600), Duration::from_millis(500)).await?;
                return Ok(json!({ "queue_id": queue_id, "merged": true, "build": { "number": b.number },
                    "note": "Jenkins merged this trigger into an identical build already waiting in the queue; no separate build was started" }));
            }
            let report = |done: f64, total: Option<f64>, msg: String| {
                if let Some(p) = progress {
                    let _ = p.send((done, total, msg));
                }
            };
            report(1.0, None, format!("queued as item {queue_id}"));
            if wait == "none" {
                return Ok(json!({ "queue_id": queue_id }));
            }
            let b = client.wait_for_build(&jp, queue_id, Duration::from_secs(600), Duration::from_millis(500)).await?;
            report(2.0, None, format!("build #{} started", b.number));
            if wait == "start" {
                return Ok(json!({ "queue_id": queue_id, "build": { "number": b.number } }));
            }
            let started = Instant::now();
            let mut tick = 2.0;
            loop {
                let info = client.build(&jp, BuildSelector::Number(b.number)).await?;
                if !info.building {
                    report(
                        tick + 1.0,
                        Some(tick + 1.0),
                        format!("build #{} finished: {}", b.number, info.result.clone().unwrap_or_default()),
                    );
                    return Ok(
                        json!({ "queue_id": queue_id, "build": { "number": b.number, "result": info.result, "duration_ms": info.duration } }),
                    );
                }
                if started.elapsed() > Duration::from_secs(3600) {
                    return Err(GateError::Invalid(format!(
                        "build #{} is still running after an hour; follow it with get_build",
                        b.number
                    )));
                }
                tick += 1.0;
                let est = if info.estimated_duration > 0 {
                    format!(" (usually takes {} s)", info.estimated_duration / 1000)
                } else {
                    String::new()
                };
                report(tick, None, format!("build #{} running for {} s{est}", b.number, started.elapsed().as_secs()));
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
        "stop_build" => {
            let jp = job_path()?;
            let BuildSelector::Number(n) = crate::capability::selector(args)? else {
                return Err(GateError::Invalid("stop_build needs the build number".into()));
            };
            client.stop_build(&jp, n).await?;
            json!({ "stopped": n })
        }
        "cancel_queue_item" => {
            let id = args
                .get("queue_id")
                .and_then(Value::as_u64)
                .ok_or_else(|| GateError::Invalid("cancel_queue_item needs 'queue_id'".into()))?;
            let item = client.queue_item(id).await?;
            let owner = item.task.as_ref().and_then(|t| t.full_name.clone()).unwrap_or_default();
            if !owner.is_empty()
                && policy::normalize_job_path(&owner).ok() != policy::normalize_job_path(job.unwrap_or_default()).ok()
            {
                return Err(GateError::Invalid(format!(
                    "queue item {id} does not belong to job {}",
                    job.unwrap_or_default()
                )));
            }
            client.cancel_queue_item(id).await?;
            json!({ "cancelled": id })
        }
        "get_job_config" => {
            // config.xml can carry secrets (tokens in scripts, Jenkins-encrypted {AQAA...} blobs):
            // it goes through the same redaction as console text.
            let xml = client.config_xml(&job_path()?).await?;
            let before = sanitizer.report().redactions;
            let cleaned: String =
                xml.lines().map(|l| format!("{}\n", redact_encrypted_blobs(&sanitizer.clean(l)))).collect();
            json!({ "config_xml": cleaned, "redactions": sanitizer.report().redactions - before })
        }
        "update_job_config" => {
            let xml = args
                .get("config_xml")
                .and_then(Value::as_str)
                .ok_or_else(|| GateError::Invalid("update_job_config needs 'config_xml'".into()))?;
            client.update_config_xml(&job_path()?, xml).await?;
            json!({ "updated": true })
        }
        "enable_job" | "disable_job" => {
            client.set_enabled(&job_path()?, op.name == "enable_job").await?;
            json!({ "enabled": op.name == "enable_job" })
        }
        "create_job" => {
            let jp = job_path()?;
            let xml = args
                .get("config_xml")
                .and_then(Value::as_str)
                .ok_or_else(|| GateError::Invalid("create_job needs 'config_xml'".into()))?;
            client.create_job(jp.parent().as_ref(), jp.name(), xml).await?;
            json!({ "created": jp.to_string() })
        }
        "copy_job" => {
            let jp = job_path()?;
            let from = args
                .get("from")
                .and_then(Value::as_str)
                .ok_or_else(|| GateError::Invalid("copy_job needs 'from' (the job to copy)".into()))?;
            if !policy::may_see(grants, agent, controller, from) {
                return Err(GateError::Denied { reason: format!("no grant lets {agent} read the job to copy") });
            }
            client.copy_job(jp.parent().as_ref(), jp.name(), &format!("/{}", from.trim_start_matches('/'))).await?;
            json!({ "created": jp.to_string(), "from": from })
        }
        "delete_job" => {
            client.delete_job(&job_path()?).await?;
            json!({ "deleted": job })
        }
        "list_nodes" => {
            let n = client.nodes().await?;
            json!({ "nodes": n.computer.iter().map(|c| json!({"name": c.display_name, "offline": c.offline, "executors": c.num_executors, "idle": c.idle, "offline_reason": c.offline_cause_reason})).collect::<Vec<_>>() })
        }
        "get_system_info" => {
            let (root, version) =
                client.root_info(Some(&jenkins::tree::Tree::new().fields(&["quietingDown", "useSecurity"]))).await?;
            let caps = client.capabilities().await?;
            json!({ "version": version, "quieting_down": root.quieting_down,
                    "plugins": if caps.plugins_visible { Some(caps.plugins.iter().map(|p| format!("{}@{}", p.short_name, p.version)).collect::<Vec<_>>()) } else { None } })
        }
        other => return Err(GateError::Invalid(format!("operation {other} is not implemented"))),
    })
}

/// Jobs (not folders) of a listing, flattened.
fn flatten_jobs(items: &[Value], out: &mut Vec<Value>) {
    for i in items {
        match i.get("jobs").and_then(Value::as_array) {
            Some(children) => flatten_jobs(children, out),
            None => out.push(json!({"name": i["name"], "kind": i["kind"], "color": i["color"]})),
        }
    }
}

/// Status filters over Jenkins ball colours.
fn status_matches(status: &str, color: &str) -> bool {
    let base = color.trim_end_matches("_anime");
    match status {
        "failing" | "failed" | "red" => base == "red",
        "unstable" | "yellow" => base == "yellow",
        "passing" | "success" | "blue" => base == "blue",
        "building" | "running" => color.ends_with("_anime"),
        "disabled" => base == "disabled",
        "never_built" | "notbuilt" => base == "notbuilt",
        "aborted" => base == "aborted",
        other => base == other,
    }
}

fn collect_visible(
    items: &[jenkins::model::ItemRef],
    grants: &[Grant],
    agent: &str,
    controller: &str,
    out: &mut Vec<Value>,
) {
    for i in items {
        let name = i.full_name.clone().unwrap_or_else(|| i.name.clone());
        let children = i.jobs.as_deref().unwrap_or(&[]);
        let mut sub = Vec::new();
        collect_visible(children, grants, agent, controller, &mut sub);
        // A folder is shown if the agent may see it or anything inside it.
        if policy::may_see(grants, agent, controller, &name) || !sub.is_empty() {
            out.push(json!({ "name": name, "kind": i.class.rsplit('.').next().unwrap_or(""), "color": i.color, "jobs": if i.is_folder() { Some(sub) } else { None } }));
        }
    }
}

/// For tests: a secret as a string.
#[doc(hidden)]
pub fn expose(s: &SecretString) -> &str {
    s.expose_secret()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encrypted_blobs_and_secret_names() {
        let line = "<password>{AQAAABAAAAAQ1234567890abcdefghijKLMNOP=}</password> {AQAAAB short} {x}";
        assert_eq!(
            redact_encrypted_blobs(line),
            "<password>[REDACTED:jenkins-encrypted-secret]</password> {AQAAAB short} {x}"
        );
        for name in ["DB_PASS", "PWD", "github_token", "AUTH_HEADER", "Password"] {
            assert!(looks_secret(name), "{name}");
        }
        assert!(!looks_secret("ENV") && !looks_secret("BRANCH"));
        let masked = redact_args(&json!({"job": "x", "parameters": {"DB_PASS": "hunter2", "ENV": "dev"}}));
        assert_eq!(masked["parameters"]["DB_PASS"], "****");
        assert_eq!(masked["parameters"]["ENV"], "dev");
    }
}
