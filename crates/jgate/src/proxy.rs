//! The Jenkins-compatible governed proxy (issue #11): every controller served as a Jenkins base
//! URL at `/jenkins/<controller>/`, for agents that use a Jenkins client library, a community MCP
//! server or curl rather than jgate's own tools.
//!
//! Agents authenticate as to Jenkins (HTTP Basic with the agent's name and key; Bearer also
//! accepted). Each request is classified by `gate::route` and served by `Gate::proxy` through the
//! same policy, sanitizer and audit as MCP; this module only speaks HTTP: authentication, Jenkins-
//! shaped errors, rendering JSON as JSON or Python, and rewriting Jenkins' absolute URLs to the
//! proxy's own base so clients keep coming back through jgate.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{ConnectInfo, OriginalUri, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use gate::audit::Surface;
use gate::gate::Caller;
use gate::proxy::{ProxyBody, ProxyError};
use gate::route::{self, Format, Route};
use gate::{Gate, GateError};
use serde_json::Value;

/// Where the proxy is mounted.
pub const PREFIX: &str = "/jenkins";

/// The proxy's routes, to be nested at [`PREFIX`].
pub fn routes(gate: Arc<Gate>) -> Router {
    Router::new().fallback(handle).with_state(gate)
}

async fn handle(
    State(gate): State<Arc<Gate>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    OriginalUri(uri): OriginalUri,
    req: Request,
) -> Response {
    let method = req.method().as_str().to_string();
    let headers = req.headers().clone();
    let body = req.into_body();
    let Some(rest) = uri.path().strip_prefix(PREFIX).and_then(|p| p.strip_prefix('/')) else {
        return jenkins_error(StatusCode::NOT_FOUND, "Not Found", "use /jenkins/<controller>/ as the Jenkins URL");
    };
    let (controller, path) = match rest.split_once('/') {
        Some((c, p)) => (c.to_string(), format!("/{p}")),
        None => (rest.to_string(), "/".to_string()),
    };
    let caller = match authenticate(&gate, &headers, peer).await {
        Ok(c) => c,
        Err(response) => return response,
    };
    let jenkins_base = match gate.proxy_controller(&controller).await {
        Ok(Some(base)) => base,
        Ok(None) => {
            return jenkins_error(
                StatusCode::NOT_FOUND,
                "Not Found",
                "jgate has no controller by that name: the Jenkins URL is http://<jgate>/jenkins/<controller>/",
            );
        }
        Err(e) => return gate_error(e),
    };
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or("localhost");
    let own_base = format!("http://{host}{PREFIX}/{controller}/");
    let request_line = format!("{method} {path}{}", uri.query().map(|q| format!("?{q}")).unwrap_or_default());
    let classified = match route::classify(&method, &path, uri.query()) {
        Route::Op(c) => c,
        Route::Forbidden(reason) => {
            let _ = gate.proxy_refused(&caller, &controller, &request_line, reason).await;
            return jenkins_error(StatusCode::FORBIDDEN, "Forbidden", &format!("jgate never forwards this: {reason}"));
        }
        Route::Unknown => {
            let reason = "this request maps to no operation jgate serves through its Jenkins proxy";
            let _ = gate.proxy_refused(&caller, &controller, &request_line, reason).await;
            return jenkins_error(StatusCode::FORBIDDEN, "Forbidden", reason);
        }
        Route::Crumb => {
            // Agents need no crumb (as API-token users in Jenkins); some clients fail without one,
            // so a placeholder is served. Writes are rebuilt by jgate: the crumb is never read.
            let crumb = serde_json::json!({
                "_class": "hudson.security.csrf.DefaultCrumbIssuer",
                "crumb": PLACEHOLDER_CRUMB,
                "crumbRequestField": "Jenkins-Crumb",
            });
            let format =
                if path.trim_end_matches('/').ends_with("/api/python") { Format::Python } else { Format::Json };
            return render(&crumb, format);
        }
        Route::User(name, _) if name != caller.agent => {
            let reason = "user accounts and their API tokens are managed in Jenkins, not through jgate";
            let _ = gate.proxy_refused(&caller, &controller, &request_line, reason).await;
            return jenkins_error(StatusCode::FORBIDDEN, "Forbidden", &format!("jgate never forwards this: {reason}"));
        }
        Route::WhoAmI(format) | Route::User(_, format) => {
            // Who the client is, through jgate: the agent (never the controller's token user).
            let me = serde_json::json!({
                "_class": "hudson.model.User",
                "absoluteUrl": format!("{own_base}user/{}", caller.agent),
                "description": null,
                "fullName": caller.agent,
                "id": caller.agent,
                "property": [],
            });
            return render(&me, format);
        }
        Route::Malformed(why) => {
            let _ = gate.proxy_refused(&caller, &controller, &request_line, why).await;
            return jenkins_error(StatusCode::BAD_REQUEST, "Bad Request", why);
        }
    };
    let is_write =
        gate::ops::OPERATIONS.iter().any(|o| o.name == classified.op && o.access == gate::catalog::Access::Write);
    if is_write {
        return write(&gate, &caller, &controller, &classified, &headers, body, &own_base).await;
    }
    match gate.proxy(&caller, &controller, &classified).await {
        Ok(answer) => {
            let mut response = match answer.body {
                ProxyBody::Json(mut value, format) => {
                    gate::proxy::rewrite_urls(&mut value, &jenkins_base, &own_base);
                    gate::proxy::rewrite_root_relative(&mut value, url_path(&jenkins_base), url_path(&own_base));
                    render(&value, format)
                }
                ProxyBody::Text(text) => typed(text, "text/plain;charset=UTF-8"),
                ProxyBody::Stream(stream) => {
                    let mut r = axum::body::Body::from_stream(stream).into_response();
                    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain;charset=UTF-8"));
                    r
                }
            };
            for (name, value) in answer.headers {
                if let Ok(v) = HeaderValue::from_str(&value) {
                    response.headers_mut().insert(name, v);
                }
            }
            response
        }
        Err(ProxyError::NotFound) => jenkins_error(StatusCode::NOT_FOUND, "Not Found", "no such item"),
        Err(ProxyError::Gate(e)) => gate_error(e),
    }
}

