//! The gate: the one path every agent call takes, and the administrator's operations.
//!
//! agent → surface → [`Gate::authenticate`] → [`Gate::call`]: resolve the catalog operation and
//! its target → policy decision → audit "intent" (writes; fail closed) → execute through the wire
//! client → audit "outcome" → response. Surfaces (MCP, proxy, CLI, web) call `call`; none has
//! policy or audit code of its own.

use std::collections::HashMap;
use std::sync::Arc;

use jenkins::ssrf::AllowEntry;
use jenkins::{ConnectionReport, Credentials, JenkinsClient, TlsOptions};
use secrecy::{ExposeSecret, SecretString};

use crate::audit::{self, Checkpoint, Entry, Record, Surface};
use crate::call::{CallState, Limits};
use crate::catalog::Group;
use crate::keys;
use crate::policy::{self, Grant, Level, ParamConstraint};
use crate::secrets::{self, MasterKey, Sealed};
use crate::store::{AgentRow, AuditFilter, ControllerRow, KeyRow, Store, StoreError, now_ms};

pub use crate::error::GateError;

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
pub(crate) struct Connection {
    pub(crate) client: Arc<JenkinsClient>,
    pub(crate) known: Arc<crate::sanitize::KnownSecrets>,
}

pub use crate::ops::ProgressSink;

/// The gate over one store and master key.
pub struct Gate {
    store: Store,
    master: MasterKey,
    hmac_key: [u8; 32],
    connections: tokio::sync::Mutex<HashMap<String, Connection>>,
    /// The call path's limits and per-process state (see [`crate::call`]).
    pub(crate) calls: CallState,
}

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
            calls: CallState::default(),
        }
    }

    /// Sets the call path's limits (calls in flight per agent, deadlines, answer size).
    pub fn with_limits(mut self, limits: Limits) -> Gate {
        self.calls.limits = limits;
        self
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

    /// The controller's connection for a call (the call path's executor uses it).
    pub(crate) async fn connection_for_call(&self, name: &str) -> Result<Connection, GateError> {
        self.connection(name).await
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

/// For tests: a secret as a string.
#[doc(hidden)]
pub fn expose(s: &SecretString) -> &str {
    s.expose_secret()
}
