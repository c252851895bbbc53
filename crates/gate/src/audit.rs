//! The tamper-evident audit log, independent of where it is stored.
//!
//! Every call an agent makes through jgate becomes one or two [`Record`]s: a write is recorded
//! twice (an [`Phase::Intent`] before it is performed, an [`Phase::Outcome`] after), a read once
//! ([`Phase::Read`]), and a refused call once ([`Phase::Denied`]). The store appends them; this
//! module decides what a record contains and how the chain is computed and checked.
//!
//! # How to use it
//!
//! 1. The caller fills in an [`Entry`] (arguments already redacted, never key material).
//! 2. The store reads the chain's sealed [`Head`] under its write lock and calls [`chain`] with
//!    the current audit key ([`AuditKeys`]), which adds the plain-English [`sentence`], the
//!    `prev_hash` link, the `key_version` and the `hash`; it stores the resulting [`Record`] (as
//!    JSON: [`to_json_line`] or serde) and seals the new head in the same transaction.
//! 3. Optionally the `(seq, hash)` of the newest record is exported to a place the database
//!    cannot reach as a [`Checkpoint`] (the store also seals its own every [`CHECKPOINT_EVERY`]
//!    records, and the audit file device keeps a full copy).
//! 4. `jgate audit verify` reads the records back in `seq` order and calls [`verify`] with the
//!    checkpoints, then [`verify_head`]; it reports the first record that is wrong and how.
//!
//! # The chain
//!
//! `hash = hex(HMAC-SHA-256(key[key_version], canonical_bytes(record without hash)))`, where
//! `prev_hash` is the previous record's `hash` (or [`GENESIS`] for record 1). The keys live in
//! the database only wrapped under the master key, so someone who can only write the database can
//! edit, delete, insert or reorder records but cannot produce hashes that verify. Removing records
//! from the *end* leaves a shorter, valid chain: the sealed head (and checkpoints) reveal that.
//!
//! # The canonical form
//!
//! [`canonical_bytes`] is one JSON object in the style of RFC 8785 (JCS): keys sorted by their
//! UTF-16 code units (recursively, including inside `args`), no whitespace, strings escaped
//! minimally (`\"`, `\\`, `\b`, `\f`, `\n`, `\r`, `\t`, other control characters as `\u00xx`;
//! everything else as raw UTF-8), absent values as `null`, integers in plain decimal and other
//! numbers in Rust's shortest round-trip form. It has these keys:
//!
//! `agent, allowed, args, build_number, client_addr, controller, duration_ms, grant, http_status,
//! key_id, key_version, operation, outcome, phase, prev_hash, reason, redactions, request_id,
//! schema_version, sentence, seq, surface, target, time_ms`
//!
//! `schema_version` is the record's own (2 = [`SCHEMA_VERSION`]; records written before key
//! versions existed are schema 1, which has no `key_version` key and is sealed with key version 1);
//! `surface` and `phase` are their lowercase names. The writer sorts keys itself, so the bytes do
//! not depend on serde_json's map ordering (the `preserve_order` feature) nor on the order a
//! database hands JSON back in.
//!
//! # Keys, the sealed head and checkpoints
//!
//! Each record names the version of the audit key that sealed it (`key_version`); the keys live in
//! the store wrapped under the master key, so rotating the master key re-wraps them and starts a
//! new version without orphaning older records ([`AuditKeys`], [`Keyring`]). The store also keeps
//! a sealed [`Head`] (the newest `seq` and `hash`, MAC'd under the audit key) outside the audit
//! table and a sealed checkpoint every [`CHECKPOINT_EVERY`] records, so removing records from the
//! end, or all of them, is detected without a checkpoint exported by hand ([`verify_head`]).

use std::fmt::Write as _;

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use std::collections::BTreeMap;

use zeroize::Zeroizing;

use crate::catalog;

/// The `prev_hash` of record 1: 64 zeros (32 zero bytes in hex).
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The version of the canonical form written now, part of every hashed record. Version 1 (no
/// `key_version`) is still verified.
pub const SCHEMA_VERSION: u32 = 2;

/// The store seals a checkpoint of the chain every this many records.
pub const CHECKPOINT_EVERY: i64 = 100;

/// Label of the MAC over the sealed head (kept apart from record hashes and checkpoints).
const HEAD_LABEL: &str = "jgate audit head v1";
/// Label of the MAC over a stored checkpoint.
const CHECKPOINT_LABEL: &str = "jgate audit checkpoint v1";

/// How far a record's `time_ms` may fall behind the latest earlier record before [`verify`]
/// calls it back-dated (clock steps on one server, skew between replicas): five minutes.
pub const CLOCK_TOLERANCE_MS: i64 = 5 * 60 * 1000;

/// Longest parameter value shown in a sentence, in characters; longer ones end in "…".
const MAX_VALUE_CHARS: usize = 120;

/// Most build parameters named in a sentence; the rest are counted.
const MAX_PARAMS: usize = 20;

/// Where the call came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Surface {
    Mcp,
    Proxy,
    Cli,
    Web,
}

impl Surface {
    /// The lowercase name used in JSON and in the canonical form.
    pub fn as_str(self) -> &'static str {
        match self {
            Surface::Mcp => "mcp",
            Surface::Proxy => "proxy",
            Surface::Cli => "cli",
            Surface::Web => "web",
        }
    }
}

/// Which moment of a call a record describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// A write was allowed and is about to be performed (written first, fail-closed).
    Intent,
    /// The write was performed; `outcome` says how it went.
    Outcome,
    /// A read, allowed and performed: the only record of that call.
    Read,
    /// The call was refused: the only record of that call.
    Denied,
}

impl Phase {
    /// The lowercase name used in JSON and in the canonical form.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Intent => "intent",
            Phase::Outcome => "outcome",
            Phase::Read => "read",
            Phase::Denied => "denied",
        }
    }
}

/// What the caller supplies for one record.
///
/// Nothing here may hold key material: `key_id` names the agent key, `args` are already redacted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// Server clock, milliseconds since the Unix epoch.
    pub time_ms: i64,
    /// Ties the intent and outcome of one call together (and to traces).
    pub request_id: String,
    /// The agent's name.
    pub agent: String,
    /// The id of the agent key used (never the secret).
    pub key_id: Option<String>,
    pub surface: Surface,
    pub client_addr: Option<String>,
    /// The controller's id, e.g. `prod`.
    pub controller: String,
    /// The catalog operation name, e.g. `trigger_build`.
    pub operation: String,
    /// The normalised job path, e.g. `release/deploy-production`, if the operation has one.
    pub target: Option<String>,
    /// The call's arguments, already redacted. Build parameters, if any, are read from
    /// `args.parameters` (or `args.params`): an object `NAME → value` or a list of
    /// `{"name": …, "value": …}`.
    pub args: Value,
    pub phase: Phase,
    pub allowed: bool,
    /// The grant that allowed the call.
    pub grant: Option<i64>,
    /// The policy's explanation, ready to read: "allowed by grant 7 (…)" or "no grant gives …".
    pub reason: String,
    /// `"ok"` or `"error: …"`, for outcomes and reads.
    pub outcome: Option<String>,
    pub http_status: Option<u16>,
    pub duration_ms: Option<i64>,
    /// How many values the log sanitiser redacted.
    pub redactions: u32,
    /// The build concerned, e.g. the build a trigger created.
    pub build_number: Option<u64>,
}

/// One link of the chain: an [`Entry`] with its sequence number, sentence and hashes.
///
/// Serialised flat: the entry's fields sit beside `seq`, `sentence`, `prev_hash` and `hash`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// 1, 2, 3, … with no gaps.
    pub seq: i64,
    /// The canonical form the hash covers: [`SCHEMA_VERSION`] for new records, 1 for records
    /// written before key versions existed (absent in their JSON).
    #[serde(default = "one")]
    pub schema_version: u32,
    /// The version of the audit key that sealed this record (1 for schema-1 records).
    #[serde(default = "one")]
    pub key_version: u32,
    #[serde(flatten)]
    pub entry: Entry,
    /// The plain-English sentence, covered by the hash.
    pub sentence: String,
    /// The previous record's `hash`, hex; [`GENESIS`] for record 1.
    pub prev_hash: String,
    /// `hex(HMAC-SHA-256(key, canonical_bytes(…)))`, lowercase.
    pub hash: String,
}

fn one() -> u32 {
    1
}

/// A `(seq, hash)` pair exported outside the database; [`verify`] checks the log against it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub seq: i64,
    pub hash: String,
}

impl From<&Record> for Checkpoint {
    fn from(r: &Record) -> Self {
        Checkpoint { seq: r.seq, hash: r.hash.clone() }
    }
}

/// What [`verify`] found wrong, at the first bad sequence number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The record's hash does not match its contents: edited, or forged without the key.
    #[error("record {seq} was edited after it was written, or forged (its hash does not match its contents)")]
    Edited { seq: i64 },
    /// A gap in the sequence numbers: the records between `after` and `next` were deleted.
    #[error("{}", missing_text(*.after, *.next))]
    Missing { after: i64, next: i64 },
    /// A record with the wrong sequence number stands where `seq` belongs.
    #[error(
        "the records are out of order at {seq}: record {found} stands where record {seq} belongs \
         (records were swapped, moved or duplicated)"
    )]
    Reordered { seq: i64, found: i64 },
    /// The record is genuine and numbered right, but does not link to the record before it.
    #[error(
        "record {seq} does not link to the record before it (its prev_hash does not match): \
         a record was inserted, replaced or moved here"
    )]
    Inserted { seq: i64 },
    /// The record is dated well before an earlier record.
    #[error(
        "record {seq} is dated more than {} minutes before an earlier record: the server clock went back \
         or the record was back-dated",
        CLOCK_TOLERANCE_MS / 60_000
    )]
    ClockWentBack { seq: i64 },
    /// The record's hash differs from the checkpoint exported for it.
    #[error(
        "record {seq} differs from the checkpoint exported for it earlier: the log was rewritten \
         (up to and including record {seq})"
    )]
    CheckpointMismatch { seq: i64 },
    /// A checkpoint lies beyond the last record.
    #[error("{}", truncated_text(*.checkpoint, *.last))]
    Truncated { checkpoint: i64, last: i64 },
    /// The record names an audit key version this installation does not have.
    #[error(
        "record {seq} names audit key version {version}, which this installation does not have: it was forged, \
         or written by a jgate whose master key was rotated after this one opened the store (reopen with the \
         current master key)"
    )]
    UnknownKey { seq: i64, version: u32 },
    /// A column stored beside the sealed record (used by filters) no longer matches it.
    #[error(
        "the {column} column of record {seq} was edited: it no longer matches the sealed record \
         (filtered queries would have shown or hidden it wrongly)"
    )]
    ColumnEdited { seq: i64, column: &'static str },
    /// The sealed head of the chain is gone although the store was set up.
    #[error(
        "the sealed audit head is missing although this store was set up (its key check value exists): \
         the audit state was deleted or replaced"
    )]
    HeadMissing,
    /// The sealed head's MAC does not match its contents.
    #[error("the sealed audit head was edited or forged (its MAC does not match)")]
    HeadForged,
    /// The sealed head names a later record than the log holds.
    #[error("{}", head_ahead_text(*.head, *.last))]
    HeadAhead { head: i64, last: i64 },
    /// The last record is not the one the sealed head names.
    #[error("record {seq} differs from the sealed audit head: the last record was replaced")]
    HeadMismatch { seq: i64 },
    /// Records follow the sealed head: they were added without sealing it.
    #[error(
        "the log ends at {last} but its sealed head names record {head}: records after {head} were added \
         without sealing the head (inserted, or written by a jgate without sealed heads)"
    )]
    HeadBehind { head: i64, last: i64 },
    /// A checkpoint kept in the store does not carry a valid MAC.
    #[error("the stored checkpoint for record {seq} was edited or forged (its MAC does not match)")]
    CheckpointForged { seq: i64 },
    /// A record of the audit file is absent from the database.
    #[error("record {seq} is in the audit file but missing from the database (deleted)")]
    FileRecordMissing { seq: i64 },
    /// A record of the audit file and the database's record with the same number differ.
    #[error("record {seq} differs between the database and the audit file: one of them was rewritten")]
    FileRecordDiffers { seq: i64 },
    /// A record of the audit file does not verify on its own.
    #[error("record {seq} in the audit file was edited or forged (its hash does not match its contents)")]
    FileRecordForged { seq: i64 },
}

