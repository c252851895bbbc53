//! SQLite's audit append, on a connection of its own driven by the audit writer's thread
//! ([`crate::audit_writer`]).
//!
//! Why not the pool: sqlx runs each SQLite connection on a worker thread and every query is a
//! round trip to it (two thread wake-ups, the `Any` driver's conversions, the statement looked up
//! again), which made an append cost several times what SQLite itself spends on it — and every
//! read waits for its audit record. Here the writer's thread owns the connection and calls SQLite
//! directly, with the statements prepared once.
//!
//! The append is the pool's, statement for statement: `BEGIN IMMEDIATE` (the lock every process on
//! the file takes to append, so the chain never forks; waited for up to the store's
//! [`LOCK_WAIT`]), the sealed head and the table's last row read and the head checked
//! ([`crate::store::link_after`]; a head this connection committed itself and finds unchanged,
//! with the row it names still last, is followed without checking its MAC again), the batch
//! sealed and inserted, a checkpoint sealed at every [`audit::CHECKPOINT_EVERY`]th record, the
//! head moved, commit. A failed statement — or a panic — rolls the transaction back before the
//! error is returned ([`OpenTransaction`]). Durability per batch as the store's module doc
//! says: `synchronous=FULL` when the batch holds an intent record, `NORMAL` otherwise.

use crate::audit::{self, AuditKeys, Entry, Record, SealedCheckpoint};
use crate::store::{LOCK_WAIT, META_AUDIT_HEAD, StoreError, link_after, phase_str, seal_batch};

const LINK: &str = "SELECT (SELECT value FROM jgate_meta WHERE name = ?1), \
     (SELECT seq FROM audit ORDER BY seq DESC LIMIT 1), \
     (SELECT hash FROM audit ORDER BY seq DESC LIMIT 1)";
const INSERT: &str = "INSERT INTO audit (seq, time_ms, agent, controller, operation, phase, allowed, record, prev_hash, hash) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)";
const CHECKPOINT: &str = "INSERT INTO audit_checkpoints (seq, hash, key_version, mac, created_ms) \
     VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (seq) DO NOTHING";
const BEGIN: &str = "BEGIN IMMEDIATE";
const COMMIT: &str = "COMMIT";
const HEAD: &str = "INSERT INTO jgate_meta (name, value) VALUES (?1, ?2) \
     ON CONFLICT (name) DO UPDATE SET value = excluded.value";

/// A connection that appends audit records to one SQLite file.
pub(crate) struct SqliteAppender {
    conn: rusqlite::Connection,
    path: String,
    /// Whether the connection is set to `synchronous=FULL` (else `NORMAL`).
    full: bool,
    /// Commits since the last WAL checkpoint.
    commits_unchecked: u32,
    /// The head this connection committed last, with the record it names.
    committed: Option<CommittedHead>,
}

/// A head as this connection wrote it: while the stored head's text and the table's last row are
/// still exactly these, the next append follows them without parsing and checking the head's MAC
/// again (it was sealed here; a rotation or reseal rewrites the text, which takes the full check).
struct CommittedHead {
    text: String,
    seq: i64,
    hash: String,
}

/// Commits between WAL checkpoints: a commit adds a few pages to the WAL, so this keeps it near
/// SQLite's own default of a checkpoint per 1,000 pages.
const CHECKPOINT_AFTER_COMMITS: u32 = 250;

/// What [`SqliteAppender::append_now`] did.
pub(crate) enum AppendNow {
    /// The record was appended (or the append failed) in this call.
    Done(Result<Record, StoreError>),
    /// Nothing was written (another connection or process held the database's write lock, or
    /// the record is an intent): the entry is handed back, for the writer's thread to append
    /// with the usual lock wait and durability.
    Later(Entry),
}

impl SqliteAppender {
    /// Opens a connection to the store's file (which [`crate::Store::open`] created, migrated and
    /// put in WAL mode).
    pub(crate) fn open(path: &str) -> Result<SqliteAppender, StoreError> {
        let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = rusqlite::Connection::open_with_flags(path, flags).map_err(err("opening the audit connection"))?;
        conn.busy_timeout(LOCK_WAIT).map_err(err("setting the lock wait"))?;
        // No checkpoint at commit: a commit may run on a caller's runtime thread
        // ([`SqliteAppender::append_now`]); the writer's thread checkpoints instead
        // ([`SqliteAppender::checkpoint_if_due`]).
        conn.execute_batch("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA wal_autocheckpoint=0")
            .map_err(err("setting up the audit connection"))?;
        Ok(SqliteAppender { conn, path: path.to_string(), full: false, commits_unchecked: 0, committed: None })
    }

