//! Group commit of audit appends: every [`Gate::record`](crate::Gate::record) of a process queues
//! its entry to one writer task, which takes whatever is queued (up to [`MAX_BATCH`]), seals it in
//! queue order and commits it in one transaction under the store's append lock
//! ([`Store::append_audit_batch`]: one `BEGIN IMMEDIATE` on SQLite, one multi-row INSERT on
//! PostgreSQL), then writes the batch to the audit device (if any) and only then answers each
//! caller with its own record or the error. Under load one transaction (and one fsync) serves many
//! calls; alone, a record is committed at once (the writer never waits for company).
//!
//! - The transaction lives in the writer task, not in a caller's future: a caller that goes away
//!   cannot leave it open, nor take other callers' records down with it. A caller that is gone
//!   before its batch begins is not written (as before group commit, a dropped append wrote
//!   nothing); once its batch has begun, it is written — so a caller that gave up waiting
//!   ([`RECORD_TIMEOUT`]) may find its record in the log: more evidence, never less.
//! - Several processes on one SQLite file or one PostgreSQL still take the store's append lock per
//!   transaction, so the chain never forks.
//! - Bounded: a batch gets [`CALL_TIMEOUT`] (on SQLite, the lock wait bounds it); a caller waits at
//!   most [`RECORD_TIMEOUT`] for its answer. When the store is unavailable, the batch's callers and
//!   everything queued behind it get the error at once instead of each waiting for a bound of its
//!   own.
//! - On SQLite the writer is a thread of its own with a connection to the file
//!   ([`crate::audit_sqlite`]) that calls SQLite directly: a queued record costs one hand-off to
//!   that thread and one back, and SQLite's own work. On PostgreSQL it is a task on the runtime
//!   using the pool ([`Store::append_audit_batch`]). If the SQLite connection cannot be opened, the
//!   task is used there too.
//! - **A caller alone appends in its own thread** (SQLite, no audit device): when nothing is
//!   queued, the writer's connection is free, the database's write lock is free at once and the
//!   record is no intent, the caller commits its one record itself, saving both hand-offs — the
//!   largest part of a lone read's audit cost. It never waits on a runtime thread: a taken
//!   connection, a queue, a held lock (another process), an intent (`synchronous=FULL`, an
//!   fsync), a due key-use flush or a closed store send it to the queue as before. The WAL is
//!   checkpointed by the writer's thread only, never in a caller's commit.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::audit::{AuditKeys, Entry, Record};
use crate::audit_device::AuditDevice;
use crate::audit_sqlite::{AppendNow, SqliteAppender};
use crate::auth_cache::{KeyUse, WRITER_FLUSH_BOUND};
use crate::store::{CALL_TIMEOUT, Store, StoreError, timed_out};

/// The most records one transaction takes.
pub const MAX_BATCH: usize = 256;
/// Entries that may wait in the queue; further callers wait for room (backpressure).
const QUEUE: usize = 4096;
/// The longest a caller waits for its record to be written (its batch, and the device).
pub const RECORD_TIMEOUT: Duration = Duration::from_secs(10);

/// Where a caller waits for its record.
type Reply = oneshot::Sender<Result<Record, StoreError>>;

struct Job {
    keys: Arc<AuditKeys>,
    entry: Entry,
    reply: Reply,
}

/// What the SQLite writer's thread is asked to do.
#[allow(clippy::large_enum_variant)] // Boxing would cost every queued record an allocation.
enum Work {
    Append(Job),
    /// Appends made in callers' threads filled the WAL: checkpoint it.
    Checkpoint,
}

/// The queue to the writer task (which ends when this is dropped).
pub(crate) struct AuditWriter {
    queue: mpsc::Sender<Work>,
    batches: Arc<AtomicU64>,
    /// SQLite without an audit device: the writer's connection, for a caller alone to append
    /// with in its own thread.
    shared: Option<SharedAppender>,
}