fn head_ahead_text(head: i64, last: i64) -> String {
    if last <= 0 {
        format!("the log is empty but its sealed head says {head} records were written: the records were deleted")
    } else {
        format!(
            "the log ends at {last} but its sealed head says record {head} was written: records were removed \
             from the end"
        )
    }
}

fn missing_text(after: i64, next: i64) -> String {
    let (first, last) = (after.saturating_add(1), next.saturating_sub(1));
    if first == last {
        format!("record {first} is missing (deleted)")
    } else {
        format!("records {first}..{last} are missing (deleted)")
    }
}

fn truncated_text(checkpoint: i64, last: i64) -> String {
    if last <= 0 {
        format!("the log is empty but checkpoint {checkpoint} was exported earlier: records were removed")
    } else {
        format!(
            "the log ends at {last} but checkpoint {checkpoint} was exported earlier: \
             records were removed from the end"
        )
    }
}

// ---------------------------------------------------------------------------------------------
// The sentence
// ---------------------------------------------------------------------------------------------

/// The three forms of an operation's verb phrase: "triggered a build of", "trigger a build of",
/// "triggering a build of".
struct Verb {
    past: String,
    infinitive: String,
    gerund: String,
}

/// Past tense → (infinitive, gerund) for the first word of the catalog's verb phrases.
const CONJUGATIONS: &[(&str, &str, &str)] = &[
    ("answered", "answer", "answering"),
    ("cancelled", "cancel", "cancelling"),
    ("changed", "change", "changing"),
    ("copied", "copy", "copying"),
    ("created", "create", "creating"),
    ("deleted", "delete", "deleting"),
    ("disabled", "disable", "disabling"),
    ("enabled", "enable", "enabling"),
    ("listed", "list", "listing"),
    ("read", "read", "reading"),
    ("stopped", "stop", "stopping"),
    ("triaged", "triage", "triaging"),
    ("triggered", "trigger", "triggering"),
    ("wiped", "wipe", "wiping"),
];

fn verb(operation: &str) -> Verb {
    let generic = |past: String| Verb {
        past,
        infinitive: format!("call {} for", clean(operation)),
        gerund: format!("calling {} for", clean(operation)),
    };
    let Some(op) = catalog::operation(operation) else {
        return generic(format!("called {} for", clean(operation)));
    };
    let phrase = op.verb_phrase;
    let (first, rest) = phrase.split_once(' ').unwrap_or((phrase, ""));
    match CONJUGATIONS.iter().find(|(past, _, _)| *past == first) {
        Some((_, inf, ger)) => {
            let tail = if rest.is_empty() { String::new() } else { format!(" {rest}") };
            Verb { past: phrase.to_string(), infinitive: format!("{inf}{tail}"), gerund: format!("{ger}{tail}") }
        }
        None => generic(phrase.to_string()),
    }
}

/// Writes the plain-English sentence for an entry.
///
/// The verb comes from the catalog's `verb_phrase` (the raw operation name for an unknown one),
/// the object is `target on controller` (just the controller when there is no target), and a
/// build number turns "a build of X" into "build #N of X" or else appends "#N" to the target.
/// Build parameters follow as `with NAME=value, …` (values with spaces or punctuation are
/// quoted, long ones shortened); other arguments are left out. The `reason` closes the sentence.
///
/// * intent: "release-bot asked to trigger a build of release/deploy-production on prod with
///   ENV=staging — allowed by grant 7 (Trigger a build: full use on release/**)"
/// * outcome: "release-bot triggered build #143 of release/deploy-production on prod with
///   ENV=staging — allowed by grant 7 (…)"; on failure (`error: …`) "release-bot tried to trigger
///   … with ENV=staging, but it failed: upstream answered 500 — allowed by grant 7 (…)"; when the
///   client gave up (`cancelled: …`) "release-bot started to trigger …; the client cancelled the
///   call — allowed by grant 7 (…)". Any outcome other than `ok`/`ok: note`/`replayed: note`
///   reads as a failure, never as done.
/// * denied: "triage-bot was denied deleting job api-server on prod: no grant gives Create, copy,
///   or delete jobs"
/// * read: "triage-bot read the console log of team/api #142 on prod — allowed by grant 2 (…)"
/// * administrative changes (operations named `admin.…`): "admin (local CLI) granted release-bot
///   Trigger a build: full use on release/** (grant 7)".
///
/// Control characters, bidi overrides and isolates, line/paragraph separators and other invisible
/// format characters in any value are shown as visible escapes (`\u{202E}`), so a sentence is
/// always one line and reads in the order it is written.
pub fn sentence(entry: &Entry) -> String {
    if entry.operation.starts_with("admin.") {
        return admin_sentence(entry);
    }
    let verb = verb(&entry.operation);
    let object = object(entry);
    let params = params_text(&entry.args);
    // Calls through the Jenkins proxy say so: the agent used a Jenkins client, not jgate's tools.
    let agent = match entry.surface {
        Surface::Proxy => format!("{}, through the Jenkins proxy,", clean(&entry.agent)),
        _ => clean(&entry.agent),
    };
    let reason = clean(entry.reason.trim());
    let allowed_suffix = if reason.is_empty() { String::new() } else { format!(" — {reason}") };
    let number = |phrase: &str| with_build_number(phrase, entry);

    if entry.phase == Phase::Denied || !entry.allowed {
        let suffix = if reason.is_empty() { String::new() } else { format!(": {reason}") };
        return format!("{agent} was denied {} {object}{params}{suffix}", number(&verb.gerund));
    }
    match entry.phase {
        Phase::Intent => format!("{agent} asked to {} {object}{params}{allowed_suffix}", number(&verb.infinitive)),
        Phase::Outcome | Phase::Read | Phase::Denied => match outcome_of(entry.outcome.as_deref()) {
            Outcome::Done(note) => format!("{agent} {} {object}{params}{note}{allowed_suffix}", number(&verb.past)),
            Outcome::Failed(error) => format!(
                "{agent} tried to {} {object}{params}, but it failed: {error}{allowed_suffix}",
                number(&verb.infinitive)
            ),
            Outcome::Cancelled(detail) => format!(
                "{agent} started to {} {object}{params}; the client cancelled the call{detail}{allowed_suffix}",
                number(&verb.infinitive)
            ),
            Outcome::Held(note) => format!(
                "{agent} asked to {} {object}{params}; not done yet, it waits for an administrator's approval{note}{allowed_suffix}",
                number(&verb.infinitive)
            ),
        },
    }
}

/// "release-bot's request to trigger a build of release/deploy on prod with ENV=production":
/// what an approval is asked for, as approvers read it (built from the held call's entry).
pub fn request_phrase(entry: &Entry) -> String {
    let verb = verb(&entry.operation);
    format!("{}'s request to {} {}{}", clean(&entry.agent), verb.infinitive, object(entry), params_text(&entry.args))
}

/// How an outcome reads.
enum Outcome {
    /// Done; the note (" (…)" or "") follows the object.
    Done(String),
    /// Failed, with the error text.
    Failed(String),
    /// The client abandoned the call; the detail (" (…)" or "") follows.
    Cancelled(String),
    /// Held for an administrator's approval and not performed (yet); the note follows.
    Held(String),
}

/// Classifies an outcome text: `ok`, `ok: note`, `replayed: note` (or none) are done;
/// `cancelled: …` was abandoned by the client; `error: …` and anything unrecognised failed, so a
/// failure can never read as success.
fn outcome_of(outcome: Option<&str>) -> Outcome {
    let Some(text) = outcome.map(str::trim).filter(|t| !t.is_empty()) else {
        return Outcome::Done(String::new());
    };
    let (word, rest) = match text.split_once(':') {
        Some((w, r)) => (w.trim(), r.trim()),
        None => (text, ""),
    };
    let note = |r: &str| if r.is_empty() { String::new() } else { format!(" ({})", clean(r)) };
    match word.to_ascii_lowercase().as_str() {
        "ok" => Outcome::Done(note(rest)),
        "replayed" => Outcome::Done(if rest.is_empty() {
            " (replayed)".to_string()
        } else {
            format!(" (replayed: {})", clean(rest))
        }),
        "cancelled" | "canceled" => Outcome::Cancelled(note(rest)),
        "held" => Outcome::Held(note(rest)),
        "error" => Outcome::Failed(if rest.is_empty() { "unknown error".to_string() } else { clean(rest) }),
        _ => Outcome::Failed(clean(text)),
    }
}

/// How an administrator's surface reads in a sentence.
fn surface_phrase(s: Surface) -> &'static str {
    match s {
        Surface::Cli => "local CLI",
        Surface::Web => "web console",
        Surface::Mcp => "MCP",
        Surface::Proxy => "proxy",
    }
}

/// "alice (local CLI) granted release-bot Trigger a build: full use on release/** (grant 7)".
fn admin_sentence(e: &Entry) -> String {
    if e.operation == "admin.approval.expire" {
        // jgate itself notices the expiry: there is no administrator to name.
        let request = e.args.get("request").and_then(Value::as_str).map(clean).unwrap_or_default();
        let id = e.args.get("approval").and_then(Value::as_str).map(clean).unwrap_or_default();
        return format!("{request} expired without a decision (approval {id})");
    }
    let actor = format!("{} ({})", clean(&e.agent), surface_phrase(e.surface));
    let (past, infinitive) = admin_verbs(e);
    if e.phase == Phase::Denied || !e.allowed {
        let reason = clean(e.reason.trim());
        let suffix = if reason.is_empty() { String::new() } else { format!(": {reason}") };
        return format!("{actor} was refused permission to {infinitive}{suffix}");
    }
    match e.phase {
        Phase::Intent => format!("{actor} asked to {infinitive}"),
        _ => match outcome_of(e.outcome.as_deref()) {
            Outcome::Done(note) => format!("{actor} {past}{note}"),
            Outcome::Failed(error) => format!("{actor} tried to {infinitive}, but it failed: {error}"),
            Outcome::Cancelled(detail) => format!("{actor} started to {infinitive}; the call was cancelled{detail}"),
            Outcome::Held(note) => format!("{actor} asked to {infinitive}; it waits for approval{note}"),
        },
    }
}

