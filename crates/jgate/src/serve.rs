//! `jgate serve` (streamable HTTP MCP at /mcp, /healthz) and `jgate mcp` (stdio).

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use clap::Args;
use gate::Gate;
use rmcp::ServiceExt;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use tokio_util::sync::CancellationToken;

use crate::admin::{Global, open};
use crate::mcp::{AgentIdentity, JgateMcp};
use crate::mcp_sessions::{ClaimRefused, IdClaim, McpSessions};

#[derive(Args)]
pub struct ServeArgs {
    /// Address to listen on (port 0 picks a free port; the ready line shows it).
    #[arg(long, default_value = "127.0.0.1:8765")]
    pub addr: SocketAddr,
    /// A further Host name clients use to reach jgate (repeatable), e.g. jgate.internal:8765.
    #[arg(long = "allowed-host")]
    pub allowed_hosts: Vec<String>,
    /// A further browser Origin allowed to call /mcp (repeatable), e.g. https://console.example.com.
    #[arg(long = "allowed-origin")]
    pub allowed_origins: Vec<String>,
}

/// Marks a request whose client went away: cancelled when the response body is dropped before
/// it was sent in full (the connection closed), so the call it carries stops within seconds.
#[derive(Clone)]
pub struct ClientGone(pub CancellationToken);

/// How long a finished request's answer stays available for a stream resume.
const COMPLETED_ANSWER_TTL: std::time::Duration = std::time::Duration::from_secs(5);

/// The largest MCP request body read (tool arguments such as a job's config.xml included).
const MAX_MCP_BODY: usize = 8 * 1024 * 1024;

#[derive(Clone)]
struct McpState {
    gate: Arc<Gate>,
    sessions: Arc<McpSessions>,
    /// The Host and Origin values a direct answer accepts (the lists rmcp checks).
    direct: Arc<crate::mcp_direct::Allowed>,
}

const SESSION_HEADER: &str = "mcp-session-id";

