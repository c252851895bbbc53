//! MCP resources: a build and its console as `jenkins://` URIs (docs/tools.md, Resources).
//!
//! - `jenkins://<controller>/job/<folder>/.../<job>/<number>`: the build, as `get_build` answers;
//! - the same followed by `/log`: the tail of its console, as `get_build_log` answers (the same
//!   line count and size budget).
//!
//! A read is a call of that operation through [`Gate::call_with`], so the policy, the audit and
//! the sanitizer apply exactly as for the tools. A URI that does not parse, an unknown
//! controller, a job the agent may not read and a missing build all get one answer, "Resource
//! not found" with the URI (hidden and missing are indistinguishable).
//!
//! Subscriptions (`resources/subscribe`, handshake-era sessions and stdio; `subscriptions/listen`
//! on 2026-07-28) live with the session's handler: at most [`MAX_SUBSCRIPTIONS`], each checked and
//! audited like a read when made. A build event of a subscribed build (from the gate's bus: this
//! process's hook, or on PostgreSQL any replica's) sends `notifications/resources/updated` with
//! the URI as the client sent it, after checking that the agent may still read it; one it may no
//! longer read is dropped. `resources/list` lists this session's subscriptions: cheap, bounded,
//! and never more than the agent asked for.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use gate::events::Event;
use gate::{CallOptions, Caller, Gate, GateError};
use rmcp::model::{
    ErrorCode, ListResourceTemplatesResult, ListResourcesResult, PaginatedRequestParams, ReadResourceResult, Resource,
    ResourceContents, ResourceTemplate, ResourceUpdatedNotificationParam,
};
use rmcp::service::{Peer, SubscriptionContext};
use rmcp::{ErrorData as McpError, RoleServer};
use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

/// The URI scheme of jgate's resources.
pub const SCHEME: &str = "jenkins://";
/// The most subscriptions one session holds.
pub const MAX_SUBSCRIPTIONS: usize = 100;
/// `resources/list` answers in pages of this many.
pub const PAGE: usize = 50;
/// The longest URI parsed (longer ones are refused as not found).
const MAX_URI: usize = 2048;
/// The largest build number Jenkins can have (a Java int).
const MAX_BUILD: u64 = i32::MAX as u64;

/// What a URI names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Build,
    Log,
}

/// A parsed resource URI: the job is its canonical full name (`policy::normalize_job_path`),
/// the name the policy checks and the call sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildUri {
    pub controller: String,
    pub job: String,
    pub number: u64,
    pub kind: Kind,
}

impl BuildUri {
    /// The canonical spelling of this URI (what `parse` reads back as the same resource); the
    /// parser's tests check that every accepted URI reads back through it.
    #[cfg(test)]
    pub fn uri(&self) -> String {
        let mut s = format!("{SCHEME}{}/job", encode(&self.controller));
        // `job_url_path` is `job/A/job/B` with every name encoded: keep the names.
        for name in gate::policy::job_url_path(&self.job).split('/').skip(1).step_by(2) {
            s.push('/');
            s.push_str(name);
        }
        s.push_str(&format!("/{}", self.number));
        if self.kind == Kind::Log {
            s.push_str("/log");
        }
        s
    }

    /// The operation a read of this resource is.
    fn operation(&self) -> &'static str {
        match self.kind {
            Kind::Build => "get_build",
            Kind::Log => "get_build_log",
        }
    }

    fn is_event_of(&self, e: &Event) -> bool {
        e.is_build(&self.controller, &self.job, self.number)
    }
}

/// Percent-encodes every byte outside RFC 3986's unreserved set.
#[cfg(test)]
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Strict percent-decoding: every `%` starts two hex digits and the result is UTF-8.
fn decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Characters a URI may hold as written: RFC 3986 unreserved, sub-delims, `:` `@` `%` `/`.
/// Anything else (spaces, `?`, `#`, `\`, controls, non-ASCII) is refused, not guessed at.
fn plain_uri_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-._~!$&'()*+,;=:@%/".contains(c)
}

