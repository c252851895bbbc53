//! The gate: controllers, agents, grants and keys (each administrative change audited), the
//! audit log's keys and verification, and [`Gate::record`] — the one seam every audit append goes
//! through. The agent call path (begin → executor → finish) is in [`crate::call`].

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use jenkins::ssrf::AllowEntry;
use jenkins::{ConnectionReport, Credentials, JenkinsClient, TlsOptions};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

use crate::audit::{self, AuditKeys, Checkpoint, Entry, Head, Phase, Record, SealCheck, Surface, VerifyError};
use crate::audit_device::{self, AuditDevice};
use crate::audit_writer::AuditWriter;
use crate::auth_cache::{AgentGrants, KeyEntry, KeyUse, TtlCache};
use crate::call::{CallState, Limits};
use crate::catalog::Group;
use crate::keys;
use crate::limits::{AgentLimits, LimitState};
use crate::policy::{self, Grant, Level, ParamConstraint};
use crate::secrets::{self, MasterKey, Sealed, SecretsError};
use crate::store::{
    AgentRow, AuditFilter, ControllerRow, KeyRow, META_AUDIT_HEAD, META_KEY_CHECK, RemoveOutcome, Store, StoreError,
    now_ms,
};

pub use crate::error::GateError;

/// Who is calling: an authenticated agent.
#[derive(Debug, Clone)]
pub struct Caller {
    pub agent: String,
    pub key_id: Option<String>,
    pub surface: Surface,
    pub client_addr: Option<String>,
    /// The surface's own id for the request (e.g. `mcp-<JSON-RPC id>`), for logs only: it is
    /// unique only per session, so the audit uses the gate's own request id.
    pub request_id: String,
}

/// Who makes an administrative change, and through which surface; named in its audit records
/// ("alice (local CLI) created agent triage-bot").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admin {
    pub name: String,
    pub surface: Surface,
}

impl Admin {
    pub fn new(name: impl Into<String>, surface: Surface) -> Admin {
        Admin { name: name.into(), surface }
    }

    /// The operator at the local CLI: the login name (`$USER`, `$LOGNAME`), else "admin". Not an
    /// authentication: whoever runs the CLI can already write the store.
    pub fn local_cli() -> Admin {
        let name = ["USER", "LOGNAME"]
            .iter()
            .filter_map(|v| std::env::var(v).ok())
            .map(|n| n.trim().to_string())
            .find(|n| !n.is_empty())
            .unwrap_or_else(|| "admin".into());
        Admin { name, surface: Surface::Cli }
    }
}

/// What `verify --file` found besides the chain: how many file records matched, and how many
/// database records the file lacks (the device was off, or failed, when they were written).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileReport {
    pub file_records: u64,
    pub missing_from_file: u64,
}

/// The master key's check value as stored (`jgate_meta` [`META_KEY_CHECK`]).
#[derive(serde::Serialize, serde::Deserialize)]
struct KeyCheck {
    key_id: String,
    check: String,
}

fn audit_key_aad(version: u32) -> String {
    format!("jgate:audit-key:{version}")
}

fn to_json(v: &impl serde::Serialize) -> Result<String, GateError> {
    serde_json::to_string(v).map_err(|e| GateError::Invalid(e.to_string()))
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

/// A controller's connection settings beyond [`NewController`]'s.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ControllerSettings {
    /// Seconds per Jenkins request (`--timeout`); `None` = the client's default (30 s).
    pub timeout_secs: Option<u64>,
    /// Also trust the operating system's certificate store (`--system-ca`).
    pub system_ca: bool,
}

/// A change to a stored controller: `None` keeps the current value.
#[derive(Default)]
pub struct ControllerUpdate {
    pub url: Option<String>,
    pub username: Option<String>,
    pub token: Option<SecretString>,
    /// The secret is a password (`Some(true)`) or an API token (`Some(false)`).
    pub password: Option<bool>,
    /// `Some(None)` removes the CA bundle.
    pub ca_pem: Option<Option<String>>,
    pub system_ca: Option<bool>,
    pub insecure: Option<bool>,
    /// Replaces the whole allow-list.
    pub allow_private: Option<Vec<String>>,
    /// `Some(None)` returns to the default timeout.
    pub timeout_secs: Option<Option<u64>>,
}

impl std::fmt::Debug for ControllerUpdate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControllerUpdate")
            .field("url", &self.url)
            .field("username", &self.username)
            .field("token", &self.token.as_ref().map(|_| "[redacted]"))
            .field("password", &self.password)
            .field("ca_pem", &self.ca_pem.as_ref().map(|c| c.as_ref().map(|_| "[PEM]")))
            .field("system_ca", &self.system_ca)
            .field("insecure", &self.insecure)
            .field("allow_private", &self.allow_private)
            .field("timeout_secs", &self.timeout_secs)
            .finish()
    }
}

/// What `remove_controller_with` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControllerRemoval {
    /// Removed, together with this many grants.
    Removed { grants: u64 },
    /// There is no controller by that name (nothing recorded).
    Missing,
}

/// How often a gate asks the store whether controllers changed.
const CONNECTIONS_RECHECK: std::time::Duration = std::time::Duration::from_secs(1);

#[derive(Default)]
struct ConnectionsChecked {
    at: Option<std::time::Instant>,
    generation: Option<i64>,
}

/// What a wire client is built from (a stored row, or a row about to be stored).
struct ClientSpec<'a> {
    name: &'a str,
    url: &'a str,
    username: &'a str,
    password: bool,
    allow: &'a [String],
    ca_pem: Option<&'a str>,
    insecure: bool,
    system_ca: bool,
    timeout_secs: Option<u64>,
}

impl<'a> ClientSpec<'a> {
    fn of(row: &'a ControllerRow) -> ClientSpec<'a> {
        ClientSpec {
            name: &row.name,
            url: &row.base_url,
            username: &row.username,
            password: row.secret_kind == "password",
            allow: &row.allow_private,
            ca_pem: row.tls_ca_pem.as_deref(),
            insecure: row.tls_insecure,
            system_ca: row.system_ca,
            timeout_secs: row.timeout_secs.and_then(|t| u64::try_from(t).ok()),
        }
    }
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
    /// The audit keys (opened from the store with the master key); replaced by a rotation.
    audit_keys: RwLock<Arc<AuditKeys>>,
    /// The group-commit queue every audit append goes through (it owns the audit device).
    writer: AuditWriter,
    /// Key verifications, grants and controller names, each fresh for at most a second
    /// (see [`crate::auth_cache`]).
    keys_cache: TtlCache<KeyEntry>,
    grants_cache: TtlCache<AgentGrants>,
    controllers_cache: TtlCache<Arc<Vec<String>>>,
    /// Last-use times of keys, written in the background.
    key_use: Arc<KeyUse>,
    /// Stops the background key-use flusher when the gate is dropped.
    _stop: tokio_util::sync::DropGuard,
    /// Set once this gate rotated the master key: its `master` is stale, so it makes no further
    /// administrative changes.
    rotated: AtomicBool,
    connections: tokio::sync::Mutex<HashMap<String, Connection>>,
    /// When `connections` was last checked against the store's controller generation, and the
    /// generation it was built under (see [`Gate::connection`]).
    connections_checked: std::sync::Mutex<ConnectionsChecked>,
    /// The call path's limits and per-process state (see [`crate::call`]).
    pub(crate) calls: CallState,
    /// Rate limits' leases and clock in this process (see [`crate::limits`]).
    pub(crate) limit_state: LimitState,
}

fn token_aad(controller: &str) -> String {
    format!("jgate:controller:{controller}:token")
}

impl Gate {
    /// Opens the gate over `store` with `master`, writing records also to `device` if given.
    ///
    /// Before anything can be written, the master key is checked against the store's check value
    /// (a wrong `JGATE_MASTER_KEY` or key file is refused with [`SecretsError::MasterKeyMismatch`],
    /// and nothing is written). On the first open of a store the check value, audit key version 1
    /// (the key jgate always derived from the master key, so earlier records keep verifying) and
    /// the sealed head are written.
    ///
    /// Starts the gate's background work: the audit writer (group commit; a thread of its own on
    /// SQLite, a task on the current Tokio runtime on PostgreSQL) and the key-use flusher (a
    /// task); both end when the gate is dropped.
    pub async fn open(store: Store, master: MasterKey, device: Option<AuditDevice>) -> Result<Gate, GateError> {
        let keys = Self::open_audit(&store, &master).await?;
        let key_use = Arc::new(KeyUse::default());
        let stop = tokio_util::sync::CancellationToken::new();
        crate::auth_cache::start_flusher(store.clone(), key_use.clone(), stop.clone());
        Ok(Gate {
            writer: AuditWriter::start(store.clone(), device.map(Arc::new), key_use.clone()),
            store,
            master,
            audit_keys: RwLock::new(Arc::new(keys)),
            keys_cache: TtlCache::new(),
            grants_cache: TtlCache::new(),
            controllers_cache: TtlCache::new(),
            key_use,
            _stop: stop.drop_guard(),
            rotated: AtomicBool::new(false),
            connections: tokio::sync::Mutex::new(HashMap::new()),
            connections_checked: std::sync::Mutex::new(ConnectionsChecked::default()),
            calls: CallState::default(),
            limit_state: LimitState::default(),
        })
    }