    /// The file this appender writes.
    pub(crate) fn path(&self) -> &str {
        &self.path
    }

    /// Appends `items` in one transaction, chained after the stored head in the order given; all
    /// are written or none.
    pub(crate) fn append(&mut self, items: Vec<(&AuditKeys, Entry)>) -> Result<Vec<Record>, StoreError> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        // Records of calls about to change something are on disk before the change is made.
        let durable = items.iter().any(|(_, e)| e.phase == audit::Phase::Intent);
        self.set_durability(durable)?;
        self.run(BEGIN).map_err(err("locking the database"))?;
        self.write_and_commit(items)
    }

    /// Appends one record now, in the caller's thread, if the database's write lock is free:
    /// never waits for it (a runtime thread must not sleep on a lock). Only for records that
    /// need no `synchronous=FULL` commit (not intents), so the commit is no fsync either.
    pub(crate) fn append_now(&mut self, keys: &AuditKeys, entry: Entry) -> AppendNow {
        if entry.phase == audit::Phase::Intent {
            return AppendNow::Later(entry);
        }
        if let Err(e) = self.set_durability(false) {
            return AppendNow::Done(Err(e));
        }
        if let Err(e) = self.conn.busy_timeout(std::time::Duration::ZERO) {
            return AppendNow::Done(Err(err("setting the lock wait")(e)));
        }
        let refused = match self.run(BEGIN) {
            Ok(()) => {
                if let Err(e) = self.conn.busy_timeout(LOCK_WAIT) {
                    roll_back(&self.conn, &self.path);
                    return AppendNow::Done(Err(err("setting the lock wait")(e)));
                }
                let written = self.write_and_commit(vec![(keys, entry)]);
                return AppendNow::Done(written.and_then(|mut records| {
                    records.pop().ok_or_else(|| StoreError::Corrupt("an audit append wrote no record".into()))
                }));
            }
            Err(e) => e,
        };
        // Nothing began: the connection gets its lock wait back before anything else.
        if let Err(e) = self.conn.busy_timeout(LOCK_WAIT) {
            return AppendNow::Done(Err(err("setting the lock wait")(e)));
        }
        match refused.sqlite_error_code() {
            Some(rusqlite::ErrorCode::DatabaseBusy) => AppendNow::Later(entry),
            _ => AppendNow::Done(Err(err("locking the database")(refused))),
        }
    }

    /// Whether enough commits went into the WAL since the last checkpoint.
    pub(crate) fn checkpoint_due(&self) -> bool {
        self.commits_unchecked >= CHECKPOINT_AFTER_COMMITS
    }

    /// Copies the WAL back into the database when due (a passive checkpoint: it waits for no
    /// reader, and what readers still use is copied next time). Failing is no error of the
    /// append: the next one tries again.
    pub(crate) fn checkpoint_if_due(&mut self) {
        if !self.checkpoint_due() {
            return;
        }
        self.commits_unchecked = 0;
        if let Err(e) = self.conn.execute_batch("PRAGMA wal_checkpoint(PASSIVE)") {
            tracing::debug!(error = %e, db = self.path, "an audit WAL checkpoint failed");
        }
    }

    /// Sets the commit's durability (`synchronous` can only change outside a transaction).
    fn set_durability(&mut self, full: bool) -> Result<(), StoreError> {
        if full != self.full {
            let pragma = if full { "PRAGMA synchronous=FULL" } else { "PRAGMA synchronous=NORMAL" };
            self.conn.execute_batch(pragma).map_err(err("setting the commit's durability"))?;
            self.full = full;
        }
        Ok(())
    }

    /// Runs one statement without rows, parsed once per connection (`BEGIN IMMEDIATE` and
    /// `COMMIT` run on every append: parsing them each time was a measurable part of it).
    fn run(&self, sql: &str) -> rusqlite::Result<()> {
        self.conn.prepare_cached(sql)?.execute([]).map(|_| ())
    }

    /// The append inside the transaction just begun: linked, sealed, inserted, the head moved,
    /// committed; rolled back if any step fails.
    fn write_and_commit(&mut self, items: Vec<(&AuditKeys, Entry)>) -> Result<Vec<Record>, StoreError> {
        self.commits_unchecked = self.commits_unchecked.saturating_add(1);
        let written = {
            let _open = OpenTransaction { conn: &self.conn, path: &self.path };
            self.write(items).and_then(|done| self.run(COMMIT).map_err(err("committing")).map(|()| done))
        };
        let (records, head) = written?;
        self.committed = head;
        Ok(records)
    }

    /// The append's statements in the open transaction; the records and the head they leave.
    fn write(&self, items: Vec<(&AuditKeys, Entry)>) -> Result<(Vec<Record>, Option<CommittedHead>), StoreError> {
        let Some(&(first_keys, _)) = items.first() else {
            return Ok((Vec::new(), None));
        };
        let doing = "reading the audit chain's head";
        let (head, last_seq, last_hash) = self
            .conn
            .prepare_cached(LINK)
            .and_then(|mut s| {
                s.query_row([META_AUDIT_HEAD], |r| {
                    Ok((r.get::<_, Option<String>>(0)?, r.get::<_, Option<i64>>(1)?, r.get::<_, Option<String>>(2)?))
                })
            })
            .map_err(err(doing))?;
        let (seq, prev) = match &self.committed {
            Some(c)
                if head.as_deref() == Some(c.text.as_str())
                    && last_seq == Some(c.seq)
                    && last_hash.as_deref() == Some(c.hash.as_str()) =>
            {
                (c.seq + 1, c.hash.clone())
            }
            _ => link_after(head, last_seq.zip(last_hash), first_keys)?,
        };
        let (sealed, head) = seal_batch(items, seq, prev)?;
        let doing = "appending audit records";
        let mut insert = self.conn.prepare_cached(INSERT).map_err(err(doing))?;
        for (_, r) in &sealed {
            let json = serde_json::to_string(r).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            insert
                .execute(rusqlite::params![
                    r.seq,
                    r.entry.time_ms,
                    r.entry.agent,
                    r.entry.controller,
                    r.entry.operation,
                    phase_str(r),
                    i64::from(r.entry.allowed),
                    json,
                    r.prev_hash,
                    r.hash,
                ])
                .map_err(err(doing))?;
        }
        let mut checkpoint = self.conn.prepare_cached(CHECKPOINT).map_err(err("sealing an audit checkpoint"))?;
        for (keys, r) in sealed.iter().filter(|(_, r)| r.seq % audit::CHECKPOINT_EVERY == 0) {
            let cp = SealedCheckpoint::seal(keys, r);
            checkpoint
                .execute(rusqlite::params![cp.seq, cp.hash, i64::from(cp.key_version), cp.mac, crate::store::now_ms()])
                .map_err(err("sealing an audit checkpoint"))?;
        }
        self.conn
            .prepare_cached(HEAD)
            .and_then(|mut s| s.execute([META_AUDIT_HEAD, head.as_str()]))
            .map_err(err("moving the audit chain's head"))?;
        let committed =
            sealed.last().map(|(_, r)| CommittedHead { text: head.clone(), seq: r.seq, hash: r.hash.clone() });
        Ok((sealed.into_iter().map(|(_, r)| r).collect(), committed))
    }
}

