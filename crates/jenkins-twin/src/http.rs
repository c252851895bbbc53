//! The HTTP surface: authentication, CSRF crumbs, permissions and every endpoint, resolved the
//! way Stapler walks URLs (`/job/a/job/b/3/api/json`). Handlers hold the state lock only while
//! computing a response; console streams read the log without it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Request, State as AxState};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use sha2::{Digest, Sha256};

use crate::Twin;
use crate::api::{self, Ctx};
use crate::config_xml::{self, ItemKind, ParamKind};
use crate::engine;
use crate::export::{self, Flavor, Pruner};
use crate::model::{Cause, ItemId, ParamValue, Perm, State, View, ViewKind, has_perm, item_key};
use crate::pages;
use crate::scenario;
use crate::wfapi;

const MAX_BODY: usize = 16 * 1024 * 1024;

pub fn router(twin: Arc<Twin>) -> Router {
    Router::new().fallback(handle).layer(middleware::from_fn_with_state(twin.clone(), faults)).with_state(twin)
}

/// Fault injection: latency, 503 while "starting", random 500/503 (jenkins-wire.md §11).
async fn faults(AxState(twin): AxState<Arc<Twin>>, req: Request, next: Next) -> Response {
    twin.requests.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path = req.uri().path().to_string();
    if let Ok(mut by_path) = twin.requests_by_path.lock() {
        *by_path.entry(path.clone()).or_insert(0) += 1;
    }
    let (latency, fail500, fail503, starting) = match twin.faults.lock() {
        Ok(mut f) => {
            let applies = f.spec.path_prefix.as_deref().is_none_or(|p| path.starts_with(p));
            if !applies {
                (0, false, false, false)
            } else {
                let (r5, r3) = (f.spec.error_500_rate, f.spec.error_503_rate);
                let a = f.roll(r5);
                let b = !a && f.roll(r3);
                (f.spec.latency_ms, a, b, twin.started.elapsed() < f.starting_for)
            }
        }
        Err(_) => (0, false, false, false),
    };
    if latency > 0 {
        tokio::time::sleep(Duration::from_millis(latency)).await;
    }
    let version = twin.state.lock().map(|s| s.settings.version.clone()).unwrap_or_default();
    if starting || fail503 {
        let mut r = html_raw(StatusCode::SERVICE_UNAVAILABLE, pages::starting());
        r.headers_mut().insert("X-Jenkins", hv(&version));
        return r;
    }
    if fail500 {
        let trace = format!(
            "java.lang.NullPointerException: Cannot invoke \"hudson.model.Run.getResult()\" because \"r\" is null\n\tat hudson.model.Job.getBuildHealthReports(Job.java:1234)\n\tat jenkins.model.Jenkins.doDynamic(Jenkins.java:4321)\n\tat org.kohsuke.stapler.Stapler.invoke(Stapler.java:880)\nCaused by: java.io.IOException: injected fault for {path}"
        );
        let mut r = html_raw(StatusCode::INTERNAL_SERVER_ERROR, pages::oops(Some(&trace)));
        r.headers_mut().insert("X-Jenkins", hv(&version));
        return r;
    }
    next.run(req).await
}

fn hv(s: &str) -> HeaderValue {
    HeaderValue::from_bytes(s.as_bytes()).unwrap_or_else(|_| HeaderValue::from_static(""))
}

// ---------------------------------------------------------------------------------------------
// request

#[derive(Debug, Clone)]
enum Who {
    Anonymous,
    User { name: String, via_token: bool },
}

struct Req {
    method: Method,
    path: String,
    segs: Vec<String>,
    query: Vec<(String, String)>,
    form: Vec<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
    remote: SocketAddr,
    who: Who,
    perms: Vec<Perm>,
    session: Option<String>,
}

impl Req {
    fn param(&self, name: &str) -> Option<&str> {
        self.query.iter().chain(self.form.iter()).find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
    fn params(&self, name: &str) -> Vec<&str> {
        self.query.iter().chain(self.form.iter()).filter(|(k, _)| k == name).map(|(_, v)| v.as_str()).collect()
    }
    fn has(&self, perm: Perm) -> bool {
        has_perm(&self.perms, perm)
    }
    fn user_name(&self) -> String {
        match &self.who {
            Who::Anonymous => "anonymous".into(),
            Who::User { name, .. } => name.clone(),
        }
    }
    fn host_base(&self) -> String {
        let host = self.headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("localhost:8080");
        format!("http://{host}/")
    }
    fn is_post(&self) -> bool {
        self.method == Method::POST
    }
    fn content_type(&self) -> &str {
        self.headers.get(header::CONTENT_TYPE).and_then(|h| h.to_str().ok()).unwrap_or("")
    }
}

/// The text parts of a `multipart/form-data` body (a form with file parameters), as form fields.
/// File parts are read and dropped: the twin has no file parameter type (docs/twin.md).
async fn multipart_fields(content_type: &str, body: Bytes) -> Vec<(String, String)> {
    use axum::extract::FromRequest;
    let Ok(req) =
        axum::http::Request::builder().header(header::CONTENT_TYPE, content_type).body(axum::body::Body::from(body))
    else {
        return Vec::new();
    };
    let Ok(mut multipart) = axum::extract::Multipart::from_request(req, &()).await else { return Vec::new() };
    let mut out = Vec::new();
    while let Ok(Some(field)) = multipart.next_field().await {
        let name = field.name().map(str::to_string);
        let is_file = field.file_name().is_some();
        let Ok(data) = field.bytes().await else { break };
        if let (Some(name), false) = (name, is_file) {
            out.push((name, String::from_utf8_lossy(&data).into_owned()));
        }
    }
    out
}

async fn handle(
    AxState(twin): AxState<Arc<Twin>>,
    ConnectInfo(crate::RemoteAddr(remote)): ConnectInfo<crate::RemoteAddr>,
    req: Request,
) -> Response {
    let (parts, body) = req.into_parts();
    let body = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(_) => return jetty(StatusCode::PAYLOAD_TOO_LARGE, "Form too large", parts.uri.path()),
    };
    let path = parts.uri.path().to_string();
    let query: Vec<(String, String)> =
        parts.uri.query().map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect()).unwrap_or_default();
    let is_form = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|h| h.to_str().ok())
        .is_some_and(|c| c.starts_with("application/x-www-form-urlencoded"));
    let multipart = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|h| h.to_str().ok())
        .filter(|c| c.to_ascii_lowercase().starts_with("multipart/form-data"))
        .map(str::to_string);
    let form: Vec<(String, String)> = if is_form {
        form_urlencoded::parse(&body).into_owned().collect()
    } else if let Some(content_type) = multipart {
        multipart_fields(&content_type, body.clone()).await
    } else {
        Vec::new()
    };
    let segs: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned())
        .collect();
    let mut r = Req {
        method: parts.method,
        path,
        segs,
        query,
        form,
        headers: parts.headers,
        body,
        remote,
        who: Who::Anonymous,
        perms: Vec::new(),
        session: None,
    };
    let version = twin.state.lock().map(|s| s.settings.version.clone()).unwrap_or_default();
    if let Err(resp) = authenticate(&twin, &mut r) {
        return *resp;
    }
    let mut resp = dispatch(&twin, &r);
    // Every response of a Jenkins controller names its version (except Spring's 401 path).
    if resp.status() != StatusCode::UNAUTHORIZED && !resp.headers().contains_key("X-Jenkins") {
        resp.headers_mut().insert("X-Jenkins", hv(&version));
    }
    resp
}

fn session_cookie_name(st: &State) -> String {
    format!("JSESSIONID.{}", st.settings.session_hex)
}

fn authenticate(twin: &Twin, r: &mut Req) -> Result<(), Box<Response>> {
    let Ok(st) = twin.state.lock() else {
        return Err(Box::new(oops_resp(StatusCode::INTERNAL_SERVER_ERROR)));
    };
    let cookie_name = session_cookie_name(&st);
    r.session = r
        .headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|h| h.to_str().ok())
        .flat_map(|h| h.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == cookie_name)
        .map(|(_, v)| v.to_string());
    if let Some(auth) = r.headers.get(header::AUTHORIZATION) {
        let unauthorized = || {
            let mut resp = jetty(StatusCode::UNAUTHORIZED, "Unauthorized", &r.path);
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"Jenkins\""));
            resp.headers_mut().remove("X-Jenkins");
            Box::new(resp)
        };
        let text = auth.to_str().map_err(|_| unauthorized())?;
        let Some(b64) = text.strip_prefix("Basic ").or_else(|| text.strip_prefix("basic ")) else {
            // Bearer and other schemes are not Jenkins's: Spring's filter ignores them.
            return finish_anonymous(&st, r);
        };
        let decoded = base64::engine::general_purpose::STANDARD.decode(b64.trim()).map_err(|_| unauthorized())?;
        let decoded = String::from_utf8(decoded).map_err(|_| unauthorized())?;
        let (user, secret) = decoded.split_once(':').ok_or_else(unauthorized)?;
        let u = st.user(user).ok_or_else(unauthorized)?;
        let via_token = !u.token.is_empty() && constant_eq(&u.token, secret);
        if !via_token && !constant_eq(&u.password, secret) {
            return Err(unauthorized());
        }
        r.who = Who::User { name: u.name.clone(), via_token };
        r.perms = u.perms.clone();
        return Ok(());
    }
    if let Some(sid) = &r.session
        && let Some((_, user)) = st.sessions.iter().find(|(s, u)| s == sid && !u.is_empty())
        && let Some(u) = st.user(user)
    {
        r.who = Who::User { name: u.name.clone(), via_token: false };
        r.perms = u.perms.clone();
        return Ok(());
    }
    finish_anonymous(&st, r)
}

