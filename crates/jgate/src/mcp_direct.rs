//! A plain `tools/call` answered by jgate itself, beside rmcp: on a session (the revisions
//! before 2026-07-28) and self-contained (2026-07-28).
//!
//! rmcp hands every request of a session to the session's worker task, which hands it to the
//! session's service task, which runs the handler in a task of its own; the answer travels back
//! the same way and goes out as an SSE stream. A 2026-07-28 request gets a service built for it
//! and two tasks. Measured on `gateway_bench`, a read cost ~0.1–0.2 ms more that way, and 20–30%
//! of the calls per second. A plain tool call needs none of it: it is run here and answered as one
//! JSON message, which the streamable HTTP transport allows for any request.
//!
//! Only requests rmcp would answer the same way are taken (see [`take`]); everything else — a
//! progress token, another method, an unlisted Host or Origin, an unusual `Accept`, headers rmcp
//! checks against the body — goes to rmcp unchanged. The answer is shaped as rmcp's handler shapes
//! it for that revision (tests/mcp/test_direct.py compares the two on the wire). A call still
//! running after [`QUICK`] is answered as an SSE stream with keep-alives instead, so a long wait
//! neither looks dead to a proxy nor keeps a client that went away unnoticed. A direct call is
//! cancelled like rmcp's: by its client going away and, on a session, by `notifications/cancelled`
//! naming it and by the session's end.

use std::convert::Infallible;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::FutureExt;
use gate::{CallOptions, Caller, Gate};
use rmcp::ErrorData as McpError;
use rmcp::model::{
    CallToolRequestParams, CallToolResult, JsonRpcVersion2_0, ProtocolVersion, RequestId, RequestMetaObject,
    ServerJsonRpcMessage, ServerResult,
};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How long a call may run before its answer becomes an SSE stream (headers must be sent before
/// the answer is known, and a kept-alive stream is what a long call needs).
pub const QUICK: Duration = Duration::from_secs(1);

/// Keep-alive comments on a streamed answer (as rmcp's own streams).
const KEEP_ALIVE: Duration = Duration::from_secs(5);

/// The Host and Origin values a direct answer accepts: exactly those of `jgate serve`'s lists
/// (lower-cased; an entry without a port with and without the listening port), so that a request
/// rmcp's DNS-rebinding check could refuse is always left to rmcp, which answers it (403, or
/// serves it when its broader matching allows it).
#[derive(Debug, Clone, Default)]
pub struct Allowed {
    hosts: Vec<String>,
    origins: Vec<String>,
}

impl Allowed {
    pub fn new(hosts: &[String], origins: &[String], port: u16) -> Allowed {
        let mut exact = Vec::new();
        for h in hosts.iter().map(|h| h.trim().to_ascii_lowercase()) {
            // An IPv6 literal is bracketed in a Host header.
            let h = if h.matches(':').count() > 1 && !h.starts_with('[') { format!("[{h}]") } else { h };
            let has_port = axum::http::uri::Authority::try_from(h.as_str()).is_ok_and(|a| a.port_u16().is_some());
            if !has_port {
                exact.push(format!("{h}:{port}"));
            }
            exact.push(h);
        }
        Allowed { hosts: exact, origins: origins.iter().map(|o| o.trim().to_ascii_lowercase()).collect() }
    }

    /// Whether the request's Host (exactly one) and Origin (none, or exactly one) are listed.
    fn admits(&self, headers: &HeaderMap) -> bool {
        let listed = |list: &[String], v: &str| list.contains(&v.to_ascii_lowercase());
        let host_listed = only(headers, "host").is_some_and(|h| listed(&self.hosts, h));
        let origin_listed =
            !headers.contains_key(header::ORIGIN) || only(headers, "origin").is_some_and(|o| listed(&self.origins, o));
        host_listed && origin_listed
    }
}

/// A tool call this module answers.
#[derive(Debug)]
pub struct DirectCall {
    id: RequestId,
    params: CallToolRequestParams,
    revision: Revision,
}

/// Which lifecycle the call belongs to: its answer is shaped as rmcp shapes it for that peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Revision {
    /// A session opened by `initialize` (revisions before 2026-07-28).
    Session,
    /// A self-contained 2026-07-28 request.
    Stateless,
}