/// Bearer authentication of /mcp: the agent key becomes an [`AgentIdentity`] in the request;
/// sessions are bound to the agent that opened them; a dropped connection cancels its call.
async fn bearer(
    State(McpState { gate, sessions, direct: allowed }): State<McpState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    mut req: Request,
    next: Next,
) -> Response {
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(|k| k.trim().to_string());
    let Some(key) = presented else {
        return unauthorized(
            "missing agent key: send Authorization: Bearer <agent key> (see `jgate agent create`)",
            "invalid_request",
        );
    };
    match gate.authenticate(&key).await {
        Ok((agent, key_id)) => {
            let session = req.headers().get(SESSION_HEADER).and_then(|v| v.to_str().ok()).map(str::to_string);
            if let Some(id) = &session {
                let owner = match sessions.owner(id) {
                    Some(owner) => Some(owner),
                    // Opened on another replica (or before a restart): the store says whose it
                    // is, and rmcp restores it from there.
                    None => match gate.shared_session(id).await {
                        Ok(Some(shared)) if !shared.agent.is_empty() => {
                            if shared.agent == agent {
                                sessions.bind(id, &shared.agent).await;
                            }
                            Some(shared.agent)
                        }
                        Ok(_) => None,
                        Err(e) => return store_unavailable(&format!("jgate cannot check the MCP session now: {e}")),
                    },
                };
                if owner.is_none_or(|owner| owner != agent) {
                    // Every session was opened through a replica's bearer check, so one not
                    // bound to this agent is another agent's or none at all: both answer 404, as
                    // the MCP spec says for unknown sessions (rmcp itself would accept a DELETE of
                    // an unknown id).
                    return unread_body_answer((StatusCode::NOT_FOUND, "Not Found: Session not found").into_response());
                }
                if sessions.note_due(id, gate::shared_sessions::TOUCH_EVERY) {
                    let (gate, sessions, id) = (gate.clone(), sessions.clone(), id.clone());
                    tokio::spawn(async move {
                        match gate.touch_session(&id).await {
                            // Ended on another replica: it ends here too (this request aside).
                            Ok(false) => sessions.end(&id).await,
                            Ok(true) => {}
                            Err(e) => tracing::warn!(error = %e, "could not note an MCP session's use"),
                        }
                    });
                }
            }
            let is_delete = req.method() == axum::http::Method::DELETE;
            // A request on a session: its JSON-RPC id is claimed while it is in flight, and a
            // stream it opens (GET) counts as the session's use for as long as it is open.
            let mut claim = None;
            let mut direct = None;
            if let Some(sid) = &session
                && req.method() == axum::http::Method::POST
            {
                let (parts, bytes) = match read_body(req).await {
                    Ok(read) => read,
                    Err(too_large) => return too_large,
                };
                if let Some(id) = jsonrpc_id(&bytes) {
                    match sessions.claim(sid, &id.to_string()) {
                        Ok(c) => {
                            direct = crate::mcp_direct::take(&allowed, &parts, &bytes);
                            claim = Some(c);
                        }
                        Err(ClaimRefused::Duplicate) => return duplicate_id(&id),
                        // Closed after its owner was checked (idle, or deleted meanwhile).
                        Err(ClaimRefused::NoSession) => {
                            return (StatusCode::NOT_FOUND, "Not Found: Session not found").into_response();
                        }
                    }
                } else if let Some(request) = crate::mcp_direct::cancelled_request(&bytes) {
                    // A call answered directly is cancelled here; rmcp still reads the
                    // notification for its own.
                    sessions.cancel_request(sid, &request);
                }
                req = Request::from_parts(parts, axum::body::Body::from(bytes));
            } else if let Some(sid) = &session
                && req.method() == axum::http::Method::GET
            {
                claim = sessions.stream_claim(sid);
            } else if session.is_none()
                && req.method() == axum::http::Method::POST
                && req.headers().get("mcp-protocol-version").is_some_and(|v| v.as_bytes() == b"2026-07-28")
            {
                // A 2026-07-28 request may be a tool call answered directly.
                let (parts, bytes) = match read_body(req).await {
                    Ok(read) => read,
                    Err(too_large) => return too_large,
                };
                direct = crate::mcp_direct::take(&allowed, &parts, &bytes);
                req = Request::from_parts(parts, axum::body::Body::from(bytes));
            }
            let gone = CancellationToken::new();
            // Made before the answer: a client that hangs up before it also cancels its call.
            let guard = gone.clone().drop_guard();
            let client_addr = Some(peer.ip().to_string());
            let response = match direct {
                Some(call) => {
                    // A session's call is cancelled through its claim too (notifications/cancelled,
                    // the session's end); a 2026-07-28 call only by its connection.
                    let cancel = claim.as_ref().map(IdClaim::cancel_token).unwrap_or_default();
                    let caller = gate::Caller {
                        agent: agent.clone(),
                        key_id: Some(key_id),
                        surface: gate::audit::Surface::Mcp,
                        client_addr,
                        request_id: call.request_id(),
                    };
                    crate::mcp_direct::answer(gate.clone(), caller, call, cancel, gone.clone()).await
                }
                None => {
                    req.extensions_mut().insert(ClientGone(gone.clone()));
                    req.extensions_mut().insert(AgentIdentity { agent: agent.clone(), key_id, client_addr });
                    next.run(req).await
                }
            };
            match (&session, response.headers().get(SESSION_HEADER).and_then(|v| v.to_str().ok())) {
                (None, Some(new)) => {
                    // Bound in the store before the client learns the id, so that its next
                    // request may go to any replica.
                    if let Err(e) = gate.bind_session(new, &agent).await {
                        tracing::warn!(error = %e, "could not share an MCP session with other replicas");
                    }
                    if sessions.bind(new, &agent).await {
                        let gate = gate.clone();
                        tokio::spawn(async move {
                            if let Err(e) = gate.prune_sessions().await {
                                tracing::warn!(error = %e, "could not prune old MCP sessions");
                            }
                        });
                    }
                }
                (Some(id), _) if is_delete && response.status().is_success() => sessions.forget(id),
                _ => {}
            }
            // The guard lives as long as the response body: if the client hangs up first, the
            // body is dropped unfinished and the call is cancelled.
            let (parts, body) = response.into_parts();
            Response::from_parts(parts, axum::body::Body::new(Holding { body, _held: (guard, claim) }))
        }
        Err(gate::GateError::BadKey(why)) => unauthorized(&format!("invalid agent key: {why}"), "invalid_token"),
        Err(e) => {
            tracing::error!(error = %e, "authentication failed");
            store_unavailable(&format!("jgate cannot check the agent key now: {e}"))
        }
    }
}