fn finish_anonymous(st: &State, r: &mut Req) -> Result<(), Box<Response>> {
    r.who = Who::Anonymous;
    r.perms = st.anonymous.clone();
    Ok(())
}

fn constant_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn crumb_for(st: &State, user: &str, session: &str) -> String {
    let mut h = Sha256::new();
    h.update(format!("{user};{session};{}", st.settings.crumb_salt));
    hex::encode(h.finalize())
}

/// CrumbFilter: POSTs need a valid crumb unless authenticated with an API token.
fn check_crumb(st: &State, r: &Req) -> bool {
    if !st.settings.use_crumbs || r.method != Method::POST {
        return true;
    }
    if let Who::User { via_token: true, .. } = r.who {
        return true;
    }
    let Some(session) = &r.session else { return false };
    let expected = crumb_for(st, &r.user_name(), session);
    let given = r
        .headers
        .get("Jenkins-Crumb")
        .and_then(|h| h.to_str().ok())
        .map(str::to_string)
        .or_else(|| r.param("Jenkins-Crumb").map(str::to_string));
    given.is_some_and(|g| constant_eq(&g, &expected))
}

// ---------------------------------------------------------------------------------------------
// responses

fn advertise(resp: &mut Response, st: &State) {
    let h = resp.headers_mut();
    h.insert("X-Hudson", HeaderValue::from_static("1.395"));
    h.insert("X-Jenkins", hv(&st.settings.version));
    h.insert("X-Jenkins-Session", hv(&st.settings.session_hex));
}

fn html_raw(status: StatusCode, body: String) -> Response {
    let mut resp = (status, body).into_response();
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html;charset=utf-8"));
    resp
}

fn html(st: &State, status: StatusCode, body: String) -> Response {
    let mut r = html_raw(status, body);
    advertise(&mut r, st);
    r
}

fn jetty(status: StatusCode, message: &str, uri: &str) -> Response {
    let mut r = html_raw(status, pages::jetty_error(status.as_u16(), message, uri));
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("must-revalidate,no-cache,no-store"));
    r
}

fn oops_resp(status: StatusCode) -> Response {
    html_raw(status, pages::oops(None))
}

fn not_found(st: &State, r: &Req) -> Response {
    html(st, StatusCode::NOT_FOUND, pages::not_found(matches!(r.who, Who::Anonymous)))
}

fn empty(status: StatusCode) -> Response {
    (status, Body::empty()).into_response()
}

fn redirect(status: StatusCode, location: &str) -> Response {
    let mut r = empty(status);
    r.headers_mut().insert(header::LOCATION, hv(location));
    r
}

fn text(st: &State, body: String) -> Response {
    let mut r = (StatusCode::OK, body).into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain;charset=UTF-8"));
    advertise(&mut r, st);
    r
}

fn json_value(v: serde_json::Value) -> Response {
    let mut r = (StatusCode::OK, v.to_string()).into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json; charset=UTF-8"));
    r
}

/// 403 for a missing permission: the login redirect for anonymous, "Access Denied" otherwise,
/// with the `X-You-Are-*` / `X-Required-Permission` headers (jenkins-wire.md §8.1, §8.3).
fn deny(st: &State, r: &Req, perm: Perm) -> Response {
    let implied = perm.implied_by_headers();
    let mut resp = match r.who {
        Who::Anonymous => {
            let from = match r.query.is_empty() {
                true => r.path.clone(),
                false => format!(
                    "{}?{}",
                    r.path,
                    form_urlencoded::Serializer::new(String::new()).extend_pairs(&r.query).finish()
                ),
            };
            html(st, StatusCode::FORBIDDEN, pages::login_redirect(&from, perm.java_id(), &implied))
        }
        Who::User { ref name, .. } => html(st, StatusCode::FORBIDDEN, pages::access_denied(name, perm.title())),
    };
    let h = resp.headers_mut();
    h.insert("X-You-Are-Authenticated-As", hv(&r.user_name()));
    h.insert(
        "X-You-Are-In-Group-Disabled",
        HeaderValue::from_static("JENKINS-39402: use -Dhudson.security.AccessDeniedException2.REPORT_GROUP_HEADERS=true or use /whoAmI to diagnose"),
    );
    h.insert("X-Required-Permission", hv(perm.java_id()));
    for p in implied {
        h.append("X-Permission-Implied-By", hv(p));
    }
    resp
}

/// `hudson.model.Failure`: 400 + `X-Error`.
fn failure(st: &State, message: &str) -> Response {
    let mut resp = html(st, StatusCode::BAD_REQUEST, pages::failure(message));
    resp.headers_mut().insert("X-Error", hv(message));
    resp
}

fn require_post(st: &State, r: &Req) -> Response {
    let mut resp = html(st, StatusCode::METHOD_NOT_ALLOWED, pages::require_post(&r.path));
    resp.headers_mut().insert(header::ALLOW, HeaderValue::from_static("POST"));
    resp
}

fn crumb_failure(r: &Req) -> Response {
    jetty(StatusCode::FORBIDDEN, "No valid crumb was included in the request", &r.path)
}

/// Serves a bean as `api/json`, `api/python` or `api/xml` with `depth`, `tree`, `pretty`.
fn api_response(st: &State, r: &Req, flavor: &str, bean: export::Bean) -> Response {
    if r.param("jsonp").is_some() {
        return jetty(StatusCode::FORBIDDEN, "jsonp forbidden; implement jenkins.security.SecureRequester", &r.path);
    }
    let depth = match r.param("depth") {
        None => 0,
        Some(d) => match d.trim().parse::<i32>() {
            Ok(d) => d,
            Err(_) => {
                return html(
                    st,
                    StatusCode::INTERNAL_SERVER_ERROR,
                    pages::oops(Some("javax.servlet.ServletException: Depth parameter must be a number")),
                );
            }
        },
    };
    let tree = match r.param("tree") {
        None => None,
        Some(t) => match export::parse_tree(t) {
            Ok(t) => Some(t),
            Err(e) => {
                return html(
                    st,
                    StatusCode::INTERNAL_SERVER_ERROR,
                    pages::oops(Some(&format!("javax.servlet.ServletException: {e}"))),
                );
            }
        },
    };
    let pruner = match &tree {
        Some(t) => Pruner::Tree(t),
        None => Pruner::for_depth(depth),
    };
    let pretty = r.param("pretty").is_some();
    let (body, ctype) = match flavor {
        "json" => (export::to_json(&bean, pruner, pretty, Flavor::Json), "application/json;charset=utf-8"),
        "python" => (export::to_json(&bean, pruner, pretty, Flavor::Python), "text/x-python;charset=utf-8"),
        "xml" => {
            let xml = export::to_xml(&bean, pruner);
            if let Some(xp) = r.param("xpath") {
                match xpath_concat(&xml, xp) {
                    Some(t) => {
                        let mut resp = text(st, t);
                        api_headers(&mut resp, st);
                        return resp;
                    }
                    None => {
                        return jetty(StatusCode::NOT_FOUND, &format!("XPath {xp} didn't match"), &r.path);
                    }
                }
            }
            (xml, "application/xml;charset=utf-8")
        }
        _ => return not_found(st, r),
    };
    let mut resp = (StatusCode::OK, body).into_response();
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    api_headers(&mut resp, st);
    resp
}

fn api_headers(resp: &mut Response, st: &State) {
    let h = resp.headers_mut();
    h.insert("X-Jenkins", hv(&st.settings.version));
    h.insert("X-Jenkins-Session", hv(&st.settings.session_hex));
    h.insert("X-Content-Type-Options", HeaderValue::from_static("nosniff"));
    h.insert("X-Frame-Options", HeaderValue::from_static("deny"));
}