/// A write: the request's form (or config.xml) read within a cap, then the typed operation. A body
/// refused here (too large, not UTF-8, multipart where none is taken) is on record like every
/// other refusal.
async fn write(
    gate: &Gate,
    caller: &Caller,
    controller: &str,
    c: &gate::route::Classified,
    headers: &HeaderMap,
    body: axum::body::Body,
    own_base: &str,
) -> Response {
    let refuse = |response: Response| async move {
        let reason = format!("the request body was refused ({})", response.status());
        let _ = gate.proxy_refused(caller, controller, &format!("POST {}", c.upstream), &reason).await;
        response
    };
    let raw_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let content_type = raw_type.to_ascii_lowercase();
    if content_type.starts_with("multipart/") {
        if !(content_type.starts_with("multipart/form-data") && c.route == "POST /{job}/buildWithParameters") {
            return refuse(jenkins_error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "Unsupported Media Type",
                "multipart bodies are taken only by buildWithParameters (file parameters)",
            ))
            .await;
        }
        let (form, files) = match read_multipart(&raw_type, body).await {
            Ok(parts) => parts,
            Err(response) => return refuse(response).await,
        };
        return answer_write(gate.proxy_write(caller, controller, c, &form, None, &files).await, c, own_base);
    }
    let bytes = match axum::body::to_bytes(body, gate::proxy::MAX_PROXY_BODY_BYTES).await {
        Ok(b) => b,
        Err(_) => {
            return refuse(jenkins_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "Payload Too Large",
                &format!("the request body is over jgate's limit of {} KiB", gate::proxy::MAX_PROXY_BODY_BYTES / 1024),
            ))
            .await;
        }
    };
    let (form, text) = if content_type.starts_with("application/x-www-form-urlencoded") {
        (url::form_urlencoded::parse(&bytes).into_owned().collect::<Vec<(String, String)>>(), None)
    } else if bytes.is_empty() {
        (Vec::new(), None)
    } else {
        match String::from_utf8(bytes.to_vec()) {
            Ok(t) => (Vec::new(), Some(t)),
            Err(_) => {
                let page = jenkins_error(StatusCode::BAD_REQUEST, "Bad Request", "the request body is not UTF-8 text");
                return refuse(page).await;
            }
        }
    };
    answer_write(gate.proxy_write(caller, controller, c, &form, text, &[]).await, c, own_base)
}