/// Parses a resource URI; `None` for anything that is not exactly one build (or its log).
///
/// Refused: another scheme, a query or fragment, characters outside [`plain_uri_char`], an
/// empty, `.` or `..` segment (so a trailing slash too), a malformed `%` escape, a controller
/// with userinfo or a port, a build that is not a plain decimal number from 1 to 2147483647
/// (no sign, no leading zero, no permalink: a subscription names one build), and a job name the
/// policy's normalisation refuses (encoded dot segments, a folder named `job` …).
pub fn parse(uri: &str) -> Option<BuildUri> {
    if uri.len() > MAX_URI || !uri.chars().all(plain_uri_char) {
        return None;
    }
    let rest = uri.strip_prefix(SCHEME)?;
    let (authority, path) = rest.split_once('/')?;
    if authority.contains(['@', ':']) {
        return None;
    }
    let controller = decode(authority).filter(|c| !c.is_empty() && !c.contains(|c: char| c.is_whitespace()))?;
    let mut segs: Vec<&str> = path.split('/').collect();
    if segs.first() != Some(&"job") || segs.iter().any(|s| s.is_empty() || *s == "." || *s == "..") {
        return None;
    }
    segs.remove(0);
    let kind = if segs.last() == Some(&"log") {
        segs.pop();
        Kind::Log
    } else {
        Kind::Build
    };
    let number = segs.pop()?;
    if number.is_empty() || number.len() > 10 || !number.bytes().all(|b| b.is_ascii_digit()) || number.starts_with('0')
    {
        return None;
    }
    let number: u64 = number.parse().ok().filter(|n| (1..=MAX_BUILD).contains(n))?;
    if segs.is_empty() || segs.iter().any(|s| decode(s).is_none()) {
        return None;
    }
    // The URL form (`job/A/job/B`, names encoded once), so that the policy's normalisation
    // decides what each name is, as it does for every other spelling.
    let url_form: Vec<String> = segs.iter().map(|s| format!("job/{s}")).collect();
    let job = gate::policy::normalize_job_path(&url_form.join("/")).ok()?;
    Some(BuildUri { controller, job, number, kind })
}

/// The "Resource not found" error: -32002 with the URI (rmcp sends -32602 to 2026-07-28 peers,
/// as that revision says).
pub fn not_found(uri: &str) -> McpError {
    McpError::resource_not_found("Resource not found", Some(json!({ "uri": uri })))
}

/// The two URI templates.
pub fn templates() -> ListResourceTemplatesResult {
    ListResourceTemplatesResult::with_all_items(vec![
        ResourceTemplate::new("jenkins://{controller}/job/{+job}/{number}", "build")
            .with_title("A Jenkins build")
            .with_description(
                "A build as get_build answers it (result, timing, parameters, causes). job is the job's full name, \
                 folders separated by '/', each name percent-encoded; number is the build number. Subscribe to be \
                 told when the build starts or ends.",
            )
            .with_mime_type("application/json"),
        ResourceTemplate::new("jenkins://{controller}/job/{+job}/{number}/log", "build-log")
            .with_title("A Jenkins build's console log")
            .with_description(
                "The last lines of a build's console, as get_build_log answers (bounded, secrets redacted, untrusted \
                 text). job and number as for the build.",
            )
            .with_mime_type("text/plain"),
    ])
}

/// Maps a failed call to the resource's error: refused, missing and unknown are one answer.
async fn read_error(gate: &Gate, b: &BuildUri, uri: &str, e: GateError) -> McpError {
    match e {
        GateError::Denied { .. } => not_found(uri),
        GateError::Failed { status: Some(404), .. } => not_found(uri),
        // The controller is looked up after the decision: a name no controller has.
        GateError::Failed { status: None, .. } if matches!(gate.store().controller(&b.controller).await, Ok(None)) => {
            not_found(uri)
        }
        other => crate::mcp::list_error(other),
    }
}