/// The one XPath form clients use: `concat(//a,":",//b)` over simple element names.
fn xpath_concat(xml: &str, xp: &str) -> Option<String> {
    let inner = xp.trim().strip_prefix("concat(")?.strip_suffix(')')?;
    let mut out = String::new();
    for part in inner.split(',') {
        let part = part.trim();
        if let Some(name) = part.strip_prefix("//") {
            let open = format!("<{name}>");
            let start = xml.find(&open)? + open.len();
            let end = xml[start..].find(&format!("</{name}>"))? + start;
            out.push_str(&xml[start..end]);
        } else {
            out.push_str(part.trim_matches(|c| c == '"' || c == '\''));
        }
    }
    Some(out)
}

fn ctx<'a>(st: &'a State, base: &'a str, see: &'a dyn Fn(ItemId) -> bool, now: i64) -> Ctx<'a> {
    Ctx { st, base, can_see: see, now }
}

// ---------------------------------------------------------------------------------------------
// dispatch

fn dispatch(twin: &Arc<Twin>, r: &Req) -> Response {
    let segs: Vec<&str> = r.segs.iter().map(String::as_str).collect();
    let Ok(mut guard) = twin.state.lock() else { return oops_resp(StatusCode::INTERNAL_SERVER_ERROR) };
    let st: &mut State = &mut guard;
    let base = st.settings.root_url.clone().unwrap_or_else(|| r.host_base());
    let now = twin.clock.now_ms();
    // Unprotected root actions.
    match segs.as_slice() {
        ["whoAmI", rest @ ..] => {
            let name = match &r.who {
                Who::Anonymous => "anonymous".to_string(),
                Who::User { name, .. } => name.clone(),
            };
            let authorities = match r.who {
                Who::Anonymous => vec!["anonymous".to_string()],
                Who::User { .. } => vec!["authenticated".to_string()],
            };
            let bean = api::who_am_i(&name, matches!(r.who, Who::Anonymous), authorities);
            return match rest {
                ["api", f] => api_response(st, r, f, bean),
                [] => html(st, StatusCode::OK, pages::simple("Who Am I?", &format!("Name: {name}"))),
                _ => not_found(st, r),
            };
        }
        ["login"] => return html(st, StatusCode::OK, pages::simple("Sign in [Jenkins]", "Sign in to Jenkins")),
        _ => {}
    }
    if !r.has(Perm::OverallRead) {
        return deny(st, r, Perm::OverallRead);
    }
    if r.is_post() && !check_crumb(st, r) {
        return crumb_failure(r);
    }
    let see_all = r.has(Perm::JobRead);
    let see = move |_: ItemId| see_all;
    match segs.as_slice() {
        [] => html(st, StatusCode::OK, pages::simple("Dashboard [Jenkins]", "Welcome to Jenkins!")),
        ["api", f] => {
            let bean = api::root(ctx(st, &base, &see, now));
            api_response(st, r, f, bean)
        }
        ["crumbIssuer", rest @ ..] => {
            if !st.settings.use_crumbs {
                return not_found(st, r);
            }
            let (session, new) = match r.session.clone().filter(|s| st.sessions.iter().any(|(id, _)| id == s)) {
                Some(s) => (s, false),
                None => (format!("node0{:016x}{:08x}.node0", fastrand::u64(..), fastrand::u32(..)), true),
            };
            let user = r.user_name();
            if new {
                let login =
                    if matches!(r.who, Who::User { via_token: false, .. }) { user.clone() } else { String::new() };
                st.sessions.push((session.clone(), login));
                if st.sessions.len() > 10_000 {
                    st.sessions.remove(0);
                }
            }
            let crumb = crumb_for(st, &user, &session);
            let mut resp = match rest {
                ["api", f] => api_response(st, r, f, api::crumb_issuer(&crumb)),
                _ => not_found(st, r),
            };
            if new {
                let cookie = format!("{}={session}; Path=/; HttpOnly", session_cookie_name(st));
                resp.headers_mut().append(header::SET_COOKIE, hv(&cookie));
            }
            resp
        }
        ["queue", rest @ ..] => queue_route(twin, st, r, rest, &base, now),
        ["computer", rest @ ..] => computer_route(st, r, rest, &base, now),
        ["pluginManager", rest @ ..] => {
            if !r.has(Perm::SystemRead) {
                return deny(st, r, Perm::SystemRead);
            }
            match rest {
                ["api", f] => api_response(st, r, f, api::plugin_manager(ctx(st, &base, &see, now))),
                [] | ["installed"] => html(st, StatusCode::OK, pages::simple("Plugins", "Installed plugins")),
                _ => not_found(st, r),
            }
        }
        ["me", rest @ ..] => match &r.who {
            Who::Anonymous => deny(st, r, Perm::OverallRead),
            Who::User { name, .. } => {
                let full = st.user(name).map(|u| u.full_name.clone()).unwrap_or_default();
                match rest {
                    ["api", f] => api_response(st, r, f, api::user(ctx(st, &base, &see, now), name, &full)),
                    [] => html(st, StatusCode::OK, pages::simple(&full, "User status")),
                    _ => not_found(st, r),
                }
            }
        },
        ["user", name, rest @ ..] => {
            let Some(u) = st.user(name).cloned() else { return not_found(st, r) };
            match rest {
                ["api", f] => api_response(st, r, f, api::user(ctx(st, &base, &see, now), &u.name, &u.full_name)),
                [] => html(st, StatusCode::OK, pages::simple(&u.full_name, "User status")),
                _ => not_found(st, r),
            }
        }
        ["createItem"] => create_item(st, r, None, &base),
        ["createView"] => create_view(st, r, None, &base),
        ["quietDown"] | ["cancelQuietDown"] => {
            if !r.is_post() {
                return require_post(st, r);
            }
            if !r.has(Perm::Administer) {
                return deny(st, r, Perm::Administer);
            }
            if segs[0] == "quietDown" {
                st.quiet_down = Some(r.param("reason").filter(|s| !s.is_empty()).map(str::to_string));
            } else {
                st.quiet_down = None;
                twin.wake.notify_one();
            }
            redirect(StatusCode::FOUND, &base)
        }
        ["view", name, rest @ ..] => view_route(twin, st, r, None, name, rest, &base, now),
        ["job", ..] => item_route(twin, st, r, None, &segs, &base, now),
        _ => not_found(st, r),
    }
}

/// Walks `job/NAME` pairs from `parent` and serves what follows.
#[allow(clippy::too_many_arguments)]
fn item_route(
    twin: &Arc<Twin>,
    st: &mut State,
    r: &Req,
    parent: Option<ItemId>,
    segs: &[&str],
    base: &str,
    now: i64,
) -> Response {
    let mut cur = parent;
    let mut i = 0;
    while i + 1 < segs.len() && segs[i] == "job" {
        if let Some(c) = cur
            && !st.item(c).is_some_and(|it| it.is_folder())
        {
            break;
        }
        let Some(child) = st.child(cur, segs[i + 1]) else { return not_found(st, r) };
        if !r.has(Perm::JobRead) {
            return if r.has(Perm::JobDiscover) { deny(st, r, Perm::JobRead) } else { not_found(st, r) };
        }
        cur = Some(child);
        i += 2;
    }
    let Some(id) = cur else { return not_found(st, r) };
    let rest = &segs[i..];
    if st.item(id).is_some_and(|it| it.is_folder()) {
        if let ["view", name, more @ ..] = rest {
            return view_route(twin, st, r, Some(id), name, more, base, now);
        }
        if rest.first() == Some(&"job") {
            return not_found(st, r);
        }
    }
    item_action(twin, st, r, id, rest, base, now)
}