/// The SQLite writer's connection as callers share it with the writer's thread.
struct SharedAppender {
    appender: Arc<std::sync::Mutex<SqliteAppender>>,
    store: Store,
    key_use: Arc<KeyUse>,
}

fn stopped() -> StoreError {
    StoreError::Unavailable { doing: "appending an audit record".into(), detail: "the audit writer stopped".into() }
}

impl AuditWriter {
    /// Starts the writer: a thread on SQLite, a task on PostgreSQL (needs a Tokio runtime).
    pub(crate) fn start(store: Store, device: Option<Arc<AuditDevice>>, key_use: Arc<KeyUse>) -> AuditWriter {
        let batches = Arc::new(AtomicU64::new(0));
        let (queue, rx) = mpsc::channel(QUEUE);
        if let Some(opened) = store.sqlite_path().map(SqliteAppender::open) {
            match opened {
                Ok(appender) => {
                    let appender = Arc::new(std::sync::Mutex::new(appender));
                    // With a device, every record also goes to the device in chain order, which
                    // only the writer's thread keeps.
                    let shared = device.is_none().then(|| SharedAppender {
                        appender: appender.clone(),
                        store: store.clone(),
                        key_use: key_use.clone(),
                    });
                    let writer = SqliteWriter {
                        appender,
                        store: store.clone(),
                        device: device.clone(),
                        key_use: key_use.clone(),
                        runtime: tokio::runtime::Handle::current(),
                        batches: batches.clone(),
                    };
                    match std::thread::Builder::new().name("jgate-audit".into()).spawn(move || writer.run(rx)) {
                        Ok(_) => return AuditWriter { queue, batches, shared },
                        Err(e) => {
                            tracing::warn!(error = %e, "cannot start the audit writer's thread; appending through the pool");
                        }
                    }
                    // The queue went with the thread that could not start: the task gets a new one.
                    let (queue, rx) = mpsc::channel(QUEUE);
                    tokio::spawn(run(store, device, key_use, rx, batches.clone()));
                    return AuditWriter { queue, batches, shared: None };
                }
                Err(e) => tracing::warn!(error = %e, "cannot open the audit connection; appending through the pool"),
            }
        }
        tokio::spawn(run(store, device, key_use, rx, batches.clone()));
        AuditWriter { queue, batches, shared: None }
    }

    /// Appends one record, sealed with `keys`; returns once the database and the device hold it.
    pub(crate) async fn append(&self, keys: Arc<AuditKeys>, entry: Entry) -> Result<Record, StoreError> {
        let entry = match self.append_alone(&keys, entry) {
            AppendNow::Done(done) => return done,
            AppendNow::Later(entry) => entry,
        };
        let (reply, answer) = oneshot::channel();
        let work = async {
            self.queue.send(Work::Append(Job { keys, entry, reply })).await.map_err(|_| stopped())?;
            answer.await.map_err(|_| stopped())?
        };
        tokio::time::timeout(RECORD_TIMEOUT, work)
            .await
            .map_err(|_| timed_out("appending an audit record", RECORD_TIMEOUT))?
    }

    /// The record appended in this thread when the caller is alone (see the module doc);
    /// otherwise the entry back, for the queue.
    fn append_alone(&self, keys: &AuditKeys, entry: Entry) -> AppendNow {
        let Some(shared) = &self.shared else { return AppendNow::Later(entry) };
        // Not past queued records (those the writer has taken wait for the connection too, and
        // the chain is ordered by commit); a due flush and a closed store are the writer's.
        if self.queue.capacity() < self.queue.max_capacity() || shared.key_use.due() || shared.store.is_closed() {
            return AppendNow::Later(entry);
        }
        let Ok(mut appender) = shared.appender.try_lock() else { return AppendNow::Later(entry) };
        let appended = appender.append_now(keys, entry);
        let checkpoint = appender.checkpoint_due();
        drop(appender);
        if let AppendNow::Done(_) = &appended {
            self.batches.fetch_add(1, Ordering::Relaxed);
            if checkpoint {
                // Full queue: the thread checkpoints after its next batch anyway.
                let _ = self.queue.try_send(Work::Checkpoint);
            }
        }
        appended
    }