/// The audited call a read (or a subscription's check) is.
async fn call(gate: &Gate, caller: &Caller, b: &BuildUri, uri: &str, op: &str) -> Result<Value, McpError> {
    let args = json!({ "job": b.job, "build": b.number });
    match gate.call_with(caller, Some(&b.controller), op, args, CallOptions::default()).await {
        Ok(clean) => Ok(clean.into_inner()),
        Err(e) => Err(read_error(gate, b, uri, e).await),
    }
}

/// `resources/read`.
pub async fn read(gate: &Gate, caller: &Caller, uri: &str) -> Result<ReadResourceResult, McpError> {
    let b = parse(uri).ok_or_else(|| not_found(uri))?;
    let v = call(gate, caller, &b, uri, b.operation()).await?;
    let contents = match b.kind {
        Kind::Build => ResourceContents::text(serde_json::to_string(&v).unwrap_or_default(), uri)
            .with_mime_type("application/json"),
        Kind::Log => {
            let summary = v.get("summary").and_then(Value::as_str).unwrap_or("");
            let text = v.get("text").and_then(Value::as_str).unwrap_or("");
            ResourceContents::text(format!("{summary}\n{text}"), uri)
        }
    };
    Ok(ReadResourceResult::new(vec![contents]))
}

struct Subs {
    /// By the URI as the client sent it (notifications carry that spelling).
    map: BTreeMap<String, BuildUri>,
    /// Whether the event watcher runs.
    watching: bool,
}

/// One session's subscriptions. Dropped with the session's handler; its watcher stops then.
pub struct Subscriptions {
    subs: Arc<Mutex<Subs>>,
    alive: CancellationToken,
}

impl Default for Subscriptions {
    fn default() -> Self {
        Subscriptions {
            subs: Arc::new(Mutex::new(Subs { map: BTreeMap::new(), watching: false })),
            alive: CancellationToken::new(),
        }
    }
}

impl Drop for Subscriptions {
    fn drop(&mut self) {
        self.alive.cancel();
    }
}

fn lock(m: &Mutex<Subs>) -> MutexGuard<'_, Subs> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn too_many() -> McpError {
    McpError::new(
        ErrorCode::INVALID_REQUEST,
        format!(
            "this session already has {MAX_SUBSCRIPTIONS} resource subscriptions (the limit); unsubscribe from one \
             (resources/unsubscribe) before subscribing to another"
        ),
        None,
    )
}

impl Subscriptions {
    /// `resources/subscribe`: checked (and audited) as a read of the build; refused as not found
    /// when the agent may not read it or it does not exist.
    pub async fn subscribe(
        &self,
        gate: &Arc<Gate>,
        caller: &Caller,
        uri: &str,
        peer: Peer<RoleServer>,
    ) -> Result<(), McpError> {
        let b = parse(uri).ok_or_else(|| not_found(uri))?;
        if !self.room_for(uri)? {
            return Ok(());
        }
        call(gate, caller, &b, uri, "get_build").await?;
        let start = {
            // Checked again: another subscription may have been made during the read.
            self.room_for(uri)?;
            let mut s = lock(&self.subs);
            s.map.insert(uri.to_string(), b);
            !std::mem::replace(&mut s.watching, true)
        };
        if start {
            let (subs, alive, gate, agent) =
                (self.subs.clone(), self.alive.clone(), gate.clone(), caller.agent.clone());
            let rx = gate.events().subscribe();
            tokio::spawn(async move {
                let send = |uri: String| {
                    let peer = peer.clone();
                    async move { peer.notify_resource_updated(ResourceUpdatedNotificationParam::new(uri)).await.is_ok() }
                };
                tokio::select! {
                    _ = alive.cancelled() => {}
                    _ = watch(&gate, &agent, rx, &subs, send) => {}
                }
                // Stopped (the client can no longer be reached): a later subscription starts anew.
                lock(&subs).watching = false;
            });
        }
        Ok(())
    }

