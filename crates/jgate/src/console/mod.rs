//! The administrator's web console at `/console/` (issue #12), served by `jgate serve` beside MCP
//! and the proxy. Server-rendered HTML (minijinja templates, autoescaped) with a little vanilla
//! JavaScript of our own; every asset is embedded in the binary (jgate runs in air-gapped
//! networks).
//!
//! This module is the shell: sessions (cookie `jgate_session`, HttpOnly, SameSite=Strict, Secure
//! behind TLS), the CSRF token of every form (derived from the session token, so any replica can
//! check it), the Origin check of every POST, the security headers, templates and the error page.
//! Every change an administrator makes calls the same audited `Gate` functions as the CLI, as
//! `Admin { name, surface: Web }`; nothing here decides policy or writes audit records.
//!
//! One module per page group: `auth` (login, one-time links, logout), `controllers`, `agents`
//! (with the access matrix), `approvals` (the inbox of held calls), `audit` (with live updates),
//! `connect`.

mod agents;
mod approvals;
mod audit;
mod auth;
mod connect;
mod controllers;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, Request};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use gate::audit::Surface;
use gate::{Admin, Gate, GateError};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Where the console is mounted.
pub const PREFIX: &str = "/console";
/// The session cookie (its value is the session token; the store keeps only its hash).
pub const SESSION_COOKIE: &str = "jgate_session";
/// The login form's own CSRF cookie (double submit: there is no session yet).
pub const LOGIN_COOKIE: &str = "jgate_login";

/// The console's shared state.
#[derive(Clone)]
pub struct Console(Arc<Inner>);

struct Inner {
    gate: Arc<Gate>,
    env: minijinja::Environment<'static>,
    /// The audit chain's last verification (it reads the whole log): reused for a few seconds.
    /// The chain's last verification: shown until the instant given, then run again.
    verified: std::sync::Mutex<Option<(std::time::Instant, bool, String)>>,
}

impl Console {
    fn gate(&self) -> &Gate {
        &self.0.gate
    }
}

/// The console's routes, to be nested at [`PREFIX`].
pub fn routes(gate: Arc<Gate>) -> Router {
    let console = Console(Arc::new(Inner { gate, env: templates(), verified: Default::default() }));
    Router::new()
        .route("/", get(|| async { Redirect::to("/console/controllers") }))
        .route("/static/{file}", get(asset))
        .merge(auth::routes())
        .merge(controllers::routes())
        .merge(agents::routes())
        .merge(approvals::routes())
        .merge(audit::routes())
        .merge(connect::routes())
        .fallback(not_found)
        .with_state(console)
        .layer(middleware::from_fn(security_headers))
        .layer(middleware::from_fn(remember_page))
}

/// The request header that carries the page a GET asked for, set here and only here (a client's
/// own is removed), so a login can return to it.
const PAGE_HEADER: &str = "x-jgate-console-page";

async fn remember_page(mut req: Request, next: Next) -> Response {
    req.headers_mut().remove(PAGE_HEADER);
    if req.method() == axum::http::Method::GET {
        let page = req.extensions().get::<axum::extract::OriginalUri>().map(|u| u.0.to_string());
        if let Some(v) = page.filter(|p| return_target(p).is_some()).and_then(|p| HeaderValue::from_str(&p).ok()) {
            req.headers_mut().insert(PAGE_HEADER, v);
        }
    }
    next.run(req).await
}

/// A page of the console a login may return to: a path under /console/ (never another site, a
/// scheme-relative `//host`, a backslash, the login pages themselves or an asset), printable ASCII.
pub(crate) fn return_target(page: &str) -> Option<&str> {
    let ok = page.starts_with("/console/")
        && page.len() <= 1024
        && !page.contains("//")
        && !page.contains('\\')
        && page.bytes().all(|b| b.is_ascii_graphic())
        && !["/console/login", "/console/link", "/console/logout", "/console/static/"]
            .iter()
            .any(|p| page.starts_with(p));
    ok.then_some(page)
}