/// A response body that keeps `_held` alive until the body is finished or dropped. It is the
/// inner body in every other respect — its size too, so a complete answer still goes out with
/// `Content-Length` rather than chunked.
struct Holding<T> {
    body: axum::body::Body,
    _held: T,
}

impl<T: Send + Unpin + 'static> http_body::Body for Holding<T> {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        std::pin::Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// A request's head and whole body (at most [`MAX_MCP_BODY`]); a larger body is answered 413.
async fn read_body(req: Request) -> Result<(axum::http::request::Parts, axum::body::Bytes), Response> {
    let (parts, body) = req.into_parts();
    match axum::body::to_bytes(body, MAX_MCP_BODY).await {
        Ok(bytes) => Ok((parts, bytes)),
        Err(_) => {
            Err(unread_body_answer((StatusCode::PAYLOAD_TOO_LARGE, "the MCP request is over 8 MiB").into_response()))
        }
    }
}

/// 503 when the store cannot answer. The store's message names the problem and the fix; it holds
/// no secret (database URLs appear only in the log of `jgate serve`, never in these messages).
fn store_unavailable(message: &str) -> Response {
    let body = serde_json::json!({ "error": "temporarily_unavailable", "error_description": message });
    let mut r = (StatusCode::SERVICE_UNAVAILABLE, body.to_string()).into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    unread_body_answer(r)
}