/// (past, infinitive) of an administrative operation, from its target and arguments.
fn admin_verbs(e: &Entry) -> (String, String) {
    let target = e.target.as_deref().map(clean).unwrap_or_default();
    let text = |k: &str| e.args.get(k).and_then(Value::as_str).map(clean);
    let num = |k: &str| e.args.get(k).and_then(Value::as_i64);
    let both = |phrase: String, past_word: &str, inf_word: &str| {
        (format!("{past_word} {phrase}"), format!("{inf_word} {phrase}"))
    };
    match e.operation.as_str() {
        "admin.controller.add" => {
            let at = text("url").map(|u| format!(" at {u}")).unwrap_or_default();
            let forced = if e.args.get("forced").and_then(Value::as_bool) == Some(true) {
                " (its connection test failed; stored anyway)"
            } else {
                ""
            };
            both(format!("controller {target}{at}{forced}"), "added", "add")
        }
        "admin.controller.hook" => {
            let rotated = e.args.get("rotate").and_then(Value::as_bool) == Some(true);
            if rotated {
                both(format!("the build-event hook secret of controller {target}"), "rotated", "rotate")
            } else {
                both(format!("a build-event hook secret for controller {target}"), "created", "create")
            }
        }
        "admin.controller.remove" => {
            let grants = e.args.get("grants").and_then(Value::as_array).map_or(0, Vec::len);
            let with = if grants > 0 { format!(" with the {grants} grant(s) that named it") } else { String::new() };
            both(format!("controller {target}{with}"), "removed", "remove")
        }
        "admin.controller.update" => {
            let changed: Vec<String> = match e.args.get("changed").and_then(Value::as_object) {
                Some(map) => map
                    .iter()
                    .map(|(k, v)| match (k.as_str(), v) {
                        ("token", _) => "the token".to_string(),
                        (k, Value::String(s)) => format!("{} to {}", clean(k), clean(s)),
                        (k, Value::Array(items)) => format!(
                            "{} to [{}]",
                            clean(k),
                            items.iter().filter_map(Value::as_str).map(clean).collect::<Vec<_>>().join(", ")
                        ),
                        (k, other) => format!("{} to {}", clean(k), clean(&other.to_string())),
                    })
                    .collect(),
                None => Vec::new(),
            };
            let what = if changed.is_empty() { String::new() } else { format!(": {}", changed.join(", ")) };
            let forced = if e.args.get("forced").and_then(Value::as_bool) == Some(true) {
                " (its connection test failed; stored anyway)"
            } else {
                ""
            };
            (format!("updated controller {target}{what}{forced}"), format!("update controller {target}"))
        }
        "admin.agent.create" => {
            let key = text("key_id").map(|k| format!(" with key {k}")).unwrap_or_default();
            (format!("created agent {target}{key}"), format!("create agent {target}"))
        }
        "admin.agent.disable" => {
            both(format!("agent {target} (its keys and calls are refused; its grants are kept)"), "disabled", "disable")
        }
        "admin.agent.enable" => both(format!("agent {target}"), "enabled", "enable"),
        "admin.agent.limits" => {
            let limits = text("limits").unwrap_or_default();
            let before = text("before").map(|b| format!(" (before: {b})")).unwrap_or_default();
            both(format!("the rate limits of agent {target} to {limits}{before}"), "set", "set")
        }
        "admin.agent.delete" => {
            let count = |k: &str| e.args.get(k).and_then(Value::as_array).map(Vec::len);
            let keys = num("keys_revoked").map(|n| format!("{n} key(s) revoked"));
            let grants = count("grants_removed").filter(|n| *n > 0).map(|n| format!("{n} grant(s) removed"));
            let what: Vec<String> = keys.into_iter().chain(grants).collect();
            let detail = if what.is_empty() { String::new() } else { format!(" ({})", what.join(", ")) };
            (format!("deleted agent {target}{detail}"), format!("delete agent {target}"))
        }
        "admin.agent.key.rotate" => {
            let new_key = text("key_id").map(|k| format!(": new key {k}")).unwrap_or_default();
            let old = match e.args.get("retired").and_then(Value::as_array) {
                Some(ids) if !ids.is_empty() => {
                    let ids: Vec<String> = ids.iter().filter_map(Value::as_str).map(clean).collect();
                    format!("; old key(s) {}", ids.join(", "))
                }
                _ => "; the old key(s)".to_string(),
            };
            let when = match num("overlap_ms") {
                Some(ms) if ms > 0 => format!(" stop working after {} minute(s)", (ms + 59_999) / 60_000),
                _ => " stop working at once".to_string(),
            };
            let tail = if new_key.is_empty() { String::new() } else { format!("{old}{when}") };
            (format!("rotated the key of agent {target}{new_key}{tail}"), format!("rotate the key of agent {target}"))
        }
        "admin.exec.start" => {
            let key = text("key_id").map(|k| format!(" with token {k}")).unwrap_or_default();
            let until =
                num("expires_ms").map(|t| format!(", valid until {}", crate::gate::utc_time(t))).unwrap_or_default();
            (format!("started a `jgate exec` run{key}{until}"), "start a `jgate exec` run".to_string())
        }
        "admin.exec.end" => {
            let key = text("key_id").unwrap_or_default();
            (
                format!("ended the `jgate exec` run of token {key} (token revoked)"),
                format!("end the `jgate exec` run of token {key}"),
            )
        }
        "admin.key.create" => {
            let key = text("key_id").map(|k| format!("key {k}")).unwrap_or_else(|| "a new key".into());
            (format!("issued {key} to agent {target}"), format!("issue {key} to agent {target}"))
        }
        "admin.key.revoke" => match text("key_id") {
            Some(k) => both(format!("key {k} of agent {target}"), "revoked", "revoke"),
            None => {
                let n = num("revoked").map(|n| format!(" ({n} revoked)")).unwrap_or_default();
                (format!("revoked every key of agent {target}{n}"), format!("revoke every key of agent {target}"))
            }
        },
        "admin.grant" => {
            let what = text("grant").unwrap_or_default();
            let id = num("id").map(|n| format!(" (grant {n})")).unwrap_or_default();
            (format!("granted {target} {what}{id}"), format!("grant {target} {what}"))
        }
        "admin.ungrant" => {
            let id = num("id").map(|n| format!("grant {n}")).unwrap_or_else(|| "a grant".into());
            let what = text("grant").map(|g| format!(" ({g})")).unwrap_or_default();
            both(format!("{id}{what} from {target}"), "removed", "remove")
        }
        "admin.key.rotate" => {
            let ids = match (text("old_key_id"), text("new_key_id")) {
                (Some(a), Some(b)) => format!(" (key id {a} → {b}"),
                _ => String::new(),
            };
            let version = match (ids.is_empty(), num("audit_key_version")) {
                (false, Some(v)) => format!("; audit key version {v})"),
                (false, None) => ")".into(),
                (true, Some(v)) => format!(" (audit key version {v})"),
                (true, None) => String::new(),
            };
            ("rotated the master key".to_string() + &ids + &version, "rotate the master key".into())
        }
        "admin.administrator.create" => both(format!("console administrator {target}"), "created", "create"),
        "admin.administrator.delete" => {
            both(format!("console administrator {target} (their sessions ended)"), "deleted", "delete")
        }
        "admin.administrator.passwd" => (
            format!("set a new password for console administrator {target} (their sessions ended)"),
            format!("set a new password for console administrator {target}"),
        ),
        "admin.console.link" => (
            format!("made a one-time console login link for {target}"),
            format!("make a one-time console login link for {target}"),
        ),
        "admin.console.login" => {
            let how = match text("with").as_deref() {
                Some("link") => " with a one-time link",
                Some("password") => " with a password",
                _ => "",
            };
            let from = e.client_addr.as_deref().map(|a| format!(" from {}", clean(a))).unwrap_or_default();
            (format!("logged in to the console{how}{from}"), format!("log in to the console{from}"))
        }
        "admin.console.logout" => ("logged out of the console".to_string(), "log out of the console".to_string()),
        "admin.approval.approve" | "admin.approval.deny" => {
            let request = text("request").unwrap_or_else(|| format!("the request of {target}"));
            let id = text("approval").unwrap_or_default();
            let reason = text("reason").map(|r| format!("; reason: {r}")).unwrap_or_default();
            let (past, inf) =
                if e.operation == "admin.approval.approve" { ("approved", "approve") } else { ("denied", "deny") };
            (format!("{past} {request} (approval {id}{reason})"), format!("{inf} {request} (approval {id})"))
        }
        "admin.audit.reseal" => {
            let at = num("seq").map(|n| format!(" at record {n}")).unwrap_or_default();
            both(format!("the audit head{at}, accepting the log as it stood"), "resealed", "reseal")
        }
        other => {
            let op = clean(other);
            let on = if target.is_empty() { String::new() } else { format!(" for {target}") };
            (format!("called {op}{on}"), format!("call {op}{on}"))
        }
    }
}

/// "a build of" → "build #N of" when the entry names a build.
fn with_build_number(phrase: &str, entry: &Entry) -> String {
    match entry.build_number {
        Some(n) if phrase.contains("a build of") => phrase.replacen("a build of", &format!("build #{n} of"), 1),
        _ => phrase.to_string(),
    }
}

/// "release/deploy-production on prod", "team/api #142 on prod", or just "prod".
fn object(entry: &Entry) -> String {
    let controller = clean(&entry.controller);
    let verb_has_build = catalog::operation(&entry.operation).is_some_and(|o| o.verb_phrase.contains("a build of"));
    let number = match entry.build_number {
        Some(n) if !verb_has_build => Some(n),
        _ => None,
    };
    match (entry.target.as_deref().map(str::trim).filter(|t| !t.is_empty()), number) {
        (Some(t), Some(n)) => format!("{} #{n} on {controller}", clean(t)),
        (Some(t), None) => format!("{} on {controller}", clean(t)),
        (None, Some(n)) => format!("{controller} (build #{n})"),
        (None, None) => controller,
    }
}

/// " with NAME=value, NAME2=value2" for build parameters, or "" when there are none.
fn params_text(args: &Value) -> String {
    let Some(params) = args.get("parameters").or_else(|| args.get("params")) else {
        return String::new();
    };
    let pairs: Vec<(String, &Value)> = match params {
        Value::Object(map) => map.iter().map(|(k, v)| (k.clone(), v)).collect(),
        Value::Array(items) => items
            .iter()
            .filter_map(|item| {
                let name = item.get("name")?.as_str()?;
                Some((name.to_string(), item.get("value").unwrap_or(&Value::Null)))
            })
            .collect(),
        _ => Vec::new(),
    };
    if pairs.is_empty() {
        return String::new();
    }
    let mut out = String::from(" with ");
    for (i, (name, value)) in pairs.iter().take(MAX_PARAMS).enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        let shown = match value {
            Value::String(s) => word(s),
            other => word(&other.to_string()),
        };
        let _ = write!(out, "{}={shown}", word(name));
    }
    if pairs.len() > MAX_PARAMS {
        let _ = write!(out, " and {} more", pairs.len() - MAX_PARAMS);
    }
    out
}