#[allow(clippy::too_many_arguments)]
fn item_action(twin: &Arc<Twin>, st: &mut State, r: &Req, id: ItemId, rest: &[&str], base: &str, now: i64) -> Response {
    let see_all = r.has(Perm::JobRead);
    let see = move |_: ItemId| see_all;
    let Some(item) = st.item(id) else { return not_found(st, r) };
    let is_job = item.is_job();
    let is_folder = item.is_folder();
    let item_url = format!("{base}{}", st.item_path(id));
    if r.method == Method::DELETE && rest.is_empty() {
        if !r.has(Perm::JobDelete) {
            return deny(st, r, Perm::JobDelete);
        }
        st.remove_item(id);
        return empty(StatusCode::NO_CONTENT);
    }
    match rest {
        [] => html(st, StatusCode::OK, pages::simple(&st.full_display_name(id), &format!("{} [Jenkins]", item.name))),
        ["api", f] => {
            let bean = api::item(ctx(st, base, &see, now), id);
            api_response(st, r, f, bean)
        }
        ["config.xml"] => config_xml_route(twin, st, r, id),
        ["configure"] => {
            if !r.has(Perm::JobConfigure) {
                return deny(st, r, Perm::JobConfigure);
            }
            html(
                st,
                StatusCode::OK,
                pages::simple(&format!("{} Config [Jenkins]", st.full_display_name(id)), "Configure"),
            )
        }
        ["doDelete"] => {
            if !r.is_post() {
                return require_post(st, r);
            }
            if !r.has(Perm::JobDelete) {
                return deny(st, r, Perm::JobDelete);
            }
            let parent_url = match item.parent {
                Some(p) => format!("{base}{}", st.item_path(p)),
                None => base.to_string(),
            };
            st.remove_item(id);
            redirect(StatusCode::FOUND, &parent_url)
        }
        ["enable"] | ["disable"] if is_job => {
            if !r.is_post() {
                return require_post(st, r);
            }
            if !r.has(Perm::JobConfigure) {
                return deny(st, r, Perm::JobConfigure);
            }
            let disable = rest[0] == "disable";
            if let Some(it) = st.item_mut(id) {
                it.config.disabled = disable;
                it.config_xml = set_disabled_in_xml(&it.config_xml, disable);
            }
            if disable {
                st.queue.retain(|q| q.job != id);
            }
            twin.wake.notify_one();
            redirect(StatusCode::FOUND, &item_url)
        }
        ["doRename"] | ["confirmRename"] => rename(st, r, id, base),
        ["build"] if is_job => trigger_build(twin, st, r, id, now, false),
        ["buildWithParameters"] if is_job => trigger_build(twin, st, r, id, now, true),
        // The Next Build Number plugin's action; its current version reads the structured form.
        ["nextbuildnumber", "submit"] if is_job && st.plugin_installed("next-build-number") => {
            if !r.is_post() {
                return require_post(st, r);
            }
            if !r.has(Perm::JobConfigure) {
                return deny(st, r, Perm::JobConfigure);
            }
            let Some(json) = r.param("json") else {
                let msg = if r.query.is_empty() && r.form.is_empty() {
                    "Nothing is submitted"
                } else {
                    "This page expects a form submission"
                };
                return jetty(StatusCode::BAD_REQUEST, msg, &r.path);
            };
            let n = serde_json::from_str::<serde_json::Value>(json).ok().and_then(|v| {
                let f = v.get("nextBuildNumber")?;
                f.as_u64().or_else(|| f.as_str().and_then(|s| s.trim().parse().ok()))
            });
            let Some(n) = n else {
                return html(
                    st,
                    StatusCode::INTERNAL_SERVER_ERROR,
                    pages::oops(Some("net.sf.json.JSONException: JSONObject[\"nextBuildNumber\"] is not a number.")),
                );
            };
            if let Some(it) = st.item_mut(id) {
                let last = it.builds.keys().next_back().copied().unwrap_or(0);
                if n > last {
                    it.next_build_number = n;
                }
            }
            redirect(StatusCode::FOUND, &item_url)
        }
        ["submitDescription"] => {
            if !r.is_post() {
                return require_post(st, r);
            }
            if !r.has(Perm::JobConfigure) {
                return deny(st, r, Perm::JobConfigure);
            }
            let d = r.param("description").unwrap_or("").to_string();
            if let Some(it) = st.item_mut(id) {
                it.config_xml = set_description_in_xml(&it.config_xml, &d);
                it.config.description = d;
            }
            redirect(StatusCode::FOUND, &item_url)
        }
        ["doWipeOutWorkspace"] if item.kind == ItemKind::Freestyle => {
            if !r.is_post() {
                return require_post(st, r);
            }
            if !r.has(Perm::JobBuild) {
                return deny(st, r, Perm::JobBuild);
            }
            redirect(StatusCode::FOUND, &item_url)
        }
        ["createItem"] if is_folder => create_item(st, r, Some(id), base),
        ["createView"] if is_folder => create_view(st, r, Some(id), base),
        ["wfapi", more @ ..] if is_job => {
            if !st.plugin_installed("pipeline-rest-api") || item.kind != ItemKind::Pipeline {
                return not_found(st, r);
            }
            match more {
                [] | ["describe"] => json_value(wfapi::job_describe(st, id, item)),
                ["runs"] => {
                    let full = r.param("fullStages") == Some("true");
                    json_value(wfapi::runs(st, id, item, r.param("since"), full, now))
                }
                _ => not_found(st, r),
            }
        }
        [num, more @ ..] if is_job => {
            let number = match num.parse::<u64>() {
                Ok(n) => Some(n),
                Err(_) => item.permalink(num),
            };
            match number {
                Some(n) if item.builds.contains_key(&n) => build_action(twin, st, r, id, n, more, base, now),
                _ => not_found(st, r),
            }
        }
        _ => not_found(st, r),
    }
}

fn set_description_in_xml(xml: &str, description: &str) -> String {
    let escaped = config_xml::escape_xml(description);
    if let (Some(start), Some(end)) = (xml.find("<description>"), xml.find("</description>"))
        && start < end
    {
        return format!(
            "{}<description>{escaped}</description>{}",
            &xml[..start],
            &xml[end + "</description>".len()..]
        );
    }
    if let Some(pos) = xml.find("<description/>") {
        return format!("{}<description>{escaped}</description>{}", &xml[..pos], &xml[pos + "<description/>".len()..]);
    }
    xml.to_string()
}

fn set_disabled_in_xml(xml: &str, disabled: bool) -> String {
    let (from, to) = if disabled {
        ("<disabled>false</disabled>", "<disabled>true</disabled>")
    } else {
        ("<disabled>true</disabled>", "<disabled>false</disabled>")
    };
    if xml.contains(from) {
        return xml.replacen(from, to, 1);
    }
    if xml.contains(to) {
        return xml.to_string();
    }
    for close in ["</project>", "</flow-definition>"] {
        if let Some(pos) = xml.rfind(close) {
            return format!("{}  {to}\n{}", &xml[..pos], &xml[pos..]);
        }
    }
    xml.to_string()
}

/// `Jenkins.checkGoodName`.
fn check_good_name(name: &str) -> Result<(), String> {
    let name = name.trim();
    if name.is_empty() {
        return Err("No name is specified".into());
    }
    if let Some(c) = name.chars().find(|c| c.is_control()) {
        return Err(format!("No control code is allowed: {}", c as u32));
    }
    if let Some(c) = name.chars().find(|c| "?*/\\%!@#$^&|<>[]:;".contains(*c)) {
        return Err(format!("‘{c}’ is an unsafe character"));
    }
    if name == "." || name == ".." {
        return Err(format!("“{name}” is not an allowed name"));
    }
    if name.ends_with('.') {
        return Err("A name cannot end with ‘.’".into());
    }
    Ok(())
}

fn config_xml_route(twin: &Arc<Twin>, st: &mut State, r: &Req, id: ItemId) -> Response {
    let Some(item) = st.item(id) else { return not_found(st, r) };
    match r.method {
        Method::GET => {
            if !r.has(Perm::JobExtendedRead) {
                return deny(st, r, Perm::JobExtendedRead);
            }
            let mut resp = (StatusCode::OK, item.config_xml.clone()).into_response();
            resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/xml"));
            resp
        }
        Method::POST => {
            if !r.has(Perm::JobConfigure) {
                return deny(st, r, Perm::JobConfigure);
            }
            let xml = String::from_utf8_lossy(&r.body).into_owned();
            let cfg = match config_xml::parse_config(&xml) {
                Ok(c) => c,
                Err(e) => {
                    return html(
                        st,
                        StatusCode::INTERNAL_SERVER_ERROR,
                        pages::oops(Some(&format!("java.io.IOException: Unable to read {e}"))),
                    );
                }
            };
            if cfg.kind != item.kind {
                let msg = format!(
                    "java.io.IOException: Expecting class {} but got {} instead",
                    item.class(),
                    class_of(&cfg.kind)
                );
                return html(st, StatusCode::INTERNAL_SERVER_ERROR, pages::oops(Some(&msg)));
            }
            if let Some(it) = st.item_mut(id) {
                it.config = cfg;
                it.config_xml = xml;
            }
            twin.wake.notify_one();
            empty(StatusCode::OK)
        }
        _ => jetty(StatusCode::BAD_REQUEST, "Bad Request", &r.path),
    }
}

fn class_of(kind: &ItemKind) -> &'static str {
    match kind {
        ItemKind::Freestyle => "hudson.model.FreeStyleProject",
        ItemKind::Pipeline => "org.jenkinsci.plugins.workflow.job.WorkflowJob",
        ItemKind::Folder => "com.cloudbees.hudson.plugins.folder.Folder",
        ItemKind::Multibranch => "org.jenkinsci.plugins.workflow.multibranch.WorkflowMultiBranchProject",
    }
}

fn kind_of_mode(mode: &str) -> Option<ItemKind> {
    Some(match mode {
        "hudson.model.FreeStyleProject" => ItemKind::Freestyle,
        "org.jenkinsci.plugins.workflow.job.WorkflowJob" => ItemKind::Pipeline,
        "com.cloudbees.hudson.plugins.folder.Folder" => ItemKind::Folder,
        "org.jenkinsci.plugins.workflow.multibranch.WorkflowMultiBranchProject" => ItemKind::Multibranch,
        _ => return None,
    })
}