    async fn open_audit(store: &Store, master: &MasterKey) -> Result<AuditKeys, GateError> {
        let mut tx = store.locked().await?;
        let set_up = match tx.meta(META_KEY_CHECK).await? {
            Some(text) => {
                let stored: KeyCheck = serde_json::from_str(&text)
                    .map_err(|e| StoreError::Corrupt(format!("the master key check value: {e}")))?;
                if !bool::from(subtle::ConstantTimeEq::ct_eq(stored.check.as_bytes(), master.check_value().as_bytes()))
                {
                    return Err(SecretsError::MasterKeyMismatch { key_id: master.id(), expected: stored.key_id }.into());
                }
                true
            }
            None => {
                Self::check_unmarked_store(&mut tx, master).await?;
                tx.put_meta(META_KEY_CHECK, &to_json(&KeyCheck { key_id: master.id(), check: master.check_value() })?)
                    .await?;
                false
            }
        };
        let sealed = tx.audit_keys().await?;
        let mut ring = Vec::with_capacity(sealed.len().max(1));
        if sealed.is_empty() {
            if set_up {
                return Err(StoreError::Corrupt(
                    "the audit keys are missing although this store was set up: the audit state was deleted".into(),
                )
                .into());
            }
            // Version 1 is the key jgate always derived from the master key: records written
            // before audit keys were stored verify with it.
            let key = zeroize::Zeroizing::new(master.audit_hmac_key());
            tx.put_audit_key(1, &to_json(&secrets::seal_key(master, &key, &audit_key_aad(1))?)?).await?;
            ring.push((1, key));
        }
        for (version, text) in sealed {
            let s: Sealed = serde_json::from_str(&text)
                .map_err(|e| StoreError::Corrupt(format!("audit key version {version}: {e}")))?;
            ring.push((version, secrets::open_key(master, &s, &audit_key_aad(version))?));
        }
        let keys = AuditKeys::new(ring).ok_or_else(|| StoreError::Corrupt("no audit key".into()))?;
        // A set-up store whose head is gone keeps it gone: appends stop and verify reports it.
        if !set_up && tx.meta(META_AUDIT_HEAD).await?.is_none() {
            let (seq, hash) = tx.last_audit().await?.map_or((0, audit::GENESIS.to_string()), |(s, h, _)| (s, h));
            tx.put_head(&Head::seal(&keys, seq, &hash)).await?;
        }
        tx.commit().await?;
        Ok(keys)
    }

    /// A store set up before check values existed: make sure `master` is the key its data was
    /// sealed with before recording it as *the* key (a wrong key must not win by being first).
    async fn check_unmarked_store(tx: &mut crate::store::Locked<'_>, master: &MasterKey) -> Result<(), GateError> {
        if let Some(c) = tx.controllers().await?.first() {
            let sealed: Sealed =
                serde_json::from_str(&c.sealed_token).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            if secrets::open(master, &sealed, &token_aad(&c.name)).is_err() {
                return Err(
                    SecretsError::MasterKeyMismatch { key_id: master.id(), expected: sealed.master_key_id }.into()
                );
            }
            return Ok(());
        }
        if let Some((_, _, json)) = tx.last_audit().await?
            && let Ok(r) = serde_json::from_str::<Record>(&json)
            && audit::seal_ok(&master.audit_hmac_key(), &r) == Some(false)
        {
            return Err(SecretsError::MasterKeyMismatch { key_id: master.id(), expected: "unknown".into() }.into());
        }
        Ok(())
    }

