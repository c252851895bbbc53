//! The store: controllers, agents and keys, grants, and the audit chain, in SQLite (the embedded
//! default: one file, WAL) or PostgreSQL (several jgate replicas sharing state), behind one API.
//!
//! One code path serves both through sqlx's `Any` driver; SQL is written once with `$N`
//! placeholders and rewritten to SQLite's `?N`. Migrations are embedded SQL files per dialect,
//! applied under the same lock that serialises audit appends, so two processes starting at once
//! cannot run them twice. Audit appends are serialised (`BEGIN IMMEDIATE` on SQLite, a
//! transaction-scoped advisory lock on PostgreSQL), so concurrent writers never fork the chain.
//! Within a process the gate hands concurrent appends to one writer together (group commit: one
//! transaction per batch, see [`crate::audit_writer`]): on PostgreSQL through
//! [`Store::append_audit_batch`] (one multi-row INSERT), on SQLite on a connection of the writer's
//! own ([`crate::audit_sqlite`], the same statements without sqlx's worker thread in between).
//!
//! Every locked section is a sqlx [`Transaction`](sqlx::Transaction) ([`Locked`]): if the future
//! holding it is dropped (a client disconnects mid-append), the transaction is rolled back before
//! its connection can be used again, so no transaction — and no lock — outlives its future.
//!
//! Beside the audit table the store keeps the audit keys wrapped under the master key
//! (`audit_keys`), the master key's check value and the chain's sealed head (`jgate_meta`, names
//! [`META_KEY_CHECK`] and [`META_AUDIT_HEAD`]) and a sealed checkpoint every
//! [`audit::CHECKPOINT_EVERY`] records (`audit_checkpoints`). The head and checkpoints are written
//! in the same transaction as the record they name.
//!
//! # Bounds: no store call waits forever
//!
//! | bound | value | where |
//! |---|---|---|
//! | waiting for a pooled connection (connecting included) | [`ACQUIRE_TIMEOUT`] (5 s) | the pool |
//! | SQLite: waiting for another connection's or process's lock | [`LOCK_WAIT`] (5 s) | `PRAGMA busy_timeout` per connection |
//! | PostgreSQL: waiting for any lock (the append lock included) | [`LOCK_WAIT`] (5 s) | `lock_timeout` per connection |
//! | PostgreSQL: one statement | [`STATEMENT_TIMEOUT`] (30 s: `audit verify` reads the whole log) | `statement_timeout` per connection |
//! | PostgreSQL: a transaction left idle (a stuck process holding the append lock) | [`STATEMENT_TIMEOUT`] | `idle_in_transaction_session_timeout` |
//! | the call path's store calls (cache loads, one audit batch) | [`CALL_TIMEOUT`] (8 s) | a tokio timeout around the call (also catches a silent network) |
//! | a caller waiting for its audit record (queue, batch, audit device) | [`crate::audit_writer::RECORD_TIMEOUT`] (10 s) | a tokio timeout in [`Gate::record`](crate::Gate::record) |
//!
//! Administrative store calls (the CLI) rely on the first four; only a network that goes silent
//! mid-statement can hold them longer (until TCP gives up).
//!
//! A store that cannot answer within these bounds — down, unreachable, locked, a closed pool —
//! is reported as [`StoreError::Unavailable`], one message that names the problem and the fix,
//! whichever surface asked.
//!
//! # SQLite settings
//!
//! `journal_mode=WAL` (readers never wait for the writer), `busy_timeout` = [`LOCK_WAIT`],
//! `foreign_keys=ON`, and durability chosen per transaction:
//!
//! - `synchronous=FULL` for every transaction that holds an intent record (an agent's write or an
//!   administrator's change is about to be made) and for migrations, rotations and reseals: the
//!   commit is on disk when it returns, power loss included, so no change is ever made whose
//!   intent could vanish. It also puts every earlier commit on disk (the WAL is sequential).
//! - `synchronous=NORMAL` for the rest (reads, denials, outcomes; the connection default): the
//!   commit is in the WAL before the call returns, so it survives a crash of jgate, but an OS crash
//!   or power loss before the next fsync (the next FULL commit or WAL checkpoint) can lose the
//!   last such records. That trade buys the read path ~0.5 ms per call (one fsync); group commit
//!   amortises the FULL fsync across the batch under load.
//!
//! PostgreSQL commits as its server's `synchronous_commit` says (on by default: durable).

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Row};

use crate::audit::{self, AuditKeys, Entry, Head, Record, SealCheck, SealedCheckpoint};
use crate::policy::{Grant, Level, ParamConstraint};

/// How long a store call waits for a pooled connection, connecting included.
pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a statement waits for a lock: SQLite's `busy_timeout`, PostgreSQL's `lock_timeout`.
pub const LOCK_WAIT: Duration = Duration::from_secs(5);
/// PostgreSQL's `statement_timeout` (and `idle_in_transaction_session_timeout`) per connection.
pub const STATEMENT_TIMEOUT: Duration = Duration::from_secs(30);
/// The bound the call path puts around each of its store calls (a cache load, one audit batch):
/// a lock wait plus the work, and a network that went silent.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(8);

/// Errors of the store. Messages say what to do.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the database {url}: {detail}. Fix: {fix}")]
    Connect { url: String, detail: String, fix: String },
    /// A SQLite path whose directory does not exist (jgate does not create an empty store there).
    #[error(
        "the directory {dir} of the database {path} does not exist. Fix: create it (mkdir -p {dir}) or choose \
         another --db path"
    )]
    NoDirectory { dir: String, path: String },
    /// A SQLite path that holds something other than a jgate database, or a damaged one.
    #[error(
        "the file {path} is not a jgate database (or is corrupt): {detail}. Fix: check the --db path (or \
         JGATE_DB); restore the database from a backup if it was damaged"
    )]
    NotADatabase { path: String, detail: String },
    #[error("database error while {doing}: {detail}")]
    Db { doing: String, detail: String },
    /// The database is down, unreachable, locked or too slow: nothing was written.
    #[error(
        "jgate's store is unavailable ({detail}, while {doing}). Fix: check that jgate's database is running and \
         reachable (and not held locked by another program), then retry"
    )]
    Unavailable { doing: String, detail: String },
    #[error("{what} '{name}' already exists. Fix: choose another name, or remove the existing one first")]
    Duplicate { what: &'static str, name: String },
    #[error("{what} '{name}' does not exist. Fix: check the name ({hint})")]
    Missing { what: &'static str, name: String, hint: String },
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// The chain's sealed head is missing or forged: appends stop so the evidence is kept.
    #[error(
        "the audit log's sealed head {0}, so no record can be appended (the evidence is kept as it is). Fix: run \
         `jgate audit verify` to see what was changed; once understood, `jgate audit reseal` accepts the log as it \
         now stands (and records that it did)"
    )]
    AuditHead(String),
    /// The second audit device (the audit file) could not take a record.
    #[error(
        "the audit file {path} cannot be written ({detail}); the record is in the database but not in the file. \
         Fix: free space or fix permissions for the file, then retry"
    )]
    AuditDevice { path: String, detail: String },
}

pub(crate) fn db(doing: &str) -> impl Fn(sqlx::Error) -> StoreError + '_ {
    move |e| {
        let (doing, detail) = (doing.to_string(), e.to_string());
        if unavailable(&e) { StoreError::Unavailable { doing, detail } } else { StoreError::Db { doing, detail } }
    }
}

/// Whether an error means the store cannot answer now (as opposed to a bad statement or data).
fn unavailable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(d) => {
            let code = d.code().unwrap_or_default();
            // PostgreSQL: connection exceptions, insufficient resources, operator intervention
            // (statement timeout, shutdown), lock_timeout, idle-in-transaction timeout.
            let pg = code.starts_with("08")
                || code.starts_with("53")
                || code.starts_with("57")
                || code == "55P03"
                || code == "25P03";
            // SQLite: BUSY, LOCKED, READONLY, IOERR, FULL, CANTOPEN (extended codes: low byte).
            let sqlite = code.parse::<i32>().is_ok_and(|c| matches!(c & 0xff, 5 | 6 | 8 | 10 | 13 | 14));
            pg || sqlite
        }
        _ => false,
    }
}

/// The error of a store call that did not finish within `bound`.
pub fn timed_out(doing: &str, bound: Duration) -> StoreError {
    StoreError::Unavailable { doing: doing.to_string(), detail: format!("no answer within {} s", bound.as_secs()) }
}

/// Prepares a SQLite database path before it is opened: a missing directory is created (0700), a
/// missing file created empty with mode 0600; an existing non-empty file must start with SQLite's
/// header. Returns whether the file existed with content.
fn prepare_sqlite_file(path: &str) -> Result<bool, StoreError> {
    let p = std::path::Path::new(path);
    if let Some(dir) = p.parent().filter(|d| !d.as_os_str().is_empty() && !d.is_dir()) {
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt;
            builder.mode(0o700);
        }
        builder.create(dir).map_err(|e| StoreError::Connect {
            url: path.to_string(),
            detail: e.to_string(),
            fix: format!("create the directory {} or choose another --db path", dir.display()),
        })?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(p).map_err(|e| StoreError::Connect {
        url: path.to_string(),
        detail: e.to_string(),
        fix: "check that the file's directory is writable and the path is not a directory".into(),
    })?;
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    if len == 0 {
        return Ok(false);
    }
    let mut header = [0u8; 16];
    let read = std::io::Read::read(&mut file, &mut header).unwrap_or(0);
    if read < header.len() || &header != b"SQLite format 3\0" {
        return Err(StoreError::NotADatabase {
            path: path.to_string(),
            detail: "it does not start with the SQLite file header".into(),
        });
    }
    Ok(true)
}

/// Opens one connection to a SQLite file and reads its schema: a file SQLite cannot read fails
/// here at once. An existing file must be jgate's: either without tables or holding jgate's
/// schema table (jgate never migrates another program's database).
async fn probe_sqlite(opts: &AnyConnectOptions, path: &str, existed: bool) -> Result<(), StoreError> {
    use sqlx::Connection;
    let bad = |e: sqlx::Error| {
        if not_a_database(&e) {
            StoreError::NotADatabase { path: path.to_string(), detail: e.to_string() }
        } else {
            StoreError::Connect {
                url: path.to_string(),
                detail: e.to_string(),
                fix: "check that the file and its directory are readable and writable".into(),
            }
        }
    };
    let mut conn = sqlx::AnyConnection::connect_with(opts).await.map_err(bad)?;
    let tables: Vec<String> = sqlx::query("SELECT name FROM sqlite_master WHERE type = 'table'")
        .fetch_all(&mut conn)
        .await
        .map_err(bad)?
        .iter()
        .filter_map(|r| r.try_get::<String, _>("name").ok())
        .collect();
    if existed && !tables.is_empty() && !tables.iter().any(|t| t == "jgate_schema") {
        let _ = conn.close().await;
        return Err(StoreError::NotADatabase {
            path: path.to_string(),
            detail: format!(
                "it is a SQLite database without jgate's tables (it has {})",
                tables.iter().take(5).cloned().collect::<Vec<_>>().join(", ")
            ),
        });
    }
    // The pool's connections set WAL too; here a damaged file still fails fast.
    let wal = sqlx::query("PRAGMA journal_mode=WAL").execute(&mut conn).await.map(|_| ()).map_err(bad);
    let _ = conn.close().await;
    wal
}