impl DirectCall {
    /// The id a [`Caller`] carries for this request, as rmcp's handler names it.
    pub fn request_id(&self) -> String {
        format!("mcp-{}", self.id)
    }
}

/// The `_meta` keys a 2026-07-28 call may carry and still be answered here (the lifecycle's own;
/// a progress token or a log level needs rmcp).
const STATELESS_META: [&str; 3] = [
    "io.modelcontextprotocol/protocolVersion",
    "io.modelcontextprotocol/clientCapabilities",
    "io.modelcontextprotocol/clientInfo",
];

/// A plain `tools/call` as its bytes must read to be answered here: exactly these members, each
/// of the type rmcp reads it as (the version marker, the request id), so whatever this accepts
/// rmcp reads as the same `CallToolRequest`. Anything else — another member, a duplicate, a
/// continuation (`inputResponses`, `requestState`) — fails here and goes to rmcp. Read straight
/// from the bytes: rmcp's message type buffers the whole message before choosing its variant.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PlainCall {
    #[serde(rename = "jsonrpc")]
    _jsonrpc: JsonRpcVersion2_0,
    id: RequestId,
    method: String,
    params: PlainParams,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PlainParams {
    name: String,
    #[serde(default)]
    arguments: Option<rmcp::model::JsonObject>,
    #[serde(rename = "_meta", default)]
    meta: Option<rmcp::model::JsonObject>,
}

/// The call, if this request is a `tools/call` that rmcp would answer the same way. Always: its
/// Host and Origin are listed (rmcp's DNS-rebinding check would pass), it accepts both JSON and
/// SSE answers, is sent as JSON, and its params hold the tool's name and arguments only. Then
/// either
/// - on a session (`Mcp-Session-Id`): one of the session revisions in `MCP-Protocol-Version`, no
///   other `Mcp-*` header (rmcp checks those against the body) and no `_meta` (a progress token
///   needs rmcp's notifications); or
/// - without one: `MCP-Protocol-Version: 2026-07-28`, exactly one `Mcp-Method: tools/call` and
///   one `Mcp-Name` equal to the tool's name, no other `Mcp-*` header, a `_meta` holding that
///   revision's required keys (as rmcp checks them) and nothing beyond the lifecycle's keys, and
///   a tool that exists (rmcp maps protocol errors to HTTP statuses for this revision).
pub fn take(allowed: &Allowed, parts: &Parts, body: &[u8]) -> Option<DirectCall> {
    let headers = &parts.headers;
    if !allowed.admits(headers) || !accepts_json_and_sse(headers) || !is_json(headers) {
        return None;
    }
    let version = only(headers, "mcp-protocol-version")?;
    let on_session = headers.contains_key("mcp-session-id");
    let revision = if on_session {
        let session_revision =
            ProtocolVersion::KNOWN_VERSIONS.iter().any(|v| v.as_str() == version && *v < ProtocolVersion::V_2026_07_28);
        session_revision.then_some(Revision::Session)?
    } else {
        (version == ProtocolVersion::V_2026_07_28.as_str()).then_some(Revision::Stateless)?
    };
    let lifecycle_headers: &[&str] = match revision {
        Revision::Session => &["mcp-session-id", "mcp-protocol-version"],
        Revision::Stateless => &["mcp-protocol-version", "mcp-method", "mcp-name"],
    };
    if headers.keys().any(|k| k.as_str().starts_with("mcp-") && !lifecycle_headers.contains(&k.as_str())) {
        return None;
    }
    let call: PlainCall = serde_json::from_slice(body).ok()?;
    if call.method != "tools/call" {
        return None;
    }
    let PlainParams { name, arguments, meta } = call.params;
    // rmcp moves a request's `_meta` into its extensions as it reads it; here it is the map.
    let meta = RequestMetaObject::from(meta.unwrap_or_default());
    let meta_ok = match revision {
        Revision::Session => meta.is_empty(),
        Revision::Stateless => {
            meta.keys().all(|k| STATELESS_META.contains(&k.as_str()))
                && meta.missing_required_keys(&ProtocolVersion::V_2026_07_28).is_empty()
                && meta.protocol_version() == Some(ProtocolVersion::V_2026_07_28)
                && meta
                    .get(STATELESS_META[2])
                    .is_none_or(|info| serde_json::from_value::<rmcp::model::Implementation>(info.clone()).is_ok())
        }
    };
    if !meta_ok {
        return None;
    }
    if revision == Revision::Stateless
        && (only(headers, "mcp-method")? != "tools/call"
            || only(headers, "mcp-name")? != name
            || !crate::mcp::is_tool(&name))
    {
        return None;
    }
    let mut params = CallToolRequestParams::new(name);
    params.arguments = arguments;
    Some(DirectCall { id: call.id, params, revision })
}

