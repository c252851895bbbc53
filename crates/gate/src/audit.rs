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
//! 2. The store reads the chain's head (`seq`, `hash`, or [`GENESIS`] for an empty log) under its
//!    write lock and calls [`chain`], which adds the plain-English [`sentence`], the `prev_hash`
//!    link and the `hash`, and stores the resulting [`Record`] (as JSON: [`to_json_line`] or serde).
//! 3. Every so often the `(seq, hash)` of the newest record is exported to a place the database
//!    cannot reach as a [`Checkpoint`].
//! 4. `jgate audit verify` reads the records back in `seq` order and calls [`verify`] with the
//!    exported checkpoints; it reports the first record that is wrong and how.
//!
//! # The chain
//!
//! `hash = hex(HMAC-SHA-256(key, canonical_bytes(seq, entry, sentence, prev_hash)))`, where
//! `prev_hash` is the previous record's `hash` (or [`GENESIS`] for record 1). The key lives
//! outside the database, so someone who can only write the database can edit, delete, insert
//! or reorder records but cannot produce hashes that verify. Removing records from the *end*
//! leaves a shorter, valid chain: only a checkpoint exported earlier reveals that.
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
//! key_id, operation, outcome, phase, prev_hash, reason, redactions, request_id, schema_version,
//! sentence, seq, surface, target, time_ms`
//!
//! `schema_version` is [`SCHEMA_VERSION`]; `surface` and `phase` are their lowercase names. The
//! writer sorts keys itself, so the bytes do not depend on serde_json's map ordering (the
//! `preserve_order` feature) nor on the order a database hands JSON back in.

use std::fmt::Write as _;

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::catalog;

/// The `prev_hash` of record 1: 64 zeros (32 zero bytes in hex).
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The version of the canonical form, part of every hashed record.
pub const SCHEMA_VERSION: u32 = 1;

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
    #[serde(flatten)]
    pub entry: Entry,
    /// The plain-English sentence, covered by the hash.
    pub sentence: String,
    /// The previous record's `hash`, hex; [`GENESIS`] for record 1.
    pub prev_hash: String,
    /// `hex(HMAC-SHA-256(key, canonical_bytes(…)))`, lowercase.
    pub hash: String,
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
///   ENV=staging — allowed by grant 7 (…)"; on failure "release-bot tried to trigger … with
///   ENV=staging, but it failed: upstream answered 500 — allowed by grant 7 (…)"
/// * denied: "triage-bot was denied deleting job api-server on prod: no grant gives Create, copy,
///   or delete jobs"
/// * read: "triage-bot read the console log of team/api #142 on prod — allowed by grant 2 (…)"
///
/// Control characters in any value are shown escaped, so a sentence is always one line.
pub fn sentence(entry: &Entry) -> String {
    let verb = verb(&entry.operation);
    let object = object(entry);
    let params = params_text(&entry.args);
    let agent = clean(&entry.agent);
    let reason = clean(entry.reason.trim());
    let allowed_suffix = if reason.is_empty() { String::new() } else { format!(" — {reason}") };
    let number = |phrase: &str| with_build_number(phrase, entry);

    if entry.phase == Phase::Denied || !entry.allowed {
        let suffix = if reason.is_empty() { String::new() } else { format!(": {reason}") };
        return format!("{agent} was denied {} {object}{params}{suffix}", number(&verb.gerund));
    }
    match entry.phase {
        Phase::Intent => format!("{agent} asked to {} {object}{params}{allowed_suffix}", number(&verb.infinitive)),
        Phase::Outcome | Phase::Read | Phase::Denied => match failure(entry.outcome.as_deref()) {
            None => format!("{agent} {} {object}{params}{allowed_suffix}", number(&verb.past)),
            Some(error) => format!(
                "{agent} tried to {} {object}{params}, but it failed: {error}{allowed_suffix}",
                number(&verb.infinitive)
            ),
        },
    }
}

/// `None` for success (`"ok"` or no outcome), else the error text without its `error:` prefix.
fn failure(outcome: Option<&str>) -> Option<String> {
    let outcome = outcome?.trim();
    if outcome.is_empty() || outcome.eq_ignore_ascii_case("ok") {
        return None;
    }
    let text = outcome.strip_prefix("error:").map(str::trim).unwrap_or(outcome);
    Some(if text.is_empty() { "unknown error".to_string() } else { clean(text) })
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
        String::from_utf8_lossy(&quoted).into_owned()
    }
}