/// `createItem` at the root or in a folder (ItemGroupMixIn.createTopLevelItem, §10.8).
fn create_item(st: &mut State, r: &Req, parent: Option<ItemId>, base: &str) -> Response {
    if !r.is_post() {
        return require_post(st, r);
    }
    if !r.has(Perm::JobCreate) {
        return deny(st, r, Perm::JobCreate);
    }
    let Some(name) = r.param("name").map(|n| n.trim().to_string()) else {
        return failure(st, "Query parameter 'name' is required");
    };
    if let Err(e) = check_good_name(&name) {
        return failure(st, &e);
    }
    if st.child(parent, &name).is_some() {
        return failure(st, &format!("A job already exists with the name ‘{name}’"));
    }
    let parent_path = parent.map(|p| st.item_path(p)).unwrap_or_default();
    let mode = r.param("mode").map(str::to_string);
    match mode.as_deref() {
        Some("copy") => {
            let Some(from) = r.param("from").map(str::trim).filter(|f| !f.is_empty()) else {
                return failure(st, "Specify which job to copy");
            };
            let src = if let Some(abs) = from.strip_prefix('/') {
                st.resolve(abs)
            } else {
                st.child(parent, from).or_else(|| st.resolve(from))
            };
            let Some(src) = src.filter(|_| r.has(Perm::JobRead)) else {
                return failure(st, &format!("No such job: {from}"));
            };
            let Some(src_item) = st.item(src) else { return failure(st, &format!("No such job: {from}")) };
            let mut cfg = src_item.config.clone();
            let xml = src_item.config_xml.clone();
            // Jenkins copies a job disabled? No: it keeps the source's config but a fresh history.
            cfg.disabled = src_item.config.disabled;
            let item = scenario::new_item(&name, parent, xml, cfg);
            st.add_item(parent, item);
            redirect(
                StatusCode::FOUND,
                &format!("{base}{parent_path}job/{}/configure", crate::model::raw_encode(&name)),
            )
        }
        Some(m) if !m.is_empty() => {
            let Some(kind) = kind_of_mode(m) else {
                return failure(st, &format!("No item type ‘{m}’ is known"));
            };
            let cfg = scenario::empty_config(kind);
            let xml = config_xml::render_config(&cfg);
            st.add_item(parent, scenario::new_item(&name, parent, xml, cfg));
            redirect(
                StatusCode::FOUND,
                &format!("{base}{parent_path}job/{}/configure", crate::model::raw_encode(&name)),
            )
        }
        _ => {
            let ct = r.content_type();
            if ct.is_empty() {
                return failure(st, "No Content-Type header set");
            }
            if !(ct.contains("xml")) {
                return failure(st, "No mode given");
            }
            let xml = String::from_utf8_lossy(&r.body).into_owned();
            match config_xml::parse_config(&xml) {
                Ok(cfg) => {
                    st.add_item(parent, scenario::new_item(&name, parent, xml, cfg));
                    empty(StatusCode::OK)
                }
                Err(e) => html(
                    st,
                    StatusCode::INTERNAL_SERVER_ERROR,
                    pages::oops(Some(&format!("java.io.IOException: Unable to read config.xml of {name}: {e}"))),
                ),
            }
        }
    }
}

fn rename(st: &mut State, r: &Req, id: ItemId, base: &str) -> Response {
    if !r.is_post() {
        return require_post(st, r);
    }
    if !r.has(Perm::JobConfigure) {
        return deny(st, r, Perm::JobConfigure);
    }
    let Some(new_name) = r.param("newName").map(|n| n.trim().to_string()) else {
        return failure(st, "No name is specified");
    };
    if let Err(e) = check_good_name(&new_name) {
        return failure(st, &e);
    }
    let Some(item) = st.item(id) else { return not_found(st, r) };
    let parent = item.parent;
    let old_key = item_key(&item.name);
    if item_key(&new_name) != old_key && st.child(parent, &new_name).is_some() {
        return failure(st, &format!("A job already exists with the name ‘{new_name}’"));
    }
    let map = match parent {
        None => Some(&mut st.root),
        Some(p) => st.item_mut(p).map(|i| &mut i.children),
    };
    if let Some(map) = map {
        map.remove(&old_key);
        map.insert(item_key(&new_name), id);
    }
    if let Some(it) = st.item_mut(id) {
        it.name = new_name;
    }
    redirect(StatusCode::FOUND, &format!("{base}{}", st.item_path(id)))
}

/// `TimeDuration.fromString`: a bare number is milliseconds; `Nsec`/`Nsecs` seconds.
fn parse_delay(s: &str) -> Option<i64> {
    let s = s.trim();
    let ms = if let Some(n) = s.strip_suffix("secs").or_else(|| s.strip_suffix("sec")) {
        n.trim().parse::<i64>().ok()? * 1000
    } else {
        s.parse::<i64>().ok()?
    };
    Some(ms / 1000 * 1000)
}

fn trigger_build(twin: &Arc<Twin>, st: &mut State, r: &Req, id: ItemId, now: i64, with_params: bool) -> Response {
    let Some(item) = st.item(id) else { return not_found(st, r) };
    let full = st.full_name(id);
    let defs = item.config.parameters.clone();
    let disabled = item.config.disabled;
    if with_params {
        if !r.has(Perm::JobBuild) {
            return deny(st, r, Perm::JobBuild);
        }
        if disabled {
            return jetty(StatusCode::CONFLICT, &format!("{full} is not buildable"), &r.path);
        }
        if !r.is_post() {
            return require_post(st, r);
        }
        if defs.is_empty() {
            return jetty(StatusCode::BAD_REQUEST, &format!("{full} is not parameterized"), &r.path);
        }
    } else {
        if disabled {
            return jetty(StatusCode::CONFLICT, &format!("{full} is not buildable"), &r.path);
        }
        if !defs.is_empty() && !r.is_post() {
            return html(st, StatusCode::OK, pages::simple(&full, "This build requires parameters:"));
        }
        if !r.has(Perm::JobBuild) {
            return deny(st, r, Perm::JobBuild);
        }
        if !r.is_post() {
            return require_post(st, r);
        }
    }
    let delay = match r.param("delay") {
        None => None,
        Some(d) => match parse_delay(d) {
            Some(ms) => Some(ms),
            None => {
                return html(
                    st,
                    StatusCode::INTERNAL_SERVER_ERROR,
                    pages::oops(Some(&format!("java.lang.IllegalArgumentException: Invalid time duration value: {d}"))),
                );
            }
        },
    };
    let mut values: Vec<ParamValue> = Vec::new();
    // The structured form may ask for another status than 201 (jenkinsapi sends "303").
    let form_status = if !with_params && !defs.is_empty() {
        r.param("json")
            .and_then(|j| serde_json::from_str::<serde_json::Value>(j).ok())
            .and_then(|v| {
                v.get("statusCode")
                    .and_then(|s| s.as_str().and_then(|s| s.parse::<u16>().ok()).or(s.as_u64().map(|n| n as u16)))
            })
            .and_then(|c| StatusCode::from_u16(c).ok())
            .filter(|c| c.is_redirection() || c.is_success())
    } else {
        None
    };
    if !defs.is_empty() {
        let supplied: BTreeMap<String, String> = if with_params {
            let mut m = BTreeMap::new();
            for d in &defs {
                let vals = r.params(&d.name);
                if vals.len() > 1 && d.kind != ParamKind::Boolean {
                    return html(
                        st,
                        StatusCode::INTERNAL_SERVER_ERROR,
                        pages::oops(Some(&format!(
                            "java.lang.IllegalArgumentException: Illegal number of parameter values for {}: {}",
                            d.name,
                            vals.len()
                        ))),
                    );
                }
                if let Some(v) = vals.first() {
                    m.insert(d.name.clone(), v.to_string());
                }
            }
            m
        } else {
            // `/build` on a parameterized job reads the structured form field `json`.
            let Some(json) = r.param("json") else {
                let msg = if r.query.is_empty() && r.form.is_empty() {
                    "Nothing is submitted"
                } else {
                    "This page expects a form submission"
                };
                return jetty(StatusCode::BAD_REQUEST, msg, &r.path);
            };
            match parse_json_form(json) {
                Some(m) => m,
                None => return jetty(StatusCode::BAD_REQUEST, "This page expects a form submission", &r.path),
            }
        };
        for d in &defs {
            let v = supplied.get(&d.name).cloned();
            let value = match d.kind {
                ParamKind::Boolean => match v {
                    Some(v) => (v == "true" || v == "on").to_string(),
                    None => {
                        if with_params {
                            "false".to_string()
                        } else {
                            d.default.clone()
                        }
                    }
                },
                ParamKind::Choice => {
                    let v = v.unwrap_or_else(|| d.default.clone());
                    if !d.choices.contains(&v) {
                        return html(
                            st,
                            StatusCode::INTERNAL_SERVER_ERROR,
                            pages::oops(Some(&format!(
                                "java.lang.IllegalArgumentException: Illegal choice for parameter {}: {v}",
                                d.name
                            ))),
                        );
                    }
                    v
                }
                _ => v.unwrap_or_else(|| d.default.clone()),
            };
            values.push(ParamValue { name: d.name.clone(), kind: d.kind, value });
        }
    }
    let cause = match (&r.who, r.param("token")) {
        (_, Some(_)) => Cause::Remote { addr: r.remote.ip().to_string(), note: r.param("cause").map(str::to_string) },
        (Who::User { name, .. }, None) => {
            let full_name = st.user(name).map(|u| u.full_name.clone()).unwrap_or_else(|| name.clone());
            Cause::User { id: name.clone(), name: full_name }
        }
        (Who::Anonymous, None) => Cause::User { id: "anonymous".into(), name: "anonymous".into() },
    };
    let Some((qid, created)) = engine::schedule(st, now, id, vec![cause], values, delay) else {
        return redirect(StatusCode::FOUND, ".");
    };
    twin.wake.notify_one();
    let location = format!("{}queue/item/{qid}/", r.host_base());
    if with_params && !created {
        return redirect(StatusCode::SEE_OTHER, &location);
    }
    redirect(form_status.unwrap_or(StatusCode::CREATED), &location)
}