/// The login page's address, returning to the page the request asked for (if it may).
fn login_location(headers: &HeaderMap, expired: bool) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    if expired {
        query.append_pair("expired", "1");
    }
    if let Some(page) = headers.get(PAGE_HEADER).and_then(|v| v.to_str().ok()).and_then(return_target) {
        query.append_pair("next", page);
    }
    let query = query.finish();
    if query.is_empty() { "/console/login".to_string() } else { format!("/console/login?{query}") }
}

fn templates() -> minijinja::Environment<'static> {
    let mut env = minijinja::Environment::new();
    // Names end in .html: autoescaped. A template that does not parse is a build defect, found by
    // the tests (every page is rendered there); here it only logs.
    for (name, text) in [
        ("layout.html", include_str!("templates/layout.html")),
        ("login.html", include_str!("templates/login.html")),
        ("link.html", include_str!("templates/link.html")),
        ("error.html", include_str!("templates/error.html")),
        ("_check.html", include_str!("templates/_check.html")),
        ("controllers.html", include_str!("templates/controllers.html")),
        ("controller.html", include_str!("templates/controller.html")),
        ("agents.html", include_str!("templates/agents.html")),
        ("agent.html", include_str!("templates/agent.html")),
        ("agent_key.html", include_str!("templates/agent_key.html")),
        ("approvals.html", include_str!("templates/approvals.html")),
        ("audit.html", include_str!("templates/audit.html")),
        ("connect.html", include_str!("templates/connect.html")),
    ] {
        if let Err(e) = env.add_template(name, text) {
            tracing::error!(template = name, error = %e, "a console template does not parse");
        }
    }
    env.add_filter("time", |ms: i64| crate::admin::format_time(ms));
    env
}

/// The embedded assets: our own CSS and JavaScript, nothing third-party.
async fn asset(Path(file): Path<String>) -> Response {
    let (body, kind) = match file.as_str() {
        "console.css" => (include_str!("static/console.css"), "text/css; charset=utf-8"),
        "console.js" => (include_str!("static/console.js"), "text/javascript; charset=utf-8"),
        _ => return (StatusCode::NOT_FOUND, "no such asset").into_response(),
    };
    ([(header::CONTENT_TYPE, kind), (header::CACHE_CONTROL, "no-cache")], body).into_response()
}

/// The headers of every console response: a CSP without inline script or style, no framing, no
/// sniffing, the referrer only to the console itself (login links carry a token in their query;
/// with `same-origin` browsers also send the real Origin on the console's own POSTs, which
/// [`same_origin`] checks), and no caching of pages (assets excepted).
async fn security_headers(req: Request, next: Next) -> Response {
    let is_asset = req.uri().path().starts_with("/static/") || req.uri().path().contains("/static/");
    let mut r = next.run(req).await;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; \
             form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    h.insert("cross-origin-opener-policy", HeaderValue::from_static("same-origin"));
    if !is_asset {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    r
}

async fn not_found(console: axum::extract::State<Console>) -> Response {
    console.page_error(StatusCode::NOT_FOUND, "There is no such page in the console.", None)
}

// ---------------------------------------------------------------------------------------------
// sessions, CSRF, origin

/// A request with a valid console session.
pub struct Authed {
    pub admin: String,
    token: String,
    pub csrf: String,
}

impl Authed {
    /// The administrator, as the audit names them.
    pub fn admin(&self) -> Admin {
        Admin::new(&self.admin, Surface::Web)
    }
}

/// The CSRF token of a session: derived from its token (so it needs no storage and any replica
/// can check it), and useless without the session cookie.
fn csrf_of(token: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"jgate console csrf\0");
    h.update(token.as_bytes());
    hex::encode(&h.finalize()[..20])
}

/// A cookie's value from the request.
fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim().to_string())
}