/// Escapes control characters so text stays on one line and cannot fake a line break.
fn clean(s: &str) -> String {
    if !s.chars().any(char::is_control) {
        return s.to_string();
    }
    s.chars().map(|c| if c.is_control() { c.escape_default().to_string() } else { c.to_string() }).collect()
}

// ---------------------------------------------------------------------------------------------
// Canonical bytes and the chain
// ---------------------------------------------------------------------------------------------

/// The bytes a record's hash covers: `seq`, every entry field, the sentence and `prev_hash`, as
/// one canonical JSON object (see the module documentation for the exact form).
pub fn canonical_bytes(seq: i64, entry: &Entry, sentence: &str, prev_hash: &str) -> Vec<u8> {
    let opt_str = |v: &Option<String>| v.as_ref().map_or(Value::Null, |s| Value::String(s.clone()));
    let mut m = Map::new();
    m.insert("schema_version".into(), SCHEMA_VERSION.into());
    m.insert("seq".into(), seq.into());
    m.insert("time_ms".into(), entry.time_ms.into());
    m.insert("request_id".into(), entry.request_id.clone().into());
    m.insert("agent".into(), entry.agent.clone().into());
    m.insert("key_id".into(), opt_str(&entry.key_id));
    m.insert("surface".into(), entry.surface.as_str().into());
    m.insert("client_addr".into(), opt_str(&entry.client_addr));
    m.insert("controller".into(), entry.controller.clone().into());
    m.insert("operation".into(), entry.operation.clone().into());
    m.insert("target".into(), opt_str(&entry.target));
    m.insert("args".into(), entry.args.clone());
    m.insert("phase".into(), entry.phase.as_str().into());
    m.insert("allowed".into(), entry.allowed.into());
    m.insert("grant".into(), entry.grant.map_or(Value::Null, Value::from));
    m.insert("reason".into(), entry.reason.clone().into());
    m.insert("outcome".into(), opt_str(&entry.outcome));
    m.insert("http_status".into(), entry.http_status.map_or(Value::Null, Value::from));
    m.insert("duration_ms".into(), entry.duration_ms.map_or(Value::Null, Value::from));
    m.insert("redactions".into(), entry.redactions.into());
    m.insert("build_number".into(), entry.build_number.map_or(Value::Null, Value::from));
    m.insert("sentence".into(), sentence.into());
    m.insert("prev_hash".into(), prev_hash.into());
    let mut out = Vec::with_capacity(512);
    write_canonical(&mut out, &Value::Object(m));
    out
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
            entries.sort_by(|(a, _), (b, _)| a.encode_utf16().cmp(b.encode_utf16()));
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

/// A JSON string with RFC 8785's minimal escaping.
fn write_json_string(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    for c in s.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '\u{8}' => out.extend_from_slice(b"\\b"),
            '\u{c}' => out.extend_from_slice(b"\\f"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\r' => out.extend_from_slice(b"\\r"),
            '\t' => out.extend_from_slice(b"\\t"),
            c if (c as u32) < 0x20 => out.extend_from_slice(format!("\\u{:04x}", c as u32).as_bytes()),
            c => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
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

fn compute_hash(key: &[u8; 32], seq: i64, entry: &Entry, sentence: &str, prev_hash: &str) -> String {
    let mut m = mac(key);
    m.update(&canonical_bytes(seq, entry, sentence, prev_hash));
    hex::encode(m.finalize().into_bytes())
}

/// Makes record `seq` from an entry: writes its sentence, links it to `prev_hash` (the previous
/// record's `hash`, or [`GENESIS`] for `seq` 1) and computes its `hash`.
pub fn chain(key: &[u8; 32], seq: i64, entry: Entry, prev_hash: &str) -> Record {
    let sentence = sentence(&entry);
    let hash = compute_hash(key, seq, &entry, &sentence, prev_hash);
    Record { seq, entry, sentence, prev_hash: prev_hash.to_string(), hash }
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
/// * For each record, in this order: its hash is recomputed with `key` ([`VerifyError::Edited`]);
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
    key: &[u8; 32],
    records: impl IntoIterator<Item = &'a Record>,
    from_prev: Option<&str>,
    checkpoints: &[Checkpoint],
) -> Result<u64, VerifyError> {
    let mut cps: Vec<&Checkpoint> = checkpoints.iter().collect();
    cps.sort_by_key(|c| c.seq);
    let mut cp_at = 0usize;

    let full = from_prev.is_none();
    let mut prev_hash: &str = from_prev.unwrap_or(GENESIS);
    let mut expected: Option<i64> = if full { Some(1) } else { None };
    let mut latest_time: Option<i64> = None;
    let mut last_seq: Option<i64> = None;
    let mut count: u64 = 0;

    let mut records = records.into_iter().peekable();
    while let Some(r) = records.next() {
        let seq = expected.unwrap_or(r.seq);

        let recomputed = compute_hash(key, r.seq, &r.entry, &r.sentence, &r.prev_hash);
        if !same(&recomputed, &r.hash) {
            return Err(VerifyError::Edited { seq });
        }
        if r.seq > seq {
            if records.peek().is_some_and(|next| next.seq < r.seq) {
                return Err(VerifyError::Reordered { seq, found: r.seq });
            }
            return Err(VerifyError::Missing { after: seq.saturating_sub(1), next: r.seq });
        }
        if r.seq < seq {
            return Err(VerifyError::Reordered { seq, found: r.seq });
        }
        if !same(&r.prev_hash, prev_hash) {
            return Err(VerifyError::Inserted { seq });
        }
        if let Some(t) = latest_time
            && r.entry.time_ms < t.saturating_sub(CLOCK_TOLERANCE_MS)
        {
            return Err(VerifyError::ClockWentBack { seq });
        }
        while cp_at < cps.len() && cps[cp_at].seq <= seq {
            if cps[cp_at].seq == seq && !same(&cps[cp_at].hash, &r.hash) {
                return Err(VerifyError::CheckpointMismatch { seq });
            }
            cp_at += 1;
        }

        latest_time = Some(latest_time.map_or(r.entry.time_ms, |t| t.max(r.entry.time_ms)));
        prev_hash = &r.hash;
        last_seq = Some(seq);
        expected = Some(seq.saturating_add(1));
        count += 1;
    }

    let last = match (last_seq, full) {
        (Some(s), _) => s,
        (None, true) => 0,
        (None, false) => return Ok(count),
    };
    if let Some(beyond) = cps[cp_at..].iter().map(|c| c.seq).filter(|&s| s > last).max() {
        return Err(VerifyError::Truncated { checkpoint: beyond, last });
    }
    Ok(count)
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
            out.push(chain(&KEY, seq, e, &prev));
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
                Some(k) => compute_hash(&k, 6, &forged.entry, &forged.sentence, &forged.prev_hash),
                None => {
                    use sha2::Digest;
                    hex::encode(Sha256::digest(canonical_bytes(6, &forged.entry, &forged.sentence, &forged.prev_hash)))
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
            other[i] = chain(&KEY, other[i].seq, other[i].entry.clone(), &prev);
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
            rewritten.push(chain(&KEY, r.seq, e, &prev));
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
        l[2] = chain(&KEY, 3, e, &l[1].hash);
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
        l.push(chain(&KEY, 21, e, &prev));
        let lines: Vec<String> = l.iter().map(to_json_line).collect();
        assert!(lines.iter().all(|s| !s.contains('\n')));
        let back: Vec<Record> = lines.iter().map(|s| serde_json::from_str(s)).collect::<Result<_, _>>().unwrap();
        assert_eq!(back, l);
        assert_eq!(verify(&KEY, &back, None, &[]), Ok(21));
        // Key order in args does not matter: same bytes whichever way the map was built.
        let r = &back[20];
        let mut reordered = r.entry.clone();
        reordered.args = json!({"parameters": {"A": "2", "B": "1"}, "a": {"b": "é\u{1}\"\\", "y": [1, -2, 3.5, null, true]}, "z": 1});
        assert_eq!(
            canonical_bytes(r.seq, &reordered, &r.sentence, &r.prev_hash),
            canonical_bytes(r.seq, &r.entry, &r.sentence, &r.prev_hash)
        );
        let text = String::from_utf8(canonical_bytes(1, &r.entry, "s", GENESIS)).unwrap();
        assert!(text.starts_with(r#"{"agent":"release-bot","allowed":true,"args":{"a":{"b":"é\u0001\"\\","y":[1,-2,3.5,null,true]},"parameters":{"A":"2","B":"1"},"z":1},"build_number":null,"#), "{text}");
        assert!(text.contains(r#""schema_version":1,"sentence":"s","seq":1,"surface":"mcp","#), "{text}");
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
}
