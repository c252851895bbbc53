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
            return jenkins_error(StatusCode::NOT_FOUND, "Not Found", "agents of jgate need no crumb");
        }
        Route::Malformed(why) => {
            let _ = gate.proxy_refused(&caller, &controller, &request_line, why).await;
            return jenkins_error(StatusCode::BAD_REQUEST, "Bad Request", why);
        }
    };
    if classified.format == Some(Format::Xml) {
        let reason = "api/xml is not served through jgate's proxy yet: use api/json or api/python";
        let _ = gate.proxy_refused(&caller, &controller, &request_line, reason).await;
        return jenkins_error(StatusCode::NOT_ACCEPTABLE, "Not Acceptable", reason);
    }
    match gate.proxy(&caller, &controller, &classified).await {
        Ok(answer) => {
            let mut response = match answer.body {
                ProxyBody::Json(mut value, format) => {
                    gate::proxy::rewrite_urls(&mut value, &jenkins_base, &own_base);
                    match format {
                        Format::Python => typed(python_literal(&value), "text/x-python;charset=UTF-8"),
                        _ => typed(value.to_string(), "application/json;charset=utf-8"),
                    }
                }
                ProxyBody::Text(text) => typed(text, "text/plain;charset=UTF-8"),
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
    match gate.authenticate(&key).await {
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
    r
}

fn gate_error(e: GateError) -> Response {
    match e {
        GateError::Denied { reason } => jenkins_error(StatusCode::FORBIDDEN, "Forbidden", &format!("denied: {reason}")),
        GateError::Failed { message, status: Some(404) } => jenkins_error(StatusCode::NOT_FOUND, "Not Found", &message),
        GateError::Failed { message, status: Some(s) } => {
            let status = StatusCode::from_u16(s).unwrap_or(StatusCode::BAD_GATEWAY);
            jenkins_error(status, status.canonical_reason().unwrap_or("Error"), &message)
        }
        GateError::Busy(why) => jenkins_error(StatusCode::TOO_MANY_REQUESTS, "Too Many Requests", &why),
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
    fn error_pages_escape_what_they_show() {
        let r = jenkins_error(StatusCode::FORBIDDEN, "Forbidden", "<script>");
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
    }
}
