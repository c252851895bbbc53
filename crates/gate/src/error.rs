//! The gate's errors, in words an administrator or an agent can act on. Its own module so that
//! the operations and the call path can use it without importing the gate.

use crate::secrets;
use crate::store::StoreError;

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
    #[error("the audit log cannot be written, so the call was not performed: {}", with_fix(.0))]
    AuditUnavailable(String),
    /// A call that failed after it was allowed, with its message already through the sanitizer
    /// (it may quote Jenkins).
    #[error("{message}")]
    Failed { message: String, status: Option<u16> },
    /// The client cancelled the call or went away; upstream work was stopped.
    #[error("the call was cancelled: {0}")]
    Cancelled(String),
    /// The agent has too many calls in flight.
    #[error("{0}")]
    Busy(String),
    /// A rate limit or quota refused the call (see [`crate::limits`]): nothing was done; it may
    /// be sent again after `retry_after_secs`.
    #[error("{message}. Fix: {fix}")]
    Limited { message: String, fix: String, retry_after_secs: u64 },
    /// Jenkins accepted a trigger, then something failed: the build exists (or will).
    #[error(
        "the build was queued as item {queue_id}{}; {cause}; do not retry (that would start another build) — check it with get_build or get_queue",
        started.map(|n| format!(" and started as #{n}")).unwrap_or_default()
    )]
    Accepted { queue_id: u64, started: Option<u64>, cause: String },
    /// Jenkins accepted a replay (its answer names no queue item), then something failed.
    #[error(
        "the replay of build #{original} was requested and Jenkins accepted it{}; {cause}; do not replay again blindly (that would start another run) — find it with get_job: a build whose cause is \"Replayed #{original}\"",
        started.map(|n| format!(" (it started as #{n})")).unwrap_or_default()
    )]
    ReplayAccepted { original: u64, started: Option<u64>, cause: String },
    /// A trigger that Jenkins did not schedule: nothing was started. `status` is the HTTP status
    /// Jenkins refused it with, if it answered (409 disabled, 400 not parameterized, ...).
    #[error("nothing was started: {message}")]
    NotStarted { message: String, status: Option<u16> },
    /// A trigger whose fate is unknown (the connection broke after the request was sent).
    #[error("Jenkins may or may not have queued the build: {0}; check get_job or get_queue before triggering again")]
    MaybeStarted(String),
}

impl GateError {
    /// The HTTP status Jenkins answered with, when the error comes from its answer.
    pub fn status(&self) -> Option<u16> {
        match self {
            GateError::Jenkins(e) => e.status(),
            GateError::ConnectionTest { error, .. } => error.status(),
            GateError::Failed { status, .. } | GateError::NotStarted { status, .. } => *status,
            _ => None,
        }
    }

    /// Nothing was started because of `e` (its status kept as data).
    pub fn not_started(e: &jenkins::Error) -> GateError {
        GateError::NotStarted { message: e.to_string(), status: e.status() }
    }
}

impl From<jenkins::Error> for GateError {
    fn from(e: jenkins::Error) -> Self {
        GateError::Jenkins(Box::new(e))
    }
}

/// The cause, with the generic fix unless it already names one.
fn with_fix(cause: &str) -> String {
    if cause.contains("Fix:") { cause.to_string() } else { format!("{cause}. Fix: check the database, then retry") }
}
