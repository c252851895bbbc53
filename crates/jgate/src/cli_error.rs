//! How a failed command ends: the one place where errors become a kind, a message, a fix and an
//! exit code (docs/cli.md has the table).
//!
//! Every command returns `anyhow::Result`; `main` hands an error to [`report`]. The kind is found
//! by walking the error's chain for the types that know what went wrong — [`CliError`] (raised by
//! the CLI itself), [`GateError`], [`StoreError`], [`SecretsError`], [`jenkins::Error`],
//! `std::io::Error`, `serde_json::Error` — outermost first. The message is the chain's text with
//! each cause said once; a `Fix: ...` sentence in it becomes the `fix`.
//!
//! With `--json` the error is one JSON object on one line on standard error (standard output
//! then holds nothing of the failed command):
//! `{"error": {"kind": "not_found", "message": "...", "fix": "..."}}` (`fix` is null when there
//! is none). Without it: `error: MESSAGE` and, on the next line, `  fix: FIX`.

use std::fmt;
use std::process::ExitCode;

use gate::GateError;
use gate::secrets::SecretsError;
use gate::store::StoreError;
use serde_json::json;

/// What kind of failure a command ended with. Each has its own exit code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Something failed that is none of the kinds below (Jenkins failing inside, a bug).
    Internal,
    /// The input is wrong: arguments, JSON, names, URLs, a file that is not a jgate database.
    Invalid,
    /// A named thing does not exist: a controller, agent, grant, job, build or file.
    NotFound,
    /// The policy, Jenkins' permissions or the egress guard refused.
    Denied,
    /// A key or credential is wrong, expired or missing: the agent key, the Jenkins token, the
    /// master key.
    Auth,
    /// Jenkins cannot be reached or is unavailable (DNS, connection, timeout, HTTP 503).
    Unreachable,
    /// TLS with the controller failed (certificate, CA, protocol).
    Tls,
    /// It conflicts with what exists: a duplicate name, a job's state (HTTP 409), too many calls
    /// in flight, an address in use.
    Conflict,
    /// jgate's database is down, locked or too slow: nothing was written; retry.
    StoreUnavailable,
    /// The audit log cannot be trusted or written: verification failed, the sealed head is
    /// missing or forged, the audit file cannot be written.
    AuditBroken,
    /// A rate limit or quota refused the call (docs/limits.md): nothing was done; send it again
    /// once the window resets, or ask an administrator to raise the limit.
    Limited,
}

impl Kind {
    #[cfg(test)]
    pub const ALL: [Kind; 11] = [
        Kind::Internal,
        Kind::Invalid,
        Kind::NotFound,
        Kind::Denied,
        Kind::Auth,
        Kind::Unreachable,
        Kind::Tls,
        Kind::Conflict,
        Kind::StoreUnavailable,
        Kind::AuditBroken,
        Kind::Limited,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Internal => "internal",
            Kind::Invalid => "invalid",
            Kind::NotFound => "not_found",
            Kind::Denied => "denied",
            Kind::Auth => "auth",
            Kind::Unreachable => "unreachable",
            Kind::Tls => "tls",
            Kind::Conflict => "conflict",
            Kind::StoreUnavailable => "store_unavailable",
            Kind::AuditBroken => "audit_broken",
            Kind::Limited => "limited",
        }
    }

    /// The process exit code (0 is success). `invalid` is 2, as for clap's usage errors.
    pub fn exit_code(self) -> u8 {
        match self {
            Kind::Internal => 1,
            Kind::Invalid => 2,
            Kind::NotFound => 3,
            Kind::Denied => 4,
            Kind::Auth => 5,
            Kind::Unreachable => 6,
            Kind::Tls => 7,
            Kind::Conflict => 8,
            Kind::StoreUnavailable => 9,
            Kind::AuditBroken => 10,
            Kind::Limited => 11,
        }
    }
}

/// An error raised by the CLI itself, with its kind (and, optionally, the fix).
#[derive(Debug)]
pub struct CliError {
    pub kind: Kind,
    pub message: String,
    pub fix: Option<String>,
}

