//! The second audit device: every record, as one JSON line, appended to a file (or standard
//! output) and flushed to disk before the call goes on — so the trail survives a wiped or
//! rewritten database, as Vault's file audit device does.
//!
//! # The rule
//!
//! A record counts as written only once the database **and** the device hold it. If the device
//! cannot take a record, [`crate::Gate::record`] fails: a write is then refused (its intent record
//! could not be fully recorded) and a read is not returned. The database write comes first, so a
//! failed device leaves a record in the database that the file lacks; `jgate audit verify --file`
//! lists those, and reports every record of the file the database lost or changed.
//!
//! Lines are appended with `O_APPEND` (several processes may share one file) and matched to the
//! database by `seq`, so their order in the file does not matter.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::audit::{self, Record};
use crate::store::StoreError;

/// Where records go besides the database.
#[derive(Debug)]
pub enum AuditDevice {
    /// An append-only file, fsynced after every batch of records (each group commit's).
    File { path: PathBuf, file: Mutex<File> },
    /// Standard output (`-`), flushed after every batch of records.
    Stdout,
}

impl AuditDevice {
    /// Opens the device named on the command line: `-` for standard output, else a file path
    /// (created with mode 0600 if missing, its directory too; appended to otherwise).
    pub fn open(spec: &str) -> Result<AuditDevice, StoreError> {
        if spec == "-" {
            return Ok(AuditDevice::Stdout);
        }
        let path = PathBuf::from(spec);
        let fail = |detail: String| StoreError::AuditDevice { path: path.display().to_string(), detail };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| fail(format!("cannot create its directory: {e}")))?;
        }
        let mut options = OpenOptions::new();
        options.create(true).append(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            // Records name agents, jobs and (redacted) arguments: for the operator's eyes only.
            options.mode(0o600);
        }
        let file = options.open(&path).map_err(|e| fail(format!("cannot open it for appending: {e}")))?;
        Ok(AuditDevice::File { path, file: Mutex::new(file) })
    }

    /// What to call the device in messages.
    pub fn describe(&self) -> String {
        match self {
            AuditDevice::File { path, .. } => path.display().to_string(),
            AuditDevice::Stdout => "standard output".into(),
        }
    }

    /// Appends one record as a JSON line and waits until it is on disk (blocking: call it from
    /// `spawn_blocking`).
    pub fn append(&self, record: &Record) -> Result<(), StoreError> {
        self.append_batch(std::slice::from_ref(record)).into_iter().next().unwrap_or(Ok(()))
    }

    /// Appends records (one group commit's, in chain order) as JSON lines and waits until they
    /// are on disk with one fsync for all of them; each record's own outcome. A failed write
    /// stops the batch (the records after it are not written, so the file never skips one);
    /// a failed fsync fails every record written (whether they reached the disk is unknown).
    /// Blocking: call it from `spawn_blocking`.
    pub fn append_batch(&self, records: &[Record]) -> Vec<Result<(), StoreError>> {
        let path = match self {
            AuditDevice::File { path, .. } => path.display().to_string(),
            AuditDevice::Stdout => "standard output".into(),
        };
        let fail = |what: &str, e: &std::io::Error| StoreError::AuditDevice {
            path: path.clone(),
            detail: format!("{what}: {e}"),
        };
        let mut outcomes: Vec<Result<(), StoreError>> = Vec::with_capacity(records.len());
        let mut write_all = |out: &mut dyn Write| {
            for record in records {
                if let Some(Err(e)) = outcomes.last() {
                    let e = e.clone();
                    outcomes.push(Err(e));
                    continue;
                }
                let mut line = audit::to_json_line(record);
                line.push('\n');
                // One write call per line, so concurrent appenders (O_APPEND) never interleave.
                outcomes.push(out.write_all(line.as_bytes()).map_err(|e| fail("write failed", &e)));
            }
        };
        let synced = match self {
            AuditDevice::File { file, .. } => {
                // A poisoned lock only means another writer panicked mid-line; the file is still usable.
                let mut f = file.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                write_all(&mut *f);
                f.sync_data().map_err(|e| fail("fsync failed", &e))
            }
            AuditDevice::Stdout => {
                let mut out = std::io::stdout().lock();
                write_all(&mut out);
                out.flush().map_err(|e| fail("flush failed", &e))
            }
        };
        if let Err(e) = synced {
            for o in outcomes.iter_mut().filter(|o| o.is_ok()) {
                *o = Err(e.clone());
            }
        }
        outcomes
    }
}

/// Reads an audit file back: the records of its lines, in file order. Blank lines are skipped; a
/// line that is not a record is an error naming its line number.
pub fn read_file(path: &Path) -> Result<Vec<Record>, String> {
    let file = File::open(path).map_err(|e| format!("cannot read the audit file {}: {e}", path.display()))?;
    let mut out = Vec::new();
    for (i, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| format!("cannot read the audit file {}: {e}", path.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        let record: Record = serde_json::from_str(&line)
            .map_err(|e| format!("line {} of the audit file {} is not an audit record ({e})", i + 1, path.display()))?;
        out.push(record);
    }
    Ok(out)
}
