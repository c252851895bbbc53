//! Logging in and out: the password form, one-time links (`jgate console login`), logout.
//!
//! The login form has no session yet, so its CSRF token is a double submit: a random value in
//! its own cookie (`jgate_login`, SameSite=Strict) that the form must repeat. A link's token is
//! used by a POST from its page, never by the GET that shows it (link scanners and previews would
//! otherwise use it up).

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use gate::admins::{LoginError, NewSession, SESSION_LIFETIME_MS};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;

use super::{Console, Form, LOGIN_COOKIE, SESSION_COOKIE, client_addr, cookie, same_origin, set_cookie};

pub fn routes() -> Router<Console> {
    Router::new()
        .route("/login", get(login_page).post(login))
        .route("/link", get(link_page).post(link))
        .route("/logout", post(logout))
}

#[derive(serde::Deserialize, Default)]
struct LoginQuery {
    expired: Option<String>,
    /// The console page to return to after logging in.
    next: Option<String>,
}

/// A fresh double-submit value for the login forms.
fn login_nonce() -> String {
    let mut b = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut b);
    hex::encode(b)
}

fn login_form(
    console: &Console,
    headers: &HeaderMap,
    status: StatusCode,
    error: Option<String>,
    name: &str,
    info: Option<&str>,
    next: &str,
) -> Response {
    let nonce = login_nonce();
    let next = super::return_target(next).unwrap_or("");
    let mut r = console.render_status(
        status,
        "login.html",
        None,
        minijinja::context! { error => error, name => name, nonce => nonce, info => info, next => next },
    );
    r.headers_mut().append(header::SET_COOKIE, set_cookie(headers, LOGIN_COOKIE, &nonce, 1800));
    r
}

async fn login_page(State(console): State<Console>, headers: HeaderMap, Query(q): Query<LoginQuery>) -> Response {
    // Already logged in: straight to the console.
    if let Some(t) = cookie(&headers, SESSION_COOKIE)
        && let Ok(Some(_)) = console.gate().console_session(&t).await
    {
        return Redirect::to(q.next.as_deref().and_then(super::return_target).unwrap_or("/console/controllers"))
            .into_response();
    }
    let info =
        q.expired.map(|_| "Your session has ended (it was idle too long, expired or was ended). Please log in again.");
    login_form(&console, &headers, StatusCode::OK, None, "", info, q.next.as_deref().unwrap_or(""))
}

/// The login form's double submit, and the Origin.
fn login_csrf_ok(headers: &HeaderMap, form: &Form) -> bool {
    let Some(expected) = cookie(headers, LOGIN_COOKIE) else {
        return false;
    };
    same_origin(headers) && !expected.is_empty() && bool::from(form.get("nonce").as_bytes().ct_eq(expected.as_bytes()))
}

async fn login(State(console): State<Console>, req: Request) -> Response {
    let addr = client_addr(req.extensions());
    let headers = req.headers().clone();
    let Ok(body) = axum::body::to_bytes(req.into_body(), 64 * 1024).await else {
        return console.page_error(StatusCode::PAYLOAD_TOO_LARGE, "The login form was too large.", None);
    };
    let form = Form::parse(&body);
    let name = form.get("name").trim().to_string();
    let next = form.get("next").to_string();
    if !login_csrf_ok(&headers, &form) {
        return login_form(
            &console,
            &headers,
            StatusCode::FORBIDDEN,
            Some("The login form had expired or came from another site. Please try again.".into()),
            &name,
            None,
            &next,
        );
    }
    let password = SecretString::from(form.get("password").to_string());
    match console.gate().console_login(&name, &password, &addr).await {
        Ok(s) => session_started(&headers, &s, super::return_target(&next)),
        Err(e) => {
            let status = match &e {
                LoginError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
                LoginError::Gate(_) => StatusCode::SERVICE_UNAVAILABLE,
                _ => StatusCode::UNAUTHORIZED,
            };
            login_form(&console, &headers, status, Some(e.to_string()), &name, None, &next)
        }
    }
}

/// The answer to a successful login: the session cookie, and on to the console.
fn session_started(headers: &HeaderMap, s: &NewSession, next: Option<&str>) -> Response {
    let mut r = Redirect::to(next.unwrap_or("/console/controllers")).into_response();
    r.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(headers, SESSION_COOKIE, s.token.expose_secret(), SESSION_LIFETIME_MS / 1000),
    );
    r.headers_mut().append(header::SET_COOKIE, set_cookie(headers, LOGIN_COOKIE, "", 0));
    r
}

#[derive(serde::Deserialize, Default)]
struct LinkQuery {
    token: Option<String>,
}

async fn link_page(State(console): State<Console>, headers: HeaderMap, Query(q): Query<LinkQuery>) -> Response {
    let nonce = login_nonce();
    let mut r = console.render(
        "link.html",
        None,
        minijinja::context! { token => q.token.unwrap_or_default(), nonce => nonce, error => None::<String> },
    );
    r.headers_mut().append(header::SET_COOKIE, set_cookie(&headers, LOGIN_COOKIE, &nonce, 1800));
    r
}

async fn link(State(console): State<Console>, req: Request) -> Response {
    let addr = client_addr(req.extensions());
    let headers = req.headers().clone();
    let Ok(body) = axum::body::to_bytes(req.into_body(), 64 * 1024).await else {
        return console.page_error(StatusCode::PAYLOAD_TOO_LARGE, "The form was too large.", None);
    };
    let form = Form::parse(&body);
    let token = form.get("token").trim().to_string();
    let refuse = |status: StatusCode, error: String| {
        let nonce = login_nonce();
        let mut r = console.render_status(
            status,
            "link.html",
            None,
            minijinja::context! { token => "", nonce => nonce, error => error },
        );
        r.headers_mut().append(header::SET_COOKIE, set_cookie(&headers, LOGIN_COOKIE, &nonce, 1800));
        r
    };
    if !login_csrf_ok(&headers, &form) {
        return refuse(
            StatusCode::FORBIDDEN,
            "The form had expired or came from another site. Open the link again.".into(),
        );
    }
    match console.gate().console_redeem_link(&token, &addr).await {
        Ok(s) => session_started(&headers, &s, None),
        Err(e) => {
            let status = match &e {
                LoginError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
                LoginError::Gate(_) => StatusCode::SERVICE_UNAVAILABLE,
                _ => StatusCode::UNAUTHORIZED,
            };
            refuse(status, e.to_string())
        }
    }
}

async fn logout(State(console): State<Console>, headers: HeaderMap, body: Bytes) -> Response {
    let form = Form::parse(&body);
    let authed = match console.authed_post(&headers, &form).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    if let Err(e) = console.gate().console_logout(&authed.token).await {
        return console.page_error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string(), Some(&authed));
    }
    let mut r = Redirect::to("/console/login").into_response();
    r.headers_mut().append(header::SET_COOKIE, set_cookie(&headers, SESSION_COOKIE, "", 0));
    r
}