/// A `multipart/form-data` trigger: text parts are fields, file parts files; at most
/// `MAX_PROXY_BODY_BYTES` in all (413 over it).
async fn read_multipart(
    content_type: &str,
    body: axum::body::Body,
) -> Result<(Vec<(String, String)>, Vec<jenkins::FilePart>), Response> {
    use axum::extract::FromRequest;
    let too_large = || {
        jenkins_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "Payload Too Large",
            &format!("the request body is over jgate's limit of {} KiB", gate::proxy::MAX_PROXY_BODY_BYTES / 1024),
        )
    };
    let bad = |why: &str| jenkins_error(StatusCode::BAD_REQUEST, "Bad Request", why);
    let req = axum::http::Request::builder()
        .header(header::CONTENT_TYPE, content_type)
        .body(body)
        .map_err(|_| bad("the multipart Content-Type is not valid"))?;
    let mut multipart =
        axum::extract::Multipart::from_request(req, &()).await.map_err(|_| bad("the multipart body cannot be read"))?;
    let (mut form, mut files, mut total) = (Vec::new(), Vec::new(), 0usize);
    loop {
        let field = match multipart.next_field().await {
            Ok(Some(field)) => field,
            Ok(None) => break,
            Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => return Err(too_large()),
            Err(_) => return Err(bad("the multipart body is malformed")),
        };
        let Some(name) = field.name().map(str::to_string) else {
            return Err(bad("a multipart part has no name"));
        };
        let file_name = field.file_name().map(str::to_string);
        let mut field = field;
        let mut data = Vec::new();
        loop {
            match field.chunk().await {
                Ok(Some(chunk)) => {
                    total += chunk.len();
                    if total > gate::proxy::MAX_PROXY_BODY_BYTES {
                        return Err(too_large());
                    }
                    data.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => return Err(too_large()),
                Err(_) => return Err(bad("the multipart body is malformed")),
            }
        }
        match file_name {
            Some(file_name) => files.push(jenkins::FilePart { name, file_name, content: data }),
            None => match String::from_utf8(data) {
                Ok(value) => form.push((name, value)),
                Err(_) => return Err(bad("a multipart text part is not UTF-8")),
            },
        }
    }
    Ok((form, files))
}

/// The Jenkins-shaped answer to a write.
fn answer_write(
    result: Result<gate::proxy::ProxyWrite, ProxyError>,
    c: &gate::route::Classified,
    own_base: &str,
) -> Response {
    match result {
        Ok(gate::proxy::ProxyWrite::Queued { queue_id }) => {
            // As Jenkins answers a trigger: 201 with the queue item, here under the proxy's base.
            let mut r = StatusCode::CREATED.into_response();
            if let Ok(v) = HeaderValue::from_str(&format!("{own_base}queue/item/{queue_id}/")) {
                r.headers_mut().insert(header::LOCATION, v);
            }
            r
        }
        // A rename: Jenkins redirects (302) to the item's new page, and clients read the new
        // location from `Location` (api4jenkins). The proxy serves no HTML pages, so a client
        // that follows redirects would fail there: the new location comes with a 200 instead.
        Ok(gate::proxy::ProxyWrite::Moved { path }) => {
            let mut r = StatusCode::OK.into_response();
            if let Ok(v) = HeaderValue::from_str(&format!("{own_base}{path}")) {
                r.headers_mut().insert(header::LOCATION, v);
            }
            r
        }
        // Jenkins answers cancelItem with 204 and the others with a redirect to a page the proxy
        // does not serve (HTML): a plain 200 lets clients that follow redirects succeed.
        Ok(gate::proxy::ProxyWrite::Done) if c.op == "cancel_queue_item" || c.route == "DELETE /{job}/" => {
            StatusCode::NO_CONTENT.into_response()
        }
        Ok(gate::proxy::ProxyWrite::Done) => StatusCode::OK.into_response(),
        Err(ProxyError::NotFound) => jenkins_error(StatusCode::NOT_FOUND, "Not Found", "no such item"),
        Err(ProxyError::Gate(e)) => gate_error(e),
    }
}