/// A name or value as shown in a sentence: bare if it is plainly one word, otherwise quoted as a
/// JSON string (so a value cannot pose as part of the sentence); long values are shortened.
fn word(s: &str) -> String {
    let short: String = if s.chars().count() > MAX_VALUE_CHARS {
        s.chars().take(MAX_VALUE_CHARS).chain(std::iter::once('…')).collect()
    } else {
        s.to_string()
    };
    let bare = !short.is_empty()
        && short.chars().all(|c| c.is_alphanumeric() || "-_./:@+*#%~^[]…".contains(c))
        && short != "…";
    if bare {
        short
    } else {
        let mut quoted = Vec::with_capacity(short.len() + 2);
        write_json_string(&mut quoted, &short);
        // JSON escapes only C0 controls; bidi and separator characters must not stay raw either.
        clean(&String::from_utf8_lossy(&quoted))
    }
}

/// Characters a sentence never shows raw: controls (C0, DEL, C1), bidi embeddings, overrides and
/// isolates, line/paragraph separators, zero-width and other invisible format characters, tags.
/// Shown raw they could break the line or make the sentence display in another order than it reads.
fn must_escape(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061C}'
                | '\u{200B}'..='\u{200F}'
                | '\u{2028}'..='\u{202E}'
                | '\u{2060}'..='\u{2069}'
                | '\u{FEFF}'
                | '\u{E0000}'..='\u{E007F}'
        )
}

/// Escapes the characters of [`must_escape`] visibly (`\n`, `\u{202E}`), so text stays on one
/// line, in reading order, and cannot fake a line break.
fn clean(s: &str) -> String {
    if !s.chars().any(must_escape) {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if must_escape(c) => {
                let _ = write!(out, "\\u{{{:X}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Canonical bytes and the chain
// ---------------------------------------------------------------------------------------------

/// The bytes a record's hash covers: `seq`, every entry field, the sentence, `prev_hash` and (from
/// schema 2 on) `key_version`, as one canonical JSON object (see the module documentation for the
/// exact form). `hash` itself is not covered.
pub fn canonical_bytes(r: &Record) -> Vec<u8> {
    let e = &r.entry;
    let mut out = Vec::with_capacity(512);
    // The record's own keys in canonical order (UTF-16 code units; all ASCII, so byte order),
    // written straight from the record: this runs for every append (tests hold the reference
    // built through a JSON object, and check the two agree byte for byte).
    let mut o = CanonicalObject::new(&mut out);
    o.string("agent", &e.agent);
    o.literal("allowed", if e.allowed { "true" } else { "false" });
    write_canonical(o.key("args"), &e.args);
    o.number("build_number", e.build_number);
    o.opt_string("client_addr", e.client_addr.as_deref());
    o.string("controller", &e.controller);
    o.number("duration_ms", e.duration_ms);
    o.number("grant", e.grant);
    o.number("http_status", e.http_status);
    o.opt_string("key_id", e.key_id.as_deref());
    if r.schema_version >= 2 {
        o.number("key_version", Some(r.key_version));
    }
    o.string("operation", &e.operation);
    o.opt_string("outcome", e.outcome.as_deref());
    o.string("phase", e.phase.as_str());
    o.string("prev_hash", &r.prev_hash);
    o.string("reason", &e.reason);
    o.number("redactions", Some(e.redactions));
    o.string("request_id", &e.request_id);
    o.number("schema_version", Some(r.schema_version));
    o.string("sentence", &r.sentence);
    o.number("seq", Some(r.seq));
    o.string("surface", e.surface.as_str());
    o.opt_string("target", e.target.as_deref());
    o.number("time_ms", Some(e.time_ms));
    o.close();
    out
}

/// A canonical JSON object written member by member; the caller gives the keys in order.
struct CanonicalObject<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
}

impl<'a> CanonicalObject<'a> {
    fn new(out: &'a mut Vec<u8>) -> Self {
        out.push(b'{');
        CanonicalObject { out, first: true }
    }

    /// Writes `key` and the colon; the value goes into the returned buffer next.
    fn key(&mut self, key: &str) -> &mut Vec<u8> {
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
        write_json_string(self.out, key);
        self.out.push(b':');
        self.out
    }

    fn literal(&mut self, key: &str, text: &str) {
        self.key(key).extend_from_slice(text.as_bytes());
    }

    fn string(&mut self, key: &str, value: &str) {
        write_json_string(self.key(key), value);
    }

    fn opt_string(&mut self, key: &str, value: Option<&str>) {
        match value {
            Some(v) => self.string(key, v),
            None => self.literal(key, "null"),
        }
    }

    /// An integer in decimal, as [`write_canonical`] writes one; `None` is null.
    fn number(&mut self, key: &str, value: Option<impl std::fmt::Display>) {
        match value {
            Some(n) => self.literal(key, &n.to_string()),
            None => self.literal(key, "null"),
        }
    }

    fn close(self) {
        self.out.push(b'}');
    }
}

/// Writes `v` canonically: sorted keys (by UTF-16 code units), no whitespace.
fn write_canonical(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Value::Number(n) => {
            let text = if let Some(i) = n.as_i64() {
                i.to_string()
            } else if let Some(u) = n.as_u64() {
                u.to_string()
            } else {
                n.to_string()
            };
            out.extend_from_slice(text.as_bytes());
        }
        Value::String(s) => write_json_string(out, s),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(out, item);
            }
            out.push(b']');
        }
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            // UTF-8 byte order is code point order, which UTF-16's differs from only past U+FFFF.
            entries.sort_by(|(a, _), (b, _)| {
                if a.is_ascii() && b.is_ascii() { a.cmp(b) } else { a.encode_utf16().cmp(b.encode_utf16()) }
            });
            out.push(b'{');
            for (i, (k, val)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_json_string(out, k);
                out.push(b':');
                write_canonical(out, val);
            }
            out.push(b'}');
        }
    }
}

/// A JSON string with RFC 8785's minimal escaping: only `"`, `\\` and control characters are
/// escaped, everything else is copied as UTF-8 (in runs, not character by character).
fn write_json_string(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut copied = 0;
    for (i, &b) in bytes.iter().enumerate() {
        // Every byte of a multi-byte UTF-8 character is >= 0x80: only ASCII is ever escaped.
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            0x08 => b"\\b",
            0x0c => b"\\f",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            b if b < 0x20 => {
                out.extend_from_slice(&bytes[copied..i]);
                out.extend_from_slice(format!("\\u{b:04x}").as_bytes());
                copied = i + 1;
                continue;
            }
            _ => continue,
        };
        out.extend_from_slice(&bytes[copied..i]);
        out.extend_from_slice(escape);
        copied = i + 1;
    }
    out.extend_from_slice(&bytes[copied..]);
    out.push(b'"');
}

/// HMAC-SHA-256 keyed with the 32-byte audit key.
fn mac(key: &[u8; 32]) -> Hmac<Sha256> {
    // HMAC zero-pads keys shorter than the 64-byte block (RFC 2104), so this is exactly HMAC
    // with the 32-byte key, without a fallible length check.
    let mut block = [0u8; 64];
    block[..32].copy_from_slice(key);
    <Hmac<Sha256> as Mac>::new(&block.into())
}

fn compute_hash(key: &[u8; 32], r: &Record) -> String {
    let mut m = mac(key);
    m.update(&canonical_bytes(r));
    hex::encode(m.finalize().into_bytes())
}

/// Makes record `seq` from an entry, sealed with audit key `key` of version `key_version`: writes
/// its sentence, links it to `prev_hash` (the previous record's `hash`, or [`GENESIS`] for `seq`
/// 1) and computes its `hash`.
pub fn chain(key: &[u8; 32], key_version: u32, seq: i64, entry: Entry, prev_hash: &str) -> Record {
    let sentence = sentence(&entry);
    let mut r = Record {
        seq,
        schema_version: SCHEMA_VERSION,
        key_version,
        entry,
        sentence,
        prev_hash: prev_hash.to_string(),
        hash: String::new(),
    };
    r.hash = compute_hash(key, &r);
    r
}

/// Whether a record's hash is right under the key it names: `None` when that key is unknown.
pub fn seal_ok(keys: &(impl Keyring + ?Sized), r: &Record) -> Option<bool> {
    let key = keys.audit_key(r.key_version)?;
    if r.schema_version == 1 && r.key_version != 1 {
        // Schema 1 predates key versions: such a record can only have been sealed with version 1.
        return Some(false);
    }
    Some(same(&compute_hash(key, r), &r.hash))
}

// ---------------------------------------------------------------------------------------------
// Keys
// ---------------------------------------------------------------------------------------------

/// Where [`verify`] finds the audit key of each version.
pub trait Keyring {
    /// The key of `version`, if known.
    fn audit_key(&self, version: u32) -> Option<&[u8; 32]>;
}

/// A single key serves every version (tests, and tools that hold one key).
impl Keyring for [u8; 32] {
    fn audit_key(&self, _version: u32) -> Option<&[u8; 32]> {
        Some(self)
    }
}

/// The installation's audit keys by version, and the version new records are sealed with.
///
/// `Debug` shows the versions only; the key bytes are zeroized on drop.
#[derive(Clone)]
pub struct AuditKeys {
    keys: BTreeMap<u32, Zeroizing<[u8; 32]>>,
    current: u32,
}

impl std::fmt::Debug for AuditKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditKeys")
            .field("versions", &self.keys.keys().collect::<Vec<_>>())
            .field("current", &self.current)
            .finish()
    }
}

impl AuditKeys {
    /// A keyring holding `keys`; new records use the highest version. `None` when empty.
    pub fn new(keys: impl IntoIterator<Item = (u32, Zeroizing<[u8; 32]>)>) -> Option<AuditKeys> {
        let keys: BTreeMap<u32, Zeroizing<[u8; 32]>> = keys.into_iter().collect();
        let current = *keys.keys().next_back()?;
        Some(AuditKeys { keys, current })
    }

    /// The version new records are sealed with.
    pub fn current_version(&self) -> u32 {
        self.current
    }

    /// The key new records are sealed with.
    pub fn current_key(&self) -> &[u8; 32] {
        // `new` refuses an empty ring and `current` is always one of its keys.
        self.keys.get(&self.current).map_or(&[0u8; 32], |k| k)
    }

    /// This ring plus `key` as a new current version.
    pub fn with_new_version(&self, version: u32, key: Zeroizing<[u8; 32]>) -> AuditKeys {
        let mut keys = self.keys.clone();
        keys.insert(version, key);
        AuditKeys { current: version.max(self.current), keys }
    }

    /// Every (version, key), oldest first.
    pub fn iter(&self) -> impl Iterator<Item = (u32, &[u8; 32])> {
        self.keys.iter().map(|(v, k)| (*v, &**k))
    }
}

impl Keyring for AuditKeys {
    fn audit_key(&self, version: u32) -> Option<&[u8; 32]> {
        self.keys.get(&version).map(|k| &**k)
    }
}

// ---------------------------------------------------------------------------------------------
// The sealed head and stored checkpoints
// ---------------------------------------------------------------------------------------------

/// The newest `(seq, hash)` of the chain, MAC'd under an audit key and kept outside the audit
/// table (updated in the same transaction as each append). `seq` 0 with [`GENESIS`] is an empty log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Head {
    pub seq: i64,
    pub hash: String,
    pub key_version: u32,
    pub mac: String,
}

/// A checkpoint the store keeps by itself every [`CHECKPOINT_EVERY`] records, MAC'd like the head.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedCheckpoint {
    pub seq: i64,
    pub hash: String,
    pub key_version: u32,
    pub mac: String,
}