/// The value of a header given exactly once (as text).
fn only<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    let mut values = headers.get_all(name).iter();
    match (values.next(), values.next()) {
        (Some(v), None) => v.to_str().ok(),
        _ => None,
    }
}

/// Whether `Accept` names `application/json` and `text/event-stream` plainly (no parameters: a
/// weighted entry is left to rmcp's reading of it).
fn accepts_json_and_sse(headers: &HeaderMap) -> bool {
    let (mut json, mut sse) = (false, false);
    for value in headers.get_all(header::ACCEPT).iter().filter_map(|v| v.to_str().ok()) {
        for entry in value.split(',').map(str::trim) {
            json |= entry.eq_ignore_ascii_case("application/json");
            sse |= entry.eq_ignore_ascii_case("text/event-stream");
        }
    }
    json && sse
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or("").trim())
        .is_some_and(|essence| essence.eq_ignore_ascii_case("application/json"))
}

/// Runs the call and answers it: JSON if it ends within [`QUICK`], else an SSE stream. The call
/// runs in the request's own task (a task of its own cost a hand-off to another worker thread and
/// back on every call); a call the request stops waiting for — the client hung up, or [`QUICK`]
/// passed — goes on in a task of its own, so that it ends through its cancel tokens (and audits
/// how it ended) rather than being dropped mid-way with the connection.
pub async fn answer(
    gate: Arc<Gate>,
    caller: Caller,
    call: DirectCall,
    cancel: CancellationToken,
    gone: CancellationToken,
) -> Response {
    let DirectCall { id, params, revision } = call;
    let opts = CallOptions { progress: None, cancel: Some(cancel), also_cancel: Some(gone) };
    let mut call = RunsToItsEnd::new(async move { crate::mcp::call_tool(&gate, &caller, params, opts).await });
    match tokio::time::timeout(QUICK, &mut call).await {
        Ok(done) => {
            let mut r = (StatusCode::OK, message(done, id, revision)).into_response();
            r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            r
        }
        Err(_) => streamed(tokio::spawn(call), id, revision),
    }
}

/// How a call ended: its result, or why it has none (it panicked).
type Ended = Result<Result<CallToolResult, McpError>, String>;

/// A call's future that runs to its end even if whoever polls it drops it first: then it moves
/// to a task of its own (while a runtime exists to take it).
struct RunsToItsEnd(Option<Pin<Box<dyn Future<Output = Ended> + Send>>>);

impl RunsToItsEnd {
    fn new(call: impl Future<Output = Result<CallToolResult, McpError>> + Send + 'static) -> RunsToItsEnd {
        // A panic ends the call as an error answer, as a panicking task did.
        let caught = AssertUnwindSafe(call).catch_unwind().map(|r| r.map_err(|_| "the call panicked".to_string()));
        RunsToItsEnd(Some(Box::pin(caught)))
    }
}

impl Future for RunsToItsEnd {
    type Output = Ended;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Ended> {
        let Some(call) = self.0.as_mut() else {
            return Poll::Ready(Err("the call's answer was already taken".into()));
        };
        let ended = std::task::ready!(call.as_mut().poll(cx));
        self.0 = None;
        Poll::Ready(ended)
    }
}

impl Drop for RunsToItsEnd {
    fn drop(&mut self) {
        if let Some(call) = self.0.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(call);
        }
    }
}