async fn authenticate(gate: &Gate, headers: &HeaderMap, peer: SocketAddr) -> Result<Caller, Response> {
    let Some(value) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) else {
        return Err(unauthorized("authenticate with your agent name as user and your agent key as API token"));
    };
    let (user, key) = if let Some(b64) = value.strip_prefix("Basic ").or_else(|| value.strip_prefix("basic ")) {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .ok()
            .and_then(|raw| String::from_utf8(raw).ok())
            .ok_or_else(|| unauthorized("the Basic credentials are not valid base64 of user:token"))?;
        let (user, key) = decoded
            .split_once(':')
            .ok_or_else(|| unauthorized("the Basic credentials have no ':' between user and token"))?;
        (Some(user.to_string()), key.to_string())
    } else if let Some(key) = value.strip_prefix("Bearer ").or_else(|| value.strip_prefix("bearer ")) {
        (None, key.trim().to_string())
    } else {
        return Err(unauthorized("use HTTP Basic (agent name and key) or Bearer (agent key)"));
    };
    match gate.authenticate_proxy(&key).await {
        Ok((agent, key_id)) => {
            if user.as_deref().is_some_and(|u| u != agent) {
                return Err(unauthorized("the user name is not the agent this key belongs to"));
            }
            Ok(Caller {
                agent,
                key_id: Some(key_id),
                surface: Surface::Proxy,
                client_addr: Some(peer.ip().to_string()),
                request_id: format!("proxy-{}", gate::call::new_request_id()),
            })
        }
        Err(GateError::BadKey(_)) => Err(unauthorized("invalid agent name or key")),
        Err(e) => Err(gate_error(e)),
    }
}

/// The path of an absolute URL (`http://h:1/ci/` → `/ci/`).
fn url_path(url: &str) -> &str {
    let after_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
    after_scheme.find('/').map_or("/", |i| &after_scheme[i..])
}

/// The crumb the proxy hands out: constant and meaningless (64 hex digits, as Jenkins' are).
const PLACEHOLDER_CRUMB: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// JSON in the representation the client asked for (`api/json`, `api/python` or `api/xml`). The
/// proxy always reads JSON from Jenkins (that is what it filters) and renders the others itself.
fn render(value: &Value, format: Format) -> Response {
    match format {
        Format::Python => typed(python_literal(value), "text/x-python;charset=UTF-8"),
        Format::Xml => typed(xml_document(value), "application/xml;charset=UTF-8"),
        Format::Json => typed(value.to_string(), "application/json;charset=utf-8"),
    }
}

/// JSON as Stapler's XML flavour (jenkins-wire.md §3.10): the root element is the decapitalized
/// simple name of `_class`; `_class` is a single-quoted attribute where the JSON has it (Stapler
/// writes it in both flavours by the same rule); arrays are repeated elements named by the
/// singular of the property; nulls are omitted; an empty object is an empty element. Names that
/// are not XML names (they come from Jenkins) have their other characters replaced by `_`.
fn xml_document(value: &Value) -> String {
    let root = value
        .get("_class")
        .and_then(Value::as_str)
        .map(|class| {
            let simple = class.rsplit(['.', '$']).next().unwrap_or(class);
            let mut chars = simple.chars();
            chars.next().map(|c| c.to_lowercase().chain(chars).collect::<String>()).unwrap_or_default()
        })
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "object".to_string());
    let mut out = String::new();
    match value {
        // A top-level array (none of the served `api/` answers is one) is wrapped, as with `wrapper=`.
        Value::Array(_) => {
            out.push_str("<list>");
            write_xml(value, "item", &mut out);
            out.push_str("</list>");
        }
        _ => write_xml(value, &root, &mut out),
    }
    out
}

