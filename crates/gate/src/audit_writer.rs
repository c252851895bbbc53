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
//! - Bounded: a batch gets [`CALL_TIMEOUT`]; a caller waits at most [`RECORD_TIMEOUT`] for its
//!   answer. When the store is unavailable, the batch's callers and everything queued behind it
//!   get the error at once instead of each waiting for a bound of its own.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::audit::{AuditKeys, Entry, Record};
use crate::audit_device::AuditDevice;
use crate::auth_cache::{KeyUse, WRITER_FLUSH_BOUND};
use crate::store::{CALL_TIMEOUT, Store, StoreError, timed_out};

/// The most records one transaction takes.
pub const MAX_BATCH: usize = 256;
/// Entries that may wait in the queue; further callers wait for room (backpressure).
const QUEUE: usize = 4096;
/// The longest a caller waits for its record to be written (its batch, and the device).
pub const RECORD_TIMEOUT: Duration = Duration::from_secs(10);

struct Job {
    keys: Arc<AuditKeys>,
    entry: Entry,
    reply: oneshot::Sender<Result<Record, StoreError>>,
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
    /// Starts the writer task (needs a Tokio runtime).
    pub(crate) fn start(store: Store, device: Option<Arc<AuditDevice>>, key_use: Arc<KeyUse>) -> AuditWriter {
        let (queue, rx) = mpsc::channel(QUEUE);
        let batches = Arc::new(AtomicU64::new(0));
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

async fn run(
    store: Store,
    device: Option<Arc<AuditDevice>>,
    key_use: Arc<KeyUse>,
    mut rx: mpsc::Receiver<Job>,
    batches: Arc<AtomicU64>,
) {
    let mut jobs = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut jobs, MAX_BATCH).await > 0 {
        jobs.retain(|j| !j.reply.is_closed());
        if jobs.is_empty() {
            continue;
        }
        let mut keys = Vec::with_capacity(jobs.len());
        let mut entries = Vec::with_capacity(jobs.len());
        let mut replies = Vec::with_capacity(jobs.len());
        for job in jobs.drain(..) {
            keys.push(job.keys);
            entries.push(job.entry);
            replies.push(job.reply);
        }
        let items = keys.iter().map(|k| &**k).zip(entries).collect();
        let result = tokio::time::timeout(CALL_TIMEOUT, store.append_audit_batch(items))
            .await
            .unwrap_or_else(|_| Err(timed_out("appending audit records", CALL_TIMEOUT)));
        batches.fetch_add(1, Ordering::Relaxed);
        match result {
            Ok(records) => {
                let outcomes = to_device(device.as_ref(), records).await;
                if key_use.due() {
                    // Before answering: a one-shot process may exit as soon as it has its answer.
                    // Too slow now is no failure: the background flusher retries.
                    let _ = key_use.flush(&store, WRITER_FLUSH_BOUND).await;
                }
                for (reply, outcome) in replies.into_iter().zip(outcomes) {
                    let _ = reply.send(outcome);
                }
            }
            Err(e) => {
                for reply in replies {
                    let _ = reply.send(Err(e.clone()));
                }
                if matches!(e, StoreError::Unavailable { .. }) {
                    // What queued meanwhile would meet the same store: answer it now.
                    while let Ok(job) = rx.try_recv() {
                        let _ = job.reply.send(Err(e.clone()));
                    }
                }
            }
        }
    }
}

/// Writes committed records to the device, in chain order; each record's own outcome.
async fn to_device(device: Option<&Arc<AuditDevice>>, records: Vec<Record>) -> Vec<Result<Record, StoreError>> {
    let Some(device) = device else {
        return records.into_iter().map(Ok).collect();
    };
    let (d, n, name) = (device.clone(), records.len(), device.describe());
    let appended = tokio::task::spawn_blocking(move || {
        let outcomes = d.append_batch(&records);
        records.into_iter().zip(outcomes).map(|(r, o)| o.map(|()| r)).collect::<Vec<_>>()
    });
    match appended.await {
        Ok(outcomes) => outcomes,
        Err(e) => {
            let fail = StoreError::AuditDevice { path: name, detail: e.to_string() };
            vec![Err(fail); n]
        }
    }
}