/// What a MAC check of a head or stored checkpoint found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SealCheck {
    Valid,
    Forged,
    /// Sealed with a key version this keyring lacks.
    UnknownKey,
}

fn pair_mac(key: &[u8; 32], label: &str, seq: i64, hash: &str, key_version: u32) -> String {
    let mut m = mac(key);
    // Length-free framing is safe here: the label is fixed, seq and version are decimal and the
    // hash is hex, separated by a character none of them contains.
    m.update(format!("{label}\n{seq}\n{hash}\n{key_version}").as_bytes());
    hex::encode(m.finalize().into_bytes())
}

fn check_pair(keys: &(impl Keyring + ?Sized), label: &str, seq: i64, hash: &str, version: u32, mac: &str) -> SealCheck {
    match keys.audit_key(version) {
        None => SealCheck::UnknownKey,
        Some(k) if same(&pair_mac(k, label, seq, hash, version), mac) => SealCheck::Valid,
        Some(_) => SealCheck::Forged,
    }
}

impl Head {
    /// The head naming `(seq, hash)`, sealed with the ring's current key.
    pub fn seal(keys: &AuditKeys, seq: i64, hash: &str) -> Head {
        let v = keys.current_version();
        Head {
            seq,
            hash: hash.to_string(),
            key_version: v,
            mac: pair_mac(keys.current_key(), HEAD_LABEL, seq, hash, v),
        }
    }

    pub fn check(&self, keys: &(impl Keyring + ?Sized)) -> SealCheck {
        check_pair(keys, HEAD_LABEL, self.seq, &self.hash, self.key_version, &self.mac)
    }
}

impl SealedCheckpoint {
    /// A checkpoint of `r`, sealed with the ring's current key.
    pub fn seal(keys: &AuditKeys, r: &Record) -> SealedCheckpoint {
        let v = keys.current_version();
        SealedCheckpoint {
            seq: r.seq,
            hash: r.hash.clone(),
            key_version: v,
            mac: pair_mac(keys.current_key(), CHECKPOINT_LABEL, r.seq, &r.hash, v),
        }
    }

    pub fn check(&self, keys: &(impl Keyring + ?Sized)) -> SealCheck {
        check_pair(keys, CHECKPOINT_LABEL, self.seq, &self.hash, self.key_version, &self.mac)
    }
}

/// Checks the sealed head against the last record of a verified log (`None` for an empty log).
///
/// Missing, forged, ahead of the log (records removed from the end, or all of them), naming
/// another last record (replaced), or behind it (records added without sealing): each is an error.
pub fn verify_head(
    keys: &(impl Keyring + ?Sized),
    head: Option<&Head>,
    last: Option<&Record>,
) -> Result<(), VerifyError> {
    let head = head.ok_or(VerifyError::HeadMissing)?;
    match head.check(keys) {
        SealCheck::Valid => {}
        SealCheck::Forged => return Err(VerifyError::HeadForged),
        SealCheck::UnknownKey => return Err(VerifyError::UnknownKey { seq: head.seq, version: head.key_version }),
    }
    let (last_seq, last_hash) = last.map_or((0, GENESIS), |r| (r.seq, r.hash.as_str()));
    if head.seq > last_seq {
        return Err(VerifyError::HeadAhead { head: head.seq, last: last_seq });
    }
    if head.seq < last_seq {
        return Err(VerifyError::HeadBehind { head: head.seq, last: last_seq });
    }
    if !same(&head.hash, last_hash) {
        return Err(VerifyError::HeadMismatch { seq: last_seq });
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Verification
// ---------------------------------------------------------------------------------------------

fn same(a: &str, b: &str) -> bool {
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

/// Checks records read back from the store, in `seq` order, and reports the first bad one.
///
/// * `from_prev`: `None` checks the whole log, which must start at record 1 linked to
///   [`GENESIS`] (a later first record means the head was deleted). `Some(hash)` checks a tail:
///   the first record may have any `seq` and must link to `hash`, the hash of the record before it.
/// * For each record, in this order: its hash is recomputed with the key of the version it names
///   ([`VerifyError::Edited`], or [`VerifyError::UnknownKey`] for a version `keys` lacks);
///   its `seq` must be the next one ([`VerifyError::Missing`] for a gap,
///   [`VerifyError::Reordered`] when records come back out of order); its `prev_hash` must be
///   the previous record's hash ([`VerifyError::Inserted`]); its time must not fall more than
///   [`CLOCK_TOLERANCE_MS`] behind an earlier record's ([`VerifyError::ClockWentBack`]); and a
///   checkpoint for its `seq` must carry its hash ([`VerifyError::CheckpointMismatch`]).
/// * At the end, a checkpoint beyond the last record means records were removed from the end
///   ([`VerifyError::Truncated`], naming the highest such checkpoint). Checkpoints before the
///   first record checked are skipped, and so are all of them when a tail check finds no records.
///
/// Returns how many records were checked.
pub fn verify<'a>(
    keys: &(impl Keyring + ?Sized),
    records: impl IntoIterator<Item = &'a Record>,
    from_prev: Option<&str>,
    checkpoints: &[Checkpoint],
) -> Result<u64, VerifyError> {
    let mut v = Verifier::new(keys, from_prev, checkpoints);
    for r in records {
        v.push(r)?;
    }
    v.finish()
}

/// [`verify`] one record at a time, for logs read in pages: the same checks in the same order,
/// with memory for one record's links, not the log.
pub struct Verifier<'k, K: Keyring + ?Sized> {
    keys: &'k K,
    cps: Vec<Checkpoint>,
    cp_at: usize,
    full: bool,
    prev_hash: String,
    expected: Option<i64>,
    latest_time: Option<i64>,
    last_seq: Option<i64>,
    count: u64,
    /// A record came with a later `seq` than expected: (expected, found). Whether that is a gap
    /// or a reordering is told by the record after it.
    gap: Option<(i64, i64)>,
    failed: Option<VerifyError>,
}

impl<'k, K: Keyring + ?Sized> Verifier<'k, K> {
    pub fn new(keys: &'k K, from_prev: Option<&str>, checkpoints: &[Checkpoint]) -> Self {
        let mut cps = checkpoints.to_vec();
        cps.sort_by_key(|c| c.seq);
        let full = from_prev.is_none();
        Verifier {
            keys,
            cps,
            cp_at: 0,
            full,
            prev_hash: from_prev.unwrap_or(GENESIS).to_string(),
            expected: if full { Some(1) } else { None },
            latest_time: None,
            last_seq: None,
            count: 0,
            gap: None,
            failed: None,
        }
    }

    /// Checks the next record; the first problem is returned again by every later call.
    pub fn push(&mut self, r: &Record) -> Result<(), VerifyError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let result = self.check(r);
        if let Err(e) = &result {
            self.failed = Some(e.clone());
        }
        result
    }

    fn check(&mut self, r: &Record) -> Result<(), VerifyError> {
        if let Some((seq, found)) = self.gap {
            return Err(if r.seq < found {
                VerifyError::Reordered { seq, found }
            } else {
                VerifyError::Missing { after: seq.saturating_sub(1), next: found }
            });
        }
        let seq = self.expected.unwrap_or(r.seq);
        match seal_ok(self.keys, r) {
            Some(true) => {}
            Some(false) => return Err(VerifyError::Edited { seq }),
            None => return Err(VerifyError::UnknownKey { seq, version: r.key_version }),
        }
        if r.seq > seq {
            // Decided by the next record (or its absence, in `finish`).
            self.gap = Some((seq, r.seq));
            return Ok(());
        }
        if r.seq < seq {
            return Err(VerifyError::Reordered { seq, found: r.seq });
        }
        if !same(&r.prev_hash, &self.prev_hash) {
            return Err(VerifyError::Inserted { seq });
        }
        if let Some(t) = self.latest_time
            && r.entry.time_ms < t.saturating_sub(CLOCK_TOLERANCE_MS)
        {
            return Err(VerifyError::ClockWentBack { seq });
        }
        while self.cp_at < self.cps.len() && self.cps[self.cp_at].seq <= seq {
            if self.cps[self.cp_at].seq == seq && !same(&self.cps[self.cp_at].hash, &r.hash) {
                return Err(VerifyError::CheckpointMismatch { seq });
            }
            self.cp_at += 1;
        }
        self.latest_time = Some(self.latest_time.map_or(r.entry.time_ms, |t| t.max(r.entry.time_ms)));
        self.prev_hash.clone_from(&r.hash);
        self.last_seq = Some(seq);
        self.expected = Some(seq.saturating_add(1));
        self.count += 1;
        Ok(())
    }

    /// After the last record: how many were checked, or the first problem (a pending gap; a
    /// checkpoint beyond the last record: truncation).
    pub fn finish(self) -> Result<u64, VerifyError> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        if let Some((seq, found)) = self.gap {
            return Err(VerifyError::Missing { after: seq.saturating_sub(1), next: found });
        }
        let last = match (self.last_seq, self.full) {
            (Some(s), _) => s,
            (None, true) => 0,
            (None, false) => return Ok(self.count),
        };
        if let Some(beyond) = self.cps[self.cp_at..].iter().map(|c| c.seq).filter(|&s| s > last).max() {
            return Err(VerifyError::Truncated { checkpoint: beyond, last });
        }
        Ok(self.count)
    }
}