/// The structured form `json={"parameter":[{"name":"X","value":"y"}]}` (or a single object).
fn parse_json_form(json: &str) -> Option<BTreeMap<String, String>> {
    let v: serde_json::Value = serde_json::from_str(json).ok()?;
    let params = v.get("parameter")?;
    let list = match params {
        serde_json::Value::Array(a) => a.clone(),
        o @ serde_json::Value::Object(_) => vec![o.clone()],
        _ => return None,
    };
    let mut m = BTreeMap::new();
    for p in list {
        let name = p.get("name")?.as_str()?.to_string();
        let value = match p.get("value") {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(serde_json::Value::Bool(b)) => b.to_string(),
            Some(serde_json::Value::Number(n)) => n.to_string(),
            _ => String::new(),
        };
        m.insert(name, value);
    }
    Some(m)
}

#[allow(clippy::too_many_arguments)]
fn build_action(
    twin: &Arc<Twin>,
    st: &mut State,
    r: &Req,
    job: ItemId,
    number: u64,
    rest: &[&str],
    base: &str,
    now: i64,
) -> Response {
    let see_all = r.has(Perm::JobRead);
    let see = move |_: ItemId| see_all;
    let Some(item) = st.item(job) else { return not_found(st, r) };
    let Some(b) = item.builds.get(&number) else { return not_found(st, r) };
    let build_url = format!("{base}{}{number}/", st.item_path(job));
    let pipeline = item.kind == ItemKind::Pipeline;
    match rest {
        [] | ["console"] => {
            html(st, StatusCode::OK, pages::simple(&format!("{} #{number}", st.full_display_name(job)), "Build"))
        }
        ["api", f] => {
            let bean = api::build(ctx(st, base, &see, now), job, number);
            api_response(st, r, f, bean)
        }
        ["consoleText"] => {
            let log = b.log.clone();
            let len = log.len();
            stream_log(twin, st, log, 0, len, None)
        }
        ["logText", "progressiveText"] | ["logText", "progressiveHtml"] => {
            let log = b.log.clone();
            // Read the length before the completion flag so X-More-Data is never dropped
            // while bytes are still missing.
            let complete = log.is_complete() && !b.building;
            let len = log.len();
            let mut start = r.param("start").and_then(|s| s.trim().parse::<u64>().ok()).unwrap_or(0);
            if start > len {
                start = 0;
            }
            stream_log(twin, st, log, start, len, Some(!complete))
        }
        ["buildNumber"] => text(st, format!("{number}\n")),
        ["buildTimestamp"] => text(st, engine::format_git_date(b.timestamp)),
        ["stop"] | ["term"] | ["kill"] => {
            if !r.is_post() {
                return require_post(st, r);
            }
            if !r.has(Perm::JobCancel) {
                return deny(st, r, Perm::JobCancel);
            }
            if b.building {
                if let Ok(mut g) = b.control.aborted_by.lock() {
                    *g = Some(r.user_name());
                }
                b.control.abort.store(true, Ordering::SeqCst);
                b.control.wake.notify_waiters();
                b.control.wake.notify_one();
            }
            let back =
                r.headers.get(header::REFERER).and_then(|h| h.to_str().ok()).map(str::to_string).unwrap_or(build_url);
            redirect(StatusCode::FOUND, &back)
        }
        ["doDelete"] => {
            if !r.is_post() {
                return require_post(st, r);
            }
            if !r.has(Perm::RunDelete) {
                return deny(st, r, Perm::RunDelete);
            }
            if b.building {
                return jetty(StatusCode::BAD_REQUEST, "Unable to delete a build that is in progress", &r.path);
            }
            let job_url = format!("{base}{}", st.item_path(job));
            if let Some(it) = st.item_mut(job) {
                it.builds.remove(&number);
            }
            redirect(StatusCode::FOUND, &job_url)
        }
        ["submitDescription"] => {
            if !r.is_post() {
                return require_post(st, r);
            }
            if !r.has(Perm::RunUpdate) {
                return deny(st, r, Perm::RunUpdate);
            }
            let d = r.param("description").map(str::to_string);
            if let Some(bb) = st.item_mut(job).and_then(|i| i.builds.get_mut(&number)) {
                bb.description = d;
            }
            redirect(StatusCode::FOUND, &build_url)
        }
        ["testReport", more @ ..] => {
            let Some(bean) = api::test_report(b) else { return not_found(st, r) };
            match more {
                ["api", f] => api_response(st, r, f, bean),
                [] => html(st, StatusCode::OK, pages::simple("Test Result", "Test Result")),
                _ => not_found(st, r),
            }
        }
        ["input", id, action] if pipeline => {
            if !r.is_post() {
                return require_post(st, r);
            }
            if !r.has(Perm::JobBuild) {
                return deny(st, r, Perm::JobBuild);
            }
            if b.pending_input.as_ref().is_none_or(|p| p.id != *id) {
                return not_found(st, r);
            }
            let answer = match *action {
                "proceedEmpty" | "proceed" | "submit" => true,
                "abort" => false,
                _ => return not_found(st, r),
            };
            if let Ok(mut g) = b.control.aborted_by.lock() {
                *g = Some(r.user_name());
            }
            if let Ok(mut g) = b.control.input_answer.lock() {
                *g = Some(answer);
            }
            b.control.wake.notify_one();
            empty(StatusCode::OK)
        }
        ["replay", more @ ..] if pipeline => {
            // ReplayAction's URL exists only while the user may replay or rebuild the run and
            // the job is buildable (getUrlName null otherwise): a disabled job answers 404.
            let buildable = !item.config.disabled;
            if !buildable || !(r.has(Perm::JobBuild) || r.has(Perm::JobConfigure)) {
                return not_found(st, r);
            }
            match more {
                [] => html(st, StatusCode::OK, pages::simple(&format!("Replay #{number}"), "Replay")),
                ["run"] => replay_run(twin, st, r, job, number, base, now),
                _ => not_found(st, r),
            }
        }
        ["wfapi", more @ ..] | ["execution", "node", _, "wfapi", more @ ..] if pipeline => {
            if !st.plugin_installed("pipeline-rest-api") {
                return not_found(st, r);
            }
            if rest[0] == "execution" {
                let Ok(node) = rest[2].parse::<u64>() else { return not_found(st, r) };
                let v = match more {
                    [] | ["describe"] => wfapi::node_describe(st, job, b, node, now),
                    ["log"] => wfapi::node_log(st, job, b, node),
                    _ => None,
                };
                return v.map_or_else(|| not_found(st, r), json_value);
            }
            let full = r.param("fullStages") == Some("true");
            match more {
                [] | ["describe"] => json_value(wfapi::run(st, job, b, full, now)),
                ["changesets"] => json_value(wfapi::changesets(b)),
                ["pendingInputActions"] => json_value(wfapi::pending_inputs(st, job, b)),
                ["nextPendingInputAction"] => match wfapi::pending_inputs(st, job, b) {
                    serde_json::Value::Array(mut a) if !a.is_empty() => json_value(a.remove(0)),
                    _ => json_value(serde_json::Value::Null),
                },
                ["artifacts"] => json_value(wfapi::artifacts(st, job, b)),
                _ => not_found(st, r),
            }
        }
        // An archived artifact (the `url` of wfapi/artifacts, jenkins-wire.md §12.4): only a path
        // the build lists; the reference does not document the headers, so none are invented
        // beyond a content type.
        ["artifact", path @ ..] if !path.is_empty() => {
            let rel = path.join("/");
            if !b.artifacts.contains(&rel) {
                return not_found(st, r);
            }
            let body = b.artifact_content.get(&rel).cloned().unwrap_or_default();
            let mut resp = (StatusCode::OK, body).into_response();
            resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
            advertise(&mut resp, st);
            resp
        }
        ["execution", "node", id, "log"] if pipeline => {
            let Ok(node) = id.parse::<u64>() else { return not_found(st, r) };
            let Some(n) = b.flow_nodes.iter().find(|n| n.id == node) else { return not_found(st, r) };
            let end = n.log_end.unwrap_or_else(|| b.log.len());
            let bytes = b.log.read_at(n.log_start, end.saturating_sub(n.log_start) as usize);
            twin.log_bytes_sent.fetch_add(bytes.len() as u64, Ordering::Relaxed);
            text(st, String::from_utf8_lossy(&bytes).into_owned())
        }
        _ => not_found(st, r),
    }
}

