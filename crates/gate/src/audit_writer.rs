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
//! - On SQLite the writer is a thread of its own that owns a connection to the file
//!   ([`crate::audit_sqlite`]) and calls SQLite directly: a caller's record costs one hand-off to
//!   that thread and one back, and SQLite's own work. On PostgreSQL it is a task on the runtime
//!   using the pool ([`Store::append_audit_batch`]). If the SQLite connection cannot be opened, the
//!   task is used there too.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::audit::{AuditKeys, Entry, Record};
use crate::audit_device::AuditDevice;
use crate::audit_sqlite::SqliteAppender;
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

/// The queue to the writer task (which ends when this is dropped).
pub(crate) struct AuditWriter {
    queue: mpsc::Sender<Job>,
    batches: Arc<AtomicU64>,
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
                    let writer = SqliteWriter {
                        appender,
                        store: store.clone(),
                        device: device.clone(),
                        key_use: key_use.clone(),
                        runtime: tokio::runtime::Handle::current(),
                        batches: batches.clone(),
                    };
                    match std::thread::Builder::new().name("jgate-audit".into()).spawn(move || writer.run(rx)) {
                        Ok(_) => return AuditWriter { queue, batches },
                        Err(e) => {
                            tracing::warn!(error = %e, "cannot start the audit writer's thread; appending through the pool");
                        }
                    }
                    // The queue went with the thread that could not start: the task gets a new one.
                    let (queue, rx) = mpsc::channel(QUEUE);
                    tokio::spawn(run(store, device, key_use, rx, batches.clone()));
                    return AuditWriter { queue, batches };
                }
                Err(e) => tracing::warn!(error = %e, "cannot open the audit connection; appending through the pool"),
            }
        }
        tokio::spawn(run(store, device, key_use, rx, batches.clone()));
        AuditWriter { queue, batches }
    }

    /// Appends one record, sealed with `keys`; returns once the database and the device hold it.
    pub(crate) async fn append(&self, keys: Arc<AuditKeys>, entry: Entry) -> Result<Record, StoreError> {
        let (reply, answer) = oneshot::channel();
        let work = async {
            self.queue.send(Job { keys, entry, reply }).await.map_err(|_| stopped())?;
            answer.await.map_err(|_| stopped())?
        };
        tokio::time::timeout(RECORD_TIMEOUT, work)
            .await
            .map_err(|_| timed_out("appending an audit record", RECORD_TIMEOUT))?
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
fn answer_failure(e: &StoreError, replies: Vec<Reply>, rx: &mut mpsc::Receiver<Job>) {
    for reply in replies {
        let _ = reply.send(Err(e.clone()));
    }
    if matches!(e, StoreError::Unavailable { .. }) {
        while let Ok(job) = rx.try_recv() {
            let _ = job.reply.send(Err(e.clone()));
        }
    }
}

/// The writer on PostgreSQL: a task appending through the pool.
async fn run(
    store: Store,
    device: Option<Arc<AuditDevice>>,
    key_use: Arc<KeyUse>,
    mut rx: mpsc::Receiver<Job>,
    batches: Arc<AtomicU64>,
) {
    let mut jobs = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut jobs, MAX_BATCH).await > 0 {
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
    appender: SqliteAppender,
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
    fn run(mut self, mut rx: mpsc::Receiver<Job>) {
        let mut jobs = Vec::with_capacity(MAX_BATCH);
        while let Some(first) = rx.blocking_recv() {
            jobs.push(first);
            while jobs.len() < MAX_BATCH
                && let Ok(job) = rx.try_recv()
            {
                jobs.push(job);
            }
            let Some(mut batch) = Batch::of(&mut jobs) else { continue };
            let (items, replies) = batch.split();
            let result = if self.store.is_closed() {
                // The store was closed: its writer's connection answers as the pool does.
                Err(StoreError::Unavailable {
                    doing: "appending audit records".into(),
                    detail: "the store was closed".into(),
                })
            } else {
                self.appender.append(items)
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
                }
                Err(e) => {
                    tracing::debug!(error = %e, db = self.appender.path(), "an audit batch failed");
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