/// The JSON-RPC answer of a finished call.
fn message(done: Ended, id: RequestId, revision: Revision) -> Vec<u8> {
    let message = match done {
        Ok(Ok(result)) => {
            // Shaped as rmcp's handler shapes it for the peer (the parity is tested in
            // tests/mcp/test_direct.py): a session's peer gets the historical shape without
            // `resultType`; a 2026-07-28 peer gets the caching hints that revision requires.
            let mut result = ServerResult::CallToolResult(result);
            match revision {
                Revision::Session => {
                    result.strip_result_type_for_legacy_peer();
                    result.strip_non_object_output_for_legacy_peer();
                }
                Revision::Stateless => result.fill_missing_cache_hints(),
            }
            ServerJsonRpcMessage::response(result, id)
        }
        Ok(Err(e)) => ServerJsonRpcMessage::error(e, Some(id)),
        Err(e) => {
            tracing::error!(error = %e, "a tool call failed inside jgate");
            ServerJsonRpcMessage::error(
                McpError::internal_error("the call failed inside jgate; see its log", None),
                Some(id),
            )
        }
    };
    // A message of rmcp's own types always serializes; an empty body would be the client's error.
    serde_json::to_vec(&message).unwrap_or_default()
}

/// The answer of a call still running: keep-alive comments, then the message as one event.
fn streamed(task: JoinHandle<Ended>, id: RequestId, revision: Revision) -> Response {
    let events = futures_util::stream::unfold(Some((task, id)), move |state| async move {
        let (mut task, id) = state?;
        tokio::select! {
            done = &mut task => {
                let done = done.unwrap_or_else(|e| Err(format!("the call's task failed: {e}")));
                let mut event = b"event: message\ndata: ".to_vec();
                event.extend_from_slice(&message(done, id, revision));
                event.extend_from_slice(b"\n\n");
                Some((Ok::<_, Infallible>(Bytes::from(event)), None))
            }
            _ = tokio::time::sleep(KEEP_ALIVE) => Some((Ok(Bytes::from_static(b": keep-alive\n\n")), Some((task, id)))),
        }
    });
    let mut r = Response::new(Body::from_stream(events));
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

/// The request id a `notifications/cancelled` names (as the session's claims key it), if the
/// body is one.
pub fn cancelled_request(body: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Cancelled {
        method: String,
        params: Params,
    }
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Params {
        request_id: serde_json::Value,
    }
    let c: Cancelled = serde_json::from_slice(body).ok()?;
    (c.method == "notifications/cancelled").then(|| c.params.request_id.to_string())
}

#[cfg(test)]
mod tests {
    use axum::http::Request;

    use super::*;

    fn parts(headers: &[(&str, &str)]) -> Parts {
        let mut b = Request::post("/mcp");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).expect("request").into_parts().0
    }

    const PLAIN: &[(&str, &str)] = &[
        ("host", "127.0.0.1:8765"),
        ("accept", "application/json, text/event-stream"),
        ("content-type", "application/json"),
        ("mcp-protocol-version", "2025-06-18"),
        ("mcp-session-id", "s1"),
    ];

    fn with(extra: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
        let mut h: Vec<_> = PLAIN.iter().filter(|(k, _)| !extra.iter().any(|(e, _)| e == k)).copied().collect();
        h.extend_from_slice(extra);
        h
    }

    fn allowed() -> Allowed {
        let hosts = ["localhost", "127.0.0.1", "::1", "jgate.internal:9000"].map(String::from);
        Allowed::new(&hosts, &["http://localhost:8765".to_string(), "https://console.example.com".to_string()], 8765)
    }

    #[test]
    fn only_listed_hosts_and_origins_are_answered_directly() {
        let a = allowed();
        let admits = |h: &[(&str, &str)]| {
            let mut b = Request::post("/mcp");
            for (k, v) in h {
                b = b.header(*k, *v);
            }
            a.admits(&b.body(()).expect("request").into_parts().0.headers)
        };
        for host in ["127.0.0.1:8765", "LOCALHOST:8765", "localhost", "[::1]:8765", "jgate.internal:9000"] {
            assert!(admits(&[("host", host)]), "{host}");
        }
        assert!(admits(&[("host", "localhost:8765"), ("origin", "http://localhost:8765")]));
        assert!(admits(&[("host", "localhost:8765"), ("origin", "https://console.example.com")]));
        // Anything else is rmcp's to judge (it refuses most of it with 403).
        for host in ["evil.example", "127.0.0.1:9999", "jgate.internal", "jgate.internal:8765", "127.0.0.1.evil:8765"] {
            assert!(!admits(&[("host", host)]), "{host}");
        }
        assert!(!admits(&[]), "no Host");
        assert!(!admits(&[("host", "localhost:8765"), ("host", "localhost:8765")]), "two Hosts");
        assert!(!admits(&[("host", "localhost:8765"), ("origin", "http://evil.example")]));
        assert!(!admits(&[("host", "localhost:8765"), ("origin", "null")]));
        assert!(!admits(&[
            ("host", "localhost:8765"),
            ("origin", "http://localhost:8765"),
            ("origin", "http://localhost:8765")
        ]));
    }

    const CALL: &str =
        r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"get_job","arguments":{"job":"a"}}}"#;

    #[test]
    fn a_plain_tool_call_is_taken() {
        let call = take(&allowed(), &parts(PLAIN), CALL.as_bytes()).expect("taken");
        assert_eq!(call.request_id(), "mcp-7");
        assert_eq!(call.params.name, "get_job");
        let s = r#"{"jsonrpc":"2.0","id":"x-1","method":"tools/call","params":{"name":"whoami","_meta":{}}}"#;
        assert_eq!(take(&allowed(), &parts(PLAIN), s.as_bytes()).expect("taken").request_id(), "mcp-x-1");
        // An integer written in float form is the integer, as rmcp reads it.
        let s = r#"{"jsonrpc":"2.0","id":1e2,"method":"tools/call","params":{"name":"whoami","arguments":null}}"#;
        assert_eq!(take(&allowed(), &parts(PLAIN), s.as_bytes()).expect("taken").request_id(), "mcp-100");
        for v in ["2025-03-26", "2025-11-25"] {
            assert!(take(&allowed(), &parts(&with(&[("mcp-protocol-version", v)])), CALL.as_bytes()).is_some(), "{v}");
        }
    }

    #[test]
    fn everything_rmcp_must_see_is_left_to_it() {
        let left = |h: &[(&str, &str)], body: &str| take(&allowed(), &parts(h), body.as_bytes()).is_none();
        // A progress token: the notifications go through rmcp's session.
        assert!(left(
            PLAIN,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","_meta":{"progressToken":1}}}"#
        ));
        // Other methods, notifications, batches, garbage.
        assert!(left(PLAIN, r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#));
        assert!(left(PLAIN, r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#));
        assert!(left(PLAIN, &format!("[{CALL}]")));
        assert!(left(PLAIN, "{"));
        // Continuations of an input request.
        assert!(left(
            PLAIN,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","requestState":"s"}}"#
        ));
        // Anything but the plain members, each as rmcp reads it: the message is rmcp's to judge.
        assert!(left(PLAIN, r#"{"jsonrpc":"1.0","id":1,"method":"tools/call","params":{"name":"x"}}"#));
        assert!(left(PLAIN, r#"{"jsonrpc":"2.0","id":null,"method":"tools/call","params":{"name":"x"}}"#));
        assert!(left(PLAIN, r#"{"jsonrpc":"2.0","id":1.5,"method":"tools/call","params":{"name":"x"}}"#));
        assert!(left(PLAIN, r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x"},"x":1}"#));
        assert!(left(PLAIN, r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","task":{}}}"#));
        assert!(left(PLAIN, r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","id":2,"params":{"name":"x"}}"#));
        assert!(left(PLAIN, r#"{"jsonrpc":"2.0","id":1,"method":"tools/call"}"#));
        assert!(left(PLAIN, r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","arguments":[]}}"#));
        // Headers rmcp answers or checks itself.
        assert!(left(&with(&[("mcp-protocol-version", "2026-07-28")]), CALL));
        assert!(left(&with(&[("mcp-protocol-version", "1999-01-01")]), CALL));
        assert!(left(&PLAIN[..2], CALL), "no version header: rmcp's default applies");
        assert!(left(&with(&[("mcp-method", "tools/call")]), CALL));
        assert!(left(&with(&[("mcp-param-job", "a")]), CALL));
        assert!(left(&with(&[("accept", "application/json")]), CALL));
        assert!(left(&with(&[("accept", "application/json, text/event-stream;q=0")]), CALL));
        assert!(left(&with(&[("content-type", "text/plain")]), CALL));
        // The same spelled otherwise is still taken.
        assert!(!left(&with(&[("accept", "text/event-stream , APPLICATION/JSON")]), CALL));
        assert!(!left(&with(&[("content-type", "application/json; charset=utf-8")]), CALL));
    }

    const STATELESS: &[(&str, &str)] = &[
        ("host", "127.0.0.1:8765"),
        ("accept", "application/json, text/event-stream"),
        ("content-type", "application/json"),
        ("mcp-protocol-version", "2026-07-28"),
        ("mcp-method", "tools/call"),
        ("mcp-name", "get_job"),
    ];

    fn stateless_call(meta: serde_json::Value, name: &str) -> String {
        serde_json::json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
            "params": {"name": name, "arguments": {"job": "a"}, "_meta": meta}})
        .to_string()
    }

    fn lifecycle_meta() -> serde_json::Value {
        serde_json::json!({
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientCapabilities": {},
            "io.modelcontextprotocol/clientInfo": {"name": "bench", "version": "1"},
        })
    }

    #[test]
    fn a_self_contained_2026_07_28_call_is_taken_only_as_rmcp_would_answer_it() {
        let taken = |h: &[(&str, &str)], body: &str| take(&allowed(), &parts(h), body.as_bytes());
        let call = taken(STATELESS, &stateless_call(lifecycle_meta(), "get_job")).expect("taken");
        assert_eq!((call.revision, call.request_id().as_str()), (Revision::Stateless, "mcp-3"));
        let mut meta = lifecycle_meta();
        meta.as_object_mut().map(|m| m.remove("io.modelcontextprotocol/clientInfo"));
        assert!(taken(STATELESS, &stateless_call(meta, "get_job")).is_some(), "clientInfo is optional");

        let left = |h: &[(&str, &str)], body: &str| taken(h, body).is_none();
        let plain = stateless_call(lifecycle_meta(), "get_job");
        let without = |name: &str| STATELESS.iter().filter(|(k, _)| *k != name).copied().collect::<Vec<_>>();
        let replaced = |name: &'static str, value: &'static str| {
            let mut h = without(name);
            h.push((name, value));
            h
        };
        // The SEP-2243 headers must be there, once, and agree with the body.
        assert!(left(&without("mcp-method"), &plain));
        assert!(left(&without("mcp-name"), &plain));
        assert!(left(&replaced("mcp-method", "tools/list"), &plain));
        assert!(left(&replaced("mcp-name", "get_build"), &plain));
        assert!(left(&[STATELESS, &[("mcp-name", "get_job")]].concat(), &plain), "two Mcp-Name values");
        assert!(left(&[STATELESS, &[("mcp-param-job", "a")]].concat(), &plain));
        assert!(left(&replaced("mcp-protocol-version", "2025-11-25"), &plain), "a session revision without a session");
        // The request's own metadata: required keys, the same revision, nothing more.
        for (key, value) in [
            ("io.modelcontextprotocol/protocolVersion", serde_json::json!("2025-11-25")),
            ("io.modelcontextprotocol/clientCapabilities", serde_json::json!("none")),
            ("io.modelcontextprotocol/clientInfo", serde_json::json!(7)),
            ("progressToken", serde_json::json!(1)),
            ("io.modelcontextprotocol/logLevel", serde_json::json!("debug")),
        ] {
            let mut meta = lifecycle_meta();
            meta[key] = value;
            assert!(left(STATELESS, &stateless_call(meta, "get_job")), "{key}");
        }
        let mut meta = lifecycle_meta();
        meta.as_object_mut().map(|m| m.remove("io.modelcontextprotocol/clientCapabilities"));
        assert!(left(STATELESS, &stateless_call(meta, "get_job")), "no capabilities");
        assert!(left(STATELESS, &stateless_call(serde_json::json!({}), "get_job")), "no metadata");
        // An unknown tool is rmcp's protocol error, with its HTTP status.
        assert!(left(&replaced("mcp-name", "no_such_tool"), &stateless_call(lifecycle_meta(), "no_such_tool")));
    }

    #[test]
    fn a_cancellation_names_its_request_as_claims_key_it() {
        let c = |s: &str| cancelled_request(s.as_bytes());
        assert_eq!(
            c(r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":7}}"#).as_deref(),
            Some("7")
        );
        assert_eq!(
            c(r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":"a"}}"#).as_deref(),
            Some("\"a\"")
        );
        assert_eq!(c(r#"{"jsonrpc":"2.0","method":"notifications/progress","params":{"requestId":7}}"#), None);
        assert_eq!(c(CALL), None);
    }
}
