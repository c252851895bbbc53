//! The store: controllers, agents and keys, grants, and the audit chain, in SQLite (the embedded
//! default: one file, WAL) or PostgreSQL (several jgate replicas sharing state), behind one API.
//!
//! One code path serves both through sqlx's `Any` driver; SQL is written once with `$N`
//! placeholders and rewritten to SQLite's `?N`. Migrations are embedded SQL files per dialect,
//! applied under the same lock that serialises audit appends, so two processes starting at once
//! cannot run them twice. Audit appends are serialised (`BEGIN IMMEDIATE` on SQLite, a
//! transaction-scoped advisory lock on PostgreSQL), so concurrent writers never fork the chain.

use std::time::{SystemTime, UNIX_EPOCH};

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Row};

use crate::audit::{self, Entry, Record};
use crate::policy::{Grant, Level, ParamConstraint};

/// Errors of the store. Messages say what to do.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the database {url}: {detail}. Fix: {fix}")]
    Connect { url: String, detail: String, fix: String },
    #[error("database error while {doing}: {detail}")]
    Db { doing: String, detail: String },
    #[error("{what} '{name}' already exists. Fix: choose another name, or remove the existing one first")]
    Duplicate { what: &'static str, name: String },
    #[error("{what} '{name}' does not exist. Fix: check the name ({hint})")]
    Missing { what: &'static str, name: String, hint: String },
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

fn db(doing: &str) -> impl Fn(sqlx::Error) -> StoreError + '_ {
    move |e| StoreError::Db { doing: doing.to_string(), detail: e.to_string() }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

// PostgreSQL advisory lock id (7632345547474177 = 0x1b1d_9d85_9501) for audit appends and migrations.

const SQLITE_MIGRATIONS: &[(i64, &str)] = &[(1, include_str!("../migrations/sqlite/0001_init.sql"))];
const PG_MIGRATIONS: &[(i64, &str)] = &[(1, include_str!("../migrations/postgres/0001_init.sql"))];

pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// A stored controller (the token stays sealed here; `secrets::open` reveals it).
#[derive(Debug, Clone, PartialEq)]
pub struct ControllerRow {
    pub id: i64,
    pub name: String,
    pub base_url: String,
    pub username: String,
    /// "token" or "password".
    pub secret_kind: String,
    /// JSON of `secrets::Sealed`.
    pub sealed_token: String,
    pub tls_ca_pem: Option<String>,
    pub tls_insecure: bool,
    /// Allow-list entries (`AllowEntry` strings).
    pub allow_private: Vec<String>,
    pub jenkins_version: Option<String>,
    pub plugins: Vec<String>,
    pub created_ms: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AgentRow {
    pub id: i64,
    pub name: String,
    pub description: String,
    pub created_ms: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct KeyRow {
    pub id: i64,
    pub agent_id: i64,
    pub key_id: String,
    pub created_ms: i64,
    pub expires_ms: Option<i64>,
    pub revoked_ms: Option<i64>,
    pub last_used_ms: Option<i64>,
}

/// Which audit records to read.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub agent: Option<String>,
    pub controller: Option<String>,
    pub operation: Option<String>,
    /// Some(true) = allowed only, Some(false) = denied only.
    pub allowed: Option<bool>,
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
    pub after_seq: Option<i64>,
    pub limit: Option<i64>,
}

/// The store.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    dialect: Dialect,
}

impl Store {
    /// Opens (creating if needed) the database at `url`: `sqlite:///path/to/file.db`, a plain
    /// file path, or `postgres://user@host:port/db`. Runs the migrations.
    pub async fn open(url: &str) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let (url, dialect) = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            (url.to_string(), Dialect::Postgres)
        } else {
            let path = url.strip_prefix("sqlite://").unwrap_or(url);
            let path = path.split('?').next().unwrap_or(path);
            if let Some(dir) = std::path::Path::new(path).parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|e| StoreError::Connect {
                    url: path.to_string(),
                    detail: e.to_string(),
                    fix: format!("create the directory {} or choose another --db path", dir.display()),
                })?;
            }
            (format!("sqlite://{path}?mode=rwc"), Dialect::Sqlite)
        };
        let shown = redact_url(&url);
        let opts: AnyConnectOptions = url.parse().map_err(|e: sqlx::Error| StoreError::Connect {
            url: shown.clone(),
            detail: e.to_string(),
            fix: "use sqlite:///path/file.db or postgres://user@host:5432/db".into(),
        })?;
        let max = if dialect == Dialect::Sqlite { 4 } else { 8 };
        let pool = AnyPoolOptions::new()
            .max_connections(max)
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if dialect == Dialect::Sqlite {
                        // WAL lets readers run during an append; busy_timeout makes a second
                        // process wait for the write lock instead of failing.
                        sqlx::query("PRAGMA journal_mode=WAL").execute(&mut *conn).await?;
                        sqlx::query("PRAGMA busy_timeout=10000").execute(&mut *conn).await?;
                        sqlx::query("PRAGMA foreign_keys=ON").execute(&mut *conn).await?;
                    }
                    Ok(())
                })
            })
            .connect_with(opts)
            .await
            .map_err(|e| StoreError::Connect {
                url: shown.clone(),
                detail: e.to_string(),
                fix: match dialect {
                    Dialect::Postgres => "check that PostgreSQL runs and accepts this user and database".into(),
                    Dialect::Sqlite => "check that the file's directory is writable".into(),
                },
            })?;
        let store = Store { pool, dialect };
        store.migrate().await?;
        Ok(store)
    }

    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// Rewrites `$N` placeholders for SQLite (`?N`). Only placeholders change: every value is
    /// bound, never spliced, so the text stays as safe as the literal it came from.
    fn sql(&self, q: &str) -> sqlx::AssertSqlSafe<String> {
        sqlx::AssertSqlSafe(match self.dialect {
            Dialect::Postgres => q.to_string(),
            Dialect::Sqlite => q.replace('$', "?"),
        })
    }

    /// Begins a transaction that holds the store's write lock.
    async fn lock(&self, conn: &mut sqlx::pool::PoolConnection<sqlx::Any>) -> Result<(), StoreError> {
        match self.dialect {
            Dialect::Sqlite => {
                sqlx::query("BEGIN IMMEDIATE").execute(&mut **conn).await.map_err(db("locking the database"))?;
            }
            Dialect::Postgres => {
                sqlx::query("BEGIN").execute(&mut **conn).await.map_err(db("beginning a transaction"))?;
                sqlx::query("SELECT pg_advisory_xact_lock(7632345547474177)")
                    .execute(&mut **conn)
                    .await
                    .map_err(db("taking the advisory lock"))?;
            }
        }
        Ok(())
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let mut conn = self.pool.acquire().await.map_err(db("connecting"))?;
        self.lock(&mut conn).await?;
        let result = async {
            sqlx::query(
                "CREATE TABLE IF NOT EXISTS jgate_schema (version BIGINT PRIMARY KEY, applied_ms BIGINT NOT NULL)",
            )
            .execute(&mut *conn)
            .await
            .map_err(db("creating the schema table"))?;
            let current: i64 = sqlx::query("SELECT COALESCE(MAX(version), 0) AS v FROM jgate_schema")
                .fetch_one(&mut *conn)
                .await
                .map_err(db("reading the schema version"))?
                .try_get("v")
                .map_err(db("reading the schema version"))?;
            let migrations = match self.dialect {
                Dialect::Sqlite => SQLITE_MIGRATIONS,
                Dialect::Postgres => PG_MIGRATIONS,
            };
            for (version, sql) in migrations.iter().filter(|(v, _)| *v > current) {
                for stmt in sql.split(';').map(str::trim).filter(|s| !s.is_empty()) {
                    sqlx::query(stmt).execute(&mut *conn).await.map_err(db("migrating the schema"))?;
                }
                sqlx::query(self.sql("INSERT INTO jgate_schema (version, applied_ms) VALUES ($1, $2)"))
                    .bind(*version)
                    .bind(now_ms())
                    .execute(&mut *conn)
                    .await
                    .map_err(db("recording the schema version"))?;
            }
            Ok::<(), StoreError>(())
        }
        .await;
        finish(&mut conn, result).await
    }

    // -----------------------------------------------------------------------------------------
    // controllers

    pub async fn insert_controller(&self, c: &ControllerRow) -> Result<i64, StoreError> {
        if self.controller(&c.name).await?.is_some() {
            return Err(StoreError::Duplicate { what: "controller", name: c.name.clone() });
        }
        let row = sqlx::query(self.sql(
            "INSERT INTO controllers (name, base_url, username, secret_kind, sealed_token, tls_ca_pem, tls_insecure, allow_private, jenkins_version, plugins, created_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id",
        ))
        .bind(&c.name)
        .bind(&c.base_url)
        .bind(&c.username)
        .bind(&c.secret_kind)
        .bind(&c.sealed_token)
        .bind(c.tls_ca_pem.clone())
        .bind(i64::from(c.tls_insecure))
        .bind(json_list(&c.allow_private))
        .bind(c.jenkins_version.clone())
        .bind(json_list(&c.plugins))
        .bind(c.created_ms)
        .fetch_one(&self.pool)
        .await
        .map_err(db("adding the controller"))?;
        row.try_get("id").map_err(db("adding the controller"))
    }

    pub async fn controllers(&self) -> Result<Vec<ControllerRow>, StoreError> {
        let rows = sqlx::query("SELECT * FROM controllers ORDER BY name")
            .fetch_all(&self.pool)
            .await
            .map_err(db("listing controllers"))?;
        rows.iter().map(controller_row).collect()
    }

    pub async fn controller(&self, name: &str) -> Result<Option<ControllerRow>, StoreError> {
        let row = sqlx::query(self.sql("SELECT * FROM controllers WHERE name = $1"))
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err(db("reading a controller"))?;
        row.as_ref().map(controller_row).transpose()
    }

    /// Replaces a controller's sealed token (key rotation) and test results.
    pub async fn update_controller_seal(&self, name: &str, sealed_token: &str) -> Result<(), StoreError> {
        sqlx::query(self.sql("UPDATE controllers SET sealed_token = $1 WHERE name = $2"))
            .bind(sealed_token)
            .bind(name)
            .execute(&self.pool)
            .await
            .map_err(db("updating a controller"))?;
        Ok(())
    }

    pub async fn update_controller_facts(
        &self,
        name: &str,
        version: Option<&str>,
        plugins: &[String],
    ) -> Result<(), StoreError> {
        sqlx::query(self.sql("UPDATE controllers SET jenkins_version = $1, plugins = $2 WHERE name = $3"))
            .bind(version.map(str::to_string))
            .bind(json_list(plugins))
            .bind(name)
            .execute(&self.pool)
            .await
            .map_err(db("updating a controller"))?;
        Ok(())
    }

    pub async fn delete_controller(&self, name: &str) -> Result<bool, StoreError> {
        let r = sqlx::query(self.sql("DELETE FROM controllers WHERE name = $1"))
            .bind(name)
            .execute(&self.pool)
            .await
            .map_err(db("removing a controller"))?;
        Ok(r.rows_affected() > 0)
    }

    // -----------------------------------------------------------------------------------------
    // agents and keys

    pub async fn insert_agent(&self, name: &str, description: &str) -> Result<i64, StoreError> {
        if self.agent(name).await?.is_some() {
            return Err(StoreError::Duplicate { what: "agent", name: name.to_string() });
        }
        let row = sqlx::query(
            self.sql("INSERT INTO agents (name, description, created_ms) VALUES ($1, $2, $3) RETURNING id"),
        )
        .bind(name)
        .bind(description)
        .bind(now_ms())
        .fetch_one(&self.pool)
        .await
        .map_err(db("creating the agent"))?;
        row.try_get("id").map_err(db("creating the agent"))
    }

    pub async fn agents(&self) -> Result<Vec<AgentRow>, StoreError> {
        let rows = sqlx::query("SELECT * FROM agents ORDER BY name")
            .fetch_all(&self.pool)
            .await
            .map_err(db("listing agents"))?;
        rows.iter().map(agent_row).collect()
    }

    pub async fn agent(&self, name: &str) -> Result<Option<AgentRow>, StoreError> {
        let row = sqlx::query(self.sql("SELECT * FROM agents WHERE name = $1"))
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err(db("reading an agent"))?;
        row.as_ref().map(agent_row).transpose()
    }

    pub async fn insert_key(
        &self,
        agent_id: i64,
        key_id: &str,
        key_hash: &str,
        expires_ms: Option<i64>,
    ) -> Result<i64, StoreError> {
        let row = sqlx::query(self.sql(
            "INSERT INTO agent_keys (agent_id, key_id, key_hash, created_ms, expires_ms) VALUES ($1, $2, $3, $4, $5) RETURNING id",
        ))
        .bind(agent_id)
        .bind(key_id)
        .bind(key_hash)
        .bind(now_ms())
        .bind(expires_ms)
        .fetch_one(&self.pool)
        .await
        .map_err(db("storing the agent key"))?;
        row.try_get("id").map_err(db("storing the agent key"))
    }

    /// The agent and key a presented key hash belongs to (revoked and expired keys included:
    /// the caller decides and explains).
    pub async fn find_key(&self, key_hash: &str) -> Result<Option<(AgentRow, KeyRow, String)>, StoreError> {
        let row = sqlx::query(self.sql(
            "SELECT k.id AS kid, k.agent_id, k.key_id, k.key_hash, k.created_ms AS kcreated, k.expires_ms, k.revoked_ms, k.last_used_ms, \
             a.id, a.name, a.description, a.created_ms FROM agent_keys k JOIN agents a ON a.id = k.agent_id WHERE k.key_hash = $1",
        ))
        .bind(key_hash)
        .fetch_optional(&self.pool)
        .await
        .map_err(db("looking up an agent key"))?;
        let Some(row) = row else { return Ok(None) };
        let agent = agent_row(&row)?;
        let key = KeyRow {
            id: row.try_get("kid").map_err(db("reading a key"))?,
            agent_id: row.try_get("agent_id").map_err(db("reading a key"))?,
            key_id: row.try_get("key_id").map_err(db("reading a key"))?,
            created_ms: row.try_get("kcreated").map_err(db("reading a key"))?,
            expires_ms: row.try_get("expires_ms").map_err(db("reading a key"))?,
            revoked_ms: row.try_get("revoked_ms").map_err(db("reading a key"))?,
            last_used_ms: row.try_get("last_used_ms").map_err(db("reading a key"))?,
        };
        let hash: String = row.try_get("key_hash").map_err(db("reading a key"))?;
        Ok(Some((agent, key, hash)))
    }

    pub async fn keys_of(&self, agent_id: i64) -> Result<Vec<KeyRow>, StoreError> {
        let rows = sqlx::query(self.sql("SELECT * FROM agent_keys WHERE agent_id = $1 ORDER BY id"))
            .bind(agent_id)
            .fetch_all(&self.pool)
            .await
            .map_err(db("listing keys"))?;
        rows.iter()
            .map(|r| {
                Ok(KeyRow {
                    id: r.try_get("id").map_err(db("reading a key"))?,
                    agent_id: r.try_get("agent_id").map_err(db("reading a key"))?,
                    key_id: r.try_get("key_id").map_err(db("reading a key"))?,
                    created_ms: r.try_get("created_ms").map_err(db("reading a key"))?,
                    expires_ms: r.try_get("expires_ms").map_err(db("reading a key"))?,
                    revoked_ms: r.try_get("revoked_ms").map_err(db("reading a key"))?,
                    last_used_ms: r.try_get("last_used_ms").map_err(db("reading a key"))?,
                })
            })
            .collect()
    }

    pub async fn touch_key(&self, key_row_id: i64) -> Result<(), StoreError> {
        sqlx::query(self.sql("UPDATE agent_keys SET last_used_ms = $1 WHERE id = $2"))
            .bind(now_ms())
            .bind(key_row_id)
            .execute(&self.pool)
            .await
            .map_err(db("recording key use"))?;
        Ok(())
    }

    /// Revokes all of an agent's keys, or the one with `key_id`. Returns how many were revoked.
    pub async fn revoke_keys(&self, agent_id: i64, key_id: Option<&str>) -> Result<u64, StoreError> {
        let r =
            match key_id {
                Some(k) => sqlx::query(self.sql(
                    "UPDATE agent_keys SET revoked_ms = $1 WHERE agent_id = $2 AND key_id = $3 AND revoked_ms IS NULL",
                ))
                .bind(now_ms())
                .bind(agent_id)
                .bind(k)
                .execute(&self.pool)
                .await,
                None => {
                    sqlx::query(
                        self.sql("UPDATE agent_keys SET revoked_ms = $1 WHERE agent_id = $2 AND revoked_ms IS NULL"),
                    )
                    .bind(now_ms())
                    .bind(agent_id)
                    .execute(&self.pool)
                    .await
                }
            }
            .map_err(db("revoking keys"))?;
        Ok(r.rows_affected())
    }

    // -----------------------------------------------------------------------------------------
    // grants

    pub async fn insert_grant(&self, agent_id: i64, g: &Grant) -> Result<i64, StoreError> {
        let params = serde_json::to_string(&g.params).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let row = sqlx::query(self.sql(
            "INSERT INTO grants (agent_id, controller, grp, level, jobs, params, created_ms) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
        ))
        .bind(agent_id)
        .bind(g.controller.clone())
        .bind(g.group.as_str())
        .bind(g.level.as_str())
        .bind(g.jobs.clone())
        .bind(params)
        .bind(now_ms())
        .fetch_one(&self.pool)
        .await
        .map_err(db("storing the grant"))?;
        row.try_get("id").map_err(db("storing the grant"))
    }

    pub async fn grants_of(&self, agent: &str) -> Result<Vec<Grant>, StoreError> {
        let rows = sqlx::query(self.sql(
            "SELECT g.*, a.name AS agent FROM grants g JOIN agents a ON a.id = g.agent_id WHERE a.name = $1 ORDER BY g.id",
        ))
        .bind(agent)
        .fetch_all(&self.pool)
        .await
        .map_err(db("reading grants"))?;
        rows.iter()
            .map(|r| {
                let grp: String = r.try_get("grp").map_err(db("reading a grant"))?;
                let level: String = r.try_get("level").map_err(db("reading a grant"))?;
                let params: String = r.try_get("params").map_err(db("reading a grant"))?;
                Ok(Grant {
                    id: r.try_get("id").map_err(db("reading a grant"))?,
                    agent: r.try_get("agent").map_err(db("reading a grant"))?,
                    controller: r.try_get("controller").map_err(db("reading a grant"))?,
                    group: crate::catalog::Group::parse(&grp)
                        .ok_or_else(|| StoreError::Corrupt(format!("unknown group {grp}")))?,
                    level: level.parse::<Level>().map_err(|_| StoreError::Corrupt(format!("unknown level {level}")))?,
                    jobs: r.try_get("jobs").map_err(db("reading a grant"))?,
                    params: serde_json::from_str::<Vec<ParamConstraint>>(&params)
                        .map_err(|e| StoreError::Corrupt(e.to_string()))?,
                })
            })
            .collect()
    }

    pub async fn delete_grant(&self, id: i64) -> Result<bool, StoreError> {
        let r = sqlx::query(self.sql("DELETE FROM grants WHERE id = $1"))
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(db("removing a grant"))?;
        Ok(r.rows_affected() > 0)
    }

    // -----------------------------------------------------------------------------------------
    // audit

    /// Appends one record to the chain under the write lock; returns it with its sequence number
    /// and hash. Fails (and writes nothing) if the database cannot take it: callers fail closed.
    pub async fn append_audit(&self, hmac_key: &[u8; 32], entry: Entry) -> Result<Record, StoreError> {
        let mut conn = self.pool.acquire().await.map_err(db("connecting to append an audit record"))?;
        self.lock(&mut conn).await?;
        let result = async {
            let last = sqlx::query("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1")
                .fetch_optional(&mut *conn)
                .await
                .map_err(db("reading the audit chain's head"))?;
            let (seq, prev) = match last {
                Some(r) => (
                    r.try_get::<i64, _>("seq").map_err(db("reading the audit head"))? + 1,
                    r.try_get::<String, _>("hash").map_err(db("reading the audit head"))?,
                ),
                None => (1, audit::GENESIS.to_string()),
            };
            let record = audit::chain(hmac_key, seq, entry, &prev);
            let json = serde_json::to_string(&record).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            sqlx::query(self.sql(
                "INSERT INTO audit (seq, time_ms, agent, controller, operation, phase, allowed, record, prev_hash, hash) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            ))
            .bind(seq)
            .bind(record.entry.time_ms)
            .bind(&record.entry.agent)
            .bind(&record.entry.controller)
            .bind(&record.entry.operation)
            .bind(phase_str(&record))
            .bind(i64::from(record.entry.allowed))
            .bind(json)
            .bind(&record.prev_hash)
            .bind(&record.hash)
            .execute(&mut *conn)
            .await
            .map_err(db("appending an audit record"))?;
            Ok(record)
        }
        .await;
        finish(&mut conn, result).await
    }

    /// Audit records matching `f`, in sequence order.
    pub async fn audit(&self, f: &AuditFilter) -> Result<Vec<Record>, StoreError> {
        let mut q = String::from("SELECT record FROM audit WHERE 1=1");
        let mut n = 0;
        let mut next = || {
            n += 1;
            format!("${n}")
        };
        if f.agent.is_some() {
            q += &format!(" AND agent = {}", next());
        }
        if f.controller.is_some() {
            q += &format!(" AND controller = {}", next());
        }
        if f.operation.is_some() {
            q += &format!(" AND operation = {}", next());
        }
        if f.allowed.is_some() {
            q += &format!(" AND allowed = {}", next());
        }
        if f.since_ms.is_some() {
            q += &format!(" AND time_ms >= {}", next());
        }
        if f.until_ms.is_some() {
            q += &format!(" AND time_ms <= {}", next());
        }
        if f.after_seq.is_some() {
            q += &format!(" AND seq > {}", next());
        }
        q += " ORDER BY seq";
        if f.limit.is_some() {
            q += &format!(" LIMIT {}", next());
        }
        let mut query = sqlx::query(self.sql(&q));
        if let Some(v) = &f.agent {
            query = query.bind(v.clone());
        }
        if let Some(v) = &f.controller {
            query = query.bind(v.clone());
        }
        if let Some(v) = &f.operation {
            query = query.bind(v.clone());
        }
        if let Some(v) = f.allowed {
            query = query.bind(i64::from(v));
        }
        if let Some(v) = f.since_ms {
            query = query.bind(v);
        }
        if let Some(v) = f.until_ms {
            query = query.bind(v);
        }
        if let Some(v) = f.after_seq {
            query = query.bind(v);
        }
        if let Some(v) = f.limit {
            query = query.bind(v);
        }
        let rows = query.fetch_all(&self.pool).await.map_err(db("reading the audit log"))?;
        rows.iter()
            .map(|r| {
                let json: String = r.try_get("record").map_err(db("reading the audit log"))?;
                serde_json::from_str(&json)
                    .map_err(|e| StoreError::Corrupt(format!("audit record is not valid JSON: {e}")))
            })
            .collect()
    }

    /// Runs raw SQL: for tamper tests and maintenance only.
    #[doc(hidden)]
    pub async fn execute_raw(&self, sql: &str) -> Result<u64, StoreError> {
        let r = sqlx::query(sqlx::AssertSqlSafe(sql.to_string()))
            .execute(&self.pool)
            .await
            .map_err(db("running raw SQL"))?;
        Ok(r.rows_affected())
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

async fn finish<T>(
    conn: &mut sqlx::pool::PoolConnection<sqlx::Any>,
    result: Result<T, StoreError>,
) -> Result<T, StoreError> {
    match result {
        Ok(v) => {
            sqlx::query("COMMIT").execute(&mut **conn).await.map_err(db("committing"))?;
            Ok(v)
        }
        Err(e) => {
            let _ = sqlx::query("ROLLBACK").execute(&mut **conn).await;
            Err(e)
        }
    }
}

fn phase_str(r: &Record) -> &'static str {
    match r.entry.phase {
        audit::Phase::Intent => "intent",
        audit::Phase::Outcome => "outcome",
        audit::Phase::Read => "read",
        audit::Phase::Denied => "denied",
    }
}

fn json_list(v: &[String]) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "[]".into())
}