/// Whether the request came over TLS (a TLS-terminating proxy in front says so): cookies are
/// then marked Secure.
fn secure(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|p| p.split(',').next().is_some_and(|p| p.trim().eq_ignore_ascii_case("https")))
}

/// A `Set-Cookie` value: HttpOnly, SameSite=Strict, Path=/console, Secure behind TLS.
fn set_cookie(headers: &HeaderMap, name: &str, value: &str, max_age_secs: i64) -> HeaderValue {
    let secure = if secure(headers) { "; Secure" } else { "" };
    let text = format!("{name}={value}; Path={PREFIX}; HttpOnly; SameSite=Strict; Max-Age={max_age_secs}{secure}");
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static("jgate_invalid=1"))
}

/// The client's address (for rate limiting and the audit).
fn client_addr(req_ext: &axum::http::Extensions) -> String {
    req_ext.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip().to_string()).unwrap_or_else(|| "unknown".into())
}

/// The page `jgate` is seen at by the browser: scheme and Host (for snippets and links).
fn base_url(headers: &HeaderMap) -> String {
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or("127.0.0.1:8765");
    let scheme = if secure(headers) { "https" } else { "http" };
    format!("{scheme}://{host}")
}

/// A POST from another site is refused: when the browser names the Origin (or a Referer), its
/// host must be this one. (SameSite=Strict already keeps the cookie off cross-site requests;
/// this also covers the login form, which has no session yet.)
fn same_origin(headers: &HeaderMap) -> bool {
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or_default();
    // Pages are served with `Referrer-Policy: same-origin`, under which a browser names the real
    // Origin on same-origin POSTs and "null" on cross-site ones: "null" is refused.
    let from =
        headers.get(header::ORIGIN).or_else(|| headers.get(header::REFERER)).map(|v| v.to_str().unwrap_or("null"));
    match from {
        None => true,
        Some("null") => false,
        Some(v) => url::Url::parse(v).ok().is_some_and(|u| {
            // host_str keeps an IPv6 address's brackets, as Host does; a default port is left out
            // of both.
            let authority = match (u.host_str(), u.port()) {
                (Some(h), Some(p)) => format!("{h}:{p}"),
                (Some(h), None) => h.to_string(),
                _ => return false,
            };
            authority.eq_ignore_ascii_case(host)
        }),
    }
}