fn write_xml(value: &Value, tag: &str, out: &mut String) {
    let tag = xml_name(tag);
    match value {
        Value::Null => {}
        Value::Array(items) => {
            let one = singular(&tag);
            for item in items {
                write_xml(item, &one, out);
            }
        }
        Value::Object(map) => {
            out.push('<');
            out.push_str(&tag);
            if let Some(class) = map.get("_class").and_then(Value::as_str) {
                out.push_str(" _class='");
                xml_escape(class, out);
                out.push('\'');
            }
            if map.is_empty() {
                out.push_str("/>");
                return;
            }
            out.push('>');
            for (key, v) in map {
                if key != "_class" {
                    write_xml(v, key, out);
                }
            }
            out.push_str("</");
            out.push_str(&tag);
            out.push('>');
        }
        scalar => {
            let text = match scalar {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            out.push('<');
            out.push_str(&tag);
            out.push('>');
            xml_escape(&text, out);
            out.push_str("</");
            out.push_str(&tag);
            out.push('>');
        }
    }
}

/// Stapler names list elements by the singular of the property (`jobs` → `job`).
fn singular(name: &str) -> String {
    if let Some(stem) = name.strip_suffix("ies") {
        format!("{stem}y")
    } else if let Some(stem) = name.strip_suffix('s').filter(|s| !s.is_empty()) {
        stem.to_string()
    } else {
        name.to_string()
    }
}

/// An XML element name: letters, digits, `_`, `-`, `.`; starting with a letter or `_`.
fn xml_name(name: &str) -> String {
    let mut out: String =
        name.chars().map(|c| if c.is_alphanumeric() || matches!(c, '_' | '-' | '.') { c } else { '_' }).collect();
    if !out.starts_with(|c: char| c.is_alphabetic() || c == '_') {
        out.insert(0, '_');
    }
    out
}

fn xml_escape(text: &str, out: &mut String) {
    for ch in text.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\'' => out.push_str("&apos;"),
            '"' => out.push_str("&quot;"),
            // Characters XML 1.0 cannot carry (the sanitizer has already removed most).
            c if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') => {}
            c => out.push(c),
        }
    }
}

/// A body with its content type.
fn typed(body: String, content_type: &'static str) -> Response {
    let mut r = (StatusCode::OK, body).into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// Jenkins answers errors with a short HTML page; clients read the status. The reason is jgate's
/// own text (it never quotes the request).
fn jenkins_error(status: StatusCode, title: &str, reason: &str) -> Response {
    let escape = |s: &str| s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
    let body = format!(
        "<html><head><title>Error {code} {title}</title></head><body><h2>HTTP ERROR {code} {title}</h2><p>jgate: {reason}</p></body></html>\n",
        code = status.as_u16(),
        title = escape(title),
        reason = escape(reason),
    );
    let mut r = (status, body).into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html;charset=utf-8"));
    r
}

fn unauthorized(reason: &str) -> Response {
    let mut r = jenkins_error(StatusCode::UNAUTHORIZED, "Unauthorized", reason);
    r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"Jenkins\""));
    // Authentication comes before the body is read.
    crate::serve::unread_body_answer(r)
}