    /// The audit keys in use.
    fn keys(&self) -> Arc<AuditKeys> {
        self.audit_keys.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// An administrative audit entry (phase intent; [`Gate::admin_outcome`] turns it into the outcome).
    pub(crate) fn admin_entry(
        admin: &Admin,
        op: &str,
        target: Option<&str>,
        controller: Option<&str>,
        args: Value,
    ) -> Entry {
        let time_ms = now_ms();
        Entry {
            time_ms,
            request_id: format!("admin-{}-{time_ms}", std::process::id()),
            agent: admin.name.clone(),
            key_id: None,
            surface: admin.surface,
            client_addr: None,
            controller: controller.unwrap_or_default().to_string(),
            operation: op.to_string(),
            target: target.map(str::to_string),
            args,
            phase: Phase::Intent,
            allowed: true,
            grant: None,
            reason: String::new(),
            outcome: None,
            http_status: None,
            duration_ms: None,
            redactions: 0,
            build_number: None,
        }
    }

    /// Records that an administrator is about to make a change: no record, no change.
    pub(crate) async fn admin_intent(&self, entry: &Entry) -> Result<(), GateError> {
        if self.rotated.load(Ordering::SeqCst) {
            return Err(GateError::Invalid(
                "this jgate rotated the master key: reopen it with the new key before making further changes".into(),
            ));
        }
        self.record(entry.clone()).await.map(|_| ()).map_err(|e| GateError::AuditUnavailable(e.to_string()))
    }

    /// Records how an administrative change went (`extra` joins the arguments on success). The
    /// change is done (or failed) by now, so a failure to record is logged, not returned.
    pub(crate) async fn admin_outcome<T>(&self, mut entry: Entry, result: &Result<T, GateError>, extra: Value) {
        // This process sees its own changes at once (other processes within a second).
        self.clear_caches();
        entry.phase = Phase::Outcome;
        entry.time_ms = now_ms();
        match result {
            Ok(_) => {
                entry.outcome = Some("ok".into());
                if let (Value::Object(args), Value::Object(more)) = (&mut entry.args, extra) {
                    args.extend(more);
                }
            }
            Err(e) => entry.outcome = Some(format!("error: {e}")),
        }
        if let Err(e) = self.record(entry).await {
            tracing::error!(error = %e, "an administrative change was made, but its outcome could not be audited (its intent was)");
        }
    }

    fn clear_caches(&self) {
        self.keys_cache.clear();
        self.grants_cache.clear();
        self.controllers_cache.clear();
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

    fn build_client(spec: &ClientSpec<'_>, token: SecretString) -> Result<JenkinsClient, GateError> {
        let creds = if spec.password {
            Credentials::password(spec.username, token)
        } else {
            Credentials::api_token(spec.username, token)
        };
        let mut b = JenkinsClient::builder(spec.url)
            .credentials(creds)
            .tls(TlsOptions {
                ca_bundle_pem: spec.ca_pem.map(|p| p.as_bytes().to_vec()),
                danger_accept_invalid_certs: spec.insecure,
            })
            .system_ca(spec.system_ca);
        if let Some(t) = spec.timeout_secs {
            b = b.limits(jenkins::Limits::with_timeout(std::time::Duration::from_secs(t)));
        }
        for a in spec.allow {
            let entry: AllowEntry = a.parse().map_err(|e| GateError::Invalid(format!("--allow-private {a}: {e}")))?;
            b = b.allow_private(entry);
        }
        Ok(b.build()?)
    }

    /// [`Gate::build_client`] for a controller about to be stored: a URL or setting no connection
    /// could work with is refused once, with its own fix (never `--force`, which would only store
    /// a controller no call can use).
    fn build_client_to_store(spec: &ClientSpec<'_>, token: SecretString) -> Result<JenkinsClient, GateError> {
        match Self::build_client(spec, token) {
            Err(GateError::Jenkins(e)) => match *e {
                jenkins::Error::Refused(r) => Err(refused_controller(spec.name, &r)),
                e => Err(GateError::Invalid(format!("controller '{}' was not stored: {e}", spec.name))),
            },
            other => other,
        }
    }

    /// The connection test before storing: its failure is [`GateError::ConnectionTest`] (which
    /// mentions `--force`), except a refusal by the egress guard, which `--force` cannot help.
    async fn test_before_storing(
        name: &str,
        client: &JenkinsClient,
        force: bool,
    ) -> Result<Option<ConnectionReport>, GateError> {
        match client.test_connection().await {
            Ok(r) => Ok(Some(r)),
            Err(jenkins::Error::Refused(r)) => Err(refused_controller(name, &r)),
            Err(error) if !force => Err(GateError::ConnectionTest { name: name.to_string(), error: Box::new(error) }),
            Err(error) => {
                tracing::warn!(controller = %name, %error, "storing a controller whose connection test failed (forced)");
                Ok(None)
            }
        }
    }

    /// Adds a controller after a successful connection test (or unconditionally with `force`).
    /// The token is sealed (envelope encryption bound to the controller's name).
    ///
    /// Audited as `admin.controller.add` (intent before storing, then the outcome).
    pub async fn add_controller(
        &self,
        admin: &Admin,
        c: NewController,
        force: bool,
    ) -> Result<(ControllerRow, Option<ConnectionReport>), GateError> {
        self.add_controller_with(admin, c, ControllerSettings::default(), force).await
    }

    /// [`Gate::add_controller`] with a request timeout and the OS trust store setting.
    pub async fn add_controller_with(
        &self,
        admin: &Admin,
        c: NewController,
        settings: ControllerSettings,
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
        let spec = ClientSpec {
            name: &c.name,
            url: &c.url,
            username: &c.username,
            password: c.password,
            allow: &c.allow_private,
            ca_pem: c.ca_pem.as_deref(),
            insecure: c.insecure,
            system_ca: settings.system_ca,
            timeout_secs: settings.timeout_secs,
        };
        let client = Self::build_client_to_store(&spec, c.token.clone())?;
        let report = Self::test_before_storing(&c.name, &client, force).await?;
        let entry = Self::admin_entry(
            admin,
            "admin.controller.add",
            Some(&c.name),
            Some(&c.name),
            json!({"url": client.base_url().to_string(), "username": c.username, "password": c.password,
                   "allow_private": c.allow_private, "tls_insecure": c.insecure, "system_ca": settings.system_ca,
                   "ca_file": c.ca_pem.is_some(), "timeout_secs": settings.timeout_secs, "forced": report.is_none()}),
        );
        self.admin_intent(&entry).await?;
        let result = async {
            let sealed = secrets::seal(&self.master, &c.token, &token_aad(&c.name))?;
            let row = ControllerRow {
                id: 0,
                name: c.name.clone(),
                base_url: client.base_url().to_string(),
                username: c.username.clone(),
                secret_kind: if c.password { "password".into() } else { "token".into() },
                sealed_token: to_json(&sealed)?,
                tls_ca_pem: c.ca_pem.clone(),
                tls_insecure: c.insecure,
                allow_private: c.allow_private.clone(),
                jenkins_version: report.as_ref().and_then(|r| r.version.clone()),
                plugins: report.as_ref().map(plugin_list).unwrap_or_default(),
                created_ms: now_ms(),
                timeout_secs: settings.timeout_secs.map(|t| i64::try_from(t).unwrap_or(i64::MAX)),
                system_ca: settings.system_ca,
            };
            let id = self.store.insert_controller(&row).await?;
            Ok(ControllerRow { id, ..row })
        }
        .await;
        self.admin_outcome(entry, &result, json!({})).await;
        Ok((result?, report))
    }

    /// Removes a stored controller; `false` if there is none by that name (nothing recorded).
    /// Refuses while grants name it (see [`Gate::remove_controller_with`]).
    /// Audited as `admin.controller.remove`.
    pub async fn remove_controller(&self, admin: &Admin, name: &str) -> Result<bool, GateError> {
        Ok(self.remove_controller_with(admin, name, false).await? != ControllerRemoval::Missing)
    }

    /// Removes a stored controller, and with `with_grants` the grants that name it (in the same
    /// transaction). Without it, refuses while such grants exist: they would silently apply to a
    /// later controller of the same name. Every running jgate drops the controller's connection
    /// within a second (the store's controller generation moves on in the same transaction).
    ///
    /// Audited as `admin.controller.remove` with the grants removed (their ids, agents, groups
    /// and levels).
    pub async fn remove_controller_with(
        &self,
        admin: &Admin,
        name: &str,
        with_grants: bool,
    ) -> Result<ControllerRemoval, GateError> {
        if self.store.controller(name).await?.is_none() {
            return Ok(ControllerRemoval::Missing);
        }
        let grants = self.store.grants_on_controller(name).await?;
        if !grants.is_empty() && !with_grants {
            let list =
                grants.iter().map(|g| format!("#{} ({}: {} {})", g.id, g.agent, g.group.as_str(), g.level.as_str()));
            return Err(GateError::Invalid(format!(
                "controller '{name}' was not removed: {} grant(s) name it: {}. They would apply to any later controller called '{name}'. Fix: remove them with `jgate ungrant ID`, or remove them together with the controller: `jgate controller remove {name} --with-grants`",
                grants.len(),
                list.collect::<Vec<_>>().join(", ")
            )));
        }
        let shown: Vec<Value> = grants
            .iter()
            .map(|g| json!({"id": g.id, "agent": g.agent, "group": g.group.as_str(), "level": g.level.as_str(), "jobs": g.jobs}))
            .collect();
        let entry = Self::admin_entry(
            admin,
            "admin.controller.remove",
            Some(name),
            Some(name),
            json!({"with_grants": with_grants, "grants": shown}),
        );
        self.admin_intent(&entry).await?;
        let result = match self.store.remove_controller(name, with_grants).await {
            Ok(RemoveOutcome::Removed { grants }) => Ok(ControllerRemoval::Removed { grants }),
            Ok(RemoveOutcome::Missing) => Ok(ControllerRemoval::Missing),
            // A grant was added between the check and the removal.
            Ok(RemoveOutcome::HasGrants(n)) => Err(GateError::Invalid(format!(
                "controller '{name}' was not removed: {n} grant(s) name it (one was just added). Fix: run the command again, or add --with-grants"
            ))),
            Err(e) => Err(e.into()),
        };
        if result.is_ok() {
            self.drop_connections().await;
        }
        let removed = match &result {
            Ok(ControllerRemoval::Removed { grants }) => json!({"grants_removed": grants}),
            _ => json!({}),
        };
        self.admin_outcome(entry, &result, removed).await;
        result
    }

    /// A stored controller's wire client and the secrets its answers must never echo, built
    /// once (one store read and one decryption) and cached.
    ///
    /// The cache is checked against the store's controller generation at most once a second: a
    /// controller updated or removed by any process (the CLI, another replica) is rebuilt or gone
    /// here within a second, without a restart.
    async fn connection(&self, name: &str) -> Result<Connection, GateError> {
        self.recheck_connections().await?;
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
        let client = Arc::new(Self::build_client(&ClientSpec::of(&row), token)?);
        let conn = Connection { client, known: Arc::new(known) };
        cache.insert(name.to_string(), conn.clone());
        Ok(conn)
    }

    /// Empties the connection cache if the store's controller generation moved on since it was
    /// filled; asks the store at most once per [`CONNECTIONS_RECHECK`].
    async fn recheck_connections(&self) -> Result<(), GateError> {
        let due = {
            let checked = self.connections_checked.lock().unwrap_or_else(PoisonError::into_inner);
            checked.at.is_none_or(|at| at.elapsed() >= CONNECTIONS_RECHECK)
        };
        if !due {
            return Ok(());
        }
        let generation = match self.store.controller_generation().await {
            Ok(g) => g,
            // On the call path: a store that cannot answer means the call cannot be audited either.
            Err(e @ StoreError::Unavailable { .. }) => return Err(GateError::AuditUnavailable(e.to_string())),
            Err(e) => return Err(e.into()),
        };
        let changed = {
            let mut checked = self.connections_checked.lock().unwrap_or_else(PoisonError::into_inner);
            checked.at = Some(std::time::Instant::now());
            let changed = checked.generation != Some(generation);
            checked.generation = Some(generation);
            changed
        };
        if changed {
            self.connections.lock().await.clear();
            self.controllers_cache.clear();
        }
        Ok(())
    }

    /// Forgets every cached connection now (this process made a change).
    async fn drop_connections(&self) {
        self.connections.lock().await.clear();
        let mut checked = self.connections_checked.lock().unwrap_or_else(PoisonError::into_inner);
        checked.at = None;
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
        let names = self.controller_names().await?;
        match names.len() {
            1 => Ok(names[0].clone()),
            0 => Err(GateError::Invalid(
                "jgate has no Jenkins controller configured; ask the administrator to add one".into(),
            )),
            _ => Err(GateError::Invalid(format!(
                "several controllers are configured: pass controller, one of {}",
                names.join(", ")
            ))),
        }
    }

    /// The stored controllers' names, for the call path: read at most once a second (and again
    /// at once after a controller change by any process, as the connection cache).
    pub(crate) async fn controller_names(&self) -> Result<Arc<Vec<String>>, GateError> {
        self.recheck_connections().await?;
        let store = &self.store;
        let load = || async { Ok(Some(Arc::new(store.controllers().await?.into_iter().map(|c| c.name).collect()))) };
        // On the call path: a store that cannot answer means the call cannot be audited either.
        match self.controllers_cache.get("", false, load).await {
            Ok(names) => Ok(names.unwrap_or_default()),
            Err(e @ StoreError::Unavailable { .. }) => Err(GateError::AuditUnavailable(e.to_string())),
            Err(e) => Err(e.into()),
        }
    }

    /// Runs the connection test again and records the version and plugins it found.
    pub async fn test_controller(&self, name: &str) -> Result<ConnectionReport, GateError> {
        self.test_controller_with(name, None).await
    }

    /// [`Gate::test_controller`] with this request timeout instead of the stored one (`--timeout`).
    /// Tests with a client of its own, built from the stored row (not the cached one).
    pub async fn test_controller_with(
        &self,
        name: &str,
        timeout_secs: Option<u64>,
    ) -> Result<ConnectionReport, GateError> {
        let row = self.store.controller(name).await?.ok_or_else(|| StoreError::Missing {
            what: "controller",
            name: name.to_string(),
            hint: "`jgate controller list` shows the controllers".into(),
        })?;
        let sealed: Sealed = serde_json::from_str(&row.sealed_token).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let token = secrets::open(&self.master, &sealed, &token_aad(name))?;
        let mut spec = ClientSpec::of(&row);
        if timeout_secs.is_some() {
            spec.timeout_secs = timeout_secs;
        }
        let client = Self::build_client(&spec, token)?;
        let report = client.test_connection().await?;
        self.store.update_controller_facts(name, report.version.as_deref(), &plugin_list(&report)).await?;
        Ok(report)
    }

    /// Changes a stored controller: URL, user, secret, TLS trust, allow-list, timeout. The new
    /// settings pass the connection test first; if it fails nothing is stored, unless `force`.
    /// Stored in one transaction with the controllers' generation, so every running jgate uses the
    /// new settings within a second. The token stays sealed to the controller's name.
    ///
    /// Audited as `admin.controller.update` (intent before storing, then the outcome) with what
    /// changed — never the token itself, only that it changed.
    pub async fn update_controller(
        &self,
        admin: &Admin,
        name: &str,
        change: ControllerUpdate,
        force: bool,
    ) -> Result<(ControllerRow, Option<ConnectionReport>), GateError> {
        let old = self.store.controller(name).await?.ok_or_else(|| StoreError::Missing {
            what: "controller",
            name: name.to_string(),
            hint: "`jgate controller list` shows the controllers".into(),
        })?;
        let token = match &change.token {
            Some(t) => t.clone(),
            None => {
                let sealed: Sealed =
                    serde_json::from_str(&old.sealed_token).map_err(|e| StoreError::Corrupt(e.to_string()))?;
                secrets::open(&self.master, &sealed, &token_aad(name))?
            }
        };
        let mut new = old.clone();
        if let Some(u) = &change.url {
            new.base_url = u.clone();
        }
        if let Some(u) = &change.username {
            new.username = u.clone();
        }
        if let Some(p) = change.password {
            new.secret_kind = if p { "password".into() } else { "token".into() };
        }
        if let Some(ca) = &change.ca_pem {
            new.tls_ca_pem = ca.clone();
        }
        if let Some(v) = change.system_ca {
            new.system_ca = v;
        }
        if let Some(v) = change.insecure {
            new.tls_insecure = v;
        }
        if let Some(a) = &change.allow_private {
            new.allow_private = a.clone();
        }
        if let Some(t) = change.timeout_secs {
            new.timeout_secs = t.map(|t| i64::try_from(t).unwrap_or(i64::MAX));
        }
        let client = Self::build_client_to_store(&ClientSpec::of(&new), token.clone())?;
        new.base_url = client.base_url().to_string();
        let report = Self::test_before_storing(name, &client, force).await?;
        if let Some(r) = &report {
            new.jenkins_version = r.version.clone();
            new.plugins = plugin_list(r);
        }
        let mut changed = serde_json::Map::new();
        if new.base_url != old.base_url {
            changed.insert("url".into(), json!(new.base_url));
        }
        if new.username != old.username {
            changed.insert("username".into(), json!(new.username));
        }
        if new.secret_kind != old.secret_kind {
            changed.insert("password".into(), json!(new.secret_kind == "password"));
        }
        if change.token.is_some() {
            changed.insert("token".into(), json!("replaced"));
        }
        if new.tls_ca_pem != old.tls_ca_pem {
            changed.insert("ca_file".into(), json!(new.tls_ca_pem.is_some()));
        }
        if new.system_ca != old.system_ca {
            changed.insert("system_ca".into(), json!(new.system_ca));
        }
        if new.tls_insecure != old.tls_insecure {
            changed.insert("tls_insecure".into(), json!(new.tls_insecure));
        }
        if new.allow_private != old.allow_private {
            changed.insert("allow_private".into(), json!(new.allow_private));
        }
        if new.timeout_secs != old.timeout_secs {
            changed.insert("timeout_secs".into(), json!(new.timeout_secs));
        }
        let entry = Self::admin_entry(
            admin,
            "admin.controller.update",
            Some(name),
            Some(name),
            json!({"changed": Value::Object(changed), "forced": report.is_none()}),
        );
        self.admin_intent(&entry).await?;
        let result = async {
            if change.token.is_some() {
                new.sealed_token = to_json(&secrets::seal(&self.master, &token, &token_aad(name))?)?;
            }
            if !self.store.update_controller(&new).await? {
                return Err(GateError::Store(StoreError::Missing {
                    what: "controller",
                    name: name.to_string(),
                    hint: "it was removed while being updated".into(),
                }));
            }
            Ok(new)
        }
        .await;
        self.drop_connections().await;
        self.admin_outcome(entry, &result, json!({})).await;
        Ok((result?, report))
    }

    /// The master-key rotation, in one transaction: re-wraps every controller token's data key
    /// and every audit key with `new`, starts a new audit key version for the records that follow,
    /// and replaces the check value. Returns how many controller tokens were re-wrapped.
    ///
    /// Audited as `admin.key.rotate`: the intent under the old audit key, the outcome under the new
    /// one. Afterwards this gate makes no further administrative changes (reopen with `new`).
    pub async fn rotate_master_key(&self, admin: &Admin, new: &MasterKey) -> Result<usize, GateError> {
        let entry = Self::admin_entry(
            admin,
            "admin.key.rotate",
            None,
            None,
            json!({"old_key_id": self.master.id(), "new_key_id": new.id()}),
        );
        self.admin_intent(&entry).await?;
        let result = self.rotate_in_store(new).await;
        let extra = match &result {
            Ok((n, version, keys)) => {
                *self.audit_keys.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(keys.clone());
                self.rotated.store(true, Ordering::SeqCst);
                json!({"audit_key_version": version, "rewrapped": n})
            }
            Err(_) => json!({}),
        };
        self.admin_outcome(entry, &result, extra).await;
        result.map(|(n, _, _)| n)
    }

    async fn rotate_in_store(&self, new: &MasterKey) -> Result<(usize, u32, AuditKeys), GateError> {
        let mut tx = self.store.locked().await?;
        // Another process may have rotated since this gate opened: then this key is stale.
        let check: Option<KeyCheck> = tx.meta(META_KEY_CHECK).await?.and_then(|t| serde_json::from_str(&t).ok());
        if check.as_ref().is_none_or(|c| c.check != self.master.check_value()) {
            return Err(SecretsError::MasterKeyMismatch {
                key_id: self.master.id(),
                expected: check.map_or_else(|| "unknown".into(), |c| c.key_id),
            }
            .into());
        }
        let mut n = 0;
        for row in tx.controllers().await? {
            let sealed: Sealed =
                serde_json::from_str(&row.sealed_token).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            let rewrapped = secrets::rewrap(&self.master, new, &sealed, &token_aad(&row.name))?;
            tx.update_controller_seal(&row.name, &to_json(&rewrapped)?).await?;
            n += 1;
        }
        let mut latest = 0;
        for (version, text) in tx.audit_keys().await? {
            let sealed: Sealed = serde_json::from_str(&text)
                .map_err(|e| StoreError::Corrupt(format!("audit key version {version}: {e}")))?;
            let rewrapped = secrets::rewrap(&self.master, new, &sealed, &audit_key_aad(version))?;
            tx.put_audit_key(version, &to_json(&rewrapped)?).await?;
            latest = latest.max(version);
        }
        let version = latest + 1;
        let key = secrets::random_key();
        tx.put_audit_key(version, &to_json(&secrets::seal_key(new, &key, &audit_key_aad(version))?)?).await?;
        tx.put_meta(META_KEY_CHECK, &to_json(&KeyCheck { key_id: new.id(), check: new.check_value() })?).await?;
        tx.commit().await?;
        Ok((n, version, self.keys().with_new_version(version, key)))
    }

    // -----------------------------------------------------------------------------------------
    // agents and grants

    /// Creates an agent and its first key. The key is returned once; only its hash is stored.
    /// Audited as `admin.agent.create`.
    pub async fn create_agent(
        &self,
        admin: &Admin,
        name: &str,
        description: &str,
        expires_ms: Option<i64>,
    ) -> Result<(AgentRow, keys::NewKey), GateError> {
        keys::check_agent_name(name).map_err(GateError::Invalid)?;
        if self.store.agent(name).await?.is_some() {
            return Err(StoreError::Duplicate { what: "agent", name: name.to_string() }.into());
        }
        let key = keys::generate();
        let entry = Self::admin_entry(
            admin,
            "admin.agent.create",
            Some(name),
            None,
            json!({"description": description, "key_id": key.key_id, "expires_ms": expires_ms}),
        );
        self.admin_intent(&entry).await?;
        let result = async {
            let id = self.store.insert_agent(name, description).await?;
            self.store.insert_key(id, &key.key_id, &key.hash, expires_ms).await?;
            Ok(self.store.agent(name).await?.ok_or_else(|| StoreError::Corrupt("agent vanished".into()))?)
        }
        .await;
        self.admin_outcome(entry, &result, json!({})).await;
        Ok((result?, key))
    }

    /// Adds a key to an existing agent. Audited as `admin.key.create`.
    pub async fn new_key(
        &self,
        admin: &Admin,
        agent: &str,
        expires_ms: Option<i64>,
    ) -> Result<keys::NewKey, GateError> {
        let row = self.agent_row(agent).await?;
        let key = keys::generate();
        let entry = Self::admin_entry(
            admin,
            "admin.key.create",
            Some(agent),
            None,
            json!({"key_id": key.key_id, "expires_ms": expires_ms}),
        );
        self.admin_intent(&entry).await?;
        let result = self.store.insert_key(row.id, &key.key_id, &key.hash, expires_ms).await.map_err(GateError::from);
        self.admin_outcome(entry, &result, json!({})).await;
        result.map(|_| key)
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

    /// Revokes all of an agent's keys, or one. Audited as `admin.key.revoke`.
    pub async fn revoke(&self, admin: &Admin, agent: &str, key_id: Option<&str>) -> Result<u64, GateError> {
        let row = self.agent_row(agent).await?;
        let entry = Self::admin_entry(admin, "admin.key.revoke", Some(agent), None, json!({"key_id": key_id}));
        self.admin_intent(&entry).await?;
        let result = self.store.revoke_keys(row.id, key_id).await.map_err(GateError::from);
        let extra = json!({"revoked": result.as_ref().ok()});
        self.admin_outcome(entry, &result, extra).await;
        result
    }

    /// Grants `agent` a level on a group, optionally limited to a controller, a job pattern and
    /// parameter constraints. Audited as `admin.grant`.
    #[allow(clippy::too_many_arguments)]
    pub async fn grant(
        &self,
        admin: &Admin,
        agent: &str,
        group: Group,
        level: Level,
        controller: Option<&str>,
        jobs: Option<&str>,
        params: Vec<ParamConstraint>,
    ) -> Result<Grant, GateError> {
        self.grant_with(admin, agent, group, level, controller, jobs, params, false).await
    }

    /// [`Gate::grant`], and with `approve` the changes the grant allows are each held until an
    /// administrator approves them (`jgate grant … full --approve`; see [`crate::approvals`]).
    #[allow(clippy::too_many_arguments)]
    pub async fn grant_with(
        &self,
        admin: &Admin,
        agent: &str,
        group: Group,
        level: Level,
        controller: Option<&str>,
        jobs: Option<&str>,
        params: Vec<ParamConstraint>,
        approve: bool,
    ) -> Result<Grant, GateError> {
        self.grant_limited(admin, agent, group, level, controller, jobs, params, approve, None).await
    }

    /// [`Gate::grant_with`], and with `max_per_hour` at most that many calls per hour may be
    /// decided by the grant, across every process on the store (`--max-per-hour`; see
    /// [`crate::limits`]).
    #[allow(clippy::too_many_arguments)]
    pub async fn grant_limited(
        &self,
        admin: &Admin,
        agent: &str,
        group: Group,
        level: Level,
        controller: Option<&str>,
        jobs: Option<&str>,
        params: Vec<ParamConstraint>,
        approve: bool,
        max_per_hour: Option<u32>,
    ) -> Result<Grant, GateError> {
        if let Some(n) = max_per_hour {
            check_limit(n, "--max-per-hour")?;
            if level == Level::Off {
                return Err(GateError::Invalid(
                    "--max-per-hour caps the calls a grant allows, and an off grant allows none: use it with read or full".into(),
                ));
            }
        }
        if approve && level != Level::Full {
            return Err(GateError::Invalid(format!(
                "--approve holds changes for an administrator, and a {level} grant allows none: use it with level full"
            )));
        }
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
            policy::check_job_pattern(j).map_err(|e| GateError::Invalid(format!("--jobs {j}: {e}")))?;
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
            approve,
            max_per_hour,
        };
        let entry = Self::admin_entry(
            admin,
            "admin.grant",
            Some(agent),
            controller,
            json!({"grant": g.describe(), "group": group.as_str(), "level": level.as_str(), "controller": controller,
                   "jobs": g.jobs, "params": g.params.iter().map(ToString::to_string).collect::<Vec<_>>(),
                   "approve": approve, "max_per_hour": max_per_hour}),
        );
        self.admin_intent(&entry).await?;
        let result = self.store.insert_grant(row.id, &g).await.map_err(GateError::from);
        let extra = json!({"id": result.as_ref().ok()});
        self.admin_outcome(entry, &result, extra).await;
        g.id = result?;
        Ok(g)
    }

    /// An agent's rate limits as stored (not cached).
    pub async fn agent_limits(&self, agent: &str) -> Result<AgentLimits, GateError> {
        match self.store.agent_with_limits(agent).await? {
            Some((_, l)) => Ok(l),
            None => Err(missing_agent(agent)),
        }
    }

    /// Every agent's limits, by name (agents without limits are left out).
    pub async fn all_agent_limits(&self) -> Result<HashMap<String, AgentLimits>, GateError> {
        Ok(self.store.all_agent_limits().await?.into_iter().collect())
    }

    /// Sets an agent's rate limits (`AgentLimits::default()`: none). `false` if they already were
    /// (nothing recorded). Every process applies them within a second. Audited as
    /// `admin.agent.limits` with the limits before and after.
    pub async fn set_agent_limits(&self, admin: &Admin, agent: &str, limits: AgentLimits) -> Result<bool, GateError> {
        if let Some(n) = limits.calls_per_minute {
            check_limit(n, "--calls-per-minute")?;
        }
        if let Some(n) = limits.triggers_per_hour {
            check_limit(n, "--triggers-per-hour")?;
        }
        let (row, before) = self.store.agent_with_limits(agent).await?.ok_or_else(|| missing_agent(agent))?;
        if before == limits {
            return Ok(false);
        }
        let entry = Self::admin_entry(
            admin,
            "admin.agent.limits",
            Some(agent),
            None,
            json!({"limits": limits.describe(), "calls_per_minute": limits.calls_per_minute,
                   "triggers_per_hour": limits.triggers_per_hour, "before": before.describe()}),
        );
        self.admin_intent(&entry).await?;
        let result = self.store.set_agent_limits(row.id, &limits).await.map_err(GateError::from);
        self.admin_outcome(entry, &result, json!({})).await;
        result.map(|()| true)
    }

    /// Removes a grant by id; `false` if there is none (nothing recorded). Audited as `admin.ungrant`.
    pub async fn remove_grant(&self, admin: &Admin, id: i64) -> Result<bool, GateError> {
        let Some(g) = self.store.grant(id).await? else {
            return Ok(false);
        };
        let entry = Self::admin_entry(
            admin,
            "admin.ungrant",
            Some(&g.agent),
            g.controller.as_deref(),
            json!({"id": id, "grant": g.describe()}),
        );
        self.admin_intent(&entry).await?;
        let result = self.store.delete_grant(id).await.map_err(GateError::from);
        self.admin_outcome(entry, &result, json!({})).await;
        result
    }

    /// An agent's grants (cached: at most a second old, see [`crate::auth_cache`]).
    pub async fn grants(&self, agent: &str) -> Result<Vec<Grant>, GateError> {
        let found = self.agent_grants(agent).await?;
        if !found.exists {
            return Err(StoreError::Missing {
                what: "agent",
                name: agent.to_string(),
                hint: "`jgate agent list` shows the agents".into(),
            }
            .into());
        }
        Ok(found.grants.to_vec())
    }

    /// The grants a call is decided on (none for an unknown agent). A store that cannot answer
    /// means the call cannot be audited either, and says so.
    ///
    /// A disabled agent's calls are refused like a revoked key's (an agent whose session began
    /// before it was disabled included: within a second, as for grants).
    pub(crate) async fn grants_for_call(&self, agent: &str) -> Result<Vec<Grant>, GateError> {
        Ok(self.grants_and_limits_for_call(agent).await?.0)
    }

    /// [`Gate::grants_for_call`] and the agent's rate limits, from one cache entry.
    pub(crate) async fn grants_and_limits_for_call(&self, agent: &str) -> Result<(Vec<Grant>, AgentLimits), GateError> {
        match self.agent_grants(agent).await {
            Ok(found) if found.disabled => Err(GateError::BadKey(disabled_message(agent))),
            Ok(found) => Ok((found.grants.to_vec(), found.limits)),
            Err(e @ StoreError::Unavailable { .. }) => Err(GateError::AuditUnavailable(e.to_string())),
            Err(e) => Err(e.into()),
        }
    }

    async fn agent_grants(&self, agent: &str) -> Result<AgentGrants, StoreError> {
        let store = &self.store;
        let load = || async {
            let row = store.agent_with_limits(agent).await?;
            let grants = if row.is_some() { store.grants_of(agent).await? } else { Vec::new() };
            Ok(Some(AgentGrants {
                exists: row.is_some(),
                disabled: row.as_ref().is_some_and(|(r, _)| r.disabled_ms.is_some()),
                grants: Arc::new(grants),
                limits: row.map(|(_, l)| l).unwrap_or_default(),
            }))
        };
        let found = self.grants_cache.get(agent, false, load).await?;
        Ok(found.unwrap_or(AgentGrants {
            exists: false,
            disabled: false,
            grants: Arc::new(Vec::new()),
            limits: AgentLimits::default(),
        }))
    }

    // -----------------------------------------------------------------------------------------
    // the agent path

    /// Checks a presented agent key: format, existence, revocation, expiry, and that its agent is
    /// not disabled.
    ///
    /// Writes nothing and, for a key checked in the last second, reads nothing: verifications are
    /// cached for at most a second (so a revocation anywhere takes effect within one), and the
    /// key's last-use time is written in the background (see [`crate::auth_cache`]).
    pub async fn authenticate(&self, presented: &str) -> Result<(String, String), GateError> {
        let (agent, key_id, proxy_only) = self.authenticate_any(presented).await?;
        if proxy_only {
            return Err(GateError::BadKey(format!(
                "key {key_id} of agent {agent} is a `jgate exec` token, valid only through the Jenkins proxy (/jenkins/<controller>/)"
            )));
        }
        Ok((agent, key_id))
    }

    /// Authentication for the Jenkins proxy: agent keys and the agent's `jgate exec` tokens.
    pub async fn authenticate_proxy(&self, presented: &str) -> Result<(String, String), GateError> {
        let (agent, key_id, _) = self.authenticate_any(presented).await?;
        Ok((agent, key_id))
    }

    async fn authenticate_any(&self, presented: &str) -> Result<(String, String, bool), GateError> {
        keys::check_format(presented).map_err(|e| GateError::BadKey(e.to_string()))?;
        let hash = keys::hash(presented);
        let store = &self.store;
        let load = || async {
            Ok(store.find_key(&hash).await?.map(|(agent, key, stored_hash)| KeyEntry {
                key_row: key.id,
                key_id: key.key_id,
                agent: agent.name,
                stored_hash,
                expires_ms: key.expires_ms,
                revoked_ms: key.revoked_ms,
                agent_disabled: agent.disabled_ms.is_some(),
                proxy_only: key.proxy_only,
            }))
        };
        let Some(key) = self.keys_cache.get(&hash, true, load).await? else {
            return Err(GateError::BadKey(
                "no agent has this key (it may have been deleted); ask the administrator for a key".into(),
            ));
        };
        if !keys::verify(presented, &key.stored_hash) {
            return Err(GateError::BadKey("no agent has this key".into()));
        }
        let now = now_ms();
        // A revocation in the future is a rotation's overlap: the key is valid until then.
        if key.revoked_ms.is_some_and(|r| r <= now) {
            return Err(GateError::BadKey(format!(
                "key {} of agent {} was revoked; ask the administrator for a new key",
                key.key_id, key.agent
            )));
        }
        if let Some(e) = key.expires_ms.filter(|e| *e <= now) {
            return Err(GateError::BadKey(format!(
                "key {} of agent {} expired at {}; ask the administrator for a new key (`jgate agent key rotate {}`)",
                key.key_id,
                key.agent,
                utc_time(e),
                key.agent
            )));
        }
        if key.agent_disabled {
            return Err(GateError::BadKey(disabled_message(&key.agent)));
        }
        self.key_use.note(key.key_row);
        Ok((key.agent, key.key_id, key.proxy_only))
    }

    /// Writes the pending last-use times of keys now (the background task does every few seconds).
    #[doc(hidden)]
    pub async fn flush_key_use(&self) -> Result<usize, GateError> {
        Ok(self.key_use.flush(&self.store, crate::store::CALL_TIMEOUT).await?)
    }

    /// How many audit transactions (group commits) this gate has run: for tests.
    #[doc(hidden)]
    pub fn audit_batches(&self) -> u64 {
        self.writer.batches()
    }

    // -----------------------------------------------------------------------------------------
    // audit

    /// Appends one record to the audit chain: the one seam every audited path writes through.
    ///
    /// The record goes to the database (sealed with the current audit key version) and then, if
    /// configured, to the audit device; it counts as written only when both hold it
    /// ([`StoreError::AuditDevice`] otherwise). Concurrent records are committed together by one
    /// writer (group commit, see [`crate::audit_writer`]), each caller answered with its own
    /// record once its batch is durable. Dropping this future never leaves a transaction open: a
    /// record whose batch has not begun is not written; once begun, it is written in full.
    /// Bounded by [`crate::audit_writer::RECORD_TIMEOUT`].
    pub async fn record(&self, entry: Entry) -> Result<Record, StoreError> {
        self.writer.append(self.keys(), entry).await
    }

    pub async fn audit(&self, filter: &AuditFilter) -> Result<Vec<Record>, GateError> {
        Ok(self.store.audit(filter).await?)
    }

    /// The newest audit records matching `filter` (at most its limit, default 100), before
    /// sequence number `before` if given; newest first (see [`Store::audit_newest`]).
    pub async fn audit_newest(&self, filter: &AuditFilter, before: Option<i64>) -> Result<Vec<Record>, GateError> {
        Ok(self.store.audit_newest(filter, before).await?)
    }

    /// Verifies the whole log and returns how many records were checked, or the first problem:
    /// every record's hash under the key version it names, the chain's links and numbering,
    /// every plain column against its sealed record, the checkpoints the store sealed by itself
    /// and the `checkpoints` exported by hand, and the sealed head (records removed from the end,
    /// or all of them).
    ///
    /// The log is read in pages, twice (every row's columns first, then the chain), so memory
    /// follows a page, not the log; the first problem found is the one [`Gate::verify_audit_file`]
    /// reports too.
    pub async fn verify_audit(&self, checkpoints: &[Checkpoint]) -> Result<Result<u64, VerifyError>, GateError> {
        // Every column against its sealed record, before any link is checked.
        let mut cursor = None;
        loop {
            let rows = self.store.audit_rows_page(cursor).await?;
            let Some(last) = rows.last().and_then(|r| r.seq) else { break };
            if let Some(e) = rows.iter().find_map(row_problem) {
                return Ok(Err(e));
            }
            cursor = Some(last);
        }
        let keys = self.keys();
        let checkpoints = match self.trusted_checkpoints(checkpoints).await? {
            Ok(cps) => cps,
            Err(e) => return Ok(Err(e)),
        };
        let mut verifier = audit::Verifier::new(&*keys, None, &checkpoints);
        let mut last_record = None;
        let mut cursor = None;
        loop {
            let rows = self.store.audit_rows_page(cursor).await?;
            let Some(last) = rows.last().and_then(|r| r.seq) else { break };
            for row in rows {
                if let Some(r) = row.record {
                    if let Err(e) = verifier.push(&r) {
                        return Ok(Err(e));
                    }
                    last_record = Some(r);
                }
            }
            cursor = Some(last);
        }
        let n = match verifier.finish() {
            Ok(n) => n,
            Err(e) => return Ok(Err(e)),
        };
        let head = match self.store.meta(META_AUDIT_HEAD).await? {
            None => None,
            Some(text) => match serde_json::from_str::<Head>(&text) {
                Ok(h) => Some(h),
                Err(_) => return Ok(Err(VerifyError::HeadForged)),
            },
        };
        Ok(audit::verify_head(&*keys, head.as_ref(), last_record.as_ref()).map(|()| n))
    }

    /// The checkpoints a verification checks against: the exported ones and those the store
    /// sealed (each seal checked).
    async fn trusted_checkpoints(
        &self,
        exported: &[Checkpoint],
    ) -> Result<Result<Vec<Checkpoint>, VerifyError>, GateError> {
        let keys = self.keys();
        let mut checkpoints = exported.to_vec();
        for cp in self.store.audit_checkpoints().await? {
            match cp.check(&*keys) {
                SealCheck::Valid => checkpoints.push(Checkpoint { seq: cp.seq, hash: cp.hash }),
                SealCheck::Forged => return Ok(Err(VerifyError::CheckpointForged { seq: cp.seq })),
                SealCheck::UnknownKey => {
                    return Ok(Err(VerifyError::UnknownKey { seq: cp.seq, version: cp.key_version }));
                }
            }
        }
        Ok(Ok(checkpoints))
    }

    /// [`Gate::verify_audit`], then the records of an audit file (the second device): each must
    /// verify on its own and be in the database with the same hash. Records the database holds
    /// and the file lacks are counted, not errors (the device may have been off).
    pub async fn verify_audit_file(
        &self,
        checkpoints: &[Checkpoint],
        file: &Path,
    ) -> Result<Result<(u64, FileReport), VerifyError>, GateError> {
        let path = file.to_path_buf();
        let in_file = tokio::task::spawn_blocking(move || audit_device::read_file(&path))
            .await
            .map_err(|e| GateError::Invalid(e.to_string()))?
            .map_err(GateError::Invalid)?;
        let (db_result, records) = self.verify_store(checkpoints).await?;
        let keys = self.keys();
        let by_seq: BTreeMap<i64, &Record> = records.iter().map(|r| (r.seq, r)).collect();
        let mut seen = std::collections::BTreeSet::new();
        let mut sorted: Vec<&Record> = in_file.iter().collect();
        sorted.sort_by_key(|r| r.seq);
        for r in sorted {
            let in_db = by_seq.get(&r.seq);
            match audit::seal_ok(&*keys, r) {
                Some(false) => return Ok(Err(VerifyError::FileRecordForged { seq: r.seq })),
                None if in_db.is_some() => {
                    return Ok(Err(VerifyError::UnknownKey { seq: r.seq, version: r.key_version }));
                }
                _ => {}
            }
            match in_db {
                None => return Ok(Err(VerifyError::FileRecordMissing { seq: r.seq })),
                Some(d) if d.hash != r.hash => return Ok(Err(VerifyError::FileRecordDiffers { seq: r.seq })),
                Some(_) => {
                    seen.insert(r.seq);
                }
            }
        }
        let report = FileReport {
            file_records: seen.len() as u64,
            missing_from_file: records.iter().filter(|r| !seen.contains(&r.seq)).count() as u64,
        };
        Ok(db_result.map(|n| (n, report)))
    }

    /// Verifies the database; returns the result and the records read.
    async fn verify_store(
        &self,
        exported: &[Checkpoint],
    ) -> Result<(Result<u64, VerifyError>, Vec<Record>), GateError> {
        let keys = self.keys();
        let rows = self.store.audit_rows().await?;
        let first_error = rows.iter().find_map(row_problem);
        let records: Vec<Record> = rows.into_iter().filter_map(|row| row.record).collect();
        if let Some(e) = first_error {
            return Ok((Err(e), records));
        }
        let checkpoints = match self.trusted_checkpoints(exported).await? {
            Ok(cps) => cps,
            Err(e) => return Ok((Err(e), records)),
        };
        let result = match audit::verify(&*keys, records.iter(), None, &checkpoints) {
            Ok(n) => {
                let head = match self.store.meta(META_AUDIT_HEAD).await? {
                    None => None,
                    Some(text) => match serde_json::from_str::<Head>(&text) {
                        Ok(h) => Some(h),
                        Err(_) => return Ok((Err(VerifyError::HeadForged), records)),
                    },
                };
                audit::verify_head(&*keys, head.as_ref(), records.last()).map(|()| n)
            }
            Err(e) => Err(e),
        };
        Ok((result, records))
    }

    /// The current head of the chain, to export and keep elsewhere (detects truncation later).
    pub async fn checkpoint(&self) -> Result<Option<Checkpoint>, GateError> {
        let last = self.store.audit_newest(&AuditFilter { limit: Some(1), ..AuditFilter::default() }, None).await?;
        Ok(last.first().map(|r| Checkpoint { seq: r.seq, hash: r.hash.clone() }))
    }

    /// Accepts the log as it now stands after `verify` reported a problem with the sealed head
    /// (appends stop until then): seals a new head on the last record and records that `admin`
    /// did so, naming the head it replaced. Returns the new head.
    pub async fn reseal_audit_head(&self, admin: &Admin) -> Result<Checkpoint, GateError> {
        let keys = self.keys();
        let mut tx = self.store.locked().await?;
        let previous = tx.meta(META_AUDIT_HEAD).await?;
        let (seq, hash) = tx.last_audit().await?.map_or((0, audit::GENESIS.to_string()), |(s, h, _)| (s, h));
        tx.put_head(&Head::seal(&keys, seq, &hash)).await?;
        tx.commit().await?;
        let previous: Value = previous.and_then(|t| serde_json::from_str(&t).ok()).unwrap_or(Value::Null);
        let mut entry = Self::admin_entry(
            admin,
            "admin.audit.reseal",
            None,
            None,
            json!({"seq": seq, "hash": hash, "previous_head": previous}),
        );
        entry.phase = Phase::Outcome;
        entry.outcome = Some("ok".into());
        self.record(entry).await.map_err(|e| GateError::AuditUnavailable(e.to_string()))?;
        Ok(Checkpoint { seq, hash })
    }
}

/// What is wrong with an audit row's columns: a record that is not readable, or a plain column
/// that differs from its sealed record.
fn row_problem(row: &crate::store::AuditRow) -> Option<VerifyError> {
    match (&row.record, row.mismatched_column()) {
        (None, _) => Some(VerifyError::Edited { seq: row.seq.unwrap_or_default() }),
        (Some(r), Some(column)) => Some(VerifyError::ColumnEdited { seq: r.seq, column }),
        (Some(_), None) => None,
    }
}

/// For tests: a secret as a string.
#[doc(hidden)]
pub fn expose(s: &SecretString) -> &str {
    s.expose_secret()
}

/// What a disabled agent is told (on every surface, like a revoked key).
fn disabled_message(agent: &str) -> String {
    format!("agent {agent} is disabled; ask the administrator to enable it (`jgate agent enable {agent}`)")
}

/// `2026-12-01 10:52:00Z`: a time (ms since the epoch) for messages.
pub fn utc_time(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}Z", rem / 3600, (rem / 60) % 60, rem % 60)
}

/// The longest overlap a key rotation may give the old key.
pub const MAX_ROTATION_OVERLAP_MS: i64 = 30 * 86_400_000;

/// What [`Gate::rotate_agent_key`] did.
#[derive(Debug)]
pub struct Rotation {
    /// The new key (shown once).
    pub key: keys::NewKey,
    /// The keys it retires.
    pub retired: Vec<String>,
    /// When the retired keys stop working (now, without an overlap).
    pub revoke_at_ms: i64,
}

// Agent lifecycle: disable, enable, delete, key rotation. Each an audited administrative change
// (intent, then outcome); every process sees it within a second (see `crate::auth_cache`).
impl Gate {
    /// Disables an agent: its keys are refused at authentication and its calls by the call path
    /// (sessions already open included), its grants are kept. `false` if it already was (nothing
    /// recorded). Audited as `admin.agent.disable`.
    pub async fn disable_agent(&self, admin: &Admin, agent: &str) -> Result<bool, GateError> {
        self.set_disabled(admin, agent, true).await
    }