fn controller_row(r: &sqlx::any::AnyRow) -> Result<ControllerRow, StoreError> {
    let e = db("reading a controller");
    let list = |s: String| serde_json::from_str::<Vec<String>>(&s).map_err(|e| StoreError::Corrupt(e.to_string()));
    Ok(ControllerRow {
        id: r.try_get("id").map_err(&e)?,
        name: r.try_get("name").map_err(&e)?,
        base_url: r.try_get("base_url").map_err(&e)?,
        username: r.try_get("username").map_err(&e)?,
        secret_kind: r.try_get("secret_kind").map_err(&e)?,
        sealed_token: r.try_get("sealed_token").map_err(&e)?,
        tls_ca_pem: r.try_get("tls_ca_pem").map_err(&e)?,
        tls_insecure: r.try_get::<i64, _>("tls_insecure").map_err(&e)? != 0,
        allow_private: list(r.try_get("allow_private").map_err(&e)?)?,
        jenkins_version: r.try_get("jenkins_version").map_err(&e)?,
        plugins: list(r.try_get("plugins").map_err(&e)?)?,
        created_ms: r.try_get("created_ms").map_err(&e)?,
    })
}

fn agent_row(r: &sqlx::any::AnyRow) -> Result<AgentRow, StoreError> {
    let e = db("reading an agent");
    Ok(AgentRow {
        id: r.try_get("id").map_err(&e)?,
        name: r.try_get("name").map_err(&e)?,
        description: r.try_get("description").map_err(&e)?,
        created_ms: r.try_get("created_ms").map_err(&e)?,
    })
}

/// Hides a password in a database URL.
pub fn redact_url(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => match rest.split_once('@') {
            Some((userinfo, host)) => {
                let user = userinfo.split(':').next().unwrap_or("");
                if userinfo.contains(':') {
                    format!("{scheme}://{user}:***@{host}")
                } else {
                    format!("{scheme}://{userinfo}@{host}")
                }
            }
            None => url.to_string(),
        },
        None => url.to_string(),
    }
}