/// SQLite's NOTADB (26) and CORRUPT (11): the file is not a database, or a damaged one.
fn not_a_database(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(d) => {
            d.code().and_then(|c| c.parse::<i32>().ok()).is_some_and(|c| matches!(c & 0xff, 11 | 26))
                || detail_not_a_database(d.message())
        }
        other => detail_not_a_database(&other.to_string()),
    }
}

fn detail_not_a_database(detail: &str) -> bool {
    detail.contains("file is not a database") || detail.contains("database disk image is malformed")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

// PostgreSQL advisory lock id (7632345547474177 = 0x1b1d_9d85_9501) for audit appends and migrations.

const SQLITE_MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../migrations/sqlite/0001_init.sql")),
    (2, include_str!("../migrations/sqlite/0002_audit_keys.sql")),
    (3, include_str!("../migrations/sqlite/0003_writes.sql")),
    (4, include_str!("../migrations/sqlite/0004_agents.sql")),
    (5, include_str!("../migrations/sqlite/0005_controllers.sql")),
    (6, include_str!("../migrations/sqlite/0006_exec_tokens.sql")),
    (7, include_str!("../migrations/sqlite/0007_console.sql")),
    (8, include_str!("../migrations/sqlite/0008_events.sql")),
    (9, include_str!("../migrations/sqlite/0009_approvals.sql")),
    (10, include_str!("../migrations/sqlite/0010_limits.sql")),
    (11, include_str!("../migrations/sqlite/0011_mcp_sessions.sql")),
    (12, include_str!("../migrations/sqlite/0012_trigger_slots.sql")),
    (13, include_str!("../migrations/sqlite/0013_audit_no_column_indexes.sql")),
];
const PG_MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../migrations/postgres/0001_init.sql")),
    (2, include_str!("../migrations/postgres/0002_audit_keys.sql")),
    (3, include_str!("../migrations/postgres/0003_writes.sql")),
    (4, include_str!("../migrations/postgres/0004_agents.sql")),
    (5, include_str!("../migrations/postgres/0005_controllers.sql")),
    (6, include_str!("../migrations/postgres/0006_exec_tokens.sql")),
    (7, include_str!("../migrations/postgres/0007_console.sql")),
    (8, include_str!("../migrations/postgres/0008_events.sql")),
    (9, include_str!("../migrations/postgres/0009_approvals.sql")),
    (10, include_str!("../migrations/postgres/0010_limits.sql")),
    (11, include_str!("../migrations/postgres/0011_mcp_sessions.sql")),
    (12, include_str!("../migrations/postgres/0012_trigger_slots.sql")),
    (13, include_str!("../migrations/postgres/0013_audit_no_column_indexes.sql")),
];

/// Rows per multi-row audit INSERT: 10 values each, well under SQLite's and PostgreSQL's limits
/// on bound parameters.
const ROWS_PER_INSERT: usize = 200;

/// `jgate_meta` name of the master key's check value (JSON of `{key_id, check}`).
pub const META_KEY_CHECK: &str = "key_check";
/// `jgate_meta` name of the audit chain's sealed head (JSON of [`Head`]).
pub const META_AUDIT_HEAD: &str = "audit_head";

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
    /// Seconds per Jenkins request (`--timeout`); `None` = the client's default.
    pub timeout_secs: Option<i64>,
    /// Also trust the operating system's certificate store (`--system-ca`).
    pub system_ca: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AgentRow {
    pub id: i64,
    pub name: String,
    pub description: String,
    pub created_ms: i64,
    /// When the agent was disabled (its keys are refused until it is enabled again).
    pub disabled_ms: Option<i64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct KeyRow {
    pub id: i64,
    pub agent_id: i64,
    pub key_id: String,
    pub created_ms: i64,
    pub expires_ms: Option<i64>,
    /// When the key is (or was) revoked: a time in the future is a revocation scheduled by a key
    /// rotation with an overlap; the key is valid until then.
    pub revoked_ms: Option<i64>,
    pub last_used_ms: Option<i64>,
    /// A token made by `jgate exec`: valid only through the Jenkins proxy.
    pub proxy_only: bool,
}

impl KeyRow {
    /// Whether the key authenticates at `now` (neither revoked nor expired by then).
    pub fn active_at(&self, now: i64) -> bool {
        self.revoked_ms.is_none_or(|r| r > now) && self.expires_ms.is_none_or(|e| e > now)
    }
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

/// Rows read per query when listing the audit log.
pub const AUDIT_PAGE: i64 = 2000;
/// How far a record's time may precede a later record's (see [`Store::audit_newest`]).
pub const CLOCK_SLACK_MS: i64 = 10 * 60 * 1000;

impl AuditFilter {
    /// Whether a sealed record passes the filter.
    pub fn matches(&self, r: &Record) -> bool {
        let e = &r.entry;
        self.agent.as_ref().is_none_or(|a| *a == e.agent)
            && self.controller.as_ref().is_none_or(|c| *c == e.controller)
            && self.operation.as_ref().is_none_or(|o| *o == e.operation)
            && self.allowed.is_none_or(|a| a == e.allowed)
            && self.since_ms.is_none_or(|t| e.time_ms >= t)
            && self.until_ms.is_none_or(|t| e.time_ms <= t)
            && self.after_seq.is_none_or(|s| r.seq > s)
    }
}

/// Records sealed in one batch, each with the keys that sealed it.
pub(crate) type Sealed<'k> = Vec<(&'k AuditKeys, Record)>;

/// Chains entries from `seq` after `prev` and seals the head on the last; returns the records with
/// their keys and the head's text.
pub(crate) fn seal_batch(
    items: Vec<(&AuditKeys, Entry)>,
    mut seq: i64,
    mut prev: String,
) -> Result<(Sealed<'_>, String), StoreError> {
    let mut sealed = Vec::with_capacity(items.len());
    for (keys, entry) in items {
        let record = audit::chain(keys.current_key(), keys.current_version(), seq, entry, &prev);
        seq += 1;
        prev.clone_from(&record.hash);
        sealed.push((keys, record));
    }
    let head = match sealed.last() {
        Some((keys, last)) => serde_json::to_string(&Head::seal(keys, last.seq, &last.hash))
            .map_err(|e| StoreError::Corrupt(e.to_string()))?,
        None => String::new(),
    };
    Ok((sealed, head))
}

/// Where the next record goes, from the stored head's text and the audit table's last
/// `(seq, hash)`: after the sealed head, or after the table's last row if that is further
/// (records written by a jgate that did not seal heads). A missing or forged head stops appends.
pub(crate) fn link_after(
    head: Option<String>,
    last: Option<(i64, String)>,
    keys: &AuditKeys,
) -> Result<(i64, String), StoreError> {
    let (last_seq, last_hash) = last.unwrap_or_else(|| (0, audit::GENESIS.to_string()));
    let head: Head = match head {
        Some(text) => serde_json::from_str(&text).map_err(|_| StoreError::AuditHead("is not readable".into()))?,
        None => return Err(StoreError::AuditHead("is missing".into())),
    };
    match head.check(keys) {
        SealCheck::Forged => return Err(StoreError::AuditHead("was edited or forged".into())),
        // Sealed by a process holding a newer key version (after a master-key rotation):
        // trusted as far as the table itself is.
        SealCheck::UnknownKey | SealCheck::Valid => {}
    }
    Ok(if head.seq >= last_seq { (head.seq + 1, head.hash) } else { (last_seq + 1, last_hash) })
}

#[derive(Clone, Copy)]
enum Direction {
    Up,
    Down,
}

/// A page's sealed records, in the sealed order of the page's direction (an edited `seq` column
/// must not move a record within it); a row whose record is unreadable is an error.
fn sealed_in_order(rows: Vec<AuditRow>, dir: Direction) -> Result<Vec<Record>, StoreError> {
    let mut records = Vec::with_capacity(rows.len());
    for row in rows {
        if let Some(column) = row.mismatched_column()
            && let Some(r) = row.record.as_ref()
        {
            tracing::warn!(
                seq = r.seq,
                column,
                "an audit column differs from its sealed record; filtering on the sealed record"
            );
        }
        match row.record {
            Some(r) => records.push(r),
            None => {
                return Err(StoreError::Corrupt(format!(
                    "audit record {} is not valid JSON (run `jgate audit verify`)",
                    row.seq.unwrap_or_default()
                )));
            }
        }
    }
    match dir {
        Direction::Up => records.sort_by_key(|r| r.seq),
        Direction::Down => records.sort_by_key(|r| std::cmp::Reverse(r.seq)),
    }
    Ok(records)
}

/// The store.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    dialect: Dialect,
    /// SQLite: the database file (the audit appender opens a connection of its own on it).
    sqlite_path: Option<Arc<str>>,
}