/// The transaction an append began: rolled back when this is dropped with it still open (a step
/// failed, or a panic unwound through the append), so the connection never keeps the database's
/// write lock; after a commit dropping it does nothing.
struct OpenTransaction<'c> {
    conn: &'c rusqlite::Connection,
    path: &'c str,
}

impl Drop for OpenTransaction<'_> {
    fn drop(&mut self) {
        roll_back(self.conn, self.path);
    }
}

/// Ends `conn`'s open transaction, if any, without writing anything. A rollback that fails leaves
/// nothing to undo either (SQLite rolls back a transaction it could not continue).
fn roll_back(conn: &rusqlite::Connection, path: &str) {
    if !conn.is_autocommit()
        && let Err(e) = conn.execute_batch("ROLLBACK")
    {
        tracing::debug!(error = %e, db = path, "rolling back an audit append failed");
    }
}

/// A SQLite error as the store reports it: busy, locked, read-only, I/O, full or unopenable mean
/// the store cannot answer now ([`StoreError::Unavailable`]), as on the pool.
fn err(doing: &str) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
    move |e| {
        let (doing, detail) = (doing.to_string(), e.to_string());
        let unavailable = matches!(
            e.sqlite_error_code(),
            Some(
                rusqlite::ErrorCode::DatabaseBusy
                    | rusqlite::ErrorCode::DatabaseLocked
                    | rusqlite::ErrorCode::ReadOnly
                    | rusqlite::ErrorCode::SystemIoFailure
                    | rusqlite::ErrorCode::DiskFull
                    | rusqlite::ErrorCode::CannotOpen
            )
        );
        if unavailable { StoreError::Unavailable { doing, detail } } else { StoreError::Db { doing, detail } }
    }
}