impl CliError {
    pub fn new(kind: Kind, message: impl Into<String>) -> CliError {
        CliError { kind, message: message.into(), fix: None }
    }

    pub fn fix(mut self, fix: impl Into<String>) -> CliError {
        self.fix = Some(fix.into());
        self
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.fix {
            Some(fix) => write!(f, "{}. Fix: {fix}", self.message.trim_end_matches('.')),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for CliError {}

/// A failed command as reported: its kind, what happened, what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub kind: Kind,
    pub message: String,
    pub fix: Option<String>,
}

impl Report {
    pub fn to_json(&self) -> serde_json::Value {
        json!({"error": {"kind": self.kind.as_str(), "message": self.message, "fix": self.fix}})
    }

    pub fn human(&self) -> String {
        match &self.fix {
            Some(fix) => format!("error: {}\n  fix: {fix}", self.message),
            None => format!("error: {}", self.message),
        }
    }
}

/// Classifies an error and splits off its fix.
pub fn classify(err: &anyhow::Error) -> Report {
    let kind = err.chain().find_map(kind_of).unwrap_or_else(|| untyped_kind(&err.to_string()));
    let text = message_of(err);
    let (message, fix) = split_fix(&text);
    Report { kind, message, fix }
}

/// Prints the error (JSON on standard error with `json`) and returns its exit code.
pub fn report(err: &anyhow::Error, json: bool) -> ExitCode {
    let r = classify(err);
    if json {
        eprintln!("{}", r.to_json());
    } else {
        eprintln!("{}", r.human());
    }
    ExitCode::from(r.kind.exit_code())
}

/// The chain's text with each cause said once: a cause whose text the message already holds
/// (thiserror variants that print their source, `transparent` wrappers) is not repeated.
fn message_of(err: &anyhow::Error) -> String {
    let mut message = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        let text = text.trim();
        if text.is_empty() || message.contains(text) {
            continue;
        }
        if !message.is_empty() {
            message.push_str(": ");
        }
        message.push_str(text);
    }
    message
}

/// Splits "what happened. Fix: what to do" (the wording of jgate's, the gate's and the wire
/// client's errors) into its two parts.
fn split_fix(text: &str) -> (String, Option<String>) {
    match text.split_once("Fix: ") {
        Some((message, fix)) => {
            let message = message.trim_end().trim_end_matches(['.', ';', ',']).trim_end();
            // One line: a fix may carry a further hint on a line of its own.
            let fix = fix.split_whitespace().collect::<Vec<_>>().join(" ");
            (format!("{message}."), (!fix.is_empty()).then_some(fix))
        }
        None => (text.trim().to_string(), None),
    }
}

fn kind_of(cause: &(dyn std::error::Error + 'static)) -> Option<Kind> {
    if let Some(e) = cause.downcast_ref::<CliError>() {
        return Some(e.kind);
    }
    if let Some(e) = cause.downcast_ref::<GateError>() {
        return Some(gate_kind(e));
    }
    if let Some(e) = cause.downcast_ref::<StoreError>() {
        return Some(store_kind(e));
    }
    if let Some(e) = cause.downcast_ref::<SecretsError>() {
        return Some(secrets_kind(e));
    }
    if let Some(e) = cause.downcast_ref::<jenkins::Error>() {
        return Some(jenkins_kind(e));
    }
    if let Some(e) = cause.downcast_ref::<std::io::Error>() {
        return Some(io_kind(e));
    }
    if cause.downcast_ref::<serde_json::Error>().is_some() {
        return Some(Kind::Invalid);
    }
    None
}

fn gate_kind(e: &GateError) -> Kind {
    match e {
        GateError::Store(s) => store_kind(s),
        GateError::Jenkins(j) => jenkins_kind(j),
        GateError::ConnectionTest { error, .. } => jenkins_kind(error),
        GateError::Secrets(s) => secrets_kind(s),
        GateError::Invalid(_) => Kind::Invalid,
        GateError::BadKey(_) => Kind::Auth,
        GateError::Denied { .. } => Kind::Denied,
        // The audit record could not be written: the store is down (retry), unless the audit
        // log itself refused (a sealed head to look at, an audit file that cannot be written).
        GateError::AuditUnavailable(why) if why.contains("sealed head") || why.contains("audit file") => {
            Kind::AuditBroken
        }
        GateError::AuditUnavailable(_) => Kind::StoreUnavailable,
        GateError::Failed { status, .. } => status.map_or(Kind::Internal, status_kind),
        GateError::Busy(_) => Kind::Conflict,
        GateError::Limited { .. } => Kind::Limited,
        GateError::Cancelled(_)
        | GateError::Accepted { .. }
        | GateError::ReplayAccepted { .. }
        | GateError::NotStarted { .. }
        | GateError::MaybeStarted(_) => Kind::Internal,
    }
}

fn status_kind(status: u16) -> Kind {
    match status {
        400 | 413 | 414 | 422 => Kind::Invalid,
        401 => Kind::Auth,
        403 => Kind::Denied,
        404 | 410 => Kind::NotFound,
        409 => Kind::Conflict,
        502..=504 => Kind::Unreachable,
        _ => Kind::Internal,
    }
}

fn store_kind(e: &StoreError) -> Kind {
    match e {
        StoreError::Connect { .. } | StoreError::Unavailable { .. } => Kind::StoreUnavailable,
        StoreError::NoDirectory { .. } => Kind::NotFound,
        StoreError::NotADatabase { .. } => Kind::Invalid,
        StoreError::Db { .. } | StoreError::Corrupt(_) => Kind::Internal,
        StoreError::Duplicate { .. } => Kind::Conflict,
        StoreError::Missing { .. } => Kind::NotFound,
        StoreError::AuditHead(_) | StoreError::AuditDevice { .. } => Kind::AuditBroken,
    }
}

fn secrets_kind(e: &SecretsError) -> Kind {
    match e {
        SecretsError::Io { source, .. } => io_kind(source),
        SecretsError::EncryptionFailed => Kind::Internal,
        // Every other variant is a master key (or a secret sealed under one) that is wrong,
        // unreadable, exposed or missing.
        _ => Kind::Auth,
    }
}

fn jenkins_kind(e: &jenkins::Error) -> Kind {
    use jenkins::Error as J;
    match e {
        J::InvalidUrl { .. }
        | J::InvalidJobPath { .. }
        | J::BadRequest { .. }
        | J::Config { .. }
        | J::TooLarge { .. }
        | J::Protocol { .. }
        | J::Redirected { .. }
        | J::NotJenkinsRoot { .. } => Kind::Invalid,
        J::Refused(_) | J::Forbidden { .. } => Kind::Denied,
        J::Dns { .. } | J::Connect { .. } | J::Timeout { .. } | J::Unavailable { .. } => Kind::Unreachable,
        J::Tls { .. } | J::PlainHttpToTls { .. } => Kind::Tls,
        J::Unauthorized { .. } | J::Crumb | J::PasswordNotToken { .. } => Kind::Auth,
        J::NotFound { .. } | J::PluginMissing { .. } => Kind::NotFound,
        J::Conflict { .. } => Kind::Conflict,
        J::Server { .. } | J::WaitTimeout { .. } => Kind::Internal,
    }
}

fn io_kind(e: &std::io::Error) -> Kind {
    use std::io::ErrorKind as K;
    match e.kind() {
        K::NotFound => Kind::NotFound,
        K::PermissionDenied => Kind::Denied,
        K::AddrInUse | K::AlreadyExists => Kind::Conflict,
        K::AddrNotAvailable | K::InvalidInput | K::InvalidData => Kind::Invalid,
        _ => Kind::Internal,
    }
}

/// Errors raised with a plain message (`bail!`) carry no type: most say that the input was
/// wrong; those that say a named thing is missing are `not_found`.
fn untyped_kind(message: &str) -> Kind {
    let m = message.to_ascii_lowercase();
    if m.starts_with("there is no ") || m.starts_with("no operation is called") || m.contains("does not exist") {
        Kind::NotFound
    } else {
        Kind::Invalid
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_its_own_exit_code_and_name() {
        let mut codes: Vec<u8> = Kind::ALL.iter().map(|k| k.exit_code()).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), Kind::ALL.len());
        assert!(!codes.contains(&0));
        let mut names: Vec<&str> = Kind::ALL.iter().map(|k| k.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Kind::ALL.len());
    }

    #[test]
    fn the_error_types_map_to_their_kinds() {
        let cases: Vec<(anyhow::Error, Kind)> = vec![
            (GateError::Denied { reason: "no grant".into() }.into(), Kind::Denied),
            (GateError::BadKey("expired".into()).into(), Kind::Auth),
            (GateError::Invalid("bad".into()).into(), Kind::Invalid),
            (
                GateError::Store(StoreError::Missing { what: "agent", name: "x".into(), hint: "h".into() }).into(),
                Kind::NotFound,
            ),
            (StoreError::Duplicate { what: "agent", name: "x".into() }.into(), Kind::Conflict),
            (StoreError::Unavailable { doing: "d".into(), detail: "x".into() }.into(), Kind::StoreUnavailable),
            (StoreError::AuditHead("is missing".into()).into(), Kind::AuditBroken),
            (
                GateError::from(jenkins::Error::Tls { url: "u".into(), detail: "d".into(), fix: "f".into() }).into(),
                Kind::Tls,
            ),
            (
                GateError::ConnectionTest {
                    name: "prod".into(),
                    error: Box::new(jenkins::Error::Connect { url: "u".into(), detail: "refused".into() }),
                }
                .into(),
                Kind::Unreachable,
            ),
            (jenkins::Error::Unauthorized { user: "u".into(), token_url: "t".into() }.into(), Kind::Auth),
            (GateError::Failed { message: "gone".into(), status: Some(404) }.into(), Kind::NotFound),
            (SecretsError::MasterKeyMismatch { key_id: "a".into(), expected: "b".into() }.into(), Kind::Auth),
            (CliError::new(Kind::Conflict, "taken").into(), Kind::Conflict),
            (
                GateError::Limited { message: "refused: bot's limit".into(), fix: "wait".into(), retry_after_secs: 3 }
                    .into(),
                Kind::Limited,
            ),
            (anyhow::anyhow!("there is no grant 7"), Kind::NotFound),
            (anyhow::anyhow!("unknown group 'x'"), Kind::Invalid),
            (
                anyhow::Error::new(std::io::Error::from(std::io::ErrorKind::NotFound))
                    .context("cannot read the file f"),
                Kind::NotFound,
            ),
        ];
        for (err, kind) in cases {
            assert_eq!(classify(&err).kind, kind, "{err:#}");
        }
    }

    #[test]
    fn a_rewritten_fix_keeps_the_kind() {
        let plain = jenkins::Error::PlainHttpToTls { url: "http://j:8443".into(), https_url: "https://j:8443".into() };
        let err = GateError::ConnectionTest { name: "prod".into(), error: Box::new(plain) };
        let r = classify(&crate::admin::fix_names(err, "prod", true));
        assert_eq!(r.kind, Kind::Tls);
        assert!(r.fix.as_deref().is_some_and(|f| f.contains("jgate controller add prod")), "{r:?}");
    }

    #[test]
    fn a_cause_is_said_once_and_the_fix_is_split_off() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "No such file or directory (os error 2)");
        let err =
            anyhow::Error::new(SecretsError::Io { action: "open the master key file", path: "/k".into(), source: io });
        let r = classify(&err);
        assert_eq!(r.message.matches("No such file").count(), 1, "{}", r.message);
        let err: anyhow::Error = jenkins::Error::Connect { url: "http://j".into(), detail: "refused".into() }.into();
        let r = classify(&err);
        assert_eq!(r.message, "cannot connect to http://j: refused.");
        assert!(r.fix.as_deref().is_some_and(|f| f.starts_with("check that Jenkins is running")), "{r:?}");
        let v = r.to_json();
        assert_eq!(v["error"]["kind"], "unreachable");
        assert_eq!(v["error"]["message"], "cannot connect to http://j: refused.");
    }
}