/// `POST <build>/replay/run` (workflow-cps' `ReplayAction.doRun`): the submitted form's
/// `mainScript` replaces the run's script; the new run gets UserIdCause + ReplayCause and the
/// original's parameters; the answer is a redirect to the job (no queue item is named).
fn replay_run(twin: &Arc<Twin>, st: &mut State, r: &Req, job: ItemId, number: u64, base: &str, now: i64) -> Response {
    if !r.is_post() {
        return require_post(st, r);
    }
    // The Run/Replay permission is implied by Job/Configure; the twin models it as that. The
    // plugin throws a plain AccessDeniedException: no X-Required-Permission header.
    if !r.has(Perm::JobConfigure) {
        let mut resp = html(st, StatusCode::FORBIDDEN, pages::simple("Access Denied", "not allowed to replay"));
        resp.headers_mut().insert("X-You-Are-Authenticated-As", hv(&r.user_name()));
        return resp;
    }
    // Stapler's submitted form: the `json` field, else a form error.
    let Some(json) = r.param("json") else {
        let msg = if r.query.is_empty() && r.form.is_empty() {
            "Nothing is submitted"
        } else {
            "This page expects a form submission"
        };
        return jetty(StatusCode::BAD_REQUEST, msg, &r.path);
    };
    let Ok(serde_json::Value::Object(form)) = serde_json::from_str::<serde_json::Value>(json) else {
        return jetty(StatusCode::BAD_REQUEST, "This page expects a form submission", &r.path);
    };
    // JSONObject.getString: a missing key is a JSONException, which Jenkins answers with /oops.
    let script: Arc<str> = match form.get("mainScript") {
        Some(serde_json::Value::String(s)) => Arc::from(s.as_str()),
        Some(serde_json::Value::Null) | None => {
            return html(
                st,
                StatusCode::INTERNAL_SERVER_ERROR,
                pages::oops(Some("net.sf.json.JSONException: JSONObject[\"mainScript\"] not found.")),
            );
        }
        Some(other) => Arc::from(other.to_string().as_str()),
    };
    let Some(b) = st.item(job).and_then(|i| i.builds.get(&number)) else { return not_found(st, r) };
    let params = b.params.clone();
    if params.iter().any(|p| p.kind == ParamKind::Password) {
        return failure(st, "Replay is not allowed when password parameters are used.");
    }
    let user = match &r.who {
        Who::User { name, .. } => {
            let full_name = st.user(name).map(|u| u.full_name.clone()).unwrap_or_else(|| name.clone());
            Cause::User { id: name.clone(), name: full_name }
        }
        Who::Anonymous => Cause::User { id: "anonymous".into(), name: "anonymous".into() },
    };
    let causes = vec![user, Cause::Replay { original: number }];
    if engine::schedule_replay(st, now, job, causes, params, script).is_none() {
        let full = st.full_name(job);
        return jetty(StatusCode::CONFLICT, &format!("{full} is not buildable"), &r.path);
    }
    twin.wake.notify_one();
    // sendRedirect("../..") from <build>/replay/run: the job's page, made absolute.
    redirect(StatusCode::FOUND, &format!("{base}{}", st.item_path(job)))
}

/// Streams `[start, end)` of a log in 64 KiB pieces (or the drip-fault size) without holding the
/// whole log. `more_data`: Some(x) adds the progressiveText headers.
fn stream_log(
    twin: &Arc<Twin>,
    st: &State,
    log: crate::log::Log,
    start: u64,
    end: u64,
    more_data: Option<bool>,
) -> Response {
    let (piece, pause) = match twin.faults.lock() {
        Ok(f) => match f.spec.drip_bytes {
            Some(n) if n > 0 => (n, Duration::from_millis(f.spec.drip_interval_ms)),
            _ => (64 * 1024, Duration::ZERO),
        },
        Err(_) => (64 * 1024, Duration::ZERO),
    };
    let sent = twin.log_bytes_sent.clone();
    let stream = futures_util::stream::unfold(start, move |pos| {
        let log = log.clone();
        let sent = sent.clone();
        async move {
            if pos >= end {
                return None;
            }
            if !pause.is_zero() && pos > start {
                tokio::time::sleep(pause).await;
            }
            let want = ((end - pos) as usize).min(piece);
            let bytes = log.read_at(pos, want);
            if bytes.is_empty() {
                return None;
            }
            let next = pos + bytes.len() as u64;
            sent.fetch_add(bytes.len() as u64, Ordering::Relaxed);
            Some((Ok::<Bytes, std::io::Error>(Bytes::from(bytes)), next))
        }
    });
    let mut resp = Response::new(Body::from_stream(stream));
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain;charset=UTF-8"));
    if more_data.is_none() {
        h.insert(header::CONTENT_LENGTH, hv(&(end - start).to_string()));
    }
    if let Some(more) = more_data {
        h.insert(HeaderName::from_static("x-text-size"), hv(&end.to_string()));
        if more {
            h.insert(HeaderName::from_static("x-more-data"), HeaderValue::from_static("true"));
        }
    }
    advertise(&mut resp, st);
    resp
}

fn queue_route(twin: &Arc<Twin>, st: &mut State, r: &Req, rest: &[&str], base: &str, now: i64) -> Response {
    let see_all = r.has(Perm::JobRead);
    let see = move |_: ItemId| see_all;
    match rest {
        ["api", f] => {
            let bean = api::queue(ctx(st, base, &see, now));
            api_response(st, r, f, bean)
        }
        [] => html(st, StatusCode::OK, pages::simple("Build Queue", "Build Queue")),
        ["cancelItem"] => {
            if !r.is_post() {
                return require_post(st, r);
            }
            let id = r.param("id").and_then(|s| s.trim().parse::<u64>().ok());
            let Some(id) = id.filter(|id| st.queue.iter().any(|q| q.id == *id) && see_all) else {
                return html(st, StatusCode::NOT_FOUND, pages::oops(None));
            };
            if !r.has(Perm::JobCancel) {
                return html(st, StatusCode::UNPROCESSABLE_ENTITY, pages::oops(None));
            }
            engine::cancel_queue_item(st, id, now);
            twin.wake.notify_one();
            empty(StatusCode::NO_CONTENT)
        }
        ["item", n, more @ ..] => {
            let Some(id) = n.parse::<u64>().ok() else { return not_found(st, r) };
            let Some(q) = st.queue_item(id).filter(|q| see(q.job)).cloned() else { return not_found(st, r) };
            match more {
                ["api", f] => {
                    let bean = api::queue_item(ctx(st, base, &see, now), &q);
                    api_response(st, r, f, bean)
                }
                [] => text(
                    st,
                    format!(
                        // Queue.Item.doIndex uses the request path, not an absolute URL.
                        "Queue item exists. For details check, for example, {}/api/json?tree=cancelled,executable[url]",
                        r.path.trim_end_matches('/')
                    ),
                ),
                ["cancelQueue"] => {
                    if !r.is_post() {
                        return require_post(st, r);
                    }
                    if !r.has(Perm::JobCancel) {
                        return deny(st, r, Perm::JobCancel);
                    }
                    engine::cancel_queue_item(st, id, now);
                    twin.wake.notify_one();
                    empty(StatusCode::NO_CONTENT)
                }
                _ => not_found(st, r),
            }
        }
        _ => not_found(st, r),
    }
}