/// The answer to a request whose JSON-RPC id is already in flight on its session.
fn duplicate_id(id: &serde_json::Value) -> Response {
    let body = serde_json::json!({
        "jsonrpc": "2.0",
        "id": id,
        "error": {"code": -32600, "message": format!(
            "request id {id} is already used by a request in flight on this session; give each request its own id"
        )},
    });
    let mut r = (StatusCode::CONFLICT, body.to_string()).into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

/// An answer given before the request's body was read: the connection is closed after it.
/// Otherwise the server drops the connection on its own once it sees the unread body, and a
/// client that already sent its next request on it (kept alive) loses that request with no answer.
pub fn unread_body_answer(mut r: Response) -> Response {
    r.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    r
}

fn unauthorized(message: &str, code: &str) -> Response {
    let body = serde_json::json!({ "error": code, "error_description": message }).to_string();
    let mut r = (StatusCode::UNAUTHORIZED, body).into_response();
    let challenge = format!("Bearer realm=\"jgate\", error=\"{code}\"");
    if let Ok(v) = HeaderValue::from_str(&challenge) {
        r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    unread_body_answer(r)
}

/// The tap on accepted connections: Nagle's algorithm would hold small answers on kept-alive
/// connections for ~40 ms.
fn no_delay(stream: &mut tokio::net::TcpStream) {
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!(error = %e, "could not set TCP_NODELAY");
    }
}

pub async fn serve(g: &Global, args: ServeArgs) -> anyhow::Result<()> {
    let gate = Arc::new(open(g).await?);
    // Heartbeat, and close writes that other (stopped) jgate processes left without an outcome.
    gate.maintain(std::time::Duration::from_secs(5));
    // PostgreSQL: build events received by any replica wake waits here too.
    gate.listen_events(&crate::admin::database_url(g));
    let listener =
        tokio::net::TcpListener::bind(args.addr).await.with_context(|| format!("cannot listen on {}", args.addr))?;
    let local = listener.local_addr()?;
    let listener = axum::serve::ListenerExt::tap_io(listener, no_delay);
    if let Some(warning) = plain_http_warning(local) {
        eprintln!("{warning}");
    }
    let app = app(gate, local, &args.allowed_hosts, &args.allowed_origins);
    println!("jgate serving on http://{local} (MCP endpoint http://{local}/mcp)");
    axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .context("the server stopped")?;
    Ok(())
}

/// On an address other hosts can reach, agent keys (and answers) travel in plain HTTP.
fn plain_http_warning(local: SocketAddr) -> Option<String> {
    (!local.ip().is_loopback()).then(|| {
        format!(
            "warning: jgate listens on {local}, reachable from other hosts, in plain HTTP: agent keys and answers \
             cross the network unencrypted unless TLS terminates in front of jgate (a reverse proxy such as nginx \
             or Caddy with a certificate). Bind 127.0.0.1 to keep it local."
        )
    })
}

/// The HTTP application: `/healthz`, the authenticated MCP endpoint `/mcp`, and the governed
/// Jenkins proxy at `/jenkins/<controller>/`.
pub fn app(gate: Arc<Gate>, local: SocketAddr, allowed_hosts: &[String], allowed_origins: &[String]) -> Router {
    let port = local.port();
    let mut hosts: Vec<String> = vec!["localhost".into(), "127.0.0.1".into(), "::1".into()];
    if !local.ip().is_loopback() && !local.ip().is_unspecified() {
        hosts.push(local.ip().to_string());
    }
    hosts.extend(allowed_hosts.iter().cloned());
    let mut origins: Vec<String> =
        vec![format!("http://localhost:{port}"), format!("http://127.0.0.1:{port}"), format!("http://[::1]:{port}")];
    origins.extend(allowed_origins.iter().cloned());
    let direct = Arc::new(crate::mcp_direct::Allowed::new(&hosts, &origins, port));
    let config = StreamableHttpServerConfig::default()
        .with_allowed_hosts(hosts)
        // rmcp leaves Origin validation off unless origins are configured: turn it on.
        .with_allowed_origins(origins)
        .enforce_origin_validation();
    // Keep-alives every few seconds also reveal a client that went away mid-call.
    let mut config = config
        .with_sse_keep_alive(Some(std::time::Duration::from_secs(5)))
        // Stateless (2026-07-28) calls answered by one message get it as plain JSON, without
        // SSE framing; a call that reports progress first still streams (rmcp falls back to SSE).
        .with_json_response(true);
    // Sessions of clients before 2026-07-28 live in the store too: any replica can serve them.
    config.session_store = Some(Arc::new(crate::session_store::StoreSessions { gate: gate.clone() }));
    let factory_gate = gate.clone();
    let mut manager = LocalSessionManager::default();
    // rmcp keeps every finished request's answer for a while so that a client can resume its
    // stream (Last-Event-ID); by default for 60 s, which under load is tens of thousands of
    // answers held per session. A jgate call whose client went away is cancelled, so there is
    // nothing later to resume: a few seconds cover a reconnect.
    manager.session_config.completed_cache_ttl = COMPLETED_ANSWER_TTL;
    // Idle sessions are ended by `McpSessions`, which sees the tool calls answered directly too;
    // rmcp's worker sees only its own requests and would end a session in steady use.
    manager.session_config.keep_alive = None;
    let manager = Arc::new(manager);
    let mcp = StreamableHttpService::new(move || Ok(JgateMcp::http(factory_gate.clone())), manager.clone(), config);
    let state = McpState { gate: gate.clone(), sessions: McpSessions::new(manager), direct };
    let mcp_routes = Router::new().fallback_service(mcp).layer(middleware::from_fn_with_state(state, bearer));
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .nest_service("/mcp", mcp_routes)
        .nest(crate::exec::PREFIX, crate::exec::routes(gate.clone()))
        .nest(crate::hooks::PREFIX, crate::hooks::routes(gate.clone()))
        .nest(crate::console::PREFIX, crate::console::routes(gate.clone()))
        // The nested router does not see `/console/` (with its slash).
        .route("/console/", get(|| async { axum::response::Redirect::to("/console/controllers") }))
        .nest(crate::proxy::PREFIX, crate::proxy::routes(gate))
}

/// `jgate mcp`: MCP over stdio for one agent (key from JGATE_AGENT_KEY).
pub async fn stdio(g: &Global) -> anyhow::Result<()> {
    let key = std::env::var("JGATE_AGENT_KEY").map_err(|_| {
        crate::cli_error::CliError::new(crate::cli_error::Kind::Auth, "JGATE_AGENT_KEY is not set")
            .fix("set JGATE_AGENT_KEY to the agent's key (keys are never passed as arguments)")
    })?;
    let gate = Arc::new(crate::admin::open_stdio(g).await?);
    gate.maintain(std::time::Duration::from_secs(5));
    gate.listen_events(&crate::admin::database_url(g));
    let (agent, key_id) = gate.authenticate(&key).await?;
    let handler = JgateMcp::stdio(gate, AgentIdentity { agent, key_id, client_addr: None });
    let service = handler.serve(rmcp::transport::stdio()).await.context("MCP initialization over stdio failed")?;
    service.waiting().await.context("the MCP session ended with an error")?;
    Ok(())
}

/// The JSON-RPC id of a request body, if it has one that is not null. Only the id is read (rmcp
/// parses the request itself); a body that does not fit that shape (a key given twice, say) is read
/// whole, as JSON objects are read elsewhere: the last value of a repeated key counts.
fn jsonrpc_id(body: &[u8]) -> Option<serde_json::Value> {
    #[derive(serde::Deserialize)]
    struct IdOnly {
        #[serde(default)]
        id: Option<serde_json::Value>,
    }
    // A struct would also be read from an array (a batch): only an object has an id.
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return None;
    }
    let id = match serde_json::from_slice::<IdOnly>(body) {
        Ok(m) => m.id,
        Err(_) => serde_json::from_slice::<serde_json::Value>(body).ok().and_then(|v| v.get("id").cloned()),
    };
    id.filter(|i| !i.is_null())
}