    /// Whether `uri` is a new subscription (false: already subscribed), or the limit's error.
    fn room_for(&self, uri: &str) -> Result<bool, McpError> {
        let s = lock(&self.subs);
        if s.map.contains_key(uri) {
            return Ok(false);
        }
        if s.map.len() >= MAX_SUBSCRIPTIONS {
            return Err(too_many());
        }
        Ok(true)
    }

    /// `resources/unsubscribe`: by the URI as subscribed, or any spelling of the same resource.
    /// Unsubscribing from what is not subscribed is not an error (the outcome is the same).
    pub fn unsubscribe(&self, uri: &str) {
        let mut s = lock(&self.subs);
        if s.map.remove(uri).is_none()
            && let Some(b) = parse(uri)
        {
            s.map.retain(|_, v| !(v.kind == b.kind && same_build(v, &b)));
        }
    }

    /// `resources/list`: this session's subscriptions, in pages of [`PAGE`].
    pub fn list(&self, request: Option<PaginatedRequestParams>) -> Result<ListResourcesResult, McpError> {
        let start = match request.and_then(|r| r.cursor) {
            None => 0,
            Some(c) => c.parse::<usize>().map_err(|_| {
                McpError::invalid_params("the cursor is not one jgate gave (pass next_cursor as it came)", None)
            })?,
        };
        let s = lock(&self.subs);
        let page: Vec<Resource> = s.map.iter().skip(start).take(PAGE).map(|(uri, b)| resource(uri, b)).collect();
        let mut r = ListResourcesResult::with_all_items(page);
        if start + PAGE < s.map.len() {
            r.next_cursor = Some((start + PAGE).to_string());
        }
        Ok(r)
    }
}

fn same_build(a: &BuildUri, b: &BuildUri) -> bool {
    a.controller == b.controller && a.number == b.number && gate::ops::same_item(&a.job, &b.job)
}

fn resource(uri: &str, b: &BuildUri) -> Resource {
    match b.kind {
        Kind::Build => Resource::new(uri, format!("{} #{}", b.job, b.number)).with_mime_type("application/json"),
        Kind::Log => Resource::new(uri, format!("{} #{} console", b.job, b.number)).with_mime_type("text/plain"),
    }
}

/// Sends `send(uri)` for each subscription an event of the bus concerns (all of them when events
/// were lost), once the agent is seen to still be allowed to read it; drops those it may not.
/// Returns when the bus closes or a send fails (the session is gone).
async fn watch<F, Fut>(
    gate: &Gate,
    agent: &str,
    mut rx: tokio::sync::broadcast::Receiver<Arc<Event>>,
    subs: &Mutex<Subs>,
    send: F,
) where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    loop {
        let due: Vec<(String, BuildUri)> = match rx.recv().await {
            Ok(e) => {
                lock(subs).map.iter().filter(|(_, b)| b.is_event_of(&e)).map(|(u, b)| (u.clone(), b.clone())).collect()
            }
            // Events were lost: any subscribed build may have changed.
            Err(RecvError::Lagged(_)) => lock(subs).map.iter().map(|(u, b)| (u.clone(), b.clone())).collect(),
            Err(RecvError::Closed) => return,
        };
        for (uri, b) in due {
            match gate.may_read_job(agent, &b.controller, b.operation(), &b.job).await {
                Ok(true) => {
                    if !send(uri).await {
                        return;
                    }
                }
                Ok(false) => {
                    // The grant was revoked (or the agent disabled): no more news of it.
                    lock(subs).map.remove(&uri);
                }
                Err(e) => tracing::warn!(error = %e, "could not check a resource subscription; not notified"),
            }
        }
    }
}

/// The subset of a `subscriptions/listen` request jgate accepts: resource URIs that parse, at
/// most [`MAX_SUBSCRIPTIONS`]; no list-changed notifications (the lists do not change).
pub fn accepted_filter(requested: &rmcp::model::SubscriptionFilter) -> rmcp::model::SubscriptionFilter {
    let uris: Vec<String> = requested
        .resource_subscriptions
        .iter()
        .flatten()
        .filter(|u| parse(u).is_some())
        .take(MAX_SUBSCRIPTIONS)
        .cloned()
        .collect();
    rmcp::model::SubscriptionFilter::builder().resource_subscriptions(uris).build()
}