    /// Enables a disabled agent again. `false` if it was not disabled (nothing recorded). Audited
    /// as `admin.agent.enable`.
    pub async fn enable_agent(&self, admin: &Admin, agent: &str) -> Result<bool, GateError> {
        self.set_disabled(admin, agent, false).await
    }

    async fn set_disabled(&self, admin: &Admin, agent: &str, disable: bool) -> Result<bool, GateError> {
        let row = self.agent_row(agent).await?;
        if row.disabled_ms.is_some() == disable {
            return Ok(false);
        }
        let op = if disable { "admin.agent.disable" } else { "admin.agent.enable" };
        let entry = Self::admin_entry(admin, op, Some(agent), None, json!({}));
        self.admin_intent(&entry).await?;
        let result = self
            .store
            .set_agent_disabled(row.id, disable.then(now_ms))
            .await
            .map_err(GateError::from)
            .and_then(|found| if found { Ok(true) } else { Err(missing_agent(agent)) });
        self.admin_outcome(entry, &result, json!({})).await;
        result
    }

    /// Deletes an agent and its keys (they authenticate no more, in every process within a
    /// second). An agent with grants is refused unless `with_grants`, which removes them in the
    /// same transaction; the record lists them and the keys. Audited as `admin.agent.delete`.
    pub async fn delete_agent(
        &self,
        admin: &Admin,
        agent: &str,
        with_grants: bool,
    ) -> Result<crate::store::AgentDeletion, GateError> {
        use crate::store::AgentDeletion;
        let row = self.agent_row(agent).await?;
        let grants = self.store.grants_of(agent).await?;
        if !grants.is_empty() && !with_grants {
            return Err(has_grants(agent, &grants));
        }
        let live: Vec<String> =
            self.store.keys_of(row.id).await?.into_iter().filter(|k| k.active_at(now_ms())).map(|k| k.key_id).collect();
        let entry = Self::admin_entry(
            admin,
            "admin.agent.delete",
            Some(agent),
            None,
            json!({"with_grants": with_grants, "keys": live,
                   "grants": grants.iter().map(|g| json!({"id": g.id, "grant": g.describe()})).collect::<Vec<_>>()}),
        );
        self.admin_intent(&entry).await?;
        let result = match self.store.delete_agent(row.id, with_grants).await {
            Ok(AgentDeletion::HasGrants(g)) => Err(has_grants(agent, &g)),
            Ok(AgentDeletion::Missing) => Err(missing_agent(agent)),
            Ok(done) => Ok(done),
            Err(e) => Err(e.into()),
        };
        let extra = match &result {
            Ok(AgentDeletion::Deleted { keys_revoked, grants_removed }) => json!({
                "keys_revoked": keys_revoked,
                "grants_removed": grants_removed.iter().map(|g| g.id).collect::<Vec<_>>(),
            }),
            _ => json!({}),
        };
        self.admin_outcome(entry, &result, extra).await;
        result
    }

