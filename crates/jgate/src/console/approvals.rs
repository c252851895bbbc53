//! The approvals inbox: calls held for an administrator's approval (grants made with
//! `--approve`), each with exactly what would run, and Approve / Deny — the same audited `Gate`
//! functions as `jgate approve` / `jgate deny`, as the logged-in administrator.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::get;
use serde::Serialize;

use super::{Authed, Console, Form, done, notice, say};

pub fn routes() -> Router<Console> {
    Router::new().route("/approvals", get(page).post(decide))
}

/// One row of the inbox.
#[derive(Serialize)]
struct Row {
    id: String,
    status: &'static str,
    summary: String,
    agent: String,
    created_ms: i64,
    expires_ms: i64,
    decided_by: Option<String>,
    reason: Option<String>,
}

#[derive(serde::Deserialize, Default)]
struct PageQuery {
    all: Option<String>,
    done: Option<String>,
    name: Option<String>,
}

async fn page(State(console): State<Console>, headers: HeaderMap, Query(q): Query<PageQuery>) -> Response {
    let authed = match console.authed(&headers).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let note = match (q.done.as_deref(), q.name.as_deref()) {
        (Some(code), Some(name)) => notice(code, name),
        _ => None,
    };
    render(&console, &authed, q.all.is_some(), StatusCode::OK, note, None).await
}

async fn render(
    console: &Console,
    authed: &Authed,
    all: bool,
    status: StatusCode,
    note: Option<String>,
    error: Option<String>,
) -> Response {
    let list = match console.gate().approvals(all).await {
        Ok(l) => l,
        Err(e) => return console.page_error(StatusCode::SERVICE_UNAVAILABLE, &say(&e), Some(authed)),
    };
    let rows: Vec<Row> = list
        .into_iter()
        .map(|a| Row {
            id: a.id,
            status: a.status.as_str(),
            summary: a.summary,
            agent: a.agent,
            created_ms: a.created_ms,
            expires_ms: a.expires_ms,
            decided_by: a.decided_by,
            reason: a.reason,
        })
        .collect();
    console.render_status(
        status,
        "approvals.html",
        Some(authed),
        minijinja::context! { nav => "approvals", approvals => rows, all => all, notice => note, error => error },
    )
}

async fn decide(State(console): State<Console>, headers: HeaderMap, body: Bytes) -> Response {
    let form = Form::parse(&body);
    let authed = match console.authed_post(&headers, &form).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let gate = console.gate();
    let admin = authed.admin();
    let id = form.get("id").to_string();
    let reason = form.opt("reason");
    let result = match form.get("action") {
        "approve" => gate.approve(&admin, &id, reason.as_deref()).await.map(|_| "approved"),
        "deny" => gate.deny(&admin, &id, reason.as_deref().unwrap_or_default()).await.map(|_| "denied"),
        other => Err(gate::GateError::Invalid(format!("unknown action '{other}'"))),
    };
    match result {
        Ok(code) => done("/console/approvals", code, &id),
        Err(e) => render(&console, &authed, false, StatusCode::BAD_REQUEST, None, Some(say(&e))).await,
    }
}