/// One JSON line for export: the record as serde writes it (flat), with no line breaks inside.
pub fn to_json_line(r: &Record) -> String {
    match serde_json::to_string(r) {
        Ok(line) => line,
        Err(e) => {
            // Not expected (every field serialises); still give the reader something to follow.
            let mut m = Map::new();
            m.insert("seq".into(), r.seq.into());
            m.insert("hash".into(), r.hash.clone().into());
            m.insert("prev_hash".into(), r.prev_hash.clone().into());
            m.insert("sentence".into(), r.sentence.clone().into());
            m.insert("export_error".into(), e.to_string().into());
            let mut out = Vec::new();
            write_canonical(&mut out, &Value::Object(m));
            String::from_utf8_lossy(&out).into_owned()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const KEY: [u8; 32] = [7u8; 32];

    fn entry(operation: &str, phase: Phase) -> Entry {
        Entry {
            time_ms: 1_700_000_000_000,
            request_id: "req-1".into(),
            agent: "release-bot".into(),
            key_id: Some("key-abc".into()),
            surface: Surface::Mcp,
            client_addr: Some("127.0.0.1".into()),
            controller: "prod".into(),
            operation: operation.into(),
            target: Some("release/deploy-production".into()),
            args: json!({"job": "release/deploy-production", "parameters": {"ENV": "staging"}}),
            phase,
            allowed: true,
            grant: Some(7),
            reason: "allowed by grant 7 (Trigger a build: full use on release/**)".into(),
            outcome: None,
            http_status: None,
            duration_ms: None,
            redactions: 0,
            build_number: None,
        }
    }

    fn denied_delete() -> Entry {
        Entry {
            agent: "triage-bot".into(),
            operation: "delete_job".into(),
            target: Some("api-server".into()),
            args: json!({"job": "api-server"}),
            phase: Phase::Denied,
            allowed: false,
            grant: None,
            reason: "no grant gives Create, copy, or delete jobs".into(),
            ..entry("delete_job", Phase::Denied)
        }
    }

    #[test]
    fn sentence_intent_verbatim() {
        assert_eq!(
            sentence(&entry("trigger_build", Phase::Intent)),
            "release-bot asked to trigger a build of release/deploy-production on prod with ENV=staging \
             — allowed by grant 7 (Trigger a build: full use on release/**)"
        );
    }

    #[test]
    fn approval_sentences() {
        let mut held = entry("trigger_build", Phase::Outcome);
        held.outcome = Some("held: approval apr-1, not decided within 60 s".into());
        assert_eq!(
            sentence(&held),
            "release-bot asked to trigger a build of release/deploy-production on prod with ENV=staging; \
             not done yet, it waits for an administrator's approval (approval apr-1, not decided within 60 s) \
             — allowed by grant 7 (Trigger a build: full use on release/**)"
        );
        assert_eq!(
            request_phrase(&entry("trigger_build", Phase::Intent)),
            "release-bot's request to trigger a build of release/deploy-production on prod with ENV=staging"
        );
        let request = "release-bot's request to trigger a build of release/deploy on prod with ENV=production";
        let mut approved = admin(
            "admin.approval.approve",
            Phase::Outcome,
            "release-bot",
            json!({"approval": "apr-1", "request": request, "reason": "change 42"}),
        );
        approved.agent = "ana".into();
        assert_eq!(
            sentence(&approved),
            format!("ana (local CLI) approved {request} (approval apr-1; reason: change 42)")
        );
        let mut denied = admin(
            "admin.approval.deny",
            Phase::Intent,
            "release-bot",
            json!({"approval": "apr-1", "request": request}),
        );
        denied.agent = "ana".into();
        assert_eq!(sentence(&denied), format!("ana (local CLI) asked to deny {request} (approval apr-1)"));
        // A request quoting odd characters stays one line.
        let expired = admin(
            "admin.approval.expire",
            Phase::Outcome,
            "release-bot",
            json!({"approval": "apr-2", "request": "x\u{202E}y\nz"}),
        );
        assert_eq!(sentence(&expired), "x\\u{202E}y\\nz expired without a decision (approval apr-2)");
    }

    #[test]
    fn sentence_denied_verbatim() {
        assert_eq!(
            sentence(&denied_delete()),
            "triage-bot was denied deleting job api-server on prod: no grant gives Create, copy, or delete jobs"
        );
    }

    #[test]
    fn sentence_outcome_ok_and_failed() {
        let mut e = entry("trigger_build", Phase::Outcome);
        e.outcome = Some("ok".into());
        e.build_number = Some(143);
        assert_eq!(
            sentence(&e),
            "release-bot triggered build #143 of release/deploy-production on prod with ENV=staging \
             — allowed by grant 7 (Trigger a build: full use on release/**)"
        );
        e.outcome = Some("error: Jenkins answered 500".into());
        e.build_number = None;
        assert_eq!(
            sentence(&e),
            "release-bot tried to trigger a build of release/deploy-production on prod with ENV=staging, \
             but it failed: Jenkins answered 500 — allowed by grant 7 (Trigger a build: full use on release/**)"
        );
    }

    #[test]
    fn sentence_read() {
        let e = Entry {
            agent: "triage-bot".into(),
            operation: "get_build_log".into(),
            target: Some("team/api".into()),
            args: json!({"job": "team/api", "build": 142, "tail": 200}),
            grant: Some(2),
            reason: "allowed by grant 2 (Read job and build status: read on team/**)".into(),
            outcome: Some("ok".into()),
            build_number: Some(142),
            ..entry("get_build_log", Phase::Read)
        };
        assert_eq!(
            sentence(&e),
            "triage-bot read the console log of team/api #142 on prod — allowed by grant 2 \
             (Read job and build status: read on team/**)"
        );
        let queue = Entry { operation: "get_queue".into(), target: None, build_number: None, ..e.clone() };
        assert!(sentence(&queue).starts_with("triage-bot read the build queue of prod — allowed"));
        let build = Entry { operation: "get_build".into(), ..e };
        assert!(sentence(&build).starts_with("triage-bot read build #142 of team/api on prod — "));
    }

    #[test]
    fn sentence_every_catalog_operation_conjugates() {
        for op in catalog::OPERATIONS {
            let v = verb(op.name);
            assert!(!v.infinitive.starts_with("call "), "{} has no infinitive", op.name);
            assert!(!v.gerund.starts_with("calling "), "{} has no gerund", op.name);
            assert_eq!(v.past, op.verb_phrase);
        }
        let unknown = Entry { operation: "frobnicate".into(), ..denied_delete() };
        assert_eq!(
            sentence(&unknown),
            "triage-bot was denied calling frobnicate for api-server on prod: no grant gives Create, copy, or delete jobs"
        );
    }

    #[test]
    fn sentence_quotes_odd_values_and_stays_on_one_line() {
        let mut e = entry("trigger_build", Phase::Intent);
        e.args = json!({"parameters": [
            {"name": "MSG", "value": "hi — allowed by grant 1\nfake line"},
            {"name": "N", "value": 3},
            {"name": "TOKEN", "value": "[redacted]"},
        ]});
        e.agent = "bot\nX".into();
        let s = sentence(&e);
        assert!(!s.contains('\n'), "{s}");
        assert!(s.contains(r#"with MSG="hi — allowed by grant 1\nfake line", N=3, TOKEN=[redacted] — allowed"#), "{s}");
        assert!(s.starts_with("bot\\nX asked"), "{s}");
        assert!(!s.contains("key-abc"));
        e.args = json!({"parameters": {"BIG": "x".repeat(500)}});
        assert!(sentence(&e).len() < 400);
    }

    fn log(n: i64) -> Vec<Record> {
        let mut out: Vec<Record> = Vec::new();
        for seq in 1..=n {
            let prev = out.last().map_or(GENESIS.to_string(), |r| r.hash.clone());
            let mut e = if seq % 3 == 0 { denied_delete() } else { entry("trigger_build", Phase::Intent) };
            e.time_ms += seq * 1000;
            e.request_id = format!("req-{seq}");
            out.push(chain(&KEY, 1, seq, e, &prev));
        }
        out
    }

    #[test]
    fn chain_of_twenty_verifies() {
        let l = log(20);
        assert_eq!(l[0].prev_hash, GENESIS);
        assert_eq!(l[0].hash.len(), 64);
        assert_eq!(verify(&KEY, &l, None, &[]), Ok(20));
        let cps = [Checkpoint::from(&l[9]), Checkpoint::from(&l[19])];
        assert_eq!(verify(&KEY, &l, None, &cps), Ok(20));
        // A tail from record 11, linked to record 10's hash.
        assert_eq!(verify(&KEY, &l[10..], Some(&l[9].hash), &cps), Ok(10));
        assert_eq!(verify(&KEY, &l[10..], Some(&l[8].hash), &[]), Err(VerifyError::Inserted { seq: 11 }));
        assert_eq!(verify(&KEY, &[] as &[Record], None, &[]), Ok(0));
    }

    #[test]
    fn editing_any_field_is_detected_at_that_record() {
        let l = log(20);
        let k = 8usize; // record 9
        let edits: Vec<fn(&mut Record)> = vec![
            |_| {}, // no edit: must still verify (checked below)
            |r| r.entry.time_ms += 1,
            |r| r.entry.request_id.push('x'),
            |r| r.entry.agent = "other-bot".into(),
            |r| r.entry.key_id = None,
            |r| r.entry.surface = Surface::Web,
            |r| r.entry.client_addr = Some("10.0.0.1".into()),
            |r| r.entry.controller = "dev".into(),
            |r| r.entry.operation = "stop_build".into(),
            |r| r.entry.target = Some("x".into()),
            |r| r.entry.args = json!({"parameters": {"ENV": "prod"}}),
            |r| r.entry.phase = Phase::Outcome,
            |r| r.entry.allowed = !r.entry.allowed,
            |r| r.entry.grant = Some(8),
            |r| r.entry.reason.push('.'),
            |r| r.entry.outcome = Some("ok".into()),
            |r| r.entry.http_status = Some(201),
            |r| r.entry.duration_ms = Some(5),
            |r| r.entry.redactions = 1,
            |r| r.entry.build_number = Some(1),
            |r| r.sentence.push('!'),
            |r| r.prev_hash = GENESIS.into(),
            |r| r.hash = r.hash.to_uppercase(),
            |r| r.seq = 100,
            |r| r.key_version = 2,
            |r| r.schema_version = 1,
        ];
        for (i, edit) in edits.iter().enumerate() {
            let mut l2 = l.clone();
            edit(&mut l2[k]);
            let got = verify(&KEY, &l2, None, &[]);
            if i == 0 {
                assert_eq!(got, Ok(20));
            } else {
                assert_eq!(got, Err(VerifyError::Edited { seq: 9 }), "edit #{i}");
            }
        }
    }

    #[test]
    fn deletion_is_a_gap() {
        let mut l = log(20);
        l.drain(16..19); // records 17, 18, 19
        let err = verify(&KEY, &l, None, &[]);
        assert_eq!(err, Err(VerifyError::Missing { after: 16, next: 20 }));
        assert_eq!(err.unwrap_err().to_string(), "records 17..19 are missing (deleted)");
        let mut l = log(5);
        l.remove(0);
        assert_eq!(verify(&KEY, &l, None, &[]), Err(VerifyError::Missing { after: 0, next: 2 }));
    }

    #[test]
    fn forged_insert_is_detected_at_its_seq() {
        let l = log(20);
        // A forger copies record 5's shape, changes the agent and computes a hash without the
        // key (plain SHA-256, and HMAC with a guessed key), then renumbers what follows.
        for forge_key in [None, Some([0u8; 32])] {
            let mut forged = Record { seq: 6, prev_hash: l[4].hash.clone(), ..l[4].clone() };
            forged.entry.agent = "ghost".into();
            forged.sentence = sentence(&forged.entry);
            forged.hash = match forge_key {
                Some(k) => compute_hash(&k, &forged),
                None => {
                    use sha2::Digest;
                    hex::encode(Sha256::digest(canonical_bytes(&forged)))
                }
            };
            let mut l2: Vec<Record> = l[..5].to_vec();
            l2.push(forged);
            l2.extend(l[5..].iter().cloned().map(|mut r| {
                r.seq += 1;
                r
            }));
            assert_eq!(verify(&KEY, &l2, None, &[]), Err(VerifyError::Edited { seq: 6 }));
        }
        // A genuine record replayed at another position.
        let mut l3 = l.clone();
        l3.insert(6, l[2].clone());
        assert_eq!(verify(&KEY, &l3, None, &[]), Err(VerifyError::Reordered { seq: 7, found: 3 }));
    }

    #[test]
    fn a_record_from_another_chain_does_not_link() {
        let l = log(10);
        let mut other = log(10);
        for r in &mut other[4..] {
            r.entry.time_ms += 1;
        }
        // Re-chain the other log from record 5 with the same key: record 5 differs from ours.
        for i in 4..10 {
            let prev = other[i - 1].hash.clone();
            other[i] = chain(&KEY, 1, other[i].seq, other[i].entry.clone(), &prev);
        }
        let mut spliced = l.clone();
        spliced[6] = other[6].clone();
        assert_eq!(verify(&KEY, &spliced, None, &[]), Err(VerifyError::Inserted { seq: 7 }));
    }

    #[test]
    fn swapping_is_detected_at_the_first() {
        let mut l = log(20);
        l.swap(4, 5);
        let err = verify(&KEY, &l, None, &[]);
        assert_eq!(err, Err(VerifyError::Reordered { seq: 5, found: 6 }));
        let mut l = log(20);
        l.swap(4, 12);
        assert_eq!(verify(&KEY, &l, None, &[]), Err(VerifyError::Reordered { seq: 5, found: 13 }));
        // Swapped contents with the seq numbers kept in place: seq is under the hash.
        let mut l = log(20);
        let (a, b) = (l[4].seq, l[5].seq);
        l.swap(4, 5);
        l[4].seq = a;
        l[5].seq = b;
        assert_eq!(verify(&KEY, &l, None, &[]), Err(VerifyError::Edited { seq: 5 }));
    }

    #[test]
    fn truncation_and_rewrites_are_caught_by_checkpoints() {
        let l = log(20);
        let cps = vec![Checkpoint::from(&l[9]), Checkpoint::from(&l[19])];
        let err = verify(&KEY, &l[..15], None, &cps);
        assert_eq!(err, Err(VerifyError::Truncated { checkpoint: 20, last: 15 }));
        assert_eq!(
            err.unwrap_err().to_string(),
            "the log ends at 15 but checkpoint 20 was exported earlier: records were removed from the end"
        );
        assert_eq!(verify(&KEY, &[] as &[Record], None, &cps), Err(VerifyError::Truncated { checkpoint: 20, last: 0 }));
        // Someone with the key rewrites the log from record 3 on: only the checkpoint notices.
        let mut rewritten: Vec<Record> = l[..2].to_vec();
        for r in &l[2..] {
            let mut e = r.entry.clone();
            e.agent = "someone-else".into();
            let prev = rewritten.last().map_or(GENESIS.to_string(), |p| p.hash.clone());
            rewritten.push(chain(&KEY, 1, r.seq, e, &prev));
        }
        assert_eq!(verify(&KEY, &rewritten, None, &[]), Ok(20));
        assert_eq!(verify(&KEY, &rewritten, None, &cps), Err(VerifyError::CheckpointMismatch { seq: 10 }));
    }

    #[test]
    fn a_different_key_fails() {
        let l = log(20);
        assert_eq!(verify(&[8u8; 32], &l, None, &[]), Err(VerifyError::Edited { seq: 1 }));
    }

    #[test]
    fn backdated_record_is_reported() {
        let mut l = log(3);
        let mut e = l[2].entry.clone();
        e.time_ms -= CLOCK_TOLERANCE_MS + 10_000;
        l[2] = chain(&KEY, 1, 3, e, &l[1].hash);
        assert_eq!(verify(&KEY, &l, None, &[]), Err(VerifyError::ClockWentBack { seq: 3 }));
    }

    #[test]
    fn canonical_bytes_survive_a_serde_round_trip() {
        let mut l = log(20);
        // Args with keys in non-sorted order, nesting, numbers and odd characters.
        let mut e = entry("trigger_build", Phase::Outcome);
        e.args = json!({"z": 1, "a": {"y": [1, -2, 3.5, null, true], "b": "é\u{1}\"\\"}, "parameters": {"B": "1", "A": "2"}});
        e.time_ms += 30_000;
        let prev = l[19].hash.clone();
        l.push(chain(&KEY, 1, 21, e, &prev));
        let lines: Vec<String> = l.iter().map(to_json_line).collect();
        assert!(lines.iter().all(|s| !s.contains('\n')));
        let back: Vec<Record> = lines.iter().map(|s| serde_json::from_str(s)).collect::<Result<_, _>>().unwrap();
        assert_eq!(back, l);
        assert_eq!(verify(&KEY, &back, None, &[]), Ok(21));
        // Key order in args does not matter: same bytes whichever way the map was built.
        let r = &back[20];
        let mut reordered = r.entry.clone();
        reordered.args = json!({"parameters": {"A": "2", "B": "1"}, "a": {"b": "é\u{1}\"\\", "y": [1, -2, 3.5, null, true]}, "z": 1});
        assert_eq!(canonical_bytes(&Record { entry: reordered, ..r.clone() }), canonical_bytes(r));
        let probe = Record { seq: 1, sentence: "s".into(), prev_hash: GENESIS.into(), ..r.clone() };
        let text = String::from_utf8(canonical_bytes(&probe)).unwrap();
        assert!(text.starts_with(r#"{"agent":"release-bot","allowed":true,"args":{"a":{"b":"é\u0001\"\\","y":[1,-2,3.5,null,true]},"parameters":{"A":"2","B":"1"},"z":1},"build_number":null,"#), "{text}");
        assert!(text.contains(r#""schema_version":2,"sentence":"s","seq":1,"surface":"mcp","#), "{text}");
        assert!(text.contains(r#""key_id":"key-abc","key_version":1,"operation""#), "{text}");
    }

    /// The canonical form as first defined: the record's fields as one JSON object, written by
    /// [`write_canonical`]. [`canonical_bytes`] must produce exactly these bytes, or every stored
    /// hash would stop verifying.
    fn canonical_bytes_through_an_object(r: &Record) -> Vec<u8> {
        let e = &r.entry;
        let opt_str = |v: &Option<String>| v.as_ref().map_or(Value::Null, |s| Value::String(s.clone()));
        let mut m = Map::new();
        m.insert("schema_version".into(), r.schema_version.into());
        if r.schema_version >= 2 {
            m.insert("key_version".into(), r.key_version.into());
        }
        m.insert("seq".into(), r.seq.into());
        m.insert("time_ms".into(), e.time_ms.into());
        m.insert("request_id".into(), e.request_id.clone().into());
        m.insert("agent".into(), e.agent.clone().into());
        m.insert("key_id".into(), opt_str(&e.key_id));
        m.insert("surface".into(), e.surface.as_str().into());
        m.insert("client_addr".into(), opt_str(&e.client_addr));
        m.insert("controller".into(), e.controller.clone().into());
        m.insert("operation".into(), e.operation.clone().into());
        m.insert("target".into(), opt_str(&e.target));
        m.insert("args".into(), e.args.clone());
        m.insert("phase".into(), e.phase.as_str().into());
        m.insert("allowed".into(), e.allowed.into());
        m.insert("grant".into(), e.grant.map_or(Value::Null, Value::from));
        m.insert("reason".into(), e.reason.clone().into());
        m.insert("outcome".into(), opt_str(&e.outcome));
        m.insert("http_status".into(), e.http_status.map_or(Value::Null, Value::from));
        m.insert("duration_ms".into(), e.duration_ms.map_or(Value::Null, Value::from));
        m.insert("redactions".into(), e.redactions.into());
        m.insert("build_number".into(), e.build_number.map_or(Value::Null, Value::from));
        m.insert("sentence".into(), r.sentence.clone().into());
        m.insert("prev_hash".into(), r.prev_hash.clone().into());
        let mut out = Vec::new();
        write_canonical(&mut out, &Value::Object(m));
        out
    }

    #[test]
    fn canonical_bytes_are_those_of_the_record_as_one_json_object() {
        let odd = "q\"b\\s/\u{0}\u{1f}\u{7f}\u{8}\u{c}\n\r\té€😀\u{e000}\u{2028}";
        let mut records = log(9);
        for (i, r) in records.iter_mut().enumerate() {
            let e = &mut r.entry;
            match i % 3 {
                0 => {
                    e.key_id = None;
                    e.client_addr = None;
                    e.target = None;
                    e.grant = None;
                    e.outcome = Some(format!("error: {odd}"));
                    e.http_status = Some(503);
                    e.duration_ms = Some(-1);
                    e.build_number = Some(u64::MAX);
                    r.schema_version = 1;
                }
                1 => {
                    e.agent = odd.into();
                    e.reason = odd.into();
                    e.redactions = u32::MAX;
                    e.time_ms = i64::MIN;
                    e.args = json!({odd: [odd, 1.5, -0.0, 1e300, null], "\u{e000}": 1, "😀": 2, "": {}, "a": []});
                    r.sentence = odd.into();
                    r.key_version = 7;
                }
                _ => {
                    e.surface = Surface::Proxy;
                    e.phase = Phase::Outcome;
                    e.allowed = false;
                    e.grant = Some(i64::MIN);
                }
            }
            assert_eq!(canonical_bytes(r), canonical_bytes_through_an_object(r), "record {i}");
        }
    }

    #[test]
    fn mac_is_plain_hmac_with_the_key() {
        let mut a = mac(&KEY);
        a.update(b"abc");
        let mut b = <Hmac<Sha256> as hmac::digest::KeyInit>::new_from_slice(&KEY).unwrap();
        b.update(b"abc");
        assert_eq!(a.finalize().into_bytes(), b.finalize().into_bytes());
    }

    #[test]
    fn messages_read_plainly() {
        assert_eq!(
            VerifyError::Edited { seq: 42 }.to_string(),
            "record 42 was edited after it was written, or forged (its hash does not match its contents)"
        );
        assert_eq!(VerifyError::Missing { after: 4, next: 6 }.to_string(), "record 5 is missing (deleted)");
        assert!(VerifyError::Truncated { checkpoint: 55, last: 40 }.to_string().starts_with("the log ends at 40"));
    }

    #[test]
    fn failed_cancelled_and_noted_outcomes_read_plainly() {
        let mut e = entry("trigger_build", Phase::Outcome);
        let with = |e: &mut Entry, o: &str| {
            e.outcome = Some(o.into());
            sentence(e)
        };
        let s = with(&mut e, "cancelled: the MCP client sent notifications/cancelled");
        assert_eq!(
            s,
            "release-bot started to trigger a build of release/deploy-production on prod with ENV=staging; the client \
             cancelled the call (the MCP client sent notifications/cancelled) — allowed by grant 7 (Trigger a build: \
             full use on release/**)"
        );
        assert!(with(&mut e, "cancelled").contains("; the client cancelled the call — allowed"));
        let s = with(&mut e, "ok: merged by Jenkins into an identical build already queued");
        assert!(
            s.starts_with(
                "release-bot triggered a build of release/deploy-production on prod with ENV=staging (merged by Jenkins"
            ),
            "{s}"
        );
        assert!(!s.contains("failed"), "{s}");
        let s = with(&mut e, "replayed: same idempotency key, no new build");
        assert!(s.contains("(replayed: same idempotency key, no new build) — allowed"), "{s}");
        for failed in ["error: Jenkins answered 500", "ERROR: Jenkins answered 500", "timed out", "error:"] {
            let s = with(&mut e, failed);
            assert!(s.contains("tried to trigger") && s.contains("but it failed: "), "{failed}: {s}");
            assert!(!s.contains(" triggered "), "{failed}: {s}");
        }
        e.phase = Phase::Read;
        e.operation = "get_build_log".into();
        let s = with(&mut e, "cancelled: client disconnected");
        assert!(s.starts_with("release-bot started to read the console log of"), "{s}");
    }

    #[test]
    fn sentences_escape_bidi_separators_and_controls() {
        let mut e = entry("trigger_build", Phase::Intent);
        e.agent = "bot\u{202E}evil".into();
        e.target = Some("team/\u{2066}api\u{2069}\u{2028}x".into());
        e.controller = "prod\u{2029}\u{85}".into();
        e.reason = "allowed by grant 7 \u{202A}(x)\u{202C}\u{200F}\u{FEFF}".into();
        e.args = json!({"parameters": {"A\u{202D}": "v\u{202B}", "B": "x\u{7f}y", "C": "\u{E0041}"}});
        let s = sentence(&e);
        for c in s.chars() {
            assert!(!must_escape(c), "raw {:?} in {s}", c);
        }
        assert!(s.starts_with(r"bot\u{202E}evil asked to trigger a build of team/\u{2066}api\u{2069}\u{2028}x on prod\u{2029}\u{85} with "), "{s}");
        assert!(
            s.contains(r#""A\u{202D}"="v\u{202B}""#) && s.contains(r#"B="x\u{7F}y""#) && s.contains(r#"C="\u{E0041}""#),
            "{s}"
        );
        assert!(s.ends_with(r"allowed by grant 7 \u{202A}(x)\u{202C}\u{200F}\u{FEFF}"), "{s}");
        // Ordinary non-ASCII text stays as it is.
        e.agent = "bøt-é".into();
        assert!(sentence(&e).starts_with("bøt-é asked"));
    }

    fn admin(op: &str, phase: Phase, target: &str, args: Value) -> Entry {
        Entry {
            agent: "admin".into(),
            key_id: None,
            surface: Surface::Cli,
            client_addr: None,
            controller: String::new(),
            operation: op.into(),
            target: Some(target.into()),
            args,
            phase,
            grant: None,
            reason: String::new(),
            outcome: if phase == Phase::Intent { None } else { Some("ok".into()) },
            ..entry(op, phase)
        }
    }

    #[test]
    fn admin_changes_read_as_sentences() {
        let g = json!({"grant": "Trigger a build: full use on release/**", "id": 7});
        assert_eq!(
            sentence(&admin("admin.grant", Phase::Outcome, "release-bot", g.clone())),
            "admin (local CLI) granted release-bot Trigger a build: full use on release/** (grant 7)"
        );
        assert_eq!(
            sentence(&admin("admin.grant", Phase::Intent, "release-bot", g.clone())),
            "admin (local CLI) asked to grant release-bot Trigger a build: full use on release/**"
        );
        let mut failed = admin("admin.grant", Phase::Outcome, "release-bot", g);
        failed.outcome = Some("error: database error while storing the grant: disk full".into());
        assert_eq!(
            sentence(&failed),
            "admin (local CLI) tried to grant release-bot Trigger a build: full use on release/**, but it failed: \
             database error while storing the grant: disk full"
        );
        let cases = [
            (
                "admin.agent.create",
                "triage-bot",
                json!({"key_id": "k1"}),
                "admin (local CLI) created agent triage-bot with key k1",
            ),
            (
                "admin.key.create",
                "triage-bot",
                json!({"key_id": "k2"}),
                "admin (local CLI) issued key k2 to agent triage-bot",
            ),
            (
                "admin.agent.disable",
                "triage-bot",
                json!({}),
                "admin (local CLI) disabled agent triage-bot (its keys and calls are refused; its grants are kept)",
            ),
            ("admin.agent.enable", "triage-bot", json!({}), "admin (local CLI) enabled agent triage-bot"),
            (
                "admin.exec.start",
                "triage-bot",
                json!({"key_id": "k7", "expires_ms": 0}),
                "admin (local CLI) started a `jgate exec` run with token k7, valid until 1970-01-01 00:00:00Z",
            ),
            (
                "admin.agent.delete",
                "triage-bot",
                json!({"with_grants": true, "keys_revoked": 2, "grants_removed": [4, 5]}),
                "admin (local CLI) deleted agent triage-bot (2 key(s) revoked, 2 grant(s) removed)",
            ),
            (
                "admin.agent.key.rotate",
                "triage-bot",
                json!({"key_id": "k9", "overlap_ms": 3_600_000, "retired": ["k1", "k2"]}),
                "admin (local CLI) rotated the key of agent triage-bot: new key k9; old key(s) k1, k2 stop working after 60 minute(s)",
            ),
            (
                "admin.agent.key.rotate",
                "triage-bot",
                json!({"key_id": "k9", "overlap_ms": 0, "retired": ["k1"]}),
                "admin (local CLI) rotated the key of agent triage-bot: new key k9; old key(s) k1 stop working at once",
            ),
            (
                "admin.key.revoke",
                "triage-bot",
                json!({"revoked": 2}),
                "admin (local CLI) revoked every key of agent triage-bot (2 revoked)",
            ),
            (
                "admin.key.revoke",
                "triage-bot",
                json!({"key_id": "k2", "revoked": 1}),
                "admin (local CLI) revoked key k2 of agent triage-bot",
            ),
            (
                "admin.controller.add",
                "prod",
                json!({"url": "https://ci.example.com/"}),
                "admin (local CLI) added controller prod at https://ci.example.com/",
            ),
            ("admin.controller.remove", "prod", json!({}), "admin (local CLI) removed controller prod"),
            (
                "admin.controller.hook",
                "prod",
                json!({"rotate": false}),
                "admin (local CLI) created a build-event hook secret for controller prod",
            ),
            (
                "admin.controller.hook",
                "prod",
                json!({"rotate": true}),
                "admin (local CLI) rotated the build-event hook secret of controller prod",
            ),
            (
                "admin.controller.remove",
                "prod",
                json!({"with_grants": true, "grants": [{"id": 3}, {"id": 4}]}),
                "admin (local CLI) removed controller prod with the 2 grant(s) that named it",
            ),
            (
                "admin.controller.update",
                "prod",
                json!({"changed": {"token": "replaced", "url": "https://ci.example.com/", "timeout_secs": 60}}),
                "admin (local CLI) updated controller prod: the token, url to https://ci.example.com/, timeout_secs to 60",
            ),
            (
                "admin.ungrant",
                "release-bot",
                json!({"id": 7, "grant": "Read job and build status: read"}),
                "admin (local CLI) removed grant 7 (Read job and build status: read) from release-bot",
            ),
            (
                "admin.key.rotate",
                "",
                json!({"old_key_id": "aa", "new_key_id": "bb", "audit_key_version": 3}),
                "admin (local CLI) rotated the master key (key id aa → bb; audit key version 3)",
            ),
        ];
        for (op, target, args, want) in cases {
            assert_eq!(sentence(&admin(op, Phase::Outcome, target, args)), want);
        }
        let mut web = admin("admin.controller.remove", Phase::Outcome, "prod", json!({}));
        web.agent = "alice\u{202E}".into();
        web.surface = Surface::Web;
        assert_eq!(sentence(&web), r"alice\u{202E} (web console) removed controller prod");
    }

    fn ring(versions: &[u32]) -> AuditKeys {
        AuditKeys::new(versions.iter().map(|&v| (v, Zeroizing::new([v as u8; 32])))).unwrap()
    }

    #[test]
    fn records_under_several_key_versions_verify() {
        let keys = ring(&[1, 2, 3]);
        assert_eq!(keys.current_version(), 3);
        let mut out: Vec<Record> = Vec::new();
        for seq in 1..=9i64 {
            let v = (seq as u32 - 1) / 3 + 1;
            let prev = out.last().map_or(GENESIS.to_string(), |r| r.hash.clone());
            let mut e = entry("trigger_build", Phase::Intent);
            e.time_ms += seq;
            out.push(chain(keys.audit_key(v).unwrap(), v, seq, e, &prev));
        }
        assert_eq!(verify(&keys, &out, None, &[]), Ok(9));
        // Without version 2, record 4 cannot be checked.
        let partial = ring(&[1, 3]);
        assert_eq!(verify(&partial, &out, None, &[]), Err(VerifyError::UnknownKey { seq: 4, version: 2 }));
        // Claiming another version changes the bytes: edited.
        let mut l = out.clone();
        l[4].key_version = 3;
        assert_eq!(verify(&keys, &l, None, &[]), Err(VerifyError::Edited { seq: 5 }));
        assert!(format!("{keys:?}").contains("versions: [1, 2, 3]"));
    }

    #[test]
    fn schema_one_records_still_verify() {
        // A record as the first jgate wrote it: no schema_version or key_version in its JSON.
        let mut r = chain(&KEY, 1, 1, entry("trigger_build", Phase::Intent), GENESIS);
        r.schema_version = 1;
        r.hash = compute_hash(&KEY, &r);
        let mut v: Value = serde_json::from_str(&to_json_line(&r)).unwrap();
        let obj = v.as_object_mut().unwrap();
        obj.remove("schema_version");
        obj.remove("key_version");
        let back: Record = serde_json::from_value(v).unwrap();
        assert_eq!((back.schema_version, back.key_version), (1, 1));
        assert_eq!(verify(&KEY, [&back], None, &[]), Ok(1));
        let text = String::from_utf8(canonical_bytes(&back)).unwrap();
        assert!(text.contains(r#""schema_version":1"#) && !text.contains("key_version"), "{text}");
        // A schema-1 record naming another key version is not genuine.
        let keys = ring(&[1, 2]);
        let mut odd = back.clone();
        odd.key_version = 2;
        assert_eq!(seal_ok(&keys, &odd), Some(false));
    }

    #[test]
    fn the_sealed_head_catches_truncation_and_replacement() {
        let keys = ring(&[1, 2]);
        let l: Vec<Record> = {
            let mut out: Vec<Record> = Vec::new();
            for seq in 1..=6 {
                let prev = out.last().map_or(GENESIS.to_string(), |r| r.hash.clone());
                out.push(chain(keys.current_key(), 2, seq, entry("get_job", Phase::Read), &prev));
            }
            out
        };
        let head = Head::seal(&keys, 6, &l[5].hash);
        assert_eq!(head.check(&keys), SealCheck::Valid);
        assert_eq!(verify_head(&keys, Some(&head), l.last()), Ok(()));
        assert_eq!(verify_head(&keys, Some(&head), l[..4].last()), Err(VerifyError::HeadAhead { head: 6, last: 4 }));
        let gone = verify_head(&keys, Some(&head), None).unwrap_err();
        assert_eq!(gone, VerifyError::HeadAhead { head: 6, last: 0 });
        assert!(gone.to_string().starts_with("the log is empty but its sealed head says 6 records were written"));
        assert_eq!(verify_head(&keys, None, l.last()), Err(VerifyError::HeadMissing));
        let mut forged = head.clone();
        forged.seq = 4;
        assert_eq!(verify_head(&keys, Some(&forged), l[..4].last()), Err(VerifyError::HeadForged));
        let mut replaced = l.clone();
        replaced[5] = chain(keys.current_key(), 2, 6, entry("get_queue", Phase::Read), &l[4].hash);
        assert_eq!(verify_head(&keys, Some(&head), replaced.last()), Err(VerifyError::HeadMismatch { seq: 6 }));
        let older = Head::seal(&keys, 5, &l[4].hash);
        assert_eq!(verify_head(&keys, Some(&older), l.last()), Err(VerifyError::HeadBehind { head: 5, last: 6 }));
        assert_eq!(head.check(&ring(&[1])), SealCheck::UnknownKey);
        let empty = Head::seal(&keys, 0, GENESIS);
        assert_eq!(verify_head(&keys, Some(&empty), None), Ok(()));
        // Checkpoints are sealed under their own label: a head's MAC does not pass as one.
        let cp = SealedCheckpoint::seal(&keys, &l[5]);
        assert_eq!(cp.check(&keys), SealCheck::Valid);
        let swapped = SealedCheckpoint { mac: head.mac.clone(), ..cp };
        assert_eq!(swapped.check(&keys), SealCheck::Forged);
    }
}