    /// Issues a new key to `agent` and retires its valid keys (or only `old_key_id`): they stop
    /// working after `overlap_ms` (0: at once), so a client can switch without a gap. The new key
    /// may expire. In one transaction. Audited as `admin.agent.key.rotate`.
    pub async fn rotate_agent_key(
        &self,
        admin: &Admin,
        agent: &str,
        old_key_id: Option<&str>,
        overlap_ms: i64,
        expires_ms: Option<i64>,
    ) -> Result<Rotation, GateError> {
        if !(0..=MAX_ROTATION_OVERLAP_MS).contains(&overlap_ms) {
            return Err(GateError::Invalid(format!(
                "the overlap must be between 0 and {} days",
                MAX_ROTATION_OVERLAP_MS / 86_400_000
            )));
        }
        let now = now_ms();
        if expires_ms.is_some_and(|e| e <= now) {
            return Err(GateError::Invalid("the new key's expiry must be in the future".into()));
        }
        let row = self.agent_row(agent).await?;
        if let Some(old) = old_key_id
            && !self.store.keys_of(row.id).await?.iter().any(|k| k.key_id == old && k.active_at(now))
        {
            return Err(no_such_key(agent, old));
        }
        let key = keys::generate();
        let revoke_at_ms = now + overlap_ms;
        let entry = Self::admin_entry(
            admin,
            "admin.agent.key.rotate",
            Some(agent),
            None,
            json!({"key_id": key.key_id, "expires_ms": expires_ms, "old_key_id": old_key_id,
                   "overlap_ms": overlap_ms, "revoke_at_ms": revoke_at_ms}),
        );
        self.admin_intent(&entry).await?;
        let result = self
            .store
            .rotate_agent_key(row.id, &key.key_id, &key.hash, expires_ms, old_key_id, revoke_at_ms)
            .await
            .map_err(GateError::from)
            .and_then(|r| r.ok_or_else(|| no_such_key(agent, old_key_id.unwrap_or_default())));
        let extra = json!({"retired": result.as_ref().ok()});
        self.admin_outcome(entry, &result, extra).await;
        Ok(Rotation { key, retired: result?, revoke_at_ms })
    }
}

fn no_such_key(agent: &str, key_id: &str) -> GateError {
    GateError::Invalid(format!("agent {agent} has no valid key with id {key_id} (`jgate agent list` shows its keys)"))
}

/// A limit an administrator may set: at least 1 (to stop an agent, disable it), at most
/// [`crate::limits::MAX_LIMIT`].
fn check_limit(n: u32, flag: &str) -> Result<(), GateError> {
    if n == 0 {
        return Err(GateError::Invalid(format!(
            "{flag} 0 would refuse every call: to stop an agent, disable it (`jgate agent disable NAME`); to remove a limit, use --clear"
        )));
    }
    if n > crate::limits::MAX_LIMIT {
        return Err(GateError::Invalid(format!("{flag} {n} is over jgate's maximum of {}", crate::limits::MAX_LIMIT)));
    }
    Ok(())
}

fn missing_agent(agent: &str) -> GateError {
    StoreError::Missing { what: "agent", name: agent.to_string(), hint: "`jgate agent list` shows the agents".into() }
        .into()
}

fn has_grants(agent: &str, grants: &[Grant]) -> GateError {
    let ids: Vec<String> = grants.iter().map(|g| g.id.to_string()).collect();
    GateError::Invalid(format!(
        "agent {agent} still has {} grant(s) (ids {}): remove them with `jgate ungrant ID`, or delete the agent with \
         --with-grants, which removes them too (recorded in the audit log)",
        grants.len(),
        ids.join(", ")
    ))
}

/// The egress guard's refusal of a controller about to be stored, said once. An address it
/// refuses is `denied` (docs/cli.md), with the allow-list entry as the fix only where an entry can
/// open it; a URL no connection could use (a scheme, credentials in it) is `invalid`.
fn refused_controller(name: &str, r: &jenkins::ssrf::Refusal) -> GateError {
    use jenkins::ssrf::{RefusalReason, ReservedName};
    let not_stored = format!("controller '{name}' was not stored");
    let reason = match &r.reason {
        RefusalReason::NotAllowListed { address, port, allowed_ports } => {
            let entry =
                port.map_or_else(|| address.ip.to_string(), |p| std::net::SocketAddr::new(address.ip, p).to_string());
            let ports = if allowed_ports.is_empty() {
                String::new()
            } else {
                let list: Vec<String> = allowed_ports.iter().map(u16::to_string).collect();
                format!(" (the allow-list opens it only on port(s) {})", list.join(", "))
            };
            format!(
                "{not_stored}: refused {}: {address}; it is not on the private-access allow-list{ports}. Fix: if \
                 this Jenkins is on a private network, allow it with --allow-private {entry}",
                r.target
            )
        }
        RefusalReason::ReservedName { name: host, kind: ReservedName::Localhost } => format!(
            "{not_stored}: refused {}: the host name `{host}` always means this machine and is refused by name. \
             Fix: use the address instead (e.g. --url http://127.0.0.1:8080/) and allow it with --allow-private \
             127.0.0.1:8080",
            r.target
        ),
        // Metadata names and always-refused classes: the refusal says that nothing can open them.
        RefusalReason::ReservedName { .. } | RefusalReason::AlwaysDenied(_) => format!("{not_stored}: {r}"),
        _ => return GateError::Invalid(format!("{not_stored}: {r}")),
    };
    GateError::Denied { reason }
}

/// `short-name@version` of each plugin a connection test found.
fn plugin_list(r: &ConnectionReport) -> Vec<String> {
    r.capabilities.plugins.iter().map(|p| format!("{}@{}", p.short_name, p.version)).collect()
}

// Connection tests of settings not stored yet (the console's Test button, before Save).
impl Gate {
    /// Runs the connection test on a controller's settings without storing anything (and without
    /// an audit record: nothing changes). The same client and test as
    /// [`Gate::add_controller_with`], so a Test that passes is a Save that passes.
    pub async fn test_new_controller(
        &self,
        c: &NewController,
        settings: &ControllerSettings,
    ) -> Result<ConnectionReport, GateError> {
        let spec = ClientSpec {
            name: &c.name,
            url: &c.url,
            username: &c.username,
            password: c.password,
            allow: &c.allow_private,
            ca_pem: c.ca_pem.as_deref(),
            insecure: c.insecure,
            system_ca: settings.system_ca,
            timeout_secs: settings.timeout_secs,
        };
        let client = Self::build_client_to_store(&spec, c.token.clone())?;
        Ok(client.test_connection().await?)
    }
}