impl Store {
    /// Opens (creating if needed) the database at `url`: `sqlite:///path/to/file.db`, a plain
    /// file path, or `postgres://user@host:port/db`. Runs the migrations.
    ///
    /// SQLite: a missing directory is created (0700; the CLI refuses a `--db` whose directory is
    /// missing first, with [`Store::check_location`]); a new file is created with mode 0600 (SQLite
    /// gives its `-wal` and `-shm` files the same); a file that is not a jgate database — another
    /// program's, or not SQLite at all — or is damaged fails at once with
    /// [`StoreError::NotADatabase`].
    pub async fn open(url: &str) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let (url, dialect, sqlite_path) = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            (url.to_string(), Dialect::Postgres, None)
        } else {
            let path = url.strip_prefix("sqlite://").unwrap_or(url);
            let path = path.split('?').next().unwrap_or(path);
            let existed = prepare_sqlite_file(path)?;
            (format!("sqlite://{path}?mode=rwc"), Dialect::Sqlite, Some((path.to_string(), existed)))
        };
        let shown = redact_url(&url);
        let opts: AnyConnectOptions = url.parse().map_err(|e: sqlx::Error| StoreError::Connect {
            url: shown.clone(),
            detail: e.to_string(),
            fix: "use sqlite:///path/file.db or postgres://user@host:5432/db".into(),
        })?;
        if let Some((path, existed)) = &sqlite_path {
            // One plain connection first: the pool would retry a file SQLite cannot read until
            // its acquire timeout, logging each attempt.
            probe_sqlite(&opts, path, *existed).await?;
        }
        let max = if dialect == Dialect::Sqlite { 4 } else { 8 };
        let pool = AnyPoolOptions::new()
            .max_connections(max)
            // A pooled SQLite connection is a file handle in this process: pinging it before
            // every use costs a round trip to its worker thread and finds nothing. A PostgreSQL
            // connection may have been closed by the server, so it is checked.
            .test_before_acquire(dialect == Dialect::Postgres)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    // The bounds and settings of the module doc; values are constants, not input.
                    let lock_ms = LOCK_WAIT.as_millis();
                    let statement_ms = STATEMENT_TIMEOUT.as_millis();
                    let settings = match dialect {
                        // WAL lets readers run during an append; busy_timeout makes a second
                        // process wait (boundedly) for the write lock instead of failing at once.
                        Dialect::Sqlite => vec![
                            "PRAGMA journal_mode=WAL".to_string(),
                            "PRAGMA synchronous=NORMAL".to_string(),
                            format!("PRAGMA busy_timeout={lock_ms}"),
                            "PRAGMA foreign_keys=ON".to_string(),
                        ],
                        Dialect::Postgres => vec![
                            format!("SET lock_timeout = {lock_ms}"),
                            format!("SET statement_timeout = {statement_ms}"),
                            format!("SET idle_in_transaction_session_timeout = {statement_ms}"),
                        ],
                    };
                    for stmt in settings {
                        sqlx::query(sqlx::AssertSqlSafe(stmt)).execute(&mut *conn).await?;
                    }
                    Ok(())
                })
            })
            .connect_with(opts)
            .await
            .map_err(|e| match &sqlite_path {
                Some((path, _)) if not_a_database(&e) => {
                    StoreError::NotADatabase { path: path.clone(), detail: e.to_string() }
                }
                _ => StoreError::Connect {
                    url: shown.clone(),
                    detail: e.to_string(),
                    fix: match dialect {
                        Dialect::Postgres => "check that PostgreSQL runs and accepts this user and database".into(),
                        Dialect::Sqlite => "check that the file's directory is writable".into(),
                    },
                },
            })?;
        let store =
            Store { pool, dialect, sqlite_path: sqlite_path.as_ref().map(|(path, _)| Arc::from(path.as_str())) };
        store.migrate().await.map_err(|e| match (&sqlite_path, &e) {
            (Some((path, _)), StoreError::Db { detail, .. } | StoreError::Unavailable { detail, .. })
                if detail_not_a_database(detail) =>
            {
                StoreError::NotADatabase { path: path.clone(), detail: detail.clone() }
            }
            _ => e,
        })?;
        Ok(store)
    }

    /// For a path the user named: a SQLite path whose directory does not exist is
    /// [`StoreError::NoDirectory`] (a mistyped path must not become a new, empty store).
    /// PostgreSQL URLs pass.
    pub fn check_location(url: &str) -> Result<(), StoreError> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(());
        }
        let path = url.strip_prefix("sqlite://").unwrap_or(url);
        let path = path.split('?').next().unwrap_or(path);
        match std::path::Path::new(path).parent().filter(|d| !d.as_os_str().is_empty()) {
            Some(dir) if !dir.is_dir() => {
                Err(StoreError::NoDirectory { dir: dir.display().to_string(), path: path.to_string() })
            }
            _ => Ok(()),
        }
    }

    /// The pool, for the store's other modules (`writes`).
    pub(crate) fn pool(&self) -> &AnyPool {
        &self.pool
    }

    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// SQLite: the database file's path.
    pub(crate) fn sqlite_path(&self) -> Option<&str> {
        self.sqlite_path.as_deref()
    }

    /// Rewrites `$N` placeholders for SQLite (`?N`). Only placeholders change: every value is
    /// bound, never spliced, so the text stays as safe as the literal it came from.
    pub(crate) fn sql(&self, q: &str) -> sqlx::AssertSqlSafe<String> {
        sqlx::AssertSqlSafe(match self.dialect {
            Dialect::Postgres => q.to_string(),
            Dialect::Sqlite => q.replace('$', "?"),
        })
    }

    /// Begins a transaction that holds the store's write lock (see [`Locked`]), committed with
    /// SQLite's `synchronous=FULL`.
    pub async fn locked(&self) -> Result<Locked<'_>, StoreError> {
        self.locked_with(true).await
    }

    /// [`Store::locked`]; `durable` = false commits with SQLite's `synchronous=NORMAL` (see the
    /// module doc).
    async fn locked_with(&self, durable: bool) -> Result<Locked<'_>, StoreError> {
        let tx = match self.dialect {
            // IMMEDIATE takes SQLite's write lock at BEGIN, so two appenders cannot both read the
            // same head. `synchronous` can only change outside a transaction: hence first, in the
            // same round trip.
            Dialect::Sqlite => {
                let begin = if durable {
                    "PRAGMA synchronous=FULL; BEGIN IMMEDIATE"
                } else {
                    "PRAGMA synchronous=NORMAL; BEGIN IMMEDIATE"
                };
                self.pool.begin_with(begin).await.map_err(db("locking the database"))?
            }
            // The lock is a statement of its own inside the transaction: a lock timeout in the
            // BEGIN's own round trip would leave sqlx unaware of the aborted transaction.
            Dialect::Postgres => {
                let mut tx = self.pool.begin().await.map_err(db("beginning a transaction"))?;
                sqlx::query("SELECT pg_advisory_xact_lock(7632345547474177)")
                    .execute(&mut *tx)
                    .await
                    .map_err(db("taking the advisory lock"))?;
                tx
            }
        };
        Ok(Locked { store: self, tx })
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let mut tx = self.locked().await?;
        let conn = &mut *tx.tx;
        sqlx::query("CREATE TABLE IF NOT EXISTS jgate_schema (version BIGINT PRIMARY KEY, applied_ms BIGINT NOT NULL)")
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
                sqlx::query(sqlx::AssertSqlSafe(stmt.to_string()))
                    .execute(&mut *conn)
                    .await
                    .map_err(db("migrating the schema"))?;
            }
            sqlx::query(self.sql("INSERT INTO jgate_schema (version, applied_ms) VALUES ($1, $2)"))
                .bind(*version)
                .bind(now_ms())
                .execute(&mut *conn)
                .await
                .map_err(db("recording the schema version"))?;
        }
        tx.commit().await
    }

    // -----------------------------------------------------------------------------------------
    // controllers

    /// Adds a controller and moves the controllers' generation on, in one transaction.
    pub async fn insert_controller(&self, c: &ControllerRow) -> Result<i64, StoreError> {
        if self.controller(&c.name).await?.is_some() {
            return Err(StoreError::Duplicate { what: "controller", name: c.name.clone() });
        }
        let mut tx = self.begin_write("adding the controller").await?;
        let row = sqlx::query(self.sql(
            "INSERT INTO controllers (name, base_url, username, secret_kind, sealed_token, tls_ca_pem, tls_insecure, allow_private, jenkins_version, plugins, created_ms, timeout_secs, system_ca) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) RETURNING id",
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
        .bind(c.timeout_secs)
        .bind(i64::from(c.system_ca))
        .fetch_one(&mut *tx)
        .await
        .map_err(db("adding the controller"))?;
        let id = row.try_get("id").map_err(db("adding the controller"))?;
        bump_controller_generation(&mut tx).await?;
        tx.commit().await.map_err(db("adding the controller"))?;
        Ok(id)
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

    /// A plain transaction that takes SQLite's write lock at BEGIN (a read that later writes
    /// cannot then fail on a lock upgrade); PostgreSQL's row locks need nothing more.
    async fn begin_write(&self, doing: &'static str) -> Result<sqlx::Transaction<'static, sqlx::Any>, StoreError> {
        match self.dialect {
            Dialect::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(db(doing)),
            Dialect::Postgres => self.pool.begin().await.map_err(db(doing)),
        }
    }

    /// The controllers' generation: moved on in the same transaction as every change to a
    /// controller, so a process that sees it unchanged knows its cached connections are current.
    pub async fn controller_generation(&self) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT generation FROM controller_generation WHERE id = 1")
            .fetch_optional(&self.pool)
            .await
            .map_err(db("reading the controllers' generation"))?;
        row.map_or(Ok(0), |r| r.try_get("generation").map_err(db("reading the controllers' generation")))
    }

    /// Replaces a controller's settings (everything but its id, name and creation time) and moves
    /// the generation on, in one transaction. `false` if there is no controller by that name.
    pub async fn update_controller(&self, c: &ControllerRow) -> Result<bool, StoreError> {
        let mut tx = self.begin_write("updating a controller").await?;
        let r = sqlx::query(self.sql(
            "UPDATE controllers SET base_url = $1, username = $2, secret_kind = $3, sealed_token = $4, tls_ca_pem = $5, \
             tls_insecure = $6, allow_private = $7, jenkins_version = $8, plugins = $9, timeout_secs = $10, system_ca = $11 \
             WHERE name = $12",
        ))
        .bind(&c.base_url)
        .bind(&c.username)
        .bind(&c.secret_kind)
        .bind(&c.sealed_token)
        .bind(c.tls_ca_pem.clone())
        .bind(i64::from(c.tls_insecure))
        .bind(json_list(&c.allow_private))
        .bind(c.jenkins_version.clone())
        .bind(json_list(&c.plugins))
        .bind(c.timeout_secs)
        .bind(i64::from(c.system_ca))
        .bind(&c.name)
        .execute(&mut *tx)
        .await
        .map_err(db("updating a controller"))?;
        if r.rows_affected() == 0 {
            return Ok(false);
        }
        bump_controller_generation(&mut tx).await?;
        tx.commit().await.map_err(db("updating a controller"))?;
        Ok(true)
    }

    /// The grants that name this controller (grants for every controller are not included).
    pub async fn grants_on_controller(&self, name: &str) -> Result<Vec<Grant>, StoreError> {
        let rows = sqlx::query(self.sql(
            "SELECT g.*, a.name AS agent FROM grants g JOIN agents a ON a.id = g.agent_id WHERE g.controller = $1 ORDER BY g.id",
        ))
        .bind(name)
        .fetch_all(&self.pool)
        .await
        .map_err(db("reading grants"))?;
        rows.iter().map(grant_row).collect()
    }

    /// Removes a controller, and with `with_grants` the grants naming it, and moves the generation
    /// on, in one transaction. Without `with_grants`, removes nothing while grants name it
    /// ([`RemoveOutcome::HasGrants`]): they would otherwise apply to a later controller of the
    /// same name.
    pub async fn remove_controller(&self, name: &str, with_grants: bool) -> Result<RemoveOutcome, StoreError> {
        let mut tx = self.begin_write("removing a controller").await?;
        let count: i64 = sqlx::query(self.sql("SELECT COUNT(*) AS n FROM grants WHERE controller = $1"))
            .bind(name)
            .fetch_one(&mut *tx)
            .await
            .map_err(db("counting a controller's grants"))?
            .try_get("n")
            .map_err(db("counting a controller's grants"))?;
        if count > 0 && !with_grants {
            return Ok(RemoveOutcome::HasGrants(count as u64));
        }
        let grants = sqlx::query(self.sql("DELETE FROM grants WHERE controller = $1"))
            .bind(name)
            .execute(&mut *tx)
            .await
            .map_err(db("removing a controller's grants"))?
            .rows_affected();
        let r = sqlx::query(self.sql("DELETE FROM controllers WHERE name = $1"))
            .bind(name)
            .execute(&mut *tx)
            .await
            .map_err(db("removing a controller"))?;
        if r.rows_affected() == 0 {
            return Ok(RemoveOutcome::Missing);
        }
        bump_controller_generation(&mut tx).await?;
        tx.commit().await.map_err(db("removing a controller"))?;
        Ok(RemoveOutcome::Removed { grants })
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
        self.insert_scoped_key(agent_id, key_id, key_hash, expires_ms, "all").await
    }

    /// Stores a `jgate exec` token: a key of the agent valid only through the Jenkins proxy, until
    /// `expires_ms`.
    pub async fn insert_proxy_key(
        &self,
        agent_id: i64,
        key_id: &str,
        key_hash: &str,
        expires_ms: i64,
    ) -> Result<i64, StoreError> {
        self.insert_scoped_key(agent_id, key_id, key_hash, Some(expires_ms), "proxy").await
    }

    async fn insert_scoped_key(
        &self,
        agent_id: i64,
        key_id: &str,
        key_hash: &str,
        expires_ms: Option<i64>,
        scope: &str,
    ) -> Result<i64, StoreError> {
        let row = sqlx::query(self.sql(
            "INSERT INTO agent_keys (agent_id, key_id, key_hash, created_ms, expires_ms, scope) VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
        ))
        .bind(agent_id)
        .bind(key_id)
        .bind(key_hash)
        .bind(now_ms())
        .bind(expires_ms)
        .bind(scope)
        .fetch_one(&self.pool)
        .await
        .map_err(db("storing the agent key"))?;
        row.try_get("id").map_err(db("storing the agent key"))
    }

    /// Revokes one of an agent's `jgate exec` tokens (never a full key). Whether one was revoked.
    pub async fn revoke_proxy_key(&self, agent_id: i64, key_id: &str) -> Result<bool, StoreError> {
        let r = sqlx::query(self.sql(
            "UPDATE agent_keys SET revoked_ms = $1 WHERE agent_id = $2 AND key_id = $3 AND scope = 'proxy' \
             AND (revoked_ms IS NULL OR revoked_ms > $1)",
        ))
        .bind(now_ms())
        .bind(agent_id)
        .bind(key_id)
        .execute(&self.pool)
        .await
        .map_err(db("revoking a jgate exec token"))?;
        Ok(r.rows_affected() > 0)
    }

    /// The agent and key a presented key hash belongs to (revoked and expired keys included:
    /// the caller decides and explains).
    pub async fn find_key(&self, key_hash: &str) -> Result<Option<(AgentRow, KeyRow, String)>, StoreError> {
        let row = sqlx::query(self.sql(
            "SELECT k.id AS kid, k.agent_id, k.key_id, k.key_hash, k.created_ms AS kcreated, k.expires_ms, k.revoked_ms, k.last_used_ms, k.scope, \
             a.id, a.name, a.description, a.created_ms, a.disabled_ms FROM agent_keys k JOIN agents a ON a.id = k.agent_id WHERE k.key_hash = $1",
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
            proxy_only: row.try_get::<String, _>("scope").map_err(db("reading a key"))? == "proxy",
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
                    proxy_only: r.try_get::<String, _>("scope").map_err(db("reading a key"))? == "proxy",
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

    /// Records when keys were last used, `(key row id, time_ms)`, in one statement per 200 keys
    /// (the gate batches key use in memory: nothing is written on the authentication path).
    pub async fn record_key_use(&self, uses: &[(i64, i64)]) -> Result<(), StoreError> {
        for chunk in uses.chunks(200) {
            let mut cases = String::new();
            let mut ids = Vec::with_capacity(chunk.len());
            for i in 0..chunk.len() {
                cases.push_str(&format!(" WHEN ${} THEN ${}", 2 * i + 1, 2 * i + 2));
                ids.push(format!("${}", 2 * i + 1));
            }
            // Only forward: another replica may have recorded a later use already.
            let text = format!(
                "UPDATE agent_keys SET last_used_ms = CASE id{cases} END WHERE id IN ({}) \
                 AND (last_used_ms IS NULL OR last_used_ms < CASE id{cases} END)",
                ids.join(", ")
            );
            let mut q = sqlx::query(self.sql(&text));
            for (id, at) in chunk {
                q = q.bind(*id).bind(*at);
            }
            q.execute(&self.pool).await.map_err(db("recording key use"))?;
        }
        Ok(())
    }

    /// Revokes all of an agent's keys, or the one with `key_id`, now (also keys whose revocation
    /// was scheduled for later). Returns how many were revoked.
    pub async fn revoke_keys(&self, agent_id: i64, key_id: Option<&str>) -> Result<u64, StoreError> {
        let r =
            match key_id {
                Some(k) => sqlx::query(self.sql(
                    "UPDATE agent_keys SET revoked_ms = $1 WHERE agent_id = $2 AND key_id = $3 AND (revoked_ms IS NULL OR revoked_ms > $1)",
                ))
                .bind(now_ms())
                .bind(agent_id)
                .bind(k)
                .execute(&self.pool)
                .await,
                None => {
                    sqlx::query(
                        self.sql(
                            "UPDATE agent_keys SET revoked_ms = $1 WHERE agent_id = $2 AND (revoked_ms IS NULL OR revoked_ms > $1)",
                        ),
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
            "INSERT INTO grants (agent_id, controller, grp, level, jobs, params, created_ms, approve, max_per_hour) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
        ))
        .bind(agent_id)
        .bind(g.controller.clone())
        .bind(g.group.as_str())
        .bind(g.level.as_str())
        .bind(g.jobs.clone())
        .bind(params)
        .bind(now_ms())
        .bind(i64::from(g.approve))
        .bind(g.max_per_hour.map(i64::from))
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
        rows.iter().map(grant_row).collect()
    }

    /// One grant by id, if it exists.
    pub async fn grant(&self, id: i64) -> Result<Option<Grant>, StoreError> {
        let row = sqlx::query(
            self.sql("SELECT g.*, a.name AS agent FROM grants g JOIN agents a ON a.id = g.agent_id WHERE g.id = $1"),
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(db("reading a grant"))?;
        row.as_ref().map(grant_row).transpose()
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

    /// Appends one record to the chain under the write lock, sealed with the ring's current key;
    /// moves the sealed head to it (and seals a checkpoint every [`audit::CHECKPOINT_EVERY`]
    /// records) in the same transaction. Returns the record with its sequence number and hash.
    /// Fails (and writes nothing) if the database cannot take it: callers fail closed.
    ///
    /// The chain continues from the sealed head, not from the table's last row: if records were
    /// removed from the end, the next record keeps their numbers free, so the removal stays
    /// visible as a gap. A missing or forged head stops appends ([`StoreError::AuditHead`]).
    pub async fn append_audit(&self, keys: &AuditKeys, entry: Entry) -> Result<Record, StoreError> {
        let mut records = self.append_audit_batch(vec![(keys, entry)]).await?;
        records.pop().ok_or_else(|| StoreError::Corrupt("an append returned no record".into()))
    }

    /// [`Store::append_audit`] for several records in one transaction (group commit): each is
    /// chained after the one before and sealed with its own key ring, in the order given; the head
    /// moves once, to the last. All are written or none.
    pub async fn append_audit_batch(&self, items: Vec<(&AuditKeys, Entry)>) -> Result<Vec<Record>, StoreError> {
        let Some(&(first_keys, _)) = items.first() else {
            return Ok(Vec::new());
        };
        // Records of calls about to change something are on disk before the change is made.
        let durable = items.iter().any(|(_, e)| e.phase == audit::Phase::Intent);
        let mut tx = self.locked_with(durable).await?;
        let (seq, prev) = tx.next_link(first_keys).await?;
        let (sealed, head) = seal_batch(items, seq, prev)?;
        tx.insert_all(&sealed, &head).await?;
        for (keys, record) in sealed.iter().filter(|(_, r)| r.seq % audit::CHECKPOINT_EVERY == 0) {
            tx.insert_checkpoint(&SealedCheckpoint::seal(keys, record)).await?;
        }
        tx.commit().await?;
        Ok(sealed.into_iter().map(|(_, r)| r).collect())
    }

    /// Audit records matching `f`, in sequence order.
    ///
    /// Filters apply to the sealed record, never to the plain columns beside it: editing a column
    /// can neither hide a record from a filter nor slip one into it (`verify` reports the edit).
    /// Rows are read in pages of [`AUDIT_PAGE`], so memory follows the matches, not the log.
    pub async fn audit(&self, f: &AuditFilter) -> Result<Vec<Record>, StoreError> {
        let mut out = Vec::new();
        let mut cursor = f.after_seq;
        loop {
            let rows = self.audit_page(cursor, Direction::Up).await?;
            let Some(last) = rows.last().and_then(|r| r.seq) else { return Ok(out) };
            for r in sealed_in_order(rows, Direction::Up)? {
                if f.matches(&r) {
                    out.push(r);
                    if f.limit.is_some_and(|l| out.len() as i64 >= l) {
                        return Ok(out);
                    }
                }
            }
            cursor = Some(last);
        }
    }

    /// The newest audit records matching `f` (at most `f.limit`, default 100), before sequence
    /// number `before` if given; newest first. Pages are read backwards from the end, so the
    /// latest records cost the same however long the log is; a `since_ms` bound stops the scan
    /// once a whole page is older than it by [`CLOCK_SLACK_MS`] (records are sealed in order of
    /// writing, their times within seconds of that order).
    pub async fn audit_newest(&self, f: &AuditFilter, before: Option<i64>) -> Result<Vec<Record>, StoreError> {
        let limit = f.limit.unwrap_or(100).max(1);
        let mut out = Vec::new();
        let mut cursor = before;
        loop {
            let rows = self.audit_page(cursor, Direction::Down).await?;
            let Some(last) = rows.last().and_then(|r| r.seq) else { return Ok(out) };
            let newest_time = rows.iter().filter_map(|r| r.time_ms).max();
            for r in sealed_in_order(rows, Direction::Down)? {
                if f.matches(&r) {
                    out.push(r);
                    if out.len() as i64 >= limit {
                        return Ok(out);
                    }
                }
            }
            if let (Some(since), Some(t)) = (f.since_ms, newest_time)
                && t < since - CLOCK_SLACK_MS
            {
                return Ok(out);
            }
            cursor = Some(last);
        }
    }

    /// One page of audit rows after (`Up`) or before (`Down`) the cursor, in that direction.
    async fn audit_page(&self, cursor: Option<i64>, dir: Direction) -> Result<Vec<AuditRow>, StoreError> {
        let q = "SELECT seq, time_ms, agent, controller, operation, phase, allowed, record, prev_hash, hash FROM audit";
        let (cmp, order) = match dir {
            Direction::Up => (">", "ASC"),
            Direction::Down => ("<", "DESC"),
        };
        let rows = match cursor {
            Some(c) => {
                sqlx::query(self.sql(&format!("{q} WHERE seq {cmp} $1 ORDER BY seq {order} LIMIT {AUDIT_PAGE}")))
                    .bind(c)
                    .fetch_all(&self.pool)
                    .await
            }
            None => {
                sqlx::query(sqlx::AssertSqlSafe(format!("{q} ORDER BY seq {order} LIMIT {AUDIT_PAGE}")))
                    .fetch_all(&self.pool)
                    .await
            }
        }
        .map_err(db("reading the audit log"))?;
        Ok(rows.iter().map(AuditRow::from_row).collect())
    }

    /// Up to [`AUDIT_PAGE`] audit rows after `after` (by the `seq` column), in that order, with
    /// their plain columns and parsed records (for verifying page by page).
    pub async fn audit_rows_page(&self, after: Option<i64>) -> Result<Vec<AuditRow>, StoreError> {
        self.audit_page(after, Direction::Up).await
    }

    /// Every audit row with its plain columns and its parsed record, in `seq` order (for verify).
    pub async fn audit_rows(&self) -> Result<Vec<AuditRow>, StoreError> {
        self.audit_rows_after(None).await
    }

    async fn audit_rows_after(&self, after: Option<i64>) -> Result<Vec<AuditRow>, StoreError> {
        let q = "SELECT seq, time_ms, agent, controller, operation, phase, allowed, record, prev_hash, hash FROM audit";
        let rows = match after {
            Some(s) => {
                sqlx::query(self.sql(&format!("{q} WHERE seq > $1 ORDER BY seq"))).bind(s).fetch_all(&self.pool).await
            }
            None => sqlx::query(sqlx::AssertSqlSafe(format!("{q} ORDER BY seq"))).fetch_all(&self.pool).await,
        }
        .map_err(db("reading the audit log"))?;
        Ok(rows.iter().map(AuditRow::from_row).collect())
    }

    /// The checkpoints the store sealed by itself, by `seq`.
    pub async fn audit_checkpoints(&self) -> Result<Vec<SealedCheckpoint>, StoreError> {
        let rows = sqlx::query("SELECT seq, hash, key_version, mac FROM audit_checkpoints ORDER BY seq")
            .fetch_all(&self.pool)
            .await
            .map_err(db("reading the audit checkpoints"))?;
        rows.iter()
            .map(|r| {
                let e = db("reading an audit checkpoint");
                Ok(SealedCheckpoint {
                    seq: r.try_get("seq").map_err(&e)?,
                    hash: r.try_get("hash").map_err(&e)?,
                    key_version: version_u32(r.try_get("key_version").map_err(&e)?)?,
                    mac: r.try_get("mac").map_err(&e)?,
                })
            })
            .collect()
    }

    /// A `jgate_meta` value.
    pub async fn meta(&self, name: &str) -> Result<Option<String>, StoreError> {
        let row = sqlx::query(self.sql("SELECT value FROM jgate_meta WHERE name = $1"))
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err(db("reading jgate_meta"))?;
        row.map(|r| r.try_get("value").map_err(db("reading jgate_meta"))).transpose()
    }

    /// The sealed head, if there is one.
    pub async fn audit_head(&self) -> Result<Option<Head>, StoreError> {
        self.meta(META_AUDIT_HEAD)
            .await?
            .map(|t| serde_json::from_str(&t).map_err(|e| StoreError::Corrupt(format!("the audit head: {e}"))))
            .transpose()
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

    /// Closes the store: every later call fails as unavailable (the audit writer's own SQLite
    /// connection included, see [`Store::is_closed`]).
    pub async fn close(&self) {
        self.pool.close().await;
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.pool.is_closed()
    }
}

pub(crate) fn phase_str(r: &Record) -> &'static str {
    match r.entry.phase {
        audit::Phase::Intent => "intent",
        audit::Phase::Outcome => "outcome",
        audit::Phase::Read => "read",
        audit::Phase::Denied => "denied",
    }
}

fn version_u32(v: i64) -> Result<u32, StoreError> {
    u32::try_from(v).map_err(|_| StoreError::Corrupt(format!("audit key version {v} is out of range")))
}

/// One audit row: the plain columns (`None` where a value cannot be read as its type) beside the
/// record they were derived from (`None` if its JSON does not parse).
#[derive(Debug, Clone)]
pub struct AuditRow {
    pub seq: Option<i64>,
    pub time_ms: Option<i64>,
    pub agent: Option<String>,
    pub controller: Option<String>,
    pub operation: Option<String>,
    pub phase: Option<String>,
    pub allowed: Option<i64>,
    pub prev_hash: Option<String>,
    pub hash: Option<String>,
    pub record: Option<Record>,
}

impl AuditRow {
    fn from_row(r: &sqlx::any::AnyRow) -> AuditRow {
        AuditRow {
            seq: r.try_get("seq").ok(),
            time_ms: r.try_get("time_ms").ok(),
            agent: r.try_get("agent").ok(),
            controller: r.try_get("controller").ok(),
            operation: r.try_get("operation").ok(),
            phase: r.try_get("phase").ok(),
            allowed: r.try_get("allowed").ok(),
            prev_hash: r.try_get("prev_hash").ok(),
            hash: r.try_get("hash").ok(),
            record: r.try_get::<String, _>("record").ok().and_then(|j| serde_json::from_str(&j).ok()),
        }
    }

    /// The first plain column that differs from the sealed record, if any.
    pub fn mismatched_column(&self) -> Option<&'static str> {
        let r = self.record.as_ref()?;
        let e = &r.entry;
        let checks: [(&'static str, bool); 9] = [
            ("seq", self.seq == Some(r.seq)),
            ("time_ms", self.time_ms == Some(e.time_ms)),
            ("agent", self.agent.as_deref() == Some(e.agent.as_str())),
            ("controller", self.controller.as_deref() == Some(e.controller.as_str())),
            ("operation", self.operation.as_deref() == Some(e.operation.as_str())),
            ("phase", self.phase.as_deref() == Some(phase_str(r))),
            ("allowed", self.allowed == Some(i64::from(e.allowed))),
            ("prev_hash", self.prev_hash.as_deref() == Some(r.prev_hash.as_str())),
            ("hash", self.hash.as_deref() == Some(r.hash.as_str())),
        ];
        checks.iter().find(|(_, ok)| !ok).map(|(name, _)| *name)
    }
}

/// A transaction holding the store's write lock (`BEGIN IMMEDIATE` on SQLite, the advisory lock on
/// PostgreSQL). Commit with [`Locked::commit`]; dropping it without committing rolls it back, so a
/// cancelled future never leaves a transaction open or the store locked.
pub struct Locked<'s> {
    store: &'s Store,
    tx: sqlx::Transaction<'static, sqlx::Any>,
}

impl Locked<'_> {
    pub async fn commit(self) -> Result<(), StoreError> {
        self.tx.commit().await.map_err(db("committing"))
    }

    /// A `jgate_meta` value.
    pub async fn meta(&mut self, name: &str) -> Result<Option<String>, StoreError> {
        let row = sqlx::query(self.store.sql("SELECT value FROM jgate_meta WHERE name = $1"))
            .bind(name)
            .fetch_optional(&mut *self.tx)
            .await
            .map_err(db("reading jgate_meta"))?;
        row.map(|r| r.try_get("value").map_err(db("reading jgate_meta"))).transpose()
    }

    /// Sets a `jgate_meta` value.
    pub async fn put_meta(&mut self, name: &str, value: &str) -> Result<(), StoreError> {
        sqlx::query(self.store.sql(
            "INSERT INTO jgate_meta (name, value) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET value = excluded.value",
        ))
        .bind(name)
        .bind(value)
        .execute(&mut *self.tx)
        .await
        .map_err(db("writing jgate_meta"))?;
        Ok(())
    }

    async fn put_json(&mut self, name: &str, value: &impl serde::Serialize) -> Result<(), StoreError> {
        let text = serde_json::to_string(value).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.put_meta(name, &text).await
    }

    /// Sets the sealed head.
    pub async fn put_head(&mut self, head: &Head) -> Result<(), StoreError> {
        self.put_json(META_AUDIT_HEAD, head).await
    }

    /// The sealed audit keys: (version, JSON of `secrets::Sealed`), oldest first.
    pub async fn audit_keys(&mut self) -> Result<Vec<(u32, String)>, StoreError> {
        let rows = sqlx::query("SELECT version, sealed FROM audit_keys ORDER BY version")
            .fetch_all(&mut *self.tx)
            .await
            .map_err(db("reading the audit keys"))?;
        rows.iter()
            .map(|r| {
                let e = db("reading an audit key");
                Ok((version_u32(r.try_get("version").map_err(&e)?)?, r.try_get("sealed").map_err(&e)?))
            })
            .collect()
    }

    /// Stores (or replaces) the sealed audit key of `version`.
    pub async fn put_audit_key(&mut self, version: u32, sealed: &str) -> Result<(), StoreError> {
        sqlx::query(self.store.sql(
            "INSERT INTO audit_keys (version, sealed, created_ms) VALUES ($1, $2, $3) \
             ON CONFLICT (version) DO UPDATE SET sealed = excluded.sealed",
        ))
        .bind(i64::from(version))
        .bind(sealed)
        .bind(now_ms())
        .execute(&mut *self.tx)
        .await
        .map_err(db("storing an audit key"))?;
        Ok(())
    }

    /// The `(seq, hash)` and record JSON of the audit table's last row.
    pub async fn last_audit(&mut self) -> Result<Option<(i64, String, String)>, StoreError> {
        let row = sqlx::query("SELECT seq, hash, record FROM audit ORDER BY seq DESC LIMIT 1")
            .fetch_optional(&mut *self.tx)
            .await
            .map_err(db("reading the audit chain's head"))?;
        row.map(|r| {
            let e = db("reading the audit chain's head");
            Ok((r.try_get("seq").map_err(&e)?, r.try_get("hash").map_err(&e)?, r.try_get("record").map_err(&e)?))
        })
        .transpose()
    }

    /// The stored controllers (for re-wrapping their tokens).
    pub async fn controllers(&mut self) -> Result<Vec<ControllerRow>, StoreError> {
        let rows = sqlx::query("SELECT * FROM controllers ORDER BY name")
            .fetch_all(&mut *self.tx)
            .await
            .map_err(db("listing controllers"))?;
        rows.iter().map(controller_row).collect()
    }

    pub async fn update_controller_seal(&mut self, name: &str, sealed_token: &str) -> Result<(), StoreError> {
        sqlx::query(self.store.sql("UPDATE controllers SET sealed_token = $1 WHERE name = $2"))
            .bind(sealed_token)
            .bind(name)
            .execute(&mut *self.tx)
            .await
            .map_err(db("updating a controller"))?;
        Ok(())
    }

    /// Where the next record goes: after the sealed head, or after the table's last row if that
    /// is further (records written by a jgate that did not seal heads).
    async fn next_link(&mut self, keys: &AuditKeys) -> Result<(i64, String), StoreError> {
        // The sealed head and the table's last row in one round trip.
        let row = sqlx::query(self.store.sql(
            "SELECT (SELECT value FROM jgate_meta WHERE name = $1) AS head, \
             (SELECT seq FROM audit ORDER BY seq DESC LIMIT 1) AS seq, \
             (SELECT hash FROM audit ORDER BY seq DESC LIMIT 1) AS hash",
        ))
        .bind(META_AUDIT_HEAD)
        .fetch_one(&mut *self.tx)
        .await
        .map_err(db("reading the audit chain's head"))?;
        let e = db("reading the audit chain's head");
        let head: Option<String> = row.try_get("head").map_err(&e)?;
        let last: Option<i64> = row.try_get("seq").map_err(&e)?;
        let hash: Option<String> = row.try_get("hash").map_err(&e)?;
        link_after(head, last.zip(hash), keys)
    }

    /// Inserts a sealed batch (in chunks of [`ROWS_PER_INSERT`]) and moves the head with the last
    /// rows.
    async fn insert_all(&mut self, sealed: &[(&AuditKeys, Record)], head: &str) -> Result<(), StoreError> {
        let records: Vec<&Record> = sealed.iter().map(|(_, r)| r).collect();
        let chunks: Vec<&[&Record]> = records.chunks(ROWS_PER_INSERT).collect();
        for (i, chunk) in chunks.iter().enumerate() {
            // The head moves with the last rows: in the same statement on PostgreSQL, in a second
            // statement of the same query on SQLite; one round trip either way.
            let last = i + 1 == chunks.len();
            let insert = AuditInsert::new(self.store.dialect, chunk, last.then_some(head))?;
            insert
                .bind(sqlx::query(self.store.sql(&insert.text)), chunk)
                .execute(&mut *self.tx)
                .await
                .map_err(db("appending audit records"))?;
        }
        Ok(())
    }

    /// Seals a checkpoint; one already stored for that `seq` is kept (it is evidence).
    async fn insert_checkpoint(&mut self, cp: &SealedCheckpoint) -> Result<(), StoreError> {
        sqlx::query(self.store.sql(
            "INSERT INTO audit_checkpoints (seq, hash, key_version, mac, created_ms) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (seq) DO NOTHING",
        ))
        .bind(cp.seq)
        .bind(&cp.hash)
        .bind(i64::from(cp.key_version))
        .bind(&cp.mac)
        .bind(now_ms())
        .execute(&mut *self.tx)
        .await
        .map_err(db("sealing an audit checkpoint"))?;
        Ok(())
    }
}

/// One multi-row INSERT of sealed audit records, as [`Locked::insert_all`] sends it: the text
/// (`$N` parameters) and its bound values.
struct AuditInsert<'a> {
    text: String,
    jsons: Vec<String>,
    head: Option<&'a str>,
}

impl<'a> AuditInsert<'a> {
    /// The INSERT of `records`; with `head`, the head moves in the same query (in the same
    /// statement on PostgreSQL, in a second statement on SQLite: no data-modifying CTEs there).
    fn new(dialect: Dialect, records: &[&Record], head: Option<&'a str>) -> Result<AuditInsert<'a>, StoreError> {
        let pg = dialect == Dialect::Postgres;
        let mut text = String::from(if pg && head.is_some() { "WITH rows AS (" } else { "" });
        text.push_str(
            "INSERT INTO audit (seq, time_ms, agent, controller, operation, phase, allowed, record, prev_hash, hash) VALUES ",
        );
        let mut jsons = Vec::with_capacity(records.len());
        for (i, record) in records.iter().enumerate() {
            jsons.push(serde_json::to_string(record).map_err(|e| StoreError::Corrupt(e.to_string()))?);
            let n = i * 10;
            let row: Vec<String> = (1..=10).map(|k| format!("${}", n + k)).collect();
            text.push_str(if i == 0 { "(" } else { ", (" });
            text.push_str(&row.join(", "));
            text.push(')');
        }
        if head.is_some() {
            let (name, value) = (records.len() * 10 + 1, records.len() * 10 + 2);
            if pg {
                text.push(')');
            } else {
                text.push(';');
            }
            text.push_str(&format!(
                " INSERT INTO jgate_meta (name, value) VALUES (${name}, ${value}) \
                 ON CONFLICT (name) DO UPDATE SET value = excluded.value"
            ));
        }
        Ok(AuditInsert { text, jsons, head })
    }

    /// `q` (this insert's text, perhaps inside a longer query) with the values bound, in the
    /// order the text numbers them.
    fn bind<'q>(
        &'q self,
        mut q: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>,
        records: &'q [&Record],
    ) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments> {
        for (record, json) in records.iter().zip(&self.jsons) {
            q = q
                .bind(record.seq)
                .bind(record.entry.time_ms)
                .bind(record.entry.agent.as_str())
                .bind(record.entry.controller.as_str())
                .bind(record.entry.operation.as_str())
                .bind(phase_str(record))
                .bind(i64::from(record.entry.allowed))
                .bind(json.as_str())
                .bind(record.prev_hash.as_str())
                .bind(record.hash.as_str());
        }
        if let Some(head) = self.head {
            q = q.bind(META_AUDIT_HEAD).bind(head);
        }
        q
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
        timeout_secs: r.try_get("timeout_secs").map_err(&e)?,
        system_ca: r.try_get::<i64, _>("system_ca").map_err(&e)? != 0,
    })
}

fn grant_row(r: &sqlx::any::AnyRow) -> Result<Grant, StoreError> {
    let grp: String = r.try_get("grp").map_err(db("reading a grant"))?;
    let level: String = r.try_get("level").map_err(db("reading a grant"))?;
    let params: String = r.try_get("params").map_err(db("reading a grant"))?;
    Ok(Grant {
        id: r.try_get("id").map_err(db("reading a grant"))?,
        agent: r.try_get("agent").map_err(db("reading a grant"))?,
        controller: r.try_get("controller").map_err(db("reading a grant"))?,
        group: crate::catalog::Group::parse(&grp).ok_or_else(|| StoreError::Corrupt(format!("unknown group {grp}")))?,
        level: level.parse::<Level>().map_err(|_| StoreError::Corrupt(format!("unknown level {level}")))?,
        jobs: r.try_get("jobs").map_err(db("reading a grant"))?,
        params: serde_json::from_str::<Vec<ParamConstraint>>(&params)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?,
        approve: r.try_get::<i64, _>("approve").map_err(db("reading a grant"))? != 0,
        max_per_hour: r
            .try_get::<Option<i64>, _>("max_per_hour")
            .map_err(db("reading a grant"))?
            .map(|n| u32::try_from(n).unwrap_or(u32::MAX)),
    })
}

fn agent_row(r: &sqlx::any::AnyRow) -> Result<AgentRow, StoreError> {
    let e = db("reading an agent");
    Ok(AgentRow {
        id: r.try_get("id").map_err(&e)?,
        name: r.try_get("name").map_err(&e)?,
        description: r.try_get("description").map_err(&e)?,
        created_ms: r.try_get("created_ms").map_err(&e)?,
        disabled_ms: r.try_get("disabled_ms").map_err(&e)?,
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

// ---------------------------------------------------------------------------------------------
// agent lifecycle: disable/enable, delete, key rotation

/// What [`Store::delete_agent`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum AgentDeletion {
    /// The agent, its keys and (when asked) its grants are gone.
    Deleted {
        /// The ids of the keys that were still valid (now gone: they authenticate no more).
        keys_revoked: Vec<String>,
        /// The grants removed with the agent.
        grants_removed: Vec<Grant>,
    },
    /// Refused: the agent still has these grants (and removing them was not asked for).
    HasGrants(Vec<Grant>),
    /// There is no such agent.
    Missing,
}

impl Store {
    /// Disables an agent (`Some(time)`) or enables it (`None`). Returns whether the agent exists.
    pub async fn set_agent_disabled(&self, agent_id: i64, disabled_ms: Option<i64>) -> Result<bool, StoreError> {
        let r = sqlx::query(self.sql("UPDATE agents SET disabled_ms = $1 WHERE id = $2"))
            .bind(disabled_ms)
            .bind(agent_id)
            .execute(&self.pool)
            .await
            .map_err(db("disabling or enabling an agent"))?;
        Ok(r.rows_affected() > 0)
    }

    /// Deletes an agent with its keys, in one transaction under the store's write lock. With
    /// grants it is refused unless `with_grants`, which removes them too. The grants are read in
    /// the same transaction, so a grant added meanwhile is never removed unseen.
    pub async fn delete_agent(&self, agent_id: i64, with_grants: bool) -> Result<AgentDeletion, StoreError> {
        let now = now_ms();
        let mut tx = self.locked().await?;
        let conn = &mut *tx.tx;
        let exists = sqlx::query(self.sql("SELECT id FROM agents WHERE id = $1"))
            .bind(agent_id)
            .fetch_optional(&mut *conn)
            .await
            .map_err(db("reading an agent"))?
            .is_some();
        if !exists {
            return Ok(AgentDeletion::Missing);
        }
        let rows = sqlx::query(self.sql(
            "SELECT g.*, a.name AS agent FROM grants g JOIN agents a ON a.id = g.agent_id WHERE g.agent_id = $1 ORDER BY g.id",
        ))
        .bind(agent_id)
        .fetch_all(&mut *conn)
        .await
        .map_err(db("reading grants"))?;
        let grants = rows.iter().map(grant_row).collect::<Result<Vec<_>, _>>()?;
        if !grants.is_empty() && !with_grants {
            return Ok(AgentDeletion::HasGrants(grants));
        }
        let keys = sqlx::query(self.sql(
            "SELECT key_id FROM agent_keys WHERE agent_id = $1 AND (revoked_ms IS NULL OR revoked_ms > $2) \
             AND (expires_ms IS NULL OR expires_ms > $2) ORDER BY id",
        ))
        .bind(agent_id)
        .bind(now)
        .fetch_all(&mut *conn)
        .await
        .map_err(db("reading keys"))?;
        let keys_revoked = keys
            .iter()
            .map(|r| r.try_get::<String, _>("key_id"))
            .collect::<Result<Vec<_>, _>>()
            .map_err(db("reading keys"))?;
        for stmt in [
            "DELETE FROM grants WHERE agent_id = $1",
            "DELETE FROM agent_keys WHERE agent_id = $1",
            "DELETE FROM agents WHERE id = $1",
        ] {
            sqlx::query(self.sql(stmt)).bind(agent_id).execute(&mut *conn).await.map_err(db("deleting the agent"))?;
        }
        tx.commit().await?;
        Ok(AgentDeletion::Deleted { keys_revoked, grants_removed: grants })
    }

    /// A key rotation in one transaction: stores the new key and schedules the revocation of the
    /// agent's valid keys (or only `old_key_id`) at `revoke_at_ms` (now: no overlap). Returns the
    /// ids of the keys it retires (none when the agent had no valid key: the new key is stored
    /// anyway), or `None` when `old_key_id` is not a valid key of the agent (nothing is stored).
    pub async fn rotate_agent_key(
        &self,
        agent_id: i64,
        new_key_id: &str,
        new_hash: &str,
        expires_ms: Option<i64>,
        old_key_id: Option<&str>,
        revoke_at_ms: i64,
    ) -> Result<Option<Vec<String>>, StoreError> {
        let now = now_ms();
        let mut tx = self.locked().await?;
        let conn = &mut *tx.tx;
        let valid =
            "agent_id = $1 AND (revoked_ms IS NULL OR revoked_ms > $2) AND (expires_ms IS NULL OR expires_ms > $2)";
        let rows = match old_key_id {
            Some(k) => {
                sqlx::query(
                    self.sql(&format!("SELECT id, key_id FROM agent_keys WHERE {valid} AND key_id = $3 ORDER BY id")),
                )
                .bind(agent_id)
                .bind(now)
                .bind(k)
                .fetch_all(&mut *conn)
                .await
            }
            None => {
                sqlx::query(self.sql(&format!("SELECT id, key_id FROM agent_keys WHERE {valid} ORDER BY id")))
                    .bind(agent_id)
                    .bind(now)
                    .fetch_all(&mut *conn)
                    .await
            }
        }
        .map_err(db("reading keys"))?;
        let mut retired = Vec::with_capacity(rows.len());
        for r in &rows {
            let id: i64 = r.try_get("id").map_err(db("reading keys"))?;
            retired.push(r.try_get::<String, _>("key_id").map_err(db("reading keys"))?);
            // A key already due to be revoked sooner keeps the sooner time.
            sqlx::query(self.sql(
                "UPDATE agent_keys SET revoked_ms = $1 WHERE id = $2 AND (revoked_ms IS NULL OR revoked_ms > $1)",
            ))
            .bind(revoke_at_ms)
            .bind(id)
            .execute(&mut *conn)
            .await
            .map_err(db("revoking a key"))?;
        }
        if old_key_id.is_some() && retired.is_empty() {
            return Ok(None);
        }
        sqlx::query(self.sql(
            "INSERT INTO agent_keys (agent_id, key_id, key_hash, created_ms, expires_ms) VALUES ($1, $2, $3, $4, $5)",
        ))
        .bind(agent_id)
        .bind(new_key_id)
        .bind(new_hash)
        .bind(now)
        .bind(expires_ms)
        .execute(&mut *conn)
        .await
        .map_err(db("storing the agent key"))?;
        tx.commit().await?;
        Ok(Some(retired))
    }
}

/// What [`Store::remove_controller`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemoveOutcome {
    /// Removed, with this many grants.
    Removed { grants: u64 },
    /// Nothing removed: this many grants name the controller (and removing them was not asked).
    HasGrants(u64),
    /// There is no controller by that name.
    Missing,
}

/// Moves the controllers' generation on (inside the caller's transaction).
async fn bump_controller_generation(tx: &mut sqlx::Transaction<'static, sqlx::Any>) -> Result<(), StoreError> {
    sqlx::query("UPDATE controller_generation SET generation = generation + 1 WHERE id = 1")
        .execute(&mut **tx)
        .await
        .map_err(db("moving the controllers' generation on"))?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// approvals (migration 0009; see crate::approvals)

impl Store {
    /// Stores a new pending approval.
    pub async fn insert_approval(&self, a: &crate::approvals::Approval) -> Result<(), StoreError> {
        sqlx::query(self.sql(
            "INSERT INTO approvals (id, agent, controller, operation, target, grant_id, salt, call_hash, summary, args, request_id, status, created_ms, expires_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
        ))
        .bind(&a.id)
        .bind(&a.agent)
        .bind(&a.controller)
        .bind(&a.operation)
        .bind(a.target.clone())
        .bind(a.grant)
        .bind(&a.salt)
        .bind(&a.call_hash)
        .bind(&a.summary)
        .bind(a.args.to_string())
        .bind(&a.request_id)
        .bind(a.status.as_str())
        .bind(a.created_ms)
        .bind(a.expires_ms)
        .execute(&self.pool)
        .await
        .map_err(db("storing an approval"))?;
        Ok(())
    }

    /// One approval by id.
    pub async fn approval(&self, id: &str) -> Result<Option<crate::approvals::Approval>, StoreError> {
        let row = sqlx::query(self.sql("SELECT * FROM approvals WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db("reading an approval"))?;
        row.as_ref().map(approval_row).transpose()
    }

    /// The approvals a call of `agent` / `operation` on `controller` could be the same call as:
    /// not yet used (or answered), newest first.
    pub async fn approvals_open_for(
        &self,
        agent: &str,
        controller: &str,
        operation: &str,
    ) -> Result<Vec<crate::approvals::Approval>, StoreError> {
        let rows = sqlx::query(self.sql(
            "SELECT * FROM approvals WHERE agent = $1 AND controller = $2 AND operation = $3 AND used_ms IS NULL \
             AND status IN ('pending', 'approved', 'denied', 'expired') ORDER BY created_ms DESC LIMIT 200",
        ))
        .bind(agent)
        .bind(controller)
        .bind(operation)
        .fetch_all(&self.pool)
        .await
        .map_err(db("reading approvals"))?;
        rows.iter().map(approval_row).collect()
    }

    /// How many approvals of `agent` wait for a decision.
    pub async fn pending_approvals_of(&self, agent: &str) -> Result<i64, StoreError> {
        sqlx::query(self.sql("SELECT COUNT(*) AS n FROM approvals WHERE agent = $1 AND status = 'pending'"))
            .bind(agent)
            .fetch_one(&self.pool)
            .await
            .map_err(db("counting approvals"))?
            .try_get("n")
            .map_err(db("counting approvals"))
    }

    /// Pending approvals (or, with `all`, the newest 500 of every status), newest first.
    pub async fn list_approvals(&self, all: bool) -> Result<Vec<crate::approvals::Approval>, StoreError> {
        let sql = if all {
            "SELECT * FROM approvals ORDER BY created_ms DESC LIMIT 500"
        } else {
            "SELECT * FROM approvals WHERE status = 'pending' ORDER BY created_ms DESC LIMIT 500"
        };
        let rows = sqlx::query(self.sql(sql)).fetch_all(&self.pool).await.map_err(db("reading approvals"))?;
        rows.iter().map(approval_row).collect()
    }

    /// Decides a pending, unexpired approval; `false` if it was not pending any more (one
    /// statement: two approvers racing decide it once).
    pub async fn decide_approval(
        &self,
        id: &str,
        approve: bool,
        by: &str,
        reason: Option<&str>,
        now: i64,
    ) -> Result<bool, StoreError> {
        let status = if approve { "approved" } else { "denied" };
        let r = sqlx::query(self.sql(
            "UPDATE approvals SET status = $1, decided_by = $2, decided_ms = $3, reason = $4 \
             WHERE id = $5 AND status = 'pending' AND expires_ms > $3",
        ))
        .bind(status)
        .bind(by)
        .bind(now)
        .bind(reason.map(str::to_string))
        .bind(id)
        .execute(&self.pool)
        .await
        .map_err(db("deciding an approval"))?;
        Ok(r.rows_affected() == 1)
    }

    /// Uses an approved, unexpired approval for one call; `false` if another call used it first.
    pub async fn use_approval(&self, id: &str, now: i64) -> Result<bool, StoreError> {
        let r = sqlx::query(self.sql(
            "UPDATE approvals SET status = 'used', used_ms = $1 WHERE id = $2 AND status = 'approved' AND expires_ms > $1",
        ))
        .bind(now)
        .bind(id)
        .execute(&self.pool)
        .await
        .map_err(db("using an approval"))?;
        Ok(r.rows_affected() == 1)
    }

    /// Marks a denied or expired approval as told to a call, so the next identical call asks anew.
    pub async fn close_approval(&self, id: &str, now: i64) -> Result<(), StoreError> {
        sqlx::query(self.sql(
            "UPDATE approvals SET used_ms = $1 WHERE id = $2 AND used_ms IS NULL AND status IN ('denied', 'expired')",
        ))
        .bind(now)
        .bind(id)
        .execute(&self.pool)
        .await
        .map_err(db("closing an approval"))?;
        Ok(())
    }

    /// Expires every pending or approved-but-unused approval past its time, returning those this
    /// statement changed (so each expiry is reported by one process).
    pub async fn expire_approvals(&self, now: i64) -> Result<Vec<crate::approvals::Approval>, StoreError> {
        let rows = sqlx::query(self.sql(
            "UPDATE approvals SET status = 'expired', decided_ms = $1 WHERE status IN ('pending', 'approved') AND expires_ms <= $1 RETURNING *",
        ))
        .bind(now)
        .fetch_all(&self.pool)
        .await
        .map_err(db("expiring approvals"))?;
        rows.iter().map(approval_row).collect()
    }
}

fn approval_row(r: &sqlx::any::AnyRow) -> Result<crate::approvals::Approval, StoreError> {
    let e = db("reading an approval");
    let status: String = r.try_get("status").map_err(&e)?;
    let args: String = r.try_get("args").map_err(&e)?;
    Ok(crate::approvals::Approval {
        id: r.try_get("id").map_err(&e)?,
        agent: r.try_get("agent").map_err(&e)?,
        controller: r.try_get("controller").map_err(&e)?,
        operation: r.try_get("operation").map_err(&e)?,
        target: r.try_get("target").map_err(&e)?,
        grant: r.try_get("grant_id").map_err(&e)?,
        summary: r.try_get("summary").map_err(&e)?,
        args: serde_json::from_str(&args).map_err(|e| StoreError::Corrupt(e.to_string()))?,
        request_id: r.try_get("request_id").map_err(&e)?,
        status: crate::approvals::ApprovalStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown approval status {status}")))?,
        created_ms: r.try_get("created_ms").map_err(&e)?,
        expires_ms: r.try_get("expires_ms").map_err(&e)?,
        decided_by: r.try_get("decided_by").map_err(&e)?,
        decided_ms: r.try_get("decided_ms").map_err(&e)?,
        reason: r.try_get("reason").map_err(&e)?,
        used_ms: r.try_get("used_ms").map_err(&e)?,
        salt: r.try_get("salt").map_err(&e)?,
        call_hash: r.try_get("call_hash").map_err(&e)?,
    })
}

/// A stored build event (see [`crate::events`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRow {
    pub id: i64,
    pub controller: String,
    pub job: String,
    pub number: i64,
    pub queue_id: Option<i64>,
    pub phase: String,
    pub status: Option<String>,
    pub time_ms: i64,
}

/// One counter of the hook receiver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookCount {
    pub kind: String,
    pub count: i64,
    pub last_ms: i64,
}

// Build events and the Notification hook (migration 0008).
impl Store {
    /// Sets (creating or replacing) a controller's hook secret hash. Whether one was replaced.
    pub async fn put_hook_secret(&self, controller: &str, secret_hash: &str) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await.map_err(db("storing the hook secret"))?;
        let gone = sqlx::query(self.sql("DELETE FROM hook_secrets WHERE controller = $1"))
            .bind(controller)
            .execute(&mut *tx)
            .await
            .map_err(db("storing the hook secret"))?;
        sqlx::query(self.sql("INSERT INTO hook_secrets (controller, secret_hash, created_ms) VALUES ($1, $2, $3)"))
            .bind(controller)
            .bind(secret_hash)
            .bind(now_ms())
            .execute(&mut *tx)
            .await
            .map_err(db("storing the hook secret"))?;
        tx.commit().await.map_err(db("storing the hook secret"))?;
        Ok(gone.rows_affected() > 0)
    }

    /// A controller's hook secret hash and when it was made.
    pub async fn hook_secret(&self, controller: &str) -> Result<Option<(String, i64)>, StoreError> {
        let row = sqlx::query(self.sql("SELECT secret_hash, created_ms FROM hook_secrets WHERE controller = $1"))
            .bind(controller)
            .fetch_optional(&self.pool)
            .await
            .map_err(db("reading the hook secret"))?;
        row.map(|r| {
            Ok((
                r.try_get("secret_hash").map_err(db("reading the hook secret"))?,
                r.try_get("created_ms").map_err(db("reading the hook secret"))?,
            ))
        })
        .transpose()
    }

    /// Adds one to a hook counter.
    pub async fn count_hook(&self, controller: &str, kind: &str) -> Result<(), StoreError> {
        sqlx::query(self.sql(
            "INSERT INTO hook_counters (controller, kind, count, last_ms) VALUES ($1, $2, 1, $3) \
             ON CONFLICT (controller, kind) DO UPDATE SET count = hook_counters.count + 1, last_ms = excluded.last_ms",
        ))
        .bind(controller)
        .bind(kind)
        .bind(now_ms())
        .execute(&self.pool)
        .await
        .map_err(db("counting a hook request"))?;
        Ok(())
    }

    /// The hook counters of a controller (`*`: requests naming no controller).
    pub async fn hook_counts(&self, controller: &str) -> Result<Vec<HookCount>, StoreError> {
        let rows =
            sqlx::query(self.sql("SELECT kind, count, last_ms FROM hook_counters WHERE controller = $1 ORDER BY kind"))
                .bind(controller)
                .fetch_all(&self.pool)
                .await
                .map_err(db("reading the hook counters"))?;
        rows.iter()
            .map(|r| {
                Ok(HookCount {
                    kind: r.try_get("kind").map_err(db("reading the hook counters"))?,
                    count: r.try_get("count").map_err(db("reading the hook counters"))?,
                    last_ms: r.try_get("last_ms").map_err(db("reading the hook counters"))?,
                })
            })
            .collect()
    }

    /// Stores an event (its `id` is ignored) and returns its id.
    pub async fn insert_event(&self, e: &EventRow) -> Result<i64, StoreError> {
        let row = sqlx::query(self.sql(
            "INSERT INTO events (controller, job, number, queue_id, phase, status, time_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
        ))
        .bind(&e.controller)
        .bind(&e.job)
        .bind(e.number)
        .bind(e.queue_id)
        .bind(&e.phase)
        .bind(&e.status)
        .bind(e.time_ms)
        .fetch_one(&self.pool)
        .await
        .map_err(db("storing a build event"))?;
        row.try_get("id").map_err(db("storing a build event"))
    }

    /// Events after `id`, oldest first, at most `limit`.
    pub async fn events_after(&self, id: i64, limit: i64) -> Result<Vec<EventRow>, StoreError> {
        let rows = sqlx::query(self.sql(
            "SELECT id, controller, job, number, queue_id, phase, status, time_ms FROM events WHERE id > $1 ORDER BY id LIMIT $2",
        ))
        .bind(id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(db("reading build events"))?;
        rows.iter().map(event_row).collect()
    }

    /// The newest event's id (0 when there is none).
    pub async fn last_event_id(&self) -> Result<i64, StoreError> {
        let row = sqlx::query(self.sql("SELECT COALESCE(MAX(id), 0) AS id FROM events"))
            .fetch_one(&self.pool)
            .await
            .map_err(db("reading build events"))?;
        row.try_get("id").map_err(db("reading build events"))
    }

    /// Removes events older than `before_ms`; how many.
    pub async fn prune_events(&self, before_ms: i64) -> Result<u64, StoreError> {
        let r = sqlx::query(self.sql("DELETE FROM events WHERE time_ms < $1"))
            .bind(before_ms)
            .execute(&self.pool)
            .await
            .map_err(db("pruning build events"))?;
        Ok(r.rows_affected())
    }

    /// PostgreSQL: tells every listening replica that event `id` is stored.
    pub async fn notify_event(&self, channel: &str, id: i64) -> Result<(), StoreError> {
        if self.dialect != Dialect::Postgres {
            return Ok(());
        }
        sqlx::query(self.sql("SELECT pg_notify($1, $2)"))
            .bind(channel)
            .bind(id.to_string())
            .execute(&self.pool)
            .await
            .map_err(db("announcing a build event"))?;
        Ok(())
    }
}

fn event_row(r: &sqlx::any::AnyRow) -> Result<EventRow, StoreError> {
    let f = db("reading a build event");
    Ok(EventRow {
        id: r.try_get("id").map_err(&f)?,
        controller: r.try_get("controller").map_err(&f)?,
        job: r.try_get("job").map_err(&f)?,
        number: r.try_get("number").map_err(&f)?,
        queue_id: r.try_get("queue_id").map_err(&f)?,
        phase: r.try_get("phase").map_err(&f)?,
        status: r.try_get("status").map_err(&f)?,
        time_ms: r.try_get("time_ms").map_err(&f)?,
    })
}

// ---------------------------------------------------------------------------------------------
// rate limits and quotas (migration 0010; see crate::limits)

impl Store {
    /// An agent and its limits, in one query (the call path's cache load).
    pub async fn agent_with_limits(
        &self,
        name: &str,
    ) -> Result<Option<(AgentRow, crate::limits::AgentLimits)>, StoreError> {
        let row = sqlx::query(self.sql(
            "SELECT a.*, l.calls_per_minute, l.triggers_per_hour FROM agents a \
             LEFT JOIN agent_limits l ON l.agent_id = a.id WHERE a.name = $1",
        ))
        .bind(name)
        .fetch_optional(&self.pool)
        .await
        .map_err(db("reading an agent"))?;
        let Some(r) = row else { return Ok(None) };
        Ok(Some((agent_row(&r)?, limits_row(&r)?)))
    }

    /// Every agent's limits, by agent name (agents without limits are left out).
    pub async fn all_agent_limits(&self) -> Result<Vec<(String, crate::limits::AgentLimits)>, StoreError> {
        let rows = sqlx::query(
            "SELECT a.name, l.calls_per_minute, l.triggers_per_hour FROM agent_limits l JOIN agents a ON a.id = l.agent_id ORDER BY a.name",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db("reading agent limits"))?;
        rows.iter().map(|r| Ok((r.try_get("name").map_err(db("reading agent limits"))?, limits_row(r)?))).collect()
    }

    /// Sets an agent's limits (none at all: the row goes).
    pub async fn set_agent_limits(&self, agent_id: i64, limits: &crate::limits::AgentLimits) -> Result<(), StoreError> {
        if limits.is_none() {
            sqlx::query(self.sql("DELETE FROM agent_limits WHERE agent_id = $1"))
                .bind(agent_id)
                .execute(&self.pool)
                .await
                .map_err(db("clearing an agent's limits"))?;
            return Ok(());
        }
        sqlx::query(self.sql(
            "INSERT INTO agent_limits (agent_id, calls_per_minute, triggers_per_hour, updated_ms) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (agent_id) DO UPDATE SET calls_per_minute = excluded.calls_per_minute, \
             triggers_per_hour = excluded.triggers_per_hour, updated_ms = excluded.updated_ms",
        ))
        .bind(agent_id)
        .bind(limits.calls_per_minute.map(i64::from))
        .bind(limits.triggers_per_hour.map(i64::from))
        .bind(now_ms())
        .execute(&self.pool)
        .await
        .map_err(db("storing an agent's limits"))?;
        Ok(())
    }

    /// Takes `n` of `limit` in the window `[start, end)` of `scope`, if that many are left: one
    /// statement (an upsert whose update is conditional on `used + n <= limit`), so processes and
    /// replicas racing for the last ones never take more than the limit together. `false`: not
    /// enough left (nothing taken). `n` must not exceed `limit`.
    pub async fn reserve_limit(
        &self,
        scope: &str,
        start: i64,
        end: i64,
        n: i64,
        limit: i64,
    ) -> Result<bool, StoreError> {
        let r = sqlx::query(self.sql(
            "INSERT INTO limit_counters (scope, window_start, window_end, used) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (scope, window_start) DO UPDATE SET used = limit_counters.used + excluded.used \
             WHERE limit_counters.used + excluded.used <= $5",
        ))
        .bind(scope)
        .bind(start)
        .bind(end)
        .bind(n)
        .bind(limit)
        .execute(&self.pool)
        .await
        .map_err(db("counting a call against a limit"))?;
        Ok(r.rows_affected() == 1)
    }

    /// Gives back `n` taken by [`Store::reserve_limit`] (a later limit refused the call).
    pub async fn release_limit(&self, scope: &str, start: i64, n: i64) -> Result<(), StoreError> {
        sqlx::query(
            self.sql(
                "UPDATE limit_counters SET used = used - $3 WHERE scope = $1 AND window_start = $2 AND used >= $3",
            ),
        )
        .bind(scope)
        .bind(start)
        .bind(n)
        .execute(&self.pool)
        .await
        .map_err(db("giving back a call counted against a limit"))?;
        Ok(())
    }

    /// How much of `scope`'s window starting at `start` is used (0 when nothing is).
    pub async fn limit_used(&self, scope: &str, start: i64) -> Result<i64, StoreError> {
        let row = sqlx::query(self.sql("SELECT used FROM limit_counters WHERE scope = $1 AND window_start = $2"))
            .bind(scope)
            .bind(start)
            .fetch_optional(&self.pool)
            .await
            .map_err(db("reading a limit's counter"))?;
        row.map(|r| r.try_get("used").map_err(db("reading a limit's counter")))
            .transpose()
            .map(Option::unwrap_or_default)
    }

    /// Removes the counters of windows that ended before `now`; how many.
    pub async fn prune_limit_counters(&self, now: i64) -> Result<u64, StoreError> {
        let r = sqlx::query(self.sql("DELETE FROM limit_counters WHERE window_end <= $1"))
            .bind(now)
            .execute(&self.pool)
            .await
            .map_err(db("pruning limit counters"))?;
        Ok(r.rows_affected())
    }

    /// How many counter rows exist (what a burst of calls wrote; tests and diagnostics).
    pub async fn limit_counter_rows(&self) -> Result<i64, StoreError> {
        sqlx::query("SELECT COUNT(*) AS n FROM limit_counters")
            .fetch_one(&self.pool)
            .await
            .map_err(db("counting limit counters"))?
            .try_get("n")
            .map_err(db("counting limit counters"))
    }
}

fn limits_row(r: &sqlx::any::AnyRow) -> Result<crate::limits::AgentLimits, StoreError> {
    let e = db("reading an agent's limits");
    let n = |v: Option<i64>| v.map(|n| u32::try_from(n).unwrap_or(u32::MAX));
    Ok(crate::limits::AgentLimits {
        calls_per_minute: n(r.try_get("calls_per_minute").map_err(&e)?),
        triggers_per_hour: n(r.try_get("triggers_per_hour").map_err(&e)?),
    })
}