fn computer_route(st: &mut State, r: &Req, rest: &[&str], base: &str, now: i64) -> Response {
    let see_all = r.has(Perm::JobRead);
    let see = move |_: ItemId| see_all;
    match rest {
        ["api", f] => {
            let bean = api::computer_set(ctx(st, base, &see, now));
            api_response(st, r, f, bean)
        }
        [] => html(st, StatusCode::OK, pages::simple("Nodes", "Nodes")),
        [name, more @ ..] => {
            let idx = if *name == "(built-in)" || *name == "(master)" {
                Some(0)
            } else {
                st.nodes.iter().position(|n| !n.is_builtin() && n.name == *name)
            };
            let Some(idx) = idx else { return not_found(st, r) };
            match more {
                ["api", f] => {
                    let bean = api::computer(ctx(st, base, &see, now), idx);
                    api_response(st, r, f, bean)
                }
                [] => html(st, StatusCode::OK, pages::simple(st.nodes[idx].display_name(), "Node")),
                ["toggleOffline"] => {
                    if !r.is_post() {
                        return require_post(st, r);
                    }
                    if !r.has(Perm::AgentConfigure) {
                        return deny(st, r, Perm::AgentConfigure);
                    }
                    let reason = r.param("offlineMessage").map(str::to_string);
                    let node = &mut st.nodes[idx];
                    node.temporarily_offline = !node.temporarily_offline;
                    node.offline_reason = if node.temporarily_offline { reason } else { None };
                    redirect(StatusCode::FOUND, &api::computer_url(base, &st.nodes[idx]))
                }
                _ => not_found(st, r),
            }
        }
    }
}

fn find_view(st: &State, owner: Option<ItemId>, name: &str) -> Option<usize> {
    match owner {
        None => st.views.iter().position(|v| v.name == name),
        Some(o) => st.item(o)?.views.iter().position(|v| v.name == name),
    }
}

fn views_mut(st: &mut State, owner: Option<ItemId>) -> Option<&mut Vec<View>> {
    match owner {
        None => Some(&mut st.views),
        Some(o) => st.item_mut(o).map(|i| &mut i.views),
    }
}

#[allow(clippy::too_many_arguments)]
fn view_route(
    twin: &Arc<Twin>,
    st: &mut State,
    r: &Req,
    owner: Option<ItemId>,
    name: &str,
    rest: &[&str],
    base: &str,
    now: i64,
) -> Response {
    let see_all = r.has(Perm::JobRead);
    let see = move |_: ItemId| see_all;
    let Some(idx) = find_view(st, owner, name) else { return not_found(st, r) };
    let view = match owner {
        None => st.views[idx].clone(),
        Some(o) => match st.item(o) {
            Some(i) => i.views[idx].clone(),
            None => return not_found(st, r),
        },
    };
    match rest {
        ["job", ..] => item_route(twin, st, r, owner, rest, base, now),
        ["api", f] => {
            let bean = api::view(ctx(st, base, &see, now), owner, &view);
            api_response(st, r, f, bean)
        }
        [] => html(st, StatusCode::OK, pages::simple(&view.name, "View")),
        ["configure"] => html(st, StatusCode::OK, pages::simple(&format!("Edit View [{}]", view.name), "Configure")),
        ["config.xml"] => match r.method {
            Method::GET => {
                if !r.has(Perm::ViewRead) {
                    return deny(st, r, Perm::ViewRead);
                }
                let xml = view.config_xml.clone().unwrap_or_else(|| {
                    let kind = if view.kind == ViewKind::List { "list" } else { "all" };
                    config_xml::render_view_config(
                        &view.name,
                        kind,
                        &view.job_names,
                        view.description.as_deref().unwrap_or(""),
                    )
                });
                let mut resp = (StatusCode::OK, xml).into_response();
                resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/xml"));
                resp
            }
            Method::POST => {
                if !r.has(Perm::ViewConfigure) {
                    return deny(st, r, Perm::ViewConfigure);
                }
                let xml = String::from_utf8_lossy(&r.body).into_owned();
                let parsed = match config_xml::parse_view_config(&xml) {
                    Ok(p) => p,
                    Err(e) => {
                        return html(
                            st,
                            StatusCode::INTERNAL_SERVER_ERROR,
                            pages::oops(Some(&format!("java.io.IOException: {e}"))),
                        );
                    }
                };
                if let Some(v) = views_mut(st, owner).and_then(|vs| vs.get_mut(idx)) {
                    v.description = Some(parsed.description.clone()).filter(|d| !d.is_empty());
                    v.job_names = parsed.job_names.clone();
                    v.include_regex = parsed.include_regex.clone();
                    v.config_xml = Some(xml);
                }
                empty(StatusCode::OK)
            }
            _ => jetty(StatusCode::BAD_REQUEST, "Bad Request", &r.path),
        },
        ["doDelete"] => {
            if !r.is_post() {
                return require_post(st, r);
            }
            if !r.has(Perm::ViewDelete) {
                return deny(st, r, Perm::ViewDelete);
            }
            let primary = owner.is_none() && view.name == st.primary_view;
            if primary {
                return failure(st, "Cannot delete the primary view");
            }
            if let Some(vs) = views_mut(st, owner) {
                vs.remove(idx);
            }
            redirect(StatusCode::FOUND, base)
        }
        ["addJobToView"] | ["removeJobFromView"] => {
            if !r.is_post() {
                return require_post(st, r);
            }
            if !r.has(Perm::ViewConfigure) {
                return deny(st, r, Perm::ViewConfigure);
            }
            let Some(job) = r.param("name").map(str::to_string) else {
                return failure(st, "Query parameter 'name' is required");
            };
            // ListView stores the resolved item's own name, not the spelling in the request.
            let Some(job) = st.child(owner, &job).and_then(|id| st.item(id)).map(|i| i.name.clone()) else {
                return failure(st, &format!("Query parameter 'name' does not correspond to a known item: {job}"));
            };
            let add = rest[0] == "addJobToView";
            if let Some(v) = views_mut(st, owner).and_then(|vs| vs.get_mut(idx)) {
                // A TreeSet on CASE_INSENSITIVE_ORDER: adding keeps an equal name already present.
                let present = v.job_names.iter().any(|j| java_fold::eq_ignore_case(j, &job));
                if !add {
                    v.job_names.retain(|j| !java_fold::eq_ignore_case(j, &job));
                } else if !present {
                    v.job_names.push(job);
                }
                v.config_xml = None;
            }
            empty(StatusCode::OK)
        }
        _ => not_found(st, r),
    }
}

fn create_view(st: &mut State, r: &Req, owner: Option<ItemId>, base: &str) -> Response {
    if !r.is_post() {
        return require_post(st, r);
    }
    if !r.has(Perm::ViewCreate) {
        return deny(st, r, Perm::ViewCreate);
    }
    let mut name = r.param("name").map(|n| n.trim().to_string());
    let mut mode = r.param("mode").map(str::to_string);
    if let Some(json) = r.param("json")
        && let Ok(v) = serde_json::from_str::<serde_json::Value>(json)
    {
        if name.is_none() {
            name = v.get("name").and_then(|n| n.as_str()).map(str::to_string);
        }
        if mode.is_none() {
            mode = v.get("mode").and_then(|n| n.as_str()).map(str::to_string);
        }
    }
    let Some(name) = name else { return failure(st, "Query parameter 'name' is required") };
    if let Err(e) = check_good_name(&name) {
        return failure(st, &e);
    }
    if find_view(st, owner, &name).is_some() {
        return failure(st, &format!("A view already exists with the name \"{name}\""));
    }
    let owner_url = owner.map(|o| format!("{base}{}", st.item_path(o))).unwrap_or_else(|| base.to_string());
    let (view, resp) = if r.content_type().contains("xml") && !r.body.is_empty() {
        let xml = String::from_utf8_lossy(&r.body).into_owned();
        match config_xml::parse_view_config(&xml) {
            Ok(p) => {
                let kind = match p.kind {
                    config_xml::ViewKind::AllView => ViewKind::All,
                    config_xml::ViewKind::MyView => ViewKind::My,
                    config_xml::ViewKind::ListView => ViewKind::List,
                };
                let v = View {
                    name: name.clone(),
                    kind,
                    description: Some(p.description.clone()).filter(|d| !d.is_empty()),
                    job_names: p.job_names.clone(),
                    include_regex: p.include_regex.clone(),
                    config_xml: Some(xml),
                };
                (v, empty(StatusCode::OK))
            }
            Err(e) => {
                return html(
                    st,
                    StatusCode::INTERNAL_SERVER_ERROR,
                    pages::oops(Some(&format!("java.io.IOException: {e}"))),
                );
            }
        }
    } else {
        let kind = match mode.as_deref() {
            Some("hudson.model.ListView") => ViewKind::List,
            Some("hudson.model.MyView") => ViewKind::My,
            Some("hudson.model.AllView") => ViewKind::All,
            Some(m) => return failure(st, &format!("No view type ‘{m}’ is known")),
            None => return failure(st, "No mode given"),
        };
        let v = View {
            name: name.clone(),
            kind,
            description: None,
            job_names: Vec::new(),
            include_regex: None,
            config_xml: None,
        };
        (v, redirect(StatusCode::FOUND, &format!("{owner_url}view/{}/configure", crate::model::raw_encode(&name))))
    };
    if let Some(vs) = views_mut(st, owner) {
        vs.push(view);
        vs.sort_by_key(|v| v.name.to_lowercase());
    }
    resp
}