    /// Transactions committed or attempted so far.
    pub(crate) fn batches(&self) -> u64 {
        self.batches.load(Ordering::Relaxed)
    }
}

/// One batch taken off the queue: the callers still waiting, in queue order.
struct Batch {
    keys: Vec<Arc<AuditKeys>>,
    entries: Vec<Entry>,
    replies: Vec<Reply>,
}

impl Batch {
    /// The jobs whose callers are still there (a caller gone before its batch begins is not
    /// written); `None` if none is.
    fn of(jobs: &mut Vec<Job>) -> Option<Batch> {
        jobs.retain(|j| !j.reply.is_closed());
        if jobs.is_empty() {
            return None;
        }
        let mut b = Batch {
            keys: Vec::with_capacity(jobs.len()),
            entries: Vec::with_capacity(jobs.len()),
            replies: Vec::with_capacity(jobs.len()),
        };
        for job in jobs.drain(..) {
            b.keys.push(job.keys);
            b.entries.push(job.entry);
            b.replies.push(job.reply);
        }
        Some(b)
    }

    /// The entries with the keys that seal them, and where the answers go.
    fn split(&mut self) -> (Vec<(&AuditKeys, Entry)>, Vec<Reply>) {
        let entries = std::mem::take(&mut self.entries);
        let replies = std::mem::take(&mut self.replies);
        (self.keys.iter().map(|k| &**k).zip(entries).collect(), replies)
    }
}

/// Answers a failed batch's callers; when the store is unavailable, also everything queued
/// meanwhile (it would meet the same store).
fn answer_failure(e: &StoreError, replies: Vec<Reply>, rx: &mut mpsc::Receiver<Work>) {
    for reply in replies {
        let _ = reply.send(Err(e.clone()));
    }
    if matches!(e, StoreError::Unavailable { .. }) {
        while let Ok(work) = rx.try_recv() {
            if let Work::Append(job) = work {
                let _ = job.reply.send(Err(e.clone()));
            }
        }
    }
}

/// Takes the appends out of `work` into `jobs` (a checkpoint request is the SQLite thread's
/// business, which checkpoints after every batch when due).
fn appends(work: &mut Vec<Work>, jobs: &mut Vec<Job>) {
    jobs.extend(work.drain(..).filter_map(|w| match w {
        Work::Append(job) => Some(job),
        Work::Checkpoint => None,
    }));
}

/// The writer on PostgreSQL: a task appending through the pool.
async fn run(
    store: Store,
    device: Option<Arc<AuditDevice>>,
    key_use: Arc<KeyUse>,
    mut rx: mpsc::Receiver<Work>,
    batches: Arc<AtomicU64>,
) {
    let mut work = Vec::with_capacity(MAX_BATCH);
    let mut jobs = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut work, MAX_BATCH).await > 0 {
        appends(&mut work, &mut jobs);
        let Some(mut batch) = Batch::of(&mut jobs) else { continue };
        let (items, replies) = batch.split();
        let result = tokio::time::timeout(CALL_TIMEOUT, store.append_audit_batch(items))
            .await
            .unwrap_or_else(|_| Err(timed_out("appending audit records", CALL_TIMEOUT)));
        batches.fetch_add(1, Ordering::Relaxed);
        match result {
            Ok(records) => {
                let outcomes = match device.clone() {
                    Some(d) => {
                        let name = d.describe();
                        let n = records.len();
                        tokio::task::spawn_blocking(move || to_device(&d, records)).await.unwrap_or_else(|e| {
                            vec![Err(StoreError::AuditDevice { path: name, detail: e.to_string() }); n]
                        })
                    }
                    None => records.into_iter().map(Ok).collect(),
                };
                if key_use.due() {
                    // Before answering: a one-shot process may exit as soon as it has its answer.
                    // Too slow now is no failure: the background flusher retries.
                    let _ = key_use.flush(&store, WRITER_FLUSH_BOUND).await;
                }
                for (reply, outcome) in replies.into_iter().zip(outcomes) {
                    let _ = reply.send(outcome);
                }
            }
            Err(e) => answer_failure(&e, replies, &mut rx),
        }
    }
}