impl Console {
    /// The session of the request, or the answer to give instead: a redirect to the login page
    /// (no session, or an expired one), or an error page when the store cannot answer.
    async fn authed(&self, headers: &HeaderMap) -> Result<Authed, Response> {
        let Some(token) = cookie(headers, SESSION_COOKIE) else {
            return Err(Redirect::to(&login_location(headers, false)).into_response());
        };
        match self.gate().console_session(&token).await {
            Ok(Some(s)) => Ok(Authed { admin: s.admin, csrf: csrf_of(&token), token }),
            Ok(None) => Err(Redirect::to(&login_location(headers, true)).into_response()),
            Err(e) => Err(self.page_error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string(), None)),
        }
    }

    /// [`Console::authed`] for a POST: also the form's CSRF token and the Origin.
    async fn authed_post(&self, headers: &HeaderMap, form: &Form) -> Result<Authed, Response> {
        let authed = self.authed(headers).await?;
        let given = form.get("csrf");
        if !same_origin(headers) || !bool::from(given.as_bytes().ct_eq(authed.csrf.as_bytes())) {
            return Err(self.page_error(
                StatusCode::FORBIDDEN,
                "This form was refused: its security token is missing or does not match your session (the page may \
                 be from an earlier session, or the request came from another site). Nothing was changed.",
                Some(&authed),
            ));
        }
        Ok(authed)
    }

    /// Renders a template with the layout's common values.
    fn render(&self, name: &str, authed: Option<&Authed>, ctx: minijinja::Value) -> Response {
        self.render_status(StatusCode::OK, name, authed, ctx)
    }

    fn render_status(
        &self,
        status: StatusCode,
        name: &str,
        authed: Option<&Authed>,
        ctx: minijinja::Value,
    ) -> Response {
        let common = minijinja::context! {
            admin => authed.map(|a| a.admin.clone()),
            csrf => authed.map(|a| a.csrf.clone()),
        };
        let merged = minijinja::context! { ..ctx, ..common };
        match self.0.env.get_template(name).and_then(|t| t.render(merged)) {
            Ok(html) => (status, [(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response(),
            Err(e) => {
                tracing::error!(template = name, error = %e, "a console page could not be rendered");
                let body = format!(
                    "<!doctype html><title>jgate console error</title><p>This page could not be shown (template {name}). \
                     The error is in jgate's log.</p><p><a href=\"/console/\">Back to the console</a></p>"
                );
                (StatusCode::INTERNAL_SERVER_ERROR, [(header::CONTENT_TYPE, "text/html; charset=utf-8")], body)
                    .into_response()
            }
        }
    }

    /// The error page (in the layout, with the way back).
    fn page_error(&self, status: StatusCode, message: &str, authed: Option<&Authed>) -> Response {
        self.render_status(
            status,
            "error.html",
            authed,
            minijinja::context! { status => status.as_u16(), message => message },
        )
    }
}

/// A gate error as a person reads it on a page (its message names the fix).
fn say(e: &GateError) -> String {
    e.to_string()
}

// ---------------------------------------------------------------------------------------------
// forms

/// A submitted form (application/x-www-form-urlencoded), read leniently: a missing field is "".
#[derive(Debug, Default)]
pub struct Form(Vec<(String, String)>);

impl Form {
    fn parse(body: &Bytes) -> Form {
        Form(form_urlencoded::parse(body).map(|(k, v)| (k.into_owned(), v.into_owned())).collect())
    }

    fn get(&self, name: &str) -> &str {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str()).unwrap_or("")
    }

    /// A trimmed, non-empty field.
    fn opt(&self, name: &str) -> Option<String> {
        Some(self.get(name).trim()).filter(|v| !v.is_empty()).map(str::to_string)
    }

    fn checked(&self, name: &str) -> bool {
        matches!(self.get(name), "on" | "true" | "1" | "yes")
    }

    /// A textarea's non-empty lines.
    fn lines(&self, name: &str) -> Vec<String> {
        self.get(name).lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_string).collect()
    }

    /// The form's fields for re-rendering it after an error (secrets left out by the caller).
    fn values(&self, except: &[&str]) -> BTreeMap<String, String> {
        self.0.iter().filter(|(k, _)| !except.contains(&k.as_str())).cloned().collect()
    }
}

/// A notice after a change (post-redirect-get): a fixed code in the query, its sentence here.
fn notice(code: &str, name: &str) -> Option<String> {
    let text = match code {
        "saved" => format!("Controller {name} was saved."),
        "updated" => format!("Controller {name} was updated."),
        "removed" => format!("Controller {name} was removed."),
        "tested" => format!("Controller {name} was tested."),
        "disabled" => format!("Agent {name} was disabled: its keys and calls are refused."),
        "enabled" => format!("Agent {name} was enabled."),
        "deleted" => format!("Agent {name} was deleted."),
        "granted" => "The grant was added.".to_string(),
        "ungranted" => "The grant was removed.".to_string(),
        "set" => "The access was changed.".to_string(),
        "limited" => format!("The rate limits of agent {name} were saved."),
        "approved" => format!("Approval {name} was approved: the call goes on."),
        "denied" => format!("Approval {name} was denied: the agent is told the reason."),
        _ => return None,
    };
    Some(text)
}

/// A redirect after a POST that changed something.
fn done(path: &str, code: &str, name: &str) -> Response {
    let q: String =
        form_urlencoded::Serializer::new(String::new()).append_pair("done", code).append_pair("name", name).finish();
    Redirect::to(&format!("{path}?{q}")).into_response()
}