/// `subscriptions/listen` (2026-07-28): each accepted URI is checked and audited as a read first
/// (one the agent may not read, or that does not exist, is never announced); then build events
/// are announced on the listen stream until the client ends it.
pub async fn listen(gate: &Arc<Gate>, caller: &Caller, cx: SubscriptionContext) {
    let rx = gate.events().subscribe();
    let subs = Mutex::new(Subs { map: BTreeMap::new(), watching: true });
    for uri in cx.accepted().resource_subscriptions.iter().flatten() {
        if let Some(b) = parse(uri)
            && call(gate, caller, &b, uri, "get_build").await.is_ok()
        {
            lock(&subs).map.insert(uri.clone(), b);
        }
    }
    let sink = cx.sink().clone();
    let send = |uri: String| {
        let sink = sink.clone();
        async move { sink.notify_resource_updated(uri).await.is_ok() }
    };
    tokio::select! {
        _ = cx.cancelled() => {}
        _ = watch(gate, &caller.agent, rx, &subs, send) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(uri: &str) -> Option<(String, String, u64, Kind)> {
        parse(uri).map(|b| (b.controller, b.job, b.number, b.kind))
    }

    #[test]
    fn a_build_and_its_log_parse_and_read_back_as_themselves() {
        assert_eq!(
            p("jenkins://prod/job/release/deploy/12"),
            Some(("prod".into(), "release/deploy".into(), 12, Kind::Build))
        );
        assert_eq!(p("jenkins://prod/job/release/deploy/12/log").map(|t| t.3), Some(Kind::Log));
        // A job named like the log suffix, or like a number, is still a job.
        assert_eq!(p("jenkins://prod/job/log/3").map(|t| (t.1, t.2)), Some(("log".into(), 3)));
        assert_eq!(p("jenkins://prod/job/12/5/log").map(|t| (t.1, t.2, t.3)), Some(("12".into(), 5, Kind::Log)));
        for uri in [
            "jenkins://prod/job/release/deploy/12",
            "jenkins://prod/job/release/deploy/12/log",
            "jenkins://prod/job/shop/feature%252Fx/3",
            "jenkins://prod/job/my%20job/1",
            "jenkins://ci-eu/job/a/2147483647",
        ] {
            let b = parse(uri).expect(uri);
            assert_eq!(b.uri(), uri, "canonical spelling");
            assert_eq!(parse(&b.uri()), Some(b), "round trip of {uri}");
        }
    }

    #[test]
    fn encoded_segments_go_through_the_policys_normalisation() {
        // One name, encoded once: a space, a branch name with an encoded slash (never a folder).
        assert_eq!(p("jenkins://prod/job/my%20job/1").map(|t| t.1), Some("my job".into()));
        assert_eq!(p("jenkins://prod/job/shop/feature%2Fx/3").map(|t| t.1), Some("shop/feature%2Fx".into()));
        assert_eq!(p("jenkins://prod/job/shop/feature%252Fx/3").map(|t| t.1), Some("shop/feature%2Fx".into()));
        // Letter case is kept for display; matching folds it as Jenkins does.
        assert_eq!(p("jenkins://prod/job/Release/Deploy/4").map(|t| t.1), Some("Release/Deploy".into()));
        // Controller names may be encoded too.
        assert_eq!(p("jenkins://c%2Dx/job/a/1").map(|t| t.0), Some("c-x".into()));
    }

    #[test]
    fn what_is_ambiguous_or_not_one_build_is_refused() {
        for uri in [
            "",
            "jenkins://prod/job/a/12/",                     // trailing slash
            "jenkins://prod/job/a//12",                     // empty segment
            "jenkins://prod//job/a/12",                     // empty segment
            "jenkins://prod/job/../b/12",                   // dot segment
            "jenkins://prod/job/a/./12",                    // dot segment
            "jenkins://prod/job/%2e%2e/b/12",               // encoded dot segment
            "jenkins://prod/job/a%2F..%2Fb/12",             // dots inside a decoded name
            "jenkins://prod/job/a/lastBuild",               // permalink: not one build
            "jenkins://prod/job/a/12x",                     // not numeric
            "jenkins://prod/job/a/-1",                      // sign
            "jenkins://prod/job/a/+1",                      // sign
            "jenkins://prod/job/a/0",                       // no build 0
            "jenkins://prod/job/a/012",                     // leading zero: two spellings of one number
            "jenkins://prod/job/a/2147483648",              // more than Jenkins can number
            "jenkins://prod/job/a/99999999999999999999999", // huge
            "jenkins://prod/job/12",                        // no job
            "jenkins://prod/job/log",                       // no job, no number
            "jenkins://prod/a/12",                          // not under job/
            "jenkins://prod/job/a/12/console",              // not a resource of a build
            "jenkins://prod/job/a/12/log/log",              // not a resource of a build
            "jenkins://prod",                               // nothing
            "jenkins:///job/a/12",                          // no controller
            "jenkins://u@prod/job/a/12",                    // userinfo
            "jenkins://prod:8080/job/a/12",                 // port
            "JENKINS://prod/job/a/12",                      // another spelling of the scheme
            "http://prod/job/a/12",                         // another scheme
            "jenkins://prod/job/a/12?x=1",                  // query
            "jenkins://prod/job/a/12#log",                  // fragment
            "jenkins://prod/job/a b/12",                    // raw space
            "jenkins://prod/job/a\\b/12",                   // backslash
            "jenkins://prod/job/a%zz/12",                   // malformed escape
            "jenkins://prod/job/a%/12",                     // malformed escape
            "jenkins://prod/job/%ff/12",                    // not UTF-8
            "jenkins://prod/job/a%0A/12",                   // encoded control character
            "jenkins://prod/job/job/x/12",                  // a folder named job: ambiguous with a URL path
            "jenkins://prod/job/d\u{e9}j\u{e0}/1",          // non-ASCII, not encoded
        ] {
            assert_eq!(parse(uri), None, "{uri:?} must be refused");
        }
        let long = format!("jenkins://prod/job/{}/1", "a".repeat(MAX_URI));
        assert_eq!(parse(&long), None, "over the length limit");
    }

    fn event(id: i64, job: &str, number: u64) -> Event {
        Event {
            id,
            controller: "prod".into(),
            job: job.into(),
            number,
            queue_id: None,
            phase: gate::events::Phase::Completed,
            status: Some("SUCCESS"),
            time_ms: 0,
        }
    }

    #[tokio::test]
    async fn events_of_subscribed_builds_are_announced_only_while_the_agent_may_read_them() {
        use gate::catalog::Group;
        use gate::policy::Level;
        use gate::{Admin, secrets::MasterKey, store::Store};
        let dir = std::env::temp_dir().join(format!("jgate-resources-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let store = Store::open(&dir.join("jgate.db").display().to_string()).await.expect("store");
        let g = Arc::new(Gate::open(store, MasterKey::generate(), None).await.expect("gate"));
        let admin = Admin::local_cli();
        g.create_agent(&admin, "watcher", "", None).await.expect("agent");
        g.grant(&admin, "watcher", Group::Status, Level::Read, None, Some("team/a"), vec![]).await.expect("grant a");
        let b = g.grant(&admin, "watcher", Group::Status, Level::Read, None, Some("team/b"), vec![]).await.expect("b");
        let subs = Mutex::new(Subs { map: BTreeMap::new(), watching: true });
        for uri in ["jenkins://prod/job/team/a/1", "jenkins://prod/job/team/A/1/log", "jenkins://prod/job/team/b/1"] {
            lock(&subs).map.insert(uri.into(), parse(uri).expect("uri"));
        }
        // Revoked before any event: the check sees the grants as they are now.
        assert!(g.remove_grant(&admin, b.id).await.expect("ungrant"));
        let (tx, mut sent) = tokio::sync::mpsc::unbounded_channel::<String>();
        let rx = g.events().subscribe();
        let watching = {
            let g = g.clone();
            async move {
                let send = |uri: String| {
                    let tx = tx.clone();
                    async move { tx.send(uri).is_ok() }
                };
                watch(&g, "watcher", rx, &subs, send).await;
                subs
            }
        };
        let task = tokio::spawn(watching);
        // Another build of a subscribed job, another controller: nothing. Then team/b's build (no
        // longer readable), then team/a's: only team/a's two resources are announced, in order.
        g.events().deliver(event(1, "team/a", 2));
        g.events().deliver(Event { controller: "test".into(), ..event(2, "team/a", 1) });
        g.events().deliver(event(3, "team/b", 1));
        g.events().deliver(event(4, "TEAM/a", 1));
        let mut got = vec![sent.recv().await.expect("first"), sent.recv().await.expect("second")];
        got.sort();
        assert_eq!(got, ["jenkins://prod/job/team/A/1/log", "jenkins://prod/job/team/a/1"]);
        assert!(sent.try_recv().is_err(), "nothing else was announced");
        // The unreadable subscription is gone; the readable ones stay.
        drop(sent);
        g.events().deliver(event(5, "team/a", 1));
        let subs = task.await.expect("the watcher stops once nobody can be told");
        let left: Vec<String> = lock(&subs).map.keys().cloned().collect();
        assert_eq!(left, ["jenkins://prod/job/team/A/1/log", "jenkins://prod/job/team/a/1"]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// On PostgreSQL, an event received by one replica is announced to subscriptions held by
    /// another (both gates on one database; the second listens as `jgate serve` does).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_build_event_received_by_another_replica_is_announced() {
        use gate::catalog::Group;
        use gate::policy::Level;
        use gate::{Admin, NewController, secrets::MasterKey, store::Store};
        const TOKEN: &str = "11eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee";
        let pg =
            std::env::var("JGATE_TEST_POSTGRES").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
        let schema = format!("jgr_{}_{}", std::process::id(), gate::store::now_ms() % 1_000_000_000);
        sqlx::any::install_default_drivers();
        let mut conn = match <sqlx::AnyConnection as sqlx::Connection>::connect(&pg).await {
            Ok(c) => c,
            Err(e) if std::env::var_os("CI").is_some() => panic!("PostgreSQL at {pg} is unreachable under CI: {e}"),
            Err(e) => return eprintln!("SKIPPING PostgreSQL (not under CI): {pg} unreachable: {e}"),
        };
        let create = format!("CREATE SCHEMA {schema}");
        sqlx::query(sqlx::AssertSqlSafe(create)).execute(&mut conn).await.expect("schema");
        let url = format!("{pg}?options=-c%20search_path%3D{schema}");
        let dir = std::env::temp_dir().join(format!("jgate-resources-pg-{schema}"));
        std::fs::create_dir_all(&dir).expect("dir");
        let key = dir.join("master.key");
        let open = || async {
            let (master, _) = MasterKey::load_or_create("JGATE_TEST_UNSET_MASTER_KEY", &key).expect("key");
            Arc::new(Gate::open(Store::open(&url).await.expect("store"), master, None).await.expect("gate"))
        };
        let (a, b) = (open().await, open().await);
        b.listen_events(&url);
        let scenario = "[controller]\nquiet_period = 0\n[[jobs]]\npath = \"team/a\"\nscript = \"echo a\"\n";
        let (_twin, server) =
            jenkins_twin::start(scenario, &[("admin".into(), "admin".into(), TOKEN.into())]).await.expect("twin");
        let admin = Admin::local_cli();
        let controller = NewController {
            name: "prod".into(),
            url: server.url(),
            username: "admin".into(),
            token: secrecy::SecretString::from(TOKEN.to_string()),
            password: false,
            allow_private: vec![format!("127.0.0.1:{}", server.addr().port())],
            ca_pem: None,
            insecure: false,
        };
        a.add_controller(&admin, controller, false).await.expect("controller");
        a.create_agent(&admin, "watcher", "", None).await.expect("agent");
        a.grant(&admin, "watcher", Group::Status, Level::Read, None, None, vec![]).await.expect("grant");
        let secret = a.create_hook(&admin, "prod", false).await.expect("hook");
        let subs = Mutex::new(Subs { map: BTreeMap::new(), watching: true });
        let uri = "jenkins://prod/job/team/a/1";
        lock(&subs).map.insert(uri.into(), parse(uri).expect("uri"));
        let (tx, mut sent) = tokio::sync::mpsc::unbounded_channel::<String>();
        let rx = b.events().subscribe();
        let b2 = b.clone();
        let task = tokio::spawn(async move {
            let send = |uri: String| {
                let tx = tx.clone();
                async move { tx.send(uri).is_ok() }
            };
            watch(&b2, "watcher", rx, &subs, send).await;
        });
        // Jenkins posts to replica A; the watcher lives on replica B.
        let payload = json!({"name": "a", "url": "job/team/job/a/", "build": {"number": 1, "queue_id": 3,
            "phase": "COMPLETED", "status": "SUCCESS", "url": "job/team/job/a/1/", "full_url": "x"}});
        let body = payload.to_string().into_bytes();
        let outcome = a.receive_hook("prod", &secret, Some(&body)).await;
        assert!(matches!(outcome, gate::events::HookOutcome::Accepted(_)), "{outcome:?}");
        let got = tokio::time::timeout(std::time::Duration::from_secs(20), sent.recv()).await;
        task.abort();
        let drop_schema = format!("DROP SCHEMA IF EXISTS {schema} CASCADE");
        let _ = sqlx::query(sqlx::AssertSqlSafe(drop_schema)).execute(&mut conn).await;
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(got.expect("announced within 20 s").as_deref(), Some(uri));
    }

    #[test]
    fn a_subscription_is_found_again_by_any_spelling_and_listed_in_pages() {
        let s = Subscriptions::default();
        {
            let mut m = lock(&s.subs);
            for n in 1..=(PAGE as u64 + 3) {
                let uri = format!("jenkins://prod/job/a/{n}");
                let b = parse(&uri).expect("uri");
                m.map.insert(uri, b);
            }
        }
        let first = s.list(None).expect("page");
        assert_eq!(first.resources.len(), PAGE);
        let next = first.next_cursor.clone().expect("a second page");
        let second = s.list(Some(PaginatedRequestParams::default().with_cursor(Some(next)))).expect("page 2");
        assert_eq!(second.resources.len(), 3);
        assert!(second.next_cursor.is_none());
        assert!(s.list(Some(PaginatedRequestParams::default().with_cursor(Some("x".into())))).is_err());
        // Over the limit: a clear refusal; the same URI again is no new subscription.
        for n in (PAGE as u64 + 4)..=(MAX_SUBSCRIPTIONS as u64) {
            let uri = format!("jenkins://prod/job/a/{n}");
            let b = parse(&uri).expect("uri");
            lock(&s.subs).map.insert(uri, b);
        }
        assert_eq!(s.room_for("jenkins://prod/job/a/1").ok(), Some(false), "already subscribed");
        let full = s.room_for("jenkins://prod/job/b/1").expect_err("over the limit");
        assert!(
            full.message.contains("100 resource subscriptions") && full.message.contains("unsubscribe"),
            "{full:?}"
        );
        s.unsubscribe("jenkins://prod/job/a/100");
        assert_eq!(s.room_for("jenkins://prod/job/b/1").ok(), Some(true), "room again after an unsubscribe");
        // Another spelling of build 7 (letter case) unsubscribes it.
        s.unsubscribe("jenkins://prod/job/A/7");
        assert!(!lock(&s.subs).map.contains_key("jenkins://prod/job/a/7"));
        assert_eq!(lock(&s.subs).map.len(), MAX_SUBSCRIPTIONS - 2);
    }
}