/// The writer on SQLite: a thread with a connection of its own.
struct SqliteWriter {
    appender: Arc<std::sync::Mutex<SqliteAppender>>,
    /// The pool: for the key-use flush (run on the runtime), and whether the store was closed.
    store: Store,
    device: Option<Arc<AuditDevice>>,
    key_use: Arc<KeyUse>,
    runtime: tokio::runtime::Handle,
    batches: Arc<AtomicU64>,
}

impl SqliteWriter {
    /// Takes whatever is queued (waiting for the first), appends it, answers; ends when every
    /// sender is gone (the gate was dropped).
    fn run(self, mut rx: mpsc::Receiver<Work>) {
        let mut work = Vec::with_capacity(MAX_BATCH);
        let mut jobs = Vec::with_capacity(MAX_BATCH);
        while let Some(first) = rx.blocking_recv() {
            work.push(first);
            while work.len() < MAX_BATCH
                && let Ok(more) = rx.try_recv()
            {
                work.push(more);
            }
            appends(&mut work, &mut jobs);
            // A poisoned lock only means a caller panicked while holding it; the connection
            // rolled back whatever that caller had begun.
            let mut appender = self.appender.lock().unwrap_or_else(|p| p.into_inner());
            let Some(mut batch) = Batch::of(&mut jobs) else {
                appender.checkpoint_if_due();
                continue;
            };
            let (items, replies) = batch.split();
            let result = if self.store.is_closed() {
                // The store was closed: its writer's connection answers as the pool does.
                Err(StoreError::Unavailable {
                    doing: "appending audit records".into(),
                    detail: "the store was closed".into(),
                })
            } else {
                appender.append(items)
            };
            self.batches.fetch_add(1, Ordering::Relaxed);
            match result {
                Ok(records) => {
                    let outcomes = match &self.device {
                        Some(d) => to_device(d, records),
                        None => records.into_iter().map(Ok).collect(),
                    };
                    if self.key_use.due() {
                        self.flush_key_use();
                    }
                    for (reply, outcome) in replies.into_iter().zip(outcomes) {
                        let _ = reply.send(outcome);
                    }
                    // After the answers: the callers need not wait for it.
                    appender.checkpoint_if_due();
                }
                Err(e) => {
                    tracing::debug!(error = %e, db = appender.path(), "an audit batch failed");
                    answer_failure(&e, replies, &mut rx);
                }
            }
        }
    }

    /// The key-use flush that is due, on the runtime (it uses the pool), before answering: a
    /// one-shot process may exit as soon as it has its answer. Too slow now is no failure: the
    /// background flusher retries.
    fn flush_key_use(&self) {
        let (done, wait) = std::sync::mpsc::channel();
        let (store, key_use) = (self.store.clone(), self.key_use.clone());
        self.runtime.spawn(async move {
            let _ = key_use.flush(&store, WRITER_FLUSH_BOUND).await;
            let _ = done.send(());
        });
        let _ = wait.recv_timeout(WRITER_FLUSH_BOUND * 2);
    }
}

/// Writes committed records to the device, in chain order; each record's own outcome.
fn to_device(device: &AuditDevice, records: Vec<Record>) -> Vec<Result<Record, StoreError>> {
    let outcomes = device.append_batch(&records);
    records.into_iter().zip(outcomes).map(|(r, o)| o.map(|()| r)).collect()
}