#[cfg(test)]
mod listener_tests {
    use axum::serve::{Listener, ListenerExt};

    #[tokio::test]
    async fn accepted_sockets_have_nagle_off() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let mut listener = listener.tap_io(super::no_delay);
        let client = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let (accepted, _) = listener.accept().await;
        assert!(accepted.nodelay().expect("nodelay"), "the accepted socket still has Nagle's algorithm on");
        drop(client);
    }
}

#[cfg(test)]
mod jsonrpc_id_tests {
    use serde_json::json;

    use super::jsonrpc_id;

    #[test]
    fn the_id_is_read_as_the_whole_request_would_be() {
        let id = |body: &str| jsonrpc_id(body.as_bytes());
        assert_eq!(id(r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"id":99}}"#), Some(json!(7)));
        assert_eq!(id(r#"{"id":"a-1","method":"x"}"#), Some(json!("a-1")));
        // Notifications and null ids claim nothing.
        assert_eq!(id(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#), None);
        assert_eq!(id(r#"{"jsonrpc":"2.0","id":null,"method":"x"}"#), None);
        // A key given twice: the last value, as a whole parse reads it (not skipped unclaimed).
        assert_eq!(id(r#"{"id":1,"method":"x","id":2}"#), Some(json!(2)));
        // Batches, other JSON and garbage carry no id here.
        assert_eq!(id(r#"[{"id":1,"method":"x"}]"#), None);
        assert_eq!(id("42"), None);
        assert_eq!(id("{not json"), None);
        assert_eq!(id(""), None);
    }
}