fn gate_error(e: GateError) -> Response {
    match e {
        GateError::Denied { reason } => jenkins_error(StatusCode::FORBIDDEN, "Forbidden", &format!("denied: {reason}")),
        GateError::Failed { message, status: Some(404) } => jenkins_error(StatusCode::NOT_FOUND, "Not Found", &message),
        GateError::Failed { message, status: Some(400) } => {
            // Jenkins reports a 400 (createItem's name checks, a duplicate) in `X-Error`, which
            // clients show (api4jenkins raises it); the message has been through the sanitizer.
            let mut r = jenkins_error(StatusCode::BAD_REQUEST, "Bad Request", &message);
            let shown: String = message.chars().filter(|c| !c.is_control()).take(1000).collect();
            if let Ok(v) = HeaderValue::from_bytes(shown.as_bytes()) {
                r.headers_mut().insert("X-Error", v);
            }
            r
        }
        GateError::Failed { message, status: Some(s) } => {
            let status = StatusCode::from_u16(s).unwrap_or(StatusCode::BAD_GATEWAY);
            jenkins_error(status, status.canonical_reason().unwrap_or("Error"), &message)
        }
        GateError::Invalid(why) => jenkins_error(StatusCode::BAD_REQUEST, "Bad Request", &why),
        GateError::Busy(why) => jenkins_error(StatusCode::TOO_MANY_REQUESTS, "Too Many Requests", &why),
        e @ GateError::Limited { retry_after_secs, .. } => {
            // A rate limit: Jenkins clients and HTTP libraries know to wait for Retry-After.
            let mut r = jenkins_error(StatusCode::TOO_MANY_REQUESTS, "Too Many Requests", &e.to_string());
            r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
            r
        }
        e @ GateError::AuditUnavailable(_) => {
            jenkins_error(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable", &e.to_string())
        }
        e => jenkins_error(StatusCode::BAD_GATEWAY, "Bad Gateway", &e.to_string()),
    }
}

/// JSON as the Python literal Stapler's `api/python` writes: `True`/`False`/`None`, strings quoted
/// as JSON quotes them (a valid Python string literal for every JSON string).
fn python_literal(value: &Value) -> String {
    let mut out = String::new();
    write_python(value, &mut out);
    out
}

fn write_python(value: &Value, out: &mut String) {
    match value {
        Value::Null => out.push_str("None"),
        Value::Bool(true) => out.push_str("True"),
        Value::Bool(false) => out.push_str("False"),
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::String(s) => out.push_str(&Value::String(s.clone()).to_string()),
        Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_python(v, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            out.push('{');
            for (i, (k, v)) in map.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                write_python(v, out);
            }
            out.push('}');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_literals_read_back_as_the_same_data() {
        let v = serde_json::json!({"a": [true, false, null, 1, 2.5], "s": "quote \" and \\ and \u{e9}"});
        assert_eq!(python_literal(&v), r#"{"a":[True,False,None,1,2.5],"s":"quote \" and \\ and é"}"#);
    }

    #[test]
    fn xml_is_written_as_stapler_writes_it() {
        let v = serde_json::json!({
            "_class": "hudson.model.Hudson",
            "description": null,
            "jobs": [
                {"_class": "hudson.model.FreeStyleProject", "name": "a&b", "url": "http://h/job/a&b/", "color": "blue"},
                {"_class": "com.cloudbees.hudson.plugins.folder.Folder", "name": "f"},
            ],
            "actions": [{}, {"_class": "x.Y$Z"}],
            "properties": [],
            "useSecurity": true,
            "numExecutors": 2,
            "weird key<": "v'",
        });
        assert_eq!(
            xml_document(&v),
            "<hudson _class='hudson.model.Hudson'>\
             <job _class='hudson.model.FreeStyleProject'><name>a&amp;b</name><url>http://h/job/a&amp;b/</url><color>blue</color></job>\
             <job _class='com.cloudbees.hudson.plugins.folder.Folder'><name>f</name></job>\
             <action/><action _class='x.Y$Z'></action>\
             <useSecurity>true</useSecurity><numExecutors>2</numExecutors><weird_key_>v&apos;</weird_key_></hudson>"
        );
        let item = serde_json::json!({"_class": "hudson.model.Queue$BlockedItem", "id": 3});
        assert!(xml_document(&item).starts_with("<blockedItem _class='hudson.model.Queue$BlockedItem'><id>3</id>"));
        assert_eq!(singular("dependencies"), "dependency");
        assert_eq!(xml_name("1x"), "_1x");
    }

    #[test]
    fn paths_of_base_urls() {
        assert_eq!(url_path("http://h:1/ci/"), "/ci/");
        assert_eq!(url_path("http://h/jenkins/prod/"), "/jenkins/prod/");
        assert_eq!(url_path("http://h"), "/");
    }

    #[test]
    fn a_refused_write_answers_with_jenkins_status() {
        // The status travels as data from the wire client's error (a trigger Jenkins refused:
        // 409 disabled, 400 not parameterized), never parsed back out of the message.
        let failed = |m: &str, status| GateError::Failed { message: m.into(), status };
        let r = gate_error(failed("nothing was started: team/api is not buildable", Some(409)));
        assert_eq!(r.status(), StatusCode::CONFLICT);
        let r = gate_error(failed("Nothing is submitted", Some(400)));
        assert_eq!((r.status(), r.headers().get("X-Error").is_some()), (StatusCode::BAD_REQUEST, true));
        // A message that merely says "(HTTP 409)" is not a status.
        let r = gate_error(failed("nothing was started: refused (HTTP 409): disabled", None));
        assert_eq!(r.status(), StatusCode::BAD_GATEWAY);
    }

    #[test]
    fn a_rate_limit_answers_429_with_retry_after() {
        let e = GateError::Limited {
            message: "refused: bot's limit of 5 triggers per hour is reached; the next is allowed in 23 min".into(),
            fix: "wait 23 min".into(),
            retry_after_secs: 1380,
        };
        let r = gate_error(e);
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(r.headers().get(header::RETRY_AFTER).and_then(|v| v.to_str().ok()), Some("1380"));
    }

    #[test]
    fn error_pages_escape_what_they_show() {
        let r = jenkins_error(StatusCode::FORBIDDEN, "Forbidden", "<script>");
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
    }
}
